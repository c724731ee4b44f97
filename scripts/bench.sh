#!/usr/bin/env bash
# make bench: jem against PyTorch (Debian's python3-torch) on the same
# workloads, same model, same thread count, alternating in one run, PyTorch
# both as installed and with glibc malloc keeping freed memory (see
# scripts/bench_compare.sh), then the per-layer table against the measured
# multiply-add peak and the scaling figures of jem alone. Where the CPU has
# AVX512-BF16, the same comparison again with bf16 forward and SGLD passes
# on both sides (jem --precision bf16, PyTorch under torch.autocast), and
# the fused blocks' table in bf16.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
JEM_DEPS_EXTRA=python3-torch scripts/deps.sh
scripts/bench_compare.sh "$build"
echo
"$build/jem" bench --layers --scaling --reps 3
if grep -qw avx512_bf16 /proc/cpuinfo && grep -qw avx512f /proc/cpuinfo; then
    echo
    PRECISION=bf16 scripts/bench_compare.sh "$build"
    echo
    "$build/jem" bench --layers --precision bf16 --reps 3
fi

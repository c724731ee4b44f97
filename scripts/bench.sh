#!/usr/bin/env bash
# make bench: jem against PyTorch (Debian's python3-torch) on the same
# workloads, same model, same thread count, alternating in one run, then the
# per-layer table and the scaling figures of jem alone.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
JEM_DEPS_EXTRA=python3-torch scripts/deps.sh
scripts/bench_compare.sh "$build"
echo
"$build/jem" bench --layers --scaling --reps 3

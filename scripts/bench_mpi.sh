#!/usr/bin/env bash
# JEM iteration throughput on this machine: 1 rank x 2 threads against
# 2 ranks x 1 thread, the same global batch (64) and K = 20, and the time the
# ranks spend in MPI collectives. Usage: scripts/bench_mpi.sh [ITERS]
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-20}
JEM_DEPS_EXTRA="libopenmpi-dev openmpi-bin" scripts/deps.sh
make --no-print-directory MPI=1 all >/dev/null
make --no-print-directory all >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
common=(--mode jem --sgld-steps 20 --data fmnist:train --val 0 --iters "$iters" --log-every 5 --json)
run() { # name, then the command; prints img/s of the last 15 iterations and the comm time
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" --log "$tmp/$name.jsonl" --out "$tmp/$name.safetensors" > "$tmp/$name.json" 2> /dev/null
    t1=$(date +%s.%N)
    local ips comm
    ips=$(tail -n 3 "$tmp/$name.jsonl" | sed -n 's/.*"img_per_s":\([0-9.e+]*\).*/\1/p' | awk '{s += $1; n++} END {printf "%.1f", s / n}')
    comm=$(sed -n 's/.*"comm_seconds":\([0-9.e+-]*\).*/\1/p' "$tmp/$name.json")
    printf '%-22s %10s img/s %10s s in collectives over %s iterations (wall %.1f s)\n' "$name" "$ips" "${comm:-0}" "$iters" "$(echo "$t1 - $t0" | bc)"
}
run "1 rank x 2 threads" build/jem train "${common[@]}" --batch 64 --threads 2
run "2 ranks x 1 thread" mpirun --bind-to none -np 2 build-mpi/jem train "${common[@]}" --batch 32 --threads 1

#!/usr/bin/env bash
# The JEM iteration (reference model, K = 20, BATCH images per rank, one
# thread per rank) on 1, 2 and 4 hosts joined by a network on this machine
# (network namespaces, OpenMPI over TCP only: tests/hosts_lib.sh), with the
# links unlimited and limited by a token bucket (tc tbf) to 10 and 1 Gbit/s.
# Needs root. Usage: scripts/bench_mpi_hosts.sh [ITERS [BATCH [K]]]
# (TBF_BURST sets the token bucket's size, default 64kb: see shape in
# tests/hosts_lib.sh).
#
# What it measures, per host count and link, over the iterations after the
# first two (start-up skew and warm-up left out):
#   img/s        labelled images per second of the whole job
#   s/it         seconds per iteration
#   coll least   seconds per iteration in MPI collectives of the rank that
#                spent least there: the rank that arrived last at each
#                exchange waited for nobody, so this is nearest to the cost
#                of the transfers themselves (an upper bound on it)
#   coll most    the same for the rank that spent most: it adds the time spent
#                waiting for slower ranks (load imbalance, scheduling)
#   coll %       coll least / s/it
#   ring         the ring-allreduce model of the gradient exchange,
#                2 (N - 1) / N x 4 P bytes / link rate (latency left out)
#   eff here     img/s against N x the one-host img/s, on this machine
#   eff N hosts  t1 / (t1 + coll least): the efficiency N machines with a core
#                each would reach if an iteration computed as fast as one
#                rank alone here (t1) and communicated as measured here
# All "hosts" share this machine's cores and memory: with more ranks than
# cores (4 hosts on 2 cores) every rank computes slower, the ranks' polling
# and the kernel's TCP work take cores from the computing ranks, and "eff
# here" falls by the oversubscription, not by the network. The collective
# times are still measured on busy cores, so they overstate a real link's
# cost. tbf limits the rate only: there is no propagation delay (netem is not
# available), so latency is that of a veth pair, a few microseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-20}
batch=${2:-32}
K=${3:-20}
if [ "$(id -u)" -ne 0 ]; then echo "bench_mpi_hosts: needs root (network namespaces)" >&2; exit 1; fi
JEM_DEPS_EXTRA="libopenmpi-dev openmpi-bin" scripts/deps.sh
make --no-print-directory MPI=1 all > /dev/null
JEM=$PWD/build-mpi/jem
tmp=$(mktemp -d)
hosts_timeout=$((600 + 30 * iters))
. tests/hosts_lib.sh
trap 'cleanup; rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
can_make_hosts || { echo "bench_mpi_hosts: network namespaces cannot be made here" >&2; exit 1; }

args=(--model models/wrn-fmnist.model --data fmnist:train --val 0 --threads 1 --mode jem
      --sgld-steps "$K" --batch "$batch" --iters "$iters" --log-every 1)
export OMP_NUM_THREADS=1

# stats LOG: "s/it coll_least coll_most" over the log's lines after the first two
stats() {
    sed -n 's/.*"iter":\([0-9]*\).*"time":\([0-9.e+-]*\).*/\1 \2/p' "$1" > "$tmp/t"
    sed -n 's/.*"comm_seconds_min":\([0-9.e+-]*\),"comm_seconds_max":\([0-9.e+-]*\).*/\1 \2/p' "$1" > "$tmp/c"
    paste -d' ' "$tmp/t" "$tmp/c" | awk 'NR == 2 { i0 = $1; t0 = $2 }
        NR > 2 { lo += $3; hi += $4; i = $1; t = $2 }
        END { if (i <= i0) { print "nan nan nan"; exit }
              printf "%.4f %.5f %.5f\n", (t - t0) / (i - i0), lo / (i - i0), hi / (i - i0) }'
}

echo "bench_mpi_hosts: JEM iteration, K = $K, $batch images per rank, 1 thread per rank, $iters iterations per run"
rows=()
t1=
for n in 1 2 4; do
    hosts "$n" || { echo "bench_mpi_hosts: could not make $n hosts" >&2; exit 1; }
    links=(none 10gbit 1gbit)
    [ "$n" = 1 ] && links=(none)
    for link in "${links[@]}"; do
        shape "$link" "${TBF_BURST:-64kb}" || { echo "bench_mpi_hosts: tc tbf $link failed" >&2; exit 1; }
        name=$n-$link
        printf '%d host(s), link %s ... ' "$n" "$link"
        if [ "$n" = 1 ]; then
            on 1 "$JEM" train "${args[@]}" --log "$tmp/$name.jsonl" --out "$tmp/$name.safetensors" \
                > /dev/null 2> "$tmp/$name.err" || { echo "failed:"; tail -n 3 "$tmp/$name.err"; exit 1; }
        else
            hmpi "$n" "$JEM" train "${args[@]}" --log "$tmp/$name.jsonl" --out "$tmp/$name.safetensors" \
                > /dev/null 2> "$tmp/$name.err" || { echo "failed:"; tail -n 3 "$tmp/$name.err"; exit 1; }
        fi
        np=$(sed -n 's/.*model wrn-fmnist (\([0-9]*\) parameters).*/\1/p' "$tmp/$name.err")
        read -r spi lo hi < <(stats "$tmp/$name.jsonl")
        [ "$n" = 1 ] && { t1=$spi; lo=0; hi=0; }
        # what the token buckets saw: bytes sent through them and how often they held a packet back
        tbf=
        if [ "$link" != none ]; then
            tbf=$(for i in $(seq 1 "$n"); do tc -s -n "$run-h$i" qdisc show dev eth0; done |
                  awk '/Sent/ { b += $2 } /overlimits/ { for (k = 1; k < NF; k++) if ($k == "overlimits") o += $(k + 1) }
                       END { printf "; hosts sent %.1f MB through tbf, held back %d times", b / 1e6, o }')
        fi
        echo "$spi s/it, collectives $lo (least) $hi (most) s/it$tbf"
        rows+=("$n $link $spi $lo $hi $np")
    done
done

echo
echo "| hosts | link | img/s | s/it | coll least (ms/it) | coll most (ms/it) | coll % | ring model (ms) | eff here | eff N hosts |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
    set -- $r
    awk -v n="$1" -v link="$2" -v spi="$3" -v lo="$4" -v hi="$5" -v np="$6" -v b="$batch" -v t1="$t1" 'BEGIN {
        bw = link == "10gbit" ? 1.25e9 : link == "1gbit" ? 1.25e8 : 0
        ring = bw > 0 && n > 1 ? sprintf("%.1f", 1e3 * 2 * (n - 1) / n * 4 * np / bw) : "-"
        ips = n * b / spi; ips1 = b / t1
        lname = link == "none" ? (n > 1 ? "unlimited" : "-") : (link == "10gbit" ? "10 Gbit/s" : "1 Gbit/s")
        clo = n > 1 ? sprintf("%.1f", 1e3 * lo) : "-"
        chi = n > 1 ? sprintf("%.1f", 1e3 * hi) : "-"
        pct = n > 1 ? sprintf("%.1f %%", 100 * lo / spi) : "-"
        effn = n > 1 ? sprintf("%.1f %%", 100 * t1 / (t1 + lo)) : "-"
        printf "| %d | %s | %.1f | %.2f | %s | %s | %s | %s | %.0f %% | %s |\n", n, lname, ips, spi, clo, chi, pct, ring,
            100 * ips / (n * ips1), effn }'
done
echo
echo "gradient: $np parameters, $(awk -v p="$np" 'BEGIN { printf "%.2f", 4 * p / 1e6 }') MB per allreduce; t1 = $t1 s per iteration (one rank alone)"

#!/usr/bin/env bash
# Side-by-side speed of jem and PyTorch: the four workloads of `jem bench`
# (forward batch 256, training step batch 64, SGLD step batch 64, JEM
# iteration batch 64 with K = 20), alternating jem and PyTorch ROUNDS times
# in one run; prints the median images/s of each and their ratio, and the
# peak resident memory of each process.
#   scripts/bench_compare.sh [BUILD] [ROUNDS] [THREADS]
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
threads=${3:-2}
cd "$(dirname "$0")/.."
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
    "$build/jem" bench --threads "$threads" --reps 3 --json > "$tmp/jem.$r.json"
    "$py" scripts/bench_torch.py --threads "$threads" --reps 3 > "$tmp/torch.$r.json"
done
"$py" - "$tmp" "$rounds" "$threads" <<'PY'
import json, statistics, sys
tmp, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(kind):
    return [json.load(open("%s/%s.%d.json" % (tmp, kind, r))) for r in range(1, rounds + 1)]
j, t = load("jem"), load("torch")
print("jem vs PyTorch %s, %s threads, median of %d alternating rounds" % (t[0]["torch"], threads, rounds))
print("%-14s %6s %12s %12s %8s" % ("workload", "batch", "jem img/s", "torch img/s", "ratio"))
for w in ["forward", "train_step", "sgld_step", "jem_iteration"]:
    a = statistics.median(x["workloads"][w]["images_per_s"] for x in j)
    b = statistics.median(x["workloads"][w]["images_per_s"] for x in t)
    print("%-14s %6d %12.1f %12.1f %7.2fx" % (w, j[0]["workloads"][w]["batch"], a, b, a / b))
print("%-14s %6s %12.0f %12.0f   (peak resident MB)" % ("memory", "", statistics.median(x["peak_rss_mb"] for x in j),
      statistics.median(x["peak_rss_mb"] for x in t)))
PY

#!/usr/bin/env bash
# Two builds of jem side by side: `jem bench` of A and B in turn, ROUNDS
# times, then per workload the median images/s of each and the median of
# the per-round ratios B/A (a ratio taken within one round cancels the
# machine's drift). Usage: scripts/bench_ab.sh JEM_A JEM_B [ROUNDS [REPS]]
# e.g. before/after a change: build the old commit in a git worktree and
#   scripts/bench_ab.sh /tmp/old/build/jem build/jem 7
set -euo pipefail
a=${1:?usage: bench_ab.sh JEM_A JEM_B [ROUNDS [REPS]]}
b=${2:?usage: bench_ab.sh JEM_A JEM_B [ROUNDS [REPS]]}
rounds=${3:-7}
reps=${4:-5}
for f in "$a" "$b"; do [ -x "$f" ] || { echo "bench_ab: $f: not an executable" >&2; exit 2; }; done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$rounds"); do
    "$a" bench --reps "$reps" --json > "$out/a$r.json"
    "$b" bench --reps "$reps" --json > "$out/b$r.json"
    echo "round $r of $rounds" >&2
done
python3 - "$out" "$rounds" "$a" "$b" <<'PY'
import json, statistics as st, sys
d, n, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
A = [json.load(open(f"{d}/a{r}.json")) for r in range(1, n + 1)]
B = [json.load(open(f"{d}/b{r}.json")) for r in range(1, n + 1)]
print(f"A = {a}\nB = {b}\n{n} rounds, A and B in turn\n")
print(f"| workload | A images/s | B images/s | B/A (median of rounds) | min | max |")
print("|---|---|---|---|---|---|")
for w in A[0]["workloads"]:
    ia = [x["workloads"][w]["images_per_s"] for x in A]
    ib = [x["workloads"][w]["images_per_s"] for x in B]
    q = [y / x for x, y in zip(ia, ib)]
    print(f"| {w} | {st.median(ia):.1f} | {st.median(ib):.1f} | {st.median(q):.3f} | {min(q):.3f} | {max(q):.3f} |")
PY

#!/usr/bin/env bash
# Two builds of jem side by side on the attacks: `jem attack` with PGD
# (20 steps) and APGD-CE (50 steps) at L-inf eps 0.05 on the first N test
# images (default 128) of a model, A and B in turn, ROUNDS times (default
# 3); prints the median seconds of each, the median of the per-round
# ratios A/B (B's speed-up), and whether A and B gave the same JSON.
#   scripts/bench_attack_ab.sh JEM_A JEM_B [ROUNDS [N [THREADS]]]
# MODEL (default models/jem-fmnist.safetensors) picks the checkpoint.
set -euo pipefail
a=${1:?usage: bench_attack_ab.sh JEM_A JEM_B [ROUNDS [N [THREADS]]]}
b=${2:?usage: bench_attack_ab.sh JEM_A JEM_B [ROUNDS [N [THREADS]]]}
rounds=${3:-3}
n=${4:-128}
threads=${5:-1}
model=${MODEL:-models/jem-fmnist.safetensors}
for f in "$a" "$b"; do [ -x "$f" ] || { echo "bench_attack_ab: $f: not an executable" >&2; exit 2; }; done
[ -f "$model" ] || { echo "bench_attack_ab: $model missing" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
secs() { # SECONDS of one run of jem $1 with the attack args; its JSON into $2
    local t0 t1
    t0=$(date +%s.%N)
    "$1" attack --model "$model" --n "$n" --eps 0,0.05 --no-checks --threads "$threads" --json "${@:3}" > "$2"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
for r in $(seq 1 "$rounds"); do
    for atk in "pgd --steps 20" "apgd-ce --steps 50"; do
        name=${atk%% *}
        # shellcheck disable=SC2086
        echo "$(secs "$a" "$out/a-$name-$r.json" --attack $atk)" >> "$out/a-$name"
        # shellcheck disable=SC2086
        echo "$(secs "$b" "$out/b-$name-$r.json" --attack $atk)" >> "$out/b-$name"
    done
    echo "round $r of $rounds" >&2
done
python3 - "$out" "$rounds" "$a" "$b" "$n" "$threads" <<'PY'
import filecmp, statistics as st, sys
d, n, a, b, imgs, th = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
print(f"A = {a}\nB = {b}\n{n} rounds, A and B in turn, {imgs} images, {th} thread(s)\n")
print("| attack | A s | B s | A/B (median of rounds) | min | max | same results |")
print("|---|---|---|---|---|---|---|")
for name in ("pgd", "apgd-ce"):
    ta = [float(x) for x in open(f"{d}/a-{name}")]
    tb = [float(x) for x in open(f"{d}/b-{name}")]
    r = [x / y for x, y in zip(ta, tb)]
    same = all(filecmp.cmp(f"{d}/a-{name}-{i}.json", f"{d}/b-{name}-{i}.json", shallow=False)
               for i in range(1, n + 1))
    print(f"| {name} | {st.median(ta):.2f} | {st.median(tb):.2f} | {st.median(r):.2f}x | {min(r):.2f}x | "
          f"{max(r):.2f}x | {'yes' if same else 'NO'} |")
PY

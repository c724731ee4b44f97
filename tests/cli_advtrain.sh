#!/usr/bin/env bash
# jem train's adversarial training end to end: --adv and its options are
# checked before any work (out of range, or without the --adv they belong
# to); the --log lines carry the ramped radius, the accuracy on the
# adversarial examples and TRADES's KL; the checkpoint records the settings,
# jem export keeps them and jem report shows them; a JEM run with PGD-AT
# resumed half-way equals a straight one.
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
common=(--model "$tmp/tiny.model" --data fmnist:test --val 0 --batch 16 --threads 1)
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }

# refused before the data set is opened, naming the option
for bad in "--adv pgd --adv-eps 0" "--adv trades --adv-steps 0" "--adv pgd --adv-step 0" "--adv pgd --adv-ramp -1" \
    "--adv trades --trades-beta -1" "--adv pgd --adv-eps 1001"; do
    # shellcheck disable=SC2086
    "$JEM" train "${common[@]}" --data idx:/nonexistent $bad --iters 1 --out "$tmp/x.safetensors" 2> "$tmp/err"
    rc=$?
    opt=$(sed 's/.*\(--[a-z-]*\) [-0-9.]*$/\1/' <<< "$bad")
    check "[ $rc -eq 2 ] && grep -q -- '$opt' '$tmp/err' && ! grep -q nonexistent '$tmp/err'"
done
# choices, and options without the --adv they belong to
expect2() {
    "$JEM" train "${common[@]}" "$@" --iters 1 --out "$tmp/x.safetensors" > /dev/null 2> "$tmp/err"
    local rc=$?
    check "[ $rc -eq 2 ] && [ ! -e '$tmp/x.safetensors' ] && grep -q -- '$last' '$tmp/err'"
}
last="--adv .foo.: want none, pgd or trades"; expect2 --adv foo
last="--adv-norm .l1.: want linf or l2"; expect2 --adv pgd --adv-norm l1
last="--adv-eps applies with --adv pgd or --adv trades"; expect2 --adv-eps 0.1
last="--adv-ramp applies with --adv pgd or --adv trades"; expect2 --adv none --adv-ramp 10
last="--trades-beta applies with --adv trades only"; expect2 --adv pgd --trades-beta 3
last="--adv-no-random-start applies with --adv pgd or --adv trades"; expect2 --adv-no-random-start
last="--adv-no-random-start with --adv trades: the KL"; expect2 --adv trades --adv-no-random-start

# softmax with TRADES, the radius ramped over 4 iterations, a line per iteration
"$JEM" train "${common[@]}" --adv trades --adv-eps 0.1 --adv-ramp 4 --adv-steps 2 --trades-beta 3 --iters 6 \
    --log-every 1 --log "$tmp/t.log" --out "$tmp/t.safetensors" > /dev/null 2> "$tmp/err"
check "[ $? -eq 0 ] && [ \$(wc -l < '$tmp/t.log') -eq 6 ]"
check "grep -q 'TRADES: L-inf eps 0.1 (\[0, 1\] scale), rising linearly over the first 4 iterations' '$tmp/err'"
eps=$(num adv_eps < "$tmp/t.log" | awk '{ printf "%.6g ", $1 }')
check "[ '$eps' = '0.025 0.05 0.075 0.1 0.1 0.1 ' ]"
for k in adv_acc trades_kl sec_adv acc; do
    check "[ \$(num $k < '$tmp/t.log' | wc -l) -eq 6 ]"
done
a=$(tail -n 1 "$tmp/t.log" | num adv_acc)
check "awk 'BEGIN { exit !($a >= 0 && $a <= 1) }'"
# plain training logs none of it
"$JEM" train "${common[@]}" --iters 2 --log-every 1 --log "$tmp/p.log" --out "$tmp/p.safetensors" > /dev/null 2>&1
check "[ \$(wc -l < '$tmp/p.log') -eq 2 ] && ! grep -q 'adv_\|trades_kl\|sec_adv' '$tmp/p.log'"
check "! '$JEM' info '$tmp/p.safetensors' | grep -q 'jem.train.adv'"

# the settings in the checkpoint, kept by export
"$JEM" info "$tmp/t.safetensors" --json > "$tmp/info"
for kv in '"jem.train.adv":"trades"' '"jem.train.adv_norm":"linf"' '"jem.train.adv_eps":"0.1"' \
    '"jem.train.adv_steps":"2"' '"jem.train.adv_step":"0.25"' '"jem.train.adv_ramp":"4"' \
    '"jem.train.adv_random_start":"1"' '"jem.train.trades_beta":"3"'; do
    check "grep -q '$kv' '$tmp/info'"
done
"$JEM" export "$tmp/t.safetensors" "$tmp/x.safetensors"
check "[ $? -eq 0 ] && [ \$('$JEM' info '$tmp/x.safetensors' | grep -c 'jem.train.adv\|jem.train.trades_beta') -eq 8 ]"

# jem report shows them
"$JEM" report --model "$tmp/x.safetensors" --out "$tmp/r" --limit 20 --attack-n 5 --steps 1 --no-defence \
    --sample-n 0 --no-temperature --ood noise:uniform:20 --threads 1 > /dev/null 2>&1
check "[ $? -eq 0 ]"
check "grep -q '<th>adversarial training</th><td>TRADES, L-inf eps 0.1 (\[0, 1\] scale); PGD of 2 steps of 0.25 eps from a random start, beta 3; eps ramped up over the first 4 iterations</td>' '$tmp/r/report.html'"
check "grep -q '\"jem.train.adv\":\"trades\"' '$tmp/r/report.json'"
# PGD-AT from the clean image: said at the start, recorded in the checkpoint
"$JEM" train "${common[@]}" --adv pgd --adv-no-random-start --adv-steps 1 --iters 1 --out "$tmp/n.safetensors" \
    > /dev/null 2> "$tmp/err"
check "[ $? -eq 0 ] && grep -q 'PGD of 1 steps of 0.25 eps from the clean image' '$tmp/err'"
check "'$JEM' info '$tmp/n.safetensors' --json | grep -q '\"jem.train.adv_random_start\":\"0\"'"

# JEM with PGD-AT under L2: 3 iterations then resumed to 6 equals 6 straight
jem=(--mode jem --sgld-steps 2 --buffer 100 --n-samples 8 --adv pgd --adv-norm l2 --adv-eps 1 --adv-steps 2 --adv-ramp 4)
"$JEM" train "${common[@]}" "${jem[@]}" --iters 6 --log-every 2 --log "$tmp/j.log" --out "$tmp/s.safetensors" \
    > /dev/null 2>&1
check "[ $? -eq 0 ]"
check "[ \"\$(num adv_eps < '$tmp/j.log' | awk '{ printf \"%.6g \", \$1 }')\" = '0.5 1 1 ' ] && grep -q '\"e_data\":' '$tmp/j.log'"
"$JEM" train "${common[@]}" "${jem[@]}" --iters 3 --out "$tmp/q.safetensors" > /dev/null 2>&1
"$JEM" train "${common[@]}" "${jem[@]}" --iters 6 --resume "$tmp/q.safetensors" --out "$tmp/q.safetensors" \
    > /dev/null 2>&1
check "[ $? -eq 0 ]"
d=$("$JEM" info "$tmp/s.safetensors" --diff "$tmp/q.safetensors" --json | num max_abs_diff)
check "[ '$d' = 0 ]"

finish cli_advtrain

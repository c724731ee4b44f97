#!/usr/bin/env bash
# jem train's moving average and time breakdown end to end: --ema and
# --px-rows are checked before any data is read; the checkpoint's model
# (what jem export, eval and info --diff see) is the average, the trained
# weights ride along as "_train.params" and are dropped by export, which
# keeps "jem.train.ema"; a resumed run with --ema equals a straight one;
# --log lines say where an iteration's time went.
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
common=(--model "$tmp/tiny.model" --data fmnist:test --val 0 --batch 16 --threads 1)
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }

# bad values are refused before the data set is opened (0.99999999 is 1 as a float)
for bad in "--ema 1" "--ema -0.1" "--ema 0.99999999" "--px-rows -2"; do
    # shellcheck disable=SC2086
    "$JEM" train "${common[@]}" --data idx:/nonexistent $bad --iters 1 --out "$tmp/x.safetensors" 2> "$tmp/err"
    rc=$?
    check "[ $rc -eq 2 ] && grep -q -- '${bad%% *}' '$tmp/err' && ! grep -q nonexistent '$tmp/err'"
done

# --px-rows means something with --crop or --flip only
"$JEM" train "${common[@]}" --mode jem --px-rows 4 --iters 1 --out "$tmp/x.safetensors" 2> "$tmp/err"
check "[ $? -eq 2 ] && grep -q -- '--px-rows applies with --crop or --flip only' '$tmp/err'"
check "[ ! -e '$tmp/x.safetensors' ]"

# softmax, 6 iterations, with and without the average
"$JEM" train "${common[@]}" --iters 6 --lr 3e-3 --ema 0.9 --out "$tmp/e.safetensors" > /dev/null 2>&1
check "[ $? -eq 0 ]"
"$JEM" train "${common[@]}" --iters 6 --lr 3e-3 --out "$tmp/r.safetensors" > /dev/null 2>&1
check "[ $? -eq 0 ]"
"$JEM" info "$tmp/e.safetensors" --json > "$tmp/info"
check "grep -q '\"_train.params\"' '$tmp/info' && grep -q '\"jem.train.ema\":\"0.9\"' '$tmp/info'"
check "! '$JEM' info '$tmp/r.safetensors' --json | grep -q '_train.params'"
# the average is not the trained weights
d=$("$JEM" info "$tmp/e.safetensors" --diff "$tmp/r.safetensors" --json | num max_abs_diff)
check "awk 'BEGIN { exit !($d > 1e-4) }'"
# export keeps the average and drops the trained weights
"$JEM" export "$tmp/e.safetensors" "$tmp/x.safetensors"
check "[ $? -eq 0 ]"
d=$("$JEM" info "$tmp/x.safetensors" --diff "$tmp/e.safetensors" --json | num max_abs_diff)
check "[ '$d' = 0 ]"
check "! '$JEM' info '$tmp/x.safetensors' --json | grep -q '_train.params'"
check "'$JEM' info '$tmp/x.safetensors' --json | grep -q '\"jem.train.ema\":\"0.9\"'"
a1=$("$JEM" eval --model "$tmp/e.safetensors" --data fmnist:test --limit 500 --no-temperature --json 2> /dev/null | num accuracy)
a2=$("$JEM" eval --model "$tmp/x.safetensors" --data fmnist:test --limit 500 --no-temperature --json 2> /dev/null | num accuracy)
check "[ -n '$a1' ] && [ '$a1' = '$a2' ]"

# JEM with the average, crop and flip: 3 iterations then resumed to 6 equals 6 straight
jem=(--mode jem --sgld-steps 2 --buffer 100 --n-samples 8 --crop 2 --flip --ema 0.99 --log-every 2)
"$JEM" train "${common[@]}" "${jem[@]}" --iters 6 --out "$tmp/s.safetensors" --log "$tmp/log" > /dev/null 2>&1
check "[ $? -eq 0 ]"
"$JEM" train "${common[@]}" "${jem[@]}" --iters 3 --out "$tmp/p.safetensors" > /dev/null 2>&1
"$JEM" train "${common[@]}" "${jem[@]}" --iters 6 --resume "$tmp/p.safetensors" --out "$tmp/p.safetensors" > /dev/null 2>&1
check "[ $? -eq 0 ]"
d=$("$JEM" info "$tmp/s.safetensors" --diff "$tmp/p.safetensors" --json | num max_abs_diff)
check "[ '$d' = 0 ]"

# the time breakdown: every part present, together within the iteration's time
line=$(tail -n 1 "$tmp/log")
parts=0
for k in sec_iter sec_data sec_sgld sec_fwd_bwd sec_opt; do
    v=$(num "$k" <<< "$line")
    check "[ -n '$v' ]"
    [ "$k" != sec_iter ] && parts=$(awk "BEGIN { print $parts + ${v:-0} }")
done
it=$(num sec_iter <<< "$line")
check "awk 'BEGIN { exit !($parts > 0 && $parts <= ${it:-0}) }'"

finish cli_trainer

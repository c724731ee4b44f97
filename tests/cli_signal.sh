#!/usr/bin/env bash
# SIGINT and SIGTERM stop training cleanly: a checkpoint is written, it
# loads, and --resume continues from it; a diverging run is rolled back.
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
common=(--model "$tmp/tiny.model" --data fmnist:test --val 0 --batch 16 --log-every 1 --threads 2)

for sig in INT TERM; do
    ck="$tmp/run-$sig.safetensors"
    "$JEM" train "${common[@]}" --mode jem --sgld-steps 2 --buffer 100 --iters 1000000 --out "$ck" \
        > "$tmp/out" 2> "$tmp/err" &
    pid=$!
    # wait for a few iterations, then signal
    for _ in $(seq 1 100); do grep -q "it 3 " "$tmp/err" 2>/dev/null && break; sleep 0.1; done
    kill -s "$sig" "$pid"
    wait "$pid"; rc=$?
    check "[ $rc -eq 130 ]"
    check "grep -q 'stopped at iteration' '$tmp/err'"
    check "[ -f '$ck' ]"
    iter=$(iter_of "$ck")
    check "[ -n '$iter' ] && [ '$iter' -ge 3 ]"
    # no temporary files left beside the checkpoint
    check "[ \$(ls '$tmp' | grep -c tmp) -eq 0 ]"
    # resume runs from there for 2 more iterations
    "$JEM" train "${common[@]}" --mode jem --sgld-steps 2 --buffer 100 --iters $((iter + 2)) --resume "$ck" \
        --out "$ck" > /dev/null 2> "$tmp/err2"
    check "[ $? -eq 0 ]"
    iter2=$(iter_of "$ck")
    check "[ '$iter2' = '$((iter + 2))' ]"
done

# a blow-up injected at iteration 4 is rolled back and reported
"$JEM" train "${common[@]}" --mode jem --sgld-steps 2 --buffer 100 --iters 10 --lr 1e-3 --warmup 0 \
    --inject-blowup 4 --div-threshold 1000 --out "$tmp/b.safetensors" > /dev/null 2> "$tmp/err3"
check "[ $? -eq 0 ]"
check "grep -q 'rolled back' '$tmp/err3'"
# and without rollbacks allowed it is a clear error
"$JEM" train "${common[@]}" --mode jem --sgld-steps 2 --buffer 100 --iters 10 --lr 1e-3 --warmup 0 \
    --inject-blowup 4 --div-threshold 1000 --max-retries 0 --out "$tmp/c.safetensors" > /dev/null 2> "$tmp/err4"
check "[ $? -eq 1 ]"
check "grep -q 'diverged at iteration' '$tmp/err4'"

finish cli_signal

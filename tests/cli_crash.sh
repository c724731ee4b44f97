#!/usr/bin/env bash
# Crash safety: a JEM training run checkpointing every 2 iterations is killed
# with SIGKILL at random moments, KILLS times (default 12), each time resumed
# from its checkpoint. After every kill the last checkpoint must load and
# hold an iteration no lower than the one before; kills that land during a
# checkpoint or sample-grid write leave a temporary file, which the next
# successful write of that file sweeps away; the sample grid is always a
# whole PNG. Prints how many kills landed during a write.
set -u
JEM=${JEM:-build/jem}
KILLS=${KILLS:-12}
. "$(dirname "$0")/lib.sh"
ck="$tmp/run.safetensors"
png="$tmp/samples.png"
common=(--model "$tmp/tiny.model" --data fmnist:test --val 0 --batch 16 --mode jem --sgld-steps 2
        --buffer 4000 --ckpt-every 2 --iters 100000000 --threads 2 --out "$ck"
        --samples "$png" --sample-every 1)
# a whole PNG ends with its IEND chunk (type and CRC in the last 8 bytes)
png_whole() { [ "$(tail -c 8 "$1" | head -c 4)" = IEND ]; }
RANDOM=${SEED:-7}
last=0; loaded=0; present=0; during=0
for k in $(seq 1 "$KILLS"); do
    if [ -f "$ck" ]; then resume=(--resume "$ck"); else resume=(); fi
    "$JEM" train "${common[@]}" "${resume[@]}" > /dev/null 2> "$tmp/err" &
    pid=$!
    # the first run goes on until its first checkpoint exists (start-up takes
    # longer on a loaded machine), so that later kills have one to resume from
    if [ ${#resume[@]} -eq 0 ]; then
        for _ in $(seq 1 1200); do
            [ -f "$ck" ] || ! kill -0 "$pid" 2>/dev/null && break
            sleep 0.1
        done
    fi
    # 0.3 s to 2.3 s: after start-up, across iterations and checkpoint writes
    sleep "$(printf '0.%03d' $((RANDOM % 1000)))"; sleep 0.3; [ $((RANDOM % 2)) -eq 1 ] && sleep 1
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    ls "$tmp" | grep -q '\.tmp' && during=$((during + 1))
    [ -f "$png" ] && check "png_whole '$png'"
    if [ -f "$ck" ]; then
        present=$((present + 1))
        it=$(iter_of "$ck")
        if [ -n "$it" ]; then loaded=$((loaded + 1)); else bad "kill $k: checkpoint does not load"; tail -3 "$tmp/err" >&2; continue; fi
        check "[ $it -ge $last ]"
        last=$it
    fi
done
check "[ $present -gt 0 ]"
check "[ $loaded -eq $present ]"
# the run resumes from the last checkpoint and finishes cleanly
final=$((last + 3))
"$JEM" train "${common[@]}" --resume "$ck" --iters $final > /dev/null 2> "$tmp/err"
check "[ $? -eq 0 ]"
check "[ \"\$(iter_of '$ck')\" = '$final' ]"
check "[ \$(ls '$tmp' | grep -c '\\.tmp') -eq 0 ]"
check "png_whole '$png'"
# determinism: the same seed and thread count give bit-identical weights
det=(--model "$tmp/tiny.model" --data fmnist:test --val 0 --batch 16 --mode jem --sgld-steps 2 --buffer 200
     --iters 4 --threads 2 --seed 5)
"$JEM" train "${det[@]}" --out "$tmp/d1.safetensors" > /dev/null 2>&1
"$JEM" train "${det[@]}" --out "$tmp/d2.safetensors" > /dev/null 2>&1
check "\"$JEM\" info '$tmp/d1.safetensors' --diff '$tmp/d2.safetensors' --json | grep -q '\"max_abs_diff\":0,'"
echo "kills: $KILLS, checkpoint present after $present, loaded $loaded of $present, kills during a write: $during, last iteration $last"
finish cli_crash

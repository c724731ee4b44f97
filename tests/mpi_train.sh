#!/usr/bin/env bash
# Data-parallel training and evaluation with MPI on this machine (2 ranks,
# oversubscribed if need be). Needs the MPI build: JEM=build-mpi/jem.
#  - one SGD step on 2 ranks with per-rank batch 32 equals one step of a
#    single process with batch 64 on the same images (to float tolerance);
#  - a short JEM run on 2 ranks writes a checkpoint that resumes on 1 rank,
#    also with a moving average of the weights and crop/flip, and with HMC
#    chains (the buffer's ages gathered from the ranks);
#  - evaluation split across 2 ranks gives the single-process figures;
#  - a rank killed mid-run ends the job with an error (no hang) and the last
#    checkpoint still loads.
set -u
JEM=${JEM:-build-mpi/jem}
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mpi() { timeout 300 mpirun --bind-to none -np "$@"; }
common=(--model "$tmp/tiny.model" --data fmnist:test --val 0 --threads 1)
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }

# 1. one SGD step: 2 ranks x 32 against 1 process x 64, and the start point (lr 0)
sgd=(--mode softmax --opt sgd --momentum 0 --iters 1 --warmup 0)
"$JEM" train "${common[@]}" "${sgd[@]}" --batch 64 --lr 0.5 --out "$tmp/one.safetensors" > /dev/null 2> "$tmp/e1"
check "[ $? -eq 0 ]"
"$JEM" train "${common[@]}" "${sgd[@]}" --batch 64 --lr 0 --out "$tmp/init.safetensors" > /dev/null 2> "$tmp/e2"
check "[ $? -eq 0 ]"
mpi 2 "$JEM" train "${common[@]}" "${sgd[@]}" --batch 32 --lr 0.5 --out "$tmp/two.safetensors" > /dev/null 2> "$tmp/e3"
check "[ $? -eq 0 ]"
step=$("$JEM" info "$tmp/one.safetensors" --diff "$tmp/init.safetensors" --json | num max_abs_diff)
gap=$("$JEM" info "$tmp/one.safetensors" --diff "$tmp/two.safetensors" --json | num max_abs_diff)
echo "one SGD step: largest weight change $step; 1 x 64 against 2 x 32: largest difference $gap"
check "awk 'BEGIN { exit !($step > 1e-3) }'"
check "awk 'BEGIN { exit !($gap <= 1e-4 * $step) }'"

# 2. JEM on 2 ranks, resumed on 1
jem=(--mode jem --sgld-steps 2 --buffer 200 --batch 16 --log-every 1)
mpi 2 "$JEM" train "${common[@]}" "${jem[@]}" --iters 6 --out "$tmp/j.safetensors" > "$tmp/o4" 2> "$tmp/e4"
check "[ $? -eq 0 ]"
check "grep -q '2 ranks (global batch 32)' '$tmp/e4'"
check "[ \$(grep -c '^jem train:' '$tmp/e4') -eq 1 ]"   # rank 0 alone reports
check "grep -q 'time in MPI collectives' '$tmp/o4'"
"$JEM" train "${common[@]}" "${jem[@]}" --iters 9 --resume "$tmp/j.safetensors" --out "$tmp/j.safetensors" > /dev/null 2> "$tmp/e5"
check "[ $? -eq 0 ]"
it=$(iter_of "$tmp/j.safetensors")
check "[ '$it' = 9 ]"

# 2b. with a moving average and crop/flip on the cross-entropy rows: 2 ranks,
# rank 0's log has the time breakdown, the checkpoint resumes on 1 rank
mpi 2 "$JEM" train "${common[@]}" "${jem[@]}" --ema 0.9 --crop 2 --flip --iters 4 --log "$tmp/l7" \
    --out "$tmp/m.safetensors" > /dev/null 2> "$tmp/e7"
check "[ $? -eq 0 ]"
check "grep -q '\"comm_seconds_max\"' '$tmp/l7' && grep -q '\"sec_sgld\"' '$tmp/l7'"
check "'$JEM' info '$tmp/m.safetensors' --json | grep -q '_train.params'"
"$JEM" train "${common[@]}" "${jem[@]}" --ema 0.9 --crop 2 --flip --iters 6 --resume "$tmp/m.safetensors" \
    --out "$tmp/m.safetensors" > /dev/null 2> "$tmp/e8"
check "[ $? -eq 0 ] && [ \"\$(iter_of '$tmp/m.safetensors')\" = 6 ]"

# 2c. HMC chains on 2 ranks: one step size (the acceptance is averaged over
# the ranks), the buffer's ages gathered from both ranks' slices (none is 0
# after an iteration, the oldest are as old as the run), resumed on 1 rank
mpi 2 "$JEM" train "${common[@]}" "${jem[@]/--sgld-steps/--hmc-steps}" --sampler hmc --leapfrog 2 --iters 4 \
    --log "$tmp/l9" --out "$tmp/h.safetensors" > /dev/null 2> "$tmp/e9"
check "[ $? -eq 0 ] && [ \$(grep -c '\"hmc_step\"' '$tmp/l9') -eq 4 ]"
check "tail -n 1 '$tmp/l9' | grep -q '\"buffer_age_q\":\[[1-4],[1-4],[1-4],[1-4],[1-4],[1-4],4\]'"
check "tail -n 1 '$tmp/l9' | grep -q '\"e_sample_q\":\['"
"$JEM" train "${common[@]}" "${jem[@]/--sgld-steps/--hmc-steps}" --sampler hmc --leapfrog 2 --iters 6 \
    --resume "$tmp/h.safetensors" --log "$tmp/l10" --out "$tmp/h.safetensors" > /dev/null 2> "$tmp/e10"
check "[ $? -eq 0 ] && [ \"\$(iter_of '$tmp/h.safetensors')\" = 6 ]"
check "tail -n 1 '$tmp/l10' | grep -q '\"buffer_age_q\":\[[1-6],[1-6],[1-6],[1-6],[1-6],[1-6],6\]'"

# 3. evaluation split across ranks
a1=$("$JEM" eval --model "$tmp/j.safetensors" --data fmnist:test --limit 1000 --no-temperature --json 2> /dev/null | num accuracy)
a2=$(mpi 2 "$JEM" eval --model "$tmp/j.safetensors" --data fmnist:test --limit 1000 --no-temperature --json 2> /dev/null | num accuracy)
echo "eval accuracy: 1 process $a1, 2 ranks $a2"
check "[ -n '$a1' ] && [ '$a1' = '$a2' ]"
o1=$("$JEM" ood --model "$tmp/j.safetensors" --in fmnist:test --out noise:uniform:300 --limit 300 --json 2> /dev/null | md5sum)
o2=$(mpi 2 "$JEM" ood --model "$tmp/j.safetensors" --in fmnist:test --out noise:uniform:300 --limit 300 --json 2> /dev/null | md5sum)
check "[ '$o1' = '$o2' ]"

# 4. a rank killed mid-run fails the job, loudly, without a hang
mpi 2 "$JEM" train "${common[@]}" "${jem[@]}" --iters 100000000 --ckpt-every 2 --out "$tmp/k.safetensors" \
    > /dev/null 2> "$tmp/e6" &
mp=$!
for _ in $(seq 1 200); do [ -f "$tmp/k.safetensors" ] && break; sleep 0.1; done
victim=$(pgrep -f "k.safetensors" | while read -r p; do [ "$(ps -o comm= -p "$p")" = jem ] && echo "$p"; done | tail -n 1)
check "[ -n '$victim' ]"
[ -n "$victim" ] && kill -9 "$victim"
t0=$(date +%s)
wait "$mp"; rc=$?
t1=$(date +%s)
echo "rank killed: mpirun exited $rc after $((t1 - t0)) s"
check "[ $rc -ne 0 ] && [ $rc -ne 124 ]"
check "[ $((t1 - t0)) -lt 60 ]"
check "'$JEM' info '$tmp/k.safetensors' > /dev/null"

finish mpi_train

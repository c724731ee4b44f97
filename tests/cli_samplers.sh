#!/usr/bin/env bash
# Samplers and log Z from the command line on a tiny model: jem sample with
# SGLD, MALA and HMC (diagnostics in the JSON, the energy-trace plot), a
# composed energy over two models, jem logz; jem train with HMC chains (the
# log's sampler figures, buffer ages and energy quantiles; exact resume);
# and the bad option values of all three, refused with exit 2 before
# anything is loaded.
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
png() { [ "$(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
# the number after "KEY": in a JSON line
num() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" "$2"; }
m="$tmp/m.safetensors"
m2="$tmp/m2.safetensors"
"$JEM" train --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 10 --batch 32 --lr 3e-3 --out "$m" \
    > /dev/null 2>&1
"$JEM" train --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 5 --batch 32 --lr 3e-3 --seed 2 \
    --out "$m2" > /dev/null 2>&1
check "[ -f '$m' ] && [ -f '$m2' ]"

# HMC: acceptance, energy error, R-hat and ESS, the trace plot
"$JEM" sample --model "$m" --sampler hmc --n 6 --warmup 10 --steps 12 --leapfrog 3 --out "$tmp/h.png" \
    --trace "$tmp/ht.png" --json > "$tmp/h.json"
check "[ $? -eq 0 ] && png '$tmp/h.png' && png '$tmp/ht.png'"
for k in accept step_size dh_abs rhat ess_bulk ess_tail seconds; do
    check "grep -q '\"$k\":' '$tmp/h.json'"
done
check "grep -q '\"sampler\":\"hmc\"' '$tmp/h.json' && grep -q '\"leapfrog\":3' '$tmp/h.json'"
check "awk 'BEGIN{a = $(num accept "$tmp/h.json"); exit !(a > 0 && a <= 1)}'"
check "awk 'BEGIN{e = $(num ess_bulk "$tmp/h.json"); exit !(e > 0)}'"
# the same seed gives the same chains
"$JEM" sample --model "$m" --sampler hmc --n 6 --warmup 10 --steps 12 --leapfrog 3 --out "$tmp/h2.png" --threads 1 \
    > /dev/null
check "cmp -s '$tmp/h.png' '$tmp/h2.png'"
# SGLD and MALA report diagnostics too
"$JEM" sample --model "$m" --n 4 --steps 8 --out "$tmp/s.png" --json > "$tmp/s.json"
check "[ $? -eq 0 ] && grep -q '\"sampler\":\"sgld\"' '$tmp/s.json' && grep -q '\"rhat\":' '$tmp/s.json'"
"$JEM" sample --model "$m" --mala --step-size 0.01 --noise 0.1 --n 4 --steps 8 --out "$tmp/s.png" --json \
    > "$tmp/mala.json"
check "[ $? -eq 0 ] && grep -q '\"sampler\":\"mala\"' '$tmp/mala.json'"
# a composed energy over two models
"$JEM" sample --model "$m" --energy 'm1:class=1:1, m2:class=2:-1, m1:0.5' --models "m2=$m2" --sampler hmc --n 4 \
    --warmup 3 --steps 4 --leapfrog 2 --out "$tmp/c.png" --json > "$tmp/c.json"
check "[ $? -eq 0 ] && png '$tmp/c.png'"
check "grep -q '\"energy\":\"m1:class=1:1,m2:class=2:-1,m1:uncond:0.5\"' '$tmp/c.json'"
# m1 may be named by --models too
"$JEM" sample --model "$m" --energy 'm1:class=3,a:uncond:-0.5' --models "m1=$m2,a=$m" --n 2 --steps 2 \
    --out "$tmp/c2.png" > /dev/null
check "[ $? -eq 0 ] && png '$tmp/c2.png'"

# log Z and bits/dim
"$JEM" logz --model "$m" --T 15 --chains 4 --pilot 2 --leapfrog 2 --limit 100 --json > "$tmp/z.json" 2> "$tmp/z.err"
check "[ $? -eq 0 ]"
for k in logz logz_se weights_ess logpx bits_per_dim bits_per_dim_8bit; do check "grep -q '\"$k\":' '$tmp/z.json'"; done
check "grep -q '\"T\":15' '$tmp/z.json' && grep -q '\"chains\":4' '$tmp/z.json'"
check "awk 'BEGIN{d = $(num bits_per_dim_8bit "$tmp/z.json") - $(num bits_per_dim "$tmp/z.json"); exit !(d > 6.999 && d < 7.001)}'"
"$JEM" logz --model "$m" --T 5 --chains 2 --pilot 0 --base gauss --base-data fmnist:test --limit 20 \
    > "$tmp/z2.txt" 2>&1
check "[ $? -eq 0 ] && grep -q 'gauss base' '$tmp/z2.txt' && grep -q 'bits/dim' '$tmp/z2.txt'"

# training with HMC chains: the log's sampler figures, the buffer's ages and
# the energies' quantiles; a resumed run equals a straight one
hmc=(--model "$tmp/tiny.model" --data fmnist:test --val 0 --batch 16 --threads 1 --mode jem --sampler hmc
    --hmc-steps 2 --leapfrog 2 --buffer 64 --n-samples 8 --w-xy 0.5 --sgld-clamp --log-every 2)
"$JEM" train "${hmc[@]}" --iters 6 --out "$tmp/hs.safetensors" --log "$tmp/hs.log" > /dev/null 2> "$tmp/hs.err"
check "[ $? -eq 0 ] && grep -q 'HMC chains: 2 iterations of 2 leapfrog steps' '$tmp/hs.err'"
for k in chain_accept hmc_step buffer_age_mean buffer_age_q e_data_q e_sample_q; do
    check "[ \$(grep -c '\"$k\":' '$tmp/hs.log') -eq 3 ]"
done
check "! grep -q sgld_grad_norm '$tmp/hs.log'"
# seven quantiles each, in order
check "tail -n 1 '$tmp/hs.log' | sed -n 's/.*\"e_sample_q\":\[\([^]]*\)\].*/\1/p' | tr ',' '\n' |
    awk '{ if (NR > 1 && \$1 < p) bad = 1; p = \$1 } END { exit !(NR == 7 && !bad) }'"
check "tail -n 1 '$tmp/hs.log' | grep -q '\"buffer_age_q\":\[[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*,[0-9]*,6\]'"
"$JEM" info "$tmp/hs.safetensors" --json > "$tmp/hs.info"
check "grep -q '\"_buffer.age\"' '$tmp/hs.info' && grep -q '\"jem.train.sampler\":\"hmc\"' '$tmp/hs.info'"
"$JEM" train "${hmc[@]}" --iters 3 --out "$tmp/hp.safetensors" > /dev/null 2>&1
"$JEM" train "${hmc[@]}" --iters 6 --resume "$tmp/hp.safetensors" --out "$tmp/hp.safetensors" > /dev/null 2>&1
check "[ $? -eq 0 ]"
"$JEM" info "$tmp/hs.safetensors" --diff "$tmp/hp.safetensors" --json > "$tmp/hd.json"
check "[ \"\$(num max_abs_diff '$tmp/hd.json')\" = 0 ]"
# MALA chains log their acceptance, SGLD's their gradient norm
"$JEM" train "${hmc[@]:0:12}" --sampler mala --buffer 64 --n-samples 8 --log-every 1 --iters 2 --out "$tmp/hm.safetensors" \
    --log "$tmp/hm.log" > /dev/null 2>&1
check "[ $? -eq 0 ] && grep -q '\"chain_accept\":' '$tmp/hm.log' && grep -q sgld_grad_norm '$tmp/hm.log'"

# expect CODE PATTERN ARGS...: jem ARGS exits with CODE and stderr holds PATTERN
expect() {
    local code=$1 pat=$2
    shift 2
    "$JEM" "$@" > "$tmp/out" 2> "$tmp/err"
    local rc=$?
    if [ $rc -eq "$code" ] && grep -q -- "$pat" "$tmp/err"; then ok; else
        bad "jem $*: exit $rc (want $code and '$pat'): $(head -c 400 "$tmp/err")"
    fi
}
cut="$tmp/cut.safetensors"
head -c 2000 "$m" > "$cut"
expect 2 "--sampler 'nuts'" sample --model "$cut" --sampler nuts
expect 2 "--mala and --sampler hmc exclude each other" sample --model "$cut" --mala --sampler hmc
expect 2 "--leapfrog needs --sampler hmc" sample --model "$cut" --leapfrog 4
expect 2 "--target-accept needs --sampler hmc" sample --model "$cut" --sampler mala --target-accept 0.6
expect 2 "--noise is for SGLD and MALA" sample --model "$cut" --sampler hmc --noise 0.1
expect 2 "--temperature needs --sampler mala or hmc" sample --model "$cut" --temperature 0.5
expect 2 "--leapfrog 0: out of range" sample --model "$cut" --sampler hmc --leapfrog 0
expect 2 "--energy: energy 'm1:class=', term 1: 'class=': the class must be a number" sample --model "$cut" \
    --energy 'm1:class='
expect 2 "--energy: energy 'm1:0', term 1: weight '0' must be finite, non-zero" sample --model "$cut" --energy m1:0
expect 2 "--energy names model 'm3'" sample --model "$cut" --energy 'm1,m3:class=2'
expect 2 "--models names the models of --energy, which is missing" sample --model "$cut" --models "m2=$m"
expect 2 "--models: m2=$tmp/none.st: no such readable file" sample --model "$cut" --energy m2 --models "m2=$tmp/none.st"
expect 2 "--models: models 'm2', entry 1: want NAME=PATH" sample --model "$cut" --energy m2 --models m2
expect 2 "--energy and --conditional or --class exclude each other" sample --model "$cut" --energy m1 --class 2
expect 2 "--trace $tmp/none/t.png: folder $tmp/none does not exist" sample --model "$cut" --trace "$tmp/none/t.png"
expect 1 "class 12 of model 'm1', which has 10 classes" sample --model "$m" --energy 'm1:class=12' --n 1 --steps 1 \
    --out "$tmp/x.png"
expect 2 "--chains 1: out of range" logz --model "$cut" --chains 1
expect 2 "--T 0: out of range" logz --model "$cut" --T 0
expect 2 "--sd-min is for --base gauss" logz --model "$cut" --sd-min 0.1
expect 2 "--base-data is for --base gauss" logz --model "$cut" --base-data fmnist:train
expect 2 "--base 'normal'" logz --model "$cut" --base normal
expect 2 "--base-data noise:uniform:10: the per-class Gaussians need labels" logz --model "$cut" --base gauss \
    --base-data noise:uniform:10
# the trainer's sampler options, refused before anything is loaded
tr=(train --mode jem --data fmnist:test --iters 1 --out "$tmp/never.safetensors")
expect 2 "--leapfrog needs --sampler hmc" "${tr[@]}" --leapfrog 3
expect 2 "--target-accept needs --sampler hmc" "${tr[@]}" --sampler mala --target-accept 0.5
expect 2 "--sgld-step is for SGLD and MALA chains" "${tr[@]}" --sampler hmc --sgld-step 0.5
expect 2 "--sgld-steps is for SGLD and MALA chains" "${tr[@]}" --sampler hmc --sgld-steps 5
expect 2 "--mala and --sampler hmc exclude each other" "${tr[@]}" --mala --sampler hmc
expect 2 "--temperature needs --sampler mala or hmc" "${tr[@]}" --temperature 0.5
expect 2 "--target-accept 1: out of range" "${tr[@]}" --sampler hmc --target-accept 1
expect 2 "--sampler 'nuts'" "${tr[@]}" --sampler nuts
expect 2 "--sampler applies to --mode jem only" train --data fmnist:test --iters 1 --sampler hmc \
    --out "$tmp/never.safetensors"
check "[ ! -e '$tmp/never.safetensors' ]"
finish cli_samplers

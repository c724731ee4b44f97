#!/usr/bin/env bash
# The evaluation commands end to end on a tiny model trained for a few
# iterations: eval (calibration, reliability diagram), ood, score, attack
# (with and without the defence), sample; outputs exist and JSON parses
# (report: tests/cli_report.sh).
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
png() { [ "$(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
json_ok() { grep -q '^{.*}$' "$1"; }
write_model "$tmp/small.model" small 1x28x28 8 "16/2 16/2"
m="$tmp/m.safetensors"
"$JEM" train --model "$tmp/small.model" --data fmnist:test --val 0 --iters 80 --batch 32 --lr 3e-3 --out "$m" > /dev/null 2>&1
check "[ -f '$m' ]"

"$JEM" eval --model "$m" --data fmnist:test --limit 500 --reliability "$tmp/rel.png" --json > "$tmp/eval.json"
check "[ $? -eq 0 ]"
check "json_ok '$tmp/eval.json'"
check "grep -q '\"ece\":' '$tmp/eval.json' && grep -q '\"brier\":' '$tmp/eval.json' && grep -q '\"T\":' '$tmp/eval.json'"
check "png '$tmp/rel.png'"
acc=$(sed -n 's/.*"accuracy":\([0-9.]*\).*/\1/p' "$tmp/eval.json")
check "awk 'BEGIN{exit !($acc > 0.2)}'"

"$JEM" ood --model "$m" --limit 200 --hist "$tmp/h.png" --roc "$tmp/r.png" --json > "$tmp/ood.json"
check "[ $? -eq 0 ]"
check "json_ok '$tmp/ood.json'"
check "grep -q 'mnist:test' '$tmp/ood.json' && grep -q 'noise:uniform' '$tmp/ood.json' && grep -q 'interp:' '$tmp/ood.json'"
check "png '$tmp/h.png' && png '$tmp/r.png'"

"$JEM" score --model "$m" --data mnist:test --limit 30 --format csv --out "$tmp/s.csv"
check "[ $? -eq 0 ] && [ \$(wc -l < '$tmp/s.csv') -eq 31 ]"
check "head -1 '$tmp/s.csv' | grep -q '^index,label,pred,pred_name,logpx,max_softmax,max_logit,neg_grad_norm,energy_t$'"
"$JEM" score --model "$m" --data noise:uniform:5 --format jsonl > "$tmp/s.jsonl"
check "[ \$(grep -c '\"logpx\"' '$tmp/s.jsonl') -eq 5 ]"

"$JEM" attack --model "$m" --n 40 --steps 3 --eps 0,0.05,0.2 --curve "$tmp/a.png" --json > "$tmp/a.json"
check "[ $? -eq 0 ] && json_ok '$tmp/a.json' && png '$tmp/a.png'"
# robust accuracy never rises with epsilon, and epsilon 0 is clean accuracy
und=$(sed -n 's/.*"undefended":\[\([^]]*\)\].*/\1/p' "$tmp/a.json")
check "awk -F, '{exit !(\$1 >= \$2 && \$2 >= \$3)}' <<< '$und'"
"$JEM" attack --model "$m" --n 10 --steps 2 --eps 0,0.1 --norm l2 --defence sgld --defence-steps 2 --defence-chains 2 --eot 2 --json > "$tmp/d.json"
check "[ $? -eq 0 ] && grep -q '\"bpda_eot\"' '$tmp/d.json'"

"$JEM" sample --model "$m" --n 4 --steps 3 --out "$tmp/s.png" > /dev/null
check "png '$tmp/s.png'"
"$JEM" sample --model "$m" --inpaint bottom --data fmnist:test --n 4 --steps 3 --out "$tmp/i.png" > /dev/null 2>&1
check "png '$tmp/i.png'"

# bad input: unknown data set, unknown option, missing model
"$JEM" ood --model "$m" --out nosuch:thing > /dev/null 2> "$tmp/e1"
check "[ $? -ne 0 ] && grep -q 'nosuch' '$tmp/e1'"
"$JEM" attack --model "$m" --epsilon 3 > /dev/null 2> "$tmp/e2"
check "[ $? -eq 2 ] && grep -q -- '--epsilon' '$tmp/e2'"
"$JEM" eval --model "$tmp/none.safetensors" > /dev/null 2> "$tmp/e3"
check "[ $? -ne 0 ] && grep -q 'none.safetensors' '$tmp/e3'"

# bench on a small model whose blocks fuse (channels multiples of 16)
write_model "$tmp/fast.model" fast 1x16x16 16 "16/1 32/2"
"$JEM" bench --model "$tmp/fast.model" --reps 1 --sgld-steps 2 --layers --json > "$tmp/bench.json"
check "[ $? -eq 0 ]"
check "json_ok '$tmp/bench.json'"
check "grep -q '\"jem_iteration\":{\"batch\":64,\"images_per_s\":[0-9][^,]*,\"ms\":[0-9][^,]*,\"minor_faults\":[0-9]' '$tmp/bench.json' && grep -q '\"layers\":\[{' '$tmp/bench.json' && grep -q '\"blocks\":\[' '$tmp/bench.json' && grep -q '\"peak_rss_mb\":' '$tmp/bench.json'"
# the planner's choice for every layer, pass and block; bad kernel settings
# refused before anything is loaded
check "grep -q '\"kernel_backward_weight\":\"[a-z]*\",\"tile_backward_weight\":[024]' '$tmp/bench.json' && grep -q '\"blocks\":\[{\"name\":\"b1\",\"shape\":\"[^\"]*\",\"fused\":' '$tmp/bench.json'"
# the multiply-add peak: positive and finite (JSON writes NaN and infinities
# as null), the threads' product, bf16 measured exactly when the CPU has
# AVX512_BF16; every layer's and fused block's passes as % of the fp32 peak
num='[0-9][0-9.e+-]*'
check "grep -q '\"fma_peak\":{\"threads\":[1-9][0-9]*,\"fp32_isa\":\"\(avx512f\|avx2\|sse2\|scalar\)\",\"fp32_gflops_per_thread\":$num,\"fp32_gflops\":$num,\"bf16_supported\":\(true\|false\),\"bf16_gflops_per_thread\":\($num\|null\),\"bf16_gflops\":\($num\|null\),\"forward_pct_fp32_peak\":$num}' '$tmp/bench.json'"
pk=$(sed -n 's/.*"fma_peak":{"threads":\([0-9]*\),[^}]*"fp32_gflops_per_thread":\([^,]*\),"fp32_gflops":\([^,]*\),"bf16_supported":\([a-z]*\),"bf16_gflops_per_thread":\([^,]*\),"bf16_gflops":\([^,]*\),.*/\1 \2 \3 \4 \5 \6/p' "$tmp/bench.json")
# (no CPU thread does 1e5 GFLOP/s: a loop the compiler removed would)
check "awk '{exit !(NF == 6 && \$2 > 0 && \$2 < 1e5 && (\$3 - \$1 * \$2) ^ 2 < 1e-12 * \$3 ^ 2)}' <<< '$pk'"
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512_bf16 /proc/cpuinfo; then
    check "awk '{exit !(\$4 == \"true\" && \$5 > 0 && \$5 < 1e5 && (\$6 - \$1 * \$5) ^ 2 < 1e-12 * \$6 ^ 2)}' <<< '$pk'"
else
    check "awk '{exit !(\$4 == \"false\" && \$5 == \"null\" && \$6 == \"null\")}' <<< '$pk'"
fi
nl=$(grep -o '"kernel_backward_weight":' "$tmp/bench.json" | wc -l)
nb=$(grep -o '"fused":true' "$tmp/bench.json" | wc -l)
check "[ $nl -ge 4 ] && [ $nb -ge 1 ]"
check "[ \$(grep -o '\"backward_weight_gflops\":$num,\"forward_pct_fp32_peak\":$num,\"backward_input_pct_fp32_peak\":$num,\"backward_weight_pct_fp32_peak\":$num,' '$tmp/bench.json' | wc -l) -eq $nl ]"
check "[ \$(grep -o '\"backward_input_weight_gflops\":$num,\"forward_pct_fp32_peak\":$num,\"backward_input_pct_fp32_peak\":$num,\"backward_input_weight_pct_fp32_peak\":$num,' '$tmp/bench.json' | wc -l) -eq $nb ]"
# the first layer's rates and their percentages agree with the peak
fl=$(sed -n 's/.*"layers":\[{[^}]*"forward_gflops":\([^,]*\),"backward_input_gflops":\([^,]*\),"backward_weight_gflops":\([^,]*\),"forward_pct_fp32_peak":\([^,]*\),"backward_input_pct_fp32_peak":\([^,]*\),"backward_weight_pct_fp32_peak":\([^,]*\),.*/\1 \2 \3 \4 \5 \6/p' "$tmp/bench.json")
check "awk -v p=\"\$(cut -d' ' -f3 <<< '$pk')\" '{for (k = 1; k <= 3; k++) if ((\$(k + 3) - 100 * \$k / p) ^ 2 > 1e-12 * \$(k + 3) ^ 2 + 1e-30) exit 1; exit !(NF == 6)}' <<< '$fl'"
# the table: the peak line and a "% of peak" column on every layer's row
"$JEM" bench --model "$tmp/tiny.model" --reps 1 --sgld-steps 1 --layers > "$tmp/bench.txt"
check "[ $? -eq 0 ] && grep -q '^multiply-add peak (register-only loops, [0-9]* threads\?): fp32 [0-9.]* GFLOP/s' '$tmp/bench.txt'"
check "grep -q '^layer .* fwd .* bwd-in .* bwd-w  *% of peak   plan' '$tmp/bench.txt' && grep -q '^block .* % of peak   plan' '$tmp/bench.txt'"
check "[ \$(grep -c '^\(stem\|b[0-9]*\.\(c1\|c2\|sc\)\) .*[0-9.]  *[0-9 ]*[0-9]/ *[0-9]*/ *[0-9]*   [a-z]' '$tmp/bench.txt') -eq \$(grep -c '^\(stem\|b[0-9]*\.\(c1\|c2\|sc\)\) ' '$tmp/bench.txt') ]"
JEM_WINOGRAD_TILE=3 "$JEM" bench --model "$tmp/fast.model" --reps 1 > /dev/null 2> "$tmp/bench.err"
check "[ $? -eq 2 ] && grep -q 'JEM_WINOGRAD_TILE=3' '$tmp/bench.err'"

# training through the fused blocks (channels multiples of 16) learns as
# the layer-by-layer path does (JEM_FUSE=0): same run, rounding apart
write_model "$tmp/fast28.model" fast28 1x28x28 16 "16/2 32/2"
for f in 1 0; do
    JEM_FUSE=$f "$JEM" train --model "$tmp/fast28.model" --data fmnist:test --val 0 --iters 100 --batch 32 --lr 3e-3 \
        --warmup 10 --out "$tmp/f$f.safetensors" > /dev/null 2>&1
    check "[ $? -eq 0 ]"
    "$JEM" eval --model "$tmp/f$f.safetensors" --data fmnist:test --limit 500 --json > "$tmp/f$f.json"
done
a1=$(sed -n 's/.*"accuracy":\([0-9.]*\).*/\1/p' "$tmp/f1.json")
a0=$(sed -n 's/.*"accuracy":\([0-9.]*\).*/\1/p' "$tmp/f0.json")
check "awk 'BEGIN{d = $a1 - $a0; exit !($a1 > 0.3 && $a0 > 0.3 && d < 0.05 && d > -0.05)}'"

# --precision: the Winograd products of the fused blocks in bf16 with fp32
# sums where the CPU has AVX512-BF16 (the same model's accuracy within a
# point of fp32's on the same images; a JEM run with bf16 chains trains
# and says so in its metadata), refused with the reason where it has not;
# a bad value, or the option on a softmax run, refused before anything
# is loaded
"$JEM" eval --model "$tmp/f1.safetensors" --precision fp16 > /dev/null 2> "$tmp/p1.err"
check "[ $? -eq 2 ] && grep -q -- \"--precision 'fp16': want fp32 or bf16\" '$tmp/p1.err'"
"$JEM" sample --model "$tmp/f1.safetensors" --precision fp16 --out "$tmp/p1.png" > /dev/null 2> "$tmp/p1b.err"
check "[ $? -eq 2 ] && grep -q -- '--precision' '$tmp/p1b.err' && [ ! -e '$tmp/p1.png' ]"
"$JEM" train --model "$tmp/fast28.model" --precision bf16 --iters 2 --out "$tmp/p.safetensors" > /dev/null 2> "$tmp/p2.err"
check "[ $? -eq 2 ] && grep -q 'precision.*--mode jem' '$tmp/p2.err' && [ ! -e '$tmp/p.safetensors' ]"
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512_bf16 /proc/cpuinfo; then
    "$JEM" eval --model "$tmp/f1.safetensors" --data fmnist:test --limit 500 --precision bf16 --json > "$tmp/fb.json"
    check "[ $? -eq 0 ]"
    ab=$(sed -n 's/.*"accuracy":\([0-9.]*\).*/\1/p' "$tmp/fb.json")
    check "awk 'BEGIN{d = $ab - $a1; exit !(d <= 0.01 && d >= -0.01)}'"
    "$JEM" train --mode jem --model "$tmp/fast28.model" --data fmnist:test --val 0 --iters 6 --batch 16 \
        --sgld-steps 2 --precision bf16 --out "$tmp/pj.safetensors" > /dev/null 2>&1
    check "[ $? -eq 0 ] && '$JEM' info '$tmp/pj.safetensors' --json | grep -q '\"jem.train.chain_precision\":\"bf16\"'"
    "$JEM" sample --model "$tmp/pj.safetensors" --n 4 --steps 3 --precision bf16 --out "$tmp/pb.png" > /dev/null
    check "png '$tmp/pb.png'"
    "$JEM" bench --model "$tmp/fast.model" --reps 1 --sgld-steps 1 --precision bf16 --json > "$tmp/pb.json"
    check "[ $? -eq 0 ] && grep -q '\"precision\":\"bf16\"' '$tmp/pb.json' && grep -q '\"jem_iteration\":{' '$tmp/pb.json'"
else
    "$JEM" eval --model "$tmp/f1.safetensors" --limit 10 --precision bf16 > /dev/null 2> "$tmp/p3.err"
    check "[ $? -eq 2 ] && grep -q 'AVX512-BF16' '$tmp/p3.err'"
fi

finish cli_eval

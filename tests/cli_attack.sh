#!/usr/bin/env bash
# jem attack beyond PGD, end to end on a tiny model trained for a few
# iterations: APGD-CE, APGD-DLR and Square alone, the suite in AutoAttack
# order (accuracy after each attack never above the one before, the worst
# case never above any), Square's queries within the budget, the masking
# checks in the table and the JSON, the same seed giving the same figures,
# the suite through the defence, and a model whose gradient is zeroed
# (the hidden --zero-grad hook) flagged with warnings on stderr, in the
# text and in the JSON.
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
m="$tmp/m.safetensors"
"$JEM" train --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 60 --batch 32 --lr 3e-3 --out "$m" \
    > /dev/null 2>&1
check "[ -f '$m' ]"
# the JSON array of KEY (the first one) as comma-separated numbers
arr() { sed -n "s/.*\"$1\":\[\([^]]*\)\].*/\1/p" "$2" | head -1; }
# "a,b,c" is non-increasing
falls() { awk -F, '{for (i = 2; i <= NF; i++) if ($i > $(i-1) + 1e-12) exit 1}' <<< "$1"; }

for a in apgd-ce apgd-dlr square; do
    if [ $a = square ]; then budget="--queries 40"; else budget="--steps 3"; fi
    "$JEM" attack --model "$m" --n 20 --attack $a $budget --eps 0,0.05,0.3 --no-checks --json > "$tmp/$a.json" \
        2> /dev/null
    check "grep -q '\"attack\":\"$a\"' '$tmp/$a.json' && ! grep -q '\"checks\"' '$tmp/$a.json'"
    check "falls '$(arr undefended "$tmp/$a.json")'"
done
# a strong enough attack at eps 0.3 (L-inf) breaks a tiny model's images
check "awk -F, '{exit !(\$3 < 0.2)}' <<< '$(arr undefended "$tmp/apgd-ce.json")'"
check "grep -q '\"queries\":40' '$tmp/square.json' && grep -q '\"square_queries\":\[0,' '$tmp/square.json'"
check "awk -F, '{for (i = 1; i <= NF; i++) if (\$i > 40) exit 1}' <<< '$(arr square_queries "$tmp/square.json")'"

# the suite: accuracy after each attack in turn, the checks, no warnings on a model with its gradient
"$JEM" attack --model "$m" --n 30 --suite auto --steps 5 --queries 50 --eps 0,0.02,0.05,0.3 --json \
    > "$tmp/s.json" 2> "$tmp/s.err"
check "[ $? -eq 0 ] && grep -q '\"attack\":\"auto\",\"suite\":\[\"apgd-ce\",\"apgd-dlr\",\"square\"\]' '$tmp/s.json'"
ce=$(arr apgd-ce "$tmp/s.json"); dlr=$(arr apgd-dlr "$tmp/s.json"); sq=$(arr square "$tmp/s.json")
und=$(arr undefended "$tmp/s.json")
check "falls '$und' && [ '$und' = '$sq' ]"
check "paste -d, <(tr , '\n' <<< '$ce') <(tr , '\n' <<< '$dlr') <(tr , '\n' <<< '$sq') | awk -F, '{if (\$2 > \$1 || \$3 > \$2) exit 1}'"
for c in monotone unbounded gradient_free stronger; do
    check "grep -q '\"$c\":{\"pass\":\(true\|false\),\"value\":' '$tmp/s.json'"
done
check "grep -q '\"unbounded\":{\"pass\":true,\"value\":0,\"tol\":0,\"eps\":1}' '$tmp/s.json'"
# the same seed, the same figures; the text table shows the checks
"$JEM" attack --model "$m" --n 30 --suite auto --steps 5 --queries 50 --eps 0,0.02,0.05,0.3 --json > "$tmp/s2.json" 2>&1
check "cmp -s '$tmp/s.json' '$tmp/s2.json'"
"$JEM" attack --model "$m" --n 30 --suite auto --steps 5 --queries 50 --eps 0,0.02,0.05,0.3 > "$tmp/s.txt" 2>&1
check "grep -q 'APGD-CE  *+APGD-DLR  *+Square  *worst  *queries' '$tmp/s.txt'"
check "grep -q 'eps 1 (whole box) reaches 0 %  *pass' '$tmp/s.txt' && grep -q 'masking checks, undefended' '$tmp/s.txt'"

# through the defence: Square by queries, gradients by BPDA + EOT, the checks of both sides
"$JEM" attack --model "$m" --n 12 --suite auto --steps 2 --queries 10 --eps 0,0.1 --defence sgld --defence-n 4 \
    --defence-steps 1 --defence-chains 1 --eot 1 --check-n 4 --json > "$tmp/d.json" 2> /dev/null
check "[ $? -eq 0 ] && grep -q '\"defence\":{\"n\":4,.*\"after\":{\"apgd-ce\":\[' '$tmp/d.json'"
check "grep -q '\"defence\":{.*\"checks\":{\"n\":4,\"monotone\"' '$tmp/d.json'"

# a model whose gradient is zeroed: Square finds what the gradient attacks cannot; flagged everywhere
"$JEM" attack --model "$m" --n 30 --suite auto --steps 5 --queries 100 --eps 0,0.05,0.3 --zero-grad --json \
    > "$tmp/z.json" 2> "$tmp/z.err"
check "[ $? -eq 0 ] && grep -q '\"gradient_free\":{\"pass\":false' '$tmp/z.json'"
check "grep -q '\"warnings\":\[\".*Square breaks [0-9.]* % of the images the gradient attacks left' '$tmp/z.json'"
check "grep -q 'jem attack: warning: undefended, eps 0.3: Square breaks' '$tmp/z.err'"
"$JEM" attack --model "$m" --n 30 --suite auto --steps 5 --queries 100 --eps 0,0.05,0.3 --zero-grad > "$tmp/z.txt" \
    2> /dev/null
check "grep -q 'Square breaks no more than the gradient attacks  *FAIL' '$tmp/z.txt' && grep -q '^warning: ' '$tmp/z.txt'"
check "grep -q '^     0.3 .*!' '$tmp/z.txt'"
# the model with its gradient: no warnings
check "grep -q '\"warnings\":\[\]' '$tmp/s.json' && [ ! -s '$tmp/s.err' ]"
finish cli_attack

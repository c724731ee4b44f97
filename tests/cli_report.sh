#!/usr/bin/env bash
# jem report end to end on a small model with small sizes: the page and
# report.json (version, date, the checkpoint's metadata, image counts, sets
# named by what was used, undefended and defended results apart), --quick
# against explicit sizes, --no-defence, --json and quiet progress; the
# replay buffer's section (and its note for a file without one); one
# error and nothing written for a bad checkpoint or a failing step; options
# refused before any work.
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
write_model "$tmp/small.model" small 1x28x28 8 "16/2 16/2"
# a name the page must escape
m="$tmp/m&<b>.safetensors"
# one thread: quicker than two on a busy machine
"$JEM" train --model "$tmp/small.model" --data fmnist:test --val 500 --eval-every 20 --iters 40 --batch 32 \
    --lr 3e-3 --out "$m" --threads 1 > /dev/null 2>&1
check "[ -f '$m' ]"
nfiles() { find "$1" -mindepth 1 | wc -l; }

# --- a small run: --quick sets the sizes not given, the ones given win
r1="$tmp/r1"
"$JEM" report --model "$m" --out "$r1" --quick --limit 100 --attack-n 20 --defence-n 5 --no-temperature \
    --ood mnist:test,noise:uniform:2000 --threads 1 --json > "$tmp/r1.out" 2> "$tmp/r1.err"
check "[ $? -eq 0 ]"
j="$r1/report.json"
check "[ \$(nfiles '$r1') -eq 2 ] && [ -s '$r1/report.html' ] && [ -s '$j' ]"   # no temporary files, nothing else
# --json: the summary on stdout, one line; nothing on stderr (not a terminal)
check "[ \$(wc -l < '$tmp/r1.out') -eq 1 ] && grep -q '^{\"jem_version\":\"[0-9.]*\",\"date\":\"20' '$tmp/r1.out'"
check "grep -q '\"summary\":{\"accuracy\":0\\.[0-9]*,\"ece\":' '$tmp/r1.out' && grep -q '\"html\":\"$r1/report.html\"' '$tmp/r1.out'"
check "[ ! -s '$tmp/r1.err' ]"
# version, date, the checkpoint's metadata (training command, iterations, accuracy at save)
check "grep -q '^{\"jem_version\":\"[0-9.]*\",\"date\":\"20[0-9-]*T[0-9:]*[-+][0-9]*\",' '$j'"
check "grep -q '\"jem.train.command\":\"jem train --model ' '$j' && grep -q '\"jem.train.iter\":\"40\"' '$j'"
check "grep -q '\"jem.train.val_acc\":\"0\\.[0-9]*\",\"jem.train.val_n\":\"500\",\"jem.train.val_iter\":\"40\"' '$j'"
check "grep -q '\"training_state\":true' '$j' && grep -q '\"jem.train.mode\":\"softmax\"' '$j'"
# the settings: explicit sizes kept, --quick's for the others
check "grep -q '\"limit\":100,.*\"attack_n\":20,\"steps\":3,\"suite\":true,\"queries\":50,\"defence\":true,\"defence_n\":5,\"defence_steps\":2,\"defence_chains\":1,\"eot\":1,\"sample_n\":2,\"sample_steps\":10,.*\"quick\":true' '$j'"
# image counts behind every table; a synthetic set named by the images used
check "grep -q '\"calibration\":{\"model\":\"[^\"]*\",\"data\":\"fmnist:test\",\"n\":100,' '$j'"
check "grep -q '\"n_in\":100,\"detector\":\"logpx\",\"sets\":{\"mnist:test\":{\"n\":100,' '$j' && grep -q '\"noise:uniform:100\":{\"n\":100,' '$j'"
# covariate shift: --quick's 100 images, 11 corruptions by 6 severities (clean first)
check "grep -q '\"shift\":{\"model\":\"[^\"]*\",\"data\":\"fmnist:test\",\"n\":100,' '$j' && grep -q '\"jpeg\":{\"accuracy\":\[[^],]*,[^],]*,[^],]*,[^],]*,[^],]*,[^],]*\]' '$j'"
check "! grep -q 'noise:uniform:2000' '$j' '$r1/report.html'"
check "grep -q '\"attack_linf\":{[^}]*\"n\":20,' '$j' && grep -q '\"attack_l2\":{[^}]*\"n\":20,' '$j'"
check "grep -q '\"defence\":{\"n\":5,.*\"worst\":\[[^]]*\],\"undefended\":\[' '$j'"
check "grep -q '\"samples\":{\"from\":\"noise\",\"per_class\":2,\"chains\":20,\"steps\":10,' '$j'"
# the worst case over APGD-CE, APGD-DLR and Square, with the masking checks of both sides
check "grep -q '\"worst_linf\":{[^}]*\"n\":20,\"attack\":\"auto\",\"suite\":\[\"apgd-ce\",\"apgd-dlr\",\"square\"\],\"norm\":\"linf\",\"steps\":3,' '$j'"
check "grep -q '\"worst_l2\":{.*\"queries\":50,' '$j' && grep -q '\"worst_linf\":{.*\"defence\":{\"n\":5,.*\"checks\":{\"n\":5,' '$j'"
check "grep -q '\"worst_linf_undefended\":{' '$tmp/r1.out' && grep -q '\"worst_l2_defended\":{' '$tmp/r1.out'"
# the page: self-contained, every picture inline, counts in captions, the name escaped
h="$r1/report.html"
check "[ \$(grep -o '<img ' '$h' | wc -l) -eq 11 ] && [ \$(grep -o 'src=\"data:image/png;base64,[A-Za-z0-9+/]*=*\"' '$h' | wc -l) -eq 11 ]"
check "! grep -qi 'src=\"http\|href=\"http\|<script\|<link' '$h'"
check "grep -q 'm&amp;&lt;b&gt;.safetensors' '$h' && ! grep -q 'm&<b>' '$h'"
check "grep -q '100 images of fmnist:test' '$h' && grep -q 'Undefended: the first 20 images of fmnist:test' '$h'"
check "grep -q 'the first 5 images, attacked with BPDA' '$h' && grep -q 'accuracy at save</th><td>0\\.[0-9]* on 500' '$h'"
check "grep -q 'Accuracy and calibration' '$h' && grep -q 'Out-of-distribution detection' '$h' && grep -q 'Adversarial robustness' '$h'"
check "grep -q 'Worst case over a stronger attacker, L-inf' '$h' && grep -q '<th>+ APGD-DLR</th><th>+ Square</th><th>worst case</th>' '$h'"
check "[ \$(grep -o 'Gradient-masking checks, undefended' '$h' | wc -l) -eq 4 ] && [ \$(grep -o 'Gradient-masking checks, SGLD purification' '$h' | wc -l) -eq 4 ]"

# --- --no-defence keeps the undefended results; text mode says what it wrote
r2="$tmp/r2"
"$JEM" report --model "$m" --out "$r2" --limit 50 --attack-n 10 --steps 1 --no-defence --sample-n 0 --no-temperature \
    --ood noise:constant:50 --threads 1 > "$tmp/r2.out" 2> "$tmp/r2.err"
check "[ $? -eq 0 ] && grep -q '^wrote $r2/report.html and $r2/report.json$' '$tmp/r2.out'"
check "grep -q '\"worst_linf\":{[^}]*\"n\":10,' '$r2/report.json' && grep -q '\"queries\":1000,' '$r2/report.json'"
check "grep -q '\"attack_linf\":{[^}]*\"n\":10,[^}]*\"undefended\":\[0[.0-9]*,' '$r2/report.json'"
check "grep -q '\"attack_l2\":{[^}]*\"undefended\":\[' '$r2/report.json' && ! grep -q '\"defence\":{' '$r2/report.json'"
check "! grep -q 'not run)</p>\|\"samples\":' '$r2/report.json' '$r2/report.html'"
check "[ \$(grep -o '<img ' '$r2/report.html' | wc -l) -eq 8 ] && grep -q '\"shift_n\":50,' '$r2/report.json'"
check "[ ! -s '$tmp/r2.err' ]"

# a softmax run holds no replay buffer: the section says so in one line
check "grep -q '\"buffer\":{\"present\":false,' '$j' && grep -q 'Not shown: <code>[^<]*</code> holds no replay buffer' '$h'"

# --- the replay buffer of a JEM training checkpoint (8 iterations, 64 slots):
# its ages (known, in [0, 8], quantiles in order) and the energies of the
# buffer's first --limit images and of --data's (finite; the data's mean as
# the logits of jem eval give it); an exported copy: a note, no failure
jm="$tmp/jem.safetensors"
"$JEM" train --mode jem --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 8 --batch 16 --sgld-steps 2 \
    --buffer 64 --reinit 0.3 --out "$jm" --threads 1 > /dev/null 2>&1
check "[ -f '$jm' ] && [ '$(iter_of "$jm")' = 8 ]"
rb="$tmp/rb"
"$JEM" report --model "$jm" --out "$rb" --limit 30 --attack-n 2 --steps 1 --no-defence --sample-n 0 --no-temperature \
    --ood noise:uniform:30 --threads 1 > /dev/null 2> "$tmp/rb.err"
check "[ $? -eq 0 ] && [ ! -s '$tmp/rb.err' ]"
bj=$(grep -o '"buffer":{"present":true.*' "$rb/report.json")
check "grep -q '^\"buffer\":{\"present\":true,\"slots\":64,\"iteration\":8,\"ages\":{\"n\":64,\"known\":64,\"unknown\":0,' <<< '$bj'"
ages=$(sed -n 's/.*"ages":{[^}]*"min":\([0-9-]*\),"median":\([0-9-]*\),"max":\([0-9-]*\),"mean":\([-0-9.e]*\),.*/\1 \2 \3 \4/p' <<< "$bj")
check "awk '{exit !(NF == 4 && \$1 >= 0 && \$1 <= \$2 && \$2 <= \$3 && \$3 <= 8 && \$4 >= \$1 && \$4 <= \$3)}' <<< '$ages'"
qs=$(sed -n 's/.*"quantiles":{"levels":\[0,0.1,0.25,0.5,0.75,0.9,1\],"values":\[\([0-9,]*\)\].*/\1/p' <<< "$bj")
check "awk -F, '{for (i = 1; i <= NF; i++) if (\$i < 0 || \$i > 8 || (i > 1 && \$i < \$(i - 1))) exit 1; exit !(NF == 7)}' <<< '$qs'"
num='-\{0,1\}[0-9][0-9.e+-]*'
check "grep -q '\"energy\":{\"data_set\":\"fmnist:test\",\"buffer_images\":30,\"buffer\":{\"n\":30,\"nonfinite\":0,\"mean\":$num,\"sd\":$num,' <<< '$bj'"
check "grep -q '\"data\":{\"n\":30,\"nonfinite\":0,\"mean\":$num,\"sd\":$num,\"min\":$num,\"median\":$num,\"max\":$num},\"gap\":$num}' <<< '$bj'"
dmean=$(sed -n 's/.*"data":{"n":30,"nonfinite":0,"mean":\([^,]*\),.*/\1/p' <<< "$bj")
"$JEM" eval --model "$jm" --data fmnist:test --limit 30 --no-temperature --dump-logits "$tmp/lg.bin" --threads 1 \
    > /dev/null 2>&1
emean=$(od -An -v -f -w40 "$tmp/lg.bin" | awk '{m = $1; for (i = 2; i <= NF; i++) if ($i > m) m = $i; s = 0
    for (i = 1; i <= NF; i++) s += exp($i - m); e -= m + log(s); n++} END {if (n == 30) printf "%.9g", e / n}')
check "awk 'BEGIN{exit !(\"$emean\" != \"\" && ($dmean - ($emean)) ^ 2 < 1e-10 * ($emean) ^ 2)}'"
check "grep -q '\"buffer_age_median\":[0-8],\"buffer_energy_mean\":{\"buffer\":$num,\"data\":$num}' '$rb/report.json'"
hb="$rb/report.html"
check "grep -q '<section id=\"buffer\"><h2>Replay buffer</h2><p class=cap>64 chains of 1x28x28 images saved at iteration 8' '$hb'"
check "grep -q 'the replay buffer&#39;s 64 slots of known age' '$hb' && grep -q '(the first 30 of its 64) and of 30 images of fmnist:test' '$hb'"
check "[ \$(grep -o '<img ' '$hb' | wc -l) -eq 10 ]"   # the 8 of the run above and the ages' and energies' histograms
"$JEM" export "$jm" "$tmp/jx.safetensors" > /dev/null 2>&1
"$JEM" report --model "$tmp/jx.safetensors" --out "$tmp/rx" --limit 30 --attack-n 2 --steps 1 --no-defence \
    --sample-n 0 --no-temperature --ood noise:uniform:30 --threads 1 > /dev/null 2> "$tmp/rx.err"
check "[ $? -eq 0 ] && [ ! -s '$tmp/rx.err' ] && grep -q '\"buffer\":{\"present\":false,' '$tmp/rx/report.json'"
check "grep -q 'Not shown: <code>[^<]*jx.safetensors</code> holds no replay buffer' '$tmp/rx/report.html'"
check "[ \$(grep -o '<img ' '$tmp/rx/report.html' | wc -l) -eq 8 ] && ! grep -q 'buffer_age_median' '$tmp/rx/report.json'"

# --- failures: one error line, exit 1, nothing written
head -c 3000 "$m" > "$tmp/cut.safetensors"
"$JEM" report --model "$tmp/cut.safetensors" --out "$tmp/r3" --quick > "$tmp/o3" 2> "$tmp/e3"
check "[ $? -eq 1 ] && [ \$(wc -l < '$tmp/e3') -eq 1 ] && grep -q 'cut.safetensors' '$tmp/e3'"
check "[ ! -e '$tmp/r3' ] && [ ! -s '$tmp/o3' ]"
# a step that fails half way (an OOD set of another shape): named once, nothing written
"$JEM" report --model "$m" --out "$tmp/r4" --limit 20 --attack-n 5 --sample-n 0 --no-temperature \
    --ood noise:uniform:10:1x16x16 --threads 1 > "$tmp/o4" 2> "$tmp/e4"
check "[ $? -eq 1 ] && [ \$(wc -l < '$tmp/e4') -eq 1 ]"
check "grep -q '^jem report: error: OOD: --ood noise:uniform:10:1x16x16: images are 1x16x16' '$tmp/e4'"
check "[ ! -e '$tmp/r4' ] && [ ! -s '$tmp/o4' ]"
# an existing report folder keeps its files when a run fails
cp -r "$r2" "$tmp/r5"
sum=$(cat "$tmp/r5"/* | md5sum)
"$JEM" report --model "$m" --out "$tmp/r5" --limit 20 --attack-n 5 --sample-n 0 --no-temperature \
    --ood noise:uniform:10:1x16x16 --threads 1 > /dev/null 2>&1
check "[ $? -eq 1 ] && [ \"\$(cat '$tmp/r5'/* | md5sum)\" = '$sum' ] && [ \$(nfiles '$tmp/r5') -eq 2 ]"

# --- refused before any work (exit 2, the option named)
expect() {
    local code=$1 pat=$2
    shift 2
    "$JEM" "$@" > "$tmp/o" 2> "$tmp/e"
    local rc=$?
    check "[ $rc -eq $code ] && [ \$(wc -l < '$tmp/e') -eq 1 ] && grep -q -- \"$pat\" '$tmp/e' && [ ! -s '$tmp/o' ]"
}
touch "$tmp/file"
expect 2 "--out $tmp/file: exists and is not a folder" report --model "$m" --out "$tmp/file"
check "[ -f '$tmp/file' ] && [ ! -s '$tmp/file' ]"
expect 2 "--attack-n 0: out of range" report --model "$m" --out "$tmp/r6" --attack-n 0
expect 2 "--steps 0: out of range" report --model "$m" --out "$tmp/r6" --steps 0
expect 2 "--sample-steps 0: out of range" report --model "$m" --out "$tmp/r6" --sample-steps 0
expect 2 "--defence-n 30: more than the 20 images of --attack-n" report --model "$m" --out "$tmp/r6" --attack-n 20 \
    --defence-n 30
expect 2 "--eot and --no-defence exclude each other" report --model "$m" --out "$tmp/r6" --no-defence --eot 2
expect 2 "--sample-steps: --sample-n 0 leaves the samples out" report --model "$m" --out "$tmp/r6" --sample-n 0 \
    --sample-steps 5
expect 2 "--queries: --no-suite leaves the worst-case sections (and Square) out" report --model "$m" --out "$tmp/r6" \
    --no-suite --queries 10
expect 2 "--data noise:uniform:10: the set has no labels" report --model "$m" --out "$tmp/r6" --data noise:uniform:10
expect 2 "--ood nosuch:thing" report --model "$m" --out "$tmp/r6" --ood mnist:test,nosuch:thing
expect 2 "--sample-from buffer: .* holds no replay buffer" report --model "$m" --out "$tmp/r6" --sample-from buffer
check "[ ! -e '$tmp/r6' ]"
"$JEM" report --help > "$tmp/h"
check "grep -q -- '--quick sets every size not given' '$tmp/h' && grep -q -- '--limit 300 --attack-n 50' '$tmp/h'"

finish cli_report

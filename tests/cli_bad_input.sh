#!/usr/bin/env bash
# Bad input on the command line, one row per case: every command with each
# bad option value, data set and path a user can type gives its exit code
# (2 for a usage error, found before any data or model is loaded; 1 for bad
# data found once it is read) and a message naming the option and what it
# accepts. No case may crash. The checkpoint handed to most rows is cut
# short: a row that reached the model would fail on it instead, so exit 2
# also shows the values were checked first.
# SHOW=1 prints each row's exit code and message (the issue's table).
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
fix="$(cd "$(dirname "$0")" && pwd)/fixtures/data"

# expect CODE PATTERN ARGS...: jem ARGS exits with CODE and stderr holds PATTERN
expect() {
    local code=$1 pat=$2
    shift 2
    "$JEM" "$@" > "$tmp/out" 2> "$tmp/err"
    local rc=$?
    if [ $rc -eq "$code" ] && grep -q -- "$pat" "$tmp/err"; then ok; else
        bad "jem $*: exit $rc (want $code and '$pat'): $(head -c 400 "$tmp/err")"
    fi
    [ -n "${SHOW:-}" ] && printf '%s\t%s\t%s\n' "jem $*" "$rc" "$(grep -m1 -e 'error' -e 'warning' "$tmp/err")"
    return 0
}

# a small model (a few seconds), a JEM checkpoint with a replay buffer, an
# exported copy, a checkpoint cut short
m="$tmp/m.safetensors"
"$JEM" train --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 10 --batch 32 --lr 3e-3 --out "$m" \
    > /dev/null 2>&1
check "[ -f '$m' ]"
j="$tmp/j.safetensors"
"$JEM" train --mode jem --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 2 --batch 16 --sgld-steps 2 \
    --buffer 100 --out "$j" > /dev/null 2>&1
check "[ -f '$j' ]"
x="$tmp/x.safetensors"
"$JEM" export "$j" "$x"
check "[ -f '$x' ]"
cut="$tmp/cut.safetensors"
head -c 2000 "$m" > "$cut"

# data: a png: folder of 12 classes, IDX files with label 200
for k in 00 01 02 03 04 05 06 07 08 09 10 11; do mkdir -p "$tmp/p12/c$k"; cp "$fix/img28.png" "$tmp/p12/c$k/"; done
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))"
         printf "\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
{ printf '\x00\x00\x08\x03'; be32 3; be32 28; be32 28; head -c $((3 * 784)) /dev/zero; } > "$tmp/l200-images-idx3-ubyte"
{ printf '\x00\x00\x08\x01'; be32 3; printf '\x01\xc8\x02'; } > "$tmp/l200-labels-idx1-ubyte"
# 20 blank 8x8 images, two of each class, and a model for them (the informative init fits fast)
{ printf '\x00\x00\x08\x03'; be32 20; be32 8; be32 8; head -c $((20 * 64)) /dev/zero; } > "$tmp/s20-images-idx3-ubyte"
write_model "$tmp/tiny8.model" tiny8 1x8x8 4 "8/2"
{ printf '\x00\x00\x08\x01'; be32 20; printf '\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09'
  printf '\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09'; } > "$tmp/s20-labels-idx1-ubyte"

# --- crashes before: unlabelled sets and labels outside the model's classes
expect 2 "--data noise:uniform:10: the set has no labels" attack --model "$cut" --data noise:uniform:10
expect 2 "--data interp:fmnist:test:10: the set has no labels" attack --model "$cut" --data interp:fmnist:test:10 \
    --n 5 --steps 1
expect 1 "--data png:$tmp/p12: image 10 has label 10, but the model has 10 classes" attack --model "$m" \
    --data "png:$tmp/p12" --n 20 --steps 1
expect 1 "--data idx:$tmp/l200: image 1 has label 200, but the model has 10 classes" attack --model "$m" \
    --data "idx:$tmp/l200" --steps 1
expect 1 "--data png:$tmp/p12: image 10 has label 10" eval --model "$m" --data "png:$tmp/p12"
expect 1 "--data idx:$tmp/l200: image 1 has label 200" train --model "$tmp/tiny.model" --data "idx:$tmp/l200" \
    --val 0 --iters 1 --batch 2 --out "$tmp/t1.safetensors"
expect 2 "--data noise:uniform:100: the set has no labels" train --model "$tmp/tiny.model" --data noise:uniform:100 \
    --iters 1 --out "$tmp/t2.safetensors"
expect 2 "--data noise:uniform:50: the set has no labels" eval --model "$cut" --data noise:uniform:50

# --- values accepted silently before
expect 2 "--lr -1: out of range (want a number from 0 to 10)" train --lr -1 --iters 1
expect 2 "--iters -1: out of range (want an integer of at least 0)" train --iters -1
expect 2 "no budget: give --epochs, --minutes or --iters" train --model "$tmp/tiny.model"
expect 2 "--limit -1: out of range" eval --model "$cut" --limit -1
expect 2 "--limit -1: out of range" ood --model "$cut" --limit -1
expect 2 "--limit -1: out of range" score --model "$cut" --limit -1
expect 2 "--threads 100000: out of range (want an integer from 0 to 1024)" eval --model "$cut" --threads 100000
expect 2 "--threads 100000: out of range" train --iters 1 --threads 100000
expect 2 "--labels-per-class -3: out of range" train --iters 1 --labels-per-class -3
expect 2 "--gen-warmup -1: out of range" train --mode jem --iters 1 --gen-warmup -1
expect 2 "--n-samples -1: out of range" train --mode jem --iters 1 --n-samples -1
expect 2 "--max-retries -1: out of range" train --iters 1 --max-retries -1
expect 2 "--denoise -1: out of range (want a number from 0 to 100)" sample --model "$cut" --denoise -1
expect 2 "--class -5: out of range" sample --model "$cut" --class -5
expect 2 "--class 12: the model has 10 classes" sample --model "$m" --class 12 --n 2 --steps 1 \
    --out "$tmp/c12.png"
expect 2 "--out '': names no data set" ood --model "$cut" --out ''
expect 2 "--out noise:uniform:10,,mnist:test: an empty data set name" ood --model "$cut" --out noise:uniform:10,,mnist:test

# --- errors that now name the option and its range
expect 2 "--sgld-steps -1: out of range (want an integer from 1 to" train --mode jem --iters 1 --sgld-steps -1
expect 2 "--buffer 0: out of range (want an integer from 1 to" train --mode jem --iters 1 --buffer 0
expect 2 "--batch 0: out of range (want an integer from 1 to" train --iters 1 --batch 0
expect 2 "--div-threshold -1: out of range (want a number above 0)" train --iters 1 --div-threshold -1
expect 2 "--sgld-step 1e-50: out of range (want a number above 0" train --mode jem --iters 1 --sgld-step 1e-50
expect 2 "--out noise:uniform:0: 0 images: N must be 1 to" ood --model "$cut" --out noise:uniform:0
expect 2 "--data noise:uniform:0: 0 images: N must be 1 to" score --model "$cut" --data noise:uniform:0
expect 2 "--out interp:fmnist:test:0: 0 images: N must be 1 to" ood --model "$cut" --out interp:fmnist:test:0
check "! grep -q '1x28x28' '$tmp/err'"
expect 2 "--model $m: is a checkpoint; train --model takes a model description.*--resume.*--init-from" \
    train --model "$m" --iters 1
expect 2 "--model $m: is a checkpoint; bench --model takes a model description" bench --model "$m"
expect 2 "--model $tmp/tiny.model: not a checkpoint.*it is a model description" eval --model "$tmp/tiny.model"
expect 2 "--resume $x: weights-only file.*cannot resume" train --mode jem --resume "$x" --out "$x" --iters 3
expect 2 "--resume $j: the run was trained with --mode jem, not softmax" train --resume "$j" --out "$j" --iters 3
expect 2 "--sgld-steps applies to --mode jem only" train --iters 1 --sgld-steps 5
expect 2 "--mode 'hybrid': want softmax or jem" train --mode hybrid --iters 1
expect 2 "--milestones '5,3': want up to 16 increasing iterations" train --iters 10 --milestones 5,3
expect 2 "--eps '0.1,0.05': want 1 to 32 non-decreasing epsilons" attack --model "$cut" --eps 0.1,0.05
expect 2 "--eps '0,x': want" attack --model "$cut" --eps 0,x
expect 2 "--norm 'l1': want linf or l2" attack --model "$cut" --norm l1
expect 2 "--eot needs --defence sgld" attack --model "$cut" --eot 3
expect 2 "--defence-n 50: more than the 10 images of --n" attack --model "$cut" --n 10 --defence sgld --defence-n 50
expect 2 "--attack 'cw': want pgd, fgsm, apgd-ce, apgd-dlr or square" attack --model "$cut" --attack cw
expect 2 "--suite 'standard': want auto" attack --model "$cut" --suite standard
expect 2 "--suite auto runs apgd-ce, apgd-dlr and square: --attack does not apply" attack --model "$cut" --suite auto \
    --attack pgd
expect 2 "--fgsm is --attack fgsm: it does not go with --attack square" attack --model "$cut" --fgsm --attack square
expect 2 "--queries is the budget of square: it needs --attack square or --suite auto" attack --model "$cut" \
    --queries 100
expect 2 "--queries 1: out of range" attack --model "$cut" --attack square --queries 1
expect 2 "--targets needs --attack apgd-dlr or --suite auto" attack --model "$cut" --attack apgd-ce --targets 3
expect 2 "--step-size applies to pgd only" attack --model "$cut" --attack apgd-ce --step-size 0.5
expect 2 "--steps does not apply to square (its budget is --queries)" attack --model "$cut" --attack square --steps 5
expect 2 "--check-n does not apply with --no-checks" attack --model "$cut" --no-checks --check-n 10
expect 2 "--check-tol 101: out of range" attack --model "$cut" --check-tol 101
expect 2 "--hist-score 'logp': want logpx, max_softmax" ood --model "$cut" --hist-score logp
expect 2 "--bins 0: out of range (want an integer from 1 to 1000)" eval --model "$cut" --bins 0
expect 2 "--steps '1.5': not a valid value (want an integer" sample --model "$cut" --steps 1.5
expect 2 "--lr 'nan': not a valid value" train --iters 1 --lr nan
expect 2 "--inpaint 'random:2': want top, bottom" sample --model "$cut" --inpaint random:2
expect 2 "--format 'xml': want csv or jsonl" score --model "$cut" --format xml
expect 2 "unknown option '--epsilon'" attack --model "$cut" --epsilon 3
expect 2 "--test fmnist:tset: want fmnist:train or fmnist:test" train --iters 1 --test fmnist:tset
expect 2 "--data nosuch:thing: unknown data set spec" eval --model "$cut" --data nosuch:thing
expect 2 "--data png:$tmp/none: no such folder" score --model "$cut" --data "png:$tmp/none"
expect 2 "--model CKPT is required" ood
# the kernel settings in the environment: refused by every command before anything is loaded (the cut
# checkpoint would give 1)
JEM_KERNELS=fast expect 2 "JEM_KERNELS=fast: want auto, direct or gemm" eval --model "$cut"
JEM_WINOGRAD_TILE=3 expect 2 "JEM_WINOGRAD_TILE=3: want 2, 4 or auto" info "$cut"
JEM_FUSE=yes expect 2 "JEM_FUSE=yes: want 0 or 1" train --model "$tmp/tiny.model" --data fmnist:test --val 0 \
    --iters 1 --out "$tmp/k.safetensors"
check "[ ! -e '$tmp/k.safetensors' ]"
expect 1 "cut.safetensors" eval --model "$cut"

# --- data safety: outputs checked before training, nothing replaced by surprise
expect 2 "--out $m exists; --force replaces it, --resume $m continues its training" \
    train --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 1 --out "$m"
expect 2 "--out $tmp/none/m.safetensors: folder $tmp/none does not exist" train --iters 1 --out "$tmp/none/m.safetensors"
expect 2 "--samples $tmp/none/s.png: folder $tmp/none does not exist" train --mode jem --iters 1 \
    --out "$tmp/t3.safetensors" --samples "$tmp/none/s.png"
expect 2 "--log $tmp/none/l.jsonl: folder $tmp/none does not exist" train --iters 1 --out "$tmp/t3.safetensors" \
    --log "$tmp/none/l.jsonl"
expect 2 "--out $tmp: is a folder" train --iters 1 --out "$tmp"
# a --test set's labels are checked before the training, not after it
expect 1 "--test idx:$tmp/l200: image 1 has label 200, but the model has 10 classes" train --model "$tmp/tiny.model" \
    --data fmnist:test --val 0 --iters 1 --test "idx:$tmp/l200" --out "$tmp/t4.safetensors"
check "[ ! -e '$tmp/t4.safetensors' ]"
expect 2 "--reliability $tmp/none/r.png: folder $tmp/none does not exist" eval --model "$cut" \
    --reliability "$tmp/none/r.png"
expect 2 "--curve $tmp/none/c.png: folder" attack --model "$cut" --curve "$tmp/none/c.png"
expect 2 "--save-adv $tmp/none/deeper: folder $tmp/none does not exist" attack --model "$cut" \
    --save-adv "$tmp/none/deeper"
expect 2 "--out $tmp/none/r: folder $tmp/none does not exist" report --model "$cut" --out "$tmp/none/r"
if [ "$(id -u)" -ne 0 ]; then   # root writes anywhere
    mkdir -p "$tmp/ro" && chmod 555 "$tmp/ro"
    expect 2 "--out $tmp/ro/m.safetensors: cannot write in folder" train --iters 1 --out "$tmp/ro/m.safetensors"
fi
sum=$(md5sum < "$m")
expect 2 "are the same file" export "$m" "$m"
expect 2 "are the same file" export "$m" "$tmp/../$(basename "$tmp")/m.safetensors"
ln "$m" "$tmp/hard.safetensors"
expect 2 "are the same file" export "$m" "$tmp/hard.safetensors"
check "[ \"\$(md5sum < '$m')\" = '$sum' ]"
# --force replaces, --resume continues
"$JEM" train --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 1 --out "$m" --force > /dev/null 2>&1
check "[ $? -eq 0 ] && [ \"\$(md5sum < '$m')\" != '$sum' ]"

# --- --lr 0 is taken as asked: the weights do not move
"$JEM" train --model "$tmp/tiny.model" --data fmnist:test --val 0 --iters 2 --lr 0 --warmup 0 --init-from "$m" \
    --out "$tmp/lr0.safetensors" > /dev/null 2>&1
check "[ $? -eq 0 ]"
check "'$JEM' info '$m' --diff '$tmp/lr0.safetensors' --json | grep -q '\"max_abs_diff\":0,'"

# --- help and documentation
"$JEM" attack --help > "$tmp/h"
check "grep -q -- '--eps.*default linf 0,0.02,0.05,0.1,0.2; l2 0,0.5,1,2' '$tmp/h'"
for c in train eval ood score attack sample logz info export bench report fit-ood shift; do
    "$JEM" $c --help > "$tmp/h" 2>&1
    check "[ \$(grep -c 'default.*default' '$tmp/h') -eq 0 ]"
    check "[ \$(awk 'length > 160' '$tmp/h' | wc -l) -eq 0 ]"
done
"$JEM" train --mode jem --help > "$tmp/h"
check "grep -q -- '--lr X .*default 0.0001' '$tmp/h' && grep -q -- '--warmup N .*default 1000' '$tmp/h'"
"$JEM" train --help > "$tmp/h"
check "grep -q -- '--lr X .*default 0.001' '$tmp/h' && grep -q -- '--sgld-steps N .*--mode jem only' '$tmp/h'"
# png: classes are numbered in the byte order of the folder names, and said so
mkdir -p "$tmp/p2/b" "$tmp/p2/a" "$tmp/p2/C"
cp "$fix/img28.png" "$tmp/p2/b/"; cp "$fix/img28.png" "$tmp/p2/a/"; cp "$fix/img28.png" "$tmp/p2/C/x.png"
"$JEM" score --model "$m" --data "png:$tmp/p2" --no-grad > "$tmp/s.csv" 2> "$tmp/err"
check "grep -q '3 classes, numbered in the byte order of the folder names: 0 C, 1 a, 2 b' '$tmp/err'"
check "head -1 '$tmp/s.csv' | grep -q '^index,file,label,pred,pred_name,logpx'"
check "grep -q '^0,C/x.png,0,' '$tmp/s.csv' && grep -q '^2,b/img28.png,2,' '$tmp/s.csv'"
# score --json: JSON lines with the file, the label and the predicted class
"$JEM" score --model "$m" --data "png:$tmp/p2" --no-grad --json > "$tmp/s.jsonl" 2> "$tmp/err"
check "[ \$(grep -c '^{\"index\":[0-9],\"file\":\"[abC]/.*\",\"label\":[0-2],\"pred\":[0-9],\"pred_name\":\"' '$tmp/s.jsonl') -eq 3 ]"
check "[ ! -s '$tmp/err' ]"
expect 2 "--json writes JSON lines: it excludes --format csv" score --model "$cut" --json --format csv
# sample: --from buffer on a weights-only file; grids labelled with class names
expect 2 "--from buffer: $x holds no replay buffer.*--from accepts noise, informative or buffer" \
    sample --model "$x" --from buffer --n 2 --steps 1 --out "$tmp/b.png"
"$JEM" sample --model "$j" --from buffer --n 2 --steps 1 --out "$tmp/b.png" > /dev/null 2>&1
check "[ $? -eq 0 ] && [ -s '$tmp/b.png' ]"
"$JEM" sample --model "$m" --conditional --n 1 --steps 1 --out "$tmp/c.png" > "$tmp/out" 2>&1
check "grep -q 'rows: 0 T-shirt/top, 1 Trouser, .*9 Ankle boot' '$tmp/out'"
check "'$JEM' info '$m' | grep -q 'jem.classes .*\"T-shirt/top\",\"Trouser\"'"

# --- progress: a bar on a terminal, nothing under --json or into a pipe
if command -v script > /dev/null; then
    TERM=dumb script -qec "'$JEM' ood --model '$m' --in fmnist:test --out noise:uniform:300 --limit 300 --no-grad" \
        /dev/null > "$tmp/tty" 2>&1
    check "grep -q 'scoring fmnist:test' '$tmp/tty' && grep -q '\[####################\]' '$tmp/tty'"
    TERM=dumb script -qec "'$JEM' attack --model '$m' --n 20 --steps 2 --eps 0,0.1" /dev/null > "$tmp/tty" 2>&1
    check "grep -q 'eps 0.1: PGD on 20 images' '$tmp/tty'"
    TERM=dumb script -qec "'$JEM' sample --model '$m' --n 4 --steps 5 --out '$tmp/s.png'" /dev/null > "$tmp/tty" 2>&1
    check "grep -q 'SGLD: 4 chains x 5 steps' '$tmp/tty'"
    TERM=dumb script -qec "'$JEM' eval --model '$m' --limit 50 --refine 2 --no-temperature" /dev/null \
        > "$tmp/tty" 2>&1
    check "grep -q 'refining fmnist:test' '$tmp/tty'"
    TERM=dumb script -qec "'$JEM' ood --model '$m' --out noise:uniform:30 --limit 30 --no-grad --json" /dev/null \
        > "$tmp/tty" 2>&1
    check "! grep -q 'scoring' '$tmp/tty'"
fi
"$JEM" ood --model "$m" --out noise:uniform:30 --limit 30 --no-grad > /dev/null 2> "$tmp/err"
check "[ ! -s '$tmp/err' ]"
# train says what it does before long silent steps: resuming, the informative init; a resumed run
# needs no model description (run from a folder without models/)
jem_abs="$(cd "$(dirname "$JEM")" && pwd)/$(basename "$JEM")"
(cd "$tmp" && "$jem_abs" train --mode jem --data fmnist:test --val 0 --iters 3 --batch 16 --sgld-steps 2 \
    --buffer 100 --resume "$j" --out "$j" > /dev/null 2> "$tmp/err")
check "[ $? -eq 0 ] && grep -q 'resuming .* from iteration 2' '$tmp/err'"
expect 2 "--model $tmp/tiny8.model describes another model than the one $j holds" train --mode jem \
    --model "$tmp/tiny8.model" --resume "$j" --out "$j" --iters 5
# the default model description missing: a copy of the tool beside no models/ (neither a checkout's
# nor PREFIX/share/jem), unless the build's install folder holds one
mkdir -p "$tmp/bin" && cp "$JEM" "$tmp/bin/jem"
datadir=$(cat "$(dirname "$JEM")/datadir.stamp" 2> /dev/null)
if [ -n "$datadir" ] && [ ! -e "$datadir/models/wrn-fmnist.model" ]; then
    (cd "$tmp" && "$tmp/bin/jem" train --iters 1 > /dev/null 2> "$tmp/err")
    check "[ $? -eq 2 ] && grep -q -- '--model models/wrn-fmnist.model (the default): No such file' '$tmp/err'"
fi
# MNIST is found beside the project root from any folder
(cd "$tmp" && "$jem_abs" score --model "$m" --data mnist:test --limit 3 --no-grad > "$tmp/mn.csv" 2> "$tmp/err")
check "[ $? -eq 0 ] && [ \$(wc -l < '$tmp/mn.csv') -eq 4 ]"
JEM_FMNIST_DIR="$tmp/nofm" "$JEM" eval --model "$m" > /dev/null 2> "$tmp/err"
check "[ $? -eq 2 ] && grep -q -- '--data fmnist:test: $tmp/nofm/t10k-images-idx3-ubyte\[.gz\]: no such file' '$tmp/err'"
"$JEM" train --mode jem --model "$tmp/tiny8.model" --data "idx:$tmp/s20" --val 0 --iters 1 --batch 4 --sgld-steps 1 \
    --buffer 20 --init informative --full-cov --out "$tmp/fc.safetensors" > /dev/null 2> "$tmp/err"
check "grep -q 'fitting the informative init: 10 class means and full 64x64 covariances' '$tmp/err'"

finish cli_bad_input

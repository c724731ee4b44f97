#!/usr/bin/env bash
# The OOD detectors end to end on a small model trained for a few
# iterations: jem fit-ood (beside the model, --force, a singular covariance
# naming the shrinkage, kNN, option checks before anything loads), jem ood
# with the fitted detector, ODIN and a decision threshold (--threshold-tpr),
# jem score's detector and ood columns, jem shift, and the report's
# detector, decision and shift sections.
set -u
JEM=${JEM:-build/jem}
. "$(dirname "$0")/lib.sh"
json_ok() { grep -q '^{.*}$' "$1"; }
png() { [ "$(head -c 8 "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
# the number after "KEY": in a JSON file (the first one)
num() { grep -o "\"$1\":[-0-9.e+]*" "$2" | head -n 1 | sed 's/.*://'; }
write_model "$tmp/small.model" small 1x28x28 8 "16/2 16/2"
m="$tmp/m.safetensors"
"$JEM" train --model "$tmp/small.model" --data fmnist:test --val 0 --iters 80 --batch 32 --lr 3e-3 --out "$m" \
    --threads 1 > /dev/null 2>&1
check "[ -f '$m' ]"
det="$tmp/m.ood.safetensors"

# ---- fit-ood: beside the model by default, from fmnist:train without its 5000 held-out images
"$JEM" fit-ood --model "$m" --limit 3000 --threads 1 > "$tmp/f1.out" 2> "$tmp/f1.err"
check "[ $? -eq 0 ] && [ -f '$det' ] && [ ! -s '$tmp/f1.err' ]"
check "grep -q '^wrote $det: mahalanobis detector on 16 features of layer pool, fitted on 3000 images of fmnist:train (5000 held out' '$tmp/f1.out'"
check "head -c 4000 '$det' | grep -q '\"jem.ood.kind\":\"mahalanobis\"' && head -c 4000 '$det' | grep -q '\"jem.ood.layer\":\"pool\"'"
sum1=$(cksum < "$det")
# an existing file is kept unless --force
"$JEM" fit-ood --model "$m" --limit 100 > /dev/null 2> "$tmp/e"
check "[ $? -eq 2 ] && grep -q -- '--out $det exists; --force replaces it' '$tmp/e' && [ \"\$(cksum < '$det')\" = '$sum1' ]"
# a singular covariance (12 images, 16 features): exit 1, the shrinkage to
# use named, nothing written; that shrinkage then fits
"$JEM" fit-ood --model "$m" --data fmnist:test --limit 12 --out "$tmp/s.ood.safetensors" > /dev/null 2> "$tmp/e"
check "[ $? -eq 1 ] && grep -q 'singular.*give --shrinkage [0-9.e-]* or more' '$tmp/e' && [ ! -e '$tmp/s.ood.safetensors' ]"
shr=$(sed -n 's/.*give --shrinkage \([0-9.e-]*\) or more.*/\1/p' "$tmp/e")
"$JEM" fit-ood --model "$m" --data fmnist:test --limit 12 --out "$tmp/s.ood.safetensors" --shrinkage "$shr" > /dev/null 2>&1
check "[ $? -eq 0 ] && [ -f '$tmp/s.ood.safetensors' ]"
check "[ \$(ls '$tmp' | grep -c 'tmp-') -eq 0 ]" # no temporary files left
# kNN on a block's features, JSON
"$JEM" fit-ood --model "$m" --detector knn --k 5 --layer b2 --data fmnist:test --limit 2000 \
    --out "$tmp/knn.ood.safetensors" --json > "$tmp/k.json"
check "[ $? -eq 0 ] && json_ok '$tmp/k.json' && grep -q '\"detector\":\"knn\",\"layer\":\"b2\",\"features\":16,.*\"n\":2000,\"held_out\":0,\"k\":5' '$tmp/k.json'"

# every option checked before the model or data load: a truncated model
# still gets the usage error (exit 2) naming the option and value
head -c 3000 "$m" > "$tmp/cut.safetensors"
bad() { "$JEM" "$@" > /dev/null 2> "$tmp/e"; local rc=$?; [ $rc -eq 2 ] || echo "exit $rc: $*" >&2; [ $rc -eq 2 ]; }
check "bad fit-ood --model '$tmp/cut.safetensors' --layer x1 --out '$tmp/x' && grep -q -- \"--layer 'x1'\" '$tmp/e'"
check "bad fit-ood --model '$m' --layer b3 --out '$tmp/x' && grep -q -- '--layer b3: the model has 2 blocks' '$tmp/e'"
check "bad fit-ood --model '$tmp/cut.safetensors' --shrinkage 1.5 --out '$tmp/x' && grep -q -- '--shrinkage 1.5' '$tmp/e'"
check "bad fit-ood --model '$tmp/cut.safetensors' --k 3 --out '$tmp/x' && grep -q -- '--k is kNN' '$tmp/e'"
check "bad fit-ood --model '$tmp/cut.safetensors' --detector knn --shrinkage 0.1 --out '$tmp/x' && grep -q -- '--shrinkage is the Gaussian' '$tmp/e'"
check "bad fit-ood --model '$tmp/cut.safetensors' --data noise:uniform:10 --out '$tmp/x' && grep -q -- '--data noise:uniform:10: the set has no labels' '$tmp/e'"
check "bad fit-ood --model '$tmp/cut.safetensors' --detector gauss --out '$tmp/x' && grep -q -- \"--detector 'gauss'\" '$tmp/e'"
check "bad fit-ood --model '$tmp/cut.safetensors' --out '$tmp/nodir/x.ood' && grep -q -- '--out' '$tmp/e'"
check "bad ood --model '$tmp/cut.safetensors' --detector gauss && grep -q -- \"--detector 'gauss': want logpx,\" '$tmp/e'"
check "bad ood --model '$tmp/cut.safetensors' --detector knn && grep -q -- '--detector knn: no fitted detector found' '$tmp/e'"
check "bad ood --model '$m' --detector knn && grep -q -- '--detector knn: the fitted detector $det is mahalanobis' '$tmp/e'"
check "bad ood --model '$m' --ood '$m' && grep -q -- '--ood $m: not an OOD detector file' '$tmp/e'"
check "bad ood --model '$m' --odin-T 10 && grep -q -- '--odin-T is ODIN' '$tmp/e'"
check "bad ood --model '$m' --odin-eps 2 && grep -q -- '--odin-eps 2' '$tmp/e'"
check "bad ood --model '$m' --threshold-tpr 1.5 && grep -q -- '--threshold-tpr 1.5' '$tmp/e'"
check "bad ood --model '$m' --in mnist:test --threshold-tpr 0.9 && grep -q -- '--threshold-tpr needs --val' '$tmp/e'"
check "bad ood --model '$m' --val fmnist:test && grep -q -- '--val is the threshold' '$tmp/e'"
check "bad score --model '$m' --threshold 1 --threshold-tpr 0.9 && grep -q 'exclude each other' '$tmp/e'"
check "bad shift --model '$tmp/cut.safetensors' --corruptions fog && grep -q -- \"--corruptions: unknown corruption 'fog'\" '$tmp/e'"
check "bad shift --model '$tmp/cut.safetensors' --corruptions jpeg,jpeg && grep -q 'listed twice' '$tmp/e'"
check "bad shift --model '$tmp/cut.safetensors' --data noise:uniform:5 && grep -q 'no labels' '$tmp/e'"
check "bad report --model '$tmp/cut.safetensors' --shift fog && grep -q -- \"--shift: unknown corruption 'fog'\" '$tmp/e'"
check "bad report --model '$tmp/cut.safetensors' --data mnist:test --threshold-tpr 0.9 && grep -q -- '--threshold-tpr: the report fits' '$tmp/e'"

# ---- ood: the fitted detector found beside the model, in the table and the
# default detector; a decision fitted on held-out images, applied to each set
"$JEM" ood --model "$m" --limit 300 --out mnist:test,noise:uniform:300 --threshold-tpr 0.9 --val fmnist:train \
    --hist "$tmp/h.png" --roc "$tmp/r.png" --json > "$tmp/o.json"
check "[ $? -eq 0 ] && json_ok '$tmp/o.json' && png '$tmp/h.png' && png '$tmp/r.png'"
check "grep -q '\"detector\":\"mahalanobis\",\"fitted\":{\"file\":\"$det\",\"kind\":\"mahalanobis\",\"layer\":\"pool\"' '$tmp/o.json'"
check "grep -q '\"noise:uniform:300\":{\"n\":300,\"logpx\":{[^}]*},\"max_softmax\".*\"mahalanobis\":{\"auroc\":' '$tmp/o.json'"
# the Gaussian on features tells uniform noise from Fashion-MNIST even on this small model
auc=$(grep -o '"noise:uniform:300":{.*' "$tmp/o.json" | grep -o '"mahalanobis":{"auroc":[0-9.]*' | sed 's/.*://')
check "awk 'BEGIN{exit !($auc > 0.9)}'"
check "grep -q '\"decision\":{\"score\":\"mahalanobis\",\"tpr\":0.9,\"val\":\"fmnist:train\",\"val_held_out\":5000,\"val_n\":300,' '$tmp/o.json'"
kv=$(num kept_val "$tmp/o.json"); ki=$(num kept_in "$tmp/o.json"); thr=$(num threshold "$tmp/o.json")
# at least 90 % of the 300 held-out images kept, and no more than one tie group past it
check "awk 'BEGIN{exit !($kv >= 0.9 && $kv < 0.91 && $ki > 0.7 && $ki <= 1)}'"
fm=$(grep -o '"fpr":{"mnist:test":[0-9.e-]*' "$tmp/o.json" | sed 's/.*://')
check "[ -n '$fm' ] && awk 'BEGIN{exit !($fm >= 0 && $fm <= 1)}'"
# the text output says the same
"$JEM" ood --model "$m" --limit 300 --out mnist:test --threshold-tpr 0.9 --no-grad > "$tmp/o.txt"
check "grep -q '^decision: in-distribution iff mahalanobis >= ' '$tmp/o.txt' && grep -q 'mnist:test *kept .*(false-positive rate)' '$tmp/o.txt'"
check "grep -q '^ *mahalanobis ' '$tmp/o.txt' && ! grep -q 'neg_grad_norm' '$tmp/o.txt'"
# the threshold applied by score: the ood column flags the MNIST images the decision did not keep
"$JEM" score --model "$m" --data mnist:test --limit 300 --threshold "$thr" --no-grad --out "$tmp/s.csv"
check "head -1 '$tmp/s.csv' | grep -q '^index,label,pred,pred_name,logpx,max_softmax,max_logit,energy_t,mahalanobis,ood$'"
kept=$(awk -F, 'NR > 1 && $NF == 0' "$tmp/s.csv" | wc -l)
check "awk 'BEGIN{d = $kept / 300 - $fm; exit !(d < 1e-9 && d > -1e-9)}'"
# and each row's flag is its score against the threshold
check "awk -F, -v t='$thr' 'NR > 1 && ((\$9 >= t) == (\$10 == 1)) {bad++} END {exit bad > 0}' '$tmp/s.csv'"
"$JEM" score --model "$m" --data noise:uniform:20 --threshold-tpr 0.95 --json > "$tmp/s.jsonl" 2> "$tmp/s.err"
check "[ \$(grep -c '\"mahalanobis\":-[0-9.e+]*,\"ood\":[01]}' '$tmp/s.jsonl') -eq 20 ]"
check "grep -q '^jem score: threshold -[0-9.e+]* on mahalanobis keeps 95.[0-9]* % of 5000 held-out images of fmnist:train' '$tmp/s.err'"

# kNN and ODIN; a detector of another model is refused
"$JEM" ood --model "$m" --ood "$tmp/knn.ood.safetensors" --detector knn --odin --odin-T 10 --odin-eps 0.002 \
    --limit 100 --out noise:gaussian:100 --json > "$tmp/k2.json"
check "[ $? -eq 0 ] && grep -q '\"detector\":\"knn\",\"fitted\":{[^}]*\"kind\":\"knn\",\"layer\":\"b2\"' '$tmp/k2.json'"
check "grep -q '\"odin\":{\"T\":10,\"eps\":0.002}' '$tmp/k2.json' && grep -q '\"knn\":{\"auroc\":[0-9.]*,[^}]*},\"odin\":{\"auroc\":' '$tmp/k2.json'"
"$JEM" train --model "$tmp/small.model" --data fmnist:test --val 0 --iters 5 --batch 32 --out "$tmp/m2.safetensors" \
    > /dev/null 2>&1
"$JEM" ood --model "$tmp/m2.safetensors" --ood "$det" --limit 20 > /dev/null 2> "$tmp/e"
check "[ $? -eq 1 ] && grep -q 'the detector was fitted on model .small. (checksum [0-9a-f]*), not on this model' '$tmp/e'"
# without a fitted detector: log p(x) decides, and ood says how to fit one
"$JEM" ood --model "$tmp/m2.safetensors" --limit 20 --out noise:uniform:20 --no-grad > "$tmp/o2.txt"
check "[ $? -eq 0 ] && grep -q 'detector logpx (no fitted detector $tmp/m2.ood.safetensors: jem fit-ood makes one)' '$tmp/o2.txt'"

# ---- shift: clean accuracy as jem eval measures it; rotation hurts; deterministic
"$JEM" shift --model "$m" --corruptions gaussian_noise,rotation --limit 300 --plot "$tmp/sh.png" --plot-metric accuracy \
    --json > "$tmp/sh.json"
check "[ $? -eq 0 ] && json_ok '$tmp/sh.json' && png '$tmp/sh.png'"
check "grep -q '\"corruptions\":{\"gaussian_noise\":{\"accuracy\":\[[^]]*\],\"ece\":\[[^]]*\],\"nll\":\[[^]]*\]},\"rotation\":' '$tmp/sh.json'"
rot=$(grep -o '"rotation":{"accuracy":\[[^]]*\]' "$tmp/sh.json" | sed 's/.*\[//; s/\]//')
check "[ \$(tr ',' '\n' <<< '$rot' | wc -l) -eq 6 ]"
"$JEM" eval --model "$m" --limit 300 --no-temperature --json > "$tmp/ev.json"
acc=$(num accuracy "$tmp/ev.json")
check "awk -v r='$rot' 'BEGIN{split(r, a, \",\"); exit !(a[1] == $acc && a[6] < a[1])}'"
"$JEM" shift --model "$m" --corruptions gaussian_noise,rotation --limit 300 --json > "$tmp/sh2.json"
check "cmp -s '$tmp/sh.json' '$tmp/sh2.json'"
# --compare: the same numbers for --model, and a line per model
"$JEM" shift --model "$m" --compare "$tmp/m2.safetensors" --corruptions gaussian_noise,rotation --limit 300 \
    --plot "$tmp/cmp.png" --json > "$tmp/cmp.json"
check "[ $? -eq 0 ] && png '$tmp/cmp.png' && grep -q '^\[{\"model\":\"$m\".*},{\"model\":\"$tmp/m2.safetensors\",' '$tmp/cmp.json'"
check "grep -qF \"\$(sed 's/^{\"model\":\"[^\"]*\"//; s/}\$//' '$tmp/sh.json')\" '$tmp/cmp.json'"
"$JEM" shift --model "$m" --compare "$tmp/none.safetensors" > /dev/null 2> "$tmp/e"
check "[ $? -eq 2 ] && grep -q -- '--compare $tmp/none.safetensors' '$tmp/e'"
"$JEM" shift --model "$m" --corruptions jpeg --limit 100 > "$tmp/sh.txt"
check "grep -q '^jpeg  *[0-9.]* ' '$tmp/sh.txt' && grep -c '^jpeg' '$tmp/sh.txt' | grep -q 3"

# ---- report: the fitted detector, its decision and the shift section
"$JEM" report --model "$m" --out "$tmp/rep" --quick --limit 100 --no-defence --sample-n 0 --attack-n 5 \
    --ood noise:uniform:100 --shift contrast --json > "$tmp/rep.out"
check "[ $? -eq 0 ]"
rj="$tmp/rep/report.json"
check "grep -q '\"ood\":{[^{]*\"detector\":\"mahalanobis\",\"fitted\":' '$rj' && grep -q '\"decision\":{\"score\":\"mahalanobis\",\"tpr\":0.95,' '$rj'"
check "grep -q '\"ood_auroc_mahalanobis\":{\"noise:uniform:100\":' '$tmp/rep.out' && grep -q '\"ood_fpr_at_threshold\":{' '$tmp/rep.out'"
check "grep -q '\"shift\":{[^{]*\"n\":100,.*\"corruptions\":{\"contrast\":' '$rj' && grep -q 'Accuracy and calibration under covariate shift' '$tmp/rep/report.html'"

# ---- open set: a 6-class model of classes 0-5; the held-out images of
# temperature scaling, fit-ood and the threshold come from the same classes
printf 'name = six\ninput = 1x28x28\nclasses = 6\nstem = 8\nblocks = 16/2 16/2\n' > "$tmp/six.model"
m6="$tmp/six.safetensors"
"$JEM" train --model "$tmp/six.model" --data fmnist:test:classes=0-5 --val 0 --iters 40 --batch 32 --lr 3e-3 \
    --out "$m6" --threads 1 > /dev/null 2>&1
check "[ -f '$m6' ]"
"$JEM" fit-ood --model "$m6" --data fmnist:train:classes=0-5 --limit 500 --threads 1 > "$tmp/f6.out" 2> "$tmp/f6.err"
check "[ $? -eq 0 ] && grep -q 'fitted on 500 images of fmnist:train:classes=0-5 (5000 held out' '$tmp/f6.out'"
"$JEM" eval --model "$m6" --data fmnist:test:classes=0-5 --limit 200 --json > "$tmp/e6.json" 2> "$tmp/e6.err"
check "[ $? -eq 0 ] && grep -q '\"val\":\"fmnist:train:classes=0-5\"' '$tmp/e6.json'"
"$JEM" ood --model "$m6" --in fmnist:test:classes=0-5 --out fmnist:test:classes=6-9 --limit 200 --threshold-tpr 0.9 \
    --no-grad --json > "$tmp/o6.json" 2> "$tmp/o6.err"
check "[ $? -eq 0 ] && grep -q '\"val\":\"fmnist:train:classes=0-5\",\"val_held_out\":5000,\"val_n\":200,' '$tmp/o6.json'"
check "grep -q '\"fmnist:test:classes=6-9\":{\"n\":200,' '$tmp/o6.json'"
# the held-out images carry only the model's classes: none of 6-9 reaches it
"$JEM" ood --model "$m6" --in fmnist:test:classes=0-5 --out noise:uniform:20 --limit 20 --threshold-tpr 0.9 \
    --val fmnist:train:classes=6-9 --no-grad > /dev/null 2> "$tmp/e"
check "[ $? -eq 1 ] && grep -q 'label 6, but the model has 6 classes' '$tmp/e'"

# the manual and --help know both commands
"$JEM" --help > "$tmp/help"
check "grep -q '^  fit-ood ' '$tmp/help' && grep -q '^  shift ' '$tmp/help'"
"$JEM" --man > "$tmp/man"
check "grep -q '^\.SS fit-ood' '$tmp/man' && grep -q '^\.SS shift' '$tmp/man'"
finish cli_ood

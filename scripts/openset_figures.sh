#!/usr/bin/env bash
# The open-set figures of README: the reference model with 6 classes
# (models/wrn-fmnist.model, classes = 6) trained as a JEM for MINUTES
# (default 15) on Fashion-MNIST classes 0-5 (T-shirt, trouser, pullover,
# dress, coat, sandal); both detectors fitted on fmnist:train:classes=0-5
# without its 5000 held-out images; every score of Fashion-MNIST test
# classes 0-5 against the held-out classes 6-9 together and one by one
# (shirt, sneaker, bag, ankle boot), ODIN included; the decision at 95 %
# TPR; and jem report on the same split. JSON and the markdown table go to
# OUT (default out/openset); the table is printed at the end. A checkpoint
# already in OUT is not trained again (delete it to retrain).
#   scripts/openset_figures.sh [BUILD]
# About 17 minutes on two cores (15 of them training).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
jem="$build/jem"
out=${OUT:-out/openset}
minutes=${MINUTES:-15}
mkdir -p "$out"
run() { echo "+ $*" >&2; "$@"; }
sed 's/^name = .*/name = wrn-fmnist6/; s/^classes = 10\b/classes = 6/' models/wrn-fmnist.model > "$out/wrn6.model"
grep -q '^classes = 6' "$out/wrn6.model" || { echo "openset_figures: no 'classes = 10' line in models/wrn-fmnist.model" >&2; exit 1; }
m="$out/jem6.safetensors"
if [ ! -s "$m" ]; then
    run "$jem" train --model "$out/wrn6.model" --mode jem --data fmnist:train:classes=0-5 --init informative \
        --batch 128 --n-samples 16 --lr 2e-3 --warmup 100 --gen-warmup 1000 --l2 0.05 --w-x 0.1 --sgld-clamp \
        --cosine --sgld-steps 5 --seed 1 --val 0 --minutes "$minutes" --log "$out/jem6.jsonl" --out "$m"
fi
in=fmnist:test:classes=0-5
sets=fmnist:test:classes=6-9,fmnist:test:classes=6,fmnist:test:classes=7,fmnist:test:classes=8,fmnist:test:classes=9
run "$jem" eval --model "$m" --data "$in" --json > "$out/eval.json"
run "$jem" fit-ood --model "$m" --data fmnist:train:classes=0-5 --out "$out/jem6.maha.safetensors" --force --json \
    > "$out/fit-maha.json"
run "$jem" fit-ood --model "$m" --data fmnist:train:classes=0-5 --detector knn --k 50 \
    --out "$out/jem6.knn.safetensors" --force --json > "$out/fit-knn.json"
run "$jem" ood --model "$m" --in "$in" --out "$sets" --ood "$out/jem6.maha.safetensors" --odin --threshold-tpr 0.95 \
    --json > "$out/ood-maha.json"
run "$jem" ood --model "$m" --in "$in" --out "$sets" --ood "$out/jem6.knn.safetensors" --detector knn --no-grad \
    --threshold-tpr 0.95 --json > "$out/ood-knn.json"
rm -rf "$out/report"
run "$jem" report --model "$m" --data "$in" --ood fmnist:test:classes=6-9 --ood-detector "$out/jem6.maha.safetensors" \
    --quick --no-defence --out "$out/report" > /dev/null

python3 - "$out" > "$out/tables.md" <<'EOF'
import json, os, sys
out = sys.argv[1]
ev = json.load(open(os.path.join(out, 'eval.json')))
maha = json.load(open(os.path.join(out, 'ood-maha.json')))
knn = json.load(open(os.path.join(out, 'ood-knn.json')))
names = {'6-9': 'classes 6-9', '6': '6 shirt', '7': '7 sneaker', '8': '8 bag', '9': '9 ankle boot'}
cols = ['mahalanobis', 'knn', 'odin', 'logpx', 'max_softmax', 'max_logit', 'neg_grad_norm', 'energy_t']
def find(d, key):
    """the first value of key anywhere in d"""
    if isinstance(d, dict):
        if key in d: return d[key]
        for v in d.values():
            r = find(v, key)
            if r is not None: return r
    return None
print('accuracy on fmnist:test:classes=0-5: %.2f %%, ECE %.2f %%, NLL %.4f\n' % (
    100 * find(ev, 'accuracy'), 100 * find(ev, 'ece'), find(ev, 'nll')))
print('| held-out set | ' + ' | '.join(cols) + ' | kept at 95 % TPR (mahalanobis / knn) |')
print('|---' * (len(cols) + 2) + '|')
sm, sk = find(maha, 'sets'), find(knn, 'sets')
fm, fk = find(maha, 'fpr') or {}, find(knn, 'fpr') or {}
for spec, r in sm.items():
    row = []
    for c in cols:
        src = sk.get(spec, {}) if c == 'knn' else r
        v = src.get(c)
        row.append('%.3f / %.2f' % (v['auroc'], v['fpr95']) if v else '-')
    k = spec.split('classes=')[1]
    kept = '%.1f %% / %.1f %%' % (100 * fm.get(spec, float('nan')), 100 * fk.get(spec, float('nan')))
    print('| %s | %s | %s |' % (names.get(k, spec), ' | '.join(row), kept))
for d in (maha, knn):
    t = d['decision']
    print('\n%s: threshold %.4g keeps %.1f %% of the %d held-out images of %s and %.2f %% of %s (the TPR)' % (
        t['score'], t['threshold'], 100 * t['kept_val'], t['val_n'], t['val'], 100 * t['kept_in'], d['in']), end='')
print()
EOF
cat "$out/tables.md"

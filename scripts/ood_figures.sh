#!/usr/bin/env bash
# The OOD detectors' and covariate shift's figures of README on the shipped
# models: for each, fit the Mahalanobis (pooled features) and kNN (k = 50)
# detectors on fmnist:train without its 5000 held-out images, score
# Fashion-MNIST test against MNIST test and 2000 images of each synthetic
# set with every score (ODIN included), decide at 95 % TPR on the held-out
# images, and measure accuracy, ECE and NLL under the eleven corruptions at
# severities 1 to 5. JSON, PNG and the markdown tables go to OUT
# (default out/ood-figures); the tables are printed at the end.
#   scripts/ood_figures.sh [BUILD]      MODELS="a.safetensors b.safetensors" to choose the models
# About 35 minutes on two cores (33 measured on a shared machine).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
jem="$build/jem"
out=${OUT:-out/ood-figures}
models=${MODELS:-models/jem-fmnist.safetensors models/softmax-fmnist.safetensors}
mkdir -p "$out"
sets=mnist:test,noise:uniform:2000,noise:gaussian:2000,noise:constant:2000,interp:fmnist:test:2000
run() { echo "+ $*" >&2; "$@"; }
for m in $models; do
    n=$(basename "$m" .safetensors)
    run "$jem" fit-ood --model "$m" --data fmnist:train --out "$out/$n.maha.safetensors" --force --json \
        > "$out/$n.fit-maha.json"
    run "$jem" fit-ood --model "$m" --data fmnist:train --detector knn --k 50 --out "$out/$n.knn.safetensors" \
        --force --json > "$out/$n.fit-knn.json"
    run "$jem" ood --model "$m" --out "$sets" --ood "$out/$n.maha.safetensors" --odin --threshold-tpr 0.95 \
        --hist "$out/$n.maha-hist.png" --roc "$out/$n.maha-roc.png" --json > "$out/$n.ood-maha.json"
    run "$jem" ood --model "$m" --out "$sets" --ood "$out/$n.knn.safetensors" --detector knn --no-grad \
        --threshold-tpr 0.95 --json > "$out/$n.ood-knn.json"
done
# covariate shift: every model on the same corrupted images, a line per model
first=${models%% *}
rest=$(echo $models | cut -s -d' ' -f2- | tr ' ' ',')
run "$jem" shift --model "$first" ${rest:+--compare "$rest"} --data fmnist:test --plot "$out/shift-ece.png" \
    --plot-metric ece --json > "$out/shift.json"

python3 - "$out" $models > "$out/tables.md" <<'EOF'
import json, os, sys
out, models = sys.argv[1], sys.argv[2:]
cols = ["mahalanobis", "knn", "odin", "logpx", "max_softmax", "max_logit", "neg_grad_norm", "energy_t"]
print("OOD against Fashion-MNIST test (10 000): AUROC / AUPR-in / AUPR-out / FPR95 per score\n")
print("| model | OOD set | " + " | ".join(cols) + " |")
print("|---|---|" + "---|" * len(cols))
dec = []
for m in models:
    n = os.path.basename(m)[: -len(".safetensors")]
    a = json.load(open(f"{out}/{n}.ood-maha.json"))
    k = json.load(open(f"{out}/{n}.ood-knn.json"))
    for s, v in a["sets"].items():
        v = dict(v)
        v["knn"] = k["sets"][s]["knn"]
        cells = []
        for c in cols:
            x = v.get(c)
            cells.append("-" if x is None else f"{x['auroc']:.3f} / {x['aupr_in']:.3f} / {x['aupr_out']:.3f} / {x['fpr95']:.2f}")
        print(f"| {n} | {s} | " + " | ".join(cells) + " |")
    for j, name in ((a, "mahalanobis"), (k, "knn")):
        d = j["decision"]
        dec.append((n, name, d))
print("\nDecision at 95 % TPR on the 5000 held-out fmnist:train images: the fraction of each set kept\n")
sets = list(dec[0][2]["fpr"].keys())
print("| model | detector | threshold | kept (held-out) | kept fmnist:test (TPR) | " + " | ".join(sets) + " |")
print("|---|---|---|---|---|" + "---|" * len(sets))
for n, name, d in dec:
    print(f"| {n} | {name} | {d['threshold']:.4g} | {100*d['kept_val']:.1f} % | {100*d['kept_in']:.1f} % | "
          + " | ".join(f"{100*d['fpr'][s]:.1f} %" for s in sets) + " |")
print("\nCovariate shift, Fashion-MNIST test (10 000 per set), mean over the eleven corruptions, severity 0 (clean) to 5\n")
print("| model | metric | clean | 1 | 2 | 3 | 4 | 5 |")
print("|---|---|---|---|---|---|---|---|")
shift = json.load(open(f"{out}/shift.json"))
if isinstance(shift, dict):
    shift = [shift]
for j in shift:
    n = os.path.basename(j["model"])[: -len(".safetensors")]
    for key, name, pct in (("accuracy", "accuracy", 1), ("ece", "ECE (15)", 1), ("nll", "NLL", 0)):
        v = j["mean"][key]
        print(f"| {n} | {name} | " + " | ".join(f"{100*x:.1f} %" if pct else f"{x:.3f}" for x in v) + " |")
print("\nPer corruption at severity 5 (accuracy / ECE / NLL)\n")
names = list(shift[0]["corruptions"].keys())
print("| model | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
for j in shift:
    n = os.path.basename(j["model"])[: -len(".safetensors")]
    c = j["corruptions"]
    print(f"| {n} | " + " | ".join(f"{100*c[k]['accuracy'][5]:.1f} / {100*c[k]['ece'][5]:.1f} / {c[k]['nll'][5]:.2f}" for k in names) + " |")
EOF
cat "$out/tables.md"

#!/usr/bin/env bash
# The robust-training comparison: the same model trained for MINUTES each as
# softmax, softmax + PGD-AT, softmax + TRADES, JEM and JEM + PGD-AT (L-inf
# eps 0.1, the radius ramped over the first RAMP iterations), then
# `jem report` on each (accuracy, ECE, NLL, OOD AUROC of every score against
# MNIST and the synthetic sets, PGD L-inf and L2 undefended and through SGLD
# purification, and the worst case of the attack suite both ways) and, on
# stdout, the tables of scripts/report_table.py --summary.
#   scripts/adv_table.sh [BUILD]
# Environment: MINUTES (60), RUNS (all five: softmax softmax-pgd
# softmax-trades jem jem-pgd), OUT (runs/adv), STEPS (PGD steps in
# training, 5), RAMP (1000), REPORT (extra jem report options, e.g.
# "--quick"), FORCE=1 retrains runs whose checkpoint exists. A run whose
# checkpoint OUT/RUN.safetensors is there is not trained again (copy a
# checkpoint there to report on it); its report is always rewritten.
# Five hours of training and about an hour of reports on 2 cores with the
# defaults; one run at a time (each uses every core).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
jem="$build/jem"
minutes=${MINUTES:-60}
runs=${RUNS:-softmax softmax-pgd softmax-trades jem jem-pgd}
out=${OUT:-runs/adv}
steps=${STEPS:-5}
ramp=${RAMP:-1000}
mkdir -p "$out"
# the recipes of the README's training table
softmax=(--mode softmax --batch 128 --lr 2e-3 --warmup 100 --noise 0.03 --cosine)
jemopts=(--mode jem --init informative --sgld-steps 20 --batch 128 --n-samples 16 --lr 2e-3 --warmup 100
    --gen-warmup 1000 --l2 0.05 --w-x 0.1 --sgld-clamp --cosine)
adv=(--adv-eps 0.1 --adv-norm linf --adv-steps "$steps" --adv-step 0.5 --adv-ramp "$ramp")
args=()
for r in $runs; do
    case "$r" in
    softmax) args=("${softmax[@]}") ;;
    softmax-pgd) args=("${softmax[@]}" --adv pgd "${adv[@]}") ;;
    softmax-trades) args=("${softmax[@]}" --adv trades --trades-beta 6 "${adv[@]}") ;;
    jem) args=("${jemopts[@]}") ;;
    jem-pgd) args=("${jemopts[@]}" --adv pgd "${adv[@]}") ;;
    *) echo "adv_table: unknown run '$r'" >&2; exit 2 ;;
    esac
    ckpt="$out/$r.safetensors"
    if [ ! -f "$ckpt" ] || [ -n "${FORCE:-}" ]; then
        echo "adv_table: training $r for $minutes minutes" >&2
        rm -f "$out/$r.jsonl"
        "$jem" train "${args[@]}" --minutes "$minutes" --val 0 --force --log "$out/$r.jsonl" --out "$ckpt" \
            --test fmnist:test >&2
    fi
    # shellcheck disable=SC2086
    "$jem" report --model "$ckpt" --out "$out/report-$r" ${REPORT:-} >&2
done
tables=()
for r in $runs; do tables+=("$r=$out/report-$r"); done
scripts/report_table.py --summary "${tables[@]}"

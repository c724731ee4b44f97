#!/usr/bin/env bash
# The README's evaluation figures: `jem report` on the shipped softmax model
# and the two shipped JEM models, K = 20 and K = 10 (Fashion-MNIST test; MNIST
# and the synthetic sets as OOD data; PGD L-inf and L2 and the worst case of
# the attack suite, undefended and through SGLD purification under BPDA +
# EOT), a headless-Chromium check and screenshot of each page, then the
# tables.
#   scripts/figures.sh [BUILD]      (about 15 minutes per model on 2 cores)
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
for m in softmax jem jem-k10; do
    ckpt=models/$m-fmnist.safetensors
    [ -f "$ckpt" ] || { echo "figures: $ckpt missing" >&2; exit 1; }
    "$build/jem" report --model "$ckpt" --out "out/report-$m" --defence-n 50
    scripts/report_screenshot.sh "out/report-$m"
done
scripts/report_table.py softmax=out/report-softmax jem=out/report-jem jem-k10=out/report-jem-k10

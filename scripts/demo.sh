#!/usr/bin/env bash
# The main job on built-in defaults: evaluate the shipped JEM model on
# Fashion-MNIST, score MNIST against it as out-of-distribution data, and
# draw class-conditional samples. Without a shipped model, train a softmax
# classifier for a few minutes first.
set -euo pipefail
build=${1:-build}
jem="$build/jem"
cd "$(dirname "$0")/.."
out=out/demo
mkdir -p "$out"
model=models/jem-fmnist.safetensors
has() { "$jem" "$1" --help >/dev/null 2>&1; }

if [ ! -f "$model" ]; then
    echo "== no shipped JEM model: training a softmax classifier for 3 minutes"
    model="$out/softmax.safetensors"
    "$jem" train --mode softmax --minutes 3 --cosine --out "$model" --force --log "$out/train.jsonl"
fi

echo "== jem info $model"
"$jem" info "$model" | head -n 6

echo "== accuracy and calibration on Fashion-MNIST test"
if has ood; then
    "$jem" eval --model "$model" --data fmnist:test --reliability "$out/reliability.png"
else
    "$jem" eval --model "$model" --data fmnist:test
fi

if has ood; then
    echo "== out-of-distribution: Fashion-MNIST test against MNIST test and uniform noise"
    "$jem" ood --model "$model" --in fmnist:test --out mnist:test,noise:uniform:2000 --limit 2000 \
        --hist "$out/ood-hist.png" --roc "$out/ood-roc.png"
fi

echo "== class-conditional samples (one row per class)"
"$jem" sample --model "$model" --conditional --n 10 --steps 100 --from informative --out "$out/samples.png"

echo "== done: pictures in $out/"
ls -1 "$out"

#!/usr/bin/env bash
# A short JEM training run (tiny model, 3 iterations, checkpoint written and
# resumed) under valgrind's memcheck: exits non-zero on any invalid access,
# use of uninitialised memory or definite leak.  Usage: scripts/valgrind_train.sh [BUILD]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
JEM_DEPS_EXTRA=valgrind scripts/deps.sh
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf 'name = tiny\ninput = 1x28x28\nclasses = 10\nstem = 4\nblocks = 8/2 8/2\n' > "$tmp/tiny.model"
vg=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite
    --track-origins=yes)
args=(--model "$tmp/tiny.model" --data "idx:$tmp/d" --val 0 --batch 8 --mode jem --sgld-steps 2 --buffer 50
      --threads 1 --out "$tmp/m.safetensors")
# 64 Fashion-MNIST test images as a small IDX pair, so the run stays short

python3 - "$tmp/d" <<'PY'
import gzip, sys
src = "/usr/share/datasets/fashion-mnist/t10k-"
img = gzip.open(src + "images-idx3-ubyte.gz").read()
lab = gzip.open(src + "labels-idx1-ubyte.gz").read()
n = 64
open(sys.argv[1] + "-images-idx3-ubyte", "wb").write(img[:4] + n.to_bytes(4, "big") + img[8:16] + img[16:16 + n * 784])
open(sys.argv[1] + "-labels-idx1-ubyte", "wb").write(lab[:4] + n.to_bytes(4, "big") + lab[8:8 + n])
PY
"${vg[@]}" "$build/jem" train "${args[@]}" --iters 3 2>&1 | grep -E "ERROR SUMMARY|definitely lost|jem train:" 
"${vg[@]}" "$build/jem" train "${args[@]}" --iters 5 --resume "$tmp/m.safetensors" 2>&1 | grep -E "ERROR SUMMARY|definitely lost|jem train:"
"${vg[@]}" "$build/jem" eval --model "$tmp/m.safetensors" --data "idx:$tmp/d" --no-temperature 2>&1 | grep -E "ERROR SUMMARY|definitely lost|accuracy"
echo "valgrind: clean"

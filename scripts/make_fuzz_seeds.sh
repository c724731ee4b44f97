#!/usr/bin/env bash
# Write the seed corpora of the fuzz harnesses into tests/fuzz/corpus/<target>/
# (small, valid inputs of every kind each parser reads). Usage:
#   scripts/make_fuzz_seeds.sh [build]     (needs build/jem for the checkpoint)
set -euo pipefail
cd "$(dirname "$0")/.."
jem=${1:-build}/jem
c=tests/fuzz/corpus
rm -rf "$c"; mkdir -p "$c"/{idx,cifar,png,pngdir,ckpt,arch,cli,json,spec}
fx=tests/fixtures/data

be32() { printf "\\x$(printf %02x $(($1>>24&255)))\\x$(printf %02x $(($1>>16&255)))\\x$(printf %02x $(($1>>8&255)))\\x$(printf %02x $(($1&255)))"; }
pixels() { head -c "$1" /dev/zero | tr '\0' '\200'; }

# IDX: 2 images of 4x4 and their labels, plain and gzip, and 28x28 from the real files
{ printf '\x00\x00\x08\x03'; be32 2; be32 4; be32 4; pixels 32; printf 'JEM|\x00\x00\x08\x01'; be32 2; printf '\x03\x07'; } > $c/idx/plain
{ printf '\x00\x00\x08\x03'; be32 2; be32 4; be32 4; pixels 32; } | gzip -9n > $c/idx/img.gz
{ cat $c/idx/img.gz; printf 'JEM|'; { printf '\x00\x00\x08\x01'; be32 2; printf '\x01\x09'; } | gzip -9n; } > $c/idx/gzip
rm $c/idx/img.gz
fm=/usr/share/datasets/fashion-mnist
if [ -f $fm/t10k-images-idx3-ubyte.gz ]; then
    { printf '\x00\x00\x08\x03'; be32 1; be32 28; be32 28
      (set +o pipefail; zcat $fm/t10k-images-idx3-ubyte.gz | tail -c +17 | head -c 784)
      printf 'JEM|\x00\x00\x08\x01'; be32 1; printf '\x09'; } > $c/idx/fmnist1
fi

# CIFAR: one record of CIFAR-10 (even first byte) and of CIFAR-100 (odd)
{ printf '\x02'; pixels 3072; } > $c/cifar/c10
{ printf '\x03\x11'; pixels 3072; } > $c/cifar/c100

# PNG: every colour type and depth of the fixtures, asked as grey (even) and RGB (odd)
for f in $fx/png/*/*.png $fx/bad/truncated.png; do
    b=$(basename "$f" .png)
    { printf '\x00'; cat "$f"; } > $c/png/$b-grey
    { printf '\x01'; cat "$f"; } > $c/png/$b-rgb
done
{ cat $fx/png/a_grey/g8.png; printf 'JEM|'; cat $fx/png/a_grey/g8.png; } > $c/pngdir/same
{ cat $fx/png/a_grey/g8.png; printf 'JEM|'; cat $fx/png/b_colour/rgb.png; } > $c/pngdir/grey-rgb
{ cat $fx/mixed/c0/img.png; printf 'JEM|'; cat $fx/mixed/c1/img.png; } > $c/pngdir/mixed

# checkpoints: the PyTorch-written fixture and a tiny jem model
cp tests/fixtures/st/python.safetensors $c/ckpt/python
printf 'input = 1x6x6\nclasses = 3\nstem = 2\nblocks = 2/1 4/2\nactivation = swish\n' > $c/arch/tiny
if [ -x "$jem" ]; then
    d=$(mktemp -d)
    n=$(( 16 * 36 ))
    { printf '\x00\x00\x08\x03'; be32 16; be32 6; be32 6; head -c $n /dev/urandom; } > $d/x-images-idx3-ubyte
    { printf '\x00\x00\x08\x01'; be32 16; for i in $(seq 16); do printf "\\x0$((i % 3))"; done; } > $d/x-labels-idx1-ubyte
    "$jem" train --model $c/arch/tiny --data idx:$d/x --val 0 --iters 1 --batch 4 --out $d/m.safetensors >/dev/null 2>&1
    "$jem" export $d/m.safetensors $c/ckpt/tiny >/dev/null
    rm -rf "$d"
fi

# model descriptions
cp models/*.model $c/arch/
printf 'input = 3x32x32\nclasses = 100\nstem = 8\nblocks = 8/1 16/2\nactivation = lrelu\nslope = 0.1\n' > $c/arch/colour

# command lines (arguments separated by NUL bytes)
printf -- '--flag\0--int\0003\0--str=a\0pos' > $c/cli/mixed
printf -- '--float\0001e-3\0--double=2.5\0--i64\0-9\0--u64\00018446744073709551615' > $c/cli/numbers
printf -- '--help' > $c/cli/help
printf -- '--int\0' > $c/cli/missing

# JSON (the safetensors header syntax)
printf '{"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}' > $c/json/header
printf '[1.5e-3,-0,true,false,null,"\\u00e9\\ud83d\\ude00",{}]' > $c/json/values
# data set specs ("@" is the harness's small labelled set)
printf 'corrupt:@:gaussian_noise:3' > $c/spec/corrupt
printf 'corrupt:@:jpeg:5:seed=7' > $c/spec/corrupt-seed
printf '@:classes=0-1' > $c/spec/classes
printf '@:classes=0,2:relabel' > $c/spec/relabel
printf 'interp:@:classes=1:4' > $c/spec/interp
printf 'corrupt:noise:uniform:3:1x8x8:rotation:2' > $c/spec/noise
printf 'corrupt:corrupt:@:classes=2:pixelate:4:contrast:1:classes=2' > $c/spec/nested

echo "seeds: $(find $c -type f | wc -l) files in $c"

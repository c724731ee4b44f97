#!/usr/bin/env bash
# make install into a temporary DESTDIR, then use the installed tree as a
# user would: the files where they belong, pkg-config's flags, a C program
# (tests/install/example.c) built with them against the shared library of
# the tree, its figures against `jem eval` of the installed tool on the same
# images, the tool's data found from its prefix (models, MNIST), the
# manual page (rendered without a warning, one section per command listing
# every option of its --help), make uninstall.
set -u
. "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$(dirname "$JEM")" && pwd)
rel=$(realpath --relative-to="$root" "$build")
dest="$tmp/stage"
# the sanitizer build installs (and links) with its flags
mk=(BUILD="$rel")
cflags=()
case "$rel" in *san*) mk+=(SANITIZE=1); cflags=(-fsanitize=address,undefined) ;; esac
unset MAKEFLAGS MFLAGS MAKELEVEL
version=$(sed -n 's/^#define JEM_VERSION "\(.*\)"/\1/p' "$root/include/jem.h")
major=${version%%.*}; minor=${version#*.}; minor=${minor%%.*}

make -s -C "$root" "${mk[@]}" install DESTDIR="$dest" > "$tmp/make.log" 2>&1
check "[ $? -eq 0 ]" || cat "$tmp/make.log" >&2

# ---- the tree
pc=$(find "$dest" -name jem.pc)
check "[ -n '$pc' ] && [ -f '$pc' ]"
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR="$dest"
prefix=$(PKG_CONFIG_SYSROOT_DIR= pkg-config --variable=prefix jem)
P="$dest$prefix"
echo "installed into $P:"
(cd "$dest" && find . \( -type f -o -type l \) | sort | sed 's/^\./  /')
for f in bin/jem lib/libjem.a "lib/libjem.so.$major.$minor" include/jem.h share/man/man1/jem.1; do
    check "[ -f '$P/$f' ]"
done
check "[ -x '$P/bin/jem' ]"
check "[ '$(readlink "$P/lib/libjem.so")' = libjem.so.$major ] && [ '$(readlink "$P/lib/libjem.so.$major")' = libjem.so.$major.$minor ]"
check "objdump -p '$P/lib/libjem.so.$major.$minor' | grep -q 'SONAME *libjem.so.$major\$'"
for h in "$root"/include/jem/*.h; do check "cmp -s '$h' '$P/include/jem/$(basename "$h")'"; done
for m in "$root"/models/*.model "$root"/models/*.safetensors; do
    check "cmp -s '$m' '$P/share/jem/models/$(basename "$m")'"
done
check "cmp -s '$build/jem.1' '$P/share/man/man1/jem.1'"

# ---- pkg-config
flags=$(pkg-config --cflags --libs jem)
echo "pkg-config --cflags --libs jem: $flags"
check "[[ ' $flags ' == *' -I$P/include '* ]] && [[ ' $flags ' == *' -L$P/lib '* ]] && [[ ' $flags ' == *' -ljem '* ]]"
check "[ '$(pkg-config --modversion jem)' = '$version' ]"
static=$(pkg-config --static --libs jem)
for l in -lgomp -lopenblas -lpng16 -lz -lm; do check "[[ ' $static ' == *' $l '* ]]"; done
models=$(pkg-config --variable=modelsdir jem)
check "[ '$models' = '$P/share/jem/models' ]"

# ---- a program against the installed library
cc -std=c11 -Wall -Wextra -Wpedantic -Werror "${cflags[@]}" "$root/tests/install/example.c" $flags \
    -o "$tmp/example" 2> "$tmp/err"
check "[ $? -eq 0 ]" || cat "$tmp/err" >&2
export LD_LIBRARY_PATH="$P/lib"
resolved=$(ldd "$tmp/example" | sed -n 's/^[[:space:]]*libjem\.so\.[0-9]* => \([^ ]*\) .*/\1/p')
echo "example: libjem.so.$major => $resolved"
check "[ '$resolved' = '$P/lib/libjem.so.$major' ]"
n=64
(cd "$tmp" && ./example "$models/jem-fmnist.safetensors" fmnist:test $n "$tmp/ex.bin") > "$tmp/ex.txt" 2> "$tmp/err"
check "[ $? -eq 0 ]" || cat "$tmp/err" >&2
cat "$tmp/ex.txt"
unset LD_LIBRARY_PATH
# the static library with pkg-config --static (Libs.private and Requires.private complete)
cc -std=c11 "${cflags[@]}" "$root/tests/install/example.c" $(pkg-config --cflags jem) \
    $(pkg-config --static --libs jem | sed 's/-ljem\b/-l:libjem.a/') -o "$tmp/example-static" 2> "$tmp/err"
check "[ $? -eq 0 ]" || cat "$tmp/err" >&2
check "! ldd '$tmp/example-static' | grep -q libjem"
(cd "$tmp" && ./example-static "$models/jem-fmnist.safetensors" fmnist:test $n) > "$tmp/ex-static.txt" 2> /dev/null
check "[ $? -eq 0 ] && diff -q '$tmp/ex.txt' '$tmp/ex-static.txt' > /dev/null"

# ---- the installed tool, run away from any checkout: the shipped model by its name
(cd "$tmp" && "$P/bin/jem" eval --model jem-fmnist.safetensors --limit $n --no-temperature --json \
    --dump-logits "$tmp/cli.bin") > "$tmp/eval.json" 2> "$tmp/err"
check "[ $? -eq 0 ]" || cat "$tmp/err" >&2
json() { sed -n "s/.*\"$1\":\([^,}]*\).*/\1/p" "$tmp/eval.json" | head -n 1; }
txt() { awk -v k="$1" '$1 == k {print $2}' "$tmp/ex.txt"; }
check "grep -q '\"model\":\"$P/share/jem/models/jem-fmnist.safetensors\"' '$tmp/eval.json'"
check "[ '$(json n)' = $n ]"
for k in accuracy nll ece; do
    check "awk -v a='$(txt $k)' -v b='$(json $k)' 'BEGIN { d = a - b; exit !(a != \"\" && b != \"\" && d < 1e-12 && d > -1e-12) }'"
done
# the shipped model does classify (the comparison above is of real figures)
check "awk -v a='$(txt accuracy)' 'BEGIN { exit !(a > 0.7) }'"
check "[ \$(stat -c %s '$tmp/ex.bin') -eq $((n * 10 * 4)) ]"
# the logits, number by number
paste <(od -An -v -tf4 -w4 "$tmp/ex.bin") <(od -An -v -tf4 -w4 "$tmp/cli.bin") > "$tmp/pairs"
check "[ \$(wc -l < '$tmp/pairs') -eq $((n * 10)) ] && awk '{ d = \$1 - \$2; if (d < 0) d = -d; s = \$1 < 0 ? -\$1 : \$1; if (d > 1e-5 * (1 + s)) bad++ } END { exit bad > 0 }' '$tmp/pairs'"

# train's default model description (models/wrn-fmnist.model) from the prefix, on a small
# set made of the first 20 Fashion-MNIST test images
fm=${JEM_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
cat_idx() { if [ -f "$1" ]; then cat "$1"; else zcat "$1.gz"; fi; }
mkdir -p "$tmp/mn"
{ printf '\x00\x00\x08\x03'; be32 20; be32 28; be32 28; cat_idx "$fm/t10k-images-idx3-ubyte" | tail -c +17 | head -c $((20 * 784)); } \
    > "$tmp/mn/t10k-images-idx3-ubyte"
{ printf '\x00\x00\x08\x01'; be32 20; cat_idx "$fm/t10k-labels-idx1-ubyte" | tail -c +9 | head -c 20; } \
    > "$tmp/mn/t10k-labels-idx1-ubyte"
(cd "$tmp" && "$P/bin/jem" train --mode softmax --data "idx:$tmp/mn/t10k" --val 0 --iters 1 --batch 4 \
    --out "$tmp/t.safetensors") > /dev/null 2> "$tmp/err"
check "[ $? -eq 0 ]" || cat "$tmp/err" >&2
check "'$P/bin/jem' info '$tmp/t.safetensors' --json | grep -q '\"model\":\"wrn-fmnist\"'"
# MNIST from PREFIX/share/jem/mnist when nothing else names it (here: those 20 images)
cp -r "$tmp/mn" "$P/share/jem/mnist"
(cd "$tmp" && env -u JEM_MNIST_DIR "$P/bin/jem" eval --model jem-fmnist.safetensors --data mnist:test \
    --no-temperature --json) > "$tmp/mn.json" 2> "$tmp/err"
check "[ $? -eq 0 ] && grep -q '\"n\":20,' '$tmp/mn.json'" || cat "$tmp/err" >&2
"$P/bin/jem" eval --model jem-fmnist.safetensors --limit 20 --no-temperature --json > "$tmp/fm20.json"
acc() { sed -n 's/.*"accuracy":\([^,]*\).*/\1/p' "$1"; }
check "[ -n '$(acc "$tmp/mn.json")' ] && [ '$(acc "$tmp/mn.json")' = '$(acc "$tmp/fm20.json")' ]"
rm -r "$P/share/jem/mnist"
# a tool built in a checkout, run from elsewhere, finds the checkout's models
(cd "$tmp" && "$build/jem" eval --model jem-fmnist.safetensors --limit 8 --no-temperature --json) > "$tmp/co.json"
check "[ $? -eq 0 ] && grep -q '\"model\":\"$root/models/jem-fmnist.safetensors\"' '$tmp/co.json'"

# ---- the manual
man1="$P/share/man/man1/jem.1"
MANWIDTH=80 man -l "$man1" 2>&1 > "$tmp/man.txt" | tee "$tmp/man.err" >&2
check "[ ! -s '$tmp/man.err' ] && grep -q '^OPTIONS' '$tmp/man.txt'"
# groff's own warnings, as Debian's lintian asks for them
LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$man1" 2>&1 > /dev/null |
    tee "$tmp/man.err" >&2
check "[ ! -s '$tmp/man.err' ]"
# every command of jem --help has its section, with every option its --help lists
: > "$tmp/all.opts"
cmds=$("$JEM" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
check "[ \$(wc -w <<< '$cmds') -ge 5 ]"
for c in $cmds; do
    awk -v c="$c" '$0 == ".SS " c {on = 1; next} /^\.S[SH] / {on = 0} on' "$man1" |
        sed -n 's/^\\fB\\-\\-\([A-Za-z0-9-]*\)\\fR.*/\1/p' | sort > "$tmp/man.opts"
    "$JEM" "$c" --help | sed -n 's/^  --\([A-Za-z0-9-]*\).*/\1/p' | grep -vx help | sort > "$tmp/help.opts"
    cat "$tmp/help.opts" >> "$tmp/all.opts"
    if cmp -s "$tmp/man.opts" "$tmp/help.opts"; then
        ok
    else
        bad "jem.1's section on $c differs from jem $c --help: $(diff "$tmp/help.opts" "$tmp/man.opts" | tr '\n' ' ')"
    fi
done
check "[ \$(wc -l < '$tmp/all.opts') -gt 50 ]"

# ---- uninstall leaves no file behind
make -s -C "$root" "${mk[@]}" uninstall DESTDIR="$dest" > "$tmp/make.log" 2>&1
check "[ $? -eq 0 ]" || cat "$tmp/make.log" >&2
left=$(find "$dest" \( -type f -o -type l \) | head -n 5)
check "[ -z '$left' ]"

finish cli_install

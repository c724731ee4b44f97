#!/usr/bin/env bash
# The shared library exports the public API and nothing else: its dynamic
# symbols (nm -D --defined-only) against the functions the public headers
# (include/jem.h, include/jem/*.h) declare, as the compiler reads them
# (gcc -aux-info). A symbol exported but not declared is a leak; a function
# declared but not exported is a header without the visibility pragma or a
# declaration without a definition. The tool's objects must link against
# the shared library alone (they use the public API only).
set -u
. "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$(dirname "$JEM")" && pwd)
so=$(ls "$build"/libjem.so.*.* 2>/dev/null | head -n 1)
check "[ -n '$so' ] && [ -f '$so' ]"

# every public header, whether or not jem.h includes it
{
    echo '#include "jem.h"'
    for h in "$root"/include/jem/*.h; do echo "#include \"jem/$(basename "$h")\""; done
} > "$tmp/all.c"
gcc -std=c11 -I"$root/include" -fsyntax-only -aux-info "$tmp/aux.txt" "$tmp/all.c" 2> "$tmp/err"
check "[ $? -eq 0 ] && [ ! -s '$tmp/err' ]"
# lines "/* ROOT/include/jem.h:44:NC */ extern const char *jem_strerror (jem_status);"
grep -F "/* $root/include/" "$tmp/aux.txt" | sed -E 's/^.*[ *(]([A-Za-z_][A-Za-z0-9_]*) \(.*$/\1/' | sort -u \
    > "$tmp/declared"
# public data objects, should a header declare any ("extern T jem_x;")
gcc -std=c11 -E -P -I"$root/include" "$tmp/all.c" | grep -E '^extern [^(]*\bjem_[A-Za-z0-9_]+;' |
    sed -E 's/.*\b(jem_[A-Za-z0-9_]+);.*/\1/' >> "$tmp/declared"
sort -u -o "$tmp/declared" "$tmp/declared"
nm -D --defined-only "$so" | awk '{print $NF}' | sed 's/@.*//' | sort -u > "$tmp/exported"
n_decl=$(wc -l < "$tmp/declared")
n_exp=$(wc -l < "$tmp/exported")
echo "public declarations: $n_decl, exported symbols: $n_exp"
check "[ $n_decl -gt 100 ]"
comm -13 "$tmp/declared" "$tmp/exported" > "$tmp/leaked"
comm -23 "$tmp/declared" "$tmp/exported" > "$tmp/missing"
[ -s "$tmp/leaked" ] && echo "exported but not declared in include/: $(tr '\n' ' ' < "$tmp/leaked")" >&2
[ -s "$tmp/missing" ] && echo "declared in include/ but not exported: $(tr '\n' ' ' < "$tmp/missing")" >&2
check "[ ! -s '$tmp/leaked' ]"
check "[ ! -s '$tmp/missing' ]"
check "[ $n_exp -eq $n_decl ]"
# the static library does hold internal functions: the check above had some to hide
n_static=$(nm -g --defined-only "$build/libjem.a" 2>/dev/null | awk 'NF == 3 {print $3}' | sort -u |
    comm -23 - "$tmp/declared" | wc -l)
check "[ $n_static -gt 0 ]"

# the tool's objects against the shared library only: the same manual page
san=()
objdump -p "$so" | grep -q 'NEEDED.*libasan' && san=(-fsanitize=address,undefined)
if gcc "${san[@]}" -o "$tmp/jem-shared" "$build"/src/cli/*.o -L"$build" -ljem -lm -Wl,-rpath,"$build" 2> "$tmp/err"; then
    ok
else
    bad "the tool's objects do not link against libjem.so: $(head -n 5 "$tmp/err")"
fi
objdump -p "$tmp/jem-shared" | grep -q 'NEEDED.*libjem\.so' && ok || bad "jem-shared does not load libjem.so"
"$tmp/jem-shared" --man > "$tmp/jem.1"
check "[ $? -eq 0 ] && cmp -s '$tmp/jem.1' '$build/jem.1'"

finish cli_symbols

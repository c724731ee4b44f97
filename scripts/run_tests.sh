#!/usr/bin/env bash
# Run every test binary in BUILD/tests and every tests/cli_*.sh; print one
# summary line "N passed, N failed". Exit non-zero if anything failed.
set -u
build=${1:-build}
cd "$(dirname "$0")/.."
pass=0; fail=0; bad=()
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d) continue;; esac
    out=$("$t" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[a-z_0-9]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -n "$line" ]; then
        p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
        f=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")
    else
        p=0; f=1
    fi
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + p)); fail=$((fail + f))
    if [ $rc -ne 0 ] || [ "$f" -ne 0 ]; then
        bad+=("$t"); printf '%s\n' "$out" | tail -n 30
    fi
    echo "  $(basename "$t"): ${p} passed, ${f} failed"
done
for s in tests/cli_*.sh; do
    [ -f "$s" ] || continue
    [ -n "${JEM_TEST_UNIT_ONLY:-}" ] && continue
    out=$(JEM="$build/jem" bash "$s" 2>&1); rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[a-z_0-9]+: [0-9]+ passed, [0-9]+ failed$' | tail -n 1)
    if [ -n "$line" ]; then
        p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
        f=$(sed -E 's/.* ([0-9]+) failed$/\1/' <<<"$line")
    else
        p=0; f=1
    fi
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + p)); fail=$((fail + f))
    if [ $rc -ne 0 ] || [ "$f" -ne 0 ]; then bad+=("$s"); printf '%s\n' "$out" | tail -n 30; fi
    echo "  $(basename "$s"): ${p} passed, ${f} failed"
done
[ ${#bad[@]} -gt 0 ] && echo "failing: ${bad[*]}"
echo "${pass} passed, ${fail} failed"
[ "$fail" -eq 0 ]

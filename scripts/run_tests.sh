#!/usr/bin/env bash
# Run every test binary in BUILD/tests and every tests/cli_*.sh; print one
# summary line "N passed, N failed". Exit non-zero if anything failed.
set -u
build=${1:-build}
cd "$(dirname "$0")/.."
pass=0; fail=0; bad=()
# run one test (a binary, or a script through bash) and add up its counts
run_one() {
    local out rc line p f
    out=$("$@" 2>&1); rc=$?
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
        bad+=("${@: -1}"); printf '%s\n' "$out" | tail -n 30
    fi
    echo "  $(basename "${@: -1}"): ${p} passed, ${f} failed"
}
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d) continue;; esac
    run_one "$t"
done
export JEM="$build/jem"
for s in tests/cli_*.sh; do
    [ -f "$s" ] || continue
    [ -n "${JEM_TEST_UNIT_ONLY:-}" ] && continue
    run_one bash "$s"
done
[ ${#bad[@]} -gt 0 ] && echo "failing: ${bad[*]}"
echo "${pass} passed, ${fail} failed"
[ "$fail" -eq 0 ]

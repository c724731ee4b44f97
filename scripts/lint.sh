#!/usr/bin/env bash
# Static checks, each run even when an earlier one fails; exits non-zero if
# any failed:
#   format   every C file under src/, include/ and tests/ is as clang-format
#            (.clang-format) writes it; `make format` rewrites them
#   build    the library, the tool and the tests with warnings as errors
#            (in build-lint/)
#   cppcheck (with CPPCHECK=1) cppcheck's warning and portability checks of
#            src/; slow, and it reports a few false positives
# Usage: scripts/lint.sh FILE...   (the files to check for format)
set -u
cd "$(dirname "$0")/.."
failed=()

n=$(clang-format --dry-run "$@" 2>&1 | grep -c 'clang-format-violations')
if [ "$n" -eq 0 ]; then
    echo "lint: format: $# files formatted"
else
    clang-format --dry-run "$@" 2>&1 | grep 'clang-format-violations' | cut -d: -f1 | sort | uniq -c | sort -rn | head -20
    echo "lint: format: $n places differ from .clang-format (run 'make format')"
    failed+=(format)
fi

mkdir -p build-lint
if ${MAKE:-make} --no-print-directory BUILD=build-lint WERROR=1 all tests > build-lint/lint.log 2>&1; then
    echo "lint: build: no warnings"
else
    grep -E 'error|warning' build-lint/lint.log | head -40
    echo "lint: build: failed (build-lint/lint.log)"
    failed+=(build)
fi

if [ -n "${CPPCHECK:-}" ] && [ "${CPPCHECK}" != 0 ]; then
    out=$(cppcheck --quiet --std=c11 -Iinclude -Isrc -D_GNU_SOURCE --enable=warning,portability \
          --inline-suppr -j2 --template='{file}:{line}: {severity}: {id}: {message}' src 2>&1 | grep -E '^src/' | sort -u)
    if [ -z "$out" ]; then
        echo "lint: cppcheck: clean"
    else
        printf '%s\n' "$out"
        echo "lint: cppcheck: $(printf '%s\n' "$out" | wc -l) findings"
        failed+=(cppcheck)
    fi
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "lint: failed: ${failed[*]}"
    exit 1
fi
echo "lint: passed"

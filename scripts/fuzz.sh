#!/usr/bin/env bash
# Run each libFuzzer harness for FUZZ_SECONDS (default 60) from its seed
# corpus. New coverage goes to out/fuzz/<target>/ (the committed seeds are
# left as they are); a crash is kept as out/fuzz/crash-<target>-* and should
# become a regression input in tests/fuzz/regress/<target>/.
# Usage: scripts/fuzz.sh BUILD target...
set -u
cd "$(dirname "$0")/.."
build=$1; shift
secs=${FUZZ_SECONDS:-60}
mkdir -p out/fuzz
status=0
printf '%-8s %12s %8s %8s %s\n' target executions seconds crashes coverage
for t in "$@"; do
    work=out/fuzz/$t; mkdir -p "$work"
    seeds=tests/fuzz/corpus/$t
    reg=tests/fuzz/regress/$t
    dirs=("$work" "$seeds"); [ -d "$reg" ] && dirs+=("$reg")
    log=out/fuzz/$t.log
    touch "$work/.start"
    start=$(date +%s)
    "$build/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=16384 \
        -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="out/fuzz/crash-$t-" "${dirs[@]}" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
    [ -z "$execs" ] && execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    crashes=$(find out/fuzz -maxdepth 1 -name "crash-$t-*" -newer "$work/.start" | wc -l)
    printf '%-8s %12s %8s %8s %s\n' "$t" "${execs:-?}" "$((end - start))" "$crashes" "${cov:-}"
    if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then status=1; tail -n 30 "$log"; fi
done
exit $status

#!/bin/sh
# make fuzz: runs each libFuzzer target built in DIR. First every file under
# tests/fuzz/regressions/<target>/, once each (a crash found once must stay fixed), then
# SECONDS of fuzzing on a scratch copy of tests/fuzz/corpus/<target>/, so the committed seeds
# are never touched. Prints one line per target and exits 1 when anything crashed. Logs and
# crashing inputs stay in DIR: <target>.log, <target>-crash-*, <target>-regression-*.log.
set -u
usage='usage: run.sh DIR SECONDS FLAGS TARGET...'
dir=${1:?$usage}
seconds=${2:?$usage}
flags=${3-}
shift 3
here=$(cd "$(dirname "$0")" && pwd)
failed=0

# The line of a log that says what broke: our CHECK, a sanitizer, or libFuzzer itself.
cause() {
    grep -m1 -E 'invariant broken|ERROR: (Address|Leak)Sanitizer|ERROR: libFuzzer|runtime error:' \
        "$1" | sed 's/^/    /'
}

plural() {
    if [ "$1" = 1 ]; then echo "$1 $2"; else echo "$1 $2es"; fi
}

# Runs each regression input of target $1 once; prints a line for each that crashes and
# sets `regressions` to their count.
run_regressions() {
    regressions=0
    for input in "$here/regressions/$1"/*; do
        [ -f "$input" ] || continue
        log=$dir/$1-regression-$(basename "$input").log
        if ! "$dir/$1" "$input" > "$log" 2>&1; then
            echo "$1: regression ${input#"$here/"} crashes (log $log)"
            cause "$log"
            regressions=$((regressions + 1))
        fi
    done
}

for target in "$@"; do
    run_regressions "$target"
    corpus=$dir/corpus/$target
    mkdir -p "$corpus"
    cp "$here/corpus/$target"/* "$corpus/"
    dict=
    [ -f "$here/$target.dict" ] && dict=-dict=$here/$target.dict
    log=$dir/$target.log
    start=$(date +%s)
    # shellcheck disable=SC2086 # flags and dict are lists of options
    "$dir/$target" -max_total_time="$seconds" -artifact_prefix="$dir/$target-" \
        -print_final_stats=1 $flags $dict "$corpus" > "$log" 2>&1
    rc=$?
    # "Done N runs in S second(s)" ends a clean run; after a crash only the final stats give
    # the count, and the time is our own.
    done_line=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 \2/p' "$log")
    if [ -n "$done_line" ]; then
        n=${done_line% *} s=${done_line#* }
    else
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | head -n1)
        s=$(($(date +%s) - start))
    fi
    crashes=0
    [ "$rc" = 0 ] || crashes=1  # libFuzzer stops at the first crash
    line="$target: ${n:-0} executions in $s s, $(plural "$crashes" crash)"
    [ "$regressions" = 0 ] || line="$line; regression inputs crashing: $regressions"
    echo "$line"
    if [ "$crashes" != 0 ]; then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | head -n1)
        echo "    input ${artifact:-?}, log $log"
        cause "$log"
    fi
    [ "$crashes" = 0 ] && [ "$regressions" = 0 ] || failed=1
done
exit "$failed"

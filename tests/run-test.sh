#!/bin/sh
# tests/run-test.sh: automake's LOG_COMPILER for test programs.  Unit tests
# (cmocka, TAP on stdout) run as they are.  Fuzz targets (tests/fuzz/fuzz_NAME)
# run over their corpus tests/fuzz/corpus/NAME: as a plain replay in a normal
# build, or under libFuzzer for FUZZ_SECONDS seconds in a --enable-fuzzing
# build; either way the result is reported as one TAP line.
prog=$1
shift
name=$(basename "$prog")

case "$name" in
fuzz_*) ;;
*) exec "$prog" "$@" ;;
esac

target=${name#fuzz_}
corpus=$TAP_SRCDIR/tests/fuzz/corpus/$target
echo "1..1"
if [ ! -d "$corpus" ]; then
    echo "not ok 1 - $target: no corpus at $corpus"
    exit 0
fi

if [ -n "$TAP_FUZZING" ]; then
    work=$(mktemp -d)
    cp "$corpus"/* "$work"/ 2>/dev/null
    secs=${FUZZ_SECONDS:-5}
    if "$prog" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
            -artifact_prefix="$work/" "$work" >"$work/out" 2>&1; then
        runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$work/out" | tail -1)
        echo "ok 1 - $target: fuzzed for $secs s, ${runs:-?} runs, no crash"
        rm -rf "$work"
    else
        echo "not ok 1 - $target: libFuzzer found a failure (artifacts and log in $work)"
        sed 's/^/# /' "$work/out" | tail -40
    fi
    exit 0
fi

n=$(ls "$corpus" | wc -l)
if out=$("$prog" "$corpus"/* 2>&1); then
    echo "ok 1 - $target: $n corpus inputs replayed"
else
    echo "not ok 1 - $target: replay failed"
    echo "$out" | sed 's/^/# /' | tail -40
fi

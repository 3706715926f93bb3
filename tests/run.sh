#!/bin/sh
# run.sh BUILD_DIR - champ's whole test run (what `make test` calls).
#
# Runs, each under a header line:
#   make check-warnings            gcc and clang, -Werror (1 check)
#   make check-tls                 no dynamic TLS access in build/rel (1 check)
#   BUILD/test/champ_test          optimised, CHAMP_STATS + CHAMP_FAULTS
#   BUILD/reltest/champ_test       the release library's flags (no counters,
#                                  no fault hook; TH_FAULTS parts skipped)
#   BUILD/asan/champ_test          ASan + UBSan, CHAMP_TEST_SCALE=0.25
#   valgrind BUILD/dbg/champ_test  memcheck, CHAMP_TEST_SCALE=0.05
#   BUILD/dbg2/champ_test          CHAMP_DEBUG=2, CHAMP_TEST_SCALE=0.1 (tools.mk)
#   BUILD/fuzz/replay              tests/fuzz/corpus, 1 check a file (tools.mk)
#   BUILD/examples/*               each must exit 0 (1 check each)
# sums the "N passed, N failed" last lines of the test binaries, counts a
# crashed or failing run (or a missing binary) as one more failure, and
# prints one final line "N passed, N failed".  Exit status: 0 iff nothing
# failed.
#
# One test or group by name: BUILD/test/champ_test NAME (--list names them;
# tests/README.md).
B=${1:-build}
PASSED=0
FAILED=0
TMP=${TMPDIR:-/tmp}/champ-run.$$
trap 'rm -f "$TMP.out" "$TMP.rc"' EXIT INT TERM

header() {
    echo
    echo "==== $* ===="
}

pass() { PASSED=$((PASSED + 1)); }
fail() { FAILED=$((FAILED + 1)); echo "run.sh: FAILED: $*"; }

# run_suite NAME BINARY CMD...: runs CMD (which runs BINARY), streams its
# output and adds the counts of its last line.
run_suite() {
    name=$1
    bin=$2
    shift 2
    if [ ! -x "$bin" ]; then
        fail "$name: $bin missing (build failed?)"
        return
    fi
    start=$(date +%s)
    { "$@"; echo $? > "$TMP.rc"; } 2>&1 | tee "$TMP.out"
    rc=$(cat "$TMP.rc" 2>/dev/null || echo 1)
    secs=$(( $(date +%s) - start ))
    last=$(tail -n 1 "$TMP.out")
    p=$(echo "$last" | sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1/p')
    f=$(echo "$last" | sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\2/p')
    if [ -z "$p" ]; then
        fail "$name: no summary line (crashed? exit status $rc)"
        return
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    # Exit status 1 means "a check failed" (already counted); anything else
    # (valgrind's 99, a sanitizer abort) is a failure of its own.
    if [ "$rc" != 0 ] && { [ "$rc" != 1 ] || [ "$f" = 0 ]; }; then
        fail "$name: exit status $rc (memory errors or a crash)"
    fi
    echo "($name: ${secs}s, exit status $rc)"
}

header "make check-warnings"
if make --no-print-directory check-warnings; then
    pass
else
    fail "check-warnings"
fi

header "make check-tls"
if make --no-print-directory check-tls; then
    pass
else
    fail "check-tls"
fi

header "$B/test/champ_test (optimised, stats + faults)"
run_suite test "$B/test/champ_test" "$B/test/champ_test"

header "$B/reltest/champ_test (release flags: no CHAMP_STATS, no CHAMP_FAULTS)"
run_suite release "$B/reltest/champ_test" "$B/reltest/champ_test"

header "$B/asan/champ_test (ASan + UBSan, CHAMP_TEST_SCALE=0.25)"
run_suite asan "$B/asan/champ_test" env CHAMP_TEST_SCALE=0.25 \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    "$B/asan/champ_test"

header "valgrind $B/dbg/champ_test (memcheck, CHAMP_TEST_SCALE=0.05)"
if command -v valgrind >/dev/null 2>&1; then
    run_suite valgrind "$B/dbg/champ_test" env CHAMP_TEST_SCALE=0.05 \
        valgrind -q --error-exitcode=99 \
        --leak-check=full --errors-for-leak-kinds=all "$B/dbg/champ_test"
else
    echo "valgrind not found: skipped (Debian: apt-get install valgrind)"
fi

# ---- tests/tools.mk suites (fuzz-tools): CHAMP_DEBUG=2 and the fuzz corpus ----
# dbg2 skips one test that level 2 cannot run (tests/README.md, "Tools"):
# api.hash_calls counts hash calls (level 2's validate hashes too); and the
# pool tests, sets.memory and build.apply_scratch, whose big maps make
# validate-after-every-update quadratic (minutes; they run in the other
# builds).
header "$B/dbg2/champ_test (CHAMP_DEBUG=2: validate after every update, CHAMP_TEST_SCALE=0.1)"
if [ -x "$B/dbg2/champ_test" ]; then
    run_suite dbg2 "$B/dbg2/champ_test" env CHAMP_TEST_SCALE=0.1 "$B/dbg2/champ_test" \
        $("$B/dbg2/champ_test" --list | grep -v -e '^api\.hash_calls$' -e '^poolfix\.' \
          -e '^sets\.memory$' -e '^build\.apply_scratch$')
else
    fail "dbg2: $B/dbg2/champ_test missing (build failed?)"
fi

header "$B/fuzz/replay tests/fuzz/corpus (the fuzz target on its corpus, ASan + UBSan)"
run_suite fuzz-replay "$B/fuzz/replay" env \
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    "$B/fuzz/replay" -q tests/fuzz/corpus

header "$B/fuzz/known_bugs (regressions of the bugs fuzzing found: KB1-KB3, ASan + UBSan)"
run_suite fuzz-regressions "$B/fuzz/known_bugs" "$B/fuzz/known_bugs"
run_suite fuzz-regressions-level2 "$B/fuzz/known_bugs2" "$B/fuzz/known_bugs2"
# ---- end of tests/tools.mk suites ----

header "examples ($B/examples/*)"
found=0
for ex in "$B"/examples/*; do
    [ -f "$ex" ] && [ -x "$ex" ] || continue
    found=1
    if "$ex" </dev/null >"$TMP.out" 2>&1; then
        pass
        echo "ok   $ex"
    else
        rc=$?
        fail "$ex exited with status $rc"
        tail -n 20 "$TMP.out"
    fi
done
[ "$found" = 1 ] || echo "no examples built"

echo
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

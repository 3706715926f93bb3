# tests/tools.mk - the tools that hunt for bugs (included by the Makefile).
#
#   make fuzz [FUZZ_SECONDS=60]   libFuzzer + ASan + UBSan on tests/fuzz/corpus
#                                 (new inputs go to build/fuzz/corpus; a crash
#                                 fails the target and is saved in build/fuzz/)
#   make fuzz-merge               add to tests/fuzz/corpus the inputs of
#                                 build/fuzz/corpus that reach new edges
#                                 (then commit them)
#   make fuzz-replay              the corpus through the replay binary (no
#                                 libFuzzer; also a suite of `make test`)
#   make known-bugs               reproductions of library bugs found: they
#                                 FAIL until the bugs are fixed (not in test)
#   make tsan                     ThreadSanitizer stress test of the thread model
#   make soak [SOAK_OPS=100000000] long mixed workload, optimised build
#   build/dbg2/champ_test         the test binary with CHAMP_DEBUG=2 (validate
#                                 after every update; a suite of `make test`)
#   make coverage [COV_SCALE=0.3] the suite built with gcc --coverage -O0: line
#                                 coverage of each src/*.c (the .gcov files,
#                                 ##### on lines never run, in build/cov/)
#
# Uses the Makefile's CC, BASE, ASAN_FLAGS, LIB_SRC, LIB_HDR, TEST_SRC,
# TEST_HDR and B.  tests/README.md describes the tools.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_ARGS    ?=
TSAN_CC      ?= clang
TSAN_SECONDS ?= 5
SOAK_OPS     ?= 100000000
COV_SCALE    ?= 0.3

FUZZ_SRC   := tests/fuzz/fuzz_champ.c
FUZZ_SEEDS := tests/fuzz/corpus
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
              -fno-omit-frame-pointer
FUZZ_CFLAGS := $(BASE) -O1 -g -DCHAMP_DEBUG
TSAN_CFLAGS := $(BASE) -O1 -g -fsanitize=thread -fno-omit-frame-pointer -DCHAMP_STATS
SOAK_CFLAGS := $(BASE) -O2 -g -DNDEBUG -DCHAMP_STATS
DBG2_CFLAGS := $(BASE) -O2 -g -DCHAMP_DEBUG=2

.PHONY: fuzz fuzz-merge fuzz-replay known-bugs tsan soak coverage check-warnings-tools

# The libFuzzer binary: needs clang's compiler-rt (Debian: libclang-rt-14-dev).
$(B)/fuzz/fuzz_champ: $(FUZZ_SRC) $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_FLAGS) $(LIB_SRC) $(FUZZ_SRC) -o $@

# The same target without libFuzzer, ASan + UBSan: replays files.
$(B)/fuzz/replay: $(FUZZ_SRC) tests/fuzz/replay.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(FUZZ_CFLAGS) $(ASAN_FLAGS) $(LIB_SRC) $(FUZZ_SRC) tests/fuzz/replay.c -o $@

fuzz:
	@sh tools/deps.sh libclang-rt-14-dev
	@if ! printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
	    | $(FUZZ_CC) -fsanitize=fuzzer -x c - -o /tmp/champ-fuzz-probe.$$$$ >/dev/null 2>&1; then \
	  echo "fuzz: skipped: '$(FUZZ_CC) -fsanitize=fuzzer' does not link (Debian: libclang-rt-14-dev, as root)"; \
	  exit 0; \
	fi; \
	rm -f /tmp/champ-fuzz-probe.$$$$; \
	$(MAKE) --no-print-directory $(B)/fuzz/fuzz_champ || exit 1; \
	mkdir -p $(B)/fuzz/corpus; \
	echo "fuzz: $(FUZZ_SECONDS) s, new inputs in $(B)/fuzz/corpus, crashes in $(B)/fuzz/, log $(B)/fuzz/fuzz.log"; \
	FUZZ_CHAMP_REPORT=1 ASAN_OPTIONS=$${ASAN_OPTIONS:-detect_leaks=1} \
	UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
	$(B)/fuzz/fuzz_champ -max_len=4096 -timeout=30 -rss_limit_mb=2048 \
	  -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  -artifact_prefix=$(B)/fuzz/ $(FUZZ_ARGS) $(B)/fuzz/corpus $(FUZZ_SEEDS) \
	  > $(B)/fuzz/fuzz.log 2>&1; st=$$?; \
	if [ $$st = 0 ]; then \
	  grep -E '^(#[0-9]+.*(INITED|DONE)|stat::|fuzz_champ:)' $(B)/fuzz/fuzz.log; \
	else \
	  grep -m1 'INFO: Seed:' $(B)/fuzz/fuzz.log; \
	  echo "fuzz: the report (from its first line, at most 120 lines):"; \
	  grep -v -E '^#[0-9]+' $(B)/fuzz/fuzz.log \
	    | sed -n '/ERROR: \|runtime error\|fuzz_champ: FAIL\|^==[0-9]*==/,$$p' | head -n 120; \
	  echo "fuzz: the end of the log:"; \
	  grep -v -E '^#[0-9]+' $(B)/fuzz/fuzz.log | tail -n 12; \
	  for f in $(B)/fuzz/crash-* $(B)/fuzz/leak-* $(B)/fuzz/timeout-* $(B)/fuzz/oom-*; do \
	    [ -f "$$f" ] || continue; \
	    echo "fuzz: $$f, $$(wc -c < $$f) bytes, base64 (base64 -d > crash to replay it):"; \
	    base64 -w 100 "$$f"; \
	  done; \
	  echo "fuzz: FAILED (exit status $$st): the input is in $(B)/fuzz/crash-*; tests/README.md says how to reproduce it"; \
	fi; \
	exit $$st

# Adds to the seeds the inputs of build/fuzz/corpus that reach an edge the
# seeds do not (-use_counters=0: edges, not hit counts, which would keep
# thousands of inputs); no seed is removed (named ones are regressions).
fuzz-merge: $(B)/fuzz/fuzz_champ
	mkdir -p $(B)/fuzz/corpus
	$(B)/fuzz/fuzz_champ -merge=1 -use_counters=0 -max_len=4096 -timeout=30 \
	  -rss_limit_mb=2048 $(FUZZ_SEEDS) $(B)/fuzz/corpus
	@echo "fuzz-merge: $$(ls $(FUZZ_SEEDS) | wc -l) files, $$(du -sk $(FUZZ_SEEDS) | cut -f1) KiB in $(FUZZ_SEEDS)"

fuzz-replay: $(B)/fuzz/replay
	$(B)/fuzz/replay -q $(FUZZ_SEEDS)

# Regressions of the bugs fuzzing found (tests/fuzz/known_bugs.c: KB1-KB3,
# all fixed): minimal reproductions, run by make test; the fuzz inputs that
# found them are in the corpus (make known-bugs replays them alone too).
$(B)/fuzz/known_bugs: tests/fuzz/known_bugs.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE) -O1 -g -DCHAMP_DEBUG $(ASAN_FLAGS) $(LIB_SRC) tests/fuzz/known_bugs.c -o $@

$(B)/fuzz/known_bugs2: tests/fuzz/known_bugs.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE) -O1 -g -DCHAMP_DEBUG=2 -DKB_LEVEL=2 $(ASAN_FLAGS) $(LIB_SRC) \
	  tests/fuzz/known_bugs.c -o $@

$(B)/fuzz/replay-raw: $(FUZZ_SRC) tests/fuzz/replay.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(FUZZ_CFLAGS) -DFUZZ_CHAMP_NO_WORKAROUNDS $(ASAN_FLAGS) $(LIB_SRC) $(FUZZ_SRC) \
	  tests/fuzz/replay.c -o $@

known-bugs: $(B)/fuzz/known_bugs $(B)/fuzz/known_bugs2 $(B)/fuzz/replay-raw
	@st=0; $(B)/fuzz/known_bugs 2>$(B)/fuzz/known-bugs.log || st=1; \
	$(B)/fuzz/known_bugs2 2>>$(B)/fuzz/known-bugs.log || st=1; \
	echo "replaying tests/fuzz/known-bugs without the fuzz target's workarounds:"; \
	$(B)/fuzz/replay-raw tests/fuzz/known-bugs 2>>$(B)/fuzz/known-bugs.log || st=1; \
	echo "(details: $(B)/fuzz/known-bugs.log)"; exit $$st

# ThreadSanitizer: the thread model of champ.h under stress.
$(B)/tsan/tsan_stress: tests/stress/tsan_stress.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(TSAN_CC) $(TSAN_CFLAGS) $(LIB_SRC) tests/stress/tsan_stress.c -o $@ -lpthread

tsan:
	@sh tools/deps.sh libclang-rt-14-dev
	@$(MAKE) --no-print-directory $(B)/tsan/tsan_stress
	TSAN_OPTIONS="halt_on_error=1 exitcode=66 $${TSAN_OPTIONS:-}" \
	  $(B)/tsan/tsan_stress $(TSAN_SECONDS)

# Soak: many operations, optimised library with pool counters.
$(B)/soak/soak: tests/stress/soak.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(CC) $(SOAK_CFLAGS) $(LIB_SRC) tests/stress/soak.c -o $@ -lm

soak: $(B)/soak/soak
	$(B)/soak/soak $(SOAK_OPS)

# Line coverage of the library by the suite (gcc's gcov; -O0 so that every
# line is its own).  Counts start from zero at each run.
$(B)/cov/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR)
	@mkdir -p $(@D)
	gcc $(BASE) -O0 -g --coverage -DCHAMP_STATS -DCHAMP_FAULTS -Itests $(LIB_SRC) $(TEST_SRC) \
	  -o $@ -lm -lpthread

coverage: $(B)/cov/champ_test
	@rm -f $(B)/cov/*.gcda $(B)/cov/*.gcov
	@echo "coverage: the suite at CHAMP_TEST_SCALE=$(COV_SCALE) (log $(B)/cov/test.log)"
	@CHAMP_TEST_SCALE=$(COV_SCALE) $(B)/cov/champ_test > $(B)/cov/test.log 2>&1; st=$$?; \
	  tail -1 $(B)/cov/test.log; exit $$st
	@for f in $(notdir $(LIB_SRC)); do \
	  gcov -o $(B)/cov $(B)/cov/champ_test-$${f%.c}.gcda 2>/dev/null | \
	    awk -v f=$$f '/^File/ { keep = $$0 == "File \x27src/" f "\x27" } \
	                  keep && /^Lines executed/ { printf "%-12s %s\n", f, $$0; keep = 0 }'; \
	  mv $$f.gcov $(B)/cov/ 2>/dev/null; \
	done; rm -f *.h.gcov
	@echo "coverage: the lines never run are ##### in $(B)/cov/<file>.c.gcov"

# CHAMP_DEBUG=2: champ_validate after every update (make test runs it at a
# small CHAMP_TEST_SCALE).
$(B)/dbg2/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR)
	@mkdir -p $(@D)
	$(CC) $(DBG2_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ -lm

# `make test` also builds these two (tests/run.sh runs them).
test: $(B)/dbg2/champ_test $(B)/fuzz/replay $(B)/fuzz/known_bugs $(B)/fuzz/known_bugs2

# check-warnings covers these sources too.
TOOLS_SRC := $(FUZZ_SRC) tests/fuzz/replay.c tests/fuzz/make_seeds.c tests/fuzz/known_bugs.c \
             tests/stress/tsan_stress.c tests/stress/soak.c
check-warnings: check-warnings-tools
check-warnings-tools:
	@for c in gcc clang; do \
	  command -v $$c >/dev/null || continue; \
	  for f in $(TOOLS_SRC); do \
	    $$c $(BASE) -DCHAMP_DEBUG -O2 -Werror -fsyntax-only $$f || exit 1; \
	  done; \
	  echo "check-warnings: $$c clean (tests/fuzz, tests/stress)"; \
	done

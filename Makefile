# champ - build, test, bench, install.
#
#   make                 libchamp.a, libchamp.so and the examples (release)
#   make test            everything below, then one line "N passed, N failed"
#   make check-warnings  gcc and clang, -Wall -Wextra -Wpedantic -Werror
#   make check-tls       the release objects use initial-exec thread-locals
#   make debug|asan      test binaries of the debug / ASan+UBSan builds
#   make valgrind        the debug test binary under valgrind memcheck
#   make tsan-concurrent the ThreadSanitizer stress test of concurrent pools
#   make bench           the benchmark suite (bench/README.md); ARGS="--quick"
#   make man-check       lint the man pages; every champ_* function of
#                        include/champ.h must be named by one
#   make install         header, libraries, champ.pc, CMake package, man pages
#   make uninstall       removes all of it again (same PREFIX, LIBDIR, ...)
#
# Knobs: CC, CFLAGS, CPPFLAGS, LDFLAGS, PORTABLE=1 (no -mpopcnt on x86-64),
# STATS=1 (pool counters in the release library), HAVE_XXHASH=0 (fallback
# byte hash even when xxhash.h is there), CHAMP_NO_INSTALL=1 (`make test` and
# `make bench` never install Debian packages).  Install: PREFIX, DESTDIR,
# LIBDIR, INCLUDEDIR, MANDIR, PKGCONFIGDIR, CMAKEDIR.
#
# Every build directory (build/rel, build/test, build/dbg, build/asan) holds
# a file `config` with the compiler and every flag its objects were built
# with; it is rewritten only when that text changes, and everything built in
# the directory depends on it, so changing CC, a knob, CFLAGS or what was
# detected (xxhash.h) rebuilds exactly what it affects.

CC      ?= cc
DESTDIR ?=

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
MANDIR       ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR     ?= $(LIBDIR)/cmake/champ

# ---- version: include/champ.h is the one place that defines it ----
hdr_version = $(shell awk '$$1 == "\043define" && $$2 == "CHAMP_VERSION_$(1)" { print $$3 }' include/champ.h)
VERSION_MAJOR := $(call hdr_version,MAJOR)
VERSION_MINOR := $(call hdr_version,MINOR)
VERSION_PATCH := $(call hdr_version,PATCH)
ifeq ($(VERSION_MAJOR)$(VERSION_MINOR)$(VERSION_PATCH),)
$(error include/champ.h defines no CHAMP_VERSION_MAJOR/MINOR/PATCH)
endif
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
# The SONAME's number: the major version (libchamp.so.0 for 0.x.y).
SOMAJOR := $(VERSION_MAJOR)

# ---- Debian packages, before anything is detected ----
# `make test` wants libxxhash-dev: run as root it installs it here, while the
# Makefile is read, so that the detection below, the release library and the
# tests all see the same headers.  (`make bench` does the same through
# bench/bench.mk, see the bench target.)  CHAMP_NO_INSTALL=1 turns it off.
ifeq ($(BENCH_NO_DEPS),1)
CHAMP_NO_INSTALL := 1
endif
ifneq ($(filter test,$(MAKECMDGOALS)),)
$(shell CHAMP_NO_INSTALL='$(CHAMP_NO_INSTALL)' sh tools/deps.sh libxxhash-dev >&2)
endif

ARCH := $(shell uname -m)
ISA  :=
ifeq ($(ARCH),x86_64)
ifneq ($(PORTABLE),1)
ISA := -mpopcnt
endif
endif

# XXH3 from Debian's libxxhash-dev (header only).  Without it the library
# builds with its fallback byte hash and says so.  HAVE_XXHASH=0 forces that.
ifeq ($(origin HAVE_XXHASH),undefined)
HAVE_XXHASH := $(shell printf '\043include <xxhash.h>\n' | $(CC) $(CPPFLAGS) $(CFLAGS) -E -x c - >/dev/null 2>&1 && echo 1 || echo 0)
endif
ifeq ($(HAVE_XXHASH),1)
HASHDEF :=
else
HASHDEF := -DCHAMP_NO_XXHASH
endif

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
BASE    := -std=c11 $(WARN) -Iinclude $(ISA) $(HASHDEF) -fvisibility=hidden
ifeq ($(STATS),1)
BASE += -DCHAMP_STATS
endif
# The user's flags come last, so they can override ours (-O3, -g, ...).
USER_CFLAGS = $(CPPFLAGS) $(CFLAGS)

REL_CFLAGS  = $(strip $(BASE) -O2 -DNDEBUG -fPIC $(USER_CFLAGS))
TEST_CFLAGS = $(strip $(BASE) -O2 -g -DCHAMP_STATS -DCHAMP_FAULTS $(USER_CFLAGS))
# The suite once more with the release library's own flags (no counters, no
# fault hook): the configuration users link is tested as it ships.
RELTEST_CFLAGS = $(strip $(REL_CFLAGS) -g)
DBG_CFLAGS  = $(strip $(BASE) -O0 -g -DCHAMP_DEBUG $(USER_CFLAGS))
ASAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_CFLAGS = $(strip $(BASE) -O1 -g -DCHAMP_DEBUG $(ASAN_FLAGS) $(USER_CFLAGS))
TSAN_CFLAGS = $(strip $(BASE) -O2 -g -fsanitize=thread $(USER_CFLAGS))

LIB_SRC  := $(wildcard src/*.c)
LIB_HDR  := include/champ.h $(wildcard src/*.h)
TEST_SRC := $(wildcard tests/*.c)
TEST_HDR := $(wildcard tests/*.h)
STRESS_SRC := $(wildcard tests/stress/*.c)
EX_SRC   := $(wildcard examples/*.c)
MAN_SRC  := $(wildcard docs/man/*.3)

B := build
REL_OBJ := $(patsubst src/%.c,$(B)/rel/%.o,$(LIB_SRC))
EX_BIN  := $(patsubst examples/%.c,$(B)/examples/%,$(EX_SRC))

# ---- configuration stamps ----
# What each build directory's output depends on besides its sources: the
# compiler (name and version line) and every flag.  $(B)/<dir>/config holds
# it; the rule below runs every time but rewrites the file only when the
# text differs, so its date moves (and its dependents rebuild) only then.
CC_ID := $(shell $(CC) --version 2>/dev/null | head -n 1)
CONFIG_rel  = $(CC) [$(CC_ID)] $(REL_CFLAGS) LDFLAGS: $(LDFLAGS)
CONFIG_test = $(CC) [$(CC_ID)] $(TEST_CFLAGS) LDFLAGS: $(LDFLAGS)
CONFIG_reltest = $(CC) [$(CC_ID)] $(RELTEST_CFLAGS) LDFLAGS: $(LDFLAGS)
CONFIG_dbg  = $(CC) [$(CC_ID)] $(DBG_CFLAGS) LDFLAGS: $(LDFLAGS)
CONFIG_asan = $(CC) [$(CC_ID)] $(ASAN_CFLAGS) LDFLAGS: $(LDFLAGS)
CONFIG_tsan = $(CC) [$(CC_ID)] $(TSAN_CFLAGS) LDFLAGS: $(LDFLAGS)
# Install paths and version: what the generated champ.pc and CMake files say.
CONFIG_pkg  = $(VERSION) $(PREFIX) $(LIBDIR) $(INCLUDEDIR) $(PKGCONFIGDIR) $(CMAKEDIR) $(SIZEOF_VOID_P)
# Single-quote a string for the shell.
sq = '$(subst ','\'',$(1))'

$(B)/%/config: FORCE
	@mkdir -p $(@D)
	@if ! printf '%s\n' $(call sq,$(CONFIG_$*)) | cmp -s - $@; then \
	  [ -f $@ ] && echo "champ: $(@D): configuration changed, rebuilding"; \
	  printf '%s\n' $(call sq,$(CONFIG_$*)) > $@; \
	fi
	@$(if $(filter rel,$*),$(if $(HASHDEF),echo "champ: xxhash.h not found (Debian: libxxhash-dev) or HAVE_XXHASH=0: byte keys use the fallback hash"))

.PHONY: all lib examples test check-warnings check-tls debug asan valgrind tsan-concurrent bench \
        bench-callgrind install uninstall clean man man-check print-version FORCE

all: lib examples

lib: $(B)/libchamp.a $(B)/libchamp.so

$(B)/rel/%.o: src/%.c $(LIB_HDR) $(B)/rel/config
	$(CC) $(REL_CFLAGS) -c $< -o $@

$(B)/libchamp.a: $(REL_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/libchamp.so: $(REL_OBJ) $(B)/rel/config
	$(CC) -shared -Wl,-soname,libchamp.so.$(SOMAJOR) $(LDFLAGS) -o $(B)/libchamp.so.$(VERSION) $(REL_OBJ)
	ln -sf libchamp.so.$(VERSION) $(B)/libchamp.so.$(SOMAJOR)
	ln -sf libchamp.so.$(VERSION) $@

examples: $(EX_BIN)

$(B)/examples/%: examples/%.c $(B)/libchamp.a include/champ.h $(B)/rel/config
	@mkdir -p $(@D)
	$(CC) $(REL_CFLAGS) $< -o $@ $(LDFLAGS) $(B)/libchamp.a

# Test binaries: the library sources compiled into each variant directly.
$(B)/test/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) $(B)/test/config
	$(CC) $(TEST_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ $(LDFLAGS) -lm -lpthread
$(B)/reltest/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) $(B)/reltest/config
	$(CC) $(RELTEST_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ $(LDFLAGS) -lm -lpthread
$(B)/dbg/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) $(B)/dbg/config
	$(CC) $(DBG_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ $(LDFLAGS) -lm -lpthread
$(B)/asan/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) $(B)/asan/config
	$(CC) $(ASAN_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ $(LDFLAGS) -lm -lpthread

debug: $(B)/dbg/champ_test
asan: $(B)/asan/champ_test

# ThreadSanitizer: threads sharing versions through cells in a concurrent
# pool (tests/stress/tsan_concurrent.c); a few seconds.  ARGS: rounds.
# Then the suite's concurrent group (threads that update, derive, pass and
# free versions, with allocation failures on several threads at once:
# concurrent.oom_threads) under TSan.
$(B)/tsan/tsan_concurrent: tests/stress/tsan_concurrent.c $(LIB_SRC) $(LIB_HDR) $(B)/tsan/config
	$(CC) $(TSAN_CFLAGS) $(LIB_SRC) tests/stress/tsan_concurrent.c -o $@ $(LDFLAGS) -lpthread
$(B)/tsan/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) $(B)/tsan/config
	$(CC) $(TSAN_CFLAGS) -DCHAMP_FAULTS -DCHAMP_STATS -Itests $(LIB_SRC) $(TEST_SRC) -o $@ $(LDFLAGS) -lm -lpthread
tsan-concurrent: $(B)/tsan/tsan_concurrent $(B)/tsan/champ_test
	TSAN_OPTIONS="halt_on_error=1 $${TSAN_OPTIONS:-}" $(B)/tsan/tsan_concurrent $(ARGS)
	TSAN_OPTIONS="halt_on_error=1 $${TSAN_OPTIONS:-}" $(B)/tsan/champ_test concurrent

valgrind: $(B)/dbg/champ_test
	CHAMP_TEST_SCALE=$${CHAMP_TEST_SCALE:-0.05} valgrind -q --error-exitcode=99 \
	  --leak-check=full --errors-for-leak-kinds=all $(B)/dbg/champ_test

# gcc and clang, every source, warnings as errors.
check-warnings:
	@for c in gcc clang; do \
	  command -v $$c >/dev/null || { echo "check-warnings: $$c not found, skipped"; continue; }; \
	  for f in $(LIB_SRC) $(TEST_SRC) $(STRESS_SRC) $(EX_SRC); do \
	    $$c $(BASE) -DCHAMP_DEBUG -Itests -O2 -Werror -fsyntax-only $$f || exit 1; \
	  done; \
	  echo "check-warnings: $$c clean"; \
	done

# The release objects (the shared library's) reach their thread-locals
# through the initial-exec model: a general- or local-dynamic access is a
# call to __tls_get_addr on every update.  x86-64 relocation names; with
# no objdump, or elsewhere, it says so and passes.
check-tls: lib
	@if ! command -v objdump >/dev/null; then echo "check-tls: objdump not found, skipped"; \
	elif [ "$$(uname -m)" != x86_64 ]; then echo "check-tls: x86-64 only, skipped"; \
	elif n=$$(objdump -dr $(REL_OBJ) | grep -cE 'R_X86_64_TLS(GD|LD)'); [ "$$n" != 0 ]; then \
	  echo "check-tls: $$n dynamic TLS accesses in $(B)/rel (see the champ__ops definition)"; exit 1; \
	else echo "check-tls: initial-exec thread-locals only"; fi

# libxxhash-dev was installed (or found missing) while this Makefile was
# read, before HAVE_XXHASH was detected: the release library, the examples
# and the tests below are all built with the same hash.
test: all $(B)/test/champ_test $(B)/reltest/champ_test $(B)/dbg/champ_test $(B)/asan/champ_test
	@sh tests/run.sh $(B)

# Three steps, each a make of its own, so that each reads the machine as the
# step before left it: bench/bench.mk installs the packages the benchmark
# needs (libxxhash-dev among them), then the release library is built (its
# hash detected now), then the benchmark runs against it.
bench bench-callgrind:
	@$(MAKE) --no-print-directory -f bench/bench.mk bench-deps CHAMP_NO_INSTALL='$(CHAMP_NO_INSTALL)'
	@$(MAKE) --no-print-directory lib
	@$(MAKE) --no-print-directory -f bench/bench.mk $@ ARGS="$(ARGS)" CHAMP_DEPS_DONE=1

# ---- packaging: champ.pc, CMake package, man pages ----
# Pointer size of the target, for the CMake version check (a 32-bit project
# must not pick up a 64-bit champ).
SIZEOF_VOID_P = $(shell printf '__SIZEOF_POINTER__\n' | $(CC) $(CPPFLAGS) $(CFLAGS) -E -P -x c - 2>/dev/null | tr -d ' ')
# champ.pc says ${prefix}/... for directories under PREFIX.
pc_dir = $(if $(filter $(PREFIX)/%,$(1)),$${prefix}/$(patsubst $(PREFIX)/%,%,$(1)),$(1))
# The CMake files find the library and header relative to where they are
# installed, so a staged (DESTDIR) or moved install still works.
rel_to_cmake = $(shell realpath -m --relative-to=$(call sq,$(CMAKEDIR)) $(call sq,$(1)) 2>/dev/null || printf '%s' $(call sq,$(1)))
PKG_FILES := $(B)/pkg/champ.pc $(B)/pkg/champConfig.cmake \
             $(B)/pkg/champConfigVersion.cmake
subst_pkg = sed -e 's|@VERSION@|$(VERSION)|g' \
	-e 's|@VERSION_MAJOR@|$(VERSION_MAJOR)|g' \
	-e 's|@VERSION_MINOR@|$(VERSION_MINOR)|g' \
	-e 's|@SOMAJOR@|$(SOMAJOR)|g' \
	-e 's|@PREFIX@|$(PREFIX)|g' \
	-e 's|@PC_LIBDIR@|$(call pc_dir,$(LIBDIR))|g' \
	-e 's|@PC_INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|g' \
	-e 's|@CMAKE_LIBDIR@|$(call rel_to_cmake,$(LIBDIR))|g' \
	-e 's|@CMAKE_INCLUDEDIR@|$(call rel_to_cmake,$(INCLUDEDIR))|g' \
	-e 's|@SIZEOF_VOID_P@|$(SIZEOF_VOID_P)|g'

$(B)/pkg/champ.pc: champ.pc.in $(B)/pkg/config
	$(subst_pkg) champ.pc.in > $@
$(B)/pkg/%.cmake: cmake/%.cmake.in $(B)/pkg/config
	$(subst_pkg) $< > $@

# Man pages: docs/man/*.3 with the version filled in, plus one-line pages
# (".so man3/PAGE.3") for every other function a page names, so that
# `man champ_get_u64` shows champ_get(3).
man: $(B)/man/.done
$(B)/man/.done: $(MAN_SRC) tools/man.sh $(B)/pkg/config
	rm -rf $(B)/man && mkdir -p $(B)/man
	for p in $(MAN_SRC); do sed 's|@VERSION@|$(VERSION)|g' $$p > $(B)/man/$${p##*/}; done
	sh tools/man.sh aliases $(MAN_SRC) | while read alias page; do \
	  printf '.so man3/%s\n' "$$page" > $(B)/man/$$alias; done
	touch $@

man-check:
	@sh tools/man.sh check include/champ.h $(MAN_SRC)

# The version, as include/champ.h defines it (for scripts).
print-version:
	@echo $(VERSION)

D_LIB   = $(DESTDIR)$(LIBDIR)
D_INC   = $(DESTDIR)$(INCLUDEDIR)
D_PC    = $(DESTDIR)$(PKGCONFIGDIR)
D_CMAKE = $(DESTDIR)$(CMAKEDIR)
D_MAN3  = $(DESTDIR)$(MANDIR)/man3

install: lib $(PKG_FILES) man
	install -d $(D_LIB) $(D_INC) $(D_PC) $(D_CMAKE) $(D_MAN3)
	install -m 644 include/champ.h $(D_INC)/
	install -m 644 $(B)/libchamp.a $(D_LIB)/
	install -m 755 $(B)/libchamp.so.$(VERSION) $(D_LIB)/
	ln -sf libchamp.so.$(VERSION) $(D_LIB)/libchamp.so.$(SOMAJOR)
	ln -sf libchamp.so.$(VERSION) $(D_LIB)/libchamp.so
	install -m 644 $(B)/pkg/champ.pc $(D_PC)/
	install -m 644 $(B)/pkg/champConfig.cmake $(B)/pkg/champConfigVersion.cmake $(D_CMAKE)/
	install -m 644 $(B)/man/*.3 $(D_MAN3)/

# Removes what install put down: the files by name (man pages: every page and
# alias docs/man names today), the directory of the CMake package; never a
# directory champ shares with others (lib, include, pkgconfig, man3).
uninstall:
	rm -f $(D_INC)/champ.h $(D_LIB)/libchamp.a $(D_LIB)/libchamp.so \
	      $(D_LIB)/libchamp.so.$(SOMAJOR) $(D_LIB)/libchamp.so.$(VERSION) \
	      $(D_PC)/champ.pc
	rm -f $(D_CMAKE)/champConfig.cmake $(D_CMAKE)/champConfigVersion.cmake
	rmdir $(D_CMAKE) 2>/dev/null || true
	cd $(D_MAN3) 2>/dev/null && rm -f $(notdir $(MAN_SRC)) \
	  $$(sh $(CURDIR)/tools/man.sh aliases $(addprefix $(CURDIR)/,$(MAN_SRC)) | cut -d' ' -f1) || true

clean:
	rm -rf $(B)

FORCE:

# Fuzzing, ThreadSanitizer, soak and CHAMP_DEBUG=2 (tests/tools.mk; tests/README.md)
-include tests/tools.mk

# champ - build, test, bench, install.
#
#   make                 libchamp.a, libchamp.so and the examples (release)
#   make test            everything below, then one line "N passed, N failed"
#   make check-warnings  gcc and clang, -Wall -Wextra -Wpedantic -Werror
#   make debug|asan      test binaries of the debug / ASan+UBSan builds
#   make valgrind        the debug test binary under valgrind memcheck
#   make bench           the benchmark suite (bench/README.md); ARGS="--quick"
#   make install PREFIX=/usr/local
#
# Knobs: CC, CFLAGS, CPPFLAGS, LDFLAGS, PORTABLE=1 (no -mpopcnt on x86-64),
# STATS=1 (pool counters in the release library), HAVE_XXHASH=0 (fallback
# byte hash even when xxhash.h is there), CHAMP_NO_INSTALL=1 (`make test` and
# `make bench` never install Debian packages), PREFIX, DESTDIR.
#
# Every build directory (build/rel, build/test, build/dbg, build/asan) holds
# a file `config` with the compiler and every flag its objects were built
# with; it is rewritten only when that text changes, and everything built in
# the directory depends on it, so changing CC, a knob, CFLAGS or what was
# detected (xxhash.h) rebuilds exactly what it affects.

CC      ?= cc
DESTDIR ?=

PREFIX  ?= /usr/local

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

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE    := -std=c11 $(WARN) -Iinclude $(ISA) $(HASHDEF) -fvisibility=hidden
ifeq ($(STATS),1)
BASE += -DCHAMP_STATS
endif
# The user's flags come last, so they can override ours (-O3, -g, ...).
USER_CFLAGS = $(CPPFLAGS) $(CFLAGS)

REL_CFLAGS  = $(strip $(BASE) -O2 -DNDEBUG -fPIC $(USER_CFLAGS))
TEST_CFLAGS = $(strip $(BASE) -O2 -g -DCHAMP_STATS -DCHAMP_FAULTS $(USER_CFLAGS))
DBG_CFLAGS  = $(strip $(BASE) -O0 -g -DCHAMP_DEBUG $(USER_CFLAGS))
ASAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_CFLAGS = $(strip $(BASE) -O1 -g -DCHAMP_DEBUG $(ASAN_FLAGS) $(USER_CFLAGS))

LIB_SRC  := $(wildcard src/*.c)
LIB_HDR  := include/champ.h $(wildcard src/*.h)
TEST_SRC := $(wildcard tests/*.c)
TEST_HDR := $(wildcard tests/*.h)
EX_SRC   := $(wildcard examples/*.c)

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
CONFIG_dbg  = $(CC) [$(CC_ID)] $(DBG_CFLAGS) LDFLAGS: $(LDFLAGS)
CONFIG_asan = $(CC) [$(CC_ID)] $(ASAN_CFLAGS) LDFLAGS: $(LDFLAGS)
# Single-quote a string for the shell.
sq = '$(subst ','\'',$(1))'

$(B)/%/config: FORCE
	@mkdir -p $(@D)
	@if ! printf '%s\n' $(call sq,$(CONFIG_$*)) | cmp -s - $@; then \
	  [ -f $@ ] && echo "champ: $(@D): configuration changed, rebuilding"; \
	  printf '%s\n' $(call sq,$(CONFIG_$*)) > $@; \
	fi
	@$(if $(filter rel,$*),$(if $(HASHDEF),echo "champ: xxhash.h not found (Debian: libxxhash-dev) or HAVE_XXHASH=0: byte keys use the fallback hash"))

.PHONY: all lib examples test check-warnings debug asan valgrind bench \
        bench-callgrind install uninstall clean FORCE

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
	$(CC) $(TEST_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ $(LDFLAGS) -lm
$(B)/dbg/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) $(B)/dbg/config
	$(CC) $(DBG_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ $(LDFLAGS) -lm
$(B)/asan/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) $(B)/asan/config
	$(CC) $(ASAN_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ $(LDFLAGS) -lm

debug: $(B)/dbg/champ_test
asan: $(B)/asan/champ_test

valgrind: $(B)/dbg/champ_test
	CHAMP_TEST_SCALE=$${CHAMP_TEST_SCALE:-0.05} valgrind -q --error-exitcode=99 \
	  --leak-check=full --errors-for-leak-kinds=all $(B)/dbg/champ_test

# gcc and clang, every source, warnings as errors.
check-warnings:
	@for c in gcc clang; do \
	  command -v $$c >/dev/null || { echo "check-warnings: $$c not found, skipped"; continue; }; \
	  for f in $(LIB_SRC) $(TEST_SRC) $(EX_SRC); do \
	    $$c $(BASE) -DCHAMP_DEBUG -Itests -O2 -Werror -fsyntax-only $$f || exit 1; \
	  done; \
	  echo "check-warnings: $$c clean"; \
	done

# libxxhash-dev was installed (or found missing) while this Makefile was
# read, before HAVE_XXHASH was detected: the release library, the examples
# and the tests below are all built with the same hash.
test: all $(B)/test/champ_test $(B)/dbg/champ_test $(B)/asan/champ_test
	@sh tests/run.sh $(B)

# Three steps, each a make of its own, so that each reads the machine as the
# step before left it: bench/bench.mk installs the packages the benchmark
# needs (libxxhash-dev among them), then the release library is built (its
# hash detected now), then the benchmark runs against it.
bench bench-callgrind:
	@$(MAKE) --no-print-directory -f bench/bench.mk bench-deps CHAMP_NO_INSTALL='$(CHAMP_NO_INSTALL)'
	@$(MAKE) --no-print-directory lib
	@$(MAKE) --no-print-directory -f bench/bench.mk $@ ARGS="$(ARGS)" CHAMP_DEPS_DONE=1

# Remade on every install: it records PREFIX, which may differ between runs.
$(B)/champ.pc: FORCE
	@mkdir -p $(B)
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: champ\nDescription: persistent hash array mapped tries (CHAMP)\nVersion: %s\nLibs: -L$${libdir} -lchamp\nCflags: -I$${includedir}\n' \
	  "$(PREFIX)" "$(VERSION)" > $@

install: lib $(B)/champ.pc
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/champ.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(B)/libchamp.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(B)/libchamp.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libchamp.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libchamp.so.$(SOMAJOR)
	ln -sf libchamp.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libchamp.so
	install -m 644 $(B)/champ.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/champ.h $(DESTDIR)$(PREFIX)/lib/libchamp.* \
	      $(DESTDIR)$(PREFIX)/lib/pkgconfig/champ.pc

clean:
	rm -rf $(B)

FORCE:

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
# Knobs: CC, PORTABLE=1 (no -mpopcnt on x86-64), STATS=1 (pool counters in
# the release library), PREFIX, DESTDIR.

CC      ?= cc
CXX     ?= c++
PREFIX  ?= /usr/local
DESTDIR ?=

VERSION  := 0.1.0
SOMAJOR  := 0

ARCH := $(shell uname -m)
ISA  :=
ifeq ($(ARCH),x86_64)
ifneq ($(PORTABLE),1)
ISA := -mpopcnt
endif
endif

# XXH3 from Debian's libxxhash-dev (header only).  Without it the library
# builds with its fallback byte hash and says so.
HAVE_XXHASH := $(shell printf '\043include <xxhash.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo 1)
ifeq ($(HAVE_XXHASH),1)
HASHDEF :=
else
HASHDEF := -DCHAMP_NO_XXHASH
$(info champ: xxhash.h not found (Debian: libxxhash-dev); byte keys use the fallback hash)
endif

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE    := -std=c11 $(WARN) -Iinclude $(ISA) $(HASHDEF) -fvisibility=hidden
ifeq ($(STATS),1)
BASE += -DCHAMP_STATS
endif

REL_CFLAGS  := $(BASE) -O2 -DNDEBUG -fPIC
TEST_CFLAGS := $(BASE) -O2 -g -DCHAMP_STATS -DCHAMP_FAULTS
DBG_CFLAGS  := $(BASE) -O0 -g -DCHAMP_DEBUG
ASAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_CFLAGS := $(BASE) -O1 -g -DCHAMP_DEBUG $(ASAN_FLAGS)

LIB_SRC  := $(wildcard src/*.c)
LIB_HDR  := include/champ.h $(wildcard src/*.h)
TEST_SRC := $(wildcard tests/*.c)
TEST_HDR := $(wildcard tests/*.h)
EX_SRC   := $(wildcard examples/*.c)

B := build
REL_OBJ := $(patsubst src/%.c,$(B)/rel/%.o,$(LIB_SRC))
EX_BIN  := $(patsubst examples/%.c,$(B)/examples/%,$(EX_SRC))

.PHONY: all lib examples test check-warnings debug asan valgrind bench \
        bench-callgrind install uninstall clean deps-test

all: lib examples

lib: $(B)/libchamp.a $(B)/libchamp.so

$(B)/rel/%.o: src/%.c $(LIB_HDR) | $(B)/rel
	$(CC) $(REL_CFLAGS) -c $< -o $@

$(B)/libchamp.a: $(REL_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/libchamp.so: $(REL_OBJ)
	$(CC) -shared -Wl,-soname,libchamp.so.$(SOMAJOR) -o $(B)/libchamp.so.$(VERSION) $^
	ln -sf libchamp.so.$(VERSION) $(B)/libchamp.so.$(SOMAJOR)
	ln -sf libchamp.so.$(VERSION) $@

examples: $(EX_BIN)

$(B)/examples/%: examples/%.c $(B)/libchamp.a include/champ.h | $(B)/examples
	$(CC) $(REL_CFLAGS) $< -o $@ $(B)/libchamp.a

# Test binaries: the library sources compiled into each variant directly.
$(B)/test/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) | $(B)/test
	$(CC) $(TEST_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ -lm
$(B)/dbg/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) | $(B)/dbg
	$(CC) $(DBG_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ -lm
$(B)/asan/champ_test: $(LIB_SRC) $(LIB_HDR) $(TEST_SRC) $(TEST_HDR) | $(B)/asan
	$(CC) $(ASAN_CFLAGS) -Itests $(LIB_SRC) $(TEST_SRC) -o $@ -lm

debug: $(B)/dbg/champ_test
asan: $(B)/asan/champ_test

valgrind: $(B)/dbg/champ_test
	CHAMP_TEST_SCALE=$${CHAMP_TEST_SCALE:-0.05} valgrind -q --error-exitcode=99 \
	  --leak-check=full --errors-for-leak-kinds=all $(B)/dbg/champ_test

deps-test:
	@sh tools/deps.sh libxxhash-dev

# gcc and clang, every source, warnings as errors.
check-warnings:
	@for c in gcc clang; do \
	  command -v $$c >/dev/null || { echo "check-warnings: $$c not found, skipped"; continue; }; \
	  for f in $(LIB_SRC) $(TEST_SRC) $(EX_SRC); do \
	    $$c $(BASE) -DCHAMP_DEBUG -Itests -O2 -Werror -fsyntax-only $$f || exit 1; \
	  done; \
	  echo "check-warnings: $$c clean"; \
	done

test: deps-test
	@$(MAKE) --no-print-directory all $(B)/test/champ_test $(B)/dbg/champ_test $(B)/asan/champ_test
	@sh tests/run.sh $(B)

bench: lib
	@$(MAKE) --no-print-directory -f bench/bench.mk bench ARGS="$(ARGS)"

bench-callgrind: lib
	@$(MAKE) --no-print-directory -f bench/bench.mk bench-callgrind ARGS="$(ARGS)"

# Remade on every install: it records PREFIX, which may differ between runs.
$(B)/champ.pc: FORCE | $(B)
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

FORCE:

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/champ.h $(DESTDIR)$(PREFIX)/lib/libchamp.* \
	      $(DESTDIR)$(PREFIX)/lib/pkgconfig/champ.pc

$(B) $(B)/rel $(B)/test $(B)/dbg $(B)/asan $(B)/examples:
	mkdir -p $@

clean:
	rm -rf $(B)

# Fuzzing, ThreadSanitizer, soak and CHAMP_DEBUG=2 (tests/tools.mk; tests/README.md)
-include tests/tools.mk

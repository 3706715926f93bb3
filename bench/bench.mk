# bench/bench.mk - champ's benchmark suite (see bench/README.md).
#
# Run from the top directory, normally through the top Makefile:
#   make bench                      the full run
#   make bench ARGS="--quick"       the short run (CI)
#   make bench-callgrind            instructions per op at N = 10K
#   make -f bench/bench.mk bench-build   just build bench/build/bench
#   make -f bench/bench.mk bench-prof    bench/build/bench-prof: the driver
#                                   linked with a -g build of champ, for perf
#
# Every peer is optional: a header that the preprocessor cannot find leaves
# its adapter out (the driver prints one line naming the Debian package).
# When run as root, missing packages are installed first (tools/deps.sh).
# Same flags for every library's code: -O2 -g, -mpopcnt on x86-64 (as champ's
# release build), never -march=native.

CC  ?= cc
CXX ?= c++
ifeq ($(origin CC),default)
CC := cc
endif
ifeq ($(origin CXX),default)
CXX := c++
endif

B := bench/build
R := bench/results
ARGS ?=

PEER_PKGS := libabsl-dev libglib2.0-dev uthash-dev libjudy-dev wamerican-huge \
             gnuplot-nox valgrind libxxhash-dev pkg-config g++

# Install what is missing (as root, once per make invocation that runs the
# bench); tools/deps.sh never fails.  CHAMP_NO_INSTALL=1 (or the old name
# BENCH_NO_DEPS=1) turns it off.  The top Makefile runs `bench-deps` first,
# then builds the library, then the bench with CHAMP_DEPS_DONE=1.
ifeq ($(BENCH_NO_DEPS),1)
CHAMP_NO_INSTALL := 1
endif
ifneq ($(filter bench bench-callgrind bench-build bench-prof bench-deps,$(MAKECMDGOALS)),)
ifneq ($(CHAMP_DEPS_DONE),1)
$(shell CHAMP_NO_INSTALL='$(CHAMP_NO_INSTALL)' sh tools/deps.sh $(PEER_PKGS) >&2)
endif
endif

ARCH := $(shell uname -m)
ISA :=
ifeq ($(ARCH),x86_64)
ifneq ($(PORTABLE),1)
ISA := -mpopcnt
endif
endif

OPT      := -O2 -g $(ISA) -DNDEBUG
WARN     := -Wall -Wextra -Wpedantic
CFLAGS_B := -std=c11 $(WARN) $(OPT) -Iinclude -Ibench
CXXFLAGS_B := -std=c++17 $(WARN) $(OPT) -Ibench

# ---- what is on this machine (the preprocessor decides) ----
have_c   = $(shell printf '\043include <$(1)>\n' | $(CC) $(2) -E -x c - >/dev/null 2>&1 && echo 1)
have_cxx = $(shell printf '\043include <$(1)>\n' | $(CXX) -std=c++17 $(2) -E -x c++ - >/dev/null 2>&1 && echo 1)

HAVE_CXX    := $(call have_cxx,unordered_map)
HAVE_ABSL   := $(if $(HAVE_CXX),$(call have_cxx,absl/container/flat_hash_map.h))
GLIB_CFLAGS := $(shell pkg-config --cflags glib-2.0 2>/dev/null)
GLIB_LIBS   := $(shell pkg-config --libs glib-2.0 2>/dev/null)
HAVE_GLIB   := $(if $(GLIB_LIBS),$(call have_c,glib.h,$(GLIB_CFLAGS)))
HAVE_UTHASH := $(call have_c,uthash.h)
HAVE_JUDY   := $(call have_c,Judy.h)
HAVE_CHAMP  := $(if $(wildcard build/libchamp.a),1)
# HAVE_XXHASH=0 (as the top Makefile takes it) builds champ's objects here
# with the fallback hash too.
ifeq ($(origin HAVE_XXHASH),undefined)
HAVE_XXHASH := $(call have_c,xxhash.h)
endif

ABSL_LIBS := $(shell pkg-config --libs absl_flat_hash_map absl_hash 2>/dev/null)
ifeq ($(strip $(ABSL_LIBS)),)
ABSL_LIBS := -labsl_raw_hash_set -labsl_hashtablez_sampler -labsl_hash -labsl_city \
             -labsl_low_level_hash -labsl_synchronization -labsl_time -labsl_base \
             -labsl_raw_logging_internal
endif

# ---- the driver and its adapters ----
# The driver's files (bench/bench.h lists what each one does).
DRIVER := main options keys ops libs measure schedule results report targets plot \
          profile machine util
DRIVER_OBJS := $(patsubst %,$(B)/obj/%.o,$(DRIVER))
DEFS :=
OBJS := $(DRIVER_OBJS)
LINK := $(CC)
LIBS := -lm -lpthread
ifeq ($(HAVE_CHAMP),1)
DEFS += -DHAVE_CHAMP
OBJS += $(B)/obj/adapt_champ.o $(B)/obj/adapt_champ_generic.o
LIBS := build/libchamp.a $(LIBS)
endif
ifeq ($(HAVE_CXX),1)
DEFS += -DHAVE_STD
OBJS += $(B)/obj/adapt_cxx.o
LINK := $(CXX)
ifeq ($(HAVE_ABSL),1)
DEFS += -DHAVE_ABSL
LIBS += $(ABSL_LIBS)
endif
endif
ifeq ($(HAVE_GLIB),1)
DEFS += -DHAVE_GLIB
OBJS += $(B)/obj/adapt_glib.o
LIBS += $(GLIB_LIBS)
endif
ifeq ($(HAVE_UTHASH),1)
DEFS += -DHAVE_UTHASH
OBJS += $(B)/obj/adapt_uthash.o
endif
ifeq ($(HAVE_JUDY),1)
DEFS += -DHAVE_JUDY
OBJS += $(B)/obj/adapt_judy.o
LIBS += -lJudy
endif
ifeq ($(HAVE_XXHASH),1)
DEFS += -DHAVE_XXHASH
endif

# champ's own sources, compiled here twice: with -DCHAMP_STATS for the pool
# telemetry pass (its counters exist only there), and with -g for perf.
# Timings always link the release build/libchamp.a.
CHAMP_SRC  := $(wildcard src/*.c)
CHAMP_HDR  := include/champ.h $(wildcard src/*.h)
CHAMP_HASH := $(if $(filter 1,$(HAVE_XXHASH)),,-DCHAMP_NO_XXHASH)
CHAMP_BASE := -std=c11 -Wall -Wextra -Iinclude $(ISA) $(CHAMP_HASH) -fvisibility=hidden -O2 -DNDEBUG
STATS_OBJ  := $(patsubst src/%.c,$(B)/champ_stats/%.o,$(CHAMP_SRC))
G_OBJ      := $(patsubst src/%.c,$(B)/champ_g/%.o,$(CHAMP_SRC))

TELEMETRY := $(if $(HAVE_CHAMP),$(B)/champ_telemetry)

# A stamp that changes when the configuration does, so objects rebuild.
CONFIG := $(CC) $(CXX) $(OPT) $(DEFS) $(GLIB_CFLAGS) $(HAVE_CHAMP) $(CHAMP_BASE)
$(shell mkdir -p $(B)/obj $(B)/champ_stats $(B)/champ_g $(R); \
  echo '$(CONFIG)' | cmp -s - $(B)/config 2>/dev/null || echo '$(CONFIG)' > $(B)/config)

.PHONY: bench bench-build bench-prof bench-callgrind bench-clean bench-info bench-stub bench-deps \
        bench-threads-parts

bench-deps:
	@:

bench: bench-build $(TELEMETRY)
	@$(B)/bench --telemetry $(B)/champ_telemetry --callgrind-csv $(R)/callgrind.csv $(ARGS)

# Without build/libchamp.a the champ adapters are still compiled (against
# include/champ.h alone), so they cannot rot while the library is missing.
bench-build: bench-info $(B)/bench $(if $(HAVE_CHAMP),$(B)/threads_parts,$(B)/obj/adapt_champ.o $(B)/obj/adapt_champ_generic.o)

bench-info:
	@$(if $(HAVE_CHAMP),,echo "bench: build/libchamp.a not found (make lib): champ adapters compiled only, not run")
	@$(if $(HAVE_CXX),,echo "bench: no C++ compiler ($(CXX)); absl and std_unordered left out (Debian package g++)")
	@$(if $(HAVE_CXX),$(if $(HAVE_ABSL),,echo "bench: absl left out: absl/container/flat_hash_map.h not found (Debian package libabsl-dev)"))
	@$(if $(HAVE_GLIB),,echo "bench: glib left out: glib.h not found (Debian package libglib2.0-dev)")
	@$(if $(HAVE_UTHASH),,echo "bench: uthash left out: uthash.h not found (Debian package uthash-dev)")
	@$(if $(HAVE_JUDY),,echo "bench: judy left out: Judy.h not found (Debian package libjudy-dev)")

$(B)/bench: $(OBJS) $(if $(HAVE_CHAMP),build/libchamp.a) $(B)/config
	$(LINK) -g $(OBJS) $(LIBS) -o $@

$(B)/bench-prof: $(OBJS) $(G_OBJ) $(B)/config
	$(LINK) -g $(OBJS) $(if $(HAVE_CHAMP),$(G_OBJ)) $(filter-out build/libchamp.a,$(LIBS)) -o $@

bench-prof: bench-info $(B)/bench-prof
	@echo "profile: perf record -g $(B)/bench-prof --profile champ:u64:query:1000000:10"

$(B)/obj/%.o: bench/%.c bench/adapter.h bench/keys.h $(B)/config
	$(CC) $(CFLAGS_B) $(DEFS) -c $< -o $@

$(DRIVER_OBJS): bench/bench.h

$(B)/obj/adapt_champ.o $(B)/obj/adapt_champ_generic.o: include/champ.h
$(B)/obj/adapt_glib.o: CFLAGS_B += $(GLIB_CFLAGS)

$(B)/obj/adapt_cxx.o: bench/adapt_cxx.cc bench/adapter.h $(B)/config
	$(CXX) $(CXXFLAGS_B) $(DEFS) -c $< -o $@

# Compile-check the champ adapters against the header alone (no library
# needed): make -f bench/bench.mk bench-stub
bench-stub: $(DRIVER_OBJS)
	$(CC) $(CFLAGS_B) -DHAVE_CHAMP $(if $(HAVE_XXHASH),-DHAVE_XXHASH) -c bench/adapt_champ.c -o $(B)/obj/stub_champ.o
	$(CC) $(CFLAGS_B) -DHAVE_CHAMP $(if $(HAVE_XXHASH),-DHAVE_XXHASH) -c bench/adapt_champ_generic.c -o $(B)/obj/stub_champ_generic.o
	$(CC) $(CFLAGS_B) -c bench/telemetry.c -o $(B)/obj/stub_telemetry.o
	@echo "bench-stub: champ adapters and telemetry compile against include/champ.h"

# ---- champ with -DCHAMP_STATS, for the telemetry pass only ----
$(B)/champ_stats/%.o: src/%.c $(CHAMP_HDR) $(B)/config
	$(CC) $(CHAMP_BASE) -g -DCHAMP_STATS -c $< -o $@

$(B)/champ_g/%.o: src/%.c $(CHAMP_HDR) $(B)/config
	$(CC) $(CHAMP_BASE) -g -c $< -o $@

$(B)/champ_telemetry: bench/telemetry.c bench/keys.h $(STATS_OBJ) $(B)/config
	$(CC) $(CFLAGS_B) -DCHAMP_STATS bench/telemetry.c $(STATS_OBJ) -lm -o $@

# ---- the threads_1/threads_2 loop cut into parts (docs/design.md) ----
# make -f bench/bench.mk bench-threads-parts ARGS="N ITERATIONS ROUNDS"
$(B)/threads_parts: bench/threads_parts.c build/libchamp.a $(B)/config
	$(CC) $(CFLAGS_B) bench/threads_parts.c build/libchamp.a -lpthread -o $@

bench-threads-parts: $(B)/threads_parts
	@$(B)/threads_parts $(ARGS)

# ---- instructions per op (callgrind), N = 10K ----
bench-callgrind: bench-build
	@sh bench/callgrind.sh $(B)/bench $(R)/callgrind.csv $(ARGS)

bench-clean:
	rm -rf $(B)

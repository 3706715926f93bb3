/*
 * harness.h - the tiny test harness of champ's test binary.
 *
 * CHECK(cond, fmt, ...) counts one check: a pass, or a failure that prints
 * the running test's name, file:line, the condition, the message and
 * (inside a random test) the seed that reproduces it.  main.c prints the totals as the last line
 * "N passed, N failed" and exits nonzero iff a check failed.
 *
 * Everything is deterministic: the random tests draw from th_rng (splitmix64)
 * with fixed seeds.  CHAMP_TEST_SCALE (a float, default 1.0) scales the
 * iteration counts; the valgrind run uses 0.05.
 *
 * Also here: status names, a dump-to-string helper, counted reference
 * callbacks (th_obj / th_cbctx) for generic keys and tracked values, and a
 * counting backing allocator (th_alloc) that can fail its k-th call.
 */
#ifndef CHAMP_TEST_HARNESS_H
#define CHAMP_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "champ.h"

/* The build the suite is compiled in (the library's sources are compiled
 * with the same flags): TH_FAULTS is 1 where champ_pool_fail_after works
 * (CHAMP_FAULTS or CHAMP_DEBUG), 0 in a release build, where it returns
 * CHAMP_EUNSUPPORTED.  Tests that need injected failures say so with it;
 * the release-build run of the suite (tests/run.sh) skips only those
 * parts, and badinput.fail_after and pool.release_counters check what the
 * release build promises instead. */
#if defined(CHAMP_FAULTS) || defined(CHAMP_DEBUG)
#define TH_FAULTS 1
#else
#define TH_FAULTS 0
#endif
#if defined(CHAMP_STATS) || defined(CHAMP_DEBUG)
#define TH_STATS 1
#else
#define TH_STATS 0
#endif

/* True when champ_pool_fail_after works in this build; else prints that
 * the running test (or the part of it named by `what`) is skipped. */
#define TH_NEED_FAULTS(what)                                                \
    (TH_FAULTS ||                                                           \
     (printf("  (%s: skipped in a build without CHAMP_FAULTS)\n", (what)), false))

/* ------------------------------------------------------------------ */
/* Counting checks                                                     */
/* ------------------------------------------------------------------ */

extern unsigned long th_passed;
extern unsigned long th_failed;
/* Seed of the random test that is running (printed with failures); 0 when
 * the running test is not random.  Set it with th_set_seed. */
extern uint64_t th_seed;

#if defined(__GNUC__)
#define TH_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TH_PRINTF(a, b)
#endif

void th_report_failure(const char *file, int line, const char *cond,
                       const char *fmt, ...) TH_PRINTF(4, 5);

/* CHECK(cond, "fmt", args...): a message is required. */
#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond)                                                         \
            th_passed++;                                                  \
        else                                                              \
            th_report_failure(__FILE__, __LINE__, #cond, __VA_ARGS__);    \
    } while (0)

/* A status check that prints the status names when it fails. */
#define CHECK_ST(expr, want)                                              \
    do {                                                                  \
        champ_status th_got_ = (expr);                                    \
        champ_status th_want_ = (want);                                   \
        CHECK(th_got_ == th_want_, "%s returned %s, want %s", #expr,      \
              th_status_name(th_got_), th_status_name(th_want_));         \
    } while (0)

/* Integer equality that prints both sides. */
#define CHECK_EQ(a, b, what)                                              \
    do {                                                                  \
        unsigned long long th_a_ = (unsigned long long)(a);               \
        unsigned long long th_b_ = (unsigned long long)(b);               \
        CHECK(th_a_ == th_b_, "%s: %s = %llu, want %llu", (what), #a,     \
              th_a_, th_b_);                                              \
    } while (0)

/* The name of a status ("CHAMP_ENOMEM"), or "status(N)" for others. */
const char *th_status_name(champ_status s);

void th_set_seed(uint64_t seed);

/* ------------------------------------------------------------------ */
/* Scale and randomness                                                */
/* ------------------------------------------------------------------ */

/* CHAMP_TEST_SCALE, read once; 1.0 when unset or unparsable. */
double th_scale(void);
/* n * scale, at least lo. */
long th_iters(long n, long lo);

typedef struct th_rng {
    uint64_t s;
} th_rng;

static inline uint64_t th_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t th_next(th_rng *r) {
    r->s += 0x9e3779b97f4a7c15ULL;
    return th_mix64(r->s);
}

/* Uniform in [0, n); n == 0 gives 0. */
static inline uint64_t th_below(th_rng *r, uint64_t n) {
    return n ? th_next(r) % n : 0;
}

/* true with probability pct/100. */
static inline bool th_chance(th_rng *r, unsigned pct) {
    return th_below(r, 100) < pct;
}

/* A distinct non-NULL token usable as a value: tok(x) != tok(y) iff x != y. */
static inline void *th_tok(uint64_t x) {
    return (void *)(uintptr_t)(x * 16 + 16);
}

/* A champ_prior full of junk, to tell whether a call wrote it: a failed
 * update must leave *prior untouched (th_prior_untouched). */
static inline champ_prior th_prior_junk(void) {
    champ_prior p = {true, th_tok(0xdead), th_tok(0xdead)};
    return p;
}

static inline bool th_prior_untouched(const champ_prior *p) {
    return p->found && p->val == th_tok(0xdead) && p->key == th_tok(0xdead);
}

/* ------------------------------------------------------------------ */
/* Output capture                                                      */
/* ------------------------------------------------------------------ */

/* champ_dump(m) (or champ_stats_print with stats=true) into a malloc'ed NUL
 * terminated string; *st gets the call's status.  NULL if no temp file. */
char *th_capture(const champ_map *m, bool stats, champ_status *st);
/* Dump strings equal (both non-NULL). */
bool th_same_dump(const champ_map *a, const champ_map *b);

/* ------------------------------------------------------------------ */
/* Counted objects: generic keys and tracked values                    */
/* ------------------------------------------------------------------ */

/* One object used as a generic key and/or a tracked value.  held is what the
 * test believes the maps together hold: +1 when a map takes ownership (an
 * insert, a set's value), +1 per retain callback, -1 per release callback,
 * -1 when a map hands the reference back (prior->val, prior->key). */
typedef struct th_obj {
    uint64_t id;     /* identity: th_key_equal compares ids */
    uint64_t hash;   /* what TH_HASH_FIELD returns */
    long held;
    long retains;
    long releases;
    long handed_in;  /* ownership the test gave to a map */
    long handed_back;/* ownership a map gave back to the test */
} th_obj;

enum th_hash_mode {
    TH_HASH_FIELD = 0, /* obj->hash: pins tree shapes */
    TH_HASH_GOOD,      /* a full 64-bit mix of the id */
    TH_HASH_MOD64,     /* id % 64: long single-child paths, big collisions */
    TH_HASH_BITS,      /* mix(id) & mask (few bits): scattered collisions */
    TH_HASH_DEEP       /* only the top bits vary: deep paths + collisions */
};

typedef struct th_cbctx {
    int hash_mode;
    uint64_t mask;         /* TH_HASH_BITS */
    unsigned long hash_calls;
    unsigned long equal_calls;
    unsigned long retain_calls;
    unsigned long release_calls;
    unsigned long null_calls; /* retain/release of a NULL value */
    unsigned long underflows; /* releases of something no map held */
} th_cbctx;

uint64_t th_key_hash(const void *key, void *ctx);
bool th_key_equal(const void *a, const void *b, void *ctx);
void th_obj_retain(void *p, void *ctx);
void th_obj_release(void *p, void *ctx);
/* Ownership moves between the test and a map (NULL is ignored). */
void th_obj_hand_in(void *p);
void th_obj_hand_back(void *p);

/* A generic-kind config with th_key_hash/th_key_equal and ctx; with
 * counted=true all four reference callbacks are th_obj_retain/release. */
champ_config th_generic_config(th_cbctx *ctx, bool counted, champ_pool *pool);
/* U64/BYTES configs with a fixed seed. */
champ_config th_kind_config(champ_key_kind kind, uint64_t seed,
                            champ_pool *pool);

/* ------------------------------------------------------------------ */
/* A counting backing allocator                                        */
/* ------------------------------------------------------------------ */

typedef struct th_alloc {
    champ_allocator a;       /* a.ctx points back here */
    unsigned long calls;     /* malloc + realloc calls so far */
    long fail_at;            /* the call index that fails; -1: none */
    bool fail_persist;       /* every call from fail_at on fails */
    unsigned long failures;  /* calls refused */
    size_t live_bytes;       /* handed out, not given back */
    size_t live_blocks;
    size_t peak_bytes;
    unsigned long size_mismatches; /* free/realloc with a wrong old size */
    unsigned long frees;
} th_alloc;

void th_alloc_init(th_alloc *t);
/* th_alloc_init(t), then a default pool (concurrent or plain) over t->a.
 * Returns the pool, or NULL after a failed check (the caller returns). */
champ_pool *th_alloc_pool(th_alloc *t, bool concurrent);

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

/* The pool's live bytes, or (size_t)-1 if the stats call fails. */
size_t th_pool_live(const champ_pool *p);
/* Stats of m (zeroed when the call fails, which is also checked). */
champ_stats th_stats(const champ_map *m);
/* champ_validate(m) == CHAMP_OK, counted as a check. */
#define CHECK_VALID(m, what)                                              \
    CHECK(champ_validate(m) == CHAMP_OK, "champ_validate failed: %s", (what))

/* ------------------------------------------------------------------ */
/* Helpers of the unit test files (unit_common.c)                      */
/* ------------------------------------------------------------------ */

#define UNIT_MAX_OBJS 512

/* Fresh objects (one shared table): ids 1..n, hash 0, counters zero. */
th_obj *unit_objs_reset(size_t n);
/* A generic map in TH_HASH_FIELD mode (ctx is reset) / a U64 or BYTES map
 * with a fixed seed; the champ_new status is checked. */
champ_map *unit_new_generic(th_cbctx *ctx, bool counted);
champ_map *unit_new_kind(champ_key_kind kind, uint64_t seed);
/* Inserts key k (must be new) with value v into a generic map. */
void unit_put(champ_map *m, th_obj *k, void *v);
/* Removes key k (must be present) from a generic map. */
void unit_del(champ_map *m, th_obj *k);
/* Checks the shape numbers of m and validates it. */
void unit_shape(const champ_map *m, size_t entries, size_t bitmap,
                size_t collision, size_t coll_entries, unsigned depth,
                const char *what);

/* ------------------------------------------------------------------ */
/* The registry of named tests                                         */
/* ------------------------------------------------------------------ */

/* A test: a dotted name "<file subject>.<test>[.<case>]" and a function.
 * Each test file exports one table th_tests_<subject> (names starting with
 * "<subject>.") and its length; main.c lists the tables in run order.  A
 * new test is one more line in its file's table; a new file also needs a
 * line in main.c's th_tables (and, for a unit subject, in th_aliases). */
typedef struct th_test {
    const char *name;
    void (*run)(void);
} th_test;

/* The name of the running test (printed with failures); NULL between
 * tests. */
extern const char *th_test_name;

extern const th_test th_tests_api[];       /* test_api.c */
extern const size_t th_tests_api_count;
extern const th_test th_tests_shapes[];    /* test_shapes.c */
extern const size_t th_tests_shapes_count;
extern const th_test th_tests_pool[];      /* test_pool.c */
extern const size_t th_tests_pool_count;
extern const th_test th_tests_badinput[];  /* test_badinput.c */
extern const size_t th_tests_badinput_count;
extern const th_test th_tests_versions[];  /* test_versions.c */
extern const size_t th_tests_versions_count;
extern const th_test th_tests_random[];    /* test_random.c */
extern const size_t th_tests_random_count;
extern const th_test th_tests_oom[];       /* test_oom.c */
extern const size_t th_tests_oom_count;
extern const th_test th_tests_callbacks[]; /* test_callbacks.c */
extern const size_t th_tests_callbacks_count;
extern const th_test th_tests_many[];      /* test_many.c */
extern const size_t th_tests_many_count;
extern const th_test th_tests_oomsweep[];  /* test_oomsweep.c */
extern const size_t th_tests_oomsweep_count;
extern const th_test th_tests_poolfix[];   /* test_poolfix.c */
extern const size_t th_tests_poolfix_count;
extern const th_test th_tests_build[];     /* test_build.c */
extern const size_t th_tests_build_count;
extern const th_test th_tests_algebra[];   /* test_algebra.c */
extern const size_t th_tests_algebra_count;
extern const th_test th_tests_sets[];      /* test_sets.c */
extern const size_t th_tests_sets_count;
extern const th_test th_tests_collide[];   /* test_collide.c */
extern const size_t th_tests_collide_count;
extern const th_test th_tests_concurrent[]; /* test_concurrent.c */
extern const size_t th_tests_concurrent_count;

#endif /* CHAMP_TEST_HARNESS_H */

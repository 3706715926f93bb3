/*
 * main.c - champ's test binary: the harness functions and the runner of the
 * registry of named tests (each test file's th_tests_<subject> table).
 *
 *   champ_test                 run every test
 *   champ_test PATTERN...      run the tests named PATTERN or PATTERN.*
 *                              ("pool", "random.u64", "shapes.collisions");
 *                              "unit" stands for api shapes pool
 *   champ_test --list [PAT...] print the (matching) test names, one a line
 *
 * A failure prints the running test's name.  After each group (the first
 * part of a name) one summary line; the last line printed is always
 * "N passed, N failed" (N counts CHECKs); the exit status is 0 iff nothing
 * failed, 2 for an unknown pattern or option.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

unsigned long th_passed;
unsigned long th_failed;
uint64_t th_seed;
const char *th_test_name;

enum { TH_MAX_PRINTED_FAILURES = 200 };

void th_report_failure(const char *file, int line, const char *cond,
                       const char *fmt, ...) {
    th_failed++;
    if (th_failed > TH_MAX_PRINTED_FAILURES) {
        if (th_failed == TH_MAX_PRINTED_FAILURES + 1)
            printf("(further failures are counted, not printed)\n");
        return;
    }
    printf("FAIL [%s] %s:%d: %s: ", th_test_name ? th_test_name : "-", file,
           line, cond);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (th_seed != 0)
        printf(" [seed 0x%016llx]", (unsigned long long)th_seed);
    printf("\n");
    fflush(stdout);
}

void th_set_seed(uint64_t seed) { th_seed = seed; }

const char *th_status_name(champ_status s) {
    static char other[8][32];
    static unsigned next;
    switch (s) {
    case CHAMP_OK: return "CHAMP_OK";
    case CHAMP_ENOMEM: return "CHAMP_ENOMEM";
    case CHAMP_EINVAL: return "CHAMP_EINVAL";
    case CHAMP_EKIND: return "CHAMP_EKIND";
    case CHAMP_EPOOL: return "CHAMP_EPOOL";
    case CHAMP_EMODIFIED: return "CHAMP_EMODIFIED";
    case CHAMP_ECORRUPT: return "CHAMP_ECORRUPT";
    case CHAMP_EUNSUPPORTED: return "CHAMP_EUNSUPPORTED";
    case CHAMP_EBUSY: return "CHAMP_EBUSY";
    }
    char *buf = other[next++ % 8];
    snprintf(buf, sizeof other[0], "status(%d)", (int)s);
    return buf;
}

double th_scale(void) {
    static double scale = -1.0;
    if (scale < 0) {
        const char *e = getenv("CHAMP_TEST_SCALE");
        char *end = NULL;
        double v = e ? strtod(e, &end) : 1.0;
        if (e && (end == e || !(v > 0) || v > 1000))
            v = 1.0;
        scale = v;
    }
    return scale;
}

long th_iters(long n, long lo) {
    double v = (double)n * th_scale();
    long r = (long)v;
    return r < lo ? lo : r;
}

/* ------------------------------------------------------------------ */

char *th_capture(const champ_map *m, bool stats, champ_status *st) {
    FILE *f = tmpfile();
    if (!f) {
        *st = CHAMP_EINVAL;
        return NULL;
    }
    *st = stats ? champ_stats_print(m, f) : champ_dump(m, f);
    fflush(f);
    long len = ftell(f);
    if (len < 0)
        len = 0;
    rewind(f);
    char *buf = malloc((size_t)len + 1);
    size_t got = buf ? fread(buf, 1, (size_t)len, f) : 0;
    if (buf)
        buf[got] = '\0';
    fclose(f);
    return buf;
}

bool th_same_dump(const champ_map *a, const champ_map *b) {
    champ_status sa, sb;
    char *da = th_capture(a, false, &sa);
    char *db = th_capture(b, false, &sb);
    bool same = da && db && sa == CHAMP_OK && sb == CHAMP_OK &&
                strcmp(da, db) == 0;
    if (!same && th_failed < TH_MAX_PRINTED_FAILURES) {
        printf("---- dump A (%s)\n%s---- dump B (%s)\n%s----\n",
               th_status_name(sa), da ? da : "(none)", th_status_name(sb),
               db ? db : "(none)");
    }
    free(da);
    free(db);
    return same;
}

/* ------------------------------------------------------------------ */

uint64_t th_key_hash(const void *key, void *ctx) {
    const th_obj *o = key;
    th_cbctx *c = ctx;
    c->hash_calls++;
    switch (c->hash_mode) {
    case TH_HASH_GOOD: return th_mix64(o->id ^ 0x5bd1e9955bd1e995ULL);
    case TH_HASH_MOD64: return o->id % 64;
    case TH_HASH_BITS: return th_mix64(o->id) & c->mask;
    case TH_HASH_DEEP:
        return 0x000a5a5a5a5a5a5aULL | (th_mix64(o->id) << 52);
    default: return o->hash;
    }
}

bool th_key_equal(const void *a, const void *b, void *ctx) {
    th_cbctx *c = ctx;
    c->equal_calls++;
    return ((const th_obj *)a)->id == ((const th_obj *)b)->id;
}

void th_obj_retain(void *p, void *ctx) {
    th_cbctx *c = ctx;
    c->retain_calls++;
    if (!p) {
        c->null_calls++;
        return;
    }
    th_obj *o = p;
    o->held++;
    o->retains++;
}

void th_obj_release(void *p, void *ctx) {
    th_cbctx *c = ctx;
    c->release_calls++;
    if (!p) {
        c->null_calls++;
        return;
    }
    th_obj *o = p;
    if (o->held <= 0)
        c->underflows++;
    o->held--;
    o->releases++;
}

void th_obj_hand_in(void *p) {
    if (p) {
        ((th_obj *)p)->held++;
        ((th_obj *)p)->handed_in++;
    }
}

void th_obj_hand_back(void *p) {
    if (p) {
        ((th_obj *)p)->held--;
        ((th_obj *)p)->handed_back++;
    }
}

champ_config th_generic_config(th_cbctx *ctx, bool counted,
                               champ_pool *pool) {
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    c.hash = th_key_hash;
    c.equal = th_key_equal;
    c.ctx = ctx;
    c.pool = pool;
    c.seed = 1;
    c.fixed_seed = true;
    if (counted) {
        c.key_retain = th_obj_retain;
        c.key_release = th_obj_release;
        c.val_retain = th_obj_retain;
        c.val_release = th_obj_release;
    }
    return c;
}

champ_config th_kind_config(champ_key_kind kind, uint64_t seed,
                            champ_pool *pool) {
    champ_config c = CHAMP_CONFIG_INIT(kind);
    c.seed = seed;
    c.fixed_seed = true;
    c.pool = pool;
    return c;
}

/* ------------------------------------------------------------------ */

/* Each block carries a header with its size, so free/realloc can check the
 * sizes the pool passes back. */
#define TH_HDR 32u
#define TH_MAGIC 0xc4a3b0bfULL

static bool th_alloc_refuse(th_alloc *t) {
    long idx = (long)t->calls++;
    if (t->fail_at >= 0 &&
        (idx == t->fail_at || (t->fail_persist && idx > t->fail_at))) {
        t->failures++;
        return true;
    }
    return false;
}

static void *th_alloc_malloc(size_t size, void *ctx) {
    th_alloc *t = ctx;
    if (th_alloc_refuse(t))
        return NULL;
    unsigned char *p = malloc(TH_HDR + size);
    if (!p)
        return NULL;
    uint64_t hdr[2] = {(uint64_t)size, TH_MAGIC};
    memcpy(p, hdr, sizeof hdr);
    t->live_bytes += size;
    t->live_blocks++;
    if (t->live_bytes > t->peak_bytes)
        t->peak_bytes = t->live_bytes;
    return p + TH_HDR;
}

static size_t th_alloc_size_of(th_alloc *t, void *ptr, size_t claimed) {
    uint64_t hdr[2];
    memcpy(hdr, (unsigned char *)ptr - TH_HDR, sizeof hdr);
    if (hdr[1] != TH_MAGIC || hdr[0] != claimed)
        t->size_mismatches++;
    return (size_t)hdr[0];
}

static void th_alloc_free(void *ptr, size_t size, void *ctx) {
    th_alloc *t = ctx;
    if (!ptr)
        return;
    size_t real = th_alloc_size_of(t, ptr, size);
    t->frees++;
    t->live_bytes -= real;
    t->live_blocks--;
    free((unsigned char *)ptr - TH_HDR);
}

static void *th_alloc_realloc(void *ptr, size_t old_size, size_t new_size,
                              void *ctx) {
    th_alloc *t = ctx;
    if (!ptr)
        return th_alloc_malloc(new_size, ctx);
    if (th_alloc_refuse(t))
        return NULL;
    size_t real = th_alloc_size_of(t, ptr, old_size);
    unsigned char *p = realloc((unsigned char *)ptr - TH_HDR, TH_HDR + new_size);
    if (!p)
        return NULL;
    uint64_t hdr[2] = {(uint64_t)new_size, TH_MAGIC};
    memcpy(p, hdr, sizeof hdr);
    t->live_bytes = t->live_bytes - real + new_size;
    if (t->live_bytes > t->peak_bytes)
        t->peak_bytes = t->live_bytes;
    return p + TH_HDR;
}

void th_alloc_init(th_alloc *t) {
    memset(t, 0, sizeof *t);
    t->a.malloc = th_alloc_malloc;
    t->a.realloc = th_alloc_realloc;
    t->a.free = th_alloc_free;
    t->a.ctx = t;
    t->fail_at = -1;
}

champ_pool *th_alloc_pool(th_alloc *t, bool concurrent) {
    th_alloc_init(t);
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.concurrent = concurrent;
    pc.allocator = &t->a;
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    return p;
}

/* ------------------------------------------------------------------ */

size_t th_pool_live(const champ_pool *p) {
    champ_pool_stats ps;
    if (champ_pool_stats_get(p, &ps, sizeof ps) != CHAMP_OK)
        return (size_t)-1;
    return ps.bytes_live;
}

champ_stats th_stats(const champ_map *m) {
    champ_stats s;
    memset(&s, 0, sizeof s);
    champ_status st = champ_stats_get(m, &s, sizeof s);
    CHECK(st == CHAMP_OK, "champ_stats_get returned %s", th_status_name(st));
    if (st != CHAMP_OK)
        memset(&s, 0, sizeof s);
    return s;
}

/* ------------------------------------------------------------------ */

/* The test files' tables, in run order. */
typedef struct th_table {
    const th_test *tests;
    const size_t *count;
} th_table;

static const th_table th_tables[] = {
    {th_tests_api, &th_tests_api_count},
    {th_tests_shapes, &th_tests_shapes_count},
    {th_tests_pool, &th_tests_pool_count},
    {th_tests_badinput, &th_tests_badinput_count},
    {th_tests_versions, &th_tests_versions_count},
    {th_tests_random, &th_tests_random_count},
    {th_tests_oom, &th_tests_oom_count},
    {th_tests_oomsweep, &th_tests_oomsweep_count},
    {th_tests_callbacks, &th_tests_callbacks_count},
    {th_tests_poolfix, &th_tests_poolfix_count},
    {th_tests_many, &th_tests_many_count},
    {th_tests_build, &th_tests_build_count},
    {th_tests_algebra, &th_tests_algebra_count},
    {th_tests_sets, &th_tests_sets_count},
    {th_tests_collide, &th_tests_collide_count},
    {th_tests_concurrent, &th_tests_concurrent_count},
};
enum { TH_NTABLES = sizeof th_tables / sizeof th_tables[0] };

/* Old suite names that are not a name prefix: "unit" was test_unit.c. */
static const struct {
    const char *alias;
    const char *prefixes[4];
} th_aliases[] = {
    {"unit", {"api", "shapes", "pool", NULL}},
};

/* name is prefix, or starts with prefix followed by a dot. */
static bool th_has_prefix(const char *name, const char *prefix) {
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 &&
           (name[n] == '\0' || name[n] == '.');
}

static bool th_matches(const char *name, const char *pattern) {
    for (size_t a = 0; a < sizeof th_aliases / sizeof th_aliases[0]; a++) {
        if (strcmp(pattern, th_aliases[a].alias) != 0)
            continue;
        for (size_t i = 0; th_aliases[a].prefixes[i]; i++)
            if (th_has_prefix(name, th_aliases[a].prefixes[i]))
                return true;
        return false;
    }
    return th_has_prefix(name, pattern);
}

/* No patterns: every test. */
static bool th_wanted(const char *name, char **pats, int npats) {
    if (npats == 0)
        return true;
    for (int i = 0; i < npats; i++)
        if (th_matches(name, pats[i]))
            return true;
    return false;
}

/* The length of a name's first part (its group: "api", "random"). */
static size_t th_group_len(const char *name) {
    const char *dot = strchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static void th_usage(FILE *f) {
    fprintf(f, "usage: champ_test [--list] [PATTERN...]\n"
               "  PATTERN selects the tests named PATTERN or PATTERN.*;\n"
               "  \"unit\" stands for api, shapes and pool.  No PATTERN: all.\n");
}

int main(int argc, char **argv) {
    bool list = false;
    char **pats = argv + 1;
    int npats = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0 || strcmp(argv[i], "-l") == 0) {
            list = true;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            th_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "champ_test: unknown option '%s'\n", argv[i]);
            th_usage(stderr);
            return 2;
        } else {
            pats[npats++] = argv[i];
        }
    }
    /* Every pattern must select something. */
    for (int p = 0; p < npats; p++) {
        bool found = false;
        for (size_t t = 0; t < TH_NTABLES && !found; t++)
            for (size_t i = 0; i < *th_tables[t].count && !found; i++)
                found = th_matches(th_tables[t].tests[i].name, pats[p]);
        if (!found) {
            fprintf(stderr,
                    "champ_test: no test is named '%s' or '%s.*' "
                    "(champ_test --list names them)\n",
                    pats[p], pats[p]);
            return 2;
        }
    }
    if (list) {
        for (size_t t = 0; t < TH_NTABLES; t++)
            for (size_t i = 0; i < *th_tables[t].count; i++)
                if (th_wanted(th_tables[t].tests[i].name, pats, npats))
                    printf("%s\n", th_tables[t].tests[i].name);
        return 0;
    }

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("champ tests, CHAMP_TEST_SCALE=%g\n", th_scale());
    /* The running group: its name, its first counts and clock. */
    const char *group = NULL;
    size_t glen = 0, gtests = 0;
    unsigned long p0 = 0, f0 = 0;
    clock_t t0 = 0;
    for (size_t t = 0; t < TH_NTABLES; t++) {
        for (size_t i = 0; i < *th_tables[t].count; i++) {
            const th_test *test = &th_tables[t].tests[i];
            if (!th_wanted(test->name, pats, npats))
                continue;
            size_t len = th_group_len(test->name);
            if (!group || len != glen || strncmp(group, test->name, len) != 0) {
                if (group)
                    printf("group %-9.*s %3zu tests %9lu checks passed, "
                           "%lu failed (%.2f s cpu)\n",
                           (int)glen, group, gtests, th_passed - p0,
                           th_failed - f0,
                           (double)(clock() - t0) / CLOCKS_PER_SEC);
                group = test->name;
                glen = len;
                gtests = 0;
                p0 = th_passed;
                f0 = th_failed;
                t0 = clock();
            }
            unsigned long tf = th_failed;
            th_test_name = test->name;
            th_set_seed(0);
            test->run();
            th_set_seed(0);
            th_test_name = NULL;
            gtests++;
            if (th_failed != tf)
                printf("FAILED %s: %lu checks failed\n", test->name,
                       th_failed - tf);
        }
    }
    if (group)
        printf("group %-9.*s %3zu tests %9lu checks passed, %lu failed "
               "(%.2f s cpu)\n",
               (int)glen, group, gtests, th_passed - p0, th_failed - f0,
               (double)(clock() - t0) / CLOCKS_PER_SEC);
    printf("%lu passed, %lu failed\n", th_passed, th_failed);
    return th_failed == 0 ? 0 : 1;
}

/*
 * driver.c - champ's benchmark driver.
 *
 * Owns everything but the libraries: key generation (fixed seeds), timing
 * (CLOCK_MONOTONIC around one call that runs a whole op loop), rounds (the
 * outer loop: each round runs every library once on the same workload),
 * a fresh process per (round, keys, N, library) job, result checking (every
 * query sum, remove count and iteration sum is verified), and the output:
 * tables on stdout, progress on stderr, CSV, gnuplot pictures and the
 * informational targets table.  See bench/README.md.
 */
#define _GNU_SOURCE
#include "adapter.h"
#include "keys.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Libraries                                                           */
/* ------------------------------------------------------------------ */

#ifdef HAVE_CHAMP
extern const bench_adapter bench_adapter_champ, bench_adapter_champ_generic;
#define AD_CHAMP &bench_adapter_champ
#define AD_CHAMP_GENERIC &bench_adapter_champ_generic
#else
#define AD_CHAMP NULL
#define AD_CHAMP_GENERIC NULL
#endif
#ifdef HAVE_ABSL
extern const bench_adapter bench_adapter_absl;
#define AD_ABSL &bench_adapter_absl
#else
#define AD_ABSL NULL
#endif
#ifdef HAVE_STD
extern const bench_adapter bench_adapter_std_unordered;
#define AD_STD &bench_adapter_std_unordered
#else
#define AD_STD NULL
#endif
#ifdef HAVE_GLIB
extern const bench_adapter bench_adapter_glib;
#define AD_GLIB &bench_adapter_glib
#else
#define AD_GLIB NULL
#endif
#ifdef HAVE_UTHASH
extern const bench_adapter bench_adapter_uthash;
#define AD_UTHASH &bench_adapter_uthash
#else
#define AD_UTHASH NULL
#endif
#ifdef HAVE_JUDY
extern const bench_adapter bench_adapter_judy;
#define AD_JUDY &bench_adapter_judy
#else
#define AD_JUDY NULL
#endif

typedef struct lib_entry {
    const char *name;
    const char *missing; /* what brings it when it was not built */
    const bench_adapter *ad;
} lib_entry;

enum { L_CHAMP, L_CHAMP_GENERIC, L_ABSL, L_STD, L_GLIB, L_UTHASH, L_JUDY, NLIBS };

static const lib_entry *libs(void)
{
    /* Built at run time: the C++ adapters are initialized dynamically. */
    static lib_entry t[NLIBS];
    t[L_CHAMP] = (lib_entry){"champ", "build/libchamp.a (make lib)", AD_CHAMP};
    t[L_CHAMP_GENERIC] = (lib_entry){"champ_generic", "build/libchamp.a (make lib)",
                                     AD_CHAMP_GENERIC};
    t[L_ABSL] = (lib_entry){"absl", "Debian package libabsl-dev (and g++)", AD_ABSL};
    t[L_STD] = (lib_entry){"std_unordered", "g++ (Debian package g++)", AD_STD};
    t[L_GLIB] = (lib_entry){"glib", "Debian package libglib2.0-dev", AD_GLIB};
    t[L_UTHASH] = (lib_entry){"uthash", "Debian package uthash-dev", AD_UTHASH};
    t[L_JUDY] = (lib_entry){"judy", "Debian package libjudy-dev", AD_JUDY};
    return t;
}

/* ------------------------------------------------------------------ */
/* Names                                                               */
/* ------------------------------------------------------------------ */

enum { KK_U64, KK_STR, KK_WORDS, NKK };
static const char *const kk_name[NKK] = {"u64", "str", "words"};
static const char *const op_name[OP_COUNT] = {
    "insert", "query", "miss", "remove", "iterate",
    "pinsert", "pinsert_keep", "premove", "copy_update"};
static const char *const op_unit[OP_COUNT] = {
    "ns/op", "ns/op", "ns/op", "ns/op", "ns/entry",
    "ns/op", "ns/op", "ns/op", "ns/copy+update"};

#define MAXN 16
#define WORDS_FILE "/usr/share/dict/words"
#define BIG_N 5000000u        /* cells at or above this N are budgeted     */
#define CU_MAX 20000u         /* copy_update: at most this many per rep    */
#define KEEP_MAX 1000000u     /* pinsert_keep: not above this N            */
#define QUICK_KEEP_MAX 100000u /* ... with --quick                         */
#define QUICK_STR_MAX 100000u /* --quick: string keys not above this N      */

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return splitmix(s) % n; /* bias below 2^-40 for the n used here */
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char *cpu_name(void)
{
    static char name[128];
    if (name[0])
        return name;
    snprintf(name, sizeof name, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (c && strncmp(line, "model name", 10) == 0) {
            c++;
            while (*c == ' ' || *c == '\t')
                c++;
            c[strcspn(c, "\n")] = 0;
            snprintf(name, sizeof name, "%s", c);
            break;
        }
    }
    if (f)
        fclose(f);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t len = strlen(name);
    snprintf(name + len, sizeof name - len, ", %ld CPUs", cpus);
    return name;
}

static void fmt_n(char *buf, size_t cap, size_t n)
{
    if (n >= 1000000 && n % 1000000 == 0)
        snprintf(buf, cap, "%zuM", n / 1000000);
    else if (n >= 1000 && n % 1000 == 0)
        snprintf(buf, cap, "%zuK", n / 1000);
    else
        snprintf(buf, cap, "%zu", n);
}

/* ------------------------------------------------------------------ */
/* Key sets                                                            */
/* ------------------------------------------------------------------ */

/* A set of strings for deduplication, open addressing over indexes. */
typedef struct strset {
    uint32_t *slot; /* index + 1, 0 = empty */
    size_t mask;
    const bench_str *base;
} strset;

static uint64_t str_hash(const char *p, size_t len)
{
    uint64_t h = 0x84222325cbf29ce4ull ^ len;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static void strset_init(strset *s, size_t cap, const bench_str *base)
{
    size_t sz = 16;
    while (sz < cap * 2)
        sz <<= 1;
    s->slot = calloc(sz, sizeof *s->slot);
    if (!s->slot)
        die("out of memory");
    s->mask = sz - 1;
    s->base = base;
}

/* Adds base[idx] unless an equal string is there; true if added. */
static bool strset_add(strset *s, const char *p, size_t len, uint32_t idx)
{
    size_t h = str_hash(p, len) & s->mask;
    for (;;) {
        uint32_t v = s->slot[h];
        if (!v) {
            if (idx != UINT32_MAX)
                s->slot[h] = idx + 1;
            return true;
        }
        const bench_str *o = &s->base[v - 1];
        if (o->len == len && memcmp(o->p, p, len) == 0)
            return false;
        h = (h + 1) & s->mask;
    }
}

typedef struct keyset {
    int kind;        /* KK_* */
    size_t nmax;     /* keys available */
    uint64_t *u;     /* u64: insert keys, nmax */
    uint64_t *um;    /* u64: absent keys, nmax */
    bench_str *s;    /* strings: insert keys */
    bench_str *sq;   /* the same strings, copied elsewhere (queries use them) */
    bench_str *sm;   /* absent strings */
    size_t qn[MAXN];
    void *q[MAXN];   /* per N: the N keys shuffled (query, remove order) */
    int nq;
} keyset;

static keyset g_ks[NKK];

static char *arena_take(char **cur, char **end, size_t n)
{
    if (*cur + n > *end) {
        size_t cap = 1u << 24;
        *cur = xmalloc(cap);
        *end = *cur + cap;
    }
    char *p = *cur;
    *cur += n;
    return p;
}

static void random_string(uint64_t *rng, char **cur, char **end, bench_str *out)
{
    static const char alpha[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    size_t len = 8 + (size_t)rng_below(rng, 25); /* 8..32 */
    char *p = arena_take(cur, end, len + 1);
    for (size_t i = 0; i < len; i++)
        p[i] = alpha[splitmix(rng) & 63];
    p[len] = 0;
    out->p = p;
    out->len = len;
}

static bench_str copy_str(char **cur, char **end, bench_str s)
{
    char *p = arena_take(cur, end, s.len + 1);
    memcpy(p, s.p, s.len + 1);
    return (bench_str){p, s.len};
}

static void gen_u64(keyset *ks, size_t nmax)
{
    ks->u = xmalloc(nmax * sizeof *ks->u);
    ks->um = xmalloc(nmax * sizeof *ks->um);
    /* Keys are key_of_index(i) for i < nmax, absent keys use the indexes
     * from 2^62 on: a bijection, so both sets are distinct and disjoint.
     * 0 is avoided (a NULL key for pointer-keyed maps). */
    for (size_t i = 0; i < nmax; i++) {
        uint64_t k = key_of_index(i), m = key_of_index((1ull << 62) + i);
        ks->u[i] = k ? k : key_of_index(1ull << 63);
        ks->um[i] = m ? m : key_of_index((1ull << 63) + 1);
    }
}

static void gen_str(keyset *ks, size_t nmax)
{
    char *cur = NULL, *end = NULL;
    uint64_t rng = 0x57a1b0c4d3e2f1ull;
    ks->s = xmalloc(nmax * sizeof *ks->s);
    ks->sm = xmalloc(nmax * sizeof *ks->sm);
    /* both in one table: strset indexes into a combined array */
    bench_str *all = xmalloc(2 * nmax * sizeof *all);
    strset set;
    strset_init(&set, 2 * nmax, all);
    size_t got = 0;
    while (got < 2 * nmax) {
        random_string(&rng, &cur, &end, &all[got]);
        if (strset_add(&set, all[got].p, all[got].len, (uint32_t)got))
            got++;
    }
    for (size_t i = 0; i < nmax; i++) {
        ks->s[i] = all[2 * i];
        ks->sm[i] = all[2 * i + 1];
    }
    free(all);
    free(set.slot);
}

static size_t gen_words(keyset *ks)
{
    FILE *f = fopen(WORDS_FILE, "r");
    if (!f)
        return 0;
    char *cur = NULL, *end = NULL, line[512];
    size_t cap = 1 << 16, n = 0;
    bench_str *w = xmalloc(cap * sizeof *w);
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        if (!len)
            continue;
        line[len] = 0;
        if (n == cap)
            w = realloc(w, (cap *= 2) * sizeof *w);
        if (!w)
            die("out of memory");
        w[n++] = copy_str(&cur, &end, (bench_str){line, len});
    }
    fclose(f);
    /* dedupe, then shuffle (fixed seed) so every prefix is a random sample */
    strset set;
    strset_init(&set, n, w);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (strset_add(&set, w[i].p, w[i].len, (uint32_t)m))
            w[m++] = w[i];
    n = m;
    uint64_t rng = 0x3011d5ull;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(&rng, i);
        bench_str t = w[i - 1];
        w[i - 1] = w[j];
        w[j] = t;
    }
    /* absent keys: each word with a suffix, kept only if not a word */
    ks->sm = xmalloc(n * sizeof *ks->sm);
    size_t k = 0;
    for (size_t i = 0; k < n; i++) {
        char buf[600];
        bench_str b = w[i % n];
        int len = snprintf(buf, sizeof buf, "%s%s%zu", b.p, i < n ? "~" : "~~", i / n);
        if (len <= 0)
            continue;
        bench_str c = {buf, (size_t)len};
        if (strset_add(&set, c.p, c.len, UINT32_MAX))
            ks->sm[k++] = copy_str(&cur, &end, c);
    }
    free(set.slot);
    ks->s = w;
    return n;
}

static void keyset_make(int kind, size_t nmax)
{
    keyset *ks = &g_ks[kind];
    if (ks->nmax >= nmax)
        return;
    ks->kind = kind;
    if (kind == KK_U64) {
        gen_u64(ks, nmax);
    } else if (kind == KK_STR) {
        gen_str(ks, nmax);
    } else {
        nmax = gen_words(ks);
    }
    if (kind != KK_U64) {
        char *cur = NULL, *end = NULL;
        ks->sq = xmalloc(nmax * sizeof *ks->sq);
        for (size_t i = 0; i < nmax; i++)
            ks->sq[i] = copy_str(&cur, &end, ks->s[i]);
    }
    ks->nmax = nmax;
}

/* The first n keys in a shuffled order (per n, cached). */
static const void *keyset_query(keyset *ks, size_t n)
{
    for (int i = 0; i < ks->nq; i++)
        if (ks->qn[i] == n)
            return ks->q[i];
    if (ks->nq == MAXN)
        die("too many scales");
    uint32_t *perm = xmalloc(n * sizeof *perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    uint64_t rng = 0xdecafull + n;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(&rng, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    void *q;
    if (ks->kind == KK_U64) {
        uint64_t *a = xmalloc(n * sizeof *a);
        for (size_t i = 0; i < n; i++)
            a[i] = ks->u[perm[i]];
        q = a;
    } else {
        bench_str *a = xmalloc(n * sizeof *a);
        for (size_t i = 0; i < n; i++)
            a[i] = ks->sq[perm[i]];
        q = a;
    }
    free(perm);
    ks->qn[ks->nq] = n;
    ks->q[ks->nq++] = q;
    return q;
}

static const void *keyset_insert(const keyset *ks)
{
    return ks->kind == KK_U64 ? (const void *)ks->u : (const void *)ks->s;
}

static const void *keyset_miss(const keyset *ks)
{
    return ks->kind == KK_U64 ? (const void *)ks->um : (const void *)ks->sm;
}

/* ------------------------------------------------------------------ */
/* The timed region                                                    */
/* ------------------------------------------------------------------ */

/* Every measured op loop runs inside this one function: the timer reads
 * around it, and `make bench-callgrind` switches collection on for it only
 * (--toggle-collect=bench_region). */
#if defined(__clang__)
#define BENCH_REGION_ATTR __attribute__((noinline))
#else
#define BENCH_REGION_ATTR __attribute__((noinline, noclone))
#endif
BENCH_REGION_ATTR uint64_t bench_region(bench_op_fn f, void *st, const void *keys, size_t n,
                                        void **scratch);
BENCH_REGION_ATTR uint64_t bench_region(bench_op_fn f, void *st, const void *keys, size_t n,
                                        void **scratch)
{
    uint64_t r = f(st, keys, n, scratch);
    __asm__ volatile("" ::: "memory");
    return r;
}

static uint64_t timed(bench_op_fn f, void *st, const void *keys, size_t n,
                      void **scratch, double *acc)
{
    double t0 = now_ns();
    uint64_t r = bench_region(f, st, keys, n, scratch);
    *acc += now_ns() - t0;
    return r;
}

/* ------------------------------------------------------------------ */
/* One job: one library, one key kind, one N, all selected ops          */
/* ------------------------------------------------------------------ */

typedef struct job_result {
    unsigned have;                /* bit per op: measured               */
    unsigned bad;                 /* bit per op: a check failed         */
    double ns[OP_COUNT];          /* ns per op (per entry for iterate)  */
    double bpe[OP_COUNT];         /* bytes per entry (insert, keep), <0 = n/a */
    double reserved_bpe[OP_COUNT];
    char msg[512];                /* first failure, for the report      */
} job_result;

/* Shared with the parent so a crash says which op it was in. */
typedef struct job_shared {
    volatile int op;
    volatile int phase; /* 0 setup, 1 timed, 2 check */
} job_shared;

static job_shared *g_shared;

static void job_fail(job_result *r, int op, const char *fmt, ...)
{
    va_list ap;
    r->bad |= 1u << op;
    if (r->msg[0])
        return;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
}

static size_t reps_for(size_t n, size_t min_ops)
{
    size_t r = (min_ops + n - 1) / n;
    return r < 1 ? 1 : r > 200 ? 200 : r;
}

static void mark(int op, int phase)
{
    if (g_shared) {
        g_shared->op = op;
        g_shared->phase = phase;
    }
}

static void run_job(const bench_adapter *ad, keyset *ks, size_t n, unsigned ops,
                    size_t min_ops, job_result *res)
{
    int bk = ks->kind == KK_U64 ? BK_U64 : BK_STR;
    bench_op_fn const *F = ad->op[bk];
    const void *kins = keyset_insert(ks), *kq = keyset_query(ks, n), *km = keyset_miss(ks);
    const uint64_t expect = (uint64_t)n * (n + 1) / 2;
    size_t reps = reps_for(n, min_ops);
    size_t cu = n < CU_MAX ? n : CU_MAX;
    double t[OP_COUNT] = {0};
    size_t cnt[OP_COUNT] = {0};

    for (int o = 0; o < OP_COUNT; o++)
        res->bpe[o] = res->reserved_bpe[o] = -1;
    if (!F[OP_INSERT] || !F[OP_QUERY]) {
        snprintf(res->msg, sizeof res->msg, "adapter lacks insert/query");
        return;
    }
    for (int o = 0; o < OP_COUNT; o++)
        if (!F[o])
            ops &= ~(1u << o);

    /* mutable ops on one map per rep: insert, query, miss, iterate,
     * copy_update, remove */
    unsigned mut = (1u << OP_INSERT) | (1u << OP_QUERY) | (1u << OP_MISS) |
                   (1u << OP_ITERATE) | (1u << OP_COPY_UPDATE) | (1u << OP_REMOVE);
    if (ops & mut) {
        for (size_t r = 0; r < reps; r++) {
            mark(OP_INSERT, 0);
            size_t h0 = heap_bytes();
            void *st = ad->create(bk);
            if (!st) {
                job_fail(res, OP_INSERT, "create failed");
                return;
            }
            mark(OP_INSERT, 1);
            uint64_t c = timed(F[OP_INSERT], st, kins, n, NULL, &t[OP_INSERT]);
            cnt[OP_INSERT] += n;
            mark(OP_INSERT, 2);
            if (c != n)
                job_fail(res, OP_INSERT, "insert: %llu new keys reported, expected %zu",
                         (unsigned long long)c, n);
            if (ad->size && ad->size(st) != n)
                job_fail(res, OP_INSERT, "insert: size %zu after %zu inserts", ad->size(st), n);
            if (r == 0) {
                if (ad->memory) {
                    size_t live, resv;
                    ad->memory(st, &live, &resv);
                    res->bpe[OP_INSERT] = (double)live / (double)n;
                    res->reserved_bpe[OP_INSERT] = (double)resv / (double)n;
                } else {
                    res->bpe[OP_INSERT] = (double)(heap_bytes() - h0) / (double)n;
                }
            }
            /* query runs even when not selected: it checks the inserts */
            mark(OP_QUERY, 1);
            uint64_t s = timed(F[OP_QUERY], st, kq, n, NULL, &t[OP_QUERY]);
            cnt[OP_QUERY] += n;
            mark(OP_QUERY, 2);
            if (s != expect)
                job_fail(res, OP_QUERY, "query: sum %llu, expected %llu",
                         (unsigned long long)s, (unsigned long long)expect);
            if (ops & (1u << OP_MISS)) {
                mark(OP_MISS, 1);
                s = timed(F[OP_MISS], st, km, n, NULL, &t[OP_MISS]);
                cnt[OP_MISS] += n;
                mark(OP_MISS, 2);
                if (s != 0)
                    job_fail(res, OP_MISS, "miss: absent keys found (value sum %llu)",
                             (unsigned long long)s);
            }
            if (ops & (1u << OP_ITERATE)) {
                mark(OP_ITERATE, 1);
                s = timed(F[OP_ITERATE], st, NULL, n, NULL, &t[OP_ITERATE]);
                cnt[OP_ITERATE] += n;
                mark(OP_ITERATE, 2);
                if (s != expect)
                    job_fail(res, OP_ITERATE, "iterate: value sum %llu, expected %llu",
                             (unsigned long long)s, (unsigned long long)expect);
            }
            if (ops & (1u << OP_COPY_UPDATE)) {
                mark(OP_COPY_UPDATE, 1);
                c = timed(F[OP_COPY_UPDATE], st, kq, cu, NULL, &t[OP_COPY_UPDATE]);
                cnt[OP_COPY_UPDATE] += cu;
                mark(OP_COPY_UPDATE, 2);
                if (c != cu)
                    job_fail(res, OP_COPY_UPDATE, "copy_update: %llu updates, expected %zu",
                             (unsigned long long)c, cu);
                if (r == 0) { /* the original must not have changed */
                    double junk = 0;
                    s = timed(F[OP_QUERY], st, kq, n, NULL, &junk);
                    if (s != expect)
                        job_fail(res, OP_COPY_UPDATE,
                                 "copy_update changed the source map: query sum %llu, "
                                 "expected %llu",
                                 (unsigned long long)s, (unsigned long long)expect);
                }
            }
            if (ops & (1u << OP_REMOVE)) {
                mark(OP_REMOVE, 1);
                c = timed(F[OP_REMOVE], st, kq, n, NULL, &t[OP_REMOVE]);
                cnt[OP_REMOVE] += n;
                mark(OP_REMOVE, 2);
                if (c != n)
                    job_fail(res, OP_REMOVE, "remove: %llu removed, expected %zu",
                             (unsigned long long)c, n);
                if (ad->size && ad->size(st) != 0)
                    job_fail(res, OP_REMOVE, "remove: size %zu after removing all",
                             ad->size(st));
            }
            mark(OP_REMOVE, 0);
            ad->destroy(st);
        }
    }

    /* persistent chain: pinsert, then premove of that map */
    if (ops & ((1u << OP_PINSERT) | (1u << OP_PREMOVE))) {
        for (size_t r = 0; r < reps; r++) {
            void *st = ad->create(bk);
            if (!st) {
                job_fail(res, OP_PINSERT, "create failed");
                break;
            }
            mark(OP_PINSERT, 1);
            uint64_t c = timed(F[OP_PINSERT], st, kins, n, NULL, &t[OP_PINSERT]);
            cnt[OP_PINSERT] += n;
            mark(OP_PINSERT, 2);
            if (c != n)
                job_fail(res, OP_PINSERT, "pinsert: %llu inserts, expected %zu",
                         (unsigned long long)c, n);
            if (r == 0) {
                double junk = 0;
                uint64_t s = timed(F[OP_QUERY], st, kq, n, NULL, &junk);
                if (s != expect)
                    job_fail(res, OP_PINSERT, "pinsert: query sum %llu, expected %llu",
                             (unsigned long long)s, (unsigned long long)expect);
            }
            if (ops & (1u << OP_PREMOVE)) {
                mark(OP_PREMOVE, 1);
                c = timed(F[OP_PREMOVE], st, kq, n, NULL, &t[OP_PREMOVE]);
                cnt[OP_PREMOVE] += n;
                mark(OP_PREMOVE, 2);
                if (c != n)
                    job_fail(res, OP_PREMOVE, "premove: %llu removed, expected %zu",
                             (unsigned long long)c, n);
                if (ad->size && ad->size(st) != 0)
                    job_fail(res, OP_PREMOVE, "premove: size %zu at the end", ad->size(st));
            }
            mark(OP_PREMOVE, 0);
            ad->destroy(st);
        }
    }

    if ((ops & (1u << OP_PINSERT_KEEP)) && ad->drop_versions) {
        void **keep = xmalloc(n * sizeof *keep);
        memset(keep, 0, n * sizeof *keep); /* touched before timing */
        for (size_t r = 0; r < reps; r++) {
            size_t h0 = heap_bytes();
            void *st = ad->create(bk);
            if (!st) {
                job_fail(res, OP_PINSERT_KEEP, "create failed");
                break;
            }
            mark(OP_PINSERT_KEEP, 1);
            uint64_t c = timed(F[OP_PINSERT_KEEP], st, kins, n, keep, &t[OP_PINSERT_KEEP]);
            cnt[OP_PINSERT_KEEP] += n;
            mark(OP_PINSERT_KEEP, 2);
            if (c != n)
                job_fail(res, OP_PINSERT_KEEP, "pinsert_keep: %llu inserts, expected %zu",
                         (unsigned long long)c, n);
            if (r == 0) {
                if (ad->memory) {
                    size_t live, resv;
                    ad->memory(st, &live, &resv);
                    res->bpe[OP_PINSERT_KEEP] = (double)live / (double)n;
                    res->reserved_bpe[OP_PINSERT_KEEP] = (double)resv / (double)n;
                } else {
                    res->bpe[OP_PINSERT_KEEP] = (double)(heap_bytes() - h0) / (double)n;
                }
                double junk = 0;
                uint64_t s = timed(F[OP_QUERY], st, kq, n, NULL, &junk);
                if (s != expect)
                    job_fail(res, OP_PINSERT_KEEP, "pinsert_keep: query sum of the last "
                             "version %llu, expected %llu",
                             (unsigned long long)s, (unsigned long long)expect);
            }
            mark(OP_PINSERT_KEEP, 0);
            ad->drop_versions(st, keep, n);
            ad->destroy(st);
        }
        free(keep);
    }

    for (int o = 0; o < OP_COUNT; o++)
        if ((ops & (1u << o)) && cnt[o]) {
            res->have |= 1u << o;
            res->ns[o] = t[o] / (double)cnt[o];
        }
}

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

typedef struct options {
    bool quick;
    size_t n[MAXN];
    int nn;
    bool n_given;
    unsigned libs;  /* bit per L_* */
    unsigned kinds; /* bit per KK_* */
    unsigned ops;   /* bit per OP_* */
    int rounds;
    int rounds_big;
    bool budget;
    const char *csv;
    const char *png;
    const char *telemetry;
    const char *callgrind_csv;
    size_t min_ops;
    double timeout;
} options;

static int find_name(const char *s, size_t len, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == len && strncmp(names[i], s, len) == 0)
            return i;
    return -1;
}

static size_t parse_size(const char *s, const char **end)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || errno)
        die("bad number '%s'", s);
    if (*e == 'k' || *e == 'K')
        v *= 1e3, e++;
    else if (*e == 'm' || *e == 'M')
        v *= 1e6, e++;
    if (v < 1 || v > 4e9)
        die("N out of range: %s", s);
    *end = e;
    return (size_t)(v + 0.5);
}

static void usage(void)
{
    puts("usage: bench [--quick] [--n N,N,..] [--libs a,b] [--keys u64,str,words]\n"
         "             [--ops insert,query,..] [--rounds K] [--csv FILE] [--png FILE]\n"
         "             [--no-budget]\n"
         "       bench --profile LIB:KEYS:OP:N:SECONDS   (one op, repeated, for perf)\n"
         "       bench --callgrind LIB:KEYS:OP:N          (one op once, for callgrind)\n"
         "libs: champ champ_generic absl std_unordered glib uthash judy\n"
         "ops:  insert query miss remove iterate pinsert pinsert_keep premove copy_update\n"
         "      (build: no library here has a bulk build, so it is never measured)\n"
         "N accepts suffixes K and M: --n 10K,1M");
}

static unsigned parse_list(const char *arg, const char *const *names, int count,
                           const char *what)
{
    unsigned mask = 0;
    const char *s = arg;
    while (*s) {
        size_t len = strcspn(s, ",");
        int i = find_name(s, len, names, count);
        if (i >= 0)
            mask |= 1u << i;
        else if (strcmp(what, "op") == 0 && len == 5 && strncmp(s, "build", 5) == 0)
            fprintf(stderr, "bench: op build: no library here has a bulk build; omitted\n");
        else
            die("unknown %s '%.*s'", what, (int)len, s);
        s += len;
        if (*s == ',')
            s++;
    }
    return mask;
}

static const char *const *lib_names(void)
{
    static const char *names[NLIBS];
    const lib_entry *t = libs();
    for (int i = 0; i < NLIBS; i++)
        names[i] = t[i].name;
    return names;
}

/* ------------------------------------------------------------------ */
/* Profile and callgrind modes: one op, in this process                */
/* ------------------------------------------------------------------ */

typedef struct one_spec {
    int lib, kind, op;
    size_t n;
    double seconds;
} one_spec;

static one_spec parse_one(const char *arg, bool with_seconds)
{
    one_spec sp = {0};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    char *parts[5] = {0};
    int np = 0;
    for (char *p = strtok(buf, ":"); p && np < 5; p = strtok(NULL, ":"))
        parts[np++] = p;
    if (np != (with_seconds ? 5 : 4))
        die("expected LIB:KEYS:OP:N%s, got '%s'", with_seconds ? ":SECONDS" : "", arg);
    sp.lib = find_name(parts[0], strlen(parts[0]), lib_names(), NLIBS);
    sp.kind = find_name(parts[1], strlen(parts[1]), kk_name, NKK);
    sp.op = find_name(parts[2], strlen(parts[2]), op_name, OP_COUNT);
    if (sp.lib < 0 || sp.kind < 0 || sp.op < 0)
        die("unknown library, key kind or op in '%s'", arg);
    const char *e;
    sp.n = parse_size(parts[3], &e);
    sp.seconds = with_seconds ? atof(parts[4]) : 0;
    return sp;
}

/* Prepares the state an op starts from (outside any timing). */
static void *one_setup(const bench_adapter *ad, int bk, int op, const void *kins,
                       size_t n)
{
    void *st = ad->create(bk);
    if (!st)
        die("create failed");
    bench_op_fn F = NULL;
    if (op == OP_QUERY || op == OP_MISS || op == OP_ITERATE || op == OP_COPY_UPDATE ||
        op == OP_REMOVE)
        F = ad->op[bk][OP_INSERT];
    else if (op == OP_PREMOVE)
        F = ad->op[bk][OP_PINSERT];
    if (F && F(st, kins, n, NULL) != n)
        die("setup: inserting %zu keys failed", n);
    return st;
}

static bool one_mutates(int op)
{
    return !(op == OP_QUERY || op == OP_MISS || op == OP_ITERATE || op == OP_COPY_UPDATE);
}

static int run_one(const char *arg, bool profile)
{
    one_spec sp = parse_one(arg, profile);
    const bench_adapter *ad = libs()[sp.lib].ad;
    if (!ad)
        die("%s was not built (needs %s)", lib_names()[sp.lib], libs()[sp.lib].missing);
    int bk = sp.kind == KK_U64 ? BK_U64 : BK_STR;
    bench_op_fn f = ad->op[bk][sp.op];
    if (!f)
        die("%s has no %s for %s keys", ad->name, op_name[sp.op], kk_name[sp.kind]);
    keyset_make(sp.kind, sp.n);
    keyset *ks = &g_ks[sp.kind];
    if (sp.n > ks->nmax)
        sp.n = ks->nmax;
    size_t n = sp.n;
    const void *kins = keyset_insert(ks), *kq = keyset_query(ks, n);
    const void *keys = sp.op == OP_MISS ? keyset_miss(ks)
                       : (sp.op == OP_INSERT || sp.op == OP_PINSERT ||
                          sp.op == OP_PINSERT_KEEP) ? kins : kq;
    size_t cnt = sp.op == OP_COPY_UPDATE ? (n < CU_MAX ? n : CU_MAX) : n;
    void **keep = sp.op == OP_PINSERT_KEEP ? calloc(n, sizeof *keep) : NULL;

    if (!profile) {
        void *st = one_setup(ad, bk, sp.op, kins, n);
        uint64_t r = bench_region(f, st, keys, cnt, keep);
        if (keep)
            ad->drop_versions(st, keep, n);
        ad->destroy(st);
        printf("callgrind %s %s %s n=%zu ops=%zu result=%llu\n", ad->name,
               kk_name[sp.kind], op_name[sp.op], n, cnt, (unsigned long long)r);
        return 0;
    }
    fprintf(stderr, "profile: %s %s %s N=%zu for %.0f s (pid %d)\n", ad->name,
            kk_name[sp.kind], op_name[sp.op], n, sp.seconds, (int)getpid());
    double end = now_ns() + sp.seconds * 1e9, total = 0;
    size_t iters = 0;
    void *st = NULL;
    while (now_ns() < end || iters == 0) {
        if (!st || one_mutates(sp.op))
            st = one_setup(ad, bk, sp.op, kins, n);
        double t = 0;
        timed(f, st, keys, cnt, keep, &t);
        total += t;
        iters++;
        if (one_mutates(sp.op)) {
            if (keep)
                ad->drop_versions(st, keep, n);
            ad->destroy(st);
            st = NULL;
        }
    }
    if (st)
        ad->destroy(st);
    printf("profile %s %s %s N=%zu: %zu iterations, %.2f %s\n", ad->name,
           kk_name[sp.kind], op_name[sp.op], n, iters, total / (double)(iters * cnt),
           op_unit[sp.op]);
    free(keep);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

#define MAXROUNDS 64

typedef struct cell {
    int count;                 /* samples */
    double ns[MAXROUNDS];
    double bpe, reserved_bpe;  /* first sample, <0 = n/a */
    bool bad;
    bool planned;
} cell;

typedef struct scale_set {
    size_t n[MAXN];
    int nn;
} scale_set;

static cell g_cell[NKK][MAXN][NLIBS][OP_COUNT];
static scale_set g_scales[NKK];

typedef struct problem {
    char text[700];
} problem;
static problem g_prob[256];
static int g_nprob;

static void add_problem(const char *fmt, ...)
{
    if (g_nprob == 256)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_prob[g_nprob++].text, sizeof g_prob[0].text, fmt, ap);
    va_end(ap);
}

static double cell_median(const cell *c)
{
    if (!c->count)
        return NAN;
    double v[MAXROUNDS];
    memcpy(v, c->ns, (size_t)c->count * sizeof *v);
    qsort(v, (size_t)c->count, sizeof *v, cmp_double);
    return c->count % 2 ? v[c->count / 2] : (v[c->count / 2 - 1] + v[c->count / 2]) / 2;
}

static double cell_min(const cell *c)
{
    double m = NAN;
    for (int i = 0; i < c->count; i++)
        if (!(c->ns[i] >= m))
            m = c->ns[i];
    return m;
}

static int scale_index(int kind, size_t n)
{
    for (int i = 0; i < g_scales[kind].nn; i++)
        if (g_scales[kind].n[i] == n)
            return i;
    return -1;
}

static double med(int kind, int lib, int op, size_t n)
{
    int si = scale_index(kind, n);
    if (si < 0)
        return NAN;
    const cell *c = &g_cell[kind][si][lib][op];
    return c->bad ? NAN : cell_median(c);
}

/* ------------------------------------------------------------------ */
/* Running the jobs                                                    */
/* ------------------------------------------------------------------ */

static const char *sig_name(int s)
{
    const char *d = strsignal(s);
    return d ? d : "signal";
}

/* Runs one job in a fresh process; false if it crashed or timed out. */
static bool fork_job(const options *o, int lib, int kind, size_t n, unsigned ops,
                     job_result *res)
{
    int fd[2];
    memset(res, 0, sizeof *res);
    if (pipe(fd) != 0)
        die("pipe: %s", strerror(errno));
    g_shared->op = -1;
    g_shared->phase = 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fd[0]);
        alarm((unsigned)o->timeout);
        job_result r;
        memset(&r, 0, sizeof r);
        run_job(libs()[lib].ad, &g_ks[kind], n, ops, o->min_ops, &r);
        const char *p = (const char *)&r;
        size_t left = sizeof r;
        while (left) {
            ssize_t w = write(fd[1], p, left);
            if (w <= 0)
                _exit(3);
            p += w;
            left -= (size_t)w;
        }
        _exit(0);
    }
    close(fd[1]);
    char *p = (char *)res;
    size_t got = 0;
    while (got < sizeof *res) {
        ssize_t r = read(fd[0], p + got, sizeof *res - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got == sizeof *res && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    const char *opn = g_shared->op >= 0 ? op_name[g_shared->op] : "setup";
    const char *ph = g_shared->phase == 1 ? "inside the timed loop"
                     : g_shared->phase == 2 ? "while checking" : "in setup";
    char how[128];
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        snprintf(how, sizeof how, "timed out after %.0f s", o->timeout);
    else if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "crashed (%s)", sig_name(WTERMSIG(status)));
    else
        snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    snprintf(res->msg, sizeof res->msg, "%s during %s, %s", how, opn, ph);
    return false;
}

typedef struct plan_job {
    int kind, si, lib;
    size_t n;
    unsigned ops;
    int rounds;
    double last_s; /* duration of the last run, for the ETA */
} plan_job;

static plan_job g_jobs[NKK * MAXN * NLIBS];
static int g_njobs;

static unsigned lib_ops(const bench_adapter *ad, int kind, unsigned ops)
{
    int bk = kind == KK_U64 ? BK_U64 : BK_STR;
    unsigned m = 0;
    for (int o = 0; o < OP_COUNT; o++)
        if ((ops & (1u << o)) && ad->op[bk][o])
            m |= 1u << o;
    if (!(ad->drop_versions))
        m &= ~(1u << OP_PINSERT_KEEP);
    return m;
}

/* The budget (off with --no-budget):
 *   N >= BIG_N:  u64 keys only, no pinsert_keep or premove, rounds_big rounds;
 *   pinsert_keep only up to KEEP_MAX (QUICK_KEEP_MAX with --quick);
 *   --quick:     string keys only up to QUICK_STR_MAX. */
static size_t keep_max(const options *o)
{
    return o->quick ? QUICK_KEEP_MAX : KEEP_MAX;
}

static void plan(const options *o)
{
    const lib_entry *L = libs();
    for (int k = 0; k < NKK; k++) {
        if (!(o->kinds & (1u << k)))
            continue;
        for (int si = 0; si < g_scales[k].nn; si++) {
            size_t n = g_scales[k].n[si];
            bool big = n >= BIG_N && o->budget;
            if (big && k != KK_U64)
                continue;
            if (o->quick && o->budget && k != KK_U64 && n > QUICK_STR_MAX)
                continue;
            for (int l = 0; l < NLIBS; l++) {
                if (!(o->libs & (1u << l)) || !L[l].ad)
                    continue;
                unsigned ops = lib_ops(L[l].ad, k, o->ops);
                if (o->budget && (big || n > keep_max(o)))
                    ops &= ~(1u << OP_PINSERT_KEEP);
                if (big)
                    ops &= ~(1u << OP_PREMOVE);
                if (o->budget && o->quick && n > QUICK_STR_MAX)
                    ops &= ~(1u << OP_PREMOVE);
                if (!ops)
                    continue;
                plan_job *j = &g_jobs[g_njobs++];
                j->kind = k;
                j->si = si;
                j->lib = l;
                j->n = n;
                j->ops = ops;
                j->rounds = big ? o->rounds_big : o->rounds;
                j->last_s = -1;
                for (int op = 0; op < OP_COUNT; op++)
                    if (ops & (1u << op))
                        g_cell[k][si][l][op].planned = true;
            }
        }
    }
}

static void fmt_time(char *buf, size_t cap, double s)
{
    if (s < 0)
        snprintf(buf, cap, "?");
    else
        snprintf(buf, cap, "%d:%02d", (int)(s / 60), (int)s % 60);
}

static void run_all(const options *o)
{
    const lib_entry *L = libs();
    bool tty = isatty(2);
    double t_start = now_ns();
    int max_rounds = 0;
    for (int i = 0; i < g_njobs; i++)
        if (g_jobs[i].rounds > max_rounds)
            max_rounds = g_jobs[i].rounds;
    int total = 0, done = 0;
    for (int i = 0; i < g_njobs; i++)
        total += g_jobs[i].rounds;

    for (int r = 0; r < max_rounds; r++) {
        /* libraries of one (keys, N) run back to back; the starting
         * library rotates each round so none always runs first */
        for (int i = 0; i < g_njobs;) {
            int e = i;
            while (e < g_njobs && g_jobs[e].kind == g_jobs[i].kind && g_jobs[e].n == g_jobs[i].n)
                e++;
            int cnt = e - i;
            for (int q = 0; q < cnt; q++) {
                plan_job *j = &g_jobs[i + (q + r) % cnt];
                if (r >= j->rounds)
                    continue;
                double eta = 0;
                bool known = true;
                /* remaining: later (keys, N) groups of this round and the
                 * later rounds, from each job's last duration */
                for (int x = 0; x < g_njobs; x++) {
                    int rem = g_jobs[x].rounds - r - 1;
                    if (rem < 0)
                        rem = 0;
                    if (x >= e && r < g_jobs[x].rounds)
                        rem++;
                    if (g_jobs[x].last_s < 0) {
                        known = false;
                        break;
                    }
                    eta += rem * g_jobs[x].last_s;
                }
                char el[32], et[32], ns[32];
                fmt_time(el, sizeof el, (now_ns() - t_start) / 1e9);
                fmt_time(et, sizeof et, known ? eta : -1);
                fmt_n(ns, sizeof ns, j->n);
                /* on a terminal one line rewritten per job, else one line
                 * per (keys, N) group */
                if (tty)
                    fprintf(stderr, "\r\033[K[round %d/%d] %-5s N=%-5s %-13s job %d/%d  "
                            "elapsed %s  eta %s", r + 1, max_rounds, kk_name[j->kind], ns,
                            L[j->lib].name, done + 1, total, el, et);
                else if (q == 0)
                    fprintf(stderr, "[round %d/%d] %-5s N=%-5s jobs %d-%d of %d  elapsed %s  "
                            "eta %s\n", r + 1, max_rounds, kk_name[j->kind], ns, done + 1,
                            done + cnt, total, el, et);
                keyset_make(j->kind, j->n); /* no-op once made */
                keyset_query(&g_ks[j->kind], j->n);
                job_result res;
                double t0 = now_ns();
                bool ok = fork_job(o, j->lib, j->kind, j->n, j->ops, &res);
                j->last_s = (now_ns() - t0) / 1e9;
                done++;
                for (int op = 0; op < OP_COUNT; op++) {
                    cell *c = &g_cell[j->kind][j->si][j->lib][op];
                    if (res.bad & (1u << op))
                        c->bad = true;
                    if (!(res.have & (1u << op)) || (res.bad & (1u << op)))
                        continue;
                    if (c->count == 0) {
                        c->bpe = res.bpe[op];
                        c->reserved_bpe = res.reserved_bpe[op];
                    }
                    if (c->count < MAXROUNDS)
                        c->ns[c->count++] = res.ns[op];
                }
                if (!ok || res.bad || res.msg[0]) {
                    if (!ok)
                        for (int op = 0; op < OP_COUNT; op++)
                            if (j->ops & (1u << op) && !(res.have & (1u << op)))
                                g_cell[j->kind][j->si][j->lib][op].bad = true;
                    add_problem("%s, %s keys, N=%zu, round %d: %s", L[j->lib].name,
                                kk_name[j->kind], j->n, r + 1, res.msg);
                    fprintf(stderr, "%sbench: %s, %s keys, N=%zu: %s\n", tty ? "\r\033[K" : "",
                            L[j->lib].name, kk_name[j->kind], j->n, res.msg);
                }
            }
            i = e;
        }
    }
    char el[32];
    fmt_time(el, sizeof el, (now_ns() - t_start) / 1e9);
    fprintf(stderr, "%sbench: %d jobs in %s\n", tty ? "\r\033[K" : "", done, el);
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static void print_tables(const options *o)
{
    const lib_entry *L = libs();
    for (int k = 0; k < NKK; k++) {
        for (int op = 0; op < OP_COUNT; op++) {
            /* libraries with any sample of this op */
            int cols[NLIBS], nc = 0;
            for (int l = 0; l < NLIBS; l++) {
                bool any = false;
                for (int si = 0; si < g_scales[k].nn; si++)
                    any |= g_cell[k][si][l][op].planned;
                if (any)
                    cols[nc++] = l;
            }
            if (!nc)
                continue;
            bool has_absl = false, has_glib = false, has_champ = false, has_gen = false;
            for (int c = 0; c < nc; c++) {
                has_absl |= cols[c] == L_ABSL;
                has_glib |= cols[c] == L_GLIB;
                has_champ |= cols[c] == L_CHAMP;
                has_gen |= cols[c] == L_CHAMP_GENERIC;
            }
            printf("\n%s keys, %s: %s, median/min of the rounds\n", kk_name[k], op_name[op],
                   op_unit[op]);
            printf("%8s", "N");
            for (int c = 0; c < nc; c++)
                printf(" %15s", L[cols[c]].name);
            if (has_champ && has_absl)
                printf(" %11s", "champ/absl");
            if (has_gen && has_absl)
                printf(" %11s", "gen/absl");
            if (has_champ && has_glib)
                printf(" %11s", "champ/glib");
            if (has_gen && has_glib)
                printf(" %11s", "gen/glib");
            putchar('\n');
            for (int si = 0; si < g_scales[k].nn; si++) {
                bool any = false;
                for (int c = 0; c < nc; c++)
                    any |= g_cell[k][si][cols[c]][op].planned;
                if (!any)
                    continue;
                char ns[32];
                fmt_n(ns, sizeof ns, g_scales[k].n[si]);
                printf("%8s", ns);
                for (int c = 0; c < nc; c++) {
                    const cell *ce = &g_cell[k][si][cols[c]][op];
                    char b[64];
                    if (ce->bad)
                        snprintf(b, sizeof b, "FAILED");
                    else if (!ce->count)
                        snprintf(b, sizeof b, "-");
                    else
                        snprintf(b, sizeof b, "%.1f/%.1f", cell_median(ce), cell_min(ce));
                    printf(" %15s", b);
                }
                double ch = cell_median(&g_cell[k][si][L_CHAMP][op]);
                double ge = cell_median(&g_cell[k][si][L_CHAMP_GENERIC][op]);
                double ab = cell_median(&g_cell[k][si][L_ABSL][op]);
                double gl = cell_median(&g_cell[k][si][L_GLIB][op]);
                const double pairs[4][2] = {{ch, ab}, {ge, ab}, {ch, gl}, {ge, gl}};
                const bool show[4] = {has_champ && has_absl, has_gen && has_absl,
                                      has_champ && has_glib, has_gen && has_glib};
                for (int p = 0; p < 4; p++) {
                    if (!show[p])
                        continue;
                    if (isnan(pairs[p][0]) || isnan(pairs[p][1]))
                        printf(" %11s", "-");
                    else
                        printf(" %10.2fx", pairs[p][0] / pairs[p][1]);
                }
                putchar('\n');
            }
        }
        /* memory: after inserting N, and all pinsert_keep versions */
        for (int mo = 0; mo < 2; mo++) {
            int mop = mo ? OP_PINSERT_KEEP : OP_INSERT;
            int mcols[NLIBS], nm = 0;
            for (int l = 0; l < NLIBS; l++) {
                bool any = false;
                for (int si = 0; si < g_scales[k].nn; si++)
                    any |= g_cell[k][si][l][mop].count > 0 && g_cell[k][si][l][mop].bpe >= 0;
                if (any)
                    mcols[nm++] = l;
            }
            if (!nm)
                continue;
            if (mop == OP_INSERT)
                printf("\n%s keys, memory after inserting N: bytes per entry "
                       "(champ: pool bytes live; others: heap growth by mallinfo2)\n",
                       kk_name[k]);
            else
                printf("\n%s keys, memory of all N versions kept by pinsert_keep: "
                       "bytes per entry (pool bytes live)\n", kk_name[k]);
            printf("%8s", "N");
            for (int c = 0; c < nm; c++)
                printf(" %14s", L[mcols[c]].name);
            putchar('\n');
            for (int si = 0; si < g_scales[k].nn; si++) {
                bool row = false;
                for (int c = 0; c < nm; c++)
                    row |= g_cell[k][si][mcols[c]][mop].count > 0;
                if (!row)
                    continue;
                char ns[32];
                fmt_n(ns, sizeof ns, g_scales[k].n[si]);
                printf("%8s", ns);
                for (int c = 0; c < nm; c++) {
                    const cell *ce = &g_cell[k][si][mcols[c]][mop];
                    if (ce->count && ce->bpe >= 0)
                        printf(" %14.1f", ce->bpe);
                    else
                        printf(" %14s", "-");
                }
                putchar('\n');
            }
        }
    }
    (void)o;
}

static int write_csv(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    const lib_entry *L = libs();
    fprintf(f, "library,keys,op,n,ns_per_op,bytes_per_entry,repeats\n");
    for (int k = 0; k < NKK; k++)
        for (int op = 0; op < OP_COUNT; op++)
            for (int si = 0; si < g_scales[k].nn; si++)
                for (int l = 0; l < NLIBS; l++) {
                    const cell *c = &g_cell[k][si][l][op];
                    if (!c->count || c->bad)
                        continue;
                    fprintf(f, "%s,%s,%s,%zu,%.2f,", L[l].name, kk_name[k], op_name[op],
                            g_scales[k].n[si], cell_median(c));
                    if (c->bpe >= 0)
                        fprintf(f, "%.1f", c->bpe);
                    fprintf(f, ",%d\n", c->count);
                }
    fclose(f);
    return 0;
}

static bool have_program(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *d = strtok(buf, ":"); d; d = strtok(NULL, ":")) {
        char f[4200];
        snprintf(f, sizeof f, "%s/%s", d, name);
        if (access(f, X_OK) == 0)
            return true;
    }
    return false;
}

static void plot_kind(int k, const char *png)
{
    const lib_entry *L = libs();
    int ops[OP_COUNT], nops = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        bool any = false;
        for (int si = 0; si < g_scales[k].nn; si++)
            for (int l = 0; l < NLIBS; l++)
                any |= g_cell[k][si][l][op].count > 0;
        if (any)
            ops[nops++] = op;
    }
    if (!nops)
        return;
    FILE *g = popen("gnuplot", "w");
    if (!g) {
        fprintf(stderr, "bench: cannot run gnuplot\n");
        return;
    }
    int cols = nops <= 4 ? 2 : 3, rows = (nops + cols - 1) / cols;
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d", localtime(&now));
    fprintf(g, "set terminal pngcairo size %d,%d font ',9'\n", 520 * cols, 400 * rows + 40);
    fprintf(g, "set output '%s'\n", png);
    fprintf(g, "set multiplot layout %d,%d title 'champ bench, %s keys: median ns per op vs N "
               "(log-log), %s, %s' noenhanced\n", rows, cols, kk_name[k], date, cpu_name());
    size_t nlo = g_scales[k].n[0], nhi = g_scales[k].n[g_scales[k].nn - 1];
    fprintf(g, "set logscale xy\nset grid\nset key top left font ',8'\n"
               "set format x '10^{%%L}'\nset xlabel 'N'\nset xrange [%g:%g]\n",
            (double)nlo / 1.6, (double)nhi * 1.6);
    static const char *const colors[NLIBS] = {"#d62728", "#ff7f0e", "#1f77b4", "#9467bd",
                                              "#2ca02c", "#8c564b", "#7f7f7f"};
    for (int i = 0; i < nops; i++) {
        int op = ops[i];
        fprintf(g, "set title '%s' noenhanced\nset ylabel '%s'\n", op_name[op], op_unit[op]);
        fprintf(g, "plot ");
        bool first = true;
        for (int l = 0; l < NLIBS; l++) {
            bool any = false;
            for (int si = 0; si < g_scales[k].nn; si++)
                any |= g_cell[k][si][l][op].count > 0;
            if (!any)
                continue;
            fprintf(g, "%s'-' using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '%s' "
                       "title '%s' noenhanced", first ? "" : ", ", colors[l], L[l].name);
            first = false;
        }
        fprintf(g, "\n");
        for (int l = 0; l < NLIBS; l++) {
            bool any = false;
            for (int si = 0; si < g_scales[k].nn; si++)
                any |= g_cell[k][si][l][op].count > 0;
            if (!any)
                continue;
            for (int si = 0; si < g_scales[k].nn; si++) {
                const cell *c = &g_cell[k][si][l][op];
                if (c->count && !c->bad)
                    fprintf(g, "%zu %g\n", g_scales[k].n[si], cell_median(c));
            }
            fprintf(g, "e\n");
        }
    }
    fprintf(g, "unset multiplot\n");
    int rc = pclose(g);
    if (rc != 0)
        fprintf(stderr, "bench: gnuplot failed for %s\n", png);
    else
        printf("wrote %s\n", png);
}

static void plot(const options *o)
{
    if (!o->png || !*o->png)
        return;
    if (!have_program("gnuplot")) {
        printf("\nno picture: gnuplot not found (Debian package gnuplot-nox)\n");
        return;
    }
    /* the main picture is for u64 keys; other key kinds get FILE-KIND.png */
    for (int k = 0; k < NKK; k++) {
        if (!(o->kinds & (1u << k)))
            continue;
        char path[4096];
        if (k == KK_U64) {
            snprintf(path, sizeof path, "%s", o->png);
        } else {
            const char *dot = strrchr(o->png, '.');
            int base = dot ? (int)(dot - o->png) : (int)strlen(o->png);
            snprintf(path, sizeof path, "%.*s-%s%s", base, o->png, kk_name[k], dot ? dot : "");
        }
        plot_kind(k, path);
    }
}

/* ---- targets (informational) ---- */

static void target_row(const char *what, size_t n, double ratio, double limit,
                       const char *unit)
{
    char ns[32] = "";
    if (n)
        fmt_n(ns, sizeof ns, n);
    if (isnan(ratio))
        printf("  %-40s %5s %12s %10s  n/a\n", what, ns, "-", "");
    else
        printf("  %-40s %5s %11.2f%s %7s%.2f  %s\n", what, ns, ratio, unit, "<= ", limit,
               ratio <= limit ? "PASS" : "MISS");
}

static bool read_callgrind(const char *path, const char *lib, const char *keys,
                           const char *op, double *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        char l[64], k[64], o[64];
        size_t n;
        double v;
        if (sscanf(line, "%63[^,],%63[^,],%63[^,],%zu,%lf", l, k, o, &n, &v) == 5 &&
            !strcmp(l, lib) && !strcmp(k, keys) && !strcmp(o, op)) {
            *out = v;
            found = true;
        }
    }
    fclose(f);
    return found;
}

static void print_targets(const options *o)
{
    const size_t at[2] = {10000, 1000000};
    bool any = false;
    for (int si = 0; si < MAXN; si++)
        for (int op = 0; op < OP_COUNT; op++)
            any |= g_cell[KK_U64][si][L_CHAMP][op].count > 0 ||
                   g_cell[KK_STR][si][L_CHAMP_GENERIC][op].count > 0;
    if (!any) {
        printf("\ntargets: not applicable (no champ u64 or champ_generic str results in "
               "this run)\n");
        return;
    }
    printf("\ntargets (issue 3; u64 keys, champ built-in kind; ratios of medians of this "
           "run; informational only)\n");
    printf("  %-40s %5s %12s %10s  %s\n", "target", "N", "measured", "limit", "");
    static const struct {
        int op;
        double lim[2];
    } vs_absl[] = {{OP_QUERY, {2.0, 2.0}}, {OP_MISS, {2.5, 2.5}}, {OP_INSERT, {1.0, 1.5}},
                   {OP_REMOVE, {2.0, 2.0}}, {OP_ITERATE, {2.0, 2.0}}};
    for (size_t i = 0; i < sizeof vs_absl / sizeof *vs_absl; i++)
        for (int a = 0; a < 2; a++) {
            char w[64];
            snprintf(w, sizeof w, "%s: champ / absl", op_name[vs_absl[i].op]);
            target_row(w, at[a], med(KK_U64, L_CHAMP, vs_absl[i].op, at[a]) /
                                     med(KK_U64, L_ABSL, vs_absl[i].op, at[a]),
                       vs_absl[i].lim[a], "x");
        }
    for (int a = 0; a < 2; a++)
        target_row("pinsert: champ pinsert / champ insert", at[a],
                   med(KK_U64, L_CHAMP, OP_PINSERT, at[a]) /
                       med(KK_U64, L_CHAMP, OP_INSERT, at[a]), 2.5, "x");
    for (int a = 0; a < 2; a++)
        target_row("copy_update: champ / champ query", at[a],
                   med(KK_U64, L_CHAMP, OP_COPY_UPDATE, at[a]) /
                       med(KK_U64, L_CHAMP, OP_QUERY, at[a]), 20, "x");
    {
        int si = scale_index(KK_U64, 1000000);
        double live = NAN, resv = NAN;
        if (si >= 0 && g_cell[KK_U64][si][L_CHAMP][OP_INSERT].count) {
            live = g_cell[KK_U64][si][L_CHAMP][OP_INSERT].bpe;
            resv = g_cell[KK_U64][si][L_CHAMP][OP_INSERT].reserved_bpe;
        }
        target_row("memory: champ live bytes/entry", 1000000, live, 21, "B");
        target_row("memory: champ reserved / live", 1000000, resv / live, 1.2, "x");
    }
    for (int a = 0; a < 2; a++)
        target_row("str query: champ_generic / absl", at[a],
                   med(KK_STR, L_CHAMP_GENERIC, OP_QUERY, at[a]) /
                       med(KK_STR, L_ABSL, OP_QUERY, at[a]), 2.5, "x");
    /* callgrind */
    static const struct {
        const char *op;
        double lim;
    } cg[] = {{"query", 2.5}, {"insert", 1.5}, {"remove", 2.5}};
    for (size_t i = 0; i < sizeof cg / sizeof *cg; i++) {
        double c, a;
        char w[64];
        snprintf(w, sizeof w, "instructions %s: champ / absl", cg[i].op);
        bool ok = o->callgrind_csv && read_callgrind(o->callgrind_csv, "champ", "u64", cg[i].op, &c) &&
                  read_callgrind(o->callgrind_csv, "absl", "u64", cg[i].op, &a);
        target_row(w, 10000, ok ? c / a : NAN, cg[i].lim, "x");
    }
    if (o->callgrind_csv && access(o->callgrind_csv, R_OK) != 0)
        printf("  (instruction targets: run `make bench-callgrind` to produce %s)\n",
               o->callgrind_csv);
    /* cliffs: champ's step between neighbouring N vs absl's step */
    static const int cliff_ops[] = {OP_INSERT, OP_QUERY, OP_MISS, OP_REMOVE, OP_ITERATE};
    double worst = NAN;
    char where[128] = "";
    for (size_t i = 0; i < sizeof cliff_ops / sizeof *cliff_ops; i++) {
        int op = cliff_ops[i];
        for (int si = 1; si < g_scales[KK_U64].nn; si++) {
            size_t n0 = g_scales[KK_U64].n[si - 1], n1 = g_scales[KK_U64].n[si];
            double cs = med(KK_U64, L_CHAMP, op, n1) / med(KK_U64, L_CHAMP, op, n0);
            double as = med(KK_U64, L_ABSL, op, n1) / med(KK_U64, L_ABSL, op, n0);
            double r = cs / as;
            if (isnan(r))
                continue;
            if (isnan(worst) || r > worst) {
                char a[16], b[16];
                fmt_n(a, sizeof a, n0);
                fmt_n(b, sizeof b, n1);
                worst = r;
                snprintf(where, sizeof where, "%s %s->%s", op_name[op], a, b);
            }
        }
    }
    char w[128];
    snprintf(w, sizeof w, "no cliff: worst champ step / absl step");
    target_row(w, 0, worst, 1.5, "x");
    if (where[0])
        printf("  %-40s (at %s)\n", "", where);
}

/* ---- telemetry: champ's pool, by the CHAMP_STATS build ---- */

static void run_telemetry(const options *o)
{
    if (!o->telemetry || !*o->telemetry || !(o->libs & (1u << L_CHAMP)) || !libs()[L_CHAMP].ad)
        return;
    if (access(o->telemetry, X_OK) != 0) {
        printf("\nno pool telemetry: %s not built\n", o->telemetry);
        return;
    }
    char nlist[512] = "";
    for (int i = 0; i < g_scales[KK_U64].nn; i++) {
        size_t len = strlen(nlist);
        snprintf(nlist + len, sizeof nlist - len, "%s%zu", i ? "," : "", g_scales[KK_U64].n[i]);
    }
    if (!nlist[0])
        for (int i = 0; i < o->nn; i++) {
            size_t len = strlen(nlist);
            snprintf(nlist + len, sizeof nlist - len, "%s%zu", i ? "," : "", o->n[i]);
        }
    fprintf(stderr, "bench: pool telemetry (%s)\n", o->telemetry);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl(o->telemetry, o->telemetry, "--n", nlist, (char *)NULL);
        fprintf(stderr, "bench: cannot run %s: %s\n", o->telemetry, strerror(errno));
        _exit(127);
    }
    int st;
    if (pid > 0)
        waitpid(pid, &st, 0);
    if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        add_problem("pool telemetry (%s) failed%s", o->telemetry,
                    pid > 0 && WIFSIGNALED(st) ? ": crashed" : "");
    }
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    options o = {0};
    o.libs = (1u << NLIBS) - 1;
    o.kinds = (1u << NKK) - 1;
    o.ops = (1u << OP_COUNT) - 1;
    o.rounds = -1;
    o.rounds_big = -1;
    o.budget = true;
    o.csv = "bench/results/latest.csv";
    o.png = NULL;
    o.timeout = 1200;
    bool png_given = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV()                                                                \
    do {                                                                       \
        if (!v)                                                                \
            die("%s needs a value", a);                                        \
        i++;                                                                   \
    } while (0)
        if (!strcmp(a, "--quick")) {
            o.quick = true;
        } else if (!strcmp(a, "--n")) {
            NEEDV();
            const char *s = v;
            while (*s) {
                if (o.nn == MAXN)
                    die("too many N");
                const char *e;
                o.n[o.nn++] = parse_size(s, &e);
                if (*e && *e != ',')
                    die("bad --n list '%s'", v);
                s = *e ? e + 1 : e;
            }
            o.n_given = true;
        } else if (!strcmp(a, "--libs")) {
            NEEDV();
            o.libs = parse_list(v, lib_names(), NLIBS, "library");
        } else if (!strcmp(a, "--keys")) {
            NEEDV();
            o.kinds = parse_list(v, kk_name, NKK, "key kind");
        } else if (!strcmp(a, "--ops")) {
            NEEDV();
            o.ops = parse_list(v, op_name, OP_COUNT, "op");
        } else if (!strcmp(a, "--rounds")) {
            NEEDV();
            o.rounds = atoi(v);
            if (o.rounds < 1 || o.rounds > MAXROUNDS)
                die("--rounds must be 1..%d", MAXROUNDS);
        } else if (!strcmp(a, "--csv")) {
            NEEDV();
            o.csv = v;
        } else if (!strcmp(a, "--png")) {
            NEEDV();
            o.png = v;
            png_given = true;
        } else if (!strcmp(a, "--telemetry")) {
            NEEDV();
            o.telemetry = v;
        } else if (!strcmp(a, "--callgrind-csv")) {
            NEEDV();
            o.callgrind_csv = v;
        } else if (!strcmp(a, "--no-budget")) {
            o.budget = false;
        } else if (!strcmp(a, "--timeout")) {
            NEEDV();
            o.timeout = atof(v);
        } else if (!strcmp(a, "--profile")) {
            NEEDV();
            return run_one(v, true);
        } else if (!strcmp(a, "--callgrind")) {
            NEEDV();
            return run_one(v, false);
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else {
            usage();
            die("unknown argument '%s'", a);
        }
    }
    if (!o.n_given) {
        static const size_t def[] = {1000, 10000, 50000, 100000, 1000000, 10000000};
        o.nn = o.quick ? 5 : 6;
        memcpy(o.n, def, sizeof def);
    }
    if (o.rounds < 0)
        o.rounds = o.quick ? 3 : 5;
    o.rounds_big = o.rounds < 3 ? o.rounds : 3;
    if (!o.budget)
        o.rounds_big = o.rounds;
    o.min_ops = o.quick ? 20000 : 100000;
    if (!png_given && !*o.csv) {
        o.png = "";
    } else if (!png_given) {
        /* the picture goes beside the CSV */
        static char png[4096];
        const char *dot = strrchr(o.csv, '.');
        int base = dot && !strchr(dot, '/') ? (int)(dot - o.csv) : (int)strlen(o.csv);
        snprintf(png, sizeof png, "%.*s.png", base, o.csv);
        o.png = png;
    }

    /* shared page: which op a job is in, for crash reports */
    g_shared = mmap(NULL, sizeof *g_shared, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_shared == MAP_FAILED)
        die("mmap: %s", strerror(errno));

    const lib_entry *L = libs();
    for (int l = 0; l < NLIBS; l++)
        if ((o.libs & (1u << l)) && !L[l].ad)
            printf("%s: skipped, not built (needs %s)\n", L[l].name, L[l].missing);

    /* scales per key kind; words are capped at the list's length */
    for (int k = 0; k < NKK; k++) {
        if (!(o.kinds & (1u << k)))
            continue;
        size_t cap = SIZE_MAX;
        if (k == KK_WORDS) {
            keyset_make(KK_WORDS, 1);
            cap = g_ks[KK_WORDS].nmax;
            if (!cap) {
                printf("words: skipped, %s not found (Debian package wamerican-huge)\n",
                       WORDS_FILE);
                o.kinds &= ~(1u << k);
                continue;
            }
        }
        scale_set *ss = &g_scales[k];
        for (int i = 0; i < o.nn; i++) {
            size_t n = o.n[i] < cap ? o.n[i] : cap;
            bool dup = false;
            for (int j = 0; j < ss->nn; j++)
                dup |= ss->n[j] == n;
            if (!dup)
                ss->n[ss->nn++] = n;
        }
        /* ascending */
        for (int i = 1; i < ss->nn; i++)
            for (int j = i; j > 0 && ss->n[j - 1] > ss->n[j]; j--) {
                size_t t = ss->n[j];
                ss->n[j] = ss->n[j - 1];
                ss->n[j - 1] = t;
            }
    }

    plan(&o);
    if (!g_njobs)
        die("nothing to run (check --libs, --keys, --ops)");

    /* say what runs */
    {
        time_t now = time(NULL);
        char date[64];
        strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&now));
        printf("champ bench, %s, %s\n", date, cpu_name());
    }
    printf("%d rounds%s, fresh process per (round, keys, N, library) job, "
           "median and min over rounds\n", o.rounds, o.quick ? " (--quick)" : "");
    bool big = false;
    for (int k = 0; k < NKK; k++)
        for (int i = 0; i < g_scales[k].nn; i++)
            big |= g_scales[k].n[i] >= BIG_N;
    if (o.budget && (big || o.quick || (o.ops & (1u << OP_PINSERT_KEEP)))) {
        printf("budget (--no-budget lifts it):");
        if (big)
            printf(" at N >= %uM u64 keys only, no pinsert_keep or premove, %d rounds;",
                   BIG_N / 1000000,
                   o.rounds_big);
        if (o.quick)
            printf(" --quick: str and words keys, and premove, up to N = %uK;",
                   QUICK_STR_MAX / 1000);
        if (o.ops & (1u << OP_PINSERT_KEEP))
            printf(" pinsert_keep up to N = %zuK (every version stays alive);",
                   keep_max(&o) / 1000);
        printf("\n");
    }
    if (o.ops & (1u << OP_COPY_UPDATE))
        printf("copy_update: min(N, %u) copies per map\n", CU_MAX);
    fflush(stdout);

    /* make every key set up front (generation is not part of any job) */
    for (int k = 0; k < NKK; k++)
        if (o.kinds & (1u << k) && g_scales[k].nn) {
            keyset_make(k, g_scales[k].n[g_scales[k].nn - 1]);
            for (int i = 0; i < g_scales[k].nn; i++)
                keyset_query(&g_ks[k], g_scales[k].n[i]);
        }

    run_all(&o);
    print_tables(&o);
    run_telemetry(&o);
    fflush(stdout);

    if (o.csv && *o.csv) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", o.csv);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = 0;
            mkdir(dir, 0777);
        }
        if (write_csv(o.csv) == 0)
            printf("\nwrote %s\n", o.csv);
    }
    plot(&o);
    print_targets(&o);

    if (g_nprob) {
        printf("\nPROBLEMS (results that failed their checks are left out of the tables "
               "and the CSV):\n");
        for (int i = 0; i < g_nprob; i++)
            printf("  %s\n", g_prob[i].text);
        printf("reproduce one job: bench/build/bench --libs LIB --keys KEYS --n N --rounds 1\n");
        return 1;
    }
    return 0;
}

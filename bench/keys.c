/*
 * keys.c - the key sets, generated once by the parent process (fixed seeds)
 * before any job runs, and shared by every library:
 *   u64    distinct random 64-bit keys (key_of_index, a bijection), absent
 *          keys from a disjoint index range;
 *   str    random strings of 8 to 32 bytes, deduplicated, absent keys are
 *          more such strings;
 *   words  the system word list, shuffled, absent keys are words with a
 *          suffix.
 * Queries use a shuffled order of the first N keys, and for strings copies
 * of the bytes elsewhere (a lookup never finds its key by pointer).
 */
#include "bench.h"
#include "keys.h"

#include <stdlib.h>
#include <string.h>

const char *const kk_name[NKK] = {"u64", "str", "words"};
keyset g_ks[NKK];

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

void keyset_make(int kind, size_t nmax)
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
const void *keyset_query(keyset *ks, size_t n)
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

const void *keyset_insert(const keyset *ks)
{
    return ks->kind == KK_U64 ? (const void *)ks->u : (const void *)ks->s;
}

const void *keyset_miss(const keyset *ks)
{
    return ks->kind == KK_U64 ? (const void *)ks->um : (const void *)ks->sm;
}

/*
 * adapt_champ_generic.c - champ through its generic interface
 * (CHAMP_KEY_GENERIC): keys are opaque pointers compared through user
 * hash/equal callbacks, the way libhamt and GLib are used.
 *
 *   u64 keys:    the u64 itself cast to a pointer; hash = a 64-bit mixer,
 *                equal = pointer identity.
 *   string keys: the driver's NUL-terminated string (not copied, the map
 *                stores the pointer); hash = XXH3-64 over the bytes
 *                (strlen first: a key is just a pointer), equal = strcmp.
 */
#include "adapter.h"

#include <champ.h>
#include <stdlib.h>
#include <string.h>

#ifdef HAVE_XXHASH
#define XXH_INLINE_ALL
#include <xxhash.h>
static uint64_t hash_bytes(const char *p, size_t len)
{
    return XXH3_64bits(p, len);
}
#else
/* Without libxxhash-dev: FNV-1a 64 followed by a final mix. */
static uint64_t hash_bytes(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    return h ^ (h >> 32);
}
#endif

static uint64_t u64_hash(const void *key, void *ctx)
{
    uint64_t x = (uint64_t)(uintptr_t)key;
    (void)ctx;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static bool u64_equal(const void *a, const void *b, void *ctx)
{
    (void)ctx;
    return a == b;
}

static uint64_t str_hash(const void *key, void *ctx)
{
    (void)ctx;
    return hash_bytes(key, strlen(key));
}

static bool str_equal(const void *a, const void *b, void *ctx)
{
    (void)ctx;
    return strcmp(a, b) == 0;
}

typedef struct gstate {
    champ_map *m;
    champ_map *first;
} gstate;

static void *g_create(int kind)
{
    gstate *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    cfg.hash = kind == BK_U64 ? u64_hash : str_hash;
    cfg.equal = kind == BK_U64 ? u64_equal : str_equal;
    if (champ_new(&cfg, &s->m) != CHAMP_OK) {
        free(s);
        return NULL;
    }
    return s;
}

static void g_destroy(void *st)
{
    gstate *s = st;
    if (s->first != s->m)
        champ_free(s->first);
    champ_free(s->m);
    free(s);
}

static void g_memory(void *st, size_t *live, size_t *reserved)
{
    gstate *s = st;
    champ_pool_stats ps;
    *live = *reserved = 0;
    if (champ_pool_stats_get(champ_pool_of(s->m), &ps, sizeof ps) == CHAMP_OK) {
        *live = ps.bytes_live;
        *reserved = ps.bytes_reserved;
    }
}

static size_t g_size(void *st)
{
    return champ_size(((gstate *)st)->m);
}

static void g_drop_versions(void *st, void **v, size_t n)
{
    gstate *s = st;
    for (size_t i = 0; i < n; i++)
        if (v[i] && v[i] != s->m)
            champ_free(v[i]);
    if (s->first != s->m)
        champ_free(s->first);
    s->first = NULL;
}

#define VAL(i) ((void *)(uintptr_t)((i) + 1))

/* The key of element i as the map sees it, for each key kind.  Both forms
 * are plain loads: no call, no branch on the kind inside the loops. */
#define UKEY(i) ((void *)(uintptr_t)((const uint64_t *)keys)[i])
#define SKEY(i) ((void *)((const bench_str *)keys)[i].p)

#define DEFINE_OPS(P, KEY)                                                     \
    static uint64_t P##_insert(void *st, const void *keys, size_t n, void **x) \
    {                                                                          \
        champ_map *m = ((gstate *)st)->m;                                      \
        uint64_t c = 0;                                                        \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++)                                         \
            c += champ_set(m, KEY(i), VAL(i), NULL) == CHAMP_OK;               \
        return c;                                                              \
    }                                                                          \
    static uint64_t P##_query(void *st, const void *keys, size_t n, void **x)  \
    {                                                                          \
        const champ_map *m = ((gstate *)st)->m;                                \
        uint64_t sum = 0;                                                      \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++) {                                       \
            void *v;                                                           \
            if (champ_get(m, KEY(i), &v))                          \
                sum += (uintptr_t)v;                                           \
        }                                                                      \
        return sum;                                                            \
    }                                                                          \
    static uint64_t P##_remove(void *st, const void *keys, size_t n, void **x) \
    {                                                                          \
        champ_map *m = ((gstate *)st)->m;                                      \
        uint64_t c = 0;                                                        \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++)                                         \
            c += champ_remove(m, KEY(i), NULL) == CHAMP_OK;              \
        return c;                                                              \
    }                                                                          \
    static uint64_t P##_pinsert(void *st, const void *keys, size_t n, void **x) \
    {                                                                          \
        gstate *s = st;                                                        \
        champ_map *m = s->m, *m2;                                              \
        uint64_t c = 0;                                                        \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++) {                                       \
            if (champ_pset(m, KEY(i), VAL(i), &m2) != CHAMP_OK)                \
                continue;                                                      \
            c++;                                                               \
            champ_free(m);                                                     \
            m = m2;                                                            \
        }                                                                      \
        s->m = m;                                                              \
        return c;                                                              \
    }                                                                          \
    static uint64_t P##_pinsert_keep(void *st, const void *keys, size_t n,     \
                                     void **keep)                              \
    {                                                                          \
        gstate *s = st;                                                        \
        champ_map *m = s->m, *m2;                                              \
        uint64_t c = 0;                                                        \
        s->first = m;                                                          \
        for (size_t i = 0; i < n; i++) {                                       \
            if (champ_pset(m, KEY(i), VAL(i), &m2) != CHAMP_OK) {              \
                while (i < n)                                                  \
                    keep[i++] = NULL;                                          \
                break;                                                         \
            }                                                                  \
            c++;                                                               \
            keep[i] = m = m2;                                                  \
        }                                                                      \
        s->m = m;                                                              \
        return c;                                                              \
    }                                                                          \
    static uint64_t P##_premove(void *st, const void *keys, size_t n, void **x) \
    {                                                                          \
        gstate *s = st;                                                        \
        champ_map *m = s->m, *m2;                                              \
        uint64_t c = 0;                                                        \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++) {                                       \
            champ_status r = champ_premove(m, KEY(i), &m2);                    \
            if (r < 0)                                                         \
                continue;                                                      \
            c += champ_size(m2) < champ_size(m);                               \
            champ_free(m);                                                     \
            m = m2;                                                            \
        }                                                                      \
        s->m = m;                                                              \
        return c;                                                              \
    }                                                                          \
    static uint64_t P##_copy_update(void *st, const void *keys, size_t n,      \
                                    void **x)                                  \
    {                                                                          \
        const champ_map *m = ((gstate *)st)->m;                                \
        uint64_t c = 0;                                                        \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++) {                                       \
            champ_prior pr;                                                    \
            champ_map *cp;                                                     \
            if (champ_copy(m, &cp) != CHAMP_OK)                                \
                continue;                                                      \
            c += champ_set(cp, KEY(i), VAL(n + i), &pr) == CHAMP_OK && pr.found;    \
            champ_free(cp);                                                    \
        }                                                                      \
        return c;                                                              \
    }

DEFINE_OPS(u, UKEY)
DEFINE_OPS(s, SKEY)

static uint64_t g_iterate(void *st, const void *keys, size_t n, void **x)
{
    /* champ's fast walk: values a node's run at a time (champ.h,
     * champ_iter_next_n), the caller's loop over the batch */
    const champ_map *m = ((gstate *)st)->m;
    champ_iter it;
    void *v[64];
    size_t got;
    uint64_t sum = 0;
    (void)keys, (void)n, (void)x;
    champ_iter_init(&it, m);
    while ((got = champ_iter_next_n(&it, NULL, v, 64)) != 0)
        for (size_t i = 0; i < got; i++)
            sum += (uintptr_t)v[i];
    return sum;
}

/* ---- collide: keys that all hash alike, kept in order by compare ---- */

static uint64_t same_hash(const void *key, void *ctx)
{
    (void)key, (void)ctx;
    return 0x9e3779b97f4a7c15ull;
}

static int u64_compare(const void *a, const void *b, void *ctx)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    (void)ctx;
    return (x > y) - (x < y);
}

static int str_compare(const void *a, const void *b, void *ctx)
{
    (void)ctx;
    return strcmp(a, b);
}

/* Element i of the stride order: every index of 0..n once (1000003 is a
 * prime above any N the op runs at). */
#define STRIDE(i, n) ((size_t)(((uint64_t)(i) * 1000003u) % (n)))

#define DEFINE_COLLIDE(P, KEY, EQUAL, COMPARE)                                 \
    static uint64_t P##_collide(void *st, const void *keys, size_t n, void **x) \
    {                                                                          \
        champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);               \
        champ_map *m;                                                          \
        uint64_t c = 0;                                                        \
        (void)st, (void)x;                                                     \
        cfg.hash = same_hash;                                                  \
        cfg.equal = EQUAL;                                                     \
        cfg.compare = COMPARE;                                                 \
        if (champ_new(&cfg, &m) != CHAMP_OK)                                   \
            return 0;                                                          \
        for (size_t i = 0; i < n; i++)                                         \
            c += champ_set(m, KEY(i), VAL(i), NULL) == CHAMP_OK;               \
        for (size_t i = 0; i < n; i++) {                                       \
            size_t j = STRIDE(i, n);                                           \
            void *v;                                                           \
            c += champ_get(m, KEY(j), &v) && v == VAL(j);                      \
        }                                                                      \
        for (size_t i = 0; i < n; i++) {                                       \
            size_t j = STRIDE(i, n);                                           \
            champ_prior pr;                                                    \
            c += champ_remove(m, KEY(j), &pr) == CHAMP_OK && pr.found;         \
        }                                                                      \
        champ_free(m);                                                         \
        return c / 3; /* n when every key went through all three */            \
    }

DEFINE_COLLIDE(u, UKEY, u64_equal, u64_compare)
DEFINE_COLLIDE(s, SKEY, str_equal, str_compare)

const bench_adapter bench_adapter_champ_generic = {
    .name = "champ_generic",
    .create = g_create,
    .destroy = g_destroy,
    .memory = g_memory,
    .size = g_size,
    .drop_versions = g_drop_versions,
    .op = {
        [BK_U64] = {
            [OP_INSERT] = u_insert, [OP_QUERY] = u_query, [OP_MISS] = u_query,
            [OP_REMOVE] = u_remove, [OP_ITERATE] = g_iterate,
            [OP_PINSERT] = u_pinsert, [OP_PINSERT_KEEP] = u_pinsert_keep,
            [OP_PREMOVE] = u_premove, [OP_COPY_UPDATE] = u_copy_update,
            [OP_COLLIDE] = u_collide,
        },
        [BK_STR] = {
            [OP_INSERT] = s_insert, [OP_QUERY] = s_query, [OP_MISS] = s_query,
            [OP_REMOVE] = s_remove, [OP_ITERATE] = g_iterate,
            [OP_PINSERT] = s_pinsert, [OP_PINSERT_KEEP] = s_pinsert_keep,
            [OP_PREMOVE] = s_premove, [OP_COPY_UPDATE] = s_copy_update,
            [OP_COLLIDE] = s_collide,
        },
    },
};

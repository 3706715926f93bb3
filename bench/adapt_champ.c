/*
 * adapt_champ.c - champ with its built-in key kinds: CHAMP_KEY_U64 for u64
 * keys (stored inline, hashed by the library) and CHAMP_KEY_BYTES for strings
 * (the map keeps its own copy of each key).
 */
#include "adapter.h"

#include <champ.h>
#include <stdlib.h>

typedef struct cstate {
    champ_map *m;
    champ_map *first; /* pinsert_keep: the empty map the chain started from */
    int kind;
} cstate;

static void *cc_create(int kind)
{
    cstate *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    champ_config cfg = CHAMP_CONFIG_INIT(kind == BK_U64 ? CHAMP_KEY_U64 : CHAMP_KEY_BYTES);
    cfg.seed = 0x243f6a8885a308d3ull;
    cfg.fixed_seed = true;
    if (champ_new(&cfg, &s->m) != CHAMP_OK) {
        free(s);
        return NULL;
    }
    s->kind = kind;
    return s;
}

static void cc_destroy(void *st)
{
    cstate *s = st;
    if (s->first != s->m)
        champ_free(s->first);
    champ_free(s->m);
    free(s);
}

static void cc_memory(void *st, size_t *live, size_t *reserved)
{
    cstate *s = st;
    champ_pool_stats ps;
    *live = *reserved = 0;
    if (champ_pool_stats_get(champ_pool_of(s->m), &ps, sizeof ps) == CHAMP_OK) {
        *live = ps.bytes_live;
        *reserved = ps.bytes_reserved;
    }
}

static size_t cc_size(void *st)
{
    return champ_size(((cstate *)st)->m);
}

static void cc_drop_versions(void *st, void **v, size_t n)
{
    cstate *s = st;
    for (size_t i = 0; i < n; i++)
        if (v[i] && v[i] != s->m)
            champ_free(v[i]);
    if (s->first != s->m)
        champ_free(s->first);
    s->first = NULL;
}

#define VAL(i) ((void *)(uintptr_t)((i) + 1))

/* ---- u64 ---- */

static uint64_t u_insert(void *st, const void *keys, size_t n, void **x)
{
    champ_map *m = ((cstate *)st)->m;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++)
        c += champ_set_u64(m, k[i], VAL(i), NULL) == CHAMP_OK;
    return c;
}

static uint64_t u_query(void *st, const void *keys, size_t n, void **x)
{
    const champ_map *m = ((cstate *)st)->m;
    const uint64_t *k = keys;
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        void *v;
        if (champ_get_u64(m, k[i], &v))
            sum += (uintptr_t)v;
    }
    return sum;
}

static uint64_t u_remove(void *st, const void *keys, size_t n, void **x)
{
    champ_map *m = ((cstate *)st)->m;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++)
        c += champ_remove_u64(m, k[i], NULL) == CHAMP_OK;
    return c;
}

static uint64_t any_iterate(void *st, const void *keys, size_t n, void **x)
{
    /* champ's fast walk: values a node's run at a time (champ.h,
     * champ_iter_next_n), the caller's loop over the batch */
    const champ_map *m = ((cstate *)st)->m;
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

static uint64_t u_pinsert(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    const uint64_t *k = keys;
    champ_map *m = s->m, *m2;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        if (champ_pset_u64(m, k[i], VAL(i), &m2) != CHAMP_OK)
            continue;
        c++;
        champ_free(m);
        m = m2;
    }
    s->m = m;
    return c;
}

static uint64_t u_pinsert_keep(void *st, const void *keys, size_t n, void **keep)
{
    cstate *s = st;
    const uint64_t *k = keys;
    champ_map *m = s->m, *m2;
    uint64_t c = 0;
    s->first = m;
    for (size_t i = 0; i < n; i++) {
        if (champ_pset_u64(m, k[i], VAL(i), &m2) != CHAMP_OK) {
            while (i < n)
                keep[i++] = NULL;
            break;
        }
        c++;
        keep[i] = m = m2;
    }
    s->m = m;
    return c;
}

static uint64_t u_premove(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    const uint64_t *k = keys;
    champ_map *m = s->m, *m2;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        champ_status r = champ_premove_u64(m, k[i], &m2);
        if (r < 0)
            continue;
        c += champ_size(m2) < champ_size(m);
        champ_free(m);
        m = m2;
    }
    s->m = m;
    return c;
}

static uint64_t u_copy_update(void *st, const void *keys, size_t n, void **x)
{
    const champ_map *m = ((cstate *)st)->m;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        champ_prior pr;
        champ_map *cp;
        if (champ_copy(m, &cp) != CHAMP_OK)
            continue;
        c += champ_set_u64(cp, k[i], VAL(n + i), &pr) == CHAMP_OK && pr.found;
        champ_free(cp);
    }
    return c;
}

/* ---- strings (CHAMP_KEY_BYTES) ---- */

static uint64_t s_insert(void *st, const void *keys, size_t n, void **x)
{
    champ_map *m = ((cstate *)st)->m;
    const bench_str *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++)
        c += champ_set_bytes(m, k[i].p, k[i].len, VAL(i), NULL) == CHAMP_OK;
    return c;
}

static uint64_t s_query(void *st, const void *keys, size_t n, void **x)
{
    const champ_map *m = ((cstate *)st)->m;
    const bench_str *k = keys;
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        void *v;
        if (champ_get_bytes(m, k[i].p, k[i].len, &v))
            sum += (uintptr_t)v;
    }
    return sum;
}

static uint64_t s_remove(void *st, const void *keys, size_t n, void **x)
{
    champ_map *m = ((cstate *)st)->m;
    const bench_str *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++)
        c += champ_remove_bytes(m, k[i].p, k[i].len, NULL) == CHAMP_OK;
    return c;
}

static uint64_t s_pinsert(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    const bench_str *k = keys;
    champ_map *m = s->m, *m2;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        if (champ_pset_bytes(m, k[i].p, k[i].len, VAL(i), &m2) != CHAMP_OK)
            continue;
        c++;
        champ_free(m);
        m = m2;
    }
    s->m = m;
    return c;
}

static uint64_t s_pinsert_keep(void *st, const void *keys, size_t n, void **keep)
{
    cstate *s = st;
    const bench_str *k = keys;
    champ_map *m = s->m, *m2;
    uint64_t c = 0;
    s->first = m;
    for (size_t i = 0; i < n; i++) {
        if (champ_pset_bytes(m, k[i].p, k[i].len, VAL(i), &m2) != CHAMP_OK) {
            while (i < n)
                keep[i++] = NULL;
            break;
        }
        c++;
        keep[i] = m = m2;
    }
    s->m = m;
    return c;
}

static uint64_t s_premove(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    const bench_str *k = keys;
    champ_map *m = s->m, *m2;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        champ_status r = champ_premove_bytes(m, k[i].p, k[i].len, &m2);
        if (r < 0)
            continue;
        c += champ_size(m2) < champ_size(m);
        champ_free(m);
        m = m2;
    }
    s->m = m;
    return c;
}

static uint64_t s_copy_update(void *st, const void *keys, size_t n, void **x)
{
    const champ_map *m = ((cstate *)st)->m;
    const bench_str *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        champ_prior pr;
        champ_map *cp;
        if (champ_copy(m, &cp) != CHAMP_OK)
            continue;
        c += champ_set_bytes(cp, k[i].p, k[i].len, VAL(n + i), &pr) == CHAMP_OK && pr.found;
        champ_free(cp);
    }
    return c;
}

/* ---- collide: byte keys that all hash alike (champ_config.bytes_hash) ---- */

static uint64_t same_hash(const void *p, size_t len, uint64_t seed, void *ctx)
{
    (void)p, (void)len, (void)seed, (void)ctx;
    return 0x9e3779b97f4a7c15ull;
}

/* Element i of the stride order: every index of 0..n once (1000003 is a
 * prime above any N the op runs at). */
#define STRIDE(i, n) ((size_t)(((uint64_t)(i) * 1000003u) % (n)))

static uint64_t s_collide(void *st, const void *keys, size_t n, void **x)
{
    const bench_str *k = keys;
    champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_BYTES);
    champ_map *m;
    uint64_t c = 0;
    (void)st, (void)x;
    cfg.bytes_hash = same_hash;
    cfg.seed = 0x243f6a8885a308d3ull;
    cfg.fixed_seed = true;
    if (champ_new(&cfg, &m) != CHAMP_OK)
        return 0;
    for (size_t i = 0; i < n; i++)
        c += champ_set_bytes(m, k[i].p, k[i].len, VAL(i), NULL) == CHAMP_OK;
    for (size_t i = 0; i < n; i++) {
        size_t j = STRIDE(i, n);
        void *v;
        c += champ_get_bytes(m, k[j].p, k[j].len, &v) && v == VAL(j);
    }
    for (size_t i = 0; i < n; i++) {
        size_t j = STRIDE(i, n);
        champ_prior pr;
        c += champ_remove_bytes(m, k[j].p, k[j].len, &pr) == CHAMP_OK && pr.found;
    }
    champ_free(m);
    return c / 3; /* n when every key went through all three */
}

const bench_adapter bench_adapter_champ = {
    .name = "champ",
    .create = cc_create,
    .destroy = cc_destroy,
    .memory = cc_memory,
    .size = cc_size,
    .drop_versions = cc_drop_versions,
    .op = {
        [BK_U64] = {
            [OP_INSERT] = u_insert, [OP_QUERY] = u_query, [OP_MISS] = u_query,
            [OP_REMOVE] = u_remove, [OP_ITERATE] = any_iterate,
            [OP_PINSERT] = u_pinsert, [OP_PINSERT_KEEP] = u_pinsert_keep,
            [OP_PREMOVE] = u_premove, [OP_COPY_UPDATE] = u_copy_update,
        },
        [BK_STR] = {
            [OP_INSERT] = s_insert, [OP_QUERY] = s_query, [OP_MISS] = s_query,
            [OP_REMOVE] = s_remove, [OP_ITERATE] = any_iterate,
            [OP_PINSERT] = s_pinsert, [OP_PINSERT_KEEP] = s_pinsert_keep,
            [OP_PREMOVE] = s_premove, [OP_COPY_UPDATE] = s_copy_update,
            [OP_COLLIDE] = s_collide,
        },
    },
};

/*
 * adapt_champ.c - champ with its built-in key kinds: CHAMP_KEY_U64 for u64
 * keys (stored inline, hashed by the library) and CHAMP_KEY_BYTES for strings
 * (the map keeps its own copy of each key).  Two libraries of the bench:
 *   champ     each state's maps in a private plain pool (champ_new);
 *   champ_mt  the same code with u64 keys, the maps in a concurrent pool
 *             (champ_pool_config.concurrent), and the ops that need one:
 *             threads_1 and threads_2 (a cell shared by threads).
 * small_maps makes its maps with champ_new_u64 (the default constructor:
 * the process-wide concurrent pool) for champ, and with champ_new_like
 * (the state's concurrent pool) for champ_mt.
 *
 * Every map of a state has one type (the fixed seed below, one pool): the
 * second map of the whole-map ops is a p-form of the map ("shared") or made
 * with champ_new_like ("fresh"), so champ_equal, champ_union, ... take
 * their structural paths (side by side, skipping shared subtrees), never
 * the key-by-key path of maps that hash differently or live in different
 * pools.
 */
#include "adapter.h"

#include <champ.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define SEED 0x243f6a8885a308d3ull

typedef struct cstate {
    champ_map *m;
    champ_map *first; /* pinsert_keep: the empty map the chain started from */
    int kind;
    /* the whole-map ops' second maps (made by prepare, outside the timing) */
    champ_map *shared; /* m with one value changed (a p-form); finish drops it */
    champ_map *fresh;  /* the same N keys and values, inserted into a map of
                          m's type; kept while m holds the N keys (ops that
                          start from the insert state never change m) */
    champ_key chg;     /* the key whose value differs in shared */
    void *chg_old, *chg_new;
    size_t n;          /* N */
    champ_op *ops;     /* build: the input array */
    bool mt;           /* champ_mt: a concurrent pool */
    /* threads_*: the cell the threads share (prepare publishes m in it),
     * the keys (insert order: keys[i] holds i + 1 in the low 32 bits),
     * the pool's live bytes before the cell was made, publications */
    champ_cell *cell;
    const uint64_t *tkeys;
    size_t live0;
    uint64_t cas_tried, cas_won;
    /* small_maps: the maps (in the driver's slots), how many, and the pool
     * they live in with its bytes before (memory reports the growth) */
    void **small;
    size_t nsmall;
    champ_pool *mem_pool;
    size_t mem_live0, mem_resv0;
} cstate;

static void *cc_create(int kind)
{
    cstate *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    champ_config cfg = CHAMP_CONFIG_INIT(kind == BK_U64 ? CHAMP_KEY_U64 : CHAMP_KEY_BYTES);
    cfg.seed = SEED;
    cfg.fixed_seed = true;
    if (champ_new(&cfg, &s->m) != CHAMP_OK) {
        free(s);
        return NULL;
    }
    s->kind = kind;
    return s;
}

/* champ_mt: the same, in a concurrent pool of its own (u64 keys) */
static void *mt_create(int kind)
{
    cstate *s = calloc(1, sizeof *s);
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    champ_pool *p;
    if (!s || kind != BK_U64)
        goto fail;
    pc.concurrent = true;
    if (champ_pool_new(&pc, &p) != CHAMP_OK)
        goto fail;
    champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    cfg.seed = SEED;
    cfg.fixed_seed = true;
    cfg.pool = p;
    champ_status r = champ_new(&cfg, &s->m);
    champ_pool_free(p); /* the map keeps its pool */
    if (r != CHAMP_OK)
        goto fail;
    s->kind = kind;
    s->mt = true;
    return s;
fail:
    free(s);
    return NULL;
}

static void small_free_all(cstate *s);

static void cc_destroy(void *st)
{
    cstate *s = st;
    small_free_all(s);
    champ_cell_free(s->cell);
    if (s->first != s->m)
        champ_free(s->first);
    champ_free(s->shared);
    champ_free(s->fresh);
    champ_free(s->m);
    free(s->ops);
    free(s);
}

static void cc_memory(void *st, size_t *live, size_t *reserved)
{
    cstate *s = st;
    champ_pool_stats ps;
    *live = *reserved = 0;
    if (s->mem_pool) {
        /* small_maps: what the pool holding them grew by */
        if (champ_pool_stats_get(s->mem_pool, &ps, sizeof ps) == CHAMP_OK) {
            *live = ps.bytes_live - s->mem_live0;
            *reserved = ps.bytes_reserved - s->mem_resv0;
        }
        return;
    }
    if (champ_pool_stats_get(champ_pool_of(s->m), &ps, sizeof ps) == CHAMP_OK) {
        *live = ps.bytes_live;
        *reserved = ps.bytes_reserved;
    }
}

static size_t pool_live(const champ_pool *p)
{
    champ_pool_stats ps;
    return champ_pool_stats_get(p, &ps, sizeof ps) == CHAMP_OK ? ps.bytes_live : 0;
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

/* ---- bulk build, upsert (both kinds) ---- */

/* build: the input array, outside the timing */
static uint64_t any_build_prepare(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    (void)x;
    free(s->ops);
    s->ops = calloc(n ? n : 1, sizeof *s->ops);
    if (!s->ops)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s->kind == BK_U64) {
            s->ops[i].key.u64 = ((const uint64_t *)keys)[i];
        } else {
            s->ops[i].key.ptr = ((const bench_str *)keys)[i].p;
            s->ops[i].key.len = ((const bench_str *)keys)[i].len;
        }
        s->ops[i].val = VAL(i);
    }
    return n;
}

static uint64_t any_build(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    (void)keys, (void)x;
    if (!s->ops || champ_apply(s->m, s->ops, n) != CHAMP_OK)
        return 0;
    return champ_size(s->m);
}

static uint64_t any_build_finish(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    (void)keys, (void)n, (void)x;
    free(s->ops);
    s->ops = NULL;
    return 0;
}

static uint64_t u_upsert(void *st, const void *keys, size_t n, void **x)
{
    champ_map *m = ((cstate *)st)->m;
    const uint64_t *k = keys;
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        void **slot;
        if (champ_upsert_u64(m, k[i], &slot, NULL) == CHAMP_OK) {
            uintptr_t v = (uintptr_t)*slot + 1;
            *slot = (void *)v;
            sum += v;
        }
    }
    return sum;
}

static uint64_t s_upsert(void *st, const void *keys, size_t n, void **x)
{
    champ_map *m = ((cstate *)st)->m;
    const bench_str *k = keys;
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        void **slot;
        if (champ_upsert_bytes(m, k[i].p, k[i].len, &slot, NULL) == CHAMP_OK) {
            uintptr_t v = (uintptr_t)*slot + 1;
            *slot = (void *)v;
            sum += v;
        }
    }
    return sum;
}

/* ---- whole-map ops (both kinds) ---- */

static bool key_get(const cstate *s, const champ_map *m, const champ_key *k, void **v)
{
    if (s->kind == BK_U64)
        return champ_get_u64(m, k->u64, v);
    return champ_get_bytes(m, k->ptr, k->len, v);
}

/* shared: m with keys[N / 2] (value N / 2 + 1; a random place in the
 * trie, and in a flat table's iteration order) set to a new value, N + 1 */
static uint64_t any_shared_prepare(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    (void)x;
    s->n = n;
    if (s->shared || n == 0)
        return 0;
    if (s->kind == BK_U64) {
        s->chg.u64 = ((const uint64_t *)keys)[n / 2];
    } else {
        s->chg.ptr = ((const bench_str *)keys)[n / 2].p;
        s->chg.len = ((const bench_str *)keys)[n / 2].len;
    }
    s->chg_old = VAL(n / 2);
    s->chg_new = VAL(n);
    if (s->kind == BK_U64)
        champ_pset_u64(s->m, s->chg.u64, s->chg_new, &s->shared);
    else
        champ_pset_bytes(s->m, s->chg.ptr, s->chg.len, s->chg_new, &s->shared);
    return 0;
}

static uint64_t any_shared_finish(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    (void)keys, (void)n, (void)x;
    champ_free(s->shared);
    s->shared = NULL;
    return 0;
}

/* fresh: the N keys inserted into a new map of m's type */
static uint64_t any_fresh_prepare(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    champ_map *f;
    uint64_t c = 0;
    (void)x;
    s->n = n;
    if (s->fresh || champ_new_like(s->m, &f) != CHAMP_OK)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s->kind == BK_U64)
            c += champ_set_u64(f, ((const uint64_t *)keys)[i], VAL(i), NULL) == CHAMP_OK;
        else
            c += champ_set_bytes(f, ((const bench_str *)keys)[i].p,
                                 ((const bench_str *)keys)[i].len, VAL(i), NULL) == CHAMP_OK;
    }
    s->fresh = f;
    return c;
}

static uint64_t any_equal_shared(void *st, const void *keys, size_t n, void **x)
{
    const cstate *s = st;
    uint64_t c = 0;
    (void)keys, (void)x;
    if (!s->shared)
        return 0;
    for (size_t i = 0; i < n; i++)
        c += !champ_equal(s->m, s->shared, NULL, NULL);
    return c;
}

static uint64_t any_equal_fresh(void *st, const void *keys, size_t n, void **x)
{
    const cstate *s = st;
    uint64_t c = 0;
    (void)keys, (void)x;
    if (!s->fresh)
        return 0;
    for (size_t i = 0; i < n; i++)
        c += champ_equal(s->m, s->fresh, NULL, NULL);
    return c;
}

typedef struct diff_seen {
    const cstate *s;
    size_t changes;
    bool right; /* the last change was the expected one */
} diff_seen;

static int diff_note(champ_change what, const champ_key *key, void *old_val, void *new_val,
                     void *ctx)
{
    diff_seen *d = ctx;
    (void)key;
    d->changes++;
    d->right = what == CHAMP_CHANGED && old_val == d->s->chg_old && new_val == d->s->chg_new;
    return 0;
}

static uint64_t any_diff_shared(void *st, const void *keys, size_t n, void **x)
{
    const cstate *s = st;
    uint64_t c = 0;
    (void)keys, (void)x;
    if (!s->shared)
        return 0;
    for (size_t i = 0; i < n; i++) {
        diff_seen d = {s, 0, false};
        c += champ_diff(s->m, s->shared, NULL, diff_note, &d) == CHAMP_OK && d.changes == 1 &&
             d.right;
    }
    return c;
}

/* union/intersect(m, b) n times: results of N entries, released; the last
 * result's changed key (when b is the shared version) holds want_chg. */
static uint64_t combine(const cstate *s, const champ_map *b, bool is_union, size_t n,
                        void *want_chg)
{
    uint64_t c = 0;
    if (!b)
        return 0;
    for (size_t i = 0; i < n; i++) {
        champ_map *r;
        champ_status st = is_union ? champ_union(s->m, b, NULL, NULL, &r)
                                   : champ_intersect(s->m, b, NULL, NULL, &r);
        if (st != CHAMP_OK)
            continue;
        bool ok = champ_size(r) == s->n;
        if (i == n - 1 && want_chg) {
            void *v = NULL;
            ok = ok && key_get(s, r, &s->chg, &v) && v == want_chg;
        }
        c += ok;
        champ_free(r);
    }
    return c;
}

static uint64_t any_union_shared(void *st, const void *keys, size_t n, void **x)
{
    const cstate *s = st;
    (void)keys, (void)x;
    return combine(s, s->shared, true, n, s->chg_new); /* b's value wins */
}

static uint64_t any_union_fresh(void *st, const void *keys, size_t n, void **x)
{
    const cstate *s = st;
    (void)keys, (void)x;
    return combine(s, s->fresh, true, n, NULL);
}

static uint64_t any_intersect_shared(void *st, const void *keys, size_t n, void **x)
{
    const cstate *s = st;
    (void)keys, (void)x;
    return combine(s, s->shared, false, n, s->chg_old); /* a's value kept */
}

static uint64_t any_intersect_fresh(void *st, const void *keys, size_t n, void **x)
{
    const cstate *s = st;
    (void)keys, (void)x;
    return combine(s, s->fresh, false, n, NULL);
}

/* ---- the u64 set ---- */

/* The empty state becomes an empty set of the map's type (cfg.set, the
 * same seed) in the map's pool, in the map's place: size and memory (the
 * pool's bytes) then report the set. */
static uint64_t u_set_prepare(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    champ_map *set;
    (void)keys, (void)n, (void)x;
    if (champ_is_set(s->m))
        return 0;
    champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    cfg.set = true;
    cfg.seed = SEED;
    cfg.fixed_seed = true;
    cfg.pool = champ_pool_of(s->m);
    if (champ_new(&cfg, &set) != CHAMP_OK)
        return 0;
    champ_free(s->m);
    s->m = set;
    return 0;
}

static uint64_t u_set_insert(void *st, const void *keys, size_t n, void **x)
{
    champ_map *m = ((cstate *)st)->m;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        bool added = false;
        champ_add_u64(m, k[i], &added);
        c += added;
    }
    return c;
}

static uint64_t u_set_query(void *st, const void *keys, size_t n, void **x)
{
    const champ_map *m = ((cstate *)st)->m;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++)
        c += champ_contains_u64(m, k[i]);
    return c;
}

#define WHOLE_OPS                                                               \
    [OP_EQUAL_SHARED] = any_equal_shared, [OP_EQUAL_FRESH] = any_equal_fresh,   \
    [OP_DIFF_SHARED] = any_diff_shared, [OP_UNION_SHARED] = any_union_shared,   \
    [OP_UNION_FRESH] = any_union_fresh, [OP_INTERSECT_SHARED] = any_intersect_shared, \
    [OP_INTERSECT_FRESH] = any_intersect_fresh
#define WHOLE_PREPARE                                                           \
    [OP_BUILD] = any_build_prepare,                                             \
    [OP_EQUAL_SHARED] = any_shared_prepare, [OP_EQUAL_FRESH] = any_fresh_prepare, \
    [OP_DIFF_SHARED] = any_shared_prepare, [OP_UNION_SHARED] = any_shared_prepare, \
    [OP_UNION_FRESH] = any_fresh_prepare, [OP_INTERSECT_SHARED] = any_shared_prepare, \
    [OP_INTERSECT_FRESH] = any_fresh_prepare
#define WHOLE_FINISH                                                            \
    [OP_BUILD] = any_build_finish,                                              \
    [OP_EQUAL_SHARED] = any_shared_finish, [OP_DIFF_SHARED] = any_shared_finish, \
    [OP_UNION_SHARED] = any_shared_finish, [OP_INTERSECT_SHARED] = any_shared_finish

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

/* ---- query_many: batched lookups ---- */

/* Keys per champ_get_many_u64 call: enough for the lockstep walk to keep
 * its groups full, and the values array stays in L1 (2 KiB). */
#define MANY 256

static uint64_t u_query_many(void *st, const void *keys, size_t n, void **x)
{
    const champ_map *m = ((cstate *)st)->m;
    const uint64_t *k = keys;
    void *v[MANY];
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i += MANY) {
        size_t b = n - i < MANY ? n - i : MANY;
        champ_get_many_u64(m, k + i, b, v, NULL);
        for (size_t j = 0; j < b; j++)
            sum += (uintptr_t)v[j]; /* NULL for an absent key */
    }
    return sum;
}

/* ---- threads (champ_mt): one cell, snapshots, versions ---- */

#define T_LOOKUPS 16 /* lookups per iteration                       */
#define T_BATCH 64   /* iterations a thread takes at a time; the last
                        of each publishes its version                 */

/* A value that still tells which key it belongs to: i + 1 in the low 32
 * bits, the iteration that wrote it above (where pointers have room). */
#define LOW32(v) ((uint64_t)(uintptr_t)(v) & 0xffffffffu)
#if UINTPTR_MAX > 0xffffffffu
#define TAGGED(i, it) ((void *)(uintptr_t)((((uint64_t)(it) + 1) << 32) | ((uint64_t)(i) + 1)))
#else
#define TAGGED(i, it) ((void)(it), VAL(i))
#endif

/* An index below n (n < 2^32), from a thread's own stream. */
static size_t pick(uint64_t *s, size_t n)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z ^= z >> 31;
    return (size_t)(((z >> 32) * (uint64_t)n) >> 32);
}

typedef struct tjob {
    cstate *s;
    atomic_size_t *next; /* iterations taken so far, by all threads */
    size_t total;
    unsigned id;
    unsigned nt; /* threads of the call: streams differ between calls */
    uint64_t good, tried, won;
} tjob;

/* A thread: batches of T_BATCH iterations until the total is reached.  An
 * iteration takes a snapshot from the cell, looks up T_LOOKUPS random keys
 * (each must hold its own index), derives a version with one update (a
 * random key gets a new value with the same low bits), publishes it with
 * compare-and-swap at the end of the batch (a conflict drops it) or drops
 * it, and drops the snapshot. */
static void *t_loop(void *arg)
{
    tjob *t = arg;
    champ_cell *cell = t->s->cell;
    const uint64_t *k = t->s->tkeys;
    size_t n = t->s->n;
    /* a stream of its own, also unlike those of the other op's threads:
     * threads_2 must not look up the keys threads_1 just brought into the
     * cache (threads_1: stream 1; threads_2: streams 2 and 3) */
    uint64_t rng = 0x6a09e667f3bcc909ull * (t->nt + t->id);
    for (;;) {
        size_t b = atomic_fetch_add_explicit(t->next, T_BATCH, memory_order_relaxed);
        if (b >= t->total)
            break;
        size_t e = t->total - b < T_BATCH ? t->total : b + T_BATCH;
        for (size_t it = b; it < e; it++) {
            champ_map *snap = NULL, *ver = NULL;
            if (champ_cell_load(cell, &snap) != CHAMP_OK || !snap)
                continue;
            bool ok = true;
            for (int q = 0; q < T_LOOKUPS; q++) {
                size_t i = pick(&rng, n);
                void *v;
                ok = champ_get_u64(snap, k[i], &v) && LOW32(v) == i + 1 && ok;
            }
            size_t i = pick(&rng, n);
            if (champ_pset_u64(snap, k[i], TAGGED(i, it), &ver) != CHAMP_OK) {
                ok = false;
            } else {
                if (it == e - 1) {
                    bool sw = false;
                    ok = champ_cell_cas(cell, snap, ver, &sw) == CHAMP_OK && ok;
                    t->tried++;
                    t->won += sw;
                }
                champ_free(ver);
            }
            champ_free(snap);
            t->good += ok;
        }
    }
    return NULL;
}

/* n iterations in all on nt threads (started and joined inside the timed
 * call: a few tens of us against milliseconds of work). */
static uint64_t mt_threads(cstate *s, size_t n, unsigned nt)
{
    atomic_size_t next;
    tjob t[2];
    pthread_t th[2];
    unsigned started = 0;
    uint64_t good = 0;
    if (!s->cell || !s->n || nt > 2)
        return 0;
    atomic_init(&next, 0);
    for (unsigned i = 0; i < nt; i++) {
        t[i] = (tjob){s, &next, n, i, nt, 0, 0, 0};
        if (pthread_create(&th[i], NULL, t_loop, &t[i]) != 0)
            break;
        started++;
    }
    for (unsigned i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        good += t[i].good;
        s->cas_tried += t[i].tried;
        s->cas_won += t[i].won;
    }
    return started == nt ? good : 0;
}

static uint64_t mt_threads_1(void *st, const void *keys, size_t n, void **x)
{
    (void)keys, (void)x;
    return mt_threads(st, n, 1);
}

static uint64_t mt_threads_2(void *st, const void *keys, size_t n, void **x)
{
    (void)keys, (void)x;
    return mt_threads(st, n, 2);
}

/* Publishes the map (N keys) in a new cell, outside the timing. */
static uint64_t mt_threads_prepare(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    (void)x;
    champ_cell_free(s->cell);
    s->cell = NULL;
    s->n = n;
    s->tkeys = keys;
    s->cas_tried = s->cas_won = 0;
    s->live0 = pool_live(champ_pool_of(s->m));
    if (champ_cell_new(s->m, &s->cell) != CHAMP_OK)
        s->cell = NULL;
    return 0;
}

/* After the threads joined: the last published version is valid
 * (champ_validate), holds the N keys with their own low bits, and a
 * version was published; then the cell goes, and with it every version:
 * the pool's live bytes are back to what they were before the cell. */
static const char *mt_threads_check(void *st)
{
    cstate *s = st;
    champ_map *v = NULL;
    const char *why = NULL;
    if (!s->cell)
        return "no cell (champ_cell_new failed)";
    if (champ_cell_load(s->cell, &v) != CHAMP_OK || !v) {
        why = "the cell holds no version";
    } else if (champ_validate(v) != CHAMP_OK) {
        why = "champ_validate failed on the last published version";
    } else if (champ_size(v) != s->n) {
        why = "the last published version does not hold N keys";
    } else if (s->cas_won == 0) {
        why = "no version was published";
    } else {
        void *val[MANY];
        for (size_t i = 0; i < s->n && !why; i += MANY) {
            size_t b = s->n - i < MANY ? s->n - i : MANY;
            if (champ_get_many_u64(v, s->tkeys + i, b, val, NULL) != b)
                why = "a key is missing from the last published version";
            for (size_t j = 0; j < b && !why; j++)
                if (LOW32(val[j]) != i + j + 1)
                    why = "a value of the last published version is not its key's";
        }
    }
    champ_free(v);
    champ_cell_free(s->cell);
    s->cell = NULL;
    if (!why && pool_live(champ_pool_of(s->m)) != s->live0)
        why = "the pool's live bytes did not come back after the cell and every "
              "version were freed";
    return why;
}

/* ---- small_maps: N is the entries per map ---- */

/* The pool the maps go to, and its bytes before (outside the timing). */
static uint64_t u_small_prepare(void *st, const void *keys, size_t n, void **x)
{
    cstate *s = st;
    champ_pool_stats ps;
    (void)keys, (void)x;
    small_free_all(s);
    s->n = n;
    s->mem_pool = NULL;
    if (s->mt) {
        s->mem_pool = champ_pool_of(s->m);
    } else {
        champ_map *t; /* the default pool (made at the first call, kept) */
        if (champ_new_u64(&t) != CHAMP_OK)
            return 0;
        s->mem_pool = champ_pool_of(t);
        champ_free(t);
    }
    if (champ_pool_stats_get(s->mem_pool, &ps, sizeof ps) == CHAMP_OK) {
        s->mem_live0 = ps.bytes_live;
        s->mem_resv0 = ps.bytes_reserved;
    }
    return 0;
}

/* n maps of N entries (keys[0..N), value i + 1), handles in the driver's
 * slots; champ: champ_new_u64, champ_mt: champ_new_like of the state's map */
static uint64_t u_small_maps(void *st, const void *keys, size_t n, void **slots)
{
    cstate *s = st;
    const uint64_t *k = keys;
    size_t per = s->n;
    uint64_t c = 0;
    if (!slots)
        return 0;
    s->small = slots;
    for (size_t j = 0; j < n; j++) {
        champ_map *m;
        champ_status r = s->mt ? champ_new_like(s->m, &m) : champ_new_u64(&m);
        if (r != CHAMP_OK) {
            slots[j] = NULL;
            continue;
        }
        for (size_t i = 0; i < per; i++)
            champ_set_u64(m, k[i], VAL(i), NULL);
        c += champ_size(m) == per;
        slots[j] = m;
        s->nsmall = j + 1;
    }
    return c;
}

static void small_free_all(cstate *s)
{
    for (size_t j = 0; j < s->nsmall; j++)
        champ_free(s->small[j]);
    s->nsmall = 0;
    s->small = NULL;
}

/* Frees them all (timed with the op, after the memory was measured). */
static uint64_t u_small_finish(void *st, const void *keys, size_t n, void **x)
{
    (void)keys, (void)n, (void)x;
    small_free_all(st);
    return 0;
}

/* Every byte the maps took is given back to their pool. */
static const char *u_small_check(void *st)
{
    cstate *s = st;
    const char *why = NULL;
    if (s->mem_pool && pool_live(s->mem_pool) != s->mem_live0)
        why = "the pool's live bytes did not come back after the maps were freed";
    s->mem_pool = NULL;
    return why;
}

/* The u64 ops of both champ libraries. */
#define U64_OPS                                                                 \
    [OP_INSERT] = u_insert, [OP_QUERY] = u_query, [OP_MISS] = u_query,          \
    [OP_REMOVE] = u_remove, [OP_ITERATE] = any_iterate,                         \
    [OP_PINSERT] = u_pinsert, [OP_PINSERT_KEEP] = u_pinsert_keep,               \
    [OP_PREMOVE] = u_premove, [OP_COPY_UPDATE] = u_copy_update,                 \
    [OP_BUILD] = any_build, [OP_UPSERT] = u_upsert, WHOLE_OPS,                  \
    [OP_SET_INSERT] = u_set_insert, [OP_SET_QUERY] = u_set_query,               \
    [OP_QUERY_MANY] = u_query_many, [OP_SMALL_MAPS] = u_small_maps
#define U64_PREPARE WHOLE_PREPARE, [OP_SET_INSERT] = u_set_prepare,              \
    [OP_SMALL_MAPS] = u_small_prepare

const bench_adapter bench_adapter_champ = {
    .name = "champ",
    .create = cc_create,
    .destroy = cc_destroy,
    .memory = cc_memory,
    .size = cc_size,
    .drop_versions = cc_drop_versions,
    .op = {
        [BK_U64] = {U64_OPS},
        [BK_STR] = {
            [OP_INSERT] = s_insert, [OP_QUERY] = s_query, [OP_MISS] = s_query,
            [OP_REMOVE] = s_remove, [OP_ITERATE] = any_iterate,
            [OP_PINSERT] = s_pinsert, [OP_PINSERT_KEEP] = s_pinsert_keep,
            [OP_PREMOVE] = s_premove, [OP_COPY_UPDATE] = s_copy_update,
            [OP_BUILD] = any_build, [OP_UPSERT] = s_upsert, WHOLE_OPS,
            [OP_COLLIDE] = s_collide,
        },
    },
    .prepare = {
        [BK_U64] = {U64_PREPARE},
        [BK_STR] = {WHOLE_PREPARE},
    },
    .finish = {
        [BK_U64] = {WHOLE_FINISH, [OP_SMALL_MAPS] = u_small_finish},
        [BK_STR] = {WHOLE_FINISH},
    },
    .check = {
        [BK_U64] = {[OP_SMALL_MAPS] = u_small_check},
    },
};

/* champ in a concurrent pool: the u64 ops of champ, and the threads */
const bench_adapter bench_adapter_champ_mt = {
    .name = "champ_mt",
    .create = mt_create,
    .destroy = cc_destroy,
    .memory = cc_memory,
    .size = cc_size,
    .drop_versions = cc_drop_versions,
    .op = {
        [BK_U64] = {U64_OPS, [OP_THREADS_1] = mt_threads_1, [OP_THREADS_2] = mt_threads_2},
    },
    .prepare = {
        [BK_U64] = {U64_PREPARE, [OP_THREADS_1] = mt_threads_prepare,
                    [OP_THREADS_2] = mt_threads_prepare},
    },
    .finish = {
        [BK_U64] = {WHOLE_FINISH, [OP_SMALL_MAPS] = u_small_finish},
    },
    .check = {
        [BK_U64] = {[OP_SMALL_MAPS] = u_small_check, [OP_THREADS_1] = mt_threads_check,
                    [OP_THREADS_2] = mt_threads_check},
    },
};

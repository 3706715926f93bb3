/*
 * adapt_uthash.c - uthash (uthash-dev): an intrusive hash table in macros.
 * Each entry is a malloc'd struct holding the key, the value and the
 * UT_hash_handle, as uthash is used; insert allocates it, remove frees it.
 *
 *   u64 keys:    HASH_ADD / HASH_FIND over the 8 key bytes (uthash's
 *                default Jenkins hash).
 *   string keys: HASH_ADD_KEYPTR pointing at the driver's string.
 */
#include "adapter.h"

#include <stdlib.h>
#include <uthash.h>

typedef struct uent {
    uint64_t key;
    uint64_t val;
    UT_hash_handle hh;
} uent;

typedef struct sent {
    const char *key;
    uint64_t val;
    UT_hash_handle hh;
} sent;

typedef struct ustate {
    uent *uh;
    sent *sh;
} ustate;

static void *ut_create(int kind)
{
    (void)kind;
    return calloc(1, sizeof(ustate));
}

static void ut_destroy(void *st)
{
    ustate *s = st;
    uent *e, *t;
    sent *f, *g;
    HASH_ITER(hh, s->uh, e, t) {
        HASH_DEL(s->uh, e);
        free(e);
    }
    HASH_ITER(hh, s->sh, f, g) {
        HASH_DEL(s->sh, f);
        free(f);
    }
    free(s);
}

static size_t ut_size(void *st)
{
    ustate *s = st;
    return HASH_COUNT(s->uh) + HASH_COUNT(s->sh);
}

static uint64_t u_insert(void *st, const void *keys, size_t n, void **x)
{
    ustate *s = st;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        uent *e;
        HASH_FIND(hh, s->uh, &k[i], sizeof(uint64_t), e);
        if (e) {
            e->val = i + 1;
            continue;
        }
        e = malloc(sizeof *e);
        if (!e)
            break;
        e->key = k[i];
        e->val = i + 1;
        HASH_ADD(hh, s->uh, key, sizeof(uint64_t), e);
        c++;
    }
    return c;
}

static uint64_t u_query(void *st, const void *keys, size_t n, void **x)
{
    ustate *s = st;
    const uint64_t *k = keys;
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        uent *e;
        HASH_FIND(hh, s->uh, &k[i], sizeof(uint64_t), e);
        if (e)
            sum += e->val;
    }
    return sum;
}

static uint64_t u_remove(void *st, const void *keys, size_t n, void **x)
{
    ustate *s = st;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        uent *e;
        HASH_FIND(hh, s->uh, &k[i], sizeof(uint64_t), e);
        if (e) {
            HASH_DEL(s->uh, e);
            free(e);
            c++;
        }
    }
    return c;
}

static uint64_t u_iterate(void *st, const void *keys, size_t n, void **x)
{
    ustate *s = st;
    uint64_t sum = 0;
    (void)keys, (void)n, (void)x;
    for (const uent *e = s->uh; e; e = e->hh.next)
        sum += e->val;
    return sum;
}

static uint64_t s_insert(void *st, const void *keys, size_t n, void **x)
{
    ustate *s = st;
    const bench_str *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        sent *e;
        HASH_FIND(hh, s->sh, k[i].p, k[i].len, e);
        if (e) {
            e->val = i + 1;
            continue;
        }
        e = malloc(sizeof *e);
        if (!e)
            break;
        e->key = k[i].p;
        e->val = i + 1;
        HASH_ADD_KEYPTR(hh, s->sh, e->key, k[i].len, e);
        c++;
    }
    return c;
}

static uint64_t s_query(void *st, const void *keys, size_t n, void **x)
{
    ustate *s = st;
    const bench_str *k = keys;
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        sent *e;
        HASH_FIND(hh, s->sh, k[i].p, k[i].len, e);
        if (e)
            sum += e->val;
    }
    return sum;
}

static uint64_t s_remove(void *st, const void *keys, size_t n, void **x)
{
    ustate *s = st;
    const bench_str *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        sent *e;
        HASH_FIND(hh, s->sh, k[i].p, k[i].len, e);
        if (e) {
            HASH_DEL(s->sh, e);
            free(e);
            c++;
        }
    }
    return c;
}

static uint64_t s_iterate(void *st, const void *keys, size_t n, void **x)
{
    ustate *s = st;
    uint64_t sum = 0;
    (void)keys, (void)n, (void)x;
    for (const sent *e = s->sh; e; e = e->hh.next)
        sum += e->val;
    return sum;
}

const bench_adapter bench_adapter_uthash = {
    .name = "uthash",
    .create = ut_create,
    .destroy = ut_destroy,
    .size = ut_size,
    .op = {
        [BK_U64] = {
            [OP_INSERT] = u_insert, [OP_QUERY] = u_query, [OP_MISS] = u_query,
            [OP_REMOVE] = u_remove, [OP_ITERATE] = u_iterate,
        },
        [BK_STR] = {
            [OP_INSERT] = s_insert, [OP_QUERY] = s_query, [OP_MISS] = s_query,
            [OP_REMOVE] = s_remove, [OP_ITERATE] = s_iterate,
        },
    },
};

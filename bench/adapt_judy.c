/*
 * adapt_judy.c - Judy arrays (libjudy-dev): JudyL (word -> word) for u64
 * keys, JudyHS (byte string -> word, keys copied into the array) for
 * strings.  JudyHS has no iteration, so string iterate is not measured.
 * A new JudyL/JudyHS slot reads 0, which tells an insert from a replace.
 */
#include "adapter.h"

#include <Judy.h>
#include <stdlib.h>

typedef struct jstate {
    Pvoid_t a;
    int kind;
} jstate;

static void *j_create(int kind)
{
    jstate *s = calloc(1, sizeof *s);
    if (s)
        s->kind = kind;
    return s;
}

static void j_destroy(void *st)
{
    jstate *s = st;
    if (s->kind == BK_U64)
        JudyLFreeArray(&s->a, PJE0);
    else
        JudyHSFreeArray(&s->a, PJE0);
    free(s);
}

static uint64_t u_insert(void *st, const void *keys, size_t n, void **x)
{
    jstate *s = st;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        PWord_t v = (PWord_t)JudyLIns(&s->a, (Word_t)k[i], PJE0);
        if (v == PJERR)
            break;
        c += *v == 0;
        *v = i + 1;
    }
    return c;
}

static uint64_t u_query(void *st, const void *keys, size_t n, void **x)
{
    Pcvoid_t a = ((jstate *)st)->a;
    const uint64_t *k = keys;
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        PWord_t v = (PWord_t)JudyLGet(a, (Word_t)k[i], PJE0);
        if (v)
            sum += *v;
    }
    return sum;
}

static uint64_t u_remove(void *st, const void *keys, size_t n, void **x)
{
    jstate *s = st;
    const uint64_t *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++)
        c += JudyLDel(&s->a, (Word_t)k[i], PJE0) == 1;
    return c;
}

static uint64_t u_iterate(void *st, const void *keys, size_t n, void **x)
{
    Pcvoid_t a = ((jstate *)st)->a;
    Word_t idx = 0;
    uint64_t sum = 0;
    (void)keys, (void)n, (void)x;
    for (PWord_t v = (PWord_t)JudyLFirst(a, &idx, PJE0); v;
         v = (PWord_t)JudyLNext(a, &idx, PJE0))
        sum += *v;
    return sum;
}

static uint64_t s_insert(void *st, const void *keys, size_t n, void **x)
{
    jstate *s = st;
    const bench_str *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        PWord_t v = (PWord_t)JudyHSIns(&s->a, (void *)k[i].p, k[i].len, PJE0);
        if (v == PJERR)
            break;
        c += *v == 0;
        *v = i + 1;
    }
    return c;
}

static uint64_t s_query(void *st, const void *keys, size_t n, void **x)
{
    Pcvoid_t a = ((jstate *)st)->a;
    const bench_str *k = keys;
    uint64_t sum = 0;
    (void)x;
    for (size_t i = 0; i < n; i++) {
        PWord_t v = (PWord_t)JudyHSGet(a, (void *)k[i].p, k[i].len);
        if (v)
            sum += *v;
    }
    return sum;
}

static uint64_t s_remove(void *st, const void *keys, size_t n, void **x)
{
    jstate *s = st;
    const bench_str *k = keys;
    uint64_t c = 0;
    (void)x;
    for (size_t i = 0; i < n; i++)
        c += JudyHSDel(&s->a, (void *)k[i].p, k[i].len, PJE0) == 1;
    return c;
}

const bench_adapter bench_adapter_judy = {
    .name = "judy",
    .create = j_create,
    .destroy = j_destroy,
    .op = {
        [BK_U64] = {
            [OP_INSERT] = u_insert, [OP_QUERY] = u_query, [OP_MISS] = u_query,
            [OP_REMOVE] = u_remove, [OP_ITERATE] = u_iterate,
        },
        [BK_STR] = {
            [OP_INSERT] = s_insert, [OP_QUERY] = s_query, [OP_MISS] = s_query,
            [OP_REMOVE] = s_remove,
        },
    },
};

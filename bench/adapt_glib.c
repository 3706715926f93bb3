/*
 * adapt_glib.c - GLib's GHashTable (libglib2.0-dev).
 *
 *   u64 keys:    the u64 cast to a pointer, g_direct_hash / g_direct_equal
 *                (NULL hash function: GLib's direct hashing).
 *   string keys: the driver's NUL-terminated strings (not copied),
 *                g_str_hash / g_str_equal, GLib's idiom for string keys.
 * Values are stored as pointers.  Removal uses g_hash_table_remove.
 */
#include "adapter.h"

#include <glib.h>
#include <stdlib.h>

static void *gl_create(int kind)
{
    if (kind == BK_U64)
        return g_hash_table_new(NULL, NULL);
    return g_hash_table_new(g_str_hash, g_str_equal);
}

static void gl_destroy(void *st)
{
    g_hash_table_destroy(st);
}

static size_t gl_size(void *st)
{
    return g_hash_table_size(st);
}

#define VAL(i) ((gpointer)(uintptr_t)((i) + 1))
#define UKEY(i) ((gpointer)(uintptr_t)((const uint64_t *)keys)[i])
#define SKEY(i) ((gpointer)((const bench_str *)keys)[i].p)

#define DEFINE_OPS(P, KEY)                                                     \
    static uint64_t P##_insert(void *st, const void *keys, size_t n, void **x) \
    {                                                                          \
        GHashTable *h = st;                                                    \
        uint64_t c = 0;                                                        \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++)                                         \
            c += g_hash_table_insert(h, KEY(i), VAL(i));                       \
        return c;                                                              \
    }                                                                          \
    static uint64_t P##_query(void *st, const void *keys, size_t n, void **x)  \
    {                                                                          \
        GHashTable *h = st;                                                    \
        uint64_t sum = 0;                                                      \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++)                                         \
            sum += (uintptr_t)g_hash_table_lookup(h, KEY(i));                  \
        return sum;                                                            \
    }                                                                          \
    static uint64_t P##_remove(void *st, const void *keys, size_t n, void **x) \
    {                                                                          \
        GHashTable *h = st;                                                    \
        uint64_t c = 0;                                                        \
        (void)x;                                                               \
        for (size_t i = 0; i < n; i++)                                         \
            c += g_hash_table_remove(h, KEY(i));                               \
        return c;                                                              \
    }

DEFINE_OPS(u, UKEY)
DEFINE_OPS(s, SKEY)

static uint64_t gl_iterate(void *st, const void *keys, size_t n, void **x)
{
    GHashTableIter it;
    gpointer k, v;
    uint64_t sum = 0;
    (void)keys, (void)n, (void)x;
    g_hash_table_iter_init(&it, st);
    while (g_hash_table_iter_next(&it, &k, &v))
        sum += (uintptr_t)v;
    return sum;
}

const bench_adapter bench_adapter_glib = {
    .name = "glib",
    .create = gl_create,
    .destroy = gl_destroy,
    .size = gl_size,
    .op = {
        [BK_U64] = {
            [OP_INSERT] = u_insert, [OP_QUERY] = u_query, [OP_MISS] = u_query,
            [OP_REMOVE] = u_remove, [OP_ITERATE] = gl_iterate,
        },
        [BK_STR] = {
            [OP_INSERT] = s_insert, [OP_QUERY] = s_query, [OP_MISS] = s_query,
            [OP_REMOVE] = s_remove, [OP_ITERATE] = gl_iterate,
        },
    },
};

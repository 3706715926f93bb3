/*
 * ops.c - the op table: everything the driver knows about an op.  Timing,
 * checks, tables, CSV, picture and usage text all read it; nothing else in
 * the driver names an op, except the targets (targets.c) and the memory
 * panel (the bytes measured after insert).
 *
 * A job runs its ops in this order, except that an op starting from the
 * state the map is in runs first (query, miss, iterate, copy_update on the
 * map insert made, then remove); an op whose starting state is not the
 * current one gets a new map, brought to that state untimed.
 */
#include "bench.h"

#include <string.h>

const op_group op_groups[NGROUPS] = {
    [G_MAP] = {"map", -1, -1, NULL, OP_INSERT},
    [G_SET] = {"set", -1, -1, NULL, OP_SET_INSERT},
    /* A flat hash table keeps an old version by copying the table, then
     * updating the copy: that is the persistent ops' baseline. */
    [G_PERSIST] = {"persistent", L_ABSL, OP_COPY_UPDATE, "absl: copy, then update", -1},
    /* Comparing and combining two versions (champ.h: champ_equal, ...). */
    [G_ALGEBRA] = {"versions", -1, -1, NULL, -1},
    /* Snapshots, versions and a cell shared by threads (issue 10). */
    [G_THREADS] = {"threads", -1, -1, NULL, -1},
    /* Many small maps: N is the entries per map; the row closes with the
     * bytes per map. */
    [G_SMALL] = {"small maps", -1, -1, NULL, OP_SMALL_MAPS},
};

/* The whole-map ops: the same pair of maps (prepare makes the second) for
 * every one of the call's operations; up to 1M (fresh: every library walks
 * both maps whole; the targets look at 1M), with --quick the fresh ones up
 * to 100K.  upsert and the set ops also stop at 1M (their targets are at
 * 10K and 1M; at 10M each costs a 10M-key build untimed, in every round);
 * build runs at every N. */
#define WHOLE_OP(nm, wh, res, quick)                                         \
    {                                                                       \
        .name = nm, .unit = "ns/whole op", .result = res, .what = wh,       \
        .group = G_ALGEBRA, .from = OP_INSERT, .to = ST_SAME,               \
        .keys = KEYS_INSERT, .count = COUNT_TIMED, .expect = EXPECT_COUNT,  \
        .size_after = SIZE_N, .max_n = 1000000, .max_n_quick = quick,       \
    }

/* threads_1, threads_2: a fixed number of loop iterations in all (the
 * threads take them 64 at a time), on the map insert made, published in a
 * cell by prepare; up to 1M (the targets look at 10K and 1M). */
#define THREADS_OP(nm, wh)                                                  \
    {                                                                       \
        .name = nm, .unit = "ns/iteration", .what = wh,                     \
        .result = "iterations with every lookup right and the update made", \
        .group = G_THREADS, .from = OP_INSERT, .to = ST_SAME,               \
        .keys = KEYS_INSERT, .count = COUNT_FIXED, .expect = EXPECT_COUNT,  \
        .size_after = SIZE_N, .max_n = 1000000, .fixed = 1u << 16,          \
        .fixed_quick = 1u << 14,                                            \
    }

const op_info op_table[OP_COUNT] = {
    [OP_INSERT] = {
        .name = "insert", .unit = "ns/op", .result = "inserts",
        .what = "N keys into an empty map (no reserve)",
        .memory = "after inserting N keys",
        .group = G_MAP, .from = ST_FRESH, .to = OP_INSERT,
        .keys = KEYS_INSERT, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_N, .flags = OPF_VERIFY | OPF_MEMORY,
    },
    [OP_QUERY] = {
        .name = "query", .unit = "ns/op", .result = "value sum",
        .what = "the N keys, shuffled; value sum checked",
        .group = G_MAP, .from = OP_INSERT, .to = ST_SAME,
        .keys = KEYS_QUERY, .count = COUNT_N, .expect = EXPECT_SUM,
    },
    [OP_MISS] = {
        .name = "miss", .unit = "ns/op", .result = "value sum of absent keys",
        .what = "N absent keys; checked that none is found",
        .group = G_MAP, .from = OP_INSERT, .to = ST_SAME,
        .keys = KEYS_MISS, .count = COUNT_N, .expect = EXPECT_ZERO,
    },
    [OP_REMOVE] = {
        .name = "remove", .unit = "ns/op", .result = "removed",
        .what = "all N keys, shuffled; the map is empty at the end",
        .group = G_MAP, .from = OP_INSERT, .to = ST_USED,
        .keys = KEYS_QUERY, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_ZERO,
    },
    [OP_ITERATE] = {
        .name = "iterate", .unit = "ns/entry", .result = "value sum",
        .what = "walking all N entries; value sum checked",
        .group = G_MAP, .from = OP_INSERT, .to = ST_SAME,
        .keys = KEYS_NONE, .count = COUNT_N, .expect = EXPECT_SUM,
    },
    [OP_PINSERT] = {
        .name = "pinsert", .unit = "ns/op", .result = "inserts",
        .what = "N persistent inserts, each version from the previous one, "
                "which is released",
        .group = G_PERSIST, .from = ST_FRESH, .to = OP_PINSERT,
        .keys = KEYS_INSERT, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_N, .flags = OPF_VERIFY, .max_n_quick = 100000,
    },
    [OP_PINSERT_KEEP] = {
        .name = "pinsert_keep", .unit = "ns/op", .result = "inserts",
        .what = "N persistent inserts keeping every version alive (freed after "
                "the timing)",
        .memory = "of all N versions kept by pinsert_keep",
        .group = G_PERSIST, .from = ST_FRESH, .to = ST_USED,
        .keys = KEYS_INSERT, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_N, .flags = OPF_VERIFY | OPF_MEMORY | OPF_SCRATCH,
        .max_n = 1000000, .max_n_quick = 100000,
    },
    [OP_PREMOVE] = {
        .name = "premove", .unit = "ns/op", .result = "removed",
        .what = "N persistent removes from the pinsert result, previous "
                "version released",
        .group = G_PERSIST, .from = OP_PINSERT, .to = ST_USED,
        .keys = KEYS_QUERY, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_ZERO,
        .max_n = BIG_N - 1, .max_n_quick = 100000,
    },
    [OP_COPY_UPDATE] = {
        .name = "copy_update", .unit = "ns/copy+update", .result = "updates",
        .what = "copy the N-entry map, set one existing key in the copy, "
                "release the copy; the original is checked unchanged",
        .group = G_PERSIST, .from = OP_INSERT, .to = ST_SAME,
        .keys = KEYS_QUERY, .count = COUNT_CAPPED, .expect = EXPECT_COUNT,
        .size_after = SIZE_N, .flags = OPF_VERIFY,
    },
    [OP_BUILD] = {
        .name = "build", .unit = "ns/entry", .result = "entries",
        .what = "N keys into an empty map in one bulk build (champ_apply; "
                "flat tables: reserve, then insert), from an array made untimed",
        .group = G_MAP, .from = ST_FRESH, .to = OP_BUILD,
        .keys = KEYS_INSERT, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_N, .flags = OPF_VERIFY_SAMPLE,
    },
    [OP_UPSERT] = {
        .name = "upsert", .unit = "ns/op", .result = "sum of the incremented values",
        .what = "add 1 to the value of each of the N keys, shuffled, in one "
                "descent (champ_upsert_*; flat tables: m[k]++)",
        .group = G_MAP, .from = OP_INSERT, .to = ST_USED,
        .keys = KEYS_QUERY, .count = COUNT_N, .expect = EXPECT_SUM_INC,
        .size_after = SIZE_N, .flags = OPF_VERIFY_SAMPLE | OPF_INC, .max_n = 1000000,
    },
    [OP_EQUAL_SHARED] = WHOLE_OP("equal_shared",
        "equal(map, a version of it with one value changed): false", "false results", 0),
    [OP_EQUAL_FRESH] = WHOLE_OP("equal_fresh",
        "equal(map, one built apart from the same N keys): true", "true results", 100000),
    [OP_DIFF_SHARED] = WHOLE_OP("diff_shared",
        "diff(map, a version of it with one value changed): that one change",
        "diffs of one change", 0),
    [OP_UNION_SHARED] = WHOLE_OP("union_shared",
        "union(map, a version with one value changed), result released: N entries",
        "unions of N entries", 0),
    [OP_UNION_FRESH] = WHOLE_OP("union_fresh",
        "union(map, one built apart from the same N keys), released: N entries",
        "unions of N entries", 100000),
    [OP_INTERSECT_SHARED] = WHOLE_OP("intersect_shared",
        "intersect(map, a version with one value changed), released: N entries",
        "intersections of N entries", 0),
    [OP_INTERSECT_FRESH] = WHOLE_OP("intersect_fresh",
        "intersect(map, one built apart from the same N keys), released: N entries",
        "intersections of N entries", 100000),
    [OP_SET_INSERT] = {
        .name = "set_insert", .unit = "ns/op", .result = "keys added",
        .what = "N u64 keys into an empty set (champ: cfg.set; absl: flat_hash_set)",
        .memory = "of a u64 set after inserting N keys",
        .group = G_SET, .from = ST_FRESH, .to = OP_SET_INSERT,
        .keys = KEYS_INSERT, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_N, .flags = OPF_MEMORY, .max_n = 1000000,
    },
    [OP_SET_QUERY] = {
        .name = "set_query", .unit = "ns/op", .result = "keys found",
        .what = "the N keys, shuffled, in the set set_insert made",
        .group = G_SET, .from = OP_SET_INSERT, .to = ST_SAME,
        .keys = KEYS_QUERY, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_N, .max_n = 1000000,
    },
    /* Hostile keys: one collision node of N keys (champ: bytes_hash
     * constant; champ_generic: a constant hash with compare).  The unit
     * is the three operations on one key. */
    [OP_COLLIDE] = {
        .name = "collide", .unit = "ns/key", .result = "keys inserted, found, removed",
        .what = "N keys sharing one full hash: insert, look up, remove each "
                "(a map of their own)",
        .group = G_MAP, .from = ST_FRESH, .to = ST_SAME,
        .keys = KEYS_INSERT, .count = COUNT_N, .expect = EXPECT_COUNT,
        .size_after = SIZE_ZERO, .max_n = 100000, .max_n_quick = 100000,
    },
    [OP_QUERY_MANY] = {
        .name = "query_many", .unit = "ns/op", .result = "value sum",
        .what = "the N keys, shuffled, looked up 256 at a time "
                "(champ_get_many_u64); value sum checked",
        .group = G_MAP, .from = OP_INSERT, .to = ST_SAME,
        .keys = KEYS_QUERY, .count = COUNT_N, .expect = EXPECT_SUM,
    },
    [OP_THREADS_1] = THREADS_OP("threads_1",
        "1 thread: cell snapshot, 16 lookups, one update, CAS-publish every 64th"),
    [OP_THREADS_2] = THREADS_OP("threads_2",
        "2 threads: cell snapshot, 16 lookups, one update, CAS-publish every 64th"),
    /* N is the entries per map: its own sweep 0, 1, 3, 8 (--n replaces it,
     * up to 64), 1M maps per call (--quick: 250K). */
    [OP_SMALL_MAPS] = {
        .name = "small_maps", .unit = "ns/map", .result = "maps of N entries",
        .what = "N = entries per map: 1M maps (--quick 250K) made by the default "
                "constructor and filled, then freed; create + fill + free per map",
        .memory = "small_maps, per map",
        .group = G_SMALL, .from = ST_FRESH, .to = ST_USED,
        .keys = KEYS_INSERT, .count = COUNT_FIXED, .expect = EXPECT_COUNT,
        .flags = OPF_MEMORY | OPF_PER_CALL, .fixed = 1000000, .fixed_quick = 250000,
        .own_n = {0, 1, 3, 8}, .own_nn = 4, .own_max = 64,
    },
};

int op_find(const char *name, size_t len)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (op_table[i].name && strlen(op_table[i].name) == len &&
            strncmp(op_table[i].name, name, len) == 0)
            return i;
    return -1;
}

size_t op_max_n(int op, bool quick)
{
    size_t full = op_table[op].max_n, q = op_table[op].max_n_quick;
    if (!quick || !q)
        return full;
    return full && full < q ? full : q;
}

int op_own_n(int op, const size_t **list)
{
    *list = op_table[op].own_n;
    return (op_table[op].flags & OPF_PER_CALL) ? op_table[op].own_nn : 0;
}

/* Whether op runs at scale n: an OPF_PER_CALL op at its own N (with --n:
 * at the N given up to its own_max), every other op at N >= 1 of the
 * scales --n gave (or the default ones). */
bool op_runs_at(int op, size_t n, bool own_scale, bool n_given)
{
    const op_info *d = &op_table[op];
    if (!(d->flags & OPF_PER_CALL))
        return n >= 1 && !own_scale;
    if (n_given)
        return n <= d->own_max;
    for (int i = 0; i < d->own_nn; i++)
        if (d->own_n[i] == n)
            return true;
    return false;
}

uint64_t op_expected(int op, size_t n, size_t count)
{
    switch (op_table[op].expect) {
    case EXPECT_COUNT:
        return count;
    case EXPECT_SUM:
        return (uint64_t)n * (n + 1) / 2;
    case EXPECT_SUM_INC:
        return (uint64_t)n * (n + 1) / 2 + n;
    case EXPECT_ZERO:
        break;
    }
    return 0;
}

uint64_t op_verify_sum(int op, size_t n)
{
    uint64_t sum = (uint64_t)n * (n + 1) / 2;
    return (op_table[op].flags & OPF_INC) ? sum + n : sum;
}

/* A sixteenth of the keys, at least 1000 (all of them below that). */
size_t op_sample_n(size_t n)
{
    size_t k = n / 16;
    return k < 1000 ? (n < 1000 ? n : 1000) : k;
}

uint64_t op_sample_sum(int op, size_t k)
{
    return op_verify_sum(op, k);
}

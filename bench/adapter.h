/*
 * adapter.h - the interface between the benchmark driver and one library.
 *
 * An adapter maps the driver's workload onto one library's API and nothing
 * else: the driver owns key generation, timing, rounds and result checking.
 * Every operation is one function that runs a whole loop, so the timed
 * region makes a single indirect call, never one per key.
 *
 * Values: the entry for keys[i] of the insert array always holds i + 1, so
 * a query over any permutation of the N keys sums to N * (N + 1) / 2.
 *
 * Adding an op: a line in enum bench_op below, a row in the driver's op
 * table (bench/ops.c: name, unit, what the loop counts, the state it starts
 * from, the result it must return), and a function in each adapter that
 * supports it.  A library without the function shows "-" for the op.
 */
#ifndef BENCH_ADAPTER_H
#define BENCH_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A string key: NUL-terminated bytes p[0..len) (the NUL is not part of the
 * key).  The driver keeps every string alive for the whole job, so adapters
 * of pointer-keyed maps may store p itself. */
typedef struct bench_str {
    const char *p;
    size_t len;
} bench_str;

enum bench_kind { BK_U64 = 0, BK_STR = 1, BK_KINDS = 2 };

/* The ops.  Each function gets the keys the op table names for it and n =
 * the loop count the table gives (N for most ops).  What it returns is
 * checked against the table's expectation; the comments say what that is. */
enum bench_op {
    OP_INSERT = 0,    /* keys[0..n) into the (empty) map, value i + 1: returns inserts */
    OP_QUERY,         /* returns the sum of the values found                          */
    OP_MISS,          /* absent keys: returns the sum of the values found (0)         */
    OP_REMOVE,        /* every key: returns the number removed                        */
    OP_ITERATE,       /* keys unused, n = size: returns the sum of all values          */
    OP_PINSERT,       /* n persistent inserts, each version from the previous one,
                         which is released: returns successful inserts                 */
    OP_PINSERT_KEEP,  /* the same, every version kept in scratch[0..n)                */
    OP_PREMOVE,       /* n persistent removes from the map, previous released          */
    OP_COPY_UPDATE,   /* n times: copy the map, set keys[i] in the copy to a new
                         value, release the copy: returns successful updates          */
    OP_BUILD,         /* keys[0..n) into the empty map in one bulk build, value
                         i + 1 (the input array made by prepare): returns the
                         number of entries                                            */
    OP_UPSERT,        /* keys[0..n) (present, value i + 1 each): add 1 to each key's
                         value in one descent: returns the sum of the new values       */
    /* Whole-map ops: n times the same operation on a pair of maps that
     * prepare made; each returns how many of its n operations gave the
     * right answer.  "shared": the map and a version of it with one key's
     * value changed (champ: a p-form sharing every other node; a flat
     * table: a copy).  "fresh": the map and one built independently from
     * the same N keys and values (champ: same type, so the structural path
     * runs).  Results are released inside the loop. */
    OP_EQUAL_SHARED,  /* equal(map, shared) is false                                  */
    OP_EQUAL_FRESH,   /* equal(map, fresh) is true                                    */
    OP_DIFF_SHARED,   /* diff(map, shared) reports exactly the one change              */
    OP_UNION_SHARED,  /* union(map, shared) has N entries, the shared one's value wins */
    OP_UNION_FRESH,   /* union(map, fresh) has N entries                              */
    OP_INTERSECT_SHARED, /* intersect(map, shared) has N entries                      */
    OP_INTERSECT_FRESH,  /* intersect(map, fresh) has N entries                       */
    /* Sets of u64 keys: prepare turns the empty state into an empty set (in
     * the map's place: size and memory report the set). */
    OP_SET_INSERT,    /* keys[0..n) into the empty set: returns the keys added         */
    OP_SET_QUERY,     /* the N keys, shuffled: returns how many were found            */
    OP_COLLIDE,       /* keys[0..n) made to share one full hash, in a map the call
                         makes and frees (the state is untouched): insert all (value
                         i + 1), look all up, remove all (both in a stride order):
                         returns the keys that went through all three            */
    OP_QUERY_MANY,    /* the N keys, shuffled, looked up in batches (champ:
                         champ_get_many_u64, 256 keys a call): returns the sum of the
                         values found                                                 */
    /* Threads (a concurrent pool): prepare publishes the map in a cell; the
     * call runs n loop iterations in all, on 1 or 2 threads; each takes a
     * snapshot from the cell, looks up 16 keys, derives a version with one
     * update, publishes it by compare-and-swap every 64th iteration (else
     * drops it) and drops the snapshot.  Returns the iterations whose
     * lookups all found the right values and whose update succeeded.  The
     * check hook validates the last published version and frees the cell. */
    OP_THREADS_1,
    OP_THREADS_2,
    /* Many small maps: N is the entries per map (0 allowed).  n maps made
     * with the library's default constructor and filled with keys[0..N)
     * (value i + 1), all alive at the end of the call: returns the maps of
     * size N.  finish (timed with the call) frees them all; the memory is
     * measured between the two. */
    OP_SMALL_MAPS,
    OP_COUNT
};

typedef uint64_t (*bench_op_fn)(void *state, const void *keys, size_t n,
                                void **scratch);

typedef struct bench_adapter {
    const char *name;        /* library name as in the CSV            */
    /* Makes the state (an empty map) for one key kind; NULL on failure. */
    void *(*create)(int kind);
    void (*destroy)(void *state);
    /* Optional: bytes the structure uses by the library's own accounting
     * (live, and reserved from the system); NULL means the driver measures
     * the heap with mallinfo2. */
    void (*memory)(void *state, size_t *live, size_t *reserved);
    /* Optional: number of entries, for checks. */
    size_t (*size)(void *state);
    /* Releases versions scratch[0..n) kept by OP_PINSERT_KEEP except the
     * one the state holds. */
    void (*drop_versions)(void *state, void **scratch, size_t n);
    /* op[kind][op]; NULL where the library has no such operation. */
    bench_op_fn op[BK_KINDS][OP_COUNT];
    /* Optional, per op: untimed setup run before each timed call of the op,
     * with the op's keys and n = N, the number of keys in the map (an op
     * that needs a second map, or N as well as its loop count, makes or
     * notes it here).  Its result is not checked. */
    bench_op_fn prepare[BK_KINDS][OP_COUNT];
    /* Optional, per op: untimed, after the timed call and its checks (same
     * arguments as prepare): releases what prepare made that must not stay
     * (a version sharing the map's nodes would make later in-place updates
     * of the map copy paths).  Its result is not checked. */
    bench_op_fn finish[BK_KINDS][OP_COUNT];
    /* Optional, per op: untimed checks of what the op left, run last (after
     * finish); it may release what it checked.  Returns NULL when every
     * check holds, else what failed (a static string). */
    const char *(*check[BK_KINDS][OP_COUNT])(void *state);
} bench_adapter;

#ifdef __cplusplus
}
#endif
#endif

/*
 * champ.h - persistent hash array mapped tries (CHAMP layout) for C.
 * SPDX-License-Identifier: MIT (see LICENSE)
 *
 * A champ_map maps keys to void * values.  It reads like a hash table, updates
 * in place when it owns what it touches, and copies in O(1): after
 * champ_copy() both maps change independently and share every node neither
 * has changed.  Nodes are reference counted, so releasing versions in any
 * order frees exactly what no other version uses: no garbage collector.
 *
 * Key kinds (fixed when the map is made):
 *   CHAMP_KEY_U64      uint64_t keys stored inline in the node; hashed by the
 *                      library with a seeded bijective mixer (no callback).
 *   CHAMP_KEY_BYTES    byte strings (pointer + length, or NUL-terminated);
 *                      the map keeps its own copy of each key, hashed with a
 *                      seeded XXH3.
 *   CHAMP_KEY_GENERIC  opaque pointers with user hash/equal callbacks.
 *
 * Status convention: every function that can fail returns a champ_status.
 * Negative values are errors; zero and positive values are outcomes
 * (CHAMP_OK, CHAMP_REPLACED, CHAMP_NOTFOUND).  On any error the map is exactly
 * as it was before the call and nothing has leaked.
 *
 * Memory: nodes come from a champ_pool (free lists per 8-byte size class over
 * geometrically growing arena chunks, or one fixed caller buffer).  Maps that
 * share a pool can share nodes; every map made with champ_new() without a
 * pool gets a private one, and copies share their source's pool.
 *
 * Thread model: a pool and all maps in it form one writer domain.  At most one
 * thread at a time may call a function that changes a map or the pool (set,
 * remove, p-forms, copy, clear, free, pool_free, validate).  Any number of
 * threads may read (get, contains, size, iterate, foreach) any maps at the
 * same time, also while the one writer updates *other* maps of the pool (even
 * versions that share nodes with the ones being read): an update never writes
 * a node that another map can reach, except its reference count, which these
 * readers never look at.  Reading a map while that same map is being updated
 * is a data race.  Reference counts are therefore plain integers, not atomics.
 * The telemetry calls (stats, pool stats, stats_print, dump) also read
 * reference counts and pool state, so they must not overlap the pool's
 * writer; they may overlap each other and the readers above.
 *
 * Callbacks (hash, equal, retain, release) must not update the map they were
 * called for (such an update returns CHAMP_EBUSY); hash and equal run before
 * an update changes anything, releases run after it is complete.
 *
 * Value callbacks: with val_release set, the map calls it when the last node
 * holding the value goes away.  A map whose nodes are shared (after copy or a
 * p-form) duplicates entries when it copies a node, so release callbacks need
 * matching retain callbacks for copies: without them champ_copy() and the
 * p-forms return CHAMP_EINVAL.
 */
#ifndef CHAMP_H
#define CHAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(CHAMP_STATIC)
#define CHAMP_API __attribute__((visibility("default")))
#else
#define CHAMP_API
#endif

#define CHAMP_VERSION_MAJOR 0
#define CHAMP_VERSION_MINOR 1
#define CHAMP_VERSION_PATCH 0

/* ------------------------------------------------------------------ */
/* Status                                                              */
/* ------------------------------------------------------------------ */

typedef enum champ_status {
    CHAMP_OK = 0,          /* done; for set: the key was inserted        */
    CHAMP_REPLACED = 1,    /* set: the key existed, its value replaced   */
    CHAMP_NOTFOUND = 2,    /* get/contains/remove: no such key           */
    CHAMP_ENOMEM = -1,     /* allocation failed; map unchanged           */
    CHAMP_EINVAL = -2,     /* NULL argument or invalid configuration     */
    CHAMP_EKIND = -3,      /* key-kind function on a map of another kind */
    CHAMP_EPOOL = -4,      /* maps from different pools mixed            */
    CHAMP_EMODIFIED = -5,  /* iterator: the map changed under it (debug) */
    CHAMP_ECORRUPT = -6,   /* validate: an invariant does not hold       */
    CHAMP_EUNSUPPORTED = -7,/* CPU lacks an instruction the build uses;  */
                           /* or a testing hook absent from this build  */
    CHAMP_EBUSY = -8       /* update re-entered from one of the map's    */
                           /* own callbacks while it was mid-update      */
} champ_status;

/* A static, human-readable description of a status (never NULL). */
CHAMP_API const char *champ_strerror(champ_status s);

/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */

typedef enum champ_key_kind {
    CHAMP_KEY_U64 = 1,
    CHAMP_KEY_BYTES = 2,
    CHAMP_KEY_GENERIC = 3
} champ_key_kind;

/* Backing allocator for the pool's arena chunks and the pool header.  Sizes
 * are passed to free so sized allocators work.  realloc is part of the
 * interface for allocators that pair it with malloc, but the pool never
 * resizes a chunk, so it is not called today.  Either all three functions
 * are set or all are NULL (then libc is used). */
typedef struct champ_allocator {
    void *(*malloc)(size_t size, void *ctx);
    void *(*realloc)(void *ptr, size_t old_size, size_t new_size, void *ctx);
    void (*free)(void *ptr, size_t size, void *ctx);
    void *ctx;
} champ_allocator;

typedef struct champ_pool champ_pool;
typedef struct champ_map champ_map;

/* Called once each time the pool's live bytes rise through
 * watermark * capacity (fixed-buffer mode only). */
typedef void (*champ_watermark_fn)(champ_pool *pool, size_t live_bytes,
                                   size_t capacity, void *ctx);

typedef struct champ_pool_config {
    /* Backing allocator; NULL means libc malloc/realloc/free. */
    const champ_allocator *allocator;
    /* Fixed-buffer mode: if buffer != NULL the pool lives entirely inside
     * buffer[0..buffer_size) and never calls any allocator.  When the buffer
     * is full, updates return CHAMP_ENOMEM and leave the map unchanged.
     * The buffer must stay valid until the pool is destroyed. */
    void *buffer;
    size_t buffer_size;
    /* Size of the first arena chunk (bytes, at least 1 KiB: smaller values
     * are raised to it); 0 = 16 KiB.  Later chunks grow
     * geometrically (each is 1/32 of the bytes already reserved, at least
     * this size), so fresh arena space never exceeds ~3% of what is
     * reserved. */
    size_t chunk_size;
    /* Fixed-buffer mode: fraction (0,1] of the buffer at which
     * on_watermark fires; 0 means 0.8. */
    double watermark;
    champ_watermark_fn on_watermark;
    void *watermark_ctx;
} champ_pool_config;

typedef uint64_t (*champ_hash_fn)(const void *key, void *ctx);
typedef bool (*champ_equal_fn)(const void *a, const void *b, void *ctx);
typedef void (*champ_ref_fn)(void *p, void *ctx);

typedef struct champ_config {
    champ_key_kind kind;
    /* CHAMP_KEY_GENERIC only (required there, must be NULL otherwise). */
    champ_hash_fn hash;
    champ_equal_fn equal;
    champ_ref_fn key_retain;   /* optional */
    champ_ref_fn key_release;  /* optional: map dropped its last reference */
    /* Any kind. */
    champ_ref_fn val_retain;   /* optional */
    champ_ref_fn val_release;  /* optional: map dropped its last reference */
    void *ctx;                 /* passed to every callback above */
    /* Seed for the built-in hashes (U64, BYTES).  If fixed_seed is false the
     * map draws a random seed from the OS (getentropy). */
    uint64_t seed;
    bool fixed_seed;
    /* Pool to allocate from.  NULL: make a private pool from pool_config
     * (itself NULL = defaults).  A map keeps its pool alive. */
    champ_pool *pool;
    const champ_pool_config *pool_config;
} champ_config;

/* ------------------------------------------------------------------ */
/* Pools                                                               */
/* ------------------------------------------------------------------ */

/* Makes a pool.  Returns CHAMP_OK and *out, CHAMP_EINVAL (NULL out, both an
 * allocator and a buffer, a buffer too small to hold the pool's own header,
 * watermark outside [0,1], an allocator with some functions NULL) or
 * CHAMP_ENOMEM.  The caller owns one reference to the pool. */
CHAMP_API champ_status champ_pool_new(const champ_pool_config *cfg,
                                      champ_pool **out);

/* Drops the caller's reference.  The pool is destroyed (its chunks given
 * back) when the last map using it is freed as well.  NULL is a no-op. */
CHAMP_API void champ_pool_free(champ_pool *pool);

/* ------------------------------------------------------------------ */
/* Maps                                                                */
/* ------------------------------------------------------------------ */

/* Makes an empty map.  Returns CHAMP_OK and *out, CHAMP_EINVAL (NULL cfg or
 * out, unknown kind, missing or superfluous hash/equal, key callbacks on a
 * non-generic kind), CHAMP_EUNSUPPORTED (the CPU lacks POPCNT and the
 * library was built to use it) or CHAMP_ENOMEM.  On error *out is NULL. */
CHAMP_API champ_status champ_new(const champ_config *cfg, champ_map **out);

/* Shorthand for champ_new with kind U64 / BYTES and all defaults. */
CHAMP_API champ_status champ_new_u64(champ_map **out);
CHAMP_API champ_status champ_new_bytes(champ_map **out);

/* Releases the map: every node, key and value it alone holds is freed (with
 * the release callbacks); nodes shared with other maps lose one reference.
 * Iterative, so deep or huge maps cannot overflow the stack.  NULL: no-op. */
CHAMP_API void champ_free(champ_map *m);

/* O(1) copy: *out becomes a new map in the same pool sharing every node with
 * m.  Afterwards either map may change without affecting the other.
 * Returns CHAMP_OK, CHAMP_EINVAL (NULL argument; release callbacks without
 * retain callbacks) or CHAMP_ENOMEM (*out NULL). */
CHAMP_API champ_status champ_copy(const champ_map *m, champ_map **out);

/* Removes every entry (as champ_free would), leaving an empty map.
 * Cannot fail on a valid map; CHAMP_EINVAL for NULL. */
CHAMP_API champ_status champ_clear(champ_map *m);

/* Number of entries, O(1).  0 for NULL. */
CHAMP_API size_t champ_size(const champ_map *m);

CHAMP_API champ_key_kind champ_kind(const champ_map *m);
/* The pool the map allocates from (borrowed, not a new reference). */
CHAMP_API champ_pool *champ_pool_of(const champ_map *m);
/* The seed used by the built-in hashes of this map. */
CHAMP_API uint64_t champ_seed(const champ_map *m);

/*
 * Per-kind operations.  Common contracts:
 *
 * get:      CHAMP_OK and *val_out = value (val_out may be NULL), or
 *           CHAMP_NOTFOUND (*val_out untouched).  Never allocates.
 * contains: CHAMP_OK or CHAMP_NOTFOUND.
 * set:      inserts (CHAMP_OK) or replaces the value (CHAMP_REPLACED).  On
 *           replace, if old_out is not NULL the old value is handed to the
 *           caller, who then owns the map's reference to it (no val_release
 *           is called); if old_out is NULL the map releases it.  On insert,
 *           *old_out is set to NULL.  Errors leave the map unchanged and
 *           *old_out untouched.
 * remove:   CHAMP_OK, handing back the value as set does, or CHAMP_NOTFOUND.
 * pset / premove (pure persistent forms): leave m untouched and make *out a
 *           new map (same pool, sharing nodes with m) that has the update
 *           applied; the status is the one set/remove would return (for
 *           premove of an absent key, *out is a plain copy).  Errors: *out
 *           is NULL and m is unchanged.
 */

/* Fixed-buffer pools: a remove from a map that owns its nodes always
 * succeeds, except the one that empties a subtree's second-last slot (the
 * surviving entry moves up, and its new parent needs a block 8 bytes larger):
 * when the full buffer holds no such block even after compacting its free
 * lists, that remove returns CHAMP_ENOMEM and the map is unchanged. */

/* CHAMP_KEY_U64 */
CHAMP_API champ_status champ_get_u64(const champ_map *m, uint64_t key,
                                     void **val_out);
CHAMP_API champ_status champ_contains_u64(const champ_map *m, uint64_t key);
CHAMP_API champ_status champ_set_u64(champ_map *m, uint64_t key, void *val,
                                     void **old_out);
CHAMP_API champ_status champ_remove_u64(champ_map *m, uint64_t key,
                                        void **val_out);
CHAMP_API champ_status champ_pset_u64(const champ_map *m, uint64_t key,
                                      void *val, champ_map **out);
CHAMP_API champ_status champ_premove_u64(const champ_map *m, uint64_t key,
                                         champ_map **out);

/* CHAMP_KEY_BYTES: the map copies the key bytes on insert (the caller keeps
 * its buffer).  key may be NULL only when len is 0.  The _str forms take a
 * NUL-terminated string (the NUL is not part of the key). */
CHAMP_API champ_status champ_get_bytes(const champ_map *m, const void *key,
                                       size_t len, void **val_out);
CHAMP_API champ_status champ_contains_bytes(const champ_map *m,
                                            const void *key, size_t len);
CHAMP_API champ_status champ_set_bytes(champ_map *m, const void *key,
                                       size_t len, void *val, void **old_out);
CHAMP_API champ_status champ_remove_bytes(champ_map *m, const void *key,
                                          size_t len, void **val_out);
CHAMP_API champ_status champ_pset_bytes(const champ_map *m, const void *key,
                                        size_t len, void *val,
                                        champ_map **out);
CHAMP_API champ_status champ_premove_bytes(const champ_map *m,
                                           const void *key, size_t len,
                                           champ_map **out);
CHAMP_API champ_status champ_get_str(const champ_map *m, const char *key,
                                     void **val_out);
CHAMP_API champ_status champ_set_str(champ_map *m, const char *key, void *val,
                                     void **old_out);
CHAMP_API champ_status champ_remove_str(champ_map *m, const char *key,
                                        void **val_out);

/* CHAMP_KEY_GENERIC: keys are pointers compared with cfg.equal.  set takes
 * ownership of key only when it inserts (CHAMP_OK); on CHAMP_REPLACED the map
 * keeps the key it already had and the caller keeps key.  remove hands back
 * the stored key as well (key_out may be NULL: then key_release is called). */
CHAMP_API champ_status champ_get(const champ_map *m, const void *key,
                                 void **val_out);
CHAMP_API champ_status champ_contains(const champ_map *m, const void *key);
CHAMP_API champ_status champ_set(champ_map *m, void *key, void *val,
                                 void **old_out);
CHAMP_API champ_status champ_remove(champ_map *m, const void *key,
                                    void **key_out, void **val_out);
CHAMP_API champ_status champ_pset(const champ_map *m, void *key, void *val,
                                  champ_map **out);
CHAMP_API champ_status champ_premove(const champ_map *m, const void *key,
                                     champ_map **out);

/* ------------------------------------------------------------------ */
/* Iteration                                                           */
/* ------------------------------------------------------------------ */

/* A key as iteration reports it: u64 for CHAMP_KEY_U64; ptr/len for
 * CHAMP_KEY_BYTES (ptr points at the map's copy, NUL-terminated, valid while
 * the entry is in some map); ptr for CHAMP_KEY_GENERIC (len 0). */
typedef struct champ_key {
    uint64_t u64;
    const void *ptr;
    size_t len;
} champ_key;

#define CHAMP_ITER_DEPTH 15

/* Allocation-free iterator; its fields are private.  The order is the trie
 * order (by hash), the same for equal contents and seed, except that keys
 * whose full 64-bit hashes collide come in the order they were inserted. */
typedef struct champ_iter {
    const void *_cur; /* next entry of the current node */
    const void *_end; /* end of the current node's entries */
    const void *_node[CHAMP_ITER_DEPTH];
    uint32_t _pos[CHAMP_ITER_DEPTH];
    int _depth;
    const champ_map *_map;
    uint64_t _stamp;
    champ_key_kind _kind;
} champ_iter;

/* Starts iterating m.  The iterator reads m's nodes directly: it stays valid
 * while *other* maps change (including the map m was copied from), but m
 * itself must not change or be freed while it is used; debug builds detect
 * a change and champ_iter_next then returns CHAMP_EMODIFIED.
 * Returns CHAMP_OK or CHAMP_EINVAL (NULL argument). */
CHAMP_API champ_status champ_iter_init(champ_iter *it, const champ_map *m);

/* Next entry: CHAMP_OK with *key and *val filled (either may be NULL),
 * CHAMP_NOTFOUND at the end, CHAMP_EINVAL for NULL it, CHAMP_EMODIFIED (debug
 * builds) if the map changed since champ_iter_init. */
CHAMP_API champ_status champ_iter_next(champ_iter *it, champ_key *key,
                                       void **val);

/* The next entries, up to cap of them: their keys into keys[] and values
 * into vals[] (either may be NULL), in the order champ_iter_next gives
 * them (the two may be mixed).  *got receives how many (cap at most).
 * This is the fast way to walk a map: entries come out a node's run at a
 * time, with no call per entry.  Returns CHAMP_OK (*got >= 1),
 * CHAMP_NOTFOUND at the end (*got = 0), CHAMP_EINVAL (NULL it or got, cap
 * 0) or CHAMP_EMODIFIED (debug builds) as champ_iter_next. */
CHAMP_API champ_status champ_iter_next_n(champ_iter *it, champ_key *keys,
                                         void **vals, size_t cap, size_t *got);

/* Calls fn for every entry until it returns nonzero.  Returns CHAMP_OK
 * (visited everything), CHAMP_NOTFOUND (fn stopped early) or CHAMP_EINVAL.
 * fn must not change m. */
typedef int (*champ_visit_fn)(const champ_key *key, void *val, void *ctx);
CHAMP_API champ_status champ_foreach(const champ_map *m, champ_visit_fn fn,
                                     void *ctx);

/* ------------------------------------------------------------------ */
/* Telemetry and checking                                              */
/* ------------------------------------------------------------------ */

#define CHAMP_STATS_SLOTS 33

typedef struct champ_pool_stats {
    size_t chunks;            /* arena chunks held                          */
    size_t bytes_reserved;    /* bytes in chunks (capacity in fixed mode)   */
    size_t bytes_live;        /* bytes in blocks handed out and not freed   */
    size_t bytes_peak;        /* highest bytes_live seen                    */
    size_t bytes_free_listed; /* bytes waiting in free lists                */
    double utilization;       /* bytes_live / bytes_reserved                */
    size_t maps;              /* maps alive in the pool                     */
    bool fixed;               /* fixed-buffer mode                          */
    /* Counters below are exact when the library is built with
     * CHAMP_STATS (debug builds; `make STATS=1`), else zero and
     * counters_enabled is false. */
    bool counters_enabled;
    uint64_t allocs;          /* blocks handed out                          */
    uint64_t allocs_free_list;/* ... of which recycled from a free list     */
    uint64_t allocs_arena;    /* ... of which carved from fresh arena space */
    uint64_t frees;           /* blocks given back                          */
    uint64_t backing_calls;   /* calls to the backing allocator (always on) */
    uint64_t alloc_failures;  /* requests refused (always on)               */
} champ_pool_stats;

typedef struct champ_stats {
    size_t entries;
    size_t nodes_bitmap;      /* bitmap nodes                               */
    size_t nodes_collision;   /* collision nodes                            */
    size_t nodes_shared;      /* nodes with a reference count above 1       */
    size_t nodes_by_slots[CHAMP_STATS_SLOTS]; /* bitmap nodes by slots used */
    size_t collision_entries; /* entries held in collision nodes            */
    size_t node_bytes;        /* bytes of the nodes reachable from this map */
    size_t slack_bytes;       /* spare room in their blocks: growth room,   */
                              /* or left by removes done in place (used by  */
                              /* later inserts into the node, in place)     */
    size_t key_bytes;         /* bytes of key copies (BYTES kind)           */
    unsigned depth_max;       /* deepest entry (root = depth 1)             */
    double depth_mean;        /* mean depth of an entry                     */
    double bytes_per_entry;   /* (node + slack + key bytes) / entries       */
    champ_pool_stats pool;
} champ_stats;

/* Fills *out by walking m (O(size)).  Returns CHAMP_OK or CHAMP_EINVAL. */
CHAMP_API champ_status champ_stats_get(const champ_map *m, champ_stats *out);
CHAMP_API champ_status champ_pool_stats_get(const champ_pool *p,
                                            champ_pool_stats *out);
/* Prints the stats as a readable table.  Returns CHAMP_OK or CHAMP_EINVAL. */
CHAMP_API champ_status champ_stats_print(const champ_map *m, FILE *f);

/* Walks m and checks every invariant: bitmaps vs node sizes, hash slices vs
 * positions, pairs (two distinct keys in trie order), depth bound, collision
 * nodes (same full hash, >= 3 distinct keys, only at the bottom), canonical
 * form (every child subtree holds >= 3 keys), the entry count, and, over the
 * whole pool, that every node's reference count equals the references the
 * pool's live maps hold, that the pool's live bytes equal what they use, and
 * that its books balance (reserved = live + free lists + fresh space +
 * chunk headers).
 * Needs no memory (the census uses a spare header word of each node), so it
 * works in fixed-buffer pools too.  Returns CHAMP_OK, CHAMP_ECORRUPT (and
 * prints what failed to stderr) or CHAMP_EINVAL. */
CHAMP_API champ_status champ_validate(const champ_map *m);

/* Testing hook, in builds with CHAMP_FAULTS or CHAMP_DEBUG: after n more
 * block allocations succeed, every block allocation of the pool fails (as if
 * the pool were out of memory) until the hook is reset with n < 0.  Returns
 * CHAMP_OK, CHAMP_EINVAL (NULL pool) or CHAMP_EUNSUPPORTED (other builds). */
CHAMP_API champ_status champ_pool_fail_after(champ_pool *p, long n);

/* Prints the trie's shape, one node per line, indented by depth. */
CHAMP_API champ_status champ_dump(const champ_map *m, FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* CHAMP_H */

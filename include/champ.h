/* SPDX-License-Identifier: MIT
 *
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
 * Keys whose full 64-bit hashes collide share a collision node at the bottom
 * of the trie (a user's bad hash, or keys chosen to collide).  Byte keys are
 * kept there in byte order (memcmp, then the shorter first) and found by
 * bisection: O(log n) byte comparisons; a node of more than 128 byte keys
 * switches to a hash index over a second, independent hash of the bytes:
 * O(1) expected per operation.  Generic keys get the ordered layout with the
 * optional `compare` callback: O(log n) compare calls per operation, plus a
 * memmove of the entries after the key (O(n) bytes) for an insert or remove;
 * without compare a collision node is a list, scanned with equal: O(n) equal
 * calls per operation.
 *
 * ------------------------------------------------------------------------
 * Conventions
 * ------------------------------------------------------------------------
 *
 * Status: every function that can fail returns a champ_status, which is
 * CHAMP_OK (0) on success and a negative error otherwise.  There are no
 * positive statuses: `if (champ_set_u64(m, k, v, NULL) != CHAMP_OK)` is the
 * error test.  On any error the map is exactly as it was before the call and
 * nothing has leaked.
 *
 * Outcomes are not statuses.  Lookups (get, contains) return bool: true when
 * the key is present, so `if (champ_contains_u64(m, k))` reads right.  An
 * update says what it found through an optional champ_prior: whether the key
 * was there, and its old value (and, for generic keys, the stored key) handed
 * to the caller.
 *
 * Structs that may grow (champ_config, champ_pool_config) start with a
 * `size` field: initialise them with CHAMP_CONFIG_INIT / CHAMP_POOL_CONFIG_INIT
 * (or set size = sizeof the struct and zero the rest).  A program compiled
 * against an older header passes its smaller size and keeps working; a size
 * below this version's (the first layout with the field), 0 included, is
 * refused with CHAMP_EINVAL, and so is a bigger struct whose bytes this
 * library does not know are not all zero.  Functions that fill a stats struct
 * take its size as an argument and fill only what fits.
 *
 * ------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------
 *
 * Nodes come from a champ_pool (free lists per 8-byte size class over
 * geometrically growing arena chunks, or one fixed caller buffer).  Maps that
 * share a pool can share nodes.  Every version of a map (copies, p-forms,
 * champ_new_like) shares one type: its key kind, callbacks, seed and pool.
 *
 * ------------------------------------------------------------------------
 * Thread model
 * ------------------------------------------------------------------------
 *
 * A pool is plain (the default for champ_pool_new) or concurrent
 * (champ_pool_config.concurrent, and the default pool that champ_new_u64,
 * champ_new_bytes and champ_new_set_* maps share).  Maps of different pools
 * are independent.  Within a pool, which calls may overlap in time:
 *
 *   calls (of one pool)            plain pool              concurrent pool
 *   read a map (get, contains,     with any read; with     with any read, copy,
 *     size, iterate, foreach,      updates of OTHER maps   free and update of
 *     equal, diff, subset, ...)    (versions sharing       OTHER maps
 *                                  nodes included)
 *   copy m, p-forms from m,        no overlap with any     with reads of m and
 *     combine (union, ...) from m  other writer call       copies of m, and with
 *                                                          anything on OTHER maps
 *   update m (set, remove, add,    no overlap with any     with anything on
 *     upsert, apply, clear)        other writer call       OTHER maps
 *   free m, new, new_like          no overlap with any     with anything on
 *                                  other writer call       OTHER maps
 *   cell load / store / cas        -                       with anything
 *   telemetry (stats, pool stats,  with reads, not with    with anything
 *     stats_print, dump)           any writer call         (figures of a moving
 *                                                          pool are approximate)
 *   validate, pool_trim,           alone                   alone
 *     pool_free
 *
 * In both modes a map is never read, copied or freed while one thread
 * updates that same map (one writer per map), and two threads never update
 * the same map at once: that is a data race.  A plain pool is one writer
 * domain: its reference counts are plain integers, and an update writes no
 * node another map can reach except counts, which readers never look at.
 * In a concurrent pool counts are atomic, so versions pass freely between
 * threads: a thread may take a snapshot (champ_copy, or champ_cell_load),
 * derive versions from it and drop them while other threads do the same
 * with the same nodes.
 *
 * ------------------------------------------------------------------------
 * Callbacks: what they may do
 * ------------------------------------------------------------------------
 *
 * The callbacks are hash, equal, compare, bytes_hash, key_retain,
 * key_release, val_retain, val_release (of a map's config), the pool's
 * watermark, and the visit function of champ_foreach.  Each runs during an *operation on a map m*:
 * a read of m (a lookup, champ_foreach, or a p-form that derives a new map
 * from m), an update of m (set, remove, clear) or champ_free(m).  The
 * watermark runs during whatever update allocated.  While a callback runs:
 *
 *   action (from inside the callback)      during a read     during an update
 *                                          of m              or free of m
 *   read any map, m included               allowed           allowed
 *   copy m (champ_copy; champ_cell_new,    allowed           CHAMP_EBUSY
 *   store or cas of m into a cell)
 *   update or clear m                      CHAMP_EBUSY       CHAMP_EBUSY
 *   free m                                 deferred          deferred (free:
 *                                                            already going)
 *   read, copy, update, free any other     allowed           allowed
 *   map, of any pool (versions that
 *   share nodes with m included)
 *
 * "Deferred" means champ_free(m) returns at once and m is freed when the
 * outermost operation on m returns (a lookup then reports not found and
 * leaves val_out alone; an update's or p-form's status and result stand).
 * The thread model still applies: a callback is code of the calling
 * thread.  Callbacks must return (no longjmp out of champ).
 *
 * Hash, bytes_hash, equal and compare run before an update changes anything
 * (compare also while a bulk build or the set algebra puts a new collision
 * node into key order, before the result is published); retains run while
 * a new version is built, before it is published; releases run when the
 * update is complete (or during clear/free).  Reading m from any callback
 * sees either the old or the new contents, never a mix.
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

/* The one place that defines the version (the Makefile reads it here). */
#define CHAMP_VERSION_MAJOR 0
#define CHAMP_VERSION_MINOR 2
#define CHAMP_VERSION_PATCH 0
#define CHAMP_VERSION_NUMBER                                                \
    (CHAMP_VERSION_MAJOR * 10000 + CHAMP_VERSION_MINOR * 100 + CHAMP_VERSION_PATCH)

/* The version of the library actually linked: "MAJOR.MINOR.PATCH", and the
 * same as MAJOR * 10000 + MINOR * 100 + PATCH.  Compare with the macros
 * above to detect a header/library mismatch. */
CHAMP_API const char *champ_version(void);
CHAMP_API unsigned champ_version_number(void);

/* ------------------------------------------------------------------ */
/* Status                                                              */
/* ------------------------------------------------------------------ */

typedef enum champ_status {
    CHAMP_OK = 0,           /* done                                        */
    CHAMP_ENOMEM = -1,      /* allocation failed; map unchanged            */
    CHAMP_EINVAL = -2,      /* NULL argument or invalid configuration      */
    CHAMP_EKIND = -3,       /* key-kind function on a map of another kind  */
    CHAMP_EPOOL = -4,       /* a map of another type than a cell's         */
    CHAMP_EMODIFIED = -5,   /* iteration: the map changed under it         */
    CHAMP_ECORRUPT = -6,    /* validate: an invariant does not hold        */
    CHAMP_EUNSUPPORTED = -7,/* CPU lacks an instruction the build uses;    */
                            /* or a testing hook absent from this build    */
    CHAMP_EBUSY = -8        /* the map is mid-operation: a callback tried  */
                            /* to change it (see "Callbacks" above)        */
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

/* Backing allocator for the pool's arena chunks, the pool header, the
 * blocks of map handle pages (1 KiB, 30 handles each) and map types, and
 * the scratch memory of a call (champ_apply's arrays; the set algebra's
 * list where it merges more than 8 keys of one full hash).  Sizes
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
 * watermark * capacity (fixed-buffer mode only); after it ran, it can run
 * again only once the live bytes have fallen below the mark less an eighth
 * of it (so an update that frees right after it allocates does not fire it
 * twice), then rise through the mark again.  It runs inside the
 * allocation of an update: see "Callbacks" for what it may do (freeing old
 * versions to make room is the intended use; that includes a cell whose
 * champ_cell_load is the call allocating: its snapshot keeps its own
 * references). */
typedef void (*champ_watermark_fn)(champ_pool *pool, size_t live_bytes,
                                   size_t capacity, void *ctx);

typedef struct champ_pool_config {
    size_t size; /* sizeof(champ_pool_config): use CHAMP_POOL_CONFIG_INIT */
    /* Backing allocator; NULL means libc malloc/realloc/free. */
    const champ_allocator *allocator;
    /* Fixed-buffer mode: if buffer != NULL the pool lives entirely inside
     * buffer[0..buffer_size) and never calls any allocator.  When the buffer
     * is full, updates return CHAMP_ENOMEM and leave the map unchanged.
     * The buffer must stay valid until the pool is destroyed.  Nodes keep
     * no growth room here: an insert into a big collision node (keys of
     * one full hash) moves it, O(c) for a node of c keys. */
    void *buffer;
    size_t buffer_size;
    /* Size of the first arena chunk (bytes, at least 1 KiB: smaller values
     * are raised to it); 0 = 16 KiB.  Later chunks grow geometrically (each
     * is 1/32 of the bytes already reserved, at least this size), so fresh
     * arena space never exceeds ~3% of what is reserved. */
    size_t chunk_size;
    /* Fixed-buffer mode: fraction (0,1] of the buffer at which
     * on_watermark fires; 0 means 0.8. */
    double watermark;
    champ_watermark_fn on_watermark;
    void *watermark_ctx;
    /* Concurrent mode (see "Thread model"): any thread may read, copy and
     * free any map of the pool at any time, and threads may update
     * different maps at once.  Reference counts become atomic; each thread
     * allocates from a heap of its own (its free lists and chunks: no lock
     * on the way), taken at its first use of the pool and left for other
     * threads when it exits.  A block goes to the heap of the thread that
     * frees it; heaps that collect many free blocks pass them to threads
     * that need them, so memory stays bounded when one thread allocates
     * and another frees.  Arena pools only (with a buffer: CHAMP_EINVAL).
     * The default pool of champ_new_u64() and friends is concurrent. */
    bool concurrent;
    /* Huge pages.  With the libc allocator (allocator NULL), once a pool
     * reserves 1 MiB (or a champ_apply batch is about to need that much)
     * its new chunks are cut from anonymous mappings aligned
     * to 2 MiB and advised for transparent huge pages (Linux madvise
     * MADV_HUGEPAGE; a no-op where the kernel has them off): fresh chunk
     * space then costs one page fault per 2 MiB instead of one per 4 KiB,
     * and the TLB covers more of a big trie.  Chunk sizes and the reserved
     * bytes are as without; the process's resident memory may exceed them
     * by up to 2 MiB (the huge page being filled).  Likewise, once the
     * pool's map handles and types take 1 MiB (some 30,000 maps), its
     * further handle pages come from 2 MiB slabs so mapped (a million
     * empty maps made and freed: 28-33 ns a map, 131 from malloc, on this
     * project's VM); trim gives a slab back by OS pages, so a page that
     * keeps one live handle keeps its 4 KiB.  true turns both off (every
     * chunk and handle page from malloc): for a process that forks while it
     * updates a big map, where copy-on-write would copy 2 MiB per page
     * touched, or one with many private pools of a few MiB each.  The
     * default pool has it on. */
    bool no_huge_pages;
} champ_pool_config;

#define CHAMP_POOL_CONFIG_INIT { sizeof(champ_pool_config), 0, 0, 0, 0, 0, 0, 0, 0, 0 }

typedef uint64_t (*champ_hash_fn)(const void *key, void *ctx);
typedef bool (*champ_equal_fn)(const void *a, const void *b, void *ctx);
typedef void (*champ_ref_fn)(void *p, void *ctx);
/* A total order of generic keys: negative, 0 or positive as a sorts before,
 * equal to (exactly when equal(a, b)) or after b. */
typedef int (*champ_compare_fn)(const void *a, const void *b, void *ctx);
/* A hash of byte keys, in place of the built-in one (seed: the map's). */
typedef uint64_t (*champ_bytes_hash_fn)(const void *key, size_t len, uint64_t seed,
                                        void *ctx);

typedef struct champ_config {
    size_t size; /* sizeof(champ_config): use CHAMP_CONFIG_INIT(kind) */
    champ_key_kind kind;
    /* A set: keys without values (entries are one word, so a u64 set takes
     * about half the memory of a map).  Values are NULL throughout: set
     * takes only NULL, get reports NULL; val callbacks must be NULL. */
    bool set;
    /* CHAMP_KEY_GENERIC only (required there, must be NULL otherwise). */
    champ_hash_fn hash;
    champ_equal_fn equal;
    champ_ref_fn key_retain;   /* optional */
    champ_ref_fn key_release;  /* optional: map dropped its last reference */
    /* Any kind. */
    champ_ref_fn val_retain;   /* optional */
    champ_ref_fn val_release;  /* optional: map dropped its last reference */
    void *ctx;                 /* passed to every callback above */
    /* Seed for the built-in hashes (U64, BYTES; bytes_hash gets it too).
     * If fixed_seed is false the map gets a fresh seed (one OS entropy read
     * per process, mixed with a counter). */
    uint64_t seed;
    bool fixed_seed;
    /* Pool to allocate from.  NULL: make a private pool from pool_config
     * (itself NULL = defaults).  A map keeps its pool alive. */
    champ_pool *pool;
    const champ_pool_config *pool_config;
    /* CHAMP_KEY_GENERIC only, optional: a total order of the keys,
     * consistent with equal (0 exactly for equal keys).  Collision nodes
     * then keep their keys in this order and find them by bisection
     * (O(log n) calls); without it they are scanned with equal (O(n)).
     * Maps with different compare functions are combined key by key. */
    champ_compare_fn compare;
    /* CHAMP_KEY_BYTES only, optional: hashes byte keys instead of the
     * built-in XXH3 (called with the key, which may be NULL when its length
     * is 0, the map's seed and ctx; a callback).  A weak one puts many keys
     * in collision nodes, which stay fast (see "Key kinds"); tests use a
     * constant to make every key collide.  Maps combined by the set algebra
     * hash alike only with the same bytes_hash, ctx and seed; others are
     * combined key by key. */
    champ_bytes_hash_fn bytes_hash;
} champ_config;

#define CHAMP_CONFIG_INIT(kind) { sizeof(champ_config), (kind), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }

/* ------------------------------------------------------------------ */
/* Pools                                                               */
/* ------------------------------------------------------------------ */

/* Makes a pool.  cfg may be NULL (defaults).  Returns CHAMP_OK and *out,
 * CHAMP_EINVAL (NULL out, cfg->size 0 or below this version's, both an
 * allocator and a buffer, a buffer_size without a buffer, a buffer too
 * small to hold the pool's own header, watermark outside [0,1], an
 * allocator with some functions NULL, a watermark without a buffer, a
 * concurrent pool with a buffer), CHAMP_EUNSUPPORTED (the CPU lacks POPCNT
 * and the library was built to use it) or CHAMP_ENOMEM; on an error *out
 * is NULL (when out is not NULL).  The caller owns one reference to the
 * pool. */
CHAMP_API champ_status champ_pool_new(const champ_pool_config *cfg,
                                      champ_pool **out);

/* Drops the caller's reference.  The pool is destroyed (its chunks given
 * back) when the last map using it is freed as well; a fixed buffer is
 * then the caller's again, to reuse as plain memory (under ASan, and
 * valgrind with CHAMP_VALGRIND, no byte of it stays poisoned).  NULL is a
 * no-op. */
CHAMP_API void champ_pool_free(champ_pool *pool);

/* ------------------------------------------------------------------ */
/* Maps                                                                */
/* ------------------------------------------------------------------ */

/* Makes an empty map (no node is allocated until the first insert).
 * Returns CHAMP_OK and *out, CHAMP_EINVAL (NULL cfg or out, cfg->size 0,
 * unknown kind, missing or superfluous hash/equal, key callbacks or compare
 * on a non-generic kind, bytes_hash on a non-bytes kind, both pool and
 * pool_config), CHAMP_EUNSUPPORTED (the CPU lacks POPCNT and the library
 * was built to use it) or CHAMP_ENOMEM.  On error *out is NULL (when out is
 * not NULL). */
CHAMP_API champ_status champ_new(const champ_config *cfg, champ_map **out);

/* Empty maps with kind U64 / BYTES and no callbacks.  They share the
 * process-wide concurrent pool (made at the first call, kept while the
 * process runs and given back at its exit if no map of it is left; any
 * thread may use them, see "Thread model") and one type per kind: maps
 * made this way hash the same way (one seed per kind and process), so
 * equality and set algebra between them take the fast path, and an empty
 * one costs one 32-byte handle.  champ_new() without cfg->pool makes a
 * private pool from cfg->pool_config (plain unless that says concurrent).  Returns CHAMP_OK, CHAMP_EINVAL (NULL out),
 * CHAMP_EUNSUPPORTED or CHAMP_ENOMEM. */
CHAMP_API champ_status champ_new_u64(champ_map **out);
CHAMP_API champ_status champ_new_bytes(champ_map **out);

/* Sets: maps of keys without values (cfg.set = true), with every map
 * operation.  Shorthands for U64 / BYTES sets as above (same pool, one
 * type per kind of set). */
CHAMP_API champ_status champ_new_set_u64(champ_map **out);
CHAMP_API champ_status champ_new_set_bytes(champ_map **out);
/* Whether m is a set (false for NULL). */
CHAMP_API bool champ_is_set(const champ_map *m);

/* An empty map of the same type as m: same kind, callbacks, seed and pool
 * (so the two can share nodes and be compared fast).  The cheap way to make
 * many maps of one configuration.  Returns CHAMP_OK, CHAMP_EINVAL (NULL
 * argument) or CHAMP_ENOMEM (*out NULL). */
CHAMP_API champ_status champ_new_like(const champ_map *m, champ_map **out);

/* Releases the map: every node, key and value it alone holds is freed (with
 * the release callbacks); nodes shared with other maps lose one reference.
 * Iterative, so deep or huge maps cannot overflow the stack.  NULL: no-op.
 * From a callback of an operation on m, the free is deferred to the end of
 * that operation ("Callbacks" above). */
CHAMP_API void champ_free(champ_map *m);

/* O(1) copy: *out becomes a new map in the same pool sharing every node with
 * m.  Afterwards either map may change without affecting the other.  (The
 * first update of either that changes a node they share copies that node's
 * path and counts the children the copies share; the copy, a u64 map
 * without callbacks, in a plain pool or changed by the thread that made it
 * in a concurrent pool, borrows them instead at its first update and pays
 * those counts at its next, if any: a copy changed once and freed counts
 * nothing, and m edited while the copy lives copies as above.)
 * Returns CHAMP_OK, CHAMP_EINVAL (NULL argument; release callbacks without
 * retain callbacks), CHAMP_EBUSY (from a callback of an update of m) or
 * CHAMP_ENOMEM (*out NULL). */
CHAMP_API champ_status champ_copy(const champ_map *m, champ_map **out);

/* Removes every entry (as champ_free would), leaving an empty map.  Returns
 * CHAMP_OK, CHAMP_EINVAL (NULL) or CHAMP_EBUSY (from a callback of an
 * operation on m); it cannot fail otherwise. */
CHAMP_API champ_status champ_clear(champ_map *m);

/* Number of entries, O(1).  0 for NULL. */
CHAMP_API size_t champ_size(const champ_map *m);

/* The map's key kind (0 for NULL). */
CHAMP_API champ_key_kind champ_kind(const champ_map *m);
/* The pool the map allocates from (borrowed, not a new reference). */
CHAMP_API champ_pool *champ_pool_of(const champ_map *m);
/* The seed used by the built-in hashes of this map. */
CHAMP_API uint64_t champ_seed(const champ_map *m);

/*
 * Per-kind operations.  Common contracts:
 *
 * get:      true when the key is present: then *val_out = its value (val_out
 *           may be NULL).  false when it is absent, and for a NULL map, a map
 *           of another kind or an invalid key (NULL with a nonzero length);
 *           *val_out is then untouched.  Never allocates, never fails.
 * contains: the same, without the value.
 * set:      inserts the key or replaces its value.  Returns CHAMP_OK or an
 *           error.  With prior == NULL a replaced value is released
 *           (val_release).  With prior != NULL: prior->found tells whether
 *           the key was there; if it was, prior->val is the old value and the
 *           caller now owns the map's reference to it (no val_release is
 *           called); if not, prior->val is NULL.  prior->key is NULL (the map
 *           keeps the key it had).  On error *prior is untouched.
 * remove:   removes the key if present.  Returns CHAMP_OK (whether or not it
 *           was there) or an error.  prior as for set: found, and the value
 *           (for generic keys also prior->key, the stored key) handed to the
 *           caller, who then owns them; with prior == NULL they are released.
 * add:      inserts the key if it is absent, never replaces: a set's insert
 *           (a map gets the key with a NULL value).  Returns CHAMP_OK or an
 *           error; *added (if not NULL) tells whether the key was new.
 *           Generic keys: the map takes ownership of key when it was added.
 * On a set, set accepts only a NULL value (else CHAMP_EINVAL) and get
 * reports NULL.
 * pset / premove (pure persistent forms): leave m untouched and make *out a
 *           new map (same type, sharing nodes with m) with the update
 *           applied (for premove of an absent key, *out is a plain copy).
 *           Returns CHAMP_OK or an error (*out is then NULL).
 * Errors of every update: CHAMP_EINVAL (NULL map, NULL out, invalid key),
 * CHAMP_EKIND (a map of another kind), CHAMP_EBUSY (from a callback of an
 * operation on m: see "Callbacks"), CHAMP_ENOMEM.
 *
 * Removing while iterating: iterate a copy, remove from the original.
 *     champ_map *snap;
 *     champ_copy(m, &snap);                        O(1)
 *     ...iterate snap, champ_remove_*(m, ...)...   m's changes copy paths
 *     champ_free(snap);                            what only snap held goes
 *
 * Fixed-buffer pools: a remove from a map that owns its nodes always
 * succeeds, except the one that empties a subtree's second-last slot (the
 * surviving entry moves up, and its new parent needs a block 8 bytes larger):
 * when the full buffer holds no such block even after compacting its free
 * lists, that remove returns CHAMP_ENOMEM and the map is unchanged.
 */

/* A key as iteration reports it: u64 for CHAMP_KEY_U64; ptr/len for
 * CHAMP_KEY_BYTES (ptr points at the map's copy, NUL-terminated, valid while
 * the entry is in some map); ptr for CHAMP_KEY_GENERIC (len 0). */
typedef struct champ_key {
    uint64_t u64;
    const void *ptr;
    size_t len;
} champ_key;

/* What an update found before it changed the map. */
typedef struct champ_prior {
    bool found;  /* the key was present                                    */
    void *val;   /* its value (found only): now owned by the caller        */
    void *key;   /* generic remove: the stored key, now owned by the caller;
                    NULL otherwise */
} champ_prior;

/* CHAMP_KEY_U64 */
CHAMP_API bool champ_get_u64(const champ_map *m, uint64_t key, void **val_out);
CHAMP_API bool champ_contains_u64(const champ_map *m, uint64_t key);
CHAMP_API champ_status champ_set_u64(champ_map *m, uint64_t key, void *val,
                                     champ_prior *prior);
CHAMP_API champ_status champ_add_u64(champ_map *m, uint64_t key, bool *added);
CHAMP_API champ_status champ_remove_u64(champ_map *m, uint64_t key,
                                        champ_prior *prior);
CHAMP_API champ_status champ_pset_u64(const champ_map *m, uint64_t key,
                                      void *val, champ_map **out);
CHAMP_API champ_status champ_premove_u64(const champ_map *m, uint64_t key,
                                         champ_map **out);

/* CHAMP_KEY_BYTES: the map copies the key bytes on insert (the caller keeps
 * its buffer).  key may be NULL only when len is 0; len < 2^32.  The _str
 * forms take a NUL-terminated string (the NUL is not part of the key); a
 * NULL string is an invalid key. */
CHAMP_API bool champ_get_bytes(const champ_map *m, const void *key, size_t len,
                               void **val_out);
CHAMP_API bool champ_contains_bytes(const champ_map *m, const void *key,
                                    size_t len);
CHAMP_API champ_status champ_set_bytes(champ_map *m, const void *key,
                                       size_t len, void *val,
                                       champ_prior *prior);
CHAMP_API champ_status champ_add_bytes(champ_map *m, const void *key,
                                       size_t len, bool *added);
CHAMP_API champ_status champ_remove_bytes(champ_map *m, const void *key,
                                          size_t len, champ_prior *prior);
CHAMP_API champ_status champ_pset_bytes(const champ_map *m, const void *key,
                                        size_t len, void *val,
                                        champ_map **out);
CHAMP_API champ_status champ_premove_bytes(const champ_map *m,
                                           const void *key, size_t len,
                                           champ_map **out);
CHAMP_API bool champ_get_str(const champ_map *m, const char *key,
                             void **val_out);
CHAMP_API bool champ_contains_str(const champ_map *m, const char *key);
CHAMP_API champ_status champ_set_str(champ_map *m, const char *key, void *val,
                                     champ_prior *prior);
CHAMP_API champ_status champ_add_str(champ_map *m, const char *key,
                                     bool *added);
CHAMP_API champ_status champ_remove_str(champ_map *m, const char *key,
                                        champ_prior *prior);
CHAMP_API champ_status champ_pset_str(const champ_map *m, const char *key,
                                      void *val, champ_map **out);
CHAMP_API champ_status champ_premove_str(const champ_map *m, const char *key,
                                         champ_map **out);

/* CHAMP_KEY_GENERIC: keys are pointers compared with cfg.equal.  set takes
 * ownership of key only when it inserts (prior->found false); when the key
 * was present the map keeps the key it already had and the caller keeps
 * key.  remove hands back the stored key in prior->key (with prior NULL,
 * key_release is called). */
CHAMP_API bool champ_get(const champ_map *m, const void *key, void **val_out);
CHAMP_API bool champ_contains(const champ_map *m, const void *key);
CHAMP_API champ_status champ_set(champ_map *m, void *key, void *val,
                                 champ_prior *prior);
CHAMP_API champ_status champ_add(champ_map *m, void *key, bool *added);
CHAMP_API champ_status champ_remove(champ_map *m, const void *key,
                                    champ_prior *prior);
CHAMP_API champ_status champ_pset(const champ_map *m, void *key, void *val,
                                  champ_map **out);
CHAMP_API champ_status champ_premove(const champ_map *m, const void *key,
                                     champ_map **out);

/* ------------------------------------------------------------------ */
/* Batched lookups                                                     */
/* ------------------------------------------------------------------ */

/* Looks up n keys at once: found[i] tells whether key i is present and
 * vals[i] is its value (NULL when absent; either array may be NULL).
 * Returns how many were found.  The lookups are walked a group at a time,
 * in stages that each prefetch what the next stage reads, so their cache
 * misses overlap: in a big map this costs far less than n single lookups
 * (at 1M u64 keys, 32 against 87 ns per key on the bench machine).
 * Misuse (NULL map with n > 0, wrong kind, NULL keys, an invalid byte key)
 * finds nothing (found[] all false, vals[] all NULL), and so does a batch
 * whose map a callback of its own (hash, equal) freed.  A read of m, like
 * get. */
CHAMP_API size_t champ_get_many_u64(const champ_map *m, const uint64_t *keys, size_t n,
                                    void **vals, bool *found);
CHAMP_API size_t champ_get_many_bytes(const champ_map *m, const void *const *keys,
                                      const size_t *lens, size_t n, void **vals,
                                      bool *found);
CHAMP_API size_t champ_get_many(const champ_map *m, const void *const *keys, size_t n,
                                void **vals, bool *found);
/* The same without the values. */
CHAMP_API size_t champ_contains_many_u64(const champ_map *m, const uint64_t *keys,
                                         size_t n, bool *found);
CHAMP_API size_t champ_contains_many_bytes(const champ_map *m, const void *const *keys,
                                           const size_t *lens, size_t n, bool *found);
CHAMP_API size_t champ_contains_many(const champ_map *m, const void *const *keys, size_t n,
                                     bool *found);

/* ------------------------------------------------------------------ */
/* Many keys at once, and one key in one descent                       */
/* ------------------------------------------------------------------ */

/* One update of a batch: set key to val, or remove key.  The key is given
 * as iteration reports keys (champ_key): u64 for CHAMP_KEY_U64, ptr/len for
 * CHAMP_KEY_BYTES, ptr for CHAMP_KEY_GENERIC. */
typedef struct champ_op {
    champ_key key;
    void *val;      /* set: the value (NULL for sets)                    */
    bool remove;    /* remove key instead of setting it                  */
} champ_op;

/* Applies n updates to m as if one after the other (a later update of a
 * key wins), in one pass over m in trie order: the updates are hashed and
 * ordered by trie position, then merged with m, so every node they touch is
 * rebuilt once and the rest is shared.  On an empty map this is the bulk
 * build: O(n), nodes built bottom-up at their exact size.  Keys and values
 * are borrowed: the map takes its own reference to what it keeps
 * (key_retain, val_retain; byte keys are copied) and the caller keeps its
 * own, so a map with release callbacks needs retain callbacks here too
 * (else CHAMP_EINVAL).  Returns CHAMP_OK, CHAMP_EINVAL (NULL m, NULL ops
 * with n > 0, an invalid key, a value for a set, release callbacks without
 * retain callbacks), CHAMP_EKIND never (keys are read by m's kind),
 * CHAMP_EBUSY (from a callback of an operation on m) or CHAMP_ENOMEM (m
 * unchanged).  n is at most UINT32_MAX - 1 (else CHAMP_EINVAL).  Scratch
 * memory for the call, from the pool's backing allocator (a fixed pool's
 * buffer; a pool on libc takes arrays of 512 KiB or more from mappings
 * of their own in huge pages, and a batch of about 1 MiB of entries or
 * more takes even the pool's first chunks from its huge-page regions:
 * champ_pool_config.no_huge_pages) and freed before it returns: about 24 bytes an update for a batch of
 * sets only (32 for byte and generic keys); for a batch with removes 49,
 * plus, while repeated keys are found, a table of 4 bytes times the power
 * of two at least twice the batch (57 to 65 in all); and where the batch
 * meets a collision node of a non-empty m (keys of one full hash) and the
 * two hold more than 8 of its keys, 24 bytes a key of both for the merge
 * (the set algebra's, below). */
CHAMP_API champ_status champ_apply(champ_map *m, const champ_op *ops, size_t n);

/* Upsert: finds key, or inserts it with a NULL value, and gives the address
 * of its value in *slot, so counting or accumulating takes one descent:
 *     void **v;
 *     champ_upsert_u64(m, key, &v, NULL);   *v = (void *)((uintptr_t)*v + 1);
 * The slot is the map's own (copied first if m shared it with another
 * version) and stays valid until the next update of m.  *found (if not
 * NULL) tells whether the key was there.  Writing a value through the slot
 * replaces the old one without releasing it: with val_release the caller
 * releases what it overwrites.  Maps only (sets: CHAMP_EINVAL).  Errors as
 * for set (*slot untouched).  Generic keys: the map takes ownership of key
 * when it inserts it. */
CHAMP_API champ_status champ_upsert_u64(champ_map *m, uint64_t key, void ***slot,
                                        bool *found);
CHAMP_API champ_status champ_upsert_bytes(champ_map *m, const void *key, size_t len,
                                          void ***slot, bool *found);
CHAMP_API champ_status champ_upsert(champ_map *m, void *key, void ***slot, bool *found);

/* Update with a function: fn gets the current value (NULL and found false
 * when the key is absent) and returns the value to store, in one descent.
 * The map owns the returned value as set would; the old value, if fn
 * returned another, is released (val_release).  fn runs as a callback of an
 * update of m, after everything that can fail: a failed update calls no
 * fn.  While fn runs, m reads as it was before the update (for an absent
 * key the update works on a version of m, whose trie m takes after fn: a
 * path copy, a collision node on the path copied whole; a type with a
 * release callback but no retain callback, which
 * cannot share, holds the key with a NULL value while fn runs).  Maps
 * only.  Errors as for set. */
typedef void *(*champ_update_fn)(const champ_key *key, void *old_val, bool found,
                                 void *ctx);
CHAMP_API champ_status champ_update_u64(champ_map *m, uint64_t key, champ_update_fn fn,
                                        void *ctx);
CHAMP_API champ_status champ_update_bytes(champ_map *m, const void *key, size_t len,
                                          champ_update_fn fn, void *ctx);
CHAMP_API champ_status champ_update(champ_map *m, void *key, champ_update_fn fn,
                                    void *ctx);

/* ------------------------------------------------------------------ */
/* Iteration                                                           */
/* ------------------------------------------------------------------ */


/* The iterator's room: enough for every path the trie can have, now and in
 * later versions of the library (part of the ABI). */
#define CHAMP_ITER_DEPTH 32

/* Allocation-free iterator; its fields are private.  The order is the trie
 * order (by hash), the same for equal contents and seed.  Keys whose full
 * 64-bit hashes collide come in key order (byte keys; generic keys with
 * compare), except in collision nodes of more than 128 byte keys (hashed:
 * an order that depends on the updates); generic keys without compare come
 * in insertion order (the set algebra's results: the first input's, then
 * the second's). */
typedef struct champ_iter {
    const void *_cur; /* next entry of the current node */
    const void *_end; /* end of the current node's entries */
    const void *_node[CHAMP_ITER_DEPTH];
    uint32_t _pos[CHAMP_ITER_DEPTH];
    int _depth;
    champ_status _status;
    const champ_map *_map;
    uint64_t _stamp;
    uint64_t _reserved[4];
} champ_iter;

/* Starts iterating m.  The iterator reads m's nodes directly: it stays valid
 * while *other* maps change (including the map m was copied from).  If m
 * itself changes, the next step notices (one compare per step or batch)
 * and stops with CHAMP_EMODIFIED, also when m was empty at init or every
 * entry had been seen; m must not be freed while the iterator
 * is used.  Returns CHAMP_OK or CHAMP_EINVAL (NULL argument). */
CHAMP_API champ_status champ_iter_init(champ_iter *it, const champ_map *m);

/* The next entry: true with *key and *val filled (either may be NULL);
 * false at the end, or when the iteration cannot go on: then
 * champ_iter_status() tells which.
 *     while (champ_iter_next(&it, &k, &v)) { ... }
 *     if (champ_iter_status(&it) != CHAMP_OK) { ...the map changed... } */
CHAMP_API bool champ_iter_next(champ_iter *it, champ_key *key, void **val);

/* The next entries, up to cap of them: their keys into keys[] and values
 * into vals[] (either may be NULL), in the order champ_iter_next gives
 * them (the two may be mixed).  Returns how many (0 at the end or when the
 * iteration cannot go on, as for champ_iter_next).  This is the fast way to
 * walk a map: entries come out a node's run at a time, with no call per
 * entry. */
CHAMP_API size_t champ_iter_next_n(champ_iter *it, champ_key *keys,
                                   void **vals, size_t cap);

/* Why the last step returned false/0: CHAMP_OK (the end, or not stopped
 * yet), CHAMP_EMODIFIED (the map changed since champ_iter_init) or
 * CHAMP_EINVAL (NULL it or keys/vals misuse: cap 0).  NULL it: CHAMP_EINVAL. */
CHAMP_API champ_status champ_iter_status(const champ_iter *it);

/* Calls fn for every entry until it returns nonzero.  Returns CHAMP_OK
 * (visited everything, or fn stopped it), CHAMP_EMODIFIED (fn changed m;
 * the walk stops right after that call, without touching m's old nodes) or
 * CHAMP_EINVAL (NULL m or fn). */
typedef int (*champ_visit_fn)(const champ_key *key, void *val, void *ctx);
CHAMP_API champ_status champ_foreach(const champ_map *m, champ_visit_fn fn,
                                     void *ctx);

/* ------------------------------------------------------------------ */
/* Comparing and combining versions                                    */
/* ------------------------------------------------------------------ */
/*
 * Two maps (or two sets) of the same kind.  When they hash keys the same
 * way (same kind and seed; generic keys: the same hash and equal functions
 * and ctx) these operations walk both tries side by side and skip every
 * subtree the two share (the same node): two versions of one map are
 * compared or combined in time proportional to what differs, not to their
 * size.  Results of the combining operations are maps of a's type (a's
 * pool, seed, callbacks); they share every untouched subtree with the
 * inputs and are an input itself (an O(1) copy) when they equal it;
 * champ_size() of a result is O(1).  Inputs are never changed.
 *
 * Slower but correct paths: maps that hash differently (different seeds,
 * e.g. two champ_new() maps without fixed_seed, or different hash/equal/
 * ctx/compare/bytes_hash) are compared and combined key by key (O(n log
 * n) where hashes spread; a result's keys of one full hash go into its
 * collision node one at a time, each moving the entries after it in an
 * ordered node: O(c^2) bytes for c such keys); so are the combining
 * operations on maps of different pools, or
 * whose types hold keys and values with other reference callbacks (a result
 * lives in a's pool and holds its entries with a's callbacks).  Maps made
 * by champ_new_u64() and friends share one type per kind: they take the
 * fast path, as do champ_new_like() maps.  Collision nodes (keys of one
 * full hash) that differ are matched by looking each key up in the other
 * side's node, as champ_get does (O(log b) compare calls for generic keys
 * with compare and byte keys up to 128 in a node, O(1) expected for more
 * byte keys), and the results' nodes are laid out as updates lay them
 * out; for generic keys without compare a node is a list and the match
 * takes O(a * b) equal calls (nothing else tells two keys of one hash
 * apart).  A merge of big
 * collision nodes takes its list of keys from scratch memory (the backing
 * allocator, or the buffer of a fixed pool), never the stack.
 *
 * Errors of every operation here: CHAMP_EINVAL (NULL argument; for the
 * combining operations and champ_filter also a of a type with a release
 * callback but no retain, which cannot copy entries, as champ_copy),
 * CHAMP_EKIND (a map and a set, or different key kinds), CHAMP_ENOMEM (the
 * partial result was freed, nothing leaked, *out is NULL).  Callbacks given
 * here run as reads of both inputs ("Callbacks" above: the inputs cannot
 * be changed from them; freeing one is deferred to the operation's end).
 */

/* Value comparison for champ_equal / champ_diff; NULL compares pointers. */
typedef bool (*champ_val_equal_fn)(const void *a, const void *b, void *ctx);

/* Whether a and b hold the same keys with equal values (sets: the same
 * keys).  Different sizes are unequal in O(1); shared subtrees are equal
 * without a look.  false also for misuse (NULL, different kinds). */
CHAMP_API bool champ_equal(const champ_map *a, const champ_map *b,
                           champ_val_equal_fn val_equal, void *ctx);

typedef enum champ_change {
    CHAMP_ADDED = 1,   /* key in `to` only: old_val NULL       */
    CHAMP_REMOVED = 2, /* key in `from` only: new_val NULL     */
    CHAMP_CHANGED = 3  /* key in both, values not equal         */
} champ_change;

/* Called once for every difference, in the order of the walk; return
 * nonzero to stop.  Maps walked side by side (above) go slot by slot,
 * lower slots first, at every level, down to a slot whose keys on each
 * side are one or two entries (no subtree) or a collision list: there the
 * keys are matched as two lists, `from`'s removals and changes first in
 * its iteration order, then `to`'s additions in its own.  A slot with keys
 * on one side only gives them in that side's iteration order.  Maps
 * compared key by key: `from`'s removals and changes in its iteration
 * order, then `to`'s additions in its own. */
typedef int (*champ_diff_fn)(champ_change what, const champ_key *key,
                             void *old_val, void *new_val, void *ctx);

/* Reports what changed from `from` to `to`, visiting only subtrees that
 * differ.  Returns CHAMP_OK (all reported, or fn stopped) or an error. */
CHAMP_API champ_status champ_diff(const champ_map *from, const champ_map *to,
                                  champ_val_equal_fn val_equal,
                                  champ_diff_fn fn, void *ctx);

/* Resolves a key present in both inputs: returns the value the result
 * keeps (a_val, b_val or another).  The result takes its own reference to
 * it (val_retain), as it does for every value it holds.  Called at most
 * once per key, and for every key in both whose values differ; keys in a
 * subtree the inputs share (the same node: e.g. the unchanged part of two
 * versions) are not visited, and keep their one value as if resolve
 * returned it.  Not called for sets. */
typedef void *(*champ_merge_fn)(const champ_key *key, void *a_val, void *b_val,
                                void *ctx);

/* *out = a with b's entries added (union).  For keys in both, resolve
 * decides the value; NULL resolve keeps b's value. */
CHAMP_API champ_status champ_union(const champ_map *a, const champ_map *b,
                                   champ_merge_fn resolve, void *ctx,
                                   champ_map **out);
/* *out = the entries whose keys are in both; NULL resolve keeps a's value. */
CHAMP_API champ_status champ_intersect(const champ_map *a, const champ_map *b,
                                       champ_merge_fn resolve, void *ctx,
                                       champ_map **out);
/* *out = a's entries whose keys are not in b. */
CHAMP_API champ_status champ_difference(const champ_map *a, const champ_map *b,
                                        champ_map **out);
/* *out = the entries whose keys are in exactly one of a and b. */
CHAMP_API champ_status champ_symdiff(const champ_map *a, const champ_map *b,
                                     champ_map **out);
/* Whether every key of a is in b; whether a and b share no key.  false
 * also for misuse. */
CHAMP_API bool champ_subset(const champ_map *a, const champ_map *b);
CHAMP_API bool champ_disjoint(const champ_map *a, const champ_map *b);

/* *out = m's entries for which keep returns true.  Subtrees whose entries
 * are all kept are shared with m. */
typedef bool (*champ_pred_fn)(const champ_key *key, void *val, void *ctx);
CHAMP_API champ_status champ_filter(const champ_map *m, champ_pred_fn keep,
                                    void *ctx, champ_map **out);

/* ------------------------------------------------------------------ */
/* Publishing versions between threads                                 */
/* ------------------------------------------------------------------ */

/* A cell holds one version of a map, for threads to take and replace: a
 * writer publishes a new config or index with champ_cell_store (or
 * champ_cell_cas), request threads each take a snapshot with
 * champ_cell_load, use it and free it.  Every call may overlap every other
 * call on the same cell from any thread (store and cas take an internal
 * lock for the swap of one pointer; nothing else is done under it).  In a
 * concurrent pool a load takes no lock and writes nothing that other
 * threads read: it pins the version in a slot of the calling thread
 * instead of counting a reference (8 slots per thread; a thread's further
 * snapshots are counted, as in a plain pool), so loads on any number of
 * threads do not slow each other down.  Such a snapshot is a map like any
 * other (read, copy, update, free it on any thread); its first update
 * copies what it changes, as for a shared version.  A version replaced in
 * the cell (or left in a freed cell) is released when its last snapshot
 * is freed.  A version derived from a snapshot with champ_pset_u64 or
 * champ_premove_u64 and published into the cell the snapshot came from
 * writes no reference count of the nodes it shares with the version it
 * replaces (they pass to it when that version is released).  The maps stored
 * must be of the cell's type (the one it was made with, or of its first
 * map).  Cells are for concurrent pools; a plain pool's maps may be stored
 * too, but then every cell call (new, load, store, cas, free) is a writer
 * call of that pool.  A cell is never emptied once it holds a version (a
 * NULL map to store or cas is CHAMP_EINVAL); store an empty map instead. */
typedef struct champ_cell champ_cell;

/* A cell holding a copy of m (O(1)), or empty when m is NULL (then the
 * first store sets the type).  Returns CHAMP_OK, CHAMP_EINVAL (NULL out;
 * m's type has release callbacks without retain callbacks, which cannot
 * share entries, as for champ_copy), CHAMP_EBUSY (from a callback of an
 * update or free of m, as champ_copy) or CHAMP_ENOMEM. */
CHAMP_API champ_status champ_cell_new(const champ_map *m, champ_cell **out);
/* Frees the cell and its reference to its version (when that was the
 * last one, the version goes and the type's release callbacks run here).
 * NULL: no-op.  From those callbacks the cell is going: champ_cell_free(c)
 * returns at once, and load, store and cas of c return CHAMP_EBUSY. */
CHAMP_API void champ_cell_free(champ_cell *c);
/* *out = a snapshot of the cell's version (a new map of its own: the
 * caller frees it).  An empty cell gives *out NULL and CHAMP_OK.  Errors:
 * CHAMP_EINVAL (NULL argument), CHAMP_ENOMEM, CHAMP_EBUSY (from a callback
 * that the cell's own champ_cell_free runs); *out is NULL on an error. */
CHAMP_API champ_status champ_cell_load(champ_cell *c, champ_map **out);
/* Publishes a copy of m (m stays the caller's).  Errors: CHAMP_EINVAL (NULL
 * cell or m; release callbacks without retain callbacks, as for
 * champ_cell_new), CHAMP_EBUSY (from a callback of an update or free of m,
 * or of the cell's own champ_cell_free),
 * CHAMP_EPOOL (m of another type than the cell's), CHAMP_ENOMEM (a
 * concurrent pool's store allocates, before it changes anything, the
 * record that keeps the replaced version for its pinned snapshots).  On
 * an error the cell is unchanged. */
CHAMP_API champ_status champ_cell_store(champ_cell *c, const champ_map *m);
/* Publishes a copy of desired if the cell still holds the version
 * `expected` was loaded as (the same root and size; NULL: an empty cell);
 * *swapped tells whether it did.  One that does not swap leaves the cell
 * and desired as they were (a version derived from a champ_cell_load
 * snapshot stays as cheap to free as it was).  Errors as for store. */
CHAMP_API champ_status champ_cell_cas(champ_cell *c, const champ_map *expected,
                                      const champ_map *desired, bool *swapped);

/* ------------------------------------------------------------------ */
/* Telemetry and checking                                              */
/* ------------------------------------------------------------------ */

#define CHAMP_STATS_SLOTS 33

typedef struct champ_pool_stats {
    size_t chunks;            /* arena chunks held                          */
    size_t bytes_reserved;    /* bytes in chunks, plus the handle pages and */
                              /* map types (their own blocks from the       */
                              /* backing allocator, or the huge-page slabs  */
                              /* that hold handle pages: what a slab keeps, */
                              /* less the OS pages trim gave back;          */
                              /* capacity in fixed mode: buffer_size less   */
                              /* the pool's own state, which sits at the    */
                              /* buffer's start, about 2 KiB, and alignment;*/
                              /* the watermark callback's capacity)         */
    size_t bytes_live;        /* bytes in blocks handed out and not freed,  */
                              /* handle pages and types included (a spare   */
                              /* empty page kept per heap is reserved only) */
    size_t bytes_peak;        /* highest bytes_live of nodes and keys seen, */
                              /* plus today's handle pages and types        */
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
    size_t bytes_huge;        /* bytes of the chunks cut from huge-page     */
                              /* mappings, plus the slabs' bytes reserved   */
                              /* (champ_pool_config.no_huge_pages)          */
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
} champ_stats;

/* Fill *out (of out_size bytes: pass sizeof *out; a program built against
 * an older header passes a smaller size and gets the fields it knows).
 * champ_stats_get walks m (O(size)); champ_pool_stats_get is O(1) (a
 * concurrent pool: O(threads that used it), the figures summed over their
 * heaps: approximate while threads work, exact when they are quiescent;
 * bytes_peak is sampled each time a thread's heap grows by 64 KiB).
 * Return CHAMP_OK or CHAMP_EINVAL (NULL argument, out_size 0). */
CHAMP_API champ_status champ_stats_get(const champ_map *m, champ_stats *out,
                                       size_t out_size);
CHAMP_API champ_status champ_pool_stats_get(const champ_pool *p,
                                            champ_pool_stats *out,
                                            size_t out_size);
/* Gives memory back: compacts the pool's free lists (neighbouring free
 * blocks are joined) and returns every arena chunk that holds no live
 * block to the backing allocator.  When the live bytes are less than half
 * of what is reserved, it first moves the live nodes and key blobs of the
 * pool's maps into one new chunk, so that the chunks they were scattered
 * over empty out (1M u64 keys, 99% removed: 23 MB reserved for 0.27 MB
 * live before, 1.1x live after).  Nodes reached from cells move too.  Map
 * handles and types never move, and in an arena pool they are not in the
 * chunks (their pages and blocks come from the backing allocator), so
 * they keep no chunk from being returned (200K one-entry maps, 99% freed:
 * 1.0x live after); trim also returns each heap's spare handle page, a
 * pool's spare handle slab, and every OS page of a slab that holds no
 * live handle page (no_huge_pages: no slabs).  A
 * fixed-buffer pool is only compacted.  Never fails
 * (when the new chunk cannot be had nothing moves) and never changes what
 * a map holds.  Thread model: alone (no other call on the pool, and no
 * iteration of its maps, may overlap it).  After a trim that moved nodes,
 * iterations of the pool's maps begun before it stop with CHAMP_EMODIFIED,
 * and value slots given by champ_upsert_* are no longer valid.  Returns
 * CHAMP_OK, or CHAMP_EINVAL for NULL. */
CHAMP_API champ_status champ_pool_trim(champ_pool *p);
/* Prints the map's stats and its pool's as a readable table.  Returns
 * CHAMP_OK or CHAMP_EINVAL. */
CHAMP_API champ_status champ_stats_print(const champ_map *m, FILE *f);

/* Walks m and checks every invariant: bitmaps vs node sizes, hash slices vs
 * positions, pairs (two distinct keys in trie order; of equal hashes, in
 * key order where the keys have one), depth bound, collision
 * nodes (same full hash, >= 3 distinct keys, only at the bottom, their
 * layout and room), canonical form (every child subtree holds >= 3 keys),
 * the entry count, and, over the whole pool, that every node's reference
 * count equals the references the pool's live maps and cells hold, that the
 * pool's live bytes equal what they use, and that its books balance
 * (reserved = live + free lists + fresh space + chunk headers).  A
 * concurrent pool is checked the same way: the maps of every thread's heap,
 * the free lists of every heap and of the depot, their sums.
 * Cost: O(n) for n entries, plus per collision node of c keys: O(c) key
 * comparisons when it is ordered (each key sorts before the next, which
 * also proves them distinct); O(c) expected for a hashed node of byte keys
 * (every key found through the index, equal keys caught there); a list
 * (generic keys without compare) is
 * searched for equal keys pairwise up to 2048 keys and, beyond, each key
 * against the 1024 before it (so a duplicate further apart goes unseen:
 * O(c) comparisons instead of O(c^2)).  Calls the map's hash, bytes_hash,
 * equal and compare.
 * Needs no memory (the census uses a spare header word of each node), so it
 * works in fixed-buffer pools too.  Thread model: alone (no other call on
 * the pool may overlap it, from any thread).  Returns CHAMP_OK,
 * CHAMP_ECORRUPT (and prints what failed to stderr) or CHAMP_EINVAL. */
CHAMP_API champ_status champ_validate(const champ_map *m);

/* Testing hook, in builds with CHAMP_FAULTS or CHAMP_DEBUG: after n more
 * block allocations succeed, every block allocation of the pool fails (as if
 * the pool were out of memory) until the hook is reset with n < 0.  In a
 * concurrent pool the hook is one plain counter: set it while no other
 * thread uses the pool (they wait at a barrier, or are joined), and while
 * n > 0 counts down let one thread at a time allocate; with n = 0 any
 * number of threads may run (each of their allocations fails).  Returns
 * CHAMP_OK, CHAMP_EINVAL (NULL pool) or CHAMP_EUNSUPPORTED (other
 * builds). */
CHAMP_API champ_status champ_pool_fail_after(champ_pool *p, long n);

/* Prints the trie's shape, one node per line, indented by depth.  Returns
 * CHAMP_OK or CHAMP_EINVAL. */
CHAMP_API champ_status champ_dump(const champ_map *m, FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* CHAMP_H */

/*
 * internal.h - what the files of champ share: the node layout, the map and
 * pool structs, the pool's inline fast paths, the hashes, the assert tiers.
 * Nothing here is visible to users (everything is static inline or champ__).
 * The design is explained at the top of champ.c.
 */
#ifndef CHAMP_INTERNAL_H
#define CHAMP_INTERNAL_H

#include "champ.h"

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Build levels                                                        */
/*   CHAMP_DEBUG      asserts, counters, fault hooks, sanitizer and    */
/*                    valgrind annotations, fill patterns, iterator    */
/*                    modification checks.  CHAMP_DEBUG=2 also runs    */
/*                    champ_validate after every update (slow).        */
/*   CHAMP_STATS      pool allocation-source counters.                 */
/*   CHAMP_FAULTS     champ_pool_fail_after().                         */
/* ------------------------------------------------------------------ */

#ifdef CHAMP_DEBUG
#if CHAMP_DEBUG + 0 == 0
#undef CHAMP_DEBUG
#define CHAMP_DEBUG 1
#endif
#ifndef CHAMP_STATS
#define CHAMP_STATS 1
#endif
#ifndef CHAMP_FAULTS
#define CHAMP_FAULTS 1
#endif
#ifndef CHAMP_VALGRIND
#define CHAMP_VALGRIND 1
#endif
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define INTERNAL __attribute__((visibility("hidden")))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))

#ifdef CHAMP_DEBUG
#include <stdio.h>
#include <stdlib.h>
#define CHAMP_ASSERT(c)                                                     \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "champ: assertion failed: %s (%s:%d)\n", #c,    \
                    __FILE__, __LINE__);                                    \
            abort();                                                        \
        }                                                                   \
    } while (0)
#else
#define CHAMP_ASSERT(c) ((void)0)
#endif

#ifdef CHAMP_STATS
#define STAT(x) (x)
#else
#define STAT(x) ((void)0)
#endif

/* ---- sanitizer visibility of pool blocks --------------------------- */
#if defined(__SANITIZE_ADDRESS__)
#define CHAMP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHAMP_ASAN 1
#endif
#endif
#ifdef CHAMP_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif
#if defined(CHAMP_VALGRIND) && defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define VG_NOACCESS(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define VG_UNDEFINED(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define VG_DEFINED(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#endif
#endif
#ifndef VG_NOACCESS
#define VG_NOACCESS(p, n) ((void)0)
#define VG_UNDEFINED(p, n) ((void)0)
#define VG_DEFINED(p, n) ((void)0)
#endif

/* ------------------------------------------------------------------ */
/* Trie geometry                                                       */
/* ------------------------------------------------------------------ */

#define CHAMP_BITS 5                 /* hash bits consumed per level   */
#define CHAMP_LAST_LEVEL 12          /* bitmap levels are 0..12        */
#define CHAMP_COLL_LEVEL 13          /* collision nodes live here      */
#define CHAMP_MAX_PATH 14            /* nodes on a root-to-leaf path   */

/* An entry: 16 bytes whatever the kind.  k is the u64 key itself
 * (CHAMP_KEY_U64), a pointer to a key blob (CHAMP_KEY_BYTES) or the user's
 * key pointer (CHAMP_KEY_GENERIC). */
typedef struct entry {
    uint64_t k;
    void *v;
} entry;

/* A node.  Bitmap nodes (levels 0..12): the two CHAMP bitmaps give each
 * of the 32 slots one of four states:
 *     datamap nodemap
 *        0       0     empty
 *        1       0     one entry
 *        1       1     a pair: two entries whose hashes agree on every
 *                      slice down to this level (a subtree of exactly two
 *                      entries always lives inline like this)
 *        0       1     a child node (its subtree holds 3 or more entries)
 * e[] holds the entries of the entry and pair slots in slot order (a pair
 * takes two consecutive entries, in trie order), then one pointer per child
 * slot, in slot order.  Collision nodes (level 13): datamap is the entry
 * count, nodemap is 0.  aux holds the block's spare room and the census
 * count of champ_validate (see SLACK_MASK). */
typedef struct node {
    uint32_t rc;
    uint32_t datamap;
    uint32_t nodemap;
    uint32_t aux;
    entry e[];
} node;

#define NODE_HDR ((uint32_t)sizeof(node))

static ALWAYS_INLINE uint32_t popc(uint32_t x) {
    return (uint32_t)__builtin_popcount(x);
}
static ALWAYS_INLINE uint32_t slice(uint64_t h, unsigned level) {
    return (uint32_t)(h >> (CHAMP_BITS * level)) & 31u;
}
/* Trie order of two different hashes: the one whose slice is smaller at
 * the first level where they differ comes first (the order a walk of the
 * trie meets them; pairs keep their two entries in it). */
static ALWAYS_INLINE bool hash_trie_before(uint64_t a, uint64_t b) {
    unsigned l = (unsigned)__builtin_ctzll(a ^ b) / CHAMP_BITS;
    return slice(a, l) < slice(b, l);
}

/* Entries of a bitmap node with these bitmaps (pairs count twice), and
 * its children. */
static ALWAYS_INLINE uint32_t maps_nent(uint32_t dm, uint32_t nm) {
    return popc(dm) + popc(dm & nm);
}
static ALWAYS_INLINE uint32_t maps_nkid(uint32_t dm, uint32_t nm) {
    return popc(nm & ~dm);
}
/* Index in e[] of the first entry of slot `bit` (entry or pair). */
static ALWAYS_INLINE uint32_t maps_eidx(uint32_t dm, uint32_t nm, uint32_t bit) {
    return popc(dm & (bit - 1)) + popc(dm & nm & (bit - 1));
}
/* Index among the child pointers of the child in slot `bit`. */
static ALWAYS_INLINE uint32_t maps_kidx(uint32_t dm, uint32_t nm, uint32_t bit) {
    return popc(nm & ~dm & (bit - 1));
}
static ALWAYS_INLINE uint32_t node_nent(const node *n) {
    return maps_nent(n->datamap, n->nodemap);
}
static ALWAYS_INLINE uint32_t node_nkid(const node *n) {
    return maps_nkid(n->datamap, n->nodemap);
}
static ALWAYS_INLINE uint32_t node_eidx(const node *n, uint32_t bit) {
    return maps_eidx(n->datamap, n->nodemap, bit);
}
static ALWAYS_INLINE uint32_t node_kidx(const node *n, uint32_t bit) {
    return maps_kidx(n->datamap, n->nodemap, bit);
}
static ALWAYS_INLINE node **node_kids(const node *n) {
    return (node **)(void *)((char *)(uintptr_t)n->e + 16u * node_nent(n));
}
/* The child in slot `bit` (which must be a child slot). */
static ALWAYS_INLINE node **node_kid_at(const node *n, uint32_t bit) {
    return node_kids(n) + node_kidx(n, bit);
}
/* A bitmap node whose 32 slots all hold children: child i is kids[i], no
 * popcount needed, so a lookup can load the child pointer without waiting
 * for the bitmaps (the branch is predicted; the upper levels of a big map
 * are all full). */
static ALWAYS_INLINE bool node_full(const node *n) {
    return n->nodemap == 0xffffffffu && n->datamap == 0;
}
static ALWAYS_INLINE size_t node_bitmap_size(uint32_t ne, uint32_t nk) {
    return NODE_HDR + 16u * (size_t)ne + 8u * (size_t)nk;
}
static ALWAYS_INLINE size_t node_size(const node *n, unsigned level) {
    if (level == CHAMP_COLL_LEVEL)
        return NODE_HDR + 16u * (size_t)n->datamap;
    return node_bitmap_size(node_nent(n), node_nkid(n));
}
/* Entries of a node at `level` (collision nodes: the count). */
static ALWAYS_INLINE uint32_t node_nent_at(const node *n, unsigned level) {
    return level == CHAMP_COLL_LEVEL ? n->datamap : node_nent(n);
}
static ALWAYS_INLINE uint32_t node_nkid_at(const node *n, unsigned level) {
    return level == CHAMP_COLL_LEVEL ? 0 : node_nkid(n);
}

/* aux bits 0-7: spare 8-byte units at the end of the node's block (left by
 * removes done in place, used by later inserts); bits 8-31: the reference
 * count of champ_validate's census, zero otherwise. */
#define SLACK_MASK 0xffu
#define SLACK_CAP 4u      /* in-place removes keep at least 32 spare bytes */
#define CENSUS_ONE 0x100u
#ifndef GROW_SHIFT
#define GROW_SHIFT 6
#endif
/* Spare units (even: whole entries) a node of `size` bytes takes along
 * when an insert makes it grow into a new block: one entry, or about 1/8
 * of the node for big ones, so the next inserts there happen in place. */
static ALWAYS_INLINE uint32_t grow_units(size_t size) {
    uint32_t u = (uint32_t)(size >> GROW_SHIFT) & ~1u;
    return u < 2u ? 2u : u;
}
/* A growing node of `size` bytes takes a free block of at most this size
 * (the room it wants, one entry more at most). */
static ALWAYS_INLINE size_t grow_take_max(size_t size) {
    return size + 8u * (grow_units(size) + 2u);
}
#ifndef SHRINK_DIV
#define SHRINK_DIV 8
#endif
/* In-place removes keep at most this many spare units: as much as the
 * node itself holds (SHRINK_DIV 8: bytes), at least SLACK_CAP, so a node
 * that loses entries gives its block up only when it is half empty. */
static ALWAYS_INLINE uint32_t slack_cap(size_t size) {
    size_t u = (size / SHRINK_DIV) & ~(size_t)1;
    if (u > SLACK_MASK - 1)
        u = SLACK_MASK - 1;
    return u < SLACK_CAP ? SLACK_CAP : (uint32_t)u;
}
static ALWAYS_INLINE uint32_t node_slack(const node *n) {
    return n->aux & SLACK_MASK;
}
/* The bytes of the node's block: its size plus any spare room. */
static ALWAYS_INLINE size_t node_block(const node *n, unsigned level) {
    return node_size(n, level) + 8u * node_slack(n);
}

/* Key blob of CHAMP_KEY_BYTES: the map's own copy of a key, shared by every
 * entry (in any version) that holds it, freed with its last reference. */
typedef struct blob {
    uint64_t hash;
    uint32_t rc;
    uint32_t len;
    char bytes[];
} blob;

static ALWAYS_INLINE size_t blob_size(size_t len) {
    return (sizeof(blob) + len + 1 + 7) & ~(size_t)7;
}

/* ------------------------------------------------------------------ */
/* Pool                                                                */
/* ------------------------------------------------------------------ */

#define POOL_CLASS_MAX 1040u         /* largest small block: a node of 32 pairs */
#define POOL_NCLASS (POOL_CLASS_MAX / 8 + 1)
#define POOL_NLARGE 48               /* power-of-two classes above      */

typedef struct chunk {
    struct chunk *next;
    size_t size;
} chunk;

struct champ_pool {
    void *free[POOL_NCLASS];     /* free list per 8-byte size class      */
    uint64_t nonempty[(POOL_NCLASS + 63) / 64]; /* classes with a non-empty list */
    char *bump, *end;            /* fresh space of the current chunk     */
    size_t live;                 /* bytes handed out                     */
    size_t hi;                   /* slow-path check above this live size */
    size_t lo;                   /* ... and below this one (watermark)   */
    size_t peak;
    size_t reserved;             /* bytes of chunk space (or buffer)     */
    size_t defrag_mark;          /* no compaction before live reaches it */
    size_t defrag_spare;         /* ... or free-listed bytes pass this    */
    void *large[POOL_NLARGE];    /* free lists of power-of-two blocks    */
    chunk *chunks;
    size_t nchunks;
    size_t chunk_min;
    champ_allocator alloc;
    bool fixed;
    bool mark_fired;
    size_t mark;                 /* watermark in bytes (fixed mode)      */
    champ_watermark_fn on_mark;
    void *mark_ctx;
    long refs;                   /* the creator's reference + maps       */
    champ_map *maps;             /* live maps (for the census)           */
    size_t nmaps;
    size_t map_bytes;            /* size of a map handle block           */
    uint64_t backing_calls;
    uint64_t failures;
    size_t lost;                 /* bytes too small to file (8-byte ends) */
#ifdef CHAMP_FAULTS
    long fail_after;
#endif
#ifdef CHAMP_STATS
    uint64_t n_alloc, n_alloc_free, n_alloc_arena, n_free;
#endif
};

INTERNAL void *champ__pool_alloc_slow(champ_pool *p, size_t size);
INTERNAL void champ__pool_free_large(champ_pool *p, void *b, size_t size);
INTERNAL void champ__pool_rise(champ_pool *p);
INTERNAL void champ__pool_fall(champ_pool *p);
INTERNAL void champ__pool_release(champ_pool *p);
INTERNAL champ_status champ__pool_make(const champ_pool_config *cfg,
                                       champ_pool **out);
INTERNAL bool champ__cpu_ok(void);
INTERNAL long long champ__pool_imbalance(const champ_pool *p);

#ifdef CHAMP_DEBUG
#define FILL_FRESH(p, n) memset((p), 0xCD, (n))
#define FILL_FREED(p, n) memset((p), 0xDD, (n))
#else
#define FILL_FRESH(p, n) ((void)0)
#define FILL_FREED(p, n) ((void)0)
#endif

/* Hands out a block of `size` bytes (a multiple of 8, at least 16), or NULL
 * when the pool is out of memory.  Fast path: the size class's free list.
 * Then (pool.c) a split of a larger free block, fresh arena space, a new
 * chunk, in that order. */
static ALWAYS_INLINE void *pool_alloc(champ_pool *p, size_t size) {
#ifdef CHAMP_FAULTS
    if (UNLIKELY(p->fail_after >= 0)) {
        if (p->fail_after == 0) {
            p->failures++;
            return NULL;
        }
        p->fail_after--;
    }
#endif
    size_t c = size >> 3;
    void *b;
    if (LIKELY(c < POOL_NCLASS)) {
        b = p->free[c];
        if (b) {
            UNPOISON(b, size);
            VG_DEFINED(b, sizeof(void *));
            void *next = *(void **)b;
            p->free[c] = next;
            if (!next)
                p->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
            VG_UNDEFINED(b, size);
            STAT(p->n_alloc_free++);
            goto got;
        }
    }
    return champ__pool_alloc_slow(p, size);
got:
    STAT(p->n_alloc++);
    FILL_FRESH(b, size);
    p->live += size;
    if (UNLIKELY(p->live > p->hi))
        champ__pool_rise(p);
    return b;
}

INTERNAL void *champ__pool_take_range(champ_pool *p, size_t lo, size_t hi,
                                      size_t *got);

/* For a node that grows: a block of `want` bytes if its list has one, else
 * any free block of lo..hi bytes (the smallest), else `want` bytes split
 * from a larger free block or carved from fresh space, else `lo` bytes
 * (which may take a new chunk).  *got receives the block's size: the caller keeps
 * the difference to lo as spare room.  Reusing near sizes keeps the
 * blocks a growing trie leaves behind from piling up in the free lists. */
static ALWAYS_INLINE void *pool_alloc_grow(champ_pool *p, size_t lo, size_t want,
                                           size_t hi, size_t *got) {
    *got = want;
    if (hi > POOL_CLASS_MAX || p->free[want >> 3])
        return pool_alloc(p, want);
#ifdef CHAMP_FAULTS
    if (p->fail_after >= 0)
        return pool_alloc(p, want);
#endif
    void *b = champ__pool_take_range(p, lo, hi, got);
    if (b)
        return b;
    if ((size_t)(p->end - p->bump) < want) {
        /* the room is a wish: never worth a new chunk */
        *got = lo;
        return pool_alloc(p, lo);
    }
    return pool_alloc(p, want);
}

/* What a request of `size` bytes really occupies (large ones are rounded
 * to a power of two). */
static inline size_t pool_block_size(size_t size) {
    if (size <= POOL_CLASS_MAX)
        return size;
    return (size_t)1 << (64u - (unsigned)__builtin_clzll((unsigned long long)(size - 1)));
}

/* Gives back a block obtained from pool_alloc with the same size. */
static ALWAYS_INLINE void pool_free(champ_pool *p, void *b, size_t size) {
    size_t c = size >> 3;
    STAT(p->n_free++);
    if (LIKELY(c < POOL_NCLASS)) {
        p->live -= size;
        FILL_FREED(b, size);
        *(void **)b = p->free[c];
        p->free[c] = b;
        p->nonempty[c >> 6] |= (uint64_t)1 << (c & 63);
        POISON(b, size);
        VG_NOACCESS(b, size);
    } else {
        champ__pool_free_large(p, b, size);
    }
    if (UNLIKELY(p->live < p->lo))
        champ__pool_fall(p);
}

/* ------------------------------------------------------------------ */
/* Maps                                                                */
/* ------------------------------------------------------------------ */

struct champ_map {
    node *root;
    size_t size;
    uint64_t seed;
    champ_key_kind kind;
    bool busy;                 /* mid-update: re-entrant updates refused */
    bool ent_refs;             /* copying an entry must retain something */
    champ_pool *pool;
    champ_hash_fn hash;
    champ_equal_fn equal;
    champ_ref_fn key_retain, key_release, val_retain, val_release;
    void *ctx;
    uint64_t stamp;            /* bumped by every update (iterator check) */
    champ_map *prev, *next;    /* the pool's list of live maps           */
};

/* ------------------------------------------------------------------ */
/* Hashes                                                              */
/* ------------------------------------------------------------------ */

/* u64 keys: a seeded bijection (xor-shift-multiply rounds are invertible),
 * so distinct keys never share a full 64-bit hash: CHAMP_KEY_U64 maps have
 * no collision nodes, and their lookups need no collision case. */
static ALWAYS_INLINE uint64_t hash_u64(uint64_t x, uint64_t seed) {
    x ^= seed;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

INTERNAL uint64_t champ__hash_bytes(const void *p, size_t len, uint64_t seed);
INTERNAL uint64_t champ__random_seed(void);

/* Shared by champ.c, iter.c and check.c. */
INTERNAL uint64_t champ__entry_hash(const champ_map *m, const entry *e);
INTERNAL bool champ__entry_equal(const champ_map *m, const entry *a,
                                 const entry *b);
/* What iteration reports for an entry's key. */
static ALWAYS_INLINE void fill_key(champ_key_kind kind, const entry *e,
                                   champ_key *k) {
    if (kind == CHAMP_KEY_U64) {
        k->u64 = e->k;
        k->ptr = NULL;
        k->len = 0;
    } else if (kind == CHAMP_KEY_BYTES) {
        const blob *b = (const blob *)(uintptr_t)e->k;
        k->u64 = 0;
        k->ptr = b->bytes;
        k->len = b->len;
    } else {
        k->u64 = 0;
        k->ptr = (const void *)(uintptr_t)e->k;
        k->len = 0;
    }
}

#endif /* CHAMP_INTERNAL_H */

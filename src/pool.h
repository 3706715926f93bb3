/*
 * pool.h - the pool struct and the inline fast paths of allocation (the
 * rest of the pool is in pool.c).
 * Included through internal.h only.
 */
#ifndef CHAMP_POOL_H
#define CHAMP_POOL_H

/* ------------------------------------------------------------------ */
/* Pool                                                                */
/* ------------------------------------------------------------------ */

#define POOL_CLASS_MAX 1040u         /* largest small block: a node of 32 pairs */
#define POOL_NCLASS (POOL_CLASS_MAX / 8 + 1) /* class 1: 8-byte crumbs */
/* Free blocks above POOL_CLASS_MAX have exact sizes (multiples of 8) and
 * sit in lists by size range: 2^POOL_LARGE_SUB_BITS ranges per power of
 * two from 2^POOL_LARGE_SHIFT up, for POOL_LARGE_POWS powers. */
#define POOL_LARGE_SHIFT 10u
#define POOL_LARGE_SUB_BITS 1u
#define POOL_LARGE_POWS 38u
#define POOL_NLARGE (POOL_LARGE_POWS << POOL_LARGE_SUB_BITS)
#define POOL_SIZE_MAX ((size_t)1 << 47) /* larger requests are refused   */

/* Map handles live in handle pages: one pool block of HPAGE_BYTES holding a
 * header and HPAGE_SLOTS handles of CHAMP_HANDLE_BYTES.  The last byte of a
 * handle belongs to the pool (its slot in the page). */
#define CHAMP_HANDLE_BYTES 32u
#define HPAGE_BYTES 1024u
#define HPAGE_HDR 64u
#define HPAGE_SLOTS 30u
_Static_assert(HPAGE_HDR + HPAGE_SLOTS * CHAMP_HANDLE_BYTES == HPAGE_BYTES,
               "a handle page is its header and its slots");
_Static_assert(HPAGE_BYTES <= POOL_CLASS_MAX, "a handle page is a small block");
_Static_assert(HPAGE_SLOTS < 32u, "a page's slots fit one 32-bit mask");

typedef struct chunk {
    struct chunk *next;
    size_t size;
} chunk;

typedef struct hpage hpage;

struct champ_pool {
    void *free[POOL_NCLASS];     /* free list per 8-byte size class      */
    uint64_t nonempty[(POOL_NCLASS + 63) / 64]; /* classes with a non-empty list */
    char *bump, *end;            /* fresh space of the current chunk     */
    size_t live;                 /* bytes handed out                     */
    size_t hi;                   /* slow-path check above this live size */
    size_t lo;                   /* ... and below this one (watermark)   */
    size_t peak;
    size_t reserved;             /* bytes of chunk space (or buffer)     */
    size_t carved;               /* bytes cut from fresh space and not   */
                                 /* given back: live + free-listed       */
    size_t defrag_mark;          /* no compaction before live reaches it */
    size_t defrag_spare;         /* ... or free-listed bytes pass this    */
    void *large[POOL_NLARGE];    /* free lists of large blocks by range  */
    uint64_t large_nonempty[(POOL_NLARGE + 63) / 64];
    chunk *chunks;
    size_t nchunks;
    size_t chunk_min;
    champ_allocator alloc;
    bool fixed;
    bool mark_fired;
    size_t mark;                 /* watermark in bytes (fixed mode)      */
    champ_watermark_fn on_mark;
    void *mark_ctx;
    uint32_t refs;               /* the creator's reference + types      */
    bool concurrent;             /* champ_pool_config.concurrent         */
    size_t ntypes;               /* map types alive (see map.h)          */
    hpage *hpages;               /* every handle page                    */
    hpage *hpages_open;          /* pages with a free slot               */
    size_t npages;
    size_t nhandles;             /* handles handed out                   */
    uint64_t backing_calls;
    uint64_t failures;
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

/* For champ_validate (exclusive: it reads free blocks): the pool's books,
 * found by walking every free list and handle page. */
typedef struct champ_pool_audit {
    size_t free_walked;      /* bytes of the blocks in the free lists     */
    size_t free_counted;     /* what the pool's counters say they hold    */
    long long imbalance;     /* reserved - (carved + fresh + chunk headers) */
    size_t misfiled;         /* free blocks in a list not of their size   */
    size_t pages_walked;     /* handle pages in the list of all pages     */
    size_t handles_walked;   /* used slots in them                        */
    size_t pages_bad;        /* pages whose header disagrees with itself  */
    size_t open_walked;      /* pages in the list of pages with room      */
    size_t open_expected;    /* pages that have a free slot               */
} champ_pool_audit;
INTERNAL void champ__pool_audit(const champ_pool *p, champ_pool_audit *a);

/* Map handles (handle pages, see pool.c).  alloc: CHAMP_HANDLE_BYTES
 * bytes, zeroed except the last (the pool's), or NULL when the pool is out
 * of memory; free: gives one back; next: the live handle after h (NULL:
 * the first), NULL after the last; valid while no handle is allocated or
 * freed. */
INTERNAL void *champ__handle_alloc(champ_pool *p);
INTERNAL void champ__handle_free(champ_pool *p, void *h);
INTERNAL void *champ__handle_next(const champ_pool *p, const void *h);

#ifdef CHAMP_DEBUG
#define FILL_FRESH(p, n) memset((p), 0xCD, (n))
#define FILL_FREED(p, n) memset((p), 0xDD, (n))
#else
#define FILL_FRESH(p, n) ((void)0)
#define FILL_FREED(p, n) ((void)0)
#endif

/* The fault hook of champ_pool_fail_after: true if this allocation is
 * refused (and counted as refused). */
static ALWAYS_INLINE bool pool_fault(champ_pool *p) {
#ifdef CHAMP_FAULTS
    if (UNLIKELY(p->fail_after >= 0)) {
        if (p->fail_after == 0) {
            p->failures++;
            return true;
        }
        p->fail_after--;
    }
#else
    (void)p;
#endif
    return false;
}

/* pool_alloc without the fault hook. */
static ALWAYS_INLINE void *pool_alloc_block(champ_pool *p, size_t size) {
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

/* Hands out a block of `size` bytes (a multiple of 8, at least 16), or NULL
 * when the pool is out of memory.  Fast path: the size class's free list.
 * Then (pool.c) a split of a larger free block, fresh arena space, a new
 * chunk, in that order.  Every block has exactly the size asked for, so
 * any piece of it (8-aligned, at least 16 bytes) may be freed on its own. */
static ALWAYS_INLINE void *pool_alloc(champ_pool *p, size_t size) {
    if (pool_fault(p))
        return NULL;
    return pool_alloc_block(p, size);
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

/* Gives back a block obtained from pool_alloc with the same size, or any
 * piece of one (8-aligned, at least 16 bytes). */
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


#endif /* CHAMP_POOL_H */

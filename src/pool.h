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
typedef struct heap heap;
typedef struct cpool cpool;
typedef struct retired retired;

/* Pin slots per thread heap (pin.c): the roots a thread has loaded from
 * cells of a concurrent pool without a count. */
#define HEAP_PINS 8u

/* The pool's list of cells (circular, the pool holds the head). */
typedef struct cell_link {
    struct cell_link *next, *prev;
} cell_link;

/* Roles of a heap (see pool.c, "Heaps"). */
enum {
    HEAP_PLAIN,  /* the one heap of a plain pool (or a fixed buffer)      */
    HEAP_ROUTER, /* the heap inside a concurrent pool: always empty, so   */
                 /* every allocation and free reaches its slow path,      */
                 /* which hands it to the calling thread's heap           */
    HEAP_THREAD, /* a thread's heap in a concurrent pool                  */
    HEAP_DEPOT   /* a concurrent pool's exchange of free blocks           */
};

/* The live and carved bytes of a thread heap start at HEAP_BIAS: a thread
 * that frees more than it allocates (blocks other threads carved) takes
 * them below it, and the fast paths' unsigned comparisons stay right.
 * Sums over heaps subtract it. */
#define HEAP_BIAS ((size_t)1 << 62)

/* Allocation state: free lists, fresh space, books.  A plain pool has one
 * (its first member: the fast paths below are the same instructions as on
 * a pool without heaps); a concurrent pool gives each thread its own. */
struct heap {
    void *free[POOL_NCLASS];     /* free list per 8-byte size class      */
    uint64_t nonempty[(POOL_NCLASS + 63) / 64]; /* classes with a non-empty list */
    char *bump, *end;            /* fresh space of the current chunk     */
    size_t live;                 /* bytes handed out (less those freed   */
                                 /* into this heap); + HEAP_BIAS         */
    size_t hi;                   /* slow path above this live size       */
    size_t lo;                   /* ... and below this one: plain, the   */
                                 /* watermark's re-arm; thread heaps,    */
                                 /* too many free bytes                  */
    size_t nclass;               /* POOL_NCLASS; 0 in a router (frees    */
                                 /* leave the fast path)                 */
    size_t peak;
    size_t carved;               /* bytes cut from fresh space (or taken */
                                 /* from the depot) and not given back:  */
                                 /* live + free-listed (+ HEAP_BIAS)     */
    size_t defrag_mark;          /* no compaction before live reaches it */
    size_t defrag_spare;         /* ... or free-listed bytes pass this    */
    void *large[POOL_NLARGE];    /* free lists of large blocks by range  */
    uint64_t large_nonempty[(POOL_NLARGE + 63) / 64];
    champ_pool *pool;
    hpage *hpages;               /* every handle page of this heap       */
    hpage *hpages_open;          /* pages with a free slot               */
    size_t npages;
    hpage *spare;                /* arena pools: an emptied page kept    */
                                 /* for the next (a side block, free)    */
    size_t nhandles;             /* handles handed out from its pages    */
    uint8_t role;                /* HEAP_*                               */
    unsigned char hlock;         /* concurrent: guards the handle pages  */
    bool idle;                   /* thread heap whose thread has exited  */
    size_t keep;                 /* thread heaps: free bytes kept before */
                                 /* the rest goes to the depot           */
    heap *next;                  /* thread heaps: all of the pool's      */
    heap *idle_next;             /* ... and those waiting for a thread   */
    uintptr_t pins[HEAP_PINS];   /* thread heaps: pinned roots (pin.c):  */
                                 /* a node address, bit 0 set when a     */
                                 /* retired version waits on it          */
#ifdef CHAMP_STATS
    uint64_t n_alloc, n_alloc_free, n_alloc_arena, n_free;
#endif
};

struct champ_pool {
    heap h;                      /* first: pool_alloc(p) is heap_alloc(&p->h) */
    size_t reserved;             /* bytes of chunk space (or buffer)     */
    chunk *chunks;
    size_t nchunks;
    size_t chunk_min;
    champ_allocator alloc;
    struct region *regions;      /* huge-page regions the chunks are cut */
                                 /* from once reserved >= REGION_FROM    */
    size_t huge;                 /* bytes of chunks cut from them        */
    struct slab *slabs;          /* huge-page slabs of handle pages, once */
                                 /* side >= REGION_FROM (pool.c)         */
    struct slab *slabs_open;     /* ... those with a free block          */
    struct slab *slab_spare;     /* an emptied slab kept for the next    */
    size_t slab_bytes;           /* bytes of slabs held (mapped, minus   */
                                 /* the pages trim gave back)            */
    size_t side_slab;            /* bytes of side blocks in slabs        */
    bool use_huge;               /* libc allocator, huge pages not off   */
    bool huge_early;             /* regions before REGION_FROM: a batch  */
                                 /* said it needs that much (build.c)    */
    bool fixed;
    char *buf_end;               /* fixed mode: the end of the caller's  */
                                 /* buffer (p itself is its start), made */
                                 /* plain memory again by the last free  */
    bool mark_fired;
    bool concurrent;             /* champ_pool_config.concurrent         */
    size_t mark;                 /* watermark in bytes (fixed mode)      */
    champ_watermark_fn on_mark;
    void *mark_ctx;
    uint32_t refs;               /* the creator's reference + types      */
    size_t ntypes;               /* map types alive (see map.h)          */
    size_t side;                 /* arena pools: bytes of side blocks    */
                                 /* (handle pages, types; pool.c)        */
    uint64_t id;                 /* concurrent: never reused (pool.c)    */
    uint64_t backing_calls;
    uint64_t failures;
    cpool *cc;                   /* concurrent pools: heaps, depot, lock */
    cell_link cells;             /* cells holding versions of its maps   */
    retired *retired;            /* concurrent: versions replaced in a   */
    retired **rtail;             /* cell while pinned (pin.c), oldest    */
    unsigned char rlock;         /* first, and their lock                */
#ifdef CHAMP_FAULTS
    long fail_after;
#endif
};

/* Fields that telemetry may read while their heap's thread writes them
 * (thread heaps of concurrent pools): relaxed atomic stores.  On x86-64
 * the same mov, but the compiler treats them as barriers, so the inline
 * fast paths below take `atomic` as a constant: the plain pool's copy
 * (every caller outside pool.c: a concurrent pool's router never writes
 * its books) stores plainly, the thread heaps' copy (pool.c) atomically. */
#define HEAP_SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define HEAP_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define HEAP_PUT(atomic, x, v)                                              \
    do {                                                                    \
        if (atomic)                                                         \
            HEAP_SET(x, v);                                                 \
        else                                                                \
            (x) = (v);                                                      \
    } while (0)
#ifdef CHAMP_STATS
#define HSTAT(x) HEAP_SET(x, (x) + 1)
#define HSTAT_IN(atomic, x) HEAP_PUT(atomic, x, (x) + 1)
#else
#define HSTAT(x) ((void)0)
#define HSTAT_IN(atomic, x) ((void)0)
#endif

/* Counters of the pool itself: atomic in a concurrent pool. */
static inline void pool_count(const champ_pool *p, uint64_t *c) {
    if (p->concurrent)
        __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
    else
        (*c)++;
}

INTERNAL void *champ__heap_alloc_slow(heap *h, size_t size);
INTERNAL void *champ__theap_alloc_slow(heap *h, size_t size);
INTERNAL void champ__heap_free_large(heap *h, void *b, size_t size);
INTERNAL void *champ__heap_take_range(heap *h, size_t lo, size_t hi, size_t *got);
INTERNAL void *champ__route_alloc(champ_pool *p, size_t size);
INTERNAL void *champ__route_grow(heap *t, champ_pool *p, size_t lo, size_t want,
                                 size_t hi, size_t *got);
INTERNAL void champ__route_free_none(champ_pool *p, void *b, size_t size);
INTERNAL void *champ__pool_rise(heap *h, void *b);
INTERNAL void *champ__theap_rise(heap *h, void *b);
INTERNAL void champ__pool_fall(heap *h);
INTERNAL void champ__pool_release(champ_pool *p);
/* Process exit (champ.c, the default pool): whether p has no map and no
 * cell left (retired versions are released first), and its teardown. */
INTERNAL bool champ__pool_unused(champ_pool *p);
INTERNAL void champ__pool_destroy(champ_pool *p);
INTERNAL void champ__thread_exit(void);
INTERNAL champ_status champ__pool_make(const champ_pool_config *cfg,
                                       champ_pool **out);
INTERNAL bool champ__cpu_ok(void);

/* For champ_validate (alone: it reads free blocks): the pool's books,
 * found by walking every free list and handle page of every heap. */
typedef struct champ_pool_audit {
    size_t free_walked;      /* bytes of the blocks in the free lists     */
    size_t free_counted;     /* what the pool's counters say they hold    */
    long long imbalance;     /* reserved - (carved + fresh + chunk headers) */
    size_t misfiled;         /* free blocks in a list not of their size   */
    size_t pages_walked;     /* handle pages in the lists of all pages    */
    size_t handles_walked;   /* used slots in them                        */
    size_t pages_counted;    /* what the heaps count: pages               */
    size_t handles_counted;  /* ... and handles                           */
    size_t pages_bad;        /* pages whose header disagrees with itself  */
    size_t open_walked;      /* pages in the lists of pages with room     */
    size_t open_expected;    /* pages that have a free slot               */
    size_t live;             /* the pool's live bytes (heaps + side), as  */
                             /* champ_pool_stats reports them             */
    size_t heap_live;        /* ... of which in the heaps' blocks         */
    size_t side;             /* ... and side blocks (arena pools)         */
    size_t spares;           /* spare pages (side blocks not live)        */
    size_t heaps;            /* thread heaps (concurrent pools)           */
    size_t depot;            /* bytes in the depot's free lists           */
    size_t depot_large;      /* ... of which in its large-block lists     */
    size_t regions_bad;      /* huge-page regions whose books disagree    */
                             /* with the chunks cut from them (pool.c)    */
} champ_pool_audit;
INTERNAL void champ__pool_audit(const champ_pool *p, champ_pool_audit *a);
/* Reserved bytes from which a libc pool cuts its chunks from huge-page
 * regions (pool.c; 1 MiB, lowered by tests). */
INTERNAL extern size_t champ__region_from;
/* Tests: while nonzero, no region is mapped (the pool falls back to malloc). */
INTERNAL extern int champ__huge_refuse;
/* The pool's live bytes: exact when no other thread uses the pool. */
INTERNAL size_t champ__pool_live(const champ_pool *p);

/* Adds cell link l to the pool's list of cells, or removes it (a cell
 * call may come from any thread: concurrent pools lock). */
INTERNAL void champ__pool_cell(champ_pool *p, cell_link *l, bool add);

/* Map handles (handle pages, see pool.c).  alloc: CHAMP_HANDLE_BYTES
 * bytes, zeroed except the last (the pool's), or NULL when the pool is out
 * of memory; free: gives one back (any thread, concurrent pools); next:
 * the live handle after h (NULL: the first), NULL after the last; valid
 * while no handle is allocated or freed (alone). */
INTERNAL void *champ__handle_alloc(champ_pool *p);
INTERNAL void champ__handle_free(champ_pool *p, void *h);
INTERNAL void *champ__handle_next(const champ_pool *p, const void *h);
/* The heap whose page holds handle h; a concurrent pool's first thread
 * heap (the others follow through next; NULL: none). */
INTERNAL heap *champ__handle_heap(const void *h);
INTERNAL heap *champ__pool_heaps(const champ_pool *p);

/* Trim's relocation pass (relocate.c) and what it needs of pool.c: fresh
 * space of at least `bytes` in a chunk of its own for heap h, blocks cut
 * from it, and the pool's live and reserved bytes. */
INTERNAL void champ__pool_relocate(champ_pool *p, heap *h);
INTERNAL bool champ__heap_fresh_chunk(heap *h, size_t bytes);
INTERNAL void *champ__heap_carve(heap *h, size_t size);
/* Side blocks: what never moves and is not a node or a key (handle pages,
 * map types).  An arena pool takes each from the backing allocator, so no
 * chunk holds one and trim can give back every chunk its nodes and keys
 * leave; they count in the pool's live and reserved bytes (p->side).  A
 * fixed buffer has no allocator: there they are pool blocks.  No fault
 * hook (callers test pool_fault where a request begins).  Concurrent
 * pools: any thread, no lock held. */
INTERNAL void *champ__side_alloc(champ_pool *p, size_t size);
INTERNAL void champ__side_free(champ_pool *p, void *b, size_t size);
/* Scratch memory of `size` bytes in a huge-page mapping of its own
 * (champ__scratch_alloc in a pool with use_huge: a big batch's arrays, a
 * big collision merge's list), or NULL when
 * the size is under 512 KiB (SCRATCH_FROM) or no mapping is to be had (the
 * caller then takes malloc's); freed by champ__huge_scratch_free with the
 * same size. */
INTERNAL void *champ__huge_scratch(size_t size);
INTERNAL void champ__huge_scratch_free(void *b, size_t size);
INTERNAL extern size_t champ__huge_scratch_maps; /* tests: how many were made */
/* Scratch memory for one call (build.c: a batch's arrays; algebra.c: the
 * merge of two big collision nodes): from the backing allocator in an
 * arena pool (a pool on libc takes big ones from huge-page mappings:
 * champ__huge_scratch), from the buffer in a fixed pool.  NULL when
 * refused.  The fault hook of champ_pool_fail_after sees only a fixed
 * pool's (a pool block); callers that want it for the backing allocator's
 * call pool_fault first.  Freed by champ__scratch_free with the same
 * size. */
INTERNAL void *champ__scratch_alloc(champ_pool *p, size_t bytes);
INTERNAL void champ__scratch_free(champ_pool *p, void *b, size_t bytes);
/* build.c: the probe steps of champ_apply's deduplication table (tests;
 * counted with CHAMP_STATS). */
INTERNAL extern size_t champ__dedup_probes;
/* A batch about to allocate `bytes` of nodes: a pool that cuts chunks from
 * huge-page regions does so from now on if that reaches the threshold
 * (its first chunks would otherwise be malloc's fresh 4 KiB pages). */
INTERNAL void champ__pool_expect(champ_pool *p, size_t bytes);

#ifdef CHAMP_DEBUG
#define FILL_FRESH(p, n) memset((p), 0xCD, (n))
#define FILL_FREED(p, n) memset((p), 0xDD, (n))
#else
#define FILL_FRESH(p, n) ((void)0)
#define FILL_FREED(p, n) ((void)0)
#endif

/* The calling thread's heap of concurrent pool p.  The cache is the last
 * (pool, pool id, heap) the thread used: ids are never reused, so an entry
 * of a freed pool whose address came back never matches.  On a miss,
 * champ__heap_claim (pool.c) looks through the thread's list of heaps or
 * claims one under the pool's mutex; NULL when there is no memory for it.
 * Read inline by pool_free and pool_alloc_grow, so an update in place
 * reaches the thread's heap without a call.  Initial-exec (no call to
 * __tls_get_addr in the shared library: `make check-tls`). */
typedef struct tlent {
    champ_pool *pool;
    uint64_t id;
    heap *h;
} tlent;
INTERNAL extern _Thread_local tlent champ__tl_heap
    __attribute__((tls_model("initial-exec")));
INTERNAL heap *champ__heap_claim(champ_pool *p);

static ALWAYS_INLINE heap *heap_mine(champ_pool *p) {
    if (LIKELY(champ__tl_heap.pool == p && champ__tl_heap.id == p->id))
        return champ__tl_heap.h;
    return champ__heap_claim(p);
}

/* Whether h is this thread's heap of p (as far as the thread's cache
 * knows: false when the cache names another pool), claiming nothing. */
static ALWAYS_INLINE bool heap_is_mine(const champ_pool *p, const heap *h) {
    return champ__tl_heap.pool == p && champ__tl_heap.id == p->id && champ__tl_heap.h == h;
}

/* The fault hook of champ_pool_fail_after: true if this allocation is
 * refused (and counted as refused). */
static ALWAYS_INLINE bool pool_fault(champ_pool *p) {
#ifdef CHAMP_FAULTS
    if (UNLIKELY(p->fail_after >= 0)) {
        if (p->fail_after == 0) {
            pool_count(p, &p->failures);
            return true;
        }
        p->fail_after--;
    }
#else
    (void)p;
#endif
    return false;
}

/* The books of block b (size bytes) just taken from heap h, on every
 * path that hands one out.  Past the heap's `hi` the rise (a peak sample,
 * the watermark) is a tail call that returns b, so a caller with nothing
 * else to do sets up no frame for it. */
static ALWAYS_INLINE void *heap_took(heap *h, void *b, size_t size, bool atomic) {
    HSTAT_IN(atomic, h->n_alloc);
    FILL_FRESH(b, size);
    HEAP_PUT(atomic, h->live, h->live + size);
    if (UNLIKELY(h->live > h->hi))
        return atomic ? champ__theap_rise(h, b) : champ__pool_rise(h, b);
    return b;
}

/* A block from heap h, without the fault hook.  Fast path: the size
 * class's free list (a concurrent pool's router heap has none, so its
 * requests go to the slow path, which serves them from the thread's
 * heap). */
static ALWAYS_INLINE void *heap_alloc_in(heap *h, size_t size, bool atomic) {
    size_t c = size >> 3;
    void *b;
    if (LIKELY(c < POOL_NCLASS)) {
        b = h->free[c];
        if (b) {
            UNPOISON(b, size);
            VG_DEFINED(b, sizeof(void *));
            void *next = *(void **)b;
            h->free[c] = next;
            if (!next)
                h->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
            VG_UNDEFINED(b, size);
            HSTAT_IN(atomic, h->n_alloc_free);
            goto got;
        }
    }
    return atomic ? champ__theap_alloc_slow(h, size) : champ__heap_alloc_slow(h, size);
got:
    return heap_took(h, b, size, atomic);
}

static ALWAYS_INLINE void *heap_alloc_block(heap *h, size_t size) {
    return heap_alloc_in(h, size, false);
}

/* pool_alloc without the fault hook. */
static ALWAYS_INLINE void *pool_alloc_block(champ_pool *p, size_t size) {
    return heap_alloc_block(&p->h, size);
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


/* For a node that grows: a block of `want` bytes if its list has one, else
 * any free block of lo..hi bytes (the smallest), else `want` bytes split
 * from a larger free block or carved from fresh space, else `lo` bytes
 * (which may take a new chunk).  *got receives the block's size: the caller keeps
 * the difference to lo as spare room.  Reusing near sizes keeps the
 * blocks a growing trie leaves behind from piling up in the free lists.
 * (A concurrent pool: the router has no lists and no fresh space, so the
 * request moves to the thread's heap where fresh space is found short.) */
static ALWAYS_INLINE void *pool_alloc_grow(champ_pool *p, size_t lo, size_t want,
                                           size_t hi, size_t *got) {
    *got = want;
    if (hi > POOL_CLASS_MAX || p->h.free[want >> 3])
        return pool_alloc(p, want);
#ifdef CHAMP_FAULTS
    if (p->fail_after >= 0)
        return pool_alloc(p, want);
#endif
    /* a router has no lists and no fresh space: the thread's heap serves
     * it all (a plain pool tests this only when the exact list is empty) */
    if (UNLIKELY(p->h.role == HEAP_ROUTER)) {
        heap *t = heap_mine(p);
        if (LIKELY(t) && t->free[want >> 3])
            return heap_alloc_in(t, want, true);
        return champ__route_grow(t, p, lo, want, hi, got);
    }
    void *b = champ__heap_take_range(&p->h, lo, hi, got);
    if (b)
        return b;
    if ((size_t)(p->h.end - p->h.bump) < want) {
        /* the room is a wish: never worth a new chunk */
        *got = lo;
        return pool_alloc(p, lo);
    }
    return pool_alloc(p, want);
}

/* Gives a block back to heap h (never a router: pool_free sends a
 * concurrent pool's blocks to the thread's heap first).  Slow path
 * when live falls below lo: a plain pool's watermark re-arms, a thread
 * heap with too many free bytes passes them to the depot. */
static ALWAYS_INLINE void heap_free_in(heap *h, void *b, size_t size, bool atomic) {
    size_t c = size >> 3;
    if (LIKELY(c < (atomic ? POOL_NCLASS : h->nclass))) {
        HSTAT_IN(atomic, h->n_free);
        HEAP_PUT(atomic, h->live, h->live - size);
        FILL_FREED(b, size);
        *(void **)b = h->free[c];
        h->free[c] = b;
        h->nonempty[c >> 6] |= (uint64_t)1 << (c & 63);
        POISON(b, size);
        VG_NOACCESS(b, size);
    } else {
        champ__heap_free_large(h, b, size);
    }
    if (UNLIKELY(h->live < h->lo))
        champ__pool_fall(h);
}

static ALWAYS_INLINE void heap_free(heap *h, void *b, size_t size) {
    heap_free_in(h, b, size, false);
}

/* Gives back a block obtained from pool_alloc with the same size, or any
 * piece of one (8-aligned, at least 16 bytes).  Any thread may free a block
 * of a concurrent pool: it goes to the freeing thread's heap, found here
 * inline (a router's nclass is 0, so a plain pool tests the role only for
 * a block above the size classes); a thread that cannot have a heap (no
 * memory) leaves it in the depot. */
static ALWAYS_INLINE void pool_free(champ_pool *p, void *b, size_t size) {
    heap *h = &p->h;
    if (UNLIKELY((size >> 3) >= h->nclass) && h->role == HEAP_ROUTER) {
        heap *t = heap_mine(p);
        if (LIKELY(t))
            heap_free_in(t, b, size, true);
        else
            champ__route_free_none(p, b, size);
        return;
    }
    heap_free(h, b, size);
}

#endif /* CHAMP_POOL_H */

/*
 * pool.c - the node pool: where every node, key blob and map handle lives.
 *
 * Blocks are sized in 8-byte steps and have exactly the size asked for.
 * Up to POOL_CLASS_MAX bytes (the largest node: 32 slots of pairs) each size
 * has its own free list, so a freed node is recycled by the next node of
 * the same size.  Free blocks above that (huge collision nodes, long keys,
 * and the spans compaction joins) sit in lists by size range, a few ranges
 * per power of two, and are taken first fit; what is left of a block after
 * a request is filed again as a free block of its own.  Because no block
 * is rounded up, any 8-aligned piece of a block (16 bytes or more) can be
 * freed on its own: a node that shrinks in place gives back its tail.
 *
 * When a size's list is empty, a free block of a larger size is split (a
 * small one first, then a large one), so sizes a growing trie has moved
 * past are reused; else a fresh block is carved from the current arena
 * chunk; when that cannot serve a request either, the pool takes a new
 * chunk from the backing allocator, each one 1/CHUNK_DIV of what is already
 * reserved (at least the configured chunk size), so growth is geometric,
 * the number of backing calls logarithmic, and unused arena space a small
 * fraction of it (a pool on libc that reserves 1 MiB cuts its chunks from
 * huge-page regions instead: see "Huge-page regions" below).  The old
 * chunk's tail becomes free blocks, not lost; and
 * if much memory sits in free lists in pieces of the wrong sizes, they are
 * compacted (neighbours joined, spans of any length filed whole) before a
 * new chunk is taken.  champ_pool_trim compacts on request, gives every
 * wholly free chunk back to the backing allocator, and when live bytes are
 * a small part of what is reserved moves the live nodes into one new chunk
 * first (relocate.c).  There is no fixed capacity to run out of and no
 * per-node fallback to malloc.
 *
 * Heaps.  The free lists, fresh space and books are a `heap`.  A plain
 * pool is one heap (its first member, so the inline fast paths in pool.h
 * are the instructions of a pool without heaps).  A concurrent pool
 * (champ_pool_config.concurrent) gives each thread a heap of its own:
 * allocations and frees of the thread take no lock.  A block freed by a
 * thread goes to that thread's heap, whoever allocated it; a heap that
 * holds more free bytes than it keeps gives them all to the pool's depot
 * (one lock), and a heap that runs out of fresh space takes the depot's
 * blocks before it takes a new chunk, so a thread that only frees and one
 * that only allocates do not grow the pool without bound.  The heap inside
 * a concurrent pool (the "router") stays empty: every request reaches its
 * slow path, which finds the thread's heap (a thread-local cache of pool
 * and pool id, champ__tl_heap; ids are never reused, so a stale entry for
 * a freed pool is never followed) and serves the request there.  pool_free
 * and pool_alloc_grow read that cache inline (pool.h), so an update in
 * place makes no call to reach the thread's heap.  A thread claims a heap on
 * its first use of the pool; when it exits its heap's free blocks go to
 * the depot and the heap waits for another thread.  New chunks, the depot
 * and the list of heaps are under the pool's mutex.  See design.md,
 * "Threads".
 *
 * Fixed-buffer mode: the pool header and one chunk live in the caller's
 * buffer; no allocator is ever called; when a request cannot be served even
 * after compacting the free lists, the pool returns NULL and the update
 * fails with CHAMP_ENOMEM (updates plan and allocate everything before they
 * change anything).
 *
 * Books: `carved` counts the bytes cut from fresh space and not given back,
 * that is live plus free-listed bytes (per heap; a depot transfer moves
 * carved bytes between heaps).  Fast paths move bytes between live and
 * the free lists and leave it alone; it changes only where fresh space is
 * carved, a chunk's tail retired, or compaction gives a span back to fresh
 * space or a chunk to the allocator.  So the free-listed bytes are carved
 * - live, exact and read in O(1): pool stats never touch a free block
 * (telemetry calls may overlap, and free blocks are poisoned).
 * champ_validate walks the lists and checks the walk against it.
 *
 * Blocks carry no header: callers free with the size they allocated (nodes
 * know their size from their bitmaps).  Free blocks are poisoned for ASan
 * and marked no-access for valgrind (debug builds), so use-after-free inside
 * the pool is caught like use-after-free of malloc.
 *
 * Map handles: handle pages, one pool block each (see the end of the file).
 */
#define _DEFAULT_SOURCE
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void *libc_malloc(size_t size, void *ctx) {
    (void)ctx;
    return malloc(size);
}
static void *libc_realloc(void *p, size_t old_size, size_t new_size, void *ctx) {
    (void)ctx;
    (void)old_size;
    return realloc(p, new_size);
}
static void libc_free(void *p, size_t size, void *ctx) {
    (void)ctx;
    (void)size;
    free(p);
}

#define ALIGN_UP(x, a) (((x) + ((a)-1)) & ~(size_t)((a)-1))
#define CHUNK_HDR ALIGN_UP(sizeof(chunk), 16)
#define DEFAULT_CHUNK (16u * 1024u)
/* Tunables (measured choices: design.md, "Pool").  A new chunk is
 * 1/CHUNK_DIV of what is reserved; before taking one, the free lists are
 * compacted if they hold more than 1/DEFRAG_DIV of it, at most once per
 * 1/MARK_DIV of growth of the live bytes (or of the free-listed bytes). */
#ifndef CHUNK_DIV
#define CHUNK_DIV 32
#endif
#ifndef MARK_DIV
#define MARK_DIV 12
#endif
#ifndef DEFRAG_DIV
#define DEFRAG_DIV 8
#endif
/* A small request splits a small free block only if the remainder is at
 * least SPLIT_MIN bytes (a useful node), except as a last resort. */
#define SPLIT_MIN 48u
/* A large request looks at this many blocks of its own range before it
 * takes the first block of a larger range. */
#define LARGE_PEEK 8u
/* Thread heaps (design.md, "Threads"): a heap keeps up to HEAP_KEEP free
 * bytes (or 1/KEEP_DIV of the pool's reserved bytes, or twice what it held
 * after taking the depot's blocks) before it gives them all to the depot;
 * it samples the pool's live bytes for the peak every PEAK_STEP bytes of
 * its own growth. */
#ifndef HEAP_KEEP
#define HEAP_KEEP ((size_t)256 * 1024)
#endif
#define KEEP_DIV 64
#define PEAK_STEP ((size_t)64 * 1024)

/* What only a concurrent pool has. */
struct cpool {
    pthread_mutex_t lock;        /* chunks, the lists of heaps, the depot */
    heap *heaps;                 /* every thread heap (a list that only   */
                                 /* grows; heads published with release)  */
    heap *idle;                  /* heaps whose thread has exited         */
    size_t active;               /* heaps with a thread (atomic)          */
    heap depot;                  /* free blocks passed between heaps      */
    void *dtail[POOL_NCLASS];    /* the last block of each depot list     */
    void *dtail_large[POOL_NLARGE];
    size_t depot_bytes;          /* what the depot holds (a hint, atomic) */
    size_t peak;                 /* highest live sum sampled (atomic)     */
    champ_pool *reg_next;        /* the registry of live concurrent pools */
};

static size_t fresh(const heap *h) {
    return (size_t)(h->end - h->bump);
}

/* ------------------------------------------------------------------ */
/* Free blocks                                                         */
/* ------------------------------------------------------------------ */

/* A free block of a large list, and the shape compaction threads through
 * the blocks it gathers. */
typedef struct fblock {
    struct fblock *next;
    size_t size;
} fblock;

/* The two words of a large free block (or the link of a small one), read
 * past its poisoning. */
static fblock fb_read(const void *b, size_t n) {
    fblock f = {NULL, 0};
    UNPOISON(b, n);
    VG_DEFINED(b, n);
    memcpy(&f, b, n);
    POISON(b, n);
    VG_NOACCESS(b, n);
    return f;
}
static void *free_next(const void *b) {
    return fb_read(b, sizeof(void *)).next;
}
static void fb_set_next(void *b, void *next) {
    UNPOISON(b, sizeof(void *));
    VG_UNDEFINED(b, sizeof(void *));
    *(void **)b = next;
    POISON(b, sizeof(void *));
    VG_NOACCESS(b, sizeof(void *));
}

/* The list of a large free block of `s` bytes (s >= 2^POOL_LARGE_SHIFT). */
static unsigned large_index(size_t s) {
    unsigned k = 63u - (unsigned)__builtin_clzll((unsigned long long)s);
    unsigned i = ((k - POOL_LARGE_SHIFT) << POOL_LARGE_SUB_BITS) |
                 (unsigned)((s >> (k - POOL_LARGE_SUB_BITS)) &
                            ((1u << POOL_LARGE_SUB_BITS) - 1));
    return i < POOL_NLARGE ? i : POOL_NLARGE - 1;
}

/* Files [b, b+s) (8 <= s <= POOL_CLASS_MAX) in its class's list.  Class 1
 * holds 8-byte crumbs (the tail of a retired chunk), which only compaction
 * uses again. */
static void small_push(heap *h, char *b, size_t s) {
    size_t c = s >> 3;
    UNPOISON(b, sizeof(void *));
    VG_UNDEFINED(b, sizeof(void *));
    *(void **)b = h->free[c];
    h->free[c] = b;
    h->nonempty[c >> 6] |= (uint64_t)1 << (c & 63);
    POISON(b, s);
    VG_NOACCESS(b, s);
}

/* Pops the head of class c's list (known to be non-empty). */
static void *small_pop(heap *h, size_t c) {
    void *b = h->free[c];
    UNPOISON(b, c << 3);
    VG_DEFINED(b, sizeof(void *));
    h->free[c] = *(void **)b;
    if (!h->free[c])
        h->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
    VG_UNDEFINED(b, c << 3);
    return b;
}

static void large_push(heap *h, char *b, size_t s) {
    unsigned i = large_index(s);
    UNPOISON(b, sizeof(fblock));
    VG_UNDEFINED(b, sizeof(fblock));
    fblock *f = (fblock *)(void *)b;
    f->next = h->large[i];
    f->size = s;
    h->large[i] = f;
    h->large_nonempty[i >> 6] |= (uint64_t)1 << (i & 63);
    POISON(b, s);
    VG_NOACCESS(b, s);
}

/* Files a free span of any size: a crumb, a small block, or a large one. */
static void file_span(heap *h, char *b, size_t s) {
    if (s == 0)
        return;
    if (s <= POOL_CLASS_MAX)
        small_push(h, b, s);
    else
        large_push(h, b, s);
}

/* The first non-empty large list at or after i, or POOL_NLARGE. */
static unsigned large_next_list(const heap *h, unsigned i) {
    while (i < POOL_NLARGE) {
        uint64_t w = h->large_nonempty[i >> 6] & (~(uint64_t)0 << (i & 63));
        if (w)
            return (i & ~63u) + (unsigned)__builtin_ctzll(w);
        i = (i | 63u) + 1;
    }
    return POOL_NLARGE;
}

/* A block of bs bytes serves a request of `size` if nothing is left over
 * or the rest is a block of its own (16 bytes or more). */
static bool fits(size_t bs, size_t size) {
    return bs == size || bs >= size + 16;
}

/* Takes a block of `size` bytes out of the first block of large list i that
 * fits, looking at `limit` blocks at most; the rest is filed again. */
static void *large_take(heap *h, unsigned i, size_t size, size_t limit) {
    char *prev = NULL, *b = h->large[i];
    while (b && limit--) {
        fblock f = fb_read(b, sizeof f);
        if (fits(f.size, size)) {
            if (prev)
                fb_set_next(prev, f.next);
            else if (!(h->large[i] = f.next))
                h->large_nonempty[i >> 6] &= ~((uint64_t)1 << (i & 63));
            file_span(h, b + size, f.size - size);
            UNPOISON(b, size);
            VG_UNDEFINED(b, size);
            return b;
        }
        prev = b;
        b = (char *)f.next;
    }
    return NULL;
}

/* A block of `size` bytes from the large lists: a few blocks of its own
 * range, then the first fitting block of a larger range, then (fixed
 * buffers, where nothing else is left) the rest of its own range. */
static void *large_fit(heap *h, size_t size) {
    unsigned i = size > POOL_CLASS_MAX ? large_index(size) : 0;
    void *b = NULL;
    if (h->large[i] && (b = large_take(h, i, size, LARGE_PEEK)))
        return b;
    for (unsigned j = large_next_list(h, i + 1); j < POOL_NLARGE;
         j = large_next_list(h, j + 1))
        if ((b = large_take(h, j, size, SIZE_MAX)))
            return b;
    if (h->pool->fixed && h->large[i])
        b = large_take(h, i, size, SIZE_MAX);
    return b;
}

/* The size class's list is empty: before carving fresh arena, split a free
 * block of a larger class (the smallest one that leaves a useful remainder
 * of at least SPLIT_MIN bytes).  Without this, blocks of the sizes an
 * insert-heavy workload has grown past would sit in free lists for good. */
static void *pool_split(heap *h, size_t size) {
    size_t c = (size + SPLIT_MIN) >> 3;
    while (c < POOL_NCLASS) {
        uint64_t w = h->nonempty[c >> 6] & (~(uint64_t)0 << (c & 63));
        if (!w) {
            c = (c | 63) + 1;
            continue;
        }
        c = (c & ~(size_t)63) + (size_t)__builtin_ctzll(w);
        if (c >= POOL_NCLASS)
            break;
        void *b = h->free[c];
        if (!b) {
            h->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
            c++;
            continue;
        }
        small_pop(h, c);
        small_push(h, (char *)b + size, (c << 3) - size);
        return b;
    }
    return NULL;
}

/* Last resort of a full fixed pool: any small free block big enough, as
 * long as what is left over is a block (or nothing). */
static void *pool_split_loose(heap *h, size_t size) {
    for (size_t c = size >> 3; c < POOL_NCLASS; c++) {
        void *b = h->free[c];
        size_t bs = c << 3;
        if (!b || !fits(bs, size))
            continue;
        small_pop(h, c);
        if (bs > size)
            small_push(h, (char *)b + size, bs - size);
        return b;
    }
    return NULL;
}

/* Whether any large list holds a block. */
static bool large_any(const heap *h) {
    uint64_t w = 0;
    for (unsigned i = 0; i < (POOL_NLARGE + 63) / 64; i++)
        w |= h->large_nonempty[i];
    return w != 0;
}

/* A free block for a request whose own list is empty (small) or any
 * request (large): split a small block, then a large one. */
static void *take_free(heap *h, size_t size) {
    if (size <= POOL_CLASS_MAX) {
        void *b = pool_split(h, size);
        if (b)
            return b;
    }
    return large_any(h) ? large_fit(h, size) : NULL;
}

/* The same after a compaction (or a transfer from the depot), which may
 * have filled the size's own list. */
static void *take_free_again(heap *h, size_t size) {
    if (size <= POOL_CLASS_MAX && h->free[size >> 3])
        return small_pop(h, size >> 3);
    return take_free(h, size);
}

/* ------------------------------------------------------------------ */
/* Chunks                                                              */
/* ------------------------------------------------------------------ */

/* Files [bump, end) as free blocks so a retired chunk's tail is reused. */
static void pool_retire_tail(heap *h) {
    size_t s = fresh(h);
    if (s) {
        file_span(h, h->bump, s);
        HEAP_SET(h->carved, h->carved + s);
    }
    h->bump = h->end;
}

/* ------------------------------------------------------------------ */
/* Huge-page regions                                                   */
/* ------------------------------------------------------------------ */

/* A pool on the libc allocator cuts its chunks from regions once it holds
 * REGION_FROM bytes (champ__region_from), or once a batch said it will
 * (champ__pool_expect, build.c): anonymous mappings aligned to
 * 2 MiB and advised for transparent huge pages, so touching fresh chunk
 * space takes one page fault per 2 MiB instead of one per 4 KiB.  Chunk
 * sizes, and so the reserved bytes, do not change: a region is carved into
 * chunks in order; a chunk that does not fit in what is left of the
 * current region is cut smaller when the request fits, else a new region
 * is mapped (the old one's tail is never written: it costs address space,
 * and at most the rest of a huge page already faulted in).  A chunk given
 * back returns its pages to the kernel (MADV_DONTNEED), or is unmapped
 * with its region when it was the region's last.  Concurrent pools: under
 * the pool's lock, like every chunk. */
#define HUGE_PAGE ((size_t)2 << 20)
#ifndef REGION_FROM
#define REGION_FROM ((size_t)1 << 20)
#endif
/* The threshold in force: tests lower it to reach regions with small maps
 * (pool.huge_regions: a debug build validating after every update cannot
 * fill 1 MiB). */
size_t champ__region_from = REGION_FROM;
#define REGION_MIN ((size_t)8 << 20) /* a region: 4 chunks, at least this */

typedef struct region {
    struct region *next;
    char *base;
    size_t size, used; /* bytes mapped, bytes cut into chunks */
    size_t chunks;     /* chunks cut from it and not given back */
} region;

int champ__huge_refuse; /* tests: while set, no huge-page mapping is made */

static size_t os_page(void) {
    long pg = sysconf(_SC_PAGESIZE);
    return pg > 0 ? (size_t)pg : 4096;
}

/* A mapping of `size` bytes (a multiple of HUGE_PAGE) aligned to
 * HUGE_PAGE and advised for huge pages, or NULL (refused: the caller
 * falls back to malloc). */
static char *huge_map(size_t size) {
    if (champ__huge_refuse)
        return NULL;
    size_t map = size + HUGE_PAGE;
    char *raw = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    char *base = (char *)ALIGN_UP((uintptr_t)raw, HUGE_PAGE);
    size_t head = (size_t)(base - raw), tail = map - head - size;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap(base + size, tail);
#ifdef MADV_HUGEPAGE
    madvise(base, size, MADV_HUGEPAGE);
#endif
    return base;
}

void champ__pool_expect(champ_pool *p, size_t bytes) {
    if (p->use_huge && bytes >= champ__region_from && !HEAP_GET(p->huge_early))
        HEAP_SET(p->huge_early, true);
}

size_t champ__huge_scratch_maps; /* tests: scratch mappings made (racy: a count) */
/* Scratch lives for one call: its mapping costs resident memory only
 * while the call runs, so the threshold is lower than the regions'. */
#define SCRATCH_FROM ((size_t)512 << 10)

void *champ__huge_scratch(size_t size) {
    if (size < SCRATCH_FROM || size > SIZE_MAX - HUGE_PAGE * 2)
        return NULL;
    void *b = huge_map(ALIGN_UP(size, HUGE_PAGE));
    if (b)
        __atomic_fetch_add(&champ__huge_scratch_maps, 1, __ATOMIC_RELAXED);
    return b;
}

void champ__huge_scratch_free(void *b, size_t size) {
    munmap(b, ALIGN_UP(size, HUGE_PAGE));
}

/* Scratch blocks carry a 16-byte header saying where they came from (a
 * huge-page mapping or the backing allocator). */
#define SCRATCH_HDR 16u

void *champ__scratch_alloc(champ_pool *p, size_t bytes) {
    if (p->fixed)
        return pool_alloc(p, (bytes + 15u) & ~(size_t)15);
    pool_count(p, &p->backing_calls);
    if (!p->use_huge)
        return p->alloc.malloc(bytes, p->alloc.ctx);
    if (bytes > SIZE_MAX - SCRATCH_HDR)
        return NULL;
    unsigned char *b = champ__huge_scratch(bytes + SCRATCH_HDR);
    bool huge = b != NULL;
    if (!b)
        b = p->alloc.malloc(bytes + SCRATCH_HDR, p->alloc.ctx);
    if (!b)
        return NULL;
    b[0] = huge;
    return b + SCRATCH_HDR;
}

void champ__scratch_free(champ_pool *p, void *b, size_t bytes) {
    if (!b)
        return;
    if (p->fixed) {
        pool_free(p, b, (bytes + 15u) & ~(size_t)15);
    } else if (!p->use_huge) {
        p->alloc.free(b, bytes, p->alloc.ctx);
    } else {
        unsigned char *h = (unsigned char *)b - SCRATCH_HDR;
        if (h[0])
            champ__huge_scratch_free(h, bytes + SCRATCH_HDR);
        else
            p->alloc.free(h, bytes + SCRATCH_HDR, p->alloc.ctx);
    }
}

static region *region_new(champ_pool *p, size_t want) {
    if (want > SIZE_MAX / 8)
        return NULL; /* (a size the mapping arithmetic below would wrap) */
    size_t size = ALIGN_UP(want * 4 > REGION_MIN ? want * 4 : REGION_MIN, HUGE_PAGE);
    region *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    char *base = huge_map(size);
    if (!base) {
        free(r);
        return NULL;
    }
    r->base = base;
    r->size = size;
    r->used = 0;
    r->chunks = 0;
    r->next = p->regions;
    p->regions = r;
    return r;
}

/* A chunk of `want` bytes or, cut from the end of a region, of at least
 * `need` (*got: its size). */
static chunk *region_chunk(champ_pool *p, size_t want, size_t need, size_t *got) {
    region *r = p->regions;
    if (!r || r->size - r->used < need) {
        r = region_new(p, want);
        if (!r)
            return NULL;
    }
    size_t size = r->size - r->used < want ? r->size - r->used : want;
    chunk *c = (chunk *)(void *)(r->base + r->used);
    r->used += size;
    r->chunks++;
    HEAP_SET(p->huge, p->huge + size);
    *got = size;
    return c;
}

static region **region_of(champ_pool *p, const char *c) {
    region **link = &p->regions;
    while (*link && !(c >= (*link)->base && c < (*link)->base + (*link)->size))
        link = &(*link)->next;
    return link;
}

/* Gives chunk c (size bytes) back to whoever it came from. */
static void chunk_free(champ_pool *p, chunk *c, size_t size) {
    region **link = p->use_huge ? region_of(p, (const char *)c) : NULL;
    if (!link || !*link) {
        p->alloc.free(c, size, p->alloc.ctx);
        return;
    }
    region *r = *link;
    HEAP_SET(p->huge, p->huge - size);
    if (--r->chunks == 0) {
        *link = r->next;
        munmap(r->base, r->size);
        free(r);
        return;
    }
    if ((char *)c + size == r->base + r->used)
        r->used -= size; /* the last chunk cut: its space is cut again */
    /* the pages wholly inside c (chunks are not page-aligned, and the
     * kernel drops whole pages: a page c shares holds a neighbour's data) */
    uintptr_t pg = os_page();
    uintptr_t lo = ALIGN_UP((uintptr_t)c, pg), hi = ((uintptr_t)c + size) & ~(pg - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* A new chunk of `want` bytes (a multiple of 16; from a region, possibly
 * smaller but at least `need`) becomes h's fresh space (concurrent pools:
 * under the pool's lock). */
static bool chunk_add(heap *h, size_t want, size_t need) {
    champ_pool *p = h->pool;
    pool_count(p, &p->backing_calls);
    chunk *c = NULL;
    if (p->use_huge && (p->reserved >= champ__region_from || HEAP_GET(p->huge_early)))
        c = region_chunk(p, want, need, &want);
    if (!c) /* no region (or no mapping to be had): malloc */
        c = p->alloc.malloc(want, p->alloc.ctx);
    if (!c)
        return false;
    pool_retire_tail(h);
    c->next = p->chunks;
    c->size = want;
    p->chunks = c;
    HEAP_SET(p->nchunks, p->nchunks + 1);
    HEAP_SET(p->reserved, p->reserved + want);
    h->bump = (char *)c + CHUNK_HDR;
    h->end = (char *)c + want;
    POISON(h->bump, fresh(h));
    VG_NOACCESS(h->bump, fresh(h));
    return true;
}

/* Makes room for a block of `size` bytes in fresh arena space. */
static bool pool_grow(heap *h, size_t size) {
    champ_pool *p = h->pool;
    if (p->fixed)
        return false;
    size_t want = p->reserved / CHUNK_DIV;
    if (want < p->chunk_min)
        want = p->chunk_min;
    if (want < size + CHUNK_HDR)
        want = size + CHUNK_HDR;
    return chunk_add(h, ALIGN_UP(want, 16), ALIGN_UP(size + CHUNK_HDR, 16));
}

/* ------------------------------------------------------------------ */
/* Compaction                                                          */
/* ------------------------------------------------------------------ */

/* Chunk sizes are multiples of 16: bit 0 marks a chunk that trim gives
 * back once the scan of the free spans is over. */
#define CHUNK_DOOMED ((size_t)1)

/* Where a free span found by compaction goes: back to fresh space if it
 * ends there; when trimming, back to the allocator if it is a whole chunk
 * (c: the chunk whose whole space it is, else NULL); else into the lists.
 * Returns true if it was not filed (something was given back). */
static ALWAYS_INLINE bool settle_span(heap *h, char *b, size_t len, chunk *c, bool trim) {
    if (b + len == h->bump) {
        h->bump = b;
        HEAP_SET(h->carved, h->carved - len);
        POISON(h->bump, fresh(h));
        VG_NOACCESS(h->bump, fresh(h));
        return true;
    }
    if (trim && c) {
        c->size |= CHUNK_DOOMED;
        HEAP_SET(h->carved, h->carved - len);
        return true;
    }
    file_span(h, b, len);
    return false;
}

/* Trim, after the scan: gives back the chunks settle_span doomed, and the
 * current chunk if it is all fresh space. */
static void free_doomed(heap *h, bool trim) {
    if (!trim)
        return;
    champ_pool *p = h->pool;
    chunk **link = &p->chunks;
    while (*link) {
        chunk *c = *link;
        bool current = h->end == (char *)c + (c->size & ~CHUNK_DOOMED);
        if (current && h->bump == (char *)c + CHUNK_HDR) {
            c->size |= CHUNK_DOOMED;
            h->bump = h->end = NULL;
        }
        if (!(c->size & CHUNK_DOOMED)) {
            link = &c->next;
            continue;
        }
        size_t size = c->size & ~CHUNK_DOOMED;
        *link = c->next;
        HEAP_SET(p->nchunks, p->nchunks - 1);
        HEAP_SET(p->reserved, p->reserved - size);
        UNPOISON(c, size);
        VG_UNDEFINED(c, size);
        chunk_free(p, c, size);
    }
}

/* The compaction of an arena pool, with a scratch bitmap (one bit per 8
 * bytes of chunk space, from the backing allocator and given back at once):
 * every free block sets its bits, then one scan of the bitmap yields the
 * free spans in address order.  One pass over the free blocks instead of a
 * merge sort's log2(blocks) passes, which at 10M keys made compaction a
 * third of the insert time.  Returns -1 if the scratch memory is not there
 * (the caller sorts instead), else whether anything was joined or given
 * back. */
typedef struct cspan {
    char *start;
    size_t units; /* 8-byte units of the chunk */
    size_t word;  /* its first word in the bitmap */
} cspan;

static void mark_block(const cspan *cs, size_t n, uint64_t *bm, const char *b,
                       size_t size) {
    size_t lo = 0, hi = n; /* the chunk holding b: last start <= b */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (b >= cs[mid].start)
            lo = mid;
        else
            hi = mid;
    }
    size_t u = (size_t)(b - cs[lo].start) / 8, e = u + size / 8 - 1;
    uint64_t *w = bm + cs[lo].word;
    size_t wa = u >> 6, we = e >> 6; /* bits u..e, a word at a time */
    uint64_t ma = ~(uint64_t)0 << (u & 63), me = ~(uint64_t)0 >> (63 - (e & 63));
    if (wa == we) {
        w[wa] |= ma & me;
    } else {
        w[wa] |= ma;
        for (size_t x = wa + 1; x < we; x++)
            w[x] = ~(uint64_t)0;
        w[we] |= me;
    }
}

static int pool_defrag_bitmap(heap *h, bool trim) {
    champ_pool *p = h->pool;
    size_t n = p->nchunks, words = 0;
    if (n == 0 || p->fixed)
        return -1;
    for (chunk *c = p->chunks; c; c = c->next)
        words += (c->size / 8 + 63) / 64;
    size_t bytes = n * sizeof(cspan) + words * 8;
    pool_count(p, &p->backing_calls);
    cspan *cs = p->alloc.malloc(bytes, p->alloc.ctx);
    if (!cs)
        return -1;
    uint64_t *bm = (uint64_t *)(void *)(cs + n);
    memset(bm, 0, words * 8);
    size_t i = 0;
    for (chunk *c = p->chunks; c; c = c->next, i++) {
        cs[i].start = (char *)c;
        cs[i].units = c->size / 8;
    }
    for (size_t a = 1; a < n; a++) { /* insertion sort by address */
        cspan t = cs[a];
        size_t b = a;
        for (; b > 0 && cs[b - 1].start > t.start; b--)
            cs[b] = cs[b - 1];
        cs[b] = t;
    }
    for (size_t a = 0, w = 0; a < n; a++) {
        cs[a].word = w;
        w += (cs[a].units + 63) / 64;
    }
    size_t blocks = 0, spans = 0;
    for (size_t c = 1; c < POOL_NCLASS; c++) {
        for (void *b = h->free[c]; b; b = free_next(b), blocks++)
            mark_block(cs, n, bm, b, c << 3);
        h->free[c] = NULL;
    }
    memset(h->nonempty, 0, sizeof h->nonempty);
    for (unsigned k = 0; k < POOL_NLARGE; k++) {
        for (void *b = h->large[k]; b; blocks++) {
            fblock f = fb_read(b, sizeof f);
            mark_block(cs, n, bm, b, f.size);
            b = f.next;
        }
        h->large[k] = NULL;
    }
    memset(h->large_nonempty, 0, sizeof h->large_nonempty);
    bool gave_back = false;
    for (size_t a = 0; a < n; a++) {
        const uint64_t *w = bm + cs[a].word;
        size_t nw = (cs[a].units + 63) / 64, u = 0;
        while (u < cs[a].units) {
            /* next set bit at or after u */
            size_t wi = u >> 6;
            uint64_t x = wi < nw ? w[wi] & (~(uint64_t)0 << (u & 63)) : 0;
            while (!x && ++wi < nw)
                x = w[wi];
            if (!x)
                break;
            size_t s0 = wi * 64 + (size_t)__builtin_ctzll(x);
            /* next clear bit after s0 */
            uint64_t y = ~w[wi] & (~(uint64_t)0 << (s0 & 63));
            while (!y && ++wi < nw)
                y = ~w[wi];
            size_t s1 = y ? wi * 64 + (size_t)__builtin_ctzll(y) : nw * 64;
            if (s1 > cs[a].units)
                s1 = cs[a].units;
            bool whole = s0 == CHUNK_HDR / 8 && s1 == cs[a].units;
            if (settle_span(h, cs[a].start + s0 * 8, (s1 - s0) * 8,
                            whole ? (chunk *)(void *)cs[a].start : NULL, trim))
                gave_back = true;
            else
                spans++;
            u = s1;
        }
    }
    p->alloc.free(cs, bytes, p->alloc.ctx);
    free_doomed(h, trim);
    return gave_back || spans < blocks;
}

/* The merge sort threads a list through the free blocks it gathers.  An
 * element is named by its address, with bit 0 set for an 8-byte crumb,
 * which has room for the link only; other elements hold their size after
 * it. */
typedef uintptr_t fref;

static char *fr_addr(fref r) {
    return (char *)(r & ~(uintptr_t)1);
}
static size_t fr_size(fref r) {
    return r & 1 ? 8 : ((const fblock *)(void *)fr_addr(r))->size;
}
static fref *fr_link(fref r) {
    return (fref *)(void *)fr_addr(r);
}

static fref fr_merge(fref a, fref b) {
    fref head = 0, *t = &head;
    while (a && b) {
        fref *x = (uintptr_t)fr_addr(a) < (uintptr_t)fr_addr(b) ? &a : &b;
        *t = *x;
        t = fr_link(*x);
        *x = *t;
    }
    *t = a ? a : b;
    return head;
}

/* Moves every block of one free list onto `all`: blocks of `size` bytes,
 * or (size 0) large blocks that know their size. */
static fref gather_list(void **head, size_t size, fref all) {
    void *b = *head;
    size_t n = size == 8 ? 8 : sizeof(fblock);
    while (b) {
        fblock f = fb_read(b, size ? sizeof(void *) : sizeof f);
        UNPOISON(b, n);
        VG_UNDEFINED(b, n);
        fref r = (uintptr_t)b | (size == 8);
        *fr_link(r) = all;
        if (size != 8)
            ((fblock *)b)->size = size ? size : f.size;
        all = r;
        b = f.next;
    }
    *head = NULL;
    return all;
}

/* The chunk whose whole space [b, b+len) is, or NULL. */
static chunk *whole_chunk(const champ_pool *p, const char *b, size_t len) {
    if (p->fixed)
        return NULL;
    for (chunk *c = p->chunks; c; c = c->next)
        if (b == (char *)c + CHUNK_HDR && len == c->size - CHUNK_HDR)
            return c;
    return NULL;
}

/* Gathers every free block, sorts them by address (a merge sort on the
 * list itself: no memory needed), joins neighbours, gives a span that ends
 * at the fresh-space pointer back to fresh space (and, trimming, whole
 * chunks to the allocator), and files the rest whole.  After a clear()
 * this turns a pool of scattered free blocks back into one empty arena.
 * Returns true if anything was joined or given back.  Arena pools use the
 * bitmap above when they can. */
static bool pool_defrag(heap *h, bool trim) {
    champ_pool *p = h->pool;
    int r = pool_defrag_bitmap(h, trim);
    if (r >= 0)
        return r;
    fref all = 0;
    for (size_t c = 1; c < POOL_NCLASS; c++)
        all = gather_list(&h->free[c], c << 3, all);
    for (unsigned k = 0; k < POOL_NLARGE; k++)
        all = gather_list(&h->large[k], 0, all);
    memset(h->nonempty, 0, sizeof h->nonempty);
    memset(h->large_nonempty, 0, sizeof h->large_nonempty);
    if (!all) {
        free_doomed(h, trim);
        return false;
    }
    /* bottom-up merge sort of the list by address */
    fref bins[64] = {0};
    while (all) {
        fref x = all;
        all = *fr_link(x);
        *fr_link(x) = 0;
        unsigned i = 0;
        for (; i < 63 && bins[i]; i++) {
            x = fr_merge(bins[i], x);
            bins[i] = 0;
        }
        bins[i] = x;
    }
    for (unsigned i = 0; i < 64; i++)
        all = fr_merge(bins[i], all);
    /* join neighbours into spans and settle each */
    bool changed = false;
    char *sb = NULL;
    size_t sl = 0;
    for (fref f = all; f;) {
        fref next = *fr_link(f);
        char *b = fr_addr(f);
        size_t len = fr_size(f);
        if (sb && sb + sl == b) {
            sl += len;
            changed = true;
        } else {
            if (sb && settle_span(h, sb, sl, trim ? whole_chunk(p, sb, sl) : NULL, trim))
                changed = true;
            sb = b;
            sl = len;
        }
        f = next;
    }
    if (settle_span(h, sb, sl, trim ? whole_chunk(p, sb, sl) : NULL, trim))
        changed = true;
    free_doomed(h, trim);
    return changed;
}

/* ------------------------------------------------------------------ */
/* Threads: locks, the registry of pools, each thread's heaps          */
/* ------------------------------------------------------------------ */

static void pool_lock(champ_pool *p) {
    pthread_mutex_lock(&p->cc->lock);
}
static void pool_unlock(champ_pool *p) {
    pthread_mutex_unlock(&p->cc->lock);
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* A heap's handle pages are guarded by a spinlock: held for a few
 * instructions (a slot bit and a list link), taken by the heap's thread
 * and by threads freeing handles of its pages. */
static void hp_lock(heap *h) {
    unsigned spins = 0;
    while (__atomic_test_and_set(&h->hlock, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&h->hlock, __ATOMIC_RELAXED)) {
            if (++spins < 128)
                cpu_relax();
            else
                sched_yield();
        }
}
static void hp_unlock(heap *h) {
    __atomic_clear(&h->hlock, __ATOMIC_RELEASE);
}

/* Every live concurrent pool, so that a thread that exits can tell
 * whether a pool it used is still there before it touches it. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static champ_pool *reg_head;
static uint64_t reg_ids;

static bool reg_alive(const champ_pool *p, uint64_t id) {
    for (const champ_pool *x = reg_head; x; x = x->cc->reg_next)
        if (x == p)
            return x->id == id;
    return false;
}

/* The heaps of the thread: a cache of the last one used, and all of them
 * (for the exit).  An entry names its pool by address and id (a freed
 * pool's address may come back). */
typedef struct tstate {
    size_t n, cap;
    tlent e[];
} tstate;

#define TLS_IE __attribute__((tls_model("initial-exec")))
_Thread_local tlent champ__tl_heap TLS_IE;
static _Thread_local tstate *tl_state TLS_IE;

static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static bool tl_key_ok;

static void heap_release(champ_pool *p, heap *h);

/* The thread exits: its heaps of pools still alive wait for others. */
static void tl_exit(void *v) {
    tstate *s = v;
    tl_state = NULL;
    memset(&champ__tl_heap, 0, sizeof champ__tl_heap);
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < s->n; i++)
        if (reg_alive(s->e[i].pool, s->e[i].id))
            heap_release(s->e[i].pool, s->e[i].h);
    pthread_mutex_unlock(&reg_lock);
    free(s);
}

/* The calling thread's exit, done early: at process exit (the main
 * thread runs no key destructors). */
void champ__thread_exit(void) {
    if (!tl_state)
        return;
    pthread_setspecific(tl_key, NULL);
    tl_exit(tl_state);
}

static void tl_key_make(void) {
    tl_key_ok = pthread_key_create(&tl_key, tl_exit) == 0;
}

/* Room for one more entry in the thread's list (entries of freed pools
 * are dropped first). */
static bool tl_room(void) {
    tstate *s = tl_state;
    if (s && s->n < s->cap)
        return true;
    pthread_once(&tl_once, tl_key_make);
    if (!tl_key_ok)
        return false;
    if (s) {
        size_t k = 0;
        pthread_mutex_lock(&reg_lock);
        for (size_t i = 0; i < s->n; i++)
            if (reg_alive(s->e[i].pool, s->e[i].id))
                s->e[k++] = s->e[i];
        pthread_mutex_unlock(&reg_lock);
        s->n = k;
        if (k < s->cap)
            return true;
    }
    size_t cap = s ? 2 * s->cap : 4;
    tstate *ns = malloc(sizeof *ns + cap * sizeof(tlent));
    if (!ns)
        return false;
    ns->n = s ? s->n : 0;
    ns->cap = cap;
    if (s)
        memcpy(ns->e, s->e, s->n * sizeof(tlent));
    if (pthread_setspecific(tl_key, ns) != 0) {
        free(ns);
        return false;
    }
    tl_state = ns;
    free(s);
    return true;
}

static size_t keep_base(const champ_pool *p) {
    size_t k = HEAP_GET(p->reserved) / KEEP_DIV;
    return k > HEAP_KEEP ? k : HEAP_KEEP;
}

/* A thread heap gives its free blocks away once they pass `keep`. */
static void heap_rebook(heap *h) {
    if (h->role == HEAP_THREAD)
        h->lo = h->carved - h->keep;
}

static void heap_init(heap *h, champ_pool *p, uint8_t role) {
    memset(h, 0, sizeof *h);
    h->pool = p;
    h->role = role;
    h->nclass = POOL_NCLASS;
    if (role == HEAP_THREAD) {
        h->live = h->carved = HEAP_BIAS;
        h->hi = HEAP_BIAS + PEAK_STEP;
        h->keep = keep_base(p);
        heap_rebook(h);
    } else if (role == HEAP_ROUTER) {
        h->hi = SIZE_MAX;
        h->nclass = 0;
    } else {
        h->hi = SIZE_MAX;
    }
}

/* The calling thread's heap in concurrent pool p: an idle one, or a new
 * one.  NULL when there is no memory for it. */
NOINLINE heap *champ__heap_claim(champ_pool *p) {
    tstate *s = tl_state;
    if (s)
        for (size_t i = 0; i < s->n; i++)
            if (s->e[i].pool == p && s->e[i].id == p->id) {
                champ__tl_heap = s->e[i];
                return champ__tl_heap.h;
            }
    if (!tl_room())
        return NULL;
    cpool *cc = p->cc;
    pool_lock(p);
    heap *h = cc->idle;
    if (h) {
        cc->idle = h->idle_next;
        h->idle_next = NULL;
        h->idle = false;
    } else {
        pool_count(p, &p->backing_calls);
        h = p->alloc.malloc(sizeof *h, p->alloc.ctx);
        if (h) {
            heap_init(h, p, HEAP_THREAD);
            h->next = cc->heaps;
            __atomic_store_n(&cc->heaps, h, __ATOMIC_RELEASE);
        }
    }
    if (h)
        HEAP_SET(cc->active, cc->active + 1);
    pool_unlock(p);
    if (!h)
        return NULL;
    s = tl_state;
    tlent e = {p, p->id, h};
    s->e[s->n++] = e;
    champ__tl_heap = e;
    return h;
}

/* ------------------------------------------------------------------ */
/* The depot                                                           */
/* ------------------------------------------------------------------ */

/* Free bytes in the depot (its carved bytes less the live bytes booked
 * on it by frees of threads that had no heap). */
static size_t depot_spare(const cpool *cc) {
    return cc->depot.carved - cc->depot.live;
}

/* Moves every free block of h into the depot: each list is walked (for its
 * length and last block) outside the lock, then spliced in under it. */
static void depot_give(heap *h) {
    champ_pool *p = h->pool;
    cpool *cc = p->cc;
    void *tail[POOL_NCLASS], *ltail[POOL_NLARGE];
    size_t bytes = 0;
    for (size_t c = 1; c < POOL_NCLASS; c++) {
        tail[c] = NULL;
        for (void *b = h->free[c]; b; b = free_next(b)) {
            tail[c] = b;
            bytes += c << 3;
        }
    }
    for (unsigned k = 0; k < POOL_NLARGE; k++) {
        ltail[k] = NULL;
        for (void *b = h->large[k]; b;) {
            fblock f = fb_read(b, sizeof f);
            ltail[k] = b;
            bytes += f.size;
            b = f.next;
        }
    }
    if (bytes) {
        heap *d = &cc->depot;
        pool_lock(p);
        for (size_t c = 1; c < POOL_NCLASS; c++) {
            if (!tail[c])
                continue;
            fb_set_next(tail[c], d->free[c]);
            if (!d->free[c])
                cc->dtail[c] = tail[c];
            d->free[c] = h->free[c];
            d->nonempty[c >> 6] |= (uint64_t)1 << (c & 63);
        }
        for (unsigned k = 0; k < POOL_NLARGE; k++) {
            if (!ltail[k])
                continue;
            fb_set_next(ltail[k], d->large[k]);
            if (!d->large[k])
                cc->dtail_large[k] = ltail[k];
            d->large[k] = h->large[k];
            d->large_nonempty[k >> 6] |= (uint64_t)1 << (k & 63);
        }
        HEAP_SET(d->carved, d->carved + bytes);
        HEAP_SET(cc->depot_bytes, depot_spare(cc));
        pool_unlock(p);
        memset(h->free, 0, sizeof h->free);
        memset(h->nonempty, 0, sizeof h->nonempty);
        memset(h->large, 0, sizeof h->large);
        memset(h->large_nonempty, 0, sizeof h->large_nonempty);
        HEAP_SET(h->carved, h->carved - bytes);
    }
    h->keep = keep_base(p);
    heap_rebook(h);
}

/* Takes every block of the depot into h.  Returns whether it got any. */
static bool depot_take(heap *h) {
    champ_pool *p = h->pool;
    cpool *cc = p->cc;
    if (!HEAP_GET(cc->depot_bytes))
        return false;
    heap *d = &cc->depot;
    pool_lock(p);
    size_t got = depot_spare(cc);
    for (size_t c = 1; c < POOL_NCLASS; c++) {
        if (!d->free[c])
            continue;
        if (h->free[c])
            fb_set_next(cc->dtail[c], h->free[c]);
        h->free[c] = d->free[c];
        h->nonempty[c >> 6] |= (uint64_t)1 << (c & 63);
        d->free[c] = cc->dtail[c] = NULL;
    }
    for (unsigned k = 0; k < POOL_NLARGE; k++) {
        if (!d->large[k])
            continue;
        if (h->large[k])
            fb_set_next(cc->dtail_large[k], h->large[k]);
        h->large[k] = d->large[k];
        h->large_nonempty[k >> 6] |= (uint64_t)1 << (k & 63);
        d->large[k] = cc->dtail_large[k] = NULL;
    }
    memset(d->nonempty, 0, sizeof d->nonempty);
    memset(d->large_nonempty, 0, sizeof d->large_nonempty);
    HEAP_SET(d->carved, d->live);
    HEAP_SET(cc->depot_bytes, 0);
    pool_unlock(p);
    if (!got)
        return false;
    HEAP_SET(h->carved, h->carved + got);
    /* keep what was taken: no give-back before as much again is freed */
    size_t spare = h->carved - h->live, k = keep_base(p);
    h->keep = 2 * spare > k ? 2 * spare : k;
    heap_rebook(h);
    return true;
}

/* A free by a thread that could not get a heap (no memory): the block
 * goes straight to the depot. */
static void depot_put(champ_pool *p, void *b, size_t size) {
    cpool *cc = p->cc;
    heap *d = &cc->depot;
    pool_lock(p);
    FILL_FREED(b, size);
    if (size <= POOL_CLASS_MAX) {
        size_t c = size >> 3;
        if (!d->free[c])
            cc->dtail[c] = b;
        small_push(d, b, size);
    } else {
        unsigned k = large_index(size);
        if (!d->large[k])
            cc->dtail_large[k] = b;
        large_push(d, b, size);
    }
    HEAP_SET(d->live, d->live - size);
    HEAP_SET(cc->depot_bytes, depot_spare(cc));
    pool_unlock(p);
}

/* After the depot's lists were rebuilt (trim): their last blocks again. */
static void depot_fix(champ_pool *p) {
    cpool *cc = p->cc;
    heap *d = &cc->depot;
    for (size_t c = 1; c < POOL_NCLASS; c++) {
        cc->dtail[c] = NULL;
        for (void *b = d->free[c]; b; b = free_next(b))
            cc->dtail[c] = b;
    }
    for (unsigned k = 0; k < POOL_NLARGE; k++) {
        cc->dtail_large[k] = NULL;
        for (void *b = d->large[k]; b; b = free_next(b))
            cc->dtail_large[k] = b;
    }
    HEAP_SET(cc->depot_bytes, depot_spare(cc));
}

/* A heap's fresh space becomes free blocks, and the heap has none. */
static void heap_drop_fresh(heap *h) {
    pool_retire_tail(h);
    h->bump = h->end = NULL;
    heap_rebook(h);
}

/* The heap's thread exited (the registry lock is held, the pool alive):
 * its free blocks and fresh space go to the depot, the heap to the idle
 * list, where the next thread new to the pool finds it. */
static void heap_release(champ_pool *p, heap *h) {
    heap_drop_fresh(h);
    depot_give(h);
    pool_lock(p);
    h->idle = true;
    h->idle_next = p->cc->idle;
    p->cc->idle = h;
    HEAP_SET(p->cc->active, p->cc->active - 1);
    pool_unlock(p);
}

/* The first thread heap of a concurrent pool (acquire: heaps are
 * published by the thread that made them). */
static heap *heaps_first(const champ_pool *p) {
    return __atomic_load_n(&p->cc->heaps, __ATOMIC_ACQUIRE);
}

/* ------------------------------------------------------------------ */
/* Allocation                                                          */
/* ------------------------------------------------------------------ */

/* Free-listed bytes. */
static size_t pool_spare(const heap *h) {
    return h->carved - h->live;
}

/* More than 1/DEFRAG_DIV of the reserved bytes wait in free lists, and
 * since the last compaction live bytes grew, or free-listed bytes did, by
 * 1/MARK_DIV of it: worth a compaction before growing. */
static bool pool_fragmented(const heap *h) {
    const champ_pool *p = h->pool;
    size_t spare = pool_spare(h), step = p->reserved / MARK_DIV;
    return spare > p->reserved / DEFRAG_DIV &&
           (h->live >= h->defrag_mark || spare >= h->defrag_spare + step);
}

static void defrag_done(heap *h) {
    h->defrag_mark = h->live + h->pool->reserved / MARK_DIV;
    h->defrag_spare = pool_spare(h);
}

/* An arena pool with no free block and too little fresh space for the
 * request: compact if worth it, else take a new chunk. */
static bool refill_arena(heap *h, size_t size, void **b) {
    if (pool_fragmented(h)) {
        /* About to take a new chunk while much memory sits in free lists
         * in pieces of the wrong sizes: join neighbours first. */
        pool_defrag(h, false);
        defrag_done(h);
        if ((*b = take_free_again(h, size)) || fresh(h) >= size)
            return true;
    }
    return pool_grow(h, size);
}

/* No free block serves the request and fresh space is short: (thread
 * heaps) take the depot's blocks, compact, take a new chunk, or (a full
 * fixed buffer) compact and take what is left.  Returns false if nothing
 * can serve it, else true with *b the block, or NULL when fresh space
 * serves it now. */
static NOINLINE bool pool_refill(heap *h, size_t size, void **b) {
    champ_pool *p = h->pool;
    *b = NULL;
    if (h->role == HEAP_THREAD) {
        if (depot_take(h) && ((*b = take_free_again(h, size)) || fresh(h) >= size))
            return true;
        pool_lock(p);
        bool ok = refill_arena(h, size, b);
        pool_unlock(p);
        heap_rebook(h);
        return ok;
    }
    if (!p->fixed)
        return refill_arena(h, size, b);
    /* A full fixed buffer: compact the free lists and try again. */
    if (pool_defrag(h, false) && ((*b = take_free_again(h, size)) || fresh(h) >= size))
        return true;
    if (size <= POOL_CLASS_MAX)
        *b = pool_split_loose(h, size);
    return *b != NULL;
}

/* A concurrent pool's allocation on a thread that cannot have a heap (no
 * memory for one): it fails (counted). */
static NOINLINE void *route_none(champ_pool *p) {
    pool_count(p, &p->failures);
    return NULL;
}

/* route_alloc for a thread whose cached heap is another pool's (or none):
 * find or claim the heap, then serve the request from it. */
static NOINLINE void *route_alloc_claim(champ_pool *p, size_t size) {
    heap *t = champ__heap_claim(p);
    if (UNLIKELY(!t))
        return route_none(p);
    return heap_alloc_in(t, size, true);
}

/* An allocation of a concurrent pool, served by the thread's heap.
 * pool_alloc reaches it from its inline path through
 * champ__heap_alloc_slow's first test (the router's empty list is not
 * consulted).  Frameless on its common path (the thread's cached heap, a
 * block from its free list): every other case is a tail call. */
void *champ__route_alloc(champ_pool *p, size_t size) {
    if (UNLIKELY(champ__tl_heap.pool != p || champ__tl_heap.id != p->id))
        return route_alloc_claim(p, size);
    return heap_alloc_in(champ__tl_heap.h, size, true);
}

/* The slow path of an allocation: split, large blocks, fresh space, a
 * refill.  `atomic`: a thread heap (its books are read by telemetry of
 * other threads). */
static ALWAYS_INLINE void *alloc_slow_in(heap *h, size_t size, bool atomic) {
    void *b;
    if (size <= POOL_CLASS_MAX) {
        b = pool_split(h, size);
        if (b)
            goto reused;
    } else if (UNLIKELY(size > POOL_SIZE_MAX)) {
        goto fail;
    }
    if (large_any(h) && (b = large_fit(h, size)))
        goto reused;
    if (UNLIKELY(fresh(h) < size)) {
        /* (a router never gets here: champ__heap_alloc_slow routes it) */
        CHAMP_ASSERT(h->role != HEAP_ROUTER);
        if (!pool_refill(h, size, &b))
            goto fail;
        if (b)
            goto reused;
    }
    b = h->bump;
    h->bump += size;
    HEAP_PUT(atomic, h->carved, h->carved + size);
    UNPOISON(b, size);
    VG_UNDEFINED(b, size);
    HSTAT_IN(atomic, h->n_alloc_arena);
    goto got;
reused:
    HSTAT_IN(atomic, h->n_alloc_free);
got:
    return heap_took(h, b, size, atomic);
fail:
    pool_count(h->pool, &h->pool->failures);
    return NULL;
}

static NOINLINE void *plain_alloc_slow(heap *h, size_t size) {
    return alloc_slow_in(h, size, false);
}

void *champ__heap_alloc_slow(heap *h, size_t size) {
    /* a router has no lists and no fresh space: straight to the thread's
     * heap (a plain heap pays this compare on its slow path only).  Both
     * ways are tail calls, so this function sets up no frame */
    if (UNLIKELY(h->role == HEAP_ROUTER))
        return champ__route_alloc(h->pool, size);
    return plain_alloc_slow(h, size);
}

void *champ__theap_alloc_slow(heap *h, size_t size) {
    return alloc_slow_in(h, size, true);
}

/* A free block of lo..hi bytes (both multiples of 8, hi <= POOL_CLASS_MAX):
 * the smallest one the free lists hold, or NULL (nothing is split or
 * carved).  *got receives its size. */
static ALWAYS_INLINE void *take_range_in(heap *h, size_t lo, size_t hi, size_t *got,
                                         bool atomic) {
    size_t c = lo >> 3, top = hi >> 3;
    while (c <= top) {
        uint64_t w = h->nonempty[c >> 6] & (~(uint64_t)0 << (c & 63));
        if (!w) {
            c = (c | 63) + 1;
            continue;
        }
        c = (c & ~(size_t)63) + (size_t)__builtin_ctzll(w);
        if (c > top)
            break;
        if (!h->free[c]) {
            h->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
            c++;
            continue;
        }
        void *b = small_pop(h, c);
        size_t size = c << 3;
        *got = size;
        HSTAT_IN(atomic, h->n_alloc_free);
        return heap_took(h, b, size, atomic);
    }
    return NULL;
}

/* pool_alloc_grow of a concurrent pool, served by the thread's heap with
 * pool_alloc_grow's logic. */
void *champ__route_grow(heap *t, champ_pool *p, size_t lo, size_t want, size_t hi,
                        size_t *got) {
    if (UNLIKELY(!t))
        return route_none(p);
    if (t->free[want >> 3])
        return heap_alloc_in(t, want, true);
    void *b = take_range_in(t, lo, hi, got, true);
    if (b)
        return b;
    if ((size_t)(t->end - t->bump) < want) {
        *got = lo;
        return heap_alloc_in(t, lo, true);
    }
    return heap_alloc_in(t, want, true);
}

/* pool_free of a concurrent pool on a thread that cannot have a heap (no
 * memory for one): the block waits in the depot. */
void champ__route_free_none(champ_pool *p, void *b, size_t size) {
    depot_put(p, b, size);
}

/* take_range of a plain heap (a router's finds nothing). */
void *champ__heap_take_range(heap *h, size_t lo, size_t hi, size_t *got) {
    return take_range_in(h, lo, hi, got, false);
}

/* A block (or piece of one) above POOL_CLASS_MAX bytes: filed whole.
 * (Never on a router: pool_free sends a concurrent pool's blocks to the
 * thread's heap.) */
NOINLINE void champ__heap_free_large(heap *h, void *b, size_t size) {
    CHAMP_ASSERT(h->role != HEAP_ROUTER);
    HSTAT(h->n_free);
    HEAP_SET(h->live, h->live - size);
    FILL_FREED(b, size);
    large_push(h, b, size);
}

/* ------------------------------------------------------------------ */
/* Watermark and peak                                                  */
/* ------------------------------------------------------------------ */

static void pool_set_hi(heap *h) {
    champ_pool *p = h->pool;
    h->hi = h->peak;
    if (p->on_mark && !p->mark_fired && p->mark - 1 < h->hi)
        h->hi = p->mark - 1;
}

/* The pool's live bytes: the sum over its heaps (exact when no thread
 * moves them; while threads do, a sample, kept from going below 0). */
static size_t live_sum(const champ_pool *p) {
    if (!p->concurrent)
        return HEAP_GET(p->h.live);
    size_t live = HEAP_GET(p->cc->depot.live);
    for (const heap *h = heaps_first(p); h; h = h->next)
        live += HEAP_GET(h->live) - HEAP_BIAS;
    return (ptrdiff_t)live < 0 ? 0 : live;
}

size_t champ__pool_live(const champ_pool *p) {
    return live_sum(p);
}

/* A thread heap grew by PEAK_STEP: sample the pool's live bytes.
 * Returns b, the block just taken (heap_took). */
void *champ__theap_rise(heap *h, void *b) {
    champ_pool *p = h->pool;
    h->hi = h->live + PEAK_STEP;
    size_t live = live_sum(p), peak = HEAP_GET(p->cc->peak);
    while (live > peak && !__atomic_compare_exchange_n(&p->cc->peak, &peak, live, true,
                                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    return b;
}

/* live went above hi (a plain heap): a new peak, or the watermark was
 * crossed.  Returns b, the block just taken (heap_took). */
void *champ__pool_rise(heap *h, void *b) {
    champ_pool *p = (champ_pool *)(void *)h; /* a plain heap is its pool's first member */
    size_t live = h->live, peak = h->peak;
    if (live > peak)
        h->peak = peak = live;
    if (p->on_mark && !p->mark_fired) {
        if (live >= p->mark) {
            p->mark_fired = true;
            h->lo = p->mark - p->mark / 8; /* re-armed well below the mark */
            h->hi = peak;
            p->on_mark(p, live, p->reserved, p->mark_ctx);
            return b;
        }
        h->hi = p->mark - 1 < peak ? p->mark - 1 : peak;
        return b;
    }
    h->hi = peak;
    return b;
}

/* live fell below lo.  A thread heap holds too many free bytes: they go
 * to the depot (when another thread has a heap to take them from there).  A plain one fell clearly below the watermark (by 1/8 of
 * it): re-arm it.  The margin keeps an update that frees a node right
 * after allocating its replacement from firing the callback again at
 * every step. */
void champ__pool_fall(heap *h) {
    if (h->role == HEAP_THREAD) {
        if (HEAP_GET(h->pool->cc->active) > 1) {
            depot_give(h);
            return;
        }
        /* no other thread to take them (yet): look again after as many
         * bytes more are freed */
        h->lo = h->live - h->keep;
        return;
    }
    h->pool->mark_fired = false;
    h->lo = 0;
    pool_set_hi(h);
}

/* ------------------------------------------------------------------ */
/* Making and releasing pools                                          */
/* ------------------------------------------------------------------ */

/* The bytes of a pool's header: a concurrent pool's cpool follows it. */
static size_t pool_header_bytes(bool concurrent) {
    return concurrent ? ALIGN_UP(sizeof(champ_pool), 16) + sizeof(cpool) : sizeof(champ_pool);
}

champ_status champ__pool_make(const champ_pool_config *cfg_user, champ_pool **out) {
    champ_pool_config def = CHAMP_POOL_CONFIG_INIT, got;
    const champ_pool_config *cfg = &def;
    if (cfg_user) {
        /* sizeof(champ_pool_config) of version 0.2 is the smallest layout */
        if (!champ__struct_read(&got, sizeof got, cfg_user, sizeof(champ_pool_config)))
            return CHAMP_EINVAL;
        cfg = &got;
    }
    if (cfg->buffer && cfg->allocator)
        return CHAMP_EINVAL;
    if (!cfg->buffer && cfg->buffer_size)
        return CHAMP_EINVAL;
    if (!(cfg->watermark >= 0.0 && cfg->watermark <= 1.0))
        return CHAMP_EINVAL;
    if (cfg->on_watermark && !cfg->buffer)
        return CHAMP_EINVAL;
    if (cfg->concurrent && cfg->buffer)
        return CHAMP_EINVAL;
    const champ_allocator *a = cfg->allocator;
    if (a && !a->malloc && !a->realloc && !a->free)
        a = NULL; /* all NULL: libc */
    if (a && (!a->malloc || !a->realloc || !a->free))
        return CHAMP_EINVAL;

    champ_pool *p;
    size_t hdr = ALIGN_UP(sizeof(champ_pool), 16);
    if (cfg->buffer) {
        uintptr_t start = ALIGN_UP((uintptr_t)cfg->buffer, 16);
        uintptr_t stop = (uintptr_t)cfg->buffer + cfg->buffer_size;
        if (stop < start || stop - start < hdr + 64)
            return CHAMP_EINVAL;
        p = (champ_pool *)start;
        memset(p, 0, sizeof *p);
        p->fixed = true;
        p->h.bump = (char *)start + hdr;
        p->h.end = (char *)(stop & ~(uintptr_t)7);
        p->buf_end = p->h.end;
        p->reserved = fresh(&p->h);
        POISON(p->h.bump, p->reserved);
        VG_NOACCESS(p->h.bump, p->reserved);
    } else {
        champ_allocator al = {libc_malloc, libc_realloc, libc_free, NULL};
        if (a)
            al = *a;
        size_t bytes = pool_header_bytes(cfg->concurrent);
        p = al.malloc(bytes, al.ctx);
        if (!p)
            return CHAMP_ENOMEM;
        memset(p, 0, bytes);
        p->alloc = al;
        p->use_huge = !a && !cfg->no_huge_pages;
        p->backing_calls = 1;
        p->chunk_min = cfg->chunk_size ? ALIGN_UP(cfg->chunk_size, 16) : DEFAULT_CHUNK;
        if (p->chunk_min < 1024)
            p->chunk_min = 1024;
        if (cfg->concurrent) {
            cpool *cc = (cpool *)(void *)((char *)p + ALIGN_UP(sizeof(champ_pool), 16));
            if (pthread_mutex_init(&cc->lock, NULL) != 0) {
                al.free(p, bytes, al.ctx);
                return CHAMP_ENOMEM;
            }
            p->cc = cc;
            p->concurrent = true;
        }
    }
    p->h.pool = p;
    p->h.role = HEAP_PLAIN;
    p->h.nclass = POOL_NCLASS;
    p->refs = 1;
    p->on_mark = cfg->on_watermark;
    p->mark_ctx = cfg->watermark_ctx;
    double frac = cfg->watermark > 0.0 ? cfg->watermark : 0.8;
    p->mark = (size_t)(frac * (double)p->reserved);
    if (p->mark == 0)
        p->mark = 1;
#ifdef CHAMP_FAULTS
    p->fail_after = -1;
#endif
    pool_set_hi(&p->h);
    p->cells.next = p->cells.prev = &p->cells;
    p->rtail = &p->retired;
    if (p->concurrent) {
        heap_init(&p->h, p, HEAP_ROUTER);
        heap_init(&p->cc->depot, p, HEAP_DEPOT);
        pthread_mutex_lock(&reg_lock);
        p->id = ++reg_ids;
        p->cc->reg_next = reg_head;
        reg_head = p;
        pthread_mutex_unlock(&reg_lock);
    }
    *out = p;
    return CHAMP_OK;
}

/* A build that uses POPCNT refuses to run on a CPU without it. */
bool champ__cpu_ok(void) {
#if defined(__x86_64__) && defined(__POPCNT__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("popcnt");
#else
    return true;
#endif
}

champ_status champ_pool_new(const champ_pool_config *cfg, champ_pool **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!champ__cpu_ok())
        return CHAMP_EUNSUPPORTED;
    return champ__pool_make(cfg, out);
}

/* Drops one reference; the last one gives every chunk back. */
static void spares_free(champ_pool *p); /* handle pages, below */
static void slabs_trim(champ_pool *p);
static size_t spares_bytes(const champ_pool *p);

void champ__pool_release(champ_pool *p) {
    if (!rc_dec(&p->refs, p->concurrent))
        return;
    if (p->fixed) {
        /* the buffer is the caller's again: no block of it stays poisoned
         * (ASan) or no-access (valgrind) for the caller's next use */
        size_t n = (size_t)(p->buf_end - (char *)p);
        UNPOISON(p, n);
        VG_DEFINED(p, n);
        return;
    }
    spares_free(p);
    slabs_trim(p); /* every slab is empty: the spare is the one left */
    CHAMP_ASSERT(p->side == 0); /* no handle page or type is left */
    CHAMP_ASSERT(!p->slabs && !p->slab_spare && p->slab_bytes == 0);
    champ_allocator al = p->alloc;
    if (p->concurrent) {
        /* no thread may follow its entry for p any more (ids differ) */
        pthread_mutex_lock(&reg_lock);
        champ_pool **link = &reg_head;
        while (*link != p)
            link = &(*link)->cc->reg_next;
        *link = p->cc->reg_next;
        pthread_mutex_unlock(&reg_lock);
        for (heap *h = p->cc->heaps; h;) {
            heap *next = h->next;
            al.free(h, sizeof *h, al.ctx);
            h = next;
        }
        pthread_mutex_destroy(&p->cc->lock);
    }
    chunk *c = p->chunks;
    while (c) {
        chunk *next = c->next;
        UNPOISON(c, c->size);
        chunk_free(p, c, c->size);
        c = next;
    }
    CHAMP_ASSERT(!p->regions);
    al.free(p, pool_header_bytes(p->concurrent), al.ctx);
}

void champ__pool_cell(champ_pool *p, cell_link *l, bool add) {
    if (p->concurrent)
        pool_lock(p);
    if (add) {
        l->next = p->cells.next;
        l->prev = &p->cells;
        l->next->prev = l;
        p->cells.next = l;
    } else {
        l->prev->next = l->next;
        l->next->prev = l->prev;
    }
    if (p->concurrent)
        pool_unlock(p);
}

/* Whether concurrent pool p holds no map and no cell (retired versions
 * are released first), and its teardown whatever its references: the
 * default pool at process exit, whose types champ.c frees in between. */
bool champ__pool_unused(champ_pool *p) {
    champ__pin_settle(p); /* no map: releases every retired version */
    size_t maps = 0;
    for (const heap *h = heaps_first(p); h; h = h->next)
        maps += h->nhandles;
    return maps == 0 && p->cells.next == &p->cells;
}

void champ__pool_destroy(champ_pool *p) {
    p->refs = 1;
    champ__pool_release(p);
}

void champ_pool_free(champ_pool *pool) {
    if (pool)
        champ__pool_release(pool);
}

/* Trim relocates live nodes when they use less than half of what is
 * reserved (and the rest is worth a chunk). */
static bool relocation_pays(const champ_pool *p) {
    size_t live = live_sum(p);
    return !p->fixed && p->reserved > 2 * live + p->chunk_min;
}

champ_status champ_pool_trim(champ_pool *p) {
    if (!p)
        return CHAMP_EINVAL;
    heap *h = &p->h;
    /* alone: no light version is left (relocation counts references from
     * the handles: a light node's count is not one, and what it borrows
     * from a base no handle reaches would move under the base), no
     * snapshot is pinned, no retired version waits (trim moves roots:
     * pins would name old addresses) */
    champ__pin_settle(p);
    if (p->concurrent) {
        /* every heap's free blocks and fresh space into the depot,
         * which is trimmed as a plain heap */
        h = &p->cc->depot;
        for (heap *t = p->cc->heaps; t; t = t->next) {
            heap_drop_fresh(t);
            depot_give(t);
        }
    }
    spares_free(p);
    slabs_trim(p);
    pool_defrag(h, true);
    defrag_done(h);
    if (relocation_pays(p)) {
        champ__pool_relocate(p, h);
        pool_defrag(h, true);
        defrag_done(h);
    }
    if (p->concurrent) {
        heap_drop_fresh(h);
        depot_fix(p);
    }
    return CHAMP_OK;
}

/* Relocation (relocate.c): fresh space of at least `bytes` in a chunk of
 * its own, and blocks cut from it. */
bool champ__heap_fresh_chunk(heap *h, size_t bytes) {
    return chunk_add(h, ALIGN_UP(bytes + CHUNK_HDR, 16), ALIGN_UP(bytes + CHUNK_HDR, 16));
}

void *champ__heap_carve(heap *h, size_t size) {
    char *b = h->bump;
    CHAMP_ASSERT(fresh(h) >= size);
    h->bump += size;
    HEAP_SET(h->carved, h->carved + size);
    HEAP_SET(h->live, h->live + size);
    UNPOISON(b, size);
    VG_UNDEFINED(b, size);
    return b;
}

/* ------------------------------------------------------------------ */
/* Stats and books                                                     */
/* ------------------------------------------------------------------ */

/* What a heap adds to the pool's figures (read while its thread may move
 * them: relaxed loads). */
typedef struct hsum {
    size_t live, carved, handles;
    uint64_t n_alloc, n_alloc_free, n_alloc_arena, n_free;
} hsum;

static void hsum_add(hsum *s, const heap *h, size_t bias) {
    s->live += HEAP_GET(h->live) - bias;
    s->carved += HEAP_GET(h->carved) - bias;
    s->handles += HEAP_GET(h->nhandles);
#ifdef CHAMP_STATS
    s->n_alloc += HEAP_GET(h->n_alloc);
    s->n_alloc_free += HEAP_GET(h->n_alloc_free);
    s->n_alloc_arena += HEAP_GET(h->n_alloc_arena);
    s->n_free += HEAP_GET(h->n_free);
#endif
}

champ_status champ_pool_stats_get(const champ_pool *p, champ_pool_stats *out_user,
                                  size_t out_size) {
    if (!p || !out_user || out_size == 0)
        return CHAMP_EINVAL;
    champ_pool_stats st, *out = &st;
    memset(out, 0, sizeof *out);
    hsum s;
    memset(&s, 0, sizeof s);
    size_t peak;
    hsum_add(&s, &p->h, 0);
    if (p->concurrent) {
        hsum_add(&s, &p->cc->depot, 0);
        for (const heap *h = heaps_first(p); h; h = h->next)
            hsum_add(&s, h, HEAP_BIAS);
        if ((ptrdiff_t)s.live < 0)
            s.live = 0;
        if (s.carved < s.live)
            s.carved = s.live;
        peak = HEAP_GET(p->cc->peak);
    } else {
        peak = HEAP_GET(p->h.peak);
    }
    /* side blocks: in neither chunks nor heaps; spare pages are free */
    size_t side = HEAP_GET(p->side), spare = spares_bytes(p);
    size_t in_slabs = HEAP_GET(p->side_slab), slabs = HEAP_GET(p->slab_bytes);
    if (spare > side)
        spare = side;
    if (in_slabs > side)
        in_slabs = side;
    out->chunks = p->fixed ? 1 : HEAP_GET(p->nchunks);
    /* side blocks from malloc count as they are; slabs as what they hold */
    out->bytes_reserved = HEAP_GET(p->reserved) + side - in_slabs + slabs;
    out->bytes_live = s.live + side - spare;
    out->bytes_peak = (peak > s.live ? peak : s.live) + side - spare;
    out->bytes_free_listed = s.carved - s.live;
    out->utilization = out->bytes_reserved
                           ? (double)out->bytes_live / (double)out->bytes_reserved
                           : 0.0;
    out->maps = s.handles;
    out->fixed = p->fixed;
    out->backing_calls = HEAP_GET(p->backing_calls);
    out->alloc_failures = HEAP_GET(p->failures);
    out->bytes_huge = HEAP_GET(p->huge) + slabs;
#ifdef CHAMP_STATS
    out->counters_enabled = true;
    out->allocs = s.n_alloc;
    out->allocs_free_list = s.n_alloc_free;
    out->allocs_arena = s.n_alloc_arena;
    out->frees = s.n_free;
#endif
    memcpy(out_user, out, out_size < sizeof *out ? out_size : sizeof *out);
    return CHAMP_OK;
}

champ_status champ_pool_fail_after(champ_pool *p, long n) {
    if (!p)
        return CHAMP_EINVAL;
#ifdef CHAMP_FAULTS
    p->fail_after = n < 0 ? -1 : n;
    return CHAMP_OK;
#else
    (void)n;
    return CHAMP_EUNSUPPORTED;
#endif
}

/* ------------------------------------------------------------------ */
/* Side blocks                                                         */
/* ------------------------------------------------------------------ */

/* Handle pages and map types used to be pool blocks, carved where the
 * nodes are: one page with one live handle, or a type made late, kept a
 * whole chunk, and trim could not give it back (200K one-entry maps, 99%
 * freed: 42.8 MB reserved for 2.4 MB live, 18x, after trim). */
void *champ__side_alloc(champ_pool *p, size_t size) {
    if (p->fixed)
        return pool_alloc_block(p, size);
    if (p->concurrent)
        pool_lock(p);
    pool_count(p, &p->backing_calls);
    void *b = p->alloc.malloc(size, p->alloc.ctx);
    if (b)
        HEAP_SET(p->side, p->side + size);
    else
        pool_count(p, &p->failures);
    if (p->concurrent)
        pool_unlock(p);
    return b;
}

void champ__side_free(champ_pool *p, void *b, size_t size) {
    if (p->fixed) {
        heap_free(&p->h, b, size);
        return;
    }
    if (p->concurrent)
        pool_lock(p);
    CHAMP_ASSERT(p->side >= size);
    HEAP_SET(p->side, p->side - size);
    p->alloc.free(b, size, p->alloc.ctx);
    if (p->concurrent)
        pool_unlock(p);
}

/* Intrusive doubly linked lists (handle pages, slabs): x pushed at the
 * head of the list, or unlinked from it, through its fields NX and PV. */
#define DL_PUSH(head, x, NX, PV)                                                \
    do {                                                                        \
        (x)->PV = NULL;                                                         \
        (x)->NX = (head);                                                       \
        if ((x)->NX)                                                            \
            (x)->NX->PV = (x);                                                  \
        (head) = (x);                                                           \
    } while (0)
#define DL_UNLINK(head, x, NX, PV)                                              \
    do {                                                                        \
        if ((x)->PV)                                                            \
            (x)->PV->NX = (x)->NX;                                              \
        else                                                                    \
            (head) = (x)->NX;                                                   \
        if ((x)->NX)                                                            \
            (x)->NX->PV = (x)->PV;                                              \
    } while (0)

/* ------------------------------------------------------------------ */
/* Handle slabs                                                        */
/* ------------------------------------------------------------------ */

/* A program that makes a million small maps touches 34 MB of handle pages
 * (HPAGE_BYTES each, 30 handles), and on a virtual machine the first touch
 * of each fresh 4 KiB page costs 7-15 us in the slow phases: 80-90 ns of
 * the 130 ns a map's create and free took.  So a pool on libc whose side
 * blocks pass champ__region_from bytes (the chunks' threshold, 1 MiB: some
 * 30,000 maps) takes its further handle pages from slabs: mappings of one
 * huge page (SLAB_BYTES, aligned to it), advised for huge pages like the
 * chunk regions.  Block 0 of a slab is this header; blocks 1..2047 are
 * handle pages, handed out from the first of the pool's open slabs (those
 * with a free block), lowest free block first, so that live pages gather
 * and trim finds whole OS pages free.  A slab whose
 * last page is given back is unmapped, or kept as the pool's spare when it
 * has none (a count of maps hovering at a slab's edge would otherwise map
 * and unmap a huge page each time).  Trim unmaps the spare and gives back
 * (MADV_DONTNEED) every OS page of a slab whose blocks are all free; a
 * block taken from such a page again counts the page in the reserved
 * bytes again.  A page is marked on its hpage header as coming from a
 * slab (handle pages only: map types stay side blocks from malloc).
 * Concurrent pools: under the pool's lock, like the side blocks.
 *
 * The price: the slab is returned per OS page, not per handle page, so a
 * page keeping one live handle keeps its 4 KiB (malloc's heap keeps the
 * same pages resident, but the pool's books did not show them). */
#define SLAB_BYTES HUGE_PAGE
#define SLAB_BLOCKS (SLAB_BYTES / HPAGE_BYTES)
#define SLAB_WORDS (SLAB_BLOCKS / 64)

typedef struct slab {
    struct slab *next, *prev;   /* the pool's slabs (not the spare) */
    struct slab *onext, *oprev; /* ... those with a free block */
    size_t live;                /* blocks handed out */
    size_t kept;                /* bytes counted reserved: SLAB_BYTES minus */
                                /* the pages trim gave back */
    uint64_t used[SLAB_WORDS];  /* bit i: block i handed out (0: header) */
    uint64_t gone[SLAB_WORDS];  /* bit i: block i's OS page given back */
} slab;
_Static_assert(sizeof(slab) <= HPAGE_BYTES, "a slab's header fits its block 0");
_Static_assert(SLAB_BLOCKS % 64 == 0, "a slab's bitmaps are whole words");

static bool bit_get(const uint64_t *w, size_t i) {
    return w[i / 64] >> (i % 64) & 1u;
}
static void bit_put(uint64_t *w, size_t i, bool on) {
    if (on)
        w[i / 64] |= (uint64_t)1 << (i % 64);
    else
        w[i / 64] &= ~((uint64_t)1 << (i % 64));
}

static slab *slab_of(const void *b) {
    return (slab *)((uintptr_t)b & ~(uintptr_t)(SLAB_BYTES - 1));
}

static void slab_unmap(champ_pool *p, slab *s) {
    HEAP_SET(p->slab_bytes, p->slab_bytes - s->kept);
    UNPOISON(s, SLAB_BYTES);
    munmap(s, SLAB_BYTES);
}

/* A handle page's block from the pool's slabs, or NULL when no slab can
 * be mapped (the caller falls back to a side block).  Concurrent pools:
 * under the pool's lock. */
static void *slab_take(champ_pool *p) {
    slab *s = p->slabs_open;
    if (!s) {
        s = p->slab_spare;
        if (s) {
            p->slab_spare = NULL;
        } else {
            char *base = huge_map(SLAB_BYTES);
            if (!base)
                return NULL;
            pool_count(p, &p->backing_calls);
            s = (slab *)(void *)base;
            memset(s, 0, sizeof *s);
            s->used[0] = 1; /* block 0: this header */
            s->kept = SLAB_BYTES;
            HEAP_SET(p->slab_bytes, p->slab_bytes + SLAB_BYTES);
            POISON(base + HPAGE_BYTES, SLAB_BYTES - HPAGE_BYTES);
            VG_NOACCESS(base + HPAGE_BYTES, SLAB_BYTES - HPAGE_BYTES);
        }
        DL_PUSH(p->slabs, s, next, prev);
        DL_PUSH(p->slabs_open, s, onext, oprev);
    }
    size_t w = 0;
    while (s->used[w] == UINT64_MAX)
        w++;
    size_t i = w * 64 + (size_t)__builtin_ctzll(~s->used[w]);
    CHAMP_ASSERT(i > 0 && i < SLAB_BLOCKS);
    bit_put(s->used, i, true);
    if (++s->live == SLAB_BLOCKS - 1)
        DL_UNLINK(p->slabs_open, s, onext, oprev);
    if (bit_get(s->gone, i)) { /* its OS page comes back */
        size_t pg = os_page(), per = pg / HPAGE_BYTES, first = i / per * per;
        for (size_t j = first; j < first + per; j++)
            bit_put(s->gone, j, false);
        s->kept += pg;
        HEAP_SET(p->slab_bytes, p->slab_bytes + pg);
    }
    HEAP_SET(p->side, p->side + HPAGE_BYTES);
    HEAP_SET(p->side_slab, p->side_slab + HPAGE_BYTES);
    char *b = (char *)s + i * HPAGE_BYTES;
    UNPOISON(b, HPAGE_BYTES);
    VG_UNDEFINED(b, HPAGE_BYTES);
    return b;
}

/* Gives back block b of a slab (concurrent: under the pool's lock). */
static void slab_put(champ_pool *p, void *b) {
    slab *s = slab_of(b);
    size_t i = (size_t)((char *)b - (char *)s) / HPAGE_BYTES;
    CHAMP_ASSERT(i > 0 && i < SLAB_BLOCKS && bit_get(s->used, i));
    CHAMP_ASSERT(p->side_slab >= HPAGE_BYTES && p->side >= HPAGE_BYTES);
    bool was_full = s->live == SLAB_BLOCKS - 1;
    bit_put(s->used, i, false);
    s->live--;
    HEAP_SET(p->side, p->side - HPAGE_BYTES);
    HEAP_SET(p->side_slab, p->side_slab - HPAGE_BYTES);
    POISON(b, HPAGE_BYTES);
    VG_NOACCESS(b, HPAGE_BYTES);
    if (s->live) {
        if (was_full)
            DL_PUSH(p->slabs_open, s, onext, oprev);
        return;
    }
    if (!was_full)
        DL_UNLINK(p->slabs_open, s, onext, oprev);
    DL_UNLINK(p->slabs, s, next, prev);
    if (p->slab_spare)
        slab_unmap(p, s);
    else
        p->slab_spare = s;
}

/* Whether OS page q of slab s (per blocks a page) is still held and holds
 * no live block. */
static bool slab_page_idle(const slab *s, size_t q, size_t per) {
    if (bit_get(s->gone, q * per))
        return false;
    for (size_t j = q * per; j < (q + 1) * per; j++)
        if (bit_get(s->used, j))
            return false;
    return true;
}

/* Trim and pool teardown: the spare slab is unmapped, and every OS page
 * of a slab whose blocks are all free goes back to the kernel (runs of
 * them in one call). */
static void slabs_trim(champ_pool *p) {
    if (p->concurrent)
        pool_lock(p);
    if (p->slab_spare) {
        slab_unmap(p, p->slab_spare);
        p->slab_spare = NULL;
    }
    size_t pg = os_page(), per = pg / HPAGE_BYTES, pages = SLAB_BYTES / pg;
    for (slab *s = p->slabs; s; s = s->next) /* (none when pg > SLAB_BYTES) */
        for (size_t q = 1; q < pages;) { /* page 0 holds the header */
            size_t first = q;
            while (q < pages && slab_page_idle(s, q, per))
                q++;
            if (q == first) {
                q++;
                continue;
            }
            madvise((char *)s + first * pg, (q - first) * pg, MADV_DONTNEED);
            for (size_t j = first * per; j < q * per; j++)
                bit_put(s->gone, j, true);
            s->kept -= (q - first) * pg;
            HEAP_SET(p->slab_bytes, p->slab_bytes - (q - first) * pg);
        }
    if (p->concurrent)
        pool_unlock(p);
}

/* ------------------------------------------------------------------ */
/* Handle pages                                                        */
/* ------------------------------------------------------------------ */

/* A page: this header, then HPAGE_SLOTS handles.  The last byte of each
 * handle holds its slot, so a handle finds its page, and the page its
 * heap.  Every page is on its heap's list of all pages (what the census
 * walks); pages with a free slot are also on the heap's open list (where
 * handles are taken).  A page that becomes empty goes back to the pool (a
 * pool whose maps are all freed holds no live bytes).  Free slots are
 * poisoned like free blocks.  In a concurrent pool a thread takes handles
 * from its own heap's pages, and any thread may free one: the page's heap
 * lock guards the slots and lists. */
struct hpage {
    hpage *next, *prev;   /* all pages of the heap */
    hpage *onext, *oprev; /* pages with a free slot */
    heap *owner;
    uint32_t used;        /* bit i: slot i holds a live handle */
    bool slab;            /* a slab's block (else a side block) */
};
_Static_assert(sizeof(hpage) <= HPAGE_HDR, "the page header fits its room");
#define HPAGE_FULL ((uint32_t)((1ull << HPAGE_SLOTS) - 1))

static unsigned char *hslot(const hpage *g, unsigned i) {
    return (unsigned char *)(uintptr_t)g + HPAGE_HDR + CHAMP_HANDLE_BYTES * i;
}
static hpage *hpage_of(const unsigned char *h, unsigned *slot) {
    *slot = h[CHAMP_HANDLE_BYTES - 1];
    return (hpage *)(uintptr_t)(h - HPAGE_HDR - CHAMP_HANDLE_BYTES * *slot);
}

/* A heap keeps the last page it emptied as its spare, so that a thread
 * taking and dropping a snapshot or two (a page going 0 -> 2 -> 0 handles)
 * does not ask the backing allocator, under the pool's lock, each time.
 * The spare is reserved, not live; trim gives it back.  Nothing pool-wide
 * counts spares: the stats and the audit look at each heap's `spare`
 * (a shared counter, written as a page empties and refills, was a line
 * both threads of the `threads` bench op wrote each iteration). */

/* An emptied page g of heap h (concurrent: h's lock is held): kept as the
 * spare (NULL returned) or returned, for the caller to free. */
static hpage *spare_keep(heap *h, hpage *g) {
    if (h->pool->fixed || h->spare)
        return g;
    HEAP_SET(h->spare, g);
    return NULL;
}


/* A new handle page: from a slab once the pool's side blocks reach the
 * threshold (*in_slab set), else a side block. */
static hpage *hpage_new(champ_pool *p, bool *in_slab) {
    *in_slab = false;
    if (p->use_huge && HEAP_GET(p->side) >= champ__region_from) {
        if (p->concurrent)
            pool_lock(p);
        void *b = slab_take(p);
        if (p->concurrent)
            pool_unlock(p);
        if (b) {
            *in_slab = true;
            return b;
        }
    }
    return champ__side_alloc(p, HPAGE_BYTES);
}

/* Gives an emptied handle page back to where it came from. */
static void hpage_del(champ_pool *p, hpage *g) {
    bool in_slab = g->slab; /* (read before the page is undefined) */
    UNPOISON(g, HPAGE_BYTES);
    VG_UNDEFINED(g, HPAGE_BYTES);
    if (!in_slab) {
        champ__side_free(p, g, HPAGE_BYTES);
        return;
    }
    if (p->concurrent)
        pool_lock(p);
    slab_put(p, g);
    if (p->concurrent)
        pool_unlock(p);
}

/* A handle from heap h's pages (concurrent: h's lock is held, and let go
 * while a new page is allocated). */
static ALWAYS_INLINE void *hpage_take(heap *h, bool conc) {
    hpage *g = h->hpages_open;
    if (!g) {
        bool in_slab;
        g = h->spare;
        if (g) {
            HEAP_SET(h->spare, NULL);
            in_slab = g->slab;
        } else {
            if (conc)
                hp_unlock(h);
            g = hpage_new(h->pool, &in_slab);
            if (conc)
                hp_lock(h);
            if (!g)
                return NULL;
        }
        memset(g, 0, sizeof *g);
        g->owner = h;
        g->slab = in_slab;
        POISON(hslot(g, 0), HPAGE_SLOTS * CHAMP_HANDLE_BYTES);
        VG_NOACCESS(hslot(g, 0), HPAGE_SLOTS * CHAMP_HANDLE_BYTES);
        DL_PUSH(h->hpages, g, next, prev);
        h->npages++;
        DL_PUSH(h->hpages_open, g, onext, oprev);
    }
    unsigned i = (unsigned)__builtin_ctz(~g->used & HPAGE_FULL);
    g->used |= (uint32_t)1 << i;
    if (g->used == HPAGE_FULL)
        DL_UNLINK(h->hpages_open, g, onext, oprev);
    unsigned char *m = hslot(g, i);
    UNPOISON(m, CHAMP_HANDLE_BYTES);
    VG_UNDEFINED(m, CHAMP_HANDLE_BYTES);
    memset(m, 0, CHAMP_HANDLE_BYTES - 1);
    m[CHAMP_HANDLE_BYTES - 1] = (unsigned char)i;
    HEAP_PUT(conc, h->nhandles, h->nhandles + 1);
    return m;
}

static NOINLINE void *handle_alloc_conc(champ_pool *p) {
    heap *h = heap_mine(p);
    if (UNLIKELY(!h)) {
        pool_count(p, &p->failures);
        return NULL;
    }
    hp_lock(h);
    void *m = hpage_take(h, true);
    hp_unlock(h);
    return m;
}

void *champ__handle_alloc(champ_pool *p) {
    if (pool_fault(p))
        return NULL;
    if (UNLIKELY(p->concurrent))
        return handle_alloc_conc(p);
    return hpage_take(&p->h, false);
}

/* Gives handle hv back to its page, of heap h (concurrent: h's lock is
 * held).  Returns the page when it is now empty (unlinked: the caller
 * frees it), else NULL. */
static ALWAYS_INLINE hpage *hpage_put(heap *h, hpage *g, void *hv, unsigned i, bool conc) {
    CHAMP_ASSERT(i < HPAGE_SLOTS && (g->used >> i & 1u));
    bool was_full = g->used == HPAGE_FULL;
    g->used &= ~((uint32_t)1 << i);
    FILL_FREED(hv, CHAMP_HANDLE_BYTES);
    POISON(hv, CHAMP_HANDLE_BYTES);
    VG_NOACCESS(hv, CHAMP_HANDLE_BYTES);
    HEAP_PUT(conc, h->nhandles, h->nhandles - 1);
    if (g->used == 0) {
        if (!was_full)
            DL_UNLINK(h->hpages_open, g, onext, oprev);
        DL_UNLINK(h->hpages, g, next, prev);
        h->npages--;
        return g;
    }
    if (was_full)
        DL_PUSH(h->hpages_open, g, onext, oprev);
    return NULL;
}

static NOINLINE void handle_free_conc(champ_pool *p, void *hv) {
    unsigned i;
    hpage *g = hpage_of(hv, &i);
    heap *h = g->owner;
    hp_lock(h);
    g = hpage_put(h, g, hv, i, true);
    if (g)
        g = spare_keep(h, g);
    hp_unlock(h);
    if (g)
        hpage_del(p, g);
}

void champ__handle_free(champ_pool *p, void *hv) {
    if (UNLIKELY(p->concurrent)) {
        handle_free_conc(p, hv);
        return;
    }
    unsigned i;
    hpage *g = hpage_of(hv, &i);
    g = hpage_put(&p->h, g, hv, i, false);
    if (g)
        g = spare_keep(&p->h, g);
    if (g)
        hpage_del(p, g);
}

/* The heaps that hold handle pages: a plain pool's own, or a concurrent
 * pool's thread heaps. */
static const heap *pages_first(const champ_pool *p) {
    return p->concurrent ? heaps_first(p) : &p->h;
}
static const heap *pages_next(const champ_pool *p, const heap *h) {
    return p->concurrent ? h->next : NULL;
}

/* Bytes of the heaps' spare pages (stats: a relaxed read of each heap's
 * spare, approximate while threads work, like the other figures). */
static size_t spares_bytes(const champ_pool *p) {
    size_t n = 0;
    for (const heap *h = pages_first(p); h; h = pages_next(p, h))
        n += HEAP_GET(h->spare) != NULL;
    return n * HPAGE_BYTES;
}

/* Trim, pool teardown (alone): every heap's spare page goes back. */
static void spares_free(champ_pool *p) {
    for (const heap *c = pages_first(p); c; c = pages_next(p, c)) {
        heap *h = (heap *)(uintptr_t)c; /* p is the caller's to change */
        hpage *g = h->spare;
        if (!g)
            continue;
        HEAP_SET(h->spare, NULL);
        hpage_del(p, g);
    }
}

heap *champ__handle_heap(const void *hv) {
    unsigned i;
    return hpage_of(hv, &i)->owner;
}

heap *champ__pool_heaps(const champ_pool *p) {
    return heaps_first(p);
}

void *champ__handle_next(const champ_pool *p, const void *hv) {
    const heap *h = pages_first(p);
    const hpage *g = h ? h->hpages : NULL;
    unsigned from = 0;
    if (hv) {
        g = hpage_of(hv, &from);
        h = g->owner;
        from++;
    }
    while (h) {
        for (; g; g = g->next, from = 0) {
            uint32_t m = g->used & (HPAGE_FULL << from);
            if (m)
                return hslot(g, (unsigned)__builtin_ctz(m));
        }
        h = pages_next(p, h);
        g = h ? h->hpages : NULL;
        from = 0;
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Audit (champ_validate)                                              */
/* ------------------------------------------------------------------ */

/* One heap's free lists and pages; *carved and *fresh_b collect its
 * books (bias removed). */
static void audit_heap(const heap *h, size_t bias, champ_pool_audit *a, size_t *carved,
                       size_t *fresh_b) {
    for (size_t c = 1; c < POOL_NCLASS; c++)
        for (void *b = h->free[c]; b; b = free_next(b))
            a->free_walked += c << 3;
    for (unsigned k = 0; k < POOL_NLARGE; k++)
        for (void *b = h->large[k]; b;) {
            fblock f = fb_read(b, sizeof f);
            a->free_walked += f.size;
            if (f.size <= POOL_CLASS_MAX || f.size % 8 || large_index(f.size) != k)
                a->misfiled++;
            b = f.next;
        }
    a->free_counted += pool_spare(h);
    a->live += h->live - bias;
    *carved += h->carved - bias;
    *fresh_b += fresh(h);
    a->pages_counted += h->npages;
    a->handles_counted += h->nhandles;
    for (const hpage *g = h->hpages; g; g = g->next) {
        a->pages_walked++;
        a->handles_walked += (size_t)__builtin_popcount(g->used);
        if (g->used & ~HPAGE_FULL || g->used == 0 || g->owner != h ||
            (g->next && g->next->prev != g))
            a->pages_bad++;
        if (g->used != HPAGE_FULL)
            a->open_expected++;
        for (unsigned i = 0; i < HPAGE_SLOTS; i++)
            if (g->used >> i & 1u && hslot(g, i)[CHAMP_HANDLE_BYTES - 1] != i)
                a->pages_bad++;
    }
    for (const hpage *g = h->hpages_open; g; g = g->onext) {
        a->open_walked++;
        if (g->used == HPAGE_FULL || (g->onext && g->onext->oprev != g))
            a->pages_bad++;
    }
}

void champ__pool_audit(const champ_pool *p, champ_pool_audit *a) {
    memset(a, 0, sizeof *a);
    size_t carved = 0, fresh_b = 0;
    audit_heap(&p->h, 0, a, &carved, &fresh_b);
    if (p->concurrent) {
        const cpool *cc = p->cc;
        const heap *d = &cc->depot;
        audit_heap(d, 0, a, &carved, &fresh_b);
        a->depot = depot_spare(cc);
        /* the depot's lists end where it says (transfers splice there) */
        for (size_t c = 1; c < POOL_NCLASS; c++) {
            void *last = NULL;
            for (void *b = d->free[c]; b; b = free_next(b))
                last = b;
            if (last != cc->dtail[c])
                a->misfiled++;
        }
        for (unsigned k = 0; k < POOL_NLARGE; k++) {
            void *last = NULL;
            for (void *b = d->large[k]; b; b = free_next(b)) {
                last = b;
                a->depot_large += fb_read(b, sizeof(fblock)).size;
            }
            if (last != cc->dtail_large[k])
                a->misfiled++;
        }
        if (p->h.free[1] || large_any(&p->h) || p->h.live || p->h.carved)
            a->misfiled++; /* the router holds nothing */
        for (const heap *h = cc->heaps; h; h = h->next) {
            a->heaps++;
            audit_heap(h, HEAP_BIAS, a, &carved, &fresh_b);
        }
    }
    /* regions: each counts the chunks cut from it and not given back,
     * within what it cut; the pool counts their bytes */
    size_t huge = 0;
    for (const region *r = p->regions; r; r = r->next) {
        size_t n = 0;
        for (const chunk *c = p->chunks; c; c = c->next)
            if ((const char *)c >= r->base && (const char *)c < r->base + r->size) {
                n++;
                huge += c->size;
                if ((const char *)c + c->size > r->base + r->used)
                    a->regions_bad++;
            }
        if (n != r->chunks || n == 0 || r->used > r->size ||
            (uintptr_t)r->base % HUGE_PAGE != 0)
            a->regions_bad++;
    }
    if (huge != p->huge || (p->regions && !p->use_huge))
        a->regions_bad++;
    /* slabs: aligned, their bitmaps agree with their counts, the open list
     * holds those with room, and the pool counts their bytes and blocks */
    size_t pg = os_page(), kept = 0, blocks = 0, open = 0, room = 0;
    for (const slab *s = p->slabs; s; s = s->next) {
        size_t n = 0, gone = 0;
        for (size_t w = 0; w < SLAB_WORDS; w++) {
            n += (size_t)__builtin_popcountll(s->used[w]);
            gone += (size_t)__builtin_popcountll(s->gone[w]);
        }
        if ((uintptr_t)s % SLAB_BYTES != 0 || !(s->used[0] & 1u) || n != s->live + 1 ||
            s->live == 0 || s->kept != SLAB_BYTES - gone / (pg / HPAGE_BYTES) * pg)
            a->regions_bad++;
        for (size_t i = 1; i < SLAB_BLOCKS; i++)
            if (bit_get(s->used, i) && bit_get(s->gone, i))
                a->regions_bad++; /* a live block on a page given back */
        kept += s->kept;
        blocks += s->live;
        room += s->live < SLAB_BLOCKS - 1;
    }
    for (const slab *s = p->slabs_open; s && open <= room; s = s->onext) {
        open++;
        if (s->live >= SLAB_BLOCKS - 1)
            a->regions_bad++; /* a full slab on the open list */
    }
    if (p->slab_spare) {
        if (p->slab_spare->live != 0)
            a->regions_bad++;
        kept += p->slab_spare->kept;
    }
    if (open != room || kept != p->slab_bytes || blocks * HPAGE_BYTES != p->side_slab ||
        p->side_slab > p->side || ((p->slabs || p->slab_spare) && !p->use_huge))
        a->regions_bad++;
    size_t hdrs = p->fixed ? 0 : p->nchunks * CHUNK_HDR;
    a->imbalance = (long long)p->reserved - (long long)(carved + fresh_b + hdrs);
    a->heap_live = a->live;
    a->side = p->side;
    a->spares = spares_bytes(p) / HPAGE_BYTES;
    a->live += p->side - a->spares * HPAGE_BYTES;
}

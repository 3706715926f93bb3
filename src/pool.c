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
 * fraction of it.  The old chunk's tail becomes free blocks, not lost; and
 * if much memory sits in free lists in pieces of the wrong sizes, they are
 * compacted (neighbours joined, spans of any length filed whole) before a
 * new chunk is taken.  champ_pool_trim compacts on request and gives every
 * wholly free chunk back to the backing allocator.  There is no fixed
 * capacity to run out of and no per-node fallback to malloc.
 *
 * Fixed-buffer mode: the pool header and one chunk live in the caller's
 * buffer; no allocator is ever called; when a request cannot be served even
 * after compacting the free lists, the pool returns NULL and the update
 * fails with CHAMP_ENOMEM (updates plan and allocate everything before they
 * change anything).
 *
 * Books: `carved` counts the bytes cut from fresh space and not given back,
 * that is live plus free-listed bytes.  Fast paths move bytes between live
 * and the free lists and leave it alone; it changes only where fresh space
 * is carved, a chunk's tail retired, or compaction gives a span back to
 * fresh space or a chunk to the allocator.  So the free-listed bytes are
 * carved - live, exact and read in O(1): pool stats never touch a free
 * block (telemetry calls may overlap, and free blocks are poisoned).
 * champ_validate walks the lists and checks the walk against it.
 *
 * Blocks carry no header: callers free with the size they allocated (nodes
 * know their size from their bitmaps).  Free blocks are poisoned for ASan
 * and marked no-access for valgrind (debug builds), so use-after-free inside
 * the pool is caught like use-after-free of malloc.
 *
 * Map handles: handle pages, one pool block each (see the end of the file).
 */
#include "internal.h"

#include <stdlib.h>

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

static size_t fresh(const champ_pool *p) {
    return (size_t)(p->end - p->bump);
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
static void small_push(champ_pool *p, char *b, size_t s) {
    size_t c = s >> 3;
    UNPOISON(b, sizeof(void *));
    VG_UNDEFINED(b, sizeof(void *));
    *(void **)b = p->free[c];
    p->free[c] = b;
    p->nonempty[c >> 6] |= (uint64_t)1 << (c & 63);
    POISON(b, s);
    VG_NOACCESS(b, s);
}

/* Pops the head of class c's list (known to be non-empty). */
static void *small_pop(champ_pool *p, size_t c) {
    void *b = p->free[c];
    UNPOISON(b, c << 3);
    VG_DEFINED(b, sizeof(void *));
    p->free[c] = *(void **)b;
    if (!p->free[c])
        p->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
    VG_UNDEFINED(b, c << 3);
    return b;
}

static void large_push(champ_pool *p, char *b, size_t s) {
    unsigned i = large_index(s);
    UNPOISON(b, sizeof(fblock));
    VG_UNDEFINED(b, sizeof(fblock));
    fblock *f = (fblock *)(void *)b;
    f->next = p->large[i];
    f->size = s;
    p->large[i] = f;
    p->large_nonempty[i >> 6] |= (uint64_t)1 << (i & 63);
    POISON(b, s);
    VG_NOACCESS(b, s);
}

/* Files a free span of any size: a crumb, a small block, or a large one. */
static void file_span(champ_pool *p, char *b, size_t s) {
    if (s == 0)
        return;
    if (s <= POOL_CLASS_MAX)
        small_push(p, b, s);
    else
        large_push(p, b, s);
}

/* The first non-empty large list at or after i, or POOL_NLARGE. */
static unsigned large_next_list(const champ_pool *p, unsigned i) {
    while (i < POOL_NLARGE) {
        uint64_t w = p->large_nonempty[i >> 6] & (~(uint64_t)0 << (i & 63));
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
static void *large_take(champ_pool *p, unsigned i, size_t size, size_t limit) {
    char *prev = NULL, *b = p->large[i];
    while (b && limit--) {
        fblock f = fb_read(b, sizeof f);
        if (fits(f.size, size)) {
            if (prev)
                fb_set_next(prev, f.next);
            else if (!(p->large[i] = f.next))
                p->large_nonempty[i >> 6] &= ~((uint64_t)1 << (i & 63));
            file_span(p, b + size, f.size - size);
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
static void *large_fit(champ_pool *p, size_t size) {
    unsigned i = size > POOL_CLASS_MAX ? large_index(size) : 0;
    void *b = NULL;
    if (p->large[i] && (b = large_take(p, i, size, LARGE_PEEK)))
        return b;
    for (unsigned j = large_next_list(p, i + 1); j < POOL_NLARGE;
         j = large_next_list(p, j + 1))
        if ((b = large_take(p, j, size, SIZE_MAX)))
            return b;
    if (p->fixed && p->large[i])
        b = large_take(p, i, size, SIZE_MAX);
    return b;
}

/* The size class's list is empty: before carving fresh arena, split a free
 * block of a larger class (the smallest one that leaves a useful remainder
 * of at least SPLIT_MIN bytes).  Without this, blocks of the sizes an
 * insert-heavy workload has grown past would sit in free lists for good. */
static void *pool_split(champ_pool *p, size_t size) {
    size_t c = (size + SPLIT_MIN) >> 3;
    while (c < POOL_NCLASS) {
        uint64_t w = p->nonempty[c >> 6] & (~(uint64_t)0 << (c & 63));
        if (!w) {
            c = (c | 63) + 1;
            continue;
        }
        c = (c & ~(size_t)63) + (size_t)__builtin_ctzll(w);
        if (c >= POOL_NCLASS)
            break;
        void *b = p->free[c];
        if (!b) {
            p->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
            c++;
            continue;
        }
        small_pop(p, c);
        small_push(p, (char *)b + size, (c << 3) - size);
        return b;
    }
    return NULL;
}

/* Last resort of a full fixed pool: any small free block big enough, as
 * long as what is left over is a block (or nothing). */
static void *pool_split_loose(champ_pool *p, size_t size) {
    for (size_t c = size >> 3; c < POOL_NCLASS; c++) {
        void *b = p->free[c];
        size_t bs = c << 3;
        if (!b || !fits(bs, size))
            continue;
        small_pop(p, c);
        if (bs > size)
            small_push(p, (char *)b + size, bs - size);
        return b;
    }
    return NULL;
}

/* Whether any large list holds a block. */
static bool large_any(const champ_pool *p) {
    uint64_t w = 0;
    for (unsigned i = 0; i < (POOL_NLARGE + 63) / 64; i++)
        w |= p->large_nonempty[i];
    return w != 0;
}

/* A free block for a request whose own list is empty (small) or any
 * request (large): split a small block, then a large one. */
static void *take_free(champ_pool *p, size_t size) {
    if (size <= POOL_CLASS_MAX) {
        void *b = pool_split(p, size);
        if (b)
            return b;
    }
    return large_any(p) ? large_fit(p, size) : NULL;
}

/* The same after a compaction, which may have filled the size's own list. */
static void *take_free_again(champ_pool *p, size_t size) {
    if (size <= POOL_CLASS_MAX && p->free[size >> 3])
        return small_pop(p, size >> 3);
    return take_free(p, size);
}

/* ------------------------------------------------------------------ */
/* Chunks                                                              */
/* ------------------------------------------------------------------ */

/* Files [bump, end) as free blocks so a retired chunk's tail is reused. */
static void pool_retire_tail(champ_pool *p) {
    size_t s = fresh(p);
    if (s) {
        file_span(p, p->bump, s);
        p->carved += s;
    }
    p->bump = p->end;
}

/* Makes room for a block of `size` bytes in fresh arena space. */
static bool pool_grow(champ_pool *p, size_t size) {
    if (p->fixed)
        return false;
    size_t want = p->reserved / CHUNK_DIV;
    if (want < p->chunk_min)
        want = p->chunk_min;
    if (want < size + CHUNK_HDR)
        want = size + CHUNK_HDR;
    want = ALIGN_UP(want, 16);
    p->backing_calls++;
    chunk *c = p->alloc.malloc(want, p->alloc.ctx);
    if (!c)
        return false;
    pool_retire_tail(p);
    c->next = p->chunks;
    c->size = want;
    p->chunks = c;
    p->nchunks++;
    p->reserved += want;
    p->bump = (char *)c + CHUNK_HDR;
    p->end = (char *)c + want;
    POISON(p->bump, fresh(p));
    VG_NOACCESS(p->bump, fresh(p));
    return true;
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
static bool settle_span(champ_pool *p, char *b, size_t len, chunk *c, bool trim) {
    if (b + len == p->bump) {
        p->bump = b;
        p->carved -= len;
        POISON(p->bump, fresh(p));
        VG_NOACCESS(p->bump, fresh(p));
        return true;
    }
    if (trim && c) {
        c->size |= CHUNK_DOOMED;
        p->carved -= len;
        return true;
    }
    file_span(p, b, len);
    return false;
}

/* Trim, after the scan: gives back the chunks settle_span doomed, and the
 * current chunk if it is all fresh space. */
static void free_doomed(champ_pool *p, bool trim) {
    if (!trim)
        return;
    chunk **link = &p->chunks;
    while (*link) {
        chunk *c = *link;
        bool current = p->end == (char *)c + (c->size & ~CHUNK_DOOMED);
        if (current && p->bump == (char *)c + CHUNK_HDR) {
            c->size |= CHUNK_DOOMED;
            p->bump = p->end = NULL;
        }
        if (!(c->size & CHUNK_DOOMED)) {
            link = &c->next;
            continue;
        }
        size_t size = c->size & ~CHUNK_DOOMED;
        *link = c->next;
        p->nchunks--;
        p->reserved -= size;
        UNPOISON(c, size);
        VG_UNDEFINED(c, size);
        p->alloc.free(c, size, p->alloc.ctx);
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

static int pool_defrag_bitmap(champ_pool *p, bool trim) {
    size_t n = p->nchunks, words = 0;
    if (n == 0 || p->fixed)
        return -1;
    for (chunk *c = p->chunks; c; c = c->next)
        words += (c->size / 8 + 63) / 64;
    size_t bytes = n * sizeof(cspan) + words * 8;
    p->backing_calls++;
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
        for (void *b = p->free[c]; b; b = free_next(b), blocks++)
            mark_block(cs, n, bm, b, c << 3);
        p->free[c] = NULL;
    }
    memset(p->nonempty, 0, sizeof p->nonempty);
    for (unsigned k = 0; k < POOL_NLARGE; k++) {
        for (void *b = p->large[k]; b; blocks++) {
            fblock f = fb_read(b, sizeof f);
            mark_block(cs, n, bm, b, f.size);
            b = f.next;
        }
        p->large[k] = NULL;
    }
    memset(p->large_nonempty, 0, sizeof p->large_nonempty);
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
            if (settle_span(p, cs[a].start + s0 * 8, (s1 - s0) * 8,
                            whole ? (chunk *)(void *)cs[a].start : NULL, trim))
                gave_back = true;
            else
                spans++;
            u = s1;
        }
    }
    p->alloc.free(cs, bytes, p->alloc.ctx);
    free_doomed(p, trim);
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
static bool pool_defrag(champ_pool *p, bool trim) {
    int r = pool_defrag_bitmap(p, trim);
    if (r >= 0)
        return r;
    fref all = 0;
    for (size_t c = 1; c < POOL_NCLASS; c++)
        all = gather_list(&p->free[c], c << 3, all);
    for (unsigned k = 0; k < POOL_NLARGE; k++)
        all = gather_list(&p->large[k], 0, all);
    memset(p->nonempty, 0, sizeof p->nonempty);
    memset(p->large_nonempty, 0, sizeof p->large_nonempty);
    if (!all) {
        free_doomed(p, trim);
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
            if (sb && settle_span(p, sb, sl, trim ? whole_chunk(p, sb, sl) : NULL, trim))
                changed = true;
            sb = b;
            sl = len;
        }
        f = next;
    }
    if (settle_span(p, sb, sl, trim ? whole_chunk(p, sb, sl) : NULL, trim))
        changed = true;
    free_doomed(p, trim);
    return changed;
}

/* ------------------------------------------------------------------ */
/* Allocation                                                          */
/* ------------------------------------------------------------------ */

/* Free-listed bytes. */
static size_t pool_spare(const champ_pool *p) {
    return p->carved - p->live;
}

/* More than 1/DEFRAG_DIV of the reserved bytes wait in free lists, and
 * since the last compaction live bytes grew, or free-listed bytes did, by
 * 1/MARK_DIV of it: worth a compaction before growing. */
static bool pool_fragmented(const champ_pool *p) {
    size_t spare = pool_spare(p), step = p->reserved / MARK_DIV;
    return spare > p->reserved / DEFRAG_DIV &&
           (p->live >= p->defrag_mark || spare >= p->defrag_spare + step);
}

static void defrag_done(champ_pool *p) {
    p->defrag_mark = p->live + p->reserved / MARK_DIV;
    p->defrag_spare = pool_spare(p);
}

/* No free block serves the request and fresh space is short: compact,
 * take a new chunk, or (a full fixed buffer) compact and take what is
 * left.  Returns false if nothing can serve it, else true with *b the
 * block, or NULL when fresh space serves it now. */
static NOINLINE bool pool_refill(champ_pool *p, size_t size, void **b) {
    *b = NULL;
    if (!p->fixed && pool_fragmented(p)) {
        /* About to take a new chunk while much memory sits in free lists
         * in pieces of the wrong sizes: join neighbours first. */
        pool_defrag(p, false);
        defrag_done(p);
        if ((*b = take_free_again(p, size)) || fresh(p) >= size)
            return true;
    }
    if (pool_grow(p, size))
        return true;
    if (!p->fixed)
        return false;
    /* A full fixed buffer: compact the free lists and try again. */
    if (pool_defrag(p, false) && ((*b = take_free_again(p, size)) || fresh(p) >= size))
        return true;
    if (size <= POOL_CLASS_MAX)
        *b = pool_split_loose(p, size);
    return *b != NULL;
}

void *champ__pool_alloc_slow(champ_pool *p, size_t size) {
    void *b;
    if (size <= POOL_CLASS_MAX) {
        b = pool_split(p, size);
        if (b)
            goto reused;
    } else if (UNLIKELY(size > POOL_SIZE_MAX)) {
        goto fail;
    }
    if (large_any(p) && (b = large_fit(p, size)))
        goto reused;
    if (UNLIKELY(fresh(p) < size)) {
        if (!pool_refill(p, size, &b))
            goto fail;
        if (b)
            goto reused;
    }
    b = p->bump;
    p->bump += size;
    p->carved += size;
    UNPOISON(b, size);
    VG_UNDEFINED(b, size);
    STAT(p->n_alloc_arena++);
    goto got;
reused:
    STAT(p->n_alloc_free++);
got:
    STAT(p->n_alloc++);
    FILL_FRESH(b, size);
    p->live += size;
    if (p->live > p->hi)
        champ__pool_rise(p);
    return b;
fail:
    p->failures++;
    return NULL;
}

/* A free block of lo..hi bytes (both multiples of 8, hi <= POOL_CLASS_MAX):
 * the smallest one the free lists hold, or NULL (nothing is split or
 * carved).  *got receives its size. */
void *champ__pool_take_range(champ_pool *p, size_t lo, size_t hi, size_t *got) {
    size_t c = lo >> 3, top = hi >> 3;
    while (c <= top) {
        uint64_t w = p->nonempty[c >> 6] & (~(uint64_t)0 << (c & 63));
        if (!w) {
            c = (c | 63) + 1;
            continue;
        }
        c = (c & ~(size_t)63) + (size_t)__builtin_ctzll(w);
        if (c > top)
            break;
        if (!p->free[c]) {
            p->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
            c++;
            continue;
        }
        void *b = small_pop(p, c);
        size_t size = c << 3;
        *got = size;
        STAT(p->n_alloc_free++);
        STAT(p->n_alloc++);
        FILL_FRESH(b, size);
        p->live += size;
        if (p->live > p->hi)
            champ__pool_rise(p);
        return b;
    }
    return NULL;
}

/* A block (or piece of one) above POOL_CLASS_MAX bytes: filed whole. */
void champ__pool_free_large(champ_pool *p, void *b, size_t size) {
    p->live -= size;
    FILL_FREED(b, size);
    large_push(p, b, size);
}

/* ------------------------------------------------------------------ */
/* Watermark                                                           */
/* ------------------------------------------------------------------ */

static void pool_set_hi(champ_pool *p) {
    p->hi = p->peak;
    if (p->on_mark && !p->mark_fired && p->mark - 1 < p->hi)
        p->hi = p->mark - 1;
}

/* live went above hi: a new peak, or the watermark was crossed. */
void champ__pool_rise(champ_pool *p) {
    if (p->live > p->peak)
        p->peak = p->live;
    if (p->on_mark && !p->mark_fired && p->live >= p->mark) {
        p->mark_fired = true;
        p->lo = p->mark - p->mark / 8; /* re-armed well below the mark */
        pool_set_hi(p);
        p->on_mark(p, p->live, p->reserved, p->mark_ctx);
        return;
    }
    pool_set_hi(p);
}

/* live fell clearly below the watermark (by 1/8 of it): re-arm it.  The
 * margin keeps an update that frees a node right after allocating its
 * replacement from firing the callback again at every step. */
void champ__pool_fall(champ_pool *p) {
    p->mark_fired = false;
    p->lo = 0;
    pool_set_hi(p);
}

/* ------------------------------------------------------------------ */
/* Making and releasing pools                                          */
/* ------------------------------------------------------------------ */

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
        p->bump = (char *)start + hdr;
        p->end = (char *)(stop & ~(uintptr_t)7);
        p->reserved = fresh(p);
        POISON(p->bump, p->reserved);
        VG_NOACCESS(p->bump, p->reserved);
    } else {
        champ_allocator al = {libc_malloc, libc_realloc, libc_free, NULL};
        if (a)
            al = *a;
        p = al.malloc(sizeof *p, al.ctx);
        if (!p)
            return CHAMP_ENOMEM;
        memset(p, 0, sizeof *p);
        p->alloc = al;
        p->backing_calls = 1;
        p->chunk_min = cfg->chunk_size ? ALIGN_UP(cfg->chunk_size, 16) : DEFAULT_CHUNK;
        if (p->chunk_min < 1024)
            p->chunk_min = 1024;
    }
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
    pool_set_hi(p);
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
void champ__pool_release(champ_pool *p) {
    if (!rc_dec(&p->refs, p->concurrent))
        return;
    if (p->fixed)
        return;
    chunk *c = p->chunks;
    while (c) {
        chunk *next = c->next;
        UNPOISON(c, c->size);
        p->alloc.free(c, c->size, p->alloc.ctx);
        c = next;
    }
    champ_allocator al = p->alloc;
    al.free(p, sizeof *p, al.ctx);
}

void champ_pool_free(champ_pool *pool) {
    if (pool)
        champ__pool_release(pool);
}

champ_status champ_pool_trim(champ_pool *p) {
    if (!p)
        return CHAMP_EINVAL;
    pool_defrag(p, true);
    defrag_done(p);
    return CHAMP_OK;
}

/* ------------------------------------------------------------------ */
/* Stats and books                                                     */
/* ------------------------------------------------------------------ */

champ_status champ_pool_stats_get(const champ_pool *p, champ_pool_stats *out_user,
                                  size_t out_size) {
    if (!p || !out_user || out_size == 0)
        return CHAMP_EINVAL;
    champ_pool_stats st, *out = &st;
    memset(out, 0, sizeof *out);
    out->chunks = p->fixed ? 1 : p->nchunks;
    out->bytes_reserved = p->reserved;
    out->bytes_live = p->live;
    out->bytes_peak = p->peak;
    out->bytes_free_listed = pool_spare(p);
    out->utilization = p->reserved ? (double)p->live / (double)p->reserved : 0.0;
    out->maps = p->nhandles;
    out->fixed = p->fixed;
    out->backing_calls = p->backing_calls;
    out->alloc_failures = p->failures;
#ifdef CHAMP_STATS
    out->counters_enabled = true;
    out->allocs = p->n_alloc;
    out->allocs_free_list = p->n_alloc_free;
    out->allocs_arena = p->n_alloc_arena;
    out->frees = p->n_free;
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
/* Handle pages                                                        */
/* ------------------------------------------------------------------ */

/* A page: this header, then HPAGE_SLOTS handles.  The last byte of each
 * handle holds its slot, so a handle finds its page.  Every page is on the
 * list of all pages (what the census walks); pages with a free slot are
 * also on the open list (where handles are taken).  A page that becomes
 * empty goes back to the pool (a pool whose maps are all freed holds no
 * live bytes).  Free slots are poisoned like free blocks. */
struct hpage {
    hpage *next, *prev;   /* all pages */
    hpage *onext, *oprev; /* pages with a free slot */
    uint32_t used;        /* bit i: slot i holds a live handle */
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

static void open_link(champ_pool *p, hpage *g) {
    g->oprev = NULL;
    g->onext = p->hpages_open;
    if (g->onext)
        g->onext->oprev = g;
    p->hpages_open = g;
}
static void open_unlink(champ_pool *p, hpage *g) {
    if (g->oprev)
        g->oprev->onext = g->onext;
    else
        p->hpages_open = g->onext;
    if (g->onext)
        g->onext->oprev = g->oprev;
}

void *champ__handle_alloc(champ_pool *p) {
    if (pool_fault(p))
        return NULL;
    hpage *g = p->hpages_open;
    if (!g) {
        g = pool_alloc_block(p, HPAGE_BYTES);
        if (!g)
            return NULL;
        memset(g, 0, sizeof *g);
        g->next = p->hpages;
        if (g->next)
            g->next->prev = g;
        p->hpages = g;
        p->npages++;
        open_link(p, g);
        POISON(hslot(g, 0), HPAGE_SLOTS * CHAMP_HANDLE_BYTES);
        VG_NOACCESS(hslot(g, 0), HPAGE_SLOTS * CHAMP_HANDLE_BYTES);
    }
    unsigned i = (unsigned)__builtin_ctz(~g->used & HPAGE_FULL);
    g->used |= (uint32_t)1 << i;
    if (g->used == HPAGE_FULL)
        open_unlink(p, g);
    unsigned char *h = hslot(g, i);
    UNPOISON(h, CHAMP_HANDLE_BYTES);
    VG_UNDEFINED(h, CHAMP_HANDLE_BYTES);
    memset(h, 0, CHAMP_HANDLE_BYTES - 1);
    h[CHAMP_HANDLE_BYTES - 1] = (unsigned char)i;
    p->nhandles++;
    return h;
}

void champ__handle_free(champ_pool *p, void *hv) {
    unsigned i;
    hpage *g = hpage_of(hv, &i);
    CHAMP_ASSERT(i < HPAGE_SLOTS && (g->used >> i & 1u));
    bool was_full = g->used == HPAGE_FULL;
    g->used &= ~((uint32_t)1 << i);
    FILL_FREED(hv, CHAMP_HANDLE_BYTES);
    POISON(hv, CHAMP_HANDLE_BYTES);
    VG_NOACCESS(hv, CHAMP_HANDLE_BYTES);
    p->nhandles--;
    if (g->used == 0) {
        if (!was_full)
            open_unlink(p, g);
        if (g->prev)
            g->prev->next = g->next;
        else
            p->hpages = g->next;
        if (g->next)
            g->next->prev = g->prev;
        p->npages--;
        UNPOISON(g, HPAGE_BYTES);
        VG_UNDEFINED(g, HPAGE_BYTES);
        pool_free(p, g, HPAGE_BYTES);
        return;
    }
    if (was_full)
        open_link(p, g);
}

void *champ__handle_next(const champ_pool *p, const void *hv) {
    const hpage *g = p->hpages;
    unsigned from = 0;
    if (hv) {
        g = hpage_of(hv, &from);
        from++;
    }
    for (; g; g = g->next, from = 0) {
        uint32_t m = g->used & (HPAGE_FULL << from);
        if (m)
            return hslot(g, (unsigned)__builtin_ctz(m));
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Audit (champ_validate)                                              */
/* ------------------------------------------------------------------ */

void champ__pool_audit(const champ_pool *p, champ_pool_audit *a) {
    memset(a, 0, sizeof *a);
    for (size_t c = 1; c < POOL_NCLASS; c++)
        for (void *b = p->free[c]; b; b = free_next(b))
            a->free_walked += c << 3;
    for (unsigned k = 0; k < POOL_NLARGE; k++)
        for (void *b = p->large[k]; b;) {
            fblock f = fb_read(b, sizeof f);
            a->free_walked += f.size;
            if (f.size <= POOL_CLASS_MAX || f.size % 8 || large_index(f.size) != k)
                a->misfiled++;
            b = f.next;
        }
    a->free_counted = pool_spare(p);
    size_t hdrs = p->fixed ? 0 : p->nchunks * CHUNK_HDR;
    a->imbalance = (long long)p->reserved - (long long)(p->carved + fresh(p) + hdrs);
    for (const hpage *g = p->hpages; g; g = g->next) {
        a->pages_walked++;
        a->handles_walked += (size_t)__builtin_popcount(g->used);
        if (g->used & ~HPAGE_FULL || g->used == 0 ||
            (g->next && g->next->prev != g))
            a->pages_bad++;
        if (g->used != HPAGE_FULL)
            a->open_expected++;
        for (unsigned i = 0; i < HPAGE_SLOTS; i++)
            if (g->used >> i & 1u && hslot(g, i)[CHAMP_HANDLE_BYTES - 1] != i)
                a->pages_bad++;
    }
    for (const hpage *g = p->hpages_open; g; g = g->onext) {
        a->open_walked++;
        if (g->used == HPAGE_FULL || (g->onext && g->onext->oprev != g))
            a->pages_bad++;
    }
}

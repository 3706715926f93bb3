/*
 * pool.c - the node pool: where every node, key blob and map handle lives.
 *
 * Blocks are sized in 8-byte steps.  Up to POOL_CLASS_MAX bytes (the
 * largest node: 32 slots of pairs) each size has its own free list, so a freed node is
 * recycled by the next node of the same size; above that, blocks are rounded
 * to a power of two with a free list per power (only huge collision nodes
 * and long keys get there).  When a size's list is empty, a free block of a
 * larger size is split (so sizes a growing trie has moved past are reused),
 * else a fresh block is carved from the current arena chunk; when that
 * cannot serve a request either, the pool takes a new chunk from the
 * backing allocator, each one 1/32 of what is already reserved (at least the
 * configured chunk size), so growth is geometric, the number of backing
 * calls logarithmic, and unused arena space at most ~3% of it.  The
 * old chunk's tail is cut into free-list blocks, not lost; and if much
 * memory sits in free lists in pieces of the wrong sizes, they are compacted
 * (neighbours joined) before a new chunk is taken.  There is no
 * fixed capacity to run out of and no per-node fallback to malloc: the
 * seed investigation's cliff cannot happen.
 *
 * Fixed-buffer mode: the pool header and one chunk live in the caller's
 * buffer; no allocator is ever called; when a request cannot be served the
 * pool returns NULL and the update fails with CHAMP_ENOMEM (updates plan and
 * allocate everything before they change anything).
 *
 * Blocks carry no header: callers free with the size they allocated (nodes
 * know their size from their bitmaps).  Free blocks are poisoned for ASan
 * and marked no-access for valgrind (debug builds), so use-after-free inside
 * the pool is caught like use-after-free of malloc.
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
 * 1/MARK_DIV of growth of the live bytes. */
#ifndef CHUNK_DIV
#define CHUNK_DIV 32
#endif

static unsigned large_class(size_t size) {
    /* smallest k with 2^k >= size; size > POOL_CLASS_MAX so k >= 11 */
    unsigned k = 64u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
    return k;
}

/* Cuts [bump, end) into free-list blocks so a retired chunk's tail is reused. */
static void push_span(champ_pool *p, char *b, size_t s);
static void pool_retire_tail(champ_pool *p) {
    push_span(p, p->bump, (size_t)(p->end - p->bump));
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
    POISON(p->bump, (size_t)(p->end - p->bump));
    VG_NOACCESS(p->bump, (size_t)(p->end - p->bump));
    return true;
}

/* The size class's list is empty: before carving fresh arena, split a free
 * block of a larger class (the smallest one that leaves a useful remainder
 * of at least SPLIT_MIN bytes).  Without this, blocks of the sizes an
 * insert-heavy workload has grown past would sit in free lists for good. */
#define SPLIT_MIN 48u
#ifndef MARK_DIV
#define MARK_DIV 12
#endif
#ifndef DEFRAG_DIV
#define DEFRAG_DIV 8
#endif
static void push_block(champ_pool *p, char *b, size_t s);

/* Pops the head of class c's list (known to be non-empty). */
static void *pool_pop(champ_pool *p, size_t c) {
    void *b = p->free[c];
    UNPOISON(b, c << 3);
    VG_DEFINED(b, sizeof(void *));
    p->free[c] = *(void **)b;
    if (!p->free[c])
        p->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
    VG_UNDEFINED(b, c << 3);
    return b;
}

static void *pool_split(champ_pool *p, size_t size) {
    size_t c = (size + SPLIT_MIN) >> 3;
    while (c < POOL_NCLASS) {
        uint64_t w = p->nonempty[c >> 6] & (~(uint64_t)0 << (c & 63));
        if (!w) {
            c = (c | 63) + 1;
            continue;
        }
        c = (c & ~(size_t)63) + (size_t)__builtin_ctzll(w);
        void *b = p->free[c];
        if (!b) {
            p->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
            c++;
            continue;
        }
        pool_pop(p, c);
        push_block(p, (char *)b + size, (c << 3) - size);
        return b;
    }
    return NULL;
}

/* ---- compaction of free lists (fixed-buffer pools, before refusing) ---- */

typedef struct fblock {
    struct fblock *next;
    size_t size;
} fblock;

static void push_block(champ_pool *p, char *b, size_t s) {
    size_t c = s >> 3;
    UNPOISON(b, s);
    VG_UNDEFINED(b, s);
    *(void **)b = p->free[c];
    p->free[c] = b;
    p->nonempty[c >> 6] |= (uint64_t)1 << (c & 63);
    POISON(b, s);
    VG_NOACCESS(b, s);
}

/* Cuts [b, b+s) into blocks of at most POOL_CLASS_MAX bytes for the lists. */
static void push_span(champ_pool *p, char *b, size_t s) {
    while (s >= 16) {
        size_t t = s > POOL_CLASS_MAX ? POOL_CLASS_MAX : s;
        if (s - t > 0 && s - t < 16)
            t = s - 16;
        push_block(p, b, t);
        b += t;
        s -= t;
    }
    p->lost += s; /* 8 bytes: too small for a free block */
}

static fblock *fb_merge(fblock *a, fblock *b) {
    fblock head, *t = &head;
    while (a && b) {
        if ((uintptr_t)a < (uintptr_t)b) {
            t->next = a;
            a = a->next;
        } else {
            t->next = b;
            b = b->next;
        }
        t = t->next;
    }
    t->next = a ? a : b;
    return head.next;
}

/* The link of a free block, read past its poisoning. */
static void *free_next(void *b) {
    UNPOISON(b, sizeof(void *));
    VG_DEFINED(b, sizeof(void *));
    void *next = *(void **)b;
    POISON(b, sizeof(void *));
    VG_NOACCESS(b, sizeof(void *));
    return next;
}

/* Moves every block of one free list (all of `size` bytes) onto `all`. */
static fblock *gather_list(void **head, size_t size, fblock *all) {
    void *b = *head;
    while (b) {
        void *next = free_next(b);
        UNPOISON(b, size);
        VG_UNDEFINED(b, size);
        fblock *f = b;
        f->next = all;
        f->size = size;
        all = f;
        b = next;
    }
    *head = NULL;
    return all;
}

/* The same compaction for an arena pool, with a scratch bitmap (one bit
 * per 8 bytes of chunk space, 1/64 of what is reserved, from the backing
 * allocator and given back at once): every free block sets its bits, then
 * one scan of the bitmap yields the free spans in address order.  One pass
 * over the free blocks instead of a merge sort's log2(blocks) passes, which
 * at 10M keys made compaction a third of the insert time.  Returns -1 if
 * the scratch memory is not there (the caller sorts instead), else whether
 * anything was joined or given back. */
typedef struct cspan {
    char *start;
    size_t units; /* 8-byte units of the chunk */
    size_t word;  /* its first word in the bitmap */
} cspan;

static void mark_list(void **head, size_t size, cspan *cs, size_t n, uint64_t *bm,
                      size_t *blocks) {
    void *b = *head;
    while (b) {
        void *next = free_next(b);
        size_t lo = 0, hi = n; /* the chunk holding b: last start <= b */
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if ((char *)b >= cs[mid].start)
                lo = mid;
            else
                hi = mid;
        }
        size_t u = (size_t)((char *)b - cs[lo].start) / 8, e = u + size / 8 - 1;
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
        (*blocks)++;
        b = next;
    }
    *head = NULL;
}

static int pool_defrag_bitmap(champ_pool *p) {
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
    for (size_t c = 2; c < POOL_NCLASS; c++)
        mark_list(&p->free[c], c << 3, cs, n, bm, &blocks);
    for (unsigned k = 0; k < POOL_NLARGE; k++)
        mark_list(&p->large[k], (size_t)1 << k, cs, n, bm, &blocks);
    memset(p->nonempty, 0, sizeof p->nonempty);
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
            char *b = cs[a].start + s0 * 8;
            size_t len = (s1 - s0) * 8;
            if (b + len == p->bump) {
                p->bump = b;
                POISON(p->bump, (size_t)(p->end - p->bump));
                VG_NOACCESS(p->bump, (size_t)(p->end - p->bump));
                gave_back = true;
            } else {
                push_span(p, b, len);
                spans++;
            }
            u = s1;
        }
    }
    p->alloc.free(cs, bytes, p->alloc.ctx);
    return gave_back || spans < blocks;
}

/* Gathers every free block, sorts them by address (a merge sort on the
 * list itself: no memory needed), joins neighbours, gives a span that ends
 * at the fresh-space pointer back to fresh space, and re-files the rest.
 * After a clear() this turns a pool of scattered free blocks back into one
 * empty arena.  Returns true if anything was joined or given back.  Arena
 * pools use the bitmap above when they can. */
static bool pool_defrag(champ_pool *p) {
    int r = pool_defrag_bitmap(p);
    if (r >= 0)
        return r;
    fblock *all = NULL;
    for (size_t c = 2; c < POOL_NCLASS; c++)
        all = gather_list(&p->free[c], c << 3, all);
    for (unsigned k = 0; k < POOL_NLARGE; k++)
        all = gather_list(&p->large[k], (size_t)1 << k, all);
    memset(p->nonempty, 0, sizeof p->nonempty);
    if (!all)
        return false;
    /* bottom-up merge sort of the list by address */
    fblock *bins[64] = {0};
    while (all) {
        fblock *x = all;
        all = all->next;
        x->next = NULL;
        unsigned i = 0;
        for (; i < 63 && bins[i]; i++) {
            x = fb_merge(bins[i], x);
            bins[i] = NULL;
        }
        bins[i] = x;
    }
    for (unsigned i = 0; i < 64; i++)
        all = fb_merge(bins[i], all);
    /* join neighbours */
    bool changed = false;
    for (fblock *f = all; f && f->next;) {
        if ((char *)f + f->size == (char *)f->next) {
            f->size += f->next->size;
            f->next = f->next->next;
            changed = true;
        } else {
            f = f->next;
        }
    }
    fblock *last = NULL, *prev = NULL;
    for (fblock *f = all; f; prev = last, last = f, f = f->next)
        ;
    if (last && (char *)last + last->size == p->bump) {
        p->bump = (char *)last;
        if (prev)
            prev->next = NULL;
        else
            all = NULL;
        POISON(p->bump, (size_t)(p->end - p->bump));
        VG_NOACCESS(p->bump, (size_t)(p->end - p->bump));
        changed = true;
    }
    while (all) {
        fblock *next = all->next;
        push_span(p, (char *)all, all->size);
        all = next;
    }
    return changed;
}

/* Last resort of a full fixed pool: any free block big enough, as long as
 * what is left over is a usable block (or nothing). */
static void *pool_split_loose(champ_pool *p, size_t size) {
    for (size_t c = size >> 3; c < POOL_NCLASS; c++) {
        void *b = p->free[c];
        size_t bs = c << 3;
        if (!b || (bs > size && bs - size < 16))
            continue;
        pool_pop(p, c);
        if (bs > size)
            push_block(p, (char *)b + size, bs - size);
        return b;
    }
    return NULL;
}

/* More than 1/DEFRAG_DIV of the reserved bytes wait in free lists
 * (reserved minus live, fresh space, chunk headers and lost ends), and
 * since the last compaction live bytes grew, or free-listed bytes did, by
 * 1/MARK_DIV of it: worth a compaction before growing. */
static size_t pool_spare(const champ_pool *p) {
    return p->reserved - p->live - (size_t)(p->end - p->bump) - p->nchunks * CHUNK_HDR -
           p->lost;
}
static bool pool_fragmented(const champ_pool *p) {
    size_t spare = pool_spare(p), step = p->reserved / MARK_DIV;
    return spare > p->reserved / DEFRAG_DIV &&
           (p->live >= p->defrag_mark || spare >= p->defrag_spare + step);
}

void *champ__pool_alloc_slow(champ_pool *p, size_t size) {
    void *b;
    size_t c = size >> 3;
    if (c < POOL_NCLASS) {
        b = pool_split(p, size);
        if (b) {
            STAT(p->n_alloc_free++);
            goto got;
        }
    } else {
        unsigned k = large_class(size);
        if (k >= POOL_NLARGE)
            goto fail;
        size = (size_t)1 << k;
        b = p->large[k];
        if (b) {
            UNPOISON(b, size);
            VG_DEFINED(b, sizeof(void *));
            p->large[k] = *(void **)b;
            VG_UNDEFINED(b, size);
            STAT(p->n_alloc_free++);
            goto got;
        }
    }
    if ((size_t)(p->end - p->bump) < size && !p->fixed && size <= POOL_CLASS_MAX &&
        pool_fragmented(p)) {
        /* About to take a new chunk while much memory sits in free lists
         * in pieces of the wrong sizes: join neighbours first. */
        pool_defrag(p);
        p->defrag_mark = p->live + p->reserved / MARK_DIV;
        p->defrag_spare = pool_spare(p);
        b = pool_split(p, size);
        if (!b && p->free[size >> 3])
            b = pool_pop(p, size >> 3);
        if (b) {
            STAT(p->n_alloc_free++);
            goto got;
        }
    }
    if ((size_t)(p->end - p->bump) < size && !pool_grow(p, size)) {
        if (!p->fixed)
            goto fail;
        /* A full fixed buffer: compact the free lists and try again. */
        if (size > POOL_CLASS_MAX) {
            if (pool_defrag(p) && (size_t)(p->end - p->bump) >= size)
                goto carve;
            goto fail;
        }
        if (pool_defrag(p)) {
            b = p->free[size >> 3] ? pool_pop(p, size >> 3) : pool_split(p, size);
            if (b) {
                STAT(p->n_alloc_free++);
                goto got;
            }
            if ((size_t)(p->end - p->bump) >= size)
                goto carve;
        }
        b = pool_split_loose(p, size);
        if (!b)
            goto fail;
        STAT(p->n_alloc_free++);
        goto got;
    }
carve:
    b = p->bump;
    p->bump += size;
    UNPOISON(b, size);
    VG_UNDEFINED(b, size);
    STAT(p->n_alloc_arena++);
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
        void *b = pool_pop(p, c);
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

void champ__pool_free_large(champ_pool *p, void *b, size_t size) {
    unsigned k = large_class(size);
    size = (size_t)1 << k;
    p->live -= size;
    FILL_FREED(b, size);
    *(void **)b = p->large[k];
    p->large[k] = b;
    POISON(b, size);
    VG_NOACCESS(b, size);
}

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
        p->reserved = (size_t)(p->end - p->bump);
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
    p->map_bytes = ALIGN_UP(sizeof(champ_map), 8);
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
    if (--p->refs > 0)
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

/* For champ_validate: the pool's books.  Every reserved byte is live, in a
 * free list, fresh arena space, a chunk header, or counted as too small to
 * file; returns reserved minus all of those (0 when they balance). */
long long champ__pool_imbalance(const champ_pool *p) {
    champ_pool_stats ps;
    champ_pool_stats_get(p, &ps, sizeof ps);
    size_t hdrs = p->fixed ? 0 : p->nchunks * CHUNK_HDR;
    return (long long)p->reserved -
           (long long)(p->live + ps.bytes_free_listed + (size_t)(p->end - p->bump) +
                       hdrs + p->lost);
}

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
    size_t fl = 0;
    for (size_t c = 0; c < POOL_NCLASS; c++)
        for (void *b = p->free[c]; b; b = free_next(b))
            fl += c * 8;
    for (unsigned k = 0; k < POOL_NLARGE; k++)
        for (void *b = p->large[k]; b; b = free_next(b))
            fl += (size_t)1 << k;
    out->bytes_free_listed = fl;
    out->utilization = p->reserved ? (double)p->live / (double)p->reserved : 0.0;
    out->maps = p->nmaps;
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

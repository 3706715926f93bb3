/*
 * pool.c - the node pool: where every node, key blob and map handle lives.
 *
 * Blocks are sized in 8-byte steps.  Up to POOL_CLASS_MAX bytes (a full
 * 32-slot node) each size has its own free list, so a freed node is
 * recycled by the next node of the same size; above that, blocks are rounded
 * to a power of two with a free list per power (only huge collision nodes
 * and long keys get there).  When a size's list is empty, a free block of a
 * larger size is split (so sizes a growing trie has moved past are reused),
 * else a fresh block is carved from the current arena chunk; when that
 * cannot serve a request either, the pool takes a new chunk from the
 * backing allocator, each one 1/16 of what is already reserved (at least the
 * configured chunk size), so growth is geometric, the number of backing
 * calls logarithmic, and unused arena space at most ~6% of it.  The
 * old chunk's tail is cut into free-list blocks, not lost.  There is no
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

static unsigned large_class(size_t size) {
    /* smallest k with 2^k >= size; size > POOL_CLASS_MAX so k >= 10 */
    unsigned k = 64u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
    return k;
}

/* Cuts [bump, end) into free-list blocks so a retired chunk's tail is reused. */
static void pool_retire_tail(champ_pool *p) {
    size_t left = (size_t)(p->end - p->bump);
    while (left >= 16) {
        size_t s = left > POOL_CLASS_MAX ? POOL_CLASS_MAX : left;
        if (left - s > 0 && left - s < 16)
            s = left - 16; /* keep the remainder usable */
        char *b = p->bump;
        p->bump += s;
        left -= s;
        UNPOISON(b, s);
        VG_UNDEFINED(b, s);
        *(void **)b = p->free[s >> 3];
        p->free[s >> 3] = b;
        p->nonempty[s >> 9] |= (uint64_t)1 << ((s >> 3) & 63);
        POISON(b, s);
        VG_NOACCESS(b, s);
    }
    p->bump = p->end;
}

/* Makes room for a block of `size` bytes in fresh arena space. */
static bool pool_grow(champ_pool *p, size_t size) {
    if (p->fixed)
        return false;
    size_t want = p->reserved / 16;
    if (want < p->chunk_min)
        want = p->chunk_min;
    if (want < size + CHUNK_HDR)
        want = size + CHUNK_HDR;
    want = ALIGN_UP(want, 4096);
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
        size_t bs = c << 3;
        UNPOISON(b, bs);
        VG_DEFINED(b, sizeof(void *));
        p->free[c] = *(void **)b;
        if (!p->free[c])
            p->nonempty[c >> 6] &= ~((uint64_t)1 << (c & 63));
        char *rest = (char *)b + size;
        size_t rs = bs - size;
        *(void **)rest = p->free[rs >> 3];
        p->free[rs >> 3] = rest;
        p->nonempty[rs >> 9] |= (uint64_t)1 << ((rs >> 3) & 63);
        POISON(rest, rs);
        VG_NOACCESS(rest, rs);
        VG_UNDEFINED(b, size);
        return b;
    }
    return NULL;
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
    if ((size_t)(p->end - p->bump) < size && !pool_grow(p, size))
        goto fail;
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
        p->lo = p->mark;
        pool_set_hi(p);
        p->on_mark(p, p->live, p->reserved, p->mark_ctx);
        return;
    }
    pool_set_hi(p);
}

/* live fell below the watermark: re-arm it. */
void champ__pool_fall(champ_pool *p) {
    p->mark_fired = false;
    p->lo = 0;
    pool_set_hi(p);
}

champ_status champ__pool_make(const champ_pool_config *cfg, champ_pool **out) {
    champ_pool_config def = {0};
    if (!cfg)
        cfg = &def;
    if (cfg->buffer && cfg->allocator)
        return CHAMP_EINVAL;
    if (!cfg->buffer && cfg->buffer_size)
        return CHAMP_EINVAL;
    if (!(cfg->watermark >= 0.0 && cfg->watermark <= 1.0))
        return CHAMP_EINVAL;
    if (cfg->on_watermark && !cfg->buffer)
        return CHAMP_EINVAL;
    const champ_allocator *a = cfg->allocator;
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

champ_status champ_pool_new(const champ_pool_config *cfg, champ_pool **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
#if defined(__x86_64__) && defined(__POPCNT__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("popcnt"))
        return CHAMP_EUNSUPPORTED;
#endif
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

champ_status champ_pool_stats_get(const champ_pool *p, champ_pool_stats *out) {
    if (!p || !out)
        return CHAMP_EINVAL;
    memset(out, 0, sizeof *out);
    out->chunks = p->fixed ? 1 : p->nchunks;
    out->bytes_reserved = p->reserved;
    out->bytes_live = p->live;
    out->bytes_peak = p->peak;
    size_t fl = 0;
    for (size_t c = 0; c < POOL_NCLASS; c++)
        for (void *b = p->free[c]; b;) {
            fl += c * 8;
            UNPOISON(b, sizeof(void *));
            VG_DEFINED(b, sizeof(void *));
            void *next = *(void **)b;
            POISON(b, sizeof(void *));
            VG_NOACCESS(b, sizeof(void *));
            b = next;
        }
    for (unsigned k = 0; k < POOL_NLARGE; k++)
        for (void *b = p->large[k]; b;) {
            fl += (size_t)1 << k;
            UNPOISON(b, sizeof(void *));
            VG_DEFINED(b, sizeof(void *));
            void *next = *(void **)b;
            POISON(b, sizeof(void *));
            VG_NOACCESS(b, sizeof(void *));
            b = next;
        }
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

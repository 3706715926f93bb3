/*
 * build.c - many keys at once: champ_apply, the batch update, and on an
 * empty map the bulk build.
 *
 * A batch of n updates is hashed once, the later update of a key wins (a
 * table of the batch's keys finds earlier ones: O(n)), and the survivors
 * are split into the keys to set and the keys to remove (apply_mixed).  A
 * batch of sets only (apply_sets) needs no table and is sorted straight
 * from the ops: repeats of a key meet at the bottom, where the later wins.
 * Each group is built into a trie bottom-up: at each level the entries
 * are distributed over the 32 slots by a counting sort on the level's 5
 * hash bits (a most-significant-digit radix sort that is the trie walk
 * itself), a slot with one or two entries becomes an entry or a pair, a
 * slot with more becomes the child built one level down, and every node
 * is allocated once at its exact size (bslots; bleaf places the entries
 * of a node with no child straight at their index).  That is O(n) for the
 * whole batch.  An empty map simply
 * takes the built trie.  Otherwise the map is merged with it in trie
 * order by the union and difference of algebra.c: every node a key of the
 * batch falls under is rebuilt once, the rest of the map is shared.
 */
#include "internal.h"

#include <stdlib.h>

/* An update of the batch, hashed: 24 bytes, moved once per level.  It has
 * no position field: every move of the build is stable (counting sorts,
 * order-keeping copies), so of two updates of one key the later is the one
 * further right wherever they meet.  Whether an update removes is kept
 * beside, in a byte array, only for batches that have removals. */
typedef struct bent {
    entry e;       /* key word (byte keys: a blob made for the batch), value */
    uint64_t h;
} bent;

typedef struct bctx {
    const mtype *t;
    champ_key_kind kind;
    unsigned W;
    size_t count; /* distinct keys built */
} bctx;

/* The result of building one slot: empty, 1 or 2 entries (trie order), or
 * a new node (owning its reference). */
typedef struct bres {
    uint32_t n; /* 0..2 or SUB_NODE */
    entry e[2];
    node *kid;
} bres;

static void bres_drop(const bctx *c, bres *r, unsigned level) {
    if (r->n == SUB_NODE)
        champ__node_drop(c->t, r->kid, level);
    r->n = 0;
}

/* A node at `level` from the slots' results (pull-up below the root when
 * it would hold no child and two entries or fewer).  Entries are retained
 * (the batch keeps its own references); the children move in. */
static bool bnode(const bctx *c, bres *rs, const uint32_t *ss, uint32_t n, unsigned level,
                  bres *out) {
    slotv sl[32];
    uint32_t ne = 0;
    bool kids = false;
    for (uint32_t i = 0; i < n; i++) {
        sl[i].s = ss[i];
        sl[i].v.n = rs[i].n;
        sl[i].v.kid = rs[i].kid;
        sl[i].v.e[0] = rs[i].e[0];
        sl[i].v.e[1] = rs[i].e[1];
        if (rs[i].n == SUB_NODE)
            kids = true;
        else
            ne += rs[i].n;
    }
    out->n = 0;
    out->kid = NULL;
    if (level > 0 && !kids && ne <= 2) {
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < rs[i].n; j++)
                out->e[out->n++] = rs[i].e[j];
        return true;
    }
    if (n == 0)
        return true;
    node *nb = pool_alloc(c->t->pool, slots_size(sl, n, c->W));
    if (!nb) {
        for (uint32_t i = 0; i < n; i++)
            bres_drop(c, &rs[i], level + 1);
        return false;
    }
    node_build(nb, sl, n, c->W);
    if (c->t->ent_refs)
        for (uint32_t i = 0; i < n; i++)
            if (rs[i].n != SUB_NODE)
                for (uint32_t j = 0; j < rs[i].n; j++)
                    ent_retain(c->t, rs[i].e[j]);
    out->n = SUB_NODE;
    out->kid = nb;
    return true;
}

/* Entries that all share one full hash (distinct keys): a collision node
 * at the collision level, a chain of one-child nodes above it, or, for two
 * or fewer, the entries themselves. */
static bool bsame(const bctx *c, bent *b, size_t n, unsigned level, bres *out) {
    out->n = 0;
    out->kid = NULL;
    if (n <= 2) {
        /* equal hashes: a pair in key order (ent_first) */
        for (size_t i = 0; i < n; i++)
            out->e[out->n++] = b[i].e;
        if (n == 2 && !ent_first(c->t, b[0].e.k, b[0].h, b[1].e.k, b[1].h, c->kind)) {
            out->e[0] = b[1].e;
            out->e[1] = b[0].e;
        }
        if (level > 0 || n == 0)
            return true;
        /* the root holds them */
        bres r = *out;
        uint32_t s = slice(b[0].h, 0);
        return bnode(c, &r, &s, 1, 0, out);
    }
    if (level == CHAMP_COLL_LEVEL) {
        /* the map's layout (trie.h, "Collision nodes") */
        size_t bytes = champ__coll_build_bytes(c->t, (uint32_t)n);
        node *nb = pool_alloc(c->t->pool, bytes);
        if (!nb)
            return false;
        node_init(nb, (uint32_t)n, 0);
        for (size_t i = 0; i < n; i++) {
            ent_put(nb, (uint32_t)i, b[i].e, c->W);
            if (c->t->ent_refs)
                ent_retain(c->t, b[i].e);
        }
        champ__coll_finish(c->t, nb, bytes, false);
        out->n = SUB_NODE;
        out->kid = nb;
        return true;
    }
    bres r;
    if (!bsame(c, b, n, level + 1, &r))
        return false;
    uint32_t s = slice(b[0].h, level);
    return bnode(c, &r, &s, 1, level, out);
}

/* Above this many keys of one hash, bsame_keys sorts (bsame_sorted). */
#define BSAME_SORT 16u

/* An in-place heap sort of n elements of `size` bytes (at most 32) by
 * less(x, y, ctx): O(n log n) calls and no memory, so no failure path.
 * Used where a batch holds many keys of one full hash (bsame_sorted,
 * dedup_multi). */
typedef bool (*heap_less_fn)(const void *x, const void *y, const void *ctx);

static void heap_swap(unsigned char *x, unsigned char *y, size_t size) {
    unsigned char t[32];
    memcpy(t, x, size);
    memcpy(x, y, size);
    memcpy(y, t, size);
}

static void heap_sift(unsigned char *a, size_t size, size_t i, size_t n, heap_less_fn less,
                      const void *ctx) {
    for (;;) {
        size_t j = 2 * i + 1;
        if (j >= n)
            return;
        if (j + 1 < n && less(a + j * size, a + (j + 1) * size, ctx))
            j++;
        if (!less(a + i * size, a + j * size, ctx))
            return;
        heap_swap(a + i * size, a + j * size, size);
        i = j;
    }
}

static void heap_sort(void *base, size_t n, size_t size, heap_less_fn less, const void *ctx) {
    unsigned char *a = base;
    CHAMP_ASSERT(size <= 32);
    for (size_t i = n / 2; i-- > 0;)
        heap_sift(a, size, i, n, less, ctx);
    for (size_t i = n; i-- > 1;) {
        heap_swap(a, a + i * size, size);
        heap_sift(a, size, 0, i, less, ctx);
    }
}

/* (bsame_sorted) entries by key, then by h (there: the batch position). */
static bool bkey_less(const void *xp, const void *yp, const void *ctx) {
    const bctx *c = ctx;
    const bent *x = xp, *y = yp;
    int r = key_cmp(c->t, x->e.k, y->e.k, c->kind);
    return r < 0 || (r == 0 && x->h < y->h);
}

/* Many keys of one full hash in a batch (a weak bytes_hash, or keys chosen
 * to collide), of a kind with a key order: the later update of each key
 * wins, found by a heapsort by (key, batch position) in place (no memory
 * to fail), O(n log n) comparisons where the pairwise scan below makes
 * O(n^2).  The positions go in h (all equal here) and the hash back after.
 * Returns the survivors, moved to b[0..k); the losers follow. */
static size_t bsame_sorted(bctx *c, bent *b, size_t n) {
    uint64_t h = b[0].h;
    for (size_t i = 0; i < n; i++)
        b[i].h = i;
    heap_sort(b, n, sizeof *b, bkey_less, c);
    /* each run of one key: its last (the latest update) survives */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && key_cmp(c->t, b[i].e.k, b[i + 1].e.k, c->kind) == 0)
            continue;
        bent x = b[k];
        b[k++] = b[i];
        b[i] = x;
    }
    for (size_t i = 0; i < n; i++)
        b[i].h = h;
    return k;
}

/* bsame for a batch's entries of one full hash (in batch order): first
 * the later update of each key wins (a batch without removes was not
 * deduplicated: equal keys meet here, having equal hashes), and the keys
 * are counted. */
static bool bsame_keys(bctx *c, bent *b, size_t n, unsigned level, bres *out) {
    if (n > BSAME_SORT && kind_ordered(c->t, c->kind)) {
        size_t k = bsame_sorted(c, b, n);
        c->count += k;
        return bsame(c, b, k, level, out);
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && !key_equal(c->t, b[j].e.k, b[i].e.k, c->kind))
            j++;
        if (j == k) {
            bent x = b[k]; /* keep every entry in b (byte keys' copies are */
            b[k++] = b[i]; /* released from it afterwards): losers past k */
            b[i] = x;
        } else {
            /* b[i] comes later in the batch than b[j]: it wins */
            bent x = b[j];
            b[j] = b[i];
            b[i] = x;
        }
    }
    c->count += k;
    return bsame(c, b, k, level, out);
}

/* The counting sort's offsets: start[s] for each occupied slot s (a bit
 * of bm, cnt[s] entries), in slot order; *pairs gets the slots of exactly
 * two.  Returns the largest count. */
static ALWAYS_INLINE uint32_t slot_starts(const uint32_t *cnt, uint32_t bm, uint32_t *start,
                                          uint32_t *pairs) {
    uint32_t run = 0, most = 0;
    *pairs = 0;
    for (uint32_t x = bm; x; x &= x - 1) {
        uint32_t s = (uint32_t)__builtin_ctz(x);
        start[s] = run;
        run += cnt[s];
        *pairs |= (uint32_t)(cnt[s] == 2) << s;
        most = cnt[s] > most ? cnt[s] : most;
    }
    return most;
}

static bool bbuild(bctx *c, bent *cur, bent *alt, bool in_b, size_t n, unsigned level,
                   bres *out);

/* The node at `level` of entries sorted by this level's slice: slot s
 * (a bit of bm) holds srt[end[s] - cnt[s], end[s]).  A slot of one entry,
 * or of two that differ below, holds them; a slot of more is built one
 * level down from srt into the other buffer, `oth`, which is either the
 * same size as srt (same offsets: oth_small false) or, at the top of a
 * bulk build, as large as the largest slot (offset 0).  The node is then
 * allocated once at its exact size and filled from the sorted entries and
 * the built children, in slot order: there are no per-slot results to
 * copy.  srt_in_b says whether srt is the batch's array b (byte keys: an
 * entry that ends here is copied back into b otherwise, as bbuild keeps
 * b holding every entry). */
static bool bslots(bctx *c, bent *srt, bent *oth, bool oth_small, bool srt_in_b, uint32_t bm,
                   const uint32_t *cnt, const uint32_t *end, unsigned level, bres *out) {
    bool back = !srt_in_b && c->kind == CHAMP_KEY_BYTES;
    bres rs[32]; /* results of the slots built below (bit of `below`) */
    uint32_t dm = 0, nm = 0, ne = 0, nk = 0, below = 0;
    out->n = 0;
    out->kid = NULL;
    for (uint32_t x = bm; x; x &= x - 1) {
        uint32_t s = (uint32_t)__builtin_ctz(x), bit = 1u << s;
        size_t lo = end[s] - cnt[s];
        bent *e = srt + lo;
        if (cnt[s] == 1 || (cnt[s] == 2 && e[0].h != e[1].h)) {
            if (back)
                memcpy(oth + lo, e, cnt[s] * sizeof *e);
            dm |= bit;
            nm |= cnt[s] == 2 ? bit : 0;
            ne += cnt[s];
            c->count += cnt[s];
            continue;
        }
        bres *r = &rs[s];
        if (!bbuild(c, e, oth_small ? oth : oth + lo, srt_in_b, cnt[s], level + 1, r)) {
            for (uint32_t y = below; y; y &= y - 1)
                bres_drop(c, &rs[__builtin_ctz(y)], level + 1);
            /* the slots not built yet are only in srt: back into b */
            if (back)
                memcpy(oth + end[s], srt + end[s], (end[31 - __builtin_clz(bm)] - end[s]) *
                                                        sizeof *srt);
            return false;
        }
        below |= bit;
        CHAMP_ASSERT(r->n > 0);
        if (r->n == SUB_NODE) {
            nm |= bit;
            nk++;
        } else {
            /* a slot whose keys came down to one or two (a batch's repeats) */
            dm |= bit;
            nm |= r->n == 2 ? bit : 0;
            ne += r->n;
        }
    }
    if (level > 0 && nk == 0 && ne <= 2) {
        /* pull-up: the entries themselves (only after repeats were dropped) */
        for (uint32_t x = bm; x; x &= x - 1) {
            uint32_t s = (uint32_t)__builtin_ctz(x);
            if (below & (1u << s)) {
                for (uint32_t j = 0; j < rs[s].n; j++)
                    out->e[out->n++] = rs[s].e[j];
            } else {
                const bent *e = srt + end[s] - cnt[s];
                bool swap = cnt[s] == 2 && !pair_first(e[0].h, e[1].h);
                out->e[out->n++] = e[swap].e;
                if (cnt[s] == 2)
                    out->e[out->n++] = e[!swap].e;
            }
        }
        return true;
    }
    node *nb = pool_alloc(c->t->pool, node_bitmap_size(ne, nk, c->W));
    if (!nb) {
        for (uint32_t y = below; y; y &= y - 1)
            bres_drop(c, &rs[__builtin_ctz(y)], level + 1);
        return false;
    }
    node_init(nb, dm, nm);
    node **kids = (node **)(void *)(node_ebase(nb) + (size_t)c->W * ne);
    uint32_t ei = 0, ki = 0;
    for (uint32_t x = bm; x; x &= x - 1) {
        uint32_t s = (uint32_t)__builtin_ctz(x);
        if (below & (1u << s)) {
            if (rs[s].n == SUB_NODE)
                kids[ki++] = rs[s].kid;
            else
                for (uint32_t j = 0; j < rs[s].n; j++)
                    ent_put(nb, ei++, rs[s].e[j], c->W);
        } else {
            const bent *e = srt + end[s] - cnt[s];
            bool swap = cnt[s] == 2 && !pair_first(e[0].h, e[1].h);
            ent_put(nb, ei++, e[swap].e, c->W);
            if (cnt[s] == 2)
                ent_put(nb, ei++, e[!swap].e, c->W);
        }
    }
    if (c->t->ent_refs)
        for (uint32_t i = 0; i < ne; i++)
            ent_retain(c->t, ent_get(nb, i, c->W));
    out->n = SUB_NODE;
    out->kid = nb;
    return true;
}

/* The node at `level` of the entries cur[0..n) when no slot holds more
 * than two (the leaves of a build: bm the occupied slots, pairs those of
 * two, at[s] the first entry index of slot s): each entry goes from cur
 * straight to its index in the node, with no sort into a second buffer
 * and no pass over the slots.  A pair's second entry that precedes the
 * first in trie order moves it up one.  Returns 1 built, -1 out of
 * memory, 0 when two entries of a slot have equal hashes (a batch's
 * repeats of a key, or a full collision: the general path takes them),
 * having changed nothing. */
static int bleaf(bctx *c, const bent *cur, size_t n, uint32_t bm, uint32_t pairs,
                 uint32_t *at, unsigned level, bres *out) {
    const unsigned W = c->W;
    size_t bytes = node_bitmap_size((uint32_t)n, 0, W);
    node *nb = pool_alloc(c->t->pool, bytes);
    if (!nb)
        return -1;
    node_init(nb, bm, pairs);
    uint64_t first[32]; /* the hash of the entry placed first in a pair's slot */
    uint32_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = cur[i].h;
        uint32_t s = slice(h, level), bit = 1u << s;
        if (!(pairs & bit)) {
            ent_put(nb, at[s], cur[i].e, W);
        } else if (!(seen & bit)) {
            seen |= bit;
            first[s] = h;
            ent_put(nb, at[s], cur[i].e, W);
        } else if (h == first[s]) {
            pool_free(c->t->pool, nb, bytes);
            return 0;
        } else if (pair_first(h, first[s])) {
            ent_put(nb, at[s] + 1, ent_get(nb, at[s], W), W);
            ent_put(nb, at[s], cur[i].e, W);
        } else {
            ent_put(nb, at[s] + 1, cur[i].e, W);
        }
    }
    if (c->t->ent_refs)
        for (uint32_t i = 0; i < n; i++)
            ent_retain(c->t, ent_get(nb, i, W));
    c->count += n;
    out->n = SUB_NODE;
    out->kid = nb;
    return 1;
}

/* The canonical subtree at `level` of the entries cur[0..n) (distinct
 * keys, or a batch's repeats of a key in batch order, sharing the hash
 * slices above `level`).  The counting sort of each level moves the
 * entries from cur into alt (same offsets), and the level below works
 * from alt: the two buffers take turns, one pass per level.  in_b says
 * whether cur is the batch's own array b, the one whose key blobs are
 * released afterwards: byte keys are moved back into b where a subtree
 * ends (at most a few entries), so that b still holds every entry of the
 * batch exactly once when the build returns. */
static bool bbuild(bctx *c, bent *cur, bent *alt, bool in_b, size_t n, unsigned level,
                   bres *out) {
    out->n = 0;
    out->kid = NULL;
    if (n == 0)
        return true;
    bool same = true;
    for (size_t i = 1; i < n && same; i++)
        same = cur[i].h == cur[0].h;
    bool leaf = same || level == CHAMP_COLL_LEVEL || (n <= 2 && level > 0);
    if (leaf && !in_b && c->kind == CHAMP_KEY_BYTES) {
        memcpy(alt, cur, n * sizeof *cur);
        cur = alt;
    }
    if (same || level == CHAMP_COLL_LEVEL)
        return bsame_keys(c, cur, n, level, out);
    if (n <= 2 && level > 0) {
        /* two keys that differ below: a pair, in trie order */
        bool swap = !pair_first(cur[0].h, cur[1].h);
        out->e[0] = cur[swap].e;
        out->e[1] = cur[!swap].e;
        out->n = 2;
        c->count += 2;
        return true;
    }
    /* counting sort by this level's slice into alt; the prefix sums visit
     * only the occupied slots (bm) */
    uint32_t cnt[32] = {0}, end[32], bm = 0, pairs;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = slice(cur[i].h, level);
        cnt[s]++;
        bm |= 1u << s;
    }
    uint32_t most = slot_starts(cnt, bm, end, &pairs);
    if (most <= 2) {
        /* the leaves: straight into the node (byte keys end here, built
         * or not: b keeps them) */
        int r = bleaf(c, cur, n, bm, pairs, end, level, out);
        if (r != 0) {
            if (!in_b && c->kind == CHAMP_KEY_BYTES)
                memcpy(alt, cur, n * sizeof *cur);
            return r > 0;
        }
    }
    for (size_t i = 0; i < n; i++)
        alt[end[slice(cur[i].h, level)]++] = cur[i];
    return bslots(c, alt, cur, false, !in_b, bm, cnt, end, level, out);
}

/* Builds a map of m's type holding the entries b[0..n) (distinct keys). */
static champ_status build_map(const champ_map *m, bent *b, bent *tmp, size_t n,
                              champ_map **out) {
    bctx c = {m->t, m->t->kind, m->t->width, 0};
    bres r;
    *out = NULL;
    if (!bbuild(&c, b, tmp, true, n, 0, &r))
        return CHAMP_ENOMEM;
    champ_map *x = champ__map_handle(m->t, r.n == SUB_NODE ? r.kid : NULL, c.count);
    if (!x) {
        bres_drop(&c, &r, 0);
        return CHAMP_ENOMEM;
    }
    *out = x;
    return CHAMP_OK;
}

/* The hash and key word of op i for m; byte keys get a blob of their own
 * (released when the batch is done).  false: out of memory. */
static bool op_entry(const champ_map *m, const champ_op *op, bent *b) {
    const mtype *t = m->t;
    b->e.v = op->remove ? NULL : op->val;
    switch (t->kind) {
    case CHAMP_KEY_U64:
        b->e.k = op->key.u64;
        b->h = hash_u64(op->key.u64, t->seed);
        return true;
    case CHAMP_KEY_BYTES: {
        size_t len = op->key.len;
        blob *bl = pool_alloc(t->pool, blob_size(len));
        if (!bl)
            return false;
        bl->hash = type_hash_bytes(t, op->key.ptr, len);
        bl->rc = 1;
        bl->len = (uint32_t)len;
        if (len)
            memcpy(bl->bytes, op->key.ptr, len);
        bl->bytes[len] = '\0';
        b->e.k = (uint64_t)(uintptr_t)bl;
        b->h = bl->hash;
        return true;
    }
    default:
        b->e.k = (uint64_t)(uintptr_t)op->key.ptr;
        b->h = t->hash(op->key.ptr, t->ctx);
        return true;
    }
}

static void release_blobs(const champ_map *m, bent *b, size_t n) {
    if (m->t->kind != CHAMP_KEY_BYTES)
        return;
    for (size_t i = 0; i < n; i++)
        key_release(m->t, b[i].e.k);
}

/* What an update of a batch does (the del array of a batch with removals). */
enum { DEL_SET, DEL_REMOVE, DEL_SUPERSEDED, DEL_MULTI = 4 };

/* (dedup_multi) positions into b, by hash, key (kinds with an order) and
 * position. */
typedef struct didx_ctx {
    const champ_map *m;
    const bent *b;
} didx_ctx;

static bool didx_less(const void *xp, const void *yp, const void *ctx) {
    const didx_ctx *d = ctx;
    const bent *b = d->b;
    uint32_t x = *(const uint32_t *)xp, y = *(const uint32_t *)yp;
    if (b[x].h != b[y].h)
        return b[x].h < b[y].h;
    if (kind_ordered(d->m->t, d->m->t->kind)) {
        int r = key_cmp(d->m->t, b[x].e.k, b[y].e.k, d->m->t->kind);
        if (r)
            return r < 0;
    }
    return x < y;
}

/* The updates of hashes that several different keys share (DEL_MULTI, a
 * weak hash or keys chosen to collide), positions in ix[0..n): sorted in
 * place (a heapsort: no memory to fail) by hash, key and position, each
 * key's last update kept.  O(n log n) key comparisons for kinds with a key
 * order; generic keys without compare scan each hash's run (O(run^2)
 * equal calls, as their collision nodes do). */
static void dedup_multi(const champ_map *m, bent *b, uint8_t *del, uint32_t *ix, size_t n) {
    didx_ctx d = {m, b};
    heap_sort(ix, n, sizeof *ix, didx_less, &d);
    bool ord = kind_ordered(m->t, m->t->kind);
    for (size_t lo = 0, hi; lo < n; lo = hi) {
        for (hi = lo + 1; hi < n && b[ix[hi]].h == b[ix[lo]].h; hi++)
            ;
        for (size_t i = lo; i < hi; i++) {
            uint32_t x = ix[i];
            del[x] &= (uint8_t)~DEL_MULTI;
            if (ord) {
                if (i + 1 < hi && key_cmp(m->t, b[x].e.k, b[ix[i + 1]].e.k, m->t->kind) == 0)
                    del[x] = DEL_SUPERSEDED;
                continue;
            }
            for (size_t j = i + 1; j < hi; j++)
                if (key_equal(m->t, b[x].e.k, b[ix[j]].e.k, m->t->kind)) {
                    del[x] = DEL_SUPERSEDED;
                    break;
                }
        }
    }
}

/* Keeps the last update of each key: a table of the batch's positions,
 * one slot per hash.  A hash met again with an equal key supersedes the
 * earlier update; with another key, every update of that hash is left to
 * dedup_multi (so that many keys of one hash do not make a probe chain
 * scanned with key comparisons at every step: O(n^2)).  del[i] says
 * whether update i removes.  Returns the number of survivors, compacted
 * to the front of b and del (in batch order), or (size_t)-1 when the
 * table has no memory. */
/* The table's slots come from the full hash mixed again with a secret of
 * the process (read once, never shown): hashes that agree in the bits a
 * plain mask would take (keys shifted up, `key << 44` as a generic hash,
 * or u64 keys chosen through the map's public seed) spread like any
 * others.  With h ^ (h >> 29) as the slot, 100K such updates and one
 * remove took 0.7-5.8 s in one probe cluster. */
static uint64_t dedup_secret;
size_t champ__dedup_probes; /* tests: the table's probe steps, counted with
                               CHAMP_STATS (one relaxed add per call) */

static size_t batch_dedup(const champ_map *m, bent *b, uint8_t *del, size_t n) {
    uint64_t sec = __atomic_load_n(&dedup_secret, __ATOMIC_RELAXED);
    if (!sec) {
        sec = champ__random_seed() | 1u; /* (a race makes two: either serves) */
        __atomic_store_n(&dedup_secret, sec, __ATOMIC_RELAXED);
    }
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    champ_pool *p = m->t->pool;
    uint32_t *tab = champ__scratch_alloc(p, cap * sizeof *tab);
    if (!tab)
        return (size_t)-1;
    memset(tab, 0xff, cap * sizeof *tab);
    size_t multi = 0, probes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = (size_t)hash_u64(b[i].h, sec) & (cap - 1);
        for (;; j = (j + 1) & (cap - 1)) {
            uint32_t x = tab[j];
            probes++;
            if (x == UINT32_MAX) {
                tab[j] = (uint32_t)i;
                break;
            }
            if (b[x].h != b[i].h)
                continue;
            if (!(del[x] & DEL_MULTI) && key_equal(m->t, b[x].e.k, b[i].e.k, m->t->kind)) {
                del[x] = DEL_SUPERSEDED;
            } else {
                multi += !(del[x] & DEL_MULTI) + 1u;
                del[x] |= DEL_MULTI;
                del[i] |= DEL_MULTI;
            }
            tab[j] = (uint32_t)i;
            break;
        }
    }
#ifdef CHAMP_STATS
    /* (threads apply batches at once: tsan-concurrent) */
    __atomic_fetch_add(&champ__dedup_probes, probes, __ATOMIC_RELAXED);
#else
    (void)probes;
#endif
    if (multi) {
        /* the table is done with: it holds their positions (cap > n) */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (del[i] & DEL_MULTI)
                tab[k++] = (uint32_t)i;
        dedup_multi(m, b, del, tab, k);
    }
    champ__scratch_free(p, tab, cap * sizeof *tab);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (del[i] == DEL_SUPERSEDED) {
            if (m->t->kind == CHAMP_KEY_BYTES)
                key_release(m->t, b[i].e.k); /* its blob */
            continue;
        }
        del[k] = del[i];
        b[k++] = b[i];
    }
    return k;
}

/* m takes r's trie (r is left empty); m's old root loses m's reference. */
static void take_trie(champ_map *m, champ_map *r) {
    node *old = m->root;
    m->root = r->root;
    m->size = r->size;
    m->stamp++;
    r->root = NULL;
    r->size = 0;
    if (old)
        map_root_drop(m, old);
}

/* m = m united with the built map bs (the batch's entries win), bs freed.
 * An empty map simply takes the built trie. */
static champ_status merge_built(champ_map *m, champ_map *bs) {
    champ_map *r = NULL;
    champ_status st = CHAMP_OK;
    if (!m->root)
        take_trie(m, bs);
    else if ((st = champ_union(m, bs, NULL, NULL, &r)) == CHAMP_OK)
        take_trie(m, r);
    champ_free(r);
    champ_free(bs);
    return st;
}

/* A batch of sets only, built straight from the ops.  The first pass
 * hashes each op and counts the root's slots; the second writes the
 * entries into b in slot order (a u64 key is hashed again; other kinds
 * keep from the first pass their key word in kw: a byte key's blob, whose
 * header holds the hash, or a generic key's hash); then each slot is built
 * with its own range of b and a tmp as large as the largest slot taking
 * turns.  Scratch: 24 bytes an entry and the largest slot (plus 8 an entry
 * for kinds other than u64), against 48 an entry when b is sorted into a
 * second array of its size (apply_mixed).  Repeats of a key meet at the
 * bottom (equal hashes), where the later wins: every move is stable. */
static ALWAYS_INLINE champ_status apply_sets_kind(champ_map *m, const champ_op *ops, size_t n,
                                                  const champ_key_kind kind) {
    const mtype *t = m->t;
    champ_pool *p = t->pool;
    uint64_t *kw = NULL;
    bent *b = NULL, *tmp = NULL;
    size_t made = 0, big = 0;
    bool in_b = false; /* every blob is in b (else in kw[0..made)) */
    champ_status st = CHAMP_ENOMEM;
    uint32_t cnt[32] = {0}, end[32], bm = 0;
    champ__pool_expect(p, n * t->width / 4 * 5); /* entries, and nodes: 1/4 more */
    if (kind != CHAMP_KEY_U64 && !(kw = champ__scratch_alloc(p, n * sizeof *kw)))
        goto out;
    for (; made < n; made++) {
        uint64_t h;
        if (kind == CHAMP_KEY_U64) {
            h = hash_u64(ops[made].key.u64, t->seed);
        } else {
            bent x;
            if (!op_entry(m, &ops[made], &x))
                goto out;
            kw[made] = kind == CHAMP_KEY_BYTES ? x.e.k : x.h;
            h = x.h;
        }
        uint32_t s = slice(h, 0);
        cnt[s]++;
        bm |= 1u << s;
    }
    uint32_t pairs;
    big = slot_starts(cnt, bm, end, &pairs);
    b = champ__scratch_alloc(p, n * sizeof *b);
    tmp = b ? champ__scratch_alloc(p, big * sizeof *tmp) : NULL;
    if (!tmp)
        goto out;
    for (size_t i = 0; i < n; i++) {
        bent x;
        x.e.v = ops[i].val;
        if (kind == CHAMP_KEY_U64) {
            x.e.k = ops[i].key.u64;
            x.h = hash_u64(x.e.k, t->seed);
        } else if (kind == CHAMP_KEY_BYTES) {
            x.e.k = kw[i];
            x.h = ((const blob *)(uintptr_t)kw[i])->hash;
        } else {
            x.e.k = (uint64_t)(uintptr_t)ops[i].key.ptr;
            x.h = kw[i];
        }
        b[end[slice(x.h, 0)]++] = x;
    }
    in_b = true;
    champ__scratch_free(p, kw, n * sizeof *kw);
    kw = NULL;
    bctx c = {t, kind, t->width, 0};
    bres r;
    if (!bslots(&c, b, tmp, true, true, bm, cnt, end, 0, &r))
        goto out;
    champ_map *bs = champ__map_handle(m->t, r.kid, c.count);
    if (!bs) {
        bres_drop(&c, &r, 0);
        goto out;
    }
    st = merge_built(m, bs);
out:
    if (in_b)
        release_blobs(m, b, n);
    else if (kind == CHAMP_KEY_BYTES)
        for (size_t i = 0; i < made; i++)
            key_release(t, kw[i]);
    champ__scratch_free(p, kw, n * sizeof *kw);
    champ__scratch_free(p, tmp, big * sizeof *tmp);
    champ__scratch_free(p, b, n * sizeof *b);
    return st;
}

static champ_status apply_sets(champ_map *m, const champ_op *ops, size_t n) {
    switch (m->t->kind) {
    case CHAMP_KEY_U64: return apply_sets_kind(m, ops, n, CHAMP_KEY_U64);
    case CHAMP_KEY_BYTES: return apply_sets_kind(m, ops, n, CHAMP_KEY_BYTES);
    default: return apply_sets_kind(m, ops, n, CHAMP_KEY_GENERIC);
    }
}

/* A batch with removes: its entries made into b, the later update of each
 * key kept (batch_dedup), the sets built and united with m, the removes
 * built and taken away. */
static champ_status apply_mixed(champ_map *m, const champ_op *ops, size_t n) {
    const mtype *t = m->t;
    champ_pool *p = t->pool;
    size_t bytes = n * sizeof(bent);
    champ__pool_expect(p, n * t->width / 4 * 5);
    bent *b = champ__scratch_alloc(p, bytes), *tmp = b ? champ__scratch_alloc(p, bytes) : NULL;
    uint8_t *del = tmp ? champ__scratch_alloc(p, n) : NULL;
    champ_status st = CHAMP_ENOMEM;
    size_t made = 0;
    if (!del)
        goto out;
    for (; made < n; made++) {
        if (!op_entry(m, &ops[made], &b[made]))
            goto out;
        del[made] = ops[made].remove ? DEL_REMOVE : DEL_SET;
    }
    size_t live = batch_dedup(m, b, del, n);
    if (live == (size_t)-1)
        goto out;
    made = live;
    /* the sets first, then the removals */
    size_t ns = 0;
    for (size_t i = 0; i < live; i++)
        if (del[i] == DEL_SET) {
            bent x = b[i];
            b[i] = b[ns];
            b[ns] = x;
            del[i] = del[ns];
            del[ns++] = DEL_SET;
        }
    champ_map *bs = NULL, *bd = NULL, *r = NULL;
    if ((st = build_map(m, b, tmp, ns, &bs)) != CHAMP_OK)
        goto out;
    if ((st = build_map(m, b + ns, tmp, live - ns, &bd)) == CHAMP_OK &&
        (st = champ_union(m, bs, NULL, NULL, &r)) == CHAMP_OK) {
        champ_map *r2 = NULL;
        if ((st = champ_difference(r, bd, &r2)) == CHAMP_OK)
            take_trie(m, r2);
        champ_free(r2);
    }
    champ_free(r);
    champ_free(bd);
    champ_free(bs);
out:
    if (b)
        release_blobs(m, b, made);
    champ__scratch_free(p, del, n);
    champ__scratch_free(p, tmp, bytes);
    champ__scratch_free(p, b, bytes);
    return st;
}

champ_status champ_apply(champ_map *m, const champ_op *ops, size_t n) {
    if (!m || (!ops && n))
        return CHAMP_EINVAL;
    const mtype *t = m->t;
    if ((t->val_release && !t->val_retain) || (t->key_release && !t->key_retain))
        return CHAMP_EINVAL;
    if (n > UINT32_MAX - 1)
        return CHAMP_EINVAL;
    if (n > SIZE_MAX / (sizeof(bent) + 8u))
        return CHAMP_ENOMEM; /* the scratch arrays' sizes */
    const bool bytes = t->kind == CHAMP_KEY_BYTES, set = t->width == ENT_SET;
    bool any_del = false;
    for (size_t i = 0; i < n && (bytes || set); i++) {
        if (bytes && ((!ops[i].key.ptr && ops[i].key.len) || ops[i].key.len > UINT32_MAX))
            return CHAMP_EINVAL;
        if (set && !ops[i].remove && ops[i].val)
            return CHAMP_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        any_del |= ops[i].remove;
    if (n == 0)
        return CHAMP_OK;
    if (op_busy(m))
        return CHAMP_EBUSY;
    map_settle(m);
    opframe fr;
    op_push(&fr, m, OPF_UPDATE);
    champ_status st = any_del ? apply_mixed(m, ops, n) : apply_sets(m, ops, n);
    op_end(&fr);
    return st;
}

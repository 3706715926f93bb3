/*
 * trie.c - the out-of-line pieces of the trie engine (trie.h): reference
 * bookkeeping of copied nodes, iterative teardown, the subtree walker.
 */
#include "internal.h"

void champ__node_share_refs(const mtype *t, node *dst, uint32_t ne, uint32_t nk,
                            uint32_t se, uint32_t sn, int sk) {
    unsigned W = t->width;
    if (t->ent_refs)
        for (uint32_t i = 0; i < ne; i++)
            if (i - se >= sn) /* i < se or i >= se + sn (unsigned) */
                ent_retain(t, ent_get(dst, i, W));
    node **k = (node **)(void *)(node_ebase(dst) + (size_t)W * ne);
    if (t->atomic) {
        for (uint32_t i = 0; i < nk; i++)
            if ((int)i != sk) /* the new child was not duplicated */
                rc_inc(&k[i]->rc, true);
        return;
    }
    for (uint32_t i = 0; i < nk; i++)
        k[i]->rc++;
    if (sk >= 0)
        k[sk]->rc--;
}

/* The stack holds, per level, a node being torn down and the next child
 * to visit. */
void champ__node_drop(const mtype *t, node *n, unsigned level) {
    struct {
        node *n;
        uint32_t next;
    } st[CHAMP_MAX_PATH];
    unsigned W = t->width;
    CHAMP_ASSERT(rc_load(&n->rc) > 0);
    if (!rc_dec_free(&n->rc, t->atomic))
        return;
    int sp = 0;
    st[0].n = n;
    st[0].next = 0;
    for (;;) {
        node *x = st[sp].n;
        unsigned lv = level + (unsigned)sp;
        uint32_t nd = node_nent_at(x, lv), nn = node_nkid_at(x, lv);
        uint32_t i = st[sp].next;
        if (i == 0 && t->ent_refs)
            for (uint32_t j = 0; j < nd; j++)
                ent_release(t, ent_get(x, j, W));
        node **kids = (node **)(void *)(node_ebase(x) + (size_t)W * nd);
        node *dead = NULL;
        while (i < nn) {
            node *c = kids[i++];
            CHAMP_ASSERT(rc_load(&c->rc) > 0);
            if (rc_dec_free(&c->rc, t->atomic)) {
                dead = c;
                break;
            }
        }
        if (dead) {
            /* descend into the child that just lost its last reference */
            st[sp].next = i;
            sp++;
            st[sp].n = dead;
            st[sp].next = 0;
            continue;
        }
        pool_free(t->pool, x, node_block(x, lv, W));
        if (sp-- == 0)
            break;
    }
}

int champ__walk(const node *n, unsigned level, unsigned W, ent_visit_fn fn, void *ctx) {
    const node *stk[CHAMP_MAX_PATH];
    uint32_t pos[CHAMP_MAX_PATH];
    if (!n)
        return 0;
    int d = 0;
    stk[0] = n;
    pos[0] = 0;
    while (d >= 0) {
        const node *x = stk[d];
        unsigned lv = level + (unsigned)d;
        if (pos[d] == 0) {
            uint32_t nd = node_nent_at(x, lv);
            for (uint32_t i = 0; i < nd; i++) {
                int r = fn(ctx, ent_get(x, i, W));
                if (r)
                    return r;
            }
        }
        if (pos[d] < node_nkid_at(x, lv)) {
            const node *c = node_kids(x, W)[pos[d]++];
            d++;
            stk[d] = c;
            pos[d] = 0;
            continue;
        }
        d--;
    }
    return 0;
}

static int count_one(void *ctx, entry e) {
    (void)e;
    (*(size_t *)ctx)++;
    return 0;
}

size_t champ__count(const node *n, unsigned level, unsigned W) {
    size_t c = 0;
    champ__walk(n, level, W, count_one, &c);
    return c;
}

/* ------------------------------------------------------------------ */
/* Collision nodes (trie.h)                                            */
/* ------------------------------------------------------------------ */

static int coll_cmp(const mtype *t, const node *n, uint32_t i, uint32_t j) {
    unsigned W = t->width;
    return key_cmp(t, ent_key(n, i, W), ent_key(n, j, W), t->kind);
}

static void coll_swap(node *n, uint32_t i, uint32_t j, unsigned W) {
    entry a = ent_get(n, i, W), b = ent_get(n, j, W);
    ent_put(n, i, b, W);
    ent_put(n, j, a, W);
}

/* Sift entry i down the max-heap of the first `end` entries. */
static void coll_sift(const mtype *t, node *n, uint32_t i, uint32_t end) {
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= end)
            return;
        if (c + 1 < end && coll_cmp(t, n, c, c + 1) < 0)
            c++;
        if (coll_cmp(t, n, i, c) >= 0)
            return;
        coll_swap(n, i, c, t->width);
        i = c;
    }
}

void champ__coll_order(const mtype *t, node *n) {
    uint32_t cnt = n->datamap;
    CHAMP_ASSERT(kind_ordered(t, t->kind) && !coll_hashed(n));
    for (uint32_t i = cnt / 2; i-- > 0;)
        coll_sift(t, n, i, cnt);
    for (uint32_t end = cnt; end-- > 1;) {
        coll_swap(n, 0, end, t->width);
        coll_sift(t, n, 0, end);
    }
    n->nodemap |= COLL_ORDERED;
}

/* log2 of the index a hashed node of n keys is built with: the smallest
 * power of two of at least 2n slots (half full at most). */
static uint32_t coll_lg_for(uint32_t n) {
    uint32_t lg = 4;
    while ((1ull << lg) < 2ull * n)
        lg++;
    return lg;
}

/* The index a node of n1 keys needs after an insert into b: b's while it
 * stays half full at most, else one of coll_lg_for(n1). */
static uint32_t coll_cap_after_insert(const node *b, uint32_t n1) {
    uint32_t cap = coll_cap(b);
    return 2ull * n1 <= cap ? cap : 1u << coll_lg_for(n1);
}

static uint32_t ent_h32(const mtype *t, const node *n, uint32_t i) {
    const blob *b = key_blob(ent_key(n, i, t->width));
    return coll_h32(t, b->bytes, b->len);
}

/* Linear probing: the first empty slot from h's home takes x. */
static void slot_put(uint64_t *sl, uint32_t mask, uint64_t x) {
    uint32_t i = (uint32_t)x & mask;
    while (sl[i])
        i = (i + 1) & mask;
    sl[i] = x;
}

static uint64_t slot_make(uint32_t h, uint32_t pos) {
    return ((uint64_t)(pos + 1) << 32) | h;
}

/* The slot of entry pos in hashed node n. */
static uint32_t slot_of(const mtype *t, const node *n, uint32_t pos) {
    uint32_t mask = coll_cap(n) - 1;
    const uint64_t *sl = coll_slots(n, t->width);
    for (uint32_t i = ent_h32(t, n, pos) & mask;; i = (i + 1) & mask)
        if ((sl[i] >> 32) == (uint64_t)pos + 1)
            return i;
}

/* Empties slot j; later slots of its cluster move back into the hole when
 * their home allows (no tombstones). */
static void slot_del(uint64_t *sl, uint32_t mask, uint32_t j) {
    uint32_t i = j;
    for (uint32_t k = (j + 1) & mask; sl[k]; k = (k + 1) & mask) {
        uint32_t home = (uint32_t)sl[k] & mask;
        if (((k - home) & mask) >= ((k - i) & mask)) {
            sl[i] = sl[k];
            i = k;
        }
    }
    sl[i] = 0;
}

/* Fills the index of hashed node n (its lg and room set) from its
 * entries. */
static void index_build(const mtype *t, node *n) {
    uint32_t cap = coll_cap(n);
    uint64_t *sl = coll_slots(n, t->width);
    memset(sl, 0, 8u * (size_t)cap);
    for (uint32_t i = 0; i < n->datamap; i++)
        slot_put(sl, cap - 1, slot_make(ent_h32(t, n, i), i));
}

static uint32_t lg_of(uint32_t cap) {
    return (uint32_t)__builtin_ctz(cap);
}

bool champ__coll_fits(const mtype *t, const node *b) {
    unsigned W = t->width;
    uint32_t n1 = b->datamap + 1;
    if (8u * (size_t)coll_room(b) - coll_index_bytes(b) < W)
        return false;
    if (coll_wants_hash(t, n1))
        return coll_hashed(b) && 2ull * n1 <= coll_cap(b);
    return !coll_hashed(b);
}

size_t champ__coll_grow_bytes(const mtype *t, const node *b, bool exact) {
    unsigned W = t->width;
    uint32_t n1 = b->datamap + 1;
    size_t content = node_coll_size(n1, W);
    size_t bytes = content;
    if (coll_wants_hash(t, n1))
        bytes += 8u * (size_t)coll_cap_after_insert(b, n1);
    return exact ? bytes : bytes + 8u * (size_t)grow_units(content);
}

void champ__coll_move(const mtype *t, node *dst, size_t bytes, const node *b, bool share) {
    unsigned W = t->width;
    uint32_t n = b->datamap, n1 = n + 1;
    node_init(dst, n, 0);
    memcpy(node_ebase(dst), node_ebase(b), (size_t)W * n);
    if (share)
        champ__node_share_refs(t, dst, n, 0, 0, 0, -1);
    uint32_t room = (uint32_t)((bytes - node_coll_size(n, W)) / 8u);
    if (coll_wants_hash(t, n1)) {
        uint32_t cap = coll_cap_after_insert(b, n1);
        dst->nodemap = COLL_HASHED | room;
        dst->aux = lg_of(cap);
        uint64_t *sl = coll_slots(dst, W);
        if (cap == coll_cap(b)) {
            memcpy(sl, coll_slots(b, W), 8u * (size_t)cap);
        } else if (coll_hashed(b)) {
            /* the slots keep their hashes: no key is hashed again */
            const uint64_t *old = coll_slots(b, W);
            memset(sl, 0, 8u * (size_t)cap);
            for (uint32_t i = 0; i < coll_cap(b); i++)
                if (old[i])
                    slot_put(sl, cap - 1, old[i]);
        } else {
            index_build(t, dst);
        }
        return;
    }
    CHAMP_ASSERT(!coll_hashed(b));
    dst->nodemap = (b->nodemap & COLL_ORDERED) | room;
    CHAMP_ASSERT(coll_ordered(dst) || !kind_ordered(t, t->kind));
}

void champ__coll_put(const mtype *t, node *b, entry e, int at) {
    unsigned W = t->width;
    uint32_t n = b->datamap;
    CHAMP_ASSERT(champ__coll_fits(t, b));
    if (coll_hashed(b)) {
        uint64_t *sl = coll_slots(b, W); /* stays where it is */
        ent_put(b, n, e, W);
        slot_put(sl, coll_cap(b) - 1, slot_make(ent_h32(t, b, n), n));
    } else if (kind_ordered(t, t->kind)) {
        CHAMP_ASSERT(coll_ordered(b));
        if (at < 0) {
            uint32_t lo = 0, hi = n;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (key_cmp(t, ent_key(b, mid, W), e.k, t->kind) < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            at = (int)lo;
        }
        memmove(ent_at(b, (uint32_t)at + 1, W), ent_at(b, (uint32_t)at, W),
                (size_t)W * (n - (uint32_t)at));
        ent_put(b, (uint32_t)at, e, W);
    } else {
        ent_put(b, n, e, W);
    }
    b->datamap = n + 1;
    b->nodemap -= W / 8u;
}

void champ__coll_copy(const mtype *t, node *dst, const node *b, int skip) {
    unsigned W = t->width;
    uint32_t n = b->datamap, cap = coll_cap(b);
    node_init(dst, n, (b->nodemap & (COLL_ORDERED | COLL_HASHED)) | cap);
    memcpy(node_ebase(dst), node_ebase(b), (size_t)W * n);
    if (cap) {
        dst->aux = lg_of(cap);
        memcpy(coll_slots(dst, W), coll_slots(b, W), 8u * (size_t)cap);
    }
    if (skip >= 0)
        champ__node_share_refs(t, dst, n, 0, (uint32_t)skip, 1, -1);
    else
        champ__node_share_refs(t, dst, n, 0, 0, 0, -1);
}

/* Gives back the free bytes of b's room beyond what it keeps: up to the
 * node's own size (then 1/8 of it), none for a list or an ordered node in
 * a fixed buffer; at least 16 bytes at a time.  The index moves down. */
static void coll_trim(const mtype *t, node *b) {
    champ_pool *pool = t->pool;
    unsigned W = t->width;
    size_t sz = node_coll_size(b->datamap, W), idx = coll_index_bytes(b);
    size_t free_b = 8u * (size_t)coll_room(b) - idx, keep = free_b;
    if (pool->fixed && !idx)
        keep = 0;
    else if (free_b > sz)
        keep = 8u * (size_t)grow_units(sz);
    if (keep > free_b || free_b - keep < 16u)
        return;
    size_t give = free_b - keep;
    if (idx) {
        char *sl = (char *)coll_slots(b, W);
        memmove(sl - give, sl, idx);
    }
    b->nodemap -= (uint32_t)(give / 8u);
    pool_free(pool, (char *)b + sz + keep + idx, give);
}

void champ__coll_del(const mtype *t, node *b, uint32_t i) {
    unsigned W = t->width;
    uint32_t n = b->datamap;
    CHAMP_ASSERT(n > 3 && i < n);
    if (coll_hashed(b)) {
        uint32_t cap = coll_cap(b), mask = cap - 1;
        uint64_t *sl = coll_slots(b, W);
        slot_del(sl, mask, slot_of(t, b, i));
        if (i != n - 1) { /* the last entry fills the hole */
            uint32_t j = slot_of(t, b, n - 1);
            ent_put(b, i, ent_get(b, n - 1, W), W);
            sl[j] = slot_make((uint32_t)sl[j], i);
        }
        b->datamap = --n;
        b->nodemap += W / 8u; /* the index stays where it is */
        if (n <= COLL_HASH_MIN) {
            /* small again: ordered, the index becomes free room */
            b->nodemap &= ~COLL_HASHED;
            b->aux &= ~COLL_LGCAP;
            champ__coll_order(t, b);
        } else if (8u * n < cap) {
            /* an eighth full: half the slots, rebuilt at the end */
            b->aux = (b->aux & ~COLL_LGCAP) | lg_of(cap / 2);
            index_build(t, b);
        }
    } else {
        CHAMP_ASSERT(coll_ordered(b) || !kind_ordered(t, t->kind));
        memmove(ent_at(b, i, W), ent_at(b, i + 1, W), (size_t)W * (n - 1 - i));
        b->datamap = n - 1;
        b->nodemap += W / 8u;
    }
    coll_trim(t, b);
}

size_t champ__coll_build_bytes(const mtype *t, uint32_t n) {
    size_t bytes = node_coll_size(n, t->width);
    if (coll_wants_hash(t, n))
        bytes += (size_t)8u << coll_lg_for(n);
    return bytes;
}

void champ__coll_finish(const mtype *t, node *b, size_t bytes, bool sorted) {
    uint32_t n = b->datamap;
    uint32_t room = (uint32_t)((bytes - node_coll_size(n, t->width)) / 8u);
    b->nodemap = room;
    if (coll_wants_hash(t, n)) {
        b->nodemap |= COLL_HASHED;
        b->aux = coll_lg_for(n);
        index_build(t, b);
    } else if (kind_ordered(t, t->kind)) {
        if (sorted)
            b->nodemap |= COLL_ORDERED;
        else
            champ__coll_order(t, b);
    }
}

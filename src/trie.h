/*
 * trie.h - the trie engine's shared pieces: entries (hash, compare,
 * retain, release), node builders, lookup from any node, teardown, the
 * subtree walker, the slot builder and the pull-up that keeps results
 * canonical.  champ.c (single-key updates), algebra.c (equality, diff, set
 * algebra), build.c (bulk build, batches), iter.c and check.c build on
 * them.  Everything is static inline with the key kind and the entry width
 * W passed as constants, so each user gets copies specialised for its
 * (kind, width) pair; the out-of-line pieces are in trie.c.
 * Included through internal.h only; the design is explained at the top of
 * champ.c.
 */
#ifndef CHAMP_TRIE_H
#define CHAMP_TRIE_H

/* ------------------------------------------------------------------ */
/* Entries                                                             */
/* ------------------------------------------------------------------ */

static ALWAYS_INLINE blob *key_blob(uint64_t k) {
    return (blob *)(uintptr_t)k;
}

/* A copy of an entry is made (a node holding it was duplicated): the key
 * blob or the user's key, and the value, gain a reference. */
static ALWAYS_INLINE void ent_retain(const mtype *t, entry e) {
    if (t->kind == CHAMP_KEY_BYTES)
        rc_inc(&key_blob(e.k)->rc, t->atomic);
    else if (t->key_retain)
        t->key_retain((void *)(uintptr_t)e.k, t->ctx);
    if (t->val_retain)
        t->val_retain(e.v, t->ctx);
}

static inline void key_release(const mtype *t, uint64_t k) {
    if (t->kind == CHAMP_KEY_BYTES) {
        blob *b = key_blob(k);
        if (rc_dec_free(&b->rc, t->atomic))
            pool_free(t->pool, b, blob_size(b->len));
    } else if (t->key_release) {
        t->key_release((void *)(uintptr_t)k, t->ctx);
    }
}

static inline void ent_release(const mtype *t, entry e) {
    key_release(t, e.k);
    if (t->val_release)
        t->val_release(e.v, t->ctx);
}

/* The full hash of a stored key. */
static ALWAYS_INLINE uint64_t key_hash(const mtype *t, uint64_t k, champ_key_kind kind) {
    switch (kind) {
    case CHAMP_KEY_U64:
        return hash_u64(k, t->seed);
    case CHAMP_KEY_BYTES:
        return key_blob(k)->hash;
    default:
        return t->hash((const void *)(uintptr_t)k, t->ctx);
    }
}

/* Whether two stored keys are equal. */
static ALWAYS_INLINE bool key_equal(const mtype *t, uint64_t a, uint64_t b,
                                    champ_key_kind kind) {
    switch (kind) {
    case CHAMP_KEY_U64:
        return a == b;
    case CHAMP_KEY_BYTES: {
        const blob *x = key_blob(a), *y = key_blob(b);
        return x == y || (x->hash == y->hash && x->len == y->len &&
                          memcmp(x->bytes, y->bytes, x->len) == 0);
    }
    default:
        return a == b || t->equal((const void *)(uintptr_t)a,
                                  (const void *)(uintptr_t)b, t->ctx);
    }
}

/* A key being looked up or inserted. */
typedef struct kq {
    uint64_t h;
    uint64_t u;     /* U64 key; GENERIC key pointer */
    const void *p;  /* BYTES key bytes */
    size_t len;
} kq;

/* The key of a stored key word, as a query (its hash given). */
static ALWAYS_INLINE kq kq_of_key(uint64_t k, uint64_t h, champ_key_kind kind) {
    kq q;
    q.h = h;
    q.u = k;
    q.p = NULL;
    q.len = 0;
    if (kind == CHAMP_KEY_BYTES) {
        q.p = key_blob(k)->bytes;
        q.len = key_blob(k)->len;
    }
    return q;
}

static ALWAYS_INLINE bool kq_match(const mtype *t, uint64_t k, const kq *q,
                                   champ_key_kind kind) {
    if (kind == CHAMP_KEY_U64)
        return k == q->u;
    if (kind == CHAMP_KEY_BYTES) {
        const blob *b = key_blob(k);
        return b->hash == q->h && b->len == q->len &&
               (q->len == 0 || memcmp(b->bytes, q->p, q->len) == 0);
    }
    return k == q->u || t->equal((const void *)(uintptr_t)k,
                                 (const void *)(uintptr_t)q->u, t->ctx);
}

/* ------------------------------------------------------------------ */
/* Key order: collision nodes and pairs of equal hashes                */
/* ------------------------------------------------------------------ */

/* Whether the map's keys have an order: byte keys always (byte order, a
 * key before its extensions), generic keys when the config gave compare;
 * u64 keys never collide.  Collision nodes of such maps keep their keys in
 * this order (COLL_ORDERED) and are searched by bisection, and a pair of
 * two keys with equal hashes is in this order too, so equal contents give
 * equal nodes whatever the order of the updates. */
static ALWAYS_INLINE bool kind_ordered(const mtype *t, champ_key_kind kind) {
    return kind == CHAMP_KEY_BYTES || (kind == CHAMP_KEY_GENERIC && t->compare != NULL);
}

static ALWAYS_INLINE int bytes_cmp(const void *a, size_t la, const void *b, size_t lb) {
    size_t n = la < lb ? la : lb;
    int r = n ? memcmp(a, b, n) : 0;
    if (r)
        return r;
    return (la > lb) - (la < lb);
}

/* The order of stored key k and the key of q (negative, 0, positive).
 * Only for maps with kind_ordered. */
static ALWAYS_INLINE int kq_cmp(const mtype *t, uint64_t k, const kq *q,
                                champ_key_kind kind) {
    if (kind == CHAMP_KEY_BYTES) {
        const blob *b = key_blob(k);
        return bytes_cmp(b->bytes, b->len, q->p, q->len);
    }
    if (k == q->u)
        return 0;
    return t->compare((const void *)(uintptr_t)k, (const void *)(uintptr_t)q->u, t->ctx);
}

/* The order of two stored keys. */
static ALWAYS_INLINE int key_cmp(const mtype *t, uint64_t a, uint64_t b,
                                 champ_key_kind kind) {
    if (kind == CHAMP_KEY_BYTES) {
        const blob *x = key_blob(a), *y = key_blob(b);
        return x == y ? 0 : bytes_cmp(x->bytes, x->len, y->bytes, y->len);
    }
    if (a == b)
        return 0;
    return t->compare((const void *)(uintptr_t)a, (const void *)(uintptr_t)b, t->ctx);
}

/* Whether stored key a (hashed ha) comes first in a pair with stored key b
 * (hashed hb): trie order; equal hashes in key order when the map has one,
 * else in the order given. */
static ALWAYS_INLINE bool ent_first(const mtype *t, uint64_t a, uint64_t ha, uint64_t b,
                                    uint64_t hb, champ_key_kind kind) {
    if (ha != hb)
        return hash_trie_before(ha, hb);
    return kind == CHAMP_KEY_U64 || !kind_ordered(t, kind) || key_cmp(t, a, b, kind) < 0;
}

/* Whether stored key k (hashed hk) comes before the key of q in a pair. */
static ALWAYS_INLINE bool ent_before_q(const mtype *t, uint64_t k, uint64_t hk, const kq *q,
                                       champ_key_kind kind) {
    if (kind == CHAMP_KEY_U64 || hk != q->h)
        return hk == q->h || hash_trie_before(hk, q->h);
    return !kind_ordered(t, kind) || kq_cmp(t, k, q, kind) < 0;
}

/* ------------------------------------------------------------------ */
/* Collision nodes                                                     */
/* ------------------------------------------------------------------ */
/*
 * Keys whose full 64-bit hashes are equal share a collision node at level
 * 13: datamap entries, packed at the start of the body as in every node
 * (iteration, teardown and the set algebra read them so), then spare room.
 * Three layouts (node.h: nodemap's flags):
 *   ordered  the entries in the map's key order (kind_ordered: byte keys,
 *            generic keys with compare): bisection, O(log n) comparisons;
 *            an insert or remove in place moves the entries after the key
 *            (memmove).  Equal contents, equal nodes.
 *   hashed   byte keys, more than COLL_HASH_MIN of them: entries in any
 *            order (an insert appends, a remove moves the last entry into
 *            the hole), found through a hash index at the end of the block:
 *            linear probing over 2^k slots of 8 bytes (a second hash of the
 *            key bytes, XXH3 with another seed: its low 32 bits, and the
 *            entry's index + 1), between 1/8 and 1/2 full.  O(1) expected
 *            per operation whatever the keys' first hash.  Its order depends
 *            on the updates' history.
 *   list     neither (generic keys without compare): scanned with equal,
 *            O(n); insertion order (a set-algebra result: its merge's,
 *            the first input's keys, then the second's).
 * Every builder lays a node out so: updates, champ_apply and the set
 * algebra (champ__coll_build_bytes, champ__coll_finish), and validate
 * rejects a list in a map with a key order.
 * The room (nodemap's low bits) is the block's bytes after the entries:
 * free space for entries, then the index.  Owned nodes change in place
 * while the room allows and move to a block about 1/8 bigger otherwise, so
 * n inserts into one node take O(log n) allocations.
 */
#define COLL_HASH_MIN 128u
#define COLL_SEED2 0x9e3779b97f4a7c15ull
/* The most keys a collision node takes from single-key inserts (its room
 * and index must fit nodemap's 30 bits of 8-byte units); one more is
 * refused with CHAMP_ENOMEM. */
#define COLL_MAX_KEYS (1u << 26)

/* Whether a collision node of n keys of this map is hashed. */
static ALWAYS_INLINE bool coll_wants_hash(const mtype *t, uint32_t n) {
    return t->kind == CHAMP_KEY_BYTES && n > COLL_HASH_MIN;
}

/* The second hash of a byte key (the hashed layout): 32 bits. */
static ALWAYS_INLINE uint32_t coll_h32(const mtype *t, const void *p, size_t len) {
    return (uint32_t)champ__hash_bytes(p, len, t->seed ^ COLL_SEED2);
}

/* The index of a hashed node: 2^k slots at the end of its block.  A slot
 * is 0 (empty) or (entry index + 1) << 32 | the key's coll_h32. */
static ALWAYS_INLINE uint64_t *coll_slots(const node *n, unsigned W) {
    return (uint64_t *)(void *)(node_ebase(n) + (size_t)W * n->datamap +
                                8u * (size_t)coll_room(n) - coll_index_bytes(n));
}

/* In a hashed node: the index of the entry holding the byte key (p, len),
 * or -1. */
static ALWAYS_INLINE int64_t coll_hfind(const mtype *t, const node *n, const void *p,
                                        size_t len, unsigned W) {
    uint32_t h = coll_h32(t, p, len), mask = coll_cap(n) - 1;
    const uint64_t *sl = coll_slots(n, W);
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t x = sl[i];
        if (!x)
            return -1;
        if ((uint32_t)x != h)
            continue;
        uint32_t pos = (uint32_t)(x >> 32) - 1;
        const blob *b = key_blob(ent_key(n, pos, W));
        if (b->len == len && (len == 0 || memcmp(b->bytes, p, len) == 0))
            return pos;
    }
}

/* In an ordered collision node: bisection for q.  Returns its index and
 * sets *found, or the index where it would go. */
static ALWAYS_INLINE uint32_t coll_search(const mtype *t, const node *n, const kq *q,
                                          bool *found, champ_key_kind kind, unsigned W) {
    uint32_t lo = 0, hi = n->datamap;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = kq_cmp(t, ent_key(n, mid, W), q, kind);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

/* The index of q in collision node n, or -1; *at gets where q goes in an
 * ordered node (else -1).  Every lookup and update uses this. */
static ALWAYS_INLINE int64_t coll_find(const mtype *t, const node *n, const kq *q, int *at,
                                       champ_key_kind kind, unsigned W) {
    *at = -1;
    if (kind == CHAMP_KEY_BYTES && coll_hashed(n))
        return coll_hfind(t, n, q->p, q->len, W);
    if (coll_ordered(n) && kind_ordered(t, kind)) {
        bool found;
        uint32_t i = coll_search(t, n, q, &found, kind, W);
        if (found)
            return i;
        *at = (int)i;
        return -1;
    }
    for (uint32_t i = 0; i < n->datamap; i++)
        if (kq_match(t, ent_key(n, i, W), q, kind))
            return i;
    return -1;
}

/* The engine of collision-node updates (trie.c).  Kind and width are read
 * from t.  An update that changes node b first asks whether it can happen
 * in place (owned b); if not, it allocates a block of the size asked for,
 * moves or copies b there, and changes the copy in place.  Nothing here
 * allocates; removes give room back to the pool. */

/* Whether an insert into owned node b can happen in place: room for one
 * more entry in its layout (the layout for n + 1 keys is b's). */
INTERNAL bool champ__coll_fits(const mtype *t, const node *b);
/* The block an insert into b moves b to: its layout for n + 1 keys, room
 * for the new entry, and growth room unless `exact`. */
INTERNAL size_t champ__coll_grow_bytes(const mtype *t, const node *b, bool exact);
/* dst (a new block of `bytes`, from champ__coll_grow_bytes) = b laid out
 * for n + 1 keys (ordered, or hashed with an index built).  With share, b
 * stays and the entries copied gain references. */
INTERNAL void champ__coll_move(const mtype *t, node *dst, size_t bytes, const node *b,
                               bool share);
/* Inserts entry e (a key not in b) into b, which has room for it (fits,
 * or a block from champ__coll_move).  at: where the key goes in ordered b,
 * if the caller knows (coll_find), else -1. */
INTERNAL void champ__coll_put(const mtype *t, node *b, entry e, int at);
/* The bytes of an exact copy of b (its entries and index). */
static ALWAYS_INLINE size_t coll_copy_bytes(const node *b, unsigned W) {
    return node_coll_size(b->datamap, W) + coll_index_bytes(b);
}
/* dst = an exact copy of b (always sharing: b stays): its entries gain a
 * reference, but entry `skip` (>= 0: about to be removed from dst). */
INTERNAL void champ__coll_copy(const mtype *t, node *dst, const node *b, int skip);
/* Removes entry i from b (owned, more than 3 entries) in place: may
 * change its layout (a hashed node of COLL_HASH_MIN keys is ordered again,
 * a sparse index halves) and gives spare room back to the pool. */
INTERNAL void champ__coll_del(const mtype *t, node *b, uint32_t i);
/* Puts the entries of list node n in key order (an in-place heap sort:
 * O(n log n) comparisons, no memory) and marks it COLL_ORDERED.  Maps with
 * kind_ordered only; n is not hashed. */
INTERNAL void champ__coll_order(const mtype *t, node *n);
/* For builders of whole nodes (bulk builds, set algebra): the block for a
 * collision node of n entries in the map's layout, and the finish of a
 * node of that block whose n entries were put (node_init(b, n, 0)): its
 * layout (order, or index) and room.  sorted: the entries are in key order
 * already (no sort where the layout is ordered). */
INTERNAL size_t champ__coll_build_bytes(const mtype *t, uint32_t n);
INTERNAL void champ__coll_finish(const mtype *t, node *b, size_t bytes, bool sorted);

/* ------------------------------------------------------------------ */
/* Node builders.  `share` means the source node stays alive (it is    */
/* shared with another map): everything copied out of it gains a       */
/* reference.  Without it, contents move and the source is freed.      */
/* ------------------------------------------------------------------ */

/* Copies `bytes` (a multiple of 8) between two distinct blocks.  A plain
 * word loop: node bodies are short (most under 100 bytes), where a call to
 * memcpy costs more than the copy; the empty asm keeps compilers from
 * turning the loop back into that call. */
static ALWAYS_INLINE void wcopy(void *dst, const void *src, size_t bytes) {
    char *d = dst;
    const char *s = src;
    size_t i = 0;
    for (; i + 16 <= bytes; i += 16) {
        char tmp[16];
        memcpy(tmp, s + i, 16);
        memcpy(d + i, tmp, 16);
        __asm__("" : "+r"(i));
    }
    if (i < bytes) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        memcpy(d + i, &w, 8);
    }
}

/* After copying node `dst` (ne entries, nk children) out of a node that
 * stays alive: every entry and child it duplicated gains a reference.
 * Entries [se, se + sn) and child sk (or -1) are new, not duplicated. */
INTERNAL void champ__node_share_refs(const mtype *t, node *dst, uint32_t ne,
                                     uint32_t nk, uint32_t se, uint32_t sn,
                                     int sk);

static ALWAYS_INLINE void node_init(node *n, uint32_t dm, uint32_t nm) {
    n->rc = 1;
    n->datamap = dm;
    n->nodemap = nm;
    n->aux = 0;
}

/* dst = src with slot `bit` rewritten to hold the `ns` entries at `nes`
 * (0: empty, 1: an entry, 2: a pair, already in trie order) or, when c is
 * not NULL, child c.  The slot's old contents are not copied (the caller
 * moved or dropped them).  With `share`, everything else copied from src
 * gains a reference.  Every change of one slot is this one builder; the
 * call sites pass constants, so each inlined copy is specialised. */
static ALWAYS_INLINE void node_bitmap_set_slot(const mtype *t, node *dst,
                                               const node *src, uint32_t bit,
                                               const entry *nes, uint32_t ns,
                                               node *c, bool share, unsigned W) {
    uint32_t dm = src->datamap, nm = src->nodemap;
    uint32_t ne = maps_nent(dm, nm), nk = maps_nkid(dm, nm);
    uint32_t ei = maps_eidx(dm, nm, bit), ki = maps_kidx(dm, nm, bit);
    uint32_t oe = (dm & bit) ? ((nm & bit) ? 2u : 1u) : 0u;
    uint32_t ok = (nm & ~dm & bit) ? 1u : 0u;
    uint32_t nc = c ? 1u : 0u;
    uint32_t ndm = dm & ~bit, nnm = nm & ~bit;
    if (c)
        nnm |= bit;
    else if (ns)
        ndm |= bit, nnm |= ns == 2 ? bit : 0u;
    node_init(dst, ndm, nnm);
    uint32_t dne = ne - oe + ns;
    char *de = node_ebase(dst);
    const char *se = node_ebase(src);
    node **dk = (node **)(void *)(de + (size_t)W * dne);
    node *const *sk = (node *const *)(const void *)(se + (size_t)W * ne);
    wcopy(de, se, (size_t)W * ei);
    for (uint32_t j = 0; j < ns; j++)
        ent_put(dst, ei + j, nes[j], W);
    wcopy(de + (size_t)W * (ei + ns), se + (size_t)W * (ei + oe),
          (size_t)W * (ne - ei - oe) + KID_BYTES * ki);
    if (c)
        dk[ki] = c;
    wcopy(dk + ki + nc, sk + ki + ok, KID_BYTES * (nk - ki - ok));
    if (share)
        champ__node_share_refs(t, dst, dne, nk - ok + nc, ei, ns, c ? (int)ki : -1);
}

/* dst = src with entry ne inserted at index wi and the bitmaps dm/nm (the
 * slot gained an entry: empty -> entry, or entry -> pair). */
static ALWAYS_INLINE void node_bitmap_insert_at(node *dst, const node *src,
                                                uint32_t wi, uint32_t dm,
                                                uint32_t nm, entry ne, unsigned W) {
    uint32_t n = node_nent(src), k = node_nkid(src);
    node_init(dst, dm, nm);
    char *de = node_ebase(dst);
    const char *se = node_ebase(src);
    wcopy(de, se, (size_t)W * wi);
    ent_put(dst, wi, ne, W);
    wcopy(de + (size_t)W * (wi + 1), se + (size_t)W * wi,
          (size_t)W * (n - wi) + KID_BYTES * k);
}

/* The bitmaps after entry i of slot `bit` is removed: a pair becomes a
 * single entry, a single entry an empty slot. */
static ALWAYS_INLINE void maps_drop_entry(uint32_t *dm, uint32_t *nm, uint32_t bit) {
    if (*nm & bit)
        *nm &= ~bit;
    else
        *dm &= ~bit;
}

/* dst = src without entry i (of slot `bit`). */
static ALWAYS_INLINE void node_bitmap_drop_entry(const mtype *t, node *dst,
                                                 const node *src, uint32_t i,
                                                 uint32_t bit, bool share, unsigned W) {
    uint32_t dm = src->datamap, nm = src->nodemap;
    uint32_t ne = maps_nent(dm, nm), nk = maps_nkid(dm, nm);
    maps_drop_entry(&dm, &nm, bit);
    node_init(dst, dm, nm);
    char *de = node_ebase(dst);
    const char *se = node_ebase(src);
    wcopy(de, se, (size_t)W * i);
    wcopy(de + (size_t)W * i, se + (size_t)W * (i + 1),
          (size_t)W * (ne - 1 - i) + KID_BYTES * nk);
    if (share)
        champ__node_share_refs(t, dst, ne - 1, nk, 0, 0, -1);
}

/* dst = a copy of src, sharing nothing (a light derive borrows). */
static ALWAYS_INLINE void node_bitmap_dup(node *dst, const node *src, unsigned W) {
    uint32_t ne = node_nent(src), nk = node_nkid(src);
    node_init(dst, src->datamap, src->nodemap);
    wcopy(node_ebase(dst), node_ebase(src), (size_t)W * ne + KID_BYTES * nk);
}

/* dst = a copy of src (always sharing: src stays). */
static ALWAYS_INLINE void node_bitmap_copy(const mtype *t, node *dst, const node *src,
                                           unsigned W) {
    node_bitmap_dup(dst, src, W);
    champ__node_share_refs(t, dst, node_nent(src), node_nkid(src), 0, 0, -1);
}

/* Whether the entry hashed ha comes first in a pair with the one hashed
 * hb: trie order, equal hashes in the order given. */
static ALWAYS_INLINE bool pair_first(uint64_t ha, uint64_t hb) {
    return ha == hb || hash_trie_before(ha, hb);
}

/* Puts two entries whose hashes are ha and hb into trie order at out[],
 * equal hashes in key order when the map has one (ent_first): the order
 * single-key updates keep, so equal contents give equal pairs.  (An
 * order by hashes alone was the set algebra's bug: a union of two maps
 * each holding one of two colliding byte keys in a slot paired them in
 * the inputs' order; collide.algebra_pairs.) */
static ALWAYS_INLINE void pair_order_keys(const mtype *t, entry *out, entry a, uint64_t ha,
                                          entry b, uint64_t hb, champ_key_kind kind) {
    bool swap = !ent_first(t, a.k, ha, b.k, hb, kind);
    out[swap] = a;
    out[!swap] = b;
}

/* c = the node at `level` holding three entries whose hashes agree on
 * every slice above it but not all on this one (or, at the collision
 * level, agree completely): three entries in three slots, or an entry
 * and a pair.  Its size is SZ_THREE(W). */
static ALWAYS_INLINE void node_three(const mtype *t, node *c, unsigned level,
                                     const entry *x, const uint64_t *h,
                                     champ_key_kind kind, unsigned W) {
    if (level == CHAMP_COLL_LEVEL) {
        entry y[3] = {x[0], x[1], x[2]};
        bool ord = kind_ordered(t, kind);
        if (ord) /* three keys in key order */
            for (int i = 1; i < 3; i++)
                for (int j = i; j > 0 && key_cmp(t, y[j - 1].k, y[j].k, kind) > 0; j--) {
                    entry e = y[j];
                    y[j] = y[j - 1];
                    y[j - 1] = e;
                }
        node_init(c, 3, ord ? COLL_ORDERED : 0u);
        for (uint32_t i = 0; i < 3; i++)
            ent_put(c, i, y[i], W);
        return;
    }
    /* Sorted by (slot, pair order) with three compare-exchanges; a tie in
     * ent_first both ways (equal hashes, unordered keys) keeps the inputs'
     * order, as pairs keep it everywhere. */
    entry y[3] = {x[0], x[1], x[2]};
    uint64_t hy[3] = {h[0], h[1], h[2]};
    uint32_t s[3] = {slice(h[0], level), slice(h[1], level), slice(h[2], level)};
    static const int cx[3][2] = {{0, 1}, {1, 2}, {0, 1}};
    for (int r = 0; r < 3; r++) {
        int a = cx[r][0], b = cx[r][1];
        if (s[a] < s[b] ||
            (s[a] == s[b] && ent_first(t, y[a].k, hy[a], y[b].k, hy[b], kind)))
            continue;
        entry e = y[a];
        y[a] = y[b];
        y[b] = e;
        uint64_t hh = hy[a];
        hy[a] = hy[b];
        hy[b] = hh;
        uint32_t ss = s[a];
        s[a] = s[b];
        s[b] = ss;
    }
    CHAMP_ASSERT(s[0] != s[2]); /* not all three in one slot */
    uint32_t dm = (1u << s[0]) | (1u << s[1]) | (1u << s[2]);
    uint32_t nm = (s[0] == s[1] ? 1u << s[0] : 0u) | (s[1] == s[2] ? 1u << s[1] : 0u);
    node_init(c, dm, nm);
    for (uint32_t i = 0; i < 3; i++)
        ent_put(c, i, y[i], W);
}

/* Drops one reference to n (at `level`); frees it and, iteratively, every
 * node and entry that thereby loses its last reference. */
INTERNAL void champ__node_drop(const mtype *t, node *n, unsigned level);
/* Gives up map m's reference to its old root r (m has a new root, or
 * none): a pinned handle (map.h) holds no reference; it unpins, and keeps
 * its type as a counted handle does. */
static inline void map_root_drop(champ_map *m, node *r) {
    if (UNLIKELY(map_pinned(m)))
        champ__pin_count(m, false);
    else
        champ__node_drop(m->t, r, 0);
}

/* ------------------------------------------------------------------ */
/* Lookup from any node                                                */
/* ------------------------------------------------------------------ */

/* The entry of q (its key word; the value follows for maps) in the
 * subtree at n (at `level`), or NULL when q is absent.  A loop of at most
 * 14 steps, at most two key comparisons per bitmap node, then coll_find
 * in a collision node; full nodes (32 children) are indexed by the hash
 * slice without waiting for the bitmaps. */
static ALWAYS_INLINE const uint64_t *node_find(const mtype *t, const node *n,
                                               unsigned level, const kq *q,
                                               champ_key_kind kind, unsigned W) {
    uint64_t h = q->h >> (CHAMP_BITS * level);
    if (UNLIKELY(!n))
        return NULL;
    for (;; level++) {
        if (kind != CHAMP_KEY_U64 && UNLIKELY(level == CHAMP_COLL_LEVEL)) {
            int at;
            int64_t i = coll_find(t, n, q, &at, kind, W);
            return i >= 0 ? ent_at(n, (uint32_t)i, W) : NULL;
        }
        if (node_full(n)) {
            n = ((node *const *)(const void *)node_ebase(n))[h & 31];
            h >>= CHAMP_BITS;
            continue;
        }
        uint32_t bit = 1u << (h & 31);
        uint32_t dm = n->datamap, nm = n->nodemap;
        if (dm & bit) {
            const uint64_t *e = ent_at(n, maps_eidx(dm, nm, bit), W);
            if (kq_match(t, e[0], q, kind))
                return e;
            e += W / 8u; /* the second entry of a pair */
            if ((nm & bit) && kq_match(t, e[0], q, kind))
                return e;
            return NULL;
        }
        if (!(nm & bit))
            return NULL;
        n = ((node *const *)(const void *)(node_ebase(n) + (size_t)W * maps_nent(dm, nm)))
            [maps_kidx(dm, nm, bit)];
        h >>= CHAMP_BITS;
    }
}

/* ------------------------------------------------------------------ */
/* Subtree walker                                                      */
/* ------------------------------------------------------------------ */

/* Calls fn(ctx, entry) for every entry of the subtree at n (at `level`),
 * in trie order, until fn returns nonzero (returned).  Iterative: a fixed
 * stack of at most CHAMP_MAX_PATH levels. */
typedef int (*ent_visit_fn)(void *ctx, entry e);
INTERNAL int champ__walk(const node *n, unsigned level, unsigned W, ent_visit_fn fn,
                         void *ctx);
/* Entries in the subtree at n (at `level`). */
INTERNAL size_t champ__count(const node *n, unsigned level, unsigned W);

/* ------------------------------------------------------------------ */
/* Building nodes from slots, and canonical results                    */
/* ------------------------------------------------------------------ */

/* A subtree as an operation that builds tries returns it: empty, one
 * entry, two entries (a pair, in trie order), or a node whose subtree
 * holds three or more.  Whoever places it in a parent's slot puts it there
 * in that form: this is the pull-up that keeps every result canonical
 * (a subtree of two is a pair in the nearest ancestor that holds anything
 * else, of one an entry) without a second pass. */
typedef struct sub {
    uint32_t n;    /* entries when n <= 2; SUB_NODE for a node */
    entry e[2];
    node *kid;
} sub;
#define SUB_NODE 3u

/* One slot of a node being built: s is the slot (0..31), and the slot
 * holds what sub holds (a node or 1 or 2 entries; never empty). */
typedef struct slotv {
    uint32_t s;
    sub v;
} slotv;

/* Bytes of the bitmap node holding these slots. */
static inline size_t slots_size(const slotv *sl, uint32_t n, unsigned W) {
    uint32_t ne = 0, nk = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (sl[i].v.n == SUB_NODE)
            nk++;
        else
            ne += sl[i].v.n;
    }
    return node_bitmap_size(ne, nk, W);
}

/* dst = the bitmap node holding these slots (in increasing slot order).
 * Children are linked as given (their references move into dst). */
static inline void node_build(node *dst, const slotv *sl, uint32_t n, unsigned W) {
    uint32_t dm = 0, nm = 0, ne = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t bit = 1u << sl[i].s;
        if (sl[i].v.n == SUB_NODE) {
            nm |= bit;
        } else {
            dm |= bit;
            if (sl[i].v.n == 2)
                nm |= bit;
            ne += sl[i].v.n;
        }
    }
    node_init(dst, dm, nm);
    uint32_t ei = 0, ki = 0;
    node **kids = (node **)(void *)(node_ebase(dst) + (size_t)W * ne);
    for (uint32_t i = 0; i < n; i++) {
        if (sl[i].v.n == SUB_NODE) {
            kids[ki++] = sl[i].v.kid;
        } else {
            for (uint32_t j = 0; j < sl[i].v.n; j++)
                ent_put(dst, ei++, sl[i].v.e[j], W);
        }
    }
}

/* The subtree a node of these slots stands for, in canonical form: a node
 * when it would hold a child or three entries or more, else its one or two
 * entries pulled up (no block is needed then). */
static inline bool slots_need_node(const slotv *sl, uint32_t n) {
    uint32_t ne = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (sl[i].v.n == SUB_NODE)
            return true;
        ne += sl[i].v.n;
    }
    return ne >= 3;
}

#endif /* CHAMP_TRIE_H */

/*
 * many.c - batched lookups: many independent lookups walked in stages.
 *
 * One lookup in a big trie is a chain of dependent loads: each level's
 * node address comes from the level above, so a lookup waits for one cache
 * miss per level.  A batch of lookups need not wait for each chain in
 * turn.  The batch is cut into groups of GROUP lookups, and a group moves
 * in stages, each a loop over its unfinished lookups that reads what the
 * stage before prefetched and prefetches what the next one reads:
 *
 *   stage 0   hash each key and walk the cached top levels (HOT_LEVELS);
 *             prefetch the node each stops at
 *   stage A   read each node's header; prefetch the slot the hash selects
 *             (its entry or pair, or its child pointer)
 *   stage B   read each slot: an entry ends the lookup; a child pointer
 *             gives the next node, prefetched; back to stage A
 *
 * Example: 1M u64 keys.  The top three levels are full nodes (1 + 32 +
 * 1,024 of them, 280 KB) and stay in cache; below them are 32,768 nodes of
 * about 30 entries (13 MB).  Stage 0 leaves each of the group's 32 lookups
 * at one of those and prefetches its header; stage A finds the entry's
 * offset in it from the bitmaps and prefetches that line; stage B compares
 * the key.  So the group waits about twice, not each of its keys twice.
 * Two things keep the stages short: a full node's child pointer is
 * prefetched with its header (the levels where nodes are full are known
 * from the map's size, below them a guess would be a wasted line), and
 * stage A picks the slot's offset (entry, pair or child: a coin toss per
 * key) with selects rather than branches.  A trie small enough
 * to stay in cache has no misses to overlap; there the batch is plain
 * lookups one after another (champ__many_direct).
 */
#include "internal.h"

/* Lookups in flight (32: 64 made no difference; 16 and 8 were slower) */
#define GROUP 32

size_t champ__many_direct = 131072;

/* Full nodes at levels above this one are walked straight through when a
 * group starts: the root and the 32 + 1,024 nodes below it (about 280 KB
 * when all are full) stay in cache while a batch runs, and the group's
 * walks through them overlap (they are independent iterations of one
 * loop), so a stage per level there would be bookkeeping with no miss to
 * hide. */
#define HOT_LEVELS 3u

/* What a lookup of the group reads in stage B (at[j]): a child pointer,
 * an entry, a pair. */
enum { LK_KID, LK_ENT, LK_PAIR };


/* Prefetches node n's header, and if n is at a level where nodes are
 * full, the line of the child pointer that the hash h (shifted to n's
 * level) selects. */
static ALWAYS_INLINE void pf_node(const node *n, uint64_t h, bool full) {
    __builtin_prefetch(n);
    if (full)
        __builtin_prefetch((const char *)n + NODE_HDR + KID_BYTES * (h & 31));
}

/* The query of key i (kinds: u64 keys[], byte keys ptrs[]/lens[], generic
 * ptrs[]). */
static ALWAYS_INLINE kq many_kq(const champ_map *m, const uint64_t *keys,
                                const void *const *ptrs, const size_t *lens, size_t i,
                                champ_key_kind kind) {
    kq q;
    q.p = NULL;
    q.len = 0;
    switch (kind) {
    case CHAMP_KEY_U64:
        q.u = keys[i];
        q.h = hash_u64(keys[i], m->t->seed);
        break;
    case CHAMP_KEY_BYTES:
        q.u = 0;
        q.p = ptrs[i];
        q.len = lens[i];
        q.h = type_hash_bytes(m->t, ptrs[i], lens[i]); /* the map's bytes_hash, if any */
        break;
    default:
        q.u = (uint64_t)(uintptr_t)ptrs[i];
        q.h = m->t->hash(ptrs[i], m->t->ctx);
        break;
    }
    return q;
}

/* Writes the result of key i (e: its entry, or NULL). */
static ALWAYS_INLINE void many_out(const uint64_t *e, size_t i, void **vals, bool *found,
                                   size_t *nfound, unsigned W) {
    if (vals)
        vals[i] = e && W == ENT_MAP ? (void *)(uintptr_t)e[1] : NULL;
    if (found)
        found[i] = e != NULL;
    *nfound += e != NULL;
}

static ALWAYS_INLINE size_t many_walk(const champ_map *m, const uint64_t *keys,
                                      const void *const *ptrs, const size_t *lens, size_t n,
                                      void **vals, bool *found, champ_key_kind kind,
                                      unsigned W) {
    const mtype *t = m->t;
    size_t nfound = 0;
    if (!m->root || m->size <= champ__many_direct) {
        /* a trie this small stays in cache: there is no miss to overlap,
         * and one lookup after the other is faster */
        for (size_t i = 0; i < n; i++) {
            kq q = many_kq(m, keys, ptrs, lens, i, kind);
            const uint64_t *e = m->root ? node_find(t, m->root, 0, &q, kind, W) : NULL;
            many_out(e, i, vals, found, &nfound, W);
        }
        return nfound;
    }
    /* fl: the levels whose nodes are full, most likely: a node whose
     * subtree holds 256 entries (8 a slot on average) has 32 children */
    unsigned fl = 0;
    for (size_t s = m->size; s >= 256 && fl < CHAMP_COLL_LEVEL; s >>= CHAMP_BITS)
        fl++;
    for (size_t base = 0; base < n; base += GROUP) {
        size_t cnt = n - base < GROUP ? n - base : GROUP;
        const char *at[GROUP];
        uint64_t h[GROUP];
        kq q[GROUP];
        unsigned level[GROUP], what[GROUP];
        unsigned char live[GROUP];
        size_t nlive = 0;
        /* stage 0: hash, and walk the cached levels */
        for (size_t j = 0; j < cnt; j++) {
            q[j] = many_kq(m, keys, ptrs, lens, base + j, kind);
            uint64_t hj = q[j].h;
            const node *nd = m->root;
            unsigned l = 0;
            while (l < HOT_LEVELS && node_full(nd)) {
                nd = ((node *const *)(const void *)node_ebase(nd))[hj & 31];
                hj >>= CHAMP_BITS;
                l++;
            }
            pf_node(nd, hj, l < fl);
            at[j] = (const char *)nd;
            h[j] = hj;
            level[j] = l;
            live[nlive++] = (unsigned char)j;
        }
        /* stages A and B, one level each time, while any lookup goes on */
        while (nlive) {
            size_t keep = 0;
            for (size_t x = 0; x < nlive; x++) {
                size_t j = live[x];
                const node *nd = (const node *)(const void *)at[j];
                if (kind != CHAMP_KEY_U64 && UNLIKELY(level[j] == CHAMP_COLL_LEVEL)) {
                    int where;
                    int64_t k = coll_find(t, nd, &q[j], &where, kind, W);
                    many_out(k >= 0 ? ent_at(nd, (uint32_t)k, W) : NULL, base + j, vals, found,
                             &nfound, W);
                    continue;
                }
                const char *a;
                unsigned w;
                if (node_full(nd)) {
                    a = node_ebase(nd) + KID_BYTES * (h[j] & 31);
                    w = LK_KID;
                } else {
                    uint32_t bit = 1u << (h[j] & 31);
                    uint32_t dm = nd->datamap, nm = nd->nodemap;
                    if (!((dm | nm) & bit)) {
                        many_out(NULL, base + j, vals, found, &nfound, W);
                        continue;
                    }
                    /* entry, pair or child: offsets picked without a
                     * branch (which of the three is a coin toss) */
                    bool ent = (dm & bit) != 0;
                    size_t eoff = (size_t)W * maps_eidx(dm, nm, bit);
                    size_t koff = (size_t)W * maps_nent(dm, nm) +
                                  KID_BYTES * maps_kidx(dm, nm, bit);
                    a = node_ebase(nd) + (ent ? eoff : koff);
                    w = ent ? LK_ENT + ((nm & bit) != 0) : LK_KID;
                    __builtin_prefetch(a);
                    __builtin_prefetch(a + (w == LK_PAIR ? W : 0));
                }
                at[j] = a;
                what[j] = w;
                live[keep++] = (unsigned char)j;
            }
            nlive = keep;
            keep = 0;
            for (size_t x = 0; x < nlive; x++) {
                size_t j = live[x];
                if (what[j] == LK_KID) {
                    const node *nd = *(node *const *)(const void *)at[j];
                    h[j] >>= CHAMP_BITS;
                    level[j]++;
                    pf_node(nd, h[j], level[j] < fl);
                    at[j] = (const char *)nd;
                    live[keep++] = (unsigned char)j;
                    continue;
                }
                const uint64_t *e = (const uint64_t *)(const void *)at[j];
                if (!kq_match(t, e[0], &q[j], kind)) {
                    e += W / 8u;
                    if (what[j] != LK_PAIR || !kq_match(t, e[0], &q[j], kind))
                        e = NULL;
                }
                many_out(e, base + j, vals, found, &nfound, W);
            }
            nlive = keep;
        }
    }
    return nfound;
}

/* A batch that finds nothing (bad input, or m freed by a callback):
 * every found[i] false and every vals[i] NULL, as for absent keys. */
static size_t many_none(size_t n, void **vals, bool *found) {
    for (size_t i = 0; found && i < n; i++)
        found[i] = false;
    for (size_t i = 0; vals && i < n; i++)
        vals[i] = NULL;
    return 0;
}

/* many_walk for m's entry width. */
static ALWAYS_INLINE size_t many_any(const champ_map *m, const uint64_t *keys,
                                     const void *const *ptrs, const size_t *lens, size_t n,
                                     void **vals, bool *found, champ_key_kind kind) {
    if (m->t->width == ENT_MAP)
        return many_walk(m, keys, ptrs, lens, n, vals, found, kind, ENT_MAP);
    return many_walk(m, keys, ptrs, lens, n, vals, found, kind, ENT_SET);
}

/* many_any when hashing runs user code: framed as a read of m, so the
 * callback contract holds (a free of m from a callback happens here, after
 * the walk, and the batch then finds nothing). */
static ALWAYS_INLINE size_t many_framed(const champ_map *m, const void *const *ptrs,
                                        const size_t *lens, size_t n, void **vals, bool *found,
                                        champ_key_kind kind) {
    opframe fr;
    op_push(&fr, m, OPF_READ);
    size_t r = many_any(m, NULL, ptrs, lens, n, vals, found, kind);
    if (UNLIKELY(op_pop(&fr))) {
        champ_free((champ_map *)(uintptr_t)m);
        return many_none(n, vals, found);
    }
    return r;
}

size_t champ_get_many_u64(const champ_map *m, const uint64_t *keys, size_t n, void **vals,
                          bool *found) {
    if (!m || (!keys && n) || m->t->kind != CHAMP_KEY_U64)
        return many_none(n, vals, found);
    return many_any(m, keys, NULL, NULL, n, vals, found, CHAMP_KEY_U64);
}

size_t champ_get_many_bytes(const champ_map *m, const void *const *keys, const size_t *lens,
                            size_t n, void **vals, bool *found) {
    bool bad = !m || (n && (!keys || !lens)) || m->t->kind != CHAMP_KEY_BYTES;
    for (size_t i = 0; i < n && !bad; i++)
        bad = (!keys[i] && lens[i]) || lens[i] > UINT32_MAX;
    if (bad)
        return many_none(n, vals, found);
    if (UNLIKELY(m->t->bytes_hash != NULL)) /* user code */
        return many_framed(m, keys, lens, n, vals, found, CHAMP_KEY_BYTES);
    return many_any(m, NULL, keys, lens, n, vals, found, CHAMP_KEY_BYTES);
}

size_t champ_get_many(const champ_map *m, const void *const *keys, size_t n, void **vals,
                      bool *found) {
    if (!m || (!keys && n) || m->t->kind != CHAMP_KEY_GENERIC)
        return many_none(n, vals, found);
    return many_framed(m, keys, NULL, n, vals, found, CHAMP_KEY_GENERIC);
}

size_t champ_contains_many_u64(const champ_map *m, const uint64_t *keys, size_t n,
                               bool *found) {
    return champ_get_many_u64(m, keys, n, NULL, found);
}

size_t champ_contains_many_bytes(const champ_map *m, const void *const *keys,
                                 const size_t *lens, size_t n, bool *found) {
    return champ_get_many_bytes(m, keys, lens, n, NULL, found);
}

size_t champ_contains_many(const champ_map *m, const void *const *keys, size_t n,
                           bool *found) {
    return champ_get_many(m, keys, n, NULL, found);
}

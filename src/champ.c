/*
 * champ.c - the trie: lookup, update, persistence.
 *
 * ------------------------------------------------------------------------
 * How a CHAMP trie works
 * ------------------------------------------------------------------------
 *
 * Every key has a 64-bit hash.  The trie reads it five bits at a time, from
 * the lowest bits up: level 0 (the root) uses bits 0-4, level 1 bits 5-9,
 * ..., level 12 bits 60-63 (only four are left).  Take a key whose hash is
 *
 *     h = 0x...0000_0C45  =  ...  00011  00010  00101   (binary, 5-bit groups)
 *                                 lvl 2  lvl 1  lvl 0
 *
 * At the root it belongs in slot 5 (00101), one level down in slot 2, then
 * slot 3.  A node has 32 slots, but stores only the occupied ones, packed,
 * and two bitmaps say which slots hold what:
 *
 *     datamap nodemap  slot s holds
 *        1       0     one entry inline                      (key, value)
 *        1       1     a pair: two entries inline            (key, value) x 2
 *        0       1     a child node                          (pointer)
 *
 *     +----+---------+---------+-----+---------+---------+---------+---------+
 *     | rc | datamap | nodemap | aux | entry 0 | pair: a | pair: b | child 0 | ...
 *     +----+---------+---------+-----+---------+---------+---------+---------+
 *      4 B    4 B       4 B     4 B    16 B      16 B      16 B      8 B
 *
 * Entries come first, in slot order (a pair takes two), children after them
 * (the CHAMP layout of Steindorfer and Vinju, OOPSLA 2015, plus inline
 * pairs), so iteration walks contiguous entries.  Positions are popcounts:
 *
 *     entry index  = popcount(datamap & below) + popcount(datamap & nodemap & below)
 *     child index  = popcount(nodemap & ~datamap & below)      below = bit(s) - 1
 *     child array  = &e[popcount(datamap) + popcount(datamap & nodemap)]
 *
 * Why pairs.  In plain CHAMP two keys that share a slot move into a child
 * node of their own: 16 header bytes and an 8-byte pointer for two entries.
 * In a random trie a slot that is not empty or a single entry holds exactly
 * two keys most of the time, so those tiny nodes are most of the nodes: at
 * 1M u64 keys, 197K of 308K.  Keeping the two entries in the parent's slot
 * instead takes the trie from 23.4 to 18.6 bytes per entry, one level off
 * most lookups, and a third of the nodes an iteration visits.  A child node
 * now always holds three keys or more.
 *
 * Every node is allocated from the pool (pool.c), which keeps a free list
 * per size, at its size (16 + 16 * entries + 8 * children bytes) plus some
 * spare room, recorded in aux: a node that an insert makes grow takes one
 * spare entry along (about 1/8 of a big node), and a remove from a node the
 * map owns shrinks it where it is; later inserts use the room in place.
 *
 * Lookup walks down: if bit(s) is in datamap the candidates are that entry
 * (and the next, if the slot is a pair); if it is only in nodemap, descend;
 * otherwise the key is absent.  At most two key comparisons, no probing, a
 * loop of at most 13 steps.
 *
 * Insert puts the entry inline in the slot if it is free; if the slot holds
 * one other key, the two become a pair in the slot.  If the slot holds a
 * pair, the three keys move into a child node one level down (or a chain of
 * single-child nodes, while their 5-bit groups keep agreeing).  When all 64
 * bits of three or more keys agree, they go into a collision node at level
 * 13: an array of entries (datamap holds the count), in key order when the
 * keys have one (byte keys; generic keys with compare) and searched by
 * bisection, or, past 128 byte keys, found through a hash index at the end
 * of the block (trie.h, "Collision nodes").  u64 keys never get there:
 * their hash is a bijection, so distinct keys have distinct hashes.
 *
 * Canonical form.  Remove restores the one shape a set of keys can have: a
 * subtree of exactly two entries is a pair in its parent's slot, of one
 * entry an entry in the slot; so a child node (and a collision node) holds
 * at least three.  A pair keeps its entries in trie order (the order of
 * their first differing 5-bit group; equal hashes in key order, when the
 * keys have one, else in insertion order).
 * When a removal leaves a subtree with two entries, they are pulled up into
 * the nearest ancestor that holds anything else, as a pair in place of the
 * child.  Equal contents therefore mean equal shapes, which later makes
 * equality and diff cheap.
 *
 * ------------------------------------------------------------------------
 * Persistence: reference counts, and updating in place when we may
 * ------------------------------------------------------------------------
 *
 * Each node counts the references to it (from parents and map handles).
 * champ_copy() makes a new handle on the same root: O(1).  An update walks
 * the path to its key.  Nodes on the path with rc == 1 above any shared node
 * belong to this map alone: they are changed in place (a value replaced, a
 * child pointer swapped).  From the first node with rc > 1 down, the path is
 * shared with another map and is copied instead; copies take a reference on
 * every child and entry they duplicate, and the first shared node loses the
 * reference our map had.  Releasing a map drops its root's reference; a node
 * whose count reaches zero drops its children's, iteratively, so versions
 * can be released in any order and exactly the unused nodes are freed.
 *
 * Refcounts (not Clojure-style owner tokens) because a count of one answers
 * both questions an update asks: "may I write this node?" and "is it
 * garbage once I replace it?".  Owner tokens answer only the first, and
 * freeing old versions would then need a collector.
 *
 * ------------------------------------------------------------------------
 * Failure atomicity: descend, plan, allocate, commit
 * ------------------------------------------------------------------------
 *
 * Every update first descends without changing anything (calling the
 * user's hash and equal there, before any change), records the path, and
 * works out exactly which blocks the new version needs: the bottom node's
 * new shape, a chain of new nodes for a split, copies of shared ancestors,
 * a key blob.  It allocates all of them; if one fails, it gives the others
 * back and returns CHAMP_ENOMEM with the map untouched.  Only then does it
 * commit, bottom-up, with nothing left that can fail.  Release callbacks run
 * after the commit, when the map is consistent again.
 *
 * ------------------------------------------------------------------------
 * Who does what
 * ------------------------------------------------------------------------
 *
 * The engine is written once for every key kind and both entry widths (W:
 * 16-byte map entries, 8-byte set entries); kind and W are constants of
 * each inlined copy.  Its shared pieces are in trie.h / trie.c:
 *   node_find                        lookup from any node and level
 *   node_bitmap_set_slot             any change of one slot (entry, pair,
 *                                    child, empty) into a new block
 *   node_bitmap_{insert_at, drop_entry, copy}, node_three
 *                                    the other builders
 *   coll_find, champ__coll_*         collision nodes: lookup, and every
 *                                    change (fits, grow, move, put, copy,
 *                                    del; order, build, finish)
 *   node_build, sub, slotv           a node from a list of slots; results
 *                                    that pull small subtrees up (algebra)
 *   champ__node_drop                 drop a reference, free iteratively
 *   champ__walk                      visit every entry of a subtree
 * This file: updates of one key.
 *   map_descend                      read-only walk recording the path
 *   map_set: set_replace_owned, set_grow_owned, set_pair_owned,
 *   set_coll_owned (the common cases on a path the map owns), set_general
 *   (plan + commit), set_light_body (a light derive's common case);
 *   set_u64_owned, a plain u64 map's common insert in one descent that
 *   keeps only the link to its node (the rest goes to map_set)
 *   map_remove: remove_shrink_owned, remove_collapse_owned, remove_coll
 *   (collision nodes, out of line), remove_general, remove_light_body
 * then map and type lifecycle and the public entry points, whose plain
 * path (a map of the kind, no callbacks) is one compare away.  Equality,
 * diff and set algebra are in algebra.c, bulk builds in build.c, iteration
 * in iter.c, stats / validate / dump in check.c, the pool in pool.c,
 * hashes in hash.c.
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* Updates: descend, plan, allocate, commit                            */
/* ------------------------------------------------------------------ */

typedef struct path {
    node *n[CHAMP_MAX_PATH];
    uint32_t bit[CHAMP_MAX_PATH];
    int depth; /* index of the bottom node                    */
    int fs;    /* first node with rc > 1 on the path, or -1   */
    int idx;   /* entry index in the bottom node, or -1       */
} path;

/* Where a descent ends: the key's entry (idx), an empty slot, a slot
 * with another key's entry (idx), a pair of two other keys (idx: its first
 * entry), a collision node without the key (idx: where the key goes in an
 * ordered one, -1 in others). */
enum { AT_MATCH, AT_EMPTY, AT_OTHER, AT_PAIR, AT_COLL };

/* Read-only walk to where q is or would be.  m->root must not be NULL. */
static ALWAYS_INLINE int map_descend(const champ_map *m, const kq *q, path *pa,
                                     champ_key_kind kind, unsigned W) {
    const mtype *t = m->t;
    node *n = m->root;
    uint64_t h = q->h;
    int fs = -1;
    for (int d = 0;; d++) {
        pa->n[d] = n;
        if (fs < 0 && rc_load(&n->rc) > 1)
            fs = d;
        pa->depth = d;
        if (kind != CHAMP_KEY_U64 && UNLIKELY(d == CHAMP_COLL_LEVEL)) {
            pa->fs = fs;
            int at;
            int64_t i = coll_find(t, n, q, &at, kind, W);
            pa->idx = i >= 0 ? (int)i : at;
            return i >= 0 ? AT_MATCH : AT_COLL;
        }
        uint32_t bit = 1u << (h & 31);
        pa->bit[d] = bit;
        if (node_full(n)) {
            n = ((node **)(void *)node_ebase(n))[h & 31];
            h >>= CHAMP_BITS;
            continue;
        }
        uint32_t dm = n->datamap, nm = n->nodemap;
        if (dm & bit) {
            uint32_t i = maps_eidx(dm, nm, bit);
            pa->fs = fs;
            pa->idx = (int)i;
            if (kq_match(t, ent_key(n, i, W), q, kind))
                return AT_MATCH;
            if (!(nm & bit))
                return AT_OTHER;
            if (kq_match(t, ent_key(n, i + 1, W), q, kind)) {
                pa->idx = (int)i + 1;
                return AT_MATCH;
            }
            return AT_PAIR;
        }
        if (!(nm & bit)) {
            pa->fs = fs;
            pa->idx = -1;
            return AT_EMPTY;
        }
        n = ((node **)(void *)(node_ebase(n) + (size_t)W * maps_nent(dm, nm)))
            [maps_kidx(dm, nm, bit)];
        h >>= CHAMP_BITS;
    }
}

#define PLAN_MAX (2 * CHAMP_MAX_PATH + 4)
typedef struct plan {
    int n;
    size_t size[PLAN_MAX];
    void *blk[PLAN_MAX];
} plan;

static ALWAYS_INLINE void plan_add(plan *pl, size_t size) {
    pl->size[pl->n++] = size;
}

/* Allocates every planned block, or none. */
static ALWAYS_INLINE bool plan_alloc(champ_pool *p, plan *pl) {
    for (int i = 0; i < pl->n; i++) {
        pl->blk[i] = pool_alloc(p, pl->size[i]);
        if (UNLIKELY(!pl->blk[i])) {
            while (i-- > 0)
                pool_free(p, pl->blk[i], pl->size[i]);
            return false;
        }
    }
    return true;
}

#if defined(CHAMP_DEBUG) && CHAMP_DEBUG >= 2
/* Validate after every update, but not inside a callback of another
 * operation (the pool census would meet that operation's map mid-update),
 * nor in a concurrent pool (validate is an "alone" call there: other
 * threads may be updating other maps of the pool). */
#define POST_UPDATE_CHECK(m)                                                \
    CHAMP_ASSERT(champ__ops != NULL || (m)->t->atomic ||                   \
                 champ_validate(m) == CHAMP_OK)
#else
#define POST_UPDATE_CHECK(m) ((void)0)
#endif

/* Plans the copies of shared ancestors above index `top`. */
static ALWAYS_INLINE void plan_ancestors(const path *pa, int top, plan *pl, unsigned W) {
    if (pa->fs < 0)
        return;
    for (int j = top - 1; j >= pa->fs; j--)
        plan_add(pl, node_size(pa->n[j], (unsigned)j, W));
}

/* Replaces the child of path[j] (j = top-1 ... 0) that led to path[j+1] by
 * `c`, copying the shared ancestors (blocks from pl starting at k) and
 * swapping the pointer in place in the first unique one. */
static ALWAYS_INLINE void commit_ancestors(champ_map *m, path *pa, int top, node *c,
                                           plan *pl, int k, bool share, unsigned W) {
    for (int j = top - 1; j >= 0; j--) {
        node *par = pa->n[j];
        uint32_t bit = pa->bit[j];
        if (pa->fs >= 0 && j >= pa->fs) {
            node *np = pl->blk[k++];
            node_bitmap_set_slot(m->t, np, par, bit, NULL, 0, c, share, W);
            c = np;
        } else {
            *node_kid_at(par, bit, W) = c;
            return;
        }
    }
    m->root = c;
}

/* On a path the map owns: node nb takes the place of path node j. */
static ALWAYS_INLINE void path_relink(champ_map *m, const path *pa, int j, node *nb,
                                      unsigned W) {
    if (j == 0)
        m->root = nb;
    else
        *node_kid_at(pa->n[j - 1], pa->bit[j - 1], W) = nb;
}

static ALWAYS_INLINE void prior_none(champ_prior *prior) {
    if (prior) {
        prior->found = false;
        prior->val = NULL;
        prior->key = NULL;
    }
}

/* The end of an insert: the map holds one more entry. */
static ALWAYS_INLINE champ_status inserted(champ_map *m, champ_prior *prior) {
    m->size++;
    m->stamp++;
    prior_none(prior);
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

/* Fills a fresh key blob with the key of q; returns the entry key word. */
static ALWAYS_INLINE uint64_t blob_make(blob *bl, const kq *q) {
    bl->hash = q->h;
    bl->rc = 1;
    bl->len = (uint32_t)q->len;
    if (q->len)
        memcpy(bl->bytes, q->p, q->len);
    bl->bytes[q->len] = '\0';
    return (uint64_t)(uintptr_t)bl;
}

/* The key blob a byte key's insert needs (other kinds: none).  false when
 * the pool is out of memory. */
static ALWAYS_INLINE bool blob_alloc(champ_pool *pool, const kq *q, blob **kb,
                                     champ_key_kind kind) {
    *kb = NULL;
    if (kind != CHAMP_KEY_BYTES)
        return true;
    *kb = pool_alloc(pool, blob_size(q->len));
    return *kb != NULL;
}

static ALWAYS_INLINE void blob_unalloc(champ_pool *pool, blob *kb, const kq *q) {
    if (kb)
        pool_free(pool, kb, blob_size(q->len));
}

/* The entry an insert stores: the key word (for byte keys, the new blob). */
static ALWAYS_INLINE entry new_entry(const kq *q, uint64_t newk, void *val, blob *kb,
                                     champ_key_kind kind) {
    entry e;
    e.k = kind == CHAMP_KEY_BYTES ? blob_make(kb, q) : newk;
    e.v = val;
    return e;
}

/*
 * Set (insert or replace).  The cases, each its own function:
 *   set_replace_owned  the key is there and the map owns the path: write
 *                      the value word (sets: nothing to do)
 *   set_grow_owned     a free slot takes the entry, or the slot's single
 *                      entry and the new one become a pair, in a node the
 *                      map owns: in place when the node has spare room,
 *                      else into a block one entry bigger
 *   set_pair_owned     the slot holds a pair that the new key splits one
 *                      level down, in a node the map owns: a three-entry
 *                      node below, the owned node trades the pair for the
 *                      child pointer (in place)
 *   set_coll_owned     a collision node the map owns takes the key: in
 *                      place while its room allows, else moved to a block
 *                      about 1/8 bigger
 *   set_general        everything else: an empty map, shared paths (path
 *                      copying), chains of single-child nodes; descend,
 *                      plan, allocate all, commit (a light derive's entry
 *                      added or replaced: set_light_body)
 * newk is the key word to store on insert (U64: the key; GENERIC: the key
 * pointer; BYTES: ignored, a blob is made from q).
 */
static ALWAYS_INLINE champ_status set_replace_owned(champ_map *m, node *b, int idx,
                                                    void *val, champ_prior *prior,
                                                    unsigned W) {
    void *old = NULL;
    if (W == ENT_MAP) {
        void **vp = ent_valp(b, (uint32_t)idx);
        old = *vp;
        *vp = val;
        m->stamp++;
    }
    if (prior) {
        prior->found = true;
        prior->val = old;
        prior->key = NULL;
    } else if (W == ENT_MAP && m->t->val_release) {
        m->t->val_release(old, m->t->ctx);
    }
    return CHAMP_OK;
}

static ALWAYS_INLINE champ_status set_grow_owned(champ_map *m, path *pa, int at,
                                                 const kq *q, uint64_t he,
                                                 uint64_t newk, void *val,
                                                 champ_prior *prior,
                                                 champ_key_kind kind, unsigned W) {
    champ_pool *pool = m->t->pool;
    int d = pa->depth;
    node *b = pa->n[d];
    uint32_t bit = pa->bit[d];
    size_t sz = node_size(b, (unsigned)d, W) + SZ_ENTRY(W);
    uint32_t ei = node_eidx(b, bit);
    /* where the new entry goes: before or after the slot's entry */
    uint32_t wi = ei + (at == AT_OTHER && ent_before_q(m->t, ent_key(b, ei, W), he, q, kind));
    blob *kb;
    if (UNLIKELY(!blob_alloc(pool, q, &kb, kind)))
        return CHAMP_ENOMEM;
    if (node_slack(b) >= W / 8u) {
        /* Room left by earlier removes or taken along: insert in place. */
        memmove(ent_at(b, wi + 1, W), ent_at(b, wi, W), sz - NODE_HDR - (size_t)W * (wi + 1));
        ent_put(b, wi, new_entry(q, newk, val, kb, kind), W);
        if (at == AT_EMPTY)
            b->datamap |= bit;
        else
            b->nodemap |= bit;
        b->aux -= W / 8u;
        return inserted(m, prior);
    }
    /* Growing: take spare room along, so the next inserts here are done in
     * place (arena pools only). */
    uint32_t grow = pool->fixed ? 0u : grow_units(sz);
    size_t got = sz;
    node *nb = grow ? pool_alloc_grow(pool, sz, sz + 8u * grow, grow_take_max(sz), &got)
                    : pool_alloc(pool, sz);
    if (UNLIKELY(!nb)) {
        blob_unalloc(pool, kb, q);
        return CHAMP_ENOMEM;
    }
    entry ne = new_entry(q, newk, val, kb, kind);
    if (at == AT_EMPTY)
        node_bitmap_insert_at(nb, b, wi, b->datamap | bit, b->nodemap, ne, W);
    else
        node_bitmap_insert_at(nb, b, wi, b->datamap, b->nodemap | bit, ne, W);
    nb->aux = (uint32_t)(got - sz) / 8u;
    path_relink(m, pa, d, nb, W);
    pool_free(pool, b, sz - SZ_ENTRY(W) + 8u * node_slack(b));
    return inserted(m, prior);
}

/* Whether a pair (hashes he, he1) at level l1 - 1 meeting a key in its
 * slot becomes a node of the three at level l1: not when l1 is past the
 * last bitmap level or all three go on to the same slot there (the general
 * path builds the chain).  hq: the key's hash shifted to level l1 - 1. */
static ALWAYS_INLINE bool pair_splits(uint64_t he, uint64_t he1, uint64_t hq, unsigned l1) {
    if (l1 > CHAMP_LAST_LEVEL)
        return false;
    uint32_t qs = (uint32_t)(hq >> CHAMP_BITS) & 31u;
    return !(slice(he, l1) == qs && slice(he1, l1) == qs);
}

/* set_pair_owned on node b at level d (slot bit), the pair's first entry
 * at ei: a node that grows into a new block is hung in through link when
 * there is one (set_u64_owned's descent), else through the path pa. */
static ALWAYS_INLINE champ_status set_pair_owned(champ_map *m, node *b, int d, uint32_t bit,
                                              uint32_t ei, node **link, const path *pa,
                                              const kq *q, uint64_t he, uint64_t he1,
                                              uint64_t newk, void *val, champ_prior *prior,
                                              champ_key_kind kind, unsigned W) {
    champ_pool *pool = m->t->pool;
    size_t sz = node_size(b, (unsigned)d, W) - SZ_PAIR_TO_KID(W);
    blob *kb;
    if (UNLIKELY(!blob_alloc(pool, q, &kb, kind)))
        return CHAMP_ENOMEM;
    /* The node shrinks where it is (the bytes join its spare room) unless
     * that makes the room bigger than the node, or the pool is a fixed
     * buffer: then it is copied exact. */
    uint32_t units = (uint32_t)(SZ_PAIR_TO_KID(W) / 8u);
    bool inplace = !pool->fixed && node_slack(b) + units <= slack_cap(sz);
    node *c = pool_alloc(pool, SZ_THREE(W));
    node *nb = c && !inplace ? pool_alloc(pool, sz) : NULL;
    if (UNLIKELY(!c || (!inplace && !nb))) {
        if (c)
            pool_free(pool, c, SZ_THREE(W));
        blob_unalloc(pool, kb, q);
        return CHAMP_ENOMEM;
    }
    entry x[3];
    uint64_t hx[3] = {he, he1, q->h};
    x[0] = ent_get(b, ei, W);
    x[1] = ent_get(b, ei + 1, W);
    x[2] = new_entry(q, newk, val, kb, kind);
    node_three(m->t, c, (unsigned)d + 1, x, hx, kind, W);
    if (inplace) {
        uint32_t ne = node_nent(b), nk = node_nkid(b);
        uint32_t ki = node_kidx(b, bit);
        char *base = node_ebase(b);
        /* entries after the pair and children before ki move down two
         * entries; children from ki on move down past the new pointer */
        memmove(base + (size_t)W * ei, base + (size_t)W * (ei + 2),
                (size_t)W * (ne - ei - 2) + KID_BYTES * ki);
        memmove(base + (size_t)W * (ne - 2) + KID_BYTES * (ki + 1),
                base + (size_t)W * ne + KID_BYTES * ki, KID_BYTES * (nk - ki));
        memcpy(base + (size_t)W * (ne - 2) + KID_BYTES * ki, &c, sizeof c);
        b->datamap &= ~bit;
        b->aux += units;
    } else {
        node_bitmap_set_slot(m->t, nb, b, bit, NULL, 0, c, false, W);
        if (link)
            *link = nb;
        else
            path_relink(m, pa, d, nb, W);
        pool_free(pool, b, node_block(b, (unsigned)d, W));
    }
    return inserted(m, prior);
}

/* An insert into a collision node the map owns (trie.h, "Collision
 * nodes"): in place while the block has room, else into a block with room
 * for about 1/8 more (none in a fixed buffer).  The bytes of a failed
 * grow (a big node, a tight pool) are asked for again without the room. */
static ALWAYS_INLINE champ_status set_coll_owned_body(champ_map *m, path *pa, const kq *q,
                                                      uint64_t newk, void *val,
                                                      champ_prior *prior,
                                                      champ_key_kind kind, unsigned W) {
    const mtype *t = m->t;
    champ_pool *pool = t->pool;
    const int d = CHAMP_COLL_LEVEL;
    node *b = pa->n[d];
    int at = coll_ordered(b) ? pa->idx : -1;
    blob *kb;
    if (UNLIKELY(b->datamap >= COLL_MAX_KEYS))
        return CHAMP_ENOMEM;
    if (UNLIKELY(!blob_alloc(pool, q, &kb, kind)))
        return CHAMP_ENOMEM;
    if (champ__coll_fits(t, b)) {
        champ__coll_put(t, b, new_entry(q, newk, val, kb, kind), at);
        return inserted(m, prior);
    }
    size_t bytes = champ__coll_grow_bytes(t, b, pool->fixed);
    node *nb = pool_alloc(pool, bytes);
    if (!nb && !pool->fixed) {
        bytes = champ__coll_grow_bytes(t, b, true);
        nb = pool_alloc(pool, bytes);
    }
    if (UNLIKELY(!nb)) {
        blob_unalloc(pool, kb, q);
        return CHAMP_ENOMEM;
    }
    champ__coll_move(t, nb, bytes, b, false);
    champ__coll_put(t, nb, new_entry(q, newk, val, kb, kind), at);
    path_relink(m, pa, d, nb, W);
    pool_free(pool, b, node_block(b, (unsigned)d, W));
    return inserted(m, prior);
}

/* Light derive (pin.c): the new nodes of the update that derived light
 * version m (the plan's blocks, a chain down the path of hash h, or of
 * the path bits when `pa_bits`) become light nodes, each naming its light
 * child.  u64 keys only: no collision level, no key blobs in the plan.
 * The plan's blocks first carry a mark no node has (light child 63), so
 * the walk down the chain tells a new node from a borrowed one by its
 * count alone (borrowed nodes are never light: a version is settled
 * before anything borrows from it). */
#define LIGHT_NEW (RC_LIGHT | RC_LKID_MASK << RC_LKID_SHIFT | 1u)
static void light_mark(champ_map *m, const plan *pl, const path *pa, uint64_t h,
                       bool pa_bits, unsigned W) {
    for (int i = 0; i < pl->n; i++)
        ((node *)pl->blk[i])->rc = LIGHT_NEW;
    node *n = pl->n ? m->root : NULL;
    for (unsigned level = 0; n && __atomic_load_n(&n->rc, __ATOMIC_RELAXED) == LIGHT_NEW;
         level++) {
        uint32_t bit = pa_bits && (int)level <= pa->depth ? pa->bit[level]
                                                         : 1u << slice(h, level);
        uint32_t code = 0;
        node *next = NULL;
        if ((n->nodemap & bit) && !(n->datamap & bit)) {
            uint32_t ki = maps_kidx(n->datamap, n->nodemap, bit);
            node *kid = node_kids(n, W)[ki];
            if (__atomic_load_n(&kid->rc, __ATOMIC_RELAXED) == LIGHT_NEW) {
                code = ki + 1;
                next = kid;
            }
        }
        n->rc = RC_LIGHT | code << RC_LKID_SHIFT | 1u;
        n = next;
    }
    /* a one-key change's new nodes are one chain: none is left marked */
#ifdef CHAMP_DEBUG
    for (int i = 0; i < pl->n; i++)
        CHAMP_ASSERT(((node *)pl->blk[i])->rc != LIGHT_NEW);
#endif
}

/* A light derive's common updates (u64 keys, a bitmap level): the bottom
 * node gains an entry (an empty slot filled, or its entry and the new one
 * become a pair), has its value replaced, or loses an entry without a
 * collapse; every ancestor is copied whole with one child pointer changed.
 * The same result as the general path with light_mark after it, without
 * the plan and the second walk: each copy is marked light as it is made,
 * naming the child the update replaced (the bottom node names none).
 * Nothing is counted: the copies borrow their other children (the pin
 * keeps the old root).
 *
 * light_alloc: blocks for the new bottom node (bsz bytes) and a copy of
 * each ancestor, bottom first as the general plan; all or none. */
static ALWAYS_INLINE bool light_alloc(champ_pool *pool, const path *pa, size_t bsz,
                                      node **nn, size_t *sz, unsigned W) {
    const int d = pa->depth;
    CHAMP_ASSERT(pa->fs == 0); /* the derive counts its base root, or the cell
                                  * holds the pinned one twice */
    sz[d] = bsz;
    for (int j = d; j >= 0; j--) {
        if (j < d)
            sz[j] = node_size(pa->n[j], (unsigned)j, W);
        nn[j] = pool_alloc(pool, sz[j]);
        if (UNLIKELY(!nn[j])) {
            while (++j <= d)
                pool_free(pool, nn[j], sz[j]);
            return false;
        }
    }
    return true;
}

/* The new bottom node nn[depth] is built: mark it light and hang it from
 * copies of its ancestors, each light and naming its new child. */
static ALWAYS_INLINE void light_link(champ_map *m, const path *pa, node *const *nn,
                                     const size_t *sz, unsigned W) {
    node *c = nn[pa->depth];
    c->rc = RC_LIGHT | 1u;
    for (int j = pa->depth - 1; j >= 0; j--) {
        const node *par = pa->n[j];
        node *np = nn[j];
        uint32_t ki = node_kidx(par, pa->bit[j]);
        /* the header is written, not copied: another thread may be
         * changing par's count (a concurrent pool's shared node) */
        node_init(np, par->datamap, par->nodemap);
        np->rc = RC_LIGHT | (ki + 1u) << RC_LKID_SHIFT | 1u;
        wcopy(node_ebase(np), node_ebase(par), sz[j] - NODE_HDR);
        node_kids(np, W)[ki] = c;
        c = np;
    }
    m->root = c;
    m->stamp++;
}

/* The end of a set that copied what it changed: the caller learns what
 * was replaced (or the value is released). */
static ALWAYS_INLINE champ_status set_done(champ_map *m, bool replaced, void *old,
                                           champ_prior *prior) {
    if (prior) {
        prior->found = replaced;
        prior->val = old;
        prior->key = NULL;
    } else if (replaced && m->t->val_release) {
        m->t->val_release(old, m->t->ctx);
    }
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

static ALWAYS_INLINE champ_status set_light_body(champ_map *m, path *pa, int at,
                                                 const kq *q, uint64_t he, uint64_t newk,
                                                 void *val, champ_prior *prior,
                                                 unsigned W) {
    const mtype *t = m->t;
    const int d = pa->depth;
    node *b = pa->n[d];
    size_t sz[CHAMP_MAX_PATH];
    node *nn[CHAMP_MAX_PATH];
    if (UNLIKELY(!light_alloc(t->pool, pa,
                              node_size(b, (unsigned)d, W) +
                                  (at == AT_MATCH ? 0u : SZ_ENTRY(W)),
                              nn, sz, W)))
        return CHAMP_ENOMEM;
    node *nb = nn[d];
    uint32_t bit = pa->bit[d];
    entry ne;
    ne.k = newk;
    ne.v = val;
    void *old = NULL;
    bool replaced = at == AT_MATCH;
    if (replaced) {
        node_bitmap_dup(nb, b, W);
        old = *ent_valp(nb, (uint32_t)pa->idx);
        *ent_valp(nb, (uint32_t)pa->idx) = val;
    } else if (at == AT_EMPTY) {
        node_bitmap_set_slot(t, nb, b, bit, &ne, 1, NULL, false, W);
    } else {
        entry pr[2];
        pair_order_keys(t, pr, ent_get(b, (uint32_t)pa->idx, W), he, ne, q->h,
                        CHAMP_KEY_U64);
        node_bitmap_set_slot(t, nb, b, bit, pr, 2, NULL, false, W);
    }
    light_link(m, pa, nn, sz, W);
    if (!replaced)
        m->size++;
    return set_done(m, replaced, old, prior);
}

/* The first update of a fresh copy (champ_copy's, or a plain cell's
 * load: LBASE_FRESH) of a plain u64 map in a plain pool, when it finds
 * the root still shared: instead of copying the path and counting every
 * child the copies share, the map becomes a light version on a counted
 * base, as a p-form would (pin.c): the count it holds on its root becomes
 * the base's, its pin slot keeps the base, and the update borrows.  Only
 * the copy: the map it was copied from, edited while the copy lives (the
 * undo pattern: snapshot, edit the live map, snapshot again), would be
 * settled by its next snapshot or edit at once, paying the counts anyway
 * plus a settle (docs/design.md measures it), so it copies its path.
 * Freeing the map then frees its chain and drops the base's
 * count, touching no child; a later update, copy or any call that shares
 * or changes its nodes settles it first (a copy followed by one change and
 * a free, a speculative edit, costs no count at all; an edit followed by
 * more edits pays the counts at the second, as the copying path would at
 * the first).  Such maps take a pin slot only while more than PIN_KEEP
 * are free, so maps kept light for long leave the rest to p-forms; with
 * none to be had the path is copied as before.  In a concurrent pool the
 * slots belong to the heap of the thread that made the handle: only that
 * thread's update goes light (another thread's copies the path).
 * light_begin claims the slot; light_end publishes the version light, or
 * after a failure gives the slot back (the map is as before). */
static ALWAYS_INLINE bool light_begin(champ_map *m) {
    const mtype *t = m->t;
    if (t->mode != MODE(CHAMP_KEY_U64, ENT_MAP, 0) || champ__ops != NULL ||
        m->lbase != LBASE_FRESH)
        return false;
    CHAMP_ASSERT(m->light == LIGHT_NONE && !map_pinned(m)); /* fresh: counted */
    /* a concurrent pool: only the thread of the heap holding the handle
     * claims that heap's slots (pin.c) */
    if (t->atomic && !heap_is_mine(t->pool, champ__handle_heap(m)))
        return false;
    m->lbase = LBASE_PIN; /* fresh no more, light or not (light_end's
                           * failure gives it back) */
    uintptr_t *slot = champ__pin_claim(m, PIN_KEEP);
    if (!slot)
        return false;
    champ__base_set(slot, m->root);
    m->lbase = LBASE_COUNT;
    m->light = LIGHT_DERIVE;
    return true;
}

/* A fresh copy changed by the general path (its path copied, from the
 * root or below) is fresh no more: were it copied later and then edited,
 * it would be the undo pattern's original.  Its owned fast paths, which
 * copy nothing, leave the flag (a copy whose original went owns its
 * path: the first update that finds its root shared again clears it). */
static ALWAYS_INLINE void fresh_done(champ_map *m) {
    if (UNLIKELY(m->lbase == LBASE_FRESH)) /* only on counted maps */
        m->lbase = LBASE_PIN;
}

static ALWAYS_INLINE void light_end(champ_map *m, champ_status st) {
    if (LIKELY(st == CHAMP_OK)) {
        __atomic_store_n(&m->light, LIGHT_ON, __ATOMIC_RELEASE);
        return;
    }
    champ__base_release(champ__pin_slot(m));
    m->pin = 0;
    m->lbase = LBASE_FRESH; /* as it was: light_begin took a fresh copy */
    m->light = LIGHT_NONE;
}

/* A light map settled: its path may be its own now, so the update
 * descends again (map_set below; u64 keys: no user code runs twice).
 * map_remove settles a light map before its descent. */
static NOINLINE champ_status set_again_u64(champ_map *m, const kq *q, uint64_t newk,
                                           void *val, champ_prior *prior);

/* pa is NULL for an empty map.  For AT_OTHER / AT_PAIR, he and he1 are the
 * hashes of the slot's entries.  Out of line, one copy per (kind, width):
 * set_general below picks it. */
static ALWAYS_INLINE champ_status set_general_body(champ_map *m, path *pa, int at, const kq *q,
                                         uint64_t he, uint64_t he1, uint64_t newk,
                                         void *val, champ_prior *prior,
                                         champ_key_kind kind, unsigned W) {
    const mtype *t = m->t;
    champ_pool *pool = t->pool;
    plan pl;
    pl.n = 0;
    /* only plain u64 maps are light, and a light map has a root */
    if (kind == CHAMP_KEY_U64 && W == ENT_MAP && UNLIKELY(m->light == LIGHT_ON)) {
        champ__light_settle(m);
        return set_again_u64(m, q, newk, val, prior);
    }
    CHAMP_ASSERT(m->light != LIGHT_ON);
    /* deriving a light version: copies borrow their children (u64) */
    const bool borrow = UNLIKELY(m->light == LIGHT_DERIVE);
    int d = pa ? pa->depth : 0;
    node *b = pa ? pa->n[d] : NULL;
    /* the bottom node stays alive for someone else */
    bool share = pa && pa->fs >= 0 && !borrow;
    if (at == AT_MATCH && W == ENT_SET) {
        /* a set holding the key already: nothing changes */
        if (prior) {
            prior->found = true;
            prior->val = NULL;
            prior->key = NULL;
        }
        return CHAMP_OK;
    }
    if (kind == CHAMP_KEY_U64 && pa && at >= AT_MATCH && at <= AT_OTHER &&
        d < CHAMP_COLL_LEVEL) {
        if (borrow)
            return set_light_body(m, pa, at, q, he, newk, val, prior, W);
        if (W == ENT_MAP && pa->fs == 0 && light_begin(m)) {
            champ_status st = set_light_body(m, pa, at, q, he, newk, val, prior, W);
            light_end(m, st);
            return st;
        }
    }

    /* Plan. */
    unsigned three_level = 0;
    uint64_t th[3] = {0, 0, 0}; /* set for AT_PAIR, which alone reads it */
    int kblob = -1;
    if (kind == CHAMP_KEY_BYTES && at != AT_MATCH) {
        kblob = pl.n;
        plan_add(&pl, blob_size(q->len));
    }
    int kbottom = pl.n;
    switch (at) {
    case -1:
        plan_add(&pl, node_bitmap_size(1, 0, W));
        break;
    case AT_MATCH:
        plan_add(&pl, d == CHAMP_COLL_LEVEL ? coll_copy_bytes(b, W)
                                            : node_size(b, (unsigned)d, W));
        break;
    case AT_EMPTY:
    case AT_OTHER:
        plan_add(&pl, node_size(b, (unsigned)d, W) + SZ_ENTRY(W));
        break;
    case AT_COLL: /* shared: the new node is exact */
        if (UNLIKELY(b->datamap >= COLL_MAX_KEYS))
            return CHAMP_ENOMEM;
        plan_add(&pl, champ__coll_grow_bytes(t, b, true));
        break;
    default: /* AT_PAIR: the pair and the new key become a subtree */
        th[0] = he;
        th[1] = he1;
        th[2] = q->h;
        plan_add(&pl, node_size(b, (unsigned)d, W) - SZ_PAIR_TO_KID(W));
        three_level = (unsigned)d + 1;
        while (three_level <= CHAMP_LAST_LEVEL &&
               slice(th[0], three_level) == slice(th[2], three_level) &&
               slice(th[1], three_level) == slice(th[2], three_level)) {
            plan_add(&pl, node_bitmap_size(0, 1, W)); /* a one-child link */
            three_level++;
        }
        plan_add(&pl, SZ_THREE(W));
        break;
    }
    int kanc = pl.n;
    if (pa)
        plan_ancestors(pa, d, &pl, W);
    if (UNLIKELY(!plan_alloc(pool, &pl)))
        return CHAMP_ENOMEM;

    /* Commit: nothing below can fail. */
    fresh_done(m);
    entry ne;
    ne.v = val;
    ne.k = kblob >= 0 ? blob_make(pl.blk[kblob], q) : newk;
    node *nb = pl.blk[kbottom];
    void *old = NULL;
    bool replaced = false;
    switch (at) {
    case -1:
        node_init(nb, 1u << (q->h & 31), 0);
        ent_put(nb, 0, ne, W);
        break;
    case AT_MATCH: /* shared (maps only): copy with the value replaced */
        if (d == CHAMP_COLL_LEVEL)
            champ__coll_copy(t, nb, b, -1);
        else if (borrow)
            node_bitmap_dup(nb, b, W);
        else
            node_bitmap_copy(t, nb, b, W);
        old = *ent_valp(nb, (uint32_t)pa->idx); /* the copy took a reference for us */
        *ent_valp(nb, (uint32_t)pa->idx) = val;
        replaced = true;
        break;
    case AT_EMPTY:
        node_bitmap_set_slot(t, nb, b, pa->bit[d], &ne, 1, NULL, share, W);
        break;
    case AT_OTHER: {
        entry pr[2], o = ent_get(b, (uint32_t)pa->idx, W);
        if (share && t->ent_refs)
            ent_retain(t, o);
        pair_order_keys(t, pr, o, he, ne, q->h, kind);
        node_bitmap_set_slot(t, nb, b, pa->bit[d], pr, 2, NULL, share, W);
        break;
    }
    case AT_COLL:
        champ__coll_move(t, nb, pl.size[kbottom], b, share);
        champ__coll_put(t, nb, ne, coll_ordered(b) ? pa->idx : -1);
        break;
    default: {
        /* AT_PAIR: build the subtree bottom-up (the three-entry node, then
         * the links above it), then hang it where the pair was. */
        entry x[3];
        x[0] = ent_get(b, (uint32_t)pa->idx, W);
        x[1] = ent_get(b, (uint32_t)pa->idx + 1, W);
        x[2] = ne;
        if (share && t->ent_refs) {
            ent_retain(t, x[0]);
            ent_retain(t, x[1]);
        }
        int k = kanc - 1;
        node *c = pl.blk[k--];
        node_three(t, c, three_level, x, th, kind, W);
        for (unsigned l = three_level - 1; l > (unsigned)d; l--) {
            node *up = pl.blk[k--];
            node_init(up, 0, 1u << slice(q->h, l));
            node_kids(up, W)[0] = c;
            c = up;
        }
        node_bitmap_set_slot(t, nb, b, pa->bit[d], NULL, 0, c, share, W);
        break;
    }
    }
    if (at == -1)
        m->root = nb;
    else
        commit_ancestors(m, pa, d, nb, &pl, kanc, !borrow, W);
    if (!replaced)
        m->size++;
    m->stamp++;
    /* The first shared node loses this map's reference.  A callback that
     * ran during this update may have freed the version it shared the node
     * with: then this was the last reference, and the node goes (what the
     * copies above duplicated was retained, so nothing is lost twice). */
    if (borrow)
        light_mark(m, &pl, pa, q->h, false, W); /* the pin keeps the old root */
    else if (pa && pa->fs == 0)
        map_root_drop(m, pa->n[0]);
    else if (pa && pa->fs > 0)
        champ__node_drop(t, pa->n[pa->fs], (unsigned)pa->fs);
    else if (b)
        pool_free(pool, b, node_block(b, (unsigned)d, W));
    return set_done(m, replaced, old, prior);
}

#define GENERAL_COPIES(name, params, args)                                  \
    static NOINLINE champ_status name##_u64_map params {                    \
        return name##_body args(CHAMP_KEY_U64, ENT_MAP);                    \
    }                                                                       \
    static NOINLINE champ_status name##_u64_set params {                    \
        return name##_body args(CHAMP_KEY_U64, ENT_SET);                    \
    }                                                                       \
    static NOINLINE champ_status name##_bytes_map params {                  \
        return name##_body args(CHAMP_KEY_BYTES, ENT_MAP);                  \
    }                                                                       \
    static NOINLINE champ_status name##_bytes_set params {                  \
        return name##_body args(CHAMP_KEY_BYTES, ENT_SET);                  \
    }                                                                       \
    static NOINLINE champ_status name##_generic_map params {                \
        return name##_body args(CHAMP_KEY_GENERIC, ENT_MAP);                \
    }                                                                       \
    static NOINLINE champ_status name##_generic_set params {                \
        return name##_body args(CHAMP_KEY_GENERIC, ENT_SET);                \
    }

/* The copy of a general path for constant kind and W. */
#define GENERAL_PICK(name, kind, W)                                         \
    ((kind) == CHAMP_KEY_U64                                                \
         ? ((W) == ENT_MAP ? name##_u64_map : name##_u64_set)               \
     : (kind) == CHAMP_KEY_BYTES                                            \
         ? ((W) == ENT_MAP ? name##_bytes_map : name##_bytes_set)           \
         : ((W) == ENT_MAP ? name##_generic_map : name##_generic_set))

#define SG_ARGS(k, w) (m, pa, at, q, he, he1, newk, val, prior, k, w)
GENERAL_COPIES(set_general,
               (champ_map *m, path *pa, int at, const kq *q, uint64_t he, uint64_t he1,
                uint64_t newk, void *val, champ_prior *prior),
               SG_ARGS)
#define set_general(m, pa, at, q, he, he1, newk, val, prior, kind, W)       \
    GENERAL_PICK(set_general, kind, W)(m, pa, at, q, he, he1, newk, val, prior)

#define SC_ARGS(k, w) (m, pa, q, newk, val, prior, k, w)
GENERAL_COPIES(set_coll_owned,
               (champ_map *m, path *pa, const kq *q, uint64_t newk, void *val,
                champ_prior *prior),
               SC_ARGS)
#define set_coll_owned(m, pa, q, newk, val, prior, kind, W)                 \
    GENERAL_PICK(set_coll_owned, kind, W)(m, pa, q, newk, val, prior)

static ALWAYS_INLINE champ_status map_set(champ_map *m, const kq *q, uint64_t newk,
                                          void *val, champ_prior *prior,
                                          champ_key_kind kind, unsigned W) {
    if (UNLIKELY(!m->root))
        return set_general(m, NULL, -1, q, 0, 0, newk, val, prior, kind, W);
    path pa;
    int at = map_descend(m, q, &pa, kind, W);
    if (at == AT_MATCH && pa.fs < 0)
        return set_replace_owned(m, pa.n[pa.depth], pa.idx, val, prior, W);
    /* The slot holds another key (alone or in a pair): its hash (computed
     * once, here) decides the order of the new pair or the shape of the
     * subtree the pair becomes. */
    const mtype *t = m->t;
    node *b = pa.n[pa.depth];
    uint64_t he = 0, he1 = 0;
    if (at == AT_OTHER || at == AT_PAIR)
        he = key_hash(t, ent_key(b, (uint32_t)pa.idx, W), kind);
    if (at == AT_PAIR)
        he1 = key_hash(t, ent_key(b, (uint32_t)pa.idx + 1, W), kind);
    if (LIKELY(pa.fs < 0)) {
        if (at == AT_EMPTY || at == AT_OTHER)
            return set_grow_owned(m, &pa, at, q, he, newk, val, prior, kind, W);
        if (at == AT_PAIR && pair_splits(he, he1, q->h >> (CHAMP_BITS * pa.depth),
                                         (unsigned)pa.depth + 1))
            return set_pair_owned(m, pa.n[pa.depth], pa.depth, pa.bit[pa.depth],
                                  (uint32_t)pa.idx, NULL, &pa, q, he, he1, newk, val, prior,
                                  kind, W);
        if (kind != CHAMP_KEY_U64 && at == AT_COLL)
            return set_coll_owned(m, &pa, q, newk, val, prior, kind, W);
    }
    return set_general(m, &pa, at, q, he, he1, newk, val, prior, kind, W);
}

static NOINLINE champ_status set_again_u64(champ_map *m, const kq *q, uint64_t newk,
                                           void *val, champ_prior *prior) {
    return map_set(m, q, newk, val, prior, CHAMP_KEY_U64, ENT_MAP);
}

/*
 * Remove.  The cases:
 *   remove_shrink_owned    one entry out of a node the map owns: shrink in
 *                          place (the freed bytes become spare room) or
 *                          copy into an exact block
 *   remove_collapse_owned  the bottom node (three entries, owned) goes and
 *                          its parent takes the surviving pair
 *   remove_coll            collision nodes (out of line): an owned one
 *                          shrinks in place, a node of three folds into
 *                          a pair above, shared ones go to remove_general
 *   remove_general         everything else: shared paths, collapses that
 *                          go up through chains of single-child nodes
 * With prior, the stored key and value are handed back (with a reference
 * the caller owns); without, they are released.
 */
static ALWAYS_INLINE void removed_hand_back(const mtype *t, entry gone, bool shared,
                                            champ_prior *prior, champ_key_kind kind) {
    if (!prior) {
        if (!shared) {
            if (kind != CHAMP_KEY_U64) /* u64 keys hold nothing */
                key_release(t, gone.k);
            if (t->val_release)
                t->val_release(gone.v, t->ctx);
        }
        return;
    }
    prior->found = true;
    prior->val = gone.v;
    prior->key = kind == CHAMP_KEY_GENERIC ? (void *)(uintptr_t)gone.k : NULL;
    if (shared) {
        /* the node still holds them: the caller gets references of its own */
        if (kind == CHAMP_KEY_GENERIC && t->key_retain)
            t->key_retain((void *)(uintptr_t)gone.k, t->ctx);
        if (t->val_retain)
            t->val_retain(gone.v, t->ctx);
    } else if (kind == CHAMP_KEY_BYTES) {
        key_release(t, gone.k); /* the map's copy of the key */
    }
}

/* The end of a remove fast path (the bottom node was ours). */
static ALWAYS_INLINE champ_status removed_owned(champ_map *m, entry gone,
                                               champ_prior *prior, champ_key_kind kind) {
    m->size--;
    m->stamp++;
    removed_hand_back(m->t, gone, false, prior, kind);
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

/* The subtree of the bottom node falls to two entries (keep[]): it becomes
 * a pair in the nearest ancestor that holds something else.  Returns that
 * ancestor's index. */
static ALWAYS_INLINE int collapse_top(const path *pa) {
    int top = pa->depth - 1;
    while (top > 0 && pa->n[top]->datamap == 0 && popc(pa->n[top]->nodemap) == 1)
        top--;
    return top;
}

/* Returns true when done; false when the pool had no block (the general
 * path then plans it). */
static ALWAYS_INLINE bool remove_collapse_owned(champ_map *m, path *pa, const entry *keep,
                                                size_t bblock, unsigned W) {
    int d = pa->depth, top = d - 1;
    node *b = pa->n[d], *tn = pa->n[top];
    champ_pool *pool = m->t->pool;
    size_t tsz = node_bitmap_size(node_nent(tn), node_nkid(tn), W); /* top < 13 */
    node *nt = pool_alloc(pool, tsz + SZ_PAIR_TO_KID(W));
    if (!nt)
        return false;
    node_bitmap_set_slot(m->t, nt, tn, pa->bit[top], keep, 2, NULL, false, W);
    path_relink(m, pa, top, nt, W);
    pool_free(pool, tn, tsz + 8u * node_slack(tn));
    pool_free(pool, b, bblock);
    return true;
}

/* A node of `size` bytes (now) gives its spare room back to the pool, as
 * long as the room is a block (16 bytes or more; a set's single 8-byte
 * entry stays as room until the next one joins it). */
static ALWAYS_INLINE void room_give_back(champ_pool *pool, node *b, size_t size) {
    uint32_t u = node_slack(b);
    if (u >= 2) {
        pool_free(pool, (char *)b + size, 8u * u);
        b->aux &= ~SLACK_MASK;
    }
}

/* One entry out of a node this map owns.  While its block has little spare
 * room, shrink it in place (the room serves later inserts).  Otherwise copy
 * into an exact block; when that fails, and always in a fixed buffer,
 * shrink in place and give the freed room back to the pool, so a map that
 * owns its nodes can always be drained. */
/* Whether owned node b, `sz` bytes once an entry is out, shrinks in place
 * (the freed entry joins its room) rather than moving to an exact block:
 * while its room stays within slack_cap, and never in a fixed buffer,
 * which keeps no spare room in nodes. */
static ALWAYS_INLINE bool shrink_in_place(const champ_pool *pool, const node *b, size_t sz,
                                          unsigned W) {
    return !pool->fixed && node_slack(b) + W / 8u <= slack_cap(sz);
}

/* Entry e (of slot `bit`) out of owned node b, `sz` bytes after it: the
 * tail moves down and the freed bytes become spare room. */
static ALWAYS_INLINE void node_shrink_entry(node *b, uint64_t *e, uint32_t bit, size_t sz,
                                            unsigned W) {
    memmove(e, (char *)e + W, sz - (size_t)((char *)e - (char *)b));
    maps_drop_entry(&b->datamap, &b->nodemap, bit);
    b->aux += W / 8u;
}

static ALWAYS_INLINE void remove_shrink_owned(champ_map *m, path *pa, uint32_t i,
                                              unsigned W) {
    champ_pool *pool = m->t->pool;
    int d = pa->depth;
    node *b = pa->n[d];
    size_t sz = node_bitmap_size(node_nent(b), node_nkid(b), W) - SZ_ENTRY(W);
    node *nt = NULL;
    bool full = false;
    if (!shrink_in_place(pool, b, sz, W)) {
        nt = pool_alloc(pool, sz);
        full = nt == NULL;
    }
    if (!nt) {
        node_shrink_entry(b, ent_at(b, i, W), pa->bit[d], sz, W);
        if (full) /* the pool is short of memory: give the room back */
            room_give_back(pool, b, sz);
        return;
    }
    node_bitmap_drop_entry(m->t, nt, b, i, pa->bit[d], false, W);
    path_relink(m, pa, d, nt, W);
    pool_free(pool, b, sz + SZ_ENTRY(W) + 8u * node_slack(b));
}

/* A light derive's remove that collapses nothing (set_light_body above):
 * the bottom node is copied without the entry. */
static ALWAYS_INLINE champ_status remove_light_body(champ_map *m, path *pa,
                                                    champ_prior *prior, unsigned W) {
    const mtype *t = m->t;
    const int d = pa->depth;
    node *b = pa->n[d];
    uint32_t i = (uint32_t)pa->idx;
    size_t sz[CHAMP_MAX_PATH];
    node *nn[CHAMP_MAX_PATH];
    if (UNLIKELY(!light_alloc(t->pool, pa, node_size(b, (unsigned)d, W) - SZ_ENTRY(W), nn,
                              sz, W)))
        return CHAMP_ENOMEM;
    entry gone = ent_get(b, i, W);
    node_bitmap_drop_entry(t, nn[d], b, i, pa->bit[d], false, W);
    light_link(m, pa, nn, sz, W);
    m->size--;
    removed_hand_back(t, gone, true, prior, CHAMP_KEY_U64);
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

static ALWAYS_INLINE champ_status remove_general_body(champ_map *m, path *pa,
                                                     bool collapse, const entry *keep,
                                                     champ_prior *prior,
                                                     champ_key_kind kind, unsigned W) {
    CHAMP_ASSERT(m->light != LIGHT_ON); /* map_remove settled it */
    const bool borrow = UNLIKELY(m->light == LIGHT_DERIVE); /* as set_general */
    const mtype *t = m->t;
    champ_pool *pool = t->pool;
    int d = pa->depth;
    node *b = pa->n[d];
    if (kind == CHAMP_KEY_U64 && !collapse && d < CHAMP_COLL_LEVEL &&
        (d > 0 || node_nent(b) > 1 || node_nkid(b) > 0)) {
        if (borrow)
            return remove_light_body(m, pa, prior, W);
        if (W == ENT_MAP && pa->fs == 0 && light_begin(m)) {
            champ_status st = remove_light_body(m, pa, prior, W);
            light_end(m, st);
            return st;
        }
    }
    uint32_t i = (uint32_t)pa->idx;
    entry gone = ent_get(b, i, W);
    plan pl;
    pl.n = 0;
    int top = d;
    if (collapse) {
        top = collapse_top(pa);
        plan_add(&pl, node_size(pa->n[top], (unsigned)top, W) + SZ_PAIR_TO_KID(W));
    } else if (d == 0 && node_nent(b) == 1 && node_nkid(b) == 0) {
        /* the root loses its last entry: no node at all */
    } else if (d == CHAMP_COLL_LEVEL) {
        plan_add(&pl, coll_copy_bytes(b, W)); /* a copy, then the remove in place */
    } else {
        plan_add(&pl, node_size(b, (unsigned)d, W) - SZ_ENTRY(W));
    }
    int kanc = pl.n;
    plan_ancestors(pa, top, &pl, W);
    if (UNLIKELY(!plan_alloc(pool, &pl)))
        return CHAMP_ENOMEM;

    /* Commit. */
    fresh_done(m);
    bool share_b = pa->fs >= 0;
    node *nt = pl.n ? pl.blk[0] : NULL;
    if (collapse) {
        if (share_b && t->ent_refs) {
            ent_retain(t, keep[0]);
            ent_retain(t, keep[1]);
        }
        bool share_t = pa->fs >= 0 && top >= pa->fs && !borrow;
        node_bitmap_set_slot(t, nt, pa->n[top], pa->bit[top], keep, 2, NULL, share_t, W);
    } else if (nt) {
        if (d == CHAMP_COLL_LEVEL) {
            CHAMP_ASSERT(share_b);
            champ__coll_copy(t, nt, b, (int)i); /* the entry going is not retained */
            champ__coll_del(t, nt, i);
        } else
            node_bitmap_drop_entry(t, nt, b, i, pa->bit[d], share_b && !borrow, W);
    }
    if (nt)
        commit_ancestors(m, pa, top, nt, &pl, kanc, !borrow, W);
    else
        m->root = NULL;
    m->size--;
    m->stamp++;
    /* Hand the entry over before the old nodes go: if they were shared,
     * the caller's references are taken while the node still holds it. */
    removed_hand_back(t, gone, share_b, prior, kind);
    /* Drop the old nodes top..d: unique ones are freed (their contents
     * moved or were handed over), and the first shared one (on this part
     * of the path or above it) loses this map's reference, which may be
     * its last if a callback freed the version it shared it with. */
    for (int j = top; j <= d; j++) {
        if (pa->fs >= 0 && j >= pa->fs)
            break;
        pool_free(pool, pa->n[j], node_block(pa->n[j], (unsigned)j, W));
    }
    if (borrow)
        light_mark(m, &pl, pa, 0, true, W); /* the pin keeps the old root */
    else if (pa->fs == 0)
        map_root_drop(m, pa->n[0]);
    else if (pa->fs > 0)
        champ__node_drop(t, pa->n[pa->fs], (unsigned)pa->fs);
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

#define RG_ARGS(k, w) (m, pa, collapse, keep, prior, k, w)
GENERAL_COPIES(remove_general,
               (champ_map *m, path *pa, bool collapse, const entry *keep,
                champ_prior *prior),
               RG_ARGS)
#define remove_general(m, pa, collapse, keep, prior, kind, W)               \
    GENERAL_PICK(remove_general, kind, W)(m, pa, collapse, keep, prior)

/* A remove from a collision node (trie.h, "Collision nodes"): out of line,
 * one copy per (kind, width), so that map_remove below is about bitmap
 * nodes only (u64 keys never get here). */
static ALWAYS_INLINE champ_status remove_coll_body(champ_map *m, path *pa, champ_prior *prior,
                                                   champ_key_kind kind, unsigned W) {
    const int d = CHAMP_COLL_LEVEL;
    node *b = pa->n[d];
    uint32_t i = (uint32_t)pa->idx;
    if (b->datamap == 3) {
        entry keep[2];
        /* two survivors: a pair in the nearest ancestor that holds
         * something else, in key order where the map has one (a node of
         * three keys of such a map is ordered), else in the list's */
        CHAMP_ASSERT(coll_ordered(b) || !kind_ordered(m->t, kind));
        keep[0] = ent_get(b, i == 0 ? 1 : 0, W);
        keep[1] = ent_get(b, i == 2 ? 1 : 2, W);
        if (LIKELY(pa->fs < 0) && collapse_top(pa) == d - 1) {
            entry gone = ent_get(b, i, W);
            if (remove_collapse_owned(m, pa, keep, node_block(b, (unsigned)d, W), W))
                return removed_owned(m, gone, prior, kind);
        }
        return remove_general(m, pa, true, keep, prior, kind, W);
    }
    if (LIKELY(pa->fs < 0)) {
        /* owned: shrinks in place, cannot fail */
        entry gone = ent_get(b, i, W);
        champ__coll_del(m->t, b, i);
        return removed_owned(m, gone, prior, kind);
    }
    return remove_general(m, pa, false, NULL, prior, kind, W);
}

#define RC_ARGS(k, w) (m, pa, prior, k, w)
GENERAL_COPIES(remove_coll, (champ_map *m, path *pa, champ_prior *prior), RC_ARGS)
#define remove_coll(m, pa, prior, kind, W) GENERAL_PICK(remove_coll, kind, W)(m, pa, prior)

static ALWAYS_INLINE champ_status map_remove(champ_map *m, const kq *q,
                                             champ_prior *prior, champ_key_kind kind,
                                             unsigned W) {
    path pa;
    if (kind == CHAMP_KEY_U64 && W == ENT_MAP && UNLIKELY(m->light == LIGHT_ON))
        champ__light_settle(m); /* then the path may be the map's own */
    if (UNLIKELY(!m->root) || map_descend(m, q, &pa, kind, W) != AT_MATCH) {
        prior_none(prior);
        return CHAMP_OK;
    }
    int d = pa.depth;
    if (kind != CHAMP_KEY_U64 && UNLIKELY(d == CHAMP_COLL_LEVEL))
        return remove_coll(m, &pa, prior, kind, W);
    node *b = pa.n[d];
    uint32_t i = (uint32_t)pa.idx;
    /* A node below the root whose subtree falls to two entries is pulled
     * up into the nearest ancestor that holds something else. */
    bool collapse = d > 0 && node_nkid(b) == 0 && node_nent(b) == 3;
    entry keep[2];
    if (collapse) {
        /* the two survivors, in array order: already trie order */
        keep[0] = ent_get(b, i == 0 ? 1 : 0, W);
        keep[1] = ent_get(b, i == 2 ? 1 : 2, W);
        if (LIKELY(pa.fs < 0) && collapse_top(&pa) == d - 1) {
            entry gone = ent_get(b, i, W);
            size_t bblock = node_bitmap_size(3, 0, W) + 8u * node_slack(b);
            if (remove_collapse_owned(m, &pa, keep, bblock, W))
                return removed_owned(m, gone, prior, kind);
        }
    } else if (LIKELY(pa.fs < 0) && !(d == 0 && node_nent(b) == 1 && node_nkid(b) == 0)) {
        entry gone = ent_get(b, i, W);
        remove_shrink_owned(m, &pa, i, W);
        return removed_owned(m, gone, prior, kind);
    }
    return remove_general(m, &pa, collapse, keep, prior, kind, W);
}

/* ------------------------------------------------------------------ */
/* Maps                                                                */
/* ------------------------------------------------------------------ */

/* In position-independent code the model is repeated on the definition:
 * without it gcc takes the definition's default, general dynamic, a call
 * to __tls_get_addr in every update of the shared library.  Elsewhere the
 * default (local exec, here) is the cheapest. */
#if defined(__PIC__)
_Thread_local opframe *champ__ops __attribute__((tls_model("initial-exec")));
#else
_Thread_local opframe *champ__ops;
#endif

#define CHAMP_STR_(x) #x
#define CHAMP_STR(x) CHAMP_STR_(x)

const char *champ_version(void) {
    return CHAMP_STR(CHAMP_VERSION_MAJOR) "." CHAMP_STR(CHAMP_VERSION_MINOR) "."
        CHAMP_STR(CHAMP_VERSION_PATCH);
}

unsigned champ_version_number(void) { return CHAMP_VERSION_NUMBER; }

const char *champ_strerror(champ_status s) {
    switch (s) {
    case CHAMP_OK: return "ok";
    case CHAMP_ENOMEM: return "out of memory (the map is unchanged)";
    case CHAMP_EINVAL: return "invalid argument or configuration";
    case CHAMP_EKIND: return "operation for another key kind";
    case CHAMP_EPOOL: return "maps from different pools";
    case CHAMP_EMODIFIED: return "map modified during iteration";
    case CHAMP_ECORRUPT: return "invariant violated (corrupt map)";
    case CHAMP_EUNSUPPORTED: return "unsupported by this CPU or build";
    case CHAMP_EBUSY: return "map is mid-operation (changed from its own callback)";
    }
    return "unknown status";
}

#define TYPE_BYTES ((sizeof(mtype) + 7u) & ~(size_t)7)

/* A new handle of type t (which gains a reference), or NULL. */
#define map_handle champ__map_handle
champ_map *champ__map_handle(mtype *t, node *root, size_t size) {
    champ_map *m = champ__handle_alloc(t->pool);
    if (!m)
        return NULL;
    m->root = root;
    m->size = size;
    m->t = t;
    if (!t->immortal)
        rc_inc(&t->refs, t->atomic);
    return m;
}

/* A type holds a reference to its pool; the last map of a type frees it. */
static mtype *type_new(champ_pool *p, const champ_config *c) {
    if (pool_fault(p))
        return NULL;
    mtype *t = champ__side_alloc(p, TYPE_BYTES);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->kind = c->kind;
    t->width = (uint8_t)(c->set ? ENT_SET : ENT_MAP);
    t->pool = p;
    t->seed = c->fixed_seed ? c->seed : champ__random_seed();
    t->hash = c->hash;
    t->equal = c->equal;
    t->key_retain = c->key_retain;
    t->key_release = c->key_release;
    t->val_retain = c->val_retain;
    t->val_release = c->val_release;
    t->compare = c->compare;
    t->bytes_hash = c->bytes_hash;
    t->ctx = c->ctx;
    t->ent_refs = c->kind == CHAMP_KEY_BYTES || c->key_retain || c->key_release ||
                  c->val_retain || c->val_release;
    t->calls_out = c->kind == CHAMP_KEY_GENERIC || c->key_retain || c->key_release ||
                   c->val_retain || c->val_release || c->bytes_hash || p->on_mark;
    t->mode = (uint8_t)MODE(t->kind, t->width, t->calls_out);
    t->atomic = p->concurrent;
    rc_inc(&p->refs, p->concurrent);
    if (p->concurrent)
        __atomic_fetch_add(&p->ntypes, 1, __ATOMIC_RELAXED);
    else
        p->ntypes++;
    return t;
}

void champ__type_release(mtype *t) {
    if (t->immortal || !rc_dec(&t->refs, t->atomic))
        return;
    champ_pool *p = t->pool;
    champ__side_free(p, t, TYPE_BYTES);
    if (p->concurrent)
        __atomic_fetch_sub(&p->ntypes, 1, __ATOMIC_RELAXED);
    else
        p->ntypes--;
    champ__pool_release(p);
}

/* Reads a caller's struct that starts with its size: at least min_size
 * bytes (the first published layout), at most ours; the bytes of a newer,
 * bigger layout that we do not know must be zero. */
bool champ__struct_read(void *dst, size_t dst_size, const void *src,
                        size_t min_size) {
    size_t n;
    memcpy(&n, src, sizeof n);
    if (n < min_size)
        return false;
    memset(dst, 0, dst_size);
    memcpy(dst, src, n < dst_size ? n : dst_size);
    for (size_t i = dst_size; i < n; i++)
        if (((const unsigned char *)src)[i])
            return false;
    return true;
}

/* The first layout of champ_config with a size field: this version's. */
#define CONFIG_MIN_SIZE sizeof(champ_config)

static bool cfg_valid(const champ_config *c) {
    switch (c->kind) {
    case CHAMP_KEY_U64:
    case CHAMP_KEY_BYTES:
        if (c->hash || c->equal || c->key_retain || c->key_release || c->compare)
            return false;
        if (c->bytes_hash && c->kind != CHAMP_KEY_BYTES)
            return false;
        break;
    case CHAMP_KEY_GENERIC:
        if (!c->hash || !c->equal || c->bytes_hash)
            return false;
        break;
    default:
        return false;
    }
    if (c->pool && c->pool_config)
        return false;
    if (c->set && (c->val_retain || c->val_release))
        return false; /* a set has no values */
    return true;
}

champ_status champ_new(const champ_config *cfg, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    champ_config c;
    if (!cfg || !champ__struct_read(&c, sizeof c, cfg, CONFIG_MIN_SIZE) || !cfg_valid(&c))
        return CHAMP_EINVAL;
    if (!champ__cpu_ok())
        return CHAMP_EUNSUPPORTED;
    champ_pool *p = c.pool;
    if (!p) {
        champ_status st = champ__pool_make(c.pool_config, &p);
        if (st != CHAMP_OK)
            return st;
    }
    mtype *t = type_new(p, &c);
    champ_map *m = t ? map_handle(t, NULL, 0) : NULL;
    if (t && !m) {
        t->refs = 1;
        champ__type_release(t);
    }
    if (!c.pool)
        champ__pool_release(p); /* the type holds the pool now */
    if (!m)
        return CHAMP_ENOMEM;
    *out = m;
    return CHAMP_OK;
}

/* The default maps (champ_new_u64, champ_new_bytes, champ_new_set_*):
 * one process-wide concurrent pool, made at the first call and never
 * freed while the process runs, and one immortal type per (kind, set) in it, each with a seed of
 * its own drawn once.  An empty default map is then one 32-byte handle,
 * and its copies and frees touch no shared count. */
static champ_pool *default_pool;
static mtype *default_types[4]; /* [bytes * 2 + set] */
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;

static NOINLINE mtype *default_type_make(champ_key_kind kind, bool set, champ_status *st) {
    unsigned i = (kind == CHAMP_KEY_BYTES) * 2u + set;
    *st = CHAMP_ENOMEM;
    if (!champ__cpu_ok()) {
        *st = CHAMP_EUNSUPPORTED;
        return NULL;
    }
    pthread_mutex_lock(&default_lock);
    mtype *t = default_types[i];
    if (!t && !default_pool) {
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.concurrent = true;
        champ_pool *p;
        if (champ__pool_make(&pc, &p) == CHAMP_OK)
            default_pool = p; /* the creator's reference is never dropped */
    }
    if (!t && default_pool) {
        champ_config c = CHAMP_CONFIG_INIT(kind);
        c.set = set;
        t = type_new(default_pool, &c);
        if (t) {
            t->immortal = true;
            __atomic_store_n(&default_types[i], t, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&default_lock);
    return t;
}

/* Process exit: the thread's heaps go back (the main thread runs no
 * thread-exit destructors), and the default pool, if no map or cell of it
 * is left, is freed, so that leak checkers see what the program left, not
 * what the library kept. */
__attribute__((destructor)) static void default_exit(void) {
    champ__thread_exit();
    pthread_mutex_lock(&default_lock);
    if (default_pool && champ__pool_unused(default_pool)) {
        /* its types are side blocks (pool.c): they go first */
        for (unsigned i = 0; i < 4; i++) {
            mtype *t = default_types[i];
            if (!t)
                continue;
            __atomic_store_n(&default_types[i], NULL, __ATOMIC_RELEASE);
            champ__side_free(default_pool, t, TYPE_BYTES);
            __atomic_fetch_sub(&default_pool->ntypes, 1, __ATOMIC_RELAXED);
        }
        champ__pool_destroy(default_pool);
        default_pool = NULL;
    }
    pthread_mutex_unlock(&default_lock);
}

static champ_status new_default(champ_key_kind kind, bool set, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    champ_status st = CHAMP_OK;
    mtype *t = __atomic_load_n(&default_types[(kind == CHAMP_KEY_BYTES) * 2u + set],
                               __ATOMIC_ACQUIRE);
    if (UNLIKELY(!t) && !(t = default_type_make(kind, set, &st)))
        return st;
    champ_map *m = map_handle(t, NULL, 0);
    if (!m)
        return CHAMP_ENOMEM;
    *out = m;
    return CHAMP_OK;
}

champ_status champ_new_u64(champ_map **out) {
    return new_default(CHAMP_KEY_U64, false, out);
}

champ_status champ_new_bytes(champ_map **out) {
    return new_default(CHAMP_KEY_BYTES, false, out);
}

champ_status champ_new_set_u64(champ_map **out) {
    return new_default(CHAMP_KEY_U64, true, out);
}

champ_status champ_new_set_bytes(champ_map **out) {
    return new_default(CHAMP_KEY_BYTES, true, out);
}

bool champ_is_set(const champ_map *m) { return m && m->t->width == ENT_SET; }

champ_status champ_new_like(const champ_map *m, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!m)
        return CHAMP_EINVAL;
    mtype *t = m->t;
    opframe fr;
    bool framed = t->calls_out;
    if (framed)
        op_push(&fr, m, OPF_READ);
    champ_map *c = map_handle(t, NULL, 0);
    if (framed)
        op_end(&fr);
    if (!c)
        return CHAMP_ENOMEM;
    *out = c;
    return CHAMP_OK;
}

/* What a pinned version's free lets go after its own nodes: the count it
 * holds on its base (and its type reference), else its pin, which may have
 * kept the pool alive. */
static void pinned_release(champ_pool *p, mtype *t, uintptr_t *slot, bool counted) {
    if (counted) {
        champ__base_release(slot);
        champ__type_release(t);
    } else {
        champ__pin_release(p, slot);
    }
}

void champ_free(champ_map *m) {
    if (!m)
        return;
    if (UNLIKELY(champ__ops != NULL)) {
        /* From a callback of an operation on m: free it when the outermost
         * such operation ends (or not at all if it is m's own free). */
        opframe *outer = NULL;
        for (opframe *f = champ__ops; f; f = f->up)
            if (f->m == m) {
                if (f->what == OPF_FREE)
                    return;
                outer = f;
            }
        if (outer) {
            outer->free_pending = true;
            return;
        }
    }
    mtype *t = m->t;
    champ_pool *p = t->pool;
    if (map_pinned(m)) {
        /* a light version's own nodes go (and its base's count, when it
         * holds one), the handle goes, then its pin (which kept the pool
         * alive until then, unless the version counts its type) */
        bool counted = m->lbase == LBASE_COUNT;
        uintptr_t *slot = champ__pin_slot(m);
        if (t->calls_out) {
            /* Release callbacks may run (the light nodes' entries, the
             * base, versions a cell retired that the pin held): they may
             * read m, which must be alive, empty and marked as being
             * freed (updates of it get CHAMP_EBUSY).  A reference on the
             * type keeps the pool alive until the handle is freed. */
            if (!t->immortal)
                rc_inc(&t->refs, t->atomic);
            opframe fr;
            op_push(&fr, m, OPF_FREE);
            if (m->light != LIGHT_NONE)
                champ__light_free(m);
            /* nothing left to settle: a read of m in a callback sees an
             * empty map */
            __atomic_store_n(&m->light, LIGHT_NONE, __ATOMIC_RELEASE);
            m->root = NULL;
            m->size = 0;
            m->stamp++;
            pinned_release(p, t, slot, counted);
            op_pop(&fr);
            champ__handle_free(p, m);
            champ__type_release(t);
            return;
        }
        if (m->light != LIGHT_NONE)
            champ__light_free(m);
        champ__handle_free(p, m);
        pinned_release(p, t, slot, counted);
        return;
    }
    node *r = m->root;
    m->root = NULL;
    m->size = 0;
    m->stamp++;
    if (r) {
        if (t->calls_out) {
            opframe fr;
            op_push(&fr, m, OPF_FREE);
            champ__node_drop(t, r, 0);
            op_pop(&fr);
        } else {
            champ__node_drop(t, r, 0);
        }
    }
    champ__handle_free(p, m);
    champ__type_release(t);
}

static bool copyable(const mtype *t) {
    if (t->val_release && !t->val_retain)
        return false;
    if (t->key_release && !t->key_retain)
        return false;
    return true;
}

champ_status champ_copy(const champ_map *m, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!m || !copyable(m->t))
        return CHAMP_EINVAL;
    if (UNLIKELY(champ__ops != NULL) && op_writing(m))
        return CHAMP_EBUSY;
    map_settle(m); /* a light version's nodes cannot be shared */
    /* The handle's allocation may run the pool's watermark: m is read
     * meanwhile (the watermark cannot change it, a free of m waits). */
    opframe fr;
    bool framed = m->t->calls_out;
    if (framed)
        op_push(&fr, m, OPF_READ);
    champ_map *c = map_handle(m->t, m->root, m->size);
    if (c && c->root)
        rc_inc(&c->root->rc, m->t->atomic);
    if (c)
        c->lbase = LBASE_FRESH; /* its first update may go light (light_begin) */
    if (framed)
        op_end(&fr);
    if (!c)
        return CHAMP_ENOMEM;
    *out = c;
    return CHAMP_OK;
}

champ_status champ_clear(champ_map *m) {
    if (!m)
        return CHAMP_EINVAL;
    if (op_busy(m))
        return CHAMP_EBUSY;
    map_settle(m);
    node *r = m->root;
    m->root = NULL;
    m->size = 0;
    m->stamp++;
    if (r && map_pinned(m)) {
        map_root_drop(m, r);
    } else if (r) {
        if (m->t->calls_out) {
            opframe fr;
            op_push(&fr, m, OPF_UPDATE);
            champ__node_drop(m->t, r, 0);
            op_end(&fr);
        } else {
            champ__node_drop(m->t, r, 0);
        }
    }
    return CHAMP_OK;
}

size_t champ_size(const champ_map *m) { return m ? m->size : 0; }
champ_key_kind champ_kind(const champ_map *m) { return m ? m->t->kind : (champ_key_kind)0; }
champ_pool *champ_pool_of(const champ_map *m) { return m ? m->t->pool : NULL; }
uint64_t champ_seed(const champ_map *m) { return m ? m->t->seed : 0; }

/* ------------------------------------------------------------------ */
/* Public operations per kind                                          */
/* ------------------------------------------------------------------ */

#define CHECK_KIND(m, k)                                                    \
    do {                                                                    \
        if (UNLIKELY(!(m)))                                                 \
            return CHAMP_EINVAL;                                            \
        if (UNLIKELY((m)->t->kind != (k)))                                  \
            return CHAMP_EKIND;                                             \
    } while (0)

#define LOOKUP_KIND(m, k)                                                   \
    do {                                                                    \
        if (UNLIKELY(!(m)) || UNLIKELY((m)->t->kind != (k)))                \
            return false;                                                   \
    } while (0)

/* An update of m: refused from m's own callbacks; framed (so callbacks
 * can be checked) when the map's type calls out. */
#define UPDATE(m, expr)                                                     \
    do {                                                                    \
        if (op_busy(m))                                                     \
            return CHAMP_EBUSY;                                             \
        if (LIKELY(!(m)->t->calls_out))                                     \
            return (expr);                                                  \
        opframe fr_;                                                        \
        op_push(&fr_, (m), OPF_UPDATE);                                     \
        champ_status s_ = (expr);                                           \
        op_end(&fr_);                                                       \
        return s_;                                                          \
    } while (0)

/* The pure persistent forms: an O(1) copy, then an in-place update of the
 * copy (which path-copies, since every node is now shared).  While it
 * runs, m is read by an operation, so m's callbacks cannot change it. */
/* The p-forms' copy, kept out of line: inlined (gcc -O3, the generic
 * p-forms), the copy's own frame inside the p-form's made gcc report the
 * p-form's frame as a local's address left in champ__ops
 * (-Wdangling-pointer; the frame is popped on every path). */
static NOINLINE champ_status pform_copy(const champ_map *m, champ_map **c) {
    return champ_copy(m, c);
}

#define PFORM(m, out, update)                                               \
    do {                                                                    \
        champ_map *c_ = NULL;                                               \
        opframe fr_;                                                        \
        bool framed_ = (m)->t->calls_out;                                   \
        if (framed_) /* first: the copy's allocation may run the watermark, \
                        whose champ_free(m) waits for this frame */         \
            op_push(&fr_, (m), OPF_READ);                                   \
        champ_status s_ = pform_copy((m), &c_);                             \
        if (s_ == CHAMP_OK) {                                               \
            champ_map *m_ = c_;                                             \
            s_ = (update);                                                  \
            if (s_ != CHAMP_OK)                                             \
                champ_free(c_);                                             \
            else                                                            \
                *(out) = c_;                                                \
        }                                                                   \
        if (framed_)                                                        \
            op_end(&fr_);                                                   \
        return s_;                                                          \
    } while (0)

/* Every operation dispatches on the entry width (maps, sets) with one
 * predicted branch; each side is the engine specialised for it. */
static ALWAYS_INLINE bool lookup(const champ_map *m, const kq *q, void **val_out,
                                 champ_key_kind kind) {
    if (LIKELY(m->t->width == ENT_MAP)) {
        const uint64_t *e = node_find(m->t, m->root, 0, q, kind, ENT_MAP);
        if (!e)
            return false;
        if (val_out)
            *val_out = (void *)(uintptr_t)e[1];
        return true;
    }
    if (!node_find(m->t, m->root, 0, q, kind, ENT_SET))
        return false;
    if (val_out)
        *val_out = NULL;
    return true;
}

static ALWAYS_INLINE champ_status set_any(champ_map *m, const kq *q, uint64_t newk,
                                          void *val, champ_prior *prior,
                                          champ_key_kind kind) {
    if (LIKELY(m->t->width == ENT_MAP))
        return map_set(m, q, newk, val, prior, kind, ENT_MAP);
    if (val) /* a set holds no values */
        return CHAMP_EINVAL;
    return map_set(m, q, newk, NULL, prior, kind, ENT_SET);
}

static ALWAYS_INLINE champ_status remove_any(champ_map *m, const kq *q,
                                             champ_prior *prior, champ_key_kind kind) {
    if (LIKELY(m->t->width == ENT_MAP))
        return map_remove(m, q, prior, kind, ENT_MAP);
    return map_remove(m, q, prior, kind, ENT_SET);
}

/* Add: insert the key when it is absent, never replace.  For a set this is
 * its insert; a map gets the key with a NULL value. */
static ALWAYS_INLINE champ_status add_any(champ_map *m, const kq *q, uint64_t newk,
                                          bool *added, champ_key_kind kind) {
    champ_prior pr;
    champ_status st;
    if (m->t->width == ENT_SET) {
        st = map_set(m, q, newk, NULL, &pr, kind, ENT_SET);
    } else if (lookup(m, q, NULL, kind)) {
        pr.found = true;
        st = CHAMP_OK;
    } else {
        st = map_set(m, q, newk, NULL, &pr, kind, ENT_MAP);
    }
    if (st == CHAMP_OK && added)
        *added = !pr.found;
    return st;
}

/* u64 ------------------------------------------------------------------ */

static ALWAYS_INLINE kq kq_u64(const champ_map *m, uint64_t key) {
    kq q;
    q.h = hash_u64(key, m->t->seed);
    q.u = key;
    q.p = NULL;
    q.len = 0;
    return q;
}

/* The plain path of an operation: a map (not a set) of this kind whose
 * type calls nothing out, while no callback runs on this thread.  One
 * compare and one thread-local load; everything else (sets, callbacks,
 * frames, errors) goes through the out-of-line slow path. */
#define PLAIN(m, kind)                                                      \
    (LIKELY((m) != NULL) && LIKELY((m)->t->mode == MODE(kind, ENT_MAP, 0)) && \
     LIKELY(champ__ops == NULL))

bool champ_get_u64(const champ_map *m, uint64_t key, void **val_out) {
    if (UNLIKELY(!m))
        return false;
    const mtype *t = m->t;
    kq q = kq_u64(m, key);
    if (LIKELY((t->mode & MODE_KW_MASK) == MODE(CHAMP_KEY_U64, ENT_MAP, 0))) {
        const uint64_t *e = node_find(t, m->root, 0, &q, CHAMP_KEY_U64, ENT_MAP);
        if (!e)
            return false;
        if (val_out)
            *val_out = (void *)(uintptr_t)e[1];
        return true;
    }
    if ((t->mode & MODE_KW_MASK) != MODE(CHAMP_KEY_U64, ENT_SET, 0))
        return false;
    if (!node_find(t, m->root, 0, &q, CHAMP_KEY_U64, ENT_SET))
        return false;
    if (val_out)
        *val_out = NULL;
    return true;
}

bool champ_contains_u64(const champ_map *m, uint64_t key) {
    return champ_get_u64(m, key, NULL);
}

static NOINLINE champ_status set_u64_slow(champ_map *m, uint64_t key, void *val,
                                          champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_U64);
    kq q = kq_u64(m, key);
    UPDATE(m, set_any(m, &q, key, val, prior, CHAMP_KEY_U64));
}

/* The common set in one descent: a plain u64 map that owns every node on
 * the key's path, where the key is there (its value word is replaced), or
 * its slot is empty or holds one other key, in a node that takes the entry
 * in place (spare room) or grows into a new block (set_grow_owned's two
 * cases), or the slot holds a pair that the key splits into a node one
 * level down (set_pair_owned).  The descent keeps the link to the node it is
 * in (the root pointer or the parent's child pointer) and its level, so a
 * grown node is hung in without a path array.  Returns CHAMP_OK, or
 * CHAMP_ENOMEM with nothing changed when a block is not to be had (map_set
 * would ask for the same blocks), or SET_PASS, having changed nothing, for
 * everything else (an empty map, a shared or light node on the path, a
 * pair whose keys go on together one level down): map_set does it. */
#define SET_PASS ((champ_status)1)
static NOINLINE champ_status set_u64_pair(champ_map *m, node *b, int d, uint32_t bit,
                                          uint32_t ei, node **link, const kq *q, uint64_t he,
                                          uint64_t he1, void *val, champ_prior *prior) {
    return set_pair_owned(m, b, d, bit, ei, link, NULL, q, he, he1, q->u, val, prior,
                          CHAMP_KEY_U64, ENT_MAP);
}
static ALWAYS_INLINE champ_status set_u64_owned(champ_map *m, const kq *q, void *val,
                                                champ_prior *prior) {
    const unsigned W = ENT_MAP;
    node **link = &m->root;
    node *b = *link;
    uint64_t h = q->h;
    uint32_t bit, dm, nm;
    int d = 0;
    if (UNLIKELY(!b))
        return SET_PASS;
    for (;; d++) {
        if (rc_load(&b->rc) > 1)
            return SET_PASS;
        if (node_full(b)) {
            link = &((node **)(void *)node_ebase(b))[h & 31];
        } else {
            bit = 1u << (h & 31);
            dm = b->datamap;
            nm = b->nodemap;
            if ((dm & bit) || !(nm & bit))
                break;
            link = &((node **)(void *)(node_ebase(b) + (size_t)W * maps_nent(dm, nm)))
                [maps_kidx(dm, nm, bit)];
        }
        b = *link;
        h >>= CHAMP_BITS;
    }
    uint32_t ei = maps_eidx(dm, nm, bit), wi = ei;
    if (dm & bit) {
        uint64_t *e = ent_at(b, ei, W);
        if (e[0] == q->u || ((nm & bit) && e[2] == q->u))
            return set_replace_owned(m, b, (int)(ei + (e[0] != q->u)), val, prior, W);
        if (nm & bit) {
            /* a pair: the three keys make a node one level down */
            uint64_t he = key_hash(m->t, e[0], CHAMP_KEY_U64);
            uint64_t he1 = key_hash(m->t, e[2], CHAMP_KEY_U64);
            if (!pair_splits(he, he1, h, (unsigned)d + 1))
                return SET_PASS;
            return set_u64_pair(m, b, d, bit, ei, link, q, he, he1, val, prior);
        }
        /* a pair of the two keys, in hash order */
        wi += ent_before_q(m->t, e[0], key_hash(m->t, e[0], CHAMP_KEY_U64), q,
                           CHAMP_KEY_U64);
        nm |= bit;
    } else {
        dm |= bit;
    }
    entry ne;
    ne.k = q->u;
    ne.v = val;
    size_t sz = node_bitmap_size(maps_nent(b->datamap, b->nodemap) + 1,
                                 maps_nkid(b->datamap, b->nodemap), W);
    champ_pool *pool = m->t->pool;
    /* set_grow_owned's two cases, for this kind */
    if (node_slack(b) >= W / 8u) {
        memmove(ent_at(b, wi + 1, W), ent_at(b, wi, W), sz - NODE_HDR - (size_t)W * (wi + 1));
        ent_put(b, wi, ne, W);
        b->datamap = dm;
        b->nodemap = nm;
        b->aux -= W / 8u;
    } else {
        uint32_t grow = pool->fixed ? 0u : grow_units(sz);
        size_t got = sz;
        node *nb = grow ? pool_alloc_grow(pool, sz, sz + 8u * grow, grow_take_max(sz), &got)
                        : pool_alloc(pool, sz);
        if (UNLIKELY(!nb))
            return CHAMP_ENOMEM;
        node_bitmap_insert_at(nb, b, wi, dm, nm, ne, W);
        nb->aux = (uint32_t)(got - sz) / 8u;
        *link = nb;
        pool_free(pool, b, sz - SZ_ENTRY(W) + 8u * node_slack(b));
    }
    return inserted(m, prior);
}

/* A plain map's set that set_u64_owned left: descends again. */
static NOINLINE champ_status set_u64_plain(champ_map *m, const kq *q, void *val,
                                           champ_prior *prior) {
    return map_set(m, q, q->u, val, prior, CHAMP_KEY_U64, ENT_MAP);
}

/* The plain map's common case (set_u64_owned) in a leaf function;
 * everything else through map_set's general paths. */
champ_status champ_set_u64(champ_map *m, uint64_t key, void *val, champ_prior *prior) {
    if (PLAIN(m, CHAMP_KEY_U64)) {
        kq q = kq_u64(m, key);
        champ_status st = set_u64_owned(m, &q, val, prior);
        if (LIKELY(st != SET_PASS))
            return st;
        return set_u64_plain(m, &q, val, prior);
    }
    return set_u64_slow(m, key, val, prior);
}

champ_status champ_add_u64(champ_map *m, uint64_t key, bool *added) {
    CHECK_KIND(m, CHAMP_KEY_U64);
    kq q = kq_u64(m, key);
    UPDATE(m, add_any(m, &q, key, added, CHAMP_KEY_U64));
}

static NOINLINE champ_status remove_u64_slow(champ_map *m, uint64_t key,
                                             champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_U64);
    kq q = kq_u64(m, key);
    UPDATE(m, remove_any(m, &q, prior, CHAMP_KEY_U64));
}

/* A lookup that also reads the counts, for the fast paths of plain maps
 * (upsert, remove): OWN_SHARED when a node on q's path has another
 * reference (or the path reaches a collision node, which the general
 * paths handle), else OWN_ABSENT, or OWN_FOUND with *at set: the node
 * holding q's entry, the entry, its slot's bit and the level. */
typedef struct owned_at {
    node *n;
    uint64_t *e;
    uint32_t bit;
    unsigned level;
} owned_at;
enum { OWN_SHARED, OWN_ABSENT, OWN_FOUND };

static ALWAYS_INLINE int find_owned_at(const champ_map *m, const kq *q, champ_key_kind kind,
                                       owned_at *at) {
    const mtype *t = m->t;
    node *n = m->root;
    uint64_t h = q->h;
    if (!n)
        return OWN_SHARED; /* an empty map: the general paths */
    for (unsigned level = 0;; level++) {
        if (rc_load(&n->rc) > 1)
            return OWN_SHARED;
        if (kind != CHAMP_KEY_U64 && UNLIKELY(level == CHAMP_COLL_LEVEL))
            return OWN_SHARED;
        if (node_full(n)) {
            n = ((node **)(void *)node_ebase(n))[h & 31];
            h >>= CHAMP_BITS;
            continue;
        }
        uint32_t bit = 1u << (h & 31);
        uint32_t dm = n->datamap, nm = n->nodemap;
        if (dm & bit) {
            uint64_t *e = ent_at(n, maps_eidx(dm, nm, bit), ENT_MAP);
            if (!kq_match(t, e[0], q, kind)) {
                if (!(nm & bit) || !kq_match(t, e[2], q, kind))
                    return OWN_ABSENT;
                e += 2; /* the second entry of the pair */
            }
            at->n = n;
            at->e = e;
            at->bit = bit;
            at->level = level;
            return OWN_FOUND;
        }
        if (!(nm & bit))
            return OWN_ABSENT;
        n = ((node **)(void *)(node_ebase(n) + ENT_MAP * maps_nent(dm, nm)))
            [maps_kidx(dm, nm, bit)];
        h >>= CHAMP_BITS;
    }
}

/* remove_u64_owned's cases that move to new blocks: a node of three
 * entries and no children below the root collapses into its parent as a
 * pair (remove_collapse_owned's work, when the parent is the nearest
 * ancestor holding something else), and a node whose room would pass
 * slack_cap moves to an exact block (remove_shrink_owned's).  Entry i of
 * node b at `level` on hash h's path, which m owns; the links to b and its
 * parent are found again from the root (a few loads: cheaper than keeping
 * them in the common case's descent).  Returns false, having changed
 * nothing, when a block is not to be had or the collapse goes higher: the
 * general path then does it (and owns the failure handling). */
static NOINLINE bool remove_u64_owned_move(champ_map *m, uint64_t h, unsigned level,
                                           node *b, uint32_t i, uint32_t bit, size_t sz) {
    const unsigned W = ENT_MAP;
    champ_pool *pool = m->t->pool;
    node **link = &m->root, **up_link = NULL, *up = NULL;
    uint32_t up_bit = 0;
    for (unsigned l = 0; l < level; l++, h >>= CHAMP_BITS) {
        node *n = *link;
        up_link = link;
        up = n;
        up_bit = 1u << (h & 31);
        link = node_full(n) ? &((node **)(void *)node_ebase(n))[h & 31]
                            : node_kid_at(n, up_bit, W);
    }
    CHAMP_ASSERT(*link == b);
    uint32_t ne = node_nent(b), nk = node_nkid(b);
    if (level > 0 && nk == 0 && ne == 3) {
        if (level > 1 && up->datamap == 0 && popc(up->nodemap) == 1)
            return false; /* the pair goes further up */
        entry keep[2] = {ent_get(b, i == 0 ? 1 : 0, W), ent_get(b, i == 2 ? 1 : 2, W)};
        size_t tsz = node_bitmap_size(node_nent(up), node_nkid(up), W);
        node *nt = pool_alloc(pool, tsz + SZ_PAIR_TO_KID(W));
        if (!nt)
            return false;
        node_bitmap_set_slot(m->t, nt, up, up_bit, keep, 2, NULL, false, W);
        *up_link = nt;
        pool_free(pool, up, tsz + 8u * node_slack(up));
        pool_free(pool, b, node_bitmap_size(3, 0, W) + 8u * node_slack(b));
        return true;
    }
    node *nt = pool_alloc(pool, sz);
    if (!nt)
        return false;
    node_bitmap_drop_entry(m->t, nt, b, i, bit, false, W);
    *link = nt;
    pool_free(pool, b, sz + SZ_ENTRY(W) + 8u * node_slack(b));
    return true;
}

/* The common remove in one descent: a plain u64 map that owns every node
 * on the key's path, where the key is absent, or is one entry of a node
 * that shrinks in place (room within slack_cap, not a fixed buffer), moves
 * to an exact block, or (three entries, no children, below the root)
 * collapses into its parent: the last two out of line, in
 * remove_u64_owned_move.  Returns false, having changed nothing, for
 * everything else (the root's last entry, a collapse further up, no block
 * to be had). */
static ALWAYS_INLINE bool remove_u64_owned(champ_map *m, uint64_t key, champ_prior *prior) {
    kq q = kq_u64(m, key);
    owned_at at;
    int r = find_owned_at(m, &q, CHAMP_KEY_U64, &at);
    if (r == OWN_SHARED)
        return false;
    if (r == OWN_ABSENT) {
        prior_none(prior);
        return true;
    }
    node *n = at.n;
    uint32_t ne = node_nent(n), nk = node_nkid(n);
    size_t sz = node_bitmap_size(ne, nk, ENT_MAP) - SZ_ENTRY(ENT_MAP);
    void *v = (void *)(uintptr_t)at.e[1];
    if (UNLIKELY(at.level == 0 && ne == 1 && nk == 0))
        return false; /* the root's last entry: no node at all */
    if (UNLIKELY((at.level > 0 && nk == 0 && ne == 3) ||
                 !shrink_in_place(m->t->pool, n, sz, ENT_MAP))) {
        uint32_t i = (uint32_t)((at.e - ent_at(n, 0, ENT_MAP)) / 2);
        if (!remove_u64_owned_move(m, q.h, at.level, n, i, at.bit, sz))
            return false;
    } else {
        node_shrink_entry(n, at.e, at.bit, sz, ENT_MAP);
    }
    if (prior) {
        prior->found = true;
        prior->val = v;
        prior->key = NULL;
    }
    m->size--;
    m->stamp++;
    POST_UPDATE_CHECK(m);
    return true;
}

/* The plain map's common case (remove_u64_owned) in a leaf function;
 * everything else in remove_u64_slow. */
champ_status champ_remove_u64(champ_map *m, uint64_t key, champ_prior *prior) {
    if (PLAIN(m, CHAMP_KEY_U64) && LIKELY(remove_u64_owned(m, key, prior)))
        return CHAMP_OK;
    return remove_u64_slow(m, key, prior);
}

/* A light derive (pin.c, "Light versions"): a p-form of m (a plain u64
 * map) whose new nodes borrow the children they do not change.  The
 * version names m's root in a pin slot of its own.  When m is a pinned
 * snapshot, its pin keeps the root meanwhile and the version counts
 * nothing shared: not the root, not the children, not the type.  When m
 * is counted, the version takes one count on the root and one on the type
 * (`counted`): two increments (atomic in a concurrent pool) in place of
 * one per child of every node the update copies, and as many decrements
 * when the previous version is freed.  Returns LIGHT_NO_SLOT (nothing
 * done) when the thread has no pin slot free (for a counted m: no more
 * than PIN_KEEP, which stay for snapshots, whose loads would be counted
 * without one). */
#define LIGHT_NO_SLOT ((champ_status)1)
static NOINLINE champ_status light_derive(const champ_map *m, uint64_t key, void *val,
                                          bool remove, champ_map **out) {
    mtype *t = m->t;
    bool counted = !map_pinned(m);
    champ_map *c = champ__handle_alloc(t->pool);
    if (!c)
        return CHAMP_ENOMEM;
    c->t = t;
    /* a counted base's slot only keeps the pointer: in a concurrent pool
     * it leaves PIN_KEEP to snapshots, whose slots are hazard pointers (a
     * plain pool's snapshots are counted: its slots are all for this) */
    uintptr_t *slot = champ__pin_claim(c, counted && t->atomic ? PIN_KEEP : 0);
    if (!slot) {
        champ__handle_free(t->pool, c);
        return LIGHT_NO_SLOT;
    }
    if (!counted) {
        champ__pin_set(t->pool, slot, m->root);
    } else {
        champ__base_set(slot, m->root);
        rc_inc(&m->root->rc, t->atomic);
        if (!t->immortal)
            rc_inc(&t->refs, t->atomic);
        c->lbase = LBASE_COUNT;
    }
    c->root = m->root;
    c->size = m->size;
    c->light = LIGHT_DERIVE;
    kq q = kq_u64(c, key);
    champ_status st = remove ? map_remove(c, &q, NULL, CHAMP_KEY_U64, ENT_MAP)
                             : map_set(c, &q, key, val, NULL, CHAMP_KEY_U64, ENT_MAP);
    __atomic_store_n(&c->light, LIGHT_ON, __ATOMIC_RELEASE);
    if (st != CHAMP_OK) {
        champ_free(c);
        return st;
    }
    /* an update that changed nothing (an absent key removed) or left no
     * root has no light node: settled at once, so that the version's root
     * is never a base it may be updated in place in (a counted base held
     * by this version alone looks owned) */
    if (!c->root || !node_light(c->root))
        champ__light_settle(c);
    *out = c;
    return CHAMP_OK;
}

/* Whether a p-form of m derives a light version: a plain u64 map with a
 * root, of either kind of pool (a light one is settled first, so that a
 * chain of versions each derived from the last, the previous one freed,
 * settles each by taking over its base's counts). */
#define LIGHT_FROM(m)                                                       \
    ((m) != NULL && (m)->root && PLAIN(m, CHAMP_KEY_U64) && (map_settle(m), true))

champ_status champ_pset_u64(const champ_map *m, uint64_t key, void *val,
                            champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    CHECK_KIND(m, CHAMP_KEY_U64);
    if (LIGHT_FROM(m)) {
        champ_status st = light_derive(m, key, val, false, out);
        if (st != LIGHT_NO_SLOT)
            return st;
    }
    PFORM(m, out, champ_set_u64(m_, key, val, NULL));
}

champ_status champ_premove_u64(const champ_map *m, uint64_t key, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    CHECK_KIND(m, CHAMP_KEY_U64);
    if (LIGHT_FROM(m)) {
        champ_status st = light_derive(m, key, NULL, true, out);
        if (st != LIGHT_NO_SLOT)
            return st;
    }
    PFORM(m, out, champ_remove_u64(m_, key, NULL));
}

/* bytes ---------------------------------------------------------------- */

/* A byte key as a query, hashed with the built-in hash (the plain paths:
 * maps without bytes_hash) or the map's own (type_hash_bytes). */
static ALWAYS_INLINE kq kq_bytes_builtin(const champ_map *m, const void *key, size_t len) {
    kq q;
    q.h = champ__hash_bytes(key, len, m->t->seed);
    q.u = 0;
    q.p = key;
    q.len = len;
    return q;
}

static ALWAYS_INLINE kq kq_bytes(const champ_map *m, const void *key, size_t len) {
    kq q;
    q.h = type_hash_bytes(m->t, key, len);
    q.u = 0;
    q.p = key;
    q.len = len;
    return q;
}

static ALWAYS_INLINE bool bytes_ok(const void *key, size_t len) {
    return (key || !len) && len <= UINT32_MAX;
}

#define CHECK_BYTES(key, len)                                               \
    do {                                                                    \
        if (UNLIKELY(!bytes_ok((key), (len))))                              \
            return CHAMP_EINVAL;                                            \
    } while (0)

/* A lookup that runs the map's bytes_hash (user code): framed as a read of
 * m, as generic lookups are. */
static NOINLINE bool get_bytes_framed(const champ_map *m, const void *key, size_t len,
                                      void **val_out) {
    opframe fr;
    op_push(&fr, m, OPF_READ);
    kq q = kq_bytes(m, key, len);
    void *v = NULL;
    bool found = lookup(m, &q, &v, CHAMP_KEY_BYTES);
    if (UNLIKELY(op_pop(&fr))) {
        champ_free((champ_map *)(uintptr_t)m);
        return false;
    }
    if (found && val_out)
        *val_out = v;
    return found;
}

bool champ_get_bytes(const champ_map *m, const void *key, size_t len,
                     void **val_out) {
    LOOKUP_KIND(m, CHAMP_KEY_BYTES);
    if (UNLIKELY(!bytes_ok(key, len)))
        return false;
    if (UNLIKELY(m->t->bytes_hash != NULL))
        return get_bytes_framed(m, key, len, val_out);
    kq q = kq_bytes_builtin(m, key, len);
    return lookup(m, &q, val_out, CHAMP_KEY_BYTES);
}

bool champ_contains_bytes(const champ_map *m, const void *key, size_t len) {
    return champ_get_bytes(m, key, len, NULL);
}

/* Byte-key updates hash inside the update's frame: bytes_hash, if the map
 * has one, is a callback. */
static ALWAYS_INLINE champ_status bytes_set(champ_map *m, const void *key, size_t len,
                                            void *val, champ_prior *prior) {
    kq q = kq_bytes(m, key, len);
    return set_any(m, &q, 0, val, prior, CHAMP_KEY_BYTES);
}

static ALWAYS_INLINE champ_status bytes_add(champ_map *m, const void *key, size_t len,
                                            bool *added) {
    kq q = kq_bytes(m, key, len);
    return add_any(m, &q, 0, added, CHAMP_KEY_BYTES);
}

static ALWAYS_INLINE champ_status bytes_remove(champ_map *m, const void *key, size_t len,
                                               champ_prior *prior) {
    kq q = kq_bytes(m, key, len);
    return remove_any(m, &q, prior, CHAMP_KEY_BYTES);
}

static NOINLINE champ_status set_bytes_slow(champ_map *m, const void *key, size_t len,
                                            void *val, champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    UPDATE(m, bytes_set(m, key, len, val, prior));
}

champ_status champ_set_bytes(champ_map *m, const void *key, size_t len,
                             void *val, champ_prior *prior) {
    if (PLAIN(m, CHAMP_KEY_BYTES) && LIKELY(bytes_ok(key, len))) {
        kq q = kq_bytes_builtin(m, key, len); /* plain: no bytes_hash */
        return map_set(m, &q, 0, val, prior, CHAMP_KEY_BYTES, ENT_MAP);
    }
    return set_bytes_slow(m, key, len, val, prior);
}

champ_status champ_add_bytes(champ_map *m, const void *key, size_t len, bool *added) {
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    UPDATE(m, bytes_add(m, key, len, added));
}

static NOINLINE champ_status remove_bytes_slow(champ_map *m, const void *key,
                                               size_t len, champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    UPDATE(m, bytes_remove(m, key, len, prior));
}

champ_status champ_remove_bytes(champ_map *m, const void *key, size_t len,
                                champ_prior *prior) {
    if (PLAIN(m, CHAMP_KEY_BYTES) && LIKELY(bytes_ok(key, len))) {
        kq q = kq_bytes_builtin(m, key, len); /* plain: no bytes_hash */
        return map_remove(m, &q, prior, CHAMP_KEY_BYTES, ENT_MAP);
    }
    return remove_bytes_slow(m, key, len, prior);
}

champ_status champ_pset_bytes(const champ_map *m, const void *key, size_t len,
                              void *val, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    PFORM(m, out, champ_set_bytes(m_, key, len, val, NULL));
}

champ_status champ_premove_bytes(const champ_map *m, const void *key, size_t len,
                                 champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    PFORM(m, out, champ_remove_bytes(m_, key, len, NULL));
}

bool champ_get_str(const champ_map *m, const char *key, void **val_out) {
    return key && champ_get_bytes(m, key, strlen(key), val_out);
}

bool champ_contains_str(const champ_map *m, const char *key) {
    return key && champ_get_bytes(m, key, strlen(key), NULL);
}

champ_status champ_set_str(champ_map *m, const char *key, void *val,
                           champ_prior *prior) {
    if (!key)
        return CHAMP_EINVAL;
    return champ_set_bytes(m, key, strlen(key), val, prior);
}

champ_status champ_add_str(champ_map *m, const char *key, bool *added) {
    if (!key)
        return CHAMP_EINVAL;
    return champ_add_bytes(m, key, strlen(key), added);
}

champ_status champ_remove_str(champ_map *m, const char *key, champ_prior *prior) {
    if (!key)
        return CHAMP_EINVAL;
    return champ_remove_bytes(m, key, strlen(key), prior);
}

champ_status champ_pset_str(const champ_map *m, const char *key, void *val,
                            champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!key)
        return CHAMP_EINVAL;
    return champ_pset_bytes(m, key, strlen(key), val, out);
}

champ_status champ_premove_str(const champ_map *m, const char *key, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!key)
        return CHAMP_EINVAL;
    return champ_premove_bytes(m, key, strlen(key), out);
}

/* generic -------------------------------------------------------------- */

static ALWAYS_INLINE kq kq_ptr(const champ_map *m, const void *key) {
    kq q;
    q.h = m->t->hash(key, m->t->ctx);
    q.u = (uint64_t)(uintptr_t)key;
    q.p = NULL;
    q.len = 0;
    return q;
}

/* Generic lookups run the user's hash and equal: framed as a read of m. */
bool champ_get(const champ_map *m, const void *key, void **val_out) {
    LOOKUP_KIND(m, CHAMP_KEY_GENERIC);
    opframe fr;
    op_push(&fr, m, OPF_READ);
    kq q = kq_ptr(m, key);
    void *v = NULL;
    bool found = lookup(m, &q, &v, CHAMP_KEY_GENERIC);
    if (UNLIKELY(op_pop(&fr))) {
        champ_free((champ_map *)(uintptr_t)m);
        return false;
    }
    if (found && val_out)
        *val_out = v;
    return found;
}

bool champ_contains(const champ_map *m, const void *key) {
    return champ_get(m, key, NULL);
}

/* Generic updates hash inside the frame: the hash is a callback too. */
#define GENERIC_UPDATE(m, key, expr)                                        \
    do {                                                                    \
        CHECK_KIND(m, CHAMP_KEY_GENERIC);                                   \
        if (op_busy(m))                                                     \
            return CHAMP_EBUSY;                                             \
        opframe fr_;                                                        \
        op_push(&fr_, m, OPF_UPDATE);                                       \
        kq q = kq_ptr(m, key);                                              \
        champ_status st_ = (expr);                                          \
        op_end(&fr_);                                                       \
        return st_;                                                         \
    } while (0)

champ_status champ_set(champ_map *m, void *key, void *val, champ_prior *prior) {
    GENERIC_UPDATE(m, key, set_any(m, &q, q.u, val, prior, CHAMP_KEY_GENERIC));
}

champ_status champ_add(champ_map *m, void *key, bool *added) {
    GENERIC_UPDATE(m, key, add_any(m, &q, q.u, added, CHAMP_KEY_GENERIC));
}

champ_status champ_remove(champ_map *m, const void *key, champ_prior *prior) {
    GENERIC_UPDATE(m, key, remove_any(m, &q, prior, CHAMP_KEY_GENERIC));
}

champ_status champ_pset(const champ_map *m, void *key, void *val, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    CHECK_KIND(m, CHAMP_KEY_GENERIC);
    PFORM(m, out, champ_set(m_, key, val, NULL));
}

champ_status champ_premove(const champ_map *m, const void *key, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    CHECK_KIND(m, CHAMP_KEY_GENERIC);
    PFORM(m, out, champ_remove(m_, key, NULL));
}

/* ------------------------------------------------------------------ */
/* For the key-by-key paths of algebra.c                               */
/* ------------------------------------------------------------------ */

/* Sets (or removes) in m the key of key word k, which belongs to a map of
 * type tx (another hashing, maybe another pool): the key is hashed for m;
 * a byte key is copied, a generic key and the value gain a reference of
 * m's type (m holds them as if copied from a version). */
champ_status champ__set_entry(champ_map *m, uint64_t k, const mtype *tx, void *val,
                              bool remove) {
    const mtype *t = m->t;
    kq q;
    (void)tx;
    switch (t->kind) {
    case CHAMP_KEY_U64:
        q = kq_u64(m, k);
        break;
    case CHAMP_KEY_BYTES:
        q = kq_bytes(m, key_blob(k)->bytes, key_blob(k)->len);
        break;
    default:
        q = kq_ptr(m, (const void *)(uintptr_t)k);
        break;
    }
    if (remove)
        return remove_any(m, &q, NULL, t->kind);
    champ_prior pr;
    if (t->kind == CHAMP_KEY_GENERIC && t->key_retain)
        t->key_retain((void *)(uintptr_t)k, t->ctx);
    if (t->width == ENT_MAP && t->val_retain)
        t->val_retain(val, t->ctx);
    champ_status st = set_any(m, &q, k, t->width == ENT_MAP ? val : NULL, &pr, t->kind);
    if (st != CHAMP_OK || pr.found) {
        /* not inserted: the key reference taken above is not needed */
        if (t->kind == CHAMP_KEY_GENERIC && t->key_release)
            t->key_release((void *)(uintptr_t)k, t->ctx);
    }
    if (st != CHAMP_OK) {
        if (t->width == ENT_MAP && t->val_release)
            t->val_release(val, t->ctx);
    } else if (pr.found && t->width == ENT_MAP && t->val_release) {
        t->val_release(pr.val, t->ctx); /* the replaced value */
    }
    return st;
}

/* ------------------------------------------------------------------ */
/* Upsert and update-with-a-function                                   */
/* ------------------------------------------------------------------ */

/* The value slot of q, inserted (NULL) when absent, on a path m owns.  On
 * a path this map owns alone, one descent.  Otherwise (absent, or present
 * in a node shared with another version) a set makes the path m's own,
 * then a lookup finds the slot. */
/* The entry of q when every node on its path has one reference (the map
 * owns it alone), else NULL. */
static ALWAYS_INLINE uint64_t *find_owned(const champ_map *m, const kq *q,
                                          champ_key_kind kind) {
    owned_at at;
    return find_owned_at(m, q, kind, &at) == OWN_FOUND ? at.e : NULL;
}

static ALWAYS_INLINE champ_status map_upsert(champ_map *m, const kq *q, uint64_t newk,
                                             void ***slot, bool *found,
                                             champ_key_kind kind) {
    const mtype *t = m->t;
    void *cur = NULL;
    bool have = false;
    uint64_t *own = find_owned(m, q, kind);
    if (LIKELY(own != NULL)) {
        *slot = (void **)(void *)(own + 1);
        if (found)
            *found = true;
        return CHAMP_OK;
    }
    if (m->root) {
        path pa;
        if (map_descend(m, q, &pa, kind, ENT_MAP) == AT_MATCH) {
            void **vp = ent_valp(pa.n[pa.depth], (uint32_t)pa.idx);
            if (pa.fs < 0) {
                *slot = vp;
                if (found)
                    *found = true;
                return CHAMP_OK;
            }
            cur = *vp;
            have = true;
        }
    }
    /* Present but shared: store the value again (a reference of our own
     * goes in, the copy's duplicate is released), which copies the path. */
    if (have && t->val_retain)
        t->val_retain(cur, t->ctx);
    champ_status st = map_set(m, q, newk, cur, NULL, kind, ENT_MAP);
    if (st != CHAMP_OK) {
        if (have && t->val_release)
            t->val_release(cur, t->ctx);
        return st;
    }
    const uint64_t *e = node_find(t, m->root, 0, q, kind, ENT_MAP);
    CHAMP_ASSERT(e != NULL);
    *slot = (void **)(uintptr_t)(e + 1);
    if (found)
        *found = have;
    return CHAMP_OK;
}

#define UPSERT_CHECKS(m, slot)                                              \
    do {                                                                    \
        if (UNLIKELY(!(slot)))                                              \
            return CHAMP_EINVAL;                                            \
        if (UNLIKELY((m)->t->width != ENT_MAP))                             \
            return CHAMP_EINVAL;                                            \
    } while (0)

static ALWAYS_INLINE champ_status bytes_upsert(champ_map *m, const void *key, size_t len,
                                               void ***slot, bool *found) {
    kq q = kq_bytes(m, key, len);
    return map_upsert(m, &q, 0, slot, found, CHAMP_KEY_BYTES);
}

static NOINLINE champ_status upsert_u64_slow(champ_map *m, uint64_t key, void ***slot,
                                             bool *found) {
    CHECK_KIND(m, CHAMP_KEY_U64);
    UPSERT_CHECKS(m, slot);
    kq q = kq_u64(m, key);
    UPDATE(m, map_upsert(m, &q, key, slot, found, CHAMP_KEY_U64));
}

/* The counting loop's case (a plain u64 map, the key present on a path it
 * owns) in a leaf function; everything else in upsert_u64_slow. */
champ_status champ_upsert_u64(champ_map *m, uint64_t key, void ***slot, bool *found) {
    if (PLAIN(m, CHAMP_KEY_U64) && LIKELY(slot != NULL)) {
        kq q = kq_u64(m, key);
        uint64_t *own = find_owned(m, &q, CHAMP_KEY_U64);
        if (LIKELY(own != NULL)) {
            *slot = (void **)(void *)(own + 1);
            if (found)
                *found = true;
            return CHAMP_OK;
        }
    }
    return upsert_u64_slow(m, key, slot, found);
}

champ_status champ_upsert_bytes(champ_map *m, const void *key, size_t len, void ***slot,
                                bool *found) {
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    UPSERT_CHECKS(m, slot);
    UPDATE(m, bytes_upsert(m, key, len, slot, found));
}

champ_status champ_upsert(champ_map *m, void *key, void ***slot, bool *found) {
    CHECK_KIND(m, CHAMP_KEY_GENERIC);
    UPSERT_CHECKS(m, slot);
    if (op_busy(m))
        return CHAMP_EBUSY;
    opframe fr;
    op_push(&fr, m, OPF_UPDATE);
    kq q = kq_ptr(m, key);
    champ_status st = map_upsert(m, &q, q.u, slot, found, CHAMP_KEY_GENERIC);
    op_end(&fr);
    return st;
}

/* fn is user code: the update is framed whatever the map's type. */
static champ_status update_with(champ_map *m, const kq *q, uint64_t newk,
                                champ_update_fn fn, void *ctx, champ_key_kind kind) {
    if (op_busy(m))
        return CHAMP_EBUSY;
    opframe fr;
    op_push(&fr, m, OPF_UPDATE);
    kq qq = *q;
    if (kind == CHAMP_KEY_GENERIC)
        qq = kq_ptr(m, (const void *)(uintptr_t)newk);
    else if (kind == CHAMP_KEY_BYTES) /* bytes_hash may be user code */
        qq = kq_bytes(m, q->p, q->len);
    void **slot = NULL; /* set by map_upsert on success (initialized: gcc -O1 cannot see it) */
    bool found = false;
    champ_status st;
    /* An absent key goes in with a placeholder before fn runs (a failed
     * update calls no fn), but not in m: fn, and callbacks of it, may read
     * m and must see it as it was.  So a version of m takes the key, and m
     * takes that version's trie after fn (a path copy: the price of an
     * absent key).  A type that cannot share (a release without a retain)
     * takes the placeholder in m itself. */
    champ_map *into = m;
    if (copyable(m->t) && !lookup(m, &qq, NULL, kind)) {
        map_settle(m);
        into = map_handle(m->t, m->root, m->size);
        if (!into) {
            op_end(&fr);
            return CHAMP_ENOMEM;
        }
        if (into->root)
            rc_inc(&into->root->rc, m->t->atomic);
    }
    switch (kind) {
    case CHAMP_KEY_U64: st = map_upsert(into, &qq, newk, &slot, &found, CHAMP_KEY_U64); break;
    case CHAMP_KEY_BYTES: st = map_upsert(into, &qq, newk, &slot, &found, CHAMP_KEY_BYTES); break;
    default: st = map_upsert(into, &qq, newk, &slot, &found, CHAMP_KEY_GENERIC); break;
    }
    if (st != CHAMP_OK && into != m)
        champ_free(into);
    if (st == CHAMP_OK) {
        const uint64_t *e = (const uint64_t *)(uintptr_t)slot - 1;
        champ_key k;
        fill_key(kind, e[0], &k);
        void *old = *slot;
        void *nv = fn(&k, old, found, ctx);
        *slot = nv;
        if (into != m) {
            /* m takes the version's trie; its own root loses m's reference */
            node *was = m->root;
            m->root = into->root;
            m->size = into->size;
            into->root = NULL;
            into->size = 0;
            champ_free(into);
            if (was)
                map_root_drop(m, was);
        }
        m->stamp++;
        /* the old value goes (an absent key's placeholder was no value) */
        if (found && nv != old && m->t->val_release)
            m->t->val_release(old, m->t->ctx);
    }
    op_end(&fr);
    return st;
}

champ_status champ_update_u64(champ_map *m, uint64_t key, champ_update_fn fn, void *ctx) {
    CHECK_KIND(m, CHAMP_KEY_U64);
    if (!fn || m->t->width != ENT_MAP)
        return CHAMP_EINVAL;
    kq q = kq_u64(m, key);
    return update_with(m, &q, key, fn, ctx, CHAMP_KEY_U64);
}

champ_status champ_update_bytes(champ_map *m, const void *key, size_t len,
                                champ_update_fn fn, void *ctx) {
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    if (!fn || m->t->width != ENT_MAP)
        return CHAMP_EINVAL;
    kq q; /* hashed by update_with, in its frame */
    memset(&q, 0, sizeof q);
    q.p = key;
    q.len = len;
    return update_with(m, &q, 0, fn, ctx, CHAMP_KEY_BYTES);
}

champ_status champ_update(champ_map *m, void *key, champ_update_fn fn, void *ctx) {
    CHECK_KIND(m, CHAMP_KEY_GENERIC);
    if (!fn || m->t->width != ENT_MAP)
        return CHAMP_EINVAL;
    kq q;
    memset(&q, 0, sizeof q);
    return update_with(m, &q, (uint64_t)(uintptr_t)key, fn, ctx, CHAMP_KEY_GENERIC);
}

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
 * 13: a plain array of entries (datamap holds the count).  u64 keys never
 * get there: their hash is a bijection, so distinct keys have distinct
 * hashes.
 *
 * Canonical form.  Remove restores the one shape a set of keys can have: a
 * subtree of exactly two entries is a pair in its parent's slot, of one
 * entry an entry in the slot; so a child node (and a collision node) holds
 * at least three.  A pair keeps its entries in trie order (the order of
 * their first differing 5-bit group; equal hashes in insertion order).
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
 *   map_find                         lookup (loop), all kinds
 *   map_descend                      read-only walk recording the path
 *   map_set / map_remove             plan + commit of an update
 *   node_bitmap_set_slot             any change of one slot (entry, pair,
 *                                    child, empty) into a new block
 *   node_bitmap_{insert_at, drop_entry, copy}
 *   node_collision_{insert, remove, copy}
 *   node_three                       the node holding three keys (a pair
 *                                    meets a third key)
 *   node_drop                        drop a reference, free iteratively
 *   find / set / remove fast paths   inside map_set and map_remove: the
 *                                    common cases on a path the map owns
 * Iteration is in iter.c, stats / validate / dump in check.c, the pool in
 * pool.c, hashes in hash.c.
 */
#include "internal.h"

#include <stdlib.h>

/* ------------------------------------------------------------------ */
/* Entries                                                             */
/* ------------------------------------------------------------------ */

static ALWAYS_INLINE blob *ent_blob(const entry *e) {
    return (blob *)(uintptr_t)e->k;
}

static ALWAYS_INLINE void ent_retain(const mtype *t, const entry *e) {
    if (t->kind == CHAMP_KEY_BYTES)
        ent_blob(e)->rc++;
    else if (t->key_retain)
        t->key_retain((void *)(uintptr_t)e->k, t->ctx);
    if (t->val_retain)
        t->val_retain(e->v, t->ctx);
}

static void key_release(const mtype *t, uint64_t k) {
    if (t->kind == CHAMP_KEY_BYTES) {
        blob *b = (blob *)(uintptr_t)k;
        if (--b->rc == 0)
            pool_free(t->pool, b, blob_size(b->len));
    } else if (t->key_release) {
        t->key_release((void *)(uintptr_t)k, t->ctx);
    }
}

static void ent_release(const mtype *t, const entry *e) {
    key_release(t, e->k);
    if (t->val_release)
        t->val_release(e->v, t->ctx);
}

static ALWAYS_INLINE uint64_t ent_hash(const mtype *t, const entry *e,
                                       champ_key_kind kind) {
    switch (kind) {
    case CHAMP_KEY_U64:
        return hash_u64(e->k, t->seed);
    case CHAMP_KEY_BYTES:
        return ent_blob(e)->hash;
    default:
        return t->hash((const void *)(uintptr_t)e->k, t->ctx);
    }
}

uint64_t champ__entry_hash(const mtype *t, const entry *e) {
    return ent_hash(t, e, t->kind);
}

bool champ__entry_equal(const mtype *t, const entry *a, const entry *b) {
    switch (t->kind) {
    case CHAMP_KEY_U64:
        return a->k == b->k;
    case CHAMP_KEY_BYTES: {
        const blob *x = ent_blob(a), *y = ent_blob(b);
        return x == y || (x->hash == y->hash && x->len == y->len &&
                          memcmp(x->bytes, y->bytes, x->len) == 0);
    }
    default:
        return a->k == b->k ||
               t->equal((const void *)(uintptr_t)a->k,
                        (const void *)(uintptr_t)b->k, t->ctx);
    }
}

/* A key being looked up or inserted. */
typedef struct kq {
    uint64_t h;
    uint64_t u;     /* U64 key; GENERIC key pointer */
    const void *p;  /* BYTES key bytes */
    size_t len;
} kq;

static ALWAYS_INLINE bool kq_match(const mtype *t, const entry *e,
                                   const kq *q, champ_key_kind kind) {
    if (kind == CHAMP_KEY_U64)
        return e->k == q->u;
    if (kind == CHAMP_KEY_BYTES) {
        const blob *b = ent_blob(e);
        return b->hash == q->h && b->len == q->len &&
               (q->len == 0 || memcmp(b->bytes, q->p, q->len) == 0);
    }
    return e->k == q->u ||
           t->equal((const void *)(uintptr_t)e->k,
                    (const void *)(uintptr_t)q->u, t->ctx);
}

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
        char t[16];
        memcpy(t, s + i, 16);
        memcpy(d + i, t, 16);
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
static NOINLINE void node_share_refs(const mtype *t, node *dst,
                                     uint32_t ne, uint32_t nk, uint32_t se,
                                     uint32_t sn, int sk) {
    if (t->ent_refs)
        for (uint32_t i = 0; i < ne; i++)
            if (i - se >= sn) /* i < se or i >= se + sn (unsigned) */
                ent_retain(t, &dst->e[i]);
    node **k = (node **)(void *)(dst->e + ne);
    for (uint32_t i = 0; i < nk; i++)
        k[i]->rc++;
    if (sk >= 0)
        k[sk]->rc--; /* the new child was not duplicated */
}

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
                                               node *c, bool share) {
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
    node **dk = (node **)(void *)(dst->e + dne);
    node *const *sk = (node *const *)(const void *)(src->e + ne);
    wcopy(dst->e, src->e, 16u * ei);
    for (uint32_t j = 0; j < ns; j++)
        dst->e[ei + j] = nes[j];
    wcopy(dst->e + ei + ns, src->e + ei + oe, 16u * (ne - ei - oe) + 8u * ki);
    if (c)
        dk[ki] = c;
    wcopy(dk + ki + nc, sk + ki + ok, 8u * (nk - ki - ok));
    if (share)
        node_share_refs(t, dst, dne, nk - ok + nc, ei, ns, c ? (int)ki : -1);
}

/* dst = src with entry *ne inserted at index wi of e[] and the bitmaps
 * dm/nm (the slot gained an entry: empty -> entry, or entry -> pair). */
static ALWAYS_INLINE void node_bitmap_insert_at(node *dst, const node *src,
                                                uint32_t wi, uint32_t dm,
                                                uint32_t nm, const entry *ne) {
    uint32_t n = node_nent(src), k = node_nkid(src);
    node_init(dst, dm, nm);
    wcopy(dst->e, src->e, 16u * wi);
    dst->e[wi] = *ne;
    wcopy(dst->e + wi + 1, src->e + wi, 16u * (n - wi) + 8u * k);
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
                                                 uint32_t bit, bool share) {
    uint32_t dm = src->datamap, nm = src->nodemap;
    uint32_t ne = maps_nent(dm, nm), nk = maps_nkid(dm, nm);
    maps_drop_entry(&dm, &nm, bit);
    node_init(dst, dm, nm);
    wcopy(dst->e, src->e, 16u * i);
    wcopy(dst->e + i, src->e + i + 1, 16u * (ne - 1 - i) + 8u * nk);
    if (share)
        node_share_refs(t, dst, ne - 1, nk, 0, 0, -1);
}

/* dst = a copy of src (always sharing: src stays). */
static ALWAYS_INLINE void node_bitmap_copy(const mtype *t, node *dst,
                                           const node *src) {
    uint32_t ne = node_nent(src), nk = node_nkid(src);
    node_init(dst, src->datamap, src->nodemap);
    wcopy(dst->e, src->e, 16u * ne + 8u * nk);
    node_share_refs(t, dst, ne, nk, 0, 0, -1);
}

/* Puts two entries whose hashes are ha and hb into trie order at out[]
 * (equal hashes: a first). */
/* Whether the entry hashed ha comes first in a pair with the one hashed
 * hb: trie order, equal hashes in the order given. */
static ALWAYS_INLINE bool pair_first(uint64_t ha, uint64_t hb) {
    return ha == hb || hash_trie_before(ha, hb);
}

static ALWAYS_INLINE void pair_order(entry *out, const entry *a, uint64_t ha,
                                     const entry *b, uint64_t hb) {
    bool swap = !pair_first(ha, hb);
    out[swap] = *a;
    out[!swap] = *b;
}

/* c = the node at `level` holding three entries whose hashes agree on
 * every slice above it but not all on this one (or, at the collision
 * level, agree completely): three entries in three slots, or an entry
 * and a pair. */
static ALWAYS_INLINE void node_three(node *c, unsigned level, const entry *x,
                                     const uint64_t *h) {
    if (level == CHAMP_COLL_LEVEL) {
        node_init(c, 3, 0);
        c->e[0] = x[0];
        c->e[1] = x[1];
        c->e[2] = x[2];
        return;
    }
    uint32_t s[3], dm = 0, nm = 0;
    for (int i = 0; i < 3; i++) {
        s[i] = slice(h[i], level);
        uint32_t bit = 1u << s[i];
        if (dm & bit)
            nm |= bit;
        dm |= bit;
    }
    node_init(c, dm, nm);
    uint32_t k = 0;
    for (uint32_t bits = dm; bits; bits &= bits - 1) {
        uint32_t sl = (uint32_t)__builtin_ctz(bits);
        int a = -1;
        for (int i = 0; i < 3; i++) {
            if (s[i] != sl)
                continue;
            if (a < 0) {
                a = i;
                continue;
            }
            pair_order(&c->e[k], &x[a], h[a], &x[i], h[i]);
            k += 2;
            a = -2;
        }
        if (a >= 0)
            c->e[k++] = x[a];
    }
}

static ALWAYS_INLINE void node_collision_insert(const mtype *t, node *dst,
                                                const node *src,
                                                const entry *ne, bool share) {
    uint32_t n = src->datamap;
    node_init(dst, n + 1, 0);
    wcopy(dst->e, src->e, 16u * n);
    dst->e[n] = *ne;
    if (share)
        node_share_refs(t, dst, n, 0, 0, 0, -1);
}

static ALWAYS_INLINE void node_collision_remove(const mtype *t, node *dst,
                                                const node *src, uint32_t i,
                                                bool share) {
    uint32_t n = src->datamap;
    node_init(dst, n - 1, 0);
    wcopy(dst->e, src->e, 16u * i);
    wcopy(dst->e + i, src->e + i + 1, 16u * (n - 1 - i));
    if (share)
        node_share_refs(t, dst, n - 1, 0, 0, 0, -1);
}

static ALWAYS_INLINE void node_collision_copy(const mtype *t, node *dst,
                                              const node *src) {
    node_init(dst, src->datamap, 0);
    wcopy(dst->e, src->e, 16u * src->datamap);
    node_share_refs(t, dst, src->datamap, 0, 0, 0, -1);
}

/* Drops one reference to n (at `level`); frees it and, iteratively, every
 * node and entry that thereby loses its last reference.  The stack holds,
 * per level, a node being torn down and the next child to visit. */
static void node_drop(const mtype *t, node *n, unsigned level) {
    struct {
        node *n;
        uint32_t next;
    } st[CHAMP_MAX_PATH];
    CHAMP_ASSERT(n->rc > 0);
    if (--n->rc)
        return;
    int sp = 0;
    st[0].n = n;
    st[0].next = 0;
    for (;;) {
        node *x = st[sp].n;
        unsigned lv = level + (unsigned)sp;
        uint32_t nd, nn;
        if (UNLIKELY(lv == CHAMP_COLL_LEVEL)) {
            nd = x->datamap;
            nn = 0;
        } else {
            nd = node_nent(x);
            nn = node_nkid(x);
        }
        uint32_t i = st[sp].next;
        if (i == 0 && t->ent_refs)
            for (uint32_t j = 0; j < nd; j++)
                ent_release(t, &x->e[j]);
        node **kids = (node **)(void *)(x->e + nd);
        node *dead = NULL;
        while (i < nn) {
            node *c = kids[i++];
            CHAMP_ASSERT(c->rc > 0);
            if (--c->rc == 0) {
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
        pool_free(t->pool, x, node_block(x, lv));
        if (sp-- == 0)
            break;
    }
}

/* ------------------------------------------------------------------ */
/* Lookup                                                              */
/* ------------------------------------------------------------------ */

static ALWAYS_INLINE const entry *map_find(const champ_map *m, const kq *q,
                                           champ_key_kind kind) {
    const mtype *t = m->t;
    const node *n = m->root;
    uint64_t h = q->h;
    if (UNLIKELY(!n))
        return NULL;
    for (unsigned level = 0;; level++) {
        if (kind != CHAMP_KEY_U64 && UNLIKELY(level == CHAMP_COLL_LEVEL)) {
            for (uint32_t i = 0; i < n->datamap; i++)
                if (kq_match(t, &n->e[i], q, kind))
                    return &n->e[i];
            return NULL;
        }
        if (node_full(n)) {
            n = ((node *const *)(const void *)n->e)[h & 31];
            h >>= CHAMP_BITS;
            continue;
        }
        uint32_t bit = 1u << (h & 31);
        uint32_t dm = n->datamap, nm = n->nodemap;
        if (dm & bit) {
            const entry *e = &n->e[maps_eidx(dm, nm, bit)];
            if (kq_match(t, e, q, kind))
                return e;
            if ((nm & bit) && kq_match(t, e + 1, q, kind))
                return e + 1; /* the second entry of a pair */
            return NULL;
        }
        if (!(nm & bit))
            return NULL;
        n = ((node *const *)(const void *)(n->e + maps_nent(dm, nm)))[maps_kidx(dm, nm, bit)];
        h >>= CHAMP_BITS;
    }
}

/* ------------------------------------------------------------------ */
/* Updates                                                             */
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
 * entry), a collision node without the key. */
enum { AT_MATCH, AT_EMPTY, AT_OTHER, AT_PAIR, AT_COLL };

/* Read-only walk to where q is or would be.  m->root must not be NULL. */
static ALWAYS_INLINE int map_descend(const champ_map *m, const kq *q, path *pa,
                                     champ_key_kind kind) {
    const mtype *t = m->t;
    node *n = m->root;
    uint64_t h = q->h;
    int fs = -1;
    for (int d = 0;; d++) {
        pa->n[d] = n;
        if (fs < 0 && n->rc > 1)
            fs = d;
        pa->depth = d;
        if (kind != CHAMP_KEY_U64 && UNLIKELY(d == CHAMP_COLL_LEVEL)) {
            pa->fs = fs;
            for (uint32_t i = 0; i < n->datamap; i++)
                if (kq_match(t, &n->e[i], q, kind)) {
                    pa->idx = (int)i;
                    return AT_MATCH;
                }
            pa->idx = -1;
            return AT_COLL;
        }
        uint32_t bit = 1u << (h & 31);
        pa->bit[d] = bit;
        if (node_full(n)) {
            n = ((node **)(void *)n->e)[h & 31];
            h >>= CHAMP_BITS;
            continue;
        }
        uint32_t dm = n->datamap, nm = n->nodemap;
        if (dm & bit) {
            uint32_t i = maps_eidx(dm, nm, bit);
            pa->fs = fs;
            pa->idx = (int)i;
            if (kq_match(t, &n->e[i], q, kind))
                return AT_MATCH;
            if (!(nm & bit))
                return AT_OTHER;
            if (kq_match(t, &n->e[i + 1], q, kind)) {
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
        n = ((node **)(void *)(n->e + maps_nent(dm, nm)))[maps_kidx(dm, nm, bit)];
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
#define POST_UPDATE_CHECK(m) CHAMP_ASSERT(champ_validate(m) == CHAMP_OK)
#else
#define POST_UPDATE_CHECK(m) ((void)0)
#endif

/* Replaces the child of path[j] (j = top-1 ... 0) that led to path[j+1] by
 * `c`, copying the shared ancestors (blocks from pl starting at *k) and
 * swapping the pointer in place in the first unique one. */
static ALWAYS_INLINE void commit_ancestors(champ_map *m, path *pa, int top,
                                           node *c, plan *pl, int k) {
    for (int j = top - 1; j >= 0; j--) {
        node *par = pa->n[j];
        uint32_t bit = pa->bit[j];
        if (pa->fs >= 0 && j >= pa->fs) {
            node *np = pl->blk[k++];
            node_bitmap_set_slot(m->t, np, par, bit, NULL, 0, c, true);
            c = np;
        } else {
            *node_kid_at(par, bit) = c;
            return;
        }
    }
    m->root = c;
}

/* On a path the map owns: node nb takes the place of path node j. */
static ALWAYS_INLINE void path_relink(champ_map *m, const path *pa, int j, node *nb) {
    if (j == 0)
        m->root = nb;
    else
        *node_kid_at(pa->n[j - 1], pa->bit[j - 1]) = nb;
}

/* The end of an insert fast path: the map holds one more entry. */
static ALWAYS_INLINE champ_status inserted(champ_map *m, champ_prior *prior) {
    m->size++;
    m->stamp++;
    if (prior) {
        prior->found = false;
        prior->val = NULL;
        prior->key = NULL;
    }
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

/* Plans the copies of shared ancestors above index `top`. */
static ALWAYS_INLINE void plan_ancestors(const path *pa, int top, plan *pl) {
    if (pa->fs < 0)
        return;
    for (int j = top - 1; j >= pa->fs; j--)
        plan_add(pl, node_size(pa->n[j], (unsigned)j));
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

/* Insert or replace.  newk is the key word to store on insert (U64: the key;
 * GENERIC: the key pointer; BYTES: ignored, a blob is made from q). */
static ALWAYS_INLINE champ_status map_set(champ_map *m, const kq *q,
                                          uint64_t newk, void *val,
                                          champ_prior *prior, champ_key_kind kind) {
    const mtype *t = m->t;
    champ_pool *pool = t->pool;
    path pa;
    plan pl;
    pl.n = 0;
    int at;

    if (UNLIKELY(!m->root)) {
        pa.depth = 0;
        pa.fs = -1;
        pa.idx = -1;
        at = -1;
    } else {
        at = map_descend(m, q, &pa, kind);
    }
    int d = pa.depth;
    node *b = m->root ? pa.n[d] : NULL;

    if (at == AT_MATCH && pa.fs < 0) {
        /* This map alone owns the path: replace the value in place. */
        entry *e = &b->e[pa.idx];
        void *old = e->v;
        e->v = val;
        m->stamp++;
        if (prior) {
            prior->found = true;
            prior->val = old;
            prior->key = NULL;
        } else if (t->val_release) {
            t->val_release(old, t->ctx);
        }
        return CHAMP_OK;
    }

    /* The slot holds another key (alone or in a pair): its hash (computed
     * once, here) decides the order of the new pair or the shape of the
     * subtree the pair becomes. */
    uint64_t he = 0, he1 = 0;
    if (at == AT_OTHER || at == AT_PAIR)
        he = ent_hash(t, &b->e[pa.idx], kind);
    if (at == AT_PAIR)
        he1 = ent_hash(t, &b->e[pa.idx + 1], kind);

    if (LIKELY(pa.fs < 0) && (at == AT_EMPTY || at == AT_OTHER)) {
        /* The common inserts, in a node this map owns: a free slot takes
         * the entry, or the slot's entry and the new one become a pair.
         * Either way the node grows by one entry: in place when it has
         * spare room, else into a block 16 bytes larger. */
        uint32_t bit = pa.bit[d];
        size_t sz = node_size(b, (unsigned)d) + 16u;
        uint32_t ei = node_eidx(b, bit);
        /* where the new entry goes: before or after the slot's entry */
        uint32_t wi = ei + (at == AT_OTHER && pair_first(he, q->h));
        blob *kb = NULL;
        if (kind == CHAMP_KEY_BYTES) {
            kb = pool_alloc(pool, blob_size(q->len));
            if (UNLIKELY(!kb))
                return CHAMP_ENOMEM;
        }
        entry ne;
        ne.v = val;
        if (node_slack(b) >= 2) {
            /* Room left by earlier removes: insert where it is. */
            memmove(&b->e[wi + 1], &b->e[wi], sz - NODE_HDR - 16u * (wi + 1));
            ne.k = kind == CHAMP_KEY_BYTES ? blob_make(kb, q) : newk;
            b->e[wi] = ne;
            if (at == AT_EMPTY)
                b->datamap |= bit;
            else
                b->nodemap |= bit;
            b->aux -= 2;
        } else {
            /* Growing: take spare room along, so the next inserts here
             * are done in place (arena pools only). */
            uint32_t grow = pool->fixed ? 0u : grow_units(sz);
            size_t got = sz;
            node *nb = grow ? pool_alloc_grow(pool, sz, sz + 8u * grow,
                                              grow_take_max(sz), &got)
                            : pool_alloc(pool, sz);
            grow = (uint32_t)(got - sz) / 8u;
            if (UNLIKELY(!nb)) {
                if (kb)
                    pool_free(pool, kb, blob_size(q->len));
                return CHAMP_ENOMEM;
            }
            ne.k = kind == CHAMP_KEY_BYTES ? blob_make(kb, q) : newk;
            if (at == AT_EMPTY)
                node_bitmap_insert_at(nb, b, wi, b->datamap | bit, b->nodemap, &ne);
            else
                node_bitmap_insert_at(nb, b, wi, b->datamap, b->nodemap | bit, &ne);
            nb->aux = grow;
            path_relink(m, &pa, d, nb);
            pool_free(pool, b, sz - 16u + 8u * node_slack(b));
        }
        return inserted(m, prior);
    }

    if (LIKELY(pa.fs < 0) && at == AT_PAIR) {
        /* The slot holds a pair: with the new key, a subtree of three.
         * Fast when the three part one level down (no links needed): one
         * new three-entry node, and the owned node trades the pair for a
         * child pointer (24 bytes smaller). */
        unsigned l1 = (unsigned)d + 1;
        if (l1 <= CHAMP_LAST_LEVEL &&
            !(slice(he, l1) == slice(q->h, l1) && slice(he1, l1) == slice(q->h, l1))) {
            uint32_t bit = pa.bit[d];
            size_t sz = node_size(b, (unsigned)d) - 24u;
            blob *kb = NULL;
            if (kind == CHAMP_KEY_BYTES) {
                kb = pool_alloc(pool, blob_size(q->len));
                if (UNLIKELY(!kb))
                    return CHAMP_ENOMEM;
            }
            /* The node shrinks where it is (the 24 bytes join its spare
             * room) unless that makes the room bigger than the node, or
             * the pool is a fixed buffer: then it is copied exact. */
            bool inplace = !pool->fixed && node_slack(b) + 3u <= slack_cap(sz);
            node *c = pool_alloc(pool, NODE_HDR + 48u);
            node *nb = c && !inplace ? pool_alloc(pool, sz) : NULL;
            if (UNLIKELY(!c || (!inplace && !nb))) {
                if (c)
                    pool_free(pool, c, NODE_HDR + 48u);
                if (kb)
                    pool_free(pool, kb, blob_size(q->len));
                return CHAMP_ENOMEM;
            }
            entry x[3];
            uint64_t hx[3] = {he, he1, q->h};
            x[0] = b->e[pa.idx];
            x[1] = b->e[pa.idx + 1];
            x[2].k = kind == CHAMP_KEY_BYTES ? blob_make(kb, q) : newk;
            x[2].v = val;
            node_three(c, l1, x, hx);
            if (inplace) {
                uint32_t ne = node_nent(b), nk = node_nkid(b);
                uint32_t ei = (uint32_t)pa.idx, ki = node_kidx(b, bit);
                char *base = (char *)b->e;
                /* entries after the pair and children before ki: 32 down;
                 * children from ki on: 24 down, after the new pointer */
                memmove(base + 16u * ei, base + 16u * (ei + 2),
                        16u * (ne - ei - 2) + 8u * ki);
                memmove(base + 16u * (ne - 2) + 8u * (ki + 1), base + 16u * ne + 8u * ki,
                        8u * (nk - ki));
                memcpy(base + 16u * (ne - 2) + 8u * ki, &c, sizeof c);
                b->datamap &= ~bit;
                b->aux += 3;
            } else {
                node_bitmap_set_slot(t, nb, b, bit, NULL, 0, c, false);
                path_relink(m, &pa, d, nb);
                pool_free(pool, b, node_block(b, (unsigned)d));
            }
            return inserted(m, prior);
        }
    }

    /* Plan. */
    bool share = pa.fs >= 0; /* the bottom node stays alive for someone else */
    unsigned three_level = 0;
    uint64_t th[3];
    int kblob = -1;
    if (kind == CHAMP_KEY_BYTES && at != AT_MATCH) {
        kblob = pl.n;
        plan_add(&pl, blob_size(q->len));
    }
    int kbottom = pl.n;
    switch (at) {
    case -1:
        plan_add(&pl, node_bitmap_size(1, 0));
        break;
    case AT_MATCH:
        plan_add(&pl, node_size(b, (unsigned)d));
        break;
    case AT_EMPTY:
    case AT_OTHER:
        plan_add(&pl, node_size(b, (unsigned)d) + 16u);
        break;
    case AT_COLL:
        plan_add(&pl, NODE_HDR + 16u * (size_t)(b->datamap + 1));
        break;
    default: /* AT_PAIR: the pair and the new key become a subtree */
        th[0] = he;
        th[1] = he1;
        th[2] = q->h;
        plan_add(&pl, node_size(b, (unsigned)d) - 24u); /* pair -> child */
        three_level = (unsigned)d + 1;
        while (three_level <= CHAMP_LAST_LEVEL &&
               slice(th[0], three_level) == slice(th[2], three_level) &&
               slice(th[1], three_level) == slice(th[2], three_level)) {
            plan_add(&pl, node_bitmap_size(0, 1)); /* a one-child link */
            three_level++;
        }
        plan_add(&pl, NODE_HDR + 48u); /* three entries, any layout */
        break;
    }
    int kanc = pl.n;
    plan_ancestors(&pa, d, &pl);
    if (UNLIKELY(!plan_alloc(pool, &pl)))
        return CHAMP_ENOMEM;

    /* Commit: nothing below can fail. */
    entry ne;
    ne.v = val;
    if (kind == CHAMP_KEY_BYTES && kblob >= 0) {
        ne.k = blob_make(pl.blk[kblob], q);
    } else {
        ne.k = newk;
    }
    node *nb = pl.blk[kbottom];
    void *old = NULL;
    bool replaced = false;
    switch (at) {
    case -1:
        node_init(nb, 1u << (q->h & 31), 0);
        nb->e[0] = ne;
        break;
    case AT_MATCH: /* shared: copy with the value replaced */
        if (d == CHAMP_COLL_LEVEL)
            node_collision_copy(t, nb, b);
        else
            node_bitmap_copy(t, nb, b);
        old = nb->e[pa.idx].v; /* the copy took a reference for us */
        nb->e[pa.idx].v = val;
        replaced = true;
        break;
    case AT_EMPTY:
        node_bitmap_set_slot(t, nb, b, pa.bit[d], &ne, 1, NULL, share);
        break;
    case AT_OTHER: {
        entry pr[2];
        if (share && t->ent_refs)
            ent_retain(t, &b->e[pa.idx]);
        pair_order(pr, &b->e[pa.idx], he, &ne, q->h);
        node_bitmap_set_slot(t, nb, b, pa.bit[d], pr, 2, NULL, share);
        break;
    }
    case AT_COLL:
        node_collision_insert(t, nb, b, &ne, share);
        break;
    default: {
        /* AT_PAIR: build the subtree bottom-up (the three-entry node, then
         * the links above it), then hang it where the pair was. */
        entry x[3];
        x[0] = b->e[pa.idx];
        x[1] = b->e[pa.idx + 1];
        x[2] = ne;
        if (share && t->ent_refs) {
            ent_retain(t, &x[0]);
            ent_retain(t, &x[1]);
        }
        int k = kanc - 1;
        node *c = pl.blk[k--];
        node_three(c, three_level, x, th);
        for (unsigned l = three_level - 1; l > (unsigned)d; l--) {
            node *up = pl.blk[k--];
            node_init(up, 0, 1u << slice(q->h, l));
            node_kids(up)[0] = c;
            c = up;
        }
        node_bitmap_set_slot(t, nb, b, pa.bit[d], NULL, 0, c, share);
        break;
    }
    }
    if (at == -1)
        m->root = nb;
    else
        commit_ancestors(m, &pa, d, nb, &pl, kanc);
    if (!replaced)
        m->size++;
    m->stamp++;
    /* The first shared node loses this map's reference.  A callback that
     * ran during this update may have freed the version it shared the node
     * with: then this was the last reference, and the node goes (what the
     * copies above duplicated was retained, so nothing is lost twice). */
    if (pa.fs >= 0)
        node_drop(t, pa.n[pa.fs], (unsigned)pa.fs);
    else if (b)
        pool_free(pool, b, node_block(b, (unsigned)d));
    if (prior) {
        prior->found = replaced;
        prior->val = old;
        prior->key = NULL;
    } else if (replaced && t->val_release) {
        t->val_release(old, t->ctx);
    }
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

/* The removed entry: ours to hand over if the bottom node was ours (else
 * released), or, if the node is still shared with another map, a new
 * reference for the caller. */
static ALWAYS_INLINE void removed_hand_back(const mtype *t, const entry *gone,
                                            bool shared, champ_prior *prior,
                                            champ_key_kind kind) {
    if (!prior) {
        if (!shared) {
            if (kind != CHAMP_KEY_U64) /* u64 keys hold nothing */
                key_release(t, gone->k);
            if (t->val_release)
                t->val_release(gone->v, t->ctx);
        }
        return;
    }
    prior->found = true;
    prior->val = gone->v;
    prior->key = kind == CHAMP_KEY_GENERIC ? (void *)(uintptr_t)gone->k : NULL;
    if (shared) {
        /* the node still holds them: the caller gets references of its own */
        if (kind == CHAMP_KEY_GENERIC && t->key_retain)
            t->key_retain((void *)(uintptr_t)gone->k, t->ctx);
        if (t->val_retain)
            t->val_retain(gone->v, t->ctx);
    } else if (kind == CHAMP_KEY_BYTES) {
        key_release(t, gone->k); /* the map's copy of the key */
    }
}

/* The end of a remove fast path (the bottom node was ours). */
static ALWAYS_INLINE champ_status removed_owned(champ_map *m, const entry *gone,
                                               champ_prior *prior,
                                               champ_key_kind kind) {
    m->size--;
    m->stamp++;
    removed_hand_back(m->t, gone, false, prior, kind);
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

/* Remove.  With prior, hands back the stored key and value (with a
 * reference the caller owns); releases them otherwise. */
static ALWAYS_INLINE champ_status map_remove(champ_map *m, const kq *q,
                                             champ_prior *prior,
                                             champ_key_kind kind) {
    const mtype *t = m->t;
    champ_pool *pool = t->pool;
    path pa;
    plan pl;
    pl.n = 0;
    if (UNLIKELY(!m->root) || map_descend(m, q, &pa, kind) != AT_MATCH) {
        if (prior) {
            prior->found = false;
            prior->val = NULL;
            prior->key = NULL;
        }
        return CHAMP_OK;
    }
    int d = pa.depth;
    node *b = pa.n[d];
    uint32_t i = (uint32_t)pa.idx;
    entry gone = b->e[i];

    /* Where does the change stop?  A node below the root whose subtree
     * falls to two entries becomes a pair in the nearest ancestor that
     * holds something else: top is that ancestor, and the nodes below it
     * on the path (top+1 .. d) disappear.  Otherwise top = d. */
    int top = d;
    bool collapse = false;
    if (d == CHAMP_COLL_LEVEL)
        collapse = b->datamap == 3;
    else if (d > 0)
        collapse = node_nkid(b) == 0 && node_nent(b) == 3;
    entry keep[2];
    if (collapse) {
        /* the two survivors, in array order: already trie order */
        keep[0] = b->e[i == 0 ? 1 : 0];
        keep[1] = b->e[i == 2 ? 1 : 2];
        top = d - 1;
        while (top > 0 && pa.n[top]->datamap == 0 && popc(pa.n[top]->nodemap) == 1)
            top--;
        size_t tsz = node_size(pa.n[top], (unsigned)top) + 24u; /* child -> pair */
        if (LIKELY(pa.fs < 0) && top == d - 1) {
            /* The common collapse: the bottom node (three entries, owned)
             * goes and its parent takes the surviving pair in its place. */
            node *tn = pa.n[top];
            node *nt = pool_alloc(pool, tsz);
            if (nt) {
                node_bitmap_set_slot(t, nt, tn, pa.bit[top], keep, 2, NULL, false);
                path_relink(m, &pa, top, nt);
                pool_free(pool, tn, node_block(tn, (unsigned)top));
                pool_free(pool, b, node_block(b, (unsigned)d));
                return removed_owned(m, &gone, prior, kind);
            }
        }
        plan_add(&pl, tsz);
    } else if (d == 0 && node_nent(b) == 1 && node_nkid(b) == 0) {
        /* the root loses its last entry: no node at all */
    } else if (d == CHAMP_COLL_LEVEL) {
        if (LIKELY(pa.fs < 0) && node_size(b, (unsigned)d) <= POOL_CLASS_MAX) {
            /* An owned collision node shrinks where it is and gives its
             * last 16 bytes back: no allocation, so it cannot fail. */
            uint32_t n = b->datamap;
            memmove(&b->e[i], &b->e[i + 1], 16u * (n - 1 - i));
            b->datamap = n - 1;
            pool_free(pool, &b->e[n - 1], 16u);
            return removed_owned(m, &gone, prior, kind);
        }
        plan_add(&pl, NODE_HDR + 16u * (size_t)(b->datamap - 1));
    } else {
        size_t sz = node_size(b, (unsigned)d) - 16u;
        if (LIKELY(pa.fs < 0)) {
            /* The common remove: one entry out of a node this map owns.
             * While its block has little spare room, shrink it in place
             * (the room serves later inserts).  Otherwise copy into an
             * exact block; when that fails, and always in a fixed buffer,
             * shrink in place and give the freed room back to the pool, so
             * a map that owns its nodes can always be drained. */
            node *nt = NULL;
            bool full = false;
            if (pool->fixed || node_slack(b) + 2u > slack_cap(sz)) {
                /* (a fixed buffer keeps no spare room in nodes) */
                nt = pool_alloc(pool, sz);
                full = nt == NULL;
            }
            if (!nt) {
                memmove(&b->e[i], &b->e[i + 1], sz - NODE_HDR - 16u * i);
                maps_drop_entry(&b->datamap, &b->nodemap, pa.bit[d]);
                if (full) {
                    /* the pool is short of memory: give the room back */
                    pool_free(pool, (char *)b + sz, 16u + 8u * node_slack(b));
                    b->aux &= ~SLACK_MASK;
                } else {
                    b->aux += 2;
                }
                return removed_owned(m, &gone, prior, kind);
            }
            node_bitmap_drop_entry(t, nt, b, i, pa.bit[d], false);
            path_relink(m, &pa, d, nt);
            pool_free(pool, b, sz + 16u + 8u * node_slack(b));
            return removed_owned(m, &gone, prior, kind);
        }
        plan_add(&pl, sz);
    }
    int kanc = pl.n;
    plan_ancestors(&pa, top, &pl);
    if (UNLIKELY(!plan_alloc(pool, &pl)))
        return CHAMP_ENOMEM;

    /* Commit. */
    bool share_b = pa.fs >= 0;
    node *nt = pl.n ? pl.blk[0] : NULL;
    if (collapse) {
        if (share_b && t->ent_refs) {
            ent_retain(t, &keep[0]);
            ent_retain(t, &keep[1]);
        }
        bool share_t = pa.fs >= 0 && top >= pa.fs;
        node_bitmap_set_slot(t, nt, pa.n[top], pa.bit[top], keep, 2, NULL, share_t);
    } else if (nt) {
        if (d == CHAMP_COLL_LEVEL)
            node_collision_remove(t, nt, b, i, share_b);
        else
            node_bitmap_drop_entry(t, nt, b, i, pa.bit[d], share_b);
    }
    if (nt)
        commit_ancestors(m, &pa, top, nt, &pl, kanc);
    else
        m->root = NULL;
    m->size--;
    m->stamp++;
    /* Hand the entry over before the old nodes go: if they were shared,
     * the caller's references are taken while the node still holds it. */
    removed_hand_back(t, &gone, share_b, prior, kind);
    /* Drop the old nodes top..d: unique ones are freed (their contents
     * moved or were handed over), and the first shared one (on this part
     * of the path or above it) loses this map's reference, which may be
     * its last if a callback freed the version it shared it with. */
    for (int j = top; j <= d; j++) {
        if (pa.fs >= 0 && j >= pa.fs)
            break;
        pool_free(pool, pa.n[j], node_block(pa.n[j], (unsigned)j));
    }
    if (pa.fs >= 0)
        node_drop(t, pa.n[pa.fs], (unsigned)pa.fs);
    POST_UPDATE_CHECK(m);
    return CHAMP_OK;
}

/* ------------------------------------------------------------------ */
/* Maps                                                                */
/* ------------------------------------------------------------------ */

_Thread_local opframe *champ__ops;

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

/* Whether m has an operation in flight on this thread that writes it (an
 * update or a free, not a lookup): then m must not be copied. */
static bool op_writing(const champ_map *m) {
    for (opframe *f = champ__ops; f; f = f->up)
        if (f->m == m && f->what != OPF_READ)
            return true;
    return false;
}

#define TYPE_BYTES ((sizeof(mtype) + 7u) & ~(size_t)7)

static void map_link(champ_pool *p, champ_map *m) {
    m->prev = NULL;
    m->next = p->maps;
    if (p->maps)
        p->maps->prev = m;
    p->maps = m;
    p->nmaps++;
}

static void map_unlink(champ_pool *p, champ_map *m) {
    if (m->prev)
        m->prev->next = m->next;
    else
        p->maps = m->next;
    if (m->next)
        m->next->prev = m->prev;
    p->nmaps--;
}

/* A new handle of type t (which gains a reference), or NULL. */
static champ_map *map_handle(mtype *t, node *root, size_t size) {
    champ_pool *p = t->pool;
    champ_map *m = pool_alloc(p, p->map_bytes);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->root = root;
    m->size = size;
    m->t = t;
    t->refs++;
    map_link(p, m);
    return m;
}

/* A type holds a reference to its pool; the last map of a type frees it. */
static mtype *type_new(champ_pool *p, const champ_config *c) {
    mtype *t = pool_alloc(p, TYPE_BYTES);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->kind = c->kind;
    t->pool = p;
    t->seed = c->fixed_seed ? c->seed : champ__random_seed();
    t->hash = c->hash;
    t->equal = c->equal;
    t->key_retain = c->key_retain;
    t->key_release = c->key_release;
    t->val_retain = c->val_retain;
    t->val_release = c->val_release;
    t->ctx = c->ctx;
    t->ent_refs = c->kind == CHAMP_KEY_BYTES || c->key_retain || c->key_release ||
                  c->val_retain || c->val_release;
    t->calls_out = c->kind == CHAMP_KEY_GENERIC || c->key_retain || c->key_release ||
                   c->val_retain || c->val_release || p->on_mark;
    p->refs++;
    p->ntypes++;
    return t;
}

static void type_release(mtype *t) {
    if (--t->refs)
        return;
    champ_pool *p = t->pool;
    pool_free(p, t, TYPE_BYTES);
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

/* The first layout of champ_config with a size field (version 0.2). */
#define CONFIG_MIN_SIZE sizeof(champ_config)

static bool cfg_valid(const champ_config *c) {
    switch (c->kind) {
    case CHAMP_KEY_U64:
    case CHAMP_KEY_BYTES:
        if (c->hash || c->equal || c->key_retain || c->key_release)
            return false;
        break;
    case CHAMP_KEY_GENERIC:
        if (!c->hash || !c->equal)
            return false;
        break;
    default:
        return false;
    }
    if (c->pool && c->pool_config)
        return false;
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
        type_release(t);
    }
    if (!c.pool)
        champ__pool_release(p); /* the type holds the pool now */
    if (!m)
        return CHAMP_ENOMEM;
    *out = m;
    return CHAMP_OK;
}

champ_status champ_new_u64(champ_map **out) {
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    return champ_new(&c, out);
}

champ_status champ_new_bytes(champ_map **out) {
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_BYTES);
    return champ_new(&c, out);
}

champ_status champ_new_like(const champ_map *m, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!m)
        return CHAMP_EINVAL;
    champ_map *c = map_handle(m->t, NULL, 0);
    if (!c)
        return CHAMP_ENOMEM;
    *out = c;
    return CHAMP_OK;
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
    node *r = m->root;
    m->root = NULL;
    m->size = 0;
    m->stamp++;
    if (r) {
        if (t->calls_out) {
            opframe fr;
            op_push(&fr, m, OPF_FREE);
            node_drop(t, r, 0);
            op_pop(&fr);
        } else {
            node_drop(t, r, 0);
        }
    }
    map_unlink(p, m);
    pool_free(p, m, p->map_bytes);
    type_release(t);
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
    champ_map *c = map_handle(m->t, m->root, m->size);
    if (!c)
        return CHAMP_ENOMEM;
    if (c->root)
        c->root->rc++;
    *out = c;
    return CHAMP_OK;
}

champ_status champ_clear(champ_map *m) {
    if (!m)
        return CHAMP_EINVAL;
    if (op_busy(m))
        return CHAMP_EBUSY;
    node *r = m->root;
    m->root = NULL;
    m->size = 0;
    m->stamp++;
    if (r) {
        if (m->t->calls_out) {
            opframe fr;
            op_push(&fr, m, OPF_UPDATE);
            node_drop(m->t, r, 0);
            op_end(&fr);
        } else {
            node_drop(m->t, r, 0);
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
#define PFORM(m, out, update)                                               \
    do {                                                                    \
        champ_map *c_;                                                      \
        champ_status s_ = champ_copy((m), &c_);                             \
        if (s_ != CHAMP_OK)                                                 \
            return s_;                                                      \
        champ_map *m_ = c_;                                                 \
        opframe fr_;                                                        \
        bool framed_ = (m)->t->calls_out;                                   \
        if (framed_)                                                        \
            op_push(&fr_, (m), OPF_READ);                                   \
        s_ = (update);                                                      \
        if (s_ != CHAMP_OK)                                                 \
            champ_free(c_);                                                 \
        else                                                                \
            *(out) = c_;                                                    \
        if (framed_)                                                        \
            op_end(&fr_);                                                   \
        return s_;                                                          \
    } while (0)

/* u64 ------------------------------------------------------------------ */

static ALWAYS_INLINE kq kq_u64(const champ_map *m, uint64_t key) {
    kq q;
    q.h = hash_u64(key, m->t->seed);
    q.u = key;
    q.p = NULL;
    q.len = 0;
    return q;
}

bool champ_get_u64(const champ_map *m, uint64_t key, void **val_out) {
    LOOKUP_KIND(m, CHAMP_KEY_U64);
    kq q = kq_u64(m, key);
    const entry *e = map_find(m, &q, CHAMP_KEY_U64);
    if (!e)
        return false;
    if (val_out)
        *val_out = e->v;
    return true;
}

bool champ_contains_u64(const champ_map *m, uint64_t key) {
    return champ_get_u64(m, key, NULL);
}

champ_status champ_set_u64(champ_map *m, uint64_t key, void *val, champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_U64);
    kq q = kq_u64(m, key);
    UPDATE(m, map_set(m, &q, key, val, prior, CHAMP_KEY_U64));
}

champ_status champ_remove_u64(champ_map *m, uint64_t key, champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_U64);
    kq q = kq_u64(m, key);
    UPDATE(m, map_remove(m, &q, prior, CHAMP_KEY_U64));
}

champ_status champ_pset_u64(const champ_map *m, uint64_t key, void *val,
                            champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    CHECK_KIND(m, CHAMP_KEY_U64);
    PFORM(m, out, champ_set_u64(m_, key, val, NULL));
}

champ_status champ_premove_u64(const champ_map *m, uint64_t key, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    CHECK_KIND(m, CHAMP_KEY_U64);
    PFORM(m, out, champ_remove_u64(m_, key, NULL));
}

/* bytes ---------------------------------------------------------------- */

static ALWAYS_INLINE kq kq_bytes(const champ_map *m, const void *key, size_t len) {
    kq q;
    q.h = champ__hash_bytes(key, len, m->t->seed);
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

bool champ_get_bytes(const champ_map *m, const void *key, size_t len,
                     void **val_out) {
    LOOKUP_KIND(m, CHAMP_KEY_BYTES);
    if (UNLIKELY(!bytes_ok(key, len)))
        return false;
    kq q = kq_bytes(m, key, len);
    const entry *e = map_find(m, &q, CHAMP_KEY_BYTES);
    if (!e)
        return false;
    if (val_out)
        *val_out = e->v;
    return true;
}

bool champ_contains_bytes(const champ_map *m, const void *key, size_t len) {
    return champ_get_bytes(m, key, len, NULL);
}

champ_status champ_set_bytes(champ_map *m, const void *key, size_t len,
                             void *val, champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    kq q = kq_bytes(m, key, len);
    UPDATE(m, map_set(m, &q, 0, val, prior, CHAMP_KEY_BYTES));
}

champ_status champ_remove_bytes(champ_map *m, const void *key, size_t len,
                                champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_BYTES);
    CHECK_BYTES(key, len);
    kq q = kq_bytes(m, key, len);
    UPDATE(m, map_remove(m, &q, prior, CHAMP_KEY_BYTES));
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
    const entry *e = map_find(m, &q, CHAMP_KEY_GENERIC);
    void *v = e ? e->v : NULL;
    if (UNLIKELY(op_pop(&fr))) {
        champ_free((champ_map *)(uintptr_t)m);
        return false;
    }
    if (!e)
        return false;
    if (val_out)
        *val_out = v;
    return true;
}

bool champ_contains(const champ_map *m, const void *key) {
    return champ_get(m, key, NULL);
}

/* Generic updates hash inside the frame: the hash is a callback too. */
champ_status champ_set(champ_map *m, void *key, void *val, champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_GENERIC);
    if (op_busy(m))
        return CHAMP_EBUSY;
    opframe fr;
    op_push(&fr, m, OPF_UPDATE);
    kq q = kq_ptr(m, key);
    champ_status st = map_set(m, &q, q.u, val, prior, CHAMP_KEY_GENERIC);
    op_end(&fr);
    return st;
}

champ_status champ_remove(champ_map *m, const void *key, champ_prior *prior) {
    CHECK_KIND(m, CHAMP_KEY_GENERIC);
    if (op_busy(m))
        return CHAMP_EBUSY;
    opframe fr;
    op_push(&fr, m, OPF_UPDATE);
    kq q = kq_ptr(m, key);
    champ_status st = map_remove(m, &q, prior, CHAMP_KEY_GENERIC);
    op_end(&fr);
    return st;
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

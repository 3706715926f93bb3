/*
 * many.c - batched lookups: many independent lookups walked in lockstep.
 *
 * One lookup in a big trie is a chain of dependent loads: each level's
 * node address comes from the level above, so a lookup waits for one cache
 * miss per level.  A batch of lookups need not wait for each chain in
 * turn.  The batch is cut into groups of GROUP lookups; each round moves
 * every unfinished lookup of the group down one level and prefetches the
 * node it will read next, then goes on to the next lookup: by the time the
 * round comes back to a lookup, its node has (mostly) arrived.  The misses
 * of a group overlap, so a batch costs about one miss per level per group
 * instead of one per level per key.  Lookups finish at different depths;
 * a finished slot takes the next key of the batch, so the group stays
 * full until the batch runs out.  A trie small enough to stay in cache has
 * no misses to overlap; there the batch is plain lookups one after another
 * (champ__many_direct).
 */
#include "internal.h"

#define GROUP 16

size_t champ__many_direct = 131072;

typedef struct lk {
    const node *n;  /* the node to look at next (prefetched)  */
    uint64_t h;     /* the hash, shifted to the node's level   */
    unsigned level;
    size_t i;       /* the key's index in the batch            */
    kq q;
} lk;

/* One level of one lookup: true when it finished, with *hit the entry
 * found or NULL; false when it moved down (and prefetched the next node). */
static ALWAYS_INLINE bool lk_step(const mtype *t, lk *s, const uint64_t **hit,
                                  champ_key_kind kind, unsigned W) {
    const node *n = s->n;
    *hit = NULL;
    if (kind != CHAMP_KEY_U64 && UNLIKELY(s->level == CHAMP_COLL_LEVEL)) {
        for (uint32_t j = 0; j < n->datamap; j++)
            if (kq_match(t, ent_key(n, j, W), &s->q, kind)) {
                *hit = ent_at(n, j, W);
                return true;
            }
        return true;
    }
    const node *next;
    if (node_full(n)) {
        next = ((node *const *)(const void *)node_ebase(n))[s->h & 31];
    } else {
        uint32_t bit = 1u << (s->h & 31);
        uint32_t dm = n->datamap, nm = n->nodemap;
        if (dm & bit) {
            const uint64_t *e = ent_at(n, maps_eidx(dm, nm, bit), W);
            if (kq_match(t, e[0], &s->q, kind)) {
                *hit = e;
            } else if (nm & bit) {
                e += W / 8u;
                if (kq_match(t, e[0], &s->q, kind))
                    *hit = e;
            }
            return true;
        }
        if (!(nm & bit))
            return true;
        next = ((node *const *)(const void *)(node_ebase(n) + (size_t)W * maps_nent(dm, nm)))
            [maps_kidx(dm, nm, bit)];
    }
    /* the header, and the line the next step reads if next is a full node
     * (its child pointer for the next slice); for other nodes the line
     * after the header, where their first entries and pointers are */
    s->h >>= CHAMP_BITS;
    __builtin_prefetch(next);
    __builtin_prefetch((const char *)next + NODE_HDR + KID_BYTES * (s->h & 31));
    s->n = next;
    s->level++;
    return false;
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
    lk g[GROUP];
    size_t next = 0, active = 0;
    /* fill the group */
    while (active < GROUP && next < n) {
        g[active].n = m->root;
        g[active].level = 0;
        g[active].i = next;
        g[active].q = many_kq(m, keys, ptrs, lens, next, kind);
        g[active].h = g[active].q.h;
        next++;
        active++;
    }
    while (active) {
        for (size_t j = 0; j < active;) {
            const uint64_t *e;
            if (!lk_step(t, &g[j], &e, kind, W)) {
                j++;
                continue;
            }
            many_out(e, g[j].i, vals, found, &nfound, W);
            /* done: the slot takes the next key, or the last slot's lookup */
            if (next < n) {
                g[j].n = m->root;
                g[j].level = 0;
                g[j].i = next;
                g[j].q = many_kq(m, keys, ptrs, lens, next, kind);
                g[j].h = g[j].q.h;
                next++;
                j++;
            } else {
                g[j] = g[--active];
            }
        }
    }
    return nfound;
}

/* A batch that finds nothing (bad input, or m freed by a callback). */
static size_t many_none(size_t n, bool *found) {
    if (found)
        for (size_t i = 0; i < n; i++)
            found[i] = false;
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
        return many_none(n, found);
    }
    return r;
}

size_t champ_get_many_u64(const champ_map *m, const uint64_t *keys, size_t n, void **vals,
                          bool *found) {
    if (!m || (!keys && n) || m->t->kind != CHAMP_KEY_U64)
        return many_none(n, found);
    return many_any(m, keys, NULL, NULL, n, vals, found, CHAMP_KEY_U64);
}

size_t champ_get_many_bytes(const champ_map *m, const void *const *keys, const size_t *lens,
                            size_t n, void **vals, bool *found) {
    bool bad = !m || (n && (!keys || !lens)) || m->t->kind != CHAMP_KEY_BYTES;
    for (size_t i = 0; i < n && !bad; i++)
        bad = (!keys[i] && lens[i]) || lens[i] > UINT32_MAX;
    if (bad)
        return many_none(n, found);
    if (UNLIKELY(m->t->bytes_hash != NULL)) /* user code */
        return many_framed(m, keys, lens, n, vals, found, CHAMP_KEY_BYTES);
    return many_any(m, NULL, keys, lens, n, vals, found, CHAMP_KEY_BYTES);
}

size_t champ_get_many(const champ_map *m, const void *const *keys, size_t n, void **vals,
                      bool *found) {
    if (!m || (!keys && n) || m->t->kind != CHAMP_KEY_GENERIC)
        return many_none(n, found);
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

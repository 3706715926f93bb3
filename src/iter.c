/*
 * iter.c - iteration without allocation.
 *
 * A path is at most 14 nodes long (13 bitmap levels and a collision node),
 * so the iterator keeps its whole stack in a fixed array: for each level the
 * node and a position that runs over the node's entries first and then its
 * children (CHAMP's entries-first layout makes the entries of a node one
 * contiguous run of W-byte entries).
 */
#include "internal.h"

/* Entering a node's children: ask for all of them at once.  In a big trie
 * they are scattered over memory; fetched one by one, each would be a
 * dependent miss, while these requests overlap. */
static ALWAYS_INLINE void prefetch_kids(node *const *kids, uint32_t nn) {
    for (uint32_t i = 0; i < nn; i++)
        __builtin_prefetch(kids[i]);
}

static ALWAYS_INLINE unsigned iter_width(const champ_iter *it) {
    return it->_map->t->width;
}

/* Makes n (at depth d) the iterator's current node: its entries are the
 * run [_cur, _end), its children come next, from _pos[d]. */
static ALWAYS_INLINE void iter_enter(champ_iter *it, int d, const node *n, unsigned W) {
    it->_node[d] = n;
    it->_pos[d] = 0;
    const char *e = node_ebase(n);
    it->_cur = e;
    if (UNLIKELY(d == CHAMP_COLL_LEVEL)) {
        it->_end = e + (size_t)W * n->datamap;
        return;
    }
    uint32_t ne = node_nent(n);
    it->_end = e + (size_t)W * ne;
    prefetch_kids((node *const *)(const void *)(e + (size_t)W * ne), node_nkid(n));
}

champ_status champ_iter_init(champ_iter *it, const champ_map *m) {
    if (!it || !m)
        return CHAMP_EINVAL;
    it->_map = m;
    it->_stamp = m->stamp;
    it->_status = CHAMP_OK;
    it->_cur = it->_end = NULL;
    it->_depth = -1;
    if (m->root) {
        it->_depth = 0;
        iter_enter(it, 0, m->root, m->t->width);
    }
    return CHAMP_OK;
}

/* The current node's entries are done: move to the next node that has
 * some, depth first (children in slot order, then back up).  Returns false
 * at the end.  Kept out of line so the per-entry path stays a leaf. */
static NOINLINE bool iter_advance(champ_iter *it) {
    unsigned W = iter_width(it);
    int d = it->_depth;
    for (;;) {
        if (d < 0) {
            it->_depth = -1;
            return false;
        }
        const node *n = it->_node[d];
        uint32_t nn = node_nkid_at(n, (unsigned)d);
        if (it->_pos[d] < nn) {
            const node *c = node_kids(n, W)[it->_pos[d]++];
            d++;
            iter_enter(it, d, c, W);
            if (it->_cur != it->_end) {
                it->_depth = d;
                return true;
            }
            continue;
        }
        d--;
    }
}

/* One compare per step or batch: the map changed since champ_iter_init
 * (then its old nodes may be gone, so nothing more is read).  Tested
 * before the end of the walk is: an iterator of an empty map, or one that
 * has seen every entry, reports a change too. */
static ALWAYS_INLINE bool iter_stale(champ_iter *it) {
    if (LIKELY(it->_map->stamp == it->_stamp))
        return false;
    it->_status = CHAMP_EMODIFIED;
    it->_depth = -1;
    it->_cur = it->_end = NULL;
    return true;
}

bool champ_iter_next(champ_iter *it, champ_key *key, void **val) {
    if (UNLIKELY(!it) || UNLIKELY(!it->_map) || it->_status != CHAMP_OK)
        return false;
    if (UNLIKELY(it->_cur == it->_end)) {
        if (iter_stale(it) || it->_depth < 0 || !iter_advance(it))
            return false;
    } else if (UNLIKELY(iter_stale(it))) {
        return false;
    }
    const mtype *t = it->_map->t;
    const uint64_t *e = it->_cur;
    it->_cur = (const char *)it->_cur + t->width;
    if (key)
        fill_key(t->kind, e[0], key);
    if (val)
        *val = t->width == ENT_MAP ? (void *)(uintptr_t)e[1] : NULL;
    return true;
}

/* Copies a run of n entries of width W. */
static ALWAYS_INLINE void run_out(const uint64_t *e, size_t run, champ_key *keys,
                                  void **vals, champ_key_kind kind, unsigned W) {
    const size_t step = W / 8u;
    if (vals)
        for (size_t i = 0; i < run; i++)
            vals[i] = W == ENT_MAP ? (void *)(uintptr_t)e[step * i + 1] : NULL;
    if (keys)
        for (size_t i = 0; i < run; i++)
            fill_key(kind, e[step * i], &keys[i]);
}

size_t champ_iter_next_n(champ_iter *it, champ_key *keys, void **vals, size_t cap) {
    if (UNLIKELY(!it) || UNLIKELY(!it->_map) || it->_status != CHAMP_OK)
        return 0;
    if (UNLIKELY(cap == 0)) {
        it->_status = CHAMP_EINVAL;
        return 0;
    }
    if (iter_stale(it) || it->_depth < 0)
        return 0;
    const mtype *t = it->_map->t;
    champ_key_kind kind = t->kind;
    unsigned W = t->width;
    size_t n = 0;
    while (n < cap) {
        if (UNLIKELY(it->_cur == it->_end) && !iter_advance(it))
            break;
        const uint64_t *e = it->_cur;
        size_t run = (size_t)((const char *)it->_end - (const char *)e) / W;
        if (run > cap - n)
            run = cap - n;
        if (W == ENT_MAP)
            run_out(e, run, keys ? keys + n : NULL, vals ? vals + n : NULL, kind, ENT_MAP);
        else
            run_out(e, run, keys ? keys + n : NULL, vals ? vals + n : NULL, kind, ENT_SET);
        it->_cur = (const char *)e + W * run;
        n += run;
    }
    return n;
}

champ_status champ_iter_status(const champ_iter *it) {
    return it ? it->_status : CHAMP_EINVAL;
}

/* Calls fn for every entry; m is read by an operation meanwhile (fn cannot
 * change it: an update returns CHAMP_EBUSY, a free waits), and a change fn
 * made anyway is caught before the next node is read. */
static champ_status foreach_walk(const champ_map *m, champ_visit_fn fn, void *ctx) {
    const node *stk[CHAMP_MAX_PATH];
    uint32_t pos[CHAMP_MAX_PATH];
    uint32_t stamp = m->stamp;
    champ_key_kind kind = m->t->kind;
    unsigned W = m->t->width;
    int d = 0;
    stk[0] = m->root;
    pos[0] = 0;
    champ_key k;
    while (d >= 0) {
        const node *n = stk[d];
        if (pos[d] == 0) {
            /* a node's entries in one run */
            uint32_t nd = node_nent_at(n, (unsigned)d);
            for (uint32_t i = 0; i < nd; i++) {
                entry e = W == ENT_MAP ? ent_get(n, i, ENT_MAP) : ent_get(n, i, ENT_SET);
                fill_key(kind, e.k, &k);
                int stop = fn(&k, e.v, ctx);
                if (UNLIKELY(m->stamp != stamp))
                    return CHAMP_EMODIFIED;
                if (stop)
                    return CHAMP_OK;
            }
        }
        uint32_t nn = node_nkid_at(n, (unsigned)d);
        if (pos[d] < nn) {
            node *const *kids = node_kids(n, W);
            if (pos[d] == 0)
                prefetch_kids(kids, nn);
            const node *c = kids[pos[d]++];
            d++;
            stk[d] = c;
            pos[d] = 0;
            continue;
        }
        d--;
    }
    return CHAMP_OK;
}

champ_status champ_foreach(const champ_map *m, champ_visit_fn fn, void *ctx) {
    if (!m || !fn)
        return CHAMP_EINVAL;
    if (!m->root)
        return CHAMP_OK;
    opframe fr;
    op_push(&fr, m, OPF_READ);
    champ_status st = foreach_walk(m, fn, ctx);
    op_end(&fr);
    return st;
}

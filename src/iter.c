/*
 * iter.c - iteration without allocation.
 *
 * A path is at most 14 nodes long (13 bitmap levels and a collision node),
 * so the iterator keeps its whole stack in a fixed array: for each level the
 * node and a position that runs over the node's entries first and then its
 * children (CHAMP's entries-first layout makes the entries of a node one
 * contiguous run).
 */
#include "internal.h"

/* Entering a node's children: ask for all of them at once.  In a big trie
 * they are scattered over memory; fetched one by one, each would be a
 * dependent miss, while these requests overlap. */
static ALWAYS_INLINE void prefetch_kids(node *const *kids, uint32_t nn) {
    for (uint32_t i = 0; i < nn; i++)
        __builtin_prefetch(kids[i]);
}

champ_status champ_iter_init(champ_iter *it, const champ_map *m) {
    if (!it || !m)
        return CHAMP_EINVAL;
    it->_map = m;
    it->_kind = m->kind;
    it->_stamp = m->stamp;
    it->_depth = m->root ? 0 : -1;
    it->_node[0] = m->root;
    it->_pos[0] = 0;
    return CHAMP_OK;
}

champ_status champ_iter_next(champ_iter *it, champ_key *key, void **val) {
    if (!it)
        return CHAMP_EINVAL;
#ifdef CHAMP_DEBUG
    if (it->_map && it->_depth >= 0 && it->_map->stamp != it->_stamp)
        return CHAMP_EMODIFIED;
#endif
    int d = it->_depth;
    while (d >= 0) {
        const node *n = it->_node[d];
        uint32_t p = it->_pos[d];
        uint32_t nd, nn;
        if (UNLIKELY(d == CHAMP_COLL_LEVEL)) {
            nd = n->datamap;
            nn = 0;
        } else {
            nd = popc(n->datamap);
            nn = popc(n->nodemap);
        }
        if (p < nd) {
            it->_pos[d] = p + 1;
            it->_depth = d;
            const entry *e = &n->e[p];
            if (key)
                fill_key(it->_kind, e, key);
            if (val)
                *val = e->v;
            return CHAMP_OK;
        }
        if (p < nd + nn) {
            node *const *kids = node_kids(n);
            if (p == nd)
                prefetch_kids(kids, nn);
            it->_pos[d] = p + 1;
            d++;
            it->_node[d] = kids[p - nd];
            it->_pos[d] = 0;
            continue;
        }
        d--;
    }
    it->_depth = -1;
    return CHAMP_NOTFOUND;
}

champ_status champ_foreach(const champ_map *m, champ_visit_fn fn, void *ctx) {
    if (!m || !fn)
        return CHAMP_EINVAL;
    const node *stk[CHAMP_MAX_PATH];
    uint32_t pos[CHAMP_MAX_PATH];
    if (!m->root)
        return CHAMP_OK;
    int d = 0;
    stk[0] = m->root;
    pos[0] = 0;
    champ_key k;
    while (d >= 0) {
        const node *n = stk[d];
        if (pos[d] == 0) {
            /* a node's entries in one run */
            uint32_t nd = d == CHAMP_COLL_LEVEL ? n->datamap : popc(n->datamap);
            for (uint32_t i = 0; i < nd; i++) {
                fill_key(m->kind, &n->e[i], &k);
                if (fn(&k, n->e[i].v, ctx))
                    return CHAMP_NOTFOUND;
            }
        }
        uint32_t nn = d == CHAMP_COLL_LEVEL ? 0 : popc(n->nodemap);
        if (pos[d] < nn) {
            node *const *kids = node_kids(n);
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

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
    if (!rc_dec(&n->rc, t->atomic))
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
            if (rc_dec(&c->rc, t->atomic)) {
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

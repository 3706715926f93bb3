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
    for (uint32_t i = 0; i < nk; i++)
        k[i]->rc++;
    if (sk >= 0)
        k[sk]->rc--; /* the new child was not duplicated */
}

/* The stack holds, per level, a node being torn down and the next child
 * to visit. */
void champ__node_drop(const mtype *t, node *n, unsigned level) {
    struct {
        node *n;
        uint32_t next;
    } st[CHAMP_MAX_PATH];
    unsigned W = t->width;
    CHAMP_ASSERT(n->rc > 0);
    if (--n->rc)
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
/* Ordering collision nodes                                            */
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
    CHAMP_ASSERT(kind_ordered(t, t->kind));
    for (uint32_t i = cnt / 2; i-- > 0;)
        coll_sift(t, n, i, cnt);
    for (uint32_t end = cnt; end-- > 1;) {
        coll_swap(n, 0, end, t->width);
        coll_sift(t, n, 0, end);
    }
    n->nodemap |= COLL_ORDERED;
}

uint32_t champ__coll_index(const mtype *t, const node *n, uint64_t k) {
    unsigned W = t->width;
    uint32_t lo = 0, hi = n->datamap;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(t, ent_key(n, mid, W), k, t->kind);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    CHAMP_ASSERT(0);
    return lo;
}

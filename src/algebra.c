/*
 * algebra.c - comparing and combining versions: equality, diff, union,
 * intersection, difference, symmetric difference, subset, disjoint,
 * filter.
 *
 * Canonical form (champ.c) makes equal key sets have equal shapes, so two
 * tries that hash the same way are walked side by side, slot by slot: a
 * slot's content on each side is empty, one or two entries, or a child
 * node.  Children that are the same node on both sides are equal without a
 * look (two versions of one map share all but the paths they changed), so
 * every operation here costs what differs, not what the maps hold.
 *
 * Example: union of a (1M keys) and b = a with key k replaced.  At the
 * root, 31 of 32 children are the same node on both sides: they go into
 * the result as they are (one reference more each).  The child on k's path
 * differs: recurse.  Four levels down the slot holding k has an entry on
 * each side with the same key: the resolver picks the value.  The levels
 * above are rebuilt (five nodes), the rest is shared: O(depth).
 *
 * A subtree on one side is a *view*: a node at its level, or a short run
 * of entries with their hashes, in trie order (a slot's entry or pair seen
 * from below, or a list being merged in).  Views of the two sides are
 * walked level by level:
 *   walk     compares (equal, diff, subset, disjoint): calls back for keys
 *            on one side only and keys on both
 *   combine  builds (union, intersect, difference, symdiff, filter): each
 *            slot's result is a `res` (empty, 1 or 2 entries, or a node,
 *            borrowed from an input or newly built); a node is built from
 *            the slots' results only when they differ from both inputs'
 *            slots, and a node that would hold two entries or fewer is not
 *            built: its entries go up to the parent (the pull-up that keeps
 *            results canonical).
 * Sizes: the result's size comes from counting the keys only the smaller
 * input holds (in subtrees the walk visits anyway); shared subtrees count
 * nothing.
 *
 * Inputs that hash differently, or (for combining) live in different
 * pools, take the key-by-key paths at the end of this file.
 */
#include "internal.h"

/* ------------------------------------------------------------------ */
/* Views                                                               */
/* ------------------------------------------------------------------ */

typedef struct ventry {
    entry e;
    uint64_t h;
} ventry;

/* A subtree at some level: a node (n), or nv entries (v) in trie order. */
typedef struct view {
    const node *n;
    const ventry *v;
    uint32_t nv;
} view;

#define VIEW_EMPTY(x) ((x)->n == NULL && (x)->nv == 0)

typedef struct ops {
    const mtype *ta, *tb;    /* the inputs' types; results are of ta     */
    champ_key_kind kind;
    unsigned W;
} ops;

static ALWAYS_INLINE uint64_t ops_hash(const ops *o, uint64_t k) {
    return key_hash(o->ta, k, o->kind);
}

static ALWAYS_INLINE bool ops_key_equal(const ops *o, const ventry *x, const ventry *y) {
    return x->h == y->h && key_equal(o->ta, x->e.k, y->e.k, o->kind);
}

/* Slot bits occupied in a view at a bitmap level. */
static uint32_t view_mask(const view *v, unsigned level) {
    if (v->n)
        return v->n->datamap | v->n->nodemap;
    uint32_t m = 0;
    for (uint32_t i = 0; i < v->nv; i++)
        m |= 1u << slice(v->v[i].h, level);
    return m;
}

/* The content of slot s of v at a bitmap level, as a view one level down.
 * buf receives the entries of an entry or pair slot, not hashed yet (h 0:
 * view_hash, when they meet something on the other side); for entry
 * views, *cur walks the run (slots come in increasing order). */
static void view_slot(const ops *o, const view *v, unsigned level, uint32_t s,
                      ventry *buf, uint32_t *cur, view *out) {
    out->n = NULL;
    out->v = NULL;
    out->nv = 0;
    if (v->n) {
        const node *n = v->n;
        uint32_t bit = 1u << s;
        if (n->datamap & bit) {
            uint32_t i = node_eidx(n, bit), k = (n->nodemap & bit) ? 2u : 1u;
            for (uint32_t j = 0; j < k; j++) {
                buf[j].e = ent_get(n, i + j, o->W);
                buf[j].h = 0;
            }
            out->v = buf;
            out->nv = k;
        } else if (n->nodemap & bit) {
            out->n = *node_kid_at(n, bit, o->W);
        }
        return;
    }
    uint32_t i = *cur;
    while (i < v->nv && slice(v->v[i].h, level) < s)
        i++;
    uint32_t j = i;
    while (j < v->nv && slice(v->v[j].h, level) == s)
        j++;
    out->v = v->v ? v->v + i : NULL; /* an empty view has no run: no NULL + 0 */
    out->nv = j - i;
    *cur = j;
}

/* The hashes of a slot's entries that view_slot read out of a node into
 * buf: needed once they meet the other side's (runs of a run are hashed
 * already). */
static void view_hash(const ops *o, const view *v, ventry *buf) {
    if (v->v == buf)
        for (uint32_t i = 0; i < v->nv; i++)
            buf[i].h = ops_hash(o, buf[i].e.k);
}

/* Both slot views of a walk or combine: entries are hashed only when the
 * other side holds something. */
static void views_hash(const ops *o, const view *sa, ventry *ba, const view *sb, ventry *bb) {
    if (!VIEW_EMPTY(sa) && !VIEW_EMPTY(sb)) {
        view_hash(o, sa, ba);
        view_hash(o, sb, bb);
    }
}

/* Entry i of a view at the collision level (a collision node, or a run):
 * all share one hash, so h is not filled for a node's entries. */
static ALWAYS_INLINE ventry coll_at(const ops *o, const view *v, uint32_t i) {
    if (!v->n)
        return v->v[i];
    ventry x;
    x.e = ent_get(v->n, i, o->W);
    x.h = 0;
    return x;
}

static uint32_t coll_count(const view *v) {
    return v->n ? v->n->datamap : v->nv;
}

/* What slot `bit` of a bitmap node holds: nothing, an entry, a pair (the
 * entry count) or a child. */
enum { SL_EMPTY = 0, SL_ENTRY = 1, SL_PAIR = 2, SL_KID = 3 };
static ALWAYS_INLINE int slot_kind(const node *n, uint32_t bit) {
    if (n->datamap & bit)
        return (n->nodemap & bit) ? SL_PAIR : SL_ENTRY;
    return (n->nodemap & bit) ? SL_KID : SL_EMPTY;
}

/* Whether two stored keys are one key, without hashing them (they sit in
 * the same slot: a generic key's equal runs unless they are one pointer). */
static ALWAYS_INLINE bool ops_same_key(const ops *o, uint64_t x, uint64_t y) {
    return key_equal(o->ta, x, y, o->kind);
}

/* Entries in a view (a node: its whole subtree). */
static size_t view_size(const ops *o, const view *v, unsigned level) {
    return v->n ? champ__count(v->n, level, o->W) : v->nv;
}

/* ------------------------------------------------------------------ */
/* The compare walk                                                    */
/* ------------------------------------------------------------------ */

/* What a walk does with keys on one side only and keys on both; each
 * returns nonzero to stop the walk (returned).  With skip_a / skip_b, keys
 * on that side only are not visited at all.  A subtree both sides share
 * holds keys on both without a look: stop_shared stops the walk there
 * (disjoint), else it is skipped. */
typedef struct walker {
    ops o;
    int (*a_only)(struct walker *w, const ventry *x);
    int (*b_only)(struct walker *w, const ventry *y);
    int (*both)(struct walker *w, const ventry *x, const ventry *y);
    bool skip_a, skip_b;
    bool stop_shared;
    void *ctx;
} walker;

static int walk_side(walker *w, const view *v, unsigned level, bool a_side);

static int emit_one(void *ctx, entry e) {
    walker *w = ((void **)ctx)[0];
    bool a_side = ((void **)ctx)[1] != NULL;
    ventry x;
    x.e = e;
    x.h = 0; /* one-sided keys: no callback looks at the hash */
    return a_side ? w->a_only(w, &x) : w->b_only(w, &x);
}

/* Every key of a one-sided view. */
static int walk_side(walker *w, const view *v, unsigned level, bool a_side) {
    if (a_side ? w->skip_a : w->skip_b)
        return 0;
    if (v->n) {
        void *c[2] = {w, a_side ? (void *)w : NULL};
        return champ__walk(v->n, level, w->o.W, emit_one, c);
    }
    for (uint32_t i = 0; i < v->nv; i++) {
        int r = a_side ? w->a_only(w, &v->v[i]) : w->b_only(w, &v->v[i]);
        if (r)
            return r;
    }
    return 0;
}

/* The index in b[0..nb) of x's key, or nb: the same key word first (the
 * same key, no callback), then by equality (unhashed: by the keys alone). */
static uint32_t list_find(const ops *o, const ventry *x, const ventry *b, uint32_t nb,
                          bool unhashed) {
    for (uint32_t j = 0; j < nb; j++)
        if (b[j].e.k == x->e.k)
            return j;
    for (uint32_t j = 0; j < nb; j++)
        if (unhashed ? ops_same_key(o, x->e.k, b[j].e.k) : ops_key_equal(o, x, &b[j]))
            return j;
    return nb;
}

/* Whether a view at the collision level is in key order: an ordered node,
 * or a run (one entry, or a pair: pairs are in key order) of a map with an
 * order. */
static bool coll_sorted(const ops *o, const view *v) {
    return kind_ordered(o->ta, o->kind) && (!v->n || coll_ordered(v->n));
}

/* The order of the keys of two entries (maps with a key order). */
static ALWAYS_INLINE int coll_cmp(const ops *o, const ventry *x, const ventry *y) {
    return key_cmp(o->ta, x->e.k, y->e.k, o->kind);
}

/* In a sorted view, from index lo: the first index whose key is not below
 * k (galloping: O(log d) comparisons for a distance d), or the count;
 * *eq: it is k. */
static uint32_t coll_seek(const ops *o, const view *v, const ventry *k, uint32_t lo,
                          bool *eq) {
    uint32_t n = coll_count(v), step = 1, hi;
    *eq = false;
    /* gallop: v[lo + step - 1] below k, doubling, until one is not */
    for (;;) {
        if (lo >= n)
            return n;
        ventry x = coll_at(o, v, lo);
        int c = coll_cmp(o, &x, k);
        if (c >= 0) {
            *eq = c == 0;
            return lo;
        }
        hi = lo + step < n ? lo + step : n;
        if (hi == n)
            break;
        ventry y = coll_at(o, v, hi);
        c = coll_cmp(o, &y, k);
        if (c >= 0) {
            if (c == 0) {
                *eq = true;
                return hi;
            }
            break; /* the answer is in (lo, hi] */
        }
        lo = hi + 1;
        step *= 2;
    }
    /* bisection in (lo, hi]: v[lo] below k, v[hi] not (or hi == n) */
    lo++;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        ventry x = coll_at(o, v, mid);
        int c = coll_cmp(o, &x, k);
        if (c == 0) {
            *eq = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The index in a view at the collision level of the key of x, or its
 * count; *hint: where the next search starts.  First the same key word at
 * *hint (two versions of one map share their keys, and walk their nodes in
 * the same order: the hint is the place after the last match).  When both
 * sides are in key order (sorted: the caller asks in ascending order) a
 * cursor gallops forward from the hint: matching a node of a keys against
 * one of b takes O(a + b) comparisons at most, O(a) when few keys differ.
 * Else a node is searched in its own layout (coll_find: bisection in an
 * ordered node, the index of a hashed one, O(1) expected; a list first by
 * key word, then with equal: O(a * b) equal calls only for lists of
 * different keys, generic keys without compare having nothing but equal
 * to go by), a run (two entries at most) scanned.  No memory. */
static uint32_t coll_index(const ops *o, const view *v, const ventry *x, bool sorted,
                           uint32_t *hint) {
    uint64_t k = x->e.k;
    uint32_t n = coll_count(v), h = *hint, i;
    if (h < n && coll_at(o, v, h).e.k == k) {
        i = h;
    } else if (sorted) {
        bool eq;
        i = coll_seek(o, v, x, h, &eq);
        *hint = i; /* the keys before it are below this key and the next */
        if (!eq)
            return n;
    } else if (!v->n) {
        i = list_find(o, x, v->v, v->nv, true);
    } else {
        const node *nd = v->n;
        i = n;
        if (!coll_ordered(nd) && !coll_hashed(nd))
            for (uint32_t j = 0; j < n && i == n; j++)
                if (ent_key(nd, j, o->W) == k)
                    i = j;
        if (i == n) {
            /* (a byte key's blob caches its hash, which kq_match compares) */
            kq q = kq_of_key(k, o->kind == CHAMP_KEY_BYTES ? key_blob(k)->hash : 0, o->kind);
            int at;
            int64_t f = coll_find(o->ta, nd, &q, &at, o->kind, o->W);
            i = f < 0 ? n : (uint32_t)f;
        }
    }
    if (i < n)
        *hint = i + 1;
    return i;
}

/* Matches two short lists of entries key by key (order: the a side's
 * entries as they are, then b's new ones; within one slot a list is
 * short: champ.h's champ_diff_fn states this order).  Used for slots
 * holding entries (no child) on both sides (walk_coll keeps the order at
 * the collision level); unhashed lists (their h not filled) compare the
 * keys alone. */
static int walk_lists(walker *w, const ventry *a, uint32_t na, const ventry *b, uint32_t nb,
                      bool unhashed) {
    int r;
    for (uint32_t i = 0; i < na; i++) {
        uint32_t j = list_find(&w->o, &a[i], b, nb, unhashed);
        r = j < nb ? w->both(w, &a[i], &b[j])
                   : (w->skip_a ? 0 : w->a_only(w, &a[i]));
        if (r)
            return r;
    }
    if (w->skip_b)
        return 0;
    for (uint32_t j = 0; j < nb; j++) {
        uint32_t i = list_find(&w->o, &b[j], a, na, unhashed);
        if (i == na && (r = w->b_only(w, &b[j])) != 0)
            return r;
    }
    return 0;
}

/* walk_lists at the collision level, in the same order, reading the
 * collision nodes where they are (coll_index). */
static int walk_coll(walker *w, const view *va, const view *vb) {
    const ops *o = &w->o;
    uint32_t na = coll_count(va), nb = coll_count(vb), hb = 0, ha = 0;
    bool sorted = coll_sorted(o, va) && coll_sorted(o, vb);
    int r;
    for (uint32_t i = 0; i < na; i++) {
        ventry x = coll_at(o, va, i);
        uint32_t j = coll_index(o, vb, &x, sorted, &hb);
        if (j < nb) {
            ventry y = coll_at(o, vb, j);
            r = w->both(w, &x, &y);
        } else {
            r = w->skip_a ? 0 : w->a_only(w, &x);
        }
        if (r)
            return r;
    }
    if (w->skip_b)
        return 0;
    for (uint32_t j = 0; j < nb; j++) {
        ventry y = coll_at(o, vb, j);
        if (coll_index(o, va, &y, sorted, &ha) == na && (r = w->b_only(w, &y)) != 0)
            return r;
    }
    return 0;
}

static int walk_nodes(walker *w, const node *na, const node *nb, unsigned level);

static int walk_views(walker *w, const view *va, const view *vb, unsigned level) {
    if (va->n && va->n == vb->n)
        return w->stop_shared; /* the same subtree: its keys are in both */
    if (VIEW_EMPTY(va))
        return walk_side(w, vb, level, false);
    if (VIEW_EMPTY(vb))
        return walk_side(w, va, level, true);
    if (level == CHAMP_COLL_LEVEL)
        return walk_coll(w, va, vb);
    /* (two runs never meet here: a slot with entries on both sides and no
     * child is matched by walk_lists where it is found, below and in
     * walk_nodes) */
    if (va->n && vb->n)
        return walk_nodes(w, va->n, vb->n, level);
    uint32_t mask = view_mask(va, level) | view_mask(vb, level);
    uint32_t ca = 0, cb = 0;
    while (mask) {
        uint32_t s = (uint32_t)__builtin_ctz(mask);
        mask &= mask - 1;
        ventry ba[2], bb[2];
        view sa, sb;
        view_slot(&w->o, va, level, s, ba, &ca, &sa);
        view_slot(&w->o, vb, level, s, bb, &cb, &sb);
        int r;
        if (!sa.n && !sb.n) {
            /* entries (two at most) on each side: matched as they are */
            r = walk_lists(w, sa.v, sa.nv, sb.v, sb.nv, true);
        } else {
            views_hash(&w->o, &sa, ba, &sb, bb);
            r = walk_views(w, &sa, &sb, level + 1);
        }
        if (r)
            return r;
    }
    return 0;
}

/* Two bitmap nodes side by side, slot by slot.  The common slots take a
 * shortcut: the same key on both sides is compared without hashing it,
 * entries facing an empty slot are reported as they are (callbacks of
 * one-sided keys do not look at hashes), children meet as nodes.  The
 * other slots go through views. */
static int walk_nodes(walker *w, const node *na, const node *nb, unsigned level) {
    unsigned W = w->o.W;
    uint32_t mask = na->datamap | na->nodemap | nb->datamap | nb->nodemap;
    while (mask) {
        uint32_t s = (uint32_t)__builtin_ctz(mask), bit = 1u << s;
        mask &= mask - 1;
        int ka = slot_kind(na, bit), kb = slot_kind(nb, bit), r;
        ventry x[2], y[2];
        if (ka == SL_ENTRY && kb == SL_ENTRY) {
            /* the common case: an entry each, often the same key */
            x[0].e = ent_get(na, node_eidx(na, bit), W);
            y[0].e = ent_get(nb, node_eidx(nb, bit), W);
            x[0].h = y[0].h = 0;
            if (ops_same_key(&w->o, x[0].e.k, y[0].e.k))
                r = w->both(w, &x[0], &y[0]);
            else if ((r = w->skip_a ? 0 : w->a_only(w, &x[0])) == 0)
                r = w->skip_b ? 0 : w->b_only(w, &y[0]);
            if (r)
                return r;
            continue;
        }
        if (ka != SL_KID && kb != SL_KID) {
            /* entries (0 to 2) on each side: the keys are matched as
             * they are, one-sided ones reported */
            for (int i = 0; i < ka; i++) {
                x[i].e = ent_get(na, node_eidx(na, bit) + (uint32_t)i, W);
                x[i].h = 0;
            }
            for (int j = 0; j < kb; j++) {
                y[j].e = ent_get(nb, node_eidx(nb, bit) + (uint32_t)j, W);
                y[j].h = 0;
            }
            if ((r = walk_lists(w, x, (uint32_t)ka, y, (uint32_t)kb, true)) != 0)
                return r;
            continue;
        }
        uint32_t cur = 0;
        view va = {na, NULL, 0}, vb = {nb, NULL, 0}, sa, sb;
        view_slot(&w->o, &va, level, s, x, &cur, &sa);
        view_slot(&w->o, &vb, level, s, y, &cur, &sb);
        views_hash(&w->o, &sa, x, &sb, y);
        if ((r = walk_views(w, &sa, &sb, level + 1)) != 0)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Fast path or not                                                    */
/* ------------------------------------------------------------------ */

/* Same kind and width, else CHAMP_EKIND. */
static champ_status algebra_check(const champ_map *a, const champ_map *b) {
    if (!a || !b)
        return CHAMP_EINVAL;
    if (a->t->kind != b->t->kind || a->t->width != b->t->width)
        return CHAMP_EKIND;
    return CHAMP_OK;
}

/* Whether the two types put every key in the same place. */
static bool same_hashing(const mtype *a, const mtype *b) {
    return type_same_hashing(a, b); /* map.h: bytes_hash, compare too */
}

/* Whether a node of b can go into a map of a's type as it is: the two
 * types hold keys and values alike (the same reference callbacks). */
static bool same_refs(const mtype *a, const mtype *b) {
    if (a == b)
        return true;
    return a->key_retain == b->key_retain && a->key_release == b->key_release &&
           a->val_retain == b->val_retain && a->val_release == b->val_release &&
           (a->ctx == b->ctx ||
            !(a->key_retain || a->key_release || a->val_retain || a->val_release));
}

/* A type whose entries can be copied into new nodes (as champ_copy): no
 * release callback without its retain. */
static bool copyable(const mtype *t) {
    return (!t->val_release || t->val_retain) && (!t->key_release || t->key_retain);
}

static void ops_init(ops *o, const champ_map *a, const champ_map *b) {
    o->ta = a->t;
    o->tb = b->t;
    o->kind = a->t->kind;
    o->W = a->t->width;
}

static view root_view(const champ_map *m) {
    view v;
    v.n = m->root;
    v.v = NULL;
    v.nv = 0;
    return v;
}

/* Reads of both inputs while user code may run (the callbacks given, and
 * the inputs' own). */
typedef struct frames {
    opframe fa, fb;
} frames;

static void frames_push(frames *f, const champ_map *a, const champ_map *b) {
    op_push(&f->fa, a, OPF_READ);
    op_push(&f->fb, b, OPF_READ);
}

static void frames_pop(frames *f) {
    op_end(&f->fb);
    op_end(&f->fa);
}

/* Key-by-key lookups of a key of one map in another that hashes
 * differently. */
static const uint64_t *find_in(const champ_map *m, const ventry *x, const mtype *from) {
    const mtype *t = m->t;
    kq q;
    switch (t->kind) {
    case CHAMP_KEY_U64:
        q = kq_of_key(x->e.k, hash_u64(x->e.k, t->seed), CHAMP_KEY_U64);
        return t->width == ENT_MAP ? node_find(t, m->root, 0, &q, CHAMP_KEY_U64, ENT_MAP)
                                   : node_find(t, m->root, 0, &q, CHAMP_KEY_U64, ENT_SET);
    case CHAMP_KEY_BYTES: {
        const blob *bl = key_blob(x->e.k);
        q = kq_of_key(x->e.k, type_hash_bytes(t, bl->bytes, bl->len), CHAMP_KEY_BYTES);
        return t->width == ENT_MAP ? node_find(t, m->root, 0, &q, CHAMP_KEY_BYTES, ENT_MAP)
                                   : node_find(t, m->root, 0, &q, CHAMP_KEY_BYTES, ENT_SET);
    }
    default:
        (void)from;
        q = kq_of_key(x->e.k, t->hash((const void *)(uintptr_t)x->e.k, t->ctx),
                      CHAMP_KEY_GENERIC);
        return t->width == ENT_MAP
                   ? node_find(t, m->root, 0, &q, CHAMP_KEY_GENERIC, ENT_MAP)
                   : node_find(t, m->root, 0, &q, CHAMP_KEY_GENERIC, ENT_SET);
    }
}

/* The slow walk: every key of a looked up in b (both), the rest a_only;
 * then (unless skip_b) every key of b looked up in a, b_only when absent. */
typedef struct slowctx {
    walker *w;
    const champ_map *other;
    bool a_side;
} slowctx;

static int slow_visit(void *ctx, entry e) {
    slowctx *c = ctx;
    walker *w = c->w;
    ventry x;
    x.e = e;
    x.h = 0;
    const mtype *tx = c->a_side ? w->o.ta : w->o.tb;
    const uint64_t *f = find_in(c->other, &x, tx);
    if (c->a_side) {
        if (f) {
            ventry y;
            y.e.k = f[0];
            y.e.v = w->o.W == ENT_MAP ? (void *)(uintptr_t)f[1] : NULL;
            y.h = 0;
            return w->both(w, &x, &y);
        }
        return w->skip_a ? 0 : w->a_only(w, &x);
    }
    return f ? 0 : w->b_only(w, &x);
}

static int walk_maps(walker *w, const champ_map *a, const champ_map *b) {
    if (same_hashing(a->t, b->t)) {
        view va = root_view(a), vb = root_view(b);
        return walk_views(w, &va, &vb, 0);
    }
    slowctx c = {w, b, true};
    int r = champ__walk(a->root, 0, w->o.W, slow_visit, &c);
    if (r || w->skip_b)
        return r;
    c.other = a;
    c.a_side = false;
    return champ__walk(b->root, 0, w->o.W, slow_visit, &c);
}

/* A walker over a and b with no callbacks yet: the read-only queries
 * below set the ones they need, then walk_read. */
static void walker_init(walker *w, const champ_map *a, const champ_map *b, void *ctx) {
    memset(w, 0, sizeof *w);
    ops_init(&w->o, a, b);
    w->ctx = ctx;
}

/* walk_maps while both inputs are marked read (user callbacks may run). */
static int walk_read(walker *w, const champ_map *a, const champ_map *b) {
    frames f;
    frames_push(&f, a, b);
    int r = walk_maps(w, a, b);
    frames_pop(&f);
    return r;
}

/* ------------------------------------------------------------------ */
/* Equality, subset, disjoint, diff                                    */
/* ------------------------------------------------------------------ */

typedef struct vcmp {
    champ_val_equal_fn eq;
    void *ctx;
} vcmp;

static bool vals_equal(const vcmp *c, void *x, void *y) {
    if (x == y)
        return true;
    return c->eq && c->eq(x, y, c->ctx);
}

static int stop_one(walker *w, const ventry *x) {
    (void)w;
    (void)x;
    return 1;
}
static int eq_both(walker *w, const ventry *x, const ventry *y) {
    return w->o.W == ENT_MAP && !vals_equal(w->ctx, x->e.v, y->e.v);
}
static int go_on(walker *w, const ventry *x, const ventry *y) {
    (void)w;
    (void)x;
    (void)y;
    return 0;
}
static int stop_both(walker *w, const ventry *x, const ventry *y) {
    (void)w;
    (void)x;
    (void)y;
    return 1;
}

/* Equality of two tries that hash alike, node by node: equal contents
 * have equal shapes (canonical form), so equal maps have equal bitmaps
 * everywhere and their entries in the same order, except where order is
 * insertion order (pairs of equal full hashes, unordered collision nodes).
 * 1: equal; 0: not equal; -1: an entry mismatch that order could explain
 * (not for u64 keys, whose hash is a bijection): the caller walks key by
 * key.  For u64 keys with pointer-compared values a node's entries are one
 * memcmp. */
static int eq_nodes(const ops *o, const vcmp *vc, const node *a, const node *b,
                    unsigned level) {
    if (a == b)
        return 1;
    if (level == CHAMP_COLL_LEVEL)
        return -1;
    if (a->datamap != b->datamap || a->nodemap != b->nodemap)
        return 0;
    uint32_t ne = node_nent(a), nk = node_nkid(a);
    unsigned W = o->W;
    if (o->kind == CHAMP_KEY_U64 && (W == ENT_SET || !vc->eq)) {
        if (memcmp(node_ebase(a), node_ebase(b), (size_t)W * ne) != 0)
            return 0;
    } else {
        for (uint32_t i = 0; i < ne; i++) {
            entry x = ent_get(a, i, W), y = ent_get(b, i, W);
            if (!key_equal(o->ta, x.k, y.k, o->kind))
                return o->kind == CHAMP_KEY_U64 ? 0 : -1;
            if (W == ENT_MAP && !vals_equal(vc, x.v, y.v))
                return 0;
        }
    }
    node *const *ka = node_kids(a, W), *const *kb = node_kids(b, W);
    for (uint32_t i = 0; i < nk; i++) {
        int r = eq_nodes(o, vc, ka[i], kb[i], level + 1);
        if (r != 1)
            return r;
    }
    return 1;
}

bool champ_equal(const champ_map *a, const champ_map *b, champ_val_equal_fn val_equal,
                 void *ctx) {
    if (algebra_check(a, b) != CHAMP_OK)
        return false;
    if (a->size != b->size)
        return false;
    if (a->root == b->root)
        return true;
    vcmp c = {val_equal, ctx};
    if (same_hashing(a->t, b->t) && a->root && b->root) {
        ops o;
        ops_init(&o, a, b);
        frames f;
        frames_push(&f, a, b);
        int r = eq_nodes(&o, &c, a->root, b->root, 0);
        frames_pop(&f);
        if (r >= 0)
            return r == 1;
    }
    walker w;
    walker_init(&w, a, b, &c);
    w.a_only = stop_one;
    w.b_only = stop_one;
    w.both = eq_both;
    /* equal sizes: a key of b missing from a means one of a missing in b */
    w.skip_b = true;
    return walk_read(&w, a, b) == 0;
}

bool champ_subset(const champ_map *a, const champ_map *b) {
    if (algebra_check(a, b) != CHAMP_OK)
        return false;
    if (a->size > b->size)
        return false;
    walker w;
    walker_init(&w, a, b, NULL);
    w.a_only = stop_one;
    w.both = go_on;
    w.skip_b = true;
    return walk_read(&w, a, b) == 0;
}

bool champ_disjoint(const champ_map *a, const champ_map *b) {
    if (algebra_check(a, b) != CHAMP_OK)
        return false;
    if (a->size == 0 || b->size == 0)
        return true;
    walker w;
    walker_init(&w, a, b, NULL);
    w.both = stop_both;
    w.skip_a = true;
    w.skip_b = true;
    w.stop_shared = true;
    /* the slow path walks a and looks its keys up in b */
    return walk_read(&w, a, b) == 0;
}

typedef struct diffctx {
    vcmp vc;
    champ_diff_fn fn;
    void *ctx;
    champ_key_kind kind;
} diffctx;

static int diff_a(walker *w, const ventry *x) {
    diffctx *d = w->ctx;
    champ_key k;
    fill_key(d->kind, x->e.k, &k);
    return d->fn(CHAMP_REMOVED, &k, x->e.v, NULL, d->ctx);
}
static int diff_b(walker *w, const ventry *y) {
    diffctx *d = w->ctx;
    champ_key k;
    fill_key(d->kind, y->e.k, &k);
    return d->fn(CHAMP_ADDED, &k, NULL, y->e.v, d->ctx);
}
static int diff_both(walker *w, const ventry *x, const ventry *y) {
    diffctx *d = w->ctx;
    if (w->o.W != ENT_MAP || vals_equal(&d->vc, x->e.v, y->e.v))
        return 0;
    champ_key k;
    fill_key(d->kind, x->e.k, &k);
    return d->fn(CHAMP_CHANGED, &k, x->e.v, y->e.v, d->ctx);
}

champ_status champ_diff(const champ_map *from, const champ_map *to,
                        champ_val_equal_fn val_equal, champ_diff_fn fn, void *ctx) {
    if (!fn)
        return CHAMP_EINVAL;
    champ_status st = algebra_check(from, to);
    if (st != CHAMP_OK)
        return st;
    diffctx d = {{val_equal, ctx}, fn, ctx, from->t->kind};
    walker w;
    walker_init(&w, from, to, &d);
    w.a_only = diff_a;
    w.b_only = diff_b;
    w.both = diff_both;
    walk_read(&w, from, to);
    return CHAMP_OK;
}

/* ------------------------------------------------------------------ */
/* Combining                                                           */
/* ------------------------------------------------------------------ */

enum { OP_UNION, OP_INTERSECT, OP_DIFFERENCE, OP_SYMDIFF, OP_FILTER };

/* The result of one slot (or subtree).  Entries are borrowed from the
 * inputs (a new node retains them); a node is borrowed from an input
 * (owned false: a new parent takes a reference) or newly built (owned: its
 * reference moves into the parent, or is dropped on failure). */
typedef struct res {
    uint32_t n;       /* entries (0..2, in trie order) or SUB_NODE */
    entry e[2];
    node *kid;
    bool owned;
    bool same_a, same_b; /* holds exactly that input's entries (keys and
                            values) of this slot, in whatever form */
} res;

typedef struct comb {
    ops o;
    int op;
    champ_merge_fn resolve;
    champ_pred_fn keep;
    void *ctx;
    bool count_a;   /* count keys only a holds (else only b) */
    size_t only;    /* ... counted so far */
    size_t kept;    /* filter: entries kept */
} comb;

static void res_empty(res *r) {
    r->n = 0;
    r->kid = NULL;
    r->owned = false;
    r->same_a = r->same_b = false;
}

/* The result a view stands for, borrowed as it is. */
static void res_of_view(res *r, const view *v) {
    res_empty(r);
    if (v->n) {
        r->n = SUB_NODE;
        r->kid = (node *)(uintptr_t)v->n;
        return;
    }
    r->n = v->nv;
    for (uint32_t i = 0; i < v->nv && i < 2; i++)
        r->e[i] = v->v[i].e;
}

/* A list of up to four entries (from both sides, deduplicated), to be made
 * canonical at a level. */
typedef struct elist {
    uint32_t n;
    ventry e[4];
} elist;

static bool build_list(comb *c, elist *l, unsigned level, res *r);

/* Builds a node at `level` from the slot results (rs[0..n), slots ss[]),
 * or pulls up its one or two entries.  Takes the results' ownership. */
static bool build_node(comb *c, res *rs, const uint32_t *ss, uint32_t n, unsigned level,
                       res *out) {
    slotv sl[32];
    uint32_t ne = 0;
    bool kids = false;
    for (uint32_t i = 0; i < n; i++) {
        sl[i].s = ss[i];
        sl[i].v.n = rs[i].n;
        if (rs[i].n == SUB_NODE) {
            sl[i].v.kid = rs[i].kid;
            kids = true;
        } else {
            sl[i].v.e[0] = rs[i].e[0];
            sl[i].v.e[1] = rs[i].e[1];
            ne += rs[i].n;
        }
    }
    res_empty(out);
    if (level > 0 && !kids && ne <= 2) {
        /* pull up: the entries, in slot order (= trie order) */
        uint32_t k = 0;
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < rs[i].n; j++)
                out->e[k++] = rs[i].e[j];
        out->n = k;
        return true;
    }
    if (n == 0)
        return true;
    const mtype *t = c->o.ta;
    size_t size = slots_size(sl, n, c->o.W);
    node *nb = pool_alloc(t->pool, size);
    if (!nb) {
        for (uint32_t i = 0; i < n; i++)
            if (rs[i].n == SUB_NODE && rs[i].owned)
                champ__node_drop(t, rs[i].kid, level + 1);
        return false;
    }
    node_build(nb, sl, n, c->o.W);
    /* references: entries are retained, borrowed children gain one */
    for (uint32_t i = 0; i < n; i++) {
        if (rs[i].n == SUB_NODE) {
            if (!rs[i].owned)
                rc_inc(&rs[i].kid->rc, t->atomic);
        } else if (t->ent_refs) {
            for (uint32_t j = 0; j < rs[i].n; j++)
                ent_retain(t, rs[i].e[j]);
        }
    }
    out->n = SUB_NODE;
    out->kid = nb;
    out->owned = true;
    return true;
}

/* In e[0..n) sorted: how many keys come before the key of k (galloping
 * from the start: O(log d) comparisons for an answer d). */
static uint32_t run_below(const ops *o, const ventry *e, uint32_t n, const ventry *k) {
    uint32_t lo = 0, hi = 1;
    while (hi < n && coll_cmp(o, &e[hi - 1], k) < 0) {
        lo = hi;
        hi = hi * 2 + 1;
    }
    if (hi > n)
        hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (coll_cmp(o, &e[mid], k) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* A collision node (or pulled-up entries) for a list of entries that all
 * share one full hash, in the map's layout (trie.h, "Collision nodes"):
 * ordered, hashed or a list, as champ_apply builds them.  split <= n: the
 * list is two runs in key order, e[0..split) and e[split..n), merged into
 * the node by galloping (O(k log(n / k)) comparisons for k keys of the
 * shorter run) instead of sorted there. */
static bool build_coll(comb *c, const ventry *e, uint32_t n, uint32_t split, res *out) {
    res_empty(out);
    if (n <= 2) {
        /* a pair of equal hashes: in key order where the kind has one */
        bool swap = n == 2 && !ent_first(c->o.ta, e[0].e.k, e[0].h, e[1].e.k, e[1].h,
                                         c->o.kind);
        for (uint32_t i = 0; i < n; i++)
            out->e[i] = e[swap ? 1 - i : i].e;
        out->n = n;
        return true;
    }
    const mtype *t = c->o.ta;
    size_t bytes = champ__coll_build_bytes(t, n);
    node *nb = pool_alloc(t->pool, bytes);
    if (!nb)
        return false;
    node_init(nb, n, 0);
    unsigned W = c->o.W;
    bool runs = split <= n && !coll_wants_hash(t, n);
    if (runs) {
        uint32_t i = 0, j = split, k = 0;
        while (i < split && j < n) {
            uint32_t m = run_below(&c->o, e + i, split - i, &e[j]);
            for (uint32_t x = 0; x < m; x++)
                ent_put(nb, k++, e[i++].e, W);
            if (i == split)
                break;
            m = run_below(&c->o, e + j, n - j, &e[i]);
            for (uint32_t x = 0; x < m; x++)
                ent_put(nb, k++, e[j++].e, W);
        }
        while (i < split)
            ent_put(nb, k++, e[i++].e, W);
        while (j < n)
            ent_put(nb, k++, e[j++].e, W);
    } else {
        for (uint32_t i = 0; i < n; i++)
            ent_put(nb, i, e[i].e, W);
    }
    if (t->ent_refs)
        for (uint32_t i = 0; i < n; i++)
            ent_retain(t, e[i].e);
    champ__coll_finish(t, nb, bytes, runs); /* the map's layout: ordered, hashed */
    out->n = SUB_NODE;
    out->kid = nb;
    out->owned = true;
    return true;
}

/* The canonical subtree at `level` for a short list of distinct keys (a
 * result of merging two slots' entries), in trie order. */
static bool build_list(comb *c, elist *l, unsigned level, res *r) {
    /* trie order; equal hashes in key order where the kind has one (a
     * pair of them must be: canonical form) */
    for (uint32_t i = 1; i < l->n; i++)
        for (uint32_t j = i; j > 0 && !ent_first(c->o.ta, l->e[j - 1].e.k, l->e[j - 1].h,
                                                 l->e[j].e.k, l->e[j].h, c->o.kind);
             j--) {
            ventry x = l->e[j];
            l->e[j] = l->e[j - 1];
            l->e[j - 1] = x;
        }
    if (l->n <= 2 && level > 0) {
        res_empty(r);
        for (uint32_t i = 0; i < l->n; i++)
            r->e[i] = l->e[i].e;
        r->n = l->n;
        return true;
    }
    if (level == CHAMP_COLL_LEVEL)
        return build_coll(c, l->e, l->n, l->n + 1, r);
    res rs[4];
    uint32_t ss[4], n = 0;
    for (uint32_t i = 0; i < l->n;) {
        uint32_t s = slice(l->e[i].h, level), j = i;
        elist sub_l;
        sub_l.n = 0;
        while (j < l->n && slice(l->e[j].h, level) == s)
            sub_l.e[sub_l.n++] = l->e[j++];
        if (!build_list(c, &sub_l, level + 1, &rs[n])) {
            for (uint32_t k = 0; k < n; k++)
                if (rs[k].n == SUB_NODE && rs[k].owned)
                    champ__node_drop(c->o.ta, rs[k].kid, level + 1);
            return false;
        }
        ss[n++] = s;
        i = j;
    }
    return build_node(c, rs, ss, n, level, r);
}

/* Counting the keys only one side holds (the smaller side). */
static void count_only(comb *c, const view *v, unsigned level, bool a_side) {
    if (c->count_a == a_side)
        c->only += view_size(&c->o, v, level);
}

/* The value a key in both keeps. */
static void *resolve_val(comb *c, const ventry *x, const ventry *y) {
    if (c->o.W == ENT_SET)
        return NULL;
    if (c->resolve) {
        champ_key k;
        fill_key(c->o.kind, x->e.k, &k);
        return c->resolve(&k, x->e.v, y->e.v, c->ctx);
    }
    return c->op == OP_UNION ? y->e.v : x->e.v;
}

static bool keep_entry(comb *c, const ventry *x) {
    champ_key k;
    fill_key(c->o.kind, x->e.k, &k);
    return c->keep(&k, x->e.v, c->ctx);
}

static bool combine(comb *c, const view *va, const view *vb, unsigned level, res *r);

/* Filter of a one-sided subtree: visited entry by entry. */
static bool filter_view(comb *c, const view *va, unsigned level, res *r) {
    view empty = {NULL, NULL, 0};
    return combine(c, va, &empty, level, r);
}

/* The index in view v of the key of x (a run's keys hashed, or any view
 * at the collision level), or its count. */
static uint32_t view_find(const ops *o, const view *v, const ventry *x, unsigned level,
                          bool sorted, uint32_t *hint) {
    if (level == CHAMP_COLL_LEVEL)
        return coll_index(o, v, x, sorted, hint);
    return list_find(o, x, v->v, v->nv, false);
}

/* The output list of merge_views: none while it is exactly a prefix of
 * a's entries (lazy), then a's n first entries copied out into small or
 * scratch memory (cap entries: both sides' counts). */
typedef struct mout {
    ventry *v;
    size_t bytes;     /* scratch bytes (0: small or none) */
    uint32_t n;
    bool lazy;
    ventry small[8];
} mout;

static bool mout_start(comb *c, mout *m, const view *va, uint32_t cap) {
    champ_pool *p = c->o.ta->pool;
    m->lazy = false;
    m->v = m->small;
    if (cap > 8) {
        /* (the fault hook: a fixed pool's block passes pool_alloc's) */
        m->bytes = (size_t)cap * sizeof *m->v;
        if ((!p->fixed && pool_fault(p)) || !(m->v = champ__scratch_alloc(p, m->bytes))) {
            m->bytes = 0;
            return false;
        }
    }
    for (uint32_t i = 0; i < m->n; i++)
        m->v[i] = coll_at(&c->o, va, i);
    return true;
}

/* Merges both sides' keys into one list of distinct keys and decides each
 * by the operation: two short runs of one slot, or the collision level
 * (collision nodes read where they are, coll_index; the list in scratch
 * memory when it is long, so that no stack grows with a node).  Order: a's
 * entries, then b's additions.  A result that is exactly a's node (a
 * union with a subset, a filter keeping all) is a's node, and nothing is
 * copied or built.  r->same_a / r->same_b tell whether the result holds
 * exactly that side's entries (keys and values), whatever its form.
 * false: out of memory (nothing built). */
static bool merge_views(comb *c, const view *va, const view *vb, unsigned level, res *r) {
    const ops *o = &c->o;
    uint32_t na = coll_count(va), nb = coll_count(vb), ha = 0, hb = 0, split = 0;
    bool sorted = level == CHAMP_COLL_LEVEL && coll_sorted(o, va) && coll_sorted(o, vb);
    mout out;
    out.n = 0;
    out.bytes = 0;
    out.v = NULL;
    out.lazy = va->n != NULL;
    if (!out.lazy && !mout_start(c, &out, va, na + nb))
        return false;
    bool same_a = true, same_b = true, ok = true;
    for (uint32_t i = 0; i < na && ok; i++) {
        ventry x = coll_at(o, va, i), z = x;
        uint32_t j = view_find(o, vb, &x, level, sorted, &hb);
        bool put = true;
        if (j < nb) {
            if (c->op == OP_UNION || c->op == OP_INTERSECT) {
                ventry y = coll_at(o, vb, j);
                z.e.v = resolve_val(c, &x, &y);
                if (z.e.v != x.e.v)
                    same_a = false;
                if (z.e.v != y.e.v)
                    same_b = false;
            } else {
                same_a = same_b = false; /* dropped: it is in both */
                put = false;
            }
        } else {
            if (c->count_a)
                c->only++;
            if (c->op == OP_INTERSECT || (c->op == OP_FILTER && !keep_entry(c, &x))) {
                same_a = false;
                put = false;
            } else {
                same_b = false;
            }
        }
        if (out.lazy && !same_a)
            ok = mout_start(c, &out, va, na + nb);
        if (ok && put) {
            if (!out.lazy)
                out.v[out.n] = z;
            out.n++;
        }
    }
    split = out.n; /* a's entries kept, then b's additions: two runs */
    for (uint32_t j = 0; j < nb && ok; j++) {
        ventry y = coll_at(o, vb, j);
        if (view_find(o, va, &y, level, sorted, &ha) < na)
            continue;
        if (!c->count_a)
            c->only++;
        if (c->op == OP_UNION || c->op == OP_SYMDIFF) {
            same_a = false;
            if (out.lazy)
                ok = mout_start(c, &out, va, na + nb);
            if (ok)
                out.v[out.n++] = y;
        } else {
            same_b = false;
        }
    }
    if (ok && c->op == OP_FILTER)
        c->kept += out.n;
    if (ok && out.lazy) {
        /* exactly a's entries: a's node as it is */
        res_of_view(r, va);
    } else if (ok && level == CHAMP_COLL_LEVEL) {
        ok = build_coll(c, out.v, out.n, sorted ? split : out.n + 1, r);
    } else if (ok) {
        elist l;
        l.n = out.n;
        for (uint32_t i = 0; i < out.n; i++)
            l.e[i] = out.v[i];
        ok = build_list(c, &l, level, r);
    }
    if (out.bytes)
        champ__scratch_free(o->ta->pool, out.v, out.bytes);
    if (!ok)
        return false;
    r->same_a = same_a;
    r->same_b = same_b;
    return true;
}

/* Slot `bit` of two bitmap nodes (nb NULL: filter) when neither side
 * holds a child, without views: entries are read as they are, and hashed
 * only to order a new pair.  false: the slot needs the general path (a
 * child on a side, a pair facing an entry, or two pairs that are not of
 * the same two key words). */
static bool combine_slot(comb *c, const node *na, const node *nb, uint32_t bit, res *r) {
    unsigned W = c->o.W;
    int op = c->op;
    int ka = slot_kind(na, bit), kb = nb ? slot_kind(nb, bit) : SL_EMPTY;
    if (ka == SL_KID || kb == SL_KID || (ka == SL_PAIR && kb == SL_ENTRY) ||
        (kb == SL_PAIR && ka == SL_ENTRY))
        return false;
    entry x[2], y[2];
    for (int i = 0; i < ka; i++)
        x[i] = ent_get(na, node_eidx(na, bit) + (uint32_t)i, W);
    for (int j = 0; j < kb; j++)
        y[j] = ent_get(nb, node_eidx(nb, bit) + (uint32_t)j, W);
    if (ka == SL_PAIR && kb == SL_PAIR && (x[0].k != y[0].k || x[1].k != y[1].k))
        return false; /* two pairs, not of the same two keys: by hashes */
    res_empty(r);
    if (op == OP_FILTER) {
        for (int i = 0; i < ka; i++) {
            ventry vx = {x[i], 0};
            if (keep_entry(c, &vx))
                r->e[r->n++] = x[i];
        }
        c->kept += r->n;
        r->same_a = r->n == (uint32_t)ka;
        return true;
    }
    if (kb == SL_EMPTY) {
        if (c->count_a)
            c->only += (size_t)ka;
        if (op != OP_INTERSECT) {
            r->n = (uint32_t)ka;
            r->e[0] = x[0];
            r->e[1] = x[ka - 1];
        }
        r->same_a = op != OP_INTERSECT;
        r->same_b = op == OP_INTERSECT;
        return true;
    }
    if (ka == SL_EMPTY) {
        if (!c->count_a)
            c->only += (size_t)kb;
        if (op == OP_UNION || op == OP_SYMDIFF) {
            r->n = (uint32_t)kb;
            r->e[0] = y[0];
            r->e[1] = y[kb - 1];
        }
        r->same_b = op == OP_UNION || op == OP_SYMDIFF;
        r->same_a = !r->same_b;
        return true;
    }
    /* an entry on each side, or one pair of keys */
    if (ka == SL_PAIR || ops_same_key(&c->o, x[0].k, y[0].k)) {
        if (op == OP_UNION || op == OP_INTERSECT) {
            r->n = (uint32_t)ka;
            r->same_a = r->same_b = true;
            for (int i = 0; i < ka; i++) {
                ventry vx = {x[i], 0}, vy = {y[i], 0};
                r->e[i] = x[i];
                r->e[i].v = resolve_val(c, &vx, &vy);
                r->same_a = r->same_a && r->e[i].v == x[i].v;
                r->same_b = r->same_b && r->e[i].v == y[i].v;
            }
        }
        return true;
    }
    c->only++; /* one key on each side only: one on the counted side */
    if (op == OP_UNION || op == OP_SYMDIFF) {
        pair_order_keys(c->o.ta, r->e, x[0], ops_hash(&c->o, x[0].k), y[0],
                        ops_hash(&c->o, y[0].k), c->o.kind);
        r->n = 2;
    } else if (op == OP_DIFFERENCE) {
        r->n = 1;
        r->e[0] = x[0];
        r->same_a = true;
    }
    return true;
}

/* One slot (or subtree) of the result. */
static bool combine(comb *c, const view *va, const view *vb, unsigned level, res *r) {
    int op = c->op;
    res_empty(r);
    if (va->n && va->n == vb->n) {
        /* the same subtree: in union and intersection it stays */
        if (op == OP_UNION || op == OP_INTERSECT)
            res_of_view(r, va);
        r->same_a = r->same_b = op == OP_UNION || op == OP_INTERSECT;
        return true;
    }
    if (VIEW_EMPTY(vb)) {
        if (op == OP_FILTER) {
            if (VIEW_EMPTY(va))
                return true;
            /* visit every entry: below */
        } else {
            count_only(c, va, level, true);
            if (op != OP_INTERSECT)
                res_of_view(r, va);
            r->same_a = op != OP_INTERSECT;
            r->same_b = VIEW_EMPTY(va) || op == OP_INTERSECT;
            return true;
        }
    } else if (VIEW_EMPTY(va)) {
        count_only(c, vb, level, false);
        if (op == OP_UNION || op == OP_SYMDIFF)
            res_of_view(r, vb);
        r->same_b = op == OP_UNION || op == OP_SYMDIFF;
        r->same_a = !r->same_b;
        return true;
    }
    if (level == CHAMP_COLL_LEVEL || (!va->n && !vb->n)) {
        if (level != CHAMP_COLL_LEVEL) {
            /* two short runs: merge them here when a key may be in both
             * (same hash), else split them by slot below */
            bool any = false;
            for (uint32_t i = 0; i < va->nv && !any; i++)
                for (uint32_t j = 0; j < vb->nv && !any; j++)
                    any = va->v[i].h == vb->v[j].h;
            if (!any && vb->nv)
                goto slots;
        }
        if (!merge_views(c, va, vb, level, r))
            return false;
        if (r->n == SUB_NODE && r->owned && (r->same_a || r->same_b)) {
            /* a new collision node with one side's entries: that side's
             * node (a run of one side is two entries at most: never a
             * node; a's node came back as it is, not owned) */
            bool sa_ = r->same_a, sb_ = r->same_b;
            champ__node_drop(c->o.ta, r->kid, level);
            res_of_view(r, sa_ ? va : vb);
            r->same_a = sa_;
            r->same_b = sb_;
        }
        return true;
    }
slots:;
    uint32_t mask = view_mask(va, level) | view_mask(vb, level);
    res rs[32];
    uint32_t ss[32], n = 0, ca = 0, cb = 0;
    bool same_a = true, same_b = true;
    /* two nodes (filter: one): most slots without views */
    bool nodes = va->n && (vb->n || op == OP_FILTER);
    while (mask) {
        uint32_t s = (uint32_t)__builtin_ctz(mask);
        mask &= mask - 1;
        ventry ba[2], bb[2];
        view sa, sb;
        if (nodes && combine_slot(c, va->n, vb->n, 1u << s, &rs[n])) {
            /* done */
        } else if (view_slot(&c->o, va, level, s, ba, &ca, &sa),
                   view_slot(&c->o, vb, level, s, bb, &cb, &sb),
                   views_hash(&c->o, &sa, ba, &sb, bb),
                   !combine(c, &sa, &sb, level + 1, &rs[n])) {
            for (uint32_t k = 0; k < n; k++)
                if (rs[k].n == SUB_NODE && rs[k].owned)
                    champ__node_drop(c->o.ta, rs[k].kid, level + 1);
            return false;
        }
        same_a = same_a && rs[n].same_a;
        same_b = same_b && rs[n].same_b;
        if (rs[n].n) {
            /* a result of entries carries their order: trie order */
            ss[n] = s;
            n++;
        }
    }
    if (same_a && va->n) {
        /* nothing changed on a's side: a's node itself (same_b: b's
         * contents too, in another node) */
        for (uint32_t k = 0; k < n; k++)
            if (rs[k].n == SUB_NODE && rs[k].owned)
                champ__node_drop(c->o.ta, rs[k].kid, level + 1);
        res_of_view(r, va);
        r->same_a = true;
        r->same_b = same_b;
        return true;
    }
    if (same_b && vb->n && !same_a) {
        for (uint32_t k = 0; k < n; k++)
            if (rs[k].n == SUB_NODE && rs[k].owned)
                champ__node_drop(c->o.ta, rs[k].kid, level + 1);
        res_of_view(r, vb);
        r->same_b = true;
        return true;
    }
    if (!build_node(c, rs, ss, n, level, r))
        return false;
    r->same_a = same_a && r->n != SUB_NODE;
    r->same_b = same_b && r->n != SUB_NODE;
    return true;
}

/* The handle of a result: r's node (a reference taken when r borrowed it)
 * or no root.  On failure r's reference is dropped and *out is untouched. */
static champ_status finish(const champ_map *a, res *r, size_t size, champ_map **out) {
    mtype *t = a->t;
    node *root = NULL;
    if (r->n == SUB_NODE) {
        root = r->kid;
        if (!r->owned)
            rc_inc(&root->rc, t->atomic);
    }
    /* Never entries: a root view is a node (or nothing), so the top level
     * ends in res_of_view or build_node at level 0, which never pulls
     * entries up (a root may hold one or two entries in place). */
    CHAMP_ASSERT(r->n == 0 || r->n == SUB_NODE);
    champ_map *m = champ__map_handle(t, root, size);
    if (!m) {
        if (root)
            champ__node_drop(t, root, 0);
        return CHAMP_ENOMEM;
    }
    *out = m;
    return CHAMP_OK;
}

static champ_status combine_slow(comb *c, const champ_map *a, const champ_map *b,
                                 champ_map **out);

static champ_status combine_maps(int op, const champ_map *a, const champ_map *b,
                                 champ_merge_fn resolve, champ_pred_fn keep, void *ctx,
                                 champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    champ_status st = algebra_check(a, b);
    if (st != CHAMP_OK)
        return st;
    if (!copyable(a->t))
        return CHAMP_EINVAL;
    map_settle(a); /* results share the inputs' nodes */
    map_settle(b);
    comb c;
    memset(&c, 0, sizeof c);
    ops_init(&c.o, a, b);
    c.op = op;
    c.resolve = resolve;
    c.keep = keep;
    c.ctx = ctx;
    c.count_a = a->size <= b->size;
    frames f;
    frames_push(&f, a, b);
    if (!same_hashing(a->t, b->t) || a->t->pool != b->t->pool || !same_refs(a->t, b->t)) {
        st = combine_slow(&c, a, b, out);
        frames_pop(&f);
        return st;
    }
    view va = root_view(a), vb = root_view(b);
    res r;
    if (!combine(&c, &va, &vb, 0, &r)) {
        frames_pop(&f);
        return CHAMP_ENOMEM;
    }
    size_t common = c.count_a ? a->size - c.only : b->size - c.only, size;
    switch (op) {
    case OP_UNION: size = a->size + b->size - common; break;
    case OP_INTERSECT: size = common; break;
    case OP_DIFFERENCE: size = a->size - common; break;
    case OP_SYMDIFF: size = a->size + b->size - 2 * common; break;
    default: size = c.kept; break;
    }
    st = finish(a, &r, size, out);
    frames_pop(&f);
    return st;
}

champ_status champ_union(const champ_map *a, const champ_map *b, champ_merge_fn resolve,
                         void *ctx, champ_map **out) {
    return combine_maps(OP_UNION, a, b, resolve, NULL, ctx, out);
}

champ_status champ_intersect(const champ_map *a, const champ_map *b,
                             champ_merge_fn resolve, void *ctx, champ_map **out) {
    return combine_maps(OP_INTERSECT, a, b, resolve, NULL, ctx, out);
}

champ_status champ_difference(const champ_map *a, const champ_map *b, champ_map **out) {
    return combine_maps(OP_DIFFERENCE, a, b, NULL, NULL, NULL, out);
}

champ_status champ_symdiff(const champ_map *a, const champ_map *b, champ_map **out) {
    return combine_maps(OP_SYMDIFF, a, b, NULL, NULL, NULL, out);
}

champ_status champ_filter(const champ_map *m, champ_pred_fn keep, void *ctx,
                          champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!m || !keep || !copyable(m->t))
        return CHAMP_EINVAL;
    map_settle(m);
    comb c;
    memset(&c, 0, sizeof c);
    ops_init(&c.o, m, m);
    c.op = OP_FILTER;
    c.keep = keep;
    c.ctx = ctx;
    c.count_a = false;
    opframe fr;
    op_push(&fr, m, OPF_READ);
    view va = root_view(m);
    res r;
    champ_status st;
    if (!filter_view(&c, &va, 0, &r))
        st = CHAMP_ENOMEM;
    else
        st = finish(m, &r, c.kept, out);
    op_end(&fr);
    return st;
}

/* ------------------------------------------------------------------ */
/* Key by key: inputs that hash differently, or live in other pools    */
/* ------------------------------------------------------------------ */


typedef struct slowb {
    comb *c;
    const champ_map *a, *b;
    champ_map *r;
    champ_status st;
    bool a_side;
} slowb;

static int slow_build(void *ctx, entry e) {
    slowb *s = ctx;
    comb *c = s->c;
    ventry x;
    x.e = e;
    x.h = 0;
    const champ_map *other = s->a_side ? s->b : s->a;
    const uint64_t *f = find_in(other, &x, s->a_side ? s->a->t : s->b->t);
    int op = c->op;
    if (s->a_side) {
        /* r starts as a copy of a: drop what a alone must not keep */
        bool drop = f ? (op == OP_DIFFERENCE || op == OP_SYMDIFF) : op == OP_INTERSECT;
        if (drop) {
            s->st = champ__set_entry(s->r, e.k, s->a->t, NULL, true);
        } else if (f && c->o.W == ENT_MAP && (op == OP_UNION || op == OP_INTERSECT)) {
            ventry y;
            y.e.k = f[0];
            y.e.v = (void *)(uintptr_t)f[1];
            y.h = 0;
            void *v = resolve_val(c, &x, &y);
            if (v != e.v)
                s->st = champ__set_entry(s->r, e.k, s->a->t, v, false);
        }
    } else if (!f && (op == OP_UNION || op == OP_SYMDIFF)) {
        s->st = champ__set_entry(s->r, e.k, s->b->t, e.v, false);
    }
    return s->st != CHAMP_OK;
}

static champ_status combine_slow(comb *c, const champ_map *a, const champ_map *b,
                                 champ_map **out) {
    champ_map *r;
    champ_status st = champ_copy(a, &r);
    if (st != CHAMP_OK)
        return st;
    slowb s = {c, a, b, r, CHAMP_OK, true};
    champ__walk(a->root, 0, c->o.W, slow_build, &s);
    if (s.st == CHAMP_OK && (c->op == OP_UNION || c->op == OP_SYMDIFF)) {
        /* b's keys that a lacks (intersect and difference add none) */
        s.a_side = false;
        champ__walk(b->root, 0, c->o.W, slow_build, &s);
    }
    if (s.st != CHAMP_OK) {
        champ_free(r);
        return s.st;
    }
    *out = r;
    return CHAMP_OK;
}

/*
 * pin.c - pins: how a thread reads a concurrent pool's cell without
 * writing anything the other threads read.
 *
 * A snapshot loaded from a cell (cell.c) takes no count on its root: the
 * count is a line every loading thread would write, and the root's
 * bitmaps, which every lookup reads first, share it.  Instead the loading
 * thread names the root in a pin slot of its own heap (hazard pointers:
 * publish, then check that the cell still holds that root).  A cell that
 * lets a version go (a store, a compare-and-swap, its free) hands its
 * references to a retired record, and a record is released only when no
 * slot names its root.  So a pinned root cannot be freed under its reader,
 * and a snapshot costs its thread a handle from its own heap, two writes
 * to its own slot and no count.
 *
 * Worked example, two threads and a cell holding version R1:
 *   A: load: slot[A] = R1, cell still R1: snapshot S pinned on R1.
 *   B: store R2: cell = R2; R1 (the cell's two references, a reference to
 *      the type) goes to a record; the scan finds slot[A] naming R1 and
 *      marks it (bit 0): the record waits.
 *   A: free S: its slot is marked, so A clears it under the records' lock
 *      and scans the records: R1 is named nowhere now, and A releases it.
 * Had A cleared its slot before B's scan, B would have released R1 at
 * once.  A load that publishes R1 after B's store reads the cell again,
 * finds R2, and publishes R2 instead (the slot and the cell are read and
 * written with sequentially consistent operations: either the scan sees
 * the slot or the load sees the new root).
 *
 * The records' lock is a spinlock taken by stores that retire a version
 * and by the release of a marked pin; an unmarked pin is released with one
 * compare-and-swap on its own slot, and a load that finds the cell
 * unchanged takes no lock at all.  Records are not ordered: each holds a
 * reference to its type, so pinned handles of a freed cell keep their
 * type until their record goes.
 *
 * Light versions.  champ_pset_u64 / champ_premove_u64 of a pinned
 * snapshot (a plain u64 map) derive a version that pins the same root in
 * a slot of its own and whose new nodes borrow the children they did not
 * change: they take no count on them, nor on the root or the type.  Each
 * new node is a light node (node.h): its count says so and names its one
 * light child, so the new nodes form a chain from the root.  Freeing the
 * version frees the chain and empties its slot: a snapshot, a derive and
 * its drop write nothing another thread reads.  Anything that could share
 * or change a light version's nodes (copy, update, cells, the algebra,
 * apply, trim) settles it first: the chain takes the counts it skipped, and
 * the version is an ordinary counted one from then on.  Two threads may
 * copy one version at once: one settles, the other waits (m->light).
 *
 * A p-form of a counted u64 map (in either kind of pool) is a light
 * version on a counted base: its slot keeps the source's root (tagged
 * PIN_BASE) and it holds one count on it and one on the type.  Settling
 * one that holds its base alone takes the base's path nodes over
 * (chain_absorb) instead of counting children: a chain of versions, each
 * derived from the last and the last freed, never writes a child's count.
 */
#include "internal.h"

#include <sched.h>

#define PIN_WAIT ((uintptr_t)1) /* a record waits for this pin to go */
/* A slot of a light version on a counted base holds the base tagged with
 * PIN_BASE: the count keeps the base, so the slot is only where the
 * pointer is kept, not a hazard pointer.  No scan matches a tagged value
 * (it never marks it), so the slot is written and emptied with plain
 * stores, no locked instruction. */
#define PIN_BASE ((uintptr_t)2)

static void rec_lock(champ_pool *p) {
    unsigned spins = 0;
    while (__atomic_test_and_set(&p->rlock, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&p->rlock, __ATOMIC_RELAXED)) {
#if defined(__x86_64__) || defined(__i386__)
            if (++spins < 128) {
                __builtin_ia32_pause();
                continue;
            }
#endif
            sched_yield();
        }
}

static void rec_unlock(champ_pool *p) {
    __atomic_clear(&p->rlock, __ATOMIC_RELEASE);
}

uintptr_t *champ__pin_claim(champ_map *m, unsigned keep) {
    heap *h = champ__handle_heap(m);
    /* only the heap's thread claims its slots; other threads only empty
     * the slots of handles they free, and mark named ones */
    unsigned found = HEAP_PINS, nfree = 0;
    for (unsigned i = 0; i < HEAP_PINS && nfree <= keep; i++)
        if (__atomic_load_n(&h->pins[i], __ATOMIC_RELAXED) == 0 && nfree++ == 0)
            found = i;
    if (nfree <= keep)
        return NULL;
    m->pin = (uint8_t)(found + 1);
    return &h->pins[found];
}

uintptr_t *champ__pin_slot(const champ_map *m) {
    CHAMP_ASSERT(m->pin >= 1 && m->pin <= HEAP_PINS);
    return &champ__handle_heap(m)->pins[m->pin - 1];
}

/* Whether any pin slot of p names r; marks every one that does (the
 * records' lock is held). */
static bool pins_mark(champ_pool *p, const node *r) {
    bool named = false;
    for (heap *h = champ__pool_heaps(p); h; h = h->next)
        for (unsigned i = 0; i < HEAP_PINS; i++) {
            uintptr_t v = __atomic_load_n(&h->pins[i], __ATOMIC_SEQ_CST);
            while ((v & ~PIN_WAIT) == (uintptr_t)r) {
                if ((v & PIN_WAIT) ||
                    __atomic_compare_exchange_n(&h->pins[i], &v, v | PIN_WAIT, false,
                                                __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
                    named = true;
                    break;
                }
            }
        }
    return named;
}

/* Unlinks the records whose root no slot names and returns them (the
 * records' lock is held). */
static retired *reclaim_locked(champ_pool *p) {
    retired *done = NULL;
    retired **link = &p->retired;
    while (*link) {
        retired *r = *link;
        if (pins_mark(p, r->root)) {
            link = &r->next;
            continue;
        }
        *link = r->next;
        r->next = done;
        done = r;
    }
    return done;
}

/* Releases unlinked records: the cell's references to each root, and the
 * record's to its type (which may be the pool's last: p is not used
 * after). */
static void release_done(retired *d) {
    while (d) {
        retired *next = d->next;
        mtype *t = d->t;
        node *root = d->root, *heir = d->heir;
        pool_free(t->pool, d, RETIRED_BYTES); /* first: t may hold the pool */
        rc_dec(&root->rc, true); /* the second of two: never the last */
        if (heir)
            champ__xfer_release(t, root, heir);
        else
            champ__node_drop(t, root, 0);
        champ__type_release(t);
        d = next;
    }
}

static void reclaim(champ_pool *p) {
    rec_lock(p);
    retired *d = reclaim_locked(p);
    rec_unlock(p);
    release_done(d);
}

void champ__pin_set(champ_pool *p, uintptr_t *slot, node *r) {
    uintptr_t old = __atomic_exchange_n(slot, (uintptr_t)r, __ATOMIC_SEQ_CST);
    if (UNLIKELY(old & PIN_WAIT))
        reclaim(p); /* a record waited on what the slot named */
}

void champ__pin_release(champ_pool *p, uintptr_t *slot) {
    uintptr_t v = __atomic_load_n(slot, __ATOMIC_RELAXED);
    /* unmarked: one compare-and-swap, and nothing of p is touched after
     * (once the slot is empty, a record that kept p alive may go) */
    if (LIKELY(!(v & PIN_WAIT)) &&
        __atomic_compare_exchange_n(slot, &v, 0, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        return;
    /* marked: a record waits on this pin; empty it under the lock, so that
     * no other release can free p before the scan */
    rec_lock(p);
    __atomic_store_n(slot, 0, __ATOMIC_SEQ_CST);
    retired *d = reclaim_locked(p);
    rec_unlock(p);
    release_done(d);
}

void champ__pin_count(champ_map *m, bool root) {
    mtype *t = m->t;
    uintptr_t *slot = champ__pin_slot(m);
    if (!t->immortal)
        rc_inc(&t->refs, true);
    if (root && m->root)
        rc_inc(&m->root->rc, true);
    m->pin = 0;
    champ__pin_release(t->pool, slot);
}

void champ__pin_retire(champ_pool *p, retired *rec) {
    rec_lock(p);
    rec->next = p->retired;
    p->retired = rec;
    retired *d = reclaim_locked(p);
    rec_unlock(p);
    release_done(d);
}

void champ__pin_settle(champ_pool *p) {
    /* a plain pool has light versions (of counted maps), no pinned
     * snapshot and no record */
    for (champ_map *m = champ__handle_next(p, NULL); m; m = champ__handle_next(p, m))
        if (m->light != LIGHT_NONE)
            champ__light_settle(m);
        else if (map_pinned(m))
            champ__pin_count(m, true);
    if (p->concurrent)
        reclaim(p);
}

/* ------------------------------------------------------------------ */
/* Light versions                                                      */
/* ------------------------------------------------------------------ */

node *champ__light_base(const champ_map *m) {
    uintptr_t v = __atomic_load_n(champ__pin_slot(m), __ATOMIC_RELAXED);
    return (node *)(v & ~(PIN_WAIT | PIN_BASE));
}

void champ__base_set(uintptr_t *slot, node *base) {
    __atomic_store_n(slot, (uintptr_t)base | PIN_BASE, __ATOMIC_RELAXED);
}

void champ__base_release(uintptr_t *slot) {
    CHAMP_ASSERT(!(__atomic_load_n(slot, __ATOMIC_RELAXED) & PIN_WAIT));
    __atomic_store_n(slot, 0, __ATOMIC_RELEASE);
}

/* Light chain n (light nodes, each naming the next) takes the counts it
 * skipped: one on every child but a node's light one (which it owns
 * already); its nodes are ordinary ones from then on. */
static void chain_count(node *n, const mtype *t) {
    unsigned W = t->width;
    while (n) {
        uint32_t lk = node_light_kid(n), nk = node_nkid(n);
        node **kids = node_kids(n, W);
        for (uint32_t i = 0; i < nk; i++)
            if (i + 1 != lk)
                rc_inc(&kids[i]->rc, t->atomic);
        node *next = lk ? kids[lk - 1] : NULL;
        __atomic_store_n(&n->rc, 1u, __ATOMIC_RELAXED);
        n = next;
    }
}

#ifdef CHAMP_DEBUG
/* The slot bit of child number k (from 0) of a node with child bits kb. */
static uint32_t kid_bit(uint32_t kb, uint32_t k) {
    while (k--)
        kb &= kb - 1;
    return kb & (0u - kb);
}

/* chain_absorb's premise: light node c, a copy of x, holds x's children
 * in every child slot but `changed` (which may be no slot: 0). */
static bool copy_shares_kids(const node *x, const node *c, uint32_t changed, unsigned W) {
    uint32_t xb = x->nodemap & ~x->datamap, cb = c->nodemap & ~c->datamap;
    if ((xb ^ cb) & ~changed)
        return false;
    node **xkids = node_kids(x, W), **ckids = node_kids(c, W);
    for (uint32_t bs = xb & cb & ~changed; bs; bs &= bs - 1) {
        uint32_t bit = bs & (0u - bs);
        if (xkids[popc(xb & (bit - 1))] != ckids[popc(cb & (bit - 1))])
            return false;
    }
    return true;
}
#endif

/* Settling a light version on a counted base whose only reference the
 * version holds: x is that base node, c its light copy at `level`, which
 * borrows every child of x but the one in the slot the update changed.
 * The borrowed children keep x's references, so x goes without a count
 * changed but one: the child of x in that slot.  When c's light child
 * replaced it (the same slot holds a child in both) and x held it alone,
 * the walk goes on one level down; else that child's reference is
 * dropped, and the rest of the chain counts what it borrows.
 *
 * The changed slot needs no search: one slot changes per level, so when
 * x and c have the same child slots their child arrays differ at the
 * light child's index at most; when they differ, the one slot where they
 * differ is the changed one (a child of x collapsed into c's entries, or a
 * pair of x become c's new subtree). */
static void chain_absorb(const mtype *t, node *x, node *c, unsigned level) {
    unsigned W = t->width;
    CHAMP_ASSERT(!t->ent_refs);
    for (;;) {
        uint32_t lk = node_light_kid(c);
        uint32_t xb = x->nodemap & ~x->datamap, cb = c->nodemap & ~c->datamap;
        node **xkids = node_kids(x, W);
        node *ck = lk ? node_kids(c, W)[lk - 1] : NULL, *xk = NULL;
        if (xb == cb) {
            CHAMP_ASSERT(copy_shares_kids(x, c, lk ? kid_bit(cb, lk - 1) : 0, W));
            xk = lk ? xkids[lk - 1] : NULL;
        } else {
            uint32_t bit = xb ^ cb;
            CHAMP_ASSERT(popc(bit) == 1 && copy_shares_kids(x, c, bit, W));
            if (xb & bit) /* collapsed into c's entries */
                champ__node_drop(t, xkids[popc(xb & (bit - 1))], level + 1);
        }
        __atomic_store_n(&c->rc, 1u, __ATOMIC_RELAXED);
        pool_free(t->pool, x, node_block(x, level, W));
        if (!ck)
            return;
        if (!xk) { /* a new subtree (a pair met a third key) */
            chain_count(ck, t);
            return;
        }
        if (__atomic_load_n(&xk->rc, __ATOMIC_ACQUIRE) != 1) {
            /* shared beyond x: ck's chain counts what it borrows first */
            chain_count(ck, t);
            champ__node_drop(t, xk, level + 1);
            return;
        }
        x = xk;
        c = ck;
        level++;
    }
}

/* The end of settling a light version of a pinned snapshot (the caller
 * holds it in LIGHT_SETTLING): its chain counts what it borrows when
 * `count`, the handle takes its type (and the snapshot's root when
 * `root`) and lets its pin go. */
static void light_count_pinned(champ_map *m, bool count, bool root) {
    if (count)
        chain_count(m->root, m->t);
    champ__pin_count(m, root);
    __atomic_store_n(&m->light, LIGHT_NONE, __ATOMIC_RELEASE);
}

void champ__light_settle(champ_map *m) {
    for (;;) {
        uint8_t want = LIGHT_ON;
        if (__atomic_compare_exchange_n(&m->light, &want, LIGHT_SETTLING, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE))
            break;
        if (want == LIGHT_NONE)
            return; /* another thread settled it (a concurrent copy) */
        /* another thread holds it: a settle (wait for LIGHT_NONE) or a
         * cell's claim, which may give it back light (LIGHT_ON: claim it
         * then) */
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    mtype *t = m->t;
    bool own_root = m->root && node_light(m->root);
    if (m->lbase == LBASE_COUNT) {
        /* the version holds its type already, and one count on its base */
        node *base = champ__light_base(m);
        if (own_root && __atomic_load_n(&base->rc, __ATOMIC_ACQUIRE) == 1) {
            chain_absorb(t, base, m->root, 0);
        } else if (own_root) {
            chain_count(m->root, t);
            champ__node_drop(t, base, 0);
        } else if (m->root != base) {
            /* the update left a root it borrows (or none) */
            if (m->root)
                rc_inc(&m->root->rc, t->atomic);
            champ__node_drop(t, base, 0);
        }
        uintptr_t *slot = champ__pin_slot(m);
        m->pin = 0;
        m->lbase = LBASE_PIN;
        champ__base_release(slot);
        __atomic_store_n(&m->light, LIGHT_NONE, __ATOMIC_RELEASE);
        return;
    }
    /* counted now: the handle takes its type (and the snapshot's root,
     * when the derive changed nothing), and lets its pin go */
    light_count_pinned(m, own_root, !own_root);
}

void champ__light_free(champ_map *m) {
    champ_pool *p = m->t->pool;
    unsigned W = m->t->width;
    node *n = m->root;
    for (unsigned level = 0; n && node_light(n); level++) {
        uint32_t lk = node_light_kid(n);
        node *next = lk ? node_kids(n, W)[lk - 1] : NULL;
        pool_free(p, n, node_block(n, level, W));
        n = next;
    }
    m->root = NULL;
    if (m->lbase == LBASE_COUNT)
        champ__node_drop(m->t, champ__light_base(m), 0);
}

/* ------------------------------------------------------------------ */
/* Publication by transfer                                             */
/* ------------------------------------------------------------------ */
/*
 * A cell's compare-and-swap of a light version W derived from a pinned
 * snapshot of the cell's version C (the bench's threads loop, a server's
 * "derive, publish" step) used to settle W: W's path nodes counted each
 * child they borrowed from C's (about 60 at 10K keys), and C's release
 * gave those counts back.  In a concurrent pool both write count fields
 * on the cache lines that every other thread's lookups read (the upper
 * levels' node headers), so each publication cost the other threads a
 * cache miss on each of them.
 *
 * When W's base is the version the swap replaces, W's light nodes become
 * ordinary without counting: along the update's path, C's node and W's
 * copy of it share one count for each child they both hold.  C's record
 * holds one reference to W's root (its heir), so W's path outlives C's.
 * C's readers may keep reading C meanwhile; nothing of C changes.  When
 * the record goes (no pin names C), each of C's path nodes that no one
 * else holds is freed without touching the children: their counts are
 * W's now.  A node of that path that is held elsewhere (a counted copy
 * of a snapshot of C, or a version sharing the subtree) first counts the
 * children again, and is dropped as usual.  Nothing can reach C's path
 * but through C's root or such a holder, so a count of 1 read with the
 * record's (or the freed parent's) reference in hand means no one else.
 *
 * Example, 10K keys, W sets one key: C = r -> a -> b (root, level 1,
 * level 2), W = r' -> a' -> b'.  r and r' share 31 children, a and a' 31,
 * b and b' their entries.  Publication stores r' into the cell with count
 * 4 (W's handle, the cell's two, the record's one); a' and b' get count 1.
 * When the record of C goes: r (count 1: the record's) is freed, a (count
 * 1: r's) is freed, b likewise; then the record drops r'.  No child count
 * was written.
 */

bool champ__light_claim(champ_map *m) {
    if (__atomic_load_n(&m->light, __ATOMIC_ACQUIRE) != LIGHT_ON || m->lbase != LBASE_PIN ||
        !m->root || !node_light(m->root))
        return false;
    uint8_t want = LIGHT_ON;
    return __atomic_compare_exchange_n(&m->light, &want, LIGHT_SETTLING, false,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

void champ__light_unclaim(champ_map *m) {
    __atomic_store_n(&m->light, LIGHT_ON, __ATOMIC_RELEASE);
}

bool champ__light_transfer(champ_map *m, const node *old) {
    const mtype *t = m->t;
    unsigned W = t->width;
    if (old != champ__light_base(m)) {
        chain_count(m->root, t);
        return false;
    }
    node *x = m->root, *n = (node *)(uintptr_t)old;
    for (;;) {
        uint32_t lk = node_light_kid(x);
        node *xk = lk ? node_kids(x, W)[lk - 1] : NULL, *nk = NULL;
        if (xk && (x->nodemap & ~x->datamap) == (n->nodemap & ~n->datamap))
            nk = node_kids(n, W)[lk - 1]; /* the path goes on: xk is nk's copy */
        __atomic_store_n(&x->rc, 1u, __ATOMIC_RELAXED);
        if (!xk)
            return true;
        if (!nk) { /* a new subtree (a pair met a third key): its own */
            chain_count(xk, t);
            return true;
        }
        x = xk;
        n = nk;
    }
}

void champ__light_finish(champ_map *m) {
    light_count_pinned(m, false, false);
}

/* One level of a transferred path: fn (if any) gets every child n and x
 * hold in the same slot; *nk and *xk are their children in the changed
 * slot (NULL: none there; both set: the path goes on). */
static void xfer_level(const node *n, const node *x, unsigned level, unsigned W, node **nk,
                       node **xk, void (*fn)(node *, void *), void *arg) {
    *nk = *xk = NULL;
    if (level == CHAMP_COLL_LEVEL)
        return;
    uint32_t nb = n->nodemap & ~n->datamap, xb = x->nodemap & ~x->datamap;
    node **nkids = node_kids(n, W), **xkids = node_kids(x, W);
    if (nb == xb) {
        uint32_t nn = popc(nb);
        for (uint32_t i = 0; i < nn; i++) {
            if (nkids[i] != xkids[i]) {
                CHAMP_ASSERT(!*nk);
                *nk = nkids[i];
                *xk = xkids[i];
            } else if (fn) {
                fn(nkids[i], arg);
            }
        }
        return;
    }
    uint32_t diff = nb ^ xb;
    CHAMP_ASSERT(popc(diff) == 1);
    if (fn)
        for (uint32_t bs = nb & xb; bs; bs &= bs - 1) {
            uint32_t bit = bs & (0u - bs);
            CHAMP_ASSERT(nkids[popc(nb & (bit - 1))] == xkids[popc(xb & (bit - 1))]);
            fn(nkids[popc(nb & (bit - 1))], arg);
        }
    if (nb & diff)
        *nk = nkids[popc(nb & (diff - 1))]; /* collapsed into x's entries */
    else
        *xk = xkids[popc(xb & (diff - 1))]; /* a new subtree of x */
}

static void xfer_inc(node *kid, void *arg) {
    rc_inc(&kid->rc, ((const mtype *)arg)->atomic);
}

void champ__xfer_walk(const node *n, const node *x, unsigned level, unsigned W,
                      void (*fn)(node *, void *), void *arg) {
    for (;;) {
        node *nk, *xk;
        xfer_level(n, x, level, W, &nk, &xk, fn, arg);
        if (!nk || !xk)
            return;
        n = nk;
        x = xk;
        level++;
    }
}

void champ__xfer_release(const mtype *t, node *n, node *heir) {
    unsigned W = t->width;
    node *x = heir;
    CHAMP_ASSERT(!t->ent_refs); /* light versions: plain u64 maps */
    for (unsigned level = 0;; level++) {
        /* this walk holds one reference to n (the record's, or its freed
         * parent's): 1 means no one else's */
        if (__atomic_load_n(&n->rc, __ATOMIC_ACQUIRE) != 1) {
            /* n and its path below take their own counts again */
            champ__xfer_walk(n, x, level, W, xfer_inc, (void *)(uintptr_t)t);
            champ__node_drop(t, n, level);
            break;
        }
        node *nk, *xk;
        xfer_level(n, x, level, W, &nk, &xk, NULL, NULL);
        pool_free(t->pool, n, node_block(n, level, W));
        if (!nk)
            break;
        if (!xk) { /* n's own child (collapsed in x): an ordinary drop */
            champ__node_drop(t, nk, level + 1);
            break;
        }
        n = nk;
        x = xk;
    }
    champ__node_drop(t, heir, 0);
}

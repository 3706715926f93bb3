/*
 * cell.c - a cell holding one version of a map, for threads to take
 * (load: a snapshot of their own) and replace (store, compare-and-swap).
 *
 * The cell owns references to its version's root and one to its type.
 * Writers (store, compare-and-swap) take the cell's lock, a spinlock held
 * for a few instructions (read or swap a pointer and a size).
 *
 * In a plain pool a load takes the lock too, and a reference to the root
 * under it, before a store can drop the cell's.  In a concurrent pool a
 * load writes nothing the threads share: it pins the root in a slot of its
 * own heap (pin.c), checks that the cell still holds it, and reads the
 * size beside it under a sequence count (a writer makes it odd while it
 * changes root and size, and the load retries).  Its snapshot counts
 * neither the root nor the type.  There the cell holds two references to
 * its root, so a pinned root never looks owned to an update, and a
 * replaced version goes to a retired record until no pin names it.
 *
 * A light version derived from a snapshot of the version it replaces is
 * published by transfer (pin.c): its new nodes take over the replaced
 * path's counts on the children they share, and the replaced version's
 * record keeps it (the heir) until the record goes.  No count on a child
 * is written, so publishing does not dirty the node headers that other
 * threads' lookups read.
 *
 * Everything that can take long (allocating the snapshot's handle,
 * releasing a replaced version, which may free a whole trie) is done
 * outside the lock.  Readers of different cells never meet.
 */
#include "internal.h"

#include <stdlib.h>

static void cell_lock(champ_cell *c) {
    while (__atomic_test_and_set(&c->lock, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&c->lock, __ATOMIC_RELAXED))
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#else
            ;
#endif
}

static void cell_unlock(champ_cell *c) {
    __atomic_clear(&c->lock, __ATOMIC_RELEASE);
}

/* The cell's type gains one reference, and the cell joins its pool's
 * list of cells. */
static void type_hold(champ_cell *c, mtype *t) {
    if (!t->immortal)
        rc_inc(&t->refs, t->atomic);
    champ__pool_cell(t->pool, &c->link, true);
}

/* A cell shares its version's nodes with the maps stored and loaded (as
 * champ_copy does): a type that releases keys or values without retaining
 * them cannot share entries (each copy would release them once more), so
 * its maps are refused, as champ_copy refuses them. */
static bool cell_shareable(const mtype *t) {
    return !(t->val_release && !t->val_retain) && !(t->key_release && !t->key_retain);
}

champ_status champ_cell_new(const champ_map *m, champ_cell **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (m && !cell_shareable(m->t))
        return CHAMP_EINVAL;
    /* from a callback of an update or free of m: a copy of m is refused
     * there (the update may still free or change the nodes it owns) */
    if (m && UNLIKELY(champ__ops != NULL) && op_writing(m))
        return CHAMP_EBUSY;
    map_settle(m); /* the cell shares m's nodes */
    champ_cell *c = malloc(sizeof *c);
    if (!c)
        return CHAMP_ENOMEM;
    memset(c, 0, sizeof *c);
    if (m && m->t->atomic) {
        /* the record its free hands a pinned version to (an empty cell
         * takes it at its first store) */
        c->last = pool_alloc(m->t->pool, RETIRED_BYTES);
        if (!c->last) {
            free(c);
            return CHAMP_ENOMEM;
        }
    }
    if (m) {
        c->t = m->t;
        type_hold(c, c->t);
        c->root = m->root;
        c->size = m->size;
        if (c->root)
            for (unsigned i = 0; i < CELL_REFS(c->t); i++)
                rc_inc(&c->root->rc, c->t->atomic);
    }
    *out = c;
    return CHAMP_OK;
}

/* Whether c is being freed: a call from a callback of its own free (a
 * release of its version's keys or values, which may run there) finds it
 * so and is refused.  (Relaxed: only the freeing thread may reach a cell
 * whose free has begun.) */
static bool cell_dying(const champ_cell *c) {
    return UNLIKELY(__atomic_load_n(&c->dying, __ATOMIC_RELAXED) != 0);
}

void champ_cell_free(champ_cell *c) {
    if (!c || cell_dying(c))
        return; /* NULL, or from a callback of this free: already going */
    __atomic_store_n(&c->dying, 1, __ATOMIC_RELAXED);
    mtype *t = c->t;
    if (t) {
        champ__pool_cell(t->pool, &c->link, false);
        if (t->atomic && c->root) {
            /* snapshots may have it pinned: its references (the type's
             * too) go to the cell's record */
            c->last->root = c->root;
            c->last->t = t;
            c->last->heir = NULL;
            champ__pin_retire(t->pool, c->last);
        } else {
            if (c->last)
                pool_free(t->pool, c->last, RETIRED_BYTES);
            if (c->root)
                champ__node_drop(t, c->root, 0);
            champ__type_release(t);
        }
    }
    free(c);
}

/* A load of a plain pool's cell, or of a concurrent one when this thread
 * has no pin slot free: a counted snapshot, the references to the root
 * and to the type taken under the lock, before the handle is allocated:
 * a fixed pool's watermark callback, which runs inside that allocation,
 * may free this very cell (freeing old versions to make room is what the
 * watermark is for), and with it what may be the type's last other
 * reference (a regression test: concurrent.cell_load_watermark_frees). */
static champ_status cell_load_counted(champ_cell *c, champ_map **out) {
    cell_lock(c);
    mtype *t = c->t;
    node *root = c->root;
    size_t size = c->size;
    if (root)
        rc_inc(&root->rc, t->atomic);
    if (t && !t->immortal)
        rc_inc(&t->refs, t->atomic);
    cell_unlock(c);
    if (!t)
        return CHAMP_OK;
    champ_map *m = champ__handle_alloc(t->pool);
    if (!m) {
        if (root)
            champ__node_drop(t, root, 0);
        champ__type_release(t);
        return CHAMP_ENOMEM;
    }
    m->root = root;
    m->size = size;
    m->t = t;
    m->lbase = LBASE_FRESH; /* a snapshot to derive from (champ.c, light_begin) */
    *out = m;
    return CHAMP_OK;
}

champ_status champ_cell_load(champ_cell *c, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!c)
        return CHAMP_EINVAL;
    if (cell_dying(c))
        return CHAMP_EBUSY; /* from a callback of its free */
    mtype *t = __atomic_load_n(&c->t, __ATOMIC_ACQUIRE);
    if (!t)
        return CHAMP_OK; /* never stored into: no type to make a map of */
    if (!t->atomic)
        return cell_load_counted(c, out);
    champ_pool *p = t->pool;
    champ_map *m = champ__handle_alloc(p);
    if (!m)
        return CHAMP_ENOMEM;
    m->t = t;
    uintptr_t *slot = champ__pin_claim(m, 0);
    if (!slot) {
        champ__handle_free(p, m);
        return cell_load_counted(c, out);
    }
    for (;;) {
        node *r = __atomic_load_n(&c->root, __ATOMIC_ACQUIRE);
        if (!r)
            break;
        champ__pin_set(p, slot, r);
        unsigned s1 = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
        /* acquire loads: a root or size of a newer write brings its odd
         * count with it, so s2 differs from s1 (no fences: ThreadSanitizer
         * does not model them) */
        node *r2 = __atomic_load_n(&c->root, __ATOMIC_SEQ_CST);
        size_t size = __atomic_load_n(&c->size, __ATOMIC_ACQUIRE);
        unsigned s2 = __atomic_load_n(&c->seq, __ATOMIC_RELAXED);
        if (r2 == r && s1 == s2 && !(s1 & 1u)) {
            /* r was still the cell's after the pin was published: no
             * retired record can have missed the pin */
            m->root = r;
            m->size = size;
            *out = m;
            return CHAMP_OK;
        }
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    /* the cell's version is empty: a counted handle without a root */
    m->pin = 0;
    champ__pin_release(p, slot);
    if (!t->immortal)
        rc_inc(&t->refs, true);
    *out = m;
    return CHAMP_OK;
}

/* Swaps the cell to m's version when `expected` is NULL (store) or still
 * the cell's version (cas).
 *
 * m is settled first (the cell shares its nodes), except a light version
 * of a concurrent pool derived from a pinned snapshot: that one is claimed
 * (pin.c, "Publication by transfer") and, under the lock, published by
 * transfer when its base is the version it replaces, else settled there,
 * before its root is stored; one that is not published stays light (a
 * settle would write a count on every child its path borrows, lines the
 * other threads' lookups read, and its free would write them again). */
static champ_status cell_swap(champ_cell *c, const champ_map *expected, bool check,
                              const champ_map *m, bool *swapped) {
    if (!c || !m || !cell_shareable(m->t))
        return CHAMP_EINVAL;
    if (UNLIKELY(champ__ops != NULL) && op_writing(m))
        return CHAMP_EBUSY; /* as champ_cell_new */
    if (cell_dying(c))
        return CHAMP_EBUSY; /* from a callback of its free */
    mtype *t = m->t;
    /* a cell's type, once set, stays: another type is refused before
     * anything is allocated (checked again under the lock) */
    mtype *ct = __atomic_load_n(&c->t, __ATOMIC_ACQUIRE);
    if (ct && ct != t)
        return CHAMP_EPOOL;
    champ_map *lm = (champ_map *)(uintptr_t)m;
    bool claimed = t->atomic && champ__light_claim(lm);
    if (!claimed)
        map_settle(m); /* the cell shares m's nodes */
    unsigned refs = CELL_REFS(t);
    /* a concurrent cell's replaced version may be pinned: the record that
     * would keep it is allocated before anything changes */
    retired *rec = NULL, *last = NULL;
    if (t->atomic) {
        rec = pool_alloc(t->pool, RETIRED_BYTES);
        if (!rec) {
            if (claimed)
                champ__light_unclaim(lm);
            return CHAMP_ENOMEM;
        }
        /* the first store into a cell made empty: its free's record too
         * (c->last, once set, stays) */
        if (!__atomic_load_n(&c->last, __ATOMIC_RELAXED)) {
            last = pool_alloc(t->pool, RETIRED_BYTES);
            if (!last) {
                pool_free(t->pool, rec, RETIRED_BYTES);
                if (claimed)
                    champ__light_unclaim(lm);
                return CHAMP_ENOMEM;
            }
        }
    }
    if (m->root && !claimed)
        for (unsigned i = 0; i < refs; i++)
            rc_inc(&m->root->rc, t->atomic);
    cell_lock(c);
    bool ok;
    if (c->t && c->t != t) {
        cell_unlock(c);
        if (rec)
            pool_free(t->pool, rec, RETIRED_BYTES);
        if (last)
            pool_free(t->pool, last, RETIRED_BYTES);
        if (claimed) {
            champ__light_unclaim(lm);
        } else if (m->root) {
            for (unsigned i = 1; i < refs; i++)
                rc_dec(&m->root->rc, t->atomic); /* m holds one more */
            champ__node_drop(t, m->root, 0);
        }
        return CHAMP_EPOOL;
    }
    ok = !check || (expected ? c->root == expected->root && c->size == expected->size
                             : c->root == NULL && c->size == 0);
    node *old = NULL, *heir = NULL;
    bool first = false;
    if (ok) {
        if (!c->t) {
            __atomic_store_n(&c->t, t, __ATOMIC_RELEASE);
            first = true;
        }
        if (last && !c->last) {
            __atomic_store_n(&c->last, last, __ATOMIC_RELAXED);
            last = NULL;
        }
        old = c->root;
        if (claimed) {
            /* m's nodes are ordinary before any thread can load them: the
             * root has count 1 (m's), then the cell's, and the record's
             * when old's path shares its children with m's */
            if (champ__light_transfer(lm, old))
                heir = m->root;
            __atomic_store_n(&m->root->rc, 1u + refs + (heir != NULL), __ATOMIC_RELAXED);
        }
        /* loads without the lock see an odd count while root and size
         * change, and retry */
        unsigned sq = c->seq;
        __atomic_store_n(&c->seq, sq + 1u, __ATOMIC_RELAXED);
        __atomic_store_n(&c->root, m->root, __ATOMIC_SEQ_CST);
        __atomic_store_n(&c->size, m->size, __ATOMIC_RELEASE);
        __atomic_store_n(&c->seq, sq + 2u, __ATOMIC_RELEASE);
    }
    cell_unlock(c);
    if (claimed) {
        if (ok)
            champ__light_finish(lm);
        else
            champ__light_unclaim(lm); /* not published: it stays light */
    }
    if (first)
        type_hold(c, t); /* m's own reference keeps t alive until here */
    if (ok && old && rec) {
        /* pins may name it: the record keeps the cell's references (and
         * the heir's), and one to the type (pinned snapshots count theirs
         * nowhere) */
        if (!t->immortal)
            rc_inc(&t->refs, true);
        rec->root = old;
        rec->t = t;
        rec->heir = heir;
        champ__pin_retire(t->pool, rec);
        rec = NULL;
    } else if (ok && old) {
        champ__node_drop(t, old, 0);
    } else if (!ok && m->root && !claimed) {
        for (unsigned i = 1; i < refs; i++)
            rc_dec(&m->root->rc, t->atomic);
        champ__node_drop(t, m->root, 0);
    }
    if (rec)
        pool_free(t->pool, rec, RETIRED_BYTES);
    if (last)
        pool_free(t->pool, last, RETIRED_BYTES);
    if (swapped)
        *swapped = ok;
    return CHAMP_OK;
}

champ_status champ_cell_store(champ_cell *c, const champ_map *m) {
    return cell_swap(c, NULL, false, m, NULL);
}

champ_status champ_cell_cas(champ_cell *c, const champ_map *expected, const champ_map *desired,
                            bool *swapped) {
    return cell_swap(c, expected, true, desired, swapped);
}

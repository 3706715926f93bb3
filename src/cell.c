/*
 * cell.c - a cell holding one version of a map, for threads to take
 * (load: a snapshot of their own) and replace (store, compare-and-swap).
 *
 * The cell owns one reference to its version's root and one to its type.
 * A load must take its reference to the root before a concurrent store can
 * drop the cell's: both happen under the cell's lock, a spinlock held for a
 * few instructions (read or swap a pointer and a size, one increment).
 * Everything that can take long (allocating the snapshot's handle,
 * releasing a replaced version, which may free a whole trie) is done after
 * the lock is released.  Readers of different cells never meet.
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
    champ_cell *c = malloc(sizeof *c);
    if (!c)
        return CHAMP_ENOMEM;
    memset(c, 0, sizeof *c);
    if (m) {
        c->t = m->t;
        type_hold(c, c->t);
        c->root = m->root;
        c->size = m->size;
        if (c->root)
            rc_inc(&c->root->rc, c->t->atomic);
    }
    *out = c;
    return CHAMP_OK;
}

void champ_cell_free(champ_cell *c) {
    if (!c)
        return;
    if (c->t) {
        champ__pool_cell(c->t->pool, &c->link, false);
        if (c->root)
            champ__node_drop(c->t, c->root, 0);
        champ__type_release(c->t);
    }
    free(c);
}

champ_status champ_cell_load(champ_cell *c, champ_map **out) {
    if (!out)
        return CHAMP_EINVAL;
    *out = NULL;
    if (!c)
        return CHAMP_EINVAL;
    cell_lock(c);
    mtype *t = c->t;
    node *root = c->root;
    size_t size = c->size;
    if (root)
        rc_inc(&root->rc, t->atomic);
    cell_unlock(c);
    if (!t)
        return CHAMP_OK;
    champ_map *m = champ__map_handle(t, root, size);
    if (!m) {
        if (root)
            champ__node_drop(t, root, 0);
        return CHAMP_ENOMEM;
    }
    *out = m;
    return CHAMP_OK;
}

/* Swaps the cell to m's version when `expected` is NULL (store) or still
 * the cell's version (cas). */
static champ_status cell_swap(champ_cell *c, const champ_map *expected, bool check,
                              const champ_map *m, bool *swapped) {
    if (!c || !m || !cell_shareable(m->t))
        return CHAMP_EINVAL;
    if (UNLIKELY(champ__ops != NULL) && op_writing(m))
        return CHAMP_EBUSY; /* as champ_cell_new */
    mtype *t = m->t;
    if (m->root)
        rc_inc(&m->root->rc, t->atomic);
    cell_lock(c);
    bool ok;
    if (c->t && c->t != t) {
        cell_unlock(c);
        if (m->root)
            champ__node_drop(t, m->root, 0);
        return CHAMP_EPOOL;
    }
    ok = !check || (expected ? c->root == expected->root && c->size == expected->size
                             : c->root == NULL && c->size == 0);
    node *old = NULL;
    bool first = false;
    if (ok) {
        if (!c->t) {
            c->t = t;
            first = true;
        }
        old = c->root;
        c->root = m->root;
        c->size = m->size;
    }
    cell_unlock(c);
    if (first)
        type_hold(c, t); /* m's own reference keeps t alive until here */
    if (ok) {
        if (old)
            champ__node_drop(t, old, 0);
    } else if (m->root) {
        champ__node_drop(t, m->root, 0);
    }
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

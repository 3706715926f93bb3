/*
 * relocate.c - champ_pool_trim's relocation pass: the live nodes and key
 * blobs of a pool move into one new chunk, so that the chunks they were
 * scattered over empty out and trim can give them back.
 *
 * Why moving is needed: after a mass removal the survivors sit wherever
 * the size classes' free lists (LIFO, the fast path) last put them, that
 * is in every chunk, and a chunk with one live block cannot be returned
 * (design.md, "Pool").  Trim is an "alone" call (no other thread, no
 * iterator in use), so every reference to a node can be found and fixed:
 * nodes are reached from the map handles, which the handle pages
 * enumerate, and from the cells, on their pool's list (trim first
 * settles light versions, in either kind of pool, turns pinned snapshots
 * into counted ones and releases retired versions, so no pin slot names a
 * node and every node counts exactly its references, pin.c).  References
 * the pass cannot see (none that the API makes) would be found by their
 * counts: the nodes they reach stay where they are.
 *
 * Two walks over every map, like validate's census, with the reference
 * count as the counter and no memory needed:
 *   1. takes one off a node's count per reference met (the first meeting
 *      marks the node and follows its children and key blobs).  A count
 *      that reaches 0 belongs to a node (or blob) every reference of which
 *      was met: it may move; its bytes are added up.  A count left above 0
 *      has references the walk did not meet: the node is pinned.
 *   2. after one chunk of that size is taken, gives every reference back.
 *      At the first meeting a movable node is copied into the chunk (no
 *      spare room), its copy gets the count, and the old block records
 *      where the copy is; later meetings find the copy there.  Pinned
 *      nodes stay and get their counts back.  Parents (and handles) take
 *      the address the walk returns.  Key blobs the same way.
 * A concurrent cell's spare record (the block its free will use) moves
 * with them: only the cell names it.
 * If the chunk cannot be had, the second walk only gives the counts back.
 * The old blocks are freed at the end; every map's update stamp moves, so
 * an iterator begun before the trim stops with CHAMP_EMODIFIED instead of
 * reading a moved node.
 */
#include "internal.h"

#include <stddef.h>

/* aux bits 8-31 during the pass (validate's census uses another mark). */
#define RELOC_SEEN (0x3c96e1u << 8)  /* met by the first walk             */
#define RELOC_MOVED (0x3c96e2u << 8) /* copied: body[0] is the copy      */
/* A moved key blob: its count says so, its hash word holds the copy. */
#define BLOB_MOVED UINT32_MAX

typedef struct reloc {
    heap *h;           /* where the copies are carved                    */
    size_t movable;    /* bytes of movable nodes and blobs (first walk)  */
    bool move;         /* the second walk moves (else restores counts)   */
    node *old_nodes;   /* moved nodes, linked through datamap+nodemap    */
    blob *old_blobs;   /* moved blobs, linked through their bytes        */
    size_t moved;      /* blocks moved                                   */
} reloc;

/* A moved node's link to the next: the 8 bytes of datamap and nodemap. */
static void *old_link(node *n) {
    return (char *)n + offsetof(node, datamap);
}

/* What a moved node takes: a bitmap node its exact size (its spare room is
 * left behind); a collision node its whole block (its room is in nodemap,
 * and a hashed node's index sits at the end of the block). */
static size_t r_size(const node *n, unsigned level, unsigned W) {
    return level == CHAMP_COLL_LEVEL ? node_block(n, level, W) : node_size(n, level, W);
}

static void r_count(reloc *r, node *n, unsigned level, unsigned W, bool bytes) {
    if (--n->rc == 0)
        r->movable += r_size(n, level, W);
    if ((n->aux & ~SLACK_MASK) == RELOC_SEEN)
        return;
    n->aux = (n->aux & SLACK_MASK) | RELOC_SEEN;
    uint32_t nd = node_nent_at(n, level);
    if (bytes)
        for (uint32_t i = 0; i < nd; i++) {
            blob *b = (blob *)(uintptr_t)ent_key(n, i, W);
            if (--b->rc == 0)
                r->movable += blob_size(b->len);
        }
    if (level == CHAMP_COLL_LEVEL)
        return;
    uint32_t nn = node_nkid(n);
    for (uint32_t i = 0; i < nn; i++)
        r_count(r, node_kids(n, W)[i], level + 1, W, bytes);
}

static blob *r_blob(reloc *r, blob *b) {
    if (b->rc == BLOB_MOVED) {
        blob *nb = (blob *)(uintptr_t)b->hash;
        nb->rc++;
        return nb;
    }
    if (b->rc != 0 || !r->move) {
        b->rc++;
        return b;
    }
    size_t sz = blob_size(b->len);
    blob *nb = champ__heap_carve(r->h, sz);
    memcpy(nb, b, sz);
    nb->rc = 1;
    b->rc = BLOB_MOVED;
    b->hash = (uint64_t)(uintptr_t)nb;
    memcpy(b->bytes, &r->old_blobs, sizeof r->old_blobs); /* blob_size >= 24 */
    r->old_blobs = b;
    r->moved++;
    return nb;
}

static node *r_place(reloc *r, node *n, unsigned level, unsigned W, bool bytes) {
    uint32_t mark = n->aux & ~SLACK_MASK;
    if (mark == RELOC_MOVED) {
        node *x = (node *)(uintptr_t)n->body[0];
        x->rc++;
        return x;
    }
    if (mark != RELOC_SEEN) { /* pinned, met before in this walk */
        n->rc++;
        return n;
    }
    node *x = n;
    if (n->rc == 0 && r->move) {
        size_t sz = r_size(n, level, W), blk = node_block(n, level, W);
        x = champ__heap_carve(r->h, sz);
        memcpy(x, n, sz);
        x->rc = 1;
        /* no mark; a bitmap node no spare room, a collision node keeps its
         * aux (a hashed node's index size) */
        x->aux = level == CHAMP_COLL_LEVEL ? (n->aux & SLACK_MASK) : 0;
        /* the old block: its size, the list of old blocks, the copy */
        n->rc = (uint32_t)(blk / 8);
        memcpy(old_link(n), &r->old_nodes, sizeof r->old_nodes);
        n->aux = RELOC_MOVED;
        n->body[0] = (uint64_t)(uintptr_t)x;
        r->old_nodes = n;
        r->moved++;
    } else {
        n->rc++;
        n->aux &= SLACK_MASK;
    }
    uint32_t nd = node_nent_at(x, level);
    if (bytes)
        for (uint32_t i = 0; i < nd; i++) {
            blob *b = (blob *)(uintptr_t)ent_key(x, i, W);
            blob *nb = r_blob(r, b);
            if (nb != b)
                *ent_at(x, i, W) = (uint64_t)(uintptr_t)nb;
        }
    if (level == CHAMP_COLL_LEVEL)
        return x;
    uint32_t nn = node_nkid(x);
    node **kids = node_kids(x, W);
    for (uint32_t i = 0; i < nn; i++)
        kids[i] = r_place(r, kids[i], level + 1, W, bytes);
    return x;
}

void champ__pool_relocate(champ_pool *p, heap *h) {
    reloc r = {h, 0, false, NULL, NULL, 0};
    champ_map *m;
    cell_link *l;
    for (m = champ__handle_next(p, NULL); m; m = champ__handle_next(p, m))
        if (m->root)
            r_count(&r, m->root, 0, m->t->width, m->t->kind == CHAMP_KEY_BYTES);
    for (l = p->cells.next; l != &p->cells; l = l->next) {
        champ_cell *c = (champ_cell *)(void *)l;
        for (unsigned i = 0; c->root && i < CELL_REFS(c->t); i++)
            r_count(&r, c->root, 0, c->t->width, c->t->kind == CHAMP_KEY_BYTES);
        if (c->last)
            r.movable += RETIRED_BYTES;
    }
    r.move = r.movable > 0 && champ__heap_fresh_chunk(h, r.movable);
    for (m = champ__handle_next(p, NULL); m; m = champ__handle_next(p, m)) {
        if (m->root)
            m->root = r_place(&r, m->root, 0, m->t->width, m->t->kind == CHAMP_KEY_BYTES);
        if (r.move)
            m->stamp++;
    }
    for (l = p->cells.next; l != &p->cells; l = l->next) {
        champ_cell *c = (champ_cell *)(void *)l;
        for (unsigned i = 0; c->root && i < CELL_REFS(c->t); i++)
            c->root = r_place(&r, c->root, 0, c->t->width, c->t->kind == CHAMP_KEY_BYTES);
        if (c->last && r.move) {
            /* the record a concurrent cell keeps for its free: a block
             * only the cell names, so it moves too (left behind, it would
             * keep whatever chunk it was cut from) */
            retired *x = champ__heap_carve(h, RETIRED_BYTES);
            memcpy(x, c->last, RETIRED_BYTES);
            heap_free(h, c->last, RETIRED_BYTES);
            c->last = x;
            r.moved++;
        }
    }
    while (r.old_nodes) {
        node *n = r.old_nodes;
        memcpy(&r.old_nodes, old_link(n), sizeof r.old_nodes);
        heap_free(h, n, (size_t)n->rc * 8);
    }
    while (r.old_blobs) {
        blob *b = r.old_blobs;
        memcpy(&r.old_blobs, b->bytes, sizeof r.old_blobs);
        heap_free(h, b, blob_size(b->len));
    }
}

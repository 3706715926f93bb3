/*
 * check.c - telemetry (champ_stats_get, champ_stats_print), the invariant
 * walk (champ_validate) and the shape dump (champ_dump).
 *
 * The walks here recurse: depth is bounded by the trie (14 nodes), so the
 * recursion is too.
 */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>

/* Every walk here has the map m in scope: its entry width. */
#define W ((unsigned)m->t->width)

/* ------------------------------------------------------------------ */
/* Stats                                                               */
/* ------------------------------------------------------------------ */

static void stats_walk(const champ_map *m, const node *n, unsigned level,
                       champ_stats *s, double *depth_sum) {
    unsigned depth = level + 1;
    if (rc_load(&n->rc) > 1)
        s->nodes_shared++;
    /* a hashed collision node's index counts as node bytes, not room */
    size_t idx = level == CHAMP_COLL_LEVEL ? coll_index_bytes(n) : 0;
    s->node_bytes += node_size(n, level, W) + idx;
    s->slack_bytes += 8u * node_room(n, level) - idx;
    if (level == CHAMP_COLL_LEVEL) {
        s->nodes_collision++;
        s->collision_entries += n->datamap;
        s->entries += n->datamap;
        *depth_sum += (double)depth * n->datamap;
        if (n->datamap && depth > s->depth_max)
            s->depth_max = depth;
        if (m->t->kind == CHAMP_KEY_BYTES)
            for (uint32_t i = 0; i < n->datamap; i++)
                s->key_bytes += blob_size(((const blob *)(uintptr_t)ent_key(n, i, W))->len);
        return;
    }
    uint32_t nd = node_nent(n), nn = node_nkid(n);
    s->nodes_bitmap++;
    s->nodes_by_slots[popc(n->datamap | n->nodemap)]++;
    s->entries += nd;
    *depth_sum += (double)depth * nd;
    if (nd && depth > s->depth_max)
        s->depth_max = depth;
    if (m->t->kind == CHAMP_KEY_BYTES)
        for (uint32_t i = 0; i < nd; i++)
            s->key_bytes += blob_size(((const blob *)(uintptr_t)ent_key(n, i, W))->len);
    for (uint32_t i = 0; i < nn; i++)
        stats_walk(m, node_kids(n, W)[i], level + 1, s, depth_sum);
}

champ_status champ_stats_get(const champ_map *m, champ_stats *out, size_t out_size) {
    if (!m || !out || out_size == 0)
        return CHAMP_EINVAL;
    champ_stats s;
    memset(&s, 0, sizeof s);
    double depth_sum = 0;
    if (m->root)
        stats_walk(m, m->root, 0, &s, &depth_sum);
    s.depth_mean = s.entries ? depth_sum / (double)s.entries : 0.0;
    s.bytes_per_entry =
        s.entries ? (double)(s.node_bytes + s.slack_bytes + s.key_bytes) / (double)s.entries
                  : 0.0;
    memcpy(out, &s, out_size < sizeof s ? out_size : sizeof s);
    return CHAMP_OK;
}

static const char *kind_name(champ_key_kind k) {
    switch (k) {
    case CHAMP_KEY_U64: return "u64";
    case CHAMP_KEY_BYTES: return "bytes";
    case CHAMP_KEY_GENERIC: return "generic";
    }
    return "?";
}

champ_status champ_stats_print(const champ_map *m, FILE *f) {
    if (!m || !f)
        return CHAMP_EINVAL;
    champ_stats s;
    champ_pool_stats ps;
    champ_status st = champ_stats_get(m, &s, sizeof s);
    if (st == CHAMP_OK)
        st = champ_pool_stats_get(m->t->pool, &ps, sizeof ps);
    if (st != CHAMP_OK)
        return st;
    const champ_pool_stats *p = &ps;
    fprintf(f, "champ map (%s keys)\n", kind_name(m->t->kind));
    fprintf(f, "  %-26s %zu\n", "entries", s.entries);
    fprintf(f, "  %-26s %zu bitmap, %zu collision (%zu entries)\n", "nodes",
            s.nodes_bitmap, s.nodes_collision, s.collision_entries);
    fprintf(f, "  %-26s %zu\n", "nodes shared (rc > 1)", s.nodes_shared);
    fprintf(f, "  %-26s max %u, mean %.2f\n", "depth (root = 1)", s.depth_max,
            s.depth_mean);
    fprintf(f, "  %-26s %zu nodes + %zu spare + %zu keys = %.2f B/entry\n", "bytes",
            s.node_bytes, s.slack_bytes, s.key_bytes, s.bytes_per_entry);
    fprintf(f, "  %-26s", "bitmap nodes by slots");
    int shown = 0;
    for (int i = 0; i < CHAMP_STATS_SLOTS; i++)
        if (s.nodes_by_slots[i]) {
            fprintf(f, "%s%d:%zu", shown ? " " : " ", i, s.nodes_by_slots[i]);
            shown++;
        }
    fprintf(f, "%s\n", shown ? "" : " -");
    fprintf(f, "champ pool (%s, %zu map%s)\n", p->fixed ? "fixed buffer" : "arena",
            p->maps, p->maps == 1 ? "" : "s");
    fprintf(f, "  %-26s %zu\n", "chunks", p->chunks);
    fprintf(f, "  %-26s %zu\n", "bytes reserved", p->bytes_reserved);
    fprintf(f, "  %-26s %zu (peak %zu)\n", "bytes live", p->bytes_live, p->bytes_peak);
    fprintf(f, "  %-26s %zu\n", "bytes in free lists", p->bytes_free_listed);
    fprintf(f, "  %-26s %.1f%%\n", "utilization", 100.0 * p->utilization);
    fprintf(f, "  %-26s %" PRIu64 "\n", "backing allocator calls", p->backing_calls);
    fprintf(f, "  %-26s %" PRIu64 "\n", "refused allocations", p->alloc_failures);
    if (p->counters_enabled) {
        double a = p->allocs ? (double)p->allocs : 1.0;
        fprintf(f, "  %-26s %" PRIu64 "\n", "allocations", p->allocs);
        fprintf(f, "  %-26s %" PRIu64 " (%.1f%%)\n", "  from free lists",
                p->allocs_free_list, 100.0 * (double)p->allocs_free_list / a);
        fprintf(f, "  %-26s %" PRIu64 " (%.1f%%)\n", "  from fresh arena",
                p->allocs_arena, 100.0 * (double)p->allocs_arena / a);
        fprintf(f, "  %-26s %" PRIu64 "\n", "frees", p->frees);
    } else {
        fprintf(f, "  %-26s %s\n", "allocation counters", "off (build with CHAMP_STATS)");
    }
    return CHAMP_OK;
}

/* ------------------------------------------------------------------ */
/* Validate                                                            */
/* ------------------------------------------------------------------ */

typedef struct vctx {
    const champ_map *m;
    int bad;
} vctx;

#define VFAIL(v, ...)                                                       \
    do {                                                                    \
        if ((v)->bad++ < 10) {                                              \
            fprintf(stderr, "champ_validate: ");                            \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

static void check_blob(vctx *v, uint64_t k) {
    const blob *b = (const blob *)(uintptr_t)k;
    if (b->rc == 0)
        VFAIL(v, "key blob with refcount 0");
    uint64_t h = type_hash_bytes(v->m->t, b->bytes, b->len);
    if (h != b->hash)
        VFAIL(v, "key blob hash mismatch (len %u)", b->len);
    if (b->bytes[b->len] != '\0')
        VFAIL(v, "key blob not NUL-terminated");
}

/* Collision nodes that are lists (generic keys without compare) are
 * searched for equal keys pairwise up to this many entries, and beyond it
 * each key against the COLL_WINDOW before it: at most about 1M key
 * comparisons per 1K entries, never O(n^2). */
#define COLL_PAIRWISE 2048u
#define COLL_WINDOW 1024u

/* A hashed node's index: every slot empty or naming an entry with its
 * hash, one slot per entry, found from the entry's key; no two equal keys
 * (equal keys share a home: the later one's probe meets the earlier). */
static void validate_index(vctx *v, const node *n) {
    const champ_map *m = v->m;
    const mtype *t = m->t;
    uint32_t c = n->datamap, cap = coll_cap(n), used = 0;
    const uint64_t *sl = coll_slots(n, W);
    if (2ull * c > cap || cap > 8ull * c)
        VFAIL(v, "hashed collision node of %u keys with %u slots (2n <= slots <= 8n)", c, cap);
    for (uint32_t i = 0; i < cap; i++)
        if (sl[i]) {
            used++;
            uint64_t pos = (sl[i] >> 32) - 1;
            if (pos >= c)
                VFAIL(v, "hashed collision node: slot %u names entry %" PRIu64 " of %u", i,
                      pos, c);
        }
    if (used != c) {
        VFAIL(v, "hashed collision node: %u slots used for %u entries", used, c);
        return;
    }
    for (uint32_t e = 0; e < c; e++) {
        const blob *b = key_blob(ent_key(n, e, W));
        uint32_t h = coll_h32(t, b->bytes, b->len);
        uint32_t i = h & (cap - 1), steps = 0;
        for (; steps < cap && sl[i]; i = (i + 1) & (cap - 1), steps++) {
            uint64_t pos = (sl[i] >> 32) - 1;
            if (pos == e)
                break;
            if ((uint32_t)sl[i] == h && pos < c &&
                key_equal(t, ent_key(n, e, W), ent_key(n, (uint32_t)pos, W), t->kind))
                VFAIL(v, "hashed collision node holds equal keys (%" PRIu64 ", %u)", pos, e);
        }
        if (steps == cap || !sl[i])
            VFAIL(v, "hashed collision node: entry %u not found through the index", e);
        else if ((uint32_t)sl[i] != h)
            VFAIL(v, "hashed collision node: entry %u's slot has hash %#x, not %#x", e,
                  (uint32_t)sl[i], h);
    }
}

/* A collision node: >= 3 keys of hash `prefix` (all 64 bits), its layout
 * (trie.h, "Collision nodes") and room, and distinct keys: in an ordered
 * node each key sorts before the next (O(n) comparisons, which also proves
 * them distinct), in a hashed one through the index (O(n) expected), in a
 * list as above. */
static size_t validate_coll(vctx *v, const node *n, uint64_t prefix) {
    const champ_map *m = v->m;
    const mtype *t = m->t;
    uint32_t c = n->datamap;
    size_t sz = node_coll_size(c, W);
    bool ord = coll_ordered(n), hashed = coll_hashed(n);
    if (c < 3)
        VFAIL(v, "collision node with %u entries (canonical form needs >= 3)", c);
    if (t->kind == CHAMP_KEY_U64) {
        VFAIL(v, "collision node in a u64 map (the u64 hash is a bijection)");
        return c;
    }
    if (ord && hashed)
        VFAIL(v, "collision node both ordered and hashed");
    if (ord && !kind_ordered(t, t->kind))
        VFAIL(v, "ordered collision node in a map without a key order (no compare)");
    if (!ord && !hashed && kind_ordered(t, t->kind))
        VFAIL(v, "collision node of %u keys is a list in a map with a key order (every"
                 " builder lays it out ordered or hashed)", c);
    if (!hashed && t->kind == CHAMP_KEY_BYTES && c > COLL_HASH_MIN)
        VFAIL(v, "byte-key collision node of %u keys without an index (more than %u)", c,
              COLL_HASH_MIN);
    if (hashed && (t->kind != CHAMP_KEY_BYTES || c <= COLL_HASH_MIN))
        VFAIL(v, "hashed collision node of %u keys (byte keys, more than %u)", c,
              COLL_HASH_MIN);
    if (!hashed && (n->aux & SLACK_MASK))
        VFAIL(v, "collision node with aux %#x (no index)", n->aux);
    if (hashed && (n->aux & SLACK_MASK & ~COLL_LGCAP))
        VFAIL(v, "hashed collision node with aux %#x", n->aux);
    size_t idx = coll_index_bytes(n), room = 8u * (size_t)coll_room(n);
    if (room < idx)
        VFAIL(v, "hashed collision node: %zu bytes of room for a %zu-byte index", room, idx);
    else if (room - idx > sz + 16u)
        VFAIL(v, "collision node of %zu bytes with %zu bytes of free room (at most its"
                 " size + 16)", sz, room - idx);
    for (uint32_t i = 0; i < c; i++) {
        uint64_t k = ent_key(n, i, W);
        if (t->kind == CHAMP_KEY_BYTES)
            check_blob(v, k);
        uint64_t h = key_hash(t, k, t->kind);
        if (h != prefix)
            VFAIL(v, "collision entry %u hash %#" PRIx64 " != %#" PRIx64, i, h, prefix);
    }
    if (hashed) {
        if (room >= idx)
            validate_index(v, n);
        return c;
    }
    if (ord && kind_ordered(t, t->kind)) {
        for (uint32_t i = 1; i < c; i++) {
            int r = key_cmp(t, ent_key(n, i - 1, W), ent_key(n, i, W), t->kind);
            if (r >= 0)
                VFAIL(v, "ordered collision node: key %u %s key %u", i - 1,
                      r == 0 ? "equals" : "sorts after", i);
        }
        return c;
    }
    for (uint32_t i = 1; i < c; i++) {
        uint32_t lo = c <= COLL_PAIRWISE || i < COLL_WINDOW ? 0 : i - COLL_WINDOW;
        for (uint32_t j = lo; j < i; j++)
            if (key_equal(t, ent_key(n, i, W), ent_key(n, j, W), t->kind))
                VFAIL(v, "collision node holds equal keys (%u, %u)", j, i);
    }
    return c;
}

/* Checks the subtree at n; prefix holds the hash bits fixed by the path
 * (the low 5*level bits).  Returns the number of entries. */
static size_t validate_node(vctx *v, const node *n, unsigned level, uint64_t prefix) {
    const champ_map *m = v->m;
    if (n->rc == 0)
        VFAIL(v, "node at level %u has refcount 0", level);
    if (n->aux >> 8)
        VFAIL(v, "node at level %u: census bits left set (%#x)", level, n->aux);
    if (level == CHAMP_COLL_LEVEL)
        return validate_coll(v, n, prefix);
    if (level == CHAMP_LAST_LEVEL && ((n->datamap | n->nodemap) >> 16))
        VFAIL(v, "level 12 node uses slots above 15");
    uint64_t mask = level ? ((uint64_t)1 << (CHAMP_BITS * level)) - 1 : 0;
    size_t count = node_nent(n);
    uint32_t bits = n->datamap, i = 0;
    while (bits) {
        uint32_t s = (uint32_t)__builtin_ctz(bits);
        bits &= bits - 1;
        uint32_t k = (n->nodemap >> s) & 1u ? 2 : 1; /* entry or pair */
        uint64_t hs[2];
        for (uint32_t j = 0; j < k; j++) {
            uint64_t kw = ent_key(n, i++, W);
            if (m->t->kind == CHAMP_KEY_BYTES)
                check_blob(v, kw);
            uint64_t h = key_hash(m->t, kw, m->t->kind);
            hs[j] = h;
            if ((h & mask) != prefix || slice(h, level) != s)
                VFAIL(v, "level %u slot %u: entry hash %#" PRIx64 " is in the wrong place",
                      level, s, h);
        }
        if (k == 2) {
            if (key_equal(m->t, ent_key(n, i - 2, W), ent_key(n, i - 1, W), m->t->kind))
                VFAIL(v, "level %u slot %u: pair holds equal keys", level, s);
            if (hs[0] != hs[1] && !hash_trie_before(hs[0], hs[1]))
                VFAIL(v, "level %u slot %u: pair out of trie order", level, s);
            /* equal hashes: key order where the keys have one (canonical
             * form; else the order they came in) */
            if (hs[0] == hs[1] && kind_ordered(m->t, m->t->kind) &&
                key_cmp(m->t, ent_key(n, i - 2, W), ent_key(n, i - 1, W), m->t->kind) > 0)
                VFAIL(v, "level %u slot %u: pair of equal hashes out of key order", level, s);
        }
    }
    bits = n->nodemap & ~n->datamap;
    i = 0;
    while (bits) {
        uint32_t s = (uint32_t)__builtin_ctz(bits);
        bits &= bits - 1;
        const node *c = node_kids(n, W)[i++];
        if (!c) {
            VFAIL(v, "level %u slot %u: NULL child", level, s);
            continue;
        }
        size_t subn = validate_node(v, c, level + 1, prefix | ((uint64_t)s << (CHAMP_BITS * level)));
        if (subn < 3)
            VFAIL(v, "level %u slot %u: subtree holds %zu entries (canonical form needs >= 3;"
                     " two entries are a pair)", level, s, subn);
        count += subn;
    }
    return count;
}

/* Census over the whole pool: does every node's reference count equal the
 * references the live maps and their nodes hold, and do the pool's live
 * bytes equal what those maps use?  It needs no memory: the count itself
 * is the counter.  census_count walks every map and takes one off a node's
 * count for each reference it meets; the first meeting marks the node (aux
 * bits 8-31 hold CENSUS_MARK), counts its bytes and follows its children.
 * census_check walks again and gives every reference back; at the first
 * meeting (the mark is still there) the count must be 0, and the mark is
 * cleared.  Both walks follow the same references (a node's children once,
 * from its first meeting), so every count ends as it began and no mark is
 * left, whatever was found.  The comparison is exact: as wide as the count.
 * Key blobs (BYTES maps) the same way, without a mark: their count reaches
 * 0 in the first walk at their last reference (then their bytes count), and
 * in the second walk it starts from 0 (a count below the references shows
 * as a negative one: exact for counts that leave the sign bit clear). */
#define CENSUS_MARK (0xa5c3e1u << 8)

typedef struct census {
    vctx *v;
    size_t bytes;      /* distinct nodes, key blobs, map handles */
    long long edges;   /* references met by census_count, less census_check's */
} census;

static void census_count(census *cs, const node *cn, unsigned level, const champ_map *m) {
    node *n = (node *)(uintptr_t)cn;
    n->rc--;
    cs->edges++;
    uint32_t mark = n->aux & ~SLACK_MASK;
    if (mark == CENSUS_MARK)
        return;
    if (mark)
        VFAIL(cs->v, "node at level %u: census bits left set (%#x)", level, n->aux);
    n->aux = (n->aux & SLACK_MASK) | CENSUS_MARK;
    cs->bytes += node_block(n, level, W);
    uint32_t nd = node_nent_at(n, level);
    if (m->t->kind == CHAMP_KEY_BYTES)
        for (uint32_t i = 0; i < nd; i++) {
            blob *b = (blob *)(uintptr_t)ent_key(n, i, W);
            if (--b->rc == 0)
                cs->bytes += blob_size(b->len);
        }
    if (level == CHAMP_COLL_LEVEL)
        return;
    uint32_t nn = node_nkid(n);
    if (UNLIKELY(node_light(n))) {
        /* a light node holds a reference to its light child only */
        uint32_t lk = node_light_kid(n);
        if (lk > nn)
            VFAIL(cs->v, "light node at level %u names child %u of %u", level, lk, nn);
        else if (lk)
            census_count(cs, node_kids(n, W)[lk - 1], level + 1, m);
        return;
    }
    for (uint32_t i = 0; i < nn; i++)
        census_count(cs, node_kids(n, W)[i], level + 1, m);
}

static void census_check(census *cs, const node *cn, unsigned level, const champ_map *m) {
    node *n = (node *)(uintptr_t)cn;
    cs->edges--;
    if ((n->aux & ~SLACK_MASK) == CENSUS_MARK) {
        n->aux &= SLACK_MASK;
        /* a light node's count is in its low bits (node.h) */
        uint32_t rc = node_light(n) ? n->rc & RC_COUNT : n->rc;
        if (node_light(n) && rc > RC_COUNT / 2)
            rc |= ~RC_COUNT; /* below zero */
        if (rc != 0)
            VFAIL(cs->v, "node at level %u: reference count %s the references held by %u",
                  level, (int32_t)rc > 0 ? "exceeds" : "is below",
                  (int32_t)rc > 0 ? rc : 0u - rc);
        uint32_t nd = node_nent_at(n, level);
        if (m->t->kind == CHAMP_KEY_BYTES)
            for (uint32_t i = 0; i < nd; i++) {
                blob *b = (blob *)(uintptr_t)ent_key(n, i, W);
                if ((int32_t)b->rc < 0)
                    VFAIL(cs->v, "key blob (len %u): reference count below its references",
                          b->len);
                b->rc++;
            }
        if (level != CHAMP_COLL_LEVEL && node_light(n)) {
            uint32_t lk = node_light_kid(n);
            if (lk && lk <= node_nkid(n))
                census_check(cs, node_kids(n, W)[lk - 1], level + 1, m);
        } else if (level != CHAMP_COLL_LEVEL) {
            uint32_t nn = node_nkid(n);
            for (uint32_t i = 0; i < nn; i++)
                census_check(cs, node_kids(n, W)[i], level + 1, m);
        }
    }
    n->rc++;
}

/* Whether map x holds a reference to its root. */
static bool census_holds(const champ_map *x) {
    return x->root && (!map_pinned(x) || node_light(x->root));
}

/* The pool's live maps, in the order the census meets them. */
static const champ_map *census_first(const champ_pool *p) {
    return champ__handle_next(p, NULL);
}
static const champ_map *census_next(const champ_pool *p, const champ_map *x) {
    return champ__handle_next(p, x);
}

/* Walks every reference to a root with `walk` (census_count, then
 * census_check): every map but a pinned snapshot (pin.c: its root is a
 * cell's or a retired record's; a light version holds its own root when
 * that is light, and one count on its base when that is counted); a
 * cell, one (plain pools) or two (concurrent); a retired record, two. */
typedef void (*census_walk_fn)(census *, const node *, unsigned, const champ_map *);
static void census_holders(census *cs, const champ_pool *p, census_walk_fn walk) {
    for (const champ_map *x = census_first(p); x; x = census_next(p, x)) {
        if (census_holds(x))
            walk(cs, x->root, 0, x);
        if (x->light != LIGHT_NONE && x->lbase == LBASE_COUNT)
            walk(cs, champ__light_base(x), 0, x); /* its base's count */
    }
    for (const cell_link *l = p->cells.next; l != &p->cells; l = l->next) {
        const champ_cell *c = (const champ_cell *)(const void *)l;
        champ_map view = {.root = c->root, .size = c->size, .t = c->t};
        for (unsigned i = 0; c->root && i < CELL_REFS(c->t); i++)
            walk(cs, c->root, 0, &view);
    }
    for (const retired *r = p->retired; r; r = r->next) {
        champ_map view = {.root = r->root, .t = r->t};
        for (unsigned i = 0; i < CELL_REFS(r->t); i++)
            walk(cs, r->root, 0, &view);
        if (r->heir)
            walk(cs, r->heir, 0, &view); /* the record's reference */
    }
}

/* A record whose heir took its version's path by transfer (pin.c): each
 * child the two paths share carries one count for both, so one of the
 * two references the walks met is given back (`back`: census_count's
 * walk) or taken again (census_check's, after every first meeting). */
typedef struct xfer_adj {
    census *cs;
    bool back;
} xfer_adj;
static void census_xfer_kid(node *kid, void *arg) {
    xfer_adj *a = arg;
    if (a->back) {
        kid->rc++;
        a->cs->edges--;
    } else {
        kid->rc--;
        a->cs->edges++;
    }
}
static void census_xfer(census *cs, const champ_pool *p, bool back) {
    xfer_adj a = {cs, back};
    for (const retired *r = p->retired; r; r = r->next)
        if (r->heir)
            champ__xfer_walk(r->root, r->heir, 0, r->t->width, census_xfer_kid, &a);
}

champ_status champ_validate(const champ_map *m) {
    if (!m)
        return CHAMP_EINVAL;
    vctx v = {m, 0};
    size_t count = 0;
    if (m->root) {
        const node *r = m->root;
        if (r->datamap == 0 && r->nodemap == 0)
            VFAIL(&v, "empty root node (an empty map has no root)");
        count = validate_node(&v, r, 0, 0);
    }
    if (count != m->size)
        VFAIL(&v, "size is %zu but the trie holds %zu entries", m->size, count);
    if (m->lbase == LBASE_FRESH && (m->light != LIGHT_NONE || map_pinned(m)))
        VFAIL(&v, "a fresh copy that is light (%u) or pinned (%u)", m->light, m->pin);

    /* Pool-wide: reference counts and live bytes.  The pool's books come
     * from a walk of every free list and handle page of every heap. */
    const champ_pool *p = m->t->pool;
    champ_pool_audit au;
    champ__pool_audit(p, &au);
    size_t type_bytes = p->ntypes * ((sizeof(mtype) + 7u) & ~(size_t)7);
    /* types and handle pages: pool blocks in a fixed buffer, else side
     * blocks of their own, counted apart (pool.c, "Side blocks") */
    census cs = {&v, p->fixed ? type_bytes : 0, 0};
    size_t nmaps = 0;
    for (const champ_map *x = census_first(p); x; x = census_next(p, x))
        nmaps++;
    for (const retired *r = p->retired; r; r = r->next)
        cs.bytes += RETIRED_BYTES;
    for (const cell_link *l = p->cells.next; l != &p->cells; l = l->next)
        if (((const champ_cell *)(const void *)l)->last)
            cs.bytes += RETIRED_BYTES; /* a concurrent cell's record */
    census_holders(&cs, p, census_count);
    census_xfer(&cs, p, true);
    census_holders(&cs, p, census_check);
    census_xfer(&cs, p, false);
    if (cs.edges != 0)
        VFAIL(&v, "census walks disagree by %lld references (a node carried the census mark"
                  " before validate began)", cs.edges);
    if (p->fixed)
        cs.bytes += au.pages_counted * HPAGE_BYTES;
    else if (p->side != type_bytes + (au.pages_counted + au.spares) * HPAGE_BYTES)
        VFAIL(&v, "pool side blocks %zu bytes but %zu types and %zu handle pages (%zu"
                  " spare) use %zu",
              p->side, p->ntypes, au.pages_counted + au.spares, au.spares,
              type_bytes + (au.pages_counted + au.spares) * HPAGE_BYTES);
    if (au.regions_bad)
        VFAIL(&v, "pool: %zu huge-page regions disagree with the chunks cut from them",
              au.regions_bad);
    if (nmaps != au.handles_counted)
        VFAIL(&v, "pool pages hold %zu maps but the pool counts %zu", nmaps,
              au.handles_counted);
    if (cs.bytes != au.heap_live)
        VFAIL(&v, "pool live bytes %zu but the live maps use %zu", au.heap_live, cs.bytes);
    if (au.heap_live > p->reserved)
        VFAIL(&v, "pool live bytes %zu exceed reserved %zu", au.heap_live, p->reserved);

    if (au.free_walked != au.free_counted)
        VFAIL(&v, "pool free lists hold %zu bytes but the pool counts %zu", au.free_walked,
              au.free_counted);
    if (au.imbalance != 0)
        VFAIL(&v, "pool books do not balance: %lld reserved bytes are neither carved (live"
                  " or free-listed), fresh, nor chunk headers", au.imbalance);
    if (au.misfiled)
        VFAIL(&v, "pool free lists: %zu large blocks in the wrong list", au.misfiled);
    if (au.pages_walked != au.pages_counted || au.handles_walked != au.handles_counted)
        VFAIL(&v, "handle pages: %zu pages with %zu handles, the pool counts %zu and %zu",
              au.pages_walked, au.handles_walked, au.pages_counted, au.handles_counted);
    if (au.pages_bad || au.open_walked != au.open_expected)
        VFAIL(&v, "handle pages: %zu inconsistent, %zu on the open list, %zu with room",
              au.pages_bad, au.open_walked, au.open_expected);
    return v.bad ? CHAMP_ECORRUPT : CHAMP_OK;
}

/* ------------------------------------------------------------------ */
/* Dump                                                                */
/* ------------------------------------------------------------------ */

static void dump_entry(const champ_map *m, uint64_t k, FILE *f) {
    switch (m->t->kind) {
    case CHAMP_KEY_U64:
        fprintf(f, "%" PRIu64, k);
        break;
    case CHAMP_KEY_BYTES: {
        const blob *b = (const blob *)(uintptr_t)k;
        fputc('"', f);
        for (uint32_t i = 0; i < b->len && i < 40; i++) {
            unsigned char c = (unsigned char)b->bytes[i];
            if (c >= 32 && c < 127 && c != '"' && c != '\\')
                fputc(c, f);
            else
                fprintf(f, "\\x%02x", c);
        }
        fprintf(f, "%s\"", b->len > 40 ? "..." : "");
        break;
    }
    default:
        fprintf(f, "%p#%016" PRIx64, (void *)(uintptr_t)k, key_hash(m->t, k, m->t->kind));
        break;
    }
}

static void dump_node(const champ_map *m, const node *n, unsigned level, int slot, FILE *f) {
    fprintf(f, "%*s", (int)level * 2, "");
    if (slot >= 0)
        fprintf(f, "[%d] ", slot);
    if (level == CHAMP_COLL_LEVEL) {
        fprintf(f, "collision rc=%u n=%u:", n->rc, n->datamap);
        for (uint32_t i = 0; i < n->datamap; i++) {
            fputc(' ', f);
            dump_entry(m, ent_key(n, i, W), f);
        }
        fputc('\n', f);
        return;
    }
    fprintf(f, "node L%u rc=%u data=%08x nodes=%08x:", level, n->rc, n->datamap, n->nodemap);
    uint32_t bits = n->datamap, i = 0;
    while (bits) {
        uint32_t s = (uint32_t)__builtin_ctz(bits);
        bits &= bits - 1;
        fprintf(f, " %u=", s);
        dump_entry(m, ent_key(n, i++, W), f);
        if ((n->nodemap >> s) & 1u) {
            fputc('+', f);
            dump_entry(m, ent_key(n, i++, W), f);
        }
    }
    fputc('\n', f);
    bits = n->nodemap & ~n->datamap;
    i = 0;
    while (bits) {
        uint32_t s = (uint32_t)__builtin_ctz(bits);
        bits &= bits - 1;
        dump_node(m, node_kids(n, W)[i++], level + 1, (int)s, f);
    }
}

champ_status champ_dump(const champ_map *m, FILE *f) {
    if (!m || !f)
        return CHAMP_EINVAL;
    fprintf(f, "champ %s map, %zu entries\n", kind_name(m->t->kind), m->size);
    if (m->root)
        dump_node(m, m->root, 0, -1, f);
    return CHAMP_OK;
}

/*
 * test_shapes.c - pinned tree shapes: pairs, single-bit splits, collision
 * nodes, canonical form after deletes and in any insertion order, dumps
 * alike across kinds, a huge collision node, spare room in nodes, and
 * champ_validate catching a corrupted key.
 *
 * Shapes are pinned with the GENERIC kind and th_key_hash in TH_HASH_FIELD
 * mode, which returns each key's chosen 64-bit hash unchanged.  The trie
 * indexes level L (root = 0) with hash bits [5L, 5L+5), level 12 with bits
 * 60..63, and keys with equal full hashes share a collision node below
 * level 12.  So two keys that differ first in bit b meet in a node at level
 * min(b / 5, 12): depth (root = 1) min(b / 5, 12) + 1, and a collision sits
 * at depth 14 under 13 bitmap nodes.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ------------------------------------------------------------------ */
/* Pinned shapes                                                       */
/* ------------------------------------------------------------------ */

/* Two keys, however deep their hashes agree, are a pair in the root.  A
 * third key that agrees with the second one except in bit 63 (b < 60), or
 * with the first one except in another bit of the last slice (b >= 60),
 * turns the pair into a chain of one-child nodes down to level
 * L = min(b/5, 12), where the keys part.  Removing the second key folds
 * everything back into a pair in the root. */
static void test_shape_single_bit(void) {
    th_cbctx ctx;
    const uint64_t bases[] = {0, 0x0123456789abcdefULL, UINT64_MAX};
    for (size_t bi = 0; bi < 3; bi++) {
        for (unsigned b = 0; b < 64; b++) {
            th_obj *o = unit_objs_reset(3);
            champ_map *m = unit_new_generic(&ctx, false);
            if (!m)
                return;
            o[0].hash = bases[bi];
            o[1].hash = bases[bi] ^ (1ULL << b);
            o[2].hash = b < 60 ? o[1].hash ^ (1ULL << 63)
                               : o[0].hash ^ (1ULL << (b == 60 ? 61 : 60));
            unit_put(m, &o[0], th_tok(0));
            unit_put(m, &o[1], th_tok(1));
            char what[64];
            snprintf(what, sizeof what, "keys differing in bit %u (base %zu)",
                     b, bi);
            unit_shape(m, 2, 1, 0, 0, 1, what);
            champ_stats s = th_stats(m);
            /* one slot holding the pair, or (b < 5) two slots */
            CHECK_EQ(s.nodes_by_slots[b < 5 ? 2 : 1], 1, what);
            unit_put(m, &o[2], th_tok(2));
            unsigned level = b < 60 ? b / 5 : 12;
            unit_shape(m, 3, level + 1, 0, 0, level + 1, what);
            s = th_stats(m);
            /* the chain, root included; the bottom node has an entry and
             * a pair (2 slots) or three entries (b >= 60) */
            CHECK_EQ(s.nodes_by_slots[1], level, what);
            CHECK_EQ(s.nodes_by_slots[b < 60 ? 2 : 3], 1, what);
            CHECK(s.depth_mean > level + 1 - 0.01 && s.depth_mean < level + 1 + 0.01,
                  "%s: depth_mean %g", what, s.depth_mean);
            for (int i = 0; i < 3; i++)
                CHECK(champ_contains(m, &o[i]), "%s: key %d", what, i);
            unit_del(m, &o[1]);
            unit_shape(m, 2, 1, 0, 0, 1, "the survivors fold back into the root");
            unit_del(m, &o[2]);
            unit_shape(m, 1, 1, 0, 0, 1, "single entry in the root");
            unit_del(m, &o[0]);
            unit_shape(m, 0, 0, 0, 0, 0, "empty again");
            champ_free(m);
        }
    }
}

/* n keys with one full hash; removed one by one (two orders). */
static void test_shape_collisions(size_t n, bool reverse) {
    th_cbctx ctx;
    th_obj *o = unit_objs_reset(n);
    champ_map *m = unit_new_generic(&ctx, false);
    if (!m)
        return;
    const uint64_t H = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < n; i++) {
        o[i].hash = H;
        unit_put(m, &o[i], th_tok(i));
    }
    char what[80];
    snprintf(what, sizeof what, "%zu colliding keys", n);
    champ_stats s = th_stats(m);
    if (n >= 3) {
        unit_shape(m, n, 13, 1, n, 14, what);
        CHECK_EQ(s.nodes_by_slots[1], 13, what);
    } else { /* two keys are a pair in the root, whatever their hashes */
        unit_shape(m, n, 1, 0, 0, 1, what);
    }
    for (size_t i = 0; i < n; i++) {
        void *v = NULL;
        CHECK(champ_get(m, &o[i], &v), "%s: key %zu found", what, i);
        CHECK(v == th_tok(i), "%s: value %zu", what, i);
    }
    th_obj absent = {.id = 10000, .hash = H};
    CHECK(!champ_contains(m, &absent), "%s: absent key with the same hash",
          what);
    champ_prior pr = th_prior_junk();
    CHECK_ST(champ_remove(m, &absent, &pr), CHAMP_OK);
    CHECK(!pr.found && pr.key == NULL && pr.val == NULL,
          "%s: remove of an absent key with the same hash", what);
    CHECK_EQ(champ_size(m), n, what);

    /* Iteration reaches the bottom (14 levels). */
    champ_iter it;
    champ_key k;
    size_t seen = 0;
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    while (champ_iter_next(&it, &k, NULL))
        seen++;
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);
    CHECK_EQ(seen, n, "iteration through a collision node");

    for (size_t j = 0; j < n; j++) {
        size_t i = reverse ? n - 1 - j : j;
        unit_del(m, &o[i]);
        size_t left = n - 1 - j;
        snprintf(what, sizeof what, "%zu colliding keys, %zu left%s", n, left,
                 reverse ? " (reverse)" : "");
        if (left >= 3)
            unit_shape(m, left, 13, 1, left, 14, what);
        else if (left == 2) /* two keys are a pair, in the root */
            unit_shape(m, 2, 1, 0, 0, 1, what);
        else if (left == 1)
            unit_shape(m, 1, 1, 0, 0, 1, what);
        else
            unit_shape(m, 0, 0, 0, 0, 0, what);
        CHECK(!champ_contains(m, &o[i]), "%s: removed key", what);
        if (left > 0)
            CHECK(champ_contains(m, &o[reverse ? 0 : n - 1]),
                  "%s: the last key to go", what);
    }
    champ_free(m);
}

/* A collision group with a sibling key: when the group falls to two keys,
 * they become a pair in the node where the sibling lives; when only the
 * sibling and one of them are left, a pair in the root. */
static void test_shape_collision_sibling(unsigned sibling_bit) {
    th_cbctx ctx;
    th_obj *o = unit_objs_reset(4);
    champ_map *m = unit_new_generic(&ctx, false);
    if (!m)
        return;
    const uint64_t H = 0x0f1e2d3c4b5a6978ULL;
    o[0].hash = o[1].hash = o[2].hash = H;
    o[3].hash = H ^ (1ULL << sibling_bit);
    for (int i = 0; i < 4; i++)
        unit_put(m, &o[i], th_tok((uint64_t)i));
    unsigned meet = sibling_bit < 60 ? sibling_bit / 5 : 12; /* level */
    char what[80];
    snprintf(what, sizeof what, "collision + sibling at bit %u", sibling_bit);
    unit_shape(m, 4, 13, 1, 3, 14, what);
    unit_del(m, &o[1]);
    /* o[0] and o[2] are a pair beside o[3], in the node at level meet */
    unit_shape(m, 3, meet + 1, 0, 0, meet + 1, what);
    champ_stats s = th_stats(m);
    CHECK_EQ(s.nodes_by_slots[2], 1, what);
    /* Same shape as inserting the three directly. */
    champ_map *d = unit_new_generic(&ctx, false);
    if (d) {
        unit_put(d, &o[3], th_tok(3));
        unit_put(d, &o[0], th_tok(0));
        unit_put(d, &o[2], th_tok(2));
        CHECK(th_same_dump(m, d), "%s: canonical after delete", what);
        champ_free(d);
    }
    unit_del(m, &o[0]);
    /* o[2] and o[3]: a pair in the root */
    unit_shape(m, 2, 1, 0, 0, 1, what);
    d = unit_new_generic(&ctx, false);
    if (d) {
        unit_put(d, &o[3], th_tok(3));
        unit_put(d, &o[2], th_tok(2));
        CHECK(th_same_dump(m, d), "%s: canonical after the second delete", what);
        champ_free(d);
    }
    unit_del(m, &o[3]);
    unit_shape(m, 1, 1, 0, 0, 1, what);
    champ_free(m);
}

/* Every canonicalisation case on delete, each compared with a map built
 * directly with the surviving keys. */
typedef struct unit_canon_case {
    const char *name;
    int n;
    uint64_t hash[6];
    int remove[6];  /* indexes to remove, -1 ends */
    size_t bitmap_before, bitmap_after;
    unsigned depth_before, depth_after;
} unit_canon_case;

static void test_shape_canonical_delete(void) {
    static const unit_canon_case cases[] = {
        {"a pair loses one key: a single entry in its slot", 3,
         {0x00, 0x20, 0x01}, {1, -1}, 1, 1, 1, 1},
        {"a subtree of three falls to a pair in its parent", 4,
         {0x00, 0x20, 0x40, 0x01}, {2, -1}, 2, 1, 2, 1},
        {"the pair cascades up to the root", 3,
         {0, 1ULL << 25, 1ULL << 26}, {2, -1}, 6, 1, 6, 1},
        {"cascade stops at a node with another entry", 4,
         {0, 1ULL << 25, 1ULL << 26, 1ULL << 10}, {2, -1}, 6, 3, 6, 3},
        {"node left with a single subnode stays", 4,
         {0, 1ULL << 10, 1ULL << 11, 1ULL << 5}, {3, -1}, 3, 3, 3, 3},
        {"root keeps a single entry", 2, {0, 1ULL << 5}, {1, -1}, 1, 1, 1, 1},
        {"root with two entries keeps one", 2, {3, 4}, {0, -1}, 1, 1, 1, 1},
        {"two subtrees collapse one after another", 6,
         {0, 1ULL << 30, 1ULL << 31, 1, 1 | (1ULL << 40), 1 | (1ULL << 41)},
         {2, 5, -1}, 15, 1, 9, 1},
        {"deep triple under a shallow entry", 5,
         {0, 1ULL << 63, 1ULL << 62, 1ULL << 5, 7}, {1, 3, -1}, 13, 1, 13, 1},
        {"everything removed", 3, {0, 1ULL << 62, 1ULL << 33}, {0, 1, 2, -1}, 7, 0,
         7, 0},
    };
    th_cbctx ctx;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const unit_canon_case *c = &cases[ci];
        th_obj *o = unit_objs_reset((size_t)c->n);
        champ_map *m = unit_new_generic(&ctx, false);
        champ_map *d = unit_new_generic(&ctx, false);
        if (!m || !d) {
            champ_free(m);
            champ_free(d);
            return;
        }
        bool removed[6] = {false};
        for (int i = 0; i < 6 && c->remove[i] >= 0; i++)
            removed[c->remove[i]] = true;
        for (int i = 0; i < c->n; i++) {
            o[i].hash = c->hash[i];
            unit_put(m, &o[i], th_tok((uint64_t)i));
        }
        champ_stats s = th_stats(m);
        CHECK_EQ(s.nodes_bitmap, c->bitmap_before, c->name);
        CHECK_EQ(s.depth_max, c->depth_before, c->name);
        CHECK_VALID(m, c->name);
        for (int i = 0; i < 6 && c->remove[i] >= 0; i++)
            unit_del(m, &o[c->remove[i]]);
        for (int i = c->n - 1; i >= 0; i--)
            if (!removed[i])
                unit_put(d, &o[i], th_tok((uint64_t)i));
        s = th_stats(m);
        CHECK_EQ(s.nodes_bitmap, c->bitmap_after, c->name);
        CHECK_EQ(s.nodes_collision, 0, c->name);
        CHECK_EQ(s.depth_max, c->depth_after, c->name);
        CHECK_VALID(m, c->name);
        CHECK(th_same_dump(m, d), "%s: shape differs from a direct build",
              c->name);
        champ_stats sd = th_stats(d);
        CHECK_EQ(sd.nodes_bitmap, c->bitmap_after, c->name);
        champ_free(m);
        champ_free(d);
    }
}

/* Random small hash sets: insertion order and deletions never change the
 * final shape (canonical form). */
static void test_shape_canonical_random(void) {
    th_cbctx ctx;
    th_rng r = {0xca0011ca1};
    long rounds = th_iters(300, 20);
    for (long round = 0; round < rounds; round++) {
        th_set_seed(r.s);
        size_t n = 2 + (size_t)th_below(&r, 60), extra = (size_t)th_below(&r, 30);
        th_obj *o = unit_objs_reset(n + extra);
        /* Hashes from few slice values, so paths share long prefixes; in
         * odd rounds some exact duplicates make collision nodes.  The order
         * of entries inside a collision node follows insertion (generic
         * keys have no order), so dumps and iteration orders are compared
         * in the rounds without duplicates only. */
        bool dups = round % 2 == 1;
        for (size_t i = 0; i < n + extra; i++) {
            if (dups && i > 0 && th_chance(&r, 10)) {
                o[i].hash = o[th_below(&r, i)].hash;
                continue;
            }
            uint64_t h = 0;
            for (int s = 0; s < 13; s++) {
                uint64_t slice = th_chance(&r, 70) ? 0 : th_below(&r, 3);
                h |= slice << (5 * s);
            }
            if (th_chance(&r, 30))
                h ^= 1ULL << (60 + th_below(&r, 4));
            o[i].hash = h;
            for (size_t j = 0; j < i && !dups; j++)
                if (o[j].hash == h) {
                    o[i].hash = h ^ (1ULL << (5 * th_below(&r, 13)));
                    j = (size_t)-1; /* re-check all */
                    h = o[i].hash;
                }
        }
        champ_map *a = unit_new_generic(&ctx, false);
        champ_map *b = unit_new_generic(&ctx, false);
        champ_map *c = unit_new_generic(&ctx, false);
        if (!a || !b || !c) {
            champ_free(a);
            champ_free(b);
            champ_free(c);
            return;
        }
        for (size_t i = 0; i < n; i++)
            unit_put(a, &o[i], th_tok(i));
        for (size_t i = n; i-- > 0;)
            unit_put(b, &o[i], th_tok(i));
        /* c: everything in a shuffled order, then the extras removed. */
        size_t perm[128];
        for (size_t i = 0; i < n + extra; i++)
            perm[i] = i;
        for (size_t i = n + extra; i > 1; i--) {
            size_t j = (size_t)th_below(&r, i);
            size_t t = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = t;
        }
        for (size_t i = 0; i < n + extra; i++)
            unit_put(c, &o[perm[i]], th_tok(perm[i]));
        for (size_t i = 0; i < n + extra; i++)
            if (perm[i] >= n)
                unit_del(c, &o[perm[i]]);
        CHECK_VALID(a, "canonical random a");
        CHECK_VALID(c, "canonical random c");
        if (!dups) {
            CHECK(th_same_dump(a, b), "insertion order changed the shape");
            CHECK(th_same_dump(a, c), "deletions left a non-canonical shape");
        }
        champ_stats sa = th_stats(a), sb = th_stats(b), sc = th_stats(c);
        CHECK(sa.nodes_bitmap == sc.nodes_bitmap &&
                  sa.nodes_collision == sc.nodes_collision &&
                  sa.depth_max == sc.depth_max &&
                  sa.collision_entries == sc.collision_entries &&
                  sa.node_bytes == sc.node_bytes &&
                  memcmp(sa.nodes_by_slots, sc.nodes_by_slots,
                         sizeof sa.nodes_by_slots) == 0,
              "stats differ: bitmap %zu/%zu collision %zu/%zu depth %u/%u",
              sa.nodes_bitmap, sc.nodes_bitmap, sa.nodes_collision,
              sc.nodes_collision, sa.depth_max, sc.depth_max);
        CHECK(sa.nodes_bitmap == sb.nodes_bitmap &&
                  sa.node_bytes == sb.node_bytes &&
                  memcmp(sa.nodes_by_slots, sb.nodes_by_slots,
                         sizeof sa.nodes_by_slots) == 0,
              "stats differ with insertion order");
        /* Same content and seed: the same iteration order. */
        champ_iter ia, ic;
        champ_key ka, kc;
        bool same_order = true;
        champ_iter_init(&ia, a);
        champ_iter_init(&ic, c);
        for (;;) {
            bool s1 = champ_iter_next(&ia, &ka, NULL);
            bool s2 = champ_iter_next(&ic, &kc, NULL);
            if (s1 != s2 || (s1 && ka.ptr != kc.ptr)) {
                same_order = false;
                break;
            }
            if (!s1)
                break;
        }
        CHECK(champ_iter_status(&ia) == CHAMP_OK &&
                  champ_iter_status(&ic) == CHAMP_OK,
              "iterations of equal contents ended normally");
        if (!dups)
            CHECK(same_order, "iteration order differs for equal contents");
        champ_free(a);
        champ_free(b);
        champ_free(c);
        if (th_failed)
            break;
    }
    th_set_seed(0);
}

static void unit_dump_canonical_fill(champ_map *a, champ_map *b, champ_map *c,
                                     champ_map *d);

/* U64 and BYTES maps with equal contents and seeds dump alike. */
static void test_dump_canonical_kinds(void) {
    champ_map *a = unit_new_kind(CHAMP_KEY_U64, 77);
    champ_map *b = unit_new_kind(CHAMP_KEY_U64, 77);
    champ_map *c = unit_new_kind(CHAMP_KEY_BYTES, 78);
    champ_map *d = unit_new_kind(CHAMP_KEY_BYTES, 78);
    if (a && b && c && d)
        unit_dump_canonical_fill(a, b, c, d);
    champ_free(a);
    champ_free(b);
    champ_free(c);
    champ_free(d);
}

static void unit_dump_canonical_fill(champ_map *a, champ_map *b, champ_map *c,
                                     champ_map *d) {
    enum { N = 3000 };
    for (uint64_t i = 0; i < N; i++) {
        champ_set_u64(a, i * 7919, th_tok(i), NULL);
        champ_set_u64(b, (N - 1 - i) * 7919, th_tok(N - 1 - i), NULL);
        char kb[32];
        int len = snprintf(kb, sizeof kb, "key-%llu", (unsigned long long)i);
        champ_set_bytes(c, kb, (size_t)len, th_tok(i), NULL);
    }
    for (uint64_t i = N + 500; i-- > 0;) {
        char kb[32];
        int len = snprintf(kb, sizeof kb, "key-%llu", (unsigned long long)i);
        champ_set_bytes(d, kb, (size_t)len, th_tok(i), NULL);
    }
    for (uint64_t i = N; i < N + 500; i++) {
        char kb[32];
        int len = snprintf(kb, sizeof kb, "key-%llu", (unsigned long long)i);
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_remove_bytes(d, kb, (size_t)len, &pr), CHAMP_OK);
        CHECK(pr.found && pr.val == th_tok(i), "bytes remove of %s", kb);
    }
    CHECK_EQ(champ_size(a), N, "u64 size");
    CHECK_EQ(champ_size(d), N, "bytes size");
    CHECK(th_same_dump(a, b), "u64: insertion order changed the dump");
    CHECK(th_same_dump(c, d), "bytes: insertion order/deletes changed the dump");
    champ_status st;
    char *txt = th_capture(a, false, &st);
    CHECK_ST(st, CHAMP_OK);
    CHECK(txt && strlen(txt) > 100, "dump of a 3000-entry map prints the trie");
    free(txt);
    txt = th_capture(a, true, &st);
    CHECK_ST(st, CHAMP_OK);
    CHECK(txt && txt[0] != '\0', "stats_print prints something");
    free(txt);
}

/* A collision node far larger than any bitmap node. */
static void test_huge_collision(void) {
    th_cbctx ctx;
    size_t n = 300;
    th_obj *o = unit_objs_reset(n);
    champ_map *m = unit_new_generic(&ctx, true);
    if (!m)
        return;
    for (size_t i = 0; i < n; i++) {
        o[i].hash = 0x5555555555555555ULL;
        CHECK_ST(champ_set(m, &o[i], &o[(i + 1) % n], NULL), CHAMP_OK);
        CHECK_EQ(champ_size(m), i + 1, "colliding key inserted");
        th_obj_hand_in(&o[i]);
        th_obj_hand_in(&o[(i + 1) % n]);
    }
    unit_shape(m, n, 13, 1, n, 14, "300 colliding keys");
    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    th_rng r = {0x4c6e};
    th_set_seed(r.s);
    size_t left = n;
    unsigned char gone[300] = {0};
    while (left > 0) {
        size_t i = (size_t)th_below(&r, n);
        if (gone[i])
            continue;
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_remove(m, &o[i], &pr), CHAMP_OK);
        CHECK(pr.found && pr.key == &o[i] && pr.val == &o[(i + 1) % n],
              "handed back %zu", i);
        th_obj_hand_back(pr.key);
        th_obj_hand_back(pr.val);
        gone[i] = 1;
        left--;
        if (left % 37 == 0 || left < 4) {
            char what[64];
            snprintf(what, sizeof what, "huge collision, %zu left", left);
            if (left >= 3)
                unit_shape(m, left, 13, 1, left, 14, what);
            else /* a pair in the root, an entry, nothing */
                unit_shape(m, left, left ? 1 : 0, 0, 0, left ? 1u : 0u, what);
        }
    }
    CHECK_EQ(champ_size(c), n, "the copy kept all");
    CHECK_VALID(c, "copy of the huge collision");
    champ_free(m);
    champ_free(c);
    long unbalanced = 0;
    for (size_t i = 0; i < n; i++)
        unbalanced += o[i].held != 0;
    CHECK_EQ(unbalanced, 0, "huge collision: references balanced");
    CHECK_EQ(ctx.underflows, 0, "huge collision: no underflow");
    th_set_seed(0);
}

/* Spare room.  A node that an insert makes grow takes one spare entry
 * along into its new block (small nodes; about 1/8 of a big one), and the
 * next insert there uses it in place.  A remove from a node the map owns
 * shrinks it in place and keeps the freed bytes as spare room, as long as
 * the room is no bigger than the node (and at least 32 bytes); past that
 * the node is copied into an exact block.  The pool's live bytes count the
 * room and validate's census agrees. */
static void test_spare_room(void) {
    th_cbctx ctx;
    th_obj *o = unit_objs_reset(6);
    champ_map *m = unit_new_generic(&ctx, false);
    if (!m)
        return;
    /* six keys in six root slots: one node of 6 entries (16 + 96 bytes);
     * inserts 2, 4 and 6 grew it, 3 and 5 used the room */
    for (int i = 0; i < 6; i++) {
        o[i].hash = (uint64_t)i;
        unit_put(m, &o[i], th_tok((uint64_t)i));
        champ_stats s = th_stats(m);
        CHECK(s.slack_bytes == (i % 2 ? 16u : 0u), "room after insert %d: %zu",
              i, s.slack_bytes);
    }
    champ_stats s = th_stats(m);
    CHECK_EQ(s.node_bytes, 112, "six entries in the root");
    CHECK_EQ(s.slack_bytes, 16, "the last growth took one spare entry along");
    const champ_pool *mp = champ_pool_of(m);
    size_t live0 = th_pool_live(mp);
    /* removes 6, 5, 4 shrink in place: room 32, 48, 64 bytes */
    for (int i = 5; i >= 3; i--) {
        unit_del(m, &o[i]);
        s = th_stats(m);
        CHECK(s.node_bytes == 16u + 16u * (size_t)i && s.slack_bytes == 16u * (7u - (size_t)i),
              "remove %d in place: node %zu, room %zu", i, s.node_bytes, s.slack_bytes);
        CHECK_EQ(th_pool_live(mp), live0, "nothing allocated or freed");
        CHECK_VALID(m, "room left by removes");
    }
    unit_del(m, &o[2]);
    s = th_stats(m);
    CHECK_EQ(s.slack_bytes, 0, "room bigger than the node: copied exact");
    CHECK_EQ(s.node_bytes, 48, "two entries left");
    CHECK(th_pool_live(mp) < live0, "the roomy block went back to the pool");
    CHECK_VALID(m, "exact again");
    /* growing again: the new block holds room for one more entry, unless
     * a free block of the exact size was at hand (the smallest near size
     * wins) */
    unit_put(m, &o[2], th_tok(2));
    s = th_stats(m);
    size_t room = s.slack_bytes;
    CHECK(s.node_bytes == 64 && (room == 0 || room == 16 || room == 32),
          "grown node %zu bytes, room %zu", s.node_bytes, room);
    size_t live1 = th_pool_live(mp);
    unit_put(m, &o[3], th_tok(3));
    s = th_stats(m);
    CHECK_EQ(s.node_bytes, 80, "four entries again");
    if (room >= 16) {
        CHECK_EQ(s.slack_bytes, room - 16, "the insert used the spare room");
        CHECK_EQ(th_pool_live(mp), live1, "in place: nothing allocated");
    }
    CHECK_VALID(m, "room used by an insert");
    /* the room is used in place whenever there is some */
    unit_del(m, &o[3]);
    s = th_stats(m);
    CHECK(s.slack_bytes >= 16, "a remove leaves room: %zu", s.slack_bytes);
    size_t live2 = th_pool_live(mp), room2 = s.slack_bytes;
    unit_put(m, &o[3], th_tok(3));
    s = th_stats(m);
    CHECK_EQ(s.slack_bytes, room2 - 16, "the insert used the room");
    CHECK_EQ(th_pool_live(mp), live2, "in place: nothing allocated");
    for (int i = 0; i < 4; i++) {
        void *v = NULL;
        CHECK(champ_get(m, &o[i], &v), "key %d found", i);
        CHECK(v == th_tok((uint64_t)i), "key %d keeps its value", i);
    }
    /* a copy shares the roomy node; an update of the copy makes exact nodes */
    unit_del(m, &o[3]);
    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    if (c) {
        unit_put(c, &o[5], th_tok(5));
        champ_stats sc = th_stats(c);
        CHECK_EQ(sc.slack_bytes, 0, "copied path is exact");
        CHECK_VALID(c, "copy after spare room");
        champ_free(c);
    }
    CHECK_VALID(m, "source after the copy was freed");
    champ_free(m);
}

/* ------------------------------------------------------------------ */
/* champ_validate catches corruption                                   */
/* ------------------------------------------------------------------ */

/* Not in CHAMP_DEBUG builds: there the pool poisons its free blocks for
 * ASan and valgrind, and scanning the buffer would read them. */
#ifndef CHAMP_DEBUG
/* Finds the only occurrence of `pat` in buf, or NULL. */
static unsigned char *unit_find_once(unsigned char *buf, size_t size,
                                     const void *pat, size_t len) {
    unsigned char *hit = NULL;
    for (size_t i = 0; i + len <= size; i++)
        if (memcmp(buf + i, pat, len) == 0) {
            if (hit)
                return NULL;
            hit = buf + i;
        }
    return hit;
}

/* In a fixed-buffer pool the test owns the memory: it changes a stored key
 * (data only, never a pointer), so the key no longer sits where its hash
 * says; validate must notice, and be happy again once it is restored. */
static void test_validate_detects_corruption(void) {
    static _Alignas(64) unsigned char buf[64 * 1024];
    for (int kind = 0; kind < 2; kind++) {
        memset(buf, 0, sizeof buf);
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.buffer = buf;
        pc.buffer_size = sizeof buf;
        champ_pool *pool = NULL;
        CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
        if (!pool)
            return;
        champ_config cfg = th_kind_config(
            kind == 0 ? CHAMP_KEY_U64 : CHAMP_KEY_BYTES, 77, pool);
        champ_map *m = NULL;
        CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
        if (!m) {
            champ_pool_free(pool);
            return;
        }
        char bk[40];
        for (uint64_t i = 0; i < 200; i++) {
            if (kind == 0) {
                champ_set_u64(m, 0xc0ffee0000000000ULL | i, th_tok(i), NULL);
            } else {
                snprintf(bk, sizeof bk, "corruptible-key-%03u", (unsigned)i);
                champ_set_str(m, bk, th_tok(i), NULL);
            }
        }
        CHECK_VALID(m, "before corruption");
        uint64_t victim = 0xc0ffee0000000000ULL | 123;
        const void *pat = &victim;
        size_t plen = sizeof victim;
        if (kind == 1) {
            snprintf(bk, sizeof bk, "corruptible-key-%03u", 123u);
            pat = bk;
            plen = strlen(bk);
        }
        unsigned char *hit = unit_find_once(buf, sizeof buf, pat, plen);
        CHECK(hit != NULL, "the stored key is in the pool's buffer (kind %d)",
              kind);
        if (hit) {
            unsigned char saved = hit[0];
            hit[0] ^= 0x5a; /* another key: its hash points elsewhere */
            fprintf(stderr, "(a validation error report is expected here)\n");
            CHECK_ST(champ_validate(m), CHAMP_ECORRUPT);
            hit[0] = saved;
            CHECK_VALID(m, "after restoring the key");
        }
        champ_free(m);
        CHECK_EQ(th_pool_live(pool), 0, "corruption test pool drained");
        champ_pool_free(pool);
    }
}

#endif /* !CHAMP_DEBUG */

/* The parameterised shape tests, one registered name per case. */
static void test_shape_collisions_2(void) { test_shape_collisions(2, false); }
static void test_shape_collisions_3(void) { test_shape_collisions(3, false); }
static void test_shape_collisions_3_reverse(void) {
    test_shape_collisions(3, true);
}
static void test_shape_collisions_40(void) { test_shape_collisions(40, false); }
static void test_shape_collisions_40_reverse(void) {
    test_shape_collisions(40, true);
}
static void test_shape_collision_sibling_27(void) {
    test_shape_collision_sibling(27);
}
static void test_shape_collision_sibling_62(void) {
    test_shape_collision_sibling(62);
}
static void test_shape_collision_sibling_0(void) {
    test_shape_collision_sibling(0);
}

/* champ.h (iteration order): "generic keys without compare come in
 * insertion order" within a collision node.  60 keys of one hash, put in
 * a shuffled order (and some set again: a replace keeps the place): the
 * iteration gives them in the order of their first insertion. */
static void test_collision_insertion_order(void) {
    enum { N = 60 };
    th_cbctx ctx;
    th_obj *o = unit_objs_reset(N);
    champ_map *m = unit_new_generic(&ctx, false); /* TH_HASH_FIELD, no compare */
    if (!m)
        return;
    th_rng r = {0x1a5e7};
    th_set_seed(r.s);
    size_t order[N];
    for (size_t i = 0; i < N; i++)
        order[i] = i;
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)th_below(&r, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < N; i++)
        o[i].hash = 0x5eed5eed5eed5eedULL;
    for (size_t i = 0; i < N; i++) {
        CHECK_ST(champ_set(m, &o[order[i]], th_tok(order[i]), NULL), CHAMP_OK);
        if (i % 7 == 6) /* a replace of an earlier key */
            CHECK_ST(champ_set(m, &o[order[i / 2]], th_tok(order[i / 2]), NULL), CHAMP_OK);
    }
    champ_iter it;
    champ_key k;
    void *v;
    size_t at = 0, wrong = 0;
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    while (champ_iter_next(&it, &k, &v)) {
        wrong += at >= N || k.ptr != &o[order[at]];
        at++;
    }
    CHECK(at == N && wrong == 0, "collision keys in insertion order: %zu of %zu out of place",
          wrong, at);
    CHECK_VALID(m, "a collision node of generic keys without compare");
    champ_free(m);
    th_set_seed(0);
}

const th_test th_tests_shapes[] = {
    {"shapes.collision_insertion_order", test_collision_insertion_order},
    {"shapes.single_bit", test_shape_single_bit},
    {"shapes.collisions.2", test_shape_collisions_2},
    {"shapes.collisions.3", test_shape_collisions_3},
    {"shapes.collisions.3_reverse", test_shape_collisions_3_reverse},
    {"shapes.collisions.40", test_shape_collisions_40},
    {"shapes.collisions.40_reverse", test_shape_collisions_40_reverse},
    {"shapes.collision_sibling.bit27", test_shape_collision_sibling_27},
    {"shapes.collision_sibling.bit62", test_shape_collision_sibling_62},
    {"shapes.collision_sibling.bit0", test_shape_collision_sibling_0},
    {"shapes.canonical_delete", test_shape_canonical_delete},
    {"shapes.canonical_random", test_shape_canonical_random},
    {"shapes.dump_canonical_kinds", test_dump_canonical_kinds},
    {"shapes.huge_collision", test_huge_collision},
    {"shapes.spare_room", test_spare_room},
#ifndef CHAMP_DEBUG
    {"shapes.validate_detects_corruption", test_validate_detects_corruption},
#endif
};
const size_t th_tests_shapes_count =
    sizeof th_tests_shapes / sizeof th_tests_shapes[0];

/*
 * unit_common.c - helpers shared by the unit test files (test_api.c,
 * test_shapes.c, test_pool.c): a table of counted objects, map
 * constructors that check their status, insert/remove of a new/present
 * key, and a check of a map's shape numbers.  Declared in harness.h.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static th_obj unit_objs[UNIT_MAX_OBJS];

/* Fresh objects: ids 1..n, hash 0, counters zero. */
th_obj *unit_objs_reset(size_t n) {
    memset(unit_objs, 0, sizeof unit_objs);
    for (size_t i = 0; i < n && i < UNIT_MAX_OBJS; i++)
        unit_objs[i].id = i + 1;
    return unit_objs;
}

champ_map *unit_new_generic(th_cbctx *ctx, bool counted) {
    memset(ctx, 0, sizeof *ctx);
    ctx->hash_mode = TH_HASH_FIELD;
    champ_config cfg = th_generic_config(ctx, counted, NULL);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    return m;
}

champ_map *unit_new_kind(champ_key_kind kind, uint64_t seed) {
    champ_config cfg = th_kind_config(kind, seed, NULL);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    return m;
}

/* Inserts key k (must be new) with value v into a generic map. */
void unit_put(champ_map *m, th_obj *k, void *v) {
    champ_prior pr = th_prior_junk();
    champ_status st = champ_set(m, k, v, &pr);
    CHECK(st == CHAMP_OK && !pr.found && pr.val == NULL && pr.key == NULL,
          "insert of key id %llu: %s (found %d)", (unsigned long long)k->id,
          th_status_name(st), (int)pr.found);
}

/* The removed key and value come back in a prior (the maps of the unit
 * tests hold uncounted objects or balance them themselves). */
void unit_del(champ_map *m, th_obj *k) {
    champ_prior pr = th_prior_junk();
    champ_status st = champ_remove(m, k, &pr);
    CHECK(st == CHAMP_OK && pr.found && pr.key == k,
          "remove of key id %llu: %s (found %d)", (unsigned long long)k->id,
          th_status_name(st), (int)pr.found);
}

/* Checks the shape numbers of m and validates it. */
void unit_shape(const champ_map *m, size_t entries, size_t bitmap,
                size_t collision, size_t coll_entries, unsigned depth,
                const char *what) {
    champ_stats s = th_stats(m);
    CHECK_EQ(s.entries, entries, what);
    CHECK_EQ(champ_size(m), entries, what);
    CHECK_EQ(s.nodes_bitmap, bitmap, what);
    CHECK_EQ(s.nodes_collision, collision, what);
    CHECK_EQ(s.collision_entries, coll_entries, what);
    CHECK_EQ(s.depth_max, depth, what);
    CHECK_VALID(m, what);
}

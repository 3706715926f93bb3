/*
 * test_versions.c - many versions sharing nodes.
 *
 * A version tree of ~2,000 maps grows by pset/premove/copy from a random
 * parent (mostly the newest: long chains; sometimes an old one: branches),
 * with in-place updates of some versions after others were derived from
 * them.  Every version keeps a compact reference snapshot.  All versions are
 * checked after the tree is built, then released in a random order (several
 * seeds, plus oldest-first and newest-first); the survivors are re-checked
 * half-way, and the pool must be back to zero live bytes at the end of each
 * round.  Kinds: U64, BYTES, and GENERIC with counted callbacks and a weak
 * hash (collision nodes shared between versions).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define VER_KEYS 300
#define VER_ABSENT 0xffff

typedef struct ver_state {
    champ_key_kind kind;
    bool counted;
    th_rng r;
    th_cbctx ctx;
    champ_pool *pool;
    th_obj keys[VER_KEYS];
    th_obj vals[VER_KEYS];
    char bkeys[VER_KEYS][12];
    size_t nver;
    champ_map **maps;
    uint16_t *snap; /* nver x VER_KEYS: value index, VER_ABSENT if absent */
    size_t *count;
    size_t handle_bytes;
} ver_state;

static void *ver_val(ver_state *s, unsigned vi) {
    return s->counted ? (void *)&s->vals[vi] : th_tok(vi);
}

static bool ver_get(ver_state *s, const champ_map *m, unsigned k, void **v) {
    switch (s->kind) {
    case CHAMP_KEY_U64: return champ_get_u64(m, (uint64_t)k * 0x10001, v);
    case CHAMP_KEY_BYTES: return champ_get_str(m, s->bkeys[k], v);
    default: return champ_get(m, &s->keys[k], v);
    }
}

static champ_status ver_pset(ver_state *s, const champ_map *m, unsigned k,
                             void *v, champ_map **out) {
    switch (s->kind) {
    case CHAMP_KEY_U64:
        return champ_pset_u64(m, (uint64_t)k * 0x10001, v, out);
    case CHAMP_KEY_BYTES:
        return champ_pset_bytes(m, s->bkeys[k], strlen(s->bkeys[k]), v, out);
    default: return champ_pset(m, &s->keys[k], v, out);
    }
}

static champ_status ver_premove(ver_state *s, const champ_map *m, unsigned k,
                                champ_map **out) {
    switch (s->kind) {
    case CHAMP_KEY_U64: return champ_premove_u64(m, (uint64_t)k * 0x10001, out);
    case CHAMP_KEY_BYTES:
        return champ_premove_bytes(m, s->bkeys[k], strlen(s->bkeys[k]), out);
    default: return champ_premove(m, &s->keys[k], out);
    }
}

static champ_status ver_set(ver_state *s, champ_map *m, unsigned k, void *v,
                            champ_prior *old) {
    switch (s->kind) {
    case CHAMP_KEY_U64: return champ_set_u64(m, (uint64_t)k * 0x10001, v, old);
    case CHAMP_KEY_BYTES: return champ_set_str(m, s->bkeys[k], v, old);
    default: return champ_set(m, &s->keys[k], v, old);
    }
}

static champ_status ver_remove(ver_state *s, champ_map *m, unsigned k,
                               champ_prior *prior) {
    switch (s->kind) {
    case CHAMP_KEY_U64: return champ_remove_u64(m, (uint64_t)k * 0x10001, prior);
    case CHAMP_KEY_BYTES: return champ_remove_str(m, s->bkeys[k], prior);
    default: return champ_remove(m, &s->keys[k], prior);
    }
}

/* Version i equals its snapshot; returns false (and counts a failure) if
 * not. */
static bool ver_check(ver_state *s, size_t i, const char *what) {
    const uint16_t *snap = &s->snap[i * VER_KEYS];
    size_t bad = 0, first = VER_KEYS;
    for (unsigned k = 0; k < VER_KEYS; k++) {
        void *v = th_tok(0xdead);
        bool found = ver_get(s, s->maps[i], k, &v);
        bool ok = snap[k] == VER_ABSENT ? !found && v == th_tok(0xdead)
                                        : found && v == ver_val(s, snap[k]);
        if (!ok && bad++ == 0)
            first = k;
    }
    CHECK(bad == 0 && champ_size(s->maps[i]) == s->count[i],
          "%s: version %zu differs from its snapshot in %zu keys (first %zu), "
          "size %zu want %zu", what, i, bad, first, champ_size(s->maps[i]),
          s->count[i]);
    return bad == 0;
}

static bool ver_build(ver_state *s, size_t nver, uint64_t seed) {
    s->r.s = seed;
    s->nver = nver;
    s->maps = calloc(nver, sizeof *s->maps);
    s->snap = malloc(nver * VER_KEYS * sizeof *s->snap);
    s->count = calloc(nver, sizeof *s->count);
    if (!s->maps || !s->snap || !s->count)
        return false;
    champ_config cfg = s->kind == CHAMP_KEY_GENERIC
                           ? th_generic_config(&s->ctx, s->counted, s->pool)
                           : th_kind_config(s->kind, 31337, s->pool);
    CHECK_ST(champ_new(&cfg, &s->maps[0]), CHAMP_OK);
    if (!s->maps[0])
        return false;
    s->handle_bytes = th_pool_live(s->pool); /* an empty map: its handle */
    for (unsigned k = 0; k < VER_KEYS; k++)
        s->snap[k] = VER_ABSENT;
    long validate_every = th_iters(50, 10);
    for (size_t i = 1; i < nver; i++) {
        size_t parent = th_chance(&s->r, 70) ? i - 1
                                             : (size_t)th_below(&s->r, i);
        uint16_t *snap = &s->snap[i * VER_KEYS];
        memcpy(snap, &s->snap[parent * VER_KEYS], VER_KEYS * sizeof *snap);
        s->count[i] = s->count[parent];
        unsigned k = (unsigned)th_below(&s->r, VER_KEYS);
        unsigned dice = (unsigned)th_below(&s->r, 100);
        champ_status st;
        if (dice < 60 || s->count[parent] < 20) {
            unsigned vi = (unsigned)th_below(&s->r, VER_KEYS);
            st = ver_pset(s, s->maps[parent], k, ver_val(s, vi), &s->maps[i]);
            if (st >= 0) {
                if (s->counted) {
                    th_obj_hand_in(&s->vals[vi]);
                    if (snap[k] == VER_ABSENT)
                        th_obj_hand_in(&s->keys[k]);
                }
                if (snap[k] == VER_ABSENT)
                    s->count[i]++;
                snap[k] = (uint16_t)vi;
            }
        } else if (dice < 92) {
            st = ver_premove(s, s->maps[parent], k, &s->maps[i]);
            if (st >= 0 && snap[k] != VER_ABSENT) {
                snap[k] = VER_ABSENT;
                s->count[i]--;
            }
        } else {
            st = champ_copy(s->maps[parent], &s->maps[i]);
        }
        CHECK(st == CHAMP_OK, "version %zu from %zu: %s", i, parent,
              th_status_name(st));
        if (st < 0 || !s->maps[i]) {
            s->nver = i;
            return false;
        }
        /* The outcome of the p-form (inserted, replaced, removed or not). */
        CHECK(champ_size(s->maps[i]) == s->count[i] &&
                  champ_size(s->maps[parent]) == s->count[parent],
              "version %zu from %zu: size %zu want %zu (parent %zu want %zu)",
              i, parent, champ_size(s->maps[i]), s->count[i],
              champ_size(s->maps[parent]), s->count[parent]);
        /* Sometimes update a version in place after deriving from it. */
        if (th_chance(&s->r, 10)) {
            size_t j = th_chance(&s->r, 50) ? i : parent;
            uint16_t *sj = &s->snap[j * VER_KEYS];
            unsigned k2 = (unsigned)th_below(&s->r, VER_KEYS);
            bool had = sj[k2] != VER_ABSENT;
            size_t size0 = champ_size(s->maps[j]);
            /* Every other update passes a prior (the old value and key come
             * back to the test), the others none (the map releases them):
             * the outcome is checked through the prior or the size. */
            bool with_prior = i % 2 == 0;
            champ_prior pr = th_prior_junk();
            champ_prior *pp = with_prior ? &pr : NULL;
            if (th_chance(&s->r, 50)) {
                unsigned vi = (unsigned)th_below(&s->r, VER_KEYS);
                st = ver_set(s, s->maps[j], k2, ver_val(s, vi), pp);
                CHECK(st == CHAMP_OK &&
                          (with_prior ? pr.found == had &&
                                            pr.val == (had ? ver_val(s, sj[k2])
                                                           : NULL)
                                      : champ_size(s->maps[j]) == size0 + !had),
                      "in-place set on version %zu: %s, found %d want %d, "
                      "size %zu -> %zu", j, th_status_name(st), (int)pr.found,
                      (int)had, size0, champ_size(s->maps[j]));
                if (st >= 0) {
                    if (s->counted) {
                        th_obj_hand_in(&s->vals[vi]);
                        if (!had)
                            th_obj_hand_in(&s->keys[k2]);
                        else if (with_prior)
                            th_obj_hand_back(pr.val);
                    }
                    if (!had)
                        s->count[j]++;
                    sj[k2] = (uint16_t)vi;
                }
            } else {
                st = ver_remove(s, s->maps[j], k2, pp);
                CHECK(st == CHAMP_OK &&
                          (with_prior ? pr.found == had &&
                                            pr.val == (had ? ver_val(s, sj[k2])
                                                           : NULL)
                                      : champ_size(s->maps[j]) == size0 - had),
                      "in-place remove on version %zu: %s, found %d want %d, "
                      "size %zu -> %zu", j, th_status_name(st), (int)pr.found,
                      (int)had, size0, champ_size(s->maps[j]));
                if (st == CHAMP_OK && had) {
                    if (s->counted && with_prior) {
                        CHECK(pr.key == &s->keys[k2],
                              "in-place remove handed back the stored key");
                        th_obj_hand_back(pr.key);
                        th_obj_hand_back(pr.val);
                    }
                    sj[k2] = VER_ABSENT;
                    s->count[j]--;
                }
            }
        }
        if ((long)i % validate_every == 0) {
            CHECK_VALID(s->maps[i], "version tree");
            if (!ver_check(s, i, "while building") ||
                !ver_check(s, parent, "parent while building"))
                return false;
        }
    }
    return true;
}

/* One round: build, check all, free in the order given by `order`
 * (0 random, 1 oldest first, 2 newest first). */
static void ver_round(champ_key_kind kind, bool counted, uint64_t seed,
                      int order) {
    ver_state *s = calloc(1, sizeof *s);
    if (!s) {
        CHECK(s != NULL, "out of memory");
        return;
    }
    th_set_seed(seed);
    s->kind = kind;
    s->counted = counted;
    s->ctx.hash_mode = TH_HASH_MOD64;
    for (unsigned k = 0; k < VER_KEYS; k++) {
        s->keys[k].id = k + 1;
        s->vals[k].id = 100000 + k;
        snprintf(s->bkeys[k], sizeof s->bkeys[k], "v%u", k * 7);
    }
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.chunk_size = 8192;
    CHECK_ST(champ_pool_new(&pc, &s->pool), CHAMP_OK);
    if (!s->pool) {
        free(s);
        return;
    }
    size_t nver = (size_t)th_iters(2000, 100);
    bool built = ver_build(s, nver, seed);
    CHECK(built, "version tree built (seed %llx)", (unsigned long long)seed);
    if (built) {
        size_t bad = 0;
        for (size_t i = 0; i < s->nver && bad < 3; i++)
            bad += !ver_check(s, i, "after building");
        champ_pool_stats ps;
        CHECK_ST(champ_pool_stats_get(s->pool, &ps, sizeof ps), CHAMP_OK);
        CHECK_EQ(ps.maps, s->nver, "every version is a map of the pool");
        /* Sharing: the versions together reach more node and key bytes
         * than the pool holds besides their handles. */
        size_t reach = 0;
        for (size_t i = 0; i < s->nver; i++) {
            champ_stats vs = th_stats(s->maps[i]);
            reach += vs.node_bytes + vs.key_bytes;
        }
        /* handles live in pages of 30 (32 bytes each, 1 KiB a page); the
         * versions' shared type takes under 128 bytes */
        size_t handles = (s->nver + 29) / 30 * 1024 + 128;
        size_t own = ps.bytes_live - (handles < ps.bytes_live ? handles : 0);
        CHECK(reach > own && s->handle_bytes > 0,
              "versions share nodes: %zu bytes reachable, %zu live besides "
              "handles", reach, own);
    }

    /* Release order. */
    size_t n = s->nver;
    size_t *perm = malloc((n ? n : 1) * sizeof *perm);
    if (!perm) {
        CHECK(perm != NULL, "out of memory");
        free(s);
        return;
    }
    for (size_t i = 0; i < n; i++)
        perm[i] = order == 2 ? n - 1 - i : i;
    if (order == 0)
        for (size_t i = n; i > 1; i--) {
            size_t j = (size_t)th_below(&s->r, i);
            size_t t = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = t;
        }
    for (size_t i = 0; i < n; i++) {
        champ_free(s->maps[perm[i]]);
        s->maps[perm[i]] = NULL;
        if (i == n / 2 || i == (3 * n) / 4) {
            /* Survivors unchanged; validate one (it walks the pool). */
            size_t bad = 0, validated = 0;
            for (size_t j = i + 1; j < n && bad < 3; j++) {
                bad += !ver_check(s, perm[j], "survivor");
                if (!validated++)
                    CHECK_VALID(s->maps[perm[j]], "survivor");
            }
        }
    }
    champ_pool_stats ps;
    CHECK_ST(champ_pool_stats_get(s->pool, &ps, sizeof ps), CHAMP_OK);
    CHECK(ps.bytes_live == 0 && ps.maps == 0,
          "versions round (kind %d, order %d): pool not drained: %zu bytes, "
          "%zu maps", (int)kind, order, ps.bytes_live, ps.maps);
    if (counted) {
        size_t held = 0;
        for (unsigned k = 0; k < VER_KEYS; k++)
            held += (s->keys[k].held != 0) + (s->vals[k].held != 0);
        CHECK(held == 0 && s->ctx.underflows == 0,
              "versions: %zu objects unbalanced, %lu underflows", held,
              s->ctx.underflows);
    }
    champ_pool_free(s->pool);
    free(perm);
    free(s->maps);
    free(s->snap);
    free(s->count);
    free(s);
    th_set_seed(0);
}

/* The rounds, one registered name per kind and free order (the random
 * order over four seeds for U64 and counted GENERIC keys). */
static const uint64_t ver_seeds[] = {0x7e51, 0xbeef, 0xc0ffee, 0x1234567};

static void test_versions_u64_random_order(void) {
    for (size_t i = 0; i < 4; i++)
        ver_round(CHAMP_KEY_U64, false, ver_seeds[i], 0);
}

static void test_versions_generic_random_order(void) {
    for (size_t i = 0; i < 4; i++)
        ver_round(CHAMP_KEY_GENERIC, true, ver_seeds[i] ^ 1, 0);
}

static void test_versions_bytes_random_order(void) {
    ver_round(CHAMP_KEY_BYTES, false, 0xb17e5, 0);
}

static void test_versions_u64_oldest_first(void) {
    ver_round(CHAMP_KEY_U64, false, 0x01d, 1);
}

static void test_versions_generic_oldest_first(void) {
    ver_round(CHAMP_KEY_GENERIC, true, 0x01d, 1);
}

static void test_versions_u64_newest_first(void) {
    ver_round(CHAMP_KEY_U64, false, 0x4e3, 2);
}

static void test_versions_bytes_newest_first(void) {
    ver_round(CHAMP_KEY_BYTES, false, 0x4e3, 2);
}

const th_test th_tests_versions[] = {
    {"versions.u64.random_order", test_versions_u64_random_order},
    {"versions.generic.random_order", test_versions_generic_random_order},
    {"versions.bytes.random_order", test_versions_bytes_random_order},
    {"versions.u64.oldest_first", test_versions_u64_oldest_first},
    {"versions.generic.oldest_first", test_versions_generic_oldest_first},
    {"versions.u64.newest_first", test_versions_u64_newest_first},
    {"versions.bytes.newest_first", test_versions_bytes_newest_first},
};
const size_t th_tests_versions_count =
    sizeof th_tests_versions / sizeof th_tests_versions[0];

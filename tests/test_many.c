/*
 * test_many.c - batched lookups (champ_get_many_*, champ_contains_many_*)
 * against single lookups, for every kind, maps and sets, batch sizes
 * around the group size, absent keys, misuse.  Each test runs twice: with
 * every map walked in lockstep groups, and with every map looked up one key
 * after the other (the path small maps take), whatever the map's size.
 * many.full_below pins a trie shape (a full node under a partial one) that
 * only very big maps reach by chance.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../src/internal.h"

static void many_u64(void) {
    th_rng r = {0x3a4d};
    for (int set = 0; set < 2; set++) {
        champ_map *m = NULL;
        champ_config c = th_kind_config(CHAMP_KEY_U64, 11, NULL);
        c.set = set != 0;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        if (!m)
            return;
        size_t n = (size_t)th_iters(50000, 2000);
        for (size_t i = 0; i < n; i++)
            champ_set_u64(m, th_next(&r) % (4 * n), set ? NULL : th_tok(i), NULL);
        static const size_t sizes[] = {0, 1, 2, 15, 16, 17, 33, 1000, 5000};
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t b = sizes[si];
            uint64_t *keys = malloc((b + 1) * sizeof *keys);
            void **vals = malloc((b + 1) * sizeof *vals);
            bool *found = malloc(b + 1);
            for (size_t i = 0; i < b; i++)
                keys[i] = th_next(&r) % (4 * n); /* hits and misses */
            size_t got = champ_get_many_u64(m, keys, b, vals, found), want = 0, bad = 0;
            for (size_t i = 0; i < b; i++) {
                void *v = NULL;
                bool f = champ_get_u64(m, keys[i], &v);
                want += f;
                bad += f != found[i] || (f ? v != vals[i] : vals[i] != NULL);
            }
            CHECK(bad == 0 && got == want, "batch of %zu: %zu differ from single lookups, "
                  "%zu found, want %zu", b, bad, got, want);
            bool *f2 = malloc(b + 1);
            CHECK_EQ(champ_contains_many_u64(m, keys, b, f2), want, "contains_many count");
            CHECK(b == 0 || memcmp(f2, found, b) == 0, "contains_many agrees");
            free(f2);
            free(keys);
            free(vals);
            free(found);
        }
        /* misuse finds nothing: found[] false, vals[] NULL (either array
         * may be NULL) */
        bool f[2] = {true, true};
        uint64_t k2[2] = {1, 2};
        void *v2[2] = {th_tok(7), th_tok(8)};
        CHECK_EQ(champ_get_many_u64(NULL, k2, 2, NULL, f), 0, "NULL map");
        CHECK(!f[0] && !f[1], "NULL map: found[] cleared");
        CHECK_EQ(champ_get_many_u64(NULL, k2, 2, v2, NULL), 0, "NULL map, vals only");
        CHECK(!v2[0] && !v2[1], "NULL map: vals[] cleared");
        CHECK_EQ(champ_get_many_u64(m, NULL, 0, NULL, NULL), 0, "empty batch");
        f[0] = f[1] = true;
        v2[0] = v2[1] = th_tok(7);
        CHECK_EQ(champ_get_many_u64(m, NULL, 2, v2, f), 0, "NULL keys with n > 0");
        CHECK(!f[0] && !f[1] && !v2[0] && !v2[1], "NULL keys: found[] and vals[] cleared");
        f[0] = f[1] = true;
        CHECK_EQ(champ_contains_many_u64(m, NULL, 2, f), 0, "contains_many, NULL keys");
        CHECK(!f[0] && !f[1], "contains_many, NULL keys: found[] cleared");
        champ_map *bm = NULL;
        CHECK_ST(champ_new_bytes(&bm), CHAMP_OK);
        f[0] = true;
        v2[0] = th_tok(7);
        CHECK_EQ(champ_get_many_u64(bm, k2, 2, v2, f), 0, "wrong kind");
        CHECK(!f[0] && !v2[0], "wrong kind: found[] and vals[] cleared");
        const void *bp[2] = {"a", "b"};
        size_t bl[2] = {1, 1};
        f[0] = f[1] = true;
        v2[0] = v2[1] = th_tok(7);
        CHECK_EQ(champ_get_many_bytes(bm, NULL, bl, 2, v2, f), 0, "bytes: NULL keys");
        CHECK(!f[0] && !f[1] && !v2[0] && !v2[1], "bytes, NULL keys: cleared");
        f[0] = f[1] = true;
        CHECK_EQ(champ_get_many_bytes(bm, bp, NULL, 2, v2, f), 0, "bytes: NULL lens");
        CHECK(!f[0] && !f[1], "bytes, NULL lens: found[] cleared");
        champ_free(bm);
        champ_free(m);
    }
}

static void many_bytes_generic(void) {
    champ_map *m = NULL;
    champ_config c = th_kind_config(CHAMP_KEY_BYTES, 5, NULL);
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    if (!m)
        return;
    enum { NK = 3000 };
    static char buf[NK][24];
    const void *ptrs[NK];
    size_t lens[NK];
    for (int i = 0; i < NK; i++) {
        snprintf(buf[i], sizeof buf[i], "key-%d", i);
        ptrs[i] = buf[i];
        lens[i] = strlen(buf[i]);
        if (i % 3)
            champ_set_bytes(m, buf[i], lens[i], th_tok((uint64_t)i), NULL);
    }
    void **vals = malloc(NK * sizeof *vals);
    bool *found = malloc(NK);
    size_t got = champ_get_many_bytes(m, ptrs, lens, NK, vals, found), bad = 0;
    for (int i = 0; i < NK; i++)
        bad += found[i] != (i % 3 != 0) || (found[i] && vals[i] != th_tok((uint64_t)i));
    CHECK(bad == 0 && got == NK - (NK + 2) / 3, "bytes batch: %zu wrong, %zu found", bad, got);
    lens[0] = 5;
    ptrs[0] = NULL; /* an invalid key: nothing found */
    CHECK_EQ(champ_get_many_bytes(m, ptrs, lens, NK, NULL, found), 0, "invalid key");
    champ_free(m);

    th_cbctx cc;
    memset(&cc, 0, sizeof cc);
    cc.hash_mode = TH_HASH_MOD64; /* collisions and deep paths */
    champ_config g = th_generic_config(&cc, false, NULL);
    CHECK_ST(champ_new(&g, &m), CHAMP_OK);
    if (!m)
        return;
    static th_obj objs[NK];
    const void *kp[NK];
    for (int i = 0; i < NK; i++) {
        memset(&objs[i], 0, sizeof objs[i]);
        objs[i].id = (uint64_t)i;
        kp[i] = &objs[i];
        if (i % 2)
            champ_set(m, &objs[i], th_tok((uint64_t)i), NULL);
    }
    got = champ_get_many(m, kp, NK, vals, found);
    bad = 0;
    for (int i = 0; i < NK; i++)
        bad += found[i] != (i % 2 != 0) || (found[i] && vals[i] != th_tok((uint64_t)i));
    CHECK(bad == 0 && got == NK / 2, "generic batch (collisions): %zu wrong, %zu found", bad,
          got);
    bool *found2 = malloc(NK);
    if (found2) {
        got = champ_contains_many(m, kp, NK, found2);
        CHECK(got == NK / 2 && memcmp(found, found2, NK) == 0,
              "generic contains_many agrees with get_many (%zu found)", got);
        free(found2);
    }
    CHECK_VALID(m, "after batched lookups");
    champ_free(m);
    free(vals);
    free(found);
}

/* body with the group walk for every map, then the direct loop */
static void both_paths(void (*body)(void)) {
    size_t saved = champ__many_direct;
    champ__many_direct = 0;
    body();
    champ__many_direct = SIZE_MAX;
    body();
    champ__many_direct = saved;
}

static void test_many_u64(void) {
    both_paths(many_u64);
}

static void test_many_bytes_generic(void) {
    both_paths(many_bytes_generic);
}

/* A full node below a node that is not (the staged walk meets it after the
 * cached levels stop): a generic map with pinned hashes, the root holding
 * entries in slots 0 and 2 (so it is not full) and in slot 1 a node whose
 * 32 slots each hold a child of three keys (two would be a pair in the
 * slot, not a child).  Every key and 40 misses (in the
 * full node's children, and in an empty root slot) looked up in one batch,
 * against single lookups; maps with the same shape one and two levels
 * deeper (the full node at level 2 and 3). */
static th_obj full_keys[2 + 96 + 40];

static void many_full_below(void) {
    for (unsigned depth = 1; depth <= 3; depth++) {
        th_cbctx cc;
        memset(&cc, 0, sizeof cc);
        cc.hash_mode = TH_HASH_FIELD;
        champ_config g = th_generic_config(&cc, false, NULL);
        champ_map *m = NULL;
        CHECK_ST(champ_new(&g, &m), CHAMP_OK);
        if (!m)
            return;
        /* the path to the full node: slot 1 at each level above it */
        uint64_t pre = 0;
        for (unsigned l = 0; l < depth; l++)
            pre |= (uint64_t)1 << (5 * l);
        size_t nk = 0;
        memset(full_keys, 0, sizeof full_keys);
        full_keys[nk].id = 1000;
        full_keys[nk++].hash = 0; /* root slot 0: the root is not full */
        full_keys[nk].id = 1001;
        full_keys[nk++].hash = 2; /* and slot 2 */
        for (uint64_t sl = 0; sl < 32; sl++)
            for (uint64_t t = 0; t < 3; t++) {
                full_keys[nk].id = nk + 1;
                full_keys[nk++].hash = pre | sl << (5 * depth) | (t + 1) << (5 * depth + 5);
            }
        size_t present = nk;
        for (size_t i = 0; i < present; i++)
            CHECK_ST(champ_set(m, &full_keys[i], th_tok(i + 1), NULL), CHAMP_OK);
        for (uint64_t sl = 0; sl < 32; sl++) { /* misses under the full node */
            full_keys[nk].id = 5000 + sl;
            full_keys[nk++].hash = pre | sl << (5 * depth) | (uint64_t)4 << (5 * depth + 5);
        }
        for (uint64_t r = 3; r < 11; r++) { /* misses in empty root slots */
            full_keys[nk].id = 6000 + r;
            full_keys[nk++].hash = r;
        }
        const void *kp[sizeof full_keys / sizeof full_keys[0]];
        void *vals[sizeof full_keys / sizeof full_keys[0]];
        bool found[sizeof full_keys / sizeof full_keys[0]];
        for (size_t i = 0; i < nk; i++)
            kp[i] = &full_keys[i];
        size_t got = champ_get_many(m, kp, nk, vals, found), bad = 0;
        for (size_t i = 0; i < nk; i++) {
            void *v = NULL;
            bool f = champ_get(m, &full_keys[i], &v);
            bad += f != (i < present) || found[i] != f || (f && vals[i] != v);
        }
        CHECK(bad == 0 && got == present, "depth %u: a full node below one that is not: "
              "%zu wrong, %zu found of %zu", depth, bad, got, present);
        CHECK_VALID(m, "a full node below a partial root");
        champ_free(m);
    }
}

static void test_many_full_below(void) {
    both_paths(many_full_below);
}

const th_test th_tests_many[] = {
    {"many.u64", test_many_u64},
    {"many.bytes_generic", test_many_bytes_generic},
    {"many.full_below", test_many_full_below},
};
const size_t th_tests_many_count = sizeof th_tests_many / sizeof th_tests_many[0];

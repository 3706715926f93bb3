/*
 * test_api.c - the API contracts, one test per operation and key kind: U64,
 * NULL values, BYTES (and key lifetimes), GENERIC, reference callbacks
 * balanced over copies, p-forms and updates, copy/clear, shared-node
 * replacement, iteration, re-entrant callbacks (CHAMP_EBUSY), the
 * number of hash calls an insert makes, the library version, add on
 * maps (not sets), and seeds (fresh, fixed, shared, given to bytes_hash).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ------------------------------------------------------------------ */
/* U64 basics                                                          */
/* ------------------------------------------------------------------ */

static void test_u64_basics(void) {
    champ_map *m = unit_new_kind(CHAMP_KEY_U64, 42);
    if (!m)
        return;
    CHECK(champ_kind(m) == CHAMP_KEY_U64, "kind");
    CHECK(champ_seed(m) == 42, "fixed seed kept: %llu",
          (unsigned long long)champ_seed(m));
    CHECK(champ_pool_of(m) != NULL, "map has a pool");
    CHECK_EQ(champ_size(m), 0, "empty size");

    void *v = th_tok(7);
    champ_prior pr = th_prior_junk();
    CHECK(!champ_get_u64(m, 5, &v), "get of an absent key");
    CHECK(v == th_tok(7), "get of an absent key leaves *val_out untouched");
    CHECK(!champ_contains_u64(m, 5), "contains of an absent key");

    CHECK_ST(champ_set_u64(m, 5, th_tok(50), &pr), CHAMP_OK);
    CHECK(!pr.found && pr.val == NULL && pr.key == NULL,
          "insert: prior not found, val and key NULL");
    CHECK(champ_get_u64(m, 5, &v), "get of a present key");
    CHECK(v == th_tok(50), "get finds the value");
    CHECK(champ_get_u64(m, 5, NULL), "get with val_out NULL");
    CHECK(champ_contains_u64(m, 5), "contains of a present key");
    CHECK_EQ(champ_size(m), 1, "size after insert");

    pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, 5, th_tok(51), &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(50) && pr.key == NULL,
          "replace hands back the old value");
    CHECK_ST(champ_set_u64(m, 5, th_tok(52), NULL), CHAMP_OK);
    CHECK(champ_get_u64(m, 5, &v), "get after replace");
    CHECK(v == th_tok(52), "latest value");
    CHECK_EQ(champ_size(m), 1, "replace keeps size");

    /* Extreme keys. */
    pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, 0, th_tok(1), &pr), CHAMP_OK);
    CHECK(!pr.found, "key 0 inserted");
    pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, UINT64_MAX, th_tok(2), &pr), CHAMP_OK);
    CHECK(!pr.found, "key UINT64_MAX inserted");
    CHECK(champ_get_u64(m, 0, &v), "get key 0");
    CHECK(v == th_tok(1), "key 0");
    CHECK(champ_get_u64(m, UINT64_MAX, &v), "get key UINT64_MAX");
    CHECK(v == th_tok(2), "key UINT64_MAX");

    /* remove hands back the value. */
    pr = th_prior_junk();
    CHECK_ST(champ_remove_u64(m, 5, &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(52) && pr.key == NULL,
          "remove hands back the value");
    pr = th_prior_junk();
    CHECK_ST(champ_remove_u64(m, 5, &pr), CHAMP_OK);
    CHECK(!pr.found && pr.val == NULL && pr.key == NULL,
          "remove of an absent key: prior not found, val and key NULL");
    pr = th_prior_junk();
    CHECK_ST(champ_remove_u64(m, 0, &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(1), "remove of key 0");
    CHECK_ST(champ_remove_u64(m, 0, NULL), CHAMP_OK);
    CHECK_EQ(champ_size(m), 1, "size after removes");
    CHECK_VALID(m, "u64 basics");

    /* Many keys, all found, then all removed. */
    long n = th_iters(20000, 500);
    for (long i = 0; i < n; i++) {
        champ_status st = champ_set_u64(m, (uint64_t)i * 3 + 1,
                                        th_tok((uint64_t)i), NULL);
        if (st != CHAMP_OK) {
            CHECK(st == CHAMP_OK, "bulk insert %ld: %s", i, th_status_name(st));
            break;
        }
    }
    CHECK_EQ(champ_size(m), (size_t)n + 1, "bulk size");
    CHECK_VALID(m, "u64 bulk");
    long bad = 0;
    for (long i = 0; i < n; i++) {
        void *got = NULL;
        if (!champ_get_u64(m, (uint64_t)i * 3 + 1, &got) ||
            got != th_tok((uint64_t)i))
            bad++;
        if (champ_contains_u64(m, (uint64_t)i * 3 + 2))
            bad++;
    }
    CHECK_EQ(bad, 0, "bulk lookups wrong");
    for (long i = n - 1; i >= 0; i--) {
        champ_prior bp = th_prior_junk();
        if (champ_remove_u64(m, (uint64_t)i * 3 + 1, &bp) != CHAMP_OK ||
            !bp.found || bp.val != th_tok((uint64_t)i))
            bad++;
    }
    CHECK_EQ(bad, 0, "bulk removes wrong");
    CHECK_ST(champ_remove_u64(m, UINT64_MAX, NULL), CHAMP_OK);
    unit_shape(m, 0, 0, 0, 0, 0, "u64 back to empty");
    champ_free(m);

    /* The shorthand constructor. */
    m = NULL;
    CHECK_ST(champ_new_u64(&m), CHAMP_OK);
    if (m) {
        CHECK(champ_kind(m) == CHAMP_KEY_U64, "champ_new_u64 kind");
        CHECK_ST(champ_set_u64(m, 1, NULL, NULL), CHAMP_OK);
        CHECK(champ_contains_u64(m, 1), "champ_new_u64 map works");
        champ_free(m);
    }
}

/* ------------------------------------------------------------------ */
/* NULL values                                                         */
/* ------------------------------------------------------------------ */

static void test_null_values(void) {
    champ_map *m = unit_new_kind(CHAMP_KEY_U64, 1);
    if (!m)
        return;
    void *v = th_tok(1);
    champ_prior pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, 10, NULL, &pr), CHAMP_OK);
    CHECK(!pr.found && pr.val == NULL, "insert: prior not found");
    CHECK(champ_get_u64(m, 10, &v), "a NULL value is found");
    CHECK(v == NULL, "stored NULL is found as NULL");
    v = th_tok(1);
    CHECK(!champ_get_u64(m, 11, &v), "absent key not found");
    CHECK(v == th_tok(1), "absent key is not reported as a NULL value");
    CHECK(champ_contains_u64(m, 10), "contains a NULL value");
    pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, 10, th_tok(5), &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == NULL,
          "replace hands back the old NULL value (found)");
    pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, 10, NULL, &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(5), "replace by NULL");
    pr = th_prior_junk();
    CHECK_ST(champ_remove_u64(m, 10, &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == NULL, "remove hands back NULL (found)");
    CHECK(!champ_contains_u64(m, 10), "removed");

    /* NULL values through copies, p-forms and iteration. */
    champ_map *p = NULL;
    CHECK_ST(champ_pset_u64(m, 20, NULL, &p), CHAMP_OK);
    if (p) {
        champ_iter it;
        champ_key k;
        v = th_tok(1);
        CHECK_ST(champ_iter_init(&it, p), CHAMP_OK);
        CHECK(champ_iter_next(&it, &k, &v), "iteration has the entry");
        CHECK(k.u64 == 20 && v == NULL, "iteration reports the NULL value");
        CHECK(!champ_iter_next(&it, &k, &v), "one entry only");
        CHECK_ST(champ_iter_status(&it), CHAMP_OK);
        champ_free(p);
    }
    CHECK(!champ_contains_u64(m, 20), "pset left the source alone");
    champ_free(m);
}

/* ------------------------------------------------------------------ */
/* BYTES                                                               */
/* ------------------------------------------------------------------ */

typedef struct unit_bkey {
    const char *p;
    size_t len;
} unit_bkey;

static void test_bytes_basics(void) {
    champ_map *m = unit_new_kind(CHAMP_KEY_BYTES, 7);
    if (!m)
        return;
    CHECK(champ_kind(m) == CHAMP_KEY_BYTES, "kind");
    static char big[1000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7 + 1);
    static char all[256];
    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (char)i;
    const unit_bkey keys[] = {
        {"", 0},     {"a", 1},     {"a\0", 2},  {"a\0b", 3}, {"a\0c", 3},
        {"\0", 1},   {"\0\0", 2},  {"ab", 2},   {"ba", 2},   {big, 1000},
        {big, 999},  {all, 256},   {all + 1, 255},
    };
    size_t nk = sizeof keys / sizeof keys[0];
    size_t total_len = 0;
    for (size_t i = 0; i < nk; i++) {
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_set_bytes(m, keys[i].p, keys[i].len, th_tok(i), &pr),
                 CHAMP_OK);
        CHECK(!pr.found && pr.val == NULL, "bytes insert %zu: not found", i);
        total_len += keys[i].len;
    }
    CHECK_EQ(champ_size(m), nk, "distinct byte keys are distinct");
    for (size_t i = 0; i < nk; i++) {
        void *v = NULL;
        CHECK(champ_get_bytes(m, keys[i].p, keys[i].len, &v),
              "byte key %zu found", i);
        CHECK(v == th_tok(i), "byte key %zu value", i);
        CHECK(champ_contains_bytes(m, keys[i].p, keys[i].len),
              "byte key %zu contained", i);
    }
    CHECK(!champ_contains_bytes(m, "b", 1), "absent \"b\"");
    CHECK(!champ_contains_bytes(m, "a\0d", 3), "absent \"a\\0d\"");
    CHECK(!champ_contains_bytes(m, "\0\0\0", 3), "absent three NULs");
    CHECK(!champ_contains_bytes(m, big, 998), "absent prefix of big");

    /* The empty key: (NULL, 0), ("", 0) and "" are one key. */
    void *v = NULL;
    CHECK(champ_get_bytes(m, NULL, 0, &v), "(NULL,0) found");
    CHECK(v == th_tok(0), "(NULL,0) is the empty key");
    CHECK(champ_get_str(m, "", &v), "\"\" found");
    CHECK(v == th_tok(0), "\"\" is the empty key");
    CHECK(champ_contains_str(m, ""), "contains_str(\"\")");
    champ_prior pr = th_prior_junk();
    CHECK_ST(champ_set_bytes(m, NULL, 0, th_tok(100), &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(0), "(NULL,0) replaces the empty key");
    CHECK(champ_get_bytes(m, "", 0, &v), "(\"\",0) found");
    CHECK(v == th_tok(100), "empty key replaced via (NULL,0)");

    /* _str forms are the bytes forms without the NUL. */
    CHECK(champ_get_str(m, "a", &v), "get_str(\"a\") found");
    CHECK(v == th_tok(1), "get_str(\"a\") is bytes \"a\"/1");
    CHECK(champ_get_str(m, "ab", &v), "get_str(\"ab\") found");
    CHECK(v == th_tok(7), "get_str(\"ab\")");
    CHECK(champ_contains_str(m, "ab"), "contains_str(\"ab\")");
    CHECK(!champ_contains_str(m, "abc"), "contains_str(\"abc\") absent");
    pr = th_prior_junk();
    CHECK_ST(champ_set_str(m, "hello", th_tok(200), &pr), CHAMP_OK);
    CHECK(!pr.found && pr.val == NULL, "set_str insert");
    CHECK(champ_get_bytes(m, "hello", 5, &v), "set_str key found by bytes");
    CHECK(v == th_tok(200), "set_str is visible to get_bytes");
    CHECK(!champ_contains_bytes(m, "hello", 6), "the NUL is not in the key");
    pr = th_prior_junk();
    CHECK_ST(champ_set_str(m, "hello", th_tok(201), &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(200), "set_str replace");
    pr = th_prior_junk();
    CHECK_ST(champ_remove_str(m, "hello", &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(201), "remove_str hands back the value");
    pr = th_prior_junk();
    CHECK_ST(champ_remove_str(m, "hello", &pr), CHAMP_OK);
    CHECK(!pr.found && pr.val == NULL, "remove_str of an absent key");
    CHECK(!champ_contains_str(m, "hello"), "removed");

    /* The map copies the key bytes: the caller may reuse its buffer. */
    char buf[16];
    memcpy(buf, "mutable", 8);
    pr = th_prior_junk();
    CHECK_ST(champ_set_bytes(m, buf, 7, th_tok(300), &pr), CHAMP_OK);
    CHECK(!pr.found, "\"mutable\" inserted");
    memcpy(buf, "MUTABLE", 8);
    CHECK(champ_get_bytes(m, "mutable", 7, &v), "copied key found");
    CHECK(v == th_tok(300), "key copied at insert");
    CHECK(!champ_contains_bytes(m, buf, 7), "the buffer's new bytes absent");
    pr = th_prior_junk();
    CHECK_ST(champ_remove_bytes(m, "mutable", 7, &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(300), "remove_bytes hands back");

    champ_stats s = th_stats(m);
    CHECK(s.key_bytes >= total_len, "key_bytes %zu >= sum of lengths %zu",
          s.key_bytes, total_len);
    CHECK_VALID(m, "bytes");

    /* Iteration reports the map's NUL-terminated copies. */
    champ_iter it;
    champ_key k;
    size_t seen = 0, bad = 0;
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    while (champ_iter_next(&it, &k, &v)) {
        seen++;
        size_t idx = (size_t)(((uintptr_t)v - 16) / 16);
        if (v == th_tok(100))
            idx = 0;
        if (idx >= nk || k.len != keys[idx].len ||
            (k.len && memcmp(k.ptr, keys[idx].p, k.len) != 0) ||
            k.ptr == NULL || ((const char *)k.ptr)[k.len] != '\0')
            bad++;
    }
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);
    CHECK_EQ(seen, nk, "bytes iteration count");
    CHECK_EQ(bad, 0, "bytes iteration: wrong key copies");

    /* p-forms. */
    champ_map *p = NULL, *q = NULL;
    CHECK_ST(champ_pset_bytes(m, "new", 3, th_tok(400), &p), CHAMP_OK);
    CHECK_ST(champ_premove_bytes(m, "a\0b", 3, &q), CHAMP_OK);
    CHECK(!champ_contains_bytes(m, "new", 3), "pset left the source alone");
    CHECK(champ_contains_bytes(m, "a\0b", 3), "premove left the source alone");
    if (p && q) {
        CHECK(champ_contains_bytes(p, "new", 3), "pset_bytes inserted");
        CHECK(!champ_contains_bytes(q, "a\0b", 3), "premove_bytes removed");
        CHECK(champ_contains_bytes(q, "a\0c", 3), "premove_bytes kept others");
        CHECK_EQ(champ_size(p), nk + 1, "pset_bytes size");
        CHECK_EQ(champ_size(q), nk - 1, "premove_bytes size");
        CHECK_VALID(q, "bytes p-forms");
    }
    champ_free(p);
    champ_free(q);

    for (size_t i = 0; i < nk; i++) {
        pr = th_prior_junk();
        CHECK_ST(champ_remove_bytes(m, keys[i].p, keys[i].len, &pr), CHAMP_OK);
        CHECK(pr.found && pr.val == (i ? th_tok(i) : th_tok(100)),
              "byte key %zu removed", i);
    }
    s = th_stats(m);
    CHECK_EQ(s.key_bytes, 0, "no key bytes when empty");
    unit_shape(m, 0, 0, 0, 0, 0, "bytes back to empty");
    champ_free(m);

    m = NULL;
    CHECK_ST(champ_new_bytes(&m), CHAMP_OK);
    if (m) {
        CHECK(champ_kind(m) == CHAMP_KEY_BYTES, "champ_new_bytes kind");
        CHECK_ST(champ_set_str(m, "x", NULL, NULL), CHAMP_OK);
        CHECK(champ_get_str(m, "x", NULL), "champ_new_bytes map works");
        champ_free(m);
    }
}

/* Key copies live as long as some map holds the entry; big keys work. */
static void test_bytes_key_lifetime(void) {
    champ_map *m = unit_new_kind(CHAMP_KEY_BYTES, 8);
    if (!m)
        return;
    static const size_t big_sizes[] = {4096, 65536, 1u << 20, 3u << 20};
    for (size_t i = 0; i < 4; i++) {
        unsigned char *k = malloc(big_sizes[i]);
        if (!k)
            continue;
        memset(k, (int)('a' + i), big_sizes[i]);
        k[big_sizes[i] / 2] = 0;
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_set_bytes(m, k, big_sizes[i], th_tok(i), &pr),
                 CHAMP_OK);
        CHECK(!pr.found, "big key %zu inserted", big_sizes[i]);
        k[0] ^= 1;
        CHECK(!champ_contains_bytes(m, k, big_sizes[i]),
              "big key %zu with a changed byte", big_sizes[i]);
        k[0] ^= 1;
        void *v = NULL;
        CHECK(champ_get_bytes(m, k, big_sizes[i], &v), "big key %zu found",
              big_sizes[i]);
        CHECK(v == th_tok(i), "big key %zu", big_sizes[i]);
        CHECK(!champ_contains_bytes(m, k, big_sizes[i] - 1),
              "big key %zu minus a byte", big_sizes[i]);
        free(k);
    }
    for (int i = 0; i < 50; i++) {
        char kb[32];
        snprintf(kb, sizeof kb, "short key %d", i);
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_set_str(m, kb, th_tok((uint64_t)i + 100), &pr),
                 CHAMP_OK);
        CHECK(!pr.found, "short key %d inserted", i);
    }
    CHECK_VALID(m, "big keys");
    champ_stats st = th_stats(m);
    CHECK(st.key_bytes >= (4096 + 65536 + (1u << 20) + (3u << 20)),
          "key_bytes counts big keys: %zu", st.key_bytes);

    /* Key pointers reported by iterating m stay valid after m is freed,
     * while a copy still holds the entries. */
    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    if (c) {
        const char *ptrs[60];
        size_t lens[60], n = 0;
        champ_iter it;
        champ_key k;
        champ_iter_init(&it, m);
        while (n < 60 && champ_iter_next(&it, &k, NULL)) {
            ptrs[n] = k.ptr;
            lens[n++] = k.len;
        }
        CHECK_EQ(n, 54, "source iterated");
        champ_free(m);
        m = NULL;
        /* The copy (the only holder now) still finds each key through
         * its own reported bytes. */
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            if (!champ_contains_bytes(c, ptrs[i], lens[i]) ||
                ptrs[i][lens[i]] != '\0')
                bad++;
        CHECK_EQ(bad, 0, "key copies valid after the source map was freed");
        CHECK_VALID(c, "copy of big keys");
        champ_free(c);
    }
    champ_free(m);
}

/* ------------------------------------------------------------------ */
/* GENERIC                                                             */
/* ------------------------------------------------------------------ */

static void test_generic_basics(void) {
    th_cbctx ctx;
    th_obj *o = unit_objs_reset(16);
    champ_map *m = unit_new_generic(&ctx, true);
    if (!m)
        return;
    ctx.hash_mode = TH_HASH_GOOD;
    CHECK(champ_kind(m) == CHAMP_KEY_GENERIC, "kind");
    th_obj *k1 = &o[0], *v1 = &o[1], *v2 = &o[2];
    th_obj *probe = &o[3], *k1twin = &o[4], *v3 = &o[5];
    probe->id = k1->id;  /* equal to k1, another pointer */
    k1twin->id = k1->id;

    champ_prior pr = th_prior_junk();
    CHECK_ST(champ_set(m, k1, v1, &pr), CHAMP_OK);
    th_obj_hand_in(k1);
    th_obj_hand_in(v1);
    CHECK(!pr.found && pr.val == NULL && pr.key == NULL,
          "generic insert: not found, val and key NULL");
    void *v = NULL;
    CHECK(champ_get(m, probe, &v), "found through an equal key");
    CHECK(v == v1, "value found through an equal key");
    CHECK(champ_contains(m, probe), "contains through an equal key");
    CHECK(ctx.hash_calls > 0 && ctx.equal_calls > 0, "callbacks used");

    /* Replace with an equal key: the map keeps its key, we keep ours. */
    pr = th_prior_junk();
    CHECK_ST(champ_set(m, k1twin, v2, &pr), CHAMP_OK);
    th_obj_hand_in(v2);
    CHECK(pr.found && pr.val == v1, "replace hands back v1");
    CHECK(pr.key == NULL, "set leaves prior->key NULL");
    th_obj_hand_back(pr.val);
    CHECK(v1->releases == 0, "a handed-back value is not released");
    CHECK(k1twin->retains == 0 && k1twin->releases == 0 && k1twin->held == 0,
          "replace must not take the caller's key");
    champ_iter it;
    champ_key k;
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    CHECK(champ_iter_next(&it, &k, &v), "iterate the one entry");
    CHECK(k.ptr == k1 && k.len == 0 && v == v2, "map kept its original key");

    /* Replace without a prior: the map releases v2. */
    long rel = v2->releases;
    CHECK_ST(champ_set(m, probe, v3, NULL), CHAMP_OK);
    th_obj_hand_in(v3);
    CHECK(v2->releases == rel + 1, "old value released when not handed back");
    CHECK_EQ(champ_size(m), 1, "replace through the probe: still one entry");

    /* remove hands back the stored key and value (no release called). */
    long kr = k1->releases, vr = v3->releases;
    pr = th_prior_junk();
    CHECK_ST(champ_remove(m, probe, &pr), CHAMP_OK);
    CHECK(pr.found, "remove found the key");
    CHECK(pr.key == k1, "remove hands back the stored key, not the probe");
    CHECK(pr.val == v3, "remove hands back the value");
    CHECK(k1->releases == kr && v3->releases == vr,
          "handed-back key and value are not released");
    th_obj_hand_back(pr.key);
    th_obj_hand_back(pr.val);
    pr = th_prior_junk();
    CHECK_ST(champ_remove(m, probe, &pr), CHAMP_OK);
    CHECK(!pr.found && pr.key == NULL && pr.val == NULL,
          "remove of an absent key: not found, key and val NULL");

    /* remove with a NULL prior: the map releases both. */
    pr = th_prior_junk();
    CHECK_ST(champ_set(m, k1, v1, &pr), CHAMP_OK);
    CHECK(!pr.found, "re-insert");
    th_obj_hand_in(k1);
    th_obj_hand_in(v1);
    kr = k1->releases;
    vr = v1->releases;
    CHECK_ST(champ_remove(m, probe, NULL), CHAMP_OK);
    CHECK(k1->releases == kr + 1 && v1->releases == vr + 1,
          "remove with a NULL prior releases key and value");
    CHECK_EQ(champ_size(m), 0, "empty");
    champ_free(m);
    CHECK_EQ(ctx.underflows, 0, "release of an unheld reference");
    for (int i = 0; i < 6; i++)
        CHECK(o[i].held == 0, "obj %d held %ld after free", i, o[i].held);
}

/* ------------------------------------------------------------------ */
/* Reference callbacks: balance over copies, p-forms and updates       */
/* ------------------------------------------------------------------ */

static void test_release_balance(void) {
    enum { K = 120 };
    th_cbctx ctx;
    th_obj *o = unit_objs_reset(3 * K);
    th_obj *keys = o, *vals = o + K, *probes = o + 2 * K;
    for (int i = 0; i < K; i++)
        probes[i].id = keys[i].id;
    champ_map *m = unit_new_generic(&ctx, true);
    if (!m)
        return;
    ctx.hash_mode = TH_HASH_MOD64; /* collisions too */
    th_rng r = {0xba1a};
    th_set_seed(r.s);

    for (int i = 0; i < K / 2; i++) {
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_set(m, &keys[i], &vals[i], &pr), CHAMP_OK);
        CHECK(!pr.found, "key %d inserted", i);
        th_obj_hand_in(&keys[i]);
        th_obj_hand_in(&vals[i]);
    }
    champ_map *c1 = NULL, *p1 = NULL, *p2 = NULL, *p3 = NULL;
    CHECK_ST(champ_copy(m, &c1), CHAMP_OK);
    CHECK_ST(champ_pset(m, &keys[K / 2], &vals[K / 2], &p1), CHAMP_OK);
    th_obj_hand_in(&keys[K / 2]);
    th_obj_hand_in(&vals[K / 2]);
    CHECK_EQ(champ_size(p1), K / 2 + 1, "pset of a new key inserts");
    CHECK_ST(champ_pset(m, &probes[3], &vals[K / 2 + 1], &p2), CHAMP_OK);
    th_obj_hand_in(&vals[K / 2 + 1]);
    CHECK_EQ(champ_size(p2), K / 2, "pset through a probe replaces");
    CHECK(probes[3].held == 0, "pset replacing must not take the probe");
    CHECK_ST(champ_premove(m, &probes[5], &p3), CHAMP_OK);
    CHECK_EQ(champ_size(p3), K / 2 - 1, "premove through a probe removes");
    CHECK_EQ(champ_size(m), K / 2, "p-forms left m alone");

    /* In-place updates on m, whose nodes are shared now. */
    for (int step = 0; step < 400; step++) {
        int i = (int)th_below(&r, K / 2 + 10);
        th_obj *val = &vals[th_below(&r, K)];
        bool had = champ_contains(m, &keys[i]);
        size_t size0 = champ_size(m);
        switch (th_below(&r, 4)) {
        case 0: {
            champ_prior pr = th_prior_junk();
            champ_status st = champ_set(m, &probes[i], val, &pr);
            CHECK_ST(st, CHAMP_OK);
            CHECK(pr.found == had, "set: found %d, key was there: %d",
                  (int)pr.found, (int)had);
            CHECK(pr.key == NULL, "set: prior->key NULL");
            th_obj_hand_in(val);
            if (!pr.found)
                th_obj_hand_in(&probes[i]);
            else
                th_obj_hand_back(pr.val);
            break;
        }
        case 1: {
            /* No prior: the outcome shows in the size. */
            champ_status st = champ_set(m, &keys[i], val, NULL);
            CHECK_ST(st, CHAMP_OK);
            CHECK_EQ(champ_size(m), size0 + !had, "set without a prior");
            th_obj_hand_in(val);
            if (!had)
                th_obj_hand_in(&keys[i]);
            break;
        }
        case 2: {
            champ_prior pr = th_prior_junk();
            CHECK_ST(champ_remove(m, &probes[i], &pr), CHAMP_OK);
            CHECK(pr.found == had, "remove: found %d, key was there: %d",
                  (int)pr.found, (int)had);
            if (pr.found) {
                CHECK(pr.key == &keys[i] || pr.key == &probes[i],
                      "remove handed back a foreign key");
                th_obj_hand_back(pr.key);
                th_obj_hand_back(pr.val);
            } else {
                CHECK(pr.key == NULL && pr.val == NULL,
                      "remove of an absent key: key and val NULL");
            }
            break;
        }
        default:
            CHECK_ST(champ_remove(m, &keys[i], NULL), CHAMP_OK);
            CHECK_EQ(champ_size(m), size0 - had, "remove without a prior");
            break;
        }
    }
    CHECK_VALID(m, "balance: m after updates");
    CHECK_VALID(c1, "balance: c1 untouched");
    CHECK_EQ(champ_size(c1), K / 2, "copy kept its size");
    CHECK_EQ(ctx.underflows, 0, "underflow during updates");

    /* clear a shared map, then free in an odd order. */
    CHECK_ST(champ_clear(p1), CHAMP_OK);
    CHECK_EQ(champ_size(p1), 0, "cleared");
    CHECK_VALID(p2, "balance: p2");
    champ_free(m);
    CHECK_VALID(c1, "balance: c1 after freeing m");
    champ_free(p2);
    champ_free(c1);
    champ_free(p1);
    champ_free(p3);

    CHECK_EQ(ctx.underflows, 0, "release of an unheld reference");
    long unbalanced = 0, off_by = 0;
    for (int i = 0; i < 3 * K; i++) {
        if (o[i].held != 0)
            unbalanced++;
        if (o[i].handed_back == 0 &&
            o[i].releases != o[i].retains + o[i].handed_in)
            off_by++;
    }
    CHECK_EQ(unbalanced, 0, "objects still held after every map was freed");
    CHECK_EQ(off_by, 0,
             "objects not released exactly once more per hand-in than retained");
    CHECK(ctx.retain_calls > 0, "copies of shared nodes retained entries");
    th_set_seed(0);

    /* Value callbacks on a U64 map: the same balance. */
    th_obj *vs = unit_objs_reset(64);
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 3, NULL);
    memset(&ctx, 0, sizeof ctx);
    cfg.val_retain = th_obj_retain;
    cfg.val_release = th_obj_release;
    cfg.ctx = &ctx;
    champ_map *u = NULL, *uc = NULL;
    CHECK_ST(champ_new(&cfg, &u), CHAMP_OK);
    if (!u)
        return;
    for (uint64_t i = 0; i < 64; i++) {
        CHECK_ST(champ_set_u64(u, i, &vs[i], NULL), CHAMP_OK);
        th_obj_hand_in(&vs[i]);
    }
    CHECK_EQ(champ_size(u), 64, "u64 inserts");
    CHECK_ST(champ_copy(u, &uc), CHAMP_OK);
    for (uint64_t i = 0; i < 64; i += 2) {
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_set_u64(u, i, &vs[(i + 1) % 64], &pr), CHAMP_OK);
        th_obj_hand_in(&vs[(i + 1) % 64]);
        CHECK(pr.found && pr.val == &vs[i], "u64 old value");
        th_obj_hand_back(pr.val);
    }
    for (uint64_t i = 0; i < 64; i += 3) {
        CHECK(champ_contains_u64(uc, i), "u64 copy has %llu",
              (unsigned long long)i);
        CHECK_ST(champ_remove_u64(uc, i, NULL), CHAMP_OK);
        CHECK(!champ_contains_u64(uc, i), "u64 copy removed %llu",
              (unsigned long long)i);
    }
    champ_free(u);
    champ_free(uc);
    unbalanced = 0;
    for (int i = 0; i < 64; i++)
        unbalanced += vs[i].held != 0;
    CHECK_EQ(unbalanced, 0, "u64 values still held after free");
    CHECK_EQ(ctx.underflows, 0, "u64 value release underflow");
}

/* ------------------------------------------------------------------ */
/* Copy, clear, p-forms                                                */
/* ------------------------------------------------------------------ */

static void test_copy_clear_pforms(void) {
    champ_map *m = unit_new_kind(CHAMP_KEY_U64, 9);
    if (!m)
        return;
    for (uint64_t i = 0; i < 300; i++)
        CHECK_ST(champ_set_u64(m, i, th_tok(i), NULL), CHAMP_OK);
    champ_stats s0 = th_stats(m);
    CHECK_EQ(s0.nodes_shared, 0, "fresh map shares nothing");

    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    if (!c) {
        champ_free(m);
        return;
    }
    CHECK(champ_pool_of(c) == champ_pool_of(m), "copy shares the pool");
    CHECK(champ_seed(c) == champ_seed(m), "copy keeps the seed");
    CHECK(th_same_dump(m, c), "a copy dumps like its source");
    champ_stats sc = th_stats(c);
    CHECK(sc.nodes_shared >= 1, "a copy shares nodes (%zu)", sc.nodes_shared);
    champ_pool_stats ps;
    CHECK_ST(champ_pool_stats_get(champ_pool_of(m), &ps, sizeof ps), CHAMP_OK);
    CHECK_EQ(ps.maps, 2, "pool counts both maps");

    /* Independence both ways. */
    champ_prior pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, 1000, th_tok(1000), &pr), CHAMP_OK);
    CHECK(!pr.found, "1000 inserted");
    pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, 5, th_tok(55), &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(5), "5 replaced in a shared node");
    pr = th_prior_junk();
    CHECK_ST(champ_remove_u64(c, 7, &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(7), "7 removed from the copy");
    CHECK(!champ_contains_u64(c, 1000), "copy unaffected by m's insert");
    CHECK(champ_contains_u64(m, 7), "m unaffected by the copy's remove");
    void *v = NULL;
    CHECK(champ_get_u64(c, 5, &v), "copy has 5");
    CHECK(v == th_tok(5), "copy keeps the old value");
    CHECK(champ_get_u64(m, 5, &v), "m has 5");
    CHECK(v == th_tok(55), "original has the new value");
    CHECK_EQ(champ_size(m), 301, "m size");
    CHECK_EQ(champ_size(c), 299, "c size");
    CHECK_VALID(m, "copy: m");
    CHECK_VALID(c, "copy: c");

    /* pset / premove leave m untouched. */
    champ_status st;
    char *before = th_capture(m, false, &st);
    champ_map *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL;
    CHECK_ST(champ_pset_u64(m, 2000, th_tok(2000), &p1), CHAMP_OK);
    CHECK_ST(champ_pset_u64(m, 10, th_tok(11), &p2), CHAMP_OK);
    CHECK_ST(champ_premove_u64(m, 20, &p3), CHAMP_OK);
    CHECK_ST(champ_premove_u64(m, 99999, &p4), CHAMP_OK);
    CHECK_EQ(champ_size(m), 301, "source size after p-forms");
    CHECK(!champ_contains_u64(m, 2000), "pset did not insert into the source");
    CHECK(champ_get_u64(m, 10, &v), "source has 10");
    CHECK(v == th_tok(10), "source value after pset");
    CHECK(champ_contains_u64(m, 20), "premove did not remove from the source");
    if (p1 && p2 && p3 && p4) {
        CHECK_EQ(champ_size(p1), 302, "pset insert size");
        CHECK(champ_contains_u64(p1, 2000), "pset inserted");
        CHECK_EQ(champ_size(p2), 301, "pset replace size");
        CHECK(champ_get_u64(p2, 10, &v), "pset result has 10");
        CHECK(v == th_tok(11), "pset replaced value");
        CHECK_EQ(champ_size(p3), 300, "premove size");
        CHECK(!champ_contains_u64(p3, 20), "premove removed");
        CHECK_EQ(champ_size(p4), 301, "premove of an absent key: same size");
        CHECK(th_same_dump(m, p4), "premove of an absent key is a copy");
        CHECK(champ_pool_of(p1) == champ_pool_of(m), "p-form result pool");
        CHECK_VALID(p1, "p1");
        CHECK_VALID(p3, "p3");
    }
    champ_free(p1);
    champ_free(p2);
    champ_free(p3);
    champ_free(p4);
    /* With the derived maps gone (the dump shows reference counts), the
     * source dumps exactly as before. */
    char *after = th_capture(m, false, &st);
    CHECK(before && after && strcmp(before, after) == 0,
          "p-forms left the source's shape untouched");
    free(before);
    free(after);

    /* clear: empty and usable; the copy is unaffected. */
    CHECK_ST(champ_clear(m), CHAMP_OK);
    unit_shape(m, 0, 0, 0, 0, 0, "cleared");
    CHECK(!champ_contains_u64(m, 1), "cleared map has no 1");
    CHECK_EQ(champ_size(c), 299, "copy survives clear of its source");
    CHECK(champ_get_u64(c, 1, &v), "copy still has 1");
    CHECK(v == th_tok(1), "copy values survive clear");
    pr = th_prior_junk();
    CHECK_ST(champ_set_u64(m, 1, th_tok(77), &pr), CHAMP_OK);
    CHECK(!pr.found, "insert into the cleared map");
    CHECK_ST(champ_clear(m), CHAMP_OK);
    CHECK_ST(champ_clear(m), CHAMP_OK);
    CHECK_VALID(c, "copy after clears");

    /* Free the source first; the copy lives on and stops sharing. */
    champ_free(m);
    CHECK_VALID(c, "copy after its source was freed");
    sc = th_stats(c);
    CHECK_EQ(sc.nodes_shared, 0, "nothing shared once the source is gone");

    /* Copies of empty maps; a pset chain from empty. */
    champ_map *e = NULL, *ec = NULL;
    CHECK_ST(champ_copy(c, &e), CHAMP_OK);
    CHECK_ST(champ_clear(e), CHAMP_OK);
    CHECK_ST(champ_copy(e, &ec), CHAMP_OK);
    if (ec) {
        CHECK_EQ(champ_size(ec), 0, "copy of empty");
        champ_map *cur = ec;
        for (uint64_t i = 0; i < 50; i++) {
            champ_map *nx = NULL;
            CHECK_ST(champ_pset_u64(cur, i, th_tok(i), &nx), CHAMP_OK);
            CHECK_EQ(champ_size(cur), i, "chain source kept");
            champ_free(cur);
            cur = nx;
            if (!cur)
                break;
        }
        if (cur) {
            CHECK_EQ(champ_size(cur), 50, "pset chain");
            CHECK_VALID(cur, "pset chain");
        }
        champ_free(cur);
    }
    champ_free(e);
    champ_free(c);
}

/* Replacing a value in a node that another map shares must copy it. */
static void test_replace_shared(void) {
    th_cbctx ctx;
    th_obj *o = unit_objs_reset(40);
    champ_map *m = unit_new_generic(&ctx, false);
    if (!m)
        return;
    /* 0..4 collide (hash H); 5 sits beside them in the level-12 node; 6 and
     * 7 are near the root. */
    const uint64_t H = 0xfedcba9876543210ULL;
    for (int i = 0; i < 5; i++)
        o[i].hash = H;
    o[5].hash = H ^ (1ULL << 61);
    o[6].hash = H ^ 1;
    o[7].hash = H ^ (1ULL << 7);
    for (int i = 0; i < 8; i++)
        unit_put(m, &o[i], th_tok((uint64_t)i));
    unit_shape(m, 8, 13, 1, 5, 14, "replace_shared setup");
    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    if (!c) {
        champ_free(m);
        return;
    }
    for (int i = 0; i < 8; i++) {
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_set(m, &o[i], th_tok(100 + (uint64_t)i), &pr),
                 CHAMP_OK);
        CHECK(pr.found && pr.val == th_tok((uint64_t)i), "old value of %d", i);
        for (int j = 0; j < 8; j++) {
            void *v = NULL;
            bool found = champ_get(c, &o[j], &v);
            CHECK(found && v == th_tok((uint64_t)j),
                  "copy changed by replace of %d in the original (key %d)",
                  i, j);
        }
    }
    unit_shape(m, 8, 13, 1, 5, 14, "replace_shared m");
    unit_shape(c, 8, 13, 1, 5, 14, "replace_shared c");
    /* and the other way round */
    champ_prior pr = th_prior_junk();
    CHECK_ST(champ_set(c, &o[2], th_tok(555), &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == th_tok(2), "the copy's replace");
    void *v = NULL;
    CHECK(champ_get(m, &o[2], &v), "original has key 2");
    CHECK(v == th_tok(102), "original unaffected by the copy's replace");
    champ_free(m);
    CHECK(champ_get(c, &o[2], &v), "copy has key 2");
    CHECK(v == th_tok(555), "copy value");
    CHECK_VALID(c, "replace_shared c alone");
    champ_free(c);
}

/* ------------------------------------------------------------------ */
/* Iteration                                                           */
/* ------------------------------------------------------------------ */

static int unit_count_visit(const champ_key *key, void *val, void *ctx) {
    size_t *counts = ctx; /* counts[0]: visits, counts[1]: stop at, [2]: bad */
    counts[0]++;
    if (val != th_tok(key->u64))
        counts[2]++;
    return counts[1] && counts[0] >= counts[1];
}

static void test_iteration(void) {
    champ_map *m = unit_new_kind(CHAMP_KEY_U64, 5);
    if (!m)
        return;
    champ_iter it;
    champ_key k;
    void *v;
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);
    CHECK(!champ_iter_next(&it, &k, &v), "an empty map has no entry");
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);
    CHECK(!champ_iter_next(&it, &k, &v), "still none after the end");
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);

    size_t n = (size_t)th_iters(5000, 300);
    unsigned char *seen = calloc(n, 1);
    if (!seen) {
        champ_free(m);
        return;
    }
    for (size_t i = 0; i < n; i++)
        champ_set_u64(m, i, th_tok(i), NULL);
    size_t count = 0, dup = 0, wrong = 0;
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    while (champ_iter_next(&it, &k, &v)) {
        count++;
        if (k.u64 >= n || v != th_tok(k.u64) || k.ptr != NULL || k.len != 0) {
            wrong++;
            continue;
        }
        if (seen[k.u64]++)
            dup++;
    }
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);
    CHECK_EQ(count, n, "iteration visits every entry");
    CHECK_EQ(dup, 0, "iteration visits an entry twice");
    CHECK_EQ(wrong, 0, "iteration reports unknown keys or values");
    CHECK(!champ_iter_next(&it, &k, &v), "nothing after the end");
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);

    /* NULL key / val outputs are allowed. */
    count = 0;
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    while (champ_iter_next(&it, NULL, NULL))
        count++;
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);
    CHECK_EQ(count, n, "iteration with NULL outputs");

    /* Batches give the same sequence as one entry at a time, also mixed
     * with single steps, with keys or values alone. */
    {
        uint64_t *order = malloc(n * sizeof *order);
        if (order) {
            size_t total = 0;
            CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
            while (total < n && champ_iter_next(&it, &k, NULL))
                order[total++] = k.u64;
            const size_t caps[] = {1, 2, 7, 64, 100000};
            for (size_t ci = 0; ci < sizeof caps / sizeof caps[0]; ci++) {
                champ_key ks[64];
                void *vs[64];
                size_t cap = caps[ci] < 64 ? caps[ci] : 64, got = 0, pos = 0;
                size_t bad = 0, batches = 0;
                CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
                for (;;) {
                    if (batches % 3 == 2) { /* a single step in between */
                        if (!champ_iter_next(&it, &k, &v))
                            break;
                        bad += pos >= n || k.u64 != order[pos] || v != th_tok(k.u64);
                        pos++;
                        batches++;
                        continue;
                    }
                    bool vals_only = batches % 2;
                    got = champ_iter_next_n(&it, vals_only ? NULL : ks,
                                            vals_only && ci ? vs : (ci ? NULL : vs),
                                            cap);
                    if (got == 0)
                        break;
                    bad += got > cap;
                    for (size_t i = 0; i < got; i++, pos++) {
                        if (pos >= n) {
                            bad++;
                            continue;
                        }
                        if (!vals_only)
                            bad += ks[i].u64 != order[pos];
                        if (vals_only && ci)
                            bad += vs[i] != th_tok(order[pos]);
                        if (!ci)
                            bad += vs[i] != th_tok(order[pos]);
                    }
                    batches++;
                }
                champ_status st = champ_iter_status(&it);
                CHECK(st == CHAMP_OK, "batches of %zu end with %s", cap,
                      th_status_name(st));
                CHECK(pos == n, "batches of up to %zu: %zu of %zu entries seen", cap,
                      pos, n);
                CHECK_EQ(bad, 0, "batches: same sequence as one at a time");
                CHECK_EQ(champ_iter_next_n(&it, ks, vs, cap), 0,
                         "nothing after the end");
                CHECK_ST(champ_iter_status(&it), CHAMP_OK);
            }
            free(order);
        }
    }

    /* foreach: all, then an early stop. */
    size_t counts[3] = {0, 0, 0};
    CHECK_ST(champ_foreach(m, unit_count_visit, counts), CHAMP_OK);
    CHECK_EQ(counts[0], n, "foreach visits");
    CHECK_EQ(counts[2], 0, "foreach values");
    size_t counts2[3] = {0, 10, 0};
    CHECK_ST(champ_foreach(m, unit_count_visit, counts2), CHAMP_OK);
    CHECK_EQ(counts2[0], 10, "foreach stops when fn returns nonzero");
    CHECK_EQ(counts2[2], 0, "foreach values (early stop)");

    /* An iterator over a copy stays valid while the original changes. */
    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    if (c) {
        memset(seen, 0, n);
        count = dup = wrong = 0;
        CHECK_ST(champ_iter_init(&it, c), CHAMP_OK);
        uint64_t step = 0;
        while (champ_iter_next(&it, &k, &v)) {
            count++;
            if (k.u64 >= n || v != th_tok(k.u64))
                wrong++;
            else if (seen[k.u64]++)
                dup++;
            /* Mutate the original hard between steps. */
            champ_remove_u64(m, (step * 7) % n, NULL);
            champ_set_u64(m, n + step, th_tok(0), NULL);
            champ_set_u64(m, (step * 13) % n, th_tok(12345), NULL);
            step++;
        }
        CHECK_ST(champ_iter_status(&it), CHAMP_OK);
        CHECK_EQ(count, n, "copy's iteration count while original changes");
        CHECK_EQ(dup + wrong, 0, "copy's iteration disturbed");
        /* And the other way: iterate m while its copy c changes. */
        size_t msize = champ_size(m);
        count = 0;
        CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
        while (champ_iter_next(&it, &k, &v)) {
            count++;
            champ_set_u64(c, n * 3 + count, NULL, NULL);
            champ_remove_u64(c, count % n, NULL);
        }
        CHECK_ST(champ_iter_status(&it), CHAMP_OK);
        CHECK_EQ(count, msize, "source's iteration while its copy changes");
        CHECK_VALID(m, "iteration m");
        CHECK_VALID(c, "iteration c");
        champ_free(c);
    }

    /* Every build detects a change of the iterated map: an insert, a
     * remove, a replace, a clear. */
    CHECK(champ_contains_u64(m, n + 1), "key n + 1 is there to replace");
    const char *hows[] = {"insert", "remove", "replace", "clear"};
    for (int how = 0; how < 4; how++) {
        CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
        CHECK(champ_iter_next(&it, &k, &v), "a first step before the change");
        champ_status ust;
        switch (how) {
        case 0: ust = champ_set_u64(m, 999999999, NULL, NULL); break;
        case 1: ust = champ_remove_u64(m, 999999999, NULL); break;
        case 2: ust = champ_set_u64(m, n + 1, th_tok(1), NULL); break;
        default: ust = champ_clear(m); break;
        }
        CHECK_ST(ust, CHAMP_OK);
        CHECK(!champ_iter_next(&it, &k, &v),
              "nothing handed out from a map changed by a %s", hows[how]);
        CHECK_ST(champ_iter_status(&it), CHAMP_EMODIFIED);
        CHECK_EQ(champ_iter_next_n(&it, &k, &v, 1), 0,
                 "nothing handed out in a batch from a changed map");
        CHECK_ST(champ_iter_status(&it), CHAMP_EMODIFIED);
    }
    free(seen);
    champ_free(m);
}

/* ------------------------------------------------------------------ */
/* Re-entrant updates from callbacks: CHAMP_EBUSY                      */
/* ------------------------------------------------------------------ */

typedef struct unit_reenter {
    th_cbctx base; /* first: th_key_hash/th_key_equal read it */
    champ_map *m;
    int arm;       /* 1 hash, 2 equal, 3 release: the next call re-enters */
    int fired;
    champ_status inner_set, inner_remove, inner_clear;
    th_obj *inner_key;
} unit_reenter;

static void unit_reenter_now(unit_reenter *r) {
    r->arm = 0;
    r->fired++;
    r->inner_set = champ_set(r->m, r->inner_key, NULL, NULL);
    r->inner_remove = champ_remove(r->m, r->inner_key, NULL);
    r->inner_clear = champ_clear(r->m);
}

static uint64_t unit_reenter_hash(const void *key, void *ctx) {
    unit_reenter *r = ctx;
    if (r->arm == 1)
        unit_reenter_now(r);
    return th_key_hash(key, ctx);
}

static bool unit_reenter_equal(const void *a, const void *b, void *ctx) {
    unit_reenter *r = ctx;
    if (r->arm == 2)
        unit_reenter_now(r);
    return th_key_equal(a, b, ctx);
}

static void unit_reenter_release(void *p, void *ctx) {
    unit_reenter *r = ctx;
    if (r->arm == 3 && p)
        unit_reenter_now(r);
}

static void unit_reenter_retain(void *p, void *ctx) {
    (void)p;
    (void)ctx;
}

static void test_reentrant_callbacks(void) {
    th_obj *o = unit_objs_reset(8);
    for (int i = 0; i < 8; i++)
        o[i].hash = (uint64_t)i * 0x0101010101010101ULL;
    o[4].hash = o[3].hash; /* 3 and 4 collide: equal gets called */
    o[5].id = o[3].id;     /* 5 is a probe equal to 3 */
    o[5].hash = o[3].hash;
    const char *names[] = {"", "hash", "equal", "release"};
    for (int arm = 1; arm <= 3; arm++) {
        unit_reenter r;
        memset(&r, 0, sizeof r);
        r.base.hash_mode = TH_HASH_FIELD;
        champ_config cfg = th_generic_config(&r.base, false, NULL);
        cfg.ctx = &r;
        cfg.hash = unit_reenter_hash;
        cfg.equal = unit_reenter_equal;
        cfg.val_retain = unit_reenter_retain;
        cfg.val_release = unit_reenter_release;
        CHECK_ST(champ_new(&cfg, &r.m), CHAMP_OK);
        if (!r.m)
            return;
        r.inner_key = &o[7];
        for (int i = 0; i < 5; i++)
            CHECK_ST(champ_set(r.m, &o[i], &o[i], NULL), CHAMP_OK);
        r.arm = arm;
        champ_prior pr = th_prior_junk();
        champ_status outer = arm == 3 ? champ_clear(r.m)
                                      : champ_set(r.m, &o[5], &o[6], &pr);
        CHECK(r.fired == 1, "%s callback re-entered %d times", names[arm],
              r.fired);
        bool busy = r.inner_set == CHAMP_EBUSY &&
                    r.inner_remove == CHAMP_EBUSY &&
                    r.inner_clear == CHAMP_EBUSY;
        CHECK(busy,
              "updates from the %s callback: set %s, remove %s, clear %s; "
              "want CHAMP_EBUSY", names[arm], th_status_name(r.inner_set),
              th_status_name(r.inner_remove), th_status_name(r.inner_clear));
        if (busy && arm == 3) {
            /* Releases of clear run while the map is being emptied. */
            CHECK_ST(outer, CHAMP_OK);
            CHECK_EQ(champ_size(r.m), 0, "clear finished");
        } else if (busy) {
            /* 5 equals 3 (same hash): hash, then equal, are called. */
            CHECK_ST(outer, CHAMP_OK);
            CHECK(pr.found && pr.val == &o[3] && pr.key == NULL,
                  "the outer set replaced 3's value");
            CHECK_EQ(champ_size(r.m), 5, "outer set done, nothing else");
        }
        r.arm = 0;
        CHECK(!champ_contains(r.m, &o[7]), "no re-entrant update went through");
        CHECK_VALID(r.m, "after re-entrant calls");
        /* champ_free: releases run while the map is torn down. */
        CHECK_ST(champ_set(r.m, &o[1], &o[1], NULL), CHAMP_OK);
        r.fired = 0;
        r.arm = 3;
        champ_free(r.m);
        CHECK(r.fired == 1 && r.inner_set == CHAMP_EBUSY,
              "update from a release during champ_free: %s",
              th_status_name(r.inner_set));
    }
}

/* An insert hashes the new key once and each key it moves once: a key
 * landing on a slot that holds a pair costs three hash calls, whether the
 * three part one level down (fast path), agree further (links, the
 * general path) or the path is shared with a copy (general path). */
static void test_hash_calls(void) {
    th_cbctx ctx;
    const struct {
        const char *name;
        uint64_t third; /* hash of the key that meets the pair {0, 1 << 10} */
        bool shared;
    } cases[] = {
        {"three part one level down", 1u << 5, false},
        {"three agree one level more (a link)", 2u << 10, false},
        {"path shared with a copy", 1u << 5, true},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        th_obj *o = unit_objs_reset(3);
        champ_map *m = unit_new_generic(&ctx, false);
        if (!m)
            return;
        o[0].hash = 0;
        o[1].hash = 1u << 10;
        o[2].hash = cases[ci].third;
        unit_put(m, &o[0], th_tok(0));
        unit_put(m, &o[1], th_tok(1));
        champ_map *c = NULL;
        if (cases[ci].shared)
            CHECK_ST(champ_copy(m, &c), CHAMP_OK);
        ctx.hash_calls = 0;
        unit_put(m, &o[2], th_tok(2));
        CHECK(ctx.hash_calls == 3, "%s: %lu hash calls, want 3", cases[ci].name,
              (unsigned long)ctx.hash_calls);
        champ_stats st = th_stats(m);
        CHECK_EQ(st.depth_max, ci == 1 ? 3u : 2u, cases[ci].name);
        CHECK_VALID(m, cases[ci].name);
        champ_free(c);
        champ_free(m);
    }
}

/* The library linked is the one the header describes. */
static void test_version(void) {
    char want[48];
    snprintf(want, sizeof want, "%d.%d.%d", CHAMP_VERSION_MAJOR,
             CHAMP_VERSION_MINOR, CHAMP_VERSION_PATCH);
    const char *got = champ_version();
    CHECK(got != NULL && strcmp(got, want) == 0,
          "champ_version() \"%s\", header says \"%s\"", got ? got : "(null)",
          want);
    CHECK_EQ(champ_version_number(), CHAMP_VERSION_NUMBER,
             "champ_version_number() vs CHAMP_VERSION_NUMBER");
    CHECK_EQ(CHAMP_VERSION_NUMBER,
             CHAMP_VERSION_MAJOR * 10000 + CHAMP_VERSION_MINOR * 100 +
                 CHAMP_VERSION_PATCH,
             "CHAMP_VERSION_NUMBER is MAJOR * 10000 + MINOR * 100 + PATCH");
}

/* ------------------------------------------------------------------ */
/* add on maps                                                         */
/* ------------------------------------------------------------------ */

/* champ_add_* on maps, not sets ("a map gets the key with a NULL value"):
 * an absent key goes in with NULL, a present one keeps its value (add
 * never replaces), a copy sharing the nodes is unchanged; byte keys are
 * copied; a generic map takes the key only when it was added; an add that
 * cannot allocate changes nothing and takes no key.  u64, bytes and
 * generic maps (counted), one private pool. */
static void test_add_on_maps(void) {
    champ_pool *p = NULL;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    if (!p)
        return;
    bool added;
    void *v;

    /* u64: even keys set, then every key added */
    champ_config uc = th_kind_config(CHAMP_KEY_U64, 5, p);
    champ_map *m = NULL, *snap = NULL;
    CHECK_ST(champ_new(&uc, &m), CHAMP_OK);
    if (m) {
        for (uint64_t k = 0; k < 200; k += 2)
            CHECK_ST(champ_set_u64(m, k, th_tok(k + 1), NULL), CHAMP_OK);
        CHECK_ST(champ_copy(m, &snap), CHAMP_OK);
        long wrong = 0;
        for (uint64_t k = 0; k < 200; k++) {
            added = !(k & 1);
            CHECK_ST(champ_add_u64(m, k, &added), CHAMP_OK);
            wrong += added != (bool)(k & 1);
        }
        CHECK_EQ(wrong, 0, "add: *added true exactly for the absent keys");
        CHECK_EQ(champ_size(m), 200, "every key in the map");
        wrong = 0;
        for (uint64_t k = 0; k < 200; k++) {
            v = th_tok(0xdead);
            wrong += !champ_get_u64(m, k, &v) || v != ((k & 1) ? NULL : th_tok(k + 1));
        }
        CHECK_EQ(wrong, 0, "added keys hold NULL, present keys their own values");
        CHECK_EQ(champ_size(snap), 100, "the copy unchanged");
        wrong = 0;
        for (uint64_t k = 1; snap && k < 200; k += 2)
            wrong += champ_contains_u64(snap, k);
        CHECK_EQ(wrong, 0, "the copy has none of the added keys");
        CHECK_ST(champ_add_u64(m, 7, NULL), CHAMP_OK); /* added may be NULL */
        CHECK_VALID(m, "a map after adds");
        CHECK_VALID(snap, "its copy");
        /* refused allocations: each add done or refused whole */
#if TH_FAULTS
        int refused = 0;
        size_t n = champ_size(m);
        CHECK_ST(champ_pool_fail_after(p, 0), CHAMP_OK);
        for (uint64_t k = 1000; k < 1200; k++) {
            champ_status st = champ_add_u64(m, k, &added);
            if (st == CHAMP_OK) {
                n++;
            } else {
                refused++;
                CHECK_ST(st, CHAMP_ENOMEM);
                CHECK(!champ_contains_u64(m, k), "a refused add leaves the key out");
            }
            CHECK_EQ(champ_size(m), n, "size after an add done or refused");
        }
        CHECK_ST(champ_pool_fail_after(p, -1), CHAMP_OK);
        CHECK(refused > 0, "adds refused when no block can be had (%d)", refused);
        CHECK_VALID(m, "after refused adds");
#endif
        champ_free(snap);
        champ_free(m);
    }

    /* bytes: keys copied, present keys keep their values */
    champ_config bc = th_kind_config(CHAMP_KEY_BYTES, 6, p);
    m = NULL;
    CHECK_ST(champ_new(&bc, &m), CHAMP_OK);
    if (m) {
        char buf[4] = {'x', 0, 'y', 0};
        added = false;
        CHECK_ST(champ_add_bytes(m, buf, 3, &added), CHAMP_OK);
        CHECK(added, "add_bytes of an absent key");
        buf[0] = 'z'; /* the map holds its own copy */
        CHECK(champ_contains_bytes(m, "x\0y", 3), "the key as added");
        CHECK(!champ_contains_bytes(m, buf, 3), "not the caller's buffer");
        CHECK_ST(champ_set_str(m, "b", th_tok(2), NULL), CHAMP_OK);
        CHECK_ST(champ_add_str(m, "b", &added), CHAMP_OK);
        CHECK(!added, "add_str of a present key");
        v = NULL;
        CHECK(champ_get_str(m, "b", &v) && v == th_tok(2), "add kept the value");
        CHECK_ST(champ_add_str(m, "a", &added), CHAMP_OK);
        v = th_tok(1);
        CHECK(added && champ_get_str(m, "a", &v) && v == NULL, "added with NULL");
        CHECK_EQ(champ_size(m), 3, "three keys");
        CHECK_VALID(m, "a bytes map after adds");
        champ_free(m);
    }

    /* generic, counted: ownership of the key only when added */
    th_cbctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.hash_mode = TH_HASH_GOOD;
    th_obj *o = unit_objs_reset(64);
    champ_config gc = th_generic_config(&ctx, true, p);
    m = NULL;
    CHECK_ST(champ_new(&gc, &m), CHAMP_OK);
    if (m) {
        th_obj *k1 = &o[0], *twin = &o[1], *k2 = &o[2], *v2 = &o[3], *twin2 = &o[4];
        twin->id = k1->id;
        twin2->id = k2->id;
        CHECK_ST(champ_add(m, k1, &added), CHAMP_OK);
        CHECK(added, "generic add of an absent key");
        th_obj_hand_in(k1);
        v = th_tok(1);
        CHECK(champ_get(m, twin, &v) && v == NULL, "added with NULL");
        CHECK_ST(champ_add(m, twin, &added), CHAMP_OK);
        CHECK(!added, "generic add of a present key");
        CHECK(twin->retains == 0 && twin->releases == 0 && twin->held == 0,
              "a key not added stays the caller's");
        champ_iter it;
        champ_key k;
        CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
        CHECK(champ_iter_next(&it, &k, &v) && k.ptr == k1, "the map kept its key");
        CHECK_ST(champ_set(m, k2, v2, NULL), CHAMP_OK);
        th_obj_hand_in(k2);
        th_obj_hand_in(v2);
        CHECK_ST(champ_add(m, twin2, &added), CHAMP_OK);
        CHECK(!added && v2->releases == 0, "add never replaces a value");
        CHECK(champ_get(m, k2, &v) && v == v2, "the value stays");
#if TH_FAULTS
        int refused = 0;
        CHECK_ST(champ_pool_fail_after(p, 0), CHAMP_OK);
        for (int i = 5; i < 64; i++) {
            champ_status st = champ_add(m, &o[i], &added);
            if (st == CHAMP_OK) {
                th_obj_hand_in(&o[i]);
            } else {
                refused++;
                CHECK_ST(st, CHAMP_ENOMEM);
                CHECK(o[i].retains == 0 && o[i].releases == 0 && !champ_contains(m, &o[i]),
                      "a refused generic add takes no key");
            }
        }
        CHECK_ST(champ_pool_fail_after(p, -1), CHAMP_OK);
        CHECK(refused > 0, "generic adds refused (%d)", refused);
#endif
        CHECK_VALID(m, "a generic map after adds");
        champ_free(m);
        CHECK_EQ(ctx.underflows, 0, "no release of an unheld reference");
        long held = 0;
        for (int i = 0; i < 64; i++)
            held += o[i].held != 0;
        CHECK_EQ(held, 0, "every key and value released once");
    }
    CHECK_EQ(th_pool_live(p), 0, "the pool is empty at the end");
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* Seeds                                                               */
/* ------------------------------------------------------------------ */

static uint64_t seen_seed;
static unsigned long seed_calls;

static uint64_t seed_bytes_hash(const void *k, size_t len, uint64_t seed, void *ctx) {
    (void)ctx;
    seen_seed = seed;
    seed_calls++;
    uint64_t h = seed;
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)k)[i]) * 0x100000001b3ULL;
    return h;
}

/* champ.h: "If fixed_seed is false the map gets a fresh seed" (the
 * defence against chosen-key flooding), a fixed seed is the one given,
 * copies and new_like keep the seed (they share the type), default maps
 * of a kind share one seed, and bytes_hash gets the map's seed. */
static void test_seeds(void) {
    enum { NM = 16 };
    champ_map *m[NM] = {0};
    uint64_t seeds[NM] = {0};
    for (int i = 0; i < NM; i++) {
        champ_config c = th_kind_config(i % 2 ? CHAMP_KEY_BYTES : CHAMP_KEY_U64, 5, NULL);
        c.fixed_seed = false;
        c.seed = 5;
        CHECK_ST(champ_new(&c, &m[i]), CHAMP_OK);
        seeds[i] = m[i] ? champ_seed(m[i]) : 0;
    }
    int same = 0;
    for (int i = 0; i < NM; i++)
        for (int j = i + 1; j < NM; j++)
            same += seeds[i] == seeds[j];
    CHECK_EQ(same, 0, "16 maps without fixed_seed: 16 different seeds");
    champ_map *cp = NULL, *like = NULL;
    if (m[0]) {
        CHECK_ST(champ_copy(m[0], &cp), CHAMP_OK);
        CHECK_ST(champ_new_like(m[0], &like), CHAMP_OK);
        CHECK(cp && like && champ_seed(cp) == seeds[0] && champ_seed(like) == seeds[0],
              "a copy and new_like keep the seed");
    }
    champ_free(cp);
    champ_free(like);
    for (int i = 0; i < NM; i++)
        champ_free(m[i]);
    /* fixed */
    champ_config c = th_kind_config(CHAMP_KEY_U64, 0x1234, NULL);
    c.fixed_seed = true;
    champ_map *f = NULL;
    CHECK_ST(champ_new(&c, &f), CHAMP_OK);
    CHECK(f && champ_seed(f) == 0x1234, "a fixed seed is the one given");
    champ_free(f);
    /* default maps: one seed per kind */
    champ_map *d1 = NULL, *d2 = NULL, *b1 = NULL, *b2 = NULL;
    CHECK_ST(champ_new_u64(&d1), CHAMP_OK);
    CHECK_ST(champ_new_u64(&d2), CHAMP_OK);
    CHECK_ST(champ_new_bytes(&b1), CHAMP_OK);
    CHECK_ST(champ_new_bytes(&b2), CHAMP_OK);
    CHECK(d1 && d2 && champ_seed(d1) == champ_seed(d2), "default u64 maps share a seed");
    CHECK(b1 && b2 && champ_seed(b1) == champ_seed(b2), "default bytes maps share a seed");
    champ_free(d1);
    champ_free(d2);
    champ_free(b1);
    champ_free(b2);
    /* bytes_hash gets the map's seed, fixed or fresh */
    for (int fixed = 0; fixed < 2; fixed++) {
        champ_config bc = th_kind_config(CHAMP_KEY_BYTES, 0xfeed, NULL);
        bc.fixed_seed = fixed;
        bc.bytes_hash = seed_bytes_hash;
        champ_map *b = NULL;
        CHECK_ST(champ_new(&bc, &b), CHAMP_OK);
        if (!b)
            continue;
        seed_calls = 0;
        seen_seed = 0;
        CHECK_ST(champ_set_str(b, "key", NULL, NULL), CHAMP_OK);
        CHECK(seed_calls > 0 && seen_seed == champ_seed(b),
              "bytes_hash gets the map's seed (%s)", fixed ? "fixed" : "fresh");
        if (fixed)
            CHECK(seen_seed == 0xfeed, "the fixed seed reaches bytes_hash");
        champ_free(b);
    }
}

const th_test th_tests_api[] = {
    {"api.version", test_version},
    {"api.u64_basics", test_u64_basics},
    {"api.null_values", test_null_values},
    {"api.bytes_basics", test_bytes_basics},
    {"api.bytes_key_lifetime", test_bytes_key_lifetime},
    {"api.generic_basics", test_generic_basics},
    {"api.release_balance", test_release_balance},
    {"api.copy_clear_pforms", test_copy_clear_pforms},
    {"api.replace_shared", test_replace_shared},
    {"api.iteration", test_iteration},
    {"api.reentrant_callbacks", test_reentrant_callbacks},
    {"api.hash_calls", test_hash_calls},
    {"api.add_on_maps", test_add_on_maps},
    {"api.seeds", test_seeds},
};
const size_t th_tests_api_count = sizeof th_tests_api / sizeof th_tests_api[0];

/*
 * test_poolfix.c - the pool: validate's census.
 *
 * Regression tests of /work/shared/repro (each named after its program):
 *   census_overflow           the census wrapped at 2^24 references to a
 *                             node (false corruption, state left behind)
 *
 * This file reaches into the pool (internal.h) to build test states the
 * public API cannot (a node with 2^24 references, forged reference
 * counts).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../src/internal.h"

/* ------------------------------------------------------------------ */
/* 4. validate's census                                                */
/* ------------------------------------------------------------------ */

/* Every node of m: no census bits set. */
static size_t pf_census_left(const node *n, unsigned level) {
    size_t left = (n->aux & ~SLACK_MASK) != 0;
    if (level < CHAMP_COLL_LEVEL)
        for (uint32_t i = 0; i < node_nkid(n); i++)
            left += pf_census_left(node_kids(n)[i], level + 1);
    return left;
}

/* Forged reference counts are found, whichever way they are off, and
 * validate leaves every count and mark as it found them. */
static void test_census_forged(void) {
    champ_map *m = NULL, *bm = NULL;
    CHECK_ST(champ_new_u64(&m), CHAMP_OK);
    if (!m)
        return;
    champ_config cb = th_kind_config(CHAMP_KEY_BYTES, 2, champ_pool_of(m));
    CHECK_ST(champ_new(&cb, &bm), CHAMP_OK);
    if (!bm) {
        champ_free(m);
        return;
    }
    for (uint64_t i = 0; i < 3000; i++)
        champ_set_u64(m, i, th_tok(i), NULL);
    char k[32];
    for (uint64_t i = 0; i < 300; i++) {
        snprintf(k, sizeof k, "census-key-%llu", (unsigned long long)i);
        champ_set_str(bm, k, NULL, NULL);
    }
    enum { NC = 200 };
    champ_map *copies[NC] = {0};
    for (int i = 0; i < NC; i++) {
        CHECK_ST(champ_copy(i % 2 ? m : bm, &copies[i]), CHAMP_OK);
        if (copies[i] && i % 3 == 0)
            champ_set_u64(i % 2 ? copies[i] : m, 100000 + (uint64_t)i, NULL, NULL);
        if (copies[i] && i % 4 == 0) { /* copied nodes share key blobs */
            snprintf(k, sizeof k, "census-key-%d", i);
            champ_remove_str(copies[i], k, NULL);
        }
    }
    CHECK_VALID(m, "many versions");
    CHECK_VALID(bm, "many versions (bytes)");
    node *root = m->root;
    node *kid = node_kids(root)[3];
    uint32_t rc0 = root->rc, kid0 = kid->rc;
    const int32_t offs[] = {1, -1, 1 << 24, -(1 << 23), 7};
    for (size_t j = 0; j < sizeof offs / sizeof offs[0]; j++) {
        node *x = j % 2 ? kid : root;
        uint32_t was = x->rc;
        x->rc = was + (uint32_t)offs[j];
        fprintf(stderr, "(a validation error report is expected here)\n");
        CHECK_ST(champ_validate(m), CHAMP_ECORRUPT);
        CHECK(x->rc == was + (uint32_t)offs[j], "validate left the forged count as it was");
        x->rc = was;
        CHECK_EQ(pf_census_left(m->root, 0), 0, "no census bits left");
        CHECK_VALID(m, "count restored");
    }
    CHECK(root->rc == rc0 && kid->rc == kid0, "counts untouched by validate");
    /* a key blob whose count is off, both ways (one that copied nodes
     * share) */
    blob *kb = NULL;
    for (uint64_t i = 0; i < 300 && !kb; i++) {
        snprintf(k, sizeof k, "census-key-%llu", (unsigned long long)i);
        const node *n = bm->root;
        uint64_t h = champ__hash_bytes(k, strlen(k), bm->seed);
        for (unsigned lv = 0; n && lv <= CHAMP_LAST_LEVEL; lv++) {
            uint32_t bit = 1u << slice(h, lv);
            if (n->datamap & bit) {
                const entry *e = &n->e[node_eidx(n, bit)];
                for (int t = 0; t < ((n->nodemap & bit) ? 2 : 1); t++)
                    if (((blob *)(uintptr_t)e[t].k)->rc >= 2)
                        kb = (blob *)(uintptr_t)e[t].k;
                break;
            }
            n = (n->nodemap & bit) ? *node_kid_at(n, bit) : NULL;
        }
    }
    CHECK(kb != NULL, "a key blob shared by copied nodes");
    for (int j = 0; j < 2 && kb; j++) {
        uint32_t was = kb->rc;
        kb->rc = j == 0 ? was + 1 : was - 1;
        fprintf(stderr, "(a validation error report is expected here)\n");
        CHECK_ST(champ_validate(bm), CHAMP_ECORRUPT);
        CHECK(kb->rc == (j == 0 ? was + 1 : was - 1), "blob count as validate found it");
        kb->rc = was;
        CHECK_VALID(bm, "blob count restored");
    }
    /* census bits set before validate (another map's node) are reported
     * and cleared */
    node *other = NULL;
    for (int i = 0; i < NC && !other; i++)
        if (copies[i] && copies[i]->root && copies[i]->root != m->root &&
            copies[i]->root != bm->root)
            other = copies[i]->root;
    if (other) {
        other->aux |= 0x123u << 8;
        fprintf(stderr, "(a validation error report is expected here)\n");
        CHECK_ST(champ_validate(m), CHAMP_ECORRUPT);
        CHECK_EQ(other->aux & ~SLACK_MASK, 0, "stale census bits cleared");
        CHECK_VALID(m, "after stale census bits");
    }
    for (int i = 0; i < NC; i++)
        champ_free(copies[i]);
    CHECK_VALID(m, "copies freed");
    champ_free(bm);
    champ_free(m);
}

/* A node with more than 2^24 references (census_overflow.c makes them
 * with 2^24 map copies, gigabytes of handles; here they come from a
 * made-up tree of full nodes in a second map, a tenth of that memory).
 * The old census counted references in 24 bits: it wrapped,
 * visited the node's children twice, reported corruption of a healthy
 * pool and left counts behind.  Runs at CHAMP_TEST_SCALE >= 1 (the
 * optimised test binary), or when CHAMP_TEST_CENSUS=1. */
static node *pf_fake_tree(champ_pool *p, unsigned level, unsigned kids, node *x,
                          size_t *made) {
    node *n = pool_alloc(p, node_bitmap_size(0, kids));
    if (!n)
        return NULL;
    (*made)++;
    n->rc = 1;
    n->datamap = 0;
    n->nodemap = kids == 32 ? 0xffffffffu : (1u << kids) - 1;
    n->aux = 0;
    node **k = node_kids(n);
    for (unsigned i = 0; i < kids; i++)
        k[i] = NULL;
    for (unsigned i = 0; i < kids; i++) {
        k[i] = level == 4 ? x : pf_fake_tree(p, level + 1, 32, x, made);
        if (!k[i])
            return n;
    }
    return n;
}
static void pf_fake_free(champ_pool *p, node *n, unsigned level, node *x) {
    if (!n || n == x)
        return;
    uint32_t kids = node_nkid(n);
    for (uint32_t i = 0; i < kids; i++)
        if (level < 4)
            pf_fake_free(p, node_kids(n)[i], level + 1, x);
    pool_free(p, n, node_bitmap_size(0, kids));
}

static void test_census_overflow(void) {
    const char *e = getenv("CHAMP_TEST_CENSUS");
    if (th_scale() < 1.0 && !(e && *e == '1'))
        return;
    champ_map *m = NULL, *f = NULL;
    CHECK_ST(champ_new_u64(&m), CHAMP_OK);
    if (!m)
        return;
    champ_pool *p = champ_pool_of(m);
    champ_config c = th_kind_config(CHAMP_KEY_U64, 1, p);
    CHECK_ST(champ_new(&c, &f), CHAMP_OK);
    for (uint64_t i = 0; i < 1000; i++)
        champ_set_u64(m, i, NULL, NULL);
    node *x = m->root;
    size_t made = 0;
    /* root: 16 children; levels 1-3: 32 each; level 4: 32 references to
     * x each: 16 * 32^4 = 2^24 references, plus m's */
    node *fr = f ? pf_fake_tree(p, 0, 16, x, &made) : NULL;
    CHECK_EQ(made, 1 + 16 + 512 + 16384 + 524288, "made-up tree complete");
    if (fr && made == 1 + 16 + 512 + 16384 + 524288) {
        f->root = fr;
        x->rc += 1u << 24;
        CHECK_VALID(m, "a node with 2^24 + 1 references");
        CHECK_VALID(m, "validate again");
        CHECK_EQ(pf_census_left(m->root, 0), 0, "no census bits left");
        CHECK_EQ(x->rc, (1u << 24) + 1, "the node's count untouched");
        x->rc -= 1u << 24;
        f->root = NULL;
    }
    pf_fake_free(p, fr, 0, x);
    CHECK_VALID(m, "made-up tree gone");
    champ_free(f);
    champ_free(m);
}

/* The repro itself, with CHAMP_TEST_CENSUS_MAPS=N copies of one map
 * (census_overflow.c: N = 16777216, gigabytes of handles). */
static void test_census_copies(void) {
    const char *e = getenv("CHAMP_TEST_CENSUS_MAPS");
    size_t n = e ? (size_t)strtoull(e, NULL, 0) : (size_t)th_iters(3000, 300);
    champ_map *m = NULL;
    CHECK_ST(champ_new_u64(&m), CHAMP_OK);
    champ_map **c = malloc(n * sizeof *c);
    if (!m || !c) {
        champ_free(m);
        free(c);
        return;
    }
    for (uint64_t i = 0; i < 1000; i++)
        champ_set_u64(m, i, NULL, NULL);
    size_t made = 0;
    for (; made + 1 < n; made++)
        if (champ_copy(m, &c[made]) != CHAMP_OK)
            break;
    CHECK_EQ(made + 1, n, "copies made");
    CHECK_VALID(m, "one root shared by every map");
    CHECK_VALID(m, "validate again");
    for (size_t i = 0; i < made; i++)
        champ_free(c[i]);
    CHECK_VALID(m, "copies freed");
    champ_free(m);
    free(c);
}

void suite_poolfix(void) {
    test_census_forged();
    test_census_overflow();
    test_census_copies();
}

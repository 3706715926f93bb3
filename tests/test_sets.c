/*
 * test_sets.c - sets (cfg.set, champ_new_set_*): maps of keys without a
 * value slot, through the whole API.
 *
 *   sets.api.<kind>   every call on a set of u64, byte-string and generic
 *                     (counted) keys: add, contains, get (NULL values),
 *                     remove, set with NULL (fine) and with a value
 *                     (CHAMP_EINVAL, set unchanged), the p-forms, iteration
 *                     and foreach (NULL values), copy, clear, champ_is_set
 *   sets.config       set configs with value callbacks are refused
 *   sets.kinds        sets and maps do not mix in the algebra (CHAMP_EKIND);
 *                     filter and the compares on sets
 *   sets.random.<kind> a differential test against a model: adds, sets,
 *                     removes, lookups, p-forms, copies and clears on a
 *                     current set and older versions (u64, bytes, generic
 *                     under weak hashes: collision nodes of a set)
 *   sets.memory       a u64 set takes much less pool memory than a u64 map
 *                     with NULL values (1M keys at scale 1: printed)
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ------------------------------------------------------------------ */
/* The API, kind by kind                                               */
/* ------------------------------------------------------------------ */

typedef struct set_api {
    champ_key_kind kind;
    th_cbctx ctx;
    th_obj objs[64], probes[64];
    char str[64][16];
} set_api;

static champ_map *set_api_new(set_api *x) {
    champ_map *m = NULL;
    switch (x->kind) {
    case CHAMP_KEY_U64: CHECK_ST(champ_new_set_u64(&m), CHAMP_OK); break;
    case CHAMP_KEY_BYTES: CHECK_ST(champ_new_set_bytes(&m), CHAMP_OK); break;
    default: {
        champ_config c = th_generic_config(&x->ctx, true, NULL);
        c.set = true;
        c.val_retain = NULL;
        c.val_release = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        break;
    }
    }
    return m;
}

/* Key i through every kind's calls (bytes: the _str forms for odd i);
 * generic lookups and removes go through probes (equal objects). */
static champ_status set_api_add(set_api *x, champ_map *m, int i, bool *added) {
    switch (x->kind) {
    case CHAMP_KEY_U64: return champ_add_u64(m, (uint64_t)i * 1000003u, added);
    case CHAMP_KEY_BYTES:
        return i % 2 ? champ_add_str(m, x->str[i], added)
                     : champ_add_bytes(m, x->str[i], strlen(x->str[i]), added);
    default: return champ_add(m, &x->objs[i], added);
    }
}

static champ_status set_api_set(set_api *x, champ_map *m, int i, void *val,
                                champ_prior *pr) {
    switch (x->kind) {
    case CHAMP_KEY_U64: return champ_set_u64(m, (uint64_t)i * 1000003u, val, pr);
    case CHAMP_KEY_BYTES:
        return i % 2 ? champ_set_str(m, x->str[i], val, pr)
                     : champ_set_bytes(m, x->str[i], strlen(x->str[i]), val, pr);
    default: return champ_set(m, &x->objs[i], val, pr);
    }
}

static bool set_api_get(set_api *x, const champ_map *m, int i, void **v) {
    switch (x->kind) {
    case CHAMP_KEY_U64: return champ_get_u64(m, (uint64_t)i * 1000003u, v);
    case CHAMP_KEY_BYTES:
        return i % 2 ? champ_get_str(m, x->str[i], v)
                     : champ_get_bytes(m, x->str[i], strlen(x->str[i]), v);
    default: return champ_get(m, &x->probes[i], v);
    }
}

static bool set_api_contains(set_api *x, const champ_map *m, int i) {
    switch (x->kind) {
    case CHAMP_KEY_U64: return champ_contains_u64(m, (uint64_t)i * 1000003u);
    case CHAMP_KEY_BYTES:
        return i % 2 ? champ_contains_str(m, x->str[i])
                     : champ_contains_bytes(m, x->str[i], strlen(x->str[i]));
    default: return champ_contains(m, &x->probes[i]);
    }
}

static champ_status set_api_remove(set_api *x, champ_map *m, int i, champ_prior *pr) {
    switch (x->kind) {
    case CHAMP_KEY_U64: return champ_remove_u64(m, (uint64_t)i * 1000003u, pr);
    case CHAMP_KEY_BYTES:
        return i % 2 ? champ_remove_str(m, x->str[i], pr)
                     : champ_remove_bytes(m, x->str[i], strlen(x->str[i]), pr);
    default: return champ_remove(m, &x->probes[i], pr);
    }
}

static champ_status set_api_pset(set_api *x, const champ_map *m, int i, void *val,
                                 champ_map **out) {
    switch (x->kind) {
    case CHAMP_KEY_U64: return champ_pset_u64(m, (uint64_t)i * 1000003u, val, out);
    case CHAMP_KEY_BYTES:
        return i % 2 ? champ_pset_str(m, x->str[i], val, out)
                     : champ_pset_bytes(m, x->str[i], strlen(x->str[i]), val, out);
    default: return champ_pset(m, &x->objs[i], val, out);
    }
}

static champ_status set_api_premove(set_api *x, const champ_map *m, int i,
                                    champ_map **out) {
    switch (x->kind) {
    case CHAMP_KEY_U64: return champ_premove_u64(m, (uint64_t)i * 1000003u, out);
    case CHAMP_KEY_BYTES:
        return i % 2 ? champ_premove_str(m, x->str[i], out)
                     : champ_premove_bytes(m, x->str[i], strlen(x->str[i]), out);
    default: return champ_premove(m, &x->probes[i], out);
    }
}

/* The id of an iterated key, or -1. */
static int set_api_id(set_api *x, const champ_key *k) {
    for (int i = 0; i < 64; i++) {
        bool eq;
        switch (x->kind) {
        case CHAMP_KEY_U64: eq = k->u64 == (uint64_t)i * 1000003u; break;
        case CHAMP_KEY_BYTES:
            eq = k->len == strlen(x->str[i]) && memcmp(k->ptr, x->str[i], k->len) == 0;
            break;
        default: eq = k->ptr == &x->objs[i]; break;
        }
        if (eq)
            return i;
    }
    return -1;
}

typedef struct set_visit {
    set_api *x;
    unsigned long seen, bad;
} set_visit;

static int set_api_visit(const champ_key *k, void *v, void *ctx) {
    set_visit *c = ctx;
    int id = set_api_id(c->x, k);
    if (id < 0 || v != NULL || (c->seen >> id) & 1)
        c->bad++;
    else
        c->seen |= 1ul << id;
    return 0;
}

/* Keys 0..n-1 with step: which ids the set holds, as a bitmask. */
static void set_api_expect(set_api *x, const champ_map *m, unsigned long want,
                           const char *what) {
    size_t count = 0, bad = 0;
    for (int i = 0; i < 64; i++) {
        bool in = (want >> i) & 1;
        void *v = th_tok(0xdead);
        bool got = set_api_get(x, m, i, &v);
        if (got != in || (in ? v != NULL : v != th_tok(0xdead)) ||
            set_api_contains(x, m, i) != in)
            bad++;
        count += in;
    }
    CHECK(bad == 0 && champ_size(m) == count, "%s: %zu lookups wrong, size %zu, want %zu",
          what, bad, champ_size(m), count);
    /* iteration, one at a time and in batches, and foreach: NULL values */
    champ_iter it;
    champ_key k;
    void *v = th_tok(1);
    set_visit c = {x, 0, 0};
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    while (champ_iter_next(&it, &k, &v)) {
        set_api_visit(&k, v, &c);
        v = th_tok(1);
    }
    CHECK(c.bad == 0 && c.seen == want && champ_iter_status(&it) == CHAMP_OK,
          "%s: iteration: %lu wrong, seen %lx, want %lx", what, c.bad, c.seen, want);
    champ_key ks[5];
    void *vs[5];
    c.seen = c.bad = 0;
    champ_iter_init(&it, m);
    size_t got;
    while ((got = champ_iter_next_n(&it, ks, vs, 5)) > 0)
        for (size_t i = 0; i < got; i++)
            set_api_visit(&ks[i], vs[i], &c);
    CHECK(c.bad == 0 && c.seen == want, "%s: batches: %lu wrong", what, c.bad);
    c.seen = c.bad = 0;
    CHECK_ST(champ_foreach(m, set_api_visit, &c), CHAMP_OK);
    CHECK(c.bad == 0 && c.seen == want, "%s: foreach: %lu wrong", what, c.bad);
    CHECK_VALID(m, what);
}

static void set_api_run(champ_key_kind kind) {
    set_api *x = calloc(1, sizeof *x);
    if (!x)
        abort();
    x->kind = kind;
    x->ctx.hash_mode = TH_HASH_MOD64; /* generic: collision nodes */
    for (int i = 0; i < 64; i++) {
        /* hash id % 64: eight groups of eight colliding keys */
        x->objs[i].id = x->probes[i].id = (uint64_t)(i % 8) + 64 * (uint64_t)i;
        snprintf(x->str[i], sizeof x->str[i], "key-%d", i * 7);
    }
    champ_map *s = set_api_new(x), *m = NULL;
    if (!s) {
        free(x);
        return;
    }
    CHECK(champ_is_set(s) && champ_kind(s) == kind, "champ_is_set of a set");
    CHECK_ST(kind == CHAMP_KEY_BYTES ? champ_new_bytes(&m) : champ_new_u64(&m), CHAMP_OK);
    CHECK(!champ_is_set(m) && !champ_is_set(NULL), "champ_is_set of a map, of NULL");
    champ_free(m);
    unsigned long want = 0;
    bool gen = kind == CHAMP_KEY_GENERIC;
    /* add: new keys, then again (not added, nothing handed over) */
    for (int i = 0; i < 40; i++) {
        bool added = false;
        CHECK_ST(set_api_add(x, s, i, &added), CHAMP_OK);
        CHECK(added, "add of new key %d", i);
        if (gen)
            th_obj_hand_in(&x->objs[i]);
        want |= 1ul << i;
    }
    for (int i = 0; i < 40; i += 3) {
        bool added = true;
        CHECK_ST(set_api_add(x, s, i, &added), CHAMP_OK);
        CHECK(!added, "add of a present key %d", i);
    }
    set_api_expect(x, s, want, "after adds");
    /* set: NULL inserts or finds; a value is refused, the set unchanged */
    champ_prior pr = th_prior_junk();
    CHECK_ST(set_api_set(x, s, 40, NULL, &pr), CHAMP_OK);
    CHECK(!pr.found && pr.val == NULL && pr.key == NULL, "set NULL of a new key: prior");
    if (gen)
        th_obj_hand_in(&x->objs[40]);
    want |= 1ul << 40;
    pr = th_prior_junk();
    CHECK_ST(set_api_set(x, s, 5, NULL, &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == NULL, "set NULL of a present key: prior found, NULL");
    pr = th_prior_junk();
    CHECK_ST(set_api_set(x, s, 41, th_tok(3), &pr), CHAMP_EINVAL);
    CHECK(th_prior_untouched(&pr), "set with a value: prior untouched");
    CHECK_ST(set_api_set(x, s, 6, th_tok(3), NULL), CHAMP_EINVAL);
    champ_map *p = th_tok(1);
    CHECK_ST(set_api_pset(x, s, 42, th_tok(3), &p), CHAMP_EINVAL);
    CHECK(p == NULL, "pset with a value: *out NULL");
    set_api_expect(x, s, want, "after set (NULL and refused values)");
    /* remove: found, no value; generic: the stored key handed back */
    pr = th_prior_junk();
    CHECK_ST(set_api_remove(x, s, 7, &pr), CHAMP_OK);
    CHECK(pr.found && pr.val == NULL && pr.key == (gen ? (void *)&x->objs[7] : NULL),
          "remove: prior found, NULL value, the stored key");
    if (gen)
        th_obj_hand_back(pr.key);
    pr = th_prior_junk();
    CHECK_ST(set_api_remove(x, s, 7, &pr), CHAMP_OK);
    CHECK(!pr.found && pr.val == NULL && pr.key == NULL, "remove of an absent key");
    CHECK_ST(set_api_remove(x, s, 8, NULL), CHAMP_OK);
    want &= ~(1ul << 7 | 1ul << 8);
    set_api_expect(x, s, want, "after removes");
    /* p-forms and copies leave the source alone */
    champ_map *s2 = NULL, *s3 = NULL, *c = NULL;
    CHECK_ST(set_api_pset(x, s, 50, NULL, &s2), CHAMP_OK);
    if (gen)
        th_obj_hand_in(&x->objs[50]);
    CHECK_ST(set_api_premove(x, s2, 9, &s3), CHAMP_OK);
    CHECK_ST(champ_copy(s3, &c), CHAMP_OK);
    CHECK(champ_is_set(s2) && champ_is_set(s3) && champ_is_set(c), "versions are sets");
    bool added = false;
    CHECK_ST(set_api_add(x, c, 51, &added), CHAMP_OK);
    if (gen)
        th_obj_hand_in(&x->objs[51]);
    set_api_expect(x, s, want, "source of the p-forms");
    set_api_expect(x, s2, want | 1ul << 50, "pset");
    set_api_expect(x, s3, (want | 1ul << 50) & ~(1ul << 9), "premove");
    set_api_expect(x, c, ((want | 1ul << 50) & ~(1ul << 9)) | 1ul << 51, "copy, then add");
    CHECK_ST(champ_clear(c), CHAMP_OK);
    set_api_expect(x, c, 0, "cleared");
    CHECK(champ_is_set(c), "a cleared set is a set");
    CHECK_ST(set_api_add(x, c, 52, &added), CHAMP_OK);
    if (gen)
        th_obj_hand_in(&x->objs[52]);
    set_api_expect(x, c, 1ul << 52, "cleared, then add");
    /* new_like of a set is a set */
    champ_map *l = NULL;
    CHECK_ST(champ_new_like(s, &l), CHAMP_OK);
    CHECK(champ_is_set(l), "new_like of a set");
    CHECK_ST(set_api_set(x, l, 1, th_tok(1), NULL), CHAMP_EINVAL);
    champ_free(l);
    champ_pool *pool = champ_pool_of(s);
    champ_free(s3);
    champ_free(s);
    champ_free(c);
    CHECK_VALID(s2, "last version");
    champ_free(s2);
    if (gen) {
        long held = 0;
        for (int i = 0; i < 64; i++)
            held += (x->objs[i].held != 0) + (x->probes[i].held != 0);
        CHECK(held == 0 && x->ctx.underflows == 0 && x->ctx.null_calls == 0,
              "generic set: %ld keys unbalanced, %lu underflows, %lu NULL callbacks", held,
              x->ctx.underflows, x->ctx.null_calls);
    }
    (void)pool; /* private pool: gone with its last map */
    free(x);
}

static void test_set_api_u64(void) { set_api_run(CHAMP_KEY_U64); }
static void test_set_api_bytes(void) { set_api_run(CHAMP_KEY_BYTES); }
static void test_set_api_generic(void) { set_api_run(CHAMP_KEY_GENERIC); }

/* ------------------------------------------------------------------ */
/* Configs and kinds                                                   */
/* ------------------------------------------------------------------ */

static void test_set_config(void) {
    th_cbctx ctx;
    memset(&ctx, 0, sizeof ctx);
    champ_map *m = th_tok(1);
    for (int kind = 1; kind <= 3; kind++) {
        champ_config c = kind == CHAMP_KEY_GENERIC
                             ? th_generic_config(&ctx, true, NULL)
                             : th_kind_config((champ_key_kind)kind, 1, NULL);
        c.set = true;
        c.val_retain = th_obj_retain;
        c.val_release = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_EINVAL);
        CHECK(m == NULL, "refused set config: *out NULL");
        c.val_retain = NULL;
        c.val_release = th_obj_release;
        CHECK_ST(champ_new(&c, &m), CHAMP_EINVAL);
        c.val_release = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK); /* key callbacks are fine */
        CHECK(champ_is_set(m), "a set");
        champ_free(m);
    }
}

static bool set_keep_odd(const champ_key *k, void *v, void *ctx) {
    (void)ctx;
    return v == NULL && k->u64 % 2 == 1;
}

static void *set_never(const champ_key *k, void *a, void *b, void *ctx) {
    (void)k;
    (void)a;
    (void)b;
    ++*(int *)ctx;
    return th_tok(5);
}

static int set_count_diff(champ_change what, const champ_key *k, void *ov, void *nv,
                          void *ctx) {
    (void)what;
    (void)k;
    (void)ov;
    (void)nv;
    ++*(int *)ctx;
    return 0;
}

static void test_set_kinds(void) {
    champ_map *s = NULL, *t = NULL, *m = NULL, *r = th_tok(1);
    champ_config c = th_kind_config(CHAMP_KEY_U64, 9, NULL);
    c.set = true;
    CHECK_ST(champ_new(&c, &s), CHAMP_OK);
    CHECK_ST(champ_new_like(s, &t), CHAMP_OK);
    c.set = false;
    c.pool = champ_pool_of(s);
    CHECK_ST(champ_new(&c, &m), CHAMP_OK); /* same pool and seed: only the width differs */
    for (uint64_t k = 0; k < 100; k++) {
        CHECK_ST(champ_add_u64(s, k, NULL), CHAMP_OK);
        if (k >= 25 && k < 75) /* 50, 52, ..., 148: 25 of them in s */
            CHECK_ST(champ_add_u64(t, k * 2, NULL), CHAMP_OK);
        CHECK_ST(champ_set_u64(m, k, NULL, NULL), CHAMP_OK);
    }
    /* a map and a set do not mix, either way round */
    for (int i = 0; i < 2; i++) {
        const champ_map *x = i ? m : s, *y = i ? s : m;
        r = th_tok(1);
        CHECK_ST(champ_union(x, y, NULL, NULL, &r), CHAMP_EKIND);
        CHECK(r == NULL, "union of a map and a set: *out NULL");
        CHECK_ST(champ_intersect(x, y, NULL, NULL, &r), CHAMP_EKIND);
        CHECK_ST(champ_difference(x, y, &r), CHAMP_EKIND);
        CHECK_ST(champ_symdiff(x, y, &r), CHAMP_EKIND);
        int calls = 0;
        CHECK_ST(champ_diff(x, y, NULL, set_count_diff, &calls), CHAMP_EKIND);
        CHECK(calls == 0, "diff of a map and a set called back");
        CHECK(!champ_equal(x, y, NULL, NULL) && !champ_subset(x, y) && !champ_disjoint(x, y),
              "compares of a map and a set are false");
    }
    /* sets with sets: the resolver is never called, results are sets */
    int calls = 0;
    CHECK_ST(champ_union(s, t, set_never, &calls, &r), CHAMP_OK);
    CHECK(champ_is_set(r) && champ_size(r) == 125 && calls == 0,
          "union of sets: size %zu, %d resolver calls", champ_size(r), calls);
    CHECK_VALID(r, "union of sets");
    champ_free(r);
    CHECK_ST(champ_intersect(s, t, set_never, &calls, &r), CHAMP_OK);
    CHECK(champ_is_set(r) && champ_size(r) == 25 && calls == 0, "intersect of sets");
    champ_free(r);
    CHECK_ST(champ_filter(s, set_keep_odd, NULL, &r), CHAMP_OK);
    CHECK(champ_is_set(r) && champ_size(r) == 50 && champ_contains_u64(r, 7) &&
              !champ_contains_u64(r, 8),
          "filter of a set");
    CHECK(champ_subset(r, s) && !champ_subset(s, r) && !champ_disjoint(r, s),
          "subset, disjoint of sets");
    champ_free(r);
    champ_free(s);
    champ_free(t);
    champ_free(m);
}

/* ------------------------------------------------------------------ */
/* A differential test against a model                                 */
/* ------------------------------------------------------------------ */

typedef struct set_sc {
    const char *name;
    champ_key_kind kind;
    int hash_mode;
    size_t universe;
    long ops;
} set_sc;

static const set_sc set_scenarios[] = {
    {"u64", CHAMP_KEY_U64, 0, 4000, 60000},
    {"bytes", CHAMP_KEY_BYTES, 0, 3000, 40000},
    {"generic-mod64", CHAMP_KEY_GENERIC, TH_HASH_MOD64, 600, 30000},
    {"generic-deep", CHAMP_KEY_GENERIC, TH_HASH_DEEP, 2000, 40000},
};

#define SET_RING 4

typedef struct set_rnd {
    const set_sc *sc;
    size_t n;
    th_rng r;
    th_cbctx ctx;
    champ_pool *pool;
    uint64_t *u64;
    char (*bk)[24];
    th_obj *objs, *probes;
    champ_map *cur, *ring[SET_RING];
    unsigned char *in, *rin[SET_RING];
    size_t count, rcount[SET_RING];
    long op;
    bool broken;
} set_rnd;

#define SR_CHECK(cond, ...)                                               \
    do {                                                                  \
        bool sr_ok_ = (cond);                                             \
        CHECK(sr_ok_, __VA_ARGS__);                                       \
        if (!sr_ok_)                                                      \
            s->broken = true;                                             \
    } while (0)

static champ_status sr_add(set_rnd *s, champ_map *m, size_t id, bool *added) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_add_u64(m, s->u64[id], added);
    case CHAMP_KEY_BYTES: return champ_add_str(m, s->bk[id], added);
    default: return champ_add(m, &s->objs[id], added);
    }
}

static champ_status sr_set(set_rnd *s, champ_map *m, size_t id, champ_prior *pr) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_set_u64(m, s->u64[id], NULL, pr);
    case CHAMP_KEY_BYTES: return champ_set_bytes(m, s->bk[id], strlen(s->bk[id]), NULL, pr);
    default: return champ_set(m, &s->objs[id], NULL, pr);
    }
}

static champ_status sr_remove(set_rnd *s, champ_map *m, size_t id, champ_prior *pr) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_remove_u64(m, s->u64[id], pr);
    case CHAMP_KEY_BYTES: return champ_remove_str(m, s->bk[id], pr);
    default: return champ_remove(m, &s->probes[id], pr);
    }
}

static bool sr_contains(set_rnd *s, const champ_map *m, size_t id) {
    void *v = th_tok(1);
    bool got;
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: got = champ_get_u64(m, s->u64[id], &v); break;
    case CHAMP_KEY_BYTES: got = champ_get_bytes(m, s->bk[id], strlen(s->bk[id]), &v); break;
    default: got = champ_get(m, &s->probes[id], &v); break;
    }
    if (got ? v != NULL : v != th_tok(1)) {
        CHECK(false, "%s: get of id %zu: value %p", s->sc->name, id, v);
        s->broken = true;
    }
    return got;
}

static champ_status sr_pset(set_rnd *s, const champ_map *m, size_t id, champ_map **out) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_pset_u64(m, s->u64[id], NULL, out);
    case CHAMP_KEY_BYTES: return champ_pset_str(m, s->bk[id], NULL, out);
    default: return champ_pset(m, &s->objs[id], NULL, out);
    }
}

static champ_status sr_premove(set_rnd *s, const champ_map *m, size_t id, champ_map **out) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_premove_u64(m, s->u64[id], out);
    case CHAMP_KEY_BYTES: return champ_premove_bytes(m, s->bk[id], strlen(s->bk[id]), out);
    default: return champ_premove(m, &s->probes[id], out);
    }
}

static size_t sr_id(set_rnd *s, const champ_key *k) {
    size_t id;
    switch (s->sc->kind) {
    case CHAMP_KEY_U64:
        id = (size_t)(k->u64 >> 32);
        return id < s->n && s->u64[id] == k->u64 ? id : (size_t)-1;
    case CHAMP_KEY_BYTES:
        if (!k->ptr || k->len < 2)
            return (size_t)-1;
        id = (size_t)strtoul((const char *)k->ptr + 1, NULL, 10);
        return id < s->n && strlen(s->bk[id]) == k->len &&
                       memcmp(s->bk[id], k->ptr, k->len) == 0
                   ? id
                   : (size_t)-1;
    default: {
        const th_obj *o = k->ptr;
        id = o ? (size_t)(o->id - 1) : (size_t)-1;
        return id < s->n && o == &s->objs[id] ? id : (size_t)-1;
    }
    }
}

static void sr_compare(set_rnd *s, const champ_map *m, const unsigned char *in, size_t count,
                       const char *what) {
    size_t bad = 0;
    for (size_t id = 0; id < s->n; id++)
        bad += sr_contains(s, m, id) != (bool)in[id];
    unsigned char *seen = calloc(s->n, 1);
    champ_iter it;
    champ_key k;
    void *v;
    size_t got = 0;
    champ_iter_init(&it, m);
    while (champ_iter_next(&it, &k, &v)) {
        size_t id = sr_id(s, &k);
        got++;
        if (id == (size_t)-1 || seen[id] || !in[id] || v != NULL)
            bad++;
        else
            seen[id] = 1;
    }
    free(seen);
    SR_CHECK(bad == 0 && got == count && champ_size(m) == count,
             "%s: %zu disagree with the model, %zu iterated, size %zu, want %zu, op %ld",
             what, bad, got, champ_size(m), count, s->op);
    champ_status st = champ_validate(m);
    SR_CHECK(st == CHAMP_OK, "%s: validate %s, op %ld", what, th_status_name(st), s->op);
}

static void sr_run(const set_sc *sc, uint64_t seed) {
    set_rnd st, *s = &st;
    memset(s, 0, sizeof *s);
    s->sc = sc;
    s->n = sc->universe;
    s->r.s = seed;
    s->ctx.hash_mode = sc->hash_mode;
    th_set_seed(seed);
    s->u64 = malloc(s->n * sizeof *s->u64);
    s->bk = malloc(s->n * sizeof *s->bk);
    s->objs = calloc(s->n, sizeof *s->objs);
    s->probes = calloc(s->n, sizeof *s->probes);
    s->in = calloc(s->n, 1);
    for (int i = 0; i < SET_RING; i++)
        s->rin[i] = calloc(s->n, 1);
    for (size_t i = 0; i < s->n; i++) {
        s->u64[i] = (uint64_t)i << 32 | (th_mix64(i) & 0xffffffffu);
        snprintf(s->bk[i], sizeof s->bk[i], "k%u%c%x", (unsigned)i, 'a' + (int)(i % 26),
                 (unsigned)(th_mix64(i) & 0xfff));
        s->objs[i].id = s->probes[i].id = i + 1;
    }
    CHECK_ST(champ_pool_new(NULL, &s->pool), CHAMP_OK);
    champ_config cfg = sc->kind == CHAMP_KEY_GENERIC ? th_generic_config(&s->ctx, true, s->pool)
                                                     : th_kind_config(sc->kind, seed, s->pool);
    cfg.set = true;
    cfg.val_retain = NULL;
    cfg.val_release = NULL;
    CHECK_ST(champ_new(&cfg, &s->cur), CHAMP_OK);
    bool gen = sc->kind == CHAMP_KEY_GENERIC;
    long ops = th_iters(sc->ops, 1500);
    for (s->op = 0; s->op < ops && !s->broken && s->cur; s->op++) {
        unsigned d = (unsigned)th_below(&s->r, 1000);
        size_t id = (size_t)th_below(&s->r, s->n);
        champ_status rs;
        if (d < 300) {
            bool added = !s->in[id];
            rs = sr_add(s, s->cur, id, th_chance(&s->r, 50) ? &added : NULL);
            SR_CHECK(rs == CHAMP_OK && added == !s->in[id], "add id %zu: %s, added %d, op %ld",
                     id, th_status_name(rs), (int)added, s->op);
            if (!s->in[id]) {
                if (gen)
                    th_obj_hand_in(&s->objs[id]);
                s->in[id] = 1;
                s->count++;
            }
        } else if (d < 400) {
            champ_prior pr = th_prior_junk();
            rs = sr_set(s, s->cur, id, &pr);
            SR_CHECK(rs == CHAMP_OK && pr.found == (bool)s->in[id] && pr.val == NULL,
                     "set NULL id %zu: %s, op %ld", id, th_status_name(rs), s->op);
            if (!s->in[id]) {
                if (gen)
                    th_obj_hand_in(&s->objs[id]);
                s->in[id] = 1;
                s->count++;
            }
        } else if (d < 650) {
            champ_prior pr = th_prior_junk();
            bool want_pr = th_chance(&s->r, 50);
            rs = sr_remove(s, s->cur, id, want_pr ? &pr : NULL);
            SR_CHECK(rs == CHAMP_OK && (!want_pr || (pr.found == (bool)s->in[id] && !pr.val)),
                     "remove id %zu: %s, op %ld", id, th_status_name(rs), s->op);
            if (want_pr && gen && pr.found) {
                SR_CHECK(pr.key == &s->objs[id], "remove: the stored key, op %ld", s->op);
                th_obj_hand_back(pr.key);
            }
            if (s->in[id]) {
                s->in[id] = 0;
                s->count--;
            }
        } else if (d < 800) {
            SR_CHECK(sr_contains(s, s->cur, id) == (bool)s->in[id], "contains id %zu, op %ld",
                     id, s->op);
        } else if (d < 990) {
            /* a p-form or a copy; the old set sometimes kept in the ring */
            champ_map *next = NULL;
            unsigned k = (unsigned)th_below(&s->r, 10);
            bool was = s->in[id];
            rs = k < 5 ? sr_pset(s, s->cur, id, &next)
                 : k < 9 ? sr_premove(s, s->cur, id, &next)
                         : champ_copy(s->cur, &next);
            SR_CHECK(rs == CHAMP_OK && next, "p-form %u: %s, op %ld", k, th_status_name(rs),
                     s->op);
            if (!next)
                break;
            SR_CHECK(sr_contains(s, s->cur, id) == was, "p-form changed its source, op %ld",
                     s->op);
            if (th_chance(&s->r, 30)) {
                int slot = (int)th_below(&s->r, SET_RING);
                if (s->ring[slot]) {
                    sr_compare(s, s->ring[slot], s->rin[slot], s->rcount[slot], "old version");
                    champ_free(s->ring[slot]);
                }
                s->ring[slot] = s->cur;
                memcpy(s->rin[slot], s->in, s->n);
                s->rcount[slot] = s->count;
            } else {
                champ_free(s->cur);
            }
            s->cur = next;
            if (k < 5 && !was) {
                if (gen)
                    th_obj_hand_in(&s->objs[id]);
                s->in[id] = 1;
                s->count++;
            } else if (k >= 5 && k < 9 && was) {
                s->in[id] = 0;
                s->count--;
            }
        } else if (d < 995) {
            rs = sr_set(s, s->cur, id, NULL);
            champ_status bad = CHAMP_OK;
            switch (sc->kind) {
            case CHAMP_KEY_U64: bad = champ_set_u64(s->cur, s->u64[id], th_tok(1), NULL); break;
            case CHAMP_KEY_BYTES: bad = champ_set_str(s->cur, s->bk[id], th_tok(1), NULL); break;
            default: bad = champ_set(s->cur, &s->objs[id], th_tok(1), NULL); break;
            }
            SR_CHECK(rs == CHAMP_OK && bad == CHAMP_EINVAL, "set with a value: %s, op %ld",
                     th_status_name(bad), s->op);
            if (!s->in[id]) {
                if (gen)
                    th_obj_hand_in(&s->objs[id]);
                s->in[id] = 1;
                s->count++;
            }
        } else if (th_chance(&s->r, 30)) {
            SR_CHECK(champ_clear(s->cur) == CHAMP_OK, "clear, op %ld", s->op);
            memset(s->in, 0, s->n);
            s->count = 0;
        }
        if ((s->op + 1) % th_iters(10000, 500) == 0 && !s->broken)
            sr_compare(s, s->cur, s->in, s->count, "current");
    }
    if (!s->broken)
        sr_compare(s, s->cur, s->in, s->count, "current at the end");
    for (int i = 0; i < SET_RING && !s->broken; i++)
        if (s->ring[i])
            sr_compare(s, s->ring[i], s->rin[i], s->rcount[i], "old version at the end");
    champ_free(s->cur);
    for (int i = 0; i < SET_RING; i++)
        champ_free(s->ring[i]);
    CHECK(th_pool_live(s->pool) == 0, "%s: pool not drained", sc->name);
    if (gen) {
        size_t held = 0;
        for (size_t i = 0; i < s->n; i++)
            held += (s->objs[i].held != 0) + (s->probes[i].held != 0);
        CHECK(held == 0 && s->ctx.underflows == 0 && s->ctx.null_calls == 0,
              "%s: %zu keys unbalanced, %lu underflows, %lu NULL callbacks", sc->name, held,
              s->ctx.underflows, s->ctx.null_calls);
    }
    champ_pool_free(s->pool);
    printf("  sets random %-14s %7ld ops%s\n", sc->name, s->op,
           s->broken ? " (stopped at the first failure)" : "");
    free(s->u64);
    free(s->bk);
    free(s->objs);
    free(s->probes);
    free(s->in);
    for (int i = 0; i < SET_RING; i++)
        free(s->rin[i]);
    th_set_seed(0);
}

static void test_set_random_u64(void) { sr_run(&set_scenarios[0], 0x5e70001ULL); }
static void test_set_random_bytes(void) { sr_run(&set_scenarios[1], 0x5e70002ULL); }
static void test_set_random_mod64(void) { sr_run(&set_scenarios[2], 0x5e70003ULL); }
static void test_set_random_deep(void) { sr_run(&set_scenarios[3], 0x5e70004ULL); }

/* ------------------------------------------------------------------ */
/* Memory                                                              */
/* ------------------------------------------------------------------ */

/* A u64 set stores a key in 8 bytes, a map entry takes 16: with the
 * nodes' headers and child pointers the set needs well under two thirds
 * of the map's pool memory. */
static void test_set_memory(void) {
    long n = th_iters(1000000, 20000);
    champ_map *s = NULL, *m = NULL;
    /* private pools (default maps share one pool: their bytes mix) */
    champ_config cs = th_kind_config(CHAMP_KEY_U64, 5, NULL), cm = cs;
    cs.set = true;
    CHECK_ST(champ_new(&cs, &s), CHAMP_OK);
    CHECK_ST(champ_new(&cm, &m), CHAMP_OK);
    if (!s || !m)
        return;
    for (long i = 0; i < n; i++) {
        uint64_t k = th_mix64((uint64_t)i);
        CHECK(champ_add_u64(s, k, NULL) == CHAMP_OK && champ_set_u64(m, k, NULL, NULL) == CHAMP_OK,
              "insert %ld", i);
    }
    size_t ls = th_pool_live(champ_pool_of(s)), lm = th_pool_live(champ_pool_of(m));
    champ_stats ss = th_stats(s), sm = th_stats(m);
    printf("  sets memory: %ld u64 keys: set %zu bytes (%.1f per key, %.1f in nodes), map "
           "with NULL values %zu bytes (%.1f per key, %.1f in nodes): set/map %.3f\n",
           n, ls, (double)ls / (double)n, ss.bytes_per_entry, lm, (double)lm / (double)n,
           sm.bytes_per_entry, (double)ls / (double)lm);
    CHECK(champ_size(s) == (size_t)n && champ_size(m) == (size_t)n, "sizes");
    CHECK((double)ls <= 0.65 * (double)lm, "a set of %ld u64 keys takes %zu bytes, the map "
          "%zu: more than 0.65 of it", n, ls, lm);
    champ_free(s);
    champ_free(m);
}

const th_test th_tests_sets[] = {
    {"sets.api.u64", test_set_api_u64},
    {"sets.api.bytes", test_set_api_bytes},
    {"sets.api.generic", test_set_api_generic},
    {"sets.config", test_set_config},
    {"sets.kinds", test_set_kinds},
    {"sets.random.u64", test_set_random_u64},
    {"sets.random.bytes", test_set_random_bytes},
    {"sets.random.generic-mod64", test_set_random_mod64},
    {"sets.random.generic-deep", test_set_random_deep},
    {"sets.memory", test_set_memory},
};
const size_t th_tests_sets_count = sizeof th_tests_sets / sizeof th_tests_sets[0];

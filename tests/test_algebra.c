/*
 * test_algebra.c - comparing and combining versions (champ.h, "Comparing
 * and combining versions") against a model that always tells the truth.
 *
 * algebra.<scenario>: a randomized differential test.  Keys are ids of a
 * fixed universe (u64 keys, byte strings with embedded NULs, or generic
 * th_obj keys under a good, a mod-64, a 10-bit or a deep-path hash), so a
 * model of a map is an array indexed by id.  Each round builds two maps a
 * and b in one of these relationships:
 *   versions   b = a after a few p-form or copy+update changes (they share
 *              all but the changed paths)
 *   branches   a and b both derived from one base by a few changes each
 *   like       b built on its own with champ_new_like(a) (fresh nodes,
 *              equal shapes where the contents agree)
 *   samecfg    b of a second type made from the same config (same seed,
 *              pool and callbacks): the fast paths, across types
 *   seed       b hashes differently (another seed; generic: another ctx):
 *              key-by-key paths everywhere
 *   pool       b in another pool: compares fast, combines key by key
 *   empty-a, empty-b, copy (b = champ_copy(a)), same (b is a)
 * then runs every operation (equal with and without a value equality,
 * diff in full and stopped early, subset, disjoint, union and intersect
 * with and without a resolver, difference both ways, symdiff, filter with
 * several fractions kept) and checks each against the model: the result's
 * contents, champ_size, champ_validate (canonical form and the pool-wide
 * reference census), which callbacks ran and with what, the inputs
 * unchanged, and on the fast paths that a result equal to an input is
 * that input's root.  The callbacks given to the operations try to update
 * the inputs (CHAMP_EBUSY) and copy them (allowed).  Every round ends with
 * both pools drained and every counted key and value balanced.
 *
 * The named tests after it: sharing between versions (nodes shared, hash
 * and equal calls), the callback contract (EBUSY, deferred frees), maps of
 * one pool with the same hashing but other reference callbacks, types
 * without retain callbacks, misuse; and the OOM sweeps: every combining
 * operation with the pool's k-th block allocation failing (k = 0, 1, ...
 * until it succeeds) and with a failing backing allocator.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
/* The test binary compiles the library in: the sharing checks compare
 * root pointers. */
#include "../src/internal.h"

#define ALG_NV 61 /* counted value objects */

typedef struct alg_sc {
    const char *name;
    champ_key_kind kind;
    bool set;
    bool counted;      /* counted values (maps) and generic keys */
    int hash_mode;     /* generic */
    unsigned mask_bits;/* TH_HASH_BITS */
    size_t universe;
    long rounds;       /* at scale 1 */
} alg_sc;

static const alg_sc alg_scenarios[] = {
    {"u64", CHAMP_KEY_U64, false, false, 0, 0, 3000, 60},
    {"u64-set", CHAMP_KEY_U64, true, false, 0, 0, 3000, 60},
    {"u64-counted", CHAMP_KEY_U64, false, true, 0, 0, 3000, 40},
    {"bytes", CHAMP_KEY_BYTES, false, false, 0, 0, 3000, 40},
    {"bytes-set", CHAMP_KEY_BYTES, true, false, 0, 0, 3000, 40},
    {"generic", CHAMP_KEY_GENERIC, false, true, TH_HASH_GOOD, 0, 3000, 40},
    {"generic-set", CHAMP_KEY_GENERIC, true, true, TH_HASH_GOOD, 0, 3000, 40},
    {"generic-mod64", CHAMP_KEY_GENERIC, false, true, TH_HASH_MOD64, 0, 700, 30},
    {"generic-mod64-set", CHAMP_KEY_GENERIC, true, true, TH_HASH_MOD64, 0, 700, 30},
    {"generic-10bits", CHAMP_KEY_GENERIC, false, true, TH_HASH_BITS, 10, 3000, 30},
    {"generic-10bits-set", CHAMP_KEY_GENERIC, true, true, TH_HASH_BITS, 10, 3000, 30},
    {"generic-deep", CHAMP_KEY_GENERIC, false, true, TH_HASH_DEEP, 0, 2000, 30},
    {"generic-deep-set", CHAMP_KEY_GENERIC, true, true, TH_HASH_DEEP, 0, 2000, 30},
};
enum { ALG_NSC = sizeof alg_scenarios / sizeof alg_scenarios[0] };

enum {
    REL_VERSIONS, REL_BRANCHES, REL_LIKE, REL_SAMECFG, REL_SEED, REL_POOL,
    REL_EMPTY_A, REL_EMPTY_B, REL_COPY, REL_SAME, REL_N
};
static const char *const rel_name[REL_N] = {
    "versions", "branches", "like", "samecfg", "seed", "pool",
    "empty-a", "empty-b", "copy", "same",
};

/* The truth about one map. */
typedef struct alg_model {
    unsigned char *in;
    void **val;
    size_t count;
} alg_model;

typedef struct alg {
    const alg_sc *sc;
    size_t n;
    th_rng r;
    th_cbctx ctx, ctx2; /* ctx2: a second generic hashing */
    champ_pool *pool, *pool2;
    champ_config cfg;
    /* universe */
    uint64_t *u64;
    unsigned char (*bk)[24];
    size_t *blen;
    th_obj *objs, *probes, *vals;
    /* the operation running: its inputs, and what its callbacks saw */
    const champ_map *ma, *mb;
    const alg_model *A, *B;
    unsigned *calls;     /* per id */
    unsigned char *dwhat;/* diff: the change reported per id */
    unsigned long ncalls, bad;
    uint64_t salt;
    unsigned pct;        /* filter: percent kept */
    unsigned long stop_at;
    bool try_busy, tried;
    unsigned long busy_wrong;
    /* the round */
    int rel;
    bool fast;           /* same hashing, pool and callbacks */
    long round;
    char what[128];
    bool broken;
} alg;

#define ALG_CHECK(cond, ...)                                              \
    do {                                                                  \
        bool alg_ok_ = (cond);                                            \
        CHECK(alg_ok_, __VA_ARGS__);                                      \
        if (!alg_ok_)                                                     \
            s->broken = true;                                             \
    } while (0)

/* ------------------------------------------------------------------ */
/* Universe: the key of an id, the id of a key                         */
/* ------------------------------------------------------------------ */

static void alg_universe(alg *s) {
    size_t n = s->n;
    s->u64 = malloc(n * sizeof *s->u64);
    s->bk = malloc(n * sizeof *s->bk);
    s->blen = malloc(n * sizeof *s->blen);
    s->objs = calloc(n, sizeof *s->objs);
    s->probes = calloc(n, sizeof *s->probes);
    s->vals = calloc(ALG_NV, sizeof *s->vals);
    s->calls = calloc(n, sizeof *s->calls);
    s->dwhat = calloc(n, 1);
    if (!s->u64 || !s->bk || !s->blen || !s->objs || !s->probes || !s->vals ||
        !s->calls || !s->dwhat) {
        fprintf(stderr, "test_algebra: out of memory\n");
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t x = th_mix64(i ^ 0xa15e);
        /* the id in the high half: small and extreme keys included */
        s->u64[i] = ((uint64_t)i << 32) | (i < 8 ? i : (x & 0xffffffffu));
        if (i == 0) {
            s->blen[i] = 0; /* the empty key */
        } else {
            size_t len = 4 + (size_t)(x % 17);
            for (size_t j = 0; j < 4; j++)
                s->bk[i][j] = (unsigned char)(i >> (8 * j));
            for (size_t j = 4; j < len; j++)
                s->bk[i][j] = (unsigned char)((x >> (j * 3)) & (j % 3 ? 0xff : 0x3));
            s->blen[i] = len;
        }
        s->objs[i].id = s->probes[i].id = i + 1;
    }
    for (size_t i = 0; i < ALG_NV; i++)
        s->vals[i].id = 1000000 + i;
}

static void alg_universe_free(alg *s) {
    free(s->u64);
    free(s->bk);
    free(s->blen);
    free(s->objs);
    free(s->probes);
    free(s->vals);
    free(s->calls);
    free(s->dwhat);
}

/* The id of a key reported by champ, or (size_t)-1. */
static size_t alg_id(const alg *s, const champ_key *k) {
    size_t id;
    switch (s->sc->kind) {
    case CHAMP_KEY_U64:
        id = (size_t)(k->u64 >> 32);
        return id < s->n && s->u64[id] == k->u64 ? id : (size_t)-1;
    case CHAMP_KEY_BYTES:
        if (k->len == 0)
            return k->ptr ? 0 : (size_t)-1;
        if (!k->ptr || k->len < 4)
            return (size_t)-1;
        id = 0;
        for (size_t j = 0; j < 4; j++)
            id |= (size_t)((const unsigned char *)k->ptr)[j] << (8 * j);
        return id < s->n && s->blen[id] == k->len &&
                       memcmp(k->ptr, s->bk[id], k->len) == 0 &&
                       ((const char *)k->ptr)[k->len] == '\0'
                   ? id
                   : (size_t)-1;
    default: {
        const th_obj *o = k->ptr;
        if (!o || k->len != 0)
            return (size_t)-1;
        id = (size_t)(o->id - 1);
        return id < s->n && (o == &s->objs[id] || o == &s->probes[id])
                   ? id
                   : (size_t)-1;
    }
    }
}

/* ------------------------------------------------------------------ */
/* Per-kind calls                                                      */
/* ------------------------------------------------------------------ */

static bool alg_get(alg *s, const champ_map *m, size_t id, void **v) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_get_u64(m, s->u64[id], v);
    case CHAMP_KEY_BYTES: return champ_get_bytes(m, s->bk[id], s->blen[id], v);
    default: return champ_get(m, &s->probes[id], v);
    }
}

/* Inserts or replaces id (probe: a generic key through its equal twin);
 * the map takes the value and, when new, the key. */
static champ_status alg_put(alg *s, champ_map *m, alg_model *mm, size_t id,
                            void *val, bool probe) {
    champ_status st;
    bool was = mm->in[id];
    void *gk = probe ? (void *)&s->probes[id] : (void *)&s->objs[id];
    bool add = s->sc->set && th_chance(&s->r, 50);
    switch (s->sc->kind) {
    case CHAMP_KEY_U64:
        st = add ? champ_add_u64(m, s->u64[id], NULL)
                 : champ_set_u64(m, s->u64[id], val, NULL);
        break;
    case CHAMP_KEY_BYTES:
        st = add ? champ_add_bytes(m, s->bk[id], s->blen[id], NULL)
                 : champ_set_bytes(m, s->bk[id], s->blen[id], val, NULL);
        break;
    default:
        st = add ? champ_add(m, gk, NULL) : champ_set(m, gk, val, NULL);
        break;
    }
    if (st == CHAMP_OK) {
        if (s->sc->counted && s->sc->kind == CHAMP_KEY_GENERIC && !was)
            th_obj_hand_in(gk);
        if (s->sc->counted && !s->sc->set)
            th_obj_hand_in(val);
        if (!was)
            mm->count++;
        mm->in[id] = 1;
        mm->val[id] = val;
    }
    return st;
}

static champ_status alg_del(alg *s, champ_map *m, alg_model *mm, size_t id) {
    champ_status st;
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: st = champ_remove_u64(m, s->u64[id], NULL); break;
    case CHAMP_KEY_BYTES: st = champ_remove_bytes(m, s->bk[id], s->blen[id], NULL); break;
    default: st = champ_remove(m, &s->probes[id], NULL); break;
    }
    if (st == CHAMP_OK && mm->in[id]) {
        mm->in[id] = 0;
        mm->val[id] = NULL;
        mm->count--;
    }
    return st;
}

static champ_status alg_pset(alg *s, const champ_map *m, alg_model *mm, size_t id,
                             void *val, champ_map **out) {
    champ_status st;
    bool was = mm->in[id];
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: st = champ_pset_u64(m, s->u64[id], val, out); break;
    case CHAMP_KEY_BYTES:
        st = champ_pset_bytes(m, s->bk[id], s->blen[id], val, out);
        break;
    default: st = champ_pset(m, &s->objs[id], val, out); break;
    }
    if (st == CHAMP_OK) {
        if (s->sc->counted && s->sc->kind == CHAMP_KEY_GENERIC && !was)
            th_obj_hand_in(&s->objs[id]);
        if (s->sc->counted && !s->sc->set)
            th_obj_hand_in(val);
        if (!was)
            mm->count++;
        mm->in[id] = 1;
        mm->val[id] = val;
    }
    return st;
}

static champ_status alg_premove(alg *s, const champ_map *m, alg_model *mm, size_t id,
                                champ_map **out) {
    champ_status st;
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: st = champ_premove_u64(m, s->u64[id], out); break;
    case CHAMP_KEY_BYTES:
        st = champ_premove_bytes(m, s->bk[id], s->blen[id], out);
        break;
    default: st = champ_premove(m, &s->probes[id], out); break;
    }
    if (st == CHAMP_OK && mm->in[id]) {
        mm->in[id] = 0;
        mm->val[id] = NULL;
        mm->count--;
    }
    return st;
}

/* ------------------------------------------------------------------ */
/* Models                                                              */
/* ------------------------------------------------------------------ */

static void alg_model_init(alg *s, alg_model *m) {
    m->in = calloc(s->n, 1);
    m->val = calloc(s->n, sizeof *m->val);
    m->count = 0;
    if (!m->in || !m->val) {
        fprintf(stderr, "test_algebra: out of memory\n");
        abort();
    }
}

static void alg_model_free(alg_model *m) {
    free(m->in);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static void alg_model_copy(alg *s, alg_model *dst, const alg_model *src) {
    memcpy(dst->in, src->in, s->n);
    memcpy(dst->val, src->val, s->n * sizeof *dst->val);
    dst->count = src->count;
}

static void alg_model_clear(alg *s, alg_model *m) {
    memset(m->in, 0, s->n);
    memset(m->val, 0, s->n * sizeof *m->val);
    m->count = 0;
}

/* Same keys and the same value pointers. */
static bool alg_model_same(alg *s, const alg_model *x, const alg_model *y) {
    if (x->count != y->count)
        return false;
    for (size_t i = 0; i < s->n; i++)
        if (x->in[i] != y->in[i] || (x->in[i] && x->val[i] != y->val[i]))
            return false;
    return true;
}

static void *alg_value(alg *s) {
    if (s->sc->set)
        return NULL;
    if (th_chance(&s->r, 4))
        return NULL;
    if (s->sc->counted)
        return &s->vals[th_below(&s->r, ALG_NV)];
    return th_tok(th_below(&s->r, 40)); /* few values: equal ones are common */
}

/* A third value for a key in both (the resolver's own choice). */
static void *alg_third(alg *s, size_t id) {
    if (s->sc->set)
        return NULL;
    if (s->sc->counted)
        return &s->vals[(id * 7 + s->salt) % ALG_NV];
    return th_tok(100000 + id);
}

/* The class a custom value equality compares. */
static unsigned alg_val_class(const alg *s, const void *v) {
    if (s->sc->counted)
        return (unsigned)(((const th_obj *)v)->id % 5);
    return (unsigned)(((uintptr_t)v >> 4) % 5);
}

static bool alg_vals_equal(const alg *s, const void *x, const void *y, bool custom) {
    if (x == y)
        return true;
    if (!custom || !x || !y)
        return false;
    return alg_val_class(s, x) == alg_val_class(s, y);
}

/* A random model: size ids drawn from [lo, hi). */
static void alg_model_random(alg *s, alg_model *m, size_t size, size_t lo, size_t hi) {
    alg_model_clear(s, m);
    if (size > (hi - lo) * 7 / 10)
        size = (hi - lo) * 7 / 10;
    while (m->count < size) {
        size_t id = lo + (size_t)th_below(&s->r, hi - lo);
        if (m->in[id])
            continue;
        m->in[id] = 1;
        m->val[id] = alg_value(s);
        m->count++;
    }
}

static size_t alg_random_size(alg *s) {
    size_t max = (size_t)th_iters(2000, 150);
    unsigned d = (unsigned)th_below(&s->r, 100);
    if (d < 4)
        return 0;
    if (d < 12)
        return 1 + (size_t)th_below(&s->r, 3);
    if (d < 35)
        return 4 + (size_t)th_below(&s->r, 40);
    return 40 + (size_t)th_below(&s->r, max - 40);
}

/* ------------------------------------------------------------------ */
/* Building maps                                                       */
/* ------------------------------------------------------------------ */

static champ_map *alg_new(alg *s, const champ_config *cfg) {
    champ_map *m = NULL;
    champ_status st = champ_new(cfg, &m);
    ALG_CHECK(st == CHAMP_OK, "champ_new: %s", th_status_name(st));
    return m;
}

/* Inserts want's entries (in a random order) into the empty map m; mm
 * (cleared here) follows. */
static void alg_fill(alg *s, champ_map *m, alg_model *mm, const alg_model *want,
                     bool probes) {
    size_t *ids = malloc((want->count + 1) * sizeof *ids), k = 0;
    if (!ids)
        abort();
    for (size_t i = 0; i < s->n; i++)
        if (want->in[i])
            ids[k++] = i;
    for (size_t i = k; i > 1; i--) {
        size_t j = (size_t)th_below(&s->r, i);
        size_t t = ids[i - 1];
        ids[i - 1] = ids[j];
        ids[j] = t;
    }
    alg_model_clear(s, mm);
    for (size_t i = 0; i < k && !s->broken; i++) {
        champ_status st = alg_put(s, m, mm, ids[i], want->val[ids[i]],
                                  probes && th_chance(&s->r, 50));
        ALG_CHECK(st == CHAMP_OK, "fill: %s", th_status_name(st));
    }
    free(ids);
}

/* A version of m: changes made with p-forms (a chain of versions) or on a
 * copy in place.  mm starts as m's model and follows. */
static champ_map *alg_derive(alg *s, const champ_map *m, alg_model *mm, size_t changes) {
    champ_map *cur = NULL;
    champ_status st = champ_copy(m, &cur);
    ALG_CHECK(st == CHAMP_OK, "copy: %s", th_status_name(st));
    if (!cur)
        return NULL;
    bool pforms = th_chance(&s->r, 50);
    for (size_t i = 0; i < changes && !s->broken; i++) {
        size_t id = (size_t)th_below(&s->r, s->n);
        bool remove = mm->in[id] ? th_chance(&s->r, 40) : th_chance(&s->r, 10);
        void *val = alg_value(s);
        if (pforms) {
            champ_map *next = NULL;
            st = remove ? alg_premove(s, cur, mm, id, &next)
                        : alg_pset(s, cur, mm, id, val, &next);
            ALG_CHECK(st == CHAMP_OK, "derive: p-form %s", th_status_name(st));
            champ_free(cur);
            cur = next;
        } else {
            st = remove ? alg_del(s, cur, mm, id) : alg_put(s, cur, mm, id, val, false);
            ALG_CHECK(st == CHAMP_OK, "derive: update %s", th_status_name(st));
        }
    }
    return cur;
}

/* ------------------------------------------------------------------ */
/* Checking a map against its model                                    */
/* ------------------------------------------------------------------ */

typedef struct alg_visit {
    alg *s;
    const alg_model *want;
    unsigned char *seen;
    size_t count, bad;
} alg_visit;

static void alg_expect(alg *s, const champ_map *m, const alg_model *want,
                       bool validate, const char *what) {
    if (!m) {
        ALG_CHECK(false, "%s: no map (%s, round %ld)", what, s->what, s->round);
        return;
    }
    ALG_CHECK(champ_size(m) == want->count, "%s: size %zu, want %zu (%s, round %ld)",
              what, champ_size(m), want->count, s->what, s->round);
    size_t bad = 0, first = (size_t)-1;
    for (size_t id = 0; id < s->n; id++) {
        void *v = th_tok(0xdead);
        bool found = alg_get(s, m, id, &v);
        bool ok = want->in[id] ? found && v == want->val[id]
                               : !found && v == th_tok(0xdead);
        if (!ok && bad++ == 0)
            first = id;
    }
    ALG_CHECK(bad == 0, "%s: %zu lookups disagree with the model, first id %zu "
              "(want in %d) (%s, round %ld)", what, bad, first,
              first < s->n ? (int)want->in[first] : -1, s->what, s->round);
    /* iteration: every entry once */
    unsigned char *seen = calloc(s->n, 1);
    champ_iter it;
    champ_key k;
    void *v;
    size_t count = 0;
    bad = 0;
    champ_iter_init(&it, m);
    while (champ_iter_next(&it, &k, &v)) {
        size_t id = alg_id(s, &k);
        count++;
        if (id == (size_t)-1 || seen[id] || !want->in[id] || want->val[id] != v) {
            bad++;
            continue;
        }
        seen[id] = 1;
    }
    free(seen);
    ALG_CHECK(bad == 0 && count == want->count &&
                  champ_iter_status(&it) == CHAMP_OK,
              "%s: iteration: %zu entries, %zu wrong, want %zu (%s, round %ld)",
              what, count, bad, want->count, s->what, s->round);
    if (validate) {
        champ_status st = champ_validate(m);
        ALG_CHECK(st == CHAMP_OK, "%s: champ_validate %s (%s, round %ld)", what,
                  th_status_name(st), s->what, s->round);
    }
}

/* Every counted object back to zero, and the pools drained. */
static void alg_balanced(alg *s, const char *what) {
    if (s->sc->counted) {
        size_t held = 0;
        for (size_t i = 0; i < ALG_NV; i++)
            held += s->vals[i].held != 0;
        for (size_t i = 0; i < s->n; i++)
            held += (s->objs[i].held != 0) + (s->probes[i].held != 0);
        ALG_CHECK(held == 0 && s->ctx.underflows == 0 && s->ctx2.underflows == 0,
                  "%s: %zu objects still held, %lu + %lu underflows (round %ld)",
                  what, held, s->ctx.underflows, s->ctx2.underflows, s->round);
    }
    ALG_CHECK(th_pool_live(s->pool) == 0 && th_pool_live(s->pool2) == 0,
              "%s: pools not drained: %zu and %zu live bytes (round %ld)", what,
              th_pool_live(s->pool), th_pool_live(s->pool2), s->round);
}

/* A result equal to an input is that input (its root), on the fast path. */
static void alg_expect_shared(alg *s, const champ_map *res, const alg_model *want,
                              const char *what) {
    if (!s->fast || !res)
        return;
    bool eqa = alg_model_same(s, want, s->A);
    bool eqb = s->mb && alg_model_same(s, want, s->B);
    if (!eqa && !eqb)
        return;
    ALG_CHECK((eqa && res->root == s->ma->root) || (eqb && res->root == s->mb->root),
              "%s: the result equals input %s but is not it (%s, round %ld)", what,
              eqa ? "a" : "b", s->what, s->round);
}

/* ------------------------------------------------------------------ */
/* The callbacks given to the operations                               */
/* ------------------------------------------------------------------ */

/* The first callback of an operation tries to update both inputs (they
 * are read-framed: CHAMP_EBUSY) and to copy them (allowed). */
static void alg_try_busy(alg *s) {
    if (!s->try_busy || s->tried)
        return;
    s->tried = true;
    const champ_map *in[2] = {s->ma, s->mb};
    for (int i = 0; i < 2; i++) {
        if (!in[i])
            continue;
        champ_map *m = (champ_map *)(uintptr_t)in[i];
        champ_status st;
        switch (s->sc->kind) {
        case CHAMP_KEY_U64: st = champ_remove_u64(m, s->u64[1], NULL); break;
        case CHAMP_KEY_BYTES: st = champ_remove_bytes(m, s->bk[1], s->blen[1], NULL); break;
        default: st = champ_remove(m, &s->probes[1], NULL); break;
        }
        if (st != CHAMP_EBUSY)
            s->busy_wrong++;
        if (champ_clear(m) != CHAMP_EBUSY)
            s->busy_wrong++;
        champ_map *c = NULL;
        if (champ_copy(m, &c) != CHAMP_OK || champ_size(c) != champ_size(m))
            s->busy_wrong++;
        champ_free(c);
    }
}

static unsigned alg_pick(const alg *s, size_t id) {
    return (unsigned)(th_mix64(id ^ s->salt) % 3);
}

static void *alg_resolve(const champ_key *k, void *av, void *bv, void *ctx) {
    alg *s = ctx;
    alg_try_busy(s);
    s->ncalls++;
    size_t id = alg_id(s, k);
    if (id == (size_t)-1) {
        s->bad++;
        return av;
    }
    s->calls[id]++;
    if (!s->A->in[id] || !s->B->in[id] || av != s->A->val[id] || bv != s->B->val[id])
        s->bad++;
    switch (alg_pick(s, id)) {
    case 0: return av;
    case 1: return bv;
    default: return alg_third(s, id);
    }
}

static bool alg_keeps(const alg *s, size_t id) {
    return th_mix64(id * 0x9e3779b9u ^ s->salt) % 100 < s->pct;
}

static bool alg_keep(const champ_key *k, void *v, void *ctx) {
    alg *s = ctx;
    alg_try_busy(s);
    s->ncalls++;
    size_t id = alg_id(s, k);
    if (id == (size_t)-1) {
        s->bad++;
        return false;
    }
    s->calls[id]++;
    if (!s->A->in[id] || v != s->A->val[id])
        s->bad++;
    return alg_keeps(s, id);
}

static bool alg_custom; /* the value equality of the running diff */

static bool alg_val_eq(const void *x, const void *y, void *ctx) {
    alg *s = ctx;
    alg_try_busy(s);
    return alg_vals_equal(s, x, y, true);
}

static int alg_diff_fn(champ_change what, const champ_key *k, void *ov, void *nv,
                       void *ctx) {
    alg *s = ctx;
    alg_try_busy(s);
    s->ncalls++;
    size_t id = alg_id(s, k);
    if (id == (size_t)-1) {
        s->bad++;
        return 0;
    }
    s->calls[id]++;
    s->dwhat[id] = (unsigned char)what;
    const alg_model *A = s->A, *B = s->B;
    bool ok;

    switch (what) {
    case CHAMP_REMOVED: ok = A->in[id] && !B->in[id] && ov == A->val[id] && !nv; break;
    case CHAMP_ADDED: ok = !A->in[id] && B->in[id] && !ov && nv == B->val[id]; break;
    case CHAMP_CHANGED:
        ok = !s->sc->set && A->in[id] && B->in[id] && ov == A->val[id] &&
             nv == B->val[id] && !alg_vals_equal(s, ov, nv, alg_custom);
        break;
    default: ok = false; break;
    }
    if (!ok)
        s->bad++;
    return s->stop_at && s->ncalls >= s->stop_at;
}

static void alg_calls_reset(alg *s) {
    memset(s->calls, 0, s->n * sizeof *s->calls);
    memset(s->dwhat, 0, s->n);
    s->ncalls = 0;
    s->bad = 0;
    s->tried = false;
    s->busy_wrong = 0;
}

/* ------------------------------------------------------------------ */
/* The operations and what they must give                              */
/* ------------------------------------------------------------------ */

enum { CO_UNION, CO_UNION_R, CO_INTER, CO_INTER_R, CO_DIFF, CO_SYM, CO_FILTER, CO_N };
static const char *const co_name[CO_N] = {
    "union", "union+resolver", "intersect", "intersect+resolver", "difference",
    "symdiff", "filter",
};

static champ_status alg_run(alg *s, int op, const champ_map *x, const champ_map *y,
                            champ_map **out) {
    switch (op) {
    case CO_UNION: return champ_union(x, y, NULL, NULL, out);
    case CO_UNION_R: return champ_union(x, y, alg_resolve, s, out);
    case CO_INTER: return champ_intersect(x, y, NULL, NULL, out);
    case CO_INTER_R: return champ_intersect(x, y, alg_resolve, s, out);
    case CO_DIFF: return champ_difference(x, y, out);
    case CO_SYM: return champ_symdiff(x, y, out);
    default: return champ_filter(x, alg_keep, s, out);
    }
}

/* The model of op's result (after it ran: the resolver's calls decide). */
static void alg_want(alg *s, int op, alg_model *w) {
    const alg_model *A = s->A, *B = s->B;
    alg_model_clear(s, w);
    for (size_t id = 0; id < s->n; id++) {
        bool ina = A->in[id], inb = op == CO_FILTER ? false : B->in[id], in;
        switch (op) {
        case CO_UNION:
        case CO_UNION_R: in = ina || inb; break;
        case CO_INTER:
        case CO_INTER_R: in = ina && inb; break;
        case CO_DIFF: in = ina && !inb; break;
        case CO_SYM: in = ina != inb; break;
        default: in = ina && alg_keeps(s, id); break;
        }
        if (!in)
            continue;
        void *v = ina ? A->val[id] : B->val[id];
        if (ina && inb) {
            if (op == CO_UNION)
                v = B->val[id];
            else if ((op == CO_UNION_R || op == CO_INTER_R) && s->calls[id] == 1) {
                unsigned p = alg_pick(s, id);
                v = p == 0 ? A->val[id] : p == 1 ? B->val[id] : alg_third(s, id);
            }
        }
        w->in[id] = 1;
        w->val[id] = s->sc->set ? NULL : v;
        w->count++;
    }
}

/* Which callbacks ran for op, and with what. */
static void alg_check_calls(alg *s, int op) {
    const alg_model *A = s->A, *B = s->B;
    size_t wrong = 0, first = (size_t)-1;
    bool resolver = op == CO_UNION_R || op == CO_INTER_R;
    for (size_t id = 0; id < s->n; id++) {
        bool ok = true;
        if (resolver) {
            bool both = A->in[id] && B->in[id];
            /* only keys in both, at most once; every one whose values
             * differ (the others may sit in shared subtrees); on the
             * key-by-key paths every one */
            ok = s->calls[id] <= (both ? 1u : 0u) &&
                 (s->sc->set || !both || s->calls[id] == 1 ||
                  (A->val[id] == B->val[id] && s->fast));
            if (s->sc->set)
                ok = s->calls[id] == 0;
        } else if (op == CO_FILTER) {
            ok = s->calls[id] == (A->in[id] ? 1u : 0u);
        } else {
            ok = s->calls[id] == 0;
        }
        if (!ok && wrong++ == 0)
            first = id;
    }
    ALG_CHECK(wrong == 0 && s->bad == 0,
              "%s: callback calls wrong for %zu keys (first id %zu: %u calls, in a %d, "
              "in b %d), %lu bad arguments (%s, round %ld)", co_name[op], wrong, first,
              first < s->n ? s->calls[first] : 0u, first < s->n ? (int)A->in[first] : -1,
              first < s->n && op != CO_FILTER ? (int)B->in[first] : -1, s->bad,
              s->what, s->round);
    ALG_CHECK(s->busy_wrong == 0, "%s: an update of an input from a callback was "
              "not refused, or a copy failed (%lu) (%s, round %ld)", co_name[op],
              s->busy_wrong, s->what, s->round);
}

/* Runs op on (x, y) (filter: on x), checks the result and frees it. */
static void alg_combine(alg *s, int op, const champ_map *x, const alg_model *X,
                        const champ_map *y, const alg_model *Y, alg_model *w) {
    if (s->broken)
        return;
    s->ma = x;
    s->mb = op == CO_FILTER ? NULL : y;
    s->A = X;
    s->B = Y;
    s->salt = th_next(&s->r);
    s->pct = (unsigned[]){0, 30, 50, 90, 100, 100}[th_below(&s->r, 6)];
    s->try_busy = th_chance(&s->r, 30);
    alg_calls_reset(s);
    size_t sx = champ_size(x), sy = champ_size(y);
    champ_map *out = (champ_map *)th_tok(7);
    champ_status st = alg_run(s, op, x, y, &out);
    ALG_CHECK(st == CHAMP_OK && out, "%s: %s (%s, round %ld)", co_name[op],
              th_status_name(st), s->what, s->round);
    if (st != CHAMP_OK)
        return;
    alg_check_calls(s, op);
    alg_want(s, op, w);
    char what[64];
    snprintf(what, sizeof what, "%s result", co_name[op]);
    alg_expect(s, out, w, true, what);
    alg_expect_shared(s, out, w, co_name[op]);
    ALG_CHECK(champ_size(x) == sx && champ_size(y) == sy && champ_kind(out) == champ_kind(x) &&
                  champ_is_set(out) == champ_is_set(x) && champ_pool_of(out) == champ_pool_of(x),
              "%s: inputs' sizes changed or result of another type (%s, round %ld)",
              co_name[op], s->what, s->round);
    champ_free(out);
}

/* Equal, subset, disjoint and diff of (x, y), against the models. */
static void alg_compare(alg *s, const champ_map *x, const alg_model *X, const champ_map *y,
                        const alg_model *Y) {
    if (s->broken)
        return;
    s->ma = x;
    s->mb = y;
    s->A = X;
    s->B = Y;
    bool subs = true, disj = true;
    size_t ndiff[2] = {0, 0}; /* changes without / with the custom equality */
    for (size_t id = 0; id < s->n; id++) {
        if (X->in[id] && !Y->in[id])
            subs = false;
        if (X->in[id] && Y->in[id]) {
            disj = false;
            for (int c = 0; c < 2; c++)
                ndiff[c] += !s->sc->set && !alg_vals_equal(s, X->val[id], Y->val[id], c);
        } else if (X->in[id] || Y->in[id]) {
            ndiff[0]++;
            ndiff[1]++;
        }
    }
    for (int c = 0; c < 2; c++) {
        s->try_busy = th_chance(&s->r, 30);
        alg_calls_reset(s);
        bool eq = champ_equal(x, y, c ? alg_val_eq : NULL, s);
        ALG_CHECK(eq == (ndiff[c] == 0), "equal (custom %d): %d, want %d (%s, round %ld)",
                  c, (int)eq, (int)(ndiff[c] == 0), s->what, s->round);
        ALG_CHECK(s->busy_wrong == 0, "equal: busy (%s, round %ld)", s->what, s->round);
    }
    bool got = champ_subset(x, y);
    ALG_CHECK(got == subs, "subset: %d, want %d (%s, round %ld)", (int)got, (int)subs,
              s->what, s->round);
    got = champ_disjoint(x, y);
    ALG_CHECK(got == disj, "disjoint: %d, want %d (%s, round %ld)", (int)got, (int)disj,
              s->what, s->round);
    /* diff: in full, then stopped after a few */
    for (int pass = 0; pass < 2; pass++) {
        int c = (int)th_below(&s->r, 2);
        size_t want = ndiff[c];
        alg_custom = c;
        s->stop_at = pass ? 1 + th_below(&s->r, want + 1) : 0;
        s->try_busy = th_chance(&s->r, 30);
        alg_calls_reset(s);
        champ_status st = champ_diff(x, y, c ? alg_val_eq : NULL, alg_diff_fn, s);
        size_t expect = s->stop_at && s->stop_at < want ? s->stop_at : want;
        size_t missing = 0, twice = 0;
        for (size_t id = 0; id < s->n; id++) {
            twice += s->calls[id] > 1;
            if (!pass) {
                bool differs = X->in[id] != Y->in[id] ||
                               (X->in[id] && !s->sc->set &&
                                !alg_vals_equal(s, X->val[id], Y->val[id], c));
                missing += differs && s->calls[id] == 0;
            }
        }
        ALG_CHECK(st == CHAMP_OK && s->ncalls == expect && s->bad == 0 && twice == 0 &&
                      missing == 0 && s->busy_wrong == 0,
                  "diff (custom %d, stop at %lu): %s, %lu calls, want %zu; %lu wrong, "
                  "%zu twice, %zu missing, %lu busy (%s, round %ld)",
                  c, s->stop_at, th_status_name(st), s->ncalls, expect, s->bad, twice,
                  missing, s->busy_wrong, s->what, s->round);
    }
    s->stop_at = 0;
}

/* ------------------------------------------------------------------ */
/* The randomized rounds                                               */
/* ------------------------------------------------------------------ */

static void alg_configs(alg *s, uint64_t seed) {
    const alg_sc *sc = s->sc;
    if (sc->kind == CHAMP_KEY_GENERIC) {
        s->cfg = th_generic_config(&s->ctx, sc->counted, s->pool);
    } else {
        s->cfg = th_kind_config(sc->kind, seed, s->pool);
        if (sc->counted) {
            s->cfg.val_retain = th_obj_retain;
            s->cfg.val_release = th_obj_release;
            s->cfg.ctx = &s->ctx;
        }
    }
    s->cfg.set = sc->set;
    if (sc->set) {
        s->cfg.val_retain = NULL;
        s->cfg.val_release = NULL;
    }
}

/* b's model: a's with changes, or a model of its own. */
static void alg_model_b(alg *s, alg_model *B, const alg_model *A) {
    if (th_chance(&s->r, 50)) {
        alg_model_copy(s, B, A);
        size_t changes = (size_t)th_below(&s->r, A->count / 3 + 4);
        for (size_t i = 0; i < changes; i++) {
            size_t id = (size_t)th_below(&s->r, s->n);
            if (B->in[id] && th_chance(&s->r, 50)) {
                B->in[id] = 0;
                B->val[id] = NULL;
                B->count--;
            } else {
                B->count += !B->in[id];
                B->in[id] = 1;
                B->val[id] = alg_value(s);
            }
        }
    } else {
        size_t lo = (size_t)th_below(&s->r, s->n / 2);
        alg_model_random(s, B, alg_random_size(s), lo, s->n);
    }
}

static size_t alg_changes(alg *s) {
    static const size_t ch[] = {1, 1, 2, 3, 5, 10, 30, 100};
    return ch[th_below(&s->r, sizeof ch / sizeof ch[0])];
}

static void alg_round(alg *s) {
    alg_model A, B, T, W;
    alg_model_init(s, &A);
    alg_model_init(s, &B);
    alg_model_init(s, &T);
    alg_model_init(s, &W);
    champ_map *a = NULL, *b = NULL;
    int rel = (int)th_below(&s->r, REL_N);
    s->rel = rel;
    s->fast = rel != REL_SEED && rel != REL_POOL;
    /* a */
    alg_model_random(s, &T, rel == REL_EMPTY_A ? 0 : alg_random_size(s),
                     (size_t)th_below(&s->r, s->n / 3), s->n);
    a = alg_new(s, &s->cfg);
    if (a)
        alg_fill(s, a, &A, &T, false);
    if (rel == REL_BRANCHES && a) {
        /* a and b: two versions of one base */
        alg_model_copy(s, &B, &A);
        b = alg_derive(s, a, &B, alg_changes(s));
        champ_map *a2 = alg_derive(s, a, &A, alg_changes(s));
        champ_free(a);
        a = a2;
    } else if (rel == REL_VERSIONS && a) {
        alg_model_copy(s, &B, &A);
        b = alg_derive(s, a, &B, alg_changes(s));
    } else if (rel == REL_COPY && a) {
        alg_model_copy(s, &B, &A);
        champ_status st = champ_copy(a, &b);
        ALG_CHECK(st == CHAMP_OK, "copy: %s", th_status_name(st));
    } else if (rel == REL_SAME) {
        alg_model_copy(s, &B, &A);
        b = a;
    } else if (a) {
        champ_config c2 = s->cfg;
        if (rel == REL_SEED) {
            if (s->sc->kind == CHAMP_KEY_GENERIC)
                c2.ctx = &s->ctx2;
            else
                c2.seed ^= 0x5eed;
        } else if (rel == REL_POOL) {
            c2.pool = s->pool2;
        }
        if (rel == REL_LIKE) {
            champ_status st = champ_new_like(a, &b);
            ALG_CHECK(st == CHAMP_OK, "new_like: %s", th_status_name(st));
        } else {
            b = alg_new(s, &c2);
        }
        if (rel == REL_EMPTY_B)
            alg_model_clear(s, &T);
        else
            alg_model_b(s, &T, &A);
        if (b)
            alg_fill(s, b, &B, &T, th_chance(&s->r, 50));
    }
    if (!a || !b) {
        s->broken = true;
    } else {
        /* either order */
        if (rel != REL_SAME && th_chance(&s->r, 50)) {
            champ_map *t = a;
            a = b;
            b = t;
            alg_model_copy(s, &T, &A);
            alg_model_copy(s, &A, &B);
            alg_model_copy(s, &B, &T);
        }
        snprintf(s->what, sizeof s->what, "%s, %s, |a| %zu, |b| %zu", s->sc->name,
                 rel_name[rel], A.count, B.count);
        alg_compare(s, a, &A, b, &B);
        alg_compare(s, b, &B, a, &A);
        alg_combine(s, CO_UNION, a, &A, b, &B, &W);
        alg_combine(s, CO_UNION_R, a, &A, b, &B, &W);
        alg_combine(s, CO_INTER, a, &A, b, &B, &W);
        alg_combine(s, CO_INTER_R, a, &A, b, &B, &W);
        alg_combine(s, CO_DIFF, a, &A, b, &B, &W);
        alg_combine(s, CO_DIFF, b, &B, a, &A, &W);
        alg_combine(s, CO_SYM, a, &A, b, &B, &W);
        alg_combine(s, CO_FILTER, a, &A, b, &B, &W);
        alg_combine(s, CO_FILTER, b, &B, a, &A, &W);
        /* the inputs are as they were */
        alg_expect(s, a, &A, true, "input a after the operations");
        alg_expect(s, b, &B, true, "input b after the operations");
    }
    if (th_chance(&s->r, 50)) {
        champ_free(a);
        if (b != a)
            champ_free(b);
    } else {
        if (b != a)
            champ_free(b);
        champ_free(a);
    }
    alg_balanced(s, "end of round");
    alg_model_free(&A);
    alg_model_free(&B);
    alg_model_free(&T);
    alg_model_free(&W);
}

/* universe: 0 for the scenario's */
static void alg_setup(alg *s, const alg_sc *sc, uint64_t seed, size_t universe) {
    memset(s, 0, sizeof *s);
    s->sc = sc;
    s->n = universe ? universe : sc->universe;
    s->r.s = seed;
    s->ctx.hash_mode = sc->hash_mode;
    if (sc->hash_mode == TH_HASH_BITS) {
        th_rng mr = {seed ^ 0x4d41534bULL};
        for (unsigned bits = 0; bits < sc->mask_bits;) {
            uint64_t bit = 1ULL << th_below(&mr, 64);
            if (!(s->ctx.mask & bit)) {
                s->ctx.mask |= bit;
                bits++;
            }
        }
    }
    s->ctx2 = s->ctx;
    alg_universe(s);
    CHECK_ST(champ_pool_new(NULL, &s->pool), CHAMP_OK);
    CHECK_ST(champ_pool_new(NULL, &s->pool2), CHAMP_OK);
    alg_configs(s, seed);
}

static void alg_teardown(alg *s) {
    champ_pool_free(s->pool);
    champ_pool_free(s->pool2);
    alg_universe_free(s);
}

static void alg_run_scenario(size_t i) {
    const alg_sc *sc = &alg_scenarios[i];
    uint64_t seed = 0xa19e0000ULL + 0x1111 * (i + 1);
    alg st, *s = &st;
    th_set_seed(seed);
    alg_setup(s, sc, seed, 0);
    long rounds = th_iters(sc->rounds, 6);
    for (s->round = 0; s->round < rounds && !s->broken; s->round++)
        alg_round(s);
    printf("  algebra %-18s %4ld rounds%s\n", sc->name, s->round,
           s->broken ? " (stopped at the first failure)" : "");
    alg_teardown(s);
    th_set_seed(0);
}

static void test_alg_u64(void) { alg_run_scenario(0); }
static void test_alg_u64_set(void) { alg_run_scenario(1); }
static void test_alg_u64_counted(void) { alg_run_scenario(2); }
static void test_alg_bytes(void) { alg_run_scenario(3); }
static void test_alg_bytes_set(void) { alg_run_scenario(4); }
static void test_alg_generic(void) { alg_run_scenario(5); }
static void test_alg_generic_set(void) { alg_run_scenario(6); }
static void test_alg_generic_mod64(void) { alg_run_scenario(7); }
static void test_alg_generic_mod64_set(void) { alg_run_scenario(8); }
static void test_alg_generic_10bits(void) { alg_run_scenario(9); }
static void test_alg_generic_10bits_set(void) { alg_run_scenario(10); }
static void test_alg_generic_deep(void) { alg_run_scenario(11); }
static void test_alg_generic_deep_set(void) { alg_run_scenario(12); }

/* ------------------------------------------------------------------ */
/* Versions: what differs is all that is walked and built              */
/* ------------------------------------------------------------------ */

static const alg_sc alg_share_sc[] = {
    {"u64", CHAMP_KEY_U64, false, false, 0, 0, 3000, 0},
    {"bytes-set", CHAMP_KEY_BYTES, true, false, 0, 0, 3000, 0},
    {"generic", CHAMP_KEY_GENERIC, false, true, TH_HASH_GOOD, 0, 3000, 0},
};

/* Nodes of the subtree at n (at `level`), into v (v->n of them). */
typedef struct alg_nodeset {
    const node **p;
    size_t n, cap;
} alg_nodeset;

static void alg_nodes_add(alg_nodeset *v, const node *n, unsigned level, unsigned W) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 256;
        v->p = realloc(v->p, v->cap * sizeof *v->p);
        if (!v->p)
            abort();
    }
    v->p[v->n++] = n;
    for (uint32_t i = 0; i < node_nkid_at(n, level); i++)
        alg_nodes_add(v, node_kids(n, W)[i], level + 1, W);
}

static int alg_ptr_cmp(const void *x, const void *y) {
    uintptr_t a = (uintptr_t)*(const node *const *)x, b = (uintptr_t)*(const node *const *)y;
    return a < b ? -1 : a > b;
}

/* Nodes of the subtree at n that are not in the sorted set v: the nodes
 * an operation built (a node of an input is shared whole). */
static size_t alg_nodes_new(const alg_nodeset *v, const node *n, unsigned level,
                            unsigned W, size_t *total) {
    if (bsearch(&n, v->p, v->n, sizeof *v->p, alg_ptr_cmp))
        return 0;
    size_t c = 1;
    ++*total;
    for (uint32_t i = 0; i < node_nkid_at(n, level); i++)
        c += alg_nodes_new(v, node_kids(n, W)[i], level + 1, W, total);
    return c;
}

/* How many nodes of m are not nodes of a or b (*total: of all m's nodes). */
static size_t alg_fresh(const champ_map *m, const champ_map *a, const champ_map *b,
                        size_t *total) {
    alg_nodeset v = {NULL, 0, 0};
    unsigned W = m->t->width;
    if (a->root)
        alg_nodes_add(&v, a->root, 0, W);
    if (b->root)
        alg_nodes_add(&v, b->root, 0, W);
    qsort(v.p, v.n, sizeof *v.p, alg_ptr_cmp);
    *total = 0;
    size_t c = m->root ? alg_nodes_new(&v, m->root, 0, W, total) : 0;
    free(v.p);
    return c;
}

static int alg_count_diff(champ_change what, const champ_key *k, void *ov, void *nv,
                          void *ctx) {
    (void)what;
    (void)k;
    (void)ov;
    (void)nv;
    ++*(int *)ctx;
    return 0;
}

/* a has 2000 keys; b is a with one key changed, removed or added.  Union
 * and intersect build only the path to that key (every other node of the
 * result is shared); equal and diff look at that path only: for generic
 * keys, a few hash and equal calls per level, not a call per key. */
static void alg_share_one(const alg_sc *sc) {
    alg st, *s = &st;
    alg_setup(s, sc, 0x5a4e0001ULL, 0);
    th_set_seed(0x5a4e0001ULL);
    alg_model A, B, T, W;
    alg_model_init(s, &A);
    alg_model_init(s, &B);
    alg_model_init(s, &T);
    alg_model_init(s, &W);
    alg_model_random(s, &T, 2000, 0, s->n);
    champ_map *a = alg_new(s, &s->cfg);
    alg_fill(s, a, &A, &T, false);
    champ_stats sa = th_stats(a);
    size_t in_id = 0, out_id = 0;
    while (!A.in[in_id])
        in_id++;
    while (A.in[out_id])
        out_id++;
    s->fast = true;
    for (int c = 0; c < 3 && !s->broken; c++) {
        alg_model_copy(s, &B, &A);
        champ_map *b = NULL;
        void *nv = alg_value(s);
        while (!sc->set && nv == A.val[in_id])
            nv = alg_value(s);
        champ_status rs = c == 0 ? alg_pset(s, a, &B, in_id, nv, &b)
                          : c == 1 ? alg_premove(s, a, &B, in_id, &b)
                                   : alg_pset(s, a, &B, out_id, alg_value(s), &b);
        CHECK_ST(rs, CHAMP_OK);
        if (!b)
            break;
        snprintf(s->what, sizeof s->what, "share %s, case %d", sc->name, c);
        unsigned long h0 = s->ctx.hash_calls, e0 = s->ctx.equal_calls;
        bool eq = champ_equal(a, b, NULL, NULL);
        unsigned long hc = s->ctx.hash_calls - h0, ec = s->ctx.equal_calls - e0;
        /* (a set's "new value" for a key it holds is no change) */
        CHECK(eq == (sc->set && c == 0), "share %s case %d: equal %d", sc->name, c, (int)eq);
        /* diff and union walk the path too (sizes differ or not) */
        int nd = 0;
        champ_map *u = NULL;
        h0 = s->ctx.hash_calls;
        e0 = s->ctx.equal_calls;
        CHECK_ST(champ_diff(a, b, NULL, alg_count_diff, &nd), CHAMP_OK);
        unsigned long hd = s->ctx.hash_calls - h0, ed = s->ctx.equal_calls - e0;
        h0 = s->ctx.hash_calls;
        e0 = s->ctx.equal_calls;
        CHECK_ST(champ_union(a, b, NULL, NULL, &u), CHAMP_OK);
        unsigned long hu = s->ctx.hash_calls - h0, eu = s->ctx.equal_calls - e0;
        champ_free(u);
        CHECK(nd == (sc->set && c == 0 ? 0 : 1), "share %s case %d: %d changes", sc->name, c,
              nd);
        if (sc->kind == CHAMP_KEY_GENERIC) {
            unsigned long most = 16u * sa.depth_max;
            CHECK(hc + ec <= most && hd + ed <= most && hu + eu <= most,
                  "share %s case %d: hash + equal calls of equal %lu + %lu, diff %lu + %lu, "
                  "union %lu + %lu (depth %u): not proportional to the path", sc->name, c,
                  hc, ec, hd, ed, hu, eu, sa.depth_max);
            printf("  algebra share: %zu-key generic versions (%s): hash + equal calls: "
                   "equal %lu + %lu, diff %lu + %lu, union %lu + %lu (depth %u)\n", A.count,
                   c == 0 ? "one value changed" : c == 1 ? "one key removed" : "one key added",
                   hc, ec, hd, ed, hu, eu, sa.depth_max);
            if (c == 0) {
                /* the same contents built afresh, half the keys through
                 * equal twins: every key is looked at */
                champ_map *f = NULL;
                CHECK_ST(champ_new_like(a, &f), CHAMP_OK);
                alg_fill(s, f, &T, &A, true);
                unsigned long h1 = s->ctx.hash_calls, e1 = s->ctx.equal_calls;
                CHECK(champ_equal(a, f, NULL, NULL), "share: fresh build equal");
                printf("  algebra share: equal of a fresh build of the same %zu keys (half "
                       "of them equal twins): %lu hash + %lu equal calls\n", A.count,
                       s->ctx.hash_calls - h1, s->ctx.equal_calls - e1);
                champ_free(f);
            }
        }
        for (int op = CO_UNION; op <= CO_SYM; op++) {
            s->ma = a;
            s->mb = b;
            s->A = &A;
            s->B = &B;
            alg_calls_reset(s);
            champ_map *out = NULL;
            CHECK_ST(alg_run(s, op, a, b, &out), CHAMP_OK);
            if (!out)
                continue;
            alg_want(s, op, &W);
            alg_expect(s, out, &W, false, co_name[op]);
            alg_expect_shared(s, out, &W, co_name[op]);
            /* new nodes: at most the path to the key */
            size_t total, fresh = alg_fresh(out, a, b, &total);
            CHECK(fresh <= sa.depth_max + 1u, "share %s case %d %s: %zu new nodes "
                  "(depth %u)", sc->name, c, co_name[op], fresh, sa.depth_max);
            champ_free(out);
        }
        CHECK_VALID(b, "share: b");
        champ_free(b);
    }
    champ_free(a);
    alg_balanced(s, "share");
    alg_model_free(&A);
    alg_model_free(&B);
    alg_model_free(&T);
    alg_model_free(&W);
    alg_teardown(s);
    th_set_seed(0);
}

static void test_alg_share(void) {
    for (size_t i = 0; i < sizeof alg_share_sc / sizeof alg_share_sc[0]; i++)
        alg_share_one(&alg_share_sc[i]);
}

/* ------------------------------------------------------------------ */
/* The callback contract: inputs are read-framed                       */
/* ------------------------------------------------------------------ */

typedef struct alg_cbx {
    champ_map *free_me;   /* freed by the first callback */
    champ_map *update_me; /* updated by every callback: must be refused */
    champ_map *copy_me;   /* copied (allowed) */
    unsigned long calls, wrong;
} alg_cbx;

static void alg_cbx_act(alg_cbx *x) {
    x->calls++;
    if (x->update_me) {
        if (champ_set_u64(x->update_me, 12345, NULL, NULL) != CHAMP_EBUSY)
            x->wrong++;
        if (champ_clear(x->update_me) != CHAMP_EBUSY)
            x->wrong++;
    }
    if (x->copy_me) {
        champ_map *c = NULL;
        if (champ_copy(x->copy_me, &c) != CHAMP_OK)
            x->wrong++;
        champ_free(c);
    }
    if (x->free_me) {
        champ_free(x->free_me);
        x->free_me = NULL;
    }
}

static void *alg_cbx_resolve(const champ_key *k, void *av, void *bv, void *ctx) {
    (void)k;
    (void)av;
    alg_cbx_act(ctx);
    return bv;
}
static bool alg_cbx_keep(const champ_key *k, void *v, void *ctx) {
    (void)v;
    alg_cbx_act(ctx);
    return k->u64 % 2 == 0;
}
static bool alg_cbx_eq(const void *x, const void *y, void *ctx) {
    (void)x;
    (void)y;
    alg_cbx_act(ctx);
    return false;
}
static int alg_cbx_diff(champ_change what, const champ_key *k, void *ov, void *nv,
                        void *ctx) {
    (void)what;
    (void)k;
    (void)ov;
    (void)nv;
    alg_cbx_act(ctx);
    return 0;
}

static size_t alg_pool_maps(champ_pool *p) {
    champ_pool_stats ps;
    if (champ_pool_stats_get(p, &ps, sizeof ps) != CHAMP_OK)
        return (size_t)-1;
    return ps.maps;
}

/* a: keys 0..299 (value k); b: a with keys 0..9 given other values and
 * keys 300..309 added; c: b's contents under another seed. */
static void alg_cb_maps(champ_pool *p, champ_map **a, champ_map **b, champ_map **c) {
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 42, p);
    CHECK_ST(champ_new(&cfg, a), CHAMP_OK);
    for (uint64_t k = 0; k < 300; k++)
        CHECK_ST(champ_set_u64(*a, k, th_tok(k), NULL), CHAMP_OK);
    CHECK_ST(champ_copy(*a, b), CHAMP_OK);
    for (uint64_t k = 0; k < 10; k++)
        CHECK_ST(champ_set_u64(*b, k, th_tok(k + 1000), NULL), CHAMP_OK);
    for (uint64_t k = 300; k < 310; k++)
        CHECK_ST(champ_set_u64(*b, k, th_tok(k), NULL), CHAMP_OK);
    cfg.seed = 43;
    CHECK_ST(champ_new(&cfg, c), CHAMP_OK);
    for (uint64_t k = 0; k < 310; k++) {
        void *v = NULL;
        champ_get_u64(*b, k, &v);
        CHECK_ST(champ_set_u64(*c, k, v, NULL), CHAMP_OK);
    }
}

static void test_alg_callbacks(void) {
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
    for (int c = 0; c < 8; c++) {
        champ_map *a, *b, *o, *out = NULL;
        alg_cb_maps(p, &a, &b, &o);
        size_t maps0 = alg_pool_maps(p);
        alg_cbx x = {NULL, NULL, NULL, 0, 0};
        champ_status st = CHAMP_OK;
        size_t want = 0;
        champ_map *gone = NULL, *left = NULL;
        const char *what = "";
        switch (c) {
        case 0: /* resolver frees b, updates a: refused */
            what = "union, resolver frees b";
            x.free_me = gone = b;
            x.update_me = left = a;
            x.copy_me = a;
            st = champ_union(a, b, alg_cbx_resolve, &x, &out);
            want = 310;
            break;
        case 1: /* resolver frees a (the result's type), updates b */
            what = "intersect, resolver frees a";
            x.free_me = gone = a;
            x.update_me = left = b;
            x.copy_me = b;
            st = champ_intersect(a, b, alg_cbx_resolve, &x, &out);
            want = 300;
            break;
        case 2: /* key by key (other seed): resolver frees the other map */
            what = "union key by key, resolver frees o";
            x.free_me = gone = o;
            x.update_me = left = a;
            st = champ_union(a, o, alg_cbx_resolve, &x, &out);
            want = 310;
            break;
        case 3:
            what = "filter, predicate frees its map";
            x.free_me = gone = b;
            x.update_me = b;
            x.copy_me = b;
            left = a;
            st = champ_filter(b, alg_cbx_keep, &x, &out);
            want = 155;
            break;
        case 4:
            what = "filter of a (same map both framed), predicate frees a";
            x.free_me = gone = a;
            x.update_me = a;
            left = b;
            st = champ_filter(a, alg_cbx_keep, &x, &out);
            want = 150;
            break;
        case 5: {
            what = "equal, value equality frees a";
            /* same keys as a, one value differs: the equality runs */
            champ_map *v = NULL;
            CHECK_ST(champ_copy(a, &v), CHAMP_OK);
            CHECK_ST(champ_set_u64(v, 5, th_tok(9999), NULL), CHAMP_OK);
            x.free_me = gone = a;
            x.update_me = v;
            x.copy_me = v;
            left = b;
            bool eq = champ_equal(a, v, alg_cbx_eq, &x);
            CHECK(!eq && x.calls == 1, "equal with a freeing value equality: %d, %lu calls",
                  (int)eq, x.calls);
            champ_free(v);
            break;
        }
        case 6:
            what = "diff, callback frees to";
            x.free_me = gone = b;
            x.update_me = b;
            left = a;
            st = champ_diff(a, b, NULL, alg_cbx_diff, &x);
            CHECK(x.calls == 20, "diff with a freeing callback: %lu calls", x.calls);
            break;
        default:
            what = "symdiff key by key, no callbacks";
            left = a;
            st = champ_symdiff(a, o, &out);
            want = 10;
            break;
        }
        CHECK_ST(st, CHAMP_OK);
        CHECK(x.wrong == 0, "%s: %lu callback actions went wrong", what, x.wrong);
        if (out) {
            CHECK(champ_size(out) == want, "%s: result size %zu, want %zu", what,
                  champ_size(out), want);
            CHECK_VALID(out, what);
        }
        if (left)
            CHECK_VALID(left, what);
        /* the freed input went at the end of the operation */
        CHECK(alg_pool_maps(p) == maps0 - (gone ? 1 : 0) + (out ? 1 : 0),
              "%s: %zu maps in the pool, want %zu", what, alg_pool_maps(p),
              maps0 - (gone ? 1 : 0) + (out ? 1 : 0));
        champ_free(out);
        if (gone != a)
            champ_free(a);
        if (gone != b)
            champ_free(b);
        if (gone != o)
            champ_free(o);
        CHECK(th_pool_live(p) == 0, "%s: pool not drained (%zu bytes)", what,
              th_pool_live(p));
    }
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* Same hashing, other reference callbacks; types without retains     */
/* ------------------------------------------------------------------ */

/* Maps of one pool and seed whose types hold values differently (a
 * retains and releases them, b does not own them): a result of a's type
 * must hold every value it keeps with a's callbacks, and one of b's type
 * must not release what it never retained.  Everything balances whatever
 * is freed first. */
static void test_alg_mixed_refs(void) {
    static th_obj keys[400], vals[16];
    th_cbctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.hash_mode = TH_HASH_GOOD;
    for (size_t i = 0; i < 400; i++) {
        memset(&keys[i], 0, sizeof keys[i]);
        keys[i].id = i + 1;
    }
    for (size_t i = 0; i < 16; i++) {
        memset(&vals[i], 0, sizeof vals[i]);
        vals[i].id = 5000 + i;
    }
    for (int kind = 0; kind < 2; kind++) {
        champ_pool *p = NULL;
        CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
        champ_config ca, cb;
        if (kind == 0) {
            ca = th_kind_config(CHAMP_KEY_U64, 7, p);
            ca.val_retain = th_obj_retain;
            ca.val_release = th_obj_release;
            ca.ctx = &ctx;
            cb = th_kind_config(CHAMP_KEY_U64, 7, p);
        } else {
            /* same hash, equal and ctx: the same hashing; a counts */
            ca = th_generic_config(&ctx, true, p);
            cb = th_generic_config(&ctx, false, p);
        }
        for (int op = 0; op < 8; op++) {
            champ_map *a = NULL, *b = NULL, *r = NULL;
            CHECK_ST(champ_new(&ca, &a), CHAMP_OK);
            CHECK_ST(champ_new(&cb, &b), CHAMP_OK);
            for (size_t i = 0; i < 300; i++) {
                void *v = &vals[i % 16];
                if (kind == 0) {
                    CHECK_ST(champ_set_u64(a, i, v, NULL), CHAMP_OK);
                } else {
                    CHECK_ST(champ_set(a, &keys[i], v, NULL), CHAMP_OK);
                    th_obj_hand_in(&keys[i]);
                }
                th_obj_hand_in(v);
            }
            for (size_t i = 200; i < 400; i++) {
                void *v = &vals[(i + 1) % 16];
                if (kind == 0)
                    CHECK_ST(champ_set_u64(b, i, v, NULL), CHAMP_OK);
                else
                    CHECK_ST(champ_set(b, &keys[i], v, NULL), CHAMP_OK);
            }
            const champ_map *x = op < 4 ? a : b, *y = op < 4 ? b : a;
            size_t want;
            switch (op % 4) {
            case 0: CHECK_ST(champ_union(x, y, NULL, NULL, &r), CHAMP_OK); want = 400; break;
            case 1: CHECK_ST(champ_intersect(x, y, NULL, NULL, &r), CHAMP_OK); want = 100; break;
            case 2: CHECK_ST(champ_symdiff(x, y, &r), CHAMP_OK); want = 300; break;
            default:
                CHECK_ST(champ_difference(x, y, &r), CHAMP_OK);
                want = op < 4 ? 200 : 100;
                break;
            }
            CHECK(champ_size(r) == want, "mixed refs kind %d op %d: size %zu, want %zu",
                  kind, op, champ_size(r), want);
            CHECK_VALID(r, "mixed refs: result");
            /* the inputs go first: the result holds what it kept */
            champ_free(op % 2 ? a : b);
            champ_free(op % 2 ? b : a);
            CHECK_VALID(r, "mixed refs: result alone");
            champ_free(r);
            long held = 0;
            for (size_t i = 0; i < 16; i++)
                held += vals[i].held != 0;
            for (size_t i = 0; i < 400; i++)
                held += keys[i].held != 0;
            CHECK(held == 0 && ctx.underflows == 0,
                  "mixed refs kind %d op %d: %ld objects unbalanced, %lu underflows",
                  kind, op, held, ctx.underflows);
            for (size_t i = 0; i < 16; i++)
                vals[i].held = 0;
            for (size_t i = 0; i < 400; i++)
                keys[i].held = 0;
            ctx.underflows = 0;
            CHECK(th_pool_live(p) == 0, "mixed refs: pool not drained");
        }
        champ_pool_free(p);
    }
}

/* A type with release callbacks but no retains cannot copy entries (as
 * champ_copy refuses): the combining operations refuse it too; the
 * compares work. */
static void test_alg_noncopyable(void) {
    static th_obj vals[8];
    th_cbctx ctx;
    memset(&ctx, 0, sizeof ctx);
    memset(vals, 0, sizeof vals);
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 3, p);
    cfg.val_release = th_obj_release;
    cfg.ctx = &ctx;
    champ_map *a = NULL, *b = NULL, *r = th_tok(1);
    CHECK_ST(champ_new(&cfg, &a), CHAMP_OK);
    CHECK_ST(champ_new_like(a, &b), CHAMP_OK);
    for (uint64_t k = 0; k < 200; k++) {
        CHECK_ST(champ_set_u64(a, k, &vals[k % 8], NULL), CHAMP_OK);
        th_obj_hand_in(&vals[k % 8]);
        if (k % 3 == 0) {
            CHECK_ST(champ_set_u64(b, k, &vals[k % 8], NULL), CHAMP_OK);
            th_obj_hand_in(&vals[k % 8]);
        }
    }
    CHECK_ST(champ_union(a, b, NULL, NULL, &r), CHAMP_EINVAL);
    CHECK(r == NULL, "union: *out NULL on error");
    CHECK_ST(champ_intersect(a, b, NULL, NULL, &r), CHAMP_EINVAL);
    CHECK_ST(champ_difference(a, b, &r), CHAMP_EINVAL);
    CHECK_ST(champ_symdiff(a, b, &r), CHAMP_EINVAL);
    CHECK_ST(champ_filter(a, alg_cbx_keep, &(alg_cbx){0}, &r), CHAMP_EINVAL);
    CHECK(r == NULL, "filter: *out NULL on error");
    CHECK(!champ_equal(a, b, NULL, NULL) && champ_subset(b, a) && !champ_disjoint(a, b),
          "compares of non-copyable maps");
    champ_free(a);
    champ_free(b);
    long held = 0;
    for (size_t i = 0; i < 8; i++)
        held += vals[i].held != 0;
    CHECK(held == 0 && ctx.underflows == 0, "non-copyable: %ld unbalanced, %lu underflows",
          held, ctx.underflows);
    CHECK(th_pool_live(p) == 0, "non-copyable: pool drained");
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* Misuse                                                              */
/* ------------------------------------------------------------------ */


static void test_alg_misuse(void) {
    champ_map *u = NULL, *u2 = NULL, *by = NULL, *us = NULL, *r = th_tok(1);
    CHECK_ST(champ_new_u64(&u), CHAMP_OK);
    CHECK_ST(champ_new_u64(&u2), CHAMP_OK);
    CHECK_ST(champ_new_bytes(&by), CHAMP_OK);
    CHECK_ST(champ_new_set_u64(&us), CHAMP_OK);
    /* empty maps of one kind, two private pools and seeds */
    CHECK(champ_equal(u, u2, NULL, NULL) && champ_subset(u, u2) && champ_disjoint(u, u2),
          "empty maps: equal, subset, disjoint");
    CHECK_ST(champ_union(u, u2, NULL, NULL, &r), CHAMP_OK);
    CHECK(r && champ_size(r) == 0 && champ_pool_of(r) == champ_pool_of(u),
          "union of empty maps: an empty map of a's pool");
    champ_free(r);
    CHECK_ST(champ_set_u64(u, 1, NULL, NULL), CHAMP_OK);
    CHECK_ST(champ_set_u64(u2, 2, NULL, NULL), CHAMP_OK);
    /* NULL arguments */
    r = th_tok(1);
    CHECK_ST(champ_union(NULL, u, NULL, NULL, &r), CHAMP_EINVAL);
    CHECK(r == NULL, "union(NULL): *out NULL");
    r = th_tok(1);
    CHECK_ST(champ_intersect(u, NULL, NULL, NULL, &r), CHAMP_EINVAL);
    CHECK(r == NULL, "intersect(, NULL): *out NULL");
    CHECK_ST(champ_difference(u, u2, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_symdiff(NULL, NULL, &r), CHAMP_EINVAL);
    CHECK_ST(champ_filter(NULL, alg_cbx_keep, NULL, &r), CHAMP_EINVAL);
    CHECK_ST(champ_filter(u, NULL, NULL, &r), CHAMP_EINVAL);
    CHECK_ST(champ_filter(u, alg_cbx_keep, NULL, NULL), CHAMP_EINVAL);
    int n = 0;
    CHECK_ST(champ_diff(u, u2, NULL, NULL, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_diff(NULL, u2, NULL, alg_count_diff, &n), CHAMP_EINVAL);
    CHECK(!champ_equal(NULL, NULL, NULL, NULL) && !champ_subset(NULL, u) &&
              !champ_disjoint(u, NULL),
          "compares with NULL are false");
    /* kinds: u64 and bytes; a map and a set */
    const champ_map *other[2] = {by, us};
    for (int i = 0; i < 2; i++) {
        const champ_map *o = other[i];
        r = th_tok(1);
        CHECK_ST(champ_union(u, o, NULL, NULL, &r), CHAMP_EKIND);
        CHECK(r == NULL, "union of kinds: *out NULL");
        CHECK_ST(champ_intersect(o, u, NULL, NULL, &r), CHAMP_EKIND);
        CHECK_ST(champ_difference(u, o, &r), CHAMP_EKIND);
        CHECK_ST(champ_symdiff(o, u, &r), CHAMP_EKIND);
        CHECK_ST(champ_diff(u, o, NULL, alg_count_diff, &n), CHAMP_EKIND);
        CHECK(!champ_equal(u, o, NULL, NULL) && !champ_subset(o, u) &&
                  !champ_disjoint(u, o),
              "compares across kinds are false");
    }
    CHECK(n == 0, "diff called back on misuse");
    /* different seeds and pools: the key-by-key paths */
    CHECK_ST(champ_diff(u, u2, NULL, alg_count_diff, &n), CHAMP_OK);
    CHECK(n == 2, "diff across seeds: %d changes", n);
    CHECK_ST(champ_union(u, u2, NULL, NULL, &r), CHAMP_OK);
    CHECK(champ_size(r) == 2 && champ_contains_u64(r, 1) && champ_contains_u64(r, 2) &&
              champ_pool_of(r) == champ_pool_of(u) && champ_seed(r) == champ_seed(u),
          "union across pools: a map of a's type");
    CHECK_VALID(r, "union across pools");
    champ_free(r);
    champ_free(u);
    champ_free(u2);
    champ_free(by);
    champ_free(us);
}

/* ------------------------------------------------------------------ */
/* Out of memory                                                       */
/* ------------------------------------------------------------------ */

static const alg_sc alg_oom_sc[] = {
    {"u64", CHAMP_KEY_U64, false, false, 0, 0, 600, 0},
    {"u64-set", CHAMP_KEY_U64, true, false, 0, 0, 600, 0},
    {"bytes", CHAMP_KEY_BYTES, false, false, 0, 0, 600, 0},
    {"generic", CHAMP_KEY_GENERIC, false, true, TH_HASH_BITS, 6, 600, 0},
    {"generic-set", CHAMP_KEY_GENERIC, true, true, TH_HASH_BITS, 6, 600, 0},
};

static const int alg_oom_rels[] = {REL_VERSIONS, REL_LIKE, REL_SEED, REL_POOL};

static size_t alg_held_n(const alg *s) {
    return ALG_NV + 2 * s->n;
}

static void alg_held_take(const alg *s, long *h) {
    size_t k = 0;
    for (size_t i = 0; i < ALG_NV; i++)
        h[k++] = s->vals[i].held;
    for (size_t i = 0; i < s->n; i++) {
        h[k++] = s->objs[i].held;
        h[k++] = s->probes[i].held;
    }
}

/* op on (a, b) with the k-th allocation failing, k = 0, 1, ... until it
 * succeeds: every failure is CHAMP_ENOMEM with *out NULL, and leaves the
 * inputs, the pools' live bytes and every reference as they were. */
static void alg_oom_sweep(alg *s, int op, const champ_map *a, const alg_model *A,
                          const champ_map *b, const alg_model *B, th_alloc *ta,
                          bool persist, long *steps) {
    size_t hn = alg_held_n(s);
    long *h0 = malloc(hn * sizeof *h0), *h1 = malloc(hn * sizeof *h1);
    alg_model W;
    alg_model_init(s, &W);
    champ_pool *pa = champ_pool_of(a), *pb = champ_pool_of(b);
    for (long k = 0; !s->broken; k++) {
        s->ma = a;
        s->mb = op == CO_FILTER ? NULL : b;
        s->A = A;
        s->B = B;
        s->salt = 0x0005a17;
        s->pct = 60;
        s->try_busy = false;
        alg_calls_reset(s);
        if (ta)
            champ_pool_trim(pa); /* empty chunks back: the next op asks again */
        size_t la = th_pool_live(pa), lb = th_pool_live(pb);
        /* a failed call may still settle a light input (pin.c): live
         * bytes may fall then, never rise */
        bool light0 = a->light != LIGHT_NONE || (b && b->light != LIGHT_NONE);
        unsigned long u0 = s->ctx.underflows + s->ctx2.underflows;
        alg_held_take(s, h0);
        if (ta) {
            ta->fail_at = (long)ta->calls + k;
            ta->fail_persist = persist;
        } else {
            champ_pool_fail_after(pa, k);
        }
        champ_map *out = th_tok(3);
        champ_status st = alg_run(s, op, a, b, &out);
        if (ta)
            ta->fail_at = -1;
        else
            champ_pool_fail_after(pa, -1);
        if (st == CHAMP_OK) {
            alg_check_calls(s, op);
            alg_want(s, op, &W);
            alg_expect(s, out, &W, true, "result after the failures");
            champ_free(out);
            steps[0] += k + 1;
            steps[1] += k > 0;
            break;
        }
        ALG_CHECK(st == CHAMP_ENOMEM && out == NULL, "oom %s, k %ld: %s, out %p (%s)",
                  co_name[op], k, th_status_name(st), (void *)out, s->what);
        ALG_CHECK(light0 ? th_pool_live(pa) <= la && th_pool_live(pb) <= lb
                         : th_pool_live(pa) == la && th_pool_live(pb) == lb,
                  "oom %s, k %ld: live bytes %zu -> %zu, %zu -> %zu (%s)", co_name[op], k,
                  la, th_pool_live(pa), lb, th_pool_live(pb), s->what);
        alg_held_take(s, h1);
        size_t moved = 0;
        for (size_t i = 0; i < hn; i++)
            moved += h0[i] != h1[i];
        ALG_CHECK(moved == 0 && s->ctx.underflows + s->ctx2.underflows == u0,
                  "oom %s, k %ld: %zu references changed, %lu underflows (%s)",
                  co_name[op], k, moved, s->ctx.underflows + s->ctx2.underflows - u0,
                  s->what);
        alg_expect(s, a, A, true, "input a after CHAMP_ENOMEM");
        alg_expect(s, b, B, false, "input b after CHAMP_ENOMEM");
        ALG_CHECK(k < 100000, "oom %s: no success after %ld failures (%s)", co_name[op],
                  k, s->what);
    }
    alg_model_free(&W);
    free(h0);
    free(h1);
}

static void alg_oom_run(bool backing) {
    if (!backing && !TH_NEED_FAULTS("algebra.oom.fail_after"))
        return;
    long sweeps = 0, steps[2] = {0, 0};
    for (size_t i = 0; i < sizeof alg_oom_sc / sizeof alg_oom_sc[0]; i++) {
        const alg_sc *sc = &alg_oom_sc[i];
        uint64_t seed = 0x00a1900dULL + i;
        alg st, *s = &st;
        th_alloc ta;
        th_alloc_init(&ta);
        size_t size = (size_t)th_iters(300, 40);
        alg_setup(s, sc, seed, 2 * size + 16);
        th_set_seed(seed);
        if (backing) {
            /* a's pool on a counting allocator with small chunks */
            champ_pool_free(s->pool);
            champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
            pc.allocator = &ta.a;
            pc.chunk_size = 1024;
            CHECK_ST(champ_pool_new(&pc, &s->pool), CHAMP_OK);
            alg_configs(s, seed);
        }
        alg_model A, B, T;
        alg_model_init(s, &A);
        alg_model_init(s, &B);
        alg_model_init(s, &T);
        for (size_t r = 0; r < sizeof alg_oom_rels / sizeof alg_oom_rels[0]; r++) {
            int rel = alg_oom_rels[r];
            s->rel = rel;
            s->fast = rel == REL_VERSIONS || rel == REL_LIKE;
            alg_model_random(s, &T, size, 0, s->n);
            champ_map *a = alg_new(s, &s->cfg), *b = NULL;
            if (!a)
                break;
            alg_fill(s, a, &A, &T, false);
            if (rel == REL_VERSIONS) {
                alg_model_copy(s, &B, &A);
                b = alg_derive(s, a, &B, 8);
            } else {
                champ_config c2 = s->cfg;
                if (rel == REL_SEED) {
                    if (sc->kind == CHAMP_KEY_GENERIC)
                        c2.ctx = &s->ctx2;
                    else
                        c2.seed ^= 0x5eed;
                } else if (rel == REL_POOL) {
                    c2.pool = s->pool2;
                }
                if (rel == REL_LIKE)
                    champ_new_like(a, &b);
                else
                    b = alg_new(s, &c2);
                alg_model_copy(s, &T, &A);
                /* a third of a's keys changed or gone, new ones */
                for (size_t id = 0; id < s->n; id++) {
                    unsigned d = (unsigned)th_below(&s->r, 6);
                    if (T.in[id] && d == 0) {
                        T.in[id] = 0;
                        T.val[id] = NULL;
                        T.count--;
                    } else if (T.in[id] && d == 1) {
                        T.val[id] = alg_value(s);
                    } else if (!T.in[id] && d == 2) {
                        T.in[id] = 1;
                        T.val[id] = alg_value(s);
                        T.count++;
                    }
                }
                if (b)
                    alg_fill(s, b, &B, &T, true);
            }
            if (!b) {
                s->broken = true;
                champ_free(a);
                break;
            }
            snprintf(s->what, sizeof s->what, "oom %s %s, %s, |a| %zu, |b| %zu",
                     backing ? "backing" : "fail_after", sc->name, rel_name[rel], A.count,
                     B.count);
            for (int op = 0; op < CO_N && !s->broken; op++) {
                alg_oom_sweep(s, op, a, &A, b, &B, backing ? &ta : NULL, op % 2 == 0,
                              steps);
                sweeps++;
            }
            champ_free(a);
            champ_free(b);
            alg_balanced(s, "oom: end of a relationship");
        }
        alg_model_free(&A);
        alg_model_free(&B);
        alg_model_free(&T);
        alg_teardown(s);
        if (backing)
            CHECK(ta.live_bytes == 0 && ta.size_mismatches == 0,
                  "oom backing %s: %zu bytes not given back, %lu size mismatches", sc->name,
                  ta.live_bytes, ta.size_mismatches);
        th_set_seed(0);
    }
    printf("  algebra oom %s: %ld sweeps (%ld met a failure), %ld runs\n",
           backing ? "backing" : "fail_after", sweeps, steps[1], steps[0]);
    /* every operation allocates from the pool; chunks are asked for
     * only now and then */
    CHECK(backing ? steps[1] > 0 : steps[1] == sweeps, "oom %s: only %ld of %ld sweeps met "
          "a failure", backing ? "backing" : "fail_after", steps[1], sweeps);
}

static void test_alg_oom_fail_after(void) { alg_oom_run(false); }
static void test_alg_oom_backing(void) { alg_oom_run(true); }

/* Regression (found by the fuzz target under clang's UBSan): a combining
 * operation over a collision node walked an empty view of the other side
 * (or of the result of filter) and computed NULL + 0 in view_slot, which is
 * undefined behaviour (clang: "applying zero offset to null pointer"; gcc's
 * sanitizer does not flag it, so this fails only in a clang UBSan build).
 * The results are checked in every build: all keys hash alike (one
 * collision node, a list and, past 128 keys, nothing else), combined with
 * an empty map both ways, with a disjoint and an overlapping node, and
 * filtered. */
static uint64_t alg_h0(const void *k, void *ctx) {
    (void)k;
    (void)ctx;
    return 0x9e3779b97f4a7c15ULL;
}
static bool alg_ptr_eq(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return a == b;
}
static bool alg_keep_even(const champ_key *k, void *v, void *ctx) {
    (void)v;
    (void)ctx;
    return ((uintptr_t)k->ptr & 1) == 0;
}

static void test_alg_collision_views(void) {
    static const unsigned ns[] = {1, 2, 3, 5, 40, 200};
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    c.hash = alg_h0;
    c.equal = alg_ptr_eq;
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
    c.pool = p;
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        unsigned n = ns[t];
        champ_map *a = NULL, *e = NULL, *d = NULL, *o = NULL;
        CHECK_ST(champ_new(&c, &a), CHAMP_OK);
        CHECK_ST(champ_new(&c, &e), CHAMP_OK);
        CHECK_ST(champ_new(&c, &d), CHAMP_OK);
        CHECK_ST(champ_new(&c, &o), CHAMP_OK);
        if (!a || !e || !d || !o)
            return;
        for (uintptr_t k = 1; k <= n; k++) {
            CHECK_ST(champ_set(a, (void *)k, NULL, NULL), CHAMP_OK);
            CHECK_ST(champ_set(d, (void *)(k + 1000), NULL, NULL), CHAMP_OK);
            if (k % 2)
                CHECK_ST(champ_set(o, (void *)k, NULL, NULL), CHAMP_OK);
        }
        size_t odd = (n + 1) / 2, even = n / 2;
        struct {
            const char *what;
            int op; /* 0 union, 1 intersect, 2 difference, 3 symdiff */
            champ_map *x, *y;
            size_t want;
        } cases[] = {
            {"a | empty", 0, a, e, n},        {"empty | a", 0, e, a, n},
            {"a & empty", 1, a, e, 0},        {"empty & a", 1, e, a, 0},
            {"a - empty", 2, a, e, n},        {"empty - a", 2, e, a, 0},
            {"a ^ empty", 3, a, e, n},        {"empty ^ a", 3, e, a, n},
            {"a | disjoint", 0, a, d, 2 * n}, {"a & disjoint", 1, a, d, 0},
            {"a - disjoint", 2, a, d, n},     {"a ^ disjoint", 3, a, d, 2 * n},
            {"a | odd", 0, a, o, n},          {"a & odd", 1, a, o, odd},
            {"a - odd", 2, a, o, even},       {"odd - a", 2, o, a, 0},
            {"a ^ odd", 3, a, o, even},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            champ_map *r = NULL;
            champ_status st;
            switch (cases[i].op) {
            case 0: st = champ_union(cases[i].x, cases[i].y, NULL, NULL, &r); break;
            case 1: st = champ_intersect(cases[i].x, cases[i].y, NULL, NULL, &r); break;
            case 2: st = champ_difference(cases[i].x, cases[i].y, &r); break;
            default: st = champ_symdiff(cases[i].x, cases[i].y, &r); break;
            }
            CHECK(st == CHAMP_OK && r, "%s (n %u): %s", cases[i].what, n, th_status_name(st));
            if (!r)
                continue;
            CHECK(champ_size(r) == cases[i].want, "%s (n %u): size %zu, want %zu",
                  cases[i].what, n, champ_size(r), cases[i].want);
            CHECK_VALID(r, cases[i].what);
            champ_free(r);
        }
        champ_map *f = NULL;
        CHECK_ST(champ_filter(a, alg_keep_even, NULL, &f), CHAMP_OK);
        if (f) {
            CHECK(champ_size(f) == even, "filter (n %u): size %zu, want %zu", n, champ_size(f),
                  even);
            int wrong = 0;
            for (uintptr_t k = 1; k <= n; k++)
                wrong += champ_contains(f, (void *)k) != (k % 2 == 0);
            CHECK(wrong == 0, "filter (n %u): %d keys wrong", n, wrong);
            CHECK_VALID(f, "filter");
            champ_free(f);
        }
        CHECK_ST(champ_filter(e, alg_keep_even, NULL, &f), CHAMP_OK);
        CHECK(f && champ_size(f) == 0, "filter of an empty map");
        champ_free(f);
        champ_free(a);
        champ_free(e);
        champ_free(d);
        champ_free(o);
    }
    CHECK_EQ(th_pool_live(p), 0, "the pool drained");
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* Promises of the header not covered by the models above              */
/* ------------------------------------------------------------------ */

/* champ_filter: "Subtrees whose entries are all kept are shared with m".
 * Dropping k keys of 5000 builds at most the k paths to them; keeping
 * everything gives m itself (its root); keeping nothing the empty map. */
static const uint64_t alg_drop[3] = {77, 1234, 4321};
static bool alg_keep_but(const champ_key *k, void *v, void *ctx) {
    (void)v;
    size_t n = *(const size_t *)ctx;
    for (size_t i = 0; i < n && i < 3; i++)
        if (k->u64 == alg_drop[i])
            return false;
    return n <= 3; /* n > 3: keep nothing */
}

static void test_alg_filter_shares(void) {
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
    if (!p)
        return;
    for (int set = 0; set < 2; set++) {
        champ_config cfg = th_kind_config(CHAMP_KEY_U64, 61, p);
        cfg.set = set;
        champ_map *a = NULL;
        CHECK_ST(champ_new(&cfg, &a), CHAMP_OK);
        if (!a)
            break;
        for (uint64_t k = 0; k < 5000; k++)
            CHECK_ST(set ? champ_add_u64(a, k, NULL) : champ_set_u64(a, k, th_tok(k), NULL),
                     CHAMP_OK);
        champ_stats sa = th_stats(a);
        for (size_t drop = 0; drop <= 4; drop++) {
            champ_map *f = NULL;
            CHECK_ST(champ_filter(a, alg_keep_but, &drop, &f), CHAMP_OK);
            if (!f)
                continue;
            size_t want = drop > 3 ? 0 : 5000 - drop;
            CHECK(champ_size(f) == want, "filter drop %zu (set %d): size %zu", drop, set,
                  champ_size(f));
            CHECK_VALID(f, "filter dropping some keys");
            if (drop == 0)
                CHECK(f->root == a->root, "filter keeping all (set %d): m's root", set);
            else if (drop > 3)
                CHECK(f->root == NULL, "filter keeping none (set %d): no root", set);
            else {
                size_t total, fresh = alg_fresh(f, a, a, &total);
                CHECK(fresh <= drop * (sa.depth_max + 1u),
                      "filter dropping %zu of 5000 (set %d): %zu new nodes of %zu, "
                      "depth %u", drop, set, fresh, total, sa.depth_max);
                for (size_t i = 0; i < drop; i++)
                    CHECK(!champ_contains_u64(f, alg_drop[i]), "dropped key %llu",
                          (unsigned long long)alg_drop[i]);
                CHECK(champ_contains_u64(f, 78), "kept key");
            }
            champ_free(f);
        }
        champ_free(a);
    }
    CHECK_EQ(th_pool_live(p), 0, "the pool drained");
    champ_pool_free(p);
}

/* champ_diff's order: "in the order of the walk (side by side: slot by
 * slot; key by key: `from`'s keys, then `to`'s additions)".  Side by side
 * (same seed) the differences come in slot order: at the first level where
 * two hashes' slots differ, the lower slot first.  (Only the first two
 * levels are checked, full nodes for 3000 keys: in a slot that holds an
 * entry on one side and a subtree on the other, the entry's key is looked
 * up and reported first, then the rest of the subtree.)  Key by key (to under another seed) the
 * removals and changes come first, in from's iteration order, then the
 * additions in to's. */
typedef struct alg_dord {
    uint64_t key[400];
    champ_change what[400];
    size_t n;
} alg_dord;

static int alg_dord_fn(champ_change what, const champ_key *k, void *ov, void *nv,
                       void *ctx) {
    (void)ov;
    (void)nv;
    alg_dord *d = ctx;
    if (d->n < 400) {
        d->key[d->n] = k->u64;
        d->what[d->n] = what;
    }
    d->n++;
    return 0;
}

/* The position of every key of m (< 10000) in its iteration order. */
static void alg_positions(const champ_map *m, size_t *pos) {
    for (size_t i = 0; i < 10000; i++)
        pos[i] = (size_t)-1;
    champ_iter it;
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    champ_key k;
    size_t i = 0;
    while (champ_iter_next(&it, &k, NULL))
        if (k.u64 < 10000)
            pos[k.u64] = i++;
}

/* Whether hash a comes before hash b slot by slot: at the first level
 * where their slots differ, a's is lower. */
static bool alg_slot_before(uint64_t a, uint64_t b) {
    for (unsigned level = 0; level * CHAMP_BITS < 64; level++) {
        uint32_t sa = (uint32_t)(a >> (CHAMP_BITS * level)) & 31u;
        uint32_t sb = (uint32_t)(b >> (CHAMP_BITS * level)) & 31u;
        if (sa != sb)
            return sa < sb;
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* champ_diff's order, against a model of the header's rule            */
/* ------------------------------------------------------------------ */

/* Generic keys whose hashes the test chooses: few distinct slices at the
 * first levels, so that slots hold entries, pairs and subtrees on either
 * side, and some keys share their whole hash (collision lists). */
typedef struct {
    uint64_t id, hash;
} alg_hk;

static uint64_t alg_hk_hash(const void *k, void *ctx) {
    (void)ctx;
    return ((const alg_hk *)k)->hash;
}

static bool alg_hk_equal(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return ((const alg_hk *)a)->id == ((const alg_hk *)b)->id;
}

enum { ALG_HK_N = 24, ALG_HK_MAXD = 2 * ALG_HK_N };

typedef struct {
    uint32_t n;
    uint8_t key[ALG_HK_MAXD];
    uint8_t what[ALG_HK_MAXD];
} alg_hkd;

static alg_hk alg_hks[ALG_HK_N];

static int alg_hkd_fn(champ_change what, const champ_key *key, void *o, void *n, void *ctx) {
    (void)o;
    (void)n;
    alg_hkd *d = ctx;
    if (d->n < ALG_HK_MAXD) {
        d->key[d->n] = (uint8_t)(((const alg_hk *)key->ptr)->id);
        d->what[d->n] = (uint8_t)what;
    }
    d->n++;
    return 0;
}

/* A map's keys in its iteration order (ids) and their values. */
typedef struct {
    uint32_t n;
    uint8_t id[ALG_HK_N];
    uintptr_t val[ALG_HK_N]; /* by id, 0: absent */
} alg_hko;

static void alg_hk_order(const champ_map *m, alg_hko *o) {
    memset(o, 0, sizeof *o);
    champ_iter it;
    champ_key k;
    void *v;
    if (champ_iter_init(&it, m) != CHAMP_OK)
        return;
    while (champ_iter_next(&it, &k, &v) && o->n < ALG_HK_N) {
        uint8_t id = (uint8_t)((const alg_hk *)k.ptr)->id;
        o->id[o->n++] = id;
        o->val[id] = (uintptr_t)v;
    }
}

/* The model: the differences of the keys of from and to that fall in
 * the subtree of one slot (ids in each map's iteration order), at
 * `level`.  Slot by slot, lower slots first; a slot holding keys on one
 * side only gives them in that side's order; a slot holding two keys or
 * fewer on each side (entries or a pair: no subtree) and every
 * collision-level list are matched as lists: from's keys first
 * (removals and changes, in from's order), then to's additions (in to's
 * order); a slot with a subtree on either side is the same rule one level
 * down. */
static void alg_hk_model(const alg_hko *fo, const uint8_t *f, uint32_t nf,
                         const alg_hko *to, const uint8_t *t, uint32_t nt,
                         unsigned level, alg_hkd *d) {
    bool list = level == CHAMP_COLL_LEVEL;
    if (!list && nf <= 2 && nt <= 2 && nf + nt > 0 && level > 0)
        list = true; /* (the caller split by slot: this is one slot's keys) */
    if (list || nf == 0 || nt == 0) {
        for (uint32_t i = 0; i < nf; i++) {
            uintptr_t nv = to->val[f[i]];
            if (!nv || nv != fo->val[f[i]]) {
                d->key[d->n] = f[i];
                d->what[d->n++] = nv ? CHAMP_CHANGED : CHAMP_REMOVED;
            }
        }
        for (uint32_t j = 0; j < nt; j++)
            if (!fo->val[t[j]]) {
                d->key[d->n] = t[j];
                d->what[d->n++] = CHAMP_ADDED;
            }
        return;
    }
    for (unsigned s = 0; s < 32; s++) {
        uint8_t fs[ALG_HK_N], ts[ALG_HK_N];
        uint32_t a = 0, b = 0;
        for (uint32_t i = 0; i < nf; i++)
            if (((alg_hks[f[i]].hash >> (CHAMP_BITS * level)) & 31) == s)
                fs[a++] = f[i];
        for (uint32_t j = 0; j < nt; j++)
            if (((alg_hks[t[j]].hash >> (CHAMP_BITS * level)) & 31) == s)
                ts[b++] = t[j];
        if (a + b)
            alg_hk_model(fo, fs, a, to, ts, b, level + 1, d);
    }
}

/* Random pairs of small maps (0-12 keys of 24, hashes from a few slices
 * per level, a fifth of them sharing one whole hash with another key):
 * `to` a copy of from changed (sharing its untouched nodes) or built on
 * its own; every difference reported exactly in the model's order. */
static void test_alg_diff_slot_order(void) {
    long rounds = th_iters(4000, 200);
    long bad = 0;
    for (long r = 0; r < rounds; r++) {
        uint64_t seed = 0xd1ff0000u + (uint64_t)r;
        th_rng g = {seed};
        for (uint64_t i = 0; i < ALG_HK_N; i++) {
            alg_hks[i].id = i;
            uint64_t h = 0;
            unsigned deep = (unsigned)th_below(&g, 4); /* levels with a choice */
            for (unsigned l = 0; l < deep; l++)
                h |= th_below(&g, 4) << (CHAMP_BITS * l);
            if (th_chance(&g, 10))
                h |= th_next(&g) & ~(uint64_t)0xfffff; /* differ only far down */
            alg_hks[i].hash = h;
            if (i > 0 && th_chance(&g, 20))
                alg_hks[i].hash = alg_hks[th_below(&g, i)].hash; /* a collision */
        }
        champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
        c.hash = alg_hk_hash;
        c.equal = alg_hk_equal;
        champ_map *from = NULL, *to = NULL;
        if (champ_new(&c, &from) != CHAMP_OK) {
            CHECK(false, "champ_new [seed 0x%llx]", (unsigned long long)seed);
            return;
        }
        uint32_t nf = (uint32_t)th_below(&g, 13);
        for (uint32_t i = 0; i < nf; i++)
            CHECK_ST(champ_set(from, &alg_hks[th_below(&g, ALG_HK_N)], (void *)(uintptr_t)1, NULL),
                     CHAMP_OK);
        if (th_chance(&g, 50)) {
            CHECK_ST(champ_copy(from, &to), CHAMP_OK);
        } else {
            CHECK_ST(champ_new_like(from, &to), CHAMP_OK);
            alg_hko fo;
            alg_hk_order(from, &fo);
            for (uint32_t i = 0; i < fo.n && to; i++)
                if (th_chance(&g, 70))
                    CHECK_ST(champ_set(to, &alg_hks[fo.id[i]], (void *)(uintptr_t)1, NULL),
                             CHAMP_OK);
        }
        if (!to) {
            champ_free(from);
            return;
        }
        uint32_t nch = (uint32_t)th_below(&g, 8);
        for (uint32_t i = 0; i < nch; i++) {
            alg_hk *k = &alg_hks[th_below(&g, ALG_HK_N)];
            if (th_chance(&g, 40))
                CHECK_ST(champ_remove(to, k, NULL), CHAMP_OK);
            else
                CHECK_ST(champ_set(to, k, (void *)(uintptr_t)(1 + th_below(&g, 2)), NULL),
                         CHAMP_OK);
        }
        alg_hko fo, tor;
        alg_hk_order(from, &fo);
        alg_hk_order(to, &tor);
        alg_hkd want = {0}, got = {0};
        alg_hk_model(&fo, fo.id, fo.n, &tor, tor.id, tor.n, 0, &want);
        CHECK_ST(champ_diff(from, to, NULL, alg_hkd_fn, &got), CHAMP_OK);
        bool same = got.n == want.n &&
                    memcmp(got.key, want.key, want.n) == 0 &&
                    memcmp(got.what, want.what, want.n) == 0;
        if (!same && bad++ < 5) {
            char gs[200] = "", ws[200] = "";
            for (uint32_t i = 0; i < got.n && i < ALG_HK_MAXD; i++)
                snprintf(gs + strlen(gs), sizeof gs - strlen(gs), "%c%u ",
                         "?+-~"[got.what[i] & 3], got.key[i]);
            for (uint32_t i = 0; i < want.n; i++)
                snprintf(ws + strlen(ws), sizeof ws - strlen(ws), "%c%u ",
                         "?+-~"[want.what[i] & 3], want.key[i]);
            CHECK(false, "diff order: got %s, model %s [seed 0x%llx]", gs, ws,
                  (unsigned long long)seed);
        } else {
            CHECK(same, "diff order [seed 0x%llx]", (unsigned long long)seed);
        }
        champ_free(from);
        champ_free(to);
    }
}

/* The first two levels' slots of key's hash (seed 62), the rest zero. */
static uint64_t alg_top(uint64_t key) {
    return hash_u64(key, 62) & ((1u << (2 * CHAMP_BITS)) - 1);
}

static void test_alg_diff_order(void) {
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
    if (!p)
        return;
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 62, p);
    champ_map *from = NULL, *to = NULL, *to2 = NULL;
    CHECK_ST(champ_new(&cfg, &from), CHAMP_OK);
    if (!from)
        return;
    for (uint64_t k = 0; k < 3000; k++)
        CHECK_ST(champ_set_u64(from, k, th_tok(k), NULL), CHAMP_OK);
    CHECK_ST(champ_copy(from, &to), CHAMP_OK);
    for (uint64_t k = 0; k < 3000; k += 30) {
        CHECK_ST(champ_remove_u64(to, k, NULL), CHAMP_OK);              /* 100 */
        CHECK_ST(champ_set_u64(to, k + 1, th_tok(k + 7), NULL), CHAMP_OK); /* 100 */
        CHECK_ST(champ_set_u64(to, k + 5000, th_tok(k), NULL), CHAMP_OK);  /* 100 */
    }
    size_t *pos = malloc(10000 * sizeof *pos);
    alg_dord *d = malloc(sizeof *d);
    if (!to || !pos || !d)
        goto out;

    /* side by side: trie order */
    d->n = 0;
    CHECK_ST(champ_diff(from, to, NULL, alg_dord_fn, d), CHAMP_OK);
    CHECK_EQ(d->n, 300, "side by side: every difference once");
    size_t rises = 0;
    for (size_t i = 1; i < d->n && i < 400; i++)
        rises += !alg_slot_before(alg_top(d->key[i]), alg_top(d->key[i - 1]));
    CHECK_EQ(rises, d->n - 1, "side by side: the differences in slot order at levels 0-1");

    /* key by key: from's removals and changes in from's order, then the
     * additions in to's */
    cfg.seed = 63;
    CHECK_ST(champ_new(&cfg, &to2), CHAMP_OK);
    if (!to2)
        goto out;
    champ_iter it;
    champ_key k;
    void *v;
    CHECK_ST(champ_iter_init(&it, to), CHAMP_OK);
    while (champ_iter_next(&it, &k, &v))
        CHECK_ST(champ_set_u64(to2, k.u64, v, NULL), CHAMP_OK);
    d->n = 0;
    CHECK_ST(champ_diff(from, to2, NULL, alg_dord_fn, d), CHAMP_OK);
    CHECK_EQ(d->n, 300, "key by key: every difference once");
    size_t first_add = d->n;
    for (size_t i = 0; i < d->n && i < 400; i++)
        if (d->what[i] == CHAMP_ADDED) {
            first_add = i;
            break;
        }
    size_t late = 0;
    for (size_t i = first_add; i < d->n && i < 400; i++)
        late += d->what[i] != CHAMP_ADDED;
    CHECK_EQ(late, 0, "key by key: no removal or change after the first addition");
    CHECK_EQ(first_add, 200, "key by key: 200 removals and changes first");
    alg_positions(from, pos);
    rises = 0;
    for (size_t i = 1; i < first_add; i++)
        rises += pos[d->key[i]] > pos[d->key[i - 1]];
    CHECK_EQ(rises, first_add - 1, "key by key: removals and changes in from's order");
    alg_positions(to2, pos);
    rises = 0;
    for (size_t i = first_add + 1; i < d->n && i < 400; i++)
        rises += pos[d->key[i]] > pos[d->key[i - 1]];
    CHECK_EQ(rises, d->n - first_add - 1, "key by key: additions in to's order");
out:
    free(pos);
    free(d);
    champ_free(from);
    champ_free(to);
    champ_free(to2);
    CHECK_EQ(th_pool_live(p), 0, "the pool drained");
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* One pool and seed, the same callbacks, another ctx                  */
/* ------------------------------------------------------------------ */

/* Two u64 types of one pool and seed hash alike; whether a result of a's
 * type may take b's nodes as they are depends on how the types hold
 * values (algebra.c, same_refs): with no reference callbacks ctx does not
 * matter (the fast path: a union with a superset b is b's root), with the
 * same callbacks and another ctx b's entries were retained under b's ctx
 * and must be released under it, so the results are built key by key,
 * retaining what they keep under a's ctx.  Every op both ways, each
 * result checked against the truth, freed in either order; then each
 * ctx's retains and releases balance its own hand-ins. */
static void test_alg_same_refs_ctx(void) {
    static th_obj vals[8];
    for (int counted = 0; counted < 2; counted++)
        for (int op = 0; op < 8; op++) {
            th_cbctx cx[2];
            memset(cx, 0, sizeof cx);
            memset(vals, 0, sizeof vals);
            for (size_t i = 0; i < 8; i++)
                vals[i].id = 7000 + i;
            champ_pool *p = NULL;
            CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
            champ_map *m[2] = {NULL, NULL}, *r = NULL;
            long ins[2] = {0, 0};
            for (int s = 0; s < 2; s++) {
                champ_config c = th_kind_config(CHAMP_KEY_U64, 0x5a3e, p);
                c.ctx = &cx[s];
                if (counted) {
                    c.val_retain = th_obj_retain;
                    c.val_release = th_obj_release;
                }
                CHECK_ST(champ_new(&c, &m[s]), CHAMP_OK);
            }
            if (!p || !m[0] || !m[1])
                return;
            /* a: keys 0..199; b: 100..299 (all 300 for the unions) */
            for (uint64_t k = 0; k < 300; k++)
                for (int s = 0; s < 2; s++) {
                    bool in = s == 0 ? k < 200 : (op % 4 == 0 ? true : k >= 100);
                    if (!in)
                        continue;
                    CHECK_ST(champ_set_u64(m[s], k, &vals[(k + (uint64_t)s) % 8], NULL),
                             CHAMP_OK);
                    ins[s]++;
                    if (counted)
                        th_obj_hand_in(&vals[(k + (uint64_t)s) % 8]);
                }
            const champ_map *x = op < 4 ? m[0] : m[1], *y = op < 4 ? m[1] : m[0];
            int xs = op < 4 ? 0 : 1;
            unsigned long rel_y = cx[!xs].release_calls, ret_y = cx[!xs].retain_calls;
            champ_status st;
            switch (op % 4) {
            case 0: st = champ_union(x, y, NULL, NULL, &r); break;
            case 1: st = champ_intersect(x, y, NULL, NULL, &r); break;
            case 2: st = champ_difference(x, y, &r); break;
            default: st = champ_symdiff(x, y, &r); break;
            }
            CHECK_ST(st, CHAMP_OK);
            if (!r)
                return;
            char what[96];
            snprintf(what, sizeof what, "same callbacks, other ctx (%s): op %d",
                     counted ? "counted values" : "no callbacks", op);
            size_t want = 0;
            bool ok = true;
            for (uint64_t k = 0; k < 300; k++) {
                bool inx = champ_contains_u64(x, k), iny = champ_contains_u64(y, k);
                bool in = op % 4 == 0 ? inx || iny
                          : op % 4 == 1 ? inx && iny
                          : op % 4 == 2 ? inx && !iny
                                        : inx != iny;
                void *vx = NULL, *vy = NULL, *vr = NULL;
                champ_get_u64(x, k, &vx);
                champ_get_u64(y, k, &vy);
                bool got = champ_get_u64(r, k, &vr);
                void *wantv = op % 4 == 0 ? (iny ? vy : vx) : inx ? vx : vy;
                ok = ok && got == in && (!in || vr == wantv);
                want += in;
            }
            CHECK(ok, "%s: contents and values", what);
            CHECK_EQ(champ_size(r), want, what);
            CHECK_VALID(r, what);
            if (op == 0 && !counted)
                /* b holds every key of a, and b's values win */
                CHECK(r->root == y->root, "%s: the union with a superset is b's root (fast "
                      "path)", what);
            if (counted) {
                CHECK(r->root != y->root, "%s: no node of b's type in the result", what);
                CHECK(cx[!xs].retain_calls == ret_y && cx[!xs].release_calls == rel_y,
                      "%s: no callback of b's ctx ran (%lu retains, %lu releases)", what,
                      cx[!xs].retain_calls - ret_y, cx[!xs].release_calls - rel_y);
            }
            /* inputs first or the result first */
            if (op % 2) {
                champ_free(m[0]);
                champ_free(m[1]);
                CHECK_VALID(r, "the result alone");
                champ_free(r);
            } else {
                champ_free(r);
                champ_free(m[1]);
                champ_free(m[0]);
            }
            if (counted)
                for (int s = 0; s < 2; s++)
                    CHECK((long)cx[s].release_calls == ins[s] + (long)cx[s].retain_calls &&
                              cx[s].underflows == 0,
                          "%s: ctx %d: %lu releases for %ld hand-ins and %lu retains", what,
                          s, cx[s].release_calls, ins[s], cx[s].retain_calls);
            long held = 0;
            for (size_t i = 0; i < 8; i++)
                held += vals[i].held != 0;
            CHECK(held == 0, "%s: %ld values unbalanced", what, held);
            CHECK(th_pool_live(p) == 0, "%s: pool drained", what);
            champ_pool_free(p);
        }
}

/* ------------------------------------------------------------------ */
/* Out of memory deep in a merged list                                 */
/* ------------------------------------------------------------------ */

/* A pair {k1, k2} facing an entry k3 whose full hash is k1's: the merge
 * makes a list of three keys (algebra.c, build_list) that goes down level
 * by level while the three share a slice, to the level where k2's hash
 * parts from k1's: there the node of k2 and the pair {k1, k3} is the
 * first allocation, then a one-child node per level above it.  Each
 * allocation is made to fail: with champ_pool_fail_after (it and every
 * later one), and once only (the backing allocator refusing its next
 * request once, the chunk boundary moved by filler blocks from 0 to 47 of
 * them, so that the allocations after the refused one succeed: an
 * operation that went on past a failure would return a result).  ENOMEM: *out NULL, the inputs as they
 * were, nothing left allocated; success: the three keys with their
 * values, valid, equal to the map inserts build (with compare: the same
 * trie).  Union both ways and symdiff, generic keys with and without
 * compare, the parting level from 1 to 12. */
static int alg_cmp_id(const void *a, const void *b, void *ctx) {
    (void)ctx;
    uint64_t x = ((const th_obj *)a)->id, y = ((const th_obj *)b)->id;
    return (x > y) - (x < y);
}

enum { ALG_DL_FILL = 48 };

typedef struct alg_dl {
    th_obj k[3];
    th_cbctx ctx;
    champ_map *fill[ALG_DL_FILL];
    long enomem, single;
} alg_dl;

/* One run: inputs in pool p (a th_alloc pool when ta), `fill` filler
 * blocks (one-key u64 maps made by champ_pset_u64 from an empty one: a
 * block of one size each, nothing freed), then the operation with
 * allocation `fail` failing (fail_after from it on) or, with ta, the next
 * request to the backing allocator refused once.  Returns the status. */
static champ_status alg_dl_run(alg_dl *d, champ_pool *p, th_alloc *ta, bool cmp, int op,
                               size_t fill, long fail, const char *what) {
    champ_config c = th_generic_config(&d->ctx, false, p);
    c.compare = cmp ? alg_cmp_id : NULL;
    champ_config cu = th_kind_config(CHAMP_KEY_U64, 1, p);
    champ_map *a = NULL, *b = NULL, *want = NULL, *f = NULL, *r = NULL;
    CHECK_ST(champ_new(&c, &a), CHAMP_OK);
    CHECK_ST(champ_new_like(a, &b), CHAMP_OK);
    CHECK_ST(champ_new_like(a, &want), CHAMP_OK);
    CHECK_ST(champ_new(&cu, &f), CHAMP_OK);
    if (!a || !b || !want || !f)
        return CHAMP_EINVAL;
    th_obj *k = d->k;
    CHECK_ST(champ_set(a, &k[1], th_tok(1), NULL), CHAMP_OK);
    CHECK_ST(champ_set(a, &k[0], th_tok(0), NULL), CHAMP_OK);
    CHECK_ST(champ_set(b, &k[2], th_tok(2), NULL), CHAMP_OK);
    for (int i = 2; i >= 0; i--)
        CHECK_ST(champ_set(want, &k[i], th_tok((uint64_t)i), NULL), CHAMP_OK);
    for (size_t i = 0; i < fill; i++)
        CHECK_ST(champ_pset_u64(f, i, NULL, &d->fill[i]), CHAMP_OK);
    size_t live = th_pool_live(p);
    if (ta) {
        ta->fail_at = fail < 0 ? -1 : (long)ta->calls;
        ta->fail_persist = false;
    } else {
        champ_pool_fail_after(p, fail);
    }
    r = th_tok(1);
    champ_status st = op == 0   ? champ_union(a, b, NULL, NULL, &r)
                      : op == 1 ? champ_union(b, a, NULL, NULL, &r)
                                : champ_symdiff(a, b, &r);
    if (ta)
        ta->fail_at = -1;
    else
        champ_pool_fail_after(p, -1);
    if (st == CHAMP_ENOMEM) {
        d->enomem++;
        d->single += ta != NULL;
        CHECK(r == NULL, "%s: ENOMEM: *out NULL", what);
        CHECK(th_pool_live(p) == live, "%s: ENOMEM: %zu bytes left allocated", what,
              th_pool_live(p) - live);
        CHECK(champ_size(a) == 2 && champ_get(a, &k[0], NULL) && champ_get(a, &k[1], NULL) &&
                  champ_size(b) == 1 && champ_get(b, &k[2], NULL),
              "%s: ENOMEM: the inputs unchanged", what);
        CHECK_VALID(a, what);
        CHECK_VALID(b, what);
    } else {
        CHECK_ST(st, CHAMP_OK);
        if (st == CHAMP_OK && r) {
            bool ok = champ_size(r) == 3;
            for (int i = 0; i < 3; i++) {
                void *v = NULL;
                ok = ok && champ_get(r, &k[i], &v) && v == th_tok((uint64_t)i);
            }
            CHECK(ok, "%s: the three keys", what);
            CHECK_VALID(r, what);
            CHECK(champ_equal(r, want, NULL, NULL), "%s: equal to inserts", what);
            if (cmp)
                CHECK(th_same_dump(r, want), "%s: the trie inserts build", what);
            champ_free(r);
        }
    }
    champ_free(a);
    champ_free(b);
    champ_free(want);
    champ_free(f);
    for (size_t i = 0; i < fill; i++)
        champ_free(d->fill[i]);
    CHECK(th_pool_live(p) == 0, "%s: pool drained", what);
    return st;
}

static void test_alg_oom_deep_list(void) {
    bool faults = TH_NEED_FAULTS("algebra.oom.deep_list, its fail_after part");
    static const unsigned levels[] = {1, 2, 3, 6, 12};
    alg_dl *d = calloc(1, sizeof *d);
    if (!d)
        return;
    for (int cmp = 0; cmp < 2; cmp++)
        for (size_t li = 0; li < sizeof levels / sizeof levels[0]; li++)
            for (int op = 0; op < 3; op++) {
                const uint64_t h1 = 0x0123456789abcdefULL;
                /* k1 and k3 collide; the ids put k3 first in key order */
                memset(d->k, 0, sizeof d->k);
                d->k[0].id = 20;
                d->k[0].hash = h1;
                d->k[1].id = 30;
                d->k[1].hash = h1 ^ (1ULL << (5 * levels[li]));
                d->k[2].id = 10;
                d->k[2].hash = h1;
                memset(&d->ctx, 0, sizeof d->ctx);
                d->ctx.hash_mode = TH_HASH_FIELD;
                char what[128];
                /* fail_after: allocation n and every later one */
                champ_status st = CHAMP_ENOMEM;
                long n = 0;
                for (; faults && n < 64 && st == CHAMP_ENOMEM; n++) {
                    champ_pool *p = NULL;
                    CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
                    snprintf(what, sizeof what, "%s, parting at level %u, %s: fail_after %ld",
                             op == 0 ? "union(pair, entry)" : op == 1 ? "union(entry, pair)"
                                                                       : "symdiff(pair, entry)",
                             levels[li], cmp ? "compare" : "no compare", n);
                    st = alg_dl_run(d, p, NULL, cmp, op, 0, n, what);
                    champ_pool_free(p);
                }
                if (faults)
                    CHECK(n > 1, "%s: the first allocation failed", what);
                /* the next backing request refused once, after 0..47 filler blocks */
                for (size_t fill = 0; fill < ALG_DL_FILL; fill++) {
                    th_alloc ta;
                    th_alloc_init(&ta);
                    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
                    pc.allocator = &ta.a;
                    pc.chunk_size = 1024;
                    champ_pool *p = NULL;
                    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
                    snprintf(what, sizeof what, "%s, parting at level %u, %s: %zu fillers, "
                             "a backing request refused",
                             op == 0 ? "union(pair, entry)" : op == 1 ? "union(entry, pair)"
                                                                       : "symdiff(pair, entry)",
                             levels[li], cmp ? "compare" : "no compare", fill);
                    alg_dl_run(d, p, &ta, cmp, op, fill, 0, what);
                    champ_pool_free(p);
                    CHECK(ta.live_bytes == 0 && ta.size_mismatches == 0,
                          "%s: %zu bytes not given back", what, ta.live_bytes);
                }
            }
    CHECK(d->enomem > 0 && d->single > 0, "failures met: %ld, of which %ld a single refusal",
          d->enomem, d->single);
    free(d);
}

const th_test th_tests_algebra[] = {
    {"algebra.u64", test_alg_u64},
    {"algebra.u64-set", test_alg_u64_set},
    {"algebra.u64-counted", test_alg_u64_counted},
    {"algebra.bytes", test_alg_bytes},
    {"algebra.bytes-set", test_alg_bytes_set},
    {"algebra.generic", test_alg_generic},
    {"algebra.generic-set", test_alg_generic_set},
    {"algebra.generic-mod64", test_alg_generic_mod64},
    {"algebra.generic-mod64-set", test_alg_generic_mod64_set},
    {"algebra.generic-10bits", test_alg_generic_10bits},
    {"algebra.generic-10bits-set", test_alg_generic_10bits_set},
    {"algebra.generic-deep", test_alg_generic_deep},
    {"algebra.generic-deep-set", test_alg_generic_deep_set},
    {"algebra.share", test_alg_share},
    {"algebra.callbacks", test_alg_callbacks},
    {"algebra.mixed_refs", test_alg_mixed_refs},
    {"algebra.noncopyable", test_alg_noncopyable},
    {"algebra.misuse", test_alg_misuse},
    {"algebra.collision_views", test_alg_collision_views},
    {"algebra.filter_shares", test_alg_filter_shares},
    {"algebra.diff_order", test_alg_diff_order},
    {"algebra.diff_slot_order", test_alg_diff_slot_order},
    {"algebra.same_refs_ctx", test_alg_same_refs_ctx},
    {"algebra.oom.fail_after", test_alg_oom_fail_after},
    {"algebra.oom.backing", test_alg_oom_backing},
    {"algebra.oom.deep_list", test_alg_oom_deep_list},
};
const size_t th_tests_algebra_count = sizeof th_tests_algebra / sizeof th_tests_algebra[0];

_Static_assert(ALG_NSC == 13, "one registered test per scenario");

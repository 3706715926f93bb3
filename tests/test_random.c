/*
 * test_random.c - a differential fuzzer: champ maps against a reference map
 * that always tells the truth.
 *
 * Each scenario draws keys from a fixed universe of ids 0..n-1 (u64 keys,
 * byte strings of 0..40 bytes with embedded NULs, or generic th_obj keys
 * under a good, weak or deep-path hash), so the reference is simply an array
 * indexed by id.  Operations: set, remove, get, contains, pset, premove,
 * copy, clear, and in-place updates of old versions.  A ring of old versions
 * (each a map plus its reference snapshot) is re-checked after newer
 * versions are derived; champ_validate and full comparisons (lookups of the
 * whole universe, iteration, foreach) run at intervals.  At the end every map
 * is freed and the scenario's pool must be back to zero live bytes; in the
 * counted scenario every key and value must be released exactly as often as
 * it was retained or handed in.
 *
 * A full run (CHAMP_TEST_SCALE=1) does 1,000,000 operations.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

typedef struct rnd_scenario {
    const char *name;
    champ_key_kind kind;
    int hash_mode;
    unsigned mask_bits; /* TH_HASH_BITS: hash bits that vary */
    size_t universe;
    bool counted;       /* generic with counted key/value callbacks */
    long ops;           /* at scale 1 */
} rnd_scenario;

static const rnd_scenario rnd_scenarios[] = {
    {"u64", CHAMP_KEY_U64, 0, 0, 20000, false, 250000},
    {"bytes", CHAMP_KEY_BYTES, 0, 0, 5000, false, 200000},
    {"generic-counted", CHAMP_KEY_GENERIC, TH_HASH_BITS, 12, 3000, true, 150000},
    {"generic-mod64", CHAMP_KEY_GENERIC, TH_HASH_MOD64, 0, 1000, false, 120000},
    {"generic-10bits", CHAMP_KEY_GENERIC, TH_HASH_BITS, 10, 3000, false, 150000},
    {"generic-deep", CHAMP_KEY_GENERIC, TH_HASH_DEEP, 0, 2000, false, 130000},
};

/* The truth about one version. */
typedef struct rnd_ref {
    unsigned char *present;
    void **val;
    const void **kptr; /* generic: the key object the map stores */
    size_t count;
} rnd_ref;

typedef struct rnd_version {
    champ_map *m;
    rnd_ref ref;
} rnd_version;

#define RND_RING 8
#define RND_NVALS 257

typedef struct rnd_state {
    const rnd_scenario *sc;
    size_t n;
    th_rng r;
    th_cbctx ctx;
    champ_pool *pool;
    /* universe */
    uint64_t *u64;
    unsigned char **bytes; /* NUL-terminated copies */
    size_t *blen;
    bool *bstr_ok;         /* no NUL inside: usable with the _str forms */
    th_obj *objs;          /* generic keys */
    th_obj *probes;        /* equal to objs[i], other pointers */
    th_obj *vals;          /* counted values */
    /* reverse index: fingerprint -> id (open addressing) */
    uint64_t *ix_fp;
    size_t *ix_id;
    size_t ix_cap;
    /* versions */
    rnd_version cur;
    rnd_version ring[RND_RING];
    unsigned char *seen;
    long op;
    bool broken; /* a check failed: stop the scenario */
} rnd_state;

/* ------------------------------------------------------------------ */
/* Universe and reverse index                                          */
/* ------------------------------------------------------------------ */

static uint64_t rnd_fnv(const void *p, size_t len) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return th_mix64(h ^ len);
}

static bool rnd_key_eq(const rnd_state *s, size_t id, const champ_key *k) {
    if (s->sc->kind == CHAMP_KEY_U64)
        return k->u64 == s->u64[id];
    return k->len == s->blen[id] &&
           (k->len == 0 || memcmp(k->ptr, s->bytes[id], k->len) == 0);
}

/* Id of a key reported by iteration, or (size_t)-1. */
static size_t rnd_lookup_id(const rnd_state *s, const champ_key *k) {
    if (s->sc->kind == CHAMP_KEY_GENERIC) {
        const th_obj *o = k->ptr;
        if (!o || o->id == 0 || o->id > s->n)
            return (size_t)-1;
        return (size_t)(o->id - 1);
    }
    if (s->sc->kind == CHAMP_KEY_BYTES && !k->ptr && k->len)
        return (size_t)-1;
    uint64_t fp = s->sc->kind == CHAMP_KEY_U64 ? th_mix64(k->u64)
                                               : rnd_fnv(k->ptr, k->len);
    for (size_t i = fp & (s->ix_cap - 1);; i = (i + 1) & (s->ix_cap - 1)) {
        if (s->ix_id[i] == (size_t)-1)
            return (size_t)-1;
        if (s->ix_fp[i] == fp && rnd_key_eq(s, s->ix_id[i], k))
            return s->ix_id[i];
    }
}

static bool rnd_index_add(rnd_state *s, size_t id) {
    champ_key k;
    memset(&k, 0, sizeof k);
    if (s->sc->kind == CHAMP_KEY_U64) {
        k.u64 = s->u64[id];
    } else {
        k.ptr = s->bytes[id];
        k.len = s->blen[id];
    }
    if (rnd_lookup_id(s, &k) != (size_t)-1)
        return false; /* duplicate key */
    uint64_t fp = s->sc->kind == CHAMP_KEY_U64 ? th_mix64(k.u64)
                                               : rnd_fnv(k.ptr, k.len);
    size_t i = fp & (s->ix_cap - 1);
    while (s->ix_id[i] != (size_t)-1)
        i = (i + 1) & (s->ix_cap - 1);
    s->ix_fp[i] = fp;
    s->ix_id[i] = id;
    return true;
}

static bool rnd_universe_make(rnd_state *s) {
    size_t n = s->n;
    s->ix_cap = 1;
    while (s->ix_cap < 4 * n)
        s->ix_cap <<= 1;
    s->ix_fp = calloc(s->ix_cap, sizeof *s->ix_fp);
    s->ix_id = malloc(s->ix_cap * sizeof *s->ix_id);
    s->seen = calloc(n, 1);
    if (!s->ix_fp || !s->ix_id || !s->seen)
        return false;
    for (size_t i = 0; i < s->ix_cap; i++)
        s->ix_id[i] = (size_t)-1;
    switch (s->sc->kind) {
    case CHAMP_KEY_U64:
        s->u64 = malloc(n * sizeof *s->u64);
        if (!s->u64)
            return false;
        for (size_t i = 0; i < n; i++) {
            do {
                uint64_t x = th_next(&s->r);
                /* some small and extreme keys too */
                if (i < 64)
                    x = i;
                else if (i < 72)
                    x = UINT64_MAX - (i - 64);
                else if (th_chance(&s->r, 10))
                    x &= 0xffff;
                s->u64[i] = x;
            } while (!rnd_index_add(s, i));
        }
        break;
    case CHAMP_KEY_BYTES:
        s->bytes = calloc(n, sizeof *s->bytes);
        s->blen = calloc(n, sizeof *s->blen);
        s->bstr_ok = calloc(n, sizeof *s->bstr_ok);
        if (!s->bytes || !s->blen || !s->bstr_ok)
            return false;
        for (size_t i = 0; i < n; i++) {
            s->bytes[i] = malloc(41);
            if (!s->bytes[i])
                return false;
            do {
                size_t len = (size_t)th_below(&s->r, 41);
                unsigned alphabet = th_chance(&s->r, 50) ? 4 : 256;
                for (size_t j = 0; j < len; j++)
                    s->bytes[i][j] = (unsigned char)th_below(&s->r, alphabet);
                s->bytes[i][len] = 0;
                s->blen[i] = len;
            } while (!rnd_index_add(s, i));
            s->bstr_ok[i] = strlen((const char *)s->bytes[i]) == s->blen[i];
        }
        break;
    default:
        s->objs = calloc(n, sizeof *s->objs);
        s->probes = calloc(n, sizeof *s->probes);
        if (!s->objs || !s->probes)
            return false;
        for (size_t i = 0; i < n; i++)
            s->objs[i].id = s->probes[i].id = i + 1;
        break;
    }
    s->vals = calloc(RND_NVALS, sizeof *s->vals);
    if (!s->vals)
        return false;
    for (size_t i = 0; i < RND_NVALS; i++)
        s->vals[i].id = 1000000 + i;
    return true;
}

static void rnd_universe_free(rnd_state *s) {
    if (s->bytes)
        for (size_t i = 0; i < s->n; i++)
            free(s->bytes[i]);
    free(s->bytes);
    free(s->blen);
    free(s->bstr_ok);
    free(s->u64);
    free(s->objs);
    free(s->probes);
    free(s->vals);
    free(s->ix_fp);
    free(s->ix_id);
    free(s->seen);
}

/* ------------------------------------------------------------------ */
/* Reference snapshots                                                 */
/* ------------------------------------------------------------------ */

static bool rnd_ref_init(rnd_ref *ref, size_t n) {
    ref->present = calloc(n, 1);
    ref->val = calloc(n, sizeof *ref->val);
    ref->kptr = calloc(n, sizeof *ref->kptr);
    ref->count = 0;
    return ref->present && ref->val && ref->kptr;
}

static void rnd_ref_free(rnd_ref *ref) {
    free(ref->present);
    free(ref->val);
    free(ref->kptr);
    memset(ref, 0, sizeof *ref);
}

static bool rnd_ref_clone(rnd_ref *dst, const rnd_ref *src, size_t n) {
    if (!rnd_ref_init(dst, n))
        return false;
    memcpy(dst->present, src->present, n);
    memcpy(dst->val, src->val, n * sizeof *dst->val);
    memcpy(dst->kptr, src->kptr, n * sizeof *dst->kptr);
    dst->count = src->count;
    return true;
}

/* ------------------------------------------------------------------ */
/* Per-kind dispatch                                                   */
/* ------------------------------------------------------------------ */

/* The key pointer to pass for id: generic keys sometimes go through an
 * equal probe object. */
static void *rnd_gkey(rnd_state *s, size_t id) {
    return th_chance(&s->r, 30) ? (void *)&s->probes[id] : (void *)&s->objs[id];
}

static bool rnd_use_str(rnd_state *s, size_t id) {
    return s->bstr_ok[id] && th_chance(&s->r, 25);
}

static bool rnd_get(rnd_state *s, const champ_map *m, size_t id, void **v) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_get_u64(m, s->u64[id], v);
    case CHAMP_KEY_BYTES:
        if (rnd_use_str(s, id))
            return champ_get_str(m, (const char *)s->bytes[id], v);
        return champ_get_bytes(m, s->bytes[id], s->blen[id], v);
    default: return champ_get(m, rnd_gkey(s, id), v);
    }
}

static bool rnd_contains(rnd_state *s, const champ_map *m, size_t id) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_contains_u64(m, s->u64[id]);
    case CHAMP_KEY_BYTES:
        if (rnd_use_str(s, id))
            return champ_contains_str(m, (const char *)s->bytes[id]);
        return champ_contains_bytes(m, s->blen[id] ? s->bytes[id] : NULL,
                                    s->blen[id]);
    default: return champ_contains(m, rnd_gkey(s, id));
    }
}

/* *kused: the generic key pointer passed (stored if inserted). */
static champ_status rnd_set(rnd_state *s, champ_map *m, size_t id, void *val,
                            champ_prior *old, void **kused) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_set_u64(m, s->u64[id], val, old);
    case CHAMP_KEY_BYTES:
        if (rnd_use_str(s, id))
            return champ_set_str(m, (const char *)s->bytes[id], val, old);
        return champ_set_bytes(m, s->bytes[id], s->blen[id], val, old);
    default:
        *kused = rnd_gkey(s, id);
        return champ_set(m, *kused, val, old);
    }
}

static champ_status rnd_remove(rnd_state *s, champ_map *m, size_t id,
                               champ_prior *prior) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_remove_u64(m, s->u64[id], prior);
    case CHAMP_KEY_BYTES:
        if (rnd_use_str(s, id))
            return champ_remove_str(m, (const char *)s->bytes[id], prior);
        return champ_remove_bytes(m, s->bytes[id], s->blen[id], prior);
    default: return champ_remove(m, rnd_gkey(s, id), prior);
    }
}

static champ_status rnd_pset(rnd_state *s, const champ_map *m, size_t id,
                             void *val, champ_map **out, void **kused) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_pset_u64(m, s->u64[id], val, out);
    case CHAMP_KEY_BYTES:
        if (rnd_use_str(s, id))
            return champ_pset_str(m, (const char *)s->bytes[id], val, out);
        return champ_pset_bytes(m, s->bytes[id], s->blen[id], val, out);
    default:
        *kused = rnd_gkey(s, id);
        return champ_pset(m, *kused, val, out);
    }
}

static champ_status rnd_premove(rnd_state *s, const champ_map *m, size_t id,
                                champ_map **out) {
    switch (s->sc->kind) {
    case CHAMP_KEY_U64: return champ_premove_u64(m, s->u64[id], out);
    case CHAMP_KEY_BYTES:
        if (rnd_use_str(s, id))
            return champ_premove_str(m, (const char *)s->bytes[id], out);
        return champ_premove_bytes(m, s->bytes[id], s->blen[id], out);
    default: return champ_premove(m, rnd_gkey(s, id), out);
    }
}

static void *rnd_value(rnd_state *s) {
    if (th_chance(&s->r, 5))
        return NULL;
    if (s->sc->counted)
        return &s->vals[th_below(&s->r, RND_NVALS)];
    return th_tok(th_below(&s->r, 1u << 30));
}

/* Ownership bookkeeping for the counted scenario. */
static void rnd_hand_in(rnd_state *s, void *p) {
    if (s->sc->counted)
        th_obj_hand_in(p);
}

static void rnd_hand_back(rnd_state *s, void *p) {
    if (s->sc->counted)
        th_obj_hand_back(p);
}

#define RND_CHECK(cond, ...)                                              \
    do {                                                                  \
        CHECK(cond, __VA_ARGS__);                                         \
        if (!(cond))                                                      \
            s->broken = true;                                             \
    } while (0)

/* ------------------------------------------------------------------ */
/* Comparisons                                                         */
/* ------------------------------------------------------------------ */

/* Every key of the universe looked up. */
static void rnd_compare_lookup(rnd_state *s, const rnd_version *v,
                               const char *what) {
    size_t bad = 0, first = (size_t)-1;
    for (size_t id = 0; id < s->n; id++) {
        void *got = th_tok(0xdead);
        bool found = rnd_get(s, v->m, id, &got);
        bool ok = v->ref.present[id] ? found && got == v->ref.val[id]
                                     : !found && got == th_tok(0xdead);
        if (!ok && bad++ == 0)
            first = id;
    }
    RND_CHECK(bad == 0, "%s: %zu lookups disagree with the reference "
              "(first id %zu) at op %ld", what, bad, first, s->op);
    RND_CHECK(champ_size(v->m) == v->ref.count,
              "%s: size %zu, reference %zu at op %ld", what,
              champ_size(v->m), v->ref.count, s->op);
}

typedef struct rnd_visit_ctx {
    rnd_state *s;
    const rnd_version *v;
    size_t count, bad;
} rnd_visit_ctx;

static bool rnd_entry_ok(rnd_state *s, const rnd_version *v,
                         const champ_key *k, void *val) {
    size_t id = rnd_lookup_id(s, k);
    if (id == (size_t)-1 || s->seen[id] || !v->ref.present[id] ||
        v->ref.val[id] != val)
        return false;
    s->seen[id] = 1;
    if (s->sc->kind == CHAMP_KEY_GENERIC)
        return k->ptr == v->ref.kptr[id] && k->len == 0;
    if (s->sc->kind == CHAMP_KEY_BYTES)
        return k->ptr != NULL && ((const char *)k->ptr)[k->len] == '\0';
    return true;
}

static int rnd_visit(const champ_key *k, void *val, void *ctx) {
    rnd_visit_ctx *c = ctx;
    c->count++;
    if (!rnd_entry_ok(c->s, c->v, k, val))
        c->bad++;
    return 0;
}

/* Iteration (mode 0: champ_iter_next, 1: champ_foreach, 2:
 * champ_iter_next_n with a random batch size) sees exactly the reference's
 * entries. */
static void rnd_compare_iter(rnd_state *s, const rnd_version *v, int mode,
                             const char *what) {
    memset(s->seen, 0, s->n);
    rnd_visit_ctx c = {s, v, 0, 0};
    bool foreach = mode == 1;
    if (mode == 2) {
        champ_iter it;
        champ_key ks[40];
        void *vs[40];
        size_t cap = 1 + (size_t)th_below(&s->r, 40), got = 0;
        champ_status st = champ_iter_init(&it, v->m);
        RND_CHECK(st == CHAMP_OK, "%s: iter_init %s", what, th_status_name(st));
        while ((got = champ_iter_next_n(&it, ks, vs, cap)) > 0) {
            RND_CHECK(got <= cap, "%s: iter_next_n gave %zu of %zu", what, got,
                      cap);
            for (size_t i = 0; i < got; i++) {
                c.count++;
                if (!rnd_entry_ok(s, v, &ks[i], vs[i]))
                    c.bad++;
            }
            if (c.count > v->ref.count + 10)
                break;
        }
        st = champ_iter_status(&it);
        RND_CHECK((st == CHAMP_OK && got == 0) || c.count > v->ref.count,
                  "%s: iter_next_n (batches of %zu) ended with %s", what, cap,
                  th_status_name(st));
    } else if (foreach) {
        champ_status st = champ_foreach(v->m, rnd_visit, &c);
        RND_CHECK(st == CHAMP_OK, "%s: foreach %s", what, th_status_name(st));
    } else {
        champ_iter it;
        champ_key k;
        void *val;
        champ_status st = champ_iter_init(&it, v->m);
        RND_CHECK(st == CHAMP_OK, "%s: iter_init %s", what, th_status_name(st));
        bool more;
        while ((more = champ_iter_next(&it, &k, &val))) {
            c.count++;
            if (!rnd_entry_ok(s, v, &k, val))
                c.bad++;
            if (c.count > v->ref.count + 10)
                break;
        }
        st = champ_iter_status(&it);
        RND_CHECK((!more && st == CHAMP_OK) || c.count > v->ref.count,
                  "%s: iter_next ended with %s", what, th_status_name(st));
    }
    RND_CHECK(c.bad == 0 && c.count == v->ref.count,
              "%s: %s saw %zu entries (%zu wrong), reference has %zu, op %ld",
              what, foreach ? "foreach" : "iteration", c.count, c.bad,
              v->ref.count, s->op);
}

static void rnd_validate(rnd_state *s, const champ_map *m, const char *what) {
    champ_status st = champ_validate(m);
    RND_CHECK(st == CHAMP_OK, "%s: champ_validate %s at op %ld", what,
              th_status_name(st), s->op);
}

/* ------------------------------------------------------------------ */
/* Operations                                                          */
/* ------------------------------------------------------------------ */

static void rnd_op_set(rnd_state *s, rnd_version *v, const char *what) {
    size_t id = (size_t)th_below(&s->r, s->n);
    void *val = rnd_value(s), *kused = NULL;
    champ_prior pr = th_prior_junk();
    bool want_old = th_chance(&s->r, 50);
    size_t size0 = champ_size(v->m);
    champ_status st = rnd_set(s, v->m, id, val, want_old ? &pr : NULL, &kused);
    RND_CHECK(st == CHAMP_OK, "%s: set of %s id %zu: %s, op %ld", what,
              v->ref.present[id] ? "present" : "absent", id, th_status_name(st),
              s->op);
    /* The outcome: from the prior, or (without one) from the size. */
    if (want_old)
        RND_CHECK(pr.found == (bool)v->ref.present[id] && pr.key == NULL,
                  "%s: set of %s id %zu: prior found %d, op %ld", what,
                  v->ref.present[id] ? "present" : "absent", id, (int)pr.found,
                  s->op);
    else
        RND_CHECK(champ_size(v->m) == size0 + !v->ref.present[id],
                  "%s: set of %s id %zu: size %zu -> %zu, op %ld", what,
                  v->ref.present[id] ? "present" : "absent", id, size0,
                  champ_size(v->m), s->op);
    if (v->ref.present[id]) {
        if (want_old) {
            RND_CHECK(pr.val == v->ref.val[id], "%s: set prior->val wrong, op %ld",
                      what, s->op);
            rnd_hand_back(s, pr.val);
        }
    } else {
        if (want_old)
            RND_CHECK(pr.val == NULL, "%s: insert left prior->val %p, op %ld",
                      what, pr.val, s->op);
        v->ref.present[id] = 1;
        v->ref.count++;
        v->ref.kptr[id] = kused;
        rnd_hand_in(s, kused);
    }
    if (st == CHAMP_OK)
        rnd_hand_in(s, val);
    v->ref.val[id] = val;
}

static void rnd_op_remove(rnd_state *s, rnd_version *v, const char *what) {
    size_t id = (size_t)th_below(&s->r, s->n);
    champ_prior pr = th_prior_junk();
    bool want_prior = th_chance(&s->r, 50);
    size_t size0 = champ_size(v->m);
    champ_status st = rnd_remove(s, v->m, id, want_prior ? &pr : NULL);
    RND_CHECK(st == CHAMP_OK, "%s: remove of %s id %zu: %s, op %ld", what,
              v->ref.present[id] ? "present" : "absent", id, th_status_name(st),
              s->op);
    RND_CHECK(champ_size(v->m) == size0 - (v->ref.present[id] ? 1 : 0),
              "%s: remove of %s id %zu: size %zu -> %zu, op %ld", what,
              v->ref.present[id] ? "present" : "absent", id, size0,
              champ_size(v->m), s->op);
    if (v->ref.present[id]) {
        if (want_prior) {
            RND_CHECK(pr.found, "%s: remove of present id %zu: not found, op %ld",
                      what, id, s->op);
            RND_CHECK(pr.val == v->ref.val[id], "%s: removed value wrong, op %ld",
                      what, s->op);
            rnd_hand_back(s, pr.val);
            if (s->sc->kind == CHAMP_KEY_GENERIC) {
                RND_CHECK(pr.key == v->ref.kptr[id],
                          "%s: removed key is not the stored one, op %ld", what,
                          s->op);
                rnd_hand_back(s, pr.key);
            } else {
                RND_CHECK(pr.key == NULL, "%s: prior->key of a %s remove, op %ld",
                          what, s->sc->name, s->op);
            }
        }
        v->ref.present[id] = 0;
        v->ref.val[id] = NULL;
        v->ref.kptr[id] = NULL;
        v->ref.count--;
    } else if (want_prior) {
        RND_CHECK(!pr.found && pr.val == NULL && pr.key == NULL,
                  "%s: remove of absent id %zu: prior found %d, op %ld", what,
                  id, (int)pr.found, s->op);
    }
}

static void rnd_op_lookup(rnd_state *s, const rnd_version *v, const char *what) {
    size_t id = (size_t)th_below(&s->r, s->n);
    if (th_chance(&s->r, 25)) {
        bool found = rnd_contains(s, v->m, id);
        RND_CHECK(found == (bool)v->ref.present[id],
                  "%s: contains id %zu: %d, op %ld", what, id, (int)found,
                  s->op);
        return;
    }
    void *got = th_tok(0xdead);
    bool found = rnd_get(s, v->m, id, &got);
    if (v->ref.present[id])
        RND_CHECK(found && got == v->ref.val[id], "%s: get id %zu: found %d, "
                  "op %ld", what, id, (int)found, s->op);
    else
        RND_CHECK(!found && got == th_tok(0xdead),
                  "%s: get absent id %zu: found %d, op %ld", what, id,
                  (int)found, s->op);
}

/* Frees the oldest ring entry after checking it, then stores v there. */
static void rnd_ring_push(rnd_state *s, rnd_version *v) {
    size_t slot = (size_t)th_below(&s->r, RND_RING);
    rnd_version *old = &s->ring[slot];
    if (old->m) {
        rnd_compare_iter(s, old, (int)th_below(&s->r, 3), "evicted old version");
        champ_free(old->m);
        rnd_ref_free(&old->ref);
    }
    *old = *v;
    memset(v, 0, sizeof *v);
}

/* A pset/premove/copy: the result becomes current; the previous current
 * map is kept in the ring (sometimes) or freed. */
static void rnd_op_derive(rnd_state *s) {
    rnd_version next;
    memset(&next, 0, sizeof next);
    if (!rnd_ref_clone(&next.ref, &s->cur.ref, s->n)) {
        s->broken = true;
        return;
    }
    unsigned kind = (unsigned)th_below(&s->r, 100);
    size_t id = (size_t)th_below(&s->r, s->n);
    champ_map *out = th_chance(&s->r, 50) ? (champ_map *)th_tok(1) : NULL;
    champ_status st;
    size_t size_before = champ_size(s->cur.m);
    if (kind < 50) {
        void *val = rnd_value(s), *kused = NULL;
        st = rnd_pset(s, s->cur.m, id, val, &out, &kused);
        RND_CHECK(st == CHAMP_OK, "pset id %zu: %s, op %ld", id,
                  th_status_name(st), s->op);
        if (st == CHAMP_OK && !s->cur.ref.present[id]) {
            next.ref.present[id] = 1;
            next.ref.count++;
            next.ref.kptr[id] = kused;
            rnd_hand_in(s, kused);
        }
        if (st >= 0)
            rnd_hand_in(s, val);
        next.ref.val[id] = val;
    } else if (kind < 90) {
        st = rnd_premove(s, s->cur.m, id, &out);
        RND_CHECK(st == CHAMP_OK, "premove id %zu: %s, op %ld", id,
                  th_status_name(st), s->op);
        if (next.ref.present[id]) {
            next.ref.present[id] = 0;
            next.ref.val[id] = NULL;
            next.ref.kptr[id] = NULL;
            next.ref.count--;
        }
    } else {
        st = champ_copy(s->cur.m, &out);
        RND_CHECK(st == CHAMP_OK, "copy: %s, op %ld", th_status_name(st), s->op);
    }
    if (st < 0 || !out || s->broken) {
        rnd_ref_free(&next.ref);
        s->broken = true;
        return;
    }
    next.m = out;
    /* The source is untouched. */
    void *got = th_tok(0xdead);
    bool gs = rnd_get(s, s->cur.m, id, &got);
    RND_CHECK(champ_size(s->cur.m) == size_before &&
                  (s->cur.ref.present[id] ? gs && got == s->cur.ref.val[id]
                                          : !gs),
              "p-form changed its source (id %zu), op %ld", id, s->op);
    /* The outcome of the p-form (insert or replace, removed or not). */
    RND_CHECK(champ_size(out) == next.ref.count, "p-form size %zu, want %zu",
              champ_size(out), next.ref.count);
    got = th_tok(0xdead);
    gs = rnd_get(s, out, id, &got);
    RND_CHECK(next.ref.present[id] ? gs && got == next.ref.val[id] : !gs,
              "p-form result: id %zu found %d, want %d, op %ld", id, (int)gs,
              (int)next.ref.present[id], s->op);
    if (kind >= 90 || th_chance(&s->r, 8)) {
        /* Keep the source as an old version; continue with the result
         * (after a copy, with the copy: the source's nodes are shared). */
        rnd_version prev = s->cur;
        s->cur = next;
        rnd_ring_push(s, &prev);
    } else {
        champ_free(s->cur.m);
        rnd_ref_free(&s->cur.ref);
        s->cur = next;
    }
}

static void rnd_full_check(rnd_state *s) {
    rnd_compare_lookup(s, &s->cur, "current");
    rnd_compare_iter(s, &s->cur, 0, "current");
    rnd_compare_iter(s, &s->cur, 1, "current");
    rnd_compare_iter(s, &s->cur, 2, "current");
    rnd_validate(s, s->cur.m, "current");
    int pick = (int)th_below(&s->r, RND_RING);
    for (int i = 0; i < RND_RING && !s->broken; i++) {
        if (!s->ring[i].m)
            continue;
        rnd_compare_iter(s, &s->ring[i], (int)(i % 3), "old version");
        if (i == pick) /* validate walks the whole pool: one is enough */
            rnd_validate(s, s->ring[i].m, "old version");
    }
    if (s->sc->counted)
        RND_CHECK(s->ctx.underflows == 0,
                  "release of a reference no map held, op %ld", s->op);
}

/* ------------------------------------------------------------------ */

static void rnd_run_scenario(const rnd_scenario *sc, uint64_t seed) {
    rnd_state st;
    rnd_state *s = &st;
    memset(s, 0, sizeof *s);
    s->sc = sc;
    s->n = sc->universe;
    s->r.s = seed;
    th_set_seed(seed);
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
    CHECK(rnd_universe_make(s), "%s: universe", sc->name);
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    CHECK_ST(champ_pool_new(&pc, &s->pool), CHAMP_OK);
    if (!s->pool) {
        rnd_universe_free(s);
        return;
    }
    champ_config cfg = sc->kind == CHAMP_KEY_GENERIC
                           ? th_generic_config(&s->ctx, sc->counted, s->pool)
                           : th_kind_config(sc->kind, seed, s->pool);
    CHECK_ST(champ_new(&cfg, &s->cur.m), CHAMP_OK);
    CHECK(rnd_ref_init(&s->cur.ref, s->n), "reference");

    long ops = th_iters(sc->ops, 2000);
    long check_every = th_iters(5000, 500);
    for (s->op = 0; s->op < ops && s->cur.m && !s->broken; s->op++) {
        unsigned dice = (unsigned)th_below(&s->r, 1000);
        if (dice < 330) {
            rnd_op_set(s, &s->cur, "current");
        } else if (dice < 560) {
            rnd_op_remove(s, &s->cur, "current");
        } else if (dice < 760) {
            rnd_op_lookup(s, &s->cur, "current");
        } else if (dice < 900) {
            rnd_op_derive(s);
        } else if (dice < 999) {
            /* Update an old version in place: others must not notice. */
            rnd_version *old = &s->ring[th_below(&s->r, RND_RING)];
            if (old->m) {
                if (th_chance(&s->r, 60))
                    rnd_op_set(s, old, "old version");
                else if (th_chance(&s->r, 70))
                    rnd_op_remove(s, old, "old version");
                else
                    rnd_op_lookup(s, old, "old version");
            }
        } else {
            /* Rarely: clear (the empty map must keep working). */
            if (th_chance(&s->r, 20)) {
                champ_status cs = champ_clear(s->cur.m);
                RND_CHECK(cs == CHAMP_OK, "clear: %s", th_status_name(cs));
                memset(s->cur.ref.present, 0, s->n);
                memset(s->cur.ref.val, 0, s->n * sizeof(void *));
                memset(s->cur.ref.kptr, 0, s->n * sizeof(void *));
                s->cur.ref.count = 0;
            }
        }
        if ((s->op + 1) % check_every == 0 && !s->broken)
            rnd_full_check(s);
    }
    if (!s->broken)
        rnd_full_check(s);
    for (int i = 0; i < RND_RING && !s->broken; i++)
        if (s->ring[i].m)
            rnd_compare_lookup(s, &s->ring[i], "old version at the end");

    /* Free in a random order; survivors stay valid. */
    rnd_version *all[RND_RING + 1];
    int na = 0;
    all[na++] = &s->cur;
    for (int i = 0; i < RND_RING; i++)
        all[na++] = &s->ring[i];
    for (int i = na; i > 1; i--) {
        int j = (int)th_below(&s->r, (uint64_t)i);
        rnd_version *t = all[i - 1];
        all[i - 1] = all[j];
        all[j] = t;
    }
    for (int i = 0; i < na; i++) {
        champ_free(all[i]->m);
        all[i]->m = NULL;
        rnd_ref_free(&all[i]->ref);
        if (i == na / 2 && !s->broken)
            for (int j = i + 1; j < na; j++)
                if (all[j]->m)
                    rnd_validate(s, all[j]->m, "survivor after frees");
    }
    champ_pool_stats ps;
    CHECK_ST(champ_pool_stats_get(s->pool, &ps, sizeof ps), CHAMP_OK);
    CHECK(ps.bytes_live == 0 && ps.maps == 0,
          "%s: pool not drained: %zu live bytes, %zu maps", sc->name,
          ps.bytes_live, ps.maps);
    if (sc->counted) {
        size_t held = 0, heldk = 0;
        for (size_t i = 0; i < RND_NVALS; i++)
            held += s->vals[i].held != 0;
        for (size_t i = 0; i < s->n; i++)
            heldk += (s->objs[i].held != 0) + (s->probes[i].held != 0);
        CHECK(held == 0 && heldk == 0 && s->ctx.underflows == 0,
              "%s: unbalanced references: %zu values, %zu keys still held, "
              "%lu underflows", sc->name, held, heldk, s->ctx.underflows);
        CHECK(s->ctx.retain_calls > 0, "%s: retains happened", sc->name);
    }
    champ_pool_free(s->pool);
    rnd_universe_free(s);
    printf("  random %-16s %8ld ops%s\n", sc->name, s->op,
           s->broken ? " (stopped at the first failure)" : "");
    th_set_seed(0);
}

/* Scenario i of rnd_scenarios with its fixed seed; one registered name per
 * scenario (the scenario's name). */
static void rnd_run_index(size_t i) {
    rnd_run_scenario(&rnd_scenarios[i], 0x5eed0000ULL + 0x1111 * (i + 1));
}

static void test_random_u64(void) { rnd_run_index(0); }
static void test_random_bytes(void) { rnd_run_index(1); }
static void test_random_generic_counted(void) { rnd_run_index(2); }
static void test_random_generic_mod64(void) { rnd_run_index(3); }
static void test_random_generic_10bits(void) { rnd_run_index(4); }
static void test_random_generic_deep(void) { rnd_run_index(5); }

const th_test th_tests_random[] = {
    {"random.u64", test_random_u64},
    {"random.bytes", test_random_bytes},
    {"random.generic-counted", test_random_generic_counted},
    {"random.generic-mod64", test_random_generic_mod64},
    {"random.generic-10bits", test_random_generic_10bits},
    {"random.generic-deep", test_random_generic_deep},
};
const size_t th_tests_random_count =
    sizeof th_tests_random / sizeof th_tests_random[0];

_Static_assert(sizeof th_tests_random / sizeof th_tests_random[0] ==
                   sizeof rnd_scenarios / sizeof rnd_scenarios[0],
               "one registered test per random scenario");

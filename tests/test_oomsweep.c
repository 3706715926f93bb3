/*
 * test_oomsweep.c - allocation failure at every step of every allocating
 * call of the public API, across a matrix of scenarios: key kind (u64,
 * bytes with a good or a weak bytes_hash, generic with a good hash, a weak
 * one with compare, a weak one without), map or set, with counted
 * retain/release callbacks or none, plain or concurrent pool, the map
 * owned or shared with a copy, the operand an original, a copy, a light
 * version of a cell's snapshot or a p-form of a counted map, and for the
 * algebra a second operand that is a version of the first, a map of
 * another seed (or ctx) or a map of another pool.  Failures come from
 * champ_pool_fail_after (CHAMP_FAULTS builds), from a backing allocator
 * refusing its k-th call or every call from the k-th on, or from
 * fail_after in a fixed buffer.
 *
 * For each call, k = 0, 1, ... fails the k-th allocation until the call
 * succeeds; after every CHAMP_ENOMEM: (a) the status; (b) every map and
 * the cell unchanged (a fingerprint of the contents, the size, validate);
 * (c) *out NULL, *prior and *slot untouched, update's fn not called; (d)
 * the pool's live bytes (lower only when an input was a light version,
 * which the call may settle) and every counted reference as before, and
 * at teardown every pool empty and the backing allocator holding nothing.
 * Written from a header audit that found these sweeps missing for sets,
 * add, the _str forms, new_like, concurrent pools, cells, and the algebra
 * on byte-key sets; it found no bug.  CHAMP_TEST_SCALE below 1 runs every
 * (1/scale^2)-th scenario (each costs a world built per failing step).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "../src/internal.h"

#define NU 600   /* key universe */
#define NFILL 300

static const char *where;
static long cur_k;
/* A check of this file: the scenario and the failing allocation's index
 * go into the message. */
#define CK(c, ...)                                                             \
    do {                                                                       \
        if (c) {                                                               \
            th_passed++;                                                       \
        } else {                                                               \
            char ck_msg_[256];                                                 \
            snprintf(ck_msg_, sizeof ck_msg_, __VA_ARGS__);                    \
            th_report_failure(__FILE__, __LINE__, #c, "[%s k=%ld] %s", where,  \
                              cur_k, ck_msg_);                                 \
        }                                                                      \
    } while (0)
#define BUG(...) CK(0, __VA_ARGS__)

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---------------- counted objects ---------------- */
typedef struct obj {
    uint64_t id;
    long net; /* retains - releases */
} obj;
static obj keys[NU], vals[64];
static char bkeys[NU][24];
static int weak; /* hashing: 0 good, 1 weak (collision nodes) */

static uint64_t g_hash(const void *k, void *ctx) {
    (void)ctx;
    const obj *o = k;
    return weak ? (o->id % 5) * 0x1000000000000001ULL : mix(o->id);
}
static bool g_eq(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return ((const obj *)a)->id == ((const obj *)b)->id;
}
static int g_cmp(const void *a, const void *b, void *ctx) {
    (void)ctx;
    uint64_t x = ((const obj *)a)->id, y = ((const obj *)b)->id;
    return x < y ? -1 : x > y;
}
static void o_ret(void *p, void *ctx) {
    (void)ctx;
    if (p)
        ((obj *)p)->net++;
}
static void o_rel(void *p, void *ctx) {
    (void)ctx;
    if (p)
        ((obj *)p)->net--;
}
static uint64_t b_hash(const void *k, size_t len, uint64_t seed, void *ctx) {
    (void)ctx;
    (void)seed;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)k)[i]) * 0x100000001b3ULL;
    return weak ? (h & 1) : h;
}
static uint64_t refsum(void) {
    uint64_t s = 0;
    for (int i = 0; i < NU; i++)
        s += (uint64_t)keys[i].net * mix(i);
    for (int i = 0; i < 64; i++)
        s += (uint64_t)vals[i].net * mix(1000 + i);
    return s;
}

/* ---------------- backing allocator ---------------- */
typedef struct talloc {
    champ_allocator a;
    long calls, fail_at; /* the call that fails (-1: none) */
    bool always;         /* and every call after it */
    size_t live;
} talloc;
static bool ta_fails(talloc *t, long c) {
    return t->fail_at >= 0 && (c == t->fail_at || (t->always && c > t->fail_at));
}
static void *ta_malloc(size_t n, void *ctx) {
    talloc *t = ctx;
    long c = t->calls++;
    if (ta_fails(t, c))
        return NULL;
    void *p = malloc(n);
    if (p)
        t->live += n;
    return p;
}
static void *ta_realloc(void *p, size_t o, size_t n, void *ctx) {
    talloc *t = ctx;
    long c = t->calls++;
    if (ta_fails(t, c))
        return NULL;
    void *q = realloc(p, n);
    if (q)
        t->live += n - o;
    return q;
}
static void ta_free(void *p, size_t n, void *ctx) {
    talloc *t = ctx;
    if (p)
        t->live -= n;
    free(p);
}

/* ---------------- scenario ---------------- */
typedef struct scen {
    champ_key_kind kind;
    bool set, callbacks, concurrent, shared;
    int weak;
    int mode; /* 0 fail_after, 1 backing (one call fails), 2 fixed buffer +
                 fail_after, 3 backing (every call from the k-th fails) */
    int avar; /* 0 A original; 1 A a copy (C the original); 2 A light from a cell snapshot;
                 3 A a p-form of a counted map (light on counted base) */
    int bvar; /* 0 B a version of A; 1 B other seed; 2 B other pool */
} scen;
static champ_map *A0, *SNAP, *BX;
static champ_cell *CELL0;
static champ_pool *P2;
static _Alignas(64) unsigned char fixbuf[1 << 20];

static scen S;
static champ_pool *P;
static talloc TA;

static uint64_t ukey(int i) { return mix((uint64_t)i * 7 + 3); }
static void *val_of(int i) {
    if (S.set)
        return NULL;
    if (S.callbacks)
        return &vals[i % 64];
    return (void *)(uintptr_t)(16 * (i + 1));
}

typedef struct fpacc {
    uint64_t fp;
    size_t n;
} fpacc;
static int fp_visit(const champ_key *k, void *v, void *ctx) {
    fpacc *a = ctx;
    uint64_t h;
    if (S.kind == CHAMP_KEY_U64)
        h = mix(k->u64);
    else if (S.kind == CHAMP_KEY_BYTES) {
        h = 77;
        for (size_t i = 0; i < k->len; i++)
            h = mix(h ^ ((const unsigned char *)k->ptr)[i]);
    } else
        h = mix(((const obj *)k->ptr)->id ^ 0xabc);
    a->fp += mix(h + 31 * (uint64_t)(uintptr_t)v);
    a->n++;
    return 0;
}
static uint64_t fp_of(const champ_map *m) {
    if (!m)
        return 0;
    fpacc a = {0, 0};
    champ_foreach(m, fp_visit, &a);
    return a.fp ^ mix(a.n) ^ mix(champ_size(m) + 99);
}

static champ_config cfg_of(void) {
    champ_config c = CHAMP_CONFIG_INIT(S.kind);
    c.set = S.set;
    c.pool = P;
    c.seed = 0x5eed;
    c.fixed_seed = true;
    if (S.kind == CHAMP_KEY_GENERIC) {
        c.hash = g_hash;
        c.equal = g_eq;
        c.compare = S.weak == 2 ? NULL : g_cmp; /* weak 2: list collision nodes */
        if (S.callbacks) {
            c.key_retain = o_ret;
            c.key_release = o_rel;
        }
    }
    if (S.kind == CHAMP_KEY_BYTES && S.weak)
        c.bytes_hash = b_hash;
    if (S.callbacks && !S.set) {
        c.val_retain = o_ret;
        c.val_release = o_rel;
    }
    return c;
}

/* A generic key inserted by a successful call: the map took the caller's
 * reference (insertions hand keys in, no key_retain runs), so the key's
 * books count one more holder. */
static void key_handed_in(int i, champ_status st, bool inserted) {
    if (st == CHAMP_OK && inserted && S.callbacks)
        keys[i].net++;
}

/* set via the kind's API; the map takes the generic key when inserted */
static champ_status k_set(champ_map *m, int i, void *v, champ_prior *pr) {
    switch (S.kind) {
    case CHAMP_KEY_U64: return champ_set_u64(m, ukey(i), v, pr);
    case CHAMP_KEY_BYTES: return champ_set_str(m, bkeys[i], v, pr);
    default: {
        champ_prior tmp, *pp = pr ? pr : &tmp;
        champ_status st = champ_set(m, &keys[i], v, pp);
        key_handed_in(i, st, !pp->found); /* handed in */
        if (st == CHAMP_OK && pp->found && S.callbacks && pp == &tmp)
            o_rel(pp->val, NULL);
        return st;
    }
    }
}
static champ_status k_add(champ_map *m, int i, bool *added) {
    switch (S.kind) {
    case CHAMP_KEY_U64: return champ_add_u64(m, ukey(i), added);
    case CHAMP_KEY_BYTES: return champ_add_bytes(m, bkeys[i], strlen(bkeys[i]), added);
    default: {
        bool a = false;
        champ_status st = champ_add(m, &keys[i], &a);
        key_handed_in(i, st, a);
        if (added)
            *added = st == CHAMP_OK ? a : *added;
        return st;
    }
    }
}
static champ_status k_remove(champ_map *m, int i, champ_prior *pr) {
    switch (S.kind) {
    case CHAMP_KEY_U64: return champ_remove_u64(m, ukey(i), pr);
    case CHAMP_KEY_BYTES: return champ_remove_bytes(m, bkeys[i], strlen(bkeys[i]), pr);
    default: return champ_remove(m, &keys[i], pr);
    }
}
static champ_status k_pset(const champ_map *m, int i, void *v, champ_map **out) {
    switch (S.kind) {
    case CHAMP_KEY_U64: return champ_pset_u64(m, ukey(i), v, out);
    case CHAMP_KEY_BYTES: return champ_pset_str(m, bkeys[i], v, out);
    default: {
        bool had = champ_contains(m, &keys[i]);
        champ_status st = champ_pset(m, &keys[i], v, out);
        key_handed_in(i, st, !had);
        return st;
    }
    }
}
static champ_status k_premove(const champ_map *m, int i, champ_map **out) {
    switch (S.kind) {
    case CHAMP_KEY_U64: return champ_premove_u64(m, ukey(i), out);
    case CHAMP_KEY_BYTES: return champ_premove_bytes(m, bkeys[i], strlen(bkeys[i]), out);
    default: return champ_premove(m, &keys[i], out);
    }
}
static champ_status k_upsert(champ_map *m, int i, void ***slot, bool *found) {
    switch (S.kind) {
    case CHAMP_KEY_U64: return champ_upsert_u64(m, ukey(i), slot, found);
    case CHAMP_KEY_BYTES: return champ_upsert_bytes(m, bkeys[i], strlen(bkeys[i]), slot, found);
    default: {
        bool f = true;
        champ_status st = champ_upsert(m, &keys[i], slot, &f);
        key_handed_in(i, st, !f);
        if (found && st == CHAMP_OK)
            *found = f;
        return st;
    }
    }
}
static int upd_calls;
static void *upd_fn(const champ_key *k, void *old, bool found, void *ctx) {
    (void)k, (void)old, (void)found;
    upd_calls++;
    void *v = ctx;
    if (S.callbacks && v)
        o_ret(v, NULL); /* the map owns the returned value: hand one in */
    return v;
}
static champ_status k_update(champ_map *m, int i, void *v) {
    switch (S.kind) {
    case CHAMP_KEY_U64: return champ_update_u64(m, ukey(i), upd_fn, v);
    case CHAMP_KEY_BYTES: return champ_update_bytes(m, bkeys[i], strlen(bkeys[i]), upd_fn, v);
    default: {
        bool had = champ_contains(m, &keys[i]);
        champ_status st = champ_update(m, &keys[i], upd_fn, v);
        key_handed_in(i, st, !had);
        return st;
    }
    }
}
static bool k_has(const champ_map *m, int i) {
    switch (S.kind) {
    case CHAMP_KEY_U64: return champ_contains_u64(m, ukey(i));
    case CHAMP_KEY_BYTES: return champ_contains_str(m, bkeys[i]);
    default: return champ_contains(m, &keys[i]);
    }
}
static champ_key key_of(int i) {
    champ_key k = {0, NULL, 0};
    if (S.kind == CHAMP_KEY_U64)
        k.u64 = ukey(i);
    else if (S.kind == CHAMP_KEY_BYTES) {
        k.ptr = bkeys[i];
        k.len = strlen(bkeys[i]);
    } else
        k.ptr = &keys[i];
    return k;
}

static size_t live(void) {
    champ_pool_stats ps;
    champ_pool_stats_get(P, &ps, sizeof ps);
    return ps.bytes_live;
}

/* world: A (the map operated on), B (a version of A), C (copy of A when
 * shared), cell */
static champ_map *A, *B, *C;
static champ_cell *CELL;

/* The failures come from the backing allocator (modes 1 and 3). */
static bool backing(void) {
    return S.mode == 1 || S.mode == 3;
}

/* Builds the scenario's world (nothing fails here: the hook is not armed).
 * False, with a failed check, if it cannot be built. */
static bool setup(void) {
    memset(&TA, 0, sizeof TA);
    TA.a.malloc = ta_malloc;
    TA.a.realloc = ta_realloc;
    TA.a.free = ta_free;
    TA.a.ctx = &TA;
    TA.fail_at = -1;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.concurrent = S.concurrent;
    pc.chunk_size = 1024;
    if (backing())
        pc.allocator = &TA.a;
    if (S.mode == 2) {
        pc.buffer = fixbuf;
        pc.buffer_size = sizeof fixbuf;
        pc.chunk_size = 0;
    }
    if (champ_pool_new(&pc, &P) != CHAMP_OK) {
        BUG("setup: champ_pool_new failed");
        return false;
    }
    weak = S.weak;
    champ_config c = cfg_of();
    A = B = C = NULL;
    CELL = NULL;
    if (champ_new(&c, &A) != CHAMP_OK) {
        BUG("setup: champ_new failed");
        return false;
    }
    for (int i = 0; i < NFILL; i++)
        if (k_set(A, i, val_of(i), NULL) != CHAMP_OK) {
            BUG("setup: filling A failed at key %d", i);
            return false;
        }
    A0 = SNAP = BX = NULL;
    CELL0 = NULL;
    P2 = NULL;
    if (S.bvar == 0) {
        champ_copy(A, &B);
    } else {
        champ_config c2 = cfg_of();
        if (S.bvar == 1) {
            c2.seed ^= 0x1234;
            if (S.kind == CHAMP_KEY_GENERIC)
                c2.ctx = &P2; /* other ctx: key by key */
        } else {
            champ_pool_config pc2 = CHAMP_POOL_CONFIG_INIT;
            pc2.concurrent = S.concurrent;
            champ_pool_new(&pc2, &P2);
            c2.pool = P2;
        }
        champ_new(&c2, &B);
        for (int i = 0; i < NFILL; i++)
            k_set(B, i, val_of(i), NULL);
    }
    for (int i = 0; i < NFILL; i += 5)
        k_remove(B, i, NULL);
    for (int i = NFILL; i < NFILL + 60; i++)
        k_set(B, i, val_of(i + 1), NULL);
    for (int i = 1; i < NFILL; i += 7)
        k_set(B, i, val_of(i + 3), NULL);
    if (S.shared)
        champ_copy(A, &C);
    if (S.avar == 1) {
        /* operate on the copy; the original stays in A0 */
        A0 = A;
        champ_copy(A0, &A);
    } else if (S.avar == 2 || S.avar == 3) {
        A0 = A;
        A = NULL;
        const champ_map *base = A0;
        if (S.avar == 2) {
            champ_cell_new(A0, &CELL0);
            champ_cell_load(CELL0, &SNAP);
            base = SNAP;
        }
        if (k_pset(base, NFILL + 200, val_of(3), &A) != CHAMP_OK) {
            BUG("setup: the p-form making A failed");
            return false;
        }
    }
    return true;
}
static void teardown(void) {
    champ_cell_free(CELL);
    champ_free(A);
    champ_free(B);
    champ_free(C);
    champ_free(SNAP);
    champ_cell_free(CELL0);
    champ_free(A0);
    size_t l = live();
    CK(l == 0, "teardown: pool live bytes %zu after freeing every map", l);
    champ_pool_free(P);
    if (P2) {
        champ_pool_stats ps;
        champ_pool_stats_get(P2, &ps, sizeof ps);
        CK(ps.bytes_live == 0, "teardown: pool 2 live %zu", ps.bytes_live);
        champ_pool_free(P2);
    }
    if (backing())
        CK(TA.live == 0, "teardown: backing allocator holds %zu bytes", TA.live);
}

static void arm(long k) {
    if (!backing()) {
        champ_pool_fail_after(P, k);
    } else {
        TA.fail_at = TA.calls + k;
        TA.always = S.mode == 3;
    }
}
static void disarm(void) {
    if (!backing())
        champ_pool_fail_after(P, -1);
    else
        TA.fail_at = -1;
}

enum {
    OP_SET_NEW, OP_SET_OLD, OP_ADD_NEW, OP_ADD_OLD, OP_REM_OLD, OP_REM_ABS,
    OP_PSET_NEW, OP_PSET_OLD, OP_PREM_OLD, OP_PREM_ABS, OP_COPY, OP_NEWLIKE,
    OP_UPS_NEW, OP_UPS_OLD, OP_UPD_NEW, OP_UPD_OLD, OP_APPLY, OP_APPLY_SETS,
    OP_UNION, OP_UNION_R, OP_INTER, OP_DIFF, OP_SYM, OP_FILTER,
    OP_CELL_NEW, OP_CELL_LOAD, OP_CELL_STORE, OP_CELL_CAS, OP_NEW,
    OP_N
};
static const char *opname[OP_N] = {
    "set_new", "set_old", "add_new", "add_old", "remove_present", "remove_absent",
    "pset_new", "pset_old", "premove_present", "premove_absent", "copy", "new_like",
    "upsert_new", "upsert_old", "update_new", "update_old", "apply", "apply_sets",
    "union", "union_resolve", "intersect", "difference", "symdiff", "filter",
    "cell_new", "cell_load", "cell_store", "cell_cas", "new"};

static void *resolve(const champ_key *k, void *a, void *b, void *ctx) {
    (void)k, (void)b, (void)ctx;
    return a;
}
static bool keep(const champ_key *k, void *v, void *ctx) {
    (void)v, (void)ctx;
    uint64_t h = S.kind == CHAMP_KEY_U64 ? k->u64
                 : S.kind == CHAMP_KEY_BYTES ? (uint64_t)k->len * 31 + ((const char *)k->ptr)[k->len - 1]
                                              : ((const obj *)k->ptr)->id;
    return mix(h) % 3 != 0;
}

static champ_op batch[200];

static const int NEWK = NFILL + 100, OLDK = 17;

/* run op once; returns status.  *out receives derived maps */
static champ_status run_op(int op, champ_map **out, champ_prior *pr, void ***slot, bool *flag) {
    switch (op) {
    case OP_SET_NEW: return k_set(A, NEWK, val_of(5), pr);
    case OP_SET_OLD: return S.set ? k_set(A, OLDK, NULL, pr) : k_set(A, OLDK, val_of(40), pr);
    case OP_ADD_NEW: return k_add(A, NEWK, flag);
    case OP_ADD_OLD: return k_add(A, OLDK, flag);
    case OP_REM_OLD: return k_remove(A, OLDK, pr);
    case OP_REM_ABS: return k_remove(A, NEWK, pr);
    case OP_PSET_NEW: return k_pset(A, NEWK, val_of(5), out);
    case OP_PSET_OLD: return k_pset(A, OLDK, S.set ? NULL : val_of(41), out);
    case OP_PREM_OLD: return k_premove(A, OLDK, out);
    case OP_PREM_ABS: return k_premove(A, NEWK, out);
    case OP_COPY: return champ_copy(A, out);
    case OP_NEWLIKE: return champ_new_like(A, out);
    case OP_UPS_NEW: return k_upsert(A, NEWK, slot, flag);
    case OP_UPS_OLD: return k_upsert(A, OLDK, slot, flag);
    case OP_UPD_NEW: return k_update(A, NEWK, val_of(6));
    case OP_UPD_OLD: return k_update(A, OLDK, val_of(42));
    case OP_APPLY:
    case OP_APPLY_SETS: {
        int n = 0;
        for (int i = 0; i < 120; i++) {
            int kk = (i * 37) % (op == OP_APPLY ? 100 : NFILL + 150); /* dups in OP_APPLY */
            batch[n].key = key_of(kk);
            batch[n].val = val_of(kk + 2);
            batch[n].remove = op == OP_APPLY && i % 4 == 1;
            n++;
        }
        return champ_apply(A, batch, (size_t)n);
    }
    case OP_UNION: return champ_union(A, B, NULL, NULL, out);
    case OP_UNION_R: return champ_union(A, B, resolve, NULL, out);
    case OP_INTER: return champ_intersect(A, B, NULL, NULL, out);
    case OP_DIFF: return champ_difference(A, B, out);
    case OP_SYM: return champ_symdiff(A, B, out);
    case OP_FILTER: return champ_filter(A, keep, NULL, out);
    case OP_CELL_NEW: return champ_cell_new(A, (champ_cell **)out);
    case OP_CELL_LOAD: return champ_cell_load(CELL, out);
    case OP_CELL_STORE: return champ_cell_store(CELL, B);
    case OP_CELL_CAS: {
        /* expected: a snapshot loaded from the cell (taken in prepare) */
        return champ_cell_cas(CELL, C, B, flag);
    }
    case OP_NEW: {
        champ_config c = cfg_of();
        return champ_new(&c, out);
    }
    }
    return CHAMP_EINVAL;
}

static bool op_applies(int op) {
    if (S.set && (op == OP_UPS_NEW || op == OP_UPS_OLD || op == OP_UPD_NEW || op == OP_UPD_OLD))
        return false;
    return true;
}
static bool op_has_out(int op) {
    return (op >= OP_PSET_NEW && op <= OP_NEWLIKE) || (op >= OP_UNION && op <= OP_FILTER) ||
           op == OP_CELL_NEW || op == OP_CELL_LOAD || op == OP_NEW;
}
static bool op_has_prior(int op) {
    return op == OP_SET_NEW || op == OP_SET_OLD || op == OP_REM_OLD || op == OP_REM_ABS;
}

static bool prepare(int op) {
    if (op == OP_CELL_LOAD || op == OP_CELL_STORE || op == OP_CELL_CAS) {
        if (champ_cell_new(A, &CELL) != CHAMP_OK) {
            BUG("prepare: champ_cell_new failed");
            return false;
        }
        if (op == OP_CELL_CAS) {
            champ_free(C);
            C = NULL;
            champ_cell_load(CELL, &C); /* the expected snapshot */
        }
    }
    return true;
}

static uint64_t cell_fp(void) {
    champ_map *s = NULL;
    if (champ_cell_load(CELL, &s) != CHAMP_OK)
        return 1;
    uint64_t f = fp_of(s) ^ (s ? 0 : 0x777);
    champ_free(s);
    return f;
}

/* Failing runs over the whole test: the sweeps must have failed something. */
static long sweep_failures;

static void sweep(int op) {
    long failures = 0, k_end = 20000;
    for (long k = 0; k < 20000; k++) {
        cur_k = k;
        if (!setup() || !prepare(op))
            return;
        if (backing())
            champ_pool_trim(P); /* empty chunks back: the op asks the allocator */
        uint64_t fa = fp_of(A), fb = fp_of(B), fc = fp_of(C);
        size_t sa = champ_size(A), sb = champ_size(B);
        uint64_t fcell = CELL ? cell_fp() : 0;
        size_t l0 = live();
        uint64_t r0 = refsum();
        bool light0 = (A->light) || (B && B->light) || (C && C->light) || (A0 && A0->light) ||
                      (SNAP && SNAP->light);
        uint64_t fa0 = fp_of(A0), fsnap = fp_of(SNAP);
        champ_map *out = (champ_map *)(uintptr_t)0x1230;
        champ_prior pr = {true, (void *)0x4560, (void *)0x7890};
        void **slotjunk = (void **)(uintptr_t)0xabc0, **slot = slotjunk;
        bool flag = true;
        upd_calls = 0;
        arm(k);
        champ_status st = run_op(op, &out, op_has_prior(op) ? &pr : NULL, &slot, &flag);
        disarm();
        if (st == CHAMP_OK) {
            /* clean success: minimal effect checks and release of results */
            if (op == OP_CELL_NEW) {
                champ_cell_free((champ_cell *)out);
            } else if (op_has_out(op)) {
                CK(out != NULL && out != (champ_map *)(uintptr_t)0x1230,
                   "%s OK but *out not set", opname[op]);
                if (op == OP_PSET_NEW)
                    CK(champ_size(out) == sa + 1 && k_has(out, NEWK), "pset_new result wrong");
                if (op == OP_PREM_OLD)
                    CK(champ_size(out) == sa - 1 && !k_has(out, OLDK), "premove result wrong");
                if (op == OP_COPY || op == OP_CELL_LOAD)
                    CK(fp_of(out) == fa, "%s result differs", opname[op]);
                champ_status v = champ_validate(out);
                CK(v == CHAMP_OK, "%s result invalid", opname[op]);
                champ_free(out);
            }
            if (op == OP_UPS_NEW && slot != slotjunk) {
                if (S.callbacks)
                    o_ret(val_of(7), NULL);
                *slot = val_of(7);
            }
            if (op == OP_SET_OLD || op == OP_REM_OLD) {
                if (S.callbacks && pr.found) {
                    o_rel(pr.val, NULL);
                    if (pr.key)
                        o_rel(pr.key, NULL);
                }
            }
            if (op == OP_REM_ABS)
                CK(!pr.found && pr.val == NULL && pr.key == NULL, "remove absent prior");
            CK(champ_validate(A) == CHAMP_OK, "A invalid after success");
            if (C && op != OP_CELL_CAS)
                CK(fp_of(C) == fc, "%s success changed the copy C", opname[op]);
            if (op == OP_REM_OLD)
                CK(champ_size(A) == sa - 1, "remove size");
            if (op == OP_SET_NEW || op == OP_ADD_NEW || op == OP_UPS_NEW || op == OP_UPD_NEW)
                CK(champ_size(A) == sa + 1 && k_has(A, NEWK), "%s: size %zu want %zu", opname[op],
                   champ_size(A), sa + 1);
            teardown();
            k_end = k;
            break;
        }
        if (st != CHAMP_ENOMEM) {
            BUG("%s returned %d (%s), want CHAMP_OK or CHAMP_ENOMEM", opname[op], st,
                champ_strerror(st));
            teardown();
            k_end = k;
            break;
        }
        failures++;
        /* (b) maps unchanged */
        CK(champ_size(A) == sa && fp_of(A) == fa, "%s failed but changed A (size %zu -> %zu)",
           opname[op], sa, champ_size(A));
        CK(champ_validate(A) == CHAMP_OK, "%s failed, A does not validate", opname[op]);
        CK(champ_size(B) == sb && fp_of(B) == fb, "%s failed but changed B", opname[op]);
        if (C)
            CK(fp_of(C) == fc, "%s failed but changed C", opname[op]);
        CK(fp_of(A0) == fa0 && fp_of(SNAP) == fsnap, "%s failed but changed A0/SNAP", opname[op]);
        if (A0)
            CK(champ_validate(A0) == CHAMP_OK, "A0 invalid after failure");
        /* (c) outputs */
        if (op_has_out(op))
            CK(out == NULL, "%s failed, *out = %p, want NULL", opname[op], (void *)out);
        if (op_has_prior(op))
            CK(pr.found && pr.val == (void *)0x4560 && pr.key == (void *)0x7890,
               "%s failed but wrote *prior", opname[op]);
        if (op == OP_UPS_NEW || op == OP_UPS_OLD)
            CK(slot == slotjunk, "%s failed but wrote *slot", opname[op]);
        if (op == OP_UPD_NEW || op == OP_UPD_OLD)
            CK(upd_calls == 0, "%s failed after calling fn (%d)", opname[op], upd_calls);
        /* (d) live bytes, refs */
        size_t l1 = live();
        CK(l1 == l0 || (light0 && l1 < l0), "%s failed: pool live %zu -> %zu%s", opname[op], l0,
           l1, light0 ? " (light input)" : "");
        CK(refsum() == r0, "%s failed: counted references changed", opname[op]);
        if (CELL)
            CK(cell_fp() == fcell, "%s failed: the cell changed", opname[op]);
        teardown();
    }
    CK(k_end < 20000, "%s: still failing after 20000 allocations", opname[op]);
    sweep_failures += failures;
}

static const char *kname(champ_key_kind k) {
    return k == CHAMP_KEY_U64 ? "u64" : k == CHAMP_KEY_BYTES ? "bytes" : "generic";
}

static void test_oomsweep_api(void) {
    for (int i = 0; i < NU; i++) {
        keys[i].id = (uint64_t)i * 13 + 1;
        keys[i].net = 0;
        snprintf(bkeys[i], sizeof bkeys[i], "k%d-%x", i, i * 2654435761u);
    }
    for (int i = 0; i < 64; i++) {
        vals[i].id = 5000 + (uint64_t)i;
        vals[i].net = 0;
    }
    double scale = th_scale();
    /* every scenario at scale 1 (18 s at -O2); below, every (1/scale^2)-th:
     * the ASan pass (0.25) runs 49 of the 782, valgrind's (0.05) 2 */
    long stride = scale >= 1 ? 1 : (long)(1.0 / (scale * scale) + 0.5), idx = 0, ran = 0;
    char wbuf[200];
    sweep_failures = 0;
    for (int mode = 0; mode < 4; mode++)
      for (int avar = 0; avar < 4; avar++)
        for (int bvar = 0; bvar < 3; bvar++)
        for (int kind = 1; kind <= 3; kind++)
            for (int set = 0; set < 2; set++)
                for (int wk = 0; wk < (kind == 1 ? 1 : kind == 2 ? 2 : 3); wk++)
                    for (int cb = 0; cb < 2; cb++)
                        for (int conc = 0; conc < 2; conc++)
                            for (int sh = 0; sh < 2; sh++) {
                                if (!TH_FAULTS && mode != 1 && mode != 3)
                                    continue; /* fail_after is a CHAMP_FAULTS hook */
                                if (kind == 3 && !cb && set)
                                    continue;
                                if (mode == 2 && conc)
                                    continue; /* fixed buffers are plain */
                                if (avar == 2 && !conc)
                                    continue;
                                if ((avar || bvar) && (wk || (sh && avar != 0)))
                                    continue; /* keep the matrix small */
                                if (bvar == 2 && mode == 2)
                                    continue;
                                if (idx++ % stride != 0)
                                    continue;
                                ran++;
                                S = (scen){(champ_key_kind)kind, (bool)set, (bool)cb, (bool)conc,
                                           (bool)sh, wk, mode, avar, bvar};
                                snprintf(wbuf, sizeof wbuf, "%s %s %s%s %s %s %s avar%d bvar%d",
                                         mode == 1   ? "backing"
                                         : mode == 2 ? "fixed"
                                         : mode == 3 ? "backing-always"
                                                     : "fail_after",
                                         kname(S.kind),
                                         set ? "set" : "map", wk ? (wk == 1 ? " weak" : " list") : "",
                                         cb ? "counted" : "nocb", conc ? "concurrent" : "plain",
                                         sh ? "shared" : "owned", avar, bvar);
                                where = wbuf;
                                for (int op = 0; op < OP_N; op++) {
                                    if (!op_applies(op))
                                        continue;
                                    if ((op == OP_CELL_CAS) && !sh)
                                        continue;
                                    if (bvar && !(op >= OP_UNION && op <= OP_FILTER))
                                        continue;
                                    sweep(op);
                                }
                            }
    where = "all scenarios";
    cur_k = -1;
    CK(ran > 0 && sweep_failures > ran, "%ld scenarios (every %ld-th of %ld), %ld failing runs",
       ran, stride, idx, sweep_failures);
    printf("  oomsweep: %ld of %ld scenarios, %ld failing runs checked\n", ran, idx,
           sweep_failures);
}

const th_test th_tests_oomsweep[] = {
    {"oomsweep.api", test_oomsweep_api},
};
const size_t th_tests_oomsweep_count = sizeof th_tests_oomsweep / sizeof th_tests_oomsweep[0];

/*
 * test_oom.c - out-of-memory injection, SQLite style: walk the failure
 * forward one allocation at a time.
 *
 * A fixed workload (a list of mixed in-place and persistent updates on six
 * map slots: two U64, two BYTES, two GENERIC with counted callbacks and a
 * weak hash, so collision nodes appear) runs again and again; run k makes
 * allocation k fail, for k = 0, 1, 2, ... until a run sees no failure at
 * all.  After every call that returns CHAMP_ENOMEM the map must validate,
 * equal its state before the call (content compared with the reference), no
 * reference callback may have changed the balance, and p-forms must have
 * set *out to NULL.  At the end everything is freed and the pool must be
 * back to zero live bytes.
 *
 *   1. champ_pool_fail_after(pool, k): the pool's k-th block allocation
 *      fails; once only (then reset) and persistently.
 *   2. A counting backing allocator that fails its k-th call (1 KiB chunks,
 *      so chunks are requested often); every byte it handed out must come
 *      back, with the right sizes.
 *   3. Fixed-buffer pools: fill to CHAMP_ENOMEM, recycle, watermark.
 *   4. remove_refused: every remove of an owned u64 map with all blocks
 *      refused (the one-descent remove's moves and collapses hand over to
 *      the general path, which shrinks in place or refuses whole).
 *   5. watermark_failing_call: a fixed pool's watermark callback running
 *      inside a call that then fails (see the comment there).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "../src/internal.h"

#define OOM_SLOTS 6
#define OOM_KEYS 400 /* the most keys a workload uses */
#define OOM_VALS 16

enum oom_op_type {
    OOM_NEW,
    OOM_SET,
    OOM_REMOVE,
    OOM_GET,
    OOM_PSET,
    OOM_PREMOVE,
    OOM_COPY,
    OOM_CLEAR,
    OOM_FREE,
    OOM_NTYPES
};

typedef struct oom_op {
    int type;
    int slot, dst;  /* dst: same kind as slot */
    unsigned key, val;
    bool with_out;  /* set/remove: pass a champ_prior (old value, key) */
} oom_op;

typedef struct oom_ref {
    bool present[OOM_KEYS];
    void *val[OOM_KEYS];
    size_t count;
} oom_ref;

typedef struct oom_world {
    champ_pool *pool;
    champ_map *m[OOM_SLOTS];
    oom_ref ref[OOM_SLOTS];
    th_cbctx ctx;
    th_obj keys[OOM_KEYS];
    th_obj vals[OOM_VALS];
    char bkeys[OOM_KEYS][24];
    unsigned nkeys;  /* keys the workload uses */
    long enomem;     /* calls that returned CHAMP_ENOMEM */
    bool broken;
} oom_world;

static champ_key_kind oom_slot_kind(int slot) {
    return slot < 2 ? CHAMP_KEY_U64
                    : slot < 4 ? CHAMP_KEY_BYTES : CHAMP_KEY_GENERIC;
}

static bool oom_counted(int slot) {
    return oom_slot_kind(slot) == CHAMP_KEY_GENERIC;
}

static void *oom_val(oom_world *w, int slot, unsigned vi) {
    if (vi == OOM_VALS - 1)
        return NULL;
    return oom_counted(slot) ? (void *)&w->vals[vi] : th_tok(vi);
}

/* The workload: a fixed list of operations. */
static oom_op *oom_make_ops(size_t n, uint64_t seed, unsigned nkeys) {
    oom_op *ops = calloc(n, sizeof *ops);
    if (!ops)
        return NULL;
    th_rng r = {seed};
    for (size_t i = 0; i < n; i++) {
        oom_op *o = &ops[i];
        unsigned dice = (unsigned)th_below(&r, 100);
        o->type = i < OOM_SLOTS        ? OOM_NEW
                  : dice < 38          ? OOM_SET
                  : dice < 55          ? OOM_REMOVE
                  : dice < 60          ? OOM_GET
                  : dice < 74          ? OOM_PSET
                  : dice < 85          ? OOM_PREMOVE
                  : dice < 92          ? OOM_COPY
                  : dice < 94          ? OOM_CLEAR
                  : dice < 97          ? OOM_FREE
                                       : OOM_NEW;
        o->slot = i < OOM_SLOTS ? (int)i : (int)th_below(&r, OOM_SLOTS);
        o->dst = o->slot ^ 1;
        o->key = (unsigned)th_below(&r, nkeys);
        o->val = (unsigned)th_below(&r, OOM_VALS);
        o->with_out = th_chance(&r, 50);
    }
    return ops;
}

static void oom_world_init(oom_world *w, unsigned nkeys) {
    memset(w, 0, sizeof *w);
    w->nkeys = nkeys;
    w->ctx.hash_mode = TH_HASH_BITS;
    w->ctx.mask = 0x8000000000000421ULL; /* 3 bits: collisions, deep paths */
    for (unsigned k = 0; k < OOM_KEYS; k++) {
        w->keys[k].id = k + 1;
        snprintf(w->bkeys[k], sizeof w->bkeys[k], "key\xff%u", k * 31);
    }
    for (unsigned v = 0; v < OOM_VALS; v++)
        w->vals[v].id = 1000 + v;
}

static bool oom_get(oom_world *w, int slot, unsigned k, void **v) {
    const champ_map *m = w->m[slot];
    switch (oom_slot_kind(slot)) {
    case CHAMP_KEY_U64: return champ_get_u64(m, (uint64_t)k << 33, v);
    case CHAMP_KEY_BYTES: return champ_get_str(m, w->bkeys[k], v);
    default: return champ_get(m, &w->keys[k], v);
    }
}

/* Slot content equals its reference. */
static bool oom_same(oom_world *w, int slot, const char *what, long run,
                     size_t opi) {
    size_t bad = 0;
    for (unsigned k = 0; k < w->nkeys; k++) {
        void *v = th_tok(0xdead);
        bool found = oom_get(w, slot, k, &v);
        if (w->ref[slot].present[k] ? !found || v != w->ref[slot].val[k]
                                    : found || v != th_tok(0xdead))
            bad++;
    }
    bool ok = bad == 0 && champ_size(w->m[slot]) == w->ref[slot].count;
    CHECK(ok, "%s: slot %d differs from its reference in %zu keys (size %zu, "
          "want %zu), run %ld, op %zu", what, slot, bad, champ_size(w->m[slot]),
          w->ref[slot].count, run, opi);
    if (!ok)
        w->broken = true;
    return ok;
}

static void oom_valid(oom_world *w, int slot, const char *what, long run,
                      size_t opi) {
    champ_status st = champ_validate(w->m[slot]);
    CHECK(st == CHAMP_OK, "%s: slot %d does not validate (%s), run %ld, op %zu",
          what, slot, th_status_name(st), run, opi);
    if (st != CHAMP_OK)
        w->broken = true;
}

static void oom_hand_in(int slot, void *p) {
    if (oom_counted(slot))
        th_obj_hand_in(p);
}

static void oom_hand_back(int slot, void *p) {
    if (oom_counted(slot))
        th_obj_hand_back(p);
}

static champ_config oom_config(oom_world *w, int slot) {
    champ_key_kind kind = oom_slot_kind(slot);
    if (kind == CHAMP_KEY_GENERIC)
        return th_generic_config(&w->ctx, true, w->pool);
    return th_kind_config(kind, 0x0e11, w->pool);
}

static void oom_slot_free(oom_world *w, int slot) {
    champ_free(w->m[slot]);
    w->m[slot] = NULL;
    memset(&w->ref[slot], 0, sizeof w->ref[slot]);
}

/* Runs one operation; returns its status (or CHAMP_OK when skipped). */
static champ_status oom_apply(oom_world *w, const oom_op *o, long run,
                              size_t opi) {
    int s = o->slot, d = o->dst;
    champ_map *m = w->m[s];
    unsigned k = o->key;
    void *val = oom_val(w, s, o->val);
    uint64_t u = (uint64_t)k << 33;
    const char *bk = w->bkeys[k];
    size_t bl = strlen(bk);
    th_obj *gk = &w->keys[k];
    champ_status st = CHAMP_OK;
    if (o->type != OOM_NEW && !m)
        return CHAMP_OK;
    switch (o->type) {
    case OOM_NEW: {
        if (m)
            return CHAMP_OK;
        champ_config cfg = oom_config(w, s);
        champ_map *out = (champ_map *)th_tok(3);
        st = champ_new(&cfg, &out);
        if (st == CHAMP_OK)
            w->m[s] = out;
        else
            CHECK(out == NULL, "champ_new failed but *out not NULL, run %ld",
                  run);
        return st;
    }
    case OOM_SET: {
        champ_prior pr = th_prior_junk();
        champ_prior *pp = o->with_out ? &pr : NULL;
        switch (oom_slot_kind(s)) {
        case CHAMP_KEY_U64: st = champ_set_u64(m, u, val, pp); break;
        case CHAMP_KEY_BYTES: st = champ_set_bytes(m, bk, bl, val, pp); break;
        default: st = champ_set(m, gk, val, pp); break;
        }
        if (st < 0) {
            CHECK(th_prior_untouched(&pr), "failed set touched *prior, run %ld, "
                  "op %zu", run, opi);
            return st;
        }
        bool had = w->ref[s].present[k];
        CHECK(st == CHAMP_OK, "set: %s, run %ld, op %zu", th_status_name(st),
              run, opi);
        /* The outcome: from the prior, or (without one) from the size. */
        if (o->with_out)
            CHECK(pr.found == had && pr.key == NULL &&
                      pr.val == (had ? w->ref[s].val[k] : NULL),
                  "set prior: found %d want %d, run %ld, op %zu",
                  (int)pr.found, (int)had, run, opi);
        else
            CHECK(champ_size(m) == w->ref[s].count + !had,
                  "set (%s): size %zu want %zu, run %ld, op %zu",
                  had ? "replace" : "insert", champ_size(m),
                  w->ref[s].count + !had, run, opi);
        if (had && o->with_out)
            oom_hand_back(s, pr.val);
        if (!had) {
            oom_hand_in(s, gk);
            w->ref[s].count++;
        }
        oom_hand_in(s, val);
        w->ref[s].present[k] = true;
        w->ref[s].val[k] = val;
        return st;
    }
    case OOM_REMOVE: {
        champ_prior pr = th_prior_junk();
        champ_prior *pp = o->with_out ? &pr : NULL;
        switch (oom_slot_kind(s)) {
        case CHAMP_KEY_U64: st = champ_remove_u64(m, u, pp); break;
        case CHAMP_KEY_BYTES: st = champ_remove_bytes(m, bk, bl, pp); break;
        default: st = champ_remove(m, gk, pp); break;
        }
        if (st < 0) {
            CHECK(th_prior_untouched(&pr),
                  "failed remove touched *prior, run %ld, op %zu", run, opi);
            return st;
        }
        bool had = w->ref[s].present[k];
        CHECK(st == CHAMP_OK, "remove: %s, run %ld, op %zu",
              th_status_name(st), run, opi);
        if (o->with_out)
            CHECK(pr.found == had,
                  "remove prior: found %d want %d, run %ld, op %zu",
                  (int)pr.found, (int)had, run, opi);
        else
            CHECK(champ_size(m) == w->ref[s].count - had,
                  "remove: size %zu want %zu, run %ld, op %zu", champ_size(m),
                  w->ref[s].count - had, run, opi);
        if (o->with_out && !had)
            CHECK(pr.val == NULL && pr.key == NULL,
                  "remove of an absent key: prior val/key not NULL, run %ld",
                  run);
        if (had) {
            if (o->with_out) {
                CHECK(pr.val == w->ref[s].val[k], "removed value, run %ld", run);
                oom_hand_back(s, pr.val);
                if (oom_counted(s)) {
                    CHECK(pr.key == gk, "removed key, run %ld", run);
                    oom_hand_back(s, pr.key);
                } else {
                    CHECK(pr.key == NULL, "removed non-generic key: prior->key "
                          "not NULL, run %ld", run);
                }
            }
            w->ref[s].present[k] = false;
            w->ref[s].val[k] = NULL;
            w->ref[s].count--;
        }
        return st;
    }
    case OOM_GET: {
        void *v = th_tok(0xdead);
        bool found = oom_get(w, s, k, &v);
        bool want = w->ref[s].present[k];
        CHECK(found == want &&
                  v == (found ? w->ref[s].val[k] : th_tok(0xdead)),
              "get: found %d want %d, run %ld, op %zu", (int)found, (int)want,
              run, opi);
        return CHAMP_OK;
    }
    case OOM_PSET:
    case OOM_PREMOVE:
    case OOM_COPY: {
        oom_slot_free(w, d); /* normally done by the caller already */
        champ_map *out = (champ_map *)th_tok(3);
        oom_ref nr = w->ref[s];
        if (o->type == OOM_PSET) {
            switch (oom_slot_kind(s)) {
            case CHAMP_KEY_U64: st = champ_pset_u64(m, u, val, &out); break;
            case CHAMP_KEY_BYTES: st = champ_pset_bytes(m, bk, bl, val, &out); break;
            default: st = champ_pset(m, gk, val, &out); break;
            }
            if (st >= 0) {
                if (!nr.present[k]) {
                    nr.count++;
                    oom_hand_in(s, gk);
                }
                oom_hand_in(s, val);
                nr.present[k] = true;
                nr.val[k] = val;
            }
        } else if (o->type == OOM_PREMOVE) {
            switch (oom_slot_kind(s)) {
            case CHAMP_KEY_U64: st = champ_premove_u64(m, u, &out); break;
            case CHAMP_KEY_BYTES: st = champ_premove_bytes(m, bk, bl, &out); break;
            default: st = champ_premove(m, gk, &out); break;
            }
            if (st >= 0 && nr.present[k]) {
                nr.present[k] = false;
                nr.val[k] = NULL;
                nr.count--;
            }
        } else {
            st = champ_copy(m, &out);
        }
        if (st < 0) {
            CHECK(out == NULL, "failed p-form/copy left *out set, run %ld, "
                  "op %zu", run, opi);
            return st;
        }
        /* The outcome (insert or replace, removed or not): the sizes. */
        CHECK(st == CHAMP_OK && out != NULL && champ_size(out) == nr.count &&
                  champ_size(m) == w->ref[s].count,
              "p-form %d: %s, size %zu want %zu (source %zu want %zu), "
              "run %ld, op %zu", o->type, th_status_name(st), champ_size(out),
              nr.count, champ_size(m), w->ref[s].count, run, opi);
        w->m[d] = out;
        w->ref[d] = nr;
        return st;
    }
    case OOM_CLEAR:
        st = champ_clear(m);
        CHECK(st == CHAMP_OK, "clear: %s, run %ld", th_status_name(st), run);
        memset(&w->ref[s], 0, sizeof w->ref[s]);
        return st;
    default:
        oom_slot_free(w, s);
        return CHAMP_OK;
    }
}

/* Everything the counted callbacks hold, to compare around a failure. */
static void oom_held(const oom_world *w, long *out) {
    for (unsigned k = 0; k < OOM_KEYS; k++)
        out[k] = w->keys[k].held;
    for (unsigned v = 0; v < OOM_VALS; v++)
        out[OOM_KEYS + v] = w->vals[v].held;
}

/* After a failed call: everything as before. */
static void oom_after_failure(oom_world *w, const oom_op *o, const long *held0,
                              size_t live0, bool light0, long run, size_t opi) {
    w->enomem++;
    size_t live1 = th_pool_live(w->pool);
    /* a failed call may still settle a light version it was given (its
     * contents unchanged): nodes it no longer needs go, so live bytes may
     * fall then, never rise */
    bool ok = live1 == live0 || (light0 && live1 < live0);
    CHECK(ok, "a failed call changed the pool's live bytes "
          "(%zu -> %zu), run %ld, op %zu (type %d)", live0, live1, run, opi,
          o->type);
    if (!ok)
        w->broken = true;
    const char *what = "after ENOMEM";
    if (w->m[o->slot]) {
        oom_valid(w, o->slot, what, run, opi);
        oom_same(w, o->slot, what, run, opi);
    }
    if (o->type == OOM_PSET || o->type == OOM_PREMOVE || o->type == OOM_COPY)
        CHECK(w->m[o->dst] == NULL, "failed p-form filled its slot, run %ld",
              run);
    long held1[OOM_KEYS + OOM_VALS];
    oom_held(w, held1);
    bool same = memcmp(held0, held1, sizeof held1) == 0;
    CHECK(same, "a failed call changed the reference balance, run %ld, op %zu "
          "(type %d)", run, opi, o->type);
    if (!same)
        w->broken = true;
}

/* The end of a run: compare, validate, free everything. */
static void oom_finish(oom_world *w, long run, const char *what) {
    for (int s = 0; s < OOM_SLOTS && !w->broken; s++)
        if (w->m[s]) {
            oom_same(w, s, what, run, 0);
            if (s == 0 || s == 5)
                oom_valid(w, s, what, run, 0);
        }
    for (int s = 0; s < OOM_SLOTS; s++)
        oom_slot_free(w, s);
    size_t held = 0;
    for (unsigned k = 0; k < OOM_KEYS; k++)
        held += w->keys[k].held != 0;
    for (unsigned v = 0; v < OOM_VALS; v++)
        held += w->vals[v].held != 0;
    CHECK(held == 0 && w->ctx.underflows == 0,
          "%s: %zu objects unbalanced, %lu underflows after freeing, run %ld",
          what, held, w->ctx.underflows, run);
    if (held || w->ctx.underflows)
        w->broken = true;
}

/* Runs the workload once; `fail_hook` says how failures are armed. */
static void oom_run_ops(oom_world *w, const oom_op *ops, size_t nops, long run,
                        bool one_shot_hook) {
    long held0[OOM_KEYS + OOM_VALS];
    for (size_t i = 0; i < nops && !w->broken; i++) {
        const oom_op *o = &ops[i];
        /* A derived map replaces its destination: free that first, so the
         * balance snapshot below sees only the call itself. */
        if ((o->type == OOM_PSET || o->type == OOM_PREMOVE ||
             o->type == OOM_COPY) && w->m[o->slot])
            oom_slot_free(w, o->dst);
        oom_held(w, held0);
        size_t live0 = th_pool_live(w->pool);
        bool light0 = false; /* a light version (pin.c) among the maps */
        for (int s = 0; s < OOM_SLOTS; s++)
            light0 |= w->m[s] && w->m[s]->light != LIGHT_NONE;
        champ_status st = oom_apply(w, &ops[i], run, i);
        if (st == CHAMP_ENOMEM) {
            oom_after_failure(w, &ops[i], held0, live0, light0, run, i);
            if (one_shot_hook)
                champ_pool_fail_after(w->pool, -1);
        } else if (st < 0) {
            CHECK(st >= 0, "op %zu (type %d) returned %s, run %ld", i,
                  ops[i].type, th_status_name(st), run);
            w->broken = true;
        }
        if (i % 16 == 15 && w->m[ops[i].slot])
            oom_same(w, ops[i].slot, "during the run", run, i);
    }
}

/* Part 1: champ_pool_fail_after. */
static void test_oom_fail_after(bool one_shot, const oom_op *ops, size_t nops,
                                unsigned nkeys) {
#if TH_FAULTS
    oom_world *w = malloc(sizeof *w);
    if (!w)
        return;
    long k, total_failures = 0;
    bool clean = false;
    for (k = 0; k < 200000 && !clean; k++) {
        oom_world_init(w, nkeys);
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.chunk_size = 2048;
        if (champ_pool_new(&pc, &w->pool) != CHAMP_OK) {
            CHECK(0, "pool_new failed, run %ld", k);
            break;
        }
        CHECK_ST(champ_pool_fail_after(w->pool, k), CHAMP_OK);
        oom_run_ops(w, ops, nops, k, one_shot);
        champ_pool_stats ps;
        champ_pool_stats_get(w->pool, &ps, sizeof ps);
        clean = ps.alloc_failures == 0;
        CHECK(clean || w->enomem > 0 || w->broken,
              "run %ld: %llu allocations refused but no call returned "
              "CHAMP_ENOMEM", k, (unsigned long long)ps.alloc_failures);
        total_failures += w->enomem;
        champ_pool_fail_after(w->pool, -1);
        oom_finish(w, k, one_shot ? "fail_after once" : "fail_after always");
        CHECK(th_pool_live(w->pool) == 0,
              "pool not drained after run %ld: %zu live bytes", k,
              th_pool_live(w->pool));
        champ_pool_free(w->pool);
        if (w->broken)
            break;
    }
    CHECK(clean, "the walk reached a run without failures (%ld runs)", k);
    CHECK(k > 50, "the workload allocates (%ld runs)", k);
    printf("  oom fail_after %-10s %ld runs, %ld ENOMEM returns\n",
           one_shot ? "(once)" : "(always)", k, total_failures);
    free(w);
#else
    (void)one_shot;
    (void)ops;
    (void)nops;
    (void)nkeys;
#endif
}

/* Part 2: the backing allocator fails its k-th call. */
static void test_oom_backing(bool persist, const oom_op *ops, size_t nops,
                             unsigned nkeys) {
    oom_world *w = malloc(sizeof *w);
    th_alloc *ta = malloc(sizeof *ta);
    if (!w || !ta) {
        free(w);
        free(ta);
        return;
    }
    long k, total_failures = 0;
    bool clean = false;
    for (k = 0; k < 100000 && !clean; k++) {
        oom_world_init(w, nkeys);
        th_alloc_init(ta);
        ta->fail_at = k;
        ta->fail_persist = persist;
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.allocator = &ta->a;
        pc.chunk_size = 1024;
        champ_pool *p = (champ_pool *)th_tok(5);
        champ_status st = champ_pool_new(&pc, &p);
        if (st != CHAMP_OK) {
            CHECK(st == CHAMP_ENOMEM && p == NULL && ta->live_bytes == 0,
                  "pool_new with failing allocator: %s, %zu bytes kept",
                  th_status_name(st), ta->live_bytes);
            continue;
        }
        w->pool = p;
        oom_run_ops(w, ops, nops, k, false);
        clean = ta->failures == 0;
        /* A refused chunk fails a block allocation, which must reach the
         * caller as CHAMP_ENOMEM.  A refused scratch bitmap for compaction
         * is absorbed (the pool sorts its free lists in place instead): no
         * block allocation failed then. */
        champ_pool_stats ops_ps;
        CHECK_ST(champ_pool_stats_get(w->pool, &ops_ps, sizeof ops_ps), CHAMP_OK);
        CHECK(clean || w->enomem > 0 || w->broken || ops_ps.alloc_failures == 0,
              "run %ld: the allocator refused %lu calls, %llu block allocations "
              "failed, but no call returned CHAMP_ENOMEM", k, ta->failures,
              (unsigned long long)ops_ps.alloc_failures);
        total_failures += w->enomem;
        oom_finish(w, k, persist ? "backing always" : "backing once");
        CHECK(th_pool_live(w->pool) == 0, "pool live after run %ld", k);
        champ_pool_free(w->pool);
        CHECK(ta->live_bytes == 0 && ta->live_blocks == 0,
              "run %ld: %zu bytes in %zu blocks never given back", k,
              ta->live_bytes, ta->live_blocks);
        CHECK(ta->size_mismatches == 0, "run %ld: %lu frees with wrong sizes",
              k, ta->size_mismatches);
        if (w->broken || ta->live_bytes)
            break;
    }
    CHECK(clean, "the walk reached a run without failures (%ld runs)", k);
    CHECK(k > 3, "the workload calls the allocator (%ld runs)", k);
    printf("  oom backing %-13s %ld runs, %ld ENOMEM returns\n",
           persist ? "(always)" : "(once)", k, total_failures);
    free(w);
    free(ta);

    /* champ_new with a private pool on a failing allocator. */
    th_alloc t2;
    for (long j = 0; j < 100; j++) {
        th_alloc_init(&t2);
        t2.fail_at = j;
        t2.fail_persist = persist;
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.allocator = &t2.a;
        champ_config cfg = th_kind_config(CHAMP_KEY_BYTES, 1, NULL);
        cfg.pool_config = &pc;
        champ_map *m = (champ_map *)th_tok(4);
        champ_status st = champ_new(&cfg, &m);
        CHECK(st == CHAMP_OK || (st == CHAMP_ENOMEM && m == NULL),
              "champ_new on failing allocator %ld: %s", j, th_status_name(st));
        if (st == CHAMP_OK) {
            st = champ_set_str(m, "some key", NULL, NULL);
            CHECK(st == CHAMP_OK || st == CHAMP_ENOMEM, "set: %s",
                  th_status_name(st));
            champ_free(m);
        }
        CHECK(t2.live_bytes == 0, "private pool leak at %ld: %zu bytes", j,
              t2.live_bytes);
        if (t2.failures == 0)
            break;
    }
}

/* ------------------------------------------------------------------ */
/* Part 3: fixed buffers                                               */
/* ------------------------------------------------------------------ */

typedef struct oom_water {
    int calls;
    champ_pool *pool;
    size_t live, capacity;
} oom_water;

static void oom_on_water(champ_pool *p, size_t live, size_t cap, void *ctx) {
    oom_water *wt = ctx;
    wt->calls++;
    wt->pool = p;
    wt->live = live;
    wt->capacity = cap;
}

/* Inserts keys from `from` until ENOMEM; returns how many went in. */
static uint64_t oom_fill_u64(champ_map *m, uint64_t from, uint64_t limit) {
    uint64_t i;
    for (i = from; i < limit; i++) {
        champ_status st = champ_set_u64(m, i, th_tok(i), NULL);
        if (st != CHAMP_OK) {
            CHECK_ST(st, CHAMP_ENOMEM);
            break;
        }
    }
    return i - from;
}

/* A pool in buf with the watermark `mark` reporting to *wt (NULL and a
 * failed check when it cannot be made). */
static champ_pool *oom_water_pool(void *buf, size_t size, double mark, oom_water *wt) {
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.buffer = buf;
    pc.buffer_size = size;
    pc.watermark = mark;
    pc.on_watermark = oom_on_water;
    pc.watermark_ctx = wt;
    champ_pool *pool = NULL;
    CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
    return pool;
}

/* The keys in the subtree of bitmap node n at `level`. */
static size_t oom_keys_below(const node *n, unsigned level, unsigned W) {
    if (level == CHAMP_COLL_LEVEL)
        return n->datamap;
    size_t k = node_nent(n);
    node **kids = node_kids(n, W);
    for (uint32_t i = 0; i < node_nkid(n); i++)
        k += oom_keys_below(kids[i], level + 1, W);
    return k;
}

/* Whether removing u64 key (in m) empties a subtree's second-last slot:
 * the node that holds it is not the root and its subtree holds 3 keys, so
 * the 2 left move up into the parent's slot as a pair.  The header says
 * only such a remove of an owned map can need a block. */
static bool oom_collapses(const champ_map *m, uint64_t key) {
    uint64_t h = hash_u64(key, m->t->seed);
    unsigned W = m->t->width;
    const node *n = m->root;
    unsigned level = 0;
    while (n) {
        uint32_t bit = 1u << ((h >> (CHAMP_BITS * level)) & 31u);
        if (!(n->nodemap & bit) || (n->datamap & bit))
            break; /* an entry, a pair or nothing here: n holds the key */
        n = *node_kid_at(n, bit, W);
        level++;
    }
    return n && level > 0 && oom_keys_below(n, level, W) == 3;
}

static void test_oom_fixed_buffer(void) {
    static _Alignas(64) unsigned char buf[48 * 1024];
    oom_water wt = {0, NULL, 0, 0};
    champ_pool *pool = oom_water_pool(buf, sizeof buf, 0.5, &wt);
    if (!pool)
        return;
    champ_pool_stats ps;
    CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
    CHECK(ps.fixed, "fixed-buffer pool says so");
    /* the header: the capacity is buffer_size less the pool's own state
     * (about 2 KiB) and alignment */
    CHECK(ps.bytes_reserved < sizeof buf && sizeof buf - ps.bytes_reserved < 4096,
          "capacity %zu: the %zu-byte buffer less the pool's state", ps.bytes_reserved,
          sizeof buf);
    size_t capacity = ps.bytes_reserved;
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 5, pool);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    if (!m) {
        champ_pool_free(pool);
        return;
    }
    CHECK_EQ(wt.calls, 0, "no watermark before filling");

    uint64_t n = oom_fill_u64(m, 0, 1000000);
    CHECK(n > 100 && n < 1000000, "fill stopped at ENOMEM after %llu keys",
          (unsigned long long)n);
    CHECK_EQ(champ_size(m), n, "map holds what was inserted");
    CHECK(!champ_contains_u64(m, n), "the key that did not fit is absent");
    CHECK_VALID(m, "full fixed pool");
    size_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        void *v = NULL;
        if (!champ_get_u64(m, i, &v) || v != th_tok(i))
            bad++;
    }
    CHECK_EQ(bad, 0, "content intact after ENOMEM");
    CHECK_EQ(wt.calls, 1, "watermark fired once while filling");
    CHECK(wt.pool == pool && wt.capacity == capacity &&
              (double)wt.live >= 0.5 * (double)capacity &&
              wt.live <= capacity,
          "watermark arguments: live %zu capacity %zu (pool capacity %zu)",
          wt.live, wt.capacity, capacity);
    CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
    CHECK(ps.alloc_failures > 0, "refusals counted");
    CHECK_EQ(ps.backing_calls, 0, "a fixed pool never calls an allocator");
    CHECK_EQ(ps.chunks <= 1, 1, "one chunk at most");

    /* p-forms on the full pool fail cleanly or succeed consistently. */
    champ_map *p = (champ_map *)th_tok(9);
    champ_status st = champ_pset_u64(m, n + 1, NULL, &p);
    CHECK(st == CHAMP_OK || (st == CHAMP_ENOMEM && p == NULL),
          "pset on a full pool: %s", th_status_name(st));
    if (st == CHAMP_OK) {
        CHECK_EQ(champ_size(p), n + 1, "pset result on a full pool");
        champ_free(p);
    }
    CHECK_EQ(champ_size(m), n, "source unchanged by pset");

    /* Remove a third.  A remove may need memory (inlining a subtree's last
     * entry widens its parent), so in a full pool it may fail: then the
     * key is still there.  Inserting works again afterwards. */
    uint64_t removed = 0, remove_enomem = 0;
    int calls_before_removes = wt.calls;
    for (uint64_t i = 0; i < n; i += 3) {
        st = champ_remove_u64(m, i, NULL);
        if (st == CHAMP_OK) {
            removed++;
        } else {
            CHECK(st == CHAMP_ENOMEM && champ_contains_u64(m, i),
                  "remove in a full pool: %s", th_status_name(st));
            CHECK(oom_collapses(m, i), "a remove in a full fixed pool refused that "
                  "collapses no subtree (key %llu)", (unsigned long long)i);
            remove_enomem++;
        }
    }
    CHECK(remove_enomem * 10 < removed,
          "removing from a full fixed pool: %llu of %llu removes returned "
          "CHAMP_ENOMEM", (unsigned long long)remove_enomem,
          (unsigned long long)(removed + remove_enomem));
    if (remove_enomem)
        printf("  oom fixed buffer: %llu of %llu removes in the full pool "
               "returned CHAMP_ENOMEM\n", (unsigned long long)remove_enomem,
               (unsigned long long)(removed + remove_enomem));
    CHECK_EQ(champ_size(m), n - removed, "size after removes");
    CHECK_VALID(m, "fixed pool after removes");
    CHECK(wt.calls == calls_before_removes,
          "removes fired the (rising) watermark %d times",
          wt.calls - calls_before_removes);
    uint64_t again = oom_fill_u64(m, 2000000, 3000000);
    CHECK(again >= 1, "after removing %llu keys, %llu new keys fit",
          (unsigned long long)removed, (unsigned long long)again);
    CHECK_VALID(m, "fixed pool refilled");
    int calls_before_clear = wt.calls;

    /* clear drops below the mark; a new fill crosses it again. */
    CHECK_ST(champ_clear(m), CHAMP_OK);
    CHECK(th_pool_live(pool) < capacity / 2, "clear gave the nodes back");
    uint64_t n2 = oom_fill_u64(m, 0, 1000000);
    CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
    CHECK(n2 >= n / 2,
          "after clear, a second fill holds %llu keys, the first held %llu "
          "(free lists keep %zu of %zu bytes in unusable fragments)",
          (unsigned long long)n2, (unsigned long long)n, ps.bytes_free_listed,
          capacity);
    if ((double)ps.bytes_live >= 0.55 * (double)capacity)
        CHECK(wt.calls == calls_before_clear + 1,
              "the second fill fired the watermark %d times, want once",
              wt.calls - calls_before_clear);
    else if ((double)ps.bytes_live < 0.45 * (double)capacity)
        CHECK(wt.calls == calls_before_clear,
              "the second fill stayed below the mark but fired %d times",
              wt.calls - calls_before_clear);
    CHECK_VALID(m, "second fill");
    champ_free(m);
    CHECK_EQ(th_pool_live(pool), 0, "fixed pool drained");
    champ_pool_free(pool);

    /* Bytes and counted generic maps in a small buffer: every failing
     * insert leaves the map and the reference balance unchanged. */
    static _Alignas(64) unsigned char buf2[16 * 1024];
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.buffer = buf2;
    pc.buffer_size = sizeof buf2;
    pool = NULL;
    CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
    if (!pool)
        return;
    th_cbctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.hash_mode = TH_HASH_MOD64;
    static th_obj objs[4000];
    memset(objs, 0, sizeof objs);
    for (size_t i = 0; i < 4000; i++)
        objs[i].id = i + 1;
    champ_config cb = th_kind_config(CHAMP_KEY_BYTES, 6, pool);
    champ_config cg = th_generic_config(&ctx, true, pool);
    champ_map *mb = NULL, *mg = NULL;
    CHECK_ST(champ_new(&cb, &mb), CHAMP_OK);
    CHECK_ST(champ_new(&cg, &mg), CHAMP_OK);
    if (mb && mg) {
        size_t nb = 0, ng = 0, fails = 0;
        for (size_t i = 0; i < 4000 && fails < 40; i++) {
            char kb[48];
            int len = snprintf(kb, sizeof kb, "a fairly long key number %zu", i);
            st = champ_set_bytes(mb, kb, (size_t)len, NULL, NULL);
            if (st == CHAMP_OK)
                nb++;
            else
                fails++;
            long h0 = objs[i].held;
            st = champ_set(mg, &objs[i], &objs[3999 - i], NULL);
            if (st == CHAMP_OK) {
                ng++;
                th_obj_hand_in(&objs[i]);
                th_obj_hand_in(&objs[3999 - i]);
            } else {
                CHECK(st == CHAMP_ENOMEM && objs[i].held == h0,
                      "generic insert in a full buffer: %s",
                      th_status_name(st));
                fails++;
            }
        }
        CHECK(fails > 0, "the small buffer filled up");
        CHECK_EQ(champ_size(mb), nb, "bytes map size after ENOMEMs");
        CHECK_EQ(champ_size(mg), ng, "generic map size after ENOMEMs");
        CHECK_VALID(mb, "bytes in a fixed buffer");
        CHECK_VALID(mg, "generic in a fixed buffer");
        /* A copy and p-forms in the full pool, then free everything. */
        champ_map *c = NULL;
        st = champ_copy(mg, &c);
        CHECK(st == CHAMP_OK || (st == CHAMP_ENOMEM && c == NULL), "copy: %s",
              th_status_name(st));
        if (c) {
            champ_map *q = NULL;
            st = champ_premove(c, &objs[0], &q);
            CHECK(st == CHAMP_OK || (st == CHAMP_ENOMEM && q == NULL),
                  "premove: %s", th_status_name(st));
            champ_free(q);
            champ_free(c);
        }
    }
    champ_free(mb);
    champ_free(mg);
    size_t held = 0;
    for (size_t i = 0; i < 4000; i++)
        held += objs[i].held != 0;
    CHECK(held == 0 && ctx.underflows == 0,
          "fixed buffer: %zu objects unbalanced, %lu underflows", held,
          ctx.underflows);
    CHECK_EQ(th_pool_live(pool), 0, "small fixed pool drained");
    champ_pool_free(pool);

    /* A buffer with room for the pool header only: maps cannot be made. */
    static _Alignas(64) unsigned char tiny[512];
    pc = (champ_pool_config)CHAMP_POOL_CONFIG_INIT;
    pc.buffer = tiny;
    pc.buffer_size = sizeof tiny;
    pool = NULL;
    st = champ_pool_new(&pc, &pool);
    CHECK(st == CHAMP_OK || st == CHAMP_EINVAL, "tiny buffer: %s",
          th_status_name(st));
    if (pool) {
        champ_config cu = th_kind_config(CHAMP_KEY_U64, 1, pool);
        champ_map *mm = NULL;
        uint64_t fit = 0;
        st = champ_new(&cu, &mm);
        CHECK(st == CHAMP_OK || st == CHAMP_ENOMEM, "map in a tiny pool: %s",
              th_status_name(st));
        if (mm) {
            fit = oom_fill_u64(mm, 0, 10000);
            CHECK(fit < 10000, "a 512-byte pool fills up (%llu)",
                  (unsigned long long)fit);
            CHECK_VALID(mm, "tiny pool");
            champ_free(mm);
        }
        CHECK_EQ(th_pool_live(pool), 0, "tiny pool drained");
        champ_pool_free(pool);
    }
}

/* The registered tests.  Each makes its own (deterministic) workload. */
static void oom_fail_after_with_ops(bool one_shot) {
    size_t nops = (size_t)th_iters(400, 120);
    oom_op *ops = oom_make_ops(nops, 0x00d00d, 40);
    if (!ops) {
        CHECK(ops != NULL, "out of memory");
        return;
    }
    test_oom_fail_after(one_shot, ops, nops, 40);
    free(ops);
}

/* The backing allocator is called once per chunk: a longer workload over
 * more keys, so that many chunks are needed. */
static void oom_backing_with_ops(bool persist) {
    size_t nops = (size_t)th_iters(6000, 1500);
    oom_op *ops = oom_make_ops(nops, 0xbacc, OOM_KEYS);
    if (ops) {
        test_oom_backing(persist, ops, nops, OOM_KEYS);
        free(ops);
    }
}

#if TH_FAULTS
/* A u64 map with a fixed seed (its trie the same in every run) in a
 * default pool of its own, *pool_out; NULL (a failed check) if it cannot
 * be made, the pool then still in *pool_out (or NULL) for the caller. */
static champ_map *oom_seeded_u64(uint64_t seed, champ_pool **pool_out) {
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    *pool_out = NULL;
    CHECK_ST(champ_pool_new(&pc, pool_out), CHAMP_OK);
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    c.pool = *pool_out;
    c.fixed_seed = true;
    c.seed = seed;
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    return m;
}
#endif

/* Removes from an owned u64 map while every allocation fails: the one-
 * descent remove (champ_remove_u64's fast path) moves a node into an exact
 * block or collapses a node of three into its parent, and when that block
 * is refused it must change nothing and hand over to the general path,
 * which shrinks in place (the map can always lose an entry that needs no
 * new block) or returns CHAMP_ENOMEM with the map unchanged.  Random and
 * sequential keys, the failures on throughout; then the rest with
 * allocation back. */
static void test_oom_remove_refused(void) {
#if TH_FAULTS
    enum { N = 6000 };
    for (int pass = 0; pass < 2; pass++) {
        champ_pool *p = NULL;
        champ_map *m = oom_seeded_u64(0x5eed + (uint64_t)pass, &p);
        static uint64_t keys[N];
        static bool in[N];
        th_rng r = {0xd2a1 + (uint64_t)pass};
        for (size_t i = 0; i < N && m; i++) {
            keys[i] = pass ? (uint64_t)i : th_next(&r);
            in[i] = true;
            CHECK_ST(champ_set_u64(m, keys[i], th_tok(i), NULL), CHAMP_OK);
        }
        if (!m) {
            champ_pool_free(p);
            return;
        }
        size_t n = champ_size(m), ok = 0, refused = 0;
        champ_pool_fail_after(p, 0); /* from now on every block is refused */
        for (size_t round = 0; round < 3; round++)
            for (size_t j = 0; j < N; j++) {
                size_t i = (size_t)th_below(&r, N);
                if (!in[i])
                    continue;
                size_t live = th_pool_live(p);
                champ_prior pr;
                champ_status st = champ_remove_u64(m, keys[i], &pr);
                if (st == CHAMP_OK) {
                    ok++;
                    in[i] = false;
                    n--;
                    CHECK(pr.found && pr.val == th_tok(i), "pass %d key %zu: prior", pass, i);
                    CHECK(th_pool_live(p) <= live, "pass %d: a remove without blocks "
                          "took memory (%zu -> %zu)", pass, live, th_pool_live(p));
                } else {
                    refused++;
                    CHECK_ST(st, CHAMP_ENOMEM);
                    CHECK_EQ(th_pool_live(p), live, "a refused remove changes nothing");
                    CHECK(oom_collapses(m, keys[i]), "pass %d key %zu: a remove refused "
                          "that collapses no subtree", pass, i);
                }
                void *v = NULL;
                CHECK(champ_get_u64(m, keys[i], &v) == in[i] && (!in[i] || v == th_tok(i)),
                      "pass %d key %zu after %s", pass, i, th_status_name(st));
                CHECK_EQ(champ_size(m), n, "size");
                if ((ok + refused) % 500 == 0)
                    CHECK_VALID(m, "removes with every block refused");
            }
        CHECK(ok > N / 4 && refused > 0, "pass %d: %zu removes done and %zu refused",
              pass, ok, refused);
        CHECK_VALID(m, "after removes with every block refused");
        champ_pool_fail_after(p, -1);
        for (size_t i = 0; i < N; i++)
            if (in[i])
                CHECK_ST(champ_remove_u64(m, keys[i], NULL), CHAMP_OK);
        CHECK_EQ(champ_size(m), 0, "drained");
        champ_free(m);
        CHECK_EQ(th_pool_live(p), 0, "pool drained");
        champ_pool_free(p);
    }
#endif
}

/* Sets into an owned u64 map while every allocation fails: the one-descent
 * set (champ_set_u64's fast path, set_u64_owned) replaces a value or
 * shifts an entry into a node's spare room without a block, and a node
 * that must grow into a new block, once refused, returns CHAMP_ENOMEM with
 * the map unchanged.  Then a copy shares every node: its updates must all
 * copy, so each is refused and neither version changes.  Then the refused
 * keys with allocation back. */
static void test_oom_set_refused(void) {
#if TH_FAULTS
    enum { N = 6000 };
    champ_pool *p = NULL;
    champ_map *m = oom_seeded_u64(0x5e7, &p);
    if (!m) {
        champ_pool_free(p);
        return;
    }
    static uint64_t keys[N];
    static int state[N]; /* 0 absent, 1 first value, 2 replaced */
    th_rng r = {0x5e7a};
    for (size_t i = 0; i < N; i++) {
        keys[i] = th_next(&r);
        state[i] = 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < N / 2; i++) {
        CHECK_ST(champ_set_u64(m, keys[i], th_tok(i), NULL), CHAMP_OK);
        state[i] = 1;
        n++;
    }
    size_t added = 0, replaced = 0, refused = 0;
    champ_pool_fail_after(p, 0); /* from now on every block is refused */
    for (size_t j = 0; j < 2 * N; j++) {
        size_t i = (size_t)th_below(&r, N);
        size_t live = th_pool_live(p);
        void *v = state[i] ? th_tok(i + N) : th_tok(i);
        champ_prior pr;
        champ_status st = champ_set_u64(m, keys[i], v, &pr);
        CHECK(th_pool_live(p) == live, "key %zu: a set with every block refused "
              "changes the live bytes (%s)", i, th_status_name(st));
        if (st == CHAMP_OK) {
            CHECK(pr.found == (state[i] != 0), "key %zu: prior.found", i);
            if (state[i]) {
                CHECK(pr.val == (state[i] == 1 ? th_tok(i) : th_tok(i + N)), "key %zu: prior", i);
                replaced++;
                state[i] = 2;
            } else {
                added++;
                n++;
                state[i] = 1;
            }
        } else {
            CHECK_ST(st, CHAMP_ENOMEM);
            CHECK(state[i] == 0, "key %zu: a replacement was refused", i);
            refused++;
        }
        void *got = NULL;
        CHECK(champ_get_u64(m, keys[i], &got) == (state[i] != 0), "key %zu after %s", i,
              th_status_name(st));
        CHECK_EQ(champ_size(m), n, "size");
        if (j % 1000 == 0)
            CHECK_VALID(m, "sets with every block refused");
    }
    CHECK(added > 0 && replaced > 0 && refused > 0,
          "%zu added in place, %zu replaced, %zu refused", added, replaced, refused);
    CHECK_VALID(m, "after sets with every block refused");
    /* A copy shares the root: every update of either version copies. */
    champ_pool_fail_after(p, -1);
    champ_map *cp = NULL;
    CHECK_ST(champ_copy(m, &cp), CHAMP_OK);
    champ_pool_fail_after(p, 0);
    for (size_t j = 0; cp && j < 200; j++) {
        size_t i = (size_t)th_below(&r, N);
        size_t live = th_pool_live(p);
        CHECK_ST(champ_set_u64(m, keys[i], th_tok(i + 2 * N), NULL), CHAMP_ENOMEM);
        CHECK_ST(champ_set_u64(cp, keys[i], th_tok(i + 2 * N), NULL), CHAMP_ENOMEM);
        CHECK_EQ(th_pool_live(p), live, "a refused set of a shared map changes nothing");
    }
    champ_pool_fail_after(p, -1);
    if (cp) {
        CHECK(champ_equal(m, cp, NULL, NULL), "the refused sets changed a version");
        champ_free(cp);
    }
    for (size_t i = 0; i < N; i++) {
        void *got = NULL;
        bool in = champ_get_u64(m, keys[i], &got);
        CHECK(in == (state[i] != 0) &&
                  (!in || got == (state[i] == 1 ? th_tok(i) : th_tok(i + N))),
              "key %zu: state %d", i, state[i]);
        if (!state[i])
            CHECK_ST(champ_set_u64(m, keys[i], th_tok(i), NULL), CHAMP_OK);
    }
    CHECK_EQ(champ_size(m), (size_t)N, "every key in");
    CHECK_VALID(m, "after the refused keys went in");
    champ_free(m);
    CHECK_EQ(th_pool_live(p), 0, "pool drained");
    champ_pool_free(p);
#endif
}

static void test_oom_fail_after_once(void) { oom_fail_after_with_ops(true); }
static void test_oom_fail_after_always(void) { oom_fail_after_with_ops(false); }
static void test_oom_backing_once(void) { oom_backing_with_ops(false); }
static void test_oom_backing_always(void) { oom_backing_with_ops(true); }

/* champ.h: watermark "0 means 0.8".  A fixed buffer with watermark 0 and a
 * callback, filled until CHAMP_ENOMEM: the callback runs once, with live
 * bytes at or past 0.8 of the capacity, on the insert that crossed it
 * (the live bytes before that insert were below). */
static void test_oom_watermark_default(void) {
    static _Alignas(64) unsigned char buf[48 * 1024];
    oom_water wt = {0, NULL, 0, 0};
    champ_pool *pool = oom_water_pool(buf, sizeof buf, 0, &wt);
    if (!pool)
        return;
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 6, pool);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    size_t before = 0, cap = 0;
    for (uint64_t i = 0; m; i++) {
        size_t live = th_pool_live(pool);
        champ_status st = champ_set_u64(m, i, th_tok(i), NULL);
        if (wt.calls == 1 && !before)
            before = live; /* the live bytes before the crossing insert */
        if (st != CHAMP_OK) {
            CHECK_ST(st, CHAMP_ENOMEM);
            break;
        }
    }
    champ_pool_stats ps;
    CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
    cap = ps.bytes_reserved;
    CHECK_EQ(wt.calls, 1, "the default watermark fired once while filling");
    CHECK(wt.capacity == cap && (double)wt.live >= 0.8 * (double)cap &&
              (double)before < 0.8 * (double)cap,
          "it fired crossing 0.8 of %zu: %zu live (%zu before)", cap, wt.live, before);
    champ_free(m);
    champ_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* Part 5: the watermark inside a call that fails                      */
/* ------------------------------------------------------------------ */
/*
 * champ.h promises that a failing call leaves every map exactly as it was
 * and leaks nothing; that a fixed pool's watermark fires once each time the
 * live bytes rise through the mark, inside the allocation of an update;
 * and that the watermark may do what "Callbacks: what they may do" allows.
 * oom.watermark_failing_call puts the two together: the watermark fires in
 * a call that then returns CHAMP_ENOMEM, because the callback itself
 * exhausted the buffer (every build) or armed champ_pool_fail_after for a
 * later allocation of the same call (CHAMP_FAULTS builds: the 1st, 2nd,
 * 3rd, 5th, 8th, ... allocation after the watermark's, and the last).
 *
 * A world in a fixed buffer: m (the map the call updates or reads), old (an
 * older version of m, sharing nodes with it), other (the algebra's second
 * input), a cell holding a version derived from m, a ballast map and a pad
 * (its last allocation, so that the live bytes end at their peak).  The
 * "shared" variant adds twin (a copy of m: every update of m copies its
 * path) and fills the handle page, so that a p-form's copy or a result's
 * handle takes a new page and the watermark fires there.  The world is
 * built once with the watermark out of reach to measure the live bytes,
 * then again (the same blocks: it is deterministic) with the mark 8 bytes
 * above them: the call's first allocation crosses it.  The callback does
 * one action (nothing; read m; update/copy m and the other input, expecting
 * CHAMP_EBUSY or success as the table says; update old and twin; free old;
 * free twin; free the cell; free m, deferred), then exhausts the pool or
 * arms the fault.  After each failure: the status, *out, *prior or *slot
 * untouched, every map's contents (fingerprint, size, validate), the live
 * bytes (as before plus what the callback did; less m's own bytes once its
 * deferred free ran), the counted references; then a retry that does not
 * fire again (the pool only re-arms when the live bytes fall below mark -
 * mark/8, as champ.h says), a drop below that and a rise that fires
 * exactly once, and a drained pool.
 * Regression: a p-form copied m before it framed m as read, so a
 * champ_free(m) from the watermark in the copy's handle allocation ran when
 * the copy returned and the p-form read the freed handle (shared variant,
 * pset / premove, "free m"; fixed in champ.c's PFORM).
 * Key kinds: u64, bytes, counted generic keys (hash collisions).
 */

#define WF_KEYS 400
#define WF_VALS 64
#define WF_N 160 /* keys of m */
#define WF_NEW (WF_N + WF_N / 8 + 20) /* a key not in m */
#define WF_BUF (48 * 1024)

enum { WA_NONE, WA_READ, WA_TOUCH, WA_EDIT_OLD, WA_FREE_OLD, WA_FREE_TWIN, WA_FREE_CELL,
       WA_FREE_M, WA_N };
static const char *const wa_name[WA_N] = {"nothing",  "read m",    "touch m",   "update old",
                                          "free old", "free twin", "free cell", "free m"};
enum { WC_SET_NEW, WC_SET_REPLACE, WC_REMOVE, WC_UPSERT, WC_PSET, WC_PREMOVE, WC_UNION,
       WC_INTERSECT, WC_DIFFERENCE, WC_SYMDIFF, WC_FILTER, WC_APPLY, WC_N };
static const char *const wc_name[WC_N] = {
    "set (new key)", "set (replace)", "remove",     "upsert", "pset",   "premove",
    "union",         "intersect",     "difference", "symdiff", "filter", "apply"};
/* The calls that read m (p-forms, algebra); the others update it. */
static bool wc_reads(int c) { return c >= WC_PSET && c <= WC_FILTER; }
static bool wc_has_out(int c) { return wc_reads(c); }

enum { WM_EXHAUST, WM_FAULT };

typedef struct wf_world {
    champ_key_kind kind;
    bool shared;
    champ_pool *pool;
    size_t cap;
    champ_map *m, *old, *other, *twin, *pad, *bal;
    champ_map *fill[30]; /* empty maps: the handle page is full */
    champ_cell *cell;
    uint64_t fp_cell; /* the cell's version */
    th_cbctx ctx;
    /* the callback */
    int calls;
    bool armed; /* do the action (once) at the next call */
    int act, mode, call;
    long fault_j;
    size_t mark_lo;         /* the mark is at least this (peak + 7) */
    size_t rearm;           /* it re-arms below about this (mark - mark/8) */
    size_t live_act;        /* the live bytes after the action */
    size_t arg_live;
    size_t live_in, live_out, live_min; /* around the action; the lowest seen */
    size_t maps_in, maps_out;
    uint64_t hsum_in, hsum_out;
    uint64_t fp_m0, fp_other0;  /* m and other before the call */
    uint64_t fp_old_cb, fp_twin_cb; /* old and twin after the callback's edits */
    size_t size_m0;
    bool m_freed;
    unsigned bal_next;
} wf_world;

static th_obj wf_kobj[WF_KEYS], wf_vobj[WF_VALS];
static char wf_bkey[WF_KEYS][16];
static _Alignas(64) unsigned char wf_buf[WF_BUF];

static uint64_t wf_u64(unsigned k) { return (uint64_t)k * 7919u + 3u; }

static void *wf_val(const wf_world *w, unsigned v) {
    return w->kind == CHAMP_KEY_GENERIC ? (void *)&wf_vobj[v % WF_VALS] : th_tok(v);
}

static champ_key wf_ckey(const wf_world *w, unsigned k) {
    champ_key key = {0, NULL, 0};
    if (w->kind == CHAMP_KEY_U64)
        key.u64 = wf_u64(k);
    else if (w->kind == CHAMP_KEY_BYTES)
        key.ptr = wf_bkey[k], key.len = strlen(wf_bkey[k]);
    else
        key.ptr = &wf_kobj[k];
    return key;
}

/* The identity of a key as iteration reports it. */
static uint64_t wf_kid(const wf_world *w, const champ_key *k) {
    if (w->kind == CHAMP_KEY_U64)
        return k->u64;
    if (w->kind == CHAMP_KEY_GENERIC)
        return ((const th_obj *)k->ptr)->id;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < k->len; i++)
        h = (h ^ ((const unsigned char *)k->ptr)[i]) * 0x100000001b3ULL;
    return h;
}

/* The contents of m as one number (order-free), its size folded in. */
static uint64_t wf_fp(const wf_world *w, const champ_map *m) {
    champ_iter it;
    champ_key ks[32];
    void *vs[32];
    uint64_t h = 0, count = 0;
    if (champ_iter_init(&it, m) != CHAMP_OK)
        return 0;
    size_t n;
    while ((n = champ_iter_next_n(&it, ks, vs, 32)) > 0)
        for (size_t i = 0; i < n; i++, count++)
            h += th_mix64(wf_kid(w, &ks[i]) * 0x9e3779b97f4a7c15ULL ^ (uintptr_t)vs[i]);
    if (champ_iter_status(&it) != CHAMP_OK)
        h ^= 0xbad;
    return h + count * 0x2545f4914f6cdd1dULL;
}

/* The counted references the maps hold, as one number (linear: deltas add). */
static uint64_t wf_hsum(void) {
    uint64_t s = 0;
    for (unsigned i = 0; i < WF_KEYS; i++)
        s += (uint64_t)wf_kobj[i].held * th_mix64(i + 1);
    for (unsigned i = 0; i < WF_VALS; i++)
        s += (uint64_t)wf_vobj[i].held * th_mix64(i + 100003);
    return s;
}

static size_t wf_maps(const champ_pool *p) {
    champ_pool_stats ps;
    if (champ_pool_stats_get(p, &ps, sizeof ps) != CHAMP_OK)
        return (size_t)-1;
    return ps.maps;
}

/* Updates with their reference bookkeeping (generic: th_obj_hand_in/back). */
static champ_status wf_set(wf_world *w, champ_map *m, unsigned k, unsigned v, champ_prior *pr) {
    champ_key key = wf_ckey(w, k);
    void *val = wf_val(w, v);
    champ_status st;
    if (w->kind == CHAMP_KEY_U64)
        return champ_set_u64(m, key.u64, val, pr);
    if (w->kind == CHAMP_KEY_BYTES)
        return champ_set_bytes(m, key.ptr, key.len, val, pr);
    champ_prior lp;
    st = champ_set(m, (void *)(uintptr_t)key.ptr, val, pr ? pr : &lp);
    if (!pr)
        pr = &lp;
    if (st == CHAMP_OK) {
        if (!pr->found)
            th_obj_hand_in((void *)(uintptr_t)key.ptr);
        th_obj_hand_in(val);
        if (pr->found)
            th_obj_hand_back(pr->val);
    }
    return st;
}

static champ_status wf_remove(wf_world *w, champ_map *m, unsigned k, champ_prior *pr) {
    champ_key key = wf_ckey(w, k);
    if (w->kind == CHAMP_KEY_U64)
        return champ_remove_u64(m, key.u64, pr);
    if (w->kind == CHAMP_KEY_BYTES)
        return champ_remove_bytes(m, key.ptr, key.len, pr);
    champ_prior lp;
    if (!pr)
        pr = &lp;
    champ_status st = champ_remove(m, key.ptr, pr);
    if (st == CHAMP_OK && pr->found) {
        th_obj_hand_back(pr->key);
        th_obj_hand_back(pr->val);
    }
    return st;
}

static champ_status wf_pset(wf_world *w, const champ_map *m, unsigned k, unsigned v,
                            champ_map **out) {
    champ_key key = wf_ckey(w, k);
    void *val = wf_val(w, v);
    if (w->kind == CHAMP_KEY_U64)
        return champ_pset_u64(m, key.u64, val, out);
    if (w->kind == CHAMP_KEY_BYTES)
        return champ_pset_bytes(m, key.ptr, key.len, val, out);
    bool was = champ_contains(m, key.ptr);
    champ_status st = champ_pset(m, (void *)(uintptr_t)key.ptr, val, out);
    if (st == CHAMP_OK) {
        if (!was)
            th_obj_hand_in((void *)(uintptr_t)key.ptr);
        th_obj_hand_in(val);
    }
    return st;
}

static bool wf_keep(const champ_key *key, void *val, void *ctx) {
    (void)val;
    return wf_kid(ctx, key) % 3 != 0;
}

static void wf_mark(champ_pool *p, size_t live, size_t cap, void *ctx);

/* The world in wf_buf with the watermark at frac (1.0: out of reach). */
static bool wf_build(wf_world *w, champ_key_kind kind, bool shared, double frac) {
    memset(w, 0, sizeof *w);
    w->kind = kind;
    w->shared = shared;
    for (unsigned i = 0; i < WF_KEYS; i++) {
        memset(&wf_kobj[i], 0, sizeof wf_kobj[i]);
        wf_kobj[i].id = i + 1;
        if (!wf_bkey[i][0])
            snprintf(wf_bkey[i], sizeof wf_bkey[i], "wfkey-%04u", i);
    }
    for (unsigned i = 0; i < WF_VALS; i++) {
        memset(&wf_vobj[i], 0, sizeof wf_vobj[i]);
        wf_vobj[i].id = 100000 + i;
    }
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.buffer = wf_buf;
    pc.buffer_size = sizeof wf_buf;
    pc.watermark = frac;
    pc.on_watermark = wf_mark;
    pc.watermark_ctx = w;
    CHECK_ST(champ_pool_new(&pc, &w->pool), CHAMP_OK);
    if (!w->pool)
        return false;
    w->cap = 0;
    champ_pool_stats ps;
    if (champ_pool_stats_get(w->pool, &ps, sizeof ps) == CHAMP_OK)
        w->cap = ps.bytes_reserved;
    champ_config c;
    if (kind == CHAMP_KEY_GENERIC) {
        w->ctx.hash_mode = TH_HASH_BITS;
        w->ctx.mask = 0xff; /* 300-odd keys on 256 hashes: collisions */
        c = th_generic_config(&w->ctx, true, w->pool);
    } else {
        c = th_kind_config(kind, 0x3a7e, w->pool);
    }
    champ_config cb = th_kind_config(CHAMP_KEY_U64, 0xba1, w->pool);
    champ_config cp = th_kind_config(CHAMP_KEY_BYTES, 0xba2, w->pool);
    bool ok = champ_new(&c, &w->m) == CHAMP_OK;
    for (unsigned k = 0; ok && k < WF_N; k++)
        ok = wf_set(w, w->m, k, k % WF_VALS, NULL) == CHAMP_OK;
    ok = ok && champ_copy(w->m, &w->old) == CHAMP_OK;
    for (unsigned k = 0; ok && k < WF_N + WF_N / 8; k++) {
        if (k >= WF_N || k % 5 == 0)
            ok = wf_set(w, w->m, k, (k + 1) % WF_VALS, NULL) == CHAMP_OK;
        else if (k % 7 == 3)
            ok = wf_remove(w, w->m, k, NULL) == CHAMP_OK;
    }
    ok = ok && champ_new_like(w->m, &w->other) == CHAMP_OK;
    for (unsigned k = WF_N / 2; ok && k < WF_N / 2 + WF_N; k++)
        ok = wf_set(w, w->other, k, (k + 7) % WF_VALS, NULL) == CHAMP_OK;
    /* the cell: a version derived from m by p-forms, held by the cell alone */
    champ_map *v = NULL;
    ok = ok && champ_copy(w->m, &v) == CHAMP_OK;
    for (unsigned k = WF_NEW + 1; ok && k < WF_NEW + 9; k++) {
        champ_map *nv = NULL;
        ok = wf_pset(w, v, k, k % WF_VALS, &nv) == CHAMP_OK;
        champ_free(v);
        v = nv;
    }
    if (ok)
        w->fp_cell = wf_fp(w, v);
    ok = ok && champ_cell_new(v, &w->cell) == CHAMP_OK;
    champ_free(v);
    if (ok && shared)
        ok = champ_copy(w->m, &w->twin) == CHAMP_OK;
    ok = ok && champ_new(&cb, &w->bal) == CHAMP_OK && champ_new(&cp, &w->pad) == CHAMP_OK;
    /* shared: the handle page full (30 handles, champ.h), so that the next
     * map (a copy, a result) takes a new page: the watermark fires there */
    for (size_t i = 0; ok && shared && wf_maps(w->pool) % 30 != 0; i++)
        ok = i < 30 && champ_new_like(w->pad, &w->fill[i]) == CHAMP_OK;
    /* the pad's key copy: more than any block freed above, so the live
     * bytes end at their peak */
    char pad[1200];
    memset(pad, 'p', sizeof pad);
    ok = ok && champ_set_bytes(w->pad, pad, sizeof pad, NULL, NULL) == CHAMP_OK;
    CHECK(ok, "kind %d%s: the world does not fit (%zu of %zu bytes live)", (int)kind,
          shared ? " shared" : "", th_pool_live(w->pool), w->cap);
    return ok;
}

/* Frees what is left and checks the pool is empty and references balance. */
static void wf_teardown(wf_world *w, const char *what) {
    if (!w->m_freed)
        champ_free(w->m);
    champ_free(w->old);
    champ_free(w->other);
    champ_free(w->twin);
    champ_free(w->pad);
    champ_free(w->bal);
    champ_cell_free(w->cell);
    for (size_t i = 0; i < 30; i++) {
        champ_free(w->fill[i]);
        w->fill[i] = NULL;
    }
    w->m = w->old = w->other = w->twin = w->pad = w->bal = NULL;
    w->cell = NULL;
    if (w->pool) {
        CHECK(th_pool_live(w->pool) == 0 && wf_maps(w->pool) == 0,
              "%s: %zu bytes and %zu maps left", what, th_pool_live(w->pool),
              wf_maps(w->pool));
        champ_pool_free(w->pool);
        w->pool = NULL;
    }
    if (w->kind == CHAMP_KEY_GENERIC) {
        size_t bad = 0;
        for (unsigned i = 0; i < WF_KEYS; i++)
            bad += wf_kobj[i].held != 0;
        for (unsigned i = 0; i < WF_VALS; i++)
            bad += wf_vobj[i].held != 0;
        CHECK(bad == 0 && w->ctx.underflows == 0,
              "%s: %zu objects unbalanced, %lu underflows", what, bad, w->ctx.underflows);
    }
}

/* Fills the ballast until the pool refuses it 16 times in a row. */
static void wf_exhaust(wf_world *w) {
    for (int refused = 0, total = 0; refused < 16 && total < 100000;) {
        champ_status st = champ_set_u64(w->bal, w->bal_next++, NULL, NULL);
        refused = st == CHAMP_OK ? 0 : refused + 1;
        total += st != CHAMP_OK;
    }
}

static void wf_touch(wf_world *w) {
    bool rd = wc_reads(w->call);
    champ_map *m = w->m, *x = (champ_map *)th_tok(5);
    CHECK_ST(wf_set(w, m, WF_NEW + 30, 1, NULL), CHAMP_EBUSY);
    CHECK_ST(wf_remove(w, m, 1, NULL), CHAMP_EBUSY);
    CHECK_ST(champ_clear(m), CHAMP_EBUSY);
    champ_op op = {wf_ckey(w, WF_NEW + 31), wf_val(w, 1), false};
    CHECK_ST(champ_apply(m, &op, 1), CHAMP_EBUSY);
    /* copies of m: refused during an update of m, allowed during a read */
    CHECK_ST(champ_copy(m, &x), rd ? CHAMP_OK : CHAMP_EBUSY);
    if (x) {
        CHECK(wf_fp(w, x) == w->fp_m0 && champ_size(x) == w->size_m0,
              "%s: a copy of m from the watermark holds m", wc_name[w->call]);
        champ_free(x);
    }
    x = (champ_map *)th_tok(5);
    CHECK_ST(wf_pset(w, m, WF_NEW + 32, 2, &x), rd ? CHAMP_OK : CHAMP_EBUSY);
    if (x) {
        CHECK_EQ(champ_size(x), w->size_m0 + 1, "a pset of m from the watermark");
        champ_free(x);
    }
    champ_cell *cl = (champ_cell *)th_tok(6);
    CHECK_ST(champ_cell_new(m, &cl), rd ? CHAMP_OK : CHAMP_EBUSY);
    CHECK(rd ? cl != NULL : cl == NULL, "cell_new of m: *out");
    champ_cell_free(cl);
    if (!rd) {
        bool sw = true;
        CHECK_ST(champ_cell_store(w->cell, m), CHAMP_EBUSY);
        CHECK_ST(champ_cell_cas(w->cell, m, m, &sw), CHAMP_EBUSY);
    }
    if (w->call >= WC_UNION && w->call <= WC_SYMDIFF) /* other is read too */
        CHECK_ST(wf_set(w, w->other, WF_NEW + 33, 3, NULL), CHAMP_EBUSY);
}

static void wf_mark(champ_pool *p, size_t live, size_t cap, void *ctx) {
    wf_world *w = ctx;
    w->calls++;
    w->arg_live = live;
    CHECK(live >= w->mark_lo, "%s: the watermark fired at %zu live, below the mark (%zu)",
          wc_name[w->call], live, w->mark_lo);
    if (!w->armed)
        return;
    w->armed = false;
    CHECK(p == w->pool && cap == w->cap && live == th_pool_live(p) && live >= w->mark_lo,
          "%s: watermark arguments live %zu (pool %zu, mark >= %zu), capacity %zu (%zu)",
          wc_name[w->call], live, th_pool_live(p), w->mark_lo, cap, w->cap);
    w->live_in = th_pool_live(p);
    w->maps_in = wf_maps(p);
    w->hsum_in = wf_hsum();
    size_t before;
    switch (w->act) {
    case WA_READ:
        CHECK(wf_fp(w, w->m) == w->fp_m0 && champ_size(w->m) == w->size_m0,
              "%s: m read from the watermark is not m as it was", wc_name[w->call]);
        CHECK(wf_fp(w, w->other) == w->fp_other0, "%s: other read from the watermark",
              wc_name[w->call]);
        break;
    case WA_TOUCH:
        wf_touch(w);
        break;
    case WA_EDIT_OLD: /* versions that share nodes with m (twin: every node) */
        CHECK_ST(wf_set(w, w->old, WF_NEW + 40, 4, NULL), CHAMP_OK);
        CHECK_ST(wf_remove(w, w->old, 2, NULL), CHAMP_OK);
        w->fp_old_cb = wf_fp(w, w->old);
        if (w->twin) {
            CHECK_ST(wf_set(w, w->twin, WF_NEW + 41, 5, NULL), CHAMP_OK);
            CHECK_ST(wf_remove(w, w->twin, 2, NULL), CHAMP_OK);
            w->fp_twin_cb = wf_fp(w, w->twin);
        }
        break;
    case WA_FREE_TWIN: /* its nodes are m's too: only counts move */
        champ_free(w->twin);
        w->twin = NULL;
        break;
    case WA_FREE_OLD:
        before = th_pool_live(p);
        champ_free(w->old);
        w->old = NULL;
        CHECK(th_pool_live(p) < before, "%s: freeing old from the watermark gave "
              "nothing back (%zu -> %zu)", wc_name[w->call], before, th_pool_live(p));
        break;
    case WA_FREE_CELL:
        before = th_pool_live(p);
        champ_cell_free(w->cell);
        w->cell = NULL;
        CHECK(th_pool_live(p) < before, "%s: freeing the cell from the watermark gave "
              "nothing back (%zu -> %zu)", wc_name[w->call], before, th_pool_live(p));
        break;
    case WA_FREE_M:
        before = th_pool_live(p);
        champ_free(w->m); /* deferred to the end of the call */
        w->m_freed = true;
        CHECK(th_pool_live(p) == before && wf_maps(p) == w->maps_in &&
                  champ_size(w->m) == w->size_m0 && wf_fp(w, w->m) == w->fp_m0,
              "%s: champ_free(m) from the watermark was not deferred", wc_name[w->call]);
        break;
    }
    w->live_act = th_pool_live(p);
    if (w->live_act < w->live_min)
        w->live_min = w->live_act;
    if (w->mode == WM_EXHAUST)
        wf_exhaust(w);
    else
        CHECK_ST(champ_pool_fail_after(p, w->fault_j), CHAMP_OK);
    w->live_out = th_pool_live(p);
    w->maps_out = wf_maps(p);
    w->hsum_out = wf_hsum();
}

typedef struct wf_res {
    champ_status st;
    champ_map *out;
    champ_prior prior;
    void **slot;
    bool found;
} wf_res;

/* The call under test. */
static void wf_call(wf_world *w, int c, wf_res *r) {
    r->out = (champ_map *)th_tok(7);
    r->prior = th_prior_junk();
    r->slot = (void **)th_tok(8);
    r->found = true;
    champ_map *m = w->m;
    champ_key key;
    switch (c) {
    case WC_SET_NEW:
        r->st = wf_set(w, m, WF_NEW, 9, &r->prior);
        break;
    case WC_SET_REPLACE:
        r->st = wf_set(w, m, 1, WF_VALS - 1, &r->prior);
        break;
    case WC_REMOVE:
        r->st = wf_remove(w, m, 4, &r->prior);
        break;
    case WC_UPSERT:
        key = wf_ckey(w, WF_NEW);
        if (w->kind == CHAMP_KEY_U64)
            r->st = champ_upsert_u64(m, key.u64, &r->slot, &r->found);
        else if (w->kind == CHAMP_KEY_BYTES)
            r->st = champ_upsert_bytes(m, key.ptr, key.len, &r->slot, &r->found);
        else if ((r->st = champ_upsert(m, (void *)(uintptr_t)key.ptr, &r->slot, &r->found)) ==
                     CHAMP_OK &&
                 !r->found)
            th_obj_hand_in((void *)(uintptr_t)key.ptr);
        break;
    case WC_PSET:
        r->st = wf_pset(w, m, WF_NEW, 9, &r->out);
        break;
    case WC_PREMOVE:
        key = wf_ckey(w, 4);
        if (w->kind == CHAMP_KEY_U64)
            r->st = champ_premove_u64(m, key.u64, &r->out);
        else if (w->kind == CHAMP_KEY_BYTES)
            r->st = champ_premove_bytes(m, key.ptr, key.len, &r->out);
        else
            r->st = champ_premove(m, key.ptr, &r->out);
        break;
    case WC_UNION:
        r->st = champ_union(m, w->other, NULL, NULL, &r->out);
        break;
    case WC_INTERSECT:
        r->st = champ_intersect(m, w->other, NULL, NULL, &r->out);
        break;
    case WC_DIFFERENCE:
        r->st = champ_difference(m, w->other, &r->out);
        break;
    case WC_SYMDIFF:
        r->st = champ_symdiff(m, w->other, &r->out);
        break;
    case WC_FILTER:
        r->st = champ_filter(m, wf_keep, w, &r->out);
        break;
    case WC_APPLY: {
        champ_op ops[24];
        for (unsigned i = 0; i < 24; i++) {
            unsigned k = i % 3 == 0 ? WF_NEW + 50 + i : i * 6 + 1;
            ops[i].key = wf_ckey(w, k);
            ops[i].val = wf_val(w, i);
            ops[i].remove = i % 3 == 2;
        }
        r->st = champ_apply(m, ops, 24);
        break;
    }
    }
}

/* A call that succeeded: its result checked and freed (the update helpers
 * did the reference bookkeeping). */
static void wf_call_done(int c, wf_res *r) {
    if (wc_has_out(c) && r->out) {
        CHECK_VALID(r->out, wc_name[c]);
        champ_free(r->out);
    }
    r->out = NULL;
}

typedef struct wf_measure {
    size_t cap, live, peak, drop_m;
    uint64_t hsum_drop_m;
} wf_measure;

typedef struct wf_tally {
    long runs, no_fire, rearmed, failed[WC_N][WA_N][2];
} wf_tally;

/* One run: build, call with the action and the failure mode, check. */
static void wf_run(champ_key_kind kind, bool shared, const wf_measure *ms, int c, int a,
                   int mode, long j, wf_tally *tl, bool *succeeded) {
    static wf_world w;
    double frac = (double)(ms->peak + 8) / (double)ms->cap;
    *succeeded = true;
    *succeeded = false;
    bool ok = wf_build(&w, kind, shared, frac);
    w.call = c;
    w.act = a;
    w.mode = mode;
    w.fault_j = j;
    w.mark_lo = ms->peak + 7;
    w.rearm = (ms->peak + 8) - (ms->peak + 8) / 8;
    char what[160];
    snprintf(what, sizeof what, "%s%s %s, watermark: %s, then %s %ld",
             kind == CHAMP_KEY_U64 ? "u64" : kind == CHAMP_KEY_BYTES ? "bytes" : "generic",
             shared ? " shared" : "", wc_name[c], wa_name[a],
             mode == WM_EXHAUST ? "exhaust" : "fail_after", mode == WM_EXHAUST ? 0 : j);
    size_t live0 = ok ? th_pool_live(w.pool) : 0;
    CHECK(ok && w.calls == 0 && live0 == ms->live,
          "%s: the world fired the watermark %d times, or differs (%zu live, measured %zu)",
          what, w.calls, live0, ms->live);
    if (!ok || w.calls != 0 || live0 != ms->live) {
        wf_teardown(&w, what);
        return;
    }
    tl->runs++;
    w.fp_m0 = wf_fp(&w, w.m);
    w.size_m0 = champ_size(w.m);
    w.fp_other0 = wf_fp(&w, w.other);
    uint64_t fp_old0 = wf_fp(&w, w.old), fp_twin0 = w.twin ? wf_fp(&w, w.twin) : 0;
    size_t maps0 = wf_maps(w.pool);
    uint64_t hsum0 = wf_hsum();
    w.live_min = live0;
    w.armed = true;

    wf_res r;
    wf_call(&w, c, &r);
    champ_pool_fail_after(w.pool, -1);
    size_t live1 = th_pool_live(w.pool);
    if (live1 < w.live_min)
        w.live_min = live1;
    /* Once per rise: a call that took no block (a set into spare room) does
     * not fire it; a second time only after the action's frees went below
     * the re-arm level (then the exhausting fill rises through it again). */
    bool rearmed = w.calls > 0 && w.live_act + 16 < w.rearm;
    CHECK(w.calls == 1 ? !(rearmed && mode == WM_EXHAUST)
                       : w.calls == 2 ? rearmed
                                      : w.calls == 0 && r.st == CHAMP_OK && live1 == live0,
          "%s: the watermark ran %d times in the call (%s, %zu -> %zu live; %zu after "
          "the action, re-armed below %zu)", what, w.calls, th_status_name(r.st), live0,
          live1, w.live_act, w.rearm);
    if (w.calls == 2)
        tl->rearmed++;
    if (w.calls == 0)
        tl->no_fire++;
    if (r.st == CHAMP_OK) {
        *succeeded = true;
        wf_call_done(c, &r);
        if (!w.m_freed)
            CHECK_VALID(w.m, what);
        wf_teardown(&w, what);
        return;
    }
    CHECK(r.st == CHAMP_ENOMEM, "%s: %s", what, th_status_name(r.st));
    if (r.st != CHAMP_ENOMEM || w.calls == 0) {
        wf_teardown(&w, what);
        return;
    }
    tl->failed[c][a][mode]++;
    if (wc_has_out(c))
        CHECK(r.out == NULL, "%s: *out is not NULL after the failure", what);
    else if (c == WC_UPSERT)
        CHECK(r.slot == (void **)th_tok(8), "%s: *slot written by the failure", what);
    else
        CHECK(th_prior_untouched(&r.prior), "%s: *prior written by the failure", what);

    /* every map as before */
    if (!w.m_freed) {
        CHECK(champ_size(w.m) == w.size_m0 && wf_fp(&w, w.m) == w.fp_m0,
              "%s: m changed (%zu entries, %zu before)", what, champ_size(w.m), w.size_m0);
        CHECK_VALID(w.m, what);
    }
    CHECK(wf_fp(&w, w.other) == w.fp_other0, "%s: other changed", what);
    if (w.twin)
        CHECK(wf_fp(&w, w.twin) == (a == WA_EDIT_OLD ? w.fp_twin_cb : fp_twin0),
              "%s: twin changed", what);
    if (w.old)
        CHECK(wf_fp(&w, w.old) == (a == WA_EDIT_OLD ? w.fp_old_cb : fp_old0),
              "%s: old changed", what);
    CHECK_VALID(w.other, what);

    /* the live bytes, maps and references: as before, plus what the callback
     * did, less what m's deferred free gave back */
    size_t want_live = live0 + w.live_out - w.live_in - (w.m_freed ? ms->drop_m : 0);
    CHECK(live1 == want_live, "%s: %zu bytes live after the failure, want %zu (%zu before, "
          "%+ld by the callback)", what, live1, want_live, live0,
          (long)w.live_out - (long)w.live_in);
    CHECK_EQ(wf_maps(w.pool), maps0 + w.maps_out - w.maps_in - (w.m_freed ? 1u : 0u),
             "maps alive after the failure");
    CHECK(wf_hsum() == hsum0 + w.hsum_out - w.hsum_in - (w.m_freed ? ms->hsum_drop_m : 0),
          "%s: the counted references moved", what);
    if (mode == WM_EXHAUST) { /* room again */
        CHECK_ST(champ_clear(w.bal), CHAMP_OK);
        if (th_pool_live(w.pool) < w.live_min)
            w.live_min = th_pool_live(w.pool);
    }
    if (w.cell) { /* (a load may take a handle page: after the byte count) */
        champ_map *s = NULL;
        CHECK_ST(champ_cell_load(w.cell, &s), CHAMP_OK);
        CHECK(s && wf_fp(&w, s) == w.fp_cell, "%s: the cell's version changed", what);
        champ_free(s);
    }

    /* The same rise: a retry (with room) must not fire again while the
     * live bytes stayed above mark - mark/8 (pool.c's margin). */
    size_t mark = ms->peak + 8, lo = mark - mark / 8;
    if (!w.m_freed) {
        int calls = w.calls;
        wf_call(&w, c, &r);
        CHECK(r.st == CHAMP_OK, "%s: the retry: %s", what, th_status_name(r.st));
        if (r.st == CHAMP_OK)
            wf_call_done(c, &r);
        if (w.live_min >= lo + 16)
            CHECK(w.calls == calls, "%s: the retry fired the watermark again (lowest "
                  "live %zu, re-arm below %zu)", what, w.live_min, lo);
    }
    /* A fall below the margin re-arms it; the next rise fires once. */
    champ_free(w.old);
    champ_free(w.other);
    champ_free(w.twin);
    champ_cell_free(w.cell);
    w.old = w.other = w.twin = NULL;
    w.cell = NULL;
    CHECK_ST(champ_clear(w.pad), CHAMP_OK);
    size_t low = th_pool_live(w.pool);
    CHECK(low + 64 < lo, "%s: %zu live after the frees, not below %zu", what, low, lo);
    int calls = w.calls, fired_at = -1;
    size_t live_before_fire = 0;
    char key[100];
    memset(key, 'c', sizeof key);
    for (int i = 0; i < 400; i++) {
        size_t lb = th_pool_live(w.pool);
        snprintf(key, 12, "climb%05u", (unsigned)i % 100000u);
        key[11] = 'c';
        if (champ_set_bytes(w.pad, key, sizeof key, NULL, NULL) != CHAMP_OK)
            break;
        if (w.calls > calls && fired_at < 0) {
            fired_at = i;
            live_before_fire = lb;
        }
        if (fired_at >= 0 && i >= fired_at + 40)
            break;
    }
    CHECK(w.calls == calls + 1 && fired_at >= 0 && live_before_fire < mark &&
              w.arg_live >= mark - 1,
          "%s: after the fall the rise fired %d times (at %d: %zu -> %zu, mark %zu)", what,
          w.calls - calls, fired_at, live_before_fire, w.arg_live, mark);
    wf_teardown(&w, what);
}

static void wf_measure_world(champ_key_kind kind, bool shared, wf_measure *ms) {
    static wf_world w;
    memset(ms, 0, sizeof *ms);
    if (wf_build(&w, kind, shared, 1.0)) {
        champ_pool_stats ps;
        CHECK_ST(champ_pool_stats_get(w.pool, &ps, sizeof ps), CHAMP_OK);
        ms->cap = w.cap;
        ms->live = ps.bytes_live;
        ms->peak = ps.bytes_peak;
        CHECK(ms->peak == ms->live && ms->live + 8192 < w.cap,
              "the world ends at its peak (%zu live, %zu peak, capacity %zu)", ms->live,
              ms->peak, w.cap);
        uint64_t h = wf_hsum();
        champ_free(w.m);
        w.m_freed = true;
        ms->drop_m = ms->live - th_pool_live(w.pool);
        ms->hsum_drop_m = h - wf_hsum();
        CHECK(w.calls == 0, "the watermark at 1.0 fired");
    }
    wf_teardown(&w, "measure");
}

static void test_oom_watermark_failing_call(void) {
    static const champ_key_kind kinds[] = {CHAMP_KEY_U64, CHAMP_KEY_BYTES, CHAMP_KEY_GENERIC};
    static wf_tally tl;
    memset(&tl, 0, sizeof tl);
    bool faults = TH_NEED_FAULTS("the champ_pool_fail_after part");
    /* (exhausting the buffer costs most: scaled down, shared worlds only,
     * and "free m" in both) */
    bool full = th_scale() >= 1.0;
    /* below scale 0.2 (valgrind) only every step-th (call, action) pair of
     * each world runs, rotating over the worlds */
    long step = th_scale() >= 0.2 ? 1 : (long)(0.5 / th_scale() + 0.5), turn = 0;
    long sweep[] = {0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377};
    for (size_t ki = 0; ki < 3; ki++)
        for (int shared = 0; shared < 2; shared++) {
            wf_measure ms;
            wf_measure_world(kinds[ki], shared, &ms);
            if (!ms.live)
                return;
            for (int c = 0; c < WC_N; c++)
                for (int a = 0; a < WA_N; a++) {
                    bool ok;
                    if (turn++ % step != (long)(ki * 2 + (size_t)shared) % step)
                        continue;
                    if (shared || full || a == WA_FREE_M)
                        wf_run(kinds[ki], shared, &ms, c, a, WM_EXHAUST, 0, &tl, &ok);
                    /* fail the 1st, 2nd, 3rd, 5th, ... allocation after the
                     * watermark's until the call goes through, then bisect
                     * for its last allocation */
                    long lo = -1, hi = -1;
                    for (size_t j = 0; faults && j < sizeof sweep / sizeof sweep[0]; j++) {
                        wf_run(kinds[ki], shared, &ms, c, a, WM_FAULT, sweep[j], &tl, &ok);
                        if (ok) {
                            hi = sweep[j];
                            break;
                        }
                        lo = sweep[j];
                    }
                    CHECK(!faults || hi >= 0, "%s: the call never went through", wc_name[c]);
                    while (lo >= 0 && hi - lo > 1) {
                        long mid = lo + (hi - lo) / 2;
                        wf_run(kinds[ki], shared, &ms, c, a, WM_FAULT, mid, &tl, &ok);
                        if (ok)
                            hi = mid;
                        else
                            lo = mid;
                    }
                }
        }
    /* every call failed after the watermark, with every action */
    long fails = 0;
    for (int c = 0; c < WC_N; c++)
        for (int a = 0; a < WA_N; a++) {
            fails += tl.failed[c][a][WM_EXHAUST] + tl.failed[c][a][WM_FAULT];
            if (step > 1)
                continue; /* (a sample) */
            CHECK(tl.failed[c][a][WM_EXHAUST] > 0, "%s with the watermark doing \"%s\" never "
                  "failed on an exhausted buffer", wc_name[c], wa_name[a]);
            if (faults)
                CHECK(tl.failed[c][a][WM_FAULT] > 0, "%s with the watermark doing \"%s\" "
                      "never failed by champ_pool_fail_after", wc_name[c], wa_name[a]);
        }
    printf("  oom.watermark_failing_call: %ld runs, %ld failed after the watermark ran, "
           "%ld took no block, %ld fired again after the callback's frees\n", tl.runs, fails,
           tl.no_fire, tl.rearmed);
}

/* ------------------------------------------------------------------ */
/* Error returns no test reached (a coverage audit)                     */
/* ------------------------------------------------------------------ */

/* The sum of a u64 map's keys and values, and its size: what it holds. */
static uint64_t ox_sum(const champ_map *m) {
    champ_iter it;
    champ_key k;
    void *v;
    uint64_t s = champ_size(m) * 0x9e3779b97f4a7c15ULL;
    if (champ_iter_init(&it, m) != CHAMP_OK)
        return 0;
    while (champ_iter_next(&it, &k, &v))
        s += th_mix64(k.u64 ^ (uint64_t)(uintptr_t)v);
    return s;
}

/* champ_new_u64 whose handle the shared default pool refuses (CHAMP_ENOMEM,
 * *out NULL, the pool's live bytes as before); and a light version of a
 * cell's snapshot (a p-form of it) stored into an empty cell whose
 * record the pool refuses at each step: the cell stays empty, the version
 * unchanged, and nothing leaks. */
static void test_oom_default_and_cell(void) {
    if (!TH_NEED_FAULTS("oom.default_and_cell"))
        return;
    champ_map *m = NULL, *x = th_tok(1);
    CHECK_ST(champ_new_u64(&m), CHAMP_OK);
    if (!m)
        return;
    champ_pool *dp = champ_pool_of(m);
    size_t live = th_pool_live(dp);
    CHECK_ST(champ_pool_fail_after(dp, 0), CHAMP_OK);
    CHECK_ST(champ_new_u64(&x), CHAMP_ENOMEM);
    CHECK_ST(champ_pool_fail_after(dp, -1), CHAMP_OK);
    CHECK(x == NULL, "champ_new_u64 refused: *out %p", (void *)x);
    CHECK_EQ(th_pool_live(dp), live, "default pool's live bytes after the refusal");
    CHECK_ST(champ_new_u64(&x), CHAMP_OK);
    champ_free(x);
    champ_free(m);

    long stored = 0, refused = 0;
    for (long n = 0; n < 6; n++) {
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.concurrent = true;
        champ_pool *p = NULL;
        CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
        if (!p)
            return;
        champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
        c.pool = p;
        champ_map *a = NULL, *snap = NULL, *d = NULL, *got = th_tok(2);
        champ_cell *cell = NULL, *empty = NULL;
        CHECK_ST(champ_new(&c, &a), CHAMP_OK);
        for (uint64_t k = 0; a && k < 100; k++)
            CHECK_ST(champ_set_u64(a, k, th_tok(k), NULL), CHAMP_OK);
        CHECK_ST(champ_cell_new(a, &cell), CHAMP_OK);
        CHECK_ST(champ_cell_new(NULL, &empty), CHAMP_OK);
        CHECK_ST(champ_cell_load(cell, &snap), CHAMP_OK);
        CHECK_ST(champ_pset_u64(snap, 5, th_tok(500), &d), CHAMP_OK);
        if (!a || !cell || !empty || !snap || !d)
            return;
        uint64_t fd = ox_sum(d);
        size_t before = th_pool_live(p);
        CHECK_ST(champ_pool_fail_after(p, n), CHAMP_OK);
        champ_status st = champ_cell_store(empty, d);
        CHECK_ST(champ_pool_fail_after(p, -1), CHAMP_OK);
        CHECK(st == CHAMP_OK || st == CHAMP_ENOMEM, "store, fail_after %ld: %s", n,
              th_status_name(st));
        CHECK_EQ(ox_sum(d), fd, "the stored version unchanged");
        CHECK_ST(champ_cell_load(empty, &got), CHAMP_OK);
        if (st == CHAMP_ENOMEM) {
            refused++;
            CHECK(got == NULL, "a refused store left the cell empty (fail_after %ld)", n);
            CHECK_EQ(th_pool_live(p), before, "live bytes after a refused store");
        } else {
            stored++;
            CHECK(got && ox_sum(got) == fd, "the cell holds the version (fail_after %ld)", n);
        }
        CHECK_VALID(d, "the version after the store");
        champ_free(got);
        champ_free(d);
        champ_free(snap);
        champ_cell_free(cell);
        champ_cell_free(empty);
        champ_free(a);
        CHECK_EQ(th_pool_live(p), 0, "the pool empty at the end");
        champ_pool_free(p);
    }
    CHECK(refused > 0 && stored > 0, "stores refused %ld, done %ld", refused, stored);
}

const th_test th_tests_oom[] = {
    {"oom.fail_after.once", test_oom_fail_after_once},
    {"oom.fail_after.always", test_oom_fail_after_always},
    {"oom.backing.once", test_oom_backing_once},
    {"oom.backing.always", test_oom_backing_always},
    {"oom.fixed_buffer", test_oom_fixed_buffer},
    {"oom.watermark_default", test_oom_watermark_default},
    {"oom.remove_refused", test_oom_remove_refused},
    {"oom.set_refused", test_oom_set_refused},
    {"oom.watermark_failing_call", test_oom_watermark_failing_call},
    {"oom.default_and_cell", test_oom_default_and_cell},
};
const size_t th_tests_oom_count = sizeof th_tests_oom / sizeof th_tests_oom[0];

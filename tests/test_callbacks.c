/*
 * test_callbacks.c - the callback contract of champ.h, cell by cell.
 *
 * The header's table says what a callback may do while an operation on a
 * map m runs: read anything; copy m during a read of m but not during an
 * update; never update or clear m (CHAMP_EBUSY); free m only deferred (to
 * the end of the operation); change any other map freely, including
 * versions that share nodes with m.  callbacks.matrix runs every operation
 * against every callback that fires in it and every action, and after each
 * case checks: the action's status, the operation's result, every map that
 * is left (validate, contents against a model), the pool's live bytes back
 * to zero, and every key and value object's references back to zero (no
 * leak, no double release).
 *
 * The named regressions below replay the programs that showed the bugs:
 * a watermark or an equal callback freeing an older version mid-update
 * (reference counts corrupted), an update from a lookup's equal callback
 * (a use-after-free), a release callback freeing its own map during
 * champ_free (a double free).
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* ------------------------------------------------------------------ */
/* The hostile callbacks                                               */
/* ------------------------------------------------------------------ */

enum cb_kind {
    CB_HASH, CB_EQUAL, CB_KEY_RETAIN, CB_KEY_RELEASE, CB_VAL_RETAIN,
    CB_VAL_RELEASE, CB_VISIT, NCB
};
static const char *const cb_name[NCB] = {
    "hash", "equal", "key_retain", "key_release", "val_retain", "val_release",
    "visit",
};

enum act {
    A_READ_SELF, A_COPY_SELF, A_SET_SELF, A_CLEAR_SELF, A_FREE_SELF,
    A_SET_OTHER, A_REMOVE_OTHER, A_FREE_OTHER, A_COPY_OTHER, A_PSET_OTHER, NACT
};
static const char *const act_name[NACT] = {
    "read m", "copy m", "set m", "clear m", "free m", "set other",
    "remove other", "free other", "copy other", "pset other",
};

enum op {
    OP_GET, OP_FOREACH, OP_PSET_NEW, OP_PSET_REPLACE, OP_PREMOVE, OP_SET_NEW,
    OP_REPLACE, OP_REMOVE_SHARED, OP_REMOVE_OWNED, OP_CLEAR, OP_FREE, NOP
};
static const char *const op_name[NOP] = {
    "get", "foreach", "pset (new key)", "pset (replace)", "premove", "set (new key)",
    "set (replace)", "remove (shared path)", "remove (owned path)", "clear", "free",
};
/* Reads of m (the others are updates of m, or its free). */
static bool op_reads(int op) {
    return op == OP_GET || op == OP_FOREACH || op == OP_PSET_NEW ||
           op == OP_PSET_REPLACE || op == OP_PREMOVE;
}

#define NK 64 /* keys in m at the start */

typedef struct hostile {
    th_cbctx cb;            /* first: the th_obj helpers take it as ctx */
    bool armed;
    int cb_kind, act;
    bool fired;
    champ_status got;       /* status of the action (or CHAMP_OK) */
    int read_result;        /* A_READ_SELF: 1 found right, 0 absent, -1 wrong */
    champ_map *self, *other, *made, *derived;
    bool self_freed, other_freed;
    th_obj *keys, *vals, *extra, *twin;
} hostile;

static void act_run(hostile *H);

static void maybe_fire(hostile *H, int kind) {
    if (!H->armed || H->fired || H->cb_kind != kind)
        return;
    H->fired = true;
    act_run(H);
}

static uint64_t h_hash(const void *k, void *ctx) {
    maybe_fire(ctx, CB_HASH);
    return th_key_hash(k, ctx);
}
static bool h_equal(const void *a, const void *b, void *ctx) {
    maybe_fire(ctx, CB_EQUAL);
    return th_key_equal(a, b, ctx);
}
static void h_key_retain(void *p, void *ctx) {
    th_obj_retain(p, ctx);
    maybe_fire(ctx, CB_KEY_RETAIN);
}
static void h_key_release(void *p, void *ctx) {
    th_obj_release(p, ctx);
    maybe_fire(ctx, CB_KEY_RELEASE);
}
static void h_val_retain(void *p, void *ctx) {
    th_obj_retain(p, ctx);
    maybe_fire(ctx, CB_VAL_RETAIN);
}
static void h_val_release(void *p, void *ctx) {
    th_obj_release(p, ctx);
    maybe_fire(ctx, CB_VAL_RELEASE);
}
static int h_visit(const champ_key *k, void *v, void *ctx) {
    (void)k;
    (void)v;
    maybe_fire(ctx, CB_VISIT);
    return 0;
}

/* What a callback does.  The keys it inserts are handed in (the map owns
 * them on insert); values are NULL. */
static void act_run(hostile *H) {
    H->got = CHAMP_OK;
    switch (H->act) {
    case A_READ_SELF: {
        void *v = NULL;
        /* key 2 is never the one an operation changes */
        if (!champ_get(H->self, &H->keys[2], &v))
            H->read_result = 0;
        else
            H->read_result = v == &H->vals[2] ? 1 : -1;
        break;
    }
    case A_COPY_SELF:
        H->got = champ_copy(H->self, &H->made);
        break;
    case A_SET_SELF:
        H->got = champ_set(H->self, &H->extra[1], NULL, NULL);
        if (H->got == CHAMP_OK)
            th_obj_hand_in(&H->extra[1]);
        break;
    case A_CLEAR_SELF:
        H->got = champ_clear(H->self);
        break;
    case A_FREE_SELF:
        champ_free(H->self);
        H->self_freed = true;
        break;
    case A_SET_OTHER:
        H->got = champ_set(H->other, &H->extra[2], NULL, NULL);
        if (H->got == CHAMP_OK)
            th_obj_hand_in(&H->extra[2]);
        break;
    case A_REMOVE_OTHER:
        H->got = champ_remove(H->other, &H->keys[3], NULL);
        break;
    case A_FREE_OTHER:
        champ_free(H->other);
        H->other_freed = true;
        break;
    case A_COPY_OTHER:
        H->got = champ_copy(H->other, &H->made);
        break;
    case A_PSET_OTHER:
        H->got = champ_pset(H->other, &H->extra[3], NULL, &H->derived);
        if (H->got == CHAMP_OK)
            th_obj_hand_in(&H->extra[3]);
        break;
    }
}

/* The table of champ.h: what the action returns from a callback of a read
 * (reading) or of an update or free of m.  Free is deferred: CHAMP_OK. */
static champ_status act_want(int act, bool reading) {
    switch (act) {
    case A_COPY_SELF:
        return reading ? CHAMP_OK : CHAMP_EBUSY;
    case A_SET_SELF:
    case A_CLEAR_SELF:
        return CHAMP_EBUSY;
    default:
        return CHAMP_OK;
    }
}

/* ------------------------------------------------------------------ */
/* One case                                                            */
/* ------------------------------------------------------------------ */

/* The callbacks that must fire in each operation (so no case of the
 * matrix passes by not running). */
static bool must_fire(int op, int cb) {
    switch (op) {
    case OP_GET: return cb == CB_HASH || cb == CB_EQUAL;
    case OP_FOREACH: return cb == CB_VISIT;
    case OP_PSET_NEW:
    case OP_SET_NEW:
        return cb == CB_HASH || cb == CB_KEY_RETAIN || cb == CB_VAL_RETAIN;
    case OP_PSET_REPLACE:
    case OP_REPLACE:
        return cb == CB_HASH || cb == CB_EQUAL || cb == CB_KEY_RETAIN ||
               cb == CB_VAL_RETAIN || cb == CB_VAL_RELEASE;
    case OP_PREMOVE:
    case OP_REMOVE_SHARED:
        return cb == CB_HASH || cb == CB_EQUAL || cb == CB_KEY_RETAIN ||
               cb == CB_VAL_RETAIN;
    case OP_REMOVE_OWNED:
        return cb == CB_HASH || cb == CB_EQUAL || cb == CB_KEY_RELEASE ||
               cb == CB_VAL_RELEASE;
    case OP_CLEAR:
    case OP_FREE:
        return cb == CB_KEY_RELEASE || cb == CB_VAL_RELEASE;
    }
    return false;
}

/* The contents m must hold: key i -> vals[i] for present[i]; the extra
 * keys (inserted by operations or actions) with NULL values. */
typedef struct model {
    bool present[NK];
    bool extra[4];
    void *val5; /* key 5's value (a replace changes it) */
} model;

static void check_contents(const champ_map *m, const hostile *H, const model *md,
                           const char *what) {
    size_t n = 0;
    for (int i = 0; i < NK; i++) {
        void *v = NULL;
        bool f = champ_get(m, &H->keys[i], &v);
        void *want = i == 5 ? md->val5 : &H->vals[i];
        CHECK(f == md->present[i] && (!f || v == want),
              "%s: key %d %s (want %s)", what, i, f ? "present" : "absent",
              md->present[i] ? "present" : "absent");
        n += md->present[i];
    }
    for (int i = 0; i < 4; i++) {
        bool f = champ_contains(m, &H->extra[i]);
        CHECK(f == md->extra[i], "%s: extra key %d %s", what, i, f ? "present" : "absent");
        n += md->extra[i];
    }
    CHECK_EQ(champ_size(m), n, what);
}

static void run_case(int op, int cb, int act) {
    char what[160];
    snprintf(what, sizeof what, "%s, %s callback does \"%s\"", op_name[op], cb_name[cb],
             act_name[act]);
    champ_pool *pool;
    CHECK_ST(champ_pool_new(NULL, &pool), CHAMP_OK);
    if (!pool)
        return;
    th_obj keys[NK], vals[NK], extra[4], twin;
    memset(keys, 0, sizeof keys);
    memset(vals, 0, sizeof vals);
    memset(extra, 0, sizeof extra);
    memset(&twin, 0, sizeof twin);
    for (int i = 0; i < NK; i++) {
        keys[i].id = (uint64_t)i + 1;
        vals[i].id = 1000 + (uint64_t)i;
    }
    for (int i = 0; i < 4; i++)
        extra[i].id = 500 + (uint64_t)i;
    twin.id = keys[5].id; /* equal to key 5, another pointer: equal() runs */
    th_obj newval;
    memset(&newval, 0, sizeof newval);
    newval.id = 9999;

    hostile H;
    memset(&H, 0, sizeof H);
    H.cb.hash_mode = TH_HASH_GOOD;
    H.keys = keys;
    H.vals = vals;
    H.extra = extra;
    H.twin = &twin;
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    c.hash = h_hash;
    c.equal = h_equal;
    c.key_retain = h_key_retain;
    c.key_release = h_key_release;
    c.val_retain = h_val_retain;
    c.val_release = h_val_release;
    c.ctx = &H;
    c.pool = pool;
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    if (!m) {
        champ_pool_free(pool);
        return;
    }
    model md;
    memset(&md, 0, sizeof md);
    for (int i = 0; i < NK; i++) {
        th_obj_hand_in(&keys[i]);
        th_obj_hand_in(&vals[i]);
        champ_set(m, &keys[i], &vals[i], NULL);
        md.present[i] = true;
    }
    md.val5 = &vals[5];
    /* other: a copy.  For the owned operations, m then rewrites every
     * value (the same ones), which copies every path: m and other share no
     * node, so removes, clear and free release what m held. */
    champ_map *other = NULL;
    CHECK_ST(champ_copy(m, &other), CHAMP_OK);
    bool owned = op == OP_REMOVE_OWNED || op == OP_CLEAR || op == OP_FREE;
    if (owned)
        for (int i = 0; i < NK; i++) {
            th_obj_hand_in(&vals[i]);
            champ_set(m, &keys[i], &vals[i], NULL); /* releases the duplicate */
        }
    model mo = md; /* other's contents */
    H.self = m;
    H.other = other;
    champ_pool_stats ps0;
    champ_pool_stats_get(pool, &ps0, sizeof ps0);

    /* Run the operation with the callback armed. */
    champ_status st = CHAMP_OK;
    bool found = false;
    champ_map *out = NULL;
    H.cb_kind = cb;
    H.act = act;
    H.read_result = 2;
    H.armed = true;
    switch (op) {
    case OP_GET: {
        void *v = NULL;
        found = champ_get(m, &twin, &v);
        if (found)
            CHECK(v == &vals[5], "%s: get returned the wrong value", what);
        break;
    }
    case OP_FOREACH:
        st = champ_foreach(m, h_visit, &H);
        break;
    case OP_PSET_NEW:
        th_obj_hand_in(&extra[0]);
        st = champ_pset(m, &extra[0], NULL, &out);
        break;
    case OP_PSET_REPLACE:
        th_obj_hand_in(&newval);
        st = champ_pset(m, &twin, &newval, &out);
        break;
    case OP_PREMOVE:
        st = champ_premove(m, &twin, &out);
        break;
    case OP_SET_NEW:
        th_obj_hand_in(&extra[0]);
        st = champ_set(m, &extra[0], NULL, NULL);
        md.extra[0] = true;
        break;
    case OP_REPLACE:
        th_obj_hand_in(&newval);
        st = champ_set(m, &twin, &newval, NULL);
        md.val5 = &newval;
        break;
    case OP_REMOVE_SHARED:
    case OP_REMOVE_OWNED:
        st = champ_remove(m, &twin, NULL);
        md.present[5] = false;
        break;
    case OP_CLEAR:
        st = champ_clear(m);
        memset(&md, 0, sizeof md);
        break;
    case OP_FREE:
        champ_free(m);
        H.self_freed = true;
        break;
    }
    H.armed = false;

    /* Did the case run, and did the action get what the table says? */
    if (must_fire(op, cb))
        CHECK(H.fired, "%s: the callback never ran", what);
    bool reading = op_reads(op);
    if (H.fired) {
        CHECK(H.got == act_want(act, reading), "%s: the action returned %s, want %s", what,
              th_status_name(H.got), th_status_name(act_want(act, reading)));
        if (act == A_READ_SELF) {
            /* key 2 is untouched by every operation but clear and free,
             * which may have emptied the map already */
            bool emptied = op == OP_CLEAR || op == OP_FREE;
            CHECK(H.read_result == 1 || (emptied && H.read_result == 0),
                  "%s: reading m from the callback gave %d", what, H.read_result);
        }
    }
    CHECK_ST(st, CHAMP_OK);
    if (op == OP_GET)
        CHECK(found == !(H.fired && act == A_FREE_SELF), "%s: get said %s", what,
              found ? "found" : "not found");

    /* The action's effects on the model. */
    if (H.fired && H.got == CHAMP_OK) {
        if (act == A_SET_OTHER)
            mo.extra[2] = true;
        if (act == A_REMOVE_OTHER)
            mo.present[3] = false;
    }

    /* Whatever is left must be valid and hold what the model says. */
    champ_pool_stats ps1;
    champ_pool_stats_get(pool, &ps1, sizeof ps1);
    size_t maps_now = ps1.maps;
    if (H.self_freed) {
        /* m went (deferred or by the operation): one map fewer, plus any
         * the action and the operation made. */
        size_t made = (H.made != NULL) + (H.derived != NULL) + (out != NULL) -
                      (size_t)H.other_freed;
        CHECK_EQ(maps_now, ps0.maps - 1 + made, what);
    } else {
        CHECK_VALID(m, what);
        check_contents(m, &H, &md, what);
    }
    if (!H.other_freed) {
        CHECK_VALID(other, what);
        check_contents(other, &H, &mo, what);
    }
    if (out) {
        CHECK_VALID(out, what);
        model mp = md;
        if (op == OP_PSET_NEW)
            mp.extra[0] = true;
        if (op == OP_PSET_REPLACE)
            mp.val5 = &newval;
        if (op == OP_PREMOVE)
            mp.present[5] = false;
        check_contents(out, &H, &mp, what);
    }
    if (H.made)
        CHECK_VALID(H.made, what);
    if (H.derived)
        CHECK_VALID(H.derived, what);

    /* Free everything: the pool is empty and every object's references
     * are back to zero. */
    if (!H.self_freed)
        champ_free(m);
    if (!H.other_freed)
        champ_free(other);
    champ_free(out);
    champ_free(H.made);
    champ_free(H.derived);
    CHECK_EQ(th_pool_live(pool), 0, what);
    champ_pool_free(pool);
    long bad = 0;
    for (int i = 0; i < NK; i++)
        bad += keys[i].held != 0 || vals[i].held != 0;
    for (int i = 0; i < 4; i++)
        bad += extra[i].held != 0;
    bad += twin.held != 0 || newval.held != 0;
    CHECK(bad == 0 && H.cb.underflows == 0,
          "%s: %ld objects still held or over-released (%lu releases of nothing)", what,
          bad, H.cb.underflows);
}

static void test_matrix(void) {
    unsigned long cases = 0;
    for (int op = 0; op < NOP; op++)
        for (int cb = 0; cb < NCB; cb++) {
            if (!must_fire(op, cb))
                continue;
            for (int act = 0; act < NACT; act++) {
                run_case(op, cb, act);
                cases++;
            }
        }
    printf("  callbacks.matrix: %lu cases (operation x callback x action)\n", cases);
}

/* ------------------------------------------------------------------ */
/* Named regressions                                                   */
/* ------------------------------------------------------------------ */

/* A watermark that drops an old version sharing nodes with the map being
 * updated (the natural use of a watermark).  The update's first shared node
 * lost this map's reference with a decrement that never freed: validate
 * reported corruption, and the pool never got back to zero live bytes. */
static champ_map *wm_old;
static int wm_fired;
static void wm_free_old(champ_pool *p, size_t live, size_t cap, void *ctx) {
    (void)p;
    (void)live;
    (void)cap;
    (void)ctx;
    wm_fired++;
    champ_free(wm_old);
    wm_old = NULL;
}

static void test_watermark_free_old_version(void) {
    static _Alignas(16) unsigned char buf[1 << 16];
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.buffer = buf;
    pc.buffer_size = sizeof buf;
    pc.watermark = 0.5;
    pc.on_watermark = wm_free_old;
    champ_pool *pool = NULL;
    CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
    if (!pool)
        return;
    champ_config c = th_kind_config(CHAMP_KEY_U64, 7, pool);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    uint64_t k = 0;
    champ_pool_stats ps;
    for (;;) {
        champ_pool_stats_get(pool, &ps, sizeof ps);
        if (ps.bytes_live > ps.bytes_reserved / 2 - 4000) /* well below the mark */
            break;
        champ_set_u64(m, k++, NULL, NULL);
    }
    wm_fired = 0;
    CHECK_ST(champ_copy(m, &wm_old), CHAMP_OK); /* every node now shared */
    for (int i = 0; i < 200 && wm_old; i++)
        CHECK_ST(champ_set_u64(m, k++, NULL, NULL), CHAMP_OK);
    CHECK(wm_fired == 1 && wm_old == NULL, "the watermark fired %d times", wm_fired);
    CHECK_VALID(m, "after the watermark freed the old version mid-update");
    for (uint64_t i = 0; i < k; i++)
        if (!champ_contains_u64(m, i)) {
            CHECK(0, "key %llu lost", (unsigned long long)i);
            break;
        }
    champ_free(m);
    CHECK_EQ(th_pool_live(pool), 0, "pool live bytes after freeing every map");
    champ_pool_free(pool);
}

/* The same through an equal callback of an update (the other repro). */
static champ_map *eq_other;
static int eq_armed;
static uint64_t eq_hash(const void *k, void *ctx) {
    (void)ctx;
    return (uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15ull;
}
static bool eq_free_other(const void *a, const void *b, void *ctx) {
    (void)ctx;
    if (eq_armed && eq_other) {
        champ_free(eq_other);
        eq_other = NULL;
    }
    return a == b;
}

static void test_equal_frees_other_map(void) {
    champ_pool *pool = NULL;
    CHECK_ST(champ_pool_new(NULL, &pool), CHAMP_OK);
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    c.hash = eq_hash;
    c.equal = eq_free_other;
    c.pool = pool;
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    if (!m)
        return;
    for (uintptr_t i = 1; i <= 1000; i++)
        champ_set(m, (void *)i, NULL, NULL);
    CHECK_ST(champ_copy(m, &eq_other), CHAMP_OK);
    eq_armed = 1;
    /* keys 1..1000 are small integers: a new key lands next to another,
     * and equal() runs during the descent */
    int tries = 0;
    for (uintptr_t k = 5000; eq_other && tries < 1000; k++, tries++)
        CHECK_ST(champ_set(m, (void *)k, NULL, NULL), CHAMP_OK);
    eq_armed = 0;
    CHECK(eq_other == NULL, "equal never ran during an update");
    CHECK_VALID(m, "after equal freed the other version mid-update");
    champ_free(m);
    CHECK_EQ(th_pool_live(pool), 0, "pool live bytes after freeing every map");
    champ_pool_free(pool);
}

/* An update from the equal callback of champ_get on the same map: it was
 * accepted, and the lookup then read a freed node. */
static champ_map *uaf_m;
static int uaf_armed;
static champ_status uaf_inner;
static uint64_t id_hash(const void *k, void *ctx) {
    (void)ctx;
    return (uint64_t)(uintptr_t)k;
}
static bool uaf_equal(const void *a, const void *b, void *ctx) {
    (void)ctx;
    if (uaf_armed) {
        uaf_armed = 0;
        /* would grow the root into a new block */
        for (uintptr_t k = 2; k < 32; k++)
            uaf_inner = champ_set(uaf_m, (void *)(k + 512), NULL, NULL);
    }
    return a == b;
}

static void test_get_equal_updates_self(void) {
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    c.hash = id_hash;
    c.equal = uaf_equal;
    CHECK_ST(champ_new(&c, &uaf_m), CHAMP_OK);
    if (!uaf_m)
        return;
    champ_set(uaf_m, (void *)(uintptr_t)(1 + 32), NULL, NULL); /* slot 1: a pair */
    champ_set(uaf_m, (void *)(uintptr_t)(1 + 64), NULL, NULL);
    uaf_armed = 1;
    uaf_inner = CHAMP_OK;
    bool f = champ_get(uaf_m, (void *)(uintptr_t)(1 + 96), NULL);
    CHECK(!f, "get found a key that is absent");
    CHECK_ST(uaf_inner, CHAMP_EBUSY);
    CHECK_EQ(champ_size(uaf_m), 2, "the refused updates changed nothing");
    CHECK_VALID(uaf_m, "after updates refused from a lookup's callback");
    champ_free(uaf_m);
}

/* A release callback that frees its own map during champ_free of that map
 * (a double free), and one that frees it during clear (deferred). */
static champ_map *rel_m;
static int rel_calls;
static void noop_ref(void *p, void *ctx) {
    (void)p;
    (void)ctx;
}
static void rel_free_self(void *p, void *ctx) {
    (void)p;
    (void)ctx;
    rel_calls++;
    champ_free(rel_m);
}

static void test_release_frees_self(void) {
    champ_pool *pool = NULL;
    CHECK_ST(champ_pool_new(NULL, &pool), CHAMP_OK);
    champ_config c = th_kind_config(CHAMP_KEY_U64, 3, pool);
    c.val_retain = noop_ref; /* never copied: no retain runs */
    c.val_release = rel_free_self;
    for (int during_clear = 0; during_clear < 2; during_clear++) {
        rel_m = NULL;
        CHECK_ST(champ_new(&c, &rel_m), CHAMP_OK);
        if (!rel_m)
            return;
        for (uint64_t k = 0; k < 100; k++)
            champ_set_u64(rel_m, k, th_tok(k), NULL);
        rel_calls = 0;
        if (during_clear) {
            CHECK_ST(champ_clear(rel_m), CHAMP_OK); /* the free waits for it */
        } else {
            champ_free(rel_m); /* the inner frees are no-ops */
        }
        CHECK_EQ(rel_calls, 100, during_clear ? "releases during clear" : "releases during free");
        champ_pool_stats ps;
        champ_pool_stats_get(pool, &ps, sizeof ps);
        CHECK_EQ(ps.maps, 0, "the map is gone once the outer operation ended");
        CHECK_EQ(ps.bytes_live, 0, "and its bytes with it");
    }
    champ_pool_free(pool);
}

/* Nested operations on two maps: a callback of A reads B, whose callback
 * then tries to update A (refused: A is still mid-operation) and frees A
 * (deferred to the end of the outermost operation on A). */
static champ_map *nest_a, *nest_b;
static int nest_depth;
static champ_status nest_status;
static bool nest_equal(const void *x, const void *y, void *ctx) {
    (void)ctx;
    if (nest_depth == 1) {
        nest_depth = 2;
        champ_get(nest_b, (void *)(uintptr_t)(3 + 64), NULL); /* B's equal runs */
    } else if (nest_depth == 2) {
        nest_depth = 3;
        nest_status = champ_set(nest_a, (void *)(uintptr_t)999, NULL, NULL);
        champ_free(nest_a);
    }
    return x == y;
}

static void test_nested_operations(void) {
    champ_pool *pool = NULL;
    CHECK_ST(champ_pool_new(NULL, &pool), CHAMP_OK);
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    c.hash = id_hash;
    c.equal = nest_equal;
    c.pool = pool;
    CHECK_ST(champ_new(&c, &nest_a), CHAMP_OK);
    CHECK_ST(champ_new(&c, &nest_b), CHAMP_OK);
    if (!nest_a || !nest_b)
        return;
    champ_set(nest_a, (void *)(uintptr_t)(1 + 32), NULL, NULL);
    champ_set(nest_b, (void *)(uintptr_t)(3 + 32), NULL, NULL);
    nest_depth = 1;
    nest_status = CHAMP_OK;
    /* a set on A whose slot holds another key: A's equal runs */
    CHECK_ST(champ_set(nest_a, (void *)(uintptr_t)(1 + 96), NULL, NULL), CHAMP_OK);
    CHECK_EQ(nest_depth, 3, "both callbacks ran");
    CHECK_ST(nest_status, CHAMP_EBUSY);
    champ_pool_stats ps;
    champ_pool_stats_get(pool, &ps, sizeof ps);
    CHECK_EQ(ps.maps, 1, "A was freed when its set returned");
    CHECK_VALID(nest_b, "B after the nested operations");
    champ_free(nest_b);
    CHECK_EQ(th_pool_live(pool), 0, "pool empty");
    champ_pool_free(pool);
}

/* An iterator over a map that changed since it started stops with
 * CHAMP_EMODIFIED, in every build: after a set, a remove, a clear, a
 * replace in place; and champ_iter_next_n the same way. */
static void test_iter_modified(void) {
    for (int how = 0; how < 5; how++) {
        champ_map *m = NULL;
        CHECK_ST(champ_new_u64(&m), CHAMP_OK);
        if (!m)
            return;
        for (uint64_t k = 0; k < 1000; k++)
            champ_set_u64(m, k, th_tok(k), NULL);
        champ_iter it;
        CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
        champ_key k;
        void *v;
        CHECK(champ_iter_next(&it, &k, &v), "first step");
        switch (how) {
        case 0: champ_set_u64(m, 5000, NULL, NULL); break;
        case 1: champ_remove_u64(m, 10, NULL); break;
        case 2: champ_clear(m); break;
        case 3: champ_set_u64(m, 20, th_tok(1), NULL); break; /* in place */
        case 4: champ_set_u64(m, 6000, NULL, NULL); break;
        }
        bool more;
        if (how == 4) {
            void *vs[16];
            more = champ_iter_next_n(&it, NULL, vs, 16) != 0;
        } else {
            more = champ_iter_next(&it, &k, &v);
        }
        CHECK(!more, "iteration went on after the map changed (case %d)", how);
        CHECK_ST(champ_iter_status(&it), CHAMP_EMODIFIED);
        CHECK(!champ_iter_next(&it, &k, &v), "and stays stopped");
        champ_free(m);
    }
    /* A copy may change while its source is iterated, and the other way. */
    champ_map *m = NULL, *c = NULL;
    CHECK_ST(champ_new_u64(&m), CHAMP_OK);
    for (uint64_t k = 0; k < 500; k++)
        champ_set_u64(m, k, NULL, NULL);
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    champ_iter it;
    champ_iter_init(&it, c);
    size_t n = 0;
    champ_key k;
    while (champ_iter_next(&it, &k, NULL)) {
        champ_remove_u64(m, k.u64, NULL); /* removing while iterating a copy */
        n++;
    }
    CHECK_ST(champ_iter_status(&it), CHAMP_OK);
    CHECK_EQ(n, 500, "every entry of the copy");
    CHECK_EQ(champ_size(m), 0, "the original emptied while its copy was walked");
    CHECK_VALID(c, "the copy");
    champ_free(c);
    champ_free(m);
}

/* Regression (header audit): an iterator begun on an empty map, or one
 * that had handed out every entry, reported a clean end (CHAMP_OK) after
 * the map changed; the header promises CHAMP_EMODIFIED at the next step.
 * Each case for champ_iter_next and champ_iter_next_n; a walk that ends
 * with the map unchanged still ends with CHAMP_OK. */
static void test_iter_modified_at_end(void) {
    for (int batch = 0; batch < 2; batch++)
        for (int start = 0; start < 3; start++) { /* empty, 1 entry, 700 */
            champ_map *m = NULL;
            CHECK_ST(champ_new_u64(&m), CHAMP_OK);
            if (!m)
                return;
            uint64_t n = start == 0 ? 0 : start == 1 ? 1 : 700;
            for (uint64_t k = 0; k < n; k++)
                champ_set_u64(m, k, th_tok(k), NULL);
            champ_iter it;
            champ_key ks[64];
            void *vs[64];
            CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
            uint64_t seen = 0;
            if (batch) {
                size_t got;
                while ((got = champ_iter_next_n(&it, ks, vs, 64)) != 0)
                    seen += got;
            } else {
                while (champ_iter_next(&it, &ks[0], &vs[0]))
                    seen++;
            }
            CHECK(seen == n, "every entry: %llu of %llu (start %d, batch %d)",
                  (unsigned long long)seen, (unsigned long long)n, start, batch);
            CHECK_ST(champ_iter_status(&it), CHAMP_OK);
            /* the map changes after the last entry: the next step says so */
            CHECK_ST(champ_set_u64(m, 100000, NULL, NULL), CHAMP_OK);
            bool more = batch ? champ_iter_next_n(&it, ks, vs, 64) != 0
                              : champ_iter_next(&it, &ks[0], &vs[0]);
            CHECK(!more, "nothing after the end (start %d, batch %d)", start, batch);
            CHECK(champ_iter_status(&it) == CHAMP_EMODIFIED,
                  "a change after the end reported: status %d (start %d, batch %d)",
                  (int)champ_iter_status(&it), start, batch);
            /* begun, then changed before any step */
            CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
            if (start == 0) {
                champ_map *e = NULL;
                CHECK_ST(champ_new_u64(&e), CHAMP_OK);
                CHECK_ST(champ_iter_init(&it, e), CHAMP_OK);
                CHECK_ST(champ_set_u64(e, 1, NULL, NULL), CHAMP_OK);
                more = batch ? champ_iter_next_n(&it, ks, vs, 64) != 0
                             : champ_iter_next(&it, &ks[0], &vs[0]);
                CHECK(!more && champ_iter_status(&it) == CHAMP_EMODIFIED,
                      "an empty map's iterator after an insert: more %d status %d (batch %d)",
                      (int)more, (int)champ_iter_status(&it), batch);
                champ_free(e);
            }
            champ_free(m);
        }
}

/* The watermark firing inside champ_copy's handle allocation: an update of
 * the map being copied was accepted (a corrupt copy) and a free of it made
 * the copy read a freed map.  Now m is read during the copy: the update is
 * refused, the free waits until the copy has its reference. */
static champ_map *wc_m;
static champ_status wc_update;
static int wc_calls, wc_free;
static void wc_mark(champ_pool *p, size_t live, size_t cap, void *ctx) {
    (void)p;
    (void)live;
    (void)cap;
    (void)ctx;
    wc_calls++;
    wc_update = champ_set_u64(wc_m, 123456789, NULL, NULL);
    if (wc_free)
        champ_free(wc_m);
}

static void test_watermark_in_copy(void) {
    for (wc_free = 0; wc_free < 2; wc_free++) {
        static _Alignas(16) unsigned char buf[1 << 16];
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.buffer = buf;
        pc.buffer_size = sizeof buf;
        pc.watermark = 0.5;
        pc.on_watermark = wc_mark;
        champ_pool *pool = NULL;
        CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
        if (!pool)
            return;
        champ_config c = th_kind_config(CHAMP_KEY_U64, 9, pool);
        wc_m = NULL;
        CHECK_ST(champ_new(&c, &wc_m), CHAMP_OK);
        if (!wc_m)
            return;
        /* copies until one handle allocation crosses the mark: keep the
         * map's bytes just below it, then take copies (each may need a new
         * handle page) */
        champ_pool_stats ps;
        uint64_t k = 0;
        for (;;) {
            champ_pool_stats_get(pool, &ps, sizeof ps);
            if (ps.bytes_live + 2 * 1024 > ps.bytes_reserved / 2)
                break;
            champ_set_u64(wc_m, k++, NULL, NULL);
        }
        size_t n = champ_size(wc_m);
        wc_calls = 0;
        champ_map *copies[200];
        int nc = 0;
        while (nc < 200 && wc_calls == 0) {
            copies[nc] = NULL;
            if (champ_copy(wc_m, &copies[nc]) != CHAMP_OK)
                break;
            nc++;
        }
        CHECK(wc_calls == 1, "the watermark fired during a copy (%d)", wc_calls);
        CHECK_ST(wc_update, CHAMP_EBUSY);
        CHECK(nc > 0 && champ_size(copies[nc - 1]) == n, "the last copy is whole");
        for (int i = 0; i < nc; i++)
            CHECK_VALID(copies[i], "a copy taken while the watermark ran");
        champ_pool_stats_get(pool, &ps, sizeof ps);
        CHECK_EQ(ps.maps, (size_t)nc + (wc_free ? 0u : 1u),
                 wc_free ? "the map was freed once the copy returned" : "the map lives");
        for (int i = 0; i < nc; i++)
            champ_free(copies[i]);
        if (!wc_free)
            champ_free(wc_m);
        CHECK_EQ(th_pool_live(pool), 0, "everything freed");
        champ_pool_free(pool);
    }
}

/* Regression (found by the fuzz target, corpus input
 * regress-update-fn-reads-m): champ_update of an absent key put the key in
 * m with a NULL placeholder before fn ran, so fn (or a callback of it)
 * reading m saw a key that was in neither the old contents nor the new.
 * Now m reads as it was while fn runs, for every kind; a failed update
 * calls no fn. */
typedef struct upd_probe {
    champ_map *m;
    uint64_t key;
    int calls;
    bool seen;       /* fn saw the key in m */
    size_t size;     /* m's size as fn saw it */
} upd_probe;

static void *upd_read_m(const champ_key *key, void *old, bool found, void *ctx) {
    upd_probe *u = ctx;
    (void)key, (void)old, (void)found;
    u->calls++;
    u->seen = champ_contains_u64(u->m, u->key);
    u->size = champ_size(u->m);
    return (void *)(uintptr_t)(u->key + 1000);
}

static void test_update_fn_reads_m(void) {
    for (int pooled = 0; pooled < 2; pooled++) {
        champ_pool *p = NULL;
        if (pooled) {
            champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
            CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
        }
        champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
        c.pool = p;
        champ_map *m = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        if (!m)
            return;
        for (uint64_t k = 0; k < 500; k += 2)
            CHECK_ST(champ_set_u64(m, k, (void *)(uintptr_t)(k + 1), NULL), CHAMP_OK);
        champ_map *snap = NULL;
        CHECK_ST(champ_copy(m, &snap), CHAMP_OK); /* a version sharing m's nodes */
        for (uint64_t k = 1; k < 500; k += 7) {
            upd_probe u = {m, k, 0, true, 0};
            size_t n0 = champ_size(m);
            bool had = champ_contains_u64(m, k);
            CHECK_ST(champ_update_u64(m, k, upd_read_m, &u), CHAMP_OK);
            CHECK_EQ(u.calls, 1, "fn ran once");
            CHECK(u.seen == had, "key %llu: fn saw m as it was (present %d, saw %d)",
                  (unsigned long long)k, had, u.seen);
            CHECK_EQ(u.size, n0, "fn saw m's old size");
            void *v = NULL;
            CHECK(champ_get_u64(m, k, &v) && v == (void *)(uintptr_t)(k + 1000),
                  "key %llu has fn's value", (unsigned long long)k);
        }
        CHECK_VALID(m, "after updates of absent keys");
        CHECK_EQ(champ_size(snap), 250, "the other version unchanged");
        if (p) {
            /* a failed update calls no fn and changes nothing */
            for (long n = 0; n < 4; n++) {
                upd_probe u = {m, 100001, 0, true, 0};
                size_t n0 = champ_size(m);
                champ_pool_fail_after(p, n);
                champ_status st = champ_update_u64(m, 100001, upd_read_m, &u);
                champ_pool_fail_after(p, -1);
                if (st == CHAMP_OK) {
                    CHECK_EQ(u.calls, 1, "fn ran once");
                    CHECK_ST(champ_remove_u64(m, 100001, NULL), CHAMP_OK);
                } else {
                    CHECK_ST(st, CHAMP_ENOMEM);
                    CHECK_EQ(u.calls, 0, "a failed update calls no fn");
                    CHECK_EQ(champ_size(m), n0, "a failed update changes nothing");
                }
                CHECK_VALID(m, "after a failing update");
            }
        }
        champ_free(snap);
        champ_free(m);
        if (p) {
            CHECK_EQ(th_pool_live(p), 0, "the pool drained");
            champ_pool_free(p);
        }
    }
}

/* The header's exception to the above: a type with val_release but no
 * val_retain cannot share nodes with a version, so while fn runs for an
 * absent key m holds the key with a NULL value (found, size one more);
 * a present key reads as before.  Afterwards the key has fn's value and
 * the release ran only on the value fn replaced. */
static int urr_released;
static void urr_release(void *v, void *ctx) {
    (void)v, (void)ctx;
    urr_released++;
}
typedef struct urr_probe {
    champ_map *m;
    uint64_t key;
    int calls, found;
    void *val;
    size_t size;
} urr_probe;
static void *urr_fn(const champ_key *key, void *old, bool found, void *ctx) {
    urr_probe *u = ctx;
    (void)key, (void)old, (void)found;
    u->calls++;
    u->val = th_tok(99);
    u->found = champ_get_u64(u->m, u->key, &u->val);
    u->size = champ_size(u->m);
    return th_tok(u->key + 1000);
}

static void test_update_fn_release_only(void) {
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    c.val_release = urr_release;
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    if (!m)
        return;
    for (uint64_t k = 0; k < 300; k += 2)
        CHECK_ST(champ_set_u64(m, k, th_tok(k), NULL), CHAMP_OK);
    for (uint64_t k = 1; k < 300; k += 5) {
        bool had = (k & 1) == 0;
        size_t n0 = champ_size(m);
        urr_probe u = {m, k, 0, -1, NULL, 0};
        urr_released = 0;
        CHECK_ST(champ_update_u64(m, k, urr_fn, &u), CHAMP_OK);
        CHECK_EQ(u.calls, 1, "fn ran once");
        if (had) {
            CHECK(u.found == 1 && u.val == th_tok(k) && u.size == n0,
                  "key %llu present: fn read its old value (found %d, size %zu of %zu)",
                  (unsigned long long)k, u.found, u.size, n0);
            CHECK_EQ(urr_released, 1, "the replaced value released");
        } else {
            CHECK(u.found == 1 && u.val == NULL && u.size == n0 + 1,
                  "key %llu absent: fn read it with a NULL value (found %d, val %p, "
                  "size %zu of %zu)", (unsigned long long)k, u.found, u.val, u.size, n0);
            CHECK_EQ(urr_released, 0, "nothing released for a new key");
        }
        void *v = NULL;
        CHECK(champ_get_u64(m, k, &v) && v == th_tok(k + 1000), "key %llu has fn's value",
              (unsigned long long)k);
    }
    CHECK_VALID(m, "after updates of a release-only type");
    champ_free(m);
}

/* ------------------------------------------------------------------ */
/* Every update form is CHAMP_EBUSY from a callback of an update of m  */
/* ------------------------------------------------------------------ */

/* The matrix updates m from its callbacks with set and clear; the header
 * says every update of m is CHAMP_EBUSY there ("Errors of every update").
 * Each key kind: a callback that fires inside an update of m (a u64 map's
 * val_release during a replace, a bytes map's bytes_hash, a generic map's
 * hash) tries every update form of m's kind, set, remove, add, upsert,
 * update, p-forms of m's kind are reads and work (not tried here), apply,
 * clear: each must be CHAMP_EBUSY, with m unchanged afterwards but for the
 * outer update. */
typedef struct busy_ctx {
    champ_map *m;
    int armed;
    int tried, busy;
} busy_ctx;

static busy_ctx busy;

static void *busy_fn(const champ_key *k, void *old, bool found, void *ctx) {
    (void)k;
    (void)found;
    (void)ctx;
    return old;
}

static void busy_count(champ_status st) {
    busy.tried++;
    busy.busy += st == CHAMP_EBUSY;
}

static void busy_try_u64(void) {
    champ_map *m = busy.m;
    void **slot;
    champ_op op = {.key = {.u64 = 77}, .val = NULL, .remove = false};
    busy_count(champ_set_u64(m, 77, NULL, NULL));
    busy_count(champ_remove_u64(m, 1, NULL));
    busy_count(champ_add_u64(m, 77, NULL));
    busy_count(champ_upsert_u64(m, 77, &slot, NULL));
    busy_count(champ_update_u64(m, 1, busy_fn, NULL));
    busy_count(champ_apply(m, &op, 1));
    busy_count(champ_clear(m));
}

static void busy_try_bytes(void) {
    champ_map *m = busy.m;
    void **slot;
    champ_op op = {.key = {.ptr = "zz", .len = 2}, .val = NULL, .remove = false};
    busy_count(champ_set_bytes(m, "zz", 2, NULL, NULL));
    busy_count(champ_set_str(m, "zz", NULL, NULL));
    busy_count(champ_remove_bytes(m, "k1", 2, NULL));
    busy_count(champ_remove_str(m, "k1", NULL));
    busy_count(champ_add_bytes(m, "zz", 2, NULL));
    busy_count(champ_add_str(m, "zz", NULL));
    busy_count(champ_upsert_bytes(m, "zz", 2, &slot, NULL));
    busy_count(champ_update_bytes(m, "k1", 2, busy_fn, NULL));
    busy_count(champ_apply(m, &op, 1));
    busy_count(champ_clear(m));
}

static th_obj busy_keys[8];

static void busy_try_generic(void) {
    champ_map *m = busy.m;
    void **slot;
    champ_op op = {.key = {.ptr = &busy_keys[7]}, .val = NULL, .remove = false};
    busy_count(champ_set(m, &busy_keys[7], NULL, NULL));
    busy_count(champ_remove(m, &busy_keys[1], NULL));
    busy_count(champ_add(m, &busy_keys[7], NULL));
    busy_count(champ_upsert(m, &busy_keys[7], &slot, NULL));
    busy_count(champ_update(m, &busy_keys[1], busy_fn, NULL));
    busy_count(champ_apply(m, &op, 1));
    busy_count(champ_clear(m));
}

static void busy_val_retain(void *p, void *ctx) {
    (void)p;
    (void)ctx;
}

static void busy_val_release(void *p, void *ctx) {
    (void)p;
    (void)ctx;
    if (busy.armed == 1) {
        busy.armed = 0;
        busy_try_u64();
    }
}

static uint64_t busy_bytes_hash(const void *k, size_t len, uint64_t seed, void *ctx) {
    (void)ctx;
    if (busy.armed == 2) {
        busy.armed = 0;
        busy_try_bytes();
    }
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)k)[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t busy_hash(const void *k, void *ctx) {
    (void)ctx;
    if (busy.armed == 3) {
        busy.armed = 0;
        busy_try_generic();
    }
    return ((const th_obj *)k)->id * 0x9e3779b97f4a7c15ULL;
}

static bool busy_equal(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return ((const th_obj *)a)->id == ((const th_obj *)b)->id;
}

static void test_every_update_busy(void) {
    static const int forms[3] = {7, 10, 7};
    for (int kind = 0; kind < 3; kind++) {
        champ_config c = kind == 0   ? th_kind_config(CHAMP_KEY_U64, 61, NULL)
                         : kind == 1 ? th_kind_config(CHAMP_KEY_BYTES, 62, NULL)
                                     : (champ_config)CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
        if (kind == 0)
            c.val_release = busy_val_release, c.val_retain = busy_val_retain;
        if (kind == 1)
            c.bytes_hash = busy_bytes_hash;
        if (kind == 2)
            c.hash = busy_hash, c.equal = busy_equal;
        champ_map *m = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        if (!m)
            continue;
        for (int i = 0; i < 8; i++)
            busy_keys[i].id = (uint64_t)i + 1;
        /* three entries: keys 1..3 */
        for (int i = 1; i <= 3; i++) {
            char kb[4] = {'k', (char)('0' + i), 0, 0};
            champ_status st = kind == 0   ? champ_set_u64(m, (uint64_t)i, th_tok(1), NULL)
                              : kind == 1 ? champ_set_bytes(m, kb, 2, th_tok(1), NULL)
                                          : champ_set(m, &busy_keys[i], th_tok(1), NULL);
            CHECK_ST(st, CHAMP_OK);
        }
        memset(&busy, 0, sizeof busy);
        busy.m = m;
        busy.armed = kind + 1;
        /* the outer update: a replace of key 2 (the u64 map's release of
         * the old value fires inside it) */
        champ_status st = kind == 0   ? champ_set_u64(m, 2, th_tok(2), NULL)
                          : kind == 1 ? champ_set_bytes(m, "k2", 2, th_tok(2), NULL)
                                      : champ_set(m, &busy_keys[2], th_tok(2), NULL);
        CHECK_ST(st, CHAMP_OK);
        CHECK(busy.armed == 0 && busy.tried == forms[kind],
              "kind %d: the callback fired and tried %d update forms", kind, busy.tried);
        CHECK_EQ(busy.busy, busy.tried, "every update form of m from its callback: CHAMP_EBUSY");
        CHECK_EQ(champ_size(m), 3, "m kept its three entries");
        void *v = NULL;
        bool got = kind == 0   ? champ_get_u64(m, 2, &v)
                   : kind == 1 ? champ_get_bytes(m, "k2", 2, &v)
                               : champ_get(m, &busy_keys[2], &v);
        CHECK(got && v == th_tok(2), "kind %d: the outer update's value", kind);
        got = kind == 0   ? champ_contains_u64(m, 77)
              : kind == 1 ? champ_contains_bytes(m, "zz", 2)
                          : champ_contains(m, &busy_keys[7]);
        CHECK(!got, "kind %d: no refused insert went in", kind);
        CHECK_VALID(m, "after refused updates from a callback");
        champ_free(m);
    }
}

const th_test th_tests_callbacks[] = {
    {"callbacks.watermark_in_copy", test_watermark_in_copy},
    {"callbacks.matrix", test_matrix},
    {"callbacks.watermark_free_old_version", test_watermark_free_old_version},
    {"callbacks.equal_frees_other_map", test_equal_frees_other_map},
    {"callbacks.get_equal_updates_self", test_get_equal_updates_self},
    {"callbacks.release_frees_self", test_release_frees_self},
    {"callbacks.nested_operations", test_nested_operations},
    {"callbacks.iter_modified", test_iter_modified},
    {"callbacks.iter_modified_at_end", test_iter_modified_at_end},
    {"callbacks.update_fn_reads_m", test_update_fn_reads_m},
    {"callbacks.update_fn_release_only", test_update_fn_release_only},
    {"callbacks.every_update_busy", test_every_update_busy},
};
const size_t th_tests_callbacks_count =
    sizeof th_tests_callbacks / sizeof th_tests_callbacks[0];

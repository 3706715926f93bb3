/*
 * test_badinput.c - every public function with NULLs, bad configurations
 * and maps of the wrong kind: each returns its documented error status,
 * leaves outputs as documented and never crashes.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

/* A non-NULL pointer that must be overwritten (or kept) by a call. */
#define BAD_JUNK_MAP ((champ_map *)th_tok(0xbad))
#define BAD_JUNK_VAL (th_tok(0xbee))

static uint64_t bad_hash(const void *k, void *ctx) {
    (void)ctx;
    return (uint64_t)(uintptr_t)k;
}

static bool bad_equal(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return a == b;
}

static void bad_ref(void *p, void *ctx) {
    (void)p;
    (void)ctx;
}

static void bad_water(champ_pool *p, size_t live, size_t cap, void *ctx) {
    (void)p;
    (void)live;
    (void)cap;
    (void)ctx;
}

static void *bad_malloc(size_t n, void *ctx) {
    (void)n;
    (void)ctx;
    return NULL;
}

static void *bad_realloc(void *p, size_t o, size_t n, void *ctx) {
    (void)p;
    (void)o;
    (void)n;
    (void)ctx;
    return NULL;
}

static void bad_free(void *p, size_t n, void *ctx) {
    (void)p;
    (void)n;
    (void)ctx;
}

static void *bad_update(const champ_key *k, void *old, bool found, void *ctx) {
    (void)k;
    (void)found;
    (void)ctx;
    return old;
}

static int bad_visit(const champ_key *k, void *v, void *ctx) {
    (void)k;
    (void)v;
    (void)ctx;
    return 0;
}

static void test_strerror(void) {
    const champ_status all[] = {
        CHAMP_OK,       CHAMP_ENOMEM,       CHAMP_EINVAL, CHAMP_EKIND,
        CHAMP_EPOOL,    CHAMP_EMODIFIED,    CHAMP_ECORRUPT,
        CHAMP_EUNSUPPORTED, CHAMP_EBUSY,
    };
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        const char *a = champ_strerror(all[i]);
        CHECK(a != NULL && a[0] != '\0', "strerror(%s) empty",
              th_status_name(all[i]));
        for (size_t j = 0; j < i; j++) {
            const char *b = champ_strerror(all[j]);
            CHECK(a && b && strcmp(a, b) != 0, "strerror(%s) == strerror(%s)",
                  th_status_name(all[i]), th_status_name(all[j]));
        }
    }
    CHECK(champ_strerror((champ_status)42) != NULL, "unknown status");
    CHECK(champ_strerror((champ_status)1) != NULL, "former positive status");
    CHECK(champ_strerror((champ_status)-99) != NULL, "unknown error");
}

static void test_pool_configs(void) {
    champ_pool *p = (champ_pool *)th_tok(1);
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    CHECK_ST(champ_pool_new(&pc, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_pool_new(NULL, NULL), CHAMP_EINVAL);
    /* cfg NULL: the defaults. */
    p = NULL;
    CHECK_ST(champ_pool_new(NULL, &p), CHAMP_OK);
    CHECK(p != NULL, "pool from a NULL config");
    champ_pool_free(p);

    /* The size field: 0 is refused; a bigger struct (a newer header) is
     * fine while the bytes this library does not know are zero. */
    pc.size = 0;
    p = NULL;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    CHECK(p == NULL, "pool config size 0: no pool");
    struct {
        champ_pool_config c;
        uint64_t extra;
    } big;
    memset(&big, 0, sizeof big);
    big.c.size = sizeof big;
    p = NULL;
    CHECK_ST(champ_pool_new(&big.c, &p), CHAMP_OK);
    champ_pool_free(p);
    big.extra = 1;
    p = NULL;
    CHECK_ST(champ_pool_new(&big.c, &p), CHAMP_EINVAL);
    CHECK(p == NULL, "pool config with unknown nonzero trailing bytes");
    big.extra = (uint64_t)1 << 63;
    CHECK_ST(champ_pool_new(&big.c, &p), CHAMP_EINVAL);
    pc = (champ_pool_config)CHAMP_POOL_CONFIG_INIT;
    p = (champ_pool *)th_tok(1);

    static _Alignas(16) unsigned char buf[1 << 14];
    champ_allocator al = {bad_malloc, bad_realloc, bad_free, NULL};
    pc.buffer = buf;
    pc.buffer_size = sizeof buf;
    pc.allocator = &al;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    pc.allocator = NULL;
    pc.buffer_size = 8;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    pc.buffer_size = 0;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    pc.buffer_size = sizeof buf;

    const double bad_marks[] = {2.0, -0.5, 1.0000001, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_marks / sizeof bad_marks[0]; i++) {
        pc.watermark = bad_marks[i];
        pc.on_watermark = bad_water;
        CHECK(champ_pool_new(&pc, &p) == CHAMP_EINVAL,
              "watermark %g accepted", bad_marks[i]);
        pc.buffer = NULL;
        pc.buffer_size = 0;
        pc.on_watermark = NULL;
        CHECK(champ_pool_new(&pc, &p) == CHAMP_EINVAL,
              "watermark %g accepted (no buffer)", bad_marks[i]);
        pc.buffer = buf;
        pc.buffer_size = sizeof buf;
    }
    pc.watermark = 1.0;
    p = NULL;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    champ_pool_free(p);
    pc.watermark = 0;
    pc.on_watermark = NULL;
    /* A watermark callback without a buffer. */
    pc.buffer = NULL;
    pc.buffer_size = 0;
    pc.watermark = 0.5;
    pc.on_watermark = bad_water;
    p = (champ_pool *)th_tok(1);
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    pc.watermark = 0;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    pc.on_watermark = NULL;
    /* A buffer_size without a buffer; a concurrent pool in a buffer. */
    pc.buffer_size = sizeof buf;
    p = (champ_pool *)th_tok(1);
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    CHECK(p == NULL, "buffer_size without a buffer: *out NULL");
    pc.buffer = buf;
    pc.concurrent = true;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    pc.concurrent = false;
    pc.buffer = NULL;
    pc.buffer_size = 0;

    /* Allocators with some members NULL. */
    pc = (champ_pool_config)CHAMP_POOL_CONFIG_INIT;
    const champ_allocator partial[] = {
        {NULL, bad_realloc, bad_free, NULL},
        {bad_malloc, NULL, bad_free, NULL},
        {bad_malloc, bad_realloc, NULL, NULL},
        {bad_malloc, NULL, NULL, NULL},
        {NULL, NULL, bad_free, NULL},
    };
    for (size_t i = 0; i < sizeof partial / sizeof partial[0]; i++) {
        pc.allocator = &partial[i];
        CHECK(champ_pool_new(&pc, &p) == CHAMP_EINVAL,
              "allocator %zu with NULL members accepted", i);
    }
    /* All NULL means libc. */
    champ_allocator none = {NULL, NULL, NULL, NULL};
    pc.allocator = &none;
    p = NULL;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    champ_pool_free(p);
    /* An allocator that always fails: ENOMEM (or it fails later). */
    champ_allocator failing = {bad_malloc, bad_realloc, bad_free, NULL};
    pc.allocator = &failing;
    p = NULL;
    champ_status st = champ_pool_new(&pc, &p);
    CHECK(st == CHAMP_OK || st == CHAMP_ENOMEM, "failing allocator: %s",
          th_status_name(st));
    if (st == CHAMP_OK) {
        champ_config cfg = th_kind_config(CHAMP_KEY_U64, 1, p);
        champ_map *m = NULL;
        st = champ_new(&cfg, &m);
        CHECK(st == CHAMP_ENOMEM && m == NULL,
              "map from a pool that cannot get memory: %s",
              th_status_name(st));
        champ_free(m);
    }
    champ_pool_free(p);
    champ_pool_free(NULL);
}

static void test_map_configs(void) {
    champ_map *m = BAD_JUNK_MAP;
    champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    CHECK_ST(champ_new(NULL, &m), CHAMP_EINVAL);
    CHECK(m == NULL, "champ_new(NULL cfg): *out NULL");
    CHECK_ST(champ_new(&cfg, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_new_u64(NULL), CHAMP_EINVAL);
    CHECK_ST(champ_new_bytes(NULL), CHAMP_EINVAL);
    CHECK_ST(champ_new_set_u64(NULL), CHAMP_EINVAL);
    CHECK_ST(champ_new_set_bytes(NULL), CHAMP_EINVAL);

    /* The size field: 0 is refused; a bigger struct (a newer header) is
     * fine while the bytes this library does not know are zero. */
    cfg.size = 0;
    m = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_EINVAL);
    CHECK(m == NULL, "config size 0: *out NULL");
    struct {
        champ_config c;
        uint64_t extra;
    } big;
    memset(&big, 0, sizeof big);
    big.c.size = sizeof big;
    big.c.kind = CHAMP_KEY_U64;
    m = NULL;
    CHECK_ST(champ_new(&big.c, &m), CHAMP_OK);
    if (m) {
        CHECK_ST(champ_set_u64(m, 1, NULL, NULL), CHAMP_OK);
        CHECK(champ_contains_u64(m, 1), "map from a bigger config works");
    }
    champ_free(m);
    big.extra = 1;
    m = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&big.c, &m), CHAMP_EINVAL);
    CHECK(m == NULL, "config with unknown nonzero trailing bytes: *out NULL");
    big.extra = (uint64_t)1 << 63;
    m = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&big.c, &m), CHAMP_EINVAL);
    /* A pool_config of size 0 through champ_new. */
    champ_pool_config pz = CHAMP_POOL_CONFIG_INIT;
    pz.size = 0;
    cfg = (champ_config)CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    cfg.pool_config = &pz;
    m = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_EINVAL);
    CHECK(m == NULL, "pool_config size 0: *out NULL");
    /* Both a pool and a pool_config. */
    champ_pool *pool = NULL;
    CHECK_ST(champ_pool_new(NULL, &pool), CHAMP_OK);
    pz.size = sizeof pz;
    cfg.pool = pool;
    m = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_EINVAL);
    CHECK(m == NULL, "pool and pool_config: *out NULL");
    champ_pool_free(pool);

    struct {
        const char *what;
        int kind;
        bool hash, equal, key_retain, key_release;
    } bad[] = {
        {"kind 0", 0, false, false, false, false},
        {"unknown kind", 99, false, false, false, false},
        {"negative kind", -1, false, false, false, false},
        {"generic without hash/equal", CHAMP_KEY_GENERIC, false, false, false, false},
        {"generic without hash", CHAMP_KEY_GENERIC, false, true, false, false},
        {"generic without equal", CHAMP_KEY_GENERIC, true, false, false, false},
        {"u64 with hash", CHAMP_KEY_U64, true, false, false, false},
        {"u64 with equal", CHAMP_KEY_U64, false, true, false, false},
        {"u64 with hash and equal", CHAMP_KEY_U64, true, true, false, false},
        {"bytes with hash", CHAMP_KEY_BYTES, true, false, false, false},
        {"bytes with equal", CHAMP_KEY_BYTES, false, true, false, false},
        {"u64 with key_retain", CHAMP_KEY_U64, false, false, true, false},
        {"u64 with key_release", CHAMP_KEY_U64, false, false, false, true},
        {"bytes with key callbacks", CHAMP_KEY_BYTES, false, false, true, true},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg = (champ_config)CHAMP_CONFIG_INIT((champ_key_kind)bad[i].kind);
        cfg.hash = bad[i].hash ? bad_hash : NULL;
        cfg.equal = bad[i].equal ? bad_equal : NULL;
        cfg.key_retain = bad[i].key_retain ? bad_ref : NULL;
        cfg.key_release = bad[i].key_release ? bad_ref : NULL;
        m = BAD_JUNK_MAP;
        champ_status st = champ_new(&cfg, &m);
        CHECK(st == CHAMP_EINVAL, "%s: %s", bad[i].what, th_status_name(st));
        CHECK(m == NULL, "%s: *out not NULL on error", bad[i].what);
        if (st == CHAMP_OK && m != BAD_JUNK_MAP)
            champ_free(m);
    }

    /* A bad private pool config. */
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.watermark = 2.0;
    cfg = th_kind_config(CHAMP_KEY_U64, 1, NULL);
    cfg.pool_config = &pc;
    m = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_EINVAL);
    CHECK(m == NULL, "bad pool_config: *out NULL");
    champ_allocator half = {bad_malloc, NULL, NULL, NULL};
    pc = (champ_pool_config)CHAMP_POOL_CONFIG_INIT;
    pc.allocator = &half;
    m = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_EINVAL);
    CHECK(m == NULL, "half allocator: *out NULL");

    /* Valid generic config (for contrast). */
    cfg = (champ_config)CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    cfg.hash = bad_hash;
    cfg.equal = bad_equal;
    cfg.key_retain = bad_ref;
    cfg.key_release = bad_ref;
    m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    champ_free(m);
    champ_free(NULL);
}

/* Every map function with a NULL map or NULL required outputs. */
static void test_null_arguments(void) {
    champ_map *out = BAD_JUNK_MAP;
    void *v = BAD_JUNK_VAL;
    CHECK_ST(champ_copy(NULL, &out), CHAMP_EINVAL);
    CHECK_ST(champ_clear(NULL), CHAMP_EINVAL);
    CHECK_EQ(champ_size(NULL), 0, "size of NULL");
    CHECK(champ_pool_of(NULL) == NULL, "pool_of(NULL)");
    (void)champ_kind(NULL);
    (void)champ_seed(NULL);

    champ_prior pr = th_prior_junk();
    /* Lookups: false, *val_out untouched; updates: EINVAL, *prior
     * untouched. */
    CHECK(!champ_get_u64(NULL, 1, &v), "get_u64(NULL map)");
    CHECK(!champ_contains_u64(NULL, 1), "contains_u64(NULL map)");
    CHECK_ST(champ_set_u64(NULL, 1, NULL, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_remove_u64(NULL, 1, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_pset_u64(NULL, 1, NULL, &out), CHAMP_EINVAL);
    CHECK_ST(champ_premove_u64(NULL, 1, &out), CHAMP_EINVAL);
    CHECK(!champ_get_bytes(NULL, "a", 1, &v), "get_bytes(NULL map)");
    CHECK(!champ_contains_bytes(NULL, "a", 1), "contains_bytes(NULL map)");
    CHECK_ST(champ_set_bytes(NULL, "a", 1, NULL, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_remove_bytes(NULL, "a", 1, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_pset_bytes(NULL, "a", 1, NULL, &out), CHAMP_EINVAL);
    CHECK_ST(champ_premove_bytes(NULL, "a", 1, &out), CHAMP_EINVAL);
    CHECK(!champ_get_str(NULL, "a", &v), "get_str(NULL map)");
    CHECK(!champ_contains_str(NULL, "a"), "contains_str(NULL map)");
    CHECK_ST(champ_set_str(NULL, "a", NULL, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_remove_str(NULL, "a", &pr), CHAMP_EINVAL);
    CHECK_ST(champ_pset_str(NULL, "a", NULL, &out), CHAMP_EINVAL);
    CHECK_ST(champ_premove_str(NULL, "a", &out), CHAMP_EINVAL);
    CHECK(!champ_get(NULL, "a", &v), "get(NULL map)");
    CHECK(!champ_contains(NULL, "a"), "contains(NULL map)");
    CHECK_ST(champ_set(NULL, "a", NULL, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_remove(NULL, "a", &pr), CHAMP_EINVAL);
    CHECK_ST(champ_pset(NULL, "a", NULL, &out), CHAMP_EINVAL);
    CHECK_ST(champ_premove(NULL, "a", &out), CHAMP_EINVAL);
    CHECK(v == BAD_JUNK_VAL, "*val_out untouched by lookups on NULL");
    CHECK(th_prior_untouched(&pr), "*prior untouched on EINVAL");
    CHECK(out == NULL || out == BAD_JUNK_MAP, "p-form out on EINVAL");
    out = BAD_JUNK_MAP;
    CHECK_ST(champ_new_like(NULL, &out), CHAMP_EINVAL);
    CHECK(out == NULL || out == BAD_JUNK_MAP, "new_like out on EINVAL");

    champ_iter it;
    champ_key k;
    CHECK_ST(champ_iter_init(NULL, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_iter_init(&it, NULL), CHAMP_EINVAL);
    CHECK(!champ_iter_next(NULL, &k, &v), "iter_next(NULL)");
    CHECK_EQ(champ_iter_next_n(NULL, &k, &v, 1), 0, "iter_next_n(NULL)");
    CHECK_ST(champ_iter_status(NULL), CHAMP_EINVAL);
    CHECK(v == BAD_JUNK_VAL, "*val untouched by iteration on NULL");
    CHECK_ST(champ_foreach(NULL, bad_visit, NULL), CHAMP_EINVAL);
    champ_stats s;
    champ_pool_stats ps;
    CHECK_ST(champ_stats_get(NULL, &s, sizeof s), CHAMP_EINVAL);
    CHECK_ST(champ_pool_stats_get(NULL, &ps, sizeof ps), CHAMP_EINVAL);
    CHECK_ST(champ_stats_print(NULL, stderr), CHAMP_EINVAL);
    CHECK_ST(champ_validate(NULL), CHAMP_EINVAL);
    CHECK_ST(champ_dump(NULL, stderr), CHAMP_EINVAL);
    CHECK_ST(champ_pool_fail_after(NULL, 3), CHAMP_EINVAL);

    /* A real map with NULL outputs / callbacks. */
    champ_map *m = NULL;
    champ_config cfg = th_kind_config(CHAMP_KEY_BYTES, 3, NULL);
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    if (!m)
        return;
    CHECK_ST(champ_set_str(m, "x", NULL, NULL), CHAMP_OK);
    CHECK_ST(champ_copy(m, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_new_like(m, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_pset_bytes(m, "y", 1, NULL, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_premove_bytes(m, "x", 1, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_pset_str(m, "y", NULL, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_premove_str(m, "x", NULL), CHAMP_EINVAL);
    CHECK_ST(champ_foreach(m, NULL, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_stats_get(m, NULL, sizeof s), CHAMP_EINVAL);
    CHECK_ST(champ_pool_stats_get(champ_pool_of(m), NULL, sizeof ps),
             CHAMP_EINVAL);
    /* out_size 0. */
    CHECK_ST(champ_stats_get(m, &s, 0), CHAMP_EINVAL);
    CHECK_ST(champ_pool_stats_get(champ_pool_of(m), &ps, 0), CHAMP_EINVAL);
    CHECK_ST(champ_stats_print(m, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_dump(m, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_iter_init(NULL, m), CHAMP_EINVAL);
    /* iter_next_n with cap 0: nothing, status EINVAL. */
    CHECK_ST(champ_iter_init(&it, m), CHAMP_OK);
    k.len = 99;
    CHECK_EQ(champ_iter_next_n(&it, &k, &v, 0), 0,
             "iter_next_n with cap 0 hands out nothing");
    CHECK_ST(champ_iter_status(&it), CHAMP_EINVAL);
    CHECK(k.len == 99 && v == BAD_JUNK_VAL, "cap 0: outputs untouched");
    /* key NULL with a nonzero length; _str with NULL. */
    CHECK(!champ_get_bytes(m, NULL, 3, &v), "get_bytes(NULL, 3)");
    CHECK(!champ_contains_bytes(m, NULL, 3), "contains_bytes(NULL, 3)");
    CHECK_ST(champ_set_bytes(m, NULL, 3, NULL, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_remove_bytes(m, NULL, 3, &pr), CHAMP_EINVAL);
    out = BAD_JUNK_MAP;
    CHECK_ST(champ_pset_bytes(m, NULL, 3, NULL, &out), CHAMP_EINVAL);
    CHECK(out == NULL, "pset_bytes(NULL key): *out NULL");
    out = BAD_JUNK_MAP;
    CHECK_ST(champ_premove_bytes(m, NULL, 3, &out), CHAMP_EINVAL);
    CHECK(out == NULL, "premove_bytes(NULL key): *out NULL");
    CHECK(!champ_get_str(m, NULL, &v), "get_str(NULL)");
    CHECK(!champ_contains_str(m, NULL), "contains_str(NULL)");
    CHECK_ST(champ_set_str(m, NULL, NULL, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_remove_str(m, NULL, &pr), CHAMP_EINVAL);
    out = BAD_JUNK_MAP;
    CHECK_ST(champ_pset_str(m, NULL, NULL, &out), CHAMP_EINVAL);
    CHECK(out == NULL, "pset_str(NULL key): *out NULL");
    out = BAD_JUNK_MAP;
    CHECK_ST(champ_premove_str(m, NULL, &out), CHAMP_EINVAL);
    CHECK(out == NULL, "premove_str(NULL key): *out NULL");
    CHECK(v == BAD_JUNK_VAL, "*val_out untouched by invalid keys");
    CHECK(th_prior_untouched(&pr), "*prior untouched on EINVAL");
    CHECK_EQ(champ_size(m), 1, "map unchanged by bad calls");
    CHECK_VALID(m, "after bad calls");
    champ_free(m);
}

/* Key-kind functions on maps of the other kinds: CHAMP_EKIND. */
static void test_wrong_kinds(void) {
    champ_map *maps[3] = {NULL, NULL, NULL};
    champ_config cu = th_kind_config(CHAMP_KEY_U64, 1, NULL);
    champ_config cb = th_kind_config(CHAMP_KEY_BYTES, 1, NULL);
    champ_config cg = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    cg.hash = bad_hash;
    cg.equal = bad_equal;
    CHECK_ST(champ_new(&cu, &maps[0]), CHAMP_OK);
    CHECK_ST(champ_new(&cb, &maps[1]), CHAMP_OK);
    CHECK_ST(champ_new(&cg, &maps[2]), CHAMP_OK);
    if (!maps[0] || !maps[1] || !maps[2])
        goto done;
    CHECK_ST(champ_set_u64(maps[0], 1, NULL, NULL), CHAMP_OK);
    CHECK_ST(champ_set_str(maps[1], "a", NULL, NULL), CHAMP_OK);
    CHECK_ST(champ_set(maps[2], "a", NULL, NULL), CHAMP_OK);
    for (int kind = 0; kind < 3; kind++) {
        champ_map *m = maps[kind];
        void *v = BAD_JUNK_VAL;
        champ_prior pr = th_prior_junk();
        champ_map *out;
        const char *kn = kind == 0 ? "u64" : kind == 1 ? "bytes" : "generic";
#define BAD_EKIND(call)                                                   \
    do {                                                                  \
        out = BAD_JUNK_MAP;                                               \
        champ_status st_ = (call);                                        \
        CHECK(st_ == CHAMP_EKIND, "%s on a %s map: %s", #call, kn,        \
              th_status_name(st_));                                       \
    } while (0)
#define BAD_EKIND_OUT(call)                                               \
    do {                                                                  \
        BAD_EKIND(call);                                                  \
        CHECK(out == NULL, "%s on a %s map: *out not NULL", #call, kn);   \
    } while (0)
/* A lookup on a map of another kind: false. */
#define BAD_LOOKUP(call)                                                  \
    CHECK(!(call), "%s on a %s map returned true", #call, kn)
        bool added = true, fnd[2] = {true, true};
        void **slot = (void **)BAD_JUNK_VAL;
        uint64_t uk[2] = {1, 2};
        const void *pk[2] = {"a", "b"};
        size_t lens[2] = {1, 1};
        if (kind != 0) {
            BAD_LOOKUP(champ_get_u64(m, 1, &v));
            BAD_LOOKUP(champ_contains_u64(m, 1));
            BAD_EKIND(champ_add_u64(m, 1, &added));
            BAD_EKIND(champ_upsert_u64(m, 1, &slot, NULL));
            BAD_EKIND(champ_update_u64(m, 1, bad_update, NULL));
            BAD_LOOKUP(champ_get_many_u64(m, uk, 2, NULL, fnd));
            CHECK(!fnd[0] && !fnd[1], "get_many_u64 on a %s map: found[] cleared", kn);
            fnd[0] = fnd[1] = true;
            BAD_LOOKUP(champ_contains_many_u64(m, uk, 2, fnd));
            CHECK(!fnd[0] && !fnd[1], "contains_many_u64 on a %s map: found[] cleared", kn);
            BAD_EKIND(champ_set_u64(m, 1, NULL, &pr));
            BAD_EKIND(champ_remove_u64(m, 1, &pr));
            BAD_EKIND_OUT(champ_pset_u64(m, 1, NULL, &out));
            BAD_EKIND_OUT(champ_premove_u64(m, 1, &out));
        }
        if (kind != 1) {
            BAD_LOOKUP(champ_get_bytes(m, "a", 1, &v));
            BAD_LOOKUP(champ_contains_bytes(m, "a", 1));
            BAD_EKIND(champ_set_bytes(m, "a", 1, NULL, &pr));
            BAD_EKIND(champ_remove_bytes(m, "a", 1, &pr));
            BAD_EKIND_OUT(champ_pset_bytes(m, "a", 1, NULL, &out));
            BAD_EKIND_OUT(champ_premove_bytes(m, "a", 1, &out));
            BAD_LOOKUP(champ_get_str(m, "a", &v));
            BAD_LOOKUP(champ_contains_str(m, "a"));
            BAD_EKIND(champ_set_str(m, "a", NULL, &pr));
            BAD_EKIND(champ_remove_str(m, "a", &pr));
            BAD_EKIND_OUT(champ_pset_str(m, "a", NULL, &out));
            BAD_EKIND_OUT(champ_premove_str(m, "a", &out));
            BAD_EKIND(champ_add_bytes(m, "a", 1, &added));
            BAD_EKIND(champ_add_str(m, "a", &added));
            BAD_EKIND(champ_upsert_bytes(m, "a", 1, &slot, NULL));
            BAD_EKIND(champ_update_bytes(m, "a", 1, bad_update, NULL));
            fnd[0] = fnd[1] = true;
            BAD_LOOKUP(champ_get_many_bytes(m, pk, lens, 2, NULL, fnd));
            CHECK(!fnd[0] && !fnd[1], "get_many_bytes on a %s map: found[] cleared", kn);
            fnd[0] = fnd[1] = true;
            BAD_LOOKUP(champ_contains_many_bytes(m, pk, lens, 2, fnd));
            CHECK(!fnd[0] && !fnd[1], "contains_many_bytes on a %s map: found[] cleared", kn);
        }
        if (kind != 2) {
            BAD_LOOKUP(champ_get(m, "a", &v));
            BAD_LOOKUP(champ_contains(m, "a"));
            BAD_EKIND(champ_set(m, "a", NULL, &pr));
            BAD_EKIND(champ_remove(m, "a", &pr));
            BAD_EKIND_OUT(champ_pset(m, "a", NULL, &out));
            BAD_EKIND_OUT(champ_premove(m, "a", &out));
            BAD_EKIND(champ_add(m, "a", &added));
            BAD_EKIND(champ_upsert(m, "a", &slot, NULL));
            BAD_EKIND(champ_update(m, "a", bad_update, NULL));
            fnd[0] = fnd[1] = true;
            BAD_LOOKUP(champ_get_many(m, pk, 2, NULL, fnd));
            CHECK(!fnd[0] && !fnd[1], "get_many on a %s map: found[] cleared", kn);
            fnd[0] = fnd[1] = true;
            BAD_LOOKUP(champ_contains_many(m, pk, 2, fnd));
            CHECK(!fnd[0] && !fnd[1], "contains_many on a %s map: found[] cleared", kn);
        }
        CHECK(slot == (void **)BAD_JUNK_VAL, "%s map: *slot untouched by wrong-kind upserts", kn);
#undef BAD_EKIND
#undef BAD_EKIND_OUT
#undef BAD_LOOKUP
        CHECK(v == BAD_JUNK_VAL && th_prior_untouched(&pr),
              "%s map: outputs touched by wrong-kind calls", kn);
        CHECK_EQ(champ_size(m), 1, kn);
        CHECK_VALID(m, kn);
    }
done:
    for (int i = 0; i < 3; i++)
        champ_free(maps[i]);
}

/* Release callbacks without retain callbacks: copy and p-forms refuse. */
static void test_release_without_retain(void) {
    for (int which = 0; which < 3; which++) {
        champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
        cfg.hash = bad_hash;
        cfg.equal = bad_equal;
        if (which == 0) {
            cfg.val_release = bad_ref;
        } else if (which == 1) {
            cfg.key_release = bad_ref;
        } else {
            cfg.key_release = bad_ref;
            cfg.val_release = bad_ref;
            cfg.val_retain = bad_ref;
        }
        champ_map *m = NULL, *out;
        CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
        if (!m)
            continue;
        static char keys[4];
        for (int i = 0; i < 4; i++)
            CHECK_ST(champ_set(m, &keys[i], NULL, NULL), CHAMP_OK);
        out = BAD_JUNK_MAP;
        CHECK_ST(champ_copy(m, &out), CHAMP_EINVAL);
        CHECK(out == NULL, "copy: *out NULL on EINVAL");
        out = BAD_JUNK_MAP;
        CHECK_ST(champ_pset(m, &keys[0], NULL, &out), CHAMP_EINVAL);
        CHECK(out == NULL, "pset: *out NULL on EINVAL");
        out = BAD_JUNK_MAP;
        CHECK_ST(champ_premove(m, &keys[1], &out), CHAMP_EINVAL);
        CHECK(out == NULL, "premove: *out NULL on EINVAL");
        CHECK_EQ(champ_size(m), 4, "map unchanged");
        CHECK_VALID(m, "release without retain");
        /* In-place updates stay allowed. */
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_remove(m, &keys[1], &pr), CHAMP_OK);
        CHECK(pr.found && pr.key == &keys[1], "in-place remove");
        pr = th_prior_junk();
        CHECK_ST(champ_set(m, &keys[0], NULL, &pr), CHAMP_OK);
        CHECK(pr.found, "in-place replace");
        CHECK_ST(champ_remove(m, &keys[2], NULL), CHAMP_OK);
        CHECK_ST(champ_set(m, &keys[3], &keys[3], NULL), CHAMP_OK);
        CHECK_EQ(champ_size(m), 2, "in-place updates");
        champ_free(m);
    }
    /* A U64 map with val_release only. */
    champ_config cu = th_kind_config(CHAMP_KEY_U64, 1, NULL);
    cu.val_release = bad_ref;
    champ_map *u = NULL, *out = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&cu, &u), CHAMP_OK);
    if (u) {
        CHECK_ST(champ_pset_u64(u, 1, NULL, &out), CHAMP_EINVAL);
        CHECK(out == NULL, "pset_u64: *out NULL on EINVAL");
        champ_prior pr = th_prior_junk();
        CHECK_ST(champ_set_u64(u, 1, NULL, &pr), CHAMP_OK);
        CHECK(!pr.found, "in-place insert");
        champ_free(u);
    }
}

/* champ_pool_fail_after exists in test builds only. */
/* The calls that make a map (p-forms of u64 and generic maps) with a NULL
 * out, add_str with a NULL key, and every cell call with NULL arguments or
 * on an empty cell: each returns its documented status, outputs as
 * documented, nothing changed. */
static void test_null_outputs_and_cells(void) {
    champ_map *um = NULL, *gm = NULL, *out = BAD_JUNK_MAP;
    champ_config uc = th_kind_config(CHAMP_KEY_U64, 4, NULL);
    CHECK_ST(champ_new(&uc, &um), CHAMP_OK);
    champ_config gc = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    gc.hash = bad_hash;
    gc.equal = bad_equal;
    CHECK_ST(champ_new(&gc, &gm), CHAMP_OK);
    champ_map *sm = NULL;
    CHECK_ST(champ_new_set_bytes(&sm), CHAMP_OK);
    if (!um || !gm || !sm) {
        champ_free(um);
        champ_free(gm);
        champ_free(sm);
        return;
    }
    CHECK_ST(champ_set_u64(um, 1, th_tok(1), NULL), CHAMP_OK);
    CHECK_ST(champ_set(gm, th_tok(2), th_tok(2), NULL), CHAMP_OK);
    CHECK_ST(champ_pset_u64(um, 2, NULL, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_premove_u64(um, 1, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_pset(gm, th_tok(3), NULL, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_premove(gm, th_tok(2), NULL), CHAMP_EINVAL);
    bool added = true;
    CHECK_ST(champ_add_str(sm, NULL, &added), CHAMP_EINVAL);
    CHECK_EQ(champ_size(um), 1, "u64 map unchanged");
    CHECK_EQ(champ_size(gm), 1, "generic map unchanged");
    CHECK_EQ(champ_size(sm), 0, "set unchanged");

    /* cells */
    champ_cell *c = (champ_cell *)th_tok(0xce11);
    CHECK_ST(champ_cell_new(um, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_cell_new(NULL, NULL), CHAMP_EINVAL);
    champ_cell_free(NULL); /* no-op */
    CHECK_ST(champ_cell_load(NULL, &out), CHAMP_EINVAL);
    CHECK(out == NULL, "cell_load(NULL cell): *out NULL");
    CHECK_ST(champ_cell_store(NULL, um), CHAMP_EINVAL);
    bool swapped = true;
    CHECK_ST(champ_cell_cas(NULL, NULL, um, &swapped), CHAMP_EINVAL);
    c = NULL;
    CHECK_ST(champ_cell_new(NULL, &c), CHAMP_OK);
    if (c) {
        CHECK_ST(champ_cell_load(c, NULL), CHAMP_EINVAL);
        out = BAD_JUNK_MAP;
        CHECK_ST(champ_cell_load(c, &out), CHAMP_OK);
        CHECK(out == NULL, "an empty cell's load: CHAMP_OK and *out NULL");
        CHECK_ST(champ_cell_store(c, NULL), CHAMP_EINVAL);
        CHECK_ST(champ_cell_cas(c, NULL, NULL, &swapped), CHAMP_EINVAL);
        /* still empty: a cas expecting the empty cell swaps */
        swapped = false;
        CHECK_ST(champ_cell_cas(c, NULL, um, &swapped), CHAMP_OK);
        CHECK(swapped, "cas of an empty cell, expected NULL: swapped");
        /* the type is set: a map of another type is refused */
        CHECK_ST(champ_cell_store(c, gm), CHAMP_EPOOL);
        CHECK_ST(champ_cell_cas(c, NULL, gm, &swapped), CHAMP_EPOOL);
        /* expected NULL no longer matches; swapped may be NULL */
        CHECK_ST(champ_cell_cas(c, NULL, um, NULL), CHAMP_OK);
        CHECK_ST(champ_cell_cas(c, NULL, um, &swapped), CHAMP_OK);
        CHECK(!swapped, "cas expecting an empty cell that holds a version");
        out = NULL;
        CHECK_ST(champ_cell_load(c, &out), CHAMP_OK);
        CHECK(out && champ_size(out) == 1 && champ_contains_u64(out, 1),
              "the cell holds the version stored");
        champ_free(out);
        champ_cell_free(c);
    }
    champ_free(um);
    champ_free(gm);
    champ_free(sm);
}

/* The update forms the null/kind tests above began without: add, upsert,
 * update and the batched lookups on a NULL map; NULL byte keys with a
 * length; byte keys of 2^32 bytes or more ("len < 2^32": each call
 * refuses before it reads the key); champ_apply with more than
 * UINT32_MAX - 1 updates; champ_kind(NULL); a pool config whose size is
 * short but not 0. */
static void test_more_misuse(void) {
    bool added = false, fnd[2] = {true, true};
    void **slot = (void **)BAD_JUNK_VAL;
    uint64_t uk[2] = {1, 2};
    const void *pk[2] = {"a", "b"};
    size_t lens[2] = {1, 1};
    CHECK_ST(champ_add_u64(NULL, 1, &added), CHAMP_EINVAL);
    CHECK_ST(champ_add_bytes(NULL, "a", 1, &added), CHAMP_EINVAL);
    CHECK_ST(champ_add_str(NULL, "a", &added), CHAMP_EINVAL);
    CHECK_ST(champ_add(NULL, "a", &added), CHAMP_EINVAL);
    CHECK_ST(champ_upsert_u64(NULL, 1, &slot, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_upsert_bytes(NULL, "a", 1, &slot, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_upsert(NULL, "a", &slot, NULL), CHAMP_EINVAL);
    CHECK(slot == (void **)BAD_JUNK_VAL, "*slot untouched on a NULL map");
    CHECK_ST(champ_update_u64(NULL, 1, bad_update, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_update_bytes(NULL, "a", 1, bad_update, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_update(NULL, "a", bad_update, NULL), CHAMP_EINVAL);
    CHECK_EQ(champ_get_many_bytes(NULL, pk, lens, 2, NULL, fnd), 0, "get_many_bytes(NULL)");
    CHECK(!fnd[0] && !fnd[1], "get_many_bytes(NULL map): found[] cleared");
    fnd[0] = fnd[1] = true;
    CHECK_EQ(champ_get_many(NULL, pk, 2, NULL, fnd), 0, "get_many(NULL)");
    CHECK(!fnd[0] && !fnd[1], "get_many(NULL map): found[] cleared");
    fnd[0] = fnd[1] = true;
    CHECK_EQ(champ_contains_many(NULL, pk, 2, fnd), 0, "contains_many(NULL)");
    CHECK(!fnd[0] && !fnd[1], "contains_many(NULL map): found[] cleared");
    fnd[0] = fnd[1] = true;
    CHECK_EQ(champ_contains_many_u64(NULL, uk, 2, fnd), 0, "contains_many_u64(NULL)");
    CHECK(!fnd[0] && !fnd[1], "contains_many_u64(NULL map): found[] cleared");
    CHECK_EQ((int)champ_kind(NULL), 0, "champ_kind(NULL) is 0");

    champ_map *m = NULL, *out = BAD_JUNK_MAP;
    champ_config cb = th_kind_config(CHAMP_KEY_BYTES, 8, NULL);
    CHECK_ST(champ_new(&cb, &m), CHAMP_OK);
    if (!m)
        return;
    CHECK_ST(champ_set_str(m, "a", th_tok(1), NULL), CHAMP_OK);
    /* a NULL key with a length */
    CHECK_ST(champ_add_bytes(m, NULL, 3, &added), CHAMP_EINVAL);
    CHECK_ST(champ_upsert_bytes(m, NULL, 3, &slot, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_update_bytes(m, NULL, 3, bad_update, NULL), CHAMP_EINVAL);
    /* 2^32 bytes: refused before the key is read (the buffer is 2 bytes) */
    static const char two[2] = "a";
    size_t big = (size_t)UINT32_MAX + 1;
    void *v = BAD_JUNK_VAL;
    champ_prior pr = th_prior_junk();
    CHECK(!champ_get_bytes(m, two, big, &v), "get_bytes of a 2^32-byte key");
    CHECK(!champ_contains_bytes(m, two, big), "contains_bytes of a 2^32-byte key");
    CHECK_ST(champ_set_bytes(m, two, big, NULL, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_remove_bytes(m, two, big, &pr), CHAMP_EINVAL);
    CHECK_ST(champ_add_bytes(m, two, big, &added), CHAMP_EINVAL);
    CHECK_ST(champ_upsert_bytes(m, two, big, &slot, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_update_bytes(m, two, big, bad_update, NULL), CHAMP_EINVAL);
    CHECK_ST(champ_pset_bytes(m, two, big, NULL, &out), CHAMP_EINVAL);
    CHECK(out == NULL, "pset_bytes of a 2^32-byte key: *out NULL");
    out = BAD_JUNK_MAP;
    CHECK_ST(champ_premove_bytes(m, two, big, &out), CHAMP_EINVAL);
    CHECK(out == NULL, "premove_bytes of a 2^32-byte key: *out NULL");
    const void *bk[2] = {two, "a"};
    size_t bl[2] = {big, 1};
    fnd[0] = true;
    fnd[1] = false;
    size_t got = champ_get_many_bytes(m, bk, bl, 2, NULL, fnd);
    CHECK(got == 0 && !fnd[0] && !fnd[1],
          "a batch with a 2^32-byte key finds nothing (%zu found)", got);
    CHECK(v == BAD_JUNK_VAL && th_prior_untouched(&pr) && slot == (void **)BAD_JUNK_VAL,
          "outputs untouched by 2^32-byte keys");
    CHECK_EQ(champ_size(m), 1, "the map unchanged by long keys");
    CHECK(champ_contains_str(m, "a"), "its key still there");
    CHECK_VALID(m, "after long keys");
    champ_free(m);

    /* champ_apply: n at most UINT32_MAX - 1 (checked before ops is read) */
    m = NULL;
    champ_config cu = th_kind_config(CHAMP_KEY_U64, 9, NULL);
    CHECK_ST(champ_new(&cu, &m), CHAMP_OK);
    if (m) {
        champ_op op;
        memset(&op, 0, sizeof op);
        CHECK_ST(champ_apply(m, &op, (size_t)UINT32_MAX), CHAMP_EINVAL);
        CHECK_EQ(champ_size(m), 0, "apply refused: the map unchanged");
        champ_free(m);
    }

    /* a pool config with a short nonzero size */
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.size = sizeof pc - 1;
    champ_pool *p = (champ_pool *)th_tok(0xb00);
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_EINVAL);
    CHECK(p == NULL, "short pool config: no pool");
}

static void test_fail_after_hook(void) {
    champ_pool *p = NULL;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    if (!p)
        return;
#if TH_FAULTS
    CHECK_ST(champ_pool_fail_after(p, 0), CHAMP_OK);
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 1, p);
    champ_map *m = BAD_JUNK_MAP;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_ENOMEM);
    CHECK(m == NULL, "champ_new ENOMEM: *out NULL");
    CHECK_ST(champ_pool_fail_after(p, -1), CHAMP_OK);
    m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    /* n > 0: exactly n more allocations succeed, then every one fails
     * (counted by the pool's allocation counters when they are on, and
     * by its failure count, which is always on) */
    champ_pool_stats ps;
    for (long n = 1; n <= 6 && m; n++) {
        CHECK_ST(champ_pool_stats_get(p, &ps, sizeof ps), CHAMP_OK);
        uint64_t a0 = ps.allocs, f0 = ps.alloc_failures;
        CHECK_ST(champ_pool_fail_after(p, n), CHAMP_OK);
        champ_status st = CHAMP_OK;
        for (uint64_t k = 0; k < 100000 && st == CHAMP_OK; k++)
            st = champ_set_u64(m, 1000000 * (uint64_t)n + k, NULL, NULL);
        CHECK_ST(st, CHAMP_ENOMEM);
        /* and every later one: 500 more keys, each either placed without
         * a new block or refused */
        uint64_t refused = 1;
        for (uint64_t k = 0; k < 500; k++)
            refused += champ_set_u64(m, 900000000 + 7 * k, NULL, NULL) == CHAMP_ENOMEM;
        CHECK(refused > 1, "fail_after(%ld): later allocations fail too", n);
        CHECK_ST(champ_pool_stats_get(p, &ps, sizeof ps), CHAMP_OK);
        if (ps.counters_enabled)
            CHECK(ps.allocs - a0 == (uint64_t)n,
                  "fail_after(%ld): %llu allocations succeeded", n,
                  (unsigned long long)(ps.allocs - a0));
        CHECK(ps.alloc_failures - f0 == refused,
              "fail_after(%ld): %llu failures counted for %llu refused updates", n,
              (unsigned long long)(ps.alloc_failures - f0), (unsigned long long)refused);
        CHECK_ST(champ_pool_fail_after(p, -1), CHAMP_OK);
        CHECK_VALID(m, "after fail_after");
    }
    champ_free(m);
#else
    CHECK_ST(champ_pool_fail_after(p, 0), CHAMP_EUNSUPPORTED);
#endif
    champ_pool_free(p);
}

const th_test th_tests_badinput[] = {
    {"badinput.strerror", test_strerror},
    {"badinput.pool_configs", test_pool_configs},
    {"badinput.map_configs", test_map_configs},
    {"badinput.null_arguments", test_null_arguments},
    {"badinput.wrong_kinds", test_wrong_kinds},
    {"badinput.release_without_retain", test_release_without_retain},
    {"badinput.fail_after_hook", test_fail_after_hook},
    {"badinput.null_outputs_and_cells", test_null_outputs_and_cells},
    {"badinput.more_misuse", test_more_misuse},
};
const size_t th_tests_badinput_count =
    sizeof th_tests_badinput / sizeof th_tests_badinput[0];

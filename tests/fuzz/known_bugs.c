/*
 * known_bugs.c - minimal reproductions of the library bugs the fuzzer
 * found, now regression tests (all three are fixed; a failure means one is
 * back).  Built twice with ASan + UBSan, with -DCHAMP_DEBUG (KB_LEVEL 1:
 * the KB1 and KB3 cases) and -DCHAMP_DEBUG=2 -DKB_LEVEL=2 (the KB2 case);
 * each case runs in a child process (a crash counts as one failure).  Run
 * by make test (tests/run.sh), and by make known-bugs with the fuzz inputs
 * that found them (tests/fuzz/known-bugs/, also in the corpus).
 *
 * KB1 champ_copy / champ_new_like / the copy step of a p-form allocate the
 *     new handle without an operation frame on the source m, so the pool's
 *     watermark callback, which runs inside that allocation, is outside the
 *     callback contract of champ.h (copy derives a new map from m: a read of
 *     m, during which free m is deferred and update m is CHAMP_EBUSY):
 *       kb1_free:   the watermark frees m -> freed at once, then map_handle
 *                   reads the freed type (use-after-poison with ASan);
 *       kb1_update: the watermark sets a key in m -> CHAMP_OK, not
 *                   CHAMP_EBUSY, and the copy keeps the root read before the
 *                   update (freed when the update outgrew it).
 * KB2 CHAMP_DEBUG=2 validates the whole pool after every update, also after
 *     an update made from a callback of another operation (allowed by the
 *     contract): the outer operation is mid-way (a free dropping nodes, an
 *     update with retained but unlinked children), so validate fails and the
 *     build aborts on a correct program.
 *       kb2_release_updates_other: champ_free(A) whose val_release sets a key
 *                   in another map B.
 * KB3 In an arena pool a bitmap node that grew past 1040 bytes with its
 *     growth room lives in a power-of-two "large" block.  A remove from it
 *     that cannot allocate (the remove's "pool short of memory" path) shrinks
 *     it in place and frees its tail as a small block: the node's block is
 *     then recorded below 1040 bytes, so the rest of the power of two never
 *     comes back.
 *       kb3_remove_under_enomem: 64 generic keys hashed id % 64 (a root of 32
 *                   pairs, 1040 bytes + growth room = a 2048-byte block),
 *                   champ_pool_fail_after(p, 0), then removes: validate fails
 *                   ("pool live bytes 1592 but the live maps use 712") and
 *                   after champ_free the pool keeps 880 live bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "champ.h"

static int failures;

#define EXPECT(cond, ...)                                                 \
    do {                                                                  \
        if (!(cond)) {                                                    \
            printf("    expected %s: ", #cond);                           \
            printf(__VA_ARGS__);                                          \
            printf("\n");                                                 \
            failures++;                                                   \
        }                                                                 \
    } while (0)

static size_t live_bytes(champ_pool *p, size_t *maps) {
    champ_pool_stats ps;
    champ_pool_stats_get(p, &ps, sizeof ps);
    if (maps)
        *maps = ps.maps;
    return ps.bytes_live;
}

/* ---- KB1 -------------------------------------------------------------- */

static champ_map *kb1_m;
static int kb1_mode; /* 0 free m, 1 set in m */
static int kb1_fired;
static champ_status kb1_set_status;

static void kb1_watermark(champ_pool *p, size_t live, size_t cap, void *ctx) {
    (void)p;
    (void)live;
    (void)cap;
    (void)ctx;
    if (kb1_fired++ || !kb1_m)
        return; /* calibration, or fired already */
    if (kb1_mode == 0) {
        champ_free(kb1_m); /* contract: deferred to the end of the copy */
    } else {
        kb1_set_status = champ_set_u64(kb1_m, 1000, NULL, NULL); /* contract: EBUSY */
        for (uint64_t k = 1001; k < 1040 && kb1_set_status == CHAMP_OK; k++)
            champ_set_u64(kb1_m, k, NULL, NULL); /* outgrow the root */
    }
}

static _Alignas(16) unsigned char kb1_buf[1 << 16];

/* A fixed-buffer pool with a watermark at 0.5 holding m (10 keys, the only
 * map of its type), a filler map and n more handles of the filler's type. */
static champ_pool *kb1_setup(size_t n, champ_map **m, champ_map **filler, champ_map **fill) {
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.buffer = kb1_buf;
    pc.buffer_size = sizeof kb1_buf;
    pc.watermark = 0.5;
    pc.on_watermark = kb1_watermark;
    champ_pool *pool = NULL;
    if (champ_pool_new(&pc, &pool) != CHAMP_OK)
        abort();
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    c.pool = pool;
    c.fixed_seed = true;
    champ_new(&c, m);
    for (uint64_t k = 0; k < 10; k++)
        champ_set_u64(*m, k, NULL, NULL);
    champ_new(&c, filler);
    for (size_t i = 0; i < n; i++)
        champ_new_like(*filler, &fill[i]);
    return pool;
}

static void kb1_teardown(champ_pool *pool, champ_map *filler, champ_map **fill, size_t n) {
    for (size_t i = 0; i < n; i++)
        champ_free(fill[i]);
    champ_free(filler);
    size_t maps;
    EXPECT(live_bytes(pool, &maps) == 0 && maps == 0, "pool empty at the end");
    champ_pool_free(pool);
}

static void kb1(int mode) {
    static champ_map *fill[8192];
    champ_map *m = NULL, *filler = NULL, *copy = NULL;
    /* calibration: how many handles until the watermark fires */
    kb1_m = NULL;
    kb1_fired = 0;
    champ_pool *pool = kb1_setup(0, &m, &filler, fill);
    size_t n = 0;
    while (!kb1_fired && n < 8192)
        champ_new_like(filler, &fill[n++]);
    champ_free(m);
    kb1_teardown(pool, filler, fill, n);
    if (!kb1_fired) {
        EXPECT(0, "calibration: the watermark never fired");
        return;
    }
    /* the same with one handle fewer: champ_copy(m) makes the one that
     * crosses the mark */
    kb1_fired = 0;
    pool = kb1_setup(n - 1, &m, &filler, fill);
    kb1_mode = mode;
    kb1_m = m;
    kb1_set_status = CHAMP_OK;
    champ_status st = champ_copy(m, &copy);
    kb1_m = NULL;
    EXPECT(kb1_fired == 1, "the watermark fired during champ_copy(m) (%d)", kb1_fired);
    EXPECT(st == CHAMP_OK, "champ_copy: %d", (int)st);
    if (copy) {
        EXPECT(champ_size(copy) == 10, "the copy has m's 10 entries, has %zu",
               champ_size(copy));
        EXPECT(champ_validate(copy) == CHAMP_OK, "the copy validates");
    }
    size_t maps;
    live_bytes(pool, &maps);
    if (mode == 0) {
        EXPECT(maps == 2 + (n - 1), "m freed once the copy returned: %zu maps, want %zu",
               maps, 2 + (n - 1));
    } else {
        EXPECT(kb1_set_status == CHAMP_EBUSY,
               "set m from the watermark of champ_copy(m): status %d, want CHAMP_EBUSY (%d)",
               (int)kb1_set_status, (int)CHAMP_EBUSY);
        EXPECT(champ_size(m) == 10, "m unchanged: %zu entries", champ_size(m));
        champ_free(m);
    }
    champ_free(copy);
    kb1_teardown(pool, filler, fill, n - 1);
}

static void kb1_free(void) { kb1(0); }
static void kb1_update(void) { kb1(1); }

/* ---- KB2 -------------------------------------------------------------- */

static champ_map *kb2_b;
static void kb2_retain(void *p, void *ctx) {
    (void)p;
    (void)ctx;
}
static void kb2_release(void *p, void *ctx) {
    (void)ctx;
    /* allowed: update another map from a callback of free(A) */
    champ_set_u64(kb2_b, (uint64_t)(uintptr_t)p, NULL, NULL);
}

static void kb2_release_updates_other(void) {
    champ_pool *pool = NULL;
    champ_pool_new(NULL, &pool);
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    c.pool = pool;
    champ_map *b = NULL;
    champ_new(&c, &b);
    c.val_retain = kb2_retain;
    c.val_release = kb2_release;
    champ_map *a = NULL;
    champ_new(&c, &a);
    for (uintptr_t k = 1; k <= 100; k++)
        champ_set_u64(a, k, (void *)k, NULL);
    kb2_b = b;
    champ_free(a); /* CHAMP_DEBUG=2: validate inside B's set aborts */
    EXPECT(champ_size(b) == 100, "B got a key per released value: %zu", champ_size(b));
    EXPECT(champ_validate(b) == CHAMP_OK, "B validates");
    champ_free(b);
    EXPECT(live_bytes(pool, NULL) == 0, "pool empty");
    champ_pool_free(pool);
}

/* ---- KB3 -------------------------------------------------------------- */

static uint64_t kb3_hash(const void *k, void *ctx) {
    (void)ctx;
    return (uint64_t)(uintptr_t)k % 64;
}
static bool kb3_equal(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return a == b;
}

static void kb3_remove_under_enomem(void) {
    champ_pool *pool = NULL;
    champ_pool_new(NULL, &pool);
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
    c.hash = kb3_hash;
    c.equal = kb3_equal;
    c.pool = pool;
    champ_map *m = NULL;
    champ_new(&c, &m);
    for (uintptr_t k = 1; k <= 64; k++)
        champ_set(m, (void *)k, NULL, NULL); /* the root: 32 pairs */
    champ_pool_fail_after(pool, 0);          /* every allocation fails */
    int bad_at = 0;
    for (uintptr_t k = 1; k <= 64; k++) {
        champ_status st = champ_remove(m, (void *)k, NULL); /* owned: always succeeds */
        EXPECT(st == CHAMP_OK, "remove %lu: %d", (unsigned long)k, (int)st);
        if (!bad_at && champ_validate(m) != CHAMP_OK)
            bad_at = (int)k;
    }
    EXPECT(bad_at == 0, "the map validates after every remove (first failure after remove %d)",
           bad_at);
    EXPECT(champ_size(m) == 0, "drained: %zu entries left", champ_size(m));
    champ_pool_fail_after(pool, -1);
    champ_free(m);
    size_t maps, live = live_bytes(pool, &maps);
    EXPECT(live == 0 && maps == 0, "pool empty after champ_free: %zu live bytes, %zu maps", live,
           maps);
    champ_pool_free(pool);
}

/* ---- runner ----------------------------------------------------------- */

#ifndef KB_LEVEL
#define KB_LEVEL 1
#endif

/* level: the CHAMP_DEBUG level the case is built at. */
static const struct {
    int level;
    const char *name;
    void (*run)(void);
} cases[] = {
    {1, "KB1 kb1_free (watermark frees m during champ_copy(m))", kb1_free},
    {1, "KB1 kb1_update (watermark sets a key in m during champ_copy(m))", kb1_update},
    {2, "KB2 kb2_release_updates_other (CHAMP_DEBUG=2, update from a release callback)",
     kb2_release_updates_other},
    {1, "KB3 kb3_remove_under_enomem (in-place remove of a large-block node leaks)",
     kb3_remove_under_enomem},
};

int main(void) {
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].level != KB_LEVEL)
            continue;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            cases[i].run();
            fflush(stdout);
            _exit(failures ? 1 : 0);
        }
        int ws = 0;
        waitpid(pid, &ws, 0);
        int ok = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
        printf("%s %s%s\n", ok ? "ok  " : "FAIL", cases[i].name,
               ok ? "" : WIFSIGNALED(ws) ? " (crashed)" : "");
        if (ok)
            passed++;
        else
            failed++;
    }
    printf("known bugs: a failure is a bug not fixed yet (tests/fuzz/known_bugs.c)\n");
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

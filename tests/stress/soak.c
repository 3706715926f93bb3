/*
 * soak.c - a long mixed workload on an optimised build.
 *
 *   soak [OPS]        (default 100,000,000; `make soak SOAK_OPS=N`)
 *
 * Three worlds, one per key kind (U64; BYTES of 8..23 bytes; GENERIC with a
 * weak 40-bit hash and counted key references), each a pool with 64 map
 * slots over a universe of 131072 keys.  Operations, spread over the worlds
 * at random and half of them over the 4 hot slots (the rest over all 64):
 * set and remove in place (half of them reporting a champ_prior), get,
 * contains, pset / premove / copy from one slot into another (the target, a
 * cold slot or now and then hot slot 1..3, freed first), free (cold slots),
 * clear (rarely).  The hot versions grow to tens of thousands of entries
 * and share nodes with the cold ones derived from them.
 *
 * Checked as it runs: slot 0 of every world is the tracked slot: it is only
 * changed in place (and cleared), and every operation on it is compared with
 * a model (status, what the update found, the value a lookup returns); the
 * result of a p-form taken from it is looked up.  Every operation's status
 * must be CHAMP_OK.  At intervals: champ_validate (which also checks that the
 * pool's bytes_live equals what the census of every live map finds) and a
 * full comparison of slot 0 (every key, the size, an iteration checksum).
 * At epochs (every OPS/5 operations and at the end): every map is freed, the
 * pool must be back to 0 live bytes and 0 maps, and every generic key's
 * reference count back to 0.  Reported: operations per second, the pools'
 * peak bytes, the process's peak RSS.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "champ.h"

#define NSLOT 64
#define NK 131072
#define NWORLD 3

static long mismatches;
static uint64_t op_no;

#define FAILF(...)                                                        \
    do {                                                                  \
        fprintf(stderr, "soak: MISMATCH at op %llu: ", (unsigned long long)op_no); \
        fprintf(stderr, __VA_ARGS__);                                     \
        fprintf(stderr, "\n");                                            \
        if (++mismatches > 20)                                            \
            exit(1);                                                      \
    } while (0)

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static uint64_t rs = 0x50a4;
static inline uint64_t rnd(void) { return mix64(rs += 0x9e3779b97f4a7c15ULL); }

/* ---- keys ------------------------------------------------------------- */

static uint64_t ukeys[NK];
static char bkeys[NK][24];
static uint8_t blen[NK];
typedef struct gkey {
    uint64_t id;
    long held;
} gkey;
static gkey gkeys[NK];
static long underflows;

static uint64_t g_hash(const void *k, void *ctx) {
    (void)ctx;
    return mix64(((const gkey *)k)->id) & 0xffffffffffULL; /* 40 bits */
}
static bool g_equal(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return ((const gkey *)a)->id == ((const gkey *)b)->id;
}
static void g_retain(void *p, void *ctx) {
    (void)ctx;
    ((gkey *)p)->held++;
}
static void g_release(void *p, void *ctx) {
    (void)ctx;
    if (((gkey *)p)->held-- <= 0)
        underflows++;
}

/* ---- worlds ----------------------------------------------------------- */

typedef struct world {
    champ_key_kind kind;
    champ_pool *pool;
    champ_config cfg;
    champ_map *m[NSLOT];
    void *model[NK]; /* slot 0; NULL = absent (values are never NULL) */
    size_t msize;
    size_t peak;
    uint64_t ops;
} world;

static world W[NWORLD];

static inline bool w_get(const world *w, const champ_map *m, uint32_t k, void **v) {
    switch (w->kind) {
    case CHAMP_KEY_U64: return champ_get_u64(m, ukeys[k], v);
    case CHAMP_KEY_BYTES: return champ_get_bytes(m, bkeys[k], blen[k], v);
    default: return champ_get(m, &gkeys[k], v);
    }
}
static inline bool w_contains(const world *w, const champ_map *m, uint32_t k) {
    switch (w->kind) {
    case CHAMP_KEY_U64: return champ_contains_u64(m, ukeys[k]);
    case CHAMP_KEY_BYTES: return champ_contains_bytes(m, bkeys[k], blen[k]);
    default: return champ_contains(m, &gkeys[k]);
    }
}
static inline champ_status w_set(const world *w, champ_map *m, uint32_t k, void *v,
                                 champ_prior *pr) {
    switch (w->kind) {
    case CHAMP_KEY_U64: return champ_set_u64(m, ukeys[k], v, pr);
    case CHAMP_KEY_BYTES: return champ_set_bytes(m, bkeys[k], blen[k], v, pr);
    default: {
        /* the map takes the key only when it inserts */
        gkey *g = &gkeys[k];
        g->held++;
        champ_prior own;
        champ_prior *p = pr ? pr : &own;
        champ_status st = champ_set(m, g, v, p);
        if (st != CHAMP_OK || p->found)
            g->held--;
        return st;
    }
    }
}
static inline champ_status w_remove(const world *w, champ_map *m, uint32_t k,
                                    champ_prior *pr) {
    switch (w->kind) {
    case CHAMP_KEY_U64: return champ_remove_u64(m, ukeys[k], pr);
    case CHAMP_KEY_BYTES: return champ_remove_bytes(m, bkeys[k], blen[k], pr);
    default: {
        champ_status st = champ_remove(m, &gkeys[k], pr);
        if (st == CHAMP_OK && pr && pr->found)
            ((gkey *)pr->key)->held--; /* handed back to us: drop it */
        return st;
    }
    }
}
static inline champ_status w_pset(const world *w, const champ_map *m, uint32_t k, void *v,
                                  champ_map **out) {
    switch (w->kind) {
    case CHAMP_KEY_U64: return champ_pset_u64(m, ukeys[k], v, out);
    case CHAMP_KEY_BYTES: return champ_pset_bytes(m, bkeys[k], blen[k], v, out);
    default: {
        gkey *g = &gkeys[k];
        bool had = champ_contains(m, g);
        if (!had)
            g->held++; /* the new map takes it */
        champ_status st = champ_pset(m, g, v, out);
        if (st != CHAMP_OK && !had)
            g->held--;
        return st;
    }
    }
}
static inline champ_status w_premove(const world *w, const champ_map *m, uint32_t k,
                                     champ_map **out) {
    switch (w->kind) {
    case CHAMP_KEY_U64: return champ_premove_u64(m, ukeys[k], out);
    case CHAMP_KEY_BYTES: return champ_premove_bytes(m, bkeys[k], blen[k], out);
    default: return champ_premove(m, &gkeys[k], out);
    }
}
static uint32_t w_id(const world *w, const champ_key *k) {
    switch (w->kind) {
    case CHAMP_KEY_U64: return (uint32_t)(k->u64 >> 40) & (NK - 1);
    case CHAMP_KEY_BYTES: {
        const unsigned char *p = k->ptr;
        return (uint32_t)(p[0] | p[1] << 8 | p[2] << 16) & (NK - 1);
    }
    default: return (uint32_t)((const gkey *)k->ptr)->id;
    }
}

static const char *wname(const world *w) {
    return w->kind == CHAMP_KEY_U64 ? "u64" : w->kind == CHAMP_KEY_BYTES ? "bytes" : "generic";
}

static void *tok(uint32_t k, uint64_t x) { return (void *)(uintptr_t)(((x << 16) ^ k) * 16 + 16); }

static void world_init(world *w, champ_key_kind kind) {
    memset(w, 0, sizeof *w);
    w->kind = kind;
    if (champ_pool_new(NULL, &w->pool) != CHAMP_OK) {
        fprintf(stderr, "soak: pool\n");
        exit(1);
    }
    champ_config c = CHAMP_CONFIG_INIT(kind);
    c.pool = w->pool;
    c.fixed_seed = true;
    c.seed = 0x50a4 + (uint64_t)kind;
    if (kind == CHAMP_KEY_GENERIC) {
        c.hash = g_hash;
        c.equal = g_equal;
        c.key_retain = g_retain;
        c.key_release = g_release;
    }
    w->cfg = c;
}

static champ_map *w_new(world *w) {
    champ_map *m = NULL;
    if (champ_new(&w->cfg, &m) != CHAMP_OK)
        FAILF("champ_new");
    return m;
}

/* ---- checks ----------------------------------------------------------- */

static void full_check(world *w) {
    champ_map *m = w->m[0];
    if (champ_validate(m) != CHAMP_OK)
        FAILF("%s world: validate", wname(w));
    size_t bad = 0;
    for (uint32_t k = 0; k < NK; k++) {
        void *v = NULL;
        bool f = w_get(w, m, k, &v);
        if (f != (w->model[k] != NULL) || (f && v != w->model[k]))
            bad++;
    }
    if (bad || champ_size(m) != w->msize)
        FAILF("%s world: slot 0: %zu keys differ, size %zu, model %zu", wname(w), bad,
              champ_size(m), w->msize);
    uint64_t sum = 0, want = 0;
    for (uint32_t k = 0; k < NK; k++)
        if (w->model[k])
            want += mix64(k ^ (uint64_t)(uintptr_t)w->model[k]);
    champ_iter it;
    champ_key ks[64];
    void *vs[64];
    size_t n;
    champ_iter_init(&it, m);
    while ((n = champ_iter_next_n(&it, ks, vs, 64)) > 0)
        for (size_t i = 0; i < n; i++)
            sum += mix64(w_id(w, &ks[i]) ^ (uint64_t)(uintptr_t)vs[i]);
    if (sum != want)
        FAILF("%s world: slot 0 iteration checksum differs", wname(w));
    champ_pool_stats ps;
    champ_pool_stats_get(w->pool, &ps, sizeof ps);
    if (ps.bytes_peak > w->peak)
        w->peak = ps.bytes_peak;
}

/* Frees every map: the pool must be empty, generic keys unreferenced. */
static void epoch_end(world *w) {
    full_check(w);
    for (int s = 0; s < NSLOT; s++) {
        champ_free(w->m[s]);
        w->m[s] = NULL;
    }
    champ_pool_stats ps;
    champ_pool_stats_get(w->pool, &ps, sizeof ps);
    if (ps.bytes_live != 0 || ps.maps != 0)
        FAILF("%s world: every map freed, pool has %zu live bytes, %zu maps", wname(w),
              ps.bytes_live, ps.maps);
    if (w->kind == CHAMP_KEY_GENERIC) {
        long held = 0;
        for (uint32_t k = 0; k < NK; k++)
            held += gkeys[k].held != 0;
        if (held || underflows)
            FAILF("generic keys: %ld still referenced, %ld over-released", held, underflows);
    }
    memset(w->model, 0, sizeof w->model);
    w->msize = 0;
    w->m[0] = w_new(w);
}

/* ---- one operation ----------------------------------------------------- */

static void step(void) {
    uint64_t r = rnd();
    world *w = &W[r % NWORLD];
    r /= NWORLD;
    /* half the operations go to the hot slots 0..3 (big versions that
     * share nodes), half to any slot */
    int s = (int)(r & 1 ? (r >> 1) % 4 : (r >> 1) % NSLOT);
    r /= 2 * NSLOT;
    uint32_t k = (uint32_t)(r % NK);
    r /= NK;
    unsigned dice = (unsigned)(r % 1000);
    r /= 1000;
    bool with_prior = r & 1;
    w->ops++;
    champ_map *m = w->m[s];
    if (!m) {
        w->m[s] = w_new(w);
        return;
    }
    void *v = tok(k, op_no);
    champ_prior pr;
    champ_status st;
    if (dice < 350) { /* set */
        st = w_set(w, m, k, v, with_prior ? &pr : NULL);
        if (st != CHAMP_OK)
            FAILF("set: %d", (int)st);
        if (s == 0) {
            bool had = w->model[k] != NULL;
            if (with_prior && (pr.found != had || (had && pr.val != w->model[k])))
                FAILF("set: prior found %d, model %d", pr.found, had);
            w->msize += !had;
            w->model[k] = v;
        }
    } else if (dice < 550) { /* remove */
        st = w_remove(w, m, k, with_prior ? &pr : NULL);
        if (st != CHAMP_OK)
            FAILF("remove: %d", (int)st);
        if (s == 0) {
            bool had = w->model[k] != NULL;
            if (with_prior && (pr.found != had || (had && pr.val != w->model[k])))
                FAILF("remove: prior found %d, model %d", pr.found, had);
            w->msize -= had;
            w->model[k] = NULL;
        }
    } else if (dice < 800) { /* lookups */
        void *got = NULL;
        bool f = dice < 700 ? w_get(w, m, k, &got) : w_contains(w, m, k);
        if (s == 0 && (f != (w->model[k] != NULL) || (f && dice < 700 && got != w->model[k])))
            FAILF("get: found %d, model %d", f, w->model[k] != NULL);
    } else if (dice < 990) { /* derive into another slot: a cold one, or
                                * (1 in 16) hot slot 1..3 */
        int t = (r & 15) == 0 ? 1 + (int)((r >> 4) % 3) : 4 + (int)((r >> 4) % (NSLOT - 4));
        if (t == s)
            t = t == 1 ? 2 : 1;
        champ_free(w->m[t]);
        w->m[t] = NULL;
        champ_map *out = NULL;
        if (dice < 900) {
            st = w_pset(w, m, k, v, &out);
        } else if (dice < 960) {
            st = w_premove(w, m, k, &out);
        } else {
            st = champ_copy(m, &out);
        }
        if (st != CHAMP_OK || !out)
            FAILF("derive: %d", (int)st);
        w->m[t] = out;
        if (s == 0 && dice < 960) {
            void *got = NULL;
            bool f = w_get(w, out, k, &got);
            if (dice < 900 ? !f || got != v : f)
                FAILF("p-form result: key found %d", f);
            if (champ_size(out) != w->msize + (dice < 900 ? !w->model[k] : 0) -
                                        (dice >= 900 && w->model[k] ? 1 : 0))
                FAILF("p-form result size");
        }
    } else if (dice < 999) { /* free a cold version */
        if (s >= 4) {
            champ_free(m);
            w->m[s] = NULL;
        }
    } else if ((r & 4095) == 0) { /* clear, rarely */
        if (champ_clear(m) != CHAMP_OK)
            FAILF("clear");
        if (s == 0) {
            memset(w->model, 0, sizeof w->model);
            w->msize = 0;
        }
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    uint64_t ops = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000000ULL;
    if (ops == 0)
        ops = 100000000ULL;
    for (uint32_t k = 0; k < NK; k++) {
        ukeys[k] = (uint64_t)k << 40 | (mix64(k) & 0xffffffffffULL);
        size_t len = 8 + mix64(k + 99) % 16;
        bkeys[k][0] = (char)(k & 0xff); /* the id in the first three bytes */
        bkeys[k][1] = (char)(k >> 8 & 0xff);
        bkeys[k][2] = (char)(k >> 16);
        for (size_t j = 3; j < len; j++)
            bkeys[k][j] = (char)('a' + mix64(k * 31 + j) % 26);
        blen[k] = (uint8_t)len;
        gkeys[k].id = k;
    }
    world_init(&W[0], CHAMP_KEY_U64);
    world_init(&W[1], CHAMP_KEY_BYTES);
    world_init(&W[2], CHAMP_KEY_GENERIC);
    for (int i = 0; i < NWORLD; i++)
        W[i].m[0] = w_new(&W[i]);
    uint64_t check_every = ops / 50 > 100000 ? ops / 50 : 100000;
    uint64_t epoch_every = ops / 5 > 1000000 ? ops / 5 : 1000000;
    printf("soak: %llu operations, 3 worlds (u64, bytes, generic) x %d slots x %d keys; "
           "checks every %llu, epochs every %llu\n",
           (unsigned long long)ops, NSLOT, NK, (unsigned long long)check_every,
           (unsigned long long)epoch_every);
    fflush(stdout);
    double t0 = now(), tlast = t0;
    uint64_t checks = 0, epochs = 0;
    for (op_no = 1; op_no <= ops; op_no++) {
        step();
        if (op_no % check_every == 0) {
            for (int i = 0; i < NWORLD; i++)
                full_check(&W[i]);
            checks++;
            double t = now();
            if (t - tlast >= 10.0 || op_no == ops) {
                size_t live[NWORLD];
                for (int i = 0; i < NWORLD; i++) {
                    champ_pool_stats ps;
                    champ_pool_stats_get(W[i].pool, &ps, sizeof ps);
                    live[i] = ps.bytes_live;
                }
                printf("  %5.1f%%  %llu ops  %.2f Mops/s  live KiB u64 %zu bytes %zu generic %zu\n",
                       100.0 * (double)op_no / (double)ops, (unsigned long long)op_no,
                       (double)op_no / (t - t0) / 1e6, live[0] / 1024, live[1] / 1024,
                       live[2] / 1024);
                fflush(stdout);
                tlast = t;
            }
        }
        if (op_no % epoch_every == 0 || op_no == ops) {
            for (int i = 0; i < NWORLD; i++)
                epoch_end(&W[i]);
            epochs++;
        }
    }
    double secs = now() - t0;
    for (int i = 0; i < NWORLD; i++) {
        epoch_end(&W[i]);
        for (int s = 0; s < NSLOT; s++)
            champ_free(W[i].m[s]);
        champ_pool_stats ps;
        champ_pool_stats_get(W[i].pool, &ps, sizeof ps);
        if (ps.bytes_live != 0 || ps.maps != 0)
            FAILF("%s world: pool not empty at the end", wname(&W[i]));
        champ_pool_free(W[i].pool);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                 (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
    size_t peak = W[0].peak + W[1].peak + W[2].peak;
    printf("soak: %llu operations in %.1f s, %.1f s CPU (%.2f Mops/s, %.2f Mops per CPU "
           "second, checks included), %llu interval checks, %llu epochs "
           "(every map freed, pools back to 0 live bytes); pool peaks u64 %.1f MiB, bytes "
           "%.1f MiB, generic %.1f MiB (sum %.1f MiB); max RSS %.1f MiB; %ld mismatches\n",
           (unsigned long long)ops, secs, cpu, (double)ops / secs / 1e6, (double)ops / cpu / 1e6,
           (unsigned long long)checks,
           (unsigned long long)epochs, W[0].peak / 1048576.0, W[1].peak / 1048576.0,
           W[2].peak / 1048576.0, peak / 1048576.0, (double)ru.ru_maxrss / 1024.0, mismatches);
    return mismatches ? 1 : 0;
}

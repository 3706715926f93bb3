/*
 * tsan_stress.c - the thread model of champ.h under ThreadSanitizer.
 *
 *   tsan_stress [SECONDS [--race]]  (default 5 s; `make tsan` builds it
 *                                    with clang -fsanitize=thread, runs it)
 *
 * What champ.h promises, and what runs here at the same time:
 *   - A pool and its maps are one writer domain: one thread changes maps of
 *     the pool.  Two shared domains (a U64 pool and a GENERIC pool whose
 *     hash/equal run in the readers too), each with its writer thread: it
 *     updates its map `cur` in place, derives versions with copies and
 *     p-forms (then updates some of them in place before publishing them),
 *     clears, validates, and frees the versions no reader uses any more.
 *   - Readers read published versions (get, contains, size, single and
 *     batched iteration, foreach) while the writer updates `cur`, which
 *     shares nodes with them, and frees other versions that share nodes with
 *     them.  Readers never copy or free (writer operations): the handoff is
 *     the test's own, a mutex-protected table of versions with reader counts;
 *     the writer frees a version only once it is retired and unread.
 *   - Telemetry (pool stats, map stats, stats_print and dump to /dev/null)
 *     beside the readers, but never overlapping its pool's writer: a
 *     read-write lock per domain (the writer holds it while it changes maps;
 *     telemetry threads share it).
 *   - Independent pools: threads with a pool and maps each, doing a full
 *     workload (updates, p-forms, copies, frees, validate) without locks.
 * Every read is checked against what the writer recorded when it published
 * the version (size, an order-independent checksum of the entries, sampled
 * keys), every independent map against its model.  Any mismatch or a
 * ThreadSanitizer report (TSAN_OPTIONS=halt_on_error=1) fails the run.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "champ.h"

#define NDOM 2       /* shared writer domains */
#define NREADERS 2   /* reader threads (each reads both domains) */
#define NTELE 1      /* telemetry threads */
#define NINDEP 2     /* independent pools */
#define NK 2048      /* key universe of a domain */
#define NPUB 12      /* published versions per domain */
#define NSAMPLE 16   /* sampled keys per version */

static atomic_bool stop;
/* --race: a reader also reads domain 0's `cur` while its writer changes it,
 * which the thread model forbids: ThreadSanitizer must report it (a check
 * that this test can see a race; `make tsan` does not use it). */
static bool race_mode;
static _Atomic(champ_map *) race_map;
static atomic_long errors;

#define FAILF(...)                                                        \
    do {                                                                  \
        fprintf(stderr, "tsan_stress: MISMATCH: " __VA_ARGS__);           \
        fprintf(stderr, "\n");                                            \
        atomic_fetch_add(&errors, 1);                                     \
    } while (0)

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s;
} rng;
static uint64_t next(rng *r) { return mix64(r->s += 0x9e3779b97f4a7c15ULL); }
static uint64_t below(rng *r, uint64_t n) { return next(r) % n; }

/* ------------------------------------------------------------------ */
/* Generic keys: immutable objects; hash and equal are pure (they run  */
/* in reader threads concurrently).                                    */
/* ------------------------------------------------------------------ */

typedef struct gkey {
    uint64_t id;
} gkey;
static gkey gkeys[NK];

static uint64_t g_hash(const void *k, void *ctx) {
    (void)ctx;
    /* weak on purpose: collisions and deep paths */
    return mix64(((const gkey *)k)->id) & 0xf00000000000ffffULL;
}
static bool g_equal(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return ((const gkey *)a)->id == ((const gkey *)b)->id;
}

/* ------------------------------------------------------------------ */
/* A shared domain                                                     */
/* ------------------------------------------------------------------ */

typedef struct pub {
    champ_map *m;     /* NULL: free */
    int readers;      /* under dom.mu */
    bool retired;     /* the writer wants it gone */
    size_t size;
    uint64_t sum;     /* checksum of the entries */
    uint32_t skey[NSAMPLE];
    void *sval[NSAMPLE]; /* NULL: absent (values are never NULL) */
} pub;

typedef struct dom {
    champ_key_kind kind;
    champ_pool *pool;
    champ_config cfg;
    pthread_mutex_t mu;        /* the table of versions */
    pthread_rwlock_t tele;     /* writer: write side; telemetry: read side */
    pub pubs[NPUB];
    atomic_long published, freed, reads, lookups, iterations, foreachs, tele_calls;
    long writer_ops, validates, pforms, copies, clears;
} dom;

static dom doms[NDOM];

static uint64_t entry_hash(uint64_t key, const void *val) {
    return mix64(key * 0x100000001b3ULL ^ (uint64_t)(uintptr_t)val);
}

static void *tok(uint32_t key, uint64_t gen) {
    return (void *)(uintptr_t)((gen << 20 | key) * 16 + 16);
}

static bool d_get(const dom *d, const champ_map *m, uint32_t k, void **v) {
    return d->kind == CHAMP_KEY_U64 ? champ_get_u64(m, (uint64_t)k * 0x9e3779b97f4a7c15ULL, v)
                                    : champ_get(m, &gkeys[k], v);
}
static champ_status d_set(const dom *d, champ_map *m, uint32_t k, void *v) {
    return d->kind == CHAMP_KEY_U64
               ? champ_set_u64(m, (uint64_t)k * 0x9e3779b97f4a7c15ULL, v, NULL)
               : champ_set(m, &gkeys[k], v, NULL);
}
static champ_status d_remove(const dom *d, champ_map *m, uint32_t k) {
    return d->kind == CHAMP_KEY_U64
               ? champ_remove_u64(m, (uint64_t)k * 0x9e3779b97f4a7c15ULL, NULL)
               : champ_remove(m, &gkeys[k], NULL);
}
static champ_status d_pset(const dom *d, const champ_map *m, uint32_t k, void *v,
                           champ_map **out) {
    return d->kind == CHAMP_KEY_U64
               ? champ_pset_u64(m, (uint64_t)k * 0x9e3779b97f4a7c15ULL, v, out)
               : champ_pset(m, &gkeys[k], v, out);
}
static champ_status d_premove(const dom *d, const champ_map *m, uint32_t k, champ_map **out) {
    return d->kind == CHAMP_KEY_U64
               ? champ_premove_u64(m, (uint64_t)k * 0x9e3779b97f4a7c15ULL, out)
               : champ_premove(m, &gkeys[k], out);
}
static uint64_t u64_inv; /* 0x9e3779b97f4a7c15^-1 mod 2^64 */
static uint64_t d_key_of(const dom *d, const champ_key *k) {
    if (d->kind == CHAMP_KEY_U64)
        return k->u64 * u64_inv;
    return ((const gkey *)k->ptr)->id;
}

/* ---- writer ---------------------------------------------------------- */

typedef struct model {
    void *val[NK]; /* NULL: absent */
    size_t size;
} model;

static void model_sum(const model *md, size_t *size, uint64_t *sum) {
    uint64_t s = 0;
    for (uint32_t k = 0; k < NK; k++)
        if (md->val[k])
            s += entry_hash(k, md->val[k]);
    *size = md->size;
    *sum = s;
}

/* Retires every version but the newest few; frees the retired ones that no
 * reader uses (writer operation: outside the table's mutex). */
static void writer_reap(dom *d, rng *r) {
    champ_map *dead[NPUB];
    int nd = 0;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < NPUB; i++) {
        pub *p = &d->pubs[i];
        if (p->m && !p->retired && below(r, 4) == 0)
            p->retired = true;
        if (p->m && p->retired && p->readers == 0) {
            dead[nd++] = p->m;
            p->m = NULL;
        }
    }
    pthread_mutex_unlock(&d->mu);
    for (int i = 0; i < nd; i++)
        champ_free(dead[i]);
    atomic_fetch_add(&d->freed, nd);
}

/* Publishes version v whose contents are md (the writer no longer changes
 * v); returns false (and frees v) when the table is full. */
static bool writer_publish(dom *d, rng *r, champ_map *v, const model *md) {
    pub np;
    memset(&np, 0, sizeof np);
    np.m = v;
    model_sum(md, &np.size, &np.sum);
    for (int j = 0; j < NSAMPLE; j++) {
        uint32_t k = (uint32_t)below(r, NK);
        np.skey[j] = k;
        np.sval[j] = md->val[k];
    }
    bool done = false;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < NPUB && !done; i++)
        if (!d->pubs[i].m) {
            d->pubs[i] = np;
            done = true;
        }
    pthread_mutex_unlock(&d->mu);
    if (done)
        atomic_fetch_add(&d->published, 1);
    else
        champ_free(v);
    return done;
}

static void *writer_main(void *arg) {
    dom *d = arg;
    rng r = {0x77 + (uint64_t)d->kind};
    static model cur_m[NDOM], tmp_m[NDOM];
    model *cm = &cur_m[d - doms], *tm = &tmp_m[d - doms];
    memset(cm, 0, sizeof *cm);
    champ_map *cur = NULL;
    if (champ_new(&d->cfg, &cur) != CHAMP_OK) {
        FAILF("writer: champ_new");
        return NULL;
    }
    uint64_t gen = 1;
    while (!atomic_load(&stop)) {
        pthread_rwlock_wrlock(&d->tele);
        /* in-place updates of cur (shares nodes with published versions) */
        for (int i = 0; i < 64; i++, d->writer_ops++) {
            uint32_t k = (uint32_t)below(&r, NK);
            if (below(&r, 10) < 7) {
                void *v = tok(k, gen++);
                if (d_set(d, cur, k, v) != CHAMP_OK)
                    FAILF("writer: set");
                if (!cm->val[k])
                    cm->size++;
                cm->val[k] = v;
            } else {
                if (d_remove(d, cur, k) != CHAMP_OK)
                    FAILF("writer: remove");
                if (cm->val[k])
                    cm->size--;
                cm->val[k] = NULL;
            }
        }
        if (champ_size(cur) != cm->size)
            FAILF("writer: size %zu, model %zu", champ_size(cur), cm->size);
        /* a new version */
        champ_map *v = NULL;
        *tm = *cm;
        uint32_t k = (uint32_t)below(&r, NK);
        switch (below(&r, 4)) {
        case 0:
            champ_copy(cur, &v);
            d->copies++;
            break;
        case 1: {
            void *val = tok(k, gen++);
            d_pset(d, cur, k, val, &v);
            if (!tm->val[k])
                tm->size++;
            tm->val[k] = val;
            d->pforms++;
            break;
        }
        case 2:
            d_premove(d, cur, k, &v);
            if (tm->val[k])
                tm->size--;
            tm->val[k] = NULL;
            d->pforms++;
            break;
        default:
            /* a copy changed in place before it is published */
            champ_copy(cur, &v);
            for (int i = 0; i < 8 && v; i++) {
                uint32_t kk = (uint32_t)below(&r, NK);
                void *val = tok(kk, gen++);
                d_set(d, v, kk, val);
                if (!tm->val[kk])
                    tm->size++;
                tm->val[kk] = val;
            }
            d->copies++;
            break;
        }
        if (!v) {
            FAILF("writer: no version made");
        } else {
            writer_publish(d, &r, v, tm);
        }
        if (below(&r, 50) == 0) {
            if (champ_validate(cur) != CHAMP_OK)
                FAILF("writer: validate");
            d->validates++;
        }
        if (below(&r, 200) == 0) {
            champ_clear(cur);
            memset(cm, 0, sizeof *cm);
            d->clears++;
        }
        writer_reap(d, &r);
        pthread_rwlock_unlock(&d->tele);
        if (race_mode && d == &doms[0])
            atomic_store(&race_map, cur);
        if (d->writer_ops % 512 == 0)
            sched_yield(); /* let telemetry in */
    }
    atomic_store(&race_map, NULL);
    /* the end: wait for the readers, free everything */
    pthread_rwlock_wrlock(&d->tele);
    for (;;) {
        int busy = 0;
        pthread_mutex_lock(&d->mu);
        for (int i = 0; i < NPUB; i++) {
            d->pubs[i].retired = true;
            busy += d->pubs[i].m && d->pubs[i].readers;
        }
        pthread_mutex_unlock(&d->mu);
        writer_reap(d, &r);
        if (!busy)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    champ_free(cur);
    pthread_rwlock_unlock(&d->tele);
    return NULL;
}

/* ---- readers ---------------------------------------------------------- */

/* Takes a published version (reader count up), or returns -1. */
static int acquire(dom *d, rng *r, pub *copy_out) {
    int got = -1;
    pthread_mutex_lock(&d->mu);
    int start = (int)below(r, NPUB);
    for (int j = 0; j < NPUB; j++) {
        int i = (start + j) % NPUB;
        if (d->pubs[i].m && !d->pubs[i].retired) {
            d->pubs[i].readers++;
            *copy_out = d->pubs[i];
            got = i;
            break;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return got;
}

static void release(dom *d, int i) {
    pthread_mutex_lock(&d->mu);
    d->pubs[i].readers--;
    pthread_mutex_unlock(&d->mu);
}

typedef struct fe_ctx {
    const dom *d;
    uint64_t sum;
    size_t n;
} fe_ctx;

static int fe_visit(const champ_key *k, void *v, void *ctx) {
    fe_ctx *c = ctx;
    c->sum += entry_hash(d_key_of(c->d, k), v);
    c->n++;
    return 0;
}

static void read_version(dom *d, rng *r, const pub *p) {
    const champ_map *m = p->m;
    if (champ_size(m) != p->size)
        FAILF("reader: size %zu, published %zu", champ_size(m), p->size);
    for (int j = 0; j < NSAMPLE; j++) {
        void *v = NULL;
        bool f = d_get(d, m, p->skey[j], &v);
        if (f != (p->sval[j] != NULL) || (f && v != p->sval[j]))
            FAILF("reader: key %u found %d", p->skey[j], f);
    }
    atomic_fetch_add(&d->lookups, NSAMPLE);
    uint64_t sum = 0;
    size_t n = 0;
    switch (below(r, 3)) {
    case 0: {
        champ_iter it;
        champ_key k;
        void *v;
        champ_iter_init(&it, m);
        while (champ_iter_next(&it, &k, &v)) {
            sum += entry_hash(d_key_of(d, &k), v);
            n++;
        }
        if (champ_iter_status(&it) != CHAMP_OK)
            FAILF("reader: iteration status %d", (int)champ_iter_status(&it));
        atomic_fetch_add(&d->iterations, 1);
        break;
    }
    case 1: {
        champ_iter it;
        champ_key ks[40];
        void *vs[40];
        size_t got;
        champ_iter_init(&it, m);
        while ((got = champ_iter_next_n(&it, ks, vs, 1 + below(r, 40))) > 0)
            for (size_t i = 0; i < got; i++) {
                sum += entry_hash(d_key_of(d, &ks[i]), vs[i]);
                n++;
            }
        if (champ_iter_status(&it) != CHAMP_OK)
            FAILF("reader: batch iteration status %d", (int)champ_iter_status(&it));
        atomic_fetch_add(&d->iterations, 1);
        break;
    }
    default: {
        fe_ctx c = {d, 0, 0};
        if (champ_foreach(m, fe_visit, &c) != CHAMP_OK)
            FAILF("reader: foreach");
        sum = c.sum;
        n = c.n;
        atomic_fetch_add(&d->foreachs, 1);
        break;
    }
    }
    if (n != p->size || sum != p->sum)
        FAILF("reader: walked %zu entries (published %zu), checksum %s", n, p->size,
              sum == p->sum ? "ok" : "differs");
    atomic_fetch_add(&d->reads, 1);
}

static void *reader_main(void *arg) {
    rng r = {(uint64_t)(uintptr_t)arg * 0x1234567ULL};
    while (!atomic_load(&stop)) {
        dom *d = &doms[below(&r, NDOM)];
        champ_map *rm = race_mode ? atomic_load(&race_map) : NULL;
        if (rm) {
            for (uint32_t k = 0; k < 64; k++)
                d_get(&doms[0], rm, k, NULL);
        }
        pub p;
        int i = acquire(d, &r, &p);
        if (i < 0) {
            sched_yield();
            continue;
        }
        read_version(d, &r, &p);
        release(d, i);
    }
    return NULL;
}

/* ---- telemetry -------------------------------------------------------- */

static void *tele_main(void *arg) {
    rng r = {(uint64_t)(uintptr_t)arg * 0x777ULL + 1};
    FILE *devnull = fopen("/dev/null", "w");
    while (!atomic_load(&stop)) {
        dom *d = &doms[below(&r, NDOM)];
        pthread_rwlock_rdlock(&d->tele); /* never beside this pool's writer */
        champ_pool_stats ps;
        if (champ_pool_stats_get(d->pool, &ps, sizeof ps) != CHAMP_OK || ps.maps == 0)
            FAILF("telemetry: pool stats");
        pub p;
        int i = acquire(d, &r, &p);
        if (i >= 0) {
            champ_stats ms;
            if (champ_stats_get(p.m, &ms, sizeof ms) != CHAMP_OK || ms.entries != p.size)
                FAILF("telemetry: map stats: %zu entries, published %zu", ms.entries, p.size);
            if (devnull && below(&r, 8) == 0) {
                champ_stats_print(p.m, devnull);
                champ_dump(p.m, devnull);
            }
            release(d, i);
        }
        pthread_rwlock_unlock(&d->tele);
        atomic_fetch_add(&d->tele_calls, 1);
        sched_yield();
    }
    if (devnull)
        fclose(devnull);
    return NULL;
}

/* ---- independent pools ------------------------------------------------ */

#define IND_SLOTS 6
#define IND_K 512
typedef struct indep {
    long ops, frees;
    int id;
} indep;

static void *indep_main(void *arg) {
    indep *ip = arg;
    rng r = {0xabcdef + (uint64_t)ip->id};
    champ_pool *pool = NULL;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.chunk_size = 4096;
    if (champ_pool_new(&pc, &pool) != CHAMP_OK) {
        FAILF("indep: pool");
        return NULL;
    }
    champ_config c = CHAMP_CONFIG_INIT(ip->id % 2 ? CHAMP_KEY_BYTES : CHAMP_KEY_U64);
    c.pool = pool;
    c.fixed_seed = true;
    c.seed = (uint64_t)ip->id;
    champ_map *m[IND_SLOTS] = {0};
    static void *vals[NINDEP][IND_SLOTS][IND_K];
    void *(*val)[IND_K] = vals[ip->id];
    memset(val, 0, sizeof vals[0]);
    char kb[32];
    while (!atomic_load(&stop)) {
        int s = (int)below(&r, IND_SLOTS);
        if (!m[s]) {
            champ_new(&c, &m[s]);
            memset(val[s], 0, sizeof val[s]);
            continue;
        }
        uint32_t k = (uint32_t)below(&r, IND_K);
        int klen = snprintf(kb, sizeof kb, "k%u", k * 7919u);
        void *v = (void *)(uintptr_t)(16 * (1 + below(&r, 1000)));
        champ_status st = CHAMP_OK;
        unsigned dice = (unsigned)below(&r, 100);
        if (dice < 50) {
            st = c.kind == CHAMP_KEY_U64 ? champ_set_u64(m[s], k, v, NULL)
                                         : champ_set_bytes(m[s], kb, (size_t)klen, v, NULL);
            val[s][k] = v;
        } else if (dice < 75) {
            st = c.kind == CHAMP_KEY_U64 ? champ_remove_u64(m[s], k, NULL)
                                         : champ_remove_bytes(m[s], kb, (size_t)klen, NULL);
            val[s][k] = NULL;
        } else if (dice < 85) {
            int t = (s + 1 + (int)below(&r, IND_SLOTS - 1)) % IND_SLOTS;
            champ_free(m[t]);
            m[t] = NULL;
            st = c.kind == CHAMP_KEY_U64 ? champ_pset_u64(m[s], k, v, &m[t])
                                         : champ_pset_bytes(m[s], kb, (size_t)klen, v, &m[t]);
            memcpy(val[t], val[s], sizeof val[t]);
            val[t][k] = v;
        } else if (dice < 92) {
            int t = (s + 1 + (int)below(&r, IND_SLOTS - 1)) % IND_SLOTS;
            champ_free(m[t]);
            st = champ_copy(m[s], &m[t]);
            memcpy(val[t], val[s], sizeof val[t]);
        } else if (dice < 97) {
            void *got = NULL;
            bool f = c.kind == CHAMP_KEY_U64 ? champ_get_u64(m[s], k, &got)
                                             : champ_get_bytes(m[s], kb, (size_t)klen, &got);
            if (f != (val[s][k] != NULL) || (f && got != val[s][k]))
                FAILF("indep %d: key %u", ip->id, k);
        } else if (dice < 99) {
            champ_free(m[s]);
            m[s] = NULL;
            ip->frees++;
        } else {
            if (champ_validate(m[s]) != CHAMP_OK)
                FAILF("indep %d: validate", ip->id);
        }
        if (st != CHAMP_OK)
            FAILF("indep %d: status %d", ip->id, (int)st);
        ip->ops++;
    }
    for (int s = 0; s < IND_SLOTS; s++)
        champ_free(m[s]);
    champ_pool_stats ps;
    champ_pool_stats_get(pool, &ps, sizeof ps);
    if (ps.bytes_live != 0 || ps.maps != 0)
        FAILF("indep %d: pool not empty: %zu bytes, %zu maps", ip->id, ps.bytes_live, ps.maps);
    champ_pool_free(pool);
    return NULL;
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    race_mode = argc > 2 && strcmp(argv[2], "--race") == 0;
    if (!(seconds > 0))
        seconds = 5.0;
    for (uint32_t i = 0; i < NK; i++)
        gkeys[i].id = i;
    uint64_t x = 0x9e3779b97f4a7c15ULL; /* Newton: x = x (2 - a x) */
    for (int i = 0; i < 6; i++)
        x *= 2 - 0x9e3779b97f4a7c15ULL * x;
    u64_inv = x;
    for (int i = 0; i < NDOM; i++) {
        dom *d = &doms[i];
        d->kind = i == 0 ? CHAMP_KEY_U64 : CHAMP_KEY_GENERIC;
        pthread_mutex_init(&d->mu, NULL);
        pthread_rwlock_init(&d->tele, NULL);
        if (champ_pool_new(NULL, &d->pool) != CHAMP_OK) {
            fprintf(stderr, "tsan_stress: pool\n");
            return 1;
        }
        champ_config c = CHAMP_CONFIG_INIT(d->kind);
        if (d->kind == CHAMP_KEY_GENERIC) {
            c.hash = g_hash;
            c.equal = g_equal;
        }
        c.pool = d->pool;
        c.fixed_seed = true;
        c.seed = 42;
        d->cfg = c;
    }
    pthread_t th[NDOM + NREADERS + NTELE + NINDEP];
    indep ind[NINDEP];
    int nt = 0;
    for (int i = 0; i < NDOM; i++)
        pthread_create(&th[nt++], NULL, writer_main, &doms[i]);
    for (int i = 0; i < NREADERS; i++)
        pthread_create(&th[nt++], NULL, reader_main, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < NTELE; i++)
        pthread_create(&th[nt++], NULL, tele_main, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < NINDEP; i++) {
        memset(&ind[i], 0, sizeof ind[i]);
        ind[i].id = i;
        pthread_create(&th[nt++], NULL, indep_main, &ind[i]);
    }
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    atomic_store(&stop, true);
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);

    long pub_total = 0, reads = 0, lookups = 0, iters = 0, fes = 0, tele = 0, wops = 0;
    for (int i = 0; i < NDOM; i++) {
        dom *d = &doms[i];
        champ_pool_stats ps;
        champ_pool_stats_get(d->pool, &ps, sizeof ps);
        if (ps.bytes_live != 0 || ps.maps != 0)
            FAILF("domain %d: pool not empty at the end: %zu bytes, %zu maps", i, ps.bytes_live,
                  ps.maps);
        champ_pool_free(d->pool);
        printf("domain %d (%s): %ld writer ops, %ld versions published (%ld copies, %ld "
               "p-forms), %ld freed, %ld validates, %ld clears; %ld reads (%ld lookups, %ld "
               "iterations, %ld foreach), %ld telemetry rounds\n",
               i, d->kind == CHAMP_KEY_U64 ? "u64" : "generic", d->writer_ops,
               atomic_load(&d->published), d->copies, d->pforms, atomic_load(&d->freed),
               d->validates, d->clears, atomic_load(&d->reads), atomic_load(&d->lookups),
               atomic_load(&d->iterations), atomic_load(&d->foreachs),
               atomic_load(&d->tele_calls));
        pub_total += atomic_load(&d->published);
        reads += atomic_load(&d->reads);
        lookups += atomic_load(&d->lookups);
        iters += atomic_load(&d->iterations);
        fes += atomic_load(&d->foreachs);
        tele += atomic_load(&d->tele_calls);
        wops += d->writer_ops;
    }
    long iops = 0;
    for (int i = 0; i < NINDEP; i++) {
        printf("independent pool %d: %ld ops, %ld frees\n", i, ind[i].ops, ind[i].frees);
        iops += ind[i].ops;
    }
    long e = atomic_load(&errors);
    printf("tsan_stress: %.1f s, %d threads (%d writers, %d readers, %d telemetry, %d "
           "independent), %ld versions published, %ld reads, %ld writer ops, %ld telemetry "
           "rounds, %ld independent ops: %ld mismatches\n",
           seconds, nt, NDOM, NREADERS, NTELE, NINDEP, pub_total, reads, wops, tele, iops, e);
    (void)lookups;
    (void)iters;
    (void)fes;
    return e ? 1 : 0;
}

/*
 * threads_parts.c - where the bench op threads_2 loses its scaling: the
 * loop of threads_1 / threads_2 (bench/adapt_champ.c) cut into parts, each
 * run on 1 and on 2 threads of a concurrent pool sharing one cell.
 *
 *   threads_parts [N [ITERATIONS [ROUNDS [PART]]]]   defaults: 10000 200000 5, all
 *
 * (one PART alone, by name: for a profiler's view of it)
 *
 * Parts (each iteration, on each thread):
 *   snapshot  champ_cell_load, 16 lookups of random keys, champ_free
 *   copy      snapshot, plus champ_copy of the snapshot and its champ_free
 *   private   snapshot, plus champ_pset_u64 of one random key and its
 *             champ_free: derive without ever publishing
 *   derive    snapshot, plus champ_pset_u64 of one random key, published
 *             with champ_cell_cas every 64th iteration, and its champ_free
 *             (the bench op's loop)
 * A round runs every part on 1 thread, then on 2 (ITERATIONS per thread),
 * parts and thread counts interleaved; printed: the median over the
 * rounds of wall ns per iteration (all threads' iterations), the
 * 2-thread throughput against 1 thread, and (derive) the share of the 2
 * threads' publications that lost their compare-and-swap to the other.
 * First, what sharing costs on this machine: the round trip of one cache
 * line handed between two threads (a line that a thread wrote and another
 * reads moves once, half of it).
 * Needs build/libchamp.a; built by
 * `make -f bench/bench.mk bench/build/threads_parts`.
 */
#define _POSIX_C_SOURCE 200809L
#include <champ.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { P_SNAPSHOT, P_COPY, P_PRIVATE, P_DERIVE, P_COUNT };
static const char *part_name[P_COUNT] = {"snapshot", "copy", "private", "derive"};

typedef struct run {
    champ_cell *cell;
    const uint64_t *keys;
    size_t n, iters;
    int part;
    unsigned id;
    uint64_t bad;
    uint64_t cas, lost; /* publications tried, and lost to the other thread */
} run;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static size_t pick(uint64_t *s, size_t n) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z ^= z >> 31;
    return (size_t)(((z >> 32) * (uint64_t)n) >> 32);
}

static void *loop(void *arg) {
    run *r = arg;
    uint64_t rng = 0x6a09e667f3bcc909ull * (r->id + 1);
    for (size_t it = 0; it < r->iters; it++) {
        champ_map *snap = NULL, *ver = NULL;
        if (champ_cell_load(r->cell, &snap) != CHAMP_OK || !snap) {
            r->bad++;
            continue;
        }
        for (int q = 0; q < 16; q++) {
            size_t i = pick(&rng, r->n);
            void *v;
            if (!champ_get_u64(snap, r->keys[i], &v) || (uintptr_t)v == 0)
                r->bad++;
        }
        if (r->part == P_COPY) {
            if (champ_copy(snap, &ver) != CHAMP_OK)
                r->bad++;
            champ_free(ver);
        } else if (r->part == P_DERIVE || r->part == P_PRIVATE) {
            size_t i = pick(&rng, r->n);
            if (champ_pset_u64(snap, r->keys[i], (void *)(uintptr_t)(i + 1), &ver) !=
                CHAMP_OK) {
                r->bad++;
            } else {
                bool sw;
                if (r->part == P_DERIVE && it % 64 == 63) {
                    if (champ_cell_cas(r->cell, snap, ver, &sw) != CHAMP_OK)
                        r->bad++;
                    r->cas++;
                    r->lost += !sw;
                }
                champ_free(ver);
            }
        }
        champ_free(snap);
    }
    return NULL;
}

/* The box's price of sharing: two threads hand one cache line back and
 * forth (a counter each bumps when it sees the other's value); returns ns
 * per round trip (two line transfers). */
static _Atomic long pp_flag;
enum { PP_TRIPS = 100000 };
static void *pp_other(void *arg) {
    (void)arg;
    for (long i = 0; i < PP_TRIPS; i++) {
        while (atomic_load_explicit(&pp_flag, memory_order_acquire) != 2 * i + 1)
            ;
        atomic_store_explicit(&pp_flag, 2 * i + 2, memory_order_release);
    }
    return NULL;
}
static double pingpong_ns(void) {
    pthread_t th;
    atomic_store(&pp_flag, 0);
    if (pthread_create(&th, NULL, pp_other, NULL) != 0)
        return 0.0;
    double t0 = now_ns();
    for (long i = 0; i < PP_TRIPS; i++) {
        atomic_store_explicit(&pp_flag, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&pp_flag, memory_order_acquire) != 2 * i + 2)
            ;
    }
    double t = (now_ns() - t0) / PP_TRIPS;
    pthread_join(th, NULL);
    return t;
}

/* Publications tried and lost, per part and thread count, over all rounds. */
static uint64_t cas_tried[P_COUNT][2], cas_lost[P_COUNT][2];

/* Wall ns per iteration of `part` on nt threads. */
static double time_part(champ_cell *cell, const uint64_t *keys, size_t n, size_t iters,
                        int part, unsigned nt, uint64_t *bad) {
    run r[2];
    pthread_t th[2];
    double t0 = now_ns();
    for (unsigned i = 0; i < nt; i++) {
        r[i] = (run){cell, keys, n, iters, part, i + nt, 0, 0, 0};
        if (pthread_create(&th[i], NULL, loop, &r[i]) != 0) {
            fprintf(stderr, "threads_parts: pthread_create failed\n");
            exit(1);
        }
    }
    for (unsigned i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        *bad += r[i].bad;
        cas_tried[part][nt - 1] += r[i].cas;
        cas_lost[part][nt - 1] += r[i].lost;
    }
    return (now_ns() - t0) / (double)(iters * nt);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 10000;
    size_t iters = argc > 2 ? strtoull(argv[2], NULL, 10) : 200000;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    int only = -1;
    for (int part = 0; argc > 4 && part < P_COUNT; part++)
        if (strcmp(argv[4], part_name[part]) == 0)
            only = part;
    if (n == 0 || iters == 0 || rounds < 1 || rounds > 99 || (argc > 4 && only < 0)) {
        fprintf(stderr, "usage: threads_parts [N [ITERATIONS [ROUNDS (1-99) [PART]]]]\n");
        return 2;
    }
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.concurrent = true;
    champ_pool *p;
    champ_map *m;
    champ_cell *cell;
    uint64_t *keys = malloc(n * sizeof *keys);
    if (!keys || champ_pool_new(&pc, &p) != CHAMP_OK)
        return 1;
    champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    cfg.pool = p;
    cfg.seed = 42;
    cfg.fixed_seed = true;
    if (champ_new(&cfg, &m) != CHAMP_OK)
        return 1;
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        do {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            keys[i] = x;
        } while (champ_contains_u64(m, x));
        if (champ_set_u64(m, x, (void *)(uintptr_t)(i + 1), NULL) != CHAMP_OK)
            return 1;
    }
    if (champ_cell_new(m, &cell) != CHAMP_OK)
        return 1;
    champ_free(m);
    double t[P_COUNT][2][99];
    uint64_t bad = 0;
    for (int r = 0; r < rounds; r++)
        for (int part = 0; part < P_COUNT; part++)
            for (unsigned nt = 1; nt <= 2; nt++)
                t[part][nt - 1][r] = only >= 0 && part != only ? 0.0 : time_part(cell, keys, n, iters, part, nt, &bad);
    printf("N=%zu, %zu iterations per thread, median of %d rounds; one cache line's round"
           " trip between two threads: %.0f ns\n",
           n, iters, rounds, pingpong_ns());
    printf("%-9s %14s %14s %20s %10s\n", "part", "1 thread ns", "2 threads ns",
           "2-thread throughput", "cas lost");
    for (int part = 0; part < P_COUNT; part++) {
        if (only >= 0 && part != only)
            continue;
        double med[2];
        for (int k = 0; k < 2; k++) {
            qsort(t[part][k], (size_t)rounds, sizeof(double), cmp_double);
            med[k] = t[part][k][rounds / 2];
        }
        printf("%-9s %14.1f %14.1f %19.2fx", part_name[part], med[0], med[1], med[0] / med[1]);
        if (cas_tried[part][1])
            printf(" %9.1f%%", 100.0 * (double)cas_lost[part][1] / (double)cas_tried[part][1]);
        printf("\n");
    }
    champ_cell_free(cell);
    champ_pool_free(p);
    free(keys);
    if (bad) {
        printf("threads_parts: %llu failed calls or wrong lookups\n", (unsigned long long)bad);
        return 1;
    }
    return 0;
}

/*
 * test_concurrent.c - concurrent pools (champ_pool_config.concurrent).
 *
 *   differential      one thread: a random sequence of updates, copies and
 *                     p-forms on a concurrent pool and on a plain one must
 *                     give the same maps (same shapes, same answers)
 *   cell_threads      threads take snapshots from a cell, read them, derive
 *                     a version with one update and publish it with cas;
 *                     no update is lost, the pool is empty at the end
 *   producer_consumer one thread builds maps, another frees them: freed
 *                     blocks come back through the depot, reserved bytes
 *                     stay bounded
 *   heap_adoption     a thread's heap, after it exits, serves the next
 *                     thread new to the pool (free blocks not lost); a
 *                     thread that used a pool freed meanwhile exits safely
 *   heap_routes       blocks go to the calling thread's heap through a
 *                     thread-local cache: a thread alternating between two
 *                     pools; a thread whose heap the backing allocator
 *                     refuses (updates fail with CHAMP_ENOMEM and change
 *                     nothing, reads work, its frees wait in the depot)
 *   default_threads   threads with default maps (the process-wide pool)
 *   stats_while_busy  pool stats read while threads update
 *   cell_noncopyable  cells refuse maps of a type that releases without
 *                     retaining (regression KB4 of the fuzz target)
 *   cell_from_callback a cell call sharing m from a callback of an update
 *                     of m is CHAMP_EBUSY (regression of the fuzz target)
 *   cell_free_from_callback  calls on a cell from the release callbacks
 *                     of its own champ_cell_free: load, store, cas
 *                     CHAMP_EBUSY, free returns at once; every value
 *                     released once (regression KB9 of the fuzz target)
 *   cell_load_watermark_frees  a fixed pool's watermark, run inside a
 *                     cell load's handle allocation, frees that cell (the
 *                     type's last other holder): the snapshot holds its
 *                     own references to root and type (regression)
 *   cell_pins         snapshots of a concurrent cell are pinned, not
 *                     counted (pin.c): each keeps its version readable
 *                     after stores and after the cell's free, a replaced
 *                     version goes exactly when its last snapshot does,
 *                     updates / clear / copy of a snapshot, more snapshots
 *                     than pin slots, trim with pins, validate's census,
 *                     allocation failure at every step (a failed store
 *                     changes nothing)
 *   light_versions    p-forms of a pinned snapshot (u64) are light
 *                     versions: right contents, freeing one frees only its
 *                     new nodes; every call that shares or changes one
 *                     settles it first (copy, updates, cells, algebra,
 *                     apply, a p-form of it, trim); a random run against a
 *                     model; allocation failure; two threads copying one
 *                     light version at once (light_copy_race)
 *   light_counted     p-forms of counted u64 maps (concurrent and plain
 *                     pools) are light versions
 *                     holding a count on their base, in at most half of
 *                     the thread's pin slots; one that changes
 *                     nothing is counted at once (regression: its root,
 *                     updated in place, left it naming a freed base); a
 *                     chain of versions
 *                     (each derived from the last, which is freed) keeps
 *                     live bytes flat; a random forest of versions against
 *                     models, with allocation failures and the census
 *   light_in_place    an update in place of a plain u64 map sharing its
 *                     root makes it a light version on a count: nothing
 *                     counted, freeing it gives back its nodes, the next
 *                     update settles it and the one after is in place;
 *                     removes; the original freed first; slots; failure
 *                     at each block; only a fresh copy (or a plain cell's
 *                     load) goes light, the original edited while its
 *                     snapshot lives copies its path; a concurrent pool:
 *                     light when the handle's heap is the thread's,
 *                     else the path copied; freed by another thread;
 *                     a default map's copy
 *   lost_cas_copy_race a copy of a light version while a losing cas claims
 *                     and gives it back, again and again: the copy waits,
 *                     then settles it (it once waited for good)
 *   publish_transfer  a light version of the cell's snapshot published
 *                     with cas takes the replaced version's path without
 *                     counting (pin.c); every holder of the replaced path
 *                     keeps it right; failures; a random run with models
 *   cell_pins_threads snapshots loaded by threads that exit, freed by main
 *                     after the cell moved on (a marked pin released by
 *                     another thread), and the reverse
 *   cell_edges        cells at their edges, plain and concurrent pools: a
 *                     cell of an empty version; a plain load whose handle
 *                     allocation fails (CHAMP_ENOMEM, counts unchanged);
 *                     the free of a cell holding an empty version; the
 *                     first store into a NULL cell failing at each
 *                     allocation; two threads racing the first store into
 *                     fresh NULL cells (same type: both OK; two types:
 *                     one OK, the other CHAMP_EPOOL, nothing leaked)
 *   many_pools_one_thread  one thread using 12 concurrent pools, half freed,
 *                     then 12 more (its heap table grows and drops the
 *                     dead pools' entries)
 *   oom_threads       allocation failures on several threads at once (a
 *                     backing allocator refusing per thread, at random or
 *                     every call; champ_pool_fail_after): every refused
 *                     call changes nothing, a thread never refused never
 *                     fails, nothing leaks (pool and backing allocator)
 *
 * Checks run on the main thread: worker threads count what they see and
 * main checks the counts after joining them (the harness is not thread
 * safe).  The TSan stress program is tests/stress/tsan_concurrent.c.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "../src/internal.h"

static champ_pool *cc_pool(void) {
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.concurrent = true;
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    return p;
}

static champ_pool_audit cc_audit(const champ_pool *p) {
    champ_pool_audit a;
    champ__pool_audit(p, &a);
    return a;
}

/* The books of an idle pool, as validate checks them. */
static void cc_check_books(const champ_pool *p, const char *what) {
    champ_pool_audit a = cc_audit(p);
    CHECK(a.free_walked == a.free_counted, "%s: free lists hold %zu, counted %zu", what,
          a.free_walked, a.free_counted);
    CHECK(a.imbalance == 0, "%s: books off by %lld", what, a.imbalance);
    CHECK_EQ(a.misfiled, 0, what);
    CHECK(a.pages_walked == a.pages_counted && a.handles_walked == a.handles_counted &&
              a.pages_bad == 0 && a.open_walked == a.open_expected,
          "%s: handle pages %zu/%zu, handles %zu/%zu", what, a.pages_walked,
          a.pages_counted, a.handles_walked, a.handles_counted);
    CHECK_EQ(a.live, th_pool_live(p), what);
}

/* ------------------------------------------------------------------ */
/* One thread: the same as a plain pool                                */
/* ------------------------------------------------------------------ */

enum { DIFF_VERSIONS = 8 };

static void cc_diff_round(champ_key_kind kind, uint64_t seed) {
    champ_pool *cp = cc_pool(), *pp = NULL;
    CHECK_ST(champ_pool_new(NULL, &pp), CHAMP_OK);
    if (!cp || !pp) {
        champ_pool_free(cp);
        champ_pool_free(pp);
        return;
    }
    champ_config cc = th_kind_config(kind, 99, cp), pc = th_kind_config(kind, 99, pp);
    champ_map *a[DIFF_VERSIONS] = {0}, *b[DIFF_VERSIONS] = {0};
    CHECK_ST(champ_new(&cc, &a[0]), CHAMP_OK);
    CHECK_ST(champ_new(&pc, &b[0]), CHAMP_OK);
    th_rng r = {seed};
    th_set_seed(seed);
    long ops = th_iters(60000, 3000);
    size_t mismatches = 0, failures = 0;
    char k[32];
    for (long i = 0; i < ops && a[0] && b[0]; i++) {
        unsigned v = (unsigned)th_below(&r, DIFF_VERSIONS);
        uint64_t key = th_below(&r, 4000);
        void *val = th_tok(th_below(&r, 1000));
        unsigned what = (unsigned)th_below(&r, 100);
        snprintf(k, sizeof k, "k%llu", (unsigned long long)key);
        if (!a[v]) { /* a new version: a copy or a p-form of version 0 */
            champ_status sa, sb;
            if (what < 50) {
                sa = champ_copy(a[0], &a[v]);
                sb = champ_copy(b[0], &b[v]);
            } else if (kind == CHAMP_KEY_U64) {
                sa = champ_pset_u64(a[0], key, val, &a[v]);
                sb = champ_pset_u64(b[0], key, val, &b[v]);
            } else {
                sa = champ_premove_str(a[0], k, &a[v]);
                sb = champ_premove_str(b[0], k, &b[v]);
            }
            failures += sa != CHAMP_OK || sb != CHAMP_OK;
            continue;
        }
        if (what < 45) {
            if (kind == CHAMP_KEY_U64)
                failures += champ_set_u64(a[v], key, val, NULL) != CHAMP_OK ||
                            champ_set_u64(b[v], key, val, NULL) != CHAMP_OK;
            else
                failures += champ_set_str(a[v], k, val, NULL) != CHAMP_OK ||
                            champ_set_str(b[v], k, val, NULL) != CHAMP_OK;
        } else if (what < 75) {
            if (kind == CHAMP_KEY_U64)
                failures += champ_remove_u64(a[v], key, NULL) != CHAMP_OK ||
                            champ_remove_u64(b[v], key, NULL) != CHAMP_OK;
            else
                failures += champ_remove_str(a[v], k, NULL) != CHAMP_OK ||
                            champ_remove_str(b[v], k, NULL) != CHAMP_OK;
        } else if (what < 97) {
            void *va = NULL, *vb = NULL;
            bool fa = kind == CHAMP_KEY_U64 ? champ_get_u64(a[v], key, &va)
                                            : champ_get_str(a[v], k, &va);
            bool fb = kind == CHAMP_KEY_U64 ? champ_get_u64(b[v], key, &vb)
                                            : champ_get_str(b[v], k, &vb);
            mismatches += fa != fb || va != vb;
        } else if (v != 0) { /* drop a version */
            champ_free(a[v]);
            champ_free(b[v]);
            a[v] = b[v] = NULL;
        }
        mismatches += champ_size(a[v]) != champ_size(b[v]);
    }
    CHECK_EQ(failures, 0, "updates of both pools succeed");
    CHECK_EQ(mismatches, 0, "the concurrent pool's maps answer as the plain pool's");
    for (unsigned v = 0; v < DIFF_VERSIONS; v++)
        if (a[v] && b[v]) {
            CHECK(th_same_dump(a[v], b[v]), "version %u: same trie in both pools", v);
            CHECK(champ_equal(a[v], b[v], NULL, NULL), "version %u: equal across pools", v);
        }
    if (a[0])
        CHECK_VALID(a[0], "concurrent pool, one thread");
    cc_check_books(cp, "differential");
    champ_pool_stats st;
    CHECK_ST(champ_pool_stats_get(cp, &st, sizeof st), CHAMP_OK);
    CHECK(st.bytes_peak >= st.bytes_live && st.bytes_live <= st.bytes_reserved,
          "stats: peak %zu, live %zu, reserved %zu", st.bytes_peak, st.bytes_live,
          st.bytes_reserved);
    CHECK_ST(champ_pool_trim(cp), CHAMP_OK);
    if (a[0])
        CHECK_VALID(a[0], "concurrent pool, trimmed");
    for (unsigned v = 0; v < DIFF_VERSIONS; v++) {
        champ_free(a[v]);
        champ_free(b[v]);
    }
    CHECK_EQ(th_pool_live(cp), 0, "concurrent pool drained");
    CHECK_EQ(th_pool_live(pp), 0, "plain pool drained");
    th_set_seed(0);
    champ_pool_free(cp);
    champ_pool_free(pp);
}

static void test_differential(void) {
    cc_diff_round(CHAMP_KEY_U64, 0xc0c0a);
    cc_diff_round(CHAMP_KEY_BYTES, 0xc0c0b);
}

/* ------------------------------------------------------------------ */
/* Threads and a cell                                                  */
/* ------------------------------------------------------------------ */

enum { CELL_THREADS = 4 };

typedef struct cell_arg {
    champ_cell *cell;
    uint64_t tid;
    long rounds;
    long published;  /* successful cas */
    long errors;     /* calls that failed, or a snapshot that read wrong */
} cell_arg;

/* Key tid holds how many versions thread tid published; keys 100.. are
 * filler that every version has. */
static void *cell_worker(void *v) {
    cell_arg *a = v;
    th_rng r = {a->tid * 7919 + 1};
    for (long i = 0; i < a->rounds; i++) {
        champ_map *snap = NULL, *next = NULL;
        if (champ_cell_load(a->cell, &snap) != CHAMP_OK || !snap) {
            a->errors++;
            continue;
        }
        for (int j = 0; j < 16; j++) { /* 16 lookups */
            uint64_t key = 100 + th_below(&r, 1000);
            void *val = NULL;
            if (!champ_get_u64(snap, key, &val) || val != th_tok(key))
                a->errors++;
        }
        void *mine = NULL;
        champ_get_u64(snap, a->tid, &mine);
        uint64_t count = mine ? (uint64_t)((uintptr_t)mine - 16) / 16 : 0;
        if ((long)count != a->published)
            a->errors++; /* a lost update: our last publication is not there */
        if (champ_pset_u64(snap, a->tid, th_tok(count + 1), &next) != CHAMP_OK) {
            a->errors++;
        } else if (i % 64 == 0) {
            bool swapped = false;
            if (champ_cell_cas(a->cell, snap, next, &swapped) != CHAMP_OK)
                a->errors++;
            a->published += swapped;
        }
        champ_free(next);
        champ_free(snap);
    }
    return NULL;
}

static void test_cell_threads(void) {
    champ_pool *p = cc_pool();
    if (!p)
        return;
    champ_config c = th_kind_config(CHAMP_KEY_U64, 5, p);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    champ_cell *cell = NULL;
    if (m) {
        for (uint64_t k = 100; k < 1100; k++)
            champ_set_u64(m, k, th_tok(k), NULL);
        CHECK_ST(champ_cell_new(m, &cell), CHAMP_OK);
    }
    if (!cell) {
        champ_free(m);
        champ_pool_free(p);
        return;
    }
    cell_arg a[CELL_THREADS];
    pthread_t id[CELL_THREADS];
    int made = 0;
    for (int i = 0; i < CELL_THREADS; i++) {
        a[i] = (cell_arg){cell, (uint64_t)i, th_iters(20000, 1000), 0, 0};
        if (pthread_create(&id[i], NULL, cell_worker, &a[i]) == 0)
            made++;
    }
    CHECK_EQ(made, CELL_THREADS, "threads started");
    for (int i = 0; i < made; i++)
        pthread_join(id[i], NULL);
    champ_map *last = NULL;
    CHECK_ST(champ_cell_load(cell, &last), CHAMP_OK);
    for (int i = 0; i < made; i++) {
        CHECK_EQ(a[i].errors, 0, "a thread's calls and reads");
        void *v = NULL;
        bool has = last && champ_get_u64(last, (uint64_t)i, &v);
        long count = has ? (long)(((uintptr_t)v - 16) / 16) : 0;
        CHECK_EQ(count, a[i].published, "every publication of a thread is in the cell");
    }
    champ_free(last);
    CHECK_VALID(m, "after the threads, the cell holding the last version");
    champ_cell_free(cell);
    CHECK_VALID(m, "after the threads");
    cc_check_books(p, "after the threads");
    champ_pool_audit au = cc_audit(p);
    CHECK(au.heaps >= 2 && au.heaps <= CELL_THREADS + 1, "heaps: %zu", au.heaps);
    champ_free(m);
    CHECK_EQ(th_pool_live(p), 0, "the pool is empty at the end");
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* A producer and a consumer                                           */
/* ------------------------------------------------------------------ */

enum { QCAP = 8 };

typedef struct queue {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    champ_map *item[QCAP];
    unsigned head, n;
    bool done;
} queue;

typedef struct pc_arg {
    queue *q;
    champ_map *proto;
    long rounds;
    uint64_t keys;
    long errors;
} pc_arg;

static void *producer(void *v) {
    pc_arg *a = v;
    for (long i = 0; i < a->rounds; i++) {
        champ_map *m = NULL;
        if (champ_new_like(a->proto, &m) != CHAMP_OK) {
            a->errors++;
            continue;
        }
        for (uint64_t k = 0; k < a->keys; k++)
            a->errors += champ_set_u64(m, k * 31 + (uint64_t)i, th_tok(k), NULL) != CHAMP_OK;
        pthread_mutex_lock(&a->q->lock);
        while (a->q->n == QCAP)
            pthread_cond_wait(&a->q->cond, &a->q->lock);
        a->q->item[(a->q->head + a->q->n++) % QCAP] = m;
        pthread_cond_broadcast(&a->q->cond);
        pthread_mutex_unlock(&a->q->lock);
    }
    pthread_mutex_lock(&a->q->lock);
    a->q->done = true;
    pthread_cond_broadcast(&a->q->cond);
    pthread_mutex_unlock(&a->q->lock);
    return NULL;
}

static void *consumer(void *v) {
    pc_arg *a = v;
    for (;;) {
        pthread_mutex_lock(&a->q->lock);
        while (a->q->n == 0 && !a->q->done)
            pthread_cond_wait(&a->q->cond, &a->q->lock);
        if (a->q->n == 0) {
            pthread_mutex_unlock(&a->q->lock);
            return NULL;
        }
        champ_map *m = a->q->item[a->q->head];
        a->q->head = (a->q->head + 1) % QCAP;
        a->q->n--;
        pthread_cond_broadcast(&a->q->cond);
        pthread_mutex_unlock(&a->q->lock);
        a->errors += champ_size(m) != a->keys;
        champ_free(m);
    }
}

static void test_producer_consumer(void) {
    champ_pool *p = cc_pool();
    if (!p)
        return;
    champ_config c = th_kind_config(CHAMP_KEY_U64, 6, p);
    champ_map *proto = NULL;
    CHECK_ST(champ_new(&c, &proto), CHAMP_OK);
    if (!proto) {
        champ_pool_free(p);
        return;
    }
    queue q;
    memset(&q, 0, sizeof q);
    pthread_mutex_init(&q.lock, NULL);
    pthread_cond_init(&q.cond, NULL);
    uint64_t keys = 2000;
    long rounds = th_iters(1500, 100);
    pc_arg pa = {&q, proto, rounds, keys, 0}, ca = pa;
    pthread_t tp, tc;
    bool ok = pthread_create(&tp, NULL, producer, &pa) == 0;
    ok = ok && pthread_create(&tc, NULL, consumer, &ca) == 0;
    CHECK(ok, "threads started");
    if (ok) {
        pthread_join(tp, NULL);
        pthread_join(tc, NULL);
    }
    CHECK_EQ(pa.errors + ca.errors, 0, "producer and consumer");
    champ_pool_stats st;
    CHECK_ST(champ_pool_stats_get(p, &st, sizeof st), CHAMP_OK);
    /* Up to QCAP + 2 maps of 2000 keys (about 40 KB each) live at once;
     * made and freed: rounds * 40 KB (60 MB).  Without the depot every
     * map would take fresh chunks. */
    size_t bound = 8u << 20;
    printf("  producer/consumer: %ld maps of %llu keys made and freed: %zu bytes reserved, "
           "peak live %zu\n",
           rounds, (unsigned long long)keys, st.bytes_reserved, st.bytes_peak);
    CHECK(st.bytes_reserved <= bound,
          "producer/consumer: %zu bytes reserved after %ld maps of %llu keys (peak live %zu)",
          st.bytes_reserved, rounds, (unsigned long long)keys, st.bytes_peak);
    CHECK_VALID(proto, "producer/consumer");
    cc_check_books(p, "producer/consumer");
    champ_free(proto);
    CHECK_EQ(th_pool_live(p), 0, "drained");
    pthread_cond_destroy(&q.cond);
    pthread_mutex_destroy(&q.lock);
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* Heaps outlive their threads                                         */
/* ------------------------------------------------------------------ */

typedef struct adopt_arg {
    champ_map *proto;
    champ_map *keep;  /* a map the thread leaves for main */
    uint64_t base;
    long errors;
} adopt_arg;

static void *adopt_worker(void *v) {
    adopt_arg *a = v;
    champ_map *m = NULL, *x = NULL;
    a->errors += champ_new_like(a->proto, &m) != CHAMP_OK;
    a->errors += champ_new_like(a->proto, &x) != CHAMP_OK;
    for (uint64_t k = 0; k < 3000 && m && x; k++) {
        a->errors += champ_set_u64(m, a->base + k, NULL, NULL) != CHAMP_OK;
        a->errors += champ_set_u64(x, a->base + k, NULL, NULL) != CHAMP_OK;
    }
    champ_free(x); /* free blocks in the thread's heap when it exits */
    a->keep = m;
    return NULL;
}

typedef struct stale_arg {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int step;            /* 1: used the first pool; 2: main freed it */
    champ_pool *first, *second;
    long errors;
} stale_arg;

static void *stale_worker(void *v) {
    stale_arg *a = v;
    champ_config c = th_kind_config(CHAMP_KEY_U64, 8, a->first);
    champ_map *m = NULL;
    a->errors += champ_new(&c, &m) != CHAMP_OK;
    for (uint64_t k = 0; k < 500 && m; k++)
        a->errors += champ_set_u64(m, k, NULL, NULL) != CHAMP_OK;
    champ_free(m);
    pthread_mutex_lock(&a->lock);
    a->step = 1;
    pthread_cond_broadcast(&a->cond);
    while (a->step != 2)
        pthread_cond_wait(&a->cond, &a->lock);
    pthread_mutex_unlock(&a->lock);
    /* the first pool is gone (a new one may have its address): this
     * thread's entry for it must not be taken for the new one */
    c = th_kind_config(CHAMP_KEY_U64, 9, a->second);
    a->errors += champ_new(&c, &m) != CHAMP_OK;
    for (uint64_t k = 0; k < 500 && m; k++)
        a->errors += champ_set_u64(m, k, NULL, NULL) != CHAMP_OK;
    champ_free(m);
    return NULL; /* exits with entries for both pools */
}

static void test_heap_adoption(void) {
    champ_pool *p = cc_pool();
    if (!p)
        return;
    champ_config c = th_kind_config(CHAMP_KEY_U64, 7, p);
    champ_map *proto = NULL;
    CHECK_ST(champ_new(&c, &proto), CHAMP_OK);
    if (!proto) {
        champ_pool_free(p);
        return;
    }
    size_t heaps0 = cc_audit(p).heaps; /* main's, from making proto */
    adopt_arg a[3];
    for (int i = 0; i < 3; i++) { /* one after the other */
        a[i] = (adopt_arg){proto, NULL, (uint64_t)i * 100000, 0};
        pthread_t t;
        if (pthread_create(&t, NULL, adopt_worker, &a[i]) != 0) {
            CHECK(false, "thread %d started", i);
            continue;
        }
        pthread_join(t, NULL);
        CHECK_EQ(a[i].errors, 0, "a thread's updates");
        CHECK_EQ(cc_audit(p).heaps, heaps0 + 1, "threads in turn share one heap");
    }
    champ_pool_stats st;
    CHECK_ST(champ_pool_stats_get(p, &st, sizeof st), CHAMP_OK);
    CHECK(st.bytes_free_listed > 0, "free blocks of exited threads are kept");
    for (int i = 0; i < 3; i++)
        if (a[i].keep) {
            CHECK_EQ(champ_size(a[i].keep), 3000, "a map left by an exited thread");
            CHECK_VALID(a[i].keep, "a map left by an exited thread");
        }
    cc_check_books(p, "heaps adopted");
    for (int i = 0; i < 3; i++)
        champ_free(a[i].keep);
    champ_free(proto);
    CHECK_EQ(th_pool_live(p), 0, "drained");
    champ_pool_free(p);

    /* A thread outlives a pool it used. */
    stale_arg s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    s.first = cc_pool();
    pthread_t t;
    if (s.first && pthread_create(&t, NULL, stale_worker, &s) == 0) {
        pthread_mutex_lock(&s.lock);
        while (s.step != 1)
            pthread_cond_wait(&s.cond, &s.lock);
        pthread_mutex_unlock(&s.lock);
        champ_pool_free(s.first);
        s.second = cc_pool();
        pthread_mutex_lock(&s.lock);
        s.step = 2;
        pthread_cond_broadcast(&s.cond);
        pthread_mutex_unlock(&s.lock);
        pthread_join(t, NULL);
        CHECK_EQ(s.errors, 0, "a thread that outlived a pool");
        if (s.second) {
            CHECK_EQ(cc_audit(s.second).heaps, 1, "the new pool's own heap");
            cc_check_books(s.second, "after a thread outlived a pool");
            CHECK_EQ(th_pool_live(s.second), 0, "drained");
        }
        champ_pool_free(s.second);
    } else {
        champ_pool_free(s.first);
    }
    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.lock);
}

/* ------------------------------------------------------------------ */
/* How a block finds the thread's heap                                 */
/* ------------------------------------------------------------------ */

/* pool_alloc and pool_free of a concurrent pool go straight to the
 * calling thread's heap through a one-entry thread-local cache (pool.h,
 * pool.c).  Two things it must get right beyond the one-pool case the
 * other tests run: a thread that alternates between pools (the cache
 * misses, the thread's list of heaps answers), and a thread that cannot
 * get a heap at all because the backing allocator refuses it (updates
 * fail with CHAMP_ENOMEM and change nothing, as do the calls that make a
 * handle: copy, new_like, pset; frees still work, their blocks wait in
 * the depot). */

typedef struct route_arg {
    champ_map *m[2];     /* alternate: one map in each pool          */
    champ_map *drop[2];  /* freed by the thread: one in each pool    */
    champ_map *held;     /* no-heap part: the map an update must fail on */
    champ_map *gone;     /* ... and one the thread frees              */
    champ_map *gone_big; /* ... and a bytes map of long keys: large blocks */
    long refused;        /* updates refused with CHAMP_ENOMEM         */
    long handles_refused; /* copy, new_like, pset refused             */
    long errors;
} route_arg;

static void *route_alternate(void *v) {
    route_arg *a = v;
    for (uint64_t i = 0; i < 3000; i++)
        for (int j = 0; j < 2; j++) {
            a->errors += champ_set_u64(a->m[j], i * 2 + (uint64_t)j, th_tok(i), NULL) != CHAMP_OK;
            if (i % 3 == 0)
                a->errors += champ_remove_u64(a->m[j], i, NULL) != CHAMP_OK;
            if (i == 1500) {
                champ_free(a->drop[j]);
                a->drop[j] = NULL;
            }
        }
    return NULL;
}

/* Without a heap, an update that needs a block fails with CHAMP_ENOMEM
 * and changes nothing; one that fits in its node's spare room needs none
 * and succeeds.  The thread keeps a model of which it was. */
static void *route_heapless(void *v) {
    route_arg *a = v;
    enum { N0 = 1000, NEW = 60 };
    bool have[N0 + NEW];
    for (int i = 0; i < N0 + NEW; i++)
        have[i] = i < N0;
    for (uint64_t i = 0; i < NEW; i++) {
        champ_status s1 = champ_set_u64(a->held, 1000000 + i, th_tok(N0 + i), NULL);
        champ_status s2 = champ_remove_u64(a->held, i * 7, NULL);
        a->refused += (s1 == CHAMP_ENOMEM) + (s2 == CHAMP_ENOMEM);
        a->errors += (s1 != CHAMP_OK && s1 != CHAMP_ENOMEM) +
                     (s2 != CHAMP_OK && s2 != CHAMP_ENOMEM);
        have[N0 + i] = s1 == CHAMP_OK;
        if (s2 == CHAMP_OK)
            have[i * 7] = false;
    }
    size_t n = 0;
    for (uint64_t i = 0; i < N0 + NEW; i++) {
        uint64_t k = i < N0 ? i : 1000000 + i - N0;
        void *val = NULL;
        bool got = champ_get_u64(a->held, k, &val);
        a->errors += got != have[i] || (got && val != th_tok(i));
        n += have[i];
    }
    a->errors += champ_size(a->held) != n;
    /* handles come from the thread's heap too: a copy, an empty map of the
     * type and a persistent form are refused with *out NULL, held as it
     * was */
    champ_map *c1 = th_tok(1), *c2 = th_tok(2), *c3 = th_tok(3);
    a->handles_refused += champ_copy(a->held, &c1) == CHAMP_ENOMEM && c1 == NULL;
    a->handles_refused += champ_new_like(a->held, &c2) == CHAMP_ENOMEM && c2 == NULL;
    a->handles_refused += champ_pset_u64(a->held, 1, th_tok(9), &c3) == CHAMP_ENOMEM && c3 == NULL;
    a->errors += champ_size(a->held) != n;
    champ_free(a->gone); /* every node to the depot */
    a->gone = NULL;
    champ_free(a->gone_big); /* its key blobs to the depot's large lists */
    a->gone_big = NULL;
    return NULL;
}

static void test_heap_routes(void) {
    /* A thread alternating between two pools, and main too. */
    champ_pool *p[2] = {cc_pool(), cc_pool()};
    route_arg a;
    memset(&a, 0, sizeof a);
    for (int j = 0; j < 2 && p[j]; j++) {
        champ_config c = th_kind_config(CHAMP_KEY_U64, 11 + (uint64_t)j, p[j]);
        CHECK_ST(champ_new(&c, &a.m[j]), CHAMP_OK);
        CHECK_ST(champ_new(&c, &a.drop[j]), CHAMP_OK);
    }
    if (p[0] && p[1] && a.m[0] && a.m[1] && a.drop[0] && a.drop[1]) {
        for (uint64_t i = 0; i < 2000; i++) /* main alternates as well */
            for (int j = 0; j < 2; j++)
                CHECK_ST(champ_set_u64(a.drop[j], i, th_tok(i), NULL), CHAMP_OK);
        pthread_t t;
        if (pthread_create(&t, NULL, route_alternate, &a) == 0) {
            pthread_join(t, NULL);
            CHECK_EQ(a.errors, 0, "updates of a thread alternating between pools");
            for (int j = 0; j < 2; j++) {
                static uint64_t model[6000]; /* value token + 1; 0: absent */
                memset(model, 0, sizeof model);
                for (uint64_t i = 0; i < 3000; i++) { /* the thread's steps */
                    model[i * 2 + (uint64_t)j] = (uint64_t)(uintptr_t)th_tok(i) + 1;
                    if (i % 3 == 0)
                        model[i] = 0;
                }
                size_t want = 0;
                for (uint64_t k = 0; k < 6000; k++) {
                    void *val = NULL;
                    bool got = champ_get_u64(a.m[j], k, &val);
                    CHECK(got == (model[k] != 0) &&
                              (!got || (uint64_t)(uintptr_t)val + 1 == model[k]),
                          "pool %d key %llu: %s", j, (unsigned long long)k,
                          got ? "present" : "absent");
                    want += model[k] != 0;
                }
                CHECK_EQ(champ_size(a.m[j]), want, "entries after alternating");
                CHECK_VALID(a.m[j], "a map updated by a thread alternating pools");
                CHECK_EQ(cc_audit(p[j]).heaps, 2, "main's heap and the thread's");
                cc_check_books(p[j], "after alternating");
            }
        } else {
            CHECK(false, "thread started");
        }
    }
    for (int j = 0; j < 2; j++) {
        champ_free(a.m[j]);
        champ_free(a.drop[j]);
        if (p[j]) {
            CHECK_EQ(th_pool_live(p[j]), 0, "drained");
            champ_pool_free(p[j]);
        }
    }

    /* A thread that cannot get a heap. */
    th_alloc al;
    champ_pool *q = th_alloc_pool(&al, true);
    if (!q)
        return;
    memset(&a, 0, sizeof a);
    champ_config c = th_kind_config(CHAMP_KEY_U64, 13, q);
    CHECK_ST(champ_new(&c, &a.held), CHAMP_OK);
    CHECK_ST(champ_new(&c, &a.gone), CHAMP_OK);
    for (uint64_t i = 0; i < 1000 && a.held && a.gone; i++) {
        CHECK_ST(champ_set_u64(a.held, i, th_tok(i), NULL), CHAMP_OK);
        CHECK_ST(champ_set_u64(a.gone, i, th_tok(i), NULL), CHAMP_OK);
    }
    /* large blocks (key blobs past the small classes) for the depot, and
     * one of the same size free in main's heap: the depot's large lists
     * are filled by the heapless thread and joined to main's */
    champ_config bc = th_kind_config(CHAMP_KEY_BYTES, 14, q);
    champ_map *big_main = NULL;
    CHECK_ST(champ_new(&bc, &a.gone_big), CHAMP_OK);
    CHECK_ST(champ_new(&bc, &big_main), CHAMP_OK);
    static char longkey[3000];
    for (int i = 0; i < 8 && a.gone_big && big_main; i++) {
        memset(longkey, 'a' + i, sizeof longkey);
        CHECK_ST(champ_set_bytes(a.gone_big, longkey, sizeof longkey, th_tok(1), NULL), CHAMP_OK);
        CHECK_ST(champ_set_bytes(big_main, longkey, sizeof longkey, th_tok(2), NULL), CHAMP_OK);
    }
    for (int i = 0; i < 4 && big_main; i++) {
        memset(longkey, 'a' + i, sizeof longkey);
        CHECK_ST(champ_remove_bytes(big_main, longkey, sizeof longkey, NULL), CHAMP_OK);
    }
    champ_pool_stats st0, st1;
    CHECK_ST(champ_pool_stats_get(q, &st0, sizeof st0), CHAMP_OK);
    size_t live0 = th_pool_live(q);
    size_t gone_bytes = 0;
    if (a.gone) {
        champ_stats ms;
        CHECK_ST(champ_stats_get(a.gone, &ms, sizeof ms), CHAMP_OK);
        gone_bytes = ms.node_bytes + ms.slack_bytes;
    }
    if (a.gone_big)
        gone_bytes += 8 * sizeof longkey; /* at least its key blobs */
    al.fail_at = (long)al.calls; /* from now on, no new heap */
    al.fail_persist = true;
    pthread_t t;
    if (a.held && a.gone && pthread_create(&t, NULL, route_heapless, &a) == 0) {
        pthread_join(t, NULL);
        al.fail_at = -1;
        al.fail_persist = false;
        CHECK_EQ(a.errors, 0, "a thread without a heap: each update done or refused "
                              "whole, reads and frees work");
        CHECK(a.refused > 0, "updates that need a block are refused (%ld)", a.refused);
        CHECK_EQ(a.handles_refused, 3, "a heapless thread's copy, new_like and pset refused");
        CHECK(al.failures > 0, "the heap's allocation was refused");
        CHECK_ST(champ_pool_stats_get(q, &st1, sizeof st1), CHAMP_OK);
        CHECK(st1.alloc_failures > st0.alloc_failures, "refusals counted: %llu -> %llu",
              (unsigned long long)st0.alloc_failures, (unsigned long long)st1.alloc_failures);
        CHECK_EQ(cc_audit(q).heaps, 1, "no heap for the refused thread");
        CHECK(th_pool_live(q) <= live0 - gone_bytes, "the freed map's nodes left live bytes");
        CHECK_VALID(a.held, "after refused updates");
        cc_check_books(q, "after a heapless thread");
        /* the depot's blocks serve main again */
        for (uint64_t i = 0; i < 1000; i++)
            CHECK_ST(champ_set_u64(a.held, 5000 + i, th_tok(i), NULL), CHAMP_OK);
        CHECK_VALID(a.held, "after main's updates");
        /* ... and the large ones: long keys again */
        for (int i = 0; i < 12 && big_main; i++) {
            memset(longkey, 'A' + i, sizeof longkey);
            CHECK_ST(champ_set_bytes(big_main, longkey, sizeof longkey, th_tok(3), NULL),
                     CHAMP_OK);
        }
        CHECK_EQ(big_main ? champ_size(big_main) : 0, 16, "long keys in main's map");
        CHECK_VALID(big_main, "main's map of long keys");
        cc_check_books(q, "after main took the depot");
    } else {
        CHECK(false, "heapless set-up");
    }
    champ_free(a.held);
    champ_free(a.gone);
    champ_free(a.gone_big);
    champ_free(big_main);
    CHECK_EQ(th_pool_live(q), 0, "drained");
    champ_pool_free(q);
    CHECK_EQ(al.live_bytes, 0, "every backing byte given back");
    CHECK_EQ(al.size_mismatches, 0, "frees with their sizes");
}

/* ------------------------------------------------------------------ */
/* Default maps in threads; stats while threads work                   */
/* ------------------------------------------------------------------ */

typedef struct dflt_arg {
    uint64_t tid;
    long errors;
} dflt_arg;

static void *dflt_worker(void *v) {
    dflt_arg *a = v;
    champ_map *m = NULL, *s = NULL;
    a->errors += champ_new_u64(&m) != CHAMP_OK;
    a->errors += champ_new_set_bytes(&s) != CHAMP_OK;
    char k[32];
    for (uint64_t i = 0; i < 2000 && m && s; i++) {
        a->errors += champ_set_u64(m, i, th_tok(i + a->tid), NULL) != CHAMP_OK;
        snprintf(k, sizeof k, "t%llu-%llu", (unsigned long long)a->tid, (unsigned long long)i);
        a->errors += champ_add_str(s, k, NULL) != CHAMP_OK;
    }
    for (uint64_t i = 0; i < 2000 && m; i++) {
        void *val = NULL;
        a->errors += !champ_get_u64(m, i, &val) || val != th_tok(i + a->tid);
    }
    a->errors += champ_size(s) != 2000;
    champ_free(m);
    champ_free(s);
    return NULL;
}

typedef struct busy_arg {
    champ_pool *p;
    int *stop;
    long calls, odd;
} busy_arg;

static void *stats_reader(void *v) {
    busy_arg *a = v;
    while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE)) {
        champ_pool_stats st;
        if (champ_pool_stats_get(a->p, &st, sizeof st) != CHAMP_OK ||
            st.bytes_live > st.bytes_reserved + (1u << 20) || st.bytes_peak < st.bytes_live)
            a->odd++;
        a->calls++;
    }
    return NULL;
}

static void test_default_threads(void) {
    enum { NT = 3 };
    dflt_arg a[NT];
    pthread_t id[NT];
    champ_map *probe = NULL, *probe_set = NULL;
    CHECK_ST(champ_new_u64(&probe), CHAMP_OK);
    CHECK_ST(champ_new_set_bytes(&probe_set), CHAMP_OK); /* its type made now */
    champ_free(probe_set);
    if (!probe)
        return;
    size_t live0 = th_pool_live(champ_pool_of(probe));
    busy_arg b = {champ_pool_of(probe), NULL, 0, 0};
    int stop = 0;
    b.stop = &stop;
    pthread_t reader;
    bool reading = pthread_create(&reader, NULL, stats_reader, &b) == 0;
    int made = 0;
    for (int i = 0; i < NT; i++) {
        a[i] = (dflt_arg){(uint64_t)i, 0};
        if (pthread_create(&id[i], NULL, dflt_worker, &a[i]) == 0)
            made++;
    }
    for (int i = 0; i < made; i++)
        pthread_join(id[i], NULL);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    if (reading)
        pthread_join(reader, NULL);
    CHECK_EQ(made, NT, "threads started");
    for (int i = 0; i < made; i++)
        CHECK_EQ(a[i].errors, 0, "default maps in a thread");
    CHECK_EQ(b.odd, 0, "stats read while threads work");
    CHECK_EQ(th_pool_live(champ_pool_of(probe)), live0,
             "the threads' maps gave back what they took");
    CHECK_VALID(probe, "the default pool after the threads");
    champ_free(probe);
}

/* ------------------------------------------------------------------ */
/* Cells and types that cannot share entries                           */
/* ------------------------------------------------------------------ */

static long cc_rel[256];
static void cc_val_release(void *v, void *ctx) {
    (void)ctx;
    cc_rel[(uintptr_t)v % 256]++;
}

/* Regression (KB4, found by the fuzz target): a cell shares its version's
 * nodes with maps, as champ_copy does, but took maps of a type that
 * releases values (or keys) without retaining them, which champ_copy
 * refuses: the entries that a later update of the map copied out of the
 * shared nodes were then released twice.  champ_cell_new, store and cas
 * now refuse such maps (CHAMP_EINVAL) and change nothing; every value is
 * released exactly once when the map goes. */
static void test_cell_noncopyable(void) {
    for (int pc = 0; pc < 2; pc++) {
        memset(cc_rel, 0, sizeof cc_rel);
        champ_pool *p = pc ? cc_pool() : NULL;
        if (pc && !p)
            return;
        champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
        c.val_release = cc_val_release; /* no val_retain */
        c.pool = p;
        champ_map *m = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        if (!m)
            return;
        for (uint64_t k = 1; k <= 40; k++)
            CHECK_ST(champ_set_u64(m, k, (void *)(uintptr_t)k, NULL), CHAMP_OK);
        champ_map *cp = NULL;
        CHECK_ST(champ_copy(m, &cp), CHAMP_EINVAL); /* the rule cells now follow */
        champ_cell *cell = (champ_cell *)(uintptr_t)1;
        CHECK_ST(champ_cell_new(m, &cell), CHAMP_EINVAL);
        CHECK(cell == NULL, "a refused cell_new leaves *out NULL");
        CHECK_ST(champ_cell_new(NULL, &cell), CHAMP_OK); /* an empty cell: fine */
        CHECK_ST(champ_cell_store(cell, m), CHAMP_EINVAL);
        bool swapped = true;
        CHECK_ST(champ_cell_cas(cell, NULL, m, &swapped), CHAMP_EINVAL);
        CHECK(swapped, "a refused cas leaves *swapped as it was");
        champ_map *out = (champ_map *)(uintptr_t)1;
        CHECK_ST(champ_cell_load(cell, &out), CHAMP_OK);
        CHECK(out == NULL, "the cell stayed empty");
        /* updates copy nothing out of shared nodes: the map owns them all */
        for (uint64_t k = 1; k <= 40; k += 3)
            CHECK_ST(champ_set_u64(m, k, (void *)(uintptr_t)(k + 100), NULL), CHAMP_OK);
        for (uint64_t k = 2; k <= 40; k += 5)
            CHECK_ST(champ_remove_u64(m, k, NULL), CHAMP_OK);
        CHECK_VALID(m, "after the updates");
        champ_cell_free(cell);
        champ_free(m);
        /* each value stored (1..40, then 101..140 for 14 keys) released once */
        long total = 0, twice = 0;
        for (int i = 0; i < 256; i++) {
            total += cc_rel[i];
            if (cc_rel[i] > 1)
                twice++;
        }
        CHECK(total == 54, "releases: %ld, want 54 (pool %d)", total, pc);
        CHECK(twice == 0, "%ld values released more than once (pool %d)", twice, pc);
        if (p) {
            CHECK_EQ(th_pool_live(p), 0, "the pool drained");
            champ_pool_free(p);
        }
    }
    /* keys: a generic type with key_release but no key_retain */
    th_cbctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.hash_mode = TH_HASH_GOOD;
    champ_config g = th_generic_config(&ctx, true, NULL);
    g.key_retain = NULL;
    g.val_retain = NULL;
    g.val_release = NULL;
    champ_map *gm = NULL;
    CHECK_ST(champ_new(&g, &gm), CHAMP_OK);
    champ_cell *gc = (champ_cell *)(uintptr_t)1;
    CHECK_ST(champ_cell_new(gm, &gc), CHAMP_EINVAL);
    CHECK(gc == NULL, "a refused cell_new leaves *out NULL (generic)");
    champ_free(gm);
}

/* A hash callback that, armed, shares the map being updated with a cell
 * (store, cas or a new cell). */
static struct {
    champ_map *m;
    champ_cell *cell;
    int what; /* 0 store, 1 cas, 2 new */
    bool armed;
    champ_status st;
    champ_cell *made;
} cc_cb;

static uint64_t cc_cb_hash(const void *k, void *ctx) {
    (void)ctx;
    if (cc_cb.armed) {
        cc_cb.armed = false;
        bool sw = false;
        if (cc_cb.what == 0)
            cc_cb.st = champ_cell_store(cc_cb.cell, cc_cb.m);
        else if (cc_cb.what == 1)
            cc_cb.st = champ_cell_cas(cc_cb.cell, NULL, cc_cb.m, &sw);
        else
            cc_cb.st = champ_cell_new(cc_cb.m, &cc_cb.made);
    }
    return th_mix64((uint64_t)(uintptr_t)k);
}
static bool cc_cb_equal(const void *a, const void *b, void *ctx) {
    (void)ctx;
    return a == b;
}

/* Regression (found by the fuzz target): champ_cell_store / cas / new of a
 * map m from a callback of an update of m took m's root while the update
 * went on with the nodes it owned (changed in place or freed them): the
 * cell then held a freed node (use after free at its next load or at
 * validate).  Sharing m with a cell is a copy of m, which the callback
 * table of champ.h refuses during an update: CHAMP_EBUSY, cell unchanged;
 * the same calls during a read of m (a lookup's hash) work. */
static void test_cell_from_callback(void) {
    for (int what = 0; what < 3; what++) {
        champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_GENERIC);
        c.hash = cc_cb_hash;
        c.equal = cc_cb_equal;
        c.pool = cc_pool();
        champ_map *m = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        champ_pool_free(c.pool); /* m keeps it */
        if (!m)
            return;
        for (uintptr_t k = 1; k <= 40; k++)
            CHECK_ST(champ_set(m, (void *)(k * 8), NULL, NULL), CHAMP_OK);
        champ_cell *cell = NULL;
        CHECK_ST(champ_cell_new(NULL, &cell), CHAMP_OK);
        memset(&cc_cb, 0, sizeof cc_cb);
        cc_cb.m = m;
        cc_cb.cell = cell;
        cc_cb.what = what;
        cc_cb.st = CHAMP_OK;
        cc_cb.armed = true;
        /* an update of m (an owned root, changed in place) */
        CHECK_ST(champ_set(m, (void *)(uintptr_t)(41 * 8), NULL, NULL), CHAMP_OK);
        CHECK(!cc_cb.armed, "the hash ran (%d)", what);
        CHECK(cc_cb.st == CHAMP_EBUSY, "cell call %d from an update of m: %s, want EBUSY",
              what, th_status_name(cc_cb.st));
        CHECK(cc_cb.made == NULL, "no cell made (%d)", what);
        champ_cell_free(cc_cb.made);
        champ_map *out = NULL;
        CHECK_ST(champ_cell_load(cell, &out), CHAMP_OK);
        CHECK(out == NULL, "the cell stayed empty (%d)", what);
        champ_free(out);
        CHECK_VALID(m, "m after the update");
        /* a read of m: sharing it is fine */
        cc_cb.armed = true;
        cc_cb.made = NULL;
        CHECK(champ_contains(m, (void *)(uintptr_t)8), "a lookup (%d)", what);
        CHECK(cc_cb.st == CHAMP_OK, "cell call %d from a read of m: %s", what,
              th_status_name(cc_cb.st));
        champ_cell *holder = what == 2 ? cc_cb.made : cell;
        out = NULL;
        CHECK_ST(champ_cell_load(holder, &out), CHAMP_OK);
        CHECK(out && champ_size(out) == 41, "the cell holds m's version (%d)", what);
        /* m changes on; the cell's version does not */
        for (uintptr_t k = 1; k <= 20; k++)
            CHECK_ST(champ_remove(m, (void *)(k * 8), NULL), CHAMP_OK);
        CHECK(out && champ_size(out) == 41 && champ_contains(out, (void *)(uintptr_t)8),
              "the snapshot kept its contents (%d)", what);
        CHECK_VALID(m, "m");
        champ_free(out);
        champ_cell_free(cc_cb.made);
        champ_cell_free(cell);
        champ_free(m);
    }
}

/* Regression (KB9, found by the fuzz target): the release callbacks that
 * champ_cell_free(c) runs (its version's last reference going) could call
 * c itself: a load took a snapshot of the version being dropped (its
 * nodes freed under the snapshot: use after free in the drop, ASan), a
 * store or cas would have swapped a version into a cell about to go, and
 * a free of c would have freed it twice.  While its free runs, a cell
 * refuses them: load, store and cas return CHAMP_EBUSY (*out NULL, the
 * map passed unchanged), champ_cell_free(c) returns at once; every value
 * is released exactly once.  Plain and concurrent pools (the latter
 * releases the version through a retired record, at once when no snapshot
 * pins it). */
static struct {
    champ_cell *cell;  /* the cell being freed */
    champ_map *other;  /* a map of the cell's type to store / cas */
    bool armed, ran;
    champ_status st_load, st_store, st_cas;
    champ_map *out;
    bool swapped;
    long retained[64], released[64];
} cf;

static void cf_val_retain(void *v, void *ctx) {
    (void)ctx;
    cf.retained[(uintptr_t)v % 64]++;
}

static void cf_val_release(void *v, void *ctx) {
    (void)ctx;
    cf.released[(uintptr_t)v % 64]++;
    if (!cf.armed)
        return;
    cf.armed = false;
    cf.ran = true;
    cf.out = (champ_map *)(uintptr_t)1;
    cf.st_load = champ_cell_load(cf.cell, &cf.out);
    cf.st_store = champ_cell_store(cf.cell, cf.other);
    cf.swapped = true;
    cf.st_cas = champ_cell_cas(cf.cell, NULL, cf.other, &cf.swapped);
    champ_cell_free(cf.cell); /* already going: returns at once */
}

static void test_cell_free_from_callback(void) {
    for (int pc = 0; pc < 2; pc++) {
        memset(&cf, 0, sizeof cf);
        champ_pool *p = pc ? cc_pool() : NULL;
        if (pc && !p)
            return;
        champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
        c.val_retain = cf_val_retain;
        c.val_release = cf_val_release;
        c.pool = p;
        champ_map *m = NULL, *other = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        if (p)
            champ_pool_free(p); /* the maps keep it */
        if (!m)
            return;
        CHECK_ST(champ_new_like(m, &other), CHAMP_OK);
        for (uint64_t k = 1; k <= 40; k++)
            CHECK_ST(champ_set_u64(m, k, (void *)(uintptr_t)k, NULL), CHAMP_OK);
        for (uint64_t k = 41; k <= 45; k++)
            CHECK_ST(champ_set_u64(other, k, (void *)(uintptr_t)k, NULL), CHAMP_OK);
        champ_cell *cell = NULL;
        CHECK_ST(champ_cell_new(m, &cell), CHAMP_OK);
        champ_free(m); /* the cell holds the version alone */
        if (!cell || !other) {
            champ_cell_free(cell);
            champ_free(other);
            return;
        }
        cf.cell = cell;
        cf.other = other;
        cf.armed = true;
        champ_cell_free(cell); /* its version goes: the releases run here */
        CHECK(cf.ran, "a release ran inside champ_cell_free (pool %d)", pc);
        CHECK(cf.st_load == CHAMP_EBUSY, "load of the cell being freed: %s, want EBUSY "
              "(pool %d)", th_status_name(cf.st_load), pc);
        CHECK(cf.out == NULL, "a refused load leaves *out NULL (pool %d)", pc);
        CHECK(cf.st_store == CHAMP_EBUSY, "store into the cell being freed: %s, want "
              "EBUSY (pool %d)", th_status_name(cf.st_store), pc);
        CHECK(cf.st_cas == CHAMP_EBUSY && cf.swapped, "cas on the cell being freed: %s, "
              "want EBUSY, *swapped untouched (pool %d)", th_status_name(cf.st_cas), pc);
        CHECK_EQ(champ_size(other), 5, "the map offered to the cell unchanged");
        CHECK_VALID(other, "the map offered to the cell");
        champ_free(cf.out == (champ_map *)(uintptr_t)1 ? NULL : cf.out);
        champ_free(other);
        long bad = 0;
        for (int v = 1; v <= 45; v++)
            bad += cf.released[v] != cf.retained[v] + 1;
        CHECK(bad == 0, "%ld values not released exactly once more than retained "
              "(pool %d)", bad, pc);
    }
}

/* Regression KB10 (CI's fuzzing, stop 29; the ASan report of 7ccbb03
 * looked the same): champ_free of a pinned snapshot freed its handle
 * first and then released its pin, and the pin was what kept a version
 * the cell had retired: that version's value releases ran with the
 * snapshot already freed, so a callback reading or updating the map
 * being freed (which the callback contract allows: it sees it empty, an
 * update gets CHAMP_EBUSY) read a freed handle (use after poison under
 * ASan).  The handle now lives, empty and framed, until the releases are
 * done. */
static struct {
    champ_map *snap;
    bool armed, ran;
    size_t size;
    bool found;
    champ_status st_clear, st_set, st_copy;
    champ_map *copy;
    long retained[64], released[64];
} fs;

static void fs_val_retain(void *v, void *ctx) {
    (void)ctx;
    fs.retained[(uintptr_t)v % 64]++;
}

static void fs_val_release(void *v, void *ctx) {
    (void)ctx;
    fs.released[(uintptr_t)v % 64]++;
    if (!fs.armed)
        return;
    fs.armed = false;
    fs.ran = true;
    fs.size = champ_size(fs.snap);
    fs.found = champ_get_u64(fs.snap, 1, NULL);
    fs.st_clear = champ_clear(fs.snap);
    fs.st_set = champ_set_u64(fs.snap, 99, (void *)(uintptr_t)9, NULL);
    fs.st_copy = champ_copy(fs.snap, &fs.copy);
    champ_free(fs.snap); /* already going: returns at once */
}

static void test_free_snapshot_callbacks(void) {
    memset(&fs, 0, sizeof fs);
    champ_pool *p = cc_pool();
    if (!p)
        return;
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    c.val_retain = fs_val_retain;
    c.val_release = fs_val_release;
    c.pool = p;
    champ_map *m = NULL, *v2 = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    champ_pool_free(p); /* the maps keep it */
    if (!m)
        return;
    CHECK_ST(champ_new_like(m, &v2), CHAMP_OK);
    for (uint64_t k = 1; k <= 40; k++)
        CHECK_ST(champ_set_u64(m, k, (void *)(uintptr_t)k, NULL), CHAMP_OK);
    for (uint64_t k = 41; k <= 45; k++)
        CHECK_ST(champ_set_u64(v2, k, (void *)(uintptr_t)k, NULL), CHAMP_OK);
    champ_cell *cell = NULL;
    CHECK_ST(champ_cell_new(m, &cell), CHAMP_OK);
    champ_free(m); /* the cell holds the version alone */
    champ_map *s = NULL;
    if (cell)
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
    if (!cell || !s || !v2) {
        champ_free(s);
        champ_cell_free(cell);
        champ_free(v2);
        return;
    }
    CHECK(map_pinned(s), "a concurrent pool's load is a pinned snapshot");
    CHECK_ST(champ_cell_store(cell, v2), CHAMP_OK); /* version 1 retired: s's pin holds it */
    CHECK_EQ(champ_size(s), 40, "the snapshot still reads version 1");
    fs.snap = s;
    fs.armed = true;
    champ_free(s); /* the pin goes: version 1's releases run here */
    CHECK(fs.ran, "a release ran inside champ_free of the snapshot");
    CHECK(fs.size == 0 && !fs.found, "the snapshot being freed reads empty (size %zu)",
          fs.size);
    CHECK(fs.st_clear == CHAMP_EBUSY && fs.st_set == CHAMP_EBUSY && fs.st_copy == CHAMP_EBUSY,
          "updates and copies of the snapshot being freed: %s, %s, %s, want EBUSY",
          th_status_name(fs.st_clear), th_status_name(fs.st_set),
          th_status_name(fs.st_copy));
    CHECK(fs.copy == NULL, "a refused copy leaves *out NULL");
    champ_free(fs.copy);
    champ_cell_free(cell);
    CHECK_EQ(champ_size(v2), 5, "the stored version unchanged");
    CHECK_VALID(v2, "the stored version");
    champ_free(v2);
    long bad = 0;
    for (int v = 1; v <= 45; v++)
        bad += fs.released[v] != fs.retained[v] + 1;
    CHECK(bad == 0, "%ld values not released exactly once more than retained", bad);
}

/* Regression (found while fixing KB9): a plain pool's champ_cell_load
 * took the type's reference for its snapshot only after allocating the
 * snapshot's handle, and in a fixed pool that allocation runs the
 * watermark callback, whose intended use is to free old versions: one
 * that freed the cell being loaded (the type's last other holder) freed
 * the type under the load, which then made a map of it (use after poison
 * with ASan, a type released twice without).  The load now takes both
 * references under the cell's lock, first.  The watermark is placed
 * between the pool's live bytes with the cell alone and those plus the
 * handle page the load allocates (measured on an identical pool first). */
static struct {
    champ_cell *cell;
    bool armed;
    int fired, freed;
} wf;

static void wf_mark(champ_pool *p, size_t live, size_t cap, void *ctx) {
    (void)p, (void)live, (void)cap, (void)ctx;
    wf.fired++;
    if (wf.armed) {
        wf.armed = false;
        champ_cell_free(wf.cell);
        wf.cell = NULL;
        wf.freed++;
    }
}

static _Alignas(16) unsigned char wf_buf[1 << 16];

/* A fixed pool with watermark w holding a cell of a 20-key map (the map
 * itself freed: the cell holds the version and the type alone). */
static champ_pool *wf_setup(double w, champ_cell **cell) {
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.buffer = wf_buf;
    pc.buffer_size = sizeof wf_buf;
    pc.watermark = w;
    pc.on_watermark = wf_mark;
    champ_pool *p = NULL;
    *cell = NULL;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    if (!p)
        return NULL;
    champ_config c = th_kind_config(CHAMP_KEY_U64, 5, p);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    for (uint64_t k = 1; m && k <= 20; k++)
        CHECK_ST(champ_set_u64(m, k, th_tok(k), NULL), CHAMP_OK);
    if (m)
        CHECK_ST(champ_cell_new(m, cell), CHAMP_OK);
    champ_free(m);
    return p;
}

static void test_cell_load_watermark_frees(void) {
    memset(&wf, 0, sizeof wf);
    champ_cell *cell = NULL;
    champ_pool *p = wf_setup(1.0, &cell);
    if (!p)
        return;
    champ_pool_stats st;
    CHECK_ST(champ_pool_stats_get(p, &st, sizeof st), CHAMP_OK);
    size_t live0 = st.bytes_live, cap = st.bytes_reserved;
    champ_cell_free(cell);
    champ_pool_free(p);

    memset(&wf, 0, sizeof wf);
    p = wf_setup(((double)live0 + 256.0) / (double)cap, &cell);
    if (!p || !cell) {
        champ_cell_free(cell);
        champ_pool_free(p);
        return;
    }
    wf.cell = cell;
    wf.armed = true;
    int fired0 = wf.fired;
    champ_map *out = NULL;
    champ_status s = champ_cell_load(cell, &out);
    CHECK(wf.fired == fired0 + 1 && wf.freed == 1,
          "the watermark fired inside the load and freed the cell (fired %d -> %d, "
          "live %zu of %zu)", fired0, wf.fired, live0, cap);
    CHECK(s == CHAMP_OK && out, "the load: %s", th_status_name(s));
    if (out) {
        CHECK_EQ(champ_size(out), 20, "the snapshot's size");
        bool all = true;
        for (uint64_t k = 1; k <= 20; k++) {
            void *v = NULL;
            all = champ_get_u64(out, k, &v) && v == th_tok(k) && all;
        }
        CHECK(all, "the snapshot holds the cell's version");
        CHECK_VALID(out, "the snapshot outliving its cell");
        champ_free(out);
    }
    if (wf.armed) { /* the watermark did not fire: free the cell here */
        champ_cell_free(cell);
    }
    CHECK_EQ(th_pool_live(p), 0, "the pool is empty once the snapshot goes");
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* Pinned snapshots (pin.c)                                            */
/* ------------------------------------------------------------------ */

enum { PIN_N = 3000 };

/* A map of `kind` (u64 or bytes keys) in pool p holding keys 0..n-1 with
 * value key + base; NULL on failure. */
static champ_map *pin_type[2]; /* a map of each kind's type (cells take one) */
static champ_map *pin_map(champ_pool *p, champ_key_kind kind, size_t n, uintptr_t base) {
    champ_map *m = NULL, **like = &pin_type[kind == CHAMP_KEY_BYTES];
    if (*like && champ_pool_of(*like) == p) {
        CHECK_ST(champ_new_like(*like, &m), CHAMP_OK);
    } else {
        champ_config c = CHAMP_CONFIG_INIT(kind);
        c.pool = p;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        CHECK_ST(champ_new_like(m, like), CHAMP_OK);
    }
    for (size_t i = 0; m && i < n; i++) {
        char kb[24];
        int len = snprintf(kb, sizeof kb, "key-%zu", i);
        void *v = (void *)(i + base);
        if (kind == CHAMP_KEY_U64)
            CHECK_ST(champ_set_u64(m, i, v, NULL), CHAMP_OK);
        else
            CHECK_ST(champ_set_bytes(m, kb, (size_t)len, v, NULL), CHAMP_OK);
    }
    return m;
}

/* Whether snapshot s holds exactly keys 0..n-1 with value key + base. */
static bool pin_holds(const champ_map *s, champ_key_kind kind, size_t n, uintptr_t base) {
    if (!s || champ_size(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char kb[24];
        int len = snprintf(kb, sizeof kb, "key-%zu", i);
        void *v = NULL;
        bool f = kind == CHAMP_KEY_U64 ? champ_get_u64(s, i, &v)
                                       : champ_get_bytes(s, kb, (size_t)len, &v);
        if (!f || v != (void *)(i + base))
            return false;
    }
    return true;
}

/* One kind, one scenario per block; every block ends with the pool empty. */
static void pin_scenarios(champ_key_kind kind) {
    champ_pool *p = cc_pool();
    if (!p)
        return;
    const char *kn = kind == CHAMP_KEY_U64 ? "u64" : "bytes";
    champ_free(pin_map(p, kind, 0, 0)); /* makes the type holder */
    const size_t live0 = th_pool_live(p);

    /* 1. A replaced version lives exactly as long as its last snapshot. */
    {
        champ_map *v1 = pin_map(p, kind, PIN_N, 1), *v2 = pin_map(p, kind, PIN_N, 7);
        champ_cell *cell = NULL;
        CHECK_ST(champ_cell_new(v1, &cell), CHAMP_OK);
        champ_free(v1); /* the cell holds the only references to version 1 */
        champ_map *s1 = NULL, *s2 = NULL;
        CHECK_ST(champ_cell_load(cell, &s1), CHAMP_OK);
        CHECK_ST(champ_cell_load(cell, &s2), CHAMP_OK);
        CHECK(s1 && s2 && map_pinned(s1) && map_pinned(s2), "%s: loads pin", kn);
        size_t before = th_pool_live(p);
        CHECK_ST(champ_cell_store(cell, v2), CHAMP_OK);
        CHECK(p->retired != NULL, "%s: the replaced version waits in a record", kn);
        CHECK_EQ(th_pool_live(p), before + RETIRED_BYTES, "version 1 kept while pinned");
        CHECK_VALID(s1, "a pinned snapshot of a replaced version (census counts the record)");
        CHECK(pin_holds(s1, kind, PIN_N, 1), "%s: s1 reads version 1", kn);
        champ_free(s1);
        CHECK(p->retired != NULL, "%s: still pinned by s2", kn);
        CHECK(pin_holds(s2, kind, PIN_N, 1), "%s: s2 reads version 1", kn);
        CHECK_EQ(th_pool_live(p), before + RETIRED_BYTES, "s1's handle went, no node");
        champ_free(s2);
        CHECK(p->retired == NULL, "%s: the last snapshot released version 1", kn);
        CHECK(th_pool_live(p) * 20 < before * 11, "%s: version 1's nodes freed (%zu of %zu live)",
              kn, th_pool_live(p), before);
        champ_map *s3 = NULL;
        CHECK_ST(champ_cell_load(cell, &s3), CHAMP_OK);
        CHECK(pin_holds(s3, kind, PIN_N, 7), "%s: a new load reads version 2", kn);
        CHECK_VALID(s3, "after the release");
        champ_free(s3);
        champ_cell_free(cell);
        champ_free(v2);
        CHECK_EQ(th_pool_live(p), live0, "scenario 1 drained");
    }

    /* 2. Snapshots outlive their cell; the record keeps their type. */
    {
        champ_map *v1 = pin_map(p, kind, PIN_N, 3);
        champ_cell *cell = NULL;
        CHECK_ST(champ_cell_new(v1, &cell), CHAMP_OK);
        champ_free(v1);
        champ_map *s[3] = {NULL, NULL, NULL};
        for (int i = 0; i < 3; i++)
            CHECK_ST(champ_cell_load(cell, &s[i]), CHAMP_OK);
        champ_cell_free(cell);
        CHECK(p->retired != NULL, "%s: the freed cell's version waits", kn);
        CHECK_VALID(s[1], "a snapshot of a freed cell");
        for (int i = 0; i < 3; i++) {
            CHECK(pin_holds(s[i], kind, PIN_N, 3), "%s: snapshot %d after the cell's free", kn,
                  i);
            champ_map *c = NULL;
            if (i == 2) {
                /* a copy of a pinned snapshot is counted: it outlives all */
                CHECK_ST(champ_copy(s[i], &c), CHAMP_OK);
                CHECK(c && !map_pinned(c), "%s: a copy is not pinned", kn);
            }
            champ_free(s[i]);
            if (c) {
                CHECK(p->retired == NULL, "%s: last pin gone, record released", kn);
                CHECK(pin_holds(c, kind, PIN_N, 3), "%s: the copy after every pin", kn);
                CHECK_VALID(c, "the copy");
                champ_free(c);
            }
        }
        CHECK_EQ(th_pool_live(p), live0, "scenario 2 drained");
    }

    /* 3. Updating a pinned snapshot copies what it changes and unpins it;
     * the cell's version does not change.  Every update form. */
    for (int form = 0; form < 4; form++) {
        champ_map *v1 = pin_map(p, kind, PIN_N, 5);
        champ_cell *cell = NULL;
        CHECK_ST(champ_cell_new(v1, &cell), CHAMP_OK);
        champ_map *s = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        if (!s)
            break;
        size_t want = PIN_N;
        if (form == 0) { /* set a new key */
            if (kind == CHAMP_KEY_U64)
                CHECK_ST(champ_set_u64(s, PIN_N + 1, (void *)1, NULL), CHAMP_OK);
            else
                CHECK_ST(champ_set_bytes(s, "new", 3, (void *)1, NULL), CHAMP_OK);
            want++;
        } else if (form == 1) { /* remove a key */
            char kb[24];
            int len = snprintf(kb, sizeof kb, "key-%d", 17);
            if (kind == CHAMP_KEY_U64)
                CHECK_ST(champ_remove_u64(s, 17, NULL), CHAMP_OK);
            else
                CHECK_ST(champ_remove_bytes(s, kb, (size_t)len, NULL), CHAMP_OK);
            want--;
        } else if (form == 2) { /* clear */
            CHECK_ST(champ_clear(s), CHAMP_OK);
            want = 0;
        } else { /* remove every key: the root goes */
            for (size_t i = 0; i < PIN_N; i++) {
                char kb[24];
                int len = snprintf(kb, sizeof kb, "key-%zu", i);
                if (kind == CHAMP_KEY_U64)
                    CHECK_ST(champ_remove_u64(s, i, NULL), CHAMP_OK);
                else
                    CHECK_ST(champ_remove_bytes(s, kb, (size_t)len, NULL), CHAMP_OK);
            }
            want = 0;
        }
        CHECK(!map_pinned(s), "%s: an updated snapshot is counted (form %d)", kn, form);
        CHECK_EQ(champ_size(s), want, "the snapshot's new size");
        CHECK(pin_holds(v1, kind, PIN_N, 5), "%s: the original map unchanged (form %d)", kn,
              form);
        champ_map *again = NULL;
        CHECK_ST(champ_cell_load(cell, &again), CHAMP_OK);
        CHECK(pin_holds(again, kind, PIN_N, 5), "%s: the cell's version unchanged (form %d)",
              kn, form);
        CHECK_VALID(s, "an updated snapshot");
        champ_cell_free(cell); /* s, counted now, outlives the cell */
        champ_free(again);
        champ_free(v1);
        CHECK(p->retired == NULL, "%s: nothing waits once the pins are gone", kn);
        CHECK_EQ(champ_size(s), want, "the updated snapshot alone");
        CHECK_VALID(s, "an updated snapshot, alone");
        champ_free(s);
        CHECK_EQ(th_pool_live(p), live0, "scenario 3 drained");
    }

    /* 4. More snapshots than pin slots (the rest are counted), versions
     * stored between the loads, trim with pins and records outstanding,
     * frees in a shuffled order. */
    {
        enum { NS = 3 * HEAP_PINS + 1 };
        champ_map *s[NS];
        uintptr_t base[NS];
        champ_cell *cell = NULL;
        champ_map *v = pin_map(p, kind, PIN_N, 100);
        CHECK_ST(champ_cell_new(v, &cell), CHAMP_OK);
        champ_free(v);
        size_t pinned = 0;
        uintptr_t cur = 100;
        for (int i = 0; i < NS; i++) {
            if (i % 4 == 3) { /* a new version every 4 loads */
                cur = 100 + (uintptr_t)i;
                v = pin_map(p, kind, PIN_N, cur);
                CHECK_ST(champ_cell_store(cell, v), CHAMP_OK);
                champ_free(v);
            }
            s[i] = NULL;
            CHECK_ST(champ_cell_load(cell, &s[i]), CHAMP_OK);
            base[i] = cur;
            pinned += s[i] && map_pinned(s[i]);
        }
        CHECK_EQ(pinned, HEAP_PINS, "this thread's slots all used, the rest counted");
        CHECK_VALID(s[0], "pins, counted snapshots and records together");
        CHECK_ST(champ_pool_trim(p), CHAMP_OK);
        CHECK(p->retired == NULL, "%s: trim released every record", kn);
        for (int i = 0; i < NS; i++)
            CHECK(s[i] && !map_pinned(s[i]), "%s: trim counted snapshot %d", kn, i);
        CHECK_VALID(s[5], "after trim");
        unsigned x = 12345;
        for (int left = NS; left > 0; left--) {
            x = x * 1103515245u + 12345u;
            int j = (int)((x >> 8) % (unsigned)left), k = -1;
            for (int i = 0; i < NS; i++)
                if (s[i] && j-- == 0) {
                    k = i;
                    break;
                }
            if (k < 0)
                break;
            CHECK(pin_holds(s[k], kind, PIN_N, base[k]), "%s: snapshot %d reads its version",
                  kn, k);
            champ_free(s[k]);
            s[k] = NULL;
        }
        champ_cell_free(cell);
        CHECK_EQ(th_pool_live(p), live0, "scenario 4 drained");
        /* pins after trim: loads pin again */
        v = pin_map(p, kind, 10, 1);
        CHECK_ST(champ_cell_new(v, &cell), CHAMP_OK);
        champ_map *t = NULL;
        CHECK_ST(champ_cell_load(cell, &t), CHAMP_OK);
        CHECK(t && map_pinned(t), "%s: a load after trim pins", kn);
        champ_free(t);
        champ_cell_free(cell);
        champ_free(v);
        CHECK_EQ(th_pool_live(p), live0, "scenario 4b drained");
    }
    /* 5. Allocation failure at every step of: a cell made, two loads, a
     * store over a pinned version, a load, the frees.  A failed call
     * changes nothing; every step is retried until it passes. */
    if (TH_NEED_FAULTS("concurrent.cell_pins, scenario 5")) {
        champ_map *v1 = pin_map(p, kind, 200, 1), *v2 = pin_map(p, kind, 200, 2);
        size_t fails = 0;
        for (long n = 0; n < 12; n++) {
            champ_cell *cell = NULL;
            champ_map *s1 = NULL, *s2 = NULL, *s3 = NULL;
            long budget = n;
            champ_status st;
            /* each call gets `budget` allocations (then fails once) */
#define PIN_TRY(call)                                                           \
    do {                                                                        \
        champ_pool_fail_after(p, budget);                                       \
        st = (call);                                                            \
        champ_pool_fail_after(p, -1);                                           \
        if (st == CHAMP_ENOMEM)                                                 \
            fails++;                                                            \
    } while (st == CHAMP_ENOMEM && (budget = budget + 1) > 0)
            PIN_TRY(champ_cell_new(v1, &cell));
            CHECK(st == CHAMP_OK && cell, "%s: cell_new after failures (%ld)", kn, n);
            budget = n;
            PIN_TRY(champ_cell_load(cell, &s1));
            budget = n;
            PIN_TRY(champ_cell_load(cell, &s2));
            CHECK(pin_holds(s1, kind, 200, 1) && pin_holds(s2, kind, 200, 1),
                  "%s: loads after failures (%ld)", kn, n);
            size_t live = th_pool_live(p);
            champ_pool_fail_after(p, 0);
            CHECK_ST(champ_cell_store(cell, v2), CHAMP_ENOMEM);
            champ_pool_fail_after(p, -1);
            CHECK_EQ(th_pool_live(p), live, "a failed store allocates nothing");
            CHECK(p->retired == NULL, "%s: a failed store retires nothing", kn);
            champ_map *chk = NULL;
            CHECK_ST(champ_cell_load(cell, &chk), CHAMP_OK);
            CHECK(pin_holds(chk, kind, 200, 1), "%s: the cell unchanged by a failed store", kn);
            CHECK_VALID(chk, "after a failed store");
            champ_free(chk);
            budget = n;
            PIN_TRY(champ_cell_store(cell, v2));
            CHECK(p->retired != NULL, "%s: version 1 retired (%ld)", kn, n);
            budget = n;
            PIN_TRY(champ_cell_load(cell, &s3));
            CHECK(pin_holds(s3, kind, 200, 2), "%s: the new version (%ld)", kn, n);
            champ_cell_free(cell);
            champ_free(s1);
            CHECK(pin_holds(s2, kind, 200, 1), "%s: s2 still reads version 1 (%ld)", kn, n);
            CHECK_VALID(s2, "a pinned snapshot of a freed cell");
            champ_free(s3);
            champ_free(s2);
            CHECK(p->retired == NULL, "%s: every record released (%ld)", kn, n);
        }
#undef PIN_TRY
        CHECK(fails > 0, "%s: allocation failures were injected", kn);
        champ_free(v1);
        champ_free(v2);
        CHECK_EQ(th_pool_live(p), live0, "scenario 5 drained");
    }
    cc_check_books(p, "after the pin scenarios");
    champ_free(pin_type[kind == CHAMP_KEY_BYTES]);
    pin_type[kind == CHAMP_KEY_BYTES] = NULL;
    champ_pool_free(p);
}

static void test_cell_pins(void) {
    pin_scenarios(CHAMP_KEY_U64);
    pin_scenarios(CHAMP_KEY_BYTES);
}

/* ------------------------------------------------------------------ */
/* Light versions (pin.c)                                              */
/* ------------------------------------------------------------------ */

/* The model of the light tests: value of key k (0..LV_KEYS-1), 0 = absent. */
enum { LV_KEYS = 4000 };

static bool lv_matches(const champ_map *m, const uintptr_t *model, const char *what) {
    size_t n = 0;
    bool ok = true;
    for (uint64_t k = 0; k < LV_KEYS; k++) {
        void *v = NULL;
        bool f = champ_get_u64(m, k, &v);
        if (model[k]) {
            n++;
            ok &= f && v == (void *)model[k];
        } else {
            ok &= !f;
        }
    }
    ok &= champ_size(m) == n;
    CHECK(ok, "%s: contents differ from the model", what);
    return ok;
}

static bool lv_is_light(const champ_map *m) {
    return m && m->light == LIGHT_ON && map_pinned(m);
}

static bool lv_keep_even(const champ_key *key, void *val, void *ctx) {
    (void)val, (void)ctx;
    return key->u64 % 2 == 0;
}

/* What a light version's settling calls do: each takes a fresh light
 * version (one pset of key 5 from a snapshot of the cell's version) and
 * must leave it settled (counted, unpinned) with the right contents. */
static void lv_settlers(champ_pool *p, champ_cell *cell, uintptr_t *model) {
    for (int how = 0; how < 14; how++) {
        champ_map *s = NULL, *d = NULL, *x = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        CHECK_ST(champ_pset_u64(s, 5, (void *)777, &d), CHAMP_OK);
        if (!s || !d)
            return;
        CHECK(lv_is_light(d), "a p-form of a pinned snapshot is light (%d)", how);
        uintptr_t dm[LV_KEYS];
        memcpy(dm, model, sizeof dm);
        dm[5] = 777;
        bool swapped = false;
        champ_status st = CHAMP_OK;
        switch (how) {
        case 0: st = champ_copy(d, &x); break;
        case 1: st = champ_set_u64(d, 9, (void *)9000, NULL); dm[9] = 9000; break;
        case 2: st = champ_remove_u64(d, 8, NULL); dm[8] = 0; break;
        case 3: {
            void **slot = NULL;
            st = champ_upsert_u64(d, 11, &slot, NULL);
            if (slot)
                *slot = (void *)1111;
            dm[11] = 1111;
            break;
        }
        case 4:
            st = champ_clear(d);
            memset(dm, 0, sizeof dm);
            break;
        case 5: {
            champ_cell *c2 = NULL;
            st = champ_cell_new(d, &c2);
            champ_cell_free(c2);
            break;
        }
        case 6: st = champ_union(d, s, NULL, NULL, &x); break;
        case 7: st = champ_filter(d, lv_keep_even, NULL, &x); break;
        case 8: {
            champ_op op = {{13, NULL, 0}, (void *)1313, false};
            st = champ_apply(d, &op, 1);
            dm[13] = 1313;
            break;
        }
        case 9: st = champ_pset_u64(d, 15, (void *)1515, &x); break;
        case 10: st = champ_premove_u64(d, 17, &x); break;
        case 11: st = champ_pool_trim(p); break;
        case 12: st = champ_difference(s, d, &x); break;
        default: /* publish it: the cell shares it from now on */
            st = champ_cell_cas(cell, s, d, &swapped);
            CHECK(swapped, "the cas of a light version swapped");
            memcpy(model, dm, sizeof dm);
            break;
        }
        CHECK_ST(st, CHAMP_OK);
        CHECK(d->light == LIGHT_NONE && !map_pinned(d), "call %d settled the light version", how);
        CHECK_VALID(d, "a settled light version");
        char what[40];
        snprintf(what, sizeof what, "settled by call %d", how);
        lv_matches(d, dm, what);
        if (x)
            CHECK_VALID(x, "the result of a settling call");
        if (how == 0)
            lv_matches(x, dm, "a copy of a light version");
        champ_free(x);
        champ_free(d);
        champ_free(s);
    }
}

/* The light tests' pool (concurrent unless given), with the u64 type
 * holder made first (so that live0, the bytes before the test's maps,
 * includes it). */
static champ_pool *lv_pool_of(champ_pool *p, size_t *live0) {
    if (!p)
        return NULL;
    champ_free(pin_map(p, CHAMP_KEY_U64, 0, 0)); /* makes the type holder */
    *live0 = th_pool_live(p);
    return p;
}
static champ_pool *lv_pool(size_t *live0) {
    return lv_pool_of(cc_pool(), live0);
}
/* A concurrent pool (lv_pool) or a plain one, made as lv_pool_of. */
static champ_pool *lv_pool_mode(bool conc, size_t *live0) {
    if (conc)
        return lv_pool(live0);
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    return lv_pool_of(p, live0);
}

/* The end of a light test: nothing waits, the pool is back at live0 and
 * its books balance; the type holder and the pool go. */
static void lv_pool_end(champ_pool *p, size_t live0, const char *what) {
    CHECK(p->retired == NULL, "%s: nothing waits at the end", what);
    CHECK_EQ(th_pool_live(p), live0, "the pool drained");
    cc_check_books(p, what);
    champ_free(pin_type[0]);
    pin_type[0] = NULL;
    champ_pool_free(p);
}

/* A cell of the light tests: the even keys k < LV_KEYS with value k + 1
 * (model, zeroed before, gets them); NULL on failure. */
static champ_cell *lv_cell(champ_pool *p, uintptr_t *model) {
    champ_map *v = pin_map(p, CHAMP_KEY_U64, 0, 0);
    for (uint64_t k = 0; v && k < LV_KEYS; k += 2) {
        model[k] = k + 1;
        CHECK_ST(champ_set_u64(v, k, (void *)model[k], NULL), CHAMP_OK);
    }
    champ_cell *cell = NULL;
    CHECK_ST(champ_cell_new(v, &cell), CHAMP_OK);
    champ_free(v);
    return cell;
}

static void test_light_versions(void) {
    size_t live0 = 0;
    champ_pool *p = lv_pool(&live0);
    if (!p)
        return;
    static uintptr_t model[LV_KEYS];
    memset(model, 0, sizeof model);
    champ_cell *cell = lv_cell(p, model);
    if (!cell)
        return;

    /* 1. every shape of a one-key change, freed: the pool is back where it
     * was (only the new nodes were the version's) */
    {
        champ_map *s = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        size_t live = th_pool_live(p);
        static uintptr_t dm[LV_KEYS];
        for (uint64_t k = 0; k < LV_KEYS && s; k++) {
            champ_map *d = NULL;
            bool rm = k % 3 == 0;
            memcpy(dm, model, sizeof dm);
            if (rm) {
                CHECK_ST(champ_premove_u64(s, k, &d), CHAMP_OK);
                dm[k] = 0;
            } else {
                CHECK_ST(champ_pset_u64(s, k, (void *)(k + 50000), &d), CHAMP_OK);
                dm[k] = k + 50000;
            }
            if (rm && !model[k]) /* no change: settled at once (a counted version) */
                CHECK(d && d->light == LIGHT_NONE && !map_pinned(d),
                      "key %llu: a p-form that changes nothing is settled",
                      (unsigned long long)k);
            else
                CHECK(lv_is_light(d), "key %llu: a light version", (unsigned long long)k);
            if (k % 97 == 0) {
                lv_matches(d, dm, "a light version");
                CHECK_VALID(d, "a light version (census of its light chain)");
            } else {
                void *got = NULL;
                bool f = champ_get_u64(d, k, &got);
                CHECK(rm ? !f : (f && got == (void *)(k + 50000)), "key %llu in the version",
                      (unsigned long long)k);
                CHECK_EQ(champ_size(d), champ_size(s) + (rm ? 0u - (size_t)(model[k] != 0)
                                                          : (size_t)(model[k] == 0)),
                         "the version's size");
            }
            champ_free(d);
            CHECK_EQ(th_pool_live(p), live, "a freed light version leaves nothing");
        }
        lv_matches(s, model, "the snapshot after its versions");
        champ_free(s);
    }

    /* 2. every call that shares or changes a light version settles it */
    lv_settlers(p, cell, model);

    /* 3. a random run: derive from snapshots, publish some, drop the rest;
     * allocation failures injected on the way */
    {
        uint64_t rng = 0x9e3779b97f4a7c15ull;
        size_t fails = 0;
        for (int it = 0; it < 3000; it++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t k = (rng >> 33) % LV_KEYS;
            bool rm = (rng >> 20) & 1;
            champ_map *s = NULL, *d = NULL;
            CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
            if (!s)
                break;
            size_t live = th_pool_live(p);
            if (it % 7 == 3) { /* a failing derive changes nothing */
                champ_pool_fail_after(p, (long)((rng >> 40) % 3));
                champ_status st = rm ? champ_premove_u64(s, k, &d)
                                     : champ_pset_u64(s, k, (void *)(uintptr_t)(it + 1), &d);
                champ_pool_fail_after(p, -1);
                if (st == CHAMP_ENOMEM) {
                    fails++;
                    CHECK(d == NULL, "a failed derive left *out set");
                    CHECK_EQ(th_pool_live(p), live, "a failed derive allocates nothing");
                    champ_free(s);
                    continue;
                }
                CHECK_ST(st, CHAMP_OK);
            } else if (rm) {
                CHECK_ST(champ_premove_u64(s, k, &d), CHAMP_OK);
            } else {
                CHECK_ST(champ_pset_u64(s, k, (void *)(uintptr_t)(it + 1), &d), CHAMP_OK);
            }
            if (d && it % 5 == 0) {
                bool sw = false;
                CHECK_ST(champ_cell_cas(cell, s, d, &sw), CHAMP_OK);
                CHECK(sw, "cas from the only thread swaps (iteration %d)", it);
                model[k] = rm ? 0 : (uintptr_t)(it + 1);
            }
            champ_free(d);
            champ_free(s);
            if (it % 500 == 0) {
                champ_map *chk = NULL;
                CHECK_ST(champ_cell_load(cell, &chk), CHAMP_OK);
                lv_matches(chk, model, "the cell after random derives");
                CHECK_VALID(chk, "random derives");
                champ_free(chk);
            }
        }
        CHECK(fails > 0 || !TH_FAULTS, "allocation failures were injected into derives");
    }

    champ_map *last = NULL;
    CHECK_ST(champ_cell_load(cell, &last), CHAMP_OK);
    lv_matches(last, model, "the cell at the end");
    champ_free(last);
    champ_cell_free(cell);
    lv_pool_end(p, live0, "after the light versions");
}

/* A light version of a counted map (pin.c, LBASE_COUNT). */
static bool lv_is_counted(const champ_map *m) {
    return m && m->light == LIGHT_ON && map_pinned(m) && m->lbase == LBASE_COUNT;
}

enum { LC_SLOTS = 12 };

/* p-forms of counted u64 maps are light versions that hold one count on
 * their base.  1: the chain of versions each derived from the last, the
 * last one freed (the bench's pinsert): each settle takes over its base's
 * counts, so live bytes stay flat and the base's nodes are freed.  2: a
 * random forest of versions against models (derives, frees, copies,
 * in-place updates, settles that meet bases shared at every level),
 * with allocation failures, validate's census on the way, the pool
 * drained at the end. */
static void light_counted_in(bool conc) {
    size_t live0 = 0;
    champ_pool *p = lv_pool_mode(conc, &live0);
    if (!p)
        return;
    static uintptr_t model[LV_KEYS];
    memset(model, 0, sizeof model);
    uint64_t rng = 0x2545f4914f6cdd1dull;

    /* 0. a p-form that changes nothing (an absent key removed): its root
     * is its source's, which it alone holds once the source goes; updates
     * of it in place must not leave a light version naming a freed base
     * (found by this test's forest with a seed that made it happen) */
    for (int round = 0; round < 2; round++) {
        champ_map *src = pin_map(p, CHAMP_KEY_U64, 40, 1), *d = NULL;
        CHECK_ST(champ_premove_u64(src, 1000, &d), CHAMP_OK);
        if (!d)
            break;
        CHECK(d->light == LIGHT_NONE && !map_pinned(d), "an unchanged p-form is counted");
        champ_free(src);
        for (uint64_t k = 100; k < 400; k++) /* the root grows into new blocks */
            CHECK_ST(champ_set_u64(d, k, (void *)(uintptr_t)k, NULL), CHAMP_OK);
        if (round == 1)
            for (uint64_t k = 0; k < 40; k++)
                CHECK_ST(champ_remove_u64(d, k, NULL), CHAMP_OK);
        CHECK_EQ(champ_size(d), round ? 300u : 340u, "the unchanged p-form, updated");
        CHECK_VALID(d, "the unchanged p-form, updated in place");
        champ_free(d);
        CHECK_EQ(th_pool_live(p), live0, "the unchanged p-form drained");
    }

    /* slots: versions on a counted base leave half of the thread's pin
     * slots to snapshots (the rest of the derives are counted) */
    if (conc) {
        champ_map *src = pin_map(p, CHAMP_KEY_U64, 100, 1), *d[8] = {0}, *snap = NULL;
        champ_cell *cell = NULL;
        CHECK_ST(champ_cell_new(src, &cell), CHAMP_OK);
        int light = 0;
        for (int i = 0; i < 8; i++) {
            CHECK_ST(champ_pset_u64(src, (uint64_t)i, (void *)77, &d[i]), CHAMP_OK);
            light += lv_is_counted(d[i]);
            CHECK(lv_is_counted(d[i]) || (d[i] && !map_pinned(d[i])),
                  "version %d: light or counted", i);
        }
        CHECK_EQ(light, HEAP_PINS - PIN_KEEP, "light versions held at once");
        CHECK_ST(champ_cell_load(cell, &snap), CHAMP_OK);
        CHECK(snap && map_pinned(snap), "a snapshot still finds a slot");
        for (int i = 0; i < 8; i++) {
            void *got = NULL;
            CHECK(champ_get_u64(d[i], (uint64_t)i, &got) && got == (void *)77 &&
                      champ_size(d[i]) == 100,
                  "version %d's contents", i);
            champ_free(d[i]);
        }
        champ_free(snap);
        champ_cell_free(cell);
        champ_free(src);
        CHECK_EQ(th_pool_live(p), live0, "the slot versions drained");
    }

    /* 1. the chain */
    champ_map *v = pin_map(p, CHAMP_KEY_U64, 0, 0);
    for (uint64_t k = 0; k < LV_KEYS; k += 2) {
        model[k] = k + 1;
        CHECK_ST(champ_set_u64(v, k, (void *)model[k], NULL), CHAMP_OK);
    }
    size_t flat = 0;
    for (int it = 0; it < 4000 && v; it++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t k = (rng >> 33) % LV_KEYS;
        bool rm = (rng >> 21) % 3 == 0;
        champ_map *d = NULL;
        if (rm)
            CHECK_ST(champ_premove_u64(v, k, &d), CHAMP_OK);
        else
            CHECK_ST(champ_pset_u64(v, k, (void *)(uintptr_t)(it + 7), &d), CHAMP_OK);
        if (!d)
            break;
        bool same = rm && !model[k]; /* an absent key removed: no light node */
        model[k] = rm ? 0 : (uintptr_t)(it + 7);
        CHECK(same ? d->light == LIGHT_NONE && !map_pinned(d) : lv_is_counted(d),
              "step %d: a light version on a count, unless nothing changed", it);
        CHECK(v->light == LIGHT_NONE && !map_pinned(v), "step %d: its source settled", it);
        champ_free(v);
        v = d;
        if (it == 100)
            flat = th_pool_live(p);
        if (it > 100 && it % 400 == 0) {
            /* the chain holds one version and its base's path: freeing
             * the previous version gave its nodes back */
            size_t live = th_pool_live(p);
            CHECK(live <= flat + flat / 4, "step %d: live %zu, %zu at step 100", it, live,
                  flat);
            lv_matches(v, model, "the chain");
            CHECK_VALID(v, "the chain (census of the base's count)");
        }
    }
    lv_matches(v, model, "the chain's end");
    champ_free(v);
    CHECK_EQ(th_pool_live(p), live0, "the chain drained");

    /* 2. the forest */
    static uintptr_t fm[LC_SLOTS][LV_KEYS];
    champ_map *slot[LC_SLOTS] = {0};
    slot[0] = pin_map(p, CHAMP_KEY_U64, 0, 0);
    memset(fm, 0, sizeof fm);
    for (uint64_t k = 0; k < LV_KEYS; k += 3) {
        fm[0][k] = k + 1;
        CHECK_ST(champ_set_u64(slot[0], k, (void *)fm[0][k], NULL), CHAMP_OK);
    }
    size_t fails = 0, lights = 0, in_place_light = 0;
    for (int it = 0; it < 6000; it++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int a = (int)((rng >> 40) % LC_SLOTS), b = (int)((rng >> 50) % LC_SLOTS);
        uint64_t k = (rng >> 8) % LV_KEYS;
        unsigned op = (unsigned)(rng >> 30) % 16;
        if (!slot[a]) {
            if (slot[0])
                a = 0;
            else
                continue;
        }
        if (op < 9 && a != b) { /* derive b from a */
            bool rm = op < 3;
            champ_map *d = NULL;
            size_t live = th_pool_live(p);
            bool fail = op == 8;
            if (fail)
                champ_pool_fail_after(p, (long)((rng >> 4) % 4));
            champ_status st = rm ? champ_premove_u64(slot[a], k, &d)
                                 : champ_pset_u64(slot[a], k, (void *)(uintptr_t)(it + 1), &d);
            champ_pool_fail_after(p, -1);
            if (fail && st == CHAMP_ENOMEM) {
                fails++;
                CHECK(d == NULL, "a failed derive left *out set");
                CHECK(th_pool_live(p) <= live, "a failed derive keeps nothing");
                continue;
            }
            CHECK_ST(st, CHAMP_OK);
            if (!d)
                continue;
            lights += lv_is_counted(d);
            champ_free(slot[b]);
            slot[b] = d;
            memcpy(fm[b], fm[a], sizeof fm[b]);
            fm[b][k] = rm ? 0 : (uintptr_t)(it + 1);
        } else if (op < 11 && a != b) { /* free b */
            champ_free(slot[b]);
            slot[b] = NULL;
        } else if (op < 13 && a != b) { /* copy a into b */
            champ_map *c = NULL;
            CHECK_ST(champ_copy(slot[a], &c), CHAMP_OK);
            CHECK(slot[a]->light == LIGHT_NONE, "a copy settles its source");
            champ_free(slot[b]);
            slot[b] = c;
            memcpy(fm[b], fm[a], sizeof fm[b]);
        } else if (op < 15) { /* an update in place */
            bool changes = op == 13 || fm[a][k]; /* removing an absent key changes nothing */
            if (op == 13) {
                CHECK_ST(champ_set_u64(slot[a], k, (void *)(uintptr_t)(it + 1), NULL), CHAMP_OK);
                fm[a][k] = (uintptr_t)(it + 1);
            } else {
                CHECK_ST(champ_remove_u64(slot[a], k, NULL), CHAMP_OK);
                fm[a][k] = 0;
            }
            /* it settles its map, or leaves a fresh copy that shared
             * its root a light version on a counted base (one thread:
             * the handles' heap is this thread's in a concurrent pool) */
            CHECK(!changes || slot[a]->light == LIGHT_NONE || lv_is_counted(slot[a]),
                  "an update settles its map (step %d)", it);
            in_place_light += lv_is_counted(slot[a]);
        } else {
            char what[48];
            snprintf(what, sizeof what, "forest slot %d, step %d", a, it);
            lv_matches(slot[a], fm[a], what);
        }
        if (it % 500 == 499)
            for (int i = 0; i < LC_SLOTS; i++)
                if (slot[i]) {
                    char what[48];
                    snprintf(what, sizeof what, "forest slot %d, step %d", i, it);
                    lv_matches(slot[i], fm[i], what);
                    CHECK_VALID(slot[i], what);
                }
    }
    CHECK(fails > 0 || !TH_FAULTS, "allocation failures were injected into derives");
    CHECK(lights > 1000, "the forest derived light versions (%zu)", lights);
    CHECK(in_place_light > 20, "updates in place made light versions (%zu)",
          in_place_light);
    for (int i = 0; i < LC_SLOTS; i++)
        champ_free(slot[i]);
    lv_pool_end(p, live0, conc ? "after the counted light versions (concurrent pool)"
                               : "after the counted light versions (plain pool)");
}

static void test_light_counted(void) {
    light_counted_in(true);
    light_counted_in(false);
}

/* An update in place of a plain u64 map that shares its root (a copy of
 * it lives) makes it a light version on a counted base (champ.c,
 * light_begin): nothing of the other version is counted, freeing it gives
 * back exactly its new nodes, the next update settles it and, its path
 * its own again, changes it in place.  Removes too; the original freed
 * first; at most HEAP_PINS - PIN_KEEP such maps hold a slot at once, and
 * p-forms still find one; a failed update leaves the map as it was, not
 * light; a concurrent pool copies the path as before. */
static size_t li_shared(const champ_map *m) {
    champ_stats st;
    CHECK_ST(champ_stats_get(m, &st, sizeof st), CHAMP_OK);
    return st.nodes_shared;
}

static uint64_t li_allocs(const champ_pool *p) {
    champ_pool_stats ps;
    CHECK_ST(champ_pool_stats_get(p, &ps, sizeof ps), CHAMP_OK);
    return ps.counters_enabled ? ps.allocs : 0;
}

/* Keys 0..n-1, value key + 1, with a fixed seed: which updates take the
 * light paths (not a pair meeting a third key) depends on the hashes. */
static champ_map *li_map(champ_pool *p, size_t n) {
    champ_config c = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    c.pool = p;
    c.seed = 0x6c69676874ull;
    c.fixed_seed = true;
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    for (size_t i = 0; m && i < n; i++)
        CHECK_ST(champ_set_u64(m, i, (void *)(i + 1), NULL), CHAMP_OK);
    return m;
}

/* Another thread: frees free_it (if any), then copies src into copy. */
typedef struct li_arg {
    const champ_map *src;
    champ_map *copy;
    champ_map *free_it;
} li_arg;

static void *li_thread(void *v) {
    li_arg *a = v;
    champ_free(a->free_it);
    if (a->src && champ_copy(a->src, &a->copy) != CHAMP_OK)
        a->copy = NULL;
    return NULL;
}

/* The depot's large free blocks joined to a heap's own list of the same
 * size range (pool.c, depot_take): another thread frees a map of long
 * byte keys (1,100 and 2,000 bytes: two large ranges), so its heap, over
 * what it keeps, hands them all to the depot; this thread, holding free
 * blocks of the 1,100-byte range itself, inserts 2,000-byte keys until it
 * runs out of fresh space and takes the depot's.  Every block must be
 * found again: the lists walk as counted, the depot's tails are right,
 * the keys read back, the pool drains. */
static void *dl_free(void *m) {
    champ_free(m);
    return NULL;
}

static void dl_key(char *k, size_t len, char tag, unsigned i) {
    memset(k, tag, len);
    snprintf(k, len, "%c%u", tag, i);
}

static void test_depot_large(void) {
    champ_pool *p = cc_pool();
    if (!p)
        return;
    size_t live0 = th_pool_live(p);
    champ_config c = th_kind_config(CHAMP_KEY_BYTES, 0xde907, p);
    champ_map *a = NULL, *b = NULL;
    CHECK_ST(champ_new(&c, &a), CHAMP_OK);
    CHECK_ST(champ_new(&c, &b), CHAMP_OK);
    if (!a || !b)
        return;
    static char k[2000];
    for (unsigned i = 0; i < 400; i++) {
        size_t len = i < 300 ? 1100 : 2000;
        dl_key(k, len, 'b', i);
        CHECK_ST(champ_set_bytes(b, k, len, (void *)(uintptr_t)(i + 1), NULL), CHAMP_OK);
    }
    for (unsigned i = 0; i < 40; i++) {
        dl_key(k, 1100, 'a', i);
        CHECK_ST(champ_set_bytes(a, k, 1100, (void *)(uintptr_t)(i + 1), NULL), CHAMP_OK);
    }
    for (unsigned i = 0; i < 40; i += 2) { /* this heap's own 1,100-byte blocks */
        dl_key(k, 1100, 'a', i);
        CHECK_ST(champ_remove_bytes(a, k, 1100, NULL), CHAMP_OK);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, dl_free, b) != 0) {
        CHECK(0, "pthread_create");
        return;
    }
    pthread_join(t, NULL);
    champ_pool_audit au = cc_audit(p);
    CHECK(au.depot_large > 500000, "the other thread's free reached the depot (%zu bytes, "
          "%zu large)", au.depot, au.depot_large);
    cc_check_books(p, "after the other thread's free");
    unsigned n = 0;
    for (; n < 3000 && au.depot > 0; n++) {
        dl_key(k, 2000, 'c', n);
        CHECK_ST(champ_set_bytes(a, k, 2000, (void *)(uintptr_t)(n + 1), NULL), CHAMP_OK);
        au = cc_audit(p);
    }
    CHECK(au.depot == 0, "the depot taken after %u inserts (%zu bytes left)", n, au.depot);
    cc_check_books(p, "after the depot was taken");
    CHECK_VALID(a, "a map after the depot was taken");
    bool all = champ_size(a) == 20 + n;
    void *got = NULL;
    for (unsigned i = 1; i < 40; i += 2) {
        dl_key(k, 1100, 'a', i);
        all = all && champ_get_bytes(a, k, 1100, &got) && got == (void *)(uintptr_t)(i + 1);
    }
    for (unsigned i = 0; i < n; i++) {
        dl_key(k, 2000, 'c', i);
        all = all && champ_get_bytes(a, k, 2000, &got) && got == (void *)(uintptr_t)(i + 1);
    }
    CHECK(all, "every key reads back (%zu entries, %u inserted)", champ_size(a), n);
    /* the joined lists serve again: remove every other key, insert more */
    for (unsigned i = 0; i < n; i += 2) {
        dl_key(k, 2000, 'c', i);
        CHECK_ST(champ_remove_bytes(a, k, 2000, NULL), CHAMP_OK);
    }
    for (unsigned i = 0; i < 300; i++) {
        dl_key(k, 1100, 'd', i);
        CHECK_ST(champ_set_bytes(a, k, 1100, NULL, NULL), CHAMP_OK);
    }
    CHECK_VALID(a, "after reuse of the joined lists");
    cc_check_books(p, "after reuse of the joined lists");
    champ_free(a);
    CHECK_EQ(th_pool_live(p), live0, "the pool drained");
    cc_check_books(p, "at the end");
    champ_pool_free(p);
}

/* A p-form that empties a counted map (its only key removed) leaves no
 * root: the version is settled at once (pin.c, champ__light_settle: the
 * count it held on its base dropped, none taken on a root it does not
 * have); one that changes nothing (an absent key) shares the base.  Plain
 * and concurrent pools, either version freed first. */
static void test_light_emptied(void) {
    for (int conc = 0; conc < 2; conc++)
        for (int order = 0; order < 2; order++) {
            size_t live0 = 0;
            champ_pool *p = lv_pool_mode(conc != 0, &live0);
            if (!p)
                return;
            const char *pk = conc ? "concurrent" : "plain";
            champ_map *m = li_map(p, 1), *d = NULL, *e = NULL;
            if (!m)
                return;
            void *got = NULL;
            CHECK_ST(champ_premove_u64(m, 0, &d), CHAMP_OK);
            if (!d)
                return;
            CHECK(champ_size(d) == 0 && !champ_get_u64(d, 0, NULL),
                  "%s: the version without the only key is empty", pk);
            CHECK(d->root == NULL && d->light == LIGHT_NONE && !map_pinned(d),
                  "%s: settled at once (no root, not light, no slot held)", pk);
            CHECK(m->root && m->root->rc == 1, "%s: the base's count given back (%u)", pk,
                  m->root ? m->root->rc : 0);
            CHECK(champ_size(m) == 1 && champ_get_u64(m, 0, &got) && got == (void *)1,
                  "%s: the original unchanged", pk);
            CHECK_VALID(m, "the original of an emptied version");
            CHECK_VALID(d, "an emptied version");
            CHECK_ST(champ_premove_u64(m, 99, &e), CHAMP_OK);
            if (!e)
                return;
            CHECK(e->root == m->root && m->root->rc == 2 && e->light == LIGHT_NONE,
                  "%s: a p-form that changes nothing shares the root, counted (%u)", pk,
                  m->root ? m->root->rc : 0);
            CHECK_ST(champ_set_u64(d, 7, (void *)8, NULL), CHAMP_OK);
            CHECK(champ_size(d) == 1 && champ_get_u64(d, 7, &got) && got == (void *)8 &&
                      !champ_get_u64(m, 7, NULL),
                  "%s: the emptied version takes an insert of its own", pk);
            CHECK_VALID(d, "an emptied version after an insert");
            if (order == 0) {
                champ_free(m);
                CHECK(champ_size(e) == 1 && champ_get_u64(e, 0, &got) && got == (void *)1,
                      "%s: the sharing version outlives the original", pk);
                CHECK_VALID(e, "the sharing version alone");
                champ_free(e);
                champ_free(d);
            } else {
                champ_free(d);
                champ_free(e);
                CHECK(m->root && m->root->rc == 1, "%s: the original's root its own again",
                      pk);
                champ_free(m);
            }
            lv_pool_end(p, live0, conc ? "concurrent: emptied versions"
                                       : "plain: emptied versions");
        }
}

static void test_light_in_place(void) {
    enum { N = 3000 };
    size_t live0 = 0;
    champ_pool *p = lv_pool_mode(false, &live0);
    if (!p)
        return;
    champ_map *m = li_map(p, N);
    if (!m)
        return;
    size_t live_m = th_pool_live(p), shared_m = li_shared(m);
    CHECK_EQ(shared_m, 0u, "a map alone shares nothing");
    void *got = NULL;

    /* 1. copy, replace a value, insert, remove: each a light version; the
     * original keeps its contents and only its root is shared */
    for (int kind = 0; kind < 3; kind++) {
        champ_map *c = NULL;
        CHECK_ST(champ_copy(m, &c), CHAMP_OK);
        if (!c)
            return;
        uint64_t k = kind == 1 ? N + 5 : kind == 2 ? 18 : 17; /* (li_map's seed: light cases) */
        if (kind == 2)
            CHECK_ST(champ_remove_u64(c, k, NULL), CHAMP_OK);
        else
            CHECK_ST(champ_set_u64(c, k, (void *)(uintptr_t)99, NULL), CHAMP_OK);
        CHECK(lv_is_counted(c), "update %d of a copy: a light version on a count", kind);
        CHECK_EQ(li_shared(m), 1u, "only the original's root is shared (no child counted)");
        CHECK(pin_holds(m, CHAMP_KEY_U64, N, 1), "the original unchanged (update %d)", kind);
        bool in = champ_get_u64(c, k, &got);
        CHECK(kind == 2 ? !in : in && got == (void *)(uintptr_t)99,
              "the copy has update %d", kind);
        CHECK_EQ(champ_size(c), kind == 0 ? (size_t)N : kind == 1 ? (size_t)N + 1 : (size_t)N - 1,
                 "the copy's size");
        CHECK_VALID(c, "a light version of an update in place");
        champ_free(c);
        CHECK(th_pool_live(p) == live_m, "freeing it gave back its new nodes (update %d)",
              kind);
        CHECK_EQ(li_shared(m), 0u, "the original alone again");
    }

    /* 2. the next update settles it; the one after that is in place */
    {
        champ_map *c = NULL;
        CHECK_ST(champ_copy(m, &c), CHAMP_OK);
        CHECK_ST(champ_set_u64(c, 5, (void *)(uintptr_t)55, NULL), CHAMP_OK);
        CHECK(lv_is_counted(c), "the first update: light");
        CHECK_ST(champ_set_u64(c, 6, (void *)(uintptr_t)66, NULL), CHAMP_OK);
        CHECK(c->light == LIGHT_NONE && !map_pinned(c), "the second update settled it");
        uint64_t a0 = li_allocs(p);
        size_t live = th_pool_live(p);
        CHECK_ST(champ_set_u64(c, 6, (void *)(uintptr_t)67, NULL), CHAMP_OK);
        CHECK_EQ(li_allocs(p), a0, "a value replaced on the map's own path allocates nothing");
        CHECK_EQ(th_pool_live(p), live, "and keeps live bytes");
        CHECK(champ_get_u64(c, 5, &got) && got == (void *)(uintptr_t)55 &&
                  champ_get_u64(c, 6, &got) && got == (void *)(uintptr_t)67,
              "the settled copy's contents");
        CHECK(pin_holds(m, CHAMP_KEY_U64, N, 1), "the original unchanged");
        CHECK_VALID(c, "settled");
        CHECK_VALID(m, "the original beside it");
        champ_free(c);
        CHECK_EQ(th_pool_live(p), live_m, "back to the original alone");
    }

    /* 3. the original freed first: the light copy holds the base alone,
     * its settle takes the base's path over */
    {
        champ_map *c = NULL;
        CHECK_ST(champ_copy(m, &c), CHAMP_OK);
        CHECK_ST(champ_set_u64(c, N + 1, (void *)(uintptr_t)(N + 2), NULL), CHAMP_OK);
        CHECK(lv_is_counted(c), "light");
        champ_free(m);
        m = NULL;
        CHECK_EQ(champ_size(c), (size_t)N + 1, "the copy, its original gone");
        for (uint64_t k = 0; k < N + 2; k++) {
            bool in = champ_get_u64(c, k, &got);
            CHECK(k == N ? !in : in && got == (void *)(uintptr_t)(k + 1), "key %llu",
                  (unsigned long long)k);
        }
        CHECK_ST(champ_remove_u64(c, 3, NULL), CHAMP_OK);
        CHECK(c->light == LIGHT_NONE && !map_pinned(c), "settled by the remove");
        CHECK_EQ(li_shared(c), 0u, "the copy owns everything now");
        CHECK_VALID(c, "the copy alone");
        m = c;
    }

    /* 4. slots: maps kept light hold at most HEAP_PINS - PIN_KEEP of them;
     * the rest copy their paths; a p-form still derives light */
    {
        champ_map *c[HEAP_PINS] = {0}, *d = NULL;
        int light = 0;
        for (int i = 0; i < (int)HEAP_PINS; i++) {
            CHECK_ST(champ_copy(m, &c[i]), CHAMP_OK);
            CHECK_ST(champ_set_u64(c[i], 1000 + (uint64_t)i, (void *)7, NULL), CHAMP_OK);
            light += lv_is_counted(c[i]);
            CHECK(lv_is_counted(c[i]) || (c[i]->light == LIGHT_NONE && !map_pinned(c[i])),
                  "copy %d: light or counted", i);
        }
        CHECK_EQ(light, (int)(HEAP_PINS - PIN_KEEP), "light maps held at once");
        CHECK_ST(champ_pset_u64(m, 2, (void *)8, &d), CHAMP_OK);
        CHECK(lv_is_counted(d), "a p-form still finds a slot");
        for (int i = 0; i < (int)HEAP_PINS; i++) {
            CHECK(champ_get_u64(c[i], 1000 + (uint64_t)i, &got) && got == (void *)7 &&
                      champ_size(c[i]) == champ_size(m),
                  "copy %d's contents", i);
            champ_free(c[i]);
        }
        champ_free(d);
    }

    /* 5. allocation failure at each block of the update: the copy is as
     * it was, counted, its slot given back */
    live_m = th_pool_live(p);
    long failed = 0;
    for (long f = 0; f < 8; f++) {
        champ_map *c = NULL;
        CHECK_ST(champ_copy(m, &c), CHAMP_OK);
        size_t live = th_pool_live(p);
        champ_pool_fail_after(p, f);
        champ_status st = champ_set_u64(c, 4004, (void *)9, NULL);
        champ_pool_fail_after(p, -1);
        if (st == CHAMP_ENOMEM) {
            failed++;
            CHECK(c->light == LIGHT_NONE && !map_pinned(c), "failure %ld: not light", f);
            CHECK(c->lbase == LBASE_FRESH, "failure %ld: still a fresh copy", f);
            CHECK(th_pool_live(p) == live, "failure %ld: nothing kept", f);
            CHECK(champ_size(c) == champ_size(m), "failure %ld: the copy unchanged", f);
            CHECK(!champ_get_u64(c, 4004, NULL), "failure %ld: no key", f);
            CHECK_ST(champ_set_u64(c, 17, (void *)9, NULL), CHAMP_OK);
            CHECK(lv_is_counted(c), "failure %ld: the next update still goes light", f);
        } else {
            CHECK_ST(st, CHAMP_OK);
            CHECK(lv_is_counted(c), "failure %ld not reached: light", f);
        }
        champ_free(c);
        CHECK(th_pool_live(p) == live_m, "failure %ld: drained", f);
        if (st == CHAMP_OK)
            break;
    }
    CHECK(failed >= 2 || !TH_FAULTS, "the bottom node's block and an ancestor's failed (%ld)",
          failed);

    /* 6. only a fresh copy goes light: the original edited while its
     * snapshot lives (undo history) copies its path and counts the
     * children, as it would be settled at its next snapshot anyway; a
     * copy that owns its path (the original freed) keeps its flag until
     * an update finds its root shared; a plain cell's load is fresh */
    {
        size_t size6 = champ_size(m);
        champ_map *s = NULL;
        CHECK_ST(champ_copy(m, &s), CHAMP_OK);
        CHECK(s && s->lbase == LBASE_FRESH && m->lbase != LBASE_FRESH,
              "the copy is fresh, the original is not");
        CHECK_ST(champ_set_u64(m, 17, (void *)(uintptr_t)71, NULL), CHAMP_OK);
        CHECK(m->light == LIGHT_NONE && !map_pinned(m), "the edited original is counted");
        CHECK(li_shared(s) > 1, "its path copied: the snapshot's children counted (%zu)",
              li_shared(s));
        CHECK(champ_get_u64(s, 17, &got) && got == (void *)(uintptr_t)18,
              "the snapshot keeps the old value");
        /* the original moved on: the snapshot's root is its own, the
         * nodes below it shared, so its first update copies the path
         * below the root (the general path) and it is fresh no more */
        CHECK_ST(champ_set_u64(s, 18, (void *)(uintptr_t)81, NULL), CHAMP_OK);
        CHECK(s->light == LIGHT_NONE && !map_pinned(s) && s->lbase != LBASE_FRESH,
              "the snapshot's path copied below its root: fresh no more");
        champ_map *s2 = NULL;
        CHECK_ST(champ_copy(s, &s2), CHAMP_OK);
        CHECK_ST(champ_set_u64(s2, 20, (void *)(uintptr_t)92, NULL), CHAMP_OK);
        CHECK(lv_is_counted(s2), "its fresh copy's first update goes light");
        CHECK_ST(champ_set_u64(s, 19, (void *)(uintptr_t)91, NULL), CHAMP_OK);
        CHECK(s->light == LIGHT_NONE && !map_pinned(s) && li_shared(s) > 1,
              "while it, copied and edited, copies its path");
        CHECK(champ_get_u64(s2, 19, &got) && got == (void *)(uintptr_t)20 &&
                  champ_get_u64(s2, 20, &got) && got == (void *)(uintptr_t)92 &&
                  champ_get_u64(s, 20, &got) && got == (void *)(uintptr_t)21,
              "each with its own edit");
        CHECK_VALID(s, "the snapshot, edited");
        CHECK_VALID(s2, "its snapshot");
        CHECK_VALID(m, "the original, edited");
        champ_free(s2);
        champ_free(s);
        CHECK_ST(champ_set_u64(m, 17, (void *)(uintptr_t)18, NULL), CHAMP_OK);

        champ_cell *cell = NULL;
        champ_map *ld = NULL;
        CHECK_ST(champ_cell_new(m, &cell), CHAMP_OK);
        CHECK_ST(champ_cell_load(cell, &ld), CHAMP_OK);
        if (ld) {
            CHECK_ST(champ_set_u64(ld, 17, (void *)(uintptr_t)72, NULL), CHAMP_OK);
            CHECK(lv_is_counted(ld), "a plain cell's load, updated: light");
            CHECK_ST(champ_cell_store(cell, ld), CHAMP_OK);
            champ_free(ld);
        }
        champ_cell_free(cell);
        CHECK(champ_size(m) == size6 && champ_get_u64(m, 17, &got) &&
                  got == (void *)(uintptr_t)18,
              "the original as it was");
        CHECK_VALID(m, "the original after the cell");
    }
    champ_free(m);
    lv_pool_end(p, live0, "after updates in place of shared maps");

    /* 7. a concurrent pool: the thread whose heap holds the copy's handle
     * updates it light (its slots are that heap's); a copy made by another
     * thread is updated by copying the path; another thread frees a light
     * copy; a default map's copy goes light too */
    p = lv_pool(&live0);
    if (!p)
        return;
    m = li_map(p, 200);
    live_m = th_pool_live(p);
    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    CHECK_ST(champ_set_u64(c, 3, (void *)3, NULL), CHAMP_OK);
    CHECK(lv_is_counted(c), "concurrent pool, this thread's copy: light");
    CHECK_EQ(li_shared(m), 1u, "concurrent pool: only the original's root shared");
    CHECK(champ_get_u64(c, 3, &got) && got == (void *)3 && champ_get_u64(m, 3, &got) &&
              got == (void *)4,
          "concurrent pool: each map its own value");
    li_arg lf = {NULL, NULL, c}, la = {m, NULL, NULL};
    pthread_t th;
    if (pthread_create(&th, NULL, li_thread, &lf) == 0) {
        pthread_join(th, NULL);
        CHECK_EQ(th_pool_live(p), live_m, "another thread freed the light copy: its nodes back");
    } else {
        champ_free(c);
    }
    if (pthread_create(&th, NULL, li_thread, &la) == 0) {
        pthread_join(th, NULL);
        CHECK(la.copy != NULL, "the other thread made a copy");
        if (la.copy) {
            CHECK_ST(champ_set_u64(la.copy, 5, (void *)5, NULL), CHAMP_OK);
            CHECK(la.copy->light == LIGHT_NONE && !map_pinned(la.copy),
                  "another thread's copy, updated here: counted");
            CHECK(li_shared(m) > 1, "its path copied: the children counted");
            CHECK_VALID(la.copy, "another thread's copy");
            champ_free(la.copy);
        }
    }
    CHECK_VALID(m, "the original, concurrent pool");
    champ_free(m);
    lv_pool_end(p, live0, "concurrent pool, update of a copy");

    champ_map *dm = NULL, *dc = NULL;
    CHECK_ST(champ_new_u64(&dm), CHAMP_OK);
    for (uint64_t k = 0; dm && k < 300; k++)
        CHECK_ST(champ_set_u64(dm, k, (void *)(uintptr_t)(k + 1), NULL), CHAMP_OK);
    CHECK_ST(champ_copy(dm, &dc), CHAMP_OK);
    CHECK_ST(champ_set_u64(dc, 7, (void *)(uintptr_t)70, NULL), CHAMP_OK);
    CHECK(lv_is_counted(dc), "a default map's copy, updated: light");
    CHECK(champ_get_u64(dc, 7, &got) && got == (void *)(uintptr_t)70 &&
              champ_get_u64(dm, 7, &got) && got == (void *)(uintptr_t)8,
          "default maps: each its own value");
    CHECK_VALID(dc, "a default map's light copy");
    champ_free(dc);
    champ_free(dm);
}

/* Two threads copy one light version at once: one settles it, the other
 * waits; both copies are right. */
typedef struct lv_arg {
    const champ_map *d;
    champ_map *copy;
    atomic_int *go;
} lv_arg;

static void *lv_copier(void *v) {
    lv_arg *a = v;
    atomic_fetch_add(a->go, 1);
    while (atomic_load(a->go) < 2)
        ;
    if (champ_copy(a->d, &a->copy) != CHAMP_OK)
        a->copy = NULL;
    return NULL;
}

/* The races' stage: a concurrent pool, a map v of PIN_N keys in a cell. */
static champ_pool *race_begin(champ_map **v, champ_cell **cell) {
    champ_pool *p = cc_pool();
    *v = NULL;
    *cell = NULL;
    if (!p)
        return NULL;
    *v = pin_map(p, CHAMP_KEY_U64, PIN_N, 1);
    CHECK_ST(champ_cell_new(*v, cell), CHAMP_OK);
    return p;
}

/* ... and its end: everything freed, the pool drained. */
static void race_end(champ_pool *p, champ_map *v, champ_cell *cell) {
    champ_cell_free(cell);
    champ_free(v);
    champ_free(pin_type[0]);
    pin_type[0] = NULL;
    CHECK_EQ(th_pool_live(p), 0, "the pool drained");
    champ_pool_free(p);
}

static void test_light_copy_race(void) {
    champ_map *v;
    champ_cell *cell;
    champ_pool *p = race_begin(&v, &cell);
    if (!p)
        return;
    for (int round = 0; round < 200 && cell; round++) {
        champ_map *s = NULL, *d = NULL;
        /* odd rounds: a light version of a counted map (its settle takes
         * over the base's counts when the base is the version's alone) */
        if (round % 2)
            CHECK_ST(champ_copy(v, &s), CHAMP_OK);
        else
            CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        CHECK_ST(champ_pset_u64(s, (uint64_t)round, (void *)7, &d), CHAMP_OK);
        CHECK(round % 2 ? lv_is_counted(d) : lv_is_light(d), "light (round %d)", round);
        if (round % 4 == 1) { /* the version holds its base alone */
            champ_free(s);
            s = NULL;
        }
        atomic_int go;
        atomic_init(&go, 0);
        lv_arg a[2] = {{d, NULL, &go}, {d, NULL, &go}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            CHECK(pthread_create(&th[i], NULL, lv_copier, &a[i]) == 0, "thread");
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        CHECK(d->light == LIGHT_NONE && !map_pinned(d), "settled once (round %d)", round);
        for (int i = 0; i < 2; i++) {
            void *got = NULL;
            CHECK(a[i].copy && champ_get_u64(a[i].copy, (uint64_t)round, &got) && got == (void *)7 &&
                      champ_size(a[i].copy) == PIN_N,
                  "copy %d (round %d)", i, round);
        }
        if (round % 50 == 0)
            CHECK_VALID(d, "after two concurrent copies");
        champ_free(a[0].copy);
        champ_free(d);
        champ_free(s);
        champ_free(a[1].copy);
    }
    race_end(p, v, cell);
}

/* A copy of light version d on one thread while another holds d claimed,
 * as a cell's store or cas does, and gives it back light, as a cas that
 * loses does.  The copy must wait while d is claimed, then claim and
 * settle d itself (it once waited for a settle nobody would do: a hang). */
typedef struct lost_arg {
    lv_arg lv; /* d, its copy, the start line */
    champ_cell *cell;
    const champ_map *stale;
    atomic_int *done;
    int cas_calls, cas_bad;
} lost_arg;

static void *lost_publisher(void *v) {
    lost_arg *a = v;
    atomic_fetch_add(a->lv.go, 1);
    while (atomic_load(a->lv.go) < 2)
        ;
    for (int i = 0; i < 400 && (i < 50 || !atomic_load(a->done)); i++) {
        bool sw = true;
        if (champ_cell_cas(a->cell, a->stale, a->lv.d, &sw) != CHAMP_OK || sw)
            a->cas_bad++;
        a->cas_calls++;
    }
    return NULL;
}

static void *lost_copier(void *v) {
    lost_arg *a = v;
    lv_copier(&a->lv);
    atomic_store(a->done, 1);
    return NULL;
}

/* Waits up to 10 s for *done; false if it never came. */
static bool lost_wait(atomic_int *done) {
    for (int ms = 0; ms < 10000 && !atomic_load(done); ms++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    return atomic_load(done) != 0;
}

/* The copy made, d settled by it, both right. */
static void lost_check(champ_map *d, champ_map *copy, uint64_t k, const char *what, int round) {
    void *got = NULL;
    CHECK(copy && champ_get_u64(copy, k, &got) && got == (void *)7 &&
              champ_size(copy) == champ_size(d),
          "%s, round %d: the copy", what, round);
    CHECK(d->light == LIGHT_NONE && !map_pinned(d), "%s, round %d: the copy settled d", what,
          round);
}

static void test_lost_cas_copy_race(void) {
    champ_map *v;
    champ_cell *cell;
    champ_pool *p = race_begin(&v, &cell);
    if (!p)
        return;
    champ_map *stale = NULL, *v2 = NULL;
    CHECK_ST(champ_cell_load(cell, &stale), CHAMP_OK);
    CHECK_ST(champ_pset_u64(v, 1u << 20, (void *)9, &v2), CHAMP_OK);
    CHECK_ST(champ_cell_store(cell, v2), CHAMP_OK); /* stale is not the cell's now */
    champ_free(v2);
    /* 1. The claim held by hand (champ__light_claim, what a cell's store
     * and cas do first) while the copy starts: the copy waits; given back
     * light (a lost cas), the copy settles it. */
    for (int round = 0; round < 10 && cell && stale; round++) {
        champ_map *s = NULL, *d = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        CHECK_ST(champ_pset_u64(s, (uint64_t)round, (void *)7, &d), CHAMP_OK);
        CHECK(lv_is_light(d) && champ__light_claim(d), "claimed by hand (round %d)", round);
        atomic_int go, done;
        atomic_init(&go, 1); /* the copier alone */
        atomic_init(&done, 0);
        lost_arg a = {{d, NULL, &go}, cell, stale, &done, 0, 0};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, lost_copier, &a) == 0, "thread");
        nanosleep(&(struct timespec){0, 20000000}, NULL);
        CHECK(!atomic_load(&done), "round %d: the copy waits while d is claimed", round);
        champ__light_unclaim(d);
        if (!lost_wait(&done)) {
            CHECK(false, "round %d: the copy of a version given back light never returned",
                  round);
            return; /* the thread is left behind */
        }
        pthread_join(th, NULL);
        lost_check(d, a.lv.copy, (uint64_t)round, "claimed by hand", round);
        champ_free(a.lv.copy);
        champ_free(d);
        champ_free(s);
    }
    /* 2. The same with real cas calls bound to lose, on another thread,
     * racing the copy (how often they meet depends on the scheduler). */
    int rounds = th_scale() < 1.0 ? 10 : 100; /* valgrind runs one thread at a time */
    for (int round = 0; round < rounds && cell && stale; round++) {
        champ_map *s = NULL, *d = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        CHECK_ST(champ_pset_u64(s, (uint64_t)round, (void *)7, &d), CHAMP_OK);
        CHECK(lv_is_light(d), "light (round %d)", round);
        atomic_int go, done;
        atomic_init(&go, 0);
        atomic_init(&done, 0);
        lost_arg a = {{d, NULL, &go}, cell, stale, &done, 0, 0};
        pthread_t th[2];
        CHECK(pthread_create(&th[0], NULL, lost_publisher, &a) == 0, "thread");
        CHECK(pthread_create(&th[1], NULL, lost_copier, &a) == 0, "thread");
        if (!lost_wait(&done)) {
            CHECK(false, "round %d: the copy of a version a losing cas claims never returned",
                  round);
            return; /* the threads are left behind */
        }
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        CHECK(a.cas_bad == 0 && a.cas_calls >= 50, "round %d: %d cas calls, all lost", round,
              a.cas_calls);
        lost_check(d, a.lv.copy, (uint64_t)round, "racing cas calls", round);
        if (round % 5 == 0)
            CHECK_VALID(d, "after a copy raced with losing cas calls");
        champ_free(a.lv.copy);
        champ_free(d);
        champ_free(s);
    }
    champ_free(stale);
    race_end(p, v, cell);
}

typedef struct pin_arg {
    champ_cell *cell;
    champ_map *snap[4];
    int loaded;
    bool ok;
} pin_arg;

/* Loads four snapshots and exits, leaving them to main. */
static void *pin_loader(void *v) {
    pin_arg *a = v;
    a->loaded = 0;
    for (int i = 0; i < 4; i++)
        if (champ_cell_load(a->cell, &a->snap[i]) == CHAMP_OK && a->snap[i])
            a->loaded++;
    return NULL;
}

/* Frees main's snapshots on another thread while storing a new version. */
static void *pin_freer(void *v) {
    pin_arg *a = v;
    a->ok = true;
    for (int i = 0; i < 4; i++) {
        a->ok = a->ok && pin_holds(a->snap[i], CHAMP_KEY_U64, PIN_N, 1);
        champ_free(a->snap[i]);
    }
    return NULL;
}

static void test_cell_pins_threads(void) {
    champ_pool *p = cc_pool();
    if (!p)
        return;
    champ_free(pin_map(p, CHAMP_KEY_U64, 0, 0)); /* makes the type holder */
    const size_t live0 = th_pool_live(p);
    champ_map *v1 = pin_map(p, CHAMP_KEY_U64, PIN_N, 1), *v2 = pin_map(p, CHAMP_KEY_U64, PIN_N, 2);
    champ_cell *cell = NULL;
    CHECK_ST(champ_cell_new(v1, &cell), CHAMP_OK);
    champ_free(v1);
    /* a thread pins version 1 four times and exits */
    pin_arg a = {cell, {NULL}, 0, false};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, pin_loader, &a) == 0, "thread");
    pthread_join(th, NULL);
    CHECK_EQ(a.loaded, 4, "the thread's loads");
    for (int i = 0; i < 4; i++)
        CHECK(a.snap[i] && map_pinned(a.snap[i]), "snapshot %d pinned in the thread's heap", i);
    size_t live = th_pool_live(p);
    CHECK_ST(champ_cell_store(cell, v2), CHAMP_OK);
    CHECK(p->retired != NULL, "version 1 waits on the exited thread's pins");
    for (int i = 0; i < 4; i++) {
        CHECK(pin_holds(a.snap[i], CHAMP_KEY_U64, PIN_N, 1), "main reads the thread's snapshot");
        champ_free(a.snap[i]);
    }
    CHECK(p->retired == NULL, "main's frees released version 1");
    CHECK(th_pool_live(p) < live / 2 + 4096, "version 1 freed");
    /* main pins version 2 and stores version 1 again (its snapshots keep
     * reading version 2); then main pins version 1, stores version 2, and
     * another thread frees main's pins: its releases find marked slots */
    pin_arg b = {cell, {NULL}, 0, false};
    for (int i = 0; i < 4; i++)
        CHECK_ST(champ_cell_load(cell, &b.snap[i]), CHAMP_OK);
    v1 = pin_map(p, CHAMP_KEY_U64, PIN_N, 1);
    CHECK_ST(champ_cell_store(cell, v1), CHAMP_OK);
    for (int i = 0; i < 4; i++)
        CHECK(pin_holds(b.snap[i], CHAMP_KEY_U64, PIN_N, 2), "main's snapshot of version 2");
    for (int i = 0; i < 4; i++) {
        champ_free(b.snap[i]);
        b.snap[i] = NULL;
    }
    for (int i = 0; i < 4; i++)
        CHECK_ST(champ_cell_load(cell, &b.snap[i]), CHAMP_OK); /* version 1 */
    CHECK_ST(champ_cell_store(cell, v2), CHAMP_OK);
    CHECK(p->retired != NULL, "version 1 (again) waits on main's pins");
    CHECK(pthread_create(&th, NULL, pin_freer, &b) == 0, "thread");
    pthread_join(th, NULL);
    CHECK(b.ok, "the other thread read main's snapshots");
    CHECK(p->retired == NULL, "the other thread's frees released version 1");
    champ_map *last = NULL;
    CHECK_ST(champ_cell_load(cell, &last), CHAMP_OK);
    CHECK(pin_holds(last, CHAMP_KEY_U64, PIN_N, 2), "the cell holds version 2");
    CHECK_VALID(last, "after the threads");
    champ_free(last);
    champ_cell_free(cell);
    champ_free(v1);
    champ_free(v2);
    CHECK_EQ(th_pool_live(p), live0, "the pool drained");
    cc_check_books(p, "after the pin threads");
    champ_free(pin_type[0]);
    pin_type[0] = NULL;
    champ_pool_free(p);
}

/* ------------------------------------------------------------------ */
/* Publication by transfer (pin.c)                                     */
/* ------------------------------------------------------------------ */

enum { PT_SLOTS = 10 };

/* The cell's version, loaded and checked against the model. */
static void pt_cell_matches(champ_cell *cell, const uintptr_t *model, const char *what) {
    champ_map *s = NULL;
    CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
    if (!s)
        return;
    lv_matches(s, model, what);
    CHECK_VALID(s, what);
    champ_free(s);
}

/* Frees slot i's map; the slots derived from it forget it (a later
 * handle may get its address). */
static void pt_drop(champ_map **sl, const champ_map **from, int i) {
    for (int j = 0; j < PT_SLOTS; j++)
        if (sl[i] && from[j] == sl[i])
            from[j] = NULL;
    champ_free(sl[i]);
    sl[i] = NULL;
}

static void test_publish_transfer(void) {
    size_t live0 = 0;
    champ_pool *p = lv_pool(&live0);
    if (!p)
        return;
    static uintptr_t cm[LV_KEYS], om[LV_KEYS], dm[LV_KEYS];
    memset(cm, 0, sizeof cm);
    champ_cell *cell = lv_cell(p, cm);
    if (!cell)
        return;

    /* 1. A light version of the cell's snapshot, published with cas, takes
     * the replaced version's path without counting (the record names it as
     * heir); the replaced version goes when its snapshot does.  Who else
     * holds the replaced version's nodes: nobody (0), a copy of the
     * snapshot (1: the root is kept, its children are counted again), a
     * version sharing its subtrees (2: a level-1 node of the path is kept),
     * the set of an existing key, a new key, a removal (3-5, nobody), the
     * snapshot itself, counted by a trim while the record waits (6). */
    for (int how = 0; how < 7; how++) {
        champ_map *s = NULL, *d = NULL, *h = NULL, *o = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        if (!s)
            break;
        uint64_t k = how == 4 ? 1001 : how == 5 ? 1002 : 2 * (uint64_t)how + 100;
        bool rm = how == 5;
        memcpy(dm, cm, sizeof dm);
        dm[k] = rm ? 0 : (uintptr_t)(how + 5000);
        CHECK_ST(rm ? champ_premove_u64(s, k, &d)
                    : champ_pset_u64(s, k, (void *)dm[k], &d),
                 CHAMP_OK);
        CHECK(lv_is_light(d), "case %d: a light version of the snapshot", how);
        if (how == 1)
            CHECK_ST(champ_copy(s, &h), CHAMP_OK);
        if (how == 2) {
            /* settled (a copy of it settles it): it counts the snapshot's
             * root's children, the path's level-1 node among them */
            champ_map *c = NULL;
            memcpy(om, cm, sizeof om);
            om[3001] = 3002;
            CHECK_ST(champ_pset_u64(s, 3001, (void *)om[3001], &o), CHAMP_OK);
            CHECK_ST(champ_copy(o, &c), CHAMP_OK);
            champ_free(c);
        }
        bool sw = false;
        CHECK_ST(champ_cell_cas(cell, s, d, &sw), CHAMP_OK);
        CHECK(sw, "case %d: published", how);
        CHECK(p->retired && p->retired->root == s->root && d && p->retired->heir == d->root,
              "case %d: published by transfer (the record names the heir)", how);
        CHECK(d->light == LIGHT_NONE && !map_pinned(d), "case %d: the version is counted", how);
        CHECK_VALID(d, "a version published by transfer, its record waiting");
        lv_matches(s, cm, "the replaced version's snapshot, after the transfer");
        if (how == 6) {
            /* trim counts the snapshot and releases the record: the
             * replaced root is kept (the snapshot's now) */
            CHECK_ST(champ_pool_trim(p), CHAMP_OK);
            CHECK(p->retired == NULL && !map_pinned(s), "trim released the record");
            lv_matches(s, cm, "the replaced version, counted by trim");
            CHECK_VALID(s, "the replaced version, counted by trim");
            lv_matches(d, dm, "the published version, after trim");
        }
        champ_free(s);
        CHECK(p->retired == NULL, "case %d: the record went with the snapshot", how);
        CHECK_VALID(d, "after the record");
        lv_matches(d, dm, "the published version");
        if (h) {
            lv_matches(h, cm, "a copy of the replaced version");
            CHECK_VALID(h, "a copy of the replaced version");
            champ_free(h);
        }
        if (o) {
            lv_matches(o, om, "a version sharing the replaced one's subtrees");
            CHECK_VALID(o, "a version sharing the replaced one's subtrees");
            champ_free(o);
        }
        champ_free(d);
        memcpy(cm, dm, sizeof cm);
        pt_cell_matches(cell, cm, "the cell after a transfer");
    }

    /* 2. The heir's own record goes first: C -> W -> X, C pinned until
     * the end, so W's record is released while C's still names W. */
    {
        champ_map *s0 = NULL, *s1 = NULL, *d1 = NULL, *s2 = NULL, *d2 = NULL;
        CHECK_ST(champ_cell_load(cell, &s0), CHAMP_OK);
        CHECK_ST(champ_cell_load(cell, &s1), CHAMP_OK);
        memcpy(om, cm, sizeof om); /* C */
        cm[7] = 777;
        CHECK_ST(champ_pset_u64(s1, 7, (void *)cm[7], &d1), CHAMP_OK);
        bool sw = false;
        CHECK_ST(champ_cell_cas(cell, s1, d1, &sw), CHAMP_OK);
        CHECK(sw && p->retired && p->retired->heir, "C -> W by transfer");
        champ_free(d1);
        champ_free(s1);
        CHECK_ST(champ_cell_load(cell, &s2), CHAMP_OK);
        cm[9] = 999;
        CHECK_ST(champ_pset_u64(s2, 9, (void *)cm[9], &d2), CHAMP_OK);
        CHECK_ST(champ_cell_cas(cell, s2, d2, &sw), CHAMP_OK);
        CHECK(sw && p->retired && p->retired->heir, "W -> X by transfer");
        champ_free(d2);
        CHECK_VALID(s2, "two records waiting");
        champ_free(s2);
        CHECK(p->retired && !p->retired->next, "W's record went, C's waits");
        lv_matches(s0, om, "C, pinned");
        CHECK_VALID(s0, "C's record waiting, W's gone");
        champ_free(s0);
        CHECK(p->retired == NULL, "C's record went");
        pt_cell_matches(cell, cm, "the cell after C, W and X");
    }

    /* 3. Not by transfer: a failed allocation (the version stays light,
     * nothing changes), a cas that loses (the version stays light, not
     * published, nothing counted), a store of a light version whose base
     * is not the cell's version (settled under the lock, then stored). */
    {
        static uintptr_t bm[LV_KEYS];
        memcpy(bm, cm, sizeof bm); /* B: what both snapshots hold */
        champ_map *s = NULL, *t1 = NULL, *d = NULL, *e = NULL, *f = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        CHECK_ST(champ_cell_load(cell, &t1), CHAMP_OK);
        CHECK_ST(champ_pset_u64(s, 11, (void *)(uintptr_t)1111, &d), CHAMP_OK);
        CHECK_ST(champ_pset_u64(t1, 13, (void *)(uintptr_t)1313, &e), CHAMP_OK);
        size_t live = th_pool_live(p);
        bool sw = true;
        if (TH_NEED_FAULTS("concurrent.publish_transfer, a failed cas")) {
            champ_pool_fail_after(p, 0);
            CHECK_ST(champ_cell_cas(cell, s, d, &sw), CHAMP_ENOMEM);
            champ_pool_fail_after(p, -1);
            CHECK(lv_is_light(d) && th_pool_live(p) == live,
                  "a failed cas leaves the version light");
            pt_cell_matches(cell, bm, "the cell after a failed cas");
        }
        CHECK_ST(champ_cell_cas(cell, s, d, &sw), CHAMP_OK);
        CHECK(sw && p->retired && p->retired->heir == d->root, "then published by transfer");
        /* a lost cas leaves the version light: no count was taken on
         * anything (the nodes the other threads read), live bytes as
         * they were */
        champ_stats before, after;
        CHECK_ST(champ_stats_get(t1, &before, sizeof before), CHAMP_OK);
        live = th_pool_live(p);
        CHECK_ST(champ_cell_cas(cell, t1, e, &sw), CHAMP_OK);
        CHECK(!sw && lv_is_light(e), "a lost cas leaves the version light");
        CHECK_ST(champ_stats_get(t1, &after, sizeof after), CHAMP_OK);
        CHECK(after.nodes_shared == before.nodes_shared && th_pool_live(p) == live,
              "a lost cas counts nothing: shared nodes %zu -> %zu, live %zu -> %zu",
              before.nodes_shared, after.nodes_shared, live, th_pool_live(p));
        memcpy(om, bm, sizeof om);
        om[13] = 1313;
        lv_matches(e, om, "a version a cas did not publish");
        CHECK_VALID(e, "a version a cas did not publish");
        /* a store of it settles it (its base is not the cell's version) */
        CHECK_ST(champ_cell_store(cell, e), CHAMP_OK);
        CHECK(e->light == LIGHT_NONE && !map_pinned(e), "then stored: settled");
        pt_cell_matches(cell, om, "the cell after storing a counted version");
        CHECK_ST(champ_pset_u64(t1, 15, (void *)(uintptr_t)1515, &f), CHAMP_OK);
        CHECK(lv_is_light(f), "a light version of an older snapshot");
        CHECK_ST(champ_cell_store(cell, f), CHAMP_OK);
        bool heir = false;
        for (const retired *r = p->retired; r; r = r->next)
            heir |= r->heir == f->root;
        CHECK(f->light == LIGHT_NONE && !map_pinned(f) && !heir,
              "a store of a version of another base settles it (no record names it)");
        memcpy(cm, bm, sizeof cm);
        cm[15] = 1515;
        lv_matches(f, cm, "the stored version");
        CHECK_VALID(f, "the stored version");
        champ_free(d);
        champ_free(e);
        champ_free(f);
        champ_free(s);
        champ_free(t1);
        CHECK(p->retired == NULL, "every record went");
        pt_cell_matches(cell, cm, "the cell at the end");
    }
    /* 4. A random run against models: snapshots loaded, light versions
     * derived (sets, new keys, removals that collapse subtrees), published
     * with cas against the snapshot they came from (or a stale one) or
     * stored, copies of everything, frees in any order; allocation failure
     * injected into publications; every map and the census checked. */
    {
        uint64_t seed = 0x7472616e73666572ull;
        th_set_seed(seed);
        th_rng r = {seed};
        static uintptr_t sm[PT_SLOTS][LV_KEYS];
        champ_map *sl[PT_SLOTS] = {0};
        const champ_map *from[PT_SLOTS] = {0}; /* what each was derived from */
        size_t transfers = 0, fails = 0, published = 0, lost = 0;
        for (int it = 0; it < 4000; it++) {
            int a = (int)th_below(&r, PT_SLOTS), b = (int)th_below(&r, PT_SLOTS);
            unsigned op = (unsigned)th_below(&r, 15);
            if (op >= 12 && a != b) { /* a server's step: load, derive, publish */
                pt_drop(sl, from, a);
                pt_drop(sl, from, b);
                CHECK_ST(champ_cell_load(cell, &sl[a]), CHAMP_OK);
                memcpy(sm[a], cm, sizeof sm[a]);
                uint64_t k = th_below(&r, LV_KEYS);
                bool rm = op == 12;
                if (sl[a])
                    CHECK_ST(rm ? champ_premove_u64(sl[a], k, &sl[b])
                                : champ_pset_u64(sl[a], k, (void *)(uintptr_t)(it + 1), &sl[b]),
                             CHAMP_OK);
                memcpy(sm[b], sm[a], sizeof sm[b]);
                sm[b][k] = rm ? 0 : (uintptr_t)(it + 1);
                from[b] = sl[a];
                op = 7; /* then a cas against the snapshot */
                a = b;
            }
            if (op < 3) { /* load */
                pt_drop(sl, from, a);
                CHECK_ST(champ_cell_load(cell, &sl[a]), CHAMP_OK);
                memcpy(sm[a], cm, sizeof sm[a]);
                from[a] = NULL;
            } else if (op < 7 && sl[a] && a != b) { /* derive b from a */
                uint64_t k = th_below(&r, LV_KEYS);
                bool rm = th_chance(&r, 40);
                champ_map *d = NULL;
                CHECK_ST(rm ? champ_premove_u64(sl[a], k, &d)
                            : champ_pset_u64(sl[a], k, (void *)(uintptr_t)(it + 1), &d),
                         CHAMP_OK);
                pt_drop(sl, from, b);
                sl[b] = d;
                from[b] = sl[a];
                memcpy(sm[b], sm[a], sizeof sm[b]);
                sm[b][k] = rm ? 0 : (uintptr_t)(it + 1);
            } else if (op < 9 && sl[a]) { /* publish a: cas or store */
                const champ_map *e = NULL;
                for (int i = 0; i < PT_SLOTS && !e; i++)
                    if (sl[i] && sl[i] == from[a])
                        e = sl[i];
                if (!e && op == 7)
                    e = sl[b];
                /* a light version of a snapshot is claimed: a failure
                 * leaves it light; one of a counted map is settled first
                 * (live bytes may fall) */
                bool light = lv_is_light(sl[a]) && sl[a]->lbase == LBASE_PIN;
                bool fail = th_chance(&r, 15);
                size_t live = th_pool_live(p);
                const retired *top = p->retired;
                if (fail)
                    champ_pool_fail_after(p, (long)th_below(&r, 2));
                bool sw = false;
                champ_status st = e ? champ_cell_cas(cell, e, sl[a], &sw)
                                    : champ_cell_store(cell, sl[a]);
                champ_pool_fail_after(p, -1);
                if (st == CHAMP_ENOMEM) {
                    fails++;
                    CHECK(th_pool_live(p) <= live && (!light || lv_is_light(sl[a])),
                          "step %d: a failed publication changes nothing", it);
                    lv_matches(sl[a], sm[a], "a version a failed publication had");
                } else if (e && !sw) {
                    CHECK_ST(st, CHAMP_OK);
                    CHECK(!light || lv_is_light(sl[a]),
                          "step %d: a light version a cas refused stays light", it);
                    lost++;
                } else {
                    CHECK_ST(st, CHAMP_OK);
                    CHECK(sl[a]->light == LIGHT_NONE && (!light || !map_pinned(sl[a])),
                          "step %d: a light version published is counted", it);
                    {
                        published++;
                        memcpy(cm, sm[a], sizeof cm);
                        transfers += p->retired && p->retired != top &&
                                     p->retired->heir == sl[a]->root;
                    }
                }
            } else if (op < 10 && sl[a] && a != b) { /* copy a into b */
                champ_map *c = NULL;
                CHECK_ST(champ_copy(sl[a], &c), CHAMP_OK);
                pt_drop(sl, from, b);
                sl[b] = c;
                from[b] = NULL;
                memcpy(sm[b], sm[a], sizeof sm[b]);
            } else if (op < 12) { /* free a */
                pt_drop(sl, from, a);
            }
            if (it % 250 == 249) {
                char what[64];
                for (int i = 0; i < PT_SLOTS; i++)
                    if (sl[i]) {
                        snprintf(what, sizeof what, "transfer run: slot %d, step %d", i, it);
                        lv_matches(sl[i], sm[i], what);
                        CHECK_VALID(sl[i], what);
                    }
                snprintf(what, sizeof what, "transfer run: the cell, step %d", it);
                pt_cell_matches(cell, cm, what);
            }
        }
        for (int i = 0; i < PT_SLOTS; i++)
            pt_drop(sl, from, i);
        CHECK(p->retired == NULL, "transfer run: every record went");
        pt_cell_matches(cell, cm, "transfer run: the cell at the end");
        CHECK(transfers > 50 && (fails > 10 || !TH_FAULTS) && published > transfers &&
                  lost > 10,
              "transfer run: %zu publications, %zu by transfer, %zu failed, %zu cas lost",
              published, transfers, fails, lost);
        th_set_seed(0);
    }
    champ_cell_free(cell);
    lv_pool_end(p, live0, "after the transfers");
}

/* ------------------------------------------------------------------ */
/* Cell edges (a coverage run of the suite found them untested)        */
/* ------------------------------------------------------------------ */

/* Holds exactly keys [lo, lo + n) with values th_tok(k + v). */
static bool ce_holds(const champ_map *m, uint64_t lo, size_t n, uint64_t v) {
    if (!m || champ_size(m) != n)
        return false;
    for (uint64_t k = lo; k < lo + n; k++) {
        void *got = NULL;
        if (!champ_get_u64(m, k, &got) || got != th_tok(k + v))
            return false;
    }
    return true;
}

/* A cell whose version is an empty map (not an empty cell: a type is
 * set), loads and frees of it, and the calls that allocate failing, in a
 * plain and a concurrent pool:
 *   - loads of an empty version give a map of size 0 (a concurrent pool's
 *     load releases the pin it took: there is no root to pin);
 *   - a plain pool's load that cannot allocate its handle returns
 *     CHAMP_ENOMEM with *out NULL and leaves the root's count as it was
 *     (the cell's version frees exactly when the cell does);
 *   - the first store into a cell made from NULL (a concurrent pool
 *     allocates two records: the replaced version's and the one its free
 *     will use) fails at either allocation with the cell still empty;
 *   - freeing a cell whose version is empty gives its record back.
 * The pool's live bytes come back to where they started. */
static void cell_edges_pool(bool concurrent) {
    const char *kn = concurrent ? "concurrent pool" : "plain pool";
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.concurrent = concurrent;
    champ_pool *p = NULL;
    CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
    if (!p)
        return;
    champ_config c = th_kind_config(CHAMP_KEY_U64, 11, p);
    champ_map *empty = NULL, *full = NULL;
    CHECK_ST(champ_new(&c, &empty), CHAMP_OK);
    if (empty)
        CHECK_ST(champ_new_like(empty, &full), CHAMP_OK);
    if (!full) {
        champ_free(empty);
        champ_pool_free(p);
        return;
    }
    for (uint64_t k = 1; k <= 300; k++)
        CHECK_ST(champ_set_u64(full, k, th_tok(k + 5), NULL), CHAMP_OK);
    size_t live0 = th_pool_live(p);

    /* 1. A cell made from an empty map: loads give empty maps. */
    champ_cell *cell = NULL;
    CHECK_ST(champ_cell_new(empty, &cell), CHAMP_OK);
    champ_map *s = NULL;
    CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
    CHECK(s && champ_size(s) == 0 && !champ_contains_u64(s, 1),
          "%s: a load of an empty version is an empty map", kn);
    CHECK(s && !map_pinned(s), "%s: nothing to pin", kn);
    /* the snapshot is a map of its own: it takes updates */
    CHECK_ST(champ_set_u64(s, 7, th_tok(7), NULL), CHAMP_OK);
    CHECK_VALID(s, "an updated snapshot of an empty version");
    champ_free(s);
    s = NULL;
    /* a full version, then an empty one again */
    CHECK_ST(champ_cell_store(cell, full), CHAMP_OK);
    CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
    CHECK(ce_holds(s, 1, 300, 5), "%s: the full version loaded", kn);
    CHECK_ST(champ_cell_store(cell, empty), CHAMP_OK);
    CHECK(ce_holds(s, 1, 300, 5), "%s: a snapshot outlives the store over it", kn);
    champ_free(s);
    s = NULL;
    CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
    CHECK(s && champ_size(s) == 0, "%s: the empty version loaded again", kn);
    champ_free(s);
    s = NULL;
    /* a plain pool's load that cannot allocate: nothing changes */
    if (!concurrent && TH_NEED_FAULTS("concurrent.cell_edges, a failed load")) {
        CHECK_ST(champ_cell_store(cell, full), CHAMP_OK);
        size_t live = th_pool_live(p);
        uint32_t rc = full->root ? full->root->rc : 0;
        for (int i = 0; i < 3; i++) {
            s = th_tok(1); /* set to NULL by the call */
            champ_pool_fail_after(p, 0);
            CHECK_ST(champ_cell_load(cell, &s), CHAMP_ENOMEM);
            champ_pool_fail_after(p, -1);
            CHECK(s == NULL, "%s: *out NULL after a failed load", kn);
            CHECK_EQ(th_pool_live(p), live, "a failed load allocates nothing");
            CHECK(full->root && full->root->rc == rc,
                  "%s: a failed load leaves the root's count (%u, was %u)", kn,
                  full->root ? full->root->rc : 0, rc);
        }
        s = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        CHECK(ce_holds(s, 1, 300, 5), "%s: a load after the failures", kn);
        champ_free(s);
        s = NULL;
        CHECK_ST(champ_cell_store(cell, empty), CHAMP_OK);
    }
    /* a cell holding an empty version frees everything it took */
    champ_cell_free(cell);
    cell = NULL;
    CHECK_EQ(th_pool_live(p), live0, "a cell of an empty version freed");
    if (concurrent)
        CHECK(p->retired == NULL, "%s: no record left waiting", kn);

    /* 2. The first store into a cell made from NULL, failing at each of
     * its allocations (a concurrent pool's two records) until it passes. */
    for (int which = 0; which < 2; which++) {
        const champ_map *v = which ? full : empty;
        CHECK_ST(champ_cell_new(NULL, &cell), CHAMP_OK);
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        CHECK(s == NULL, "%s: an empty cell loads as NULL", kn);
        long budget = 0, fails = 0;
        champ_status st;
        for (;;) {
            size_t live = th_pool_live(p);
            champ_pool_fail_after(p, budget);
            st = champ_cell_store(cell, v);
            champ_pool_fail_after(p, -1);
            if (st != CHAMP_ENOMEM)
                break;
            fails++;
            CHECK_EQ(th_pool_live(p), live, "a failed first store allocates nothing");
            s = th_tok(1);
            CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
            CHECK(s == NULL, "%s: the cell still empty after a failed first store (%ld)",
                  kn, budget);
            budget++;
        }
        CHECK_ST(st, CHAMP_OK);
        CHECK_EQ(fails, TH_FAULTS && concurrent ? 2 : 0, "allocations of a first store");
        s = NULL;
        CHECK_ST(champ_cell_load(cell, &s), CHAMP_OK);
        CHECK(which ? ce_holds(s, 1, 300, 5) : (s && champ_size(s) == 0),
              "%s: the first store's version loaded (%s)", kn, which ? "full" : "empty");
        CHECK_VALID(s, "a snapshot after a first store");
        champ_free(s);
        s = NULL;
        champ_cell_free(cell);
        cell = NULL;
        CHECK_EQ(th_pool_live(p), live0, "a cell made from NULL freed");
    }
    if (concurrent)
        cc_check_books(p, "after the cell edges");
    champ_free(full);
    champ_free(empty);
    CHECK_EQ(th_pool_live(p), 0, "the pool is empty at the end");
    champ_pool_free(p);
}

/* Two threads store into a cell made from NULL at the same moment, again
 * and again: both with maps of one type (each may find the cell without
 * its free's record and allocate one: the loser gives its own back), or
 * each with a type of its own (exactly one store wins; the other is
 * CHAMP_EPOOL, whether it sees the winner's type before or under the
 * lock, and changes nothing).  Checked after the joins: the outcome of
 * every round, the cell's version, and live bytes back at the start. */
enum { CE_ROUNDS = 1000 };

/* Waits for *v to reach at least want: spins a while (both threads
 * should leave the wait together), then yields (a loaded machine). */
static void ce_wait(atomic_int *v, int want) {
    for (long spins = 0; atomic_load(v) < want; spins++)
        if (spins > 20000)
            sched_yield();
}

typedef struct ce_arg {
    champ_cell **cells;         /* one fresh cell per round              */
    const champ_map *m;
    atomic_int *go;             /* 1 to start, -1 to quit at once        */
    atomic_int *ready;          /* the two workers' barrier              */
    int idx;                    /* 0 or 1: which thread waits in a round */
    champ_status st[CE_ROUNDS];
} ce_arg;

/* The window the race needs (a store that found the cell without a type,
 * then finds one under the lock) is some tens of ns wide, narrower than
 * the jitter of two threads leaving one barrier.  So one thread of each
 * round waits a little before its store, the delay sweeping from one
 * thread to the other over 64 rounds in steps of a few ns: some rounds
 * land in the window whatever the machine's timing.  Only the two
 * workers spin (main sleeps in pthread_join): a third spinning thread on
 * a 2-core machine kept them from running at once.  Measured with gcov
 * on an idle machine: the race's paths in cell_swap ran in about 800 of
 * the 1,000 rounds (0 to 3 with main spinning too and no sweep). */
static void ce_stagger(int idx, int r) {
    int d = r % 64 - 32;
    if ((d > 0) == (idx == 0) && d != 0)
        for (volatile int i = 0; i < 4 * (d < 0 ? -d : d); i++) {
        }
}

static void *ce_worker(void *arg) {
    ce_arg *a = arg;
    ce_wait(a->go, 1);
    if (atomic_load(a->go) < 0)
        return NULL;
    for (int r = 0; r < CE_ROUNDS; r++) {
        atomic_fetch_add(a->ready, 1);
        ce_wait(a->ready, 2 * (r + 1));
        ce_stagger(a->idx, r);
        a->st[r] = champ_cell_store(a->cells[r], a->m);
    }
    return NULL;
}

static void cell_first_store_race(bool same_type) {
    champ_pool *p = cc_pool();
    if (!p)
        return;
    champ_config c1 = th_kind_config(CHAMP_KEY_U64, 21, p);
    champ_config c2 = th_kind_config(CHAMP_KEY_U64, same_type ? 21 : 22, p);
    champ_map *m1 = NULL, *m2 = NULL;
    CHECK_ST(champ_new(&c1, &m1), CHAMP_OK);
    if (m1) {
        if (same_type)
            CHECK_ST(champ_new_like(m1, &m2), CHAMP_OK);
        else
            CHECK_ST(champ_new(&c2, &m2), CHAMP_OK);
    }
    if (!m1 || !m2) {
        champ_free(m1);
        champ_free(m2);
        champ_pool_free(p);
        return;
    }
    for (uint64_t k = 0; k < 50; k++) {
        champ_set_u64(m1, k, th_tok(k + 1), NULL);
        champ_set_u64(m2, k, th_tok(k + 2), NULL);
    }
    size_t live0 = th_pool_live(p);
    static champ_cell *cells[CE_ROUNDS];
    atomic_int go, ready;
    atomic_init(&go, 0);
    atomic_init(&ready, 0);
    static ce_arg a[2];
    a[0] = (ce_arg){cells, m1, &go, &ready, 0, {0}};
    a[1] = (ce_arg){cells, m2, &go, &ready, 1, {0}};
    pthread_t id[2];
    int made = 0;
    for (int r = 0; r < CE_ROUNDS; r++) {
        cells[r] = NULL;
        CHECK_ST(champ_cell_new(NULL, &cells[r]), CHAMP_OK);
    }
    for (int i = 0; i < 2; i++)
        if (pthread_create(&id[i], NULL, ce_worker, &a[i]) == 0)
            made++;
    CHECK_EQ(made, 2, "threads started");
    atomic_store(&go, made == 2 ? 1 : -1);
    for (int i = 0; i < made; i++)
        pthread_join(id[i], NULL);
    long won1 = 0, won2 = 0, bad = 0;
    for (int r = 0; made == 2 && r < CE_ROUNDS; r++) {
        champ_status s1 = a[0].st[r], s2 = a[1].st[r];
        champ_map *s = NULL;
        CHECK_ST(champ_cell_load(cells[r], &s), CHAMP_OK);
        if (same_type) {
            bad += s1 != CHAMP_OK || s2 != CHAMP_OK;
            bad += !(ce_holds(s, 0, 50, 1) || ce_holds(s, 0, 50, 2));
        } else if (s1 == CHAMP_OK && s2 == CHAMP_EPOOL) {
            won1++;
            bad += !ce_holds(s, 0, 50, 1);
        } else if (s2 == CHAMP_OK && s1 == CHAMP_EPOOL) {
            won2++;
            bad += !ce_holds(s, 0, 50, 2);
        } else {
            bad++;
        }
        champ_free(s);
    }
    CHECK_EQ(bad, 0, same_type ? "racing first stores of one type: both pass"
                               : "racing first stores of two types: one wins");
    if (!same_type)
        CHECK_EQ(won1 + won2, made == 2 ? CE_ROUNDS : 0, "a winner every round");
    for (int r = 0; r < CE_ROUNDS; r++)
        champ_cell_free(cells[r]);
    CHECK_VALID(m1, "after the racing stores");
    CHECK_VALID(m2, "after the racing stores");
    CHECK_EQ(th_pool_live(p), live0, "every round's records and versions given back");
    cc_check_books(p, "after the racing first stores");
    champ_free(m1);
    champ_free(m2);
    CHECK_EQ(th_pool_live(p), 0, "the pool is empty at the end");
    champ_pool_free(p);
}

static void test_cell_edges(void) {
    cell_edges_pool(false);
    cell_edges_pool(true);
    cell_first_store_race(true);
    cell_first_store_race(false);
}

/* One thread using many concurrent pools at once: its thread-local table
 * of heaps (4 entries at first) grows, and drops the entries of pools
 * freed meanwhile.  Twelve pools, a map in each; every other pool freed;
 * twelve more; every map checked and validated, every pool drained. */
static void test_many_pools_one_thread(void) {
    enum { NP = 12 };
    champ_pool *p[2 * NP] = {0};
    champ_map *m[2 * NP] = {0};
    for (int round = 0; round < 2; round++) {
        for (int i = round * NP; i < (round + 1) * NP; i++) {
            p[i] = cc_pool();
            if (!p[i])
                continue;
            champ_config c = th_kind_config(CHAMP_KEY_U64, (uint64_t)i + 1, p[i]);
            CHECK_ST(champ_new(&c, &m[i]), CHAMP_OK);
            for (uint64_t k = 0; m[i] && k < 500; k++)
                CHECK_ST(champ_set_u64(m[i], k, th_tok(k + (uint64_t)i), NULL), CHAMP_OK);
        }
        /* every map of a live pool, read and updated through its heap */
        for (int i = 0; i < (round + 1) * NP; i++) {
            if (!m[i])
                continue;
            CHECK(ce_holds(m[i], 0, 500, (uint64_t)i), "pool %d: the map's contents", i);
            for (uint64_t k = 0; k < 500; k += 2)
                CHECK_ST(champ_remove_u64(m[i], k, NULL), CHAMP_OK);
            for (uint64_t k = 0; k < 500; k += 2)
                CHECK_ST(champ_set_u64(m[i], k, th_tok(k + (uint64_t)i), NULL), CHAMP_OK);
            CHECK_VALID(m[i], "a map of one of many pools");
            cc_check_books(p[i], "one of many pools");
        }
        if (round == 0)
            for (int i = 0; i < NP; i += 2) {
                champ_free(m[i]);
                m[i] = NULL;
                CHECK_EQ(p[i] ? th_pool_live(p[i]) : 0, 0, "a pool drained");
                champ_pool_free(p[i]);
                p[i] = NULL;
            }
    }
    for (int i = 0; i < 2 * NP; i++) {
        champ_free(m[i]);
        if (p[i])
            CHECK_EQ(th_pool_live(p[i]), 0, "a pool drained");
        champ_pool_free(p[i]);
    }
}

/* ------------------------------------------------------------------ */
/* Allocation failures on several threads at once                      */
/* ------------------------------------------------------------------ */

/*
 * concurrent.oom_threads.  The promise: in a concurrent pool, a call that
 * returns CHAMP_ENOMEM changes nothing (the map exactly as before, *out
 * NULL, *prior untouched, a cell unchanged) and leaks nothing, also while
 * other threads allocate, fail and free in the same pool; a refusal on one
 * thread costs no other thread anything (a thread whose backing calls are
 * never refused never sees CHAMP_ENOMEM, and every thread's work stays
 * right); and at the end every map validates, the pool's books balance,
 * its live bytes are 0, and after champ_pool_free the backing allocator
 * holds nothing.
 *
 * OT_THREADS threads share one concurrent pool (1 KiB chunks: many
 * backing calls) over a counting allocator that refuses by the calling
 * thread's mode: some, pseudo-randomly (a hash of a shared call counter
 * below the thread's rate, and every 61st draw), or all; the last thread
 * is never refused.  Each thread updates its own u64 and bytes maps (long
 * keys too: large blocks) against a model, derives p-forms of shared base
 * maps, copies its maps, passes versions to other threads (which check,
 * update and free them: remote frees), counts its publications in a
 * shared cell (load, pset, cas), and runs champ_apply (whose scratch comes
 * from the backing allocator) and the set algebra.  Phases:
 *   P1  random refusals        P2  refuse every backing call
 *   P3  champ_pool_fail_after(p, 0), set by main between barriers: every
 *       call that needs a block (a handle: copy, p-forms, load, store,
 *       cas, algebra) fails
 *   P4  one thread at a time (the others wait at a barrier: the hook's
 *       count is per pool and not atomic), fail_after(k) for k = 0, 1, ...
 *       until a whole round of calls succeeds
 *   P5  nothing refused: nothing may fail
 * The workers count what they see (the harness is not thread-safe); main
 * checks the counts after joining them.  P3 and P4 need CHAMP_FAULTS.
 */
enum {
    OT_THREADS = 4,  /* the last one is never refused */
    OT_KEYS = 2048,  /* key space of the threads' maps */
    OT_BASE = 700,   /* keys 0..OT_BASE-1 of the base maps, value th_tok(k) */
    OT_SLOTS = 6,    /* versions in passage between threads */
    OT_KEYMAX = 1200,/* longest byte key */
    OT_BATCH = 24    /* longest apply batch */
};
enum { OT_P1, OT_P2, OT_P3, OT_P4, OT_P5, OT_NPH };
static const char *const ot_phase[OT_NPH] = {"random refusals", "every backing call refused",
                                             "fail_after(0)", "fail_after sweep", "recovery"};

/* The backing allocator: malloc with a size header, atomic counters, and
 * refusals by the calling thread's mode. */
enum { OT_OFF, OT_RANDOM, OT_ALL };
static _Thread_local int ot_mode;
static _Thread_local unsigned ot_rate; /* of 1024 draws */
static _Thread_local unsigned long ot_my_refusals;

typedef struct ot_alloc {
    champ_allocator a;
    uint64_t seed;
    atomic_ulong calls, draws, refused, blocks, bad_size, reallocs;
    atomic_size_t got, given; /* bytes handed out, given back */
} ot_alloc;

static void *ot_malloc(size_t size, void *ctx) {
    ot_alloc *al = ctx;
    atomic_fetch_add_explicit(&al->calls, 1, memory_order_relaxed);
    bool refuse = ot_mode == OT_ALL;
    if (ot_mode == OT_RANDOM) {
        unsigned long n = atomic_fetch_add_explicit(&al->draws, 1, memory_order_relaxed);
        refuse = (th_mix64(n ^ al->seed) & 1023) < ot_rate || n % 61 == 60;
    }
    if (refuse || size > SIZE_MAX - 16) {
        atomic_fetch_add_explicit(&al->refused, 1, memory_order_relaxed);
        ot_my_refusals++;
        return NULL;
    }
    unsigned char *b = malloc(size + 16);
    if (!b)
        return NULL;
    memcpy(b, &size, sizeof size);
    atomic_fetch_add_explicit(&al->blocks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&al->got, size, memory_order_relaxed);
    return b + 16;
}

static void ot_free(void *ptr, size_t size, void *ctx) {
    ot_alloc *al = ctx;
    if (!ptr)
        return;
    unsigned char *b = (unsigned char *)ptr - 16;
    size_t had;
    memcpy(&had, b, sizeof had);
    if (had != size)
        atomic_fetch_add_explicit(&al->bad_size, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&al->blocks, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&al->given, had, memory_order_relaxed);
    free(b);
}

static void *ot_realloc(void *ptr, size_t old_size, size_t new_size, void *ctx) {
    ot_alloc *al = ctx; /* the pool never calls it (champ.h): counted */
    atomic_fetch_add_explicit(&al->reallocs, 1, memory_order_relaxed);
    void *b = ot_malloc(new_size, ctx);
    if (b && ptr) {
        memcpy(b, ptr, old_size < new_size ? old_size : new_size);
        ot_free(ptr, old_size, ctx);
    }
    return b;
}

/* A version in passage between threads, and what it must hold. */
typedef struct ot_ver {
    champ_map *m;
    bool bytes;
    size_t n;
    uint64_t sum;
} ot_ver;

typedef struct ot_shared {
    champ_pool *p;
    champ_map *base[2];  /* u64, bytes: read, copied and p-formed by all */
    uint64_t base_sum[2];
    champ_cell *cell;    /* base[0] plus a counter key per thread */
    _Atomic(ot_ver *) slot[OT_SLOTS];
    atomic_int go;
    pthread_barrier_t bar;
    int nthreads;
    bool faults;
    long steps[OT_NPH];
} ot_shared;

typedef struct ot_thr {
    ot_shared *sh;
    int id;
    bool clean;          /* never refused */
    unsigned rate;
    int phase;
    th_rng r;
    champ_map *own[2];   /* u64, bytes: this thread's */
    uintptr_t ref[2][OT_KEYS]; /* their models: value, 0 when absent */
    size_t n[2];
    uint64_t sum[2];
    uint64_t ctr;
    long cas_ok, cas_lost;
    long calls[OT_NPH], enomem[OT_NPH];
    long hook_ok;        /* P3: calls that need a block and succeeded */
    long apply_all, apply_all_ok; /* P2 (refused threads): applies, done */
    long sweep_done, sweep_k, passed, taken;
    unsigned long refusals; /* backing calls refused on this thread */
    long errors;
    char msg[320];       /* the first error */
    char kbuf[OT_BATCH + 1][OT_KEYMAX];
} ot_thr;

static void ot_err(ot_thr *t, int line, const char *fmt, ...) TH_PRINTF(3, 4);
static void ot_err(ot_thr *t, int line, const char *fmt, ...) {
    if (t->errors++ == 0) {
        int n = snprintf(t->msg, sizeof t->msg, "line %d, %s: ", line, ot_phase[t->phase]);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->msg + n, sizeof t->msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
}
#define OT_CHECK(t, cond, ...)                                              \
    do {                                                                    \
        if (!(cond))                                                        \
            ot_err((t), __LINE__, __VA_ARGS__);                             \
    } while (0)

/* Byte key i: "k<i>-" and filler; every 11th is over 1 KiB (a large
 * block). */
static size_t ot_key(char *buf, uint64_t i) {
    size_t len = (size_t)snprintf(buf, 24, "k%llu-", (unsigned long long)i);
    size_t extra = i % 11 == 0 ? 1100 + (size_t)(i % 5) * 16 : (size_t)(i % 20);
    memset(buf + len, 'a' + (int)(i % 26), extra);
    return len + extra;
}

/* The index of byte key k, checking every byte of it. */
static bool ot_key_index(const champ_key *k, uint64_t *out) {
    const char *s = k->ptr;
    if (!s || k->len < 3 || s[0] != 'k')
        return false;
    uint64_t v = 0;
    size_t j = 1;
    while (j < k->len && j < 8 && s[j] >= '0' && s[j] <= '9')
        v = v * 10 + (uint64_t)(s[j++] - '0');
    if (j == 1 || j >= k->len || s[j] != '-' || v >= OT_KEYS)
        return false;
    char buf[OT_KEYMAX];
    size_t len = ot_key(buf, v);
    if (len != k->len || memcmp(buf, s, len) != 0)
        return false;
    *out = v;
    return true;
}

/* An entry's share of a map's checksum. */
static uint64_t ot_h(bool bytes, uint64_t k, uintptr_t v) {
    return th_mix64(th_mix64(k ^ (bytes ? 0x5bd1e995ULL << 32 : 0)) + (uint64_t)v);
}

typedef struct ot_dig {
    size_t n;
    uint64_t sum;
    bool bad; /* a key not of ours, or the iteration stopped */
} ot_dig;

static ot_dig ot_digest(const champ_map *m) {
    ot_dig d = {0, 0, false};
    champ_iter it;
    champ_key ks[64];
    void *vs[64];
    if (!m || champ_iter_init(&it, m) != CHAMP_OK) {
        d.bad = true;
        return d;
    }
    bool bytes = champ_kind(m) == CHAMP_KEY_BYTES;
    size_t got;
    while ((got = champ_iter_next_n(&it, ks, vs, 64)) > 0)
        for (size_t i = 0; i < got; i++) {
            uint64_t k = ks[i].u64;
            if (bytes && !ot_key_index(&ks[i], &k))
                d.bad = true;
            d.sum += ot_h(bytes, k, (uintptr_t)vs[i]);
            d.n++;
        }
    if (champ_iter_status(&it) != CHAMP_OK)
        d.bad = true;
    return d;
}

static void ot_ver_check(ot_thr *t, const ot_ver *e, const char *what) {
    ot_dig d = ot_digest(e->m);
    OT_CHECK(t, !d.bad && d.n == e->n && d.sum == e->sum && champ_size(e->m) == e->n,
             "%s: %zu entries (size %zu), want %zu; checksum %s%s", what, d.n,
             champ_size(e->m), e->n, d.sum == e->sum ? "right" : "wrong",
             d.bad ? "; a key not of the model" : "");
}

static void ot_own_check(ot_thr *t, int b, const char *what) {
    ot_ver e = {t->own[b], b != 0, t->n[b], t->sum[b]};
    ot_ver_check(t, &e, what);
}

/* Counts a call's status; true for CHAMP_OK.  needs_block: a call that
 * cannot succeed while the pool's hook refuses every block (P3). */
static bool ot_status(ot_thr *t, champ_status s, bool needs_block, const char *what) {
    t->calls[t->phase]++;
    if (s == CHAMP_ENOMEM) {
        t->enomem[t->phase]++;
        return false;
    }
    if (s != CHAMP_OK) {
        ot_err(t, __LINE__, "%s returned %s", what, th_status_name(s));
        return false;
    }
    if (needs_block && t->phase == OT_P3)
        t->hook_ok++;
    return true;
}

static void *ot_val(ot_thr *t) {
    return th_tok(((uint64_t)(t->id + 1) << 40) + ++t->ctr);
}

static void ot_ref_set(ot_thr *t, int b, uint64_t k, uintptr_t v) {
    uintptr_t old = t->ref[b][k];
    if (old)
        t->sum[b] -= ot_h(b, k, old);
    else
        t->n[b]++;
    if (v) {
        t->sum[b] += ot_h(b, k, v);
    } else {
        t->n[b]--;
    }
    t->ref[b][k] = v;
}

/* set or remove a key of an own map */
static void ot_update(ot_thr *t, int b, bool rm) {
    uint64_t k = th_below(&t->r, OT_KEYS);
    void *v = rm ? NULL : ot_val(t);
    size_t len = b ? ot_key(t->kbuf[0], k) : 0;
    champ_prior pr = th_prior_junk();
    champ_status s;
    if (b)
        s = rm ? champ_remove_bytes(t->own[1], t->kbuf[0], len, &pr)
               : champ_set_bytes(t->own[1], t->kbuf[0], len, v, &pr);
    else
        s = rm ? champ_remove_u64(t->own[0], k, &pr) : champ_set_u64(t->own[0], k, v, &pr);
    const char *what = rm ? "remove" : "set";
    if (ot_status(t, s, false, what)) {
        uintptr_t old = t->ref[b][k];
        OT_CHECK(t, pr.found == (old != 0) && pr.val == (void *)old && pr.key == NULL,
                 "%s of key %llu: prior found %d, want %d", what, (unsigned long long)k,
                 pr.found, old != 0);
        ot_ref_set(t, b, k, (uintptr_t)v);
        void *got = NULL;
        bool f = b ? champ_get_bytes(t->own[1], t->kbuf[0], len, &got)
                   : champ_get_u64(t->own[0], k, &got);
        OT_CHECK(t, f == !rm && got == v && champ_size(t->own[b]) == t->n[b],
                 "after a %s of key %llu: found %d, size %zu, want %zu", what,
                 (unsigned long long)k, f, champ_size(t->own[b]), t->n[b]);
    } else if (s == CHAMP_ENOMEM) {
        OT_CHECK(t, th_prior_untouched(&pr), "a refused %s wrote *prior", what);
        ot_own_check(t, b, rm ? "after a refused remove" : "after a refused set");
    }
}

static void ot_consume(ot_thr *t, ot_ver *x);

/* A checked version: freed now, or passed to another thread through a
 * slot (whatever the slot held is taken in exchange). */
static void ot_pass(ot_thr *t, const ot_ver *e) {
    ot_ver *x = th_chance(&t->r, 40) ? NULL : malloc(sizeof *x);
    if (!x) {
        champ_free(e->m);
        return;
    }
    *x = *e;
    t->passed++;
    ot_ver *old = atomic_exchange(&t->sh->slot[th_below(&t->r, OT_SLOTS)], x);
    if (old)
        ot_consume(t, old);
}

/* A version another thread made: checked, maybe updated (a refused update
 * changes nothing), freed. */
static void ot_consume(ot_thr *t, ot_ver *x) {
    t->taken++;
    ot_ver_check(t, x, "a passed version");
    if (th_chance(&t->r, 50)) {
        uint64_t k = th_below(&t->r, OT_KEYS);
        bool rm = th_chance(&t->r, 30);
        size_t len = x->bytes ? ot_key(t->kbuf[0], k) : 0;
        void *old = NULL, *v = rm ? NULL : ot_val(t);
        bool had = x->bytes ? champ_get_bytes(x->m, t->kbuf[0], len, &old)
                            : champ_get_u64(x->m, k, &old);
        champ_status s;
        if (x->bytes)
            s = rm ? champ_remove_bytes(x->m, t->kbuf[0], len, NULL)
                   : champ_set_bytes(x->m, t->kbuf[0], len, v, NULL);
        else
            s = rm ? champ_remove_u64(x->m, k, NULL) : champ_set_u64(x->m, k, v, NULL);
        if (ot_status(t, s, false, "an update of a passed version")) {
            if (had) {
                x->sum -= ot_h(x->bytes, k, (uintptr_t)old);
                x->n--;
            }
            if (!rm) {
                x->sum += ot_h(x->bytes, k, (uintptr_t)v);
                x->n++;
            }
        }
        ot_ver_check(t, x, s == CHAMP_OK ? "a passed version, updated"
                                         : "a passed version, its update refused");
    }
    champ_free(x->m);
    free(x);
}

static void ot_take(ot_thr *t) {
    ot_ver *x = atomic_exchange(&t->sh->slot[th_below(&t->r, OT_SLOTS)], NULL);
    if (x)
        ot_consume(t, x);
}

/* A p-form of a base map (pset or premove of a key in it or not). */
static void ot_pform(ot_thr *t, int b) {
    ot_shared *sh = t->sh;
    uint64_t k = th_below(&t->r, OT_BASE + OT_BASE / 2);
    bool rm = th_chance(&t->r, 35);
    void *v = ot_val(t);
    size_t len = b ? ot_key(t->kbuf[0], k) : 0;
    champ_map *out = th_tok(7);
    champ_status s;
    if (b)
        s = rm ? champ_premove_bytes(sh->base[1], t->kbuf[0], len, &out)
               : champ_pset_bytes(sh->base[1], t->kbuf[0], len, v, &out);
    else
        s = rm ? champ_premove_u64(sh->base[0], k, &out)
               : champ_pset_u64(sh->base[0], k, v, &out);
    if (!ot_status(t, s, true, "a p-form of a base map")) {
        OT_CHECK(t, out == NULL, "a refused p-form left *out %p", (void *)out);
        return;
    }
    ot_ver e = {out, b != 0, OT_BASE, sh->base_sum[b]};
    if (k < OT_BASE) {
        e.sum -= ot_h(b, k, (uintptr_t)th_tok(k));
        e.n--;
    }
    if (!rm) {
        e.sum += ot_h(b, k, (uintptr_t)v);
        e.n++;
    }
    ot_ver_check(t, &e, "a p-form of a base map");
    ot_pass(t, &e);
}

/* A copy (or an empty map of the type) of an own map, passed on. */
static void ot_copy(ot_thr *t, int b) {
    champ_map *out = th_tok(8);
    bool like = th_chance(&t->r, 10);
    champ_status s = like ? champ_new_like(t->own[b], &out) : champ_copy(t->own[b], &out);
    if (!ot_status(t, s, true, like ? "new_like" : "copy")) {
        OT_CHECK(t, out == NULL, "a refused copy left *out %p", (void *)out);
        ot_own_check(t, b, "after a refused copy");
        return;
    }
    ot_ver e = {out, b != 0, like ? 0 : t->n[b], like ? 0 : t->sum[b]};
    ot_ver_check(t, &e, "a copy");
    ot_pass(t, &e);
}

static uint64_t ot_ck(int id) {
    return ((uint64_t)1 << 40) + (uint64_t)id;
}

/* The shared cell: key ot_ck(id) counts this thread's publications.  Each
 * snapshot shows exactly this thread's count (no other thread writes the
 * key; a cas on a stale snapshot fails); a publication is a p-form of the
 * snapshot and a cas.  P3: a store and a cas must be refused. */
static void ot_cell(ot_thr *t) {
    ot_shared *sh = t->sh;
    champ_status s;
    if (t->phase == OT_P3 && th_chance(&t->r, 50)) {
        bool sw = false;
        if (th_chance(&t->r, 50)) /* the cell would lose every count */
            s = champ_cell_store(sh->cell, t->own[0]);
        else
            s = champ_cell_cas(sh->cell, t->own[0], t->own[0], &sw);
        ot_status(t, s, true, "a cell store or cas");
        return;
    }
    champ_map *snap = th_tok(9);
    s = champ_cell_load(sh->cell, &snap);
    if (!ot_status(t, s, true, "cell load")) {
        OT_CHECK(t, snap == NULL, "a refused load left *out %p", (void *)snap);
        return;
    }
    void *mine = NULL;
    bool have = champ_get_u64(snap, ot_ck(t->id), &mine);
    OT_CHECK(t, t->cas_ok ? have && mine == th_tok((uint64_t)t->cas_ok) : !have,
             "a snapshot lost a publication (%ld made)", t->cas_ok);
    void *next_val = th_tok((uint64_t)t->cas_ok + 1);
    champ_map *d = th_tok(10);
    s = champ_pset_u64(snap, ot_ck(t->id), next_val, &d);
    if (ot_status(t, s, true, "a p-form of a snapshot")) {
        bool sw = false;
        s = champ_cell_cas(sh->cell, snap, d, &sw);
        if (ot_status(t, s, true, "cas")) {
            if (sw)
                t->cas_ok++;
            else
                t->cas_lost++;
        }
        void *got = NULL;
        OT_CHECK(t, champ_get_u64(d, ot_ck(t->id), &got) && got == next_val &&
                        champ_size(d) == champ_size(snap) + !have,
                 "the version offered to the cell (cas %s)", th_status_name(s));
        champ_free(d);
    } else if (s == CHAMP_ENOMEM) {
        OT_CHECK(t, d == NULL, "a refused p-form of a snapshot left *out %p", (void *)d);
    }
    void *again = NULL;
    OT_CHECK(t, champ_get_u64(snap, ot_ck(t->id), &again) == have && again == mine,
             "the snapshot changed");
    champ_free(snap);
}

/* A batch of sets and removes on an own map. */
static void ot_apply(ot_thr *t, int b) {
    champ_op ops[OT_BATCH];
    uint64_t ks[OT_BATCH];
    size_t n = 1 + th_below(&t->r, OT_BATCH);
    for (size_t i = 0; i < n; i++) {
        ks[i] = th_below(&t->r, OT_KEYS);
        ops[i].remove = th_chance(&t->r, 30);
        ops[i].val = ops[i].remove ? NULL : ot_val(t);
        ops[i].key.u64 = b ? 0 : ks[i];
        ops[i].key.ptr = b ? t->kbuf[i + 1] : NULL;
        ops[i].key.len = b ? ot_key(t->kbuf[i + 1], ks[i]) : 0;
    }
    champ_status s = champ_apply(t->own[b], ops, n);
    bool refused_all = t->phase == OT_P2 && !t->clean;
    t->apply_all += refused_all;
    if (ot_status(t, s, false, "apply")) {
        t->apply_all_ok += refused_all; /* its scratch is the backing allocator's */
        for (size_t i = 0; i < n; i++)
            ot_ref_set(t, b, ks[i], (uintptr_t)ops[i].val);
        ot_own_check(t, b, "after apply");
    } else if (s == CHAMP_ENOMEM) {
        ot_own_check(t, b, "after a refused apply");
    }
}

static bool ot_keep_even(const champ_key *key, void *val, void *ctx) {
    (void)val;
    (void)ctx;
    uint64_t k = key->u64;
    if (key->ptr && !ot_key_index(key, &k))
        return true; /* not ours: kept, and the check finds it */
    return k % 2 == 0;
}

/* union / difference with the base map, or a filter, of an own map. */
static void ot_algebra(ot_thr *t, int b) {
    ot_shared *sh = t->sh;
    int which = (int)th_below(&t->r, 3);
    champ_map *out = th_tok(11);
    champ_status s = which == 0   ? champ_union(t->own[b], sh->base[b], NULL, NULL, &out)
                     : which == 1 ? champ_difference(t->own[b], sh->base[b], &out)
                                  : champ_filter(t->own[b], ot_keep_even, NULL, &out);
    if (!ot_status(t, s, true, "set algebra")) {
        OT_CHECK(t, out == NULL, "a refused union/difference/filter left *out %p", (void *)out);
        ot_own_check(t, b, "after refused set algebra");
        return;
    }
    ot_ver e = {out, b != 0, 0, 0};
    for (uint64_t k = 0; k < OT_KEYS; k++) {
        uintptr_t v = t->ref[b][k];
        if (which == 0 && k < OT_BASE)
            v = (uintptr_t)th_tok(k); /* NULL resolve keeps b's value */
        else if ((which == 1 && k < OT_BASE) || (which == 2 && k % 2))
            v = 0;
        if (v) {
            e.n++;
            e.sum += ot_h(b, k, v);
        }
    }
    ot_ver_check(t, &e, which == 0 ? "a union" : which == 1 ? "a difference" : "a filter");
    ot_own_check(t, b, "after set algebra");
    ot_pass(t, &e);
}

static void ot_step(ot_thr *t) {
    unsigned w = (unsigned)th_below(&t->r, 100);
    int b = (int)th_below(&t->r, 2);
    if (w < 44)
        ot_update(t, b, w >= 30);
    else if (w < 58)
        ot_update(t, 1, w >= 52);
    else if (w < 68)
        ot_pform(t, b);
    else if (w < 73)
        ot_copy(t, b);
    else if (w < 78)
        ot_take(t);
    else if (w < 86)
        ot_cell(t);
    else if (w < 91)
        ot_apply(t, b);
    else if (w < 96)
        ot_algebra(t, b);
    else
        ot_own_check(t, b, "a check of an own map");
}

/* P4: this thread alone; fail_after(k) for k = 0, 1, ... over one round
 * of calls, until a round has no refusal. */
static void ot_sweep(ot_thr *t) {
    champ_pool *p = t->sh->p;
    for (long k = 0; k < 4000 && !t->sweep_done; k++) {
        long e0 = t->enomem[OT_P4];
        champ_pool_fail_after(p, k);
        ot_update(t, 0, false);
        ot_update(t, 1, false);
        ot_update(t, (int)(k & 1), true);
        ot_pform(t, 0);
        ot_pform(t, 1);
        ot_copy(t, (int)(k & 1));
        ot_cell(t);
        ot_apply(t, 0);
        ot_apply(t, 1);
        ot_algebra(t, (int)(k & 1));
        ot_take(t);
        champ_pool_fail_after(p, -1);
        if (t->enomem[OT_P4] == e0) {
            t->sweep_done = 1;
            t->sweep_k = k;
        }
    }
}

static void *ot_worker(void *v) {
    ot_thr *t = v;
    ot_shared *sh = t->sh;
    while (!atomic_load(&sh->go))
        sched_yield();
    pthread_barrier_wait(&sh->bar); /* all start together */
    t->phase = OT_P1;
    ot_mode = t->clean ? OT_OFF : OT_RANDOM;
    ot_rate = t->rate;
    for (long i = 0; i < sh->steps[OT_P1]; i++)
        ot_step(t);
    t->phase = OT_P2;
    ot_mode = t->clean ? OT_OFF : OT_ALL;
    ot_apply(t, 0); /* refused whole on a refused thread */
    for (long i = 0; i < sh->steps[OT_P2]; i++)
        ot_step(t);
    ot_mode = OT_OFF;
    ot_own_check(t, 0, "at the end of P2");
    ot_own_check(t, 1, "at the end of P2");
    pthread_barrier_wait(&sh->bar); /* main sets fail_after(p, 0) */
    pthread_barrier_wait(&sh->bar);
    if (sh->faults) {
        t->phase = OT_P3;
        ot_copy(t, 0); /* refused */
        for (long i = 0; i < sh->steps[OT_P3]; i++)
            ot_step(t);
    }
    pthread_barrier_wait(&sh->bar); /* main resets the hook */
    pthread_barrier_wait(&sh->bar);
    t->phase = OT_P4;
    for (int turn = 0; turn < sh->nthreads; turn++) {
        if (turn == t->id && sh->faults)
            ot_sweep(t);
        pthread_barrier_wait(&sh->bar);
    }
    t->phase = OT_P5;
    for (long i = 0; i < sh->steps[OT_P5]; i++)
        ot_step(t);
    ot_own_check(t, 0, "at the end");
    ot_own_check(t, 1, "at the end");
    t->refusals = ot_my_refusals;
    return NULL;
}

static void test_oom_threads(void) {
    static ot_alloc al;
    memset(&al, 0, sizeof al);
    al.a = (champ_allocator){ot_malloc, ot_realloc, ot_free, &al};
    al.seed = 0x0badc0ffee;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.concurrent = true;
    pc.allocator = &al.a;
    pc.chunk_size = 1024; /* many chunks: many backing calls */
    static ot_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.faults = TH_NEED_FAULTS("oom_threads: phases with champ_pool_fail_after");
    sh.steps[OT_P1] = th_iters(5000, 300);
    sh.steps[OT_P2] = th_iters(1500, 100);
    sh.steps[OT_P3] = th_iters(600, 60);
    sh.steps[OT_P5] = th_iters(1500, 100);
    CHECK_ST(champ_pool_new(&pc, &sh.p), CHAMP_OK);
    if (!sh.p)
        return;
    champ_config c[2] = {th_kind_config(CHAMP_KEY_U64, 21, sh.p),
                         th_kind_config(CHAMP_KEY_BYTES, 22, sh.p)};
    ot_thr *th = calloc(OT_THREADS + 1, sizeof *th); /* [OT_THREADS]: main's */
    bool ok = th != NULL;
    char kb[OT_KEYMAX];
    for (int b = 0; b < 2 && ok; b++) {
        CHECK_ST(champ_new(&c[b], &sh.base[b]), CHAMP_OK);
        ok = sh.base[b] != NULL;
        for (uint64_t k = 0; k < OT_BASE && ok; k++) {
            champ_status s = b ? champ_set_bytes(sh.base[1], kb, ot_key(kb, k), th_tok(k), NULL)
                               : champ_set_u64(sh.base[0], k, th_tok(k), NULL);
            ok = s == CHAMP_OK;
            sh.base_sum[b] += ot_h(b, k, (uintptr_t)th_tok(k));
        }
    }
    if (ok) {
        CHECK_ST(champ_cell_new(sh.base[0], &sh.cell), CHAMP_OK);
        ok = sh.cell != NULL;
    }
    for (int i = 0; i <= OT_THREADS && ok; i++) {
        ot_thr *t = &th[i];
        t->sh = &sh;
        t->id = i;
        t->clean = i >= OT_THREADS - 1;
        t->rate = 40u << i; /* 40, 80, 160 of 1024 */
        t->r.s = 0x5eed0000u + (uint64_t)i * 7919;
        t->phase = OT_P5;
        for (int b = 0; b < 2 && ok; b++) {
            CHECK_ST(champ_new_like(sh.base[b], &t->own[b]), CHAMP_OK);
            ok = t->own[b] != NULL;
        }
    }
    CHECK(ok, "set-up of the pool, base maps, cell and own maps");
    pthread_t id[OT_THREADS];
    int made = 0;
    if (ok) {
        for (int i = 0; i < OT_THREADS; i++) {
            if (pthread_create(&id[i], NULL, ot_worker, &th[i]) != 0)
                break;
            made++;
        }
        CHECK_EQ(made, OT_THREADS, "threads started");
    }
    if (made > 0) {
        sh.nthreads = made;
        pthread_barrier_init(&sh.bar, NULL, (unsigned)made + 1);
        atomic_store(&sh.go, 1);
        pthread_barrier_wait(&sh.bar); /* start */
        pthread_barrier_wait(&sh.bar); /* P1, P2 done */
        if (sh.faults)
            champ_pool_fail_after(sh.p, 0);
        pthread_barrier_wait(&sh.bar); /* P3 */
        pthread_barrier_wait(&sh.bar);
        if (sh.faults)
            champ_pool_fail_after(sh.p, -1);
        pthread_barrier_wait(&sh.bar); /* P4: one thread at a time */
        for (int turn = 0; turn < made; turn++)
            pthread_barrier_wait(&sh.bar);
        for (int i = 0; i < made; i++) /* P5 */
            pthread_join(id[i], NULL);
        pthread_barrier_destroy(&sh.bar);
    }
    long published = 0, p2_refused = 0;
    for (int i = 0; i < made; i++) {
        ot_thr *t = &th[i];
        CHECK(t->errors == 0, "thread %d (%s): %ld errors, the first at %s", i,
              t->clean ? "never refused" : "refused", t->errors, t->msg);
        CHECK_EQ(t->enomem[OT_P5], 0, "nothing fails once nothing is refused");
        CHECK(t->calls[OT_P1] > 0 && t->calls[OT_P2] > 0 && t->calls[OT_P5] > 0,
              "thread %d made calls in every phase", i);
        if (t->clean) {
            CHECK_EQ(t->refusals, 0, "the thread never refused");
            CHECK(t->enomem[OT_P1] + t->enomem[OT_P2] == 0,
                  "thread %d, never refused, saw %ld + %ld CHAMP_ENOMEM while other threads "
                  "were refused", i, t->enomem[OT_P1], t->enomem[OT_P2]);
        } else {
            CHECK(t->refusals > 0, "thread %d was refused", i);
            CHECK(t->apply_all > 0 && t->apply_all_ok == 0,
                  "thread %d, every backing call refused: %ld of %ld applies done (their "
                  "scratch is the backing allocator's)", i, t->apply_all_ok, t->apply_all);
            p2_refused += t->enomem[OT_P2];
        }
        if (sh.faults) {
            CHECK(t->enomem[OT_P3] > 0 && t->hook_ok == 0,
                  "thread %d under fail_after(0): %ld refused, %ld calls needing a block done",
                  i, t->enomem[OT_P3], t->hook_ok);
            CHECK(t->sweep_done && t->enomem[OT_P4] > 0,
                  "thread %d's fail_after sweep: done %ld at k = %ld, %ld refused", i,
                  t->sweep_done, t->sweep_k, t->enomem[OT_P4]);
        }
        published += t->cas_ok;
        for (int b = 0; b < 2; b++) {
            CHECK_VALID(t->own[b], "a thread's map after the threads");
            size_t wrong = 0;
            for (uint64_t k = 0; k < OT_KEYS; k++) {
                void *got = NULL;
                size_t len = b ? ot_key(kb, k) : 0;
                bool f = b ? champ_get_bytes(t->own[1], kb, len, &got)
                           : champ_get_u64(t->own[0], k, &got);
                wrong += f != (t->ref[b][k] != 0) || (uintptr_t)got != t->ref[b][k];
            }
            CHECK_EQ(wrong, 0, "keys of a thread's map against its model");
            CHECK_EQ(champ_size(t->own[b]), t->n[b], "size of a thread's map");
        }
    }
    if (made == OT_THREADS) {
        CHECK(p2_refused > 0, "refused threads saw CHAMP_ENOMEM: %ld", p2_refused);
        CHECK(published > 0, "publications into the cell: %ld", published);
        CHECK(atomic_load(&al.refused) > 0, "backing calls refused: %lu",
              atomic_load(&al.refused));
        champ_pool_stats ps;
        CHECK_ST(champ_pool_stats_get(sh.p, &ps, sizeof ps), CHAMP_OK);
        CHECK(ps.alloc_failures > 0, "the pool counted refusals");
    }
    /* the cell: the base and every thread's count */
    if (sh.cell) {
        champ_map *snap = NULL;
        CHECK_ST(champ_cell_load(sh.cell, &snap), CHAMP_OK);
        CHECK_VALID(snap, "the cell's version");
        ot_ver e = {snap, false, OT_BASE, sh.base_sum[0]};
        for (int i = 0; i < made; i++) {
            void *got = NULL;
            bool f = champ_get_u64(snap, ot_ck(i), &got);
            CHECK(th[i].cas_ok ? f && got == th_tok((uint64_t)th[i].cas_ok) : !f,
                  "thread %d's %ld publications in the cell", i, th[i].cas_ok);
            if (th[i].cas_ok) {
                e.n++;
                e.sum += ot_h(false, ot_ck(i), (uintptr_t)th_tok((uint64_t)th[i].cas_ok));
            }
        }
        if (th) {
            ot_thr *m = &th[OT_THREADS];
            ot_ver_check(m, &e, "the cell's version");
            CHECK(m->errors == 0, "the cell holds the base and the counts: %s", m->msg);
        }
        champ_free(snap);
    }
    /* versions still in passage: checked and freed on main */
    if (th) {
        ot_thr *m = &th[OT_THREADS];
        size_t invalid = 0;
        for (int i = 0; i < OT_SLOTS; i++) {
            ot_ver *x = atomic_exchange(&sh.slot[i], NULL);
            if (x) {
                invalid += champ_validate(x->m) != CHAMP_OK;
                ot_consume(m, x);
            }
        }
        CHECK_EQ(invalid, 0, "versions in passage that fail champ_validate");
        CHECK(m->errors == 0, "versions in passage: %s", m->msg);
        long passed = 0, taken = m->taken;
        for (int i = 0; i < made; i++) {
            passed += th[i].passed;
            taken += th[i].taken;
        }
        CHECK_EQ(taken, passed, "every version passed was taken");
    }
    for (int b = 0; b < 2; b++)
        if (sh.base[b])
            CHECK_VALID(sh.base[b], "a base map");
    cc_check_books(sh.p, "after the threads");
    for (int i = 0; th && i <= OT_THREADS; i++)
        for (int b = 0; b < 2; b++)
            champ_free(th[i].own[b]);
    champ_cell_free(sh.cell);
    champ_free(sh.base[0]);
    champ_free(sh.base[1]);
    CHECK_EQ(th_pool_live(sh.p), 0, "the pool is empty at the end");
    cc_check_books(sh.p, "emptied");
    champ_pool_free(sh.p);
    free(th);
    CHECK_EQ(atomic_load(&al.blocks), 0, "backing blocks not given back");
    CHECK_EQ(atomic_load(&al.got), atomic_load(&al.given), "backing bytes given back");
    CHECK_EQ(atomic_load(&al.bad_size), 0, "backing frees with the size allocated");
    CHECK_EQ(atomic_load(&al.reallocs), 0, "realloc is never called");
}

const th_test th_tests_concurrent[] = {
    {"concurrent.differential", test_differential},
    {"concurrent.cell_threads", test_cell_threads},
    {"concurrent.producer_consumer", test_producer_consumer},
    {"concurrent.heap_adoption", test_heap_adoption},
    {"concurrent.heap_routes", test_heap_routes},
    {"concurrent.default_threads", test_default_threads},
    {"concurrent.cell_noncopyable", test_cell_noncopyable},
    {"concurrent.cell_from_callback", test_cell_from_callback},
    {"concurrent.cell_free_from_callback", test_cell_free_from_callback},
    {"concurrent.free_snapshot_callbacks", test_free_snapshot_callbacks},
    {"concurrent.cell_load_watermark_frees", test_cell_load_watermark_frees},
    {"concurrent.cell_pins", test_cell_pins},
    {"concurrent.cell_pins_threads", test_cell_pins_threads},
    {"concurrent.light_versions", test_light_versions},
    {"concurrent.light_copy_race", test_light_copy_race},
    {"concurrent.lost_cas_copy_race", test_lost_cas_copy_race},
    {"concurrent.light_counted", test_light_counted},
    {"concurrent.light_in_place", test_light_in_place},
    {"concurrent.light_emptied", test_light_emptied},
    {"concurrent.depot_large", test_depot_large},
    {"concurrent.publish_transfer", test_publish_transfer},
    {"concurrent.cell_edges", test_cell_edges},
    {"concurrent.many_pools_one_thread", test_many_pools_one_thread},
    {"concurrent.oom_threads", test_oom_threads},
};
const size_t th_tests_concurrent_count =
    sizeof th_tests_concurrent / sizeof th_tests_concurrent[0];

/*
 * tsan_concurrent.c - the ThreadSanitizer stress test of concurrent pools
 * (`make tsan-concurrent`, built with -fsanitize=thread and run with
 * TSAN_OPTIONS=halt_on_error=1: a data race stops it with a report).
 *
 * Threads share versions of maps through cells, as a server would share
 * its configuration or index:
 *   - writers and readers of a u64 map and of a byte-key set, each round:
 *     take a snapshot from the cell (champ_cell_load), 16 lookups in it,
 *     derive a version with one update (champ_pset_* / champ_premove_*),
 *     publish every 64th with champ_cell_cas, drop both;
 *   - a thread that builds private maps in the pool and frees them, and
 *     copies of the published version that other threads free;
 *   - copies of a snapshot changed in place (light versions on a counted
 *     base), then freed by another thread, copied, or published;
 *   - a crowd of copies per thread (2,400 handles in all, past the 64 KiB
 *     of side blocks from which handle pages come from huge-page slabs),
 *     a tenth of it freed and made again every 64 rounds, some freed by
 *     another thread: slab blocks taken and given back by all threads;
 *   - a thread that reads the pool's stats all along.
 * The pool cuts its chunks from huge-page regions from 64 KiB on (the
 * threshold lowered from 1 MiB), so threads' heaps take region chunks
 * under the pool's lock while other threads read the stats.
 * At the end (the threads joined): no lost publication, champ_validate
 * clean, and after every map and cell is freed the pool's live bytes are
 * back to zero.  Prints one line; exit status 0 iff all held.
 *
 *   tsan_concurrent [ROUNDS]     rounds per thread (default 8000)
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "champ.h"

enum { WORKERS = 4, FILL = 2000, HANDOFF = 8, CROWD = 600 };

static champ_pool *pool;
static champ_cell *cell_u64, *cell_set;
static long rounds = 8000;
static int stop_stats;

/* Versions handed from one thread to another to free. */
static pthread_mutex_t hand_lock = PTHREAD_MUTEX_INITIALIZER;
static champ_map *handed[HANDOFF];

typedef struct worker {
    int id;
    long published;  /* cas that swapped (key id counts them)        */
    long errors;
} worker;

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void *tok(uint64_t x) {
    return (void *)(uintptr_t)(x * 16 + 16);
}

static void key_str(char *k, size_t n, uint64_t x) {
    snprintf(k, n, "key-%llu", (unsigned long long)x);
}

/* Drops a map, or passes it to another thread to drop. */
static void hand_off(champ_map *m, uint64_t r) {
    champ_map *old;
    pthread_mutex_lock(&hand_lock);
    old = handed[r % HANDOFF];
    handed[r % HANDOFF] = m;
    pthread_mutex_unlock(&hand_lock);
    champ_free(old);
}

static void u64_round(worker *w, uint64_t *r) {
    champ_map *snap = NULL, *next = NULL;
    if (champ_cell_load(cell_u64, &snap) != CHAMP_OK || !snap) {
        w->errors++;
        return;
    }
    for (int i = 0; i < 16; i++) {
        uint64_t k = 100 + (*r = mix(*r)) % FILL;
        void *v = NULL;
        if (!champ_get_u64(snap, k, &v) || v != tok(k))
            w->errors++;
    }
    void *mine = NULL;
    champ_get_u64(snap, (uint64_t)w->id, &mine);
    long count = mine ? (long)(((uintptr_t)mine - 16) / 16) : 0;
    if (count != w->published)
        w->errors++; /* our last publication is not in the cell */
    if (champ_pset_u64(snap, (uint64_t)w->id, tok((uint64_t)count + 1), &next) != CHAMP_OK) {
        w->errors++;
    } else if (*r % 64 == 0) {
        bool swapped = false;
        if (champ_cell_cas(cell_u64, snap, next, &swapped) != CHAMP_OK)
            w->errors++;
        w->published += swapped;
    }
    champ_free(next);
    if (*r % 16 == 1)
        hand_off(snap, *r >> 8); /* another thread frees it */
    else
        champ_free(snap);
}

static void set_round(worker *w, uint64_t *r) {
    champ_map *snap = NULL, *next = NULL;
    char k[32];
    if (champ_cell_load(cell_set, &snap) != CHAMP_OK || !snap) {
        w->errors++;
        return;
    }
    for (int i = 0; i < 16; i++) {
        key_str(k, sizeof k, (*r = mix(*r)) % (2 * FILL));
        (void)champ_contains_str(snap, k);
    }
    key_str(k, sizeof k, *r % (2 * FILL));
    champ_status st = *r & 1 ? champ_pset_str(snap, k, NULL, &next)
                             : champ_premove_str(snap, k, &next);
    if (st != CHAMP_OK)
        w->errors++;
    else if (*r % 64 < 2) {
        bool swapped;
        if (champ_cell_cas(cell_set, snap, next, &swapped) != CHAMP_OK)
            w->errors++;
    }
    champ_free(next);
    champ_free(snap);
}

/* A copy of a snapshot (a fresh copy, its handle in this thread's heap)
 * changed in place: a light version on a counted base (champ.c,
 * light_begin).  Then it is handed to another thread to free, copied
 * (which settles it), or published with cas (which settles it too; the
 * new value equals the old, so every worker's count stays right). */
static void copy_round(worker *w, uint64_t *r) {
    champ_map *snap = NULL, *c = NULL, *c2 = NULL;
    if (champ_cell_load(cell_u64, &snap) != CHAMP_OK || !snap) {
        w->errors++;
        return;
    }
    if (champ_copy(snap, &c) != CHAMP_OK) {
        w->errors++;
        champ_free(snap);
        return;
    }
    uint64_t k = 100 + (*r = mix(*r)) % FILL;
    void *v = NULL;
    if (champ_set_u64(c, k, tok(k), NULL) != CHAMP_OK || !champ_get_u64(c, k, &v) ||
        v != tok(k))
        w->errors++;
    bool swapped = false;
    switch (*r % 3) {
    case 0:
        hand_off(c, *r >> 8);
        c = NULL;
        break;
    case 1:
        if (champ_copy(c, &c2) != CHAMP_OK || !champ_get_u64(c2, k, &v) || v != tok(k))
            w->errors++;
        champ_free(c2);
        break;
    default:
        if (champ_cell_cas(cell_u64, snap, c, &swapped) != CHAMP_OK)
            w->errors++;
        break;
    }
    champ_free(c);
    champ_free(snap);
}

/* A private map of the pool, built and freed. */
static void private_round(worker *w, uint64_t *r, champ_map *like) {
    champ_map *m = NULL;
    if (champ_new_like(like, &m) != CHAMP_OK) {
        w->errors++;
        return;
    }
    for (uint64_t i = 0; i < 64; i++)
        if (champ_set_u64(m, (*r = mix(*r)) % 100000, NULL, NULL) != CHAMP_OK)
            w->errors++;
    champ_free(m);
}

/* A tenth of the crowd freed (some handed to another thread) and made
 * again as copies of `like`. */
static void crowd_round(worker *w, uint64_t *r, champ_map **crowd, champ_map *like) {
    for (int j = 0; j < CROWD / 10; j++) {
        size_t at = (size_t)((*r = mix(*r)) % CROWD);
        if (*r % 8 == 0)
            hand_off(crowd[at], *r >> 8);
        else
            champ_free(crowd[at]);
        crowd[at] = NULL;
        if (champ_copy(like, &crowd[at]) != CHAMP_OK)
            w->errors++;
    }
}

static void *work(void *v) {
    worker *w = v;
    uint64_t r = (uint64_t)w->id * 0x5851f42d4c957f2dull + 1;
    champ_map *like = NULL, *crowd[CROWD] = {NULL};
    if (champ_cell_load(cell_u64, &like) != CHAMP_OK || !like) {
        w->errors++;
        return NULL;
    }
    for (int j = 0; j < CROWD; j++)
        if (champ_copy(like, &crowd[j]) != CHAMP_OK)
            w->errors++;
    for (long i = 0; i < rounds; i++) {
        u64_round(w, &r);
        if (i % 4 == 0)
            set_round(w, &r);
        if (i % 4 == 2)
            copy_round(w, &r);
        if (i % 64 == w->id)
            private_round(w, &r, like);
        if (i % 64 == 32 + w->id)
            crowd_round(w, &r, crowd, like);
    }
    for (int j = 0; j < CROWD; j++)
        champ_free(crowd[j]);
    champ_free(like);
    return NULL;
}

static void *stats(void *v) {
    long *odd = v;
    while (!__atomic_load_n(&stop_stats, __ATOMIC_ACQUIRE)) {
        champ_pool_stats ps;
        if (champ_pool_stats_get(pool, &ps, sizeof ps) != CHAMP_OK ||
            ps.bytes_peak < ps.bytes_live)
            (*odd)++;
    }
    return NULL;
}

/* pool.c: the reserved bytes from which a libc pool's chunks come from
 * huge-page regions */
extern size_t champ__region_from;

int main(int argc, char **argv) {
    if (argc > 1)
        rounds = strtol(argv[1], NULL, 0);
    champ__region_from = (size_t)64 << 10;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.concurrent = true;
    champ_map *m = NULL, *s = NULL;
    if (champ_pool_new(&pc, &pool) != CHAMP_OK)
        return 2;
    champ_config cu = CHAMP_CONFIG_INIT(CHAMP_KEY_U64), cs = CHAMP_CONFIG_INIT(CHAMP_KEY_BYTES);
    cu.pool = cs.pool = pool;
    cs.set = true;
    if (champ_new(&cu, &m) != CHAMP_OK || champ_new(&cs, &s) != CHAMP_OK)
        return 2;
    char k[32];
    for (uint64_t i = 0; i < FILL; i++) {
        key_str(k, sizeof k, i * 2);
        if (champ_set_u64(m, 100 + i, tok(100 + i), NULL) != CHAMP_OK ||
            champ_add_str(s, k, NULL) != CHAMP_OK)
            return 2;
    }
    if (champ_cell_new(m, &cell_u64) != CHAMP_OK || champ_cell_new(s, &cell_set) != CHAMP_OK)
        return 2;

    worker w[WORKERS];
    pthread_t id[WORKERS], st;
    long odd = 0;
    bool stats_on = pthread_create(&st, NULL, stats, &odd) == 0;
    int made = 0;
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (worker){i, 0, 0};
        if (pthread_create(&id[i], NULL, work, &w[i]) == 0)
            made++;
    }
    for (int i = 0; i < made; i++)
        pthread_join(id[i], NULL);
    __atomic_store_n(&stop_stats, 1, __ATOMIC_RELEASE);
    if (stats_on)
        pthread_join(st, NULL);

    int bad = made != WORKERS || !stats_on || odd != 0;
    long published = 0;
    champ_map *last = NULL;
    if (champ_cell_load(cell_u64, &last) != CHAMP_OK || !last)
        bad = 1;
    for (int i = 0; i < made; i++) {
        void *v = NULL;
        long count = last && champ_get_u64(last, (uint64_t)i, &v) ? (long)(((uintptr_t)v - 16) / 16) : 0;
        if (w[i].errors || count != w[i].published) {
            fprintf(stderr, "tsan_concurrent: thread %d: %ld errors, %ld published, %ld in the cell\n",
                    i, w[i].errors, w[i].published, count);
            bad = 1;
        }
        published += w[i].published;
    }
    champ_free(last);
    for (int i = 0; i < HANDOFF; i++)
        champ_free(handed[i]);
    if (champ_validate(m) != CHAMP_OK) /* the census counts the cells too */
        bad = 1;
    champ_cell_free(cell_u64);
    champ_cell_free(cell_set);
    if (champ_validate(m) != CHAMP_OK || champ_validate(s) != CHAMP_OK)
        bad = 1;
    champ_pool_stats ps;
    champ_pool_stats_get(pool, &ps, sizeof ps);
    champ_free(m);
    champ_free(s);
    champ_pool_stats end;
    champ_pool_stats_get(pool, &end, sizeof end);
    if (end.bytes_live != 0 || end.maps != 0 || ps.bytes_huge == 0)
        bad = 1;
    printf("tsan_concurrent: %d threads x %ld rounds, %ld versions published; peak live %zu, "
           "reserved %zu (%zu from huge-page regions); at the end %zu live bytes, %zu maps: "
           "%s\n",
           made, rounds, published, ps.bytes_peak, ps.bytes_reserved, ps.bytes_huge,
           end.bytes_live, end.maps, bad ? "FAILED" : "ok");
    champ_pool_free(pool);
    return bad;
}

/*
 * telemetry.c - champ's pool at every scale, from a build of the library
 * with -DCHAMP_STATS (the allocation-source counters are compiled in only
 * there; timings never use this build).
 *
 * For each N, in a fresh process: insert N random u64 keys into an empty
 * map, then churn (remove half of them, insert them again), then a
 * persistent chain (N psets, each version released).  Prints bytes per
 * entry live and reserved, utilization, the share of allocations served
 * from free lists, arena chunks and calls to the backing allocator, and says
 * whether any step from one N to the next looks like a cliff.
 *
 *   champ_telemetry [--n 1000,10000,...]
 */
#define _GNU_SOURCE
#include "keys.h"

#include <champ.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct row {
    int ok;
    size_t n;
    /* after inserting */
    double live, resv, util, peak, fl_share, depth_mean;
    unsigned depth_max;
    size_t chunks;
    unsigned long long backing, allocs;
    /* after churn */
    double c_live, c_resv, c_util, c_fl;
    /* persistent chain */
    double p_live, p_resv, p_util, p_fl;
    unsigned long long p_backing;
    int counters;
    char err[200];
} row;

static double share(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0;
}

static champ_map *new_map(void)
{
    champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    cfg.seed = 0x243f6a8885a308d3ull;
    cfg.fixed_seed = true;
    champ_map *m = NULL;
    return champ_new(&cfg, &m) == CHAMP_OK ? m : NULL;
}

static void measure(size_t n, row *r)
{
    r->n = n;
    champ_map *m = new_map();
    if (!m) {
        snprintf(r->err, sizeof r->err, "champ_new failed");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (champ_set_u64(m, key_of_index(i), (void *)(uintptr_t)(i + 1), NULL) != CHAMP_OK) {
            snprintf(r->err, sizeof r->err, "insert %zu failed", i);
            return;
        }
    champ_stats st;
    champ_pool_stats pst;
    if (champ_stats_get(m, &st, sizeof st) != CHAMP_OK ||
        champ_pool_stats_get(champ_pool_of(m), &pst, sizeof pst) != CHAMP_OK) {
        snprintf(r->err, sizeof r->err, "champ_stats_get failed");
        return;
    }
    const champ_pool_stats *p = &pst;
    r->counters = p->counters_enabled;
    r->live = (double)p->bytes_live / (double)n;
    r->resv = (double)p->bytes_reserved / (double)n;
    r->util = p->utilization;
    r->peak = (double)p->bytes_peak / (double)n;
    r->fl_share = share(p->allocs_free_list, p->allocs);
    r->allocs = (unsigned long long)p->allocs;
    r->chunks = p->chunks;
    r->backing = (unsigned long long)p->backing_calls;
    r->depth_mean = st.depth_mean;
    r->depth_max = st.depth_max;
    if (st.entries != n) {
        snprintf(r->err, sizeof r->err, "stats report %zu entries, expected %zu",
                 st.entries, n);
        return;
    }

    /* churn: remove the first half, insert it again */
    uint64_t a0 = p->allocs, f0 = p->allocs_free_list;
    for (size_t i = 0; i < n / 2; i++)
        if (champ_remove_u64(m, key_of_index(i), NULL) != CHAMP_OK) {
            snprintf(r->err, sizeof r->err, "churn: remove %zu failed", i);
            return;
        }
    for (size_t i = 0; i < n / 2; i++)
        if (champ_set_u64(m, key_of_index(i), (void *)(uintptr_t)(i + 1), NULL) != CHAMP_OK) {
            snprintf(r->err, sizeof r->err, "churn: insert %zu failed", i);
            return;
        }
    champ_pool_stats ps;
    champ_pool_stats_get(champ_pool_of(m), &ps, sizeof ps);
    r->c_live = (double)ps.bytes_live / (double)n;
    r->c_resv = (double)ps.bytes_reserved / (double)n;
    r->c_util = ps.utilization;
    r->c_fl = share(ps.allocs_free_list - f0, ps.allocs - a0);
    if (champ_validate(m) != CHAMP_OK) {
        snprintf(r->err, sizeof r->err, "champ_validate failed after churn");
        return;
    }
    champ_free(m);

    /* persistent chain in a pool of its own */
    m = new_map();
    for (size_t i = 0; i < n; i++) {
        champ_map *m2;
        if (champ_pset_u64(m, key_of_index(i), (void *)(uintptr_t)(i + 1), &m2) != CHAMP_OK) {
            snprintf(r->err, sizeof r->err, "pset %zu failed", i);
            return;
        }
        champ_free(m);
        m = m2;
    }
    champ_pool_stats_get(champ_pool_of(m), &ps, sizeof ps);
    r->p_live = (double)ps.bytes_live / (double)n;
    r->p_resv = (double)ps.bytes_reserved / (double)n;
    r->p_util = ps.utilization;
    r->p_fl = share(ps.allocs_free_list, ps.allocs);
    r->p_backing = (unsigned long long)ps.backing_calls;
    champ_free(m);
    r->ok = 1;
}

static void fmt_n(char *buf, size_t cap, size_t n)
{
    if (n >= 1000000 && n % 1000000 == 0)
        snprintf(buf, cap, "%zuM", n / 1000000);
    else if (n >= 1000 && n % 1000 == 0)
        snprintf(buf, cap, "%zuK", n / 1000);
    else
        snprintf(buf, cap, "%zu", n);
}

int main(int argc, char **argv)
{
    size_t ns[32];
    int nn = 0;
    const char *list = "1000,10000,50000,100000,1000000,10000000";
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--n"))
            list = argv[i + 1];
    for (const char *s = list; *s && nn < 32;) {
        char *e;
        ns[nn++] = strtoull(s, &e, 10);
        s = *e == ',' ? e + 1 : e;
        if (e == s && *e)
            break;
    }
    row *rows = mmap(NULL, sizeof(row) * (size_t)nn, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (rows == MAP_FAILED)
        return 2;
    memset(rows, 0, sizeof(row) * (size_t)nn);
    int bad = 0;
    for (int i = 0; i < nn; i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            measure(ns[i], &rows[i]);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            rows[i].ok = 0;
            rows[i].n = ns[i];
            snprintf(rows[i].err, sizeof rows[i].err, "crashed (status 0x%x)", st);
        }
        if (!rows[i].ok)
            bad = 1;
    }

    printf("\nchamp pool telemetry, u64 keys (library built with -DCHAMP_STATS; "
           "B/e = bytes per entry)\n");
    if (nn && rows[0].ok && !rows[0].counters)
        printf("  (allocation counters are off in this build: free-list shares read 0)\n");
    printf("after inserting N keys into an empty map:\n");
    printf("%8s %8s %8s %6s %8s %11s %10s %7s %8s %10s\n", "N", "live B/e", "resv B/e",
           "util", "peak B/e", "allocs", "free-list%", "chunks", "backing", "depth");
    for (int i = 0; i < nn; i++) {
        row *r = &rows[i];
        char b[32];
        fmt_n(b, sizeof b, r->n);
        if (!r->ok && !r->live) {
            printf("%8s  FAILED: %s\n", b, r->err);
            continue;
        }
        printf("%8s %8.2f %8.2f %5.1f%% %8.2f %11llu %9.1f%% %7zu %8llu %5.2f/%u\n", b,
               r->live, r->resv, 100 * r->util, r->peak, r->allocs, r->fl_share, r->chunks,
               r->backing, r->depth_mean, r->depth_max);
    }
    printf("after churn (remove the first N/2 keys, insert them again), and a persistent "
           "chain (N psets, each previous version released):\n");
    printf("%8s | %8s %8s %6s %11s | %8s %8s %6s %10s %8s\n", "N", "live B/e", "resv B/e",
           "util", "free-list%", "live B/e", "resv B/e", "util", "free-list%", "backing");
    for (int i = 0; i < nn; i++) {
        row *r = &rows[i];
        char b[32];
        fmt_n(b, sizeof b, r->n);
        if (!r->ok) {
            printf("%8s  FAILED: %s\n", b, r->err);
            continue;
        }
        printf("%8s | %8.2f %8.2f %5.1f%% %10.1f%% | %8.2f %8.2f %5.1f%% %9.1f%% %8llu\n", b,
               r->c_live, r->c_resv, 100 * r->c_util, r->c_fl, r->p_live, r->p_resv,
               100 * r->p_util, r->p_fl, r->p_backing);
    }
    /* cliff check: from one N to the next (N >= 10K, where the first
     * arena chunk no longer dominates), bytes per entry must not jump and
     * utilization must not fall off, in any of the three states */
    int cliffs = 0;
    static const char *const state[3] = {"after inserting", "after churn",
                                         "persistent chain"};
    for (int i = 1; i < nn; i++) {
        row *r = &rows[i], *p = &rows[i - 1];
        if (!r->ok || !p->ok || p->n < 10000)
            continue;
        const double live[3][2] = {{p->live, r->live}, {p->c_live, r->c_live},
                                   {p->p_live, r->p_live}};
        const double resv[3][2] = {{p->resv, r->resv}, {p->c_resv, r->c_resv},
                                   {p->p_resv, r->p_resv}};
        const double util[3][2] = {{p->util, r->util}, {p->c_util, r->c_util},
                                   {p->p_util, r->p_util}};
        char a[32], b[32];
        fmt_n(a, sizeof a, p->n);
        fmt_n(b, sizeof b, r->n);
        for (int k = 0; k < 3; k++) {
            if (live[k][1] > 1.25 * live[k][0] || resv[k][1] > 1.25 * resv[k][0] ||
                util[k][1] < util[k][0] - 0.15) {
                printf("cliff %s, N=%s -> %s: live B/e %.2f -> %.2f, reserved B/e %.2f -> "
                       "%.2f, utilization %.1f%% -> %.1f%%\n", state[k], a, b, live[k][0],
                       live[k][1], resv[k][0], resv[k][1], 100 * util[k][0], 100 * util[k][1]);
                cliffs++;
            }
        }
    }
    printf("cliff check (N >= 10K, each step to the next N: bytes/entry live or reserved "
           "up > 1.25x, or utilization down > 15 points): %s\n",
           cliffs ? "cliffs, see above" : "no cliff");
    int low = 0;
    for (int i = 0; i < nn; i++) {
        row *r = &rows[i];
        if (!r->ok || r->n < 10000)
            continue;
        const double u[3] = {r->util, r->c_util, r->p_util};
        for (int k = 0; k < 3; k++)
            if (u[k] < 1 / 1.2) {
                char b[32];
                fmt_n(b, sizeof b, r->n);
                printf("%s%s N=%s %.1f%%",
                       low ? ", " : "utilization below 83% (reserved above 1.2x live, the "
                                    "reserve target in bench/README.md): ",
                       state[k], b, 100 * u[k]);
                low++;
            }
    }
    if (low)
        printf("\n");
    return bad;
}

/*
 * measure.c - one job: one library, one key kind, one N, the selected ops,
 * in this (forked) process.
 *
 * A job repeats its ops `reps` times (enough to time at least min_ops
 * counted units at small N).  Each op is measured by measure_op: one timed
 * call of the adapter's function (bench_region), then the checks the op
 * table asks for.  The ops share maps where the table says they can (see
 * ops.c); an op that needs another starting state gets a new map, brought
 * to that state outside the timing.
 */
#include "bench.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

job_shared *g_shared;
double g_whole_ns = WHOLE_BUDGET_NS;
bool g_quick;

/* Every measured op loop runs inside this one function: the timer reads
 * around it, and `make bench-callgrind` switches collection on for it only
 * (--toggle-collect=bench_region). */
#if defined(__clang__)
#define BENCH_REGION_ATTR __attribute__((noinline))
#else
#define BENCH_REGION_ATTR __attribute__((noinline, noclone))
#endif
BENCH_REGION_ATTR uint64_t bench_region(bench_op_fn f, void *st, const void *keys, size_t n,
                                        void **scratch)
{
    uint64_t r = f(st, keys, n, scratch);
    __asm__ volatile("" ::: "memory");
    return r;
}

size_t op_loop_count(int op, size_t n)
{
    if (op_table[op].count == COUNT_CAPPED && n > COPIES_MAX)
        return COPIES_MAX;
    if (op_table[op].count == COUNT_FIXED)
        return g_quick && op_table[op].fixed_quick ? op_table[op].fixed_quick
                                                   : op_table[op].fixed;
    return n;
}

/* The ops a library can run for a key kind, of those asked for. */
opmask lib_ops(const bench_adapter *ad, int kind, opmask ops)
{
    int bk = bench_kind(kind);
    opmask m = 0;
    for (int o = 0; o < OP_COUNT; o++) {
        const op_info *d = &op_table[o];
        if (!(ops & OPBIT(o)) || !ad->op[bk][o])
            continue;
        if ((d->flags & OPF_SCRATCH) && !ad->drop_versions)
            continue;
        if (d->from >= 0 && !ad->op[bk][d->from])
            continue;
        m |= OPBIT(o);
    }
    return m;
}

static void mark(int op, int phase)
{
    if (g_shared) {
        g_shared->op = op;
        g_shared->phase = phase;
    }
}

typedef struct job {
    const bench_adapter *ad;
    int bk;
    size_t n;
    const void *keys[4]; /* by enum op_keys */
    void **scratch;      /* N version slots, when an op needs them */
    void **slots;        /* OPF_PER_CALL: a slot per map made (the call's n) */
    size_t nslots;
    job_result *res;
    double t[OP_COUNT];  /* summed time per op, ns */
    size_t cnt[OP_COUNT]; /* summed loop counts */
} job;

/* The map the ops work on and the state it is in. */
typedef struct live {
    void *st;
    int state;          /* ST_FRESH, an op id, or ST_USED */
    bool kept;          /* scratch holds versions to drop */
    size_t heap0;       /* heap bytes before it was created */
} live;

static void job_fail(job *j, int op, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_fail(job *j, int op, const char *fmt, ...)
{
    va_list ap;
    j->res->bad |= OPBIT(op);
    if (j->res->msg[0])
        return;
    va_start(ap, fmt);
    vsnprintf(j->res->msg, sizeof j->res->msg, fmt, ap);
    va_end(ap);
}

static void live_release(job *j, live *m)
{
    if (m->st) {
        if (m->kept)
            j->ad->drop_versions(m->st, j->scratch, j->n);
        j->ad->destroy(m->st);
    }
    m->st = NULL;
    m->kept = false;
    m->state = ST_USED;
}

/* A new map, brought (untimed) to the state op starts from. */
static bool live_prepare(job *j, live *m, int op)
{
    int from = op_table[op].from;
    live_release(j, m);
    mark(op, PHASE_SETUP);
    m->heap0 = heap_bytes();
    m->st = j->ad->create(j->bk);
    if (!m->st) {
        job_fail(j, op, "%s: create failed", op_table[op].name);
        return false;
    }
    m->state = ST_FRESH;
    if (from == ST_FRESH)
        return true;
    const op_info *s = &op_table[from];
    size_t count = op_loop_count(from, j->n);
    if (j->ad->prepare[j->bk][from])
        j->ad->prepare[j->bk][from](m->st, j->keys[s->keys], j->n, NULL);
    uint64_t r = j->ad->op[j->bk][from](m->st, j->keys[s->keys], count, NULL);
    if (j->ad->finish[j->bk][from])
        j->ad->finish[j->bk][from](m->st, j->keys[s->keys], j->n, NULL);
    if (r != op_expected(from, j->n, count)) {
        job_fail(j, op, "%s: setting up by %s returned %llu %s, expected %llu",
                 op_table[op].name, s->name, (unsigned long long)r, s->result,
                 (unsigned long long)op_expected(from, j->n, count));
        m->state = ST_USED;
        return false;
    }
    m->state = from;
    return true;
}

/* The loop count for this call.  A COUNT_CAPPED op (one that leaves the
 * map as it was) runs once untimed first, on the last key (the timed call
 * starts at the first): when that one op takes longer than SLOW_OP_NS (it
 * copies a whole hash table, say), the call gets as many ops as fit in
 * CALL_BUDGET_NS, at least one; otherwise min(N, COPIES_MAX). */
/* The loop count of a COUNT_TIMED op's call: trials, doubling from one
 * op, until they take 100 us (or reach the cap); then as many as fit in
 * the budget.  The first trial (one op) runs inside bench_region, timed
 * like a measured call: when it alone takes half the budget or more, it
 * is the measurement (a second call would double the cost of the slow
 * cells for nothing): then 0, with its time and result in *t1, *r1. */
static size_t whole_count(const bench_adapter *ad, int bk, int op, void *st,
                          const void *keys, double *t1, uint64_t *r1)
{
    size_t k = 1;
    double dt;
    for (;;) {
        double t0 = now_ns();
        uint64_t r = bench_region(ad->op[bk][op], st, keys, k, NULL);
        dt = now_ns() - t0;
        if (k == 1 && dt >= g_whole_ns / 2) {
            *t1 = dt;
            *r1 = r;
            return 0;
        }
        if (dt >= 100e3 || k >= WHOLE_MAX)
            break;
        k *= 2;
    }
    double fit = g_whole_ns / (dt / (double)k);
    return fit < 1 ? 1 : fit < WHOLE_MAX ? (size_t)fit : WHOLE_MAX;
}

size_t op_call_count(const bench_adapter *ad, int bk, int op, void *st, const void *keys,
                     size_t n)
{
    if (op_table[op].count == COUNT_TIMED) {
        double t1;
        uint64_t r1;
        size_t k = whole_count(ad, bk, op, st, keys, &t1, &r1);
        return k ? k : 1;
    }
    size_t cap = op_loop_count(op, n);
    if (op_table[op].count != COUNT_CAPPED || cap <= 1)
        return cap;
    size_t esize = bk == BK_U64 ? sizeof(uint64_t) : sizeof(bench_str);
    const char *last = keys ? (const char *)keys + (n - 1) * esize : NULL;
    double t0 = now_ns();
    ad->op[bk][op](st, last, 1, NULL);
    double dt = now_ns() - t0;
    if (dt < SLOW_OP_NS)
        return cap;
    double fit = CALL_BUDGET_NS / dt;
    return fit < 1 ? 1 : fit < (double)cap ? (size_t)fit : cap;
}

/* The one measuring block: times one call of op on m's map, then checks
 * what it returned, the size after it and, where the table says so, the
 * map's contents (unless query, still left to run on this map, will); on
 * the first rep it measures memory if asked.  An OPF_PER_CALL op (many
 * small maps) has its finish (freeing them) timed with it, after the
 * memory is measured; its memory is per loop step, with the growth of the
 * process's RSS beside it.  The adapter's check hook runs last. */
static void measure_op(job *j, live *m, int op, bool first_rep, opmask left)
{
    const op_info *d = &op_table[op];
    const bench_adapter *ad = j->ad;
    const void *keys = j->keys[d->keys];
    void **scratch = (d->flags & OPF_SCRATCH) ? j->scratch : NULL;
    size_t n = j->n;

    mark(op, PHASE_SETUP);
    if (ad->prepare[j->bk][op])
        ad->prepare[j->bk][op](m->st, keys, n, scratch);
    size_t count;
    double dt = 0;
    uint64_t r = 0;
    if (d->count == COUNT_TIMED) {
        mark(op, PHASE_TIMED);
        count = whole_count(ad, j->bk, op, m->st, keys, &dt, &r);
    } else {
        count = op_call_count(ad, j->bk, op, m->st, keys, n);
    }

    bool per_call = d->flags & OPF_PER_CALL;
    if (per_call) {
        /* the handles of the maps: the caller's, touched before timing */
        if (j->nslots < count) {
            free(j->slots);
            j->slots = xmalloc(count * sizeof *j->slots);
            memset(j->slots, 0, count * sizeof *j->slots);
            j->nslots = count;
        }
        scratch = j->slots;
    }
    /* the small maps' memory: what grew from here (the slots above are the
     * driver's, not the library's) */
    size_t rss0 = per_call && first_rep ? rss_bytes() : 0;
    size_t heap_call0 = per_call && first_rep ? heap_bytes() : 0;
    mark(op, PHASE_TIMED);
    if (count) {
        double t0 = now_ns();
        r = bench_region(ad->op[j->bk][op], m->st, keys, count, scratch);
        dt = now_ns() - t0;
    } else {
        count = 1; /* the first trial was the measurement */
    }

    mark(op, PHASE_CHECK);
    if (scratch && !per_call)
        m->kept = true;
    if (d->to != ST_SAME)
        m->state = d->to;
    if (first_rep && (d->flags & OPF_MEMORY)) {
        /* per entry, or per map for the small maps */
        double per = per_call ? (double)count : (double)n;
        if (ad->memory) {
            size_t live_b, resv_b;
            ad->memory(m->st, &live_b, &resv_b);
            j->res->bpe[op] = (double)live_b / per;
            j->res->reserved_bpe[op] = (double)resv_b / per;
        } else {
            double h0 = per_call ? (double)heap_call0 : (double)m->heap0;
            j->res->bpe[op] = ((double)heap_bytes() - h0) / per;
        }
        if (per_call)
            j->res->rss_bpe[op] = ((double)rss_bytes() - (double)rss0) / per;
    }
    if (per_call && ad->finish[j->bk][op]) {
        /* freeing the maps is part of the op's time */
        mark(op, PHASE_TIMED);
        double t0 = now_ns();
        bench_region(ad->finish[j->bk][op], m->st, keys, n, scratch);
        dt += now_ns() - t0;
        mark(op, PHASE_CHECK);
    }
    j->t[op] += dt;
    j->cnt[op] += count;
    uint64_t want = op_expected(op, n, count);
    if (r != want)
        job_fail(j, op, "%s: returned %llu (%s), expected %llu", d->name,
                 (unsigned long long)r, d->result, (unsigned long long)want);
    size_t want_size = d->size_after == SIZE_N ? n : 0;
    if (ad->size && d->size_after != SIZE_ANY && ad->size(m->st) != want_size)
        job_fail(j, op, "%s: size %zu afterwards, expected %zu", d->name,
                 ad->size(m->st), want_size);
    bool query_next = (left & OPBIT(OP_QUERY)) && op_table[OP_QUERY].from == m->state;
    if ((d->flags & OPF_VERIFY) && !query_next) {
        uint64_t s = ad->op[j->bk][OP_QUERY](m->st, j->keys[KEYS_QUERY], n, NULL);
        if (s != op_verify_sum(op, n))
            job_fail(j, op, "%s: afterwards the N keys' values sum to %llu, expected %llu",
                     d->name, (unsigned long long)s,
                     (unsigned long long)op_verify_sum(op, n));
    }
    if (d->flags & OPF_VERIFY_SAMPLE) {
        /* the first keys in insert order: a random sample of the map */
        size_t k = op_sample_n(n);
        uint64_t s = ad->op[j->bk][OP_QUERY](m->st, j->keys[KEYS_INSERT], k, NULL);
        if (s != op_sample_sum(op, k))
            job_fail(j, op, "%s: afterwards the values of a sample of %zu keys sum to %llu, "
                     "expected %llu", d->name, k, (unsigned long long)s,
                     (unsigned long long)op_sample_sum(op, k));
    }
    if (ad->finish[j->bk][op] && !per_call)
        ad->finish[j->bk][op](m->st, keys, n, scratch);
    if (ad->check[j->bk][op]) {
        const char *why = ad->check[j->bk][op](m->st);
        if (why)
            job_fail(j, op, "%s: %s", d->name, why);
    }
}

/* The next op to run: one that starts from the current state and keeps
 * it, else one that starts from it, else the first left (table order). */
static int next_op(opmask left, int state)
{
    int starts = -1, first = -1;
    for (int o = 0; o < OP_COUNT; o++) {
        if (!(left & OPBIT(o)))
            continue;
        if (first < 0)
            first = o;
        if (op_table[o].from == state) {
            if (op_table[o].to == ST_SAME)
                return o;
            if (starts < 0)
                starts = o;
        }
    }
    return starts >= 0 ? starts : first;
}

static size_t reps_for(size_t n, size_t min_ops)
{
    if (n == 0)
        return 1; /* only small_maps runs at N = 0 */
    size_t r = (min_ops + n - 1) / n;
    return r < 1 ? 1 : r > 200 ? 200 : r;
}

void run_job(const bench_adapter *ad, keyset *ks, size_t n, opmask ops, size_t min_ops,
             job_result *res)
{
    job j = {.ad = ad, .bk = bench_kind(ks->kind), .n = n, .res = res};
    j.keys[KEYS_NONE] = NULL;
    j.keys[KEYS_INSERT] = keyset_insert(ks);
    j.keys[KEYS_QUERY] = keyset_query(ks, n);
    j.keys[KEYS_MISS] = keyset_miss(ks);
    for (int o = 0; o < OP_COUNT; o++)
        res->bpe[o] = res->reserved_bpe[o] = res->rss_bpe[o] = -1;
    if (!ad->op[j.bk][OP_INSERT] || !ad->op[j.bk][OP_QUERY]) {
        snprintf(res->msg, sizeof res->msg, "adapter lacks insert/query");
        return;
    }
    ops = lib_ops(ad, ks->kind, ops);
    for (int o = 0; o < OP_COUNT; o++)
        if ((ops & OPBIT(o)) && (op_table[o].flags & OPF_SCRATCH) && !j.scratch) {
            j.scratch = xmalloc(n * sizeof *j.scratch);
            memset(j.scratch, 0, n * sizeof *j.scratch); /* touched before timing */
        }

    size_t reps = reps_for(n, min_ops);
    opmask timed = 0; /* COUNT_TIMED and COUNT_FIXED ops: the first rep only */
    for (int o = 0; o < OP_COUNT; o++)
        if (op_table[o].count == COUNT_TIMED || op_table[o].count == COUNT_FIXED)
            timed |= OPBIT(o);
    for (size_t r = 0; r < reps; r++) {
        live m = {.state = ST_USED};
        opmask left = r == 0 ? ops : ops & ~timed;
        while (left) {
            int op = next_op(left, m.state);
            left &= ~OPBIT(op);
            if (m.state != op_table[op].from && !live_prepare(&j, &m, op))
                continue;
            measure_op(&j, &m, op, r == 0, left);
        }
        mark(-1, PHASE_SETUP);
        live_release(&j, &m);
    }
    free(j.scratch);
    free(j.slots);

    for (int o = 0; o < OP_COUNT; o++)
        if ((ops & OPBIT(o)) && j.cnt[o]) {
            res->have |= OPBIT(o);
            res->ns[o] = j.t[o] / (double)j.cnt[o];
        }
}

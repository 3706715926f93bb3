/*
 * profile.c - one op of one library at one N, in this process:
 *   --callgrind LIB:KEYS:OP:N         the op once, inside bench_region(), for
 *                                     `make bench-callgrind`;
 *   --profile LIB:KEYS:OP:N:SECONDS   the op repeated for SECONDS, for perf,
 *                                     printing ns per counted unit.
 * The op's starting state comes from the op table, made outside the timing.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct one_spec {
    int lib, kind, op;
    size_t n;
    double seconds;
} one_spec;

static int find_kind(const char *name)
{
    for (int i = 0; i < NKK; i++)
        if (!strcmp(kk_name[i], name))
            return i;
    return -1;
}

static one_spec parse_one(const char *arg, bool with_seconds)
{
    one_spec sp = {0};
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    char *parts[5] = {0};
    int np = 0;
    for (char *p = strtok(buf, ":"); p && np < 5; p = strtok(NULL, ":"))
        parts[np++] = p;
    if (np != (with_seconds ? 5 : 4))
        die("expected LIB:KEYS:OP:N%s, got '%s'", with_seconds ? ":SECONDS" : "", arg);
    sp.lib = lib_find(parts[0], strlen(parts[0]));
    sp.kind = find_kind(parts[1]);
    sp.op = op_find(parts[2], strlen(parts[2]));
    if (sp.lib < 0 || sp.kind < 0 || sp.op < 0)
        die("unknown library, key kind or op in '%s'", arg);
    const char *e;
    sp.n = parse_size(parts[3], &e);
    sp.seconds = with_seconds ? atof(parts[4]) : 0;
    return sp;
}

/* A new map in the state the op starts from (outside any timing). */
static void *one_setup(const bench_adapter *ad, int bk, int op, const void *const *keys,
                       size_t n, void **scratch)
{
    void *st = ad->create(bk);
    if (!st)
        die("create failed");
    int from = op_table[op].from;
    if (from >= 0) {
        size_t count = op_loop_count(from, n);
        const void *fk = keys[op_table[from].keys];
        if (ad->prepare[bk][from])
            ad->prepare[bk][from](st, fk, n, NULL);
        uint64_t r = ad->op[bk][from](st, fk, count, NULL);
        if (ad->finish[bk][from])
            ad->finish[bk][from](st, fk, n, NULL);
        if (r != op_expected(from, n, count))
            die("setup: %s of %zu keys failed", op_table[from].name, n);
    }
    if (ad->prepare[bk][op])
        ad->prepare[bk][op](st, keys[op_table[op].keys], n, scratch);
    return st;
}

static void one_release(const bench_adapter *ad, void *st, void **scratch, size_t n)
{
    if (scratch)
        ad->drop_versions(st, scratch, n);
    ad->destroy(st);
}

int run_one(const char *arg, bool profile)
{
    one_spec sp = parse_one(arg, profile);
    const lib_entry *L = &libs()[sp.lib];
    const bench_adapter *ad = L->ad;
    const op_info *d = &op_table[sp.op];
    if (!ad)
        die("%s was not built (needs %s)", L->name, L->missing);
    int bk = bench_kind(sp.kind);
    bench_op_fn f = ad->op[bk][sp.op];
    if (!lib_ops(ad, sp.kind, OPBIT(sp.op)))
        die("%s has no %s for %s keys", ad->name, d->name, kk_name[sp.kind]);
    keyset_make(sp.kind, sp.n);
    keyset *ks = &g_ks[sp.kind];
    if (sp.n > ks->nmax)
        sp.n = ks->nmax;
    size_t n = sp.n;
    const void *keys[4] = {NULL, keyset_insert(ks), keyset_query(ks, n), keyset_miss(ks)};
    void **scratch = (d->flags & OPF_SCRATCH) ? calloc(n, sizeof *scratch) : NULL;
    bool mutates = d->to != ST_SAME;
    /* small_maps: a slot per map made, and freeing them (finish) is timed */
    bool per_call = d->flags & OPF_PER_CALL;
    bench_op_fn fin = per_call ? ad->finish[bk][sp.op] : NULL;
    if (per_call)
        scratch = calloc(op_loop_count(sp.op, n), sizeof *scratch);

    if (!profile) {
        void *st = one_setup(ad, bk, sp.op, keys, n, scratch);
        size_t cnt = op_call_count(ad, bk, sp.op, st, keys[d->keys], n);
        uint64_t r = bench_region(f, st, keys[d->keys], cnt, scratch);
        if (fin)
            bench_region(fin, st, keys[d->keys], n, scratch);
        one_release(ad, st, per_call ? NULL : scratch, n);
        printf("callgrind %s %s %s n=%zu ops=%zu result=%llu\n", ad->name,
               kk_name[sp.kind], d->name, n, cnt, (unsigned long long)r);
        free(scratch);
        return 0;
    }
    fprintf(stderr, "profile: %s %s %s N=%zu for %.0f s (pid %d)\n", ad->name,
            kk_name[sp.kind], d->name, n, sp.seconds, (int)getpid());
    double end = now_ns() + sp.seconds * 1e9, total = 0;
    size_t iters = 0, cnt = 0, ops = 0;
    void *st = NULL;
    while (now_ns() < end || iters == 0) {
        if (!st) {
            st = one_setup(ad, bk, sp.op, keys, n, scratch);
            cnt = op_call_count(ad, bk, sp.op, st, keys[d->keys], n);
        }
        double t0 = now_ns();
        bench_region(f, st, keys[d->keys], cnt, scratch);
        if (fin)
            bench_region(fin, st, keys[d->keys], n, scratch);
        total += now_ns() - t0;
        iters++;
        ops += cnt;
        if (mutates) {
            one_release(ad, st, per_call ? NULL : scratch, n);
            st = NULL;
        }
    }
    if (st)
        one_release(ad, st, NULL, n);
    printf("profile %s %s %s N=%zu: %zu iterations, %.2f %s\n", ad->name, kk_name[sp.kind],
           d->name, n, iters, total / (double)ops, d->unit);
    free(scratch);
    return 0;
}

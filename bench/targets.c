/*
 * targets.c - the project's performance targets for champ, as data, and
 * the table that compares a run with them.  bench/README.md ("Targets")
 * names and explains each row.  Information only: a target never changes
 * the exit status.
 */
#include "bench.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

enum target_kind {
    T_RATIO,    /* median of (lib, op) / median of (lib2, op2), same keys and N */
    T_PER_ENTRY,/* the same, with (lib, op)'s time (a whole op) divided by N     */
    T_BYTES,    /* bytes per entry live after op                               */
    T_RESERVED, /* bytes per entry reserved / live after op                    */
    T_INSTR,    /* instructions per op (callgrind CSV), lib's op / lib2's op2   */
    T_CLIFF,    /* the worst step from one N to the next over the map ops:
                   lib's step / lib2's step                                     */
    T_TOTAL,    /* seconds for all N units of (lib, op): median ns/unit * N     */
    T_SPEEDUP,  /* as T_RATIO, but a floor: the measured value must reach the
                   limit (lib's op taking longer than lib2's op2: a speedup)  */
    T_NS,       /* the median ns per unit of (lib, op)                          */
};

typedef struct target {
    const char *name;
    enum target_kind kind;
    int keys;
    int lib, op;   /* what is measured   */
    int lib2, op2; /* what it is against */
    size_t n;
    double limit;
} target;

#define K1 1000
#define K10 10000
#define K100 100000
#define M1 1000000
#define M10 10000000

static const target targets[] = {
    {"query", T_RATIO, KK_U64, L_CHAMP, OP_QUERY, L_ABSL, OP_QUERY, K10, 2.0},
    {"query", T_RATIO, KK_U64, L_CHAMP, OP_QUERY, L_ABSL, OP_QUERY, M1, 2.0},
    {"miss", T_RATIO, KK_U64, L_CHAMP, OP_MISS, L_ABSL, OP_MISS, K10, 2.5},
    {"miss", T_RATIO, KK_U64, L_CHAMP, OP_MISS, L_ABSL, OP_MISS, M1, 2.5},
    /* issue 11: insert ahead of absl in cache, within 1.5x out of it */
    {"insert", T_RATIO, KK_U64, L_CHAMP, OP_INSERT, L_ABSL, OP_INSERT, K1, 1.0},
    {"insert", T_RATIO, KK_U64, L_CHAMP, OP_INSERT, L_ABSL, OP_INSERT, K10, 1.0},
    {"insert", T_RATIO, KK_U64, L_CHAMP, OP_INSERT, L_ABSL, OP_INSERT, K100, 1.0},
    {"insert", T_RATIO, KK_U64, L_CHAMP, OP_INSERT, L_ABSL, OP_INSERT, M1, 1.5},
    {"insert", T_RATIO, KK_U64, L_CHAMP, OP_INSERT, L_ABSL, OP_INSERT, M10, 1.5},
    {"remove", T_RATIO, KK_U64, L_CHAMP, OP_REMOVE, L_ABSL, OP_REMOVE, K10, 3.0},
    {"remove", T_RATIO, KK_U64, L_CHAMP, OP_REMOVE, L_ABSL, OP_REMOVE, M1, 2.0},
    {"iterate", T_RATIO, KK_U64, L_CHAMP, OP_ITERATE, L_ABSL, OP_ITERATE, K10, 2.0},
    {"iterate", T_RATIO, KK_U64, L_CHAMP, OP_ITERATE, L_ABSL, OP_ITERATE, M1, 2.0},
    {"pinsert", T_RATIO, KK_U64, L_CHAMP, OP_PINSERT, L_CHAMP, OP_INSERT, K10, 2.5},
    {"pinsert", T_RATIO, KK_U64, L_CHAMP, OP_PINSERT, L_CHAMP, OP_INSERT, M1, 2.5},
    {"copy_update", T_RATIO, KK_U64, L_CHAMP, OP_COPY_UPDATE, L_CHAMP, OP_QUERY, K10, 20},
    {"copy_update", T_RATIO, KK_U64, L_CHAMP, OP_COPY_UPDATE, L_CHAMP, OP_QUERY, M1, 20},
    {"memory", T_BYTES, KK_U64, L_CHAMP, OP_INSERT, -1, -1, M1, 18},
    {"reserve", T_RESERVED, KK_U64, L_CHAMP, OP_INSERT, -1, -1, M1, 1.2},
    {"str query", T_RATIO, KK_STR, L_CHAMP_GENERIC, OP_QUERY, L_ABSL, OP_QUERY, K10, 2.5},
    {"str query", T_RATIO, KK_STR, L_CHAMP_GENERIC, OP_QUERY, L_ABSL, OP_QUERY, M1, 2.5},
    /* issue 11: the byte-key kind (champ_*_bytes) */
    {"str insert", T_RATIO, KK_STR, L_CHAMP, OP_INSERT, L_ABSL, OP_INSERT, K10, 1.5},
    {"str insert", T_RATIO, KK_STR, L_CHAMP, OP_INSERT, L_ABSL, OP_INSERT, M1, 1.5},
    {"str iterate", T_RATIO, KK_STR, L_CHAMP, OP_ITERATE, L_CHAMP_GENERIC, OP_ITERATE, K10, 1.5},
    {"str iterate", T_RATIO, KK_STR, L_CHAMP, OP_ITERATE, L_CHAMP_GENERIC, OP_ITERATE, M1, 1.5},
    {"instr query", T_INSTR, KK_U64, L_CHAMP, OP_QUERY, L_ABSL, OP_QUERY, K10, 2.5},
    {"instr insert", T_INSTR, KK_U64, L_CHAMP, OP_INSERT, L_ABSL, OP_INSERT, K10, 1.5},
    {"instr remove", T_INSTR, KK_U64, L_CHAMP, OP_REMOVE, L_ABSL, OP_REMOVE, K10, 2.5},
    {"no cliff", T_CLIFF, KK_U64, L_CHAMP, -1, L_ABSL, -1, 0, 1.5},
    {"build", T_RATIO, KK_U64, L_CHAMP, OP_BUILD, L_CHAMP, OP_INSERT, K10, 0.4},
    {"build", T_RATIO, KK_U64, L_CHAMP, OP_BUILD, L_CHAMP, OP_INSERT, M1, 0.4},
    {"upsert", T_RATIO, KK_U64, L_CHAMP, OP_UPSERT, L_CHAMP, OP_QUERY, K10, 1.2},
    {"upsert", T_RATIO, KK_U64, L_CHAMP, OP_UPSERT, L_CHAMP, OP_QUERY, M1, 1.2},
    {"equal_shared", T_RATIO, KK_U64, L_CHAMP, OP_EQUAL_SHARED, L_CHAMP, OP_EQUAL_FRESH, M1,
     0.001},
    /* diff has no fresh op: its counterpart is the full comparison walk */
    {"diff_shared", T_RATIO, KK_U64, L_CHAMP, OP_DIFF_SHARED, L_CHAMP, OP_EQUAL_FRESH, M1,
     0.001},
    {"union_shared", T_RATIO, KK_U64, L_CHAMP, OP_UNION_SHARED, L_CHAMP, OP_UNION_FRESH, M1,
     0.001},
    {"intersect_shared", T_RATIO, KK_U64, L_CHAMP, OP_INTERSECT_SHARED, L_CHAMP,
     OP_INTERSECT_FRESH, M1, 0.001},
    {"equal_fresh", T_PER_ENTRY, KK_U64, L_CHAMP, OP_EQUAL_FRESH, L_CHAMP, OP_ITERATE, K10, 2.0},
    {"equal_fresh", T_PER_ENTRY, KK_U64, L_CHAMP, OP_EQUAL_FRESH, L_CHAMP, OP_ITERATE, M1, 2.0},
    {"set memory", T_BYTES, KK_U64, L_CHAMP, OP_SET_INSERT, -1, -1, M1, 12},
    {"set_query", T_RATIO, KK_U64, L_CHAMP, OP_SET_QUERY, L_CHAMP, OP_QUERY, K10, 1.0},
    {"set_query", T_RATIO, KK_U64, L_CHAMP, OP_SET_QUERY, L_CHAMP, OP_QUERY, M1, 1.0},
    {"collide", T_TOTAL, KK_STR, L_CHAMP, OP_COLLIDE, -1, -1, 100000, 1.0},
    /* issue 10: threads, the concurrent pool's cost, many small maps */
    {"threads", T_SPEEDUP, KK_U64, L_CHAMP_MT, OP_THREADS_1, L_CHAMP_MT, OP_THREADS_2, K10, 1.7},
    {"threads", T_SPEEDUP, KK_U64, L_CHAMP_MT, OP_THREADS_1, L_CHAMP_MT, OP_THREADS_2, M1, 1.7},
    {"mt insert", T_RATIO, KK_U64, L_CHAMP_MT, OP_INSERT, L_CHAMP, OP_INSERT, K10, 1.05},
    {"mt insert", T_RATIO, KK_U64, L_CHAMP_MT, OP_INSERT, L_CHAMP, OP_INSERT, M1, 1.05},
    {"mt query", T_RATIO, KK_U64, L_CHAMP_MT, OP_QUERY, L_CHAMP, OP_QUERY, K10, 1.05},
    {"mt query", T_RATIO, KK_U64, L_CHAMP_MT, OP_QUERY, L_CHAMP, OP_QUERY, M1, 1.05},
    {"mt pinsert", T_RATIO, KK_U64, L_CHAMP_MT, OP_PINSERT, L_CHAMP, OP_PINSERT, K10, 1.2},
    {"mt pinsert", T_RATIO, KK_U64, L_CHAMP_MT, OP_PINSERT, L_CHAMP, OP_PINSERT, M1, 1.2},
    {"small empty", T_BYTES, KK_U64, L_CHAMP, OP_SMALL_MAPS, -1, -1, 0, 48},
    {"small 1 entry", T_BYTES, KK_U64, L_CHAMP, OP_SMALL_MAPS, -1, -1, 1, 80},
    {"small create", T_NS, KK_U64, L_CHAMP, OP_SMALL_MAPS, -1, -1, 0, 100},
    /* issue 11: batched lookups */
    {"query_many", T_RATIO, KK_U64, L_CHAMP, OP_QUERY_MANY, L_ABSL, OP_QUERY, M1, 1.0},
    {"query_many", T_RATIO, KK_U64, L_CHAMP, OP_QUERY_MANY, L_ABSL, OP_QUERY, M10, 1.0},
};

/* A ratio or limit as text: two decimals, or two significant digits below
 * 0.1 (the shared/fresh limits are 0.001). */
static void fmt_num(char *buf, size_t cap, double v, const char *unit)
{
    snprintf(buf, cap, v >= 0.1 || v == 0 ? "%.2f%s" : "%.2g%s", v, unit);
}

static bool read_callgrind(const char *path, const char *lib, const char *keys,
                           const char *op, double *out)
{
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return false;
    char line[512];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        char l[64], k[64], o[64];
        size_t n;
        double v;
        if (sscanf(line, "%63[^,],%63[^,],%63[^,],%zu,%lf", l, k, o, &n, &v) == 5 &&
            !strcmp(l, lib) && !strcmp(k, keys) && !strcmp(o, op)) {
            *out = v;
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* The worst ratio of lib's step to lib2's step between neighbouring N, over
 * the ops of the map panel; where it is, in *where. */
static double worst_cliff(const target *t, char *where, size_t cap)
{
    double worst = NAN;
    const scale_set *ss = &g_scales[t->keys];
    for (int op = 0; op < OP_COUNT; op++) {
        if (op_table[op].group != G_MAP)
            continue;
        for (int si = 1; si < ss->nn; si++) {
            size_t n0 = ss->n[si - 1], n1 = ss->n[si];
            double a = med(t->keys, t->lib, op, n1) / med(t->keys, t->lib, op, n0);
            double b = med(t->keys, t->lib2, op, n1) / med(t->keys, t->lib2, op, n0);
            double r = a / b;
            if (isnan(r) || !(isnan(worst) || r > worst))
                continue;
            char x[16], y[16];
            fmt_n(x, sizeof x, n0);
            fmt_n(y, sizeof y, n1);
            worst = r;
            snprintf(where, cap, "%s %s->%s", op_table[op].name, x, y);
        }
    }
    return worst;
}

static double target_value(const options *o, const target *t, char *where, size_t cap,
                           const char **unit)
{
    const lib_entry *L = libs();
    int si = scale_index(t->keys, t->n);
    const cell *c = si >= 0 && t->op >= 0 ? &g_cell[t->keys][si][t->lib][t->op] : NULL;
    double a, b;
    *unit = "x";
    where[0] = 0;
    switch (t->kind) {
    case T_RATIO:
    case T_SPEEDUP:
        return med(t->keys, t->lib, t->op, t->n) / med(t->keys, t->lib2, t->op2, t->n);
    case T_NS:
        *unit = " ns";
        return med(t->keys, t->lib, t->op, t->n);
    case T_PER_ENTRY:
        return med(t->keys, t->lib, t->op, t->n) / (double)t->n /
               med(t->keys, t->lib2, t->op2, t->n);
    case T_BYTES:
        *unit = " B";
        return c && cell_ok(c) && c->bpe >= 0 ? c->bpe : NAN;
    case T_RESERVED:
        return c && cell_ok(c) && c->bpe > 0 && c->reserved_bpe >= 0 ? c->reserved_bpe / c->bpe
                                                                       : NAN;
    case T_INSTR:
        if (read_callgrind(o->callgrind_csv, L[t->lib].name, kk_name[t->keys],
                           op_table[t->op].name, &a) &&
            read_callgrind(o->callgrind_csv, L[t->lib2].name, kk_name[t->keys],
                           op_table[t->op2].name, &b))
            return a / b;
        return NAN;
    case T_CLIFF:
        return worst_cliff(t, where, cap);
    case T_TOTAL:
        *unit = " s";
        return med(t->keys, t->lib, t->op, t->n) * (double)t->n * 1e-9;
    }
    return NAN;
}

static void describe(const target *t, char *buf, size_t cap)
{
    const lib_entry *L = libs();
    switch (t->kind) {
    case T_RATIO:
    case T_INSTR:
        snprintf(buf, cap, "%s %s / %s %s%s", L[t->lib].name, op_table[t->op].name,
                 L[t->lib2].name, op_table[t->op2].name, t->kind == T_INSTR ? ", instr" : "");
        break;
    case T_PER_ENTRY:
        snprintf(buf, cap, "%s %s per entry / %s %s", L[t->lib].name, op_table[t->op].name,
                 L[t->lib2].name, op_table[t->op2].name);
        break;
    case T_BYTES:
        if (op_table[t->op].flags & OPF_PER_CALL)
            snprintf(buf, cap, "%s %s, live bytes/map", L[t->lib].name, op_table[t->op].name);
        else
            snprintf(buf, cap, "%s live bytes/entry", L[t->lib].name);
        break;
    case T_SPEEDUP:
        snprintf(buf, cap, "%s %s / %s, at least", L[t->lib].name,
                 op_table[t->op].name, op_table[t->op2].name);
        break;
    case T_NS:
        snprintf(buf, cap, "%s %s, %s", L[t->lib].name, op_table[t->op].name,
                 op_table[t->op].unit);
        break;
    case T_RESERVED:
        snprintf(buf, cap, "%s reserved / live", L[t->lib].name);
        break;
    case T_CLIFF:
        snprintf(buf, cap, "%s step / %s step", L[t->lib].name, L[t->lib2].name);
        break;
    case T_TOTAL:
        snprintf(buf, cap, "%s %s, all N keys", L[t->lib].name, op_table[t->op].name);
        break;
    }
}

void print_targets(const options *o)
{
    bool any = false;
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++)
        any |= lib_has_op(targets[i].keys, targets[i].lib,
                          targets[i].op >= 0 ? targets[i].op : OP_QUERY);
    if (!any) {
        printf("\ntargets: none applies to this run (no champ u64 or champ_generic str "
               "results)\n");
        return;
    }
    printf("\ntargets (bench/README.md names and explains them; ratios of medians of this "
           "run; information only)\n");
    printf("  %-16s %-5s %5s  %-48s %9s %8s\n", "target", "keys", "N", "what", "measured",
           "limit");
    bool need_cg = false;
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        const target *t = &targets[i];
        char ns[32] = "", what[128], where[128], val[32], lim[32];
        const char *unit;
        if (t->kind != T_CLIFF)
            fmt_n(ns, sizeof ns, t->n);
        describe(t, what, sizeof what);
        double v = target_value(o, t, where, sizeof where, &unit);
        need_cg |= t->kind == T_INSTR && isnan(v);
        if (isnan(v))
            snprintf(val, sizeof val, "-");
        else
            fmt_num(val, sizeof val, v, unit);
        fmt_num(lim, sizeof lim, t->limit, unit);
        bool ok = t->kind == T_SPEEDUP ? v >= t->limit : v <= t->limit;
        printf("  %-16s %-5s %5s  %-48s %9s %8s  %s", t->name, kk_name[t->keys], ns, what,
               val, lim, isnan(v) ? "no data" : ok ? "within" : t->kind == T_SPEEDUP ? "below"
                                                                                       : "over");
        if (where[0])
            printf(" (worst: %s)", where);
        putchar('\n');
    }
    if (need_cg && o->callgrind_csv && access(o->callgrind_csv, R_OK) != 0)
        printf("  (instruction counts: `make bench-callgrind` writes %s)\n", o->callgrind_csv);
}

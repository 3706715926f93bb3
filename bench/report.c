/*
 * report.c - what the run prints on stdout: the header, one table per key
 * kind and op (median/min over rounds for each library and N, then
 * champ's ratios to absl and GLib), the memory tables, and the text of
 * champ's pool telemetry (run as a child, its output captured and printed
 * here, after the tables, never in the middle of them).
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Ratio columns: numerator / denominator library, when both ran the op. */
static const struct {
    int num, den;
    const char *title;
} ratio_cols[] = {
    {L_CHAMP, L_ABSL, "champ/absl"},
    {L_CHAMP_GENERIC, L_ABSL, "gen/absl"},
    {L_CHAMP, L_GLIB, "champ/glib"},
    {L_CHAMP_GENERIC, L_GLIB, "gen/glib"},
    {L_CHAMP_MT, L_CHAMP, "mt/champ"}, /* the concurrent pool's cost */
};
#define NRATIO (int)(sizeof ratio_cols / sizeof *ratio_cols)

/* Whether any job of the run has the op. */
static bool op_in_run(int op)
{
    for (int k = 0; k < NKK; k++)
        for (int si = 0; si < g_scales[k].nn; si++)
            for (int l = 0; l < NLIBS; l++)
                if (g_cell[k][si][l][op].planned)
                    return true;
    return false;
}

/* Whether a library of the run has the op (asked for or not). */
static bool op_available(const options *o, int op)
{
    const lib_entry *L = libs();
    for (int l = 0; l < NLIBS; l++)
        for (int k = 0; k < NKK; k++)
            if (L[l].ad && (o->libs & (1u << l)) && (o->kinds & (1u << k)) &&
                lib_ops(L[l].ad, k, OPBIT(op)))
                return true;
    return false;
}

void print_header(const options *o)
{
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&now));
    printf("champ bench, %s, %s\n", date, cpu_name());
    printf("%d round%s%s, a fresh process per (round, keys, N, library) job, median and "
           "min over rounds\n", o->rounds, o->rounds == 1 ? "" : "s",
           o->quick ? " (--quick)" : "");
    const lib_entry *L = libs();
    for (int l = 0; l < NLIBS; l++)
        if ((o->libs & (1u << l)) && !L[l].ad)
            printf("%s: skipped, not built (needs %s)\n", L[l].name, L[l].missing);
    if (o->words_missing)
        printf("words: skipped, %s not found (Debian package wamerican-huge)\n", WORDS_FILE);
    for (int op = 0; op < OP_COUNT; op++) {
        if ((o->ops_asked & OPBIT(op)) && !op_available(o, op))
            printf("%s: no library in this run has it; not measured\n", op_table[op].name);
    }

    if (o->budget) {
        bool big = false, str = false;
        for (int k = 0; k < NKK; k++)
            for (int i = 0; i < g_scales[k].nn; i++) {
                big |= g_scales[k].n[i] >= BIG_N;
                str |= k != KK_U64 && o->quick && g_scales[k].n[i] > QUICK_STR_MAX;
            }
        char line[1024] = "";
        size_t len = 0;
#define ADD(...) (len += (size_t)snprintf(line + len, len < sizeof line ? sizeof line - len : 0, __VA_ARGS__))
        if (big)
            ADD(" at N >= %uM u64 keys only, %d round%s;", BIG_N / 1000000, o->rounds_big,
                o->rounds_big == 1 ? "" : "s");
        if (str)
            ADD(" str and words keys up to N = %uK;", QUICK_STR_MAX / 1000);
        for (int op = 0; op < OP_COUNT; op++) {
            size_t max = op_max_n(op, o->quick);
            bool cut = false;
            for (int k = 0; k < NKK; k++)
                for (int i = 0; i < g_scales[k].nn; i++)
                    cut |= max && g_scales[k].n[i] > max && (o->ops & OPBIT(op)) &&
                           op_available(o, op);
            if (cut) {
                /* max_n is inclusive; BIG_N - 1 reads better as "below BIG_N" */
                bool below = (max + 1) % 1000 == 0;
                char nb[32];
                fmt_n(nb, sizeof nb, below ? max + 1 : max);
                ADD(" %s %s N = %s;", op_table[op].name, below ? "below" : "up to", nb);
            }
        }
        for (int l = 0; l < NLIBS; l++) {
            if (!L[l].ad || !(o->libs & (1u << l)))
                continue;
            if (L[l].budget_ops) {
                ADD(" %s only", L[l].name);
                int c = 0;
                for (int op = 0; op < OP_COUNT; op++)
                    if (L[l].budget_ops & OPBIT(op))
                        ADD("%s %s", c++ ? "," : "", op_table[op].name);
                ADD(";");
            }
            bool cut = false;
            for (int k = 0; k < NKK; k++)
                for (int i = 0; i < g_scales[k].nn; i++)
                    cut |= L[l].budget_max_n && g_scales[k].n[i] > L[l].budget_max_n;
            if (cut) {
                char nb[32];
                fmt_n(nb, sizeof nb, L[l].budget_max_n);
                ADD(" %s up to N = %s;", L[l].name, nb);
            }
        }
#undef ADD
        if (line[0])
            printf("budget (--no-budget lifts it):%s\n", line);
    }
    for (int op = 0; op < OP_COUNT; op++)
        if (op_table[op].count == COUNT_CAPPED && op_in_run(op))
            printf("%s: min(N, %u) per map; where one takes over %.0f us, as many as fit "
                   "in %.0f ms, at least one\n", op_table[op].name, COPIES_MAX,
                   SLOW_OP_NS / 1e3, CALL_BUDGET_NS / 1e6);
    char whole[512] = "";
    for (int op = 0; op < OP_COUNT; op++)
        if (op_table[op].count == COUNT_TIMED && op_in_run(op)) {
            size_t len = strlen(whole);
            snprintf(whole + len, sizeof whole - len, "%s%s", len ? ", " : "",
                     op_table[op].name);
        }
    if (whole[0])
        printf("%s: one pair of maps per job, as many whole operations per call as fit in "
               "%.0f ms (after untimed trials), at most %u, in the job's first rep\n", whole,
               o->whole_ns / 1e6, WHOLE_MAX);
    for (int op = 0; op < OP_COUNT; op++) {
        const op_info *d = &op_table[op];
        if (d->count != COUNT_FIXED || !op_in_run(op))
            continue;
        char cnt[32];
        fmt_n(cnt, sizeof cnt, o->quick && d->fixed_quick ? d->fixed_quick : d->fixed);
        if (d->flags & OPF_PER_CALL)
            printf("%s: N = entries per map; %s maps per call, in the job's first rep\n",
                   d->name, cnt);
        else
            printf("%s: %s loop iterations per call (all threads together), in the job's "
                   "first rep\n", d->name, cnt);
    }
    fflush(stdout);
}

/* The libraries with any planned cell of this key kind (the columns). */
static int kind_libs(int k, int *cols)
{
    int nc = 0;
    for (int l = 0; l < NLIBS; l++) {
        bool any = false;
        for (int si = 0; si < g_scales[k].nn; si++)
            for (int op = 0; op < OP_COUNT; op++)
                any |= g_cell[k][si][l][op].planned;
        if (any)
            cols[nc++] = l;
    }
    return nc;
}

static bool op_planned(int k, int l, int op)
{
    for (int si = 0; si < g_scales[k].nn; si++)
        if (g_cell[k][si][l][op].planned)
            return true;
    return false;
}

#define CELLW 32

/* One table: rows = N, columns = libraries, then ratio columns. */
static void print_table(int k, int op, const char *title, bool memory)
{
    int cols[NLIBS], nc = kind_libs(k, cols);
    bool any = false;
    for (int c = 0; c < nc; c++)
        any |= op_planned(k, cols[c], op);
    if (!any)
        return;
    bool ratio[NRATIO] = {false};
    for (int r = 0; r < NRATIO && !memory; r++)
        ratio[r] = op_planned(k, ratio_cols[r].num, op) && op_planned(k, ratio_cols[r].den, op);

    /* cells as text first, to size the columns */
    static char text[MAXN][NLIBS + NRATIO][CELLW];
    int w[NLIBS + NRATIO];
    bool row[MAXN];
    for (int c = 0; c < nc; c++)
        w[c] = (int)strlen(libs()[cols[c]].name);
    for (int r = 0; r < NRATIO; r++)
        w[nc + r] = (int)strlen(ratio_cols[r].title);
    for (int si = 0; si < g_scales[k].nn; si++) {
        row[si] = false;
        for (int c = 0; c < nc; c++) {
            const cell *ce = &g_cell[k][si][cols[c]][op];
            char *t = text[si][c];
            row[si] |= ce->planned;
            if (ce->bad)
                snprintf(t, CELLW, "failed");
            else if (!ce->count || (memory && ce->bpe < 0))
                snprintf(t, CELLW, "-");
            else if (memory && (op_table[op].flags & OPF_PER_CALL))
                snprintf(t, CELLW, ce->rss_bpe >= 0 ? "%.1f/%.1f" : "%.1f/-", ce->bpe,
                         ce->rss_bpe);
            else if (memory && ce->reserved_bpe >= 0)
                snprintf(t, CELLW, "%.1f/%.1f", ce->bpe, ce->reserved_bpe);
            else if (memory)
                snprintf(t, CELLW, "%.1f", ce->bpe);
            else
                snprintf(t, CELLW, cell_median(ce) < 1e5 ? "%.1f/%.1f" : "%.0f/%.0f",
                         cell_median(ce), cell_min(ce));
            if ((int)strlen(t) > w[c])
                w[c] = (int)strlen(t);
        }
        for (int r = 0; r < NRATIO; r++) {
            if (!ratio[r])
                continue;
            double a = med(k, ratio_cols[r].num, op, g_scales[k].n[si]);
            double b = med(k, ratio_cols[r].den, op, g_scales[k].n[si]);
            char *t = text[si][nc + r];
            if (isnan(a) || isnan(b))
                snprintf(t, CELLW, "-");
            else
                snprintf(t, CELLW, a / b >= 0.1 ? "%.2fx" : "%.2gx", a / b);
            if ((int)strlen(t) > w[nc + r])
                w[nc + r] = (int)strlen(t);
        }
    }

    printf("\n%s keys, %s\n", kk_name[k], title);
    printf("%6s", "N");
    for (int c = 0; c < nc; c++)
        printf("  %*s", w[c], libs()[cols[c]].name);
    for (int r = 0; r < NRATIO; r++)
        if (ratio[r])
            printf("  %*s", w[nc + r], ratio_cols[r].title);
    putchar('\n');
    for (int si = 0; si < g_scales[k].nn; si++) {
        if (!row[si])
            continue;
        char ns[32];
        fmt_n(ns, sizeof ns, g_scales[k].n[si]);
        printf("%6s", ns);
        for (int c = 0; c < nc; c++)
            printf("  %*s", w[c], text[si][c]);
        for (int r = 0; r < NRATIO; r++)
            if (ratio[r])
                printf("  %*s", w[nc + r], text[si][nc + r]);
        putchar('\n');
    }
}

void print_tables(void)
{
    for (int k = 0; k < NKK; k++) {
        for (int g = 0; g < NGROUPS; g++)
            for (int op = 0; op < OP_COUNT; op++) {
                if (op_table[op].group != g)
                    continue;
                char title[256];
                snprintf(title, sizeof title, "%s: %s%s, median/min of the rounds",
                         op_table[op].name, op_table[op].unit,
                         (op_table[op].flags & OPF_PER_CALL) ? " (N = entries per map)" : "");
                print_table(k, op, title, false);
            }
        for (int op = 0; op < OP_COUNT; op++) {
            if (!(op_table[op].flags & OPF_MEMORY))
                continue;
            char title[512];
            if (op_table[op].flags & OPF_PER_CALL)
                snprintf(title, sizeof title,
                         "memory %s: bytes per map, N = entries per map (champ: pool bytes "
                         "live; others: heap growth by mallinfo2; after the slash: the "
                         "process's RSS growth)", op_table[op].memory);
            else
                snprintf(title, sizeof title,
                         "memory %s: bytes per entry (champ: pool bytes live/reserved; others: "
                         "heap growth by mallinfo2)", op_table[op].memory);
            print_table(k, op, title, true);
        }
    }
    fflush(stdout);
}

/* ---- champ's pool telemetry (the CHAMP_STATS build) ---- */

static char *g_telemetry_text;

void run_telemetry(const options *o)
{
    if (!o->telemetry || !*o->telemetry || !(o->libs & (1u << L_CHAMP)) || !libs()[L_CHAMP].ad)
        return;
    if (access(o->telemetry, X_OK) != 0) {
        add_note("no pool telemetry: %s not built", o->telemetry);
        return;
    }
    char nlist[512] = "";
    const scale_set *ss = &g_scales[KK_U64];
    for (int i = 0; i < (ss->nn ? ss->nn : o->nn); i++) {
        size_t len = strlen(nlist);
        snprintf(nlist + len, sizeof nlist - len, "%s%zu", i ? "," : "",
                 ss->nn ? ss->n[i] : o->n[i]);
    }
    progress("bench: pool telemetry (%s)\n", o->telemetry);
    char *argv[] = {(char *)o->telemetry, "--n", nlist, NULL};
    FILE *out;
    int pid = spawn_captured(argv, NULL, &out);
    if (pid < 0) {
        add_problem("pool telemetry (%s): cannot start it", o->telemetry);
        return;
    }
    int st = finish_child(pid, NULL, out);
    size_t cap = 1 << 16, len = 0;
    g_telemetry_text = xmalloc(cap);
    size_t got;
    while ((got = fread(g_telemetry_text + len, 1, cap - len - 1, out)) > 0) {
        len += got;
        if (len + 1 == cap) {
            g_telemetry_text = realloc(g_telemetry_text, cap *= 2);
            if (!g_telemetry_text)
                die("out of memory");
        }
    }
    g_telemetry_text[len] = 0;
    fclose(out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        add_problem("pool telemetry (%s) failed%s", o->telemetry,
                    WIFSIGNALED(st) ? ": crashed" : "");
}

void print_telemetry(void)
{
    if (g_telemetry_text)
        fputs(g_telemetry_text, stdout);
}

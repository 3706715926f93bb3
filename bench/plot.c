/*
 * plot.c - the pictures (gnuplot, pngcairo): one per key kind, one panel
 * per op with results (median ns against N, log-log, a line per library),
 * each group of panels starting a row (op_groups in ops.c), and a memory
 * panel (bytes per entry after insert against N) closing the map group.
 * A group's baseline (the persistent group's: absl copying its table, then
 * updating the copy) is drawn dashed in each of its panels.  gnuplot's own
 * messages are captured and printed with the notes at the end.
 */
#include "bench.h"

#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define NCOLS 3
#define NEW_ROW (-1)
#define MEMORY_PANEL(op) (-2 - (op)) /* bytes per entry after op */
#define MEMORY_OP(p) (-2 - (p))

static const char *const colors[NLIBS] = {"#d62728", "#e377c2", "#ff7f0e", "#1f77b4",
                                          "#9467bd", "#2ca02c", "#8c564b", "#7f7f7f"};

static bool op_has_data(int k, int op)
{
    for (int l = 0; l < NLIBS; l++)
        if (lib_has_op(k, l, op))
            return true;
    return false;
}

/* One line of a panel: a library's median ns for an op, or its bytes per
 * entry (live, or reserved) after the op. */
enum { LINE_NS, LINE_BYTES, LINE_RESERVED, LINE_RSS };
typedef struct line {
    int lib, op, what;
    bool dashed;
    const char *title;
} line;

/* Writes the line's points (g NULL: only says whether it has any). */
static bool line_data(FILE *g, int k, const line *ln)
{
    bool any = false;
    for (int si = 0; si < g_scales[k].nn; si++) {
        const cell *c = &g_cell[k][si][ln->lib][ln->op];
        double v = ln->what == LINE_NS ? cell_median(c)
                   : ln->what == LINE_BYTES ? c->bpe
                   : ln->what == LINE_RSS ? c->rss_bpe : c->reserved_bpe;
        if (!cell_ok(c) || !(v >= 0))
            continue;
        any = true;
        if (g)
            fprintf(g, "%zu %g\n", g_scales[k].n[si], v);
    }
    if (g)
        fprintf(g, "e\n");
    return any;
}

/* The lines are drawn last to first, so the first (champ) lie on top; the
 * key is inverted to list them first to last. */
static void plot_lines(FILE *g, int k, const line *lines, int nl)
{
    fprintf(g, "set key invert\nplot ");
    for (int i = nl - 1; i >= 0; i--) {
        const line *ln = &lines[i];
        fprintf(g, "'-' using 1:2 with linespoints lw 2 dt %d pt %d ps 0.6 lc rgb '%s' "
                   "title '%s' noenhanced%s", ln->dashed ? 2 : 1, ln->dashed ? 6 : 7,
                colors[ln->lib], ln->title, i ? ", " : "\n");
    }
    for (int i = nl - 1; i >= 0; i--)
        line_data(g, k, &lines[i]);
}

/* Bytes per entry after op (insert, set_insert), every library; champ's
 * reserved bytes dashed beside its live bytes (the others' heap growth
 * includes what their allocator holds).  small_maps: bytes per map, each
 * library's RSS growth dashed beside. */
static int memory_lines(int k, int op, line *lines)
{
    static char rss_title[NLIBS][64];
    bool per_call = op_table[op].flags & OPF_PER_CALL;
    int nl = 0;
    for (int l = 0; l < NLIBS; l++) {
        line ln = {l, op, LINE_BYTES, false, libs()[l].name};
        if (line_data(NULL, k, &ln))
            lines[nl++] = ln;
        if (per_call) {
            snprintf(rss_title[l], sizeof rss_title[l], "%s RSS", libs()[l].name);
            ln = (line){l, op, LINE_RSS, true, rss_title[l]};
            if (line_data(NULL, k, &ln))
                lines[nl++] = ln;
            continue;
        }
        ln = (line){l, op, LINE_RESERVED, true, "champ reserved"};
        if (l == L_CHAMP && line_data(NULL, k, &ln))
            lines[nl++] = ln;
    }
    return nl;
}

static void memory_panel(FILE *g, int k, int op)
{
    line lines[2 * NLIBS];
    int nl = memory_lines(k, op, lines);
    double top = 0; /* room above the lines for the key */
    for (int si = 0; si < g_scales[k].nn; si++)
        for (int l = 0; l < NLIBS; l++) {
            const cell *c = &g_cell[k][si][l][op];
            if (cell_ok(c) && c->bpe > top)
                top = c->bpe;
            if (cell_ok(c) && (op_table[op].flags & OPF_PER_CALL) && c->rss_bpe > top)
                top = c->rss_bpe;
        }
    fprintf(g, "set title 'memory %s' noenhanced\n"
               "set ylabel 'bytes per %s'\nunset logscale y\nset yrange [0:%g]\n"
               "set format y '%%g'\nset key top %s\n", op_table[op].memory,
            (op_table[op].flags & OPF_PER_CALL) ? "map" : "entry", top * 1.6 + 1,
            (op_table[op].flags & OPF_PER_CALL) ? "left" : "right");
    plot_lines(g, k, lines, nl);
    fprintf(g, "set logscale y\nset autoscale y\nset format y '%%.0s%%c'\nset key top left\n");
}

/* Every library with the op; the group's baseline, dashed, last. */
static void op_panel(FILE *g, int k, int op)
{
    const op_group *gr = &op_groups[op_table[op].group];
    bool base = gr->base_lib >= 0 && lib_has_op(k, gr->base_lib, gr->base_op);
    line lines[NLIBS + 1];
    int nl = 0;
    for (int l = 0; l < NLIBS; l++)
        if (lib_has_op(k, l, op) && !(base && l == gr->base_lib && op == gr->base_op))
            lines[nl++] = (line){l, op, LINE_NS, false, libs()[l].name};
    if (base)
        lines[nl++] = (line){gr->base_lib, gr->base_op, LINE_NS, true, gr->base_title};
    fprintf(g, "set title '%s' noenhanced\nset ylabel '%s'\n", op_table[op].name,
            op_table[op].unit);
    plot_lines(g, k, lines, nl);
}

/* The panels in order; NEW_ROW ends a group. */
static int panels(int k, int *p)
{
    int np = 0;
    for (int g = 0; g < NGROUPS; g++) {
        int start = np;
        for (int op = 0; op < OP_COUNT; op++)
            if (op_table[op].group == g && op_has_data(k, op))
                p[np++] = op;
        line lines[2 * NLIBS];
        int mop = op_groups[g].memory_op;
        if (mop >= 0 && memory_lines(k, mop, lines) > 0)
            p[np++] = MEMORY_PANEL(mop);
        if (np > start)
            p[np++] = NEW_ROW;
    }
    return np;
}

static void plot_kind(int k, const char *png)
{
    int p[OP_COUNT + 2 * NGROUPS + 2];
    int np = panels(k, p);
    if (!np)
        return;
    int rows = 0, col = 0;
    for (int i = 0; i < np; i++) {
        if (p[i] == NEW_ROW) {
            if (col)
                rows++;
            col = 0;
        } else if (++col == NCOLS) {
            rows++;
            col = 0;
        }
    }
    char *argv[] = {"gnuplot", NULL};
    FILE *g, *out;
    int pid = spawn_captured(argv, &g, &out);
    if (pid < 0 || !g) {
        add_note("no picture %s: cannot run gnuplot", png);
        return;
    }
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d", localtime(&now));
    fprintf(g, "set terminal pngcairo size %d,%d font ',9'\n", 520 * NCOLS, 400 * rows + 40);
    fprintf(g, "set output '%s'\n", png);
    fprintf(g, "set multiplot layout %d,%d title 'champ bench, %s keys: median of the rounds "
               "against N, %s, %s' noenhanced\n", rows, NCOLS, kk_name[k], date, cpu_name());
    /* the scales with results; small_maps (N = entries per map, from 0)
     * has panels of its own with a linear x axis */
    size_t nlo = 0, nhi = 0, slo = SIZE_MAX, shi = 0;
    for (int si = 0; si < g_scales[k].nn; si++)
        for (int l = 0; l < NLIBS; l++)
            for (int op = 0; op < OP_COUNT; op++) {
                if (!cell_ok(&g_cell[k][si][l][op]))
                    continue;
                size_t n = g_scales[k].n[si];
                if (op_table[op].flags & OPF_PER_CALL) {
                    slo = n < slo ? n : slo;
                    shi = n > shi ? n : shi;
                    continue;
                }
                nlo = nlo ? nlo : n;
                nhi = n;
            }
    char logx[256];
    snprintf(logx, sizeof logx, "set logscale x\nset format x '10^{%%L}'\nset xlabel 'N'\n"
             "set xrange [%g:%g]\n", nhi ? (double)nlo / 1.6 : 1, nhi ? (double)nhi * 1.6 : 10);
    fprintf(g, "set logscale xy\nset grid\nset key top left font ',8'\n"
               "set format y '%%.0s%%c'\n%s", logx);
    col = 0;
    for (int i = 0; i < np; i++) {
        if (p[i] == NEW_ROW) {
            for (; col && col < NCOLS; col++)
                fprintf(g, "set multiplot next\n");
            col = 0;
            continue;
        }
        int pop = p[i] < NEW_ROW ? MEMORY_OP(p[i]) : p[i];
        bool linear = op_table[pop].flags & OPF_PER_CALL;
        if (linear)
            fprintf(g, "unset logscale x\nset format x '%%g'\nset xlabel 'entries per map'\n"
                       "set xrange [%g:%g]\n%s", (double)slo - 0.5, (double)shi + 0.5,
                    shi <= 16 ? "set xtics 1\n" : "");
        if (p[i] < NEW_ROW)
            memory_panel(g, k, pop);
        else
            op_panel(g, k, pop);
        if (linear)
            fprintf(g, "set xtics autofreq\n%s", logx);
        col = (col + 1) % NCOLS;
    }
    fprintf(g, "unset multiplot\n");
    int st = finish_child(pid, g, out);
    char line[512];
    while (fgets(line, sizeof line, out)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0])
            add_note("gnuplot: %s", line);
    }
    fclose(out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        add_note("gnuplot failed for %s", png);
    else
        add_written(png);
}

void plot(const options *o)
{
    if (!o->png || !*o->png)
        return;
    if (!have_program("gnuplot")) {
        add_note("no picture: gnuplot not found (Debian package gnuplot-nox)");
        return;
    }
    /* the main picture is for u64 keys; other key kinds get FILE-KIND.png */
    for (int k = 0; k < NKK; k++) {
        if (!(o->kinds & (1u << k)) || !g_scales[k].nn)
            continue;
        char path[4096];
        if (k == KK_U64) {
            snprintf(path, sizeof path, "%s", o->png);
        } else {
            const char *dot = strrchr(o->png, '.');
            int base = dot ? (int)(dot - o->png) : (int)strlen(o->png);
            snprintf(path, sizeof path, "%.*s-%s%s", base, o->png, kk_name[k], dot ? dot : "");
        }
        plot_kind(k, path);
    }
}

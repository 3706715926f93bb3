/*
 * results.c - the samples of every (key kind, N, library, op) cell, their
 * median and minimum, the problems (failed checks, crashes: exit status 1)
 * and notes (anything worth saying that is not a result), and the CSV.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

cell g_cell[NKK][MAXN][NLIBS][OP_COUNT];
scale_set g_scales[NKK];

#define MAXMSG 256
typedef struct msg_list {
    char text[MAXMSG][700];
    int n;
} msg_list;
static msg_list g_problems, g_notes, g_written;

static void add_msg(msg_list *l, const char *fmt, va_list ap)
{
    char buf[700];
    vsnprintf(buf, sizeof buf, fmt, ap);
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->text[i], buf))
            return;
    if (l->n < MAXMSG)
        memcpy(l->text[l->n++], buf, sizeof buf);
}

static void add_text(msg_list *l, const char *text)
{
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->text[i], text))
            return;
    if (l->n < MAXMSG)
        snprintf(l->text[l->n++], sizeof l->text[0], "%s", text);
}

void add_problem(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_msg(&g_problems, fmt, ap);
    va_end(ap);
}

void add_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_msg(&g_notes, fmt, ap);
    va_end(ap);
}

void add_written(const char *path)
{
    add_text(&g_written, path);
}

int problem_count(void)
{
    return g_problems.n;
}

void print_notes_and_problems(void)
{
    if (g_written.n) {
        printf("\nwrote");
        for (int i = 0; i < g_written.n; i++)
            printf("%s %s", i ? "," : "", g_written.text[i]);
        putchar('\n');
    }
    if (g_notes.n) {
        printf("\nnotes:\n");
        for (int i = 0; i < g_notes.n; i++)
            printf("  %s\n", g_notes.text[i]);
    }
    if (g_problems.n) {
        printf("\nproblems (results that failed their checks are left out of the tables, "
               "the CSV and the picture):\n");
        for (int i = 0; i < g_problems.n; i++)
            printf("  %s\n", g_problems.text[i]);
        printf("reproduce one job: bench/build/bench --libs LIB --keys KEYS --n N --rounds 1\n");
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cell_median(const cell *c)
{
    if (!c->count)
        return NAN;
    double v[MAXROUNDS];
    memcpy(v, c->ns, (size_t)c->count * sizeof *v);
    qsort(v, (size_t)c->count, sizeof *v, cmp_double);
    return c->count % 2 ? v[c->count / 2] : (v[c->count / 2 - 1] + v[c->count / 2]) / 2;
}

double cell_min(const cell *c)
{
    double m = NAN;
    for (int i = 0; i < c->count; i++)
        if (!(c->ns[i] >= m))
            m = c->ns[i];
    return m;
}

bool cell_ok(const cell *c)
{
    return c->count > 0 && !c->bad;
}

int scale_index(int kind, size_t n)
{
    for (int i = 0; i < g_scales[kind].nn; i++)
        if (g_scales[kind].n[i] == n)
            return i;
    return -1;
}

double med(int kind, int lib, int op, size_t n)
{
    int si = scale_index(kind, n);
    if (si < 0)
        return NAN;
    const cell *c = &g_cell[kind][si][lib][op];
    return c->bad ? NAN : cell_median(c);
}

bool lib_has_op(int kind, int lib, int op)
{
    for (int si = 0; si < g_scales[kind].nn; si++)
        if (cell_ok(&g_cell[kind][si][lib][op]))
            return true;
    return false;
}

int write_csv(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        add_note("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    const lib_entry *L = libs();
    fprintf(f, "library,keys,op,n,ns_per_op,bytes_per_entry,repeats,unit,"
               "reserved_bytes_per_entry,rss_bytes_per_entry\n");
    for (int k = 0; k < NKK; k++)
        for (int op = 0; op < OP_COUNT; op++)
            for (int si = 0; si < g_scales[k].nn; si++)
                for (int l = 0; l < NLIBS; l++) {
                    const cell *c = &g_cell[k][si][l][op];
                    if (!cell_ok(c))
                        continue;
                    fprintf(f, "%s,%s,%s,%zu,%.2f,", L[l].name, kk_name[k], op_table[op].name,
                            g_scales[k].n[si], cell_median(c));
                    if (c->bpe >= 0)
                        fprintf(f, "%.1f", c->bpe);
                    fprintf(f, ",%d,%s,", c->count, op_table[op].unit);
                    if (c->reserved_bpe >= 0)
                        fprintf(f, "%.1f", c->reserved_bpe);
                    fputc(',', f);
                    if (c->rss_bpe >= 0 && (op_table[op].flags & OPF_PER_CALL))
                        fprintf(f, "%.1f", c->rss_bpe);
                    fputc('\n', f);
                }
    machine_csv(f);
    if (fclose(f) != 0) {
        add_note("cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    add_written(path);
    return 0;
}

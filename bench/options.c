/*
 * options.c - the command line (bench/README.md, "Command line").
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

size_t parse_size(const char *s, const char **end)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || errno)
        die("bad number '%s'", s);
    if (*e == 'k' || *e == 'K')
        v *= 1e3, e++;
    else if (*e == 'm' || *e == 'M')
        v *= 1e6, e++;
    if (v < 0 || v > 4e9) /* 0: small_maps' empty maps */
        die("N out of range: %s", s);
    *end = e;
    return (size_t)(v + 0.5);
}

static void usage(FILE *f)
{
    fputs("usage: bench [--quick] [--n N,N,..] [--libs a,b] [--keys u64,str,words]\n"
          "             [--ops insert,query,..] [--rounds K] [--csv FILE] [--png FILE]\n"
          "             [--no-budget] [--timeout S]\n"
          "       bench --profile LIB:KEYS:OP:N:SECONDS   (one op, repeated, for perf)\n"
          "       bench --callgrind LIB:KEYS:OP:N          (one op once, for callgrind)\n"
          "N accepts suffixes K and M: --n 10K,1M (small_maps: N is the entries per\n"
          "map, by default 0,1,3,8; other ops need N >= 1)\nlibs:", f);
    for (int l = 0; l < NLIBS; l++)
        fprintf(f, " %s", libs()[l].name);
    fputs("\nops (unit: what the timed call does):\n", f);
    for (int o = 0; o < OP_COUNT; o++)
        fprintf(f, "  %-16s %-14s %s\n", op_table[o].name, op_table[o].unit, op_table[o].what);
}

typedef int (*find_fn)(const char *name, size_t len);

static int find_kind(const char *name, size_t len)
{
    for (int i = 0; i < NKK; i++)
        if (strlen(kk_name[i]) == len && strncmp(kk_name[i], name, len) == 0)
            return i;
    return -1;
}

static opmask parse_list(const char *arg, find_fn find, const char *what)
{
    opmask mask = 0;
    const char *s = arg;
    while (*s) {
        size_t len = strcspn(s, ",");
        int i = find(s, len);
        if (i < 0)
            die("unknown %s '%.*s' (bench --help lists them)", what, (int)len, s);
        mask |= OPBIT(i);
        s += len;
        if (*s == ',')
            s++;
    }
    return mask;
}

void options_parse(options *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->libs = (1u << NLIBS) - 1;
    o->kinds = (1u << NKK) - 1;
    o->ops = OPBIT(OP_COUNT) - 1;
    o->rounds = -1;
    o->budget = true;
    o->csv = "bench/results/latest.csv";
    o->timeout = 1200;
    bool png_given = false, n_given = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(a, "--quick") && strcmp(a, "--no-budget") && strcmp(a, "--help") &&
                     strcmp(a, "-h");
        if (takes) {
            if (!v)
                die("%s needs a value", a);
            i++;
        }
        if (!strcmp(a, "--quick")) {
            o->quick = true;
        } else if (!strcmp(a, "--no-budget")) {
            o->budget = false;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--n")) {
            const char *s = v;
            while (*s) {
                if (o->nn == MAXN)
                    die("too many N");
                const char *e;
                o->n[o->nn++] = parse_size(s, &e);
                if (*e && *e != ',')
                    die("bad --n list '%s'", v);
                s = *e ? e + 1 : e;
            }
            n_given = true;
            o->n_given = true;
        } else if (!strcmp(a, "--libs")) {
            o->libs = (unsigned)parse_list(v, lib_find, "library");
        } else if (!strcmp(a, "--keys")) {
            o->kinds = (unsigned)parse_list(v, find_kind, "key kind");
        } else if (!strcmp(a, "--ops")) {
            o->ops = o->ops_asked = parse_list(v, op_find, "op");
        } else if (!strcmp(a, "--rounds")) {
            o->rounds = atoi(v);
            if (o->rounds < 1 || o->rounds > MAXROUNDS)
                die("--rounds must be 1..%d", MAXROUNDS);
        } else if (!strcmp(a, "--csv")) {
            o->csv = v;
        } else if (!strcmp(a, "--png")) {
            o->png = v;
            png_given = true;
        } else if (!strcmp(a, "--telemetry")) {
            o->telemetry = v;
        } else if (!strcmp(a, "--callgrind-csv")) {
            o->callgrind_csv = v;
        } else if (!strcmp(a, "--timeout")) {
            o->timeout = atof(v);
        } else if (!strcmp(a, "--profile")) {
            o->profile = v;
        } else if (!strcmp(a, "--callgrind")) {
            o->callgrind = v;
        } else {
            usage(stderr);
            die("unknown argument '%s'", a);
        }
    }
    if (!n_given) {
        static const size_t def[] = {1000, 10000, 50000, 100000, 1000000, 10000000};
        static const size_t quick[] = {1000, 10000, 100000, 1000000};
        const size_t *d = o->quick ? quick : def;
        o->nn = o->quick ? 4 : 6;
        memcpy(o->n, d, (size_t)o->nn * sizeof *d);
    }
    if (o->rounds < 0)
        o->rounds = o->quick ? 3 : 5;
    o->rounds_big = o->rounds < 3 || !o->budget ? o->rounds : 3;
    o->min_ops = o->quick ? 20000 : 100000;
    o->whole_ns = o->quick ? WHOLE_BUDGET_QUICK_NS : WHOLE_BUDGET_NS;
    if (!png_given && !*o->csv) {
        o->png = "";
    } else if (!png_given) {
        /* the picture goes beside the CSV */
        static char png[4096];
        const char *dot = strrchr(o->csv, '.');
        int base = dot && !strchr(dot, '/') ? (int)(dot - o->csv) : (int)strlen(o->csv);
        snprintf(png, sizeof png, "%.*s.png", base, o->csv);
        o->png = png;
    }
}

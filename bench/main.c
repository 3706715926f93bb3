/*
 * main.c - champ's benchmark driver (bench/README.md): options, scales, the
 * plan, the keys, the rounds, then the report.  Everything the run prints
 * on stdout comes after the last job and child process has finished, so
 * nothing another process writes can land inside a table.
 */
#include "bench.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* Whether a library of the run has op for key kind k. */
static bool kind_has_op(const options *o, int k, int op)
{
    const lib_entry *L = libs();
    for (int l = 0; l < NLIBS; l++)
        if ((o->libs & (1u << l)) && L[l].ad && lib_ops(L[l].ad, k, OPBIT(op)))
            return true;
    return false;
}

/* The scales of each key kind: the N asked for, ascending, without
 * duplicates; words capped at the word list's length.  Without --n, the
 * own N of the OPF_PER_CALL ops of the run (small_maps: entries per map)
 * are added, marked as theirs alone. */
static void make_scales(options *o)
{
    for (int k = 0; k < NKK; k++) {
        if (!(o->kinds & (1u << k)))
            continue;
        size_t cap = SIZE_MAX;
        if (k == KK_WORDS) {
            keyset_make(KK_WORDS, 1);
            cap = g_ks[KK_WORDS].nmax;
            if (!cap) {
                o->words_missing = true;
                o->kinds &= ~(1u << k);
                continue;
            }
        }
        scale_set *ss = &g_scales[k];
        for (int i = 0; i < o->nn; i++) {
            size_t n = o->n[i] < cap ? o->n[i] : cap;
            bool dup = false;
            for (int j = 0; j < ss->nn; j++)
                dup |= ss->n[j] == n;
            if (!dup)
                ss->n[ss->nn++] = n;
        }
        for (int op = 0; op < OP_COUNT && !o->n_given; op++) {
            const size_t *own;
            int nown = op_own_n(op, &own);
            if (!nown || !(o->ops & OPBIT(op)) || !kind_has_op(o, k, op))
                continue;
            for (int i = 0; i < nown; i++) {
                bool dup = false;
                for (int j = 0; j < ss->nn; j++)
                    dup |= ss->n[j] == own[i];
                if (dup)
                    continue;
                if (ss->nn == MAXN)
                    die("too many N");
                ss->own[ss->nn] = true;
                ss->n[ss->nn++] = own[i];
            }
        }
        for (int i = 1; i < ss->nn; i++)
            for (int j = i; j > 0 && ss->n[j - 1] > ss->n[j]; j--) {
                size_t t = ss->n[j];
                bool ow = ss->own[j];
                ss->n[j] = ss->n[j - 1];
                ss->own[j] = ss->own[j - 1];
                ss->n[j - 1] = t;
                ss->own[j - 1] = ow;
            }
    }
}

static void csv_out(const options *o)
{
    if (!o->csv || !*o->csv)
        return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", o->csv);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        mkdir(dir, 0777);
    }
    write_csv(o->csv);
}

int main(int argc, char **argv)
{
    options o;
    options_parse(&o, argc, argv);
    g_whole_ns = o.whole_ns;
    g_quick = o.quick;
    if (o.profile)
        return run_one(o.profile, true);
    if (o.callgrind)
        return run_one(o.callgrind, false);

    /* shared page: which op a job is in, for crash reports */
    g_shared = mmap(NULL, sizeof *g_shared, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_shared == MAP_FAILED)
        die("mmap: %s", strerror(errno));

    make_scales(&o);
    plan(&o);
    print_header(&o);
    if (!plan_jobs())
        die("nothing to run (check --libs, --keys, --ops)");

    /* every key set up front: generation is not part of any job */
    for (int k = 0; k < NKK; k++)
        if (o.kinds & (1u << k) && g_scales[k].nn) {
            keyset_make(k, g_scales[k].n[g_scales[k].nn - 1]);
            for (int i = 0; i < g_scales[k].nn; i++)
                keyset_query(&g_ks[k], g_scales[k].n[i]);
        }

    machine_probe(false);
    run_all(&o);
    machine_probe(true);
    run_telemetry(&o);
    csv_out(&o);
    plot(&o);

    print_tables();
    print_telemetry();
    machine_print();
    print_targets(&o);
    print_notes_and_problems();
    return problem_count() ? 1 : 0;
}

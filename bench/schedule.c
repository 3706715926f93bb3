/*
 * schedule.c - which jobs run, in which order, each in a fresh process.
 *
 * A job is one (key kind, N, library) with the ops it runs.  Rounds are
 * the outer loop: each round runs every job once; the libraries of one
 * (key kind, N) run back to back, starting with a different library each
 * round, so all of them sample the same stretch of the machine's fast and
 * slow states.  Each job is forked from this process (which holds the keys,
 * generated before any job), so no library runs in a heap another one has
 * fragmented, and a crash is caught and reported with the op it was in.
 * The tables report the median over rounds.
 */
#include "bench.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct plan_job {
    int kind, si, lib;
    size_t n;
    opmask ops;
    int rounds;
    double last_s; /* duration of the last run, for the ETA */
} plan_job;

static plan_job g_jobs[NKK * MAXN * NLIBS];
static int g_njobs;

int plan_jobs(void)
{
    return g_njobs;
}

/* The budget (off with --no-budget): at N >= BIG_N u64 keys only and
 * rounds_big rounds; --quick: string keys only up to QUICK_STR_MAX, and a
 * library with budget_ops only those, not above its budget_max_n; each op
 * not above its max_n
 * (max_n_quick with --quick) from the op table.  Not budget: an op runs
 * only at the N op_runs_at allows (small_maps at its own N, the other ops
 * at N >= 1 of the --n or default scales). */
void plan(const options *o)
{
    const lib_entry *L = libs();
    for (int k = 0; k < NKK; k++) {
        if (!(o->kinds & (1u << k)))
            continue;
        for (int si = 0; si < g_scales[k].nn; si++) {
            size_t n = g_scales[k].n[si];
            bool big = n >= BIG_N && o->budget;
            if (big && k != KK_U64)
                continue;
            if (o->quick && o->budget && k != KK_U64 && n > QUICK_STR_MAX)
                continue;
            for (int l = 0; l < NLIBS; l++) {
                if (!(o->libs & (1u << l)) || !L[l].ad)
                    continue;
                opmask ops = lib_ops(L[l].ad, k, o->ops);
                if (o->budget && L[l].budget_ops)
                    ops &= L[l].budget_ops;
                if (o->budget && L[l].budget_max_n && n > L[l].budget_max_n)
                    ops = 0;
                for (int op = 0; op < OP_COUNT; op++)
                    if (!op_runs_at(op, n, g_scales[k].own[si], o->n_given))
                        ops &= ~OPBIT(op);
                for (int op = 0; op < OP_COUNT && o->budget; op++) {
                    size_t max = op_max_n(op, o->quick);
                    if (max && n > max)
                        ops &= ~OPBIT(op);
                }
                if (!ops)
                    continue;
                plan_job *j = &g_jobs[g_njobs++];
                j->kind = k;
                j->si = si;
                j->lib = l;
                j->n = n;
                j->ops = ops;
                j->rounds = big ? o->rounds_big : o->rounds;
                j->last_s = -1;
                for (int op = 0; op < OP_COUNT; op++)
                    if (ops & OPBIT(op))
                        g_cell[k][si][l][op].planned = true;
            }
        }
    }
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0)
            _exit(3);
        p += w;
        len -= (size_t)w;
    }
}

/* Runs one job in a fresh process; false if it crashed or timed out. */
static bool fork_job(const options *o, const plan_job *pj, job_result *res)
{
    int fd[2];
    memset(res, 0, sizeof *res);
    if (pipe(fd) != 0)
        die("pipe: %s", strerror(errno));
    g_shared->op = -1;
    g_shared->phase = PHASE_SETUP;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fd[0]);
        alarm((unsigned)o->timeout);
        job_result r;
        memset(&r, 0, sizeof r);
        run_job(libs()[pj->lib].ad, &g_ks[pj->kind], pj->n, pj->ops, o->min_ops, &r);
        write_all(fd[1], &r, sizeof r);
        _exit(0);
    }
    close(fd[1]);
    char *p = (char *)res;
    size_t got = 0;
    while (got < sizeof *res) {
        ssize_t r = read(fd[0], p + got, sizeof *res - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got == sizeof *res && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return true;
    const char *opn = g_shared->op >= 0 ? op_table[g_shared->op].name : "no op";
    const char *ph = g_shared->op < 0 ? "(setting up or releasing maps)"
                     : g_shared->phase == PHASE_TIMED ? "inside the timed loop"
                     : g_shared->phase == PHASE_CHECK ? "while checking" : "in setup";
    char how[128];
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        snprintf(how, sizeof how, "timed out after %.0f s", o->timeout);
    else if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "crashed (%s)", strsignal(WTERMSIG(status)));
    else
        snprintf(how, sizeof how, "exited with status %d", WEXITSTATUS(status));
    snprintf(res->msg, sizeof res->msg, "%s during %s, %s", how, opn, ph);
    return false;
}

/* Files one job's result into the cells, and its failure into the problems. */
static void record(const plan_job *j, int round, bool ok, const job_result *res, bool tty)
{
    for (int op = 0; op < OP_COUNT; op++) {
        cell *c = &g_cell[j->kind][j->si][j->lib][op];
        if (res->bad & OPBIT(op))
            c->bad = true;
        if (!ok && (j->ops & OPBIT(op)) && !(res->have & OPBIT(op)))
            c->bad = true;
        if (!(res->have & OPBIT(op)) || (res->bad & OPBIT(op)))
            continue;
        if (c->count == 0) {
            c->bpe = res->bpe[op];
            c->reserved_bpe = res->reserved_bpe[op];
            c->rss_bpe = res->rss_bpe[op];
        }
        if (c->count < MAXROUNDS)
            c->ns[c->count++] = res->ns[op];
    }
    if (ok && !res->bad && !res->msg[0])
        return;
    const char *lib = libs()[j->lib].name;
    add_problem("%s, %s keys, N=%zu, round %d: %s", lib, kk_name[j->kind], j->n, round + 1,
                res->msg);
    progress("%sbench: %s, %s keys, N=%zu: %s\n", tty ? "\r\033[K" : "", lib,
             kk_name[j->kind], j->n, res->msg);
}

/* Seconds left: the later (keys, N) groups of this round and the later
 * rounds, from each job's last duration; -1 while some job never ran. */
static double eta(int round, int group_end)
{
    double s = 0;
    for (int x = 0; x < g_njobs; x++) {
        int rem = g_jobs[x].rounds - round - 1;
        if (rem < 0)
            rem = 0;
        if (x >= group_end && round < g_jobs[x].rounds)
            rem++;
        if (g_jobs[x].last_s < 0)
            return -1;
        s += rem * g_jobs[x].last_s;
    }
    return s;
}

void run_all(const options *o)
{
    const lib_entry *L = libs();
    bool tty = isatty(2);
    double t_start = now_ns();
    int max_rounds = 0, total = 0, done = 0;
    for (int i = 0; i < g_njobs; i++) {
        if (g_jobs[i].rounds > max_rounds)
            max_rounds = g_jobs[i].rounds;
        total += g_jobs[i].rounds;
    }

    for (int r = 0; r < max_rounds; r++) {
        for (int i = 0; i < g_njobs;) {
            int e = i;
            while (e < g_njobs && g_jobs[e].kind == g_jobs[i].kind && g_jobs[e].n == g_jobs[i].n)
                e++;
            int cnt = e - i;
            for (int q = 0; q < cnt; q++) {
                /* the starting library rotates each round */
                plan_job *j = &g_jobs[i + (q + r) % cnt];
                if (r >= j->rounds)
                    continue;
                char el[32], et[32], ns[32];
                fmt_time(el, sizeof el, (now_ns() - t_start) / 1e9);
                fmt_time(et, sizeof et, eta(r, e));
                fmt_n(ns, sizeof ns, j->n);
                /* on a terminal one line rewritten per job, else one line
                 * per (keys, N) group */
                if (tty)
                    progress("\r\033[K[round %d/%d] %-5s N=%-5s %-13s job %d/%d  "
                             "elapsed %s  eta %s", r + 1, max_rounds, kk_name[j->kind], ns,
                             L[j->lib].name, done + 1, total, el, et);
                else if (q == 0)
                    progress("[round %d/%d] %-5s N=%-5s jobs %d-%d of %d  elapsed %s  "
                             "eta %s\n", r + 1, max_rounds, kk_name[j->kind], ns, done + 1,
                             done + cnt, total, el, et);
                keyset_make(j->kind, j->n); /* no-op once made */
                keyset_query(&g_ks[j->kind], j->n);
                job_result res;
                double t0 = now_ns();
                bool ok = fork_job(o, j, &res);
                j->last_s = (now_ns() - t0) / 1e9;
                done++;
                record(j, r, ok, &res, tty);
            }
            i = e;
        }
    }
    char el[32];
    fmt_time(el, sizeof el, (now_ns() - t_start) / 1e9);
    progress("%sbench: %d jobs in %s\n", tty ? "\r\033[K" : "", done, el);
}

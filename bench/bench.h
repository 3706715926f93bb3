/*
 * bench.h - what the driver's files share (the adapters see adapter.h only).
 *
 *   libs.c      the libraries and their adapters
 *   ops.c       the op table: name, unit, what the timed loop counts, the
 *               state an op starts from, the result it must return, panel
 *   keys.c      key generation (fixed seeds)
 *   measure.c   one job in this process: the timed region, measure_op
 *   schedule.c  the plan and the rounds: a fresh process per job
 *   options.c   the command line
 *   results.c   medians, problems and notes, the CSV
 *   report.c    tables on stdout, the pool telemetry's text
 *   targets.c   the targets table (data) and its report
 *   plot.c      the gnuplot pictures
 *   profile.c   --profile and --callgrind: one op in this process
 *   machine.c   what the machine charges now: a page fault, a cache line
 *               handed between threads (before and after the jobs)
 *   util.c      clock, allocation, formatting
 *   main.c      the order of it all
 */
#ifndef BENCH_H
#define BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "adapter.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- limits and budget constants ---- */
#define MAXN 16               /* scales per run                              */
#define MAXROUNDS 64
#define BIG_N 5000000u        /* from this N on: u64 keys only, fewer rounds  */
#define QUICK_STR_MAX 100000u /* --quick: string keys not above this N        */
#define COPIES_MAX 20000u     /* COUNT_CAPPED ops: at most this many per call, */
#define SLOW_OP_NS 50e3       /* and when one op takes longer than this,      */
#define CALL_BUDGET_NS 25e6   /* as many as fit in this time (at least one)   */
#define WHOLE_MAX 20000u      /* COUNT_TIMED ops: at most this many per call,  */
#define WHOLE_BUDGET_NS 20e6  /* as many as fit in this time (at least one),   */
#define WHOLE_BUDGET_QUICK_NS 5e6 /* with --quick in this                      */
#define WORDS_FILE "/usr/share/dict/words"

typedef uint64_t opmask;
#define OPBIT(o) ((opmask)1 << (o))

/* ---- libraries (libs.c) ---- */
enum { L_CHAMP, L_CHAMP_MT, L_CHAMP_GENERIC, L_ABSL, L_STD, L_GLIB, L_UTHASH, L_JUDY, NLIBS };

typedef struct lib_entry {
    const char *name;
    const char *missing; /* what brings it when it was not built */
    const bench_adapter *ad;
    /* the budget (off with --no-budget), in full and --quick runs alike */
    opmask budget_ops;   /* only these ops (0: every op it has)  */
    size_t budget_max_n; /* not above this N (0: no limit)        */
} lib_entry;

const lib_entry *libs(void);
int lib_find(const char *name, size_t len);

/* ---- key kinds and key sets (keys.c) ---- */
enum { KK_U64, KK_STR, KK_WORDS, NKK };
extern const char *const kk_name[NKK];

typedef struct keyset {
    int kind;        /* KK_* */
    size_t nmax;     /* keys available */
    uint64_t *u;     /* u64: insert keys, nmax */
    uint64_t *um;    /* u64: absent keys, nmax */
    bench_str *s;    /* strings: insert keys */
    bench_str *sq;   /* the same strings, copied elsewhere (queries use them) */
    bench_str *sm;   /* absent strings */
    size_t qn[MAXN];
    void *q[MAXN];   /* per N: the N keys shuffled (query, remove order) */
    int nq;
} keyset;

extern keyset g_ks[NKK];
void keyset_make(int kind, size_t nmax);
const void *keyset_query(keyset *ks, size_t n);
const void *keyset_insert(const keyset *ks);
const void *keyset_miss(const keyset *ks);

static inline int bench_kind(int kk)
{
    return kk == KK_U64 ? BK_U64 : BK_STR;
}

/* ---- the op table (ops.c) ---- */

/* Which keys the timed call gets. */
enum op_keys { KEYS_NONE, KEYS_INSERT, KEYS_QUERY, KEYS_MISS };

/* The loop count n of the timed call. */
enum op_count {
    COUNT_N,      /* N                                                        */
    COUNT_CAPPED, /* min(N, COPIES_MAX), and no more calls than fit in about
                     CALL_BUDGET_NS (at least one): for ops whose cost grows
                     with N in some libraries (copying a hash table)         */
    COUNT_TIMED,  /* whole-map ops: as many as fit in about WHOLE_BUDGET_NS
                     (--quick: WHOLE_BUDGET_QUICK_NS) after one untimed
                     trial, at least one, at most WHOLE_MAX; measured in a
                     job's first rep only (the reps exist to time enough
                     keys of the per-key ops)                                */
    COUNT_FIXED,  /* op_info.fixed (--quick: fixed_quick), whatever N is: loop
                     iterations of all threads, maps made; measured in a
                     job's first rep only, as COUNT_TIMED                    */
};

/* What the timed call must return. */
enum op_expect {
    EXPECT_COUNT, /* the loop count: every insert, remove, update succeeded */
    EXPECT_SUM,   /* N (N + 1) / 2: every value seen once                  */
    EXPECT_ZERO,  /* nothing found                                          */
    EXPECT_SUM_INC, /* N (N + 1) / 2 + N: every value seen once, one more
                       than inserted (an increment of each)                 */
};

/* States of the map a job's op works on: an op starts from ST_FRESH (a new,
 * empty map) or from the state another op leaves, named by that op's id
 * (OP_INSERT: the map holding the N keys).  `to` is ST_SAME (unchanged),
 * the op's own id (it leaves what it makes) or ST_USED (nothing another op
 * can start from: emptied, versions kept, values changed). */
#define ST_FRESH (-1)
#define ST_SAME (-2)
#define ST_USED (-3)

enum { SIZE_ANY, SIZE_N, SIZE_ZERO }; /* size after the op, checked */

#define OPF_VERIFY 1u  /* afterwards the map holds the N keys, values i + 1:
                          checked by an untimed query                        */
#define OPF_MEMORY 2u  /* bytes per entry are measured after it (first rep)  */
#define OPF_SCRATCH 4u /* needs N version slots (drop_versions releases them) */
#define OPF_VERIFY_SAMPLE 8u /* afterwards a sample of the keys (the first
                               op_sample_n(N) in insert order) holds values
                               i + 1, checked by an untimed query            */
#define OPF_INC 16u    /* the values checked afterwards are one more: i + 2 */
#define OPF_PER_CALL 32u /* N is the entries per map and the op makes many maps
                            (its own N sweep, op_info.own_n; N = 0 allowed):
                            memory (OPF_MEMORY) is per loop step, the process
                            RSS growth measured beside it; finish runs timed,
                            after the memory is measured                     */

/* Panels of the picture (and the order of the tables). */
enum { G_MAP, G_SET, G_PERSIST, G_ALGEBRA, G_THREADS, G_SMALL, NGROUPS };

typedef struct op_group {
    const char *name;
    /* a baseline drawn dashed in each panel of the group: what the same
     * thing costs elsewhere (lib < 0: none) */
    int base_lib, base_op;
    const char *base_title;
    /* the op after which bytes per entry are drawn in a panel closing the
     * group's rows (-1: none) */
    int memory_op;
} op_group;

typedef struct op_info {
    const char *name;
    const char *unit;    /* of the result: ns/op, ns/entry, ns/copy+update,
                            ns/whole op */
    const char *what;    /* the timed call, in one line (usage, README)    */
    const char *result;  /* what the returned number counts (messages)     */
    const char *memory;  /* OPF_MEMORY: what the bytes are, for the table  */
    int group;           /* G_*                                            */
    int from, to;        /* states, see above                              */
    enum op_keys keys;
    enum op_count count;
    enum op_expect expect;
    int size_after;      /* SIZE_*                                         */
    unsigned flags;      /* OPF_*                                          */
    size_t max_n, max_n_quick; /* budget: not above these N (0: no limit;
                                  with --quick the lower of the two)     */
    size_t fixed, fixed_quick; /* COUNT_FIXED: the loop count            */
    /* OPF_PER_CALL: the N this op runs at when --n is not given (only
     * such ops run at those N); with --n it runs at the N given up to
     * own_max (a limit --no-budget does not lift) */
    size_t own_n[8];
    int own_nn;
    size_t own_max;
} op_info;

extern const op_info op_table[OP_COUNT];
extern const op_group op_groups[NGROUPS];
int op_find(const char *name, size_t len);
uint64_t op_expected(int op, size_t n, size_t count);
uint64_t op_verify_sum(int op, size_t n); /* OPF_VERIFY: the query sum      */
size_t op_sample_n(size_t n);              /* OPF_VERIFY_SAMPLE: keys checked */
uint64_t op_sample_sum(int op, size_t k);  /* ... and their value sum         */
size_t op_max_n(int op, bool quick); /* the budget's limit, 0: none */
int op_own_n(int op, const size_t **list); /* OPF_PER_CALL: its own N list */
bool op_runs_at(int op, size_t n, bool own_scale, bool n_given);

/* ---- options (options.c) ---- */
typedef struct options {
    bool quick;
    size_t n[MAXN];
    int nn;
    bool n_given;   /* --n given (else the default scales, plus the own N of
                       OPF_PER_CALL ops) */
    unsigned libs;  /* bit per L_* */
    unsigned kinds; /* bit per KK_* */
    bool words_missing; /* words asked for, the word list not found */
    opmask ops;     /* OPBIT per OP_* */
    opmask ops_asked; /* the ops named by --ops (0: none named) */
    int rounds;
    int rounds_big;
    bool budget;
    const char *csv;
    const char *png;
    const char *telemetry;
    const char *callgrind_csv;
    size_t min_ops;
    double whole_ns;      /* COUNT_TIMED: the time budget of one call */
    double timeout;
    const char *profile;   /* --profile LIB:KEYS:OP:N:SECONDS */
    const char *callgrind; /* --callgrind LIB:KEYS:OP:N       */
} options;

void options_parse(options *o, int argc, char **argv);
size_t parse_size(const char *s, const char **end);

/* ---- one job (measure.c) ---- */
typedef struct job_result {
    opmask have;                  /* bit per op: measured               */
    opmask bad;                   /* bit per op: a check failed         */
    double ns[OP_COUNT];          /* time per counted unit              */
    double bpe[OP_COUNT];         /* bytes per entry (OPF_MEMORY), <0 = n/a */
    double reserved_bpe[OP_COUNT];
    double rss_bpe[OP_COUNT];     /* OPF_PER_CALL: RSS growth per step, <0 = n/a */
    char msg[512];                /* first failure, for the report      */
} job_result;

/* Which op a job is in, on a page shared with the parent (crash reports). */
enum { PHASE_SETUP, PHASE_TIMED, PHASE_CHECK };
typedef struct job_shared {
    volatile int op;
    volatile int phase;
} job_shared;
extern job_shared *g_shared;

extern double g_whole_ns; /* COUNT_TIMED: budget of one call (options) */
extern bool g_quick;      /* --quick (COUNT_FIXED counts) */
void run_job(const bench_adapter *ad, keyset *ks, size_t n, opmask ops,
             size_t min_ops, job_result *res);
opmask lib_ops(const bench_adapter *ad, int kind, opmask ops);
size_t op_loop_count(int op, size_t n);
/* The loop count of one timed call on st (COUNT_CAPPED: after a trial). */
size_t op_call_count(const bench_adapter *ad, int bk, int op, void *st, const void *keys,
                     size_t n);
uint64_t bench_region(bench_op_fn f, void *st, const void *keys, size_t n, void **scratch);

/* ---- the plan and the rounds (schedule.c) ---- */
void plan(const options *o);
int plan_jobs(void);
void run_all(const options *o);

/* ---- results (results.c) ---- */
typedef struct cell {
    int count;                 /* samples */
    double ns[MAXROUNDS];
    double bpe, reserved_bpe;  /* first sample, <0 = n/a */
    double rss_bpe;            /* OPF_PER_CALL ops: RSS growth, <0 = n/a */
    bool bad;
    bool planned;
} cell;

typedef struct scale_set {
    size_t n[MAXN];
    bool own[MAXN]; /* only the own N of an OPF_PER_CALL op (not asked by --n) */
    int nn;
} scale_set;

extern cell g_cell[NKK][MAXN][NLIBS][OP_COUNT];
extern scale_set g_scales[NKK];

double cell_median(const cell *c);
double cell_min(const cell *c);
bool cell_ok(const cell *c); /* has samples and no failed check */
int scale_index(int kind, size_t n);
double med(int kind, int lib, int op, size_t n);
bool lib_has_op(int kind, int lib, int op); /* any sample, any N */
void add_problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void add_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void add_written(const char *path); /* a file this run wrote */
int problem_count(void);
void print_notes_and_problems(void);
int write_csv(const char *path);

/* ---- output (report.c, targets.c, plot.c) ---- */
void print_header(const options *o);
void print_tables(void);
void run_telemetry(const options *o);
void print_telemetry(void);
void print_targets(const options *o);
void plot(const options *o);

/* ---- the machine's state (machine.c) ---- */
typedef struct machine_state {
    double fault_us; /* per first touch of a 4 KiB page; -1: not measured */
    double line_ns;  /* per round trip of a line between two threads; -1 */
} machine_state;
void machine_probe(bool after); /* before (false) or after (true) the jobs */
bool machine_get(bool after, machine_state *out);
void machine_print(void);       /* the line printed before the targets */
void machine_csv(FILE *f);      /* its CSV rows (library "machine") */

/* ---- --profile and --callgrind (profile.c) ---- */
int run_one(const char *arg, bool profile);

/* ---- helpers (util.c) ---- */
double now_ns(void);
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void *xmalloc(size_t n);
uint64_t splitmix(uint64_t *s);
uint64_t rng_below(uint64_t *s, uint64_t n);
size_t heap_bytes(void);
size_t rss_bytes(void); /* resident set of this process */
const char *cpu_name(void);
void fmt_n(char *buf, size_t cap, size_t n);
void fmt_time(char *buf, size_t cap, double s);
bool have_program(const char *name);
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs argv with stdin from a pipe (*in, when in is not NULL) and stdout
 * and stderr into a temporary file (returned through *out, rewound by
 * finish_child); returns the pid, or -1. */
int spawn_captured(char *const argv[], FILE **in, FILE **out);
int finish_child(int pid, FILE *in, FILE *out);

#endif

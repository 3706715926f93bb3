/*
 * machine.c - what this machine charges, at the moment, for two things
 * some rows measure as much as they measure the maps:
 *
 *   page fault   touching fresh memory, one 4 KiB page at a time: insert,
 *                build, pinsert_keep and small_maps take megabytes of new
 *                memory (from glibc or from champ's pool) inside their
 *                timing;
 *   line trip    one cache line handed from one thread to another and
 *                back: what each line that threads_2 shares between its
 *                threads costs.
 *
 * On the project's VM both move with the host's state, by far more than
 * any change to the maps would (page faults 0.2-12 us, line round trips
 * 200-700 ns), so a run measures them before and after its jobs and prints
 * them beside the targets; the CSV gets them as rows of library "machine"
 * (keys "before" or "after", n the page size or the line's bytes).
 */
#include "bench.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

enum { FAULT_BYTES = 32 << 20, TRIPS = 20000 };

/* Microseconds per first touch of a 4 KiB page of a fresh mapping (kept
 * out of transparent huge pages), or -1 if the probe cannot run. */
static double fault_us(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        return -1;
    char *m = mmap(NULL, FAULT_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                   0);
    if (m == MAP_FAILED)
        return -1;
#ifdef MADV_NOHUGEPAGE
    (void)madvise(m, FAULT_BYTES, MADV_NOHUGEPAGE);
#endif
    double t0 = now_ns();
    for (size_t i = 0; i < FAULT_BYTES; i += (size_t)pg)
        ((volatile char *)m)[i] = 1;
    double us = (now_ns() - t0) / 1e3 / (double)(FAULT_BYTES / (size_t)pg);
    munmap(m, FAULT_BYTES);
    return us;
}

/* The line both threads write: each bumps it when it sees the other's
 * value.  A spinning thread yields now and then, so a probe on a loaded
 * machine ends (slowly: the figure then says so). */
static _Atomic long g_line;

static void wait_for(long v)
{
    unsigned spins = 0;
    while (atomic_load_explicit(&g_line, memory_order_acquire) != v)
        if (++spins % 4096 == 0)
            sched_yield();
}

static void *trip_other(void *arg)
{
    (void)arg;
    for (long i = 0; i < TRIPS; i++) {
        wait_for(2 * i + 1);
        atomic_store_explicit(&g_line, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

/* Nanoseconds per round trip of one cache line between two threads (two
 * transfers), or -1 if no thread could be started. */
static double trip_ns(void)
{
    pthread_t th;
    atomic_store(&g_line, 0);
    if (pthread_create(&th, NULL, trip_other, NULL) != 0)
        return -1;
    double t0 = now_ns();
    for (long i = 0; i < TRIPS; i++) {
        atomic_store_explicit(&g_line, 2 * i + 1, memory_order_release);
        wait_for(2 * i + 2);
    }
    double ns = (now_ns() - t0) / TRIPS;
    pthread_join(th, NULL);
    return ns;
}

static machine_state g_before, g_after;
static bool g_have_before, g_have_after;

void machine_probe(bool after)
{
    machine_state s = {fault_us(), trip_ns()};
    if (after) {
        g_after = s;
        g_have_after = true;
    } else {
        g_before = s;
        g_have_before = true;
    }
}

bool machine_get(bool after, machine_state *out)
{
    if (after ? !g_have_after : !g_have_before)
        return false;
    *out = after ? g_after : g_before;
    return true;
}

static void fmt_probe(char *buf, size_t cap, double v, const char *unit, int prec)
{
    if (v < 0)
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.*f %s", prec, v, unit);
}

void machine_print(void)
{
    machine_state b, a;
    bool hb = machine_get(false, &b), ha = machine_get(true, &a);
    if (!hb && !ha)
        return;
    char fb[32] = "-", fa[32] = "-", lb[32] = "-", la[32] = "-";
    if (hb) {
        fmt_probe(fb, sizeof fb, b.fault_us, "us", 2);
        fmt_probe(lb, sizeof lb, b.line_ns, "ns", 0);
    }
    if (ha) {
        fmt_probe(fa, sizeof fa, a.fault_us, "us", 2);
        fmt_probe(la, sizeof la, a.line_ns, "ns", 0);
    }
    printf("\nmachine, before / after the jobs (bench/machine.c): a 4 KiB page fault %s / %s; "
           "a cache line's round trip between two threads %s / %s\n",
           fb, fa, lb, la);
}

void machine_csv(FILE *f)
{
    long pg = sysconf(_SC_PAGESIZE);
    for (int w = 0; w < 2; w++) {
        machine_state s;
        if (!machine_get(w == 1, &s))
            continue;
        const char *when = w ? "after" : "before";
        if (s.fault_us >= 0)
            fprintf(f, "machine,%s,page_fault,%ld,%.2f,,1,ns/fault,,\n", when,
                    pg > 0 ? pg : 4096L, s.fault_us * 1e3);
        if (s.line_ns >= 0)
            fprintf(f, "machine,%s,line_round_trip,64,%.2f,,1,ns/round trip,,\n", when,
                    s.line_ns);
    }
}

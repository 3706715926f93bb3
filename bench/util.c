/*
 * util.c - the driver's small helpers: clock, allocation, random numbers,
 * formatting, and running a child process with its output captured (so
 * nothing a child prints lands inside the tables).
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

void die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* A line on stderr (progress, a job's failure as it happens), with stdout
 * flushed first so the two streams never interleave mid-line. */
void progress(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return splitmix(s) % n; /* bias below 2^-40 for the n used here */
}

size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* The resident set (second field of /proc/self/statm, in pages); 0 when
 * it cannot be read. */
size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

const char *cpu_name(void)
{
    static char name[128];
    if (name[0])
        return name;
    snprintf(name, sizeof name, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (c && strncmp(line, "model name", 10) == 0) {
            c++;
            while (*c == ' ' || *c == '\t')
                c++;
            c[strcspn(c, "\n")] = 0;
            snprintf(name, sizeof name, "%s", c);
            break;
        }
    }
    if (f)
        fclose(f);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t len = strlen(name);
    snprintf(name + len, sizeof name - len, ", %ld CPUs", cpus);
    return name;
}

void fmt_n(char *buf, size_t cap, size_t n)
{
    if (n >= 1000000 && n % 1000000 == 0)
        snprintf(buf, cap, "%zuM", n / 1000000);
    else if (n >= 1000 && n % 1000 == 0)
        snprintf(buf, cap, "%zuK", n / 1000);
    else
        snprintf(buf, cap, "%zu", n);
}

void fmt_time(char *buf, size_t cap, double s)
{
    if (s < 0)
        snprintf(buf, cap, "?");
    else
        snprintf(buf, cap, "%d:%02d", (int)(s / 60), (int)s % 60);
}

bool have_program(const char *name)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *d = strtok(buf, ":"); d; d = strtok(NULL, ":")) {
        char f[4200];
        snprintf(f, sizeof f, "%s/%s", d, name);
        if (access(f, X_OK) == 0)
            return true;
    }
    return false;
}

int spawn_captured(char *const argv[], FILE **in, FILE **out)
{
    int fd[2] = {-1, -1};
    FILE *tmp = tmpfile();
    if (!tmp)
        return -1;
    if (in && pipe(fd) != 0) {
        fclose(tmp);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fclose(tmp);
        if (in) {
            close(fd[0]);
            close(fd[1]);
        }
        return -1;
    }
    if (pid == 0) {
        if (in) {
            dup2(fd[0], 0);
            close(fd[0]);
            close(fd[1]);
        }
        dup2(fileno(tmp), 1);
        dup2(fileno(tmp), 2);
        execvp(argv[0], argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (in) {
        close(fd[0]);
        *in = fdopen(fd[1], "w");
    }
    *out = tmp;
    return (int)pid;
}

int finish_child(int pid, FILE *in, FILE *out)
{
    if (in)
        fclose(in);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (out)
        rewind(out);
    return st;
}

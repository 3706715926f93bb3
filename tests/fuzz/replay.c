/*
 * replay.c - runs fuzz inputs through LLVMFuzzerTestOneInput without
 * libFuzzer: the corpus as a test suite (`make test` runs it on
 * tests/fuzz/corpus), or one crash file under a debugger.
 *
 *   replay [--no-fork] [-q] FILE|DIR...
 *
 * Each file is one check: it passes when the target returns (every check of
 * the target passed); a failed check aborts, and so does a sanitizer
 * report.  Each file runs in a child process (unless --no-fork), so one
 * failure does not hide the others.  Directories are read (not recursively)
 * in name order.  The last line is "N passed, N failed"; the exit status is
 * 0 iff nothing failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long passed, failed;
static size_t total_bytes;
static int use_fork = 1, quiet;

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        unsigned char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    *len = n;
    return buf;
}

static void run_file(const char *path) {
    size_t len = 0;
    unsigned char *data = read_file(path, &len);
    if (!data) {
        printf("FAIL %s: cannot read\n", path);
        failed++;
        return;
    }
    total_bytes += len;
    int ok;
    if (use_fork) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            ok = 0;
        } else if (pid == 0) {
            LLVMFuzzerTestOneInput(data, len);
            fflush(stdout);
            fflush(stderr);
            _exit(0);
        } else {
            int ws = 0;
            while (waitpid(pid, &ws, 0) < 0)
                ;
            ok = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
            if (!ok) {
                if (WIFSIGNALED(ws))
                    printf("FAIL %s: signal %d\n", path, WTERMSIG(ws));
                else
                    printf("FAIL %s: exit status %d\n", path, WEXITSTATUS(ws));
            }
        }
    } else {
        LLVMFuzzerTestOneInput(data, len);
        ok = 1;
    }
    if (ok && !quiet)
        printf("ok   %s (%zu bytes)\n", path, len);
    free(data);
    if (ok)
        passed++;
    else
        failed++;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("FAIL %s: no such file or directory\n", path);
        failed++;
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        run_file(path);
        return;
    }
    DIR *d = opendir(path);
    if (!d) {
        printf("FAIL %s: cannot open directory\n", path);
        failed++;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n])
            break;
        snprintf(names[n], len, "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        struct stat fs;
        if (stat(names[i], &fs) == 0 && S_ISREG(fs.st_mode))
            run_file(names[i]);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv) {
    int paths = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-fork") == 0) {
            use_fork = 0;
        } else if (strcmp(argv[i], "-q") == 0) {
            quiet = 1;
        } else {
            run_path(argv[i]);
            paths++;
        }
    }
    if (!paths) {
        fprintf(stderr, "usage: %s [--no-fork] [-q] FILE|DIR...\n", argv[0]);
        return 2;
    }
    printf("replay: %lu inputs, %zu bytes\n", passed + failed, total_bytes);
    printf("%lu passed, %lu failed\n", passed, failed);
    return failed ? 1 : 0;
}

/*
 * libs.c - the libraries the bench knows, and the adapters built here.
 * A library whose headers were not found at build time has no adapter
 * (ad == NULL) and is reported as skipped, with what would bring it.
 */
#include "bench.h"

#include <string.h>

#ifdef HAVE_CHAMP
extern const bench_adapter bench_adapter_champ, bench_adapter_champ_mt,
    bench_adapter_champ_generic;
#define AD_CHAMP &bench_adapter_champ
#define AD_CHAMP_MT &bench_adapter_champ_mt
#define AD_CHAMP_GENERIC &bench_adapter_champ_generic
#else
#define AD_CHAMP NULL
#define AD_CHAMP_MT NULL
#define AD_CHAMP_GENERIC NULL
#endif
#ifdef HAVE_ABSL
extern const bench_adapter bench_adapter_absl;
#define AD_ABSL &bench_adapter_absl
#else
#define AD_ABSL NULL
#endif
#ifdef HAVE_STD
extern const bench_adapter bench_adapter_std_unordered;
#define AD_STD &bench_adapter_std_unordered
#else
#define AD_STD NULL
#endif
#ifdef HAVE_GLIB
extern const bench_adapter bench_adapter_glib;
#define AD_GLIB &bench_adapter_glib
#else
#define AD_GLIB NULL
#endif
#ifdef HAVE_UTHASH
extern const bench_adapter bench_adapter_uthash;
#define AD_UTHASH &bench_adapter_uthash
#else
#define AD_UTHASH NULL
#endif
#ifdef HAVE_JUDY
extern const bench_adapter bench_adapter_judy;
#define AD_JUDY &bench_adapter_judy
#else
#define AD_JUDY NULL
#endif

const lib_entry *libs(void)
{
    /* Filled at run time: the C++ adapters are initialized dynamically. */
    static lib_entry t[NLIBS];
    if (t[0].name)
        return t;
    t[L_CHAMP] = (lib_entry){"champ", "build/libchamp.a (make lib)", AD_CHAMP, 0, 0};
    /* champ in a concurrent pool: within the budget only the ops its
     * targets read (and query, which every job needs for its checks, and
     * copy_update, the persistent cost of a default map), and up to the
     * largest N they read (1M); --no-budget runs all its u64 ops at every
     * N */
    t[L_CHAMP_MT] = (lib_entry){"champ_mt", "build/libchamp.a (make lib)", AD_CHAMP_MT,
                                OPBIT(OP_INSERT) | OPBIT(OP_QUERY) | OPBIT(OP_PINSERT) |
                                    OPBIT(OP_COPY_UPDATE) | OPBIT(OP_THREADS_1) |
                                    OPBIT(OP_THREADS_2),
                                1000000};
    t[L_CHAMP_GENERIC] = (lib_entry){"champ_generic", "build/libchamp.a (make lib)",
                                     AD_CHAMP_GENERIC, 0, 0};
    t[L_ABSL] = (lib_entry){"absl", "Debian package libabsl-dev (and g++)", AD_ABSL, 0, 0};
    t[L_STD] = (lib_entry){"std_unordered", "g++ (Debian package g++)", AD_STD, 0, 0};
    t[L_GLIB] = (lib_entry){"glib", "Debian package libglib2.0-dev", AD_GLIB, 0, 0};
    t[L_UTHASH] = (lib_entry){"uthash", "Debian package uthash-dev", AD_UTHASH, 0, 0};
    t[L_JUDY] = (lib_entry){"judy", "Debian package libjudy-dev", AD_JUDY, 0, 0};
    return t;
}

int lib_find(const char *name, size_t len)
{
    const lib_entry *t = libs();
    for (int i = 0; i < NLIBS; i++)
        if (strlen(t[i].name) == len && strncmp(t[i].name, name, len) == 0)
            return i;
    return -1;
}

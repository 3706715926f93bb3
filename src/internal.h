/*
 * internal.h - what every file of champ includes: build levels, the assert
 * tiers, sanitizer and valgrind annotations, then one header per job:
 *   node.h   the node layout: geometry, entries, bitmaps, sizes, key blobs
 *   pool.h   the pool's struct and its inline fast paths
 *   map.h    the map handle, its shared type, hashes, operation frames
 *   trie.h   the engine's shared pieces: entries, node builders, lookup
 *            from any node, teardown, the walker, building from slots
 * Nothing here is visible to users (everything is static inline or
 * champ__).  The design is explained at the top of champ.c.
 */
#ifndef CHAMP_INTERNAL_H
#define CHAMP_INTERNAL_H

#include "champ.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Build levels                                                        */
/*   CHAMP_DEBUG      asserts, counters, fault hooks, sanitizer and    */
/*                    valgrind annotations, fill patterns, iterator    */
/*                    modification checks.  CHAMP_DEBUG=2 also runs    */
/*                    champ_validate after every update (slow).        */
/*   CHAMP_STATS      pool allocation-source counters.                 */
/*   CHAMP_FAULTS     champ_pool_fail_after().                         */
/* ------------------------------------------------------------------ */

#ifdef CHAMP_DEBUG
#if CHAMP_DEBUG + 0 == 0
#undef CHAMP_DEBUG
#define CHAMP_DEBUG 1
#endif
#ifndef CHAMP_STATS
#define CHAMP_STATS 1
#endif
#ifndef CHAMP_FAULTS
#define CHAMP_FAULTS 1
#endif
#ifndef CHAMP_VALGRIND
#define CHAMP_VALGRIND 1
#endif
#endif

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define INTERNAL __attribute__((visibility("hidden")))
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define NOINLINE __attribute__((noinline))

#ifdef CHAMP_DEBUG
#include <stdio.h>
#include <stdlib.h>
#define CHAMP_ASSERT(c)                                                     \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "champ: assertion failed: %s (%s:%d)\n", #c,    \
                    __FILE__, __LINE__);                                    \
            abort();                                                        \
        }                                                                   \
    } while (0)
#else
#define CHAMP_ASSERT(c) ((void)0)
#endif

#ifdef CHAMP_STATS
#define STAT(x) (x)
#else
#define STAT(x) ((void)0)
#endif

/* ---- sanitizer visibility of pool blocks --------------------------- */
#if defined(__SANITIZE_ADDRESS__)
#define CHAMP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHAMP_ASAN 1
#endif
#endif
#ifdef CHAMP_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif
#if defined(CHAMP_VALGRIND) && defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define VG_NOACCESS(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define VG_UNDEFINED(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#define VG_DEFINED(p, n) VALGRIND_MAKE_MEM_DEFINED((p), (n))
#endif
#endif
#ifndef VG_NOACCESS
#define VG_NOACCESS(p, n) ((void)0)
#define VG_UNDEFINED(p, n) ((void)0)
#define VG_DEFINED(p, n) ((void)0)
#endif


#include "node.h"
#include "pool.h"
#include "map.h"
#include "trie.h"

/* many.c: batches against maps of at most this many entries are looked up
 * one key after the other (their trie stays in cache; docs/design.md,
 * "Batched lookups").  A variable so that the tests can run both paths. */
INTERNAL extern size_t champ__many_direct;

#endif /* CHAMP_INTERNAL_H */

/*
 * hash.c - the built-in hashes and seeds.
 *
 * Byte keys are hashed with XXH3-64 (Debian's libxxhash-dev, used header-only
 * so there is no runtime dependency), keyed with the map's seed.  Without
 * xxhash.h the build falls back to a simple seeded multiply-mix hash and the
 * Makefile says so.  u64 keys use the bijective mixer in internal.h.
 * Seeds come from getentropy(), so nobody can precompute colliding keys.
 */
#define _DEFAULT_SOURCE
#include "internal.h"

#include <time.h>
#include <unistd.h>

#ifndef CHAMP_NO_XXHASH
#define XXH_INLINE_ALL
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

uint64_t champ__hash_bytes(const void *p, size_t len, uint64_t seed) {
    return (uint64_t)XXH3_64bits_withSeed(p, len, (XXH64_hash_t)seed);
}
#else
/* Fallback only: a seeded word-at-a-time multiply-mix. */
uint64_t champ__hash_bytes(const void *p, size_t len, uint64_t seed) {
    const unsigned char *s = p;
    uint64_t h = hash_u64(seed ^ (uint64_t)len, 0x9e3779b97f4a7c15ull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = hash_u64(h ^ w, 0x2545f4914f6cdd1dull);
        s += 8;
        len -= 8;
    }
    uint64_t w = 0;
    if (len)
        memcpy(&w, s, len); /* s may be NULL when len is 0 */
    return hash_u64(h ^ w ^ ((uint64_t)len << 56), seed);
}
#endif

uint64_t champ__random_seed(void) {
    uint64_t s = 0;
    if (getentropy(&s, sizeof s) == 0)
        return s;
    /* No entropy source: mix what differs between runs. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&s;
    return hash_u64(s, (uint64_t)getpid());
}

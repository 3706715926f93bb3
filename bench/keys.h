/* keys.h - the u64 key sequence, shared by the driver and the telemetry
 * program: key_of_index is a bijection on 64-bit words, so distinct indexes
 * give distinct keys. */
#ifndef BENCH_KEYS_H
#define BENCH_KEYS_H
#include <stdint.h>

static inline uint64_t key_of_index(uint64_t i)
{
    uint64_t z = 0x5eed0000c0ffee00ull + i * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
#endif

/*
 * map.h - the map handle, the hashes, and the entry helpers shared by
 * champ.c, iter.c and check.c.
 * Included through internal.h only.
 */
#ifndef CHAMP_MAP_H
#define CHAMP_MAP_H

/* ------------------------------------------------------------------ */
/* Maps                                                                */
/* ------------------------------------------------------------------ */

struct champ_map {
    node *root;
    size_t size;
    uint64_t seed;
    champ_key_kind kind;
    bool busy;                 /* mid-update: re-entrant updates refused */
    bool ent_refs;             /* copying an entry must retain something */
    champ_pool *pool;
    champ_hash_fn hash;
    champ_equal_fn equal;
    champ_ref_fn key_retain, key_release, val_retain, val_release;
    void *ctx;
    uint64_t stamp;            /* bumped by every update (iterator check) */
    champ_map *prev, *next;    /* the pool's list of live maps           */
};


/* ------------------------------------------------------------------ */
/* Hashes                                                              */
/* ------------------------------------------------------------------ */

/* u64 keys: a seeded bijection (xor-shift-multiply rounds are invertible),
 * so distinct keys never share a full 64-bit hash: CHAMP_KEY_U64 maps have
 * no collision nodes, and their lookups need no collision case. */
static ALWAYS_INLINE uint64_t hash_u64(uint64_t x, uint64_t seed) {
    x ^= seed;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

INTERNAL uint64_t champ__hash_bytes(const void *p, size_t len, uint64_t seed);
INTERNAL uint64_t champ__random_seed(void);

/* Shared by champ.c, iter.c and check.c. */
INTERNAL uint64_t champ__entry_hash(const champ_map *m, const entry *e);
INTERNAL bool champ__entry_equal(const champ_map *m, const entry *a,
                                 const entry *b);
/* What iteration reports for an entry's key. */
static ALWAYS_INLINE void fill_key(champ_key_kind kind, const entry *e,
                                   champ_key *k) {
    if (kind == CHAMP_KEY_U64) {
        k->u64 = e->k;
        k->ptr = NULL;
        k->len = 0;
    } else if (kind == CHAMP_KEY_BYTES) {
        const blob *b = (const blob *)(uintptr_t)e->k;
        k->u64 = 0;
        k->ptr = b->bytes;
        k->len = b->len;
    } else {
        k->u64 = 0;
        k->ptr = (const void *)(uintptr_t)e->k;
        k->len = 0;
    }
}


#endif /* CHAMP_MAP_H */

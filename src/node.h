/*
 * node.h - the node layout: trie geometry, entries, the two bitmaps, sizes,
 * spare room, and the key blobs of CHAMP_KEY_BYTES.
 * Included through internal.h only.
 */
#ifndef CHAMP_NODE_H
#define CHAMP_NODE_H

/* ------------------------------------------------------------------ */
/* Trie geometry                                                       */
/* ------------------------------------------------------------------ */

#define CHAMP_BITS 5                 /* hash bits consumed per level   */
#define CHAMP_LAST_LEVEL 12          /* bitmap levels are 0..12        */
#define CHAMP_COLL_LEVEL 13          /* collision nodes live here      */
#define CHAMP_MAX_PATH 14            /* nodes on a root-to-leaf path   */

/* An entry as the code handles it: the key word k (the u64 key itself for
 * CHAMP_KEY_U64, a pointer to a key blob for CHAMP_KEY_BYTES, the user's
 * key pointer for CHAMP_KEY_GENERIC) and the value.  In a node an entry
 * takes W bytes, the engine's entry width: ENT_MAP (key word, value) for
 * maps, ENT_SET (key word only) for sets.  Every function that touches
 * node bodies takes W as a constant, as it takes the key kind, so each
 * (kind, width) pair gets its own specialised copy. */
typedef struct entry {
    uint64_t k;
    void *v;
} entry;

#define ENT_MAP 16u
#define ENT_SET 8u
#define KID_BYTES 8u                   /* a child pointer                */

/* A node.  Bitmap nodes (levels 0..12): the two CHAMP bitmaps give each
 * of the 32 slots one of four states:
 *     datamap nodemap
 *        0       0     empty
 *        1       0     one entry
 *        1       1     a pair: two entries whose hashes agree on every
 *                      slice down to this level (a subtree of exactly two
 *                      entries always lives inline like this)
 *        0       1     a child node (its subtree holds 3 or more entries)
 * The body holds the entries of the entry and pair slots in slot order (a
 * pair takes two consecutive entries, in trie order), W bytes each, then
 * one pointer per child slot, in slot order.  aux holds the block's spare
 * room and the census mark of champ_validate (see SLACK_MASK).
 * Collision nodes (level 13): datamap is the entry count; nodemap holds
 * COLL_ORDERED (the entries are in the map's key order, see trie.h) and
 * the block's spare room in 8-byte units (COLL_ROOM); aux holds no room
 * (its low byte is 0), only the census mark. */
typedef struct node {
    uint32_t rc;
    uint32_t aux;
    uint32_t datamap; /* datamap and nodemap share one aligned 8-byte word: */
    uint32_t nodemap; /* node_full reads both with one load              */
    uint64_t body[];
} node;

/* Reference counts (of nodes, key blobs, types, pools).  In a concurrent
 * pool (champ_pool_config.concurrent) they are changed atomically:
 * increments relaxed (a reference can only be copied from one already
 * held), decrements with release order and an acquire fence before the
 * memory is reused, so every write to the object happens before its free.
 * Otherwise they are plain integers.  Reads are acquire loads in both
 * modes (one mov on x86-64, as a relaxed load): an update that finds a
 * node's count at 1 writes the node in place, and the acquire orders that
 * after everything another thread did with the node before its release
 * decrement dropped the count to 1 (its reads of the node included: with
 * a relaxed load that was a data race, which concurrent.oom_threads made
 * ThreadSanitizer report). */
static ALWAYS_INLINE uint32_t rc_load(const uint32_t *rc) {
    return __atomic_load_n(rc, __ATOMIC_ACQUIRE);
}
static ALWAYS_INLINE void rc_inc(uint32_t *rc, bool atomic) {
    if (atomic)
        __atomic_fetch_add(rc, 1u, __ATOMIC_RELAXED);
    else
        (*rc)++;
}
/* Drops one reference; true when it was the last.  ThreadSanitizer does
 * not model fences: there the decrement itself acquires (the same order,
 * a stronger instruction only on weakly ordered CPUs). */
#if defined(__SANITIZE_THREAD__)
#define CHAMP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHAMP_TSAN 1
#endif
#endif
static ALWAYS_INLINE bool rc_dec(uint32_t *rc, bool atomic) {
    if (!atomic)
        return --*rc == 0;
#ifdef CHAMP_TSAN
    return __atomic_sub_fetch(rc, 1u, __ATOMIC_ACQ_REL) == 0;
#else
    if (__atomic_sub_fetch(rc, 1u, __ATOMIC_RELEASE) != 0)
        return false;
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return true;
#endif
}

/* rc_dec for an object that is freed when its last reference goes (nodes,
 * key blobs): a count of 1 is the caller's own reference, and nobody else
 * can take one (a reference is only copied from one already held) or drop
 * one, so the caller frees without an atomic write.  The acquire load pairs
 * with the release decrement of the thread that dropped the next-to-last
 * reference.  Saves a locked instruction on every node a concurrent pool
 * frees. */
static ALWAYS_INLINE bool rc_dec_free(uint32_t *rc, bool atomic) {
    if (atomic && __atomic_load_n(rc, __ATOMIC_ACQUIRE) == 1)
        return true;
    return rc_dec(rc, atomic);
}

/* A light node (pin.c, "Light versions"): a node of a version derived
 * from a pinned snapshot that borrows the children it did not change.
 * Its count is 1 in the low bits (RC_COUNT), with RC_LIGHT set (so every
 * test of ownership, rc == 1, sees a shared node) and, in bits 24-29, the
 * index + 1 of its one light child (0: none). */
#define RC_LIGHT 0x80000000u
#define RC_COUNT 0x00ffffffu
#define RC_LKID_SHIFT 24u
#define RC_LKID_MASK 0x3fu
static ALWAYS_INLINE bool node_light(const node *n) {
    /* bit 30 clear too: a count gone below zero (validate's census of a
     * wrong count) is not taken for a light node */
    return (__atomic_load_n(&n->rc, __ATOMIC_RELAXED) & (RC_LIGHT | 0x40000000u)) == RC_LIGHT;
}
/* The index + 1 among its children of light node n's light child, or 0. */
static ALWAYS_INLINE uint32_t node_light_kid(const node *n) {
    return (n->rc >> RC_LKID_SHIFT) & RC_LKID_MASK;
}

#define NODE_HDR 16u
_Static_assert(sizeof(node) == NODE_HDR, "node header is 16 bytes");
_Static_assert(offsetof(node, datamap) == 8 && offsetof(node, nodemap) == 12,
               "the two bitmaps are one aligned word");
/* That word (datamap in its low half on little-endian machines) when all
 * 32 slots hold children: datamap 0, nodemap all ones. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define MAPS_WORD_NODEMAP_ALL 0x00000000ffffffffull
#else
#define MAPS_WORD_NODEMAP_ALL 0xffffffff00000000ull
#endif
_Static_assert(sizeof(entry) == ENT_MAP, "a map entry is two words");
_Static_assert(sizeof(void *) == KID_BYTES && sizeof(uint64_t) == ENT_SET,
               "64-bit pointers: key words and child pointers are 8 bytes");
/* What the common updates change a node's size by: a slot gains an entry
 * (empty -> entry, entry -> pair), a pair becomes a child pointer. */
#define SZ_ENTRY(W) ((size_t)(W))
#define SZ_PAIR_TO_KID(W) ((size_t)(2u * (W) - KID_BYTES))
/* The node a pair and a third key become: three entries, any layout. */
#define SZ_THREE(W) ((size_t)NODE_HDR + 3u * (W))

static ALWAYS_INLINE uint32_t popc(uint32_t x) {
    return (uint32_t)__builtin_popcount(x);
}
static ALWAYS_INLINE uint32_t slice(uint64_t h, unsigned level) {
    return (uint32_t)(h >> (CHAMP_BITS * level)) & 31u;
}
/* Trie order of two different hashes: the one whose slice is smaller at
 * the first level where they differ comes first (the order a walk of the
 * trie meets them; pairs keep their two entries in it). */
static ALWAYS_INLINE bool hash_trie_before(uint64_t a, uint64_t b) {
    unsigned l = (unsigned)__builtin_ctzll(a ^ b) / CHAMP_BITS;
    return slice(a, l) < slice(b, l);
}

/* Entries of a bitmap node with these bitmaps (pairs count twice), and
 * its children. */
static ALWAYS_INLINE uint32_t maps_nent(uint32_t dm, uint32_t nm) {
    return popc(dm) + popc(dm & nm);
}
static ALWAYS_INLINE uint32_t maps_nkid(uint32_t dm, uint32_t nm) {
    return popc(nm & ~dm);
}
/* Index in e[] of the first entry of slot `bit` (entry or pair). */
static ALWAYS_INLINE uint32_t maps_eidx(uint32_t dm, uint32_t nm, uint32_t bit) {
    return popc(dm & (bit - 1)) + popc(dm & nm & (bit - 1));
}
/* Index among the child pointers of the child in slot `bit`. */
static ALWAYS_INLINE uint32_t maps_kidx(uint32_t dm, uint32_t nm, uint32_t bit) {
    return popc(nm & ~dm & (bit - 1));
}
static ALWAYS_INLINE uint32_t node_nent(const node *n) {
    return maps_nent(n->datamap, n->nodemap);
}
static ALWAYS_INLINE uint32_t node_nkid(const node *n) {
    return maps_nkid(n->datamap, n->nodemap);
}
static ALWAYS_INLINE uint32_t node_eidx(const node *n, uint32_t bit) {
    return maps_eidx(n->datamap, n->nodemap, bit);
}
static ALWAYS_INLINE uint32_t node_kidx(const node *n, uint32_t bit) {
    return maps_kidx(n->datamap, n->nodemap, bit);
}
/* Entry i of a node's body (W bytes each): its key word, and value. */
static ALWAYS_INLINE char *node_ebase(const node *n) {
    return (char *)(uintptr_t)n->body;
}
static ALWAYS_INLINE uint64_t *ent_at(const node *n, uint32_t i, unsigned W) {
    return (uint64_t *)(void *)(node_ebase(n) + (size_t)W * i);
}
static ALWAYS_INLINE uint64_t ent_key(const node *n, uint32_t i, unsigned W) {
    return *ent_at(n, i, W);
}
static ALWAYS_INLINE entry ent_get(const node *n, uint32_t i, unsigned W) {
    entry e;
    const uint64_t *p = ent_at(n, i, W);
    e.k = p[0];
    e.v = W == ENT_MAP ? (void *)(uintptr_t)p[1] : NULL;
    return e;
}
static ALWAYS_INLINE void ent_put(node *n, uint32_t i, entry e, unsigned W) {
    uint64_t *p = ent_at(n, i, W);
    p[0] = e.k;
    if (W == ENT_MAP)
        p[1] = (uint64_t)(uintptr_t)e.v;
}
/* The value word of entry i (maps only). */
static ALWAYS_INLINE void **ent_valp(const node *n, uint32_t i) {
    return (void **)(void *)(ent_at(n, i, ENT_MAP) + 1);
}
static ALWAYS_INLINE node **node_kids(const node *n, unsigned W) {
    return (node **)(void *)(node_ebase(n) + (size_t)W * node_nent(n));
}
/* The child in slot `bit` (which must be a child slot). */
static ALWAYS_INLINE node **node_kid_at(const node *n, uint32_t bit, unsigned W) {
    return node_kids(n, W) + node_kidx(n, bit);
}
/* A bitmap node whose 32 slots all hold children: child i is kids[i], no
 * popcount needed, so a lookup can load the child pointer without waiting
 * for the bitmaps (the branch is predicted; the upper levels of a big map
 * are all full). */
static ALWAYS_INLINE bool node_full(const node *n) {
    uint64_t w;
    memcpy(&w, &n->datamap, sizeof w);
    return w == MAPS_WORD_NODEMAP_ALL;
}
static ALWAYS_INLINE size_t node_bitmap_size(uint32_t ne, uint32_t nk, unsigned W) {
    return NODE_HDR + (size_t)W * ne + KID_BYTES * (size_t)nk;
}
static ALWAYS_INLINE size_t node_coll_size(uint32_t ne, unsigned W) {
    return NODE_HDR + (size_t)W * ne;
}
/* Collision nodes (trie.h, "Collision nodes", has the whole story):
 * nodemap bit 31 (COLL_ORDERED): the entries are in the map's key order;
 * bit 30 (COLL_HASHED): a byte-key node of more than COLL_HASH_MIN keys
 * whose entries are in any order, found through a hash index at the end of
 * the block (2^(aux & 31) slots of 8 bytes); bits 0-29: the block's spare
 * bytes after the entries, in 8-byte units, the index included (up to
 * 8 GiB).  A node with neither flag (generic keys without compare) is a
 * list. */
#define COLL_ORDERED 0x80000000u
#define COLL_HASHED 0x40000000u
#define COLL_ROOM 0x3fffffffu
#define COLL_LGCAP 31u
static ALWAYS_INLINE bool coll_ordered(const node *n) {
    return (n->nodemap & COLL_ORDERED) != 0;
}
static ALWAYS_INLINE bool coll_hashed(const node *n) {
    return (n->nodemap & COLL_HASHED) != 0;
}
static ALWAYS_INLINE uint32_t coll_room(const node *n) {
    return n->nodemap & COLL_ROOM;
}
/* The hash index of a hashed node: its slots (a power of two), bytes. */
static ALWAYS_INLINE uint32_t coll_cap(const node *n) {
    return coll_hashed(n) ? 1u << (n->aux & COLL_LGCAP) : 0u;
}
static ALWAYS_INLINE size_t coll_index_bytes(const node *n) {
    return 8u * (size_t)coll_cap(n);
}
static ALWAYS_INLINE size_t node_size(const node *n, unsigned level, unsigned W) {
    if (level == CHAMP_COLL_LEVEL)
        return node_coll_size(n->datamap, W);
    return node_bitmap_size(node_nent(n), node_nkid(n), W);
}
/* Entries of a node at `level` (collision nodes: the count). */
static ALWAYS_INLINE uint32_t node_nent_at(const node *n, unsigned level) {
    return level == CHAMP_COLL_LEVEL ? n->datamap : node_nent(n);
}
static ALWAYS_INLINE uint32_t node_nkid_at(const node *n, unsigned level) {
    return level == CHAMP_COLL_LEVEL ? 0 : node_nkid(n);
}

/* aux bits 0-7: spare 8-byte units at the end of the node's block (left by
 * removes done in place, used by later inserts); bits 8-31: the mark of
 * champ_validate's census while it runs (check.c), zero otherwise. */
#define SLACK_MASK 0xffu
#define SLACK_CAP 4u      /* in-place removes keep at least 32 spare bytes */
#ifndef GROW_SHIFT
#define GROW_SHIFT 6
#endif
/* Spare units (even: whole map entries) a node of `size` bytes takes along
 * when an insert makes it grow into a new block: one entry, or about 1/8
 * of the node for big ones, so the next inserts there happen in place. */
static ALWAYS_INLINE uint32_t grow_units(size_t size) {
    uint32_t u = (uint32_t)(size >> GROW_SHIFT) & ~1u;
    return u < 2u ? 2u : u;
}
/* A growing node of `size` bytes takes a free block of at most this size
 * (the room it wants, one entry more at most). */
static ALWAYS_INLINE size_t grow_take_max(size_t size) {
    return size + 8u * (grow_units(size) + 2u);
}
#ifndef SHRINK_DIV
#define SHRINK_DIV 8
#endif
/* In-place removes keep at most this many spare units: as much as the
 * node itself holds (SHRINK_DIV 8: bytes), at least SLACK_CAP, so a node
 * that loses entries gives its block up only when it is half empty. */
static ALWAYS_INLINE uint32_t slack_cap(size_t size) {
    size_t u = (size / SHRINK_DIV) & ~(size_t)1;
    if (u > SLACK_MASK - 1)
        u = SLACK_MASK - 1;
    return u < SLACK_CAP ? SLACK_CAP : (uint32_t)u;
}
static ALWAYS_INLINE uint32_t node_slack(const node *n) {
    return n->aux & SLACK_MASK;
}
/* Spare 8-byte units at the end of the node's block. */
static ALWAYS_INLINE size_t node_room(const node *n, unsigned level) {
    return level == CHAMP_COLL_LEVEL ? coll_room(n) : node_slack(n);
}
/* The bytes of the node's block: its size plus any spare room. */
static ALWAYS_INLINE size_t node_block(const node *n, unsigned level, unsigned W) {
    return node_size(n, level, W) + 8u * node_room(n, level);
}

/* Key blob of CHAMP_KEY_BYTES: the map's own copy of a key, shared by every
 * entry (in any version) that holds it, freed with its last reference. */
typedef struct blob {
    uint64_t hash;
    uint32_t rc;
    uint32_t len;
    char bytes[];
} blob;

static ALWAYS_INLINE size_t blob_size(size_t len) {
    return (sizeof(blob) + len + 1 + 7) & ~(size_t)7;
}


#endif /* CHAMP_NODE_H */

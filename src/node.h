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

/* An entry: 16 bytes whatever the kind.  k is the u64 key itself
 * (CHAMP_KEY_U64), a pointer to a key blob (CHAMP_KEY_BYTES) or the user's
 * key pointer (CHAMP_KEY_GENERIC). */
typedef struct entry {
    uint64_t k;
    void *v;
} entry;

/* A node.  Bitmap nodes (levels 0..12): the two CHAMP bitmaps give each
 * of the 32 slots one of four states:
 *     datamap nodemap
 *        0       0     empty
 *        1       0     one entry
 *        1       1     a pair: two entries whose hashes agree on every
 *                      slice down to this level (a subtree of exactly two
 *                      entries always lives inline like this)
 *        0       1     a child node (its subtree holds 3 or more entries)
 * e[] holds the entries of the entry and pair slots in slot order (a pair
 * takes two consecutive entries, in trie order), then one pointer per child
 * slot, in slot order.  Collision nodes (level 13): datamap is the entry
 * count, nodemap is 0.  aux holds the block's spare room and the census
 * mark of champ_validate (see SLACK_MASK). */
typedef struct node {
    uint32_t rc;
    uint32_t datamap;
    uint32_t nodemap;
    uint32_t aux;
    entry e[];
} node;

#define NODE_HDR ((uint32_t)sizeof(node))

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
static ALWAYS_INLINE node **node_kids(const node *n) {
    return (node **)(void *)((char *)(uintptr_t)n->e + 16u * node_nent(n));
}
/* The child in slot `bit` (which must be a child slot). */
static ALWAYS_INLINE node **node_kid_at(const node *n, uint32_t bit) {
    return node_kids(n) + node_kidx(n, bit);
}
/* A bitmap node whose 32 slots all hold children: child i is kids[i], no
 * popcount needed, so a lookup can load the child pointer without waiting
 * for the bitmaps (the branch is predicted; the upper levels of a big map
 * are all full). */
static ALWAYS_INLINE bool node_full(const node *n) {
    return n->nodemap == 0xffffffffu && n->datamap == 0;
}
static ALWAYS_INLINE size_t node_bitmap_size(uint32_t ne, uint32_t nk) {
    return NODE_HDR + 16u * (size_t)ne + 8u * (size_t)nk;
}
static ALWAYS_INLINE size_t node_size(const node *n, unsigned level) {
    if (level == CHAMP_COLL_LEVEL)
        return NODE_HDR + 16u * (size_t)n->datamap;
    return node_bitmap_size(node_nent(n), node_nkid(n));
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
/* Spare units (even: whole entries) a node of `size` bytes takes along
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
/* The bytes of the node's block: its size plus any spare room. */
static ALWAYS_INLINE size_t node_block(const node *n, unsigned level) {
    return node_size(n, level) + 8u * node_slack(n);
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

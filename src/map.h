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

/* A map's type: what every version of a map shares (copies, p-forms,
 * champ_new_like).  It lives in the map's pool and is counted by the maps
 * that use it; the pool holds it alive until the last one is freed. */
typedef struct mtype {
    champ_key_kind kind;
    uint8_t width;             /* entry width W: ENT_MAP, or ENT_SET       */
    uint8_t mode;              /* MODE(kind, W, calls_out): one compare   */
                               /* finds the plain path of an operation    */
    bool ent_refs;             /* copying an entry must retain something  */
    bool atomic;               /* the pool is concurrent: counts atomic   */
    bool immortal;             /* a default type: never freed, no count   */
    bool calls_out;            /* an operation may run user code: hash,   */
                               /* equal, retains, releases, the watermark */
    champ_hash_fn hash;
    champ_equal_fn equal;
    champ_ref_fn key_retain, key_release, val_retain, val_release;
    champ_compare_fn compare;      /* GENERIC: key order of collision nodes */
    champ_bytes_hash_fn bytes_hash; /* BYTES: the user's hash, or NULL      */
    void *ctx;
    uint64_t seed;
    champ_pool *pool;
    uint32_t refs;             /* maps of this type (not for immortal)    */
} mtype;

#define MODE(kind, W, out)                                                  \
    ((unsigned)(kind) | ((W) == ENT_SET ? 4u : 0u) | ((out) ? 8u : 0u))
#define MODE_KW_MASK 7u        /* kind and width, without calls_out */

/* A map handle: the root of one version, its size, its type; 32 bytes in
 * a handle page of the pool (pool.c), whose last byte is the pool's. */
struct champ_map {
    node *root;
    size_t size;
    mtype *t;
    uint32_t stamp;            /* bumped by every update (iterator check) */
    uint8_t pin;               /* pinned (pin.c): its pin slot + 1, else 0 */
    uint8_t light;             /* LIGHT_* (pin.c): a light version        */
    uint8_t lbase;             /* LBASE_*: a light version's base (pin.c), */
                               /* else LBASE_FRESH for a fresh copy       */
    uint8_t pool_slot;         /* the pool's: the handle's slot in its page */
};
_Static_assert(sizeof(struct champ_map) == CHAMP_HANDLE_BYTES, "a map handle is 32 bytes");

/* A cell (cell.c): one version of a map, for threads to take and
 * replace.  Once it has a type it is on its pool's list of cells, so that
 * validate's census and trim's relocation see the references it holds. */
struct champ_cell {
    cell_link link;            /* first: the pool's list of cells         */
    unsigned char lock;        /* writers (store, cas; every call of a    */
                               /* plain pool's cell)                      */
    unsigned seq;              /* concurrent: odd while a writer changes  */
                               /* root and size (loads read them without  */
                               /* the lock and retry)                     */
    node *root;
    size_t size;
    mtype *t;
    retired *last;             /* concurrent: the record its free uses    */
                               /* (a block of its pool)                   */
    unsigned char dying;       /* champ_cell_free is under way: calls on  */
                               /* the cell from the callbacks its release */
                               /* of the version runs are refused         */
};

/* A version that a concurrent pool's cell let go (replaced or freed)
 * while a thread may still have it pinned (pin.c).  The record holds what
 * the cell held: two references to root (or root is NULL), and one to its
 * type.  When the version replacing it was published by transfer (pin.c,
 * "Publication by transfer"), heir is that version's root: the record
 * holds one reference to it, and along the update's path the children
 * root and heir share carry one count for both until the record goes. */
struct retired {
    retired *next;
    node *root;
    mtype *t;
    node *heir;
};
#define RETIRED_BYTES ((sizeof(retired) + 7u) & ~(size_t)7) /* a pool block */

/* ------------------------------------------------------------------ */
/* Pins (pin.c)                                                        */
/* ------------------------------------------------------------------ */
/*
 * A snapshot loaded from a concurrent pool's cell is a pinned handle: it
 * holds no count on its root or its type.  Instead its root is named in a
 * pin slot of the heap whose page holds the handle (m->pin is the slot +
 * 1), and a cell that lets a version go hands it to a retired record,
 * which keeps the cell's references until no slot names its root.  A
 * concurrent cell holds two references to its root, so a pinned root's
 * count is never 1 and every update of a pinned handle copies what it
 * changes, as for any shared root; where an update or a clear would drop
 * the handle's reference to its old root, map_root_drop unpins instead.
 */
static inline bool map_pinned(const champ_map *m) { return m->pin != 0; }
/* A free pin slot of the heap holding handle m (which this thread has just
 * taken from its own heap), now m's; NULL when no more than `keep` are
 * free (light versions on a counted base leave PIN_KEEP for snapshots). */
INTERNAL uintptr_t *champ__pin_claim(champ_map *m, unsigned keep);
#define PIN_KEEP (HEAP_PINS / 2)
/* The slot of pinned handle m. */
INTERNAL uintptr_t *champ__pin_slot(const champ_map *m);
/* Names r (or nothing: NULL) in slot, which this thread holds. */
INTERNAL void champ__pin_set(champ_pool *p, uintptr_t *slot, node *r);
/* Empties slot (any thread; the handle that held it is gone or unpinned):
 * a retired version waiting on it is released.  p is not touched after
 * the slot is empty unless a version waited on it. */
INTERNAL void champ__pin_release(champ_pool *p, uintptr_t *slot);
/* Pinned handle m becomes a counted one: it takes a reference to its type,
 * and to its root when `root` (else it is giving its root up). */
INTERNAL void champ__pin_count(champ_map *m, bool root);
/* Hands rec (a block of p) to the pool: released now if no slot names its
 * root, else when the last pin of it goes. */
INTERNAL void champ__pin_retire(champ_pool *p, retired *rec);
/* Alone (trim): every pinned handle counted, every record released. */
INTERNAL void champ__pin_settle(champ_pool *p);
/* Light versions (pin.c): champ_pset_u64 / champ_premove_u64 of a plain
 * u64 map of a concurrent pool derive a version that names the source's
 * root in a pin slot (and, for a counted source, holds a count on it) and
 * borrows the children its new nodes (light nodes, node.h) did not change.
 * Any call that could share or change its nodes first settles it: the
 * light nodes take the counts they skipped (or, when the version holds
 * the base's only count, the base's own), and the pin goes. */
enum {
    LIGHT_NONE = 0,            /* a counted version (or a plain snapshot) */
    LIGHT_ON,                  /* light: settle before sharing/changing   */
    LIGHT_SETTLING,            /* a thread is settling it (others wait)   */
    LIGHT_DERIVE               /* being derived: updates borrow           */
};
/* What a light version's pin slot names (m->lbase, set before LIGHT_ON
 * is published); a counted handle's lbase only says whether it is fresh: */
enum {
    LBASE_PIN = 0,             /* a pinned snapshot's root: no count held */
    LBASE_COUNT,               /* a counted map's root: the version holds */
                               /* one count on it and one on its type     */
    LBASE_FRESH                /* not light: champ_copy (or a plain cell's */
                               /* load) made the handle; its first update */
                               /* that finds its root shared may make it  */
                               /* light (champ.c, light_begin), and that  */
                               /* update clears it                        */
};
/* The base root a light version's slot names. */
INTERNAL node *champ__light_base(const champ_map *m);
/* A light version on a counted base keeps the base in its slot (this
 * thread's, just claimed), and empties it (any thread): plain stores,
 * since the count, not the slot, keeps the base (pin.c, PIN_BASE). */
INTERNAL void champ__base_set(uintptr_t *slot, node *base);
INTERNAL void champ__base_release(uintptr_t *slot);
/* Settles light version m (any thread).  A concurrent copy of m that
 * finds it held waits: for the thread that settles it, or for a cell's
 * claim to end (a publication settles or transfers it; a lost cas gives
 * it back light, and the copy then claims and settles it). */
INTERNAL void champ__light_settle(champ_map *m);
/* Frees light version m's light nodes (champ_free). */
INTERNAL void champ__light_free(champ_map *m);
/* Publication by transfer (pin.c): a cell's store or compare-and-swap of
 * a light version derived from a pinned snapshot.  claim: takes m from
 * LIGHT_ON to LIGHT_SETTLING when it is such a version (false: it is not,
 * or another thread settles it); unclaim undoes it (nothing changed).
 * Under the cell's lock, with the cell's root `old` about to be replaced:
 * transfer makes m's light nodes ordinary ones that share the children of
 * old's path instead of counting them, when old is m's base, and returns
 * true (m's root then has count 1, the caller adds its own); else counts
 * them (a settle: the root has count 1) and returns false.  finish (after
 * the lock, m published): m becomes a counted version (its type counted,
 * its pin let go).  An m that was not published is unclaimed: still
 * light, its chain uncounted. */
INTERNAL bool champ__light_claim(champ_map *m);
INTERNAL void champ__light_unclaim(champ_map *m);
INTERNAL bool champ__light_transfer(champ_map *m, const node *old);
INTERNAL void champ__light_finish(champ_map *m);
/* A record's version published by transfer goes: the record's last
 * reference to root (the caller dropped the others) and its reference to
 * heir.  Root's nodes on the path that no other version holds are freed
 * without touching the children they shared with heir; where one is held
 * elsewhere, it first counts those children again. */
INTERNAL void champ__xfer_release(const mtype *t, node *root, node *heir);
/* A transferred path from n and its copy x (at level) down, where x
 * changed at most one child slot per level: fn gets every child the two
 * share in the same slot (validate's census, a release that counts them
 * again). */
INTERNAL void champ__xfer_walk(const node *n, const node *x, unsigned level, unsigned W,
                               void (*fn)(node *, void *), void *arg);
/* Settles m when it is a light version: the first step of every call
 * that could share or change m's nodes (m may be a const argument: two
 * threads may copy one map at once). */
static ALWAYS_INLINE void map_settle(const champ_map *m) {
    if (m) {
        uint8_t l = __atomic_load_n(&m->light, __ATOMIC_ACQUIRE);
        if (UNLIKELY(l == LIGHT_ON || l == LIGHT_SETTLING))
            champ__light_settle((champ_map *)(uintptr_t)m);
    }
}
/* The references a concurrent cell (and a record) holds to its root. */
#define CELL_REFS(t) ((t)->atomic ? 2u : 1u)

/* A new handle of type t (which gains a reference) on root, or NULL. */
INTERNAL champ_map *champ__map_handle(mtype *t, node *root, size_t size);
/* Sets (or removes) in m the key of key word k of a map of type tx: the
 * key-by-key paths of algebra.c, across hashings and pools. */
INTERNAL champ_status champ__set_entry(champ_map *m, uint64_t k, const mtype *tx,
                                       void *val, bool remove);
/* Drops one reference to a type (the last frees it and releases its
 * pool's reference). */
INTERNAL void champ__type_release(mtype *t);
INTERNAL bool champ__struct_read(void *dst, size_t dst_size, const void *src,
                                size_t min_size);

/* ------------------------------------------------------------------ */
/* Operations in flight, per thread                                    */
/* ------------------------------------------------------------------ */
/*
 * While an operation on map m may run user code (a callback), it keeps a
 * frame on this thread's list.  Callbacks are code of the same thread, so
 * an update of m that finds a frame of m on the list was called from a
 * callback of an operation on m: it is refused (CHAMP_EBUSY), and a
 * champ_free(m) is deferred to the end of the outermost such operation.
 * The list is empty unless a callback is running, so the check every update
 * makes is one thread-local load.  Frames live on the C stack.
 */
enum { OPF_READ, OPF_UPDATE, OPF_FREE };

typedef struct opframe {
    struct opframe *up;
    const champ_map *m;
    uint8_t what;              /* OPF_*                                    */
    bool free_pending;         /* champ_free(m) was called from a callback */
} opframe;

INTERNAL extern _Thread_local opframe *champ__ops
    __attribute__((tls_model("initial-exec")));

/* The innermost frame of m on this thread, or NULL. */
static inline opframe *op_find(const champ_map *m) {
    for (opframe *f = champ__ops; f; f = f->up)
        if (f->m == m)
            return f;
    return NULL;
}
/* Whether an update of m must be refused: m is mid-operation on this
 * thread (its callbacks are running). */
static ALWAYS_INLINE bool op_busy(const champ_map *m) {
    return UNLIKELY(champ__ops != NULL) && op_find(m) != NULL;
}
/* Whether m has an operation in flight on this thread that writes it (an
 * update or a free, not a lookup): then m must not be copied, nor its root
 * shared with a cell (callers test champ__ops != NULL first). */
static inline bool op_writing(const champ_map *m) {
    for (opframe *f = champ__ops; f; f = f->up)
        if (f->m == m && f->what != OPF_READ)
            return true;
    return false;
}
static ALWAYS_INLINE void op_push(opframe *f, const champ_map *m, int what) {
    f->up = champ__ops;
    f->m = m;
    f->what = (uint8_t)what;
    f->free_pending = false;
    champ__ops = f;
}
/* Pops f (the innermost frame); returns whether m must now be freed. */
static ALWAYS_INLINE bool op_pop(opframe *f) {
    champ__ops = f->up;
    return f->free_pending;
}
/* Ends an operation framed with op_push: pops the frame and carries out a
 * champ_free(m) that a callback asked for meanwhile. */
static ALWAYS_INLINE void op_end(opframe *f) {
    if (UNLIKELY(op_pop(f)))
        champ_free((champ_map *)(uintptr_t)f->m);
}

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

/* The hash of a byte key for maps of type t: the user's bytes_hash if the
 * type has one (a callback: t->calls_out is set), else XXH3. */
static ALWAYS_INLINE uint64_t type_hash_bytes(const mtype *t, const void *p, size_t len) {
    if (UNLIKELY(t->bytes_hash != NULL))
        return t->bytes_hash(p, len, t->seed, t->ctx);
    return champ__hash_bytes(p, len, t->seed);
}

/* Whether maps of types a and b put every key in the same place and keep
 * collision nodes in the same order (so nodes can be shared and tries
 * walked side by side): same kind and width; u64: the seed; bytes: the
 * seed and the same bytes_hash (and ctx when there is one); generic: the
 * same hash, equal, compare and ctx. */
static inline bool type_same_hashing(const mtype *a, const mtype *b) {
    if (a == b)
        return true;
    if (a->kind != b->kind || a->width != b->width)
        return false;
    if (a->kind == CHAMP_KEY_GENERIC)
        return a->hash == b->hash && a->equal == b->equal && a->compare == b->compare &&
               a->ctx == b->ctx;
    if (a->kind == CHAMP_KEY_BYTES && (a->bytes_hash || b->bytes_hash))
        return a->seed == b->seed && a->bytes_hash == b->bytes_hash && a->ctx == b->ctx;
    return a->seed == b->seed;
}

/* What iteration reports for a stored key word. */
static ALWAYS_INLINE void fill_key(champ_key_kind kind, uint64_t kw, champ_key *k) {
    if (kind == CHAMP_KEY_U64) {
        k->u64 = kw;
        k->ptr = NULL;
        k->len = 0;
    } else if (kind == CHAMP_KEY_BYTES) {
        const blob *b = (const blob *)(uintptr_t)kw;
        k->u64 = 0;
        k->ptr = b->bytes;
        k->len = b->len;
    } else {
        k->u64 = 0;
        k->ptr = (const void *)(uintptr_t)kw;
        k->len = 0;
    }
}

#endif /* CHAMP_MAP_H */

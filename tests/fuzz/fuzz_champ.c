/*
 * fuzz_champ.c - coverage-guided differential fuzzing of champ (libFuzzer).
 *
 * LLVMFuzzerTestOneInput decodes its input into a configuration and a
 * program of operations on up to NSLOT live versions of one map type, runs
 * the program against the library and against a simple model (per slot: a
 * present flag, a value and the stored generic key per key of a small
 * universe), and checks every result.  Any disagreement prints a message
 * and aborts (libFuzzer saves the input; the replay binary counts it).
 *
 * Input layout (bytes past the end read as 0; the program stops there):
 *   header  kind, generic hash mode + mask bits, universe size and key
 *           shape, pool mode (default arena / arena over a backing
 *           allocator that fails / fixed buffer of 2 KiB..256 KiB with an
 *           optional watermark that frees the oldest version), reference
 *           callbacks (counted values, counted generic keys, release
 *           without retain), seed
 *   program one opcode byte and its operands per operation: set, remove
 *           (with or without champ_prior), get/contains, copy, pset,
 *           premove, new / new_like, free, clear, iterate (single steps,
 *           batches, with a change of the map or of another version in the
 *           middle), foreach (with early stop), validate + full compare,
 *           bulk set/remove, stats/dump, bad input, champ_pool_fail_after,
 *           and "arm": the next call of a chosen callback (hash, equal,
 *           key/val retain/release, visit, watermark) performs an action
 *           from the table of champ.h (read m, copy m, pset m, set m,
 *           clear m, free m, get/set/remove/clear/free/copy/pset another
 *           version) whose result is checked against that table.
 * The extended format (inputs starting FZ_MAGIC0 FZ_MAGIC1, then the header
 * above and two bytes e0 e1) adds: sets; a bytes_hash (constant, few bits)
 * for byte keys and a compare for generic keys; concurrent pools; a second
 * pool and type variants (another seed, the other pool, the hashing
 * callbacks toggled) so that two-map operations meet every path; a
 * 1024-key universe and big batches; and the operations add, the algebra
 * (equal with and without a value equality, diff, subset, disjoint, union
 * and intersect with and without a resolver, difference, symdiff, filter)
 * against a model of both inputs, champ_apply batches with duplicate keys
 * (and bulk builds into empty maps), upsert and update (fn sees the old
 * value), batched lookups (get_many/contains_many, the staged walk and the
 * plain one), champ_pool_trim
 * (relocation; iterators of the pool report it), cells (new, load, store,
 * cas with a model of the version held), and the callbacks these take
 * (compare, bytes_hash, value equality, diff, resolver, predicate, update
 * fn) as targets of "arm", with the actions cell store m, cell load and
 * upsert m.
 * At the end every map is freed: the pool must hold 0 live bytes and 0
 * maps, the backing allocator must have every byte back, and every counted
 * key and value must be back to 0 references (no leak, no double release).
 *
 * Built three ways (tests/tools.mk): the libFuzzer target (clang
 * -fsanitize=fuzzer,address,undefined), and the replay binary (replay.c
 * plus this file, ASan+UBSan) that runs tests/fuzz/corpus in `make test`.
 * Both compile the library sources in with -DCHAMP_DEBUG (asserts, fault
 * hooks, poisoned free blocks).  FUZZ_CHAMP_TRACE=1 prints the program as
 * it runs (to shrink a failing input by hand).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "champ.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Library bugs this target found (each now a regression in make test:
 * tests/fuzz/known_bugs.c, and its input in tests/fuzz/corpus):
 * KB1 the watermark ran inside champ_copy / champ_new_like / the copy step
 *     of the p-forms without a frame on m (freeing m there was a
 *     use-after-free, updating it was accepted and corrupted the copy);
 * KB2 CHAMP_DEBUG=2 validated the pool inside a callback of another
 *     operation (false corruption reports);
 * KB3 an in-place remove under a failed allocation leaked the rest of a
 *     power-of-two large block.
 * The workarounds that stepped around them are gone (0 below).
 */
#define KB1_WORKAROUND 0
#define KB3_WORKAROUND 0

/*
 * More library bugs this target found (the extended format), fixed
 * with regressions in the suite; the workarounds of KB4 and KB5 are gone:
 * KB4 cells shared nodes with maps of a type that releases values or keys
 *     without retaining them (champ_copy refuses such types; champ_cell_new,
 *     store and cas did not): the entries a later update copied were
 *     released twice.  Now CHAMP_EINVAL, as for champ_copy.
 *     (concurrent.cell_noncopyable)
 * KB5 champ_get_many_bytes / champ_contains_many_bytes hashed with the
 *     built-in byte hash, not the map's bytes_hash: in a map with a
 *     bytes_hash they missed keys that were there.
 *     (collide.get_many_bytes_hash)
 * KB6 champ_cell_store / cas / new of m from a callback of an update of m
 *     (a hash callback during champ_set) returned CHAMP_OK: the cell kept
 *     m's root while the update changed and freed the nodes it owned (a
 *     freed node in the cell; ASan in validate's census).  Now CHAMP_EBUSY,
 *     as champ_copy.  (concurrent.cell_from_callback; corpus input
 *     regress-cell-store-during-update)
 * KB7 the algebra's walk sliced an empty view as NULL + 0 (undefined
 *     behaviour, reported by clang's UBSan only; champ_filter of a
 *     collision node).  (algebra.collision_views, under clang; corpus
 *     input regress-filter-collision-null-offset, under the libFuzzer
 *     build)
 * KB8 champ_update of an absent key put the key in m with a NULL value
 *     before fn ran: fn's callbacks reading m saw neither the old contents
 *     nor the new.  Now a version of m takes the key and m takes its trie
 *     after fn (types that cannot share keep the placeholder, as champ.h
 *     says).  (callbacks.update_fn_reads_m; corpus input
 *     regress-update-fn-reads-m)
 * KB9 the release callbacks that champ_cell_free(c) runs could call c: a
 *     load took a snapshot of the version being dropped (use after
 *     poison in the drop).  Now load, store and cas of a cell being freed
 *     return CHAMP_EBUSY and its free returns at once.
 *     (concurrent.cell_free_from_callback; corpus input
 *     regress-cell-load-during-cell-free)
 * And two found in new code before it landed (corpus inputs, no KB): a
 * concurrent cell's store of another type returned CHAMP_ENOMEM instead
 * of CHAMP_EPOOL under a failing pool (regress-cell-store-epool-before-
 * enomem); a failed call that settles a light version may release a
 * retired version (live bytes fall: regress-light-settle-in-failed-call).
 */

/* The extended format: inputs that start with these two bytes (older
 * inputs are read as they always were). */
#define FZ_MAGIC0 0xC4
#define FZ_MAGIC1 0x4D

#define NSLOT 8
#define UMAX 1024 /* the extended format's big universe; 512 before */
#define NCELL 2
#define MANY_MAX 64
#define APPLY_MAX 256
#define NVAL 24
#define BK_LONG_MAX 4200
#define ITER_CAP 64

/* ------------------------------------------------------------------ */
/* Failure and trace                                                   */
/* ------------------------------------------------------------------ */

static long g_op;        /* index of the running operation */

/* Totals over the inputs of this process, printed at exit. */
static struct {
    unsigned long long inputs, ops, actions, enomem, validates;
} tot;

/* The sanitizers' stack trace, when linked with one. */
#if defined(__GNUC__)
void __sanitizer_print_stack_trace(void) __attribute__((weak));
#endif
static int g_trace = -1; /* FUZZ_CHAMP_TRACE */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4), noreturn))
#endif
static void fz_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "fuzz_champ: FAIL %s:%d at op %ld: ", file, line, g_op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
#if defined(__GNUC__)
    if (__sanitizer_print_stack_trace)
        __sanitizer_print_stack_trace();
#endif
    fflush(stderr);
    abort();
}

#define FZ_CHECK(cond, ...)                                               \
    do {                                                                  \
        if (!(cond))                                                      \
            fz_fail(__FILE__, __LINE__, "(" #cond ") " __VA_ARGS__);      \
    } while (0)

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void trace(const char *fmt, ...) {
    if (g_trace < 0) {
        const char *e = getenv("FUZZ_CHAMP_TRACE");
        g_trace = e && *e && *e != '0' ? atoi(e) > 1 ? atoi(e) : 1 : 0;
    }
    if (!g_trace)
        return;
    va_list ap;
    fprintf(stderr, "[%ld] ", g_op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

static const char *st_name(champ_status s) {
    switch (s) {
    case CHAMP_OK: return "OK";
    case CHAMP_ENOMEM: return "ENOMEM";
    case CHAMP_EINVAL: return "EINVAL";
    case CHAMP_EKIND: return "EKIND";
    case CHAMP_EPOOL: return "EPOOL";
    case CHAMP_EMODIFIED: return "EMODIFIED";
    case CHAMP_ECORRUPT: return "ECORRUPT";
    case CHAMP_EUNSUPPORTED: return "EUNSUPPORTED";
    case CHAMP_EBUSY: return "EBUSY";
    }
    return "status(?)";
}

/* ------------------------------------------------------------------ */
/* Input                                                               */
/* ------------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *p;
    size_t n, i;
} rd;

static bool rd_more(const rd *r) { return r->i < r->n; }
static unsigned rd_u8(rd *r) { return r->i < r->n ? r->p[r->i++] : 0u; }
static unsigned rd_u16(rd *r) {
    unsigned lo = rd_u8(r);
    return lo | rd_u8(r) << 8;
}
/* In [0, n). */
static unsigned rd_below(rd *r, unsigned n) {
    if (n <= 1)
        return 0;
    return (n <= 256 ? rd_u8(r) : rd_u16(r)) % n;
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------------ */
/* The key universe (built once)                                       */
/* ------------------------------------------------------------------ */

/* u64 keys: three shapes of key i. */
#define U64_MUL 0x9e3779b97f4a7c15ULL
static uint64_t u64_inv; /* U64_MUL^-1 mod 2^64 */
static uint64_t u64_key(int shape, unsigned i) {
    switch (shape) {
    case 0: return i;
    case 1: return ~(uint64_t)i; /* UINT64_MAX down */
    default: return (uint64_t)i * U64_MUL;
    }
}
static long u64_id(int shape, uint64_t k) {
    uint64_t i = shape == 0 ? k : shape == 1 ? ~k : k * u64_inv;
    return i < UMAX ? (long)i : -1;
}

/* Byte keys: key 0 is empty, key 1 one byte; key i >= 2 ends with two
 * bytes that encode i (never NUL), after a prefix of a family: NULs, 'a's,
 * random bytes without NUL, random bytes.  Every 16th key is long (1030 to
 * 1109 bytes: around the pool's largest small block), every 64th very long
 * (2000 to 4199 bytes). */
static unsigned char *bk[UMAX];
static size_t bk_len[UMAX];
static bool bk_str[UMAX]; /* no NUL inside: usable with the _str forms */

static void universe_init(void) {
    static bool done;
    if (done)
        return;
    done = true;
    uint64_t x = U64_MUL; /* Newton: x = x * (2 - a x) */
    for (int i = 0; i < 6; i++)
        x *= 2 - U64_MUL * x;
    u64_inv = x;
    for (unsigned i = 0; i < UMAX; i++) {
        size_t len;
        uint64_t h = mix64(i + 77);
        if (i == 0)
            len = 0;
        else if (i == 1)
            len = 1;
        else if (i % 64 == 63)
            len = 2000 + h % 2200;
        else if (i % 16 == 7)
            len = 1030 + h % 80;
        else
            len = 2 + h % 40;
        unsigned char *b = malloc(len + 1);
        if (!b)
            abort();
        if (i == 1) {
            b[0] = 0x01;
        } else if (len >= 2) {
            unsigned fam = (unsigned)(h >> 40) % 4;
            for (size_t j = 0; j + 2 < len; j++) {
                uint64_t r = mix64(h + j);
                switch (fam) {
                case 0: b[j] = 0; break;
                case 1: b[j] = 'a'; break;
                case 2: b[j] = (unsigned char)(1 + r % 255); break;
                default: b[j] = (unsigned char)r; break;
                }
            }
            b[len - 2] = (unsigned char)(0x80 | (i & 0x7f));
            b[len - 1] = (unsigned char)(0x80 | (i >> 7));
        }
        b[len] = 0;
        bk[i] = b;
        bk_len[i] = len;
        bk_str[i] = strlen((const char *)b) == len;
    }
}

static long bytes_id(const void *p, size_t len) {
    const unsigned char *b = p;
    long id;
    if (len == 0)
        id = 0;
    else if (len == 1)
        id = 1;
    else
        id = (long)((b[len - 2] & 0x7f) | (unsigned)(b[len - 1] & 0x7f) << 7);
    if (id >= UMAX || bk_len[id] != len || (len && memcmp(p, bk[id], len)))
        return -1;
    return id;
}

/* ------------------------------------------------------------------ */
/* State of one input                                                  */
/* ------------------------------------------------------------------ */

typedef struct obj {
    uint64_t id;
    long held; /* references the maps and the program hold together */
} obj;

typedef struct slot {
    champ_map *m;
    uint64_t seq; /* creation order: the watermark frees the oldest */
    size_t count;
    uint64_t vid; /* version: two models with one vid hold the same root */
    int var;      /* type variant (TV_*) */
    unsigned tid; /* type instance: one per champ_new, kept by derived maps */
    uint8_t present[UMAX];
    void *val[UMAX];
    void *kptr[UMAX]; /* generic: the key object the map stores (NULL: either
                         of the two objects of the key, learnt when seen) */
} slot;

enum { HM_GOOD, HM_MOD64, HM_BITS, HM_CONST, HM_DEEP, HM_TOP3, NHM };
/* bytes_hash of byte-key configurations (extended format) */
enum { BH_NONE, BH_CONST, BH_BITS, BH_TINY, NBH };
enum { PM_DEFAULT, PM_BACKING, PM_FIXED, NPM };
/* type variants: the main config, another seed, the second pool, other
 * hashing callbacks (generic: compare toggled; bytes: bytes_hash toggled) */
enum { TV_MAIN, TV_SEED, TV_POOLB, TV_CB, NTV };
enum { OPC_NONE, OPC_READ, OPC_UPDATE, OPC_FREE };
enum {
    CB_HASH, CB_EQUAL, CB_KEY_RETAIN, CB_KEY_RELEASE, CB_VAL_RETAIN,
    CB_VAL_RELEASE, CB_VISIT, CB_WATERMARK, NCB,
    /* extended format only */
    CB_COMPARE = NCB, CB_BYTES_HASH, CB_VAL_EQUAL, CB_DIFF, CB_RESOLVE, CB_PRED,
    CB_UPDATE, NCB_EXT
};
static const char *const cb_names[NCB_EXT] = {
    "hash", "equal", "key_retain", "key_release", "val_retain",
    "val_release", "visit", "watermark", "compare", "bytes_hash", "val_equal",
    "diff", "resolve", "filter predicate", "update fn"};
enum {
    A_READ_SELF, A_COPY_SELF, A_PSET_SELF, A_SET_SELF, A_REMOVE_SELF,
    A_CLEAR_SELF, A_FREE_SELF, A_GET_OTHER, A_SET_OTHER, A_REMOVE_OTHER,
    A_CLEAR_OTHER, A_FREE_OTHER, A_COPY_OTHER, A_PSET_OTHER, NACT,
    /* extended format only */
    A_CELL_STORE_SELF = NACT, A_CELL_LOAD, A_UPSERT_SELF, NACT_EXT
};
static const char *const act_names[NACT_EXT] = {
    "read m", "copy m", "pset m", "set m", "remove m", "clear m", "free m",
    "get other", "set other", "remove other", "clear other", "free other",
    "copy other", "pset other", "cell store m", "cell load", "upsert m"};

/* A cell and what it holds. */
typedef struct cellm {
    champ_cell *c;
    bool typed;   /* has a type: made from a map, or stored into */
    int var;
    unsigned tid;
    bool ver;     /* holds a version (else empty) */
    bool unknown; /* holds a version whose contents are not known */
    slot mdl;     /* the version's contents (m unused) */
} cellm;

typedef struct fz {
    /* configuration */
    bool ext;     /* the extended input format */
    champ_key_kind kind;
    int hmode;
    uint64_t mask;
    unsigned U;
    int ushape;
    bool val_cb, key_cb, no_retain;
    bool set;     /* slots hold sets */
    int bhmode;   /* bytes_hash (BH_*) */
    uint64_t bmask;
    bool compare; /* generic: compare callback */
    bool concurrent, poolb_concurrent;
    bool collide; /* big batches */
    int pool_mode;
    size_t buf_size;
    bool wm_free_oldest;
    /* backing allocator */
    unsigned long a_calls;
    long a_fail_at;
    bool a_fail_persist;
    size_t a_live;
    /* the maps */
    champ_pool *pool, *poolb;
    champ_config cfg;
    champ_config cfgv[NTV];
    slot s[NSLOT];
    cellm cell[NCELL];
    uint64_t seq, vidc;
    unsigned tidc;
    obj keys[UMAX], probes[UMAX], vals[NVAL];
    bool fail_after_armed;
    /* the operation running (what callbacks act on) */
    int op_class;
    int op_slot;      /* the map m of the operation, or -1 */
    int op_slot2;     /* the other input of a two-map read, or -1 */
    int op_dst;       /* a p-form's destination slot (reserved), or -1 */
    int pinned;       /* a slot being iterated: never freed meanwhile */
    long op_key;      /* key the operation changes, or -1 */
    bool op_clears;   /* clear/free: m may read as empty */
    bool new_present; /* op_key after the operation */
    void *new_val;
    const slot *post; /* a batch: m's contents after the operation */
    bool in_update_fn;/* an update's fn runs (the key is in with its old value
                         or NULL) */
    champ_cell *dying_cell; /* the cell champ_cell_free is freeing: its
                               callbacks' calls on it get CHAMP_EBUSY (KB9) */
    bool op_slot_died; /* m was freed (deferred) by a callback */
    bool op_slot2_died;
    /* hostile callbacks */
    bool h_armed;
    int h_cb, h_act;
    unsigned h_countdown, h_key, h_slot, h_val;
    bool in_action;
    unsigned long actions;
    unsigned long wm_calls;
    int wm_depth; /* inside the watermark callback */
    /* scratch */
    uint8_t seen[UMAX];
    unsigned char kbuf[BK_LONG_MAX + 8];
    unsigned char kbuf_cb[BK_LONG_MAX + 8]; /* for callbacks: the caller's
                                                key must stay intact */
} fz;

static fz F;
static _Alignas(64) unsigned char fixed_buf[256 * 1024];
static FILE *devnull;

static const char *kind_name(void) {
    return F.kind == CHAMP_KEY_U64 ? "u64" : F.kind == CHAMP_KEY_BYTES ? "bytes" : "generic";
}

static bool enomem_ok(void) {
    return F.pool_mode == PM_FIXED || (F.pool_mode == PM_BACKING && F.a_fail_at >= 0) ||
           F.fail_after_armed;
}

static bool copies_ok(void) { return !F.no_retain; }


/* KB3: an in-place remove that may meet a failed allocation in an arena. */
static bool kb3_avoid(void) {
    return KB3_WORKAROUND && F.pool_mode != PM_FIXED &&
           (F.fail_after_armed || (F.pool_mode == PM_BACKING && F.a_fail_at >= 0));
}

/* ------------------------------------------------------------------ */
/* Backing allocator (counts bytes, fails on demand)                   */
/* ------------------------------------------------------------------ */

static bool a_fails(void) {
    unsigned long c = F.a_calls++;
    if (F.a_fail_at < 0)
        return false;
    return F.a_fail_persist ? c >= (unsigned long)F.a_fail_at
                            : c == (unsigned long)F.a_fail_at;
}

static void *a_malloc(size_t size, void *ctx) {
    (void)ctx;
    if (a_fails())
        return NULL;
    void *p = malloc(size);
    if (p)
        F.a_live += size;
    return p;
}

static void *a_realloc(void *ptr, size_t old, size_t size, void *ctx) {
    (void)ctx;
    if (a_fails())
        return NULL;
    void *p = realloc(ptr, size);
    if (p)
        F.a_live = F.a_live - old + size;
    return p;
}

static void a_free(void *ptr, size_t size, void *ctx) {
    (void)ctx;
    if (!ptr)
        return;
    FZ_CHECK(F.a_live >= size, "backing free of %zu bytes, %zu live", size, F.a_live);
    F.a_live -= size;
    free(ptr);
}

static const champ_allocator a_alloc = {a_malloc, a_realloc, a_free, NULL};

/* ------------------------------------------------------------------ */
/* Objects and reference counting                                      */
/* ------------------------------------------------------------------ */

static bool is_obj(const void *p) {
    const obj *o = p;
    return (o >= F.keys && o < F.keys + UMAX) || (o >= F.probes && o < F.probes + UMAX) ||
           (o >= F.vals && o < F.vals + NVAL);
}

static long g_held; /* the sum of every object's held */

static void ref_in(void *p) {
    if (p) {
        ((obj *)p)->held++;
        g_held++;
    }
}

static void ref_out(void *p, const char *what) {
    if (!p)
        return;
    obj *o = p;
    FZ_CHECK(o->held > 0, "%s of object %llu that nothing holds (double release)", what,
             (unsigned long long)o->id);
    o->held--;
    g_held--;
}

/* Values: counted objects with callbacks, else tokens. */
static void *value(unsigned v) {
    if (F.set)
        return NULL; /* sets hold no values */
    v %= NVAL + 1;
    if (v == NVAL)
        return NULL;
    return F.val_cb ? (void *)&F.vals[v] : (void *)(uintptr_t)(16 * v + 16);
}

static void hand_in_val(void *v) {
    if (F.val_cb)
        ref_in(v);
}
static void hand_back_val(void *v) {
    if (F.val_cb)
        ref_out(v, "hand back of a value");
}
static void hand_in_key(void *k) {
    if (F.key_cb)
        ref_in(k);
}
static void hand_back_key(void *k) {
    if (F.key_cb)
        ref_out(k, "hand back of a key");
}

static long total_held(void) { return g_held; }

/* ------------------------------------------------------------------ */
/* Model                                                               */
/* ------------------------------------------------------------------ */

static void bump(slot *s) { s->vid = ++F.vidc; }

static void model_clear(slot *s) {
    memset(s->present, 0, F.U);
    memset(s->val, 0, F.U * sizeof(void *));
    memset(s->kptr, 0, F.U * sizeof(void *));
    s->count = 0;
    bump(s);
}

/* The contents and the version (not the type). */
static void model_copy(slot *d, const slot *s) {
    memcpy(d->present, s->present, F.U);
    memcpy(d->val, s->val, F.U * sizeof(void *));
    memcpy(d->kptr, s->kptr, F.U * sizeof(void *));
    d->count = s->count;
    d->vid = s->vid;
}

static void type_copy(slot *d, const slot *s) {
    d->var = s->var;
    d->tid = s->tid;
}

/* Key k now present with v (kused: the generic key a new entry stores). */
static void model_put(slot *s, unsigned k, void *v, void *kused) {
    if (!s->present[k]) {
        s->present[k] = 1;
        s->count++;
        s->kptr[k] = kused;
    }
    s->val[k] = v;
    bump(s);
}

static void model_del(slot *s, unsigned k) {
    if (s->present[k]) {
        s->present[k] = 0;
        s->count--;
        s->val[k] = NULL;
        s->kptr[k] = NULL;
    }
    bump(s);
}

static bool model_equal(const slot *a, const slot *b) {
    if (a->count != b->count)
        return false;
    for (unsigned k = 0; k < F.U; k++)
        if (a->present[k] != b->present[k] || (a->present[k] && a->val[k] != b->val[k]))
            return false;
    return true;
}

static int empty_slot(int from) {
    for (int j = 0; j < NSLOT; j++) {
        int i = (from + j) % NSLOT;
        if (!F.s[i].m && i != F.op_dst && i != F.op_slot && i != F.op_slot2)
            return i;
    }
    return -1;
}

static int live_slot(int from) {
    for (int j = 0; j < NSLOT; j++) {
        int i = (from + j) % NSLOT;
        if (F.s[i].m)
            return i;
    }
    return -1;
}

static champ_pool *var_pool(int var) { return var == TV_POOLB ? F.poolb : F.pool; }

/* Live slots of pool p. */
static int nlive_pool(const champ_pool *p) {
    int n = 0;
    for (int i = 0; i < NSLOT; i++)
        n += F.s[i].m != NULL && var_pool(F.s[i].var) == p;
    return n;
}

/* ------------------------------------------------------------------ */
/* Keys per kind                                                       */
/* ------------------------------------------------------------------ */

static uint64_t ghash(const obj *o) {
    uint64_t id = o->id;
    switch (F.hmode) {
    case HM_GOOD: return mix64(id ^ 0x5bd1e9955bd1e995ULL);
    case HM_MOD64: return id % 64;
    case HM_BITS: return mix64(id) & F.mask;
    case HM_CONST: return 0x0123456789abcdefULL;
    case HM_DEEP: return 0x000a5a5a5a5a5a5aULL | (mix64(id) << 52);
    default: return (mix64(id) << 61) | 0x0123456789abcdefULL >> 3;
    }
}

/* How a key is passed (a byte of the program): bit 0 a probe object equal
 * to the key (generic) / the _str form (bytes), bit 1 a scratch copy
 * scribbled over after the call (bytes), bit 2 NULL for the empty key. */
typedef struct kpass {
    uint64_t u;
    const void *p;
    size_t len;
    bool str;
    void *g;
} kpass;

static kpass key_pass(unsigned k, unsigned how) {
    kpass kp;
    memset(&kp, 0, sizeof kp);
    switch (F.kind) {
    case CHAMP_KEY_U64:
        kp.u = u64_key(F.ushape, k);
        break;
    case CHAMP_KEY_BYTES:
        kp.len = bk_len[k];
        kp.p = bk[k];
        if ((how & 1) && bk_str[k])
            kp.str = true;
        if (how & 2) {
            unsigned char *buf = F.in_action ? F.kbuf_cb : F.kbuf;
            memcpy(buf, bk[k], kp.len + 1);
            kp.p = buf;
        }
        if (kp.len == 0 && (how & 4) && !kp.str)
            kp.p = NULL;
        break;
    default:
        kp.g = (how & 1) ? &F.probes[k] : &F.keys[k];
        break;
    }
    return kp;
}

static void key_done(const kpass *kp) {
    if (kp->p == F.kbuf || kp->p == F.kbuf_cb)
        memset((void *)(uintptr_t)kp->p, 0xAA, kp->len + 1);
}

static bool k_get(const champ_map *m, const kpass *kp, void **v) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_get_u64(m, kp->u, v);
    case CHAMP_KEY_BYTES:
        return kp->str ? champ_get_str(m, kp->p, v) : champ_get_bytes(m, kp->p, kp->len, v);
    default: return champ_get(m, kp->g, v);
    }
}

static bool k_contains(const champ_map *m, const kpass *kp) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_contains_u64(m, kp->u);
    case CHAMP_KEY_BYTES:
        return kp->str ? champ_contains_str(m, kp->p) : champ_contains_bytes(m, kp->p, kp->len);
    default: return champ_contains(m, kp->g);
    }
}

static champ_status k_set(champ_map *m, const kpass *kp, void *v, champ_prior *pr) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_set_u64(m, kp->u, v, pr);
    case CHAMP_KEY_BYTES:
        return kp->str ? champ_set_str(m, kp->p, v, pr) : champ_set_bytes(m, kp->p, kp->len, v, pr);
    default: return champ_set(m, kp->g, v, pr);
    }
}

static champ_status k_remove(champ_map *m, const kpass *kp, champ_prior *pr) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_remove_u64(m, kp->u, pr);
    case CHAMP_KEY_BYTES:
        return kp->str ? champ_remove_str(m, kp->p, pr) : champ_remove_bytes(m, kp->p, kp->len, pr);
    default: return champ_remove(m, kp->g, pr);
    }
}

static champ_status k_pset(const champ_map *m, const kpass *kp, void *v, champ_map **out) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_pset_u64(m, kp->u, v, out);
    case CHAMP_KEY_BYTES:
        return kp->str ? champ_pset_str(m, kp->p, v, out) : champ_pset_bytes(m, kp->p, kp->len, v, out);
    default: return champ_pset(m, kp->g, v, out);
    }
}

static champ_status k_premove(const champ_map *m, const kpass *kp, champ_map **out) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_premove_u64(m, kp->u, out);
    case CHAMP_KEY_BYTES:
        return kp->str ? champ_premove_str(m, kp->p, out) : champ_premove_bytes(m, kp->p, kp->len, out);
    default: return champ_premove(m, kp->g, out);
    }
}

static champ_status k_add(champ_map *m, const kpass *kp, bool *added) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_add_u64(m, kp->u, added);
    case CHAMP_KEY_BYTES:
        return kp->str ? champ_add_str(m, kp->p, added) : champ_add_bytes(m, kp->p, kp->len, added);
    default: return champ_add(m, kp->g, added);
    }
}

static champ_status k_upsert(champ_map *m, const kpass *kp, void ***slotp, bool *found) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_upsert_u64(m, kp->u, slotp, found);
    case CHAMP_KEY_BYTES: return champ_upsert_bytes(m, kp->p, kp->len, slotp, found);
    default: return champ_upsert(m, kp->g, slotp, found);
    }
}

static champ_status k_update(champ_map *m, const kpass *kp, champ_update_fn fn, void *ctx) {
    switch (F.kind) {
    case CHAMP_KEY_U64: return champ_update_u64(m, kp->u, fn, ctx);
    case CHAMP_KEY_BYTES: return champ_update_bytes(m, kp->p, kp->len, fn, ctx);
    default: return champ_update(m, kp->g, fn, ctx);
    }
}

/* A key as champ_apply takes it (and iteration reports it). */
static champ_key key_of(const kpass *kp) {
    champ_key k;
    memset(&k, 0, sizeof k);
    switch (F.kind) {
    case CHAMP_KEY_U64: k.u64 = kp->u; break;
    case CHAMP_KEY_BYTES: k.ptr = kp->p; k.len = kp->len; break;
    default: k.ptr = kp->g; break;
    }
    return k;
}

/* The universe index of a key reported by iteration, or -1. */
static long key_id(const champ_key *k) {
    switch (F.kind) {
    case CHAMP_KEY_U64: {
        long id = u64_id(F.ushape, k->u64);
        return id >= 0 && (unsigned)id < F.U ? id : -1;
    }
    case CHAMP_KEY_BYTES: {
        if (!k->ptr)
            return -1;
        long id = bytes_id(k->ptr, k->len);
        if (id < 0 || (unsigned)id >= F.U || ((const char *)k->ptr)[k->len] != '\0')
            return -1;
        return id;
    }
    default: {
        const obj *o = k->ptr;
        if (!o || k->len != 0 || !is_obj(o) || o->id == 0 || o->id > F.U)
            return -1;
        long id = (long)o->id - 1;
        return (o == &F.keys[id] || o == &F.probes[id]) ? id : -1;
    }
    }
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

/* Key k of map m against the model of slot s. */
static void check_key(const champ_map *m, const slot *s, unsigned k, unsigned how,
                      const char *what) {
    kpass kp = key_pass(k, how);
    void *junk = (void *)(uintptr_t)0xdead0;
    void *got = junk;
    bool found = (how & 8) ? k_contains(m, &kp) : k_get(m, &kp, &got);
    key_done(&kp);
    if (s->present[k]) {
        FZ_CHECK(found, "%s: key %u absent, model has it", what, k);
        if (!(how & 8))
            FZ_CHECK(got == s->val[k], "%s: key %u value %p, model %p", what, k, got, s->val[k]);
    } else {
        FZ_CHECK(!found, "%s: key %u present, model has not", what, k);
        FZ_CHECK(got == junk, "%s: get of absent key %u wrote *val_out", what, k);
    }
}

/* Every key of the universe and the size. */
static void check_all(int i, const char *what) {
    slot *s = &F.s[i];
    for (unsigned k = 0; k < F.U; k++)
        check_key(s->m, s, k, k & 1, what);
    FZ_CHECK(champ_size(s->m) == s->count, "%s: slot %d size %zu, model %zu", what, i,
             champ_size(s->m), s->count);
}

static void check_valid(int i, const char *what) {
    tot.validates++;
    champ_status st = champ_validate(F.s[i].m);
    FZ_CHECK(st == CHAMP_OK, "%s: validate slot %d: %s", what, i, st_name(st));
}

/* One reported entry of slot s (seen[] marks ids already reported); an
 * unknown generic key object is learnt. */
static void check_entry(slot *s, const champ_key *k, void *const *v, const char *what) {
    long id = k ? key_id(k) : -1;
    FZ_CHECK(!k || id >= 0, "%s: iteration reported a key outside the universe", what);
    if (id < 0)
        return;
    FZ_CHECK(!F.seen[id], "%s: key %ld reported twice", what, id);
    F.seen[id] = 1;
    FZ_CHECK(s->present[id], "%s: reported key %ld is not in the model", what, id);
    if (v)
        FZ_CHECK(*v == s->val[id], "%s: key %ld reported with value %p, model %p", what, id, *v,
                 s->val[id]);
    if (F.kind == CHAMP_KEY_GENERIC) {
        if (!s->kptr[id])
            s->kptr[id] = (void *)(uintptr_t)k->ptr; /* either object: learnt */
        FZ_CHECK(k->ptr == s->kptr[id], "%s: key %ld reported with another key object", what,
                 id);
    }
}

/* Iterates slot i's map: every entry against the model (and the count);
 * learns the key objects the model does not know. */
static void check_iter_m(slot *s, const champ_map *m, const char *what) {
    champ_iter it;
    champ_key k;
    void *v;
    size_t n = 0;
    FZ_CHECK(champ_iter_init(&it, m) == CHAMP_OK, "%s: iter_init", what);
    memset(F.seen, 0, F.U);
    while (champ_iter_next(&it, &k, &v)) {
        check_entry(s, &k, &v, what);
        n++;
    }
    FZ_CHECK(champ_iter_status(&it) == CHAMP_OK, "%s: iteration status %s", what,
             st_name(champ_iter_status(&it)));
    FZ_CHECK(n == s->count, "%s: iteration gave %zu entries, model %zu", what, n, s->count);
    FZ_CHECK(champ_size(m) == s->count, "%s: size %zu, model %zu", what, champ_size(m),
             s->count);
}

static void check_iter(int i, const char *what) { check_iter_m(&F.s[i], F.s[i].m, what); }

/* Sets s's model from m's entries (contents not known: a cell stored from
 * a callback mid-update); checks that they are keys of the universe. */
static void model_learn(slot *s, const champ_map *m, const char *what) {
    model_clear(s);
    champ_iter it;
    champ_key k;
    void *v;
    FZ_CHECK(champ_iter_init(&it, m) == CHAMP_OK, "%s: iter_init", what);
    while (champ_iter_next(&it, &k, &v)) {
        long id = key_id(&k);
        FZ_CHECK(id >= 0, "%s: a key outside the universe", what);
        FZ_CHECK(!s->present[id], "%s: key %ld twice", what, id);
        FZ_CHECK(!F.set || v == NULL, "%s: a set reported a value", what);
        model_put(s, (unsigned)id, v, F.kind == CHAMP_KEY_GENERIC ? (void *)(uintptr_t)k.ptr
                                                                   : NULL);
    }
    FZ_CHECK(champ_iter_status(&it) == CHAMP_OK, "%s: iteration status %s", what,
             st_name(champ_iter_status(&it)));
    FZ_CHECK(s->count == champ_size(m), "%s: %zu entries, size %zu", what, s->count,
             champ_size(m));
}

/* ------------------------------------------------------------------ */
/* Hostile callbacks                                                   */
/* ------------------------------------------------------------------ */

static void kill_slot(int i) {
    F.s[i].m = NULL;
    model_clear(&F.s[i]);
    if (i == F.op_slot)
        F.op_slot_died = true;
    if (i == F.op_slot2)
        F.op_slot2_died = true;
}

static void free_slot(int i) {
    champ_map *m = F.s[i].m;
    kill_slot(i);
    champ_free(m); /* deferred if m is mid-operation */
}

/* Another live slot than the operation's (and not pinned), or -1. */
static int other_slot(unsigned hint) {
    for (int j = 0; j < NSLOT; j++) {
        int i = (int)((hint + (unsigned)j) % NSLOT);
        if (F.s[i].m && i != F.op_slot && i != F.op_slot2 && i != F.pinned)
            return i;
    }
    return -1;
}

/* Ownership moves to the map before an update that may take it: a callback
 * may free the map (deferred to the end of the call) and so release the
 * value inside the call.  undo_in takes it back when the call failed. */
static void pre_in(const kpass *kp, void *v, bool had) {
    hand_in_val(v);
    if (!had)
        hand_in_key(kp->g);
}

static void undo_in(const kpass *kp, void *v, bool had) {
    if (F.val_cb && v) {
        ((obj *)v)->held--;
        g_held--;
    }
    if (F.key_cb && !had && kp->g) {
        ((obj *)kp->g)->held--;
        g_held--;
    }
}

/* What an update of slot i with key k did (status st, prior pr); the
 * value and key were handed in with pre_in. */
static void after_set(int i, unsigned k, const kpass *kp, void *v, champ_status st,
                      const champ_prior *pr, bool had, void *oldv, const char *what) {
    slot *s = &F.s[i];
    if (st != CHAMP_OK) {
        undo_in(kp, v, had);
        return;
    }
    if (pr) {
        FZ_CHECK(pr->found == had, "%s: set prior.found %d, model %d", what, pr->found, had);
        FZ_CHECK(pr->val == (had ? oldv : NULL), "%s: set prior.val %p, model %p", what,
                 pr->val, had ? oldv : NULL);
        FZ_CHECK(pr->key == NULL, "%s: set prior.key not NULL", what);
        if (had)
            hand_back_val(pr->val);
    }
    if (s->m)
        model_put(s, k, v, kp->g);
}

static void after_remove(int i, unsigned k, champ_status st, const champ_prior *pr, bool had,
                         void *oldv, void *oldk, const char *what) {
    slot *s = &F.s[i];
    if (st != CHAMP_OK)
        return;
    if (pr) {
        FZ_CHECK(pr->found == had, "%s: remove prior.found %d, model %d", what, pr->found, had);
        FZ_CHECK(pr->val == (had ? oldv : NULL), "%s: remove prior.val %p, model %p", what,
                 pr->val, had ? oldv : NULL);
        void *wk = had && F.kind == CHAMP_KEY_GENERIC ? oldk : NULL;
        if (had && F.kind == CHAMP_KEY_GENERIC && !oldk) /* either object */
            wk = pr->key == (void *)&F.probes[k] ? (void *)&F.probes[k] : (void *)&F.keys[k];
        FZ_CHECK(pr->key == wk, "%s: remove prior.key %p, want %p", what, pr->key, wk);
        if (had) {
            hand_back_val(pr->val);
            hand_back_key(pr->key);
        }
    }
    if (s->m)
        model_del(s, k); /* (a new version even when k was absent) */
}

/* A status from inside a callback: ok, or ENOMEM where memory can run out. */
static void want_ok(champ_status st, const char *what) {
    FZ_CHECK(st == CHAMP_OK || (st == CHAMP_ENOMEM && enomem_ok()),
             "%s from a callback: %s", what, st_name(st));
}

static void run_action(int cb) {
    int self = F.op_slot;
    bool reading = F.op_class == OPC_READ;
    unsigned k = F.h_key % F.U;
    char what[96];
    snprintf(what, sizeof what, "%s callback doing \"%s\" (%s of slot %d)", cb_names[cb],
             act_names[F.h_act], reading ? "read" : F.op_class == OPC_FREE ? "free" : "update",
             self);
    trace("  callback %s", what);
    F.actions++;
    champ_map *m = self >= 0 ? F.s[self].m : NULL;
    int act = F.h_act;
    if (act <= A_FREE_SELF && (!m || F.op_slot_died))
        return; /* m is already going */
    if (act == A_FREE_SELF && self == F.pinned)
        return; /* an iterator of the program uses it */
    if (KB1_WORKAROUND && F.wm_depth && reading && act >= A_SET_SELF && act <= A_FREE_SELF)
        return;
    switch (act) {
    case A_READ_SELF: {
        /* the contents before or after the operation, never a mix */
        unsigned kk = (F.op_key >= 0 && (F.h_key & 0x100)) ? (unsigned)F.op_key : k;
        void *junk = (void *)(uintptr_t)0xdead0, *got = junk;
        kpass kp = key_pass(kk, F.h_val);
        bool found = k_get(m, &kp, &got);
        key_done(&kp);
        const slot *s = &F.s[self];
        bool old_ok = found ? s->present[kk] && got == s->val[kk] : !s->present[kk];
        bool new_ok;
        if (F.op_clears)
            new_ok = !found;
        else if (F.post && !reading)
            new_ok = found ? F.post->present[kk] && got == F.post->val[kk] : !F.post->present[kk];
        else if ((long)kk == F.op_key && !reading)
            new_ok = found ? F.new_present && got == F.new_val : !F.new_present;
        else
            new_ok = old_ok;
        /* champ_update of an absent key, in a type that cannot share (a
         * release without a retain): the key is in m with no value while fn
         * runs (champ.h, champ_update) */
        if (cb == CB_UPDATE && !copies_ok() && (long)kk == F.op_key && !s->present[kk] &&
            found && got == NULL)
            new_ok = true;
        FZ_CHECK(old_ok || new_ok, "%s: key %u found %d value %p", what, kk, found, got);
        break;
    }
    case A_COPY_SELF:
    case A_PSET_SELF: {
        int d = empty_slot((int)F.h_slot);
        if (d < 0)
            return;
        champ_map *out = NULL;
        kpass kp = key_pass(k, F.h_val);
        void *v = value(F.h_val);
        bool had = F.s[self].present[k];
        if (act == A_PSET_SELF)
            pre_in(&kp, v, had);
        champ_status st = act == A_COPY_SELF ? champ_copy(m, &out) : k_pset(m, &kp, v, &out);
        key_done(&kp);
        if (st != CHAMP_OK && act == A_PSET_SELF)
            undo_in(&kp, v, had);
        if (!copies_ok()) {
            FZ_CHECK(st == CHAMP_EINVAL || (st == CHAMP_EBUSY && !reading), "%s: %s", what,
                     st_name(st));
        } else if (!reading) {
            FZ_CHECK(st == CHAMP_EBUSY, "%s: %s, want EBUSY", what, st_name(st));
        } else {
            want_ok(st, what);
        }
        if (st != CHAMP_OK) {
            FZ_CHECK(out == NULL, "%s failed but *out set", what);
            return;
        }
        slot *ds = &F.s[d];
        ds->m = out;
        ds->seq = ++F.seq;
        model_copy(ds, &F.s[self]);
        type_copy(ds, &F.s[self]);
        if (act == A_PSET_SELF)
            model_put(ds, k, v, kp.g);
        break;
    }
    case A_SET_SELF:
    case A_REMOVE_SELF:
    case A_CLEAR_SELF: {
        kpass kp = key_pass(k, F.h_val);
        champ_prior pr;
        champ_status st = act == A_SET_SELF      ? k_set(m, &kp, value(F.h_val), &pr)
                          : act == A_REMOVE_SELF ? k_remove(m, &kp, &pr)
                                                 : champ_clear(m);
        key_done(&kp);
        FZ_CHECK(st == CHAMP_EBUSY, "%s: %s, want EBUSY", what, st_name(st));
        break;
    }
    case A_FREE_SELF:
        free_slot(self); /* deferred: the operation goes on */
        break;
    case A_UPSERT_SELF: {
        if (!m || F.op_slot_died)
            return;
        kpass kp = key_pass(k, F.h_val);
        void **sp = (void **)(uintptr_t)0xbad0;
        bool found = true;
        champ_status st = k_upsert(m, &kp, &sp, &found);
        key_done(&kp);
        FZ_CHECK(st == (F.set ? CHAMP_EINVAL : CHAMP_EBUSY), "%s: %s", what, st_name(st));
        FZ_CHECK(sp == (void **)(uintptr_t)0xbad0 && found, "%s: refused upsert wrote", what);
        break;
    }
    case A_CELL_STORE_SELF: {
        cellm *c = &F.cell[F.h_slot % NCELL];
        if (!m || F.op_slot_died || !c->c)
            return;
        slot *s = &F.s[self];
        champ_status st = champ_cell_store(c->c, m);
        if (!copies_ok()) { /* release without retain: no sharing (KB4) */
            FZ_CHECK(st == CHAMP_EINVAL, "%s: no retain: %s, want EINVAL", what, st_name(st));
            return;
        }
        /* an update or free of m: storing m is a copy of m, refused there
         * (the cell kept nodes the update then changed or freed, found by
         * this target: concurrent.cell_from_callback) */
        if (!reading) {
            FZ_CHECK(st == CHAMP_EBUSY, "%s: %s, want EBUSY", what, st_name(st));
            return;
        }
        if (c->typed && c->tid != s->tid) {
            FZ_CHECK(st == CHAMP_EPOOL, "%s: another type: %s, want EPOOL", what, st_name(st));
            return;
        }
        /* a concurrent pool's store allocates its record first: under a
         * failing pool, CHAMP_ENOMEM and the cell unchanged */
        if (st == CHAMP_ENOMEM && enomem_ok())
            return;
        /* a read of m: its contents */
        FZ_CHECK(st == CHAMP_OK, "%s: %s", what, st_name(st));
        c->typed = c->ver = true;
        c->tid = s->tid;
        c->var = s->var;
        c->unknown = false;
        model_copy(&c->mdl, s);
        break;
    }
    case A_CELL_LOAD: {
        cellm *c = &F.cell[F.h_slot % NCELL];
        int d = empty_slot((int)F.h_slot + 5);
        if (!c->c || d < 0)
            return;
        champ_map *out = (champ_map *)(uintptr_t)0xbad0;
        champ_status st = champ_cell_load(c->c, &out);
        if (c->c == F.dying_cell) {
            /* the cell whose free runs this callback (KB9) */
            FZ_CHECK(st == CHAMP_EBUSY && out == NULL, "%s of the cell being freed: %s%s",
                     what, st_name(st), out ? " and *out set" : "");
            return;
        }
        want_ok(st, what);
        if (st != CHAMP_OK || !c->ver) {
            FZ_CHECK(out == NULL, "%s: %s and *out set", what, st_name(st));
            return;
        }
        FZ_CHECK(out != NULL, "%s: OK and NULL", what);
        slot *ds = &F.s[d];
        ds->m = out;
        ds->seq = ++F.seq;
        ds->var = c->var;
        ds->tid = c->tid;
        if (c->unknown) {
            model_learn(ds, out, what);
            model_copy(&c->mdl, ds);
            c->unknown = false;
        } else {
            model_copy(ds, &c->mdl);
        }
        break;
    }
    default: {
        int o = other_slot(F.h_slot);
        if (o < 0)
            return;
        slot *os = &F.s[o];
        kpass kp = key_pass(k, F.h_val);
        switch (act) {
        case A_GET_OTHER:
            check_key(os->m, os, k, F.h_val, what);
            break;
        case A_SET_OTHER: {
            void *v = value(F.h_val);
            bool had = os->present[k];
            void *oldv = os->val[k];
            champ_prior pr;
            pre_in(&kp, v, had);
            champ_status st = k_set(os->m, &kp, v, &pr);
            want_ok(st, what);
            after_set(o, k, &kp, v, st, &pr, had, oldv, what);
            break;
        }
        case A_REMOVE_OTHER: {
            if (kb3_avoid())
                break;
            bool had = os->present[k];
            void *oldv = os->val[k], *oldk = os->kptr[k];
            champ_prior pr;
            champ_status st = k_remove(os->m, &kp, &pr);
            want_ok(st, what);
            after_remove(o, k, st, &pr, had, oldv, oldk, what);
            break;
        }
        case A_CLEAR_OTHER: {
            champ_status st = champ_clear(os->m);
            FZ_CHECK(st == CHAMP_OK, "%s: %s", what, st_name(st));
            model_clear(os);
            break;
        }
        case A_FREE_OTHER:
            free_slot(o);
            break;
        case A_COPY_OTHER:
        case A_PSET_OTHER: {
            int d = empty_slot((int)F.h_slot + 3);
            if (d < 0)
                break;
            champ_map *out = NULL;
            void *v = value(F.h_val);
            bool had = os->present[k];
            if (act == A_PSET_OTHER)
                pre_in(&kp, v, had);
            champ_status st = act == A_COPY_OTHER ? champ_copy(os->m, &out)
                                                  : k_pset(os->m, &kp, v, &out);
            if (st != CHAMP_OK && act == A_PSET_OTHER)
                undo_in(&kp, v, had);
            if (!copies_ok())
                FZ_CHECK(st == CHAMP_EINVAL, "%s: %s, want EINVAL", what, st_name(st));
            else
                want_ok(st, what);
            if (st != CHAMP_OK) {
                FZ_CHECK(out == NULL, "%s failed but *out set", what);
                break;
            }
            slot *ds = &F.s[d];
            ds->m = out;
            ds->seq = ++F.seq;
            model_copy(ds, os);
            type_copy(ds, os);
            if (act == A_PSET_OTHER)
                model_put(ds, k, v, kp.g);
            break;
        }
        }
        key_done(&kp);
        break;
    }
    }
}

static void hook(int cb) {
    if (!F.h_armed || F.in_action || F.op_class == OPC_NONE || F.h_cb != cb)
        return;
    if (F.h_countdown > 0) {
        F.h_countdown--;
        return;
    }
    F.h_armed = false;
    F.in_action = true;
    run_action(cb);
    F.in_action = false;
}

static uint64_t cb_hash(const void *k, void *ctx) {
    FZ_CHECK(ctx == &F && is_obj(k), "hash callback: bad key or ctx");
    hook(CB_HASH);
    return ghash(k);
}

static bool cb_equal(const void *a, const void *b, void *ctx) {
    FZ_CHECK(ctx == &F && is_obj(a) && is_obj(b), "equal callback: bad key or ctx");
    hook(CB_EQUAL);
    return ((const obj *)a)->id == ((const obj *)b)->id;
}

static void cb_key_retain(void *p, void *ctx) {
    FZ_CHECK(ctx == &F && is_obj(p), "key_retain callback: bad key or ctx");
    ref_in(p);
    hook(CB_KEY_RETAIN);
}

static void cb_key_release(void *p, void *ctx) {
    FZ_CHECK(ctx == &F && is_obj(p), "key_release callback: bad key or ctx");
    ref_out(p, "key_release");
    hook(CB_KEY_RELEASE);
}

static void cb_val_retain(void *p, void *ctx) {
    FZ_CHECK(ctx == &F && (!p || is_obj(p)), "val_retain callback: bad value or ctx");
    ref_in(p);
    hook(CB_VAL_RETAIN);
}

static void cb_val_release(void *p, void *ctx) {
    FZ_CHECK(ctx == &F && (!p || is_obj(p)), "val_release callback: bad value or ctx");
    ref_out(p, "val_release");
    hook(CB_VAL_RELEASE);
}

/* Frees the oldest version (the intended use of a watermark). */
static void cb_watermark(champ_pool *p, size_t live, size_t cap, void *ctx) {
    FZ_CHECK(ctx == &F && p == F.pool && live <= cap, "watermark: bad arguments");
    F.wm_calls++;
    F.wm_depth++;
    if (F.wm_free_oldest && !F.in_action) {
        int oldest = -1;
        for (int i = 0; i < NSLOT; i++) {
            if (KB1_WORKAROUND && F.op_class == OPC_READ && i == F.op_slot)
                continue;
            if (F.s[i].m && i != F.pinned && (oldest < 0 || F.s[i].seq < F.s[oldest].seq))
                oldest = i;
        }
        if (oldest >= 0) {
            trace("  watermark frees slot %d", oldest);
            F.actions++;
            free_slot(oldest);
        }
    }
    hook(CB_WATERMARK);
    F.wm_depth--;
}

/* Generic keys' total order (the key ids), consistent with cb_equal. */
static int cb_compare(const void *a, const void *b, void *ctx) {
    FZ_CHECK(ctx == &F && is_obj(a) && is_obj(b), "compare callback: bad key or ctx");
    hook(CB_COMPARE);
    uint64_t x = ((const obj *)a)->id, y = ((const obj *)b)->id;
    return (x > y) - (x < y);
}

static uint64_t fnv1a(const void *p, size_t len) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/* Weak byte hashes: a constant (every key collides), a few bits of a real
 * hash (a few big collision nodes), three values. */
static uint64_t bytes_hash_mode(int mode, const void *key, size_t len, uint64_t seed) {
    uint64_t h = fnv1a(key, len);
    switch (mode) {
    case BH_CONST: return 0x0123456789abcdefULL;
    case BH_BITS: return mix64(h ^ seed) & F.bmask;
    default: return (h % 3) * 0x9e3779b97f4a7c15ULL;
    }
}

static uint64_t cb_bytes_hash(const void *key, size_t len, uint64_t seed, void *ctx) {
    FZ_CHECK(ctx == &F && (key || len == 0), "bytes_hash callback: bad key or ctx");
    hook(CB_BYTES_HASH);
    return bytes_hash_mode(F.bhmode, key, len, seed);
}

/* The TV_CB variant's bytes_hash when the main type has none. */
static uint64_t cb_bytes_hash_alt(const void *key, size_t len, uint64_t seed, void *ctx) {
    FZ_CHECK(ctx == &F && (key || len == 0), "bytes_hash callback: bad key or ctx");
    hook(CB_BYTES_HASH);
    return bytes_hash_mode(BH_TINY, key, len, seed);
}

/* ------------------------------------------------------------------ */
/* Operations                                                          */
/* ------------------------------------------------------------------ */

/* Starts a top-level operation on slot i. */
static void op_begin(int cls, int i, long key) {
    F.op_class = cls;
    F.op_slot = i;
    F.op_key = key;
    F.op_slot2 = -1;
    F.op_clears = false;
    F.op_slot_died = false;
    F.op_slot2_died = false;
    F.new_present = false;
    F.new_val = NULL;
    F.post = NULL;
    F.in_update_fn = false;
}

static void op_finish(void) {
    F.op_class = OPC_NONE;
    F.op_slot = -1;
    F.op_slot2 = -1;
    F.op_dst = -1;
    F.op_key = -1;
    F.post = NULL;
}

/* State before an update, to check that a failed one changed nothing. */
typedef struct before {
    unsigned long actions;
    size_t live;
    long held;
} before;

static size_t pool_live_of(champ_pool *p) {
    if (!p)
        return 0;
    champ_pool_stats ps;
    champ_status st = champ_pool_stats_get(p, &ps, sizeof ps);
    FZ_CHECK(st == CHAMP_OK, "pool stats: %s", st_name(st));
    return ps.bytes_live;
}

/* Both pools' live bytes. */
static size_t pool_live(void) { return pool_live_of(F.pool) + pool_live_of(F.poolb); }

/* (The pool's live bytes cost a walk of its free lists: only taken where
 * an update may fail.) */
static before snap(void) {
    before b = {F.actions, enomem_ok() ? pool_live() : 0, total_held()};
    return b;
}

/* After an update of slot i that returned st != OK. */
static void after_failure(int i, const before *b, champ_status st, const char *what) {
    FZ_CHECK(st == CHAMP_ENOMEM && enomem_ok(), "%s: %s", what, st_name(st));
    tot.enomem++;
    if (F.actions == b->actions) {
        /* A failed call may still settle a light version it was given
         * (pin.c; any u64 map's p-form is one): the base nodes it no
         * longer needs go, and in a concurrent pool its pin too, and with
         * it a retired version that waited on it.  Live bytes may fall,
         * never rise (what went is checked by the validates and ASan). */
        FZ_CHECK(pool_live() <= b->live,
                 "%s: failed call changed live bytes %zu -> %zu", what, b->live, pool_live());
        FZ_CHECK(total_held() == b->held, "%s: failed call changed references", what);
    }
    if (i >= 0 && F.s[i].m)
        check_all(i, "map after a failed update");
}

static void op_set(rd *r, int i) {
    unsigned k = rd_below(r, F.U), how = rd_u8(r);
    void *v = value(rd_u8(r));
    slot *s = &F.s[i];
    bool had = s->present[k];
    void *oldv = s->val[k];
    kpass kp = key_pass(k, how);
    champ_prior pr = {true, (void *)(uintptr_t)0xbad0, (void *)(uintptr_t)0xbad0};
    champ_prior *pp = (how & 16) ? &pr : NULL;
    if (F.set && (how & 128)) { /* a value for a set: refused, unchanged */
        size_t n0 = champ_size(s->m);
        trace("set slot %d key %u with a value (a set)", i, k);
        champ_status st = k_set(s->m, &kp, (void *)(uintptr_t)0x40, pp);
        key_done(&kp);
        FZ_CHECK(st == CHAMP_EINVAL, "set of a value in a set: %s, want EINVAL", st_name(st));
        FZ_CHECK(pr.found && pr.val == (void *)(uintptr_t)0xbad0, "refused set wrote *prior");
        FZ_CHECK(champ_size(s->m) == n0, "refused set changed the size");
        check_key(s->m, s, k, how >> 5, "after a refused set");
        return;
    }
    before b = snap();
    size_t size0 = champ_size(s->m);
    trace("set slot %d key %u val %p%s", i, k, v, pp ? " prior" : "");
    op_begin(OPC_UPDATE, i, k);
    F.new_present = true;
    F.new_val = v;
    pre_in(&kp, v, had);
    champ_status st = k_set(s->m, &kp, v, pp);
    bool died = F.op_slot_died;
    op_finish();
    key_done(&kp);
    if (st != CHAMP_OK) {
        undo_in(&kp, v, had);
        FZ_CHECK(pr.val == (void *)(uintptr_t)0xbad0 && pr.found,
                 "failed set wrote *prior");
        after_failure(died ? -1 : i, &b, st, "set");
        return;
    }
    after_set(i, k, &kp, v, st, pp, had, oldv, "set");
    if (!died && s->m) {
        FZ_CHECK(champ_size(s->m) == size0 + !had || F.actions != b.actions,
                 "set: size %zu -> %zu, key %s", size0, champ_size(s->m),
                 had ? "present" : "absent");
        check_key(s->m, s, k, how >> 5, "after set");
        FZ_CHECK(champ_size(s->m) == s->count, "set: size %zu, model %zu", champ_size(s->m),
                 s->count);
    }
}

static void op_remove(rd *r, int i) {
    unsigned k = rd_below(r, F.U), how = rd_u8(r);
    slot *s = &F.s[i];
    bool had = s->present[k];
    void *oldv = s->val[k], *oldk = s->kptr[k];
    kpass kp = key_pass(k, how);
    champ_prior pr = {true, (void *)(uintptr_t)0xbad0, (void *)(uintptr_t)0xbad0};
    champ_prior *pp = (how & 16) ? &pr : NULL;
    if (kb3_avoid())
        return;
    before b = snap();
    trace("remove slot %d key %u%s", i, k, pp ? " prior" : "");
    op_begin(OPC_UPDATE, i, k);
    champ_status st = k_remove(s->m, &kp, pp);
    bool died = F.op_slot_died;
    op_finish();
    key_done(&kp);
    if (st != CHAMP_OK) {
        FZ_CHECK(pr.val == (void *)(uintptr_t)0xbad0 && pr.found, "failed remove wrote *prior");
        after_failure(died ? -1 : i, &b, st, "remove");
        return;
    }
    after_remove(i, k, st, pp, had, oldv, oldk, "remove");
    if (!died && s->m) {
        check_key(s->m, s, k, how >> 5, "after remove");
        FZ_CHECK(champ_size(s->m) == s->count, "remove: size %zu, model %zu", champ_size(s->m),
                 s->count);
    }
}

static void op_get(rd *r, int i) {
    unsigned k = rd_below(r, F.U), how = rd_u8(r);
    slot *s = &F.s[i];
    trace("get slot %d key %u", i, k);
    op_begin(OPC_READ, i, -1);
    kpass kp = key_pass(k, how);
    void *junk = (void *)(uintptr_t)0xdead0, *got = junk;
    bool found = (how & 8) ? k_contains(s->m, &kp) : k_get(s->m, &kp, &got);
    bool died = F.op_slot_died;
    op_finish();
    key_done(&kp);
    if (died) {
        /* freed by its own callback: reports not found, *val_out alone */
        FZ_CHECK(!found && got == junk, "get of a map freed from its callback: found %d", found);
        return;
    }
    if (s->present[k]) {
        FZ_CHECK(found, "get: key %u absent, model has it", k);
        if (!(how & 8))
            FZ_CHECK(got == s->val[k], "get: key %u value %p, model %p", k, got, s->val[k]);
    } else {
        FZ_CHECK(!found && got == junk, "get: key %u found %d, model has not", k, found);
    }
}

static void op_free(int i);

/* copy / pset / premove / new_like of slot i into slot d. */
static void op_derive(rd *r, int i, int type) {
    unsigned k = rd_below(r, F.U), how = rd_u8(r);
    void *v = value(rd_u8(r));
    int d = empty_slot((int)(how >> 5));
    if (d < 0) { /* make room: free a slot other than i */
        d = (i + 1 + (int)(how >> 5) % (NSLOT - 1)) % NSLOT;
        op_free(d);
        if (!F.s[i].m)
            return; /* a release callback of that free freed the source */
    }
    slot *s = &F.s[i], *ds = &F.s[d];
    bool had = s->present[k];
    kpass kp = key_pass(k, how);
    champ_map *out = (champ_map *)(uintptr_t)0xbad0;
    before b = snap();
    static const char *const names[] = {"copy", "pset", "premove", "new_like"};
    trace("%s slot %d -> %d key %u", names[type], i, d, k);
    /* the destination's model first: the source may die meanwhile */
    model_clear(ds);
    if (type != 3)
        model_copy(ds, s);
    type_copy(ds, s);
    size_t size0 = champ_size(s->m);
    op_begin(OPC_READ, i, -1);
    F.op_dst = d;
    if (type == 1)
        pre_in(&kp, v, had);
    champ_status st;
    if (type == 1 && F.set && (how & 16)) { /* a value for a set: refused */
        st = k_pset(s->m, &kp, (void *)(uintptr_t)0x40, &out);
        op_finish();
        key_done(&kp);
        undo_in(&kp, v, had);
        model_clear(ds);
        /* (the copy step may run out of memory before the value is looked at) */
        FZ_CHECK((st == CHAMP_EINVAL || (st == CHAMP_ENOMEM && enomem_ok())) && out == NULL,
                 "pset of a value in a set: %s", st_name(st));
        return;
    }
    switch (type) {
    case 0: st = champ_copy(s->m, &out); break;
    case 1: st = k_pset(s->m, &kp, v, &out); break;
    case 2: st = k_premove(s->m, &kp, &out); break;
    default: st = champ_new_like(s->m, &out); break;
    }
    bool died = F.op_slot_died;
    op_finish();
    key_done(&kp);
    if (st != CHAMP_OK) {
        if (type == 1)
            undo_in(&kp, v, had);
        FZ_CHECK(out == NULL, "failed %s left *out set", names[type]);
        model_clear(ds);
        if (type != 3 && !copies_ok()) {
            FZ_CHECK(st == CHAMP_EINVAL, "%s without retain callbacks: %s, want EINVAL",
                     names[type], st_name(st));
            FZ_CHECK((!enomem_ok() || pool_live() == b.live) && total_held() == b.held,
                     "%s refused but changed the pool", names[type]);
            return;
        }
        after_failure(died ? -1 : i, &b, st, names[type]);
        return;
    }
    FZ_CHECK(type == 3 || copies_ok(), "%s without retain callbacks: OK, want EINVAL",
             names[type]);
    FZ_CHECK(out != NULL, "%s returned OK and NULL", names[type]);
    ds->m = out;
    ds->seq = ++F.seq;
    if (type == 1) {
        model_put(ds, k, v, kp.g);
    } else if (type == 2) {
        model_del(ds, k);
    }
    FZ_CHECK(champ_size(out) == ds->count, "%s: result size %zu, model %zu", names[type],
             champ_size(out), ds->count);
    if (type == 1 || type == 2)
        check_key(out, ds, k, how >> 5, "p-form result");
    if (!died && s->m) {
        FZ_CHECK(champ_size(s->m) == size0 || F.actions != b.actions,
                 "%s changed its source's size", names[type]);
        check_key(s->m, s, k, how >> 4, "p-form source");
    }
}

/* The map stays in its slot while it is freed: its release callbacks may
 * read it (and see the old contents or none). */
static void op_free(int i) {
    trace("free slot %d", i);
    op_begin(OPC_FREE, i, -1);
    F.op_clears = true;
    champ_free(F.s[i].m);
    op_finish();
    kill_slot(i);
}

static void op_clear(int i) {
    trace("clear slot %d", i);
    op_begin(OPC_UPDATE, i, -1);
    F.op_clears = true;
    champ_status st = champ_clear(F.s[i].m);
    bool died = F.op_slot_died;
    op_finish();
    FZ_CHECK(st == CHAMP_OK, "clear: %s", st_name(st));
    if (!died && F.s[i].m) {
        model_clear(&F.s[i]);
        FZ_CHECK(champ_size(F.s[i].m) == 0, "clear left %zu entries", champ_size(F.s[i].m));
    }
}

/* The second pool (type variant TV_POOLB), made at its first use: a plain
 * or concurrent arena that never fails. */
static champ_pool *poolb(void) {
    if (!F.poolb) {
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.concurrent = F.poolb_concurrent;
        champ_status st = champ_pool_new(&pc, &F.poolb);
        FZ_CHECK(st == CHAMP_OK, "second pool: %s", st_name(st));
        F.cfgv[TV_POOLB].pool = F.poolb;
    }
    return F.poolb;
}

static void op_new(rd *r, int i) {
    unsigned how = rd_u8(r);
    int src = live_slot((int)how);
    champ_map *out = (champ_map *)(uintptr_t)0xbad0;
    int var = F.ext && (how >> 1) % 8 >= 5 ? (int)((how >> 1) % 8 - 4) : TV_MAIN;
    if (var == TV_POOLB)
        poolb();
    before b = snap();
    champ_status st;
    bool like = (how & 1) && src >= 0;
    int svar = like ? F.s[src].var : 0;
    unsigned stid = like ? F.s[src].tid : 0;
    trace("new slot %d%s type variant %d", i, like ? " (new_like)" : "", var);
    if (like) {
        op_begin(OPC_READ, src, -1);
        F.op_dst = i;
        st = champ_new_like(F.s[src].m, &out);
        op_finish();
    } else {
        op_begin(OPC_UPDATE, -1, -1);
        F.op_dst = i;
        st = champ_new(&F.cfgv[var], &out);
        op_finish();
    }
    if (st != CHAMP_OK) {
        FZ_CHECK(out == NULL, "failed champ_new left *out set");
        after_failure(-1, &b, st, "new");
        return;
    }
    slot *ds = &F.s[i];
    ds->m = out;
    ds->seq = ++F.seq;
    model_clear(ds);
    if (like) { /* (read before: a callback may have freed the source) */
        ds->var = svar;
        ds->tid = stid;
    } else {
        ds->var = var;
        ds->tid = ++F.tidc;
    }
    FZ_CHECK(champ_size(out) == 0 && champ_kind(out) == F.kind &&
                 champ_pool_of(out) == var_pool(ds->var) && champ_is_set(out) == F.set,
             "new map: size %zu kind %d", champ_size(out), champ_kind(out));
}

/* Iterates slot i: single steps or batches; sometimes changes another
 * version in the middle (the iteration goes on) or the map itself (the
 * iteration stops with CHAMP_EMODIFIED). */
static void op_iter(rd *r, int i) {
    unsigned how = rd_u8(r), cap = 1 + rd_below(r, ITER_CAP);
    unsigned when = rd_u8(r), k = rd_below(r, F.U);
    slot *s = &F.s[i];
    champ_iter it;
    champ_status st = champ_iter_init(&it, s->m);
    FZ_CHECK(st == CHAMP_OK, "iter_init: %s", st_name(st));
    memset(F.seen, 0, F.U);
    int mode = how & 3; /* 0 single, 1 batch keys+vals, 2 batch keys, 3 batch vals */
    int change = (how >> 2) & 3; /* 0/1 none, 2 another version, 3 the map itself */
    trace("iterate slot %d mode %d cap %u change %d at %u", i, mode, cap, change, when);
    F.pinned = i;
    size_t n = 0, steps = 0;
    bool changed_self = false;
    bool trimmed = false; /* the pool was trimmed midway (extended format) */
    champ_key keys[ITER_CAP];
    void *vals[ITER_CAP];
    for (;;) {
        if (steps == when && change == 1 && F.ext && !trimmed) {
            trace("  trim the pool of slot %d midway", i);
            champ_status ts = champ_pool_trim(champ_pool_of(s->m));
            FZ_CHECK(ts == CHAMP_OK, "trim during iteration: %s", st_name(ts));
            trimmed = true;
        }
        if (steps == when && change >= 2 && !changed_self) {
            if (change == 2) {
                int o = other_slot(how >> 4);
                if (o >= 0) {
                    slot *os = &F.s[o];
                    bool had = os->present[k];
                    void *oldv = os->val[k], *oldk = os->kptr[k];
                    kpass kp = key_pass(k, how >> 4);
                    op_begin(OPC_UPDATE, o, k);
                    champ_status cs;
                    if (had && kb3_avoid()) {
                        cs = CHAMP_ENOMEM; /* (skipped: KB3) */
                    } else if (had) {
                        cs = k_remove(os->m, &kp, NULL);
                    } else {
                        F.new_present = true;
                        F.new_val = value(when);
                        pre_in(&kp, value(when), had);
                        cs = k_set(os->m, &kp, value(when), NULL);
                    }
                    op_finish();
                    key_done(&kp);
                    if (cs != CHAMP_OK && !had)
                        undo_in(&kp, value(when), had);
                    if (cs != CHAMP_OK)
                        FZ_CHECK(cs == CHAMP_ENOMEM && enomem_ok(), "update during iteration: %s",
                                 st_name(cs));
                    else if (had)
                        after_remove(o, k, cs, NULL, had, oldv, oldk, "remove during iteration");
                    else
                        after_set(o, k, &kp, value(when), cs, NULL, had, oldv,
                                  "set during iteration");
                }
            } else {
                /* a real change of the iterated map: insert or remove */
                bool had = s->present[k];
                void *oldv = s->val[k], *oldk = s->kptr[k];
                kpass kp = key_pass(k, how >> 4);
                op_begin(OPC_UPDATE, i, k);
                if (!had)
                    pre_in(&kp, value(when), had);
                champ_status cs = had && kb3_avoid() ? CHAMP_ENOMEM /* (skipped: KB3) */
                                  : had              ? k_remove(s->m, &kp, NULL)
                                                     : k_set(s->m, &kp, value(when), NULL);
                op_finish();
                key_done(&kp);
                if (cs != CHAMP_OK && !had)
                    undo_in(&kp, value(when), had);
                if (cs == CHAMP_OK) {
                    changed_self = true;
                    if (had)
                        after_remove(i, k, cs, NULL, had, oldv, oldk, "remove during iteration");
                    else
                        after_set(i, k, &kp, value(when), cs, NULL, had, oldv,
                                  "set during iteration");
                } else {
                    FZ_CHECK(cs == CHAMP_ENOMEM && enomem_ok(), "update during iteration: %s",
                             st_name(cs));
                }
            }
        }
        steps++;
        if (mode == 0) {
            champ_key key;
            void *v;
            bool more = champ_iter_next(&it, &key, &v);
            if (changed_self) {
                FZ_CHECK(!more, "iteration went on after its map changed");
                break;
            }
            if (!more)
                break;
            check_entry(s, &key, &v, "iterate");
            n++;
        } else {
            size_t got = champ_iter_next_n(&it, mode == 3 ? NULL : keys, mode == 2 ? NULL : vals,
                                           cap);
            FZ_CHECK(got <= cap, "iter_next_n returned %zu > cap %u", got, cap);
            if (changed_self) {
                FZ_CHECK(got == 0, "batched iteration went on after its map changed");
                break;
            }
            if (got == 0)
                break;
            for (size_t j = 0; j < got; j++)
                check_entry(s, mode == 3 ? NULL : &keys[j], mode == 2 ? NULL : &vals[j],
                            "iterate (batch)");
            n += got;
        }
    }
    F.pinned = -1;
    st = champ_iter_status(&it);
    if (changed_self) {
        /* also when the iterator had seen every entry, or began on an
         * empty map (champ.h: the next step notices) */
        FZ_CHECK(st == CHAMP_EMODIFIED, "iteration of a changed map: status %s", st_name(st));
        return;
    }
    if (trimmed && st == CHAMP_EMODIFIED)
        return; /* the trim moved nodes: the iteration stops */
    FZ_CHECK(st == CHAMP_OK, "iteration status %s", st_name(st));
    /* the contents are those the map had when the iteration started: when
     * it changed before the first step (steps==0) we never got here */
    FZ_CHECK(n == s->count, "iteration gave %zu entries, model %zu", n, s->count);
}

typedef struct visit_ctx {
    size_t n, stop_at;
} visit_ctx;

/* The contents foreach must visit (the slot's model may go meanwhile: a
 * visit callback may free m, deferred to the end of foreach). */
static slot fe_snap;

static int visit(const champ_key *k, void *v, void *ctx) {
    visit_ctx *vc = ctx;
    hook(CB_VISIT);
    check_entry(&fe_snap, k, &v, "foreach");
    vc->n++;
    return vc->n == vc->stop_at;
}

static void op_foreach(rd *r, int i) {
    unsigned stop = rd_u8(r);
    slot *s = &F.s[i];
    visit_ctx vc = {0, stop % 4 == 0 ? (size_t)(stop / 4 + 1) : 0};
    memset(F.seen, 0, F.U);
    trace("foreach slot %d stop at %zu", i, vc.stop_at);
    size_t count0 = s->count;
    model_copy(&fe_snap, s);
    op_begin(OPC_READ, i, -1);
    champ_status st = champ_foreach(s->m, visit, &vc);
    op_finish();
    FZ_CHECK(st == CHAMP_OK, "foreach: %s", st_name(st));
    size_t want = vc.stop_at && vc.stop_at < count0 ? vc.stop_at : count0;
    FZ_CHECK(vc.n == want, "foreach visited %zu, want %zu", vc.n, want);
}

static void op_validate(int i) {
    trace("validate slot %d", i);
    check_valid(i, "validate");
    check_all(i, "full compare");
}

static void op_bulk(rd *r, int i, bool removing) {
    unsigned k0 = rd_below(r, F.U), n = 1 + rd_u8(r) % 64, step = 1 + rd_u8(r) % 7;
    unsigned vsel = rd_u8(r);
    slot *s = &F.s[i];
    trace("bulk %s slot %d from %u, %u keys, step %u", removing ? "remove" : "set", i, k0, n,
          step);
    if (removing && kb3_avoid())
        return;
    for (unsigned j = 0; j < n && s->m; j++) {
        unsigned k = (k0 + j * step) % F.U;
        bool had = s->present[k];
        void *oldv = s->val[k], *oldk = s->kptr[k];
        void *v = value(vsel + j);
        kpass kp = key_pass(k, j);
        before b = snap();
        trace("  %s key %u val %p (%s)", removing ? "remove" : "set", k, v,
              had ? "present" : "absent");
        op_begin(OPC_UPDATE, i, k);
        F.new_present = !removing;
        F.new_val = v;
        if (!removing)
            pre_in(&kp, v, had);
        champ_status st = removing ? k_remove(s->m, &kp, NULL) : k_set(s->m, &kp, v, NULL);
        bool died = F.op_slot_died;
        op_finish();
        key_done(&kp);
        if (st != CHAMP_OK) {
            if (!removing)
                undo_in(&kp, v, had);
            after_failure(died ? -1 : i, &b, st, removing ? "bulk remove" : "bulk set");
            return;
        }
        if (removing)
            after_remove(i, k, st, NULL, had, oldv, oldk, "bulk remove");
        else
            after_set(i, k, &kp, v, st, NULL, had, oldv, "bulk set");
        if (!died && s->m)
            FZ_CHECK(champ_size(s->m) == s->count, "bulk: size %zu, model %zu",
                     champ_size(s->m), s->count);
        if (g_trace > 1 && !died && s->m) { /* FUZZ_CHAMP_TRACE=2: paranoid */
            check_valid(i, "paranoid");
            check_all(i, "paranoid");
        }
    }
}

static void op_stats(int i) {
    trace("stats slot %d", i);
    champ_pool_stats ps;
    champ_pool *p = champ_pool_of(F.s[i].m);
    bool conc = p == F.pool ? F.concurrent : F.poolb_concurrent;
    champ_status st = champ_pool_stats_get(p, &ps, sizeof ps);
    FZ_CHECK(st == CHAMP_OK, "pool stats: %s", st_name(st));
    FZ_CHECK(ps.maps == (size_t)nlive_pool(p), "pool stats: %zu maps, %d live slots", ps.maps,
             nlive_pool(p));
    /* (a concurrent pool samples its peak) */
    FZ_CHECK(ps.bytes_live <= ps.bytes_reserved && (conc || ps.bytes_live <= ps.bytes_peak),
             "pool stats: live %zu reserved %zu peak %zu", ps.bytes_live, ps.bytes_reserved,
             ps.bytes_peak);
    FZ_CHECK(ps.fixed == (p == F.pool && F.pool_mode == PM_FIXED), "pool stats: fixed %d",
             ps.fixed);
    champ_stats ms;
    st = champ_stats_get(F.s[i].m, &ms, sizeof ms);
    FZ_CHECK(st == CHAMP_OK && ms.entries == F.s[i].count, "map stats: %s, %zu entries, model %zu",
             st_name(st), ms.entries, F.s[i].count);
    if (devnull) {
        FZ_CHECK(champ_stats_print(F.s[i].m, devnull) == CHAMP_OK, "stats_print");
        FZ_CHECK(champ_dump(F.s[i].m, devnull) == CHAMP_OK, "dump");
    }
}

static void badinput_ext(champ_map *m, size_t n);

/* Wrong kinds and invalid keys: refused, nothing changes. */
static void op_badinput(int i) {
    champ_map *m = F.s[i].m;
    size_t n = champ_size(m);
    champ_prior pr = {true, (void *)(uintptr_t)0xbad0, NULL};
    champ_map *out = (champ_map *)(uintptr_t)0xbad0;
    void *junk = (void *)(uintptr_t)0xdead0, *got = junk;
    trace("bad input on slot %d", i);
    if (F.kind != CHAMP_KEY_U64) {
        FZ_CHECK(champ_set_u64(m, 1, NULL, &pr) == CHAMP_EKIND, "set_u64 on %s", kind_name());
        FZ_CHECK(!champ_get_u64(m, 1, &got) && got == junk, "get_u64 on %s", kind_name());
        FZ_CHECK(champ_pset_u64(m, 1, NULL, &out) == CHAMP_EKIND && out == NULL, "pset_u64");
    }
    if (F.kind != CHAMP_KEY_BYTES) {
        FZ_CHECK(champ_remove_bytes(m, "x", 1, &pr) == CHAMP_EKIND, "remove_bytes on %s",
                 kind_name());
        FZ_CHECK(!champ_contains_str(m, "x"), "contains_str on %s", kind_name());
    } else {
        FZ_CHECK(champ_set_bytes(m, NULL, 3, NULL, &pr) == CHAMP_EINVAL, "NULL key, len 3");
        FZ_CHECK(champ_set_str(m, NULL, NULL, &pr) == CHAMP_EINVAL, "NULL string");
        FZ_CHECK(!champ_get_bytes(m, NULL, 3, &got) && got == junk, "get of NULL key, len 3");
        out = (champ_map *)(uintptr_t)0xbad0;
        FZ_CHECK(champ_premove_bytes(m, NULL, 2, &out) == CHAMP_EINVAL && out == NULL,
                 "premove of NULL key");
    }
    if (F.kind != CHAMP_KEY_GENERIC) {
        FZ_CHECK(champ_remove(m, &F.keys[0], &pr) == CHAMP_EKIND, "remove on %s", kind_name());
        FZ_CHECK(!champ_get(m, &F.keys[0], &got) && got == junk, "get on %s", kind_name());
    }
    FZ_CHECK(pr.found && pr.val == (void *)(uintptr_t)0xbad0, "a refused call wrote *prior");
    FZ_CHECK(champ_size(m) == n, "a refused call changed the size");
    if (F.ext)
        badinput_ext(m, n);
}

/* ------------------------------------------------------------------ */
/* Operations of the extended format                                   */
/* ------------------------------------------------------------------ */

/* add: a set's insert (a map gets the key with a NULL value); never
 * replaces. */
static void op_add(rd *r, int i) {
    unsigned k = rd_below(r, F.U), how = rd_u8(r);
    slot *s = &F.s[i];
    bool had = s->present[k];
    void *oldv = s->val[k];
    kpass kp = key_pass(k, how);
    bool added = had; /* (the opposite of what a successful add says) */
    bool *ap = (how & 16) ? &added : NULL;
    before b = snap();
    trace("add slot %d key %u (%s)", i, k, had ? "present" : "absent");
    op_begin(OPC_UPDATE, i, k);
    F.new_present = true;
    F.new_val = had ? oldv : NULL;
    pre_in(&kp, NULL, had);
    champ_status st = k_add(s->m, &kp, ap);
    bool died = F.op_slot_died;
    op_finish();
    key_done(&kp);
    if (st != CHAMP_OK) {
        undo_in(&kp, NULL, had);
        FZ_CHECK(added == had, "failed add wrote *added");
        after_failure(died ? -1 : i, &b, st, "add");
        return;
    }
    if (ap)
        FZ_CHECK(added == !had, "add: added %d, key was %s", added, had ? "present" : "absent");
    if (!s->m)
        return;
    if (!had)
        model_put(s, k, NULL, kp.g);
    else
        bump(s);
    if (!died) {
        check_key(s->m, s, k, how >> 5, "after add");
        FZ_CHECK(champ_size(s->m) == s->count, "add: size %zu, model %zu", champ_size(s->m),
                 s->count);
    }
}

/* ---- the set algebra ---- */

enum {
    AL_EQUAL, AL_DIFF, AL_UNION, AL_INTERSECT, AL_DIFFERENCE, AL_SYMDIFF, AL_SUBSET,
    AL_DISJOINT, AL_FILTER, NAL
};
static const char *const al_names[NAL] = {"equal", "diff", "union", "intersect",
                                          "difference", "symdiff", "subset", "disjoint",
                                          "filter"};
enum { VE_NULL, VE_CLASS, VE_HOSTILE, NVE };                 /* val_equal */
enum { RS_NULL, RS_A, RS_B, RS_THIRD, RS_HOSTILE, NRS };     /* resolve */
enum { PF_ALL, PF_NONE, PF_EVEN, PF_THIRD, PF_VAL, PF_HOSTILE, NPF }; /* filter */

/* The inputs' contents (the slots may die meanwhile: a callback may free
 * an input, deferred to the end of the operation) and the callbacks. */
static slot al_a, al_b, al_r;
static struct {
    int ve, rs, pf;
    size_t n, stop;       /* diff: changes reported, stop after */
    uint8_t seen[UMAX];   /* keys reported / resolved / tested */
} AL;

/* The class of a value (val_equal VE_CLASS: values of one class are equal;
 * every value equals itself). */
static unsigned vclass(const void *v) {
    if (!v)
        return 0;
    uintptr_t x = F.val_cb ? (uintptr_t)((const obj *)v - F.vals) : (uintptr_t)v / 16 - 1;
    return 1 + (unsigned)(x % 3);
}

static bool al_vequal(const void *a, const void *b) {
    return AL.ve == VE_NULL ? a == b : vclass(a) == vclass(b);
}

static bool cb_val_equal(const void *a, const void *b, void *ctx) {
    FZ_CHECK(ctx == &AL, "val_equal: bad ctx");
    if (AL.ve == VE_HOSTILE)
        hook(CB_VAL_EQUAL);
    return vclass(a) == vclass(b);
}

static int cb_diff(champ_change what, const champ_key *key, void *ov, void *nv, void *ctx) {
    FZ_CHECK(ctx == &AL, "diff fn: bad ctx");
    long id = key_id(key);
    FZ_CHECK(id >= 0, "diff: a key outside the universe");
    FZ_CHECK(!AL.seen[id], "diff: key %ld reported twice", id);
    AL.seen[id] = 1;
    const slot *f = &al_a, *t = &al_b;
    switch (what) {
    case CHAMP_ADDED:
        FZ_CHECK(!f->present[id] && t->present[id] && !ov && nv == t->val[id],
                 "diff: key %ld reported added (in from %d, in to %d, old %p, new %p)", id,
                 f->present[id], t->present[id], ov, nv);
        break;
    case CHAMP_REMOVED:
        FZ_CHECK(f->present[id] && !t->present[id] && ov == f->val[id] && !nv,
                 "diff: key %ld reported removed (in from %d, in to %d)", id, f->present[id],
                 t->present[id]);
        break;
    case CHAMP_CHANGED:
        FZ_CHECK(f->present[id] && t->present[id] && ov == f->val[id] && nv == t->val[id] &&
                     !al_vequal(ov, nv),
                 "diff: key %ld reported changed (old %p new %p, model %p %p)", id, ov, nv,
                 f->val[id], t->val[id]);
        break;
    default:
        FZ_CHECK(0, "diff: change %d", (int)what);
    }
    if (AL.ve == VE_HOSTILE)
        hook(CB_DIFF);
    AL.n++;
    return AL.stop && AL.n == AL.stop;
}

static void *al_third(long id, void *av, void *bv) {
    return av == bv ? av : value((unsigned)id * 7 + 3);
}

static void *cb_resolve(const champ_key *key, void *av, void *bv, void *ctx) {
    FZ_CHECK(ctx == &AL, "resolve: bad ctx");
    FZ_CHECK(!F.set, "resolve called for sets");
    long id = key_id(key);
    FZ_CHECK(id >= 0 && al_a.present[id] && al_b.present[id],
             "resolve of key %ld, not in both inputs", id);
    FZ_CHECK(av == al_a.val[id] && bv == al_b.val[id], "resolve of key %ld: values %p %p, "
             "model %p %p", id, av, bv, al_a.val[id], al_b.val[id]);
    FZ_CHECK(!AL.seen[id], "resolve: key %ld twice", id);
    AL.seen[id] = 1;
    switch (AL.rs) {
    case RS_A: return av;
    case RS_B: return bv;
    case RS_THIRD: return al_third(id, av, bv);
    default: hook(CB_RESOLVE); return bv;
    }
}

static bool pf_keep(long id, const void *v) {
    switch (AL.pf) {
    case PF_ALL: return true;
    case PF_NONE: return false;
    case PF_EVEN: return id % 2 == 0;
    case PF_THIRD: return id % 3 == 0;
    case PF_VAL: return vclass(v) != 1;
    default: return id % 2 == 1;
    }
}

static bool cb_pred(const champ_key *key, void *v, void *ctx) {
    FZ_CHECK(ctx == &AL, "filter predicate: bad ctx");
    long id = key_id(key);
    FZ_CHECK(id >= 0 && al_a.present[id] && v == al_a.val[id],
             "filter: key %ld value %p, model %d %p", id, v, id >= 0 && al_a.present[id],
             id >= 0 ? al_a.val[id] : NULL);
    FZ_CHECK(!AL.seen[id], "filter: key %ld tested twice", id);
    AL.seen[id] = 1;
    if (AL.pf == PF_HOSTILE)
        hook(CB_PRED);
    return pf_keep(id, v);
}

/* The generic key object of a result entry taken from a or b. */
static void *al_kptr(long id, bool in_a, bool in_b) {
    if (in_a && in_b)
        return al_a.kptr[id] == al_b.kptr[id] ? al_a.kptr[id] : NULL;
    return in_a ? al_a.kptr[id] : al_b.kptr[id];
}

/* The result's model (al_r) of a combining operation. */
static void al_model(int sub) {
    model_clear(&al_r);
    for (unsigned k = 0; k < F.U; k++) {
        bool a = al_a.present[k], b = al_b.present[k];
        void *v = NULL;
        bool in;
        switch (sub) {
        case AL_UNION:
        case AL_INTERSECT:
            in = sub == AL_UNION ? a || b : a && b;
            if (!in)
                break;
            if (a && b) {
                void *av = al_a.val[k], *bv = al_b.val[k];
                switch (AL.rs) {
                case RS_NULL: v = sub == AL_UNION ? bv : av; break;
                case RS_A: v = av; break;
                case RS_B: v = bv; break;
                case RS_THIRD: v = al_third(k, av, bv); break;
                default: v = bv; break;
                }
            } else {
                v = a ? al_a.val[k] : al_b.val[k];
            }
            break;
        case AL_DIFFERENCE:
            in = a && !b;
            v = al_a.val[k];
            break;
        case AL_SYMDIFF:
            in = a != b;
            v = a ? al_a.val[k] : al_b.val[k];
            break;
        default: /* filter */
            in = a && pf_keep(k, al_a.val[k]);
            v = al_a.val[k];
            b = false;
            break;
        }
        if (in)
            model_put(&al_r, k, F.set ? NULL : v, al_kptr(k, a, b));
    }
}

/* A slot to put a result in (freeing one other than i and j if all are
 * taken), or -1 when a callback of that free freed i or j. */
static int result_slot(int i, int j, unsigned hint) {
    int d = empty_slot((int)hint);
    if (d >= 0)
        return d;
    for (int t = 0; t < NSLOT; t++) {
        d = (int)((hint + 1 + (unsigned)t) % NSLOT);
        if (d != i && d != j)
            break;
    }
    op_free(d);
    return F.s[i].m && F.s[j].m ? d : -1;
}

static void op_alg(rd *r, int i) {
    int sub = (int)(rd_u8(r) % NAL);
    unsigned hj = rd_u8(r), fnb = rd_u8(r), stop = rd_u8(r);
    int j = live_slot((int)hj);
    bool combining = sub >= AL_UNION && sub <= AL_SYMDIFF;
    if (sub == AL_FILTER) {
        combining = true;
        j = i;
    }
    int d = -1;
    if (combining) {
        d = result_slot(i, j, hj >> 3);
        if (d < 0)
            return;
    }
    champ_map *a = F.s[i].m, *b = F.s[j].m;
    model_copy(&al_a, &F.s[i]);
    type_copy(&al_a, &F.s[i]);
    model_copy(&al_b, &F.s[j]);
    type_copy(&al_b, &F.s[j]);
    memset(AL.seen, 0, F.U);
    AL.ve = (int)(fnb % NVE);
    AL.rs = (int)(fnb % NRS);
    AL.pf = (int)(fnb % NPF);
    AL.n = 0;
    AL.stop = stop % 4 == 0 ? stop / 4 + 1 : 0;
    bool self_b = (fnb >> 4) & 1; /* which input hostile callbacks call m */
    champ_val_equal_fn ve = AL.ve == VE_NULL ? NULL : cb_val_equal;
    champ_merge_fn rs = AL.rs == RS_NULL ? NULL : cb_resolve;
    trace("%s slot %d, slot %d -> %d (val_equal %d resolve %d filter %d stop %zu)",
          al_names[sub], i, j, d, AL.ve, AL.rs, AL.pf, AL.stop);
    before bf = snap();
    op_begin(OPC_READ, self_b ? j : i, -1);
    F.op_slot2 = self_b ? i : j;
    F.op_dst = d;
    champ_map *out = (champ_map *)(uintptr_t)0xbad0;
    champ_status st = CHAMP_OK;
    bool res = false;
    switch (sub) {
    case AL_EQUAL: res = champ_equal(a, b, ve, &AL); break;
    case AL_DIFF: st = champ_diff(a, b, ve, cb_diff, &AL); break;
    case AL_UNION: st = champ_union(a, b, rs, &AL, &out); break;
    case AL_INTERSECT: st = champ_intersect(a, b, rs, &AL, &out); break;
    case AL_DIFFERENCE: st = champ_difference(a, b, &out); break;
    case AL_SYMDIFF: st = champ_symdiff(a, b, &out); break;
    case AL_SUBSET: res = champ_subset(a, b); break;
    case AL_DISJOINT: res = champ_disjoint(a, b); break;
    default: st = champ_filter(a, cb_pred, &AL, &out); break;
    }
    op_finish();
    const char *what = al_names[sub];
    /* what the model says */
    size_t ndiff = 0;
    bool eq = al_a.count == al_b.count, sub_ok = true, disj = true;
    for (unsigned k = 0; k < F.U; k++) {
        bool x = al_a.present[k], y = al_b.present[k];
        if (x != y || (x && !al_vequal(al_a.val[k], al_b.val[k])))
            ndiff++;
        if (x != y || (x && !al_vequal(al_a.val[k], al_b.val[k])))
            eq = false;
        if (x && !y)
            sub_ok = false;
        if (x && y)
            disj = false;
    }
    switch (sub) {
    case AL_EQUAL:
        FZ_CHECK(res == eq, "equal: %d, model %d", res, eq);
        break;
    case AL_DIFF: {
        FZ_CHECK(st == CHAMP_OK, "diff: %s", st_name(st));
        size_t want = AL.stop && AL.stop < ndiff ? AL.stop : ndiff;
        FZ_CHECK(AL.n == want, "diff reported %zu changes, model %zu (stop %zu)", AL.n, want,
                 AL.stop);
        break;
    }
    case AL_SUBSET:
        FZ_CHECK(res == sub_ok, "subset: %d, model %d", res, sub_ok);
        break;
    case AL_DISJOINT:
        FZ_CHECK(res == disj, "disjoint: %d, model %d", res, disj);
        break;
    default: {
        if (!copies_ok()) {
            FZ_CHECK(st == CHAMP_EINVAL && out == NULL,
                     "%s without retain callbacks: %s, want EINVAL", what, st_name(st));
            FZ_CHECK(pool_live() == bf.live || !enomem_ok(), "%s refused but changed the pool",
                     what);
            FZ_CHECK(total_held() == bf.held, "%s refused but changed references", what);
            break;
        }
        if (st != CHAMP_OK) {
            FZ_CHECK(out == NULL, "failed %s left *out set", what);
            after_failure(F.s[i].m == a ? i : -1, &bf, st, what);
            if (F.s[j].m == b && j != i)
                check_all(j, "input after a failed combination");
            break;
        }
        FZ_CHECK(out != NULL, "%s: OK and NULL", what);
        if (sub != AL_FILTER)
            for (unsigned k = 0; k < F.U; k++)
                if (rs && !F.set && al_a.present[k] && al_b.present[k] &&
                    al_a.val[k] != al_b.val[k] && sub <= AL_INTERSECT)
                    FZ_CHECK(AL.seen[k], "%s: resolve not called for key %u (values %p %p)",
                             what, k, al_a.val[k], al_b.val[k]);
        al_model(sub);
        slot *ds = &F.s[d];
        ds->m = out;
        ds->seq = ++F.seq;
        model_copy(ds, &al_r);
        type_copy(ds, &al_a);
        FZ_CHECK(champ_pool_of(out) == var_pool(al_a.var), "%s: result in another pool", what);
        check_all(d, what);
        check_iter(d, what);
        if (fnb & 0x80)
            check_valid(d, what);
        break;
    }
    }
    /* the inputs are unchanged */
    if (F.s[i].m == a)
        check_all(i, "input of the set algebra");
    if (j != i && F.s[j].m == b)
        check_all(j, "input of the set algebra");
}

/* ---- batches, upsert, update ---- */

static slot ap_post;

static void op_apply(rd *r, int i) {
    unsigned how = rd_u8(r);
    unsigned n = 1 + rd_below(r, F.collide ? APPLY_MAX : MANY_MAX);
    unsigned k0 = rd_below(r, F.U), step = rd_u8(r), seed = rd_u8(r), pdel = rd_u8(r);
    unsigned pv = rd_u8(r);
    if ((how & 0xc0) == 0xc0 && (pv & 7) == 0)
        n = 0;
    bool bad = ((how >> 3) & 7) == 7 && (F.kind == CHAMP_KEY_BYTES || F.set) && n > 0;
    int t = i;
    if (how & 1) { /* on an empty map of the same type: the bulk build */
        int d = result_slot(i, i, how >> 1);
        if (d < 0)
            return;
        champ_map *out = (champ_map *)(uintptr_t)0xbad0;
        before b = snap();
        op_begin(OPC_READ, i, -1);
        F.op_dst = d;
        champ_status st = champ_new_like(F.s[i].m, &out);
        op_finish();
        if (st != CHAMP_OK) {
            FZ_CHECK(out == NULL, "failed new_like left *out set");
            after_failure(-1, &b, st, "new_like");
            return;
        }
        slot *ds = &F.s[d];
        ds->m = out;
        ds->seq = ++F.seq;
        model_clear(ds);
        type_copy(ds, &F.s[i]);
        t = d;
        if (!F.s[i].m) /* (a callback of new_like may have freed i) */
            return;
    }
    slot *s = &F.s[t];
    static champ_op ops[APPLY_MAX];
    static unsigned ks[APPLY_MAX];
    size_t total = 0;
    unsigned char *kb = NULL;
    for (unsigned j = 0; j < n; j++) {
        uint64_t x = mix64((uint64_t)seed << 32 ^ j ^ (uint64_t)pv << 16);
        unsigned k = (k0 + j * step + ((x & 7) == 0 ? (unsigned)(x >> 40) : 0)) % F.U;
        ks[j] = k;
        if (F.kind == CHAMP_KEY_BYTES)
            total += bk_len[k] + 1;
    }
    if ((how & 4) && total) /* byte keys from a buffer scribbled over after the call */
        kb = malloc(total);
    size_t off = 0;
    model_copy(&ap_post, s);
    for (unsigned j = 0; j < n; j++) {
        uint64_t x = mix64((uint64_t)seed << 32 ^ j ^ (uint64_t)pv << 16);
        unsigned k = ks[j];
        kpass kp = key_pass(k, (unsigned)(x >> 24) & 5);
        champ_op *o = &ops[j];
        o->key = key_of(&kp);
        if (kb && F.kind == CHAMP_KEY_BYTES) {
            memcpy(kb + off, bk[k], bk_len[k] + 1);
            o->key.ptr = kb + off;
            off += bk_len[k] + 1;
        }
        o->remove = ((x >> 8) & 0xff) < pdel;
        o->val = o->remove ? (x >> 60 ? NULL : value((unsigned)x)) : value((unsigned)(x >> 16) + pv);
        if (o->remove) {
            model_del(&ap_post, k);
        } else {
            model_put(&ap_post, k, o->val, NULL);
            ap_post.kptr[k] = NULL; /* the batch's object or the map's: learnt */
        }
    }
    if (bad) {
        champ_op *o = &ops[pv % n];
        if (F.set) {
            o->remove = false;
            o->val = (void *)(uintptr_t)0x40;
        } else {
            o->key.ptr = NULL;
            o->key.len = 3;
        }
    }
    trace("apply slot %d: %u ops (keys from %u step %u, removes %u/256)%s%s", t, n, k0, step,
          pdel, bad ? ", one invalid" : "", t != i ? ", bulk build" : "");
    if (g_trace > 1)
        for (unsigned j = 0; j < n; j++)
            trace("  %s key %u val %p", ops[j].remove ? "remove" : "set", ks[j], ops[j].val);
    before b = snap();
    op_begin(OPC_UPDATE, t, -1);
    F.post = &ap_post;
    champ_status st = champ_apply(s->m, n ? ops : (how & 2) ? NULL : ops, n);
    bool died = F.op_slot_died;
    op_finish();
    if (kb) {
        memset(kb, 0xAA, total);
        free(kb);
    }
    if (!copies_ok() || bad) {
        FZ_CHECK(st == CHAMP_EINVAL, "apply %s: %s, want EINVAL",
                 bad ? "with an invalid update" : "without retain callbacks", st_name(st));
        FZ_CHECK(total_held() == b.held, "refused apply changed references");
        if (s->m)
            check_all(t, "after a refused apply");
        return;
    }
    if (st != CHAMP_OK) {
        after_failure(died ? -1 : t, &b, st, "apply");
        return;
    }
    if (died || !s->m)
        return;
    type_copy(&ap_post, s);
    model_copy(s, &ap_post);
    bump(s);
    FZ_CHECK(champ_size(s->m) == s->count, "apply: size %zu, model %zu", champ_size(s->m),
             s->count);
    check_all(t, "after apply");
    check_iter(t, "after apply");
    if (how & 0x20)
        check_valid(t, "after apply");
}

static void op_upsert(rd *r, int i) {
    unsigned k = rd_below(r, F.U), how = rd_u8(r), vb = rd_u8(r);
    slot *s = &F.s[i];
    bool had = s->present[k];
    void *oldv = s->val[k];
    kpass kp = key_pass(k, how);
    void **sp = (void **)(uintptr_t)0xbad0;
    bool found = !had;
    bool *fp = (how & 16) ? &found : NULL;
    trace("upsert slot %d key %u (%s)%s", i, k, had ? "present" : "absent",
          (how & 32) ? ", then a write through the slot" : "");
    if (F.set) {
        champ_status st = k_upsert(s->m, &kp, &sp, fp);
        key_done(&kp);
        FZ_CHECK(st == CHAMP_EINVAL && sp == (void **)(uintptr_t)0xbad0,
                 "upsert on a set: %s, want EINVAL", st_name(st));
        return;
    }
    before b = snap();
    op_begin(OPC_UPDATE, i, k);
    F.new_present = true;
    F.new_val = had ? oldv : NULL;
    pre_in(&kp, NULL, had);
    champ_status st = k_upsert(s->m, &kp, &sp, fp);
    bool died = F.op_slot_died;
    op_finish();
    key_done(&kp);
    if (st != CHAMP_OK) {
        undo_in(&kp, NULL, had);
        FZ_CHECK(sp == (void **)(uintptr_t)0xbad0 && found == !had, "failed upsert wrote");
        after_failure(died ? -1 : i, &b, st, "upsert");
        return;
    }
    if (fp)
        FZ_CHECK(found == had, "upsert: found %d, model %d", found, had);
    if (died || !s->m)
        return; /* (the slot went with the map) */
    FZ_CHECK(*sp == (had ? oldv : NULL), "upsert: the slot holds %p, model %p", *sp,
             had ? oldv : NULL);
    model_put(s, k, had ? oldv : NULL, kp.g);
    if (how & 32) {
        void *nv = value(vb), *old = *sp;
        hand_in_val(nv);
        *sp = nv;
        hand_back_val(old); /* the caller releases what it overwrites */
        model_put(s, k, nv, kp.g);
    }
    check_key(s->m, s, k, how >> 6, "after upsert");
    FZ_CHECK(champ_size(s->m) == s->count, "upsert: size %zu, model %zu", champ_size(s->m),
             s->count);
}

enum { UF_OLD, UF_NEW, UF_NULL, UF_HOSTILE, NUF };
static struct {
    int fn;
    unsigned k, vb;
    bool had;
    void *oldv, *kobj, *nv;
    int calls;
} UP;

static void *uf_value(void *old) {
    switch (UP.fn) {
    case UF_OLD: return old;
    case UF_NEW: return value(UP.vb);
    case UF_NULL: return NULL;
    default: return value(UP.vb + 1);
    }
}

static void *cb_update(const champ_key *key, void *old, bool found, void *ctx) {
    FZ_CHECK(ctx == &UP, "update fn: bad ctx");
    UP.calls++;
    FZ_CHECK(UP.calls == 1, "update fn called %d times", UP.calls);
    long id = key_id(key);
    FZ_CHECK(id == (long)UP.k, "update fn: key %ld, want %u", id, UP.k);
    FZ_CHECK(found == UP.had && old == (UP.had ? UP.oldv : NULL),
             "update fn: found %d old %p, model %d %p", found, old, UP.had, UP.oldv);
    if (F.kind == CHAMP_KEY_GENERIC && UP.kobj)
        FZ_CHECK(key->ptr == UP.kobj, "update fn: another key object");
    if (UP.fn == UF_HOSTILE) {
        F.in_update_fn = true;
        hook(CB_UPDATE);
        F.in_update_fn = false;
    }
    void *nv = uf_value(old);
    if (nv != old)
        hand_in_val(nv); /* the map owns what fn returns, as set would */
    UP.nv = nv;
    return nv;
}

static void op_update(rd *r, int i) {
    unsigned k = rd_below(r, F.U), how = rd_u8(r), vb = rd_u8(r);
    slot *s = &F.s[i];
    bool had = s->present[k];
    kpass kp = key_pass(k, how);
    memset(&UP, 0, sizeof UP);
    UP.fn = (int)(how >> 4) % NUF;
    UP.k = k;
    UP.vb = vb;
    UP.had = had;
    UP.oldv = s->val[k];
    UP.kobj = had ? s->kptr[k] : kp.g;
    trace("update slot %d key %u (%s) fn %d", i, k, had ? "present" : "absent", UP.fn);
    if (F.set) {
        champ_status st = k_update(s->m, &kp, cb_update, &UP);
        key_done(&kp);
        FZ_CHECK(st == CHAMP_EINVAL && UP.calls == 0, "update on a set: %s, want EINVAL",
                 st_name(st));
        return;
    }
    before b = snap();
    op_begin(OPC_UPDATE, i, k);
    F.new_present = true;
    F.new_val = uf_value(had ? UP.oldv : NULL);
    pre_in(&kp, NULL, had);
    champ_status st = k_update(s->m, &kp, cb_update, &UP);
    bool died = F.op_slot_died;
    op_finish();
    key_done(&kp);
    if (st != CHAMP_OK) {
        undo_in(&kp, NULL, had);
        FZ_CHECK(UP.calls == 0, "failed update called fn");
        after_failure(died ? -1 : i, &b, st, "update");
        return;
    }
    FZ_CHECK(UP.calls == 1, "update: fn called %d times", UP.calls);
    if (died || !s->m)
        return;
    model_put(s, k, UP.nv, kp.g);
    check_key(s->m, s, k, how, "after update");
    FZ_CHECK(champ_size(s->m) == s->count, "update: size %zu, model %zu", champ_size(s->m),
             s->count);
}

/* ---- batched lookups ---- */

/* The size up to which a batch is plain lookups one after another
 * (src/many.c); the fuzzer's maps are all below it, so op_many sets it to
 * take either path. */
extern size_t champ__many_direct;

static void op_many(rd *r, int i) {
    unsigned n = rd_below(r, MANY_MAX + 1), how = rd_u8(r), k0 = rd_below(r, F.U);
    unsigned step = rd_u8(r), seed = rd_u8(r);
    static uint64_t us[MANY_MAX];
    static const void *ps[MANY_MAX];
    static size_t lens[MANY_MAX];
    static void *vals[MANY_MAX];
    static bool found[MANY_MAX];
    static unsigned ks[MANY_MAX];
    bool contains = how & 1, novals = how & 2, nofound = how & 4;
    bool bad = ((how >> 3) & 15) == 15 && n > 0;
    slot *s = &F.s[i];
    for (unsigned j = 0; j < n; j++) {
        uint64_t x = mix64((uint64_t)seed << 20 ^ j);
        unsigned k = (k0 + j * step + ((x & 3) == 0 ? (unsigned)(x >> 32) : 0)) % F.U;
        kpass kp = key_pass(k, (unsigned)(x >> 8) & 5);
        ks[j] = k;
        us[j] = kp.u;
        ps[j] = F.kind == CHAMP_KEY_BYTES ? kp.p : kp.g;
        lens[j] = kp.len;
        vals[j] = (void *)(uintptr_t)0xdead0;
        found[j] = (j & 1) != 0;
    }
    if (bad) { /* an invalid byte key, or no keys at all: nothing is found */
        if (F.kind == CHAMP_KEY_BYTES) {
            ps[seed % n] = NULL;
            lens[seed % n] = 3;
        }
    }
    const void *const *pk = bad && F.kind != CHAMP_KEY_BYTES ? NULL : ps;
    trace("%s_many slot %d: %u keys%s", contains ? "contains" : "get", i, n,
          bad ? ", invalid" : "");
    champ_map *m = s->m;
    op_begin(OPC_READ, i, -1);
    size_t got;
    bool *fo = nofound ? NULL : found;
    void **vo = novals ? NULL : vals;
    size_t direct = champ__many_direct;
    champ__many_direct = seed & 1 ? 0 : SIZE_MAX; /* the staged walk, or plain lookups */
    switch (F.kind) {
    case CHAMP_KEY_U64:
        got = contains ? champ_contains_many_u64(m, bad ? NULL : us, n, fo)
                       : champ_get_many_u64(m, bad ? NULL : us, n, vo, fo);
        break;
    case CHAMP_KEY_BYTES:
        got = contains ? champ_contains_many_bytes(m, pk, lens, n, fo)
                       : champ_get_many_bytes(m, pk, lens, n, vo, fo);
        break;
    default:
        got = contains ? champ_contains_many(m, pk, n, fo) : champ_get_many(m, pk, n, vo, fo);
        break;
    }
    champ__many_direct = direct;
    bool died = F.op_slot_died;
    op_finish();
    if (bad || died) {
        /* misuse finds nothing; a map freed by its own callback reports
         * nothing found, as get does */
        FZ_CHECK(got == 0, "%s_many: %zu found, want 0 (%s)", contains ? "contains" : "get", got,
                 bad ? "invalid" : "freed from a callback");
        for (unsigned j = 0; j < n && fo; j++)
            FZ_CHECK(!found[j], "%s_many: key %u found", contains ? "contains" : "get", j);
        return;
    }
    size_t want = 0;
    for (unsigned j = 0; j < n; j++) {
        unsigned k = ks[j];
        bool in = s->present[k];
        want += in;
        if (fo)
            FZ_CHECK(found[j] == in, "%s_many: key %u (#%u) found %d, model %d",
                     contains ? "contains" : "get", k, j, found[j], in);
        if (vo && !contains)
            FZ_CHECK(vals[j] == (in ? s->val[k] : NULL), "get_many: key %u (#%u) value %p, "
                     "model %p", k, j, vals[j], in ? s->val[k] : NULL);
    }
    FZ_CHECK(got == want, "%s_many: %zu found, model %zu", contains ? "contains" : "get", got,
             want);
}

/* ---- trim ---- */

static void op_trim(rd *r, int i) {
    unsigned how = rd_u8(r);
    champ_pool *p = champ_pool_of(F.s[i].m);
    trace("trim the pool of slot %d", i);
    champ_status st = champ_pool_trim(p);
    FZ_CHECK(st == CHAMP_OK, "trim: %s", st_name(st));
    for (int j = 0; j < NSLOT; j++)
        if (F.s[j].m && champ_pool_of(F.s[j].m) == p)
            check_all(j, "after trim");
    if (how & 1)
        check_valid(i, "after trim");
    champ_pool_stats ps;
    FZ_CHECK(champ_pool_stats_get(p, &ps, sizeof ps) == CHAMP_OK && ps.bytes_live <= ps.bytes_reserved,
             "after trim: live %zu reserved %zu", ps.bytes_live, ps.bytes_reserved);
}

/* ---- cells ---- */

static void cell_drop(cellm *c) {
    if (!c->c)
        return;
    op_begin(OPC_FREE, -1, -1);
    F.dying_cell = c->c;
    champ_cell_free(c->c);
    F.dying_cell = NULL;
    op_finish();
    c->c = NULL;
    c->typed = c->ver = c->unknown = false;
}

/* The cell's contents against a fresh snapshot of it (learnt if not known). */
static void cell_verify(cellm *c, const char *what) {
    champ_map *out = (champ_map *)(uintptr_t)0xbad0;
    before b = snap();
    champ_status st = champ_cell_load(c->c, &out);
    if (st != CHAMP_OK) {
        FZ_CHECK(out == NULL, "%s: failed load left *out set", what);
        after_failure(-1, &b, st, what);
        return;
    }
    if (!c->ver) {
        FZ_CHECK(out == NULL, "%s: an empty cell gave a map", what);
        return;
    }
    FZ_CHECK(out != NULL, "%s: OK and NULL", what);
    if (c->unknown) {
        model_learn(&c->mdl, out, what);
        c->unknown = false;
    } else {
        check_iter_m(&c->mdl, out, what);
    }
    champ_free(out);
}

static void op_cell(rd *r, int i) {
    unsigned sub = rd_u8(r) % 6, ci = rd_u8(r), hj = rd_u8(r);
    cellm *c = &F.cell[ci % NCELL];
    slot *s = &F.s[i];
    if (sub == 0 || !c->c) {
        bool from = sub == 0 && (hj & 1);
        trace("cell %u: new%s", ci % NCELL, from ? " from slot" : " (empty)");
        cell_drop(c);
        before b = snap();
        champ_status st = champ_cell_new(from ? s->m : NULL, &c->c);
        if (from && !copies_ok()) { /* release without retain: no sharing (KB4) */
            FZ_CHECK(st == CHAMP_EINVAL && !c->c, "cell_new, no retain: %s, want EINVAL",
                     st_name(st));
            return;
        }
        if (st == CHAMP_ENOMEM) { /* a concurrent pool's cell takes a pool block */
            FZ_CHECK(!c->c, "failed cell_new left *out set");
            after_failure(-1, &b, st, "cell_new");
            return;
        }
        FZ_CHECK(st == CHAMP_OK && c->c, "cell_new: %s", st_name(st));
        c->typed = c->ver = from;
        c->unknown = false;
        if (from) {
            c->tid = s->tid;
            c->var = s->var;
            model_copy(&c->mdl, s);
        }
        if (sub == 0)
            return;
    }
    switch (sub) {
    case 1:
        trace("cell %u: free", ci % NCELL);
        cell_drop(c);
        break;
    case 2: {
        int d = empty_slot((int)hj);
        if (d < 0) {
            trace("cell %u: verify", ci % NCELL);
            cell_verify(c, "cell load (verify)");
            break;
        }
        trace("cell %u: load into slot %d", ci % NCELL, d);
        champ_map *out = (champ_map *)(uintptr_t)0xbad0;
        before b = snap();
        op_begin(OPC_READ, -1, -1);
        F.op_dst = d;
        champ_status st = champ_cell_load(c->c, &out);
        op_finish();
        if (st != CHAMP_OK) {
            FZ_CHECK(out == NULL, "failed cell load left *out set");
            after_failure(-1, &b, st, "cell load");
            break;
        }
        if (!c->ver) {
            FZ_CHECK(out == NULL, "an empty cell loaded a map");
            break;
        }
        FZ_CHECK(out != NULL, "cell load: OK and NULL");
        slot *ds = &F.s[d];
        ds->m = out;
        ds->seq = ++F.seq;
        ds->var = c->var;
        ds->tid = c->tid;
        if (c->unknown) {
            model_learn(ds, out, "cell load");
            model_copy(&c->mdl, ds);
            c->unknown = false;
        } else {
            model_copy(ds, &c->mdl);
            check_iter(d, "cell load");
        }
        FZ_CHECK(champ_pool_of(out) == var_pool(ds->var), "cell load: another pool");
        /* the server's step: a version derived from the snapshot (a
         * light version, pin.c, in a concurrent pool's plain u64 map) */
        if (hj & 2)
            op_derive(r, d, (hj & 4) ? 2 : 1);
        break;
    }
    case 3: {
        trace("cell %u: store slot %d", ci % NCELL, i);
        before b = snap();
        champ_status st = champ_cell_store(c->c, s->m);
        if (!copies_ok()) {
            FZ_CHECK(st == CHAMP_EINVAL, "cell store, no retain: %s, want EINVAL", st_name(st));
            break;
        }
        if (c->typed && c->tid != s->tid) {
            FZ_CHECK(st == CHAMP_EPOOL, "cell store of another type: %s, want EPOOL",
                     st_name(st));
            break;
        }
        if (st == CHAMP_ENOMEM) { /* the record of a concurrent pool: nothing changed */
            after_failure(-1, &b, st, "cell store");
            cell_verify(c, "cell after a failed store");
            break;
        }
        FZ_CHECK(st == CHAMP_OK, "cell store: %s", st_name(st));
        c->typed = c->ver = true;
        c->unknown = false;
        c->tid = s->tid;
        c->var = s->var;
        model_copy(&c->mdl, s);
        break;
    }
    case 4: {
        int e = (hj & 1) ? -1 : live_slot((int)(hj >> 1));
        const slot *es = e >= 0 ? &F.s[e] : NULL;
        bool sw = (hj & 2) != 0;
        bool swapped = sw;
        /* must: the cell holds the version e was loaded as / stored from;
         * never: the contents differ */
        bool must = false, never = false;
        if (c->ver && c->unknown) {
            /* either */
        } else if (!es) {
            must = !c->ver || c->mdl.count == 0;
            never = !must;
        } else if (!c->ver) {
            never = es->count != 0;
        } else if (es->vid == c->mdl.vid) {
            must = true;
        } else {
            never = !model_equal(es, &c->mdl);
        }
        trace("cell %u: cas expected %d desired %d (must %d never %d)", ci % NCELL, e, i, must,
              never);
        before b = snap();
        champ_status st = champ_cell_cas(c->c, es ? es->m : NULL, s->m, &swapped);
        if (!copies_ok()) {
            FZ_CHECK(st == CHAMP_EINVAL && swapped == sw,
                     "cell cas, no retain: %s, want EINVAL", st_name(st));
            break;
        }
        if (c->typed && c->tid != s->tid) {
            FZ_CHECK(st == CHAMP_EPOOL && swapped == sw,
                     "cell cas of another type: %s, want EPOOL", st_name(st));
            break;
        }
        if (st == CHAMP_ENOMEM) { /* as store */
            FZ_CHECK(swapped == sw, "a failed cas wrote *swapped");
            after_failure(-1, &b, st, "cell cas");
            cell_verify(c, "cell after a failed cas");
            break;
        }
        FZ_CHECK(st == CHAMP_OK, "cell cas: %s", st_name(st));
        FZ_CHECK(!(must && !swapped) && !(never && swapped),
                 "cell cas: swapped %d (must %d, never %d)", swapped, must, never);
        if (swapped) {
            c->typed = c->ver = true;
            c->unknown = false;
            c->tid = s->tid;
            c->var = s->var;
            model_copy(&c->mdl, s);
        }
        break;
    }
    default:
        trace("cell %u: verify", ci % NCELL);
        cell_verify(c, "cell verify");
        break;
    }
}


/* Bad input to the newer API (extended format). */
static void badinput_ext(champ_map *m, size_t n) {
    champ_map *out;
    /* NULL arguments of the newer API */
    out = (champ_map *)(uintptr_t)0xbad0;
    FZ_CHECK(champ_union(NULL, m, NULL, NULL, &out) == CHAMP_EINVAL && out == NULL,
             "union of NULL");
    out = (champ_map *)(uintptr_t)0xbad0;
    FZ_CHECK(champ_filter(m, NULL, NULL, &out) == CHAMP_EINVAL && out == NULL,
             "filter without a predicate");
    FZ_CHECK(champ_union(m, m, NULL, NULL, NULL) == CHAMP_EINVAL, "union without out");
    FZ_CHECK(!champ_equal(m, NULL, NULL, NULL) && !champ_subset(NULL, m) &&
                 !champ_disjoint(m, NULL),
             "equal/subset/disjoint with NULL");
    FZ_CHECK(champ_diff(m, NULL, NULL, cb_diff, &AL) == CHAMP_EINVAL, "diff with NULL");
    FZ_CHECK(champ_apply(m, NULL, 1) == CHAMP_EINVAL && champ_apply(NULL, NULL, 0) == CHAMP_EINVAL,
             "apply of NULL");
    kpass kp = key_pass(1 % F.U, 0);
    FZ_CHECK(k_upsert(m, &kp, NULL, NULL) == CHAMP_EINVAL, "upsert without a slot");
    FZ_CHECK(k_update(m, &kp, NULL, NULL) == CHAMP_EINVAL, "update without fn");
    FZ_CHECK(champ_cell_new(m, NULL) == CHAMP_EINVAL, "cell_new without out");
    out = (champ_map *)(uintptr_t)0xbad0;
    FZ_CHECK(champ_cell_load(NULL, &out) == CHAMP_EINVAL && out == NULL, "load of NULL");
    FZ_CHECK(champ_cell_store(NULL, m) == CHAMP_EINVAL, "store into NULL");
    FZ_CHECK(champ_is_set(m) == F.set && !champ_is_set(NULL), "is_set");
    /* a set and a map: CHAMP_EKIND (a scratch map in a private pool) */
    champ_config sc = F.cfg;
    sc.set = !F.set;
    sc.pool = NULL;
    sc.val_retain = NULL;
    sc.val_release = NULL;
    champ_map *x = NULL;
    champ_status st = champ_new(&sc, &x);
    FZ_CHECK(st == CHAMP_OK, "scratch map: %s", st_name(st));
    out = (champ_map *)(uintptr_t)0xbad0;
    FZ_CHECK(champ_union(m, x, NULL, NULL, &out) == CHAMP_EKIND && out == NULL, "union of a "
             "map and a set");
    out = (champ_map *)(uintptr_t)0xbad0;
    FZ_CHECK(champ_intersect(x, m, NULL, NULL, &out) == CHAMP_EKIND && out == NULL,
             "intersect of a map and a set");
    out = (champ_map *)(uintptr_t)0xbad0;
    FZ_CHECK(champ_symdiff(m, x, &out) == CHAMP_EKIND && out == NULL, "symdiff");
    FZ_CHECK(!champ_equal(m, x, NULL, NULL) && !champ_subset(x, m) && !champ_disjoint(m, x),
             "equal/subset/disjoint of a map and a set");
    FZ_CHECK(champ_diff(m, x, NULL, cb_diff, &AL) == CHAMP_EKIND, "diff of a map and a set");
    champ_free(x);
    FZ_CHECK(champ_size(m) == n, "a refused call changed the size");
}
/* ------------------------------------------------------------------ */
/* Configuration                                                       */
/* ------------------------------------------------------------------ */

static const size_t buf_sizes[] = {2048, 4096, 8192, 16384, 65536, 262144};
static const double wm_fracs[] = {0.5, 0.8, 0.95, 1.0};
static const unsigned usizes[] = {8, 32, 128, 512};

/* Reads the header; false when the pool or the first map cannot be made
 * (checked: only for the documented reasons). */
static bool setup(rd *r) {
    F.ext = r->n >= 2 && r->p[0] == FZ_MAGIC0 && r->p[1] == FZ_MAGIC1;
    if (F.ext)
        r->i = 2;
    unsigned b0 = rd_u8(r), b1 = rd_u8(r), b2 = rd_u8(r), b3 = rd_u8(r), b4 = rd_u8(r);
    unsigned e0 = F.ext ? rd_u8(r) : 0, e1 = F.ext ? rd_u8(r) : 0;
    F.kind = (champ_key_kind)(1 + b0 % 3);
    F.hmode = (int)(b0 / 3 % NHM);
    F.ushape = (int)(b0 / 18 % 3);
    F.U = usizes[b1 & 3];
    F.val_cb = b1 & 4;
    F.key_cb = F.kind == CHAMP_KEY_GENERIC && (b1 & 8);
    F.pool_mode = (int)(b2 % NPM);
    /* the extended header (e0, e1) */
    F.set = e0 & 1;
    F.bhmode = F.kind == CHAMP_KEY_BYTES ? (int)((e0 >> 1) & 3) : BH_NONE;
    F.compare = F.kind == CHAMP_KEY_GENERIC && (e0 & 2);
    F.concurrent = (e0 & 8) != 0;
    F.poolb_concurrent = (e0 & 16) != 0;
    if (e0 & 32)
        F.U = UMAX;
    F.collide = (e0 & 64) != 0;
    F.bmask = 0;
    for (unsigned j = 0; j < 1 + e1 % 4; j++)
        F.bmask |= 1ULL << (mix64(e1 + j) % 64);
    bool set_with_val_cb = F.set && F.val_cb; /* refused: checked below */
    if (F.set)
        F.val_cb = false;
    F.no_retain = (b1 & 0x30) == 0x30 && (F.val_cb || F.key_cb);
    F.mask = 0;
    if (F.hmode == HM_BITS) {
        unsigned nb = 1 + (b1 >> 6) * 3;
        for (unsigned j = 0; j < nb; j++)
            F.mask |= 1ULL << (rd_u8(r) % 64);
    }
    for (unsigned i = 0; i < UMAX; i++) {
        F.keys[i].id = F.probes[i].id = i + 1;
        F.keys[i].held = F.probes[i].held = 0;
    }
    for (unsigned i = 0; i < NVAL; i++) {
        F.vals[i].id = 100000 + i;
        F.vals[i].held = 0;
    }
    F.a_fail_at = -1;
    F.op_slot = F.op_slot2 = F.op_dst = F.pinned = -1;
    F.op_key = -1;

    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    static const size_t chunks[] = {0, 1024, 4096, 65536};
    switch (F.pool_mode) {
    case PM_DEFAULT:
        pc.chunk_size = chunks[b3 & 3];
        break;
    case PM_BACKING:
        pc.allocator = &a_alloc;
        pc.chunk_size = chunks[b3 & 1];
        F.a_fail_at = (b3 >> 2) & 1 ? (long)(b4 % 48) : -1;
        F.a_fail_persist = (b3 >> 3) & 1;
        break;
    default:
        F.buf_size = buf_sizes[b3 % 6];
        pc.buffer = fixed_buf;
        pc.buffer_size = F.buf_size;
        if (b4 & 1) {
            pc.watermark = wm_fracs[(b4 >> 1) & 3];
            pc.on_watermark = cb_watermark;
            pc.watermark_ctx = &F;
            F.wm_free_oldest = (b4 >> 3) & 1;
        }
        break;
    }
    if (F.concurrent && F.pool_mode == PM_FIXED) {
        /* concurrent pools are arenas: a buffer is refused */
        pc.concurrent = true;
        champ_pool *p = (champ_pool *)(uintptr_t)0xbad0;
        champ_status cs = champ_pool_new(&pc, &p);
        FZ_CHECK(cs == CHAMP_EINVAL, "concurrent pool over a buffer: %s, want EINVAL",
                 st_name(cs));
        pc.concurrent = false;
        F.concurrent = false;
    }
    pc.concurrent = F.concurrent;
    champ_status st = champ_pool_new(&pc, &F.pool);
    trace("config: %s%s hash %d mask %#llx U %u shape %d valcb %d keycb %d noretain %d pool %d "
          "buf %zu fail_at %ld%s wm %d free_oldest %d: pool_new %s",
          F.set ? "set " : "", kind_name(), F.hmode, (unsigned long long)F.mask, F.U, F.ushape,
          F.val_cb, F.key_cb, F.no_retain, F.pool_mode, F.buf_size, F.a_fail_at,
          F.a_fail_persist ? "+" : "", pc.on_watermark != NULL, F.wm_free_oldest, st_name(st));
    if (F.ext)
        trace("extended: bytes_hash %d mask %#llx compare %d concurrent %d/%d collide %d",
              F.bhmode, (unsigned long long)F.bmask, F.compare, F.concurrent,
              F.poolb_concurrent, F.collide);
    if (st != CHAMP_OK) {
        FZ_CHECK(F.pool == NULL, "failed pool_new left *out set");
        FZ_CHECK((st == CHAMP_ENOMEM && F.pool_mode == PM_BACKING && F.a_fail_at >= 0) ||
                     (st == CHAMP_EINVAL && F.pool_mode == PM_FIXED && F.buf_size <= 4096),
                 "pool_new: %s", st_name(st));
        return false;
    }
    champ_config c = CHAMP_CONFIG_INIT(F.kind);
    if (F.kind == CHAMP_KEY_GENERIC) {
        c.hash = cb_hash;
        c.equal = cb_equal;
        if (F.key_cb) {
            c.key_retain = F.no_retain ? NULL : cb_key_retain;
            c.key_release = cb_key_release;
        }
    }
    if (F.val_cb) {
        c.val_retain = F.no_retain ? NULL : cb_val_retain;
        c.val_release = cb_val_release;
    }
    c.ctx = &F;
    c.seed = (uint64_t)b4 << 32 | b3;
    c.fixed_seed = true;
    c.pool = F.pool;
    c.set = F.set;
    if (F.compare)
        c.compare = cb_compare;
    if (F.bhmode != BH_NONE)
        c.bytes_hash = cb_bytes_hash;
    if (set_with_val_cb) {
        champ_config bad = c;
        bad.val_retain = cb_val_retain;
        bad.val_release = cb_val_release;
        champ_map *m = (champ_map *)(uintptr_t)0xbad0;
        champ_status bs = champ_new(&bad, &m);
        FZ_CHECK(bs == CHAMP_EINVAL && m == NULL, "a set with value callbacks: %s, want EINVAL",
                 st_name(bs));
    }
    F.cfg = c;
    for (int v = 0; v < NTV; v++)
        F.cfgv[v] = c;
    F.cfgv[TV_SEED].seed = c.seed ^ 0x5deece66dULL;
    F.cfgv[TV_POOLB].pool = NULL; /* set when the second pool is made */
    switch (F.kind) {
    case CHAMP_KEY_GENERIC:
        F.cfgv[TV_CB].compare = c.compare ? NULL : cb_compare;
        break;
    case CHAMP_KEY_BYTES:
        F.cfgv[TV_CB].bytes_hash = c.bytes_hash ? NULL : cb_bytes_hash_alt;
        break;
    default:
        F.cfgv[TV_CB].seed = c.seed + 1;
        break;
    }
    return true;
}

static void teardown(void) {
    F.h_armed = false;
    champ_pool_fail_after(F.pool, -1);
    F.fail_after_armed = false;
    for (int i = 0; i < NCELL; i++)
        cell_drop(&F.cell[i]);
    for (int i = 0; i < NSLOT; i++)
        if (F.s[i].m) {
            g_op++;
            op_free(i);
        }
    champ_pool_stats ps;
    champ_status st = champ_pool_stats_get(F.pool, &ps, sizeof ps);
    FZ_CHECK(st == CHAMP_OK, "pool stats: %s", st_name(st));
    FZ_CHECK(ps.bytes_live == 0 && ps.maps == 0,
             "every map freed, but the pool has %zu live bytes and %zu maps", ps.bytes_live,
             ps.maps);
    champ_pool_free(F.pool);
    F.pool = NULL;
    if (F.poolb) {
        st = champ_pool_stats_get(F.poolb, &ps, sizeof ps);
        FZ_CHECK(st == CHAMP_OK && ps.bytes_live == 0 && ps.maps == 0,
                 "every map freed, but the second pool has %zu live bytes and %zu maps",
                 ps.bytes_live, ps.maps);
        champ_pool_free(F.poolb);
        F.poolb = NULL;
    }
    FZ_CHECK(F.a_live == 0, "the pool is gone but %zu backing bytes are not back", F.a_live);
    for (unsigned i = 0; i < UMAX; i++)
        FZ_CHECK(F.keys[i].held == 0 && F.probes[i].held == 0,
                 "key %u still has %ld + %ld references", i, F.keys[i].held, F.probes[i].held);
    for (unsigned i = 0; i < NVAL; i++)
        FZ_CHECK(F.vals[i].held == 0, "value %u still has %ld references", i, F.vals[i].held);
    FZ_CHECK(g_held == 0, "reference total %ld", g_held);
}

/* ------------------------------------------------------------------ */
/* The program                                                         */
/* ------------------------------------------------------------------ */

enum {
    O_SET, O_REMOVE, O_GET, O_COPY, O_PSET, O_PREMOVE, O_NEWLIKE, O_FREE, O_CLEAR, O_ITER,
    O_FOREACH, O_NEW, O_VALIDATE, O_BULK, O_BULKDEL, O_ARM, O_FAULT, O_STATS, O_BAD,
    /* extended format only */
    O_ADD, O_ALG, O_APPLY, O_UPSERT, O_UPDATE, O_MANY, O_TRIM, O_CELL
};
/* The extended format's weights (an opcode byte modulo their sum). */
static const uint8_t ext_weights[][2] = {
    {O_SET, 10}, {O_REMOVE, 7}, {O_GET, 4}, {O_COPY, 3}, {O_PSET, 3}, {O_PREMOVE, 2},
    {O_NEWLIKE, 1}, {O_FREE, 2}, {O_CLEAR, 1}, {O_ITER, 3}, {O_FOREACH, 1}, {O_NEW, 4},
    {O_VALIDATE, 2}, {O_BULK, 3}, {O_BULKDEL, 1}, {O_ARM, 6}, {O_FAULT, 2}, {O_STATS, 1},
    {O_BAD, 1}, {O_ADD, 4}, {O_ALG, 16}, {O_APPLY, 8}, {O_UPSERT, 4}, {O_UPDATE, 4},
    {O_MANY, 4}, {O_TRIM, 2}, {O_CELL, 6}};
static uint8_t ext_table[256];
static unsigned ext_total;

static void ext_table_init(void) {
    if (ext_total)
        return;
    for (size_t i = 0; i < sizeof ext_weights / sizeof ext_weights[0]; i++)
        for (unsigned w = 0; w < ext_weights[i][1]; w++)
            ext_table[ext_total++] = ext_weights[i][0];
}
/* 64 entries: the weights. */
static const uint8_t op_table[64] = {
    O_SET, O_SET, O_SET, O_SET, O_SET, O_SET, O_SET, O_SET, O_SET, O_SET, O_SET, O_SET,
    O_REMOVE, O_REMOVE, O_REMOVE, O_REMOVE, O_REMOVE, O_REMOVE, O_REMOVE, O_REMOVE,
    O_GET, O_GET, O_GET, O_GET, O_GET, O_GET,
    O_COPY, O_COPY, O_COPY, O_PSET, O_PSET, O_PSET, O_PSET, O_PSET, O_PREMOVE, O_PREMOVE,
    O_PREMOVE, O_NEWLIKE, O_FREE, O_FREE, O_CLEAR, O_ITER, O_ITER, O_ITER, O_FOREACH,
    O_FOREACH, O_NEW, O_NEW, O_VALIDATE, O_VALIDATE, O_BULK, O_BULK, O_BULK, O_BULK,
    O_BULKDEL, O_ARM, O_ARM, O_ARM, O_ARM, O_FAULT, O_STATS, O_BAD, O_SET, O_REMOVE};

static void step(rd *r) {
    unsigned opb = rd_u8(r);
    int op = F.ext ? ext_table[opb % ext_total] : op_table[opb % 64];
    int i = (int)(rd_u8(r) % NSLOT);
    if (op == O_NEW) {
        int e = empty_slot(i);
        if (e >= 0) {
            op_new(r, e);
            return;
        }
        op = O_FREE; /* all full: free one instead */
    }
    if (op == O_ARM) {
        F.h_armed = true;
        F.h_cb = (int)(rd_u8(r) % (F.ext ? NCB_EXT : NCB));
        F.h_act = (int)(rd_u8(r) % (F.ext ? NACT_EXT : NACT));
        F.h_countdown = rd_u8(r) % 8;
        F.h_key = rd_u16(r);
        F.h_slot = rd_u8(r);
        F.h_val = rd_u8(r);
        trace("arm: the %s callback (after %u calls) will \"%s\"", cb_names[F.h_cb],
              F.h_countdown, act_names[F.h_act]);
        return;
    }
    if (op == O_FAULT) {
        unsigned n = rd_u8(r);
        long after = n >= 200 ? -1 : (long)(n % 64);
        champ_status st = champ_pool_fail_after(F.pool, after);
        FZ_CHECK(st == CHAMP_OK, "pool_fail_after: %s (build without CHAMP_FAULTS?)",
                 st_name(st));
        F.fail_after_armed = after >= 0;
        trace("fail_after %ld", after);
        return;
    }
    if (!F.s[i].m) {
        int j = live_slot(i);
        if (j < 0) {
            op_new(r, i);
            return;
        }
        i = j;
    }
    switch (op) {
    case O_SET: op_set(r, i); break;
    case O_REMOVE: op_remove(r, i); break;
    case O_GET: op_get(r, i); break;
    case O_COPY: op_derive(r, i, 0); break;
    case O_PSET: op_derive(r, i, 1); break;
    case O_PREMOVE: op_derive(r, i, 2); break;
    case O_NEWLIKE: op_derive(r, i, 3); break;
    case O_FREE: op_free(i); break;
    case O_CLEAR: op_clear(i); break;
    case O_ITER: op_iter(r, i); break;
    case O_FOREACH: op_foreach(r, i); break;
    case O_VALIDATE: op_validate(i); break;
    case O_BULK: op_bulk(r, i, false); break;
    case O_BULKDEL: op_bulk(r, i, true); break;
    case O_STATS: op_stats(i); break;
    case O_ADD: op_add(r, i); break;
    case O_ALG: op_alg(r, i); break;
    case O_APPLY: op_apply(r, i); break;
    case O_UPSERT: op_upsert(r, i); break;
    case O_UPDATE: op_update(r, i); break;
    case O_MANY: op_many(r, i); break;
    case O_TRIM: op_trim(r, i); break;
    case O_CELL: op_cell(r, i); break;
    default: op_badinput(i); break;
    }
}

static void report(void) {
    fprintf(stderr,
            "fuzz_champ: %llu inputs, %llu operations, %llu callback actions, %llu failed "
            "allocations checked (ENOMEM: state unchanged), %llu validates\n",
            tot.inputs, tot.ops, tot.actions, tot.enomem, tot.validates);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool registered;
    if (!registered) {
        registered = true;
        if (getenv("FUZZ_CHAMP_REPORT"))
            atexit(report);
    }
    universe_init();
    ext_table_init();
    if (!devnull)
        devnull = fopen("/dev/null", "w");
    memset(&F, 0, sizeof F);
    g_op = 0;
    g_held = 0;
    rd r = {data, size, 0};
    if (!setup(&r))
        return 0;
    g_op = 1;
    op_new(&r, 0);
    while (rd_more(&r)) {
        g_op++;
        step(&r);
    }
    teardown();
    tot.inputs++;
    tot.ops += (unsigned long long)g_op;
    tot.actions += F.actions;
    return 0;
}

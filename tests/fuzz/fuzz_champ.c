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

#define NSLOT 8
#define UMAX 512
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
    uint8_t present[UMAX];
    void *val[UMAX];
    void *kptr[UMAX]; /* generic: the key object the map stores */
} slot;

enum { HM_GOOD, HM_MOD64, HM_BITS, HM_CONST, HM_DEEP, HM_TOP3, NHM };
enum { PM_DEFAULT, PM_BACKING, PM_FIXED, NPM };
enum { OPC_NONE, OPC_READ, OPC_UPDATE, OPC_FREE };
enum {
    CB_HASH, CB_EQUAL, CB_KEY_RETAIN, CB_KEY_RELEASE, CB_VAL_RETAIN,
    CB_VAL_RELEASE, CB_VISIT, CB_WATERMARK, NCB
};
static const char *const cb_names[NCB] = {
    "hash", "equal", "key_retain", "key_release", "val_retain",
    "val_release", "visit", "watermark"};
enum {
    A_READ_SELF, A_COPY_SELF, A_PSET_SELF, A_SET_SELF, A_REMOVE_SELF,
    A_CLEAR_SELF, A_FREE_SELF, A_GET_OTHER, A_SET_OTHER, A_REMOVE_OTHER,
    A_CLEAR_OTHER, A_FREE_OTHER, A_COPY_OTHER, A_PSET_OTHER, NACT
};
static const char *const act_names[NACT] = {
    "read m", "copy m", "pset m", "set m", "remove m", "clear m", "free m",
    "get other", "set other", "remove other", "clear other", "free other",
    "copy other", "pset other"};

typedef struct fz {
    /* configuration */
    champ_key_kind kind;
    int hmode;
    uint64_t mask;
    unsigned U;
    int ushape;
    bool val_cb, key_cb, no_retain;
    int pool_mode;
    size_t buf_size;
    bool wm_free_oldest;
    /* backing allocator */
    unsigned long a_calls;
    long a_fail_at;
    bool a_fail_persist;
    size_t a_live;
    /* the maps */
    champ_pool *pool;
    champ_config cfg;
    slot s[NSLOT];
    uint64_t seq;
    obj keys[UMAX], probes[UMAX], vals[NVAL];
    bool fail_after_armed;
    /* the operation running (what callbacks act on) */
    int op_class;
    int op_slot;      /* the map m of the operation, or -1 */
    int op_dst;       /* a p-form's destination slot (reserved), or -1 */
    int pinned;       /* a slot being iterated: never freed meanwhile */
    long op_key;      /* key the operation changes, or -1 */
    bool op_clears;   /* clear/free: m may read as empty */
    bool new_present; /* op_key after the operation */
    void *new_val;
    bool op_slot_died; /* m was freed (deferred) by a callback */
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

static void model_clear(slot *s) {
    memset(s->present, 0, F.U);
    memset(s->val, 0, F.U * sizeof(void *));
    memset(s->kptr, 0, F.U * sizeof(void *));
    s->count = 0;
}

static void model_copy(slot *d, const slot *s) {
    memcpy(d->present, s->present, F.U);
    memcpy(d->val, s->val, F.U * sizeof(void *));
    memcpy(d->kptr, s->kptr, F.U * sizeof(void *));
    d->count = s->count;
}

/* Key k now present with v (kused: the generic key a new entry stores). */
static void model_put(slot *s, unsigned k, void *v, void *kused) {
    if (!s->present[k]) {
        s->present[k] = 1;
        s->count++;
        s->kptr[k] = kused;
    }
    s->val[k] = v;
}

static void model_del(slot *s, unsigned k) {
    if (s->present[k]) {
        s->present[k] = 0;
        s->count--;
        s->val[k] = NULL;
        s->kptr[k] = NULL;
    }
}

static int empty_slot(int from) {
    for (int j = 0; j < NSLOT; j++) {
        int i = (from + j) % NSLOT;
        if (!F.s[i].m && i != F.op_dst && i != F.op_slot)
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

static int nlive(void) {
    int n = 0;
    for (int i = 0; i < NSLOT; i++)
        n += F.s[i].m != NULL;
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

/* One reported entry of slot s (seen[] marks ids already reported). */
static void check_entry(const slot *s, const champ_key *k, void *const *v, const char *what) {
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
    if (F.kind == CHAMP_KEY_GENERIC)
        FZ_CHECK(k->ptr == s->kptr[id], "%s: key %ld reported with another key object", what,
                 id);
}

/* ------------------------------------------------------------------ */
/* Hostile callbacks                                                   */
/* ------------------------------------------------------------------ */

static void kill_slot(int i) {
    F.s[i].m = NULL;
    model_clear(&F.s[i]);
    if (i == F.op_slot)
        F.op_slot_died = true;
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
        if (F.s[i].m && i != F.op_slot && i != F.pinned)
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
        FZ_CHECK(pr->key == wk, "%s: remove prior.key %p, want %p", what, pr->key, wk);
        if (had) {
            hand_back_val(pr->val);
            hand_back_key(pr->key);
        }
    }
    if (s->m)
        model_del(s, k);
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
        else if ((long)kk == F.op_key && !reading)
            new_ok = found ? F.new_present && got == F.new_val : !F.new_present;
        else
            new_ok = old_ok;
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

/* ------------------------------------------------------------------ */
/* Operations                                                          */
/* ------------------------------------------------------------------ */

/* Starts a top-level operation on slot i. */
static void op_begin(int cls, int i, long key) {
    F.op_class = cls;
    F.op_slot = i;
    F.op_key = key;
    F.op_clears = false;
    F.op_slot_died = false;
    F.new_present = false;
    F.new_val = NULL;
}

static void op_finish(void) {
    F.op_class = OPC_NONE;
    F.op_slot = -1;
    F.op_dst = -1;
    F.op_key = -1;
}

/* State before an update, to check that a failed one changed nothing. */
typedef struct before {
    unsigned long actions;
    size_t live;
    long held;
} before;

static size_t pool_live(void) {
    champ_pool_stats ps;
    champ_status st = champ_pool_stats_get(F.pool, &ps, sizeof ps);
    FZ_CHECK(st == CHAMP_OK, "pool stats: %s", st_name(st));
    return ps.bytes_live;
}

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
        FZ_CHECK(pool_live() == b->live, "%s: failed call changed live bytes %zu -> %zu", what,
                 b->live, pool_live());
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
    size_t size0 = champ_size(s->m);
    op_begin(OPC_READ, i, -1);
    F.op_dst = d;
    if (type == 1)
        pre_in(&kp, v, had);
    champ_status st;
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

static void op_new(rd *r, int i) {
    unsigned how = rd_u8(r);
    int src = live_slot((int)how);
    champ_map *out = (champ_map *)(uintptr_t)0xbad0;
    before b = snap();
    champ_status st;
    trace("new slot %d%s", i, (how & 1) && src >= 0 ? " (new_like)" : "");
    if ((how & 1) && src >= 0) {
        op_begin(OPC_READ, src, -1);
        F.op_dst = i;
        st = champ_new_like(F.s[src].m, &out);
        op_finish();
    } else {
        op_begin(OPC_UPDATE, -1, -1);
        F.op_dst = i;
        st = champ_new(&F.cfg, &out);
        op_finish();
    }
    if (st != CHAMP_OK) {
        FZ_CHECK(out == NULL, "failed champ_new left *out set");
        after_failure(-1, &b, st, "new");
        return;
    }
    F.s[i].m = out;
    F.s[i].seq = ++F.seq;
    model_clear(&F.s[i]);
    FZ_CHECK(champ_size(out) == 0 && champ_kind(out) == F.kind && champ_pool_of(out) == F.pool,
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
    /* the iterator had walked past every entry when its map changed: it
     * may end either way (CHAMP_OK: it saw the whole map as it was at
     * champ_iter_init, as after an empty map, or a batch that reached the
     * end; or CHAMP_EMODIFIED), but it gives no more entries */
    bool all_seen = false;
    bool changed_self = false;
    champ_key keys[ITER_CAP];
    void *vals[ITER_CAP];
    for (;;) {
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
                all_seen = n == s->count;
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
        FZ_CHECK(st == CHAMP_EMODIFIED || (all_seen && st == CHAMP_OK), "iteration of a changed map: status %s", st_name(st));
        return;
    }
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
    champ_status st = champ_pool_stats_get(F.pool, &ps, sizeof ps);
    FZ_CHECK(st == CHAMP_OK, "pool stats: %s", st_name(st));
    FZ_CHECK(ps.maps == (size_t)nlive(), "pool stats: %zu maps, %d live slots", ps.maps,
             nlive());
    FZ_CHECK(ps.bytes_live <= ps.bytes_reserved && ps.bytes_live <= ps.bytes_peak,
             "pool stats: live %zu reserved %zu peak %zu", ps.bytes_live, ps.bytes_reserved,
             ps.bytes_peak);
    FZ_CHECK(ps.fixed == (F.pool_mode == PM_FIXED), "pool stats: fixed %d", ps.fixed);
    champ_stats ms;
    st = champ_stats_get(F.s[i].m, &ms, sizeof ms);
    FZ_CHECK(st == CHAMP_OK && ms.entries == F.s[i].count, "map stats: %s, %zu entries, model %zu",
             st_name(st), ms.entries, F.s[i].count);
    if (devnull) {
        FZ_CHECK(champ_stats_print(F.s[i].m, devnull) == CHAMP_OK, "stats_print");
        FZ_CHECK(champ_dump(F.s[i].m, devnull) == CHAMP_OK, "dump");
    }
}

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
    unsigned b0 = rd_u8(r), b1 = rd_u8(r), b2 = rd_u8(r), b3 = rd_u8(r), b4 = rd_u8(r);
    F.kind = (champ_key_kind)(1 + b0 % 3);
    F.hmode = (int)(b0 / 3 % NHM);
    F.ushape = (int)(b0 / 18 % 3);
    F.U = usizes[b1 & 3];
    F.val_cb = b1 & 4;
    F.key_cb = F.kind == CHAMP_KEY_GENERIC && (b1 & 8);
    F.no_retain = (b1 & 0x30) == 0x30 && (F.val_cb || F.key_cb);
    F.pool_mode = (int)(b2 % NPM);
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
    F.op_slot = F.op_dst = F.pinned = -1;
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
    champ_status st = champ_pool_new(&pc, &F.pool);
    trace("config: %s hash %d mask %#llx U %u shape %d valcb %d keycb %d noretain %d pool %d "
          "buf %zu fail_at %ld%s wm %d free_oldest %d: pool_new %s",
          kind_name(), F.hmode, (unsigned long long)F.mask, F.U, F.ushape, F.val_cb, F.key_cb,
          F.no_retain, F.pool_mode, F.buf_size, F.a_fail_at, F.a_fail_persist ? "+" : "",
          pc.on_watermark != NULL, F.wm_free_oldest, st_name(st));
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
    F.cfg = c;
    return true;
}

static void teardown(void) {
    F.h_armed = false;
    champ_pool_fail_after(F.pool, -1);
    F.fail_after_armed = false;
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
    O_FOREACH, O_NEW, O_VALIDATE, O_BULK, O_BULKDEL, O_ARM, O_FAULT, O_STATS, O_BAD
};
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
    int op = op_table[opb % 64];
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
        F.h_cb = (int)(rd_u8(r) % NCB);
        F.h_act = (int)(rd_u8(r) % NACT);
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

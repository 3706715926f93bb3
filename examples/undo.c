/*
 * undo - an undo/redo history made of persistent map versions.
 *
 * The "document" is a map from line id (CHAMP_KEY_U64) to the line's text
 * (a const char *, not owned by the map).  Every edit makes a new version
 * with champ_pset_u64 / champ_premove_u64, which leave the previous version
 * untouched; the versions sit in an array that is the undo stack.  Undo and
 * redo just move an index; a new edit after an undo frees the versions that
 * could have been redone.
 *
 * Each undo and redo prints what it changes in the document: champ_diff
 * walks the two versions side by side and visits only the subtrees they do
 * not share, so the report costs what changed, not the document's size.
 *
 * It shows, and checks (exit status 0 only if every check holds):
 *   - every change an undo or redo reports (added, removed, changed line)
 *     is one the model says happened between the two versions, with the
 *     right texts, and none is missed;
 *   - every version keeps its exact content after newer edits (each is
 *     compared with a plain-array model of what it should hold);
 *   - versions share nodes: champ_stats_get reports shared nodes, and the
 *     pool holds far fewer live bytes than the versions would as separate
 *     copies;
 *   - freeing the versions in any order gives every byte back: the pool's
 *     live bytes return to what the empty pool held, and champ_validate
 *     (reference counts over the whole pool) passes after every step.
 */
#include <champ.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define LINES 1000          /* the document starts with lines 1..LINES */
#define MAXID (LINES + 2)   /* ids 1..LINES+1 may appear                */
#define MAXV 16             /* versions kept in the history            */

static char initial[LINES + 1][16];          /* "line N" texts */

static champ_map *hist[MAXV];                 /* hist[0..top]: the history */
static const char *model[MAXV][MAXID];        /* what hist[v] must hold   */
static int top = -1, cur = -1;                /* cur: the version shown   */
static int failures;

static void check(int ok, const char *what)
{
    printf("  %-4s %s\n", ok ? "ok" : "FAIL", what);
    failures += !ok;
}

static void must(champ_status s, const char *what)
{
    if (s < 0) {
        fprintf(stderr, "undo: %s: %s\n", what, champ_strerror(s));
        exit(1);
    }
}

/* An outcome that differs from the one the model predicts. */
static void expect(bool got, bool want, const char *what)
{
    if (got != want) {
        fprintf(stderr, "undo: %s: the key was %s, the model says %s\n", what,
                got ? "present" : "absent", want ? "present" : "absent");
        failures++;
    }
}

/* Does version v hold exactly what its model says? */
static int intact(int v)
{
    size_t n = 0;
    for (uint64_t id = 0; id < MAXID; id++) {
        void *text = NULL;
        bool found = champ_get_u64(hist[v], id, &text);
        if (model[v][id] ? (!found || text != model[v][id]) : found)
            return 0;
        n += model[v][id] != NULL;
    }
    return champ_size(hist[v]) == n;
}

static int all_intact(void)
{
    int ok = 1;
    for (int v = 0; v <= top; v++)
        ok &= hist[v] != NULL ? intact(v) : 1;
    return ok;
}

/* Prints a few lines of version v (the current one after an edit). */
static void show_version(const char *label, int v)
{
    void *a = NULL, *b = NULL, *c = NULL;
    champ_get_u64(hist[v], 10, &a);                 /* absent: stays NULL */
    champ_get_u64(hist[v], 500, &b);
    champ_get_u64(hist[v], LINES + 1, &c);
    printf("%-10s v%d: %4zu lines | 10: %-13s | 500: %-12s | %d: %s\n",
           label, v, champ_size(hist[v]), a ? (char *)a : "-",
           b ? (char *)b : "-", LINES + 1, c ? (char *)c : "-");
}

static void show(const char *label) { show_version(label, cur); }

/* Makes next the newest version: first drops what could have been redone. */
static void push(champ_map *next)
{
    while (top > cur)
        champ_free(hist[top--]);
    if (top + 1 == MAXV) {
        fprintf(stderr, "undo: history full\n");
        exit(1);
    }
    hist[++top] = next;
    cur = top;
}

/* The two kinds of edit: set a line's text, delete a line. */
static void edit_set(uint64_t id, const char *text)
{
    champ_map *next;
    must(champ_pset_u64(hist[cur], id, (void *)text, &next), "champ_pset_u64");
    expect(champ_size(next) == champ_size(hist[cur]), model[cur][id] != NULL,
           "champ_pset_u64");
    int from = cur;
    push(next);
    for (int i = 0; i < MAXID; i++)
        model[cur][i] = model[from][i];
    model[cur][id] = text;
}

static void edit_delete(uint64_t id)
{
    champ_map *next;
    must(champ_premove_u64(hist[cur], id, &next), "champ_premove_u64");
    expect(champ_size(next) < champ_size(hist[cur]), model[cur][id] != NULL,
           "champ_premove_u64");
    int from = cur;
    push(next);
    for (int i = 0; i < MAXID; i++)
        model[cur][i] = model[from][i];
    model[cur][id] = NULL;
}

/* What champ_diff reports between versions `from` and `to`, checked
 * against their models as it goes. */
typedef struct changes {
    int from, to;
    int reported, wrong;
} changes;

static int print_change(champ_change what, const champ_key *key, void *old_val,
                        void *new_val, void *ctx)
{
    changes *c = ctx;
    uint64_t id = key->u64;
    const char *was = id < MAXID ? model[c->from][id] : NULL;
    const char *now = id < MAXID ? model[c->to][id] : NULL;
    int ok = id < MAXID && was != now && old_val == was && new_val == now;
    switch (what) {
    case CHAMP_ADDED:
        printf("    + %4llu: %s\n", (unsigned long long)id, (char *)new_val);
        ok = ok && was == NULL;
        break;
    case CHAMP_REMOVED:
        printf("    - %4llu: %s\n", (unsigned long long)id, (char *)old_val);
        ok = ok && now == NULL;
        break;
    case CHAMP_CHANGED:
        printf("    ~ %4llu: %s -> %s\n", (unsigned long long)id, (char *)old_val,
               (char *)new_val);
        ok = ok && was != NULL && now != NULL;
        break;
    }
    c->reported++;
    c->wrong += !ok;
    return 0;
}

/* Prints what moving from version `from` to `to` changes, and checks it:
 * every reported change is right, and their number is the number of lines
 * whose text differs between the two models. */
static void show_changes(int from, int to)
{
    changes c = { from, to, 0, 0 };
    must(champ_diff(hist[from], hist[to], NULL, print_change, &c), "champ_diff");
    int want = 0;
    for (int id = 0; id < MAXID; id++)
        want += model[from][id] != model[to][id];
    if (c.reported == 0)
        printf("    (no change)\n");
    if (c.wrong || c.reported != want) {
        fprintf(stderr, "undo: v%d -> v%d: %d changes reported (%d wrong), the model "
                "has %d\n", from, to, c.reported, c.wrong, want);
        failures++;
    }
}

static void undo(void)
{
    if (cur > 0) {
        cur--;
        show("undo");
        show_changes(cur + 1, cur);
    }
}

static void redo(void)
{
    if (cur < top) {
        cur++;
        show("redo");
        show_changes(cur - 1, cur);
    }
}

static size_t pool_live(champ_pool *pool)
{
    champ_pool_stats ps;
    must(champ_pool_stats_get(pool, &ps, sizeof ps), "champ_pool_stats_get");
    return ps.bytes_live;
}

int main(void)
{
    /* One explicit pool for every version, so we can watch its bytes. */
    champ_pool *pool;
    must(champ_pool_new(NULL, &pool), "champ_pool_new");
    size_t empty_live = pool_live(pool);

    champ_config cfg = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    cfg.pool = pool;
    cfg.seed = 42;
    cfg.fixed_seed = true;
    champ_map *doc;
    must(champ_new(&cfg, &doc), "champ_new");
    push(doc);                                         /* v0: empty */

    /* v1: load the document.  A fresh copy may be changed in place. */
    must(champ_copy(hist[cur], &doc), "champ_copy");
    push(doc);
    for (uint64_t id = 1; id <= LINES; id++) {
        snprintf(initial[id], sizeof initial[id], "line %d", (int)id);
        champ_prior was;
        must(champ_set_u64(doc, id, initial[id], &was), "champ_set_u64");
        expect(was.found, false, "champ_set_u64");
        model[cur][id] = initial[id];
    }
    show("load");

    edit_set(500, "EDITED");            show("edit 500");    /* v2 */
    edit_delete(10);                    show("delete 10");   /* v3 */
    edit_set(LINES + 1, "appended");    show("append");      /* v4 */
    edit_set(500, "EDITED TWICE");      show("edit 500");    /* v5 */

    printf("\nundo, undo, redo (each with what it changes, by champ_diff):\n");
    undo();
    undo();
    redo();
    check(cur == 4 && intact(cur), "undo/redo land on the right versions");

    printf("\nundo back to the loaded document, then redo everything:\n");
    while (cur > 1)
        undo();
    while (cur < top)
        redo();
    check(cur == top && intact(cur), "back at the newest version");

    printf("\na new edit after two undos drops the redo branch:\n");
    undo();
    undo();
    edit_set(10, "line 10 again");      show("edit 10");     /* v4' */
    undo();
    redo();
    check(top == 4, "the old v4 was dropped, the new edit is v4");
    printf("\nthe older versions are untouched:\n");
    for (int v = 1; v <= 3; v++)
        show_version("", v);
    check(all_intact(), "every version still holds exactly its content");
    check(champ_validate(hist[cur]) == CHAMP_OK, "champ_validate");

    /* Sharing: each version alone would need node_bytes of its own. */
    champ_stats st;
    size_t separate = 0;
    int shared = 0;
    for (int v = 0; v <= top; v++) {
        must(champ_stats_get(hist[v], &st, sizeof st), "champ_stats_get");
        separate += st.node_bytes;
        shared |= st.nodes_shared > 0;
    }
    size_t live = pool_live(pool);
    printf("\n%d versions: %zu bytes live in the pool, %zu bytes as "
           "separate copies\n", top + 1, live, separate);
    check(shared, "versions share nodes (nodes_shared > 0)");
    check(live < separate / 2, "the pool holds less than half of that");

    /* Free the versions out of order, checking the rest after each. */
    printf("\nfreeing the versions in the order 2, 0, 4, 1, 3:\n");
    static const int order[] = { 2, 0, 4, 1, 3 };
    for (int i = 0; i < 5; i++) {
        champ_free(hist[order[i]]);
        hist[order[i]] = NULL;
        int ok = all_intact();
        for (int v = 0; v <= top; v++)
            if (hist[v])
                ok &= champ_validate(hist[v]) == CHAMP_OK;
        printf("  freed v%d: %zu bytes live\n", order[i], pool_live(pool));
        check(ok, "the remaining versions are intact and valid");
    }
    check(pool_live(pool) == empty_live,
          "live bytes are back to those of the empty pool");
    champ_pool_free(pool);

    printf("\n%s\n", failures ? "SOME CHECKS FAILED" : "all checks passed");
    return failures ? 1 : 0;
}

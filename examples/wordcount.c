/*
 * wordcount - count words with a CHAMP_KEY_BYTES map.
 *
 *   wordcount [FILE]
 *
 * Reads FILE (or, without an argument, a short built-in text), splits it into
 * words (runs of ASCII letters, lowercased), counts them in a map from the
 * word (string key; the map keeps its own copy) to its count (stored directly
 * in the void * value as a uintptr_t), then prints the ten most frequent words
 * and the map's telemetry (champ_stats_print).
 *
 * It shows: champ_new_bytes, champ_get_bytes (true when found) and champ_set_bytes
 * (a status, with what it found in a champ_prior), champ_iter_* and champ_foreach over the entries, champ_validate
 * and champ_stats_print.  It checks itself: the counts in the map add up to
 * the number of words read, the map holds one entry per distinct word, and a
 * naive rescan of the text agrees with every count in the top ten.  Exit
 * status: 0 if all of that holds, 1 on any error or failed check.
 */
#include <champ.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP 10

static char builtin_text[] =
    "It was the best of times, it was the worst of times, it was the age of\n"
    "wisdom, it was the age of foolishness, it was the epoch of belief, it\n"
    "was the epoch of incredulity, it was the season of Light, it was the\n"
    "season of Darkness, it was the spring of hope, it was the winter of\n"
    "despair, we had everything before us, we had nothing before us, we\n"
    "were all going direct to Heaven, we were all going direct the other\n"
    "way - in short, the period was so far like the present period, that\n"
    "some of its noisiest authorities insisted on its being received, for\n"
    "good or for evil, in the superlative degree of comparison only.\n";

/* Reads a whole file into a malloc'd buffer; NULL on error. */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;                          /* end of file or error */
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    if (!buf || ferror(f)) {
        fprintf(stderr, "%s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len_out = len;
    return buf;
}

static int is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Finds the next word at or after *pos: lowercases it in place, returns its
 * start and sets *wlen, and moves *pos past it.  NULL when there is none. */
static char *next_word(char *text, size_t len, size_t *pos, size_t *wlen)
{
    size_t i = *pos;
    while (i < len && !is_letter(text[i]))
        i++;
    if (i == len)
        return NULL;
    size_t start = i;
    for (; i < len && is_letter(text[i]); i++)
        if (text[i] <= 'Z')
            text[i] = (char)(text[i] - 'A' + 'a');
    *pos = i;
    *wlen = i - start;
    return text + start;
}

static int fail(const char *what, champ_status s)
{
    fprintf(stderr, "wordcount: %s: %s\n", what, champ_strerror(s));
    return 1;
}

/* champ_foreach callback: adds up the counts. */
static int add_count(const champ_key *key, void *val, void *ctx)
{
    (void)key;
    *(uintmax_t *)ctx += (uintptr_t)val;
    return 0;
}

struct top_word {
    const char *word;   /* the map's own copy (NUL-terminated) */
    uintptr_t count;
};

/* Orders by count, descending, then alphabetically: a stable top ten. */
static int ranks_before(const struct top_word *a, const struct top_word *b)
{
    if (a->count != b->count)
        return a->count > b->count;
    return strcmp(a->word, b->word) < 0;
}

int main(int argc, char **argv)
{
    size_t len;
    char *text;
    if (argc > 1) {
        if (!(text = read_file(argv[1], &len)))
            return 1;
    } else {
        text = builtin_text;
        len = sizeof builtin_text - 1;
    }

    champ_map *m;
    champ_status s = champ_new_bytes(&m);
    if (s != CHAMP_OK)
        return fail("champ_new_bytes", s);
    int rc = 0;

    /* Count: look the word up, then store count + 1. */
    uintmax_t words = 0, distinct = 0;
    size_t pos = 0, wlen;
    char *w;
    while ((w = next_word(text, len, &pos, &wlen))) {
        void *val = NULL;
        uintptr_t n = champ_get_bytes(m, w, wlen, &val) ? (uintptr_t)val : 0;
        champ_prior was;
        s = champ_set_bytes(m, w, wlen, (void *)(n + 1), &was);
        if (s != CHAMP_OK) {
            rc = fail("champ_set_bytes", s);
            goto out;
        }
        if (was.found != (n != 0)) {
            fprintf(stderr, "wordcount: set found the word %s, get said %s\n",
                    was.found ? "present" : "absent", n ? "present" : "absent");
            rc = 1;
            goto out;
        }
        words++;
        distinct += (n == 0);
    }

    /* Top ten by iterating over every entry. */
    struct top_word top[TOP];
    int ntop = 0;
    champ_iter it;
    champ_key key;
    void *val;
    if ((s = champ_iter_init(&it, m)) != CHAMP_OK) {
        rc = fail("champ_iter_init", s);
        goto out;
    }
    while (champ_iter_next(&it, &key, &val)) {
        struct top_word t = { key.ptr, (uintptr_t)val };
        int i = ntop < TOP ? ntop++ : TOP;  /* insertion sort into top[] */
        for (; i > 0 && ranks_before(&t, &top[i - 1]); i--)
            if (i < TOP)
                top[i] = top[i - 1];
        if (i < TOP)
            top[i] = t;
    }
    if ((s = champ_iter_status(&it)) != CHAMP_OK) {
        rc = fail("champ_iter_next", s);
        goto out;
    }

    printf("%ju words, %ju distinct\n\ntop %d:\n", words, distinct, ntop);
    for (int i = 0; i < ntop; i++)
        printf("  %7ju  %s\n", (uintmax_t)top[i].count, top[i].word);
    printf("\n");
    if ((s = champ_stats_print(m, stdout)) != CHAMP_OK) {
        rc = fail("champ_stats_print", s);
        goto out;
    }

    /* Self-checks. */
    uintmax_t sum = 0;
    if ((s = champ_foreach(m, add_count, &sum)) != CHAMP_OK)
        rc = fail("champ_foreach", s);
    if ((s = champ_validate(m)) != CHAMP_OK)
        rc = fail("champ_validate", s);
    if (sum != words || champ_size(m) != distinct) {
        fprintf(stderr, "wordcount: counts add up to %ju of %ju words, "
                "%zu entries for %ju distinct words\n",
                sum, words, champ_size(m), distinct);
        rc = 1;
    }
    for (int i = 0; i < ntop; i++) {        /* naive rescan of the text */
        size_t n = strlen(top[i].word);
        uintptr_t naive = 0;
        pos = 0;
        while ((w = next_word(text, len, &pos, &wlen)))
            naive += (wlen == n && memcmp(w, top[i].word, n) == 0);
        if (naive != top[i].count) {
            fprintf(stderr, "wordcount: '%s' counted %ju times, rescan "
                    "finds %ju\n", top[i].word, (uintmax_t)top[i].count,
                    (uintmax_t)naive);
            rc = 1;
        }
    }
    printf("\nself-check: %s\n", rc ? "FAILED" : "ok");

out:
    champ_free(m);
    if (text != builtin_text)
        free(text);
    return rc;
}

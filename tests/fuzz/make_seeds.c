/*
 * make_seeds.c - writes the seed inputs of fuzz_champ.c: one file per
 * configuration path of its header (key kind x hash mode x pool mode x
 * reference callbacks), each followed by a pseudo-random program.
 *
 *   make_seeds DIR [PROGRAM_BYTES]
 *
 * The committed corpus (tests/fuzz/corpus) started as these seeds and was
 * grown by fuzzing and minimised with `make fuzz-merge`.  The header layout
 * is setup() in fuzz_champ.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t rng = 0x5eed;
static unsigned next8(void) {
    rng += 0x9e3779b97f4a7c15ULL;
    uint64_t z = rng;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (unsigned)((z ^ (z >> 31)) & 0xff);
}

static const char *dir;
static unsigned nfiles;
static size_t prog_bytes = 1200;

/* kind 0..2 (u64, bytes, generic); hmode 0..5; ushape 0..2; usize 0..3;
 * flags: 1 val callbacks, 2 key callbacks, 4 release without retain;
 * pool 0..2 (default, backing, fixed); b3/b4 as setup() reads them. */
static void seed(unsigned kind, unsigned hmode, unsigned ushape, unsigned usize,
                 unsigned flags, unsigned pool, unsigned b3, unsigned b4) {
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%03u", dir, nfiles++);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    unsigned b0 = kind + 3 * hmode + 18 * ushape;
    unsigned b1 = usize | (flags & 1) << 2 | (flags & 2) << 2 | ((flags & 4) ? 0x30 : 0) |
                  (next8() & 3) << 6;
    fputc((int)b0, f);
    fputc((int)b1, f);
    fputc((int)pool, f);
    fputc((int)b3, f);
    fputc((int)b4, f);
    if (kind == 2 && hmode == 2)
        for (unsigned i = 0; i < 10; i++)
            fputc((int)next8(), f);
    for (size_t i = 0; i < prog_bytes; i++)
        fputc((int)next8(), f);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [PROGRAM_BYTES]\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    if (argc > 2)
        prog_bytes = (size_t)strtoul(argv[2], NULL, 10);
    for (unsigned kind = 0; kind < 3; kind++) {
        unsigned shapes = kind == 0 ? 3 : 1;
        for (unsigned sh = 0; sh < shapes; sh++)
            seed(kind, 0, sh, 1 + sh % 3, 0, 0, 0, 0);      /* default pool */
        seed(kind, 0, 0, 2, 1, 0, 1, 0);                    /* counted values, 1 KiB chunks */
        seed(kind, 0, 0, 3, 1, 0, 3, 0);                    /* big universe */
        seed(kind, 0, 0, 1, 5, 0, 0, 0);                    /* release without retain */
        seed(kind, 0, 0, 1, 1, 1, 1 | 4, 3);                /* backing: fail call 3 once */
        seed(kind, 0, 0, 1, 0, 1, 1 | 4 | 8, 9);            /* backing: fail from call 9 */
        seed(kind, 0, 0, 1, 0, 1, 4, 0);                    /* backing: pool header fails */
        seed(kind, 0, 0, 1, 0, 1, 0, 0);                    /* backing, never fails */
        for (unsigned b = 0; b < 6; b++)                    /* fixed 2 KiB .. 256 KiB */
            seed(kind, 0, 0, 1 + (b > 2), b & 1, 2, b, 0);
        seed(kind, 0, 0, 2, 1, 2, 1, 1 | 1 << 3);           /* 4 KiB, watermark .5 frees oldest */
        seed(kind, 0, 0, 2, 0, 2, 2, 1 | 2 << 1 | 1 << 3);  /* 8 KiB, .95 frees oldest */
        seed(kind, 0, 0, 3, 1, 2, 4, 1 | 1 << 1);           /* 64 KiB, .8, no free */
    }
    for (unsigned hm = 1; hm < 6; hm++) {                   /* generic weak hashes */
        seed(2, hm, 0, 1, 0, 0, 0, 0);
        seed(2, hm, 0, 2, 3, 0, 1, 0);                      /* counted keys and values */
        seed(2, hm, 0, 2, 3, 2, 3, 1 | 1 << 3);             /* 16 KiB, watermark */
        seed(2, hm, 0, 1, 3, 1, 1 | 4, 5);                  /* backing fails once */
    }
    seed(2, 0, 0, 1, 7, 0, 0, 0);                           /* keys+values, no retain */
    printf("make_seeds: %u files in %s\n", nfiles, dir);
    return 0;
}

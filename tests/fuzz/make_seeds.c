/*
 * make_seeds.c - writes the seed inputs of fuzz_champ.c: one file per
 * configuration path of its header (key kind x hash mode x pool mode x
 * reference callbacks), each followed by a pseudo-random program.
 *
 *   make_seeds DIR [PROGRAM_BYTES] [ext]
 *
 * With a third argument only the extended format's seeds are written.
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

/* The extended format (fuzz_champ.c: FZ_MAGIC, then the header above and
 * e0, e1): e0 bit 0 a set, bits 1-2 bytes_hash (bytes) / bit 1 compare
 * (generic), bit 3 a concurrent pool, bit 4 a concurrent second pool,
 * bit 5 the 1024-key universe, bit 6 big batches; e1 the bytes_hash mask. */
static void seed_ext(unsigned kind, unsigned hmode, unsigned usize, unsigned flags,
                     unsigned pool, unsigned b3, unsigned b4, unsigned e0, unsigned e1) {
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-x%03u", dir, nfiles++);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    unsigned b0 = kind + 3 * hmode;
    unsigned b1 = usize | (flags & 1) << 2 | (flags & 2) << 2 | ((flags & 4) ? 0x30 : 0) |
                  (next8() & 3) << 6;
    fputc(0xC4, f);
    fputc(0x4D, f);
    fputc((int)b0, f);
    fputc((int)b1, f);
    fputc((int)pool, f);
    fputc((int)b3, f);
    fputc((int)b4, f);
    fputc((int)e0, f);
    fputc((int)e1, f);
    if (kind == 2 && hmode == 2)
        for (unsigned i = 0; i < 10; i++)
            fputc((int)next8(), f);
    for (size_t i = 0; i < prog_bytes; i++)
        fputc((int)next8(), f);
    fclose(f);
}

static void seeds_ext(void) {
    for (unsigned kind = 0; kind < 3; kind++) {
        for (unsigned set = 0; set < 2; set++) {
            seed_ext(kind, 0, 1, set ? 0 : 1, 0, 0, 0, set, 0);          /* default pool */
            seed_ext(kind, 0, 2, 1 | (kind == 2 ? 2 : 0), 0, 1, 0, set | 8, 0); /* concurrent */
            seed_ext(kind, 0, 1, 1, 1, 1 | 4, 7, set | 16, 0);           /* backing fails once */
            seed_ext(kind, 0, 1, 0, 1, 1 | 4 | 8, 20, set, 0);           /* backing fails from 20 */
            seed_ext(kind, 0, 2, 1, 2, 4, 1 | 1 << 3, set, 0);           /* 64 KiB, watermark */
            seed_ext(kind, 0, 1, 0, 2, 2, 0, set | 8, 0);                /* 8 KiB (+concurrent: EINVAL) */
        }
        seed_ext(kind, 0, 1, 5, 0, 0, 0, 0, 0);                          /* release without retain */
        seed_ext(kind, 0, 3, 1, 0, 3, 0, 32 | 64, 0);                    /* 1024 keys, big batches */
    }
    for (unsigned bh = 1; bh < 4; bh++) {                                /* weak bytes_hash */
        seed_ext(1, 0, 2, 1, 0, 0, 0, bh << 1, 3);
        seed_ext(1, 0, 2, 0, 0, 1, 0, 1 | bh << 1 | 8, 1);
        seed_ext(1, 0, 3, 0, 0, 3, 0, bh << 1 | 32 | 64, 0);            /* > 128 colliding keys */
    }
    for (unsigned hm = 1; hm < 6; hm += 2) {                             /* generic + compare */
        seed_ext(2, hm, 2, 3, 0, 0, 0, 2, 0);
        seed_ext(2, hm, 2, 3, 2, 4, 1 | 1 << 3, 2 | 1, 0);
    }
    seed_ext(2, 3, 3, 3, 0, 3, 0, 2 | 32 | 64, 0);                      /* ordered collision nodes */
    seed_ext(2, 3, 3, 0, 0, 3, 0, 32 | 64, 0);                          /* list collision nodes */
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [PROGRAM_BYTES] [ext]\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    if (argc > 2)
        prog_bytes = (size_t)strtoul(argv[2], NULL, 10);
    if (argc > 3) { /* the extended format's seeds only */
        seeds_ext();
        printf("make_seeds: %u files in %s\n", nfiles, dir);
        return 0;
    }
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
    seeds_ext();
    printf("make_seeds: %u files in %s\n", nfiles, dir);
    return 0;
}

/*
 * test_pool.c - pools and stats: pool and map statistics, a map keeping
 * its pool alive, private pools, maps of every kind sharing one pool, and
 * champ_free of a large map and of many copies, chunks from huge-page
 * regions (pool.huge_regions), handle pages from huge-page slabs
 * (pool.handle_slabs), chunk_size's 1 KiB floor (pool.chunk_size_floor).
 * (Fixed buffers and the
 * watermark under memory pressure: test_oom.c; bad pool configs:
 * test_badinput.c.)
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "../src/internal.h"

/* ------------------------------------------------------------------ */
/* Stats, pools, lifetimes                                             */
/* ------------------------------------------------------------------ */

static void test_stats_and_pools(void) {
    champ_pool *pool = NULL;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.chunk_size = 4096;
    CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
    if (!pool)
        return;
    champ_pool_stats ps;
    CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
    CHECK_EQ(ps.maps, 0, "new pool has no maps");
    CHECK_EQ(ps.bytes_live, 0, "new pool has no live bytes");
    CHECK(!ps.fixed, "not a fixed pool");
#if TH_STATS
    CHECK(ps.counters_enabled, "counters enabled in this build");
#endif
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 11, pool);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    if (!m) {
        champ_pool_free(pool);
        return;
    }
    CHECK(champ_pool_of(m) == pool, "map uses the given pool");
    champ_stats s = th_stats(m);
    CHECK_EQ(s.entries, 0, "empty entries");
    CHECK_EQ(s.nodes_bitmap + s.nodes_collision, 0, "empty map has no nodes");
    CHECK_EQ(s.depth_max, 0, "empty depth");
    CHECK(champ_pool_of(m) == pool, "the map's pool");
    CHECK_ST(champ_pool_stats_get(champ_pool_of(m), &ps, sizeof ps), CHAMP_OK);
    CHECK_EQ(ps.maps, 1, "the map's pool counts it");
    size_t live_empty = th_pool_live(pool);
    for (uint64_t i = 0; i < 5000; i++)
        champ_set_u64(m, i, NULL, NULL);
    s = th_stats(m);

    /* A smaller out_size (an older header) fills only that many bytes. */
    {
        const size_t cuts[] = {1, sizeof(size_t), offsetof(champ_stats, nodes_shared),
                               sizeof s - 1};
        for (size_t ci = 0; ci < sizeof cuts / sizeof cuts[0]; ci++) {
            unsigned char buf[sizeof(champ_stats) + 16];
            memset(buf, 0xa5, sizeof buf);
            CHECK_ST(champ_stats_get(m, (champ_stats *)(void *)buf, cuts[ci]),
                     CHAMP_OK);
            size_t untouched = 0;
            for (size_t i = cuts[ci]; i < sizeof buf; i++)
                untouched += buf[i] == 0xa5;
            CHECK_EQ(untouched, sizeof buf - cuts[ci],
                     "champ_stats_get wrote past out_size");
            /* (the size_t fields before depth_max: no padding) */
            size_t cmp = cuts[ci] < offsetof(champ_stats, depth_max)
                             ? cuts[ci]
                             : offsetof(champ_stats, depth_max);
            CHECK(memcmp(buf, &s, cmp) == 0,
                  "champ_stats_get with out_size %zu: the first bytes differ",
                  cuts[ci]);
        }
        champ_pool_stats full;
        CHECK_ST(champ_pool_stats_get(pool, &full, sizeof full), CHAMP_OK);
        const size_t pcuts[] = {1, offsetof(champ_pool_stats, bytes_live),
                                sizeof full - 1};
        for (size_t ci = 0; ci < sizeof pcuts / sizeof pcuts[0]; ci++) {
            unsigned char buf[sizeof(champ_pool_stats) + 16];
            memset(buf, 0xa5, sizeof buf);
            CHECK_ST(champ_pool_stats_get(pool, (champ_pool_stats *)(void *)buf,
                                          pcuts[ci]),
                     CHAMP_OK);
            size_t untouched = 0;
            for (size_t i = pcuts[ci]; i < sizeof buf; i++)
                untouched += buf[i] == 0xa5;
            CHECK_EQ(untouched, sizeof buf - pcuts[ci],
                     "champ_pool_stats_get wrote past out_size");
            size_t cmp = pcuts[ci] < offsetof(champ_pool_stats, fixed)
                             ? pcuts[ci]
                             : offsetof(champ_pool_stats, fixed);
            CHECK(memcmp(buf, &full, cmp) == 0,
                  "champ_pool_stats_get with out_size %zu: the first bytes "
                  "differ", pcuts[ci]);
        }
        /* A bigger out_size (a newer header) fills what the library knows. */
        unsigned char big[sizeof(champ_stats) + 16];
        memset(big, 0xa5, sizeof big);
        CHECK_ST(champ_stats_get(m, (champ_stats *)(void *)big, sizeof big),
                 CHAMP_OK);
        CHECK(memcmp(big, &s, offsetof(champ_stats, depth_max)) == 0,
              "champ_stats_get with a bigger out_size");
    }
    CHECK_EQ(s.entries, 5000, "entries");
    CHECK(s.nodes_bitmap > 100, "a 5000-entry trie has many nodes");
    size_t slot_nodes = 0;
    for (int i = 0; i < CHAMP_STATS_SLOTS; i++)
        slot_nodes += s.nodes_by_slots[i];
    CHECK_EQ(slot_nodes, s.nodes_bitmap, "nodes_by_slots adds up");
    CHECK_EQ(s.nodes_by_slots[0], 0, "no empty bitmap node in a nonempty map");
    CHECK(s.depth_max >= 3 && s.depth_max <= 8, "depth_max %u", s.depth_max);
    CHECK(s.depth_mean >= 1 && s.depth_mean <= s.depth_max, "depth_mean %g",
          s.depth_mean);
    CHECK(s.node_bytes > 0 && s.key_bytes == 0, "node/key bytes");
    CHECK(s.bytes_per_entry > 0 && s.bytes_per_entry < 200,
          "bytes_per_entry %g", s.bytes_per_entry);
    /* the header's formulas, exactly (the same division) */
    double bpe = (double)(s.node_bytes + s.slack_bytes + s.key_bytes) / (double)s.entries;
    CHECK(s.bytes_per_entry == bpe, "bytes_per_entry %.9g = (node + slack + key) / entries "
          "%.9g", s.bytes_per_entry, bpe);
    CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
    CHECK(ps.bytes_live >= s.node_bytes, "pool live %zu >= node bytes %zu",
          ps.bytes_live, s.node_bytes);
    CHECK(ps.bytes_reserved >= ps.bytes_live, "reserved >= live");
    CHECK(ps.bytes_peak >= ps.bytes_live, "peak >= live");
    CHECK(ps.chunks >= 2, "4 KiB chunks: several chunks (%zu)", ps.chunks);
    CHECK(ps.utilization > 0 && ps.utilization <= 1, "utilization %g",
          ps.utilization);
    double util = (double)ps.bytes_live / (double)ps.bytes_reserved;
    CHECK(ps.utilization == util, "utilization %.9g = live / reserved %.9g", ps.utilization,
          util);
    CHECK(ps.backing_calls >= ps.chunks, "backing calls");
    CHECK_EQ(ps.alloc_failures, 0, "no failures");
    if (ps.counters_enabled) {
        CHECK_EQ(ps.allocs, ps.allocs_free_list + ps.allocs_arena,
                 "allocs split");
        CHECK(ps.frees <= ps.allocs, "frees <= allocs");
        CHECK(ps.allocs_free_list > 0, "growing nodes recycles blocks");
    }
    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), CHAMP_OK);
    CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
    CHECK_EQ(ps.maps, 2, "copy counted");
    CHECK_EQ(th_stats(c).nodes_shared, 1, "a copy shares its root only");
    champ_free(c);
    CHECK_EQ(th_stats(m).nodes_shared, 0, "freed copy: nothing shared");
    CHECK_ST(champ_clear(m), CHAMP_OK);
    CHECK_EQ(th_pool_live(pool), live_empty, "clear gives back every node");
    champ_free(m);
    CHECK_EQ(th_pool_live(pool), 0, "freed map: pool live 0");
    CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
    CHECK_EQ(ps.maps, 0, "no maps left");
    champ_pool_free(pool);

    /* A map keeps its pool alive; the last free gives back every byte. */
    th_alloc ta;
    th_alloc_init(&ta);
    pc = (champ_pool_config)CHAMP_POOL_CONFIG_INIT;
    pc.allocator = &ta.a;
    pc.chunk_size = 1024;
    pool = NULL;
    CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
    if (!pool)
        return;
    cfg = th_kind_config(CHAMP_KEY_BYTES, 12, pool);
    m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    champ_pool_free(pool); /* the map holds it now */
    if (m) {
        for (int i = 0; i < 2000; i++) {
            char kb[24];
            int len = snprintf(kb, sizeof kb, "k%d", i);
            CHECK_ST(champ_set_bytes(m, kb, (size_t)len, NULL, NULL), CHAMP_OK);
        }
        CHECK(ta.live_bytes > 0 && ta.calls > 2,
              "the pool allocates through the given allocator");
        CHECK_VALID(m, "map outliving its pool handle");
        champ_map *c2 = NULL;
        CHECK_ST(champ_copy(m, &c2), CHAMP_OK);
        champ_free(m);
        CHECK(ta.live_bytes > 0, "copy still holds the pool");
        CHECK(champ_get_str(c2, "k1999", NULL), "the copy has k1999");
        champ_free(c2);
    }
    CHECK_EQ(ta.live_bytes, 0, "the last map's free destroyed the pool");
    CHECK_EQ(ta.live_blocks, 0, "no block left with the allocator");
    CHECK_EQ(ta.size_mismatches, 0, "free/realloc passed wrong sizes");

    /* A private pool made from pool_config. */
    th_alloc_init(&ta);
    pc = (champ_pool_config)CHAMP_POOL_CONFIG_INIT;
    pc.allocator = &ta.a;
    cfg = th_kind_config(CHAMP_KEY_U64, 13, NULL);
    cfg.pool_config = &pc;
    m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    if (m) {
        for (uint64_t i = 0; i < 1000; i++)
            champ_set_u64(m, i, NULL, NULL);
        CHECK(ta.calls > 0, "private pool uses pool_config's allocator");
        champ_free(m);
    }
    CHECK_EQ(ta.live_bytes, 0, "private pool gone with its map");
    CHECK_EQ(ta.size_mismatches, 0, "sizes passed back");

    /* Two maps with a default config each get their own pool. */
    champ_map *x = NULL, *y = NULL;
    champ_config cx = CHAMP_CONFIG_INIT(CHAMP_KEY_U64);
    CHECK_ST(champ_new(&cx, &x), CHAMP_OK);
    CHECK_ST(champ_new(&cx, &y), CHAMP_OK);
    if (x && y)
        CHECK(champ_pool_of(x) != champ_pool_of(y), "private pools differ");
    champ_free(x);
    champ_free(y);
    /* The shorthands share the default pool and one type per kind. */
    champ_map *d[4] = {0}, *e = NULL;
    CHECK_ST(champ_new_u64(&d[0]), CHAMP_OK);
    CHECK_ST(champ_new_u64(&d[1]), CHAMP_OK);
    CHECK_ST(champ_new_set_u64(&d[2]), CHAMP_OK);
    CHECK_ST(champ_new_bytes(&d[3]), CHAMP_OK);
    CHECK_ST(champ_new_set_bytes(&e), CHAMP_OK);
    if (d[0] && d[1] && d[2] && d[3] && e) {
        CHECK(champ_pool_of(d[0]) == champ_pool_of(d[1]) &&
                  champ_pool_of(d[0]) == champ_pool_of(d[3]) &&
                  champ_pool_of(d[0]) == champ_pool_of(e),
              "default maps share one pool");
        CHECK(champ_seed(d[0]) == champ_seed(d[1]), "one type per kind: one seed");
        CHECK(champ_is_set(d[2]) && !champ_is_set(d[0]) && champ_is_set(e), "sets");
        champ_set_u64(d[0], 7, th_tok(7), NULL);
        champ_set_u64(d[1], 7, th_tok(7), NULL);
        CHECK(champ_equal(d[0], d[1], NULL, NULL), "equal across default maps");
        champ_pool_stats dps;
        CHECK_ST(champ_pool_stats_get(champ_pool_of(d[0]), &dps, sizeof dps), CHAMP_OK);
        CHECK(dps.maps >= 5, "the default pool counts its maps (%zu)", dps.maps);
        /* an explicit concurrent pool with a buffer is refused */
        unsigned char buf[4096];
        champ_pool_config cpc = CHAMP_POOL_CONFIG_INIT;
        cpc.concurrent = true;
        cpc.buffer = buf;
        cpc.buffer_size = sizeof buf;
        champ_pool *bp = NULL;
        CHECK_ST(champ_pool_new(&cpc, &bp), CHAMP_EINVAL);
        CHECK_VALID(d[1], "a default map");
    }
    for (int i = 0; i < 4; i++)
        champ_free(d[i]);
    champ_free(e);
}

/* Maps of all kinds sharing one pool. */
static void test_mixed_pool(void) {
    champ_pool *pool = NULL;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
    if (!pool)
        return;
    th_cbctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.hash_mode = TH_HASH_GOOD;
    th_obj *o = unit_objs_reset(100);
    champ_config cu = th_kind_config(CHAMP_KEY_U64, 1, pool);
    champ_config cb = th_kind_config(CHAMP_KEY_BYTES, 2, pool);
    champ_config cg = th_generic_config(&ctx, false, pool);
    champ_map *u = NULL, *b = NULL, *g = NULL;
    CHECK_ST(champ_new(&cu, &u), CHAMP_OK);
    CHECK_ST(champ_new(&cb, &b), CHAMP_OK);
    CHECK_ST(champ_new(&cg, &g), CHAMP_OK);
    if (u && b && g) {
        for (uint64_t i = 0; i < 100; i++) {
            champ_set_u64(u, i, NULL, NULL);
            champ_set_bytes(b, &i, sizeof i, NULL, NULL);
            champ_set(g, &o[i], NULL, NULL);
        }
        CHECK_VALID(u, "mixed pool u");
        CHECK_VALID(b, "mixed pool b");
        CHECK_VALID(g, "mixed pool g");
        champ_pool_stats ps;
        CHECK_ST(champ_pool_stats_get(pool, &ps, sizeof ps), CHAMP_OK);
        CHECK_EQ(ps.maps, 3, "three maps in the pool");
    }
    champ_free(u);
    champ_free(b);
    CHECK_VALID(g, "g after freeing its pool mates");
    champ_free(g);
    CHECK_EQ(th_pool_live(pool), 0, "mixed pool drained");
    champ_pool_free(pool);
}

/* champ_free of a large, deep map (iterative) and of many copies. */
static void test_free_large(void) {
    champ_pool *pool = NULL;
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
    if (!pool)
        return;
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 99, pool);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    if (m) {
        long n = th_iters(200000, 5000);
        th_rng r = {12345};
        for (long i = 0; i < n; i++)
            champ_set_u64(m, th_next(&r), th_tok((uint64_t)i), NULL);
        CHECK_EQ(champ_size(m), (size_t)n, "large map size");
        CHECK_VALID(m, "large map");
        champ_map *copies[8];
        for (int i = 0; i < 8; i++) {
            copies[i] = NULL;
            CHECK_ST(champ_copy(m, &copies[i]), CHAMP_OK);
            if (copies[i])
                champ_set_u64(copies[i], (uint64_t)i, NULL, NULL);
        }
        champ_free(m);
        for (int i = 0; i < 8; i++) {
            if (i == 3 && copies[i])
                CHECK_VALID(copies[i], "copy of the large map");
            champ_free(copies[i]);
        }
    }
    CHECK_EQ(th_pool_live(pool), 0, "large map freed");
    champ_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* Huge-page regions                                                   */
/* ------------------------------------------------------------------ */

/* pool.c: the reserved bytes from which a libc pool cuts its chunks from
 * huge-page regions (1 MiB), and a switch that refuses every mapping. */
extern size_t champ__region_from;
extern int champ__huge_refuse;

/* A pool of the huge-page tests' mode: 0 libc, 1 libc with no_huge_pages,
 * 2 the counting allocator ta, 3 concurrent on libc. */
static champ_pool *hr_pool(int mode, th_alloc *ta) {
    th_alloc_init(ta);
    champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
    pc.no_huge_pages = mode == 1;
    pc.allocator = mode == 2 ? &ta->a : NULL;
    pc.concurrent = mode == 3;
    champ_pool *pool = NULL;
    CHECK_ST(champ_pool_new(&pc, &pool), CHAMP_OK);
    return pool;
}

/* Frees a pool of hr_pool, restores the threshold, and checks that the
 * counting allocator got everything back. */
static void hr_pool_done(champ_pool *pool, int mode, const th_alloc *ta, size_t saved) {
    champ_pool_free(pool);
    champ__region_from = saved;
    if (mode == 2)
        CHECK(ta->live_bytes == 0, "the counting allocator holds %zu at the end",
              ta->live_bytes);
}

static champ_pool_stats hr_stats(champ_pool *p) {
    champ_pool_stats ps;
    memset(&ps, 0, sizeof ps);
    CHECK_ST(champ_pool_stats_get(p, &ps, sizeof ps), CHAMP_OK);
    return ps;
}

/* A pool on the libc allocator cuts its chunks from huge-page regions once
 * it reserves champ__region_from bytes (pool.c, "Huge-page regions"): the
 * books of the regions agree with the chunks (champ_validate audits them),
 * a refused mapping falls back to malloc without failing an update, trim
 * gives the regions' chunks back and unmaps the regions, and a pool with
 * no_huge_pages, a backing allocator or the concurrent option behaves as
 * its kind says.  Modes: 0 libc, 1 libc with no_huge_pages, 2 a counting
 * allocator, 3 a concurrent pool on libc.  The threshold is lowered to
 * 64 KiB so that maps of a few thousand keys reach it (a debug build
 * validates after every update); a first map under the real threshold
 * takes none. */
static void test_huge_regions(void) {
    size_t saved = champ__region_from;
    for (int mode = 0; mode < 4; mode++) {
        th_alloc ta;
        champ_pool *pool = hr_pool(mode, &ta);
        if (!pool)
            continue;
        bool huge = mode == 0 || mode == 3;
        champ_config cfg = th_kind_config(CHAMP_KEY_U64, 41, pool);
        champ_map *m = NULL;
        CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
        if (!m) {
            champ_pool_free(pool);
            continue;
        }
        long n = th_iters(40000, 8000), bad = 0;
        th_rng r = {0x5eed0000u + (uint64_t)mode};
        /* under 1 MiB at the real threshold: no region */
        for (long i = 0; i < n / 4; i++)
            bad += champ_set_u64(m, th_next(&r), th_tok((uint64_t)i), NULL) != CHAMP_OK;
        CHECK(hr_stats(pool).bytes_huge == 0, "mode %d: a region under 1 MiB", mode);
        champ__region_from = (size_t)64 << 10;
        for (long i = n / 4; i < n; i++) {
            /* mode 0: the first half of the regions' share refused */
            champ__huge_refuse = mode == 0 && i < n / 2;
            bad += champ_set_u64(m, th_next(&r), th_tok((uint64_t)i), NULL) != CHAMP_OK;
        }
        champ__huge_refuse = 0;
        CHECK(bad == 0, "inserts (mode %d; mode 0 with mappings refused for a quarter)", mode);
        CHECK(champ_size(m) == (size_t)n, "size (mode %d)", mode);
        CHECK_VALID(m, "after the inserts (regions audited)");
        champ_pool_stats ps = hr_stats(pool);
        if (huge) {
            CHECK(ps.bytes_huge > 0 && ps.bytes_huge < ps.bytes_reserved,
                  "mode %d: %zu of %zu reserved bytes from regions", mode, ps.bytes_huge,
                  ps.bytes_reserved);
        } else {
            CHECK(ps.bytes_huge == 0, "mode %d: %zu bytes from regions", mode, ps.bytes_huge);
        }
        if (mode == 2) /* every chunk from the allocator (and the pool's header) */
            CHECK(ta.live_bytes > ps.bytes_reserved &&
                      ta.live_bytes < ps.bytes_reserved + ((size_t)64 << 10),
                  "allocator holds %zu for %zu reserved", ta.live_bytes, ps.bytes_reserved);
        /* every key still there */
        r.s = 0x5eed0000u + (uint64_t)mode;
        long missing = 0;
        for (long i = 0; i < n; i++) {
            void *v = NULL;
            missing += !champ_get_u64(m, th_next(&r), &v) || v != th_tok((uint64_t)i);
        }
        CHECK(missing == 0, "lookups (mode %d): %ld missing", mode, missing);
        /* remove 99%, trim: the regions' chunks that emptied go back */
        r.s = 0x5eed0000u + (uint64_t)mode;
        for (long i = 0; i < n; i++) {
            uint64_t k = th_next(&r);
            if (i % 100 != 0)
                bad += champ_remove_u64(m, k, NULL) != CHAMP_OK;
        }
        CHECK(bad == 0, "removes (mode %d)", mode);
        CHECK_ST(champ_pool_trim(pool), CHAMP_OK);
        CHECK_VALID(m, "after removing 99% and trimming");
        ps = hr_stats(pool);
        CHECK(ps.bytes_reserved <= 2 * ps.bytes_live,
              "mode %d: reserved %zu for %zu live after trim", mode, ps.bytes_reserved,
              ps.bytes_live);
        CHECK(ps.bytes_huge <= ps.bytes_reserved, "mode %d: %zu huge of %zu reserved", mode,
              ps.bytes_huge, ps.bytes_reserved);
        /* grow again: regions again */
        r.s = 0x1234u + (uint64_t)mode;
        for (long i = 0; i < n; i++)
            bad += champ_set_u64(m, th_next(&r), NULL, NULL) != CHAMP_OK;
        CHECK(bad == 0, "inserts after the trim (mode %d)", mode);
        CHECK_VALID(m, "grown again");
        ps = hr_stats(pool);
        CHECK(huge ? ps.bytes_huge > 0 : ps.bytes_huge == 0, "mode %d: %zu bytes from regions",
              mode, ps.bytes_huge);
        /* empty and trimmed: no chunk left in a region */
        CHECK_ST(champ_clear(m), CHAMP_OK);
        CHECK_ST(champ_pool_trim(pool), CHAMP_OK);
        CHECK_VALID(m, "cleared and trimmed");
        ps = hr_stats(pool);
        CHECK(ps.bytes_huge == 0, "mode %d: %zu bytes in regions after clear and trim", mode,
              ps.bytes_huge);
        champ_free(m);
        hr_pool_done(pool, mode, &ta, saved);
    }
    champ__region_from = saved;
}


/* Handle pages from slabs (pool.c, "Handle slabs"): a libc pool whose
 * side blocks reach champ__region_from (lowered to 64 KiB here: about
 * 2,000 empty maps) takes its further handle pages from 2 MiB slabs.
 * Checked, in the four modes of pool.huge_regions: no slab under the
 * threshold; one slab's bytes (bytes_huge) past it; a refused mapping
 * falls back to a side block without failing a map; validate audits the
 * slabs' books; after freeing every map but one per third OS page of the
 * slab and trimming, the slab holds exactly its header page and the pages
 * of the maps that stay (computed from their addresses); maps made again
 * reuse the freed blocks lowest first, and their pages count again; with
 * every map freed the emptied slab is kept as a spare until trim, which
 * unmaps it; the other modes take no slab. */
static void test_handle_slabs(void) {
    size_t saved = champ__region_from, pg = (size_t)sysconf(_SC_PAGESIZE);
    const size_t slab = (size_t)2 << 20;
    for (int mode = 0; mode < 4; mode++) {
        th_alloc ta;
        champ_pool *pool = hr_pool(mode, &ta);
        if (!pool)
            continue;
        bool huge = mode == 0 || mode == 3;
        champ_config cfg = th_kind_config(CHAMP_KEY_U64, 43, pool);
        /* 63 pages of handles (under 64 KiB with the maps' one type: the
         * maps are copies of ms[0]), then 300 pages more */
        size_t below = 63 * HPAGE_SLOTS, n = below + 300 * HPAGE_SLOTS, made = 0;
        champ_map **ms = calloc(n, sizeof *ms);
        if (!ms) {
            champ_pool_free(pool);
            continue;
        }
        champ__region_from = (size_t)64 << 10;
        for (; made < below; made++)
            if ((made ? champ_copy(ms[0], &ms[made]) : champ_new(&cfg, &ms[0])) != CHAMP_OK)
                break;
        CHECK(made == below, "mode %d: %zu of %zu maps made", mode, made, below);
        CHECK(hr_stats(pool).bytes_huge == 0 && pool->side_slab == 0,
              "mode %d: a slab under the threshold", mode);
        /* mode 0: the mappings refused for a page's worth of maps */
        size_t in_slab0 = pool->side_slab;
        champ__huge_refuse = mode == 0;
        for (size_t i = 0; i < 2 * HPAGE_SLOTS && made < n; i++, made++)
            if (champ_copy(ms[0], &ms[made]) != CHAMP_OK)
                break;
        champ__huge_refuse = 0;
        CHECK(made == below + 2 * HPAGE_SLOTS, "mode %d: %zu maps made of %zu (mappings refused)",
              mode, made, below + 2 * HPAGE_SLOTS);
        if (mode == 0)
            CHECK(pool->side_slab == in_slab0 && pool->slab_bytes == 0,
                  "a refused mapping: %zu bytes in slabs", pool->side_slab);
        for (; made < n; made++)
            if (champ_copy(ms[0], &ms[made]) != CHAMP_OK)
                break;
        CHECK(made == n, "mode %d: %zu of %zu maps made", mode, made, n);
        for (size_t i = 0; i < made; i += 7)
            CHECK_ST(champ_set_u64(ms[i], i, th_tok(i), NULL), CHAMP_OK);
        if (made)
            CHECK_VALID(ms[made - 1], "the maps made (slabs audited)");
        champ_pool_stats ps = hr_stats(pool);
        if (huge)
            CHECK(ps.bytes_huge == slab && pool->side_slab >= 250 * HPAGE_BYTES,
                  "mode %d: %zu bytes of slabs, %zu in pages", mode, ps.bytes_huge,
                  pool->side_slab);
        else
            CHECK(ps.bytes_huge == 0 && pool->side_slab == 0, "mode %d: %zu bytes of slabs",
                  mode, ps.bytes_huge);
        /* free all but the first map of every third OS page of the slab */
        size_t kept = 0;
        uintptr_t last = 0; /* the OS page of the last map kept */
        for (size_t i = 0; i < made; i++) {
            uintptr_t a = (uintptr_t)ms[i], base = a / slab * slab;
            bool in_slab = huge && base == (uintptr_t)pool->slabs;
            if (!in_slab && i < below)
                continue; /* the side blocks' maps stay */
            size_t q = (a - base) / pg; /* page 0: the slab's header */
            if (in_slab && q % 3 == 0 && q > 0 && a / pg != last) {
                last = a / pg;
                kept++;
                continue;
            }
            champ_free(ms[i]);
            ms[i] = NULL;
        }
        CHECK_ST(champ_pool_trim(pool), CHAMP_OK);
        ps = hr_stats(pool);
        if (huge)
            CHECK(kept > 20 && ps.bytes_huge == pg * (1 + kept),
                  "mode %d: after trim the slab holds %zu bytes for %zu pages kept", mode,
                  ps.bytes_huge, kept);
        CHECK(ps.bytes_reserved >= ps.bytes_live, "reserved %zu, live %zu", ps.bytes_reserved,
              ps.bytes_live);
        for (size_t i = 0; i < made; i++) {
            void *v = NULL;
            if (ms[i] && i % 7 == 0)
                CHECK(champ_get_u64(ms[i], i, &v) && v == th_tok(i), "map %zu reads", i);
        }
        if (made)
            CHECK_VALID(ms[0], "freed and trimmed");
        /* made again: lowest blocks first, their pages counted again */
        size_t again = 0;
        for (size_t i = below; i < made && again < 40 * HPAGE_SLOTS; i++)
            if (!ms[i] && champ_copy(ms[0], &ms[i]) == CHAMP_OK) {
                again++;
                CHECK_ST(champ_set_u64(ms[i], i, th_tok(i), NULL), CHAMP_OK);
            }
        ps = hr_stats(pool);
        if (huge)
            CHECK(ps.bytes_huge > pg * (1 + kept) && ps.bytes_huge < slab,
                  "mode %d: made again: %zu bytes of slabs", mode, ps.bytes_huge);
        if (made)
            CHECK_VALID(ms[0], "maps made again");
        /* all freed: the slab is the spare until trim */
        for (size_t i = 0; i < made; i++)
            champ_free(ms[i]);
        ps = hr_stats(pool);
        if (huge)
            /* (the heap's spare handle page may be a slab's block) */
            CHECK(ps.bytes_huge > 0 && pool->side_slab <= HPAGE_BYTES &&
                      (pool->slab_spare || pool->side_slab),
                  "mode %d: all freed: %zu bytes of slabs kept", mode, ps.bytes_huge);
        CHECK_ST(champ_pool_trim(pool), CHAMP_OK);
        ps = hr_stats(pool);
        CHECK(ps.bytes_huge == 0 && !pool->slab_spare && ps.bytes_live == 0,
              "mode %d: trimmed: %zu bytes of slabs, %zu live", mode, ps.bytes_huge,
              ps.bytes_live);
        free(ms);
        hr_pool_done(pool, mode, &ta, saved);
    }
    champ__region_from = saved;
}

/* Handle slabs past one: maps enough to fill two slabs and start a third
 * (the first 64 handle pages are side blocks, below the threshold; a full
 * slab leaves the open list: validate's audit says if one stays); a map
 * of a full slab freed and made again; every map freed (the first slab to
 * empty is kept as the spare, the next unmapped at once; a third may stay
 * for the heap's own spare page); a slab's worth of maps made again (the
 * open slab, then the spare serve them: two slabs in all, no spare left);
 * trimmed.  A libc pool, plain and concurrent. */
static void test_handle_slabs_full(void) {
    size_t saved = champ__region_from;
    const size_t slab = (size_t)2 << 20, per_slab = (slab / HPAGE_BYTES - 1) * HPAGE_SLOTS;
    for (int mode = 0; mode < 4; mode += 3) {
        th_alloc ta;
        champ_pool *pool = hr_pool(mode, &ta);
        if (!pool)
            continue;
        champ_config cfg = th_kind_config(CHAMP_KEY_U64, 44, pool);
        size_t side = 64 * HPAGE_SLOTS; /* maps in side blocks */
        size_t n = side + 2 * per_slab + 100 * HPAGE_SLOTS, made = 0;
        champ_map **ms = calloc(n, sizeof *ms);
        if (!ms) {
            champ_pool_free(pool);
            continue;
        }
        champ__region_from = (size_t)64 << 10;
        for (; made < n; made++)
            if ((made ? champ_copy(ms[0], &ms[made]) : champ_new(&cfg, &ms[0])) != CHAMP_OK)
                break;
        CHECK(made == n, "mode %d: %zu of %zu maps made", mode, made, n);
        champ_pool_stats ps = hr_stats(pool);
        CHECK(ps.bytes_huge == 3 * slab, "mode %d: three slabs for %zu maps (%zu bytes)", mode,
              made, ps.bytes_huge);
        if (made)
            CHECK_VALID(ms[0], "two full slabs and a third (slabs audited)");
        /* one freed in a full slab: back on the open list, served next */
        size_t mid = side + per_slab / 2; /* a map of the first (full) slab */
        if (mid < made) {
            champ_free(ms[mid]);
            ms[mid] = NULL;
            CHECK_ST(champ_copy(ms[0], &ms[mid]), CHAMP_OK);
            CHECK_VALID(ms[0], "a full slab's block freed and taken again");
        }
        /* all freed, the first map last */
        for (size_t i = made; i-- > 0;)
            champ_free(ms[i]);
        ps = hr_stats(pool);
        CHECK(ps.bytes_huge <= 2 * slab && pool->slab_spare,
              "mode %d: all freed: a spare slab kept, the rest unmapped (%zu bytes of slabs)",
              mode, ps.bytes_huge);
        /* made again: the open slab (if any) and the spare serve them */
        memset(ms, 0, n * sizeof *ms);
        made = 0;
        size_t again = side + per_slab + 10 * HPAGE_SLOTS;
        for (; made < again; made++)
            if ((made ? champ_copy(ms[0], &ms[made]) : champ_new(&cfg, &ms[0])) != CHAMP_OK)
                break;
        ps = hr_stats(pool);
        CHECK(made == again && ps.bytes_huge == 2 * slab && !pool->slab_spare,
              "mode %d: %zu maps made again: two slabs, the spare taken (%zu bytes of slabs)",
              mode, made, ps.bytes_huge);
        if (made)
            CHECK_VALID(ms[0], "maps in the spare slab");
        for (size_t i = 0; i < made; i++)
            champ_free(ms[i]);
        CHECK_ST(champ_pool_trim(pool), CHAMP_OK);
        ps = hr_stats(pool);
        CHECK(ps.bytes_huge == 0 && ps.bytes_live == 0, "mode %d: trimmed: %zu bytes of slabs",
              mode, ps.bytes_huge);
        free(ms);
        hr_pool_done(pool, mode, &ta, saved);
    }
    champ__region_from = saved;
}

/* champ.h: "chunk_size ... at least 1 KiB: smaller values are raised to
 * it".  Pools on a counting allocator with chunk_size 1, 1000, 1024 and
 * 2048, filled with the same 400 inserts: after the first insert (the
 * first chunk) the first three hold the same backing bytes and the 2048
 * pool more; every rise of a pool's backing bytes during the fill (a
 * chunk) is at least 1 KiB.  (Not the same bytes at every step: how much
 * a chunk holds depends a little on the address malloc gives it, so the
 * later chunks come a few inserts apart between pools.) */
static void test_chunk_size_floor(void) {
    static const size_t sizes[] = {1024, 1, 1000, 2048};
    enum { NS = sizeof sizes / sizeof sizes[0], STEPS = 400 };
    size_t first[NS] = {0}, least[NS] = {0};
    for (size_t i = 0; i < NS; i++) {
        th_alloc ta;
        th_alloc_init(&ta);
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.allocator = &ta.a;
        pc.chunk_size = sizes[i];
        champ_pool *p = NULL;
        CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
        if (!p)
            return;
        champ_config c = th_kind_config(CHAMP_KEY_U64, 15, p);
        champ_map *m = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        size_t last = ta.live_bytes;
        least[i] = SIZE_MAX;
        for (uint64_t k = 0; m && k < STEPS; k++) {
            CHECK_ST(champ_set_u64(m, k, th_tok(k), NULL), CHAMP_OK);
            if (k == 0)
                first[i] = ta.live_bytes;
            if (ta.live_bytes > last && ta.live_bytes - last < least[i])
                least[i] = ta.live_bytes - last;
            last = ta.live_bytes;
        }
        CHECK(least[i] >= 1024 && least[i] != SIZE_MAX,
              "chunk_size %zu: every chunk at least 1 KiB (least rise %zu)", sizes[i], least[i]);
        CHECK_VALID(m, "a map of a pool with a small chunk_size");
        champ_free(m);
        champ_pool_free(p);
        CHECK_EQ(ta.live_bytes, 0, "every byte given back");
    }
    CHECK(first[1] == first[0] && first[2] == first[0],
          "chunk_size 1 and 1000 take the first chunk of 1024 (%zu, %zu, %zu backing bytes)",
          first[1], first[2], first[0]);
    CHECK(first[3] > first[0], "chunk_size 2048 takes a bigger first chunk (%zu > %zu)",
          first[3], first[0]);
}

/* champ.h, chunk_size: "0 = 16 KiB.  Later chunks grow geometrically (each
 * is 1/32 of the bytes already reserved, at least this size)"; and
 * bytes_peak, "highest bytes_live of nodes and keys seen": a pool on a
 * counting allocator filled with 200K u64 keys, every rise of its backing
 * bytes during the fill (a chunk) checked against the rule (the bytes in
 * chunks: the backing bytes less what the pool held before its first
 * chunk); then cleared
 * (peak stays at the fill's live bytes) and filled a little (peak
 * unchanged). */
static void test_chunk_growth_and_peak(void) {
    th_alloc ta;
    champ_pool *p = th_alloc_pool(&ta, false);
    if (!p)
        return;
    champ_config c = th_kind_config(CHAMP_KEY_U64, 16, p);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&c, &m), CHAMP_OK);
    /* what the backing allocator holds before the first chunk: the pool's
     * header, the type, the handle page (the rule counts chunks) */
    size_t base = ta.live_bytes, last = base, rises = 0, bad = 0, first = 0;
    uint64_t n = (uint64_t)th_iters(200000, 20000);
    for (uint64_t k = 0; m && k < n; k++) {
        CHECK_ST(champ_set_u64(m, k, th_tok(k), NULL), CHAMP_OK);
        if (ta.live_bytes > last) {
            size_t rise = ta.live_bytes - last, want = (last - base) / 32;
            if (want < 16384)
                want = 16384;
            if (!rises)
                first = rise;
            rises++;
            bad += rise < want;
            if (rise < want)
                fprintf(stderr, "  a chunk of %zu bytes with %zu in chunks (want >= %zu)\n",
                        rise, last - base, want);
        }
        last = ta.live_bytes;
    }
    CHECK(rises > 5 && bad == 0, "%zu chunks, %zu smaller than max(16 KiB, reserved / 32)",
          rises, bad);
    CHECK_EQ(first, 16384, "the first chunk of the default chunk_size");
    champ_pool_stats s1, s2, s3;
    CHECK_ST(champ_pool_stats_get(p, &s1, sizeof s1), CHAMP_OK);
    CHECK(s1.bytes_peak >= s1.bytes_live, "peak %zu, live %zu", s1.bytes_peak, s1.bytes_live);
    CHECK_ST(champ_clear(m), CHAMP_OK);
    CHECK_ST(champ_pool_stats_get(p, &s2, sizeof s2), CHAMP_OK);
    CHECK(s2.bytes_live < s1.bytes_live / 100 && s2.bytes_peak == s1.bytes_peak,
          "cleared: live %zu, the peak stays %zu (was %zu)", s2.bytes_live, s2.bytes_peak,
          s1.bytes_peak);
    for (uint64_t k = 0; m && k < n / 10; k++)
        CHECK_ST(champ_set_u64(m, k, NULL, NULL), CHAMP_OK);
    CHECK_ST(champ_pool_stats_get(p, &s3, sizeof s3), CHAMP_OK);
    CHECK(s3.bytes_peak == s1.bytes_peak, "refilled a tenth: the peak %zu unchanged (%zu)",
          s3.bytes_peak, s1.bytes_peak);
    champ_free(m);
    champ_pool_free(p);
    CHECK_EQ(ta.live_bytes, 0, "every byte given back");
}

/* A fixed buffer is the caller's again once its pool is freed: the pool
 * poisons free blocks for ASan (and marks them no-access for valgrind
 * builds with CHAMP_VALGRIND), and its last free must lift that, or the
 * caller's next write to the buffer is a false use-after-poison (it was,
 * before the fix: found by a probe at this stop).  The buffer is filled,
 * emptied, freed, written and read whole, then serves a second pool whose
 * header sits where the first pool's blocks were.  Fails under ASan (the
 * suite's ASan build) if a byte stays poisoned. */
static void test_buffer_reusable(void) {
    static _Alignas(64) unsigned char buf[64 * 1024];
    for (size_t off = 0; off <= 4096; off += 4096) {
        champ_pool_config pc = CHAMP_POOL_CONFIG_INIT;
        pc.buffer = buf + off;
        pc.buffer_size = sizeof buf - off;
        champ_pool *p = NULL;
        CHECK_ST(champ_pool_new(&pc, &p), CHAMP_OK);
        if (!p)
            return;
        champ_config c = th_kind_config(CHAMP_KEY_BYTES, 19, p);
        champ_map *m = NULL, *k = NULL;
        CHECK_ST(champ_new(&c, &m), CHAMP_OK);
        size_t n = 0;
        for (uint64_t i = 0; m && i < 5000; i++) {
            char key[32];
            int len = snprintf(key, sizeof key, "buffer-key-%llu", (unsigned long long)i);
            if (champ_set_bytes(m, key, (size_t)len, th_tok(i), NULL) != CHAMP_OK)
                break; /* full */
            n++;
            if (i == 300)
                CHECK_ST(champ_copy(m, &k), CHAMP_OK);
        }
        CHECK(n > 300 && n < 5000, "offset %zu: %zu keys fit in 64 KiB", off, n);
        for (uint64_t i = 0; i < n; i += 2) {
            char key[32];
            int len = snprintf(key, sizeof key, "buffer-key-%llu", (unsigned long long)i);
            CHECK_ST(champ_remove_bytes(m, key, (size_t)len, NULL), CHAMP_OK);
        }
        champ_free(m);
        champ_free(k);
        CHECK_EQ(th_pool_live(p), 0, "the buffer's pool drained");
        champ_pool_free(p);
        memset(buf, 0x5c, sizeof buf); /* the caller's memory again */
        size_t odd = 0;
        for (size_t i = 0; i < sizeof buf; i++)
            odd += buf[i] != 0x5c;
        CHECK_EQ(odd, 0, "the buffer reads back what was written");
    }
}

/* What champ_pool_stats promises of the build the library was compiled
 * in: the allocation counters are exact with CHAMP_STATS (debug builds,
 * make STATS=1), else zero with counters_enabled false; backing_calls and
 * alloc_failures are kept in every build, and champ_pool_fail_after works
 * only with CHAMP_FAULTS.  The release-build run of the suite
 * (tests/run.sh) is where the "else" half is checked. */
static void test_build_counters(void) {
    th_alloc ta;
    champ_pool *p = th_alloc_pool(&ta, false);
    if (!p)
        return;
    champ_config cfg = th_kind_config(CHAMP_KEY_U64, 21, p);
    champ_map *m = NULL;
    CHECK_ST(champ_new(&cfg, &m), CHAMP_OK);
    if (!m) {
        champ_pool_free(p);
        return;
    }
    champ_status st = CHAMP_OK;
    for (uint64_t k = 0; k < 3000 && st == CHAMP_OK; k++)
        st = champ_set_u64(m, k, (void *)(uintptr_t)(k + 1), NULL);
    CHECK_ST(st, CHAMP_OK);
    champ_pool_stats ps;
    CHECK_ST(champ_pool_stats_get(p, &ps, sizeof ps), CHAMP_OK);
    CHECK(ps.counters_enabled == (bool)TH_STATS, "counters_enabled %d in a build %s CHAMP_STATS",
          ps.counters_enabled, TH_STATS ? "with" : "without");
    if (TH_STATS) {
        CHECK(ps.allocs > 3000 / 16 && ps.allocs == ps.allocs_free_list + ps.allocs_arena &&
                  ps.frees > 0 && ps.frees <= ps.allocs,
              "counters: %llu allocs (%llu recycled, %llu carved), %llu frees",
              (unsigned long long)ps.allocs, (unsigned long long)ps.allocs_free_list,
              (unsigned long long)ps.allocs_arena, (unsigned long long)ps.frees);
    } else {
        CHECK(ps.allocs == 0 && ps.allocs_free_list == 0 && ps.allocs_arena == 0 &&
                  ps.frees == 0,
              "counters off: zero (%llu allocs, %llu frees)", (unsigned long long)ps.allocs,
              (unsigned long long)ps.frees);
    }
    /* always on: the backing allocator's calls, and refusals */
    CHECK(ps.backing_calls > 0 && ps.backing_calls <= ta.calls,
          "backing_calls %llu, the allocator saw %lu calls",
          (unsigned long long)ps.backing_calls, ta.calls);
    CHECK_EQ(ps.alloc_failures, 0, "no refusals yet");
    ta.fail_at = (long)ta.calls;
    ta.fail_persist = true;
    size_t n = champ_size(m);
    st = CHAMP_OK;
    for (uint64_t k = 3000; k < 300000 && st == CHAMP_OK; k++)
        st = champ_set_u64(m, k, (void *)(uintptr_t)(k + 1), NULL);
    CHECK_ST(st, CHAMP_ENOMEM);
    CHECK(ta.failures > 0, "the allocator refused (%lu)", ta.failures);
    CHECK_ST(champ_pool_stats_get(p, &ps, sizeof ps), CHAMP_OK);
    CHECK(ps.alloc_failures > 0, "alloc_failures counted in every build (%llu)",
          (unsigned long long)ps.alloc_failures);
    CHECK(champ_size(m) > n, "inserts went on until the pool ran dry (%zu, was %zu)",
          champ_size(m), n);
    ta.fail_at = -1;
    CHECK_VALID(m, "after the refusals");
    /* the fault hook: works with CHAMP_FAULTS, else says so */
    CHECK_ST(champ_pool_fail_after(p, 0), TH_FAULTS ? CHAMP_OK : CHAMP_EUNSUPPORTED);
    champ_map *c = NULL;
    CHECK_ST(champ_copy(m, &c), TH_FAULTS ? CHAMP_ENOMEM : CHAMP_OK); /* a handle */
    CHECK_ST(champ_pool_fail_after(p, -1), TH_FAULTS ? CHAMP_OK : CHAMP_EUNSUPPORTED);
    champ_free(c);
    champ_free(m);
    CHECK_EQ(th_pool_live(p), 0, "pool drained");
    champ_pool_free(p);
    CHECK(ta.live_bytes == 0 && ta.size_mismatches == 0,
          "backing: %zu bytes not given back, %lu size mismatches", ta.live_bytes,
          ta.size_mismatches);
}

const th_test th_tests_pool[] = {
    {"pool.stats_and_pools", test_stats_and_pools},
    {"pool.mixed_pool", test_mixed_pool},
    {"pool.free_large", test_free_large},
    {"pool.huge_regions", test_huge_regions},
    {"pool.handle_slabs", test_handle_slabs},
    {"pool.handle_slabs_full", test_handle_slabs_full},
    {"pool.chunk_size_floor", test_chunk_size_floor},
    {"pool.chunk_growth_and_peak", test_chunk_growth_and_peak},
    {"pool.buffer_reusable", test_buffer_reusable},
    {"pool.build_counters", test_build_counters},
};
const size_t th_tests_pool_count = sizeof th_tests_pool / sizeof th_tests_pool[0];

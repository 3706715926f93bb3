// adapt_cxx.cc - the C++ peers: absl::flat_hash_map (libabsl-dev, only when
// its headers are found: HAVE_ABSL) and std::unordered_map (always, with
// g++).  Keys: uint64_t, or std::string_view over the driver's strings (the
// key bytes stay outside the map, as with GLib and champ_generic).  Default
// hashers of each library; no reserve() before inserting.
//
// absl also has copy_update: what a user of a flat table does to keep the
// old version while changing one key (copy the table, then update the
// copy), the baseline of the persistent ops; and the ops of issue 9, as a
// flat-table user would write them:
//   build      reserve(N), then insert from an array made untimed
//   upsert     ++m[k]
//   equal_*    operator== of two tables
//   union_*    a copy of the first table, then insert_or_assign of every
//              entry of the second (the second's value wins, as in champ)
//   intersect_* a table reserved for the smaller size, filled by a scan of
//              the first that looks each key up in the second (the first's
//              value kept, as in champ)
//   set_*      absl::flat_hash_set<uint64_t>
//   query_many its query loop (no batched lookup in absl: the baseline of
//              champ's champ_get_many_u64 is the plain loop, u64 keys)
//   small_maps a std::vector of default-constructed tables (reserved in
//              the timed call: the table objects live there), each filled
//              with the N keys; finish (timed too) frees the vector
// A flat table cannot share: its "shared" second version is a copy with
// one value changed, so its *_shared ops cost what its *_fresh ops do.
// diff has no counterpart here ("-" in the tables).
#include "adapter.h"

#include <algorithm>
#include <cstdint>
#include <new>
#include <type_traits>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>
#ifdef HAVE_ABSL
#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>
#endif

namespace {

template <class K> struct KeyOf;
template <> struct KeyOf<uint64_t> {
    static uint64_t get(const void *keys, size_t i)
    {
        return static_cast<const uint64_t *>(keys)[i];
    }
};
template <> struct KeyOf<std::string_view> {
    static std::string_view get(const void *keys, size_t i)
    {
        const bench_str &s = static_cast<const bench_str *>(keys)[i];
        return std::string_view(s.p, s.len);
    }
};

template <template <class...> class M, template <class...> class S> struct Peer {
    using UMap = M<uint64_t, uint64_t>;
    using SMap = M<std::string_view, uint64_t>;
    using USet = S<uint64_t>;
    // The whole-map ops' second maps and the build input of one key type
    // (made by prepare, outside the timing).
    template <class Map> struct Extra {
        using K = typename Map::key_type;
        Map shared;      // a copy with one value changed
        Map fresh;       // the same N keys and values, inserted apart
        bool have_shared = false, have_fresh = false;
        K chg{};         // the changed key, its old and new value
        uint64_t chg_old = 0, chg_new = 0;
        size_t n = 0;
        std::vector<std::pair<K, uint64_t>> input; // build
    };
    struct State {
        int kind;
        bool is_set = false; // set_insert's prepare: size reports the set
        UMap u;
        SMap s;
        USet set;
        Extra<UMap> ux;
        Extra<SMap> sx;
        std::vector<UMap> small; // small_maps
        size_t small_n = 0;      // ... entries per map
    };

    static void *create(int kind)
    {
        State *st = new (std::nothrow) State();
        if (st)
            st->kind = kind;
        return st;
    }
    static void destroy(void *st) { delete static_cast<State *>(st); }
    static size_t size(void *p)
    {
        State *st = static_cast<State *>(p);
        if (st->is_set)
            return st->set.size();
        return st->kind == BK_U64 ? st->u.size() : st->s.size();
    }

    template <class Map> static Map &map(void *p);
    template <class Map> static Extra<Map> &extra(void *p);

    template <class Map>
    static uint64_t insert(void *p, const void *keys, size_t n, void **)
    {
        Map &m = map<Map>(p);
        uint64_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += m.insert_or_assign(KeyOf<typename Map::key_type>::get(keys, i),
                                    uint64_t(i + 1)).second;
        return c;
    }
    template <class Map>
    static uint64_t query(void *p, const void *keys, size_t n, void **)
    {
        const Map &m = map<Map>(p);
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++) {
            auto it = m.find(KeyOf<typename Map::key_type>::get(keys, i));
            if (it != m.end())
                sum += it->second;
        }
        return sum;
    }
    template <class Map>
    static uint64_t remove(void *p, const void *keys, size_t n, void **)
    {
        Map &m = map<Map>(p);
        uint64_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += m.erase(KeyOf<typename Map::key_type>::get(keys, i));
        return c;
    }
    // n times: copy the map, set keys[i] in the copy to a new value, release
    // the copy.  Counts the updates that replaced a value in a copy of the
    // right size (which also keeps the copy from being optimized away).
    template <class Map>
    static uint64_t copy_update(void *p, const void *keys, size_t n, void **)
    {
        const Map &m = map<Map>(p);
        uint64_t c = 0;
        for (size_t i = 0; i < n; i++) {
            Map cp(m);
            auto r = cp.insert_or_assign(KeyOf<typename Map::key_type>::get(keys, i),
                                         uint64_t(n + i + 1));
            c += !r.second && cp.size() == m.size();
        }
        return c;
    }
    template <class Map>
    static uint64_t iterate(void *p, const void *, size_t, void **)
    {
        const Map &m = map<Map>(p);
        uint64_t sum = 0;
        for (const auto &kv : m)
            sum += kv.second;
        return sum;
    }

    // ---- build, upsert ----
    template <class Map>
    static uint64_t build_prepare(void *p, const void *keys, size_t n, void **)
    {
        auto &in = extra<Map>(p).input;
        in.clear();
        in.reserve(n);
        for (size_t i = 0; i < n; i++)
            in.emplace_back(KeyOf<typename Map::key_type>::get(keys, i), uint64_t(i + 1));
        return n;
    }
    template <class Map>
    static uint64_t build(void *p, const void *, size_t n, void **)
    {
        Map &m = map<Map>(p);
        const auto &in = extra<Map>(p).input;
        m.reserve(n);
        for (size_t i = 0; i < n && i < in.size(); i++)
            m.insert(in[i]);
        return m.size();
    }
    template <class Map>
    static uint64_t build_finish(void *p, const void *, size_t, void **)
    {
        auto &in = extra<Map>(p).input;
        in.clear();
        in.shrink_to_fit();
        return 0;
    }
    template <class Map>
    static uint64_t upsert(void *p, const void *keys, size_t n, void **)
    {
        Map &m = map<Map>(p);
        uint64_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += ++m[KeyOf<typename Map::key_type>::get(keys, i)];
        return sum;
    }

    // ---- whole-map ops ----
    // shared: a copy of the map with keys[N / 2] (value N / 2 + 1, a random
    // place in the iteration order) set to N + 1; kept until the state goes
    // (nothing is shared with the map)
    template <class Map>
    static uint64_t shared_prepare(void *p, const void *keys, size_t n, void **)
    {
        Map &m = map<Map>(p);
        Extra<Map> &x = extra<Map>(p);
        x.n = n;
        if (x.have_shared || n == 0)
            return 0;
        x.shared = m;
        x.chg = KeyOf<typename Map::key_type>::get(keys, n / 2);
        x.chg_old = n / 2 + 1;
        x.chg_new = n + 1;
        x.shared.insert_or_assign(x.chg, x.chg_new);
        x.have_shared = true;
        return 0;
    }
    template <class Map>
    static uint64_t fresh_prepare(void *p, const void *keys, size_t n, void **)
    {
        Extra<Map> &x = extra<Map>(p);
        x.n = n;
        if (x.have_fresh)
            return 0;
        for (size_t i = 0; i < n; i++)
            x.fresh.insert_or_assign(KeyOf<typename Map::key_type>::get(keys, i),
                                     uint64_t(i + 1));
        x.have_fresh = true;
        return 0;
    }
    template <class Map>
    static uint64_t equal_shared(void *p, const void *, size_t n, void **)
    {
        const Map &m = map<Map>(p);
        const Extra<Map> &x = extra<Map>(p);
        uint64_t c = 0;
        for (size_t i = 0; i < n && x.have_shared; i++)
            c += !(m == x.shared);
        return c;
    }
    template <class Map>
    static uint64_t equal_fresh(void *p, const void *, size_t n, void **)
    {
        const Map &m = map<Map>(p);
        const Extra<Map> &x = extra<Map>(p);
        uint64_t c = 0;
        for (size_t i = 0; i < n && x.have_fresh; i++)
            c += m == x.fresh;
        return c;
    }
    // n unions or intersections with b: N entries each; the last one's
    // changed key holds want (0: not checked)
    template <class Map>
    static uint64_t combine(void *p, const Map &b, bool is_union, size_t n, uint64_t want)
    {
        const Map &m = map<Map>(p);
        const Extra<Map> &x = extra<Map>(p);
        uint64_t c = 0;
        for (size_t i = 0; i < n; i++) {
            Map r;
            if (is_union) {
                r = m;
                for (const auto &kv : b)
                    r.insert_or_assign(kv.first, kv.second);
            } else {
                r.reserve(std::min(m.size(), b.size()));
                for (const auto &kv : m)
                    if (b.find(kv.first) != b.end())
                        r.insert(kv);
            }
            bool ok = r.size() == x.n;
            if (i == n - 1 && want) {
                auto it = r.find(x.chg);
                ok = ok && it != r.end() && it->second == want;
            }
            c += ok;
        }
        return c;
    }
    template <class Map>
    static uint64_t union_shared(void *p, const void *, size_t n, void **)
    {
        const Extra<Map> &x = extra<Map>(p);
        return x.have_shared ? combine<Map>(p, x.shared, true, n, x.chg_new) : 0;
    }
    template <class Map>
    static uint64_t union_fresh(void *p, const void *, size_t n, void **)
    {
        const Extra<Map> &x = extra<Map>(p);
        return x.have_fresh ? combine<Map>(p, x.fresh, true, n, 0) : 0;
    }
    template <class Map>
    static uint64_t intersect_shared(void *p, const void *, size_t n, void **)
    {
        const Extra<Map> &x = extra<Map>(p);
        return x.have_shared ? combine<Map>(p, x.shared, false, n, x.chg_old) : 0;
    }
    template <class Map>
    static uint64_t intersect_fresh(void *p, const void *, size_t n, void **)
    {
        const Extra<Map> &x = extra<Map>(p);
        return x.have_fresh ? combine<Map>(p, x.fresh, false, n, 0) : 0;
    }

    // ---- the u64 set ----
    static uint64_t set_prepare(void *p, const void *, size_t, void **)
    {
        static_cast<State *>(p)->is_set = true;
        return 0;
    }
    static uint64_t set_insert(void *p, const void *keys, size_t n, void **)
    {
        USet &set = static_cast<State *>(p)->set;
        const uint64_t *k = static_cast<const uint64_t *>(keys);
        uint64_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += set.insert(k[i]).second;
        return c;
    }
    static uint64_t set_query(void *p, const void *keys, size_t n, void **)
    {
        const USet &set = static_cast<State *>(p)->set;
        const uint64_t *k = static_cast<const uint64_t *>(keys);
        uint64_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += set.find(k[i]) != set.end();
        return c;
    }

    // ---- many small maps (N entries each) ----
    static uint64_t small_prepare(void *p, const void *, size_t n, void **)
    {
        State *st = static_cast<State *>(p);
        std::vector<UMap>().swap(st->small);
        st->small_n = n;
        return 0;
    }
    static uint64_t small_maps(void *p, const void *keys, size_t n, void **)
    {
        State *st = static_cast<State *>(p);
        const uint64_t *k = static_cast<const uint64_t *>(keys);
        uint64_t c = 0;
        st->small.reserve(n);
        for (size_t j = 0; j < n; j++) {
            UMap &m = st->small.emplace_back();
            for (size_t i = 0; i < st->small_n; i++)
                m.insert_or_assign(k[i], uint64_t(i + 1));
            c += m.size() == st->small_n;
        }
        return c;
    }
    static uint64_t small_finish(void *p, const void *, size_t, void **)
    {
        std::vector<UMap>().swap(static_cast<State *>(p)->small);
        return 0;
    }

    template <class Map>
    static void ops(bench_op_fn *op, bench_op_fn *prep, bench_op_fn *fin, bool all)
    {
        op[OP_INSERT] = insert<Map>;
        op[OP_QUERY] = query<Map>;
        op[OP_MISS] = query<Map>;
        op[OP_REMOVE] = remove<Map>;
        op[OP_ITERATE] = iterate<Map>;
        if (!all)
            return;
        op[OP_COPY_UPDATE] = copy_update<Map>;
        op[OP_BUILD] = build<Map>;
        prep[OP_BUILD] = build_prepare<Map>;
        fin[OP_BUILD] = build_finish<Map>;
        op[OP_UPSERT] = upsert<Map>;
        op[OP_EQUAL_SHARED] = equal_shared<Map>;
        op[OP_EQUAL_FRESH] = equal_fresh<Map>;
        op[OP_UNION_SHARED] = union_shared<Map>;
        op[OP_UNION_FRESH] = union_fresh<Map>;
        op[OP_INTERSECT_SHARED] = intersect_shared<Map>;
        op[OP_INTERSECT_FRESH] = intersect_fresh<Map>;
        for (int o : {OP_EQUAL_SHARED, OP_UNION_SHARED, OP_INTERSECT_SHARED})
            prep[o] = shared_prepare<Map>;
        for (int o : {OP_EQUAL_FRESH, OP_UNION_FRESH, OP_INTERSECT_FRESH})
            prep[o] = fresh_prepare<Map>;
        if constexpr (std::is_same_v<Map, UMap>) {
            op[OP_SET_INSERT] = set_insert;
            op[OP_SET_QUERY] = set_query;
            prep[OP_SET_INSERT] = set_prepare;
            op[OP_QUERY_MANY] = query<Map>;
            op[OP_SMALL_MAPS] = small_maps;
            prep[OP_SMALL_MAPS] = small_prepare;
            fin[OP_SMALL_MAPS] = small_finish;
        }
    }

    // all: copy_update and the ops of issue 9 too (absl, the baseline)
    static bench_adapter make(const char *name, bool all)
    {
        bench_adapter a{};
        a.name = name;
        a.create = create;
        a.destroy = destroy;
        a.size = size;
        ops<UMap>(a.op[BK_U64], a.prepare[BK_U64], a.finish[BK_U64], all);
        ops<SMap>(a.op[BK_STR], a.prepare[BK_STR], a.finish[BK_STR], all);
        return a;
    }
};

template <template <class...> class M, template <class...> class S>
template <class Map>
Map &Peer<M, S>::map(void *p)
{
    State *st = static_cast<State *>(p);
    if constexpr (std::is_same_v<Map, UMap>)
        return st->u;
    else
        return st->s;
}

template <template <class...> class M, template <class...> class S>
template <class Map>
typename Peer<M, S>::template Extra<Map> &Peer<M, S>::extra(void *p)
{
    State *st = static_cast<State *>(p);
    if constexpr (std::is_same_v<Map, UMap>)
        return st->ux;
    else
        return st->sx;
}

#ifdef HAVE_ABSL
template <class K, class V> using AbslMap = absl::flat_hash_map<K, V>;
template <class K> using AbslSet = absl::flat_hash_set<K>;
#endif
template <class K> using StdSet = std::unordered_set<K>;

} // namespace

extern "C" {
extern const bench_adapter bench_adapter_std_unordered;
const bench_adapter bench_adapter_std_unordered =
    Peer<std::unordered_map, StdSet>::make("std_unordered", false);
#ifdef HAVE_ABSL
extern const bench_adapter bench_adapter_absl;
const bench_adapter bench_adapter_absl = Peer<AbslMap, AbslSet>::make("absl", true);
#endif
}

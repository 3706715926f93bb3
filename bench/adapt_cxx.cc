// adapt_cxx.cc - the C++ peers: absl::flat_hash_map (libabsl-dev, only when
// its headers are found: HAVE_ABSL) and std::unordered_map (always, with
// g++).  Keys: uint64_t, or std::string_view over the driver's strings (the
// key bytes stay outside the map, as with GLib and champ_generic).  Default
// hashers of each library; no reserve() before inserting.
//
// absl also has copy_update: what a user of a flat table does to keep the
// old version while changing one key (copy the table, then update the
// copy), the baseline of the persistent ops.
#include "adapter.h"

#include <cstdint>
#include <new>
#include <type_traits>
#include <string_view>
#include <unordered_map>
#ifdef HAVE_ABSL
#include <absl/container/flat_hash_map.h>
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

template <template <class...> class M> struct Peer {
    using UMap = M<uint64_t, uint64_t>;
    using SMap = M<std::string_view, uint64_t>;
    struct State {
        int kind;
        UMap u;
        SMap s;
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
        return st->kind == BK_U64 ? st->u.size() : st->s.size();
    }

    template <class Map> static Map &map(void *p);

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

    template <class Map> static void ops(bench_op_fn *op, bool with_copy)
    {
        op[OP_INSERT] = insert<Map>;
        op[OP_QUERY] = query<Map>;
        op[OP_MISS] = query<Map>;
        op[OP_REMOVE] = remove<Map>;
        op[OP_ITERATE] = iterate<Map>;
        if (with_copy)
            op[OP_COPY_UPDATE] = copy_update<Map>;
    }

    static bench_adapter make(const char *name, bool with_copy)
    {
        bench_adapter a{};
        a.name = name;
        a.create = create;
        a.destroy = destroy;
        a.size = size;
        ops<UMap>(a.op[BK_U64], with_copy);
        ops<SMap>(a.op[BK_STR], with_copy);
        return a;
    }
};

template <template <class...> class M>
template <class Map>
Map &Peer<M>::map(void *p)
{
    State *st = static_cast<State *>(p);
    if constexpr (std::is_same_v<Map, UMap>)
        return st->u;
    else
        return st->s;
}

#ifdef HAVE_ABSL
template <class K, class V> using AbslMap = absl::flat_hash_map<K, V>;
#endif

} // namespace

extern "C" {
extern const bench_adapter bench_adapter_std_unordered;
const bench_adapter bench_adapter_std_unordered =
    Peer<std::unordered_map>::make("std_unordered", false);
#ifdef HAVE_ABSL
extern const bench_adapter bench_adapter_absl;
const bench_adapter bench_adapter_absl = Peer<AbslMap>::make("absl", true);
#endif
}

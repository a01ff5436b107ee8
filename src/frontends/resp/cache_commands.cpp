// Cache commands that act on one entry: CACHE.GET, CACHE.PUT, CACHE.DEL. Their key is the
// user's key (argument 2), so the server routes them, and Redis Cluster clients (COMMAND
// GETKEYS) hash them, by that key; the entry itself lives under the cache's namespace in the
// same partition (services/cache/keyspace.h). The cache named "default" is the plain keyspace.
//
// CACHE.CREATE / INFO / LIST / DROP / CLEAR go through cluster metadata and every shard: the
// server runs them as coroutines (cache_admin.cpp); they are registered here for COMMAND.
#include "frontends/resp/family_util.h"
#include "services/cache/definition.h"
#include "services/cache/keyspace.h"

namespace keel::resp {
namespace {

using cache::Active;

// Finds the cache; writes an error reply and returns false if it is unknown. `a` stays null for
// the default cache.
bool resolve(CmdCtx& c, std::string_view name, const Active*& a, Reply& r) {
  a = nullptr;
  if (name == cache::kDefaultCache) return true;
  if (auto st = cache::check_name(name); !st) {
    r.error("ERR " + st.error().message);
    return false;
  }
  if (c.caches) {
    auto it = c.caches->find(name);
    if (it != c.caches->end()) {
      a = &it->second;
      // Its writes are acknowledged once the cache's writeQuorum copies hold them (capped at
      // the copies its partition has), and so is a reply that shows them.
      c.write_quorum = a->def.write_quorum;
      return true;
    }
  }
  r.error("ERR " + cache::no_such_cache_message(name));
  return false;
}

void reply_cache_error(Reply& r, const Error& e) {
  switch (e.code) {
    case Errc::kOutOfMemory:
      r.error("OOM " + e.message);
      break;
    case Errc::kDiskError:
      r.error("MISCONF " + e.message);
      break;
    case Errc::kWrongType:
      r.wrong_type();
      break;
    default:
      r.error("ERR " + e.message);
      break;
  }
}

// CACHE.GET name key
void cmd_cache_get(CmdCtx& c, Args a, Reply& r) {
  const Active* cache = nullptr;
  if (!resolve(c, a[1], cache, r)) return;
  if (!cache) {
    auto v = lookup(c, a[2]);
    if (!v) return r.null();
    if (v->type != ValueType::kString) return r.wrong_type();
    return r.bulk(v->str);
  }
  // A replica answering (readFrom replica) does not note the access: the primary's order is
  // the one eviction goes by.
  auto got = cache::get(*c.engine, c.partition(a[2]), *cache, a[2], c.now_ms, !c.replica_read);
  if (!got) return reply_cache_error(r, got.error());
  if (!*got) return r.null();
  r.bulk((*got)->value);
}

// CACHE.PUT name key value [TTL duration | EX seconds | PX milliseconds]
void cmd_cache_put(CmdCtx& c, Args a, Reply& r) {
  const Active* cache = nullptr;
  if (a.size() != 4 && a.size() != 6) return r.error(wrong_args(a[0]));
  std::optional<int64_t> ttl;
  if (a.size() == 6) {
    int64_t v = 0;
    if (iequals(a[4], "ttl")) {
      auto d = cache::parse_duration_ms("TTL", a[5]);
      if (!d) return r.error("ERR " + d.error().message);
      ttl = *d;
    } else if (iequals(a[4], "ex") || iequals(a[4], "px")) {
      if (!parse_int64(a[5], v)) return r.not_integer();
      bool secs = iequals(a[4], "ex");
      if (v <= 0 || v > (secs ? cache::kMaxTtlMs / 1000 : cache::kMaxTtlMs))
        return r.error("ERR invalid expire time in 'cache.put' command; allowed: 1 to 2^50 ms");
      ttl = secs ? v * 1000 : v;
    } else {
      return r.error("ERR unknown option '" + std::string(a[4]) +
                     "'; allowed: TTL duration (e.g. 30s), EX seconds, PX milliseconds");
    }
  }
  if (!resolve(c, a[1], cache, r)) return;
  if (!cache) {
    auto st =
        c.engine->set_string(c.partition(a[2]), a[2], a[3], ttl ? c.now_ms + *ttl : 0, c.now_ms);
    if (!st) return reply_status_error(r, st.error());
    return r.ok();
  }
  auto put =
      cache::put(*c.engine, c.partition(a[2]), c.partitions, *cache, a[2], a[3], ttl, c.now_ms);
  if (!put) return reply_cache_error(r, put.error());
  r.ok();
}

// CACHE.DEL name key
void cmd_cache_del(CmdCtx& c, Args a, Reply& r) {
  const Active* cache = nullptr;
  if (!resolve(c, a[1], cache, r)) return;
  auto removed = cache ? cache::remove(*c.engine, c.partition(a[2]), *cache, a[2], c.now_ms)
                       : c.engine->erase(c.partition(a[2]), a[2], c.now_ms);
  if (!removed) return reply_cache_error(r, removed.error());
  r.integer(*removed ? 1 : 0);
}

// CACHE.TTL name key: milliseconds left, -1 without expiry, -2 if absent (as PTTL).
void cmd_cache_ttl(CmdCtx& c, Args a, Reply& r) {
  const Active* cache = nullptr;
  if (!resolve(c, a[1], cache, r)) return;
  std::string key =
      cache ? cache::entry_key(cache->def.name, cache->generation, a[2]) : std::string(a[2]);
  auto v = c.engine->get(c.partition(a[2]), key, c.now_ms);
  if (!v) return r.integer(-2);
  if (v->expire_at_ms == 0) return r.integer(-1);
  r.integer(std::max<int64_t>(0, v->expire_at_ms - c.now_ms));
}

}  // namespace

void register_cache_commands(std::vector<CommandSpec>& t) {
  constexpr auto K = Routing::kKey;
  constexpr auto L = Routing::kLocal;
  // CACHE.GET may record the access (lru/lfu order of a bounded cache): a write.
  t.push_back({"cache.get", 3, kWrite | kFast, 2, 2, 1, K, cmd_cache_get, "cache",
               "Returns the value of a key in a named cache.", "0.1.0"});
  t.push_back({"cache.put", -4, kWrite | kDenyOom, 2, 2, 1, K, cmd_cache_put, "cache",
               "Stores a value in a named cache, with the cache's default TTL unless TTL, EX or PX "
               "is given.",
               "0.1.0"});
  t.push_back(
      {"cache.ttl", 3, kReadonly | kFast, 2, 2, 1, K, cmd_cache_ttl, "cache",
       "Returns the milliseconds an entry of a named cache has left (-1: no expiry, -2: absent).",
       "0.1.0"});
  t.push_back({"cache.del", 3, kWrite | kFast, 2, 2, 1, K, cmd_cache_del, "cache",
               "Removes a key from a named cache.", "0.1.0"});
  t.push_back({"cache.create", -2, kWrite, 0, 0, 0, L, nullptr, "cache",
               "Defines a named cache (REPLICAS, QUORUM, TTL, EVICTION, MAXMEMORY, MAXENTRIES, "
               "READFROM, ENGINE).",
               "0.1.0"});
  t.push_back({"cache.info", 2, kReadonly, 0, 0, 0, L, nullptr, "cache",
               "Returns a named cache's definition and its entries on this node.", "0.1.0"});
  t.push_back({"cache.list", 1, kReadonly, 0, 0, 0, L, nullptr, "cache", "Lists the named caches.",
               "0.1.0"});
  t.push_back({"cache.drop", 2, kWrite, 0, 0, 0, L, nullptr, "cache",
               "Removes a named cache's definition and its entries.", "0.1.0"});
  t.push_back({"cache.clear", 2, kWrite, 0, 0, 0, L, nullptr, "cache",
               "Removes every entry of a named cache.", "0.1.0"});
}

}  // namespace keel::resp

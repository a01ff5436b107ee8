#include "services/cache/ops.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/slots.h"
#include "services/cache/keyspace.h"

namespace keel::cache {

using storage::UpdateAction;
using storage::Value;
using storage::ValueRef;
using storage::ValueType;

int64_t next_access_stamp(int64_t now_ms) {
  thread_local int64_t last = 0;
  int64_t s = now_ms > INT64_MAX / 1000 ? INT64_MAX / 2 : now_ms * 1000;
  last = std::max(s, last + 1);
  return last;
}

namespace {

constexpr size_t kScanStep = 512;

// Visits the live entries whose key starts with `prefix` in one partition, in key order.
template <class F>
void for_each_with_prefix(storage::Engine& e, uint32_t partition, const std::string& prefix,
                          int64_t now_ms, F&& f) {
  std::string start = prefix;
  for (;;) {
    bool past = false;
    auto resume = e.scan_partition(partition, start, kScanStep, now_ms,
                                   [&](std::string_view k, const ValueRef& v) {
                                     if (k.substr(0, prefix.size()) != prefix) {
                                       past = true;
                                       return;
                                     }
                                     f(k, v);
                                   });
    if (past || !resume || resume->substr(0, prefix.size()) != prefix) return;
    start = *resume;
  }
}

}  // namespace

Result<std::optional<Got>> get(storage::Engine& e, uint32_t partition, const Active& c,
                               std::string_view user_key, int64_t now_ms, bool note_access) {
  auto key = entry_key(c.def.name, c.generation, user_key);
  bool track = note_access && c.def.bounded() && c.def.eviction != Eviction::kNone;
  if (!track) {
    auto v = e.get(partition, key, now_ms);
    if (!v || v->type != ValueType::kString) return std::optional<Got>{};
    auto entry = decode_entry(v->str);
    if (!entry) return std::optional<Got>{};
    return std::optional<Got>{Got{std::string(entry->value), v->expire_at_ms}};
  }
  std::optional<Got> out;
  int64_t stamp = next_access_stamp(now_ms);
  auto st = e.update(partition, key, now_ms, [&](Value* cur, Value*) {
    if (!cur || cur->type != ValueType::kString) return UpdateAction::kKeep;
    auto entry = decode_entry(cur->str);
    if (!entry) return UpdateAction::kKeep;
    out = Got{std::string(entry->value), cur->expire_at_ms};
    touch_entry(cur->str, stamp);
    return UpdateAction::kWrite;
  });
  if (!st) return std::unexpected(st.error());
  return out;
}

Result<PutOutcome> put(storage::Engine& e, uint32_t partition, uint32_t partitions, const Active& c,
                       std::string_view user_key, std::string_view value,
                       std::optional<int64_t> ttl_ms, int64_t now_ms) {
  const Definition& d = c.def;
  int64_t ttl = ttl_ms ? *ttl_ms : d.default_ttl_ms;
  int64_t expire_at = ttl > 0 ? now_ms + ttl : 0;
  auto key = entry_key(d.name, c.generation, user_key);
  int64_t stamp = next_access_stamp(now_ms);
  uint32_t hits = 1;
  if (auto cur = e.get(partition, key, now_ms); cur && cur->type == ValueType::kString) {
    if (auto old = decode_entry(cur->str))
      hits = old->hits == UINT32_MAX ? old->hits : old->hits + 1;
  }
  std::vector<storage::Engine::BatchOp> ops;
  PutOutcome out;
  if (d.bounded()) {
    uint64_t max_entries = per_partition(d.max_entries, partitions);
    uint64_t max_bytes = per_partition(d.max_memory_bytes, partitions);
    std::vector<Candidate> cands;
    for_each_with_prefix(
        e, partition, generation_prefix(d.name, c.generation), now_ms,
        [&](std::string_view k, const ValueRef& v) {
          if (k == key || v.type != ValueType::kString) return;  // replaced
          auto entry = decode_entry(v.str);
          auto ek = parse_entry_key(k);
          if (!entry || !ek) return;
          cands.push_back(Candidate{std::string(k), entry_bytes(ek->user_key, entry->value),
                                    entry->access_ms, entry->hits});
        });
    uint64_t incoming = entry_bytes(user_key, value);
    auto victims = choose_victims(cands, d.eviction, max_entries, max_bytes, incoming);
    if (!victims) {
      if (max_bytes != 0 && incoming > max_bytes)
        return make_error(
            Errc::kLimitExceeded,
            fmt::format("entry of {} bytes exceeds cache '{}''s share of maxMemory per partition "
                        "({} bytes = {} / {} partitions); allowed: entries up to {} bytes, or a "
                        "larger maxMemory",
                        incoming, d.name, max_bytes, format_size(d.max_memory_bytes), partitions,
                        max_bytes));
      return make_error(
          Errc::kOutOfMemory,
          fmt::format(
              "cache '{}' is full (maxEntries {}, maxMemory {}; this partition's share: {} "
              "entries, "
              "{} bytes) and its eviction is none; remove entries, or define the cache with "
              "eviction lru or lfu",
              d.name, d.max_entries ? std::to_string(d.max_entries) : "unbounded",
              d.max_memory_bytes ? format_size(d.max_memory_bytes) : "unbounded",
              max_entries ? std::to_string(max_entries) : "unbounded",
              max_bytes ? std::to_string(max_bytes) : "unbounded"));
    }
    for (size_t i : *victims) ops.push_back({partition, cands[i].key, std::nullopt});
    out.evicted = victims->size();
  }
  Value v;
  v.type = ValueType::kString;
  v.str = encode_entry(value, stamp, hits);
  v.expire_at_ms = expire_at;
  if (ops.empty()) {
    auto st = e.put(partition, key, std::move(v), now_ms);
    if (!st) return std::unexpected(st.error());
    return out;
  }
  ops.push_back({partition, std::move(key), std::move(v)});
  auto st = e.write_batch(std::move(ops), now_ms);
  if (!st) return std::unexpected(st.error());
  return out;
}

Result<bool> remove(storage::Engine& e, uint32_t partition, const Active& c,
                    std::string_view user_key, int64_t now_ms) {
  return e.erase(partition, entry_key(c.def.name, c.generation, user_key), now_ms);
}

Result<uint64_t> purge_partition(storage::Engine& e, uint32_t partition, std::string_view name,
                                 std::optional<uint64_t> keep_generation, int64_t now_ms) {
  std::vector<std::string> doomed;
  for_each_with_prefix(e, partition, name_prefix(name), now_ms,
                       [&](std::string_view k, const ValueRef&) {
                         auto ek = parse_entry_key(k);
                         if (!ek || ek->name != name) return;
                         if (keep_generation && ek->generation == *keep_generation) return;
                         doomed.emplace_back(k);
                       });
  uint64_t n = 0;
  for (auto& k : doomed) {
    auto r = e.erase(partition, k, now_ms);
    if (!r) return std::unexpected(r.error());
    n += *r ? 1 : 0;
  }
  return n;
}

Result<uint64_t> purge_stale(storage::Engine& e, uint32_t partition, const Catalog& catalog,
                             int64_t now_ms) {
  std::string all;
  all.push_back(kServiceKeyMark);
  all.append("c:");
  std::vector<std::string> doomed;
  for_each_with_prefix(e, partition, all, now_ms, [&](std::string_view k, const ValueRef&) {
    auto ek = parse_entry_key(k);
    if (!ek) return;
    auto it = catalog.find(ek->name);
    if (it == catalog.end() || it->second.generation != ek->generation) doomed.emplace_back(k);
  });
  uint64_t n = 0;
  for (auto& k : doomed) {
    auto r = e.erase(partition, k, now_ms);
    if (!r) return std::unexpected(r.error());
    n += *r ? 1 : 0;
  }
  return n;
}

Usage usage_in_partition(storage::Engine& e, uint32_t partition, const Active& c, int64_t now_ms) {
  Usage u;
  for_each_with_prefix(e, partition, generation_prefix(c.def.name, c.generation), now_ms,
                       [&](std::string_view k, const ValueRef& v) {
                         auto entry =
                             v.type == ValueType::kString ? decode_entry(v.str) : std::nullopt;
                         auto ek = parse_entry_key(k);
                         if (!entry || !ek) return;
                         ++u.entries;
                         u.bytes += entry_bytes(ek->user_key, entry->value);
                       });
  return u;
}

}  // namespace keel::cache

// Hash commands: HSET HMSET HSETNX HGET HMGET HDEL HGETALL HEXISTS HLEN HKEYS HVALS HSTRLEN
// HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN.
#include <algorithm>
#include <charconv>
#include <cmath>

#include "base/random.h"

#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

// The order HSCAN walks a large hash in: a fixed 64-bit hash of the field.
uint64_t hscan_order(std::string_view field) { return scan_order(field); }

// Looks up a hash. Replies WRONGTYPE and returns false if the key holds something else.
bool hash_lookup(CmdCtx& c, std::string_view key, std::optional<ValueRef>& out, Reply& r) {
  out = lookup(c, key);
  if (out && out->type != ValueType::kHash) {
    r.wrong_type();
    return false;
  }
  return true;
}

// Runs `fn` on the hash at `key` (created empty if absent, removed if left empty).
// Returns false after replying WRONGTYPE or an engine error.
template <class F>
bool hash_update(CmdCtx& c, std::string_view key, Reply& r, F&& fn) {
  bool wrong = false;
  storage::Delta delta;
  auto st = c.engine->update_by_element(c.partition(key), key, c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kHash) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kHash;
    bool changed = call_described(fn, t->hash, delta);
    if (!changed) return UpdateAction::kKeep;
    if (t->hash.empty()) return cur ? UpdateAction::kErase : UpdateAction::kKeep;
    return UpdateAction::kWrite;
  }, delta);
  if (wrong) {
    r.wrong_type();
    return false;
  }
  if (!st) {
    reply_status_error(r, st.error());
    return false;
  }
  return true;
}

void hset_common(CmdCtx& c, Args a, Reply& r, bool hmset) {
  if (a.size() % 2 != 0) return r.error(wrong_args(a[0]));
  int64_t added = 0;
  if (!hash_update(c, a[1], r, [&](storage::HashMap& h, storage::Delta& d) {
        for (size_t i = 2; i + 1 < a.size(); i += 2) {
          auto [it, inserted] = h.try_emplace(std::string(a[i]));
          it->second.assign(a[i + 1]);
          added += inserted ? 1 : 0;
          d.hash_set(a[i], a[i + 1]);
        }
        return true;
      }))
    return;
  hmset ? r.ok() : r.integer(added);
}
void cmd_hset(CmdCtx& c, Args a, Reply& r) { hset_common(c, a, r, false); }
void cmd_hmset(CmdCtx& c, Args a, Reply& r) { hset_common(c, a, r, true); }

void cmd_hsetnx(CmdCtx& c, Args a, Reply& r) {
  bool added = false;
  if (!hash_update(c, a[1], r, [&](storage::HashMap& h, storage::Delta& d) {
        added = h.try_emplace(std::string(a[2]), std::string(a[3])).second;
        if (added) d.hash_set(a[2], a[3]);
        return added;
      }))
    return;
  r.integer(added ? 1 : 0);
}

void cmd_hget(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  if (!v) return r.null();
  auto it = v->hash->find(std::string(a[2]));
  if (it == v->hash->end()) return r.null();
  r.bulk(it->second);
}

void cmd_hmget(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  r.array(a.size() - 2);
  for (size_t i = 2; i < a.size(); ++i) {
    if (!v) {
      r.null();
      continue;
    }
    auto it = v->hash->find(std::string(a[i]));
    it == v->hash->end() ? r.null() : r.bulk(it->second);
  }
}

void cmd_hdel(CmdCtx& c, Args a, Reply& r) {
  int64_t removed = 0;
  if (!hash_update(c, a[1], r, [&](storage::HashMap& h, storage::Delta& d) {
        for (size_t i = 2; i < a.size(); ++i)
          if (h.erase(std::string(a[i]))) {
            ++removed;
            d.hash_del(a[i]);
          }
        return removed > 0;
      }))
    return;
  r.integer(removed);
}

void cmd_hgetall(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  if (!v) return r.map(0);
  r.map(v->hash->size());
  for (auto& [f, val] : *v->hash) {
    r.bulk(f);
    r.bulk(val);
  }
}

void cmd_hexists(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  r.integer(v && v->hash->count(std::string(a[2])) ? 1 : 0);
}

void cmd_hlen(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  r.integer(v ? static_cast<int64_t>(v->hash->size()) : 0);
}

void cmd_hkeys(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  if (!v) return r.array(0);
  r.array(v->hash->size());
  for (auto& kv : *v->hash) r.bulk(kv.first);
}

void cmd_hvals(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  if (!v) return r.array(0);
  r.array(v->hash->size());
  for (auto& kv : *v->hash) r.bulk(kv.second);
}

void cmd_hstrlen(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  if (!v) return r.integer(0);
  auto it = v->hash->find(std::string(a[2]));
  r.integer(it == v->hash->end() ? 0 : static_cast<int64_t>(it->second.size()));
}

void cmd_hincrby(CmdCtx& c, Args a, Reply& r) {
  int64_t by;
  if (!parse_int64(a[3], by)) return r.not_integer();
  enum { kOk, kNotInt, kOverflow } res = kOk;
  int64_t result = 0;
  if (!hash_update(c, a[1], r, [&](storage::HashMap& h, storage::Delta& d) {
        auto [it, inserted] = h.try_emplace(std::string(a[2]), "0");
        int64_t cur = 0;
        if (!parse_int64(it->second, cur)) {
          res = kNotInt;
          if (inserted) h.erase(it);
          return false;
        }
        if (__builtin_add_overflow(cur, by, &result)) {
          res = kOverflow;
          if (inserted) h.erase(it);
          return false;
        }
        it->second = std::to_string(result);
        d.hash_set(a[2], it->second);
        return true;
      }))
    return;
  if (res == kNotInt) return r.error("ERR hash value is not an integer");
  if (res == kOverflow) return r.error("ERR increment or decrement would overflow");
  r.integer(result);
}

void cmd_hincrbyfloat(CmdCtx& c, Args a, Reply& r) {
  long double by;
  if (!parse_long_double(a[3], by)) return r.not_float();
  enum { kOk, kNotFloat, kNan } res = kOk;
  std::string out;
  if (!hash_update(c, a[1], r, [&](storage::HashMap& h, storage::Delta& d) {
        auto [it, inserted] = h.try_emplace(std::string(a[2]), "0");
        long double cur = 0;
        if (!parse_long_double(it->second, cur)) {
          res = kNotFloat;
          if (inserted) h.erase(it);
          return false;
        }
        long double sum = cur + by;
        if (std::isnan(sum) || std::isinf(sum)) {
          res = kNan;
          if (inserted) h.erase(it);
          return false;
        }
        it->second = out = format_double(sum);
        d.hash_set(a[2], out);
        return true;
      }))
    return;
  if (res == kNotFloat) return r.error("ERR hash value is not a float");
  if (res == kNan) return r.error("ERR increment would produce NaN or Infinity");
  r.bulk(out);
}

// HRANDFIELD key [count [WITHVALUES]]
void cmd_hrandfield(CmdCtx& c, Args a, Reply& r) {
  int64_t count = 1;
  bool with_count = a.size() >= 3, withvalues = false;
  if (with_count && !parse_int64(a[2], count)) return r.not_integer();
  if (a.size() == 4) {
    if (!iequals(a[3], "withvalues")) return r.syntax_error();
    withvalues = true;
  } else if (a.size() > 4) {
    return r.syntax_error();
  }
  if (with_count && (count < -(LLONG_MAX / 2) || count > LLONG_MAX / 2))
    return r.error("ERR value is out of range");
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  if (!with_count) {
    if (!v) return r.null();
    auto it = v->hash->begin();
    std::advance(it, static_cast<long>(c.random->uniform(v->hash->size())));
    return r.bulk(it->first);
  }
  if (!v || count == 0) return r.array(0);
  std::vector<const std::pair<const std::string, std::string>*> entries;
  entries.reserve(v->hash->size());
  for (auto& kv : *v->hash) entries.push_back(&kv);
  std::vector<size_t> pick;
  if (count < 0) {  // repeats allowed
    for (int64_t i = 0; i < -count; ++i) pick.push_back(c.random->uniform(entries.size()));
  } else {  // distinct: a partial Fisher-Yates shuffle
    size_t n = std::min<size_t>(static_cast<size_t>(count), entries.size());
    std::vector<size_t> idx(entries.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    for (size_t i = 0; i < n; ++i) std::swap(idx[i], idx[i + c.random->uniform(idx.size() - i)]);
    pick.assign(idx.begin(), idx.begin() + static_cast<long>(n));
  }
  if (withvalues && r.protocol() >= 3) {
    r.array(pick.size());
    for (size_t i : pick) {
      r.array(2);
      r.bulk(entries[i]->first);
      r.bulk(entries[i]->second);
    }
    return;
  }
  r.array(pick.size() * (withvalues ? 2 : 1));
  for (size_t i : pick) {
    r.bulk(entries[i]->first);
    if (withvalues) r.bulk(entries[i]->second);
  }
}

// HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]. A hash of at most
// kHscanWholeLimit fields is returned in one call with cursor 0, as Redis does for small
// (listpack) hashes. A larger hash is walked in the order of a 64-bit hash of each field: the
// cursor is the next hash value to visit, so every field present for the whole iteration is
// returned exactly once, whatever is added or removed meanwhile. A page holds at least COUNT
// fields and at least 1/64 of the hash, which bounds a full iteration to about 64 passes.
constexpr size_t kHscanWholeLimit = 128;
constexpr size_t kHscanMaxPasses = 64;

void cmd_hscan(CmdCtx& c, Args a, Reply& r) {
  uint64_t cursor = 0;
  {
    auto s = a[2];
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), cursor);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return r.error("ERR invalid cursor");
  }
  std::string_view pattern;
  bool novalues = false;
  size_t count = 10;
  for (size_t i = 3; i < a.size(); ++i) {
    if (iequals(a[i], "match") && i + 1 < a.size()) {
      pattern = a[++i];
    } else if (iequals(a[i], "count") && i + 1 < a.size()) {
      int64_t n;
      if (!parse_int64(a[++i], n)) return r.not_integer();
      if (n < 1) return r.syntax_error();
      count = static_cast<size_t>(std::min<int64_t>(n, 1 << 20));
    } else if (iequals(a[i], "novalues")) {
      novalues = true;
    } else {
      return r.syntax_error();
    }
  }
  std::optional<ValueRef> v;
  if (!hash_lookup(c, a[1], v, r)) return;
  using Entry = const std::pair<const std::string, std::string>*;
  std::vector<Entry> page;
  uint64_t next = 0;
  if (v && v->hash->size() <= kHscanWholeLimit) {
    if (cursor == 0)
      for (auto& kv : *v->hash) page.push_back(&kv);
  } else if (v) {
    std::vector<std::pair<uint64_t, Entry>> ahead;  // fields at or after the cursor
    for (auto& kv : *v->hash) {
      uint64_t h = hscan_order(kv.first);
      if (h >= cursor) ahead.emplace_back(h, &kv);
    }
    size_t want = std::max(count, (v->hash->size() + kHscanMaxPasses - 1) / kHscanMaxPasses);
    if (ahead.size() > want) {
      std::nth_element(ahead.begin(), ahead.begin() + static_cast<std::ptrdiff_t>(want - 1), ahead.end());
      uint64_t last = ahead[want - 1].first;
      // Fields sharing the last hash value go in the same page, so the cursor never splits them.
      for (auto& [h, e] : ahead)
        if (h <= last) page.push_back(e);
      next = last == UINT64_MAX ? 0 : last + 1;
      bool more = false;
      for (auto& [h, e] : ahead) more = more || h > last;
      if (!more) next = 0;
    } else {
      for (auto& [h, e] : ahead) page.push_back(e);
    }
  }
  r.array(2);
  r.bulk(std::to_string(next));
  size_t matched = 0;
  for (Entry e : page) matched += pattern.empty() || glob_match(pattern, e->first);
  r.array(matched * (novalues ? 1 : 2));
  for (Entry e : page) {
    if (!pattern.empty() && !glob_match(pattern, e->first)) continue;
    r.bulk(e->first);
    if (!novalues) r.bulk(e->second);
  }
}

}  // namespace

void register_hash_commands(std::vector<CommandSpec>& t) {
  constexpr auto W = kWrite | kDenyOom;
  t.push_back({"hset", -4, W | kFast, 1, 1, 1, Routing::kKey, cmd_hset, "hash", "Creates or modifies the value of a field in a hash."});
  t.push_back({"hmset", -4, W | kFast, 1, 1, 1, Routing::kKey, cmd_hmset, "hash", "Sets the values of multiple fields."});
  t.push_back({"hsetnx", 4, W | kFast, 1, 1, 1, Routing::kKey, cmd_hsetnx, "hash", "Sets the value of a field in a hash only when the field doesn't exist."});
  t.push_back({"hget", 3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_hget, "hash", "Returns the value of a field in a hash."});
  t.push_back({"hmget", -3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_hmget, "hash", "Returns the values of all fields in a hash."});
  t.push_back({"hdel", -3, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_hdel, "hash", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain."});
  t.push_back({"hgetall", 2, kReadonly, 1, 1, 1, Routing::kKey, cmd_hgetall, "hash", "Returns all fields and values in a hash."});
  t.push_back({"hexists", 3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_hexists, "hash", "Determines whether a field exists in a hash."});
  t.push_back({"hlen", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_hlen, "hash", "Returns the number of fields in a hash."});
  t.push_back({"hkeys", 2, kReadonly, 1, 1, 1, Routing::kKey, cmd_hkeys, "hash", "Returns all fields in a hash."});
  t.push_back({"hvals", 2, kReadonly, 1, 1, 1, Routing::kKey, cmd_hvals, "hash", "Returns all values in a hash."});
  t.push_back({"hstrlen", 3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_hstrlen, "hash", "Returns the length of the value of a field."});
  t.push_back({"hincrby", 4, W | kFast, 1, 1, 1, Routing::kKey, cmd_hincrby, "hash", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist."});
  t.push_back({"hincrbyfloat", 4, W | kFast, 1, 1, 1, Routing::kKey, cmd_hincrbyfloat, "hash", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist."});
  t.push_back({"hrandfield", -2, kReadonly | kRandom, 1, 1, 1, Routing::kKey, cmd_hrandfield, "hash", "Returns one or more random fields from a hash.", "6.2.0"});
  t.push_back({"hscan", -3, kReadonly, 1, 1, 1, Routing::kKey, cmd_hscan, "hash", "Iterates over fields and values of a hash."});
}

}  // namespace keel::resp

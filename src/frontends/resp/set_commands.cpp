// Set commands: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SMOVE SINTER
// SINTERCARD SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE SSCAN.
//
// A set is one engine value (storage::SetMembers); every change goes through the Engine, so
// the resulting set is what the effect recorder replicates — SPOP's random choice travels as
// the set without the members it chose. Replies and errors follow Redis 7.2's t_set.c.
#include <algorithm>
#include <charconv>
#include <climits>

#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

using storage::SetMembers;

// The most elements SRANDMEMBER with a negative count (repeats allowed) returns: Redis answers
// any count and relies on the output buffer limit to cut the client off; keel refuses instead.
constexpr uint64_t kMaxRandomRepeats = 10'000'000;

bool set_lookup(CmdCtx& c, std::string_view key, std::optional<ValueRef>& out, Reply& r) {
  out = lookup(c, key);
  if (out && out->type != ValueType::kSet) {
    r.wrong_type();
    return false;
  }
  return true;
}

// Runs `fn(set)` on the set at `key`; a missing key is created only if `create` (else `fn`
// is not called). A set left empty is removed. `fn` returns whether it changed the set.
template <class F>
bool set_update(CmdCtx& c, std::string_view key, Reply& r, bool create, F&& fn) {
  bool wrong = false;
  storage::Delta delta;
  auto st = c.engine->update_by_element(c.partition(key), key, c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kSet) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    if (!cur && !create) return UpdateAction::kKeep;
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kSet;
    if (!call_described(fn, t->set, delta)) return UpdateAction::kKeep;
    if (t->set.empty()) return cur ? UpdateAction::kErase : UpdateAction::kKeep;
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

// After removals: a table far larger than its members is shrunk, so that picking a random
// member (a random non-empty bucket) stays cheap.
void shrink_if_sparse(SetMembers& s) {
  if (s.bucket_count() > 64 && s.size() * 8 < s.bucket_count()) s.rehash(0);
}

// A random member of a non-empty set: a random non-empty bucket, then a random member of it
// (Redis's dictGetFairRandomKey does much the same).
SetMembers::const_iterator random_member(const SetMembers& s, Random& rng) {
  const size_t nb = s.bucket_count();
  size_t b = rng.uniform(nb);
  for (int tries = 0; tries < 32 && s.bucket_size(b) == 0; ++tries) b = rng.uniform(nb);
  while (s.bucket_size(b) == 0) b = (b + 1) % nb;
  auto it = s.begin(b);
  std::advance(it, static_cast<long>(rng.uniform(s.bucket_size(b))));
  // A local iterator and a set iterator name the same element: find it by value.
  return s.find(*it);
}

// `n` distinct random members (n < size).
std::vector<std::string> distinct_random(const SetMembers& s, size_t n, Random& rng) {
  std::vector<std::string> out;
  out.reserve(n);
  if (n * 3 > s.size()) {  // a large share: shuffle a list of all members
    std::vector<const std::string*> all;
    all.reserve(s.size());
    for (auto& m : s) all.push_back(&m);
    for (size_t i = 0; i < n; ++i) {
      std::swap(all[i], all[i + rng.uniform(all.size() - i)]);
      out.push_back(*all[i]);
    }
    return out;
  }
  std::unordered_set<const std::string*> picked;
  while (out.size() < n) {
    const std::string* m = &*random_member(s, rng);
    if (picked.insert(m).second) out.push_back(*m);
  }
  return out;
}

void cmd_sadd(CmdCtx& c, Args a, Reply& r) {
  int64_t added = 0;
  if (!set_update(c, a[1], r, true, [&](SetMembers& s, storage::Delta& d) {
        for (size_t i = 2; i < a.size(); ++i)
          if (s.emplace(a[i]).second) {
            ++added;
            d.set_add(a[i]);
          }
        return added > 0;
      }))
    return;
  r.integer(added);
}

void cmd_srem(CmdCtx& c, Args a, Reply& r) {
  int64_t removed = 0;
  if (!set_update(c, a[1], r, false, [&](SetMembers& s, storage::Delta& d) {
        for (size_t i = 2; i < a.size(); ++i)
          if (s.erase(std::string(a[i]))) {
            ++removed;
            d.set_rem(a[i]);
          }
        if (removed) shrink_if_sparse(s);
        return removed > 0;
      }))
    return;
  r.integer(removed);
}

void cmd_smembers(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!set_lookup(c, a[1], v, r)) return;
  if (!v) return r.set(0);
  r.set(v->set->size());
  for (auto& m : *v->set) r.bulk(m);
}

void cmd_sismember(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!set_lookup(c, a[1], v, r)) return;
  r.integer(v && v->set->count(std::string(a[2])) ? 1 : 0);
}

void cmd_smismember(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!set_lookup(c, a[1], v, r)) return;
  r.array(a.size() - 2);
  for (size_t i = 2; i < a.size(); ++i) r.integer(v && v->set->count(std::string(a[i])) ? 1 : 0);
}

void cmd_scard(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!set_lookup(c, a[1], v, r)) return;
  r.integer(v ? static_cast<int64_t>(v->set->size()) : 0);
}

// SPOP key [count]
void cmd_spop(CmdCtx& c, Args a, Reply& r) {
  if (a.size() > 3) return r.syntax_error();
  const bool has_count = a.size() == 3;
  int64_t count = 1;
  if (has_count && (!parse_int64(a[2], count) || count < 0))
    return r.error("ERR value is out of range, must be positive");
  std::optional<ValueRef> v;
  if (!set_lookup(c, a[1], v, r)) return;
  if (!v) return has_count ? r.set(0) : r.null();
  if (count == 0) return r.set(0);
  std::vector<std::string> popped;
  if (!set_update(c, a[1], r, false, [&](SetMembers& s, storage::Delta& d) {
        if (static_cast<uint64_t>(count) >= s.size()) {
          popped.reserve(s.size());
          for (auto& m : s) popped.push_back(m);
          s.clear();
          return true;
        }
        popped = distinct_random(s, static_cast<size_t>(count), *c.random);
        for (auto& m : popped) {
          s.erase(m);
          d.set_rem(m);
        }
        shrink_if_sparse(s);
        return true;
      }))
    return;
  if (!has_count) return r.bulk(popped.front());
  r.set(popped.size());
  for (auto& m : popped) r.bulk(m);
}

// SRANDMEMBER key [count]
void cmd_srandmember(CmdCtx& c, Args a, Reply& r) {
  if (a.size() > 3) return r.syntax_error();
  const bool has_count = a.size() == 3;
  int64_t count = 1;
  if (has_count) {
    if (!parse_int64(a[2], count)) return r.not_integer();
    if (count == LLONG_MIN)
      return r.error(
          "ERR value is out of range, value must between -9223372036854775807 and "
          "9223372036854775807");
  }
  std::optional<ValueRef> v;
  if (!set_lookup(c, a[1], v, r)) return;
  if (!has_count) {
    if (!v) return r.null();
    return r.bulk(*random_member(*v->set, *c.random));
  }
  if (!v || count == 0) return r.array(0);
  const SetMembers& s = *v->set;
  if (count < 0) {
    const uint64_t n = 0 - static_cast<uint64_t>(count);
    if (n > kMaxRandomRepeats)
      return r.error("ERR count is out of range: at most 10000000 members with repeats");
    r.array(n);
    for (uint64_t i = 0; i < n; ++i) r.bulk(*random_member(s, *c.random));
    return;
  }
  if (static_cast<uint64_t>(count) >= s.size()) {
    r.array(s.size());
    for (auto& m : s) r.bulk(m);
    return;
  }
  auto picked = distinct_random(s, static_cast<size_t>(count), *c.random);
  r.array(picked.size());
  for (auto& m : picked) r.bulk(m);
}

// SMOVE source destination member
void cmd_smove(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> src = lookup(c, a[1]);
  if (!src) return r.integer(0);
  if (src->type != ValueType::kSet) return r.wrong_type();
  const bool member = src->set->count(std::string(a[3])) > 0;
  std::optional<ValueRef> dst = lookup(c, a[2]);
  if (dst && dst->type != ValueType::kSet) return r.wrong_type();
  if (a[1] == a[2]) return r.integer(member ? 1 : 0);
  if (!member) return r.integer(0);
  if (!set_update(c, a[1], r, false, [&](SetMembers& s, storage::Delta& d) {
        d.set_rem(a[3]);
        return s.erase(std::string(a[3])) > 0;
      }))
    return;
  if (!set_update(c, a[2], r, true, [&](SetMembers& s, storage::Delta& d) {
        d.set_add(a[3]);
        return s.emplace(a[3]).second;
      }))
    return;
  r.integer(1);
}

// Reads the sets at `keys` (copies: a persistent engine's view lasts only until its next read).
// A missing key is an empty set (`present` false). Replies WRONGTYPE and returns false if any
// key holds something else.
bool read_sets(CmdCtx& c, Args keys, std::vector<SetMembers>& sets, std::vector<bool>& present,
               Reply& r) {
  sets.assign(keys.size(), {});
  present.assign(keys.size(), false);
  for (size_t i = 0; i < keys.size(); ++i) {
    std::optional<ValueRef> v;
    if (!set_lookup(c, keys[i], v, r)) return false;
    if (!v) continue;
    present[i] = true;
    sets[i] = *v->set;
  }
  return true;
}

enum class SetOp { kInter, kUnion, kDiff };

// The result of `op` over `sets` (stopping at `limit` members for an intersection, 0 = all).
SetMembers combine(SetOp op, std::vector<SetMembers>& sets, const std::vector<bool>& present,
                   uint64_t limit = 0) {
  SetMembers out;
  if (sets.empty()) return out;
  switch (op) {
    case SetOp::kInter: {
      for (bool p : present)
        if (!p) return out;
      // Walk the smallest set, test against the others.
      size_t smallest = 0;
      for (size_t i = 1; i < sets.size(); ++i)
        if (sets[i].size() < sets[smallest].size()) smallest = i;
      for (auto& m : sets[smallest]) {
        bool all = true;
        for (size_t i = 0; i < sets.size() && all; ++i)
          if (i != smallest && !sets[i].count(m)) all = false;
        if (!all) continue;
        out.insert(m);
        if (limit && out.size() >= limit) break;
      }
      return out;
    }
    case SetOp::kUnion:
      out = std::move(sets[0]);
      for (size_t i = 1; i < sets.size(); ++i)
        for (auto& m : sets[i]) out.insert(m);
      return out;
    case SetOp::kDiff:
      out = std::move(sets[0]);
      for (size_t i = 1; i < sets.size() && !out.empty(); ++i)
        for (auto& m : sets[i]) out.erase(m);
      return out;
  }
  return out;
}

void reply_members(const SetMembers& s, Reply& r) {
  r.set(s.size());
  for (auto& m : s) r.bulk(m);
}

void set_op(CmdCtx& c, Args a, Reply& r, SetOp op) {
  std::vector<SetMembers> sets;
  std::vector<bool> present;
  if (!read_sets(c, a.subspan(1), sets, present, r)) return;
  reply_members(combine(op, sets, present), r);
}
void cmd_sinter(CmdCtx& c, Args a, Reply& r) { set_op(c, a, r, SetOp::kInter); }
void cmd_sunion(CmdCtx& c, Args a, Reply& r) { set_op(c, a, r, SetOp::kUnion); }
void cmd_sdiff(CmdCtx& c, Args a, Reply& r) { set_op(c, a, r, SetOp::kDiff); }

// S*STORE destination key [key ...]: the destination is replaced (whatever it held, its TTL
// gone), or removed when the result is empty.
void set_store(CmdCtx& c, Args a, Reply& r, SetOp op) {
  std::vector<SetMembers> sets;
  std::vector<bool> present;
  if (!read_sets(c, a.subspan(2), sets, present, r)) return;
  SetMembers result = combine(op, sets, present);
  const int64_t n = static_cast<int64_t>(result.size());
  std::string_view dst = a[1];
  if (result.empty()) {
    if (auto e = c.engine->erase(c.partition(dst), dst, c.now_ms); !e)
      return reply_status_error(r, e.error());
    return r.integer(0);
  }
  Value v;
  v.type = ValueType::kSet;
  v.set = std::move(result);
  if (auto st = c.engine->put(c.partition(dst), dst, std::move(v), c.now_ms); !st)
    return reply_status_error(r, st.error());
  r.integer(n);
}
void cmd_sinterstore(CmdCtx& c, Args a, Reply& r) { set_store(c, a, r, SetOp::kInter); }
void cmd_sunionstore(CmdCtx& c, Args a, Reply& r) { set_store(c, a, r, SetOp::kUnion); }
void cmd_sdiffstore(CmdCtx& c, Args a, Reply& r) { set_store(c, a, r, SetOp::kDiff); }

// SINTERCARD numkeys key [key ...] [LIMIT limit]
void cmd_sintercard(CmdCtx& c, Args a, Reply& r) {
  int64_t numkeys;
  if (!parse_int64(a[1], numkeys) || numkeys < 1)
    return r.error("ERR numkeys should be greater than 0");
  if (numkeys > static_cast<int64_t>(a.size()) - 2)
    return r.error("ERR Number of keys can't be greater than number of args");
  int64_t limit = 0;
  for (size_t j = 2 + static_cast<size_t>(numkeys); j < a.size(); ++j) {
    if (iequals(a[j], "limit") && j + 1 < a.size()) {
      if (!parse_int64(a[++j], limit) || limit < 0) return r.error("ERR LIMIT can't be negative");
    } else {
      return r.syntax_error();
    }
  }
  std::vector<SetMembers> sets;
  std::vector<bool> present;
  if (!read_sets(c, a.subspan(2, static_cast<size_t>(numkeys)), sets, present, r)) return;
  r.integer(static_cast<int64_t>(
      combine(SetOp::kInter, sets, present, static_cast<uint64_t>(limit)).size()));
}

// SSCAN key cursor [MATCH pattern] [COUNT count]: as HSCAN (hash_commands.cpp) walks a hash —
// a set of at most kWholeLimit members in one call, a larger one in the order of a 64-bit hash
// of each member, so a member present for the whole iteration is returned exactly once.
constexpr size_t kWholeLimit = 128;
constexpr size_t kMaxPasses = 64;

void cmd_sscan(CmdCtx& c, Args a, Reply& r) {
  uint64_t cursor = 0;
  {
    auto s = a[2];
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), cursor);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size())
      return r.error("ERR invalid cursor");
  }
  std::optional<ValueRef> v;
  if (!set_lookup(c, a[1], v, r)) return;
  if (!v) {
    r.array(2);
    r.bulk("0");
    return r.array(0);
  }
  std::string_view pattern;
  size_t count = 10;
  for (size_t i = 3; i < a.size(); ++i) {
    const bool more = i + 1 < a.size();
    if (iequals(a[i], "count") && more) {
      int64_t n;
      if (!parse_int64(a[++i], n)) return r.not_integer();
      if (n < 1) return r.syntax_error();
      count = static_cast<size_t>(std::min<int64_t>(n, 1 << 20));
    } else if (iequals(a[i], "match") && more) {
      pattern = a[++i];
    } else {
      return r.syntax_error();
    }
  }
  const SetMembers& s = *v->set;
  std::vector<const std::string*> page;
  uint64_t next = 0;
  if (s.size() <= kWholeLimit) {
    if (cursor == 0)
      for (auto& m : s) page.push_back(&m);
  } else {
    std::vector<std::pair<uint64_t, const std::string*>> ahead;
    for (auto& m : s) {
      uint64_t h = scan_order(m);
      if (h >= cursor) ahead.emplace_back(h, &m);
    }
    size_t want = std::max(count, (s.size() + kMaxPasses - 1) / kMaxPasses);
    if (ahead.size() > want) {
      std::nth_element(ahead.begin(), ahead.begin() + static_cast<std::ptrdiff_t>(want - 1),
                       ahead.end());
      uint64_t last = ahead[want - 1].first;
      bool more = false;
      for (auto& [h, m] : ahead) {
        if (h <= last) page.push_back(m);
        else more = true;
      }
      next = (!more || last == UINT64_MAX) ? 0 : last + 1;
    } else {
      for (auto& [h, m] : ahead) page.push_back(m);
    }
  }
  r.array(2);
  r.bulk(std::to_string(next));
  size_t matched = 0;
  for (auto* m : page) matched += pattern.empty() || glob_match(pattern, *m);
  r.array(matched);
  for (auto* m : page)
    if (pattern.empty() || glob_match(pattern, *m)) r.bulk(*m);
}

}  // namespace

void register_set_commands(std::vector<CommandSpec>& t) {
  constexpr auto W = kWrite | kDenyOom;
  t.push_back({"sadd", -3, W | kFast, 1, 1, 1, Routing::kKey, cmd_sadd, "set", "Adds one or more members to a set. Creates the key if it doesn't exist."});
  t.push_back({"srem", -3, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_srem, "set", "Removes one or more members from a set. Deletes the set if the last member was removed."});
  t.push_back({"smembers", 2, kReadonly, 1, 1, 1, Routing::kKey, cmd_smembers, "set", "Returns all members of a set."});
  t.push_back({"sismember", 3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_sismember, "set", "Determines whether a member belongs to a set."});
  t.push_back({"smismember", -3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_smismember, "set", "Determines whether multiple members belong to a set.", "6.2.0"});
  t.push_back({"scard", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_scard, "set", "Returns the number of members in a set."});
  t.push_back({"spop", -2, kWrite | kFast | kRandom, 1, 1, 1, Routing::kKey, cmd_spop, "set", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped."});
  t.push_back({"srandmember", -2, kReadonly | kRandom, 1, 1, 1, Routing::kKey, cmd_srandmember, "set", "Get one or multiple random members from a set"});
  t.push_back({"smove", 4, kWrite | kFast, 1, 2, 1, Routing::kKey, cmd_smove, "set", "Moves a member from one set to another."});
  t.push_back({"sinter", -2, kReadonly, 1, -1, 1, Routing::kKey, cmd_sinter, "set", "Returns the intersect of multiple sets."});
  t.push_back({"sintercard", -3, kReadonly, 2, 2, 1, Routing::kKey, cmd_sintercard, "set", "Returns the number of members of the intersect of multiple sets.", "7.0.0", 0, 1});
  t.push_back({"sunion", -2, kReadonly, 1, -1, 1, Routing::kKey, cmd_sunion, "set", "Returns the union of multiple sets."});
  t.push_back({"sdiff", -2, kReadonly, 1, -1, 1, Routing::kKey, cmd_sdiff, "set", "Returns the difference of multiple sets."});
  t.push_back({"sinterstore", -3, W, 1, -1, 1, Routing::kKey, cmd_sinterstore, "set", "Stores the intersect of multiple sets in a key."});
  t.push_back({"sunionstore", -3, W, 1, -1, 1, Routing::kKey, cmd_sunionstore, "set", "Stores the union of multiple sets in a key."});
  t.push_back({"sdiffstore", -3, W, 1, -1, 1, Routing::kKey, cmd_sdiffstore, "set", "Stores the difference of multiple sets in a key."});
  t.push_back({"sscan", -3, kReadonly | kRandom, 1, 1, 1, Routing::kKey, cmd_sscan, "set", "Iterates over members of a set.", "2.8.0"});
}

}  // namespace keel::resp

// Sorted-set commands: ZADD (NX XX GT LT CH INCR) ZINCRBY ZREM ZCARD ZCOUNT ZLEXCOUNT ZSCORE
// ZMSCORE ZRANK ZREVRANK (WITHSCORE) ZRANGE (BYSCORE BYLEX REV LIMIT WITHSCORES) ZREVRANGE
// ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX ZREMRANGEBYRANK ZREMRANGEBYSCORE
// ZREMRANGEBYLEX ZPOPMIN ZPOPMAX ZRANDMEMBER.
//
// A sorted set is one engine value (storage::ZSetValue: a hash map plus an order-statistic
// tree, so ranks and range bounds are O(log n)); every change goes through Engine::update, so
// the resulting set is what the effect recorder replicates. Replies and errors follow Redis
// 7.2's t_zset.c; scores are printed as Redis 7.2 prints them (shortest round-trip digits).
#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

using storage::ZSetValue;

constexpr uint64_t kMaxRandomRepeats = 10'000'000;  // as SRANDMEMBER (set_commands.cpp)

// ---- scores ------------------------------------------------------------------------------

// Redis's string2d: the whole string is a number strtod accepts, no leading space, not NaN,
// no overflow.
bool parse_score(std::string_view s, double& out) {
  if (s.empty() || s.size() > 5000 || std::isspace(static_cast<unsigned char>(s[0]))) return false;
  std::string tmp(s);
  char* end = nullptr;
  errno = 0;
  double d = std::strtod(tmp.c_str(), &end);
  if (end != tmp.c_str() + tmp.size() || std::isnan(d)) return false;
  if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL || d == 0)) return false;
  out = d;
  return true;
}

// A score as Redis 7.2 writes it: an integer when it is one (within 2^53), else the shortest
// digits that read back to the same double — plain up to 21 integer digits or 6 leading zeros
// after the point, scientific (d.ddde+XX) otherwise.
std::string score_string(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  if (v == 0) return std::signbit(v) ? "-0" : "0";
  if (std::trunc(v) == v && std::fabs(v) < 9007199254740992.0)  // 2^53: exact as an integer
    return std::to_string(static_cast<long long>(v));
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci = [-]d[.ddd]e(+|-)XX
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t e = sci.find('e');
  std::string digits = sci.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  int exp10 = std::atoi(sci.c_str() + e + 1);  // value = 0.d1d2... * 10^(exp10+1)
  const int nd = static_cast<int>(digits.size());
  const int k = exp10 - nd + 1;  // value = digits * 10^k
  const int aexp = std::abs(k + nd - 1);
  std::string out = neg ? "-" : "";
  if (k >= 0 && aexp < nd + 7) {
    out += digits + std::string(static_cast<size_t>(k), '0');
  } else if (k < 0 && (k > -7 || aexp < 4)) {
    int offset = nd + k;  // digits before the point
    if (offset <= 0) out += "0." + std::string(static_cast<size_t>(-offset), '0') + digits;
    else out += digits.substr(0, static_cast<size_t>(offset)) + "." + digits.substr(static_cast<size_t>(offset));
  } else {
    out += digits.substr(0, 1);
    if (nd > 1) out += "." + digits.substr(1);
    out += (k + nd - 1 < 0) ? "e-" : "e+";
    out += std::to_string(aexp);
  }
  return out;
}

void reply_score(Reply& r, double v) {
  std::string s = score_string(v);
  if (r.protocol() >= 3) {
    std::string line = "," + s + "\r\n";
    r.buffer().append(line);
  } else {
    r.bulk(s);
  }
}

// ---- ranges ------------------------------------------------------------------------------

struct ScoreRange {
  double min = 0, max = 0;
  bool minex = false, maxex = false;
};

// Redis's zslParseRange: "(x" is exclusive; strtod's syntax ("-inf", "+inf", " 1"...); NaN is
// refused.
bool parse_bound(std::string_view s, double& v, bool& ex) {
  ex = !s.empty() && s[0] == '(';
  std::string tmp(ex ? s.substr(1) : s);
  char* end = nullptr;
  v = std::strtod(tmp.c_str(), &end);
  return *end == '\0' && !std::isnan(v) && tmp.size() == static_cast<size_t>(end - tmp.c_str());
}
bool parse_score_range(std::string_view min, std::string_view max, ScoreRange& r) {
  return parse_bound(min, r.min, r.minex) && parse_bound(max, r.max, r.maxex);
}

// [lo, hi): the ascending ranks of the elements inside `r`.
std::pair<size_t, size_t> score_ranks(const ZSetValue& z, const ScoreRange& r) {
  size_t lo = z.count_below(r.min, r.minex);
  size_t hi = z.count_below(r.max, !r.maxex);
  return {lo, std::max(lo, hi)};
}

// A lex bound: "-" (before all), "+" (after all), "[x" inclusive, "(x" exclusive.
struct LexBound {
  enum Kind { kMinusInf, kPlusInf, kValue } kind = kMinusInf;
  std::string value;
  bool ex = false;
};
bool parse_lex(std::string_view s, LexBound& b) {
  if (s == "-") b.kind = LexBound::kMinusInf;
  else if (s == "+") b.kind = LexBound::kPlusInf;
  else if (!s.empty() && (s[0] == '[' || s[0] == '(')) {
    b.kind = LexBound::kValue;
    b.ex = s[0] == '(';
    b.value.assign(s.substr(1));
  } else {
    return false;
  }
  return true;
}

// The first ascending rank whose member is not below `b` (as a minimum: "[x" -> member >= x,
// "(x" -> member > x), found by binary search over ranks, comparing members only (BYLEX
// assumes every element has the same score, as Redis does).
size_t lex_first(const ZSetValue& z, const LexBound& b, bool as_max) {
  if (b.kind == LexBound::kMinusInf) return 0;
  if (b.kind == LexBound::kPlusInf) return z.size();
  // as a minimum: first member >= x (inclusive) or > x (exclusive).
  // as a maximum: one past the last member <= x (inclusive) or < x (exclusive).
  const bool strictly_greater = as_max ? !b.ex : b.ex;
  size_t lo = 0, hi = z.size();
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const std::string& m = *z.at(mid)->member;
    bool before = strictly_greater ? m <= b.value : m < b.value;
    if (before) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
bool lex_gte_min(const std::string& m, const LexBound& b) {
  if (b.kind != LexBound::kValue) return b.kind == LexBound::kMinusInf;
  return b.ex ? m > b.value : m >= b.value;
}
bool lex_lte_max(const std::string& m, const LexBound& b) {
  if (b.kind != LexBound::kValue) return b.kind == LexBound::kPlusInf;
  return b.ex ? m < b.value : m <= b.value;
}
std::pair<size_t, size_t> lex_ranks(const ZSetValue& z, const LexBound& min, const LexBound& max) {
  // As Redis: nothing when the range misses the first or the last element.
  if (z.empty() || !lex_lte_max(*z.at(0)->member, max) || !lex_gte_min(*z.at(z.size() - 1)->member, min))
    return {0, 0};
  size_t lo = lex_first(z, min, false);
  size_t hi = lex_first(z, max, true);
  return {lo, std::max(lo, hi)};
}

// ---- lookups and updates -----------------------------------------------------------------

bool zset_lookup(CmdCtx& c, std::string_view key, std::optional<ValueRef>& out, Reply& r) {
  out = lookup(c, key);
  if (out && out->type != ValueType::kZSet) {
    r.wrong_type();
    return false;
  }
  return true;
}

// Runs `fn(zset)` on the sorted set at `key` (created empty only if `create`). A set left
// empty is removed. `fn` returns whether it changed the set.
template <class F>
bool zset_update(CmdCtx& c, std::string_view key, Reply& r, bool create, F&& fn) {
  bool wrong = false;
  storage::Delta delta;
  auto st = c.engine->update_by_element(c.partition(key), key, c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kZSet) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    if (!cur && !create) return UpdateAction::kKeep;
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kZSet;
    if (!call_described(fn, t->zset, delta)) return UpdateAction::kKeep;
    if (t->zset.empty()) return cur ? UpdateAction::kErase : UpdateAction::kKeep;
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

// Emits elements [first, first + n) in ascending rank order, or descending from `first` when
// `reverse` (first is then the highest rank), as a range reply.
void reply_range(Reply& r, const ZSetValue& z, size_t first, size_t n, bool reverse,
                 bool withscores) {
  const bool pairs = withscores && r.protocol() >= 3;
  r.array(withscores && !pairs ? n * 2 : n);
  if (n == 0) return;
  auto it = z.at(first);
  for (size_t i = 0; i < n; ++i) {
    if (pairs) r.array(2);
    r.bulk(*it->member);
    if (withscores) reply_score(r, it->score);
    if (i + 1 < n) {
      if (reverse) --it;
      else ++it;
    }
  }
}

// Applies Redis's offset/limit to ascending ranks [lo, hi) and replies.
void reply_limited(Reply& r, const ZSetValue& z, size_t lo, size_t hi, bool reverse,
                   int64_t offset, int64_t limit, bool withscores) {
  const size_t len = hi - lo;
  if (offset < 0 || static_cast<uint64_t>(offset) >= len || limit == 0) {
    r.array(0);
    return;
  }
  size_t n = len - static_cast<size_t>(offset);
  if (limit > 0) n = std::min<size_t>(n, static_cast<size_t>(limit));
  if (reverse) reply_range(r, z, hi - 1 - static_cast<size_t>(offset), n, true, withscores);
  else reply_range(r, z, lo + static_cast<size_t>(offset), n, false, withscores);
}

// ---- commands ----------------------------------------------------------------------------

// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
void zadd_common(CmdCtx& c, Args a, Reply& r, bool incr_cmd) {
  bool nx = false, xx = false, gt = false, lt = false, ch = false, incr = incr_cmd;
  size_t idx = 2;
  if (!incr_cmd) {
    for (; idx < a.size(); ++idx) {
      if (iequals(a[idx], "nx")) nx = true;
      else if (iequals(a[idx], "xx")) xx = true;
      else if (iequals(a[idx], "ch")) ch = true;
      else if (iequals(a[idx], "incr")) incr = true;
      else if (iequals(a[idx], "gt")) gt = true;
      else if (iequals(a[idx], "lt")) lt = true;
      else break;
    }
  }
  const size_t rest = a.size() - idx;
  if (rest % 2 != 0 || rest == 0) return r.syntax_error();
  if (nx && xx) return r.error("ERR XX and NX options at the same time are not compatible");
  if ((gt && nx) || (lt && nx) || (gt && lt))
    return r.error("ERR GT, LT, and/or NX options at the same time are not compatible");
  if (incr && rest > 2) return r.error("ERR INCR option supports a single increment-element pair");
  std::vector<double> scores(rest / 2);
  for (size_t j = 0; j < scores.size(); ++j)
    if (!parse_score(a[idx + 2 * j], scores[j])) return r.not_float();
  int64_t added = 0, updated = 0, processed = 0;
  double last = 0;
  bool nan = false;
  if (!zset_update(c, a[1], r, !xx, [&](ZSetValue& z, storage::Delta& d) {
        for (size_t j = 0; j < scores.size(); ++j) {
          std::string_view member = a[idx + 2 * j + 1];
          double score = scores[j];
          const double* cur = z.score(member);
          if (cur) {
            if (nx) continue;
            if (incr) {
              score += *cur;
              if (std::isnan(score)) {
                nan = true;
                break;
              }
            }
            if ((lt && score >= *cur) || (gt && score <= *cur)) continue;
            ++processed;
            last = score;
            if (score != *cur) {
              z.set(member, score);
              d.zset_set(member, score);
              ++updated;
            }
          } else {
            if (xx) continue;
            z.set(member, score);
            d.zset_set(member, score);
            ++added;
            ++processed;
            last = score;
          }
        }
        return added + updated > 0;
      }))
    return;
  if (nan) return r.error("ERR resulting score is not a number (NaN)");
  if (incr) return processed ? reply_score(r, last) : r.null();
  r.integer(ch ? added + updated : added);
}
void cmd_zadd(CmdCtx& c, Args a, Reply& r) { zadd_common(c, a, r, false); }

// ZINCRBY key increment member: ZADD key INCR increment member.
void cmd_zincrby(CmdCtx& c, Args a, Reply& r) { zadd_common(c, a, r, true); }

void cmd_zrem(CmdCtx& c, Args a, Reply& r) {
  int64_t removed = 0;
  if (!zset_update(c, a[1], r, false, [&](ZSetValue& z, storage::Delta& d) {
        for (size_t i = 2; i < a.size(); ++i)
          if (z.erase(a[i])) {
            ++removed;
            d.zset_rem(a[i]);
          }
        return removed > 0;
      }))
    return;
  r.integer(removed);
}

void cmd_zcard(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
  r.integer(v ? static_cast<int64_t>(v->zset->size()) : 0);
}

void cmd_zscore(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
  const double* s = v ? v->zset->score(a[2]) : nullptr;
  if (!s) return r.null();
  reply_score(r, *s);
}

void cmd_zmscore(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
  r.array(a.size() - 2);
  for (size_t i = 2; i < a.size(); ++i) {
    const double* s = v ? v->zset->score(a[i]) : nullptr;
    s ? reply_score(r, *s) : r.null();
  }
}

void cmd_zcount(CmdCtx& c, Args a, Reply& r) {
  ScoreRange range;
  if (!parse_score_range(a[2], a[3], range)) return r.error("ERR min or max is not a float");
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
  if (!v) return r.integer(0);
  auto [lo, hi] = score_ranks(*v->zset, range);
  r.integer(static_cast<int64_t>(hi - lo));
}

void cmd_zlexcount(CmdCtx& c, Args a, Reply& r) {
  LexBound min, max;
  if (!parse_lex(a[2], min) || !parse_lex(a[3], max))
    return r.error("ERR min or max not valid string range item");
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
  if (!v) return r.integer(0);
  auto [lo, hi] = lex_ranks(*v->zset, min, max);
  r.integer(static_cast<int64_t>(hi - lo));
}

void rank_common(CmdCtx& c, Args a, Reply& r, bool reverse) {
  if (a.size() > 4) return r.error(wrong_args(a[0]));
  bool withscore = false;
  if (a.size() == 4) {
    if (!iequals(a[3], "withscore")) return r.syntax_error();
    withscore = true;
  }
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
  long long rank = v ? v->zset->rank(a[2]) : -1;
  if (rank < 0) return withscore ? r.null_array() : r.null();
  if (reverse) rank = static_cast<long long>(v->zset->size()) - 1 - rank;
  if (withscore) r.array(2);
  r.integer(rank);
  if (withscore) reply_score(r, *v->zset->score(a[2]));
}
void cmd_zrank(CmdCtx& c, Args a, Reply& r) { rank_common(c, a, r, false); }
void cmd_zrevrank(CmdCtx& c, Args a, Reply& r) { rank_common(c, a, r, true); }

enum class RangeKind { kAuto, kRank, kScore, kLex };

// Collects elements [first, first + n) in ascending rank order, or descending from `first`.
void collect_range(const ZSetValue& z, size_t first, size_t n, bool reverse,
                   std::vector<std::pair<std::string, double>>& out) {
  if (n == 0) return;
  auto it = z.at(first);
  for (size_t i = 0; i < n; ++i) {
    out.emplace_back(*it->member, it->score);
    if (i + 1 < n) {
      if (reverse) --it;
      else ++it;
    }
  }
}

// Stores `elements` as the sorted set `dst` (replacing whatever it held; removed when empty)
// and replies with their count.
void store_zset(CmdCtx& c, std::string_view dst, ZSetValue z, Reply& r) {
  const int64_t n = static_cast<int64_t>(z.size());
  if (z.empty()) {
    if (auto e = c.engine->erase(c.partition(dst), dst, c.now_ms); !e)
      return reply_status_error(r, e.error());
    return r.integer(0);
  }
  Value v;
  v.type = ValueType::kZSet;
  v.zset = std::move(z);
  if (auto st = c.engine->put(c.partition(dst), dst, std::move(v), c.now_ms); !st)
    return reply_status_error(r, st.error());
  r.integer(n);
}

// The ZRANGE family. `kind`/`reverse` fixed by the legacy commands; ZRANGE reads them from
// its options (BYSCORE, BYLEX, REV). ZRANGESTORE (`store`): the source key is argument 2 and
// the result goes to argument 1.
void range_common(CmdCtx& c, Args a, Reply& r, RangeKind kind, bool rev_fixed, bool reverse,
                  bool store = false) {
  const size_t base = store ? 2 : 1;
  bool withscores = false;
  int64_t offset = 0, limit = -1;
  bool has_limit = false;
  for (size_t j = base + 3; j < a.size(); ++j) {
    const size_t left = a.size() - j - 1;
    if (!store && iequals(a[j], "withscores")) {
      withscores = true;
    } else if (iequals(a[j], "limit") && left >= 2) {
      if (!parse_int64(a[j + 1], offset) || !parse_int64(a[j + 2], limit)) return r.not_integer();
      has_limit = true;
      j += 2;
    } else if (!rev_fixed && !reverse && iequals(a[j], "rev")) {
      reverse = true;
    } else if (kind == RangeKind::kAuto && iequals(a[j], "bylex")) {
      kind = RangeKind::kLex;
    } else if (kind == RangeKind::kAuto && iequals(a[j], "byscore")) {
      kind = RangeKind::kScore;
    } else {
      return r.syntax_error();
    }
  }
  if (kind == RangeKind::kAuto) kind = RangeKind::kRank;
  if (has_limit && kind == RangeKind::kRank)
    return r.error("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
  if (withscores && kind == RangeKind::kLex)
    return r.error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
  std::string_view min = a[base + 1], max = a[base + 2];
  if (reverse && kind != RangeKind::kRank) std::swap(min, max);
  int64_t start = 0, end = 0;
  ScoreRange sr;
  LexBound lmin, lmax;
  switch (kind) {
    case RangeKind::kAuto:
    case RangeKind::kRank:
      if (!parse_int64(min, start) || !parse_int64(max, end)) return r.not_integer();
      break;
    case RangeKind::kScore:
      if (!parse_score_range(min, max, sr)) return r.error("ERR min or max is not a float");
      break;
    case RangeKind::kLex:
      if (!parse_lex(min, lmin) || !parse_lex(max, lmax))
        return r.error("ERR min or max not valid string range item");
      break;
  }
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[base], v, r)) return;
  if (!v) return store ? store_zset(c, a[1], {}, r) : r.array(0);
  if (store) {
    // Copy the range out first: the destination may be the source.
    std::vector<std::pair<std::string, double>> picked;
    const ZSetValue& z = *v->zset;
    const int64_t len = static_cast<int64_t>(z.size());
    if (kind == RangeKind::kRank) {
      if (start < 0) start += len;
      if (end < 0) end += len;
      if (start < 0) start = 0;
      if (!(start > end || start >= len)) {
        if (end >= len) end = len - 1;
        const size_t n = static_cast<size_t>(end - start + 1);
        if (reverse) collect_range(z, static_cast<size_t>(len - 1 - start), n, true, picked);
        else collect_range(z, static_cast<size_t>(start), n, false, picked);
      }
    } else {
      auto [lo, hi] = kind == RangeKind::kScore ? score_ranks(z, sr) : lex_ranks(z, lmin, lmax);
      const size_t span = hi - lo;
      if (offset >= 0 && static_cast<uint64_t>(offset) < span && limit != 0) {
        size_t n = span - static_cast<size_t>(offset);
        if (limit > 0) n = std::min<size_t>(n, static_cast<size_t>(limit));
        if (reverse) collect_range(z, hi - 1 - static_cast<size_t>(offset), n, true, picked);
        else collect_range(z, lo + static_cast<size_t>(offset), n, false, picked);
      }
    }
    ZSetValue out;
    for (auto& [m, sc] : picked) out.set(m, sc);
    return store_zset(c, a[1], std::move(out), r);
  }
  const ZSetValue& z = *v->zset;
  const int64_t len = static_cast<int64_t>(z.size());
  if (kind == RangeKind::kRank) {
    if (start < 0) start += len;
    if (end < 0) end += len;
    if (start < 0) start = 0;
    if (start > end || start >= len) return r.array(0);
    if (end >= len) end = len - 1;
    const size_t n = static_cast<size_t>(end - start + 1);
    if (reverse) return reply_range(r, z, static_cast<size_t>(len - 1 - start), n, true, withscores);
    return reply_range(r, z, static_cast<size_t>(start), n, false, withscores);
  }
  auto [lo, hi] = kind == RangeKind::kScore ? score_ranks(z, sr) : lex_ranks(z, lmin, lmax);
  reply_limited(r, z, lo, hi, reverse, offset, limit, withscores);
}
void cmd_zrangestore(CmdCtx& c, Args a, Reply& r) {
  range_common(c, a, r, RangeKind::kAuto, false, false, true);
}
void cmd_zrange(CmdCtx& c, Args a, Reply& r) { range_common(c, a, r, RangeKind::kAuto, false, false); }
void cmd_zrevrange(CmdCtx& c, Args a, Reply& r) {
  // ZREVRANGE key start stop [WITHSCORES]: no other option.
  if (a.size() > 5 || (a.size() == 5 && !iequals(a[4], "withscores"))) return r.syntax_error();
  range_common(c, a, r, RangeKind::kRank, true, true);
}
void cmd_zrangebyscore(CmdCtx& c, Args a, Reply& r) { range_common(c, a, r, RangeKind::kScore, true, false); }
void cmd_zrevrangebyscore(CmdCtx& c, Args a, Reply& r) { range_common(c, a, r, RangeKind::kScore, true, true); }
void cmd_zrangebylex(CmdCtx& c, Args a, Reply& r) { range_common(c, a, r, RangeKind::kLex, true, false); }
void cmd_zrevrangebylex(CmdCtx& c, Args a, Reply& r) { range_common(c, a, r, RangeKind::kLex, true, true); }

// ZREMRANGEBYRANK / BYSCORE / BYLEX key min max
void remrange_common(CmdCtx& c, Args a, Reply& r, RangeKind kind) {
  int64_t start = 0, end = 0;
  ScoreRange sr;
  LexBound lmin, lmax;
  if (kind == RangeKind::kRank) {
    if (!parse_int64(a[2], start) || !parse_int64(a[3], end)) return r.not_integer();
  } else if (kind == RangeKind::kScore) {
    if (!parse_score_range(a[2], a[3], sr)) return r.error("ERR min or max is not a float");
  } else if (!parse_lex(a[2], lmin) || !parse_lex(a[3], lmax)) {
    return r.error("ERR min or max not valid string range item");
  }
  int64_t removed = 0;
  if (!zset_update(c, a[1], r, false, [&](ZSetValue& z, storage::Delta& d) {
        size_t lo = 0, hi = 0;
        const int64_t len = static_cast<int64_t>(z.size());
        if (kind == RangeKind::kRank) {
          if (start < 0) start += len;
          if (end < 0) end += len;
          if (start < 0) start = 0;
          if (start > end || start >= len) return false;
          if (end >= len) end = len - 1;
          lo = static_cast<size_t>(start);
          hi = static_cast<size_t>(end) + 1;
        } else {
          std::tie(lo, hi) = kind == RangeKind::kScore ? score_ranks(z, sr) : lex_ranks(z, lmin, lmax);
        }
        if (lo >= hi) return false;
        std::vector<std::string> gone;
        gone.reserve(hi - lo);
        auto it = z.at(lo);
        for (size_t i = lo; i < hi; ++i, ++it) gone.push_back(*it->member);
        for (auto& m : gone) {
          z.erase(m);
          d.zset_rem(m);
        }
        removed = static_cast<int64_t>(gone.size());
        return true;
      }))
    return;
  r.integer(removed);
}
void cmd_zremrangebyrank(CmdCtx& c, Args a, Reply& r) { remrange_common(c, a, r, RangeKind::kRank); }
void cmd_zremrangebyscore(CmdCtx& c, Args a, Reply& r) { remrange_common(c, a, r, RangeKind::kScore); }
void cmd_zremrangebylex(CmdCtx& c, Args a, Reply& r) { remrange_common(c, a, r, RangeKind::kLex); }

// ZPOPMIN / ZPOPMAX key [count]
void pop_common(CmdCtx& c, Args a, Reply& r, bool max) {
  if (a.size() > 3) return r.syntax_error();
  int64_t count = -1;
  if (a.size() == 3 && (!parse_int64(a[2], count) || count < 0))
    return r.error("ERR value is out of range, must be positive");
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
  if (!v || count == 0) return r.array(0);
  const bool nested = r.protocol() >= 3 && count != -1;
  std::vector<std::pair<std::string, double>> popped;
  if (!zset_update(c, a[1], r, false, [&](ZSetValue& z, storage::Delta& d) {
        int64_t n = count == -1 ? 1 : count;
        while (n-- > 0 && !z.empty()) {
          auto it = max ? z.at(z.size() - 1) : z.at(0);
          popped.emplace_back(*it->member, it->score);
          z.erase(popped.back().first);
          d.zset_rem(popped.back().first);
        }
        return true;
      }))
    return;
  r.array(nested ? popped.size() : popped.size() * 2);
  for (auto& [m, s] : popped) {
    if (nested) r.array(2);
    r.bulk(m);
    reply_score(r, s);
  }
}
void cmd_zpopmin(CmdCtx& c, Args a, Reply& r) { pop_common(c, a, r, false); }
void cmd_zpopmax(CmdCtx& c, Args a, Reply& r) { pop_common(c, a, r, true); }

// ZRANDMEMBER key [count [WITHSCORES]]
void cmd_zrandmember(CmdCtx& c, Args a, Reply& r) {
  const bool has_count = a.size() >= 3;
  int64_t count = 1;
  bool withscores = false;
  if (has_count) {
    if (!parse_int64(a[2], count)) return r.not_integer();
    if (count == LLONG_MIN)
      return r.error(
          "ERR value is out of range, value must between -9223372036854775807 and "
          "9223372036854775807");
    if (a.size() > 4 || (a.size() == 4 && !iequals(a[3], "withscores"))) return r.syntax_error();
    if (a.size() == 4) {
      withscores = true;
      if (count < -(LLONG_MAX / 2) || count > LLONG_MAX / 2) return r.error("ERR value is out of range");
    }
  }
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
  if (!has_count) {
    if (!v) return r.null();
    return r.bulk(*v->zset->at(c.random->uniform(v->zset->size()))->member);
  }
  if (!v || count == 0) return r.array(0);
  const ZSetValue& z = *v->zset;
  std::vector<size_t> ranks;
  if (count < 0) {
    const uint64_t n = 0 - static_cast<uint64_t>(count);
    if (n > kMaxRandomRepeats)
      return r.error("ERR count is out of range: at most 10000000 members with repeats");
    for (uint64_t i = 0; i < n; ++i) ranks.push_back(c.random->uniform(z.size()));
  } else if (static_cast<uint64_t>(count) >= z.size()) {
    for (size_t i = 0; i < z.size(); ++i) ranks.push_back(i);
  } else {
    std::unordered_set<size_t> seen;
    while (ranks.size() < static_cast<size_t>(count)) {
      size_t k = c.random->uniform(z.size());
      if (seen.insert(k).second) ranks.push_back(k);
    }
  }
  const bool pairs = withscores && r.protocol() >= 3;
  r.array(withscores && !pairs ? ranks.size() * 2 : ranks.size());
  for (size_t k : ranks) {
    auto it = z.at(k);
    if (pairs) r.array(2);
    r.bulk(*it->member);
    if (withscores) reply_score(r, it->score);
  }
}

enum class ZOp { kUnion, kInter, kDiff };
enum class Aggregate { kSum, kMin, kMax };

void aggregate_into(double& target, double val, Aggregate agg) {
  switch (agg) {
    case Aggregate::kSum:
      target += val;
      if (std::isnan(target)) target = 0;  // inf + -inf, as Redis
      break;
    case Aggregate::kMin: target = val < target ? val : target; break;
    case Aggregate::kMax: target = val > target ? val : target; break;
  }
}

// ZUNION/ZINTER/ZDIFF numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES],
// their STOREs (destination first), and ZINTERCARD numkeys key... [LIMIT n]. A plain set
// counts as a sorted set whose members all score 1, as in Redis.
void zsetop_common(CmdCtx& c, Args a, Reply& r, ZOp op, bool store, bool card_only) {
  const size_t numkeys_at = store ? 2 : 1;
  int64_t setnum;
  if (!parse_int64(a[numkeys_at], setnum)) return r.not_integer();
  if (setnum < 1)
    return r.error("ERR at least 1 input key is needed for '" + to_lower(a[0]) + "' command");
  if (setnum > static_cast<int64_t>(a.size() - (numkeys_at + 1))) return r.syntax_error();
  const size_t n = static_cast<size_t>(setnum);
  // Read the inputs (copies: a persistent engine's view lasts only until its next read).
  std::vector<std::vector<std::pair<std::string, double>>> inputs(n);
  std::vector<std::unordered_map<std::string, double>> index(n);
  for (size_t i = 0; i < n; ++i) {
    auto v = lookup(c, a[numkeys_at + 1 + i]);
    if (!v) continue;
    if (v->type == ValueType::kZSet) {
      for (auto it = v->zset->tree().begin(); it != v->zset->tree().end(); ++it)
        inputs[i].emplace_back(*it->member, it->score);
    } else if (v->type == ValueType::kSet) {
      for (auto& m : *v->set) inputs[i].emplace_back(m, 1.0);
    } else {
      return r.wrong_type();
    }
  }
  std::vector<double> weights(n, 1.0);
  Aggregate agg = Aggregate::kSum;
  bool withscores = false;
  int64_t limit = 0;
  for (size_t j = numkeys_at + 1 + n; j < a.size();) {
    const size_t remaining = a.size() - j;
    if (op != ZOp::kDiff && !card_only && remaining >= n + 1 && iequals(a[j], "weights")) {
      ++j;
      for (size_t i = 0; i < n; ++i, ++j)
        if (!parse_score(a[j], weights[i])) return r.error("ERR weight value is not a float");
    } else if (op != ZOp::kDiff && !card_only && remaining >= 2 && iequals(a[j], "aggregate")) {
      if (iequals(a[j + 1], "sum")) agg = Aggregate::kSum;
      else if (iequals(a[j + 1], "min")) agg = Aggregate::kMin;
      else if (iequals(a[j + 1], "max")) agg = Aggregate::kMax;
      else return r.syntax_error();
      j += 2;
    } else if (!store && !card_only && iequals(a[j], "withscores")) {
      withscores = true;
      ++j;
    } else if (card_only && remaining >= 2 && iequals(a[j], "limit")) {
      if (!parse_int64(a[j + 1], limit) || limit < 0) return r.error("ERR LIMIT can't be negative");
      j += 2;
    } else {
      return r.syntax_error();
    }
  }
  for (size_t i = 0; i < n; ++i)
    for (auto& [m, sc] : inputs[i]) index[i].emplace(m, sc);
  ZSetValue out;
  int64_t cardinality = 0;
  auto weighted = [&](size_t i, double sc) {
    double v = weights[i] * sc;
    return std::isnan(v) ? 0.0 : v;
  };
  if (op == ZOp::kInter) {
    size_t smallest = 0;
    for (size_t i = 1; i < n; ++i)
      if (inputs[i].size() < inputs[smallest].size()) smallest = i;
    for (auto& [m, sc] : inputs[smallest]) {
      double score = weighted(smallest, sc);
      bool all = true;
      // Aggregate in input order, skipping the walked input, as Redis's sorted order would
      // for equal cardinalities; scores are the same either way for SUM up to rounding.
      for (size_t i = 0; i < n && all; ++i) {
        if (i == smallest) continue;
        auto it = index[i].find(m);
        if (it == index[i].end()) all = false;
        else aggregate_into(score, weighted(i, it->second), agg);
      }
      if (!all) continue;
      if (card_only) {
        ++cardinality;
        if (limit && cardinality >= limit) break;
      } else {
        out.set(m, score);
      }
    }
  } else if (op == ZOp::kUnion) {
    std::unordered_map<std::string, double> acc;
    for (size_t i = 0; i < n; ++i)
      for (auto& [m, sc] : inputs[i]) {
        auto [it, added] = acc.try_emplace(m, weighted(i, sc));
        if (!added) aggregate_into(it->second, weighted(i, sc), agg);
      }
    for (auto& [m, sc] : acc) out.set(m, sc);
  } else {
    for (auto& [m, sc] : inputs[0]) {
      bool elsewhere = false;
      for (size_t i = 1; i < n && !elsewhere; ++i) elsewhere = index[i].count(m) > 0;
      if (!elsewhere) out.set(m, sc);
    }
  }
  if (card_only) return r.integer(cardinality);
  if (store) return store_zset(c, a[1], std::move(out), r);
  reply_range(r, out, 0, out.size(), false, withscores);
}
void cmd_zunion(CmdCtx& c, Args a, Reply& r) { zsetop_common(c, a, r, ZOp::kUnion, false, false); }
void cmd_zinter(CmdCtx& c, Args a, Reply& r) { zsetop_common(c, a, r, ZOp::kInter, false, false); }
void cmd_zdiff(CmdCtx& c, Args a, Reply& r) { zsetop_common(c, a, r, ZOp::kDiff, false, false); }
void cmd_zunionstore(CmdCtx& c, Args a, Reply& r) { zsetop_common(c, a, r, ZOp::kUnion, true, false); }
void cmd_zinterstore(CmdCtx& c, Args a, Reply& r) { zsetop_common(c, a, r, ZOp::kInter, true, false); }
void cmd_zdiffstore(CmdCtx& c, Args a, Reply& r) { zsetop_common(c, a, r, ZOp::kDiff, true, false); }
void cmd_zintercard(CmdCtx& c, Args a, Reply& r) { zsetop_common(c, a, r, ZOp::kInter, false, true); }

// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]
// BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]: `blocking` (the timeout is parsed
// after the other arguments, as Redis does).
void zmpop_common(CmdCtx& c, Args a, Reply& r, size_t numkeys_idx, bool blocking) {
  int64_t numkeys;
  if (!parse_int64(a[numkeys_idx], numkeys) || numkeys < 1)
    return r.error("ERR numkeys should be greater than 0");
  if (numkeys >= static_cast<int64_t>(a.size() - numkeys_idx) - 1) return r.syntax_error();
  const size_t where_idx = numkeys_idx + 1 + static_cast<size_t>(numkeys);
  bool max;
  if (iequals(a[where_idx], "min")) max = false;
  else if (iequals(a[where_idx], "max")) max = true;
  else return r.syntax_error();
  int64_t count = -1;
  for (size_t j = where_idx + 1; j < a.size(); ++j) {
    if (count == -1 && iequals(a[j], "count") && j + 1 < a.size()) {
      if (!parse_int64(a[++j], count) || count < 1)
        return r.error("ERR count should be greater than 0");
    } else {
      return r.syntax_error();
    }
  }
  if (count == -1) count = 1;
  if (blocking && !parse_block_timeout(c, a[1], r)) return;
  for (size_t k = numkeys_idx + 1; k < where_idx; ++k) {
    std::optional<ValueRef> v;
    if (!zset_lookup(c, a[k], v, r)) return;
    if (!v) continue;
    std::vector<std::pair<std::string, double>> popped;
    if (!zset_update(c, a[k], r, false, [&](ZSetValue& z, storage::Delta& d) {
          int64_t left = count;
          while (left-- > 0 && !z.empty()) {
            auto it = max ? z.at(z.size() - 1) : z.at(0);
            popped.emplace_back(*it->member, it->score);
            z.erase(popped.back().first);
            d.zset_rem(popped.back().first);
          }
          return true;
        }))
      return;
    r.array(2);
    r.bulk(a[k]);
    r.array(popped.size());
    for (auto& [m, sc] : popped) {
      r.array(2);
      r.bulk(m);
      reply_score(r, sc);
    }
    return;
  }
  if (blocking) would_block(c);
  r.null_array();
}
void cmd_zmpop(CmdCtx& c, Args a, Reply& r) { zmpop_common(c, a, r, 1, false); }
void cmd_bzmpop(CmdCtx& c, Args a, Reply& r) { zmpop_common(c, a, r, 2, true); }

// BZPOPMIN / BZPOPMAX key [key ...] timeout: [key, member, score] from the first non-empty
// sorted set; blocks if every one is empty.
void bzpop_common(CmdCtx& c, Args a, Reply& r, bool max) {
  if (!parse_block_timeout(c, a.back(), r)) return;
  for (size_t k = 1; k + 1 < a.size(); ++k) {
    std::optional<ValueRef> v;
    if (!zset_lookup(c, a[k], v, r)) return;
    if (!v) continue;
    std::pair<std::string, double> popped;
    if (!zset_update(c, a[k], r, false, [&](ZSetValue& z, storage::Delta& d) {
          auto it = max ? z.at(z.size() - 1) : z.at(0);
          popped = {*it->member, it->score};
          z.erase(popped.first);
          d.zset_rem(popped.first);
          return true;
        }))
      return;
    r.array(3);
    r.bulk(a[k]);
    r.bulk(popped.first);
    reply_score(r, popped.second);
    return;
  }
  would_block(c);
  r.null_array();
}
void cmd_bzpopmin(CmdCtx& c, Args a, Reply& r) { bzpop_common(c, a, r, false); }
void cmd_bzpopmax(CmdCtx& c, Args a, Reply& r) { bzpop_common(c, a, r, true); }

// ZSCAN key cursor [MATCH pattern] [COUNT count]: a sorted set of at most 128 members in one
// call with cursor 0, in score order (as Redis does for small, listpack-encoded sets); a
// larger one paged like HSCAN/SSCAN by a 64-bit hash of each member. Scores are bulk strings.
void cmd_zscan(CmdCtx& c, Args a, Reply& r) {
  constexpr size_t kWholeLimit = 128;
  constexpr size_t kMaxPasses = 64;
  uint64_t cursor = 0;
  {
    auto s = a[2];
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), cursor);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size())
      return r.error("ERR invalid cursor");
  }
  std::optional<ValueRef> v;
  if (!zset_lookup(c, a[1], v, r)) return;
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
  const ZSetValue& z = *v->zset;
  std::vector<std::pair<const std::string*, double>> page;
  uint64_t next = 0;
  if (z.size() <= kWholeLimit) {
    if (cursor == 0)
      for (auto it = z.tree().begin(); it != z.tree().end(); ++it) page.emplace_back(it->member, it->score);
  } else {
    std::vector<std::pair<uint64_t, std::pair<const std::string*, double>>> ahead;
    for (auto& [m, sc] : z.dict()) {
      uint64_t h = scan_order(m);
      if (h >= cursor) ahead.push_back({h, {&m, sc}});
    }
    size_t want = std::max(count, (z.size() + kMaxPasses - 1) / kMaxPasses);
    if (ahead.size() > want) {
      std::nth_element(ahead.begin(), ahead.begin() + static_cast<std::ptrdiff_t>(want - 1),
                       ahead.end(), [](auto& x, auto& y) { return x.first < y.first; });
      uint64_t last = ahead[want - 1].first;
      bool more = false;
      for (auto& [h, e] : ahead) {
        if (h <= last) page.push_back(e);
        else more = true;
      }
      next = (!more || last == UINT64_MAX) ? 0 : last + 1;
    } else {
      for (auto& [h, e] : ahead) page.push_back(e);
    }
  }
  r.array(2);
  r.bulk(std::to_string(next));
  size_t matched = 0;
  for (auto& [m, sc] : page) matched += pattern.empty() || glob_match(pattern, *m);
  r.array(matched * 2);
  for (auto& [m, sc] : page) {
    if (!pattern.empty() && !glob_match(pattern, *m)) continue;
    r.bulk(*m);
    r.bulk(score_string(sc));
  }
}

}  // namespace

void register_zset_commands(std::vector<CommandSpec>& t) {
  constexpr auto W = kWrite | kDenyOom;
  t.push_back({"zadd", -4, W | kFast, 1, 1, 1, Routing::kKey, cmd_zadd, "sorted-set", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.", "1.2.0"});
  t.push_back({"zincrby", 4, W | kFast, 1, 1, 1, Routing::kKey, cmd_zincrby, "sorted-set", "Increments the score of a member in a sorted set.", "1.2.0"});
  t.push_back({"zrem", -3, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_zrem, "sorted-set", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.", "1.2.0"});
  t.push_back({"zcard", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_zcard, "sorted-set", "Returns the number of members in a sorted set.", "1.2.0"});
  t.push_back({"zcount", 4, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_zcount, "sorted-set", "Returns the count of members in a sorted set that have scores within a range.", "2.0.0"});
  t.push_back({"zlexcount", 4, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_zlexcount, "sorted-set", "Returns the number of members in a sorted set within a lexicographical range.", "2.8.9"});
  t.push_back({"zscore", 3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_zscore, "sorted-set", "Returns the score of a member in a sorted set.", "1.2.0"});
  t.push_back({"zmscore", -3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_zmscore, "sorted-set", "Returns the score of one or more members in a sorted set.", "6.2.0"});
  t.push_back({"zrank", -3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_zrank, "sorted-set", "Returns the index of a member in a sorted set ordered by ascending scores.", "2.0.0"});
  t.push_back({"zrevrank", -3, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_zrevrank, "sorted-set", "Returns the index of a member in a sorted set ordered by descending scores.", "2.0.0"});
  t.push_back({"zrange", -4, kReadonly, 1, 1, 1, Routing::kKey, cmd_zrange, "sorted-set", "Returns members in a sorted set within a range of indexes.", "1.2.0"});
  t.push_back({"zrevrange", -4, kReadonly, 1, 1, 1, Routing::kKey, cmd_zrevrange, "sorted-set", "Returns members in a sorted set within a range of indexes in reverse order.", "1.2.0"});
  t.push_back({"zrangebyscore", -4, kReadonly, 1, 1, 1, Routing::kKey, cmd_zrangebyscore, "sorted-set", "Returns members in a sorted set within a range of scores.", "1.0.5"});
  t.push_back({"zrevrangebyscore", -4, kReadonly, 1, 1, 1, Routing::kKey, cmd_zrevrangebyscore, "sorted-set", "Returns members in a sorted set within a range of scores in reverse order.", "2.2.0"});
  t.push_back({"zrangebylex", -4, kReadonly, 1, 1, 1, Routing::kKey, cmd_zrangebylex, "sorted-set", "Returns members in a sorted set within a lexicographical range.", "2.8.9"});
  t.push_back({"zrevrangebylex", -4, kReadonly, 1, 1, 1, Routing::kKey, cmd_zrevrangebylex, "sorted-set", "Returns members in a sorted set within a lexicographical range in reverse order.", "2.8.9"});
  t.push_back({"zremrangebyrank", 4, kWrite, 1, 1, 1, Routing::kKey, cmd_zremrangebyrank, "sorted-set", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.", "2.0.0"});
  t.push_back({"zremrangebyscore", 4, kWrite, 1, 1, 1, Routing::kKey, cmd_zremrangebyscore, "sorted-set", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.", "1.2.0"});
  t.push_back({"zremrangebylex", 4, kWrite, 1, 1, 1, Routing::kKey, cmd_zremrangebylex, "sorted-set", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.", "2.8.9"});
  t.push_back({"zpopmin", -2, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_zpopmin, "sorted-set", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", "5.0.0"});
  t.push_back({"zpopmax", -2, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_zpopmax, "sorted-set", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", "5.0.0"});
  t.push_back({"zrangestore", -5, W, 1, 2, 1, Routing::kKey, cmd_zrangestore, "sorted-set", "Stores a range of members from sorted set in a key.", "6.2.0"});
  t.push_back({"zunion", -3, kReadonly, 2, 2, 1, Routing::kKey, cmd_zunion, "sorted-set", "Returns the union of multiple sorted sets.", "6.2.0", 0, 1});
  t.push_back({"zinter", -3, kReadonly, 2, 2, 1, Routing::kKey, cmd_zinter, "sorted-set", "Returns the intersect of multiple sorted sets.", "6.2.0", 0, 1});
  t.push_back({"zdiff", -3, kReadonly, 2, 2, 1, Routing::kKey, cmd_zdiff, "sorted-set", "Returns the difference between multiple sorted sets.", "6.2.0", 0, 1});
  t.push_back({"zintercard", -3, kReadonly, 2, 2, 1, Routing::kKey, cmd_zintercard, "sorted-set", "Returns the number of members of the intersect of multiple sorted sets.", "7.0.0", 0, 1});
  t.push_back({"zunionstore", -4, W, 1, 1, 1, Routing::kKey, cmd_zunionstore, "sorted-set", "Stores the union of multiple sorted sets in a key.", "2.0.0", 0, 2});
  t.push_back({"zinterstore", -4, W, 1, 1, 1, Routing::kKey, cmd_zinterstore, "sorted-set", "Stores the intersect of multiple sorted sets in a key.", "2.0.0", 0, 2});
  t.push_back({"zdiffstore", -4, W, 1, 1, 1, Routing::kKey, cmd_zdiffstore, "sorted-set", "Stores the difference of multiple sorted sets in a key.", "6.2.0", 0, 2});
  t.push_back({"zmpop", -4, kWrite, 2, 2, 1, Routing::kKey, cmd_zmpop, "sorted-set", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.", "7.0.0", 0, 1});
  const uint32_t B = kWrite | kBlocking;
  t.push_back({"bzpopmin", -3, B | kFast, 1, -2, 1, Routing::kKey, cmd_bzpopmin, "sorted-set", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "5.0.0"});
  t.push_back({"bzpopmax", -3, B | kFast, 1, -2, 1, Routing::kKey, cmd_bzpopmax, "sorted-set", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "5.0.0"});
  t.push_back({"bzmpop", -5, B, 3, 3, 1, Routing::kKey, cmd_bzmpop, "sorted-set", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "7.0.0", 0, 2});
  t.push_back({"zscan", -3, kReadonly | kRandom, 1, 1, 1, Routing::kKey, cmd_zscan, "sorted-set", "Iterates over members and scores of a sorted set.", "2.8.0"});
  t.push_back({"zrandmember", -2, kReadonly | kRandom, 1, 1, 1, Routing::kKey, cmd_zrandmember, "sorted-set", "Returns one or more random members from a sorted set.", "6.2.0"});
}

}  // namespace keel::resp

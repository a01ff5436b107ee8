// List commands: LPUSH RPUSH LPUSHX RPUSHX LPOP RPOP LLEN LRANGE LINDEX LSET LINSERT LREM LTRIM
// LPOS LMOVE RPOPLPUSH LMPOP.
//
// A list is one engine value (storage::ListValue); every change goes through
// Engine::update_by_element with the change described element by element and sealed with the
// list's change number (storage/delta.h), which is what is journaled and replicated. Replies
// and errors follow Redis 7.2's t_list.c, including the order in which arguments and the key
// are checked.
#include <climits>

#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

using storage::ListValue;

// Looks up a list. Replies WRONGTYPE and returns false if the key holds something else.
bool list_lookup(CmdCtx& c, std::string_view key, std::optional<ValueRef>& out, Reply& r) {
  out = lookup(c, key);
  if (out && out->type != ValueType::kList) {
    r.wrong_type();
    return false;
  }
  return true;
}

enum class Missing { kSkip, kCreate };

// Runs `fn(list, existed)` on the list at `key`. A missing key is created empty only with
// kCreate (else `fn` is not called and `*found` is false); a list left empty is removed.
// `fn` returns whether it changed the list. Returns false after replying WRONGTYPE or an
// engine error.
template <class F>
bool list_update(CmdCtx& c, std::string_view key, Reply& r, Missing missing, F&& fn,
                 bool* found = nullptr) {
  bool wrong = false;
  if (found) *found = false;
  storage::Delta delta;
  auto st = c.engine->update_by_element(c.partition(key), key, c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kList) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    if (!cur && missing == Missing::kSkip) return UpdateAction::kKeep;
    if (found) *found = true;
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kList;
    const uint64_t before = t->list.version();
    bool changed = call_described(fn, t->list, delta);
    if (!changed) return UpdateAction::kKeep;
    delta.seal_list(t->list, before);  // the list's change number, guarding a described change
    if (t->list.empty()) return cur ? UpdateAction::kErase : UpdateAction::kKeep;
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

// Redis's `long` argument (getLongFromObjectOrReply).
bool parse_long(std::string_view s, int64_t& out) { return parse_int64(s, out); }

// LEFT | RIGHT (case-insensitive); false for anything else.
bool parse_side(std::string_view s, bool& left) {
  if (iequals(s, "left")) {
    left = true;
    return true;
  }
  if (iequals(s, "right")) {
    left = false;
    return true;
  }
  return false;
}

// Resolves Redis's [start, end] range (negative counts from the end) against `len`: false if
// the range is empty, else the first index and the number of elements.
bool resolve_range(int64_t start, int64_t end, int64_t len, int64_t& first, int64_t& n) {
  if (start < 0) start = len + start;
  if (end < 0) end = len + end;
  if (start < 0) start = 0;
  if (start > end || start >= len) return false;
  if (end >= len) end = len - 1;
  first = start;
  n = end - start + 1;
  return true;
}

void push_common(CmdCtx& c, Args a, Reply& r, bool left, bool only_existing) {
  int64_t len = 0;
  bool found = false;
  if (!list_update(
          c, a[1], r, only_existing ? Missing::kSkip : Missing::kCreate,
          [&](ListValue& l, storage::Delta& d) {
            for (size_t i = 2; i < a.size(); ++i) {
              if (left) l.push_front(std::string(a[i]));
              else l.push_back(std::string(a[i]));
              d.list_push(left, a[i]);
            }
            len = static_cast<int64_t>(l.size());
            return true;
          },
          &found))
    return;
  r.integer(found ? len : 0);
}
void cmd_lpush(CmdCtx& c, Args a, Reply& r) { push_common(c, a, r, true, false); }
void cmd_rpush(CmdCtx& c, Args a, Reply& r) { push_common(c, a, r, false, false); }
void cmd_lpushx(CmdCtx& c, Args a, Reply& r) { push_common(c, a, r, true, true); }
void cmd_rpushx(CmdCtx& c, Args a, Reply& r) { push_common(c, a, r, false, true); }

// Pops up to `count` elements from one end into `out` (in pop order).
void pop_n(ListValue& l, bool left, int64_t count, std::vector<std::string>& out, storage::Delta& d) {
  const size_t before = out.size();
  while (count-- > 0 && !l.empty()) out.push_back(left ? l.pop_front() : l.pop_back());
  d.list_pop(left, out.size() - before);
}

void pop_common(CmdCtx& c, Args a, Reply& r, bool left) {
  if (a.size() > 3) return r.error(wrong_args(a[0]));
  const bool has_count = a.size() == 3;
  int64_t count = 0;
  if (has_count) {
    if (!parse_long(a[2], count) || count < 0)
      return r.error("ERR value is out of range, must be positive");
  }
  std::vector<std::string> popped;
  bool found = false;
  bool empty_fast_exit = has_count && count == 0;
  if (!list_update(
          c, a[1], r, Missing::kSkip,
          [&](ListValue& l, storage::Delta& d) {
            if (empty_fast_exit) return false;
            pop_n(l, left, has_count ? count : 1, popped, d);
            return true;
          },
          &found))
    return;
  if (!found) return has_count ? r.null_array() : r.null();
  if (!has_count) return r.bulk(popped.front());
  r.array(popped.size());
  for (auto& s : popped) r.bulk(s);
}
void cmd_lpop(CmdCtx& c, Args a, Reply& r) { pop_common(c, a, r, true); }
void cmd_rpop(CmdCtx& c, Args a, Reply& r) { pop_common(c, a, r, false); }

void cmd_llen(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!list_lookup(c, a[1], v, r)) return;
  r.integer(v ? static_cast<int64_t>(v->list->size()) : 0);
}

void cmd_lrange(CmdCtx& c, Args a, Reply& r) {
  int64_t start, end;
  if (!parse_long(a[2], start) || !parse_long(a[3], end)) return r.not_integer();
  std::optional<ValueRef> v;
  if (!list_lookup(c, a[1], v, r)) return;
  if (!v) return r.array(0);
  const ListValue& l = *v->list;
  int64_t first, n;
  if (!resolve_range(start, end, static_cast<int64_t>(l.size()), first, n)) return r.array(0);
  r.array(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r.bulk(l[static_cast<size_t>(first + i)]);
}

void cmd_lindex(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!list_lookup(c, a[1], v, r)) return;
  if (!v) return r.null();
  int64_t index;
  if (!parse_long(a[2], index)) return r.not_integer();
  const int64_t len = static_cast<int64_t>(v->list->size());
  if (index < 0) index += len;
  if (index < 0 || index >= len) return r.null();
  r.bulk((*v->list)[static_cast<size_t>(index)]);
}

void cmd_lset(CmdCtx& c, Args a, Reply& r) {
  std::optional<ValueRef> v;
  if (!list_lookup(c, a[1], v, r)) return;
  if (!v) return r.error("ERR no such key");
  int64_t index;
  if (!parse_long(a[2], index)) return r.not_integer();
  bool in_range = false;
  if (!list_update(c, a[1], r, Missing::kSkip, [&](ListValue& l, storage::Delta& d) {
        const int64_t len = static_cast<int64_t>(l.size());
        int64_t i = index < 0 ? index + len : index;
        if (i < 0 || i >= len) return false;
        in_range = true;
        l[static_cast<size_t>(i)].assign(a[3]);
        d.list_set(static_cast<uint64_t>(i), a[3]);
        return true;
      }))
    return;
  if (!in_range) return r.error("ERR index out of range");
  r.ok();
}

void cmd_linsert(CmdCtx& c, Args a, Reply& r) {
  bool after;
  if (iequals(a[2], "after")) after = true;
  else if (iequals(a[2], "before")) after = false;
  else return r.syntax_error();
  bool found = false, inserted = false;
  int64_t len = 0;
  if (!list_update(
          c, a[1], r, Missing::kSkip,
          [&](ListValue& l, storage::Delta& d) {
            for (size_t i = 0; i < l.size(); ++i) {
              if (l[i] == a[3]) {
                l.insert(after ? i + 1 : i, std::string(a[4]));
                d.list_insert(after ? i + 1 : i, a[4]);
                inserted = true;
                break;
              }
            }
            len = static_cast<int64_t>(l.size());
            return inserted;
          },
          &found))
    return;
  if (!found) return r.integer(0);
  r.integer(inserted ? len : -1);
}

void cmd_lrem(CmdCtx& c, Args a, Reply& r) {
  int64_t to_remove;
  if (!parse_long(a[2], to_remove)) return r.not_integer();
  int64_t removed = 0;
  if (!list_update(c, a[1], r, Missing::kSkip, [&](ListValue& l, storage::Delta& d) {
        const bool from_tail = to_remove < 0;
        const uint64_t limit = from_tail ? 0 - static_cast<uint64_t>(to_remove)
                                         : static_cast<uint64_t>(to_remove);
        // Rebuild the list without the removed elements: one pass, whatever the count.
        const size_t n = l.size();
        std::vector<uint8_t> drop(n, 0);
        for (size_t k = 0; k < n; ++k) {
          size_t i = from_tail ? n - 1 - k : k;
          if (l[i] == a[3]) {
            drop[i] = 1;
            ++removed;
            if (limit && static_cast<uint64_t>(removed) == limit) break;
          }
        }
        if (!removed) return false;
        for (size_t i = n; i-- > 0;)  // from the tail, so each index holds when it is applied
          if (drop[i]) d.list_erase(i);
        ListValue kept;
        kept.reserve(n - static_cast<size_t>(removed));
        for (size_t i = 0; i < n; ++i)
          if (!drop[i]) kept.push_back(std::move(l[i]));
        l = std::move(kept);
        return true;
      }))
    return;
  r.integer(removed);
}

void cmd_ltrim(CmdCtx& c, Args a, Reply& r) {
  int64_t start, end;
  if (!parse_long(a[2], start) || !parse_long(a[3], end)) return r.not_integer();
  if (!list_update(c, a[1], r, Missing::kSkip, [&](ListValue& l, storage::Delta& d) {
        const int64_t len = static_cast<int64_t>(l.size());
        int64_t first = 0, n = 0;
        if (!resolve_range(start, end, len, first, n)) {
          l.clear();
          return true;
        }
        if (n == len) return false;
        d.list_pop(true, static_cast<uint64_t>(first));
        d.list_pop(false, static_cast<uint64_t>(len - first - n));
        if (n < len / 2) {  // keep a small part: copy it out
          ListValue kept;
          kept.reserve(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) kept.push_back(std::move(l[static_cast<size_t>(first + i)]));
          l = std::move(kept);
        } else {
          for (int64_t i = 0; i < first; ++i) l.pop_front();
          while (static_cast<int64_t>(l.size()) > n) l.pop_back();
        }
        return true;
      }))
    return;
  r.ok();
}

// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
void cmd_lpos(CmdCtx& c, Args a, Reply& r) {
  int64_t rank = 1, count = -1, maxlen = 0;
  for (size_t j = 3; j < a.size(); ++j) {
    const bool more = j + 1 < a.size();
    if (iequals(a[j], "rank") && more) {
      if (!parse_long(a[++j], rank)) return r.not_integer();
      if (rank == LLONG_MIN)
        return r.error(
            "ERR value is out of range, value must between -9223372036854775807 and "
            "9223372036854775807");
      if (rank == 0)
        return r.error(
            "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
            "or use negative to start from the end of the list");
    } else if (iequals(a[j], "count") && more) {
      if (!parse_long(a[++j], count) || count < 0) return r.error("ERR COUNT can't be negative");
    } else if (iequals(a[j], "maxlen") && more) {
      if (!parse_long(a[++j], maxlen) || maxlen < 0) return r.error("ERR MAXLEN can't be negative");
    } else {
      return r.syntax_error();
    }
  }
  const bool from_tail = rank < 0;
  if (from_tail) rank = -rank;
  std::optional<ValueRef> v;
  if (!list_lookup(c, a[1], v, r)) return;
  if (!v) return count != -1 ? r.array(0) : r.null();
  const ListValue& l = *v->list;
  const int64_t len = static_cast<int64_t>(l.size());
  std::vector<int64_t> hits;
  int64_t matches = 0;
  for (int64_t k = 0; k < len && (maxlen == 0 || k < maxlen); ++k) {
    const int64_t i = from_tail ? len - 1 - k : k;
    if (l[static_cast<size_t>(i)] != a[2]) continue;
    if (++matches < rank) continue;
    hits.push_back(i);
    if (count == -1) break;
    if (count && matches - rank + 1 >= count) break;
  }
  if (count == -1) return hits.empty() ? r.null() : r.integer(hits.front());
  r.array(hits.size());
  for (int64_t i : hits) r.integer(i);
}

// Pops one element from `src`'s `from_left` end and pushes it onto `dst`'s `to_left` end.
void move_common(CmdCtx& c, std::string_view src, std::string_view dst, bool from_left,
                 bool to_left, Reply& r) {
  std::optional<ValueRef> s;
  if (!list_lookup(c, src, s, r)) return;
  if (!s) return r.null();
  std::optional<ValueRef> d;
  if (!list_lookup(c, dst, d, r)) return;
  std::string value;
  if (src == dst) {
    if (!list_update(c, src, r, Missing::kSkip, [&](ListValue& l, storage::Delta& d) {
          value = from_left ? l.pop_front() : l.pop_back();
          if (to_left) l.push_front(value);
          else l.push_back(value);
          d.list_pop(from_left, 1);
          d.list_push(to_left, value);
          return true;
        }))
      return;
    return r.bulk(value);
  }
  if (!list_update(c, src, r, Missing::kSkip, [&](ListValue& l, storage::Delta& d) {
        value = from_left ? l.pop_front() : l.pop_back();
        d.list_pop(from_left, 1);
        return true;
      }))
    return;
  if (!list_update(c, dst, r, Missing::kCreate, [&](ListValue& l, storage::Delta& d) {
        if (to_left) l.push_front(value);
        else l.push_back(value);
        d.list_push(to_left, value);
        return true;
      }))
    return;
  r.bulk(value);
}

void cmd_lmove(CmdCtx& c, Args a, Reply& r) {
  bool from_left, to_left;
  if (!parse_side(a[3], from_left) || !parse_side(a[4], to_left)) return r.syntax_error();
  move_common(c, a[1], a[2], from_left, to_left, r);
}

void cmd_rpoplpush(CmdCtx& c, Args a, Reply& r) { move_common(c, a[1], a[2], false, true, r); }

// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]
// BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]: `blocking` (the timeout is
// parsed after the other arguments, as Redis does).
void lmpop_common(CmdCtx& c, Args a, Reply& r, size_t numkeys_idx, bool blocking) {
  int64_t numkeys;
  if (!parse_long(a[numkeys_idx], numkeys) || numkeys < 1)
    return r.error("ERR numkeys should be greater than 0");
  if (numkeys >= static_cast<int64_t>(a.size() - numkeys_idx) - 1) return r.syntax_error();
  const size_t where_idx = numkeys_idx + 1 + static_cast<size_t>(numkeys);
  bool left;
  if (!parse_side(a[where_idx], left)) return r.syntax_error();
  int64_t count = -1;
  for (size_t j = where_idx + 1; j < a.size(); ++j) {
    if (count == -1 && iequals(a[j], "count") && j + 1 < a.size()) {
      if (!parse_long(a[++j], count) || count < 1)
        return r.error("ERR count should be greater than 0");
    } else {
      return r.syntax_error();
    }
  }
  if (count == -1) count = 1;
  if (blocking && !parse_block_timeout(c, a[1], r)) return;
  for (size_t k = numkeys_idx + 1; k < where_idx; ++k) {
    std::optional<ValueRef> v;
    if (!list_lookup(c, a[k], v, r)) return;
    if (!v) continue;
    std::vector<std::string> popped;
    if (!list_update(c, a[k], r, Missing::kSkip, [&](ListValue& l, storage::Delta& d) {
          pop_n(l, left, count, popped, d);
          return true;
        }))
      return;
    r.array(2);
    r.bulk(a[k]);
    r.array(popped.size());
    for (auto& s : popped) r.bulk(s);
    return;
  }
  if (blocking) would_block(c);
  r.null_array();
}
void cmd_lmpop(CmdCtx& c, Args a, Reply& r) { lmpop_common(c, a, r, 1, false); }
void cmd_blmpop(CmdCtx& c, Args a, Reply& r) { lmpop_common(c, a, r, 2, true); }

// BLPOP / BRPOP key [key ...] timeout: pops from the first non-empty list, replying
// [key, element]; blocks if every list is empty.
void bpop_common(CmdCtx& c, Args a, Reply& r, bool left) {
  if (!parse_block_timeout(c, a.back(), r)) return;
  for (size_t k = 1; k + 1 < a.size(); ++k) {
    std::optional<ValueRef> v;
    if (!list_lookup(c, a[k], v, r)) return;
    if (!v) continue;
    std::string value;
    if (!list_update(c, a[k], r, Missing::kSkip, [&](ListValue& l, storage::Delta& d) {
          value = left ? l.pop_front() : l.pop_back();
          d.list_pop(left, 1);
          return true;
        }))
      return;
    r.array(2);
    r.bulk(a[k]);
    r.bulk(value);
    return;
  }
  would_block(c);
  r.null_array();
}
void cmd_blpop(CmdCtx& c, Args a, Reply& r) { bpop_common(c, a, r, true); }
void cmd_brpop(CmdCtx& c, Args a, Reply& r) { bpop_common(c, a, r, false); }

// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout, BRPOPLPUSH source destination timeout.
void blmove_common(CmdCtx& c, Args a, Reply& r, bool from_left, bool to_left,
                   std::string_view timeout) {
  if (!parse_block_timeout(c, timeout, r)) return;
  std::optional<ValueRef> s;
  if (!list_lookup(c, a[1], s, r)) return;
  if (!s) {
    would_block(c);
    return r.null();
  }
  move_common(c, a[1], a[2], from_left, to_left, r);
}
void cmd_blmove(CmdCtx& c, Args a, Reply& r) {
  bool from_left, to_left;
  if (!parse_side(a[3], from_left) || !parse_side(a[4], to_left)) return r.syntax_error();
  blmove_common(c, a, r, from_left, to_left, a[5]);
}
void cmd_brpoplpush(CmdCtx& c, Args a, Reply& r) { blmove_common(c, a, r, false, true, a[3]); }

}  // namespace

void register_list_commands(std::vector<CommandSpec>& t) {
  constexpr auto W = kWrite | kDenyOom;
  t.push_back({"lpush", -3, W | kFast, 1, 1, 1, Routing::kKey, cmd_lpush, "list", "Prepends one or more elements to a list. Creates the key if it doesn't exist."});
  t.push_back({"rpush", -3, W | kFast, 1, 1, 1, Routing::kKey, cmd_rpush, "list", "Appends one or more elements to a list. Creates the key if it doesn't exist."});
  t.push_back({"lpushx", -3, W | kFast, 1, 1, 1, Routing::kKey, cmd_lpushx, "list", "Prepends one or more elements to a list only when the list exists.", "2.2.0"});
  t.push_back({"rpushx", -3, W | kFast, 1, 1, 1, Routing::kKey, cmd_rpushx, "list", "Appends an element to a list only when the list exists.", "2.2.0"});
  t.push_back({"lpop", -2, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_lpop, "list", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped."});
  t.push_back({"rpop", -2, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_rpop, "list", "Returns and removes the last elements of a list. Deletes the list if the last element was popped."});
  t.push_back({"llen", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_llen, "list", "Returns the length of a list."});
  t.push_back({"lrange", 4, kReadonly, 1, 1, 1, Routing::kKey, cmd_lrange, "list", "Returns a range of elements from a list."});
  t.push_back({"lindex", 3, kReadonly, 1, 1, 1, Routing::kKey, cmd_lindex, "list", "Returns an element from a list by its index."});
  t.push_back({"lset", 4, W, 1, 1, 1, Routing::kKey, cmd_lset, "list", "Sets the value of an element in a list by its index."});
  t.push_back({"linsert", 5, W, 1, 1, 1, Routing::kKey, cmd_linsert, "list", "Inserts an element before or after another element in a list.", "2.2.0"});
  t.push_back({"lrem", 4, kWrite, 1, 1, 1, Routing::kKey, cmd_lrem, "list", "Removes elements from a list. Deletes the list if the last element was removed."});
  t.push_back({"ltrim", 4, kWrite, 1, 1, 1, Routing::kKey, cmd_ltrim, "list", "Removes elements from both ends a list. Deletes the list if all elements were trimmed."});
  t.push_back({"lpos", -3, kReadonly, 1, 1, 1, Routing::kKey, cmd_lpos, "list", "Returns the index of matching elements in a list.", "6.0.6"});
  t.push_back({"lmove", 5, W, 1, 2, 1, Routing::kKey, cmd_lmove, "list", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.", "6.2.0"});
  t.push_back({"rpoplpush", 3, W, 1, 2, 1, Routing::kKey, cmd_rpoplpush, "list", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.", "1.2.0"});
  t.push_back({"lmpop", -4, kWrite, 2, 2, 1, Routing::kKey, cmd_lmpop, "list", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.", "7.0.0", 0, 1});
  const uint32_t B = kWrite | kBlocking;
  t.push_back({"blpop", -3, B, 1, -2, 1, Routing::kKey, cmd_blpop, "list", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "2.0.0"});
  t.push_back({"brpop", -3, B, 1, -2, 1, Routing::kKey, cmd_brpop, "list", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "2.0.0"});
  t.push_back({"blmove", 6, B | kDenyOom, 1, 2, 1, Routing::kKey, cmd_blmove, "list", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.", "6.2.0"});
  t.push_back({"brpoplpush", 4, B | kDenyOom, 1, 2, 1, Routing::kKey, cmd_brpoplpush, "list", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.", "2.2.0"});
  t.push_back({"blmpop", -5, B, 3, 3, 1, Routing::kKey, cmd_blmpop, "list", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "7.0.0", 0, 2});
}

}  // namespace keel::resp

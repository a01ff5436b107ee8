// String commands: GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX APPEND
// STRLEN GETRANGE SETRANGE INCR INCRBY INCRBYFLOAT DECR DECRBY. Replies and errors follow
// Redis 7 for the same input.
#include <cmath>

#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

constexpr uint64_t kMaxStringBytes = 512ull << 20;

void cmd_get(CmdCtx& c, Args a, Reply& r) {
  auto v = lookup(c, a[1]);
  if (!v) return r.null();
  if (v->type != ValueType::kString) return r.wrong_type();
  r.bulk(v->str);
}

// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT ts | PXAT ts-ms | KEEPTTL]
struct SetOptions {
  bool nx = false, xx = false, get = false, keepttl = false;
  int64_t expire_at_ms = 0;
  bool has_expire = false;
};

// Parses SET-style options starting at argv[start]. Writes an error reply and returns false
// on bad input.
bool parse_set_options(CmdCtx& c, Args a, size_t start, SetOptions& o, Reply& r, bool allow_cond) {
  for (size_t i = start; i < a.size(); ++i) {
    auto opt = a[i];
    bool has_next = i + 1 < a.size();
    if (allow_cond && iequals(opt, "nx") && !o.xx) {
      o.nx = true;
    } else if (allow_cond && iequals(opt, "xx") && !o.nx) {
      o.xx = true;
    } else if (allow_cond && iequals(opt, "get")) {
      o.get = true;
    } else if (iequals(opt, "keepttl") && !o.has_expire && allow_cond) {
      o.keepttl = true;
    } else if ((iequals(opt, "ex") || iequals(opt, "px") || iequals(opt, "exat") ||
                iequals(opt, "pxat")) &&
               !o.has_expire && !o.keepttl && has_next) {
      int64_t v;
      if (!parse_int64(a[i + 1], v)) {
        r.not_integer();
        return false;
      }
      bool secs = iequals(opt, "ex") || iequals(opt, "exat");
      bool abs = iequals(opt, "exat") || iequals(opt, "pxat");
      if (!expire_deadline(v, secs ? ExpireUnit::kSeconds : ExpireUnit::kMillis, abs, c.now_ms,
                           o.expire_at_ms)) {
        r.error("ERR invalid expire time in '" + to_lower(a[0]) + "' command");
        return false;
      }
      o.has_expire = true;
      ++i;
    } else {
      r.syntax_error();
      return false;
    }
  }
  return true;
}

void cmd_set(CmdCtx& c, Args a, Reply& r) {
  SetOptions o;
  if (!parse_set_options(c, a, 3, o, r, true)) return;
  auto part = c.partition(a[1]);
  if (!o.nx && !o.xx && !o.get && !o.keepttl) {  // the hot path: one engine call
    auto st = c.engine->set_string(part, a[1], a[2], o.expire_at_ms, c.now_ms);
    if (!st) return reply_status_error(r, st.error());
    return r.ok();
  }
  enum { kSet, kNotSet, kWrongType } outcome = kNotSet;
  std::optional<std::string> old;
  auto st = c.engine->update(part, a[1], c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && o.get && cur->type != ValueType::kString) {
      outcome = kWrongType;
      return UpdateAction::kKeep;
    }
    if (cur && o.get) old = cur->str;
    if ((o.nx && cur) || (o.xx && !cur)) return UpdateAction::kKeep;
    Value* target = cur ? cur : scratch;
    int64_t keep = (cur && o.keepttl) ? cur->expire_at_ms : 0;
    target->type = ValueType::kString;
    target->str.assign(a[2]);
    target->hash.clear();
    target->expire_at_ms = o.has_expire ? o.expire_at_ms : keep;
    outcome = kSet;
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  if (outcome == kWrongType) return r.wrong_type();
  if (o.get) return old ? r.bulk(*old) : r.null();
  if (outcome == kSet) return r.ok();
  r.null();
}

void cmd_setnx(CmdCtx& c, Args a, Reply& r) {
  bool set = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur) return UpdateAction::kKeep;
    scratch->type = ValueType::kString;
    scratch->str.assign(a[2]);
    set = true;
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  r.integer(set ? 1 : 0);
}

void setex_common(CmdCtx& c, Args a, Reply& r, ExpireUnit unit) {
  int64_t v, deadline;
  if (!parse_int64(a[2], v)) return r.not_integer();
  if (!expire_deadline(v, unit, false, c.now_ms, deadline))
    return r.error("ERR invalid expire time in '" + to_lower(a[0]) + "' command");
  auto st = c.engine->set_string(c.partition(a[1]), a[1], a[3], deadline, c.now_ms);
  if (!st) return reply_status_error(r, st.error());
  r.ok();
}
void cmd_setex(CmdCtx& c, Args a, Reply& r) { setex_common(c, a, r, ExpireUnit::kSeconds); }
void cmd_psetex(CmdCtx& c, Args a, Reply& r) { setex_common(c, a, r, ExpireUnit::kMillis); }

void cmd_getset(CmdCtx& c, Args a, Reply& r) {
  std::optional<std::string> old;
  bool wrong = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kString) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    if (cur) old = cur->str;
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kString;
    t->str.assign(a[2]);
    t->expire_at_ms = 0;  // GETSET discards the TTL, like SET
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  if (wrong) return r.wrong_type();
  old ? r.bulk(*old) : r.null();
}

void cmd_getdel(CmdCtx& c, Args a, Reply& r) {
  std::optional<std::string> old;
  bool wrong = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value*) {
    if (!cur) return UpdateAction::kKeep;
    if (cur->type != ValueType::kString) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    old = cur->str;
    return UpdateAction::kErase;
  });
  if (!st) return reply_status_error(r, st.error());
  if (wrong) return r.wrong_type();
  old ? r.bulk(*old) : r.null();
}

// GETEX key [EX s | PX ms | EXAT ts | PXAT ts | PERSIST]
void cmd_getex(CmdCtx& c, Args a, Reply& r) {
  SetOptions o;
  bool persist = false;
  if (a.size() == 3 && iequals(a[2], "persist")) {
    persist = true;
  } else if (!parse_set_options(c, a, 2, o, r, false)) {
    return;
  }
  std::optional<std::string> val;
  bool wrong = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value*) {
    if (!cur) return UpdateAction::kKeep;
    if (cur->type != ValueType::kString) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    val = cur->str;
    if (persist && cur->expire_at_ms != 0) {
      cur->expire_at_ms = 0;
      return UpdateAction::kWrite;
    }
    if (o.has_expire) {
      if (o.expire_at_ms <= c.now_ms) return UpdateAction::kErase;
      cur->expire_at_ms = o.expire_at_ms;
      return UpdateAction::kWrite;
    }
    return UpdateAction::kKeep;
  });
  if (!st) return reply_status_error(r, st.error());
  if (wrong) return r.wrong_type();
  val ? r.bulk(*val) : r.null();
}

void cmd_append(CmdCtx& c, Args a, Reply& r) {
  size_t len = 0;
  bool wrong = false, too_big = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kString) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    Value* t = cur ? cur : scratch;
    if (t->str.size() + a[2].size() > kMaxStringBytes) {
      too_big = true;
      return UpdateAction::kKeep;
    }
    t->type = ValueType::kString;
    t->str.append(a[2]);
    len = t->str.size();
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  if (wrong) return r.wrong_type();
  if (too_big) return r.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  r.integer(static_cast<int64_t>(len));
}

void cmd_strlen(CmdCtx& c, Args a, Reply& r) {
  auto v = lookup(c, a[1]);
  if (!v) return r.integer(0);
  if (v->type != ValueType::kString) return r.wrong_type();
  r.integer(static_cast<int64_t>(v->str.size()));
}

void cmd_getrange(CmdCtx& c, Args a, Reply& r) {
  int64_t start, end;
  if (!parse_int64(a[2], start) || !parse_int64(a[3], end)) return r.not_integer();
  auto v = lookup(c, a[1]);
  if (!v) return r.bulk("");
  if (v->type != ValueType::kString) return r.wrong_type();
  int64_t len = static_cast<int64_t>(v->str.size());
  if (start < 0 && end < 0 && start > end) return r.bulk("");
  if (start < 0) start = len + start;
  if (end < 0) end = len + end;
  if (start < 0) start = 0;
  if (end < 0) end = 0;
  if (end >= len) end = len - 1;
  if (len == 0 || start > end) return r.bulk("");
  r.bulk(v->str.substr(static_cast<size_t>(start), static_cast<size_t>(end - start + 1)));
}

void cmd_setrange(CmdCtx& c, Args a, Reply& r) {
  int64_t off;
  if (!parse_int64(a[2], off)) return r.not_integer();
  if (off < 0) return r.error("ERR offset is out of range");
  if (static_cast<uint64_t>(off) + a[3].size() > kMaxStringBytes)
    return r.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  size_t len = 0;
  bool wrong = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value* scratch) {
    if (cur && cur->type != ValueType::kString) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    if (!cur && a[3].empty()) return UpdateAction::kKeep;  // no key is created for nothing
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kString;
    if (a[3].empty()) {
      len = t->str.size();
      return UpdateAction::kKeep;
    }
    size_t o = static_cast<size_t>(off);
    if (t->str.size() < o + a[3].size()) t->str.resize(o + a[3].size(), '\0');
    t->str.replace(o, a[3].size(), a[3]);
    len = t->str.size();
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  if (wrong) return r.wrong_type();
  r.integer(static_cast<int64_t>(len));
}

void incr_common(CmdCtx& c, std::string_view key, int64_t by, Reply& r) {
  enum { kOk, kWrong, kNotInt, kOverflow } res = kOk;
  int64_t result = 0;
  auto st = c.engine->update(c.partition(key), key, c.now_ms, [&](Value* cur, Value* scratch) {
    int64_t v = 0;
    if (cur) {
      if (cur->type != ValueType::kString) {
        res = kWrong;
        return UpdateAction::kKeep;
      }
      if (!parse_int64(cur->str, v)) {
        res = kNotInt;
        return UpdateAction::kKeep;
      }
    }
    if (__builtin_add_overflow(v, by, &result)) {
      res = kOverflow;
      return UpdateAction::kKeep;
    }
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kString;
    t->str = std::to_string(result);
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  switch (res) {
    case kWrong: return r.wrong_type();
    case kNotInt: return r.not_integer();
    case kOverflow: return r.error("ERR increment or decrement would overflow");
    case kOk: return r.integer(result);
  }
}

void cmd_incr(CmdCtx& c, Args a, Reply& r) { incr_common(c, a[1], 1, r); }
void cmd_decr(CmdCtx& c, Args a, Reply& r) { incr_common(c, a[1], -1, r); }
void cmd_incrby(CmdCtx& c, Args a, Reply& r) {
  int64_t by;
  if (!parse_int64(a[2], by)) return r.not_integer();
  incr_common(c, a[1], by, r);
}
void cmd_decrby(CmdCtx& c, Args a, Reply& r) {
  int64_t by;
  if (!parse_int64(a[2], by)) return r.not_integer();
  if (by == LLONG_MIN) return r.error("ERR decrement would overflow");
  incr_common(c, a[1], -by, r);
}

void cmd_incrbyfloat(CmdCtx& c, Args a, Reply& r) {
  long double by;
  if (!parse_long_double(a[2], by)) return r.not_float();
  enum { kOk, kWrong, kNotFloat, kNan } res = kOk;
  std::string out;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value* scratch) {
    long double v = 0;
    if (cur) {
      if (cur->type != ValueType::kString) {
        res = kWrong;
        return UpdateAction::kKeep;
      }
      if (!parse_long_double(cur->str, v)) {
        res = kNotFloat;
        return UpdateAction::kKeep;
      }
    }
    long double sum = v + by;
    if (std::isnan(sum) || std::isinf(sum)) {
      res = kNan;
      return UpdateAction::kKeep;
    }
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kString;
    t->str = out = format_double(sum);
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  switch (res) {
    case kWrong: return r.wrong_type();
    case kNotFloat: return r.not_float();
    case kNan: return r.error("ERR increment would produce NaN or Infinity");
    case kOk: return r.bulk(out);
  }
}

// MGET/MSET/MSETNX on one shard (the server splits a multi-shard request into per-shard
// calls of these and merges the replies).
void cmd_mget(CmdCtx& c, Args a, Reply& r) {
  r.array(a.size() - 1);
  for (size_t i = 1; i < a.size(); ++i) {
    auto v = lookup(c, a[i]);
    if (v && v->type == ValueType::kString) r.bulk(v->str);
    else r.null();
  }
}

void cmd_mset(CmdCtx& c, Args a, Reply& r) {
  if (a.size() % 2 == 0) return r.error(wrong_args(a[0]));
  std::vector<storage::Engine::BatchOp> ops;
  ops.reserve(a.size() / 2);
  for (size_t i = 1; i + 1 < a.size(); i += 2) {
    Value v;
    v.str.assign(a[i + 1]);
    ops.push_back({c.partition(a[i]), std::string(a[i]), std::move(v)});
  }
  auto st = c.engine->write_batch(std::move(ops), c.now_ms);
  if (!st) return reply_status_error(r, st.error());
  r.ok();
}

void cmd_msetnx(CmdCtx& c, Args a, Reply& r) {
  if (a.size() % 2 == 0) return r.error(wrong_args(a[0]));
  for (size_t i = 1; i < a.size(); i += 2)
    if (lookup(c, a[i])) return r.integer(0);
  std::vector<storage::Engine::BatchOp> ops;
  for (size_t i = 1; i + 1 < a.size(); i += 2) {
    Value v;
    v.str.assign(a[i + 1]);
    ops.push_back({c.partition(a[i]), std::string(a[i]), std::move(v)});
  }
  auto st = c.engine->write_batch(std::move(ops), c.now_ms);
  if (!st) return reply_status_error(r, st.error());
  r.integer(1);
}

}  // namespace

void register_string_commands(std::vector<CommandSpec>& t) {
  constexpr auto W = kWrite | kDenyOom;
  t.push_back({"get", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_get, "string", "Returns the string value of a key."});
  t.push_back({"set", -3, W, 1, 1, 1, Routing::kKey, cmd_set, "string", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."});
  t.push_back({"setnx", 3, W | kFast, 1, 1, 1, Routing::kKey, cmd_setnx, "string", "Set the string value of a key only when the key doesn't exist."});
  t.push_back({"setex", 4, W, 1, 1, 1, Routing::kKey, cmd_setex, "string", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."});
  t.push_back({"psetex", 4, W, 1, 1, 1, Routing::kKey, cmd_psetex, "string", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."});
  t.push_back({"getset", 3, W | kFast, 1, 1, 1, Routing::kKey, cmd_getset, "string", "Returns the previous string value of a key after setting it to a new value."});
  t.push_back({"getdel", 2, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_getdel, "string", "Returns the string value of a key after deleting the key."});
  t.push_back({"getex", -2, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_getex, "string", "Returns the string value of a key after setting its expiration time."});
  t.push_back({"mget", -2, kReadonly | kFast, 1, -1, 1, Routing::kKey, cmd_mget, "string", "Atomically returns the string values of one or more keys."});
  t.push_back({"mset", -3, W, 1, -1, 2, Routing::kKey, cmd_mset, "string", "Atomically creates or modifies the string values of one or more keys."});
  t.push_back({"msetnx", -3, W, 1, -1, 2, Routing::kKey, cmd_msetnx, "string", "Atomically modifies the string values of one or more keys only when all keys don't exist."});
  t.push_back({"append", 3, W | kFast, 1, 1, 1, Routing::kKey, cmd_append, "string", "Appends a string to the value of a key. Creates the key if it doesn't exist."});
  t.push_back({"strlen", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_strlen, "string", "Returns the length of a string value."});
  t.push_back({"getrange", 4, kReadonly, 1, 1, 1, Routing::kKey, cmd_getrange, "string", "Returns a substring of the string stored at a key."});
  t.push_back({"setrange", 4, W, 1, 1, 1, Routing::kKey, cmd_setrange, "string", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."});
  t.push_back({"incr", 2, W | kFast, 1, 1, 1, Routing::kKey, cmd_incr, "string", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."});
  t.push_back({"decr", 2, W | kFast, 1, 1, 1, Routing::kKey, cmd_decr, "string", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."});
  t.push_back({"incrby", 3, W | kFast, 1, 1, 1, Routing::kKey, cmd_incrby, "string", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."});
  t.push_back({"decrby", 3, W | kFast, 1, 1, 1, Routing::kKey, cmd_decrby, "string", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."});
  t.push_back({"incrbyfloat", 3, W | kFast, 1, 1, 1, Routing::kKey, cmd_incrbyfloat, "string", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."});
}

}  // namespace keel::resp

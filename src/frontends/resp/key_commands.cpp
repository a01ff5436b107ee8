// Generic key commands: DEL UNLINK EXISTS TOUCH TYPE EXPIRE PEXPIRE EXPIREAT PEXPIREAT
// EXPIRETIME PEXPIRETIME TTL PTTL PERSIST KEYS SCAN RENAME RENAMENX RANDOMKEY COPY DBSIZE
// FLUSHDB FLUSHALL. Handlers here act on one shard; the server splits commands whose keys live
// on several shards and merges the per-shard replies (see frontends/resp/server.cpp).
#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

void cmd_del(CmdCtx& c, Args a, Reply& r) {
  int64_t n = 0;
  for (size_t i = 1; i < a.size(); ++i) {
    auto res = c.engine->erase(c.partition(a[i]), a[i], c.now_ms);
    if (!res) return reply_status_error(r, res.error());
    n += *res ? 1 : 0;
  }
  r.integer(n);
}

void cmd_exists(CmdCtx& c, Args a, Reply& r) {
  int64_t n = 0;
  for (size_t i = 1; i < a.size(); ++i) n += lookup(c, a[i]) ? 1 : 0;
  r.integer(n);
}

void cmd_type(CmdCtx& c, Args a, Reply& r) {
  auto v = lookup(c, a[1]);
  if (!v) return r.simple("none");
  r.simple(storage::type_name(v->type));
}

// OBJECT ENCODING key: how keel holds the value (docs/data-types.md): strings as raw bytes,
// hashes and sets in hash tables, lists in a ring buffer, sorted sets in a hash table plus an
// order-statistic red-black tree.
void cmd_object(CmdCtx& c, Args a, Reply& r) {
  if (!iequals(a[1], "encoding"))
    return r.error("ERR unknown subcommand '" + std::string(a[1].substr(0, 128)) +
                   "'. Try OBJECT HELP.");
  if (a.size() != 3) return r.error("ERR wrong number of arguments for 'object|encoding' command");
  auto v = lookup(c, a[2]);
  if (!v) return r.null();
  switch (v->type) {
    case ValueType::kString: return r.bulk("raw");
    case ValueType::kHash:
    case ValueType::kSet: return r.bulk("hashtable");
    case ValueType::kList: return r.bulk("ringbuffer");
    case ValueType::kZSet: return r.bulk("rbtree");
    case ValueType::kStream: return r.bulk("stream");
  }
}

// EXPIRE key seconds [NX | XX | GT | LT] and its PEXPIRE/EXPIREAT/PEXPIREAT siblings.
void expire_common(CmdCtx& c, Args a, Reply& r, ExpireUnit unit, bool absolute) {
  int64_t v;
  if (!parse_int64(a[2], v)) return r.not_integer();
  bool nx = false, xx = false, gt = false, lt = false;
  for (size_t i = 3; i < a.size(); ++i) {
    if (iequals(a[i], "nx")) nx = true;
    else if (iequals(a[i], "xx")) xx = true;
    else if (iequals(a[i], "gt")) gt = true;
    else if (iequals(a[i], "lt")) lt = true;
    else return r.error("ERR Unsupported option " + std::string(a[i]));
  }
  if (nx && (xx || gt || lt))
    return r.error("ERR NX and XX, GT or LT options at the same time are not compatible");
  if (gt && lt) return r.error("ERR GT and LT options at the same time are not compatible");
  // Redis accepts zero and negative times (the key is deleted) but refuses overflow.
  int64_t when = v;
  if (unit == ExpireUnit::kSeconds) {
    if (when > LLONG_MAX / 1000 || when < LLONG_MIN / 1000)
      return r.error("ERR invalid expire time in '" + to_lower(a[0]) + "' command");
    when *= 1000;
  }
  if (!absolute) {
    if ((when > 0 && c.now_ms > LLONG_MAX - when) || (when < 0 && c.now_ms < LLONG_MIN - when))
      return r.error("ERR invalid expire time in '" + to_lower(a[0]) + "' command");
    when += c.now_ms;
  }
  bool applied = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value*) {
    if (!cur) return UpdateAction::kKeep;
    int64_t cur_ttl = cur->expire_at_ms;  // 0 = persistent, i.e. an infinite TTL
    if (nx && cur_ttl != 0) return UpdateAction::kKeep;
    if (xx && cur_ttl == 0) return UpdateAction::kKeep;
    if (gt && (cur_ttl == 0 || when <= cur_ttl)) return UpdateAction::kKeep;
    if (lt && cur_ttl != 0 && when >= cur_ttl) return UpdateAction::kKeep;
    applied = true;
    if (when <= c.now_ms) return UpdateAction::kErase;
    cur->expire_at_ms = when;
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  r.integer(applied ? 1 : 0);
}

void cmd_expire(CmdCtx& c, Args a, Reply& r) { expire_common(c, a, r, ExpireUnit::kSeconds, false); }
void cmd_pexpire(CmdCtx& c, Args a, Reply& r) { expire_common(c, a, r, ExpireUnit::kMillis, false); }
void cmd_expireat(CmdCtx& c, Args a, Reply& r) { expire_common(c, a, r, ExpireUnit::kSeconds, true); }
void cmd_pexpireat(CmdCtx& c, Args a, Reply& r) { expire_common(c, a, r, ExpireUnit::kMillis, true); }

void ttl_common(CmdCtx& c, Args a, Reply& r, bool ms, bool absolute) {
  auto v = lookup(c, a[1]);
  if (!v) return r.integer(-2);
  if (v->expire_at_ms == 0) return r.integer(-1);
  if (absolute) return r.integer(ms ? v->expire_at_ms : v->expire_at_ms / 1000);
  int64_t left = v->expire_at_ms - c.now_ms;
  if (left < 0) left = 0;
  r.integer(ms ? left : (left + 500) / 1000);
}
void cmd_ttl(CmdCtx& c, Args a, Reply& r) { ttl_common(c, a, r, false, false); }
void cmd_pttl(CmdCtx& c, Args a, Reply& r) { ttl_common(c, a, r, true, false); }
void cmd_expiretime(CmdCtx& c, Args a, Reply& r) { ttl_common(c, a, r, false, true); }
void cmd_pexpiretime(CmdCtx& c, Args a, Reply& r) { ttl_common(c, a, r, true, true); }

void cmd_persist(CmdCtx& c, Args a, Reply& r) {
  bool done = false;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value*) {
    if (!cur || cur->expire_at_ms == 0) return UpdateAction::kKeep;
    cur->expire_at_ms = 0;
    done = true;
    return UpdateAction::kWrite;
  });
  if (!st) return reply_status_error(r, st.error());
  r.integer(done ? 1 : 0);
}

// KEYS on one shard: a full scan, like Redis (which blocks the server meanwhile).
void cmd_keys(CmdCtx& c, Args a, Reply& r) {
  std::vector<std::string> keys;
  uint64_t cursor = 0;
  do {
    cursor = c.engine->scan(cursor, 1024, c.now_ms, [&](std::string_view k, const ValueRef&) {
      if (glob_match(a[1], k)) keys.emplace_back(k);
    });
  } while (cursor != 0);
  r.array(keys.size());
  for (auto& k : keys) r.bulk(k);
}

void cmd_dbsize(CmdCtx& c, Args, Reply& r) { r.integer(static_cast<int64_t>(c.engine->size())); }

void cmd_flushall(CmdCtx& c, Args a, Reply& r) {
  if (a.size() > 2 || (a.size() == 2 && !iequals(a[1], "async") && !iequals(a[1], "sync")))
    return r.syntax_error();
  auto st = c.engine->clear();
  if (!st) return reply_status_error(r, st.error());
  r.ok();
}

// RENAME/RENAMENX/COPY when both keys live on this shard; the server handles the other case.
void rename_common(CmdCtx& c, Args a, Reply& r, bool nx) {
  auto src = lookup(c, a[1]);
  if (!src) return r.error("ERR no such key");
  if (a[1] == a[2]) return nx ? r.integer(0) : r.ok();
  if (nx && lookup(c, a[2])) return r.integer(0);
  std::optional<Value> moved;
  auto st = c.engine->update(c.partition(a[1]), a[1], c.now_ms, [&](Value* cur, Value*) {
    if (!cur) return UpdateAction::kKeep;
    moved = std::move(*cur);
    return UpdateAction::kErase;
  });
  if (!st) return reply_status_error(r, st.error());
  auto put = c.engine->put(c.partition(a[2]), a[2], std::move(*moved), c.now_ms);
  if (!put) return reply_status_error(r, put.error());
  nx ? r.integer(1) : r.ok();
}
void cmd_rename(CmdCtx& c, Args a, Reply& r) { rename_common(c, a, r, false); }
void cmd_renamenx(CmdCtx& c, Args a, Reply& r) { rename_common(c, a, r, true); }

void cmd_copy(CmdCtx& c, Args a, Reply& r) {
  bool replace = false;
  for (size_t i = 3; i < a.size(); ++i) {
    if (iequals(a[i], "replace")) {
      replace = true;
    } else if (iequals(a[i], "db") && i + 1 < a.size()) {
      int64_t db;
      if (!parse_int64(a[i + 1], db)) return r.not_integer();
      if (db != 0) return r.error("ERR DB index is out of range");
      ++i;
    } else {
      return r.syntax_error();
    }
  }
  auto src = lookup(c, a[1]);
  if (!src) return r.integer(0);
  if (!replace && lookup(c, a[2])) return r.integer(0);
  Value v = storage::copy_value(*src);
  auto st = c.engine->put(c.partition(a[2]), a[2], std::move(v), c.now_ms);
  if (!st) return reply_status_error(r, st.error());
  r.integer(1);
}

}  // namespace

void register_key_commands(std::vector<CommandSpec>& t) {
  t.push_back({"object", -3, kReadonly, 2, 2, 1, Routing::kKey, cmd_object, "generic", "A container for object introspection commands (keel: OBJECT ENCODING).", "2.2.3"});
  t.push_back({"del", -2, kWrite, 1, -1, 1, Routing::kKey, cmd_del, "generic", "Deletes one or more keys."});
  t.push_back({"unlink", -2, kWrite | kFast, 1, -1, 1, Routing::kKey, cmd_del, "generic", "Asynchronously deletes one or more keys."});
  t.push_back({"exists", -2, kReadonly | kFast, 1, -1, 1, Routing::kKey, cmd_exists, "generic", "Determines whether one or more keys exist."});
  t.push_back({"touch", -2, kReadonly | kFast, 1, -1, 1, Routing::kKey, cmd_exists, "generic", "Returns the number of existing keys out of those specified after updating the time they were last accessed."});
  t.push_back({"type", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_type, "generic", "Determines the type of value stored at a key."});
  t.push_back({"expire", -3, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_expire, "generic", "Sets the expiration time of a key in seconds."});
  t.push_back({"pexpire", -3, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_pexpire, "generic", "Sets the expiration time of a key in milliseconds."});
  t.push_back({"expireat", -3, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_expireat, "generic", "Sets the expiration time of a key to a Unix timestamp."});
  t.push_back({"pexpireat", -3, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_pexpireat, "generic", "Sets the expiration time of a key to a Unix milliseconds timestamp."});
  t.push_back({"expiretime", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_expiretime, "generic", "Returns the expiration time of a key as a Unix timestamp.", "7.0.0"});
  t.push_back({"pexpiretime", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_pexpiretime, "generic", "Returns the expiration time of a key as a Unix milliseconds timestamp.", "7.0.0"});
  t.push_back({"ttl", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_ttl, "generic", "Returns the expiration time in seconds of a key."});
  t.push_back({"pttl", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_pttl, "generic", "Returns the expiration time in milliseconds of a key."});
  t.push_back({"persist", 2, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_persist, "generic", "Removes the expiration time of a key."});
  t.push_back({"rename", 3, kWrite, 1, 2, 1, Routing::kKey, cmd_rename, "generic", "Renames a key and overwrites the destination."});
  t.push_back({"renamenx", 3, kWrite | kFast, 1, 2, 1, Routing::kKey, cmd_renamenx, "generic", "Renames a key only when the target key name doesn't exist."});
  t.push_back({"copy", -3, kWrite | kDenyOom, 1, 2, 1, Routing::kKey, cmd_copy, "generic", "Copies the value of a key to a new key.", "6.2.0"});
  t.push_back({"keys", 2, kReadonly, 0, 0, 0, Routing::kAll, cmd_keys, "generic", "Returns all key names that match a pattern."});
  t.push_back({"scan", -2, kReadonly, 0, 0, 0, Routing::kAll, nullptr, "generic", "Iterates over the key names in the database."});
  t.push_back({"randomkey", 1, kReadonly | kRandom, 0, 0, 0, Routing::kAll, nullptr, "generic", "Returns a random key name from the database."});
  t.push_back({"dbsize", 1, kReadonly | kFast, 0, 0, 0, Routing::kAll, cmd_dbsize, "server", "Returns the number of keys in the database."});
  t.push_back({"flushdb", -1, kWrite, 0, 0, 0, Routing::kAll, cmd_flushall, "server", "Remove all keys from the current database."});
  t.push_back({"flushall", -1, kWrite, 0, 0, 0, Routing::kAll, cmd_flushall, "server", "Removes all keys from all databases."});
}

}  // namespace keel::resp

// Stream commands: XADD XRANGE XREVRANGE XLEN XREAD XDEL XTRIM XSETID XGROUP XREADGROUP XACK
// XPENDING XCLAIM XAUTOCLAIM XINFO.
//
// A stream, with its consumer groups, is one engine value (storage::StreamValue); every change
// goes through Engine::update_by_element, so the effect recorder replicates it and the
// persistent engine journals it; commands that describe their change (storage/delta.h: XADD,
// XDEL, XTRIM) are journaled and replicated as that change, the others as the whole stream. Times (auto ids, delivery times, idle) come from
// CmdCtx::now_ms. Replies and errors follow Redis 7.2's t_stream.c, including the order in
// which arguments and the key are checked.
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <fmt/format.h>

#include "frontends/resp/family_util.h"

namespace keel::resp {
namespace {

using storage::StreamEntry;
using storage::StreamGroup;
using storage::StreamId;
using storage::StreamValue;

constexpr std::string_view kInvalidId = "ERR Invalid stream ID specified as stream command argument";
constexpr uint64_t kNodeEntries = StreamValue::kNodeMaxEntries;

// Redis's string2ull: string2ll rules first, then strtoull's.
bool parse_u64(std::string_view s, uint64_t& out) {
  int64_t ll;
  if (parse_int64(s, ll)) {
    if (ll < 0) return false;
    out = static_cast<uint64_t>(ll);
    return true;
  }
  if (s.empty()) return false;
  char buf[128];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  if (std::strlen(buf) != s.size()) return false;  // an embedded NUL
  errno = 0;
  char* end = nullptr;
  out = std::strtoull(buf, &end, 10);
  return errno != EINVAL && errno != ERANGE && *end == '\0';
}

// Redis's streamGenericParseIDOrReply. `seq_given` non-null accepts "<ms>-*".
bool parse_id(std::string_view s, StreamId& id, uint64_t missing_seq, bool strict,
              bool* seq_given = nullptr) {
  if (s.size() > 127) return false;
  if (strict && (s == "-" || s == "+")) return false;
  if (seq_given) *seq_given = true;
  if (s == "-") {
    id = {};
    return true;
  }
  if (s == "+") {
    id = StreamId::max();
    return true;
  }
  auto dash = s.find('-');
  uint64_t ms, seq;
  if (!parse_u64(s.substr(0, dash), ms)) return false;
  if (dash != std::string_view::npos) {
    auto rest = s.substr(dash + 1);
    if (seq_given && rest == "*") {
      seq = 0;
      *seq_given = false;
    } else if (!parse_u64(rest, seq)) {
      return false;
    }
  } else {
    seq = missing_seq;
  }
  id = {ms, seq};
  return true;
}

bool parse_id_or_reply(std::string_view s, StreamId& id, uint64_t missing_seq, bool strict,
                       Reply& r, bool* seq_given = nullptr) {
  if (parse_id(s, id, missing_seq, strict, seq_given)) return true;
  r.error(kInvalidId);
  return false;
}

// An interval bound: "(" makes it exclusive.
bool parse_interval(std::string_view s, StreamId& id, bool& exclusive, uint64_t missing_seq,
                    Reply& r) {
  exclusive = s.size() > 1 && s[0] == '(';
  if (exclusive) return parse_id_or_reply(s.substr(1), id, missing_seq, true, r);
  return parse_id_or_reply(s, id, missing_seq, false, r);
}

bool parse_ll(std::string_view s, int64_t& out, Reply& r,
              std::string_view msg = "ERR value is not an integer or out of range") {
  if (parse_int64(s, out)) return true;
  r.error(msg);
  return false;
}

std::string nogroup(std::string_view key, std::string_view group) {
  return fmt::format("NOGROUP No such key '{}' or consumer group '{}'", key, group);
}

void reply_id(Reply& r, StreamId id) { r.bulk(id.str()); }

void reply_entry(Reply& r, const StreamEntry& e) {
  r.array(2);
  reply_id(r, e.id);
  r.array(e.fields.size() * 2);
  for (auto& [f, v] : e.fields) {
    r.bulk(f);
    r.bulk(v);
  }
}

// Looks up a stream. Replies WRONGTYPE and returns false if the key holds something else.
bool stream_lookup(CmdCtx& c, std::string_view key, const StreamValue*& out, Reply& r) {
  out = nullptr;
  auto v = lookup(c, key);
  if (v && v->type != ValueType::kStream) {
    r.wrong_type();
    return false;
  }
  if (v) out = v->stream;
  return true;
}

// Runs `fn(stream, reply)` on the stream at `key` (created empty when `create`; else `fn` is
// not called for a missing key and `*found` is false). `fn` writes its reply into the Reply it
// gets (copied out once the engine accepted the change) and returns whether it changed the
// stream. Returns false after replying WRONGTYPE or an engine error.
template <class F>
bool stream_update(CmdCtx& c, std::string_view key, Reply& r, bool create, F&& fn,
                   bool* found = nullptr) {
  bool wrong = false;
  if (found) *found = false;
  std::string out;
  storage::Delta delta;
  auto st = c.engine->update_by_element(c.partition(key), key, c.now_ms, [&](Value* cur, Value* scratch) {
    out.clear();
    delta.clear();
    if (cur && cur->type != ValueType::kStream) {
      wrong = true;
      return UpdateAction::kKeep;
    }
    if (!cur && !create) return UpdateAction::kKeep;
    if (found) *found = true;
    Value* t = cur ? cur : scratch;
    t->type = ValueType::kStream;
    Reply sub(out, r.protocol());
    bool changed;
    if constexpr (std::is_invocable_v<F&, StreamValue&, Reply&, storage::Delta&>) {
      changed = fn(t->stream, sub, delta);
    } else {
      delta.whole();
      changed = fn(t->stream, sub);
    }
    return changed ? UpdateAction::kWrite : UpdateAction::kKeep;
  }, delta);
  if (wrong) {
    r.wrong_type();
    return false;
  }
  if (!st) {
    reply_status_error(r, st.error());
    return false;
  }
  r.buffer() += out;
  return true;
}

// ---- XADD / XTRIM ----------------------------------------------------------------------

enum class Trim { kNone, kMaxLen, kMinId };

struct AddTrimArgs {
  Trim strategy = Trim::kNone;
  bool approx = false;
  int64_t limit = 0;
  int64_t maxlen = 0;
  StreamId minid;
  bool nomkstream = false;
  bool id_given = false;
  bool seq_given = true;
  StreamId id;
};

// Redis's streamParseAddOrTrimArgsOrReply: returns the index of the id (XADD), or 0 after
// replying an error.
size_t parse_add_trim(Args a, AddTrimArgs& o, bool xadd, Reply& r) {
  size_t i = 2;
  bool limit_given = false;
  for (; i < a.size(); ++i) {
    const size_t more = a.size() - 1 - i;
    std::string_view opt = a[i];
    if (xadd && opt == "*") break;
    if ((iequals(opt, "maxlen") || iequals(opt, "minid")) && more) {
      const bool maxlen = iequals(opt, "maxlen");
      if (o.strategy != Trim::kNone) {
        r.error("ERR syntax error, MAXLEN and MINID options at the same time are not compatible");
        return 0;
      }
      o.approx = false;
      std::string_view next = a[i + 1];
      if (more >= 2 && next == "~") {
        o.approx = true;
        ++i;
      } else if (more >= 2 && next == "=") {
        ++i;
      }
      if (maxlen) {
        if (!parse_ll(a[i + 1], o.maxlen, r)) return 0;
        if (o.maxlen < 0) {
          r.error("ERR The MAXLEN argument must be >= 0.");
          return 0;
        }
        o.strategy = Trim::kMaxLen;
      } else {
        if (!parse_id_or_reply(a[i + 1], o.minid, 0, true, r)) return 0;
        o.strategy = Trim::kMinId;
      }
      ++i;
    } else if (iequals(opt, "limit") && more) {
      if (!parse_ll(a[i + 1], o.limit, r)) return 0;
      if (o.limit < 0) {
        r.error("ERR The LIMIT argument must be >= 0.");
        return 0;
      }
      limit_given = true;
      ++i;
    } else if (xadd && iequals(opt, "nomkstream")) {
      o.nomkstream = true;
    } else if (xadd) {
      if (!parse_id_or_reply(opt, o.id, 0, true, r, &o.seq_given)) return 0;
      o.id_given = true;
      break;
    } else {
      r.syntax_error();
      return 0;
    }
  }
  if (o.limit && o.strategy == Trim::kNone) {
    r.error("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy");
    return 0;
  }
  if (!xadd && o.strategy == Trim::kNone) {
    r.error("ERR syntax error, XTRIM must be called with a trimming strategy");
    return 0;
  }
  if (limit_given) {
    if (!o.approx) {
      r.error("ERR syntax error, LIMIT cannot be used without the special ~ option");
      return 0;
    }
  } else {
    o.limit = o.approx ? static_cast<int64_t>(100 * kNodeEntries) : 0;
  }
  return i;
}

uint64_t apply_trim(StreamValue& s, const AddTrimArgs& o) {
  const uint64_t limit = static_cast<uint64_t>(o.limit);
  if (o.strategy == Trim::kMaxLen)
    return s.trim_maxlen(static_cast<uint64_t>(o.maxlen), o.approx, limit);
  if (o.strategy == Trim::kMinId) return s.trim_minid(o.minid, o.approx, limit);
  return 0;
}

void cmd_xadd(CmdCtx& c, Args a, Reply& r) {
  AddTrimArgs o;
  const size_t idpos = parse_add_trim(a, o, true, r);
  if (idpos == 0) return;
  const size_t field_pos = idpos + 1;
  if (field_pos > a.size() || a.size() - field_pos < 2 || (a.size() - field_pos) % 2 == 1)
    return r.error(wrong_args(a[0]));
  if (o.id_given && o.seq_given && o.id.zero())
    return r.error("ERR The ID specified in XADD must be greater than 0-0");
  bool found = false;
  const size_t before = r.buffer().size();
  stream_update(
      c, a[1], r, !o.nomkstream,
      [&](StreamValue& s, Reply& out, storage::Delta& d) {
        const StreamId last = s.last_id();
        if (last == StreamId::max()) {
          out.error("ERR The stream has exhausted the last possible ID, unable to add more items");
          return false;
        }
        StreamId id;
        if (o.id_given) {
          if (o.seq_given) {
            id = o.id;
          } else if (last.ms == o.id.ms) {
            if (last.seq == UINT64_MAX) {
              out.error("ERR The ID specified in XADD is equal or smaller than the target stream top item");
              return false;
            }
            id = {last.ms, last.seq + 1};
          } else {
            id = o.id;
          }
        } else {
          const uint64_t now = static_cast<uint64_t>(c.now_ms < 0 ? 0 : c.now_ms);
          if (now > last.ms) {
            id = {now, 0};
          } else {
            id = last;
            id.incr();
          }
        }
        if (id <= last) {
          out.error("ERR The ID specified in XADD is equal or smaller than the target stream top item");
          return false;
        }
        const Args fields(a.data() + field_pos, a.size() - field_pos);
        s.append(id, fields);
        d.stream_append(id, fields);
        if (apply_trim(s, o) > 0) d.stream_trimmed(s);
        reply_id(out, id);
        return true;
      },
      &found);
  if (!found && o.nomkstream && r.buffer().size() == before) r.null();
}

void cmd_xtrim(CmdCtx& c, Args a, Reply& r) {
  AddTrimArgs o;
  if (parse_add_trim(a, o, false, r) == 0) return;
  bool found = false;
  const size_t before = r.buffer().size();
  if (!stream_update(
          c, a[1], r, false,
          [&](StreamValue& s, Reply& out, storage::Delta& d) {
            const uint64_t n = apply_trim(s, o);
            if (n > 0) d.stream_trimmed(s);
            out.integer(static_cast<int64_t>(n));
            return n > 0;
          },
          &found))
    return;
  if (!found && r.buffer().size() == before) r.integer(0);
}

// ---- XRANGE / XREVRANGE / XLEN ------------------------------------------------------------

void range_common(CmdCtx& c, Args a, Reply& r, bool rev) {
  StreamId start, end;
  bool startex, endex;
  if (!parse_interval(rev ? a[3] : a[2], start, startex, 0, r)) return;
  if (startex && !start.incr()) return r.error("ERR invalid start ID for the interval");
  if (!parse_interval(rev ? a[2] : a[3], end, endex, UINT64_MAX, r)) return;
  if (endex && !end.decr()) return r.error("ERR invalid end ID for the interval");
  int64_t count = -1;
  for (size_t j = 4; j < a.size(); ++j) {
    if (iequals(a[j], "count") && j + 1 < a.size()) {
      if (!parse_ll(a[j + 1], count, r)) return;
      if (count < 0) count = 0;
      ++j;
    } else {
      return r.syntax_error();
    }
  }
  const StreamValue* s;
  if (!stream_lookup(c, a[1], s, r)) return;
  if (!s) return r.array(0);
  if (count == 0) return r.null_array();
  std::string body;
  Reply sub(body, r.protocol());
  size_t n = 0;
  s->range(start, end, rev, [&](const StreamEntry& e) {
    reply_entry(sub, e);
    ++n;
    return count < 0 || n < static_cast<size_t>(count);
  });
  r.array(n);
  r.buffer() += body;
}
void cmd_xrange(CmdCtx& c, Args a, Reply& r) { range_common(c, a, r, false); }
void cmd_xrevrange(CmdCtx& c, Args a, Reply& r) { range_common(c, a, r, true); }

void cmd_xlen(CmdCtx& c, Args a, Reply& r) {
  const StreamValue* s;
  if (!stream_lookup(c, a[1], s, r)) return;
  r.integer(s ? static_cast<int64_t>(s->size()) : 0);
}

// ---- XDEL / XSETID ------------------------------------------------------------------------

void cmd_xdel(CmdCtx& c, Args a, Reply& r) {
  const StreamValue* s;
  if (!stream_lookup(c, a[1], s, r)) return;
  if (!s) return r.integer(0);
  std::vector<StreamId> ids(a.size() - 2);
  for (size_t j = 2; j < a.size(); ++j)
    if (!parse_id_or_reply(a[j], ids[j - 2], 0, true, r)) return;
  stream_update(c, a[1], r, false, [&](StreamValue& st, Reply& out, storage::Delta& d) {
    int64_t deleted = 0;
    for (auto id : ids)
      if (st.erase(id)) {
        ++deleted;
        d.stream_delete(id);
      }
    out.integer(deleted);
    return deleted > 0;
  });
}

void cmd_xsetid(CmdCtx& c, Args a, Reply& r) {
  StreamId id, maxdel;
  int64_t entries_added = -1;
  if (!parse_id_or_reply(a[2], id, 0, true, r)) return;
  for (size_t i = 3; i < a.size();) {
    const size_t more = a.size() - 1 - i;
    if (iequals(a[i], "entriesadded") && more) {
      if (!parse_ll(a[i + 1], entries_added, r)) return;
      if (entries_added < 0) return r.error("ERR entries_added must be positive");
      i += 2;
    } else if (iequals(a[i], "maxdeletedid") && more) {
      if (!parse_id_or_reply(a[i + 1], maxdel, 0, true, r)) return;
      if (id < maxdel)
        return r.error("ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id");
      i += 2;
    } else {
      return r.syntax_error();
    }
  }
  bool found = false;
  const size_t before = r.buffer().size();
  if (!stream_update(
          c, a[1], r, false,
          [&](StreamValue& s, Reply& out) {
            if (id < s.max_deleted_id()) {
              out.error("ERR The ID specified in XSETID is smaller than current max_deleted_entry_id");
              return false;
            }
            if (s.size() > 0) {
              if (id < *s.last_entry_id()) {
                out.error("ERR The ID specified in XSETID is smaller than the target stream top item");
                return false;
              }
              if (entries_added != -1 && s.size() > static_cast<uint64_t>(entries_added)) {
                out.error("ERR The entries_added specified in XSETID is smaller than the target stream length");
                return false;
              }
            }
            s.set_last_id(id);
            if (entries_added != -1) s.set_entries_added(static_cast<uint64_t>(entries_added));
            if (!maxdel.zero()) s.set_max_deleted_id(maxdel);
            out.ok();
            return true;
          },
          &found))
    return;
  if (!found && r.buffer().size() == before) r.error("ERR no such key");
}

// ---- consumer groups ----------------------------------------------------------------------

storage::StreamConsumer& consumer_of(StreamGroup& g, std::string_view name, int64_t now,
                                     bool* created = nullptr) {
  auto it = g.consumers.find(name);
  if (created) *created = it == g.consumers.end();
  if (it == g.consumers.end()) {
    it = g.consumers.emplace(std::string(name), storage::StreamConsumer{}).first;
    it->second.seen_time_ms = now;
    it->second.active_time_ms = -1;
  }
  return it->second;
}

// Moves pending entry `id` (in g.pel) to consumer `to`.
void reassign(StreamGroup& g, StreamId id, storage::StreamNack& nack, std::string_view to) {
  if (nack.consumer == to) return;
  auto old = g.consumers.find(nack.consumer);
  if (old != g.consumers.end()) old->second.pending.erase(id);
  nack.consumer.assign(to);
  g.consumers.find(to)->second.pending.insert(id);
}

void remove_pending(StreamGroup& g, std::map<StreamId, storage::StreamNack>::iterator it) {
  auto cons = g.consumers.find(it->second.consumer);
  if (cons != g.consumers.end()) cons->second.pending.erase(it->first);
  g.pel.erase(it);
}

void subcommand_syntax(Args a, Reply& r) {
  std::string cmd(a[0]);
  for (auto& ch : cmd) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  r.error(fmt::format("ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
                      a[1].substr(0, 128), cmd));
}

// Redis's addReplyHelp: a header, the lines, and HELP's own.
void reply_help(Args a, std::initializer_list<std::string_view> lines, Reply& r) {
  std::string cmd(a[0]);
  for (auto& ch : cmd) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  r.array(lines.size() + 3);
  r.simple(cmd + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
  for (auto l : lines) r.simple(l);
  r.simple("HELP");
  r.simple("    Print this help.");
}

void cmd_xgroup(CmdCtx& c, Args a, Reply& r) {
  std::string_view opt = a[1];
  if (iequals(opt, "help")) {
    if (a.size() != 2) return r.error("ERR wrong number of arguments for 'xgroup|help' command");
    return reply_help(a,
                      {"CREATE <key> <groupname> <id|$> [option]",
                       "    Create a new consumer group. Options are:", "    * MKSTREAM",
                       "      Create the empty stream if it does not exist.",
                       "    * ENTRIESREAD entries_read",
                       "      Set the group's entries_read counter (internal use).",
                       "CREATECONSUMER <key> <groupname> <consumer>",
                       "    Create a new consumer in the specified group.",
                       "DELCONSUMER <key> <groupname> <consumer>",
                       "    Remove the specified consumer.", "DESTROY <key> <groupname>",
                       "    Remove the specified group.",
                       "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
                       "    Set the current group ID and entries_read counter."},
                      r);
  }
  const bool create = iequals(opt, "create"), setid = iequals(opt, "setid");
  bool mkstream = false;
  int64_t entries_read = StreamGroup::kInvalidEntriesRead;
  if (!create && !setid && !iequals(opt, "destroy") && !iequals(opt, "createconsumer") &&
      !iequals(opt, "delconsumer"))
    return r.error(fmt::format("ERR unknown subcommand '{}'. Try XGROUP HELP.", opt.substr(0, 128)));
  // Per-subcommand arity, as Redis 7's command table has it.
  const size_t n = a.size();
  if ((create && n < 5) || (setid && n < 5) || (iequals(opt, "destroy") && n != 4) ||
      ((iequals(opt, "createconsumer") || iequals(opt, "delconsumer")) && n != 5))
    return r.error(fmt::format("ERR wrong number of arguments for 'xgroup|{}' command", to_lower(opt)));
  for (size_t i = 5; i < n;) {
    if (create && iequals(a[i], "mkstream")) {
      mkstream = true;
      ++i;
    } else if ((create || setid) && iequals(a[i], "entriesread") && i + 1 < n) {
      if (!parse_ll(a[i + 1], entries_read, r)) return;
      if (entries_read < 0 && entries_read != StreamGroup::kInvalidEntriesRead)
        return r.error("ERR value for ENTRIESREAD must be positive or -1");
      i += 2;
    } else {
      return subcommand_syntax(a, r);
    }
  }
  std::string_view key = a[2], gname = a[3];
  const StreamValue* s;
  if (!stream_lookup(c, key, s, r)) return;
  if (!mkstream) {
    if (!s)
      return r.error(
          "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want "
          "to use the MKSTREAM option to create an empty stream automatically.");
    if (!s->group(gname) && (setid || iequals(opt, "createconsumer") || iequals(opt, "delconsumer")))
      return r.error(fmt::format("NOGROUP No such consumer group '{}' for key name '{}'", gname, key));
  }
  if (create) {
    if (n > 8) return subcommand_syntax(a, r);
    StreamId id;
    const bool dollar = a[4] == "$";
    if (!dollar && !parse_id_or_reply(a[4], id, 0, true, r)) return;
    stream_update(c, key, r, true, [&](StreamValue& st, Reply& out) {
      if (dollar) id = st.last_id();
      if (st.group(gname)) {
        out.error("BUSYGROUP Consumer Group name already exists");
        return false;
      }
      StreamGroup g;
      g.last_id = id;
      g.entries_read = entries_read;
      st.groups().emplace(std::string(gname), std::move(g));
      out.ok();
      return true;
    });
  } else if (setid) {
    if (n != 5 && n != 7) return subcommand_syntax(a, r);
    StreamId id;
    const bool dollar = a[4] == "$";
    if (!dollar && !parse_id_or_reply(a[4], id, 0, false, r)) return;
    stream_update(c, key, r, false, [&](StreamValue& st, Reply& out, storage::Delta& d) {
      StreamGroup* g = st.group(gname);
      g->last_id = dollar ? st.last_id() : id;
      g->entries_read = entries_read;
      d.group_touched(gname, *g, {}, {});
      out.ok();
      return true;
    });
  } else if (iequals(opt, "destroy")) {
    stream_update(c, key, r, false, [&](StreamValue& st, Reply& out) {
      const bool had = st.groups().erase(std::string(gname)) > 0;
      out.integer(had ? 1 : 0);
      return had;
    });
  } else if (iequals(opt, "createconsumer")) {
    stream_update(c, key, r, false, [&](StreamValue& st, Reply& out, storage::Delta& d) {
      bool created = false;
      consumer_of(*st.group(gname), a[4], c.now_ms, &created);
      const std::string_view consumers[] = {a[4]};
      d.group_touched(gname, *st.group(gname), {}, consumers);
      out.integer(created ? 1 : 0);
      return created;
    });
  } else {
    stream_update(c, key, r, false, [&](StreamValue& st, Reply& out, storage::Delta& d) {
      StreamGroup* g = st.group(gname);
      auto it = g->consumers.find(a[4]);
      if (it == g->consumers.end()) {
        out.integer(0);
        return false;
      }
      d.consumer_del(gname, a[4]);
      const int64_t pending = static_cast<int64_t>(it->second.pending.size());
      for (auto id : it->second.pending) g->pel.erase(id);
      g->consumers.erase(it);
      out.integer(pending);
      return true;
    });
  }
}

// ---- XREAD / XREADGROUP -------------------------------------------------------------------

struct ReadArgs {
  bool group_mode = false;  // XREADGROUP
  int64_t timeout_ms = -1;  // -1: no BLOCK
  int64_t count = 0;
  bool noack = false;
  std::string_view group, consumer;
  size_t streams_at = 0;  // index of the first key
  size_t nstreams = 0;
};

// Parses XREAD / XREADGROUP options; false after replying an error.
bool parse_read(CmdCtx& c, Args a, ReadArgs& o, Reply& r) {
  o.group_mode = a[0].size() == 10;
  for (size_t i = 1; i < a.size(); ++i) {
    const size_t more = a.size() - 1 - i;
    std::string_view opt = a[i];
    if (iequals(opt, "block") && more) {
      ++i;
      int64_t t;
      if (!parse_ll(a[i], t, r, "ERR timeout is not an integer or out of range")) return false;
      if (t < 0) {
        r.error("ERR timeout is negative");
        return false;
      }
      if (t > 0 && t > LLONG_MAX - c.now_ms) {
        r.error("ERR timeout is out of range");
        return false;
      }
      o.timeout_ms = t;
    } else if (iequals(opt, "count") && more) {
      ++i;
      if (!parse_ll(a[i], o.count, r)) return false;
      if (o.count < 0) o.count = 0;
    } else if (iequals(opt, "streams") && more) {
      o.streams_at = i + 1;
      const size_t n = a.size() - o.streams_at;
      if (n % 2 != 0) {
        r.error(fmt::format("ERR Unbalanced '{}' list of streams: for each stream key an ID or "
                            "'{}' must be specified.",
                            o.group_mode ? "xreadgroup" : "xread", o.group_mode ? '>' : '$'));
        return false;
      }
      o.nstreams = n / 2;
      break;
    } else if (iequals(opt, "group") && more >= 2) {
      if (!o.group_mode) {
        r.error("ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.");
        return false;
      }
      o.group = a[i + 1];
      o.consumer = a[i + 2];
      i += 2;
    } else if (iequals(opt, "noack")) {
      if (!o.group_mode) {
        r.error("ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.");
        return false;
      }
      o.noack = true;
    } else {
      r.syntax_error();
      return false;
    }
  }
  if (o.streams_at == 0) {
    r.syntax_error();
    return false;
  }
  if (o.group_mode && o.group.data() == nullptr) {
    r.error("ERR Missing GROUP option for XREADGROUP");
    return false;
  }
  return true;
}

// Serves new entries (> from) of `s` to a group's consumer: updates last id, entries-read and
// the PEL as Redis's streamReplyWithRange does. Returns the entries written to `out`.
size_t deliver_new(StreamValue& s, StreamGroup& g, std::string_view consumer, StreamId from,
                   int64_t count, bool noack, int64_t now, Reply& out, std::vector<StreamId>& touched) {
  std::string body;
  Reply sub(body, out.protocol());
  std::vector<StreamId> delivered;
  size_t n = 0;
  s.range(from, StreamId::max(), false, [&](const StreamEntry& e) {
    reply_entry(sub, e);
    delivered.push_back(e.id);
    ++n;
    return count == 0 || n < static_cast<size_t>(count);
  });
  for (auto id : delivered) {
    if (id > g.last_id) {
      if (g.entries_read != StreamGroup::kInvalidEntriesRead &&
          !s.range_has_tombstones(id, StreamId::max()))
        ++g.entries_read;
      else if (s.entries_added())
        g.entries_read = s.estimate_distance(id);
      g.last_id = id;
    }
    if (!noack) {
      touched.push_back(id);
      auto [it, inserted] = g.pel.try_emplace(id);
      if (inserted) {
        it->second.consumer.assign(consumer);
        g.consumers.find(consumer)->second.pending.insert(id);
      } else {
        reassign(g, id, it->second, consumer);
      }
      it->second.delivery_time_ms = now;
      it->second.delivery_count = 1;
      g.consumers.find(consumer)->second.active_time_ms = now;
    }
  }
  out.array(n);
  out.buffer() += body;
  return n;
}

// Serves a consumer's own pending entries with ids >= from (XREADGROUP with an explicit id).
void deliver_history(StreamValue& s, StreamGroup& g, std::string_view consumer, StreamId from,
                     int64_t count, int64_t now, Reply& out, std::vector<StreamId>& touched) {
  auto& mine = g.consumers.find(consumer)->second.pending;
  std::string body;
  Reply sub(body, out.protocol());
  size_t n = 0;
  for (auto it = mine.lower_bound(from); it != mine.end(); ++it) {
    if (count && n >= static_cast<size_t>(count)) break;
    if (auto e = s.find(*it)) {
      reply_entry(sub, *e);
      auto& nack = g.pel.find(*it)->second;
      nack.delivery_time_ms = now;
      ++nack.delivery_count;
      touched.push_back(*it);
    } else {
      sub.array(2);
      reply_id(sub, *it);
      sub.null_array();
    }
    ++n;
  }
  out.array(n);
  out.buffer() += body;
}

void read_common(CmdCtx& c, Args a, Reply& r) {
  ReadArgs o;
  if (!parse_read(c, a, o, r)) return;
  std::vector<StreamId> ids(o.nstreams);
  std::vector<bool> newest(o.nstreams, false);  // XREADGROUP ">"
  // First pass: types, groups and ids, as Redis checks them before serving anything.
  for (size_t i = 0; i < o.nstreams; ++i) {
    std::string_view key = a[o.streams_at + i];
    std::string_view arg = a[o.streams_at + o.nstreams + i];
    const StreamValue* s;
    if (!stream_lookup(c, key, s, r)) return;
    if (o.group_mode && (!s || !s->group(o.group)))
      return r.error(fmt::format(
          "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option", key,
          o.group));
    if (arg == "$") {
      if (o.group_mode)
        return r.error(
            "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the "
            "history of this consumer by specifying a proper ID, or use the > ID to get new "
            "messages. The $ ID would just return an empty result set.");
      ids[i] = s ? s->last_id() : StreamId{};
      continue;
    }
    if (arg == ">") {
      if (!o.group_mode)
        return r.error(
            "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> "
            "<consumer> option.");
      newest[i] = true;
      continue;
    }
    if (!parse_id_or_reply(arg, ids[i], 0, true, r)) return;
  }
  // Second pass: serve what is there.
  std::string body;
  Reply sub(body, r.protocol());
  size_t served = 0;
  for (size_t i = 0; i < o.nstreams; ++i) {
    std::string_view key = a[o.streams_at + i];
    if (!o.group_mode) {
      const StreamValue* s;
      if (!stream_lookup(c, key, s, r)) return;
      if (!s || s->size() == 0) continue;
      auto last = s->last_entry_id();
      if (!last || *last <= ids[i]) continue;
      StreamId from = ids[i];
      from.incr();
      if (sub.protocol() == 2) sub.array(2);
      sub.bulk(key);
      std::string entries;
      Reply er(entries, sub.protocol());
      size_t n = 0;
      s->range(from, StreamId::max(), false, [&](const StreamEntry& e) {
        reply_entry(er, e);
        ++n;
        return o.count == 0 || n < static_cast<size_t>(o.count);
      });
      sub.array(n);
      body += entries;
      ++served;
      continue;
    }
    bool any = false;
    std::string part;
    if (!stream_update(c, key, r, false, [&](StreamValue& s, Reply& out, storage::Delta& d) {
          StreamGroup* g = s.group(o.group);
          if (!g) return false;  // (checked above; the same command cannot lose it)
          consumer_of(*g, o.consumer, c.now_ms).seen_time_ms = c.now_ms;
          std::vector<StreamId> touched;
          Reply pr(part, out.protocol());
          if (!newest[i]) {
            if (pr.protocol() == 2) pr.array(2);
            pr.bulk(key);
            // Entries after the id given, as for XREAD (at the last possible id: from it).
            StreamId from = ids[i];
            from.incr();
            deliver_history(s, *g, o.consumer, from, o.count, c.now_ms, pr, touched);
            any = true;
          } else if (auto last = s.last_entry_id(); last && *last > g->last_id) {
            if (pr.protocol() == 2) pr.array(2);
            pr.bulk(key);
            StreamId from = g->last_id;
            from.incr();
            deliver_new(s, *g, o.consumer, from, o.count, o.noack, c.now_ms, pr, touched);
            any = true;
          }
          const std::string_view consumers[] = {o.consumer};
          d.group_touched(o.group, *g, touched, consumers);
          return true;
        }))
      return;
    if (any) {
      body += part;
      ++served;
    }
  }
  if (served) {
    if (r.protocol() == 2) r.array(served);
    else r.map(served);
    r.buffer() += body;
    return;
  }
  if (o.timeout_ms >= 0) {
    c.client->block_timeout_ms = o.timeout_ms;
    // Block with "$" resolved to the ids seen now (Redis rewrites them the same way).
    auto& b = c.client->block_argv;
    b.assign(a.begin(), a.end());
    for (size_t i = 0; i < o.nstreams; ++i)
      if (!newest[i]) b[o.streams_at + o.nstreams + i] = ids[i].str();
    would_block(c);
  }
  r.null_array();
}

// ---- XACK / XPENDING / XCLAIM / XAUTOCLAIM ------------------------------------------------

void cmd_xack(CmdCtx& c, Args a, Reply& r) {
  const StreamValue* s;
  if (!stream_lookup(c, a[1], s, r)) return;
  if (!s || !s->group(a[2])) return r.integer(0);
  std::vector<StreamId> ids(a.size() - 3);
  for (size_t j = 3; j < a.size(); ++j)
    if (!parse_id_or_reply(a[j], ids[j - 3], 0, true, r)) return;
  stream_update(c, a[1], r, false, [&](StreamValue& st, Reply& out, storage::Delta& d) {
    StreamGroup* g = st.group(a[2]);
    int64_t acked = 0;
    std::vector<StreamId> touched;
    for (auto id : ids) {
      auto it = g->pel.find(id);
      if (it == g->pel.end()) continue;
      remove_pending(*g, it);
      touched.push_back(id);
      ++acked;
    }
    d.group_touched(a[2], *g, touched, {});
    out.integer(acked);
    return acked > 0;
  });
}

void cmd_xpending(CmdCtx& c, Args a, Reply& r) {
  const bool justinfo = a.size() == 3;
  StreamId start, end;
  int64_t count = 0, minidle = 0;
  std::string_view consumer;
  bool has_consumer = false;
  if (a.size() != 3 && (a.size() < 6 || a.size() > 9)) return r.syntax_error();
  if (a.size() >= 6) {
    size_t si = 3;
    if (iequals(a[3], "idle")) {
      if (!parse_ll(a[4], minidle, r)) return;
      if (a.size() < 8) return r.syntax_error();
      si += 2;
    }
    if (!parse_ll(a[si + 2], count, r)) return;
    if (count < 0) count = 0;
    bool ex;
    if (!parse_interval(a[si], start, ex, 0, r)) return;
    if (ex && !start.incr()) return r.error("ERR invalid start ID for the interval");
    if (!parse_interval(a[si + 1], end, ex, UINT64_MAX, r)) return;
    if (ex && !end.decr()) return r.error("ERR invalid end ID for the interval");
    if (si + 3 < a.size()) {
      consumer = a[si + 3];
      has_consumer = true;
    }
  }
  const StreamValue* s;
  if (!stream_lookup(c, a[1], s, r)) return;
  const StreamGroup* g = s ? s->group(a[2]) : nullptr;
  if (!g) return r.error(nogroup(a[1], a[2]));
  if (justinfo) {
    r.array(4);
    r.integer(static_cast<int64_t>(g->pel.size()));
    if (g->pel.empty()) {
      r.null();
      r.null();
      r.null_array();
      return;
    }
    reply_id(r, g->pel.begin()->first);
    reply_id(r, g->pel.rbegin()->first);
    size_t n = 0;
    for (auto& [name, cons] : g->consumers) n += !cons.pending.empty();
    r.array(n);
    for (auto& [name, cons] : g->consumers) {
      if (cons.pending.empty()) continue;
      r.array(2);
      r.bulk(name);
      r.bulk(std::to_string(cons.pending.size()));
    }
    return;
  }
  std::vector<StreamId> ids;
  if (has_consumer) {
    auto it = g->consumers.find(consumer);
    if (it == g->consumers.end()) return r.array(0);
    for (auto i = it->second.pending.lower_bound(start); i != it->second.pending.end() && *i <= end; ++i)
      ids.push_back(*i);
  } else {
    for (auto i = g->pel.lower_bound(start); i != g->pel.end() && i->first <= end; ++i)
      ids.push_back(i->first);
  }
  std::string body;
  Reply sub(body, r.protocol());
  size_t n = 0;
  for (auto id : ids) {
    if (count == 0) break;
    const auto& nack = g->pel.at(id);
    if (minidle && c.now_ms - nack.delivery_time_ms < minidle) continue;
    ++n;
    --count;
    sub.array(4);
    reply_id(sub, id);
    sub.bulk(nack.consumer);
    sub.integer(std::max<int64_t>(0, c.now_ms - nack.delivery_time_ms));
    sub.integer(static_cast<int64_t>(nack.delivery_count));
  }
  r.array(n);
  r.buffer() += body;
}

void cmd_xclaim(CmdCtx& c, Args a, Reply& r) {
  const StreamValue* s;
  if (!stream_lookup(c, a[1], s, r)) return;
  if (!s || !s->group(a[2])) return r.error(nogroup(a[1], a[2]));
  int64_t minidle;
  if (!parse_ll(a[4], minidle, r, "ERR Invalid min-idle-time argument for XCLAIM")) return;
  if (minidle < 0) minidle = 0;
  std::vector<StreamId> ids;
  size_t j = 5;
  for (; j < a.size(); ++j) {
    StreamId id;
    if (!parse_id(a[j], id, 0, true)) break;
    ids.push_back(id);
  }
  const int64_t now = c.now_ms;
  int64_t retrycount = -1, deliverytime = -1;
  bool force = false, justid = false;
  StreamId lastid;
  for (; j < a.size(); ++j) {
    const size_t more = a.size() - 1 - j;
    std::string_view opt = a[j];
    if (iequals(opt, "force")) {
      force = true;
    } else if (iequals(opt, "justid")) {
      justid = true;
    } else if (iequals(opt, "idle") && more) {
      if (!parse_ll(a[++j], deliverytime, r, "ERR Invalid IDLE option argument for XCLAIM")) return;
      deliverytime = now - deliverytime;
    } else if (iequals(opt, "time") && more) {
      if (!parse_ll(a[++j], deliverytime, r, "ERR Invalid TIME option argument for XCLAIM")) return;
    } else if (iequals(opt, "retrycount") && more) {
      if (!parse_ll(a[++j], retrycount, r, "ERR Invalid RETRYCOUNT option argument for XCLAIM")) return;
    } else if (iequals(opt, "lastid") && more) {
      if (!parse_id_or_reply(a[++j], lastid, 0, true, r)) return;
    } else {
      return r.error(fmt::format("ERR Unrecognized XCLAIM option '{}'", opt));
    }
  }
  if (deliverytime != -1) {
    if (deliverytime < 0 || deliverytime > now) deliverytime = now;
  } else {
    deliverytime = now;
  }
  stream_update(c, a[1], r, false, [&](StreamValue& st, Reply& out, storage::Delta& d) {
    StreamGroup& g = *st.group(a[2]);
    if (lastid > g.last_id) g.last_id = lastid;
    auto& cons = consumer_of(g, a[3], now);
    cons.seen_time_ms = now;
    std::string body;
    Reply sub(body, out.protocol());
    size_t n = 0;
    for (auto id : ids) {
      auto it = g.pel.find(id);
      auto entry = st.find(id);
      if (!entry) {
        if (it != g.pel.end()) remove_pending(g, it);
        continue;
      }
      bool forced = false;
      if (force && it == g.pel.end()) {
        it = g.pel.emplace(id, storage::StreamNack{}).first;
        it->second.consumer.assign(a[3]);
        cons.pending.insert(id);
        forced = true;
      }
      if (it == g.pel.end()) continue;
      if (!forced && minidle && now - it->second.delivery_time_ms < minidle) continue;
      reassign(g, id, it->second, a[3]);
      it->second.delivery_time_ms = deliverytime;
      if (retrycount >= 0) it->second.delivery_count = static_cast<uint64_t>(retrycount);
      else if (!justid) ++it->second.delivery_count;
      if (justid) reply_id(sub, id);
      else reply_entry(sub, *entry);
      ++n;
      g.consumers.find(a[3])->second.active_time_ms = now;
    }
    const std::string_view consumers[] = {a[3]};
    d.group_touched(a[2], g, ids, consumers);
    out.array(n);
    out.buffer() += body;
    return true;
  });
}

void cmd_xautoclaim(CmdCtx& c, Args a, Reply& r) {
  int64_t minidle;
  if (!parse_ll(a[4], minidle, r, "ERR Invalid min-idle-time argument for XAUTOCLAIM")) return;
  if (minidle < 0) minidle = 0;
  StreamId start;
  bool ex;
  if (!parse_interval(a[5], start, ex, 0, r)) return;
  if (ex && !start.incr()) return r.error("ERR invalid start ID for the interval");
  int64_t count = 100;
  bool justid = false;
  for (size_t j = 6; j < a.size(); ++j) {
    const size_t more = a.size() - 1 - j;
    if (iequals(a[j], "count") && more) {
      constexpr int64_t kMaxCount = LONG_MAX / 16;
      if (!parse_int64(a[j + 1], count) || count < 1 || count > kMaxCount)
        return r.error("ERR COUNT must be > 0");
      ++j;
    } else if (iequals(a[j], "justid")) {
      justid = true;
    } else {
      return r.syntax_error();
    }
  }
  const StreamValue* s;
  if (!stream_lookup(c, a[1], s, r)) return;
  if (!s || !s->group(a[2])) return r.error(nogroup(a[1], a[2]));
  // Bound the work (and the transient list of deleted ids) as Redis does with its attempts.
  const int64_t now = c.now_ms;
  stream_update(c, a[1], r, false, [&](StreamValue& st, Reply& out, storage::Delta& d) {
    StreamGroup& g = *st.group(a[2]);
    auto& cons = consumer_of(g, a[3], now);
    cons.seen_time_ms = now;
    std::vector<StreamId> touched;
    int64_t attempts = count * 10;
    int64_t left = count;
    std::string body;
    Reply sub(body, out.protocol());
    size_t n = 0;
    std::vector<StreamId> deleted;
    auto it = g.pel.lower_bound(start);
    while (attempts-- > 0 && left > 0 && it != g.pel.end()) {
      const StreamId id = it->first;
      auto entry = st.find(id);
      if (!entry) {
        auto next = std::next(it);
        remove_pending(g, it);
        it = next;
        deleted.push_back(id);
        touched.push_back(id);
        --left;
        continue;
      }
      if (minidle && now - it->second.delivery_time_ms < minidle) {
        ++it;
        continue;
      }
      reassign(g, id, it->second, a[3]);
      it->second.delivery_time_ms = now;
      if (!justid) ++it->second.delivery_count;
      touched.push_back(id);
      if (justid) reply_id(sub, id);
      else reply_entry(sub, *entry);
      ++n;
      --left;
      g.consumers.find(a[3])->second.active_time_ms = now;
      ++it;
    }
    const std::string_view consumers[] = {a[3]};
    d.group_touched(a[2], g, touched, consumers);
    out.array(3);
    reply_id(out, it == g.pel.end() ? StreamId{} : it->first);
    out.array(n);
    out.buffer() += body;
    out.array(deleted.size());
    for (auto id : deleted) reply_id(out, id);
    return true;
  });
}

// ---- XINFO --------------------------------------------------------------------------------

void reply_lag(Reply& r, const StreamValue& s, const StreamGroup& g) {
  if (!s.entries_added()) return r.integer(0);
  if (g.entries_read != StreamGroup::kInvalidEntriesRead &&
      !s.range_has_tombstones(g.last_id, StreamId::max()))
    return r.integer(static_cast<int64_t>(s.entries_added()) - g.entries_read);
  const int64_t read = s.estimate_distance(g.last_id);
  if (read != StreamGroup::kInvalidEntriesRead)
    return r.integer(static_cast<int64_t>(s.entries_added()) - read);
  r.null();
}

void reply_entries_read(Reply& r, const StreamGroup& g) {
  if (g.entries_read != StreamGroup::kInvalidEntriesRead) r.integer(g.entries_read);
  else r.null();
}

void xinfo_stream(CmdCtx& c, Args a, const StreamValue& s, Reply& r) {
  bool full = false;
  int64_t count = 10;
  const size_t optc = a.size() - 3;
  if (optc) {
    if ((optc != 1 && optc != 3) || !iequals(a[3], "full")) return subcommand_syntax(a, r);
    full = true;
    if (optc == 3) {
      if (!iequals(a[4], "count")) return subcommand_syntax(a, r);
      if (!parse_ll(a[5], count, r)) return;
      if (count < 0) count = 10;
    }
  }
  (void)c;
  const auto first = s.first_entry_id();
  r.map(full ? 9 : 10);
  r.bulk("length");
  r.integer(static_cast<int64_t>(s.size()));
  // keel: the number of entry blocks (Redis: its radix tree's keys and nodes).
  r.bulk("radix-tree-keys");
  r.integer(static_cast<int64_t>(s.nodes()));
  r.bulk("radix-tree-nodes");
  r.integer(static_cast<int64_t>(s.nodes()));
  r.bulk("last-generated-id");
  reply_id(r, s.last_id());
  r.bulk("max-deleted-entry-id");
  reply_id(r, s.max_deleted_id());
  r.bulk("entries-added");
  r.integer(static_cast<int64_t>(s.entries_added()));
  r.bulk("recorded-first-entry-id");
  reply_id(r, first.value_or(StreamId{}));
  const auto* groups = s.groups_if_any();
  if (!full) {
    r.bulk("groups");
    r.integer(groups ? static_cast<int64_t>(groups->size()) : 0);
    r.bulk("first-entry");
    bool any = false;
    s.range({}, StreamId::max(), false, [&](const StreamEntry& e) {
      reply_entry(r, e);
      any = true;
      return false;
    });
    if (!any) r.null();
    r.bulk("last-entry");
    any = false;
    s.range({}, StreamId::max(), true, [&](const StreamEntry& e) {
      reply_entry(r, e);
      any = true;
      return false;
    });
    if (!any) r.null();
    return;
  }
  r.bulk("entries");
  {
    std::string body;
    Reply sub(body, r.protocol());
    size_t n = 0;
    s.range({}, StreamId::max(), false, [&](const StreamEntry& e) {
      reply_entry(sub, e);
      ++n;
      return count == 0 || n < static_cast<size_t>(count);
    });
    r.array(n);
    r.buffer() += body;
  }
  r.bulk("groups");
  r.array(groups ? groups->size() : 0);
  if (!groups) return;
  auto limited = [&](size_t total) {
    return count == 0 ? total : std::min<size_t>(total, static_cast<size_t>(count));
  };
  for (auto& [name, g] : *groups) {
    r.map(7);
    r.bulk("name");
    r.bulk(name);
    r.bulk("last-delivered-id");
    reply_id(r, g.last_id);
    r.bulk("entries-read");
    reply_entries_read(r, g);
    r.bulk("lag");
    reply_lag(r, s, g);
    r.bulk("pel-count");
    r.integer(static_cast<int64_t>(g.pel.size()));
    r.bulk("pending");
    size_t np = limited(g.pel.size());
    r.array(np);
    for (auto it = g.pel.begin(); np > 0; ++it, --np) {
      r.array(4);
      reply_id(r, it->first);
      r.bulk(it->second.consumer);
      r.integer(it->second.delivery_time_ms);
      r.integer(static_cast<int64_t>(it->second.delivery_count));
    }
    r.bulk("consumers");
    r.array(g.consumers.size());
    for (auto& [cname, cons] : g.consumers) {
      r.map(5);
      r.bulk("name");
      r.bulk(cname);
      r.bulk("seen-time");
      r.integer(cons.seen_time_ms);
      r.bulk("active-time");
      r.integer(cons.active_time_ms);
      r.bulk("pel-count");
      r.integer(static_cast<int64_t>(cons.pending.size()));
      r.bulk("pending");
      size_t nc = limited(cons.pending.size());
      r.array(nc);
      for (auto it = cons.pending.begin(); nc > 0; ++it, --nc) {
        const auto& nack = g.pel.at(*it);
        r.array(3);
        reply_id(r, *it);
        r.integer(nack.delivery_time_ms);
        r.integer(static_cast<int64_t>(nack.delivery_count));
      }
    }
  }
}

void cmd_xinfo(CmdCtx& c, Args a, Reply& r) {
  std::string_view opt = a[1];
  if (iequals(opt, "help")) {
    if (a.size() != 2) return r.error("ERR wrong number of arguments for 'xinfo|help' command");
    return reply_help(a,
                      {"CONSUMERS <key> <groupname>", "    Show consumers of <groupname>.",
                       "GROUPS <key>", "    Show the stream consumer groups.",
                       "STREAM <key> [FULL [COUNT <count>]",
                       "    Show information about the stream."},
                      r);
  }
  const bool consumers = iequals(opt, "consumers"), groups = iequals(opt, "groups"),
             stream = iequals(opt, "stream");
  if (!consumers && !groups && !stream)
    return r.error(fmt::format("ERR unknown subcommand '{}'. Try XINFO HELP.", opt.substr(0, 128)));
  if ((consumers && a.size() != 4) || (groups && a.size() != 3) || (stream && a.size() < 3))
    return r.error(fmt::format("ERR wrong number of arguments for 'xinfo|{}' command", to_lower(opt)));
  const StreamValue* s;
  if (!stream_lookup(c, a[2], s, r)) return;
  if (!s) return r.error("ERR no such key");
  if (stream) return xinfo_stream(c, a, *s, r);
  if (groups) {
    const auto* gs = s->groups_if_any();
    r.array(gs ? gs->size() : 0);
    if (!gs) return;
    for (auto& [name, g] : *gs) {
      r.map(6);
      r.bulk("name");
      r.bulk(name);
      r.bulk("consumers");
      r.integer(static_cast<int64_t>(g.consumers.size()));
      r.bulk("pending");
      r.integer(static_cast<int64_t>(g.pel.size()));
      r.bulk("last-delivered-id");
      reply_id(r, g.last_id);
      r.bulk("entries-read");
      reply_entries_read(r, g);
      r.bulk("lag");
      reply_lag(r, *s, g);
    }
    return;
  }
  const StreamGroup* g = s->group(a[3]);
  if (!g)
    return r.error(fmt::format("NOGROUP No such consumer group '{}' for key name '{}'", a[3], a[2]));
  r.array(g->consumers.size());
  for (auto& [name, cons] : g->consumers) {
    const int64_t inactive = cons.active_time_ms != -1 ? c.now_ms - cons.active_time_ms : -1;
    r.map(4);
    r.bulk("name");
    r.bulk(name);
    r.bulk("pending");
    r.integer(static_cast<int64_t>(cons.pending.size()));
    r.bulk("idle");
    r.integer(std::max<int64_t>(0, c.now_ms - cons.seen_time_ms));
    r.bulk("inactive");
    r.integer(inactive);
  }
}

void cmd_xread(CmdCtx& c, Args a, Reply& r) { read_common(c, a, r); }

}  // namespace

bool stream_block_ready(const storage::ValueRef* v, Args argv, std::string_view key) {
  if (!v) return iequals(argv[0], "xreadgroup");  // a deleted key: XREADGROUP answers NOGROUP
  if (v->type != ValueType::kStream) return false;
  const StreamValue& s = *v->stream;
  size_t streams_at = 0;
  std::string_view group;
  for (size_t i = 1; i < argv.size(); ++i) {
    if (iequals(argv[i], "streams")) {
      streams_at = i + 1;
      break;
    }
    if (iequals(argv[i], "group") && i + 2 < argv.size()) {
      group = argv[i + 1];
      i += 2;
    } else if ((iequals(argv[i], "block") || iequals(argv[i], "count")) && i + 1 < argv.size()) {
      ++i;
    }
  }
  if (streams_at == 0) return false;
  const size_t n = (argv.size() - streams_at) / 2;
  for (size_t i = 0; i < n; ++i) {
    if (argv[streams_at + i] != key) continue;
    std::string_view arg = argv[streams_at + n + i];
    auto last = s.last_entry_id();
    if (!group.empty() || iequals(argv[0], "xreadgroup")) {
      const StreamGroup* g = s.group(group);
      if (!g) return true;  // destroyed: XREADGROUP answers NOGROUP
      return last && *last > g->last_id;
    }
    StreamId id;
    if (!parse_id(arg, id, 0, true)) return false;
    return last && *last > id;
  }
  return false;
}

std::vector<std::string> stream_block_args(Args argv, std::string_view key) {
  std::vector<std::string> out;
  size_t streams_at = 0;
  for (size_t i = 1; i < argv.size(); ++i) {
    if (iequals(argv[i], "streams")) {
      streams_at = i + 1;
      break;
    }
  }
  out.emplace_back(argv[0]);
  for (size_t i = 1; i + 1 < streams_at; ++i) {
    if (iequals(argv[i], "block")) {
      ++i;
      continue;
    }
    out.emplace_back(argv[i]);
  }
  out.emplace_back("STREAMS");
  const size_t n = streams_at ? (argv.size() - streams_at) / 2 : 0;
  for (size_t i = 0; i < n; ++i) {
    if (argv[streams_at + i] != key) continue;
    out.emplace_back(key);
    out.emplace_back(argv[streams_at + n + i]);
    break;
  }
  return out;
}

void register_stream_commands(std::vector<CommandSpec>& t) {
  constexpr auto W = kWrite | kDenyOom;
  const uint32_t B = kBlocking;
  t.push_back({"xadd", -5, W | kFast, 1, 1, 1, Routing::kKey, cmd_xadd, "stream", "Appends a new message to a stream. Creates the key if it doesn't exist.", "5.0.0"});
  t.push_back({"xrange", -4, kReadonly, 1, 1, 1, Routing::kKey, cmd_xrange, "stream", "Returns the messages from a stream within a range of IDs.", "5.0.0"});
  t.push_back({"xrevrange", -4, kReadonly, 1, 1, 1, Routing::kKey, cmd_xrevrange, "stream", "Returns the messages from a stream within a range of IDs in reverse order.", "5.0.0"});
  t.push_back({"xlen", 2, kReadonly | kFast, 1, 1, 1, Routing::kKey, cmd_xlen, "stream", "Return the number of messages in a stream.", "5.0.0"});
  t.push_back({"xdel", -3, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_xdel, "stream", "Returns the number of messages after removing them from a stream.", "5.0.0"});
  t.push_back({"xtrim", -4, kWrite, 1, 1, 1, Routing::kKey, cmd_xtrim, "stream", "Deletes messages from the beginning of a stream.", "5.0.0"});
  t.push_back({"xsetid", -3, W | kFast, 1, 1, 1, Routing::kKey, cmd_xsetid, "stream", "An internal command for replicating stream values.", "5.0.0"});
  t.push_back({"xgroup", -2, W, 2, 2, 1, Routing::kKey, cmd_xgroup, "stream", "A container for consumer groups commands (CREATE SETID DESTROY CREATECONSUMER DELCONSUMER).", "5.0.0"});
  t.push_back({"xack", -4, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_xack, "stream", "Returns the number of messages that were successfully acknowledged by the consumer group member of a stream.", "5.0.0"});
  t.push_back({"xpending", -3, kReadonly, 1, 1, 1, Routing::kKey, cmd_xpending, "stream", "Returns the information and entries from a stream consumer group's pending entries list.", "5.0.0"});
  t.push_back({"xclaim", -6, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_xclaim, "stream", "Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member.", "5.0.0"});
  t.push_back({"xautoclaim", -6, kWrite | kFast, 1, 1, 1, Routing::kKey, cmd_xautoclaim, "stream", "Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member.", "6.2.0"});
  t.push_back({"xinfo", -2, kReadonly, 2, 2, 1, Routing::kKey, cmd_xinfo, "stream", "A container for stream introspection commands (STREAM [FULL] GROUPS CONSUMERS).", "5.0.0"});
  CommandSpec xread{"xread", -4, kReadonly | B, 1, -1, 1, Routing::kKey, cmd_xread, "stream", "Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise.", "5.0.0"};
  xread.streams_keys = true;
  t.push_back(xread);
  CommandSpec xreadgroup{"xreadgroup", -7, kWrite | B, 1, -1, 1, Routing::kKey, cmd_xread, "stream", "Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise.", "5.0.0"};
  xreadgroup.streams_keys = true;
  t.push_back(xreadgroup);
}

}  // namespace keel::resp

// Connection and server commands: PING ECHO HELLO AUTH SELECT QUIT RESET COMMAND CONFIG INFO
// CLIENT TIME. They run on the connection's own shard and touch no keys.
#include <cctype>

#include <fmt/format.h>

#include "frontends/resp/family_util.h"
#include "observe/slowlog.h"

namespace keel::resp {
namespace {

void cmd_ping(CmdCtx& c, Args a, Reply& r) {
  if (a.size() > 2) return r.error(wrong_args(a[0]));
  if (c.client && c.client->pubsub > 0 && r.protocol() == 2) {
    r.array(2);
    r.bulk("pong");
    r.bulk(a.size() == 2 ? a[1] : std::string_view());
    return;
  }
  a.size() == 2 ? r.bulk(a[1]) : r.simple("PONG");
}

void cmd_echo(CmdCtx&, Args a, Reply& r) { r.bulk(a[1]); }

// AUTH and HELLO AUTH: checks the password (the node's cache spares a second Argon2id for a
// password it verified before) and switches the connection to the user; a failure is logged.
bool authenticate(CmdCtx& c, std::string_view user, std::string_view pass) {
  if (!c.acl) {
    if (!c.node->auth(user, pass)) return false;
    c.client->authenticated = true;
    return true;
  }
  std::shared_ptr<const security::User> u;
  std::shared_ptr<const security::TokenGrant> token;
  if (c.client->verified && c.client->verified_token) {  // a token the server verified (AUTH <user> <token>)
    u = std::move(c.client->verified);
    token = std::move(c.client->verified_token);
  } else if (security::looks_like_token(pass)) {
    u = nullptr;  // tokens are verified by the server before the handler runs; never as a password
  } else if (c.client->verified && c.client->verified->name == user) {
    u = std::move(c.client->verified);
  } else {
    u = c.acl->authenticate(user, pass);
  }
  c.client->verified.reset();
  c.client->verified_token.reset();
  if (!u) {
    acl_log(*c.acl, *c.client, "auth", "auth", std::string(user), c.now_ms);
    return false;
  }
  c.client->user = std::move(u);
  c.client->token = std::move(token);
  c.client->acl_open = c.client->user->unrestricted() && !c.client->token;
  c.client->acl_generation = c.acl->generation();
  c.client->authenticated = true;
  return true;
}

void cmd_hello(CmdCtx& c, Args a, Reply& r) {
  int64_t proto = c.client->protocol;
  size_t i = 1;
  if (a.size() >= 2) {
    if (!parse_int64(a[1], proto)) return r.error("ERR Protocol version is not an integer or out of range");
    if (proto < 2 || proto > 3) return r.error("NOPROTO unsupported protocol version");
    i = 2;
  }
  std::string_view setname;
  bool has_setname = false;
  for (; i < a.size(); ++i) {
    if (iequals(a[i], "auth") && i + 2 < a.size()) {
      if (!authenticate(c, a[i + 1], a[i + 2]))
        return r.error("WRONGPASS invalid username-password pair or user is disabled.");
      i += 2;
    } else if (iequals(a[i], "setname") && i + 1 < a.size()) {
      setname = a[++i];
      has_setname = true;
    } else {
      return r.error("ERR Syntax error in HELLO option '" + std::string(a[i]) + "'");
    }
  }
  if (!c.client->authenticated)
    return r.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
  if (has_setname) c.client->name.assign(setname);
  c.client->protocol = static_cast<int>(proto);
  r.set_protocol(static_cast<int>(proto));
  r.map(7);
  r.bulk("server");
  r.bulk("redis");
  r.bulk("version");
  r.bulk(c.node->version());
  r.bulk("proto");
  r.integer(proto);
  r.bulk("id");
  r.integer(static_cast<int64_t>(c.client->id));
  r.bulk("mode");
  r.bulk("standalone");
  r.bulk("role");
  r.bulk("master");
  r.bulk("modules");
  r.array(0);
}

void cmd_auth(CmdCtx& c, Args a, Reply& r) {
  if (a.size() > 3) return r.syntax_error();
  if (a.size() == 2 && !security::looks_like_token(a[1]) && (c.acl ? c.acl->default_user()->nopass : !c.node->auth_required()))
    return r.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
  std::string_view user = a.size() == 3 ? a[1] : std::string_view("default");
  std::string_view pass = a.size() == 3 ? a[2] : a[1];
  if (!authenticate(c, user, pass)) return r.error("WRONGPASS invalid username-password pair or user is disabled.");
  r.ok();
}

void cmd_select(CmdCtx&, Args a, Reply& r) {
  int64_t db;
  if (!parse_int64(a[1], db)) return r.not_integer();
  if (db != 0) return r.error("ERR DB index is out of range");
  r.ok();
}

void cmd_quit(CmdCtx& c, Args, Reply& r) {
  c.client->close_after_reply = true;
  r.ok();
}

void cmd_reset(CmdCtx& c, Args, Reply& r) {
  c.client->protocol = 2;
  c.client->name.clear();
  c.client->readonly = false;  // as Redis: RESET leaves READONLY mode
  if (c.acl) {
    c.client->user = c.acl->default_user();
    c.client->token.reset();
    c.client->acl_open = c.client->user->unrestricted();
    c.client->acl_generation = c.acl->generation();
    c.client->authenticated = c.client->user->nopass && c.client->user->enabled;
  } else {
    c.client->authenticated = !c.node->auth_required();
  }
  r.set_protocol(2);
  r.simple("RESET");
}

void cmd_run_by_server(CmdCtx&, Args a, Reply& r) {
  r.error("ERR '" + to_lower(a[0]) + "' is run by the server, not by a handler");
}

void cmd_time(CmdCtx& c, Args, Reply& r) {
  r.array(2);
  r.bulk(std::to_string(c.now_ms / 1000));
  r.bulk(std::to_string((c.now_ms % 1000) * 1000));
}

void reply_flags(uint32_t f, Reply& r, bool movable_keys = false) {
  std::vector<std::string_view> names;
  if (f & kWrite) names.push_back("write");
  if (f & kReadonly) names.push_back("readonly");
  if (f & kDenyOom) names.push_back("denyoom");
  if (f & kAdmin) names.push_back("admin");
  if (f & kNoAuth) names.push_back("no_auth");
  if (f & kLoading) names.push_back("loading");
  if (f & kStale) names.push_back("stale");
  if (f & kFast) names.push_back("fast");
  if (f & kNoScript) names.push_back("noscript");
  if (f & kRandom) names.push_back("random");
  if (f & kBlocking) names.push_back("blocking");
  if (movable_keys) names.push_back("movablekeys");
  r.set(names.size());
  for (auto n : names) r.simple(n);
}

void cmd_command(CmdCtx&, Args a, Reply& r) {
  auto& all = all_commands();
  if (a.size() == 1) {
    r.array(all.size());
    for (auto* s : all) reply_command_info(*s, r);
    return;
  }
  auto sub = a[1];
  if (iequals(sub, "count") && a.size() == 2) return r.integer(static_cast<int64_t>(all.size()));
  if (iequals(sub, "list") && a.size() == 2) {
    r.array(all.size());
    for (auto* s : all) r.bulk(s->name);
    return;
  }
  if (iequals(sub, "info")) {
    if (a.size() == 2) {
      r.array(all.size());
      for (auto* s : all) reply_command_info(*s, r);
      return;
    }
    r.array(a.size() - 2);
    for (size_t i = 2; i < a.size(); ++i) {
      auto* s = find_command(a[i]);
      s ? reply_command_info(*s, r) : r.null_array();
    }
    return;
  }
  if (iequals(sub, "docs")) {
    std::vector<const CommandSpec*> list;
    if (a.size() == 2) list = all;
    for (size_t i = 2; i < a.size(); ++i)
      if (auto* s = find_command(a[i])) list.push_back(s);
    r.map(list.size());
    for (auto* s : list) {
      r.bulk(s->name);
      reply_command_docs(*s, r);
    }
    return;
  }
  if (iequals(sub, "getkeys") && a.size() < 4)
    return r.error("ERR wrong number of arguments for 'command|getkeys' command");
  if (iequals(sub, "getkeys")) {
    auto* s = find_command(a[2]);
    if (!s) return r.error("ERR Invalid command specified");
    auto args = a.subspan(2);
    if (!arity_ok(*s, args.size())) return r.error("ERR Invalid number of arguments specified for command");
    auto keys = command_keys(*s, args);
    if (keys.empty()) return r.error("ERR The command has no key arguments");
    r.array(keys.size());
    for (auto k : keys) r.bulk(args[k]);
    return;
  }
  r.error("ERR unknown subcommand '" + std::string(sub) + "'. Try COMMAND HELP.");
}

void cmd_config(CmdCtx& c, Args a, Reply& r) {
  auto sub = a[1];
  if (iequals(sub, "get") && a.size() >= 3) {
    std::vector<std::pair<std::string, std::string>> out;
    for (size_t i = 2; i < a.size(); ++i)
      for (auto& kv : c.node->config_matching(to_lower(a[i]))) {
        bool dup = false;
        for (auto& o : out) dup |= o.first == kv.first;
        if (!dup) out.push_back(kv);
      }
    r.map(out.size());
    for (auto& [k, v] : out) {
      r.bulk(k);
      r.bulk(v);
    }
    return;
  }
  if (iequals(sub, "set") && a.size() >= 4 && a.size() % 2 == 0) {
    for (size_t i = 2; i + 1 < a.size(); i += 2) {
      auto err = c.node->config_set(to_lower(a[i]), a[i + 1]);
      if (!err.empty())
        return r.error("ERR CONFIG SET failed (possibly related to argument '" + to_lower(a[i]) + "') - " + err);
    }
    return r.ok();
  }
  if (iequals(sub, "resetstat") && a.size() == 2) return r.ok();
  if (iequals(sub, "help")) {
    r.array(3);
    r.simple("CONFIG GET <pattern>");
    r.simple("CONFIG SET <directive> <value> [<directive> <value> ...]");
    r.simple("CONFIG RESETSTAT");
    return;
  }
  r.error("ERR unknown subcommand or wrong number of arguments for '" + std::string(sub) +
          "'. Try CONFIG HELP.");
}

// SLOWLOG GET [count] | LEN | RESET | HELP, as Redis's (observe/slowlog.h keeps the entries:
// RESP commands and HTTP requests of this node).
void cmd_slowlog(CmdCtx& c, Args a, Reply& r) {
  auto* log = c.node ? c.node->slowlog() : nullptr;
  auto sub = a[1];
  if (!log) return r.error("ERR this node keeps no slow log");
  if (iequals(sub, "get") && a.size() <= 3) {
    uint64_t count = 10;
    if (a.size() == 3) {
      int64_t n = 0;
      if (!parse_int64(a[2], n) || n < -1) return r.error("ERR count should be greater than or equal to -1");
      count = n == -1 ? UINT64_MAX : static_cast<uint64_t>(n);
    }
    auto entries = log->get(count);
    r.array(entries.size());
    for (const auto& e : entries) {
      r.array(6);
      r.integer(static_cast<int64_t>(e.id));
      r.integer(e.unix_ms / 1000);
      r.integer(e.duration_us);
      r.array(e.args.size());
      for (const auto& arg : e.args) r.bulk(arg);
      r.bulk(e.client);
      r.bulk(e.client_name);
    }
    return;
  }
  if (iequals(sub, "len") && a.size() == 2) return r.integer(static_cast<int64_t>(log->len()));
  if (iequals(sub, "reset") && a.size() == 2) {
    log->reset();
    return r.ok();
  }
  if (iequals(sub, "help") && a.size() == 2) {
    r.array(6);
    r.simple("SLOWLOG GET [<count>]");
    r.simple("    The newest <count> slow requests (default 10, -1 for all): id, Unix time (s), duration (us), arguments, client, client name.");
    r.simple("SLOWLOG LEN");
    r.simple("    How many slow requests are kept.");
    r.simple("SLOWLOG RESET");
    r.simple("    Forgets them (ids keep counting).");
    return;
  }
  for (std::string_view known : {"get", "len", "reset", "help"})
    if (iequals(sub, known))
      return r.error(fmt::format("ERR wrong number of arguments for 'slowlog|{}' command", known));
  r.error(fmt::format("ERR unknown subcommand '{}'. Try SLOWLOG HELP.", sub));
}

bool valid_client_name(std::string_view n) {
  for (char ch : n)
    if (ch < '!' || ch > '~') return false;
  return true;
}

void cmd_client(CmdCtx& c, Args a, Reply& r) {
  auto sub = a[1];
  if (iequals(sub, "id") && a.size() == 2) return r.integer(static_cast<int64_t>(c.client->id));
  if (iequals(sub, "setname") && a.size() == 3) {
    if (!valid_client_name(a[2]))
      return r.error("ERR Client names cannot contain spaces, newlines or special characters.");
    c.client->name.assign(a[2]);
    return r.ok();
  }
  if (iequals(sub, "getname") && a.size() == 2)
    return c.client->name.empty() ? r.null() : r.bulk(c.client->name);
  if (iequals(sub, "info") && a.size() == 2) {
    auto line = "id=" + std::to_string(c.client->id) + " addr=" + c.client->addr +
                " laddr=" + c.client->laddr + " name=" + c.client->name +
                " age=" + std::to_string((c.now_ms - c.client->created_ms) / 1000) +
                " db=0 resp=" + std::to_string(c.client->protocol) + " cmd=client|info user=" +
                (c.client->user ? c.client->user->name : std::string("default")) + "\n";
    return r.verbatim(line);
  }
  if (iequals(sub, "setinfo") && a.size() == 4) {
    if (!iequals(a[2], "lib-name") && !iequals(a[2], "lib-ver"))
      return r.error("ERR Unrecognized option '" + std::string(a[2]) + "'");
    return r.ok();
  }
  if (iequals(sub, "traceparent") && a.size() == 2) {
    auto& p = c.client->trace_parent;
    return p ? r.bulk(observe::format_traceparent(p->trace_id, p->span_id, p->flags)) : r.null();
  }
  if (iequals(sub, "traceparent") && (a.size() == 3 || a.size() == 4)) {
    if (a.size() == 3 && iequals(a[2], "clear")) {
      c.client->trace_parent.reset();
      return r.ok();
    }
    auto p = observe::parse_traceparent(a[2]);
    if (!p)
      return r.error("ERR invalid traceparent '" + std::string(a[2].substr(0, 64)) +
                     "': expected 00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>, lower case, "
                     "ids not all zero (W3C Trace Context), or CLEAR");
    if (a.size() == 4) p->trace_state = observe::parse_tracestate(a[3]);
    c.client->trace_parent = std::move(*p);
    return r.ok();
  }
  if (iequals(sub, "help")) {
    r.array(7);
    for (auto l : {"CLIENT ID", "CLIENT SETNAME <name>", "CLIENT GETNAME", "CLIENT LIST", "CLIENT INFO",
                   "CLIENT TRACEPARENT [<traceparent> [<tracestate>] | CLEAR]",
                   "    Make every later command of this connection a child span of <traceparent> (W3C)."})
      r.simple(l);
    return;
  }
  r.error("ERR unknown subcommand or wrong number of arguments for '" + std::string(sub) +
          "'. Try CLIENT HELP.");
}

}  // namespace

void reply_command_info(const CommandSpec& s, Reply& r) {
  r.array(10);
  r.bulk(s.name);
  r.integer(s.arity);
  // XREAD / XREADGROUP: keys after STREAMS, found with COMMAND GETKEYS (as Redis reports them).
  reply_flags(s.flags, r, s.streams_keys);
  r.integer(s.streams_keys ? 0 : s.first_key);
  r.integer(s.streams_keys ? 0 : s.last_key);
  r.integer(s.streams_keys ? 0 : s.key_step);
  // ACL categories (acl_commands.cpp), in ACL CAT's order.
  const uint64_t cats = command_categories(s);
  auto names = security::category_names();
  size_t n = 0;
  for (size_t i = 0; i < names.size(); ++i) n += (cats >> i) & 1;
  r.set(n);
  for (size_t i = 0; i < names.size(); ++i)
    if ((cats >> i) & 1) r.simple("@" + std::string(names[i]));
  r.array(0);  // tips
  r.array(0);  // key specs
  r.array(0);  // subcommands
}

void reply_command_docs(const CommandSpec& s, Reply& r) {
  r.map(3);
  r.bulk("summary");
  r.bulk(s.summary);
  r.bulk("since");
  r.bulk(s.since);
  r.bulk("group");
  r.bulk(s.group);
}

void register_server_commands(std::vector<CommandSpec>& t) {
  constexpr auto L = Routing::kLocal;
  t.push_back({"ping", -1, kFast | kStale, 0, 0, 0, L, cmd_ping, "connection", "Returns the server's liveliness response."});
  t.push_back({"echo", 2, kFast | kStale, 0, 0, 0, L, cmd_echo, "connection", "Returns the given string."});
  t.push_back({"hello", -1, kFast | kNoAuth | kStale, 0, 0, 0, L, cmd_hello, "connection", "Handshakes with the Redis server.", "6.0.0"});
  t.push_back({"auth", -2, kFast | kNoAuth | kStale, 0, 0, 0, L, cmd_auth, "connection", "Authenticates the connection."});
  t.push_back({"select", 2, kFast | kStale, 0, 0, 0, L, cmd_select, "connection", "Changes the selected database."});
  t.push_back({"quit", -1, kFast | kNoAuth | kStale, 0, 0, 0, L, cmd_quit, "connection", "Closes the connection."});
  t.push_back({"reset", 1, kFast | kNoAuth | kStale, 0, 0, 0, L, cmd_reset, "connection", "Resets the connection.", "6.2.0"});
  // MULTI EXEC DISCARD WATCH UNWATCH: per-connection state the server keeps (server.cpp runs
  // them; these handlers are never called).
  const uint32_t TX = kNoScript | kLoading | kStale;
  t.push_back({"multi", 1, TX | kFast, 0, 0, 0, L, cmd_run_by_server, "transactions", "Starts a transaction.", "1.2.0"});
  t.push_back({"exec", 1, TX, 0, 0, 0, L, cmd_run_by_server, "transactions", "Executes all commands in a transaction.", "1.2.0"});
  t.push_back({"discard", 1, TX | kFast, 0, 0, 0, L, cmd_run_by_server, "transactions", "Discards a transaction.", "2.0.0"});
  t.push_back({"watch", -2, TX | kFast, 1, -1, 1, L, cmd_run_by_server, "transactions", "Monitors changes to keys to determine the execution of a transaction.", "2.2.0"});
  t.push_back({"unwatch", 1, TX | kFast, 0, 0, 0, L, cmd_run_by_server, "transactions", "Forgets about watched keys of a transaction.", "2.2.0"});
  t.push_back({"time", 1, kFast | kRandom | kStale, 0, 0, 0, L, cmd_time, "server", "Returns the server time."});
  t.push_back({"command", -1, kRandom | kStale, 0, 0, 0, L, cmd_command, "server", "Returns detailed information about all commands."});
  t.push_back({"config", -2, kAdmin | kStale, 0, 0, 0, L, cmd_config, "server", "A container for server configuration commands."});
  t.push_back({"slowlog", -2, kAdmin | kStale, 0, 0, 0, L, cmd_slowlog, "server", "A container for slow log commands.", "2.2.12"});
  t.push_back({"info", -1, kStale, 0, 0, 0, Routing::kAll, nullptr, "server", "Returns information and statistics about the server."});
  t.push_back({"client", -2, kStale, 0, 0, 0, L, cmd_client, "connection", "A container for client connection commands."});
}

}  // namespace keel::resp

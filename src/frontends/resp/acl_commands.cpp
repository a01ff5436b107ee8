// Users and access rules on the RESP door: the ACL command (GETUSER LIST USERS WHOAMI CAT
// DRYRUN LOG HELP here; SETUSER and DELUSER change cluster metadata and are run by the server,
// security/acl_service.h), the categories of every command, and the check every command
// passes (command, keys, channels).
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "frontends/resp/family_util.h"
#include "security/audit.h"

namespace keel::resp {

namespace sec = keel::security;

bool is_container(std::string_view name) {
  static const std::set<std::string_view> kContainers = {
      "client", "config", "command", "cluster", "object", "memory", "pubsub", "script",
      "function", "xinfo", "xgroup", "acl", "latency", "slowlog", "module"};
  return kContainers.count(name) > 0;
}

std::string full_command_name(const CommandSpec& spec, Args argv) {
  std::string name(spec.name);
  if (argv.size() >= 2 && is_container(spec.name)) name += "|" + to_lower(argv[1]);
  return name;
}

uint64_t command_categories(const CommandSpec& s) {
  using namespace keel::security;
  static const std::set<std::string_view> kDangerous = {
      "flushall", "flushdb", "keys", "config", "info", "client", "cluster", "acl", "debug",
      "shutdown", "monitor", "sort", "migrate", "restore", "role", "replicaof", "slaveof",
      "cache.drop", "cache.clear", "route.deregister"};
  static const std::set<std::string_view> kKeyspaceExtra = {"dbsize", "flushall", "flushdb", "keys", "scan",
                                                           "randomkey"};
  uint64_t c = 0;
  const std::string_view g = s.group;
  if (g == "string") c |= cat_bit(kCatString);
  else if (g == "hash") c |= cat_bit(kCatHash);
  else if (g == "list") c |= cat_bit(kCatList);
  else if (g == "set") c |= cat_bit(kCatSet);
  else if (g == "sorted-set" || g == "sorted_set" || g == "sortedset") c |= cat_bit(kCatSortedSet);
  else if (g == "stream") c |= cat_bit(kCatStream);
  else if (g == "bitmap") c |= cat_bit(kCatBitmap);
  else if (g == "hyperloglog") c |= cat_bit(kCatHyperLogLog);
  else if (g == "geo") c |= cat_bit(kCatGeo);
  else if (g == "generic") c |= cat_bit(kCatKeyspace);
  else if (g == "pubsub") c |= cat_bit(kCatPubSub);
  else if (g == "connection") c |= cat_bit(kCatConnection);
  else if (g == "transactions") c |= cat_bit(kCatTransaction);
  else if (g == "scripting") c |= cat_bit(kCatScripting);
  else if (g == "cache") c |= cat_bit(kCatCache);
  else if (g == "route") c |= cat_bit(kCatRoute);
  else if (g == "transit") c |= cat_bit(kCatTransit);
  else if (g == "secret") c |= cat_bit(kCatSecret);
  if (kKeyspaceExtra.count(s.name)) c |= cat_bit(kCatKeyspace);
  if (s.name == "readonly" || s.name == "readwrite" || s.name == "asking" || s.name == "command")
    c |= cat_bit(kCatConnection);
  if (s.flags & kWrite) c |= cat_bit(kCatWrite);
  if (s.flags & kReadonly) c |= cat_bit(kCatRead);
  if (s.flags & kAdmin) c |= cat_bit(kCatAdmin) | cat_bit(kCatDangerous);
  if (kDangerous.count(s.name)) c |= cat_bit(kCatDangerous);
  if (s.flags & kBlocking) c |= cat_bit(kCatBlocking);
  c |= (s.flags & kFast) ? cat_bit(kCatFast) : cat_bit(kCatSlow);
  // keel's administrative families.
  if (s.name == "cache.create" || s.name == "cache.drop" || s.name == "cache.clear" || s.name == "route.register" ||
      s.name == "route.deregister" || s.name == "transit.create" || s.name == "transit.rotate" ||
      s.name == "transit.config" || s.name == "transit.delete")
    c |= cat_bit(kCatAdmin);
  return c;
}

sec::CommandCatalog acl_catalog() {
  std::vector<sec::CatalogEntry> entries;
  for (auto* s : all_commands())
    entries.push_back({std::string(s->name), command_categories(*s), is_container(s->name)});
  return sec::CommandCatalog(std::move(entries));
}

std::optional<AclDenial> acl_check(const sec::User& u, const CommandSpec& spec, Args argv) {
  std::string_view sub = argv.size() >= 2 && is_container(spec.name) ? argv[1] : std::string_view();
  if (!u.can_run(spec.index, sub)) {
    std::string name = full_command_name(spec, argv);
    return AclDenial{"command", name, fmt::format("NOPERM this user has no permissions to run the '{}' command", name),
                     fmt::format("This user has no permissions to run the '{}' command", name)};
  }
  if (spec.group == "pubsub") {
    if (u.allchannels) return std::nullopt;
    size_t from = 1, to = 0;
    bool pattern = spec.name == "psubscribe";
    if (spec.name == "publish" || spec.name == "spublish") to = 2;
    else if (spec.name == "subscribe" || spec.name == "ssubscribe" || pattern) to = argv.size();
    for (size_t i = from; i < to && i < argv.size(); ++i) {
      if (u.channel_allowed(argv[i], pattern)) continue;
      return AclDenial{"channel", std::string(argv[i]),
                       "NOPERM this user has no permissions to access one of the channels used as arguments",
                       fmt::format("This user has no permissions to access the '{}' channel", argv[i])};
    }
    return std::nullopt;
  }
  if (u.allkeys || (spec.first_key <= 0 && !spec.streams_keys)) return std::nullopt;
  for (size_t k : command_keys(spec, argv)) {
    if (u.key_allowed(argv[k])) continue;
    return AclDenial{"key", std::string(argv[k]),
                     "NOPERM this user has no permissions to access one of the keys used as arguments",
                     fmt::format("This user has no permissions to access the '{}' key", argv[k])};
  }
  return std::nullopt;
}

std::optional<AclDenial> token_check(const sec::TokenGrant& g, const CommandSpec& spec, Args argv) {
  for (size_t i = 0; i < g.limits.size(); ++i) {
    auto d = acl_check(g.limits[i], spec, argv);
    if (!d) continue;
    const auto& u = g.limits[i];
    std::string rules = u.describe_commands();
    if (u.allkeys) rules += " ~*";
    for (auto& k : u.keys) rules += " ~" + k;
    if (u.allchannels) rules += " &*";
    for (auto& ch : u.channels) rules += " &" + ch;
    const std::string what = d->error.substr(std::string_view("NOPERM this user has").size());
    d->error = fmt::format("NOPERM this token has{}: block {} of the token allows only '{}'", what, i, rules);
    d->dryrun = "This token has" + d->dryrun.substr(std::string_view("This user has").size());
    return d;
  }
  return std::nullopt;
}

std::string client_info(const ClientState& c, int64_t now_ms) {
  // Redis's field set (clients parse every field); keel does not track the buffer figures.
  return fmt::format(
      "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 "
      "qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} "
      "redir=-1 resp={}",
      c.id, c.addr, c.laddr, c.name, (now_ms - c.created_ms) / 1000, (now_ms - c.last_cmd_ms) / 1000,
      c.last_cmd.empty() ? "NULL" : c.last_cmd, c.user ? c.user->name : "default", c.protocol);
}

void acl_log(sec::Acl& acl, const ClientState& c, std::string reason, std::string object, std::string username,
             int64_t now_ms) {
  sec::LogEntry e;
  e.reason = std::move(reason);
  e.context = c.in_exec ? "multi" : "toplevel";
  e.object = std::move(object);
  e.username = std::move(username);
  e.client_info = client_info(c, now_ms);
  acl.log(std::move(e));
}

namespace {

void reply_user(const sec::User& u, Reply& r) {
  r.map(6);
  r.bulk("flags");
  r.array(u.nopass ? 2 : 1);
  r.bulk(u.enabled ? "on" : "off");
  if (u.nopass) r.bulk("nopass");
  r.bulk("passwords");
  r.array(u.passwords.size());
  for (auto& h : u.passwords) r.bulk(h);
  r.bulk("commands");
  r.bulk(u.describe_commands());
  r.bulk("keys");
  std::string keys;
  if (u.allkeys) keys = "~*";
  for (auto& k : u.keys) keys += (keys.empty() ? "~" : " ~") + k;
  r.bulk(keys);
  r.bulk("channels");
  std::string ch;
  if (u.allchannels) ch = "&*";
  for (auto& k : u.channels) ch += (ch.empty() ? "&" : " &") + k;
  r.bulk(ch);
  r.bulk("selectors");
  r.array(0);
}

void cmd_acl(CmdCtx& c, Args a, Reply& r) {
  std::string sub = to_lower(a[1]);
  if (sub == "help") {
    static const char* kHelp[] = {
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]", "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]", "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>", "    Get the user's details.",
        "LIST", "    Show users details in config file format.",
        "LOCKOUTS", "    Users and client addresses with failed authentications on this node, and their locks.",
        "LOG [<count> | RESET]", "    Show the ACL log entries.",
        "REVOCATIONS", "    The revoked tokens (id, expiry, user), on every node until they expire.",
        "REVOKE <token> | REVOKE <id> <expires-unix-seconds>",
        "    Refuse a token, and every token attenuated from it, on every node.",
        "SETUSER <username> <attribute> [<attribute> ...]", "    Create or modify a user with the specified attributes.",
        "UNLOCK <user:name | addr:ip | *>", "    Forget failed authentications (and lift the lock) on this node.",
        "USERS", "    List all the registered usernames.",
        "WHOAMI", "    Return the current connection username.",
        "HELP", "    Print this help."};
    r.array(std::size(kHelp));
    for (auto* l : kHelp) r.simple(l);
    return;
  }
  if (!c.acl) return r.error("ERR users and access rules are not available on this server");
  auto& acl = *c.acl;
  if (sub == "whoami" && a.size() == 2) return r.bulk(c.client && c.client->user ? c.client->user->name : "default");
  if (sub == "users" && a.size() == 2) {
    auto us = acl.users();
    r.array(us.size());
    for (auto& u : us) r.bulk(u->name);
    return;
  }
  if (sub == "list" && a.size() == 2) {
    auto us = acl.users();
    r.array(us.size());
    for (auto& u : us) r.bulk("user " + u->name + " " + u->describe());
    return;
  }
  if (sub == "getuser" && a.size() == 3) {
    auto u = acl.find(a[2]);
    if (!u) return r.null();
    return reply_user(*u, r);
  }
  if (sub == "cat" && (a.size() == 2 || a.size() == 3)) {
    if (a.size() == 2) {
      auto names = sec::category_names();
      r.array(names.size());
      for (auto n : names) r.bulk(n);
      return;
    }
    auto cat = sec::category_by_name(a[2]);
    if (!cat) return r.error(fmt::format("ERR Unknown category '{}'", a[2]));
    std::vector<std::string_view> names;
    for (auto* s : all_commands())
      if (command_categories(*s) & sec::cat_bit(*cat)) names.push_back(s->name);
    r.array(names.size());
    for (auto n : names) r.bulk(n);
    return;
  }
  if (sub == "dryrun" && a.size() >= 4) {
    auto u = acl.find(a[2]);
    if (!u) return r.error(fmt::format("ERR User '{}' not found", a[2]));
    const CommandSpec* spec = find_command(a[3]);
    if (!spec) return r.error(fmt::format("ERR Command '{}' not found", a[3]));
    Args rest = a.subspan(3);
    if (!arity_ok(*spec, rest.size())) return r.error(wrong_args(spec->name));
    auto d = acl_check(*u, *spec, rest);
    return d ? r.bulk(d->dryrun) : r.ok();
  }
  if (sub == "log" && a.size() <= 3) {
    size_t count = 10;
    if (a.size() == 3) {
      if (iequals(a[2], "reset")) {
        acl.log_reset();
        return r.ok();
      }
      int64_t n = 0;
      if (!parse_int64(a[2], n) || n < 0) return r.error("ERR value is out of range, must be positive");
      count = static_cast<size_t>(n);
    }
    auto entries = acl.log_entries(count);
    r.array(entries.size());
    for (auto& e : entries) {
      r.map(7);
      r.bulk("count");
      r.integer(static_cast<int64_t>(e.count));
      r.bulk("reason");
      r.bulk(e.reason);
      r.bulk("context");
      r.bulk(e.context);
      r.bulk("object");
      r.bulk(e.object);
      r.bulk("username");
      r.bulk(e.username);
      r.bulk("age-seconds");
      r.dbl(static_cast<double>(c.now_ms - e.created_ms) / 1000.0);
      r.bulk("client-info");
      r.bulk(e.client_info);
    }
    return;
  }
  if (sub == "lockouts" && a.size() == 2) {
    // One map per subject, most recent failure first: this node's table (a node outside a cluster;
    // a cluster member answers from the cluster's table in Server::Impl::acl_admin).
    return reply_lockouts(r, acl.lockouts(), c.now_ms);
  }
  if (sub == "revocations" && a.size() == 2) {
    auto all = acl.revocations();
    r.array(all.size());
    for (auto& e : all) {
      r.map(4);
      r.bulk("id");
      r.bulk(e.id);
      r.bulk("expires-s");
      r.integer(e.expires_s);
      r.bulk("user");
      r.bulk(e.user);
      r.bulk("revoked-at-s");
      r.integer(e.revoked_at_s);
    }
    return;
  }
  if (sub == "unlock" && a.size() == 3) {
    std::string_view subject = a[2];
    if (subject != "*" && !subject.starts_with("user:") && !subject.starts_with("addr:"))
      return r.error(fmt::format("ERR '{}' is not a lockout subject; allowed: user:<name>, addr:<ip> (as ACL LOCKOUTS "
                                 "shows them) or * for all",
                                 subject.substr(0, 128)));
    const size_t cleared = acl.unlock(subject);
    std::string addr = c.client ? c.client->addr : std::string();
    if (auto colon = addr.rfind(':'); colon != std::string::npos) addr.resize(colon);
    security::audit::emit(security::audit::kUnlock,
                          {{"subject", std::string(subject)}, {"cleared", std::to_string(cleared)},
                           {"by", c.client && c.client->user ? c.client->user->name : std::string("default")},
                           {"door", "resp"}, {"addr", addr}});
    return r.integer(static_cast<int64_t>(cleared));
  }
  if (sub == "save" || sub == "load")
    return r.error("ERR keel keeps users in cluster metadata, not in an ACL file: every ACL SETUSER is already "
                   "saved on every node");
  if (sub == "genpass") {
    // 256 random bits as hex, or the requested number of bits.
    int64_t bits = 256;
    if (a.size() == 3 && (!parse_int64(a[2], bits) || bits <= 0 || bits > 4096))
      return r.error("ERR ACL GENPASS argument must be the number of bits for the output password, a positive "
                     "number up to 4096");
    return r.bulk(sec::random_hex(static_cast<size_t>((bits + 3) / 4)));
  }
  r.error(fmt::format("ERR unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.", a[1]));
}

}  // namespace

void reply_lockouts(Reply& r, const std::vector<security::Lockout::Entry>& entries, int64_t now_ms) {
  r.array(entries.size());
  for (auto& e : entries) {
    r.map(4);
    r.bulk("subject");
    r.bulk(e.subject);
    r.bulk("failures");
    r.integer(static_cast<int64_t>(e.failures));
    r.bulk("last-failure-age-ms");
    r.integer(now_ms - e.last_failure_ms);
    r.bulk("locked-for-ms");
    r.integer(std::max<int64_t>(0, e.locked_until_ms - now_ms));
  }
}

void register_acl_commands(std::vector<CommandSpec>& t) {
  t.push_back({"acl", -2, kAdmin | kNoScript | kLoading | kStale, 0, 0, 0, Routing::kLocal, cmd_acl, "server",
               "A container for Access List Control commands.", "6.0.0"});
}

}  // namespace keel::resp

// The command table: every RESP command keel serves, with the metadata Redis clients read
// through COMMAND (arity, flags, key positions) and where it runs.
//
// Four places (parse, dispatch, execute, store): the parser yields argv; the server looks the
// command up here and routes it to the shard that owns its key; the handler (one file per
// family) executes against that shard's storage::Engine and writes a Reply.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/random.h"
#include "dht/topology.h"
#include "frontends/resp/reply.h"
#include "observe/trace_context.h"
#include "security/acl.h"
#include "security/token.h"
#include "services/cache/ops.h"
#include "storage/engine.h"

namespace keel::observe {
class SlowLog;
}

namespace keel::resp {

using Args = std::span<const std::string_view>;

// Per-connection state that commands may read or change.
struct ClientState {
  uint64_t id = 0;
  int protocol = 2;
  std::string name;
  std::string addr;   // "ip:port" of the peer
  std::string laddr;  // "ip:port" of our side
  int64_t created_ms = 0;
  int64_t last_cmd_ms = 0;
  std::string last_cmd;
  bool authenticated = true;
  // The user this connection runs as (null: no ACLs on this server), the ACL generation it
  // was read at (a change re-reads it before the next command), and whether it may do
  // everything (no checks per command).
  std::shared_ptr<const security::User> user;
  uint64_t acl_generation = 0;
  bool acl_open = true;
  bool in_exec = false;  // running EXEC's queued commands (ACL LOG context "multi")
  // Set by the server for AUTH / HELLO AUTH: the user whose password it has just checked off
  // the event loop (the handler takes it instead of checking again).
  std::shared_ptr<const security::User> verified;
  // A certificate-bound token (AUTH <user> <token>): its rules, checked beside the user's on
  // every command (null: none). `verified_token` is set with `verified` by the server.
  std::shared_ptr<const security::TokenGrant> token, verified_token;
  // TLS: SHA-256 of the client certificate presented (what tokens are bound to); "" if none.
  std::string cert_sha256;
  bool close_after_reply = false;  // QUIT, protocol errors
  // CLIENT TRACEPARENT: the remote parent of every command this connection runs from now on.
  std::optional<observe::TraceParent> trace_parent;
  // A blocking command (BLPOP ...) found nothing to pop: it replied as a timeout would (what a
  // client inside MULTI gets), and the server blocks the client instead, for
  // `block_timeout_ms` (0: forever) as the handler parsed it.
  bool readonly = false;  // READONLY: reads may be answered by a replica copy (cluster mode)
  bool would_block = false;
  int64_t block_timeout_ms = 0;
  // Set with would_block by a command that blocks with other arguments than it was given
  // (XREAD's "$" resolved to the stream's last id); empty: the command as given.
  std::vector<std::string> block_argv;
  // Channels, patterns and shard channels subscribed to (> 0: subscribed mode; in RESP2 only
  // the pub/sub commands, PING, QUIT and RESET may run, and PING answers ["pong", arg]).
  size_t pubsub = 0;
};

// Read-mostly facts about the node that handlers can report (INFO, CONFIG GET, HELLO).
class NodeView {
 public:
  virtual ~NodeView() = default;
  virtual std::string config_get(std::string_view name) const = 0;  // "" if unknown
  virtual std::vector<std::pair<std::string, std::string>> config_matching(std::string_view pattern) const = 0;
  // Returns an error message (without prefix) or "" on success.
  virtual std::string config_set(std::string_view name, std::string_view value) = 0;
  virtual bool auth(std::string_view user, std::string_view password) const = 0;
  virtual bool auth_required() const = 0;
  virtual std::string_view version() const = 0;
  // This node as cluster-aware clients see it (CLUSTER SLOTS/SHARDS/NODES).
  virtual std::string node_id() const = 0;  // 40 hex characters
  virtual std::string announce_ip() const = 0;
  virtual int announce_port() const = 0;
  // Cluster mode: where every partition lives (null on a node outside a cluster, or before
  // the partition map is known).
  virtual std::shared_ptr<const dht::Topology> topology() const { return nullptr; }
  virtual bool clustered() const { return false; }
  // The node's slow log (SLOWLOG); null: none kept.
  virtual observe::SlowLog* slowlog() const { return nullptr; }
};

struct CmdCtx {
  storage::Engine* engine = nullptr;  // the owning shard's engine (key commands)
  uint32_t partitions = 1024;
  int64_t now_ms = 0;
  ClientState* client = nullptr;
  NodeView* node = nullptr;
  Random* random = nullptr;  // the shard's seeded generator (HRANDFIELD, RANDOMKEY)
  const cache::Catalog* caches = nullptr;  // the named caches this shard knows (CACHE.*)
  security::Acl* acl = nullptr;  // the node's users (AUTH, HELLO, ACL); null: no ACLs
  // Set by a command that writes a named cache: the copies its writes must reach before the
  // reply (the cache's writeQuorum); 0: the partition's write quorum.
  uint32_t write_quorum = 0;
  // A replica copy answers this read (readFrom replica, READONLY): it must change nothing a
  // primary would record (CACHE.GET does not note the access).
  bool replica_read = false;
  // The router already hashed the first key; handlers asking for the same argument get the
  // cached partition instead of a second CRC16.
  const char* routed_key = nullptr;
  uint32_t routed_partition = 0;
  uint32_t partition(std::string_view key) const {
    return key.data() == routed_key ? routed_partition : compute_partition(key);
  }
  uint32_t compute_partition(std::string_view key) const;
};

using Handler = void (*)(CmdCtx& ctx, Args argv, Reply& reply);

enum class Routing : uint8_t {
  kLocal,  // no keys: runs on the connection's shard
  kKey,    // runs on the shard owning argv[first_key] (all keys must share that shard, or the
           // command has a cross-shard implementation in the server)
  kAll,    // touches every shard (DBSIZE, KEYS, SCAN, FLUSHALL...): implemented by the server
};

// Flags as Redis reports them in COMMAND INFO.
enum CommandFlag : uint32_t {
  kWrite = 1u << 0,
  kReadonly = 1u << 1,
  kDenyOom = 1u << 2,
  kFast = 1u << 3,
  kAdmin = 1u << 4,
  kNoAuth = 1u << 5,
  kLoading = 1u << 6,
  kStale = 1u << 7,
  kNoScript = 1u << 8,
  kRandom = 1u << 9,
  kBlocking = 1u << 10,  // may block the client (BLPOP, BZPOPMIN, ...)
};

struct CommandSpec {
  std::string_view name;   // lower case
  int arity;               // Redis semantics: N exact, -N at least N (name included)
  uint32_t flags;
  int first_key, last_key, key_step;
  Routing routing;
  Handler handler;         // null for commands the server implements itself (group "cache":
                           // the caching service's coroutines, cache_admin.h)
  std::string_view group;  // "string", "generic", "hash", "connection", "server"
  std::string_view summary;
  std::string_view since = "1.0.0";
  uint16_t index = 0;  // position in all_commands(): indexes per-command statistics
  // > 0: the keys are counted by argv[numkeys_index] and follow it (LMPOP, SINTERCARD), after
  // any fixed keys from first_key up to it (ZUNIONSTORE's destination); last_key is ignored.
  int numkeys_index = 0;
  // The keys are the first half of the arguments after the STREAMS keyword (XREAD,
  // XREADGROUP); first_key/last_key are ignored.
  bool streams_keys = false;
};

// All commands, looked up by lower-cased name. Case-insensitive find.
const CommandSpec* find_command(std::string_view name);
const std::vector<const CommandSpec*>& all_commands();

// Arity check as Redis does it.
inline bool arity_ok(const CommandSpec& c, size_t argc) {
  return c.arity >= 0 ? argc == static_cast<size_t>(c.arity) : argc >= static_cast<size_t>(-c.arity);
}

// Whether a command may name keys beyond its first one.
inline bool has_other_keys(const CommandSpec& c) {
  return c.last_key != c.first_key || c.numkeys_index > 0 || c.streams_keys;
}

// The position of the key a command is routed by (argv[first_key], or XREAD's first stream;
// 0 when the command names none: the handler replies the syntax error).
size_t routing_key_index(const CommandSpec& c, Args argv);

// Key argument positions of a command invocation (for routing and COMMAND GETKEYS).
std::vector<size_t> command_keys(const CommandSpec& c, Args argv);

// Families register their commands here (one file each).
void register_string_commands(std::vector<CommandSpec>& t);
void register_key_commands(std::vector<CommandSpec>& t);
void register_hash_commands(std::vector<CommandSpec>& t);
void register_list_commands(std::vector<CommandSpec>& t);
void register_set_commands(std::vector<CommandSpec>& t);
void register_zset_commands(std::vector<CommandSpec>& t);
void register_bitmap_commands(std::vector<CommandSpec>& t);
void register_server_commands(std::vector<CommandSpec>& t);
void register_cluster_commands(std::vector<CommandSpec>& t);
void register_cache_commands(std::vector<CommandSpec>& t);
void register_route_commands(std::vector<CommandSpec>& t);
void register_transit_commands(std::vector<CommandSpec>& t);
void register_secret_commands(std::vector<CommandSpec>& t);
void register_stream_commands(std::vector<CommandSpec>& t);

// Blocked XREAD / XREADGROUP (stream_commands.cpp): whether stream `key` (null: absent) has
// what the blocked command `argv` waits for, and that command narrowed to `key` alone.
bool stream_block_ready(const storage::ValueRef* v, Args argv, std::string_view key);
std::vector<std::string> stream_block_args(Args argv, std::string_view key);
void register_pubsub_commands(std::vector<CommandSpec>& t);
void register_acl_commands(std::vector<CommandSpec>& t);
// ACL LOCKOUTS's reply: one map per subject (acl_commands.cpp; the node's table or the cluster's).
void reply_lockouts(Reply& r, const std::vector<security::Lockout::Entry>& entries, int64_t now_ms);

// Users and access rules (acl_commands.cpp).
// Whether a command's first argument names a subcommand (CONFIG GET): "config|get" in rules,
// errors and ACL LOG.
bool is_container(std::string_view name);
std::string full_command_name(const CommandSpec& spec, Args argv);
// Redis's ACL categories of a command (security/acl.h), from its group and flags.
uint64_t command_categories(const CommandSpec& spec);
// The catalog ACL rules name: every command of the table, in table order (CommandSpec::index).
security::CommandCatalog acl_catalog();
// Why `user` may not run `argv` (null: it may): the command, a key or a channel.
struct AclDenial {
  std::string reason;  // command | key | channel (ACL LOG)
  std::string object;  // the command's full name, the key or the channel
  std::string error;   // the reply: "NOPERM this user has no permissions to ..."
  std::string dryrun;  // ACL DRYRUN's answer: "This user has no permissions to ..."
};
std::optional<AclDenial> acl_check(const security::User& user, const CommandSpec& spec, Args argv);
// Why a token's rules refuse `argv` (every block must allow it); the error names the block.
std::optional<AclDenial> token_check(const security::TokenGrant& grant, const CommandSpec& spec, Args argv);
// CLIENT LIST's line for a client (ACL LOG's client-info).
std::string client_info(const ClientState& c, int64_t now_ms);
// Records a denial or a failed AUTH in the ACL LOG.
void acl_log(security::Acl& acl, const ClientState& c, std::string reason, std::string object,
             std::string username, int64_t now_ms);

// Replies for COMMAND, COMMAND INFO, COMMAND DOCS, COMMAND COUNT (server_commands.cpp).
void reply_command_info(const CommandSpec& c, Reply& r);
void reply_command_docs(const CommandSpec& c, Reply& r);

// Helpers shared by families.
bool parse_int64(std::string_view s, int64_t& out);        // Redis string2ll rules
bool parse_long_double(std::string_view s, long double& out);  // Redis string2ld rules
bool iequals(std::string_view a, std::string_view b);
bool glob_match(std::string_view pattern, std::string_view str, bool nocase = false);
std::string to_lower(std::string_view s);

}  // namespace keel::resp

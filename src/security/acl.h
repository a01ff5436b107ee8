// Users and access rules in Redis's model (ACL SETUSER rules), shared by every door.
//
// Pure parts: command categories, the catalog of commands the rules name, a User and the rule
// language that changes it (apply_rule), its canonical description (describe: the rules that
// rebuild it, which is also how a user is stored in cluster metadata), and the checks a door
// runs per request (command, key patterns, channel patterns).
// Effectful parts: password hashing (Argon2id from libsodium: slow and salted; nothing else of
// a password is kept) and the node's registry of users (Acl), with a per-node cache of
// verified passwords so that a client authenticating again costs a keyed hash, not Argon2id.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "security/lockout.h"

namespace keel::security {

class TokenKey;
struct TokenGrant;

// Redis's categories, then keel's own (one per keel command family).
enum Category : unsigned {
  kCatKeyspace,
  kCatRead,
  kCatWrite,
  kCatSet,
  kCatSortedSet,
  kCatList,
  kCatHash,
  kCatString,
  kCatBitmap,
  kCatHyperLogLog,
  kCatGeo,
  kCatStream,
  kCatPubSub,
  kCatAdmin,
  kCatFast,
  kCatSlow,
  kCatBlocking,
  kCatDangerous,
  kCatConnection,
  kCatTransaction,
  kCatScripting,
  kCatCache,  // CACHE.*
  kCatRoute,  // ROUTE.*
  kCatTransit,  // TRANSIT.*
  kCatSecret,   // SECRET.*
  kCatCount,
};
inline constexpr uint64_t cat_bit(Category c) { return uint64_t{1} << c; }
std::span<const std::string_view> category_names();  // indexed by Category, without '@'
std::optional<Category> category_by_name(std::string_view name);  // case-insensitive, no '@'

// The commands rules can name, in a fixed order (a command's index is its bit in a user's
// permissions). `container`: its first argument is a subcommand (CONFIG GET), so rules may
// name "config|get".
struct CatalogEntry {
  std::string name;  // lower case
  uint64_t categories = 0;
  bool container = false;
};
class CommandCatalog {
 public:
  CommandCatalog() = default;
  explicit CommandCatalog(std::vector<CatalogEntry> entries);
  size_t size() const { return entries_.size(); }
  const CatalogEntry& at(size_t i) const { return entries_[i]; }
  std::optional<uint16_t> find(std::string_view name) const;  // case-insensitive

 private:
  std::vector<CatalogEntry> entries_;
  std::unordered_map<std::string, uint16_t> by_name_;
};

// Password hashing cost (Argon2id). The defaults follow OWASP's minimum (19 MiB, 2 passes);
// tests use the library's minimum.
struct HashCost {
  uint64_t ops = 2;
  size_t mem_bytes = 19u << 20;
};
void set_hash_cost(HashCost cost);  // process-wide, before any hashing
Result<std::string> hash_password(std::string_view password);  // "$argon2id$v=19$..."
bool verify_password(const std::string& hash, std::string_view password);
bool looks_like_hash(std::string_view s);  // a "$argon2id$..." string this build can verify
std::string random_hex(size_t chars);       // from the system's secure random source (ACL GENPASS)

struct User {
  std::string name;
  bool enabled = false;
  bool nopass = false;
  std::vector<std::string> passwords;  // Argon2id hashes
  // Commands: "+@all" (every command, also those added later) or "-@all", then the ordered
  // rules after it ("+get", "-@write", "+config|get"); the bits are computed from them.
  bool allcommands = false;
  std::vector<std::string> command_rules;
  std::vector<uint64_t> allowed;  // bit per catalog index
  // Subcommands allowed (or refused) of a command whose bit is off (on).
  std::map<uint16_t, std::vector<std::string>> sub_allowed, sub_denied;
  bool allkeys = false;
  std::vector<std::string> keys;
  bool allchannels = false;
  std::vector<std::string> channels;

  // Everything allowed (ACL checks can be skipped): all commands, keys and channels.
  bool unrestricted() const { return allcommands && command_rules.empty() && allkeys && allchannels; }
  bool can_run(uint16_t index, std::string_view sub = {}) const;
  bool key_allowed(std::string_view key) const;
  // A channel (glob-matched against the patterns) or, for PSUBSCRIBE, a pattern (must equal
  // one of them).
  bool channel_allowed(std::string_view channel, bool is_pattern) const;
  // The rules that rebuild this user from nothing, as ACL LIST shows them (without "user
  // <name>"): "on nopass ~* &* +@all".
  std::string describe() const;
  std::string describe_commands() const;  // "+@all -get", "-@all +@hash"
};

// A fresh user as ACL SETUSER creates it: off, no password, no commands, keys or channels.
User new_user(std::string name);
// The built-in default user: on, nopass, everything.
User default_user();

// Applies one rule. Errors are Redis's texts ("Syntax error", "Unknown command or category
// name in ACL", ...) with what is allowed appended where Redis gives nothing more; the
// caller prefixes "Error in ACL SETUSER modifier '<rule>': ". `>password` hashes (slow).
Status apply_rule(User& u, std::string_view rule, const CommandCatalog& catalog);
// Applies rules in order, all or nothing (the user is unchanged on error). `error_rule` gets
// the rule that failed.
Status apply_rules(User& u, std::span<const std::string> rules, const CommandCatalog& catalog,
                   std::string* error_rule = nullptr);
// Splits a description into rules (on spaces) and builds the user: how stored users are read.
Result<User> parse_user(std::string name, std::string_view description, const CommandCatalog& catalog);
// Names of users: 1..128 printable characters without spaces.
Status check_user_name(std::string_view name);

// One ACL LOG entry (Redis 7.0's fields).
struct LogEntry {
  std::string reason;   // auth | command | key | channel
  std::string context;  // toplevel | multi
  std::string object;
  std::string username;
  std::string client_info;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  uint64_t count = 1;
};

// The node's users: what metadata holds (or the built-in default while it holds none).
// Thread-safe. A connection keeps a shared_ptr to its user and refreshes it when
// generation() moves (one relaxed atomic load per command).
class Acl {
 public:
  explicit Acl(CommandCatalog catalog);
  const CommandCatalog& catalog() const { return catalog_; }
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  const std::atomic<uint64_t>& generation_counter() const { return generation_; }

  std::shared_ptr<const User> find(std::string_view name) const;
  std::shared_ptr<const User> default_user() const;
  std::vector<std::shared_ptr<const User>> users() const;  // by name
  // The user when `password` is right and the user is on; else null. Verified passwords are
  // remembered (a keyed BLAKE2b of user and password, never the password) until the user's
  // hashes change, so a repeated AUTH or HTTP request does not pay Argon2id again.
  std::shared_ptr<const User> authenticate(std::string_view name, std::string_view password);
  // authenticate() when it can answer without Argon2id (no such user, off, nopass, or a
  // remembered match); nullopt when the password must be hashed.
  std::optional<std::shared_ptr<const User>> authenticate_cached(std::string_view name, std::string_view password);

  // Called (on the thread that made it, without locks held) after every change of the users:
  // front ends re-check connections that send no commands (subscribers). Set before changes
  // start; null to stop.
  void set_on_change(std::function<void()> cb);

  // The default user while metadata holds none (requirepass from the configuration).
  void set_builtin_default(User u);
  // What metadata holds: every user (reset), or one change.
  void replace_all(std::vector<User> users);
  void put(User u);
  void erase(std::string_view name);

  // ACL LOG.
  void log(LogEntry e);
  std::vector<LogEntry> log_entries(size_t count) const;  // newest first
  void log_reset();
  size_t max_log = 128;
  // Refusals counted since start (INFO stats, /metrics): failed authentications, and commands,
  // keys and channels outside a user's rules. Counted by log().
  struct Denials {
    uint64_t auth = 0, command = 0, key = 0, channel = 0;
  };
  Denials denials() const;

  // ---- Certificate-bound tokens (security/token.h) ----
  // The public key tokens must be signed with (auth.token_public_key_file); null: tokens off.
  void set_token_key(std::shared_ptr<const TokenKey> key);
  bool tokens_enabled() const;
  struct TokenLogin {
    std::shared_ptr<const User> user;
    std::shared_ptr<const TokenGrant> grant;
  };
  // Verifies `token` for a client that presented the certificate `cert_sha256` ("" if none)
  // and names `name` (empty: the token's user): the user must exist and be on. Errors say why.
  // `require_proof`: false for a signed HTTP request, whose signature proves the holder key.
  // A token verified before (same text, certificate and mode) is not verified again until it
  // expires.
  Result<TokenLogin> authenticate_token(std::string_view name, std::string_view token,
                                        std::string_view cert_sha256, int64_t now_ms,
                                        bool require_proof = true) const;

  // ---- Revoked tokens (security/token.h, "Revocation"); AclService follows them in cluster
  // metadata (domain "acl", keys "revoked/<id>") ----
  struct Revocation {
    std::string id;         // a block's revocation id (32 hex digits)
    int64_t expires_s = 0;  // the revoked token's expiry: after it the entry is not needed
    std::string user;       // the user the token named ("" if revoked by id alone)
    int64_t revoked_at_s = 0;
  };
  // Each change moves generation() (connections re-check their token before the next command).
  void replace_revocations(std::vector<Revocation> all);
  void put_revocation(Revocation r);
  void erase_revocation(std::string_view id);
  std::vector<Revocation> revocations() const;  // by id
  // The first of the grant's block ids that is revoked; nullopt if none is.
  std::optional<std::string> revoked(const TokenGrant& grant) const;

  // ---- Certificate identities as users (auth.cert_users) ----
  void set_cert_users(bool enabled, std::string cluster_id);
  // The user a client certificate names (spiffe://<cluster>/client/<name> among `uris`), when
  // the setting is on and the user exists and is on; else null.
  std::shared_ptr<const User> user_for_certificate(const std::vector<std::string>& uris) const;

  // ---- Brute-force lockout (security/lockout.h), per user and per client address ----
  void set_lockout_policy(LockoutPolicy p);
  struct Locked {
    std::string subject;  // "user:<name>" or "addr:<ip>"
    int64_t remaining_ms = 0;
  };
  // Whether an attempt for `user` from `ip` must be refused without checking it; counts the
  // refusal.
  std::optional<Locked> locked(std::string_view user, std::string_view ip, int64_t now_ms);
  // The same, without counting a refusal.
  std::optional<Locked> lock_of(std::string_view user, std::string_view ip, int64_t now_ms) const;
  void count_lockout_refusal() { lockout_refusals_.fetch_add(1, std::memory_order_relaxed); }
  void count_lockout_started() { lockouts_started_.fetch_add(1, std::memory_order_relaxed); }
  LockoutPolicy lockout_policy() const;
  void auth_failed(std::string_view user, std::string_view ip, int64_t now_ms);
  // Returns whether this node held a record of the user or the address.
  bool auth_succeeded(std::string_view user, std::string_view ip);
  // Replaces this node's record of a subject with the cluster's (Lockout::mirror).
  void mirror_lockout(const Lockout::Entry& e);
  std::vector<Lockout::Entry> lockouts() const;
  size_t unlock(std::string_view subject);
  uint64_t lockout_refusals() const { return lockout_refusals_.load(std::memory_order_relaxed); }
  uint64_t lockouts_started() const { return lockouts_started_.load(std::memory_order_relaxed); }
  uint64_t token_refusals() const { return token_refusals_.load(std::memory_order_relaxed); }

 private:
  void bump_locked();
  std::string cache_key(std::string_view name, std::string_view password) const;
  CommandCatalog catalog_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const User>, std::less<>> users_;
  std::shared_ptr<const User> builtin_default_;
  std::atomic<uint64_t> generation_{1};
  std::unordered_map<std::string, std::string> verified_;  // user \0 mac -> hash it matched
  std::deque<LogEntry> log_;
  std::function<void()> on_change_;  // under mu_
  void changed();
  std::atomic<uint64_t> denied_auth_{0}, denied_command_{0}, denied_key_{0}, denied_channel_{0};
  unsigned char mac_key_[32];
  std::shared_ptr<const TokenKey> token_key_;  // under mu_
  // Tokens verified before (SHA-256 of token, certificate and proof mode -> grant), so that a
  // Bearer token sent with every HTTP request costs a hash, not its signatures. Bounded
  // (4096, cleared when full or when the key changes); a hit still checks the expiry.
  mutable std::mutex token_cache_mu_;
  mutable std::unordered_map<std::string, std::shared_ptr<const TokenGrant>> token_cache_;
  std::map<std::string, Revocation, std::less<>> revoked_;  // under mu_
  bool cert_users_ = false;                    // under mu_
  std::string cluster_id_;                     // under mu_
  mutable std::mutex lockout_mu_;
  Lockout lockout_;  // under lockout_mu_
  std::atomic<uint64_t> lockout_refusals_{0}, lockouts_started_{0};
  mutable std::atomic<uint64_t> token_refusals_{0};
};

// Which revocations are no longer needed at `now_s`: those whose token expired more than
// kRevocationGraceS ago. The grace covers clocks that differ between nodes: a node whose clock
// is behind may still take the token as unexpired for that long. Pure; at most `max` ids.
inline constexpr int64_t kRevocationGraceS = 300;
// A revocation as metadata keeps it (key "revoked/<id>"): {"expires_s":..,"user":..,"revoked_at_s":..}.
std::string encode_revocation(const Acl::Revocation& r);
Result<Acl::Revocation> decode_revocation(std::string_view id, std::string_view value);
std::vector<std::string> prunable_revocations(const std::vector<Acl::Revocation>& all, int64_t now_s, size_t max);

}  // namespace keel::security

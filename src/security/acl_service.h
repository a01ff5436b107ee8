// The users of the cluster, kept in cluster metadata (domain "acl", key "users/<name>", value
// the user's description: the rules that rebuild it, passwords as Argon2id hashes) and
// followed on every node with a metadata subscription into the node's security::Acl.
//
// ACL SETUSER on any node reads the user as this node knows it, applies the rules (hashing new
// passwords here, so only hashes travel and are stored), and writes it back with
// compare-and-set on the version it read; a change decided first elsewhere makes it read again
// and retry. It answers once the change is decided and this node's registry shows it. A single
// node is a one-member cluster: the same path.
//
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "observe/trace_context.h"
#include "security/acl.h"

namespace keel::cluster {
class MetaService;
}

namespace keel::security {

inline constexpr const char* kAclDomain = "acl";
inline constexpr int64_t kRevocationPruneIntervalS = 60;

class AclService {
 public:
  explicit AclService(Acl& acl);
  ~AclService();
  void set_meta(cluster::MetaService* meta);  // before start(); without it changes are refused
  void start();
  void stop();
  Acl& acl();

  // Coroutines; run them on a shard's executor. Errors: kInvalidArgument with
  // "Error in ACL SETUSER modifier '<rule>': ..." (Redis's text), kUnavailable / kTimeout
  // from metadata.
  boost::asio::awaitable<Status> setuser(const std::string& name, const std::vector<std::string>& rules);
  // The same for a traced request: each metadata write's Rabia decision is a child span of
  // trace->span_id (cluster/driver.h, "Tracing").
  boost::asio::awaitable<Status> setuser(const std::string& name, const std::vector<std::string>& rules,
                                         std::optional<observe::TraceParent> trace);
  // Acl::authenticate with the Argon2id check (when needed) on the service's own thread, so
  // an event loop never waits for it; resumes on the calling coroutine's executor.
  boost::asio::awaitable<std::shared_ptr<const User>> authenticate(const std::string& name,
                                                                    const std::string& password);
  // How many of `names` existed. Refuses "default" (kInvalidArgument) before deleting anything.
  boost::asio::awaitable<Result<int64_t>> deluser(const std::vector<std::string>& names);

  // Revokes a token on every node: metadata key "revoked/<id>" (value: JSON with expires_s,
  // user, revoked_at_s) that every node follows into Acl::put_revocation. `r.id` is a block's
  // revocation id (security/token.h): that token and every token attenuated from it are refused.
  // Answers once the entry is decided and this node enforces it. Errors: kInvalidArgument (not
  // an id, no expiry), kUnavailable / kTimeout from metadata.
  boost::asio::awaitable<Status> revoke(Acl::Revocation r);
  // Deletes the entries of tokens that expired more than kRevocationGraceS ago (at most 256 per
  // call, compare-and-set on the version seen: a newer revocation of the same id stays).
  // start() runs it every kRevocationPruneIntervalS on a thread of its own; any node may, and
  // several doing it at once only find the entry gone.
  size_t prune_revocations(int64_t now_s);

  // ---- Brute-force lockout, cluster-wide (docs/security.md, "Lockout after failed
  // authentications") ----
  // With a command runner (a member of a cluster), failures and locks are kept in the keyspace
  // (the hash kLockoutKey, security/lockout.h), so every node counts and refuses alike; this
  // node's table (Acl) mirrors what it read, for the decisions made without asking (a password
  // the node verified before), and is the fallback when the keyspace cannot be reached. Without
  // one (a node outside a cluster), the node's table only.
  // `run`: runs one command as the node itself (no user, no ACL check, no audit event), routed
  // to the key's primary; the RESP2 reply on any thread. Set before serving.
  using CommandRunner = std::function<void(std::vector<std::string> argv, std::function<void(std::string)> done)>;
  void set_command_runner(CommandRunner run);
  bool lockout_cluster_wide() const;
  struct LockCheck {
    std::optional<Acl::Locked> locked;  // refuse unchecked (counted as a refusal)
    bool recorded = false;              // the cluster holds failures of the user or the address
  };
  // Whether an attempt for `user` from `ip` must be refused, by the cluster's records (one
  // read). Unreachable: this node's table decides (still a bound per node), and it is counted
  // (lockout_store_errors).
  boost::asio::awaitable<LockCheck> lockout_check(std::string user, std::string ip, int64_t now_ms);
  // The check every door makes before it verifies a credential: the cluster's records are read
  // (lockout_check) unless the credential needs no slow check (`verified_before`: a password
  // this node verified before, or a token) and this node's copy shows no lock; otherwise, and
  // on a node outside a cluster, this node's table decides.
  boost::asio::awaitable<LockCheck> lockout_gate(std::string user, std::string ip, int64_t now_ms,
                                                 bool verified_before);
  // A failed authentication: counted cluster-wide (this node's table when unreachable); a lock
  // that starts is logged (auth.lockout) and mirrored here.
  boost::asio::awaitable<void> lockout_failed(std::string user, std::string ip, int64_t now_ms);
  // A success: clears this node's records of the user and address, and the cluster's when
  // `recorded` or this node held any.
  boost::asio::awaitable<void> lockout_succeeded(std::string user, std::string ip, bool recorded);
  // ACL LOCKOUTS / GET /v1/auth/lockouts: the cluster's records (this node's without a runner).
  // Error (kUnavailable) when the keyspace cannot be read.
  boost::asio::awaitable<Result<std::vector<Lockout::Entry>>> lockouts();
  // ACL UNLOCK: clears a subject (or "*": all) cluster-wide and in this node's table; other
  // nodes' tables follow at their next check. Returns how many subjects were cleared.
  boost::asio::awaitable<Result<size_t>> unlock(std::string subject);
  uint64_t lockout_store_errors() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace keel::security

// Brute-force lockout after failed authentications (issue 11, attack protection).
//
// Pure: the caller passes `now_ms`. One record per subject ("user:<name>" and "addr:<ip>");
// after `threshold` failures in a row a subject is locked for base_ms, doubling with every
// further failure up to max_ms. Attempts while locked are refused without being checked (and
// not counted); a success clears the subject. Bounded: at most `max_entries` records; when
// full, the least recently failed record is forgotten (an attacker filling the table with
// addresses can make the node forget older counts, never lock anyone who did not fail).
// Not thread-safe: the owner (security::Acl) holds a mutex.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace keel::security {

struct LockoutPolicy {
  uint64_t threshold = 10;     // failures in a row before the first lock; 0 = lockout off
  int64_t base_ms = 1000;      // the first lock; doubles with each further failure
  int64_t max_ms = 600000;     // the longest lock
  size_t max_entries = 65536;  // subjects remembered
};

class Lockout {
 public:
  explicit Lockout(LockoutPolicy p = {}) : policy_(p) {}
  const LockoutPolicy& policy() const { return policy_; }
  void set_policy(LockoutPolicy p);

  // Milliseconds the subject stays locked (> 0), or 0 when it may try.
  int64_t locked_for(std::string_view subject, int64_t now_ms) const;
  // A failed attempt; returns the lock it starts (ms, 0 if none).
  int64_t failure(std::string_view subject, int64_t now_ms);
  void success(std::string_view subject);

  struct Entry {
    std::string subject;
    uint64_t failures = 0;
    int64_t last_failure_ms = 0;
    int64_t locked_until_ms = 0;
  };
  // Every remembered subject, most recent failure first.
  std::vector<Entry> entries() const;
  // Clears one subject ("user:alice", "addr:10.0.0.7") or, with "*", every one. Returns how
  // many records were cleared.
  size_t unlock(std::string_view subject);
  size_t size() const { return index_.size(); }
  // The record as the cluster holds it (security/lockout_store.h): replaces this node's record
  // of the subject (failures == 0: forgets it), so that later decisions on this node, made
  // without asking the cluster, see it. Bounded as failure().
  void mirror(const Entry& e);

  // Pure: the lock that `failures` failures in a row start (ms, 0 if none).
  static int64_t lock_ms(const LockoutPolicy& p, uint64_t failures);

 private:
  int64_t lock_ms(uint64_t failures) const { return lock_ms(policy_, failures); }
  LockoutPolicy policy_;
  std::list<Entry> lru_;  // most recent failure first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

// ---- The cluster-wide table (security/lockout_store.h), pure parts ----
// One hash key in the keyspace; per subject two fields: "<subject>" (failures in a row, an
// integer for HINCRBY) and "<subject> t" ("<last_failure_ms> <locked_until_ms>"). Subjects
// have no spaces (user names have none, nor addresses), so the two never collide.
inline constexpr std::string_view kLockoutKey = "keel:lockouts";
std::string lockout_times_field(std::string_view subject);
std::string encode_lockout_times(int64_t last_failure_ms, int64_t locked_until_ms);
// A subject's entry from its two values (absent or malformed: 0).
Lockout::Entry lockout_entry(std::string subject, const std::optional<std::string>& failures,
                             const std::optional<std::string>& times);
// Every subject of HGETALL's field/value pairs, most recent failure first.
std::vector<Lockout::Entry> lockout_entries(const std::vector<std::optional<std::string>>& flat);
// A RESP2 reply that is an array of bulk strings (HMGET, HGETALL): its items (null: nullopt);
// nullopt when it is anything else (an error reply, a cut reply).
std::optional<std::vector<std::optional<std::string>>> parse_bulk_array(std::string_view reply);
// A RESP2 integer reply; nullopt when it is anything else.
std::optional<int64_t> parse_integer_reply(std::string_view reply);

}  // namespace keel::security

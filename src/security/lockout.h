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

 private:
  int64_t lock_ms(uint64_t failures) const;
  LockoutPolicy policy_;
  std::list<Entry> lru_;  // most recent failure first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace keel::security

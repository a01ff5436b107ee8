#include "security/lockout.h"

#include <algorithm>

#include "base/assert.h"

namespace keel::security {

void Lockout::set_policy(LockoutPolicy p) {
  policy_ = p;
  while (index_.size() > policy_.max_entries && !lru_.empty()) {
    index_.erase(lru_.back().subject);
    lru_.pop_back();
  }
}

int64_t Lockout::lock_ms(uint64_t failures) const {
  if (policy_.threshold == 0 || failures < policy_.threshold) return 0;
  uint64_t doublings = std::min<uint64_t>(failures - policy_.threshold, 40);
  int64_t ms = policy_.base_ms;
  for (uint64_t i = 0; i < doublings && ms < policy_.max_ms; ++i) ms *= 2;
  return std::min(ms, policy_.max_ms);
}

int64_t Lockout::locked_for(std::string_view subject, int64_t now_ms) const {
  if (policy_.threshold == 0) return 0;
  auto it = index_.find(std::string(subject));
  if (it == index_.end()) return 0;
  return std::max<int64_t>(0, it->second->locked_until_ms - now_ms);
}

int64_t Lockout::failure(std::string_view subject, int64_t now_ms) {
  if (policy_.threshold == 0 || policy_.max_entries == 0) return 0;
  std::string key(subject);
  auto it = index_.find(key);
  if (it == index_.end()) {
    if (index_.size() >= policy_.max_entries) {
      index_.erase(lru_.back().subject);
      lru_.pop_back();
    }
    lru_.push_front(Entry{key, 0, now_ms, 0});
    it = index_.emplace(key, lru_.begin()).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second);
  }
  Entry& e = *it->second;
  ++e.failures;
  e.last_failure_ms = now_ms;
  int64_t ms = lock_ms(e.failures);
  if (ms > 0) e.locked_until_ms = now_ms + ms;
  KEEL_ASSERT(index_.size() <= policy_.max_entries);
  KEEL_ASSERT(index_.size() == lru_.size());
  return ms;
}

void Lockout::success(std::string_view subject) {
  auto it = index_.find(std::string(subject));
  if (it == index_.end()) return;
  lru_.erase(it->second);
  index_.erase(it);
}

std::vector<Lockout::Entry> Lockout::entries() const { return {lru_.begin(), lru_.end()}; }

size_t Lockout::unlock(std::string_view subject) {
  if (subject == "*") {
    size_t n = index_.size();
    index_.clear();
    lru_.clear();
    return n;
  }
  auto it = index_.find(std::string(subject));
  if (it == index_.end()) return 0;
  lru_.erase(it->second);
  index_.erase(it);
  return 1;
}

}  // namespace keel::security

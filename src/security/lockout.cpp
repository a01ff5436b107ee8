#include "security/lockout.h"

#include <algorithm>
#include <charconv>

#include "base/assert.h"

namespace keel::security {

void Lockout::set_policy(LockoutPolicy p) {
  policy_ = p;
  while (index_.size() > policy_.max_entries && !lru_.empty()) {
    index_.erase(lru_.back().subject);
    lru_.pop_back();
  }
}

int64_t Lockout::lock_ms(const LockoutPolicy& p, uint64_t failures) {
  if (p.threshold == 0 || failures < p.threshold) return 0;
  uint64_t doublings = std::min<uint64_t>(failures - p.threshold, 40);
  int64_t ms = p.base_ms;
  for (uint64_t i = 0; i < doublings && ms < p.max_ms; ++i) ms *= 2;
  return std::min(ms, p.max_ms);
}

void Lockout::mirror(const Entry& e) {
  if (e.failures == 0 || policy_.threshold == 0) {
    success(e.subject);
    return;
  }
  if (policy_.max_entries == 0) return;
  auto it = index_.find(e.subject);
  if (it == index_.end()) {
    if (index_.size() >= policy_.max_entries) {
      index_.erase(lru_.back().subject);
      lru_.pop_back();
    }
    lru_.push_front(e);
    index_.emplace(e.subject, lru_.begin());
  } else {
    *it->second = e;
    lru_.splice(lru_.begin(), lru_, it->second);
  }
  KEEL_ASSERT(index_.size() <= policy_.max_entries);
  KEEL_ASSERT(index_.size() == lru_.size());
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

std::string lockout_times_field(std::string_view subject) { return std::string(subject) + " t"; }

std::string encode_lockout_times(int64_t last_failure_ms, int64_t locked_until_ms) {
  return std::to_string(last_failure_ms) + " " + std::to_string(locked_until_ms);
}

namespace {
template <class T>
bool parse_num(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

Lockout::Entry lockout_entry(std::string subject, const std::optional<std::string>& failures,
                             const std::optional<std::string>& times) {
  Lockout::Entry e;
  e.subject = std::move(subject);
  int64_t n = 0;
  if (failures && parse_num(*failures, n) && n > 0) e.failures = static_cast<uint64_t>(n);
  if (times) {
    std::string_view t(*times);
    auto sp = t.find(' ');
    int64_t last = 0, until = 0;
    if (sp != std::string_view::npos && parse_num(t.substr(0, sp), last) && parse_num(t.substr(sp + 1), until)) {
      e.last_failure_ms = last;
      e.locked_until_ms = until;
    }
  }
  return e;
}

std::vector<Lockout::Entry> lockout_entries(const std::vector<std::optional<std::string>>& flat) {
  std::unordered_map<std::string, std::pair<std::optional<std::string>, std::optional<std::string>>> by;
  for (size_t i = 0; i + 1 < flat.size(); i += 2) {
    if (!flat[i]) continue;
    const std::string& f = *flat[i];
    if (f.ends_with(" t")) by[f.substr(0, f.size() - 2)].second = flat[i + 1];
    else by[f].first = flat[i + 1];
  }
  std::vector<Lockout::Entry> out;
  for (auto& [subject, v] : by) {
    auto e = lockout_entry(subject, v.first, v.second);
    if (e.failures > 0) out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const Lockout::Entry& a, const Lockout::Entry& b) {
    return a.last_failure_ms != b.last_failure_ms ? a.last_failure_ms > b.last_failure_ms : a.subject < b.subject;
  });
  return out;
}

namespace {
// One "<type><text>\r\n" line from `pos`.
std::optional<std::string_view> line_at(std::string_view r, size_t& pos) {
  auto end = r.find("\r\n", pos);
  if (end == std::string_view::npos) return std::nullopt;
  auto l = r.substr(pos, end - pos);
  pos = end + 2;
  return l;
}
}  // namespace

std::optional<std::vector<std::optional<std::string>>> parse_bulk_array(std::string_view r) {
  size_t pos = 0;
  auto head = line_at(r, pos);
  int64_t n = 0;
  if (!head || !head->starts_with('*') || !parse_num(head->substr(1), n) || n < 0 || n > (1 << 24)) return std::nullopt;
  std::vector<std::optional<std::string>> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    auto l = line_at(r, pos);
    int64_t len = 0;
    if (!l || !l->starts_with('$') || !parse_num(l->substr(1), len) || len < -1) return std::nullopt;
    if (len == -1) {
      out.emplace_back(std::nullopt);
      continue;
    }
    if (r.size() < pos + static_cast<size_t>(len) + 2 || r.substr(pos + len, 2) != "\r\n") return std::nullopt;
    out.emplace_back(std::string(r.substr(pos, static_cast<size_t>(len))));
    pos += static_cast<size_t>(len) + 2;
  }
  if (pos != r.size()) return std::nullopt;
  return out;
}

std::optional<int64_t> parse_integer_reply(std::string_view r) {
  int64_t n = 0;
  if (!r.starts_with(':') || !r.ends_with("\r\n") || !parse_num(r.substr(1, r.size() - 3), n)) return std::nullopt;
  return n;
}

}  // namespace keel::security

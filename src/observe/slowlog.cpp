#include "observe/slowlog.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace keel::observe {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}
bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// How many leading arguments of this command are kept as they are; the rest may be secrets.
size_t kept_in_clear(std::span<const std::string_view> argv) {
  if (argv.empty()) return 0;
  const std::string_view name = argv[0];
  if (iequals(name, "auth")) return 1;
  if (iequals(name, "config")) return 3;  // CONFIG SET name (redacted)
  if (iequals(name, "hello") || iequals(name, "acl") || iequals(name, "migrate") ||
      istarts_with(name, "secret.") || istarts_with(name, "transit."))
    return 2;
  return argv.size();
}

}  // namespace

SlowLog::SlowLog(int64_t slower_than_us, uint64_t max_len)
    : slower_than_us_(slower_than_us), max_len_(max_len) {}

void SlowLog::configure(int64_t slower_than_us, uint64_t max_len) {
  slower_than_us_.store(slower_than_us, std::memory_order_relaxed);
  max_len_.store(max_len, std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  while (entries_.size() > max_len) entries_.pop_back();
}

std::vector<std::string> SlowLog::shape_args(std::span<const std::string_view> argv) {
  const size_t argc = argv.size();
  const size_t n = std::min(argc, kMaxArgs);
  const size_t clear = kept_in_clear(argv);
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t j = 0; j < n; ++j) {
    if (n != argc && j == n - 1) {
      out.push_back(fmt::format("... ({} more arguments)", argc - n + 1));
    } else if (j >= clear) {
      out.emplace_back("(redacted)");
    } else if (argv[j].size() > kMaxArgBytes) {
      out.push_back(fmt::format("{}... ({} more bytes)", argv[j].substr(0, kMaxArgBytes), argv[j].size() - kMaxArgBytes));
    } else {
      out.emplace_back(argv[j]);
    }
  }
  return out;
}

uint64_t SlowLog::add(int64_t unix_ms, int64_t duration_us, std::span<const std::string_view> argv,
                      std::string client, std::string client_name, std::string door, std::string trace_id) {
  SlowEntry e;
  e.unix_ms = unix_ms;
  e.duration_us = duration_us;
  e.args = shape_args(argv);
  e.client = std::move(client);
  e.client_name = std::move(client_name);
  e.door = std::move(door);
  e.trace_id = std::move(trace_id);
  std::lock_guard lock(mu_);
  e.id = next_id_++;
  const uint64_t limit = max_len_.load(std::memory_order_relaxed);
  if (limit == 0) return e.id;
  entries_.push_front(std::move(e));
  while (entries_.size() > limit) entries_.pop_back();
  return entries_.front().id;
}

std::vector<SlowEntry> SlowLog::get(uint64_t count) const {
  std::lock_guard lock(mu_);
  const size_t n = static_cast<size_t>(std::min<uint64_t>(count, entries_.size()));
  return {entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(n)};
}

uint64_t SlowLog::len() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

void SlowLog::reset() {
  std::lock_guard lock(mu_);
  entries_.clear();
}

}  // namespace keel::observe

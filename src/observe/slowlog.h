// The slow log: the node's most recent requests that took at least a threshold, as Redis's
// SLOWLOG keeps them (slowlog-log-slower-than in microseconds, slowlog-max-len entries, newest
// first), for both doors: RESP commands and HTTP requests. Each entry names the trace its span
// was exported in when tracing kept one, so the admin page (/ui/) can point from a slow
// request to its trace.
//
// Threading: any thread. wants() is one relaxed atomic load (the cost on every request); add(),
// get(), len() and reset() take a mutex, which only slow requests reach.
// Clock-free: the caller passes the entry's time and duration.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keel::observe {

struct SlowEntry {
  uint64_t id = 0;              // increases by one per entry logged since start (not reset)
  int64_t unix_ms = 0;          // when the request ended
  int64_t duration_us = 0;
  std::vector<std::string> args;  // shaped: at most 32, each at most 128 bytes, secrets redacted
  std::string client;           // RESP: ip:port ("forwarded from node N" for a forwarded command)
  std::string client_name;      // RESP: CLIENT SETNAME; HTTP: the authenticated user, if any
  std::string door;             // "resp" or "http"
  std::string trace_id;         // 32 hex characters when tracing exported the request's span
};

class SlowLog {
 public:
  static constexpr size_t kMaxArgs = 32;          // Redis's SLOWLOG_ENTRY_MAX_ARGC
  static constexpr size_t kMaxArgBytes = 128;     // Redis's SLOWLOG_ENTRY_MAX_STRING
  static constexpr int64_t kDefaultSlowerThanUs = 10000;  // Redis's default: 10 ms
  static constexpr uint64_t kDefaultMaxLen = 128;

  SlowLog(int64_t slower_than_us = kDefaultSlowerThanUs, uint64_t max_len = kDefaultMaxLen);

  // Negative: nothing is logged; 0: every request is.
  void configure(int64_t slower_than_us, uint64_t max_len);
  int64_t slower_than_us() const { return slower_than_us_.load(std::memory_order_relaxed); }
  uint64_t max_len() const { return max_len_.load(std::memory_order_relaxed); }

  // Whether a request that took `duration_us` is logged.
  bool wants(int64_t duration_us) const {
    const int64_t t = slower_than_us_.load(std::memory_order_relaxed);
    return t >= 0 && duration_us >= t;
  }
  // Logs a request; `argv` is shaped by shape_args. Returns the entry's id.
  uint64_t add(int64_t unix_ms, int64_t duration_us, std::span<const std::string_view> argv, std::string client,
               std::string client_name, std::string door, std::string trace_id = {});
  // Up to `count` entries, newest first.
  std::vector<SlowEntry> get(uint64_t count) const;
  uint64_t len() const;
  void reset();

  // Redis's shaping of a logged command: past 32 arguments the 32nd becomes
  // "... (N more arguments)"; an argument longer than 128 bytes keeps its first 128 followed
  // by "... (N more bytes)". Arguments that may carry a secret become "(redacted)": all of
  // AUTH's, CONFIG's after the setting's name, and those after the subcommand (or key) of
  // HELLO, ACL, MIGRATE, SECRET.* and TRANSIT.*.
  static std::vector<std::string> shape_args(std::span<const std::string_view> argv);

 private:
  std::atomic<int64_t> slower_than_us_;
  std::atomic<uint64_t> max_len_;
  mutable std::mutex mu_;
  std::deque<SlowEntry> entries_;  // newest at the front
  uint64_t next_id_ = 0;
};

}  // namespace keel::observe

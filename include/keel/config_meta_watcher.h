// A Capacitor source that follows one key of keel's cluster metadata over HTTP (docs/http.md,
// "Cluster metadata"): the value of the key is the configuration text.
//
//   start ──► GET /v1/meta/watch?prefix=K&timeout_ms=0   (the store's revision R, before the read)
//         ──► GET /v1/meta/K                            (the value, or 404: no such key)
//         ──► load it into the Capacitor
//         ──► GET /v1/meta/watch?prefix=K&from_revision=N&timeout_ms=T   (long-poll, repeated)
//               events for K ──► notify_changed ──► debounce ──► load the newest value
//               410 OUT_OF_RANGE (history trimmed) ──► read again, watch from the new revision
//               connection error, 5xx, bad reply ──► the Capacitor keeps its last good value and
//                 turns Degraded (Empty if nothing was ever loaded); retry with exponential
//                 backoff; once the node answers again, read again: the value catches up.
//
// N is the key's mod_revision + 1 after a read that found it, R + 1 after one that did not, and
// the answer's revision + 1 after each watch, so no change is missed between two requests. A
// deleted key is refused like an unreadable file (the last good value stays).
//
// The HTTP client is a small HTTP/1.1 client on Boost.Beast: one keep-alive connection, every
// request bounded in time (request_timeout, plus watch_timeout for a long-poll) and every answer
// in size (max_response_bytes, 16 KB of headers). It depends on nothing in keel's server.
//
// Like ConfigFileWatcher this is the runtime shell: one thread drives the Capacitor; stop() or
// the destructor cancels what is in flight and joins. The Capacitor must outlive the watcher.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "keel/capacitor.h"
#include "keel/clock.h"

namespace keel::sdk {

struct MetaWatchOptions {
  std::string host = "127.0.0.1";  // a cluster member's HTTP address
  uint16_t port = 8380;            // its HTTP port (server.http_port)
  std::string key;                 // the metadata key holding the configuration; non-empty
  std::string domain = "app";      // [a-z0-9_-]{1,64}
  // Or a secret's path (docs/security.md, "Secrets"): the configuration text is the secret's
  // latest value, read from /v1/secrets/<path> after every change (metadata shows secrets
  // redacted); `key` and `domain` are then set for you.
  std::string secret;
  // Credentials, for a node whose HTTP door has access rules (docs/security.md): a user and
  // its password (HTTP Basic), or a bearer token (a keel token that is not bound to a client
  // certificate: this client speaks plain HTTP). Empty: the default user. The user needs
  // CLUSTER META (the watch and, for `key`, the read) and, for `secret`, SECRET.GET on its path.
  std::string username, password;
  std::string bearer_token;
  // How long one long-poll waits for a change (1..60000 ms; the server's bound).
  std::chrono::milliseconds watch_timeout{30000};
  // Connect + one plain request; a long-poll gets watch_timeout + request_timeout.
  std::chrono::milliseconds request_timeout{5000};
  // Backoff between attempts while the node cannot be reached: doubles from retry_initial up
  // to retry_max.
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5000};
  size_t max_response_bytes = 4u << 20;  // a larger answer is an error (kTooLarge)
};

// --- the pure part: parsing the node's answers (exposed for tests) ---

// GET /v1/meta/{key}: 200 {"key","value" | "value_base64","version","create_revision","mod_revision"}.
struct MetaValue {
  std::string value;
  uint64_t mod_revision = 0;
};
std::expected<MetaValue, ConfigError> parse_meta_value(std::string_view body, std::string_view key);

// GET /v1/meta/watch: 200 {"events": [{"type": "put"|"delete", "kv": {...}, "revision"}], "revision"}.
struct MetaWatchAnswer {
  uint64_t revision = 0;  // the store's revision when the node answered
  // The newest event for the key itself (a prefix watch also reports longer keys; they are
  // skipped): nullopt if none, otherwise the value (nullopt inside: deleted).
  std::optional<std::optional<std::string>> latest;
  uint64_t events = 0;  // events for the key
};
std::expected<MetaWatchAnswer, ConfigError> parse_meta_watch(std::string_view body, std::string_view key);

// "/v1/meta/<key, percent-encoded>?domain=<domain>" and the watch target, or kInvalid naming
// the bad option.
std::expected<std::string, ConfigError> meta_value_target(const MetaWatchOptions& o);
std::expected<std::string, ConfigError> meta_watch_target(const MetaWatchOptions& o,
                                                          std::optional<uint64_t> from_revision,
                                                          std::chrono::milliseconds timeout);

// --- the shell ---

class ConfigMetaWatcher {
 public:
  // Checks the options (kInvalid naming the bad one) and starts the thread; the first read and
  // load happen on it (wait for the Capacitor's state to leave kLoading).
  static std::expected<std::unique_ptr<ConfigMetaWatcher>, ConfigError> start(
      CapacitorCore& target, MetaWatchOptions options, const Clock& clock = SteadyClock::instance());
  ~ConfigMetaWatcher();
  ConfigMetaWatcher(const ConfigMetaWatcher&) = delete;
  ConfigMetaWatcher& operator=(const ConfigMetaWatcher&) = delete;

  void stop();
  // For tests and diagnostics.
  uint64_t loads() const noexcept { return loads_.load(std::memory_order_acquire); }
  uint64_t reads() const noexcept { return reads_.load(std::memory_order_acquire); }  // full re-reads
  uint64_t failures() const noexcept { return failures_.load(std::memory_order_acquire); }
  uint64_t revision() const noexcept { return revision_.load(std::memory_order_acquire); }

  struct Impl;

 private:
  ConfigMetaWatcher(CapacitorCore& target, MetaWatchOptions options, const Clock& clock);

  CapacitorCore& target_;
  MetaWatchOptions options_;
  const Clock& clock_;
  std::atomic<uint64_t> loads_{0}, reads_{0}, failures_{0}, revision_{0};
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace keel::sdk

// Capacitor<T>: reactive configuration. It holds the live value of a configuration of type T,
// reloads it when its source changes, and never lets a bad version replace a good one.
//
//   source changed ──► debounce ──► read ──► parse (TOML or JSON) ──► decode into T ──►
//   validate (user function) ──► swap atomically ──► change callbacks (previous, next)
//
// Any step failing keeps the last good value and reports why (last_error(), a
// `ConfigRejected` signal). State (keel::sdk::ConfigState, from signals.h):
//   kLoading  nothing loaded yet;
//   kHealthy  the live value is the source's current content;
//   kDegraded the source's current content was refused; the live value is the last good one;
//   kEmpty    nothing good was ever loaded (get() returns null).
//
// Threads: readers (get, state, version, last_error) may call from any thread; get() hands
// out a shared_ptr<const T> snapshot that stays valid however many reloads follow. The driving
// calls (notify_changed, reload_due, load, poll) come from one thread at a time: the test, or
// the ConfigFileWatcher thread. Change callbacks run on that thread; register them before
// driving starts.
//
// The Capacitor itself reads no clock and no file: `now` and the text are handed in, so its
// state machine and debounce are tested with a ManualClock and a MemorySource. The shell that
// watches a real file is ConfigFileWatcher (keel/config_file_watcher.h).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/clock.h"
#include "keel/signals.h"

namespace keel::sdk {

enum class ConfigFormat : uint8_t { kToml, kJson };
std::string_view config_format_name(ConfigFormat f) noexcept;
// ".toml" -> kToml, ".json" -> kJson, otherwise nullopt.
std::optional<ConfigFormat> config_format_for_path(std::string_view path) noexcept;

enum class ConfigErrc : uint8_t {
  kRead,      // the source could not be read (missing file, permission)
  kTooLarge,  // larger than Options::max_bytes
  kParse,     // not valid TOML / JSON (the message has line and column)
  kDecode,    // valid syntax, but not the shape T expects
  kInvalid,   // T's validator refused it
};
std::string_view config_errc_name(ConfigErrc c) noexcept;

struct ConfigError {
  ConfigErrc code;
  std::string message;
};

// Parses TOML or JSON into a JSON document (TOML tables become objects; dates and times become
// their TOML text). Bounded: refuses more than max_bytes and JSON nested deeper than 64.
std::expected<nlohmann::json, ConfigError> parse_config_text(std::string_view text,
                                                             ConfigFormat format,
                                                             size_t max_bytes);

// Where configuration text comes from.
class ConfigSource {
 public:
  virtual ~ConfigSource() = default;
  virtual std::expected<std::string, ConfigError> read() = 0;
};

// In memory; for tests and for configuration that arrives over the network. Thread-safe.
class MemorySource final : public ConfigSource {
 public:
  explicit MemorySource(std::string text = {}) : text_(std::move(text)) {}
  void set(std::string text);
  void set_error(std::string message);  // the next reads fail with kRead
  std::expected<std::string, ConfigError> read() override;

 private:
  std::mutex mu_;
  std::string text_;
  std::optional<std::string> error_;
};

// The non-template part of every Capacitor<T>: debounce, state machine, parsing, signals.
class CapacitorCore {
 public:
  struct Options {
    std::string source = "config";  // names the configuration in signals and errors
    ConfigFormat format = ConfigFormat::kToml;
    // A reload starts once the source has been quiet for `debounce` after its last change,
    // or `max_delay` after the first unhandled change if it never goes quiet.
    Duration debounce = std::chrono::milliseconds(100);
    Duration max_delay = std::chrono::seconds(2);
    size_t max_bytes = 1 << 20;
    SignalBus* signals = nullptr;  // may be null; must outlive the Capacitor
  };
  enum class Outcome : uint8_t { kApplied, kUnchanged, kRejected };
  struct LoadReport {
    Outcome outcome;
    uint64_t version;         // live version after the load (0: none)
    std::optional<ConfigError> error;  // set when kRejected
  };

  explicit CapacitorCore(Options options);
  virtual ~CapacitorCore() = default;
  CapacitorCore(const CapacitorCore&) = delete;
  CapacitorCore& operator=(const CapacitorCore&) = delete;

  // --- driving (one thread at a time) ---
  // The source reported a change at `now`.
  void notify_changed(Instant now);
  // True once per burst of changes, when the debounce has elapsed; the caller then loads.
  bool reload_due(Instant now);
  // When reload_due() will next be true (nullopt: no change pending).
  std::optional<Instant> next_deadline() const;
  // Parse, decode, validate and (if all pass and the text differs from the live one) swap.
  LoadReport load(std::expected<std::string, ConfigError> text, Instant now);
  // reload_due(now) ? load(source.read(), now) : nullopt.
  std::optional<LoadReport> poll(ConfigSource& source, Instant now);

  // --- readers (any thread) ---
  ConfigState state() const noexcept { return state_.load(std::memory_order_acquire); }
  uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }
  std::optional<ConfigError> last_error() const;
  const Options& options() const noexcept { return options_; }

 protected:
  // Decode and validate a parsed document into a staged value (kDecode / kInvalid on failure).
  // An exception thrown by a user decoder or validator is reported as kDecode / kInvalid.
  virtual std::expected<void, ConfigError> stage(const nlohmann::json& doc) = 0;
  // Make the staged value live.
  virtual void commit() = 0;
  // Run the change callbacks for the last commit.
  virtual void announce() = 0;
  virtual void discard() noexcept = 0;

 private:
  void set_state(ConfigState to, Instant now);

  Options options_;
  std::atomic<ConfigState> state_{ConfigState::kLoading};
  std::atomic<uint64_t> version_{0};
  std::optional<std::string> live_text_;  // text of the live value (driving thread only)
  std::optional<Instant> first_change_, last_change_;
  mutable std::mutex error_mu_;
  std::optional<ConfigError> last_error_;
};

template <class T>
class Capacitor final : public CapacitorCore {
 public:
  using Snapshot = std::shared_ptr<const T>;
  // Turns a parsed document into T; an error string says what is wrong (kDecode).
  using Decoder = std::function<std::expected<T, std::string>(const nlohmann::json&)>;
  // Returns the problems found, one per entry; empty means valid (kInvalid otherwise).
  using Validator = std::function<std::vector<std::string>(const T&)>;
  using ChangeCallback = std::function<void(const Snapshot& previous, const Snapshot& next)>;

  // Decodes with nlohmann's from_json for T.
  explicit Capacitor(Options options, Validator validate = {})
      : Capacitor(std::move(options), default_decoder(), std::move(validate)) {}
  Capacitor(Options options, Decoder decode, Validator validate)
      : CapacitorCore(std::move(options)),
        decode_(std::move(decode)),
        validate_(std::move(validate)) {}

  // The live value; null while kLoading or kEmpty. Takes a short lock to copy the pointer.
  // (Not std::atomic<shared_ptr>: libstdc++ 12's load() unlocks with a relaxed store, which
  // ThreadSanitizer reports as a race with the next swap.)
  Snapshot get() const noexcept {
    std::lock_guard lock(live_mu_);
    return live_;
  }

  // Called after each swap with the previous value (null for the first) and the new one.
  // Callbacks should not throw; if one does, the exception is swallowed and the remaining
  // callbacks still run (the new value is live either way).
  void on_change(ChangeCallback cb) { callbacks_.push_back(std::move(cb)); }

 private:
  static Decoder default_decoder() {
    return [](const nlohmann::json& doc) -> std::expected<T, std::string> {
      try {
        return doc.get<T>();
      } catch (const std::exception& e) {  // nlohmann's, or a user from_json's
        return std::unexpected(std::string(e.what()));
      }
    };
  }

  std::expected<void, ConfigError> stage(const nlohmann::json& doc) override {
    auto value = [&]() -> std::expected<T, std::string> {
      try {
        return decode_(doc);
      } catch (const std::exception& e) {
        return std::unexpected(std::string(e.what()));
      }
    }();
    if (!value) return std::unexpected(ConfigError{ConfigErrc::kDecode, value.error()});
    if (validate_) {
      std::vector<std::string> problems;
      try {
        problems = validate_(*value);
      } catch (const std::exception& e) {
        problems.push_back(std::string("validator threw: ") + e.what());
      }
      if (!problems.empty()) {
        std::string msg;
        for (const auto& p : problems) {
          if (!msg.empty()) msg += '\n';
          msg += p;
        }
        return std::unexpected(ConfigError{ConfigErrc::kInvalid, std::move(msg)});
      }
    }
    staged_ = std::make_shared<const T>(std::move(*value));
    return {};
  }

  void commit() override {
    Snapshot next = std::move(staged_);
    std::lock_guard lock(live_mu_);
    previous_ = std::exchange(live_, std::move(next));
  }

  void announce() override {
    Snapshot previous = std::move(previous_);
    Snapshot next = get();
    for (auto& cb : callbacks_) {
      try {
        cb(previous, next);
      } catch (...) {
      }
    }
  }

  void discard() noexcept override { staged_.reset(); }

  Decoder decode_;
  Validator validate_;
  std::vector<ChangeCallback> callbacks_;
  Snapshot staged_;
  Snapshot previous_;
  mutable std::mutex live_mu_;
  Snapshot live_;  // guarded by live_mu_
};

}  // namespace keel::sdk

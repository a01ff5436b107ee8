// Typed events emitted by every part of the SDK (breakers, retries, limiters, bulkheads,
// pipelines, configuration) and delivered to listeners: metrics exporters, log writers, tests.
//
// Contract:
// - A component is given a `SignalBus*` (may be null: then it emits nothing and pays one
//   branch). The bus must outlive every component that holds it.
// - Listeners are called synchronously, on the thread that caused the event, possibly from
//   several threads at once: on_signal must be thread-safe, quick and must not throw.
// - std::string_view fields are valid only during on_signal; copy what you keep.
// - The Signal variant is append-only: new event types are added at the end, existing fields
//   are never removed or reordered.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "keel/clock.h"

namespace keel::sdk {

enum class BreakerState : uint8_t { kClosed, kOpen, kHalfOpen, kForcedOpen, kDisabled };
std::string_view breaker_state_name(BreakerState s) noexcept;

// A circuit breaker changed state. `failure_rate` and `slow_call_rate` are percentages of the
// window at the moment of the transition (-1 when not evaluated, e.g. a manual transition).
struct BreakerTransition {
  std::string_view breaker;
  BreakerState from;
  BreakerState to;
  std::string_view reason;  // "failure rate 60.0% >= 50.0%", "wait in open elapsed", "forced", ...
  double failure_rate;
  double slow_call_rate;
  Instant at;
};

// A breaker refused a call (open, forced open, or half-open with no permits left).
struct CallNotPermitted {
  std::string_view breaker;
  BreakerState state;
  Duration retry_after;  // 0 when unknown (forced open, half-open saturated)
  Instant at;
};

// A retry policy decided to try again after `delay`.
struct RetryScheduled {
  std::string_view policy;
  uint32_t attempt;  // the attempt that failed, 1-based
  Duration delay;
  Instant at;
};

enum class GiveUpReason : uint8_t {
  kNotRetryable,  // the predicate said this error is final
  kMaxAttempts,
  kMaxElapsed,    // the next attempt would start after max_elapsed (or the caller's deadline)
  kBudget,        // the retry budget had no token
};
std::string_view give_up_reason_name(GiveUpReason r) noexcept;

// A retry policy stopped retrying and returns the last error.
struct RetryGaveUp {
  std::string_view policy;
  uint32_t attempts;
  GiveUpReason reason;
  Instant at;
};

// A rate limiter denied a request. `key` is empty for a global limiter.
struct RequestDenied {
  std::string_view limiter;
  std::string_view key;
  Duration retry_after;
  Instant at;
};

// A bulkhead refused a call: all slots busy and the wait queue full, or the wait expired.
struct BulkheadRejected {
  std::string_view bulkhead;
  uint32_t in_flight;
  uint32_t queued;
  bool wait_expired;  // false: refused at once (queue full or no waiting allowed)
  Instant at;
};

// A timeout stage cut a call off (or found its deadline already passed).
struct TimeoutExpired {
  std::string_view stage;
  Duration timeout;
  Instant at;
};

// A fallback chain moved past an adapter and served from another one.
struct FallbackUsed {
  std::string_view fallback;
  std::string_view failed_adapter;
  std::string_view next_adapter;
  uint32_t index;  // index of next_adapter in the chain (0 = primary)
  Instant at;
};

// A hedge decision fired an extra copy of a request.
struct HedgeFired {
  std::string_view hedge;
  uint32_t copy;  // 1 = first hedge (the original is copy 0)
  Duration after;  // time since the original was sent
  Instant at;
};

// A configuration (a pipeline description, a Capacitor value) was accepted and is now live.
struct ConfigApplied {
  std::string_view source;  // what was loaded: a pipeline slot name, a file path
  uint64_t version;
  Instant at;
};

// A configuration was refused; the previous one stays live.
struct ConfigRejected {
  std::string_view source;
  std::string_view reason;  // the validation errors, one per line
  uint64_t version;         // version the rejected one would have had
  Instant at;
};

// A configuration went back to its previous version.
struct ConfigRolledBack {
  std::string_view source;
  uint64_t from_version;
  uint64_t to_version;
  Instant at;
};

// State of a reactive configuration holder (Capacitor).
enum class ConfigState : uint8_t { kLoading, kHealthy, kDegraded, kEmpty };
std::string_view config_state_name(ConfigState s) noexcept;

struct ConfigStateChanged {
  std::string_view source;
  ConfigState from;
  ConfigState to;
  Instant at;
};

// A peer's health status changed (PeerManager). Status names are the manager's own
// ("up", "suspect", "down", ...).
struct PeerStatusChanged {
  std::string_view peer;
  std::string_view from;
  std::string_view to;
  Instant at;
};

using Signal = std::variant<BreakerTransition, CallNotPermitted, RetryScheduled, RetryGaveUp,
                            RequestDenied, BulkheadRejected, TimeoutExpired, FallbackUsed,
                            HedgeFired, ConfigApplied, ConfigRejected, ConfigRolledBack,
                            ConfigStateChanged, PeerStatusChanged>;

// A short stable name per event type ("breaker_transition", "request_denied", ...), usable as
// a metric or log label.
std::string_view signal_name(const Signal& s) noexcept;

class SignalListener {
 public:
  virtual ~SignalListener() = default;
  virtual void on_signal(const Signal& s) noexcept = 0;
};

// Adapts a callable. The callable must be thread-safe and not throw.
class FunctionListener final : public SignalListener {
 public:
  explicit FunctionListener(std::function<void(const Signal&)> fn) : fn_(std::move(fn)) {}
  void on_signal(const Signal& s) noexcept override { fn_(s); }

 private:
  std::function<void(const Signal&)> fn_;
};

// Delivers signals to the listeners subscribed at the moment of emit. Subscribing and
// unsubscribing copy the listener list under a lock; emit is lock-free when nobody listens and
// otherwise copies the list's shared_ptr under that lock, then calls listeners outside it.
// (Not std::atomic<std::shared_ptr>: GCC 12's implementation is reported racy by TSan.)
// Thread-safe.
class SignalBus {
 public:
  using Id = uint64_t;

  SignalBus();
  SignalBus(const SignalBus&) = delete;
  SignalBus& operator=(const SignalBus&) = delete;

  // The bus keeps the listener alive until it is unsubscribed.
  Id subscribe(std::shared_ptr<SignalListener> listener);
  Id subscribe(std::function<void(const Signal&)> fn);
  // Returns false when `id` is not subscribed.
  bool unsubscribe(Id id);
  size_t listener_count() const;

  bool active() const noexcept { return active_.load(std::memory_order_acquire); }
  void emit(const Signal& s) const noexcept;

 private:
  struct Entry {
    Id id;
    std::shared_ptr<SignalListener> listener;
  };
  using List = std::vector<Entry>;
  mutable std::mutex mu_;  // guards list_ and next_id_
  Id next_id_ = 1;
  std::atomic<bool> active_{false};
  std::shared_ptr<const List> list_;
};

// Emits when `bus` is non-null and has listeners; builds the event only then.
template <class MakeSignal>
inline void emit_signal(const SignalBus* bus, MakeSignal&& make) noexcept {
  if (bus != nullptr && bus->active()) bus->emit(Signal(make()));
}

// Records every signal (names and copies of the rendered text); for tests and debugging.
class SignalRecorder final : public SignalListener {
 public:
  void on_signal(const Signal& s) noexcept override;
  // One line per signal, e.g. "breaker_transition db CLOSED->OPEN failure rate 60.0% >= 50.0%".
  std::vector<std::string> lines() const;
  size_t count(std::string_view name) const;
  void clear();

 private:
  mutable std::mutex mu_;
  std::vector<std::string> names_;
  std::vector<std::string> lines_;
};

// Renders one signal as a single human-readable line (used by SignalRecorder and log sinks).
std::string describe_signal(const Signal& s);

}  // namespace keel::sdk

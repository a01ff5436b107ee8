#include "keel/signals.h"

#include <string>
#include <type_traits>

namespace keel::sdk {

std::string_view breaker_state_name(BreakerState s) noexcept {
  switch (s) {
    case BreakerState::kClosed: return "CLOSED";
    case BreakerState::kOpen: return "OPEN";
    case BreakerState::kHalfOpen: return "HALF_OPEN";
    case BreakerState::kForcedOpen: return "FORCED_OPEN";
    case BreakerState::kDisabled: return "DISABLED";
  }
  return "UNKNOWN";
}

std::string_view give_up_reason_name(GiveUpReason r) noexcept {
  switch (r) {
    case GiveUpReason::kNotRetryable: return "not_retryable";
    case GiveUpReason::kMaxAttempts: return "max_attempts";
    case GiveUpReason::kMaxElapsed: return "max_elapsed";
    case GiveUpReason::kBudget: return "budget";
  }
  return "unknown";
}

std::string_view config_state_name(ConfigState s) noexcept {
  switch (s) {
    case ConfigState::kLoading: return "Loading";
    case ConfigState::kHealthy: return "Healthy";
    case ConfigState::kDegraded: return "Degraded";
    case ConfigState::kEmpty: return "Empty";
  }
  return "Unknown";
}

namespace {
template <class>
inline constexpr bool kAlwaysFalse = false;

std::string ns(Duration d) { return std::to_string(d.count()) + "ns"; }
}  // namespace

std::string_view signal_name(const Signal& s) noexcept {
  return std::visit(
      [](const auto& e) -> std::string_view {
        using E = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<E, BreakerTransition>) return "breaker_transition";
        else if constexpr (std::is_same_v<E, CallNotPermitted>) return "call_not_permitted";
        else if constexpr (std::is_same_v<E, RetryScheduled>) return "retry_scheduled";
        else if constexpr (std::is_same_v<E, RetryGaveUp>) return "retry_gave_up";
        else if constexpr (std::is_same_v<E, RequestDenied>) return "request_denied";
        else if constexpr (std::is_same_v<E, BulkheadRejected>) return "bulkhead_rejected";
        else if constexpr (std::is_same_v<E, TimeoutExpired>) return "timeout_expired";
        else if constexpr (std::is_same_v<E, FallbackUsed>) return "fallback_used";
        else if constexpr (std::is_same_v<E, HedgeFired>) return "hedge_fired";
        else if constexpr (std::is_same_v<E, ConfigApplied>) return "config_applied";
        else if constexpr (std::is_same_v<E, ConfigRejected>) return "config_rejected";
        else if constexpr (std::is_same_v<E, ConfigRolledBack>) return "config_rolled_back";
        else if constexpr (std::is_same_v<E, ConfigStateChanged>) return "config_state_changed";
        else if constexpr (std::is_same_v<E, PeerStatusChanged>) return "peer_status_changed";
        else static_assert(kAlwaysFalse<E>, "name every signal");
      },
      s);
}

std::string describe_signal(const Signal& s) {
  std::string out(signal_name(s));
  out += ' ';
  std::visit(
      [&](const auto& e) {
        using E = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<E, BreakerTransition>) {
          out += std::string(e.breaker) + " " + std::string(breaker_state_name(e.from)) + "->" +
                 std::string(breaker_state_name(e.to)) + " " + std::string(e.reason);
        } else if constexpr (std::is_same_v<E, CallNotPermitted>) {
          out += std::string(e.breaker) + " " + std::string(breaker_state_name(e.state)) + " retry_after=" + ns(e.retry_after);
        } else if constexpr (std::is_same_v<E, RetryScheduled>) {
          out += std::string(e.policy) + " attempt=" + std::to_string(e.attempt) + " delay=" + ns(e.delay);
        } else if constexpr (std::is_same_v<E, RetryGaveUp>) {
          out += std::string(e.policy) + " attempts=" + std::to_string(e.attempts) + " reason=" +
                 std::string(give_up_reason_name(e.reason));
        } else if constexpr (std::is_same_v<E, RequestDenied>) {
          out += std::string(e.limiter) + (e.key.empty() ? "" : " key=" + std::string(e.key)) +
                 " retry_after=" + ns(e.retry_after);
        } else if constexpr (std::is_same_v<E, BulkheadRejected>) {
          out += std::string(e.bulkhead) + " in_flight=" + std::to_string(e.in_flight) + " queued=" +
                 std::to_string(e.queued) + (e.wait_expired ? " wait expired" : " full");
        } else if constexpr (std::is_same_v<E, TimeoutExpired>) {
          out += std::string(e.stage) + " timeout=" + ns(e.timeout);
        } else if constexpr (std::is_same_v<E, FallbackUsed>) {
          out += std::string(e.fallback) + " " + std::string(e.failed_adapter) + "->" + std::string(e.next_adapter);
        } else if constexpr (std::is_same_v<E, HedgeFired>) {
          out += std::string(e.hedge) + " copy=" + std::to_string(e.copy) + " after=" + ns(e.after);
        } else if constexpr (std::is_same_v<E, ConfigApplied>) {
          out += std::string(e.source) + " version=" + std::to_string(e.version);
        } else if constexpr (std::is_same_v<E, ConfigRejected>) {
          out += std::string(e.source) + " version=" + std::to_string(e.version) + " reason=" + std::string(e.reason);
        } else if constexpr (std::is_same_v<E, ConfigRolledBack>) {
          out += std::string(e.source) + " " + std::to_string(e.from_version) + "->" + std::to_string(e.to_version);
        } else if constexpr (std::is_same_v<E, ConfigStateChanged>) {
          out += std::string(e.source) + " " + std::string(config_state_name(e.from)) + "->" +
                 std::string(config_state_name(e.to));
        } else if constexpr (std::is_same_v<E, PeerStatusChanged>) {
          out += std::string(e.peer) + " " + std::string(e.from) + "->" + std::string(e.to);
        } else {
          static_assert(kAlwaysFalse<E>, "describe every signal");
        }
      },
      s);
  return out;
}

SignalBus::SignalBus() : list_(std::make_shared<const List>()) {}

SignalBus::Id SignalBus::subscribe(std::shared_ptr<SignalListener> listener) {
  std::lock_guard lk(mu_);
  auto next = std::make_shared<List>(*list_);
  Id id = next_id_++;
  next->push_back(Entry{id, std::move(listener)});
  list_ = std::move(next);
  active_.store(true, std::memory_order_release);
  return id;
}

SignalBus::Id SignalBus::subscribe(std::function<void(const Signal&)> fn) {
  return subscribe(std::make_shared<FunctionListener>(std::move(fn)));
}

bool SignalBus::unsubscribe(Id id) {
  std::lock_guard lk(mu_);
  auto next = std::make_shared<List>(*list_);
  bool found = false;
  for (auto it = next->begin(); it != next->end(); ++it) {
    if (it->id == id) {
      next->erase(it);
      found = true;
      break;
    }
  }
  active_.store(!next->empty(), std::memory_order_release);
  list_ = std::move(next);
  return found;
}

size_t SignalBus::listener_count() const {
  std::lock_guard lk(mu_);
  return list_->size();
}

void SignalBus::emit(const Signal& s) const noexcept {
  std::shared_ptr<const List> list;
  {
    std::lock_guard lk(mu_);  // a copy of the list; listeners run outside the lock
    list = list_;
  }
  for (const auto& e : *list) e.listener->on_signal(s);
}

void SignalRecorder::on_signal(const Signal& s) noexcept {
  std::string line = describe_signal(s);
  std::lock_guard lk(mu_);
  names_.emplace_back(signal_name(s));
  lines_.push_back(std::move(line));
}

std::vector<std::string> SignalRecorder::lines() const {
  std::lock_guard lk(mu_);
  return lines_;
}

size_t SignalRecorder::count(std::string_view name) const {
  std::lock_guard lk(mu_);
  size_t n = 0;
  for (const auto& x : names_) n += x == name;
  return n;
}

void SignalRecorder::clear() {
  std::lock_guard lk(mu_);
  names_.clear();
  lines_.clear();
}

}  // namespace keel::sdk

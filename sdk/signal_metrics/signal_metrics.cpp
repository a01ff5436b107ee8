#include "keel/signal_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include <type_traits>

namespace keel::sdk {

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Labels;

Family<Counter>& counter(prometheus::Registry& r, const std::string& name,
                         const std::string& help) {
  return prometheus::BuildCounter().Name("keel_sdk_" + name).Help(help).Register(r);
}
Family<Gauge>& gauge(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name("keel_sdk_" + name).Help(help).Register(r);
}

double config_state_value(ConfigState s) {
  switch (s) {
    case ConfigState::kLoading: return 0;
    case ConfigState::kHealthy: return 1;
    case ConfigState::kDegraded: return 2;
    case ConfigState::kEmpty: return 3;
  }
  return -1;
}

}  // namespace

struct SignalMetrics::Families {
  explicit Families(prometheus::Registry& r)
      : signals(counter(r, "signals_total", "SDK signals emitted, by type")),
        breaker_transitions(counter(r, "breaker_transitions_total",
                                    "Circuit breaker state transitions")),
        breaker_state(gauge(r, "breaker_state",
                            "Circuit breaker state (0 closed, 1 open, 2 half-open, "
                            "3 forced open, 4 disabled)")),
        not_permitted(counter(r, "calls_not_permitted_total", "Calls refused by a breaker")),
        retries(counter(r, "retries_total", "Retries scheduled")),
        give_ups(counter(r, "retry_give_ups_total", "Retry policies that gave up, by reason")),
        denied(counter(r, "requests_denied_total", "Requests denied by a rate limiter")),
        bulkhead(counter(r, "bulkhead_rejected_total", "Calls refused by a bulkhead")),
        timeouts(counter(r, "timeouts_total", "Calls cut off by a timeout")),
        fallbacks(counter(r, "fallbacks_total", "Calls served by a fallback adapter")),
        hedges(counter(r, "hedges_total", "Hedged copies of requests sent")),
        config_applied(counter(r, "config_applied_total", "Configurations accepted")),
        config_rejected(counter(r, "config_rejected_total",
                                "Configurations refused (the previous one stayed live)")),
        config_rollbacks(counter(r, "config_rollbacks_total", "Configuration rollbacks")),
        config_state(gauge(r, "config_state",
                           "Configuration state (0 loading, 1 healthy, 2 degraded, 3 empty)")),
        config_version(gauge(r, "config_version", "Live configuration version")),
        peer_changes(counter(r, "peer_status_changes_total", "Peer status changes, by new status")) {}

  Family<Counter>& signals;
  Family<Counter>& breaker_transitions;
  Family<Gauge>& breaker_state;
  Family<Counter>& not_permitted;
  Family<Counter>& retries;
  Family<Counter>& give_ups;
  Family<Counter>& denied;
  Family<Counter>& bulkhead;
  Family<Counter>& timeouts;
  Family<Counter>& fallbacks;
  Family<Counter>& hedges;
  Family<Counter>& config_applied;
  Family<Counter>& config_rejected;
  Family<Counter>& config_rollbacks;
  Family<Gauge>& config_state;
  Family<Gauge>& config_version;
  Family<Counter>& peer_changes;

  // Which label sets exist, so the bound can be enforced; guarded by mu.
  std::mutex mu;
  std::map<std::pair<const void*, Labels>, bool> known;
};

SignalMetrics::SignalMetrics(std::shared_ptr<prometheus::Registry> registry)
    : SignalMetrics(std::move(registry), Options{}) {}

SignalMetrics::SignalMetrics(std::shared_ptr<prometheus::Registry> registry, Options options)
    : registry_(std::move(registry)),
      options_(std::move(options)),
      f_(std::make_unique<Families>(*registry_)) {}

SignalMetrics::~SignalMetrics() = default;

void SignalMetrics::on_signal(const Signal& s) noexcept {
  try {
    // Returns the metric for `labels`, or for the same labels with every value "_other" once
    // max_series label sets exist.
    auto pick = [&]<class M>(Family<M>& family, Labels labels) -> M& {
      std::lock_guard lock(f_->mu);
      auto key = std::make_pair(static_cast<const void*>(&family), labels);
      if (f_->known.find(key) == f_->known.end()) {
        if (f_->known.size() >= options_.max_series) {
          for (auto& [k, v] : labels) v = "_other";
          key.second = labels;
        }
        if (f_->known.emplace(key, true).second) series_.fetch_add(1, std::memory_order_acq_rel);
      }
      return family.Add(labels);
    };
    const std::string name(signal_name(s));
    pick(f_->signals, {{"signal", name}}).Increment();

    auto level = spdlog::level::info;
    std::visit(
        [&](const auto& e) {
          using E = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<E, BreakerTransition>) {
            pick(f_->breaker_transitions, {{"breaker", std::string(e.breaker)},
                                           {"from", std::string(breaker_state_name(e.from))},
                                           {"to", std::string(breaker_state_name(e.to))}})
                .Increment();
            pick(f_->breaker_state, {{"breaker", std::string(e.breaker)}})
                .Set(static_cast<double>(static_cast<int>(e.to)));
            if (e.to == BreakerState::kOpen || e.to == BreakerState::kForcedOpen) {
              level = spdlog::level::warn;
            }
          } else if constexpr (std::is_same_v<E, CallNotPermitted>) {
            pick(f_->not_permitted, {{"breaker", std::string(e.breaker)}}).Increment();
            level = spdlog::level::debug;
          } else if constexpr (std::is_same_v<E, RetryScheduled>) {
            pick(f_->retries, {{"policy", std::string(e.policy)}}).Increment();
            level = spdlog::level::debug;
          } else if constexpr (std::is_same_v<E, RetryGaveUp>) {
            pick(f_->give_ups, {{"policy", std::string(e.policy)},
                                {"reason", std::string(give_up_reason_name(e.reason))}})
                .Increment();
            level = spdlog::level::warn;
          } else if constexpr (std::is_same_v<E, RequestDenied>) {
            pick(f_->denied, {{"limiter", std::string(e.limiter)}}).Increment();
            level = spdlog::level::debug;
          } else if constexpr (std::is_same_v<E, BulkheadRejected>) {
            pick(f_->bulkhead, {{"bulkhead", std::string(e.bulkhead)}}).Increment();
            level = spdlog::level::warn;
          } else if constexpr (std::is_same_v<E, TimeoutExpired>) {
            pick(f_->timeouts, {{"stage", std::string(e.stage)}}).Increment();
          } else if constexpr (std::is_same_v<E, FallbackUsed>) {
            pick(f_->fallbacks, {{"fallback", std::string(e.fallback)},
                                 {"adapter", std::string(e.next_adapter)}})
                .Increment();
          } else if constexpr (std::is_same_v<E, HedgeFired>) {
            pick(f_->hedges, {{"hedge", std::string(e.hedge)}}).Increment();
            level = spdlog::level::debug;
          } else if constexpr (std::is_same_v<E, ConfigApplied>) {
            pick(f_->config_applied, {{"source", std::string(e.source)}}).Increment();
            pick(f_->config_version, {{"source", std::string(e.source)}})
                .Set(static_cast<double>(e.version));
          } else if constexpr (std::is_same_v<E, ConfigRejected>) {
            pick(f_->config_rejected, {{"source", std::string(e.source)}}).Increment();
            level = spdlog::level::warn;
          } else if constexpr (std::is_same_v<E, ConfigRolledBack>) {
            pick(f_->config_rollbacks, {{"source", std::string(e.source)}}).Increment();
            pick(f_->config_version, {{"source", std::string(e.source)}})
                .Set(static_cast<double>(e.to_version));
            level = spdlog::level::warn;
          } else if constexpr (std::is_same_v<E, ConfigStateChanged>) {
            pick(f_->config_state, {{"source", std::string(e.source)}})
                .Set(config_state_value(e.to));
            if (e.to == ConfigState::kDegraded || e.to == ConfigState::kEmpty) {
              level = spdlog::level::warn;
            }
          } else if constexpr (std::is_same_v<E, PeerStatusChanged>) {
            pick(f_->peer_changes, {{"peer", std::string(e.peer)}, {"to", std::string(e.to)}})
                .Increment();
            if (e.to == "down") level = spdlog::level::warn;
          }
        },
        s);

    if (options_.log) {
      auto logger = options_.logger ? options_.logger : spdlog::default_logger();
      if (logger && logger->should_log(level)) logger->log(level, "{}", describe_signal(s));
    }
  } catch (...) {
    // A listener must not throw (allocation failure, a logger sink error): drop this signal.
  }
}

}  // namespace keel::sdk

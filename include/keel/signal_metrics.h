// SignalMetrics: a ready SignalListener that turns SDK signals into Prometheus metrics and log
// lines.
//
//   SignalBus bus;
//   auto registry = std::make_shared<prometheus::Registry>();
//   bus.subscribe(std::make_shared<SignalMetrics>(registry));
//   // expose `registry` with prometheus-cpp's Exposer, or serialise it yourself
//
// Metrics (all prefixed keel_sdk_; label values are the component names the signals carry):
//   signals_total{signal}                                every signal, by type
//   breaker_transitions_total{breaker,from,to}           breaker_state{breaker} (0 closed,
//   calls_not_permitted_total{breaker}                     1 open, 2 half-open, 3 forced open,
//   retries_total{policy}                                  4 disabled)
//   retry_give_ups_total{policy,reason}
//   requests_denied_total{limiter}                       (the per-tenant key is not a label:
//   bulkhead_rejected_total{bulkhead}                     it would make series unbounded)
//   timeouts_total{stage}      fallbacks_total{fallback,adapter}      hedges_total{hedge}
//   config_applied_total{source}  config_rejected_total{source}  config_rollbacks_total{source}
//   config_state{source} (0 loading, 1 healthy, 2 degraded, 3 empty)  config_version{source}
//   peer_status_changes_total{peer,to}
// Series are bounded: once Options::max_series label sets exist, new ones are counted under
// the label value "_other" (and signals_total still counts them).
//
// Log lines: one per signal through spdlog (describe_signal's text), at warn for breakers
// opening, calls refused, give-ups, rejected configuration and peers going down; at debug for
// the frequent ones (retry scheduled, request denied, hedge fired); info otherwise.
//
// Thread-safe, as SignalListener requires.
#pragma once

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "keel/signals.h"

namespace prometheus {
class Registry;
}
namespace spdlog {
class logger;
}

namespace keel::sdk {

class SignalMetrics final : public SignalListener {
 public:
  struct Options {
    bool log = true;
    std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
    size_t max_series = 2000;
  };

  explicit SignalMetrics(std::shared_ptr<prometheus::Registry> registry);
  SignalMetrics(std::shared_ptr<prometheus::Registry> registry, Options options);
  ~SignalMetrics() override;

  void on_signal(const Signal& s) noexcept override;

  // Label sets created so far (bounded by max_series).
  size_t series() const noexcept { return series_.load(std::memory_order_acquire); }

 private:
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  Options options_;
  std::unique_ptr<Families> f_;
  std::atomic<size_t> series_{0};
};

}  // namespace keel::sdk

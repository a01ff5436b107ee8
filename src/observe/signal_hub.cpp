#include "observe/signal_hub.h"

#include "observe/log.h"

namespace keel::observe {
namespace {
uint64_t bits(const std::bitset<kSignalCount>& b) { return b.to_ullong(); }
}  // namespace

SignalHub& SignalHub::instance() {
  static SignalHub hub;
  return hub;
}

SignalHub::SignalHub() { set_routes(default_signal_routes()); }

void SignalHub::emit(Signal s, std::string_view detail) {
  const size_t i = static_cast<size_t>(s);
  const uint64_t bit = uint64_t{1} << i;
  const auto& info = signal_catalogue()[i];
  if (logs_.load(std::memory_order_relaxed) & bit) {
    LogEventScope scope(info.name);
    logger(info.component).log(to_spdlog_level(info.level), "{}", detail);
  }
  if (metrics_.load(std::memory_order_relaxed) & bit)
    counts_[i].fetch_add(1, std::memory_order_relaxed);
  if (span_events_.load(std::memory_order_relaxed) & bit)
    if (auto* sink = span_sink_.load(std::memory_order_acquire)) (*sink)(s, detail);
}

void SignalHub::set_routes(const SignalRoutes& r) {
  logs_.store(bits(r.logs), std::memory_order_relaxed);
  metrics_.store(bits(r.metrics), std::memory_order_relaxed);
  span_events_.store(bits(r.span_events), std::memory_order_relaxed);
}

SignalRoutes SignalHub::routes() const {
  SignalRoutes r;
  r.logs = std::bitset<kSignalCount>(logs_.load(std::memory_order_relaxed));
  r.metrics = std::bitset<kSignalCount>(metrics_.load(std::memory_order_relaxed));
  r.span_events = std::bitset<kSignalCount>(span_events_.load(std::memory_order_relaxed));
  return r;
}

void SignalHub::set_span_sink(SpanSink sink) {
  std::lock_guard lock(mu_);
  if (!sink) {
    span_sink_.store(nullptr, std::memory_order_release);
    return;
  }
  sinks_.push_back(std::make_unique<SpanSink>(std::move(sink)));
  span_sink_.store(sinks_.back().get(), std::memory_order_release);
}

void SignalHub::set_file_status_provider(StatusProvider p) {
  std::lock_guard lock(mu_);
  status_ = std::move(p);
}

SignalFileStatus SignalHub::file_status() const {
  StatusProvider p;
  {
    std::lock_guard lock(mu_);
    p = status_;
  }
  if (!p) return SignalFileStatus{"", "none", 0, ""};  // no signals file: the default routes
  return p();
}

}  // namespace keel::observe

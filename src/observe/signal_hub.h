// The node's signals, emitted by name and routed as the signals file says (signals.h): to the
// log (the signal's component logger, at its level; JSON lines name it in "event"), to a
// counter per signal (keel_signals_total{signal}), and to the traces (a span event, through
// the span sink the node sets when tracing is on).
//
// Threads: emit() from any thread; routes are swapped atomically (set_routes, any thread).
// Cost of a signal routed nowhere: three relaxed atomic loads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "observe/signals.h"

namespace keel::observe {

struct SignalFileStatus {
  std::string path;  // "" when there is no signals file (default routes)
  // none (no file: default routes), loading, healthy, degraded (the file was last refused; the
  // routes it gave before stay), empty (never loaded: default routes).
  std::string state;
  uint64_t version = 0;  // routes loaded from the file so far
  std::string error;     // why the file was last refused, "" if it was not
};

class SignalHub {
 public:
  static SignalHub& instance();  // the process's (as spdlog's loggers are)

  // Any thread. `detail` is the log message (the signal's name is added in JSON lines).
  void emit(Signal s, std::string_view detail);
  void set_routes(const SignalRoutes& r);
  SignalRoutes routes() const;
  // Times `s` was emitted while routed to metrics.
  uint64_t count(Signal s) const {
    return counts_[static_cast<size_t>(s)].load(std::memory_order_relaxed);
  }

  // Span events: called for signals routed to span_events, on the emitting thread. Any thread;
  // a sink set once stays allocated until the process ends (an emit may be running it), so
  // set it once per tracer; null: span events off.
  using SpanSink = std::function<void(Signal, std::string_view detail)>;
  void set_span_sink(SpanSink sink);

  // What /v1/signals reports about the file: the node sets a provider that reads it live.
  using StatusProvider = std::function<SignalFileStatus()>;
  void set_file_status_provider(StatusProvider p);
  SignalFileStatus file_status() const;

 private:
  SignalHub();
  std::atomic<uint64_t> logs_{0}, metrics_{0}, span_events_{0};
  std::array<std::atomic<uint64_t>, kSignalCount> counts_{};
  std::atomic<const SpanSink*> span_sink_{nullptr};
  std::vector<std::unique_ptr<SpanSink>> sinks_;  // guarded by mu_: every sink ever set
  mutable std::mutex mu_;
  StatusProvider status_;  // guarded by mu_
};

// Shorthand: SignalHub::instance().emit(s, detail).
inline void signal(Signal s, std::string_view detail) { SignalHub::instance().emit(s, detail); }

}  // namespace keel::observe

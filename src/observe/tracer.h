// The tracer: the effectful shell around the sampler (sampler.h) and the exporter's policy
// (export_core.h). Front ends ask it whether to keep a finished request and hand it the span;
// a thread of its own sends batches to the OTLP/HTTP collector (JSON encoding).
//
// Threading: random(), record() and flush() are called on shard `shard`'s thread only and touch
// only that shard's state, except when handing a full buffer (64 spans) or a flush to the
// exporter: one short mutex section, never a wait on the network. The hand-off is bounded:
// spans beyond max_queue_spans waiting for the exporter are dropped and counted.
// The exporter thread is observe/exporter.h's.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/random.h"
#include "observe/export_core.h"
#include "observe/exporter.h"
#include "observe/sampler.h"
#include "observe/trace_ring.h"

namespace keel::observe {

struct TracerOptions {
  HttpUrl endpoint;                  // the collector's traces URL (…/v1/traces)
  std::string service_name = "keel";
  std::string instance_id;           // service.instance.id: the node's id
  std::string version;               // service.version
  SamplerOptions sampler;
  ExportOptions exporter;
  int64_t export_timeout_ms = 10000;  // one export request, connect to last byte
  // The spans of recent slow requests kept in memory (trace_ring.h): trace.recent_spans,
  // trace.recent_bytes. max_spans = 0: none.
  TraceRingOptions recent;
};

using TracerStats = ExporterStats;  // spans

class Tracer {
 public:
  Tracer(TracerOptions opt, unsigned shards);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  void start();  // the exporter thread
  // Sends what is queued (waiting at most export_timeout_ms past the last batch) and joins
  // the thread. REQUIRES: no shard calls record() any more.
  void stop();

  const Sampler& sampler() const { return sampler_; }
  // Shard thread: 64 random bits from the shard's own generator.
  uint64_t random(unsigned shard) { return local_[shard].rng.next_u64(); }
  // Shard thread: a finished span to export. It is also offered to the ring of recent slow
  // traces (keep()), unless `may_be_kept` is false: the caller knows that its trace is not
  // kept now and will not be for this span (a request span too fast for the slow log and with no
  // local parent), which spares the copy on the hot path.
  void record(unsigned shard, SpanData span);
  void record(unsigned shard, SpanData span, bool may_be_kept);
  // Any thread (rare spans, not requests': the node's signals): straight to the exporter's
  // queue, under its lock; dropped and counted when the queue is full.
  void record_any_thread(SpanData span);
  // Shard thread: hands the shard's buffered spans to the exporter (the node calls it every
  // 100 ms from each shard's maintenance timer).
  void flush(unsigned shard);
  // Wall-clock nanoseconds since the epoch (span timestamps).
  static int64_t now_unix_ns();

  TracerStats stats() const;

  // Recent slow traces (trace_ring.h), any thread. keep(): a request of trace `id` went to the
  // slow log, so its spans recorded here are kept for the admin page. A no-op when the ring is
  // off (trace.recent_spans = 0).
  void keep(const TraceId& id);
  std::vector<SpanData> recent_spans(const TraceId& id) const;
  std::vector<TraceSummary> recent_traces(size_t limit) const;
  TraceRingStats recent_stats() const;
  const TraceRingOptions& recent_options() const { return opt_.recent; }

 private:
  // A copy of each span recorded goes to the ring (one short lock) when it is on.
  void remember(const SpanData& span) {
    if (!ring_) return;
    std::lock_guard l(ring_mu_);
    ring_->add(span);
  }
  static constexpr size_t kLocalBatch = 64;
  struct alignas(64) Local {
    SeededRandom rng{0};
    std::vector<SpanData> buf;
  };

  TracerOptions opt_;
  Sampler sampler_;
  std::unique_ptr<Local[]> local_;
  Exporter<SpanData> exporter_;
  mutable std::mutex ring_mu_;
  std::unique_ptr<TraceRing> ring_;  // null: trace.recent_spans = 0
};

}  // namespace keel::observe

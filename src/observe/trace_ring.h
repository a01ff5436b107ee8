// The spans of recent slow requests, kept in memory on the node that recorded them, so the
// admin page (/ui/) and GET /v1/traces can show a slow request's trace without a trace
// backend. Pure and not thread-safe: the tracer (tracer.h) holds it under a mutex and feeds it
// every span it records.
//
// Two parts, both bounded:
//  - staged: the newest `staged_spans` spans recorded (any trace), oldest dropped first. A
//    request's children are often recorded before the request itself (a Rabia decision, the
//    commands an HTTP request ran), before anyone knows the request will be slow.
//  - kept: the traces that keep() named (a request of theirs went to the slow log), with their
//    staged spans and every span of theirs recorded afterwards; at most `max_spans` spans and
//    `max_bytes` bytes (span_bytes estimates) in all. The oldest kept traces go first; a span
//    that would not fit even alone with its trace is dropped and counted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "observe/otlp_json.h"
#include "observe/trace_context.h"

namespace keel::observe {

struct TraceRingOptions {
  size_t max_spans = 2000;      // trace.recent_spans; 0: the ring is off
  size_t max_bytes = 1u << 20;  // trace.recent_bytes
  size_t staged_spans = 256;    // spans waiting to learn whether their trace is slow
};

struct TraceSummary {
  TraceId trace_id{};
  size_t spans = 0;
  std::string root_name;      // the span with no parent here (or the earliest), "" if none yet
  int64_t start_unix_ns = 0;  // earliest start / latest end of its spans
  int64_t end_unix_ns = 0;
  bool error = false;  // a span has error status
};

struct TraceRingStats {
  size_t traces = 0, spans = 0, bytes = 0, staged = 0;
  uint64_t evicted_traces = 0;  // kept traces dropped to make room
  uint64_t dropped_spans = 0;   // spans of a kept trace that did not fit
};

class TraceRing {
 public:
  explicit TraceRing(TraceRingOptions o = {});

  // A span this node recorded.
  void add(const SpanData& s);
  // Keeps trace `id` (its staged spans and those recorded from now on); the newest kept trace.
  void keep(const TraceId& id);
  // The spans held for `id` (kept or staged), in the order they were recorded.
  std::vector<SpanData> spans(const TraceId& id) const;
  // The kept traces, newest first, at most `limit`.
  std::vector<TraceSummary> kept(size_t limit) const;
  TraceRingStats stats() const;
  const TraceRingOptions& options() const { return opt_; }

  // What a span counts for against max_bytes: its strings and a fixed overhead per field.
  static size_t span_bytes(const SpanData& s);

 private:
  struct Kept {
    std::vector<SpanData> spans;
    size_t bytes = 0;
    uint64_t order = 0;  // when it was last kept (larger: newer)
  };
  void append(const TraceId& id, Kept& k, SpanData s, size_t bytes);
  void evict_for(const TraceId& keep_id);

  TraceRingOptions opt_;
  std::deque<std::pair<SpanData, size_t>> staged_;  // (span, span_bytes)
  std::map<TraceId, Kept> kept_;
  std::map<uint64_t, TraceId> by_order_;  // oldest first
  uint64_t next_order_ = 0;
  size_t spans_ = 0, bytes_ = 0;
  uint64_t evicted_ = 0, dropped_ = 0;
};

}  // namespace keel::observe

// The OTLP exporter's policy, without I/O: a bounded queue of finished spans, batching, and
// the retry rules of the OTLP/HTTP specification
// (https://opentelemetry.io/docs/specs/otlp/#otlphttp-response):
//
//  - 2xx: done. A partialSuccess in the body counts its rejected spans; never retried.
//  - 429, 502, 503, 504 (and a failed connection or a timeout, status 0): retryable. The
//    next attempt waits for Retry-After (delta-seconds or an HTTP-date) when the answer has
//    one, else an exponential backoff (initial_backoff_ms, doubling, at most max_backoff_ms);
//    after max_retries retries the batch is dropped.
//  - anything else (400, 401, 404, 500...): not retryable, the batch is dropped.
//
// One request at a time is in flight; spans keep queuing meanwhile, up to max_queue_spans
// (beyond that offer() drops them and counts the drops). A batch goes out when it is full
// (max_batch_spans) or its oldest span waited batch_delay_ms, or at once when flushing.
//
// The caller (observe/tracer.cpp) owns the thread, the clock and the socket: it calls offer()
// with spans, poll(now) for a request to send, and on_result(now, ...) with the answer.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "observe/otlp_json.h"

namespace keel::observe {

struct ExportOptions {
  size_t max_queue_spans = 2048;
  size_t max_batch_spans = 512;
  int64_t batch_delay_ms = 1000;
  uint32_t max_retries = 5;
  int64_t initial_backoff_ms = 1000;
  int64_t max_backoff_ms = 30000;
  int64_t max_retry_after_ms = 300000;  // a longer Retry-After is cut to this
};

struct ExportCounters {
  uint64_t queued = 0;              // spans accepted into the queue
  uint64_t dropped_queue_full = 0;  // spans refused because the queue was full
  uint64_t exported = 0;            // spans the collector accepted
  uint64_t rejected = 0;            // spans the collector rejected in a partial success
  uint64_t dropped_failed = 0;      // spans of batches dropped (not retryable, or out of retries)
  uint64_t requests = 0;            // export requests sent
  uint64_t retries = 0;             // of those, retries
};

// What the transport saw. status 0: no HTTP answer (connect failure, timeout, reset).
struct ExportResult {
  int status = 0;
  std::string retry_after;  // the Retry-After header, if any
  std::string body;
  std::string error;        // for status 0: what went wrong
};

struct ExportRequest {
  std::string body;  // OTLP/HTTP JSON
  size_t spans = 0;
  uint32_t attempt = 0;  // 0 for the first send
};

// Retry-After as milliseconds from now: delta-seconds ("120") or an IMF-fixdate
// ("Wed, 21 Oct 2015 07:28:00 GMT") compared with now_unix_s. nullopt if malformed.
std::optional<int64_t> parse_retry_after_ms(std::string_view v, int64_t now_unix_s);
bool retryable_status(int status);

struct HttpUrl {
  std::string host;
  uint16_t port = 80;
  std::string path;
};
// "http://host[:port][/path]" (no https yet; the path defaults to `default_path`); nullopt
// with `why` set otherwise.
std::optional<HttpUrl> parse_http_url(const std::string& url, std::string& why,
                                      std::string_view default_path = "/v1/traces");


// Record: SpanData (traces) or LogData (logs). The counters and options name spans; for logs
// they count log records.
template <class Record>
class BasicExportCore {
 public:
  BasicExportCore(ExportOptions opt, Resource resource);

  // Queues what fits (moving from `records`); returns how many were dropped.
  size_t offer(int64_t now_ms, std::vector<Record>& records);
  // The request to send now, or null (one in flight, waiting for a retry or for records).
  // The pointer stays valid until on_result().
  const ExportRequest* poll(int64_t now_ms, bool flushing = false);
  // The answer to the request poll() returned. now_unix_s resolves an HTTP-date Retry-After.
  // Returns a line worth logging when a batch was dropped or partly rejected, else "".
  std::string on_result(int64_t now_ms, int64_t now_unix_s, const ExportResult& r);
  // When poll() may next have something to do (for the caller's sleep); INT64_MAX: nothing
  // queued or waiting.
  int64_t next_wakeup_ms() const;

  bool idle() const { return queue_.empty() && !current_; }
  size_t queued_spans() const { return queue_.size(); }
  const ExportCounters& counters() const { return c_; }

 private:
  ExportOptions opt_;
  Resource resource_;
  std::deque<Record> queue_;
  int64_t oldest_ms_ = 0;  // when the oldest queued record arrived (valid if queue_ is not empty)
  std::optional<ExportRequest> current_;
  bool in_flight_ = false;
  int64_t retry_at_ms_ = 0;
  ExportCounters c_;
};

using ExportCore = BasicExportCore<SpanData>;
using LogExportCore = BasicExportCore<LogData>;
extern template class BasicExportCore<SpanData>;
extern template class BasicExportCore<LogData>;

}  // namespace keel::observe

// Tracing keel calls from an application (docs/sdk.md, "Tracing calls"): the W3C trace context
// of the request the application is serving, carried to keel so that the node's spans (and
// those of the partition's primary and replicas) join the application's trace, and a span for
// each call the SDK makes, handed to the application's sink (to forward to its own tracer).
//
//   keel::client::TraceScope scope(*keel::client::TraceContext::parse(incoming_traceparent));
//   client.set("k", "v");   // a ClientSpan "SET" (child of the scope) goes to ClusterOptions::on_span;
//                           // keel's span for the SET is that span's child
//
// Only sampled contexts travel: the call is preceded by `CLIENT TRACEPARENT 00-<trace>-<span>-01`
// and followed by `CLIENT TRACEPARENT CLEAR` on the same connection, back to back (one write);
// a call without a sampled scope sends nothing more than before.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace keel::client {

struct TraceContext {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  bool sampled = false;

  // "00-<32 hex>-<16 hex>-<2 hex flags>" (W3C Trace Context, version 00, lower case, ids not all
  // zero); nullopt for anything else.
  static std::optional<TraceContext> parse(std::string_view traceparent);
  std::string traceparent() const;
  std::string trace_id_hex() const;
  std::string span_id_hex() const;
};

// The calling thread's trace context for keel::Client calls while it lives (scopes nest; the
// innermost wins). Not for coroutines of the async client: pass the traceparent to
// ClusterClient::command explicitly there.
class TraceScope {
 public:
  explicit TraceScope(TraceContext ctx);
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;
  static const TraceContext* current();

 private:
  TraceContext ctx_;
  const TraceContext* prev_;
};

// One finished call made under a sampled scope.
struct ClientSpan {
  TraceContext context;                  // the scope's trace id, this span's own id
  std::array<uint8_t, 8> parent_span_id{};  // the scope's span
  std::string name;                      // the command, upper case ("SET")
  int64_t start_unix_ns = 0, end_unix_ns = 0;
  bool error = false;                    // an I/O error, or the server's error reply
  std::string error_message;
};
// Called on the calling thread after each traced call. Keep it cheap (queue the span).
using SpanSink = std::function<void(const ClientSpan&)>;

}  // namespace keel::client

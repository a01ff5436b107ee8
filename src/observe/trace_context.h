// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and `tracestate`
// values, parsed and formatted. Pure: no I/O.
//
//   traceparent = version "-" trace-id "-" parent-id "-" trace-flags
//                 2 hex     32 hex        16 hex        2 hex      (lower case)
// Version ff is invalid; an all-zero trace id or parent id is invalid; version 00 is exactly
// 55 characters; a higher version may carry more fields after a '-' (we read the first four).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keel::observe {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

inline constexpr uint8_t kFlagSampled = 0x01;
inline constexpr size_t kMaxTraceStateBytes = 512;  // the spec's limit for propagation

// A remote parent: the trace and span a request continues, and its sampling decision.
struct TraceParent {
  TraceId trace_id{};
  SpanId span_id{};
  uint8_t flags = 0;
  std::string trace_state;  // validated by parse_tracestate, or empty
  bool sampled() const { return flags & kFlagSampled; }
};

bool is_zero(const TraceId& id);
bool is_zero(const SpanId& id);

// nullopt for anything the spec says to ignore (then the request starts a new trace).
std::optional<TraceParent> parse_traceparent(std::string_view v);
// The tracestate to carry on, or "" when it is invalid (more than 32 members, a malformed
// member, longer than kMaxTraceStateBytes): the spec says to drop it then.
std::string parse_tracestate(std::string_view v);

// A trace id as 32 lower-case hex digits, not all zero (as in traceparent); nullopt otherwise.
std::optional<TraceId> parse_trace_id(std::string_view hex);

std::string format_traceparent(const TraceId& trace, const SpanId& span, uint8_t flags);
std::string to_hex(const TraceId& id);
std::string to_hex(const SpanId& id);

// Ids from 64-bit random values (callers draw them; this stays pure).
TraceId trace_id_from(uint64_t hi, uint64_t lo);
SpanId span_id_from(uint64_t v);
// The low 8 bytes of a trace id as an integer: what ratio sampling compares (as OpenTelemetry's
// TraceIdRatioBased sampler does), so every node decides the same for one trace.
uint64_t trace_id_low(const TraceId& id);

}  // namespace keel::observe

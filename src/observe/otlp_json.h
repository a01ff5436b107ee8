// Finished spans and their OTLP/HTTP JSON encoding (opentelemetry-proto's JSON mapping:
// trace and span ids as lower-case hex, enums as integers, 64-bit integers as decimal
// strings). Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "observe/trace_context.h"

namespace keel::observe {

struct Attribute {
  std::string key;
  std::variant<std::string, int64_t, bool> value;
};

inline constexpr int kSpanKindInternal = 1;  // SPAN_KIND_INTERNAL
inline constexpr int kSpanKindServer = 2;   // SPAN_KIND_SERVER
inline constexpr int kStatusUnset = 0, kStatusError = 2;

// Something that happened at one instant during a span (OTLP Span.Event).
struct SpanEvent {
  int64_t time_unix_ns = 0;
  std::string name;
  std::vector<Attribute> attributes;
};

struct SpanData {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};  // all zero: a root span
  std::string trace_state;
  std::string name;
  int kind = kSpanKindServer;
  int64_t start_unix_ns = 0, end_unix_ns = 0;
  std::vector<Attribute> attributes;
  int status_code = kStatusUnset;
  std::string status_message;
  std::vector<SpanEvent> events;
};

struct Resource {
  std::vector<Attribute> attributes;  // service.name, service.instance.id, ...
  std::string scope_name = "keel";
  std::string scope_version;
};

// One log line (OTLP LogRecord).
inline constexpr int kSeverityTrace = 1, kSeverityDebug = 5, kSeverityInfo = 9, kSeverityWarn = 13,
                     kSeverityError = 17, kSeverityFatal = 21;  // OTLP SeverityNumber
struct LogData {
  int64_t time_unix_ns = 0;
  int severity_number = kSeverityInfo;
  std::string severity_text;  // "INFO", "WARN", ...
  std::string body;
  TraceId trace_id{};  // all zero: not logged for a request
  SpanId span_id{};
  std::vector<Attribute> attributes;  // keel.component, event.name
};

// One ExportTraceServiceRequest: {"resourceSpans":[{"resource":…,"scopeSpans":[{"scope":…,"spans":[…]}]}]}.
std::string encode_export_request(const Resource& resource, const std::vector<SpanData>& spans);
// One ExportLogsServiceRequest: {"resourceLogs":[{"resource":…,"scopeLogs":[{"scope":…,"logRecords":[…]}]}]}.
std::string encode_export_request(const Resource& resource, const std::vector<LogData>& logs);

// An Export*ServiceResponse body: how many records the collector rejected (partialSuccess's
// `rejected_field`: rejectedSpans, rejectedLogRecords) and its message. An empty or unparsable
// body means full success (0, "").
std::pair<uint64_t, std::string> parse_partial_success(std::string_view body,
                                                       std::string_view rejected_field = "rejectedSpans");

}  // namespace keel::observe

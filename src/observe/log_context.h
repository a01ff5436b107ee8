// The request a log line belongs to. A front end that knows a request's trace context sets it
// around the synchronous part of the request's work (LogScope); the JSON log format then adds
// "trace_id" and "span_id" to every line logged on that thread meanwhile.
//
// Never hold a LogScope across a suspension point (co_await): another request may run on the
// thread in between. Scopes nest; the innermost wins.
#pragma once

#include "observe/trace_context.h"

namespace keel::observe {

struct LogContext {
  TraceId trace_id{};
  SpanId span_id{};
};

// The calling thread's current context, or null.
const LogContext* current_log_context();

class LogScope {
 public:
  explicit LogScope(const LogContext* ctx);
  ~LogScope();
  LogScope(const LogScope&) = delete;
  LogScope& operator=(const LogScope&) = delete;

 private:
  const LogContext* prev_;
};

}  // namespace keel::observe

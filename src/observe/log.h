// One logger per component (log_levels.h), all writing to the node's one sink (stderr) in the
// node's one format; each has its own level, changed at run time by apply_log_levels (CONFIG
// SET loglevel, PUT /v1/config/loglevel). A module logs through its component's logger:
//
//   namespace { spdlog::logger& klog() { return observe::logger(observe::Component::kDht); } }
//   klog().info("partition {} moved to node {}", p, n);
//
// The JSON format names the component in each line ("component":"dht"); the text format shows
// it in brackets. spdlog's default logger is the `node` component's.
#pragma once

#include <spdlog/spdlog.h>

#include "observe/log_levels.h"

namespace keel::observe {

// Any thread. The loggers exist from the first call on (with spdlog's default text format
// until the node sets its own).
spdlog::logger& logger(Component c);
spdlog::level::level_enum to_spdlog_level(Level l);
// Any thread: every component's level from `l`.
void apply_log_levels(const LogLevels& l);
// The formatter every component's lines go through (the node's log.format).
void set_log_formatter(std::unique_ptr<spdlog::formatter> f);
// Any thread: another destination for every component's lines (beside stderr), with its own
// level (the sink's); remove it before it is destroyed.
void add_log_sink(std::shared_ptr<spdlog::sinks::sink> s);
void remove_log_sink(const std::shared_ptr<spdlog::sinks::sink>& s);

// The stable name of the event (a signal, signals.h) a line is logged for: the JSON format adds
// it as "event". Set around one synchronous log call; nests like LogScope.
class LogEventScope {
 public:
  explicit LogEventScope(std::string_view name);  // REQUIRES: name outlives the scope
  ~LogEventScope();
  LogEventScope(const LogEventScope&) = delete;
  LogEventScope& operator=(const LogEventScope&) = delete;

 private:
  std::string_view prev_;
};
std::string_view current_log_event_name();  // "" when none

// Structured fields of a line, as one JSON object's text ({"user":"alice",...}): the JSON format
// adds it as "fields" (the audit log, security/audit.h). Set around one synchronous log call.
class LogFieldsScope {
 public:
  explicit LogFieldsScope(std::string_view json_object);  // REQUIRES: it outlives the scope
  ~LogFieldsScope();
  LogFieldsScope(const LogFieldsScope&) = delete;
  LogFieldsScope& operator=(const LogFieldsScope&) = delete;

 private:
  std::string_view prev_;
};
std::string_view current_log_fields();  // "" when none

}  // namespace keel::observe

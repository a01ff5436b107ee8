// Log lines as OTLP log records (log.otlp_endpoint): a sink on the node's loggers
// (observe/log.h) turns every line at or above its own level into a LogData — severity, body,
// the component, the event name, and the trace and span ids of the request the line was logged
// for (log_context.h) — and hands it to an exporter thread (exporter.h): batched, bounded,
// retried as the OTLP specification says. A full queue drops lines (counted), never blocks
// the thread that logs. Lines the exporter threads log themselves are not exported.
#pragma once

#include <memory>
#include <string>

#include "observe/exporter.h"
#include "observe/log_levels.h"

namespace keel::observe {

struct LogExportOptions {
  HttpUrl endpoint;                  // the collector's logs URL (…/v1/logs)
  std::string service_name = "keel";
  std::string instance_id;
  std::string version;
  Level level = Level::kInfo;        // lines below it are not exported
  ExportOptions policy;
  int64_t timeout_ms = 10000;
};

class LogExporter {
 public:
  explicit LogExporter(LogExportOptions opt);
  ~LogExporter();
  LogExporter(const LogExporter&) = delete;
  LogExporter& operator=(const LogExporter&) = delete;

  // Starts the thread and adds the sink to the loggers.
  void start();
  // Takes the sink off, exports what is queued (within timeout_ms) and joins the thread.
  void stop();
  ExporterStats stats() const;

 private:
  class Sink;
  LogExportOptions opt_;
  std::unique_ptr<Exporter<LogData>> exporter_;
  std::shared_ptr<Sink> sink_;
};

}  // namespace keel::observe

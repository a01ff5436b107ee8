#include "observe/log_export.h"

#include <spdlog/sinks/base_sink.h>

#include <chrono>
#include <mutex>

#include "observe/log.h"
#include "observe/log_context.h"

namespace keel::observe {

namespace {
std::pair<int, const char*> severity(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
      return {kSeverityTrace, "TRACE"};
    case spdlog::level::debug:
      return {kSeverityDebug, "DEBUG"};
    case spdlog::level::info:
      return {kSeverityInfo, "INFO"};
    case spdlog::level::warn:
      return {kSeverityWarn, "WARN"};
    case spdlog::level::err:
      return {kSeverityError, "ERROR"};
    default:
      return {kSeverityFatal, "FATAL"};
  }
}
}  // namespace

// Runs on the thread that logs (the loggers are synchronous), so the thread's log context and
// event name are the line's.
class LogExporter::Sink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit Sink(Exporter<LogData>& e) : exporter_(e) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (on_export_thread()) return;
    LogData d;
    d.time_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(msg.time.time_since_epoch()).count();
    auto [number, text] = severity(msg.level);
    d.severity_number = number;
    d.severity_text = text;
    d.body.assign(msg.payload.data(), msg.payload.size());
    d.attributes.push_back({"keel.component", std::string(msg.logger_name.data(), msg.logger_name.size())});
    if (auto ev = current_log_event_name(); !ev.empty()) d.attributes.push_back({"event.name", std::string(ev)});
    if (const LogContext* ctx = current_log_context()) {
      d.trace_id = ctx->trace_id;
      d.span_id = ctx->span_id;
    }
    exporter_.hand_off(std::move(d));
  }
  void flush_() override {}

 private:
  Exporter<LogData>& exporter_;
};

LogExporter::LogExporter(LogExportOptions opt) : opt_(std::move(opt)) {
  exporter_ = std::make_unique<Exporter<LogData>>(ExporterOptions{
      opt_.endpoint, node_resource(opt_.service_name, opt_.instance_id, opt_.version), opt_.policy, opt_.timeout_ms});
  sink_ = std::make_shared<Sink>(*exporter_);
  sink_->set_level(to_spdlog_level(opt_.level));
}

LogExporter::~LogExporter() { stop(); }

void LogExporter::start() {
  exporter_->start();
  add_log_sink(sink_);
}

void LogExporter::stop() {
  remove_log_sink(sink_);
  exporter_->stop();
}

ExporterStats LogExporter::stats() const { return exporter_->stats(); }

}  // namespace keel::observe

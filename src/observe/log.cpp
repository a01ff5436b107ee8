#include "observe/log.h"

#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <array>
#include <memory>

namespace keel::observe {
namespace {
struct Loggers {
  // stderr, and whatever else is added (the OTLP log exporter): a dist sink adds and removes
  // sinks safely while other threads log.
  std::shared_ptr<spdlog::sinks::dist_sink_mt> sink = [] {
    auto d = std::make_shared<spdlog::sinks::dist_sink_mt>();
    d->add_sink(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    return d;
  }();
  std::array<std::shared_ptr<spdlog::logger>, kComponentCount> l;
  Loggers() {
    for (size_t c = 0; c < kComponentCount; ++c)
      l[c] = std::make_shared<spdlog::logger>(std::string(kComponentNames[c]), sink);
    spdlog::set_default_logger(l[static_cast<size_t>(Component::kNode)]);
  }
};
}  // namespace

spdlog::level::level_enum to_spdlog_level(Level l) {
  switch (l) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

namespace {
thread_local std::string_view t_event;
thread_local std::string_view t_fields;
Loggers& loggers() {
  static Loggers l;
  return l;
}
}  // namespace

spdlog::logger& logger(Component c) { return *loggers().l[static_cast<size_t>(c)]; }

void apply_log_levels(const LogLevels& levels) {
  auto& l = loggers();
  for (size_t c = 0; c < kComponentCount; ++c)
    l.l[c]->set_level(to_spdlog_level(levels.of(static_cast<Component>(c))));
}

LogEventScope::LogEventScope(std::string_view name) : prev_(t_event) { t_event = name; }
LogEventScope::~LogEventScope() { t_event = prev_; }
std::string_view current_log_event_name() { return t_event; }
LogFieldsScope::LogFieldsScope(std::string_view json_object) : prev_(t_fields) { t_fields = json_object; }
LogFieldsScope::~LogFieldsScope() { t_fields = prev_; }
std::string_view current_log_fields() { return t_fields; }

void set_log_formatter(std::unique_ptr<spdlog::formatter> f) {
  loggers().sink->set_formatter(std::move(f));
}

void add_log_sink(std::shared_ptr<spdlog::sinks::sink> s) { loggers().sink->add_sink(std::move(s)); }
void remove_log_sink(const std::shared_ptr<spdlog::sinks::sink>& s) { loggers().sink->remove_sink(s); }

}  // namespace keel::observe

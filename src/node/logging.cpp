#include "node/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "observe/log.h"
#include "observe/log_context.h"

namespace keel::node {
namespace {

// One JSON object per line with the message escaped, so any log shipper can parse it.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    fmt::format_to(std::back_inserter(dest), R"({{"ts_ms":{},"level":"{}","component":"{}","msg":")", ms,
                   spdlog::level::to_string_view(msg.level), std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) fmt::format_to(std::back_inserter(dest), "\\u{:04x}", c);
          else dest.push_back(c);
      }
    }
    dest.push_back('"');
    // The event (a signal's stable name) this line is logged for (observe/signal_hub.h).
    if (auto ev = observe::current_log_event_name(); !ev.empty()) {
      dest.append(std::string_view(R"(,"event":")"));
      dest.append(ev);
      dest.push_back('"');
    }
    // Structured fields (the audit log's): already a JSON object.
    if (auto f = observe::current_log_fields(); !f.empty()) {
      dest.append(std::string_view(R"(,"fields":)"));
      dest.append(f);
    }
    // The request this line was logged for, when a front end set one (observe/log_context.h).
    if (auto* ctx = observe::current_log_context()) {
      dest.append(std::string_view(R"(,"trace_id":")"));
      dest.append(observe::to_hex(ctx->trace_id));
      dest.append(std::string_view(R"(","span_id":")"));
      dest.append(observe::to_hex(ctx->span_id));
      dest.push_back('"');
    }
    dest.append(std::string_view("}\n"));
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

}  // namespace

void setup_logging(const std::string& level, const std::string& format) {
  std::string error;
  auto levels = observe::parse_log_levels(level, error);
  observe::apply_log_levels(levels ? *levels : observe::LogLevels{});  // (validated by config)
  if (format == "json") {
    observe::set_log_formatter(std::make_unique<JsonFormatter>());
  } else {
    observe::set_log_formatter(
        std::make_unique<spdlog::pattern_formatter>("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%n] %v"));
  }
}

}  // namespace keel::node

#include "security/audit.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "observe/log.h"
#include "observe/log_context.h"

namespace keel::security::audit {

namespace {
std::string cut(const std::string& v) {
  if (v.size() <= kMaxFieldBytes) return v;
  size_t n = kMaxFieldBytes;
  while (n > 0 && (static_cast<unsigned char>(v[n]) & 0xC0) == 0x80) --n;  // not inside a UTF-8 character
  return v.substr(0, n) + "...";
}

bool secret_word(std::string_view w) {
  return w.starts_with('>') || w.starts_with('<') || w.starts_with('#') || w.starts_with('!');
}

template <class S>
std::string redact(std::span<const S> rules) {
  std::string out;
  for (auto& r : rules) {
    if (!out.empty()) out += ' ';
    std::string_view w(r);
    if (secret_word(w)) {
      out += w.front();
      out += "<redacted>";
    } else {
      out += w;
    }
  }
  return out;
}

// The sink: read by every emit() (shared), replaced rarely (exclusive).
std::shared_mutex sink_mu;
Sink sink_fn;               // under sink_mu
uint64_t sink_handle = 0;   // under sink_mu
std::atomic<bool> sink_set{false};

void to_sink(std::string_view event, const Fields& fields) {
  if (!sink_set.load(std::memory_order_acquire)) return;
  Record r;
  r.event.assign(event);
  r.fields.reserve(fields.size());
  for (auto& [k, v] : fields) r.fields.emplace_back(std::string(k), cut(v));
  if (auto* ctx = observe::current_log_context(); ctx && ctx->trace_id != observe::TraceId{})
    r.trace_id = observe::to_hex(ctx->trace_id);
  std::shared_lock lock(sink_mu);
  if (sink_fn) sink_fn(std::move(r));
}
}  // namespace

uint64_t set_sink(Sink sink) {
  std::unique_lock lock(sink_mu);
  sink_fn = std::move(sink);
  sink_set.store(static_cast<bool>(sink_fn), std::memory_order_release);
  return ++sink_handle;
}

void clear_sink(uint64_t handle) {
  std::unique_lock lock(sink_mu);
  if (handle != sink_handle) return;
  sink_fn = nullptr;
  sink_set.store(false, std::memory_order_release);
}

std::string fields_json(const Fields& fields) {
  nlohmann::json j = nlohmann::json::object();
  for (auto& [k, v] : fields) j[std::string(k)] = cut(v);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string text(std::string_view event, const Fields& fields) {
  std::string out(event);
  for (auto& [k, v] : fields) {
    out += ' ';
    out += k;
    out += '=';
    std::string c = cut(v);
    bool quote = c.empty() || c.find_first_of(" \"=") != std::string::npos;
    if (quote) {
      out += '"';
      for (char ch : c) {
        if (ch == '"' || ch == '\\') out += '\\';
        out += ch;
      }
      out += '"';
    } else {
      out += c;
    }
  }
  return out;
}

std::string redact_rules(std::span<const std::string> rules) { return redact(rules); }
std::string redact_rules(std::span<const std::string_view> rules) { return redact(rules); }

void emit(std::string_view event, const Fields& fields) {
  to_sink(event, fields);
  auto& log = observe::logger(observe::Component::kAudit);
  const bool warn = event == kAuthFailure || event == kAuthLocked || event == kLockout;
  const auto level = warn ? spdlog::level::warn : spdlog::level::info;
  if (!log.should_log(level)) return;
  std::string json = fields_json(fields);
  observe::LogEventScope ev(event);
  observe::LogFieldsScope fs(json);
  log.log(level, "{}", text(event, fields));
}

bool success_due(std::string_view key, int64_t now_ms) {
  static std::mutex mu;
  static std::unordered_map<std::string, int64_t> last;
  std::lock_guard lock(mu);
  std::string k(key);
  auto it = last.find(k);
  if (it != last.end() && now_ms - it->second < kSuccessIntervalMs) return false;
  if (last.size() >= kMaxSuccessKeys) last.clear();
  last[k] = now_ms;
  return true;
}

}  // namespace keel::security::audit

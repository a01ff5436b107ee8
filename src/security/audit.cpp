#include "security/audit.h"

#include <nlohmann/json.hpp>

#include <mutex>
#include <unordered_map>

#include "observe/log.h"

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
}  // namespace

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

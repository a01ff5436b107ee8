#include "observe/trace_context.h"

#include <algorithm>

namespace keel::observe {
namespace {

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is invalid in traceparent
}

template <size_t N>
bool parse_hex(std::string_view s, std::array<uint8_t, N>& out) {
  if (s.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    int h = hexval(s[2 * i]), l = hexval(s[2 * i + 1]);
    if (h < 0 || l < 0) return false;
    out[i] = static_cast<uint8_t>(h * 16 + l);
  }
  return true;
}

template <size_t N>
std::string hex(const std::array<uint8_t, N>& a) {
  static const char* d = "0123456789abcdef";
  std::string s(2 * N, '0');
  for (size_t i = 0; i < N; ++i) {
    s[2 * i] = d[a[i] >> 4];
    s[2 * i + 1] = d[a[i] & 15];
  }
  return s;
}

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/' || c == '@';
}

// W3C tracestate list member: key "=" value. key: lcalpha (lcalpha/digit/_-*/){0,255}, or
// tenant@system; value: 1..256 printable ASCII except ',' and '=' (no trailing space).
bool valid_member(std::string_view m) {
  auto eq = m.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq > 256) return false;
  auto key = m.substr(0, eq), val = m.substr(eq + 1);
  if (!((key[0] >= 'a' && key[0] <= 'z') || (key[0] >= '0' && key[0] <= '9'))) return false;
  if (!std::all_of(key.begin(), key.end(), key_char)) return false;
  if (std::count(key.begin(), key.end(), '@') > 1) return false;
  if (val.empty() || val.size() > 256 || val.back() == ' ') return false;
  for (char c : val)
    if (c < 0x20 || c > 0x7e || c == ',' || c == '=') return false;
  return true;
}

}  // namespace

bool is_zero(const TraceId& id) { return std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; }); }
bool is_zero(const SpanId& id) { return std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; }); }

std::optional<TraceParent> parse_traceparent(std::string_view v) {
  // Leading and trailing spaces and tabs are allowed around a header value (OWS).
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.size() < 55) return std::nullopt;
  std::array<uint8_t, 1> version{}, flags{};
  if (!parse_hex(v.substr(0, 2), version) || version[0] == 0xff) return std::nullopt;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  if (version[0] == 0 && v.size() != 55) return std::nullopt;
  if (v.size() > 55 && v[55] != '-') return std::nullopt;  // a future version's extra fields
  TraceParent p;
  if (!parse_hex(v.substr(3, 32), p.trace_id) || is_zero(p.trace_id)) return std::nullopt;
  if (!parse_hex(v.substr(36, 16), p.span_id) || is_zero(p.span_id)) return std::nullopt;
  if (!parse_hex(v.substr(53, 2), flags)) return std::nullopt;
  p.flags = flags[0];
  return p;
}

std::optional<TraceId> parse_trace_id(std::string_view hex) {
  TraceId id{};
  if (hex.size() != 32 || !parse_hex(hex, id) || is_zero(id)) return std::nullopt;
  return id;
}

std::string parse_tracestate(std::string_view v) {
  if (v.size() > kMaxTraceStateBytes) return "";
  std::string out;
  size_t members = 0;
  while (!v.empty()) {
    auto comma = v.find(',');
    auto m = v.substr(0, comma);
    v = comma == std::string_view::npos ? std::string_view() : v.substr(comma + 1);
    while (!m.empty() && (m.front() == ' ' || m.front() == '\t')) m.remove_prefix(1);
    while (!m.empty() && (m.back() == ' ' || m.back() == '\t')) m.remove_suffix(1);
    if (m.empty()) continue;  // empty list members are allowed and skipped
    if (!valid_member(m) || ++members > 32) return "";
    if (!out.empty()) out += ',';
    out += m;
  }
  return out;
}

std::string format_traceparent(const TraceId& trace, const SpanId& span, uint8_t flags) {
  std::array<uint8_t, 1> f{flags};
  return "00-" + hex(trace) + "-" + hex(span) + "-" + hex(f);
}

std::string to_hex(const TraceId& id) { return hex(id); }
std::string to_hex(const SpanId& id) { return hex(id); }

TraceId trace_id_from(uint64_t hi, uint64_t lo) {
  TraceId t{};
  for (int i = 0; i < 8; ++i) {
    t[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    t[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  if (is_zero(t)) t[15] = 1;  // all zero is invalid
  return t;
}

SpanId span_id_from(uint64_t v) {
  SpanId s{};
  for (int i = 0; i < 8; ++i) s[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
  if (is_zero(s)) s[7] = 1;
  return s;
}

uint64_t trace_id_low(const TraceId& id) {
  uint64_t v = 0;
  for (int i = 8; i < 16; ++i) v = (v << 8) | id[i];
  return v;
}

}  // namespace keel::observe

// The trace context of keel::Client calls (keel/client/trace.h).
#include "keel/client/trace.h"

namespace keel::client {
namespace {

thread_local const TraceContext* g_current = nullptr;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is not allowed by W3C Trace Context
}

template <size_t N>
bool parse_hex(std::string_view s, std::array<uint8_t, N>& out) {
  if (s.size() != 2 * N) return false;
  bool nonzero = false;
  for (size_t i = 0; i < N; ++i) {
    int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
    nonzero |= out[i] != 0;
  }
  return nonzero;
}

template <size_t N>
std::string to_hex(const std::array<uint8_t, N>& in) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * N, '0');
  for (size_t i = 0; i < N; ++i) {
    out[2 * i] = kDigits[in[i] >> 4];
    out[2 * i + 1] = kDigits[in[i] & 15];
  }
  return out;
}

}  // namespace

std::optional<TraceContext> TraceContext::parse(std::string_view tp) {
  // 00-<32>-<16>-<2>: 55 characters.
  if (tp.size() != 55 || tp.substr(0, 3) != "00-" || tp[35] != '-' || tp[52] != '-') return std::nullopt;
  TraceContext c;
  std::array<uint8_t, 1> flags{};
  if (!parse_hex(tp.substr(3, 32), c.trace_id) || !parse_hex(tp.substr(36, 16), c.span_id)) return std::nullopt;
  if (tp.substr(53, 2) == "00") flags[0] = 0;
  else if (!parse_hex(tp.substr(53, 2), flags)) return std::nullopt;
  c.sampled = (flags[0] & 1) != 0;
  return c;
}

std::string TraceContext::traceparent() const {
  return "00-" + trace_id_hex() + "-" + span_id_hex() + (sampled ? "-01" : "-00");
}
std::string TraceContext::trace_id_hex() const { return to_hex(trace_id); }
std::string TraceContext::span_id_hex() const { return to_hex(span_id); }

TraceScope::TraceScope(TraceContext ctx) : ctx_(ctx), prev_(g_current) { g_current = &ctx_; }
TraceScope::~TraceScope() { g_current = prev_; }
const TraceContext* TraceScope::current() { return g_current; }

}  // namespace keel::client

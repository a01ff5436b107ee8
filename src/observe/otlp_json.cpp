#include "observe/otlp_json.h"

#include <nlohmann/json.hpp>

namespace keel::observe {

using json = nlohmann::json;

namespace {

// Appends `v` as a JSON string. Invalid UTF-8 bytes become U+FFFD, so a client's bytes in a
// span name or message never make the request unparsable.
void put_string(std::string& o, std::string_view v) {
  static const char* hex = "0123456789abcdef";
  o.push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  size_t n = v.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"': o += "\\\""; break;
        case '\\': o += "\\\\"; break;
        case '\n': o += "\\n"; break;
        case '\r': o += "\\r"; break;
        case '\t': o += "\\t"; break;
        default:
          if (c < 0x20) {
            o += "\\u00";
            o.push_back(hex[c >> 4]);
            o.push_back(hex[c & 15]);
          } else {
            o.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // A well-formed multi-byte sequence is copied; anything else is one U+FFFD per byte.
    size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    bool ok = len && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
    if (ok && len == 2) ok = c >= 0xc2;                                  // overlong
    if (ok && len == 3) ok = !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] >= 0xa0);  // overlong, surrogates
    if (ok && len == 4) ok = !(c == 0xf0 && p[i + 1] < 0x90) && !(c == 0xf4 && p[i + 1] >= 0x90) && c <= 0xf4;
    if (ok) {
      o.append(reinterpret_cast<const char*>(p + i), len);
      i += len;
    } else {
      o += "\xef\xbf\xbd";
      ++i;
    }
  }
  o.push_back('"');
}

void put_attrs(std::string& o, const std::vector<Attribute>& attrs) {
  o += '[';
  bool first = true;
  for (auto& at : attrs) {
    if (!first) o += ',';
    first = false;
    o += "{\"key\":";
    put_string(o, at.key);
    o += ",\"value\":{";
    if (auto* s = std::get_if<std::string>(&at.value)) {
      o += "\"stringValue\":";
      put_string(o, *s);
    } else if (auto* i = std::get_if<int64_t>(&at.value)) {
      o += "\"intValue\":\"" + std::to_string(*i) + "\"";
    } else {
      o += std::get<bool>(at.value) ? "\"boolValue\":true" : "\"boolValue\":false";
    }
    o += "}}";
  }
  o += ']';
}

}  // namespace

// Written directly (no JSON tree): the exporter encodes every kept span, at up to tens of
// thousands a second, on a core the shards share.
std::string encode_export_request(const Resource& resource, const std::vector<SpanData>& spans) {
  std::string o;
  o.reserve(256 + spans.size() * 512);
  o += "{\"resourceSpans\":[{\"resource\":{\"attributes\":";
  put_attrs(o, resource.attributes);
  o += "},\"scopeSpans\":[{\"scope\":{\"name\":";
  put_string(o, resource.scope_name);
  if (!resource.scope_version.empty()) {
    o += ",\"version\":";
    put_string(o, resource.scope_version);
  }
  o += "},\"spans\":[";
  bool first = true;
  for (auto& s : spans) {
    if (!first) o += ',';
    first = false;
    o += "{\"traceId\":\"" + to_hex(s.trace_id) + "\",\"spanId\":\"" + to_hex(s.span_id) + "\"";
    if (!is_zero(s.parent_span_id)) o += ",\"parentSpanId\":\"" + to_hex(s.parent_span_id) + "\"";
    if (!s.trace_state.empty()) {
      o += ",\"traceState\":";
      put_string(o, s.trace_state);
    }
    o += ",\"name\":";
    put_string(o, s.name);
    o += ",\"kind\":" + std::to_string(s.kind);
    o += ",\"startTimeUnixNano\":\"" + std::to_string(s.start_unix_ns) + "\"";
    o += ",\"endTimeUnixNano\":\"" + std::to_string(s.end_unix_ns) + "\"";
    o += ",\"attributes\":";
    put_attrs(o, s.attributes);
    if (!s.events.empty()) {
      o += ",\"events\":[";
      for (size_t i = 0; i < s.events.size(); ++i) {
        const auto& e = s.events[i];
        if (i) o += ',';
        o += "{\"timeUnixNano\":\"" + std::to_string(e.time_unix_ns) + "\",\"name\":";
        put_string(o, e.name);
        o += ",\"attributes\":";
        put_attrs(o, e.attributes);
        o += '}';
      }
      o += ']';
    }
    o += ",\"status\":{";
    if (s.status_code != kStatusUnset) o += "\"code\":" + std::to_string(s.status_code);
    if (!s.status_message.empty()) {
      if (s.status_code != kStatusUnset) o += ',';
      o += "\"message\":";
      put_string(o, s.status_message);
    }
    o += "}}";
  }
  o += "]}]}]}";
  return o;
}

std::string encode_export_request(const Resource& resource, const std::vector<LogData>& logs) {
  std::string o;
  o.reserve(256 + logs.size() * 256);
  o += "{\"resourceLogs\":[{\"resource\":{\"attributes\":";
  put_attrs(o, resource.attributes);
  o += "},\"scopeLogs\":[{\"scope\":{\"name\":";
  put_string(o, resource.scope_name);
  if (!resource.scope_version.empty()) {
    o += ",\"version\":";
    put_string(o, resource.scope_version);
  }
  o += "},\"logRecords\":[";
  bool first = true;
  for (auto& l : logs) {
    if (!first) o += ',';
    first = false;
    o += "{\"timeUnixNano\":\"" + std::to_string(l.time_unix_ns) + "\"";
    o += ",\"observedTimeUnixNano\":\"" + std::to_string(l.time_unix_ns) + "\"";
    o += ",\"severityNumber\":" + std::to_string(l.severity_number);
    o += ",\"severityText\":";
    put_string(o, l.severity_text);
    o += ",\"body\":{\"stringValue\":";
    put_string(o, l.body);
    o += "},\"attributes\":";
    put_attrs(o, l.attributes);
    if (!is_zero(l.trace_id)) {
      o += ",\"traceId\":\"" + to_hex(l.trace_id) + "\",\"spanId\":\"" + to_hex(l.span_id) + "\"";
      o += ",\"flags\":1";
    }
    o += '}';
  }
  o += "]}]}]}";
  return o;
}

std::pair<uint64_t, std::string> parse_partial_success(std::string_view body, std::string_view rejected_field) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return {0, ""};
  auto it = j.find("partialSuccess");
  if (it == j.end() || !it->is_object()) return {0, ""};
  uint64_t rejected = 0;
  if (auto r = it->find(rejected_field); r != it->end()) {
    // int64 fields may arrive as strings or numbers in the JSON mapping.
    if (r->is_string()) {
      try {
        rejected = std::stoull(r->get<std::string>());
      } catch (...) {
        rejected = 0;
      }
    } else if (r->is_number_unsigned() || r->is_number_integer()) {
      rejected = r->get<uint64_t>();
    }
  }
  std::string msg;
  if (auto m = it->find("errorMessage"); m != it->end() && m->is_string()) msg = m->get<std::string>();
  return {rejected, msg};
}

}  // namespace keel::observe

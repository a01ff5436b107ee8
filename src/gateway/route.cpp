#include "gateway/route.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>

namespace keel::gateway {

namespace {

constexpr std::array<std::string_view, 7> kMethods = {"GET",    "HEAD",  "POST",   "PUT",
                                                      "DELETE", "PATCH", "OPTIONS"};
constexpr std::string_view kAllowedMethods = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, * (any)";

bool ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool literal_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f && c != '{' && c != '}' && c != '?' && c != '#' && c != '*';
}

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Printable, bounded excerpt of user input for error messages.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
  if (s.size() > 80) out += "...";
  return out;
}

Result<Segment> parse_segment(std::string_view seg, std::string_view whole) {
  if (seg == "*") return Segment{SegKind::kParam, ""};
  if (seg == "**") return Segment{SegKind::kRest, ""};
  if (seg.front() == '{') {
    if (seg.back() != '}')
      return make_error(Errc::kInvalidArgument,
                        fmt::format("path '{}': segment '{}' opens '{{' but does not end with '}}'; a "
                                    "parameter is a whole segment: {{name}} or {{name=**}}",
                                    shown(whole), shown(seg)));
    std::string_view inner = seg.substr(1, seg.size() - 2);
    SegKind kind = SegKind::kParam;
    if (auto eq = inner.find('='); eq != std::string_view::npos) {
      auto pat = inner.substr(eq + 1);
      if (pat == "**") kind = SegKind::kRest;
      else if (pat != "*")
        return make_error(Errc::kInvalidArgument,
                          fmt::format("path '{}': parameter '{}' has pattern '{}'; allowed: {{name}}, "
                                      "{{name=*}} (one segment) or {{name=**}} (the rest of the path)",
                                      shown(whole), shown(seg), shown(pat)));
      inner = inner.substr(0, eq);
    }
    if (inner.empty() || inner.size() > 64 || (inner.front() >= '0' && inner.front() <= '9'))
      return make_error(Errc::kInvalidArgument,
                        fmt::format("path '{}': parameter '{}' needs a name of 1 to 64 letters, digits or "
                                    "'_' not starting with a digit",
                                    shown(whole), shown(seg)));
    for (char c : inner)
      if (!ident_char(c))
        return make_error(Errc::kInvalidArgument,
                          fmt::format("path '{}': parameter name '{}' may hold only letters, digits and '_'",
                                      shown(whole), shown(inner)));
    return Segment{kind, std::string(inner)};
  }
  for (char c : seg)
    if (!literal_char(c))
      return make_error(
          Errc::kInvalidArgument,
          fmt::format("path '{}': segment '{}' has the character '{}', which a literal segment may not "
                      "hold; allowed: printable ASCII without space, '{{', '}}', '?', '#', '*' (a "
                      "parameter is a whole segment: {{name}}, *, {{name=**}} or **)",
                      shown(whole), shown(seg), shown(std::string_view(&c, 1))));
  return Segment{SegKind::kLiteral, std::string(seg)};
}

// A whole number from 1 to `max`, or nullopt.
std::optional<uint64_t> parse_count(std::string_view v, uint64_t max) {
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size() || n < 1 || n > max) return std::nullopt;
  return n;
}

// "NAME:VALUE" (exact) or "NAME" (presence), the text of a header= option.
Result<HeaderMatch> parse_header_match(std::string_view spec, const Limits& limits) {
  auto colon = spec.find(':');
  auto name = spec.substr(0, colon);
  HeaderMatch h;
  if (name.empty() || name.size() > limits.max_header_name_bytes)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("header match '{}' needs a header name of 1 to {} characters; allowed: "
                                  "header=NAME:VALUE (exact value) or header=NAME (present)",
                                  shown(spec), limits.max_header_name_bytes));
  for (char c : name) {
    char l = c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
    if (!((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9') || l == '-' || l == '_' || l == '.'))
      return make_error(Errc::kInvalidArgument,
                        fmt::format("header name '{}' may hold only letters, digits, '-', '_' and '.'", shown(name)));
    h.name.push_back(l);
  }
  if (colon == std::string_view::npos) {
    h.presence = true;
    return h;
  }
  auto value = spec.substr(colon + 1);
  if (value.empty() || value.size() > limits.max_header_value_bytes)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("header match '{}' needs a value of 1 to {} characters after ':' (or no ':' "
                                  "to match any value)",
                                  shown(spec), limits.max_header_value_bytes));
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '#')
      return make_error(Errc::kInvalidArgument,
                        fmt::format("header value '{}' may hold only printable ASCII without space or '#'",
                                    shown(value)));
  }
  if (value.find("=>") != std::string_view::npos)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("header value '{}' may not hold '=>' (it ends the route in a routes file)",
                                  shown(value)));
  h.value = std::string(value);
  return h;
}

}  // namespace

std::string Template::text() const {
  if (segs.empty()) return "/";
  std::string out;
  for (auto& s : segs) {
    out.push_back('/');
    switch (s.kind) {
      case SegKind::kLiteral:
        out += s.text;
        break;
      case SegKind::kParam:
        out += s.text.empty() ? "*" : "{" + s.text + "}";
        break;
      case SegKind::kRest:
        out += s.text.empty() ? "**" : "{" + s.text + "=**}";
        break;
    }
  }
  return out;
}

Result<Template> parse_template(std::string_view path, const Limits& limits) {
  if (path.size() > limits.max_route_bytes)
    return make_error(Errc::kInvalidArgument, fmt::format("path of {} bytes is too long; allowed: up to {}",
                                                          path.size(), limits.max_route_bytes));
  if (path.empty() || path.front() != '/')
    return make_error(Errc::kInvalidArgument,
                      fmt::format("path '{}' must start with '/' (for example /api/orders/{{orderId}})", shown(path)));
  Template t;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    auto seg = path.substr(i, j - i);
    i = j + 1;
    if (seg.empty()) continue;
    if (t.has_rest())
      return make_error(Errc::kInvalidArgument,
                        fmt::format("path '{}': a catch-all ({{name=**}} or **) must be the last segment",
                                    shown(path)));
    if (t.segs.size() >= limits.max_segments)
      return make_error(Errc::kInvalidArgument, fmt::format("path '{}' has more than {} segments",
                                                            shown(path), limits.max_segments));
    auto s = parse_segment(seg, path);
    if (!s) return std::unexpected(s.error());
    t.segs.push_back(std::move(*s));
  }
  // Parameter names must be unique within a template: they key the captured values.
  for (size_t a = 0; a < t.segs.size(); ++a)
    for (size_t b = a + 1; b < t.segs.size(); ++b)
      if (t.segs[a].kind != SegKind::kLiteral && t.segs[b].kind != SegKind::kLiteral &&
          !t.segs[a].text.empty() && t.segs[a].text == t.segs[b].text)
        return make_error(Errc::kInvalidArgument,
                          fmt::format("path '{}' names parameter '{}' twice", shown(path), t.segs[a].text));
  return t;
}

std::string RouteSpec::text() const {
  std::string out = method + " " + path.text();
  if (!host.empty()) out += " host=" + host;
  for (auto& h : headers) out += " header=" + h.text();
  if (rate.enabled()) {
    out += " rate=" + rate.text();
    if (rate.burst != 0) out += fmt::format(" burst={}", rate.burst);
    if (!rate.header.empty()) out += " rate_key=header:" + rate.header;
    if (rate.cluster) out += " rate_scope=cluster";
  }
  return out;
}

std::string RateSpec::text() const {
  return fmt::format("{}/{}", count, period_ms == 1000 ? "s" : period_ms == 60000 ? "m" : "h");
}

std::string HeaderMatch::text() const { return presence ? name : name + ":" + value; }

Result<RouteSpec> parse_route(std::string_view text, const Limits& limits) {
  text = trim(text);
  if (text.size() > limits.max_route_bytes)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("route of {} bytes is too long; allowed: up to {}", text.size(), limits.max_route_bytes));
  constexpr std::string_view kForm =
      "expected 'METHOD /path' or 'METHOD:/path', optionally followed by options host=HOST, "
      "header=NAME:VALUE, header=NAME (for example 'GET /api/orders/{orderId}' or 'POST:/api/orders')";
  size_t cut = text.find_first_of(" \t:");
  if (cut == std::string_view::npos || cut == 0)
    return make_error(Errc::kInvalidArgument, fmt::format("route '{}': {}", shown(text), kForm));
  RouteSpec r;
  std::string method;
  for (char c : text.substr(0, cut)) method.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c);
  if (method == "*" || method == "ANY") {
    r.method = "*";
  } else {
    bool known = false;
    for (auto m : kMethods) known = known || m == method;
    if (!known)
      return make_error(Errc::kInvalidArgument, fmt::format("route '{}': method '{}' is not one of {}",
                                                            shown(text), shown(method), kAllowedMethods));
    r.method = method;
  }
  auto rest = trim(text.substr(cut + 1));
  auto sp = rest.find_first_of(" \t");
  auto path = rest.substr(0, sp);
  auto opts = sp == std::string_view::npos ? std::string_view() : trim(rest.substr(sp));
  auto t = parse_template(path, limits);
  if (!t) return make_error(Errc::kInvalidArgument, fmt::format("route '{}': {}", shown(text), t.error().message));
  r.path = std::move(*t);
  constexpr std::string_view kOptions =
      "allowed: host=HOST, header=NAME:VALUE, header=NAME, rate=N/s|N/m|N/h, burst=N, rate_key=client|header:NAME, rate_scope=node|cluster";
  bool have_host = false, have_burst = false, have_key = false, have_scope = false;
  while (!opts.empty()) {
    auto end = opts.find_first_of(" \t");
    auto opt = opts.substr(0, end);
    opts = end == std::string_view::npos ? std::string_view() : trim(opts.substr(end));
    if (opt.starts_with("host=")) {
      if (have_host)
        return make_error(Errc::kInvalidArgument, fmt::format("route '{}': host= is given twice", shown(text)));
      have_host = true;
      auto host = opt.substr(5);
      if (host.empty() || host.size() > limits.max_host_bytes)
        return make_error(Errc::kInvalidArgument, fmt::format("route '{}': host must have 1 to {} characters",
                                                              shown(text), limits.max_host_bytes));
      for (char c : host) {
        char l = c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
        if (!host_char(l))
          return make_error(Errc::kInvalidArgument,
                            fmt::format("route '{}': host '{}' may hold only letters, digits, '-' and '.' "
                                        "(no port, no wildcard)",
                                        shown(text), shown(host)));
        r.host.push_back(l);
      }
    } else if (opt.starts_with("header=")) {
      auto hm = parse_header_match(opt.substr(7), limits);
      if (!hm) return make_error(Errc::kInvalidArgument, fmt::format("route '{}': {}", shown(text), hm.error().message));
      for (auto& h : r.headers)
        if (h.name == hm->name)
          return make_error(Errc::kInvalidArgument, fmt::format("route '{}': header '{}' is matched twice; one "
                                                                "header= per header name",
                                                                shown(text), hm->name));
      if (r.headers.size() >= limits.max_header_matches)
        return make_error(Errc::kInvalidArgument, fmt::format("route '{}': more than {} header= options",
                                                              shown(text), limits.max_header_matches));
      r.headers.push_back(std::move(*hm));
    } else if (opt.starts_with("rate=")) {
      if (r.rate.enabled())
        return make_error(Errc::kInvalidArgument, fmt::format("route '{}': rate= is given twice", shown(text)));
      auto v = opt.substr(5);
      auto slash = v.find('/');
      auto unit = slash == std::string_view::npos ? std::string_view() : v.substr(slash + 1);
      auto n = parse_count(v.substr(0, slash), limits.max_rate_count);
      if (!n)
        return make_error(Errc::kInvalidArgument,
                          fmt::format("route '{}': rate '{}' needs a whole number of requests from 1 to {} before "
                                      "the unit; allowed: N/s, N/m, N/h (for example rate=100/s)",
                                      shown(text), shown(v), limits.max_rate_count));
      if (unit == "s") r.rate.period_ms = 1000;
      else if (unit == "m") r.rate.period_ms = 60000;
      else if (unit == "h") r.rate.period_ms = 3600000;
      else
        return make_error(Errc::kInvalidArgument,
                          fmt::format("route '{}': rate '{}' {}; allowed: N/s, N/m, N/h (for example rate=100/s)",
                                      shown(text), shown(v),
                                      slash == std::string_view::npos ? std::string("has no unit")
                                                                      : fmt::format("has the unit '{}'", shown(unit))));
      r.rate.count = *n;
    } else if (opt.starts_with("burst=")) {
      auto n = parse_count(opt.substr(6), limits.max_rate_count);
      if (!n || have_burst)
        return make_error(Errc::kInvalidArgument,
                          fmt::format("route '{}': burst '{}' must be given once, as a whole number from 1 to {}",
                                      shown(text), shown(opt.substr(6)), limits.max_rate_count));
      have_burst = true;
      r.rate.burst = *n;
    } else if (opt.starts_with("rate_scope=")) {
      auto v = opt.substr(11);
      if (have_scope || (v != "node" && v != "cluster"))
        return make_error(Errc::kInvalidArgument,
                          fmt::format("route '{}': rate_scope '{}' must be given once, as node (each node counts for "
                                      "itself) or cluster (the rate is for all nodes together)",
                                      shown(text), shown(v)));
      have_scope = true;
      r.rate.cluster = v == "cluster";
    } else if (opt.starts_with("rate_key=")) {
      auto v = opt.substr(9);
      if (have_key)
        return make_error(Errc::kInvalidArgument, fmt::format("route '{}': rate_key= is given twice", shown(text)));
      have_key = true;
      if (v == "client") {
        r.rate.header.clear();
      } else if (v.starts_with("header:")) {
        auto hm = parse_header_match(v.substr(7), limits);
        if (!hm || !hm->presence)
          return make_error(Errc::kInvalidArgument,
                            fmt::format("route '{}': rate_key '{}' needs a header name of letters, digits, '-', '_' "
                                        "and '.'; allowed: rate_key=client, rate_key=header:NAME",
                                        shown(text), shown(v)));
        r.rate.header = hm->name;
      } else {
        return make_error(Errc::kInvalidArgument,
                          fmt::format("route '{}': rate_key '{}' is not known; allowed: rate_key=client (the client "
                                      "address), rate_key=header:NAME",
                                      shown(text), shown(v)));
      }
    } else {
      return make_error(Errc::kInvalidArgument,
                        fmt::format("route '{}': unexpected '{}' after the path; {}", shown(text), shown(opt), kOptions));
    }
  }
  if (!r.rate.enabled() && (have_burst || have_key || have_scope))
    return make_error(Errc::kInvalidArgument,
                      fmt::format("route '{}': burst=, rate_key= and rate_scope= need rate= (for example rate=100/s "
                                  "burst=20)",
                                  shown(text)));
  if (r.rate.enabled()) {
    // The limiter keeps time in int64 nanoseconds: interval * burst must stay well inside it
    // (the SDK's RateLimit::validate asks for 4x headroom).
    int64_t interval_ns = r.rate.period_ms * 1'000'000 / static_cast<int64_t>(r.rate.count) + 1;
    if (interval_ns > INT64_MAX / (4 * static_cast<int64_t>(r.rate.effective_burst())))
      return make_error(Errc::kInvalidArgument,
                        fmt::format("route '{}': burst {} is too large for rate {}; allowed: burst up to {}",
                                    shown(text), r.rate.effective_burst(), r.rate.text(),
                                    INT64_MAX / (4 * interval_ns)));
  }
  if (r.rate.burst == r.rate.count) r.rate.burst = 0;  // the default, one canonical form
  std::sort(r.headers.begin(), r.headers.end(),
            [](const HeaderMatch& a, const HeaderMatch& b) { return a.name < b.name; });
  return r;
}

Status check_name(std::string_view what, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 128;
  for (char c : name) ok = ok && (ident_char(c) || c == '.' || c == '-');
  if (!ok)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("{} '{}' is not valid; allowed: 1 to 128 letters, digits, '.', '_' or '-'",
                                  what, shown(name)));
  return {};
}

Result<RouteSpec> parse_route_line(std::string_view line, const Limits& limits) {
  auto arrow = line.find("=>");
  if (arrow == std::string_view::npos)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("'{}' has no '=>'; expected 'METHOD:/path => service' (for example "
                                  "'POST:/api/orders => place-order')",
                                  shown(trim(line))));
  auto r = parse_route(line.substr(0, arrow), limits);
  if (!r) return r;
  auto service = trim(line.substr(arrow + 2));
  if (auto st = check_name("service", service); !st) return std::unexpected(st.error());
  r->service = std::string(service);
  return r;
}

Result<std::vector<RouteSpec>> parse_routes_file(std::string_view text, const Limits& limits) {
  if (text.size() > limits.max_file_bytes)
    return make_error(Errc::kInvalidArgument, fmt::format("routes file of {} bytes is too large; allowed: up to {}",
                                                          text.size(), limits.max_file_bytes));
  std::vector<RouteSpec> out;
  size_t lineno = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (++lineno > limits.max_file_lines)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("routes file has more than {} lines", limits.max_file_lines));
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    auto r = parse_route_line(line, limits);
    if (!r) return make_error(Errc::kInvalidArgument, fmt::format("line {}: {}", lineno, r.error().message));
    out.push_back(std::move(*r));
  }
  return out;
}

Result<std::vector<std::string_view>> split_path(std::string_view path, const Limits& limits) {
  if (auto q = path.find_first_of("?#"); q != std::string_view::npos) path = path.substr(0, q);
  if (path.empty() || path.front() != '/')
    return make_error(Errc::kInvalidArgument, "a request path must start with '/'");
  if (path.size() > limits.max_path_bytes)
    return make_error(Errc::kLimitExceeded, fmt::format("request path of {} bytes is longer than {}",
                                                        path.size(), limits.max_path_bytes));
  std::vector<std::string_view> segs;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) {
      if (segs.size() >= limits.max_segments)
        return make_error(Errc::kLimitExceeded,
                          fmt::format("request path has more than {} segments", limits.max_segments));
      segs.push_back(path.substr(i, j - i));
    }
    i = j + 1;
  }
  return segs;
}

}  // namespace keel::gateway

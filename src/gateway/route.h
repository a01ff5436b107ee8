// Routes of the HTTP gateway: a method, an optional host and a path template, pointing at a
// service. Pure: parsing and printing only, no I/O.
//
// Path templates are '/'-separated segments (empty segments are ignored, so "/a//b/" is
// "/a/b"):
//   orders        a literal segment: matches exactly that text (case-sensitive, not decoded)
//   {orderId}     a parameter: matches any one non-empty segment; '*' is an anonymous one
//   {rest=**}     a catch-all: matches zero or more remaining segments; '**' is an anonymous
//                 one. Only as the last segment. "/static/**" is a prefix match on /static.
// A template without a catch-all is an exact match.
//
// Route text: "METHOD PATH" or "METHOD:PATH" (the blueprint form), optionally followed by
// options separated by spaces:
//   host=HOST            only requests with that Host (lower case, no port)
//   header=NAME:VALUE    only requests whose header NAME (case-insensitive) has exactly VALUE
//   header=NAME          only requests that carry header NAME (any value)
//   rate=N/s|N/m|N/h     a rate limit on the route (GCRA, per client address or per header)
//   burst=N              with rate=: requests admitted at once (default N of rate=)
//   rate_key=client|header:NAME   with rate=: what the limit counts by (default client)
// METHOD is one of GET HEAD POST PUT DELETE PATCH OPTIONS, or '*' / ANY for any method. A
// routes file has one "ROUTE => SERVICE" per line; '#' starts a comment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace keel::gateway {

struct Limits {
  size_t max_route_bytes = 1024;      // one route text
  size_t max_segments = 32;           // segments of a template (and of a path that is matched)
  size_t max_path_bytes = 8192;       // a request path that is matched
  size_t max_host_bytes = 253;
  size_t max_file_bytes = 1 << 20;    // a routes file
  size_t max_file_lines = 10000;
  size_t max_routes = 100000;         // routes in one table
  size_t max_header_matches = 8;      // header= options of one route
  size_t max_header_name_bytes = 64;
  size_t max_header_value_bytes = 256;
  uint64_t max_rate_count = 1000000;  // rate= N and burst=
};

enum class SegKind : uint8_t { kLiteral = 0, kParam = 1, kRest = 2 };

struct Segment {
  SegKind kind = SegKind::kLiteral;
  std::string text;  // literal: the text; param/rest: the name ("" when anonymous)
  friend bool operator==(const Segment&, const Segment&) = default;
};

struct Template {
  std::vector<Segment> segs;
  bool has_rest() const { return !segs.empty() && segs.back().kind == SegKind::kRest; }
  std::string text() const;  // canonical: "/orders/{id}", "/static/{rest=**}", "/" for none
  friend bool operator==(const Template&, const Template&) = default;
};

Result<Template> parse_template(std::string_view path, const Limits& limits = {});

// A condition on a request header: present with exactly `value`, or (presence) present at all.
// Only the header's first value is compared; the comparison of values is case-sensitive.
struct HeaderMatch {
  std::string name;   // lower case: letters, digits, '-', '_', '.'
  std::string value;  // printable ASCII without space, '#' or "=>"; unused when presence
  bool presence = false;
  std::string text() const;  // "name:value" or "name"
  friend bool operator==(const HeaderMatch&, const HeaderMatch&) = default;
};

// A route's rate limit: `count` requests per `period_ms`, `burst` at once, counted per client
// address or per value of a header (a request without that header counts by its address).
struct RateSpec {
  uint64_t count = 0;        // 1..1000000 per period; 0 = no limit
  int64_t period_ms = 1000;  // 1000 (N/s), 60000 (N/m), 3600000 (N/h)
  uint64_t burst = 0;        // 1..1000000; 0 = the default, count
  std::string header;        // "" = by client address; else the header name, lower case
  // rate_scope=cluster: the rate is for the whole cluster, each of the N live members
  // admitting 1/N of it (requests spread evenly over the members: a load balancer in front).
  bool cluster = false;
  bool enabled() const { return count > 0; }
  uint64_t effective_burst() const { return burst ? burst : count; }
  std::string text() const;  // "100/s"
  std::string key_text() const { return header.empty() ? "client address" : "header " + header; }
  friend bool operator==(const RateSpec&, const RateSpec&) = default;
};

struct RouteSpec {
  std::string method = "*";  // upper case, or "*" for any
  std::string host;          // lower case, without port; "" = any host
  Template path;
  std::vector<HeaderMatch> headers;  // all must hold; sorted by name, names unique
  RateSpec rate;                     // takes no part in matching or priority
  std::string service;  // set by a routes file line or by the registration that holds it
  // Canonical route text, without the service: "GET /orders/{id}", "* /static/** host=a.b",
  // "GET /x header=x-canary:1 header=x-debug" (headers sorted by name).
  std::string text() const;
  friend bool operator==(const RouteSpec&, const RouteSpec&) = default;
};

// "GET /orders", "POST:/api/orders", "* /static/**", "GET /x host=api.example.com",
// "GET /x header=X-Canary:1".
Result<RouteSpec> parse_route(std::string_view text, const Limits& limits = {});

// "POST:/api/orders => place-order" (a route, "=>", a service name).
Result<RouteSpec> parse_route_line(std::string_view line, const Limits& limits = {});

// A whole routes file. The error names the line ("line 3: ...").
Result<std::vector<RouteSpec>> parse_routes_file(std::string_view text, const Limits& limits = {});

// Service and instance names: [A-Za-z0-9._-]{1,128} (service names also key metadata).
Status check_name(std::string_view what, std::string_view name);

// Splits a request path into segments (ignoring empty ones and anything from '?' on).
// Error if the path does not start with '/', is longer than max_path_bytes or has more than
// max_segments segments.
Result<std::vector<std::string_view>> split_path(std::string_view path, const Limits& limits = {});

}  // namespace keel::gateway

// The compiled route matcher: a trie over path segments. Pure, immutable after build(), safe to
// read from many threads.
//
// Priority (which route answers when several match a request), in this order:
//   1. The path template, compared segment by segment from the left: at the first position
//      where two templates differ, a literal beats a parameter, a parameter beats a catch-all,
//      and a template that has ended (an exact match) beats a catch-all matching nothing.
//      So /api/orders/new > /api/orders/{id} > /api/orders/** and /api > /api/**.
//   2. A route with a host beats one without.
//   3. A route with more header conditions beats one with fewer; with as many, the one with
//      more exact-value conditions (header=NAME:VALUE) beats one with more presence
//      conditions (header=NAME).
//   4. A route with a method beats a '*' route.
//   5. The lower `order` (the table uses the creation revision: the first registered wins),
//      then the service name, then the position in the list given to build().
// The trie is walked depth first, literal child before parameter child before catch-all, so
// the first route it accepts is the highest by rule 1; each node's routes are kept sorted by
// rules 2-5 and the first one whose method, host and headers hold answers (only the routes
// that share one template are compared there). Every trie node is visited at most once per request: the cost is bounded by the
// number of segments times the branching actually present, not by the number of routes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/route.h"

namespace keel::gateway {

// The request's headers as the matcher asks for them. Implementations: HeaderList (tests,
// /v1/routes/match) and the proxy's view of its request.
class HeaderLookup {
 public:
  virtual ~HeaderLookup() = default;
  // The first value of the header named `lower_name` (lower case), or nullopt when absent.
  virtual std::optional<std::string_view> get(std::string_view lower_name) const = 0;
};

// Headers as (name, value) pairs; names compared case-insensitively.
class HeaderList final : public HeaderLookup {
 public:
  HeaderList() = default;
  explicit HeaderList(std::vector<std::pair<std::string, std::string>> h) : h_(std::move(h)) {}
  std::optional<std::string_view> get(std::string_view lower_name) const override;

 private:
  std::vector<std::pair<std::string, std::string>> h_;
};

// A request without headers.
const HeaderLookup& no_headers();

// Whether every header condition of `r` holds.
bool headers_accept(const RouteSpec& r, const HeaderLookup& headers);

struct Entry {
  RouteSpec route;
  uint64_t order = 0;  // tie-break, lower wins
};

struct Match {
  uint32_t entry = 0;  // index into the entries given to Matcher::build()
  std::vector<std::pair<std::string, std::string>> params;  // named parameters and catch-alls
};

// True if `a` (at index ia) answers before `b` (at index ib) when both match a request.
bool higher_priority(const Entry& a, uint32_t ia, const Entry& b, uint32_t ib);

// Whether one route accepts a request: method (upper case), host (normalized) and the path's
// segments. The naive check the trie must agree with.
bool route_accepts(const RouteSpec& r, std::string_view method, std::string_view host,
                   const std::vector<std::string_view>& segs, const HeaderLookup& headers = no_headers());

// Lower case, without port ("API.Example.com:8080" -> "api.example.com", "[::1]:80" -> "[::1]").
std::string normalize_host(std::string_view host_header);

// The captured parameters of route `r` over `segs` (REQUIRES: route_accepts).
std::vector<std::pair<std::string, std::string>> captures(const RouteSpec& r,
                                                          const std::vector<std::string_view>& segs);

class Matcher {
 public:
  Matcher() = default;
  // Error kLimitExceeded beyond Limits::max_routes.
  static Result<Matcher> build(std::vector<Entry> entries, const Limits& limits = {});

  // `host` as sent in the Host header (normalized here); `path` may carry a query string.
  std::optional<Match> match(std::string_view method, std::string_view host, std::string_view path,
                             const HeaderLookup& headers = no_headers()) const;
  // Same, on a normalized host and a split path.
  std::optional<uint32_t> find(std::string_view method, std::string_view host,
                               const std::vector<std::string_view>& segs,
                               const HeaderLookup& headers = no_headers()) const;

  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  size_t nodes() const { return nodes_.size(); }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Node {
    std::map<std::string, uint32_t, std::less<>> literal;
    uint32_t param = kNone;
    std::vector<uint32_t> terminal;  // routes ending here, by rules 2-4
    std::vector<uint32_t> rest;      // routes with a catch-all here, by rules 2-4
  };
  struct Query {
    std::string_view method;
    std::string_view host;
    const std::vector<std::string_view>& segs;
    const HeaderLookup& headers;
  };
  std::optional<uint32_t> walk(uint32_t node, size_t i, const Query& q) const;
  std::optional<uint32_t> pick(const std::vector<uint32_t>& list, const Query& q) const;

  std::vector<Entry> entries_;
  std::vector<Node> nodes_;
  Limits limits_;
};

}  // namespace keel::gateway

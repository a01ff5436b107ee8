#include "gateway/table.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "base/assert.h"

namespace keel::gateway {

namespace {

using json = nlohmann::json;

Error bad(std::string m) { return Error{Errc::kInvalidArgument, std::move(m)}; }

Status parse_health(const json& v, HealthCheckOptions& h) {
  if (!v.is_object())
    return std::unexpected(bad(R"("health" must be an object {"path": "/healthz", "interval_ms": N, "timeout_ms": N, "unhealthy_after": N, "healthy_after": N})"));
  auto integer = [&](const std::string& k, const json& x, int64_t lo, int64_t hi, auto& out) -> Status {
    if (!x.is_number_integer() || x.get<int64_t>() < lo || x.get<int64_t>() > hi)
      return std::unexpected(bad(fmt::format("\"health.{}\" must be an integer from {} to {}", k, lo, hi)));
    out = static_cast<std::remove_reference_t<decltype(out)>>(x.get<int64_t>());
    return {};
  };
  for (auto& [k, x] : v.items()) {
    Status st;
    if (k == "path") {
      bool ok = x.is_string() && !x.get<std::string>().empty() && x.get<std::string>().size() <= 1024 &&
                x.get<std::string>().front() == '/';
      if (ok)
        for (unsigned char c : x.get<std::string>())
          if (c <= 0x20 || c >= 0x7f) ok = false;
      if (!ok)
        return std::unexpected(
            bad("\"health.path\" must be a path starting with '/' (up to 1024 printable bytes, no spaces), like \"/healthz\""));
      h.path = x.get<std::string>();
    } else if (k == "interval_ms") {
      st = integer(k, x, 100, 3600000, h.interval_ms);
    } else if (k == "timeout_ms") {
      st = integer(k, x, 10, 60000, h.timeout_ms);
    } else if (k == "unhealthy_after") {
      st = integer(k, x, 1, 100, h.unhealthy_after);
    } else if (k == "healthy_after") {
      st = integer(k, x, 1, 100, h.healthy_after);
    } else {
      return std::unexpected(bad(fmt::format(
          "unknown field \"health.{}\"; allowed: path, interval_ms, timeout_ms, unhealthy_after, healthy_after",
          k.substr(0, 64))));
    }
    if (!st) return st;
  }
  if (h.path.empty()) return std::unexpected(bad("\"health.path\" is required when \"health\" is given, like \"/healthz\""));
  return {};
}

}  // namespace

std::string registration_key(std::string_view service, std::string_view id) {
  return fmt::format("{}/{}", service, id);
}

Status check_address(std::string_view address) {
  auto colon = address.rfind(':');
  auto fail = [&] {
    return make_error(Errc::kInvalidArgument,
                      fmt::format("address '{}' is not HOST:PORT (for example 127.0.0.1:9000); host: "
                                  "letters, digits, '.', '-'; port: 1..65535",
                                  address.substr(0, 100)));
  };
  if (colon == std::string_view::npos || colon == 0 || colon > 253) return fail();
  for (char c : address.substr(0, colon))
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
      return fail();
  auto port = address.substr(colon + 1);
  unsigned p = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535)
    return fail();
  return {};
}

Result<Registration> parse_registration(std::string_view service, std::string_view id, std::string_view body,
                                        int64_t now_ms, const RegistrationLimits& limits,
                                        const Limits& route_limits) {
  if (auto st = check_name("service", service); !st) return std::unexpected(st.error());
  if (auto st = check_name("instance id", id); !st) return std::unexpected(st.error());
  if (body.size() > limits.max_body_bytes)
    return std::unexpected(bad(fmt::format("registration body of {} bytes is too large; allowed: up to {}",
                                           body.size(), limits.max_body_bytes)));
  constexpr std::string_view kShape =
      R"(expected a JSON object {"address": "HOST:PORT", "routes": ["GET /path", ...], "lease_ms": N, "metadata": {"version": "...", "zone": "...", "weight": N}})";
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::unexpected(bad(fmt::format("body is not JSON: {}", kShape)));
  Registration r;
  r.service = std::string(service);
  r.id = std::string(id);
  for (auto& [k, v] : j.items()) {
    if (k == "address") {
      if (!v.is_string()) return std::unexpected(bad("\"address\" must be a string HOST:PORT"));
      r.address = v.get<std::string>();
      if (auto st = check_address(r.address); !st) return std::unexpected(st.error());
    } else if (k == "routes") {
      if (!v.is_array()) return std::unexpected(bad("\"routes\" must be an array of strings like \"GET /orders/{id}\""));
      if (v.size() > limits.max_routes)
        return std::unexpected(bad(fmt::format("\"routes\" has {} routes; allowed: up to {}", v.size(), limits.max_routes)));
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string())
          return std::unexpected(bad(fmt::format("\"routes\"[{}] must be a string like \"GET /orders/{{id}}\"", i)));
        auto rs = parse_route(v[i].get<std::string>(), route_limits);
        if (!rs) return std::unexpected(bad(fmt::format("\"routes\"[{}]: {}", i, rs.error().message)));
        rs->service = r.service;
        if (std::find(r.routes.begin(), r.routes.end(), *rs) == r.routes.end()) r.routes.push_back(std::move(*rs));
      }
    } else if (k == "lease_ms") {
      if (!v.is_number_integer() || v.get<int64_t>() < limits.min_lease_ms || v.get<int64_t>() > limits.max_lease_ms)
        return std::unexpected(bad(fmt::format("\"lease_ms\" must be an integer from {} to {}", limits.min_lease_ms,
                                               limits.max_lease_ms)));
      r.lease_ms = v.get<int64_t>();
    } else if (k == "metadata") {
      if (!v.is_object()) return std::unexpected(bad("\"metadata\" must be an object {\"version\", \"zone\", \"weight\"}"));
      for (auto& [mk, mv] : v.items()) {
        if (mk == "version" || mk == "zone") {
          if (!mv.is_string() || mv.get<std::string>().size() > 128)
            return std::unexpected(bad(fmt::format("\"metadata.{}\" must be a string of up to 128 bytes", mk)));
          (mk == "version" ? r.meta.version : r.meta.zone) = mv.get<std::string>();
        } else if (mk == "weight") {
          if (!mv.is_number_integer() || mv.get<int64_t>() < 1 || mv.get<int64_t>() > 1000)
            return std::unexpected(bad("\"metadata.weight\" must be an integer from 1 to 1000"));
          r.meta.weight = static_cast<uint32_t>(mv.get<int64_t>());
        } else {
          return std::unexpected(
              bad(fmt::format("unknown field \"metadata.{}\"; allowed: version, zone, weight", mk.substr(0, 64))));
        }
      }
    } else if (k == "health") {
      if (auto st = parse_health(v, r.health); !st) return std::unexpected(st.error());
    } else {
      return std::unexpected(bad(fmt::format("unknown field \"{}\"; allowed: address, routes, lease_ms, metadata, health",
                                             k.substr(0, 64))));
    }
  }
  if (r.address.empty()) return std::unexpected(bad(fmt::format("\"address\" is required: {}", kShape)));
  if (r.lease_ms == 0) r.lease_ms = limits.default_lease_ms;
  r.expires_at_ms = now_ms + r.lease_ms;
  return r;
}

Result<std::string> registration_body_from_args(const std::vector<std::string_view>& args) {
  constexpr std::string_view kAllowed =
      "allowed: LEASE ms, ROUTE \"METHOD /path\" (repeatable), WEIGHT n, ZONE z, VERSION v";
  if (args.empty()) return std::unexpected(bad("the address HOST:PORT is required"));
  json j{{"address", std::string(args[0])}, {"routes", json::array()}};
  json meta = json::object();
  auto upper = [](std::string_view v) {
    std::string u(v);
    for (auto& c : u) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c);
    return u;
  };
  auto integer = [](std::string_view v, int64_t& out) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    return ec == std::errc() && p == v.data() + v.size();
  };
  for (size_t i = 1; i < args.size(); i += 2) {
    std::string opt = upper(args[i]);
    if (opt != "LEASE" && opt != "ROUTE" && opt != "WEIGHT" && opt != "ZONE" && opt != "VERSION")
      return std::unexpected(bad(fmt::format("unknown option '{}'; {}", args[i].substr(0, 64), kAllowed)));
    if (i + 1 >= args.size()) return std::unexpected(bad(fmt::format("{} needs a value; {}", opt, kAllowed)));
    std::string_view v = args[i + 1];
    int64_t n = 0;
    if (opt == "LEASE") {
      if (!integer(v, n)) return std::unexpected(bad("LEASE must be an integer number of milliseconds"));
      j["lease_ms"] = n;
    } else if (opt == "ROUTE") {
      j["routes"].push_back(std::string(v));
    } else if (opt == "WEIGHT") {
      if (!integer(v, n)) return std::unexpected(bad("WEIGHT must be an integer from 1 to 1000"));
      meta["weight"] = n;
    } else {
      meta[opt == "ZONE" ? "zone" : "version"] = std::string(v);
    }
  }
  if (!meta.empty()) j["metadata"] = meta;
  // RESP arguments are bytes: invalid UTF-8 is replaced (U+FFFD) rather than thrown by dump().
  std::string out = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return out;
}

std::string encode_registration(const Registration& r) {
  json routes = json::array();
  for (auto& rt : r.routes) routes.push_back(rt.text());
  json j{{"address", r.address},
         {"routes", routes},
         {"lease_ms", r.lease_ms},
         {"expires_at_ms", r.expires_at_ms},
         {"metadata", {{"version", r.meta.version}, {"zone", r.meta.zone}, {"weight", r.meta.weight}}}};
  if (!r.health.path.empty())
    j["health"] = json{{"path", r.health.path},
                       {"interval_ms", r.health.interval_ms},
                       {"timeout_ms", r.health.timeout_ms},
                       {"unhealthy_after", r.health.unhealthy_after},
                       {"healthy_after", r.health.healthy_after}};
  return j.dump();
}

Result<Registration> decode_registration(std::string_view key, std::string_view value, const Limits& route_limits) {
  auto slash = key.find('/');
  if (slash == std::string_view::npos) return std::unexpected(bad(fmt::format("key '{}' is not SERVICE/ID", key)));
  auto service = key.substr(0, slash), id = key.substr(slash + 1);
  json j = json::parse(value, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("expires_at_ms") || !j["expires_at_ms"].is_number_integer())
    return std::unexpected(bad("stored registration is not the JSON keel writes"));
  int64_t expires = j["expires_at_ms"].get<int64_t>();
  json body = j;
  body.erase("expires_at_ms");
  // Stored values were validated on the way in; parse them the same way (bounds included).
  RegistrationLimits lim;
  lim.max_body_bytes = value.size() + 1;
  auto r = parse_registration(service, id, body.dump(), 0, lim, route_limits);
  if (!r) return r;
  r->expires_at_ms = expires;
  return r;
}

Result<RouteTable> RouteTable::build(std::vector<Registration> regs, const std::vector<RouteSpec>& static_routes,
                                     int64_t now_ms, const Limits& limits) {
  RouteTable t;
  std::erase_if(regs, [now_ms](const Registration& r) { return r.expires_at_ms <= now_ms; });
  // Deterministic order whatever order the registrations came in.
  std::sort(regs.begin(), regs.end(), [](const Registration& a, const Registration& b) {
    return std::tie(a.service, a.id) < std::tie(b.service, b.id);
  });
  t.instances_ = std::move(regs);
  std::vector<Entry> entries;
  std::map<std::pair<std::string, std::string>, uint32_t> index;  // (service, route text) -> entry
  for (const auto& rs : static_routes) {
    auto key = std::make_pair(rs.service, rs.text());
    if (index.count(key)) continue;
    index.emplace(key, static_cast<uint32_t>(entries.size()));
    entries.push_back(Entry{rs, 0});
    std::vector<uint32_t> all;
    for (uint32_t i = 0; i < t.instances_.size(); ++i)
      if (t.instances_[i].service == rs.service) all.push_back(i);
    t.targets_.push_back(std::move(all));
  }
  size_t n_static = entries.size();
  for (uint32_t i = 0; i < t.instances_.size(); ++i) {
    const auto& inst = t.instances_[i];
    t.next_expiry_ms_ = std::min(t.next_expiry_ms_, inst.expires_at_ms);
    for (const auto& rs : inst.routes) {
      auto key = std::make_pair(inst.service, rs.text());
      auto it = index.find(key);
      if (it == index.end()) {
        it = index.emplace(key, static_cast<uint32_t>(entries.size())).first;
        entries.push_back(Entry{rs, inst.revision + 1});
        t.targets_.emplace_back();
      }
      auto& e = entries[it->second];
      if (it->second >= n_static) {
        e.order = std::min(e.order, inst.revision + 1);
        t.targets_[it->second].push_back(i);
      }
    }
  }
  auto m = Matcher::build(std::move(entries), limits);
  if (!m) return std::unexpected(m.error());
  t.matcher_ = std::move(*m);
  KEEL_ASSERT(t.targets_.size() == t.matcher_.size());
  return t;
}

Result<Policy> parse_policy(std::string_view text) {
  if (text == "p2c" || text == "least_request") return Policy::kLeastRequest;
  if (text == "round_robin") return Policy::kRoundRobin;
  if (text == "consistent_hash" || text == "ring_hash") return Policy::kConsistentHash;
  return make_error(Errc::kInvalidArgument,
                    fmt::format("balancer '{}' is not known; allowed: least_request (p2c), round_robin, "
                                "consistent_hash (ring_hash; needs gateway.hash_key)",
                                text.substr(0, 64)));
}

std::string_view policy_name(Policy p) {
  switch (p) {
    case Policy::kRoundRobin:
      return "round_robin";
    case Policy::kConsistentHash:
      return "consistent_hash";
    case Policy::kLeastRequest:
      break;
  }
  return "least_request";
}

size_t pick_least_request(const std::vector<Load>& loads, Random& rng) {
  KEEL_ASSERT(!loads.empty());
  if (loads.size() == 1) return 0;
  size_t a = rng.uniform(loads.size());
  size_t b = rng.uniform(loads.size() - 1);
  if (b >= a) ++b;  // two distinct candidates
  // (ia + 1) / wa <= (ib + 1) / wb, in integers.
  uint64_t ca = (uint64_t{loads[a].inflight} + 1) * std::max<uint32_t>(loads[b].weight, 1);
  uint64_t cb = (uint64_t{loads[b].inflight} + 1) * std::max<uint32_t>(loads[a].weight, 1);
  return cb < ca ? b : a;
}

size_t pick_round_robin(size_t n, uint64_t& cursor) {
  KEEL_ASSERT(n > 0);
  return static_cast<size_t>(cursor++ % n);
}

}  // namespace keel::gateway

// The gateway's route table: instances that registered themselves (kept in cluster metadata,
// domain "routes", key "<service>/<instance id>") and the routes they serve, compiled into a
// Matcher. Pure: time comes in as `now_ms`, so every node that holds the same registrations
// and is given the same time builds the same table.
//
// Leases: a registration stores the absolute wall-clock time its lease ends (expires_at_ms,
// set by the node that took the PUT: now + lease_ms). An instance whose lease has ended is left
// out of every table built after that time, and is dropped from metadata by a decided
// compare-and-set delete (the node's reaper), so a renewal that wins the race is kept. Nodes
// whose clocks differ see an expiry at slightly different moments: the skew bounds that.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "base/random.h"
#include "base/result.h"
#include "gateway/matcher.h"
#include "gateway/outlier.h"
#include "gateway/route.h"

namespace keel::gateway {

inline constexpr std::string_view kMetaDomain = "routes";

struct InstanceMeta {
  std::string version;
  std::string zone;
  uint32_t weight = 1;  // 1..1000: relative share of requests
  friend bool operator==(const InstanceMeta&, const InstanceMeta&) = default;
};

struct Registration {
  std::string service;
  std::string id;
  std::string address;  // "host:port"
  std::vector<RouteSpec> routes;  // each with .service == service
  int64_t lease_ms = 0;
  int64_t expires_at_ms = 0;
  InstanceMeta meta;
  HealthCheckOptions health;  // active checks of this instance; path empty: none
  uint64_t revision = 0;  // metadata creation revision (not stored: filled in by the reader)
  friend bool operator==(const Registration&, const Registration&) = default;
};

struct RegistrationLimits {
  int64_t min_lease_ms = 100;
  int64_t max_lease_ms = 24 * 3600 * 1000;
  int64_t default_lease_ms = 10000;
  size_t max_routes = 256;        // routes one instance declares
  size_t max_body_bytes = 64 * 1024;
};

std::string registration_key(std::string_view service, std::string_view id);

// "host:port": host of letters, digits, '.', '-' (or an IPv4 address), port 1..65535.
Status check_address(std::string_view address);

// The JSON body of PUT /v1/routes/services/{service}/instances/{id}:
//   {"address": "127.0.0.1:9000", "routes": ["GET /orders", "POST /orders/{id}"],
//    "lease_ms": 5000, "metadata": {"version": "1.4.2", "zone": "a", "weight": 2},
//    "health": {"path": "/healthz", "interval_ms": 2000, "timeout_ms": 1000,
//               "unhealthy_after": 2, "healthy_after": 1}}
// Only "address" is required (and "health.path" when "health" is given). Errors name the field and what is allowed.
Result<Registration> parse_registration(std::string_view service, std::string_view id, std::string_view body,
                                        int64_t now_ms, const RegistrationLimits& limits = {},
                                        const Limits& route_limits = {});

// ROUTE.REGISTER's arguments after the service and the id, as the JSON body the HTTP door
// takes (parse_registration then checks them the same way):
//   address [LEASE ms] [ROUTE "METHOD /path"]... [WEIGHT n] [ZONE z] [VERSION v]
// Options are case-insensitive. Errors name the option and what is allowed.
Result<std::string> registration_body_from_args(const std::vector<std::string_view>& args);

// The stored form (metadata value) and back. decode takes the metadata key.
std::string encode_registration(const Registration& r);
Result<Registration> decode_registration(std::string_view key, std::string_view value,
                                         const Limits& route_limits = {});

class RouteTable {
 public:
  RouteTable() = default;
  // Drops registrations whose lease ended at or before now_ms. `static_routes` (from a routes
  // file, each naming its service) serve every live instance of their service and win ties
  // against registered routes (order 0). Registered routes: one entry per (service, route
  // text), served by the instances that declared it, ordered by the earliest registration.
  static Result<RouteTable> build(std::vector<Registration> regs, const std::vector<RouteSpec>& static_routes,
                                  int64_t now_ms, const Limits& limits = {});

  const Matcher& matcher() const { return matcher_; }
  const std::vector<Registration>& instances() const { return instances_; }
  // Instances (indices into instances()) serving matcher entry `entry`.
  const std::vector<uint32_t>& targets(uint32_t entry) const { return targets_[entry]; }
  // The earliest lease end among the instances (INT64_MAX when none).
  int64_t next_expiry_ms() const { return next_expiry_ms_; }

 private:
  Matcher matcher_;
  std::vector<Registration> instances_;
  std::vector<std::vector<uint32_t>> targets_;
  int64_t next_expiry_ms_ = std::numeric_limits<int64_t>::max();
};

// ---- load balancing ----

// kConsistentHash: a ring hash (ring.h) keyed by gateway.hash_key; a request without the key
// is balanced by least request.
enum class Policy : uint8_t { kLeastRequest = 0, kRoundRobin = 1, kConsistentHash = 2 };
// "p2c" / "least_request", "round_robin", "consistent_hash" / "ring_hash"
Result<Policy> parse_policy(std::string_view text);
std::string_view policy_name(Policy p);

struct Load {
  uint32_t inflight = 0;
  uint32_t weight = 1;
};

// Power of two choices, least request: draws two distinct candidates uniformly and keeps the
// one with fewer outstanding requests per unit of weight ((inflight + 1) / weight); a tie keeps
// the first drawn. REQUIRES: !loads.empty().
size_t pick_least_request(const std::vector<Load>& loads, Random& rng);
// Round robin over n candidates. REQUIRES: n > 0.
size_t pick_round_robin(size_t n, uint64_t& cursor);

}  // namespace keel::gateway

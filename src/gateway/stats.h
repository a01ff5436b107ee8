// The gateway's request statistics, per route and per upstream service, for /metrics. Pure
// data (no clock: the proxy measures and passes durations) with bounded label sets: a route is
// labelled by its method, path template and host (never a raw path or a client address), and
// at most `max_series` routes and services are kept apart; later ones are counted under
// kOther.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "gateway/route.h"

namespace keel::gateway {

// Upper bounds (seconds) of the latency histogram's buckets; one more bucket is +Inf.
inline constexpr std::array<double, 13> kLatencyBoundsSeconds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                                 0.1,    0.25,  0.5,    1,     2.5,  10};

// "1xx".."5xx" by index 0..4; statuses outside 100..599 count as 5xx.
size_t status_class_index(unsigned status);
std::string_view status_class_name(size_t index);

struct RouteSeries {
  std::array<uint64_t, 5> by_class{};                             // answers by status class
  std::array<uint64_t, kLatencyBoundsSeconds.size() + 1> buckets{};  // not cumulative; last is +Inf
  uint64_t count = 0;
  double seconds_sum = 0;
  uint64_t rate_limited = 0;
};

enum class UpstreamFailure : uint8_t { kConnect = 0, kBroken = 1, kTimeout = 2, kTooLarge = 3 };
inline constexpr std::array<std::string_view, 4> kUpstreamFailureNames = {"connect", "broken", "timeout",
                                                                          "too_large"};

struct ServiceSeries {
  std::array<uint64_t, 5> answers_by_class{};  // upstream answers (every attempt that got one)
  std::array<uint64_t, 4> failures{};          // attempts that got none, by UpstreamFailure
  uint64_t retries = 0;                        // attempts after the first
};

class GatewayStats {
 public:
  static constexpr std::string_view kOther = "other";
  explicit GatewayStats(size_t max_series = 10000) : max_series_(max_series) {}

  // "GET /api/orders/{orderId}", "* /static/** host=a.example": the route's label.
  static std::string route_label(const RouteSpec& r);

  // One answer of the gateway to a request that matched route `r` (its own errors included).
  void request(const RouteSpec& r, unsigned status, double seconds);
  void rate_limited(const RouteSpec& r);
  void upstream_answer(std::string_view service, unsigned status);
  void upstream_failure(std::string_view service, UpstreamFailure f);
  void retry(std::string_view service);

  // By (route label, service).
  const std::map<std::pair<std::string, std::string>, RouteSeries>& routes() const { return routes_; }
  const std::map<std::string, ServiceSeries, std::less<>>& services() const { return services_; }

 private:
  RouteSeries& route(const RouteSpec& r);
  ServiceSeries& service(std::string_view s);
  size_t max_series_;
  std::map<std::pair<std::string, std::string>, RouteSeries> routes_;
  std::map<std::string, ServiceSeries, std::less<>> services_;
};

}  // namespace keel::gateway

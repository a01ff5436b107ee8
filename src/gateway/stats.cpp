#include "gateway/stats.h"

#include <algorithm>

#include "base/assert.h"

namespace keel::gateway {

size_t status_class_index(unsigned status) {
  if (status < 100 || status > 599) return 4;
  return status / 100 - 1;
}

std::string_view status_class_name(size_t index) {
  static constexpr std::array<std::string_view, 5> kNames = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  KEEL_ASSERT(index < kNames.size());
  return kNames[index];
}

std::string GatewayStats::route_label(const RouteSpec& r) {
  std::string out = r.method + " " + r.path.text();
  if (!r.host.empty()) out += " host=" + r.host;
  return out;
}

RouteSeries& GatewayStats::route(const RouteSpec& r) {
  auto key = std::make_pair(route_label(r), r.service);
  auto it = routes_.find(key);
  if (it != routes_.end()) return it->second;
  if (routes_.size() >= max_series_) key = {std::string(kOther), std::string(kOther)};
  return routes_[key];
}

ServiceSeries& GatewayStats::service(std::string_view s) {
  auto it = services_.find(s);
  if (it != services_.end()) return it->second;
  if (services_.size() >= max_series_) s = kOther;
  return services_[std::string(s)];
}

void GatewayStats::request(const RouteSpec& r, unsigned status, double seconds) {
  auto& s = route(r);
  ++s.by_class[status_class_index(status)];
  seconds = std::max(0.0, seconds);
  size_t b = 0;
  while (b < kLatencyBoundsSeconds.size() && seconds > kLatencyBoundsSeconds[b]) ++b;
  ++s.buckets[b];
  ++s.count;
  s.seconds_sum += seconds;
}

void GatewayStats::rate_limited(const RouteSpec& r) { ++route(r).rate_limited; }

void GatewayStats::upstream_answer(std::string_view s, unsigned status) {
  ++service(s).answers_by_class[status_class_index(status)];
}

void GatewayStats::upstream_failure(std::string_view s, UpstreamFailure f) {
  ++service(s).failures[static_cast<size_t>(f)];
}

void GatewayStats::retry(std::string_view s) { ++service(s).retries; }

}  // namespace keel::gateway

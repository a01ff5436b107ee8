// The gateway's per-route and per-service statistics: status classes, histogram buckets and
// bounded label sets (a route's label is its template, never the request's path).
#include "gateway/stats.h"

#include <gtest/gtest.h>

namespace keel::gateway {
namespace {

RouteSpec route(std::string_view text, std::string service) {
  auto r = parse_route(text);
  EXPECT_TRUE(r);
  r->service = std::move(service);
  return *r;
}

TEST(GatewayStats, CountsByRouteTemplateAndStatusClass) {
  GatewayStats st;
  auto r = route("GET /api/orders/{orderId} header=x-canary:1 rate=5/s", "orders");
  EXPECT_EQ(GatewayStats::route_label(r), "GET /api/orders/{orderId}");
  EXPECT_EQ(GatewayStats::route_label(route("* /static/** host=A.example", "s")), "* /static/** host=a.example");
  st.request(r, 200, 0.0001);
  st.request(r, 204, 0.003);
  st.request(r, 503, 0.2);
  st.request(r, 429, 20.0);
  st.request(r, 99, 0.0);
  st.rate_limited(r);
  ASSERT_EQ(st.routes().size(), 1u);
  auto& s = st.routes().at({"GET /api/orders/{orderId}", "orders"});
  EXPECT_EQ(s.by_class[status_class_index(200)], 2u);
  EXPECT_EQ(s.by_class[3], 1u);  // 4xx
  EXPECT_EQ(s.by_class[4], 2u);  // 5xx, and 99 counted as 5xx
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.seconds_sum, 0.0001 + 0.003 + 0.2 + 20.0);
  EXPECT_EQ(s.rate_limited, 1u);
  // Buckets by upper bound (le): 0.0001 and 0 in the first, 0.003 in le=0.005, 0.2 in le=0.25,
  // 20 in +Inf.
  EXPECT_EQ(s.buckets[0], 2u);
  EXPECT_EQ(s.buckets[3], 1u);
  EXPECT_EQ(kLatencyBoundsSeconds[3], 0.005);
  EXPECT_EQ(s.buckets[8], 1u);
  EXPECT_EQ(kLatencyBoundsSeconds[8], 0.25);
  EXPECT_EQ(s.buckets.back(), 1u);
  EXPECT_EQ(status_class_name(status_class_index(404)), "4xx");
  EXPECT_EQ(status_class_name(status_class_index(101)), "1xx");
}

TEST(GatewayStats, UpstreamAnswersFailuresAndRetriesPerService) {
  GatewayStats st;
  st.upstream_answer("items", 200);
  st.upstream_answer("items", 502);
  st.upstream_failure("items", UpstreamFailure::kConnect);
  st.upstream_failure("items", UpstreamFailure::kTimeout);
  st.retry("items");
  auto& s = st.services().find("items")->second;
  EXPECT_EQ(s.answers_by_class[1], 1u);
  EXPECT_EQ(s.answers_by_class[4], 1u);
  EXPECT_EQ(s.failures[static_cast<size_t>(UpstreamFailure::kConnect)], 1u);
  EXPECT_EQ(s.failures[static_cast<size_t>(UpstreamFailure::kTimeout)], 1u);
  EXPECT_EQ(s.failures[static_cast<size_t>(UpstreamFailure::kBroken)], 0u);
  EXPECT_EQ(s.retries, 1u);
  EXPECT_EQ(kUpstreamFailureNames[static_cast<size_t>(UpstreamFailure::kTooLarge)], "too_large");
}

TEST(GatewayStats, LabelSetsAreBounded) {
  GatewayStats st(3);
  for (int i = 0; i < 10; ++i) {
    st.request(route("GET /r" + std::to_string(i) + "/{id}", "svc" + std::to_string(i)), 200, 0.001);
    st.retry("svc" + std::to_string(i));
  }
  // Three routes kept apart, the other seven together under "other".
  EXPECT_EQ(st.routes().size(), 4u);
  EXPECT_EQ(st.routes().at({"other", "other"}).count, 7u);
  EXPECT_EQ(st.routes().at({"GET /r0/{id}", "svc0"}).count, 1u);
  EXPECT_EQ(st.services().size(), 4u);
  EXPECT_EQ(st.services().find("other")->second.retries, 7u);
  // A route already kept stays its own.
  st.request(route("GET /r1/{id}", "svc1"), 500, 0.001);
  EXPECT_EQ(st.routes().at({"GET /r1/{id}", "svc1"}).count, 2u);
}

}  // namespace
}  // namespace keel::gateway

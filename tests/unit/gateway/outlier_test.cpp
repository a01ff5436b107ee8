// Outlier ejection and the health-check state machine, on a manual clock.
#include "gateway/outlier.h"

#include <gtest/gtest.h>

namespace keel::gateway {
namespace {

OutlierOptions opts(uint32_t n = 5, int64_t base = 30000, int64_t max = 300000, uint32_t pct = 50) {
  return OutlierOptions{n, base, max, pct};
}

// `n` failures of one instance at time `now`; returns whether the last ejected it.
bool fail(OutlierDetector& d, const std::string& id, int n, int64_t now, size_t size = 4) {
  bool ej = false;
  for (int i = 0; i < n; ++i) ej = d.record("svc", id, true, size, now);
  return ej;
}

TEST(Outlier, EjectsAfterTheThresholdOfConsecutiveFailures) {
  OutlierDetector d(opts(5));
  EXPECT_FALSE(fail(d, "a", 4, 1000));
  EXPECT_FALSE(d.ejected("svc", "a", 1000));
  EXPECT_TRUE(d.record("svc", "a", true, 4, 1000));
  EXPECT_TRUE(d.ejected("svc", "a", 1000));
  EXPECT_EQ(d.ejected_until_ms("svc", "a", 1000), 31000);
  EXPECT_EQ(d.ejected_count("svc", 1000), 1u);
  EXPECT_EQ(d.ejections_total("svc"), 1u);
  EXPECT_FALSE(d.ejected("svc", "b", 1000));
}

TEST(Outlier, ASuccessResetsTheCount) {
  OutlierDetector d(opts(3));
  fail(d, "a", 2, 0);
  d.record("svc", "a", false, 4, 0);
  EXPECT_FALSE(fail(d, "a", 2, 0));
  EXPECT_FALSE(d.ejected("svc", "a", 0));
  EXPECT_TRUE(fail(d, "a", 1, 0));
}

TEST(Outlier, ReturnsWhenItsTimeIsUpAndEachEjectionLastsLonger) {
  OutlierDetector d(opts(2, 1000, 2500));
  EXPECT_TRUE(fail(d, "a", 2, 0));
  EXPECT_TRUE(d.ejected("svc", "a", 999));
  EXPECT_FALSE(d.ejected("svc", "a", 1000));  // back after base x 1
  EXPECT_EQ(d.ejected_until_ms("svc", "a", 1000), 0);
  EXPECT_TRUE(fail(d, "a", 2, 1000));
  EXPECT_EQ(d.times_ejected("svc", "a"), 2u);
  EXPECT_EQ(d.ejected_until_ms("svc", "a", 1000), 3000);  // base x 2
  EXPECT_TRUE(fail(d, "a", 2, 3000));
  EXPECT_EQ(d.ejected_until_ms("svc", "a", 3000), 5500);  // base x 3 = 3000, capped at 2500
  EXPECT_EQ(d.ejections_total("svc"), 3u);
}

TEST(Outlier, FailuresWhileEjectedDoNotExtendIt) {
  OutlierDetector d(opts(2, 1000));
  EXPECT_TRUE(fail(d, "a", 2, 0));
  EXPECT_FALSE(fail(d, "a", 10, 500));  // answers that were in flight
  EXPECT_EQ(d.ejected_until_ms("svc", "a", 500), 1000);
  EXPECT_EQ(d.times_ejected("svc", "a"), 1u);
}

TEST(Outlier, TheEjectionCountIsForgottenAfterStayingIn) {
  OutlierDetector d(opts(1, 1000, 5000));
  EXPECT_TRUE(fail(d, "a", 1, 0));      // out until 1000
  EXPECT_TRUE(fail(d, "a", 1, 1000));   // x2: until 3000
  EXPECT_EQ(d.times_ejected("svc", "a"), 2u);
  d.record("svc", "a", false, 4, 8000);  // in since 3000: 5000 ms = max_ejection_ms
  EXPECT_EQ(d.times_ejected("svc", "a"), 0u);
  EXPECT_TRUE(fail(d, "a", 1, 8000));
  EXPECT_EQ(d.ejected_until_ms("svc", "a", 8000), 9000);  // base x 1 again
}

TEST(Outlier, NeverEjectsMoreThanTheShareOfAService) {
  OutlierDetector d(opts(1, 1000, 300000, 50));
  // 4 instances, 50%: two may be out, not a third.
  EXPECT_TRUE(fail(d, "a", 1, 0, 4));
  EXPECT_TRUE(fail(d, "b", 1, 0, 4));
  EXPECT_FALSE(fail(d, "c", 1, 0, 4));
  EXPECT_EQ(d.ejected_count("svc", 0), 2u);
  EXPECT_FALSE(d.ejected("svc", "c", 0));
  // Once one is back, the next failure of c ejects it (its count stayed at the threshold).
  EXPECT_TRUE(fail(d, "c", 1, 1000, 4));
  // Another service is counted apart.
  EXPECT_TRUE(d.record("other", "x", true, 2, 0));
}

TEST(Outlier, AtLeastOneInstanceStaysEvenAtOneHundredPercent) {
  OutlierDetector d(opts(1, 1000, 300000, 100));
  EXPECT_TRUE(fail(d, "a", 1, 0, 3));
  EXPECT_TRUE(fail(d, "b", 1, 0, 3));
  EXPECT_FALSE(fail(d, "c", 1, 0, 3));
  OutlierDetector single(opts(1, 1000, 300000, 100));
  EXPECT_FALSE(fail(single, "only", 5, 0, 1));
  EXPECT_FALSE(single.ejected("svc", "only", 0));
  // 50% of 2: one of the two.
  OutlierDetector two(opts(1));
  EXPECT_TRUE(fail(two, "a", 1, 0, 2));
  EXPECT_FALSE(fail(two, "b", 1, 0, 2));
}

TEST(Outlier, ZeroThresholdTurnsItOff) {
  OutlierDetector d(opts(0));
  EXPECT_FALSE(fail(d, "a", 100, 0));
  EXPECT_FALSE(d.ejected("svc", "a", 0));
}

TEST(Outlier, RetainDropsTheStateOfInstancesThatLeft) {
  OutlierDetector d(opts(1, 1000));
  EXPECT_TRUE(fail(d, "a", 1, 0));
  d.retain({{"svc", "b"}});
  EXPECT_FALSE(d.ejected("svc", "a", 0));
  EXPECT_EQ(d.times_ejected("svc", "a"), 0u);
  EXPECT_EQ(d.ejections_total("svc"), 1u);  // a counter does not go back
  d.record("quiet", "q", false, 1, 0);
  EXPECT_EQ(d.services(), (std::vector<std::string>{"quiet", "svc"}));
  d.retain({});
  EXPECT_EQ(d.services(), (std::vector<std::string>{"svc"}));  // kept for its counter
}

TEST(Health, UnhealthyAfterConsecutiveFailuresHealthyAfterConsecutiveSuccesses) {
  HealthCheckOptions o;
  o.unhealthy_after = 2;
  o.healthy_after = 3;
  HealthState h;
  EXPECT_TRUE(h.healthy());
  EXPECT_FALSE(h.record(false, o));
  EXPECT_FALSE(h.record(true, o));  // a good probe resets the failures
  EXPECT_FALSE(h.record(false, o));
  EXPECT_TRUE(h.healthy());
  EXPECT_TRUE(h.record(false, o));
  EXPECT_FALSE(h.healthy());
  EXPECT_FALSE(h.record(false, o));
  EXPECT_FALSE(h.record(true, o));
  EXPECT_FALSE(h.record(true, o));
  EXPECT_FALSE(h.record(false, o));  // a bad probe resets the successes
  EXPECT_FALSE(h.record(true, o));
  EXPECT_FALSE(h.record(true, o));
  EXPECT_FALSE(h.healthy());
  EXPECT_TRUE(h.record(true, o));
  EXPECT_TRUE(h.healthy());
}

TEST(Health, OneAndOneFlipsOnEachChange) {
  HealthCheckOptions o;
  o.unhealthy_after = 1;
  o.healthy_after = 1;
  HealthState h;
  EXPECT_TRUE(h.record(false, o));
  EXPECT_FALSE(h.healthy());
  EXPECT_TRUE(h.record(true, o));
  EXPECT_TRUE(h.healthy());
}

}  // namespace
}  // namespace keel::gateway

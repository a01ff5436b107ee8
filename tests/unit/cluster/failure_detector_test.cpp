#include "cluster/failure_detector.h"

#include <gtest/gtest.h>

#include "base/clock.h"

namespace keel::cluster {
namespace {

TEST(FailureDetector, AliveSuspectDeadAndBack) {
  ManualClock clock(0);
  FailureDetector fd({/*suspect_after_ms=*/1000, /*dead_after_ms=*/3000});
  auto now = [&] { return clock.monotonic_ns() / 1'000'000; };
  fd.add(2, now());
  EXPECT_EQ(fd.status(2), MemberStatus::kUnknown);
  auto c = fd.heartbeat(2, now());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], (StatusChange{2, MemberStatus::kUnknown, MemberStatus::kAlive}));
  EXPECT_TRUE(fd.heartbeat(2, now()).empty());  // already alive

  clock.advance_ms(999);
  EXPECT_TRUE(fd.tick(now()).empty());
  clock.advance_ms(1);
  c = fd.tick(now());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], (StatusChange{2, MemberStatus::kAlive, MemberStatus::kSuspect}));
  EXPECT_TRUE(fd.tick(now()).empty());  // reported once

  clock.advance_ms(2000);
  c = fd.tick(now());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].to, MemberStatus::kDead);
  EXPECT_EQ(fd.silence_ms(2, now()), 3000);

  c = fd.heartbeat(2, now());
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], (StatusChange{2, MemberStatus::kDead, MemberStatus::kAlive}));
}

TEST(FailureDetector, NeverHeardMemberIsReportedAndUnknownIgnored) {
  FailureDetector fd({100, 300});
  fd.add(3, 0);
  fd.add(5, 0);
  EXPECT_TRUE(fd.heartbeat(9, 10).empty());  // not a member
  EXPECT_EQ(fd.status(9), MemberStatus::kUnknown);
  EXPECT_EQ(fd.silence_ms(9, 10), -1);
  fd.heartbeat(5, 250);
  auto c = fd.tick(300);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], (StatusChange{3, MemberStatus::kUnknown, MemberStatus::kDead}));
  EXPECT_EQ(fd.status(5), MemberStatus::kAlive);
}

TEST(FailureDetector, StaleTimestampDoesNotRewindAndRemoveForgets) {
  FailureDetector fd({100, 300});
  fd.add(2, 0);
  fd.heartbeat(2, 200);
  fd.heartbeat(2, 50);  // reordered delivery
  EXPECT_EQ(fd.silence_ms(2, 250), 50);
  fd.remove(2);
  EXPECT_TRUE(fd.tick(10000).empty());
  EXPECT_TRUE(fd.members().empty());
}

}  // namespace
}  // namespace keel::cluster

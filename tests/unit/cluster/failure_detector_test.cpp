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

  // The node ticks every 10 ms (as the driver does, every few ms); no heartbeat comes.
  c.clear();
  for (int i = 0; i < 200; ++i) {
    clock.advance_ms(10);
    for (auto& x : fd.tick(now())) c.push_back(x);
  }
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
  std::vector<StatusChange> c;
  for (int64_t t = 10; t <= 300; t += 10)
    for (auto& x : fd.tick(t))
      if (x.to == MemberStatus::kDead) c.push_back(x);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], (StatusChange{3, MemberStatus::kSuspect, MemberStatus::kDead}));  // never heard
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

TEST(FailureDetector, APauseOfThisNodeIsNotHeldAgainstOthers) {
  FailureDetector fd({100, 300});
  fd.add(2, 0);
  fd.add(3, 0);
  fd.heartbeat(2, 0);
  fd.heartbeat(3, 0);
  for (int64_t t = 10; t <= 90; t += 10) EXPECT_TRUE(fd.tick(t).empty());
  fd.heartbeat(2, 90);
  // This node stalls for 400 ms (a long disk sync): no tick, no heartbeat read. The gap is not
  // silence of the others: member 3, silent 90 ms before the pause, is still alive after it.
  EXPECT_TRUE(fd.tick(490).empty());
  EXPECT_EQ(fd.status(3), MemberStatus::kAlive);
  EXPECT_EQ(fd.silence_ms(3, 490), 90);
  // Silence after the pause counts as usual.
  auto c = fd.tick(500);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0], (StatusChange{3, MemberStatus::kAlive, MemberStatus::kSuspect}));
  for (int64_t t = 510; t <= 780; t += 10) fd.tick(t);
  EXPECT_EQ(fd.status(3), MemberStatus::kDead);     // 300 ms of silence outside the pause
  EXPECT_EQ(fd.status(2), MemberStatus::kSuspect);  // heard at 90: 290 ms outside the pause
  fd.tick(790);
  EXPECT_EQ(fd.status(2), MemberStatus::kDead);
}

}  // namespace
}  // namespace keel::cluster

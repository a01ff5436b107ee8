// The disk-full state machine: when writes are refused, when recovery is attempted, and that
// each change of state is reported once.
#include "storage/disk_guard.h"

#include <gtest/gtest.h>

namespace keel::storage {
namespace {

constexpr uint64_t kMiB = 1 << 20;

DiskGuard make() { return DiskGuard(DiskGuardConfig{64 * kMiB, 8 * kMiB, 1000}); }

TEST(DiskGuard, StartsWritableWithAFullBudget) {
  DiskGuard g = make();
  EXPECT_TRUE(g.writable());
  EXPECT_EQ(g.write_budget(2, 16 * kMiB), 16 * kMiB);  // free space not read yet
  EXPECT_FALSE(g.take_transition());
  EXPECT_FALSE(g.should_recover(0));
}

TEST(DiskGuard, LowSpaceRefusesAndResumesAboveTheHysteresis) {
  DiskGuard g = make();
  g.observe_free(100 * kMiB);
  EXPECT_TRUE(g.writable());
  g.observe_free(63 * kMiB);
  EXPECT_EQ(g.state(), DiskGuard::State::kLowSpace);
  EXPECT_TRUE(g.no_space());
  EXPECT_NE(g.reason().find("below the reserve"), std::string::npos);
  auto t = g.take_transition();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->from, DiskGuard::State::kWritable);
  EXPECT_EQ(t->to, DiskGuard::State::kLowSpace);
  // Still low, then just above the reserve but below reserve + hysteresis: no change.
  g.observe_free(10 * kMiB);
  g.observe_free(70 * kMiB);
  EXPECT_EQ(g.state(), DiskGuard::State::kLowSpace);
  EXPECT_FALSE(g.take_transition());
  EXPECT_EQ(g.write_budget(2, 16 * kMiB), 0u);
  // Low space needs no recovery: the database never failed.
  EXPECT_FALSE(g.should_recover(1'000'000));
  g.observe_free(72 * kMiB);
  EXPECT_TRUE(g.writable());
  EXPECT_TRUE(g.reason().empty());
  t = g.take_transition();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->to, DiskGuard::State::kWritable);
}

TEST(DiskGuard, BudgetIsAShareOfHalfTheHeadroom) {
  DiskGuard g = make();
  g.observe_free(64 * kMiB + 8 * kMiB);
  EXPECT_EQ(g.write_budget(2, 16 * kMiB), 2 * kMiB);  // 8 MiB headroom / 2 / 2 writers
  EXPECT_EQ(g.write_budget(1, 1 * kMiB), 1 * kMiB);   // capped
  g.observe_free(64 * kMiB);
  EXPECT_EQ(g.write_budget(2, 16 * kMiB), 0u);  // at the reserve: look before every write
}

TEST(DiskGuard, AFailureRefusesUntilRecoverySucceeds) {
  DiskGuard g = make();
  g.observe_free(100 * kMiB);
  g.write_failed("rocksdb flush WAL: IO error: No space left on device", true, 5000);
  EXPECT_EQ(g.state(), DiskGuard::State::kFailed);
  EXPECT_TRUE(g.no_space());
  EXPECT_EQ(g.failures_total(), 1u);
  // A second failure is counted but the first reason stays, and no second transition.
  ASSERT_TRUE(g.take_transition());
  g.write_failed("another", false, 5100);
  EXPECT_EQ(g.failures_total(), 2u);
  EXPECT_NE(g.reason().find("No space"), std::string::npos);
  EXPECT_FALSE(g.take_transition());
  // Free space alone does not clear a failure.
  g.observe_free(500 * kMiB);
  EXPECT_EQ(g.state(), DiskGuard::State::kFailed);
  // Recovery is due after the retry interval, and only with space above the reserve.
  EXPECT_FALSE(g.should_recover(5999));
  EXPECT_TRUE(g.should_recover(6000));
  g.observe_free(1 * kMiB);
  EXPECT_FALSE(g.should_recover(6000));
  g.observe_free(65 * kMiB);
  EXPECT_TRUE(g.should_recover(6000));
  // A failed attempt waits another interval.
  g.recovery_done(false, "reopen: IO error", 6000);
  EXPECT_FALSE(g.should_recover(6500));
  EXPECT_TRUE(g.should_recover(7000));
  g.recovery_done(true, "", 7000);
  EXPECT_TRUE(g.writable());
  EXPECT_FALSE(g.should_recover(100000));
  auto t = g.take_transition();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->from, DiskGuard::State::kFailed);
  EXPECT_EQ(t->to, DiskGuard::State::kWritable);
}

TEST(DiskGuard, RecoveryIntoLowSpaceStaysRefusing) {
  DiskGuard g(DiskGuardConfig{64 * kMiB, 0, 1000});
  g.write_failed("started read-only", true, 0);
  g.observe_free(64 * kMiB);
  ASSERT_TRUE(g.should_recover(1000));
  g.observe_free(10 * kMiB);  // space went again between the attempt and its end
  g.recovery_done(true, "", 1000);
  EXPECT_EQ(g.state(), DiskGuard::State::kLowSpace);
  g.observe_free(64 * kMiB);
  EXPECT_TRUE(g.writable());
}

TEST(DiskGuard, TransitionsCoalesceUntilTaken) {
  DiskGuard g = make();
  g.observe_free(1 * kMiB);
  g.observe_free(100 * kMiB);
  EXPECT_FALSE(g.take_transition());  // low and back before anyone looked: nothing to report
  g.observe_free(1 * kMiB);
  g.write_failed("eio", false, 0);
  auto t = g.take_transition();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->from, DiskGuard::State::kWritable);
  EXPECT_EQ(t->to, DiskGuard::State::kFailed);
  EXPECT_EQ(t->reason, "eio");
}

TEST(DiskGuard, WithoutAReserveOnlyFailuresRefuse) {
  DiskGuard g(DiskGuardConfig{0, 0, 1000});
  g.observe_free(0);
  EXPECT_TRUE(g.writable());
  g.write_failed("eio", false, 0);
  EXPECT_FALSE(g.writable());
  EXPECT_FALSE(g.no_space());
  EXPECT_TRUE(g.should_recover(1000));
}

}  // namespace
}  // namespace keel::storage

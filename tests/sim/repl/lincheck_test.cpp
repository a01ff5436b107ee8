// The register linearizability checker on small hand-made histories: it accepts what is
// linearizable and rejects a stale read, a read of a value never written, and a lost write.
#include <gtest/gtest.h>

#include "lincheck.h"

namespace keel::replsim {
namespace {

Op w(uint64_t v, int64_t a, int64_t b, uint64_t client = 0) {
  return Op{.client = client, .write = true, .value = v, .invoke = a, .complete = b};
}
Op r(uint64_t v, int64_t a, int64_t b, uint64_t client = 1) {
  return Op{.client = client, .write = false, .value = v, .invoke = a, .complete = b};
}

TEST(RegisterLinearizability, SequentialAndConcurrentHistoriesPass) {
  EXPECT_TRUE(check_register({}).ok);
  EXPECT_TRUE(check_register({r(0, 0, 1)}).ok);  // the initial value
  EXPECT_TRUE(check_register({w(1, 0, 10), r(1, 11, 12), w(2, 13, 20), r(2, 21, 22)}).ok);
  // Reads concurrent with a write may see either value, in any order consistent with time.
  EXPECT_TRUE(check_register({w(1, 0, 10), w(2, 11, 30), r(1, 12, 14), r(2, 15, 16)}).ok);
}

TEST(RegisterLinearizability, StaleReadAfterANewerWriteCompletedFails) {
  // w2 completed at 20; a read invoked at 25 returns 1: a deposed primary's stale read.
  auto res = check_register({w(1, 0, 10), w(2, 11, 20), r(1, 25, 26)});
  EXPECT_FALSE(res.ok);
  EXPECT_FALSE(res.explain.empty());
  // Two reads that go back in time fail too.
  EXPECT_FALSE(check_register({w(1, 0, 10), w(2, 11, 40), r(2, 12, 13), r(1, 14, 15)}).ok);
}

TEST(RegisterLinearizability, ReadOfAValueNeverWrittenFails) {
  EXPECT_FALSE(check_register({w(1, 0, 10), r(7, 11, 12)}).ok);
}

TEST(RegisterLinearizability, LostAcknowledgedWriteFails) {
  // w2 acknowledged, later reads see the older value 1 forever.
  EXPECT_FALSE(check_register({w(1, 0, 10), w(2, 11, 20), r(2, 21, 22), r(1, 30, 31)}).ok);
}

TEST(RegisterLinearizability, UnknownWritesMayOrMayNotTakeEffect) {
  // Never observed: as if never applied.
  EXPECT_TRUE(check_register({w(1, 0, 10), w(2, 11, kNever), r(1, 100, 101)}).ok);
  // Observed long after its timeout: it took effect late.
  EXPECT_TRUE(check_register({w(1, 0, 10), w(2, 11, kNever), r(1, 50, 51), r(2, 100, 101)}).ok);
  // But once observed, it cannot un-happen.
  EXPECT_FALSE(
      check_register({w(1, 0, 10), w(2, 11, kNever), r(2, 50, 51), r(1, 100, 101)}).ok);
}

TEST(RegisterLinearizability, ManyConcurrentOpsStayWithinBudget) {
  std::vector<Op> ops;
  for (uint64_t i = 1; i <= 8; ++i) ops.push_back(w(i, 0, 1000, i));
  for (uint64_t i = 1; i <= 8; ++i) ops.push_back(r(i, 0, 1000, 100 + i));
  auto res = check_register(ops);
  EXPECT_TRUE(res.ok);
  EXPECT_FALSE(res.gave_up);
}

}  // namespace
}  // namespace keel::replsim

// The readiness verdicts (observe/health.h) and the board that gathers their facts.
#include <gtest/gtest.h>

#include "observe/health.h"
#include "observe/health_board.h"

namespace keel::observe {
namespace {

TEST(Health, StoragePassesInMemoryAndWhenTheProbeWrites) {
  EXPECT_TRUE(check_storage({false, ""}).ok);
  EXPECT_TRUE(check_storage({true, ""}).ok);
  auto r = check_storage({true, "cannot create /d/.keel-health-probe: No space left on device"});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("No space left"), std::string::npos);
}

TEST(Health, CertificatesMustOutliveTheMinimum) {
  const int64_t now = 1'800'000'000, day = 86400;
  auto r = check_certificates({{"resp", now + 30 * day}}, now, 3);
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.detail, "resp: 30.0 days left");
  r = check_certificates({{"resp", now + 2 * day}}, now, 3);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.detail, "the resp certificate: 2.0 days left (at least 3 required; renew it, see docs/operations.md)");
  r = check_certificates({{"resp", now - 1}}, now, 0);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("expired"), std::string::npos);
  HealthBoard b(1, false, 5000);
  auto names = [&] {
    std::vector<std::string> n;
    for (auto& c : b.readiness(0, now)) n.push_back(c.name);
    return n;
  };
  EXPECT_EQ(names(), (std::vector<std::string>{"storage", "metadata", "partitions", "tasks"}));  // no TLS: no check
  b.set_certificates({{"resp", now + day}}, 3);
  auto checks = b.readiness(0, now);
  ASSERT_EQ(checks.back().name, "certificates");
  EXPECT_FALSE(checks.back().ok);
}

TEST(Health, MetadataNeedsAnAnswerAndAQuorum) {
  MetadataFacts f;
  f.error = "no answer to a status request within 1000 ms";
  auto r = check_metadata(f);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("did not answer"), std::string::npos);
  f = {true, "", false, 1, 3};
  r = check_metadata(f);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.detail, "no quorum: 1 of 3 members reachable, 2 needed");
  f = {true, "", true, 2, 3};
  EXPECT_TRUE(check_metadata(f).ok);
}

TEST(Health, PartitionsNeedAMapOnEveryShardAndServingPrimaries) {
  PartitionFacts f;
  f.shards = 2;
  f.shards_with_map = 1;
  auto r = check_partitions(f);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.detail, "1 of 2 shards do not route by a partition map yet");
  f.shards_with_map = 2;
  f.primaries = 10;
  EXPECT_TRUE(check_partitions(f).ok);
  f.fenced = 3;
  r = check_partitions(f);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("3 of 10 partitions this node is primary of are fenced"), std::string::npos);
  f.fenced = 0;
  f.lease_lapsed = 4;
  r = check_partitions(f);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("4 of 10"), std::string::npos);
  EXPECT_NE(r.detail.find("no read lease"), std::string::npos);
}

TEST(Health, TasksFailWhenSilentTooLongOrNeverRan) {
  EXPECT_TRUE(check_tasks({{"a", 0}, {"b", 5000}}, 5000).ok);
  auto r = check_tasks({{"a", 0}, {"b", 5001}, {"c", -1}}, 5000);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.detail, "b silent for 5001 ms (limit 5000 ms); c never ran");
}

TEST(Health, VerboseIsKubernetesStyle) {
  std::vector<CheckResult> c = {{"storage", true, "memory engine"}, {"metadata", false, "no quorum"}};
  EXPECT_EQ(render_verbose(c, "readyz"),
            "[+]storage ok: memory engine\n[-]metadata failed: no quorum\nreadyz check failed\n");
  c.pop_back();
  EXPECT_EQ(render_verbose(c, "readyz"), "[+]storage ok: memory engine\nreadyz check passed\n");
}

TEST(HealthBoard, ReadyOnlyOnceEveryTaskReportedAndStaleReportsFail) {
  HealthBoard b(2, false, 1000);
  EXPECT_FALSE(all_ok(b.readiness(0)));  // nothing reported yet
  MetadataFacts m{true, "", true, 3, 3};
  ShardReport s{true, 5, 0, 0, 10};
  b.shard_report(0, 100, s);
  b.poller_report(100, "", m, 7);
  EXPECT_FALSE(all_ok(b.readiness(100)));  // shard 1 never ran
  b.shard_report(1, 150, s);
  auto r = b.readiness(200);
  EXPECT_TRUE(all_ok(r));
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[2].detail, "map version 7: primary of 10, replica of 20");
  // Shard 1 stops reporting: at 1151 ms it has been silent for 1001 ms.
  b.shard_report(0, 1100, s);
  b.poller_report(1100, "", m, 7);
  r = b.readiness(1151);
  EXPECT_FALSE(all_ok(r));
  EXPECT_EQ(r[3].detail, "shard 1 maintenance silent for 1001 ms (limit 1000 ms)");
  // The poller going silent also makes its metadata facts stale.
  r = b.readiness(2200);
  EXPECT_FALSE(r[1].ok);
  EXPECT_NE(r[1].detail.find("no status for 1100 ms"), std::string::npos);
  // Quorum lost.
  b.shard_report(0, 3000, s);
  b.shard_report(1, 3000, s);
  b.poller_report(3000, "", {true, "", false, 1, 3}, 7);
  r = b.readiness(3000);
  EXPECT_FALSE(all_ok(r));
  EXPECT_FALSE(r[1].ok);
  EXPECT_TRUE(r[0].ok && r[2].ok && r[3].ok);
}

TEST(HealthBoard, PersistentStorageNeedsAProbe) {
  HealthBoard b(1, true, 1000);
  auto r = b.readiness(0);
  EXPECT_FALSE(r[0].ok);
  EXPECT_EQ(r[0].detail, "the data directory does not take a synced write: not probed yet");
  b.poller_report(10, "cannot sync x: Input/output error", {true, "", true, 1, 1}, 1);
  r = b.readiness(10);
  EXPECT_FALSE(r[0].ok);
  b.poller_report(20, "", {true, "", true, 1, 1}, 1);
  EXPECT_TRUE(b.readiness(20)[0].ok);
}

}  // namespace
}  // namespace keel::observe

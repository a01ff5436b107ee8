// Rules of the replication core (src/replication/copy.h), one test per rule, driven through a
// hand-stepped network: nothing is delivered unless the test says so.
#include <gtest/gtest.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>

#include "replication/copy.h"

namespace keel::replication {
namespace {

constexpr NodeId kManager = 99;

struct Net {
  std::map<NodeId, std::unique_ptr<Copy>> copies;
  struct Msg {
    NodeId from, to;
    Message m;
  };
  std::deque<Msg> q;
  std::vector<std::pair<NodeId, FenceAck>> fence_acks;
  std::map<NodeId, std::vector<Entry>> applied;
  std::map<NodeId, std::vector<NodeId>> snapshot_needed;
  std::map<NodeId, uint64_t> committed;
  std::map<NodeId, bool> auto_durable;
  int64_t now = 1000;

  Net(std::vector<NodeId> ids, Options o = {}) {
    for (NodeId id : ids) {
      copies[id] = std::make_unique<Copy>(id, o);
      auto_durable[id] = true;
    }
  }
  Copy& c(NodeId id) { return *copies.at(id); }
  void configure_all(const Config& cfg) {
    for (auto& [id, c] : copies) {
      ASSERT_TRUE(c->configure(cfg, now).has_value());
      collect(id);
    }
  }
  void collect(NodeId id) {
    Output o = c(id).take_output();
    for (auto& [to, m] : o.send) q.push_back({id, to, std::move(m)});
    for (auto& e : o.apply) applied[id].push_back(e);
    for (NodeId r : o.snapshot_needed) snapshot_needed[id].push_back(r);
    committed[id] = std::max(committed[id], o.committed_lsn);
    if (auto_durable[id] && !o.apply.empty()) {
      c(id).durable(c(id).last_lsn(), now);
      collect(id);
    }
    if (o.snapshot_done_lsn && auto_durable[id]) {
      c(id).durable(o.snapshot_done_lsn, now);
      collect(id);
    }
  }
  void deliver_one() {
    Msg m = std::move(q.front());
    q.pop_front();
    if (m.to == kManager) {
      fence_acks.emplace_back(m.from, std::get<FenceAck>(m.m));
      return;
    }
    if (!copies.count(m.to)) return;
    c(m.to).receive(m.from, m.m, now);
    collect(m.to);
  }
  void deliver_all() {
    for (int i = 0; i < 10000 && !q.empty(); ++i) deliver_one();
  }
  void drop_all() { q.clear(); }
  void tick_all() {
    for (auto& [id, c] : copies) {
      c->tick(now);
      collect(id);
    }
  }
  uint64_t write(NodeId primary, std::string v) {
    auto r = c(primary).append(std::move(v), now);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    c(primary).durable(c(primary).last_lsn(), now);
    collect(primary);
    return r.value_or(0);
  }
};

Config cfg3(uint32_t wq, uint64_t epoch = 1) {
  return Config{.epoch = epoch, .primary = 1, .replicas = {2, 3}, .write_quorum = wq};
}

TEST(ReplicationCopy, FenceQuorumIntersectsEveryWriteQuorum) {
  EXPECT_EQ(fence_quorum(cfg3(1)), 2u);  // wq 1: every replica (still no guarantee)
  EXPECT_EQ(fence_quorum(cfg3(2)), 2u);
  EXPECT_EQ(fence_quorum(cfg3(3)), 1u);
  EXPECT_EQ(fence_quorum(Config{.epoch = 1, .primary = 1, .replicas = {2}, .write_quorum = 2}),
            1u);
  EXPECT_EQ(fence_quorum(Config{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1}),
            1u);
}

TEST(ReplicationCopy, CommitsOnlyOnceWriteQuorumCopiesHoldItDurably) {
  Net n({1, 2, 3});
  n.auto_durable[2] = n.auto_durable[3] = false;
  n.configure_all(cfg3(2));
  n.deliver_all();
  uint64_t barrier = n.c(1).last_lsn();
  uint64_t lsn = n.write(1, "a");
  EXPECT_EQ(lsn, barrier + 1);
  n.deliver_all();
  // The replicas received the entry but have not reported it durable: nothing is committed.
  EXPECT_EQ(n.c(2).last_lsn(), lsn);
  EXPECT_LT(n.committed[1], lsn);
  n.c(2).durable(lsn, n.now);
  n.collect(2);
  n.deliver_all();
  EXPECT_EQ(n.committed[1], lsn);  // primary + replica 2 = write_quorum 2
}

TEST(ReplicationCopy, WriteQuorumOfAllCopiesWaitsForTheSlowest) {
  Net n({1, 2, 3});
  n.auto_durable[3] = false;
  n.configure_all(cfg3(3));
  uint64_t lsn = n.write(1, "a");
  n.deliver_all();
  EXPECT_LT(n.committed[1], lsn);
  n.c(3).durable(lsn, n.now);
  n.collect(3);
  n.deliver_all();
  EXPECT_EQ(n.committed[1], lsn);
}

TEST(ReplicationCopy, PrimaryAloneCommitsWithWriteQuorumOne) {
  Net n({1, 2, 3});
  n.configure_all(cfg3(1));
  uint64_t lsn = n.write(1, "a");  // nothing delivered to the replicas
  EXPECT_EQ(n.committed[1], lsn);
}

TEST(ReplicationCopy, PrimaryDoesNotCountItsOwnUndurableWrite) {
  Net n({1, 2, 3});
  n.auto_durable[1] = false;
  n.configure_all(cfg3(1));
  auto r = n.c(1).append("a", n.now);
  ASSERT_TRUE(r);
  n.collect(1);
  EXPECT_LT(n.committed[1], *r);
  n.c(1).durable(*r, n.now);
  n.collect(1);
  EXPECT_EQ(n.committed[1], *r);
}

TEST(ReplicationCopy, BacklogFullRefusesWithAClearError) {
  Options o;
  o.max_backlog_bytes = 100;
  Net n({1, 2, 3}, o);
  n.configure_all(cfg3(2));
  n.drop_all();
  ASSERT_TRUE(n.c(1).append(std::string(40, 'x'), n.now));
  auto r = n.c(1).append(std::string(60, 'y'), n.now);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
  EXPECT_NE(r.error().message.find("backlog full"), std::string::npos) << r.error().message;
}

TEST(ReplicationCopy, InflightWindowHoldsEntriesUntilAcked) {
  Options o;
  o.max_inflight_bytes = 64;
  o.max_batch_bytes = 32;
  Net n({1, 2}, o);
  n.configure_all(Config{.epoch = 1, .primary = 1, .replicas = {2}, .write_quorum = 2});
  n.deliver_all();
  for (int i = 0; i < 10; ++i) n.write(1, std::string(10, 'a' + i));
  // Only what fits the window went out.
  size_t sent_entries = 0;
  for (const auto& m : n.q)
    if (auto* a = std::get_if<Append>(&m.m)) sent_entries += a->entries.size();
  EXPECT_GE(sent_entries, 1u);
  EXPECT_LT(sent_entries, 10u);
  n.deliver_all();  // acks open the window: everything arrives
  EXPECT_EQ(n.c(2).last_lsn(), n.c(1).last_lsn());
  EXPECT_EQ(n.committed[1], n.c(1).last_lsn());
}

// A lost Append is noticed either by the next heartbeat (its prev does not match: mismatch)
// or, with no heartbeat due, by the resend timer.
void lost_append_recovered(int64_t heartbeat_ms, int64_t quiet_ms, int64_t recovered_ms) {
  Options o;
  o.heartbeat_ms = heartbeat_ms;
  o.resend_after_ms = 200;
  Net n({1, 2, 3}, o);
  n.configure_all(cfg3(3));
  n.deliver_all();
  uint64_t a = n.write(1, "a");
  n.drop_all();  // the replicas miss a
  EXPECT_LT(n.c(2).last_lsn(), a);
  n.now += quiet_ms;  // nothing is due yet
  n.tick_all();
  n.deliver_all();
  EXPECT_LT(n.c(2).last_lsn(), a);
  n.now += recovered_ms - quiet_ms;
  n.tick_all();
  n.deliver_all();
  for (NodeId r : {2u, 3u}) {
    EXPECT_EQ(n.c(r).last_lsn(), a);
    ASSERT_FALSE(n.applied[r].empty());
    EXPECT_EQ(n.applied[r].back().effect.view(), "a");
  }
  EXPECT_EQ(n.committed[1], a);
}

TEST(ReplicationCopy, LostAppendIsRecoveredByTheNextHeartbeat) {
  lost_append_recovered(50, 49, 50);
}

TEST(ReplicationCopy, LostAppendIsResentAfterTimeout) {
  lost_append_recovered(100000, 199, 200);
}

TEST(ReplicationCopy, MismatchMakesThePrimaryResendFromTheReplicasLastEntry) {
  Net n({1, 2, 3});
  n.configure_all(cfg3(2));
  n.deliver_all();
  for (int i = 0; i < 3; ++i) n.write(1, "w" + std::to_string(i));
  n.deliver_all();
  // Replica 3 restarts empty (memory engine) and is re-added in epoch 2.
  n.copies[3] = std::make_unique<Copy>(3);
  n.applied[3].clear();
  Config c2 = cfg3(2, 2);
  n.configure_all(c2);
  ASSERT_FALSE(n.q.empty());
  // The barrier's Append (prev = the primary's old last) reaches 3 first: mismatch, last 0.
  while (n.q.front().to != 3) n.deliver_one();
  n.deliver_one();
  auto* ack = std::get_if<AppendAck>(&n.q.back().m);
  ASSERT_NE(ack, nullptr);
  EXPECT_TRUE(ack->mismatch);
  EXPECT_EQ(ack->last_lsn, 0u);
  n.deliver_all();
  EXPECT_EQ(n.c(3).last_lsn(), n.c(1).last_lsn());
  ASSERT_EQ(n.applied[3].size(), n.c(1).last_lsn());  // the whole log, from LSN 1
  EXPECT_EQ(n.applied[3][1].effect.view(), "w0");
}

TEST(ReplicationCopy, EntriesAReplicaCouldNotApplyAreNotAcknowledgedAndAreSentAgain) {
  // Replica 3's disk refuses writes: what it could not apply must not count toward the write
  // quorum, and must reach it once its disk takes writes again.
  Net n({1, 2, 3});
  n.auto_durable[3] = false;
  n.configure_all(cfg3(3));  // every copy needed: the quorum waits for replica 3
  n.deliver_all();
  n.c(3).durable(n.c(3).last_lsn(), n.now);
  n.collect(3);
  n.deliver_all();
  uint64_t a = n.write(1, "a");
  uint64_t b = n.write(1, "b");
  n.deliver_all();
  ASSERT_EQ(n.c(3).last_lsn(), b);
  // Applying `a` failed: neither `a` nor `b` is held; nothing is acknowledged.
  n.c(3).apply_failed(a, n.now);
  n.collect(3);
  EXPECT_EQ(n.c(3).last_lsn(), a - 1);
  n.c(3).durable(b, n.now);  // a stale durable() cannot acknowledge what was forgotten
  n.collect(3);
  n.deliver_all();
  EXPECT_LT(n.committed[1], a);
  // The primary's next Append meets the mismatch and sends both again.
  n.applied[3].clear();
  n.write(1, "c");
  n.deliver_all();
  ASSERT_EQ(n.c(3).last_lsn(), b + 1);
  ASSERT_GE(n.applied[3].size(), 3u);
  EXPECT_EQ(n.applied[3][0].effect.view(), "a");
  EXPECT_EQ(n.applied[3][1].effect.view(), "b");
  n.c(3).durable(b + 1, n.now);
  n.collect(3);
  n.deliver_all();
  EXPECT_EQ(n.committed[1], b + 1);
  // Ignored where it makes no sense: on the primary, and for a durable entry.
  uint64_t before = n.c(1).last_lsn();
  n.c(1).apply_failed(a, n.now);
  EXPECT_EQ(n.c(1).last_lsn(), before);
  n.c(3).apply_failed(a, n.now);
  EXPECT_EQ(n.c(3).last_lsn(), b + 1);
}

TEST(ReplicationCopy, FencedReplicaRefusesTheOldEpochAndDeposesItsPrimary) {
  Net n({1, 2, 3});
  n.configure_all(cfg3(2));
  n.deliver_all();
  n.write(1, "a");
  n.deliver_all();
  for (NodeId r : {2u, 3u}) n.c(r).receive(kManager, Fence{.new_epoch = 2}, n.now);
  n.collect(2);
  n.collect(3);
  uint64_t before = n.c(2).last_lsn();
  auto w = n.c(1).append("b", n.now);
  ASSERT_TRUE(w);
  n.collect(1);
  n.deliver_all();
  EXPECT_EQ(n.c(2).last_lsn(), before);  // refused
  EXPECT_LT(n.committed[1], *w);         // so never acknowledged
  // The refusal told the old primary a newer epoch exists: it stops taking writes and reads.
  EXPECT_FALSE(n.c(1).is_primary());
  EXPECT_FALSE(n.c(1).can_serve_reads(n.now));
  auto r = n.c(1).append("c", n.now);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
}

TEST(ReplicationCopy, FenceAnswerWaitsUntilTheGrantedLeaseRunsOut) {
  Options o;
  o.lease_ms = 2000;
  Net n({1, 2, 3}, o);
  n.configure_all(cfg3(2));
  n.deliver_all();  // replicas ack at t=1000: lease promised until 3000
  n.now = 1500;
  n.c(2).receive(kManager, Fence{.new_epoch = 2}, n.now);
  n.collect(2);
  n.deliver_all();
  EXPECT_TRUE(n.fence_acks.empty());
  n.now = 2999;
  n.tick_all();
  n.deliver_all();
  EXPECT_TRUE(n.fence_acks.empty());
  n.now = 3000;
  n.tick_all();
  n.deliver_all();
  ASSERT_EQ(n.fence_acks.size(), 1u);
  EXPECT_EQ(n.fence_acks[0].second.new_epoch, 2u);
  EXPECT_EQ(n.fence_acks[0].second.epoch, 1u);
  EXPECT_EQ(n.fence_acks[0].second.last_lsn, n.c(2).last_lsn());
  EXPECT_TRUE(n.fence_acks[0].second.in_sync);  // it holds epoch 1's barrier
}

TEST(ReplicationCopy, RestartedCopyAnswersNoFenceBeforeALeaseLength) {
  Options o;
  o.lease_ms = 2000;
  Copy c(2, o);
  c.recover(7, 1);
  c.receive(kManager, Fence{.new_epoch = 2}, 5000);
  EXPECT_TRUE(c.take_output().send.empty());
  c.tick(6999);
  EXPECT_TRUE(c.take_output().send.empty());
  c.tick(7000);
  Output out = c.take_output();
  ASSERT_EQ(out.send.size(), 1u);
  auto& ack = std::get<FenceAck>(out.send[0].second);
  EXPECT_EQ(ack.last_lsn, 7u);
  EXPECT_EQ(ack.last_epoch, 1u);
  EXPECT_EQ(ack.epoch, 0u);  // not configured since its restart
  EXPECT_FALSE(ack.in_sync);
}

TEST(ReplicationCopy, LeaseExpiryStopsReads) {
  Options o;
  o.lease_ms = 2000;
  o.max_drift_ms = 200;
  Net n({1, 2, 3}, o);
  n.configure_all(cfg3(2));
  EXPECT_FALSE(n.c(1).can_serve_reads(n.now));  // no grant yet
  n.deliver_all();                              // acks of the Append sent at t=1000
  EXPECT_TRUE(n.c(1).can_serve_reads(n.now));
  EXPECT_TRUE(n.c(1).can_serve_reads(1000 + 2000 - 200 - 1));
  EXPECT_FALSE(n.c(1).can_serve_reads(1000 + 2000 - 200));  // lease_ms - max_drift_ms
  // Heartbeats renew it.
  n.now = 2500;
  n.tick_all();
  n.deliver_all();
  EXPECT_TRUE(n.c(1).can_serve_reads(4000));
}

TEST(ReplicationCopy, LeaseNeedsAGrantInEveryFenceQuorum) {
  // wq 3 of 3: fence quorum 1, so both replicas must grant.
  Net n({1, 2, 3});
  n.configure_all(cfg3(3));
  // Deliver only to replica 2 and its answer.
  while (!n.q.empty()) {
    if (n.q.front().to == 3 || n.q.front().from == 3) {
      n.q.pop_front();
      continue;
    }
    n.deliver_one();
  }
  EXPECT_FALSE(n.c(1).can_serve_reads(n.now));
  n.now += 100;
  n.tick_all();
  n.deliver_all();
  EXPECT_TRUE(n.c(1).can_serve_reads(n.now));
}

TEST(ReplicationCopy, PrimaryWithoutReplicasAlwaysHoldsTheLease) {
  Copy c(1);
  ASSERT_TRUE(c.configure(Config{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1}, 0));
  EXPECT_TRUE(c.can_serve_reads(123456));
}

TEST(ReplicationCopy, ChooseNewPrimaryTakesTheMostUpToDateFromEnoughAnswers) {
  Config c = cfg3(2);  // fence quorum 2
  auto ack = [](uint64_t last, uint64_t last_epoch, uint64_t epoch = 1, bool in_sync = true) {
    return FenceAck{.new_epoch = 2, .last_lsn = last, .epoch = epoch, .last_epoch = last_epoch,
                    .in_sync = in_sync};
  };
  EXPECT_EQ(choose_new_primary(c, {{2, ack(10, 1)}}), std::nullopt);  // too few
  EXPECT_EQ(choose_new_primary(c, {{2, ack(10, 1)}, {3, ack(12, 1)}}), 3u);
  EXPECT_EQ(choose_new_primary(c, {{2, ack(12, 1)}, {3, ack(12, 1)}}), 2u);  // tie: order
  // A later epoch beats a longer log of an older epoch (its entries were never committed).
  EXPECT_EQ(choose_new_primary(c, {{2, ack(9, 1)}, {3, ack(5, 0)}}), 2u);
  EXPECT_EQ(choose_new_primary(c, {{2, ack(5, 1)}, {3, ack(9, 0)}}), 2u);
  // Answers for another epoch, from strangers, or duplicates do not count.
  FenceAck other = ack(50, 1);
  other.new_epoch = 3;
  EXPECT_EQ(choose_new_primary(c, {{2, ack(1, 1)}, {3, other}}), std::nullopt);
  EXPECT_EQ(choose_new_primary(c, {{2, ack(1, 1)}, {7, ack(50, 1)}}), std::nullopt);
  EXPECT_EQ(choose_new_primary(c, {{2, ack(1, 1)}, {2, ack(1, 1)}}), std::nullopt);
  // A copy restarted since epoch 1 (not configured in it) does not count toward the quorum ...
  EXPECT_EQ(choose_new_primary(c, {{2, ack(1, 1)}, {3, ack(9, 1, 0)}}), std::nullopt);
  // Nor does one still catching up in epoch 1 (it may hold less than it once acknowledged).
  EXPECT_EQ(choose_new_primary(c, {{2, ack(1, 1)}, {3, ack(0, 0, 1, false)}}), std::nullopt);
  // ... unless every copy answered (recovery after a total outage).
  EXPECT_EQ(choose_new_primary(c, {{2, ack(1, 1, 0)}, {3, ack(9, 1, 0)}, {1, ack(4, 1, 0)}}),
            3u);
  // wq 3: fence quorum 1.
  EXPECT_EQ(choose_new_primary(cfg3(3), {{3, ack(4, 1)}}), 3u);
}

// A partition's first epoch has nothing before its barrier: a copy of epoch 1 that holds
// nothing (the primary was lost before its barrier arrived) holds every committed write (none)
// and is promoted; before, no copy could vouch for the partition and it stayed without a
// primary until the lost node returned (seen in a 3-node test killed a second after start).
TEST(ReplicationCopy, PrimaryLostBeforeItsFirstBarrierArrivedIsReplacedByAnEmptyCopy) {
  Options o;
  o.lease_ms = 100;
  Net n({1, 2}, o);
  Config c{.epoch = 1, .primary = 1, .replicas = {2}, .write_quorum = 2};
  n.configure_all(c);
  ASSERT_FALSE(n.q.empty());  // the barrier
  n.drop_all();               // ... lost with its primary
  n.copies.erase(1);
  n.now += 1000;
  n.c(2).receive(kManager, Fence{.new_epoch = 2}, n.now);
  n.collect(2);
  n.deliver_all();
  ASSERT_EQ(n.fence_acks.size(), 1u);
  const FenceAck& a = n.fence_acks[0].second;
  EXPECT_EQ(a.epoch, 1u);
  EXPECT_EQ(a.last_lsn, 0u);
  EXPECT_TRUE(a.in_sync);
  EXPECT_EQ(choose_new_primary(c, n.fence_acks), 2u);
  // In a later epoch an empty copy vouches for nothing (writes of earlier epochs precede the
  // barrier it lacks): CopyCatchingUpAnswersFencesAsNotInSync.
}

// ... but a copy of epoch 1 that held entries and lost them (a snapshot begun, then dropped)
// may have acknowledged them: it does not count, however empty it is now.
TEST(ReplicationCopy, FirstEpochCopyThatLostWhatItHeldIsNotInSync) {
  Options o;
  o.lease_ms = 100;
  Net n({1, 2}, o);
  Config c{.epoch = 1, .primary = 1, .replicas = {2}, .write_quorum = 2};
  n.configure_all(c);
  n.deliver_all();
  n.write(1, "acknowledged");
  n.deliver_all();
  ASSERT_GT(n.committed[1], 0u);
  n.q.push_back({1, 2, n.c(1).begin_snapshot(2, n.now)});
  n.deliver_all();  // the replica drops everything for the transfer
  n.now += 10;
  n.q.push_back({1, 2, Append{.epoch = 1, .prev_lsn = n.c(1).last_lsn(), .prev_epoch = 1}});
  n.deliver_all();  // an Append before any chunk: the transfer is abandoned
  ASSERT_EQ(n.c(2).last_lsn(), 0u);
  n.copies.erase(1);
  n.q.clear();
  n.now += 1000;
  n.c(2).receive(kManager, Fence{.new_epoch = 2}, n.now);
  n.collect(2);
  n.deliver_all();
  ASSERT_EQ(n.fence_acks.size(), 1u);
  EXPECT_EQ(n.fence_acks[0].second.last_lsn, 0u);
  EXPECT_FALSE(n.fence_acks[0].second.in_sync);
  EXPECT_EQ(choose_new_primary(c, n.fence_acks), std::nullopt);  // waits for node 1
}

TEST(ReplicationCopy, ConfigureRefusesMalformedConfigurations) {
  Copy c(1);
  auto bad = [&](Config k, const char* word) {
    auto r = c.configure(k, 0);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_NE(r.error().message.find(word), std::string::npos) << r.error().message;
  };
  bad(cfg3(0), "write_quorum 0");
  bad(cfg3(4), "allowed: 1..3");
  bad(Config{.epoch = 1, .primary = 1, .replicas = {1, 2}, .write_quorum = 1}, "also listed");
  bad(Config{.epoch = 1, .primary = 1, .replicas = {2, 2}, .write_quorum = 1}, "listed twice");
  EXPECT_FALSE(c.is_primary());
  EXPECT_EQ(c.config().epoch, 0u);
}

TEST(ReplicationCopy, AppendRefusesAtAReplicaAndAnEmptyEffect) {
  Net n({1, 2, 3});
  n.configure_all(cfg3(2));
  auto r = n.c(2).append("x", n.now);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
  EXPECT_NE(r.error().message.find("not the primary"), std::string::npos);
  auto e = n.c(1).append("", n.now);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, Errc::kInvalidArgument);
}

// A new primary's barrier commits the old primary's uncommitted entries it holds; a replica
// that holds entries the new primary does not (diverged) is sent a snapshot, and then follows.
TEST(ReplicationCopy, FailoverCommitsHeldEntriesAndSnapshotsADivergedReplica) {
  Net n({1, 2, 3});
  n.configure_all(cfg3(3));
  n.deliver_all();
  n.write(1, "a");
  n.deliver_all();  // a committed everywhere
  uint64_t b = n.write(1, "b");
  // b reaches replica 2 only.
  std::deque<Net::Msg> keep;
  for (auto& m : n.q)
    if (m.to == 2) keep.push_back(m);
  n.q = keep;
  n.deliver_all();
  n.drop_all();
  uint64_t c3 = n.write(1, "c");  // reaches nobody
  n.drop_all();
  (void)c3;
  EXPECT_EQ(n.c(2).last_lsn(), b);
  // Node 3 is promoted (say only it answered; wq 3 -> fence quorum 1): it lacks b.
  Config next{.epoch = 2, .primary = 3, .replicas = {2, 1}, .write_quorum = 2};
  n.copies.erase(1);  // the old primary is gone
  n.c(2).configure(next, n.now);
  n.collect(2);
  n.c(3).configure(next, n.now);
  n.collect(3);
  n.deliver_all();
  ASSERT_FALSE(n.snapshot_needed[3].empty());
  EXPECT_EQ(n.snapshot_needed[3].back(), 2u);
  SnapshotBegin sb = n.c(3).begin_snapshot(2, n.now);
  n.q.push_back({3, 2, sb});
  n.q.push_back({3, 2, n.c(3).snapshot_chunk(2, {"k1=a"}, false, n.now)});
  n.q.push_back({3, 2, n.c(3).snapshot_chunk(2, {"k2=x"}, true, n.now)});
  n.collect(3);
  n.c(2).receive(3, n.q.front().m, n.now);
  n.q.pop_front();
  Output o = n.c(2).take_output();
  EXPECT_TRUE(o.reset_partition);
  n.deliver_all();
  EXPECT_EQ(n.c(2).last_lsn(), sb.snapshot_lsn);
  uint64_t d = n.write(3, "d");
  n.deliver_all();
  EXPECT_EQ(n.c(2).last_lsn(), d);
  EXPECT_EQ(n.committed[3], d);
}

TEST(ReplicationCopy, NewPrimaryCommitsOldEntriesThroughItsBarrier) {
  Net n({1, 2, 3});
  n.configure_all(cfg3(3));
  n.deliver_all();
  uint64_t a = n.write(1, "a");
  std::deque<Net::Msg> keep;
  for (auto& m : n.q)
    if (m.to == 2) keep.push_back(m);
  n.q = keep;
  n.deliver_all();
  n.drop_all();
  EXPECT_EQ(n.c(2).last_lsn(), a);
  n.copies.erase(1);
  Config next{.epoch = 2, .primary = 2, .replicas = {3}, .write_quorum = 2};
  n.c(3).configure(next, n.now);
  n.c(2).configure(next, n.now);
  n.collect(2);
  n.collect(3);
  n.deliver_all();
  EXPECT_EQ(n.c(3).last_lsn(), a + 1);  // a, then the barrier
  EXPECT_EQ(n.committed[2], a + 1);
  ASSERT_FALSE(n.applied[3].empty());
  EXPECT_TRUE(n.applied[3].back().effect.empty());
  EXPECT_EQ(n.applied[3].back().epoch, 2u);
}

TEST(ReplicationCopy, TrimmedLogSendsASnapshotToAnEmptyReplica) {
  Options o;
  o.log_keep_bytes = 40;
  Net n({1, 2}, o);
  Config c{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1};
  n.configure_all(c);
  for (int i = 0; i < 20; ++i) n.write(1, "value" + std::to_string(i));
  Config c2{.epoch = 2, .primary = 1, .replicas = {2}, .write_quorum = 2};
  n.configure_all(c2);
  n.deliver_all();
  ASSERT_FALSE(n.snapshot_needed[1].empty());
  SnapshotBegin sb = n.c(1).begin_snapshot(2, n.now);
  n.q.push_back({1, 2, sb});
  n.q.push_back({1, 2, n.c(1).snapshot_chunk(2, {"state"}, true, n.now)});
  n.deliver_all();
  n.now += 100;
  n.tick_all();
  n.deliver_all();
  EXPECT_EQ(n.c(2).last_lsn(), n.c(1).last_lsn());
  EXPECT_EQ(n.committed[1], n.c(1).last_lsn());
}

// A replica that falls behind for a while (its acks are slow: a busy node) is resent what it
// lacks from the log, which keeps those entries within lag_keep_bytes even once committed.
// Without that allowance the log is trimmed to log_keep_bytes and the copy needs a snapshot.
TEST(ReplicationCopy, ALaggingReplicaCatchesUpFromTheLogWithinTheLagAllowance) {
  for (size_t lag_keep : {size_t{4} << 20, size_t{0}}) {
    Options o;
    o.log_keep_bytes = 40;
    o.lag_keep_bytes = lag_keep;
    Net n({1, 2}, o);
    n.configure_all(Config{.epoch = 1, .primary = 1, .replicas = {2}, .write_quorum = 1});
    n.deliver_all();
    for (int i = 0; i < 50; ++i) n.write(1, "value" + std::to_string(i));  // committed at once
    n.drop_all();  // the Appends are lost (or their acks are very late)
    n.now += 1000;
    n.tick_all();  // resend from what replica 2 is known to have
    n.deliver_all();
    n.now += 1000;
    n.tick_all();
    n.deliver_all();
    if (lag_keep) {
      EXPECT_TRUE(n.snapshot_needed[1].empty());
      EXPECT_EQ(n.c(2).last_lsn(), n.c(1).last_lsn());
    } else {
      EXPECT_FALSE(n.snapshot_needed[1].empty());
    }
  }
}

TEST(ReplicationCopy, SnapshotWithALostChunkIsStartedOver) {
  Options o;
  o.log_keep_bytes = 1;  // the log does not reach back: only a snapshot can catch 2 up
  Net n({1, 2}, o);
  n.configure_all(Config{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1});
  for (int i = 0; i < 5; ++i) n.write(1, "a" + std::to_string(i));
  Copy& p = n.c(1);
  n.configure_all(Config{.epoch = 2, .primary = 1, .replicas = {2}, .write_quorum = 2});
  n.deliver_all();
  ASSERT_EQ(n.snapshot_needed[1].size(), 1u);
  SnapshotBegin sb = p.begin_snapshot(2, n.now);
  n.q.push_back({1, 2, sb});
  (void)p.snapshot_chunk(2, {"x"}, false, n.now);  // lost
  n.q.push_back({1, 2, p.snapshot_chunk(2, {"y"}, true, n.now)});
  // Replica 2 sees the begin and the gap: the transfer is aborted, the partial data dropped.
  n.c(2).receive(1, n.q.front().m, n.now);
  n.q.pop_front();
  EXPECT_TRUE(n.c(2).take_output().reset_partition);
  n.c(2).receive(1, n.q.front().m, n.now);
  n.q.pop_front();
  Output aborted = n.c(2).take_output();
  EXPECT_TRUE(aborted.reset_partition);
  EXPECT_TRUE(aborted.apply_snapshot.empty());
  EXPECT_EQ(aborted.snapshot_done_lsn, 0u);
  for (auto& [to, m] : aborted.send) n.q.push_back({2, to, m});
  n.deliver_all();
  EXPECT_EQ(n.c(2).last_lsn(), 0u);  // not installed
  n.now += 1000;
  n.tick_all();
  n.deliver_all();
  // The primary is asked again to snapshot replica 2.
  EXPECT_EQ(n.snapshot_needed[1].size(), 2u);
}

// Runs the replica's side by hand: what it applies, and whether its partition was reset.
struct ReplicaLog {
  std::vector<std::string> applied;
  int resets = 0;
  std::optional<Output::SnapshotProgress> progress;
  void take(Net& n, NodeId id) {
    Output o = n.c(id).take_output();
    if (o.reset_partition) {
      ++resets;
      applied.clear();
    }
    for (auto& e : o.apply_snapshot) applied.push_back(e);
    if (o.snapshot_progress) progress = o.snapshot_progress;
    for (auto& [to, m] : o.send) n.q.push_back({id, to, m});
    if (o.snapshot_done_lsn) {
      n.c(id).durable(o.snapshot_done_lsn, n.now);
      take(n, id);
    }
    if (!o.apply.empty()) {
      n.c(id).durable(n.c(id).last_lsn(), n.now);
      take(n, id);
    }
  }
  void deliver(Net& n, NodeId id, const Message& m) {
    n.c(id).receive(1, m, n.now);
    take(n, id);
  }
};

// A snapshot that loses a chunk in the middle is resumed from the first key it lacks: what
// arrived before the gap is kept, and nothing is sent twice.
TEST(ReplicationCopy, SnapshotWithALostChunkIsResumedAfterWhatArrived) {
  Options o;
  o.log_keep_bytes = 1;  // the log does not reach back: only a snapshot can catch 2 up
  o.source = 42;
  Net n({1, 2}, o);
  n.configure_all(Config{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1});
  for (int i = 0; i < 5; ++i) n.write(1, "a" + std::to_string(i));
  Copy& p = n.c(1);
  n.configure_all(Config{.epoch = 2, .primary = 1, .replicas = {2}, .write_quorum = 2});
  n.deliver_all();
  ASSERT_EQ(n.snapshot_needed[1].size(), 1u);
  ReplicaLog r;
  SnapshotBegin sb = p.begin_snapshot(2, n.now);
  EXPECT_FALSE(sb.resume);
  EXPECT_EQ(sb.source, 42u);
  uint64_t first_id = *p.snapshot_id(2);
  r.deliver(n, 2, sb);
  r.deliver(n, 2, p.snapshot_chunk(2, {"a"}, false, n.now, "k1"));
  ASSERT_TRUE(r.progress);
  EXPECT_EQ(r.progress->next_key, "k1");
  EXPECT_EQ(r.progress->lsn, sb.snapshot_lsn);
  EXPECT_EQ(r.progress->source, 42u);
  (void)p.snapshot_chunk(2, {"b"}, false, n.now, "k2");  // lost
  r.deliver(n, 2, p.snapshot_chunk(2, {"c"}, false, n.now, "k3"));
  EXPECT_EQ(r.resets, 1);  // only the first begin's
  EXPECT_EQ(r.applied, std::vector<std::string>{"a"});
  ASSERT_EQ(n.q.size(), 1u);  // the ask to resume
  auto ask = std::get<AppendAck>(n.q.front().m);
  EXPECT_TRUE(ask.mismatch && ask.resumable);
  EXPECT_EQ(ask.resume_key, "k1");
  n.deliver_all();
  // The primary abandons the stream under way and begins again where the replica stands.
  EXPECT_FALSE(p.snapshot_id(2));
  EXPECT_TRUE(p.snapshot_wanted(2));
  SnapshotBegin again = p.begin_snapshot(2, n.now);
  EXPECT_TRUE(again.resume);
  EXPECT_EQ(again.resume_key, "k1");
  EXPECT_EQ(again.snapshot_lsn, sb.snapshot_lsn);
  EXPECT_NE(*p.snapshot_id(2), first_id);
  r.deliver(n, 2, again);
  // The resumed stream loses its own first chunk: what came before the resume is still kept.
  // The replica's ask names the point this stream began at, as a late duplicate of its first
  // ask would: the primary finishes the stream, and the replica, which ignored the rest of
  // it, asks again once the log follows.
  (void)p.snapshot_chunk(2, {"b"}, false, n.now, "k2");  // lost
  r.deliver(n, 2, p.snapshot_chunk(2, {"c"}, false, n.now, "k3"));
  EXPECT_EQ(r.resets, 1);
  EXPECT_EQ(r.applied, std::vector<std::string>{"a"});
  n.deliver_all();
  r.deliver(n, 2, p.snapshot_chunk(2, {"d"}, true, n.now));
  EXPECT_EQ(r.applied, std::vector<std::string>{"a"});  // not part of a transfer it takes
  n.deliver_all();
  n.now += 1000;
  n.tick_all();
  for (int i = 0; i < 5 && !p.snapshot_wanted(2); ++i) {
    n.deliver_all();
    n.now += 300;
    n.tick_all();
  }
  ASSERT_TRUE(p.snapshot_wanted(2));
  SnapshotBegin third = p.begin_snapshot(2, n.now);
  EXPECT_TRUE(third.resume);
  r.deliver(n, 2, third);
  r.deliver(n, 2, p.snapshot_chunk(2, {"b"}, false, n.now, "k2"));
  r.deliver(n, 2, p.snapshot_chunk(2, {"c"}, true, n.now));
  EXPECT_EQ(r.resets, 1);
  EXPECT_EQ(r.applied, (std::vector<std::string>{"a", "b", "c"}));
  n.deliver_all();
  n.now += 100;
  n.tick_all();
  n.deliver_all();
  EXPECT_EQ(n.c(2).last_lsn(), p.last_lsn());
  EXPECT_EQ(n.committed[1], p.last_lsn());
}

// Writes the primary makes while it scans reach the keys it sends: a replica that has every key
// but not yet the log up to the last write its keys may hold claims no LSN (it is not in sync,
// grants no lease, acknowledges nothing durable, and a new epoch drops it), so a failover to a
// copy without those writes cannot leave them behind for good. Once its log reaches that write,
// it is an ordinary replica.
TEST(ReplicationCopy, ReplicaSettlesOnlyOnceItsLogReachesTheWritesItsKeysMayHold) {
  Options o;
  o.log_keep_bytes = 1;  // the log does not reach back: only a snapshot can catch 2 up
  o.source = 42;
  Net n({1, 2, 3}, o);
  n.configure_all(Config{.epoch = 1, .primary = 1, .replicas = {3}, .write_quorum = 1});
  n.deliver_all();
  for (int i = 0; i < 5; ++i) n.write(1, "a" + std::to_string(i));
  n.deliver_all();
  Copy& p = n.c(1);
  n.configure_all(Config{.epoch = 2, .primary = 1, .replicas = {2, 3}, .write_quorum = 2});
  n.deliver_all();
  ASSERT_FALSE(n.snapshot_needed[1].empty());
  ReplicaLog r;
  SnapshotBegin sb = p.begin_snapshot(2, n.now);
  r.deliver(n, 2, sb);
  r.deliver(n, 2, p.snapshot_chunk(2, {"k1=a"}, false, n.now, "k2"));
  // Two writes while the scan goes on; the scan of the rest sees them.
  const uint64_t w1 = n.write(1, "k2=b"), w2 = n.write(1, "k3=c");
  SnapshotChunk last = p.snapshot_chunk(2, {"k2=b", "k3=c"}, true, n.now);
  EXPECT_EQ(last.settle_lsn, w2);
  EXPECT_EQ(last.snapshot_lsn, sb.snapshot_lsn);
  n.q.clear();  // the Appends of w1 and w2 to replica 2 are held back
  r.deliver(n, 2, last);
  Copy& rep = n.c(2);
  EXPECT_EQ(rep.last_lsn(), sb.snapshot_lsn);
  EXPECT_EQ(rep.held(), (std::pair<uint64_t, uint64_t>{0, 0}));
  auto mark = rep.settling_mark();
  ASSERT_TRUE(mark);
  EXPECT_EQ(mark->lsn, sb.snapshot_lsn);
  EXPECT_EQ(mark->next_key, "k2");  // a restart resumes at the last chunk
  EXPECT_EQ(mark->source, 42u);
  ASSERT_FALSE(n.q.empty());
  auto ack = std::get<AppendAck>(n.q.back().m);
  EXPECT_EQ(ack.durable_lsn, 0u);   // nothing vouched for
  EXPECT_EQ(ack.echo_sent_ms, 0);   // no lease granted
  // A fence now: it answers as holding nothing, not in sync.
  n.q.clear();
  n.now += 5000;  // past any lease promise
  rep.receive(kManager, Fence{.new_epoch = 3}, n.now);
  r.take(n, 2);
  ASSERT_FALSE(n.q.empty());
  auto fa = std::get<FenceAck>(n.q.back().m);
  EXPECT_EQ(fa.last_lsn, 0u);
  EXPECT_FALSE(fa.in_sync);
  // The new epoch (primary 3, which never had w1 and w2) drops what it got.
  EXPECT_TRUE(rep.configure(Config{.epoch = 3, .primary = 3, .replicas = {2}, .write_quorum = 1}, n.now));
  r.take(n, 2);
  EXPECT_EQ(r.resets, 2);
  EXPECT_EQ(rep.last_lsn(), 0u);
  EXPECT_FALSE(rep.settling_mark());
  (void)w1;
}

TEST(ReplicationCopy, ReplicaIsInSyncOnceItsLogReachesTheSettleLsn) {
  Options o;
  o.log_keep_bytes = 1;
  Net n({1, 2}, o);
  n.configure_all(Config{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1});
  for (int i = 0; i < 5; ++i) n.write(1, "a" + std::to_string(i));
  Copy& p = n.c(1);
  n.configure_all(Config{.epoch = 2, .primary = 1, .replicas = {2}, .write_quorum = 2});
  n.deliver_all();
  ReplicaLog r;
  SnapshotBegin sb = p.begin_snapshot(2, n.now);
  r.deliver(n, 2, sb);
  const uint64_t w = n.write(1, "k=b");  // not committed: replica 2 must hold it first
  n.q.clear();
  r.deliver(n, 2, p.snapshot_chunk(2, {"k=b"}, true, n.now));
  EXPECT_EQ(n.c(2).held().first, 0u);
  EXPECT_LT(n.committed[1], w);
  n.deliver_all();  // its ack (received, not durable), then the log from the snapshot on
  n.now += 300;
  n.tick_all();
  n.deliver_all();
  EXPECT_EQ(n.c(2).held(), (std::pair<uint64_t, uint64_t>{w, 2}));
  EXPECT_FALSE(n.c(2).settling_mark());
  EXPECT_EQ(n.committed[1], w);  // its durable ack now counts
}

// A replica restarted in the middle of a transfer (its engine kept the keys received and the
// progress mark) resumes it from its primary; writes made meanwhile follow from the log.
TEST(ReplicationCopy, RestartedReceiverResumesItsTransfer) {
  Options o;
  o.source = 42;
  Net n({1, 2}, o);
  n.configure_all(Config{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1});
  for (int i = 0; i < 5; ++i) n.write(1, "a" + std::to_string(i));
  Copy& p = n.c(1);
  n.configure_all(Config{.epoch = 2, .primary = 1, .replicas = {2}, .write_quorum = 1});
  n.drop_all();
  // The replica starts empty (as a restarted memory copy would): probe, mismatch, snapshot.
  SnapshotBegin sb = p.begin_snapshot(2, n.now);
  ReplicaLog r;
  r.deliver(n, 2, sb);
  r.deliver(n, 2, p.snapshot_chunk(2, {"a"}, false, n.now, "k1"));
  ASSERT_TRUE(r.progress);
  n.drop_all();
  // Restart: a new process takes the partition up from its mark, in the next epoch (its
  // restart bumps the epoch); the primary wrote meanwhile.
  n.copies[2] = std::make_unique<Copy>(2, o);
  n.c(2).recover_partial(r.progress->lsn, r.progress->epoch, r.progress->source, r.progress->next_key);
  EXPECT_EQ(n.c(2).held(), (std::pair<uint64_t, uint64_t>{0, 0}));
  n.write(1, "during");
  Config c3{.epoch = 3, .primary = 1, .replicas = {2}, .write_quorum = 1};
  ASSERT_TRUE(p.configure(c3, n.now));
  ASSERT_TRUE(n.c(2).configure(c3, n.now));
  n.collect(1);
  r.take(n, 2);
  n.deliver_all();  // an Append meets the partial copy: it asks to resume
  ASSERT_TRUE(p.snapshot_wanted(2));
  SnapshotBegin again = p.begin_snapshot(2, n.now);
  EXPECT_TRUE(again.resume);
  EXPECT_EQ(again.resume_key, "k1");
  r.deliver(n, 2, again);
  r.deliver(n, 2, p.snapshot_chunk(2, {"b"}, true, n.now));
  EXPECT_EQ(r.resets, 1);  // the first begin's only: "a" was kept through the restart
  n.deliver_all();
  n.now += 100;
  n.tick_all();
  n.deliver_all();
  EXPECT_EQ(n.c(2).last_lsn(), p.last_lsn());  // the log after the snapshot's LSN followed
}

// Only the process that streamed a transfer may continue it: another primary's log may lack
// writes the scanned keys hold. It sends the whole snapshot instead.
TEST(ReplicationCopy, AResumeAskToAnotherPrimaryProcessGetsAWholeSnapshot) {
  Options o1;
  o1.source = 7;  // a restarted primary: not the process (42) that streamed the part kept
  o1.log_keep_bytes = 1;
  Copy p(1, o1);
  ASSERT_TRUE(p.configure(Config{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1}, 0));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(p.append(std::string("w"), 0));
    p.durable(p.last_lsn(), 0);
  }
  Copy r(2);
  r.recover_partial(p.last_lsn(), 1, 42, "k1");
  Config c{.epoch = 2, .primary = 1, .replicas = {2}, .write_quorum = 1};
  ASSERT_TRUE(p.configure(c, 0));
  ASSERT_TRUE(r.configure(c, 0));
  (void)p.take_output();
  (void)r.take_output();
  r.receive(1, Append{.epoch = 2, .prev_lsn = p.last_lsn(), .prev_epoch = 2}, 0);
  Output ro = r.take_output();
  ASSERT_EQ(ro.send.size(), 1u);
  auto ask = std::get<AppendAck>(ro.send[0].second);
  EXPECT_TRUE(ask.resumable);
  EXPECT_EQ(ask.resume_source, 42u);
  p.receive(2, ask, 0);
  Output po = p.take_output();
  ASSERT_EQ(po.snapshot_needed, std::vector<NodeId>{2});
  SnapshotBegin b = p.begin_snapshot(2, 0);
  EXPECT_FALSE(b.resume);
  r.receive(1, b, 0);
  EXPECT_TRUE(r.take_output().reset_partition);  // the part kept is dropped, the whole follows
}

// A transfer cut short by a new epoch leaves partial data in the engine: configure() drops it.
TEST(ReplicationCopy, NewEpochDuringASnapshotResetsThePartition) {
  Copy r(2);
  ASSERT_TRUE(r.configure(Config{.epoch = 1, .primary = 1, .replicas = {2}, .write_quorum = 1}, 0));
  r.receive(1, SnapshotBegin{.epoch = 1, .snapshot_lsn = 9, .snapshot_epoch = 1}, 0);
  r.receive(1, SnapshotChunk{.epoch = 1, .snapshot_lsn = 9, .seq = 0, .effects = {"k=1"}}, 0);
  Output during = r.take_output();
  EXPECT_TRUE(during.reset_partition);
  ASSERT_EQ(during.apply_snapshot.size(), 1u);
  ASSERT_TRUE(r.configure(Config{.epoch = 2, .primary = 2, .replicas = {3}, .write_quorum = 1}, 0));
  Output after = r.take_output();
  EXPECT_TRUE(after.reset_partition);  // the partial "k=1" is dropped
  EXPECT_EQ(r.last_lsn(), 1u);         // then only the new epoch's barrier
  ASSERT_EQ(after.apply.size(), 1u);
  EXPECT_TRUE(after.apply[0].effect.empty());
}

// A copy re-added empty is not in sync until it holds its epoch's barrier: its fence answer
// does not count toward the quorum (it may hold less than it once acknowledged).
TEST(ReplicationCopy, CopyCatchingUpAnswersFencesAsNotInSync) {
  Options o;
  o.lease_ms = 100;
  Net n({1, 2, 3}, o);
  n.configure_all(cfg3(2));
  n.deliver_all();
  for (int i = 0; i < 3; ++i) n.write(1, "w" + std::to_string(i));
  n.deliver_all();
  n.copies[3] = std::make_unique<Copy>(3, o);  // restarted empty
  n.configure_all(cfg3(2, 2));
  // Only replica 2 gets epoch 2's barrier; 3 has not caught up.
  while (!n.q.empty()) {
    if (n.q.front().to == 3 || n.q.front().from == 3) {
      n.q.pop_front();
      continue;
    }
    n.deliver_one();
  }
  n.now += 1000;
  for (NodeId r : {2u, 3u}) {
    n.c(r).receive(kManager, Fence{.new_epoch = 3}, n.now);
    n.collect(r);
  }
  n.deliver_all();
  ASSERT_EQ(n.fence_acks.size(), 2u);
  for (const auto& [from, ack] : n.fence_acks) {
    EXPECT_EQ(ack.epoch, 2u);
    EXPECT_EQ(ack.in_sync, from == 2u) << "node " << from;
  }
  // Fence quorum 2 of in-sync copies: 2's answer alone is not enough, and 3's does not count.
  EXPECT_EQ(choose_new_primary(cfg3(2, 2), n.fence_acks), std::nullopt);
}

// The core is pure: no file of src/replication includes or names a clock, socket, thread,
// file or random device (every .h/.cpp there is checked, so a new file is covered too).
TEST(ReplicationCopy, LearnerIsStreamedToButCountsForNeitherQuorumNorLease) {
  Net n({1, 2, 3});
  n.auto_durable[2] = false;
  Config c{.epoch = 1, .primary = 1, .replicas = {2}, .write_quorum = 2};
  ASSERT_TRUE(n.c(1).configure(c, n.now));
  ASSERT_TRUE(n.c(2).configure(c, n.now));
  Config lc = c;
  lc.learners = {3};
  ASSERT_TRUE(n.c(3).configure(lc, n.now));  // the learner's own copy
  ASSERT_TRUE(n.c(1).set_learners({3}, n.now));
  for (NodeId id : {1u, 2u, 3u}) n.collect(id);
  n.deliver_all();
  uint64_t lsn = n.write(1, "a");
  n.deliver_all();
  // The learner holds it durably, the replica only received it: primary + learner is not a
  // write quorum of 2.
  EXPECT_EQ(n.c(3).last_lsn(), lsn);
  EXPECT_LT(n.committed[1], lsn);
  // Cut off from the replica past its lease, the primary holds none, however often the learner
  // answers.
  for (int i = 0; i < 30; ++i) {
    n.now += 100;
    n.tick_all();
    std::erase_if(n.q, [](const Net::Msg& m) { return m.to == 2 || m.from == 2; });
    n.deliver_all();
  }
  EXPECT_FALSE(n.c(1).can_serve_reads(n.now));
  ASSERT_TRUE(n.c(1).progress(3));
  EXPECT_EQ(n.c(1).progress(3)->acked, lsn);
  n.c(2).durable(lsn, n.now);
  n.collect(2);
  n.deliver_all();
  EXPECT_EQ(n.committed[1], lsn);
  n.now += 100;  // the next heartbeat's ack renews the replica's grant
  n.tick_all();
  n.deliver_all();
  EXPECT_TRUE(n.c(1).can_serve_reads(n.now));
  // Dropped from the list: no longer streamed to.
  ASSERT_TRUE(n.c(1).set_learners({}, n.now));
  EXPECT_FALSE(n.c(1).progress(3));
  n.write(1, "b");
  n.deliver_all();
  EXPECT_EQ(n.c(3).last_lsn(), lsn);
  // A learner is another node: not the primary, not a replica.
  EXPECT_FALSE(n.c(1).set_learners({2}, n.now));
  EXPECT_FALSE(n.c(1).set_learners({1}, n.now));
  Config bad = c;
  bad.learners = {2};
  EXPECT_FALSE(Copy(5).configure(bad, n.now));
}

TEST(ReplicationCopy, NewLearnerWithATrimmedLogGetsASnapshot) {
  Options o;
  o.log_keep_bytes = 40;
  Net n({1, 2}, o);
  Config c{.epoch = 1, .primary = 1, .replicas = {}, .write_quorum = 1};
  ASSERT_TRUE(n.c(1).configure(c, n.now));
  n.collect(1);
  for (int i = 0; i < 20; ++i) n.write(1, "value" + std::to_string(i));
  Config lc = c;
  lc.learners = {2};
  ASSERT_TRUE(n.c(2).configure(lc, n.now));
  ASSERT_TRUE(n.c(1).set_learners({2}, n.now));
  n.collect(1);
  n.deliver_all();
  ASSERT_EQ(n.snapshot_needed[1], std::vector<NodeId>{2});
  ASSERT_TRUE(n.c(1).progress(2)->snapshotting);
  n.q.push_back({1, 2, n.c(1).begin_snapshot(2, n.now)});
  n.q.push_back({1, 2, n.c(1).snapshot_chunk(2, {"state"}, true, n.now)});
  n.deliver_all();
  n.now += 100;
  n.tick_all();
  n.deliver_all();
  EXPECT_EQ(n.c(2).last_lsn(), n.c(1).last_lsn());
  EXPECT_FALSE(n.c(1).progress(2)->snapshotting);
  EXPECT_EQ(n.c(1).progress(2)->acked, n.c(1).last_lsn());
}

TEST(ReplicationCopy, HandoverStopsWritesAndReadsAndEndsWhenTheTargetHoldsEverything) {
  Net n({1, 2, 3});
  n.configure_all(cfg3(2));
  n.deliver_all();
  n.write(1, "a");
  n.deliver_all();
  ASSERT_TRUE(n.c(1).can_serve_reads(n.now));
  EXPECT_FALSE(n.c(1).hand_over(7, n.now));  // not a replica or learner
  // An entry replica 3 has not received yet.
  uint64_t lsn = n.write(1, "b");
  std::deque<Net::Msg> held;
  for (auto& m : n.q)
    if (m.to == 3) held.push_back(m);
  std::erase_if(n.q, [](const Net::Msg& m) { return m.to == 3; });
  n.deliver_all();
  ASSERT_TRUE(n.c(1).hand_over(3, n.now));
  n.collect(1);
  EXPECT_FALSE(n.c(1).writable());
  EXPECT_FALSE(n.c(1).can_serve_reads(n.now));
  auto refused = n.c(1).append("c", n.now);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("handing the partition over to node 3"), std::string::npos);
  EXPECT_FALSE(n.c(1).handover_done());
  // The primary keeps streaming (a resend after the timeout) until the target holds `b`.
  n.now += 300;
  n.tick_all();
  n.deliver_all();
  EXPECT_EQ(n.c(3).last_lsn(), lsn);
  EXPECT_TRUE(n.c(1).handover_done());
  // The next epoch makes 3 primary: it continues from everything 1 acknowledged.
  Config next{.epoch = 2, .primary = 3, .replicas = {1, 2}, .write_quorum = 2};
  n.configure_all(next);
  n.deliver_all();
  EXPECT_EQ(n.c(1).handing_over_to(), 0u);
  uint64_t after = n.write(3, "c");
  n.deliver_all();
  EXPECT_EQ(after, lsn + 2);  // b, then epoch 2's barrier, then c
  EXPECT_EQ(n.committed[3], after);
}

// A move that replaces replica 3 by learner 4 and keeps primary 1: writes acknowledged by
// {1, 3} before the switch must be on two copies of {1, 2, 4} after it, so the primary stops
// (hand_over to itself) until the learner holds everything.
TEST(ReplicationCopy, HandoverToItselfEndsWhenEveryLearnerHoldsEverything) {
  Net n({1, 2, 3, 4});
  Config lc = cfg3(2);
  lc.learners = {4};
  for (NodeId id : {1u, 2u, 3u, 4u}) {
    ASSERT_TRUE(n.c(id).configure(id == 4 ? lc : cfg3(2), n.now));
    n.collect(id);
  }
  ASSERT_TRUE(n.c(1).set_learners({4}, n.now));
  n.collect(1);
  n.deliver_all();
  n.write(1, "a");
  n.deliver_all();
  // `b` reaches the replicas (it is acknowledged) but not the learner yet.
  uint64_t lsn = n.write(1, "b");
  std::erase_if(n.q, [](const Net::Msg& m) { return m.to == 4; });
  n.deliver_all();
  ASSERT_EQ(n.committed[1], lsn);
  EXPECT_FALSE(n.c(1).hand_over(9, n.now));
  ASSERT_TRUE(n.c(1).hand_over(1, n.now));
  EXPECT_FALSE(n.c(1).writable());
  EXPECT_FALSE(n.c(1).can_serve_reads(n.now));
  auto refused = n.c(1).append("c", n.now);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("switching the partition to its new copies"), std::string::npos);
  EXPECT_FALSE(n.c(1).handover_done());  // the learner lacks `b`
  n.now += 300;
  n.tick_all();
  n.deliver_all();
  EXPECT_EQ(n.c(4).last_lsn(), lsn);
  EXPECT_TRUE(n.c(1).handover_done());
  // Epoch 2 drops replica 3 for 4; the primary takes writes again.
  Config next{.epoch = 2, .primary = 1, .replicas = {2, 4}, .write_quorum = 2};
  for (NodeId id : {1u, 2u, 4u}) ASSERT_TRUE(n.c(id).configure(next, n.now));
  for (NodeId id : {1u, 2u, 4u}) n.collect(id);
  n.deliver_all();
  EXPECT_EQ(n.c(1).handing_over_to(), 0u);
  uint64_t after = n.write(1, "c");
  n.deliver_all();
  EXPECT_EQ(n.committed[1], after);
}

// Handing over to a replica waits for the learners too.
TEST(ReplicationCopy, HandoverToAReplicaAlsoWaitsForTheLearners) {
  Net n({1, 2, 3, 4});
  Config lc = cfg3(2);
  lc.learners = {4};
  for (NodeId id : {1u, 2u, 3u, 4u}) {
    ASSERT_TRUE(n.c(id).configure(id == 4 ? lc : cfg3(2), n.now));
    n.collect(id);
  }
  ASSERT_TRUE(n.c(1).set_learners({4}, n.now));
  n.collect(1);
  n.deliver_all();
  uint64_t lsn = n.write(1, "a");
  std::erase_if(n.q, [](const Net::Msg& m) { return m.to == 4; });
  n.deliver_all();
  ASSERT_TRUE(n.c(1).hand_over(2, n.now));
  EXPECT_FALSE(n.c(1).handover_done());  // replica 2 holds `a`, learner 4 does not
  EXPECT_EQ(n.c(2).last_lsn(), lsn);
  n.now += 300;
  n.tick_all();
  n.deliver_all();
  EXPECT_TRUE(n.c(1).handover_done());
}

TEST(ReplicationCopy, HeldByCountsDurableCopiesForAWritesOwnQuorum) {
  Net n({1, 2, 3});
  n.auto_durable[2] = n.auto_durable[3] = false;
  n.configure_all(cfg3(2));
  n.deliver_all();
  n.c(2).durable(n.c(2).last_lsn(), n.now);
  n.collect(2);
  n.c(3).durable(n.c(3).last_lsn(), n.now);
  n.collect(3);
  n.deliver_all();
  uint64_t lsn = n.write(1, "a");
  n.deliver_all();
  // Only the primary holds it durably: quorum 1 is met, 2 (the configured one) and 3 are not.
  EXPECT_EQ(n.c(1).held_by(1), lsn);
  EXPECT_LT(n.c(1).held_by(2), lsn);
  EXPECT_EQ(n.c(1).held_by(2), n.c(1).committed_lsn());
  EXPECT_LT(n.c(1).held_by(3), lsn);
  n.c(2).durable(lsn, n.now);
  n.collect(2);
  n.deliver_all();
  EXPECT_EQ(n.c(1).held_by(2), lsn);
  EXPECT_LT(n.c(1).held_by(3), lsn);  // 3 copies: the third has not made it durable
  n.c(3).durable(lsn, n.now);
  n.collect(3);
  n.deliver_all();
  EXPECT_EQ(n.c(1).held_by(3), lsn);
  EXPECT_EQ(n.c(1).held_by(7), lsn);  // capped at the number of copies
  EXPECT_EQ(n.c(2).held_by(1), 0u);   // a replica answers nothing
}

TEST(ReplicationCopy, HeldByIgnoresLearners) {
  Net n({1, 2, 3});
  n.auto_durable[2] = false;
  Config c{.epoch = 1, .primary = 1, .replicas = {2}, .write_quorum = 1};
  ASSERT_TRUE(n.c(1).configure(c, n.now));
  ASSERT_TRUE(n.c(2).configure(c, n.now));
  Config lc = c;
  lc.learners = {3};
  ASSERT_TRUE(n.c(3).configure(lc, n.now));
  ASSERT_TRUE(n.c(1).set_learners({3}, n.now));
  for (NodeId id : {1u, 2u, 3u}) n.collect(id);
  n.deliver_all();
  uint64_t lsn = n.write(1, "a");
  n.deliver_all();
  EXPECT_GE(n.c(3).last_lsn(), lsn);    // the learner holds it durably...
  EXPECT_LT(n.c(1).held_by(2), lsn);    // ...but only the replica counts
}

TEST(ReplicationCopy, ReplicaIsFreshAsOfTheLastAppendItCaughtUpWith) {
  Net n({1, 2, 3});
  EXPECT_EQ(n.c(2).fresh_as_of_ms(), INT64_MIN);
  n.configure_all(cfg3(2));
  n.deliver_all();
  EXPECT_EQ(n.c(2).fresh_as_of_ms(), n.now);
  EXPECT_EQ(n.c(1).fresh_as_of_ms(), INT64_MIN);  // only replicas
  n.now += 500;
  n.write(1, "a");
  // Copy 3 loses the Append; copy 2 gets it. A later heartbeat carries the commit 3 lacks.
  while (!n.q.empty()) {
    if (n.q.front().to == 3) {
      n.q.pop_front();
    } else {
      n.deliver_one();
    }
  }
  EXPECT_EQ(n.c(2).fresh_as_of_ms(), n.now);
  int64_t before = n.c(3).fresh_as_of_ms();
  EXPECT_LT(before, n.now);
  n.now += 100;
  n.tick_all();
  while (!n.q.empty()) {
    auto& m = n.q.front();
    if (m.to == 3 && std::holds_alternative<Append>(m.m)) {
      // What it receives after the loss does not follow on from what it holds: it stays as
      // fresh as before until the resend arrives.
      n.deliver_one();
      if (n.c(3).last_lsn() < n.c(1).committed_lsn()) {
        EXPECT_EQ(n.c(3).fresh_as_of_ms(), before);
      }
    } else {
      n.deliver_one();
    }
  }
  n.now += 300;
  n.tick_all();
  n.deliver_all();
  EXPECT_EQ(n.c(3).last_lsn(), n.c(1).last_lsn());
  EXPECT_EQ(n.c(3).fresh_as_of_ms(), n.now);
  // A new epoch forgets it: not fresh until the new primary's first Append.
  ASSERT_TRUE(n.c(3).configure(cfg3(2, 2), n.now).has_value());
  EXPECT_EQ(n.c(3).fresh_as_of_ms(), INT64_MIN);
}

TEST(ReplicationCopy, CoreUsesNoClockSocketThreadFileOrRandomness) {
  std::regex banned(
      R"(#include\s*<(chrono|thread|random|fstream|filesystem|mutex|asio|sys/|unistd|boost/asio|ctime|atomic|condition_variable)[^>]*>|steady_clock|system_clock|random_device|this_thread|fopen|gettimeofday|clock_gettime)");
  size_t checked = 0;
  for (const auto& e : std::filesystem::directory_iterator(KEEL_REPLICATION_SRC)) {
    if (e.path().extension() != ".cpp" && e.path().extension() != ".h") continue;
    std::ifstream in(e.path());
    ASSERT_TRUE(in) << e.path();
    std::stringstream ss;
    ss << in.rdbuf();
    std::smatch m;
    std::string text = ss.str();
    EXPECT_FALSE(std::regex_search(text, m, banned)) << e.path() << " uses " << m.str();
    ++checked;
  }
  EXPECT_GE(checked, 3u);
}

}  // namespace
}  // namespace keel::replication

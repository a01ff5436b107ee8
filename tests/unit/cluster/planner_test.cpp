#include "cluster/planner.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <set>

#include "binomial_bounds.h"

namespace keel::cluster {
namespace {

std::vector<Member> members_of(std::vector<NodeId> ids, uint32_t zones = 0) {
  std::vector<Member> m;
  for (NodeId id : ids)
    m.push_back({.id = id,
                 .weight = 1,
                 .zone = zones == 0 ? "" : fmt::format("z{}", id % zones),
                 .role = Role::kStorage});
  return m;
}

std::vector<NodeId> ids(uint32_t n, NodeId first = 1) {
  std::vector<NodeId> v;
  for (uint32_t i = 0; i < n; ++i) v.push_back(first + i);
  return v;
}

size_t count(const std::vector<Move>& moves, MoveKind k) {
  return static_cast<size_t>(
      std::count_if(moves.begin(), moves.end(), [&](const Move& m) { return m.kind == k; }));
}

// Runs a plan to completion through the scheduler, as the runtime would: start what may start,
// report every started transfer caught up, commit every switch. Returns the final map.
PartitionMap run_to_completion(const Plan& pl, uint32_t per_node = 2) {
  auto r = Rebalancer::create(pl.now, pl.target, {.max_transfers_per_node = per_node});
  EXPECT_TRUE(r);
  PartitionMap map = pl.now;
  for (int round = 0; !r->done() && round < 100000; ++round) {
    auto started = r->start();
    for (const auto& t : started) EXPECT_TRUE(r->caught_up(t.partition, t.target));
    if (auto m = r->take_switch()) {
      EXPECT_EQ(m->version, map.version + 1);
      map = *m;
    }
  }
  EXPECT_TRUE(r->done());
  return map;
}

// Equal to target up to the epochs (which the switches raise on their own).
void expect_same_assignment(const PartitionMap& a, const PartitionMap& b) {
  ASSERT_EQ(a.partition_count(), b.partition_count());
  for (uint32_t p = 0; p < a.partition_count(); ++p) {
    EXPECT_EQ(a.partitions[p].primary, b.partitions[p].primary) << "partition " << p;
    EXPECT_EQ(a.partitions[p].replicas, b.partitions[p].replicas) << "partition " << p;
  }
}

TEST(Planner, NoChangeNoMoves) {
  auto members = members_of(ids(5));
  auto map = initial_map(members, 1024, 3);
  ASSERT_TRUE(map);
  auto r = plan(*map, members, 3);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->moves.empty());
  EXPECT_EQ(r->now, *map);
  EXPECT_EQ(r->target, *map);
}

TEST(Planner, RefusesBadInput) {
  auto members = members_of(ids(3));
  auto map = initial_map(members, 64, 3);
  ASSERT_TRUE(map);
  std::vector<NodeId> dead = {2};
  auto r = plan(*map, members, 3, dead);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("node 2 is listed both as a member and as dead"),
            std::string::npos);
  EXPECT_FALSE(plan(*map, members, 0));
  std::vector<Member> gateways = {{.id = 1, .weight = 1, .zone = "", .role = Role::kGateway}};
  r = plan(*map, gateways, 3);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no member has role storage"), std::string::npos);
}

// The figures quoted in docs/partitions.md.
TEST(Planner, JoinAndLeaveMeasured) {
  for (uint32_t n : {3u, 4u, 8u, 16u}) {
    auto members = members_of(ids(n));
    auto map = initial_map(members, 1024, 3);
    ASSERT_TRUE(map);
    auto grown = members_of(ids(n + 1));
    auto join = plan(*map, grown, 3);
    ASSERT_TRUE(join);
    double ideal = 3.0 * 1024 / (n + 1);
    size_t adds = count(join->moves, MoveKind::kAddCopy);
    std::cout << fmt::format(
        "join {}->{}: {} copies added (ideal 3P/N = {:.1f}, {:.3f}x), {} primaries moved\n", n,
        n + 1, adds, ideal, adds / ideal, count(join->moves, MoveKind::kChangePrimary));
    auto shrunk = members_of(ids(n - 1));
    auto leave = plan(*map, shrunk, 3);
    ASSERT_TRUE(leave);
    std::cout << fmt::format("leave {}->{}: {} copies added (node {} held {})\n", n, n - 1,
                             count(leave->moves, MoveKind::kAddCopy), n, map->copies_on(n));
  }
}

// plan() gives a newcomer replicas only; prefer_placed_primaries() then hands it the primaries
// of the partitions it ranks first in: about P/N, and no other primary moves.
TEST(Planner, PlacedPrimariesGiveTheNewcomerItsShareAndMoveNoOther) {
  for (uint32_t copies : {1u, 2u, 3u}) {
    auto members = members_of(ids(3));
    auto map = initial_map(members, 1024, copies);
    ASSERT_TRUE(map);
    // A converged map already has placed primaries: nothing changes.
    auto same = prefer_placed_primaries(*map, *map, members, copies);
    EXPECT_EQ(same, *map);
    auto grown = members_of(ids(4));
    auto pl = plan(*map, grown, copies);
    ASSERT_TRUE(pl);
    auto t = prefer_placed_primaries(pl->now, pl->target, grown, copies);
    ASSERT_TRUE(validate(t));
    uint32_t to_newcomer = 0;
    for (uint32_t p = 0; p < 1024; ++p) {
      const auto& before = map->partitions[p];
      const auto& after = t.partitions[p];
      // The copy set is plan()'s; only the order may differ.
      auto a = pl->target.partitions[p].copies(), b = after.copies();
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      EXPECT_EQ(a, b) << "partition " << p;
      if (after.primary != before.primary) {
        EXPECT_EQ(after.primary, 4u) << "partition " << p << ": a primary moved to an old member";
        ++to_newcomer;
      }
      bool changed = after.primary != before.primary || after.replicas != before.replicas;
      EXPECT_EQ(after.epoch, before.epoch + (changed ? 1 : 0)) << "partition " << p;
    }
    // Binomial(1024, 1/4): mean 256, sd ~13.9; 5 sd either side.
    EXPECT_GT(to_newcomer, 186u) << "copies " << copies;
    EXPECT_LT(to_newcomer, 326u) << "copies " << copies;
  }
}

// A join moves copies to the newcomer and nowhere else: about copies * P / N of them
// (Binomial(P, copies/N)); each changed partition gives up exactly one copy (none if it had
// fewer than `copies`); the primary moves only if its copy is the one given up: never with
// copies >= 2 and no zones; with zones, when the newcomer takes the primary's zone place.
RC_GTEST_PROP(Planner, JoinMovesOnlyToTheNewcomer, ()) {
  auto n = *rc::gen::inRange<uint32_t>(1, 16);
  auto copies = *rc::gen::inRange<uint32_t>(1, 4);
  auto zones = *rc::gen::inRange<uint32_t>(0, 4);
  auto members = members_of(ids(n, 10), zones);
  auto map = initial_map(members, 1024, copies);
  RC_ASSERT(map.has_value());
  auto grown = members_of(ids(n + 1, 10), zones);
  NodeId newcomer = 10 + n;
  auto r = plan(*map, grown, copies);
  RC_ASSERT(r.has_value());
  RC_ASSERT(r->now == *map);  // nothing to commit at once
  size_t adds = 0;
  for (const auto& m : r->moves) {
    if (m.kind == MoveKind::kAddCopy) {
      RC_ASSERT(m.node == newcomer);
      RC_ASSERT(m.source == map->partitions[m.partition].primary);
      ++adds;
    }
    if (m.kind == MoveKind::kRemoveCopy) RC_ASSERT(m.node != newcomer);
    if (m.kind == MoveKind::kChangePrimary && zones == 0 && copies >= 2)
      RC_FAIL("a primary moved on a join");
  }
  uint32_t k = std::min(copies, n + 1);
  double mean = static_cast<double>(k) * 1024 / (n + 1);
  // Exactly the copies the newcomer ends with move, and that is Binomial(P, k/(N+1)): within
  // the bound of binomial_bounds.h.
  RC_ASSERT(adds == r->target.copies_on(newcomer));
  RC_ASSERT(adds <= testing::binomial_upper(mean));
  // Every changed partition: epoch + 1, one copy in, at most one out.
  for (uint32_t p : r->changed) {
    const auto& before = r->now.partitions[p];
    const auto& after = r->target.partitions[p];
    RC_ASSERT(after.epoch == before.epoch + 1);
    RC_ASSERT(after.holds(newcomer));
    size_t given_up = 0;
    for (NodeId c : before.copies()) given_up += after.holds(c) ? 0 : 1;
    RC_ASSERT(given_up == (before.copy_count() == k ? 1u : 0u));
    if (after.primary != before.primary) RC_ASSERT(!after.holds(before.primary));
    if (zones == 0 && copies >= 2) RC_ASSERT(after.primary == before.primary);
  }
  for (uint32_t p = 0; p < 1024; ++p)
    if (!std::binary_search(r->changed.begin(), r->changed.end(), p))
      RC_ASSERT(r->target.partitions[p] == map->partitions[p]);
  // The result is what a fresh placement over the grown set gives (converged).
  auto fresh = initial_map(grown, 1024, copies);
  for (uint32_t p = 0; p < 1024; ++p) {
    auto a = r->target.partitions[p].copies();
    auto b = fresh->partitions[p].copies();
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    RC_ASSERT(a == b);
  }
}

// A leave (draining: the node is alive) or a failure (dead) moves only the copies the node
// held: every other partition is untouched, and each of its copies is replaced by one add.
RC_GTEST_PROP(Planner, LeaveOrFailureMovesOnlyTheLeaversCopies, ()) {
  auto n = *rc::gen::inRange<uint32_t>(2, 16);
  auto copies = *rc::gen::inRange<uint32_t>(1, 4);
  auto zones = *rc::gen::inRange<uint32_t>(0, 4);
  auto all = ids(n, 1);
  auto members = members_of(all, zones);
  auto map = initial_map(members, 1024, copies);
  RC_ASSERT(map.has_value());
  NodeId leaver = *rc::gen::elementOf(all);
  bool dies = *rc::gen::arbitrary<bool>();
  std::vector<NodeId> rest;
  for (NodeId id : all)
    if (id != leaver) rest.push_back(id);
  auto after = members_of(rest, zones);
  std::vector<NodeId> dead;
  if (dies) dead.push_back(leaver);
  auto r = plan(*map, after, copies, dead);
  RC_ASSERT(r.has_value());
  uint32_t held = map->copies_on(leaver);
  bool enough = n - 1 >= copies;  // else copies shrink to the survivors
  size_t adds = count(r->moves, MoveKind::kAddCopy);
  if (copies == 1 && dies) {
    RC_ASSERT(r->lost.size() == held);  // sole copies on a dead node are lost
  } else {
    RC_ASSERT(r->lost.empty());
    RC_ASSERT(adds == (enough ? held : 0u));
  }
  for (const auto& m : r->moves) {
    RC_ASSERT(map->partitions[m.partition].holds(leaver));
    if (m.kind == MoveKind::kRemoveCopy) RC_ASSERT(m.node == leaver);
    if (m.kind == MoveKind::kAddCopy) {
      RC_ASSERT(m.node != leaver);
      // From the current primary: a draining leaver may still be it, a dead one never.
      RC_ASSERT(m.source == r->now.partitions[m.partition].primary);
      if (dies) RC_ASSERT(m.source != leaver);
    }
  }
  for (uint32_t p = 0; p < 1024; ++p) {
    const auto& before = map->partitions[p];
    if (!before.holds(leaver)) {
      RC_ASSERT(r->now.partitions[p] == before);
      RC_ASSERT(r->target.partitions[p] == before);
      continue;
    }
    if (dies) {
      RC_ASSERT(!r->now.partitions[p].holds(leaver) || before.copy_count() == 1);
      if (before.primary == leaver && before.copy_count() > 1) {
        // The first surviving replica in map order is promoted at once.
        RC_ASSERT(r->now.partitions[p].primary == before.replicas[0]);
        RC_ASSERT(r->now.partitions[p].epoch == before.epoch + 1);
      }
    } else {
      RC_ASSERT(r->now.partitions[p] == before);  // a draining node serves until replaced
    }
    if (before.copy_count() > 1 || !dies) {
      RC_ASSERT(!r->target.partitions[p].holds(leaver));
      RC_ASSERT(r->target.partitions[p].epoch > before.epoch);
      // Survivors keep their copies.
      for (NodeId c : before.copies())
        if (c != leaver) RC_ASSERT(r->target.partitions[p].holds(c));
      // A draining node's replacement takes its place (so the replica prefix a namespace uses
      // changes by that one copy). A dead one is gone from `now` already, the survivors moved
      // up one place there; its replacement comes last.
      const auto& t = r->target.partitions[p];
      if (before.primary != leaver && enough) {
        RC_ASSERT(t.primary == before.primary);
        RC_ASSERT(t.replicas.size() == before.replicas.size());
        if (!dies) {
          for (size_t i = 0; i < before.replicas.size(); ++i)
            if (before.replicas[i] != leaver) RC_ASSERT(t.replicas[i] == before.replicas[i]);
        } else {
          const auto& now = r->now.partitions[p].replicas;
          RC_ASSERT(std::equal(now.begin(), now.end(), t.replicas.begin()));
        }
      }
    }
  }
}

TEST(Planner, PrimaryFailurePromotesFirstReplicaAndRepairs) {
  auto members = members_of(ids(4));
  auto map = initial_map(members, 16, 3);
  ASSERT_TRUE(map);
  const auto& a = map->partitions[0];
  NodeId victim = a.primary;
  std::vector<NodeId> dead = {victim};
  std::vector<NodeId> rest;
  for (NodeId id : ids(4))
    if (id != victim) rest.push_back(id);
  auto r = plan(*map, members_of(rest), 3, dead);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->now.version, map->version + 1);
  const auto& now = r->now.partitions[0];
  EXPECT_EQ(now.primary, a.replicas[0]);
  EXPECT_EQ(now.replicas, std::vector<NodeId>{a.replicas[1]});
  EXPECT_EQ(now.epoch, a.epoch + 1);
  EXPECT_EQ(under_replicated(r->now, 3).size(), map->copies_on(victim));
  EXPECT_TRUE(under_replicated(r->target, 3).empty());
  const auto& target = r->target.partitions[0];
  EXPECT_EQ(target.primary, now.primary);
  ASSERT_EQ(target.replicas.size(), 2u);
  EXPECT_EQ(target.epoch, now.epoch + 1);
  // The one node that held nothing of partition 0 gets the lost copy, streamed from the new
  // primary.
  std::vector<Move> expected = {{0, MoveKind::kAddCopy, target.replicas[1], now.primary}};
  std::vector<Move> got;
  for (const auto& m : r->moves)
    if (m.partition == 0) got.push_back(m);
  EXPECT_EQ(got, expected);
}

TEST(Planner, FailOverToTheChosenReplica) {
  PartitionAssignment a{.primary = 1, .replicas = {2, 3, 4}, .epoch = 9};
  std::vector<NodeId> dead = {1};
  auto b = fail_over(a, 3, dead);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, (PartitionAssignment{.primary = 3, .replicas = {2, 4}, .epoch = 10}));
  auto bad = fail_over(a, 5, dead);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("node 5 is not a replica of this partition (replicas: 2,3,4)"),
            std::string::npos)
      << bad.error().message;
  std::vector<NodeId> dead2 = {1, 3};
  EXPECT_FALSE(fail_over(a, 3, dead2));
  auto c = fail_over(a, 2, dead2);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->replicas, std::vector<NodeId>{4});

  PartitionMap map{.version = 5, .partitions = {a, a}};
  auto m = with_assignment(map, 1, *b);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->version, 6u);
  EXPECT_EQ(m->partitions[1], *b);
  EXPECT_EQ(m->partitions[0], a);
  auto stale = with_assignment(map, 1, a);  // same epoch
  ASSERT_FALSE(stale);
  EXPECT_NE(stale.error().message.find("new epoch 9 must be above the current epoch 9"),
            std::string::npos);
  EXPECT_FALSE(with_assignment(map, 2, *b));
}

TEST(Planner, RuntimeChosenPrimaryIsKeptByTheNextPlan) {
  auto members = members_of(ids(5));
  auto map = initial_map(members, 32, 3);
  ASSERT_TRUE(map);
  const auto a = map->partitions[7];
  NodeId victim = a.primary;
  NodeId chosen = a.replicas[1];  // the second replica is the most up to date, say
  std::vector<NodeId> dead = {victim};
  auto fo = fail_over(a, chosen, dead);
  ASSERT_TRUE(fo);
  auto committed = with_assignment(*map, 7, *fo);
  ASSERT_TRUE(committed);
  std::vector<NodeId> rest;
  for (NodeId id : ids(5))
    if (id != victim) rest.push_back(id);
  auto r = plan(*committed, members_of(rest), 3, dead);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->now.partitions[7], *fo);  // nothing more to drop there
  EXPECT_EQ(r->target.partitions[7].primary, chosen);
  EXPECT_EQ(r->target.partitions[7].replicas[0], a.replicas[0]);
  EXPECT_EQ(r->target.partitions[7].replicas.size(), 2u);
  EXPECT_EQ(r->target.partitions[7].epoch, fo->epoch + 1);
}

TEST(Planner, DrainingPrimaryHandsOverAtTheSwitch) {
  auto members = members_of(ids(4));
  auto map = initial_map(members, 16, 2);
  ASSERT_TRUE(map);
  NodeId leaver = map->partitions[3].primary;
  std::vector<NodeId> rest;
  for (NodeId id : ids(4))
    if (id != leaver) rest.push_back(id);
  auto r = plan(*map, members_of(rest), 2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->now, *map);
  const auto& t = r->target.partitions[3];
  EXPECT_EQ(t.primary, map->partitions[3].replicas[0]);  // the replica takes over
  ASSERT_EQ(t.replicas.size(), 1u);
  std::vector<Move> got;
  for (const auto& m : r->moves)
    if (m.partition == 3) got.push_back(m);
  std::vector<Move> expected = {{3, MoveKind::kAddCopy, t.replicas[0], leaver},
                                {3, MoveKind::kChangePrimary, t.primary, t.primary},
                                {3, MoveKind::kRemoveCopy, leaver, leaver}};
  EXPECT_EQ(got, expected);
  expect_same_assignment(run_to_completion(*r), r->target);
}

TEST(Planner, CopiesReducedAndRaised) {
  auto members = members_of(ids(5));
  auto map = initial_map(members, 64, 3);
  ASSERT_TRUE(map);
  auto down = plan(*map, members, 2);
  ASSERT_TRUE(down);
  EXPECT_EQ(count(down->moves, MoveKind::kRemoveCopy), 64u);
  EXPECT_EQ(count(down->moves, MoveKind::kAddCopy), 0u);
  EXPECT_EQ(count(down->moves, MoveKind::kChangePrimary), 0u);
  auto up = plan(*map, members, 4);
  ASSERT_TRUE(up);
  EXPECT_EQ(count(up->moves, MoveKind::kAddCopy), 64u);
  EXPECT_EQ(count(up->moves, MoveKind::kRemoveCopy), 0u);
  // More copies than nodes: as many as there are.
  auto many = plan(*map, members, 9);
  ASSERT_TRUE(many);
  EXPECT_EQ(many->copies, 5u);
}

// Whatever the history (a sequence of joins, drains and failures, each plan run to the end
// through the scheduler), the map stays valid, every partition keeps min(copies, N) copies on
// members, and the map converges to the placement of the current member set.
RC_GTEST_PROP(Planner, HistoriesConverge, ()) {
  auto copies = *rc::gen::inRange<uint32_t>(1, 4);
  std::vector<NodeId> live = ids(3, 1);
  NodeId next = 4;
  auto map = initial_map(members_of(live, 2), 128, copies);
  RC_ASSERT(map.has_value());
  PartitionMap cur = *map;
  auto steps = *rc::gen::inRange(1, 6);
  for (int s = 0; s < steps; ++s) {
    auto what = *rc::gen::inRange(0, 3);
    std::vector<NodeId> dead;
    if (what == 0 || live.size() <= 2) {
      live.push_back(next++);
    } else {
      auto victim = *rc::gen::elementOf(live);
      live.erase(std::find(live.begin(), live.end(), victim));
      if (what == 2 && copies > 1) dead.push_back(victim);
    }
    auto r = plan(cur, members_of(live, 2), copies, dead);
    RC_ASSERT(r.has_value());
    RC_ASSERT(r->lost.empty());
    auto per_node = *rc::gen::inRange<uint32_t>(1, 4);
    auto done = run_to_completion(*r, per_node);
    RC_ASSERT(validate(done).has_value());
    for (uint32_t p = 0; p < done.partition_count(); ++p) {
      const auto& a = done.partitions[p];
      RC_ASSERT(a.copy_count() == std::min<size_t>(copies, live.size()));
      for (NodeId c : a.copies()) RC_ASSERT(std::find(live.begin(), live.end(), c) != live.end());
      RC_ASSERT(a.epoch >= cur.partitions[p].epoch);
      auto got = a.copies();
      auto want = place(p, members_of(live, 2), copies);
      std::sort(got.begin(), got.end());
      std::sort(want.begin(), want.end());
      RC_ASSERT(got == want);
    }
    auto again = plan(done, members_of(live, 2), copies);
    RC_ASSERT(again->moves.empty());
    cur = done;
  }
}

TEST(Rebalancer, RespectsPerNodeLimitAndRepairsFirst) {
  // 4 partitions; node 9 receives every new copy. Partition 2 is under-replicated.
  PartitionMap cur{.version = 3,
                   .partitions = {{.primary = 1, .replicas = {2}, .epoch = 1},
                                  {.primary = 2, .replicas = {1}, .epoch = 1},
                                  {.primary = 3, .replicas = {}, .epoch = 1},
                                  {.primary = 4, .replicas = {1}, .epoch = 1}}};
  PartitionMap target = cur;
  target.partitions[0].replicas = {9};
  target.partitions[1].replicas = {9};
  target.partitions[2].replicas = {9};
  target.partitions[3].replicas = {9};
  auto r = Rebalancer::create(cur, target, {.max_transfers_per_node = 2});
  ASSERT_TRUE(r);
  auto first = r->start();
  ASSERT_EQ(first.size(), 2u);               // node 9 takes two at a time
  EXPECT_EQ(first[0], (Transfer{2, 3, 9}));  // the repair first
  EXPECT_EQ(first[1], (Transfer{0, 1, 9}));
  EXPECT_TRUE(r->start().empty());  // node 9 is full
  EXPECT_EQ(r->in_flight_transfers(), 2u);
  EXPECT_EQ(r->in_flight(), (std::vector<Transfer>{{0, 1, 9}, {2, 3, 9}}));
  EXPECT_EQ(under_replicated(r->current(), 2), std::vector<uint32_t>{2});
  EXPECT_EQ(r->pending_transfers(), 2u);
  EXPECT_FALSE(r->take_switch());  // nothing caught up yet: the map does not change

  ASSERT_TRUE(r->caught_up(2, 9));
  auto m = r->take_switch();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->version, 4u);
  EXPECT_EQ(m->partitions[2], (PartitionAssignment{.primary = 3, .replicas = {9}, .epoch = 2}));
  EXPECT_EQ(m->partitions[0], cur.partitions[0]);  // still catching up: unchanged
  EXPECT_EQ(r->remaining_partitions(), 3u);

  auto caught = r->caught_up(2, 9);  // twice
  ASSERT_FALSE(caught);
  EXPECT_EQ(caught.error().code, Errc::kNotFound);

  // A failed transfer goes back to pending and is offered again.
  ASSERT_TRUE(r->abandon(0, 9));
  auto next = r->start();
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0], (Transfer{0, 1, 9}));
  EXPECT_EQ(next[1], (Transfer{1, 2, 9}));
  ASSERT_TRUE(r->caught_up(0, 9));
  ASSERT_TRUE(r->caught_up(1, 9));
  m = r->take_switch();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->version, 5u);  // two partitions, one version
  EXPECT_EQ(m->partitions[0], (PartitionAssignment{.primary = 1, .replicas = {9}, .epoch = 2}));
  EXPECT_EQ(m->partitions[1], (PartitionAssignment{.primary = 2, .replicas = {9}, .epoch = 2}));
  auto last = r->start();
  ASSERT_EQ(last, (std::vector<Transfer>{{3, 4, 9}}));
  ASSERT_TRUE(r->caught_up(3, 9));
  ASSERT_TRUE(r->take_switch());
  EXPECT_TRUE(r->done());
  EXPECT_EQ(r->current().version, 6u);
}

TEST(Rebalancer, SourceLimitCountsToo) {
  // Node 1 is the primary of both partitions: with limit 1 only one transfer at a time.
  PartitionMap cur{.version = 1,
                   .partitions = {{.primary = 1, .replicas = {}, .epoch = 1},
                                  {.primary = 1, .replicas = {}, .epoch = 1}}};
  PartitionMap target = cur;
  target.partitions[0].replicas = {2};
  target.partitions[1].replicas = {3};
  auto r = Rebalancer::create(cur, target, {.max_transfers_per_node = 1});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->start(), (std::vector<Transfer>{{0, 1, 2}}));
  EXPECT_TRUE(r->start().empty());
  ASSERT_TRUE(r->caught_up(0, 2));
  EXPECT_EQ(r->start(), (std::vector<Transfer>{{1, 1, 3}}));
}

TEST(Rebalancer, SwitchWithoutTransfersAndBadInput) {
  PartitionMap cur{.version = 1, .partitions = {{.primary = 1, .replicas = {2, 3}, .epoch = 4}}};
  PartitionMap target{.version = 1, .partitions = {{.primary = 2, .replicas = {1}, .epoch = 4}}};
  auto r = Rebalancer::create(cur, target);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->start().empty());
  auto m = r->take_switch();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->partitions[0], (PartitionAssignment{.primary = 2, .replicas = {1}, .epoch = 5}));
  EXPECT_TRUE(r->done());
  EXPECT_FALSE(r->take_switch());

  PartitionMap two{.version = 1, .partitions = {cur.partitions[0], cur.partitions[0]}};
  auto bad = Rebalancer::create(cur, two);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("current map has 1 partitions and target 2"),
            std::string::npos);
  EXPECT_FALSE(Rebalancer::create(cur, target, {.max_transfers_per_node = 0}));
}

}  // namespace
}  // namespace keel::cluster

namespace keel::cluster {
namespace {

// Random interleavings of the runtime's reports (caught up, failed, commit a switch): no node
// ever exceeds its transfer limit, no committed map ever has a partition with fewer copies than
// it started with (a copy is given up only once its replacement is caught up), every switch
// raises the epochs of exactly the partitions it changes, and the target is reached.
RC_GTEST_PROP(Rebalancer, RandomInterleavingsAreSafe, ()) {
  auto n = *rc::gen::inRange<uint32_t>(2, 8);
  auto copies = *rc::gen::inRange<uint32_t>(1, 4);
  auto members = members_of(ids(n));
  auto map = initial_map(members, 64, copies);
  RC_ASSERT(map.has_value());
  // A join and a drain at once.
  auto after_ids = ids(n + 1);
  after_ids.erase(after_ids.begin() + *rc::gen::inRange<uint32_t>(0, n));
  auto pl = plan(*map, members_of(after_ids), copies);
  RC_ASSERT(pl.has_value());
  auto limit = *rc::gen::inRange<uint32_t>(1, 4);
  auto r = Rebalancer::create(pl->now, pl->target, {.max_transfers_per_node = limit});
  RC_ASSERT(r.has_value());
  PartitionMap committed = pl->now;
  std::vector<Transfer> flying;
  // A random phase, then (so that every run ends) everything in flight is reported caught up.
  const int random_steps = *rc::gen::inRange(0, 400);
  for (int step = 0; step < random_steps + 100000 && !r->done(); ++step) {
    int action = step < random_steps ? *rc::gen::inRange(0, 4) : (flying.empty() ? 0 : 1);
    if (action == 0 || flying.empty()) {
      for (const auto& t : r->start()) flying.push_back(t);
      std::map<NodeId, uint32_t> load;
      for (const auto& t : flying) {
        ++load[t.source];
        ++load[t.target];
      }
      for (const auto& [node, l] : load) RC_ASSERT(l <= limit);
      RC_ASSERT(r->in_flight().size() == flying.size());
    } else {
      auto i = *rc::gen::inRange<size_t>(0, flying.size());
      auto t = flying[i];
      flying.erase(flying.begin() + static_cast<std::ptrdiff_t>(i));
      if (action == 3)
        RC_ASSERT(r->abandon(t.partition, t.target).has_value());
      else
        RC_ASSERT(r->caught_up(t.partition, t.target).has_value());
    }
    if (auto m = r->take_switch()) {
      RC_ASSERT(m->version == committed.version + 1);
      RC_ASSERT(validate(*m).has_value());
      for (uint32_t p = 0; p < m->partition_count(); ++p) {
        const auto& before = committed.partitions[p];
        const auto& a = m->partitions[p];
        RC_ASSERT(a.copy_count() >=
                  std::min(before.copy_count(), pl->target.partitions[p].copy_count()));
        if (a == before) continue;
        RC_ASSERT(a.epoch == before.epoch + 1);
        RC_ASSERT(a.copies() == pl->target.partitions[p].copies());
      }
      committed = *m;
    }
  }
  RC_ASSERT(r->done());
  expect_same_assignment(committed, pl->target);
}

}  // namespace
}  // namespace keel::cluster

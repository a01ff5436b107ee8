#include "keel/peers.h"

#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace keel::sdk {
namespace {

using namespace std::chrono_literals;

PeerSpec spec(std::string id, std::vector<std::string> caps = {},
              PeerStatus reported = PeerStatus::kUp) {
  return PeerSpec{id, "10.0.0.1", 6380, std::move(caps), reported};
}

Instant T(Duration d) { return Instant(d); }

std::vector<std::string> ids(const std::vector<PeerView>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.id);
  return out;
}

TEST(PeerManager, PrefersLowerLatencyAndTracksEwma) {
  PeerManager m;
  std::vector<PeerSpec> peers{spec("a"), spec("b"), spec("c")};
  ASSERT_TRUE(m.set_static(peers));
  ASSERT_TRUE(m.record_success("a", 5ms, T(0ns)));
  ASSERT_TRUE(m.record_success("b", 2ms, T(0ns)));
  ASSERT_TRUE(m.record_success("c", 9ms, T(0ns)));
  EXPECT_EQ(ids(m.select(3, T(0ns))), (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_EQ(ids(m.select(1, T(0ns))), (std::vector<std::string>{"b"}));
  // EWMA with alpha 0.2: 2ms then 12ms -> 4ms.
  ASSERT_TRUE(m.record_success("b", 12ms, T(1ns)));
  EXPECT_EQ(m.peer("b", T(1ns))->latency_ewma, 4ms);
  EXPECT_EQ(ids(m.select(1, T(1ns))), (std::vector<std::string>{"b"}));
  ASSERT_TRUE(m.record_success("b", 12ms, T(2ns)));  // 4 + 0.2 * 8 = 5.6ms > a's 5ms
  EXPECT_EQ(ids(m.select(1, T(2ns))), (std::vector<std::string>{"a"}));
}

TEST(PeerManager, FailuresMakeSuspectThenDownThenProbeAfterCooldown) {
  PeerManager::Options o;
  o.suspect_after = 1;
  o.down_after = 3;
  o.down_cooldown = 5s;
  PeerManager m(o);
  std::vector<PeerSpec> peers{spec("a"), spec("b")};
  ASSERT_TRUE(m.set_static(peers));
  EXPECT_EQ(m.status("a", T(0s)), PeerStatus::kUp);
  ASSERT_TRUE(m.record_failure("a", T(1s)));
  EXPECT_EQ(m.status("a", T(1s)), PeerStatus::kSuspect);
  EXPECT_EQ(ids(m.select(2, T(1s))), (std::vector<std::string>{"b", "a"}));
  ASSERT_TRUE(m.record_failure("a", T(2s)));
  ASSERT_TRUE(m.record_failure("a", T(3s)));
  EXPECT_EQ(m.status("a", T(3s)), PeerStatus::kDown);
  EXPECT_EQ(ids(m.select(2, T(3s))), (std::vector<std::string>{"b"}));
  EXPECT_EQ(m.status("a", T(8s - 1ns)), PeerStatus::kDown);
  EXPECT_EQ(m.status("a", T(8s)), PeerStatus::kSuspect);  // cooldown over: probe it
  ASSERT_TRUE(m.record_failure("a", T(8s)));                // failed probe: down again
  EXPECT_EQ(m.status("a", T(12s)), PeerStatus::kDown);
  ASSERT_TRUE(m.record_success("a", 1ms, T(13s)));
  EXPECT_EQ(m.status("a", T(13s)), PeerStatus::kUp);
}

TEST(PeerManager, FailureScoreDecaysByHalfLife) {
  PeerManager::Options o;
  o.failure_half_life = 10s;
  o.suspect_after = 100;
  o.down_after = 100;
  PeerManager m(o);
  std::vector<PeerSpec> peers{spec("a"), spec("b")};
  ASSERT_TRUE(m.set_static(peers));
  ASSERT_TRUE(m.record_failure("a", T(0s)));
  ASSERT_TRUE(m.record_failure("a", T(0s)));
  EXPECT_DOUBLE_EQ(m.peer("a", T(0s))->failure_score, 2.0);
  EXPECT_DOUBLE_EQ(m.peer("a", T(10s))->failure_score, 1.0);
  EXPECT_DOUBLE_EQ(m.peer("a", T(30s))->failure_score, 0.25);
  // Same latency, so the failing peer ranks last until its score has decayed away.
  ASSERT_TRUE(m.record_success("a", 1ms, T(30s)));
  ASSERT_TRUE(m.record_success("b", 1ms, T(30s)));
  EXPECT_EQ(ids(m.select(2, T(30s))), (std::vector<std::string>{"b", "a"}));
}

TEST(PeerManager, CapabilitiesFilter) {
  PeerManager m;
  std::vector<PeerSpec> peers{spec("p1", {"primary", "write", "read"}),
                              spec("r1", {"replica", "read"}), spec("r2", {"read", "replica"})};
  ASSERT_TRUE(m.set_static(peers));
  ASSERT_TRUE(m.record_success("p1", 1ms, T(0s)));
  ASSERT_TRUE(m.record_success("r1", 3ms, T(0s)));
  ASSERT_TRUE(m.record_success("r2", 2ms, T(0s)));
  std::vector<std::string> write{"write"};
  EXPECT_EQ(ids(m.select(3, write, T(0s))), (std::vector<std::string>{"p1"}));
  std::vector<std::string> replica_read{"read", "replica"};
  EXPECT_EQ(ids(m.select(3, replica_read, T(0s))), (std::vector<std::string>{"r2", "r1"}));
  std::vector<std::string> none{"gpu"};
  EXPECT_TRUE(m.select(3, none, T(0s)).empty());
}

TEST(PeerManager, TopologyUpdateKeepsStatsDropsLeaversIgnoresOldVersions) {
  PeerManager m;
  ASSERT_TRUE(*m.apply(TopologyUpdate{1, {spec("a"), spec("b")}}));
  ASSERT_TRUE(m.record_success("a", 7ms, T(0s)));
  ASSERT_TRUE(*m.apply(TopologyUpdate{2, {spec("a"), spec("c")}}));
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m.peer("a", T(0s))->latency_ewma, 7ms);  // kept
  EXPECT_FALSE(m.peer("b", T(0s)).has_value());      // left
  auto r = m.record_success("b", 1ms, T(0s));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, PeerErrc::kUnknownPeer);
  EXPECT_FALSE(*m.apply(TopologyUpdate{2, {spec("z")}}));  // not newer: ignored
  EXPECT_FALSE(*m.apply(TopologyUpdate{1, {spec("z")}}));
  EXPECT_TRUE(m.peer("c", T(0s)).has_value());
  EXPECT_EQ(m.topology_version(), 2u);
  // A peer the topology reports as failed stays down whatever the call results say.
  ASSERT_TRUE(*m.apply(TopologyUpdate{3, {spec("a", {}, PeerStatus::kDown), spec("c")}}));
  ASSERT_TRUE(m.record_success("a", 1ns, T(0s)));
  EXPECT_EQ(m.status("a", T(0s)), PeerStatus::kDown);
  EXPECT_EQ(ids(m.select(2, T(0s))), (std::vector<std::string>{"c"}));
}

TEST(PeerManager, TopologyFromClusterShards) {
  std::vector<ClusterNode> nodes{
      {"m1", "10.0.0.1", 6380, "master", "online"},
      {"r1", "10.0.0.2", 6380, "replica", "online"},
      {"r2", "10.0.0.3", 6380, "replica", "loading"},
      {"r3", "10.0.0.4", 6380, "replica", "failed"},
      {"m1", "10.0.0.1", 6380, "master", "online"},  // listed again in a second shard
  };
  const TopologyUpdate t = topology_from_cluster_nodes(7, nodes);
  ASSERT_EQ(t.peers.size(), 4u);
  PeerManager m;
  ASSERT_TRUE(*m.apply(t));
  EXPECT_EQ(m.topology_version(), 7u);
  std::vector<std::string> write{"write"}, read{"read"};
  EXPECT_EQ(ids(m.select(3, write, T(0s))), (std::vector<std::string>{"m1"}));
  auto readers = ids(m.select(4, read, T(0s)));
  ASSERT_EQ(readers.size(), 3u);  // r3 is down
  EXPECT_EQ(readers.back(), "r2");  // loading: suspect, after the healthy ones
  EXPECT_EQ(m.status("r3", T(0s)), PeerStatus::kDown);
}

TEST(PeerManager, BadInputIsRefusedAndChangesNothing) {
  PeerManager::Options o;
  o.max_peers = 3;
  PeerManager m(o);
  std::vector<PeerSpec> good{spec("a")};
  ASSERT_TRUE(m.set_static(good));
  std::vector<PeerSpec> dup{spec("x"), spec("x")};
  auto r = m.set_static(dup);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, PeerErrc::kDuplicatePeer);
  EXPECT_NE(r.error().message.find("'x'"), std::string::npos);
  std::vector<PeerSpec> empty_id{spec("")};
  EXPECT_EQ(m.set_static(empty_id).error().code, PeerErrc::kInvalidPeer);
  std::vector<PeerSpec> no_port{PeerSpec{"p", "h", 0, {}, PeerStatus::kUp}};
  r = m.set_static(no_port);
  EXPECT_EQ(r.error().code, PeerErrc::kInvalidPeer);
  EXPECT_NE(r.error().message.find("1..65535"), std::string::npos);
  std::vector<PeerSpec> too_many{spec("1"), spec("2"), spec("3"), spec("4")};
  EXPECT_EQ(m.set_static(too_many).error().code, PeerErrc::kTooManyPeers);
  PeerSpec greedy = spec("g");
  for (int i = 0; i < 65; ++i) greedy.capabilities.push_back("cap" + std::to_string(i));
  std::vector<PeerSpec> too_many_caps{greedy};
  r = m.set_static(too_many_caps);
  EXPECT_EQ(r.error().code, PeerErrc::kTooManyCapabilities);
  EXPECT_NE(r.error().message.find("at most 64"), std::string::npos);
  EXPECT_FALSE(m.apply(TopologyUpdate{5, dup}));
  EXPECT_EQ(m.topology_version(), 0u);  // the refused update did not count
  EXPECT_EQ(m.size(), 1u);
  EXPECT_TRUE(m.peer("a", T(0s)).has_value());
}

TEST(PeerManager, FillWithDownOnlyWhenShort) {
  PeerManager::Options o;
  o.fill_with_down = true;
  o.down_after = 1;
  o.suspect_after = 1;
  PeerManager m(o);
  std::vector<PeerSpec> peers{spec("a"), spec("b"), spec("c")};
  ASSERT_TRUE(m.set_static(peers));
  ASSERT_TRUE(m.record_failure("a", T(0s)));
  EXPECT_EQ(ids(m.select(2, T(0s))).size(), 2u);
  for (const auto& p : m.select(2, T(0s))) EXPECT_NE(p.id, "a");
  auto all = m.select(3, T(0s));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all.back().id, "a");
  EXPECT_EQ(all.back().status, PeerStatus::kDown);
}

TEST(PeerManager, EmitsStatusChanges) {
  SignalBus bus;
  auto rec = std::make_shared<SignalRecorder>();
  bus.subscribe(rec);
  PeerManager::Options o;
  o.down_after = 2;
  o.signals = &bus;
  PeerManager m(o);
  std::vector<PeerSpec> peers{spec("a")};
  ASSERT_TRUE(m.set_static(peers));
  ASSERT_TRUE(m.record_failure("a", T(0s)));  // up -> suspect
  ASSERT_TRUE(m.record_failure("a", T(0s)));  // suspect -> down
  ASSERT_TRUE(m.record_failure("a", T(0s)));  // still down: no event
  ASSERT_TRUE(m.record_success("a", 1ms, T(1s)));  // down -> up
  ASSERT_TRUE(*m.apply(TopologyUpdate{1, {spec("a", {}, PeerStatus::kDown)}}, T(2s)));
  EXPECT_EQ(rec->count("peer_status_changed"), 4u);
  const auto lines = rec->lines();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_NE(lines[1].find("suspect"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("down"), std::string::npos) << lines[1];
}

// ---- properties ----------------------------------------------------------------------------

const std::vector<std::string> kCaps{"primary", "replica", "read", "write"};

struct Op {
  int kind;  // 0 success, 1 failure, 2 advance time
  size_t peer;
  int64_t value_us;
};

struct Scenario {
  std::vector<PeerSpec> peers;
  std::vector<Op> ops;
  std::vector<std::string> required;
  size_t k;
  PeerManager::Options options;
};

rc::Gen<Scenario> scenario_gen() {
  return rc::gen::exec([] {
    Scenario s;
    const size_t n = *rc::gen::inRange<size_t>(1, 12);
    for (size_t i = 0; i < n; ++i) {
      PeerSpec p = spec("n" + std::to_string(i));
      for (const auto& c : kCaps) {
        if (*rc::gen::inRange(0, 2) == 1) p.capabilities.push_back(c);
      }
      const int rep = *rc::gen::inRange(0, 8);
      p.reported = rep == 0 ? PeerStatus::kDown : rep == 1 ? PeerStatus::kSuspect : PeerStatus::kUp;
      s.peers.push_back(std::move(p));
    }
    const size_t nops = *rc::gen::inRange<size_t>(0, 60);
    for (size_t i = 0; i < nops; ++i) {
      s.ops.push_back(Op{*rc::gen::inRange(0, 3), *rc::gen::inRange<size_t>(0, n),
                         *rc::gen::inRange<int64_t>(0, 5'000'000)});
    }
    for (const auto& c : kCaps) {
      if (*rc::gen::inRange(0, 4) == 0) s.required.push_back(c);
    }
    s.k = *rc::gen::inRange<size_t>(1, n + 2);
    s.options.fill_with_down = *rc::gen::arbitrary<bool>();
    s.options.tie_break_seed = *rc::gen::inRange<uint64_t>(0, 4);
    s.options.down_after = *rc::gen::inRange<uint32_t>(1, 4);
    s.options.suspect_after = *rc::gen::inRange<uint32_t>(1, s.options.down_after + 1);
    return s;
  });
}

Instant run(PeerManager& m, const Scenario& s) {
  Instant now{};
  for (const auto& op : s.ops) {
    const auto& id = s.peers[op.peer].id;
    if (op.kind == 0) {
      RC_ASSERT(m.record_success(id, std::chrono::microseconds(op.value_us), now).has_value());
    } else if (op.kind == 1) {
      RC_ASSERT(m.record_failure(id, now).has_value());
    } else {
      now += std::chrono::microseconds(op.value_us);
    }
  }
  return now;
}

bool has_all(const std::vector<std::string>& caps, const std::vector<std::string>& need) {
  return std::all_of(need.begin(), need.end(), [&](const std::string& c) {
    return std::find(caps.begin(), caps.end(), c) != caps.end();
  });
}

RC_GTEST_PROP(PeerManagerProps, NeverDownWhileEnoughHealthyAndRespectsCapabilities, ()) {
  const Scenario s = *scenario_gen();
  PeerManager m(s.options);
  RC_ASSERT(m.set_static(s.peers).has_value());
  const Instant now = run(m, s);
  const auto chosen = m.select(s.k, s.required, now);

  size_t capable_live = 0, capable = 0;
  for (const auto& p : s.peers) {
    if (!has_all(p.capabilities, s.required)) continue;
    ++capable;
    if (m.status(p.id, now) != PeerStatus::kDown) ++capable_live;
  }
  RC_ASSERT(chosen.size() <= s.k);
  // Exactly as many as are available (down ones only count with fill_with_down).
  const size_t available = s.options.fill_with_down ? capable : capable_live;
  RC_ASSERT(chosen.size() == std::min(s.k, available));
  size_t down_chosen = 0;
  for (const auto& p : chosen) {
    RC_ASSERT(has_all(p.capabilities, s.required));
    if (p.status == PeerStatus::kDown) ++down_chosen;
  }
  if (capable_live >= s.k) RC_ASSERT(down_chosen == 0u);
  // Ordered: up before suspect before down; and no duplicates.
  for (size_t i = 1; i < chosen.size(); ++i) {
    RC_ASSERT(static_cast<int>(chosen[i - 1].status) <= static_cast<int>(chosen[i].status));
    RC_ASSERT(chosen[i - 1].id != chosen[i].id);
  }
  // No peer left out is strictly better (healthier) than one that was chosen.
  if (!chosen.empty()) {
    for (const auto& p : s.peers) {
      if (!has_all(p.capabilities, s.required)) continue;
      bool picked = std::any_of(chosen.begin(), chosen.end(),
                                [&](const PeerView& v) { return v.id == p.id; });
      if (!picked) {
        RC_ASSERT(static_cast<int>(m.status(p.id, now)) >=
                  static_cast<int>(chosen.back().status));
      }
    }
  }
}

RC_GTEST_PROP(PeerManagerProps, DeterministicWhateverTheInputOrder, ()) {
  const Scenario s = *scenario_gen();
  PeerManager a(s.options), b(s.options);
  std::vector<PeerSpec> reversed(s.peers.rbegin(), s.peers.rend());
  RC_ASSERT(a.set_static(s.peers).has_value());
  RC_ASSERT(b.set_static(reversed).has_value());
  const Instant now = run(a, s);
  RC_ASSERT(run(b, s) == now);
  RC_ASSERT(ids(a.select(s.k, s.required, now)) == ids(b.select(s.k, s.required, now)));
  RC_ASSERT(ids(a.select(s.k, s.required, now)) == ids(a.select(s.k, s.required, now)));
}

TEST(PickLeastLoaded, LeastBusyOfTheFirstSpreadTiesToTheBetterRanked) {
  const std::vector<size_t> load{3, 1, 1, 0};
  EXPECT_EQ(pick_least_loaded(load, 1), 0u);  // spread 1: always the best
  EXPECT_EQ(pick_least_loaded(load, 2), 1u);
  EXPECT_EQ(pick_least_loaded(load, 3), 1u);  // tie between 1 and 2: the better ranked
  EXPECT_EQ(pick_least_loaded(load, 4), 3u);
  EXPECT_EQ(pick_least_loaded(load, 100), 3u);
  EXPECT_EQ(pick_least_loaded(load, 0), 0u);  // treated as 1
  EXPECT_EQ(pick_least_loaded({}, 2), 0u);
}

RC_GTEST_PROP(PickLeastLoadedProps, MatchesANaiveMinimum, (std::vector<uint8_t> raw, uint8_t spread)) {
  std::vector<size_t> load(raw.begin(), raw.end());
  const size_t got = pick_least_loaded(load, spread);
  if (load.empty()) {
    RC_ASSERT(got == 0u);
    return;
  }
  const size_t n = std::min<size_t>(load.size(), std::max<size_t>(spread, 1));
  size_t want = 0;
  for (size_t i = 0; i < n; ++i)
    if (load[i] < load[want]) want = i;
  RC_ASSERT(got == want);
}

}  // namespace
}  // namespace keel::sdk

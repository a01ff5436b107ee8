// Three drivers (real transport, real record logs in temp dirs) in one process over loopback.
#include "runtime/cluster/driver.h"

#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "base/random.h"
#include "free_port.h"

namespace keel::cluster {
namespace {

// Appends every command; the reply names its position. Snapshot = the whole list.
class ListMachine final : public StateMachine {
 public:
  std::string apply(uint64_t, std::string_view c) override {
    std::lock_guard l(mu);
    items.emplace_back(c);
    return "pos=" + std::to_string(items.size());
  }
  std::string snapshot() const override {
    std::lock_guard l(mu);
    std::string s;
    for (auto& i : items) s += i + "\n";
    return s;
  }
  Status restore(std::string_view st) override {
    std::lock_guard l(mu);
    items.clear();
    while (!st.empty()) {
      auto nl = st.find('\n');
      items.emplace_back(st.substr(0, nl));
      st.remove_prefix(nl + 1);
    }
    return {};
  }
  std::vector<std::string> copy() const {
    std::lock_guard l(mu);
    return items;
  }
  mutable std::mutex mu;
  std::vector<std::string> items;
};

using testing::free_port;

struct Cluster {
  std::string root;
  std::vector<PeerAddress> members;
  std::vector<std::shared_ptr<ListMachine>> sms;
  std::vector<std::unique_ptr<Driver>> drivers;

  explicit Cluster(uint64_t snapshot_every = 10000, uint64_t snapshot_log_bytes = 64u << 20,
                   int64_t request_timeout_ms = 3000, int64_t suspect_after_ms = 100)
      : snapshot_every_(snapshot_every), snapshot_log_bytes_(snapshot_log_bytes),
        request_timeout_ms_(request_timeout_ms), suspect_after_ms_(suspect_after_ms) {
    root = std::filesystem::temp_directory_path() / ("keel-driver-" + std::to_string(system_seed()));
    for (uint32_t i = 1; i <= 3; ++i) members.push_back({i, "127.0.0.1", free_port()});
    sms.resize(3);
    drivers.resize(3);
    for (int i = 0; i < 3; ++i) start(i);
  }
  ~Cluster() {
    for (auto& d : drivers) d.reset();
    std::filesystem::remove_all(root);
  }
  void start(int i) {
    DriverOptions o;
    o.node_id = members[i].id;
    o.cluster_id = "test";
    o.members = members;
    o.peer_port = members[i].port;
    o.data_dir = root + "/n" + std::to_string(i + 1);
    o.request_timeout_ms = request_timeout_ms_;
    o.heartbeat_ms = 20;
    o.suspect_after_ms = suspect_after_ms_;
    o.dead_after_ms = suspect_after_ms_ * 3;
    o.snapshot_every = snapshot_every_;
    o.snapshot_log_bytes = snapshot_log_bytes_;
    o.span_sink = [this, id = o.node_id](observe::SpanData s) {
      std::lock_guard l(spans_mu);
      spans.emplace_back(id, std::move(s));
    };
    sms[i] = std::make_shared<ListMachine>();
    drivers[i] = std::make_unique<Driver>(o, sms[i]);
    auto p = drivers[i]->start();
    ASSERT_TRUE(p) << p.error().message;
  }
  void stop(int i) { drivers[i].reset(); }

  Result<std::string> put(int i, std::string cmd) {
    std::promise<Result<std::string>> p;
    drivers[i]->submit(std::move(cmd), [&](Result<std::string> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  Result<std::string> put_traced(int i, std::string cmd, const observe::TraceParent& trace) {
    std::promise<Result<std::string>> p;
    drivers[i]->submit(std::move(cmd), [&](Result<std::string> r) { p.set_value(std::move(r)); }, trace);
    return p.get_future().get();
  }
  // The spans recorded so far, with the id of the node that recorded each.
  std::vector<std::pair<uint32_t, observe::SpanData>> spans_copy() {
    std::lock_guard l(spans_mu);
    return spans;
  }
  std::mutex spans_mu;
  std::vector<std::pair<uint32_t, observe::SpanData>> spans;
  // Retries while the cluster is still forming (links not up yet): bounded.
  Result<std::string> put_eventually(int i, const std::string& cmd) {
    Result<std::string> r;
    for (int k = 0; k < 200; ++k) {
      r = put(i, cmd);
      if (r || r.error().message.find("no quorum") == std::string::npos) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return r;
  }
  // Every node sees a quorum (links up, heartbeats heard): bounded wait.
  // Waits with a deadline of about 30 s: a loaded 2-core machine (CI beside builds) once took
  // more than 10 s to form the first quorum.
  bool all_quorum() {
    for (int k = 0; k < 3000; ++k) {
      bool ok = true;
      for (auto& d : drivers) ok &= d && d->status().quorum;
      if (ok) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  bool converged(const std::vector<int>& nodes, size_t n) {
    for (int k = 0; k < 3000; ++k) {
      bool ok = true;
      for (int i : nodes) ok &= sms[i]->copy().size() >= n;
      if (ok) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  uint64_t snapshot_every_;
  uint64_t snapshot_log_bytes_;
  int64_t request_timeout_ms_;
  int64_t suspect_after_ms_;
};

TEST(Driver, WritesThroughAnyNodeApplyInOneOrderEverywhere) {
  Cluster c;
  ASSERT_TRUE(c.all_quorum());
  ASSERT_TRUE(c.put(0, "warmup"));
  std::vector<std::thread> ts;
  for (int n = 0; n < 3; ++n)
    ts.emplace_back([&, n] {
      for (int k = 0; k < 30; ++k) {
        auto r = c.put(n, "n" + std::to_string(n) + "-" + std::to_string(k));
        EXPECT_TRUE(r) << r.error().message;
      }
    });
  for (auto& t : ts) t.join();
  ASSERT_TRUE(c.converged({0, 1, 2}, 91));
  EXPECT_EQ(c.sms[0]->copy(), c.sms[1]->copy());
  EXPECT_EQ(c.sms[0]->copy(), c.sms[2]->copy());
  auto st = c.drivers[0]->status();
  EXPECT_TRUE(st.quorum);
  EXPECT_GE(st.slots_decided, 1u);
  EXPECT_EQ(st.members.size(), 3u);
}

TEST(Driver, MinorityDownKeepsWritingMajorityDownFailsFastThenRecovers) {
  Cluster c;
  ASSERT_TRUE(c.all_quorum());
  ASSERT_TRUE(c.put(0, "a"));
  c.stop(2);
  // 2 of 3 still decide. (Right after start a link may still be settling — CI saw "1 of 3
  // members reachable" 40 ms in — so the write is retried while it is refused, bounded.)
  ASSERT_TRUE(c.put_eventually(0, "b"));
  c.stop(1);
  // Wait until node 1 sees the others gone (link closed), then writes fail with "no quorum".
  Result<std::string> r;
  for (int k = 0; k < 200; ++k) {
    r = c.put(0, "c");
    if (!r && r.error().code == Errc::kUnavailable) break;  // (kTimeout: submitted as node 2 left)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnavailable);
  EXPECT_NE(r.error().message.find("no quorum"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("was not applied"), std::string::npos) << r.error().message;
  // Node 2 comes back from its log: writes succeed again and it holds a, b.
  c.start(1);
  ASSERT_TRUE(c.put_eventually(0, "d"));
  ASSERT_TRUE(c.converged({1}, 3));
  auto n2 = c.sms[1]->copy();
  auto n1 = c.sms[0]->copy();
  ASSERT_GE(n1.size(), 3u);
  EXPECT_EQ(n1[0], "a");
  EXPECT_EQ(n1[1], "b");
  EXPECT_EQ(std::vector<std::string>(n2.begin(), n2.begin() + 3), std::vector<std::string>(n1.begin(), n1.begin() + 3));
  // Node 3 restarts after missing writes and catches up.
  c.start(2);
  ASSERT_TRUE(c.converged({2}, n1.size()));
  auto n3 = c.sms[2]->copy();
  EXPECT_EQ(std::vector<std::string>(n3.begin(), n3.begin() + n1.size()), n1);
}

TEST(Driver, ASubmittedRequestThatTimesOutHasAnUnknownOutcomeAndMayStillApply) {
  // The failure detector is slower than the request deadline, so mute peers still count as
  // reachable: the request is submitted, then not decided in time.
  Cluster c(10000, 64u << 20, /*request_timeout_ms=*/300, /*suspect_after_ms=*/5000);
  ASSERT_TRUE(c.all_quorum());
  ASSERT_TRUE(c.put(0, "a"));
  // Nodes 2 and 3 freeze (their driver threads block): their links stay up, they answer nothing.
  std::promise<void> thaw;
  std::shared_future<void> thawed = thaw.get_future().share();
  c.drivers[1]->post([thawed] { thawed.wait(); });
  c.drivers[2]->post([thawed] { thawed.wait(); });
  auto r = c.put(0, "b");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kTimeout) << r.error().message;
  EXPECT_NE(r.error().message.find("outcome unknown"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("may still be applied"), std::string::npos) << r.error().message;
  // It was submitted: once the peers answer, it is decided and applied everywhere.
  thaw.set_value();
  ASSERT_TRUE(c.converged({0, 1, 2}, 2));
  EXPECT_EQ(c.sms[0]->copy(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.sms[1]->copy(), c.sms[0]->copy());
  EXPECT_EQ(c.drivers[0]->status().requests_timed_out, 1u);
}

// Tracing (driver.h, "Tracing"): a submission with a sampled trace context is one span on the
// node that proposed it, a child of the request's span, whatever its outcome.
observe::TraceParent sampled_parent(uint8_t seed) {
  observe::TraceParent p;
  p.trace_id = observe::trace_id_from(0x1111000000000000ull + seed, 0x2222);
  p.span_id = observe::span_id_from(0x3333000000000000ull + seed);
  p.flags = observe::kFlagSampled;
  return p;
}

std::optional<observe::Attribute> attr(const observe::SpanData& s, std::string_view key) {
  for (auto& a : s.attributes)
    if (a.key == key) return a;
  return std::nullopt;
}
std::string str_attr(const observe::SpanData& s, std::string_view key) {
  auto a = attr(s, key);
  return a && std::holds_alternative<std::string>(a->value) ? std::get<std::string>(a->value) : std::string("<none>");
}
int64_t int_attr(const observe::SpanData& s, std::string_view key) {
  auto a = attr(s, key);
  return a && std::holds_alternative<int64_t>(a->value) ? std::get<int64_t>(a->value) : -1;
}

TEST(Driver, ATracedSubmissionIsASpanFromProposedToAppliedOnTheProposingNode) {
  Cluster c;
  ASSERT_TRUE(c.all_quorum());
  ASSERT_TRUE(c.put(0, "untraced"));
  observe::TraceParent unsampled = sampled_parent(9);
  unsampled.flags = 0;
  ASSERT_TRUE(c.put_traced(1, "unsampled", unsampled));
  EXPECT_TRUE(c.spans_copy().empty()) << "only sampled submissions make spans";

  const auto parent = sampled_parent(1);
  auto r = c.put_traced(1, "traced", parent);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(c.converged({0, 1, 2}, 3));
  auto spans = c.spans_copy();
  ASSERT_EQ(spans.size(), 1u) << "one span, on the node that proposed (not on the others that applied it)";
  auto& [node, s] = spans[0];
  EXPECT_EQ(node, 2u);
  EXPECT_EQ(s.name, "keel.rabia.decision");
  EXPECT_EQ(s.kind, observe::kSpanKindInternal);
  EXPECT_EQ(s.trace_id, parent.trace_id);
  EXPECT_EQ(s.parent_span_id, parent.span_id);
  EXPECT_FALSE(observe::is_zero(s.span_id));
  EXPECT_NE(s.span_id, parent.span_id);
  EXPECT_EQ(s.status_code, observe::kStatusUnset);
  EXPECT_EQ(str_attr(s, "keel.rabia.outcome"), "decided");
  EXPECT_EQ(str_attr(s, "keel.rabia.kind"), "write");
  EXPECT_EQ(int_attr(s, "keel.node_id"), 2);
  EXPECT_EQ(int_attr(s, "keel.rabia.members"), 3);
  // The slot that decided it: the third command, so at least slot 2 (null slots may come first).
  EXPECT_GE(int_attr(s, "keel.rabia.slot"), 2);
  EXPECT_GE(int_attr(s, "keel.rabia.slot"), int_attr(s, "keel.rabia.first_slot"));
  EXPECT_EQ(int_attr(s, "keel.rabia.slots_waited"), int_attr(s, "keel.rabia.slot") - int_attr(s, "keel.rabia.first_slot"));
  EXPECT_GE(int_attr(s, "keel.rabia.batch_requests"), 1);
  EXPECT_LE(s.start_unix_ns, s.end_unix_ns);
  ASSERT_EQ(s.events.size(), 2u);
  EXPECT_EQ(s.events[0].name, "keel.rabia.proposed");
  EXPECT_EQ(s.events[1].name, "keel.rabia.applied");
  EXPECT_LE(s.start_unix_ns, s.events[0].time_unix_ns);
  EXPECT_LE(s.events[0].time_unix_ns, s.events[1].time_unix_ns);
  EXPECT_LE(s.events[1].time_unix_ns, s.end_unix_ns);
}

TEST(Driver, ATracedSubmissionRefusedForWantOfAQuorumIsAnErrorSpanSayingSo) {
  Cluster c;
  ASSERT_TRUE(c.all_quorum());
  ASSERT_TRUE(c.put(0, "a"));
  c.stop(1);
  c.stop(2);
  Result<std::string> r;
  for (int k = 0; k < 200; ++k) {
    r = c.put_traced(0, "b", sampled_parent(2));
    if (!r && r.error().code == Errc::kUnavailable) break;  // (kTimeout: submitted as the links went)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(r);
  ASSERT_EQ(r.error().code, Errc::kUnavailable) << r.error().message;
  auto spans = c.spans_copy();
  ASSERT_FALSE(spans.empty());
  auto& s = spans.back().second;  // the refused one (earlier tries may have timed out)
  EXPECT_EQ(str_attr(s, "keel.rabia.outcome"), "no_quorum");
  EXPECT_EQ(s.status_code, observe::kStatusError);
  EXPECT_EQ(s.status_message, r.error().message);
  EXPECT_EQ(int_attr(s, "keel.rabia.slot"), -1) << "never decided";
  EXPECT_TRUE(s.events.empty()) << "never proposed";
  for (auto& [node, sp] : spans) {
    auto o = str_attr(sp, "keel.rabia.outcome");
    EXPECT_TRUE(o == "no_quorum" || o == "timeout") << o;
  }
}

TEST(Driver, ATracedSubmissionNotDecidedInTimeIsATimeoutSpanWithAnUnknownOutcome) {
  Cluster c(10000, 64u << 20, /*request_timeout_ms=*/300, /*suspect_after_ms=*/5000);
  ASSERT_TRUE(c.all_quorum());
  ASSERT_TRUE(c.put(0, "a"));
  std::promise<void> thaw;
  std::shared_future<void> thawed = thaw.get_future().share();
  c.drivers[1]->post([thawed] { thawed.wait(); });
  c.drivers[2]->post([thawed] { thawed.wait(); });
  auto r = c.put_traced(0, "b", sampled_parent(3));
  thaw.set_value();
  ASSERT_FALSE(r);
  ASSERT_EQ(r.error().code, Errc::kTimeout);
  auto spans = c.spans_copy();
  ASSERT_EQ(spans.size(), 1u);
  auto& s = spans[0].second;
  EXPECT_EQ(str_attr(s, "keel.rabia.outcome"), "timeout");
  EXPECT_EQ(s.status_code, observe::kStatusError);
  EXPECT_NE(s.status_message.find("outcome unknown"), std::string::npos) << s.status_message;
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_EQ(s.events[0].name, "keel.rabia.proposed") << "it was proposed, then not decided in time";
  // Decided afterwards: no second span (the request's span already ended with its answer).
  ASSERT_TRUE(c.converged({0, 1, 2}, 2));
  EXPECT_EQ(c.spans_copy().size(), 1u);
}

TEST(Driver, SnapshotsTruncateTheLogAndRestartRestoresState) {
  Cluster c(/*snapshot_every=*/5);
  ASSERT_TRUE(c.all_quorum());
  ASSERT_TRUE(c.put(0, "x0"));
  for (int k = 1; k < 40; ++k) {
    auto r = c.put(k % 3, "x" + std::to_string(k));
    ASSERT_TRUE(r) << r.error().message;
  }
  ASSERT_TRUE(c.converged({0, 1, 2}, 40));
  auto before = c.sms[1]->copy();
  c.stop(1);
  c.start(1);
  auto after = c.sms[1]->copy();
  EXPECT_EQ(after, before);  // rebuilt from snapshot + decided log, before any peer message
  ASSERT_TRUE(c.put_eventually(1, "y"));
}

TEST(Driver, TheLogIsBoundedInBytesAsWellAsSlots) {
  // Snapshots by slot count never come here; by bytes they do, and keep the log small.
  const uint64_t limit = 16 * 1024;
  Cluster c(/*snapshot_every=*/1'000'000, limit);
  ASSERT_TRUE(c.all_quorum());
  const std::string big(1000, 'v');
  const int n = 120;
  for (int k = 0; k < n; ++k) {
    auto r = c.put(k % 3, "k" + std::to_string(k) + big);
    ASSERT_TRUE(r) << r.error().message;
  }
  ASSERT_TRUE(c.converged({0, 1, 2}, n));
  // Each 1 KB command is logged at least twice (proposal and decision): 240 KB without
  // byte-bounded snapshots. With them the log is the last snapshot (the state, ~120 KB) plus at
  // most about one limit's worth of records.
  for (auto& d : c.drivers) EXPECT_LT(d->status().log_bytes, n * 1100 + 2 * limit);
  // A state larger than the limit is not snapshotted at every slot: about one snapshot per
  // limit's worth of new records (~2 KB logged per command).
  for (auto& d : c.drivers) {
    auto s = d->status();
    EXPECT_GE(s.snapshots_written, 1u);
    EXPECT_LE(s.snapshots_written, n * 2200 / limit + 2);
  }
  auto before = c.sms[2]->copy();
  c.stop(2);
  c.start(2);
  EXPECT_EQ(c.sms[2]->copy(), before);
}

TEST(Driver, SettingsUnderWhichAMessageCouldOutgrowAFrameAreRefusedAtStart) {
  auto root = std::filesystem::temp_directory_path() / ("keel-driver-limits-" + std::to_string(system_seed()));
  auto try_start = [&](auto tweak) {
    DriverOptions o;
    o.node_id = 1;
    o.members = {{1, "127.0.0.1", 0}};
    o.peer_port = 0;
    o.data_dir = root.string();
    tweak(o);
    Driver d(o, std::make_shared<ListMachine>());
    return d.start();
  };
  auto big_batch = try_start([](DriverOptions& o) { o.max_frame_bytes = 1 << 20; });  // batch 8 MiB
  ASSERT_FALSE(big_batch);
  EXPECT_EQ(big_batch.error().code, Errc::kInvalidArgument);
  EXPECT_NE(big_batch.error().message.find("above the peer frame limit of 1048576 bytes"), std::string::npos)
      << big_batch.error().message;
  auto small_batch = try_start([](DriverOptions& o) { o.max_batch_bytes = o.max_command_bytes; });
  ASSERT_FALSE(small_batch);
  EXPECT_NE(small_batch.error().message.find("cannot hold one command"), std::string::npos) << small_batch.error().message;
  auto ok = try_start([](DriverOptions&) {});
  EXPECT_TRUE(ok) << ok.error().message;
  std::filesystem::remove_all(root);
}

TEST(Driver, ACommandAboveTheLimitIsRefusedWithItsSizeAndTheLimit) {
  Cluster c;
  ASSERT_TRUE(c.all_quorum());
  const size_t limit = DriverOptions{}.max_command_bytes;
  auto r = c.put(0, std::string(limit + 1, 'x'));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kLimitExceeded);
  EXPECT_NE(r.error().message.find(fmt::format("command of {} bytes exceeds the limit of {} bytes", limit + 1, limit)),
            std::string::npos)
      << r.error().message;
  auto at = c.put(0, std::string(limit, 'y'));  // exactly the limit: replicated
  ASSERT_TRUE(at) << at.error().message;
  ASSERT_TRUE(c.converged({0, 1, 2}, 1));
  EXPECT_EQ(c.sms[2]->copy().back().size(), limit);
  EXPECT_EQ(c.drivers[0]->status().commands_too_large, 1u);
}

}  // namespace
}  // namespace keel::cluster

// Three MetaServices (driver + versioned map) in one process over loopback.
#include "runtime/cluster/meta_service.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <future>
#include <thread>

#include "base/random.h"
#include "runtime/cluster/kv_machine.h"
#include "meta/store.h"
#include "free_port.h"

namespace keel::cluster {
namespace {

using testing::free_port;

template <class T, class F>
Result<T> call(F f) {
  std::promise<Result<T>> p;
  f([&](Result<T> r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

struct Trio {
  std::string root = std::filesystem::temp_directory_path() / ("keel-meta-" + std::to_string(system_seed()));
  std::vector<DriverOptions> opts;
  std::vector<std::unique_ptr<MetaService>> s;
  explicit Trio(std::function<void(DriverOptions&)> tweak = {}) {
    std::vector<PeerAddress> members;
    for (uint32_t i = 1; i <= 3; ++i) members.push_back({i, "127.0.0.1", free_port()});
    for (int i = 0; i < 3; ++i) {
      DriverOptions o;
      o.node_id = members[i].id;
      o.members = members;
      o.peer_port = members[i].port;
      o.data_dir = root + "/n" + std::to_string(i);
      o.heartbeat_ms = 20;
      o.suspect_after_ms = 100;
      o.dead_after_ms = 300;
      if (tweak) tweak(o);
      opts.push_back(o);
      s.push_back(std::make_unique<MetaService>(o));
      auto p = s.back()->start();
      EXPECT_TRUE(p) << p.error().message;
    }
    wait_quorum();
  }
  void wait_quorum() {
    for (int k = 0; k < 1000; ++k) {
      bool ok = true;
      for (auto& m : s) ok &= !m || m->status().quorum;
      if (ok) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~Trio() {
    s.clear();
    std::filesystem::remove_all(root);
  }
  Result<WriteResult> put(int i, std::string k, std::string v, std::optional<uint64_t> prev = {}) {
    return call<WriteResult>([&](auto cb) { s[i]->put("app", k, v, prev, cb); });
  }  // Retries a refusal for want of a quorum (a loaded machine delays heartbeats): bounded.
  Result<WriteResult> put_eventually(int i, const std::string& k, const std::string& v) {
    Result<WriteResult> r;
    for (int n = 0; n < 200; ++n) {
      r = put(i, k, v);
      if (r || r.error().message.find("no quorum") == std::string::npos) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return r;
  }
};

TEST(MetaService, PutGetCasDeleteListAcrossNodes) {
  Trio t;
  auto w = t.put(0, "app/a", "1");
  ASSERT_TRUE(w) << w.error().message;
  EXPECT_EQ(w->version, 1u);
  for (int i = 0; i < 3; ++i) {
    auto g = call<KeyValue>([&](auto cb) { t.s[i]->get("app", "app/a", false, cb); });
    ASSERT_TRUE(g) << g.error().message;
    EXPECT_EQ(g->value, "1");
    EXPECT_EQ(g->version, 1u);
  }
  auto cas_bad = t.put(1, "app/a", "2", 7);
  ASSERT_FALSE(cas_bad);
  EXPECT_EQ(cas_bad.error().code, Errc::kConflict);
  EXPECT_NE(cas_bad.error().message.find("is at version 1, expected 7"), std::string::npos) << cas_bad.error().message;
  auto cas_ok = t.put(1, "app/a", "2", 1);
  ASSERT_TRUE(cas_ok);
  EXPECT_EQ(cas_ok->version, 2u);
  auto create_only = t.put(2, "app/a", "3", 0);
  ASSERT_FALSE(create_only);
  ASSERT_TRUE(t.put(2, "app/b", "x", 0));
  auto l = call<ListResult>([&](auto cb) { t.s[2]->list("app", "app/", 100, false, cb); });
  ASSERT_TRUE(l);
  ASSERT_EQ(l->items.size(), 2u);
  EXPECT_EQ(l->items[0].key, "app/a");
  EXPECT_EQ(l->items[0].value, "2");
  auto d = call<WriteResult>([&](auto cb) { t.s[0]->del("app", "app/a", std::nullopt, cb); });
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->existed);
  auto g = call<KeyValue>([&](auto cb) { t.s[1]->get("app", "app/a", false, cb); });
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Errc::kNotFound);
}

TEST(MetaService, WatchReturnsEventsFromARevisionAndLongPolls) {
  Trio t;
  auto w1 = t.put(0, "cfg/x", "1");
  ASSERT_TRUE(w1);
  ASSERT_TRUE(t.put(1, "other/y", "1"));
  ASSERT_TRUE(t.put(2, "cfg/x", "2"));
  // Node 1 may not have applied the last write yet when it is asked (the write was answered by
  // node 2): a watch returns what this node has, and the client asks again from where it is.
  std::vector<std::string> values;
  auto from = w1->revision;
  Result<WatchResult> r;
  for (int calls = 0; values.size() < 2; ++calls) {
    ASSERT_LT(calls, 10);
    r = call<WatchResult>([&](auto cb) { t.s[1]->watch("app", "cfg/", from, 5000, cb); });
    ASSERT_TRUE(r) << r.error().message;
    for (const auto& e : r->events) values.push_back(e.kv.value);
    from = r->revision + 1;
  }
  EXPECT_EQ(values, (std::vector<std::string>{"1", "2"}));
  // Long-poll: nothing yet after the latest revision; a write on another node wakes it.
  std::promise<Result<WatchResult>> p;
  t.s[2]->watch("app", "cfg/", r->revision + 1, 20000, [&](Result<WatchResult> x) { p.set_value(std::move(x)); });
  ASSERT_TRUE(t.put(0, "cfg/z", "new"));
  auto woke = p.get_future().get();
  ASSERT_TRUE(woke);
  ASSERT_EQ(woke->events.size(), 1u);
  EXPECT_EQ(woke->events[0].kv.key, "cfg/z");
}

// A subscriber's view, fed on the driver thread and read by the test thread.
struct Follower {
  std::mutex mu;
  std::vector<MetaUpdate> updates;
  std::map<std::string, std::string> view;
  std::vector<std::pair<uint64_t, std::string>> changes;  // (revision, "put k=v" / "del k")
  uint64_t revision = 0;
  bool out_of_order = false;
  SubscribeCallback cb() {
    return [this](const MetaUpdate& u) {
      std::lock_guard l(mu);
      updates.push_back(u);
      if (u.reset) {
        view.clear();
        for (auto& kv : u.contents) view[kv.key] = kv.value;
      }
      for (auto& e : u.events) {
        out_of_order |= e.kv.mod_revision <= revision;
        revision = e.kv.mod_revision;
        changes.emplace_back(e.kv.mod_revision, e.deleted ? "del " + e.kv.key : "put " + e.kv.key + "=" + e.kv.value);
        if (e.deleted) view.erase(e.kv.key);
        else view[e.kv.key] = e.kv.value;
      }
      revision = u.revision;
    };
  }
  // Bounded wait until the view reached `rev`.
  bool reaches(uint64_t rev) {
    for (int k = 0; k < 1000; ++k) {
      {
        std::lock_guard l(mu);
        if (revision >= rev) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

std::map<std::string, std::string> listed(MetaService& m, const std::string& prefix) {
  auto l = call<ListResult>([&](auto cb) { m.list("app", prefix, 100000, false, cb); });
  EXPECT_TRUE(l);
  std::map<std::string, std::string> out;
  if (l)
    for (auto& kv : l->items) out[kv.key] = kv.value;
  return out;
}

TEST(MetaService, SubscribeDeliversEveryChangeOfItsPrefixInOrder) {
  Trio t;
  ASSERT_TRUE(t.put_eventually(0, "svc/pre", "0"));
  // Node 2 subscribes; its first update is its state then. A linearizable read through it
  // first makes that state include the put made through node 1 (without it, a loaded machine
  // once let the subscription start before node 2 had applied the put).
  ASSERT_TRUE(call<KeyValue>([&](auto cb) { t.s[1]->get("app", "svc/pre", false, cb); }));
  Follower f;
  auto sub = t.s[1]->subscribe("app", "svc/", f.cb());
  ASSERT_TRUE(sub) << sub.error().message;
  ASSERT_TRUE(f.reaches(1));
  std::vector<Result<WriteResult>> w;
  w.push_back(t.put_eventually(0, "svc/a", "1"));
  w.push_back(t.put_eventually(2, "other/x", "1"));  // outside the prefix
  w.push_back(t.put_eventually(1, "svc/b", "2"));
  w.push_back(t.put_eventually(2, "svc/a", "3"));
  w.push_back(call<WriteResult>([&](auto cb) { t.s[0]->del("app", "svc/pre", std::nullopt, cb); }));
  for (auto& r : w) ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(f.reaches(w.back()->revision));
  std::lock_guard l(f.mu);
  EXPECT_TRUE(f.updates.front().reset);
  ASSERT_EQ(f.updates.front().contents.size(), 1u);
  EXPECT_EQ(f.updates.front().contents[0].key, "svc/pre");
  EXPECT_FALSE(f.out_of_order);
  std::vector<std::pair<uint64_t, std::string>> want = {{w[0]->revision, "put svc/a=1"},
                                                        {w[2]->revision, "put svc/b=2"},
                                                        {w[3]->revision, "put svc/a=3"},
                                                        {w[4]->revision, "del svc/pre"}};
  EXPECT_EQ(f.changes, want);
  for (size_t i = 1; i < f.updates.size(); ++i) EXPECT_FALSE(f.updates[i].reset) << "update " << i;
}

TEST(MetaService, ACatchUpBySnapshotLargerThanAFrameYieldsAResetWithTheFullContents) {
  // Small frames and chunks: a state of ~40 KiB is larger than a 16 KiB frame, so node 3 can
  // only catch up by a chunked snapshot (peers keep 2 decisions after each snapshot).
  Trio t([](DriverOptions& o) {
    o.snapshot_every = 5;
    o.log_retain = 2;
    o.max_frame_bytes = 16 << 10;
    o.max_batch_bytes = 12 << 10;
    o.max_command_bytes = 4 << 10;
    o.snapshot_chunk_bytes = 4 << 10;
  });
  ASSERT_TRUE(t.put_eventually(0, "svc/early", "e"));
  t.s[2].reset();  // node 3 stops
  const std::string big(1000, 'v');
  Result<WriteResult> last;
  for (int i = 0; i < 40; ++i) {
    last = t.put_eventually(i % 2, "svc/k" + std::to_string(i), big + std::to_string(i));
    ASSERT_TRUE(last) << last.error().message;
  }
  // A command above the limit is refused at submission, with its size and the limit.
  auto huge = t.put_eventually(0, "svc/huge", std::string(5000, 'x'));
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code, Errc::kLimitExceeded);
  EXPECT_NE(huge.error().message.find("exceeds the limit of 4096 bytes"), std::string::npos) << huge.error().message;
  // Node 3 restarts with a subscription made before start: a reset from its own log first,
  // then a reset from the installed snapshot holding everything written while it was down.
  t.s[2] = std::make_unique<MetaService>(t.opts[2]);
  Follower f;
  auto sub = t.s[2]->subscribe("app", "svc/", f.cb());
  ASSERT_TRUE(sub) << sub.error().message;
  auto p = t.s[2]->start();
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_TRUE(f.reaches(last->revision));
  auto want = listed(*t.s[0], "svc/");
  ASSERT_EQ(want.size(), 41u);
  {
    std::lock_guard l(f.mu);
    EXPECT_EQ(f.view, want);
    // First: node 3's own state (its log ends before the writes it missed).
    ASSERT_TRUE(f.updates.front().reset);
    EXPECT_LE(f.updates.front().contents.size(), 1u);
    // Then the install: a reset holding exactly the writes the peers' snapshot covers, which
    // were made in order: svc/early and svc/k0 .. svc/k(m-1), each with its value.
    const MetaUpdate* install = nullptr;
    for (size_t i = 1; i < f.updates.size(); ++i)
      if (f.updates[i].reset) install = &f.updates[i];
    ASSERT_NE(install, nullptr) << "no reset after the snapshot install";
    ASSERT_GE(install->contents.size(), 20u);
    std::map<std::string, std::string> expect{{"svc/early", "e"}};
    for (size_t i = 0; i + 1 < install->contents.size(); ++i)
      expect["svc/k" + std::to_string(i)] = big + std::to_string(i);
    std::map<std::string, std::string> got;
    for (auto& kv : install->contents) got[kv.key] = kv.value;
    EXPECT_EQ(got, expect);
  }
  auto st = t.s[2]->status();
  EXPECT_GE(st.snapshots_installed, 1u);
  EXPECT_GE(st.snapshot_chunks_received, 2u);
  for (auto& m : t.s) EXPECT_EQ(m->status().messages_oversized, 0u);
  // And it keeps following: a later write arrives as an event.
  auto after = t.put_eventually(0, "svc/after", "x");
  ASSERT_TRUE(after);
  ASSERT_TRUE(f.reaches(after->revision));
  std::lock_guard l(f.mu);
  EXPECT_EQ(f.view["svc/after"], "x");
  EXPECT_FALSE(f.updates.back().reset);
}

TEST(MetaMachine, RepliesCarryOutcomesAndSnapshotRestores) {
  MetaMachine m;
  meta::Command c;
  c.op = meta::Command::Op::kPut;
  c.put = {"app", "k", "v"};
  auto rep = decode_reply(m.apply(1, meta::encode(c)));
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->revision, 1u);
  EXPECT_EQ(rep->version, 1u);
  auto rep2 = decode_reply(m.apply(2, meta::encode(c)));
  ASSERT_TRUE(rep2);
  EXPECT_EQ(rep2->version, 2u);
  EXPECT_TRUE(rep2->existed);
  auto bad = decode_reply(m.apply(3, "garbage"));
  ASSERT_FALSE(bad);
  MetaMachine n;
  ASSERT_TRUE(n.restore(m.snapshot()));
  EXPECT_EQ(n.store().get("app", "k")->value, "v");
  EXPECT_EQ(n.store().revision(), 2u);
}

}  // namespace
}  // namespace keel::cluster

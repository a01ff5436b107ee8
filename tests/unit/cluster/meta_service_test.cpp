// Three MetaServices (driver + versioned map) in one process over loopback.
#include "runtime/cluster/meta_service.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "base/random.h"
#include "runtime/cluster/kv_machine.h"
#include "meta/store.h"

namespace keel::cluster {
namespace {

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

template <class T, class F>
Result<T> call(F f) {
  std::promise<Result<T>> p;
  f([&](Result<T> r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

struct Trio {
  std::string root = std::filesystem::temp_directory_path() / ("keel-meta-" + std::to_string(system_seed()));
  std::vector<std::unique_ptr<MetaService>> s;
  Trio() {
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
      s.push_back(std::make_unique<MetaService>(o));
      auto p = s.back()->start();
      EXPECT_TRUE(p) << p.error().message;
    }
    for (int k = 0; k < 1000; ++k) {
      bool ok = true;
      for (auto& m : s) ok &= m->status().quorum;
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

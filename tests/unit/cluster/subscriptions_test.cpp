// SubscriptionHub against a plain meta::Store: what a subscriber sees after changes, after
// falling behind the kept history, and after the store is replaced by a snapshot.
#include "runtime/cluster/subscriptions.h"

#include <gtest/gtest.h>

#include <map>

#include "meta/store.h"

namespace keel::cluster {
namespace {

meta::Command put(std::string d, std::string k, std::string v) {
  meta::Command c;
  c.op = meta::Command::Op::kPut;
  c.put = {std::move(d), std::move(k), std::move(v)};
  return c;
}
meta::Command del(std::string d, std::string k) {
  meta::Command c;
  c.op = meta::Command::Op::kDelete;
  c.del = {std::move(d), std::move(k)};
  return c;
}

// A subscriber that materializes what it is told, as a component would.
struct Follower {
  std::vector<MetaUpdate> updates;
  std::map<std::string, std::string> view;
  uint64_t revision = 0;
  SubscribeCallback cb() {
    return [this](const MetaUpdate& u) {
      updates.push_back(u);
      if (u.reset) {
        view.clear();
        for (auto& kv : u.contents) view[kv.key] = kv.value;
      }
      for (auto& e : u.events) {
        EXPECT_GT(e.kv.mod_revision, revision) << "events out of order or repeated";
        revision = e.kv.mod_revision;
        if (e.deleted)
          view.erase(e.kv.key);
        else
          view[e.kv.key] = e.kv.value;
      }
      EXPECT_GE(u.revision, revision);
      revision = u.revision;
    };
  }
};

std::map<std::string, std::string> contents(const meta::Store& s, const std::string& d,
                                            const std::string& p) {
  std::map<std::string, std::string> out;
  for (auto& kv : s.list_all(d, p)) out[kv.key] = kv.value;
  return out;
}

TEST(Subscriptions, StartWithAResetThenDeliverEveryChangeOfThePrefixInOrder) {
  meta::Store store;
  ASSERT_TRUE(store.apply(put("routing", "svc/a", "0")));
  SubscriptionHub hub(8);
  Follower f;
  auto s = hub.make("routing", "svc/", 0, f.cb());
  ASSERT_TRUE(s);
  hub.attach(*s);
  Subscription handle(*s);
  hub.deliver(store);
  ASSERT_EQ(f.updates.size(), 1u);
  EXPECT_TRUE(f.updates[0].reset);
  ASSERT_EQ(f.updates[0].contents.size(), 1u);
  EXPECT_EQ(f.updates[0].contents[0].key, "svc/a");
  EXPECT_EQ(f.updates[0].revision, 1u);

  ASSERT_TRUE(store.apply(put("routing", "svc/b", "1")));  // rev 2
  ASSERT_TRUE(store.apply(put("routing", "other", "x")));  // rev 3: outside the prefix
  ASSERT_TRUE(store.apply(put("cache", "svc/b", "y")));    // rev 4: another domain
  ASSERT_TRUE(store.apply(put("routing", "svc/a", "2")));  // rev 5
  hub.deliver(store);
  ASSERT_TRUE(store.apply(del("routing", "svc/b")));  // rev 6
  hub.deliver(store);
  hub.deliver(store);  // nothing new: no update
  ASSERT_EQ(f.updates.size(), 3u);
  ASSERT_EQ(f.updates[1].events.size(), 2u);
  EXPECT_FALSE(f.updates[1].reset);
  EXPECT_EQ(f.updates[1].events[0].kv.key, "svc/b");
  EXPECT_EQ(f.updates[1].events[0].kv.mod_revision, 2u);
  EXPECT_EQ(f.updates[1].events[1].kv.key, "svc/a");
  EXPECT_EQ(f.updates[1].events[1].kv.mod_revision, 5u);
  EXPECT_EQ(f.updates[1].events[1].kv.version, 2u);
  EXPECT_EQ(f.updates[1].revision, 5u);
  ASSERT_EQ(f.updates[2].events.size(), 1u);
  EXPECT_TRUE(f.updates[2].events[0].deleted);
  EXPECT_EQ(f.updates[2].events[0].kv.mod_revision, 6u);
  EXPECT_EQ(f.view, contents(store, "routing", "svc/"));
}

TEST(Subscriptions, AStoreReplacedByASnapshotYieldsAResetWithItsContents) {
  // The node's store before and after installing a peer's snapshot.
  meta::Store before;
  ASSERT_TRUE(before.apply(put("parts", "p/1", "n1")));
  ASSERT_TRUE(before.apply(put("parts", "p/2", "n2")));
  meta::Store peer;
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(peer.apply(put("parts", "p/" + std::to_string(i % 7), "v" + std::to_string(i))));
  ASSERT_TRUE(peer.apply(del("parts", "p/2")));
  ASSERT_TRUE(peer.apply(put("parts", "q/elsewhere", "z")));
  auto installed = meta::Store::restore(peer.snapshot());
  ASSERT_TRUE(installed);

  SubscriptionHub hub(8);
  Follower f;
  auto s = hub.make("parts", "p/", 0, f.cb());
  ASSERT_TRUE(s);
  hub.attach(*s);
  Subscription handle(*s);
  hub.deliver(before);
  ASSERT_EQ(f.view.size(), 2u);
  hub.reset_all();  // what the driver's on_installed hook does
  hub.deliver(*installed);
  ASSERT_EQ(f.updates.size(), 2u);
  EXPECT_TRUE(f.updates[1].reset);
  EXPECT_EQ(f.updates[1].revision, installed->revision());
  EXPECT_EQ(f.view, contents(*installed, "parts", "p/"));
  EXPECT_EQ(f.view.count("p/2"), 0u);  // deleted on the peer: gone, not left over from before
  EXPECT_EQ(f.view.size(), 6u);
  // Changes after the install arrive as events again.
  ASSERT_TRUE(installed->apply(put("parts", "p/9", "new")));
  hub.deliver(*installed);
  ASSERT_EQ(f.updates.size(), 3u);
  EXPECT_FALSE(f.updates[2].reset);
  EXPECT_EQ(f.view, contents(*installed, "parts", "p/"));
}

TEST(Subscriptions, ASubscriberBehindTheKeptHistoryGetsAReset) {
  meta::Store store(meta::Limits{.max_history = 4});
  SubscriptionHub hub(8);
  Follower f;
  auto s = hub.make("d", "", 0, f.cb());
  ASSERT_TRUE(s);
  hub.attach(*s);
  Subscription handle(*s);
  hub.deliver(store);
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(store.apply(put("d", "k" + std::to_string(i % 3), std::to_string(i))));
  hub.deliver(store);
  ASSERT_EQ(f.updates.size(), 2u);
  EXPECT_TRUE(f.updates[1].reset);
  EXPECT_EQ(f.updates[1].revision, 10u);
  EXPECT_EQ(f.view, contents(store, "d", ""));
}

TEST(Subscriptions, FromARevisionInHistoryStartsWithItsChangesAndCancelStopsDelivery) {
  meta::Store store;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store.apply(put("d", "k" + std::to_string(i), "v")));
  SubscriptionHub hub(1);
  std::vector<MetaUpdate> got;
  Subscription handle;
  auto s = hub.make("d", "k", 3, [&](const MetaUpdate& u) {
    got.push_back(u);
    handle.cancel();  // from inside the callback
  });
  ASSERT_TRUE(s);
  // The limit counts live subscriptions.
  auto over = hub.make("d", "", 0, [](const MetaUpdate&) {});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, Errc::kLimitExceeded);
  EXPECT_NE(over.error().message.find("limit 1"), std::string::npos) << over.error().message;
  hub.attach(*s);
  handle = Subscription(*s);
  hub.deliver(store);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].reset);
  ASSERT_EQ(got[0].events.size(), 3u);
  EXPECT_EQ(got[0].events[0].kv.mod_revision, 3u);
  EXPECT_FALSE(handle.active());
  ASSERT_TRUE(store.apply(put("d", "k9", "v")));
  hub.deliver(store);
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(hub.size(), 0u);  // the cancelled subscription was dropped and its slot freed
  EXPECT_TRUE(hub.make("d", "", 0, [](const MetaUpdate&) {}));
  auto bad = hub.make("Bad Domain", "", 0, [](const MetaUpdate&) {});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("allowed"), std::string::npos);
}

}  // namespace
}  // namespace keel::cluster

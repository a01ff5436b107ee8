// KeyEvents behind the effect recorder: which writes make a WATCH fail (Redis 7's rules) and
// which keys become ready for blocked clients, in the order they blocked.
#include <gtest/gtest.h>

#include "base/slots.h"
#include "dht/effect.h"
#include "frontends/resp/key_events.h"
#include "storage/memory/memory_engine.h"

namespace keel::resp {
namespace {

constexpr uint32_t kParts = 8;

struct Fixture {
  Fixture() {
    storage::EngineConfig c;
    c.kind = storage::EngineConfig::Kind::kMemory;
    c.partitions = kParts;
    rec = std::make_unique<dht::EffectRecorder>(storage::make_memory_engine(c, 1), kParts);
    events.set_partitions(kParts);
    rec->set_key_observer(&events);
  }
  uint32_t p(std::string_view key) const { return key_partition(key, kParts); }
  void set(std::string_view key, std::string_view v, int64_t expire_at = 0, int64_t now = 1000) {
    ASSERT_TRUE(rec->set_string(p(key), key, v, expire_at, now));
  }
  // WATCH as the server does it: look the key up, then register.
  std::shared_ptr<WatchFlag> watch(std::string_view key, int64_t now = 1000) {
    auto flag = std::make_shared<WatchFlag>();
    bool existed = rec->get(p(key), key, now).has_value();
    events.watch(key, flag, existed);
    return flag;
  }
  std::unique_ptr<dht::EffectRecorder> rec;
  KeyEvents events;
};

TEST(KeyEvents, NothingObservedWithoutWatchersOrBlockedClients) {
  Fixture f;
  EXPECT_FALSE(f.events.interested);
  auto flag = f.watch("a");
  EXPECT_TRUE(f.events.interested);
  f.events.unwatch("a", flag.get());
  EXPECT_FALSE(f.events.interested);
  EXPECT_EQ(f.events.watched_keys(), 0u);
}

TEST(KeyEvents, EveryKindOfWriteToAWatchedKeyMarksItDirty) {
  Fixture f;
  f.set("k", "1");
  auto flag = f.watch("k");
  auto other = f.watch("other");
  f.set("unrelated", "x");
  EXPECT_FALSE(flag->dirty);
  f.set("k", "1");  // the same value is still a write (Redis touches the key)
  EXPECT_TRUE(flag->dirty);
  EXPECT_FALSE(other->dirty);

  flag = f.watch("k2");
  ASSERT_TRUE(f.rec->update(f.p("k2"), "k2", 1000, [](storage::Value*, storage::Value*) {
    return storage::UpdateAction::kKeep;  // no change
  }));
  EXPECT_FALSE(flag->dirty);
  ASSERT_TRUE(f.rec->update(f.p("k2"), "k2", 1000, [](storage::Value*, storage::Value* s) {
    s->str = "v";
    return storage::UpdateAction::kWrite;
  }));
  EXPECT_TRUE(flag->dirty);

  flag = f.watch("k2");
  ASSERT_TRUE(f.rec->erase(f.p("k2"), "k2", 1000));
  EXPECT_TRUE(flag->dirty);

  flag = f.watch("b1");
  std::vector<storage::Engine::BatchOp> ops;
  ops.push_back({f.p("b1"), "b1", storage::Value{}});
  ASSERT_TRUE(f.rec->write_batch(std::move(ops), 1000));
  EXPECT_TRUE(flag->dirty);
}

TEST(KeyEvents, ExpiryOfALiveWatchedKeyIsAChangeOfAnExpiredOneIsNot) {
  Fixture f;
  f.set("live", "v", 2000);
  auto live = f.watch("live");
  EXPECT_FALSE(f.rec->get(f.p("live"), "live", 3000));  // lazily expired
  EXPECT_TRUE(live->dirty);

  f.set("stale", "v", 1500);
  auto stale = f.watch("stale", 1600);  // already expired when watched
  EXPECT_FALSE(f.rec->get(f.p("stale"), "stale", 3000));
  EXPECT_FALSE(stale->dirty);
}

TEST(KeyEvents, FlushTouchesOnlyTheWatchedKeysItRemoves) {
  Fixture f;
  f.set("present", "v");
  auto present = f.watch("present");
  auto absent = f.watch("absent");
  ASSERT_TRUE(f.rec->clear());
  EXPECT_TRUE(present->dirty);
  EXPECT_FALSE(absent->dirty);
}

TEST(KeyEvents, AWriteToAKeyWithBlockedClientsMakesItReadyOnce) {
  Fixture f;
  int scheduled = 0;
  f.events.on_ready = [&] { ++scheduled; };
  auto first = std::make_shared<BlockedClient>();
  auto second = std::make_shared<BlockedClient>();
  f.events.block("q", first);
  f.events.block("q", second);
  f.set("elsewhere", "x");
  EXPECT_FALSE(f.events.has_ready());
  f.set("q", "a");
  f.set("q", "b");
  EXPECT_EQ(scheduled, 1);
  auto k = f.events.next_ready();
  ASSERT_TRUE(k);
  EXPECT_EQ(*k, "q");
  EXPECT_FALSE(f.events.next_ready());
  // First blocked, first in line; a client claimed elsewhere leaves the line.
  auto* line = f.events.waiters("q");
  ASSERT_TRUE(line);
  EXPECT_EQ(line->front(), first);
  ASSERT_TRUE(first->try_claim());
  EXPECT_FALSE(first->try_claim());  // served once only
  line = f.events.waiters("q");
  ASSERT_TRUE(line);
  EXPECT_EQ(line->front(), second);
  f.events.unblock("q", second.get());
  EXPECT_EQ(f.events.waiters("q"), nullptr);
  EXPECT_EQ(f.events.blocked_keys(), 0u);
  EXPECT_FALSE(f.events.interested);
}

TEST(KeyEvents, OpeningTheGateRunsWhatWaitedUntilSomeoneClosesItAgain) {
  KeyEvents ev;
  std::vector<int> ran;
  ev.gate.held = true;
  ev.gate.waiting.emplace_back([&] { ran.push_back(1); });
  ev.gate.waiting.emplace_back([&] {
    ran.push_back(2);
    ev.gate.held = true;  // a transaction takes the gate
  });
  ev.gate.waiting.emplace_back([&] { ran.push_back(3); });
  ev.open_gate();
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
  EXPECT_TRUE(ev.gate.held);
  ev.open_gate();
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
  EXPECT_FALSE(ev.gate.held);
}

}  // namespace
}  // namespace keel::resp

#include "keel/signals.h"

#include <gtest/gtest.h>

#include <set>

namespace keel::sdk {
namespace {

TEST(Signals, BusDeliversToSubscribersUntilUnsubscribed) {
  SignalBus bus;
  EXPECT_FALSE(bus.active());
  int a = 0, b = 0;
  auto ida = bus.subscribe([&](const Signal&) { ++a; });
  auto idb = bus.subscribe([&](const Signal& s) {
    if (std::holds_alternative<RequestDenied>(s)) ++b;
  });
  EXPECT_TRUE(bus.active());
  EXPECT_EQ(bus.listener_count(), 2u);
  emit_signal(&bus, [] { return RequestDenied{"l", "k", Duration(5), Instant{}}; });
  emit_signal(&bus, [] { return ConfigApplied{"p", 1, Instant{}}; });
  EXPECT_EQ(a, 2);
  EXPECT_EQ(b, 1);
  EXPECT_TRUE(bus.unsubscribe(ida));
  EXPECT_FALSE(bus.unsubscribe(ida));
  emit_signal(&bus, [] { return ConfigApplied{"p", 2, Instant{}}; });
  EXPECT_EQ(a, 2);
  EXPECT_TRUE(bus.unsubscribe(idb));
  EXPECT_FALSE(bus.active());
}

TEST(Signals, NullBusAndIdleBusBuildNothing) {
  int built = 0;
  emit_signal(nullptr, [&] {
    ++built;
    return ConfigApplied{"p", 1, Instant{}};
  });
  SignalBus bus;
  emit_signal(&bus, [&] {
    ++built;
    return ConfigApplied{"p", 1, Instant{}};
  });
  EXPECT_EQ(built, 0);
}

TEST(Signals, EveryTypeHasANameAndADescription) {
  std::vector<Signal> all = {
      BreakerTransition{"b", BreakerState::kClosed, BreakerState::kOpen, "why", 60, 0, Instant{}},
      CallNotPermitted{"b", BreakerState::kOpen, Duration(1), Instant{}},
      RetryScheduled{"r", 1, Duration(2), Instant{}},
      RetryGaveUp{"r", 3, GiveUpReason::kBudget, Instant{}},
      RequestDenied{"l", "", Duration(3), Instant{}},
      BulkheadRejected{"h", 1, 2, false, Instant{}},
      TimeoutExpired{"t", Duration(4), Instant{}},
      FallbackUsed{"f", "a", "b", 1, Instant{}},
      HedgeFired{"h", 1, Duration(5), Instant{}},
      ConfigApplied{"c", 1, Instant{}},
      ConfigRejected{"c", "bad", 2, Instant{}},
      ConfigRolledBack{"c", 2, 1, Instant{}},
      ConfigStateChanged{"c", ConfigState::kLoading, ConfigState::kHealthy, Instant{}},
      PeerStatusChanged{"p", "up", "down", Instant{}},
  };
  ASSERT_EQ(all.size(), std::variant_size_v<Signal>);
  std::set<std::string_view> names;
  for (const auto& s : all) {
    names.insert(signal_name(s));
    EXPECT_FALSE(describe_signal(s).empty());
  }
  EXPECT_EQ(names.size(), all.size());
  EXPECT_EQ(describe_signal(all[0]), "breaker_transition b CLOSED->OPEN why");
}

}  // namespace
}  // namespace keel::sdk

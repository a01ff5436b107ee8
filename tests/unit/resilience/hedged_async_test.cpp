// keel::client::hedged: hedged requests on Asio coroutines. Time is a ManualClock that the
// copies advance; the tests wait for events (the io_context running out of work), never for
// time, and assert which copy won and what each copy saw — no durations.
#include "keel/client/hedged.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace keel::client {
namespace {

using namespace std::chrono_literals;
using sdk::Instant;

std::shared_ptr<resilience::HedgePolicy> policy(resilience::HedgeOptions o) {
  auto p = resilience::HedgePolicy::create(std::move(o));
  EXPECT_TRUE(p) << p.error().message;
  return std::move(*p);
}

// What the copies saw; shared with them by value (a shared_ptr), as hedged() requires. The
// callables are named before the co_await (see hedged.h on GCC 12 and temporaries).
struct Log {
  sdk::ManualClock clock;
  std::vector<Instant> started;
  std::vector<bool> aborted;      // its wait was aborted by Asio cancellation
  std::vector<bool> told;         // HedgeCopy::cancelled() was true when it ended
  bool caller_returned = false;
  bool ended_after_caller = false;
  void ended(uint32_t copy, bool was_aborted, bool was_told) {
    aborted.at(copy) = was_aborted;
    told.at(copy) = was_told;
    ended_after_caller = caller_returned;
  }
};

// Waits until cancelled (an hour of timer, aborted by hedged()'s terminal cancellation).
asio::awaitable<void> stall(Log* log, HedgeCopy copy) {
  asio::steady_timer t(co_await asio::this_coro::executor, 1h);
  boost::system::error_code ec;
  try {  // Asio's default (throw_if_cancelled) throws at a co_await once the copy is cancelled
    co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  } catch (const boost::system::system_error& e) {
    ec = e.code();
  }
  log->ended(copy.index(), ec == asio::error::operation_aborted, copy.cancelled());
}

TEST(Hedged, TheHedgeWinsAndTheStalledOriginalIsCancelledAfterTheCallerReturned) {
  asio::io_context io;
  auto log = std::make_shared<Log>();
  auto p = policy({.name = "get", .max_hedges = 2, .delay = 30ms});
  std::optional<Result<std::string>> out;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    std::string local = "caller frame";  // the copies do not reference it
    auto copy_fn = [log](HedgeCopy copy) -> asio::awaitable<Result<std::string>> {
      log->started.push_back(log->clock.now());
      log->aborted.push_back(false);
      log->told.push_back(false);
      if (copy.index() == 0) {
        log->clock.advance(30ms);  // the original is slow: the hedge becomes due
        co_await stall(log.get(), copy);
        co_return make_error(Errc::kTimeout, "stalled");
      }
      co_return "copy " + std::to_string(copy.index());
    };
    out = co_await hedged(*p, copy_fn, log->clock);
    log->caller_returned = true;
  }, asio::detached);
  io.run();  // returns once the loser, too, has ended
  ASSERT_TRUE(out && *out) << (out ? (*out).error().to_string() : "no result");
  EXPECT_EQ(**out, "copy 1");
  EXPECT_EQ(log->started, (std::vector<Instant>{Instant{}, Instant{} + 30ms}));  // no third copy
  EXPECT_TRUE(log->aborted[0]);
  EXPECT_TRUE(log->told[0]);
  EXPECT_TRUE(log->ended_after_caller);
  EXPECT_EQ(p->current_delay(), 30ms);
}

TEST(Hedged, AFastOriginalIsNotHedgedAndItsLatencyFeedsThePolicy) {
  asio::io_context io;
  auto log = std::make_shared<Log>();
  auto p = policy({.name = "get", .max_hedges = 1, .delay = 30ms, .percentile = 50, .window = 8});
  std::vector<Result<int>> outs;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 4; ++i) {
      auto copy_fn = [log](HedgeCopy copy) -> asio::awaitable<Result<int>> {
        log->started.push_back(log->clock.now());
        log->clock.advance(12ms);
        co_return static_cast<int>(copy.index());
      };
      outs.push_back(co_await hedged(*p, copy_fn, log->clock));
    }
  }, asio::detached);
  io.run();
  ASSERT_EQ(outs.size(), 4u);
  for (auto& r : outs) EXPECT_EQ(r, 0);
  EXPECT_EQ(log->started.size(), 4u);  // one copy per call
  EXPECT_EQ(p->current_delay(), 12ms);  // the p50 of the originals' latencies
}

TEST(Hedged, EveryCopyFailingGivesTheOriginalsErrorAndTheBudgetBoundsHedges) {
  asio::io_context io;
  auto log = std::make_shared<Log>();
  resilience::RetryBudget budget({.ratio = 0, .initial_tokens = 1, .max_tokens = 1});
  auto p = policy({.name = "get", .max_hedges = 3, .delay = 10ms, .budget = &budget});
  std::optional<Result<int>> out;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto copy_fn = [log](HedgeCopy copy) -> asio::awaitable<Result<int>> {
      log->started.push_back(log->clock.now());
      if (copy.index() == 0) {
        log->clock.advance(100ms);  // every hedge is due; the budget allows one
        // yield until the hedge has ended, so the original ends last but is still the answer
        while (log->started.size() < 2) co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        co_return make_error(Errc::kIoError, "original failed");
      }
      co_return make_error(Errc::kIoError, "hedge failed");
    };
    out = co_await hedged(*p, copy_fn, log->clock);
  }, asio::detached);
  io.run();
  ASSERT_TRUE(out && !*out);
  EXPECT_EQ((*out).error().message, "original failed");
  EXPECT_EQ(log->started.size(), 2u);
  EXPECT_EQ(budget.tokens(), 0);
}

TEST(Hedged, CancellingTheCallerCancelsEveryCopy) {
  asio::io_context io;
  auto log = std::make_shared<Log>();
  auto p = policy({.name = "get", .max_hedges = 1, .delay = 10ms});
  asio::cancellation_signal caller;
  std::optional<Result<int>> out;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto copy_fn = [log, &caller, &io](HedgeCopy copy) -> asio::awaitable<Result<int>> {
      log->started.push_back(log->clock.now());
      log->aborted.push_back(false);
      log->told.push_back(false);
      if (copy.index() == 0) log->clock.advance(10ms);
      else asio::post(io, [&caller] { caller.emit(asio::cancellation_type::terminal); });  // the test's own
      co_await stall(log.get(), copy);
      co_return make_error(Errc::kTimeout, "stalled");
    };
    out = co_await hedged(*p, copy_fn, log->clock);
  }, asio::bind_cancellation_slot(caller.slot(), asio::detached));
  io.run();
  ASSERT_TRUE(out && !*out);
  EXPECT_EQ((*out).error().code, Errc::kTimeout);
  EXPECT_EQ((*out).error().message, "hedged call cancelled by its caller");
  ASSERT_EQ(log->started.size(), 2u);
  EXPECT_TRUE(log->aborted[0] && log->aborted[1]);
  EXPECT_TRUE(log->told[0] && log->told[1]);
}

}  // namespace
}  // namespace keel::client

// Hedged requests on the asynchronous client: keel::client::hedged() launches copies of one
// request at the times a resilience::HedgePolicy chooses and returns the first success.
//
//   auto get = [conn](keel::client::HedgeCopy) -> asio::awaitable<Result<Reply>> {
//     std::vector<std::string> cmd{"GET", "k"};
//     co_return co_await conn->command(std::move(cmd));
//   };
//   Result<Reply> r = co_await keel::client::hedged(policy, get);
//
// GCC 12 destroys a temporary that has a destructor twice when it is created inside a co_await
// expression (a lambda with captures, a std::vector argument): name such values first, as above.
//
// Header-only; link keel::client and keel::resilience (HedgePolicy lives there — the
// resilience library itself does not depend on Asio).
//
// Pure part: every decision (when copy k is due, the retry budget, max_hedges, which copy won,
// the winner's latency fed back into the policy) is resilience::HedgeRun's, fed with times
// read from `clock`. Effectful part (this header): copies run as coroutines spawned on the
// caller's executor; the caller waits between decisions on a steady_timer that a finishing
// copy cancels to wake it. The timer waits for the `clock` time left until the next decision,
// capped at kHedgePollSlice so that a clock moving on its own (a ManualClock in tests) is
// noticed; the real time waited changes no decision, only how soon it is taken.
//
// Losers and lifetimes: once a copy succeeds, hedged() returns at once. Every other copy is
// told so — HedgeCopy::cancelled() becomes true and a terminal Asio cancellation is emitted to
// it (timers and sockets it awaits are aborted; keel Connection commands are not cancellable
// and simply finish; with Asio's default throw_if_cancelled, the copy's next co_await may
// throw operation_aborted, which hedged() catches) — and its result is dropped when it ends. The copies own everything they
// touch after hedged() returned (the callable, their result slot, the cancellation signal; all
// in one shared state they hold), so nothing of the caller's frame dangles — as long as the
// callable itself captures by value or shared_ptr, never references to the caller's locals.
// If the caller's own coroutine is cancelled, the copies are cancelled the same way and
// hedged() returns kTimeout. If every copy fails, the original's (copy 0's) error is returned.
//
// Threading: like every client object, use it from its executor's thread (a single-threaded
// io_context or a strand). `policy` and `clock` are used only while hedged() is suspended,
// never by copies that outlive it.
#pragma once

#include <algorithm>
#include <atomic>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "keel/client/async.h"
#include "keel/client/error.h"
#include "keel/clock.h"
#include "keel/resilience/hedge.h"

namespace keel::client {

// The longest hedged() waits (real time) before it reads its clock again.
inline constexpr std::chrono::milliseconds kHedgePollSlice{5};

// What each copy is given: its number (0 = the original, k = the k-th hedge) and whether the
// call is already decided (another copy won, or the caller was cancelled).
class HedgeCopy {
 public:
  HedgeCopy(uint32_t index, const std::atomic<bool>* over) : index_(index), over_(over) {}
  uint32_t index() const noexcept { return index_; }
  bool cancelled() const noexcept { return over_->load(std::memory_order_acquire); }

 private:
  uint32_t index_;
  const std::atomic<bool>* over_;  // in the shared state, which outlives every copy
};

namespace detail {

template <class>
inline constexpr bool kIsResult = false;
template <class T>
inline constexpr bool kIsResult<Result<T>> = true;

// Everything the copies touch, shared by them and hedged(): it lives until the last of them.
template <class R, class F>
struct HedgeState : std::enable_shared_from_this<HedgeState<R, F>> {
  HedgeState(asio::any_io_executor e, std::shared_ptr<F> f) : ex(std::move(e)), make(std::move(f)), wake(ex) {}

  asio::any_io_executor ex;
  std::shared_ptr<F> make;
  asio::steady_timer wake;
  std::atomic<bool> over{false};
  std::deque<std::optional<R>> results;              // per copy, once it ended
  std::deque<asio::cancellation_signal> cancels;     // per copy; stable addresses
  std::vector<uint32_t> ends;                        // ended, not yet reported to the run

  static asio::awaitable<void> run_copy(std::shared_ptr<HedgeState> st, uint32_t i) {
    std::optional<R> r;
    try {
      // The call stays out of the co_await expression: GCC 12 may destroy temporaries of a
      // coroutine call inside co_await twice.
      auto copy = (*st->make)(HedgeCopy(i, &st->over));
      r.emplace(co_await std::move(copy));
    } catch (const std::exception& e) {  // e.g. an aborted timer in a cancelled copy
      r.emplace(make_error(Errc::kIoError, std::string("hedge copy failed: ") + e.what()));
    }
    if (st->over.load(std::memory_order_acquire)) co_return;  // decided: the result is dropped
    st->results[i] = std::move(r);
    st->ends.push_back(i);
    st->wake.cancel();  // wakes hedged()
  }

  void launch(uint32_t i) {
    results.emplace_back();
    cancels.emplace_back();
    // Asio keeps the copy's cancellation handler inside cancels[i] for as long as the copy
    // runs, so the state must outlive the copy's whole co_spawn: the completion handler holds
    // it and releases it one executor turn later, after the spawned coroutine is torn down.
    auto self = this->shared_from_this();
    asio::co_spawn(ex, run_copy(self, i),
                   asio::bind_cancellation_slot(cancels.back().slot(), [self](std::exception_ptr) mutable {
                     auto e = self->ex;
                     asio::post(e, [keep = std::move(self)] {});
                   }));
  }

  void cancel_all() {
    over.store(true, std::memory_order_release);
    for (size_t i = 0; i < cancels.size(); ++i)
      if (!results[i]) cancels[i].emit(asio::cancellation_type::terminal);
  }
};

template <class R, class F>
asio::awaitable<R> hedged_run(resilience::HedgePolicy& policy, std::shared_ptr<F> make, const sdk::Clock& clock) {
  static_assert(kIsResult<R>, "make_copy must return asio::awaitable<keel::client::Result<T>>");
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<HedgeState<R, F>>(ex, std::move(make));
  resilience::HedgeRun run(policy, clock.now());
  while (true) {
    for (uint32_t i : st->ends) run.finished(i, st->results[i]->has_value(), clock.now());
    st->ends.clear();
    const sdk::Instant now = clock.now();
    const auto step = run.next(now);
    if (step.kind == resilience::HedgeRun::StepKind::kFinish) break;
    if (step.kind == resilience::HedgeRun::StepKind::kLaunch) {
      st->launch(step.copy);
      continue;
    }
    sdk::Duration wait = kHedgePollSlice;
    if (step.until != sdk::kInstantMax)
      wait = std::clamp<sdk::Duration>(step.until - now, sdk::Duration(0), kHedgePollSlice);
    st->wake.expires_after(wait);
    boost::system::error_code ec;
    co_await st->wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) {
      st->cancel_all();
      co_return make_error(Errc::kTimeout, "hedged call cancelled by its caller");
    }
  }
  st->cancel_all();  // the losers, if any
  if (auto w = run.winner()) co_return std::move(*st->results[*w]);
  co_return std::move(*st->results[0]);
}

}  // namespace detail

// Runs make_copy(HedgeCopy) — returning asio::awaitable<Result<T>> — as a hedged request
// under `policy` (see the top of this header). co_await it from a coroutine on the executor
// the copies should run on. hedged() itself is not a coroutine: it moves make_copy into the
// copies' shared state at once, so a temporary lambda is fine.
template <class F, class R = typename std::invoke_result_t<std::decay_t<F>&, HedgeCopy>::value_type>
asio::awaitable<R> hedged(resilience::HedgePolicy& policy, F&& make_copy, const sdk::Clock& clock) {
  return detail::hedged_run<R>(policy, std::make_shared<std::decay_t<F>>(std::forward<F>(make_copy)), clock);
}

// The same on sdk::SteadyClock (an overload, not a default argument: see async.h).
template <class F, class R = typename std::invoke_result_t<std::decay_t<F>&, HedgeCopy>::value_type>
asio::awaitable<R> hedged(resilience::HedgePolicy& policy, F&& make_copy) {
  return hedged(policy, std::forward<F>(make_copy), sdk::SteadyClock::instance());
}

}  // namespace keel::client

// Bulkhead: at most `max_concurrent` calls in flight; up to `max_queue` more may wait (FIFO)
// for at most their own max_wait. A pure core: it hands out slots and tickets and never
// blocks; WaitingBulkhead (waiting_bulkhead.h) is the helper that blocks a thread on a ticket.
//
// A released slot goes straight to the oldest waiter (no barging), so a waiter cannot starve.
// Thread-safe (one short mutex).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <variant>
#include <vector>

#include "keel/clock.h"
#include "keel/resilience/error.h"
#include "keel/signals.h"

namespace keel::resilience {

using sdk::Duration;
using sdk::Instant;

struct BulkheadOptions {
  std::string name = "bulkhead";
  uint32_t max_concurrent = 16;  // >= 1
  uint32_t max_queue = 0;        // waiters allowed beyond max_concurrent; 0 = never wait
  const sdk::SignalBus* signals = nullptr;
};

class Bulkhead {
 public:
  using Ticket = uint64_t;
  struct Entered {};
  struct Queued {
    Ticket ticket;
    Instant deadline;
  };
  struct Rejected {};
  using Admission = std::variant<Entered, Queued, Rejected>;

  static Result<std::unique_ptr<Bulkhead>> create(BulkheadOptions o);
  explicit Bulkhead(BulkheadOptions o);  // REQUIRES valid options

  // Fast path: a slot now, or false (nothing queued). The slot must be given back by leave().
  bool try_enter(Instant now) noexcept;

  // A slot now, a place in the queue until now + max_wait (when max_wait > 0 and the queue has
  // room), or a refusal (emits sdk::BulkheadRejected).
  Admission enter(Instant now, Duration max_wait);

  // Gives back a slot. When someone waits, the slot passes to the oldest waiter and its
  // ticket is returned (the caller wakes it); otherwise the slot becomes free.
  std::optional<Ticket> leave() noexcept;

  // Has this queued ticket been handed a slot?
  bool granted(Ticket t) const;
  // A waiter gives up (deadline passed, cancelled). Returns true when it was still queued and
  // is now removed; false when it had already been granted a slot, which the caller then owns
  // and must leave(). Emits sdk::BulkheadRejected{wait_expired=true} when it was removed.
  bool abandon(Ticket t, Instant now);
  // Removes every queued ticket whose deadline is <= now; returns them.
  std::vector<Ticket> expire(Instant now);

  uint32_t in_flight() const;
  uint32_t queued() const;
  const BulkheadOptions& options() const noexcept { return o_; }

 private:
  struct Waiter {
    Ticket ticket;
    Instant deadline;
  };
  BulkheadOptions o_;
  mutable std::mutex mu_;
  uint32_t in_flight_ = 0;
  std::deque<Waiter> queue_;
  std::unordered_set<Ticket> granted_;
  Ticket next_ticket_ = 1;
};

}  // namespace keel::resilience

// WaitingBulkhead: the effectful helper around the Bulkhead core, for callers that block a
// thread while they wait for a slot.
#pragma once

#include <condition_variable>
#include <mutex>

#include "keel/resilience/bulkhead.h"

namespace keel::resilience {

// Blocks the calling thread (condition variable with a real-time wait) until a slot is free
// or max_wait passes. `clock` gives the deadline for the core. Thread-safe.
class WaitingBulkhead {
 public:
  WaitingBulkhead(Bulkhead& core, const sdk::Clock& clock) : core_(core), clock_(clock) {}
  // kBulkheadFull when refused or when the wait expires.
  Status enter(Duration max_wait);
  void leave();

 private:
  Bulkhead& core_;
  const sdk::Clock& clock_;
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace keel::resilience

// Timeout: a deadline for a call. Synchronous C++ calls cannot be pre-empted, so the timeout is
// cooperative: the deadline is handed to the call (and to inner retries, which do not schedule
// attempts past it), and a result that arrives after it is replaced by kTimeout.
#pragma once

#include <algorithm>
#include <string>

#include "keel/clock.h"
#include "keel/resilience/error.h"
#include "keel/signals.h"

namespace keel::resilience {

using sdk::Duration;
using sdk::Instant;

class Timeout {
 public:
  // REQUIRES: timeout > 0 (create() checks).
  static Result<Timeout> create(std::string name, Duration timeout,
                                const sdk::SignalBus* signals = nullptr);

  // The deadline of a call starting at `now`, never later than the enclosing `outer` one.
  Instant deadline(Instant now, Instant outer = sdk::kInstantMax) const noexcept {
    if (now > sdk::kInstantMax - timeout_) return outer;
    return std::min(now + timeout_, outer);
  }
  bool expired(Instant deadline, Instant now) const noexcept { return now >= deadline; }
  // The error for a call that ran past its deadline; emits sdk::TimeoutExpired.
  Error on_expired(Instant now) const;

  Duration timeout() const noexcept { return timeout_; }
  const std::string& name() const noexcept { return name_; }

 private:
  Timeout(std::string name, Duration t, const sdk::SignalBus* s)
      : name_(std::move(name)), timeout_(t), signals_(s) {}
  std::string name_;
  Duration timeout_;
  const sdk::SignalBus* signals_;
};

// Runs `call(deadline)` and turns a late result into kTimeout.
template <class F>
auto timeout_call(const Timeout& t, const sdk::Clock& clock, F&& call,
                  Instant outer = sdk::kInstantMax) -> decltype(call(Instant{})) {
  Instant start = clock.now();
  Instant dl = t.deadline(start, outer);
  if (t.expired(dl, start)) return std::unexpected(t.on_expired(start));
  auto r = call(dl);
  Instant end = clock.now();
  if (t.expired(dl, end)) return std::unexpected(t.on_expired(end));
  return r;
}

}  // namespace keel::resilience

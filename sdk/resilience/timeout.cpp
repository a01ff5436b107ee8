#include "keel/resilience/timeout.h"

namespace keel::resilience {

Result<Timeout> Timeout::create(std::string name, Duration timeout, const sdk::SignalBus* signals) {
  if (timeout.count() <= 0)
    return fail(ErrorCode::kInvalidArgument, "timeout '" + name + "': must be > 0, got " +
                                                 std::to_string(timeout.count()) + " ns");
  return Timeout(std::move(name), timeout, signals);
}

Error Timeout::on_expired(Instant now) const {
  sdk::emit_signal(signals_, [&] { return sdk::TimeoutExpired{name_, timeout_, now}; });
  return Error{ErrorCode::kTimeout, "timeout '" + name_ + "' of " + std::to_string(timeout_.count()) + " ns expired", {}};
}

}  // namespace keel::resilience

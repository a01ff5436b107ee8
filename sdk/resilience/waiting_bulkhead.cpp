#include "keel/resilience/waiting_bulkhead.h"

namespace keel::resilience {

Status WaitingBulkhead::enter(Duration max_wait) {
  auto adm = core_.enter(clock_.now(), max_wait);
  if (std::holds_alternative<Bulkhead::Entered>(adm)) return {};
  if (std::holds_alternative<Bulkhead::Rejected>(adm))
    return fail(ErrorCode::kBulkheadFull, "bulkhead '" + core_.options().name + "' is full");
  Bulkhead::Ticket t = std::get<Bulkhead::Queued>(adm).ticket;
  std::unique_lock lk(mu_);
  // Real-time wait: this helper is the effectful shell around the core.
  bool ok = cv_.wait_for(lk, max_wait, [&] { return core_.granted(t); });
  lk.unlock();
  if (ok) {
    core_.abandon(t, clock_.now());  // clears the grant record; returns false: we own the slot
    return {};
  }
  if (core_.abandon(t, clock_.now()))
    return fail(ErrorCode::kBulkheadFull, "bulkhead '" + core_.options().name + "': wait of " +
                                              std::to_string(max_wait.count()) + " ns expired");
  return {};  // granted just as the wait expired: the slot is ours
}

void WaitingBulkhead::leave() {
  if (core_.leave().has_value()) {
    std::lock_guard lk(mu_);
    cv_.notify_all();
  }
}

}  // namespace keel::resilience

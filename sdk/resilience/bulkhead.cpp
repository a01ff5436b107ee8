#include "keel/resilience/bulkhead.h"

#include <algorithm>

namespace keel::resilience {

Result<std::unique_ptr<Bulkhead>> Bulkhead::create(BulkheadOptions o) {
  if (o.max_concurrent < 1 || o.max_concurrent > 1'000'000)
    return fail(ErrorCode::kInvalidArgument, "bulkhead '" + o.name + "': max_concurrent must be in [1, 1e6], got " +
                                                 std::to_string(o.max_concurrent));
  if (o.max_queue > 1'000'000)
    return fail(ErrorCode::kInvalidArgument, "bulkhead '" + o.name + "': max_queue must be in [0, 1e6], got " +
                                                 std::to_string(o.max_queue));
  return std::make_unique<Bulkhead>(std::move(o));
}

Bulkhead::Bulkhead(BulkheadOptions o) : o_(std::move(o)) {}

bool Bulkhead::try_enter(Instant) noexcept {
  std::lock_guard lk(mu_);
  if (in_flight_ < o_.max_concurrent && queue_.empty()) {
    in_flight_++;
    return true;
  }
  return false;
}

Bulkhead::Admission Bulkhead::enter(Instant now, Duration max_wait) {
  std::unique_lock lk(mu_);
  if (in_flight_ < o_.max_concurrent && queue_.empty()) {
    in_flight_++;
    return Entered{};
  }
  if (max_wait.count() > 0 && queue_.size() < o_.max_queue) {
    Ticket t = next_ticket_++;
    Instant deadline = now + max_wait;
    queue_.push_back(Waiter{t, deadline});
    return Queued{t, deadline};
  }
  uint32_t inf = in_flight_, q = static_cast<uint32_t>(queue_.size());
  lk.unlock();
  sdk::emit_signal(o_.signals, [&] { return sdk::BulkheadRejected{o_.name, inf, q, false, now}; });
  return Rejected{};
}

std::optional<Bulkhead::Ticket> Bulkhead::leave() noexcept {
  std::lock_guard lk(mu_);
  if (in_flight_ == 0) return std::nullopt;  // unbalanced leave: ignored rather than underflow
  if (!queue_.empty()) {
    // The slot passes to the oldest waiter: in_flight_ stays the same.
    Ticket t = queue_.front().ticket;
    queue_.pop_front();
    granted_.insert(t);
    return t;
  }
  in_flight_--;
  return std::nullopt;
}

bool Bulkhead::granted(Ticket t) const {
  std::lock_guard lk(mu_);
  return granted_.count(t) != 0;
}

bool Bulkhead::abandon(Ticket t, Instant now) {
  std::unique_lock lk(mu_);
  if (granted_.erase(t) != 0) return false;  // the caller owns a slot now
  auto it = std::find_if(queue_.begin(), queue_.end(), [&](const Waiter& w) { return w.ticket == t; });
  if (it == queue_.end()) return false;
  queue_.erase(it);
  uint32_t inf = in_flight_, q = static_cast<uint32_t>(queue_.size());
  lk.unlock();
  sdk::emit_signal(o_.signals, [&] { return sdk::BulkheadRejected{o_.name, inf, q, true, now}; });
  return true;
}

std::vector<Bulkhead::Ticket> Bulkhead::expire(Instant now) {
  std::vector<Ticket> out;
  {
    std::lock_guard lk(mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->deadline <= now) {
        out.push_back(it->ticket);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    sdk::emit_signal(o_.signals, [&] {
      return sdk::BulkheadRejected{o_.name, in_flight(), queued(), true, now};
    });
  }
  return out;
}

uint32_t Bulkhead::in_flight() const {
  std::lock_guard lk(mu_);
  return in_flight_;
}

uint32_t Bulkhead::queued() const {
  std::lock_guard lk(mu_);
  return static_cast<uint32_t>(queue_.size());
}

}  // namespace keel::resilience

#include "storage/disk_guard.h"

#include <fmt/format.h>

#include <algorithm>

namespace keel::storage {

std::string_view DiskGuard::name(State s) {
  switch (s) {
    case State::kWritable:
      return "ok";
    case State::kLowSpace:
      return "low_space";
    case State::kFailed:
      return "failed";
  }
  return "unknown";
}

void DiskGuard::move_to(State to, std::string reason) {
  if (to == state_ && reason == reason_) return;
  if (to != state_) {
    // Coalesce: a transition not yet taken keeps its origin.
    State from = pending_ ? pending_->from : state_;
    if (from == to)
      pending_.reset();
    else
      pending_ = Transition{from, to, reason};
  }
  state_ = to;
  reason_ = std::move(reason);
}

void DiskGuard::observe_free(uint64_t free_bytes) {
  free_ = free_bytes;
  free_known_ = true;
  if (state_ == State::kFailed) return;  // only recovery leaves kFailed
  if (free_bytes < cfg_.min_free_bytes) {
    if (state_ != State::kLowSpace) {
      no_space_ = true;
      move_to(State::kLowSpace,
              fmt::format(
                  "free space {} bytes is below the reserve of {} bytes (storage.min_free_bytes)",
                  free_bytes, cfg_.min_free_bytes));
    }
    return;
  }
  if (state_ == State::kLowSpace && free_bytes >= cfg_.min_free_bytes + cfg_.hysteresis_bytes) {
    no_space_ = false;
    move_to(State::kWritable, "");
  }
}

void DiskGuard::write_failed(std::string_view reason, bool no_space, int64_t now_ms) {
  ++failures_;
  if (state_ == State::kFailed) return;  // the first failure is the one reported
  no_space_ = no_space;
  next_attempt_ms_ = now_ms + cfg_.retry_interval_ms;
  move_to(State::kFailed, std::string(reason));
}

bool DiskGuard::should_recover(int64_t now_ms) const {
  if (state_ != State::kFailed) return false;
  if (now_ms < next_attempt_ms_) return false;
  // Without a reading of the free space there is nothing to wait for but the retry interval.
  return !free_known_ || free_ >= cfg_.min_free_bytes;
}

void DiskGuard::recovery_done(bool ok, std::string_view reason, int64_t now_ms) {
  if (state_ != State::kFailed) return;
  if (!ok) {
    next_attempt_ms_ = now_ms + cfg_.retry_interval_ms;
    // Keep the first reason unless it said nothing useful.
    if (reason_.empty()) reason_ = std::string(reason);
    return;
  }
  no_space_ = false;
  if (free_known_ && free_ < cfg_.min_free_bytes) {
    no_space_ = true;
    move_to(
        State::kLowSpace,
        fmt::format("free space {} bytes is below the reserve of {} bytes (storage.min_free_bytes)",
                    free_, cfg_.min_free_bytes));
    return;
  }
  move_to(State::kWritable, "");
}

uint64_t DiskGuard::write_budget(unsigned writers, uint64_t cap) const {
  if (state_ != State::kWritable) return 0;
  if (!free_known_) return cap;
  if (free_ <= cfg_.min_free_bytes) return 0;
  uint64_t headroom = free_ - cfg_.min_free_bytes;
  // Half the headroom shared among the writers: each re-reads the free space well before the
  // writers together could reach the reserve.
  return std::min<uint64_t>(cap, headroom / 2 / std::max(1u, writers));
}

std::optional<DiskGuard::Transition> DiskGuard::take_transition() {
  auto t = std::move(pending_);
  pending_.reset();
  return t;
}

}  // namespace keel::storage

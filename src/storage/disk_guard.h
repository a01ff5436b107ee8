// DiskGuard: decides whether the persistent engine may write, from what its shell observes —
// the free space of the data directory's filesystem, write failures, and the outcome of
// recovery attempts. Pure: no clock, no file system; time and observations are arguments, so
// the state machine is unit-tested directly (tests/unit/storage/disk_guard_test.cpp).
//
// States:
//   kWritable  writes go ahead.
//   kLowSpace  free space fell below the reserve (min_free_bytes) before anything failed:
//              writes are refused up front, nothing was lost, the database is healthy. Back to
//              kWritable as soon as free space is at least reserve + hysteresis.
//   kFailed    a write, WAL flush or sync failed (or the node started read-only because the
//              disk was full): the database must be recovered (reopened, the unwritten batches
//              written again) before writes are taken. The shell asks should_recover(now): once
//              free space is at least the reserve, at most every retry_interval_ms.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keel::storage {

struct DiskGuardConfig {
  uint64_t min_free_bytes = 0;    // refuse writes below this much free space (0 = only on errors)
  uint64_t hysteresis_bytes = 0;  // resume from kLowSpace at min_free_bytes + this
  int64_t retry_interval_ms = 1000;  // between recovery attempts in kFailed
};

class DiskGuard {
 public:
  enum class State { kWritable, kLowSpace, kFailed };

  struct Transition {
    State from;
    State to;
    std::string reason;  // why it happened ("" when writable again)
  };

  explicit DiskGuard(DiskGuardConfig config) : cfg_(config) {}

  // A fresh reading of the free space (bytes available to keel).
  void observe_free(uint64_t free_bytes);
  // A write, flush or sync failed. `no_space`: the failure was ENOSPC (or the like).
  void write_failed(std::string_view reason, bool no_space, int64_t now_ms);
  // Whether the shell should attempt recovery now (only in kFailed).
  bool should_recover(int64_t now_ms) const;
  // Recovery was attempted: ok → kWritable (or kLowSpace if space is short again).
  void recovery_done(bool ok, std::string_view reason, int64_t now_ms);

  State state() const { return state_; }
  bool writable() const { return state_ == State::kWritable; }
  // Why writes are refused ("" while writable).
  const std::string& reason() const { return reason_; }
  // Whether the refusal is (or the failure was) for want of space.
  bool no_space() const { return no_space_; }
  uint64_t failures_total() const { return failures_; }
  uint64_t last_free() const { return free_; }
  bool free_known() const { return free_known_; }

  // How many bytes one of `writers` may append before it must look at the free space again:
  // a share of the headroom above the reserve (so writers together stay above it), at most
  // `cap`. 0 while not writable.
  uint64_t write_budget(unsigned writers, uint64_t cap) const;

  // The last state change not yet taken (for one log line per transition).
  std::optional<Transition> take_transition();

  static std::string_view name(State s);

 private:
  void move_to(State to, std::string reason);

  DiskGuardConfig cfg_;
  State state_ = State::kWritable;
  std::string reason_;
  bool no_space_ = false;
  uint64_t free_ = 0;
  bool free_known_ = false;
  uint64_t failures_ = 0;
  int64_t next_attempt_ms_ = 0;
  std::optional<Transition> pending_;
};

}  // namespace keel::storage

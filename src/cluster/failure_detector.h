// A pure failure detector: heartbeats in, member status out. It reads no clock: every call
// carries `now_ms` (a monotonic time the caller owns), so tests drive it with a manual clock.
//
// A member is kAlive while heartbeats arrive; kSuspect once none arrived for suspect_after_ms
// (a missed beat or two: maybe a pause, maybe a crash); kDead after dead_after_ms. Any
// heartbeat brings it back to kAlive. A member never heard from starts kUnknown and becomes
// kSuspect/kDead on the same timeouts counted from when it was added, so a node that never
// comes up is reported, not silently ignored.
//
// A gap between two tick() calls longer than half of suspect_after_ms means this node itself
// was paused (a long disk sync, a stop of the process): heartbeats could not be read, so the
// gap is not held against anyone — every member's silence is counted without it.
//
// Status here is one node's opinion, for operators and for placement decisions; it never
// decides quorums (those come from the configuration, see consensus/rabia).
#pragma once

#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

namespace keel::cluster {

enum class MemberStatus { kUnknown, kAlive, kSuspect, kDead };
std::string_view member_status_name(MemberStatus s);

struct FailureDetectorOptions {
  int64_t suspect_after_ms = 1500;
  int64_t dead_after_ms = 5000;
};

struct StatusChange {
  uint32_t member = 0;
  MemberStatus from = MemberStatus::kUnknown;
  MemberStatus to = MemberStatus::kUnknown;
  friend bool operator==(const StatusChange&, const StatusChange&) = default;
};

class FailureDetector {
 public:
  explicit FailureDetector(FailureDetectorOptions opt = {});

  // Starts watching `member` (no-op if already watched).
  void add(uint32_t member, int64_t now_ms);
  void remove(uint32_t member);
  // A heartbeat (or any frame) from `member`. Returns a change if it was not kAlive.
  // Heartbeats from members not added are ignored (returns empty).
  std::vector<StatusChange> heartbeat(uint32_t member, int64_t now_ms);
  // Re-evaluates timeouts. Returns the members whose status changed, in id order.
  std::vector<StatusChange> tick(int64_t now_ms);

  MemberStatus status(uint32_t member) const;
  // Milliseconds since the last heartbeat (or since add, if none); -1 for unknown members.
  int64_t silence_ms(uint32_t member, int64_t now_ms) const;
  std::vector<uint32_t> members() const;

 private:
  struct Entry {
    int64_t last_heard_ms = 0;
    MemberStatus status = MemberStatus::kUnknown;
  };
  FailureDetectorOptions opt_;
  std::map<uint32_t, Entry> members_;
  int64_t last_tick_ms_ = -1;  // -1: no tick yet
};

}  // namespace keel::cluster

#include "cluster/failure_detector.h"

#include <algorithm>

#include "base/assert.h"

namespace keel::cluster {

std::string_view member_status_name(MemberStatus s) {
  switch (s) {
    case MemberStatus::kUnknown: return "unknown";
    case MemberStatus::kAlive: return "alive";
    case MemberStatus::kSuspect: return "suspect";
    case MemberStatus::kDead: return "dead";
  }
  return "unknown";
}

FailureDetector::FailureDetector(FailureDetectorOptions opt) : opt_(opt) {
  KEEL_ASSERT(opt_.suspect_after_ms > 0);
  KEEL_ASSERT(opt_.dead_after_ms > opt_.suspect_after_ms);
}

void FailureDetector::add(uint32_t member, int64_t now_ms) {
  members_.try_emplace(member, Entry{now_ms, MemberStatus::kUnknown});
}

void FailureDetector::remove(uint32_t member) { members_.erase(member); }

std::vector<StatusChange> FailureDetector::heartbeat(uint32_t member, int64_t now_ms) {
  std::vector<StatusChange> out;
  auto it = members_.find(member);
  if (it == members_.end()) return out;
  // Time never runs backwards for one member: a stale timestamp does not rewind silence.
  if (now_ms > it->second.last_heard_ms) it->second.last_heard_ms = now_ms;
  if (it->second.status != MemberStatus::kAlive) {
    out.push_back({member, it->second.status, MemberStatus::kAlive});
    it->second.status = MemberStatus::kAlive;
  }
  return out;
}

std::vector<StatusChange> FailureDetector::tick(int64_t now_ms) {
  std::vector<StatusChange> out;
  if (last_tick_ms_ >= 0 && now_ms - last_tick_ms_ > opt_.suspect_after_ms / 2) {
    int64_t paused = now_ms - last_tick_ms_;
    for (auto& [id, e] : members_) e.last_heard_ms = std::min(now_ms, e.last_heard_ms + paused);
  }
  last_tick_ms_ = std::max(last_tick_ms_, now_ms);
  for (auto& [id, e] : members_) {
    int64_t silent = now_ms - e.last_heard_ms;
    MemberStatus next = e.status;
    if (silent >= opt_.dead_after_ms) next = MemberStatus::kDead;
    else if (silent >= opt_.suspect_after_ms) next = e.status == MemberStatus::kDead ? MemberStatus::kDead : MemberStatus::kSuspect;
    if (next != e.status) {
      out.push_back({id, e.status, next});
      e.status = next;
    }
  }
  return out;
}

MemberStatus FailureDetector::status(uint32_t member) const {
  auto it = members_.find(member);
  return it == members_.end() ? MemberStatus::kUnknown : it->second.status;
}

int64_t FailureDetector::silence_ms(uint32_t member, int64_t now_ms) const {
  auto it = members_.find(member);
  return it == members_.end() ? -1 : now_ms - it->second.last_heard_ms;
}

std::vector<uint32_t> FailureDetector::members() const {
  std::vector<uint32_t> out;
  for (auto& [id, e] : members_) out.push_back(id);
  return out;
}

}  // namespace keel::cluster

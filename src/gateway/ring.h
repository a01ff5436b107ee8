// Consistent hashing for affinity (gateway.balancer = consistent_hash): a ring hash over a
// route's live instances, and where a request's key comes from (a header, a cookie or a path
// parameter). Pure: no clock, no randomness; every node builds the same ring from the same
// instances, so a key goes to the same instance whichever node routes it.
//
// The ring: each instance gets kPointsPerWeight points per unit of weight, each point at
// hash("<service>/<id>#<k>"). A key's hash picks the first point clockwise; an instance that
// may not take the request (unhealthy, ejected, lease ended, already tried) is skipped and the
// walk goes on clockwise. An instance's points do not depend on the others, so removing one of
// N instances moves only the keys it owned (about 1/N of them), and when it comes back they
// return. Only when the weights add up beyond kMaxPoints / kPointsPerWeight are all counts
// scaled down (then the points do depend on the total).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace keel::gateway {

// A 64-bit hash of bytes, stable across nodes, builds and versions (FNV-1a, then a
// splitmix64 finalizer so that close inputs land far apart).
uint64_t stable_hash(std::string_view bytes);

struct RingMember {
  std::string key;      // "<service>/<id>": names the instance on the ring
  uint32_t weight = 1;  // >= 1
};

class HashRing {
 public:
  static constexpr uint64_t kPointsPerWeight = 128;
  static constexpr uint64_t kMaxPoints = 1 << 18;

  HashRing() = default;
  // REQUIRES: every weight >= 1. Members with the same key get the same points.
  static HashRing build(const std::vector<RingMember>& members);

  // The member (index into the members given to build()) owning `hash`: the first point at or
  // after it clockwise whose member `usable` accepts. nullopt when no member is usable (or the
  // ring is empty). Visits each point at most once.
  std::optional<size_t> pick(uint64_t hash, const std::function<bool(size_t)>& usable) const;

  size_t points() const { return ring_.size(); }
  size_t members() const { return members_; }

 private:
  std::vector<std::pair<uint64_t, uint32_t>> ring_;  // (point hash, member), sorted
  size_t members_ = 0;
};

// Where the hash key of a request comes from (gateway.hash_key).
struct HashKeySpec {
  enum class Kind : uint8_t { kHeader, kCookie, kParam };
  Kind kind = Kind::kHeader;
  std::string name;  // header names lower case
  std::string text() const;  // "header:x-user", "cookie:session", "param:userId"
};

// "header:NAME", "cookie:NAME" or "param:NAME". The error names what is allowed.
Result<HashKeySpec> parse_hash_key(std::string_view text);

// The value of cookie `name` in a Cookie header ("a=1; session=xyz"), or nullopt.
std::optional<std::string_view> cookie_value(std::string_view cookie_header, std::string_view name);

}  // namespace keel::gateway

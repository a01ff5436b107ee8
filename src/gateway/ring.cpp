#include "gateway/ring.h"

#include <fmt/format.h>

#include <algorithm>

#include "base/assert.h"

namespace keel::gateway {

uint64_t stable_hash(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

HashRing HashRing::build(const std::vector<RingMember>& members) {
  HashRing r;
  r.members_ = members.size();
  if (members.empty()) return r;
  uint64_t total = 0;
  for (auto& m : members) {
    KEEL_ASSERT(m.weight >= 1);
    total += m.weight;
  }
  // kPointsPerWeight per unit of weight, scaled down only beyond kMaxPoints in all.
  uint64_t per = std::max<uint64_t>(1, std::min<uint64_t>(kPointsPerWeight, kMaxPoints / total));
  for (uint32_t i = 0; i < members.size(); ++i) {
    uint64_t n = per * members[i].weight;
    std::string base = members[i].key + "#";
    for (uint64_t k = 0; k < n; ++k) r.ring_.emplace_back(stable_hash(base + std::to_string(k)), i);
  }
  std::sort(r.ring_.begin(), r.ring_.end());
  return r;
}

std::optional<size_t> HashRing::pick(uint64_t hash, const std::function<bool(size_t)>& usable) const {
  if (ring_.empty()) return std::nullopt;
  auto it = std::lower_bound(ring_.begin(), ring_.end(), std::make_pair(hash, uint32_t{0}));
  size_t start = static_cast<size_t>(it - ring_.begin());
  // Each member's answer is asked once: a member refused is skipped at its other points.
  std::vector<int8_t> seen(members_, -1);
  for (size_t step = 0; step < ring_.size(); ++step) {
    uint32_t m = ring_[(start + step) % ring_.size()].second;
    if (seen[m] < 0) seen[m] = usable(m) ? 1 : 0;
    if (seen[m] == 1) return m;
  }
  return std::nullopt;
}

std::string HashKeySpec::text() const {
  switch (kind) {
    case Kind::kHeader:
      return "header:" + name;
    case Kind::kCookie:
      return "cookie:" + name;
    case Kind::kParam:
      return "param:" + name;
  }
  return name;
}

Result<HashKeySpec> parse_hash_key(std::string_view text) {
  constexpr std::string_view kAllowed =
      "allowed: header:NAME (a request header), cookie:NAME (a cookie), param:NAME (a path parameter of the "
      "route, like orderId in /orders/{orderId})";
  auto colon = text.find(':');
  auto bad = [&](std::string why) {
    return make_error(Errc::kInvalidArgument,
                      fmt::format("hash key '{}' {}; {}", text.substr(0, 100), why, kAllowed));
  };
  if (colon == std::string_view::npos) return bad("has no source");
  auto source = text.substr(0, colon), name = text.substr(colon + 1);
  HashKeySpec k;
  if (source == "header") k.kind = HashKeySpec::Kind::kHeader;
  else if (source == "cookie") k.kind = HashKeySpec::Kind::kCookie;
  else if (source == "param") k.kind = HashKeySpec::Kind::kParam;
  else return bad(fmt::format("has the unknown source '{}'", source.substr(0, 32)));
  if (name.empty() || name.size() > 64) return bad("needs a name of 1 to 64 characters");
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              (k.kind != HashKeySpec::Kind::kParam && (c == '-' || c == '.'));
    if (!ok) return bad("has a name with a character other than letters, digits, '_' (and '-', '.' for headers and cookies)");
  }
  k.name = std::string(name);
  if (k.kind == HashKeySpec::Kind::kHeader)
    for (auto& c : k.name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return k;
}

std::optional<std::string_view> cookie_value(std::string_view h, std::string_view name) {
  while (!h.empty()) {
    auto semi = h.find(';');
    auto pair = h.substr(0, semi);
    h = semi == std::string_view::npos ? std::string_view() : h.substr(semi + 1);
    while (!pair.empty() && (pair.front() == ' ' || pair.front() == '\t')) pair.remove_prefix(1);
    while (!pair.empty() && (pair.back() == ' ' || pair.back() == '\t')) pair.remove_suffix(1);
    auto eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != name) continue;
    auto v = pair.substr(eq + 1);
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return v;
  }
  return std::nullopt;
}

}  // namespace keel::gateway

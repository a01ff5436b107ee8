#include "keel/peers.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <utility>

namespace keel::sdk {

namespace {

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t tie_hash(uint64_t seed, std::string_view id) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then mixed with the seed
  for (unsigned char c : id) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return mix(h ^ mix(seed));
}

std::unexpected<PeerError> fail(PeerErrc code, std::string message) {
  return std::unexpected(PeerError{code, std::move(message)});
}

std::string options_problem(const PeerManager::Options& o) {
  if (!(o.latency_alpha > 0 && o.latency_alpha <= 1)) return "latency_alpha must be in (0, 1]";
  if (o.initial_latency.count() < 0) return "initial_latency must be >= 0";
  if (o.failure_half_life.count() <= 0) return "failure_half_life must be > 0";
  if (o.suspect_after < 1) return "suspect_after must be >= 1";
  if (o.down_after < o.suspect_after) return "down_after must be >= suspect_after";
  if (o.down_cooldown.count() < 0) return "down_cooldown must be >= 0";
  if (!(o.failure_penalty >= 0)) return "failure_penalty must be >= 0";
  if (o.max_peers < 1) return "max_peers must be >= 1";
  return {};
}

}  // namespace

std::string_view peer_status_name(PeerStatus s) {
  switch (s) {
    case PeerStatus::kUp: return "up";
    case PeerStatus::kSuspect: return "suspect";
    case PeerStatus::kDown: return "down";
  }
  return "unknown";
}

TopologyUpdate topology_from_cluster_nodes(uint64_t version,
                                           const std::vector<ClusterNode>& nodes) {
  TopologyUpdate out;
  out.version = version;
  std::unordered_map<std::string, size_t> at;
  for (const ClusterNode& n : nodes) {
    std::vector<std::string> caps;
    if (n.role == "master") {
      caps = {"primary", "read", "write"};
    } else if (n.role == "replica" || n.role == "slave") {
      caps = {"replica", "read"};
    }
    const PeerStatus reported = n.health == "online"   ? PeerStatus::kUp
                                : n.health == "failed" ? PeerStatus::kDown
                                                       : PeerStatus::kSuspect;
    auto [it, fresh] = at.emplace(n.id, out.peers.size());
    if (fresh) {
      out.peers.push_back(PeerSpec{n.id, n.endpoint, n.port, std::move(caps), reported});
      continue;
    }
    PeerSpec& p = out.peers[it->second];
    p.capabilities.insert(p.capabilities.end(), caps.begin(), caps.end());
    if (static_cast<int>(reported) > static_cast<int>(p.reported)) p.reported = reported;
  }
  return out;  // PeerManager::apply validates it (empty ids, port 0, ...)
}

PeerManager::PeerManager() : PeerManager(Options{}) {}

PeerManager::PeerManager(Options options) : options_(options) {
  // Options come from code, not from input: a bad one is a programming error.
  if (auto problem = options_problem(options_); !problem.empty()) {
    std::fprintf(stderr, "keel::PeerManager: invalid options: %s\n", problem.c_str());
    std::abort();
  }
}

std::expected<void, PeerError> PeerManager::set_static(std::span<const PeerSpec> peers,
                                                       Instant now) {
  return replace(peers, now);
}

std::expected<bool, PeerError> PeerManager::apply(const TopologyUpdate& update, Instant now) {
  if (has_version_ && update.version <= version_) return false;
  if (auto r = replace(update.peers, now); !r) return std::unexpected(r.error());
  version_ = update.version;
  has_version_ = true;
  return true;
}

std::expected<void, PeerError> PeerManager::replace(std::span<const PeerSpec> specs,
                                                    Instant now) {
  if (specs.size() > options_.max_peers) {
    return fail(PeerErrc::kTooManyPeers, "topology has " + std::to_string(specs.size()) +
                                             " peers; at most " +
                                             std::to_string(options_.max_peers) + " allowed");
  }
  // Validate everything before touching state, so a bad update changes nothing.
  std::unordered_map<std::string, size_t> next_index;
  next_index.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const PeerSpec& s = specs[i];
    if (s.id.empty()) {
      return fail(PeerErrc::kInvalidPeer,
                  "peer #" + std::to_string(i) + " has an empty id; every peer needs a unique id");
    }
    if (s.host.empty()) {
      return fail(PeerErrc::kInvalidPeer, "peer '" + s.id + "' has an empty host");
    }
    if (s.port == 0) {
      return fail(PeerErrc::kInvalidPeer,
                  "peer '" + s.id + "' has port 0; a port must be in 1..65535");
    }
    if (!next_index.emplace(s.id, i).second) {
      return fail(PeerErrc::kDuplicatePeer, "peer id '" + s.id + "' appears twice");
    }
  }
  std::vector<std::string> names;
  for (const PeerSpec& s : specs) {
    names.insert(names.end(), s.capabilities.begin(), s.capabilities.end());
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  if (names.size() > kMaxCapabilities) {
    return fail(PeerErrc::kTooManyCapabilities,
                "peers name " + std::to_string(names.size()) + " distinct capabilities; at most " +
                    std::to_string(kMaxCapabilities) + " allowed");
  }
  std::vector<Peer> next;
  next.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    Peer p;
    std::optional<PeerStatus> before;
    if (auto it = index_.find(specs[i].id); it != index_.end()) {
      p = std::move(peers_[it->second]);
      before = status_of(p, now);
    }
    p.spec = specs[i];
    auto& caps = p.spec.capabilities;
    std::sort(caps.begin(), caps.end());
    caps.erase(std::unique(caps.begin(), caps.end()), caps.end());
    p.caps = 0;
    for (const auto& c : caps) {
      const auto bit = std::lower_bound(names.begin(), names.end(), c) - names.begin();
      p.caps |= uint64_t{1} << bit;
    }
    p.tie = tie_hash(options_.tie_break_seed, p.spec.id);
    if (before) report(p, *before, now);
    next.push_back(std::move(p));
  }
  peers_ = std::move(next);
  index_ = std::move(next_index);
  capability_names_ = std::move(names);
  return {};
}

void PeerManager::report(const Peer& p, PeerStatus before, Instant now) const {
  const PeerStatus after = status_of(p, now);
  if (after == before) return;
  emit_signal(options_.signals, [&] {
    return PeerStatusChanged{p.spec.id, peer_status_name(before), peer_status_name(after), now};
  });
}

double PeerManager::score_at(const Peer& p, Instant now) const {
  if (p.failure_score == 0) return 0;
  const auto elapsed = now - p.failure_at;
  if (elapsed.count() <= 0) return p.failure_score;
  const double halvings = static_cast<double>(elapsed.count()) /
                          static_cast<double>(options_.failure_half_life.count());
  return p.failure_score * std::exp2(-halvings);
}

PeerStatus PeerManager::status_of(const Peer& p, Instant now) const {
  if (p.spec.reported == PeerStatus::kDown) return PeerStatus::kDown;
  if (p.consecutive_failures >= options_.down_after) {
    return now < p.down_until ? PeerStatus::kDown : PeerStatus::kSuspect;
  }
  if (p.consecutive_failures >= options_.suspect_after) return PeerStatus::kSuspect;
  return p.spec.reported;
}

PeerView PeerManager::view(const Peer& p, Instant now) const {
  PeerView v;
  v.id = p.spec.id;
  v.host = p.spec.host;
  v.port = p.spec.port;
  v.status = status_of(p, now);
  v.latency_ewma = p.has_latency ? Duration(static_cast<int64_t>(p.latency_ewma_ns))
                                 : options_.initial_latency;
  v.failure_score = score_at(p, now);
  v.capabilities = p.spec.capabilities;
  return v;
}

std::expected<void, PeerError> PeerManager::record_success(std::string_view id,
                                                           Duration latency, Instant now) {
  auto it = index_.find(std::string(id));
  if (it == index_.end()) {
    return fail(PeerErrc::kUnknownPeer, "no peer with id '" + std::string(id) + "'");
  }
  Peer& p = peers_[it->second];
  const PeerStatus before = status_of(p, now);
  const double sample = static_cast<double>(std::max<int64_t>(latency.count(), 0));
  if (!p.has_latency) {
    p.latency_ewma_ns = sample;
    p.has_latency = true;
  } else {
    p.latency_ewma_ns += options_.latency_alpha * (sample - p.latency_ewma_ns);
  }
  p.failure_score = score_at(p, now);
  p.failure_at = std::max(p.failure_at, now);
  p.consecutive_failures = 0;
  p.down_until = Instant{};
  report(p, before, now);
  return {};
}

std::expected<void, PeerError> PeerManager::record_failure(std::string_view id, Instant now) {
  auto it = index_.find(std::string(id));
  if (it == index_.end()) {
    return fail(PeerErrc::kUnknownPeer, "no peer with id '" + std::string(id) + "'");
  }
  Peer& p = peers_[it->second];
  const PeerStatus before = status_of(p, now);
  p.failure_score = score_at(p, now) + 1.0;
  p.failure_at = std::max(p.failure_at, now);
  if (p.consecutive_failures < UINT32_MAX) ++p.consecutive_failures;
  // Each failure at or past the threshold (including a failed probe) restarts the cooldown.
  if (p.consecutive_failures >= options_.down_after) p.down_until = now + options_.down_cooldown;
  report(p, before, now);
  return {};
}

std::vector<PeerView> PeerManager::select(size_t k, std::span<const std::string> required,
                                          Instant now) const {
  std::vector<PeerView> out;
  if (k == 0 || peers_.empty()) return out;
  uint64_t need = 0;
  for (const std::string& c : required) {
    auto it = std::lower_bound(capability_names_.begin(), capability_names_.end(), c);
    if (it == capability_names_.end() || *it != c) return out;  // no peer has it
    need |= uint64_t{1} << (it - capability_names_.begin());
  }

  struct Candidate {
    int rank;
    double cost;
    uint64_t tie;
    const Peer* peer;
    bool operator<(const Candidate& o) const {
      return std::tie(rank, cost, tie, peer->spec.id) <
             std::tie(o.rank, o.cost, o.tie, o.peer->spec.id);
    }
  };
  std::vector<Candidate> cands;
  cands.reserve(peers_.size());
  for (const Peer& p : peers_) {
    if ((p.caps & need) != need) continue;
    const PeerStatus st = status_of(p, now);
    const double latency = p.has_latency ? p.latency_ewma_ns
                                         : static_cast<double>(options_.initial_latency.count());
    // +1 ns keeps a zero-latency peer's failures visible in its cost.
    const double cost = (latency + 1.0) * (1.0 + options_.failure_penalty * score_at(p, now));
    cands.push_back(Candidate{static_cast<int>(st), cost, p.tie, &p});
  }
  const size_t n = std::min(k, cands.size());
  std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(n), cands.end());
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (cands[i].rank == static_cast<int>(PeerStatus::kDown) && !options_.fill_with_down) break;
    out.push_back(view(*cands[i].peer, now));
  }
  return out;
}

std::optional<PeerView> PeerManager::peer(std::string_view id, Instant now) const {
  auto it = index_.find(std::string(id));
  if (it == index_.end()) return std::nullopt;
  return view(peers_[it->second], now);
}

PeerStatus PeerManager::status(std::string_view id, Instant now) const {
  auto it = index_.find(std::string(id));
  if (it == index_.end()) return PeerStatus::kDown;
  return status_of(peers_[it->second], now);
}

size_t pick_least_loaded(std::span<const size_t> in_flight, size_t spread) {
  const size_t n = std::min(in_flight.size(), std::max<size_t>(spread, 1));
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (in_flight[i] < in_flight[best]) best = i;
  }
  return best;
}

}  // namespace keel::sdk

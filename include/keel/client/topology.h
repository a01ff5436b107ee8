// The slot map of a keel (or Redis) cluster as a client sees it: which endpoint serves each of
// the 16384 slots. Built from a CLUSTER SHARDS reply, patched by MOVED redirections. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "keel/client/error.h"
#include "keel/client/options.h"
#include "keel/client/reply.h"
#include "keel/client/slots.h"
#include "keel/peers.h"

namespace keel::client {

struct SlotRange {
  uint32_t first = 0;
  uint32_t last = 0;  // inclusive
  friend bool operator==(const SlotRange&, const SlotRange&) = default;
};

struct Shard {
  std::vector<SlotRange> slots;
  Endpoint primary;
  std::vector<Endpoint> replicas;
};

class Topology {
 public:
  Topology();
  // Every slot served by one endpoint (a single node, or a server without cluster support).
  static Topology single(const Endpoint& ep);
  // From the reply to CLUSTER SHARDS (RESP3 maps or RESP2 flat key/value arrays). Fails with
  // kUnexpectedReply naming the part that is missing or malformed.
  static Result<Topology> from_cluster_shards(const Reply& reply);

  // The endpoint serving `slot`, or nullptr if no shard claims it. REQUIRES: slot < 16384.
  const Endpoint* endpoint_for_slot(uint32_t slot) const;
  // After `MOVED slot ep`: the slot is served by ep from now on.
  void move_slot(uint32_t slot, const Endpoint& ep);
  const std::vector<Endpoint>& endpoints() const { return endpoints_; }
  const std::vector<Shard>& shards() const { return shards_; }
  size_t covered_slots() const;

 private:
  uint16_t intern(const Endpoint& ep);
  static constexpr uint16_t kNone = 0xffff;
  std::vector<Endpoint> endpoints_;
  std::vector<Shard> shards_;
  std::vector<uint16_t> slot_owner_;  // 16384 indexes into endpoints_, kNone if unassigned
};

// The nodes of a CLUSTER SHARDS reply, as sdk::topology_from_cluster_nodes() takes them (id,
// endpoint, port, role, health; a node in several shards is listed once per shard). Fails with
// kUnexpectedReply naming the part that is missing or malformed, kServerError for an error reply.
Result<std::vector<sdk::ClusterNode>> cluster_nodes_from_shards(const Reply& reply);

struct Redirect {
  enum class Kind { kMoved, kAsk } kind = Kind::kMoved;
  uint32_t slot = 0;
  Endpoint target;
};

// "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" -> Redirect; anything else -> nullopt.
std::optional<Redirect> parse_redirect(std::string_view error_text);

// The slot a command is routed by: the slot of its first key, or nullopt for commands without
// keys (PING, INFO, CLUSTER ..., SCAN, ...), which may go to any node. args[0] is the command.
std::optional<uint32_t> command_slot(std::span<const std::string> args);

}  // namespace keel::client

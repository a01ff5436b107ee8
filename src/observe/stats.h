// Per-shard statistics. Each shard writes only its own ShardStats from its own thread (no
// atomics, no locks on the data path); readers hop to the shard to copy them (runtime::run_on)
// and merge the copies.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace keel::observe {

// Upper bounds of the latency histogram buckets, in microseconds (+Inf is implicit).
inline constexpr std::array<double, 14> kLatencyBoundsUs = {
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 250000, 1000000};

struct CommandStats {
  uint64_t calls = 0;
  uint64_t failed = 0;  // replied with an error
  uint64_t usec_sum = 0;
  std::array<uint64_t, kLatencyBoundsUs.size() + 1> buckets{};

  void record(uint64_t ns, bool error) {
    ++calls;
    failed += error ? 1 : 0;
    uint64_t us = ns / 1000;
    usec_sum += us;
    size_t i = 0;
    while (i < kLatencyBoundsUs.size() && static_cast<double>(us) > kLatencyBoundsUs[i]) ++i;
    ++buckets[i];
  }
  void merge(const CommandStats& o) {
    calls += o.calls;
    failed += o.failed;
    usec_sum += o.usec_sum;
    for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  }
};

struct ShardStats {
  std::vector<CommandStats> commands;  // indexed by CommandSpec::index
  uint64_t connections_current = 0;
  uint64_t connections_total = 0;
  uint64_t rejected_connections = 0;
  uint64_t protocol_errors = 0;
  uint64_t tls_handshake_failures = 0;  // RESP over TLS: handshakes refused or broken off
  uint64_t net_input_bytes = 0;
  uint64_t net_output_bytes = 0;
  uint64_t cross_shard_hops = 0;
  // Pub/sub: messages delivered to subscribers (one per receiving subscription), subscribers
  // cut off by the pubsub output-buffer limit, and cluster fan-out frames a peer queue refused.
  uint64_t pubsub_messages_delivered = 0;
  uint64_t client_output_buffer_limit_disconnections = 0;
  uint64_t pubsub_channels = 0;  // gauge, merged as a sum: channels with a subscriber per shard
  uint64_t pubsub_patterns = 0;  // gauge, idem
  uint64_t pubsub_shard_channels = 0;  // gauge, idem
  uint64_t pubsub_fanout_dropped = 0;  // set by the server from the dht service's counter
  uint64_t pubsub_clients = 0;   // gauge: connections (and SSE streams) in subscribed mode

  void merge(const ShardStats& o) {
    if (commands.size() < o.commands.size()) commands.resize(o.commands.size());
    for (size_t i = 0; i < o.commands.size(); ++i) commands[i].merge(o.commands[i]);
    connections_current += o.connections_current;
    connections_total += o.connections_total;
    rejected_connections += o.rejected_connections;
    protocol_errors += o.protocol_errors;
    tls_handshake_failures += o.tls_handshake_failures;
    net_input_bytes += o.net_input_bytes;
    net_output_bytes += o.net_output_bytes;
    cross_shard_hops += o.cross_shard_hops;
    pubsub_messages_delivered += o.pubsub_messages_delivered;
    client_output_buffer_limit_disconnections += o.client_output_buffer_limit_disconnections;
    pubsub_channels += o.pubsub_channels;
    pubsub_patterns += o.pubsub_patterns;
    pubsub_shard_channels += o.pubsub_shard_channels;
    pubsub_fanout_dropped += o.pubsub_fanout_dropped;
    pubsub_clients += o.pubsub_clients;
  }
};

}  // namespace keel::observe

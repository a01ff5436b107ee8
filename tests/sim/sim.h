// Deterministic simulator for the Rabia core: n replicas in one process, virtual time, a
// faulty network (delay, loss, duplication, reordering, asymmetric partitions), crashes that
// lose unsynced writes, restarts, slow replicas and drifting clocks — all from one seed.
// Checkers run on every event: agreement, validity, integrity, equal applied state; after
// healing, liveness within a bound. Same seed and scenario -> same trace (trace_hash).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/random.h"
#include "consensus/rabia/replica.h"

namespace keel::sim {

enum class Scenario {
  kRandom,
  kProposalLoss,          // proposals (not only votes) are lost heavily for a while
  kStaleRestartMinority,  // a stale replica restarts while only a minority of the rest is up
  kColdStart,             // every replica crashes (mid-write) and all restart together
  kNullStorm,             // differing proposals: forwards lost, many concurrent clients
  kReconfigPartition,     // membership changes while a member is partitioned away
  kSteady,                // no faults at all: the baseline for the protocol counters
  // The replicated state grows to several MiB while the frame limit is 64 KiB: a replica that
  // was down catches up by a snapshot that must travel in chunks.
  kLargeState,
};

const char* scenario_name(Scenario s);
std::optional<Scenario> parse_scenario(std::string_view name);

struct Counters {
  uint64_t seeds = 0;
  uint64_t slots = 0;            // distinct decided slots (max over replicas)
  uint64_t decided_by_vote = 0;  // per-replica Weak-MVC decisions
  uint64_t decided_phase1 = 0;
  uint64_t phases_total = 0;
  uint64_t by_transfer = 0;
  uint64_t null_slots = 0;  // distinct slots decided NULL
  uint64_t coin_flips = 0;
  uint64_t rebroadcasts = 0;
  uint64_t snapshots_installed = 0;
  uint64_t snapshot_chunks = 0;    // chunks accepted by receivers
  uint64_t max_message_bytes = 0;  // largest encoded message sent
  uint64_t max_state_bytes = 0;    // largest application state seen
  uint64_t crashes = 0;
  uint64_t torn_writes = 0;  // crashes that lost part of a Ready's records
  uint64_t requests_done = 0;
  uint64_t messages = 0;
  uint64_t dropped = 0;
  void add(const Counters& o);
};

struct Result {
  bool ok = true;
  std::string failure;  // which checker failed and why
  uint64_t trace_hash = 0;
  Counters counters;
};

struct Options {
  uint64_t seed = 1;
  Scenario scenario = Scenario::kRandom;
  bool trace = false;  // print every event to stdout
  // Test hook: break durability rule R1 (send before the records are durable), to show that
  // the checkers catch the resulting disagreement.
  bool break_durability = false;
  // Test hook: stalled replicas re-broadcast votes but not proposals.
  bool break_rebroadcast = false;
  // Test hook: snapshots travel whole whatever their size (the behaviour before chunking).
  bool break_chunking = false;
  // Overrides of seed-chosen knobs (-1: chosen by the seed).
  int64_t propose_delay_ms = -1;
  int64_t start_timeout_ms = -1;
  int64_t max_batch = -1;
};

Result run(const Options& opts);

}  // namespace keel::sim

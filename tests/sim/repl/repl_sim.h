// keel_repl_sim: a deterministic simulator for the replication core (src/replication/copy.h).
// One partition, 3-5 nodes, 2-3 copies, write_quorum 1..copies, from one seed: virtual time,
// a network that delays, drops, duplicates, reorders and partitions (every message goes
// through the codec), crashes that lose what was not yet durable (memory engines lose all),
// restarts, clock drift; a metadata service with a failover manager; clients writing and
// reading single-key registers. Checkers: linearizability of the client history, no
// acknowledged write lost within the durability bound, convergence after healing. The
// manager also moves the partition (rebalancing: a learner, the primary's stop, the switch).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace keel::replsim {

enum class Scenario { kRandom, kPrimaryPartition, kPrimaryCrash, kReplicaChurn, kFailoverStorm, kMove, kFirstEpochCrash };
std::optional<Scenario> parse_scenario(std::string_view s);
const char* scenario_name(Scenario s);

struct Options {
  uint64_t seed = 1;
  Scenario scenario = Scenario::kRandom;
  bool trace = false;
  bool break_promote_any = false;  // promote the first replica that answers the fence
  bool break_no_lease = false;     // a primary serves reads without holding the lease
  bool break_no_settle = false;    // a snapshot's last chunk names no settle LSN
  bool break_no_stop = false;      // a move that keeps its primary switches without stopping it
};

struct Counters {
  uint64_t seeds = 0, ops = 0, writes_acked = 0, writes_unknown = 0, reads_ok = 0,
           refusals = 0, backlog_full = 0, failovers = 0, readds = 0, moves = 0, moves_abandoned = 0, crashes = 0, snapshots = 0, snapshots_resumed = 0, messages = 0,
           dropped = 0, beyond_bound = 0, lin_states = 0, lin_gave_up = 0;
  void add(const Counters& o);
};

struct RunResult {
  bool ok = true;
  std::string failure;  // which checker, and what it saw
  Counters counters;
  uint64_t trace_hash = 0;
  std::string setup;  // nodes, copies, write_quorum, engines
};

RunResult run(const Options& o);

}  // namespace keel::replsim

// keel_sim: runs the Rabia simulator. `--seeds N` runs seeds 1..N (even seeds: random faults;
// odd seeds: the named scenarios in turn); `--seed S [--scenario NAME] [--trace]` replays one.
// A failure prints the one command that replays it. Wall-clock time is read here only to
// report seeds/sec; the simulation itself never reads a clock.
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sim.h"

using namespace keel::sim;

namespace {

Scenario scenario_for(uint64_t seed) {
  static constexpr Scenario named[] = {Scenario::kProposalLoss, Scenario::kStaleRestartMinority,
                                       Scenario::kColdStart, Scenario::kNullStorm,
                                       Scenario::kReconfigPartition};
  if (seed % 2 == 0) return Scenario::kRandom;
  return named[(seed / 2) % 5];
}

int usage(const char* why) {
  fmt::print(
      stderr,
      "keel_sim: {}\nusage: keel_sim --seeds N [--first S] | --seed S [--scenario NAME] "
      "[--trace] [--break durability|rebroadcast|chunking [--expect-failure]] [--propose-delay MS] "
      "[--start-timeout MS] "
      "[--batch N] | --determinism N\nscenarios: random proposal-loss stale-restart-minority "
      "cold-start null-storm reconfig-partition steady large-state\n",
      why);
  return 2;
}

void report(const Counters& k, double secs) {
  double votes = k.decided_by_vote ? static_cast<double>(k.decided_by_vote) : 1.0;
  fmt::print(
      "seeds={} slots={} null_slots={} ({:.1f}%) requests_done={}\n"
      "weak-mvc decisions={} phase1(fast path)={:.1f}% phases/decision={:.3f} coin_flips={}\n"
      "decisions by transfer={} snapshots installed={} snapshot chunks={} rebroadcasts={} "
      "crashes={} torn_writes={}\n"
      "messages={} dropped={} largest message={} B largest state={} B wall={:.2f}s "
      "seeds/sec={:.1f}\n",
      k.seeds, k.slots, k.null_slots, k.slots ? 100.0 * k.null_slots / k.slots : 0.0,
      k.requests_done, k.decided_by_vote, 100.0 * k.decided_phase1 / votes, k.phases_total / votes,
      k.coin_flips, k.by_transfer, k.snapshots_installed, k.snapshot_chunks, k.rebroadcasts,
      k.crashes, k.torn_writes, k.messages, k.dropped, k.max_message_bytes, k.max_state_bytes, secs,
      secs > 0 ? k.seeds / secs : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seeds = 0, first = 1, determinism = 0;
  std::optional<uint64_t> one;
  std::optional<Scenario> scenario;
  int64_t propose_delay = -1, max_batch = -1, start_timeout = -1;
  bool trace = false, expect_failure = false, break_durability = false, break_rebroadcast = false,
       break_chunking = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto num = [&](uint64_t& out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      out = std::strtoull(argv[++i], &end, 10);
      return end && *end == '\0';
    };
    if (a == "--seeds") {
      if (!num(seeds)) return usage("--seeds needs a number");
    } else if (a == "--first") {
      if (!num(first)) return usage("--first needs a number");
    } else if (a == "--seed") {
      uint64_t s;
      if (!num(s)) return usage("--seed needs a number");
      one = s;
    } else if (a == "--determinism") {
      if (!num(determinism)) return usage("--determinism needs a number");
    } else if (a == "--scenario") {
      if (i + 1 >= argc) return usage("--scenario needs a name");
      scenario = parse_scenario(argv[++i]);
      if (!scenario) return usage(fmt::format("unknown scenario '{}'", argv[i]).c_str());
    } else if (a == "--break") {
      // Deliberately broken variants, to show the checkers catch them (use --expect-failure).
      if (i + 1 >= argc) return usage("--break needs durability|rebroadcast|chunking");
      std::string_view what = argv[++i];
      if (what == "durability")
        break_durability = true;
      else if (what == "rebroadcast")
        break_rebroadcast = true;
      else if (what == "chunking")
        break_chunking = true;
      else
        return usage("--break takes durability, rebroadcast or chunking");
    } else if (a == "--propose-delay" || a == "--batch" || a == "--start-timeout") {
      uint64_t v;
      if (!num(v)) return usage("--propose-delay, --batch and --start-timeout need a number");
      (a == "--batch" ? max_batch : a == "--start-timeout" ? start_timeout : propose_delay) = static_cast<int64_t>(v);
    } else if (a == "--expect-failure") {
      expect_failure = true;
    } else if (a == "--trace") {
      trace = true;
    } else {
      return usage(fmt::format("unknown argument '{}'", a).c_str());
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  if (determinism > 0) {
    // Same seed twice -> same trace hash; different seeds -> different hashes.
    uint64_t prev = 0;
    for (uint64_t s = first; s < first + determinism; ++s) {
      Options o{.seed = s, .scenario = scenario ? *scenario : scenario_for(s)};
      auto a = run(o), b = run(o);
      if (a.trace_hash != b.trace_hash) {
        fmt::print("NONDETERMINISTIC: seed {} gave trace hashes {:016x} and {:016x}\n", s,
                   a.trace_hash, b.trace_hash);
        return 1;
      }
      if (s > first && a.trace_hash == prev) {
        fmt::print("seeds {} and {} gave the same trace hash {:016x}\n", s - 1, s, prev);
        return 1;
      }
      prev = a.trace_hash;
    }
    fmt::print("determinism: {} seeds, each run twice with identical trace hashes\n", determinism);
    return 0;
  }
  if (one) {
    Options o{.seed = *one, .scenario = scenario ? *scenario : scenario_for(*one), .trace = trace};
    o.break_durability = break_durability;
    o.break_rebroadcast = break_rebroadcast;
    o.break_chunking = break_chunking;
    o.propose_delay_ms = propose_delay;
    o.start_timeout_ms = start_timeout;
    o.max_batch = max_batch;
    auto r = run(o);
    fmt::print("seed {} scenario {}: {} trace={:016x}\n", *one, scenario_name(o.scenario),
               r.ok ? "ok" : "FAILED: " + r.failure, r.trace_hash);
    report(r.counters, secs());
    return r.ok ? 0 : 1;
  }
  if (seeds == 0) return usage("nothing to do");
  Counters total;
  int failures = 0;
  for (uint64_t s = first; s < first + seeds; ++s) {
    Options o{.seed = s, .scenario = scenario ? *scenario : scenario_for(s)};
    o.break_durability = break_durability;
    o.break_rebroadcast = break_rebroadcast;
    o.break_chunking = break_chunking;
    o.propose_delay_ms = propose_delay;
    o.start_timeout_ms = start_timeout;
    o.max_batch = max_batch;
    auto r = run(o);
    total.add(r.counters);
    if (!r.ok) {
      ++failures;
      fmt::print("FAILED seed {} scenario {}: {}\n  replay: {} --seed {} --scenario {}{} --trace\n",
                 s, scenario_name(o.scenario), r.failure, argv[0], s, scenario_name(o.scenario),
                 break_durability    ? " --break durability"
                 : break_rebroadcast ? " --break rebroadcast"
                 : break_chunking    ? " --break chunking"
                                     : "");
      if (failures >= 5) break;
    }
  }
  report(total, secs());
  if (failures) fmt::print("{} seed(s) failed\n", failures);
  if (expect_failure) {
    fmt::print("{}", failures ? "expected failure found: the checkers catch this broken variant\n"
                              : "EXPECTED A FAILURE but every seed passed: the checkers miss it\n");
    return failures ? 0 : 1;
  }
  return failures ? 1 : 0;
}

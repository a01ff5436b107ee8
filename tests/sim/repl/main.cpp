// keel_repl_sim: runs the replication simulator (repl_sim.h). `--seeds N [--first S]` runs
// seeds S..S+N-1 (scenario by seed: random, primary-partition, primary-crash,
// first-epoch-crash, replica-churn, failover-storm, move in turn); `--seed S [--scenario NAME] [--trace]` replays one. A failure
// prints the one command that replays it. Wall-clock time is read here only to report
// seeds/sec; the simulation itself never reads a clock.
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>

#include "repl_sim.h"

using namespace keel::replsim;

namespace {

Scenario scenario_for(uint64_t seed) {
  static constexpr Scenario all[] = {Scenario::kRandom,       Scenario::kPrimaryPartition,
                                     Scenario::kRandom,       Scenario::kPrimaryCrash,
                                     Scenario::kFirstEpochCrash, Scenario::kReplicaChurn,
                                     Scenario::kFailoverStorm, Scenario::kFailoverStorm,
                                     Scenario::kMove,          Scenario::kMove};
  return all[seed % 10];
}

int usage(const std::string& why) {
  fmt::print(stderr,
             "keel_repl_sim: {}\nusage: keel_repl_sim --seeds N [--first S] [--scenario NAME] | "
             "--seed S [--scenario NAME] [--trace] | --determinism N\n"
             "  [--break promote-any|no-lease|no-stop|no-settle [--expect-failure]]\n"
             "scenarios: random primary-partition primary-crash replica-churn failover-storm move first-epoch-crash\n",
             why);
  return 2;
}

void report(const Counters& k, double secs) {
  fmt::print(
      "seeds={} ops={} writes_acked={} writes_unknown={} reads_ok={} refusals={} "
      "(backlog full {})\n"
      "failovers={} readds={} moves={} (abandoned {}) crashes={} snapshots={} (resumed {}) beyond_bound={} lin_states={} "
      "lin_gave_up={}\nmessages={} dropped={} wall={:.2f}s seeds/sec={:.1f}\n",
      k.seeds, k.ops, k.writes_acked, k.writes_unknown, k.reads_ok, k.refusals, k.backlog_full,
      k.failovers,
      k.readds, k.moves, k.moves_abandoned, k.crashes, k.snapshots, k.snapshots_resumed, k.beyond_bound, k.lin_states, k.lin_gave_up, k.messages,
      k.dropped, secs, secs > 0 ? k.seeds / secs : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seeds = 0, first = 1, determinism = 0;
  std::optional<uint64_t> one;
  std::optional<Scenario> scenario;
  bool trace = false, expect_failure = false;
  std::string brk;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto num = [&](uint64_t& out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      out = std::strtoull(argv[++i], &end, 10);
      return end && *end == '\0' && end != argv[i];
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
      if (!scenario) return usage(fmt::format("unknown scenario '{}'", argv[i]));
    } else if (a == "--break") {
      if (i + 1 >= argc) return usage("--break needs promote-any, no-lease, no-stop or no-settle");
      brk = argv[++i];
      if (brk != "promote-any" && brk != "no-lease" && brk != "no-stop" && brk != "no-settle")
        return usage(fmt::format("--break '{}' unknown (allowed: promote-any, no-lease, no-stop, no-settle)", brk));
    } else if (a == "--expect-failure") {
      expect_failure = true;
    } else if (a == "--trace") {
      trace = true;
    } else {
      return usage(fmt::format("unknown argument '{}'", a));
    }
  }
  auto options = [&](uint64_t s) {
    Options o{.seed = s, .scenario = scenario ? *scenario : scenario_for(s), .trace = false};
    o.break_promote_any = brk == "promote-any";
    o.break_no_lease = brk == "no-lease";
    o.break_no_stop = brk == "no-stop";
    o.break_no_settle = brk == "no-settle";
    return o;
  };
  auto t0 = std::chrono::steady_clock::now();
  auto secs = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  if (determinism > 0) {
    uint64_t prev = 0;
    for (uint64_t s = first; s < first + determinism; ++s) {
      auto a = run(options(s)), b = run(options(s));
      if (a.trace_hash != b.trace_hash || a.ok != b.ok) {
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
  const std::string brk_flag = brk.empty() ? "" : " --break " + brk;
  if (one) {
    Options o = options(*one);
    o.trace = trace;
    auto r = run(o);
    fmt::print("seed {} scenario {} ({}): {} trace={:016x}\n", *one, scenario_name(o.scenario),
               r.setup, r.ok ? "ok" : "FAILED: " + r.failure, r.trace_hash);
    report(r.counters, secs());
    return r.ok ? 0 : 1;
  }
  if (seeds == 0) return usage("nothing to do");
  Counters total;
  int failures = 0;
  for (uint64_t s = first; s < first + seeds; ++s) {
    Options o = options(s);
    auto r = run(o);
    total.add(r.counters);
    if (!r.ok) {
      ++failures;
      fmt::print("FAILED seed {} scenario {} ({}): {}\n  replay: {} --seed {} --scenario {}{} "
                 "--trace\n",
                 s, scenario_name(o.scenario), r.setup, r.failure, argv[0], s,
                 scenario_name(o.scenario), brk_flag);
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

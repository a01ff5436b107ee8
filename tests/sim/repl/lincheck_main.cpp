// keel_lincheck: checks a recorded client history of single-key registers for linearizability
// with the simulator's checker (lincheck.h), for tests that drive real processes.
//
// Input (a file, or stdin with "-"), one operation per line:
//   <key> <client> w|r <value> <invoke_ns> <complete_ns|never>
// Values are decimal write ids (0 = the key was absent); every write writes a value no other
// write writes. A write whose outcome the client never learned has complete "never"; a write
// that definitely did not happen, and a failed read, are left out by the recorder.
// Prints one line per anomalous key and a summary; exits 0 when every key is linearizable,
// 1 on an anomaly (or a search that gave up), 2 on bad input.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

#include "lincheck.h"

using keel::replsim::Op;

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: keel_lincheck HISTORY_FILE|-\n");
    return 2;
  }
  std::ifstream file;
  std::istream* in = &std::cin;
  if (std::string(argv[1]) != "-") {
    file.open(argv[1]);
    if (!file) {
      fmt::print(stderr, "keel_lincheck: cannot read {}\n", argv[1]);
      return 2;
    }
    in = &file;
  }
  std::map<std::string, std::vector<Op>> keys;
  std::string line;
  size_t lineno = 0, ops = 0;
  while (std::getline(*in, line)) {
    ++lineno;
    if (line.empty()) continue;
    std::istringstream ls(line);
    std::string key, kind, complete;
    Op op;
    if (!(ls >> key >> op.client >> kind >> op.value >> op.invoke >> complete) || (kind != "w" && kind != "r")) {
      fmt::print(stderr,
                 "keel_lincheck: line {}: expected '<key> <client> w|r <value> <invoke_ns> <complete_ns|never>', "
                 "got '{}'\n",
                 lineno, line.substr(0, 200));
      return 2;
    }
    op.write = kind == "w";
    if (complete == "never") {
      if (!op.write) {
        fmt::print(stderr, "keel_lincheck: line {}: a read has no outcome to check (leave failed reads out)\n", lineno);
        return 2;
      }
      op.complete = keel::replsim::kNever;
    } else {
      try {
        op.complete = std::stoll(complete);
      } catch (...) {
        fmt::print(stderr, "keel_lincheck: line {}: complete must be a number of ns or 'never', got '{}'\n", lineno,
                   complete);
        return 2;
      }
      if (op.complete < op.invoke) {
        fmt::print(stderr, "keel_lincheck: line {}: completes before it was invoked\n", lineno);
        return 2;
      }
    }
    keys[key].push_back(op);
    ++ops;
  }
  size_t anomalies = 0, gave_up = 0;
  for (auto& [key, history] : keys) {
    auto r = keel::replsim::check_register(history);
    if (r.gave_up) {
      ++gave_up;
      fmt::print("key {}: the search gave up after {} states (not checked)\n", key, r.states);
    } else if (!r.ok) {
      ++anomalies;
      fmt::print("key {}: NOT linearizable: {}\n", key, r.explain);
    }
  }
  fmt::print("checked {} operations on {} keys: {} anomalies, {} unchecked\n", ops, keys.size(), anomalies, gave_up);
  return anomalies || gave_up ? 1 : 0;
}

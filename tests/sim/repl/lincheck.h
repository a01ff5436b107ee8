// A linearizability checker for single-key read/write registers (Wing & Gong's search, with
// Lowe's / Porcupine's memoization of (set of linearized operations, register value)).
//
// Each key is checked on its own (registers are independent). Values are write ids: every
// write writes a value no other write writes; 0 is the initial value (key absent). A write
// whose outcome the client never learned (timeout) has complete = kNever: it may take effect
// at any time after its invocation, or never.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace keel::replsim {

inline constexpr int64_t kNever = INT64_MAX;

struct Op {
  uint64_t client = 0;
  bool write = false;
  uint64_t value = 0;  // write: the value written; read: the value returned
  int64_t invoke = 0, complete = 0;
};

struct LinResult {
  bool ok = true;
  bool gave_up = false;  // the search exceeded its budget (reported, not a pass)
  std::string explain;   // on failure: the smallest prefix of operations that cannot be ordered
  uint64_t states = 0;
};

// One key's history. `budget` bounds the number of search states visited.
LinResult check_register(std::vector<Op> ops, uint64_t budget = 5'000'000);

}  // namespace keel::replsim

#include "lincheck.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_set>

namespace keel::replsim {
namespace {

// Bitset of linearized operations + register value, hashed for the memo.
struct State {
  std::vector<uint64_t> bits;
  uint64_t value = 0;
  bool operator==(const State&) const = default;
};
struct StateHash {
  size_t operator()(const State& s) const {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ s.value;
    for (uint64_t b : s.bits) h = (h ^ b) * 0x100000001B3ull + (h >> 29);
    return static_cast<size_t>(h);
  }
};

}  // namespace

LinResult check_register(std::vector<Op> ops, uint64_t budget) {
  LinResult res;
  // A write with unknown outcome whose value no read returned can always be taken as never
  // applied (dropping it keeps any valid order valid); drop those to keep the search small.
  std::unordered_set<uint64_t> read_values;
  for (const Op& o : ops)
    if (!o.write) read_values.insert(o.value);
  std::erase_if(ops, [&](const Op& o) {
    return o.write && o.complete == kNever && !read_values.count(o.value);
  });
  const size_t n = ops.size();
  if (n == 0) return res;
  // Events: call and return of every op, by time; at equal times calls first (concurrent).
  struct Ev {
    int64_t t;
    bool ret;
    size_t op;
  };
  std::vector<Ev> evs;
  for (size_t i = 0; i < n; ++i) {
    evs.push_back({ops[i].invoke, false, i});
    evs.push_back({ops[i].complete, true, i});
  }
  std::stable_sort(evs.begin(), evs.end(), [](const Ev& a, const Ev& b) {
    if (a.t != b.t) return a.t < b.t;
    return !a.ret && b.ret;
  });
  // Doubly linked list over events, with a sentinel head at index evs.size().
  const size_t m = evs.size(), head = m;
  std::vector<size_t> next(m + 1), prev(m + 1), call_of(n), ret_of(n);
  for (size_t i = 0; i < m; ++i) (evs[i].ret ? ret_of : call_of)[evs[i].op] = i;
  next[head] = 0;
  prev[0] = head;
  for (size_t i = 0; i < m; ++i) {
    next[i] = i + 1 < m ? i + 1 : SIZE_MAX;
    if (i) prev[i] = i - 1;
  }
  auto lift = [&](size_t op) {
    for (size_t e : {call_of[op], ret_of[op]}) {
      next[prev[e]] = next[e];
      if (next[e] != SIZE_MAX) prev[next[e]] = prev[e];
    }
  };
  auto unlift = [&](size_t op) {
    for (size_t e : {ret_of[op], call_of[op]}) {
      if (next[e] != SIZE_MAX) prev[next[e]] = e;
      next[prev[e]] = e;
    }
  };
  State cur{std::vector<uint64_t>((n + 63) / 64, 0), 0};
  std::unordered_set<State, StateHash> seen;
  struct Frame {
    size_t op;
    uint64_t value_before;
  };
  std::vector<Frame> stack;
  size_t longest = 0;
  std::vector<size_t> longest_ops;
  size_t e = next[head];
  while (e != SIZE_MAX) {
    if (++res.states > budget) {
      res.gave_up = true;
      return res;
    }
    const Ev& ev = evs[e];
    if (!ev.ret) {
      const Op& o = ops[ev.op];
      bool legal = o.write || o.value == cur.value;
      if (legal) {
        State nx = cur;
        nx.bits[ev.op / 64] |= 1ull << (ev.op % 64);
        if (o.write) nx.value = o.value;
        if (seen.insert(nx).second) {
          stack.push_back({ev.op, cur.value});
          cur = std::move(nx);
          lift(ev.op);
          if (stack.size() > longest) {
            longest = stack.size();
            longest_ops.clear();
            for (const auto& f : stack) longest_ops.push_back(f.op);
          }
          e = next[head];
          continue;
        }
      }
      e = next[e];
    } else {
      // A return whose op is not linearized yet: backtrack.
      if (stack.empty()) break;
      Frame f = stack.back();
      stack.pop_back();
      cur.bits[f.op / 64] &= ~(1ull << (f.op % 64));
      cur.value = f.value_before;
      unlift(f.op);
      e = next[call_of[f.op]];
    }
  }
  if (next[head] == SIZE_MAX) return res;  // everything linearized
  res.ok = false;
  // Explain: the ops linearized in the longest attempt, then the first op that could not be.
  std::string s = "longest linearizable prefix:";
  for (size_t op : longest_ops) {
    const Op& o = ops[op];
    s += fmt::format(" {}{}@[{},{}]", o.write ? "w" : "r", o.value, o.invoke,
                     o.complete == kNever ? std::string("?") : std::to_string(o.complete));
  }
  std::vector<bool> in(n, false);
  for (size_t op : longest_ops) in[op] = true;
  std::vector<size_t> rest;
  for (size_t i = 0; i < n; ++i)
    if (!in[i]) rest.push_back(i);
  std::sort(rest.begin(), rest.end(), [&](size_t a, size_t b) { return ops[a].complete < ops[b].complete; });
  s += "; then none of:";
  for (size_t k = 0; k < rest.size() && k < 4; ++k) {
    const Op& o = ops[rest[k]];
    s += fmt::format(" {}{}@[{},{}] (client {})", o.write ? "w" : "r", o.value, o.invoke,
                     o.complete == kNever ? std::string("?") : std::to_string(o.complete),
                     o.client);
  }
  res.explain = s;
  return res;
}

}  // namespace keel::replsim

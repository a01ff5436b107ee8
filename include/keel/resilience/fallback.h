// Fallback: a primary adapter followed by fallback adapters, each with a name and a
// description of what it can do ("fresh data", "cached, up to 5 min stale", "static default").
// Adapters are tried in order until one succeeds or an error is not eligible for fallback.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "keel/clock.h"
#include "keel/resilience/error.h"
#include "keel/signals.h"

namespace keel::resilience {

template <class T>
struct Adapter {
  std::string name;
  std::string capability;  // human-readable: what a caller gets when this adapter serves
  std::function<Result<T>()> call;
};

template <class T>
struct Served {
  T value;
  size_t adapter_index;  // 0 = primary
};

template <class T>
class Fallback {
 public:
  // REQUIRES nothing; create() refuses an empty chain, unnamed adapters, missing calls and
  // duplicate names.
  static Result<Fallback> create(std::string name, std::vector<Adapter<T>> chain,
                                 std::function<bool(const Error&)> eligible = {},
                                 const sdk::SignalBus* signals = nullptr) {
    if (chain.empty()) return fail(ErrorCode::kInvalidArgument, "fallback '" + name + "': needs a primary adapter");
    for (size_t i = 0; i < chain.size(); ++i) {
      if (chain[i].name.empty())
        return fail(ErrorCode::kInvalidArgument, "fallback '" + name + "': adapter " + std::to_string(i) + " has no name");
      if (!chain[i].call)
        return fail(ErrorCode::kInvalidArgument, "fallback '" + name + "': adapter '" + chain[i].name + "' has no call");
      for (size_t j = 0; j < i; ++j)
        if (chain[j].name == chain[i].name)
          return fail(ErrorCode::kInvalidArgument, "fallback '" + name + "': adapter name '" + chain[i].name + "' is used twice");
    }
    return Fallback(std::move(name), std::move(chain), std::move(eligible), signals);
  }

  // The first success, with the index of the adapter that served it; or the last error (or the
  // first non-eligible one). `now` only stamps signals.
  Result<Served<T>> run(Instant now = Instant{}) const {
    for (size_t i = 0;; ++i) {
      Result<T> r = chain_[i].call();
      if (r.has_value()) return Served<T>{std::move(*r), i};
      bool last = i + 1 == chain_.size();
      if (last || (eligible_ && !eligible_(r.error()))) return std::unexpected(std::move(r.error()));
      sdk::emit_signal(signals_, [&] {
        return sdk::FallbackUsed{name_, chain_[i].name, chain_[i + 1].name, static_cast<uint32_t>(i + 1), now};
      });
    }
  }

  const std::vector<Adapter<T>>& chain() const noexcept { return chain_; }
  const std::string& name() const noexcept { return name_; }

 private:
  Fallback(std::string n, std::vector<Adapter<T>> c, std::function<bool(const Error&)> e,
           const sdk::SignalBus* s)
      : name_(std::move(n)), chain_(std::move(c)), eligible_(std::move(e)), signals_(s) {}
  std::string name_;
  std::vector<Adapter<T>> chain_;
  std::function<bool(const Error&)> eligible_;  // empty = every error falls back
  const sdk::SignalBus* signals_;
};

}  // namespace keel::resilience

// Pipeline<T>: resilience stages composed around calls that return Result<T>. Each stage has
// an identity (its id); an error that leaves a stage carries that id in Error::path, so the
// final error says which stages it passed through, outermost first.
//
// Build in code with the stage factories below, or from a JSON description (see
// pipeline_spec.h) that names stages registered in a Registry<T>. A PipelineSlot<T> holds the
// live pipeline, swaps in a new version atomically (a bad description is refused and the live
// one stays), and rolls back to the previous version on demand.
//
// Timeouts, races and hedges are cooperative: synchronous calls cannot be pre-empted, so a stage
// hands the call a deadline (Context::deadline) and a cancellation flag (Context::cancelled()),
// and replaces late results by kTimeout.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>  // hedge stage: the caller waits for copies between decisions
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>  // race stage branches
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "keel/clock.h"
#include "keel/resilience/bulkhead.h"
#include "keel/resilience/circuit_breaker.h"
#include "keel/resilience/error.h"
#include "keel/resilience/hedge.h"
#include "keel/resilience/pipeline_spec.h"
#include "keel/resilience/rate_limiter.h"
#include "keel/resilience/retry.h"
#include "keel/resilience/timeout.h"
#include "keel/signals.h"

namespace keel::resilience {

// What a run carries: time, waiting, randomness, the deadline, a key (for keyed limiters and
// selectors) and free-form attributes. Copyable; the pointed-to clock, sleeper and random must
// outlive the run.
struct Context {
  const sdk::Clock* clock = nullptr;
  sdk::Sleeper* sleeper = nullptr;
  sdk::Random* random = nullptr;
  Instant deadline = sdk::kInstantMax;
  std::string key;
  std::map<std::string, std::string, std::less<>> attributes;
  std::shared_ptr<std::atomic<bool>> cancel;  // set when a race was won by another branch

  bool cancelled() const noexcept { return cancel && cancel->load(std::memory_order_acquire); }
  Instant now() const noexcept { return clock->now(); }
};

template <class T>
class Stage {
 public:
  Stage(std::string id, StageKind kind) : id_(std::move(id)), kind_(kind) {}
  virtual ~Stage() = default;
  const std::string& id() const noexcept { return id_; }
  StageKind kind() const noexcept { return kind_; }

  Result<T> run(Context& ctx) const {
    Result<T> r = run_stage(ctx);
    if (!r.has_value()) r.error().path.insert(r.error().path.begin(), id_);
    return r;
  }

 protected:
  virtual Result<T> run_stage(Context& ctx) const = 0;

 private:
  std::string id_;
  StageKind kind_;
};

template <class T>
using StagePtr = std::shared_ptr<const Stage<T>>;

namespace detail {

template <class T>
class CallStage final : public Stage<T> {
 public:
  CallStage(std::string id, std::function<Result<T>(Context&)> fn)
      : Stage<T>(std::move(id), StageKind::kCall), fn_(std::move(fn)) {}
  Result<T> run_stage(Context& ctx) const override {
    if (ctx.cancelled()) return fail(ErrorCode::kTimeout, "cancelled before the call started");
    if (ctx.deadline != sdk::kInstantMax && ctx.now() >= ctx.deadline)
      return fail(ErrorCode::kTimeout, "deadline passed before the call started");
    return fn_(ctx);
  }

 private:
  std::function<Result<T>(Context&)> fn_;
};

template <class T>
class SequenceStage final : public Stage<T> {
 public:
  SequenceStage(std::string id, std::vector<StagePtr<T>> steps)
      : Stage<T>(std::move(id), StageKind::kSequence), steps_(std::move(steps)) {}
  Result<T> run_stage(Context& ctx) const override {
    Result<T> r = fail(ErrorCode::kInvalidArgument, "empty sequence");
    for (const auto& s : steps_) {
      r = s->run(ctx);
      if (!r.has_value()) return r;
    }
    return r;
  }

 private:
  std::vector<StagePtr<T>> steps_;
};

template <class T>
class RetryStage final : public Stage<T> {
 public:
  RetryStage(std::string id, std::shared_ptr<const RetryPolicy> p, StagePtr<T> child)
      : Stage<T>(std::move(id), StageKind::kRetry), policy_(std::move(p)), child_(std::move(child)) {}
  Result<T> run_stage(Context& ctx) const override {
    RetryState s = policy_->begin(ctx.now());
    while (true) {
      Result<T> r = child_->run(ctx);
      if (r.has_value() || ctx.cancelled()) return r;
      RetryDecision d = policy_->on_failure(s, r.error(), ctx.now(), *ctx.random, ctx.deadline);
      if (!d.retry) return r;
      ctx.sleeper->sleep_for(d.delay);
    }
  }

 private:
  std::shared_ptr<const RetryPolicy> policy_;
  StagePtr<T> child_;
};

template <class T>
class BreakerStage final : public Stage<T> {
 public:
  BreakerStage(std::string id, std::shared_ptr<CircuitBreaker> b, StagePtr<T> child)
      : Stage<T>(std::move(id), StageKind::kBreaker), breaker_(std::move(b)), child_(std::move(child)) {}
  Result<T> run_stage(Context& ctx) const override {
    return breaker_call(*breaker_, *ctx.clock, [&] { return child_->run(ctx); });
  }

 private:
  std::shared_ptr<CircuitBreaker> breaker_;
  StagePtr<T> child_;
};

template <class T>
class LimiterStage final : public Stage<T> {
 public:
  LimiterStage(std::string id, std::shared_ptr<RateLimiter> g, std::shared_ptr<KeyedRateLimiter> k,
               Duration max_wait, StagePtr<T> child)
      : Stage<T>(std::move(id), StageKind::kLimiter), global_(std::move(g)), keyed_(std::move(k)),
        max_wait_(max_wait), child_(std::move(child)) {}
  Result<T> run_stage(Context& ctx) const override {
    Instant now = ctx.now();
    Instant until = now + max_wait_;
    if (ctx.deadline < until) until = ctx.deadline;
    if (until < now) until = now;
    Decision d = global_ ? global_->reserve(now, until) : keyed_->reserve(ctx.key, now, until);
    if (auto* denied = std::get_if<Denied>(&d)) {
      return fail(ErrorCode::kRateLimited,
                  "rate limited; retry after " + std::to_string(denied->retry_after.count()) + " ns");
    }
    Duration wait = std::get<Allowed>(d).wait;
    if (wait.count() > 0) ctx.sleeper->sleep_for(wait);
    return child_->run(ctx);
  }

 private:
  std::shared_ptr<RateLimiter> global_;
  std::shared_ptr<KeyedRateLimiter> keyed_;
  Duration max_wait_;
  StagePtr<T> child_;
};

template <class T>
class TimeoutStage final : public Stage<T> {
 public:
  TimeoutStage(std::string id, Timeout t, StagePtr<T> child)
      : Stage<T>(std::move(id), StageKind::kTimeout), timeout_(std::move(t)), child_(std::move(child)) {}
  Result<T> run_stage(Context& ctx) const override {
    Instant outer = ctx.deadline;
    auto r = timeout_call(timeout_, *ctx.clock, [&](Instant dl) {
      ctx.deadline = dl;
      return child_->run(ctx);
    }, outer);
    ctx.deadline = outer;
    return r;
  }

 private:
  Timeout timeout_;
  StagePtr<T> child_;
};

template <class T>
class FallbackStage final : public Stage<T> {
 public:
  FallbackStage(std::string id, std::vector<StagePtr<T>> chain, const sdk::SignalBus* signals)
      : Stage<T>(std::move(id), StageKind::kFallback), chain_(std::move(chain)), signals_(signals) {}
  Result<T> run_stage(Context& ctx) const override {
    for (size_t i = 0;; ++i) {
      Result<T> r = chain_[i]->run(ctx);
      if (r.has_value() || i + 1 == chain_.size() || ctx.cancelled()) return r;
      sdk::emit_signal(signals_, [&] {
        return sdk::FallbackUsed{this->id(), chain_[i]->id(), chain_[i + 1]->id(),
                                 static_cast<uint32_t>(i + 1), ctx.now()};
      });
    }
  }

 private:
  std::vector<StagePtr<T>> chain_;
  const sdk::SignalBus* signals_;
};

// Branches run on their own threads with a copy of the Context (own Random seeded from the
// caller's). The first success is returned as soon as it arrives and the other branches see
// Context::cancelled(); when every branch fails, the error of the first branch is returned.
// The branches' threads are joined before run() returns (synchronous calls cannot be
// abandoned safely), so a race is as slow as its slowest branch unless the calls honour
// cancelled() or the deadline.
template <class T>
class RaceStage final : public Stage<T> {
 public:
  RaceStage(std::string id, std::vector<StagePtr<T>> branches)
      : Stage<T>(std::move(id), StageKind::kRace), branches_(std::move(branches)) {}
  Result<T> run_stage(Context& ctx) const override {
    const size_t n = branches_.size();
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    std::vector<sdk::SeededRandom> rngs;
    rngs.reserve(n);
    for (size_t i = 0; i < n; ++i) rngs.emplace_back(ctx.random->next_u64());
    std::vector<std::optional<Result<T>>> results(n);
    std::mutex mu;
    std::optional<size_t> winner;
    {
      std::vector<std::jthread> threads;
      threads.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
          Context c = ctx;
          c.random = &rngs[i];
          c.cancel = cancel;
          Result<T> r = branches_[i]->run(c);
          std::lock_guard lk(mu);
          if (r.has_value() && !winner) {
            winner = i;
            cancel->store(true, std::memory_order_release);
          }
          results[i] = std::move(r);
        });
      }
    }  // joins
    if (winner) return std::move(*results[*winner]);
    return std::move(*results[0]);
  }

 private:
  std::vector<StagePtr<T>> branches_;
};

template <class T>
class FilterStage final : public Stage<T> {
 public:
  FilterStage(std::string id, std::string pred_name, std::function<bool(const Context&)> pred,
              StagePtr<T> child)
      : Stage<T>(std::move(id), StageKind::kFilter), pred_name_(std::move(pred_name)),
        pred_(std::move(pred)), child_(std::move(child)) {}
  Result<T> run_stage(Context& ctx) const override {
    if (!pred_(ctx)) return fail(ErrorCode::kFiltered, "refused by filter '" + pred_name_ + "'");
    return child_->run(ctx);
  }

 private:
  std::string pred_name_;
  std::function<bool(const Context&)> pred_;
  StagePtr<T> child_;
};

template <class T>
class SwitchStage final : public Stage<T> {
 public:
  SwitchStage(std::string id, std::function<std::string(const Context&)> sel,
              std::vector<std::pair<std::string, StagePtr<T>>> routes, StagePtr<T> dflt)
      : Stage<T>(std::move(id), StageKind::kSwitch), sel_(std::move(sel)), routes_(std::move(routes)),
        default_(std::move(dflt)) {}
  Result<T> run_stage(Context& ctx) const override {
    std::string v = sel_(ctx);
    for (const auto& [value, stage] : routes_)
      if (value == v) return stage->run(ctx);
    if (default_) return default_->run(ctx);
    return fail(ErrorCode::kNotFound, "no route for '" + v + "' and no default route");
  }

 private:
  std::function<std::string(const Context&)> sel_;
  std::vector<std::pair<std::string, StagePtr<T>>> routes_;
  StagePtr<T> default_;
};

template <class T>
class BulkheadStage final : public Stage<T> {
 public:
  BulkheadStage(std::string id, std::shared_ptr<Bulkhead> b, StagePtr<T> child)
      : Stage<T>(std::move(id), StageKind::kBulkhead), bulkhead_(std::move(b)), child_(std::move(child)) {}
  // Does not wait: a synchronous pipeline would block the thread (use WaitingBulkhead for that).
  Result<T> run_stage(Context& ctx) const override {
    auto adm = bulkhead_->enter(ctx.now(), Duration(0));
    if (!std::holds_alternative<Bulkhead::Entered>(adm))
      return fail(ErrorCode::kBulkheadFull, "bulkhead '" + bulkhead_->options().name + "' is full");
    Result<T> r = child_->run(ctx);
    bulkhead_->leave();
    return r;
  }

 private:
  std::shared_ptr<Bulkhead> bulkhead_;
  StagePtr<T> child_;
};

// The longest the hedge stage's caller waits (in real time) before it looks at the Context's
// clock and its cancellation again. See HedgeStage.
inline constexpr Duration kHedgePollSlice = std::chrono::milliseconds(5);

// Hedged copies of one child: the child runs; if it has not answered when the policy says a
// hedge is due, another copy starts (up to max_hedges, within the policy's retry budget); the
// first success is returned and the other copies see Context::cancelled(); if every copy
// fails, the error of the first copy (the original) is returned.
//
// Pure part: every decision — when a copy is due, the budget, max_hedges, stopping at the
// deadline or after a success, which copy won, the latency recorded into the policy — is
// HedgeRun's (hedge.h), fed with times read from the Context's clock (ctx.now()).
// Effectful part (this shell only): each copy runs on its own thread with a copy of the
// Context (its own Random seeded from the caller's, a cancellation flag shared by the copies),
// and the calling thread waits between decisions on a condition variable that a copy notifies
// when it ends. That wait's timeout is real time (steady_clock under the condition variable):
// the Context-clock time until the next decision, capped at kHedgePollSlice so that a clock
// moving on its own (a ManualClock advanced by a test) or a cancellation of the caller's own
// Context is noticed. The real time waited changes no decision, only how soon it is taken.
// As in the race stage, the copies' threads are joined before run() returns: a synchronous
// call cannot be abandoned safely, so losers should honour cancelled() or the deadline.
template <class T>
class HedgeStage final : public Stage<T> {
 public:
  HedgeStage(std::string id, std::shared_ptr<HedgePolicy> p, StagePtr<T> child)
      : Stage<T>(std::move(id), StageKind::kHedge), policy_(std::move(p)), child_(std::move(child)) {}
  const HedgePolicy& policy() const noexcept { return *policy_; }

  Result<T> run_stage(Context& ctx) const override {
    struct Copy {
      Copy(const Context& parent, uint64_t seed, std::shared_ptr<std::atomic<bool>> cancel)
          : ctx(parent), rng(seed) {
        ctx.random = &rng;
        ctx.cancel = std::move(cancel);
      }
      Context ctx;
      sdk::SeededRandom rng;
      std::optional<Result<T>> result;
      Instant ended{};
    };
    auto cancel = std::make_shared<std::atomic<bool>>(false);
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Copy> copies;     // stable addresses; copy i is copies[i]
    std::vector<uint32_t> ends;  // copies that ended and were not yet reported to the run
    HedgeRun run(*policy_, ctx.now(), ctx.deadline);
    std::vector<std::jthread> threads;  // declared last, so destroyed (joined) first
    {
      std::unique_lock lk(mu);
      while (true) {
        for (uint32_t i : ends) run.finished(i, copies[i].result->has_value(), copies[i].ended);
        ends.clear();
        if (ctx.cancelled()) {  // the caller's own race or hedge was decided elsewhere
          run.stop();
          cancel->store(true, std::memory_order_release);
        }
        const Instant now = ctx.now();
        const HedgeRun::Step step = run.next(now);
        if (step.kind == HedgeRun::StepKind::kFinish) break;
        if (step.kind == HedgeRun::StepKind::kLaunch) {
          Copy& c = copies.emplace_back(ctx, ctx.random->next_u64(), cancel);
          const uint32_t i = step.copy;
          threads.emplace_back([this, &c, &mu, &cv, &ends, i] {
            Result<T> r = child_->run(c.ctx);
            const Instant at = c.ctx.now();
            std::lock_guard g(mu);
            c.result = std::move(r);
            c.ended = at;
            ends.push_back(i);
            cv.notify_one();
          });
          continue;
        }
        Duration wait = kHedgePollSlice;
        if (step.until != sdk::kInstantMax) wait = std::clamp(step.until - now, Duration(0), kHedgePollSlice);
        cv.wait_for(lk, wait, [&] { return !ends.empty(); });
      }
    }
    cancel->store(true, std::memory_order_release);  // the losers (if any) may stop now
    threads.clear();                                  // joins every copy
    if (auto w = run.winner()) return std::move(*copies[*w].result);
    if (copies.empty()) return fail(ErrorCode::kTimeout, "cancelled before the first copy started");
    return std::move(*copies[0].result);
  }

 private:
  std::shared_ptr<HedgePolicy> policy_;
  StagePtr<T> child_;
};

}  // namespace detail

// ---- stage factories (building in code) ----
template <class T>
StagePtr<T> call_stage(std::string id, std::function<Result<T>(Context&)> fn) {
  return std::make_shared<detail::CallStage<T>>(std::move(id), std::move(fn));
}
template <class T>
StagePtr<T> sequence_stage(std::string id, std::vector<StagePtr<T>> steps) {
  return std::make_shared<detail::SequenceStage<T>>(std::move(id), std::move(steps));
}
template <class T>
StagePtr<T> retry_stage(std::string id, std::shared_ptr<const RetryPolicy> p, StagePtr<T> child) {
  return std::make_shared<detail::RetryStage<T>>(std::move(id), std::move(p), std::move(child));
}
template <class T>
StagePtr<T> breaker_stage(std::string id, std::shared_ptr<CircuitBreaker> b, StagePtr<T> child) {
  return std::make_shared<detail::BreakerStage<T>>(std::move(id), std::move(b), std::move(child));
}
template <class T>
StagePtr<T> limiter_stage(std::string id, std::shared_ptr<RateLimiter> l, StagePtr<T> child,
                          Duration max_wait = Duration(0)) {
  return std::make_shared<detail::LimiterStage<T>>(std::move(id), std::move(l), nullptr, max_wait, std::move(child));
}
template <class T>
StagePtr<T> keyed_limiter_stage(std::string id, std::shared_ptr<KeyedRateLimiter> l, StagePtr<T> child,
                                Duration max_wait = Duration(0)) {
  return std::make_shared<detail::LimiterStage<T>>(std::move(id), nullptr, std::move(l), max_wait, std::move(child));
}
template <class T>
StagePtr<T> timeout_stage(std::string id, Timeout t, StagePtr<T> child) {
  return std::make_shared<detail::TimeoutStage<T>>(std::move(id), std::move(t), std::move(child));
}
template <class T>
StagePtr<T> fallback_stage(std::string id, std::vector<StagePtr<T>> chain,
                           const sdk::SignalBus* signals = nullptr) {
  return std::make_shared<detail::FallbackStage<T>>(std::move(id), std::move(chain), signals);
}
template <class T>
StagePtr<T> race_stage(std::string id, std::vector<StagePtr<T>> branches) {
  return std::make_shared<detail::RaceStage<T>>(std::move(id), std::move(branches));
}
template <class T>
StagePtr<T> filter_stage(std::string id, std::string pred_name, std::function<bool(const Context&)> pred,
                         StagePtr<T> child) {
  return std::make_shared<detail::FilterStage<T>>(std::move(id), std::move(pred_name), std::move(pred), std::move(child));
}
template <class T>
StagePtr<T> switch_stage(std::string id, std::function<std::string(const Context&)> sel,
                         std::vector<std::pair<std::string, StagePtr<T>>> routes, StagePtr<T> dflt = nullptr) {
  return std::make_shared<detail::SwitchStage<T>>(std::move(id), std::move(sel), std::move(routes), std::move(dflt));
}
template <class T>
StagePtr<T> bulkhead_stage(std::string id, std::shared_ptr<Bulkhead> b, StagePtr<T> child) {
  return std::make_shared<detail::BulkheadStage<T>>(std::move(id), std::move(b), std::move(child));
}

template <class T>
StagePtr<T> hedge_stage(std::string id, std::shared_ptr<HedgePolicy> policy, StagePtr<T> child) {
  return std::make_shared<detail::HedgeStage<T>>(std::move(id), std::move(policy), std::move(child));
}

template <class T>
class Pipeline {
 public:
  Pipeline(StagePtr<T> root, uint64_t version = 0, std::string description = {})
      : root_(std::move(root)), version_(version), description_(std::move(description)) {}
  Result<T> run(Context& ctx) const { return root_->run(ctx); }
  const StagePtr<T>& root() const noexcept { return root_; }
  uint64_t version() const noexcept { return version_; }
  const std::string& description() const noexcept { return description_; }

 private:
  StagePtr<T> root_;
  uint64_t version_;
  std::string description_;
};

// Named building blocks a description may refer to. Register everything before building;
// a Registry is then read-only and may be shared by threads.
template <class T>
class Registry {
 public:
  using Call = std::function<Result<T>(Context&)>;
  void add_call(std::string name, Call fn) { calls_[std::move(name)] = std::move(fn); }
  void add_retry(std::string name, std::shared_ptr<const RetryPolicy> p) { retries_[std::move(name)] = std::move(p); }
  void add_breaker(std::string name, std::shared_ptr<CircuitBreaker> b) { breakers_[std::move(name)] = std::move(b); }
  void add_limiter(std::string name, std::shared_ptr<RateLimiter> l) { limiters_[std::move(name)] = std::move(l); }
  void add_keyed_limiter(std::string name, std::shared_ptr<KeyedRateLimiter> l) { keyed_[std::move(name)] = std::move(l); }
  void add_predicate(std::string name, std::function<bool(const Context&)> p) { predicates_[std::move(name)] = std::move(p); }
  void add_selector(std::string name, std::function<std::string(const Context&)> s) { selectors_[std::move(name)] = std::move(s); }
  void add_bulkhead(std::string name, std::shared_ptr<Bulkhead> b) { bulkheads_[std::move(name)] = std::move(b); }
  // A hedge policy shared by every pipeline version that names it (its latency samples and
  // budget persist across swaps); a hedge stage with inline options gets a policy of its own.
  void add_hedge(std::string name, std::shared_ptr<HedgePolicy> h) { hedges_[std::move(name)] = std::move(h); }
  void set_signals(const sdk::SignalBus* s) { signals_ = s; }

  RegistryNames names() const {
    RegistryNames n;
    for (auto& [k, v] : calls_) n.calls.push_back(k);
    for (auto& [k, v] : retries_) n.retries.push_back(k);
    for (auto& [k, v] : breakers_) n.breakers.push_back(k);
    for (auto& [k, v] : limiters_) n.limiters.push_back(k);
    for (auto& [k, v] : keyed_) n.limiters.push_back(k);
    for (auto& [k, v] : predicates_) n.predicates.push_back(k);
    for (auto& [k, v] : selectors_) n.selectors.push_back(k);
    for (auto& [k, v] : bulkheads_) n.bulkheads.push_back(k);
    for (auto& [k, v] : hedges_) n.hedges.push_back(k);
    return n;
  }

  // Both validation passes, then the stages. kInvalidArgument lists every problem found.
  Result<Pipeline<T>> build(std::string_view json, uint64_t version = 0) const {
    auto spec = parse_pipeline_description(json);
    if (!spec) return std::unexpected(std::move(spec.error()));
    if (auto ok = check_pipeline_references(*spec, names()); !ok) return std::unexpected(std::move(ok.error()));
    return build(*spec, std::string(json), version);
  }

  // The same from a YAML description (see yaml_description_to_json).
  Result<Pipeline<T>> build_yaml(std::string_view yaml, uint64_t version = 0) const {
    auto text = yaml_description_to_json(yaml);
    if (!text) return std::unexpected(std::move(text.error()));
    auto p = build(*text, version);
    if (p) return Pipeline<T>(p->root(), version, std::string(yaml));
    return p;
  }

  // REQUIRES: spec passed both passes against this registry.
  Result<Pipeline<T>> build(const PipelineSpec& spec, std::string description, uint64_t version) const {
    std::unordered_map<std::string, const StageSpec*> by_id;
    for (const auto& s : spec.stages) by_id.emplace(s.id, &s);
    std::unordered_map<std::string, StagePtr<T>> built;
    auto root = make(spec.root, by_id, built);
    if (!root) return std::unexpected(std::move(root.error()));
    return Pipeline<T>(std::move(*root), version, std::move(description));
  }

 private:
  using Built = std::unordered_map<std::string, StagePtr<T>>;
  using ById = std::unordered_map<std::string, const StageSpec*>;

  template <class M>
  static auto find(const M& m, const std::string& k) -> const typename M::mapped_type* {
    auto it = m.find(k);
    return it == m.end() ? nullptr : &it->second;
  }

  // Recursion depth is bounded: pass 2 rejected cycles and there are at most kMaxStages stages.
  Result<StagePtr<T>> make(const std::string& id, const ById& by_id, Built& built) const {
    if (auto it = built.find(id); it != built.end()) return it->second;
    auto sit = by_id.find(id);
    if (sit == by_id.end()) return fail(ErrorCode::kInvalidArgument, "unknown stage '" + id + "'");
    const StageSpec& s = *sit->second;
    std::vector<StagePtr<T>> kids;
    for (const auto& c : s.children) {
      auto k = make(c, by_id, built);
      if (!k) return k;
      kids.push_back(std::move(*k));
    }
    auto missing = [&](std::string_view what) {
      return fail(ErrorCode::kInvalidArgument, s.where + ": no " + std::string(what) + " named '" + s.ref + "' is registered");
    };
    StagePtr<T> out;
    switch (s.kind) {
      case StageKind::kCall: {
        auto* f = find(calls_, s.ref);
        if (!f) return missing("call");
        out = call_stage<T>(s.id, *f);
        break;
      }
      case StageKind::kSequence: out = sequence_stage<T>(s.id, std::move(kids)); break;
      case StageKind::kRetry: {
        auto* p = find(retries_, s.ref);
        if (!p) return missing("retry policy");
        out = retry_stage<T>(s.id, *p, kids.at(0));
        break;
      }
      case StageKind::kBreaker: {
        auto* b = find(breakers_, s.ref);
        if (!b) return missing("breaker");
        out = breaker_stage<T>(s.id, *b, kids.at(0));
        break;
      }
      case StageKind::kLimiter: {
        if (auto* g = find(limiters_, s.ref)) {
          out = limiter_stage<T>(s.id, *g, kids.at(0), s.duration);
        } else if (auto* k = find(keyed_, s.ref)) {
          out = keyed_limiter_stage<T>(s.id, *k, kids.at(0), s.duration);
        } else {
          return missing("limiter");
        }
        break;
      }
      case StageKind::kTimeout: {
        auto t = Timeout::create(s.id, s.duration, signals_);
        if (!t) return std::unexpected(std::move(t.error()));
        out = timeout_stage<T>(s.id, std::move(*t), kids.at(0));
        break;
      }
      case StageKind::kFallback: out = fallback_stage<T>(s.id, std::move(kids), signals_); break;
      case StageKind::kRace: out = race_stage<T>(s.id, std::move(kids)); break;
      case StageKind::kFilter: {
        auto* p = find(predicates_, s.ref);
        if (!p) return missing("predicate");
        out = filter_stage<T>(s.id, s.ref, *p, kids.at(0));
        break;
      }
      case StageKind::kSwitch: {
        auto* sel = find(selectors_, s.ref);
        if (!sel) return missing("selector");
        std::vector<std::pair<std::string, StagePtr<T>>> routes;
        for (const auto& [value, target] : s.routes) {
          auto k = make(target, by_id, built);
          if (!k) return k;
          routes.emplace_back(value, std::move(*k));
        }
        StagePtr<T> dflt;
        if (!s.default_route.empty()) {
          auto k = make(s.default_route, by_id, built);
          if (!k) return k;
          dflt = std::move(*k);
        }
        out = switch_stage<T>(s.id, *sel, std::move(routes), std::move(dflt));
        break;
      }
      case StageKind::kBulkhead: {
        auto* b = find(bulkheads_, s.ref);
        if (!b) return missing("bulkhead");
        out = bulkhead_stage<T>(s.id, *b, kids.at(0));
        break;
      }
      case StageKind::kHedge: {
        std::shared_ptr<HedgePolicy> policy;
        if (!s.ref.empty()) {
          auto* h = find(hedges_, s.ref);
          if (!h) return missing("hedge policy");
          policy = *h;
        } else {
          auto created = HedgePolicy::create({.name = s.id,
                                              .max_hedges = s.hedge.max_hedges,
                                              .delay = s.hedge.delay,
                                              .percentile = s.hedge.percentile,
                                              .window = s.hedge.window,
                                              .min_delay = s.hedge.min_delay,
                                              .max_delay = s.hedge.max_delay,
                                              .budget = nullptr,
                                              .signals = signals_});
          if (!created) return std::unexpected(std::move(created.error()));
          policy = std::move(*created);
        }
        out = hedge_stage<T>(s.id, std::move(policy), kids.at(0));
        break;
      }
    }
    built.emplace(id, out);
    return out;
  }

  std::map<std::string, Call> calls_;
  std::map<std::string, std::shared_ptr<const RetryPolicy>> retries_;
  std::map<std::string, std::shared_ptr<CircuitBreaker>> breakers_;
  std::map<std::string, std::shared_ptr<RateLimiter>> limiters_;
  std::map<std::string, std::shared_ptr<KeyedRateLimiter>> keyed_;
  std::map<std::string, std::function<bool(const Context&)>> predicates_;
  std::map<std::string, std::function<std::string(const Context&)>> selectors_;
  std::map<std::string, std::shared_ptr<Bulkhead>> bulkheads_;
  std::map<std::string, std::shared_ptr<HedgePolicy>> hedges_;
  const sdk::SignalBus* signals_ = nullptr;
};

// The live pipeline of one purpose, swapped atomically at run time. Readers take a snapshot
// (one atomic shared_ptr load) and run it; a swap never disturbs runs in progress. Up to
// kHistory previous versions are kept for rollback(). Thread-safe.
template <class T>
class PipelineSlot {
 public:
  static constexpr size_t kHistory = 8;

  PipelineSlot(std::string name, std::shared_ptr<const Registry<T>> registry,
               const sdk::SignalBus* signals = nullptr)
      : name_(std::move(name)), registry_(std::move(registry)), signals_(signals) {}

  // Validates and builds `json`; on success it becomes live with the next version number and
  // the old one is kept for rollback. On failure the live pipeline is unchanged, the error
  // lists the problems, and sdk::ConfigRejected is emitted.
  Result<uint64_t> apply(std::string_view json, Instant now = Instant{}) {
    return apply_description(json, false, now);
  }
  // The same with a YAML description.
  Result<uint64_t> apply_yaml(std::string_view yaml, Instant now = Instant{}) {
    return apply_description(yaml, true, now);
  }

  // Installs a pipeline built in code.
  uint64_t apply(StagePtr<T> root, Instant now = Instant{}) {
    std::lock_guard lk(mu_);
    uint64_t version = next_version_;
    install(std::make_shared<const Pipeline<T>>(std::move(root), version), now);
    return version;
  }

  // Back to the previous version. kNotFound when there is none.
  Result<uint64_t> rollback(Instant now = Instant{}) {
    std::lock_guard lk(mu_);
    if (history_.empty()) return fail(ErrorCode::kNotFound, "pipeline '" + name_ + "': no previous version to roll back to");
    auto prev = std::move(history_.back());
    history_.pop_back();
    auto cur = live_.load();
    live_.store(prev);
    uint64_t from = cur ? cur->version() : 0;
    sdk::emit_signal(signals_, [&] { return sdk::ConfigRolledBack{name_, from, prev->version(), now}; });
    return prev->version();
  }

  std::shared_ptr<const Pipeline<T>> current() const { return live_.load(); }
  uint64_t version() const {
    auto c = live_.load();
    return c ? c->version() : 0;
  }

  // Runs the live pipeline; kNotFound when nothing was applied yet.
  Result<T> run(Context& ctx) const {
    auto p = live_.load();
    if (!p) return fail(ErrorCode::kNotFound, "pipeline '" + name_ + "' has no version applied");
    return p->run(ctx);
  }

 private:
  Result<uint64_t> apply_description(std::string_view text, bool yaml, Instant now) {
    std::lock_guard lk(mu_);
    uint64_t version = next_version_;
    auto p = yaml ? registry_->build_yaml(text, version) : registry_->build(text, version);
    if (!p) {
      std::string msg = p.error().message;
      sdk::emit_signal(signals_, [&] { return sdk::ConfigRejected{name_, msg, version, now}; });
      return std::unexpected(std::move(p.error()));
    }
    install(std::make_shared<const Pipeline<T>>(std::move(*p)), now);
    return version;
  }

  void install(std::shared_ptr<const Pipeline<T>> p, Instant now) {
    auto old = live_.load();
    if (old) {
      history_.push_back(std::move(old));
      if (history_.size() > kHistory) history_.erase(history_.begin());
    }
    uint64_t v = p->version();
    live_.store(std::move(p));
    ++next_version_;
    sdk::emit_signal(signals_, [&] { return sdk::ConfigApplied{name_, v, now}; });
  }

  std::string name_;
  std::shared_ptr<const Registry<T>> registry_;
  const sdk::SignalBus* signals_;
  std::mutex mu_;  // serialises apply/rollback
  uint64_t next_version_ = 1;
  std::vector<std::shared_ptr<const Pipeline<T>>> history_;
  std::atomic<std::shared_ptr<const Pipeline<T>>> live_;
};

}  // namespace keel::resilience

// The description of a pipeline (parsed from JSON) and its two validation passes:
//   pass 1, syntax: the text is JSON within bounds, the shape is right, every stage has a valid
//           id, a known type and exactly the fields its type needs, of the right types;
//   pass 2, references: `root`, every child and route names a stage, every registered name
//           exists in the registry of its kind, there are no cycles, every stage is reachable.
// Each pass reports every problem it finds, one per line, each naming where it is
// (`stages[2].child`) and what is allowed.
//
// Format:
//   {"root": "edge",
//    "stages": [
//      {"id": "edge",  "type": "limiter",  "limiter": "global", "max_wait_ms": 0, "child": "guard"},
//      {"id": "guard", "type": "breaker",  "breaker": "db", "child": "again"},
//      {"id": "again", "type": "retry",    "policy": "default", "child": "lookup"},
//      {"id": "lookup","type": "fallback", "children": ["primary", "cache"]},
//      {"id": "primary","type": "call",    "call": "db.get"},
//      {"id": "cache", "type": "call",     "call": "cache.get"}]}
//   a hedge stage: {"id": "fast", "type": "hedge", "delay_ms": 20, "max_hedges": 2, "child": "primary"}
//              or {"id": "fast", "type": "hedge", "hedge": "search", "child": "primary"}
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/clock.h"
#include "keel/resilience/error.h"

namespace keel::resilience {

enum class StageKind : uint8_t {
  kCall,       // "call": registered call
  kSequence,   // "children": run in order, stop at the first error, result of the last
  kRetry,      // "policy": registered RetryPolicy, "child"
  kBreaker,    // "breaker": registered CircuitBreaker, "child"
  kLimiter,    // "limiter": registered RateLimiter or KeyedRateLimiter (keyed by Context::key),
               // optional "max_wait_ms" (default 0: do not wait), "child"
  kTimeout,    // "timeout_ms" > 0, "child"
  kFallback,   // "children": first is the primary, the rest fall back in order
  kRace,       // "children": run concurrently, first success wins
  kFilter,     // "predicate": registered predicate over the Context, "child"
  kSwitch,     // "selector": registered selector, "routes": {"value": "stage"}, optional "default"
  kBulkhead,   // "bulkhead": registered Bulkhead, "child"
  kHedge,      // "child", and either "hedge": a registered HedgePolicy, or inline options:
               // "delay_ms" (required), "max_hedges", "percentile", "window", "min_delay_ms",
               // "max_delay_ms" (HedgeOptions' meanings, bounds and defaults)
};
std::string_view stage_kind_name(StageKind k) noexcept;

struct StageSpec {
  std::string id;
  StageKind kind = StageKind::kCall;
  std::string ref;                    // the registered name, for the kinds that have one
  std::vector<std::string> children;  // wrappers: exactly one
  std::vector<std::pair<std::string, std::string>> routes;  // switch: value -> stage id
  std::string default_route;          // switch: stage id or empty
  sdk::Duration duration{0};          // timeout: the timeout; limiter: max wait
  struct Hedge {                      // hedge with inline options (ref empty): HedgeOptions
    uint32_t max_hedges = 1;
    sdk::Duration delay{0};
    double percentile = 0;
    uint32_t window = 128;
    sdk::Duration min_delay = std::chrono::milliseconds(1);
    sdk::Duration max_delay = std::chrono::seconds(1);
  } hedge;
  std::string where;                  // "stages[3]" for messages
};

struct PipelineSpec {
  std::string root;
  std::vector<StageSpec> stages;
};

// Names the registry knows, per kind; pass 2 checks references against them.
struct RegistryNames {
  std::vector<std::string> calls, retries, breakers, limiters, predicates, selectors, bulkheads, hedges;
};

// Bounds of pass 1.
inline constexpr size_t kMaxDescriptionBytes = 1 << 20;
inline constexpr size_t kMaxStages = 1024;
inline constexpr size_t kMaxChildren = 64;
inline constexpr size_t kMaxNesting = 16;
inline constexpr size_t kMaxIdLength = 128;

// Pass 1. kInvalidArgument with every problem, one per line.
Result<PipelineSpec> parse_pipeline_description(std::string_view json);
// Pass 2. kInvalidArgument with every problem, one per line.
Status check_pipeline_references(const PipelineSpec& spec, const RegistryNames& names);

// The same description written in YAML, converted to its JSON text (then validated as JSON).
// Plain scalars that look like integers or booleans become numbers and booleans. Bounded: size,
// nesting and the node count after alias expansion. Needs the optional yaml-cpp dependency:
// without it, kInvalidArgument says so.
Result<std::string> yaml_description_to_json(std::string_view yaml);
bool yaml_descriptions_supported() noexcept;

}  // namespace keel::resilience

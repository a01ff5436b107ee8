#include "keel/resilience/pipeline_spec.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace keel::resilience {

using json = nlohmann::json;

std::string_view stage_kind_name(StageKind k) noexcept {
  switch (k) {
    case StageKind::kCall: return "call";
    case StageKind::kSequence: return "sequence";
    case StageKind::kRetry: return "retry";
    case StageKind::kBreaker: return "breaker";
    case StageKind::kLimiter: return "limiter";
    case StageKind::kTimeout: return "timeout";
    case StageKind::kFallback: return "fallback";
    case StageKind::kRace: return "race";
    case StageKind::kFilter: return "filter";
    case StageKind::kSwitch: return "switch";
    case StageKind::kBulkhead: return "bulkhead";
    case StageKind::kHedge: return "hedge";
  }
  return "unknown";
}

namespace {

constexpr std::string_view kAllowedTypes =
    "call, sequence, retry, breaker, limiter, timeout, fallback, race, filter, switch, bulkhead, hedge";

struct TypeInfo {
  StageKind kind;
  const char* ref_field;  // nullptr: none
  bool one_child;         // "child"
  bool many_children;     // "children"
};

const std::unordered_map<std::string, TypeInfo>& types() {
  static const std::unordered_map<std::string, TypeInfo> t = {
      {"call", {StageKind::kCall, "call", false, false}},
      {"sequence", {StageKind::kSequence, nullptr, false, true}},
      {"retry", {StageKind::kRetry, "policy", true, false}},
      {"breaker", {StageKind::kBreaker, "breaker", true, false}},
      {"limiter", {StageKind::kLimiter, "limiter", true, false}},
      {"timeout", {StageKind::kTimeout, nullptr, true, false}},
      {"fallback", {StageKind::kFallback, nullptr, false, true}},
      {"race", {StageKind::kRace, nullptr, false, true}},
      {"filter", {StageKind::kFilter, "predicate", true, false}},
      {"switch", {StageKind::kSwitch, "selector", false, false}},
      {"bulkhead", {StageKind::kBulkhead, "bulkhead", true, false}},
      {"hedge", {StageKind::kHedge, nullptr, true, false}},
  };
  return t;
}

bool valid_id(const std::string& s) {
  if (s.empty() || s.size() > kMaxIdLength) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
  });
}

// Nesting depth outside strings, so that the JSON parser never sees deep input.
size_t max_nesting(std::string_view s) {
  size_t depth = 0, max = 0;
  bool in_str = false, esc = false;
  for (char c : s) {
    if (in_str) {
      if (esc) esc = false;
      else if (c == '\\') esc = true;
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') in_str = true;
    else if (c == '{' || c == '[') max = std::max(max, ++depth);
    else if ((c == '}' || c == ']') && depth > 0) --depth;
  }
  return max;
}

std::string type_of(const json& j) { return j.type_name(); }

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += '\n';
    out += v[i];
  }
  return out;
}

// A hedge stage names a registered policy ("hedge") or carries its options inline.
void parse_hedge(const json& js, StageSpec& s, std::set<std::string>& allowed, std::vector<std::string>& problems) {
  static const char* const kInline[] = {"delay_ms", "max_hedges", "percentile", "window", "min_delay_ms", "max_delay_ms"};
  allowed.insert("hedge");
  for (const char* f : kInline) allowed.insert(f);
  if (js.contains("hedge")) {
    if (!js["hedge"].is_string() || js["hedge"].get<std::string>().empty()) {
      problems.push_back(s.where + ".hedge: must be the name of a registered hedge policy");
    } else {
      s.ref = js["hedge"].get<std::string>();
    }
    for (const char* f : kInline)
      if (js.contains(f))
        problems.push_back(s.where + "." + f + ": a hedge stage naming a registered policy (\"hedge\") takes its options "
                           "from that policy; give either \"hedge\" or inline options, not both");
    return;
  }
  auto ms = [&](const char* f, uint64_t lo, uint64_t hi, bool required, sdk::Duration& out) {
    if (!js.contains(f)) {
      if (required)
        problems.push_back(s.where + "." + f + ": a hedge stage needs \"" + f + "\", an integer in [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "] (or \"hedge\", a registered policy)");
      return;
    }
    const json& v = js[f];
    if (!v.is_number_unsigned() || v.get<uint64_t>() < lo || v.get<uint64_t>() > hi) {
      problems.push_back(s.where + "." + f + ": must be an integer in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
      return;
    }
    out = std::chrono::milliseconds(v.get<uint64_t>());
  };
  auto count = [&](const char* f, uint32_t lo, uint32_t hi, uint32_t& out) {
    if (!js.contains(f)) return;
    const json& v = js[f];
    if (!v.is_number_unsigned() || v.get<uint64_t>() < lo || v.get<uint64_t>() > hi) {
      problems.push_back(s.where + "." + f + ": must be an integer in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
      return;
    }
    out = static_cast<uint32_t>(v.get<uint64_t>());
  };
  ms("delay_ms", 1, 86'400'000, true, s.hedge.delay);
  count("max_hedges", 1, 16, s.hedge.max_hedges);
  count("window", 8, 65536, s.hedge.window);
  if (js.contains("percentile")) {
    const json& v = js["percentile"];
    double p = v.is_number() ? v.get<double>() : -1;
    if (!v.is_number() || !(p == 0 || (p > 0 && p < 100))) {
      problems.push_back(s.where + ".percentile: must be a number, 0 (fixed delay) or in (0, 100) (adaptive delay)");
    } else {
      s.hedge.percentile = p;
    }
  }
  const size_t before = problems.size();
  ms("min_delay_ms", 1, 86'400'000, false, s.hedge.min_delay);
  ms("max_delay_ms", 1, 86'400'000, false, s.hedge.max_delay);
  const bool bounds_ok = problems.size() == before;
  if (bounds_ok && s.hedge.max_delay < s.hedge.min_delay)
    problems.push_back(s.where + ".max_delay_ms: must be >= min_delay_ms (" +
                       std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(s.hedge.min_delay).count()) +
                       ")");
}

}  // namespace

namespace {
Result<PipelineSpec> parse_checked(std::string_view text);
}

Result<PipelineSpec> parse_pipeline_description(std::string_view text) {
  // nlohmann reports type and range problems by exceptions; none may leave the module.
  try {
    return parse_checked(text);
  } catch (const json::exception& e) {
    return fail(ErrorCode::kInvalidArgument, std::string("description is not valid: ") + e.what());
  }
}

namespace {
Result<PipelineSpec> parse_checked(std::string_view text) {
  if (text.size() > kMaxDescriptionBytes)
    return fail(ErrorCode::kInvalidArgument, "description is " + std::to_string(text.size()) +
                                                 " bytes; at most " + std::to_string(kMaxDescriptionBytes) + " allowed");
  if (size_t d = max_nesting(text); d > kMaxNesting)
    return fail(ErrorCode::kInvalidArgument, "description nests " + std::to_string(d) + " levels deep; at most " +
                                                 std::to_string(kMaxNesting) + " allowed");
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    return fail(ErrorCode::kInvalidArgument, std::string("description is not valid JSON: ") + e.what());
  }
  std::vector<std::string> problems;
  if (!doc.is_object())
    return fail(ErrorCode::kInvalidArgument, "description must be a JSON object with \"root\" and \"stages\", got " +
                                                 type_of(doc));
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.key() != "root" && it.key() != "stages" && it.key() != "version")
      problems.push_back("unknown top-level field \"" + it.key() + "\"; allowed: root, stages, version");
  }
  PipelineSpec spec;
  if (!doc.contains("root") || !doc["root"].is_string()) {
    problems.push_back("\"root\" must be a string naming the outermost stage");
  } else {
    spec.root = doc["root"].get<std::string>();
  }
  if (doc.contains("version") && !doc["version"].is_number_unsigned())
    problems.push_back("\"version\" must be a non-negative integer");
  if (!doc.contains("stages") || !doc["stages"].is_array() || doc["stages"].empty()) {
    problems.push_back("\"stages\" must be a non-empty array of stage objects");
    return fail(ErrorCode::kInvalidArgument, join(problems));
  }
  const json& stages = doc["stages"];
  if (stages.size() > kMaxStages) {
    problems.push_back("\"stages\" has " + std::to_string(stages.size()) + " entries; at most " +
                       std::to_string(kMaxStages) + " allowed");
    return fail(ErrorCode::kInvalidArgument, join(problems));
  }
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < stages.size(); ++i) {
    const json& js = stages[i];
    std::string where = "stages[" + std::to_string(i) + "]";
    if (!js.is_object()) {
      problems.push_back(where + ": must be an object, got " + type_of(js));
      continue;
    }
    StageSpec s;
    s.where = where;
    if (!js.contains("id") || !js["id"].is_string() || !valid_id(js["id"].get<std::string>())) {
      problems.push_back(where + ".id: must be a string of 1.." + std::to_string(kMaxIdLength) +
                         " characters from [A-Za-z0-9._-]");
    } else {
      s.id = js["id"].get<std::string>();
      s.where = where + " ('" + s.id + "')";
      if (!seen.insert(s.id).second) problems.push_back(s.where + ".id: '" + s.id + "' is used by an earlier stage");
    }
    if (!js.contains("type") || !js["type"].is_string()) {
      problems.push_back(s.where + ".type: must be one of " + std::string(kAllowedTypes));
      continue;
    }
    std::string type = js["type"].get<std::string>();
    auto ti = types().find(type);
    if (ti == types().end()) {
      problems.push_back(s.where + ".type: unknown type \"" + type + "\"; allowed: " + std::string(kAllowedTypes));
      continue;
    }
    const TypeInfo& info = ti->second;
    s.kind = info.kind;
    std::set<std::string> allowed = {"id", "type"};
    if (info.ref_field) {
      allowed.insert(info.ref_field);
      if (!js.contains(info.ref_field) || !js[info.ref_field].is_string() || js[info.ref_field].get<std::string>().empty()) {
        problems.push_back(s.where + "." + info.ref_field + ": a " + type + " stage needs \"" + info.ref_field +
                           "\", the name of a registered " + (type == "call" ? std::string("call") : std::string(info.ref_field)));
      } else {
        s.ref = js[info.ref_field].get<std::string>();
      }
    }
    if (info.one_child) {
      allowed.insert("child");
      if (!js.contains("child") || !js["child"].is_string()) {
        problems.push_back(s.where + ".child: a " + type + " stage needs \"child\", the id of the stage it wraps");
      } else {
        s.children.push_back(js["child"].get<std::string>());
      }
    }
    if (info.many_children) {
      allowed.insert("children");
      const json* c = js.contains("children") ? &js["children"] : nullptr;
      if (!c || !c->is_array() || c->empty() || c->size() > kMaxChildren) {
        problems.push_back(s.where + ".children: a " + type + " stage needs \"children\", an array of 1.." +
                           std::to_string(kMaxChildren) + " stage ids");
      } else {
        for (size_t k = 0; k < c->size(); ++k) {
          if (!(*c)[k].is_string()) {
            problems.push_back(s.where + ".children[" + std::to_string(k) + "]: must be a stage id string");
          } else {
            s.children.push_back((*c)[k].get<std::string>());
          }
        }
      }
    }
    if (info.kind == StageKind::kTimeout) {
      allowed.insert("timeout_ms");
      if (!js.contains("timeout_ms") || !js["timeout_ms"].is_number_unsigned() || js["timeout_ms"].get<uint64_t>() == 0 ||
          js["timeout_ms"].get<uint64_t>() > 86'400'000) {
        problems.push_back(s.where + ".timeout_ms: a timeout stage needs \"timeout_ms\", an integer in [1, 86400000]");
      } else {
        s.duration = std::chrono::milliseconds(js["timeout_ms"].get<uint64_t>());
      }
    }
    if (info.kind == StageKind::kLimiter) {
      allowed.insert("max_wait_ms");
      if (js.contains("max_wait_ms")) {
        if (!js["max_wait_ms"].is_number_unsigned() || js["max_wait_ms"].get<uint64_t>() > 86'400'000) {
          problems.push_back(s.where + ".max_wait_ms: must be an integer in [0, 86400000]");
        } else {
          s.duration = std::chrono::milliseconds(js["max_wait_ms"].get<uint64_t>());
        }
      }
    }
    if (info.kind == StageKind::kHedge) parse_hedge(js, s, allowed, problems);
    if (info.kind == StageKind::kSwitch) {
      allowed.insert("routes");
      allowed.insert("default");
      const json* r = js.contains("routes") ? &js["routes"] : nullptr;
      if (!r || !r->is_object() || r->empty() || r->size() > kMaxChildren) {
        problems.push_back(s.where + ".routes: a switch stage needs \"routes\", an object of 1.." +
                           std::to_string(kMaxChildren) + " entries {\"value\": \"stage id\"}");
      } else {
        for (auto it = r->begin(); it != r->end(); ++it) {
          if (!it.value().is_string()) {
            problems.push_back(s.where + ".routes." + it.key() + ": must be a stage id string");
          } else {
            s.routes.emplace_back(it.key(), it.value().get<std::string>());
          }
        }
      }
      if (js.contains("default")) {
        if (!js["default"].is_string()) problems.push_back(s.where + ".default: must be a stage id string");
        else s.default_route = js["default"].get<std::string>();
      }
    }
    for (auto it = js.begin(); it != js.end(); ++it) {
      if (!allowed.count(it.key())) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        problems.push_back(s.where + ": unknown field \"" + it.key() + "\" for a " + type + " stage; allowed: " + list);
      }
    }
    spec.stages.push_back(std::move(s));
  }
  if (!problems.empty()) return fail(ErrorCode::kInvalidArgument, join(problems));
  return spec;
}
}  // namespace

Status check_pipeline_references(const PipelineSpec& spec, const RegistryNames& names) {
  std::vector<std::string> problems;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < spec.stages.size(); ++i) index.emplace(spec.stages[i].id, i);
  auto has = [](const std::vector<std::string>& v, const std::string& n) {
    return std::find(v.begin(), v.end(), n) != v.end();
  };
  auto list = [](const std::vector<std::string>& v) {
    if (v.empty()) return std::string("(none registered)");
    std::string out;
    for (const auto& n : v) out += (out.empty() ? "" : ", ") + n;
    return out;
  };
  if (!index.count(spec.root)) problems.push_back("root: no stage has id '" + spec.root + "'");
  // Edges of each stage, for the reference and cycle checks.
  std::vector<std::vector<size_t>> edges(spec.stages.size());
  for (size_t i = 0; i < spec.stages.size(); ++i) {
    const StageSpec& s = spec.stages[i];
    auto edge = [&](const std::string& target, const std::string& field) {
      auto it = index.find(target);
      if (it == index.end()) {
        problems.push_back(s.where + "." + field + ": no stage has id '" + target + "'");
      } else {
        edges[i].push_back(it->second);
      }
    };
    for (size_t k = 0; k < s.children.size(); ++k)
      edge(s.children[k], s.children.size() == 1 && s.kind != StageKind::kSequence && s.kind != StageKind::kFallback &&
                                  s.kind != StageKind::kRace
                              ? "child"
                              : "children[" + std::to_string(k) + "]");
    for (const auto& [value, target] : s.routes) edge(target, "routes." + value);
    if (!s.default_route.empty()) edge(s.default_route, "default");
    const std::vector<std::string>* reg = nullptr;
    const char* what = nullptr;
    switch (s.kind) {
      case StageKind::kCall: reg = &names.calls; what = "call"; break;
      case StageKind::kRetry: reg = &names.retries; what = "retry policy"; break;
      case StageKind::kBreaker: reg = &names.breakers; what = "breaker"; break;
      case StageKind::kLimiter: reg = &names.limiters; what = "limiter"; break;
      case StageKind::kFilter: reg = &names.predicates; what = "predicate"; break;
      case StageKind::kSwitch: reg = &names.selectors; what = "selector"; break;
      case StageKind::kBulkhead: reg = &names.bulkheads; what = "bulkhead"; break;
      case StageKind::kHedge:
        if (!s.ref.empty()) {  // inline options: nothing to look up
          reg = &names.hedges;
          what = "hedge policy";
        }
        break;
      default: break;
    }
    if (reg && !has(*reg, s.ref))
      problems.push_back(s.where + ": no " + std::string(what) + " named '" + s.ref + "' is registered; registered: " +
                         list(*reg));
  }
  if (!problems.empty()) return fail(ErrorCode::kInvalidArgument, join(problems));
  // Cycles: iterative DFS with colours (white 0, grey 1, black 2), bounded by stages + edges.
  std::vector<uint8_t> colour(spec.stages.size(), 0);
  for (size_t start = 0; start < spec.stages.size(); ++start) {
    if (colour[start] != 0) continue;
    std::vector<std::pair<size_t, size_t>> stack = {{start, 0}};
    colour[start] = 1;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < edges[node].size()) {
        size_t to = edges[node][next++];
        if (colour[to] == 1) {
          std::string cycle;
          bool on = false;
          for (const auto& fr : stack) {
            if (fr.first == to) on = true;
            if (on) cycle += spec.stages[fr.first].id + " -> ";
          }
          cycle += spec.stages[to].id;
          problems.push_back("cycle: " + cycle + "; a stage may not contain itself");
          colour[to] = 2;  // report each cycle once
        } else if (colour[to] == 0) {
          colour[to] = 1;
          stack.push_back({to, 0});
        }
      } else {
        colour[node] = 2;
        stack.pop_back();
      }
    }
  }
  if (problems.empty()) {
    // Reachability from root.
    std::vector<bool> reached(spec.stages.size(), false);
    std::vector<size_t> stack = {index.at(spec.root)};
    reached[stack[0]] = true;
    while (!stack.empty()) {
      size_t n = stack.back();
      stack.pop_back();
      for (size_t to : edges[n])
        if (!reached[to]) {
          reached[to] = true;
          stack.push_back(to);
        }
    }
    for (size_t i = 0; i < spec.stages.size(); ++i)
      if (!reached[i]) problems.push_back(spec.stages[i].where + ": not reachable from root '" + spec.root + "'");
  }
  if (!problems.empty()) return fail(ErrorCode::kInvalidArgument, join(problems));
  return {};
}

}  // namespace keel::resilience

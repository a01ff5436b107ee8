// YAML descriptions: converted to the JSON form, then validated like JSON. Built when the
// Debian package libyaml-cpp-dev is installed (KEEL_SDK_HAVE_YAML).
#include <nlohmann/json.hpp>

#include "keel/resilience/pipeline_spec.h"

#ifdef KEEL_SDK_HAVE_YAML
#include <yaml-cpp/yaml.h>
#endif

namespace keel::resilience {

#ifdef KEEL_SDK_HAVE_YAML
namespace {

using json = nlohmann::json;

// Aliases can make a small document expand exponentially; conversion stops at this many nodes.
constexpr size_t kMaxYamlNodes = 100'000;

struct Converter {
  size_t nodes = 0;
  std::string problem;

  bool convert(const YAML::Node& n, size_t depth, json& out) {
    if (++nodes > kMaxYamlNodes) {
      problem = "description expands to more than " + std::to_string(kMaxYamlNodes) + " nodes (aliases?)";
      return false;
    }
    if (depth > kMaxNesting) {
      problem = "description nests more than " + std::to_string(kMaxNesting) + " levels deep";
      return false;
    }
    switch (n.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined: out = nullptr; return true;
      case YAML::NodeType::Scalar: {
        const std::string& s = n.Scalar();
        if (n.Tag() == "?") {  // a plain (unquoted) scalar: may be a number or a boolean
          if (s == "true") {
            out = true;
            return true;
          }
          if (s == "false") {
            out = false;
            return true;
          }
          if (!s.empty() && s.size() < 20 && s.find_first_not_of("0123456789") == std::string::npos) {
            out = std::stoull(s);
            return true;
          }
          if (s.size() > 1 && s.size() < 20 && s[0] == '-' && s.find_first_not_of("0123456789", 1) == std::string::npos) {
            out = std::stoll(s);
            return true;
          }
        }
        out = s;
        return true;
      }
      case YAML::NodeType::Sequence: {
        out = json::array();
        for (const auto& item : n) {
          json v;
          if (!convert(item, depth + 1, v)) return false;
          out.push_back(std::move(v));
        }
        return true;
      }
      case YAML::NodeType::Map: {
        out = json::object();
        for (const auto& kv : n) {
          if (!kv.first.IsScalar()) {
            problem = "mapping keys must be plain strings";
            return false;
          }
          json v;
          if (!convert(kv.second, depth + 1, v)) return false;
          out[kv.first.Scalar()] = std::move(v);
        }
        return true;
      }
    }
    return true;
  }
};

}  // namespace

Result<std::string> yaml_description_to_json(std::string_view yaml) {
  if (yaml.size() > kMaxDescriptionBytes)
    return fail(ErrorCode::kInvalidArgument, "description is " + std::to_string(yaml.size()) + " bytes; at most " +
                                                 std::to_string(kMaxDescriptionBytes) + " allowed");
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalidArgument, std::string("description is not valid YAML: ") + e.what());
  }
  Converter c;
  json out;
  try {
    if (!c.convert(root, 0, out)) return fail(ErrorCode::kInvalidArgument, c.problem);
  } catch (const YAML::Exception& e) {
    return fail(ErrorCode::kInvalidArgument, std::string("description is not valid YAML: ") + e.what());
  }
  return out.dump();
}

bool yaml_descriptions_supported() noexcept { return true; }

#else

Result<std::string> yaml_description_to_json(std::string_view) {
  return fail(ErrorCode::kInvalidArgument,
              "YAML descriptions are not supported by this build (install libyaml-cpp-dev and rebuild); use JSON");
}

bool yaml_descriptions_supported() noexcept { return false; }

#endif

}  // namespace keel::resilience

// Pipeline descriptions (JSON and YAML) from untrusted text: both validation passes and the
// YAML conversion must answer every input with a value or a clear error, bounded in time and
// memory, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "keel/resilience/pipeline_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace keel::resilience;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  static const RegistryNames names = {{"db.get", "cache.get"}, {"default"}, {"db"}, {"edge"}, {"ok"}, {"tier"}, {"pool"}, {"search"}};
  auto check = [&](std::string_view json) {
    auto spec = parse_pipeline_description(json);
    if (!spec) {
      if (spec.error().message.empty()) __builtin_trap();
      return;
    }
    auto refs = check_pipeline_references(*spec, names);
    if (!refs && refs.error().message.empty()) __builtin_trap();
  };
  check(text);
  auto converted = yaml_description_to_json(text);
  if (converted) check(*converted);
  return 0;
}

// libFuzzer target for replicated effects (src/dht/effect.h), patches and their delta ops
// (src/storage/delta.h) included: arbitrary bytes applied to an engine holding one value of
// each type either apply or are refused with an error that says why (kCorruption for malformed
// bytes, the engine's own error for a value it refuses, such as a negative deadline), never
// crash, hang or allocate beyond the limits; the same bytes applied as a bare delta to a value
// of each type apply or are refused with kCorruption.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "dht/effect.h"
#include "storage/delta.h"
#include "storage/memory/memory_engine.h"

namespace {
using keel::storage::Value;
using keel::storage::ValueType;

Value seed_value(ValueType t) {
  Value v;
  v.type = t;
  switch (t) {
    case ValueType::kHash: v.hash["f"] = "v"; break;
    case ValueType::kList: v.list.push_back("a"); v.list.push_back("b"); break;
    case ValueType::kSet: v.set.insert("m"); break;
    case ValueType::kZSet: v.zset.set("m", 1); break;
    case ValueType::kStream: {
      std::string_view fv[] = {"f", "v"};
      v.stream.append({1, 1}, fv);
      v.stream.groups()["g"].consumers["c"];
      break;
    }
    default: v.str = "s"; break;
  }
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  keel::storage::EngineConfig c;
  c.kind = keel::storage::EngineConfig::Kind::kMemory;
  c.partitions = 1;
  auto engine = keel::storage::make_memory_engine(c, 1);
  const ValueType types[] = {ValueType::kString, ValueType::kHash, ValueType::kList,
                             ValueType::kSet, ValueType::kZSet, ValueType::kStream};
  for (auto t : types) {
    std::string key = "k";
    key += static_cast<char>('0' + static_cast<int>(t));
    KEEL_ASSERT(engine->put(0, key, seed_value(t), 1));
  }
  if (auto st = keel::dht::apply_effect(*engine, 0, in, 1); !st) KEEL_ASSERT(!st.error().message.empty());
  for (auto t : types) {
    Value v = seed_value(t);
    if (auto st = keel::storage::apply_delta(v, in); !st) KEEL_ASSERT(st.error().code == keel::Errc::kCorruption);
  }
  return 0;
}

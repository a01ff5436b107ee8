// libFuzzer target for the replication message codec (src/replication/copy.h): arbitrary bytes
// decode to a message or an error, never crash or allocate beyond the limits; whatever decodes
// re-encodes to the same bytes (the encoding is canonical) and decodes again.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "replication/copy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (auto m = keel::replication::decode(in)) {
    std::string bytes = keel::replication::encode(*m);
    auto again = keel::replication::decode(bytes);
    KEEL_ASSERT(again && keel::replication::encode(*again) == bytes);
  }
  return 0;
}

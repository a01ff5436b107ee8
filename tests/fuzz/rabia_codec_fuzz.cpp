// libFuzzer target for the Rabia message/record/snapshot codec and the metadata command and
// snapshot codec: arbitrary bytes must decode to a value or an error, never crash or allocate
// beyond the limits; whatever decodes re-encodes to bytes that decode to the same value.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "consensus/rabia/codec.h"
#include "meta/store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  keel::rabia::Limits lim;
  lim.max_app_state_bytes = 1 << 16;
  if (auto m = keel::rabia::decode_message(in, lim)) {
    auto again = keel::rabia::decode_message(keel::rabia::encode(*m), lim);
    KEEL_ASSERT(again && *again == *m);
  }
  if (auto r = keel::rabia::decode_record(in, lim)) {
    auto again = keel::rabia::decode_record(keel::rabia::encode(*r), lim);
    KEEL_ASSERT(again && *again == *r);
  }
  if (auto s = keel::rabia::decode_snapshot(in, lim)) {
    auto again = keel::rabia::decode_snapshot(keel::rabia::encode(*s), lim);
    KEEL_ASSERT(again && *again == *s);
  }
  if (auto c = keel::meta::decode_command(in)) {
    keel::meta::Store store;
    (void)store.apply(*c);  // valid or refused with a reason; never a crash
    auto again = keel::meta::decode_command(keel::meta::encode(*c));
    KEEL_ASSERT(again.has_value());
  }
  if (auto st = keel::meta::Store::restore(in)) {
    auto again = keel::meta::Store::restore(st->snapshot());
    KEEL_ASSERT(again && *again == *st);
  }
  return 0;
}

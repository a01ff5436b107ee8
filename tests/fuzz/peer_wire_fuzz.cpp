// libFuzzer target for the peer frame codec and its payload decoders: arbitrary bytes fed in
// chunks whose size comes from the input. The decoder must never crash, return a frame larger
// than its limit, or buffer more than one frame plus one chunk; payload decoders must reject or
// round-trip.
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/assert.h"
#include "cluster/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  keel::cluster::WireLimits lim{1 << 12};
  keel::cluster::FrameDecoder d(lim);
  size_t chunk = (data[0] % 31) + 1;
  for (size_t pos = 1; pos < size; pos += chunk) {
    d.feed(std::string_view(reinterpret_cast<const char*>(data) + pos, std::min(chunk, size - pos)));
    for (;;) {
      auto f = d.next();
      if (!f) return 0;
      if (!*f) break;
      auto& fr = **f;
      KEEL_ASSERT(fr.payload.size() <= lim.max_payload_bytes);
      if (fr.type == keel::cluster::MsgType::kHello) {
        if (auto h = keel::cluster::decode_hello(fr.payload)) {
          auto again = keel::cluster::decode_hello(keel::cluster::encode_hello(*h));
          KEEL_ASSERT(again && again->cluster_id == h->cluster_id && again->node_id == h->node_id);
        }
      } else if (fr.type == keel::cluster::MsgType::kHeartbeat) {
        if (auto h = keel::cluster::decode_heartbeat(fr.payload)) {
          auto again = keel::cluster::decode_heartbeat(keel::cluster::encode_heartbeat(*h));
          KEEL_ASSERT(again && again->seq == h->seq && again->last_decided_slot == h->last_decided_slot);
        }
      }
      // Re-encoding a decoded frame gives a frame the decoder accepts again.
      keel::cluster::FrameDecoder d2(lim);
      d2.feed(keel::cluster::encode_frame(fr.type, fr.payload, lim));
      auto f2 = d2.next();
      KEEL_ASSERT(f2 && *f2 && (*f2)->payload == fr.payload);
    }
    KEEL_ASSERT(d.buffered() <= lim.max_payload_bytes + keel::cluster::kFrameHeaderBytes +
                                    keel::cluster::kFrameTrailerBytes + chunk);
  }
  return 0;
}

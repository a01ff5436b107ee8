// The peer protocol's frame codec (DESIGN.md §6). Every message between keel nodes travels in
// one frame:
//
//   offset  size  field
//   0       2     magic 0x4B 0x4C ("KL")
//   2       1     version (kWireVersion)
//   3       1     message type (MsgType)
//   4       4     payload length, big-endian, at most WireLimits::max_payload_bytes
//   8       n     payload
//   8+n     4     checksum: XXH32 (seed 0) of bytes [0, 8+n), big-endian
//
// The decoder is bounded: it never buffers more than one frame's worth beyond what the caller
// fed, rejects an oversized length before reading the payload, and its errors are sticky (a
// stream that produced garbage once is closed by the caller, never resynchronised).
// Payload codecs for the handshake and heartbeat live here too; Rabia messages are encoded by
// cluster/rabia_codec.
#pragma once

#include <vector>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace keel::cluster {

inline constexpr uint8_t kWireMagic0 = 0x4B;  // 'K'
inline constexpr uint8_t kWireMagic1 = 0x4C;  // 'L'
inline constexpr uint8_t kWireVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 8;
inline constexpr size_t kFrameTrailerBytes = 4;

enum class MsgType : uint8_t {
  kHello = 1,      // handshake, sent first on every connection by both sides
  kReject = 2,     // handshake refused; payload is the reason; the sender closes
  kHeartbeat = 3,  // liveness + progress, every heartbeat interval
  kRabia = 4,      // a consensus message (cluster/rabia_codec)
  kData = 5,       // the data plane (src/dht): forwarded commands, partition replication
};
inline constexpr uint8_t kMaxMsgType = 5;
std::string_view msg_type_name(MsgType t);

struct WireLimits {
  uint32_t max_payload_bytes = 16u << 20;
};

struct Frame {
  MsgType type = MsgType::kHello;
  std::string payload;
};

// Encodes one frame. REQUIRES: payload.size() <= limits.max_payload_bytes (callers check
// their own sizes; exceeding it is a bug in the sender, so it asserts).
std::string encode_frame(MsgType type, std::string_view payload, const WireLimits& limits = {});
void append_frame(std::string& out, MsgType type, std::string_view payload, const WireLimits& limits = {});

class FrameDecoder {
 public:
  explicit FrameDecoder(WireLimits limits = {}) : limits_(limits) {}
  // Appends received bytes.
  void feed(std::string_view bytes);
  // The next complete frame, nullopt if more bytes are needed, or an error (bad magic,
  // unsupported version, unknown type, oversized length, checksum mismatch). After an error
  // every later call returns the same error.
  Result<std::optional<Frame>> next();
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  WireLimits limits_;
  std::string buf_;
  size_t pos_ = 0;
  std::optional<Error> failed_;
};

// ---- payloads ----

struct Hello {
  std::string cluster_id;  // must match on both sides
  uint32_t node_id = 0;    // the sender's member id
  uint32_t wire_version = kWireVersion;
  uint64_t config_epoch = 0;
  // The member list this node was bootstrapped with (cluster.peers), sorted; empty for a node
  // started to join an existing cluster. Two nodes at configuration epoch 0 that list
  // different members would count quorums differently: the handshake refuses that.
  std::vector<uint32_t> initial_members;
};
inline constexpr size_t kMaxInitialMembers = 1024;
std::string encode_hello(const Hello& h);
Result<Hello> decode_hello(std::string_view payload);

struct Heartbeat {
  uint32_t node_id = 0;
  uint64_t seq = 0;              // increases by one per heartbeat from this sender
  uint64_t last_decided_slot = 0;
  uint64_t config_epoch = 0;
};
std::string encode_heartbeat(const Heartbeat& h);
Result<Heartbeat> decode_heartbeat(std::string_view payload);

inline constexpr size_t kMaxClusterIdBytes = 128;
inline constexpr size_t kMaxRejectReasonBytes = 1024;

}  // namespace keel::cluster

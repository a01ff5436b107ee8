#include "cluster/wire.h"

#include <xxhash.h>

#include <fmt/format.h>

#include "base/assert.h"
#include "base/codec.h"

namespace keel::cluster {

std::string_view msg_type_name(MsgType t) {
  switch (t) {
    case MsgType::kHello: return "hello";
    case MsgType::kReject: return "reject";
    case MsgType::kHeartbeat: return "heartbeat";
    case MsgType::kRabia: return "rabia";
    case MsgType::kData: return "data";
  }
  return "unknown";
}

namespace {

uint32_t checksum(std::string_view bytes) { return XXH32(bytes.data(), bytes.size(), 0); }

uint32_t load_u32be(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) | (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}

}  // namespace

void append_frame(std::string& out, MsgType type, std::string_view payload, const WireLimits& limits) {
  KEEL_ASSERT(payload.size() <= limits.max_payload_bytes);
  size_t start = out.size();
  Writer w(out);
  w.u8(kWireMagic0);
  w.u8(kWireMagic1);
  w.u8(kWireVersion);
  w.u8(static_cast<uint8_t>(type));
  w.u32be(static_cast<uint32_t>(payload.size()));
  w.raw(payload);
  w.u32be(checksum(std::string_view(out).substr(start)));
}

std::string encode_frame(MsgType type, std::string_view payload, const WireLimits& limits) {
  std::string out;
  out.reserve(kFrameHeaderBytes + payload.size() + kFrameTrailerBytes);
  append_frame(out, type, payload, limits);
  return out;
}

void FrameDecoder::feed(std::string_view bytes) {
  if (failed_) return;
  // Compact before growing so the buffer holds at most one partial frame plus new bytes.
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ > 64 * 1024)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

Result<std::optional<Frame>> FrameDecoder::next() {
  if (failed_) return std::unexpected(*failed_);
  auto fail = [&](Errc code, std::string msg) -> Result<std::optional<Frame>> {
    failed_ = Error{code, "peer frame: " + std::move(msg)};
    return std::unexpected(*failed_);
  };
  size_t have = buf_.size() - pos_;
  const char* p = buf_.data() + pos_;
  // Check each header byte as soon as it arrives so garbage is refused early.
  if (have >= 1 && static_cast<uint8_t>(p[0]) != kWireMagic0)
    return fail(Errc::kCorruption, fmt::format("bad magic byte 0x{:02x} (expected 0x{:02x}): not a keel peer", static_cast<uint8_t>(p[0]), kWireMagic0));
  if (have >= 2 && static_cast<uint8_t>(p[1]) != kWireMagic1)
    return fail(Errc::kCorruption, fmt::format("bad magic byte 0x{:02x} (expected 0x{:02x}): not a keel peer", static_cast<uint8_t>(p[1]), kWireMagic1));
  if (have >= 3 && static_cast<uint8_t>(p[2]) != kWireVersion)
    return fail(Errc::kInvalidArgument, fmt::format("unsupported wire version {} (this node speaks version {})", static_cast<uint8_t>(p[2]), kWireVersion));
  if (have >= 4) {
    uint8_t t = static_cast<uint8_t>(p[3]);
    if (t == 0 || t > kMaxMsgType)
      return fail(Errc::kInvalidArgument, fmt::format("unknown message type {} (allowed: 1..{})", t, kMaxMsgType));
  }
  if (have < kFrameHeaderBytes) return std::optional<Frame>();
  uint32_t len = load_u32be(p + 4);
  if (len > limits_.max_payload_bytes)
    return fail(Errc::kLimitExceeded, fmt::format("payload length {} exceeds the limit of {} bytes", len, limits_.max_payload_bytes));
  size_t total = kFrameHeaderBytes + len + kFrameTrailerBytes;
  if (have < total) return std::optional<Frame>();
  uint32_t want = load_u32be(p + kFrameHeaderBytes + len);
  uint32_t got = checksum(std::string_view(p, kFrameHeaderBytes + len));
  if (want != got)
    return fail(Errc::kCorruption, fmt::format("checksum mismatch (frame says {:08x}, bytes give {:08x})", want, got));
  Frame f;
  f.type = static_cast<MsgType>(static_cast<uint8_t>(p[3]));
  f.payload.assign(p + kFrameHeaderBytes, len);
  pos_ += total;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  return std::optional<Frame>(std::move(f));
}

namespace {

template <class T>
Result<T> check_done(const Reader& r, T v, std::string_view what) {
  if (!r.done())
    return make_error(Errc::kCorruption, fmt::format("{}: {} unexpected trailing bytes", what, r.remaining()));
  return v;
}

#define KEEL_TRY_ASSIGN(lhs, expr)                   \
  do {                                               \
    auto _r = (expr);                                \
    if (!_r) return std::unexpected(_r.error());     \
    lhs = *_r;                                       \
  } while (0)

}  // namespace

std::string encode_hello(const Hello& h) {
  KEEL_ASSERT(h.cluster_id.size() <= kMaxClusterIdBytes);
  std::string out;
  Writer w(out);
  w.bytes(h.cluster_id);
  w.varint(h.node_id);
  w.varint(h.wire_version);
  w.varint(h.config_epoch);
  KEEL_ASSERT(h.initial_members.size() <= kMaxInitialMembers);
  w.varint(h.initial_members.size());
  for (auto id : h.initial_members) w.varint(id);
  return out;
}

Result<Hello> decode_hello(std::string_view payload) {
  Reader r(payload);
  Hello h;
  std::string_view id;
  KEEL_TRY_ASSIGN(id, r.bytes(kMaxClusterIdBytes));
  h.cluster_id = std::string(id);
  uint64_t v = 0;
  KEEL_TRY_ASSIGN(v, r.varint());
  if (v == 0 || v > UINT32_MAX) return make_error(Errc::kCorruption, fmt::format("hello: node id {} out of range 1..2^32-1", v));
  h.node_id = static_cast<uint32_t>(v);
  KEEL_TRY_ASSIGN(v, r.varint());
  if (v > 255) return make_error(Errc::kCorruption, fmt::format("hello: wire version {} out of range", v));
  h.wire_version = static_cast<uint32_t>(v);
  KEEL_TRY_ASSIGN(h.config_epoch, r.varint());
  if (!r.done()) {  // absent in hellos of older nodes
    KEEL_TRY_ASSIGN(v, r.varint());
    if (v > kMaxInitialMembers)
      return make_error(Errc::kCorruption, fmt::format("hello: {} initial members, at most {} allowed", v, kMaxInitialMembers));
    for (uint64_t i = 0, n = v; i < n; ++i) {
      KEEL_TRY_ASSIGN(v, r.varint());
      if (v == 0 || v > UINT32_MAX) return make_error(Errc::kCorruption, fmt::format("hello: member id {} out of range 1..2^32-1", v));
      h.initial_members.push_back(static_cast<uint32_t>(v));
    }
  }
  return check_done(r, std::move(h), "hello");
}

std::string encode_heartbeat(const Heartbeat& h) {
  std::string out;
  Writer w(out);
  w.varint(h.node_id);
  w.varint(h.seq);
  w.varint(h.last_decided_slot);
  w.varint(h.config_epoch);
  return out;
}

Result<Heartbeat> decode_heartbeat(std::string_view payload) {
  Reader r(payload);
  Heartbeat h;
  uint64_t v = 0;
  KEEL_TRY_ASSIGN(v, r.varint());
  if (v == 0 || v > UINT32_MAX) return make_error(Errc::kCorruption, fmt::format("heartbeat: node id {} out of range 1..2^32-1", v));
  h.node_id = static_cast<uint32_t>(v);
  KEEL_TRY_ASSIGN(h.seq, r.varint());
  KEEL_TRY_ASSIGN(h.last_decided_slot, r.varint());
  KEEL_TRY_ASSIGN(h.config_epoch, r.varint());
  return check_done(r, std::move(h), "heartbeat");
}

}  // namespace keel::cluster

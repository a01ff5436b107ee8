#include "cluster/wire.h"

#include <gtest/gtest.h>

#include "base/random.h"

namespace keel::cluster {
namespace {

TEST(Wire, RoundTripsFramesFedByteByByte) {
  std::string stream = encode_frame(MsgType::kRabia, "hello world") + encode_frame(MsgType::kHeartbeat, "") +
                       encode_frame(MsgType::kReject, std::string(100000, 'x'));
  FrameDecoder d;
  std::vector<Frame> got;
  for (char c : stream) {
    d.feed(std::string_view(&c, 1));
    for (;;) {
      auto f = d.next();
      ASSERT_TRUE(f) << f.error().message;
      if (!*f) break;
      got.push_back(std::move(**f));
    }
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, MsgType::kRabia);
  EXPECT_EQ(got[0].payload, "hello world");
  EXPECT_EQ(got[1].type, MsgType::kHeartbeat);
  EXPECT_EQ(got[1].payload, "");
  EXPECT_EQ(got[2].payload.size(), 100000u);
  EXPECT_EQ(d.buffered(), 0u);
}

TEST(Wire, LayoutIsAsDocumented) {
  auto f = encode_frame(MsgType::kHeartbeat, "ab");
  ASSERT_EQ(f.size(), kFrameHeaderBytes + 2 + kFrameTrailerBytes);
  EXPECT_EQ(static_cast<uint8_t>(f[0]), 0x4B);
  EXPECT_EQ(static_cast<uint8_t>(f[1]), 0x4C);
  EXPECT_EQ(static_cast<uint8_t>(f[2]), kWireVersion);
  EXPECT_EQ(static_cast<uint8_t>(f[3]), 3);
  EXPECT_EQ(f.substr(4, 4), std::string("\0\0\0\2", 4));
  EXPECT_EQ(f.substr(8, 2), "ab");
}

Error decode_error(std::string bytes, WireLimits lim = {}) {
  FrameDecoder d(lim);
  d.feed(bytes);
  auto f = d.next();
  EXPECT_FALSE(f);
  auto again = d.next();  // sticky
  EXPECT_FALSE(again);
  return f ? Error{} : f.error();
}

TEST(Wire, RejectsBadMagicVersionTypeLengthAndChecksum) {
  auto good = encode_frame(MsgType::kRabia, "payload");
  auto e = decode_error("GET / HTTP/1.1\r\n");
  EXPECT_EQ(e.code, Errc::kCorruption);
  EXPECT_NE(e.message.find("bad magic"), std::string::npos) << e.message;

  auto v = good;
  v[2] = 9;
  e = decode_error(v);
  EXPECT_NE(e.message.find("unsupported wire version 9"), std::string::npos) << e.message;

  auto t = good;
  t[3] = 77;
  e = decode_error(t);
  EXPECT_NE(e.message.find("unknown message type 77"), std::string::npos) << e.message;

  WireLimits small{16};
  e = decode_error(encode_frame(MsgType::kRabia, std::string(17, 'x')).substr(0, 8), small);
  EXPECT_EQ(e.code, Errc::kLimitExceeded);
  EXPECT_NE(e.message.find("exceeds the limit of 16 bytes"), std::string::npos) << e.message;

  auto c = good;
  c[9] ^= 1;
  e = decode_error(c);
  EXPECT_EQ(e.code, Errc::kCorruption);
  EXPECT_NE(e.message.find("checksum mismatch"), std::string::npos) << e.message;
}

TEST(Wire, EveryFlippedBitIsDetected) {
  auto good = encode_frame(MsgType::kRabia, "some consensus message");
  for (size_t i = 0; i < good.size() * 8; ++i) {
    auto bad = good;
    bad[i / 8] = static_cast<char>(bad[i / 8] ^ (1 << (i % 8)));
    FrameDecoder d;
    d.feed(bad);
    auto f = d.next();
    // Either an error, or (a flipped length bit that asks for more) a frame that is not complete.
    if (f) {
      EXPECT_FALSE(*f) << "bit " << i;
    }
  }
}

TEST(Wire, TruncatedFrameWaitsForMore) {
  auto good = encode_frame(MsgType::kRabia, "abc");
  FrameDecoder d;
  d.feed(good.substr(0, good.size() - 1));
  auto f = d.next();
  ASSERT_TRUE(f);
  EXPECT_FALSE(*f);
  d.feed(good.substr(good.size() - 1));
  f = d.next();
  ASSERT_TRUE(f && *f);
  EXPECT_EQ((*f)->payload, "abc");
}

TEST(Wire, HelloAndHeartbeatRoundTrip) {
  Hello h{"prod-eu", 3, kWireVersion, 7};
  auto d = decode_hello(encode_hello(h));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->cluster_id, "prod-eu");
  EXPECT_EQ(d->node_id, 3u);
  EXPECT_EQ(d->config_epoch, 7u);
  Heartbeat b{2, 99, 12345, 1};
  auto db = decode_heartbeat(encode_heartbeat(b));
  ASSERT_TRUE(db);
  EXPECT_EQ(db->node_id, 2u);
  EXPECT_EQ(db->seq, 99u);
  EXPECT_EQ(db->last_decided_slot, 12345u);
  EXPECT_FALSE(decode_hello(""));
  EXPECT_FALSE(decode_hello(encode_hello(h) + "x"));
  EXPECT_TRUE(d->initial_members.empty());
  // The initial member list travels too; a hello without it (older nodes) still decodes.
  h.initial_members = {1, 2, 3};
  d = decode_hello(encode_hello(h));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->initial_members, (std::vector<uint32_t>{1, 2, 3}));
  std::string old_format = encode_hello(Hello{"prod-eu", 3, kWireVersion, 7});
  old_format.pop_back();  // drop the empty list's count
  d = decode_hello(old_format);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->initial_members.empty());
  // A count beyond the bound is refused before anything is allocated; id 0 is refused.
  std::string big = old_format + "\xff\x7f";
  auto e = decode_hello(big);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("at most 1024"), std::string::npos) << e.error().message;
  std::string zero_id = old_format + std::string("\x01\x00", 2);
  e = decode_hello(zero_id);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("member id 0"), std::string::npos) << e.error().message;
  auto zero = encode_heartbeat(Heartbeat{0, 1, 1, 1});
  auto ez = decode_heartbeat(zero);
  ASSERT_FALSE(ez);
  EXPECT_NE(ez.error().message.find("node id 0"), std::string::npos);
}

TEST(Wire, RandomGarbageNeverCrashesAndBuffersBoundedly) {
  SeededRandom rng(7);
  WireLimits lim{4096};
  for (int i = 0; i < 2000; ++i) {
    FrameDecoder d(lim);
    std::string in;
    size_t n = rng.uniform(64);
    for (size_t k = 0; k < n; ++k) in.push_back(static_cast<char>(rng.uniform(256)));
    if (rng.chance(0.5)) in = encode_frame(MsgType::kRabia, in, lim) + in;
    d.feed(in);
    for (int k = 0; k < 10; ++k) {
      auto f = d.next();
      if (!f || !*f) break;
      EXPECT_LE((*f)->payload.size(), lim.max_payload_bytes);
    }
  }
}

}  // namespace
}  // namespace keel::cluster

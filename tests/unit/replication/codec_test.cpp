// The replication codec: every message round-trips; garbage, truncation and absurd counts are
// refused with kCorruption (never a crash or a huge allocation).
#include <gtest/gtest.h>

#include "replication/copy.h"

namespace keel::replication {
namespace {

std::vector<Message> samples() {
  Append a{.epoch = 3, .prev_lsn = 9, .prev_epoch = 2, .entries = {}, .commit_lsn = 8,
           .sent_ms = -5};
  a.entries.push_back(Entry{.lsn = 10, .epoch = 3, .effect = std::string("k\0v", 3)});
  a.entries.push_back(Entry{.lsn = 11, .epoch = 3, .effect = ""});
  return {a,
          Append{.epoch = 1},
          AppendAck{.epoch = 3, .durable_lsn = 7, .last_lsn = 9, .last_epoch = 2,
                    .mismatch = true, .echo_sent_ms = 123456789},
          AppendAck{.epoch = 3, .durable_lsn = 0, .last_lsn = 0, .last_epoch = 0, .mismatch = true,
                    .echo_sent_ms = 5, .resumable = true, .resume_lsn = 40, .resume_epoch = 2,
                    .resume_key = std::string("k\0y", 3), .resume_source = 77},
          SnapshotBegin{.epoch = 4, .snapshot_lsn = 100, .snapshot_epoch = 3},
          SnapshotBegin{.epoch = 4, .snapshot_lsn = 40, .snapshot_epoch = 2, .resume = true,
                        .resume_key = "", .source = 77},
          SnapshotChunk{.epoch = 4, .snapshot_lsn = 100, .seq = 7, .effects = {"a", "", "ccc"},
                        .last = true, .settle_lsn = 130},
          SnapshotChunk{.epoch = 4, .snapshot_lsn = 100, .seq = 8, .effects = {"b"}, .last = false,
                        .next_key = "user:17"},
          Fence{.new_epoch = 5},
          FenceAck{.new_epoch = 5, .last_lsn = 77, .epoch = 4, .last_epoch = 4, .in_sync = true}};
}

std::string describe(const Message& m) { return encode(m); }

TEST(ReplicationCodec, EveryMessageRoundTrips) {
  for (const Message& m : samples()) {
    std::string bytes = encode(m);
    auto back = decode(bytes);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->index(), m.index());
    EXPECT_EQ(encode(*back), bytes);  // encoding is canonical: equal bytes, equal message
  }
  auto a = decode(encode(samples()[0]));
  ASSERT_TRUE(a);
  const auto& ap = std::get<Append>(*a);
  ASSERT_EQ(ap.entries.size(), 2u);
  EXPECT_EQ(ap.entries[0].effect.view(), std::string_view("k\0v", 3));
  EXPECT_EQ(ap.sent_ms, -5);
  EXPECT_EQ(ap.prev_epoch, 2u);
}

TEST(ReplicationCodec, TruncationIsRefusedAtEveryLength) {
  for (const Message& m : samples()) {
    std::string bytes = encode(m);
    for (size_t n = 0; n < bytes.size(); ++n) {
      auto r = decode(std::string_view(bytes).substr(0, n));
      ASSERT_FALSE(r) << "prefix " << n << " of " << bytes.size() << " decoded";
      EXPECT_EQ(r.error().code, Errc::kCorruption);
    }
    auto r = decode(bytes + "x");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("trailing"), std::string::npos);
  }
}

TEST(ReplicationCodec, BadFieldsAreNamed) {
  auto msg = [](std::string bytes) {
    auto r = decode(bytes);
    EXPECT_FALSE(r);
    return r ? std::string() : r.error().message;
  };
  EXPECT_NE(msg("\x05\x01").find("version 5"), std::string::npos);
  EXPECT_NE(msg("\x02\x01").find("version 2"), std::string::npos);  // before settle_lsn
  EXPECT_NE(msg("\x03\x01").find("version 3"), std::string::npos);  // before list patches
  EXPECT_NE(msg(std::string("\x04\x09", 2)).find("type 9"), std::string::npos);
  // An Append claiming 2^40 entries in a few bytes is refused before allocating.
  std::string huge = "\x04\x01";
  huge += std::string("\x01\x00\x00\x00\x00", 5);  // epoch, prev, prev_epoch, commit, sent
  huge += "\x80\x80\x80\x80\x80\x20";              // count varint 2^40
  EXPECT_NE(msg(huge).find("append entry count"), std::string::npos);
  // Entries must follow prev_lsn without gaps.
  Append gap{.epoch = 1, .prev_lsn = 4};
  gap.entries.push_back(Entry{.lsn = 6, .epoch = 1, .effect = "x"});
  EXPECT_NE(msg(encode(gap)).find("expected 5"), std::string::npos);
  AppendAck ack{.epoch = 1, .durable_lsn = 9, .last_lsn = 3};
  EXPECT_NE(msg(encode(ack)).find("durable_lsn 9 above last_lsn 3"), std::string::npos);
  AppendAck ask{.epoch = 1, .mismatch = false, .resumable = true, .resume_lsn = 3};
  EXPECT_NE(msg(encode(ask)).find("a resume rides a mismatch"), std::string::npos);
  SnapshotChunk last{.epoch = 1, .snapshot_lsn = 3, .seq = 0, .effects = {}, .last = true, .next_key = "k"};
  EXPECT_NE(msg(encode(last)).find("only earlier chunks"), std::string::npos);
}

// Deterministic garbage: never a crash, always either a message or kCorruption.
TEST(ReplicationCodec, GarbageNeverCrashes) {
  uint64_t x = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  size_t ok = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string bytes;
    size_t len = next() % 40;
    for (size_t j = 0; j < len; ++j) bytes.push_back(static_cast<char>(next()));
    if (len >= 2 && (i % 2)) {
      bytes[0] = 4;  // the current version
      bytes[1] = static_cast<char>(1 + next() % 6);
    }
    auto r = decode(bytes);
    if (r) {
      ++ok;
      EXPECT_EQ(describe(*r).size() > 0, true);
    } else {
      EXPECT_EQ(r.error().code, Errc::kCorruption);
    }
  }
  // Mutating one byte of a valid message is caught or yields another valid message.
  for (const Message& m : samples()) {
    std::string bytes = encode(m);
    for (size_t i = 0; i < bytes.size(); ++i) {
      std::string b = bytes;
      b[i] = static_cast<char>(b[i] ^ 0x5a);
      auto r = decode(b);
      if (!r) {
        EXPECT_EQ(r.error().code, Errc::kCorruption);
      }
    }
  }
  (void)ok;
}

TEST(ReplicationCodec, SettleLsnOnlyOnTheLastChunkAndNotBeforeItsSnapshot) {
  auto refused = [](const SnapshotChunk& c) {
    auto r = decode(encode(c));
    return r ? std::string() : r.error().message;
  };
  EXPECT_NE(refused(SnapshotChunk{.epoch = 1, .snapshot_lsn = 10, .last = true, .settle_lsn = 9})
                .find("settles at lsn 9, before its snapshot lsn 10"),
            std::string::npos);
  EXPECT_NE(refused(SnapshotChunk{.epoch = 1, .snapshot_lsn = 10, .last = false, .next_key = "k",
                                  .settle_lsn = 12})
                .find("before the last names a settle lsn"),
            std::string::npos);
  EXPECT_EQ(refused(SnapshotChunk{.epoch = 1, .snapshot_lsn = 10, .last = true, .settle_lsn = 10}), "");
}

}  // namespace
}  // namespace keel::replication

TEST(EffectTest, CopiesShareTheBytesAndEmptyIsABarrier) {
  keel::replication::Effect none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(keel::replication::Effect("").size(), 0u);
  keel::replication::Effect a(std::string("k\0v", 3));
  keel::replication::Effect b = a;  // shared, not copied
  EXPECT_EQ(a.view().data(), b.view().data());
  EXPECT_EQ(b.view(), std::string_view("k\0v", 3));
  keel::replication::Effect c = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT: moved-from is empty by design
  EXPECT_EQ(c.view().data(), b.view().data());
  b = keel::replication::Effect("other");
  EXPECT_EQ(c.view(), std::string_view("k\0v", 3));
  EXPECT_EQ(b.view(), "other");
  b = c;
  EXPECT_EQ(b.view().data(), c.view().data());
}

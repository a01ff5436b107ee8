#include "cluster/partition_map.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <iostream>

#include "cluster/placement.h"

namespace keel::cluster {
namespace {

PartitionMap small_map() {
  PartitionMap m;
  m.version = 7;
  m.partitions = {{.primary = 3, .replicas = {9, 1}, .epoch = 4},
                  {.primary = 1, .replicas = {}, .epoch = 1}};
  return m;
}

TEST(PartitionMap, SlotRangesAreContiguousAndCoverAllSlots) {
  for (uint32_t parts : {1u, 2u, 1024u, 16384u}) {
    uint32_t next = 0;
    for (uint32_t p = 0; p < parts; ++p) {
      SlotRange r = partition_slots(p, parts);
      EXPECT_EQ(r.first, next);
      EXPECT_EQ(r.last - r.first + 1, kSlotCount / parts);
      EXPECT_EQ(partition_of_slot(r.first, parts), p);
      EXPECT_EQ(partition_of_slot(r.last, parts), p);
      next = r.last + 1;
    }
    EXPECT_EQ(next, kSlotCount);
  }
  EXPECT_EQ(partition_slots(1, 1024), (SlotRange{16, 31}));
  // "foo" hashes to slot 12182 in Redis Cluster: partition 761 of 1024.
  EXPECT_EQ(key_slot("foo"), 12182u);
  EXPECT_EQ(partition_of_slot(key_slot("foo"), 1024), 761u);
}

TEST(PartitionMap, Counts) {
  auto m = small_map();
  EXPECT_EQ(m.copies_on(1), 2u);
  EXPECT_EQ(m.primaries_on(1), 1u);
  EXPECT_EQ(m.copies_on(9), 1u);
  EXPECT_EQ(m.nodes(), (std::vector<NodeId>{1, 3, 9}));
  EXPECT_EQ(m.at(0).copies(), (std::vector<NodeId>{3, 9, 1}));
}

TEST(PartitionMap, ValidateNamesTheProblem) {
  auto m = small_map();
  EXPECT_TRUE(validate(m));
  m.partitions.push_back(m.partitions[0]);  // 3 partitions: not a divisor of 16384
  auto bad = validate(m);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("3 partitions"), std::string::npos) << bad.error().message;
  m = small_map();
  m.partitions[1].replicas = {1};
  bad = validate(m);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("partition 1 names node 1 twice"), std::string::npos)
      << bad.error().message;
}

TEST(PartitionMapCodec, KnownBytes) {
  auto bytes = encode(small_map());
  // format 1, version 7, P 2, 3 nodes: 1, +2 (=3), +6 (=9); p0: epoch 4, 3 copies, #1 #2 #0;
  // p1: epoch 1, 1 copy, #0.
  const std::string expected("\x01\x07\x02\x03\x01\x02\x06\x04\x03\x01\x02\x00\x01\x01\x00", 15);
  EXPECT_EQ(bytes, expected);
  auto back = decode_partition_map(bytes);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, small_map());
}

TEST(PartitionMapCodec, DefaultClusterMapIsAFewKiB) {
  std::vector<Member> members;
  for (NodeId i = 1; i <= 16; ++i) members.push_back({.id = i * 1000});
  auto map = initial_map(members, 1024, 3);
  ASSERT_TRUE(map);
  auto bytes = encode(*map);
  // 1024 x (epoch 1 + count 1 + 3 indexes) + header and node table.
  EXPECT_LE(bytes.size(), 5 * 1024 + 64u);
  std::cout << "encoded 1024 partitions x 3 copies over 16 nodes: " << bytes.size() << " bytes\n";
}

TEST(PartitionMapCodec, CorruptionIsNamed) {
  auto good = encode(small_map());
  auto expect_error = [](std::string bytes, std::string_view what) {
    auto r = decode_partition_map(bytes);
    ASSERT_FALSE(r) << "decoded " << what;
    EXPECT_EQ(r.error().code, Errc::kCorruption);
    EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
  };
  expect_error("", "empty input");
  expect_error(std::string("\x02", 1) + good.substr(1), "unknown format 2");
  expect_error(good.substr(0, good.size() - 1), "truncated");
  expect_error(good + std::string(1, '\0'), "1 trailing bytes");
  std::string s = good;
  s[2] = 3;  // 3 partitions
  expect_error(s, "partition count 3");
  s = good;
  s[5] = 0;  // second node id delta 0: repeats
  expect_error(s, "ids must ascend");
  s = good;
  s[11] = 1;  // p0 copy #2 -> node #1 again
  expect_error(s, "names node 3 twice");
  s = good;
  s[14] = 5;  // p1 copy -> node #5 of 3
  expect_error(s, "refers to node #5");
  s = good;
  s[8] = 0;  // p0 with 0 copies
  expect_error(s, "has 0 copies");
  // Node 1 (#0) referenced by no partition.
  s = std::string("\x01\x07\x02\x03\x01\x02\x06\x04\x02\x01\x02\x01\x01\x01", 14);
  expect_error(s, "node 1 is in the table but holds no copy");
  // Overlong varint for the version (0x87 0x00 = 7).
  expect_error(std::string("\x01\x87\x00", 3) + good.substr(2), "not in its shortest form");
}

rc::Gen<PartitionMap> arbitrary_map() {
  return rc::gen::exec([] {
    auto log2p = *rc::gen::inRange<uint32_t>(0, 7);
    uint32_t parts = 1u << log2p;
    auto pool = *rc::gen::container<std::vector<NodeId>>(*rc::gen::inRange<size_t>(1, 20),
                                                         rc::gen::arbitrary<NodeId>());
    std::sort(pool.begin(), pool.end());
    pool.erase(std::unique(pool.begin(), pool.end()), pool.end());
    PartitionMap m;
    m.version = *rc::gen::arbitrary<uint64_t>();
    for (uint32_t p = 0; p < parts; ++p) {
      auto copies = *rc::gen::inRange<size_t>(1, std::min<size_t>(pool.size(), kMaxCopies) + 1);
      auto order =
          *rc::gen::unique<std::vector<size_t>>(copies, rc::gen::inRange<size_t>(0, pool.size()));
      PartitionAssignment a{
          .primary = pool[order[0]], .replicas = {}, .epoch = *rc::gen::arbitrary<uint64_t>()};
      for (size_t i = 1; i < order.size(); ++i) a.replicas.push_back(pool[order[i]]);
      m.partitions.push_back(std::move(a));
    }
    return m;
  });
}

RC_GTEST_PROP(PartitionMapCodec, RoundTrip, ()) {
  auto m = *arbitrary_map();
  RC_ASSERT(validate(m).has_value());
  auto bytes = encode(m);
  auto back = decode_partition_map(bytes);
  RC_ASSERT(back.has_value());
  RC_ASSERT(*back == m);
}

// Random bytes never crash the decoder; whatever it accepts is canonical (re-encodes to the
// same bytes) and valid.
RC_GTEST_PROP(PartitionMapCodec, BoundedDecodeOfRandomBytes, (const std::string& noise)) {
  auto r = decode_partition_map(noise);
  if (r) {
    RC_ASSERT(validate(*r).has_value());
    RC_ASSERT(encode(*r) == noise);
  } else {
    RC_ASSERT(r.error().code == Errc::kCorruption);
    RC_ASSERT(r.error().message.rfind("partition map: ", 0) == 0u);
  }
}

// Mutations of a valid encoding (flipped and truncated bytes) exercise the deep paths.
RC_GTEST_PROP(PartitionMapCodec, MutatedEncodings, ()) {
  auto m = *arbitrary_map();
  auto bytes = encode(m);
  auto flips = *rc::gen::inRange<int>(1, 4);
  for (int i = 0; i < flips; ++i) {
    auto at = *rc::gen::inRange<size_t>(0, bytes.size());
    bytes[at] = static_cast<char>(*rc::gen::arbitrary<uint8_t>());
  }
  bytes.resize(*rc::gen::inRange<size_t>(0, bytes.size() + 1));
  auto r = decode_partition_map(bytes);
  if (r) {
    RC_ASSERT(validate(*r).has_value());
    RC_ASSERT(encode(*r) == bytes);
  } else {
    RC_ASSERT(r.error().code == Errc::kCorruption);
  }
}

}  // namespace
}  // namespace keel::cluster

#include "base/slots.h"

#include <gtest/gtest.h>

namespace keel {

// Expected values were read from Redis 7 itself (`CLUSTER KEYSLOT`), and the CRC check value
// 0x31C3 for "123456789" is the one Redis Cluster's specification gives for CRC16-XMODEM.
TEST(Slots, Crc16CheckValue) { EXPECT_EQ(crc16_xmodem("123456789"), 0x31C3); }

TEST(Slots, MatchesRedisClusterKeyslot) {
  EXPECT_EQ(key_slot("foo"), 12182u);
  EXPECT_EQ(key_slot("bar"), 5061u);
  EXPECT_EQ(key_slot("hello"), 866u);
  EXPECT_EQ(key_slot("123456789"), 12739u);
  EXPECT_EQ(key_slot(""), 0u);
}

TEST(Slots, HashTags) {
  EXPECT_EQ(key_slot("{user1000}.following"), 3443u);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("foo{}{bar}"), 8363u);     // empty tag: whole key is hashed
  EXPECT_EQ(key_slot("foo{{bar}}zap"), 4015u);  // tag is "{bar"
  EXPECT_EQ(key_slot("foo{bar}{zap}"), 5061u);  // first tag only: "bar"
  EXPECT_EQ(key_slot("{bar"), 4015u);           // no closing brace: whole key
}

TEST(Slots, Partitions) {
  EXPECT_TRUE(valid_partition_count(1024));
  EXPECT_TRUE(valid_partition_count(1));
  EXPECT_FALSE(valid_partition_count(0));
  EXPECT_FALSE(valid_partition_count(1000));
  EXPECT_EQ(slot_partition(0, 1024), 0u);
  EXPECT_EQ(slot_partition(15, 1024), 0u);
  EXPECT_EQ(slot_partition(16, 1024), 1u);
  EXPECT_EQ(slot_partition(16383, 1024), 1023u);
  EXPECT_EQ(key_partition("foo", 1024), 12182u / 16);
}

}  // namespace keel

namespace keel {

// A service key (0xFF, namespace, 0x00, user key) hashes as its user key, hash tags included.
TEST(Slots, ServiceKeysHashAsTheirUserKey) {
  using namespace std::string_literals;
  EXPECT_EQ(key_slot("\xff" "c:users:1\0foo"s), key_slot("foo"));
  EXPECT_EQ(key_slot("\xff" "c:users:1\0{user1}.name"s), key_slot("user1"));
  EXPECT_EQ(key_slot("\xff" "c:users:1\0"s), key_slot(""));
  // Without the 0x00 separator, or without the 0xFF mark, a key is an ordinary key.
  EXPECT_EQ(user_key_of("\xff" "nosep"s), "\xff" "nosep"s);
  EXPECT_EQ(key_slot("\xff" "nosep"s), crc16_xmodem("\xff" "nosep"s) & (kSlotCount - 1));
  EXPECT_EQ(user_key_of("ab\0cd"s), "ab\0cd"s);
  EXPECT_NE(key_slot("\xff" "c:a:1\0foo"s), key_slot("\xff" "c:a:1\0bar"s));
}

}  // namespace keel

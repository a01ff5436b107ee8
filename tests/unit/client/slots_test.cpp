// Slot routing: CRC16-XMODEM and hash tags match Redis Cluster's CLUSTER KEYSLOT, and the node's
// own implementation (src/base) on random keys.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include "base/slots.h"
#include "keel/client/slots.h"
#include "keel/client/topology.h"

using namespace keel::client;

TEST(Slots, MatchesRedisClusterKeyslot) {
  // Values printed by redis-server 7 `CLUSTER KEYSLOT`.
  EXPECT_EQ(crc16_xmodem("123456789"), 0x31C3);
  EXPECT_EQ(key_slot("foo"), 12182u);
  EXPECT_EQ(key_slot("bar"), 5061u);
  EXPECT_EQ(key_slot("hello"), 866u);
  EXPECT_EQ(key_slot("somekey"), 11058u);
  EXPECT_EQ(key_slot(""), 0u);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("{user1000}.followers"), key_slot("{user1000}.following"));
  EXPECT_EQ(key_slot("foo{}{bar}"), crc16_xmodem("foo{}{bar}") & 16383);  // empty tag: whole key
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));                  // first { to first }
  EXPECT_EQ(key_slot("foo{bar}{zap}"), key_slot("bar"));
  EXPECT_EQ(hash_tag("no}tag{"), "no}tag{");
}

RC_GTEST_PROP(Slots, AgreesWithTheNodesImplementation, (std::string key)) {
  RC_ASSERT(key_slot(key) == keel::key_slot(key));
  RC_ASSERT(key_slot(key) < kSlotCount);
}

TEST(Slots, CommandSlotUsesTheFirstKey) {
  std::vector<std::string> get = {"GET", "foo"};
  EXPECT_EQ(command_slot(get), key_slot("foo"));
  std::vector<std::string> ping = {"PING"};
  EXPECT_EQ(command_slot(ping), std::nullopt);
  std::vector<std::string> info = {"info", "server"};
  EXPECT_EQ(command_slot(info), std::nullopt);
  std::vector<std::string> scan = {"SCAN", "0"};
  EXPECT_EQ(command_slot(scan), std::nullopt);
  std::vector<std::string> eval = {"EVAL", "return 1", "1", "bar"};
  EXPECT_EQ(command_slot(eval), key_slot("bar"));
}

// CACHE.GET/PUT/DEL route by the user's key (argument 2), not by the cache name; the other
// cache commands have no key.
TEST(Slots, CacheCommandsRouteByTheUserKey) {
  std::vector<std::string> get = {"CACHE.GET", "users", "alice"};
  EXPECT_EQ(command_slot(get), key_slot("alice"));
  std::vector<std::string> put = {"cache.put", "users", "{t}x", "v", "TTL", "1s"};
  EXPECT_EQ(command_slot(put), key_slot("t"));
  std::vector<std::string> del = {"Cache.Del", "users", "bob"};
  EXPECT_EQ(command_slot(del), key_slot("bob"));
  std::vector<std::string> create = {"CACHE.CREATE", "users", "TTL", "1s"};
  EXPECT_EQ(command_slot(create), std::nullopt);
  std::vector<std::string> info = {"CACHE.INFO", "users"};
  EXPECT_EQ(command_slot(info), std::nullopt);
  using namespace std::string_literals;
  EXPECT_EQ(key_slot("\xff" "c:users:0000000000000001\0alice"s), key_slot("alice"));
}

#include "services/cache/keyspace.h"

#include <gtest/gtest.h>

#include "base/slots.h"

namespace keel::cache {
namespace {

using namespace std::string_literals;

TEST(CacheKeyspace, EntryKeysRoundTrip) {
  auto k = entry_key("users", 0x2a, "alice");
  EXPECT_EQ(k,
            "\xff"
            "c:users:000000000000002a\0alice"s);
  auto p = parse_entry_key(k);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->name, "users");
  EXPECT_EQ(p->generation, 0x2au);
  EXPECT_EQ(p->user_key, "alice");
  // User keys may hold any bytes, 0x00 and 0xFF included.
  auto odd = entry_key("a.b-c_1", 7, "\0\xff{x}"s);
  auto q = parse_entry_key(odd);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->name, "a.b-c_1");
  EXPECT_EQ(q->user_key, "\0\xff{x}"s);
  EXPECT_FALSE(parse_entry_key("plain"));
  EXPECT_FALSE(
      parse_entry_key("\xff"
                      "c:users\0k"s));
  EXPECT_FALSE(
      parse_entry_key("\xff"
                      "q:users:000000000000002a\0k"s));
}

// A cache entry lands in the slot (so the partition and the shard) of the user's key; hash
// tags keep working, so related entries can be kept together.
TEST(CacheKeyspace, EntriesHashAsTheUserKey) {
  for (std::string user : {"foo", "bar", "user:1", "{tag}a", ""}) {
    EXPECT_EQ(key_slot(entry_key("users", 99, user)), key_slot(user)) << user;
  }
  EXPECT_EQ(key_slot(entry_key("c", 1, "{t}a")), key_slot(entry_key("c", 1, "{t}b")));
}

// Prefixes nest: one generation's keys are inside the name's range; names never overlap.
TEST(CacheKeyspace, Prefixes) {
  auto k = entry_key("ab", 3, "k");
  EXPECT_TRUE(k.starts_with(generation_prefix("ab", 3)));
  EXPECT_TRUE(k.starts_with(name_prefix("ab")));
  EXPECT_FALSE(k.starts_with(name_prefix("a")));
  EXPECT_FALSE(k.starts_with(generation_prefix("ab", 4)));
}

TEST(CacheKeyspace, EntryHeader) {
  auto s = encode_entry("value", 1234567, 3);
  auto e = decode_entry(s);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->value, "value");
  EXPECT_EQ(e->access_ms, 1234567);
  EXPECT_EQ(e->hits, 3u);
  ASSERT_TRUE(touch_entry(s, 99999999));
  e = decode_entry(s);
  EXPECT_EQ(e->access_ms, 99999999);
  EXPECT_EQ(e->hits, 4u);
  EXPECT_EQ(e->value, "value");
  EXPECT_FALSE(decode_entry("short"));
  std::string plain = "not an entry at all";
  EXPECT_FALSE(touch_entry(plain, 1));
}

std::vector<Candidate> cands() { return {{"a", 10, 300, 1}, {"b", 10, 100, 9}, {"c", 10, 200, 2}}; }

TEST(CacheKeyspace, VictimsLruLfuNone) {
  // Room for one more: nothing goes.
  EXPECT_EQ(choose_victims(cands(), Eviction::kLru, 4, 0, 5)->size(), 0u);
  // lru: the oldest access first.
  auto lru = choose_victims(cands(), Eviction::kLru, 3, 0, 5);
  ASSERT_TRUE(lru);
  EXPECT_EQ(*lru, std::vector<size_t>{1});
  auto lru2 = choose_victims(cands(), Eviction::kLru, 2, 0, 5);
  EXPECT_EQ(*lru2, (std::vector<size_t>{1, 2}));
  // lfu: the fewest hits first.
  auto lfu = choose_victims(cands(), Eviction::kLfu, 3, 0, 5);
  EXPECT_EQ(*lfu, std::vector<size_t>{0});
  // bytes: 30 held + 15 incoming > 40: one 10-byte entry must go.
  auto mem = choose_victims(cands(), Eviction::kLru, 0, 40, 15);
  EXPECT_EQ(*mem, std::vector<size_t>{1});
  // none refuses instead of evicting; an entry larger than the bound is refused.
  EXPECT_FALSE(choose_victims(cands(), Eviction::kNone, 3, 0, 5));
  EXPECT_FALSE(choose_victims({}, Eviction::kLru, 0, 40, 41));
  EXPECT_EQ(choose_victims(cands(), Eviction::kNone, 4, 0, 5)->size(), 0u);
}

}  // namespace
}  // namespace keel::cache

#include "services/cache/definition.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <vector>

namespace keel::cache {
namespace {

Result<Definition> parse(std::string_view name, std::vector<std::string_view> opts) {
  return parse_options(name, std::span<const std::string_view>(opts.data(), opts.size()));
}

// The refusal names the field and what is allowed.
void expect_refused(const Result<Definition>& r, std::string_view field, std::string_view allowed) {
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(allowed), std::string::npos) << r.error().message;
}

TEST(CacheDefinition, ParsesEveryOption) {
  auto d = parse("sessions",
                 {"REPLICAS", "3", "QUORUM", "2", "TTL", "60s", "EVICTION", "lfu", "MAXMEMORY",
                  "256mb", "MAXENTRIES", "5000", "READFROM", "replica", "ENGINE", "memory"});
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->name, "sessions");
  EXPECT_EQ(d->replicas, 3u);
  EXPECT_EQ(d->write_quorum, 2u);
  EXPECT_EQ(d->default_ttl_ms, 60'000);
  EXPECT_EQ(d->eviction, Eviction::kLfu);
  EXPECT_EQ(d->max_memory_bytes, 256ull << 20);
  EXPECT_EQ(d->max_entries, 5000u);
  EXPECT_EQ(d->read_from, ReadFrom::kReplica);
  EXPECT_EQ(d->engine, EngineKind::kMemory);
}

TEST(CacheDefinition, DefaultsAndCaseInsensitiveOptions) {
  auto d = parse("a", {"ttl", "500MS", "eviction", "NONE"});
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->replicas, 1u);
  EXPECT_EQ(d->write_quorum, 1u);
  EXPECT_EQ(d->default_ttl_ms, 500);
  EXPECT_EQ(d->eviction, Eviction::kNone);
  EXPECT_FALSE(d->bounded());
  EXPECT_FALSE(d->engine.has_value());
}

TEST(CacheDefinition, RefusesBadDefinitionsNamingTheField) {
  expect_refused(parse("c", {"REPLICAS", "2", "QUORUM", "3"}), "writeQuorum",
                 "from 1 to replicas (2)");
  expect_refused(parse("c", {"EVICTION", "random"}), "eviction", "lru, lfu, none");
  expect_refused(parse("c", {"MAXMEMORY", "256"}), "maxMemory", "mb");
  expect_refused(parse("c", {"MAXMEMORY", "12parsecs"}), "maxMemory", "allowed units");
  expect_refused(parse("c", {"TTL", "60"}), "defaultTtl", "ms, s, m, h, d");
  expect_refused(parse("c", {"TTL", "0s"}), "defaultTtl", "from 1ms");
  expect_refused(parse("c", {"MAXENTRIES", "-1"}), "maxEntries", "from 1 to 2^48");
  expect_refused(parse("c", {"READFROM", "anywhere"}), "readFrom", "primary, replica");
  expect_refused(parse("c", {"ENGINE", "disk"}), "engine", "memory, persistent");
  expect_refused(parse("c", {"REPLICAS", "9"}), "replicas", "from 1 to 7");
  expect_refused(parse("c", {"COLOUR", "blue"}), "unknown option 'COLOUR'", "MAXENTRIES");
  expect_refused(parse("c", {"TTL"}), "needs a value", "options");
  expect_refused(parse("c", {"TTL", "1s", "ttl", "2s"}), "given twice", "at most once");
  expect_refused(parse("bad name", {}), "name 'bad name' has ' '",
                 "letters, digits, '_', '-', '.'");
  expect_refused(parse("a/b", {}), "'/'", "allowed");
  expect_refused(parse("", {}), "name must be 1 to 64", "[A-Za-z0-9_.-]");
  expect_refused(parse(std::string(65, 'x'), {}), "name must be 1 to 64", "65");
  expect_refused(parse("default", {}), "'default' is reserved", "another name");
}

TEST(CacheDefinition, Units) {
  EXPECT_EQ(*parse_size("f", "1kb"), 1024u);
  EXPECT_EQ(*parse_size("f", "1k"), 1000u);
  EXPECT_EQ(*parse_size("f", "3GB"), 3ull << 30);
  EXPECT_EQ(*parse_size("f", "7b"), 7u);
  EXPECT_FALSE(parse_size("f", "mb"));
  EXPECT_FALSE(parse_size("f", "0mb"));
  EXPECT_EQ(*parse_duration_ms("f", "2h"), 7'200'000);
  EXPECT_EQ(*parse_duration_ms("f", "1d"), 86'400'000);
  EXPECT_EQ(format_size(256ull << 20), "256mb");
  EXPECT_EQ(format_size(1000), "1000b");
  EXPECT_EQ(format_duration(60'000), "1m");
  EXPECT_EQ(format_duration(1500), "1500ms");
}

TEST(CacheDefinition, JsonRoundTripAndRefusals) {
  auto d = parse("users", {"REPLICAS", "3", "QUORUM", "2", "TTL", "90s", "MAXMEMORY", "64mb",
                           "MAXENTRIES", "10", "ENGINE", "persistent"});
  ASSERT_TRUE(d);
  auto j = to_json(*d);
  EXPECT_EQ(j["defaultTtl"], "90s");
  EXPECT_EQ(j["maxMemory"], "64mb");
  auto back = from_json("users", j);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, *d);

  auto bad = [](const char* body) { return from_json_text("c", body); };
  expect_refused(bad(R"({"replicas": 1, "writeQuorum": 2})"), "writeQuorum",
                 "from 1 to replicas (1)");
  expect_refused(bad(R"({"maxMemory": 1024})"), "maxMemory 1024 has no unit", "mb");
  expect_refused(bad(R"({"maxMemory": "1024"})"), "maxMemory '1024' has no unit", "mb");
  expect_refused(bad(R"({"eviction": "fifo"})"), "eviction", "lru, lfu, none");
  expect_refused(bad(R"({"defaultTtl": 60})"), "defaultTtl must be a string", "60");
  expect_refused(bad(R"({"size": 1})"), "unknown field 'size'", "maxEntries");
  expect_refused(bad(R"([1])"), "JSON object", "writeQuorum");
  expect_refused(bad("{"), "not valid JSON", "maxEntries");
  expect_refused(bad(R"({"name": "other"})"), "differs from the name in the path", "omit");
}

TEST(CacheDefinition, PerPartitionShareRoundsUp) {
  EXPECT_EQ(per_partition(0, 1024), 0u);
  EXPECT_EQ(per_partition(1, 1024), 1u);
  EXPECT_EQ(per_partition(1024, 1024), 1u);
  EXPECT_EQ(per_partition(1025, 1024), 2u);
  EXPECT_EQ(per_partition(256ull << 20, 1024), 256u << 10);
}

}  // namespace
}  // namespace keel::cache

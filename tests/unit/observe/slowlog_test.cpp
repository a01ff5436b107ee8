// The slow log's rules: threshold, order, bound, Redis's shaping of arguments, redaction.
#include "observe/slowlog.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace keel::observe {
namespace {

std::vector<std::string_view> views(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

uint64_t add(SlowLog& log, std::vector<std::string> argv, int64_t us = 50000) {
  auto v = views(argv);
  return log.add(1000, us, v, "127.0.0.1:5000", "", "resp");
}

TEST(SlowLog, ThresholdDecidesWhatIsLogged) {
  SlowLog log(10000, 128);
  EXPECT_FALSE(log.wants(9999));
  EXPECT_TRUE(log.wants(10000));  // at least the threshold, as Redis's >=
  log.configure(0, 128);
  EXPECT_TRUE(log.wants(0));
  log.configure(-1, 128);
  EXPECT_FALSE(log.wants(1000000000));
}

TEST(SlowLog, NewestFirstBoundedAndIdsKeepGrowing) {
  SlowLog log(0, 3);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(add(log, {"set", "k" + std::to_string(i), "v"}), static_cast<uint64_t>(i));
  EXPECT_EQ(log.len(), 3u);
  auto all = log.get(10);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, 4u);
  EXPECT_EQ(all[0].args[1], "k4");
  EXPECT_EQ(all[2].id, 2u);
  EXPECT_EQ(log.get(1).size(), 1u);
  log.reset();
  EXPECT_EQ(log.len(), 0u);
  EXPECT_EQ(add(log, {"get", "k"}), 5u);  // ids do not restart (as Redis's)
  log.configure(0, 0);                    // max-len 0 keeps nothing
  EXPECT_EQ(log.len(), 0u);
  add(log, {"get", "k"});
  EXPECT_EQ(log.len(), 0u);
  log.configure(0, 2);
  for (int i = 0; i < 4; ++i) add(log, {"get", "k"});
  log.configure(0, 1);  // shrinking drops the oldest at once
  ASSERT_EQ(log.len(), 1u);
  EXPECT_EQ(log.get(5)[0].id, 10u);
}

TEST(SlowLog, ArgumentsAreShapedAsRedisShapesThem) {
  std::vector<std::string> argv{"rpush", "list"};
  for (int i = 0; i < 40; ++i) argv.push_back(std::to_string(i));
  auto shaped = SlowLog::shape_args(views(argv));
  ASSERT_EQ(shaped.size(), 32u);
  EXPECT_EQ(shaped[30], "28");
  EXPECT_EQ(shaped[31], "... (11 more arguments)");  // 42 arguments: 31 kept, 11 summarised

  std::vector<std::string> big{"set", "k", std::string(200, 'x')};
  shaped = SlowLog::shape_args(views(big));
  ASSERT_EQ(shaped.size(), 3u);
  EXPECT_EQ(shaped[2], std::string(128, 'x') + "... (72 more bytes)");
  std::vector<std::string> exact{"set", "k", std::string(128, 'y')};
  EXPECT_EQ(SlowLog::shape_args(views(exact))[2], std::string(128, 'y'));
}

TEST(SlowLog, SecretsAreRedacted) {
  auto shape = [](std::vector<std::string> argv) { return SlowLog::shape_args(views(argv)); };
  EXPECT_EQ(shape({"AUTH", "alice", "s3cret"}), (std::vector<std::string>{"AUTH", "(redacted)", "(redacted)"}));
  EXPECT_EQ(shape({"hello", "3", "AUTH", "alice", "s3cret"}),
            (std::vector<std::string>{"hello", "3", "(redacted)", "(redacted)", "(redacted)"}));
  EXPECT_EQ(shape({"ACL", "SETUSER", "alice", ">s3cret"}),
            (std::vector<std::string>{"ACL", "SETUSER", "(redacted)", "(redacted)"}));
  EXPECT_EQ(shape({"config", "set", "requirepass", "s3cret"}),
            (std::vector<std::string>{"config", "set", "requirepass", "(redacted)"}));
  EXPECT_EQ(shape({"SECRET.PUT", "db/password", "s3cret"}),
            (std::vector<std::string>{"SECRET.PUT", "db/password", "(redacted)"}));
  EXPECT_EQ(shape({"transit.encrypt", "payments", "cGxhaW4="}),
            (std::vector<std::string>{"transit.encrypt", "payments", "(redacted)"}));
  EXPECT_EQ(shape({"set", "auth", "v"}), (std::vector<std::string>{"set", "auth", "v"}));  // only the command name counts
}

TEST(SlowLog, EntryKeepsWhoAndWhere) {
  SlowLog log(0, 8);
  std::vector<std::string> argv{"GET", "/v1/kv/a"};
  auto v = views(argv);
  log.add(1733580000123, 25000, v, "10.0.0.7:41000", "alice", "http", "4bf92f3577b34da6a3ce929d0e0e4736");
  auto e = log.get(1).at(0);
  EXPECT_EQ(e.unix_ms, 1733580000123);
  EXPECT_EQ(e.duration_us, 25000);
  EXPECT_EQ(e.client, "10.0.0.7:41000");
  EXPECT_EQ(e.client_name, "alice");
  EXPECT_EQ(e.door, "http");
  EXPECT_EQ(e.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
}

}  // namespace
}  // namespace keel::observe

// keel driven by hiredis, the C client most Redis clients in other languages wrap.
#include <hiredis/hiredis.h>

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "keel_process.h"

namespace {

using ReplyPtr = std::unique_ptr<redisReply, decltype(&freeReplyObject)>;

class Hiredis : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    node_ = new keel::testing::KeelProcess({"--engine", "memory", "--shards", "2"});
    ASSERT_TRUE(node_->start()) << node_->output();
  }
  static void TearDownTestSuite() {
    delete node_;
    node_ = nullptr;
  }
  void SetUp() override {
    ctx_ = redisConnect("127.0.0.1", node_->resp_port());
    ASSERT_TRUE(ctx_ && !ctx_->err);
  }
  void TearDown() override { redisFree(ctx_); }

  ReplyPtr cmd(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    auto* r = static_cast<redisReply*>(redisvCommand(ctx_, fmt, ap));
    va_end(ap);
    return ReplyPtr(r, freeReplyObject);
  }

  static keel::testing::KeelProcess* node_;
  redisContext* ctx_ = nullptr;
};
keel::testing::KeelProcess* Hiredis::node_ = nullptr;

TEST_F(Hiredis, BinarySafeValues) {
  std::string key("k\0ey", 4), val("\r\n\0\xff", 4);
  auto set = cmd("SET %b %b", key.data(), key.size(), val.data(), val.size());
  ASSERT_EQ(set->type, REDIS_REPLY_STATUS);
  EXPECT_STREQ(set->str, "OK");
  auto get = cmd("GET %b", key.data(), key.size());
  ASSERT_EQ(get->type, REDIS_REPLY_STRING);
  EXPECT_EQ(std::string(get->str, get->len), val);
}

TEST_F(Hiredis, PipelineOfTenThousandKeepsOrder) {
  const int n = 10000;
  for (int i = 0; i < n; ++i) redisAppendCommand(ctx_, "SET hp:%d %d", i, i);
  for (int i = 0; i < n; ++i) redisAppendCommand(ctx_, "INCR hp:%d", i);
  for (int i = 0; i < n; ++i) {
    void* raw = nullptr;
    ASSERT_EQ(redisGetReply(ctx_, &raw), REDIS_OK);
    ReplyPtr r(static_cast<redisReply*>(raw), freeReplyObject);
    ASSERT_EQ(r->type, REDIS_REPLY_STATUS);
  }
  for (int i = 0; i < n; ++i) {
    void* raw = nullptr;
    ASSERT_EQ(redisGetReply(ctx_, &raw), REDIS_OK);
    ReplyPtr r(static_cast<redisReply*>(raw), freeReplyObject);
    ASSERT_EQ(r->type, REDIS_REPLY_INTEGER);
    ASSERT_EQ(r->integer, i + 1);
  }
}

TEST_F(Hiredis, ErrorsAreErrorReplies) {
  cmd("SET hs text");
  auto r = cmd("INCR hs");
  ASSERT_EQ(r->type, REDIS_REPLY_ERROR);
  EXPECT_STREQ(r->str, "ERR value is not an integer or out of range");
  auto w = cmd("HGET hs f");
  ASSERT_EQ(w->type, REDIS_REPLY_ERROR);
  EXPECT_STREQ(w->str, "WRONGTYPE Operation against a key holding the wrong kind of value");
}

TEST_F(Hiredis, LargeValueRoundTrip) {
  std::string big(8 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  auto set = cmd("SET big %b", big.data(), big.size());
  ASSERT_EQ(set->type, REDIS_REPLY_STATUS);
  auto get = cmd("GET big");
  ASSERT_EQ(get->type, REDIS_REPLY_STRING);
  EXPECT_EQ(std::string(get->str, get->len), big);
}

}  // namespace

#include "frontends/resp/parser.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <string>
#include <vector>

namespace keel::resp {
namespace {

std::string encode(const std::vector<std::string>& argv) {
  std::string s = "*" + std::to_string(argv.size()) + "\r\n";
  for (auto& a : argv) s += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return s;
}

// Feeds `wire` to a parser in the given chunk sizes, the way a connection does: bytes are
// appended to a buffer, complete requests are consumed from its front.
struct Outcome {
  std::vector<std::vector<std::string>> requests;
  std::string error;
};
Outcome feed(const std::string& wire, const std::vector<size_t>& chunks, ParserLimits lim = {}) {
  Parser p(lim);
  Outcome out;
  std::string buf;
  size_t pos = 0, ci = 0;
  std::vector<std::string_view> args;
  while (pos < wire.size()) {
    size_t n = chunks.empty() ? wire.size() : std::max<size_t>(1, chunks[ci++ % chunks.size()]);
    buf.append(wire, pos, n);
    pos += n;
    for (;;) {
      auto r = p.parse(buf);
      if (r == Parser::Result::kNeedMore) break;
      if (r == Parser::Result::kError) {
        out.error = p.error();
        return out;
      }
      if (r == Parser::Result::kRequest) {
        p.args(buf, args);
        out.requests.emplace_back(args.begin(), args.end());
      }
      buf.erase(0, p.consumed());
    }
  }
  return out;
}

TEST(Parser, Multibulk) {
  auto o = feed(encode({"SET", "k", "v"}) + encode({"GET", "k"}), {});
  ASSERT_EQ(o.requests.size(), 2u);
  EXPECT_EQ(o.requests[0], (std::vector<std::string>{"SET", "k", "v"}));
  EXPECT_EQ(o.requests[1], (std::vector<std::string>{"GET", "k"}));
}

TEST(Parser, BinarySafeBulk) {
  std::string v("a\r\nb\0c", 6);
  auto o = feed(encode({"SET", "k", v}), {1});
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_EQ(o.requests[0][2], v);
}

TEST(Parser, Inline) {
  auto o = feed("PING\r\nset k \"a b\\x41\\n\"\n\r\n  \r\nget 'it''s'\n", {});
  ASSERT_EQ(o.error, "Protocol error: unbalanced quotes in request");
  o = feed("PING\r\nset k \"a b\\x41\\n\"\n\r\nget 'x y'\n", {3});
  ASSERT_EQ(o.requests.size(), 3u);
  EXPECT_EQ(o.requests[0], (std::vector<std::string>{"PING"}));
  EXPECT_EQ(o.requests[1], (std::vector<std::string>{"set", "k", "a bA\n"}));
  EXPECT_EQ(o.requests[2], (std::vector<std::string>{"get", "x y"}));
}

TEST(Parser, EmptyMultibulkIsSkipped) {
  auto o = feed("*0\r\n*-1\r\n" + encode({"PING"}), {});
  ASSERT_EQ(o.requests.size(), 1u);
  EXPECT_TRUE(o.error.empty());
}

TEST(Parser, RedisErrorTexts) {
  EXPECT_EQ(feed("*abc\r\n", {}).error, "Protocol error: invalid multibulk length");
  EXPECT_EQ(feed("*2000000\r\n", {}).error, "Protocol error: invalid multibulk length");
  EXPECT_EQ(feed("*1\r\n$-5\r\n", {}).error, "Protocol error: invalid bulk length");
  EXPECT_EQ(feed("*1\r\n$99999999999\r\n", {}).error, "Protocol error: invalid bulk length");
  EXPECT_EQ(feed("*1\r\n:5\r\n", {}).error, "Protocol error: expected '$', got ':'");
  EXPECT_EQ(feed(std::string(70000, 'a'), {}).error, "Protocol error: too big inline request");
  EXPECT_EQ(feed("*1\r\n" + std::string(70000, '$'), {}).error,
            "Protocol error: too big bulk count string");
  EXPECT_EQ(feed("*" + std::string(70000, '1'), {}).error,
            "Protocol error: too big mbulk count string");
}

TEST(Parser, ConfigurableLimits) {
  ParserLimits lim;
  lim.max_bulk_len = 10;
  lim.max_multibulk_len = 3;
  EXPECT_EQ(feed(encode({"SET", "k", std::string(11, 'x')}), {}, lim).error,
            "Protocol error: invalid bulk length");
  EXPECT_EQ(feed(encode({"A", "B", "C", "D"}), {}, lim).error,
            "Protocol error: invalid multibulk length");
  EXPECT_TRUE(feed(encode({"SET", "k", std::string(10, 'x')}), {}, lim).error.empty());
}

TEST(Parser, HugeAnnouncedCountDoesNotAllocateUpFront) {
  // A client announcing a million arguments and sending two gets no error and no big buffer.
  Parser p;
  std::string wire = "*1000000\r\n$1\r\na\r\n$1\r\nb\r\n";
  EXPECT_EQ(p.parse(wire), Parser::Result::kNeedMore);
}

// The parser agrees with the reference encoding for any argv split into any chunks.
RC_GTEST_PROP(Parser, AnyChunkingYieldsTheSameRequests,
              (std::vector<std::vector<std::string>> reqs, std::vector<uint8_t> chunks)) {
  std::string wire;
  std::vector<std::vector<std::string>> expected;
  for (auto& r : reqs) {
    if (r.empty()) continue;  // "*0" is skipped, as in Redis
    wire += encode(r);
    expected.push_back(r);
  }
  std::vector<size_t> sizes(chunks.begin(), chunks.end());
  auto o = feed(wire, sizes);
  RC_ASSERT(o.error.empty());
  RC_ASSERT(o.requests == expected);
}

// Arbitrary bytes: the parser either needs more, yields requests or reports an error; it
// never crashes or reads out of bounds (ASan runs this in `make asan`).
RC_GTEST_PROP(Parser, ArbitraryBytesNeverCrash, (std::string junk, std::vector<uint8_t> chunks)) {
  std::vector<size_t> sizes(chunks.begin(), chunks.end());
  auto o = feed(junk, sizes);
  RC_ASSERT(o.requests.size() <= junk.size() + 1);
}

TEST(SplitInline, QuotesAndEscapes) {
  std::vector<std::string> out;
  ASSERT_TRUE(split_inline_args(R"(a "b c" 'd e' "\x41\x4a" "q\"q")", out));
  EXPECT_EQ(out, (std::vector<std::string>{"a", "b c", "d e", "AJ", "q\"q"}));
  out.clear();
  EXPECT_FALSE(split_inline_args(R"("abc)", out));
  out.clear();
  EXPECT_FALSE(split_inline_args(R"("abc"x)", out));
}

}  // namespace
}  // namespace keel::resp

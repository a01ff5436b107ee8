// The SDK's RESP3 reply parser: every type, incremental feeding, limits with clear errors, and
// random bytes (never a crash, never an unbounded wait).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>

#include "keel/client/reply.h"

using namespace keel::client;

namespace {

// Reference serializer for tests: Reply -> RESP3 bytes.
std::string serialize(const Reply& r) {
  auto len = [](const std::string& s) { return std::to_string(s.size()); };
  std::string out;
  if (!r.attributes.empty()) {
    out += "|" + std::to_string(r.attributes.size() / 2) + "\r\n";
    for (auto& a : r.attributes) out += serialize(a);
  }
  switch (r.type) {
    case ReplyType::kSimpleString: return out + "+" + r.str + "\r\n";
    case ReplyType::kError: return out + "!" + len(r.str) + "\r\n" + r.str + "\r\n";
    case ReplyType::kInteger: return out + ":" + std::to_string(r.integer) + "\r\n";
    case ReplyType::kBulkString: return out + "$" + len(r.str) + "\r\n" + r.str + "\r\n";
    case ReplyType::kNull: return out + "_\r\n";
    case ReplyType::kBoolean: return out + (r.boolean ? "#t\r\n" : "#f\r\n");
    case ReplyType::kDouble: {
      char b[64];
      std::snprintf(b, sizeof b, "%.17g", r.dbl);
      return out + "," + b + "\r\n";
    }
    case ReplyType::kBigNumber: return out + "(" + r.str + "\r\n";
    case ReplyType::kVerbatim: return out + "=" + std::to_string(r.str.size() + 4) + "\r\n" + r.format + ":" + r.str + "\r\n";
    default: break;
  }
  char tag = r.type == ReplyType::kArray ? '*' : r.type == ReplyType::kMap ? '%' : r.type == ReplyType::kSet ? '~' : '>';
  size_t n = r.type == ReplyType::kMap ? r.elements.size() / 2 : r.elements.size();
  out += tag + std::to_string(n) + "\r\n";
  for (auto& e : r.elements) out += serialize(e);
  return out;
}

Reply parse_one(std::string_view bytes, ParserLimits limits = {}) {
  ReplyParser p(limits);
  p.append(bytes);
  Reply r;
  EXPECT_EQ(p.next(r), ReplyParser::Status::kReply) << p.error();
  EXPECT_EQ(p.buffered_bytes(), 0u);
  return r;
}

std::string parse_error(std::string_view bytes, ParserLimits limits = {}) {
  ReplyParser p(limits);
  p.append(bytes);
  Reply r;
  EXPECT_EQ(p.next(r), ReplyParser::Status::kError) << bytes;
  return p.error();
}

rc::Gen<std::string> gen_line() {
  return rc::gen::container<std::string>(rc::gen::elementOf(std::string("abcXYZ 019-_:")));
}

rc::Gen<Reply> gen_reply(int depth) {
  using namespace rc;
  auto scalar = gen::oneOf(
      gen::map(gen_line(), [](std::string s) { return Reply::simple(s); }),
      gen::map(gen::arbitrary<std::string>(), [](std::string s) { return Reply::bulk(s); }),
      gen::map(gen::arbitrary<std::string>(), [](std::string s) {
        Reply r;
        r.type = ReplyType::kError;
        r.str = s;
        return r;
      }),
      gen::map(gen::arbitrary<int64_t>(), [](int64_t v) { return Reply::integer_value(v); }),
      gen::just(Reply::null()),
      gen::map(gen::arbitrary<bool>(), [](bool b) {
        Reply r;
        r.type = ReplyType::kBoolean;
        r.boolean = b;
        return r;
      }),
      gen::map(gen::arbitrary<int32_t>(), [](int32_t v) {
        Reply r;
        r.type = ReplyType::kDouble;
        r.dbl = v / 7.0;
        return r;
      }),
      gen::map(gen::arbitrary<uint64_t>(), [](uint64_t v) {
        Reply r;
        r.type = ReplyType::kBigNumber;
        r.str = "-" + std::to_string(v) + "123456789012345678901234567890";
        return r;
      }),
      gen::map(gen::arbitrary<std::string>(), [](std::string s) {
        Reply r;
        r.type = ReplyType::kVerbatim;
        r.format = "txt";
        r.str = s;
        return r;
      }));
  if (depth == 0) return scalar;
  return gen::oneOf(scalar, gen::map(gen::pair(gen::inRange(0, 4), gen::mapcat(gen::inRange<size_t>(0, 4), [depth](size_t n) { return gen::container<std::vector<Reply>>(n, gen_reply(depth - 1)); })),
                                     [](std::pair<int, std::vector<Reply>> p) {
                                       Reply r;
                                       static const ReplyType kinds[] = {ReplyType::kArray, ReplyType::kMap, ReplyType::kSet, ReplyType::kPush};
                                       r.type = kinds[p.first];
                                       r.elements = std::move(p.second);
                                       if (r.type == ReplyType::kMap && r.elements.size() % 2) r.elements.pop_back();
                                       return r;
                                     }));
}

}  // namespace

TEST(ReplyParser, ParsesEveryResp3Type) {
  EXPECT_EQ(parse_one("+OK\r\n"), Reply::simple("OK"));
  EXPECT_EQ(parse_one("-ERR bad\r\n"), Reply::error("ERR bad"));
  EXPECT_EQ(parse_one(":-42\r\n").integer, -42);
  EXPECT_EQ(parse_one("$5\r\nhe\r\no\r\n"), Reply::bulk("he\r\no"));
  EXPECT_EQ(parse_one("$0\r\n\r\n"), Reply::bulk(""));
  EXPECT_TRUE(parse_one("$-1\r\n").is_null());
  EXPECT_TRUE(parse_one("*-1\r\n").is_null());
  EXPECT_TRUE(parse_one("_\r\n").is_null());
  EXPECT_EQ(parse_one("#t\r\n").boolean, true);
  EXPECT_EQ(parse_one("#f\r\n").type, ReplyType::kBoolean);
  EXPECT_DOUBLE_EQ(parse_one(",3.25\r\n").dbl, 3.25);
  EXPECT_TRUE(std::isinf(parse_one(",inf\r\n").dbl));
  EXPECT_LT(parse_one(",-inf\r\n").dbl, 0);
  EXPECT_TRUE(std::isnan(parse_one(",nan\r\n").dbl));
  EXPECT_EQ(parse_one("(3492890328409238509324850943850943825024385\r\n").str, "3492890328409238509324850943850943825024385");
  auto v = parse_one("=15\r\ntxt:Some string\r\n");
  EXPECT_EQ(v.type, ReplyType::kVerbatim);
  EXPECT_EQ(v.format, "txt");
  EXPECT_EQ(v.str, "Some string");
  auto e = parse_one("!21\r\nSYNTAX invalid syntax\r\n");
  EXPECT_TRUE(e.is_error());
  EXPECT_EQ(e.str, "SYNTAX invalid syntax");
  auto m = parse_one("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n");
  EXPECT_EQ(m.type, ReplyType::kMap);
  ASSERT_EQ(m.elements.size(), 4u);
  ASSERT_NE(m.find("second"), nullptr);
  EXPECT_EQ(m.find("second")->integer, 2);
  EXPECT_EQ(m.find("third"), nullptr);
  EXPECT_EQ(parse_one("~2\r\n+a\r\n+b\r\n").type, ReplyType::kSet);
  auto push = parse_one(">2\r\n+invalidate\r\n*1\r\n$3\r\nkey\r\n");
  EXPECT_EQ(push.type, ReplyType::kPush);
  EXPECT_EQ(push.elements[1].elements[0].str, "key");
  auto nested = parse_one("*2\r\n*1\r\n:1\r\n%1\r\n$1\r\nk\r\n_\r\n");
  EXPECT_EQ(nested.elements[1].elements[1].type, ReplyType::kNull);
}

TEST(ReplyParser, AttributesAttachToTheFollowingValue) {
  auto r = parse_one("|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:7\r\n");
  EXPECT_EQ(r.type, ReplyType::kArray);
  ASSERT_EQ(r.attributes.size(), 2u);
  EXPECT_EQ(r.attributes[0].str, "key-popularity");
  EXPECT_EQ(r.elements[0].integer, 7);
}

TEST(ReplyParser, FeedsByteByByteAndKeepsLeftovers) {
  std::string wire = "*3\r\n$3\r\nfoo\r\n:12\r\n%1\r\n+k\r\n#t\r\n+NEXT\r\n";
  ReplyParser p;
  Reply r;
  size_t i = 0;
  for (; i < wire.size(); ++i) {
    p.append(wire.substr(i, 1));
    auto st = p.next(r);
    if (st == ReplyParser::Status::kReply) break;
    ASSERT_EQ(st, ReplyParser::Status::kNeedMore) << p.error();
  }
  EXPECT_EQ(r.elements.size(), 3u);
  EXPECT_EQ(r.elements[0].str, "foo");
  p.append(wire.substr(i + 1));
  ASSERT_EQ(p.next(r), ReplyParser::Status::kReply);
  EXPECT_EQ(r, Reply::simple("NEXT"));
  EXPECT_EQ(p.next(r), ReplyParser::Status::kNeedMore);
}

TEST(ReplyParser, RefusesWhatExceedsItsLimitsWithTheLimitsName) {
  ParserLimits small;
  small.max_bulk_bytes = 10;
  small.max_aggregate_elements = 3;
  small.max_depth = 2;
  small.max_line_bytes = 16;
  EXPECT_NE(parse_error("$11\r\n", small).find("max_bulk_bytes"), std::string::npos);
  EXPECT_NE(parse_error("*4\r\n", small).find("max_aggregate_elements"), std::string::npos);
  EXPECT_NE(parse_error("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", small).find("max_depth"), std::string::npos);
  EXPECT_NE(parse_error("+" + std::string(40, 'a'), small).find("max_line_bytes"), std::string::npos);
  // A huge declared length is refused before anything is allocated.
  EXPECT_NE(parse_error("$99999999999999\r\n").find("max_bulk_bytes"), std::string::npos);
  EXPECT_NE(parse_error("*99999999999999\r\n").find("max_aggregate_elements"), std::string::npos);
}

TEST(ReplyParser, MalformedInputGetsAClearError) {
  EXPECT_NE(parse_error("?what\r\n").find("unknown RESP type byte '?'"), std::string::npos);
  EXPECT_NE(parse_error(":12a\r\n").find("invalid integer '12a'"), std::string::npos);
  EXPECT_NE(parse_error("$3\r\nabcd\r\n").find("not followed by CRLF"), std::string::npos);
  EXPECT_NE(parse_error("$-2\r\n").find("invalid bulk length"), std::string::npos);
  EXPECT_NE(parse_error("#x\r\n").find("invalid boolean"), std::string::npos);
  EXPECT_NE(parse_error(",1.5x\r\n").find("invalid double"), std::string::npos);
  EXPECT_NE(parse_error("(12z\r\n").find("invalid big number"), std::string::npos);
  EXPECT_NE(parse_error("=3\r\nabc\r\n").find("fmt:"), std::string::npos);
  EXPECT_NE(parse_error("%-1\r\n").find("negative length"), std::string::npos);
  // Once failed, the parser stays failed.
  ReplyParser p;
  p.append("?\r\n+OK\r\n");
  Reply r;
  EXPECT_EQ(p.next(r), ReplyParser::Status::kError);
  EXPECT_EQ(p.next(r), ReplyParser::Status::kError);
}

RC_GTEST_PROP(ReplyParser, RoundTripsRandomRepliesInRandomChunks, ()) {
  auto reply = *gen_reply(3);
  std::string wire = serialize(reply) + serialize(reply);
  auto cut = *rc::gen::inRange<size_t>(0, wire.size() + 1);
  ReplyParser p;
  p.append(wire.substr(0, cut));
  std::vector<Reply> got;
  Reply r;
  while (p.next(r) == ReplyParser::Status::kReply) got.push_back(r);
  p.append(wire.substr(cut));
  ReplyParser::Status st;
  while ((st = p.next(r)) == ReplyParser::Status::kReply) got.push_back(r);
  RC_ASSERT(st == ReplyParser::Status::kNeedMore);
  RC_ASSERT(got.size() == 2u);
  RC_ASSERT(got[0] == reply);
  RC_ASSERT(got[1] == reply);
}

RC_GTEST_PROP(ReplyParser, RandomBytesNeverCrashOrLoop, (std::string junk)) {
  ParserLimits limits;
  limits.max_bulk_bytes = 1 << 16;
  limits.max_aggregate_elements = 1 << 10;
  ReplyParser p(limits);
  p.append(junk);
  Reply r;
  size_t replies = 0;
  ReplyParser::Status st;
  while ((st = p.next(r)) == ReplyParser::Status::kReply) {
    ++replies;
    RC_ASSERT(replies <= junk.size());  // every reply consumes at least 3 bytes
  }
  if (st == ReplyParser::Status::kError) RC_ASSERT(!p.error().empty());
}

RC_GTEST_PROP(ReplyParser, MutatedValidRepliesNeverCrash, ()) {
  auto reply = *gen_reply(2);
  std::string wire = serialize(reply);
  RC_PRE(!wire.empty());
  auto flips = *rc::gen::container<std::vector<std::pair<size_t, char>>>(
      rc::gen::pair(rc::gen::inRange<size_t>(0, wire.size()), rc::gen::arbitrary<char>()));
  for (auto [i, c] : flips) wire[i] = c;
  ReplyParser p;
  p.append(wire);
  Reply r;
  int n = 0;
  while (p.next(r) == ReplyParser::Status::kReply && n < 1000) ++n;
  RC_ASSERT(n < 1000);
}

TEST(Encode, WritesAnArrayOfBulkStrings) {
  std::string_view args[] = {"SET", "k", std::string_view("a\0b", 3)};
  EXPECT_EQ(encode_command(args), std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na\0b\r\n", 29));
  // The server side of the SDK's own parser reads it back.
  auto r = parse_one(encode_command(args));
  ASSERT_EQ(r.elements.size(), 3u);
  EXPECT_EQ(r.elements[2].str, std::string("a\0b", 3));
}

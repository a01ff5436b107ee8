// The HTTP door's reading of RESP2 replies (frontends/http/resp_reply.h): the nested replies
// of the stream commands (XRANGE, XREADGROUP) and how their errors become HTTP answers.
#include "frontends/http/resp_reply.h"

#include <gtest/gtest.h>

using namespace keel::http;

TEST(RespTree, XrangeReply) {
  auto r = parse_resp2_tree("*2\r\n*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$0\r\n\r\n"
                            "*2\r\n$3\r\n2-5\r\n*2\r\n$1\r\nc\r\n$4\r\nx\r\ny\r\n");
  ASSERT_EQ(r.kind, '*');
  ASSERT_EQ(r.items.size(), 2u);
  EXPECT_EQ(r.items[0].items[0].text, "1-0");
  ASSERT_EQ(r.items[0].items[1].items.size(), 4u);
  EXPECT_EQ(r.items[0].items[1].items[3].text, "");
  EXPECT_EQ(r.items[1].items[0].text, "2-5");
  EXPECT_EQ(r.items[1].items[1].items[1].text, "x\r\ny");  // a value may hold CRLF
}

TEST(RespTree, NullsErrorsIntegers) {
  auto n = parse_resp2_tree("*-1\r\n");
  EXPECT_EQ(n.kind, '*');
  EXPECT_TRUE(n.is_null);
  auto b = parse_resp2_tree("$-1\r\n");
  EXPECT_TRUE(b.is_null);
  auto e = parse_resp2_tree("-NOGROUP No such key\r\n");
  EXPECT_EQ(e.kind, '-');
  EXPECT_EQ(e.text, "NOGROUP No such key");
  auto i = parse_resp2_tree(":42\r\n");
  EXPECT_EQ(i.number, 42);
  // An entry deleted while pending: a null body inside the array.
  auto p = parse_resp2_tree("*1\r\n*2\r\n$3\r\n1-0\r\n*-1\r\n");
  ASSERT_EQ(p.items.size(), 1u);
  EXPECT_TRUE(p.items[0].items[1].is_null);
}

TEST(RespTree, TruncatedOrMalformedIsKindZero) {
  EXPECT_EQ(parse_resp2_tree("").kind, 0);
  EXPECT_EQ(parse_resp2_tree("*2\r\n$1\r\na\r\n").kind, 0);
  EXPECT_EQ(parse_resp2_tree("$5\r\nab\r\n").kind, 0);
  EXPECT_EQ(parse_resp2_tree("?x\r\n").kind, 0);
  EXPECT_EQ(parse_resp2_tree(":x\r\n").kind, 0);
}

TEST(RespError, WrongTypeIs409) {
  auto e = resp_error_to_http("WRONGTYPE Operation against a key holding the wrong kind of value");
  EXPECT_EQ(e.status, 409u);
  EXPECT_EQ(e.code, "WRONG_TYPE");
}

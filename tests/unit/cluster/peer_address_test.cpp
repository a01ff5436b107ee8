#include "cluster/peer_address.h"

#include <gtest/gtest.h>

namespace keel::cluster {
namespace {

TEST(PeerAddress, ParsesIdHostPort) {
  auto p = parse_peer("2@127.0.0.1:9381");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->id, 2u);
  EXPECT_EQ(p->host, "127.0.0.1");
  EXPECT_EQ(p->port, 9381);
  auto v6 = parse_peer("7@[::1]:10");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->to_string(), "7@[::1]:10");
  auto l = parse_peer_list(" 1@a:1, 2@b:2 ,3@c:3");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->size(), 3u);
  EXPECT_TRUE(parse_peer_list("")->empty());
}

TEST(PeerAddress, ErrorsSayWhatIsAllowed) {
  for (auto bad : {"127.0.0.1:9381", "x@h:1", "0@h:1", "70000@h:1", "1@h", "1@:5", "1@h:0", "1@h:65536", "1@[::1:5"}) {
    auto p = parse_peer(bad);
    ASSERT_FALSE(p) << bad;
    EXPECT_NE(p.error().message.find("expected ID@HOST:PORT"), std::string::npos) << p.error().message;
  }
  auto dup = parse_peer_list("1@a:1,1@b:2");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("peer id 1 appears twice"), std::string::npos);
  auto dupa = parse_peer_list("1@a:1,2@a:1");
  ASSERT_FALSE(dupa);
  EXPECT_NE(dupa.error().message.find("appears twice"), std::string::npos);
}

}  // namespace
}  // namespace keel::cluster

// keel::Transit against a real keel (a one-member cluster: transit keys live in cluster
// metadata): encrypt/decrypt with a context, rotation and rewrap, retired versions, signing,
// and the server's refusals as errors carrying its message.
#include <gtest/gtest.h>


#include "keel/client/client.h"
#include "keel/client/transit.h"
#include "client/connect_retrying.h"
#include "keel_process.h"

using keel::testing::free_port;
using keel::testing::KeelProcess;

namespace {

TEST(TransitSdk, EncryptsRotatesRewrapsSignsAndReportsRefusals) {
  uint16_t peer = free_port();
  KeelProcess node({"--engine", "memory", "--node-id", "1", "--peer-port", std::to_string(peer), "--peers",
                    "1@127.0.0.1:" + std::to_string(peer)});
  ASSERT_TRUE(node.start()) << node.output();
  auto client = keel::testing::connect_retrying(static_cast<uint16_t>(node.resp_port()));
  keel::Transit transit(client);
  ASSERT_TRUE(transit.create("pii")) << node.output();
  auto again = transit.create("pii");
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("exists"), std::string::npos);

  auto v1 = transit.encrypt("pii", "ada@example.com", "user-1");
  ASSERT_TRUE(v1) << v1.error().to_string();
  EXPECT_EQ(v1->rfind("keel:v1:", 0), 0u);
  EXPECT_EQ(*transit.decrypt("pii", *v1, "user-1"), "ada@example.com");
  auto wrong = transit.decrypt("pii", *v1, "user-2");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("authentication failed"), std::string::npos);

  auto latest = transit.rotate("pii");
  ASSERT_TRUE(latest);
  EXPECT_EQ(*latest, 2u);
  auto v2 = transit.rewrap("pii", *v1, "user-1");
  ASSERT_TRUE(v2);
  EXPECT_EQ(v2->rfind("keel:v2:", 0), 0u);
  ASSERT_TRUE(transit.set_min_decryption_version("pii", 2));
  auto retired = transit.decrypt("pii", *v1, "user-1");
  ASSERT_FALSE(retired);
  EXPECT_NE(retired.error().message.find("min_decryption_version 2"), std::string::npos);
  EXPECT_EQ(*transit.decrypt("pii", *v2, "user-1"), "ada@example.com");

  ASSERT_TRUE(transit.create("builds", keel::Transit::Type::kEd25519));
  auto sig = transit.sign("builds", "sha256:abc");
  ASSERT_TRUE(sig);
  EXPECT_TRUE(*transit.verify("builds", "sha256:abc", *sig));
  EXPECT_FALSE(*transit.verify("builds", "sha256:abd", *sig));

  EXPECT_FALSE(transit.remove("pii"));  // deletion not allowed yet
  ASSERT_TRUE(transit.allow_deletion("pii", true));
  ASSERT_TRUE(transit.remove("pii"));
  auto names = transit.list();
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, std::vector<std::string>{"builds"});
}

}  // namespace

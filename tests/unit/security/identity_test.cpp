#include "security/identity.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "security/pki.h"
#include "security/tls.h"

namespace keel::security {
namespace {

TEST(SpiffeId, ParsesNodeAndClientIdentities) {
  auto n = parse_spiffe_id("spiffe://prod/node/12");
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(n->kind, SpiffeId::Kind::kNode);
  EXPECT_EQ(n->cluster, "prod");
  EXPECT_EQ(n->node, 12u);
  auto c = parse_spiffe_id("spiffe://prod/client/alice.b-1");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->kind, SpiffeId::Kind::kClient);
  EXPECT_EQ(c->name, "alice.b-1");
  EXPECT_EQ(parse_spiffe_id("spiffe://p/node/65535")->node, 65535u);
}

TEST(SpiffeId, RefusesWhatIsNotAKeelIdentityAndSaysWhatIsExpected) {
  for (const char* bad :
       {"", "https://prod/node/1", "spiffe://prod", "spiffe://prod/node", "spiffe://prod/node/",
        "spiffe://prod/node/0", "spiffe://prod/node/65536", "spiffe://prod/node/01",
        "spiffe://prod/node/1/x", "spiffe://prod/node/-1", "spiffe://prod/node/1a",
        "spiffe:///node/1", "spiffe://pr od/node/1", "spiffe://prod/admin/1",
        "spiffe://prod/client/", "spiffe://prod/client/a/b", "spiffe://prod/client/al ice"}) {
    auto r = parse_spiffe_id(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().message.find("expected spiffe://<cluster>/node/<id>"), std::string::npos)
          << r.error().message;
    }
  }
  EXPECT_FALSE(parse_spiffe_id("spiffe://p/node/" + std::string(300, '1')));
}

TEST(NodeIdentity, AcceptsOnlyTheNodeThePeerClaimsToBeInThisCluster) {
  EXPECT_TRUE(check_node_identity({"spiffe://prod/node/2"}, "prod", 2));
  // Other URIs beside the node identity do not matter.
  EXPECT_TRUE(check_node_identity({"https://example.com", "spiffe://prod/node/2"}, "prod", 2));

  auto r = check_node_identity({"spiffe://prod/node/3"}, "prod", 2);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find(
                "names node 3 (spiffe://prod/node/3), not node 2; expected spiffe://prod/node/2"),
            std::string::npos)
      << r.error().message;

  r = check_node_identity({"spiffe://blue/node/2"}, "prod", 2);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("of cluster 'blue'"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("this cluster is 'prod'"), std::string::npos)
      << r.error().message;

  r = check_node_identity({"spiffe://prod/client/alice"}, "prod", 2);
  ASSERT_FALSE(r);
  EXPECT_NE(
      r.error().message.find("names no node identity (URI SANs: [spiffe://prod/client/alice])"),
      std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("keel cert issue --node 2"), std::string::npos)
      << r.error().message;

  r = check_node_identity({}, "prod", 2);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("names no node identity"), std::string::npos)
      << r.error().message;

  r = check_node_identity({"spiffe://prod/node/2", "spiffe://prod/node/3"}, "prod", 2);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("names 2 node identities"), std::string::npos)
      << r.error().message;
}

struct Dir {
  std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("keel-identity-" + std::to_string(::getpid()));
  Dir() { std::filesystem::create_directories(path); }
  ~Dir() { std::filesystem::remove_all(path); }
  std::string put(const std::string& name, const std::string& text) {
    auto p = (path / name).string();
    std::ofstream(p, std::ios::trunc) << text;
    return p;
  }
};

TEST(PeerTls, LoadsANodeCertificateAndRefusesOneNamingAnotherNodeOrCluster) {
  Dir d;
  auto ca = create_ca("prod", KeyType::kEd25519);
  ASSERT_TRUE(ca);
  IssueRequest req;
  req.name = "2";
  auto node2 = issue(*ca, req);
  ASSERT_TRUE(node2);
  TlsServerFiles f;
  f.cert_file = d.put("n.crt", node2->cert);
  f.key_file = d.put("n.key", node2->key);
  f.ca_cert_file = d.put("ca.crt", ca->cert);
  auto ok = PeerTls::create(f, "prod", 2);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_TRUE((*ok)->server() && (*ok)->client());

  auto wrong_node = PeerTls::create(f, "prod", 3);
  ASSERT_FALSE(wrong_node);
  EXPECT_NE(wrong_node.error().message.find("tls.cert_file: " + f.cert_file), std::string::npos)
      << wrong_node.error().message;
  EXPECT_NE(wrong_node.error().message.find("names node 2"), std::string::npos)
      << wrong_node.error().message;

  auto wrong_cluster = PeerTls::create(f, "blue", 2);
  ASSERT_FALSE(wrong_cluster);
  EXPECT_NE(wrong_cluster.error().message.find("of cluster 'prod'"), std::string::npos)
      << wrong_cluster.error().message;

  auto g = f;
  g.ca_cert_file = "";
  auto no_ca = PeerTls::create(g, "prod", 2);
  ASSERT_FALSE(no_ca);
  EXPECT_NE(no_ca.error().message.find("tls.ca_cert_file: must be set when tls.peer = yes"),
            std::string::npos)
      << no_ca.error().message;

  // A reload that finds a bad file keeps the contexts it had.
  auto before = (*ok)->server();
  d.put("n.crt", "not a certificate");
  auto r = (*ok)->reload();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not a PEM certificate"), std::string::npos)
      << r.error().message;
  EXPECT_EQ((*ok)->server(), before);
  // A good one replaces them.
  auto again = issue(*ca, req);
  ASSERT_TRUE(again);
  d.put("n.crt", again->cert);
  d.put("n.key", again->key);
  ASSERT_TRUE((*ok)->reload());
  EXPECT_NE((*ok)->server(), before);
}

TEST(FileWatch, SeesAChangedOrReplacedFileOnce) {
  Dir d;
  auto a = d.put("a.pem", "one");
  FileWatch w({a});
  EXPECT_FALSE(w.changed());
  d.put("a.pem", "one plus");  // another size
  EXPECT_TRUE(w.changed());
  EXPECT_FALSE(w.changed());
  // Replaced by a rename: another inode.
  auto tmp = d.put("a.tmp", "one plus");
  std::filesystem::rename(tmp, a);
  EXPECT_TRUE(w.changed());
  EXPECT_FALSE(w.changed());
  std::filesystem::remove(a);
  EXPECT_TRUE(w.changed());
  EXPECT_FALSE(w.changed());
}

}  // namespace
}  // namespace keel::security

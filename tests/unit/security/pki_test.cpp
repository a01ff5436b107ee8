#include "security/pki.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace keel::security {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int64_t now() { return static_cast<int64_t>(std::time(nullptr)); }

TEST(ParseTtl, UnitsAndLimits) {
  EXPECT_EQ(parse_ttl("30d").value(), 30 * 86400);
  EXPECT_EQ(parse_ttl("12h").value(), 12 * 3600);
  EXPECT_EQ(parse_ttl("90m").value(), 90 * 60);
  EXPECT_EQ(parse_ttl("3600s").value(), 3600);
  EXPECT_EQ(parse_ttl("3650d").value(), 3650LL * 86400);
  for (const char* bad : {"", "30", "d", "30x", "-1d", "0d", "1.5d", "30 d", "59s", "3651d", "99999999999999999d"}) {
    auto r = parse_ttl(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("allowed: a whole number with a unit s, m, h or d"), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("from 1m to 3650d"), std::string::npos);
  }
}

class Pki : public ::testing::TestWithParam<KeyType> {};

TEST_P(Pki, CaIsSelfSignedAndNamesTheCluster) {
  auto ca = create_ca("prod-eu", GetParam());
  ASSERT_TRUE(ca) << ca.error().message;
  auto info = inspect(ca->cert);
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->is_ca);
  EXPECT_EQ(info->key_type, GetParam());
  ASSERT_EQ(info->uris.size(), 1u);
  EXPECT_EQ(info->uris[0], "spiffe://prod-eu");
  EXPECT_EQ(ca_cluster(ca->cert).value(), "prod-eu");
  EXPECT_TRUE(verify(ca->cert, ca->cert));
  EXPECT_GT(info->not_after, now() + 9LL * 365 * 86400);
}

TEST_P(Pki, IssuedNodeCertificateVerifiesAndCarriesItsIdentity) {
  auto ca = create_ca("prod-eu", GetParam());
  ASSERT_TRUE(ca);
  IssueRequest req;
  req.kind = IssueRequest::Kind::kNode;
  req.name = "3";
  req.ttl_s = 7 * 86400;
  req.hosts = {"localhost", "127.0.0.1", "::1"};
  auto cert = issue(*ca, req);
  ASSERT_TRUE(cert) << cert.error().message;
  EXPECT_TRUE(verify(ca->cert, cert->cert));
  auto info = inspect(cert->cert);
  ASSERT_TRUE(info);
  EXPECT_FALSE(info->is_ca);
  EXPECT_EQ(info->key_type, GetParam());
  ASSERT_EQ(info->uris.size(), 1u);
  EXPECT_EQ(info->uris[0], "spiffe://prod-eu/node/3");
  EXPECT_EQ(info->dns, std::vector<std::string>{"localhost"});
  EXPECT_EQ(info->ips, (std::vector<std::string>{"127.0.0.1", "::1"}));
  // Expiry: the requested lifetime from now (give or take the test's run time).
  EXPECT_NEAR(static_cast<double>(info->not_after), static_cast<double>(now() + 7 * 86400), 60.0);
  EXPECT_LE(info->not_before, now());
}

// A node renewing itself: the new certificate carries the same identity, names and lifetime,
// with a new key; a certificate of another cluster's CA is not renewed by this one.
TEST_P(Pki, ReissueKeepsTheIdentityNamesAndLifetimeWithANewKey) {
  auto ca = create_ca("prod-eu", GetParam());
  ASSERT_TRUE(ca);
  IssueRequest req;
  req.name = "7";
  req.ttl_s = 3600;
  req.hosts = {"node-7.example", "10.0.0.7"};
  auto cert = issue(*ca, req);
  ASSERT_TRUE(cert);
  auto renewed = reissue(*ca, cert->cert);
  ASSERT_TRUE(renewed) << renewed.error().message;
  EXPECT_TRUE(verify(ca->cert, renewed->cert));
  EXPECT_NE(renewed->key, cert->key);
  auto a = inspect(cert->cert), b = inspect(renewed->cert);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(b->uris, a->uris);
  EXPECT_EQ(b->dns, a->dns);
  EXPECT_EQ(b->ips, a->ips);
  EXPECT_EQ(b->not_after - b->not_before, a->not_after - a->not_before);
  auto other = create_ca("prod-us", GetParam());
  ASSERT_TRUE(other);
  auto refused = reissue(*other, cert->cert);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("names no node or client of cluster 'prod-us'"), std::string::npos)
      << refused.error().message;
}

TEST(Pki, RenewalIsDueAfterTheGivenShareOfTheLifetimePlusJitter) {
  EXPECT_EQ(renewal_due_s(1000, 2000, 0.5, 0.0), 1500);
  EXPECT_EQ(renewal_due_s(1000, 2000, 0.5, 0.999, 0.05), 1549);
  EXPECT_EQ(renewal_due_s(1000, 2000, 0.05, 0.5, 0.05), 1075);
  // The jitter never pushes the renewal past the expiry.
  EXPECT_LE(renewal_due_s(1000, 2000, 0.99, 1.0, 0.5), 2000);
  EXPECT_EQ(renewal_due_s(1000, 1000, 0.5, 0.5), 1000);  // nothing left: due now
}

TEST_P(Pki, ClientCertificateFromAnotherCaIsRejected) {
  auto ca = create_ca("a", GetParam());
  auto other = create_ca("a", GetParam());
  ASSERT_TRUE(ca && other);
  IssueRequest req;
  req.kind = IssueRequest::Kind::kClient;
  req.name = "alice";
  auto cert = issue(*other, req);
  ASSERT_TRUE(cert);
  EXPECT_EQ(inspect(cert->cert)->uris.at(0), "spiffe://a/client/alice");
  EXPECT_TRUE(verify(other->cert, cert->cert));
  auto r = verify(ca->cert, cert->cert);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("unable to get local issuer certificate"), std::string::npos) << r.error().message;
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, Pki, ::testing::Values(KeyType::kEd25519, KeyType::kP256),
                         [](const auto& i) { return i.param == KeyType::kEd25519 ? "Ed25519" : "P256"; });

TEST(Pki, ExpiredCertificateFailsVerification) {
  // A CA valid for 60 s issues nothing longer; its own expiry is checked at issue time.
  auto ca = create_ca("c", KeyType::kEd25519, 120);
  ASSERT_TRUE(ca);
  IssueRequest req;
  req.name = "1";
  req.ttl_s = 3600;
  auto r = issue(*ca, req);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("would outlive its CA"), std::string::npos) << r.error().message;
  // A CA whose validity ended (negative lifetime: notAfter in the past).
  auto old = create_ca("c", KeyType::kEd25519, -30);
  ASSERT_TRUE(old);
  auto v = verify(old->cert, old->cert);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("expired"), std::string::npos) << v.error().message;
}

TEST(Pki, BadNamesAndKeysAreRefusedWithWhatIsAllowed) {
  auto ca = create_ca("c", KeyType::kEd25519);
  ASSERT_TRUE(ca);
  IssueRequest req;
  req.name = "zero";
  auto r = issue(*ca, req);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("allowed: 1..65535"), std::string::npos);
  req.kind = IssueRequest::Kind::kClient;
  req.name = "bob/../x";
  r = issue(*ca, req);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("allowed: 1 to 64 characters"), std::string::npos);
  req.name = "bob";
  req.hosts = {"evil,URI:spiffe://c/node/1"};
  r = issue(*ca, req);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("host"), std::string::npos);
  req.hosts.clear();
  auto other = create_ca("c", KeyType::kEd25519);
  r = issue(Pem{ca->cert, other->key}, req);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("does not belong"), std::string::npos) << r.error().message;
  EXPECT_FALSE(create_ca("has space", KeyType::kEd25519));
}

TEST(PkiFiles, InitAndIssueWriteFilesWithPrivateKeyModes) {
  namespace fs = std::filesystem;
  auto dir = fs::temp_directory_path() / ("keel-pki-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(init_ca_dir(dir.string(), "test", KeyType::kP256));
  struct stat st {};
  ASSERT_EQ(::stat((dir / "ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // A second init would orphan every issued certificate: refused.
  auto again = init_ca_dir(dir.string(), "test", KeyType::kP256);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("already exists"), std::string::npos);

  IssueRequest req;
  req.kind = IssueRequest::Kind::kClient;
  req.name = "alice";
  auto id = issue_to_dir(dir.string(), req);
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_EQ(*id, "spiffe://test/client/alice");
  ASSERT_EQ(::stat((dir / "alice.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto pem = slurp((dir / "alice.crt").string());
  EXPECT_TRUE(verify(slurp((dir / "ca.crt").string()), pem));
  EXPECT_EQ(inspect(pem)->key_type, KeyType::kP256);

  req.kind = IssueRequest::Kind::kNode;
  req.name = "7";
  ASSERT_TRUE(issue_to_dir(dir.string(), req));
  EXPECT_TRUE(fs::exists(dir / "node-7.crt"));
  EXPECT_FALSE(issue_to_dir(dir.string(), req, "ca"));

  auto missing = issue_to_dir((dir / "nope").string(), req);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("keel cert init"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace keel::security

#include "security/tls.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "security/pki.h"

namespace keel::security {
namespace {

struct Dir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / ("keel-tls-" + std::to_string(::getpid()));
  Dir() { std::filesystem::create_directories(path); }
  ~Dir() { std::filesystem::remove_all(path); }
  std::string put(const std::string& name, const std::string& text) {
    auto p = (path / name).string();
    std::ofstream(p) << text;
    return p;
  }
};

TEST(TlsContext, GoodFilesLoadAndBadOnesNameTheFileAndTheProblem) {
  Dir d;
  auto ca = create_ca("t", KeyType::kEd25519);
  ASSERT_TRUE(ca);
  IssueRequest req;
  req.name = "1";
  auto node = issue(*ca, req);
  auto other = issue(*ca, req);
  ASSERT_TRUE(node && other);
  TlsServerFiles f;
  f.cert_file = d.put("n.crt", node->cert);
  f.key_file = d.put("n.key", node->key);
  f.ca_cert_file = d.put("ca.crt", ca->cert);
  EXPECT_TRUE(make_server_context(f));

  auto expect_error = [&](TlsServerFiles g, const std::string& want1, const std::string& want2) {
    auto r = make_server_context(g);
    ASSERT_FALSE(r) << want1;
    EXPECT_NE(r.error().message.find(want1), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(want2), std::string::npos) << r.error().message;
  };
  auto g = f;
  g.cert_file = (d.path / "missing.crt").string();
  expect_error(g, "tls.cert_file: " + g.cert_file, "cannot read the file");
  g = f;
  g.cert_file = d.put("garbage.crt", "hello");
  expect_error(g, "tls.cert_file: " + g.cert_file, "not a PEM certificate");
  g = f;
  g.key_file = d.put("other.key", other->key);
  expect_error(g, "tls.key_file: " + g.key_file, "does not belong to the certificate");
  g = f;
  g.key_file = d.put("garbage.key", "hello");
  expect_error(g, "tls.key_file: " + g.key_file, "not a PEM private key");
  g = f;
  g.ca_cert_file = "";
  expect_error(g, "tls.ca_cert_file", "must be set when tls.auth_clients is yes");
  g.auth = ClientAuth::kNo;
  EXPECT_TRUE(make_server_context(g));
  g = f;
  g.ca_cert_file = d.put("bad-ca.crt", "nope");
  expect_error(g, "tls.ca_cert_file: " + g.ca_cert_file, "not a PEM CA certificate");
}

TEST(TlsContext, ClientAuthNames) {
  EXPECT_EQ(parse_client_auth("yes").value(), ClientAuth::kYes);
  EXPECT_EQ(parse_client_auth("optional").value(), ClientAuth::kOptional);
  EXPECT_EQ(parse_client_auth("no").value(), ClientAuth::kNo);
  auto r = parse_client_auth("maybe");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("allowed: yes, no, optional"), std::string::npos);
}

}  // namespace
}  // namespace keel::security

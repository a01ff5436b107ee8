// Mutual TLS on peer links (TransportOptions::tls): delivery both ways over TLS, and refusal
// of a certificate from another CA, of a certificate naming another node than the peer
// claims or than the node dialled, and of a plaintext peer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>

#include "runtime/cluster/peers.h"
#include "security/pki.h"
#include "security/tls.h"

namespace keel::cluster {
namespace {

namespace asio = boost::asio;

bool run_until(asio::io_context& io, const std::function<bool()>& done) {
  auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > limit) return false;
    io.run_for(std::chrono::milliseconds(5));
    if (io.stopped()) io.restart();
  }
  return true;
}

// Two CAs of cluster "test" and their node certificates, as files.
struct Pki {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("keel-peers-tls-" + std::to_string(::getpid()));
  Pki() { std::filesystem::create_directories(dir); }
  ~Pki() { std::filesystem::remove_all(dir); }
  std::string put(const std::string& name, const std::string& text) {
    auto p = (dir / name).string();
    std::ofstream(p, std::ios::trunc) << text;
    return p;
  }
  // Writes CA `ca` (made on first use) and a certificate for node `id` issued by it.
  security::TlsServerFiles node(const std::string& ca, uint32_t id) {
    auto& pem = cas[ca];
    if (pem.cert.empty()) pem = *security::create_ca("test", security::KeyType::kEd25519);
    security::IssueRequest req;
    req.name = std::to_string(id);
    auto c = security::issue(pem, req);
    EXPECT_TRUE(c);
    security::TlsServerFiles f;
    f.ca_cert_file = put(ca + "-ca.crt", pem.cert);
    f.cert_file = put(ca + "-node-" + req.name + ".crt", c->cert);
    f.key_file = put(ca + "-node-" + req.name + ".key", c->key);
    return f;
  }
  std::shared_ptr<security::PeerTls> tls(const std::string& ca, uint32_t id) {
    auto t = security::PeerTls::create(node(ca, id), "test", id);
    EXPECT_TRUE(t) << t.error().message;
    return *t;
  }
  std::map<std::string, security::Pem> cas;
};

TransportOptions opts(uint32_t id, std::shared_ptr<security::PeerTls> tls) {
  TransportOptions o;
  o.cluster_id = "test";
  o.node_id = id;
  o.port = 0;
  o.backoff_min_ms = 10;
  o.backoff_max_ms = 50;
  o.tls = std::move(tls);
  return o;
}

TEST(PeerTransportTls, DeliversBothWaysOverMutualTls) {
  Pki pki;
  asio::io_context io;
  std::vector<std::pair<uint32_t, std::string>> r1, r2;
  auto tls1 = pki.tls("a", 1), tls2 = pki.tls("a", 2);
  PeerTransport t2(io, opts(2, tls2),
                   [&](uint32_t from, MsgType, std::string p) { r2.emplace_back(from, p); });
  auto p2 = t2.start();
  ASSERT_TRUE(p2);
  auto o1 = opts(1, tls1);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
  PeerTransport t1(io, o1,
                   [&](uint32_t from, MsgType, std::string p) { r1.emplace_back(from, p); });
  auto p1 = t1.start();
  ASSERT_TRUE(p1);
  t2.add_peer({1, "127.0.0.1", static_cast<uint16_t>(*p1)});
  const std::string big(1 << 20, 'x');  // many TLS records in one frame
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(t1.send(2, MsgType::kRabia, "m" + std::to_string(i)));
  ASSERT_TRUE(t1.send(2, MsgType::kData, big));
  ASSERT_TRUE(run_until(io, [&] { return r2.size() == 101; }));
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(r2[i], (std::pair<uint32_t, std::string>{1, "m" + std::to_string(i)}));
  EXPECT_EQ(r2[100].second, big);
  t2.send(1, MsgType::kHeartbeat, "hb");
  ASSERT_TRUE(run_until(io, [&] { return r1.size() == 1; }));
  EXPECT_EQ(r1[0], (std::pair<uint32_t, std::string>{2, "hb"}));
  EXPECT_EQ(tls1->refused_handshake + tls1->refused_identity + tls2->refused_handshake +
                tls2->refused_identity,
            0u);
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransportTls, RefusesACertificateFromAnotherCa) {
  Pki pki;
  asio::io_context io;
  int delivered = 0;
  auto tls2 = pki.tls("a", 2);
  auto tls1 = pki.tls("b", 1);  // same cluster name, node id right, another CA
  PeerTransport t2(io, opts(2, tls2), [&](uint32_t, MsgType, std::string) { ++delivered; });
  auto p2 = t2.start();
  ASSERT_TRUE(p2);
  auto o1 = opts(1, tls1);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  t1.send(2, MsgType::kRabia, "x");
  ASSERT_TRUE(run_until(
      io, [&] { return t1.stats()[0].connect_failures >= 2 && tls2->refused_handshake >= 1; }));
  auto err = t1.stats()[0].last_error;
  EXPECT_NE(err.find("TLS handshake with peer 127.0.0.1:" + std::to_string(*p2) +
                     " failed: certificate verify failed"),
            std::string::npos)
      << err;
  EXPECT_GE(tls1->refused_handshake.load(), 1u);
  EXPECT_FALSE(t1.connected(2));
  EXPECT_EQ(delivered, 0);
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransportTls, RefusesACertificateNamingAnotherNodeThanThePeerClaims) {
  Pki pki;
  asio::io_context io;
  int delivered = 0;
  auto tls2 = pki.tls("a", 2);
  auto tls3 = pki.tls("a", 3);  // a valid certificate of the cluster CA, for node 3
  PeerTransport t2(io, opts(2, tls2), [&](uint32_t, MsgType, std::string) { ++delivered; });
  auto p2 = t2.start();
  ASSERT_TRUE(p2);
  auto o1 = opts(1, tls3);  // says it is node 1
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  t1.send(2, MsgType::kRabia, "x");
  ASSERT_TRUE(run_until(io, [&] { return t1.stats()[0].connect_failures >= 2; }));
  auto err = t1.stats()[0].last_error;
  EXPECT_NE(err.find("peer refused the handshake: node 1 is refused, its Hello and its certificate "
                     "disagree: the "
                     "certificate names node 3 (spiffe://test/node/3), not node 1; expected "
                     "spiffe://test/node/1"),
            std::string::npos)
      << err;
  EXPECT_GE(tls2->refused_identity.load(), 2u);
  EXPECT_EQ(tls2->refused_handshake.load(), 0u);
  EXPECT_FALSE(t1.connected(2));
  EXPECT_EQ(delivered, 0);
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransportTls, RefusesAServerWhoseCertificateNamesAnotherNodeThanTheOneDialled) {
  Pki pki;
  asio::io_context io;
  auto tls2 = pki.tls("a", 2);
  auto tls1 = pki.tls("a", 1);
  PeerTransport t2(io, opts(2, tls2), [&](uint32_t, MsgType, std::string) {});
  auto p2 = t2.start();
  ASSERT_TRUE(p2);
  auto o1 = opts(1, tls1);
  o1.peers = {
      {4, "127.0.0.1", static_cast<uint16_t>(*p2)}};  // node 4 expected there; node 2 answers
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  ASSERT_TRUE(run_until(io, [&] { return t1.stats()[0].connect_failures >= 2; }));
  auto err = t1.stats()[0].last_error;
  EXPECT_NE(
      err.find(
          "dialled as node 4: the certificate names node 2 (spiffe://test/node/2), not node 4"),
      std::string::npos)
      << err;
  EXPECT_GE(tls1->refused_identity.load(), 2u);
  EXPECT_FALSE(t1.connected(4));
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransportTls, RefusesAPlaintextPeer) {
  Pki pki;
  asio::io_context io;
  int delivered = 0;
  auto tls2 = pki.tls("a", 2);
  auto o2 = opts(2, tls2);
  o2.handshake_timeout_ms = 300;
  PeerTransport t2(io, o2, [&](uint32_t, MsgType, std::string) { ++delivered; });
  auto p2 = t2.start();
  ASSERT_TRUE(p2);
  auto o1 = opts(1, nullptr);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  t1.send(2, MsgType::kRabia, "x");
  ASSERT_TRUE(run_until(io, [&] { return tls2->refused_handshake >= 2; }));
  EXPECT_FALSE(t1.connected(2));
  EXPECT_EQ(delivered, 0);
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransportTls, NewLinksUseReloadedCertificatesAndOpenLinksKeepTheirs) {
  Pki pki;
  asio::io_context io;
  std::vector<std::pair<uint32_t, std::string>> r2;
  auto files2 = pki.node("a", 2);
  auto tls2 = *security::PeerTls::create(files2, "test", 2);
  auto tls1 = pki.tls("a", 1);
  PeerTransport t2(io, opts(2, tls2),
                   [&](uint32_t from, MsgType, std::string p) { r2.emplace_back(from, p); });
  auto p2 = t2.start();
  ASSERT_TRUE(p2);
  auto o1 = opts(1, tls1);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  ASSERT_TRUE(t1.send(2, MsgType::kRabia, "before"));
  ASSERT_TRUE(run_until(io, [&] { return r2.size() == 1; }));
  // Node 2's files now hold a certificate (and CA) from another CA; reloaded, the link that is
  // open keeps working, and a new one is refused by node 1, which trusts only CA "a".
  auto other = pki.node("b", 2);
  std::filesystem::copy_file(other.cert_file, files2.cert_file,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(other.key_file, files2.key_file,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(other.ca_cert_file, files2.ca_cert_file,
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(tls2->reload());
  ASSERT_TRUE(t1.send(2, MsgType::kRabia, "open link"));
  ASSERT_TRUE(run_until(io, [&] { return r2.size() == 2; }));
  EXPECT_EQ(r2[1].second, "open link");
  ASSERT_TRUE(t1.reconnect(2, "test: redial"));
  ASSERT_TRUE(run_until(io, [&] { return tls1->refused_handshake >= 2; }));
  EXPECT_FALSE(t1.connected(2));
  EXPECT_NE(t1.stats()[0].last_error.find("certificate verify failed"), std::string::npos)
      << t1.stats()[0].last_error;
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

// Rotating the CA (docs/security.md): while members trust a file holding both the old and
// the new CA, a member with a certificate from either is accepted.
TEST(PeerTransportTls, ACaBundleTrustsCertificatesFromEitherCa) {
  Pki pki;
  asio::io_context io;
  int delivered = 0;
  auto f2 = pki.node("old", 2);
  auto f1 = pki.node("new", 1);
  std::string bundle_text;
  for (auto* path : {&f2.ca_cert_file, &f1.ca_cert_file}) {
    std::ifstream in(*path);
    bundle_text +=
        std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  const std::string bundle = pki.put("bundle.crt", bundle_text);
  f1.ca_cert_file = f2.ca_cert_file = bundle;
  auto tls2 = *security::PeerTls::create(f2, "test", 2);
  auto tls1 = *security::PeerTls::create(f1, "test", 1);
  PeerTransport t2(io, opts(2, tls2), [&](uint32_t, MsgType, std::string) { ++delivered; });
  auto p2 = t2.start();
  ASSERT_TRUE(p2);
  auto o1 = opts(1, tls1);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  ASSERT_TRUE(t1.send(2, MsgType::kRabia, "x"));
  ASSERT_TRUE(run_until(io, [&] { return delivered == 1; }));
  EXPECT_EQ(tls1->refused_handshake + tls2->refused_handshake, 0u);
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransportTls, ALinkComesBackAfterThePeerRestarts) {
  Pki pki;
  asio::io_context io;
  std::vector<std::pair<uint32_t, std::string>> r;
  auto tls1 = pki.tls("a", 1), tls2 = pki.tls("a", 2);
  auto t2 = std::make_unique<PeerTransport>(
      io, opts(2, tls2), [&](uint32_t f, MsgType, std::string p) { r.emplace_back(f, p); });
  auto port = t2->start();
  ASSERT_TRUE(port);
  auto o1 = opts(1, tls1);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*port)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  ASSERT_TRUE(run_until(io, [&] { return t1.connected(2); }));
  t2->stop();
  t2.reset();
  ASSERT_TRUE(run_until(io, [&] { return !t1.connected(2); }));
  auto o2 = opts(2, tls2);
  o2.port = *port;
  t2 = std::make_unique<PeerTransport>(
      io, o2, [&](uint32_t f, MsgType, std::string p) { r.emplace_back(f, p); });
  ASSERT_TRUE(t2->start());
  ASSERT_TRUE(t1.send(2, MsgType::kRabia, "again"));
  ASSERT_TRUE(run_until(io, [&] { return r.size() == 1; }));
  EXPECT_EQ(r[0], (std::pair<uint32_t, std::string>{1, "again"}));
  EXPECT_EQ(tls1->refused_handshake + tls1->refused_identity, 0u);
  t1.stop();
  t2->stop();
  io.run_for(std::chrono::milliseconds(50));
}

}  // namespace
}  // namespace keel::cluster

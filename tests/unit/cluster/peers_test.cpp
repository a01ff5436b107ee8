// Two and three transports on one io_context over loopback: handshake, delivery, reconnect
// after a peer restarts, refusal of a foreign cluster, bounded queues.
#include "runtime/cluster/peers.h"

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <map>

namespace keel::cluster {
namespace {

namespace asio = boost::asio;

struct Received {
  std::vector<std::pair<uint32_t, std::string>> msgs;
};

// Runs the loop until `done()` or a generous safety limit (a hang is a failure, not a timing
// assertion: the limit is far above anything expected).
bool run_until(asio::io_context& io, const std::function<bool()>& done) {
  auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > limit) return false;
    io.run_for(std::chrono::milliseconds(5));
    if (io.stopped()) io.restart();
  }
  return true;
}

TransportOptions opts(uint32_t id, std::string cluster = "test") {
  TransportOptions o;
  o.cluster_id = std::move(cluster);
  o.node_id = id;
  o.port = 0;
  o.backoff_min_ms = 10;
  o.backoff_max_ms = 50;
  return o;
}

TEST(PeerTransport, DeliversBothWaysAfterHandshake) {
  asio::io_context io;
  Received r1, r2;
  auto o1 = opts(1), o2 = opts(2);
  PeerTransport t2(io, o2, [&](uint32_t from, MsgType, std::string p) { r2.msgs.emplace_back(from, p); });
  auto p2 = t2.start();
  ASSERT_TRUE(p2);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
  PeerTransport t1(io, o1, [&](uint32_t from, MsgType, std::string p) { r1.msgs.emplace_back(from, p); });
  auto p1 = t1.start();
  ASSERT_TRUE(p1);
  t2.add_peer({1, "127.0.0.1", static_cast<uint16_t>(*p1)});
  // Queued before the link is up: delivered once it is.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(t1.send(2, MsgType::kRabia, "m" + std::to_string(i)));
  ASSERT_TRUE(run_until(io, [&] { return r2.msgs.size() == 100; }));
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(r2.msgs[i].first, 1u);
    EXPECT_EQ(r2.msgs[i].second, "m" + std::to_string(i));  // in order
  }
  t2.send(1, MsgType::kHeartbeat, "hb");
  ASSERT_TRUE(run_until(io, [&] { return r1.msgs.size() == 1; }));
  EXPECT_EQ(r1.msgs[0], (std::pair<uint32_t, std::string>{2, "hb"}));
  EXPECT_TRUE(t1.connected(2));
  EXPECT_FALSE(t1.send(9, MsgType::kRabia, "x"));  // not a peer
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransport, ReconnectsWhenThePeerComesBack) {
  asio::io_context io;
  Received r;
  auto o2 = opts(2);
  auto t2 = std::make_unique<PeerTransport>(io, o2, [&](uint32_t f, MsgType, std::string p) { r.msgs.emplace_back(f, p); });
  auto port = t2->start();
  ASSERT_TRUE(port);
  auto o1 = opts(1);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*port)}};
  std::vector<bool> links;
  PeerTransport t1(io, o1, {}, [&](uint32_t, bool up) { links.push_back(up); });
  ASSERT_TRUE(t1.start());
  t1.send(2, MsgType::kRabia, "before");
  ASSERT_TRUE(run_until(io, [&] { return r.msgs.size() == 1; }));
  t2->stop();
  t2.reset();
  ASSERT_TRUE(run_until(io, [&] { return !t1.connected(2); }));
  // The same address comes back (as a restarted node would).
  o2.port = *port;
  t2 = std::make_unique<PeerTransport>(io, o2, [&](uint32_t f, MsgType, std::string p) { r.msgs.emplace_back(f, p); });
  ASSERT_TRUE(t2->start());
  ASSERT_TRUE(run_until(io, [&] { return t1.connected(2); }));
  t1.send(2, MsgType::kRabia, "after");
  ASSERT_TRUE(run_until(io, [&] { return r.msgs.size() == 2; }));
  EXPECT_EQ(r.msgs[1].second, "after");
  EXPECT_EQ(links, (std::vector<bool>{true, false, true}));
  auto st = t1.stats();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].connects, 2u);
  t1.stop();
  t2->stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransport, FollowsAPeerThatComesBackOnAnotherPort) {
  asio::io_context io;
  Received r;
  auto o2 = opts(2);
  auto t2 = std::make_unique<PeerTransport>(io, o2, [&](uint32_t f, MsgType, std::string p) { r.msgs.emplace_back(f, p); });
  auto port = t2->start();
  ASSERT_TRUE(port);
  PeerTransport t1(io, opts(1), {});
  ASSERT_TRUE(t1.start());
  t1.add_peer({2, "127.0.0.1", static_cast<uint16_t>(*port)});
  t1.send(2, MsgType::kData, "before");
  ASSERT_TRUE(run_until(io, [&] { return r.msgs.size() == 1; }));
  t2->stop();
  t2.reset();
  ASSERT_TRUE(run_until(io, [&] { return !t1.connected(2); }));
  // Restarted with port 0: a new port, learnt from its new record. Adding the same address
  // again changes nothing; the new one replaces the old link.
  t2 = std::make_unique<PeerTransport>(io, o2, [&](uint32_t f, MsgType, std::string p) { r.msgs.emplace_back(f, p); });
  auto port2 = t2->start();
  ASSERT_TRUE(port2);
  ASSERT_NE(*port2, *port);
  t1.add_peer({2, "127.0.0.1", static_cast<uint16_t>(*port)});
  t1.add_peer({2, "127.0.0.1", static_cast<uint16_t>(*port2)});
  t1.add_peer({2, "127.0.0.1", static_cast<uint16_t>(*port2)});
  ASSERT_TRUE(run_until(io, [&] { return t1.connected(2); }));
  t1.send(2, MsgType::kData, "after");
  ASSERT_TRUE(run_until(io, [&] { return r.msgs.size() == 2; }));
  EXPECT_EQ(r.msgs[1].second, "after");
  auto st = t1.stats();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].address, "127.0.0.1:" + std::to_string(*port2));
  t1.stop();
  t2->stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransport, RefusesAForeignClusterWithTheReason) {
  asio::io_context io;
  int delivered = 0;
  PeerTransport t2(io, opts(2, "blue"), [&](uint32_t, MsgType, std::string) { ++delivered; });
  auto port = t2.start();
  ASSERT_TRUE(port);
  auto o1 = opts(1, "green");
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*port)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  t1.send(2, MsgType::kRabia, "x");
  ASSERT_TRUE(run_until(io, [&] { return !t1.stats()[0].last_error.empty() && t1.stats()[0].connect_failures >= 2; }));
  auto err = t1.stats()[0].last_error;
  EXPECT_NE(err.find("cluster id 'green' does not match this node's cluster id 'blue'"), std::string::npos) << err;
  EXPECT_FALSE(t1.connected(2));
  EXPECT_EQ(delivered, 0);
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransport, RefusesAPeerBootstrappedWithOtherMembers) {
  asio::io_context io;
  auto o2 = opts(2, "blue");
  o2.initial_members = {1, 2, 4};
  PeerTransport t2(io, o2, [&](uint32_t, MsgType, std::string) {});
  auto port = t2.start();
  ASSERT_TRUE(port);
  auto o1 = opts(1, "blue");
  o1.initial_members = {1, 2, 3};
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*port)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  ASSERT_TRUE(run_until(io, [&] { return t1.stats()[0].connect_failures >= 2; }));
  auto err = t1.stats()[0].last_error;
  EXPECT_NE(err.find("node 1 was started with members 1,2,3 but this node (node 2) with members 1,2,4"), std::string::npos)
      << err;
  EXPECT_FALSE(t1.connected(2));
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));

  // A node that joins (no initial list) or a cluster past its first configuration is not
  // checked: the decided configuration governs there.
  for (int variant = 0; variant < 2; ++variant) {
    asio::io_context io2;
    auto b2 = opts(2, "blue");
    b2.initial_members = {1, 2, 4};
    if (variant == 1) b2.config_epoch = 3;
    PeerTransport u2(io2, b2, [&](uint32_t, MsgType, std::string) {});
    auto p2 = u2.start();
    ASSERT_TRUE(p2);
    auto b1 = opts(1, "blue");
    if (variant == 1) b1.initial_members = {1, 2, 3};
    b1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*p2)}};
    PeerTransport u1(io2, b1, {});
    ASSERT_TRUE(u1.start());
    EXPECT_TRUE(run_until(io2, [&] { return u1.connected(2); })) << "variant " << variant;
    u1.stop();
    u2.stop();
    io2.run_for(std::chrono::milliseconds(50));
  }
}

TEST(PeerTransport, QueueToADeadPeerIsBounded) {
  asio::io_context io;
  auto o1 = opts(1);
  o1.peers = {{2, "127.0.0.1", 1}};  // nothing listens on port 1
  o1.max_queue_frames = 10;
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  int accepted = 0;
  for (int i = 0; i < 50; ++i) accepted += t1.send(2, MsgType::kRabia, "x");
  EXPECT_EQ(accepted, 10);
  auto st = t1.stats();
  EXPECT_EQ(st[0].frames_dropped, 40u);
  EXPECT_EQ(st[0].queue_frames, 10u);
  ASSERT_TRUE(run_until(io, [&] { return t1.stats()[0].connect_failures >= 2; }));
  EXPECT_NE(t1.stats()[0].last_error.find("connect to 127.0.0.1:1"), std::string::npos) << t1.stats()[0].last_error;
  t1.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransport, ReconnectClosesTheLinkAndRedialsIt) {
  asio::io_context io;
  Received r;
  auto o2 = opts(2);
  PeerTransport t2(io, o2, [&](uint32_t f, MsgType, std::string p) { r.msgs.emplace_back(f, p); });
  auto port = t2.start();
  ASSERT_TRUE(port);
  auto o1 = opts(1);
  o1.peers = {{2, "127.0.0.1", static_cast<uint16_t>(*port)}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  EXPECT_FALSE(t1.reconnect(2, "not up yet"));  // a dial in progress is left alone
  ASSERT_TRUE(run_until(io, [&] { return t1.connected(2); }));
  EXPECT_FALSE(t1.reconnect(7, "x"));  // not a peer
  ASSERT_TRUE(t1.reconnect(2, "nothing heard from member 2"));
  EXPECT_FALSE(t1.connected(2));
  EXPECT_EQ(t1.stats()[0].last_error, "nothing heard from member 2");
  // Frames sent while the link is down are queued (within the bounds) and delivered after.
  ASSERT_TRUE(t1.send(2, MsgType::kRabia, "after"));
  ASSERT_TRUE(run_until(io, [&] { return r.msgs.size() == 1 && t1.connected(2); }));
  EXPECT_EQ(r.msgs[0], (std::pair<uint32_t, std::string>{1, "after"}));
  auto st = t1.stats()[0];
  EXPECT_EQ(st.redials, 1u);
  EXPECT_EQ(st.connects, 2u);
  t1.stop();
  t2.stop();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransport, ADialIntoSilenceFailsAtItsDeadlineAndIsRetried) {
  // A listener that accepts and never answers the Hello: what a peer behind a black hole
  // looks like once the SYN got through (or a proxy that stopped forwarding).
  asio::io_context io;
  asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<std::shared_ptr<asio::ip::tcp::socket>> held;
  std::function<void()> accept = [&] {
    auto s = std::make_shared<asio::ip::tcp::socket>(io);
    silent.async_accept(*s, [&, s](const boost::system::error_code& ec) {
      if (ec) return;
      held.push_back(s);
      accept();
    });
  };
  accept();
  auto o1 = opts(1);
  o1.connect_timeout_ms = 100;
  o1.handshake_timeout_ms = 60000;  // the dial's own deadline must end it, not this one
  o1.peers = {{2, "127.0.0.1", silent.local_endpoint().port()}};
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  ASSERT_TRUE(run_until(io, [&] { return t1.stats()[0].connect_failures >= 3; }));
  auto st = t1.stats()[0];
  EXPECT_NE(st.last_error.find("within 100 ms (connect_timeout_ms)"), std::string::npos) << st.last_error;
  EXPECT_FALSE(t1.connected(2));
  EXPECT_GE(held.size(), 3u);  // each attempt was a new connection
  t1.stop();
  silent.close();
  io.run_for(std::chrono::milliseconds(50));
}

TEST(PeerTransport, AFrameAboveTheLimitIsCountedAsOversizedNotSilentlyDropped) {
  asio::io_context io;
  auto o1 = opts(1);
  o1.peers = {{2, "127.0.0.1", 1}};
  o1.limits.max_payload_bytes = 1024;
  PeerTransport t1(io, o1, {});
  ASSERT_TRUE(t1.start());
  EXPECT_TRUE(t1.send(2, MsgType::kRabia, std::string(1024, 'a')));  // exactly the limit
  EXPECT_FALSE(t1.send(2, MsgType::kRabia, std::string(1025, 'b')));
  EXPECT_FALSE(t1.send(2, MsgType::kRabia, std::string(5000, 'c')));
  auto st = t1.stats();
  EXPECT_EQ(st[0].frames_oversized, 2u);
  EXPECT_EQ(st[0].frames_dropped, 0u);  // not mistaken for a full queue
  EXPECT_EQ(st[0].queue_frames, 1u);
  t1.stop();
  io.run_for(std::chrono::milliseconds(50));
}

}  // namespace
}  // namespace keel::cluster

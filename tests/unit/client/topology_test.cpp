// The slot map from CLUSTER SHARDS (RESP3 and RESP2 shapes), MOVED patches, redirect parsing.
#include <gtest/gtest.h>

#include "keel/client/topology.h"

using namespace keel::client;

namespace {
Reply map(std::vector<Reply> kv, bool resp3) {
  Reply r;
  r.type = resp3 ? ReplyType::kMap : ReplyType::kArray;
  r.elements = std::move(kv);
  return r;
}
Reply node(std::string ip, int port, std::string role, bool resp3, std::string health = "online") {
  return map({Reply::bulk("id"), Reply::bulk("abc"), Reply::bulk("port"), Reply::integer_value(port),
              Reply::bulk("ip"), Reply::bulk(ip), Reply::bulk("endpoint"), Reply::bulk(ip),
              Reply::bulk("role"), Reply::bulk(role), Reply::bulk("health"), Reply::bulk(health)},
             resp3);
}
Reply shard(std::vector<int64_t> ranges, std::vector<Reply> nodes, bool resp3) {
  std::vector<Reply> slots;
  for (auto v : ranges) slots.push_back(Reply::integer_value(v));
  return map({Reply::bulk("slots"), Reply::array(slots), Reply::bulk("nodes"), Reply::array(nodes)}, resp3);
}
}  // namespace

TEST(Topology, ReadsClusterShardsInBothProtocols) {
  for (bool resp3 : {true, false}) {
    Reply r = Reply::array({
        shard({0, 5460, 10923, 12000}, {node("10.0.0.1", 7000, "master", resp3), node("10.0.0.2", 7001, "replica", resp3)}, resp3),
        shard({5461, 10922}, {node("10.0.0.3", 7002, "replica", resp3), node("10.0.0.4", 7003, "master", resp3)}, resp3),
        shard({12001, 16383}, {node("10.0.0.5", 7004, "master", resp3, "fail")}, resp3),
    });
    auto t = Topology::from_cluster_shards(r);
    ASSERT_TRUE(t) << t.error().to_string();
    EXPECT_EQ(*t->endpoint_for_slot(0), (Endpoint{"10.0.0.1", 7000}));
    EXPECT_EQ(*t->endpoint_for_slot(11000), (Endpoint{"10.0.0.1", 7000}));
    EXPECT_EQ(*t->endpoint_for_slot(5461), (Endpoint{"10.0.0.4", 7003}));
    EXPECT_EQ(t->endpoint_for_slot(16000), nullptr);  // its only primary has failed
    EXPECT_EQ(t->covered_slots(), 12001u);
    EXPECT_EQ(t->shards()[0].replicas.size(), 1u);
    t->move_slot(16000, Endpoint{"10.0.0.9", 7009});
    EXPECT_EQ(*t->endpoint_for_slot(16000), (Endpoint{"10.0.0.9", 7009}));
  }
}

TEST(Topology, RefusesMalformedShardsWithTheReason) {
  auto bad_range = Topology::from_cluster_shards(Reply::array({shard({0, 16384}, {node("a", 1, "master", true)}, true)}));
  ASSERT_FALSE(bad_range);
  EXPECT_NE(bad_range.error().message.find("outside 0-16383"), std::string::npos);
  auto no_nodes = Topology::from_cluster_shards(Reply::array({map({Reply::bulk("slots"), Reply::array({})}, true)}));
  ASSERT_FALSE(no_nodes);
  EXPECT_NE(no_nodes.error().message.find("'nodes'"), std::string::npos);
  auto not_array = Topology::from_cluster_shards(Reply::bulk("x"));
  ASSERT_FALSE(not_array);
  EXPECT_EQ(not_array.error().code, Errc::kUnexpectedReply);
  auto err = Topology::from_cluster_shards(Reply::error("ERR unknown command"));
  ASSERT_FALSE(err);
  EXPECT_EQ(err.error().code, Errc::kServerError);
}

TEST(Topology, SingleOwnsEverySlot) {
  auto t = Topology::single(Endpoint{"127.0.0.1", 6380});
  EXPECT_EQ(t.covered_slots(), 16384u);
  EXPECT_EQ(t.endpoint_for_slot(16383)->port, 6380);
}

TEST(Redirect, ParsesMovedAndAsk) {
  auto m = parse_redirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->kind, Redirect::Kind::kMoved);
  EXPECT_EQ(m->slot, 3999u);
  EXPECT_EQ(m->target, (Endpoint{"127.0.0.1", 6381}));
  auto a = parse_redirect("ASK 1 [::1]:7000");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->kind, Redirect::Kind::kAsk);
  EXPECT_EQ(a->target.host, "::1");
  EXPECT_FALSE(parse_redirect("ERR MOVED 1 a:1"));
  EXPECT_FALSE(parse_redirect("MOVED 16384 a:1"));
  EXPECT_FALSE(parse_redirect("MOVED 1 nohostport"));
  EXPECT_FALSE(parse_redirect("MOVED x a:1"));
}

TEST(Endpoint, ParseRefusesBadPorts) {
  EXPECT_TRUE(parse_endpoint("h:1"));
  EXPECT_FALSE(parse_endpoint("h:0"));
  EXPECT_FALSE(parse_endpoint("h:65536"));
  EXPECT_FALSE(parse_endpoint(":80"));
  auto e = parse_endpoint("h:x");
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("1..65535"), std::string::npos);
}

TEST(Topology, ClusterNodesFeedThePeerManager) {
  for (bool resp3 : {true, false}) {
    auto n = [&](std::string id, std::string ip, int port, std::string role, std::string health) {
      return map({Reply::bulk("id"), Reply::bulk(id), Reply::bulk("port"), Reply::integer_value(port),
                  Reply::bulk("ip"), Reply::bulk(ip), Reply::bulk("endpoint"), Reply::bulk("?"),
                  Reply::bulk("role"), Reply::bulk(role), Reply::bulk("health"), Reply::bulk(health)},
                 resp3);
    };
    Reply r = Reply::array({
        shard({0, 8191}, {n("m1", "10.0.0.1", 7000, "master", "online"), n("r1", "10.0.0.2", 7001, "replica", "loading")}, resp3),
        shard({8192, 16383}, {n("m2", "10.0.0.3", 7002, "master", "failed")}, resp3),
    });
    auto nodes = cluster_nodes_from_shards(r);
    ASSERT_TRUE(nodes) << nodes.error().to_string();
    ASSERT_EQ(nodes->size(), 3u);
    EXPECT_EQ((*nodes)[0].id, "m1");
    EXPECT_EQ((*nodes)[0].endpoint, "10.0.0.1");  // "?" falls back to the ip
    EXPECT_EQ((*nodes)[1].port, 7001);
    EXPECT_EQ((*nodes)[2].health, "failed");

    auto update = keel::sdk::topology_from_cluster_nodes(1, *nodes);
    keel::sdk::PeerManager peers;
    ASSERT_TRUE(peers.apply(update));
    keel::sdk::Instant now{};
    EXPECT_EQ(peers.status("m1", now), keel::sdk::PeerStatus::kUp);
    EXPECT_EQ(peers.status("r1", now), keel::sdk::PeerStatus::kSuspect);
    EXPECT_EQ(peers.status("m2", now), keel::sdk::PeerStatus::kDown);
    std::vector<std::string> write{"write"};
    auto writers = peers.select(3, write, now);
    ASSERT_EQ(writers.size(), 1u);
    EXPECT_EQ(writers[0].id, "m1");
  }
  auto no_id = cluster_nodes_from_shards(Reply::array({shard({0, 1}, {map({Reply::bulk("port"), Reply::integer_value(1)}, true)}, true)}));
  ASSERT_FALSE(no_id);
  EXPECT_NE(no_id.error().message.find("'id'"), std::string::npos);
  EXPECT_EQ(cluster_nodes_from_shards(Reply::error("ERR cluster support disabled")).error().code, Errc::kServerError);
}

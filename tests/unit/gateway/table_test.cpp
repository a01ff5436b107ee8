// Registrations (the JSON body, the stored form), the route table built at a given time (lease
// expiry), and the balancers.
#include "gateway/table.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>

namespace keel::gateway {
namespace {

Registration reg(std::string service, std::string id, std::string body, int64_t now = 1000, uint64_t rev = 1) {
  auto r = parse_registration(service, id, body, now);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  r->revision = rev;
  return *r;
}

TEST(Registration, ParsesTheBodyAndComputesTheLeaseEnd) {
  auto r = reg("orders", "o-1",
               R"({"address": "127.0.0.1:9000", "routes": ["GET /orders", "POST /orders/{id}", "GET /orders"],
                   "lease_ms": 5000, "metadata": {"version": "1.2", "zone": "a", "weight": 3}})",
               10'000);
  EXPECT_EQ(r.address, "127.0.0.1:9000");
  ASSERT_EQ(r.routes.size(), 2u);  // the duplicate is kept once
  EXPECT_EQ(r.routes[1].text(), "POST /orders/{id}");
  EXPECT_EQ(r.routes[1].service, "orders");
  EXPECT_EQ(r.expires_at_ms, 15'000);
  EXPECT_EQ(r.meta.weight, 3u);
  EXPECT_EQ(r.meta.zone, "a");
  auto d = parse_registration("s", "i", R"({"address": "localhost:1"})", 0);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->lease_ms, RegistrationLimits{}.default_lease_ms);
}

TEST(Registration, BadBodiesNameTheField) {
  struct Case {
    std::string service, id, body, words;
  };
  std::vector<Case> cases{
      {"s", "i", "not json", "body is not JSON"},
      {"s", "i", "{}", "\"address\" is required"},
      {"s", "i", R"({"address": "nohost"})", "is not HOST:PORT"},
      {"s", "i", R"({"address": "a:70000"})", "is not HOST:PORT"},
      {"s", "i", R"({"address": "a:1", "routes": "GET /"})", "must be an array"},
      {"s", "i", R"({"address": "a:1", "routes": ["FETCH /"]})", "\"routes\"[0]: route 'FETCH /'"},
      {"s", "i", R"({"address": "a:1", "lease_ms": 5})", "\"lease_ms\" must be an integer from 100"},
      {"s", "i", R"({"address": "a:1", "metadata": {"weight": 0}})", "weight\" must be an integer from 1 to 1000"},
      {"s", "i", R"({"address": "a:1", "metadata": {"colour": "red"}})", "unknown field \"metadata.colour\""},
      {"s", "i", R"({"address": "a:1", "ttl": 5})", "unknown field \"ttl\""},
      {"bad name", "i", R"({"address": "a:1"})", "service 'bad name' is not valid"},
      {"s", "a/b", R"({"address": "a:1"})", "instance id 'a/b' is not valid"},
      {"s", "i", R"({"address": "a:1", "health": 5})", "\"health\" must be an object"},
      {"s", "i", R"({"address": "a:1", "health": {}})", "\"health.path\" is required"},
      {"s", "i", R"({"address": "a:1", "health": {"path": "healthz"}})", "\"health.path\" must be a path starting with '/'"},
      {"s", "i", R"({"address": "a:1", "health": {"path": "/a b"}})", "\"health.path\" must be a path"},
      {"s", "i", R"({"address": "a:1", "health": {"path": "/h", "interval_ms": 5}})",
       "\"health.interval_ms\" must be an integer from 100 to 3600000"},
      {"s", "i", R"({"address": "a:1", "health": {"path": "/h", "timeout_ms": "1s"}})",
       "\"health.timeout_ms\" must be an integer from 10 to 60000"},
      {"s", "i", R"({"address": "a:1", "health": {"path": "/h", "unhealthy_after": 0}})",
       "\"health.unhealthy_after\" must be an integer from 1 to 100"},
      {"s", "i", R"({"address": "a:1", "health": {"path": "/h", "healthy_after": 101}})",
       "\"health.healthy_after\" must be an integer from 1 to 100"},
      {"s", "i", R"({"address": "a:1", "health": {"path": "/h", "every": 1}})", "unknown field \"health.every\""},
  };
  for (auto& c : cases) {
    auto r = parse_registration(c.service, c.id, c.body, 0);
    ASSERT_FALSE(r) << c.body;
    EXPECT_NE(r.error().message.find(c.words), std::string::npos) << c.body << " -> " << r.error().message;
  }
}

TEST(Registration, HealthChecksAreParsedWithDefaultsAndStored) {
  auto r = reg("orders", "o-1", R"({"address": "h:1", "health": {"path": "/healthz", "interval_ms": 500, "unhealthy_after": 3}})");
  EXPECT_EQ(r.health.path, "/healthz");
  EXPECT_EQ(r.health.interval_ms, 500);
  EXPECT_EQ(r.health.timeout_ms, 1000);
  EXPECT_EQ(r.health.unhealthy_after, 3u);
  EXPECT_EQ(r.health.healthy_after, 1u);
  r.revision = 0;
  auto back = decode_registration(registration_key("orders", "o-1"), encode_registration(r));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, r);
  EXPECT_TRUE(reg("orders", "o-2", R"({"address": "h:1"})").health.path.empty());  // no checks unless asked
}

TEST(Registration, RouteRegisterArgumentsBecomeTheSameBody) {
  auto body = registration_body_from_args(
      {"127.0.0.1:9000", "lease", "5000", "ROUTE", "GET /orders/{id}", "ROUTE", "POST /orders", "WEIGHT", "3",
       "ZONE", "a", "VERSION", "1.2"});
  ASSERT_TRUE(body) << body.error().message;
  auto r = parse_registration("orders", "o-1", *body, 1000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->address, "127.0.0.1:9000");
  EXPECT_EQ(r->lease_ms, 5000);
  ASSERT_EQ(r->routes.size(), 2u);
  EXPECT_EQ(r->routes[1].text(), "POST /orders");
  EXPECT_EQ(r->meta, (InstanceMeta{"1.2", "a", 3}));
  struct Case {
    std::vector<std::string_view> args;
    std::string words;
  };
  std::vector<Case> cases{{{}, "the address HOST:PORT is required"},
                          {{"h:1", "TTL", "5"}, "unknown option 'TTL'; allowed: LEASE ms"},
                          {{"h:1", "LEASE"}, "LEASE needs a value"},
                          {{"h:1", "LEASE", "5s"}, "LEASE must be an integer"},
                          {{"h:1", "WEIGHT", "x"}, "WEIGHT must be an integer from 1 to 1000"}};
  for (auto& c : cases) {
    auto b = registration_body_from_args(c.args);
    ASSERT_FALSE(b) << c.words;
    EXPECT_NE(b.error().message.find(c.words), std::string::npos) << b.error().message;
  }
  // Values are checked by the one parser, with its words.
  auto weight0 = parse_registration("s", "i", *registration_body_from_args({"h:1", "WEIGHT", "0"}), 0);
  ASSERT_FALSE(weight0);
  EXPECT_NE(weight0.error().message.find("\"metadata.weight\" must be an integer from 1 to 1000"), std::string::npos);
}

TEST(Registration, StoredFormRoundTrips) {
  auto r = reg("orders", "o-1", R"({"address": "h:1", "routes": ["GET /a/{x}", "* /s/** host=x.y"], "lease_ms": 700,
                                   "metadata": {"version": "v", "weight": 2}})",
               5);
  r.revision = 0;
  auto back = decode_registration(registration_key("orders", "o-1"), encode_registration(r));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, r);
  EXPECT_FALSE(decode_registration("orders/o-1", "{}"));
  EXPECT_FALSE(decode_registration("nokey", encode_registration(r)));
}

TEST(RouteTable, LeaseExpiryIsDecidedByTheGivenTime) {
  std::vector<Registration> regs{reg("orders", "o-1", R"({"address": "h:1", "routes": ["GET /orders"], "lease_ms": 1000})", 0, 5),
                                 reg("orders", "o-2", R"({"address": "h:2", "routes": ["GET /orders"], "lease_ms": 3000})", 0, 6)};
  auto t = RouteTable::build(regs, {}, 999);
  ASSERT_TRUE(t);
  auto m = t->matcher().match("GET", "", "/orders");
  ASSERT_TRUE(m);
  EXPECT_EQ(t->targets(m->entry).size(), 2u);
  EXPECT_EQ(t->next_expiry_ms(), 1000);
  t = RouteTable::build(regs, {}, 1000);  // o-1's lease ends at 1000
  ASSERT_TRUE(t);
  m = t->matcher().match("GET", "", "/orders");
  ASSERT_TRUE(m);
  ASSERT_EQ(t->targets(m->entry).size(), 1u);
  EXPECT_EQ(t->instances()[t->targets(m->entry)[0]].id, "o-2");
  t = RouteTable::build(regs, {}, 3000);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->matcher().match("GET", "", "/orders"));  // no live instance declares it any more
}

TEST(RouteTable, RoutesPointAtTheInstancesThatDeclaredThem) {
  std::vector<Registration> regs{
      reg("orders", "o-1", R"({"address": "h:1", "routes": ["GET /orders", "GET /orders/{id}"]})", 0, 9),
      reg("orders", "o-2", R"({"address": "h:2", "routes": ["GET /orders"]})", 0, 4),
      reg("shop", "s-1", R"({"address": "h:3", "routes": ["GET /orders/{orderId}"]})", 0, 2),
      reg("assets", "a-1", R"({"address": "h:4"})", 0, 3)};
  std::vector<RouteSpec> file{*parse_route_line("GET:/static/** => assets")};
  auto t = RouteTable::build(regs, file, 1);
  ASSERT_TRUE(t);
  auto m = t->matcher().match("GET", "", "/orders");
  ASSERT_TRUE(m);
  EXPECT_EQ(t->targets(m->entry).size(), 2u);
  // The same template from two services: the earlier registration (revision 2) wins.
  m = t->matcher().match("GET", "", "/orders/5");
  ASSERT_TRUE(m);
  EXPECT_EQ(t->matcher().entries()[m->entry].route.service, "shop");
  // A routes-file route serves every instance of its service.
  m = t->matcher().match("GET", "", "/static/x.css");
  ASSERT_TRUE(m);
  ASSERT_EQ(t->targets(m->entry).size(), 1u);
  EXPECT_EQ(t->instances()[t->targets(m->entry)[0]].address, "h:4");
}

TEST(Balancer, LeastRequestPrefersTheIdleAndHonoursWeights) {
  SeededRandom rng(7);
  std::vector<Load> loads{{10, 1}, {0, 1}, {10, 1}};
  int idle = 0;
  for (int i = 0; i < 3000; ++i) idle += pick_least_request(loads, rng) == 1;
  // Instance 1 wins every draw it is in: 2 of the 3 pairs.
  EXPECT_NEAR(idle, 2000, 150);
  std::vector<Load> weighted{{4, 1}, {4, 10}};
  for (int i = 0; i < 100; ++i) EXPECT_EQ(pick_least_request(weighted, rng), 1u);
  std::vector<Load> one{{99, 1}};
  EXPECT_EQ(pick_least_request(one, rng), 0u);
}

TEST(Balancer, RoundRobinCycles) {
  uint64_t cur = 0;
  std::vector<size_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(pick_round_robin(3, cur));
  EXPECT_EQ(got, (std::vector<size_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_TRUE(parse_policy("p2c"));
  EXPECT_FALSE(parse_policy("random"));
}

// p2c against a model: with equal loads the choice is uniform, and it never picks a candidate
// with more load than the other one drawn (so never the unique maximum when n >= 2).
RC_GTEST_PROP(BalancerModel, LeastRequestNeverPicksTheBusierOfTwo, ()) {
  auto n = *rc::gen::inRange<size_t>(2, 8);
  std::vector<Load> loads;
  for (size_t i = 0; i < n; ++i) loads.push_back(Load{*rc::gen::inRange<uint32_t>(0, 5), 1});
  size_t maxi = 0;
  for (size_t i = 1; i < n; ++i)
    if (loads[i].inflight > loads[maxi].inflight) maxi = i;
  bool unique = std::count_if(loads.begin(), loads.end(), [&](const Load& l) { return l.inflight == loads[maxi].inflight; }) == 1;
  SeededRandom rng(*rc::gen::arbitrary<uint64_t>());
  for (int i = 0; i < 50; ++i) {
    auto p = pick_least_request(loads, rng);
    RC_ASSERT(p < n);
    if (unique) RC_ASSERT(p != maxi);
  }
}

}  // namespace
}  // namespace keel::gateway

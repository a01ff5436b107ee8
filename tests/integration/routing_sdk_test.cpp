// keel::routing::Registrar against a real keel (a one-member cluster, so the route table lives
// in cluster metadata): start() registers (GET /v1/routes shows the instance and its routes),
// the lease is renewed while the Registrar lives (the instance outlives several leases),
// close() deregisters, a refused registration comes back with the server's message and leaves
// nothing registered, and an instance whose Registrar stops renewing (its process died) is
// dropped once its lease runs out.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "keel/client/client.h"
#include "keel/routing/registrar.h"
#include "keel_process.h"

using keel::routing::Instance;
using keel::routing::Registrar;
using keel::routing::Route;
using keel::testing::free_port;
using keel::testing::KeelProcess;
using namespace std::chrono_literals;

namespace {

// GET path on the node's HTTP port; the body parsed as JSON.
nlohmann::json http_get(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return nullptr;
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  (void)!::write(fd, req.data(), req.size());
  std::string res;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) res.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto body = res.find("\r\n\r\n");
  if (body == std::string::npos) return nullptr;
  return nlohmann::json::parse(res.substr(body + 4), nullptr, false);
}

// The instance `id` of `service` in GET /v1/routes, or null.
nlohmann::json find_instance(int http_port, const std::string& service, const std::string& id) {
  auto j = http_get(http_port, "/v1/routes");
  if (!j.is_object() || !j.contains("instances")) return nullptr;
  for (const auto& i : j["instances"])
    if (i.value("service", "") == service && i.value("id", "") == id) return i;
  return nullptr;
}

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 10s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (p()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return p();
}

class RoutingSdk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    uint16_t peer = free_port();
    node_ = new KeelProcess({"--engine", "memory", "--node-id", "1", "--peer-port", std::to_string(peer), "--peers",
                             "1@127.0.0.1:" + std::to_string(peer)});
    ASSERT_TRUE(node_->start()) << node_->output();
  }
  static void TearDownTestSuite() {
    delete node_;
    node_ = nullptr;
  }
  static keel::Client connect() {
    for (int i = 0;; ++i) {
      auto c = keel::Client::connect("127.0.0.1", static_cast<uint16_t>(node_->resp_port()));
      if (c) return std::move(*c);
      if (i == 200) {
        ADD_FAILURE() << c.error().to_string();
        std::abort();
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  // A fresh member answers CLUSTERDOWN until its first metadata decision: retry that.
  static std::unique_ptr<Registrar> start(keel::Client& c, Instance inst) {
    for (int i = 0;; ++i) {
      auto r = Registrar::start(c, inst);
      if (r) return std::move(*r);
      if (i == 200 || r.error().message.find("CLUSTERDOWN") == std::string::npos) {
        ADD_FAILURE() << r.error().to_string();
        return nullptr;
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  static KeelProcess* node_;
};
KeelProcess* RoutingSdk::node_ = nullptr;

TEST(RoutingSdkUnit, TheRegisterCommandCarriesEveryField) {
  Instance i{.service = "orders", .id = "o-1", .address = "127.0.0.1:9000",
             .routes = {Route::post("/api/orders"), Route::get("/api/orders/{orderId}")},
             .lease = 1500ms, .weight = 3, .zone = "eu-1", .version = "1.2"};
  EXPECT_EQ(Registrar::register_command(i),
            (std::vector<std::string>{"ROUTE.REGISTER", "orders", "o-1", "127.0.0.1:9000", "LEASE", "1500", "ROUTE",
                                      "POST /api/orders", "ROUTE", "GET /api/orders/{orderId}", "WEIGHT", "3", "ZONE",
                                      "eu-1", "VERSION", "1.2"}));
  EXPECT_EQ(Route::del("/x").text(), "DELETE /x");
  EXPECT_EQ(Route::get("/x").header("X-Canary", "1").header_present("X-Debug").option("rate=5/s").text(),
            "GET /x header=X-Canary:1 header=X-Debug rate=5/s");
}

TEST_F(RoutingSdk, RegistersRenewsAndDeregisters) {
  auto c = connect();
  auto reg = start(c, {.service = "orders", .id = "orders-1", .address = "127.0.0.1:9000",
                       .routes = {Route::post("/api/orders"), Route::get("/api/orders/{orderId}"),
                                  Route::get("/api/orders/{orderId}").header("X-Canary", "1")},
                       .lease = 900ms});
  ASSERT_TRUE(reg);
  auto inst = find_instance(node_->http_port(), "orders", "orders-1");
  ASSERT_FALSE(inst.is_null()) << http_get(node_->http_port(), "/v1/routes").dump();
  EXPECT_EQ(inst["address"], "127.0.0.1:9000");
  // The header match arrives, in its canonical text (name lower-cased).
  EXPECT_EQ(inst["routes"].size(), 3u) << inst.dump();
  EXPECT_EQ(inst["routes"][2], "GET /api/orders/{orderId} header=x-canary:1") << inst.dump();
  // Alive for several leases: it is being renewed.
  std::this_thread::sleep_for(3000ms);
  EXPECT_FALSE(find_instance(node_->http_port(), "orders", "orders-1").is_null());
  auto st = reg->stats();
  EXPECT_GE(st.renewals, 4u);
  EXPECT_TRUE(st.registered);
  EXPECT_EQ(st.failures, 0u) << st.last_error;
  ASSERT_TRUE(reg->close());
  EXPECT_TRUE(find_instance(node_->http_port(), "orders", "orders-1").is_null());
  EXPECT_FALSE(reg->stats().registered);
  EXPECT_TRUE(reg->close());  // idempotent
}

TEST_F(RoutingSdk, ARefusedRegistrationSaysWhyAndLeavesNothing) {
  auto c = connect();
  for (int i = 0; i < 200; ++i) {  // wait out CLUSTERDOWN of a fresh member
    auto r = Registrar::start(c, {.service = "bad", .id = "b-1", .address = "no-port", .routes = {Route::get("/b")}});
    if (!r && r.error().message.find("CLUSTERDOWN") != std::string::npos) {
      std::this_thread::sleep_for(50ms);
      continue;
    }
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("address"), std::string::npos) << r.error().to_string();
    break;
  }
  EXPECT_TRUE(find_instance(node_->http_port(), "bad", "b-1").is_null());
}

TEST_F(RoutingSdk, AnInstanceThatStopsRenewingIsDroppedWhenItsLeaseEnds) {
  auto c = connect();
  // A registration that is never renewed: what a crashed instance leaves.
  for (int i = 0; i < 200; ++i) {
    auto r = c.checked(Registrar::register_command(
        {.service = "pay", .id = "pay-1", .address = "127.0.0.1:9100", .routes = {Route::post("/pay")}, .lease = 800ms}));
    if (r) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(find_instance(node_->http_port(), "pay", "pay-1").is_null());
  EXPECT_TRUE(eventually([&] { return find_instance(node_->http_port(), "pay", "pay-1").is_null(); }, 5s));
}

}  // namespace

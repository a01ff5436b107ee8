// keel::Cache<K, V> against a real keel that is a one-member cluster (cache definitions live in
// cluster metadata): open() defines the cache, typed get/put/put_with_ttl/remove/clear go
// through CACHE.*, codecs for strings, integers, bytes and JSON, refusals carry the server's
// message naming the field.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "keel/client/cache.h"
#include "keel/client/client.h"
#include "keel/client/json_codec.h"
#include "keel_process.h"

using keel::testing::free_port;
using keel::testing::KeelProcess;
using namespace keel::client;
using namespace std::chrono_literals;

namespace {

struct User {
  std::string name;
  int age = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(User, name, age)

class CacheSdk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    uint16_t peer = free_port();
    node_ =
        new KeelProcess({"--engine", "memory", "--shards", "2", "--node-id", "1", "--peer-port",
                         std::to_string(peer), "--peers", "1@127.0.0.1:" + std::to_string(peer)});
    ASSERT_TRUE(node_->start()) << node_->output();
  }
  static void TearDownTestSuite() {
    delete node_;
    node_ = nullptr;
  }
  // A fresh member answers CLUSTERDOWN until it knows the partition map: retry that (nothing
  // was applied), at most ~10 s.
  static keel::Client connect() {
    for (int i = 0;; ++i) {
      auto c = keel::Client::connect("127.0.0.1", static_cast<uint16_t>(node_->resp_port()));
      if (c) return std::move(*c);
      if (i == 200 || c.error().message.find("CLUSTERDOWN") == std::string::npos) {
        ADD_FAILURE() << c.error().to_string();
        std::abort();
      }
      std::this_thread::sleep_for(50ms);
    }
  }
  // The fresh member may need a moment before its first metadata decision: retry while the
  // answer is CLUSTERDOWN (nothing applied), at most ~10 s.
  template <class C>
  static Result<C> open_when_ready(keel::Client& c, const std::string& name,
                                   const keel::CacheConfig& cfg = {}) {
    for (int i = 0;; ++i) {
      auto r = C::open(c, name, cfg);
      if (r || i == 200 || r.error().message.find("CLUSTERDOWN") == std::string::npos) return r;
      std::this_thread::sleep_for(50ms);
    }
  }
  static KeelProcess* node_;
};
KeelProcess* CacheSdk::node_ = nullptr;

TEST_F(CacheSdk, StringsThroughANamedCache) {
  auto c = connect();
  auto greetings = open_when_ready<keel::Cache<std::string, std::string>>(c, "greetings");
  ASSERT_TRUE(greetings) << greetings.error().to_string();
  ASSERT_TRUE(greetings->put("en", "hello"));
  EXPECT_EQ(greetings->get("en").value(), "hello");
  // The same entry through the raw command; it is not a plain key.
  auto raw = c.checked({"CACHE.GET", "greetings", "en"});
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->str, "hello");
  EXPECT_EQ(c.get("en").value(), std::nullopt);
  EXPECT_TRUE(greetings->remove("en").value());
  EXPECT_FALSE(greetings->remove("en").value());
  EXPECT_EQ(greetings->get("en").value(), std::nullopt);
  // A short TTL of its own expires (bounded wait; no timing is asserted).
  ASSERT_TRUE(greetings->put_with_ttl("brief", "x", 30ms));
  for (int i = 0; i < 500 && greetings->get("brief").value().has_value(); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(greetings->get("brief").value(), std::nullopt);
  EXPECT_FALSE(greetings->put_with_ttl("k", "v", 0ms));
}

TEST_F(CacheSdk, IntegersBytesJsonDefaultTtlAndClear) {
  auto c = connect();
  keel::CacheConfig cfg;
  cfg.default_ttl = 40ms;
  cfg.max_entries = 100000;
  cfg.eviction = "lfu";
  auto counts = open_when_ready<keel::Cache<int, int64_t>>(c, "counts", cfg);
  ASSERT_TRUE(counts) << counts.error().to_string();
  // Opening again with the same definition binds; a different one is refused.
  ASSERT_TRUE((keel::Cache<int, int64_t>::open(c, "counts", cfg)));
  auto other = keel::Cache<int, int64_t>::open(c, "counts", keel::CacheConfig{.replicas = 2});
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("already exists with a different definition"),
            std::string::npos)
      << other.error().message;
  ASSERT_TRUE(counts->put_with_ttl(7, -42, 1h));
  EXPECT_EQ(counts->get(7).value(), -42);
  // The defaultTtl (40 ms) applies to put without a ttl: the entry goes away by itself.
  ASSERT_TRUE(counts->put(8, 1));
  for (int i = 0; i < 500 && counts->get(8).value().has_value(); ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(counts->get(8).value(), std::nullopt);
  EXPECT_EQ(counts->get(7).value(), -42);  // its own hour still runs
  // Bytes that are not an integer are reported, not misread.
  auto text = keel::Cache<int, std::string>::bind(c, "counts");
  ASSERT_TRUE(text->put_with_ttl(9, "nine", 1h));
  auto bad = counts->get(9);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kUnexpectedReply);
  EXPECT_EQ(counts->clear().value(), 2);
  EXPECT_EQ(counts->get(7).value(), std::nullopt);

  auto blobs = open_when_ready<keel::Cache<std::string, std::vector<std::byte>>>(c, "blobs");
  ASSERT_TRUE(blobs);
  std::vector<std::byte> blob = {std::byte{0}, std::byte{0xff}, std::byte{'\r'}, std::byte{'\n'}};
  ASSERT_TRUE(blobs->put("b", blob));
  EXPECT_EQ(blobs->get("b").value(), blob);

  auto users = open_when_ready<keel::Cache<std::string, User, JsonCodec<User>>>(c, "users");
  ASSERT_TRUE(users);
  ASSERT_TRUE(users->put("u1", User{"Ada", 36}));
  auto u = users->get("u1");
  ASSERT_TRUE(u && u->has_value());
  EXPECT_EQ((*u)->name, "Ada");
  EXPECT_EQ((*u)->age, 36);
}

TEST_F(CacheSdk, RefusalsNameWhatIsWrong) {
  auto c = connect();
  auto invalid = keel::Cache<std::string, std::string>::open(c, "has space");
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().code, Errc::kInvalidArgument);
  EXPECT_NE(invalid.error().message.find("allowed"), std::string::npos);
  auto quorum = open_when_ready<keel::Cache<std::string, std::string>>(
      c, "q", keel::CacheConfig{.replicas = 2, .write_quorum = 3});
  ASSERT_FALSE(quorum);
  EXPECT_EQ(quorum.error().code, Errc::kServerError);
  EXPECT_NE(quorum.error().message.find("writeQuorum"), std::string::npos)
      << quorum.error().message;
  auto size =
      keel::Cache<std::string, std::string>::open(c, "s", keel::CacheConfig{.max_memory = "256"});
  ASSERT_FALSE(size);
  EXPECT_NE(size.error().message.find("maxMemory (MAXMEMORY) '256' has no unit"), std::string::npos)
      << size.error().message;
  // Nothing was defined by the refusals; a bound cache that does not exist says so.
  auto ghost = keel::Cache<std::string, std::string>::bind(c, "q");
  auto g = ghost->get("k");
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message.find("no cache named 'q'"), std::string::npos) << g.error().message;
}

TEST_F(CacheSdk, TheDefaultCacheIsThePlainKeyspace) {
  auto c = connect();
  auto plain = keel::Cache<std::string, int>::open(c, "default");
  ASSERT_TRUE(plain);
  ASSERT_TRUE(plain->put("visits", 3));
  EXPECT_EQ(c.get("visits").value(), "3");
  ASSERT_TRUE(c.set("visits", "4"));
  EXPECT_EQ(plain->get("visits").value(), 4);
  EXPECT_FALSE(
      (keel::Cache<std::string, int>::open(c, "default", keel::CacheConfig{.replicas = 2})));
}

}  // namespace

// The per-shard pub/sub registry (frontends/resp/pubsub_registry.h) against Redis's rules, and
// the frames its subscribers receive, byte for byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "frontends/resp/pubsub_registry.h"
#include "frontends/resp/reply.h"

namespace keel::resp {
namespace {

using Got = std::vector<std::pair<uint64_t, std::string>>;  // (client, pattern or "")

Got publish(const PubSubRegistry& reg, bool shard, std::string_view channel, size_t* n = nullptr) {
  Got got;
  size_t count = reg.publish(shard, channel, [&](uint64_t c, const std::string* p) {
    got.emplace_back(c, p ? *p : std::string());
  });
  if (n) *n = count;
  std::sort(got.begin(), got.end());
  return got;
}

TEST(PubSubRegistry, SubscribeIsIdempotentAndCounts) {
  PubSubRegistry reg;
  EXPECT_TRUE(reg.subscribe(1, PubKind::kChannel, "a"));
  EXPECT_FALSE(reg.subscribe(1, PubKind::kChannel, "a"));
  EXPECT_TRUE(reg.subscribe(1, PubKind::kPattern, "a*"));
  EXPECT_TRUE(reg.subscribe(1, PubKind::kShard, "a"));
  EXPECT_EQ(reg.subscriptions(1), 2u);  // channels + patterns, as SUBSCRIBE replies count
  EXPECT_EQ(reg.count(1, PubKind::kShard), 1u);
  EXPECT_EQ(reg.total(1), 3u);
  EXPECT_EQ(reg.clients(), 1u);
  EXPECT_EQ(reg.total(2), 0u);
}

TEST(PubSubRegistry, PublishReachesChannelAndEachMatchingPattern) {
  PubSubRegistry reg;
  reg.subscribe(1, PubKind::kChannel, "news.tech");
  reg.subscribe(1, PubKind::kPattern, "news.*");
  reg.subscribe(2, PubKind::kPattern, "news.*");
  reg.subscribe(2, PubKind::kPattern, "n?ws.[a-t]ech");
  reg.subscribe(3, PubKind::kChannel, "news.sport");
  reg.subscribe(4, PubKind::kShard, "news.tech");
  size_t n = 0;
  Got got = publish(reg, false, "news.tech", &n);
  // Client 1 twice (channel and pattern), client 2 once per matching pattern; never the
  // shard-channel subscriber.
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(got, (Got{{1, ""}, {1, "news.*"}, {2, "n?ws.[a-t]ech"}, {2, "news.*"}}));
  // A shard channel message reaches shard subscribers only; patterns never match it.
  got = publish(reg, true, "news.tech", &n);
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(got, (Got{{4, ""}}));
  EXPECT_EQ(publish(reg, false, "other", &n), Got{});
  EXPECT_EQ(n, 0u);
}

TEST(PubSubRegistry, UnsubscribeAndIntrospection) {
  PubSubRegistry reg;
  reg.subscribe(1, PubKind::kChannel, "b");
  reg.subscribe(1, PubKind::kChannel, "a");
  reg.subscribe(2, PubKind::kChannel, "a");
  reg.subscribe(2, PubKind::kPattern, "x*");
  EXPECT_EQ(reg.numsub(PubKind::kChannel, "a"), 2u);
  EXPECT_EQ(reg.numsub(PubKind::kChannel, "zzz"), 0u);
  EXPECT_EQ(reg.numsub(PubKind::kShard, "a"), 0u);
  std::vector<std::string> ch;
  reg.channels(PubKind::kChannel, nullptr, ch);
  std::sort(ch.begin(), ch.end());
  EXPECT_EQ(ch, (std::vector<std::string>{"a", "b"}));
  ch.clear();
  std::string pat = "[b]";
  reg.channels(PubKind::kChannel, &pat, ch);
  EXPECT_EQ(ch, (std::vector<std::string>{"b"}));

  EXPECT_FALSE(reg.unsubscribe(1, PubKind::kChannel, "nope"));
  EXPECT_FALSE(reg.unsubscribe(1, PubKind::kPattern, "a"));  // kinds are separate
  EXPECT_TRUE(reg.unsubscribe(1, PubKind::kChannel, "a"));
  EXPECT_EQ(reg.numsub(PubKind::kChannel, "a"), 1u);
  // Unsubscribing from everything returns the names in order and empties the client.
  EXPECT_EQ(reg.unsubscribe_all(1, PubKind::kChannel), std::vector<std::string>{"b"});
  EXPECT_EQ(reg.total(1), 0u);
  EXPECT_EQ(reg.clients(), 1u);
  ch.clear();
  reg.channels(PubKind::kChannel, nullptr, ch);
  EXPECT_EQ(ch, std::vector<std::string>{"a"});  // "b" had no subscriber left: gone

  std::vector<std::string> pats;
  reg.patterns(pats);
  EXPECT_EQ(pats, std::vector<std::string>{"x*"});
  reg.remove_client(2);
  EXPECT_EQ(reg.clients(), 0u);
  pats.clear();
  reg.patterns(pats);
  EXPECT_TRUE(pats.empty());
  EXPECT_EQ(reg.numsub(PubKind::kChannel, "a"), 0u);
  EXPECT_EQ(publish(reg, false, "a"), Got{});
}

// A model check: random subscribe/unsubscribe sequences against a plain map of sets.
TEST(PubSubRegistry, AgreesWithAModel) {
  PubSubRegistry reg;
  std::map<uint64_t, std::set<std::string>> model;  // client -> channels
  uint64_t x = 12345;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int step = 0; step < 5000; ++step) {
    uint64_t client = next() % 8;
    std::string ch = "c" + std::to_string(next() % 12);
    if (next() % 3) {
      EXPECT_EQ(reg.subscribe(client, PubKind::kChannel, ch), model[client].insert(ch).second);
    } else {
      EXPECT_EQ(reg.unsubscribe(client, PubKind::kChannel, ch), model[client].erase(ch) == 1);
    }
    EXPECT_EQ(reg.count(client, PubKind::kChannel), model[client].size());
    std::string probe = "c" + std::to_string(next() % 12);
    size_t expect = 0;
    for (auto& [c, chans] : model) expect += chans.count(probe);
    size_t n = 0;
    publish(reg, false, probe, &n);
    EXPECT_EQ(n, expect);
    EXPECT_EQ(reg.numsub(PubKind::kChannel, probe), expect);
  }
}

TEST(PubSubFrames, Resp2AndResp3) {
  std::string out;
  Reply r2(out, 2);
  std::string_view ch = "ch";
  reply_subscription(r2, "subscribe", &ch, 1);
  EXPECT_EQ(out, "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
  out.clear();
  reply_subscription(r2, "unsubscribe", nullptr, 0);
  EXPECT_EQ(out, "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
  out.clear();
  std::string pat = "c*";
  reply_message(r2, PubKind::kPattern, &pat, "ch", "hi");
  EXPECT_EQ(out, "*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$2\r\nhi\r\n");
  out.clear();
  Reply r3(out, 3);
  reply_message(r3, PubKind::kShard, nullptr, "ch", "hi");
  EXPECT_EQ(out, ">3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
  out.clear();
  reply_subscription(r3, "punsubscribe", nullptr, 0);
  EXPECT_EQ(out, ">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n");
}

}  // namespace
}  // namespace keel::resp

namespace keel::resp {
namespace {

// Patterns are matched by glob_match (command.h), the matcher KEYS and SCAN MATCH use, with
// Redis's stringmatchlen syntax.
TEST(PubSubPatterns, RedisGlobSyntax) {
  struct Case {
    const char* pattern;
    const char* channel;
    bool match;
  };
  const Case cases[] = {
      {"*", "", false},  // Redis's stringmatchlen never matches an empty channel
      {"*", "anything", true},     {"news.*", "news.", true},
      {"news.*", "news", false}, {"h?llo", "hello", true},    {"h?llo", "hllo", false},
      {"h[ae]llo", "hallo", true}, {"h[ae]llo", "hillo", false}, {"h[^e]llo", "hallo", true},
      {"h[^e]llo", "hello", false}, {"h[a-c]llo", "hbllo", true}, {"h[c-a]llo", "hbllo", true},
      {"h[a-c]llo", "hdllo", false}, {"h\\*llo", "h*llo", true}, {"h\\*llo", "hello", false},
      {"a*b*c", "aXXbYYc", true}, {"a*b*c", "aXXbYY", false}, {"**x", "x", true},
      {"[\\]]", "]", true},       {"user:[0-9]*", "user:42", true}, {"user:[0-9]*", "user:x", false},
  };
  for (const auto& c : cases) {
    PubSubRegistry reg;
    reg.subscribe(1, PubKind::kPattern, c.pattern);
    size_t n = reg.publish(false, c.channel, [](uint64_t, const std::string*) {});
    EXPECT_EQ(n, c.match ? 1u : 0u) << c.pattern << " vs " << c.channel;
  }
}

}  // namespace
}  // namespace keel::resp

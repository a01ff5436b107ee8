// The messaging SDK's conformance suite (keel::messaging, docs/messaging.md), run against every
// provider: RESP Streams on a real keel, RESP Streams on Debian's redis-server, and local files.
// Each case states a delivery rule: order and content, competing consumers, redelivery of what
// was not acknowledged, the dead-letter topic after max_deliveries or for a payload that does
// not decode, and an acknowledged message never coming back.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <filesystem>
#include <set>
#include <thread>

#include "keel/messaging/channels.h"
#include "keel/messaging/messaging.h"
#include "client/connect_retrying.h"
#include "keel_process.h"

using namespace keel::messaging;
using keel::testing::connect_retrying;
using keel::testing::free_port;
using namespace std::chrono_literals;

namespace {

struct Order {
  int64_t id = 0;
  std::string item;
};
struct OrderCodec {
  static std::string encode(const Order& o) { return std::to_string(o.id) + "|" + o.item; }
  static Result<Order> decode(std::string_view b) {
    auto bar = b.find('|');
    Order o;
    if (bar == std::string_view::npos || std::from_chars(b.data(), b.data() + bar, o.id).ec != std::errc())
      return keel::client::make_error(Errc::kUnexpectedReply, "not an order: '" + std::string(b) + "'");
    o.item = std::string(b.substr(bar + 1));
    return o;
  }
};
using Pub = Publisher<Order, OrderCodec>;
using Sub = Subscriber<Order, OrderCodec>;

// One provider under test, with the process or directory behind it.
struct Backend {
  virtual ~Backend() = default;
  virtual Provider& provider() = 0;
  // A second provider for another thread (its own connection: a blocking read holds one).
  virtual Provider& second() = 0;
  // Pub/sub over the same server (or in this process for the file backend).
  virtual Channels& channels() = 0;
  // Sends a command to the server (nullopt for the in-process backend).
  virtual std::optional<keel::client::Reply> command(std::vector<std::string> args) = 0;
};

struct KeelBackend : Backend {
  keel::testing::KeelProcess node{{"--engine", "memory"}};
  std::optional<keel::Client> client, client2;
  std::unique_ptr<Provider> p, p2;
  std::unique_ptr<Channels> ch;
  KeelBackend() {
    EXPECT_TRUE(node.start()) << node.output();
    client.emplace(connect_retrying(static_cast<uint16_t>(node.resp_port())));
    p = resp_provider(*client);
    ch = resp_channels(*client, {"127.0.0.1", static_cast<uint16_t>(node.resp_port())});
  }
  Channels& channels() override { return *ch; }
  std::optional<keel::client::Reply> command(std::vector<std::string> args) override {
    auto r = client->command(std::move(args));
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? std::optional<keel::client::Reply>(*r) : std::nullopt;
  }
  Provider& provider() override { return *p; }
  Provider& second() override {
    if (!p2) {
      client2.emplace(connect_retrying(static_cast<uint16_t>(node.resp_port())));
      p2 = resp_provider(*client2);
    }
    return *p2;
  }
};

struct RedisBackend : Backend {
  pid_t pid = -1;
  uint16_t port = 0;
  std::optional<keel::Client> client, client2;
  std::unique_ptr<Provider> p, p2;
  RedisBackend() {
    port = free_port();
    pid = fork();
    if (pid == 0) {
      execlp("redis-server", "redis-server", "--port", std::to_string(port).c_str(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--logfile", "/dev/null", static_cast<char*>(nullptr));
      _exit(127);
    }
    client.emplace(connect_retrying(port));
    p = resp_provider(*client);
    ch = resp_channels(*client, {"127.0.0.1", port});
  }
  std::unique_ptr<Channels> ch;
  Channels& channels() override { return *ch; }
  std::optional<keel::client::Reply> command(std::vector<std::string> args) override {
    auto r = client->command(std::move(args));
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? std::optional<keel::client::Reply>(*r) : std::nullopt;
  }
  ~RedisBackend() override {
    ch.reset();
    p.reset();
    p2.reset();
    client.reset();
    client2.reset();
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  Provider& provider() override { return *p; }
  Provider& second() override {
    if (!p2) {
      client2.emplace(connect_retrying(port));
      p2 = resp_provider(*client2);
    }
    return *p2;
  }
};

struct FileBackend : Backend {
  std::string dir;
  std::unique_ptr<Provider> p;
  FileBackend() {
    char tmpl[] = "/tmp/keel-msg-XXXXXX";
    dir = mkdtemp(tmpl);
    p = file_provider(dir);
  }
  std::unique_ptr<Channels> ch = local_channels();
  ~FileBackend() override { std::filesystem::remove_all(dir); }
  Channels& channels() override { return *ch; }
  std::optional<keel::client::Reply> command(std::vector<std::string>) override { return std::nullopt; }
  Provider& provider() override { return *p; }
  Provider& second() override { return *p; }  // one instance serves every thread
};

class Conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "keel") b_ = std::make_unique<KeelBackend>();
    else if (GetParam() == "redis") b_ = std::make_unique<RedisBackend>();
    else b_ = std::make_unique<FileBackend>();
  }
  Provider& p() { return b_->provider(); }
  Sub subscriber(const std::string& topic, const std::string& group, const std::string& consumer,
                 std::chrono::milliseconds ack_timeout = 30s, uint32_t max_deliveries = 5) {
    auto s = Sub::open(p(), topic, {.group = group, .consumer = consumer, .max_deliveries = max_deliveries,
                                    .ack_timeout = ack_timeout, .batch = 16, .block = 100ms});
    EXPECT_TRUE(s) << s.error().to_string();
    return std::move(*s);
  }
  // Polls until `n` messages came (or 5 s).
  std::vector<Message<Order>> take(Sub& s, size_t n) {
    std::vector<Message<Order>> got;
    for (int i = 0; i < 50 && got.size() < n; ++i) {
      auto r = s.poll();
      EXPECT_TRUE(r) << r.error().to_string();
      if (!r) break;
      for (auto& m : *r) got.push_back(std::move(m));
    }
    return got;
  }
  std::unique_ptr<Backend> b_;
};

TEST_P(Conformance, MessagesArriveInOrderWithTheirHeaders) {
  Pub pub(p(), "orders");
  auto sub = subscriber("orders", "billing", "b-1");
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(pub.publish({i, "item-" + std::to_string(i)}, {{"traceparent", "00-t-s-01"}}));
  auto got = take(sub, 3);
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(got[static_cast<size_t>(i)].value.id, i + 1);
    EXPECT_EQ(got[static_cast<size_t>(i)].value.item, "item-" + std::to_string(i + 1));
    EXPECT_EQ(got[static_cast<size_t>(i)].deliveries, 1u);
    ASSERT_TRUE(got[static_cast<size_t>(i)].headers.find("traceparent"));
    EXPECT_EQ(*got[static_cast<size_t>(i)].headers.find("traceparent"), "00-t-s-01");
    ASSERT_TRUE(got[static_cast<size_t>(i)].headers.find("message-id"));
    EXPECT_EQ(got[static_cast<size_t>(i)].headers.find("message-id")->size(), 32u);
    EXPECT_TRUE(sub.ack(got[static_cast<size_t>(i)]));
  }
}

TEST_P(Conformance, EveryGroupGetsEveryMessageAndConsumersOfOneGroupShareThem) {
  Pub pub(p(), "events");
  auto a1 = subscriber("events", "audit", "a-1");
  auto a2 = subscriber("events", "audit", "a-2");
  auto other = subscriber("events", "search", "s-1");
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(pub.publish({i, "e"}));
  std::set<int64_t> seen;
  size_t total = 0;
  for (int round = 0; round < 20 && total < 10; ++round) {
    for (Sub* s : {&a1, &a2}) {
      auto r = s->poll();
      ASSERT_TRUE(r) << r.error().to_string();
      for (auto& m : *r) {
        EXPECT_TRUE(seen.insert(m.value.id).second) << "message " << m.value.id << " delivered twice in one group";
        ++total;
        EXPECT_TRUE(s->ack(m));
      }
    }
  }
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(take(other, 10).size(), 10u);  // the other group gets all ten too
}

TEST_P(Conformance, WhatIsNotAcknowledgedComesBackAndWhatIsDoesNot) {
  Pub pub(p(), "jobs");
  auto w1 = subscriber("jobs", "workers", "w-1", 300ms);
  auto w2 = subscriber("jobs", "workers", "w-2", 300ms);
  ASSERT_TRUE(pub.publish({1, "acked"}));
  ASSERT_TRUE(pub.publish({2, "dropped"}));
  auto first = take(w1, 2);
  ASSERT_EQ(first.size(), 2u);
  ASSERT_TRUE(w1.ack(first[0]));  // w-1 "crashes" before acknowledging the second
  std::this_thread::sleep_for(400ms);
  auto again = take(w2, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].value.id, 2);
  EXPECT_EQ(again[0].deliveries, 2u);
  ASSERT_TRUE(w2.ack(again[0]));
  std::this_thread::sleep_for(400ms);
  auto r = w2.poll();
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());  // both acknowledged: nothing comes back
}

TEST_P(Conformance, AfterMaxDeliveriesAMessageGoesToTheDeadLetterTopic) {
  Pub pub(p(), "mail");
  auto s = subscriber("mail", "senders", "m-1", 100ms, 2);
  auto dl = subscriber("mail.dead-letter", "ops", "o-1");
  ASSERT_TRUE(pub.publish({7, "poison"}));
  // Delivered twice (never acknowledged), then dead-lettered on the third attempt.
  EXPECT_EQ(take(s, 1).size(), 1u);
  std::this_thread::sleep_for(150ms);
  auto second = take(s, 1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].deliveries, 2u);
  std::this_thread::sleep_for(150ms);
  auto third = s.poll();
  ASSERT_TRUE(third);
  EXPECT_TRUE(third->empty());
  EXPECT_EQ(s.dead_lettered(), 1u);
  auto dead = take(dl, 1);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].value.id, 7);
  ASSERT_TRUE(dead[0].headers.find("dead-letter-reason"));
  EXPECT_NE(dead[0].headers.find("dead-letter-reason")->find("max_deliveries 2"), std::string::npos);
  std::this_thread::sleep_for(150ms);
  auto after = s.poll();
  ASSERT_TRUE(after);
  EXPECT_TRUE(after->empty());  // acknowledged on the way out: never delivered again
}

TEST_P(Conformance, APayloadThatDoesNotDecodeIsDeadLettered) {
  ASSERT_TRUE(p().append("raw", encode_fields("not-an-order", {})));
  Pub pub(p(), "raw");
  ASSERT_TRUE(pub.publish({1, "fine"}));
  auto s = subscriber("raw", "g", "c");
  auto got = take(s, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value.id, 1);
  EXPECT_EQ(s.dead_lettered(), 1u);
  // Read the dead letter raw (as an Order it would not decode either).
  ASSERT_TRUE(p().create_group("raw.dead-letter", "ops"));
  auto dead = p().read_new("raw.dead-letter", "ops", "o", 10, 100ms);
  ASSERT_TRUE(dead) << dead.error().to_string();
  ASSERT_EQ(dead->size(), 1u);
  std::string payload;
  Headers headers;
  ASSERT_TRUE(decode_fields((*dead)[0].fields, payload, headers));
  EXPECT_EQ(payload, "not-an-order");
  ASSERT_TRUE(headers.find("dead-letter-reason"));
  EXPECT_EQ(*headers.find("dead-letter-reason"), "payload does not decode: not an order: 'not-an-order'");
}

// Request–reply: answers come back through the requester's inbox, matched by correlation id;
// a responder's error reaches the requester; the inbox goes with its requester.
using Ask = Requester<Order, Order, OrderCodec, OrderCodec>;
using Answer = Responder<Order, Order, OrderCodec, OrderCodec>;

TEST_P(Conformance, RequestsAreAnsweredThroughTheRequestersInbox) {
  auto responder = Answer::open(b_->second(), "prices", {.group = "pricing", .consumer = "p-1", .block = 50ms});
  ASSERT_TRUE(responder) << responder.error().to_string();
  std::atomic<bool> stop{false};
  std::thread serving([&] {
    while (!stop) {
      auto n = responder->serve([](const Message<Order>& m) -> Result<Order> {
        if (m.value.item == "bad") return keel::client::make_error(Errc::kInvalidArgument, "no price for 'bad'");
        return Order{m.value.id * 10, "price-of-" + m.value.item};
      });
      if (!n) ADD_FAILURE() << n.error().to_string();
    }
  });
  std::string inbox;
  {
    auto ask = Ask::open(p(), "prices", 5s);
    ASSERT_TRUE(ask) << ask.error().to_string();
    inbox = ask->inbox();
    for (int i = 1; i <= 5; ++i) {
      auto r = ask->request({i, "item" + std::to_string(i)});
      ASSERT_TRUE(r) << r.error().to_string();
      EXPECT_EQ(r->id, i * 10);
      EXPECT_EQ(r->item, "price-of-item" + std::to_string(i));
    }
    auto bad = ask->request({9, "bad"});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Errc::kServerError);
    EXPECT_EQ(bad.error().message, "the responder failed: no price for 'bad'");
  }
  stop = true;
  serving.join();
  // The inbox went with its requester: an answer to it would not create it again.
  auto late = p().append_existing(inbox, encode_fields("1|x", {}));
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Errc::kNotFound);
}

TEST_P(Conformance, ARequestNobodyAnswersTimesOutAndItsLateAnswerIsDropped) {
  auto ask = Ask::open(p(), "quotes", 300ms);
  ASSERT_TRUE(ask) << ask.error().to_string();
  auto r = ask->request({1, "first"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kTimeout);
  // Now a responder comes: it answers the old request too; the requester takes only its own.
  auto responder = Answer::open(b_->second(), "quotes", {.group = "q", .consumer = "q-1", .block = 50ms});
  ASSERT_TRUE(responder) << responder.error().to_string();
  std::atomic<bool> stop{false};
  std::thread serving([&] {
    while (!stop) (void)responder->serve([](const Message<Order>& m) -> Result<Order> { return m.value; });
  });
  Result<Order> second = keel::client::make_error(Errc::kTimeout, "not asked");
  for (int i = 0; i < 10 && !second; ++i) second = ask->request({2, "second"});
  stop = true;
  serving.join();
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_EQ(second->item, "second");
}

// Pub/sub (at most once): ChannelPublisher / ChannelSubscriber over RESP (keel, Redis) and in
// this process (the "file" backend's local_channels()).
using ChanPub = ChannelPublisher<Order, OrderCodec>;
using ChanSub = ChannelSubscriber<Order, OrderCodec>;

ChanSub channel_subscriber(Channels& c, ChannelSubscriberOptions o) {
  auto s = ChanSub::open(c, std::move(o));
  EXPECT_TRUE(s) << s.error().to_string();
  return std::move(*s);
}

// Takes up to `n` deliveries, waiting at most 2 s for each.
std::vector<ChannelDelivery<Order>> receive(ChanSub& s, size_t n) {
  std::vector<ChannelDelivery<Order>> got;
  while (got.size() < n) {
    auto m = s.next(2s);
    EXPECT_TRUE(m) << m.error().to_string();
    if (!m || !*m) break;
    got.push_back(std::move(**m));
  }
  return got;
}

TEST_P(Conformance, ChannelMessagesReachEverySubscriberInOrderWithTheirHeaders) {
  auto& c = b_->channels();
  auto s1 = channel_subscriber(c, {.channels = {"news"}});
  auto s2 = channel_subscriber(c, {.channels = {"news", "other"}});
  auto sp = channel_subscriber(c, {.patterns = {"ne[wx]?"}});
  ChanPub pub(c, "news");
  for (int i = 1; i <= 3; ++i) {
    auto n = pub.publish({i, "n" + std::to_string(i)}, {{"traceparent", "00-t-s-01"}});
    ASSERT_TRUE(n) << n.error().to_string();
    EXPECT_EQ(*n, 3);  // as PUBLISH counts: two channel subscriptions and one pattern
  }
  for (ChanSub* s : {&s1, &s2, &sp}) {
    auto got = receive(*s, 3);
    ASSERT_EQ(got.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      const auto& m = got[static_cast<size_t>(i)];
      EXPECT_EQ(m.channel, "news");
      EXPECT_EQ(m.value.id, i + 1);
      EXPECT_EQ(m.value.item, "n" + std::to_string(i + 1));
      ASSERT_TRUE(m.headers.find("traceparent"));
      EXPECT_EQ(*m.headers.find("traceparent"), "00-t-s-01");
      ASSERT_TRUE(m.headers.find("message-id"));
      EXPECT_EQ(m.headers.find("message-id")->size(), 32u);
    }
    auto none = s->next(100ms);
    ASSERT_TRUE(none);
    EXPECT_FALSE(*none);
  }
}

TEST_P(Conformance, ChannelMessagesAreNotKeptForLaterSubscribers) {
  auto& c = b_->channels();
  ChanPub pub(c, "live");
  auto before = pub.publish({1, "nobody listens"});
  ASSERT_TRUE(before);
  EXPECT_EQ(*before, 0);
  auto s = channel_subscriber(c, {.channels = {"live"}});
  ASSERT_TRUE(pub.publish({2, "heard"}));
  auto got = receive(s, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value.id, 2);  // the first was not stored
}

TEST_P(Conformance, APlainClientsChannelMessageReadsWithoutHeadersAndGarbageIsSkipped) {
  auto& c = b_->channels();
  auto s = channel_subscriber(c, {.channels = {"raw"}});
  ASSERT_TRUE(c.publish("raw", "not-an-order"));
  ASSERT_TRUE(c.publish("raw", std::string("\0KM1\x05", 5)));  // the envelope's prefix, then nonsense
  ASSERT_TRUE(c.publish("raw", "5|plain"));
  auto got = receive(s, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value.id, 5);
  EXPECT_EQ(got[0].value.item, "plain");
  EXPECT_TRUE(got[0].headers.empty());
  EXPECT_EQ(s.undecodable(), 2u);
}

TEST_P(Conformance, ABrokenChannelSubscriptionIsMadeAgainAndLosesWhatCameMeanwhile) {
  if (GetParam() == "file") GTEST_SKIP() << "an in-process subscription cannot break";
  auto& c = b_->channels();
  auto s = channel_subscriber(c, {.channels = {"cut"}});
  // The server cuts a subscriber whose output passes the pubsub buffer limit (Redis's rule).
  ASSERT_TRUE(b_->command({"CONFIG", "SET", "client-output-buffer-limit", "pubsub 1024 512 0"}));
  ChanPub pub(c, "cut");
  ASSERT_TRUE(pub.publish({1, std::string(64 * 1024, 'x')}));
  Result<std::optional<ChannelDelivery<Order>>> r = std::optional<ChannelDelivery<Order>>();
  for (int i = 0; i < 20 && r; ++i) r = s.next(200ms);  // the big one may or may not arrive first
  ASSERT_FALSE(r) << "the subscription should have been cut";
  EXPECT_EQ(s.resubscribed(), 0u);
  ASSERT_TRUE(b_->command({"CONFIG", "SET", "client-output-buffer-limit", "pubsub 32mb 8mb 60"}));
  ASSERT_TRUE(pub.publish({2, "lost"}));  // nobody subscribed: gone
  auto again = s.next(100ms);             // subscribes again first
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(s.resubscribed(), 1u);
  ASSERT_TRUE(pub.publish({3, "after"}));
  auto got = receive(s, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value.id, 3);
}

INSTANTIATE_TEST_SUITE_P(Providers, Conformance, ::testing::Values("keel", "redis", "file"),
                         [](const auto& info) { return info.param; });

TEST(Channels, BadSubscriptionsAreRefusedWithWhatIsAllowed) {
  auto c = local_channels();
  auto s = ChanSub::open(*c, {});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::kInvalidArgument);
  EXPECT_NE(s.error().message.find("at least one channel or pattern"), std::string::npos);
}

TEST(Channels, AnInProcessSubscriberThatFallsBehindLosesMessagesNotThePublisher) {
  auto c = local_channels(4);
  auto slow = c->subscribe({"t"}, {});
  ASSERT_TRUE(slow);
  for (int i = 0; i < 10; ++i) {
    auto n = c->publish("t", "m" + std::to_string(i));
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 1);
  }
  EXPECT_EQ(local_dropped(**slow), 6u);
  for (int i = 0; i < 4; ++i) {
    auto m = (*slow)->next(0ms);
    ASSERT_TRUE(m && *m);
    EXPECT_EQ((*m)->data, "m" + std::to_string(i));
  }
}

TEST(Channels, TheEnvelopeRoundTripsAndRefusesWhatIsTruncated) {
  Headers h{{"a", "1"}, {"traceparent", std::string(55, 't')}};
  const std::string e = encode_envelope("payload", h);
  std::string payload;
  Headers back;
  ASSERT_TRUE(decode_envelope(e, payload, back));
  EXPECT_EQ(payload, "payload");
  EXPECT_EQ(back, h);
  for (size_t cut = 5; cut < e.size() - 7; ++cut)
    EXPECT_FALSE(decode_envelope(e.substr(0, cut), payload, back)) << "cut at " << cut;
  ASSERT_TRUE(decode_envelope("plain text", payload, back));
  EXPECT_EQ(payload, "plain text");
  EXPECT_TRUE(back.empty());
}

TEST(MessagingOptions, BadOptionsAreRefusedWithWhatIsAllowed) {
  char tmpl[] = "/tmp/keel-msg-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto fp = file_provider(dir);
  auto s = Sub::open(*fp, "t", {.group = "", .consumer = "c"});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message, "subscriber: group and consumer must not be empty");
  auto z = Sub::open(*fp, "t", {.group = "g", .consumer = "c", .max_deliveries = 0});
  ASSERT_FALSE(z);
  EXPECT_EQ(z.error().message, "subscriber: max_deliveries must be at least 1");
  auto bad = fp->append("../escape", {{"payload", "x"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("allowed: non-empty, no '/'"), std::string::npos);
  std::filesystem::remove_all(dir);
}

}  // namespace

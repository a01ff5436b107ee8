// keel::messaging: typed publish/subscribe over a persistent log with consumer groups
// (docs/messaging.md). Publisher<T> appends messages; Subscriber<T> reads them as one consumer
// of a group — a group is a queue of competing consumers (point-to-point), several groups each
// get every message (publish/subscribe with durable subscriptions). Delivery is at least once:
// a message is delivered again (to any consumer of the group) until it is acknowledged; one not
// acknowledged within `ack_timeout` is taken back, and after `max_deliveries` deliveries (or a
// payload the codec cannot read) it moves to the dead-letter topic and is acknowledged.
//
// Request–reply (Requester / Responder, below) runs over the same log: a request carries the
// requester's inbox topic and a correlation id, the responder appends its answer to that inbox.
//
// The log is a Provider: over RESP Streams (keel, or any Redis server: XADD, XREADGROUP,
// XPENDING, XCLAIM, XACK), or local files (tests and replay). The same conformance suite runs
// against each (tests/integration/messaging_conformance_test.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "keel/client/client.h"
#include "keel/client/error.h"

namespace keel::messaging {

using client::Errc;
using client::Error;
using client::Result;
using client::Status;
using Fields = std::vector<std::pair<std::string, std::string>>;

// One entry of a topic's log as a provider hands it out.
struct Entry {
  std::string id;           // the log's id ("1700000000000-0")
  Fields fields;
  uint32_t deliveries = 1;  // times it was delivered to the group, this one included
};

class Provider {
 public:
  virtual ~Provider() = default;
  // Appends; returns the entry's id.
  virtual Result<std::string> append(const std::string& topic, const Fields& fields) = 0;
  // Creates the group reading the topic from its start (and the topic); an existing group is fine.
  virtual Status create_group(const std::string& topic, const std::string& group) = 0;
  // Entries never delivered to the group, now delivered to `consumer`; waits up to `block`
  // when there are none.
  virtual Result<std::vector<Entry>> read_new(const std::string& topic, const std::string& group,
                                              const std::string& consumer, size_t count,
                                              std::chrono::milliseconds block) = 0;
  // Entries delivered but not acknowledged for at least `min_idle`, now delivered to `consumer`
  // (their delivery count goes up by one).
  virtual Result<std::vector<Entry>> claim_idle(const std::string& topic, const std::string& group,
                                                const std::string& consumer, std::chrono::milliseconds min_idle,
                                                size_t count) = 0;
  virtual Status ack(const std::string& topic, const std::string& group, const std::string& id) = 0;
  // Appends only to a topic that exists (kNotFound otherwise): a reply to an inbox that is gone
  // must not create it again.
  virtual Result<std::string> append_existing(const std::string& topic, const Fields& fields) = 0;
  // Removes one entry (a reply already read), or the whole topic with its groups.
  virtual Status erase(const std::string& topic, const std::string& id) = 0;
  virtual Status remove_topic(const std::string& topic) = 0;
};

// Streams over RESP: keel or any Redis server (5.0+). The client must outlive the provider.
std::unique_ptr<Provider> resp_provider(keel::Client& client);
// Local files under `dir` (created if missing): one log file per topic, appended to; group
// state lives in this process. For tests and for replaying a topic.
std::unique_ptr<Provider> file_provider(std::string dir);

// How a message travels: payload and headers as stream fields ("payload", "h:<name>").
struct Headers : std::vector<std::pair<std::string, std::string>> {
  using vector::vector;
  const std::string* find(std::string_view name) const {
    for (const auto& [k, v] : *this)
      if (k == name) return &v;
    return nullptr;
  }
};

template <class T>
struct Message {
  std::string id;
  T value;
  Headers headers;       // the publisher's, plus "message-id" and "published-at-ms"
  uint32_t deliveries = 1;
};

// Encodes a message's fields (exposed for tests and tools).
Fields encode_fields(std::string payload, const Headers& headers);
// Splits fields into payload and headers; false when there is no payload field.
bool decode_fields(const Fields& fields, std::string& payload, Headers& headers);
// A fresh message id (random, 32 hex digits).
std::string new_message_id();
int64_t now_unix_ms();

// Codec: static std::string encode(const T&); static Result<T> decode(std::string_view).
template <class T, class Codec>
class Publisher {
 public:
  Publisher(Provider& provider, std::string topic) : p_(provider), topic_(std::move(topic)) {}
  // Appends; returns the log id.
  Result<std::string> publish(const T& value, Headers headers = {}) {
    headers.emplace_back("message-id", new_message_id());
    headers.emplace_back("published-at-ms", std::to_string(now_unix_ms()));
    return p_.append(topic_, encode_fields(Codec::encode(value), headers));
  }

 private:
  Provider& p_;
  std::string topic_;
};

struct SubscriberOptions {
  std::string group;
  std::string consumer;
  uint32_t max_deliveries = 5;
  std::chrono::milliseconds ack_timeout{30000};
  size_t batch = 16;
  std::chrono::milliseconds block{1000};
  std::string dead_letter_topic;  // empty: "<topic>.dead-letter"
};

template <class T, class Codec>
class Subscriber {
 public:
  // Creates the group if needed.
  static Result<Subscriber> open(Provider& provider, std::string topic, SubscriberOptions o) {
    if (o.group.empty() || o.consumer.empty())
      return client::make_error(Errc::kInvalidArgument, "subscriber: group and consumer must not be empty");
    if (o.max_deliveries == 0)
      return client::make_error(Errc::kInvalidArgument, "subscriber: max_deliveries must be at least 1");
    if (o.dead_letter_topic.empty()) o.dead_letter_topic = topic + ".dead-letter";
    if (auto st = provider.create_group(topic, o.group); !st) return std::unexpected(st.error());
    return Subscriber(provider, std::move(topic), std::move(o));
  }

  // The next messages: first those another consumer took but did not acknowledge in time,
  // then new ones (waiting up to options.block). Messages past max_deliveries, or whose
  // payload does not decode, go to the dead-letter topic instead and are not returned.
  Result<std::vector<Message<T>>> poll() {
    std::vector<Message<T>> out;
    auto stale = p_.claim_idle(topic_, o_.group, o_.consumer, o_.ack_timeout, o_.batch);
    if (!stale) return std::unexpected(stale.error());
    if (auto st = take(*stale, out); !st) return std::unexpected(st.error());
    if (!out.empty()) return out;
    auto fresh = p_.read_new(topic_, o_.group, o_.consumer, o_.batch, o_.block);
    if (!fresh) return std::unexpected(fresh.error());
    if (auto st = take(*fresh, out); !st) return std::unexpected(st.error());
    return out;
  }
  Status ack(const Message<T>& m) { return p_.ack(topic_, o_.group, m.id); }
  uint64_t dead_lettered() const { return dead_lettered_; }

 private:
  Subscriber(Provider& p, std::string topic, SubscriberOptions o) : p_(p), topic_(std::move(topic)), o_(std::move(o)) {}

  Status take(std::vector<Entry>& entries, std::vector<Message<T>>& out) {
    for (auto& e : entries) {
      std::string payload;
      Headers headers;
      std::string why;
      if (e.deliveries > o_.max_deliveries) {
        why = "delivered " + std::to_string(e.deliveries - 1) + " times without an ack (max_deliveries " +
              std::to_string(o_.max_deliveries) + ")";
      } else if (!decode_fields(e.fields, payload, headers)) {
        why = "no payload field";
      } else if (auto v = Codec::decode(payload); !v) {
        why = "payload does not decode: " + v.error().message;
      } else {
        out.push_back(Message<T>{e.id, std::move(*v), std::move(headers), e.deliveries});
        continue;
      }
      // Dead letter: the entry as it was, with why and where from; then acknowledged here.
      Fields dl = e.fields;
      dl.emplace_back("h:dead-letter-reason", why);
      dl.emplace_back("h:dead-letter-from", topic_ + " " + e.id);
      if (auto r = p_.append(o_.dead_letter_topic, dl); !r) return std::unexpected(r.error());
      if (auto st = p_.ack(topic_, o_.group, e.id); !st) return st;
      ++dead_lettered_;
    }
    return {};
  }

  Provider& p_;
  std::string topic_;
  SubscriberOptions o_;
  uint64_t dead_lettered_ = 0;
};

// Request–reply, as NATS does it: every Requester owns an inbox topic
// ("<topic>.inbox.<32 hex digits>", removed when the Requester goes); request() appends the
// request with the headers "reply-to" (the inbox) and "correlation-id", then reads its inbox
// until the answer with that id comes or the timeout passes. An answer that comes after its
// request timed out is dropped when the next request reads the inbox. Replies are erased once
// read, so an inbox holds only answers not yet read. A Requester is used by one thread at a
// time; give each thread its own (and its own Provider for RESP: a request blocks the
// provider's connection while it waits).
template <class Req, class Resp, class ReqCodec, class RespCodec>
class Requester {
 public:
  static Result<Requester> open(Provider& provider, std::string topic,
                                std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    if (timeout.count() <= 0)
      return client::make_error(Errc::kInvalidArgument, "requester: timeout must be positive, got " +
                                                            std::to_string(timeout.count()) + " ms");
    std::string inbox = topic + ".inbox." + new_message_id();
    if (auto st = provider.create_group(inbox, "requester"); !st) return std::unexpected(st.error());
    return Requester(provider, std::move(topic), std::move(inbox), timeout);
  }
  Requester(Requester&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), topic_(std::move(o.topic_)), inbox_(std::move(o.inbox_)),
        timeout_(o.timeout_) {}
  Requester& operator=(Requester&&) = delete;
  ~Requester() {
    if (p_) (void)p_->remove_topic(inbox_);
  }
  const std::string& inbox() const { return inbox_; }

  // The answer, or: kTimeout (no answer in time; the request may still be handled), kServerError
  // with the responder's error, kUnexpectedReply when the answer does not decode, or the
  // provider's error.
  Result<Resp> request(const Req& value, Headers headers = {}) {
    const std::string id = new_message_id();
    headers.emplace_back("message-id", id);
    headers.emplace_back("published-at-ms", std::to_string(now_unix_ms()));
    headers.emplace_back("reply-to", inbox_);
    headers.emplace_back("correlation-id", id);
    if (auto r = p_->append(topic_, encode_fields(ReqCodec::encode(value), headers)); !r)
      return std::unexpected(r.error());
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return client::make_error(Errc::kTimeout, "no reply on topic '" + topic_ + "' within " +
                                                      std::to_string(timeout_.count()) +
                                                      " ms (the request may still be handled)");
      auto got = p_->read_new(inbox_, "requester", "requester", 16, std::min(left, std::chrono::milliseconds(1000)));
      if (!got) return std::unexpected(got.error());
      std::optional<Result<Resp>> answer;
      for (auto& e : *got) {
        (void)p_->ack(inbox_, "requester", e.id);
        (void)p_->erase(inbox_, e.id);
        std::string payload;
        Headers h;
        if (answer || !decode_fields(e.fields, payload, h)) continue;
        const std::string* corr = h.find("correlation-id");
        if (!corr || *corr != id) continue;  // the late answer to an earlier request
        if (const std::string* err = h.find("error"))
          answer = client::make_error(Errc::kServerError, "the responder failed: " + *err);
        else if (auto v = RespCodec::decode(payload); !v)
          answer = client::make_error(Errc::kUnexpectedReply, "the reply does not decode: " + v.error().message);
        else
          answer = std::move(*v);
      }
      if (answer) return std::move(*answer);
    }
  }

 private:
  Requester(Provider& p, std::string topic, std::string inbox, std::chrono::milliseconds timeout)
      : p_(&p), topic_(std::move(topic)), inbox_(std::move(inbox)), timeout_(timeout) {}
  Provider* p_;
  std::string topic_, inbox_;
  std::chrono::milliseconds timeout_;
};

// Answers requests as one consumer of a group on the request topic (several responders of one
// group share the requests). A request is delivered at least once, like any message (a
// responder that dies before it acknowledges leaves it to another after ack_timeout), so make
// the handler idempotent. The handler's error travels to the requester as its message.
template <class Req, class Resp, class ReqCodec, class RespCodec>
class Responder {
 public:
  using Handler = std::function<Result<Resp>(const Message<Req>&)>;
  static Result<Responder> open(Provider& provider, std::string topic, SubscriberOptions o) {
    auto sub = Subscriber<Req, ReqCodec>::open(provider, std::move(topic), std::move(o));
    if (!sub) return std::unexpected(sub.error());
    return Responder(provider, std::move(*sub));
  }
  // Answers what one poll of the topic returns (waiting up to options.block for requests);
  // returns how many requests it answered. A message without "reply-to" and "correlation-id"
  // is acknowledged and counted in ignored().
  Result<size_t> serve(const Handler& handler) {
    auto batch = sub_.poll();
    if (!batch) return std::unexpected(batch.error());
    size_t answered = 0;
    for (auto& m : *batch) {
      const std::string* to = m.headers.find("reply-to");
      const std::string* corr = m.headers.find("correlation-id");
      if (to && corr) {
        Headers h{{"correlation-id", *corr}};
        std::string payload;
        if (auto r = handler(m)) payload = RespCodec::encode(*r);
        else h.emplace_back("error", r.error().message);
        auto sent = p_.append_existing(*to, encode_fields(std::move(payload), h));
        if (!sent && sent.error().code != Errc::kNotFound) return std::unexpected(sent.error());
        ++answered;  // (an inbox that is gone: its requester left, nobody waits)
      } else {
        ++ignored_;
      }
      if (auto st = sub_.ack(m); !st) return std::unexpected(st.error());
    }
    return answered;
  }
  uint64_t ignored() const { return ignored_; }

 private:
  Responder(Provider& p, Subscriber<Req, ReqCodec> sub) : p_(p), sub_(std::move(sub)) {}
  Provider& p_;
  Subscriber<Req, ReqCodec> sub_;
  uint64_t ignored_ = 0;
};

}  // namespace keel::messaging

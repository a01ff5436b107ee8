// keel::messaging: typed publish/subscribe over a persistent log with consumer groups
// (docs/messaging.md). Publisher<T> appends messages; Subscriber<T> reads them as one consumer
// of a group — a group is a queue of competing consumers (point-to-point), several groups each
// get every message (publish/subscribe with durable subscriptions). Delivery is at least once:
// a message is delivered again (to any consumer of the group) until it is acknowledged; one not
// acknowledged within `ack_timeout` is taken back, and after `max_deliveries` deliveries (or a
// payload the codec cannot read) it moves to the dead-letter topic and is acknowledged.
//
// The log is a Provider: over RESP Streams (keel, or any Redis server: XADD, XREADGROUP,
// XPENDING, XCLAIM, XACK), or local files (tests and replay). The same conformance suite runs
// against each (tests/integration/messaging_conformance_test.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
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

}  // namespace keel::messaging

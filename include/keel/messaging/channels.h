// keel::messaging over pub/sub: typed messages fanned out live to whoever is subscribed,
// at most once (docs/messaging.md, "Pub/sub from C++"). Nothing is stored: a subscriber that is
// not connected when a message is published never gets it, and a subscription that breaks
// loses what is published until it is made again. For messages that must not be lost use
// Publisher/Subscriber over a stream (messaging.h).
//
// ChannelPublisher<T, Codec> publishes; ChannelSubscriber<T, Codec> receives, with the same
// codecs and headers as the stream flavour. The transport is a Channels: over RESP (keel, or any
// Redis server: PUBLISH, SUBSCRIBE, PSUBSCRIBE on a connection of the subscription's own) or in
// this process (tests). The same conformance suite runs against each.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/client/client.h"
#include "keel/client/options.h"
#include "keel/messaging/messaging.h"

namespace keel::messaging {

// One message as it arrived: the channel it was published to, the pattern that matched it
// (empty for a plain channel subscription) and its bytes.
struct ChannelMessage {
  std::string channel;
  std::string pattern;
  std::string data;
};

// A live subscription. Used by one thread at a time.
class Subscription {
 public:
  virtual ~Subscription() = default;
  // The next message, waiting up to `timeout` (0: only what has already arrived); nullopt when
  // none came. An error (kIoError: the server went away; kProtocol: it sent something that is
  // not pub/sub; kServerError: it refused the subscription) ends the subscription: what is published until a new one is made is lost.
  virtual Result<std::optional<ChannelMessage>> next(std::chrono::milliseconds timeout) = 0;
};

class Channels {
 public:
  virtual ~Channels() = default;
  // Publishes to whoever is subscribed now; returns how many received it (as PUBLISH counts:
  // on a keel cluster, the subscribers of every node that has any, see docs/messaging.md).
  virtual Result<int64_t> publish(const std::string& channel, std::string_view message) = 0;
  // Subscribes to channels and glob patterns (at least one in all). Returns once the server
  // has confirmed each, so a message published after it returns is received.
  virtual Result<std::unique_ptr<Subscription>> subscribe(const std::vector<std::string>& channels,
                                                          const std::vector<std::string>& patterns) = 0;
};

// Over RESP: publishes through `client` (keel or any Redis server; the client must outlive the
// Channels), subscribes on a connection of its own to `subscribe_to` (plaintext; `connection`'s
// connect_timeout, username and password apply; RESP2, which every server speaks).
std::unique_ptr<Channels> resp_channels(keel::Client& client, client::Endpoint subscribe_to,
                                        client::ConnectionOptions connection = {});
// In this process: every subscription of this object receives what it publishes. Each
// subscription buffers at most `max_buffered` messages; beyond that, new ones are dropped for it
// and counted (a slow subscriber loses messages, it never slows the publisher).
std::unique_ptr<Channels> local_channels(size_t max_buffered = 100000);
// Messages one local_channels() subscription dropped (0 for any other subscription).
uint64_t local_dropped(const Subscription& s);

// How a message travels on a channel: "\x00KM1", varint header count, each header as varint
// length + name and varint length + value, then the payload (the codec's bytes). A message
// without that prefix (one a plain Redis client published) reads as a payload without headers.
std::string encode_envelope(std::string_view payload, const Headers& headers);
// Splits a message into payload and headers; false when it has the prefix but is malformed.
bool decode_envelope(std::string_view message, std::string& payload, Headers& headers);

template <class T>
struct ChannelDelivery {
  std::string channel;
  T value;
  Headers headers;  // the publisher's, plus "message-id" and "published-at-ms" (keel publishers)
};

// Codec: static std::string encode(const T&); static Result<T> decode(std::string_view).
template <class T, class Codec>
class ChannelPublisher {
 public:
  ChannelPublisher(Channels& channels, std::string channel) : c_(channels), channel_(std::move(channel)) {}
  // Publishes; returns how many subscribers received it.
  Result<int64_t> publish(const T& value, Headers headers = {}) {
    headers.emplace_back("message-id", new_message_id());
    headers.emplace_back("published-at-ms", std::to_string(now_unix_ms()));
    return c_.publish(channel_, encode_envelope(Codec::encode(value), headers));
  }

 private:
  Channels& c_;
  std::string channel_;
};

struct ChannelSubscriberOptions {
  std::vector<std::string> channels;
  std::vector<std::string> patterns;  // glob patterns (PSUBSCRIBE)
};

template <class T, class Codec>
class ChannelSubscriber {
 public:
  static Result<ChannelSubscriber> open(Channels& channels, ChannelSubscriberOptions o) {
    if (o.channels.empty() && o.patterns.empty())
      return client::make_error(Errc::kInvalidArgument,
                                "channel subscriber: give at least one channel or pattern to subscribe to");
    auto s = channels.subscribe(o.channels, o.patterns);
    if (!s) return std::unexpected(s.error());
    return ChannelSubscriber(channels, std::move(o), std::move(*s));
  }

  // The next message, waiting up to `timeout`; nullopt when none came. A message whose payload
  // does not decode is skipped and counted (nothing is stored, so there is no dead letter).
  // When the subscription broke, this call subscribes again first (counted in resubscribed()):
  // what was published in between is lost, as pub/sub promises no more.
  Result<std::optional<ChannelDelivery<T>>> next(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (!sub_) {
        auto s = c_->subscribe(o_.channels, o_.patterns);
        if (!s) return std::unexpected(s.error());
        sub_ = std::move(*s);
        ++resubscribed_;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      auto m = sub_->next(std::max(left, std::chrono::milliseconds(0)));
      if (!m) {
        sub_.reset();
        return std::unexpected(m.error());
      }
      if (!*m) return std::optional<ChannelDelivery<T>>();
      std::string payload;
      Headers headers;
      if (decode_envelope((*m)->data, payload, headers)) {
        if (auto v = Codec::decode(payload)) {
          return std::optional<ChannelDelivery<T>>(
              ChannelDelivery<T>{std::move((*m)->channel), std::move(*v), std::move(headers)});
        }
      }
      ++undecodable_;
      if (std::chrono::steady_clock::now() >= deadline) return std::optional<ChannelDelivery<T>>();
    }
  }
  uint64_t undecodable() const { return undecodable_; }
  uint64_t resubscribed() const { return resubscribed_; }

 private:
  ChannelSubscriber(Channels& c, ChannelSubscriberOptions o, std::unique_ptr<Subscription> s)
      : c_(&c), o_(std::move(o)), sub_(std::move(s)) {}
  Channels* c_;
  ChannelSubscriberOptions o_;
  std::unique_ptr<Subscription> sub_;
  uint64_t undecodable_ = 0;
  uint64_t resubscribed_ = 0;
};

}  // namespace keel::messaging

// Who listens to what, on one shard: the channels, patterns and shard channels each client of
// the shard subscribed to, and the reverse maps a PUBLISH walks. A pure class (no I/O, no
// clock): the server keeps one per shard and uses it on that shard's thread only.
//
// Semantics are Redis 7's (pubsub.c): a client subscribes at most once to a name of each kind;
// a message to channel C reaches every client subscribed to C once, plus every client once per
// pattern of its own that matches C (glob_match, Redis's stringmatchlen syntax); shard channels
// are a separate namespace that patterns never match. Subscription counts in replies are
// channels + patterns (SUBSCRIBE, PSUBSCRIBE and their UNSUBSCRIBEs) or shard channels alone
// (SSUBSCRIBE, SUNSUBSCRIBE).
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace keel::resp {

enum class PubKind : uint8_t { kChannel = 0, kPattern = 1, kShard = 2 };

class PubSubRegistry {
 public:
  using ClientId = uint64_t;

  // Returns whether the subscription is new (false: the client already had it).
  bool subscribe(ClientId client, PubKind kind, std::string_view name);
  // Returns whether the client had the subscription.
  bool unsubscribe(ClientId client, PubKind kind, std::string_view name);
  // Removes every subscription of `kind` the client has and returns their names (sorted).
  std::vector<std::string> unsubscribe_all(ClientId client, PubKind kind);
  // Forgets the client entirely (disconnect).
  void remove_client(ClientId client);

  size_t count(ClientId client, PubKind kind) const;
  // The client's subscriptions of `kind`, sorted.
  std::vector<std::string> names(ClientId client, PubKind kind) const;
  // Channels + patterns: the count SUBSCRIBE/PSUBSCRIBE replies carry.
  size_t subscriptions(ClientId client) const {
    return count(client, PubKind::kChannel) + count(client, PubKind::kPattern);
  }
  // Every kind: 0 means the client left subscribed mode.
  size_t total(ClientId client) const { return subscriptions(client) + count(client, PubKind::kShard); }

  // Calls deliver(client, pattern) for every receiver of a message on `channel` (pattern is
  // null for a channel subscription) and returns how many there were. `shard`: a shard
  // channel message (SPUBLISH), which patterns never receive.
  size_t publish(bool shard, std::string_view channel,
                 const std::function<void(ClientId, const std::string*)>& deliver) const;

  // PUBSUB NUMSUB / SHARDNUMSUB: clients subscribed to exactly `channel` (kChannel or kShard).
  size_t numsub(PubKind kind, std::string_view channel) const;
  // PUBSUB CHANNELS / SHARDCHANNELS: names with at least one subscriber, matching `pattern`
  // (null: all), appended to `out`.
  void channels(PubKind kind, const std::string* pattern, std::vector<std::string>& out) const;
  // The distinct patterns subscribed to (PUBSUB NUMPAT counts them over every shard).
  void patterns(std::vector<std::string>& out) const;
  // Clients with at least one subscription.
  size_t clients() const { return by_client_.size(); }

 private:
  using Names = std::set<std::string, std::less<>>;
  struct Client {
    Names names[3];
  };
  using Index = std::unordered_map<std::string, std::unordered_set<ClientId>>;
  Index& index(PubKind kind) { return index_[static_cast<int>(kind)]; }
  const Index& index(PubKind kind) const { return index_[static_cast<int>(kind)]; }

  Index index_[3];  // name -> clients, per kind
  std::unordered_map<ClientId, Client> by_client_;
};

}  // namespace keel::resp

namespace keel::resp {

class Reply;

// The header of a pub/sub frame of `n` elements: a RESP3 push ('>') or, in RESP2, an array.
void push_header(Reply& r, size_t n);
// Subscribe / unsubscribe confirmations: ["subscribe", name, count] and the like. `name` null:
// an UNSUBSCRIBE of nothing (a nil channel).
void reply_subscription(Reply& r, std::string_view kind, const std::string_view* name, size_t count);
// A message: ["message", channel, payload], ["pmessage", pattern, channel, payload] or
// ["smessage", channel, payload].
void reply_message(Reply& r, PubKind kind, const std::string* pattern, std::string_view channel,
                   std::string_view payload);

}  // namespace keel::resp

// keel::Client: the blocking facade over the asynchronous cluster client. It owns one I/O
// thread running the async client; each call hands its command to that thread and waits for
// the reply. Safe to call from any number of threads at once (calls in flight share the
// per-node connection pools). Do not call it from inside the async client's own callbacks.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "keel/client/error.h"
#include "keel/client/options.h"
#include "keel/client/reply.h"
#include "keel/client/topology.h"

namespace keel {

using client::Endpoint;
using ClientOptions = client::ClusterOptions;

struct ScanPage {
  std::string cursor;  // "0" when the scan is complete
  std::vector<std::string> keys;
};

class Client {
 public:
  template <class T>
  using Result = client::Result<T>;
  using Status = client::Status;
  using Reply = client::Reply;
  using Ttl = std::optional<std::chrono::milliseconds>;

  // Connects to the seeds and, when options.cluster_aware, reads the slot map.
  static Result<Client> connect(ClientOptions options);
  static Result<Client> connect(std::string host, uint16_t port);

  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // Any command, routed by its first key; a server error comes back as a Reply of type kError.
  Result<Reply> command(std::vector<std::string> args);
  // Like command(), but an error reply becomes an Error (code kServerError).
  Result<Reply> checked(std::vector<std::string> args);

  Result<std::optional<std::string>> get(std::string_view key);
  // SET key value [PX ttl]; ttl must be positive if given.
  Status set(std::string_view key, std::string_view value, Ttl ttl = std::nullopt);
  Result<int64_t> del(const std::vector<std::string>& keys);
  Result<int64_t> del(std::string_view key) { return del(std::vector<std::string>{std::string(key)}); }
  Result<int64_t> exists(const std::vector<std::string>& keys);
  Result<bool> exists(std::string_view key);
  Result<int64_t> incr(std::string_view key, int64_t by = 1);
  // Values in the order of `keys`; keys on different nodes are fetched per slot.
  Result<std::vector<std::optional<std::string>>> mget(const std::vector<std::string>& keys);
  Status mset(const std::vector<std::pair<std::string, std::string>>& pairs);
  // Returns how many fields were added (0 when the field existed and was overwritten).
  Result<int64_t> hset(std::string_view key, std::string_view field, std::string_view value);
  Result<std::optional<std::string>> hget(std::string_view key, std::string_view field);
  Result<std::map<std::string, std::string>> hgetall(std::string_view key);
  // True if the key exists and now expires after `ttl`.
  Result<bool> expire(std::string_view key, std::chrono::milliseconds ttl);
  // The remaining time to live: nullopt for a key without expiry; kNotFound for a missing key.
  Result<Ttl> ttl(std::string_view key);
  // One SCAN step. `match` is a glob ("" = all keys); `count` a hint. On a cluster this scans
  // the node that serves the first slot only (a cluster-wide scan visits each node: not yet).
  Result<ScanPage> scan(std::string_view cursor, std::string_view match = "", size_t count = 100);

  client::Topology topology() const;
  std::map<Endpoint, client::PoolStats> pool_stats() const;
  uint64_t redirects_followed() const;

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel

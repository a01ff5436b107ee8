// Typed access to a named cache: Cache<K, V> (also keel::Cache<K, V>) is bound to one of the
// server's named caches (docs/caches.md) and stores V values under keys derived from K, through
// codecs, over a keel::Client.
//
// open() defines the cache on the server if it does not exist (CACHE.CREATE with the
// CacheConfig: replicas, writeQuorum, defaultTtl, eviction, maxMemory, maxEntries, readFrom,
// engine); an identical existing definition is fine, a different one is an error. bind() uses
// an existing cache without defining it. The cache named "default" is the plain keyspace.
// Entries travel as CACHE.GET / CACHE.PUT / CACHE.DEL name key, which cluster clients route by
// the key (the server keeps each entry in its key's slot).
#pragma once

#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "keel/client/client.h"

namespace keel::client {

// A codec turns a V into bytes and back; decode reports bytes that are not a valid V.
template <class C, class V>
concept ValueCodec = requires(const V& v, std::string_view bytes) {
  { C::encode(v) } -> std::convertible_to<std::string>;
  { C::decode(bytes) } -> std::same_as<Result<V>>;
};

struct StringCodec {
  static std::string encode(const std::string& v) { return v; }
  static Result<std::string> decode(std::string_view b) { return std::string(b); }
};

struct BytesCodec {
  static std::string encode(const std::vector<std::byte>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size());
  }
  static Result<std::vector<std::byte>> decode(std::string_view b) {
    auto p = reinterpret_cast<const std::byte*>(b.data());
    return std::vector<std::byte>(p, p + b.size());
  }
};

template <class V>
struct DefaultCodec;  // JSON values name JsonCodec<V> (json_codec.h) explicitly
template <>
struct DefaultCodec<std::string> : StringCodec {};
template <>
struct DefaultCodec<std::vector<std::byte>> : BytesCodec {};

// Integers as decimal text (so other clients read them as Redis integers do).
template <std::integral T>
struct IntegralCodec {
  static std::string encode(T v) { return std::to_string(v); }
  static Result<T> decode(std::string_view b) {
    T v{};
    auto [p, ec] = std::from_chars(b.data(), b.data() + b.size(), v);
    if (b.empty() || ec != std::errc() || p != b.data() + b.size())
      return make_error(Errc::kUnexpectedReply,
                        "cached value '" + std::string(b.substr(0, 80)) +
                            "' is not a decimal integer in the range of the type");
    return v;
  }
};
template <std::integral T>
requires(!std::same_as<T, bool>) struct DefaultCodec<T> : IntegralCodec<T> {
};

// Keys: strings as they are, integers in decimal.
template <class K>
struct KeyCodec;
template <>
struct KeyCodec<std::string> {
  static std::string encode(const std::string& k) { return k; }
};
template <std::integral K>
struct KeyCodec<K> {
  static std::string encode(K k) { return std::to_string(k); }
};

// A cache's definition as open() states it; unset fields take the server's defaults
// (replicas 1, writeQuorum 1, no default TTL, eviction lru, unbounded, readFrom primary, the
// node's engine). Sizes carry a unit ("256mb"); the server validates everything and names the
// field it refuses.
struct CacheConfig {
  std::optional<uint32_t> replicas;
  std::optional<uint32_t> write_quorum;
  std::optional<std::chrono::milliseconds> default_ttl;
  std::optional<std::string> eviction;    // "lru", "lfu", "none"
  std::optional<std::string> max_memory;  // "256mb"
  std::optional<uint64_t> max_entries;
  std::optional<std::string> read_from;  // "primary", "replica"
  std::optional<std::string> engine;     // "memory", "persistent"

  // CACHE.CREATE name <options>
  std::vector<std::string> create_command(const std::string& name) const {
    std::vector<std::string> a{"CACHE.CREATE", name};
    auto add = [&](const char* opt, std::string v) {
      a.emplace_back(opt);
      a.push_back(std::move(v));
    };
    if (replicas) add("REPLICAS", std::to_string(*replicas));
    if (write_quorum) add("QUORUM", std::to_string(*write_quorum));
    if (default_ttl) add("TTL", std::to_string(default_ttl->count()) + "ms");
    if (eviction) add("EVICTION", *eviction);
    if (max_memory) add("MAXMEMORY", *max_memory);
    if (max_entries) add("MAXENTRIES", std::to_string(*max_entries));
    if (read_from) add("READFROM", *read_from);
    if (engine) add("ENGINE", *engine);
    return a;
  }
};

template <class K, class V, class Codec = DefaultCodec<V>, class KCodec = KeyCodec<K>>
requires ValueCodec<Codec, V>
class Cache {
 public:
  // Defines the cache on the server unless it exists with the same definition, then binds to
  // it. Names are 1..64 characters of [A-Za-z0-9_.-]; "default" (the plain keyspace) is bound
  // without a definition, so `config` must be empty for it.
  static Result<Cache> open(keel::Client& client, std::string name,
                            const CacheConfig& config = {}) {
    if (auto st = check_name(name); !st) return std::unexpected(st.error());
    if (name == "default") {
      if (config.create_command(name).size() > 2)
        return make_error(Errc::kInvalidArgument,
                          "the default cache is the plain keyspace: it takes no CacheConfig");
      return Cache(client, std::move(name));
    }
    auto r = client.checked(config.create_command(name));
    if (!r) return std::unexpected(r.error());
    return Cache(client, std::move(name));
  }

  // Binds to a cache that already exists (its entry calls fail with "no cache named" if not).
  static Result<Cache> bind(keel::Client& client, std::string name) {
    if (auto st = check_name(name); !st) return std::unexpected(st.error());
    return Cache(client, std::move(name));
  }

  // nullopt when the entry is absent (or expired); kUnexpectedReply when the stored bytes do
  // not decode as a V.
  Result<std::optional<V>> get(const K& key) {
    auto r = client_->checked({"CACHE.GET", name_, KCodec::encode(key)});
    if (!r) return std::unexpected(r.error());
    if (r->is_null()) return std::optional<V>{};
    if (!r->is_string())
      return make_error(Errc::kUnexpectedReply, "CACHE.GET answered " + r->debug_string());
    auto v = Codec::decode(r->str);
    if (!v) return std::unexpected(v.error());
    return std::optional<V>{std::move(*v)};
  }

  // Stores the entry with the cache's default TTL (none if the cache has none).
  Status put(const K& key, const V& value) {
    return status_of(
        client_->checked({"CACHE.PUT", name_, KCodec::encode(key), Codec::encode(value)}));
  }

  // Stores the entry with its own TTL (the seed interface's putWithTtl); ttl must be positive.
  Status put_with_ttl(const K& key, const V& value, std::chrono::milliseconds ttl) {
    if (ttl.count() <= 0)
      return make_error(Errc::kInvalidArgument,
                        "ttl must be positive, got " + std::to_string(ttl.count()) + " ms");
    return status_of(client_->checked({"CACHE.PUT", name_, KCodec::encode(key),
                                       Codec::encode(value), "PX", std::to_string(ttl.count())}));
  }
  Status put(const K& key, const V& value, std::chrono::milliseconds ttl) {
    return put_with_ttl(key, value, ttl);
  }

  // True if an entry was removed.
  Result<bool> remove(const K& key) {
    auto r = client_->checked({"CACHE.DEL", name_, KCodec::encode(key)});
    if (!r) return std::unexpected(r.error());
    return r->integer > 0;
  }

  // Removes every entry; returns how many the node removed. Not for the default cache.
  Result<int64_t> clear() {
    auto r = client_->checked({"CACHE.CLEAR", name_});
    if (!r) return std::unexpected(r.error());
    return r->integer;
  }

  const std::string& name() const { return name_; }

  static Status check_name(const std::string& name) {
    if (name.empty() || name.size() > 64)
      return make_error(Errc::kInvalidArgument,
                        "cache name must be 1..64 characters of [A-Za-z0-9_.-] (got " +
                            std::to_string(name.size()) + ")");
    for (char c : name) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-' || c == '.';
      if (!ok)
        return make_error(Errc::kInvalidArgument, "cache name '" + name + "' has '" +
                                                      std::string(1, c) +
                                                      "'; allowed: letters, digits, '_', '-', '.'");
    }
    return {};
  }

 private:
  Cache(keel::Client& c, std::string name) : client_(&c), name_(std::move(name)) {}
  static Status status_of(const Result<Reply>& r) {
    if (!r) return std::unexpected(r.error());
    return {};
  }
  keel::Client* client_;
  std::string name_;
};

}  // namespace keel::client

namespace keel {
// keel::Cache<K, V>: the seed interface's cache(name, config) is Cache<K, V>::open(client, name,
// config).
template <class K, class V, class Codec = client::DefaultCodec<V>,
          class KCodec = client::KeyCodec<K>>
using Cache = client::Cache<K, V, Codec, KCodec>;
using client::CacheConfig;
}  // namespace keel

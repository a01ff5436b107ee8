// Typed access to a named cache: Cache<K, V> stores V values under string keys derived from K,
// through a codec, over a keel::Client.
//
// A named cache is, for now, a key prefix: cache "users" keeps its entries under
// "cache:users:<key>" in the node's keyspace (so they are visible to any Redis client, and a
// key's slot is the slot of that full string). When keel gains server-side cache definitions
// (CACHE.CREATE with replicas, ttl and eviction per cache), Cache will use them; the
// prefix layout is what existing data will be migrated from.
#pragma once

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

struct CacheOptions {
  // Entries written without an explicit ttl expire after this; nullopt = no expiry.
  std::optional<std::chrono::milliseconds> default_ttl;
};

template <class K, class V, class Codec = DefaultCodec<V>, class KCodec = KeyCodec<K>>
  requires ValueCodec<Codec, V>
class Cache {
 public:
  // Names are 1..200 characters of [A-Za-z0-9_.-]; anything else is kInvalidArgument.
  static Result<Cache> open(keel::Client& client, std::string name, CacheOptions options = {}) {
    if (name.empty() || name.size() > 200)
      return make_error(Errc::kInvalidArgument, "cache name must be 1..200 characters (got " + std::to_string(name.size()) + ")");
    for (char c : name) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                c == '-' || c == '.';
      if (!ok)
        return make_error(Errc::kInvalidArgument, "cache name '" + name + "' has '" + std::string(1, c) +
                                                      "'; allowed: letters, digits, '_', '-', '.'");
    }
    if (options.default_ttl && options.default_ttl->count() <= 0)
      return make_error(Errc::kInvalidArgument, "default_ttl must be positive");
    return Cache(client, std::move(name), options);
  }

  // nullopt when the entry is absent (or expired); kUnexpectedReply-style errors when the stored
  // bytes do not decode as a V.
  Result<std::optional<V>> get(const K& key) {
    auto raw = client_->get(full_key(key));
    if (!raw) return std::unexpected(raw.error());
    if (!*raw) return std::optional<V>{};
    auto v = Codec::decode(**raw);
    if (!v) return std::unexpected(v.error());
    return std::optional<V>{std::move(*v)};
  }

  Status put(const K& key, const V& value, std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    return client_->set(full_key(key), Codec::encode(value), ttl ? ttl : options_.default_ttl);
  }

  // True if an entry was removed.
  Result<bool> remove(const K& key) {
    auto n = client_->del(full_key(key));
    if (!n) return std::unexpected(n.error());
    return *n > 0;
  }

  const std::string& name() const { return name_; }
  std::string prefix() const { return "cache:" + name_ + ":"; }
  std::string full_key(const K& key) const { return prefix() + KCodec::encode(key); }

 private:
  Cache(keel::Client& c, std::string name, CacheOptions o) : client_(&c), name_(std::move(name)), options_(o) {}
  keel::Client* client_;
  std::string name_;
  CacheOptions options_;
};

}  // namespace keel::client

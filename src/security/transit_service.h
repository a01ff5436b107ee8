// The transit keys of the cluster (security/transit.h), kept in cluster metadata (domain
// "transit", key "keys/<name>", value the key's stored form) and followed on every node with a
// metadata subscription, so that any node encrypts, decrypts, signs and verifies with them.
//
// Changes (create, rotate, config, delete) go through metadata with compare-and-set on the
// version this node read, and answer once decided and visible here. Key material is drawn on
// the node that creates or rotates, and travels only inside metadata (the Rabia log between
// members: use mutual TLS on peer links, docs/security.md). Generic reads of the domain through
// /v1/meta show it redacted (security/meta_redact.h).
//
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "observe/trace_context.h"
#include "security/transit.h"

namespace keel::cluster {
class MetaService;
}

namespace keel::security {

inline constexpr const char* kTransitDomain = "transit";

class TransitService {
 public:
  TransitService();
  ~TransitService();
  void set_meta(cluster::MetaService* meta);  // before start(); without it the service refuses
  void start();
  void stop();

  // The key as this node knows it (nullptr: none of that name).
  std::shared_ptr<const transit::Key> find(const std::string& name) const;
  // The same, but when this node holds no such key, or holds it without `need_version`, it
  // first reads metadata linearizably (a key created or rotated through another node a moment
  // ago is found).
  boost::asio::awaitable<std::shared_ptr<const transit::Key>> find_fresh(std::string name, uint32_t need_version = 0);
  std::vector<std::string> names() const;

  // Coroutines; run them on a shard's executor. Errors: kAlreadyExists (create: a key of that
  // name exists), kNotFound, kInvalidArgument (the message says what is allowed), kUnavailable /
  // kTimeout from metadata.
  boost::asio::awaitable<Result<std::shared_ptr<const transit::Key>>> create(std::string name, transit::KeyType type);
  // The same for a traced request: the metadata write's Rabia decision is a child span of
  // trace->span_id (cluster/driver.h, "Tracing").
  boost::asio::awaitable<Result<std::shared_ptr<const transit::Key>>> create(std::string name, transit::KeyType type,
                                                                             std::optional<observe::TraceParent> trace);
  boost::asio::awaitable<Result<std::shared_ptr<const transit::Key>>> rotate(std::string name);
  // Either change may be absent.
  boost::asio::awaitable<Result<std::shared_ptr<const transit::Key>>> configure(
      std::string name, std::optional<uint32_t> min_decryption_version, std::optional<bool> deletion_allowed);
  // Refused (kInvalidArgument) unless the key's deletion_allowed is set.
  boost::asio::awaitable<Status> remove(std::string name);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace keel::security

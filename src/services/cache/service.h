// The caching service on a node: cache definitions kept in cluster metadata (domain "caches",
// one compare-and-set write per create, drop or clear), the catalog every shard reads on the
// data path, and the operations that span shards (usage, drop, clear) or come from front ends
// that are not shard handlers (HTTP).
//
// Every node follows the definitions with a metadata watch, so a cache created anywhere is
// known everywhere; the node that makes a change applies it to its own shards before it
// answers. Entries live in the keyspace (keyspace.h) and are written only through the Engine.
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
#include "services/cache/definition.h"
#include "services/cache/ops.h"

namespace keel::runtime {
class ShardSet;
}
namespace keel::cluster {
class MetaService;
}

namespace keel::cache {

template <class T>
using Task = boost::asio::awaitable<T>;

struct Info {
  Active active;
  uint64_t entries = 0;  // live entries of the current generation on this node
  uint64_t bytes = 0;    // their key + value bytes
  uint32_t partitions = 0;
};

class Service {
 public:
  Service(runtime::ShardSet& shards, EngineKind node_engine);
  ~Service();
  // The metadata service (null: not a cluster member; then every cache call is refused with a
  // message saying how to start one). Call before start().
  void set_meta(cluster::MetaService* meta);
  void start();  // loads the definitions and follows them
  void stop();

  // On shard `sid`'s thread only: the catalog that shard sees.
  const Catalog& catalog(unsigned sid) const;
  EngineKind node_engine() const;

  // Coroutines; run them on a shard's executor.
  // Creates `d`; an identical existing definition is success (create is idempotent), a
  // different one is kAlreadyExists.
  Task<Result<Active>> create(Definition d);
  // The same for a traced request: its metadata write's Rabia decision is a child span of
  // trace->span_id (cluster/driver.h, "Tracing").
  Task<Result<Active>> create(Definition d, std::optional<observe::TraceParent> trace);
  Task<Result<std::vector<Active>>> list();
  Task<Result<Info>> info(std::string name);
  // Both return the number of entries the cache held on this node just before the change;
  // when they answer, those entries are unreachable and erased from this node's shards.
  Task<Result<uint64_t>> drop(std::string name);
  Task<Result<uint64_t>> clear(std::string name);

  // A cache this node's catalog does not list (yet): reads its definition from metadata
  // (linearizable) and, if it exists, installs it on every shard of this node before
  // answering true. A cache created through another node a moment ago is then known here.
  Task<bool> learn(std::string name);

  // Entry operations for front ends that are not shard handlers: hop to the key's shard.
  // A cache this node does not know yet is looked up in metadata before kNotFound.
  Task<Result<std::optional<Got>>> get(std::string name, std::string key, int64_t now_ms);
  Task<Result<PutOutcome>> put(std::string name, std::string key, std::string value,
                               std::optional<int64_t> ttl_ms, int64_t now_ms);
  Task<Result<bool>> remove(std::string name, std::string key, int64_t now_ms);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// "no cache named 'x'" with what to do about it.
Error no_such_cache(std::string_view name);

}  // namespace keel::cache

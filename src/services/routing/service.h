// The gateway's route table on a node: registrations kept in cluster metadata (domain
// "routes", key "<service>/<instance id>", one decided put per registration or renewal, one
// decided delete per deregistration or expiry), followed with a metadata subscription, and the
// compiled table (gateway/table.h) every request reads.
//
// Leases: a registration records its absolute lease end. The table is rebuilt on every change
// and whenever the earliest lease in it ends (checked every reap interval), leaving expired
// instances out; the reaper then deletes them from metadata by compare-and-set on the version
// it saw, so a renewal decided first wins. Every node runs the reaper; the deletes are
// idempotent.
//
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "gateway/table.h"

namespace keel::runtime {
class ShardSet;
}
namespace keel::cluster {
class MetaService;
}

namespace keel::routing {

template <class T>
using Task = boost::asio::awaitable<T>;

struct Options {
  std::vector<gateway::RouteSpec> static_routes;  // from gateway.routes_file
  int64_t reap_interval_ms = 250;
  gateway::RegistrationLimits registration;
  gateway::Limits routes;
};

// What a request reads: the table and the metadata revision it reflects.
struct Snapshot {
  gateway::RouteTable table;
  uint64_t revision = 0;
};

class Service {
 public:
  Service(runtime::ShardSet& shards, Options opt);
  ~Service();
  // Call before start(). Without it every registration is refused (kUnavailable).
  void set_meta(cluster::MetaService* meta);
  void start();  // subscribes to the registrations; starts the reaper on shard 0
  void stop();

  // Any thread: the current table (never null).
  std::shared_ptr<const Snapshot> snapshot() const;
  const Options& options() const;

  // Coroutines; run them on a shard's executor. Both answer once the change is decided and
  // this node's table shows it. register_instance is also the renewal (same body again).
  Task<Result<gateway::Registration>> register_instance(const std::string& service, const std::string& id,
                                                        const std::string& body);
  // False if there was no such registration.
  Task<Result<bool>> deregister(const std::string& service, const std::string& id);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace keel::routing

// The metadata service a node offers over HTTP (/v1/meta) and to its own subsystems: a
// versioned key-value map (src/meta) replicated by Rabia through the Driver.
//
// Writes (put, compare-and-set, delete) are commands in the replicated log: they are answered
// once decided, durable on a majority of members (each member fsyncs its record log before it
// votes) and applied here. Reads are linearizable by default (a barrier goes through the log,
// then the local state is read); `stale` reads answer from this node's state at once.
// Watches long-poll: they return the events after `from_revision` as soon as there are any,
// or an empty list when `timeout_ms` passes.
//
// Node components follow metadata with subscribe() (in-process, pushed on the driver thread,
// survives history compaction and snapshot installs; see subscriptions.h).
//
// Every method may be called from any thread; callbacks run on the driver thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "runtime/cluster/driver.h"
#include "runtime/cluster/subscriptions.h"  // KeyValue, WatchEvent, MetaUpdate, Subscription

namespace keel::cluster {

struct WriteResult {
  uint64_t revision = 0;  // the store's revision after this write
  uint64_t version = 0;   // the key's version after a put
  bool existed = false;   // delete: whether the key was there
};

struct WatchResult {
  std::vector<WatchEvent> events;
  uint64_t revision = 0;  // the store's revision when answered: watch again from revision + 1
};

struct ListResult {
  std::vector<KeyValue> items;
  uint64_t revision = 0;
  bool more = false;
};

struct MetaLimits {
  size_t max_key_bytes = 4096;
  size_t max_value_bytes = 1 << 20;
  size_t max_list = 10000;
  size_t max_watch_events = 1000;
  int64_t max_watch_timeout_ms = 60000;
  size_t max_watchers = 10000;
  size_t max_subscriptions = 1024;  // in-process subscribe() on this node
};

inline constexpr const char* kDefaultDomain = "app";
// This node's view of each member's health is written to domain "members", key
// "health/<observer id>/<member id>", value alive|suspect|dead.
inline constexpr const char* kMembersDomain = "members";

class MetaService {
 public:
  MetaService(DriverOptions opt, MetaLimits limits = {});
  ~MetaService();
  Result<int> start();  // returns the peer port
  void stop();

  template <class T>
  using Cb = std::function<void(Result<T>)>;
  // Keys live in a domain (meta::Store: [a-z0-9_-]{1,64}); HTTP uses kDefaultDomain unless
  // ?domain= says otherwise. prev_version: compare-and-set; 0 means "must not exist".
  void put(std::string domain, std::string key, std::string value, std::optional<uint64_t> prev_version, Cb<WriteResult> cb);
  // kNotFound if the key is absent.
  void del(std::string domain, std::string key, std::optional<uint64_t> prev_version, Cb<WriteResult> cb);
  // The same on behalf of a request with a trace context: its wait for the Rabia decision is a
  // span, a child of trace->span_id, when the trace is sampled and spans are wanted
  // (DriverOptions::span_sink; driver.h, "Tracing").
  void put(std::string domain, std::string key, std::string value, std::optional<uint64_t> prev_version,
           Cb<WriteResult> cb, std::optional<observe::TraceParent> trace);
  void del(std::string domain, std::string key, std::optional<uint64_t> prev_version, Cb<WriteResult> cb,
           std::optional<observe::TraceParent> trace);
  void get(std::string domain, std::string key, bool stale, Cb<KeyValue> cb);  // kNotFound if absent
  void list(std::string domain, std::string prefix, size_t limit, bool stale, Cb<ListResult> cb);
  void watch(std::string domain, std::string prefix, uint64_t from_revision, int64_t timeout_ms, Cb<WatchResult> cb);

  // In-process subscription to the keys of `domain` starting with `prefix` ("" = the whole
  // domain). `cb` runs on the driver thread with MetaUpdates in revision order: first a reset
  // with the prefix's current contents (or, with from_revision > 0 still in the kept history,
  // the changes from that revision), then every change (put/delete with its revision), and a
  // reset again after a snapshot install or if the subscriber fell behind the history (see
  // subscriptions.h). May be called before start(), from the thread that calls start() (the
  // first update then comes before any peer message is handled), or from a callback. After
  // stop() no callback runs. The subscription lasts as long as the returned handle (or cancel()).
  // Errors: bad domain (kInvalidArgument), more than MetaLimits::max_subscriptions
  // (kLimitExceeded). The callback must not block for long: it holds up consensus on this node.
  Result<Subscription> subscribe(std::string domain, std::string prefix, SubscribeCallback cb,
                                 uint64_t from_revision = 0);

  // Decided reconfiguration. join: records `address` (HOST:PORT) under domain "members", key
  // "addr/<id>", then adds `id` to the configuration; the node must be running with
  // cluster.join = yes. leave: removes `id`. `cb` gets the new configuration epoch's status.
  void join(uint32_t id, std::string address, Cb<DriverStatus> cb);
  void leave(uint32_t id, Cb<DriverStatus> cb);

  DriverStatus status();                // blocks until the driver thread answers
  // The record log under the current at-rest key (Driver::reseal_log). Blocks.
  Result<std::map<uint32_t, uint64_t>> reseal_log();
  void status(Cb<DriverStatus> cb);     // answered on the driver thread
  const MetaLimits& limits() const { return limits_; }

  struct Impl;

 private:
  MetaLimits limits_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace keel::cluster

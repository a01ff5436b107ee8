// In-process subscriptions to the metadata (MetaService::subscribe): node components (routing,
// replication, the caching service) follow a (domain, key prefix) of the replicated store
// without polling.
//
// A subscriber receives MetaUpdates on the driver thread, in revision order:
//   - first a reset: every key of the prefix at some revision R (unless it asked to start from
//     a revision the store's history still holds: then the changes from there);
//   - then, after each batch of applied commands that touched the prefix, the changes (puts
//     and deletes, each with its revision), oldest first, with nothing missing or repeated;
//   - a reset again whenever the changes cannot be given one by one: the node installed a
//     snapshot from a peer (its state jumped) or the subscriber fell behind the store's kept
//     history (meta::Limits::max_history events). A reset replaces everything the subscriber
//     held for the prefix.
// So "apply resets by replacing, apply events in order" always leaves the subscriber with the
// prefix exactly as the store holds it at update.revision.
//
// Not thread-safe except Subscription::cancel(), which may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"

namespace keel::meta {
class Store;
}

namespace keel::cluster {

struct KeyValue {
  std::string key;
  std::string value;
  uint64_t version = 0;  // 1 on creation, +1 per put; 0 = absent
  uint64_t create_revision = 0;
  uint64_t mod_revision = 0;
  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

struct WatchEvent {
  bool deleted = false;
  KeyValue kv;  // kv.mod_revision is the event's revision
  friend bool operator==(const WatchEvent&, const WatchEvent&) = default;
};

struct MetaUpdate {
  // true: `contents` is every key of the prefix at `revision`, in key order; forget whatever
  // was held before. Sent first, after a snapshot install, and after falling behind history.
  bool reset = false;
  std::vector<KeyValue> contents;  // reset only
  // Changes after the previous update, oldest first (empty in a reset).
  std::vector<WatchEvent> events;
  // The store's revision this update brings the subscriber to.
  uint64_t revision = 0;
};

using SubscribeCallback = std::function<void(const MetaUpdate&)>;

namespace detail {
struct SubscriptionState {
  std::string domain, prefix;
  SubscribeCallback cb;
  std::recursive_mutex mu;  // held while the callback runs; cancel() takes it
  bool cancelled = false;   // under mu
  // Driver thread only:
  uint64_t next = 0;  // first revision not yet delivered
  bool needs_reset = true;
};
}  // namespace detail

// The handle of one subscription. Destroying it (or cancel()) ends the subscription: once
// cancel() returns, no callback of it starts (one already running on the driver thread, when
// cancel() is called from another thread, finishes first: cancel() waits for it — so a
// callback must not wait for a thread that may be calling cancel()). Move-only.
class Subscription {
 public:
  Subscription() = default;
  explicit Subscription(std::shared_ptr<detail::SubscriptionState> s) : state_(std::move(s)) {}
  Subscription(Subscription&&) noexcept = default;
  Subscription& operator=(Subscription&& o) noexcept {
    if (this != &o) {
      cancel();
      state_ = std::move(o.state_);
    }
    return *this;
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription() { cancel(); }

  void cancel();
  // False once cancelled, or once the service stopped.
  bool active() const;

 private:
  std::shared_ptr<detail::SubscriptionState> state_;
};

// The subscriptions of one node (driver thread). MetaService owns one.
class SubscriptionHub {
 public:
  explicit SubscriptionHub(size_t max_subscriptions) : max_(max_subscriptions) {}

  // Any thread: validates and counts a new subscription (kLimitExceeded beyond the limit); the
  // state is attached on the driver thread with attach(). from_revision 0: start with a reset.
  Result<std::shared_ptr<detail::SubscriptionState>> make(std::string domain, std::string prefix,
                                                          uint64_t from_revision,
                                                          SubscribeCallback cb);
  void attach(std::shared_ptr<detail::SubscriptionState> s);
  // The store's state jumped (snapshot installed): every subscriber gets a reset next.
  void reset_all();
  // Delivers what each subscriber has not seen yet of `store`.
  void deliver(const meta::Store& store);
  // The service stops: every subscription ends (active() turns false), no callback after it.
  void clear();
  size_t size() const { return count_.load(); }

 private:
  void drop(const std::shared_ptr<detail::SubscriptionState>& s);
  size_t max_;
  std::atomic<size_t> count_{0};
  std::vector<std::shared_ptr<detail::SubscriptionState>> subs_;
};

}  // namespace keel::cluster

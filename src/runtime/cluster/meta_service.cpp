#include "runtime/cluster/meta_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <list>
#include <map>

#include "runtime/cluster/kv_machine.h"
#include "cluster/peer_address.h"

namespace keel::cluster {

struct MetaService::Impl : std::enable_shared_from_this<Impl> {
  DriverOptions opt;
  MetaLimits limits;
  std::shared_ptr<MetaMachine> sm;
  std::unique_ptr<Driver> driver;

  struct Watcher {
    std::string domain;
    std::string prefix;
    uint64_t from = 0;
    Cb<WatchResult> cb;
    bool done = false;
  };
  std::list<std::shared_ptr<Watcher>> watchers;  // driver thread only
  SubscriptionHub subs;                           // driver thread only (see subscriptions.h)
  std::atomic<bool> started{false};  // subscribe() before start() attaches directly
  // Member health as this node last recorded it in metadata (driver thread only).
  std::map<uint32_t, MemberStatus> observed, recorded;
  std::map<uint32_t, bool> recording;

  Impl(DriverOptions o, MetaLimits l) : opt(std::move(o)), limits(l), subs(l.max_subscriptions) {
    meta::Limits ml;
    ml.max_key_bytes = l.max_key_bytes;
    ml.max_value_bytes = l.max_value_bytes;
    ml.max_list = l.max_list;
    sm = std::make_shared<MetaMachine>(ml);
  }

  static std::vector<WatchEvent> convert(const std::vector<meta::Event>& ev) {
    std::vector<WatchEvent> out;
    out.reserve(ev.size());
    for (auto& e : ev) {
      WatchEvent w;
      w.deleted = e.type == meta::Event::Type::kDelete;
      w.kv = MetaMachine::to_kv(e.kv);
      w.kv.mod_revision = e.revision;
      if (w.deleted) w.kv.value.clear();
      out.push_back(std::move(w));
    }
    return out;
  }
  Result<std::vector<WatchEvent>> events(const std::string& domain, const std::string& prefix, uint64_t from) const {
    auto ev = sm->store().watch(domain, prefix, from, limits.max_watch_events);
    if (!ev) return std::unexpected(ev.error());
    return convert(*ev);
  }

  // Answers watchers that have events (driver thread).
  void wake_watchers() {
    for (auto it = watchers.begin(); it != watchers.end();) {
      auto& w = **it;
      if (w.done) {
        it = watchers.erase(it);
        continue;
      }
      auto ev = events(w.domain, w.prefix, w.from);
      if (!ev || !ev->empty()) {
        w.done = true;
        if (!ev) w.cb(std::unexpected(ev.error()));
        else w.cb(WatchResult{std::move(*ev), sm->store().revision()});
        it = watchers.erase(it);
        continue;
      }
      ++it;
    }
  }

  // Writes this node's view of member health under cluster/health/<observer>/<member>, and
  // keeps retrying (every second) while it differs from what was last recorded.
  void record_health() {
    for (auto& [id, st] : observed) {
      if (recorded.count(id) && recorded[id] == st) continue;
      if (recording[id]) continue;
      recording[id] = true;
      meta::Command c;
      c.op = meta::Command::Op::kPut;
      c.put = {kMembersDomain, fmt::format("health/{}/{}", opt.node_id, id), std::string(member_status_name(st))};
      std::weak_ptr<Impl> weak = shared_from_this();
      driver->submit(meta::encode(c), [weak, id, st](Result<std::string> r) {
        auto self = weak.lock();
        if (!self) return;
        self->recording[id] = false;
        if (r) self->recorded[id] = st;
      });
    }
    std::weak_ptr<Impl> weak = shared_from_this();
    driver->after(1000, [weak] {
      if (auto s = weak.lock()) s->record_health();
    });
  }
};

MetaService::MetaService(DriverOptions opt, MetaLimits limits)
    : limits_(limits), impl_(std::make_shared<Impl>(std::move(opt), limits)) {}

MetaService::~MetaService() { stop(); }

Result<int> MetaService::start() {
  auto& im = *impl_;
  im.driver = std::make_unique<Driver>(im.opt, im.sm);
  std::weak_ptr<Impl> weak = impl_;
  // Hooks first: they are queued before the driver thread runs, so no applied batch or
  // snapshot install from a peer can come before them.
  im.driver->on_applied([weak] {
    if (auto s = weak.lock()) {
      s->wake_watchers();
      s->subs.deliver(s->sm->store());
    }
  });
  im.driver->on_installed([weak] {
    if (auto s = weak.lock()) s->subs.reset_all();
  });
  // Subscriptions made before start get their first update (a reset of the state rebuilt from
  // this node's log) before any peer message is handled.
  im.driver->post([weak] {
    if (auto s = weak.lock()) s->subs.deliver(s->sm->store());
  });
  im.started = true;
  auto port = im.driver->start();
  if (!port) return port;
  im.driver->set_address_book([weak](uint32_t id) -> std::optional<PeerAddress> {
    auto s = weak.lock();
    if (!s) return std::nullopt;
    auto kv = s->sm->store().get(kMembersDomain, fmt::format("addr/{}", id));
    if (!kv) return std::nullopt;
    auto p = parse_peer(fmt::format("{}@{}", id, kv->value));
    if (!p) return std::nullopt;
    return *p;
  });
  im.driver->on_member_status([weak](const StatusChange& c) {
    if (auto s = weak.lock()) s->observed[c.member] = c.to;
  });
  im.driver->post([weak] {
    if (auto s = weak.lock()) {
      s->observed[s->opt.node_id] = MemberStatus::kAlive;
      s->record_health();
    }
  });
  return port;
}

void MetaService::stop() {
  if (!impl_->driver) return;
  // Waiting watches get an answer now (their timers would never fire once the driver stops).
  std::weak_ptr<Impl> weak = impl_;
  impl_->driver->post([weak] {
    auto s = weak.lock();
    if (!s) return;
    s->subs.clear();
    auto all = std::move(s->watchers);
    s->watchers.clear();
    for (auto& w : all)
      if (!w->done) {
        w->done = true;
        w->cb(make_error(Errc::kUnavailable, "this node is stopping"));
      }
  });
  impl_->driver->stop();
}

namespace {
Status check_key(const std::string& key, const MetaLimits& l) {
  if (key.empty()) return make_error(Errc::kInvalidArgument, "the key must not be empty");
  if (key.size() > l.max_key_bytes)
    return make_error(Errc::kInvalidArgument, fmt::format("key of {} bytes exceeds the limit of {} bytes", key.size(), l.max_key_bytes));
  return {};
}

Driver::Callback reply_to(MetaService::Cb<WriteResult> cb) {
  return [cb = std::move(cb)](Result<std::string> r) {
    if (!r) return cb(std::unexpected(r.error()));
    cb(decode_reply(*r));
  };
}
}  // namespace

void MetaService::put(std::string domain, std::string key, std::string value, std::optional<uint64_t> prev, Cb<WriteResult> cb) {
  put(std::move(domain), std::move(key), std::move(value), prev, std::move(cb), std::nullopt);
}

void MetaService::del(std::string domain, std::string key, std::optional<uint64_t> prev, Cb<WriteResult> cb) {
  del(std::move(domain), std::move(key), prev, std::move(cb), std::nullopt);
}

void MetaService::put(std::string domain, std::string key, std::string value, std::optional<uint64_t> prev,
                      Cb<WriteResult> cb, std::optional<observe::TraceParent> trace) {
  if (auto st = check_key(key, limits_); !st) return cb(std::unexpected(st.error()));
  if (value.size() > limits_.max_value_bytes)
    return cb(make_error(Errc::kLimitExceeded, fmt::format("value of {} bytes exceeds the limit of {} bytes", value.size(), limits_.max_value_bytes)));
  meta::Command c;
  if (prev) {
    c.op = meta::Command::Op::kCas;
    c.cas = {std::move(domain), std::move(key), *prev, std::move(value)};
  } else {
    c.op = meta::Command::Op::kPut;
    c.put = {std::move(domain), std::move(key), std::move(value)};
  }
  impl_->driver->submit(meta::encode(c), reply_to(std::move(cb)), std::move(trace));
}

void MetaService::del(std::string domain, std::string key, std::optional<uint64_t> prev, Cb<WriteResult> cb,
                      std::optional<observe::TraceParent> trace) {
  if (auto st = check_key(key, limits_); !st) return cb(std::unexpected(st.error()));
  meta::Command c;
  if (prev) {
    if (*prev == 0)
      return cb(make_error(Errc::kInvalidArgument, "prev_version=0 on a delete means the key must not exist: nothing to delete; "
                                                   "allowed: a version >= 1"));
    c.op = meta::Command::Op::kTxn;
    c.txn.compares.push_back({domain, key, *prev});
    c.txn.deletes.push_back({std::move(domain), std::move(key)});
  } else {
    c.op = meta::Command::Op::kDelete;
    c.del = {std::move(domain), std::move(key)};
  }
  impl_->driver->submit(meta::encode(c), reply_to(std::move(cb)), std::move(trace));
}

void MetaService::get(std::string domain, std::string key, bool stale, Cb<KeyValue> cb) {
  if (auto st = check_key(key, limits_); !st) return cb(std::unexpected(st.error()));
  auto answer = [](const MetaMachine& m, const std::string& d, const std::string& k) -> Result<KeyValue> {
    auto v = m.store().get(d, k);
    if (!v) return make_error(Errc::kNotFound, fmt::format("key '{}' does not exist in domain '{}'", k, d));
    return MetaMachine::to_kv(*v);
  };
  auto sm = impl_->sm;
  if (stale) {
    impl_->driver->post([sm, domain, key, cb, answer] { cb(answer(*sm, domain, key)); });
    return;
  }
  auto out = std::make_shared<Result<KeyValue>>();
  impl_->driver->read_barrier(
      [out, domain, key, answer](StateMachine& m) {
        *out = answer(static_cast<MetaMachine&>(m), domain, key);
        return std::string();
      },
      [out, cb](Result<std::string> r) {
        if (!r) return cb(std::unexpected(r.error()));
        cb(std::move(*out));
      });
}

void MetaService::list(std::string domain, std::string prefix, size_t limit, bool stale, Cb<ListResult> cb) {
  limit = std::min(limit, limits_.max_list);
  auto read = [domain, prefix, limit](const MetaMachine& m) {
    ListResult out;
    out.revision = m.store().revision();
    for (auto& kv : m.store().list(domain, prefix, limit + 1)) out.items.push_back(MetaMachine::to_kv(kv));
    if (out.items.size() > limit) {
      out.items.resize(limit);
      out.more = true;
    }
    return out;
  };
  auto sm = impl_->sm;
  if (stale) {
    impl_->driver->post([sm, read, cb] { cb(read(*sm)); });
    return;
  }
  auto out = std::make_shared<ListResult>();
  impl_->driver->read_barrier(
      [out, read](StateMachine& m) {
        *out = read(static_cast<MetaMachine&>(m));
        return std::string();
      },
      [out, cb](Result<std::string> r) {
        if (!r) return cb(std::unexpected(r.error()));
        cb(std::move(*out));
      });
}

void MetaService::watch(std::string domain, std::string prefix, uint64_t from, int64_t timeout_ms, Cb<WatchResult> cb) {
  timeout_ms = std::clamp<int64_t>(timeout_ms, 0, limits_.max_watch_timeout_ms);
  std::weak_ptr<Impl> weak = impl_;
  impl_->driver->post([weak, domain = std::move(domain), prefix = std::move(prefix), from, timeout_ms, cb = std::move(cb)]() mutable {
    auto self = weak.lock();
    if (!self) return;
    uint64_t rev = self->sm->store().revision();
    if (from == 0) from = rev + 1;  // only what happens from now on
    auto ev = self->events(domain, prefix, from);
    if (!ev) return cb(std::unexpected(ev.error()));
    if (!ev->empty() || timeout_ms == 0) return cb(WatchResult{std::move(*ev), rev});
    if (self->watchers.size() >= self->limits.max_watchers)
      return cb(make_error(Errc::kLimitExceeded, fmt::format("too many watches waiting on this node (limit {})", self->limits.max_watchers)));
    auto w = std::make_shared<Impl::Watcher>(Impl::Watcher{std::move(domain), std::move(prefix), from, std::move(cb)});
    self->watchers.push_back(w);
    self->driver->after(timeout_ms, [weak, w] {
      auto s = weak.lock();
      if (!s || w->done) return;
      w->done = true;
      w->cb(WatchResult{{}, s->sm->store().revision()});
    });
  });
}

Result<Subscription> MetaService::subscribe(std::string domain, std::string prefix, SubscribeCallback cb,
                                            uint64_t from_revision) {
  if (prefix.size() > limits_.max_key_bytes)
    return make_error(Errc::kInvalidArgument, fmt::format("prefix of {} bytes exceeds the key limit of {} bytes",
                                                          prefix.size(), limits_.max_key_bytes));
  auto st = impl_->subs.make(std::move(domain), std::move(prefix), from_revision, std::move(cb));
  if (!st) return std::unexpected(st.error());
  if (!impl_->started) {
    impl_->subs.attach(*st);  // no driver thread yet; start() delivers
  } else {
    std::weak_ptr<Impl> weak = impl_;
    impl_->driver->post([weak, s = *st] {
      auto self = weak.lock();
      if (!self) return;
      self->subs.attach(s);
      self->subs.deliver(self->sm->store());
    });
  }
  return Subscription(*st);
}

void MetaService::join(uint32_t id, std::string address, Cb<DriverStatus> cb) {
  auto p = parse_peer(fmt::format("{}@{}", id, address));
  if (!p) return cb(std::unexpected(p.error()));
  meta::Command c;
  c.op = meta::Command::Op::kPut;
  c.put = {kMembersDomain, fmt::format("addr/{}", id), address};
  Driver* d = impl_->driver.get();
  std::weak_ptr<Impl> weak = impl_;
  // The address first (so every member can dial the newcomer when the change applies), then
  // the configuration change, decided in a later slot.
  d->submit(meta::encode(c), [weak, id, cb](Result<std::string> r) {
    auto self = weak.lock();
    if (!self) return;
    if (!r) return cb(std::unexpected(r.error()));
    if (auto w = decode_reply(*r); !w) return cb(std::unexpected(w.error()));
    self->driver->reconfigure(
        [id](const std::vector<uint32_t>& cur) -> Result<std::vector<uint32_t>> {
          if (std::find(cur.begin(), cur.end(), id) != cur.end())
            return make_error(Errc::kAlreadyExists, fmt::format("node {} is already a member", id));
          auto next = cur;
          next.push_back(id);
          return next;
        },
        [weak, cb](Result<std::string> r2) {
          auto s = weak.lock();
          if (!s) return;
          if (!r2) return cb(std::unexpected(r2.error()));
          s->driver->post([weak, cb] {
            if (auto s2 = weak.lock()) cb(s2->driver->status_on_driver_thread());
          });
        });
  });
}

void MetaService::leave(uint32_t id, Cb<DriverStatus> cb) {
  std::weak_ptr<Impl> weak = impl_;
  impl_->driver->reconfigure(
      [id](const std::vector<uint32_t>& cur) -> Result<std::vector<uint32_t>> {
        if (std::find(cur.begin(), cur.end(), id) == cur.end())
          return make_error(Errc::kNotFound, fmt::format("node {} is not a member", id));
        if (cur.size() == 1) return make_error(Errc::kInvalidArgument, "the last member cannot leave");
        std::vector<uint32_t> next;
        for (auto m : cur)
          if (m != id) next.push_back(m);
        return next;
      },
      [weak, cb](Result<std::string> r) {
        auto s = weak.lock();
        if (!s) return;
        if (!r) return cb(std::unexpected(r.error()));
        s->driver->post([weak, cb] {
          if (auto s2 = weak.lock()) cb(s2->driver->status_on_driver_thread());
        });
      });
}

DriverStatus MetaService::status() { return impl_->driver ? impl_->driver->status() : DriverStatus{}; }

Result<std::map<uint32_t, uint64_t>> MetaService::reseal_log() {
  if (!impl_->driver) return make_error(Errc::kUnavailable, "the cluster metadata service is not running");
  return impl_->driver->reseal_log();
}

void MetaService::status(Cb<DriverStatus> cb) {
  if (!impl_->driver) return cb(DriverStatus{});
  auto* d = impl_->driver.get();
  d->post([d, cb = std::move(cb)] { cb(d->status_on_driver_thread()); });
}

}  // namespace keel::cluster

#include "cluster/meta_service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <list>
#include <map>

#include "cluster/kv_machine.h"

namespace keel::cluster {

struct MetaService::Impl : std::enable_shared_from_this<Impl> {
  DriverOptions opt;
  MetaLimits limits;
  std::shared_ptr<KvMachine> sm = std::make_shared<KvMachine>();
  std::unique_ptr<Driver> driver;

  struct Watcher {
    std::string prefix;
    uint64_t from = 0;
    Cb<WatchResult> cb;
    bool done = false;
  };
  std::list<std::shared_ptr<Watcher>> watchers;  // driver thread only
  // Member health as this node last recorded it in metadata (driver thread only).
  std::map<uint32_t, MemberStatus> observed, recorded;
  std::map<uint32_t, bool> recording;

  Impl(DriverOptions o, MetaLimits l) : opt(std::move(o)), limits(l) {}

  // Answers watchers that have events (driver thread).
  void wake_watchers() {
    for (auto it = watchers.begin(); it != watchers.end();) {
      auto& w = **it;
      if (w.done) {
        it = watchers.erase(it);
        continue;
      }
      auto ev = sm->events(w.prefix, w.from, limits.max_watch_events);
      if (!ev || !ev->empty()) {
        w.done = true;
        if (!ev) w.cb(std::unexpected(ev.error()));
        else w.cb(WatchResult{std::move(*ev), sm->revision()});
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
      KvCommand c;
      c.op = KvCommand::Op::kPut;
      c.key = fmt::format("cluster/health/{}/{}", opt.node_id, id);
      c.value = std::string(member_status_name(st));
      std::weak_ptr<Impl> weak = shared_from_this();
      driver->submit(encode_command(c), [weak, id, st](Result<std::string> r) {
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
  auto port = im.driver->start();
  if (!port) return port;
  std::weak_ptr<Impl> weak = impl_;
  im.driver->on_applied([weak] {
    if (auto s = weak.lock()) s->wake_watchers();
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
  if (impl_->driver) impl_->driver->stop();
}

namespace {
Status check_key(const std::string& key, const MetaLimits& l) {
  if (key.empty()) return make_error(Errc::kInvalidArgument, "the key must not be empty");
  if (key.size() > l.max_key_bytes)
    return make_error(Errc::kInvalidArgument, fmt::format("key of {} bytes exceeds the limit of {} bytes", key.size(), l.max_key_bytes));
  return {};
}
}  // namespace

void MetaService::put(std::string key, std::string value, std::optional<uint64_t> prev, Cb<WriteResult> cb) {
  if (auto st = check_key(key, limits_); !st) return cb(std::unexpected(st.error()));
  if (value.size() > limits_.max_value_bytes)
    return cb(make_error(Errc::kLimitExceeded, fmt::format("value of {} bytes exceeds the limit of {} bytes", value.size(), limits_.max_value_bytes)));
  KvCommand c{KvCommand::Op::kPut, std::move(key), std::move(value), prev};
  impl_->driver->submit(encode_command(c), [cb = std::move(cb)](Result<std::string> r) {
    if (!r) return cb(std::unexpected(r.error()));
    cb(decode_reply(*r));
  });
}

void MetaService::del(std::string key, std::optional<uint64_t> prev, Cb<WriteResult> cb) {
  if (auto st = check_key(key, limits_); !st) return cb(std::unexpected(st.error()));
  KvCommand c{KvCommand::Op::kDelete, std::move(key), {}, prev};
  impl_->driver->submit(encode_command(c), [cb = std::move(cb)](Result<std::string> r) {
    if (!r) return cb(std::unexpected(r.error()));
    cb(decode_reply(*r));
  });
}

void MetaService::get(std::string key, bool stale, Cb<KeyValue> cb) {
  if (auto st = check_key(key, limits_); !st) return cb(std::unexpected(st.error()));
  auto answer = [](const KvMachine& m, const std::string& k) -> Result<KeyValue> {
    auto v = m.get(k);
    if (!v) return make_error(Errc::kNotFound, fmt::format("key '{}' does not exist", k));
    return *v;
  };
  auto sm = impl_->sm;
  if (stale) {
    impl_->driver->post([sm, key, cb, answer] { cb(answer(*sm, key)); });
    return;
  }
  auto out = std::make_shared<Result<KeyValue>>();
  impl_->driver->read_barrier(
      [out, key, answer](StateMachine& m) {
        *out = answer(static_cast<KvMachine&>(m), key);
        return std::string();
      },
      [out, cb](Result<std::string> r) {
        if (!r) return cb(std::unexpected(r.error()));
        cb(std::move(*out));
      });
}

void MetaService::list(std::string prefix, size_t limit, bool stale, Cb<ListResult> cb) {
  limit = std::min(limit, limits_.max_list);
  auto sm = impl_->sm;
  if (stale) {
    impl_->driver->post([sm, prefix, limit, cb] { cb(sm->list(prefix, limit)); });
    return;
  }
  auto out = std::make_shared<ListResult>();
  impl_->driver->read_barrier(
      [out, prefix, limit](StateMachine& m) {
        *out = static_cast<KvMachine&>(m).list(prefix, limit);
        return std::string();
      },
      [out, cb](Result<std::string> r) {
        if (!r) return cb(std::unexpected(r.error()));
        cb(std::move(*out));
      });
}

void MetaService::watch(std::string prefix, uint64_t from, int64_t timeout_ms, Cb<WatchResult> cb) {
  timeout_ms = std::clamp<int64_t>(timeout_ms, 0, limits_.max_watch_timeout_ms);
  std::weak_ptr<Impl> weak = impl_;
  impl_->driver->post([weak, prefix = std::move(prefix), from, timeout_ms, cb = std::move(cb)]() mutable {
    auto self = weak.lock();
    if (!self) return;
    if (from == 0) from = self->sm->revision() + 1;  // only what happens from now on
    auto ev = self->sm->events(prefix, from, self->limits.max_watch_events);
    if (!ev) return cb(std::unexpected(ev.error()));
    if (!ev->empty() || timeout_ms == 0) return cb(WatchResult{std::move(*ev), self->sm->revision()});
    if (self->watchers.size() >= self->limits.max_watchers)
      return cb(make_error(Errc::kLimitExceeded, fmt::format("too many watches waiting on this node (limit {})", self->limits.max_watchers)));
    auto w = std::make_shared<Impl::Watcher>(Impl::Watcher{std::move(prefix), from, std::move(cb)});
    self->watchers.push_back(w);
    self->driver->after(timeout_ms, [weak, w] {
      auto s = weak.lock();
      if (!s || w->done) return;
      w->done = true;
      w->cb(WatchResult{{}, s->sm->revision()});
    });
  });
}

DriverStatus MetaService::status() { return impl_->driver ? impl_->driver->status() : DriverStatus{}; }

}  // namespace keel::cluster

#include "services/cache/service.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "base/slots.h"
#include "runtime/cluster/meta_await.h"
#include "runtime/cluster/meta_service.h"
#include "runtime/shards.h"
#include "services/cache/keyspace.h"
#include "observe/log.h"

namespace {
// This file's log lines (observe/log.h).
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kCache); }
}  // namespace

namespace keel::cache {

namespace asio = boost::asio;

Error no_such_cache(std::string_view name) {
  return Error{Errc::kNotFound, no_such_cache_message(name)};
}

namespace {

constexpr size_t kMaxCaches = 10000;
constexpr int64_t kWatchTimeoutMs = 30000;

Error no_meta() {
  return Error{
      Errc::kUnavailable,
      "caches keep their definitions in cluster metadata, which is off on this node: start keel "
      "as a cluster member (--node-id 1 --peers 1@127.0.0.1:9380 makes a one-member cluster)"};
}

}  // namespace

struct Service::Impl : std::enable_shared_from_this<Impl> {
  runtime::ShardSet& shards;
  EngineKind node_engine;
  cluster::MetaService* meta = nullptr;
  std::atomic<bool> stopping{false};

  // Touched only on shard i's thread.
  struct PerShard {
    std::shared_ptr<const Catalog> catalog = std::make_shared<const Catalog>();
    uint64_t seq = 0;
  };
  std::vector<PerShard> per_shard;

  // The node's view of the definitions (control path only, under mu). Each name remembers the
  // revision of the last change applied, so a late or repeated event never undoes a newer one.
  struct Known {
    std::optional<Active> active;
    uint64_t rev = 0;
  };
  std::mutex mu;
  std::map<std::string, Known, std::less<>> known;
  uint64_t seq = 0;

  Impl(runtime::ShardSet& s, EngineKind e) : shards(s), node_engine(e), per_shard(s.size()) {}

  // True if the change is newer than what is known; `had_active` tells whether the name had a
  // definition before it.
  bool apply(const std::string& name, std::optional<Active> a, uint64_t rev,
             bool* had_active = nullptr) {
    std::lock_guard lock(mu);
    auto& k = known[name];
    if (rev < k.rev || (rev == k.rev && k.rev != 0)) return false;
    if (had_active) *had_active = k.active.has_value();
    k.active = std::move(a);
    k.rev = rev;
    return true;
  }

  std::pair<uint64_t, std::shared_ptr<const Catalog>> snapshot() {
    std::lock_guard lock(mu);
    auto cat = std::make_shared<Catalog>();
    for (auto& [n, k] : known)
      if (k.active) cat->emplace(n, *k.active);
    return {++seq, std::move(cat)};
  }

  void install(unsigned i, uint64_t s, const std::shared_ptr<const Catalog>& cat) {
    auto& ps = per_shard[i];
    if (s > ps.seq) {
      ps.seq = s;
      ps.catalog = cat;
    }
  }

  void post_publish() {
    auto [s, cat] = snapshot();
    auto self = shared_from_this();
    for (unsigned i = 0; i < shards.size(); ++i)
      asio::post(shards.shard(i).io, [self, i, s = s, cat = cat] { self->install(i, s, cat); });
  }

  Task<void> publish_and_wait() {
    auto [s, cat] = snapshot();
    for (unsigned i = 0; i < shards.size(); ++i) {
      auto work = [&] { install(i, s, cat); };
      co_await runtime::run_on(shards.shard(i), work);
    }
  }

  // Erases the entries of `name` (all generations, or all but `keep`) in one partition, on its
  // shard's thread. One partition at a time, so other work on the shard interleaves with a
  // large purge.
  uint64_t purge_one(uint32_t p, const std::string& name, std::optional<uint64_t> keep,
                     int64_t now) {
    auto& eng = *shards.shard(shards.owner(p)).engine;
    auto r = purge_partition(eng, p, name, keep, now);
    if (!r) {
      klog().warn("cache '{}': purging partition {} failed: {}", name, p, r.error().message);
      return 0;
    }
    if (*r) {
      if (auto st = eng.commit(); !st)
        klog().warn("cache '{}': commit after purge failed: {}", name, st.error().message);
    }
    return *r;
  }

  void post_purge(const std::string& name, std::optional<uint64_t> keep) {
    auto self = shared_from_this();
    for (uint32_t p = 0; p < shards.partitions(); ++p)
      asio::post(shards.shard(shards.owner(p)).io, [self, p, name, keep] {
        if (!self->stopping) self->purge_one(p, name, keep, SystemClock::instance().now_ms());
      });
  }

  Task<uint64_t> purge_all(const std::string& name, std::optional<uint64_t> keep, int64_t now) {
    uint64_t total = 0;
    for (uint32_t p = 0; p < shards.partitions(); ++p) {
      auto work = [&] { total += purge_one(p, name, keep, now); };
      co_await runtime::run_on(shards.shard(shards.owner(p)), work);
    }
    co_return total;
  }

  // After (re)listing the definitions: erases, partition by partition, the entries of caches
  // that no longer exist or of their old generations (left by a drop or clear this node missed
  // while it was down, or by a purge a crash interrupted). Runs after the catalog it checks
  // against was posted to the shard, so it sees that catalog.
  void post_collect_garbage() {
    auto self = shared_from_this();
    for (uint32_t p = 0; p < shards.partitions(); ++p) {
      unsigned sid = shards.owner(p);
      asio::post(shards.shard(sid).io, [self, p, sid] {
        if (self->stopping) return;
        auto& eng = *self->shards.shard(sid).engine;
        auto r =
            purge_stale(eng, p, *self->per_shard[sid].catalog, SystemClock::instance().now_ms());
        if (!r)
          klog().warn("caches: collecting stale entries in partition {} failed: {}", p,
                       r.error().message);
        else if (*r && !eng.commit())
          klog().warn("caches: commit after collecting stale entries failed");
      });
    }
  }

  // The live entries of `a`'s generation on this node.
  Task<Usage> usage(const Active& a, int64_t now) {
    Usage total;
    for (unsigned i = 0; i < shards.size(); ++i) {
      auto work = [&] {
        auto& eng = *shards.shard(i).engine;
        for (uint32_t p = 0; p < shards.partitions(); ++p) {
          if (shards.owner(p) != i) continue;
          auto u = usage_in_partition(eng, p, a, now);
          total.entries += u.entries;
          total.bytes += u.bytes;
        }
      };
      co_await runtime::run_on(shards.shard(i), work);
    }
    co_return total;
  }

  // ---- following metadata ----

  void observe_put(const cluster::KeyValue& kv) {
    auto d = from_json_text(kv.key, kv.value);
    if (!d) {
      klog().warn("cache '{}': the definition in metadata is not valid ({}); ignored", kv.key,
                   d.error().message);
      return;
    }
    // A new generation of a cache this node knew (a clear, or a drop and create it saw only the
    // end of) leaves old entries to erase; a first definition has none (leftovers of an
    // incarnation this node never saw go in the garbage pass after a listing).
    bool had = false;
    if (apply(kv.key, Active{*d, kv.mod_revision}, kv.mod_revision, &had) && had)
      post_purge(kv.key, kv.mod_revision);
  }

  void observe_delete(const std::string& name, uint64_t rev) {
    if (apply(name, std::nullopt, rev)) post_purge(name, std::nullopt);
  }

  void relist() {
    if (stopping || !meta) return;
    auto self = shared_from_this();
    meta->list(kMetaDomain, "", kMaxCaches, false, [self](Result<cluster::ListResult> r) {
      if (self->stopping) return;
      if (!r) {
        klog().debug("caches: listing definitions failed ({}); retrying", r.error().message);
        self->retry_later();
        return;
      }
      std::set<std::string> present;
      for (auto& kv : r->items) {
        present.insert(kv.key);
        self->observe_put(kv);
      }
      std::vector<std::string> gone;
      {
        std::lock_guard lock(self->mu);
        for (auto& [n, k] : self->known)
          if (k.active && !present.count(n) && k.rev <= r->revision) gone.push_back(n);
      }
      for (auto& n : gone) self->observe_delete(n, r->revision);
      self->post_publish();
      self->post_collect_garbage();
      self->watch_from(r->revision + 1);
    });
  }

  void watch_from(uint64_t from) {
    if (stopping) return;
    auto self = shared_from_this();
    meta->watch(
        kMetaDomain, "", from, kWatchTimeoutMs, [self, from](Result<cluster::WatchResult> r) {
          if (self->stopping) return;
          if (!r) {  // compacted history, no quorum, shutting down: list again after a pause
            klog().debug("caches: watching definitions failed ({}); listing again",
                          r.error().message);
            self->retry_later();
            return;
          }
          for (auto& ev : r->events) {
            if (ev.deleted)
              self->observe_delete(ev.kv.key, ev.kv.mod_revision);
            else
              self->observe_put(ev.kv);
          }
          if (!r->events.empty()) self->post_publish();
          self->watch_from(std::max(from, r->revision + 1));
        });
  }

  void retry_later() {
    // The timer lives in its own handler (not in Impl), so shutting the shard's loop down
    // destroys it with the handler.
    auto self = shared_from_this();
    auto timer =
        std::make_shared<asio::steady_timer>(shards.shard(0).io, std::chrono::milliseconds(500));
    timer->async_wait([self, timer](boost::system::error_code ec) {
      if (!ec && !self->stopping) self->relist();
    });
  }

  // ---- metadata reads ----

  struct Loaded {
    Active active;
    uint64_t version = 0;
    std::string value;
  };

  Task<Result<Loaded>> load(const std::string& name) {
    if (auto st = check_name(name); !st) co_return std::unexpected(st.error());
    auto start = [&](auto cb) { meta->get(kMetaDomain, name, false, cb); };
    auto r = co_await cluster::meta_call<cluster::KeyValue>(start);
    if (!r) {
      if (r.error().code == Errc::kNotFound) co_return std::unexpected(no_such_cache(name));
      co_return std::unexpected(r.error());
    }
    auto d = from_json_text(name, r->value);
    if (!d)
      co_return std::unexpected(Error{
          Errc::kCorruption,
          fmt::format("cache '{}': stored definition is invalid: {}", name, d.error().message)});
    Loaded l{Active{*d, r->mod_revision}, r->version, r->value};
    if (apply(name, l.active, r->mod_revision)) co_await publish_and_wait();
    co_return l;
  }
};

Service::Service(runtime::ShardSet& shards, EngineKind node_engine)
    : impl_(std::make_shared<Impl>(shards, node_engine)) {}
Service::~Service() { stop(); }
void Service::set_meta(cluster::MetaService* meta) { impl_->meta = meta; }
void Service::start() {
  if (impl_->meta) impl_->relist();
}
void Service::stop() { impl_->stopping = true; }
const Catalog& Service::catalog(unsigned sid) const { return *impl_->per_shard[sid].catalog; }
EngineKind Service::node_engine() const { return impl_->node_engine; }

Task<Result<Active>> Service::create(Definition d) { return create(std::move(d), std::nullopt); }

Task<Result<Active>> Service::create(Definition d, std::optional<observe::TraceParent> trace) {
  auto& im = *impl_;
  if (!im.meta) co_return std::unexpected(no_meta());
  if (!d.engine) {
    d.engine = im.node_engine;
  } else if (*d.engine != im.node_engine) {
    co_return make_error(
        Errc::kInvalidArgument,
        fmt::format("engine '{}' is not available: this node keeps its data in the {} engine "
                    "(storage.engine); allowed: {} (or leave engine out)",
                    engine_name(*d.engine), engine_name(im.node_engine),
                    engine_name(im.node_engine)));
  }
  if (auto st = validate(d); !st) co_return std::unexpected(st.error());
  std::string value = to_json(d).dump();
  std::string name = d.name;
  auto start = [&](auto cb) { im.meta->put(kMetaDomain, name, value, uint64_t{0}, cb, trace); };
  auto r = co_await cluster::meta_call<cluster::WriteResult>(start);
  if (!r) {
    if (r.error().code != Errc::kConflict) co_return std::unexpected(r.error());
    auto existing = co_await im.load(name);
    if (!existing)
      co_return make_error(
          Errc::kConflict,
          fmt::format("cache '{}' changed while it was being created; try again", name));
    if (existing->active.def == d) co_return existing->active;  // the same definition: idempotent
    co_return make_error(
        Errc::kAlreadyExists,
        fmt::format("cache '{}' already exists with a different definition ({}); drop it first "
                    "(CACHE.DROP {}) or create it with the same definition",
                    name, existing->value, name));
  }
  Active a{d, r->revision};
  if (im.apply(name, a, r->revision)) co_await im.publish_and_wait();
  co_return a;
}

Task<Result<std::vector<Active>>> Service::list() {
  auto& im = *impl_;
  if (!im.meta) co_return std::unexpected(no_meta());
  auto start = [&](auto cb) { im.meta->list(kMetaDomain, "", kMaxCaches, false, cb); };
  auto r = co_await cluster::meta_call<cluster::ListResult>(start);
  if (!r) co_return std::unexpected(r.error());
  std::vector<Active> out;
  for (auto& kv : r->items) {
    auto d = from_json_text(kv.key, kv.value);
    if (d) out.push_back(Active{*d, kv.mod_revision});
  }
  co_return out;
}

Task<Result<Info>> Service::info(std::string name) {
  auto& im = *impl_;
  if (!im.meta) co_return std::unexpected(no_meta());
  auto l = co_await im.load(name);
  if (!l) co_return std::unexpected(l.error());
  Info info{l->active, 0, 0, im.shards.partitions()};
  auto u = co_await im.usage(l->active, SystemClock::instance().now_ms());
  info.entries = u.entries;
  info.bytes = u.bytes;
  co_return info;
}

Task<Result<uint64_t>> Service::drop(std::string name) {
  auto& im = *impl_;
  if (!im.meta) co_return std::unexpected(no_meta());
  auto l = co_await im.load(name);
  if (!l) co_return std::unexpected(l.error());
  // What the cache holds here when it goes (the purge itself may be shared with the watch,
  // which sees this change too).
  uint64_t held = (co_await im.usage(l->active, SystemClock::instance().now_ms())).entries;
  auto start = [&](auto cb) { im.meta->del(kMetaDomain, name, l->version, cb); };
  auto r = co_await cluster::meta_call<cluster::WriteResult>(start);
  if (!r) {
    if (r.error().code == Errc::kConflict || r.error().code == Errc::kNotFound)
      co_return make_error(
          Errc::kConflict,
          fmt::format("cache '{}' changed while it was being dropped; try again", name));
    co_return std::unexpected(r.error());
  }
  if (im.apply(name, std::nullopt, r->revision)) co_await im.publish_and_wait();
  co_await im.purge_all(name, std::nullopt, SystemClock::instance().now_ms());
  co_return held;
}

Task<Result<uint64_t>> Service::clear(std::string name) {
  auto& im = *impl_;
  if (!im.meta) co_return std::unexpected(no_meta());
  auto l = co_await im.load(name);
  if (!l) co_return std::unexpected(l.error());
  // Rewriting the definition gives it a new revision, so a new generation: every entry written
  // before is unreachable at once, then purged.
  uint64_t held = (co_await im.usage(l->active, SystemClock::instance().now_ms())).entries;
  auto start = [&](auto cb) { im.meta->put(kMetaDomain, name, l->value, l->version, cb); };
  auto r = co_await cluster::meta_call<cluster::WriteResult>(start);
  if (!r) {
    if (r.error().code == Errc::kConflict)
      co_return make_error(
          Errc::kConflict,
          fmt::format("cache '{}' changed while it was being cleared; try again", name));
    co_return std::unexpected(r.error());
  }
  if (im.apply(name, Active{l->active.def, r->revision}, r->revision))
    co_await im.publish_and_wait();
  co_await im.purge_all(name, r->revision, SystemClock::instance().now_ms());
  co_return held;
}

namespace {

// Runs `op(engine, partition, active-or-null)` on the key's shard; a cache this node does not
// know yet is loaded from metadata once. The default cache passes a null Active.
template <class R, class Op>
Task<Result<R>> on_entry(Service::Impl& im, Service& svc, const std::string& name,
                         const std::string& key, Op& op) {
  uint32_t part = key_partition(key, im.shards.partitions());
  unsigned sid = im.shards.owner(part);
  auto& sh = im.shards.shard(sid);
  bool is_default = name == kDefaultCache;
  if (!is_default) {
    if (auto st = check_name(name); !st) co_return std::unexpected(st.error());
    if (!im.meta) co_return std::unexpected(no_meta());
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::optional<Result<R>> out;
    auto work = [&] {
      const Active* a = nullptr;
      if (!is_default) {
        const auto& cat = svc.catalog(sid);
        auto it = cat.find(name);
        if (it == cat.end()) return;
        a = &it->second;
      }
      out.emplace(op(*sh.engine, part, a));
      if (auto st = sh.engine->commit(); !st && *out) out.emplace(std::unexpected(st.error()));
    };
    co_await runtime::run_on(sh, work);
    if (out) co_return std::move(*out);
    if (attempt == 0) {
      auto l = co_await im.load(name);  // installs it if it exists
      if (!l) co_return std::unexpected(l.error());
    }
  }
  co_return std::unexpected(no_such_cache(name));
}

}  // namespace

Task<bool> Service::learn(std::string name) {
  if (!impl_->meta || name == kDefaultCache) co_return false;
  auto l = co_await impl_->load(name);
  co_return l.has_value();
}

Task<Result<std::optional<Got>>> Service::get(std::string name, std::string key, int64_t now) {
  auto op = [&](storage::Engine& e, uint32_t part, const Active* a) -> Result<std::optional<Got>> {
    if (a) return cache::get(e, part, *a, key, now);
    auto v = e.get(part, key, now);
    if (!v) return std::optional<Got>{};
    if (v->type != storage::ValueType::kString)
      return make_error(
          Errc::kWrongType,
          fmt::format("key '{}' of the default cache holds a hash, not a string", key));
    return std::optional<Got>{Got{std::string(v->str), v->expire_at_ms}};
  };
  co_return co_await on_entry<std::optional<Got>>(*impl_, *this, name, key, op);
}

Task<Result<PutOutcome>> Service::put(std::string name, std::string key, std::string value,
                                      std::optional<int64_t> ttl_ms, int64_t now) {
  uint32_t parts = impl_->shards.partitions();
  auto op = [&](storage::Engine& e, uint32_t part, const Active* a) -> Result<PutOutcome> {
    if (a) return cache::put(e, part, parts, *a, key, value, ttl_ms, now);
    auto st = e.set_string(part, key, value, ttl_ms ? now + *ttl_ms : 0, now);
    if (!st) return std::unexpected(st.error());
    return PutOutcome{};
  };
  co_return co_await on_entry<PutOutcome>(*impl_, *this, name, key, op);
}

Task<Result<bool>> Service::remove(std::string name, std::string key, int64_t now) {
  auto op = [&](storage::Engine& e, uint32_t part, const Active* a) -> Result<bool> {
    if (a) return cache::remove(e, part, *a, key, now);
    return e.erase(part, key, now);
  };
  co_return co_await on_entry<bool>(*impl_, *this, name, key, op);
}

}  // namespace keel::cache

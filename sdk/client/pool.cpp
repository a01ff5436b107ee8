// Pool: idle connections (most recently used last), a count of leases, and a FIFO of waiters
// each parked on its own timer that expires at the waiter's deadline.
#include <algorithm>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>

#include "keel/client/async.h"

namespace keel::client {

using Clock = Pool::Clock;

struct Pool::Impl {
  Impl(asio::any_io_executor e, Endpoint endpoint, PoolOptions o)
      : ex(e), ep(std::move(endpoint)), opts(std::move(o)), maintenance(e) {}

  struct Idle {
    std::shared_ptr<Connection> conn;
    Clock::time_point since;
  };
  struct Waiter {
    explicit Waiter(asio::any_io_executor e) : timer(e) {}
    asio::steady_timer timer;
    std::shared_ptr<Connection> given;  // a connection handed over by a release
    bool retry = false;                  // capacity freed: try to open a connection
  };

  asio::any_io_executor ex;
  Endpoint ep;
  PoolOptions opts;
  std::deque<Idle> idle;
  std::deque<std::shared_ptr<Waiter>> waiters;
  size_t in_use = 0, connecting = 0;
  bool closed = false;
  PoolStats counters;
  asio::steady_timer maintenance;

  size_t open_count() const { return idle.size() + in_use + connecting; }

  // A connection slot was freed (a connection closed): let the oldest waiter open a new one.
  void wake_for_capacity() {
    if (waiters.empty()) return;
    auto w = waiters.front();
    waiters.pop_front();
    w->retry = true;
    w->timer.cancel();
  }
};

Pool::Pool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::shared_ptr<Pool> Pool::create(asio::any_io_executor ex, Endpoint ep, PoolOptions opts) {
  if (opts.max_size == 0) opts.max_size = 1;
  auto pool = std::make_shared<Pool>(std::make_unique<Impl>(ex, std::move(ep), std::move(opts)));
  if (pool->impl_->opts.maintenance_interval.count() > 0) {
    struct Tick {
      std::weak_ptr<Pool> weak;
      void operator()(boost::system::error_code ec) const {
        if (ec) return;
        auto p = weak.lock();
        if (!p || p->impl_->closed) return;
        p->evict_idle(Clock::now());
        p->impl_->maintenance.expires_after(p->impl_->opts.maintenance_interval);
        p->impl_->maintenance.async_wait(Tick{weak});
      }
    };
    pool->impl_->maintenance.expires_after(pool->impl_->opts.maintenance_interval);
    pool->impl_->maintenance.async_wait(Tick{pool});
  }
  return pool;
}

Pool::~Pool() {
  for (auto& i : impl_->idle) i.conn->close();
  impl_->maintenance.cancel();
}

asio::awaitable<Result<PooledConnection>> Pool::acquire() {
  co_return co_await acquire(Clock::now() + impl_->opts.acquire_timeout);
}

asio::awaitable<Result<PooledConnection>> Pool::acquire(Clock::time_point deadline) {
  auto self = shared_from_this();
  auto& s = *impl_;
  for (;;) {
    if (s.closed) co_return make_error(Errc::kClosed, "pool for " + s.ep.to_string() + " is closed");
    while (!s.idle.empty()) {
      auto item = std::move(s.idle.back());
      s.idle.pop_back();
      if (!item.conn->is_open()) {
        ++s.counters.discarded_broken;
        s.wake_for_capacity();
        continue;
      }
      if (Clock::now() - item.since >= s.opts.health_check_after) {
        ++s.in_use;  // reserved while the PING is in flight
        std::string_view ping[] = {"PING"};
        auto r = co_await item.conn->async_command(ping);
        --s.in_use;
        bool healthy = r && !r->is_error();
        if (!healthy || s.closed) {
          if (!healthy) ++s.counters.health_check_failures;
          item.conn->close();
          s.wake_for_capacity();
          continue;
        }
      }
      ++s.in_use;
      co_return PooledConnection(self, std::move(item.conn));
    }
    if (s.open_count() < s.opts.max_size) {
      ++s.connecting;
      auto ex = s.ex;
      auto ep = s.ep;
      auto copts = s.opts.connection;
      auto c = co_await Connection::connect(std::move(ex), std::move(ep), std::move(copts));
      --s.connecting;
      if (!c) {
        s.wake_for_capacity();
        co_return std::unexpected(c.error());
      }
      if (s.closed) {
        (*c)->close();
        continue;
      }
      ++s.counters.created;
      ++s.in_use;
      co_return PooledConnection(self, std::move(*c));
    }
    if (s.waiters.size() >= s.opts.max_waiters)
      co_return make_error(Errc::kUnavailable, "pool for " + s.ep.to_string() + " already has " +
                                                   std::to_string(s.opts.max_waiters) + " waiters (max_waiters)");
    auto w = std::make_shared<Impl::Waiter>(s.ex);
    w->timer.expires_at(deadline);
    s.waiters.push_back(w);
    boost::system::error_code ec;
    co_await w->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (w->given) co_return PooledConnection(self, std::move(w->given));  // in_use counted by giver
    if (w->retry) continue;
    std::erase(s.waiters, w);
    if (s.closed) continue;
    ++s.counters.acquire_timeouts;
    co_return make_error(Errc::kTimeout, "no connection to " + s.ep.to_string() + " became free before the deadline (max_size " +
                                             std::to_string(s.opts.max_size) + ", all in use)");
  }
}

void Pool::give_back(std::shared_ptr<Connection> conn, bool discard) {
  auto& s = *impl_;
  --s.in_use;
  bool broken = !conn->is_open() || conn->in_flight() > 0;
  if (s.closed || discard || broken) {
    if (broken) ++s.counters.discarded_broken;
    conn->close();
    s.wake_for_capacity();
    return;
  }
  if (!s.waiters.empty()) {
    auto w = s.waiters.front();
    s.waiters.pop_front();
    w->given = std::move(conn);
    ++s.in_use;
    w->timer.cancel();
    return;
  }
  s.idle.push_back({std::move(conn), Clock::now()});
}

size_t Pool::evict_idle(Clock::time_point now) {
  auto& s = *impl_;
  size_t n = 0;
  std::deque<Impl::Idle> keep;
  for (auto& i : s.idle) {
    if (now - i.since >= s.opts.idle_timeout || !i.conn->is_open()) {
      i.conn->close();
      ++n;
    } else {
      keep.push_back(std::move(i));
    }
  }
  s.idle.swap(keep);
  s.counters.evicted_idle += n;
  for (size_t i = 0; i < n; ++i) s.wake_for_capacity();
  return n;
}

void Pool::close() {
  auto& s = *impl_;
  s.closed = true;
  for (auto& i : s.idle) i.conn->close();
  s.idle.clear();
  s.maintenance.cancel();
  auto waiters = std::move(s.waiters);
  s.waiters.clear();
  for (auto& w : waiters) w->timer.cancel();
}

PoolStats Pool::stats() const {
  PoolStats st = impl_->counters;
  st.idle = impl_->idle.size();
  st.in_use = impl_->in_use;
  st.open = impl_->open_count();
  st.waiters = impl_->waiters.size();
  return st;
}
const Endpoint& Pool::endpoint() const { return impl_->ep; }
const PoolOptions& Pool::options() const { return impl_->opts; }
asio::any_io_executor Pool::get_executor() const { return impl_->ex; }

// ---- PooledConnection ------------------------------------------------------------------------

PooledConnection::PooledConnection(std::shared_ptr<Pool> pool, std::shared_ptr<Connection> conn)
    : pool_(std::move(pool)), conn_(std::move(conn)) {}
PooledConnection::~PooledConnection() { release(); }
PooledConnection::PooledConnection(PooledConnection&& o) noexcept
    : pool_(std::move(o.pool_)), conn_(std::move(o.conn_)), discard_(o.discard_) {}
PooledConnection& PooledConnection::operator=(PooledConnection&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = std::move(o.pool_);
    conn_ = std::move(o.conn_);
    discard_ = o.discard_;
  }
  return *this;
}

void PooledConnection::release() {
  if (!pool_ || !conn_) return;
  auto pool = std::move(pool_);
  auto conn = std::move(conn_);
  bool discard = discard_;
  pool_.reset();
  conn_.reset();
  auto ex = pool->get_executor();
  asio::dispatch(ex, [pool = std::move(pool), conn = std::move(conn), discard]() mutable {
    pool->give_back(std::move(conn), discard);
  });
}

}  // namespace keel::client

// One event loop per core ("shard"). A shard owns the partitions p with p % shards == id, the
// storage engine instance holding them, and the connections the kernel handed to its acceptor.
// Work for a partition owned by another shard hops there by message passing (run_on); nothing
// on the data path takes a mutex.
//
// This header includes Asio: include it only from .cpp files of the runtime and front ends.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <thread>
#include <vector>

#include "base/random.h"
#include "observe/stats.h"
#include "storage/engine.h"

namespace keel::runtime {

struct Shard {
  unsigned id = 0;
  boost::asio::io_context io{1};
  storage::Engine* engine = nullptr;
  SeededRandom random{0};
  observe::ShardStats stats;
};

class ShardSet {
 public:
  ShardSet(unsigned count, uint32_t partitions);
  ~ShardSet();
  ShardSet(const ShardSet&) = delete;
  ShardSet& operator=(const ShardSet&) = delete;

  unsigned size() const { return static_cast<unsigned>(shards_.size()); }
  Shard& shard(unsigned i) { return *shards_[i]; }
  uint32_t partitions() const { return partitions_; }
  unsigned owner(uint32_t partition) const { return partition % size(); }

  // Starts one thread per shard; returns at once.
  void start();
  // Asks every loop to stop and joins the threads.
  void stop_and_join();

  // The shard whose thread is calling, or -1 outside shard threads.
  static int current();

 private:
  uint32_t partitions_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::thread> threads_;
};

// co_await run_on(shard, f): runs f() on `shard`'s thread and resumes the calling coroutine on
// its own executor afterwards. `f` is held by reference: it lives in the suspended caller's
// frame until the completion is posted back. If the caller already runs on `shard`, f runs
// inline with no hop.
template <class F>
auto run_on(Shard& target, F& f) {
  return boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void()>(
      [&target, &f](auto handler) {
        if (ShardSet::current() == static_cast<int>(target.id)) {
          f();
          auto ex = boost::asio::get_associated_executor(handler);
          boost::asio::post(ex, std::move(handler));
          return;
        }
        boost::asio::post(target.io, [&f, h = std::move(handler)]() mutable {
          f();
          auto ex = boost::asio::get_associated_executor(h);
          boost::asio::post(ex, std::move(h));
        });
      },
      boost::asio::use_awaitable);
}

}  // namespace keel::runtime

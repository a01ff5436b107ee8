#include "runtime/shards.h"

#include <boost/asio/executor_work_guard.hpp>

#include "base/assert.h"

namespace keel::runtime {
namespace {
thread_local int t_current_shard = -1;
}

ShardSet::ShardSet(unsigned count, uint32_t partitions) : partitions_(partitions) {
  KEEL_ASSERT(count >= 1);
  for (unsigned i = 0; i < count; ++i) {
    auto s = std::make_unique<Shard>();
    s->id = i;
    s->random = SeededRandom(system_seed() ^ i);
    shards_.push_back(std::move(s));
  }
}

ShardSet::~ShardSet() { stop_and_join(); }

int ShardSet::current() { return t_current_shard; }

void ShardSet::start() {
  for (auto& s : shards_) {
    Shard* sp = s.get();
    threads_.emplace_back([sp] {
      t_current_shard = static_cast<int>(sp->id);
      auto guard = boost::asio::make_work_guard(sp->io);
      sp->io.run();
    });
  }
}

void ShardSet::stop_and_join() {
  for (auto& s : shards_) s->io.stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace keel::runtime

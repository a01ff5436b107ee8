// The background rewrap's pure core (no clock, no I/O): which partition range to rewrite next
// under the current at-rest key, and how many keys it may touch now, at a bounded rate.
//
// A driver (storage/rewrap_driver.h) feeds it the time and the results of each step:
//   start(target, partitions, resume, now) -> next(now) -> the driver rewrites at most
//   step.max_keys keys of step.partition from step.start_key -> finished(step, examined, next_key)
// Rate: a token bucket of `keys_per_s` tokens a second, holding at most `burst_keys`; each
// examined key costs one token. A step is offered only when at least one token is there.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace keel::storage {

class RewrapScheduler {
 public:
  struct Config {
    double keys_per_s = 1000;    // > 0
    uint64_t burst_keys = 1000;  // >= 1; also the largest step
  };
  explicit RewrapScheduler(Config c);

  // A pass to `target` over `partitions` (visited in the given order). `resume`: partitions a
  // persisted cursor says were left half done, and the key to continue from.
  void start(uint32_t target, std::vector<uint32_t> partitions, std::map<uint32_t, std::string> resume,
             int64_t now_ms);
  bool started() const { return started_; }
  uint32_t target() const { return target_; }
  bool done() const { return started_ && current_ == nullptr && queue_.empty(); }
  size_t partitions_pending() const { return queue_.size() + (current_ ? 1 : 0); }

  struct Step {
    uint32_t partition = 0;
    std::string start_key;  // inclusive; "" = the partition's first key
    uint64_t max_keys = 0;  // >= 1
  };
  // The next range to rewrap now, or nullopt: the pass is done, or no tokens are left until later.
  std::optional<Step> next(int64_t now_ms);
  // The driver rewrote the step: `examined` keys (tokens spent), and where the partition
  // continues (nullopt: it is done). Returns true when that finished the partition.
  bool finished(const Step& step, uint64_t examined, std::optional<std::string> next_key);
  // The current partition is no longer this driver's (moved to another shard): drop it.
  void skip_current();

 private:
  void refill(int64_t now_ms);

  Config cfg_;
  bool started_ = false;
  uint32_t target_ = 0;
  std::deque<uint32_t> queue_;
  std::map<uint32_t, std::string> resume_;
  struct Current {
    uint32_t partition;
    std::string next_key;
  };
  std::optional<Current> cur_;
  const Current* current_ = nullptr;  // &*cur_ while one is in progress
  double tokens_ = 0;
  int64_t last_ms_ = 0;
};

}  // namespace keel::storage

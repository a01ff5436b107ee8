#include "storage/rewrap_scheduler.h"

#include <algorithm>

#include "base/assert.h"

namespace keel::storage {

RewrapScheduler::RewrapScheduler(Config c) : cfg_(c) {
  KEEL_ASSERT_MSG(cfg_.keys_per_s > 0 && cfg_.burst_keys >= 1, "rewrap rate must be positive");
}

void RewrapScheduler::start(uint32_t target, std::vector<uint32_t> partitions, std::map<uint32_t, std::string> resume,
                            int64_t now_ms) {
  started_ = true;
  target_ = target;
  queue_.assign(partitions.begin(), partitions.end());
  resume_ = std::move(resume);
  cur_.reset();
  current_ = nullptr;
  tokens_ = 0;
  last_ms_ = now_ms;
}

void RewrapScheduler::refill(int64_t now_ms) {
  if (now_ms < last_ms_) {  // the clock went back: start counting again from here
    last_ms_ = now_ms;
    return;
  }
  tokens_ = std::min<double>(static_cast<double>(cfg_.burst_keys),
                             tokens_ + static_cast<double>(now_ms - last_ms_) * cfg_.keys_per_s / 1000.0);
  last_ms_ = now_ms;
}

std::optional<RewrapScheduler::Step> RewrapScheduler::next(int64_t now_ms) {
  if (!started_) return std::nullopt;
  refill(now_ms);
  if (!cur_) {
    if (queue_.empty()) return std::nullopt;
    const uint32_t p = queue_.front();
    queue_.pop_front();
    std::string from;
    if (auto it = resume_.find(p); it != resume_.end()) {
      from = std::move(it->second);
      resume_.erase(it);
    }
    cur_ = Current{p, std::move(from)};
    current_ = &*cur_;
  }
  if (tokens_ < 1) return std::nullopt;
  Step s;
  s.partition = cur_->partition;
  s.start_key = cur_->next_key;
  s.max_keys = std::max<uint64_t>(1, static_cast<uint64_t>(tokens_));
  return s;
}

bool RewrapScheduler::finished(const Step& step, uint64_t examined, std::optional<std::string> next_key) {
  KEEL_ASSERT_MSG(cur_ && cur_->partition == step.partition, "rewrap step finished for a partition not in progress");
  KEEL_ASSERT_MSG(examined <= step.max_keys, "rewrap step examined more keys than it was given");
  tokens_ = std::max(0.0, tokens_ - static_cast<double>(std::max<uint64_t>(examined, 1)));
  if (next_key) {
    cur_->next_key = std::move(*next_key);
    return false;
  }
  cur_.reset();
  current_ = nullptr;
  return true;
}

void RewrapScheduler::skip_current() {
  cur_.reset();
  current_ = nullptr;
}

}  // namespace keel::storage

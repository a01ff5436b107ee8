#include "storage/rewrap_driver.h"

#include <algorithm>
#include <cmath>

#include "observe/log.h"

namespace {
spdlog::logger& klog() { return keel::observe::logger(keel::observe::Component::kStorage); }
}  // namespace

namespace keel::storage {

RewrapDriver::RewrapDriver(std::shared_ptr<security::at_rest::Keyring> keyring, uint32_t partitions,
                           double keys_per_s, Hooks hooks)
    : keyring_(std::move(keyring)),
      partitions_(partitions),
      hooks_(std::move(hooks)),
      // A burst of a fifth of a second's keys: maintenance() ticks every ~100 ms.
      sched_({std::max(keys_per_s, 0.001), std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(keys_per_s / 5)))}),
      slot_(keyring_->register_rewrap_driver()) {}

void RewrapDriver::start_pass(int64_t now_ms) {
  const uint32_t target = keyring_->current_version();
  std::vector<uint32_t> pending;
  std::map<uint32_t, std::string> resume;
  for (uint32_t p = 0; p < partitions_; ++p) {
    if (!hooks_.owned(p)) continue;
    auto c = hooks_.load_cursor(p);
    if (c && c->target == target) {
      if (!c->next_key) continue;  // done for this version before a restart
      resume[p] = *c->next_key;
    }
    pending.push_back(p);
  }
  sched_.start(target, std::move(pending), std::move(resume), now_ms);
  keyring_->rewrap_started(slot_, target, sched_.partitions_pending());
}

void RewrapDriver::tick(int64_t now_ms) {
  if (!sched_.started() || sched_.target() != keyring_->current_version()) start_pass(now_ms);
  // Bounded per tick: the steps of one tick never exceed the bucket's burst.
  for (int i = 0; i < 64; ++i) {
    auto step = sched_.next(now_ms);
    if (!step) return;
    if (!hooks_.owned(step->partition)) {
      sched_.skip_current();
      keyring_->rewrap_partition_done(slot_);
      continue;
    }
    auto r = hooks_.rewrap(step->partition, step->start_key, step->max_keys, sched_.target());
    if (!r) {
      if (r.error().message != last_error_)
        klog().warn("at-rest rewrap of partition {} paused: {}; retried on the next tick", step->partition,
                    r.error().message);
      last_error_ = r.error().message;
      return;  // the disk refuses writes, or the like: the same step again later
    }
    last_error_.clear();
    keyring_->rewrap_keys(r->rewritten);
    if (r->unreadable) keyring_->rewrap_unreadable(r->unreadable);
    if (sched_.finished(*step, std::min<uint64_t>(r->examined, step->max_keys), std::move(r->next_key)))
      keyring_->rewrap_partition_done(slot_);
  }
}

}  // namespace keel::storage

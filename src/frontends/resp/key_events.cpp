#include "frontends/resp/key_events.h"

#include <algorithm>

#include "base/slots.h"

namespace keel::resp {

void KeyEvents::watch(std::string_view key, std::shared_ptr<WatchFlag> flag, bool existed) {
  auto& entries = watches_[std::string(key)];
  for (auto& e : entries)
    if (e.flag == flag) return;  // already watched by this transaction
  entries.push_back({std::move(flag), existed});
  update_interest();
}

void KeyEvents::unwatch(std::string_view key, const WatchFlag* flag) {
  auto it = watches_.find(std::string(key));
  if (it == watches_.end()) return;
  std::erase_if(it->second, [&](const WatchEntry& e) { return e.flag.get() == flag; });
  if (it->second.empty()) watches_.erase(it);
  update_interest();
}

void KeyEvents::block(std::string_view key, std::shared_ptr<BlockedClient> client) {
  blocked_[std::string(key)].push_back(std::move(client));
  update_interest();
}

void KeyEvents::unblock(std::string_view key, const BlockedClient* client) {
  auto it = blocked_.find(std::string(key));
  if (it == blocked_.end()) return;
  std::erase_if(it->second, [&](const auto& c) { return c.get() == client; });
  if (it->second.empty()) blocked_.erase(it);
  update_interest();
}

std::deque<std::shared_ptr<BlockedClient>>* KeyEvents::waiters(std::string_view key) {
  auto it = blocked_.find(std::string(key));
  if (it == blocked_.end()) return nullptr;
  // Clients served or timed out elsewhere leave their place here.
  while (!it->second.empty() && it->second.front()->claimed()) it->second.pop_front();
  if (it->second.empty()) {
    blocked_.erase(it);
    update_interest();
    return nullptr;
  }
  return &it->second;
}

void KeyEvents::mark_ready(std::string_view key) {
  std::string k(key);
  if (!blocked_.contains(k) || ready_set_.contains(k)) return;
  bool first = ready_.empty();
  ready_set_.insert(k);
  ready_.push_back(std::move(k));
  if (first && on_ready) on_ready();
}

std::optional<std::string> KeyEvents::next_ready() {
  if (ready_.empty()) return std::nullopt;
  std::string k = std::move(ready_.front());
  ready_.pop_front();
  ready_set_.erase(k);
  return k;
}

void KeyEvents::open_gate() {
  gate.held = false;
  while (!gate.held && !gate.waiting.empty()) {
    auto next = std::move(gate.waiting.front());
    gate.waiting.pop_front();
    next();
  }
}

void KeyEvents::key_changed(uint32_t, std::string_view key, bool expired) {
  if (!watches_.empty()) {
    if (auto it = watches_.find(std::string(key)); it != watches_.end())
      for (auto& e : it->second)
        if (!expired || e.existed) e.flag->dirty.store(true, std::memory_order_relaxed);
  }
  if (!blocked_.empty()) mark_ready(key);
}

void KeyEvents::clearing(storage::Engine& engine) {
  // Only the watched keys that FLUSHALL removes are changed. now = 0: a key still stored
  // counts even if its TTL passed — if it was live when watched, EXEC fails on its expiry
  // anyway; if it was already expired then, `existed` is false.
  for (auto& [key, entries] : watches_) {
    if (!engine.get(key_partition(key, partitions_), key, 0)) continue;
    for (auto& e : entries)
      if (e.existed) e.flag->dirty.store(true, std::memory_order_relaxed);
  }
  // A watched value that cannot be read (encryption at rest: a retired key) counts as absent
  // here; its error is not FLUSHALL's answer.
  (void)engine.take_read_error();
}

}  // namespace keel::resp

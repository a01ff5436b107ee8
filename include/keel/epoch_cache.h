// EpochCache<K, V>: a bounded local cache whose entries are invalidated at epoch boundaries.
//
// Every value is filled "at" an epoch (a partition epoch, a metadata version, a server's
// invalidation counter: any number that only grows). The cache keeps:
//   - entries: key -> (value, fill epoch), at most Options::max_entries, least recently used
//     evicted first;
//   - invalidation marks: key -> epoch of the newest invalidate() seen for it, at most
//     Options::max_marks, oldest mark dropped first;
//   - a floor: invalidate_all(epoch) raises it; dropping a mark raises it to that mark's epoch
//     (forgetting a mark must never let a stale fill in, so the cache forgets conservatively).
// Rules:
//   - put(k, v, e) is refused (kStale) when e < max(mark(k), floor): the value was read before
//     a change the cache already knows of. It is refused (kOlder) when the cache holds k filled
//     at a newer epoch. Otherwise it is stored (kStored).
//   - invalidate(keys, e) records the marks and drops entries of those keys filled before e.
//   - invalidate_all(e) raises the floor to e and drops every entry filled before e.
//   - is_fresh(k, e): the cache holds k, filled at epoch e or later, and nothing it knows of has
//     invalidated it since. get(k, e) returns the value under the same condition.
// Not thread-safe: the owner serialises calls. Header-only (a template).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>

namespace keel::sdk {

enum class EpochPut : uint8_t { kStored, kStale, kOlder };

template <class K, class V, class Hash = std::hash<K>, class Eq = std::equal_to<K>>
class EpochCache {
 public:
  struct Options {
    size_t max_entries = 10'000;  // >= 1
    size_t max_marks = 10'000;    // >= 1
  };
  struct Stats {
    uint64_t hits = 0, misses = 0, stored = 0, refused = 0, evicted = 0, invalidated = 0;
  };

  EpochCache() : EpochCache(Options{}) {}
  explicit EpochCache(Options options) : options_(options) {
    if (options_.max_entries == 0) options_.max_entries = 1;
    if (options_.max_marks == 0) options_.max_marks = 1;
  }

  EpochPut put(const K& key, V value, uint64_t epoch) {
    if (epoch < floor_ || epoch < mark_of(key)) {
      ++stats_.refused;
      return EpochPut::kStale;
    }
    if (auto it = entries_.find(key); it != entries_.end()) {
      Node& n = *it->second;
      if (epoch < n.epoch) {
        ++stats_.refused;
        return EpochPut::kOlder;
      }
      n.value = std::move(value);
      n.epoch = epoch;
      lru_.splice(lru_.begin(), lru_, it->second);
      ++stats_.stored;
      return EpochPut::kStored;
    }
    lru_.push_front(Node{key, std::move(value), epoch});
    entries_.emplace(key, lru_.begin());
    ++stats_.stored;
    while (entries_.size() > options_.max_entries) {
      entries_.erase(lru_.back().key);
      lru_.pop_back();
      ++stats_.evicted;
    }
    return EpochPut::kStored;
  }

  // The value if is_fresh(key, min_epoch); marks it most recently used.
  std::optional<V> get(const K& key, uint64_t min_epoch = 0) {
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second->epoch < min_epoch) {
      ++stats_.misses;
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.hits;
    return it->second->value;
  }

  bool is_fresh(const K& key, uint64_t epoch) const {
    auto it = entries_.find(key);
    return it != entries_.end() && it->second->epoch >= epoch;
  }

  void invalidate(std::span<const K> keys, uint64_t epoch) {
    for (const K& key : keys) {
      if (epoch <= floor_) continue;  // the floor already refuses everything this would
      record_mark(key, epoch);
      if (auto it = entries_.find(key); it != entries_.end() && it->second->epoch < epoch) {
        lru_.erase(it->second);
        entries_.erase(it);
        ++stats_.invalidated;
      }
    }
  }
  void invalidate(std::initializer_list<K> keys, uint64_t epoch) {
    invalidate(std::span<const K>(keys.begin(), keys.size()), epoch);
  }

  // An epoch boundary for every key: entries filled before `epoch` go, and so do marks it
  // makes redundant. O(size).
  void invalidate_all(uint64_t epoch) {
    if (epoch <= floor_) return;
    raise_floor(epoch);
  }

  bool erase(const K& key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return false;
    lru_.erase(it->second);
    entries_.erase(it);
    return true;
  }

  size_t size() const { return entries_.size(); }
  size_t marks() const { return marks_.size(); }
  uint64_t floor_epoch() const { return floor_; }
  const Stats& stats() const { return stats_; }
  const Options& options() const { return options_; }

  // Keys from most to least recently used (tests and diagnostics).
  template <class F>
  void for_each(F&& f) const {
    for (const Node& n : lru_) f(n.key, n.value, n.epoch);
  }

 private:
  struct Node {
    K key;
    V value;
    uint64_t epoch;
  };
  struct Mark {
    uint64_t epoch;
    typename std::list<K>::iterator order;
  };

  uint64_t mark_of(const K& key) const {
    auto it = marks_.find(key);
    return it == marks_.end() ? 0 : it->second.epoch;
  }

  // Keeps the newest mark per key; a renewed mark becomes the youngest.
  void record_mark(const K& key, uint64_t epoch) {
    auto [it, inserted] = marks_.try_emplace(key, Mark{epoch, {}});
    if (!inserted) {
      if (it->second.epoch >= epoch) return;
      mark_order_.erase(it->second.order);
      it->second.epoch = epoch;
    }
    mark_order_.push_back(key);
    it->second.order = std::prev(mark_order_.end());
    while (marks_.size() > options_.max_marks) forget_oldest_mark();
  }

  void forget_oldest_mark() {
    const K key = mark_order_.front();
    const uint64_t epoch = marks_.at(key).epoch;
    marks_.erase(key);
    mark_order_.pop_front();
    if (epoch > floor_) raise_floor(epoch);
  }

  void raise_floor(uint64_t epoch) {
    floor_ = epoch;
    for (auto it = lru_.begin(); it != lru_.end();) {
      if (it->epoch < floor_) {
        entries_.erase(it->key);
        it = lru_.erase(it);
        ++stats_.invalidated;
      } else {
        ++it;
      }
    }
    for (auto it = mark_order_.begin(); it != mark_order_.end();) {
      if (marks_.at(*it).epoch <= floor_) {
        marks_.erase(*it);
        it = mark_order_.erase(it);
      } else {
        ++it;
      }
    }
  }

  Options options_;
  std::list<Node> lru_;  // most recently used first
  std::unordered_map<K, typename std::list<Node>::iterator, Hash, Eq> entries_;
  std::list<K> mark_order_;  // oldest mark first
  std::unordered_map<K, Mark, Hash, Eq> marks_;
  uint64_t floor_ = 0;
  Stats stats_;
};

}  // namespace keel::sdk

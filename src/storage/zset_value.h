// The value of a sorted-set key: member -> score in a hash map, and (score, member) in an
// order-statistic B+ tree (storage/zset_tree.h), so ZRANK, ZRANGE by rank and ZCOUNT are
// O(log n). The tree points at the map's keys (unordered_map nodes never move), so a member's
// bytes are held once (separators of the tree's inner nodes keep copies of a few). The tree is
// allocated with the first member: an empty sorted set (and so every other key's Value, which
// carries one) allocates nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "storage/zset_tree.h"

namespace keel::storage {

class ZSetValue {
 public:
  // An element as the tree orders it. member == nullptr sorts after every member of its score
  // (a bound for "score > x" / "score <= x" queries).
  using Entry = ZSetEntry;
  using Tree = ZSetTree;
  using Dict = std::unordered_map<std::string, double>;

  ZSetValue() = default;
  ZSetValue(const ZSetValue& o) { copy_from(o); }
  ZSetValue& operator=(const ZSetValue& o) {
    if (this != &o) {
      clear();
      copy_from(o);
    }
    return *this;
  }
  ZSetValue(ZSetValue&& o) noexcept : dict_(std::move(o.dict_)), tree_(std::move(o.tree_)) { o.dict_.clear(); }
  ZSetValue& operator=(ZSetValue&& o) noexcept {
    if (this != &o) {
      dict_ = std::move(o.dict_);
      tree_ = std::move(o.tree_);
      o.dict_.clear();
    }
    return *this;
  }

  size_t size() const { return dict_.size(); }
  bool empty() const { return dict_.empty(); }
  const Dict& dict() const { return dict_; }
  const Tree& tree() const {
    static const Tree kEmpty;
    return tree_ ? *tree_ : kEmpty;
  }

  const double* score(std::string_view member) const {
    auto it = dict_.find(std::string(member));
    return it == dict_.end() ? nullptr : &it->second;
  }

  // Adds `member` or moves it to `score`. Returns true if it was added.
  bool set(std::string_view member, double score) {
    auto [it, added] = dict_.try_emplace(std::string(member), score);
    if (!tree_) tree_ = std::make_unique<Tree>();
    if (!added) {
      if (it->second == score) return false;
      tree_->erase(Entry{it->second, &it->first});
      it->second = score;
    }
    tree_->insert(Entry{score, &it->first});
    return added;
  }

  bool erase(std::string_view member) {
    auto it = dict_.find(std::string(member));
    if (it == dict_.end()) return false;
    tree_->erase(Entry{it->second, &it->first});
    dict_.erase(it);
    return true;
  }

  void clear() {
    tree_.reset();
    dict_.clear();
  }

  // 0-based rank of a member (ascending), or -1.
  long long rank(std::string_view member) const {
    auto it = dict_.find(std::string(member));
    if (it == dict_.end()) return -1;
    return static_cast<long long>(tree().order_of_key(Entry{it->second, &it->first}));
  }
  // The element at 0-based ascending rank r (r < size()).
  Tree::const_iterator at(size_t r) const { return tree().find_by_order(r); }
  // How many elements have a score below `score` (inclusive = false) or at most `score`.
  size_t count_below(double score, bool inclusive) const {
    static const std::string kLowest;
    return tree().order_of_key(Entry{score, inclusive ? nullptr : &kLowest});
  }
  // How many elements (all of score `score`) sort below `member` (inclusive: at most member).
  size_t count_below_member(double score, const std::string& member, bool inclusive) const {
    size_t n = tree().order_of_key(Entry{score, &member});
    if (inclusive && dict_.count(member) && dict_.at(member) == score) ++n;
    return n;
  }

  bool operator==(const ZSetValue& o) const { return dict_ == o.dict_; }

 private:
  void copy_from(const ZSetValue& o) {
    if (o.dict_.empty()) return;  // (reserve(0) would still allocate a bucket array)
    dict_.reserve(o.dict_.size());
    for (auto& [m, s] : o.dict_) set(m, s);
  }

  Dict dict_;
  std::unique_ptr<Tree> tree_;  // null while empty
};

}  // namespace keel::storage

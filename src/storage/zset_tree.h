// The ordered half of a sorted set: (score, member) entries in an order-statistic B+ tree.
//
// Entries live in leaves of up to B entries, linked both ways for iteration; inner nodes hold up
// to B children with the number of entries under each, so rank -> entry (find_by_order) and
// entry -> rank (order_of_key) are O(log_B n) with a handful of cache misses, where a binary
// tree of a million entries takes about twenty. Each child but the first has a separator: a
// copy of the smallest (score, member) it held when it was split off, a lower bound for
// everything under it. Separators own their member bytes, so they stay valid when the entry
// they were copied from is erased (an entry's member points into the sorted set's hash map).
//
// Erasing frees a node that becomes empty, lets a leaf down to a quarter join a neighbouring leaf
// of the same parent when both fit in three quarters of one (so leaves stay about a quarter full
// or more whatever is erased), and lets a root with one child give way to it. Inner nodes are
// not merged: the height stays that of the largest size the tree reached. Not thread-safe; no
// allocation while empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace keel::storage {

// An element as the tree orders it: by score, then by member bytes. member == nullptr sorts
// after every member of its score (a bound for "score > x" / "score <= x" queries).
struct ZSetEntry {
  double score;
  const std::string* member;
};

namespace zset_detail {
// <0, 0, >0 as (s1, m1) sorts before, equal to, after (s2, m2); a null member is the highest
// of its score. Equal member pointers are equal entries (a member is held once).
inline int compare(double s1, const std::string* m1, double s2, const std::string* m2) {
  if (s1 != s2) return s1 < s2 ? -1 : 1;
  if (m1 == m2) return 0;
  if (!m1) return 1;
  if (!m2) return -1;
  return m1->compare(*m2);
}
}  // namespace zset_detail

template <size_t B = 64>
class BasicZSetTree {
  static_assert(B >= 4, "a node must hold at least 4 entries or children");
  struct Node {
    bool leaf;
    uint32_t n = 0;  // entries (leaf) or children (inner)
    explicit Node(bool is_leaf) : leaf(is_leaf) {}
  };
  struct Leaf : Node {
    Leaf() : Node(true) {}
    Leaf* prev = nullptr;
    Leaf* next = nullptr;
    ZSetEntry items[B];
  };
  struct Inner : Node {
    Inner() : Node(false) {}
    size_t total = 0;               // entries under this node
    std::pair<double, std::string> sep[B];  // sep[i]: lower bound of child i (sep[0] unused)
    size_t count[B];                // entries under child i
    Node* child[B];
  };

 public:
  class const_iterator {
   public:
    const_iterator() = default;
    const ZSetEntry& operator*() const { return leaf_->items[i_]; }
    const ZSetEntry* operator->() const { return &leaf_->items[i_]; }
    const_iterator& operator++() {
      if (++i_ == leaf_->n) {
        leaf_ = leaf_->next;
        i_ = 0;
      }
      return *this;
    }
    // Only from an element (not from end()).
    const_iterator& operator--() {
      if (i_ == 0) {
        leaf_ = leaf_->prev;
        i_ = leaf_->n;
      }
      --i_;
      return *this;
    }
    bool operator==(const const_iterator& o) const { return leaf_ == o.leaf_ && i_ == o.i_; }
    bool operator!=(const const_iterator& o) const { return !(*this == o); }

   private:
    friend class BasicZSetTree;
    const_iterator(const Leaf* l, uint32_t i) : leaf_(l), i_(i) {}
    const Leaf* leaf_ = nullptr;
    uint32_t i_ = 0;
  };

  BasicZSetTree() = default;
  BasicZSetTree(const BasicZSetTree&) = delete;
  BasicZSetTree& operator=(const BasicZSetTree&) = delete;
  BasicZSetTree(BasicZSetTree&& o) noexcept { swap(o); }
  BasicZSetTree& operator=(BasicZSetTree&& o) noexcept {
    if (this != &o) {
      clear();
      swap(o);
    }
    return *this;
  }
  ~BasicZSetTree() { clear(); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Leaves in use (tests and diagnostics: occupancy is size() / leaves()).
  size_t leaves() const {
    size_t n = 0;
    for (const Leaf* l = head_; l; l = l->next) ++n;
    return n;
  }
  const_iterator begin() const { return size_ ? const_iterator(head_, 0) : end(); }
  const_iterator end() const { return const_iterator(); }

  void clear() {
    if (root_) free_node(root_);
    root_ = nullptr;
    head_ = nullptr;
    size_ = 0;
  }

  // Inserts e (not present: the caller keeps members unique).
  void insert(const ZSetEntry& e) {
    if (!root_) {
      auto* l = new Leaf();
      root_ = head_ = l;
    }
    Node* right = nullptr;
    std::pair<double, std::string> sep;
    size_t right_count = 0;
    if (insert_rec(root_, e, right, sep, right_count)) {
      auto* r = new Inner();
      r->n = 2;
      r->child[0] = root_;
      r->child[1] = right;
      r->sep[1] = std::move(sep);
      r->count[1] = right_count;
      r->count[0] = size_ + 1 - right_count;
      r->total = size_ + 1;
      root_ = r;
    }
    ++size_;
  }

  // Erases the entry equal to e; returns whether there was one.
  bool erase(const ZSetEntry& e) {
    if (!root_ || !erase_rec(root_, e)) return false;
    --size_;
    while (!root_->leaf && root_->n == 1) {  // a root with one child gives way to it
      auto* in = static_cast<Inner*>(root_);
      root_ = in->child[0];
      in->n = 0;
      delete in;
    }
    if (size_ == 0) clear();
    return true;
  }

  // The entry at 0-based rank r (r < size()).
  const_iterator find_by_order(size_t r) const {
    const Node* n = root_;
    while (!n->leaf) {
      auto* in = static_cast<const Inner*>(n);
      uint32_t i = 0;
      while (i + 1 < in->n && r >= in->count[i]) r -= in->count[i++];
      n = in->child[i];
    }
    return const_iterator(static_cast<const Leaf*>(n), static_cast<uint32_t>(r));
  }

  // How many entries sort before e.
  size_t order_of_key(const ZSetEntry& e) const {
    if (!root_) return 0;
    size_t below = 0;
    const Node* n = root_;
    while (!n->leaf) {
      auto* in = static_cast<const Inner*>(n);
      uint32_t i = pick(in, e);
      for (uint32_t j = 0; j < i; ++j) below += in->count[j];
      n = in->child[i];
    }
    auto* l = static_cast<const Leaf*>(n);
    return below + lower_bound(l, e);
  }

 private:
  static int cmp(const ZSetEntry& a, const ZSetEntry& b) {
    return zset_detail::compare(a.score, a.member, b.score, b.member);
  }
  static int cmp(const ZSetEntry& a, const std::pair<double, std::string>& s) {
    return zset_detail::compare(a.score, a.member, s.first, &s.second);
  }
  // The child of `in` whose range holds e: the last with a separator <= e (child 0 otherwise).
  static uint32_t pick(const Inner* in, const ZSetEntry& e) {
    uint32_t lo = 1, hi = in->n;  // first separator > e in [1, n)
    while (lo < hi) {
      uint32_t mid = (lo + hi) / 2;
      if (cmp(e, in->sep[mid]) < 0) hi = mid;
      else lo = mid + 1;
    }
    return lo - 1;
  }
  static uint32_t lower_bound(const Leaf* l, const ZSetEntry& e) {
    uint32_t lo = 0, hi = l->n;
    while (lo < hi) {
      uint32_t mid = (lo + hi) / 2;
      if (cmp(l->items[mid], e) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // Inserts under n; if n had to split, returns true with its new right sibling, that
  // sibling's separator and its entry count.
  bool insert_rec(Node* n, const ZSetEntry& e, Node*& right, std::pair<double, std::string>& sep,
                  size_t& right_count) {
    if (n->leaf) {
      auto* l = static_cast<Leaf*>(n);
      uint32_t pos = lower_bound(l, e);
      if (l->n < B) {
        insert_at(l, pos, e);
        return false;
      }
      auto* r = new Leaf();
      const uint32_t half = B / 2;
      for (uint32_t i = half; i < B; ++i) r->items[i - half] = l->items[i];
      r->n = B - half;
      l->n = half;
      r->next = l->next;
      if (r->next) r->next->prev = r;
      r->prev = l;
      l->next = r;
      if (pos <= half) insert_at(l, pos, e);
      else insert_at(r, pos - half, e);
      sep = {r->items[0].score, *r->items[0].member};
      right = r;
      right_count = r->n;
      return true;
    }
    auto* in = static_cast<Inner*>(n);
    uint32_t i = pick(in, e);
    Node* cr = nullptr;
    std::pair<double, std::string> cs;
    size_t cc = 0;
    ++in->total;
    if (!insert_rec(in->child[i], e, cr, cs, cc)) {
      ++in->count[i];
      return false;
    }
    in->count[i] = in->count[i] + 1 - cc;  // child i kept the rest
    // Child cr goes in at i + 1.
    if (in->n < B) {
      insert_child(in, i + 1, cr, std::move(cs), cc);
      return false;
    }
    // Full: the second half of the children moves to a new right sibling, and the new child
    // goes into the half that covers it.
    auto* r = new Inner();
    const uint32_t half = B / 2;
    for (uint32_t j = half; j < B; ++j) {
      r->child[j - half] = in->child[j];
      r->count[j - half] = in->count[j];
      r->sep[j - half] = std::move(in->sep[j]);
    }
    r->n = B - half;
    in->n = half;
    if (i + 1 <= half) insert_child(in, i + 1, cr, std::move(cs), cc);
    else insert_child(r, i + 1 - half, cr, std::move(cs), cc);
    fix_totals(in);
    fix_totals(r);
    sep = std::move(r->sep[0]);
    right = r;
    right_count = r->total;
    return true;
  }

  static void fix_totals(Inner* in) {
    size_t t = 0;
    for (uint32_t j = 0; j < in->n; ++j) t += in->count[j];
    in->total = t;
  }

  static void insert_at(Leaf* l, uint32_t pos, const ZSetEntry& e) {
    for (uint32_t j = l->n; j > pos; --j) l->items[j] = l->items[j - 1];
    l->items[pos] = e;
    ++l->n;
  }
  static void insert_child(Inner* in, uint32_t pos, Node* c, std::pair<double, std::string> s, size_t count) {
    for (uint32_t j = in->n; j > pos; --j) {
      in->child[j] = in->child[j - 1];
      in->count[j] = in->count[j - 1];
      in->sep[j] = std::move(in->sep[j - 1]);
    }
    in->child[pos] = c;
    in->count[pos] = count;
    in->sep[pos] = std::move(s);
    ++in->n;
  }

  bool erase_rec(Node* n, const ZSetEntry& e) {
    if (n->leaf) {
      auto* l = static_cast<Leaf*>(n);
      uint32_t pos = lower_bound(l, e);
      if (pos == l->n || cmp(l->items[pos], e) != 0) return false;
      for (uint32_t j = pos; j + 1 < l->n; ++j) l->items[j] = l->items[j + 1];
      --l->n;
      return true;
    }
    auto* in = static_cast<Inner*>(n);
    uint32_t i = pick(in, e);
    if (!erase_rec(in->child[i], e)) return false;
    --in->total;
    if (--in->count[i] == 0) {  // the child is empty: it goes
      Node* c = in->child[i];
      if (c->leaf) {
        auto* l = static_cast<Leaf*>(c);
        if (l->prev) l->prev->next = l->next;
        if (l->next) l->next->prev = l->prev;
        if (head_ == l) head_ = l->next;
        delete l;
      } else {
        free_node(c);
      }
      remove_slot(in, i);
    } else if (in->child[i]->leaf && static_cast<Leaf*>(in->child[i])->n <= B / 4) {
      // A leaf down to a quarter joins a sibling of the same parent if the two fit in three
      // quarters of a leaf (room to grow before the next split): random erasures cannot thin
      // the leaves to an entry or two each.
      auto fits = [&](uint32_t a) {
        return in->child[a]->leaf && in->count[a] + in->count[a + 1] <= 3 * B / 4;
      };
      if (i + 1 < in->n && fits(i)) merge_leaves(in, i);
      else if (i > 0 && fits(i - 1)) merge_leaves(in, i - 1);
    }
    return true;
  }

  static void remove_slot(Inner* in, uint32_t i) {
    for (uint32_t j = i; j + 1 < in->n; ++j) {
      in->child[j] = in->child[j + 1];
      in->count[j] = in->count[j + 1];
      in->sep[j] = std::move(in->sep[j + 1]);
    }
    --in->n;
  }

  // Moves leaf child j + 1's entries to the end of leaf child j and drops j + 1 (its entries
  // all sort after child j's: child j's separator still bounds them from below).
  static void merge_leaves(Inner* in, uint32_t j) {
    auto* l = static_cast<Leaf*>(in->child[j]);
    auto* r = static_cast<Leaf*>(in->child[j + 1]);
    for (uint32_t k = 0; k < r->n; ++k) l->items[l->n + k] = r->items[k];
    l->n += r->n;
    l->next = r->next;
    if (l->next) l->next->prev = l;
    in->count[j] += in->count[j + 1];
    delete r;
    remove_slot(in, j + 1);
  }

  void free_node(Node* n) {
    if (n->leaf) {
      delete static_cast<Leaf*>(n);
      return;
    }
    auto* in = static_cast<Inner*>(n);
    for (uint32_t j = 0; j < in->n; ++j) free_node(in->child[j]);
    delete in;
  }

  void swap(BasicZSetTree& o) noexcept {
    std::swap(root_, o.root_);
    std::swap(head_, o.head_);
    std::swap(size_, o.size_);
  }

  Node* root_ = nullptr;
  Leaf* head_ = nullptr;
  size_t size_ = 0;
};

using ZSetTree = BasicZSetTree<>;

}  // namespace keel::storage

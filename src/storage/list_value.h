// The value of a list key: a ring buffer of strings. O(1) push and pop at both ends and O(1)
// access by index (LINDEX, LRANGE, LSET); an insert or erase in the middle moves the shorter
// side. A default-constructed list allocates nothing.
//
// A list also carries its change number (version()): the number of changes made to it since it
// was created, set by the command layer and stored and replicated with the elements. A list
// change described element by element (storage/delta.h) is guarded by the number it leaves, so
// replaying it over a list that already has it is a no-op: what makes a push or a pop safe to
// replicate as a patch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace keel::storage {

class ListValue {
 public:
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  size_t capacity() const { return buf_.size(); }
  uint64_t version() const { return version_; }
  void set_version(uint64_t v) { version_ = v; }

  std::string& operator[](size_t i) { return buf_[(head_ + i) & (buf_.size() - 1)]; }
  const std::string& operator[](size_t i) const { return buf_[(head_ + i) & (buf_.size() - 1)]; }
  std::string& front() { return (*this)[0]; }
  std::string& back() { return (*this)[n_ - 1]; }

  void push_back(std::string s) {
    if (n_ == buf_.size()) grow();
    (*this)[n_] = std::move(s);
    ++n_;
  }
  void push_front(std::string s) {
    if (n_ == buf_.size()) grow();
    head_ = (head_ + buf_.size() - 1) & (buf_.size() - 1);
    buf_[head_] = std::move(s);
    ++n_;
  }
  std::string pop_front() {
    std::string out = std::move(buf_[head_]);
    buf_[head_] = std::string();
    head_ = (head_ + 1) & (buf_.size() - 1);
    --n_;
    maybe_shrink();
    return out;
  }
  std::string pop_back() {
    std::string& slot = (*this)[n_ - 1];
    std::string out = std::move(slot);
    slot = std::string();
    --n_;
    maybe_shrink();
    return out;
  }
  // Inserts `s` so that it becomes element `i` (0 <= i <= size()).
  void insert(size_t i, std::string s) {
    if (i < n_ / 2) {
      push_front(std::move(s));
      for (size_t j = 0; j < i; ++j) std::swap((*this)[j], (*this)[j + 1]);
    } else {
      push_back(std::move(s));
      for (size_t j = n_ - 1; j > i; --j) std::swap((*this)[j], (*this)[j - 1]);
    }
  }
  // Removes element `i` (0 <= i < size()).
  void erase(size_t i) {
    if (i < n_ / 2) {
      for (size_t j = i; j > 0; --j) std::swap((*this)[j], (*this)[j - 1]);
      pop_front();
    } else {
      for (size_t j = i; j + 1 < n_; ++j) std::swap((*this)[j], (*this)[j + 1]);
      pop_back();
    }
  }
  // Removes every element (the change number stays: see version()).
  void clear() {
    buf_.clear();
    buf_.shrink_to_fit();
    head_ = n_ = 0;
  }
  void reserve(size_t n) {
    if (n > buf_.size()) rebuild(n);
  }

  // The elements only (not the change number).
  bool operator==(const ListValue& o) const {
    if (n_ != o.n_) return false;
    for (size_t i = 0; i < n_; ++i)
      if ((*this)[i] != o[i]) return false;
    return true;
  }

 private:
  // Moves the elements, in order, into a buffer of at least `want` slots (a power of two).
  void rebuild(size_t want) {
    size_t cap = 4;
    while (cap < want) cap *= 2;
    std::vector<std::string> nb(cap);
    for (size_t i = 0; i < n_; ++i) nb[i] = std::move((*this)[i]);
    buf_.swap(nb);
    head_ = 0;
  }
  void grow() { rebuild(buf_.empty() ? 4 : buf_.size() * 2); }
  void maybe_shrink() {
    if (n_ == 0) {
      clear();
    } else if (buf_.size() > 64 && n_ < buf_.size() / 4) {
      rebuild(buf_.size() / 2);
    }
  }

  std::vector<std::string> buf_;  // size is 0 or a power of two
  size_t head_ = 0;
  size_t n_ = 0;
  uint64_t version_ = 0;
};

}  // namespace keel::storage

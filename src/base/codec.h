// A small binary codec for keel's own formats (peer frames, stored values, log records):
// LEB128 varints, fixed-width big-endian integers, length-prefixed bytes. The reader is
// bounded: it never reads past its input and reports truncation as an error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace keel {

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32be(uint32_t v);
  void u64be(uint64_t v);
  void varint(uint64_t v);
  void svarint(int64_t v) { varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void bytes(std::string_view b) {  // length-prefixed
    varint(b.size());
    out_.append(b);
  }
  void raw(std::string_view b) { out_.append(b); }

 private:
  std::string& out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  Result<uint8_t> u8();
  Result<uint32_t> u32be();
  Result<uint64_t> u64be();
  Result<uint64_t> varint();
  Result<int64_t> svarint();
  // A length-prefixed byte string of at most max_len bytes; the view points into the input.
  Result<std::string_view> bytes(size_t max_len = SIZE_MAX);
  Result<std::string_view> raw(size_t n);
  size_t remaining() const { return in_.size() - pos_; }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace keel

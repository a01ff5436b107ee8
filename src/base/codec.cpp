#include "base/codec.h"

#include <fmt/format.h>

namespace keel {

void Writer::u32be(uint32_t v) {
  for (int i = 3; i >= 0; --i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void Writer::u64be(uint64_t v) {
  for (int i = 7; i >= 0; --i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void Writer::varint(uint64_t v) {
  while (v >= 0x80) {
    out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out_.push_back(static_cast<char>(v));
}

static std::unexpected<Error> truncated(size_t want, size_t have) {
  return make_error(Errc::kCorruption,
                    fmt::format("truncated input: needed {} more bytes, {} left", want, have));
}

Result<uint8_t> Reader::u8() {
  if (remaining() < 1) return truncated(1, remaining());
  return static_cast<uint8_t>(in_[pos_++]);
}
Result<uint32_t> Reader::u32be() {
  if (remaining() < 4) return truncated(4, remaining());
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in_[pos_++]);
  return v;
}
Result<uint64_t> Reader::u64be() {
  if (remaining() < 8) return truncated(8, remaining());
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in_[pos_++]);
  return v;
}
Result<uint64_t> Reader::varint() {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (remaining() < 1) return truncated(1, 0);
    uint8_t b = static_cast<uint8_t>(in_[pos_++]);
    if (shift == 63 && b > 1) return make_error(Errc::kCorruption, "varint overflows 64 bits");
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  return make_error(Errc::kCorruption, "varint longer than 10 bytes");
}
Result<int64_t> Reader::svarint() {
  auto u = varint();
  if (!u) return std::unexpected(u.error());
  return static_cast<int64_t>((*u >> 1) ^ (~(*u & 1) + 1));
}
Result<std::string_view> Reader::bytes(size_t max_len) {
  auto n = varint();
  if (!n) return std::unexpected(n.error());
  if (*n > max_len)
    return make_error(Errc::kLimitExceeded,
                      fmt::format("length {} exceeds the limit of {} bytes", *n, max_len));
  return raw(static_cast<size_t>(*n));
}
Result<std::string_view> Reader::raw(size_t n) {
  if (remaining() < n) return truncated(n, remaining());
  auto v = in_.substr(pos_, n);
  pos_ += n;
  return v;
}

}  // namespace keel

#include "base/codec.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace keel {

RC_GTEST_PROP(Codec, RoundTrip, (uint64_t a, int64_t b, uint32_t c, std::string s)) {
  std::string buf;
  Writer w(buf);
  w.varint(a);
  w.svarint(b);
  w.u32be(c);
  w.bytes(s);
  w.u64be(a);
  Reader r(buf);
  RC_ASSERT(*r.varint() == a);
  RC_ASSERT(*r.svarint() == b);
  RC_ASSERT(*r.u32be() == c);
  RC_ASSERT(std::string(*r.bytes()) == s);
  RC_ASSERT(*r.u64be() == a);
  RC_ASSERT(r.done());
}

RC_GTEST_PROP(Codec, TruncatedInputIsAnErrorNeverACrash, (std::string junk)) {
  Reader r(junk);
  // Whatever the bytes, every call either succeeds within bounds or returns an error.
  for (int i = 0; i < 8; ++i) {
    auto b = r.bytes(1 << 20);
    if (!b) {
      RC_ASSERT(b.error().code == Errc::kCorruption || b.error().code == Errc::kLimitExceeded);
      break;
    }
  }
}

TEST(Codec, RejectsOverlongVarint) {
  std::string eleven(11, '\xff');
  Reader r(eleven);
  auto v = r.varint();
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Errc::kCorruption);
}

TEST(Codec, BytesLimit) {
  std::string buf;
  Writer(buf).bytes(std::string(100, 'x'));
  Reader r(buf);
  auto b = r.bytes(10);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, Errc::kLimitExceeded);
  EXPECT_NE(b.error().message.find("limit of 10"), std::string::npos);
}

}  // namespace keel

// libFuzzer target for the RESP parser: arbitrary bytes, fed in chunks whose sizes come from
// the input itself. The parser must never crash, read out of bounds or hold more memory than
// its limits allow.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/assert.h"
#include "frontends/resp/parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  keel::resp::ParserLimits lim;
  lim.max_bulk_len = 1 << 16;
  lim.max_multibulk_len = 1024;
  lim.max_inline_len = 4096;
  keel::resp::Parser p(lim);
  size_t chunk = (data[0] % 17) + 1;
  std::string buf;
  std::vector<std::string_view> args;
  for (size_t pos = 1; pos < size; pos += chunk) {
    buf.append(reinterpret_cast<const char*>(data) + pos, std::min(chunk, size - pos));
    for (;;) {
      auto r = p.parse(buf);
      if (r == keel::resp::Parser::Result::kNeedMore) break;
      if (r == keel::resp::Parser::Result::kError) return 0;
      if (r == keel::resp::Parser::Result::kRequest) {
        p.args(buf, args);
        KEEL_ASSERT(!args.empty() && args.size() <= lim.max_multibulk_len);
        for (auto a : args) KEEL_ASSERT(a.size() <= lim.max_bulk_len);
      }
      KEEL_ASSERT(p.consumed() > 0 && p.consumed() <= buf.size());
      buf.erase(0, p.consumed());
    }
    // Unconsumed bytes stay bounded by what one request may hold.
    KEEL_ASSERT(buf.size() <= lim.max_multibulk_len * (lim.max_bulk_len + 32) + lim.max_inline_len + chunk);
  }
  return 0;
}

#include "frontends/resp/reply.h"

#include "frontends/resp/family_util.h"

#include <gtest/gtest.h>

namespace keel::resp {

TEST(Reply, Resp2AndResp3Differ) {
  std::string a, b;
  Reply r2(a, 2), r3(b, 3);
  for (Reply* r : {&r2, &r3}) {
    r->null();
    r->map(1);
    r->bulk("k");
    r->dbl(1.5);
    r->boolean(true);
  }
  EXPECT_EQ(a, "$-1\r\n*2\r\n$1\r\nk\r\n$3\r\n1.5\r\n:1\r\n");
  EXPECT_EQ(b, "_\r\n%1\r\n$1\r\nk\r\n,1.5\r\n#t\r\n");
}

TEST(Reply, ErrorsCannotBreakFraming) {
  std::string out;
  Reply r(out);
  r.error("ERR bad\r\nthing");
  EXPECT_EQ(out, "-ERR bad  thing\r\n");
}

TEST(Reply, FormatDoubleLikeRedis) {
  EXPECT_EQ(format_double(10.5L), "10.5");
  EXPECT_EQ(format_double(3.0L), "3");
  EXPECT_EQ(format_double(5.0e3L), "5000");
  EXPECT_EQ(format_double(-0.0L), "0");
}

// A definite refusal uses Redis's "not run" error; an unknown outcome must not look like one.
TEST(Reply, RefusalAndUnknownOutcomeHaveDifferentPrefixes) {
  std::string out;
  Reply r(out);
  reply_status_error(r, Error{Errc::kUnavailable, "no quorum: 1 of 3 members reachable, 2 needed; the request was not applied"});
  EXPECT_EQ(out, "-CLUSTERDOWN no quorum: 1 of 3 members reachable, 2 needed; the request was not applied\r\n");
  out.clear();
  reply_status_error(r, Error{Errc::kTimeout, "outcome unknown: not decided within 2000 ms"});
  EXPECT_EQ(out, "-TIMEOUT outcome unknown: not decided within 2000 ms\r\n");
  out.clear();
  reply_status_error(r, Error{Errc::kInvalidArgument, "bad"});
  EXPECT_EQ(out, "-ERR bad\r\n");
}

}  // namespace keel::resp

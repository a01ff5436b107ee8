// The audit stream (security/audit_stream.h) with a scripted command path: what it sends, in
// which order, one at a time; a full queue drops and counts; a refused XADD is counted and the
// next event still goes; the sink that audit::emit() feeds.
#include "security/audit_stream.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

namespace keel::security {
namespace {

struct Script {
  std::deque<std::function<void()>> posted;  // what the stream posted, not yet run
  std::vector<std::vector<std::string>> sent;
  std::deque<AuditStream::Done> waiting;  // replies not yet given
  int64_t now = 1000;

  std::shared_ptr<AuditStream> make(AuditStreamOptions opt) {
    return AuditStream::create(
        std::move(opt),
        [this](std::vector<std::string> argv, AuditStream::Done done) {
          sent.push_back(std::move(argv));
          waiting.push_back(std::move(done));
        },
        [this](std::function<void()> fn) { posted.push_back(std::move(fn)); },
        [this] { return now; });
  }
  void run_posted() {
    while (!posted.empty()) {
      auto fn = std::move(posted.front());
      posted.pop_front();
      fn();
    }
  }
  void reply(std::string r) {
    ASSERT_FALSE(waiting.empty());
    auto d = std::move(waiting.front());
    waiting.pop_front();
    d(std::move(r));
  }
};

audit::Record rec(std::string event, std::vector<std::pair<std::string, std::string>> fields,
                  std::string trace = {}) {
  return audit::Record{std::move(event), std::move(fields), std::move(trace)};
}

TEST(AuditStream, CommandIsAnXaddWithApproximateTrimAndTheEntryFields) {
  AuditStreamOptions o{"keel:audit", 5000, 10, "n1"};
  auto argv = AuditStream::command(
      o, rec("auth.failure", {{"user", "alice"}, {"node", "spoof"}}, "ab12"), 77);
  std::vector<std::string> want{
      "XADD", "keel:audit", "MAXLEN", "~",        "5000", "*",    "event", "auth.failure", "node",
      "n1",   "ts_ms",      "77",     "trace_id", "ab12", "user", "alice", "field.node",   "spoof"};
  EXPECT_EQ(argv, want);
  // No trace: no trace_id field.
  argv = AuditStream::command(o, rec("acl.setuser", {}), 5);
  EXPECT_EQ(argv.size(), 12u);
}

TEST(AuditStream, PushNeverRunsInlineAndSendsOneAtATimeInOrder) {
  Script s;
  auto st = s.make({"a", 100, 10, "n"});
  st->push(rec("e1", {}));
  st->push(rec("e2", {}));
  EXPECT_TRUE(s.sent.empty());  // only posted
  EXPECT_EQ(s.posted.size(), 1u);
  s.run_posted();
  ASSERT_EQ(s.sent.size(), 1u);
  EXPECT_EQ(s.sent[0][7], "e1");
  st->push(rec("e3", {}));
  s.run_posted();
  EXPECT_EQ(s.sent.size(), 1u);  // e1 in flight: nothing else starts
  s.reply("$15\r\n1000-0\r\n");
  s.run_posted();
  ASSERT_EQ(s.sent.size(), 2u);
  EXPECT_EQ(s.sent[1][7], "e2");
  s.reply("$15\r\n1000-1\r\n");
  s.run_posted();
  ASSERT_EQ(s.sent.size(), 3u);
  EXPECT_EQ(s.sent[2][7], "e3");
  s.reply("$15\r\n1000-2\r\n");
  s.run_posted();
  auto stats = st->stats();
  EXPECT_EQ(stats.appended, 3u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.failed, 0u);
  EXPECT_EQ(stats.queued, 0u);
  EXPECT_TRUE(s.posted.empty());  // idle: nothing scheduled
}

TEST(AuditStream, AFullQueueDropsAndCountsInsteadOfWaiting) {
  Script s;
  auto st = s.make({"a", 100, 3, "n"});
  st->push(rec("first", {}));
  s.run_posted();  // "first" in flight, never answered
  for (int i = 0; i < 50; ++i) st->push(rec("flood" + std::to_string(i), {}));
  auto stats = st->stats();
  EXPECT_EQ(stats.queued, 3u);  // the one in flight counts
  EXPECT_EQ(stats.dropped, 48u);
  EXPECT_EQ(s.sent.size(), 1u);
  // The stuck XADD answers at last: the two queued go, in order, and nothing else.
  s.reply("$6\r\n1000-0\r\n");
  for (int i = 0; i < 2; ++i) {
    s.run_posted();
    s.reply("$6\r\n1000-1\r\n");
  }
  s.run_posted();
  stats = st->stats();
  EXPECT_EQ(stats.appended, 3u);
  EXPECT_EQ(stats.dropped, 48u);
  EXPECT_EQ(stats.queued, 0u);
  ASSERT_EQ(s.sent.size(), 3u);
  EXPECT_EQ(s.sent[1][7], "flood0");
  EXPECT_EQ(s.sent[2][7], "flood1");
}

TEST(AuditStream, ARefusedAppendIsCountedAndTheNextEventStillGoes) {
  Script s;
  auto st = s.make({"a", 100, 10, "n"});
  st->push(rec("e1", {}));
  st->push(rec("e2", {}));
  s.run_posted();
  s.reply("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
  s.run_posted();
  s.reply("-CLUSTERDOWN no quorum\r\n");
  st->push(rec("e3", {}));
  s.run_posted();
  s.reply("$6\r\n1000-0\r\n");
  s.run_posted();
  auto stats = st->stats();
  EXPECT_EQ(stats.failed, 2u);
  EXPECT_EQ(stats.appended, 1u);
  EXPECT_EQ(s.sent.size(), 3u);
}

TEST(AuditStream, AfterStopNothingIsSentAndQueuedEventsAreCountedAsDropped) {
  Script s;
  auto st = s.make({"a", 100, 10, "n"});
  st->push(rec("e1", {}));
  st->push(rec("e2", {}));
  st->stop();
  s.run_posted();
  st->push(rec("e3", {}));
  s.run_posted();
  EXPECT_TRUE(s.sent.empty());
  EXPECT_EQ(st->stats().dropped, 3u);
}

TEST(AuditStream, EmitFeedsTheSinkWithCutValuesUntilItIsCleared) {
  Script s;
  auto st = s.make({"a", 100, 10, "n"});
  uint64_t h = audit::set_sink([st](audit::Record r) { st->push(std::move(r)); });
  audit::emit(audit::kAuthFailure, {{"user", "bob"}, {"reason", std::string(1000, 'x')}});
  s.run_posted();
  ASSERT_EQ(s.sent.size(), 1u);
  auto& argv = s.sent[0];
  EXPECT_EQ(argv[7], "auth.failure");
  ASSERT_GE(argv.size(), 16u);
  EXPECT_EQ(argv[12], "user");
  EXPECT_EQ(argv[13], "bob");
  EXPECT_EQ(argv[15].size(), audit::kMaxFieldBytes + 3);  // cut as the log line's
  // A stale handle does not clear a newer sink; the right one does.
  audit::clear_sink(h - 1);
  audit::emit(audit::kAuthSuccess, {});
  audit::clear_sink(h);
  audit::emit(audit::kAuthSuccess, {});
  s.reply("$6\r\n1000-0\r\n");
  s.run_posted();
  EXPECT_EQ(s.sent.size(), 2u);  // the second emit only
}

}  // namespace
}  // namespace keel::security

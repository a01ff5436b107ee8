// TraceRing: the spans of recent slow traces, bounded by count and bytes (observe/trace_ring.h).
#include "observe/trace_ring.h"

#include <gtest/gtest.h>

namespace keel::observe {
namespace {

SpanData span(uint64_t trace, uint64_t id, uint64_t parent = 0, std::string name = "SET",
              size_t pad = 0) {
  SpanData s;
  s.trace_id = trace_id_from(0, trace);
  s.span_id = span_id_from(id);
  if (parent) s.parent_span_id = span_id_from(parent);
  s.name = std::move(name);
  s.start_unix_ns = static_cast<int64_t>(id) * 1000;
  s.end_unix_ns = s.start_unix_ns + 500;
  if (pad) s.attributes.push_back({"pad", std::string(pad, 'x')});
  return s;
}
TraceId tid(uint64_t t) { return trace_id_from(0, t); }

TEST(TraceRing, AKeptTraceTakesItsStagedSpansAndThoseRecordedAfterIt) {
  TraceRing r;
  r.add(span(1, 11, 10, "keel.rabia.decision"));  // a child, recorded before its request
  r.add(span(2, 21));                             // another trace
  r.add(span(1, 10, 0, "CACHE.CREATE"));
  r.keep(tid(1));
  r.add(span(1, 12, 10, "late child"));
  auto s = r.spans(tid(1));
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].name, "keel.rabia.decision");
  EXPECT_EQ(s[1].name, "CACHE.CREATE");
  EXPECT_EQ(s[2].name, "late child");
  auto k = r.kept(10);
  ASSERT_EQ(k.size(), 1u);
  EXPECT_EQ(k[0].trace_id, tid(1));
  EXPECT_EQ(k[0].spans, 3u);
  EXPECT_EQ(k[0].root_name, "CACHE.CREATE");
  EXPECT_EQ(k[0].start_unix_ns, 10000);
  EXPECT_EQ(k[0].end_unix_ns, 12500);
  // Trace 2 stays staged: found by id, not listed as kept.
  EXPECT_EQ(r.spans(tid(2)).size(), 1u);
  EXPECT_EQ(r.stats().staged, 1u);
  EXPECT_EQ(r.stats().traces, 1u);
  EXPECT_EQ(r.stats().spans, 3u);
  EXPECT_TRUE(r.spans(tid(3)).empty());
}

TEST(TraceRing, ATracesRootIsItsEarliestSpanWhoseParentIsNotHeldHere) {
  TraceRing r;
  r.add(span(1, 20, 10, "keel.rabia.decision"));  // child of 10 (held)
  r.add(span(1, 10, 5, "CACHE.CREATE"));          // parent 5 is the client's: not held
  r.add(span(1, 30, 0, "CLIENT"));                // a root, but later
  r.keep(tid(1));
  EXPECT_EQ(r.kept(1)[0].root_name, "CACHE.CREATE");
}

TEST(TraceRing, StagingKeepsOnlyTheNewestSpans) {
  TraceRing r({.max_spans = 100, .max_bytes = 1u << 20, .staged_spans = 4});
  for (uint64_t i = 1; i <= 10; ++i) r.add(span(i, i));
  EXPECT_EQ(r.stats().staged, 4u);
  EXPECT_TRUE(r.spans(tid(6)).empty());
  EXPECT_EQ(r.spans(tid(7)).size(), 1u);
  r.keep(tid(1));  // its span was dropped from staging: kept, but empty until more come
  EXPECT_TRUE(r.spans(tid(1)).empty());
  EXPECT_EQ(r.kept(10).size(), 1u);
}

TEST(TraceRing, TheOldestKeptTracesGoFirstPastTheSpanBound) {
  TraceRing r({.max_spans = 5, .max_bytes = 1u << 20, .staged_spans = 100});
  for (uint64_t t = 1; t <= 4; ++t) {
    r.add(span(t, t * 10));
    r.add(span(t, t * 10 + 1, t * 10));
    r.keep(tid(t));
    EXPECT_LE(r.stats().spans, 5u);
  }
  auto k = r.kept(10);
  ASSERT_EQ(k.size(), 2u);           // 2 traces of 2 spans: a third would make 6
  EXPECT_EQ(k[0].trace_id, tid(4));  // newest first
  EXPECT_EQ(k[1].trace_id, tid(3));
  EXPECT_EQ(r.stats().evicted_traces, 2u);
  EXPECT_TRUE(r.spans(tid(1)).empty());
  // Keeping a trace again makes it the newest: the other one goes first.
  r.keep(tid(3));
  r.add(span(5, 50));
  r.add(span(5, 51));
  r.keep(tid(5));
  k = r.kept(10);
  ASSERT_EQ(k.size(), 2u);
  EXPECT_EQ(k[0].trace_id, tid(5));
  EXPECT_EQ(k[1].trace_id, tid(3));
  EXPECT_EQ(r.kept(1).size(), 1u);
}

TEST(TraceRing, BytesAreBoundedAndASpanTooLargeForItsTraceIsDropped) {
  const size_t one = TraceRing::span_bytes(span(1, 1, 0, "SET", 1000));
  TraceRing r({.max_spans = 100, .max_bytes = one * 3, .staged_spans = 100});
  for (uint64_t t = 1; t <= 5; ++t) {
    r.add(span(t, t, 0, "SET", 1000));
    r.keep(tid(t));
    EXPECT_LE(r.stats().bytes, one * 3);
  }
  EXPECT_EQ(r.kept(10).size(), 3u);
  EXPECT_EQ(r.stats().bytes, one * 3);
  // A span larger than the whole bound never gets in; its trace stays as it was.
  r.add(span(5, 99, 5, "huge", one * 4));
  EXPECT_EQ(r.spans(tid(5)).size(), 1u);
  EXPECT_EQ(r.stats().dropped_spans, 1u);
  // The count of kept traces is bounded too, even when they are empty.
  TraceRing e({.max_spans = 3, .max_bytes = 1u << 20, .staged_spans = 0});
  for (uint64_t t = 1; t <= 10; ++t) e.keep(tid(t));
  EXPECT_EQ(e.kept(100).size(), 3u);
}

TEST(TraceRing, OffWithNoSpans) {
  TraceRing r({.max_spans = 0, .max_bytes = 1u << 20, .staged_spans = 256});
  r.add(span(1, 1));
  r.keep(tid(1));
  EXPECT_TRUE(r.spans(tid(1)).empty());
  EXPECT_TRUE(r.kept(10).empty());
}

}  // namespace
}  // namespace keel::observe

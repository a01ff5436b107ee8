// W3C Trace Context parsing, the sampler's decisions, the OTLP JSON shapes and the exporter's
// batching/retry policy (observe/export_core.h), driven by hand with a scripted collector.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "observe/export_core.h"
#include "observe/otlp_json.h"
#include "observe/sampler.h"
#include "observe/trace_context.h"
#include "base/random.h"

namespace keel::observe {
namespace {

using json = nlohmann::json;

constexpr const char* kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceParent, ParsesTheSpecExample) {
  auto p = parse_traceparent(kValid);
  ASSERT_TRUE(p);
  EXPECT_EQ(to_hex(p->trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(to_hex(p->span_id), "00f067aa0ba902b7");
  EXPECT_TRUE(p->sampled());
  EXPECT_EQ(format_traceparent(p->trace_id, p->span_id, p->flags), kValid);
  auto q = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(q);
  EXPECT_FALSE(q->sampled());
  EXPECT_TRUE(parse_traceparent(std::string(" ") + kValid + "\t"));  // OWS around the value
}

TEST(TraceParent, RefusesWhatTheSpecSaysToIgnore) {
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",         // no flags
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",      // upper case
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",      // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",      // zero span id
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",      // version ff
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  // v00 is exactly 55
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",      // separator
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",      // not hex
           "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
       })
    EXPECT_FALSE(parse_traceparent(bad)) << bad;
  // A future version may append fields after a '-'; anything else after the flags is wrong.
  EXPECT_TRUE(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever"));
  EXPECT_FALSE(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));
}

TEST(TraceState, KeepsValidListsAndDropsInvalidOnes) {
  EXPECT_EQ(parse_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  EXPECT_EQ(parse_tracestate(" rojo=1 , ,congo=2 "), "rojo=1,congo=2");
  EXPECT_EQ(parse_tracestate("tenant@vendor=x"), "tenant@vendor=x");
  EXPECT_EQ(parse_tracestate("Upper=1"), "");
  EXPECT_EQ(parse_tracestate("novalue="), "");
  EXPECT_EQ(parse_tracestate("a=b=c"), "");
  EXPECT_EQ(parse_tracestate(std::string(600, 'a') + "=1"), "");
  std::string many;
  for (int i = 0; i < 33; ++i) many += "k" + std::to_string(i) + "=v,";
  EXPECT_EQ(parse_tracestate(many), "");
}

TEST(Ids, FromRandomValues) {
  auto t = trace_id_from(0x0102030405060708ull, 0x090a0b0c0d0e0f10ull);
  EXPECT_EQ(to_hex(t), "0102030405060708090a0b0c0d0e0f10");
  EXPECT_EQ(trace_id_low(t), 0x090a0b0c0d0e0f10ull);
  EXPECT_FALSE(is_zero(trace_id_from(0, 0)));
  EXPECT_EQ(to_hex(span_id_from(0xabcdef)), "0000000000abcdef");
  EXPECT_FALSE(is_zero(span_id_from(0)));
}

TEST(Sampler, RatioParentErrorsAndSlow) {
  Sampler off({0.0, 0, true});
  EXPECT_FALSE(off.head_root(0));
  EXPECT_FALSE(off.keep(false, false, 1'000'000'000));
  EXPECT_TRUE(off.keep(false, true, 0));  // errors kept
  Sampler all({1.0, 0, false});
  EXPECT_TRUE(all.head_root(UINT64_MAX));
  EXPECT_FALSE(all.keep(false, true, 0));  // keep_errors off
  Sampler quarter({0.25, 5'000'000, true});
  EXPECT_TRUE(quarter.head_root(0));
  EXPECT_TRUE(quarter.head_root((1ull << 62) - 1));
  EXPECT_FALSE(quarter.head_root(1ull << 62));
  EXPECT_FALSE(quarter.keep(false, false, 4'999'999));
  EXPECT_TRUE(quarter.keep(false, false, 5'000'000));  // slow
  EXPECT_TRUE(Sampler::head_parent(true));
  EXPECT_FALSE(Sampler::head_parent(false));
  // Over many uniform values the share kept is the ratio (the decision is a comparison of
  // the trace id's low bits, spread evenly here).
  int kept = 0;
  for (uint64_t i = 0; i < 10000; ++i) kept += quarter.head_root(i * (UINT64_MAX / 10000));
  EXPECT_NEAR(kept, 2500, 1);
}

SpanData span(const std::string& name, uint64_t n = 1) {
  SpanData s;
  s.trace_id = trace_id_from(0x4bf92f3577b34da6ull, 0xa3ce929d0e0e4736ull + n);
  s.span_id = span_id_from(0x00f067aa0ba902b7ull + n);
  s.name = name;
  s.start_unix_ns = 1700000000000000000;
  s.end_unix_ns = 1700000000000500000;
  s.attributes = {{"db.operation.name", name}, {"keel.shard", int64_t{1}}, {"keel.forwarded", true}};
  return s;
}

TEST(OtlpJson, TheSpecificationsShapes) {
  Resource r;
  r.attributes = {{"service.name", std::string("keel")}};
  r.scope_version = "0.1.0";
  auto a = span("SET");
  auto b = span("GET", 2);
  b.parent_span_id = span_id_from(42);
  b.trace_state = "rojo=1";
  b.status_code = kStatusError;
  b.status_message = "WRONGTYPE x";
  auto j = json::parse(encode_export_request(r, {a, b}));
  auto& rs = j.at("resourceSpans").at(0);
  EXPECT_EQ(rs.at("resource").at("attributes").at(0), json::parse(R"({"key":"service.name","value":{"stringValue":"keel"}})"));
  auto& ss = rs.at("scopeSpans").at(0);
  EXPECT_EQ(ss.at("scope"), json::parse(R"({"name":"keel","version":"0.1.0"})"));
  auto& s0 = ss.at("spans").at(0);
  EXPECT_EQ(s0.at("traceId").get<std::string>().size(), 32u);
  EXPECT_EQ(s0.at("spanId").get<std::string>().size(), 16u);
  EXPECT_FALSE(s0.contains("parentSpanId"));
  EXPECT_EQ(s0.at("kind"), 2);
  EXPECT_EQ(s0.at("startTimeUnixNano"), "1700000000000000000");
  EXPECT_EQ(s0.at("endTimeUnixNano"), "1700000000000500000");
  EXPECT_EQ(s0.at("attributes").at(1), json::parse(R"({"key":"keel.shard","value":{"intValue":"1"}})"));
  EXPECT_EQ(s0.at("attributes").at(2), json::parse(R"({"key":"keel.forwarded","value":{"boolValue":true}})"));
  EXPECT_EQ(s0.at("status"), json::object());
  auto& s1 = ss.at("spans").at(1);
  EXPECT_EQ(s1.at("parentSpanId"), "000000000000002a");
  EXPECT_EQ(s1.at("traceState"), "rojo=1");
  EXPECT_EQ(s1.at("status"), json::parse(R"({"code":2,"message":"WRONGTYPE x"})"));
  // Invalid UTF-8 in a name does not break the encoding.
  auto c = span(std::string("\xff\xfe", 2));
  EXPECT_NO_THROW(json::parse(encode_export_request(r, {c})));
}

// Span events (OTLP Span.Event): time as a decimal string, name, attributes; none: no key.
TEST(OtlpJson, SpanEvents) {
  SpanData sp;
  sp.trace_id = trace_id_from(1, 2);
  sp.span_id = span_id_from(3);
  sp.name = "dht.primary_changed";
  sp.kind = kSpanKindInternal;
  sp.start_unix_ns = sp.end_unix_ns = 1700000000000000000;
  auto plain = json::parse(encode_export_request({}, {sp}))["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
  EXPECT_FALSE(plain.contains("events"));
  EXPECT_EQ(plain.at("kind"), 1);
  sp.events.push_back({1700000000000000001, "dht.primary_changed", {{"message", std::string("2 \"partitions\"")}}});
  sp.events.push_back({1700000000000000002, "second", {}});
  auto j = json::parse(encode_export_request({}, {sp}))["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
  ASSERT_EQ(j.at("events").size(), 2u);
  EXPECT_EQ(j["events"][0], json::parse(R"({"timeUnixNano":"1700000000000000001","name":"dht.primary_changed",
    "attributes":[{"key":"message","value":{"stringValue":"2 \"partitions\""}}]})"));
  EXPECT_EQ(j["events"][1], json::parse(R"({"timeUnixNano":"1700000000000000002","name":"second","attributes":[]})"));
}

// The hand-written encoder against nlohmann::json as the model: any bytes give parsable JSON,
// and a valid UTF-8 string comes back unchanged.
TEST(OtlpJson, StringsRoundTripAgainstAJsonLibrary) {
  SeededRandom rnd(7);
  const std::vector<std::string> pieces = {"a", "\"", "\\", "\n", "\t", std::string(1, '\0'), "\x01", "\x1f",
                                           "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff", "\xc3",
                                           "\xed\xa0\x80", "\xc0\xaf", "/", "\x7f"};
  for (int round = 0; round < 2000; ++round) {
    std::string name;
    for (int k = 0, n = static_cast<int>(rnd.uniform(12)); k < n; ++k) name += pieces[rnd.uniform(pieces.size())];
    auto sp = span(name);
    json j;
    ASSERT_NO_THROW(j = json::parse(encode_export_request({}, {sp}))) << round;
    auto got = j["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"].get<std::string>();
    bool valid = true;
    try {
      (void)json(name).dump();
    } catch (const json::type_error&) {
      valid = false;
    }
    if (valid) EXPECT_EQ(got, name) << round;
    else EXPECT_NE(got.find("\xef\xbf\xbd"), std::string::npos) << round;  // U+FFFD stands in
  }
}

TEST(OtlpJson, PartialSuccess) {
  EXPECT_EQ(parse_partial_success(""), (std::pair<uint64_t, std::string>{0, ""}));
  EXPECT_EQ(parse_partial_success("{}"), (std::pair<uint64_t, std::string>{0, ""}));
  EXPECT_EQ(parse_partial_success(R"({"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad"}})"),
            (std::pair<uint64_t, std::string>{3, "bad"}));
  EXPECT_EQ(parse_partial_success(R"({"partialSuccess":{"rejectedSpans":4}})"), (std::pair<uint64_t, std::string>{4, ""}));
  EXPECT_EQ(parse_partial_success("not json"), (std::pair<uint64_t, std::string>{0, ""}));
}

TEST(RetryAfter, SecondsAndHttpDates) {
  EXPECT_EQ(parse_retry_after_ms("3", 0), 3000);
  EXPECT_EQ(parse_retry_after_ms(" 0 ", 0), 0);
  // 1994-11-06 08:49:37 UTC is 784111777.
  EXPECT_EQ(parse_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 10), 10000);
  EXPECT_EQ(parse_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 + 10), 0);  // in the past
  EXPECT_FALSE(parse_retry_after_ms("soon", 0));
  EXPECT_FALSE(parse_retry_after_ms("-1", 0));
  EXPECT_FALSE(parse_retry_after_ms("Sun, 06 Foo 1994 08:49:37 GMT", 0));
}

TEST(HttpUrl, ParsesAndExplains) {
  std::string why;
  auto u = parse_http_url("http://127.0.0.1:4318/v1/traces", why);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 4318);
  EXPECT_EQ(u->path, "/v1/traces");
  u = parse_http_url("http://collector", why);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->path, "/v1/traces");
  u = parse_http_url("http://[::1]:4318/x", why);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_FALSE(parse_http_url("https://c:4318/v1/traces", why));
  EXPECT_NE(why.find("https is not supported"), std::string::npos);
  EXPECT_FALSE(parse_http_url("c:4318", why));
  EXPECT_FALSE(parse_http_url("http://c:0/", why));
  EXPECT_FALSE(parse_http_url("http://c:70000/", why));
  EXPECT_FALSE(parse_http_url("http://:4318/", why));
}

std::vector<SpanData> spans(size_t n) {
  std::vector<SpanData> v;
  for (size_t i = 0; i < n; ++i) v.push_back(span("S", i));
  return v;
}

ExportOptions small() {
  ExportOptions o;
  o.max_queue_spans = 10;
  o.max_batch_spans = 4;
  o.batch_delay_ms = 100;
  o.max_retries = 2;
  o.initial_backoff_ms = 50;
  o.max_backoff_ms = 80;
  return o;
}

TEST(ExportCore, BatchesBySizeOrDelay) {
  ExportCore c(small(), {});
  auto v = spans(3);
  EXPECT_EQ(c.offer(0, v), 0u);
  EXPECT_EQ(c.poll(99), nullptr);          // not full, not old enough
  EXPECT_EQ(c.next_wakeup_ms(), 100);
  auto* r = c.poll(100);                   // the oldest waited batch_delay_ms
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->spans, 3u);
  EXPECT_EQ(json::parse(r->body)["resourceSpans"][0]["scopeSpans"][0]["spans"].size(), 3u);
  EXPECT_EQ(c.poll(100), nullptr);         // one request in flight at a time
  v = spans(6);
  c.offer(100, v);
  EXPECT_EQ(c.on_result(110, 0, {200, "", "{}", ""}), "");
  r = c.poll(110);                         // full batch at once
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->spans, 4u);
  c.on_result(120, 0, {200, "", "", ""});
  EXPECT_EQ(c.poll(120), nullptr);         // 2 left: wait for their delay...
  r = c.poll(120, true);                   // ...unless flushing
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->spans, 2u);
  c.on_result(130, 0, {200, "", "", ""});
  EXPECT_TRUE(c.idle());
  EXPECT_EQ(c.counters().exported, 9u);
  EXPECT_EQ(c.counters().requests, 3u);
}

TEST(ExportCore, DropsAtTheBoundAndCounts) {
  ExportCore c(small(), {});
  auto v = spans(14);
  EXPECT_EQ(c.offer(0, v), 4u);
  EXPECT_EQ(c.queued_spans(), 10u);
  EXPECT_EQ(c.counters().dropped_queue_full, 4u);
  EXPECT_EQ(c.counters().queued, 10u);
}

TEST(ExportCore, RetriesOnlyTheRetryableStatusesHonouringRetryAfter) {
  for (int status : {429, 502, 503, 504, 0}) {
    ExportCore c(small(), {});
    auto v = spans(4);
    c.offer(0, v);
    auto* r = c.poll(0);
    ASSERT_NE(r, nullptr);
    std::string body = r->body;
    EXPECT_EQ(c.on_result(10, 1000, {status, status == 503 ? "2" : "", "", status ? "" : "connection refused"}), "");
    int64_t at = status == 503 ? 10 + 2000 : 10 + 50;  // Retry-After, else the first backoff
    EXPECT_EQ(c.next_wakeup_ms(), at) << status;
    EXPECT_EQ(c.poll(at - 1), nullptr) << status;
    r = c.poll(at);
    ASSERT_NE(r, nullptr) << status;
    EXPECT_EQ(r->body, body);  // the same batch again
    EXPECT_EQ(r->attempt, 1u);
    c.on_result(at, 1000, {200, "", "", ""});
    EXPECT_EQ(c.counters().exported, 4u);
    EXPECT_EQ(c.counters().retries, 1u);
  }
  for (int status : {400, 401, 403, 404, 413, 500, 501}) {
    ExportCore c(small(), {});
    auto v = spans(4);
    c.offer(0, v);
    c.poll(0);
    auto msg = c.on_result(10, 0, {status, "1", "bad request", ""});
    EXPECT_NE(msg.find("not retryable"), std::string::npos) << status;
    EXPECT_TRUE(c.idle()) << status;
    EXPECT_EQ(c.counters().dropped_failed, 4u);
    EXPECT_EQ(c.counters().retries, 0u);
  }
}

TEST(ExportCore, BackoffDoublesUpToItsCapAndRetriesEnd) {
  ExportCore c(small(), {});
  auto v = spans(4);
  c.offer(0, v);
  c.poll(0);
  c.on_result(0, 0, {502, "", "", ""});
  EXPECT_EQ(c.next_wakeup_ms(), 50);
  ASSERT_NE(c.poll(50), nullptr);
  c.on_result(50, 0, {502, "", "", ""});
  EXPECT_EQ(c.next_wakeup_ms(), 50 + 80);  // 100 capped at 80
  ASSERT_NE(c.poll(130), nullptr);
  auto msg = c.on_result(130, 0, {502, "", "", ""});  // max_retries = 2 used up
  EXPECT_NE(msg.find("after 3 attempts"), std::string::npos);
  EXPECT_TRUE(c.idle());
  EXPECT_EQ(c.counters().dropped_failed, 4u);
  EXPECT_EQ(c.counters().requests, 3u);
}

TEST(ExportCore, PartialSuccessIsNotRetried) {
  ExportCore c(small(), {});
  auto v = spans(4);
  c.offer(0, v);
  c.poll(0);
  auto msg = c.on_result(1, 0, {200, "", R"({"partialSuccess":{"rejectedSpans":"1","errorMessage":"span too big"}})", ""});
  EXPECT_NE(msg.find("rejected 1 of 4 spans: span too big"), std::string::npos);
  EXPECT_TRUE(c.idle());
  EXPECT_EQ(c.counters().rejected, 1u);
  EXPECT_EQ(c.counters().exported, 3u);
  EXPECT_EQ(c.poll(1000), nullptr);
}

TEST(ExportCore, SpansQueueWhileARetryWaits) {
  ExportCore c(small(), {});
  auto v = spans(4);
  c.offer(0, v);
  c.poll(0);
  c.on_result(0, 0, {429, "1", "", ""});
  v = spans(8);
  EXPECT_EQ(c.offer(10, v), 0u);
  EXPECT_EQ(c.poll(500), nullptr);  // the retry goes first, at 1000
  auto* r = c.poll(1000);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->attempt, 1u);
  c.on_result(1000, 0, {200, "", "", ""});
  r = c.poll(1000);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->attempt, 0u);
  EXPECT_EQ(r->spans, 4u);
}

// OTLP logs: ExportLogsServiceRequest's JSON shape, ids only for a line logged for a request.
TEST(OtlpJson, LogRecordsInTheSpecificationsShape) {
  Resource r;
  r.attributes = {{"service.name", std::string("keel")}};
  LogData a;
  a.time_unix_ns = 1700000000000000001;
  a.severity_number = kSeverityWarn;
  a.severity_text = "WARN";
  a.body = "disk \"nearly\" full\n";
  a.attributes = {{"keel.component", std::string("storage")}};
  a.trace_id = trace_id_from(0x4bf92f3577b34da6ull, 0xa3ce929d0e0e4736ull);
  a.span_id = span_id_from(0x00f067aa0ba902b7ull);
  LogData b;
  b.body = "plain";
  b.severity_text = "INFO";
  auto j = json::parse(encode_export_request(r, std::vector<LogData>{a, b}));
  auto& rl = j.at("resourceLogs").at(0);
  EXPECT_EQ(rl.at("resource").at("attributes").at(0), json::parse(R"({"key":"service.name","value":{"stringValue":"keel"}})"));
  auto& recs = rl.at("scopeLogs").at(0).at("logRecords");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].at("timeUnixNano"), "1700000000000000001");
  EXPECT_EQ(recs[0].at("severityNumber"), 13);
  EXPECT_EQ(recs[0].at("severityText"), "WARN");
  EXPECT_EQ(recs[0].at("body"), json::parse(R"({"stringValue":"disk \"nearly\" full\n"})"));
  EXPECT_EQ(recs[0].at("traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(recs[0].at("spanId"), "00f067aa0ba902b7");
  EXPECT_EQ(recs[0].at("attributes").at(0), json::parse(R"({"key":"keel.component","value":{"stringValue":"storage"}})"));
  EXPECT_FALSE(recs[1].contains("traceId"));
  EXPECT_FALSE(recs[1].contains("spanId"));
  EXPECT_EQ(recs[1].at("severityNumber"), kSeverityInfo);
}

TEST(ExportCore, LogExportCountsRejectedLogRecords) {
  LogExportCore c(small(), {});
  std::vector<LogData> v(4);
  EXPECT_EQ(c.offer(0, v), 0u);
  const ExportRequest* r = c.poll(0);
  ASSERT_TRUE(r);
  EXPECT_NE(r->body.find("\"resourceLogs\""), std::string::npos);
  // A trace collector's field name does not count here; the logs one does.
  auto msg = c.on_result(1, 0, {200, "", R"({"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"too old"}})", ""});
  EXPECT_EQ(msg, "log export: the collector rejected 3 of 4 log records: too old");
  EXPECT_EQ(c.counters().rejected, 3u);
  EXPECT_EQ(c.counters().exported, 1u);
  EXPECT_EQ(parse_partial_success(R"({"partialSuccess":{"rejectedLogRecords":2}})", "rejectedLogRecords").first, 2u);
  EXPECT_EQ(parse_partial_success(R"({"partialSuccess":{"rejectedLogRecords":2}})").first, 0u);
}

}  // namespace
}  // namespace keel::observe

// The gateway's route templates, parser and trie matcher; the trie against a brute-force
// specificity scan over random route sets; the pure core's purity.
#include "gateway/matcher.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/random.h"

namespace keel::gateway {
namespace {

RouteSpec route(std::string_view text, std::string service = "svc") {
  auto r = parse_route(text);
  EXPECT_TRUE(r) << text << ": " << (r ? "" : r.error().message);
  r->service = std::move(service);
  return *r;
}

Matcher build(const std::vector<std::string>& texts) {
  std::vector<Entry> es;
  for (size_t i = 0; i < texts.size(); ++i) es.push_back(Entry{route(texts[i], "s" + std::to_string(i)), 0});
  auto m = Matcher::build(std::move(es));
  EXPECT_TRUE(m);
  return std::move(*m);
}

// The route text that answers, or "" for none.
std::string answer(const Matcher& m, std::string_view method, std::string_view path, std::string_view host = "") {
  auto r = m.match(method, host, path);
  return r ? m.entries()[r->entry].route.text() : "";
}

TEST(RouteParse, FormsAndCanonicalText) {
  EXPECT_EQ(route("GET /orders").text(), "GET /orders");
  EXPECT_EQ(route("POST:/api/orders").text(), "POST /api/orders");
  EXPECT_EQ(route("get   /a//b/").text(), "GET /a/b");
  EXPECT_EQ(route("* /static/**").text(), "* /static/**");
  EXPECT_EQ(route("ANY /x/{rest=**}").text(), "* /x/{rest=**}");
  EXPECT_EQ(route("GET /o/{id=*}").text(), "GET /o/{id}");
  EXPECT_EQ(route("GET / host=API.Example.com").text(), "GET / host=api.example.com");
  // Header matches: names lower-cased, values kept, sorted by name whatever the order given.
  auto h = route("GET /x header=X-Version:V2 host=a.b header=x-debug");
  EXPECT_EQ(h.text(), "GET /x host=a.b header=x-debug header=x-version:V2");
  ASSERT_EQ(h.headers.size(), 2u);
  EXPECT_TRUE(h.headers[0].presence);
  EXPECT_EQ(h.headers[1].value, "V2");
  EXPECT_EQ(route(h.text()), h);
  // Rate limits: canonical text drops defaults (burst = N, rate_key=client); no part in equality of paths.
  auto rl = route("GET /x rate_key=header:X-Api-Key burst=20 rate=100/s");
  EXPECT_EQ(rl.rate.count, 100u);
  EXPECT_EQ(rl.rate.period_ms, 1000);
  EXPECT_EQ(rl.rate.effective_burst(), 20u);
  EXPECT_EQ(rl.rate.header, "x-api-key");
  EXPECT_EQ(rl.text(), "GET /x rate=100/s burst=20 rate_key=header:x-api-key");
  EXPECT_EQ(route(rl.text()), rl);
  auto rm = route("GET /x rate=30/m burst=30 rate_key=client");
  EXPECT_EQ(rm.text(), "GET /x rate=30/m");
  EXPECT_EQ(rm.rate.period_ms, 60000);
  EXPECT_EQ(rm.rate.effective_burst(), 30u);
  EXPECT_EQ(route("GET /x rate=5/h").rate.period_ms, 3600000);
  auto rc = route("GET /x rate_scope=cluster rate=90/s");
  EXPECT_TRUE(rc.rate.cluster);
  EXPECT_EQ(rc.text(), "GET /x rate=90/s rate_scope=cluster");
  EXPECT_EQ(route(rc.text()), rc);
  EXPECT_FALSE(route("GET /x rate=90/s rate_scope=node").rate.cluster);
  EXPECT_FALSE(route("GET /x").rate.enabled());
  auto line = parse_route_line("GET:/x header=x-canary:1 => canary");
  ASSERT_TRUE(line) << line.error().message;
  EXPECT_EQ(line->service, "canary");
  EXPECT_EQ(line->text(), "GET /x header=x-canary:1");
  auto r = parse_route_line("POST:/api/orders => place-order");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->service, "place-order");
  EXPECT_EQ(r->method, "POST");
  EXPECT_EQ(r->path.text(), "/api/orders");
}

TEST(RouteParse, BadRoutesSayWhatIsWrongAndWhatIsAllowed) {
  struct Case {
    std::string text, words;
  };
  std::vector<Case> cases = {
      {"FETCH /a", "not one of GET"},
      {"GET", "expected 'METHOD /path'"},
      {"GET orders", "must start with '/'"},
      {"GET /a/{id", "does not end with '}'"},
      {"GET /a/x{id}", "which a literal segment may not hold"},
      {"GET /a/{}", "needs a name"},
      {"GET /a/{1x}", "needs a name"},
      {"GET /a/{id=+}", "allowed: {name}"},
      {"GET /a/**/b", "must be the last segment"},
      {"GET /a/{x}/{x}", "names parameter 'x' twice"},
      {"GET /a host=a:80", "no port"},
      {"GET /a extra", "allowed: host=HOST, header=NAME:VALUE, header=NAME, rate=N/s|N/m|N/h"},
      {"GET /a rate=100", "rate '100' has no unit; allowed: N/s, N/m, N/h"},
      {"GET /a rate=100/d", "has the unit 'd'; allowed: N/s, N/m, N/h"},
      {"GET /a rate=0/s", "needs a whole number of requests from 1 to 1000000"},
      {"GET /a rate=x/s", "needs a whole number"},
      {"GET /a rate=1/s rate=2/s", "rate= is given twice"},
      {"GET /a rate=1/s burst=0", "burst '0' must be given once, as a whole number from 1"},
      {"GET /a burst=5", "burst=, rate_key= and rate_scope= need rate="},
      {"GET /a rate_scope=cluster", "burst=, rate_key= and rate_scope= need rate="},
      {"GET /a rate=1/s rate_scope=region", "rate_scope 'region' must be given once, as node"},
      {"GET /a rate=1/h burst=1000000", "burst 1000000 is too large for rate 1/h; allowed: burst up to 640511"},
      {"GET /a rate=1/s rate_key=ip", "rate_key 'ip' is not known; allowed: rate_key=client"},
      {"GET /a rate=1/s rate_key=header:a:b", "rate_key 'header:a:b' needs a header name"},
      {"GET /a host=a.b host=c.d", "host= is given twice"},
      {"GET /a header=", "needs a header name"},
      {"GET /a header=x y:1", "unexpected 'y:1'"},
      {"GET /a header=x/y:1", "header name 'x/y' may hold only"},
      {"GET /a header=x:", "needs a value of 1 to 256"},
      {"GET /a header=x:a#b", "may hold only printable ASCII"},
      {"GET /a header=x:a=>b", "may not hold '=>'"},
      {"GET /a header=X:1 header=x", "header 'x' is matched twice"},
      {"GET /a header=a header=b header=c header=d header=e header=f header=g header=h header=i",
       "more than 8 header= options"},
      {"GET /" + std::string(2000, 'a'), "too long"},
  };
  for (auto& c : cases) {
    auto r = parse_route(c.text);
    ASSERT_FALSE(r) << c.text;
    EXPECT_NE(r.error().message.find(c.words), std::string::npos) << c.text << " -> " << r.error().message;
  }
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "/a";
  EXPECT_FALSE(parse_route("GET " + deep));
}

TEST(RouteParse, RoutesFileNamesTheLine) {
  auto ok = parse_routes_file(
      "# the shop\n\nPOST:/api/orders => place-order\nGET:/api/orders/{orderId} => orders  # read\n"
      "* /static/** => assets\n");
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_EQ(ok->size(), 3u);
  EXPECT_EQ((*ok)[1].service, "orders");
  EXPECT_EQ((*ok)[1].text(), "GET /api/orders/{orderId}");

  auto noarrow = parse_routes_file("GET:/a => a\nGET:/b b\n");
  ASSERT_FALSE(noarrow);
  EXPECT_NE(noarrow.error().message.find("line 2: "), std::string::npos) << noarrow.error().message;
  EXPECT_NE(noarrow.error().message.find("has no '=>'"), std::string::npos);
  auto badsvc = parse_routes_file("GET:/a => my service\n");
  ASSERT_FALSE(badsvc);
  EXPECT_NE(badsvc.error().message.find("line 1: service 'my service'"), std::string::npos)
      << badsvc.error().message;
  auto badpath = parse_routes_file("\n\nGET:/a/{x => a\n");
  ASSERT_FALSE(badpath);
  EXPECT_NE(badpath.error().message.find("line 3: route"), std::string::npos) << badpath.error().message;
}

TEST(Matcher, ExactPrefixAndParameters) {
  auto m = build({"GET /api/orders", "GET /api/orders/{orderId}", "* /static/{rest=**}", "POST /api/orders"});
  EXPECT_EQ(answer(m, "GET", "/api/orders"), "GET /api/orders");
  EXPECT_EQ(answer(m, "POST", "/api/orders"), "POST /api/orders");
  EXPECT_EQ(answer(m, "PUT", "/api/orders"), "");
  EXPECT_EQ(answer(m, "GET", "/api/orders/"), "GET /api/orders");  // empty segments ignored
  EXPECT_EQ(answer(m, "GET", "/api/orders/42?x=1"), "GET /api/orders/{orderId}");
  EXPECT_EQ(answer(m, "GET", "/api/orders/42/items"), "");
  EXPECT_EQ(answer(m, "DELETE", "/static/css/site.css"), "* /static/{rest=**}");
  EXPECT_EQ(answer(m, "GET", "/static"), "* /static/{rest=**}");  // a catch-all matches nothing too
  EXPECT_EQ(answer(m, "GET", "/staticx"), "");
  auto r = m.match("GET", "", "/api/orders/42");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->params.size(), 1u);
  EXPECT_EQ(r->params[0], (std::pair<std::string, std::string>{"orderId", "42"}));
  r = m.match("GET", "", "/static/a/b/c.js");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->params[0], (std::pair<std::string, std::string>{"rest", "a/b/c.js"}));
}

TEST(Matcher, PriorityBySpecificity) {
  auto m = build({"GET /**", "GET /api/**", "GET /api/{x}", "GET /api/new", "* /api/new", "GET /api",
                  "GET /api/{x}/items", "GET /api/new/**"});
  EXPECT_EQ(answer(m, "GET", "/api/new"), "GET /api/new");  // literal > parameter; method > '*'
  EXPECT_EQ(answer(m, "POST", "/api/new"), "* /api/new");
  EXPECT_EQ(answer(m, "GET", "/api/7"), "GET /api/{x}");     // parameter > catch-all
  EXPECT_EQ(answer(m, "GET", "/api"), "GET /api");          // exact > catch-all matching nothing
  EXPECT_EQ(answer(m, "GET", "/api/7/items"), "GET /api/{x}/items");
  // At the second segment the literal 'new' beats {x}, so /api/new/** answers /api/new/items.
  EXPECT_EQ(answer(m, "GET", "/api/new/items"), "GET /api/new/**");
  EXPECT_EQ(answer(m, "GET", "/api/7/other"), "GET /api/**");  // backtracks out of {x}
  EXPECT_EQ(answer(m, "GET", "/elsewhere"), "GET /**");
  EXPECT_EQ(answer(m, "GET", "/"), "GET /**");
}

TEST(Matcher, HostBeatsNoHostAndIsCaseAndPortInsensitive) {
  auto m = build({"GET /x", "GET /x host=api.example.com", "GET /y host=api.example.com"});
  EXPECT_EQ(answer(m, "GET", "/x", "API.example.com:8080"), "GET /x host=api.example.com");
  EXPECT_EQ(answer(m, "GET", "/x", "other"), "GET /x");
  EXPECT_EQ(answer(m, "GET", "/y", "other"), "");
  EXPECT_EQ(normalize_host("[::1]:80"), "[::1]");
}

TEST(Matcher, HeaderMatchesExactAndPresence) {
  auto m = build({"GET /x", "GET /x header=x-version:2", "GET /y header=x-debug"});
  auto ans = [&](std::string_view path, std::vector<std::pair<std::string, std::string>> h) {
    auto r = m.match("GET", "", path, HeaderList(std::move(h)));
    return r ? m.entries()[r->entry].route.text() : std::string();
  };
  EXPECT_EQ(ans("/x", {{"X-Version", "2"}}), "GET /x header=x-version:2");  // name case-insensitive
  EXPECT_EQ(ans("/x", {{"x-version", "3"}}), "GET /x");                     // value differs
  EXPECT_EQ(ans("/x", {{"x-version", "2 "}}), "GET /x");                    // exact means exact
  EXPECT_EQ(ans("/x", {}), "GET /x");
  EXPECT_EQ(ans("/y", {{"X-Debug", ""}}), "GET /y header=x-debug");         // present, even empty
  EXPECT_EQ(ans("/y", {{"x-other", "1"}}), "");
  // Only the first value of a repeated header counts.
  EXPECT_EQ(ans("/x", {{"x-version", "1"}, {"x-version", "2"}}), "GET /x");
}

TEST(Matcher, HeaderConditionsRankAfterPathAndHostBeforeMethod) {
  auto m = build({"* /a/{id} header=x-v:1", "GET /a/new", "GET /a/{id}", "GET /a/{id} header=x-v",
                  "* /a/{id} header=x-v:1 header=x-w", "GET /a/{id} host=h.example", "POST /a/{id} header=x-v:1"});
  auto ans = [&](std::string_view method, std::string_view path, std::string_view host,
                 std::vector<std::pair<std::string, std::string>> h) {
    auto r = m.match(method, host, path, HeaderList(std::move(h)));
    return r ? m.entries()[r->entry].route.text() : std::string();
  };
  // Rule 1 first: the literal wins whatever the headers.
  EXPECT_EQ(ans("GET", "/a/new", "", {{"x-v", "1"}, {"x-w", "1"}}), "GET /a/new");
  // Rule 2: a host beats header conditions.
  EXPECT_EQ(ans("GET", "/a/7", "h.example", {{"x-v", "1"}, {"x-w", "1"}}), "GET /a/{id} host=h.example");
  // Rule 3: more conditions first; then exact before presence; both before no condition.
  EXPECT_EQ(ans("GET", "/a/7", "", {{"x-v", "1"}, {"x-w", "1"}}), "* /a/{id} header=x-v:1 header=x-w");
  // Rule 3 before rule 4: '* ... header=x-v:1' (exact) beats 'GET ... header=x-v' (presence).
  EXPECT_EQ(ans("GET", "/a/7", "", {{"x-v", "1"}}), "* /a/{id} header=x-v:1");
  // With as many exact conditions, the method decides (rule 4).
  EXPECT_EQ(ans("POST", "/a/7", "", {{"x-v", "1"}}), "POST /a/{id} header=x-v:1");
  EXPECT_EQ(ans("GET", "/a/7", "", {{"x-v", "2"}}), "GET /a/{id} header=x-v");
  EXPECT_EQ(ans("GET", "/a/7", "", {}), "GET /a/{id}");
  EXPECT_EQ(ans("DELETE", "/a/7", "", {}), "");
}

TEST(Matcher, TiesGoToTheLowerOrder) {
  std::vector<Entry> es{{route("GET /a/{x}", "late"), 7}, {route("GET /a/{y}", "early"), 3}};
  auto m = Matcher::build(es);
  ASSERT_TRUE(m);
  auto r = m->match("GET", "", "/a/1");
  ASSERT_TRUE(r);
  EXPECT_EQ(m->entries()[r->entry].route.service, "early");
  EXPECT_EQ(r->params[0].first, "y");
}

TEST(Matcher, BoundedInput) {
  auto m = build({"GET /**"});
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "/a";
  EXPECT_FALSE(m.match("GET", "", deep));                         // too many segments
  EXPECT_FALSE(m.match("GET", "", "/" + std::string(9000, 'a')));  // too long
  EXPECT_FALSE(m.match("GET", "", "relative"));
  Limits small;
  small.max_routes = 1;
  std::vector<Entry> two{{route("GET /a"), 0}, {route("GET /b"), 0}};
  EXPECT_FALSE(Matcher::build(two, small));
}

TEST(Matcher, TenThousandRoutes) {
  std::vector<Entry> es;
  for (int i = 0; i < 10000; ++i)
    es.push_back({route("GET /svc" + std::to_string(i) + "/items/{id}", "s" + std::to_string(i)), 0});
  es.push_back({route("GET /svc42/items/special"), 0});
  auto m = Matcher::build(std::move(es));
  ASSERT_TRUE(m);
  auto r = m->match("GET", "", "/svc9999/items/7");
  ASSERT_TRUE(r);
  EXPECT_EQ(m->entries()[r->entry].route.service, "s9999");
  EXPECT_EQ(m->entries()[m->match("GET", "", "/svc42/items/special")->entry].route.path.text(),
            "/svc42/items/special");
  EXPECT_LT(m->nodes(), 40000u);
}

// ---- the trie against a brute-force scan ----

std::optional<uint32_t> brute(const std::vector<Entry>& es, std::string_view method, std::string_view host,
                              std::string_view path, const HeaderLookup& headers = no_headers()) {
  auto segs = split_path(path);
  if (!segs) return std::nullopt;
  std::optional<uint32_t> best;
  for (uint32_t i = 0; i < es.size(); ++i) {
    if (!route_accepts(es[i].route, method, host, *segs, headers)) continue;
    if (!best || higher_priority(es[i], i, es[*best], *best)) best = i;
  }
  return best;
}

RC_GTEST_PROP(MatcherModel, TrieAgreesWithBruteForceSpecificityScan, ()) {
  // Few distinct words so templates and paths collide often.
  const std::vector<std::string> words{"a", "b", "c", "orders"};
  const std::vector<std::string> methods{"GET", "POST", "*"};
  const std::vector<std::string> hosts{"", "", "h.example"};
  auto gen_template = [&] {
    std::string t;
    int n = *rc::gen::inRange(0, 5);
    for (int i = 0; i < n; ++i) {
      int k = *rc::gen::inRange(0, 10);
      if (k < 6) t += "/" + *rc::gen::elementOf(words);
      else if (k < 8) t += "/{p" + std::to_string(i) + "}";
      else if (k < 9) t += "/*";
      else {
        t += "/{rest=**}";
        break;
      }
    }
    return t.empty() ? std::string("/") : t;
  };
  std::vector<Entry> es;
  int n = *rc::gen::inRange(1, 30);
  for (int i = 0; i < n; ++i) {
    std::string text = *rc::gen::elementOf(methods) + " " + gen_template();
    auto h = *rc::gen::elementOf(hosts);
    if (!h.empty()) text += " host=" + h;
    // Header conditions on two names, exact or presence, so they overlap and tie often.
    for (std::string name : {"x-a", "x-b"}) {
      int k = *rc::gen::inRange(0, 6);
      if (k == 0) text += " header=" + name;
      else if (k == 1) text += " header=" + name + ":1";
      else if (k == 2) text += " header=" + name + ":2";
    }
    auto r = parse_route(text);
    RC_ASSERT(bool(r));
    r->service = "s" + std::to_string(*rc::gen::inRange(0, 3));
    es.push_back(Entry{*r, static_cast<uint64_t>(*rc::gen::inRange(0, 4))});
  }
  auto m = Matcher::build(es);
  RC_ASSERT(bool(m));
  for (int q = 0; q < 60; ++q) {
    std::string path;
    int segs = *rc::gen::inRange(0, 6);
    for (int i = 0; i < segs; ++i) path += "/" + *rc::gen::elementOf(std::vector<std::string>{"a", "b", "c", "orders", "zz"});
    if (path.empty()) path = "/";
    auto method = *rc::gen::elementOf(std::vector<std::string>{"GET", "POST", "PUT"});
    auto host = *rc::gen::elementOf(hosts);
    std::vector<std::pair<std::string, std::string>> hv;
    for (std::string name : {"X-A", "x-b"}) {
      int k = *rc::gen::inRange(0, 4);
      if (k > 0) hv.emplace_back(name, std::to_string(k));
    }
    HeaderList headers(hv);
    auto want = brute(es, method, host, path, headers);
    auto got = m->match(method, host, path, headers);
    RC_ASSERT(want.has_value() == got.has_value());
    if (want) {
      RC_ASSERT(*want == got->entry);
      auto s = split_path(path);
      RC_ASSERT(got->params == captures(es[*want].route, *s));
    }
  }
}

// Bounded parsing of arbitrary bytes: never crashes, and what parses prints back to itself.
RC_GTEST_PROP(RouteParseFuzz, ArbitraryTextParsesOrFailsCleanly, ()) {
  auto alphabet = rc::gen::elementOf(std::vector<char>{'/', '{', '}', '=', '*', 'a', 'G', 'E', 'T', ' ', ':', '#', '\0',
                                                       'h', 'o', 's', '\n', '>', '.', '\xff'});
  auto text = *rc::gen::container<std::string>(alphabet);
  auto r = parse_route(text);
  if (r) {
    auto again = parse_route(r->text());
    RC_ASSERT(bool(again));
    RC_ASSERT(again->text() == r->text());
  }
  (void)parse_routes_file(text);
}

TEST(GatewayPurity, CoreFilesUseNoClockThreadSocketFileOrEntropy) {
  namespace fs = std::filesystem;
  const std::vector<std::string> forbidden = {"steady_clock", "system_clock", "<thread>", "random_device",
                                              "this_thread",  "<mutex>",      "<asio",    "boost/",
                                              "<fstream>",    "<cstdio>",     "<sys/",    "fopen(",
                                              "<random>",     "time(nullptr)"};
  size_t checked = 0;
  for (const auto& e : fs::directory_iterator(fs::path(KEEL_SOURCE_DIR) / "src/gateway")) {
    if (e.path().extension() != ".cpp" && e.path().extension() != ".h") continue;
    std::ifstream f(e.path());
    std::stringstream ss;
    ss << f.rdbuf();
    for (const auto& word : forbidden)
      EXPECT_EQ(ss.str().find(word), std::string::npos) << e.path().filename() << " uses " << word;
    ++checked;
  }
  EXPECT_GE(checked, 6u);
}

}  // namespace
}  // namespace keel::gateway

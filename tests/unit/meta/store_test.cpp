#include "meta/store.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

namespace keel::meta {
namespace {

Command put(std::string d, std::string k, std::string v) {
  Command c{.op = Command::Op::kPut};
  c.put = Put{std::move(d), std::move(k), std::move(v)};
  return c;
}
Command del(std::string d, std::string k) {
  Command c{.op = Command::Op::kDelete};
  c.del = Delete{std::move(d), std::move(k)};
  return c;
}
Command cas(std::string d, std::string k, uint64_t ver, std::string v) {
  Command c{.op = Command::Op::kCas};
  c.cas = CompareAndSet{std::move(d), std::move(k), ver, std::move(v)};
  return c;
}

TEST(MetaStore, PutGetVersionsAndRevisions) {
  Store s;
  auto a = s.apply(put("members", "n1", "up"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->revision, 1u);
  EXPECT_FALSE(a->prev);
  ASSERT_TRUE(s.apply(put("members", "n1", "down")));
  auto kv = s.get("members", "n1");
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->value, "down");
  EXPECT_EQ(kv->version, 2u);
  EXPECT_EQ(kv->create_revision, 1u);
  EXPECT_EQ(kv->mod_revision, 2u);
  // Same key in another domain is another key.
  EXPECT_FALSE(s.get("config", "n1"));
}

TEST(MetaStore, DeleteThenPutStartsAgain) {
  Store s;
  ASSERT_TRUE(s.apply(put("config", "x", "1")));
  ASSERT_TRUE(s.apply(del("config", "x")));
  EXPECT_FALSE(s.get("config", "x"));
  auto missing = s.apply(del("config", "x"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  EXPECT_EQ(s.revision(), 2u);  // a failed command does not move the revision
  ASSERT_TRUE(s.apply(put("config", "x", "2")));
  EXPECT_EQ(s.get("config", "x")->version, 1u);
  EXPECT_EQ(s.get("config", "x")->create_revision, 3u);
}

TEST(MetaStore, CompareAndSetOnVersion) {
  Store s;
  ASSERT_TRUE(s.apply(cas("svc", "a", 0, "v1")));  // 0: must not exist
  auto lost = s.apply(cas("svc", "a", 0, "v2"));
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, Errc::kConflict);
  EXPECT_NE(lost.error().message.find("version 1, expected 0"), std::string::npos);
  ASSERT_TRUE(s.apply(cas("svc", "a", 1, "v2")));
  EXPECT_EQ(s.get("svc", "a")->value, "v2");
}

TEST(MetaStore, TransactionIsAllOrNothingAtOneRevision) {
  Store s;
  ASSERT_TRUE(s.apply(put("pm", "p1", "n1")));
  Command t{.op = Command::Op::kTxn};
  t.txn.compares = {{"pm", "p1", 1}, {"pm", "p2", 0}};
  t.txn.puts = {{"pm", "p1", "n2"}, {"pm", "p2", "n3"}};
  auto ok = s.apply(t);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->revision, 2u);
  EXPECT_EQ(s.get("pm", "p1")->mod_revision, 2u);
  EXPECT_EQ(s.get("pm", "p2")->mod_revision, 2u);
  // Now p2 exists: the same transaction fails and changes nothing.
  auto fail = s.apply(t);
  ASSERT_FALSE(fail);
  EXPECT_EQ(fail.error().code, Errc::kConflict);
  EXPECT_NE(fail.error().message.find("compare 0"), std::string::npos);
  EXPECT_EQ(s.revision(), 2u);
  EXPECT_EQ(s.get("pm", "p1")->value, "n2");
}

TEST(MetaStore, ListByPrefixStaysInsideTheDomain) {
  Store s;
  for (auto k : {"a/1", "a/2", "b/1", "a/3"}) ASSERT_TRUE(s.apply(put("d1", k, "x")));
  ASSERT_TRUE(s.apply(put("d2", "a/9", "x")));
  auto l = s.list("d1", "a/");
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0].key, "a/1");
  EXPECT_EQ(l[2].key, "a/3");
  EXPECT_EQ(s.list("d1", "a/", 2).size(), 2u);
  EXPECT_EQ(s.list("d1", "").size(), 4u);
  EXPECT_EQ(s.domains(), (std::vector<std::string>{"d1", "d2"}));
}

TEST(MetaStore, WatchFromRevisionAndCompactedError) {
  Store s(Limits{.max_history = 4});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(s.apply(put("m", "k" + std::to_string(i), "v")));
  auto w = s.watch("m", "", 2);
  ASSERT_TRUE(w);
  ASSERT_EQ(w->size(), 2u);
  EXPECT_EQ((*w)[0].revision, 2u);
  EXPECT_EQ((*w)[0].kv.key, "k1");
  ASSERT_TRUE(s.apply(del("m", "k0")));
  ASSERT_TRUE(s.apply(put("m", "k5", "v")));  // 5 events > 4: revision 1 is dropped
  auto old = s.watch("m", "", 1);
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error().code, Errc::kOutOfRange);
  EXPECT_NE(old.error().message.find("compacted"), std::string::npos);
  EXPECT_EQ(s.oldest_watchable(), 2u);
  auto del_ev = s.watch("m", "k0", 2);
  ASSERT_TRUE(del_ev);
  ASSERT_EQ(del_ev->size(), 1u);
  EXPECT_EQ((*del_ev)[0].type, Event::Type::kDelete);
  // Watching from the future returns nothing, not an error.
  EXPECT_TRUE(s.watch("m", "", 100)->empty());
}

TEST(MetaStore, BadInputIsRefusedWithAReason) {
  Store s(Limits{.max_key_bytes = 8, .max_value_bytes = 4});
  auto e = s.apply(put("Bad Domain", "k", "v"));
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("domain"), std::string::npos);
  e = s.apply(put("d", "", "v"));
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("allowed 1..8"), std::string::npos);
  e = s.apply(put("d", "k", "12345"));
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("limit of 4"), std::string::npos);
  EXPECT_EQ(s.revision(), 0u);
  auto d = decode_command("\x01\x09");
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("op 9"), std::string::npos);
  EXPECT_FALSE(Store::restore("garbage"));
}

TEST(MetaStore, CommandCodecRoundTripsThroughApplyBytes) {
  Command t{.op = Command::Op::kTxn};
  t.txn.compares = {{"a", "x", 0}};
  t.txn.puts = {{"a", "x", "1"}, {"b", "y", std::string("\0bin", 4)}};
  t.txn.deletes = {{"a", "gone"}};
  std::string b = encode(t);
  Store s1, s2;
  ASSERT_TRUE(s1.apply(t));
  ASSERT_TRUE(s2.apply_bytes(b));
  EXPECT_TRUE(s1 == s2);
  for (size_t n = 0; n < b.size(); ++n) EXPECT_FALSE(decode_command(b.substr(0, n)));
}

// The store is a pure state machine: no clock, thread, file, socket or random device.
TEST(MetaStore, IncludesNoIoHeaders) {
  std::regex banned(
      R"(#include\s*<(chrono|thread|random|fstream|filesystem|mutex|asio|sys/|unistd|boost/asio|ctime|atomic)[^>]*>)");
  for (const char* f : {"store.h", "store.cpp"}) {
    std::ifstream in(std::string(KEEL_META_SRC) + "/" + f);
    ASSERT_TRUE(in) << f;
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    std::smatch m;
    EXPECT_FALSE(std::regex_search(text, m, banned)) << f << " includes " << m.str();
  }
}

// ----- property test against a dumb model ---------------------------------------------------

struct Model {
  struct V {
    std::string value;
    uint64_t version;
  };
  std::map<std::pair<std::string, std::string>, V> kv;
  uint64_t revision = 0;
  std::vector<std::tuple<uint64_t, std::string, std::string, bool>> events;  // rev, d, k, del
};

RC_GTEST_PROP(MetaStoreModel, AgreesWithAMapModel, ()) {
  const std::vector<std::string> domains = {"members", "config"};
  const std::vector<std::string> keys = {"a", "a/b", "a/c", "b", "bb"};
  auto dom = rc::gen::elementOf(domains);
  auto key = rc::gen::elementOf(keys);
  Store s(Limits{.max_history = 8});
  Model m;
  const int steps = *rc::gen::inRange(1, 80);
  for (int i = 0; i < steps; ++i) {
    const std::string d = *dom, k = *key,
                      v = *rc::gen::elementOf(std::vector<std::string>{"1", "2", "x"});
    auto mk = std::pair{d, k};
    const bool exists = m.kv.contains(mk);
    const uint64_t ver = exists ? m.kv[mk].version : 0;
    switch (*rc::gen::inRange(0, 5)) {
      case 0: {
        RC_ASSERT(s.apply(put(d, k, v)).has_value());
        m.revision++;
        m.kv[mk] = {v, ver + 1};
        m.events.emplace_back(m.revision, d, k, false);
        break;
      }
      case 1: {
        auto r = s.apply(del(d, k));
        RC_ASSERT(r.has_value() == exists);
        if (exists) {
          m.revision++;
          m.kv.erase(mk);
          m.events.emplace_back(m.revision, d, k, true);
        }
        break;
      }
      case 2: {
        uint64_t expect = *rc::gen::inRange<uint64_t>(0, 3);
        auto r = s.apply(cas(d, k, expect, v));
        RC_ASSERT(r.has_value() == (expect == ver));
        if (expect == ver) {
          m.revision++;
          m.kv[mk] = {v, ver + 1};
          m.events.emplace_back(m.revision, d, k, false);
        }
        break;
      }
      case 3: {
        // A two-key transaction: compare both, put one, delete the other.
        const std::string k2 = *key;
        auto mk2 = std::pair{d, k2};
        uint64_t ver2 = m.kv.contains(mk2) ? m.kv[mk2].version : 0;
        bool guess = *rc::gen::arbitrary<bool>();
        Command t{.op = Command::Op::kTxn};
        t.txn.compares = {{d, k, ver}, {d, k2, guess ? ver2 : ver2 + 1}};
        t.txn.deletes = {{d, k2}};
        t.txn.puts = {{d, k, v}};
        auto r = s.apply(t);
        RC_ASSERT(r.has_value() == guess);
        if (guess) {
          m.revision++;
          if (m.kv.contains(mk2)) {
            m.kv.erase(mk2);
            m.events.emplace_back(m.revision, d, k2, true);
          }
          uint64_t base = m.kv.contains(mk) ? m.kv[mk].version : 0;
          m.kv[mk] = {v, base + 1};
          m.events.emplace_back(m.revision, d, k, false);
        }
        break;
      }
      case 4: {
        auto r = Store::restore(s.snapshot(), Limits{.max_history = 8});
        RC_ASSERT(r.has_value());
        RC_ASSERT(*r == s);
        s = std::move(*r);
        break;
      }
      case 5: {
        // Watch from a random revision matches the model's event log (or is compacted).
        uint64_t from = *rc::gen::inRange<uint64_t>(1, m.revision + 2);
        auto w = s.watch(d, "", from);
        if (!w) {
          RC_ASSERT(w.error().code == Errc::kOutOfRange);
          RC_ASSERT(from < s.oldest_watchable());
          break;
        }
        std::vector<std::tuple<uint64_t, std::string, std::string, bool>> want;
        for (auto& e : m.events)
          if (std::get<0>(e) >= from && std::get<1>(e) == d) want.push_back(e);
        RC_ASSERT(w->size() == want.size());
        for (size_t j = 0; j < want.size(); ++j) {
          RC_ASSERT((*w)[j].revision == std::get<0>(want[j]));
          RC_ASSERT((*w)[j].kv.key == std::get<2>(want[j]));
          RC_ASSERT(((*w)[j].type == Event::Type::kDelete) == std::get<3>(want[j]));
        }
        break;
      }
    }
    RC_ASSERT(s.revision() == m.revision);
    for (auto& dd : domains)
      for (auto& kk : keys) {
        auto got = s.get(dd, kk);
        auto it = m.kv.find({dd, kk});
        RC_ASSERT(got.has_value() == (it != m.kv.end()));
        if (got) {
          RC_ASSERT(got->value == it->second.value);
          RC_ASSERT(got->version == it->second.version);
        }
      }
    // list by prefix equals the model's filtered, ordered keys.
    for (auto& dd : domains) {
      std::vector<std::string> want;
      for (auto& [mk2, _] : m.kv)
        if (mk2.first == dd && mk2.second.starts_with("a")) want.push_back(mk2.second);
      auto l = s.list(dd, "a");
      RC_ASSERT(l.size() == want.size());
      for (size_t j = 0; j < l.size(); ++j) RC_ASSERT(l[j].key == want[j]);
    }
  }
}

}  // namespace
}  // namespace keel::meta

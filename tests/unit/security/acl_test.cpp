// The ACL rule language and checks (security/acl.h): every rule kind, every refusal with its
// message, the description round trip (how users are stored in metadata), password hashes,
// the registry's authentication cache and log, and glob matching against a simple model.
#include "security/acl.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <string>
#include <vector>

#include "base/glob.h"

namespace keel::security {
namespace {

// A small command table: index order is the bit order.
CommandCatalog catalog() {
  return CommandCatalog({
      {"get", cat_bit(kCatRead) | cat_bit(kCatString) | cat_bit(kCatFast), false},
      {"set", cat_bit(kCatWrite) | cat_bit(kCatString) | cat_bit(kCatSlow), false},
      {"hget", cat_bit(kCatRead) | cat_bit(kCatHash) | cat_bit(kCatFast), false},
      {"hdel", cat_bit(kCatWrite) | cat_bit(kCatHash) | cat_bit(kCatFast), false},
      {"config", cat_bit(kCatAdmin) | cat_bit(kCatDangerous) | cat_bit(kCatSlow), true},
      {"publish", cat_bit(kCatPubSub) | cat_bit(kCatFast), false},
      {"cache.get", cat_bit(kCatCache) | cat_bit(kCatWrite) | cat_bit(kCatFast), false},
  });
}
constexpr uint16_t kGet = 0, kSet = 1, kHget = 2, kHdel = 3, kConfig = 4, kPublish = 5, kCacheGet = 6;

class AclRules : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { set_hash_cost({1, 8192}); }  // libsodium's minimum: fast tests
  CommandCatalog cat = catalog();
  User u = new_user("alice");
  Status rule(std::string_view r) { return apply_rule(u, r, cat); }
  std::string error_of(std::string_view r) {
    auto st = rule(r);
    return st ? std::string("(no error)") : st.error().message;
  }
};

TEST_F(AclRules, NewUserIsOffWithNothingAllowed) {
  EXPECT_EQ(u.describe(), "off resetchannels -@all");
  ASSERT_TRUE(rule("on"));
  EXPECT_FALSE(u.can_run(kGet));
  EXPECT_FALSE(u.key_allowed("k"));
  EXPECT_FALSE(u.channel_allowed("c", false));
}

TEST_F(AclRules, OnOff) {
  ASSERT_TRUE(rule("on"));
  EXPECT_TRUE(u.enabled);
  ASSERT_TRUE(rule("OFF"));  // case-insensitive, as Redis
  EXPECT_FALSE(u.enabled);
}

TEST_F(AclRules, PasswordsAreHashedAddedAndRemoved) {
  ASSERT_TRUE(rule(">secret"));
  ASSERT_EQ(u.passwords.size(), 1u);
  EXPECT_TRUE(u.passwords[0].starts_with("$argon2id$"));
  EXPECT_EQ(u.passwords[0].find("secret"), std::string::npos);
  EXPECT_TRUE(verify_password(u.passwords[0], "secret"));
  EXPECT_FALSE(verify_password(u.passwords[0], "Secret"));
  ASSERT_TRUE(rule(">secret"));  // the same password again is not a second hash
  EXPECT_EQ(u.passwords.size(), 1u);
  ASSERT_TRUE(rule(">other"));
  EXPECT_EQ(u.passwords.size(), 2u);
  ASSERT_TRUE(rule("<secret"));
  ASSERT_EQ(u.passwords.size(), 1u);
  EXPECT_TRUE(verify_password(u.passwords[0], "other"));
}

TEST_F(AclRules, NopassAndResetpass) {
  ASSERT_TRUE(rule(">pw"));
  ASSERT_TRUE(rule("nopass"));
  EXPECT_TRUE(u.nopass);
  EXPECT_TRUE(u.passwords.empty());
  ASSERT_TRUE(rule(">pw"));
  EXPECT_FALSE(u.nopass);
  ASSERT_TRUE(rule("resetpass"));
  EXPECT_FALSE(u.nopass);
  EXPECT_TRUE(u.passwords.empty());
}

TEST_F(AclRules, HashRulesAddAndRemoveStoredHashes) {
  auto h = hash_password("pw");
  ASSERT_TRUE(h);
  ASSERT_TRUE(rule("#" + *h));
  ASSERT_EQ(u.passwords, std::vector<std::string>{*h});
  ASSERT_TRUE(rule("!" + *h));
  EXPECT_TRUE(u.passwords.empty());
}

TEST_F(AclRules, CommandsAndSubcommands) {
  ASSERT_TRUE(rule("+get"));
  EXPECT_TRUE(u.can_run(kGet));
  EXPECT_FALSE(u.can_run(kSet));
  ASSERT_TRUE(rule("+SET"));
  EXPECT_TRUE(u.can_run(kSet));
  ASSERT_TRUE(rule("-set"));
  EXPECT_FALSE(u.can_run(kSet));
  ASSERT_TRUE(rule("+config|get"));
  EXPECT_TRUE(u.can_run(kConfig, "GET"));
  EXPECT_FALSE(u.can_run(kConfig, "set"));
  EXPECT_FALSE(u.can_run(kConfig));
  ASSERT_TRUE(rule("+config"));
  ASSERT_TRUE(rule("-config|set"));
  EXPECT_TRUE(u.can_run(kConfig, "get"));
  EXPECT_FALSE(u.can_run(kConfig, "set"));
  EXPECT_EQ(u.describe_commands(), "-@all +get -set +config -config|set");
}

TEST_F(AclRules, Categories) {
  ASSERT_TRUE(rule("+@hash"));
  EXPECT_TRUE(u.can_run(kHget));
  EXPECT_TRUE(u.can_run(kHdel));
  ASSERT_TRUE(rule("-hdel"));
  EXPECT_FALSE(u.can_run(kHdel));
  ASSERT_TRUE(rule("+@cache"));  // keel's own category
  EXPECT_TRUE(u.can_run(kCacheGet));
  ASSERT_TRUE(rule("+@read"));
  ASSERT_TRUE(rule("-@read"));
  EXPECT_FALSE(u.can_run(kGet));
  EXPECT_FALSE(u.can_run(kHget));
  EXPECT_EQ(u.describe_commands(), "-@all +@hash -hdel +@cache -@read");
}

TEST_F(AclRules, AllcommandsAndNocommands) {
  ASSERT_TRUE(rule("+get"));
  ASSERT_TRUE(rule("allcommands"));
  EXPECT_TRUE(u.allcommands);
  EXPECT_TRUE(u.can_run(kConfig, "set"));
  EXPECT_EQ(u.describe_commands(), "+@all");
  ASSERT_TRUE(rule("-get"));
  EXPECT_FALSE(u.can_run(kGet));
  EXPECT_EQ(u.describe_commands(), "+@all -get");
  ASSERT_TRUE(rule("nocommands"));
  EXPECT_FALSE(u.can_run(kSet));
  EXPECT_EQ(u.describe_commands(), "-@all");
  ASSERT_TRUE(rule("+@all"));
  ASSERT_TRUE(rule("-@all"));
  EXPECT_FALSE(u.allcommands);
}

TEST_F(AclRules, KeyPatterns) {
  ASSERT_TRUE(rule("~user:*"));
  ASSERT_TRUE(rule("~cache:[ab]?"));
  EXPECT_TRUE(u.key_allowed("user:1"));
  EXPECT_TRUE(u.key_allowed("cache:a1"));
  EXPECT_FALSE(u.key_allowed("cache:c1"));
  EXPECT_FALSE(u.key_allowed("other"));
  ASSERT_TRUE(rule("allkeys"));
  EXPECT_TRUE(u.key_allowed("other"));
  EXPECT_TRUE(u.keys.empty());
  ASSERT_TRUE(rule("resetkeys"));
  EXPECT_FALSE(u.key_allowed("other"));
  ASSERT_TRUE(rule("~*"));
  EXPECT_TRUE(u.allkeys);
}

TEST_F(AclRules, ChannelPatterns) {
  ASSERT_TRUE(rule("&news.*"));
  EXPECT_TRUE(u.channel_allowed("news.sport", false));
  EXPECT_FALSE(u.channel_allowed("chat", false));
  // A pattern subscription must name one of the patterns exactly (as Redis).
  EXPECT_TRUE(u.channel_allowed("news.*", true));
  EXPECT_FALSE(u.channel_allowed("news.s*", true));
  ASSERT_TRUE(rule("allchannels"));
  EXPECT_TRUE(u.channel_allowed("chat", false));
  ASSERT_TRUE(rule("resetchannels"));
  EXPECT_FALSE(u.channel_allowed("chat", false));
  ASSERT_TRUE(rule("&*"));
  EXPECT_TRUE(u.allchannels);
}

TEST_F(AclRules, ResetStartsOver) {
  for (auto r : {"on", ">pw", "~*", "&*", "+@all"}) ASSERT_TRUE(rule(r));
  ASSERT_TRUE(rule("reset"));
  EXPECT_EQ(u.describe(), "off resetchannels -@all");
  EXPECT_EQ(u.name, "alice");
}

TEST_F(AclRules, DescriptionRebuildsTheUser) {
  for (auto r : {"on", ">pw", "~k*", "~x", "&ch*", "+@hash", "-hdel", "+get", "+config|get"}) ASSERT_TRUE(rule(r));
  auto back = parse_user("alice", u.describe(), cat);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->describe(), u.describe());
  EXPECT_EQ(back->allowed, u.allowed);
  EXPECT_TRUE(back->can_run(kConfig, "get"));
  EXPECT_FALSE(back->can_run(kHdel));
  EXPECT_TRUE(verify_password(back->passwords[0], "pw"));
  auto d = parse_user("default", default_user().describe(), cat);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->describe(), "on nopass ~* &* +@all");
  EXPECT_TRUE(d->unrestricted());
}

TEST_F(AclRules, RulesApplyAllOrNothing) {
  std::vector<std::string> rules = {"on", "+get", "+nosuch"};
  std::string bad;
  auto st = apply_rules(u, rules, cat, &bad);
  ASSERT_FALSE(st);
  EXPECT_EQ(bad, "+nosuch");
  EXPECT_EQ(u.describe(), "off resetchannels -@all");
}

// --- Refusals: one test per error, each naming what is allowed.

TEST_F(AclRules, UnknownRuleIsASyntaxErrorListingTheRules) {
  auto m = error_of("badrule");
  EXPECT_TRUE(m.starts_with("Syntax error")) << m;
  EXPECT_NE(m.find("allcommands"), std::string::npos);
  EXPECT_NE(m.find("~pattern"), std::string::npos);
  EXPECT_TRUE(error_of("").starts_with("Syntax error"));
}

TEST_F(AclRules, UnknownCommandIsRefused) {
  auto m = error_of("+nosuch");
  EXPECT_TRUE(m.starts_with("Unknown command or category name in ACL")) << m;
  EXPECT_NE(m.find("ACL CAT"), std::string::npos);
  EXPECT_TRUE(error_of("-nosuch").starts_with("Unknown command"));
  EXPECT_TRUE(error_of("+nosuch|x").starts_with("Unknown command"));
}

TEST_F(AclRules, UnknownCategoryIsRefused) {
  EXPECT_TRUE(error_of("+@nosuch").starts_with("Unknown command or category name in ACL"));
  EXPECT_TRUE(error_of("-@").starts_with("Unknown command or category name in ACL"));
}

TEST_F(AclRules, EmptyOrNestedSubcommandIsASyntaxError) {
  EXPECT_TRUE(error_of("+config|").starts_with("Syntax error"));
  EXPECT_TRUE(error_of("+config|get|x").starts_with("Syntax error"));
}

TEST_F(AclRules, KeyPatternAfterAllkeysIsRefused) {
  ASSERT_TRUE(rule("allkeys"));
  auto m = error_of("~a");
  EXPECT_NE(m.find("after the * pattern (or the 'allkeys' flag)"), std::string::npos) << m;
  EXPECT_NE(m.find("resetkeys"), std::string::npos);
}

TEST_F(AclRules, ChannelPatternAfterAllchannelsIsRefused) {
  ASSERT_TRUE(rule("allchannels"));
  auto m = error_of("&a");
  EXPECT_NE(m.find("'allchannels' flag"), std::string::npos) << m;
  EXPECT_NE(m.find("resetchannels"), std::string::npos);
}

TEST_F(AclRules, RemovingAnUnknownPasswordIsRefused) {
  EXPECT_EQ(error_of("<never-set"), "The password you are trying to remove from the user does not exist");
  auto h = hash_password("x");
  ASSERT_TRUE(h);
  EXPECT_EQ(error_of("!" + *h), "The password you are trying to remove from the user does not exist");
}

TEST_F(AclRules, Sha256HashIsRefusedNamingTheAcceptedForm) {
  auto m = error_of("#" + std::string(64, 'a'));
  EXPECT_NE(m.find("Argon2id"), std::string::npos) << m;
  EXPECT_NE(m.find(">password"), std::string::npos);
}

TEST_F(AclRules, ReadWriteKeyPermissionsAreRefused) {
  auto m = error_of("%R~k*");
  EXPECT_NE(m.find("not supported"), std::string::npos) << m;
  EXPECT_NE(m.find("~pattern"), std::string::npos);
}

TEST_F(AclRules, SelectorsAreRefused) {
  auto m = error_of("(+get ~k*)");
  EXPECT_NE(m.find("Selectors"), std::string::npos) << m;
}

TEST_F(AclRules, BadUserNamesAreRefused) {
  EXPECT_FALSE(check_user_name(""));
  EXPECT_FALSE(check_user_name("a b"));
  EXPECT_FALSE(check_user_name(std::string(129, 'a')));
  EXPECT_TRUE(check_user_name("svc.reader-1"));
  EXPECT_FALSE(parse_user("a b", "on", cat));
}

TEST_F(AclRules, CategoryNames) {
  EXPECT_EQ(category_by_name("SortedSet"), kCatSortedSet);
  EXPECT_EQ(category_by_name("cache"), kCatCache);
  EXPECT_FALSE(category_by_name("all"));
  EXPECT_EQ(category_names().size(), static_cast<size_t>(kCatCount));
}

// --- The registry.

TEST_F(AclRules, RegistryAuthenticatesAndCachesVerifiedPasswords) {
  Acl acl(cat);
  EXPECT_TRUE(acl.default_user()->unrestricted());
  EXPECT_EQ(acl.authenticate("default", "anything"), acl.default_user());  // nopass
  User alice = new_user("alice");
  for (auto r : {"on", ">pw", "+get"}) ASSERT_TRUE(apply_rule(alice, r, cat));
  uint64_t g = acl.generation();
  acl.put(alice);
  EXPECT_GT(acl.generation(), g);
  EXPECT_TRUE(acl.authenticate("alice", "pw"));
  EXPECT_TRUE(acl.authenticate("alice", "pw"));  // from the cache
  EXPECT_FALSE(acl.authenticate("alice", "wrong"));
  EXPECT_FALSE(acl.authenticate("nobody", "pw"));
  // A changed password invalidates what the cache remembered.
  User changed = alice;
  ASSERT_TRUE(apply_rule(changed, "resetpass", cat));
  ASSERT_TRUE(apply_rule(changed, ">new", cat));
  acl.put(changed);
  EXPECT_FALSE(acl.authenticate("alice", "pw"));
  EXPECT_TRUE(acl.authenticate("alice", "new"));
  // A disabled user cannot authenticate.
  ASSERT_TRUE(apply_rule(changed, "off", cat));
  acl.put(changed);
  EXPECT_FALSE(acl.authenticate("alice", "new"));
  acl.erase("alice");
  EXPECT_FALSE(acl.find("alice"));
  EXPECT_EQ(acl.users().size(), 1u);
}

TEST_F(AclRules, RegistryLogGroupsRepeatedDenials) {
  Acl acl(cat);
  acl.log({"command", "toplevel", "set", "alice", "id=1", 0, 0, 1});
  acl.log({"command", "toplevel", "set", "alice", "id=1", 0, 0, 1});
  acl.log({"key", "toplevel", "k", "alice", "id=1", 0, 0, 1});
  auto e = acl.log_entries(10);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].reason, "key");
  EXPECT_EQ(e[1].count, 2u);
  acl.log_reset();
  EXPECT_TRUE(acl.log_entries(10).empty());
}

// --- Any sequence of rules, good or bad: no crash, and whatever was accepted is described by
// rules that rebuild the same user (how users travel through metadata).

RC_GTEST_PROP(AclRulesProp, DescriptionRoundTripsAfterAnyRules, ()) {
  set_hash_cost({1, 8192});
  static const std::vector<std::string> kPieces = {
      "on", "off", "nopass", "resetpass", ">pw", "<pw", "+get", "-get", "+set", "+@read", "-@read", "+@hash",
      "-@write", "+@all", "-@all", "allcommands", "nocommands", "+config|get", "-config|set", "~k*", "~a?",
      "allkeys", "resetkeys", "&c*", "allchannels", "resetchannels", "reset", "+nosuch", "bad", "~", "&",
      "+config|", "#x", "%R~a", "", "+@cache", "-hdel"};
  const CommandCatalog cat = catalog();
  auto rules = *rc::gen::container<std::vector<std::string>>(*rc::gen::inRange<size_t>(0, 12),
                                                               rc::gen::elementOf(kPieces));
  User u = new_user("p");
  for (auto& r : rules) (void)apply_rule(u, r, cat);  // errors are fine; crashes are not
  auto back = parse_user("p", u.describe(), cat);
  RC_ASSERT(back.has_value());
  RC_ASSERT(back->describe() == u.describe());
  for (uint16_t i = 0; i < cat.size(); ++i)
    for (std::string_view sub : {"", "get", "set"}) RC_ASSERT(back->can_run(i, sub) == u.can_run(i, sub));
}

// --- Glob matching against a simple recursive model (for patterns of literals, '?' and '*').

bool model_match(std::string_view p, std::string_view s) {
  if (p.empty()) return s.empty();
  if (p[0] == '*') return model_match(p.substr(1), s) || (!s.empty() && model_match(p, s.substr(1)));
  if (s.empty()) return false;
  return (p[0] == '?' || p[0] == s[0]) && model_match(p.substr(1), s.substr(1));
}

RC_GTEST_PROP(AclGlob, MatchesTheModel, ()) {
  auto alphabet = rc::gen::elementOf(std::string("ab*?"));
  auto pat = *rc::gen::container<std::string>(*rc::gen::inRange<size_t>(0, 8), alphabet);
  auto str = *rc::gen::container<std::string>(*rc::gen::inRange<size_t>(0, 10), rc::gen::elementOf(std::string("ab")));
  RC_ASSERT(glob_match(pat, str) == model_match(pat, str));
}

}  // namespace
}  // namespace keel::security

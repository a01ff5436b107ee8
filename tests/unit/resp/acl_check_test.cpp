// The RESP side of users and access rules (acl_commands.cpp): every command has Redis's
// categories (and keel's families their own), and acl_check refuses by command, subcommand,
// key position and channel with Redis 7.0's texts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "frontends/resp/command.h"

namespace keel::resp {
namespace {

namespace sec = keel::security;

class AclCheck : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { sec::set_hash_cost({1, 8192}); }
  sec::CommandCatalog cat = acl_catalog();
  sec::User user(std::vector<std::string> rules) {
    sec::User u = sec::new_user("u");
    EXPECT_TRUE(sec::apply_rules(u, rules, cat));
    return u;
  }
  std::optional<AclDenial> check(const sec::User& u, std::vector<std::string_view> argv) {
    const CommandSpec* spec = find_command(argv[0]);
    EXPECT_NE(spec, nullptr) << argv[0];
    return acl_check(u, *spec, Args(argv.data(), argv.size()));
  }
  uint64_t cats(std::string_view name) { return command_categories(*find_command(name)); }
};

TEST_F(AclCheck, EveryCommandIsInTheCatalogWithCategories) {
  ASSERT_EQ(cat.size(), all_commands().size());
  for (auto* s : all_commands()) {
    auto i = cat.find(s->name);
    ASSERT_TRUE(i) << s->name;
    EXPECT_EQ(*i, s->index) << s->name;
    uint64_t c = command_categories(*s);
    EXPECT_NE(c & (sec::cat_bit(sec::kCatFast) | sec::cat_bit(sec::kCatSlow)), 0u) << s->name;
    if (s->flags & kWrite) {
      EXPECT_TRUE(c & sec::cat_bit(sec::kCatWrite)) << s->name;
    }
    if (s->flags & kReadonly) {
      EXPECT_TRUE(c & sec::cat_bit(sec::kCatRead)) << s->name;
    }
    if (s->name.starts_with("cache.")) {
      EXPECT_TRUE(c & sec::cat_bit(sec::kCatCache)) << s->name;
    }
    if (s->name.starts_with("route.")) {
      EXPECT_TRUE(c & sec::cat_bit(sec::kCatRoute)) << s->name;
    }
  }
}

TEST_F(AclCheck, CategoriesFollowRedis) {
  EXPECT_EQ(cats("get"), sec::cat_bit(sec::kCatRead) | sec::cat_bit(sec::kCatString) | sec::cat_bit(sec::kCatFast));
  EXPECT_TRUE(cats("flushall") & sec::cat_bit(sec::kCatDangerous));
  EXPECT_TRUE(cats("flushall") & sec::cat_bit(sec::kCatKeyspace));
  EXPECT_TRUE(cats("config") & sec::cat_bit(sec::kCatAdmin));
  EXPECT_TRUE(cats("blpop") & sec::cat_bit(sec::kCatBlocking));
  EXPECT_TRUE(cats("hset") & sec::cat_bit(sec::kCatHash));
  EXPECT_TRUE(cats("zadd") & sec::cat_bit(sec::kCatSortedSet));
  EXPECT_TRUE(cats("xadd") & sec::cat_bit(sec::kCatStream));
  EXPECT_TRUE(cats("publish") & sec::cat_bit(sec::kCatPubSub));
  EXPECT_TRUE(cats("multi") & sec::cat_bit(sec::kCatTransaction));
  EXPECT_TRUE(cats("auth") & sec::cat_bit(sec::kCatConnection));
  EXPECT_TRUE(cats("cache.create") & sec::cat_bit(sec::kCatAdmin));
}

TEST_F(AclCheck, RefusesCommandsWithRedisText) {
  auto u = user({"on", "+get", "~*"});
  EXPECT_FALSE(check(u, {"get", "k"}));
  auto d = check(u, {"set", "k", "v"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->reason, "command");
  EXPECT_EQ(d->error, "NOPERM this user has no permissions to run the 'set' command");
  EXPECT_EQ(d->dryrun, "This user has no permissions to run the 'set' command");
}

TEST_F(AclCheck, SubcommandsOfContainers) {
  auto u = user({"on", "+config|get"});
  EXPECT_FALSE(check(u, {"config", "get", "maxclients"}));
  auto d = check(u, {"CONFIG", "SET", "maxclients", "1"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->object, "config|set");
}

TEST_F(AclCheck, EveryKeyPositionIsChecked) {
  auto u = user({"on", "+@all", "~app:*"});
  EXPECT_FALSE(check(u, {"mset", "app:1", "v", "app:2", "v"}));
  auto d = check(u, {"mset", "app:1", "v", "other", "v"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->reason, "key");
  EXPECT_EQ(d->object, "other");
  EXPECT_EQ(d->error, "NOPERM this user has no permissions to access one of the keys used as arguments");
  EXPECT_EQ(d->dryrun, "This user has no permissions to access the 'other' key");
  EXPECT_TRUE(check(u, {"zunionstore", "app:d", "2", "app:1", "x"}));
  EXPECT_TRUE(check(u, {"xread", "streams", "app:s", "x", "0", "0"}));
  EXPECT_FALSE(check(u, {"xread", "streams", "app:s", "0"}));
  EXPECT_TRUE(check(u, {"cache.get", "c", "x"}));  // the key is argument 2
  EXPECT_FALSE(check(u, {"cache.get", "x", "app:1"}));
  EXPECT_FALSE(check(u, {"dbsize"}));  // no keys
}

TEST_F(AclCheck, ChannelsAreCheckedForPubSub) {
  auto u = user({"on", "+@all", "~*", "resetchannels", "&news.*"});
  EXPECT_FALSE(check(u, {"publish", "news.x", "m"}));
  EXPECT_FALSE(check(u, {"subscribe", "news.a", "news.b"}));
  EXPECT_FALSE(check(u, {"psubscribe", "news.*"}));
  EXPECT_FALSE(check(u, {"unsubscribe", "chat"}));
  for (std::vector<std::string_view> argv : {std::vector<std::string_view>{"publish", "chat", "m"},
                                             {"spublish", "chat", "m"},
                                             {"subscribe", "news.a", "chat"},
                                             {"ssubscribe", "chat"},
                                             {"psubscribe", "news.a*"}}) {
    auto d = check(u, argv);
    ASSERT_TRUE(d) << argv[0];
    EXPECT_EQ(d->reason, "channel");
    EXPECT_EQ(d->error, "NOPERM this user has no permissions to access one of the channels used as arguments");
  }
}

TEST_F(AclCheck, ClientInfoHasRedisFields) {
  ClientState c;
  c.id = 7;
  c.addr = "1.2.3.4:5";
  std::string info = client_info(c, 0);
  for (auto f : {"id=7 ", "addr=1.2.3.4:5", "tot-mem=", "psub=", "user=default", "resp=2"})
    EXPECT_NE(info.find(f), std::string::npos) << f;
}

}  // namespace
}  // namespace keel::resp

// Token revocation (security/token.h "Revocation", security/acl.h): ids per block, revoking a
// token refuses it and every token attenuated from it (and no sibling), ACL REVOKE's argument
// forms and their errors, the metadata value, and which entries may be pruned.
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "security/acl.h"
#include "security/token.h"

namespace keel::security {
namespace {

std::array<unsigned char, 32> seed(unsigned char b) {
  std::array<unsigned char, 32> s{};
  s.fill(b);
  s[0] = 0x24;
  return s;
}

const std::string kCert = std::string(64, 'c');
constexpr int64_t kNow = 1'800'000'000;

struct Revocation : ::testing::Test {
  TokenKey root = *TokenKey::ed25519_from_seed(seed(1));
  Acl acl{CommandCatalog({{"get", cat_bit(kCatRead), false}, {"set", cat_bit(kCatWrite), false}})};
  void SetUp() override {
    acl.set_token_key(std::make_shared<const TokenKey>(*TokenKey::ed25519_from_seed(seed(1))));
    User u = new_user("orders");
    std::string bad;
    const std::vector<std::string> rules = {"on", "nopass", "allkeys", "allcommands"};
    ASSERT_TRUE(apply_rules(u, rules, acl.catalog(), &bad));
    acl.put(std::move(u));
  }
  std::string issue(int64_t ttl = 3600) {
    TokenBlock b;
    b.user = "orders";
    b.cert_sha256 = kCert;
    b.expires_s = kNow + ttl;
    return *issue_token(root, b, seed(2));
  }
  static std::string attenuate(const std::string& t, unsigned char s, int64_t expires_s = 0) {
    TokenBlock b;
    b.commands = {"+get"};
    b.expires_s = expires_s;
    return *attenuate_token(t, b, seed(s));
  }
  Result<Acl::TokenLogin> login(const std::string& t) { return acl.authenticate_token("", t, kCert, kNow * 1000); }
  void revoke(const std::string& token) {
    std::string_view arg = token;
    auto r = parse_revoke_request(std::span(&arg, 1), kNow);
    ASSERT_TRUE(r) << r.error().message;
    acl.put_revocation(*r);
  }
};

TEST_F(Revocation, IdsNameEachBlockAndArePrefixesOfDescendants) {
  std::string t0 = issue();
  std::string t1 = attenuate(t0, 3);
  std::string t2 = attenuate(t1, 4);
  auto a = revocation_target(t0), b = revocation_target(t1), c = revocation_target(t2);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->ids.size(), 1u);
  EXPECT_EQ(c->ids.size(), 3u);
  EXPECT_EQ(c->ids[0], a->id);
  EXPECT_EQ(c->ids[1], b->id);
  EXPECT_EQ(c->id, c->ids[2]);
  EXPECT_TRUE(is_revocation_id(a->id));
  EXPECT_EQ(a->id.size(), kRevocationIdHexDigits);
  EXPECT_EQ(a->user, "orders");
  EXPECT_EQ(a->expires_s, kNow + 3600);
  // An attenuation with a shorter expiry: the target's expiry is the earliest.
  auto d = revocation_target(attenuate(t0, 5, kNow + 60));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->expires_s, kNow + 60);
  // The grant carries the same ids.
  auto g = login(t2);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(g->grant->revocation_ids, c->ids);
}

TEST_F(Revocation, RevokingATokenRefusesItAndItsDescendantsNotItsSiblingsOrParent) {
  std::string root_token = issue();
  std::string child = attenuate(root_token, 3);
  std::string grandchild = attenuate(child, 4);
  std::string sibling = attenuate(root_token, 5);
  for (auto* t : {&root_token, &child, &grandchild, &sibling}) ASSERT_TRUE(login(*t)) << *t;  // cached now
  revoke(child);
  EXPECT_TRUE(login(root_token));
  EXPECT_TRUE(login(sibling));
  auto e = login(child);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("revoked: the token (revocation id " + revocation_target(child)->id + ") was revoked"),
            std::string::npos)
      << e.error().message;
  e = login(grandchild);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("a token it was attenuated from"), std::string::npos) << e.error().message;
  // Revoking the root refuses the whole family; lifting the entry restores it.
  revoke(root_token);
  EXPECT_FALSE(login(sibling));
  acl.erase_revocation(revocation_target(root_token)->id);
  acl.erase_revocation(revocation_target(child)->id);
  EXPECT_TRUE(login(grandchild));
}

TEST_F(Revocation, EachChangeMovesTheGeneration) {
  uint64_t g = acl.generation();
  revoke(issue());
  EXPECT_GT(acl.generation(), g);
  g = acl.generation();
  acl.replace_revocations({});
  EXPECT_GT(acl.generation(), g);
  EXPECT_TRUE(acl.revocations().empty());
}

TEST(RevokeRequest, FormsAndErrors) {
  auto parse = [](std::vector<std::string_view> args) { return parse_revoke_request(args, kNow); };
  const std::string id(32, 'a');
  auto r = parse({id, "1900000000"});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, id);
  EXPECT_EQ(r->expires_s, 1900000000);
  EXPECT_EQ(r->revoked_at_s, kNow);
  EXPECT_EQ(r->user, "");
  auto e = parse({id});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("revoking by id needs the unix time its token expires"), std::string::npos);
  e = parse({id, "soon"});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("'soon' is not an expiry; allowed: the unix time in seconds"), std::string::npos);
  e = parse({id, "-5"});
  ASSERT_FALSE(e);
  e = parse({"not-an-id"});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("'not-an-id' cannot be revoked; allowed: the token itself (kt1....), or a revocation id"),
            std::string::npos);
  e = parse({std::string(32, 'A')});  // upper case is not an id
  ASSERT_FALSE(e);
  e = parse({});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("nothing to revoke"), std::string::npos);
  e = parse({"kt1.garbage"});
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message.find("the token cannot be read: "), std::string::npos);
}

TEST(RevocationValue, RoundTripAndBadValues) {
  Acl::Revocation r{std::string(32, 'b'), 1900000000, "orders", kNow};
  auto back = decode_revocation(r.id, encode_revocation(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->id, r.id);
  EXPECT_EQ(back->expires_s, r.expires_s);
  EXPECT_EQ(back->user, r.user);
  EXPECT_EQ(back->revoked_at_s, r.revoked_at_s);
  EXPECT_FALSE(decode_revocation("short", encode_revocation(r)));
  EXPECT_FALSE(decode_revocation(r.id, "not json"));
  EXPECT_FALSE(decode_revocation(r.id, R"({"user":"x"})"));
  EXPECT_FALSE(decode_revocation(r.id, R"({"expires_s":"1"})"));
}

TEST(RevocationPrune, OnlyAfterTheGraceAndBounded) {
  std::vector<Acl::Revocation> all;
  for (int i = 0; i < 10; ++i) all.push_back({std::string(31, 'a') + char('0' + i), kNow - i * 100, "", 0});
  // Expired more than kRevocationGraceS (300 s) ago: i = 4..9 (expired 400..900 s ago).
  auto ids = prunable_revocations(all, kNow, 100);
  ASSERT_EQ(ids.size(), 6u);
  EXPECT_EQ(ids.front(), all[4].id);
  EXPECT_EQ(prunable_revocations(all, kNow, 2).size(), 2u);
  // Exactly at the grace: kept (a node whose clock is behind may still take the token).
  EXPECT_TRUE(prunable_revocations({{std::string(32, 'f'), kNow - kRevocationGraceS, "", 0}}, kNow, 10).empty());
  EXPECT_TRUE(prunable_revocations({{std::string(32, 'f'), kNow + 3600, "", 0}}, kNow, 10).empty());
}

}  // namespace
}  // namespace keel::security

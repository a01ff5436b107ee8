#include "security/meta_redact.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "security/acl.h"

namespace keel::security {
namespace {

TEST(MetaRedact, OtherDomainsAreShownAsStored) {
  EXPECT_FALSE(is_security_domain("app"));
  EXPECT_FALSE(redact_meta_value("app", "users/x", "on #abc ~* +@all").has_value());
  EXPECT_FALSE(redact_meta_value("routes", "a", "#x").has_value());
  EXPECT_EQ(generic_write_refusal("app"), "");
}

TEST(MetaRedact, UserHashesAreReplacedAndRulesKept) {
  User u = new_user("alice");
  u.enabled = true;
  u.passwords = {"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo", "$argon2id$v=19$m=1,t=1,p=1$AA$BB"};
  u.keys = {"orders:*"};
  const std::string stored = u.describe();
  auto shown = redact_meta_value("acl", "users/alice", stored);
  ASSERT_TRUE(shown.has_value());
  EXPECT_EQ(shown->find("argon2"), std::string::npos) << *shown;
  EXPECT_EQ(shown->find("aGFzaGhhc2hoYXNo"), std::string::npos) << *shown;
  EXPECT_EQ(shown->substr(0, 28), "on #<redacted> #<redacted> ~");
  EXPECT_NE(shown->find("~orders:*"), std::string::npos);
  // Same number of words: only the secrets changed.
  auto words = [](const std::string& s) { return std::count(s.begin(), s.end(), ' '); };
  EXPECT_EQ(words(*shown), words(stored));
}

TEST(MetaRedact, EverySecretLookingWordIsHidden) {
  auto shown = redact_meta_value("acl", "users/x", ">plain <plain2 !hash #hash nopass");
  ASSERT_TRUE(shown.has_value());
  EXPECT_EQ(*shown, "><redacted> <<redacted> !<redacted> #<redacted> nopass");
  EXPECT_EQ(*redact_meta_value("acl", "users/x", ""), "");
}

TEST(MetaRedact, UnknownKeysOfTheDomainAreHiddenWholeRevocationsShown) {
  EXPECT_EQ(*redact_meta_value("acl", "keys/signing", "-----BEGIN PRIVATE KEY-----"), "<redacted>");
  EXPECT_FALSE(redact_meta_value("acl", "revoked/0123abcd", "1900000000").has_value());
}

TEST(MetaRedact, GenericWritesToTheSecurityDomainAreRefusedWithWhatToUse) {
  auto why = generic_write_refusal("acl");
  EXPECT_NE(why.find("ACL SETUSER"), std::string::npos);
  EXPECT_NE(why.find("keel token revoke"), std::string::npos);
}

}  // namespace
}  // namespace keel::security

// Transit keys (security/transit.h): each operation against its meaning, the bindings AES-GCM
// authenticates (key, version, context), retired versions, the stored form, and garbage.
#include "security/transit.h"

#include <gtest/gtest.h>

#include "base/base64.h"
#include "security/secrets.h"

namespace keel::security::transit {
namespace {

Key make(KeyType t = KeyType::kAes256Gcm, std::string name = "orders") {
  auto k = create(std::move(name), t, 1000);
  EXPECT_TRUE(k) << k.error().message;
  return *k;
}

TEST(Transit, EncryptThenDecryptGivesThePlaintextBackOnlyWithTheSameKeyAndContext) {
  Key k = make();
  auto ct = encrypt(k, "card 4111", "tenant-1");
  ASSERT_TRUE(ct) << ct.error().message;
  EXPECT_TRUE(ct->starts_with("keel:v1:"));
  EXPECT_EQ(ct->find("card"), std::string::npos);
  auto pt = decrypt(k, *ct, "tenant-1");
  ASSERT_TRUE(pt) << pt.error().message;
  EXPECT_EQ(*pt, "card 4111");
  // Two encryptions of the same plaintext differ (fresh nonce each).
  EXPECT_NE(*encrypt(k, "card 4111", "tenant-1"), *ct);
  // Another context, another key of the same name's material, another name: refused.
  auto other_ctx = decrypt(k, *ct, "tenant-2");
  ASSERT_FALSE(other_ctx);
  EXPECT_NE(other_ctx.error().message.find("authentication failed"), std::string::npos);
  Key same_name = make();
  EXPECT_FALSE(decrypt(same_name, *ct, "tenant-1"));
  Key renamed = k;
  renamed.name = "invoices";
  EXPECT_FALSE(decrypt(renamed, *ct, "tenant-1"));
  // One changed character anywhere in the base64 part: refused, never garbage.
  const size_t body = std::string("keel:v1:").size();
  for (size_t i = body; i < ct->size(); i += 3) {
    std::string bad = *ct;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    auto r = decrypt(k, bad, "tenant-1");
    EXPECT_FALSE(r && *r == "card 4111" && bad != *ct) << "changed at " << i;
  }
  // Empty plaintext works too.
  auto empty = encrypt(k, "", "");
  ASSERT_TRUE(empty);
  EXPECT_EQ(*decrypt(k, *empty, ""), "");
}

TEST(Transit, RotationKeepsOldVersionsUntilRetiredAndRewrapMovesToTheLatest) {
  Key k = make();
  auto v1 = *encrypt(k, "secret");
  ASSERT_TRUE(rotate(k));
  EXPECT_EQ(k.latest(), 2u);
  auto v2 = *encrypt(k, "secret");
  EXPECT_TRUE(v2.starts_with("keel:v2:"));
  EXPECT_EQ(*decrypt(k, v1), "secret");
  auto re = rewrap(k, v1);
  ASSERT_TRUE(re);
  EXPECT_TRUE(re->starts_with("keel:v2:"));
  EXPECT_EQ(*decrypt(k, *re), "secret");
  ASSERT_TRUE(set_min_decryption_version(k, 2));
  auto retired = decrypt(k, v1);
  ASSERT_FALSE(retired);
  EXPECT_NE(retired.error().message.find("below its min_decryption_version 2"), std::string::npos);
  EXPECT_EQ(*decrypt(k, *re), "secret");
  EXPECT_FALSE(set_min_decryption_version(k, 3));
  EXPECT_FALSE(set_min_decryption_version(k, 0));
  // A version the key never had.
  std::string future = "keel:v9:" + v2.substr(8);
  auto unknown = decrypt(k, future);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("version 9"), std::string::npos);
  // Relabelled: the version outside says 2, inside 1.
  std::string relabelled = "keel:v2:" + v1.substr(8);
  EXPECT_FALSE(decrypt(k, relabelled));
}

TEST(Transit, SignaturesVerifyWithTheirVersionAndNothingElse) {
  Key k = make(KeyType::kEd25519, "signer");
  auto s1 = sign(k, "hello");
  ASSERT_TRUE(s1) << s1.error().message;
  EXPECT_TRUE(*verify(k, "hello", *s1));
  EXPECT_FALSE(*verify(k, "hellO", *s1));
  ASSERT_TRUE(rotate(k));
  auto s2 = *sign(k, "hello");
  EXPECT_TRUE(s2.starts_with("keel:v2:"));
  EXPECT_TRUE(*verify(k, "hello", *s1));  // the old version still verifies
  EXPECT_TRUE(*verify(k, "hello", s2));
  // A signature relabelled with the other version does not verify.
  EXPECT_FALSE(*verify(k, "hello", "keel:v2:" + s1->substr(8)));
  auto pub = public_keys(k);
  ASSERT_EQ(pub.size(), 2u);
  EXPECT_EQ(pub[1].size(), 32u);
  EXPECT_NE(pub[1], pub[2]);
  // The wrong type of key for each operation is refused, naming both types.
  auto wrong = encrypt(k, "x");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("needs a key of type aes256-gcm"), std::string::npos);
  EXPECT_FALSE(sign(make(), "x"));
}

TEST(Transit, TheStoredFormRoundTripsAndGarbageIsRefused) {
  Key k = make(KeyType::kEd25519, "signer.v-2_x");
  ASSERT_TRUE(rotate(k));
  k.min_decryption_version = 2;
  k.deletion_allowed = true;
  auto back = decode(encode(k));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->name, k.name);
  EXPECT_EQ(back->type, k.type);
  EXPECT_EQ(back->versions, k.versions);
  EXPECT_EQ(back->min_decryption_version, 2u);
  EXPECT_TRUE(back->deletion_allowed);
  EXPECT_EQ(back->created_ms, 1000);
  for (std::string bad : {"", "{", "[]", "{\"name\":\"a\"}", "{\"name\":\"a\",\"type\":\"rsa\",\"versions\":{\"1\":\"AA==\"}}",
                          "{\"name\":\"a\",\"type\":\"ed25519\",\"versions\":{\"x\":\"AA==\"}}",
                          "{\"name\":\"a\",\"type\":\"ed25519\",\"versions\":{\"1\":\"AA==\"}}",
                          "{\"name\":\"a\",\"type\":\"ed25519\",\"versions\":{}}"}) {
    auto r = decode(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::kCorruption);
  }
}

TEST(Transit, NamesTypesAndMalformedOutputsGetClearErrors) {
  EXPECT_TRUE(check_name("orders-v2.prod_1"));
  auto space = check_name("bad name");
  ASSERT_FALSE(space);
  EXPECT_NE(space.error().message.find("allowed: letters, digits"), std::string::npos);
  EXPECT_FALSE(check_name(""));
  EXPECT_FALSE(check_name(std::string(129, 'a')));
  auto t = parse_type("rsa-2048");
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("allowed: aes256-gcm, ed25519"), std::string::npos);
  Key k = make();
  for (std::string bad : {"", "keel:", "keel:v", "keel:v0:AAAA", "keel:vx:AAAA", "keel:v1", "keel:v1:!!!", "vault:v1:AAAA",
                          "keel:v1:AAAA", "keel:v99999999999:AAAA"}) {
    auto r = decrypt(k, bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(output_version("nope"));
  EXPECT_EQ(*output_version("keel:v12:AAAA"), 12u);
  EXPECT_FALSE(encrypt(k, std::string(kMaxInputBytes + 1, 'x')));
}

}  // namespace
}  // namespace keel::security::transit

namespace keel::security::secrets {
namespace {

TEST(Secrets, VersionsAreAddedWithCompareAndSetAndTheOldestAreDropped) {
  Secret s{"db/password", {}, 0, 3};
  ASSERT_TRUE(add_version(s, "keel:v1:a", 10, 0u));  // CAS 0: must not exist yet
  auto lost = add_version(s, "keel:v1:b", 11, 0u);
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, Errc::kConflict);
  EXPECT_NE(lost.error().message.find("at version 1, not 0"), std::string::npos);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(add_version(s, "keel:v1:x" + std::to_string(i), 20 + i, std::nullopt));
  EXPECT_EQ(s.current, 5u);
  ASSERT_EQ(s.versions.size(), 3u);  // max_versions 3: 3, 4, 5 kept
  EXPECT_EQ(s.versions.begin()->first, 3u);
  auto back = decode(encode(s));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->current, 5u);
  EXPECT_EQ(back->max_versions, 3u);
  EXPECT_EQ(back->versions.at(5).sealed, "keel:v1:x3");
  EXPECT_EQ(back->versions.at(5).created_ms, 23);
  for (std::string bad : {"", "[]", "{\"path\":\"a\"}", "{\"path\":\"a\",\"current\":1,\"versions\":{\"2\":{\"sealed\":\"x\"}}}",
                          "{\"path\":\"a\",\"current\":1,\"versions\":{\"1\":{}}}"})
    EXPECT_FALSE(decode(bad)) << bad;
}

TEST(Secrets, VersionsAreSoftDeletedUndeletedAndDestroyed) {
  Secret s{"db/password", {}, 0, 10};
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(add_version(s, "keel:v1:" + std::to_string(i), i, std::nullopt));
  auto n = change_versions(s, VersionOp::kDelete, {2, 3}, 100);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(*change_versions(s, VersionOp::kDelete, {2}, 101), 0u);  // already deleted
  EXPECT_EQ(s.versions.at(2).deleted_ms, 100);
  EXPECT_EQ(s.versions.at(2).sealed, "keel:v1:2");  // the value stays until destroyed
  auto why = readable(s, 3);
  ASSERT_FALSE(why);
  EXPECT_NE(why.error().message.find("is deleted; SECRET.UNDELETE db/password VERSIONS 3 restores it"), std::string::npos)
      << why.error().message;
  EXPECT_TRUE(readable(s, 1));
  EXPECT_EQ(*change_versions(s, VersionOp::kUndelete, {3}, 102), 1u);
  EXPECT_TRUE(readable(s, 3));
  EXPECT_EQ(*change_versions(s, VersionOp::kDestroy, {2}, 103), 1u);
  EXPECT_TRUE(s.versions.at(2).sealed.empty());
  EXPECT_TRUE(s.versions.at(2).destroyed);
  why = readable(s, 2);
  ASSERT_FALSE(why);
  EXPECT_NE(why.error().message.find("is destroyed"), std::string::npos);
  auto back_from_destroyed = change_versions(s, VersionOp::kUndelete, {2}, 104);
  ASSERT_FALSE(back_from_destroyed);
  EXPECT_EQ(back_from_destroyed.error().code, Errc::kConflict);
  // Refusals change nothing: a version not kept, one named twice, none, too many.
  auto missing = change_versions(s, VersionOp::kDelete, {1, 9}, 105);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  EXPECT_NE(missing.error().message.find("has no version 9 (kept: 1 to 3)"), std::string::npos) << missing.error().message;
  EXPECT_EQ(s.versions.at(1).deleted_ms, 0);
  EXPECT_FALSE(change_versions(s, VersionOp::kDelete, {1, 1}, 105));
  EXPECT_FALSE(change_versions(s, VersionOp::kDelete, {}, 105));
  EXPECT_FALSE(change_versions(s, VersionOp::kDelete, std::vector<uint32_t>(101, 1), 105));
  // The states survive the stored form.
  auto back = decode(encode(s));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_TRUE(back->versions.at(2).destroyed);
  EXPECT_TRUE(back->versions.at(2).sealed.empty());
  EXPECT_EQ(back->versions.at(2).deleted_ms, 100);
  EXPECT_EQ(back->versions.at(3).deleted_ms, 0);
}

TEST(Secrets, PathsAreCheckedWithWhatIsAllowed) {
  EXPECT_TRUE(check_path("db/orders/password"));
  EXPECT_TRUE(check_path("a"));
  for (std::string bad : std::vector<std::string>{"", "/a", "a/", "a//b", "a b", "a/b?c", std::string(513, 'a')}) {
    auto r = check_path(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("allowed: segments"), std::string::npos);
  }
}

}  // namespace
}  // namespace keel::security::secrets

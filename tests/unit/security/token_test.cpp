// Certificate-bound tokens (security/token.h): issue, verify, attenuate; every refusal with
// its message; widening by editing a block, dropping blocks, another certificate, expiry;
// bounded parsing; and a property: an attenuated token never allows what its parent refused.
#include "security/token.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <array>
#include <string>

namespace keel::security {
namespace {

CommandCatalog catalog() {
  return CommandCatalog({
      {"get", cat_bit(kCatRead) | cat_bit(kCatString) | cat_bit(kCatFast), false},
      {"set", cat_bit(kCatWrite) | cat_bit(kCatString) | cat_bit(kCatSlow), false},
      {"del", cat_bit(kCatWrite) | cat_bit(kCatKeyspace) | cat_bit(kCatSlow), false},
      {"config", cat_bit(kCatAdmin) | cat_bit(kCatDangerous) | cat_bit(kCatSlow), true},
  });
}
constexpr uint16_t kGet = 0, kSet = 1, kDel = 2, kConfig = 3;

std::array<unsigned char, 32> seed(unsigned char b) {
  std::array<unsigned char, 32> s{};
  s.fill(b);
  s[0] = 0x42;
  return s;
}

const std::string kCert = std::string(64, 'a');
const std::string kOtherCert = std::string(64, 'b');
constexpr int64_t kNow = 1'800'000'000;

struct Fixture : ::testing::Test {
  CommandCatalog cat = catalog();
  TokenKey root = *TokenKey::ed25519_from_seed(seed(1));
  TokenBlock b0() {
    TokenBlock b;
    b.user = "orders";
    b.cert_sha256 = kCert;
    b.expires_s = kNow + 3600;
    b.commands = {"+@read", "+set"};
    b.keys = {"~orders:*"};
    return b;
  }
  std::string issue() { return *issue_token(root, b0(), seed(2)); }
  Result<TokenGrant> verify(const std::string& t, std::string_view cert = kCert, int64_t now = kNow) {
    VerifyInput in;
    in.now_s = now;
    in.cert_sha256 = cert;
    return verify_token(t, root, in, cat);
  }
  std::string error(const std::string& t, std::string_view cert = kCert, int64_t now = kNow) {
    auto g = verify(t, cert, now);
    return g ? "(verified)" : g.error().message;
  }
  static bool allows(const TokenGrant& g, uint16_t cmd, std::string_view key) {
    for (auto& u : g.limits)
      if (!u.can_run(cmd) || !u.key_allowed(key)) return false;
    return true;
  }
};

TEST_F(Fixture, IssuedTokenVerifiesAndCarriesItsClaims) {
  auto t = issue();
  EXPECT_TRUE(looks_like_token(t));
  auto g = verify(t);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(g->user, "orders");
  EXPECT_EQ(g->expires_s, kNow + 3600);
  EXPECT_EQ(g->blocks, 1u);
  EXPECT_TRUE(allows(*g, kGet, "orders:1"));
  EXPECT_TRUE(allows(*g, kSet, "orders:1"));
  EXPECT_FALSE(allows(*g, kDel, "orders:1"));
  EXPECT_FALSE(allows(*g, kGet, "users:1"));
}

TEST_F(Fixture, P256RootKeysWork) {
  // A P-256 key in PEM (generated once with openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256).
  const char* pem =
      "-----BEGIN PRIVATE KEY-----\n"
      "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgefwDaitHcoo+R63r\n"
      "Tel/qcVcSYYk9JwmwnIaOQPqV0qhRANCAASf5QRhqQ3kn1186XXGTo89+yKdEOH8\n"
      "R8hXXaXlPwVPAk7UBK6LUR15A8JoDogOk9G9XRSe/COjMGQoDZWczpz+\n"
      "-----END PRIVATE KEY-----\n";
  auto k = TokenKey::from_pem(pem);
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_FALSE(k->is_ed25519());
  auto t = issue_token(*k, b0(), seed(3));
  ASSERT_TRUE(t);
  auto pub = TokenKey::from_pem(k->public_pem());
  ASSERT_TRUE(pub);
  VerifyInput in{kNow, kCert, true};
  EXPECT_TRUE(verify_token(*t, *pub, in, cat));
  EXPECT_FALSE(verify_token(*t, root, in, cat));
}

TEST_F(Fixture, BindingToTheCertificate) {
  auto t = issue();
  EXPECT_EQ(error(t, kOtherCert),
            "the token is bound to another client certificate (sha256 aaaaaaaaaaaaaaaa...), this connection presented "
            "bbbbbbbbbbbbbbbb...; present the certificate the token was issued for");
  EXPECT_EQ(error(t, ""),
            "the token is bound to a client certificate (sha256 aaaaaaaaaaaaaaaa) and this connection presented none; "
            "use TLS with that certificate");
}

TEST_F(Fixture, Expiry) {
  auto t = issue();
  EXPECT_EQ(error(t, kCert, kNow + 3600), "the token expired 0 s ago; issue a new one (keel token issue)");
  EXPECT_TRUE(verify(t, kCert, kNow + 3599));
}

TEST_F(Fixture, AnotherRootKeyIsRefused) {
  TokenKey other = *TokenKey::ed25519_from_seed(seed(9));
  auto t = *issue_token(other, b0(), seed(2));
  EXPECT_EQ(error(t),
            "the token's signature does not verify with the cluster's token key (auth.token_public_key_file): it was "
            "changed or issued by another key");
}

// Rebuilds a token with block `i`'s JSON replaced (signatures kept).
std::string edit_block(const std::string& token, size_t i, const std::string& from, const std::string& to) {
  auto t = *parse_token(token);
  std::string body = t.parts[i].body;
  auto at = body.find(from);
  EXPECT_NE(at, std::string::npos);
  body.replace(at, from.size(), to);
  std::string out(kTokenPrefix);
  for (size_t k = 0; k < t.parts.size(); ++k) {
    if (k) out += ".";
    out += base64url_encode(k == i ? body : t.parts[k].body) + "." + base64url_encode(t.parts[k].signature);
  }
  return out + "~" + base64url_encode(t.proof);
}

TEST_F(Fixture, WideningByEditingBreaksTheSignature) {
  auto t = issue();
  EXPECT_EQ(error(edit_block(t, 0, "~orders:*", "~*")),
            "the token's signature does not verify with the cluster's token key (auth.token_public_key_file): it was "
            "changed or issued by another key");
  TokenBlock narrow;
  narrow.commands = {"-set"};
  auto a = *attenuate_token(t, narrow, seed(4));
  EXPECT_TRUE(verify(a));
  EXPECT_EQ(error(edit_block(a, 1, "-set", "+set")),
            "block 1's signature does not verify: the block was changed after it was signed");
}

TEST_F(Fixture, AttenuationNarrowsAndNeverWidens) {
  auto t = issue();
  TokenBlock narrow;
  narrow.commands = {"-@all", "+get", "+del"};  // +del: the parent refuses it, so it stays refused
  narrow.keys = {"~orders:eu:*", "~users:*"};
  narrow.expires_s = kNow + 60;
  auto a = attenuate_token(t, narrow, seed(5));
  ASSERT_TRUE(a) << a.error().message;
  auto g = verify(*a);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(g->blocks, 2u);
  EXPECT_EQ(g->expires_s, kNow + 60);
  EXPECT_TRUE(allows(*g, kGet, "orders:eu:1"));
  EXPECT_FALSE(allows(*g, kGet, "orders:us:1"));
  EXPECT_FALSE(allows(*g, kSet, "orders:eu:1"));
  EXPECT_FALSE(allows(*g, kDel, "orders:eu:1"));
  EXPECT_FALSE(allows(*g, kGet, "users:1"));
  // A later expiry in a block does not extend the token.
  TokenBlock later;
  later.expires_s = kNow + 999999;
  EXPECT_EQ(verify(*attenuate_token(*a, later, seed(6)))->expires_s, kNow + 60);
}

TEST_F(Fixture, AttenuationCannotChangeUserOrCertificate) {
  TokenBlock b;
  b.user = "admin";
  EXPECT_EQ(attenuate_token(issue(), b, seed(7)).error().message,
            "an attenuation cannot name a user or a certificate; it narrows commands, keys, channels and expiry");
}

TEST_F(Fixture, DroppingTheLastBlockIsRefused) {
  auto t = issue();
  TokenBlock narrow;
  narrow.commands = {"-set"};
  auto a = *attenuate_token(t, narrow, seed(4));
  auto p = *parse_token(a);
  // Block 0 alone with the attenuated token's proof: the proof matches block 1's key, not block 0's.
  std::string cut = std::string(kTokenPrefix) + base64url_encode(p.parts[0].body) + "." +
                    base64url_encode(p.parts[0].signature) + "~" + base64url_encode(p.proof);
  EXPECT_EQ(error(cut), "the token's proof key does not match its last block (blocks were removed)");
  std::string noproof = a.substr(0, a.find('~'));
  EXPECT_EQ(error(noproof),
            "the token carries no proof key (after '~'); present the whole token as issued or attenuated");
  VerifyInput in{kNow, kCert, false};  // a signed request proves the key by its signature
  EXPECT_TRUE(verify_token(noproof, root, in, cat));
}

TEST_F(Fixture, RulesOutsideTheAllowedFormsAreRefused) {
  auto b = b0();
  b.commands = {">password"};
  EXPECT_EQ(issue_token(root, b, seed(2)).error().message,
            "'>password' is not a command rule a token may carry; allowed: +command, -command, +@category, -@category, "
            "+command|sub, allcommands, nocommands");
  b = b0();
  b.keys = {"orders:*"};
  EXPECT_EQ(issue_token(root, b, seed(2)).error().message,
            "'orders:*' is not a key rule a token may carry; allowed: ~pattern (Redis glob, e.g. ~orders:*), allkeys");
  b = b0();
  b.commands = {"+nosuchcommand"};
  auto t = issue_token(root, b, seed(2));
  ASSERT_TRUE(t);
  EXPECT_EQ(error(*t).substr(0, 48), "the token's rule '+nosuchcommand' cannot be used");
}

// The node's door to tokens (Acl::authenticate_token): the user must exist and be on, a token
// verified before is served from the cache only for the same certificate and until it expires.
TEST_F(Fixture, AclAuthenticatesTokensAndCachesVerifiedOnes) {
  Acl acl(catalog());
  User orders = new_user("orders");
  ASSERT_TRUE(apply_rules(orders, std::vector<std::string>{"on", "nopass", "~*", "+@all"}, acl.catalog()));
  auto t = issue();
  EXPECT_EQ(acl.authenticate_token("", t, kCert, kNow * 1000).error().message,
            "tokens are not accepted on this node (set auth.token_public_key_file to the public key of `keel token init`)");
  acl.set_token_key(std::make_shared<const TokenKey>(*TokenKey::ed25519_public(root.raw_public())));
  EXPECT_EQ(acl.authenticate_token("", t, kCert, kNow * 1000).error().message,
            "the token's user 'orders' does not exist or is off");
  acl.put(orders);
  auto a = acl.authenticate_token("", t, kCert, kNow * 1000);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->user->name, "orders");
  auto b = acl.authenticate_token("orders", t, kCert, kNow * 1000 + 5);
  ASSERT_TRUE(b);
  EXPECT_EQ(a->grant.get(), b->grant.get());  // from the cache
  EXPECT_EQ(acl.authenticate_token("alice", t, kCert, kNow * 1000).error().message,
            "the token is for user 'orders', not 'alice'");
  EXPECT_FALSE(acl.authenticate_token("", t, kOtherCert, kNow * 1000));  // another certificate: verified, refused
  EXPECT_FALSE(acl.authenticate_token("", t, kCert, (kNow + 3600) * 1000));  // expired, cached or not
  EXPECT_EQ(acl.token_refusals(), 5u);
  orders.enabled = false;
  acl.put(orders);
  EXPECT_FALSE(acl.authenticate_token("", t, kCert, kNow * 1000));
}

TEST(TokenParse, BoundedWithClearErrors) {
  EXPECT_EQ(parse_token("Bearer x").error().message, "not a keel token (they start with 'kt1.')");
  EXPECT_EQ(parse_token(std::string(kTokenPrefix) + std::string(9000, 'A')).error().message,
            "the token has 9004 bytes; allowed: at most 8192");
  EXPECT_EQ(parse_token("kt1.AAAA").error().message, "the token must be pairs of block and signature separated by '.'");
  EXPECT_EQ(parse_token("kt1.A*A.AAAA").error().message,
            "block 0 is not base64url (A-Z a-z 0-9 - _ without padding)");
  std::string many = "kt1.";
  for (int i = 0; i < 20; ++i) many += "AAAA.AAAA.";
  EXPECT_EQ(parse_token(many).error().message, "the token has more than 8 blocks; allowed: at most 8");
  auto deep = "kt1." + base64url_encode("{\"cmds\":[[[\"x\"]]]}") + "." + base64url_encode("sig");
  EXPECT_EQ(parse_token(deep).error().message, "block 0 nests deeper than an object of lists");
  auto unknown = "kt1." + base64url_encode("{\"admin\":true}") + "." + base64url_encode("sig");
  EXPECT_EQ(parse_token(unknown).error().message,
            "block 0 has an unknown field 'admin'; allowed: user, cert, exp, cmds, keys, chans, next");
  auto notjson = "kt1." + base64url_encode("{\"cmds\":") + "." + base64url_encode("sig");
  EXPECT_EQ(parse_token(notjson).error().message, "block 0 is not a JSON object");
}

TEST(TokenBase64, RoundTrip) {
  rc::check("decode(encode(x)) == x", [](const std::string& s) {
    RC_ASSERT(base64url_decode(base64url_encode(s)) == s);
  });
  EXPECT_FALSE(base64url_decode("A"));
  EXPECT_FALSE(base64url_decode("AB"));  // non-canonical: 4 bits left over must be zero... "AB" leaves 0b0001
}

// An attenuated token never allows a command or key its parent refuses.
TEST(TokenProperty, AttenuationNeverWidens) {
  CommandCatalog cat = catalog();
  TokenKey root = *TokenKey::ed25519_from_seed(seed(1));
  const std::vector<std::string> cmd_rules = {"+@read", "-@read", "+@write", "-@write", "+get", "-get",
                                              "+set", "-set", "+del", "-del", "allcommands", "nocommands", "-@all"};
  const std::vector<std::string> key_rules = {"~a*", "~b*", "~ab*", "~*", "~a?", "allkeys"};
  const std::vector<std::string> keys = {"a", "ab", "abc", "b", "ba", "c", "a1"};
  rc::check([&] {
    TokenBlock b0;
    b0.user = "u";
    b0.cert_sha256 = kCert;
    b0.expires_s = kNow + 10;
    b0.commands = *rc::gen::container<std::vector<std::string>>(rc::gen::elementOf(cmd_rules));
    b0.keys = *rc::gen::container<std::vector<std::string>>(rc::gen::elementOf(key_rules));
    TokenBlock b1;
    b1.commands = *rc::gen::container<std::vector<std::string>>(rc::gen::elementOf(cmd_rules));
    b1.keys = *rc::gen::container<std::vector<std::string>>(rc::gen::elementOf(key_rules));
    RC_PRE(b0.commands.size() <= kMaxRules && b0.keys.size() <= kMaxRules && b1.commands.size() <= kMaxRules &&
           b1.keys.size() <= kMaxRules);
    auto t = issue_token(root, b0, seed(2));
    RC_ASSERT(t.has_value());
    auto a = attenuate_token(*t, b1, seed(3));
    RC_ASSERT(a.has_value());
    VerifyInput in{kNow, kCert, true};
    auto gp = verify_token(*t, root, in, cat);
    auto ga = verify_token(*a, root, in, cat);
    RC_ASSERT(gp.has_value() && ga.has_value());
    for (uint16_t cmd : {kGet, kSet, kDel, kConfig})
      for (auto& k : keys) {
        bool parent = true, child = true;
        for (auto& u : gp->limits) parent = parent && u.can_run(cmd) && u.key_allowed(k);
        for (auto& u : ga->limits) child = child && u.can_run(cmd) && u.key_allowed(k);
        RC_ASSERT(!child || parent);
      }
  });
}

}  // namespace
}  // namespace keel::security

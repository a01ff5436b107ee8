// Signed HTTP requests (security/http_signature.h): header parsing with its errors, the
// signature base, and the nonce store (replays refused, fails closed when full), with a
// property against a naive model.
#include "security/http_signature.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>

namespace keel::security {
namespace {

const std::string kInput =
    R"(sig1=("@method" "@path" "content-digest");created=1000;expires=1060;nonce="n-1";keyid="token")";
const std::string kDigest = "sha-256=:" + base64_encode(std::string(32, 'x')) + ":";

TEST(SignatureInput, Parses) {
  auto in = parse_signature_input(kInput);
  ASSERT_TRUE(in) << in.error().message;
  EXPECT_EQ(in->label, "sig1");
  EXPECT_EQ(in->components, (std::vector<std::string>{"@method", "@path", "content-digest"}));
  EXPECT_EQ(in->created_s, 1000);
  EXPECT_EQ(in->expires_s, 1060);
  EXPECT_EQ(in->nonce, "n-1");
  EXPECT_EQ(in->keyid, "token");
  EXPECT_EQ(in->params, kInput.substr(5));
}

TEST(SignatureInput, ErrorsSayWhatIsAllowed) {
  EXPECT_EQ(parse_signature_input("sig1=(\"@method\");foo=1").error().message,
            "Signature-Input: unknown parameter 'foo'; allowed: created, expires, nonce, keyid, alg, tag");
  EXPECT_EQ(parse_signature_input("sig1=(\"@method\");created=-5").error().message,
            "Signature-Input: 'created' must be a positive integer (unix seconds)");
  EXPECT_EQ(parse_signature_input("sig1=(\"@method\");created=1;created=2").error().message,
            "Signature-Input: parameter 'created' given twice");
  EXPECT_EQ(parse_signature_input(std::string(2000, 'a')).error().message,
            "Signature-Input has 2000 bytes; allowed: at most 1024");
  EXPECT_TRUE(parse_signature_input("sig1=(@method)").error().message.starts_with(
      "Signature-Input: each covered component must be a quoted string"));
  EXPECT_TRUE(parse_signature_input("(\"@method\")").error().message.starts_with(
      "Signature-Input must start with a label and '='"));
}

TEST(Signature, ParsesTheLabelledMember) {
  std::string sig = std::string(64, '\x07');
  auto s = parse_signature("other=:AAAA:, sig1=:" + base64_encode(sig) + ":", "sig1");
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(*s, sig);
  EXPECT_EQ(parse_signature("sig2=:AAAA:", "sig1").error().message,
            "Signature has no member 'sig1' (the label in Signature-Input)");
  EXPECT_EQ(parse_signature("sig1=:A*AA:", "sig1").error().message, "Signature: the signature is not base64");
}

TEST(SignatureBase, Rfc9421Form) {
  auto in = *parse_signature_input(kInput);
  RequestFacts req{"POST", "/v1/kv/x", "", kDigest, "body"};
  auto base = signature_base(in, req, 1010, 300);
  ASSERT_TRUE(base) << base.error().message;
  EXPECT_EQ(*base, "\"@method\": POST\n\"@path\": /v1/kv/x\n\"content-digest\": " + kDigest +
                       "\n\"@signature-params\": " + kInput.substr(5));
}

TEST(SignatureBase, TimesAndComponents) {
  auto in = *parse_signature_input(kInput);
  RequestFacts req{"POST", "/v1/kv/x", "", kDigest, ""};
  EXPECT_EQ(signature_base(in, req, 1060, 300).error().message, "the signature expired 0 s ago");
  EXPECT_EQ(signature_base(in, req, 990, 300).error().message,
            "the signature was created 10 s in the future; allowed: at most 5 s of clock skew");
  EXPECT_EQ(signature_base(in, req, 1010, 30).error().message,
            "the signature is valid for 60 s; allowed: at most 30 s (auth.signature_window_s)");
  auto partial = *parse_signature_input(R"(sig1=("@method" "@path");created=1000;expires=1060;nonce="n")");
  EXPECT_EQ(signature_base(partial, req, 1010, 300).error().message,
            "the signature must cover \"content-digest\"; it must cover \"@method\", \"@path\" and \"content-digest\" "
            "(\"@query\" may be added)");
  auto nononce = *parse_signature_input(R"(sig1=("@method" "@path" "content-digest");created=1000;expires=1060)");
  EXPECT_EQ(signature_base(nononce, req, 1010, 300).error().message,
            "the signature needs a 'nonce' of 1..128 characters, fresh for every request");
}

TEST(NonceStore, RefusesReplaysAndFailsClosedWhenFull) {
  NonceStore s(2);
  EXPECT_EQ(s.admit("a", 100, 10), NonceStore::Admit::kOk);
  EXPECT_EQ(s.admit("a", 100, 11), NonceStore::Admit::kReplay);
  EXPECT_EQ(s.admit("b", 50, 12), NonceStore::Admit::kOk);
  EXPECT_EQ(s.admit("c", 100, 13), NonceStore::Admit::kFull);  // never accepted unchecked
  EXPECT_EQ(s.admit("c", 100, 50), NonceStore::Admit::kOk);    // b expired: room again
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.admit("a", 100, 99), NonceStore::Admit::kReplay);
  EXPECT_EQ(s.admit("a", 200, 100), NonceStore::Admit::kOk);  // a's signature expired: its nonce is forgotten
}

// Against a model that remembers every nonce forever and checks expiry by scanning.
TEST(NonceStore, MatchesModel) {
  rc::check([] {
    const size_t cap = *rc::gen::inRange<size_t>(1, 6);
    NonceStore s(cap);
    std::map<std::string, int64_t> model;
    int64_t now = 0;
    const auto ops = *rc::gen::container<std::vector<std::pair<int, int>>>(
        rc::gen::pair(rc::gen::inRange(0, 8), rc::gen::inRange(1, 20)));
    for (auto [key, ttl] : ops) {
      now += 1;
      std::erase_if(model, [&](auto& kv) { return kv.second <= now; });
      std::string k = std::to_string(key);
      NonceStore::Admit want = model.count(k) ? NonceStore::Admit::kReplay
                               : model.size() >= cap ? NonceStore::Admit::kFull
                                                     : NonceStore::Admit::kOk;
      if (want == NonceStore::Admit::kOk) model[k] = now + ttl;
      RC_ASSERT(s.admit(k, now + ttl, now) == want);
      RC_ASSERT(s.size() == model.size());
    }
  });
}

TEST(Base64, RoundTrip) {
  rc::check([](const std::string& x) { RC_ASSERT(base64_decode(base64_encode(x)) == x); });
}

}  // namespace
}  // namespace keel::security

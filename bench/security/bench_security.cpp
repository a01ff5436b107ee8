// Token verifications and request-signature checks per second (docs/benchmarks.md, "Tokens
// and signed requests"). The verification core only: no sockets, no clock.
#include <benchmark/benchmark.h>

#include <array>
#include <string>

#include "security/http_signature.h"
#include "security/token.h"

using namespace keel::security;

namespace {

std::array<unsigned char, 32> seed(unsigned char b) {
  std::array<unsigned char, 32> s{};
  s.fill(b);
  return s;
}

CommandCatalog catalog() {
  std::vector<CatalogEntry> e;
  for (int i = 0; i < 200; ++i)  // about the size of keel's command table
    e.push_back({"cmd" + std::to_string(i), cat_bit(i % 2 ? kCatRead : kCatWrite) | cat_bit(kCatFast), false});
  return CommandCatalog(std::move(e));
}

const std::string kCert(64, 'a');

std::string token_with_blocks(const TokenKey& root, int blocks) {
  TokenBlock b0;
  b0.user = "orders";
  b0.cert_sha256 = kCert;
  b0.expires_s = 2'000'000'000;
  b0.commands = {"+@read", "+cmd2"};
  b0.keys = {"~orders:*"};
  std::string t = *issue_token(root, b0, seed(2));
  for (int i = 1; i < blocks; ++i) {
    TokenBlock b;
    b.commands = {"-cmd" + std::to_string(i)};
    t = *attenuate_token(t, b, seed(static_cast<unsigned char>(10 + i)));
  }
  return t;
}

void BM_VerifyToken(benchmark::State& state) {
  const CommandCatalog cat = catalog();
  const TokenKey root = *TokenKey::ed25519_from_seed(seed(1));
  const std::string t = token_with_blocks(root, static_cast<int>(state.range(0)));
  VerifyInput in{1'800'000'000, kCert, true};
  for (auto _ : state) {
    auto g = verify_token(t, root, in, cat);
    if (!g) state.SkipWithError(g.error().message.c_str());
    benchmark::DoNotOptimize(g);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyToken)->Arg(1)->Arg(3)->Arg(8);

void BM_VerifyTokenP256Root(benchmark::State& state) {
  const CommandCatalog cat = catalog();
  const char* pem =
      "-----BEGIN PRIVATE KEY-----\n"
      "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgefwDaitHcoo+R63r\n"
      "Tel/qcVcSYYk9JwmwnIaOQPqV0qhRANCAASf5QRhqQ3kn1186XXGTo89+yKdEOH8\n"
      "R8hXXaXlPwVPAk7UBK6LUR15A8JoDogOk9G9XRSe/COjMGQoDZWczpz+\n"
      "-----END PRIVATE KEY-----\n";
  const TokenKey root = *TokenKey::from_pem(pem);
  const std::string t = token_with_blocks(root, 1);
  VerifyInput in{1'800'000'000, kCert, true};
  for (auto _ : state) {
    auto g = verify_token(t, root, in, cat);
    if (!g) state.SkipWithError(g.error().message.c_str());
    benchmark::DoNotOptimize(g);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_VerifyTokenP256Root);

// What a repeated Bearer token costs at the door: Acl's cache of verified tokens.
void BM_AclTokenCached(benchmark::State& state) {
  Acl acl(catalog());
  User u = new_user("orders");
  (void)apply_rules(u, std::vector<std::string>{"on", "nopass", "~*", "+@all"}, acl.catalog());
  acl.put(u);
  const TokenKey root = *TokenKey::ed25519_from_seed(seed(1));
  acl.set_token_key(std::make_shared<const TokenKey>(*TokenKey::ed25519_public(root.raw_public())));
  const std::string t = token_with_blocks(root, 1);
  for (auto _ : state) {
    auto l = acl.authenticate_token("", t, kCert, 1'800'000'000'000);
    if (!l) state.SkipWithError(l.error().message.c_str());
    benchmark::DoNotOptimize(l);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AclTokenCached);

// A signed request as the HTTP door checks it: parse both headers, build the signature base,
// verify the Ed25519 signature, admit the nonce.
void BM_SignedRequest(benchmark::State& state) {
  const TokenKey holder = *TokenKey::ed25519_from_seed(seed(7));
  const std::string digest = "sha-256=:" + base64_encode(sha256_raw("{\"value\":1}")) + ":";
  NonceStore nonces(1 << 20);
  int64_t n = 0;
  std::vector<std::pair<std::string, std::string>> reqs;
  for (int i = 0; i < 1024; ++i) {
    std::string input = "sig1=(\"@method\" \"@path\" \"content-digest\");created=1000;expires=1060;nonce=\"n" +
                        std::to_string(i) + "\";keyid=\"token\"";
    auto in = *parse_signature_input(input);
    auto base = *signature_base(in, {"PUT", "/v1/kv/orders:1", "", digest, "{\"value\":1}"}, 1001, 300);
    reqs.emplace_back(input, "sig1=:" + base64_encode(*holder.sign(base)) + ":");
  }
  const TokenKey pub = *TokenKey::ed25519_public(holder.raw_public());
  for (auto _ : state) {
    auto& [input, sigh] = reqs[static_cast<size_t>(n++ % 1024)];
    auto in = parse_signature_input(input);
    auto sig = parse_signature(sigh, in->label);
    auto base = signature_base(*in, {"PUT", "/v1/kv/orders:1", "", digest, "{\"value\":1}"}, 1001, 300);
    bool ok = pub.verify(*base, *sig);
    if (!ok) state.SkipWithError("bad signature");
    // Distinct nonce keys per iteration; the store's bound is never reached here.
    benchmark::DoNotOptimize(nonces.admit(std::to_string(n), 1060 + n, 1001));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SignedRequest);

void BM_NonceAdmit(benchmark::State& state) {
  NonceStore nonces(100000);
  int64_t now = 0, n = 0;
  for (auto _ : state) {
    ++n;
    if (n % 100 == 0) ++now;
    benchmark::DoNotOptimize(nonces.admit("holder:" + std::to_string(n), now + 300, now));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NonceAdmit);

}  // namespace

BENCHMARK_MAIN();

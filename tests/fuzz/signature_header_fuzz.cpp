// Signed-request headers (security/http_signature.h) from untrusted text: Signature-Input and
// Signature (the input's first line, then the rest), the signature base and the nonce store
// must answer every input with a value or a clear error, bounded, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "security/http_signature.h"

using namespace keel::security;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static NonceStore nonces(64);
  std::string_view text(reinterpret_cast<const char*>(data), size);
  size_t nl = text.find('\n');
  std::string_view input = text.substr(0, nl);
  std::string_view signature = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
  auto in = parse_signature_input(input);
  if (!in) {
    if (in.error().message.empty()) __builtin_trap();
    return 0;
  }
  if (in->params.size() > input.size()) __builtin_trap();
  auto sig = parse_signature(signature, in->label);
  if (!sig && sig.error().message.empty()) __builtin_trap();
  static const std::string digest = "sha-256=:" + base64_encode(std::string(32, 'x')) + ":";
  RequestFacts facts{"POST", "/v1/kv/x", "a=1", digest, "body"};
  auto base = signature_base(*in, facts, in->created_s + 1, 300);
  if (!base) {
    if (base.error().message.empty()) __builtin_trap();
    return 0;
  }
  size_t before = nonces.size();
  auto a = nonces.admit(in->nonce, in->expires_s, in->created_s + 1);
  if (nonces.size() > nonces.capacity()) __builtin_trap();
  if (a == NonceStore::Admit::kOk && nonces.size() > before + 1) __builtin_trap();
  return 0;
}

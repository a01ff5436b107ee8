#include "security/tls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ssl/context.hpp>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

namespace keel::security {
namespace {

std::string reason(const boost::system::error_code& ec) {
  std::string r = ec.message();
  unsigned long e = ERR_peek_last_error();
  if (e && r.empty()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    r = buf;
  }
  ERR_clear_error();
  return r;
}

bool readable(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  std::fclose(f);
  return true;
}

}  // namespace

Result<ClientAuth> parse_client_auth(std::string_view text) {
  if (text == "yes") return ClientAuth::kYes;
  if (text == "no") return ClientAuth::kNo;
  if (text == "optional") return ClientAuth::kOptional;
  return make_error(Errc::kInvalidArgument, fmt::format("'{}' is not allowed; allowed: yes, no, optional", text));
}

std::string_view client_auth_name(ClientAuth a) {
  switch (a) {
    case ClientAuth::kYes: return "yes";
    case ClientAuth::kNo: return "no";
    case ClientAuth::kOptional: return "optional";
  }
  return "yes";
}

Result<std::shared_ptr<boost::asio::ssl::context>> make_server_context(const TlsServerFiles& f) {
  namespace ssl = boost::asio::ssl;
  auto bad = [](const std::string& key, const std::string& file, const std::string& what) {
    return make_error(Errc::kInvalidArgument, fmt::format("{}: {}: {}", key, file, what));
  };
  if (f.cert_file.empty()) return make_error(Errc::kInvalidArgument, f.cert_key + ": must be set when TLS is on");
  if (f.key_file.empty()) return make_error(Errc::kInvalidArgument, f.key_key + ": must be set when TLS is on");
  if (!readable(f.cert_file)) return bad(f.cert_key, f.cert_file, "cannot read the file");
  if (!readable(f.key_file)) return bad(f.key_key, f.key_file, "cannot read the file");
  if (!f.ca_cert_file.empty() && !readable(f.ca_cert_file)) return bad(f.ca_key, f.ca_cert_file, "cannot read the file");
  if (f.auth != ClientAuth::kNo && f.ca_cert_file.empty())
    return make_error(Errc::kInvalidArgument,
                      fmt::format("{}: must be set when tls.auth_clients is {} (client certificates are checked against it)",
                                  f.ca_key, client_auth_name(f.auth)));

  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(f.cert_file, ec);
  if (ec) return bad(f.cert_key, f.cert_file, "not a PEM certificate (" + reason(ec) + ")");
  EVP_PKEY* key = nullptr;
  if (BIO* bio = BIO_new_file(f.key_file.c_str(), "r")) {
    key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
  }
  if (!key) {
    ERR_clear_error();
    return bad(f.key_key, f.key_file, "not a PEM private key (or an encrypted one: keel needs it unencrypted)");
  }
  const bool loaded = SSL_CTX_use_PrivateKey(native, key) == 1;
  EVP_PKEY_free(key);
  if (!loaded || SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return bad(f.key_key, f.key_file, fmt::format("the key does not belong to the certificate in {} ({})", f.cert_key, f.cert_file));
  }
  if (X509* cert = SSL_CTX_get0_certificate(native)) {
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
      return bad(f.cert_key, f.cert_file, "the certificate has expired; issue a new one (`keel cert issue`)");
  }
  if (!f.ca_cert_file.empty()) {
    ctx->load_verify_file(f.ca_cert_file, ec);
    if (ec) return bad(f.ca_key, f.ca_cert_file, "not a PEM CA certificate (" + reason(ec) + ")");
    // Clients are told which CA to present a certificate from.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(f.ca_cert_file.c_str()))
      SSL_CTX_set_client_CA_list(native, names);
    ERR_clear_error();
  }
  switch (f.auth) {
    case ClientAuth::kYes: ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert); break;
    case ClientAuth::kOptional: ctx->set_verify_mode(ssl::verify_peer); break;
    case ClientAuth::kNo: ctx->set_verify_mode(ssl::verify_none); break;
  }
  static const unsigned char kSessionCtx[] = "keel-resp";
  SSL_CTX_set_session_id_context(native, kSessionCtx, sizeof kSessionCtx - 1);
  return ctx;
}

}  // namespace keel::security

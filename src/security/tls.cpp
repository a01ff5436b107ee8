#include "security/tls.h"

#include "security/identity.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/ssl/context.hpp>
#include <algorithm>
#include <cstdio>
#include <ctime>

#include <sys/stat.h>

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

namespace {

using CtxPtr = std::shared_ptr<boost::asio::ssl::context>;

Status bad_file(const std::string& key, const std::string& file, const std::string& what) {
  return make_error(Errc::kInvalidArgument, fmt::format("{}: {}: {}", key, file, what));
}

// The checks shared by both sides: files readable, the certificate and its key loaded and
// matching, not expired, the CA loaded (when named). TLS 1.2 and 1.3 only.
Status load_common(boost::asio::ssl::context& ctx, const TlsServerFiles& f) {
  namespace ssl = boost::asio::ssl;
  if (f.cert_file.empty()) return make_error(Errc::kInvalidArgument, f.cert_key + ": must be set when TLS is on");
  if (f.key_file.empty()) return make_error(Errc::kInvalidArgument, f.key_key + ": must be set when TLS is on");
  if (!readable(f.cert_file)) return bad_file(f.cert_key, f.cert_file, "cannot read the file");
  if (!readable(f.key_file)) return bad_file(f.key_key, f.key_file, "cannot read the file");
  if (!f.ca_cert_file.empty() && !readable(f.ca_cert_file)) return bad_file(f.ca_key, f.ca_cert_file, "cannot read the file");
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX* native = ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  boost::system::error_code ec;
  ctx.use_certificate_chain_file(f.cert_file, ec);
  if (ec) return bad_file(f.cert_key, f.cert_file, "not a PEM certificate (" + reason(ec) + ")");
  EVP_PKEY* key = nullptr;
  if (BIO* bio = BIO_new_file(f.key_file.c_str(), "r")) {
    key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
  }
  if (!key) {
    ERR_clear_error();
    return bad_file(f.key_key, f.key_file, "not a PEM private key (or an encrypted one: keel needs it unencrypted)");
  }
  const bool loaded = SSL_CTX_use_PrivateKey(native, key) == 1;
  EVP_PKEY_free(key);
  if (!loaded || SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    return bad_file(f.key_key, f.key_file,
                    fmt::format("the key does not belong to the certificate in {} ({})", f.cert_key, f.cert_file));
  }
  if (X509* cert = SSL_CTX_get0_certificate(native)) {
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
      return bad_file(f.cert_key, f.cert_file, "the certificate has expired; issue a new one (`keel cert issue`)");
  }
  if (!f.ca_cert_file.empty()) {
    ctx.load_verify_file(f.ca_cert_file, ec);
    if (ec) return bad_file(f.ca_key, f.ca_cert_file, "not a PEM CA certificate (" + reason(ec) + ")");
  }
  return {};
}

}  // namespace

Result<std::shared_ptr<boost::asio::ssl::context>> make_server_context(const TlsServerFiles& f) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  if (auto st = load_common(*ctx, f); !st) return std::unexpected(st.error());
  SSL_CTX* native = ctx->native_handle();
  if (f.auth != ClientAuth::kNo && f.ca_cert_file.empty())
    return make_error(Errc::kInvalidArgument,
                      fmt::format("{}: must be set when tls.auth_clients is {} (client certificates are checked against it)",
                                  f.ca_key, client_auth_name(f.auth)));
  if (!f.ca_cert_file.empty()) {
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
  const std::string sid = "keel-" + f.door;
  SSL_CTX_set_session_id_context(native, reinterpret_cast<const unsigned char*>(sid.data()),
                                 static_cast<unsigned>(std::min<size_t>(sid.size(), SSL_MAX_SID_CTX_LENGTH)));
  return ctx;
}

Result<std::shared_ptr<boost::asio::ssl::context>> make_client_context(const TlsServerFiles& f) {
  namespace ssl = boost::asio::ssl;
  if (f.ca_cert_file.empty())
    return make_error(Errc::kInvalidArgument,
                      f.ca_key + ": must be set: the certificates of the servers dialled are checked against it");
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  if (auto st = load_common(*ctx, f); !st) return std::unexpected(st.error());
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

std::vector<std::string> peer_certificate_uris(const ssl_st* ssl) {
  std::vector<std::string> out;
  if (!ssl) return out;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert) return out;
  if (auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && out.size() < 16; ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
      if (gn->type != GEN_URI) continue;
      const ASN1_STRING* s = gn->d.uniformResourceIdentifier;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(names);
  }
  return out;
}

std::string peer_certificate_sha256(const ssl_st* ssl) {
  if (!ssl) return {};
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert) return {};
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!X509_digest(cert, EVP_sha256(), md, &n)) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

Result<std::shared_ptr<PeerTls>> PeerTls::create(TlsServerFiles files, std::string cluster, uint32_t self) {
  std::shared_ptr<PeerTls> p(new PeerTls(std::move(files), std::move(cluster), self));
  if (auto st = p->load(); !st) return std::unexpected(st.error());
  return p;
}

Status PeerTls::reload() { return load(); }

Status PeerTls::load() {
  TlsServerFiles f = files_;
  f.auth = ClientAuth::kYes;
  f.door = "peer";
  if (f.ca_cert_file.empty())
    return make_error(Errc::kInvalidArgument,
                      f.ca_key + ": must be set when tls.peer = yes: peers' certificates are checked against it");
  auto server = make_server_context(f);
  if (!server) return std::unexpected(server.error());
  auto client = make_client_context(f);
  if (!client) return std::unexpected(client.error());
  // Peer links resume nothing (one long-lived connection per peer): no session tickets.
  SSL_CTX_set_num_tickets((*server)->native_handle(), 0);
  SSL_CTX_set_session_cache_mode((*client)->native_handle(), SSL_SESS_CACHE_OFF);
  // The node's own certificate must name this node: the other members would refuse it.
  std::vector<std::string> uris;
  if (X509* cert = SSL_CTX_get0_certificate((*server)->native_handle())) {
    if (auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
      for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
        const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI) continue;
        const ASN1_STRING* s = gn->d.uniformResourceIdentifier;
        uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
      }
      GENERAL_NAMES_free(names);
    }
  }
  if (auto st = check_node_identity(uris, cluster_, self_); !st)
    return bad_file(f.cert_key, f.cert_file,
                    fmt::format("not usable for peer links (tls.peer = yes) by node {} of cluster '{}': {}", self_,
                                cluster_, st.error().message));
  server_.set(std::move(*server));
  client_.set(std::move(*client));
  return {};
}

FileWatch::FileWatch(std::vector<std::string> paths) {
  for (auto& p : paths)
    if (!p.empty()) seen_.push_back(look(p));
}

FileWatch::Seen FileWatch::look(const std::string& path) {
  Seen s;
  s.path = path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return s;
  s.present = true;
  s.ino = static_cast<uint64_t>(st.st_ino);
  s.size = static_cast<uint64_t>(st.st_size);
  s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return s;
}

bool FileWatch::changed() {
  bool any = false;
  for (auto& s : seen_) {
    Seen now = look(s.path);
    if (now.present != s.present || now.ino != s.ino || now.size != s.size || now.mtime_ns != s.mtime_ns) any = true;
    s = now;
  }
  return any;
}

}  // namespace keel::security

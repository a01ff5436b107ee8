// TLS server contexts for keel's doors (RESP today), built from the files named in the
// configuration. Only a forward declaration of Asio's ssl::context here: include
// <boost/asio/ssl.hpp> only where a stream is made.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace boost::asio::ssl {
class context;
}
struct ssl_st;  // OpenSSL's SSL

namespace keel::security {

// Redis's tls-auth-clients: yes = a client certificate from the CA is required, optional =
// verified when presented, no = not asked for.
enum class ClientAuth { kNo, kYes, kOptional };
Result<ClientAuth> parse_client_auth(std::string_view text);
std::string_view client_auth_name(ClientAuth a);

struct TlsServerFiles {
  std::string cert_file;     // the server's certificate (chain), PEM
  std::string key_file;      // its private key, PEM
  std::string ca_cert_file;  // CA that client certificates must chain to ("" = none)
  ClientAuth auth = ClientAuth::kYes;
  // Setting names for error messages ("tls.cert_file", ...).
  std::string cert_key = "tls.cert_file", key_key = "tls.key_file", ca_key = "tls.ca_cert_file";
  // Which door the context serves: OpenSSL's session id context (sessions of one door are
  // not resumed on another).
  std::string door = "resp";
};

// Loads and checks the files (readable, PEM, key matches certificate, CA loadable). Every
// error names the setting, the file and what was wrong. TLS 1.2 and 1.3 only.
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_context(const TlsServerFiles& files);

// A context for dialling a TLS server that must present a certificate chaining to
// files.ca_cert_file, presenting the node's own certificate (files.cert_file, key_file). The
// same checks and errors as make_server_context; the CA is required. Host names are not
// checked: peers check the identity in the certificate (identity.h) instead.
Result<std::shared_ptr<boost::asio::ssl::context>> make_client_context(const TlsServerFiles& files);

// The URI SANs of the certificate the other side of `ssl` presented (empty: none).
std::vector<std::string> peer_certificate_uris(const ssl_st* ssl);
// SHA-256 of the DER of the certificate the other side presented (64 hex digits); "" if none.
// What a certificate-bound token is bound to (security/token.h).
std::string peer_certificate_sha256(const ssl_st* ssl);

// The context a listener hands to new connections; a reload replaces it while connections
// made with the old one keep it. Thread-safe.
class TlsContextSlot {
 public:
  explicit TlsContextSlot(std::shared_ptr<boost::asio::ssl::context> ctx = nullptr) : ctx_(std::move(ctx)) {}
  std::shared_ptr<boost::asio::ssl::context> get() const {
    std::lock_guard lk(mu_);
    return ctx_;
  }
  void set(std::shared_ptr<boost::asio::ssl::context> ctx) {
    std::lock_guard lk(mu_);
    ctx_ = std::move(ctx);
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
};

// Mutual TLS on peer links (tls.peer = yes): one for both of a node's peer transports (the
// metadata peers and the data plane). Every link is TLS both ways with certificates from
// files.ca_cert_file; a peer's certificate must name the node it claims to be
// (spiffe://<cluster>/node/<id>, identity.h). The transports count what they refuse here.
class PeerTls {
 public:
  // Loads the contexts; also checks that the node's own certificate names node `self` of
  // `cluster` (the other members would refuse it otherwise).
  static Result<std::shared_ptr<PeerTls>> create(TlsServerFiles files, std::string cluster, uint32_t self);
  // Builds both contexts again from the files; on any error keeps the current ones and says
  // what was wrong.
  Status reload();

  std::shared_ptr<boost::asio::ssl::context> server() const { return server_.get(); }
  std::shared_ptr<boost::asio::ssl::context> client() const { return client_.get(); }
  const std::string& cluster() const { return cluster_; }
  const TlsServerFiles& files() const { return files_; }

  // Peer connections refused: the TLS handshake failed (no certificate, another CA, expired,
  // plaintext), or the certificate names another node than the peer claims or we dialled.
  std::atomic<uint64_t> refused_handshake{0};
  std::atomic<uint64_t> refused_identity{0};

 private:
  PeerTls(TlsServerFiles files, std::string cluster, uint32_t self)
      : files_(std::move(files)), cluster_(std::move(cluster)), self_(self) {}
  Status load();
  TlsServerFiles files_;
  std::string cluster_;
  uint32_t self_;
  TlsContextSlot server_, client_;
};

// Whether files changed since the last call (or construction): size, modification time and
// inode (a file replaced by a rename counts). A file that cannot be read counts as changed
// once, when it goes away. Used by the node's reload thread, never by a pure core.
class FileWatch {
 public:
  explicit FileWatch(std::vector<std::string> paths);
  bool changed();

 private:
  struct Seen {
    std::string path;
    bool present = false;
    uint64_t ino = 0, size = 0;
    int64_t mtime_ns = 0;
  };
  static Seen look(const std::string& path);
  std::vector<Seen> seen_;
};

}  // namespace keel::security

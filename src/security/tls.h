// TLS server contexts for keel's doors (RESP today), built from the files named in the
// configuration. Only a forward declaration of Asio's ssl::context here: include
// <boost/asio/ssl.hpp> only where a stream is made.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace boost::asio::ssl {
class context;
}

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
};

// Loads and checks the files (readable, PEM, key matches certificate, CA loadable). Every
// error names the setting, the file and what was wrong. TLS 1.2 and 1.3 only.
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_context(const TlsServerFiles& files);

}  // namespace keel::security

// keel's PKI: a cluster certificate authority and the certificates it issues (OpenSSL 3).
//
// Identities are SPIFFE-style URI subject alternative names: the CA carries
// `spiffe://<cluster>` (its trust domain), a node `spiffe://<cluster>/node/<id>`, a client
// `spiffe://<cluster>/client/<name>`. Keys are Ed25519 by default, ECDSA P-256 for FIPS
// deployments; a certificate's key is of the same type as its CA's.
//
// No OpenSSL types in this header: certificates and keys travel as PEM text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace keel::security {

enum class KeyType { kEd25519, kP256 };

struct Pem {
  std::string cert;  // one certificate, PEM
  std::string key;   // its private key, PKCS#8 PEM (unencrypted)
};

inline constexpr int64_t kDefaultCaTtlS = 10LL * 365 * 86400;  // 10 years
inline constexpr int64_t kDefaultCertTtlS = 30LL * 86400;      // 30 days
inline constexpr int64_t kMinTtlS = 60;
inline constexpr int64_t kBackdateS = 60;  // not_before is this far in the past (clock skew)
inline constexpr int64_t kMaxTtlS = 3650LL * 86400;

// "30d", "12h", "90m", "3600s" (a whole number and one unit). Errors name what is allowed.
Result<int64_t> parse_ttl(std::string_view text);

// A cluster name or a node/client name usable in a SPIFFE path segment: 1..64 of
// [A-Za-z0-9._-].
Status check_name(std::string_view what, std::string_view name);

// Creates a self-signed CA for `cluster`, valid from now for `ttl_s` seconds.
Result<Pem> create_ca(std::string_view cluster, KeyType type, int64_t ttl_s = kDefaultCaTtlS);

struct IssueRequest {
  enum class Kind { kNode, kClient } kind = Kind::kNode;
  std::string name;                // node id or client name
  int64_t ttl_s = kDefaultCertTtlS;
  std::vector<std::string> hosts;  // extra DNS names / IP addresses (servers' SANs)
};

// Issues a certificate signed by `ca`: the cluster (trust domain) is read from the CA.
Result<Pem> issue(const Pem& ca, const IssueRequest& req);

// "spiffe://<cluster>/node/<id>" for a node, ".../client/<name>" for a client.
std::string spiffe_id(std::string_view cluster, IssueRequest::Kind kind, std::string_view name);

// Facts read off a certificate (for tests, `keel cert` output and later the TLS doors).
struct CertInfo {
  std::vector<std::string> uris;  // URI SANs
  std::vector<std::string> dns;   // DNS SANs
  std::vector<std::string> ips;   // IP SANs, as text
  std::string subject_cn;
  int64_t not_before = 0;         // unix seconds
  int64_t not_after = 0;
  bool is_ca = false;
  KeyType key_type = KeyType::kEd25519;
};
Result<CertInfo> inspect(std::string_view cert_pem);

// The cluster (trust domain) of a CA: from its `spiffe://<cluster>` URI SAN.
Result<std::string> ca_cluster(std::string_view ca_cert_pem);

// Verifies `cert_pem` against the CA (chain, signature, validity at now) with
// X509_verify_cert. The error carries OpenSSL's reason.
Status verify(std::string_view ca_cert_pem, std::string_view cert_pem);

// A new certificate for the identity of `cert_pem` (its SPIFFE node or client name, its DNS and
// IP names, its lifetime), signed by `ca`: what a node renewing itself asks for. kInvalidArgument
// when the certificate names no node or client of the CA's cluster.
Result<Pem> reissue(const Pem& ca, std::string_view cert_pem);

// When a certificate valid from `not_before` to `not_after` (unix seconds) is due for renewal:
// after `fraction` of its lifetime (0.5: half-way), plus `jitter01` (drawn in [0, 1) once per
// node by the caller) times `jitter_fraction` of its lifetime, so that members issued together
// do not all renew at once. Pure.
int64_t renewal_due_s(int64_t not_before, int64_t not_after, double fraction, double jitter01,
                      double jitter_fraction = 0.05);

// A node renewing its own certificate from files (tls.cert_file, tls.key_file, tls.ca_cert_file,
// tls.ca_key_file; the first certificate of a CA bundle signs).
struct RenewFiles {
  std::string cert, key, ca_cert, ca_key;
};
// When the certificate in `cert_file` is due (renewal_due_s, its lifetime counted from its
// issue, kBackdateS after its not_before).
Result<int64_t> renewal_due_for_file(const std::string& cert_file, double fraction, double jitter01);
// Reissues the certificate of `f.cert` and writes the new key and certificate beside the old
// files, then moves each over its file (the key first, mode 0600; the certificate 0644). The new
// certificate's not_after.
Result<int64_t> renew_files(const RenewFiles& f);

// Files: `dir`/ca.crt and ca.key (mode 0600). Refuses to overwrite an existing CA key.
Status init_ca_dir(const std::string& dir, std::string_view cluster, KeyType type);
// Issues from the CA in `dir` into `dir`/<name>.crt and <name>.key (0600); returns the cert's
// SPIFFE id. `file_name` defaults to the node id or client name.
Result<std::string> issue_to_dir(const std::string& dir, const IssueRequest& req, std::string file_name = "");

}  // namespace keel::security

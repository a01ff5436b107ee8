// Identities carried by keel certificates, checked without OpenSSL: a certificate's URI
// subject alternative names are read by the TLS layer (security/tls.h, peer_certificate_uris)
// and judged here.
//
// A node is `spiffe://<cluster>/node/<id>` (id 1..65535, decimal, no leading zero), a client
// `spiffe://<cluster>/client/<name>` (pki.h). Pure functions: no clock, file or socket.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace keel::security {

struct SpiffeId {
  enum class Kind { kNode, kClient } kind = Kind::kNode;
  std::string cluster;  // trust domain
  std::string name;     // node id (decimal) or client name
  uint32_t node = 0;    // for a node: its id
};

// Parses one URI as a keel identity. Anything else (another scheme, another path, a node id
// outside 1..65535, more segments) is an error that says what was expected.
Result<SpiffeId> parse_spiffe_id(std::string_view uri);

// Whether a peer's certificate, given by its URI SANs, names node `expected_node` of
// `cluster`. The certificate must name exactly one keel node identity; the error says what
// the certificate names and what was expected (for logs and the Reject frame), e.g.
// "the certificate names node 3 (spiffe://prod/node/3), not node 2; expected spiffe://prod/node/2".
Status check_node_identity(const std::vector<std::string>& uris, std::string_view cluster,
                           uint32_t expected_node);

}  // namespace keel::security

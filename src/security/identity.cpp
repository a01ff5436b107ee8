#include "security/identity.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <charconv>

namespace keel::security {
namespace {

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!name_char(c)) return false;
  return true;
}

constexpr std::string_view kScheme = "spiffe://";
constexpr size_t kMaxUriBytes = 256;

}  // namespace

Result<SpiffeId> parse_spiffe_id(std::string_view uri) {
  auto bad = [&](std::string_view why) {
    return make_error(
        Errc::kInvalidArgument,
        fmt::format("'{}' is not a keel identity: {}; expected spiffe://<cluster>/node/<id> or "
                    "spiffe://<cluster>/client/<name>",
                    uri.substr(0, kMaxUriBytes), why));
  };
  if (uri.size() > kMaxUriBytes) return bad(fmt::format("longer than {} bytes", kMaxUriBytes));
  if (!uri.starts_with(kScheme)) return bad("not a spiffe:// URI");
  std::string_view rest = uri.substr(kScheme.size());
  std::vector<std::string_view> parts;
  for (;;) {
    size_t slash = rest.find('/');
    parts.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  if (parts.size() != 3) return bad("it needs exactly a cluster, a kind and a name");
  if (!valid_name(parts[0])) return bad("the cluster must be 1..64 of A-Z a-z 0-9 . _ -");
  SpiffeId id;
  id.cluster = std::string(parts[0]);
  id.name = std::string(parts[2]);
  if (parts[1] == "node") {
    id.kind = SpiffeId::Kind::kNode;
    unsigned n = 0;
    auto [p, ec] = std::from_chars(parts[2].data(), parts[2].data() + parts[2].size(), n);
    if (parts[2].empty() || ec != std::errc() || p != parts[2].data() + parts[2].size() || n < 1 ||
        n > 65535 || parts[2][0] == '0')
      return bad("a node id must be 1..65535");
    id.node = n;
  } else if (parts[1] == "client") {
    id.kind = SpiffeId::Kind::kClient;
    if (!valid_name(parts[2])) return bad("a client name must be 1..64 of A-Z a-z 0-9 . _ -");
  } else {
    return bad("the kind must be node or client");
  }
  return id;
}

Status check_node_identity(const std::vector<std::string>& uris, std::string_view cluster,
                           uint32_t expected_node) {
  const std::string want = fmt::format("spiffe://{}/node/{}", cluster, expected_node);
  std::vector<SpiffeId> nodes;
  std::vector<std::string> others;
  for (auto& u : uris) {
    auto id = parse_spiffe_id(u);
    if (id && id->kind == SpiffeId::Kind::kNode)
      nodes.push_back(*id);
    else
      others.push_back(u.substr(0, kMaxUriBytes));
  }
  if (nodes.empty())
    return make_error(
        Errc::kInvalidArgument,
        fmt::format("the certificate names no node identity (URI SANs: [{}]); a peer needs {} "
                    "(`keel cert issue --node {}`)",
                    fmt::join(others, ", "), want, expected_node));
  if (nodes.size() > 1)
    return make_error(
        Errc::kInvalidArgument,
        fmt::format(
            "the certificate names {} node identities; a peer certificate must name one ({})",
            nodes.size(), want));
  const SpiffeId& id = nodes.front();
  if (id.cluster != cluster)
    return make_error(
        Errc::kInvalidArgument,
        fmt::format("the certificate names node {} of cluster '{}' (spiffe://{}/node/{}), but this "
                    "cluster is '{}' (cluster.cluster_id); expected {}",
                    id.node, id.cluster, id.cluster, id.name, cluster, want));
  if (id.node != expected_node)
    return make_error(
        Errc::kInvalidArgument,
        fmt::format("the certificate names node {} (spiffe://{}/node/{}), not node {}; expected {}",
                    id.node, id.cluster, id.name, expected_node, want));
  return {};
}

}  // namespace keel::security

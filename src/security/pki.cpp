#include "security/pki.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <charconv>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace keel::security {
namespace {

template <auto F>
struct Deleter {
  template <class T>
  void operator()(T* p) const { F(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;

// The first queued OpenSSL error as text (and the queue cleared), or `fallback`.
std::string ssl_error(std::string_view fallback) {
  unsigned long e = ERR_get_error();
  std::string out(fallback);
  if (e) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += fmt::format(" ({})", buf);
  }
  ERR_clear_error();
  return out;
}

std::unexpected<Error> fail(std::string_view what) { return make_error(Errc::kInternal, ssl_error(what)); }

KeyPtr new_key(KeyType type) {
  if (type == KeyType::kEd25519) return KeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  return KeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
}

KeyType key_type_of(const EVP_PKEY* k) {
  return EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519 ? KeyType::kEd25519 : KeyType::kP256;
}

Result<X509Ptr> read_cert(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!x) return make_error(Errc::kInvalidArgument, ssl_error("not a PEM certificate"));
  return x;
}

Result<KeyPtr> read_key(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  KeyPtr k(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!k) return make_error(Errc::kInvalidArgument, ssl_error("not a PEM private key"));
  return k;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<Pem> to_pem(X509* x, EVP_PKEY* k) {
  BioPtr cb(BIO_new(BIO_s_mem())), kb(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(cb.get(), x)) return fail("cannot encode the certificate");
  if (!PEM_write_bio_PrivateKey(kb.get(), k, nullptr, nullptr, 0, nullptr, nullptr)) return fail("cannot encode the key");
  return Pem{bio_text(cb.get()), bio_text(kb.get())};
}

Status add_ext(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || !X509_add_ext(x, ext.get(), -1)) return fail(fmt::format("cannot add extension {} = {}", OBJ_nid2sn(nid), value));
  return {};
}

// A new certificate with a random 127-bit serial, the subject, the validity and the key.
Result<X509Ptr> new_cert(EVP_PKEY* key, const std::string& cn, std::string_view cluster, int64_t ttl_s) {
  X509Ptr x(X509_new());
  if (!x || !X509_set_version(x.get(), 2)) return fail("cannot create a certificate");
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return fail("no randomness for the serial number");
  serial[0] &= 0x7f;
  BnPtr bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || !BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(x.get()))) return fail("cannot set the serial number");
  // Valid from a minute ago: a peer whose clock is slightly behind still accepts it.
  if (!X509_gmtime_adj(X509_getm_notBefore(x.get()), -kBackdateS) ||
      !X509_gmtime_adj(X509_getm_notAfter(x.get()), static_cast<long>(ttl_s)))
    return fail("cannot set the validity");
  X509_NAME* name = X509_get_subject_name(x.get());
  std::string org = fmt::format("keel cluster {}", cluster);
  if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(org.c_str()), -1, -1, 0) ||
      !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0))
    return fail("cannot set the subject name");
  if (!X509_set_pubkey(x.get(), key)) return fail("cannot set the public key");
  return x;
}

Status sign(X509* x, EVP_PKEY* key) {
  const EVP_MD* md = key_type_of(key) == KeyType::kEd25519 ? nullptr : EVP_sha256();
  if (X509_sign(x, key, md) <= 0) return fail("cannot sign the certificate");
  return {};
}

bool name_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
         ch == '-';
}

int64_t asn1_seconds(const ASN1_TIME* t) {
  struct tm tm {};
  if (!ASN1_TIME_to_tm(t, &tm)) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(Errc::kNotFound, fmt::format("{}: cannot read the file", path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Status write_file(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return make_error(Errc::kIoError, fmt::format("{}: cannot create the file: {}", path, std::strerror(errno)));
  bool ok = ::fchmod(fd, mode) == 0;  // an existing file keeps its mode otherwise (and umask)
  size_t off = 0;
  while (ok && off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) ok = false;
    else off += static_cast<size_t>(n);
  }
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok) return make_error(Errc::kIoError, fmt::format("{}: cannot write the file: {}", path, std::strerror(errno)));
  return {};
}

}  // namespace

Result<int64_t> parse_ttl(std::string_view text) {
  auto bad = [&] {
    return make_error(Errc::kInvalidArgument,
                      fmt::format("'{}' is not a lifetime; allowed: a whole number with a unit s, m, h or d "
                                  "(e.g. 30d, 12h, 90m), from 1m to 3650d",
                                  text));
  };
  if (text.size() < 2) return bad();
  int64_t mul = 0;
  switch (text.back()) {
    case 's': mul = 1; break;
    case 'm': mul = 60; break;
    case 'h': mul = 3600; break;
    case 'd': mul = 86400; break;
    default: return bad();
  }
  int64_t n = 0;
  auto num = text.substr(0, text.size() - 1);
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
  if (ec != std::errc() || p != num.data() + num.size() || n <= 0 || n > kMaxTtlS / mul) return bad();
  int64_t s = n * mul;
  if (s < kMinTtlS || s > kMaxTtlS) return bad();
  return s;
}

Status check_name(std::string_view what, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64;
  for (char ch : name) ok = ok && name_char(ch);
  if (!ok)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("{} '{}' is not allowed; allowed: 1 to 64 characters of A-Z a-z 0-9 . _ -", what, name));
  return {};
}

std::string spiffe_id(std::string_view cluster, IssueRequest::Kind kind, std::string_view name) {
  return fmt::format("spiffe://{}/{}/{}", cluster, kind == IssueRequest::Kind::kNode ? "node" : "client", name);
}

Result<Pem> create_ca(std::string_view cluster, KeyType type, int64_t ttl_s) {
  if (auto st = check_name("cluster name", cluster); !st) return std::unexpected(st.error());
  KeyPtr key = new_key(type);
  if (!key) return fail("cannot generate the CA key");
  auto x = new_cert(key.get(), fmt::format("keel cluster {} CA", cluster), cluster, ttl_s);
  if (!x) return std::unexpected(x.error());
  X509* c = x->get();
  if (!X509_set_issuer_name(c, X509_get_subject_name(c))) return fail("cannot set the issuer");
  for (auto [nid, v] : {std::pair{NID_basic_constraints, std::string("critical,CA:TRUE,pathlen:0")},
                        std::pair{NID_key_usage, std::string("critical,keyCertSign,cRLSign")},
                        std::pair{NID_subject_key_identifier, std::string("hash")},
                        std::pair{NID_subject_alt_name, fmt::format("URI:spiffe://{}", cluster)}})
    if (auto st = add_ext(c, c, nid, v); !st) return std::unexpected(st.error());
  if (auto st = sign(c, key.get()); !st) return std::unexpected(st.error());
  return to_pem(c, key.get());
}

Result<CertInfo> inspect(std::string_view cert_pem) {
  auto x = read_cert(cert_pem);
  if (!x) return std::unexpected(x.error());
  X509* c = x->get();
  CertInfo info;
  if (auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names, i);
      auto text = [](const ASN1_STRING* s) {
        return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
      };
      if (gn->type == GEN_URI) info.uris.push_back(text(gn->d.uniformResourceIdentifier));
      else if (gn->type == GEN_DNS) info.dns.push_back(text(gn->d.dNSName));
      else if (gn->type == GEN_IPADD) {
        char buf[INET6_ADDRSTRLEN] = {};
        int len = ASN1_STRING_length(gn->d.iPAddress);
        const unsigned char* b = ASN1_STRING_get0_data(gn->d.iPAddress);
        if (len == 4) inet_ntop(AF_INET, b, buf, sizeof buf);
        else if (len == 16) inet_ntop(AF_INET6, b, buf, sizeof buf);
        info.ips.emplace_back(buf);
      }
    }
    GENERAL_NAMES_free(names);
  }
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn) > 0) info.subject_cn = cn;
  info.not_before = asn1_seconds(X509_get0_notBefore(c));
  info.not_after = asn1_seconds(X509_get0_notAfter(c));
  info.is_ca = (X509_get_extension_flags(c) & EXFLAG_CA) != 0;
  if (EVP_PKEY* pk = X509_get0_pubkey(c)) info.key_type = key_type_of(pk);
  return info;
}

Result<std::string> ca_cluster(std::string_view ca_cert_pem) {
  auto info = inspect(ca_cert_pem);
  if (!info) return std::unexpected(info.error());
  if (!info->is_ca) return make_error(Errc::kInvalidArgument, "the certificate is not a CA (basicConstraints CA:TRUE is missing)");
  for (auto& u : info->uris)
    if (u.rfind("spiffe://", 0) == 0 && u.find('/', 9) == std::string::npos) return u.substr(9);
  return make_error(Errc::kInvalidArgument, "the CA names no cluster (no URI SAN spiffe://<cluster>); was it made by `keel cert init`?");
}

Result<Pem> issue(const Pem& ca, const IssueRequest& req) {
  const bool node = req.kind == IssueRequest::Kind::kNode;
  if (node) {
    unsigned id = 0;
    auto [p, ec] = std::from_chars(req.name.data(), req.name.data() + req.name.size(), id);
    if (ec != std::errc() || p != req.name.data() + req.name.size() || id < 1 || id > 65535)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("node id '{}' is not allowed; allowed: 1..65535 (the node's cluster.node_id)", req.name));
  } else if (auto st = check_name("client name", req.name); !st) {
    return std::unexpected(st.error());
  }
  if (req.ttl_s < kMinTtlS || req.ttl_s > kMaxTtlS)
    return make_error(Errc::kInvalidArgument, fmt::format("a lifetime of {} s is not allowed; allowed: 60 s to 3650 days", req.ttl_s));
  std::string sans;
  for (auto& h : req.hosts) {
    unsigned char buf[16];
    if (inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1) {
      sans += ",IP:" + h;
      continue;
    }
    bool ok = !h.empty() && h.size() <= 253;
    for (char ch : h) ok = ok && (name_char(ch) || ch == '*') && ch != '_';
    if (!ok)
      return make_error(Errc::kInvalidArgument,
                        fmt::format("host '{}' is not allowed; allowed: an IP address or a DNS name (A-Z a-z 0-9 . - *)", h));
    sans += ",DNS:" + h;
  }

  auto ca_cert = read_cert(ca.cert);
  if (!ca_cert) return make_error(Errc::kInvalidArgument, "CA certificate: " + ca_cert.error().message);
  auto ca_key = read_key(ca.key);
  if (!ca_key) return make_error(Errc::kInvalidArgument, "CA key: " + ca_key.error().message);
  if (X509_check_private_key(ca_cert->get(), ca_key->get()) != 1)
    return make_error(Errc::kInvalidArgument, ssl_error("the CA key does not belong to the CA certificate"));
  auto cluster = ca_cluster(ca.cert);
  if (!cluster) return std::unexpected(cluster.error());
  auto ca_info = inspect(ca.cert);
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  if (ca_info->not_after <= now) return make_error(Errc::kInvalidArgument, "the CA has expired; create a new one with `keel cert init`");
  if (now + req.ttl_s > ca_info->not_after)
    return make_error(Errc::kInvalidArgument,
                      fmt::format("the certificate would outlive its CA; allowed: a lifetime up to {}d",
                                  (ca_info->not_after - now) / 86400));

  KeyPtr key = new_key(key_type_of(ca_key->get()));
  if (!key) return fail("cannot generate the key");
  std::string id = spiffe_id(*cluster, req.kind, req.name);
  auto x = new_cert(key.get(), fmt::format("{} {}", node ? "node" : "client", req.name), *cluster, req.ttl_s);
  if (!x) return std::unexpected(x.error());
  X509* c = x->get();
  if (!X509_set_issuer_name(c, X509_get_subject_name(ca_cert->get()))) return fail("cannot set the issuer");
  for (auto [nid, v] : {std::pair{NID_basic_constraints, std::string("critical,CA:FALSE")},
                        std::pair{NID_key_usage, std::string("critical,digitalSignature")},
                        std::pair{NID_ext_key_usage, std::string(node ? "serverAuth,clientAuth" : "clientAuth")},
                        std::pair{NID_subject_key_identifier, std::string("hash")},
                        std::pair{NID_authority_key_identifier, std::string("keyid:always")},
                        std::pair{NID_subject_alt_name, "URI:" + id + sans}})
    if (auto st = add_ext(c, ca_cert->get(), nid, v); !st) return std::unexpected(st.error());
  if (auto st = sign(c, ca_key->get()); !st) return std::unexpected(st.error());
  return to_pem(c, key.get());
}

Status verify(std::string_view ca_cert_pem, std::string_view cert_pem) {
  auto ca = read_cert(ca_cert_pem);
  if (!ca) return make_error(Errc::kInvalidArgument, "CA certificate: " + ca.error().message);
  auto x = read_cert(cert_pem);
  if (!x) return std::unexpected(x.error());
  StorePtr store(X509_STORE_new());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !ctx || !X509_STORE_add_cert(store.get(), ca->get()) ||
      !X509_STORE_CTX_init(ctx.get(), store.get(), x->get(), nullptr))
    return fail("cannot set up the verification");
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return make_error(Errc::kInvalidArgument, fmt::format("certificate verification failed: {}", X509_verify_cert_error_string(err)));
  }
  return {};
}

Status init_ca_dir(const std::string& dir, std::string_view cluster, KeyType type) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return make_error(Errc::kIoError, fmt::format("{}: cannot create the directory: {}", dir, ec.message()));
    fs::permissions(dir, fs::perms::owner_all, ec);
  }
  const std::string crt = dir + "/ca.crt", key = dir + "/ca.key";
  if (fs::exists(key, ec) || fs::exists(crt, ec))
    return make_error(Errc::kAlreadyExists,
                      fmt::format("{} already exists: a new CA would orphan every certificate the old one issued; "
                                  "remove {} and {} first to start over, or use another --dir",
                                  fs::exists(key, ec) ? key : crt, crt, key));
  auto ca = create_ca(cluster, type);
  if (!ca) return std::unexpected(ca.error());
  if (auto st = write_file(key, ca->key, 0600); !st) return st;
  return write_file(crt, ca->cert, 0644);
}

Result<std::string> issue_to_dir(const std::string& dir, const IssueRequest& req, std::string file_name) {
  const std::string crt = dir + "/ca.crt", key = dir + "/ca.key";
  auto ca_cert = read_file(crt);
  if (!ca_cert) return make_error(Errc::kNotFound, ca_cert.error().message + fmt::format(" (run `keel cert init --dir {}` first)", dir));
  auto ca_key = read_file(key);
  if (!ca_key) return make_error(Errc::kNotFound, ca_key.error().message + " (the CA's private key is needed to issue)");
  if (file_name.empty()) file_name = req.kind == IssueRequest::Kind::kNode ? "node-" + req.name : req.name;
  if (auto st = check_name("file name", file_name); !st) return std::unexpected(st.error());
  if (file_name == "ca") return make_error(Errc::kInvalidArgument, "file name 'ca' is the CA's own; choose another name");
  auto pem = issue(Pem{*ca_cert, *ca_key}, req);
  if (!pem) return std::unexpected(pem.error());
  if (auto st = write_file(dir + "/" + file_name + ".key", pem->key, 0600); !st) return std::unexpected(st.error());
  if (auto st = write_file(dir + "/" + file_name + ".crt", pem->cert, 0644); !st) return std::unexpected(st.error());
  auto cluster = ca_cluster(*ca_cert);
  return spiffe_id(*cluster, req.kind, req.name);
}


Result<Pem> reissue(const Pem& ca, std::string_view cert_pem) {
  auto info = inspect(cert_pem);
  if (!info) return std::unexpected(info.error());
  auto cluster = ca_cluster(ca.cert);
  if (!cluster) return std::unexpected(cluster.error());
  IssueRequest req;
  const std::string node_prefix = "spiffe://" + *cluster + "/node/";
  const std::string client_prefix = "spiffe://" + *cluster + "/client/";
  for (const auto& u : info->uris) {
    if (u.starts_with(node_prefix)) {
      req.kind = IssueRequest::Kind::kNode;
      req.name = u.substr(node_prefix.size());
    } else if (u.starts_with(client_prefix)) {
      req.kind = IssueRequest::Kind::kClient;
      req.name = u.substr(client_prefix.size());
    }
  }
  if (req.name.empty())
    return make_error(Errc::kInvalidArgument,
                      fmt::format("the certificate names no node or client of cluster '{}' (its URIs: {}); it cannot be "
                                  "renewed from this CA",
                                  *cluster, fmt::join(info->uris, ", ")));
  req.hosts = info->dns;
  req.hosts.insert(req.hosts.end(), info->ips.begin(), info->ips.end());
  req.ttl_s = std::clamp<int64_t>(info->not_after - info->not_before - kBackdateS, kMinTtlS, kMaxTtlS);
  return issue(ca, req);
}

int64_t renewal_due_s(int64_t not_before, int64_t not_after, double fraction, double jitter01, double jitter_fraction) {
  const double life = static_cast<double>(std::max<int64_t>(0, not_after - not_before));
  const double f = std::clamp(fraction, 0.0, 1.0);
  const double j = std::clamp(jitter01, 0.0, 1.0) * std::clamp(jitter_fraction, 0.0, 1.0 - f);
  return not_before + static_cast<int64_t>(life * (f + j));
}

Result<int64_t> renewal_due_for_file(const std::string& cert_file, double fraction, double jitter01) {
  auto cert = read_file(cert_file);
  if (!cert) return std::unexpected(cert.error());
  auto info = inspect(*cert);
  if (!info) return std::unexpected(info.error());
  const int64_t issued = std::min(info->not_before + kBackdateS, info->not_after);
  return renewal_due_s(issued, info->not_after, fraction, jitter01);
}

Result<int64_t> renew_files(const RenewFiles& f) {
  auto cert = read_file(f.cert);
  auto ca_cert = read_file(f.ca_cert);
  auto ca_key = read_file(f.ca_key);
  for (auto* r : {&cert, &ca_cert, &ca_key})
    if (!*r) return std::unexpected(r->error());
  // A CA bundle (while the CA is being rotated): the first certificate signs.
  const auto end = ca_cert->find("-----END CERTIFICATE-----");
  Pem ca{end == std::string::npos ? *ca_cert : ca_cert->substr(0, end + 25), *ca_key};
  auto renewed = reissue(ca, *cert);
  if (!renewed) return std::unexpected(renewed.error());
  auto replace = [](const std::string& path, const std::string& data, mode_t mode) -> Status {
    const std::string tmp = path + ".renewing";
    if (auto st = write_file(tmp, data, mode); !st) return st;
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) return make_error(Errc::kIoError, fmt::format("cannot move {} over {}: {}", tmp, path, ec.message()));
    return {};
  };
  if (auto st = replace(f.key, renewed->key, 0600); !st) return std::unexpected(st.error());
  if (auto st = replace(f.cert, renewed->cert, 0644); !st) return std::unexpected(st.error());
  auto info = inspect(renewed->cert);
  return info ? info->not_after : 0;
}

}  // namespace keel::security

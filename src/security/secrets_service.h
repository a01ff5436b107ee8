// The secrets of the cluster (security/secrets.h), kept in cluster metadata (domain "secrets",
// key "data/<path>") and followed on every node; values sealed under the transit key
// "keel.secrets" (created on the first PUT), with the path as the sealing context.
//
// Includes Asio: include only from .cpp files.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "security/secrets.h"

namespace keel::cluster {
class MetaService;
}

namespace keel::security {

class TransitService;
inline constexpr const char* kSecretsDomain = "secrets";

class SecretsService {
 public:
  explicit SecretsService(TransitService& transit);
  ~SecretsService();
  void set_meta(cluster::MetaService* meta);
  void start();
  void stop();

  struct Read {
    std::string value;
    uint32_t version = 0;
    int64_t created_ms = 0;
    uint64_t mod_revision = 0;  // the metadata revision of the secret's last change (for watchers)
  };
  // Errors: kInvalidArgument (a bad path, a value too large), kConflict (CAS), kNotFound,
  // kUnavailable / kTimeout from metadata.
  boost::asio::awaitable<Result<uint32_t>> put(std::string path, std::string value, std::optional<uint32_t> cas);
  // A secret this node does not hold yet (or not at that version) is read linearizably first.
  boost::asio::awaitable<Result<Read>> get(std::string path, std::optional<uint32_t> version);
  std::shared_ptr<const secrets::Secret> find(const std::string& path) const;
  // The same, read linearizably first when this node holds no such secret.
  boost::asio::awaitable<std::shared_ptr<const secrets::Secret>> find_fresh(std::string path);
  std::vector<std::string> list(std::string_view prefix) const;
  // Whether it existed.
  boost::asio::awaitable<Result<bool>> remove(std::string path);
  // Soft-deletes, undeletes or destroys versions (secrets::change_versions); how many changed.
  boost::asio::awaitable<Result<uint32_t>> change_versions(std::string path, secrets::VersionOp op,
                                                           std::vector<uint32_t> versions);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace keel::security

// Secrets: versioned key/value secrets kept in cluster metadata (Vault's KV v2 is the anchor;
// docs/security.md, "Secrets"). A secret is a path ("db/orders/password") with versions 1, 2, ...
// (each PUT adds one; the oldest beyond max_versions are dropped); every value is stored
// encrypted under the cluster's transit key "keel.secrets" with the path as context, so a value
// moved to another path does not decrypt.
//
// This file is the pure part: paths, the stored form (JSON of the sealed versions), versions.
// SecretsService (secrets_service.h) keeps them in metadata and seals them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace keel::security::secrets {

inline constexpr std::string_view kSealKey = "keel.secrets";  // the transit key values are sealed under
inline constexpr uint32_t kDefaultMaxVersions = 10;
inline constexpr size_t kMaxValueBytes = 64u << 10;
inline constexpr size_t kMaxPathBytes = 512;

struct Version {
  std::string sealed;  // a transit ciphertext ("keel:v<N>:..."), context = the path; empty once destroyed
  int64_t created_ms = 0;
  int64_t deleted_ms = 0;  // soft-deleted then (0: not deleted): not read, can be undeleted
  bool destroyed = false;  // its value is gone for good
};

// What SECRET.DELETE path VERSIONS ..., SECRET.UNDELETE and SECRET.DESTROY do to versions.
enum class VersionOp { kDelete, kUndelete, kDestroy };
inline constexpr size_t kMaxVersionsPerChange = 100;

struct Secret {
  std::string path;
  std::map<uint32_t, Version> versions;  // the kept ones
  uint32_t current = 0;                  // the latest version written
  uint32_t max_versions = kDefaultMaxVersions;
};

// A path: segments of letters, digits, '_', '-', '.' separated by single '/', no '/' at either
// end, 1 to kMaxPathBytes in all. kInvalidArgument naming the fault.
Status check_path(std::string_view path);

// Adds the next version (sealed already); drops the oldest beyond max_versions. kConflict when
// `cas` is given and is not the current version (0: the secret must not exist yet).
Status add_version(Secret& s, std::string sealed, int64_t now_ms, std::optional<uint32_t> cas);

// Soft-deletes, undeletes or destroys `versions` of `s` (Vault KV v2's model): a deleted
// version keeps its sealed value and is not read until undeleted; a destroyed one loses it (and
// cannot be undeleted: kConflict). Every version must be kept (kNotFound naming it); at most
// kMaxVersionsPerChange, none twice (kInvalidArgument). Returns how many versions changed.
Result<uint32_t> change_versions(Secret& s, VersionOp op, const std::vector<uint32_t>& versions, int64_t now_ms);

// kNotFound saying why version `v` of `s` cannot be read (missing, deleted, destroyed), or ok.
Status readable(const Secret& s, uint32_t v);

std::string encode(const Secret& s);
Result<Secret> decode(std::string_view json);

}  // namespace keel::security::secrets

// Encryption at rest in the node: opening the keyring from the settings, the /v1/keys admin
// door (status, rotate, retire) and its metrics. docs/security.md, "Encryption at rest".
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "base/result.h"
#include "node/config.h"
#include "security/keyring.h"
#include "storage/engine.h"

namespace keel::node {

// With security.at_rest.key_file or key_env: opens (or creates) the keyring in
// storage.data_dir and sets cfg.storage.keyring. Without: refuses a data directory that holds
// a keyring (its data is encrypted). Errors name the setting and the file.
Status open_at_rest(Config& cfg);

// Rewrites the cluster metadata log under the current at-rest key; returns its records per key
// version afterwards (0: in the clear). Null: this node keeps no metadata log.
using MetaLogReseal = std::function<Result<std::map<uint32_t, uint64_t>>()>;

// The /v1/keys door. `engine`: any shard's engine (the census covers the whole database).
// `method` is "GET" or "POST"; `rest` the path after /v1/keys ("", "/rotate", "/3/retire").
// A rotation reseals the metadata log under the new key; a retirement is refused while the
// log holds a record under the version.
// POST /v1/keys/master with {"key_file": PATH} or {"key_env": VARIABLE} (`body`) changes the
// master key (Keyring::change_master).
std::pair<int, std::string> keys_admin(security::at_rest::Keyring& keyring, storage::Engine& engine,
                                       const MetaLogReseal& meta_log, std::string_view method, std::string_view rest,
                                       std::string_view body, int64_t now_ms);

// keel_at_rest_* in the Prometheus text format.
std::string at_rest_metrics(const security::at_rest::Keyring& keyring);

}  // namespace keel::node

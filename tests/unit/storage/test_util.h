// Shared helpers for the storage tests: temp dirs, engine factories, value comparison.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "base/clock.h"
#include "storage/engine.h"

namespace keel::storage::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "keel-storage-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// kPersistent: RocksDB serves reads; kResident: the persistent engine with every key in memory
// (RocksDB as the journal), the default configuration.
enum class Kind { kMemory, kPersistent, kResident };
inline const char* kind_name(Kind k) {
  return k == Kind::kMemory ? "memory" : k == Kind::kPersistent ? "persistent" : "resident";
}
inline bool is_persistent(Kind k) { return k != Kind::kMemory; }

// Owns whatever an engine needs (temp dir, clock) and the engine itself.
struct EngineHarness {
  Kind kind;
  ManualClock clock;
  std::unique_ptr<TempDir> dir;
  EngineConfig config;
  std::vector<std::unique_ptr<Engine>> engines;

  explicit EngineHarness(Kind k, uint32_t partitions = 4, unsigned shards = 1) : kind(k) {
    config.partitions = partitions;
    if (k == Kind::kMemory) {
      config.kind = EngineConfig::Kind::kMemory;
    } else {
      config.kind = EngineConfig::Kind::kPersistent;
      dir = std::make_unique<TempDir>();
      config.data_dir = dir->path() + "/db";
      config.fsync = FsyncPolicy::kNo;
      config.block_cache_bytes = 1 << 20;
      config.keep_in_memory = k == Kind::kResident;
    }
    open(shards);
  }
  void open(unsigned shards = 1) {
    engines.clear();
    auto r = open_engines(config, shards, clock);
    if (!r) throw std::runtime_error("open_engines: " + r.error().message);
    engines = std::move(*r);
  }
  Engine& engine(size_t i = 0) { return *engines.at(i); }
  int64_t now() const { return clock.now_ms(); }
};

inline Value to_value(const ValueRef& r) {
  return copy_value(r);
}

using storage::same_value;

inline Value str_value(std::string s, int64_t expire_at_ms = 0) {
  Value v;
  v.str = std::move(s);
  v.expire_at_ms = expire_at_ms;
  return v;
}

inline Value hash_value(HashMap h, int64_t expire_at_ms = 0) {
  Value v;
  v.type = ValueType::kHash;
  v.hash = std::move(h);
  v.expire_at_ms = expire_at_ms;
  return v;
}

}  // namespace keel::storage::testing

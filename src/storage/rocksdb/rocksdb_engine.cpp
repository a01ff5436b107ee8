#include "storage/rocksdb/rocksdb_engine.h"

namespace keel::storage {
Result<std::vector<std::unique_ptr<Engine>>> open_rocksdb_engines(const EngineConfig&, unsigned,
                                                                  const Clock&) {
  return make_error(Errc::kUnavailable, "persistent engine: not built yet");
}
}  // namespace keel::storage

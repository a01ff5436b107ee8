// Adapter: the metadata store (meta::Store, src/meta) as the Driver's replicated state
// machine. Commands in the log are meta::encode(Command); replies are a small encoding of
// Result<WriteResult> (below) so the node that submitted a write learns its outcome.
// Not thread-safe: the driver thread owns it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "runtime/cluster/driver.h"
#include "runtime/cluster/meta_service.h"
#include "meta/store.h"

namespace keel::cluster {

std::string encode_reply(const Result<WriteResult>& r);
Result<WriteResult> decode_reply(std::string_view in);

class MetaMachine final : public StateMachine {
 public:
  explicit MetaMachine(meta::Limits limits = {}) : limits_(limits), store_(limits) {}

  std::string apply(uint64_t slot, std::string_view command) override;
  std::string snapshot() const override { return store_.snapshot(); }
  Status restore(std::string_view state) override;

  const meta::Store& store() const { return store_; }
  // Conversions for MetaService.
  static KeyValue to_kv(const meta::KeyValue& kv);

 private:
  meta::Limits limits_;
  meta::Store store_;
};

}  // namespace keel::cluster

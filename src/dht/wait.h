// What a held-back reply waits for (see dht::Service::after_write and wait_committed).
#pragma once

#include <cstdint>

namespace keel::dht {

// A reply held back until a write (or, for a read, the partition's earlier writes) is held by
// enough copies: the partition, the LSN, and how many copies (the primary counted) must hold
// it durably — 0 for the partition's write quorum; a named cache asks for its own writeQuorum.
struct Wait {
  uint32_t partition = 0;
  uint64_t lsn = 0;
  uint32_t quorum = 0;
};

}  // namespace keel::dht

// The value of a stream key (Redis Streams): entries in blocks, plus the consumer groups.
//
// Entries live in nodes of at most kNodeMaxEntries entries / kNodeMaxBytes bytes (Redis's
// stream-node-max-entries 100 and stream-node-max-bytes 4096), kept in an ordered map by the
// id of the node's first entry, like Redis's radix tree of listpacks. Inside a node an entry is
//   u8 flags (1 = deleted, 2 = same field names as the node's first entry)
//   varint ms - first.ms, varint (ms == first.ms ? seq - first.seq : seq)
//   unless same fields: varint field count, then (bytes field, bytes value) per field
//   with same fields: bytes value per field of the first entry
// so an entry of a stream whose entries share field names costs its values plus 3-5 bytes.
// XDEL marks an entry deleted (a node with no live entry is removed); trimming removes whole
// nodes from the head, and an exact trim marks entries of the first remaining node deleted,
// as Redis does (so `~` trims the same entries as Redis for the same node layout).
//
// Consumer groups hold Redis's state: last delivered id, entries-read counter, the pending
// entries list (id -> consumer, last delivery time, delivery count) and the consumers (seen
// and active times, their pending ids). Times are the command's now_ms, never a clock.
//
// A default-constructed stream allocates nothing (the Value of every other key carries one).
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/codec.h"
#include "base/result.h"

namespace keel::storage {

struct StreamId {
  uint64_t ms = 0;
  uint64_t seq = 0;
  auto operator<=>(const StreamId&) const = default;
  bool operator==(const StreamId&) const = default;
  bool zero() const { return ms == 0 && seq == 0; }
  std::string str() const;
  static constexpr StreamId max() { return {UINT64_MAX, UINT64_MAX}; }
  // The next / previous id; false (unchanged) at the end of the id space.
  bool incr();
  bool decr();
};

// An entry as iteration yields it; the views point into the stream (valid until it changes).
struct StreamEntry {
  StreamId id;
  std::vector<std::pair<std::string_view, std::string_view>> fields;
};

struct StreamNack {
  std::string consumer;
  int64_t delivery_time_ms = 0;
  uint64_t delivery_count = 0;
};

struct StreamConsumer {
  int64_t seen_time_ms = 0;     // last interaction (read, claim)
  int64_t active_time_ms = -1;  // last successful delivery or claim; -1: never
  std::set<StreamId> pending;   // ids of the group's PEL owned by this consumer
};

struct StreamGroup {
  static constexpr int64_t kInvalidEntriesRead = -1;
  StreamId last_id;
  int64_t entries_read = kInvalidEntriesRead;
  std::map<StreamId, StreamNack> pel;
  std::map<std::string, StreamConsumer, std::less<>> consumers;
  bool operator==(const StreamGroup& o) const;
};

class StreamValue {
 public:
  static constexpr uint32_t kNodeMaxEntries = 100;
  static constexpr size_t kNodeMaxBytes = 4096;

  StreamValue() = default;
  StreamValue(const StreamValue& o) : d_(o.d_ ? std::make_unique<Data>(*o.d_) : nullptr) {
    recount();
  }
  StreamValue& operator=(const StreamValue& o) {
    if (this != &o) {
      d_ = o.d_ ? std::make_unique<Data>(*o.d_) : nullptr;
      recount();
    }
    return *this;
  }
  StreamValue(StreamValue&&) noexcept = default;
  StreamValue& operator=(StreamValue&&) noexcept = default;

  // Number of live entries.
  uint64_t size() const { return d_ ? d_->length : 0; }
  StreamId last_id() const { return d_ ? d_->last_id : StreamId{}; }
  StreamId max_deleted_id() const { return d_ ? d_->max_deleted_id : StreamId{}; }
  uint64_t entries_added() const { return d_ ? d_->entries_added : 0; }
  size_t nodes() const { return d_ ? d_->nodes.size() : 0; }
  // First / last live entry id (nullopt when empty).
  std::optional<StreamId> first_entry_id() const;
  std::optional<StreamId> last_entry_id() const;

  // Appends an entry. REQUIRES: id > last_id(), fields.size() even and >= 2.
  void append(StreamId id, std::span<const std::string_view> field_values);
  // Marks the entry deleted (XDEL). Returns whether it was live.
  bool erase(StreamId id);
  // Trimming as Redis's streamTrim: by length or by minimum id; `approx` removes whole nodes
  // only; `limit` (0 = none) caps the entries removed. Returns the number removed.
  uint64_t trim_maxlen(uint64_t maxlen, bool approx, uint64_t limit);
  uint64_t trim_minid(StreamId minid, bool approx, uint64_t limit);
  // XSETID's metadata changes. REQUIRES: the caller checked Redis's preconditions.
  void set_last_id(StreamId id) { data().last_id = id; }
  void set_entries_added(uint64_t n) { data().entries_added = n; }
  void set_max_deleted_id(StreamId id) { data().max_deleted_id = id; }

  // Calls fn(const StreamEntry&) for the live entries with start <= id <= end, ascending (or
  // descending if `rev`), until fn returns false.
  template <class F>
  void range(StreamId start, StreamId end, bool rev, F&& fn) const;
  // The live entry with this id, if any (its views valid until the stream changes).
  std::optional<StreamEntry> find(StreamId id) const;

  // Consumer groups by name.
  std::map<std::string, StreamGroup, std::less<>>& groups() { return data().groups; }
  const std::map<std::string, StreamGroup, std::less<>>* groups_if_any() const {
    return d_ ? &d_->groups : nullptr;
  }
  StreamGroup* group(std::string_view name);
  const StreamGroup* group(std::string_view name) const;

  // Redis's streamEstimateDistanceFromFirstEverEntry (kInvalidEntriesRead if unknown) and
  // streamRangeHasTombstones, for entries-read and lag.
  int64_t estimate_distance(StreamId id) const;
  bool range_has_tombstones(StreamId start, StreamId end) const;

  // Approximate heap bytes (memory accounting). O(number of groups), not of entries: the
  // memory engine measures a value after every write.
  uint64_t heap_bytes() const;

  // The stored and replicated form (one format for both: storage/rocksdb and dht/effect).
  void encode(Writer& w) const;
  // Bounded decode: every node is checked (ids ascending within their node, counts), every
  // pending entry names an existing consumer. kCorruption names what was wrong.
  static Result<StreamValue> decode(Reader& r);

  bool operator==(const StreamValue& o) const;

 private:
  struct Node {
    std::string data;
    uint32_t live = 0;
    uint32_t total = 0;
    StreamId last;  // id of the node's last entry (live or deleted)
  };
  struct Data {
    std::map<StreamId, Node> nodes;  // by the id of the node's first entry
    uint64_t length = 0;
    StreamId last_id;
    StreamId max_deleted_id;
    uint64_t entries_added = 0;
    std::map<std::string, StreamGroup, std::less<>> groups;
    uint64_t node_bytes = 0;  // what the nodes cost (kept as they change: heap_bytes is O(groups))
  };
  static uint64_t node_cost(const Node& n);
  // Recomputes node_bytes (a copy's strings have other capacities than the original's).
  void recount();
  // One decoded entry of a node: its id, where its flags byte is, and its fields.
  struct Decoded {
    StreamId id;
    size_t flags_at = 0;
    bool deleted = false;
    StreamEntry entry;
  };
  Data& data() {
    if (!d_) d_ = std::make_unique<Data>();
    return *d_;
  }
  // Decodes every entry of a node (deleted ones included) in order; false if malformed.
  static bool decode_node(StreamId master, const Node& n, std::vector<Decoded>& out);
  // Marks entry `i` of node `it` deleted (REQUIRES: live).
  void mark_deleted(std::map<StreamId, Node>::iterator it, const Decoded& d);

  std::unique_ptr<Data> d_;
};

template <class F>
void StreamValue::range(StreamId start, StreamId end, bool rev, F&& fn) const {
  if (!d_ || d_->nodes.empty() || start > end) return;
  std::vector<Decoded> dec;
  auto visit = [&](std::map<StreamId, Node>::const_iterator it) {
    if (it->second.last < start || it->first > end) return true;
    dec.clear();
    decode_node(it->first, it->second, dec);
    if (!rev) {
      for (auto& d : dec) {
        if (d.deleted || d.id < start) continue;
        if (d.id > end) return false;
        if (!fn(static_cast<const StreamEntry&>(d.entry))) return false;
      }
    } else {
      for (auto d = dec.rbegin(); d != dec.rend(); ++d) {
        if (d->deleted || d->id > end) continue;
        if (d->id < start) return false;
        if (!fn(static_cast<const StreamEntry&>(d->entry))) return false;
      }
    }
    return true;
  };
  auto& nodes = d_->nodes;
  if (!rev) {
    auto it = nodes.upper_bound(start);
    if (it != nodes.begin()) --it;
    for (; it != nodes.end() && it->first <= end; ++it)
      if (!visit(it)) return;
  } else {
    auto it = nodes.upper_bound(end);
    while (it != nodes.begin()) {
      --it;
      if (it->second.last < start) return;
      if (!visit(it)) return;
    }
  }
}

}  // namespace keel::storage

// A change to one collection, described element by element: what the persistent engine
// journals and what replicas receive instead of the whole value when a command changes a few
// elements of a large hash, set, sorted set, list or stream.
//
// A command that writes a collection through Engine::update_by_element() records, next to the
// change it makes, the same change as delta ops ("field f now holds v", "member m removed",
// "pushed e at the tail"). Applying those ops to the value as it was before the command gives
// the value after it: that is the whole contract, and tests check it on every write
// (EngineConfig::verify_deltas, env KEEL_VERIFY_DELTAS=1). A command that records nothing, or
// calls whole(), is stored and replicated whole, as before: describing is an optimisation, never
// a requirement.
//
// Idempotent ops set an element to a state (hash, set, sorted set, a stream entry guarded by its
// id): applying them twice, or to a later state, converges, which replication needs (a snapshot
// taken while writes go on is followed by the log from before it). Ops relative to a position
// (list pushes and pops) are not by themselves; a list change is made idempotent by its guard
// (op 22, first, from seal_list()): the list's change number after the change, so the change is
// skipped by a list that already has that number or a later one. A list change without a guard
// is journaled by element (a journal replays each op exactly once, in order) and replicated
// whole.
//
// Wire format: a sequence of ops, each `u8 op` then its arguments:
//   1 hash_set   bytes field, bytes value        2 hash_del   bytes field
//   3 set_add    bytes member                    4 set_rem    bytes member
//   5 zset_set   bytes member, u64be score bits  6 zset_rem   bytes member
//   7 list_push_head bytes e                     8 list_push_tail bytes e
//   9 list_pop_head  varint n                   10 list_pop_tail  varint n
//  11 list_set   varint index, bytes e          12 list_insert varint index, bytes e
//  13 list_erase varint index
//  14 stream_append  u64be ms, u64be seq, varint n, n x bytes (field, value alternating)
//                    (skipped when the stream's last id is already >= the id)
//  15 stream_trim_through u64be ms, u64be seq: every entry at or below the id removed (a trim
//                    of any kind is recorded as the id before the first entry it kept, or the
//                    stream's last id when it kept none: entries added later are never touched)
//  16 stream_delete  u64be ms, u64be seq (XDEL)
//  consumer groups (each skipped when the stream has no group of that name):
//  17 group_pos      bytes group, u64be ms, u64be seq (last delivered id), svarint entries_read
//  18 consumer_set   bytes group, bytes consumer, svarint seen_ms, svarint active_ms (created if
//                    missing; its pending ids are kept)
//  19 consumer_del   bytes group, bytes consumer (with its pending entries)
//  20 pel_set        bytes group, u64be ms, u64be seq, bytes consumer, svarint delivery_ms,
//                    varint delivery_count (moved from its former consumer)
//  21 pel_del        bytes group, u64be ms, u64be seq
//  22 list_version   varint v: only as the first op; the ops after it are skipped when the
//                    list's change number is already >= v, else applied and the number set to v
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/codec.h"
#include "base/result.h"
#include "storage/list_value.h"
#include "storage/stream_value.h"

namespace keel::storage {

struct Value;

class Delta {
 public:
  // Starts over: nothing recorded (an update that writes is then stored whole).
  void clear() {
    ops_.clear();
    state_ = State::kNone;
    idempotent_ = true;
    guarded_ = false;
  }
  // The change was not (or not fully) described: the value is stored and replicated whole.
  void whole() { state_ = State::kWhole; }
  // Whether ops were recorded and nothing asked for the whole value.
  bool described() const { return state_ == State::kOps; }
  // Whether applying the ops twice, or to a later state, converges: every recorded op sets an
  // element to a state, or a list change is guarded (see the header comment).
  bool idempotent() const { return idempotent_ || guarded_; }
  std::string_view ops() const { return ops_; }
  // Takes ops received from elsewhere (a replica applying its primary's delta).
  void assign(std::string_view ops, bool idempotent);

  void hash_set(std::string_view field, std::string_view value);
  void hash_del(std::string_view field);
  void set_add(std::string_view member);
  void set_rem(std::string_view member);
  void zset_set(std::string_view member, double score);
  void zset_rem(std::string_view member);
  void list_push(bool head, std::string_view element);
  void list_pop(bool head, uint64_t n);
  void list_set(uint64_t index, std::string_view element);
  void list_insert(uint64_t index, std::string_view element);
  void list_erase(uint64_t index);
  // After a change to list `l` (whose change number was `before`): gives the list the number
  // before + 1 and, if the change was described, guards the ops with it (put first). Called by
  // the command layer once per changed list, described or not.
  void seal_list(ListValue& l, uint64_t before);
  void stream_append(StreamId id, std::span<const std::string_view> field_values);
  // After a trim that removed entries: records it by what it left.
  void stream_trimmed(const StreamValue& after);
  void stream_delete(StreamId id);
  // A consumer-group command's change, recorded as the state it left: the group's position, the
  // consumers it touched (as they are now) and the pending entries it touched (their state now,
  // or absent). Call it after the change.
  void group_touched(std::string_view group, const StreamGroup& g, std::span<const StreamId> pending_ids,
                     std::span<const std::string_view> consumers);
  void consumer_del(std::string_view group, std::string_view consumer);

 private:
  enum class State : uint8_t { kNone, kOps, kWhole };
  void op(uint8_t code, bool idempotent);
  std::string ops_;
  State state_ = State::kNone;
  bool idempotent_ = true;
  bool guarded_ = false;
};

// Applies delta ops to `v` (whose type the ops must fit). Bounded decode: kCorruption names what
// was wrong (a malformed op, an op for another type, an index past the end); ops before it stay
// applied.
Status apply_delta(Value& v, std::string_view ops);

// Reads a sorted-set member and its score (bytes member, u64be IEEE-754 bits), as deltas and
// replicated effects carry them. kCorruption when truncated or the score is NaN.
Status read_scored_member(Reader& r, std::string_view& member, double& score);

// Whether two values are equal (type, expiry and contents): the delta check's comparison.
bool same_value(const Value& a, const Value& b);

}  // namespace keel::storage

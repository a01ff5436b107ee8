#include "runtime/cluster/kv_machine.h"

#include <fmt/format.h>

#include "base/codec.h"

namespace keel::cluster {

std::string encode_reply(const Result<WriteResult>& res) {
  std::string out;
  Writer w(out);
  if (res) {
    w.u8(0);
    w.varint(res->revision);
    w.varint(res->version);
    w.u8(res->existed ? 1 : 0);
  } else {
    w.u8(static_cast<uint8_t>(res.error().code));
    w.bytes(res.error().message);
  }
  return out;
}

Result<WriteResult> decode_reply(std::string_view in) {
  Reader r(in);
  auto code = r.u8();
  if (!code) return std::unexpected(code.error());
  if (*code != 0) {
    auto msg = r.bytes(1 << 16);
    if (!msg) return std::unexpected(msg.error());
    uint8_t c = *code > static_cast<uint8_t>(Errc::kDiskError) ? static_cast<uint8_t>(Errc::kInternal) : *code;
    return make_error(static_cast<Errc>(c), std::string(*msg));
  }
  WriteResult w;
  auto rev = r.varint();
  auto ver = r.varint();
  auto ex = r.u8();
  if (!rev || !ver || !ex) return make_error(Errc::kCorruption, "meta reply: truncated");
  w.revision = *rev;
  w.version = *ver;
  w.existed = *ex != 0;
  return w;
}

KeyValue MetaMachine::to_kv(const meta::KeyValue& kv) {
  return KeyValue{kv.key, kv.value, kv.version, kv.create_revision, kv.mod_revision};
}

std::string MetaMachine::apply(uint64_t, std::string_view command) {
  auto cmd = meta::decode_command(command, limits_);
  if (!cmd) return encode_reply(std::unexpected(cmd.error()));
  auto applied = store_.apply(*cmd);
  if (!applied) return encode_reply(std::unexpected(applied.error()));
  WriteResult w;
  w.revision = applied->revision;
  w.existed = applied->prev.has_value();
  // The key's version after a put: the store bumps the previous version, or starts at 1.
  if (cmd->op == meta::Command::Op::kPut || cmd->op == meta::Command::Op::kCas)
    w.version = applied->prev ? applied->prev->version + 1 : 1;
  // A delete guarded by a version (MetaService sends it as a one-compare transaction with a
  // version >= 1): it succeeded, so the key was there.
  if (cmd->op == meta::Command::Op::kTxn && cmd->txn.deletes.size() == 1 && cmd->txn.puts.empty())
    w.existed = true;
  return encode_reply(w);
}

Status MetaMachine::restore(std::string_view state) {
  auto s = meta::Store::restore(state, limits_);
  if (!s) return std::unexpected(s.error());
  store_ = std::move(*s);
  return {};
}

}  // namespace keel::cluster

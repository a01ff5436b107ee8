// The Streams provider: XADD (NOMKSTREAM for replies), XGROUP CREATE … MKSTREAM, XREADGROUP,
// XPENDING (extended form, IDLE), XCLAIM, XACK, XDEL, DEL — what keel and Redis (6.2+) both
// serve, RESP2 or RESP3 replies.
#include <string>

#include "keel/messaging/messaging.h"

namespace keel::messaging {
namespace {

using client::Reply;

Result<Reply> run(keel::Client& c, std::vector<std::string> args) {
  auto r = c.command(std::move(args));
  if (!r) return std::unexpected(r.error());
  if (r->is_error()) return client::make_error(Errc::kServerError, r->str);
  return r;
}

// [id, [field, value, ...]] (a deleted entry's fields are null: skipped).
bool parse_entry(const Reply& r, Entry& e) {
  if (!r.is_aggregate() || r.elements.size() != 2 || !r.elements[0].is_string()) return false;
  e.id = r.elements[0].str;
  const Reply& f = r.elements[1];
  if (!f.is_aggregate()) return false;
  for (size_t i = 0; i + 1 < f.elements.size(); i += 2) e.fields.emplace_back(f.elements[i].str, f.elements[i + 1].str);
  return true;
}

void parse_entries(const Reply& list, std::vector<Entry>& out, uint32_t deliveries) {
  for (const auto& r : list.elements) {
    Entry e;
    e.deliveries = deliveries;
    if (parse_entry(r, e)) out.push_back(std::move(e));
  }
}

class RespProvider final : public Provider {
 public:
  explicit RespProvider(keel::Client& c) : c_(c) {}

  Result<std::string> append(const std::string& topic, const Fields& fields) override {
    std::vector<std::string> a{"XADD", topic, "*"};
    for (const auto& [k, v] : fields) {
      a.push_back(k);
      a.push_back(v);
    }
    auto r = run(c_, std::move(a));
    if (!r) return std::unexpected(r.error());
    if (!r->is_string()) return client::make_error(Errc::kUnexpectedReply, "XADD answered " + r->debug_string());
    return r->str;
  }

  Status create_group(const std::string& topic, const std::string& group) override {
    auto r = run(c_, {"XGROUP", "CREATE", topic, group, "0", "MKSTREAM"});
    if (!r && r.error().message.find("BUSYGROUP") == std::string::npos) return std::unexpected(r.error());
    return {};
  }

  Result<std::vector<Entry>> read_new(const std::string& topic, const std::string& group, const std::string& consumer,
                                      size_t count, std::chrono::milliseconds block) override {
    auto r = run(c_, {"XREADGROUP", "GROUP", group, consumer, "COUNT", std::to_string(count), "BLOCK",
                      std::to_string(std::max<int64_t>(1, block.count())), "STREAMS", topic, ">"});
    if (!r) return std::unexpected(r.error());
    std::vector<Entry> out;
    if (r->is_null()) return out;
    // RESP3: a map {topic: entries}; RESP2: [[topic, entries]].
    if (r->type == client::ReplyType::kMap) {
      for (size_t i = 0; i + 1 < r->elements.size(); i += 2) parse_entries(r->elements[i + 1], out, 1);
    } else {
      for (const auto& s : r->elements)
        if (s.is_aggregate() && s.elements.size() == 2) parse_entries(s.elements[1], out, 1);
    }
    return out;
  }

  Result<std::vector<Entry>> claim_idle(const std::string& topic, const std::string& group, const std::string& consumer,
                                        std::chrono::milliseconds min_idle, size_t count) override {
    auto p = run(c_, {"XPENDING", topic, group, "IDLE", std::to_string(min_idle.count()), "-", "+",
                      std::to_string(count)});
    if (!p) return std::unexpected(p.error());
    std::vector<std::string> claim{"XCLAIM", topic, group, consumer, std::to_string(min_idle.count())};
    std::vector<std::pair<std::string, uint32_t>> counts;
    for (const auto& row : p->elements) {
      if (!row.is_aggregate() || row.elements.size() != 4) continue;
      claim.push_back(row.elements[0].str);
      counts.emplace_back(row.elements[0].str, static_cast<uint32_t>(row.elements[3].integer));
    }
    std::vector<Entry> out;
    if (counts.empty()) return out;
    auto r = run(c_, std::move(claim));
    if (!r) return std::unexpected(r.error());
    parse_entries(*r, out, 1);
    for (auto& e : out)
      for (const auto& [id, n] : counts)
        if (id == e.id) e.deliveries = n + 1;
    return out;
  }

  Status ack(const std::string& topic, const std::string& group, const std::string& id) override {
    auto r = run(c_, {"XACK", topic, group, id});
    if (!r) return std::unexpected(r.error());
    return {};
  }

  Result<std::string> append_existing(const std::string& topic, const Fields& fields) override {
    std::vector<std::string> a{"XADD", topic, "NOMKSTREAM", "*"};
    for (const auto& [k, v] : fields) {
      a.push_back(k);
      a.push_back(v);
    }
    auto r = run(c_, std::move(a));
    if (!r) return std::unexpected(r.error());
    if (r->is_null()) return client::make_error(Errc::kNotFound, "topic '" + topic + "' does not exist");
    if (!r->is_string()) return client::make_error(Errc::kUnexpectedReply, "XADD answered " + r->debug_string());
    return r->str;
  }

  Status erase(const std::string& topic, const std::string& id) override {
    auto r = run(c_, {"XDEL", topic, id});
    if (!r) return std::unexpected(r.error());
    return {};
  }

  Status remove_topic(const std::string& topic) override {
    auto r = run(c_, {"DEL", topic});
    if (!r) return std::unexpected(r.error());
    return {};
  }

 private:
  keel::Client& c_;
};

}  // namespace

std::unique_ptr<Provider> resp_provider(keel::Client& client) { return std::make_unique<RespProvider>(client); }

}  // namespace keel::messaging

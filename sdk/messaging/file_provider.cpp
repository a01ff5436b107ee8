// The file provider: a topic is a file of records appended to and read back at open — one per
// line: the id, then each field as <length>:<bytes> for its name and its value (so any bytes,
// newlines included, survive); groups (position, pending entries, delivery counts) live in
// memory.
#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>

#include "keel/messaging/messaging.h"

namespace keel::messaging {
namespace {

using Clock = std::chrono::steady_clock;

struct Pending {
  std::string consumer;
  Clock::time_point delivered;
  uint32_t deliveries = 0;
};
struct Group {
  size_t next = 0;                       // index of the first entry never delivered
  std::map<size_t, Pending> pending;     // entry index -> delivery state
};
struct Topic {
  std::vector<Entry> entries;
  std::map<std::string, Group> groups;
  uint64_t last_ms = 0, seq = 0;
};

class FileProvider final : public Provider {
 public:
  explicit FileProvider(std::string dir) : dir_(std::move(dir)) { std::filesystem::create_directories(dir_); }

  Result<std::string> append(const std::string& topic, const Fields& fields) override {
    std::unique_lock lk(mu_);
    return append_locked(topic, fields);
  }

  Result<std::string> append_existing(const std::string& topic, const Fields& fields) override {
    std::unique_lock lk(mu_);
    if (!topics_.count(topic) && !std::filesystem::exists(path(topic)))
      return client::make_error(Errc::kNotFound, "topic '" + topic + "' does not exist");
    return append_locked(topic, fields);
  }

  // Forgets the entry's fields in this process (the file keeps it: entries are only appended).
  Status erase(const std::string& topic, const std::string& id) override {
    std::lock_guard lk(mu_);
    auto t = open(topic);
    if (!t) return std::unexpected(t.error());
    for (auto& e : (*t)->entries)
      if (e.id == id) Fields().swap(e.fields);
    return {};
  }

  Status remove_topic(const std::string& topic) override {
    std::lock_guard lk(mu_);
    if (auto t = open(topic); !t) return std::unexpected(t.error());
    topics_.erase(topic);
    std::error_code ec;
    std::filesystem::remove(path(topic), ec);
    if (ec) return client::make_error(Errc::kIoError, "cannot remove " + path(topic) + ": " + ec.message());
    return {};
  }

 private:
  // REQUIRES: mu_ held.
  Result<std::string> append_locked(const std::string& topic, const Fields& fields) {
    auto t = open(topic);
    if (!t) return std::unexpected(t.error());
    Topic& tp = **t;
    uint64_t ms = static_cast<uint64_t>(now_unix_ms());
    if (ms <= tp.last_ms) ++tp.seq;
    else tp.seq = 0;
    tp.last_ms = std::max(tp.last_ms, ms);
    Entry e{std::to_string(tp.last_ms) + "-" + std::to_string(tp.seq), fields, 1};
    std::string line = e.id;
    for (const auto& [k, v] : fields) {
      line += ' ' + std::to_string(k.size()) + ':' + k;
      line += std::to_string(v.size()) + ':' + v;
    }
    std::ofstream f(path(topic), std::ios::app | std::ios::binary);
    f << line << '\n';
    f.flush();
    if (!f) return client::make_error(Errc::kIoError, "cannot append to " + path(topic));
    tp.entries.push_back(std::move(e));
    cv_.notify_all();
    return tp.entries.back().id;
  }

 public:

  Status create_group(const std::string& topic, const std::string& group) override {
    std::lock_guard lk(mu_);
    auto t = open(topic);
    if (!t) return std::unexpected(t.error());
    (*t)->groups.try_emplace(group);
    return {};
  }

  Result<std::vector<Entry>> read_new(const std::string& topic, const std::string& group, const std::string& consumer,
                                      size_t count, std::chrono::milliseconds block) override {
    std::unique_lock lk(mu_);
    auto t = open(topic);
    if (!t) return std::unexpected(t.error());
    Topic& tp = **t;
    auto g = tp.groups.find(group);
    if (g == tp.groups.end())
      return client::make_error(Errc::kServerError, "NOGROUP no group '" + group + "' on topic '" + topic + "'");
    cv_.wait_for(lk, block, [&] { return g->second.next < tp.entries.size(); });
    std::vector<Entry> out;
    for (; g->second.next < tp.entries.size() && out.size() < count; ++g->second.next) {
      g->second.pending[g->second.next] = {consumer, Clock::now(), 1};
      out.push_back(tp.entries[g->second.next]);
    }
    return out;
  }

  Result<std::vector<Entry>> claim_idle(const std::string& topic, const std::string& group, const std::string& consumer,
                                        std::chrono::milliseconds min_idle, size_t count) override {
    std::lock_guard lk(mu_);
    auto t = open(topic);
    if (!t) return std::unexpected(t.error());
    auto g = (*t)->groups.find(group);
    if (g == (*t)->groups.end())
      return client::make_error(Errc::kServerError, "NOGROUP no group '" + group + "' on topic '" + topic + "'");
    std::vector<Entry> out;
    auto now = Clock::now();
    for (auto& [idx, p] : g->second.pending) {
      if (out.size() >= count) break;
      if (now - p.delivered < min_idle) continue;
      p = {consumer, now, p.deliveries + 1};
      Entry e = (*t)->entries[idx];
      e.deliveries = p.deliveries;
      out.push_back(std::move(e));
    }
    return out;
  }

  Status ack(const std::string& topic, const std::string& group, const std::string& id) override {
    std::lock_guard lk(mu_);
    auto t = open(topic);
    if (!t) return std::unexpected(t.error());
    auto g = (*t)->groups.find(group);
    if (g == (*t)->groups.end()) return {};
    std::erase_if(g->second.pending, [&](const auto& kv) { return (*t)->entries[kv.first].id == id; });
    return {};
  }

 private:
  std::string path(const std::string& topic) const { return dir_ + "/" + topic + ".log"; }

  // The topic, read from its file the first time. REQUIRES: mu_ held.
  Result<Topic*> open(const std::string& topic) {
    if (topic.empty() || topic.find('/') != std::string::npos || topic[0] == '.')
      return client::make_error(Errc::kInvalidArgument,
                                "topic '" + topic + "' is not a file name; allowed: non-empty, no '/', not starting with '.'");
    auto it = topics_.find(topic);
    if (it != topics_.end()) return &it->second;
    Topic t;
    std::ifstream f(path(topic), std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    auto bad = [&](const char* what) {
      return client::make_error(Errc::kProtocol, path(topic) + " at byte " + std::to_string(pos) + ": " + what);
    };
    // <length>:<bytes>
    auto chunk = [&](std::string& out) {
      size_t colon = data.find(':', pos);
      if (colon == std::string::npos || colon == pos || colon - pos > 10) return false;
      size_t n = 0;
      for (size_t i = pos; i < colon; ++i) {
        if (data[i] < '0' || data[i] > '9') return false;
        n = n * 10 + static_cast<size_t>(data[i] - '0');
      }
      if (n > data.size() - colon - 1) return false;
      out = data.substr(colon + 1, n);
      pos = colon + 1 + n;
      return true;
    };
    while (pos < data.size()) {
      size_t end_id = data.find_first_of(" \n", pos);
      if (end_id == std::string::npos || end_id == pos) return bad("no entry id");
      Entry e{data.substr(pos, end_id - pos), {}, 1};
      pos = end_id;
      while (pos < data.size() && data[pos] == ' ') {
        ++pos;
        std::string k, v;
        if (!chunk(k) || !chunk(v)) return bad("a field is not <length>:<bytes>");
        e.fields.emplace_back(std::move(k), std::move(v));
      }
      if (pos >= data.size() || data[pos] != '\n') return bad("an entry does not end with a newline");
      ++pos;
      t.entries.push_back(std::move(e));
    }
    if (!t.entries.empty()) {
      const auto& id = t.entries.back().id;
      t.last_ms = std::stoull(id.substr(0, id.find('-')));
      t.seq = std::stoull(id.substr(id.find('-') + 1));
    }
    return &topics_.emplace(topic, std::move(t)).first->second;
  }

  std::string dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Topic> topics_;
};

}  // namespace

std::unique_ptr<Provider> file_provider(std::string dir) { return std::make_unique<FileProvider>(std::move(dir)); }

}  // namespace keel::messaging

// Scripted interaction tests with golden output (after etcd raft's interaction_test.go):
// testdata/*.txt hold commands ("> cmd args") each followed by the output it must print.
// KEEL_REWRITE_GOLDEN=1 rewrites the files from the current behaviour (review the diff!).
//
// Commands:
//   cluster N                      N replicas, ids 1..N, config {1..N}, cluster id 7
//   propose NODE CLIENT SEQ TEXT   a client request at NODE
//   reconfig NODE CLIENT SEQ IDS   a membership change (IDS comma separated)
//   deliver [FROM] [TO] [TYPE]     deliver queued messages matching (FIFO), '*' = any
//   drop [FROM] [TO] [TYPE]        drop queued messages matching
//   stabilize                      deliver everything until the network is empty
//   tick NODE MS                   advance NODE's time to MS
//   crash NODE / restart NODE      lose volatile state / rebuild from durable records
//   isolate NODE / heal NODE       drop every message to or from NODE at delivery / stop
//   compact NODE                   snapshot NODE's application state
//   net                            list queued messages
//   status                         per node: next slot, pending requests, applied log
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "consensus/rabia/codec.h"
#include "consensus/rabia/replica.h"

namespace keel::rabia {
namespace {

const char* type_name(MsgType t) {
  switch (t) {
    case MsgType::kForward:
      return "FORWARD";
    case MsgType::kProposal:
      return "PROPOSAL";
    case MsgType::kState:
      return "STATE";
    case MsgType::kVote:
      return "VOTE";
    case MsgType::kDecided:
      return "DECIDED";
    case MsgType::kCatchUp:
      return "CATCHUP";
    case MsgType::kSnapshot:
      return "SNAPSHOT";
    case MsgType::kSnapshotChunk:
      return "CHUNK";
    case MsgType::kSnapshotPull:
      return "PULL";
  }
  return "?";
}

const char* bit_name(Bit b) { return b == Bit::k0 ? "0" : b == Bit::k1 ? "1" : "?"; }

std::string reqs(const std::vector<Request>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i)
    s += fmt::format("{}{}:{}", i ? " " : "", v[i].client_id, v[i].seq);
  return s + "]";
}

std::string describe(const Message& m) {
  std::string s = fmt::format("{}->{} {}", m.from, m.to, type_name(m.type));
  switch (m.type) {
    case MsgType::kForward:
      return s + " " + reqs(m.requests);
    case MsgType::kProposal:
      return s + fmt::format(" s={} {}", m.slot, reqs(m.requests));
    case MsgType::kState:
    case MsgType::kVote:
      return s + fmt::format(" s={} p={} {}", m.slot, m.phase, bit_name(m.bit));
    case MsgType::kDecided:
      for (auto& d : m.decisions)
        s += fmt::format(" s={}:{}", d.slot, d.null ? "NULL" : reqs(d.batch));
      return s;
    case MsgType::kCatchUp:
      return s + fmt::format(" from s={}", m.slot);
    case MsgType::kSnapshot:
      return s + fmt::format(" next={}", m.snapshot->next_slot);
    case MsgType::kSnapshotChunk:
    case MsgType::kSnapshotPull:
      return s + fmt::format(" next={} at={}/{}", m.slot, m.chunk->offset, m.chunk->total);
  }
  return s;
}

std::string describe(const Record& r) {
  switch (r.kind) {
    case Record::Kind::kProposal:
      return fmt::format("PROPOSAL s={} {}", r.slot, reqs(r.requests));
    case Record::Kind::kState:
      return fmt::format("STATE s={} p={} {}", r.slot, r.phase, bit_name(r.bit));
    case Record::Kind::kVote:
      return fmt::format("VOTE s={} p={} {}", r.slot, r.phase, bit_name(r.bit));
    case Record::Kind::kDecision:
      return fmt::format("DECISION s={} {}", r.decision.slot,
                         r.decision.null ? "NULL" : reqs(r.decision.batch));
    case Record::Kind::kSnapshot:
      return fmt::format("SNAPSHOT next={}", r.snapshot.next_slot);
  }
  return "?";
}

struct Node {
  std::unique_ptr<Replica> r;
  std::vector<std::string> disk;
  std::vector<std::string> applied;  // "s=3 [5:1]"
  int64_t now = 0;
};

class Harness {
 public:
  std::string run(const std::string& line) {
    out_.clear();
    std::istringstream in(line);
    std::string cmd;
    in >> cmd;
    std::vector<std::string> a;
    for (std::string w; in >> w;) a.push_back(w);
    auto num = [&](size_t i) { return static_cast<uint64_t>(std::stoull(a.at(i))); };
    if (cmd == "cluster") {
      cfg_ = Config{.cluster_id = 7, .epoch = 0};
      for (NodeId i = 1; i <= num(0); ++i) cfg_.members.push_back(i);
      nodes_.clear();
      for (NodeId i = 1; i <= num(0); ++i) {
        nodes_[i].r = std::make_unique<Replica>(options(i));
      }
    } else if (cmd == "propose" || cmd == "reconfig") {
      NodeId id = static_cast<NodeId>(num(0));
      Request q{.client_id = num(1), .seq = num(2)};
      if (cmd == "propose") {
        q.payload = a.at(3);
      } else {
        std::vector<NodeId> ids;
        std::stringstream ss(a.at(3));
        for (std::string t; std::getline(ss, t, ',');)
          ids.push_back(static_cast<NodeId>(std::stoul(t)));
        q.kind = Request::Kind::kReconfig;
        q.payload = encode_members(ids);
      }
      auto st = nodes_.at(id).r->propose(q);
      if (!st)
        emit(fmt::format("{}: error {}: {}", id, errc_name(st.error().code), st.error().message));
      drain(id);
    } else if (cmd == "deliver" || cmd == "drop") {
      bool deliver = cmd == "deliver";
      std::string from = a.size() > 0 ? a[0] : "*", to = a.size() > 1 ? a[1] : "*",
                  type = a.size() > 2 ? a[2] : "*";
      // Take the matching messages first: deliveries queue new messages behind them.
      std::deque<Message> take, keep;
      for (auto& m : net_) {
        bool match = (from == "*" || std::to_string(m.from) == from) &&
                     (to == "*" || std::to_string(m.to) == to) &&
                     (type == "*" || type == type_name(m.type));
        (match ? take : keep).push_back(std::move(m));
      }
      net_ = std::move(keep);
      for (auto& m : take) {
        if (!deliver) {
          emit("dropped " + describe(m));
          continue;
        }
        step(m);
      }
    } else if (cmd == "stabilize") {
      for (int guard = 0; !net_.empty() && guard < 10000; ++guard) {
        Message m = std::move(net_.front());
        net_.pop_front();
        step(m);
      }
    } else if (cmd == "tick") {
      NodeId id = static_cast<NodeId>(num(0));
      auto& n = nodes_.at(id);
      n.now = static_cast<int64_t>(num(1));
      if (n.r) {
        n.r->tick(n.now);
        drain(id);
      }
    } else if (cmd == "crash") {
      NodeId id = static_cast<NodeId>(num(0));
      nodes_.at(id).r.reset();
      nodes_.at(id).applied.clear();
      emit(fmt::format("{} crashed", id));
    } else if (cmd == "restart") {
      NodeId id = static_cast<NodeId>(num(0));
      auto& n = nodes_.at(id);
      std::vector<Record> recs;
      for (auto& b : n.disk) recs.push_back(*decode_record(b));
      n.r = std::make_unique<Replica>(options(id), recs);
      n.r->tick(n.now);
      emit(fmt::format("{} restarted from {} records at slot {}", id, recs.size(),
                       n.r->next_slot()));
      drain(id);
    } else if (cmd == "isolate") {
      isolated_.insert(static_cast<NodeId>(num(0)));
    } else if (cmd == "heal") {
      isolated_.erase(static_cast<NodeId>(num(0)));
    } else if (cmd == "compact") {
      NodeId id = static_cast<NodeId>(num(0));
      auto& n = nodes_.at(id);
      std::string state;
      for (auto& s : n.applied) state += s + ";";
      auto st = n.r->compact(n.r->next_slot(), state);
      if (!st) emit("error: " + st.error().message);
      drain(id);
    } else if (cmd == "net") {
      for (auto& m : net_) emit("  " + describe(m));
    } else if (cmd == "status") {
      for (auto& [id, n] : nodes_) {
        if (!n.r) {
          emit(fmt::format("{}: down", id));
          continue;
        }
        std::string log;
        for (auto& s : n.applied) log += " " + s;
        emit(fmt::format("{}: next={} pending={} epoch={} members={} applied:{}", id,
                         n.r->next_slot(), n.r->pending(), n.r->config().epoch,
                         fmt::join(n.r->config().members, ","), log));
      }
    } else {
      emit("unknown command " + cmd);
    }
    return out_;
  }

 private:
  Options options(NodeId id) {
    return Options{.self = id,
                   .initial = cfg_,
                   .max_batch = 4,
                   .rebroadcast_interval_ms = 100,
                   .catchup_batch = 8,
                   .log_retain = 1};
  }
  void emit(const std::string& s) { out_ += s + "\n"; }
  void step(const Message& m) {
    if (isolated_.contains(m.to) || isolated_.contains(m.from)) {
      emit("lost " + describe(m) + " (isolated)");
      return;
    }
    auto it = nodes_.find(m.to);
    if (it == nodes_.end() || !it->second.r) {
      emit("lost " + describe(m) + " (node down)");
      return;
    }
    // Every message goes through the codec, as on the wire.
    auto decoded = decode_message(encode(m));
    EXPECT_TRUE(decoded.has_value());
    emit("deliver " + describe(m));
    it->second.r->step(*decoded);
    drain(m.to);
  }
  void drain(NodeId id) {
    auto& n = nodes_.at(id);
    while (n.r && n.r->has_ready()) {
      Ready rd = n.r->ready();
      for (auto& r : rd.persist) {
        emit(fmt::format("  {} persist {}", id, describe(r)));
        n.disk.push_back(encode(r));
      }
      for (auto& m : rd.messages) net_.push_back(m);
      for (size_t i = 0; i < rd.messages.size();) {
        // One line per run of messages of the same type.
        std::string s;
        size_t j = i;
        for (; j < rd.messages.size() && rd.messages[j].type == rd.messages[i].type; ++j)
          s += " " + std::to_string(rd.messages[j].to);
        emit(fmt::format("  {} sends {} to{}", id, type_name(rd.messages[i].type), s));
        i = j;
      }
      if (rd.install) {
        n.applied.clear();
        n.applied.push_back(fmt::format("snap<{}>", rd.install->next_slot));
        emit(fmt::format("  {} installs snapshot next={}", id, rd.install->next_slot));
      }
      for (auto& e : rd.apply) {
        std::string s = fmt::format("s{}={}", e.slot, e.null ? "NULL" : reqs(e.requests));
        n.applied.push_back(s);
        emit(fmt::format("  {} applies {}", id, s));
      }
      n.r->advance();
    }
  }

  Config cfg_;
  std::map<NodeId, Node> nodes_;
  std::deque<Message> net_;
  std::set<NodeId> isolated_;
  std::string out_;
};

std::string run_script(const std::string& text) {
  Harness h;
  std::string out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("> ", 0) == 0) {
      out += line + "\n";
      out += h.run(line.substr(2));
    } else if (line.rfind("#", 0) == 0 || (line.empty() && false)) {
      out += line + "\n";
    }
  }
  return out;
}

class Interaction : public ::testing::TestWithParam<std::string> {};

TEST_P(Interaction, MatchesGolden) {
  std::filesystem::path p = std::filesystem::path(KEEL_RABIA_TESTDATA) / GetParam();
  std::ifstream f(p);
  ASSERT_TRUE(f) << "missing " << p;
  std::stringstream ss;
  ss << f.rdbuf();
  std::string want = ss.str();
  std::string got = run_script(want);
  if (std::getenv("KEEL_REWRITE_GOLDEN")) {
    std::ofstream(p) << got;
    return;
  }
  EXPECT_EQ(got, want) << "rewrite with KEEL_REWRITE_GOLDEN=1 and review the diff";
}

std::vector<std::string> scripts() {
  std::vector<std::string> v;
  for (auto& e : std::filesystem::directory_iterator(KEEL_RABIA_TESTDATA))
    if (e.path().extension() == ".txt") v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

INSTANTIATE_TEST_SUITE_P(Rabia, Interaction, ::testing::ValuesIn(scripts()), [](const auto& info) {
  std::string n = info.param.substr(0, info.param.size() - 4);
  for (auto& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

}  // namespace
}  // namespace keel::rabia

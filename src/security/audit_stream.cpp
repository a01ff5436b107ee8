#include "security/audit_stream.h"

#include "base/assert.h"
#include "observe/log.h"

namespace keel::security {

namespace {
spdlog::logger& klog() { return observe::logger(observe::Component::kSecurity); }

// The entry's own fields: an event field of one of these names is renamed "field.<name>" so
// that it cannot pass for the entry's event, node, time or trace.
bool reserved(std::string_view name) {
  return name == "event" || name == "node" || name == "ts_ms" || name == "trace_id";
}
}  // namespace

std::shared_ptr<AuditStream> AuditStream::create(AuditStreamOptions opt, Runner run, Post post,
                                                 Now now) {
  KEEL_ASSERT(!opt.key.empty() && opt.max_len > 0 && opt.queue > 0);
  KEEL_ASSERT(run && post && now);
  return std::shared_ptr<AuditStream>(
      new AuditStream(std::move(opt), std::move(run), std::move(post), std::move(now)));
}

AuditStream::AuditStream(AuditStreamOptions opt, Runner run, Post post, Now now)
    : opt_(std::move(opt)), run_(std::move(run)), post_(std::move(post)), now_(std::move(now)) {}

std::vector<std::string> AuditStream::command(const AuditStreamOptions& opt, const audit::Record& r,
                                              int64_t ts_ms) {
  std::vector<std::string> argv{
      "XADD",  opt.key, "MAXLEN", "~",     std::to_string(opt.max_len), "*", "event",
      r.event, "node",  opt.node, "ts_ms", std::to_string(ts_ms)};
  if (!r.trace_id.empty()) {
    argv.push_back("trace_id");
    argv.push_back(r.trace_id);
  }
  for (auto& [k, v] : r.fields) {
    argv.push_back(reserved(k) ? "field." + k : k);
    argv.push_back(v);
  }
  KEEL_ASSERT(argv.size() % 2 == 0);  // XADD key MAXLEN ~ n * then field/value pairs
  return argv;
}

void AuditStream::push(audit::Record r) {
  const int64_t ts = now_();
  bool schedule = false;
  {
    std::lock_guard lock(mu_);
    if (stopped_ || queue_.size() + in_flight_ >= opt_.queue) {
      ++stats_.dropped;
      return;
    }
    queue_.push_back(Item{std::move(r), ts});
    if (!busy_) busy_ = schedule = true;
  }
  // Outside the lock: post_ may take locks of its own. Never inline (the caller may hold
  // locks, or be the request this event is about).
  if (schedule) post_([self = shared_from_this()] { self->pump(); });
}

void AuditStream::pump() {
  std::vector<std::string> argv;
  {
    std::lock_guard lock(mu_);
    KEEL_ASSERT(busy_);
    if (stopped_ || queue_.empty()) {
      busy_ = false;
      return;
    }
    Item it = std::move(queue_.front());
    queue_.pop_front();
    KEEL_ASSERT(in_flight_ == 0);
    in_flight_ = 1;
    argv = command(opt_, it.record, it.ts_ms);
  }
  // The reply may come on any thread, or before run_ returns: finished() only posts the next
  // pump, so nothing nests.
  run_(std::move(argv), [self = shared_from_this()](std::string reply) { self->finished(reply); });
}

void AuditStream::finished(const std::string& reply) {
  // An XADD answers the new entry's id (a bulk string); anything else is a refusal.
  const bool ok = reply.starts_with("$") && !reply.starts_with("$-1");
  bool log_failure = false, log_recovery = false;
  uint64_t failed_in_run = 0;
  {
    std::lock_guard lock(mu_);
    KEEL_ASSERT(in_flight_ == 1);
    in_flight_ = 0;
    if (ok) {
      ++stats_.appended;
      if (failing_) {
        log_recovery = true;
        failed_in_run = failed_in_run_;
      }
      failing_ = false;
      failed_in_run_ = 0;
    } else {
      ++stats_.failed;
      ++failed_in_run_;
      log_failure = !failing_;
      failing_ = true;
    }
  }
  if (log_failure) {
    std::string why =
        reply.substr(reply.starts_with("-") ? 1 : 0, std::min<size_t>(reply.find("\r\n"), 200));
    if (!why.empty() && why.back() == '\r') why.pop_back();
    klog().warn(
        "audit stream: appending to '{}' failed ({}); audit events are still logged; further "
        "failures are "
        "counted in keel_audit_stream_failed_total until an append works again",
        opt_.key, why.empty() ? std::string("no reply") : why);
  }
  if (log_recovery)
    klog().info(
        "audit stream: appending to '{}' works again ({} event(s) could not be appended meanwhile)",
        opt_.key, failed_in_run);
  post_([self = shared_from_this()] { self->pump(); });
}

void AuditStream::stop() {
  std::lock_guard lock(mu_);
  stopped_ = true;
  stats_.dropped += queue_.size();
  queue_.clear();
}

AuditStream::Stats AuditStream::stats() const {
  std::lock_guard lock(mu_);
  Stats s = stats_;
  s.queued = queue_.size() + in_flight_;
  return s;
}

}  // namespace keel::security

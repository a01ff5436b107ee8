#include "observe/tracer.h"

#include <chrono>

namespace keel::observe {

Tracer::Tracer(TracerOptions opt, unsigned shards)
    : opt_(std::move(opt)), sampler_(opt_.sampler), local_(std::make_unique<Local[]>(shards)),
      exporter_(ExporterOptions{opt_.endpoint, node_resource(opt_.service_name, opt_.instance_id, opt_.version),
                                opt_.exporter, opt_.export_timeout_ms}) {
  for (unsigned i = 0; i < shards; ++i) {
    local_[i].rng = SeededRandom(system_seed());
    local_[i].buf.reserve(kLocalBatch);
  }
  if (opt_.recent.max_spans > 0) ring_ = std::make_unique<TraceRing>(opt_.recent);
}

Tracer::~Tracer() { stop(); }

int64_t Tracer::now_unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void Tracer::start() { exporter_.start(); }
void Tracer::stop() { exporter_.stop(); }

void Tracer::record(unsigned shard, SpanData span) { record(shard, std::move(span), true); }

void Tracer::record(unsigned shard, SpanData span, bool may_be_kept) {
  auto& l = local_[shard];
  if (may_be_kept) remember(span);
  l.buf.push_back(std::move(span));
  if (l.buf.size() >= kLocalBatch) flush(shard);
}

void Tracer::record_any_thread(SpanData span) {
  remember(span);
  exporter_.hand_off(std::move(span));
}

void Tracer::keep(const TraceId& id) {
  if (!ring_) return;
  std::lock_guard l(ring_mu_);
  ring_->keep(id);
}

std::vector<SpanData> Tracer::recent_spans(const TraceId& id) const {
  if (!ring_) return {};
  std::lock_guard l(ring_mu_);
  return ring_->spans(id);
}

std::vector<TraceSummary> Tracer::recent_traces(size_t limit) const {
  if (!ring_) return {};
  std::lock_guard l(ring_mu_);
  return ring_->kept(limit);
}

TraceRingStats Tracer::recent_stats() const {
  if (!ring_) return {};
  std::lock_guard l(ring_mu_);
  return ring_->stats();
}

void Tracer::flush(unsigned shard) {
  auto& l = local_[shard];
  if (l.buf.empty()) return;
  exporter_.hand_off(l.buf);
}

TracerStats Tracer::stats() const { return exporter_.stats(); }

}  // namespace keel::observe

#include "observe/tracer.h"

#include <chrono>

namespace keel::observe {

namespace {
ExporterOptions exporter_options(const TracerOptions& o) {
  ExporterOptions e;
  e.endpoint = o.endpoint;
  e.resource.attributes.push_back({"service.name", o.service_name});
  if (!o.instance_id.empty()) e.resource.attributes.push_back({"service.instance.id", o.instance_id});
  if (!o.version.empty()) e.resource.attributes.push_back({"service.version", o.version});
  e.resource.scope_name = "keel";
  e.resource.scope_version = o.version;
  e.policy = o.exporter;
  e.timeout_ms = o.export_timeout_ms;
  return e;
}
}  // namespace

Tracer::Tracer(TracerOptions opt, unsigned shards)
    : opt_(std::move(opt)), sampler_(opt_.sampler), local_(std::make_unique<Local[]>(shards)),
      exporter_(exporter_options(opt_)) {
  for (unsigned i = 0; i < shards; ++i) {
    local_[i].rng = SeededRandom(system_seed());
    local_[i].buf.reserve(kLocalBatch);
  }
}

Tracer::~Tracer() { stop(); }

int64_t Tracer::now_unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void Tracer::start() { exporter_.start(); }
void Tracer::stop() { exporter_.stop(); }

void Tracer::record(unsigned shard, SpanData span) {
  auto& l = local_[shard];
  l.buf.push_back(std::move(span));
  if (l.buf.size() >= kLocalBatch) flush(shard);
}

void Tracer::record_any_thread(SpanData span) { exporter_.hand_off(std::move(span)); }

void Tracer::flush(unsigned shard) {
  auto& l = local_[shard];
  if (l.buf.empty()) return;
  exporter_.hand_off(l.buf);
}

TracerStats Tracer::stats() const {
  ExporterStats e = exporter_.stats();
  return {e.export_counters, e.dropped_handoff, e.queued};
}

}  // namespace keel::observe

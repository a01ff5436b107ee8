// Which finished requests become exported spans. Pure: the caller hands in the random bits,
// the parent's decision, the outcome and the duration.
//
//  - head decision (ParentBased(TraceIdRatioBased), as OpenTelemetry's default): a request with
//    a remote parent follows the parent's sampled flag; a new trace is sampled when the low 64
//    bits of its trace id fall below ratio * 2^64 (the same decision on every node for one
//    trace id).
//  - tail rules: a request that failed (keep_errors) or took at least slow_ns (> 0) is kept
//    whatever the head decision was, so the interesting requests are never lost to sampling.
//
// Cost when nothing is kept: one comparison of a random number (no id, no allocation).
#pragma once

#include <cmath>
#include <cstdint>

namespace keel::observe {

struct SamplerOptions {
  double ratio = 0.0;      // 0..1
  int64_t slow_ns = 0;     // 0: off
  bool keep_errors = true;
};

class Sampler {
 public:
  explicit Sampler(SamplerOptions o = {}) : opt_(o) {
    if (!(o.ratio > 0)) threshold_ = 0, always_ = false;
    else if (o.ratio >= 1) threshold_ = UINT64_MAX, always_ = true;
    else threshold_ = static_cast<uint64_t>(std::ldexp(o.ratio, 64)), always_ = false;
  }
  // A new trace whose trace id's low 64 bits are `low`.
  bool head_root(uint64_t low) const { return always_ || low < threshold_; }
  // A trace continued from a remote parent.
  static bool head_parent(bool parent_sampled) { return parent_sampled; }
  // The final word once the request is done.
  bool keep(bool head, bool error, int64_t duration_ns) const {
    return head || (error && opt_.keep_errors) || (opt_.slow_ns > 0 && duration_ns >= opt_.slow_ns);
  }
  const SamplerOptions& options() const { return opt_; }

 private:
  SamplerOptions opt_;
  uint64_t threshold_ = 0;
  bool always_ = false;
};

}  // namespace keel::observe

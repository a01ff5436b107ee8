// Bounds for counts that are sums of independent coin flips (a node's copies over P partitions:
// Binomial(P, p) when the placement hash behaves as random). The properties that draw random
// node ids assert these, so a correct placement fails them with probability below 1e-9 per
// count — they catch a broken hash, score or weight, never a correct build by chance (a
// Gaussian "5 deviations" bound is not enough: the binomial's upper tail for small p is far
// heavier). Chernoff: P(X >= (1+d)m) <= exp(-d^2 m / (2+d)), P(X <= (1-d)m) <= exp(-d^2 m / 2).
#pragma once

#include <algorithm>
#include <cmath>

namespace keel::cluster::testing {

inline constexpr double kLnInverseFailure = 20.72;  // ln(1e9)

inline double binomial_upper(double mean) {
  double l = kLnInverseFailure;
  double d = (l + std::sqrt(l * l + 8 * mean * l)) / (2 * mean);
  return (1 + d) * mean;
}

inline double binomial_lower(double mean) {
  double d = std::sqrt(2 * kLnInverseFailure / mean);
  return std::max(0.0, (1 - d) * mean);
}

}  // namespace keel::cluster::testing

// A log-linear histogram of latencies in nanoseconds: 32 sub-buckets per
// power of two, so a reported percentile is within 3.2% of the true value
// (HdrHistogram's idea, reduced to what the sink needs). One writer (the
// sink thread); readers load relaxed and may see a bucket one frame behind.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>

namespace l4lb::bench {

class LatencyHistogram {
 public:
  static constexpr uint32_t kSubBucketBits = 5;
  static constexpr uint32_t kSubBuckets = 1u << kSubBucketBits;
  // Up to 2^40 ns (18 minutes); larger values land in the last bucket.
  static constexpr uint32_t kBucketCount = (40 - kSubBucketBits + 1) * kSubBuckets;

  static uint32_t index_of(uint64_t ns) {
    if (ns < kSubBuckets) return static_cast<uint32_t>(ns);
    const uint32_t msb = 63 - static_cast<uint32_t>(std::countl_zero(ns));
    const uint32_t shift = msb - kSubBucketBits;
    const uint32_t index = ((shift + 1) << kSubBucketBits) | static_cast<uint32_t>((ns >> shift) & (kSubBuckets - 1));
    return index < kBucketCount ? index : kBucketCount - 1;
  }

  // The middle of a bucket's value range.
  static double value_of(uint32_t index) {
    if (index < kSubBuckets) return index;
    const uint32_t shift = (index >> kSubBucketBits) - 1;
    const uint64_t mantissa = (index & (kSubBuckets - 1)) | kSubBuckets;
    return static_cast<double>(mantissa << shift) + static_cast<double>((1ull << shift) - 1) / 2.0;
  }

  // Writer only.
  void record(uint64_t ns) {
    auto& bucket = buckets_[index_of(ns)];
    bucket.store(bucket.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void reset() {
    for (auto& bucket : buckets_) bucket.store(0, std::memory_order_relaxed);
  }

  // Any thread. p in [0, 1]; 0 when empty.
  double percentile(double p) const {
    uint64_t total = 0;
    for (const auto& bucket : buckets_) total += bucket.load(std::memory_order_relaxed);
    if (total == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(p * static_cast<double>(total));
    if (rank >= total) rank = total - 1;
    uint64_t seen = 0;
    for (uint32_t i = 0; i < kBucketCount; ++i) {
      seen += buckets_[i].load(std::memory_order_relaxed);
      if (seen > rank) return value_of(i);
    }
    return value_of(kBucketCount - 1);
  }

  uint64_t count() const {
    uint64_t total = 0;
    for (const auto& bucket : buckets_) total += bucket.load(std::memory_order_relaxed);
    return total;
  }

 private:
  std::atomic<uint64_t> buckets_[kBucketCount]{};
};

}  // namespace l4lb::bench

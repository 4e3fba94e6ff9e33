// wrr: weighted round robin, exact over every full cycle.
//
// The cycle (sum of weights / their gcd picks) is precomputed at build with
// nginx's smooth weighted round robin (every backend adds its weight to a
// current value, the largest is picked and pays the total back): over one
// cycle each backend is picked exactly w_i / gcd times, interleaved (weights
// 5,1,1 give a a b a c a a, not a a a a a b c). A pick is then one array read
// and the worker's PickState only holds its position.
//
// When the cycle is too long to precompute (kMaxPrecomputedCycle picks, or
// kMaxPrecomputeWork steps of the O(cycle x backends) build), picks fall back
// to IPVS's gcd-based algorithm (ip_vs_wrr.c): still exact per cycle, bursty
// rather than smooth, O(backends) per pick at worst, with the position and
// current weight in the PickState.
#pragma once

#include <vector>

#include "core/sched/scheduler.h"

namespace l4lb::core::sched {

class WeightedRoundRobinScheduler final : public Scheduler {
 public:
  // 64 Ki picks x 4 bytes: 256 KiB at most per service.
  static constexpr uint64_t kMaxPrecomputedCycle = 1u << 16;
  // Bounds the build to a few milliseconds.
  static constexpr uint64_t kMaxPrecomputeWork = 1u << 24;

  static std::unique_ptr<WeightedRoundRobinScheduler> build(std::span<const BackendSpec> backends,
                                                            BuildError* error);

  SchedulerKind kind() const override { return SchedulerKind::wrr; }
  int32_t pick(const PickInput& input, PickState& state) const override;

  // Picks per full cycle (sum of weights / gcd of schedulable backends).
  uint64_t cycle_length() const { return cycle_length_; }
  bool precomputed() const { return !cycle_.empty(); }

 private:
  using Scheduler::Scheduler;

  uint64_t cycle_length_ = 0;
  std::vector<uint32_t> cycle_;              // backend indexes in pick order (precomputed mode)
  std::vector<uint32_t> normalized_weight_;  // per schedulable_ position, divided by the gcd
  uint32_t max_weight_ = 0;                  // largest normalized weight
};

}  // namespace l4lb::core::sched

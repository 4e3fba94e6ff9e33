// lc: the schedulable backend with the fewest active flows (IPVS lc, counting
// the flows the flow table tracks). Ties rotate with the worker's PickState so
// that an idle service spreads its first flows instead of piling on the first
// backend. O(backends) per pick, like IPVS.
#pragma once

#include "core/sched/scheduler.h"

namespace l4lb::core::sched {

// Relaxed: the counts are a load estimate; a stale read picks a backend that
// was least loaded a moment ago. Negative transients count as zero.
inline uint64_t active_flows_of(const BackendSpec& backend) {
  if (backend.active_flows == nullptr) return 0;
  const int32_t count = backend.active_flows->load(std::memory_order_relaxed);
  return count < 0 ? 0 : static_cast<uint64_t>(count);
}

class LeastConnectionScheduler final : public Scheduler {
 public:
  static std::unique_ptr<LeastConnectionScheduler> build(std::span<const BackendSpec> backends, BuildError* error);

  SchedulerKind kind() const override { return SchedulerKind::lc; }
  int32_t pick(const PickInput& input, PickState& state) const override;
  PickExplanation explain(const PickInput& input) const override;

 private:
  using Scheduler::Scheduler;
};

}  // namespace l4lb::core::sched

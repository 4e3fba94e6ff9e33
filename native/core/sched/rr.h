// rr: each new flow goes to the next schedulable backend in list order.
// Weights only matter as 0 = drain (IPVS rr does the same).
#pragma once

#include "core/sched/scheduler.h"

namespace l4lb::core::sched {

class RoundRobinScheduler final : public Scheduler {
 public:
  static std::unique_ptr<RoundRobinScheduler> build(std::span<const BackendSpec> backends, BuildError* error);

  SchedulerKind kind() const override { return SchedulerKind::rr; }
  int32_t pick(const PickInput& input, PickState& state) const override;

 private:
  using Scheduler::Scheduler;
};

}  // namespace l4lb::core::sched

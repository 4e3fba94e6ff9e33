// wlc: the schedulable backend with the smallest (active flows + 1) / weight.
// The +1 makes an idle service fill heavier backends first in proportion to
// their weights, where plain active / weight would tie at zero. Compared by
// cross-multiplication in 64 bits: no division, no rounding.
#pragma once

#include "core/sched/scheduler.h"

namespace l4lb::core::sched {

class WeightedLeastConnectionScheduler final : public Scheduler {
 public:
  static std::unique_ptr<WeightedLeastConnectionScheduler> build(std::span<const BackendSpec> backends,
                                                                 BuildError* error);

  SchedulerKind kind() const override { return SchedulerKind::wlc; }
  int32_t pick(const PickInput& input, PickState& state) const override;
  PickExplanation explain(const PickInput& input) const override;

 private:
  using Scheduler::Scheduler;
};

}  // namespace l4lb::core::sched

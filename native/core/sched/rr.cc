#include "core/sched/rr.h"

namespace l4lb::core::sched {

std::unique_ptr<RoundRobinScheduler> RoundRobinScheduler::build(std::span<const BackendSpec> backends,
                                                                BuildError* error) {
  if (!validate_backends(backends, error)) return nullptr;
  return std::unique_ptr<RoundRobinScheduler>(new RoundRobinScheduler(backends));
}

int32_t RoundRobinScheduler::pick(const PickInput&, PickState& state) const {
  if (schedulable_.empty()) return kNoBackend;
  const uint64_t position = state.sequence++;
  return static_cast<int32_t>(schedulable_[position % schedulable_.size()]);
}

}  // namespace l4lb::core::sched

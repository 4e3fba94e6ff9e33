#include "core/sched/lc.h"

namespace l4lb::core::sched {

std::unique_ptr<LeastConnectionScheduler> LeastConnectionScheduler::build(std::span<const BackendSpec> backends,
                                                                          BuildError* error) {
  if (!validate_backends(backends, error)) return nullptr;
  return std::unique_ptr<LeastConnectionScheduler>(new LeastConnectionScheduler(backends));
}

// A fresh PickState: the tie break of a worker that has not picked yet.
PickExplanation LeastConnectionScheduler::explain(const PickInput& input) const {
  PickState fresh;
  PickExplanation out;
  out.backend = pick(input, fresh);
  return out;
}

int32_t LeastConnectionScheduler::pick(const PickInput&, PickState& state) const {
  const size_t count = schedulable_.size();
  if (count == 0) return kNoBackend;
  const size_t start = static_cast<size_t>(state.sequence++ % count);
  uint32_t best = schedulable_[start];
  uint64_t best_load = active_flows_of(backends_[best]);
  for (size_t step = 1; step < count; ++step) {
    size_t position = start + step;
    if (position >= count) position -= count;
    const uint32_t candidate = schedulable_[position];
    const uint64_t load = active_flows_of(backends_[candidate]);
    if (load < best_load) {
      best = candidate;
      best_load = load;
    }
  }
  return static_cast<int32_t>(best);
}

}  // namespace l4lb::core::sched

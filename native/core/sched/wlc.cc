#include "core/sched/wlc.h"

#include "core/sched/lc.h"

namespace l4lb::core::sched {

std::unique_ptr<WeightedLeastConnectionScheduler> WeightedLeastConnectionScheduler::build(
    std::span<const BackendSpec> backends, BuildError* error) {
  if (!validate_backends(backends, error)) return nullptr;
  return std::unique_ptr<WeightedLeastConnectionScheduler>(new WeightedLeastConnectionScheduler(backends));
}

// A fresh PickState: the tie break of a worker that has not picked yet.
PickExplanation WeightedLeastConnectionScheduler::explain(const PickInput& input) const {
  PickState fresh;
  PickExplanation out;
  out.backend = pick(input, fresh);
  return out;
}

int32_t WeightedLeastConnectionScheduler::pick(const PickInput&, PickState& state) const {
  const size_t count = schedulable_.size();
  if (count == 0) return kNoBackend;
  const size_t start = static_cast<size_t>(state.sequence++ % count);
  uint32_t best = schedulable_[start];
  // Counts are below 2^31 and weights below 2^32: products fit in 64 bits.
  uint64_t best_load = active_flows_of(backends_[best]) + 1;
  uint64_t best_weight = backends_[best].weight;
  for (size_t step = 1; step < count; ++step) {
    size_t position = start + step;
    if (position >= count) position -= count;
    const uint32_t candidate = schedulable_[position];
    const uint64_t load = active_flows_of(backends_[candidate]) + 1;
    const uint64_t weight = backends_[candidate].weight;
    if (load * best_weight < best_load * weight) {
      best = candidate;
      best_load = load;
      best_weight = weight;
    }
  }
  return static_cast<int32_t>(best);
}

}  // namespace l4lb::core::sched

#include "core/sched/wrr.h"

#include <algorithm>
#include <numeric>

namespace l4lb::core::sched {

std::unique_ptr<WeightedRoundRobinScheduler> WeightedRoundRobinScheduler::build(
    std::span<const BackendSpec> backends, BuildError* error) {
  if (!validate_backends(backends, error)) return nullptr;
  std::unique_ptr<WeightedRoundRobinScheduler> scheduler(new WeightedRoundRobinScheduler(backends));
  const std::vector<uint32_t>& members = scheduler->schedulable_;
  if (members.empty()) return scheduler;

  uint32_t divisor = 0;
  for (uint32_t index : members) divisor = std::gcd(divisor, backends[index].weight);
  uint64_t cycle = 0;
  for (uint32_t index : members) {
    const uint32_t weight = backends[index].weight / divisor;
    scheduler->normalized_weight_.push_back(weight);
    scheduler->max_weight_ = std::max(scheduler->max_weight_, weight);
    cycle += weight;
  }
  scheduler->cycle_length_ = cycle;
  if (cycle > kMaxPrecomputedCycle || cycle * members.size() > kMaxPrecomputeWork) return scheduler;

  // nginx's smooth weighted round robin (ngx_http_upstream_get_peer): after a
  // full cycle every current value is back to zero, so the cycle repeats.
  const std::vector<uint32_t>& weights = scheduler->normalized_weight_;
  std::vector<int64_t> current(members.size(), 0);
  const int64_t total = static_cast<int64_t>(cycle);
  scheduler->cycle_.reserve(cycle);
  for (uint64_t n = 0; n < cycle; ++n) {
    size_t best = 0;
    for (size_t position = 0; position < members.size(); ++position) {
      current[position] += weights[position];
      if (current[position] > current[best]) best = position;
    }
    current[best] -= total;
    scheduler->cycle_.push_back(members[best]);
  }
  return scheduler;
}

int32_t WeightedRoundRobinScheduler::pick(const PickInput&, PickState& state) const {
  if (schedulable_.empty()) return kNoBackend;
  if (!cycle_.empty()) {
    const uint64_t position = state.sequence++;
    return static_cast<int32_t>(cycle_[position % cycle_.size()]);
  }
  // IPVS: walk the list; each wrap lowers the current weight by one (weights
  // are divided by their gcd), back to the maximum after 1; a backend is
  // picked when its weight reaches the current weight.
  const uint32_t count = static_cast<uint32_t>(schedulable_.size());
  uint32_t index = state.wrr_index;
  uint32_t current = state.wrr_current;
  if (current == 0 || current > max_weight_ || index >= count) {
    index = count - 1;  // a fresh or foreign state starts a new cycle
    current = 0;
  }
  for (;;) {
    if (++index == count) {
      index = 0;
      current = current <= 1 ? max_weight_ : current - 1;
    }
    if (normalized_weight_[index] >= current) break;
  }
  state.wrr_index = index;
  state.wrr_current = current;
  return static_cast<int32_t>(schedulable_[index]);
}

}  // namespace l4lb::core::sched

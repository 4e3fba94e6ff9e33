// sh: source hashing. The keyed hash of the client address indexes a weighted
// table, so one client always reaches the same backend while the backend set
// is unchanged: stateless persistence, even for flows the table could not
// track.
//
// The table is populated like Maglev's (maglev.h), only smaller and indexed by
// the client hash instead of the flow hash. IPVS sh fills its table round
// robin, which remaps most clients whenever a backend comes or goes; the
// Maglev population remaps only about the share of the backend that changed,
// so clients keep their backend across health flaps of the others.
#pragma once

#include <span>
#include <vector>

#include "core/sched/scheduler.h"

namespace l4lb::core::sched {

class SourceHashScheduler final : public Scheduler {
 public:
  // table_size: a prime, or 0 for the smallest prime >= max(1021, 64 x backends)
  // (64 slots per backend keep each share within ~1.5% of its weight).
  static std::unique_ptr<SourceHashScheduler> build(std::span<const BackendSpec> backends, uint32_t table_size,
                                                    BuildError* error);

  SchedulerKind kind() const override { return SchedulerKind::sh; }
  int32_t pick(const PickInput& input, PickState& state) const override;
  PickExplanation explain(const PickInput& input) const override;

  // The slot a client hash falls into (as maglev's slot_of).
  uint32_t slot_of(uint64_t client_hash) const {
    return static_cast<uint32_t>(((client_hash >> 32) * table_.size()) >> 32);
  }
  std::span<const int32_t> table() const { return table_; }

 private:
  using Scheduler::Scheduler;

  std::vector<int32_t> table_;
};

}  // namespace l4lb::core::sched

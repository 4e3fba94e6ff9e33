// table: a lookup table computed outside the data plane (a TypeScript
// SchedulerHook): entries are backend indexes, the length a power of two, and
// a new flow takes entry[flow hash mod length].
//
// Validation at build: the length must be a power of two between 1 and
// kMaxLookupTableLength and every entry a valid backend index; otherwise the
// build fails with a reason and the caller keeps the previous scheduler.
//
// Entries that point at an unschedulable backend (down, or weight 0) are not
// an error: health changes faster than a hook reruns. The rule: probe the next
// entries (wrapping) up to kProbeLimit in all and take the first schedulable
// one; if none of those is, fall back to the schedulable backends in list
// order, indexed by the flow hash. A pick therefore never fails while any
// backend is schedulable, and a table whose backends are all up is followed
// exactly.
#pragma once

#include <span>
#include <vector>

#include "core/sched/scheduler.h"

namespace l4lb::core::sched {

class TableScheduler final : public Scheduler {
 public:
  static constexpr uint32_t kMaxLookupTableLength = 1u << 24;
  static constexpr uint32_t kProbeLimit = 8;

  static std::unique_ptr<TableScheduler> build(std::span<const BackendSpec> backends,
                                               std::span<const uint32_t> lookup_table, BuildError* error);

  SchedulerKind kind() const override { return SchedulerKind::table; }
  int32_t pick(const PickInput& input, PickState& state) const override;
  // `slot` is the entry used: the hashed one, or the first schedulable one
  // probed after it (the fallback by hash names no entry: slot = table_size).
  PickExplanation explain(const PickInput& input) const override;

  std::span<const uint32_t> lookup_table() const { return entries_; }

 private:
  using Scheduler::Scheduler;

  std::vector<uint32_t> entries_;
  std::vector<uint8_t> entry_schedulable_;  // per entry: its backend is schedulable
  uint32_t mask_ = 0;
};

}  // namespace l4lb::core::sched

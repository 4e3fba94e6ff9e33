#include "core/sched/table.h"

namespace l4lb::core::sched {

std::unique_ptr<TableScheduler> TableScheduler::build(std::span<const BackendSpec> backends,
                                                      std::span<const uint32_t> lookup_table, BuildError* error) {
  if (!validate_backends(backends, error)) return nullptr;
  const size_t length = lookup_table.size();
  if (length == 0 || length > kMaxLookupTableLength || (length & (length - 1)) != 0) {
    error->code = "ERR_TABLE_LENGTH";
    error->message = "a scheduler table's length must be a power of two between 1 and " +
                     std::to_string(kMaxLookupTableLength) + ", got " + std::to_string(length);
    return nullptr;
  }
  for (size_t i = 0; i < length; ++i) {
    if (lookup_table[i] >= backends.size()) {
      error->code = "ERR_TABLE_INDEX";
      error->message = "scheduler table entry " + std::to_string(i) + " is " + std::to_string(lookup_table[i]) +
                       ", but the service has " + std::to_string(backends.size()) + " backends";
      return nullptr;
    }
  }
  std::unique_ptr<TableScheduler> scheduler(new TableScheduler(backends));
  scheduler->entries_.assign(lookup_table.begin(), lookup_table.end());
  scheduler->entry_schedulable_.resize(length);
  for (size_t i = 0; i < length; ++i) {
    scheduler->entry_schedulable_[i] = schedulable(backends[lookup_table[i]]) ? 1 : 0;
  }
  scheduler->mask_ = static_cast<uint32_t>(length - 1);
  return scheduler;
}

int32_t TableScheduler::pick(const PickInput& input, PickState&) const { return explain(input).backend; }

PickExplanation TableScheduler::explain(const PickInput& input) const {
  PickExplanation out;
  out.by_hash = true;
  out.table_size = mask_ + 1;
  out.slot = out.table_size;
  if (schedulable_.empty()) return out;
  const uint32_t start = static_cast<uint32_t>(input.flow_hash >> 32) & mask_;
  const uint32_t probes = mask_ < kProbeLimit ? mask_ + 1 : kProbeLimit;
  for (uint32_t probe = 0; probe < probes; ++probe) {
    const uint32_t entry = (start + probe) & mask_;
    if (entry_schedulable_[entry]) {
      out.slot = entry;
      out.backend = static_cast<int32_t>(entries_[entry]);
      return out;
    }
  }
  out.backend = static_cast<int32_t>(schedulable_[(input.flow_hash >> 32) % schedulable_.size()]);
  return out;
}

}  // namespace l4lb::core::sched

#include "core/sched/sh.h"

#include <algorithm>

#include "core/sched/maglev.h"

namespace l4lb::core::sched {

std::unique_ptr<SourceHashScheduler> SourceHashScheduler::build(std::span<const BackendSpec> backends,
                                                                uint32_t table_size, BuildError* error) {
  if (!validate_backends(backends, error)) return nullptr;
  std::unique_ptr<SourceHashScheduler> scheduler(new SourceHashScheduler(backends));
  if (table_size == 0) {
    const uint64_t wanted = std::max<uint64_t>(1021, uint64_t{64} * backends.size());
    table_size = next_prime(static_cast<uint32_t>(std::min<uint64_t>(wanted, kMaxMaglevTableSize - 1024)));
  }
  scheduler->table_.resize(table_size);
  if (!maglev_fill(backends, scheduler->table_, error)) {
    if (error->code == "ERR_MAGLEV_TABLE_SIZE") error->code = "ERR_SH_TABLE_SIZE";
    return nullptr;
  }
  return scheduler;
}

int32_t SourceHashScheduler::pick(const PickInput& input, PickState&) const { return table_[slot_of(input.client_hash)]; }

PickExplanation SourceHashScheduler::explain(const PickInput& input) const {
  PickExplanation out;
  out.by_hash = true;
  out.slot = slot_of(input.client_hash);
  out.table_size = static_cast<uint32_t>(table_.size());
  out.backend = table_[out.slot];
  return out;
}

}  // namespace l4lb::core::sched

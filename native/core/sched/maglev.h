// maglev: consistent hashing with a lookup table (Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016, §3.4).
//
// Each schedulable backend has a permutation of the M table slots, from two
// independent hashes of its stable identity: offset = h1 % M, skip =
// h2 % (M - 1) + 1, slot_j = (offset + j * skip) % M (M prime, so every skip
// visits every slot). Backends take turns claiming their next preferred free
// slot until the table is full. A flow's backend is table[hash mod M]: O(1).
//
// Weights follow Katran's MaglevHashV2: in every round each backend adds its
// weight to a credit and takes a turn whenever the credit reaches the largest
// weight, so slot counts are proportional to weights.
//
// Determinism: the population order is the backends sorted by identity, and
// the hashes use fixed keys, so the same set of (identity, weight) yields the
// same table in every process, whatever the list order.
//
// Cost: O(M log M) probes into an M-bit occupancy bitmap (8 KiB for 65537,
// L1-resident), no allocation per slot; M = 65537 with 1000 backends builds in
// about a millisecond optimised.
#pragma once

#include <span>
#include <vector>

#include "core/sched/scheduler.h"

namespace l4lb::core::sched {

struct MaglevOptions {
  uint32_t table_size = 65537;
};

bool is_prime(uint32_t value);
// Smallest prime >= value (value <= 4294967291, the largest 32-bit prime).
uint32_t next_prime(uint32_t value);

// Largest table accepted: 2^26 slots (256 MiB of int32), far beyond any need.
inline constexpr uint32_t kMaxMaglevTableSize = 1u << 26;

// Fills a caller-owned table (its size is M: prime, 2 < M <= kMaxMaglevTableSize)
// with indexes into `backends`, or kNoBackend everywhere if none is
// schedulable. The control plane can fill a shared-memory snapshot this way.
// Returns false and fills *error for a bad size or duplicate identities among
// schedulable backends (two backends with one identity would share a
// permutation and fight over the same slots).
bool maglev_fill(std::span<const BackendSpec> backends, std::span<int32_t> table, BuildError* error);

class MaglevScheduler final : public Scheduler {
 public:
  // `previous` (may be null) is compared with the new table: the slots whose
  // backend identity differs are stored in *changed_slots (if not null).
  static std::unique_ptr<MaglevScheduler> build(std::span<const BackendSpec> backends, const MaglevOptions& options,
                                                BuildError* error, const MaglevScheduler* previous = nullptr,
                                                std::vector<uint32_t>* changed_slots = nullptr);

  // Slots where `before` and `after` map to different backend identities (an
  // empty slot counts as its own identity). Tables of different sizes differ
  // everywhere.
  static size_t changed_slots(const MaglevScheduler& before, const MaglevScheduler& after,
                              std::vector<uint32_t>* out);

  SchedulerKind kind() const override { return SchedulerKind::maglev; }
  int32_t pick(const PickInput& input, PickState& state) const override;
  PickExplanation explain(const PickInput& input) const override;

  // The slot a flow hash falls into (Lemire's multiply-shift, no division).
  uint32_t slot_of(uint64_t flow_hash) const {
    return static_cast<uint32_t>(((flow_hash >> 32) * table_.size()) >> 32);
  }
  std::span<const int32_t> table() const { return table_; }

 private:
  using Scheduler::Scheduler;

  std::vector<int32_t> table_;
};

}  // namespace l4lb::core::sched

// The configuration a worker runs: a validated snapshot plus what is derived
// from it off the packet path (scheduler tables, the backend-id index, and
// per-worker scheduler state), built once by the control thread when the
// snapshot is published and immutable afterwards except for the per-worker
// scheduler state, which only its worker touches.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/counters.h"
#include "core/hash.h"
#include "core/snapshot.h"

namespace l4lb::core {

namespace sched {
class Scheduler;
struct PickState;
}

// Stable identity of a backend (Maglev's permutation, whatIf's comparisons):
// from its address (host order) and port, the same in every process.
uint64_t backend_identity_of(uint32_t address, uint16_t port);

// What the scheduler of a service would do for a new flow (explain).
struct PickReport {
  uint8_t scheduler = 0;           // shm::SchedulerKind
  bool by_hash = false;            // a function of the packet alone: slot of table_size
  uint32_t slot = 0;
  uint32_t table_size = 0;
  uint32_t backend_index = 0;      // global backend index, or shm::kNone
};

struct RuntimeConfigOptions {
  uint32_t workers = 1;
  uint32_t backend_slots = 4096;        // backend ids are (generation << 16 | slot); slot < this
  uint32_t maglev_table_size = 65537;   // prime
  uint64_t hash_seed[2] = {0, 0};       // for sh's client-address hash (secret)
  // Active flows per backend slot (kept by the engine from flow-table
  // events), read by lc and wlc; must outlive the configuration.
  const std::atomic<int32_t>* active_flows = nullptr;
};

class RuntimeConfig {
 public:
  ~RuntimeConfig();

  // Copies and validates the snapshot and builds everything derived from it.
  // `previous` (may be null) lets Maglev report the slots that changed.
  // Returns null with *error set when the snapshot is invalid.
  static std::unique_ptr<RuntimeConfig> build(const uint8_t* bytes, size_t size, const RuntimeConfigOptions& options,
                                              const RuntimeConfig* previous, std::string* error);

  const SnapshotView& view() const { return view_; }
  uint64_t generation() const { return view_.header->generation; }

  // Global backend index for a backend id, or shm::kNone when the id is not
  // in this snapshot (the backend was removed).
  uint32_t backend_index_by_id(uint32_t id) const;
  // Index of the service owning global backend index `backend_index`.
  uint32_t service_of_backend(uint32_t backend_index) const { return backend_service_[backend_index]; }

  // Picks a backend for a new flow of service `service_index`: a global
  // backend index, or shm::kNone when no backend is usable. `flow_hash` is the
  // flow table's keyed hash of the 5-tuple; `client_address` feeds sh.
  // Only worker `worker` may pass its index (its pick state is unshared).
  uint32_t pick(uint32_t service_index, uint64_t flow_hash, uint32_t client_address, uint32_t worker) const;
  // What pick() would choose, without touching any worker's pick state (so
  // any thread may ask): for rr/wrr no backend (it depends on the rotation).
  PickReport explain_pick(uint32_t service_index, uint64_t flow_hash, uint32_t client_address) const;

  // Slots of each service's Maglev table that differ from the previous
  // configuration's (same service id); for stats and tests.
  uint32_t maglev_changed_slots(uint32_t service_index) const { return maglev_changed_[service_index]; }

  // Worker `worker` only, when it switches from `previous` to this
  // configuration: carries its rr/wrr positions over for services that keep
  // their id, so frequent republishing (health, slow start, next hops) does
  // not restart every rotation at the first backend.
  void inherit_pick_states(const RuntimeConfig& previous, uint32_t worker) const;

  // Whether scheduling is a pure function of the packet (maglev, sh, table):
  // such services can still be forwarded consistently when the flow table is full.
  bool consistent_scheduler(uint32_t service_index) const;

 private:
  RuntimeConfig() = default;

  std::vector<uint64_t> storage_;  // the snapshot bytes, 8-byte aligned
  SnapshotView view_;
  RuntimeConfigOptions options_;
  std::vector<uint32_t> backend_by_slot_;     // backend slot -> global index (kNone)
  std::vector<uint32_t> backend_service_;     // global backend index -> service index
  std::vector<std::unique_ptr<sched::Scheduler>> schedulers_;  // per service
  std::vector<uint32_t> maglev_changed_;
  // [worker][service]: rr/wrr positions; each worker writes only its own row.
  mutable std::vector<std::vector<sched::PickState>> pick_states_;
  std::vector<std::pair<uint32_t, uint32_t>> service_by_id_;  // (service id, index), sorted by id
  SipHashKey client_hash_key_;
};

}  // namespace l4lb::core

// Schedulers: which backend a new flow goes to.
//
// A scheduler is built off the packet path (it may allocate) from a service's
// backend list and is immutable afterwards; workers call pick() on the packet
// path for each new flow: no allocation, no locks, O(1) for sh, maglev and
// table. Several workers pick from one built scheduler at once: what changes
// between picks (the round-robin position) lives in a PickState that each
// worker owns, and lc/wlc read the active-flow counts that the flow table's
// FlowEvents hook maintains (atomics owned by the engine).
//
// Rules shared by every kind: a backend is schedulable when it is usable (up,
// not administratively disabled) and its weight is > 0 (weight 0 = drain:
// established flows continue, no new ones). pick() never returns an
// unschedulable backend and returns kNoBackend when there is none.
//
// A new configuration means a new scheduler: build it, publish it with the
// snapshot, and keep the previous one until every worker has moved on. When
// the build fails (an invalid hook table), the previous one stays in force.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace l4lb::core::sched {

inline constexpr int32_t kNoBackend = -1;
// Bounds the memory and build time a configuration can ask for.
inline constexpr uint32_t kMaxBackends = 1u << 20;

struct BackendSpec {
  uint32_t weight = 1;  // relative share of new flows; 0 = draining
  bool usable = true;   // health is up and the backend is enabled
  // Stable identity, the same in every process and after restarts, e.g.
  // core::backend_identity("198.18.1.2:8080"). Maglev derives its permutation
  // from it; the changed-slot report compares identities, not list positions.
  uint64_t identity = 0;
  // lc/wlc: this backend's active flows (kept by the flow table's hook). Null
  // counts as zero. Must outlive the scheduler.
  const std::atomic<int32_t>* active_flows = nullptr;
};

inline bool schedulable(const BackendSpec& backend) { return backend.usable && backend.weight > 0; }

// What a pick may depend on, computed once per new flow by the caller.
struct PickInput {
  // Keyed hash of the flow's original 5-tuple (FlowTable::hash). For Maglev's
  // promise that every balancer sends a flow to the same backend, the key must
  // be shared by those balancers and survive restarts.
  uint64_t flow_hash = 0;
  // Keyed hash of the client address alone (sh).
  uint64_t client_hash = 0;
};

// Mutable pick state of one worker for one service. One writer (its worker),
// so plain fields; any value is valid input to any scheduler, so the state
// survives rebuilds and snapshots without being reset.
struct PickState {
  uint64_t sequence = 0;     // rr and wrr position; rotates lc/wlc tie breaks
  uint32_t wrr_index = 0;    // wrr beyond the precomputed cycle: IPVS's position...
  uint32_t wrr_current = 0;  // ...and current weight (0 = start a new cycle)

  // Spreads workers over the cycle, so that N workers starting together do not
  // all send their first flow to the same backend.
  static PickState for_worker(uint32_t worker_index) {
    PickState state;
    state.sequence = static_cast<uint64_t>(worker_index) * 0x9e3779b97f4a7c15ull >> 16;
    return state;
  }
};

enum class SchedulerKind : uint8_t { rr, wrr, lc, wlc, sh, maglev, table };

const char* scheduler_kind_name(SchedulerKind kind);
bool scheduler_kind_from_name(std::string_view name, SchedulerKind* kind);

// Why a build failed: a stable code (TypeScript maps it to a typed error) and
// a message naming the offending value.
struct BuildError {
  std::string code;
  std::string message;
};

// Why pick() would choose what it chooses, for operators (explain): computed
// without touching any PickState, so any thread may ask.
struct PickExplanation {
  // True when the choice is a function of the packet alone (sh, maglev,
  // table): `slot` of `table_size` names the lookup-table entry used.
  bool by_hash = false;
  uint32_t slot = 0;
  uint32_t table_size = 0;
  // The backend index chosen (by_hash), or the one lc/wlc would choose now
  // (fewest active flows for the weight; ties rotate per worker); kNoBackend
  // for rr/wrr (the next pick depends on each worker's rotation) or when no
  // backend is schedulable.
  int32_t backend = kNoBackend;
};

class Scheduler {
 public:
  virtual ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  virtual SchedulerKind kind() const = 0;
  // An index into the backend list the scheduler was built from, or kNoBackend.
  virtual int32_t pick(const PickInput& input, PickState& state) const = 0;
  // What pick() would do for `input`, with no side effect. The default suits
  // schedulers whose choice depends on their rotation (rr, wrr).
  virtual PickExplanation explain(const PickInput& input) const;

  uint32_t backend_count() const { return static_cast<uint32_t>(backends_.size()); }
  uint32_t schedulable_count() const { return static_cast<uint32_t>(schedulable_.size()); }
  bool is_schedulable(uint32_t index) const {
    return index < backends_.size() && schedulable(backends_[index]);
  }
  const BackendSpec& backend(uint32_t index) const { return backends_[index]; }

 protected:
  explicit Scheduler(std::span<const BackendSpec> backends);

  std::vector<BackendSpec> backends_;
  std::vector<uint32_t> schedulable_;  // indexes of schedulable backends, in list order
};

struct SchedulerOptions {
  uint32_t maglev_table_size = 65537;  // prime (Maglev §3.4); 65537 keeps imbalance < 1% up to ~650 backends
  uint32_t sh_table_size = 0;          // prime; 0 = smallest prime >= max(1021, 64 x backends)
  // kind table: the hook's lookup table of backend indexes, length a power of two.
  std::span<const uint32_t> lookup_table;
};

// Builds any kind. Returns null and fills *error when the input is invalid.
// For maglev, `previous` (a maglev scheduler or null) and `changed_slots`
// report which table slots now map to a different backend identity.
std::unique_ptr<Scheduler> build_scheduler(SchedulerKind kind, std::span<const BackendSpec> backends,
                                           const SchedulerOptions& options, BuildError* error,
                                           const Scheduler* previous = nullptr,
                                           std::vector<uint32_t>* changed_slots = nullptr);

// Whether the kind's choice is a function of the packet alone (maglev, sh, table).
bool hash_based(SchedulerKind kind);

// The share of new flows that `after` would send to another backend than
// `before` (by backend identity). Maglev tables of one size are compared slot
// by slot (exact); other hash-based kinds at `samples` hash values spread
// evenly. False (nothing compared) unless both kinds are hash based.
struct SchedulerComparison {
  bool exact = false;
  uint64_t moved = 0;
  uint64_t total = 0;
};
bool compare_schedulers(const Scheduler& before, const Scheduler& after, uint32_t samples, SchedulerComparison* out);

// Shared validation: backend count within kMaxBackends.
bool validate_backends(std::span<const BackendSpec> backends, BuildError* error);

}  // namespace l4lb::core::sched

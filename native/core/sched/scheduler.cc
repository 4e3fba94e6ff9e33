#include "core/sched/scheduler.h"

#include "core/sched/lc.h"
#include "core/sched/maglev.h"
#include "core/sched/rr.h"
#include "core/sched/sh.h"
#include "core/sched/table.h"
#include "core/sched/wlc.h"
#include "core/sched/wrr.h"

namespace l4lb::core::sched {

namespace {

struct KindName {
  SchedulerKind kind;
  const char* name;
};
constexpr KindName kKindNames[] = {
    {SchedulerKind::rr, "rr"}, {SchedulerKind::wrr, "wrr"},       {SchedulerKind::lc, "lc"},
    {SchedulerKind::wlc, "wlc"}, {SchedulerKind::sh, "sh"},       {SchedulerKind::maglev, "maglev"},
    {SchedulerKind::table, "table"},
};

}  // namespace

const char* scheduler_kind_name(SchedulerKind kind) {
  for (const KindName& entry : kKindNames) {
    if (entry.kind == kind) return entry.name;
  }
  return "unknown";
}

bool scheduler_kind_from_name(std::string_view name, SchedulerKind* kind) {
  for (const KindName& entry : kKindNames) {
    if (name == entry.name) {
      *kind = entry.kind;
      return true;
    }
  }
  return false;
}

Scheduler::Scheduler(std::span<const BackendSpec> backends) : backends_(backends.begin(), backends.end()) {
  for (uint32_t i = 0; i < backends_.size(); ++i) {
    if (schedulable(backends_[i])) schedulable_.push_back(i);
  }
}

Scheduler::~Scheduler() = default;

PickExplanation Scheduler::explain(const PickInput&) const { return PickExplanation{}; }

bool hash_based(SchedulerKind kind) {
  return kind == SchedulerKind::maglev || kind == SchedulerKind::sh || kind == SchedulerKind::table;
}

bool compare_schedulers(const Scheduler& before, const Scheduler& after, uint32_t samples, SchedulerComparison* out) {
  *out = SchedulerComparison{};
  if (!hash_based(before.kind()) || !hash_based(after.kind())) return false;
  // Two backends are the same one when their identities are: list positions
  // may change between the two builds. An empty slot is its own identity.
  auto identity_at = [](const Scheduler& scheduler, int32_t index, uint64_t* identity) {
    if (index == kNoBackend) return false;
    *identity = scheduler.backend(static_cast<uint32_t>(index)).identity;
    return true;
  };
  auto differ = [&](int32_t a, int32_t b) {
    uint64_t ia = 0, ib = 0;
    const bool has_a = identity_at(before, a, &ia);
    const bool has_b = identity_at(after, b, &ib);
    return has_a != has_b || ia != ib;
  };
  if (before.kind() == SchedulerKind::maglev && after.kind() == SchedulerKind::maglev) {
    const auto& a = static_cast<const MaglevScheduler&>(before);
    const auto& b = static_cast<const MaglevScheduler&>(after);
    if (a.table().size() == b.table().size()) {
      out->exact = true;
      out->total = a.table().size();
      for (size_t slot = 0; slot < a.table().size(); ++slot) out->moved += differ(a.table()[slot], b.table()[slot]) ? 1 : 0;
      return true;
    }
  }
  // Hash values spread evenly over the 32 bits every kind's slot is taken
  // from (the upper half of the flow or client hash); a sample's lower half
  // varies too, for the table kind's fallback.
  samples = samples == 0 ? 1 : samples;
  PickState unused;
  for (uint32_t i = 0; i < samples; ++i) {
    const uint64_t upper = (static_cast<uint64_t>(i) << 32) / samples + ((uint64_t{1} << 31) / samples);
    PickInput input;
    input.flow_hash = upper << 32 | (i * 0x9e3779b9u);
    input.client_hash = input.flow_hash;
    out->moved += differ(before.pick(input, unused), after.pick(input, unused)) ? 1 : 0;
  }
  out->total = samples;
  return true;
}

bool validate_backends(std::span<const BackendSpec> backends, BuildError* error) {
  if (backends.size() > kMaxBackends) {
    error->code = "ERR_TOO_MANY_BACKENDS";
    error->message = "a service has " + std::to_string(backends.size()) + " backends; the limit is " +
                     std::to_string(kMaxBackends);
    return false;
  }
  return true;
}

std::unique_ptr<Scheduler> build_scheduler(SchedulerKind kind, std::span<const BackendSpec> backends,
                                           const SchedulerOptions& options, BuildError* error,
                                           const Scheduler* previous, std::vector<uint32_t>* changed_slots) {
  if (changed_slots) changed_slots->clear();
  switch (kind) {
    case SchedulerKind::rr:
      return RoundRobinScheduler::build(backends, error);
    case SchedulerKind::wrr:
      return WeightedRoundRobinScheduler::build(backends, error);
    case SchedulerKind::lc:
      return LeastConnectionScheduler::build(backends, error);
    case SchedulerKind::wlc:
      return WeightedLeastConnectionScheduler::build(backends, error);
    case SchedulerKind::sh:
      return SourceHashScheduler::build(backends, options.sh_table_size, error);
    case SchedulerKind::maglev: {
      const auto* previous_maglev =
          previous && previous->kind() == SchedulerKind::maglev ? static_cast<const MaglevScheduler*>(previous)
                                                                : nullptr;
      return MaglevScheduler::build(backends, MaglevOptions{options.maglev_table_size}, error, previous_maglev,
                                    changed_slots);
    }
    case SchedulerKind::table:
      return TableScheduler::build(backends, options.lookup_table, error);
  }
  error->code = "ERR_SCHEDULER_KIND";
  error->message = "unknown scheduler kind";
  return nullptr;
}

}  // namespace l4lb::core::sched

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

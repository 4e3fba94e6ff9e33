#include "core/runtime_config.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "core/hash.h"
#include "core/sched/scheduler.h"

namespace l4lb::core {

using shm::kNone;

namespace {

sched::SchedulerKind scheduler_kind_of(uint8_t kind) {
  switch (static_cast<shm::SchedulerKind>(kind)) {
    case shm::SchedulerKind::rr: return sched::SchedulerKind::rr;
    case shm::SchedulerKind::wrr: return sched::SchedulerKind::wrr;
    case shm::SchedulerKind::lc: return sched::SchedulerKind::lc;
    case shm::SchedulerKind::wlc: return sched::SchedulerKind::wlc;
    case shm::SchedulerKind::sh: return sched::SchedulerKind::sh;
    case shm::SchedulerKind::maglev: return sched::SchedulerKind::maglev;
    case shm::SchedulerKind::table: return sched::SchedulerKind::table;
  }
  return sched::SchedulerKind::rr;  // unreachable: open_snapshot checked the value
}

}  // namespace

// Maglev's permutation comes from a stable identity of the backend, so that
// every balancer (and every restart) builds the same table (NSDI'16 §3.4).
uint64_t backend_identity_of(uint32_t address, uint16_t port) {
  char name[32];
  const uint32_t a = address;
  const int n = std::snprintf(name, sizeof(name), "%u.%u.%u.%u:%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff,
                              a & 0xff, port);
  return backend_identity(std::string_view(name, static_cast<size_t>(n)));
}

RuntimeConfig::~RuntimeConfig() = default;

std::unique_ptr<RuntimeConfig> RuntimeConfig::build(const uint8_t* bytes, size_t size,
                                                    const RuntimeConfigOptions& options,
                                                    const RuntimeConfig* previous, std::string* error) {
  std::unique_ptr<RuntimeConfig> config(new RuntimeConfig());
  config->options_ = options;
  // Own a copy: the caller's buffer (shared memory) may be rewritten once we
  // return, and the workers read this one for as long as it is in force.
  config->storage_.assign((size + 7) / 8, 0);
  if (size != 0) std::memcpy(config->storage_.data(), bytes, size);
  const char* why = nullptr;
  if (!open_snapshot(reinterpret_cast<const uint8_t*>(config->storage_.data()), size, &config->view_, &why)) {
    *error = why;
    return nullptr;
  }
  const SnapshotView& view = config->view_;

  config->backend_by_slot_.assign(options.backend_slots, kNone);
  config->backend_service_.assign(view.backends.size(), kNone);
  for (uint32_t s = 0; s < view.services.size(); ++s) {
    const shm::SnapshotService& service = view.services[s];
    for (uint32_t i = 0; i < service.backend_count; ++i) {
      const uint32_t index = service.backend_first + i;
      if (config->backend_service_[index] != kNone) {
        *error = "snapshot backend belongs to two services";
        return nullptr;
      }
      config->backend_service_[index] = s;
      const uint32_t slot = view.backends[index].id & 0xffff;
      if (slot >= options.backend_slots) {
        *error = "snapshot backend id slot exceeds the engine's backend slots";
        return nullptr;
      }
      if (config->backend_by_slot_[slot] != kNone) {
        *error = "snapshot backend ids are not unique";
        return nullptr;
      }
      config->backend_by_slot_[slot] = index;
    }
  }

  std::unordered_map<uint32_t, uint32_t> previous_service_by_id;
  if (previous != nullptr) {
    for (uint32_t s = 0; s < previous->view_.services.size(); ++s) previous_service_by_id[previous->view_.services[s].id] = s;
  }
  config->schedulers_.reserve(view.services.size());
  config->maglev_changed_.assign(view.services.size(), 0);
  std::vector<sched::BackendSpec> specs;
  for (uint32_t s = 0; s < view.services.size(); ++s) {
    const shm::SnapshotService& service = view.services[s];
    specs.clear();
    for (const shm::SnapshotBackend& backend : view.backends_of(service)) {
      sched::BackendSpec spec;
      spec.weight = backend.weight;
      spec.usable = (backend.flags & shm::kBackendUp) != 0;
      spec.identity = backend_identity_of(backend.address, backend.port);
      const uint32_t slot = backend.id & 0xffff;
      spec.active_flows = options.active_flows != nullptr ? &options.active_flows[slot] : nullptr;
      specs.push_back(spec);
    }
    sched::SchedulerOptions scheduler_options;
    scheduler_options.maglev_table_size = options.maglev_table_size;
    if (service.table_first != kNone) {
      scheduler_options.lookup_table = view.tables.subspan(service.table_first, service.table_size);
    }
    const sched::Scheduler* previous_scheduler = nullptr;
    if (auto it = previous_service_by_id.find(service.id); it != previous_service_by_id.end()) {
      previous_scheduler = previous->schedulers_[it->second].get();
    }
    sched::BuildError build_error;
    std::vector<uint32_t> changed;
    auto scheduler = sched::build_scheduler(scheduler_kind_of(service.scheduler), specs, scheduler_options,
                                            &build_error, previous_scheduler, &changed);
    if (!scheduler) {
      *error = "snapshot service scheduler: " + build_error.message;
      return nullptr;
    }
    config->maglev_changed_[s] = static_cast<uint32_t>(changed.size());
    config->schedulers_.push_back(std::move(scheduler));
  }

  config->pick_states_.resize(options.workers);
  for (uint32_t w = 0; w < options.workers; ++w) {
    config->pick_states_[w].assign(view.services.size(), sched::PickState::for_worker(w));
  }
  config->service_by_id_.reserve(view.services.size());
  for (uint32_t s = 0; s < view.services.size(); ++s) config->service_by_id_.emplace_back(view.services[s].id, s);
  std::sort(config->service_by_id_.begin(), config->service_by_id_.end());
  config->client_hash_key_ = derive_sip_hash_key(SipHashKey{options.hash_seed[0], options.hash_seed[1]}, 0x5348);
  return config;
}

uint32_t RuntimeConfig::backend_index_by_id(uint32_t id) const {
  const uint32_t slot = id & 0xffff;
  if (slot >= backend_by_slot_.size()) return kNone;
  const uint32_t index = backend_by_slot_[slot];
  // The slot may have been reused by a newer backend: compare the whole id.
  if (index == kNone || view_.backends[index].id != id) return kNone;
  return index;
}

uint32_t RuntimeConfig::pick(uint32_t service_index, uint64_t flow_hash, uint32_t client_address, uint32_t worker) const {
  sched::PickInput input;
  input.flow_hash = flow_hash;
  input.client_hash = siphash13_u64(client_hash_key_, client_address);
  const int32_t picked = schedulers_[service_index]->pick(input, pick_states_[worker][service_index]);
  if (picked == sched::kNoBackend) return kNone;
  return view_.services[service_index].backend_first + static_cast<uint32_t>(picked);
}

PickReport RuntimeConfig::explain_pick(uint32_t service_index, uint64_t flow_hash, uint32_t client_address) const {
  sched::PickInput input;
  input.flow_hash = flow_hash;
  input.client_hash = siphash13_u64(client_hash_key_, client_address);
  const sched::Scheduler& scheduler = *schedulers_[service_index];
  const sched::PickExplanation why = scheduler.explain(input);
  PickReport report;
  report.scheduler = view_.services[service_index].scheduler;
  report.by_hash = why.by_hash;
  report.slot = why.slot;
  report.table_size = why.table_size;
  report.backend_index =
      why.backend == sched::kNoBackend ? kNone : view_.services[service_index].backend_first + static_cast<uint32_t>(why.backend);
  return report;
}

void RuntimeConfig::inherit_pick_states(const RuntimeConfig& previous, uint32_t worker) const {
  if (worker >= pick_states_.size() || worker >= previous.pick_states_.size()) return;
  for (uint32_t s = 0; s < view_.services.size(); ++s) {
    const uint32_t id = view_.services[s].id;
    auto it = std::lower_bound(previous.service_by_id_.begin(), previous.service_by_id_.end(), std::make_pair(id, 0u));
    if (it != previous.service_by_id_.end() && it->first == id) {
      pick_states_[worker][s] = previous.pick_states_[worker][it->second];
    }
  }
}

bool RuntimeConfig::consistent_scheduler(uint32_t service_index) const {
  const sched::SchedulerKind kind = schedulers_[service_index]->kind();
  return kind == sched::SchedulerKind::maglev || kind == sched::SchedulerKind::sh ||
         kind == sched::SchedulerKind::table;
}

}  // namespace l4lb::core

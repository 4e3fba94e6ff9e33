#include "addon/layout.h"

#include <cstddef>

#include "core/counters.h"
#include "core/drop_reason.h"
#include "core/flow_table.h"
#include "shm/layout.h"
#include "shm/stats.h"

namespace l4lb::addon {

namespace {

Napi::Object Field(Napi::Env env, size_t offset, size_t size) {
  Napi::Object field = Napi::Object::New(env);
  field.Set("offset", Napi::Number::New(env, static_cast<double>(offset)));
  field.Set("size", Napi::Number::New(env, static_cast<double>(size)));
  return field;
}

// offsetof on these standard-layout structs is well defined; the macro lists
// live beside the structs in shm/layout.h so a new field cannot be forgotten
// without a reviewer seeing the list next to it.
#define L4LB_EXPORT_FIELD(type, name) \
  fields.Set(#name, Field(env, offsetof(shm::type, name), sizeof(shm::type::name)));

template <typename T>
Napi::Object Struct(Napi::Env env, Napi::Object fields) {
  Napi::Object description = Napi::Object::New(env);
  description.Set("size", Napi::Number::New(env, sizeof(T)));
  description.Set("align", Napi::Number::New(env, alignof(T)));
  description.Set("fields", fields);
  return description;
}

// The counter structs (core/counters.h, core/flow_table.h) exported by their
// exported names: { size, align, fields: { rxPackets: { offset, size } } }.
#define L4LB_EXPORT_NAMED_COUNTER(type, field, name) \
  fields.Set(name, Field(env, offsetof(type, field), sizeof(type::field)));

Napi::Object ExportStatsLayout(Napi::Env env) {
  Napi::Object stats = Napi::Object::New(env);
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_STATS_REGION_FIELDS(L4LB_EXPORT_FIELD)
    stats.Set("region", Struct<shm::StatsRegionHeader>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_STATS_BLOCK_FIELDS(L4LB_EXPORT_FIELD)
    stats.Set("block", Struct<shm::StatsBlockHeader>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_EVENT_RING_FIELDS(L4LB_EXPORT_FIELD)
    stats.Set("eventRing", Struct<shm::EventRingHeader>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_EVENT_RECORD_FIELDS(L4LB_EXPORT_FIELD)
    stats.Set("eventRecord", Struct<shm::EventRecord>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_FLOW_EVENT_RECORD_FIELDS(L4LB_EXPORT_FIELD)
    stats.Set("flowEventRecord", Struct<shm::FlowEventRecord>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
#define L4LB_EXPORT_WORKER_COUNTER(field, name) L4LB_EXPORT_NAMED_COUNTER(core::WorkerCounters, field, name)
    L4LB_WORKER_COUNTERS(L4LB_EXPORT_WORKER_COUNTER)
#undef L4LB_EXPORT_WORKER_COUNTER
    stats.Set("workerCounters", Struct<core::WorkerCounters>(env, fields));
    // drops[DropReason]: names from dropReasons(), in enum order.
    Napi::Object drops = Napi::Object::New(env);
    drops.Set("offset", Napi::Number::New(env, static_cast<double>(offsetof(core::WorkerCounters, drops))));
    drops.Set("stride", Napi::Number::New(env, static_cast<double>(sizeof(core::WorkerCounters::drops[0]))));
    drops.Set("count", Napi::Number::New(env, static_cast<double>(core::DropReason::count)));
    stats.Set("drops", drops);
  }
  {
    Napi::Object fields = Napi::Object::New(env);
#define L4LB_EXPORT_FLOW_COUNTER(field, name) L4LB_EXPORT_NAMED_COUNTER(core::FlowCounters, field, name)
    L4LB_FLOW_COUNTERS(L4LB_EXPORT_FLOW_COUNTER)
#undef L4LB_EXPORT_FLOW_COUNTER
    stats.Set("flowCounters", Struct<core::FlowCounters>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
#define L4LB_EXPORT_BACKEND_COUNTER(field, name) L4LB_EXPORT_NAMED_COUNTER(core::BackendCounters, field, name)
    L4LB_BACKEND_COUNTERS(L4LB_EXPORT_BACKEND_COUNTER)
#undef L4LB_EXPORT_BACKEND_COUNTER
    stats.Set("backendCounters", Struct<core::BackendCounters>(env, fields));
  }
  {
    Napi::Object activeFlows = Napi::Object::New(env);
    activeFlows.Set("stride", Napi::Number::New(env, static_cast<double>(sizeof(std::atomic<int32_t>))));
    stats.Set("activeFlows", activeFlows);
  }
  const auto kinds = static_cast<uint32_t>(shm::EventKind::count);
  Napi::Array kind_names = Napi::Array::New(env, kinds);
  for (uint32_t i = 0; i < kinds; ++i) kind_names.Set(i, Napi::String::New(env, shm::kEventKindNames[i]));
  stats.Set("eventKinds", kind_names);
  return stats;
}

#undef L4LB_EXPORT_NAMED_COUNTER

}  // namespace

Napi::Object ExportLayout(Napi::Env env) {
  Napi::Object snapshot = Napi::Object::New(env);
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_SNAPSHOT_HEADER_FIELDS(L4LB_EXPORT_FIELD)
    snapshot.Set("header", Struct<shm::SnapshotHeader>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_SNAPSHOT_PORT_FIELDS(L4LB_EXPORT_FIELD)
    snapshot.Set("port", Struct<shm::SnapshotPort>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_SNAPSHOT_SERVICE_FIELDS(L4LB_EXPORT_FIELD)
    snapshot.Set("service", Struct<shm::SnapshotService>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_SNAPSHOT_BACKEND_FIELDS(L4LB_EXPORT_FIELD)
    snapshot.Set("backend", Struct<shm::SnapshotBackend>(env, fields));
  }
  {
    Napi::Object fields = Napi::Object::New(env);
    L4LB_SNAPSHOT_ROUTE_FIELDS(L4LB_EXPORT_FIELD)
    snapshot.Set("route", Struct<shm::SnapshotRoute>(env, fields));
  }
  Napi::Object constants = Napi::Object::New(env);
#define L4LB_EXPORT_CONSTANT(name, value) constants.Set(#name, Napi::Number::New(env, static_cast<double>(value)));
  {
    using namespace shm;
    L4LB_LAYOUT_CONSTANTS(L4LB_EXPORT_CONSTANT)
    L4LB_STATS_CONSTANTS(L4LB_EXPORT_CONSTANT)
  }
#undef L4LB_EXPORT_CONSTANT

  Napi::Object layout = Napi::Object::New(env);
  layout.Set("snapshot", snapshot);
  layout.Set("stats", ExportStatsLayout(env));
  layout.Set("constants", constants);
  return layout;
}

#undef L4LB_EXPORT_FIELD

}  // namespace l4lb::addon

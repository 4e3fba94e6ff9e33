#include "addon/layout.h"

#include <cstddef>

#include "shm/layout.h"

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
  }
#undef L4LB_EXPORT_CONSTANT

  Napi::Object layout = Napi::Object::New(env);
  layout.Set("snapshot", snapshot);
  layout.Set("constants", constants);
  return layout;
}

#undef L4LB_EXPORT_FIELD

}  // namespace l4lb::addon

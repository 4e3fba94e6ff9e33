#pragma once

#include <napi.h>

namespace l4lb::addon {

// The Engine class exported to JavaScript (lib/native/binding.ts declares it).
Napi::Function DefineEngine(Napi::Env env);

// compareSchedulers(kind, before, after, options) (lib/native/binding.ts).
Napi::Value CompareSchedulers(const Napi::CallbackInfo& info);

}  // namespace l4lb::addon

#pragma once

#include <napi.h>

namespace l4lb::addon {

// The Engine class exported to JavaScript (lib/native/binding.ts declares it).
Napi::Function DefineEngine(Napi::Env env);

}  // namespace l4lb::addon

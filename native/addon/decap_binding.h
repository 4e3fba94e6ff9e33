#pragma once

#include <napi.h>

namespace l4lb::addon {

// The Decapsulator class exported to JavaScript (lib/native/binding.ts
// declares it; lib/realserver drives it).
Napi::Function DefineDecapsulator(Napi::Env env);

}  // namespace l4lb::addon

#pragma once

#include <napi.h>

namespace l4lb::addon {

// The benchmark's native pieces (native/bench): traffic generator, sink,
// MAC-only forwarder and micro benchmark kernels, as one object of classes
// and functions (lib/native/binding.ts: NativeBench).
Napi::Object DefineBench(Napi::Env env);

}  // namespace l4lb::addon

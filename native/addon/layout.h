// Exports the shared-memory layouts (sizes, field offsets, constants) to
// JavaScript, so TypeScript never hard-codes them (DESIGN.md §1).
#pragma once

#include <napi.h>

namespace l4lb::addon {

Napi::Object ExportLayout(Napi::Env env);

}  // namespace l4lb::addon

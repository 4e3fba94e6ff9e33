// N-API shim: plain verbs over the native engine. Defaults, validation and
// error messages live in TypeScript (lib/); this file only converts values.
#include <napi.h>

#include "addon/bench_binding.h"
#include "addon/decap_binding.h"
#include "addon/engine_binding.h"
#include "addon/layout.h"
#include "core/frame.h"
#include "core/drop_reason.h"
#include "realserver/netns_identity.h"

namespace {

// Bumped whenever a layout or verb exported here changes meaning; TypeScript
// refuses to run against an addon whose version it does not know.
constexpr uint32_t kAddonAbiVersion = 3;  // 2: statistics region, event rings; 3: In/Out backend counters, flow events, explain

Napi::Value DropReasons(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto count = static_cast<uint32_t>(l4lb::core::DropReason::count);
  Napi::Array names = Napi::Array::New(env, count);
  for (uint32_t i = 0; i < count; ++i) names.Set(i, Napi::String::New(env, l4lb::core::kDropReasonNames[i]));
  return names;
}

// netnsCookie(path?) -> bigint: the namespace cookie of an nsfs file, or of
// this thread's namespace; throws with code 'ENETNS', 'ESOCKET' or 'EUNSUPPORTED'.
Napi::Value NetnsCookie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  const l4lb::realserver::NetnsCookieResult result = l4lb::realserver::netns_cookie(path);
  if (!result.code.empty()) {
    Napi::Error error = Napi::Error::New(env, result.message);
    error.Set("code", Napi::String::New(env, result.code));
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::BigInt::New(env, result.cookie);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, kAddonAbiVersion));
  exports.Set("dropReasons", Napi::Function::New(env, DropReasons, "dropReasons"));
  exports.Set("layout", l4lb::addon::ExportLayout(env));
  Napi::Object frame_flags = Napi::Object::New(env);
  frame_flags.Set("checksumPartial", Napi::Number::New(env, l4lb::core::kFrameChecksumPartial));
  exports.Set("frameFlags", frame_flags);
  exports.Set("Engine", l4lb::addon::DefineEngine(env));
  exports.Set("compareSchedulers", Napi::Function::New(env, l4lb::addon::CompareSchedulers, "compareSchedulers"));
  exports.Set("Decapsulator", l4lb::addon::DefineDecapsulator(env));
  exports.Set("bench", l4lb::addon::DefineBench(env));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie, "netnsCookie"));
  return exports;
}

}  // namespace

NODE_API_MODULE(l4lb, Init)

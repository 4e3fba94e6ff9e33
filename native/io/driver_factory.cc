#include "io/driver_factory.h"

#include <dlfcn.h>

namespace l4lb::io {

namespace {

// l4lb_af_xdp.so, opened once per process and never closed: drivers made by
// it may live as long as the process, and their code with them.
AfXdpCreateDriver load_af_xdp(const std::string& library, PortError* error) {
  static std::string loaded_from;
  static AfXdpCreateDriver create = nullptr;
  if (create != nullptr && library == loaded_from) return create;
  error->code = "EDRIVER_UNAVAILABLE";
  error->error_number = 0;
  if (library.empty()) {
    error->message = "driver 'af_xdp': this build has no l4lb_af_xdp.so";
    return nullptr;
  }
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    error->message = std::string("driver 'af_xdp' cannot load ") + library + ": " + (reason != nullptr ? reason : "dlopen failed");
    return nullptr;
  }
  auto entry = reinterpret_cast<AfXdpCreateDriver>(dlsym(handle, kAfXdpEntryPoint));
  if (entry == nullptr) {
    error->message = "driver 'af_xdp': " + library + " lacks " + kAfXdpEntryPoint;
    dlclose(handle);
    return nullptr;
  }
  loaded_from = library;
  create = entry;
  return create;
}

}  // namespace

std::shared_ptr<Driver> make_driver(const DriverSpec& spec, PortError* error) {
  if (spec.name == "memory") return std::make_shared<MemoryDriver>(spec.interfaces, spec.memory);
  if (spec.name == "af_packet") return std::make_shared<AfPacketDriver>(spec.af_packet);
  if (spec.name == "af_xdp") {
    AfXdpCreateDriver create = load_af_xdp(spec.af_xdp.library, error);
    if (create == nullptr) return nullptr;
    Driver* driver = create(kAfXdpAbiVersion, &spec.af_xdp, error);
    return driver != nullptr ? std::shared_ptr<Driver>(driver) : nullptr;
  }
  error->code = "EDRIVER_UNAVAILABLE";
  error->message = "no driver named '" + spec.name + "' in this build";
  error->error_number = 0;
  return nullptr;
}

}  // namespace l4lb::io

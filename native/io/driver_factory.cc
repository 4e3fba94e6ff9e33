#include "io/driver_factory.h"

#include <dlfcn.h>

#include <map>
#include <mutex>

namespace l4lb::io {

namespace {

// A driver's shared object (l4lb_af_xdp.so, l4lb_dpdk.so), opened once per
// process and never closed: drivers made by it may live as long as the
// process, and their code with them.
template <typename Entry>
Entry load_driver_library(const char* driver, const char* file, const char* symbol, const std::string& library, PortError* error) {
  static std::mutex mutex;
  static std::map<std::string, void*> loaded;  // path -> entry point
  std::lock_guard<std::mutex> lock(mutex);
  if (auto known = loaded.find(library); known != loaded.end()) return reinterpret_cast<Entry>(known->second);
  error->code = "EDRIVER_UNAVAILABLE";
  error->error_number = 0;
  if (library.empty()) {
    error->message = std::string("driver '") + driver + "': this build has no " + file;
    return nullptr;
  }
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    error->message = std::string("driver '") + driver + "' cannot load " + library + ": " + (reason != nullptr ? reason : "dlopen failed");
    return nullptr;
  }
  void* entry = dlsym(handle, symbol);
  if (entry == nullptr) {
    error->message = std::string("driver '") + driver + "': " + library + " lacks " + symbol;
    dlclose(handle);
    return nullptr;
  }
  loaded[library] = entry;
  return reinterpret_cast<Entry>(entry);
}

}  // namespace

std::shared_ptr<Driver> make_driver(const DriverSpec& spec, PortError* error) {
  if (spec.name == "memory") return std::make_shared<MemoryDriver>(spec.interfaces, spec.memory);
  if (spec.name == "af_packet") return std::make_shared<AfPacketDriver>(spec.af_packet);
  if (spec.name == "af_xdp") {
    auto create = load_driver_library<AfXdpCreateDriver>("af_xdp", "l4lb_af_xdp.so", kAfXdpEntryPoint, spec.af_xdp.library, error);
    if (create == nullptr) return nullptr;
    Driver* driver = create(kAfXdpAbiVersion, &spec.af_xdp, error);
    return driver != nullptr ? std::shared_ptr<Driver>(driver) : nullptr;
  }
  if (spec.name == "dpdk") {
    auto create = load_driver_library<DpdkCreateDriver>("dpdk", "l4lb_dpdk.so", kDpdkEntryPoint, spec.dpdk.library, error);
    if (create == nullptr) return nullptr;
    Driver* driver = create(kDpdkAbiVersion, &spec.dpdk, error);
    return driver != nullptr ? std::shared_ptr<Driver>(driver) : nullptr;
  }
  error->code = "EDRIVER_UNAVAILABLE";
  error->message = "no driver named '" + spec.name + "' in this build";
  error->error_number = 0;
  return nullptr;
}

}  // namespace l4lb::io

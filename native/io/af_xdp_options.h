// What the main addon knows of the AF_XDP driver: its options and the one
// symbol of l4lb_af_xdp.so that builds it. The driver itself links against
// libxdp and libbpf and lives in that shared object, loaded with dlopen when
// a balancer asks for it (docs/packaging.md, docs/af-xdp.md), so that the
// addon loads and installs where those libraries are absent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/port.h"

namespace l4lb::io {
class Driver;

enum class XdpMode : uint8_t {
  automatic,  // native (driver) mode where the interface has it, generic (skb) mode elsewhere
  native,     // native only: an interface without it fails with EXDP_UNSUPPORTED
  generic,    // generic only
};

struct AfXdpDriverOptions {
  std::string library;                  // path of l4lb_af_xdp.so
  std::vector<std::string> interfaces;  // in the calling thread's network namespace
  XdpMode mode = XdpMode::automatic;
  // Descriptors per ring (receive, transmit, fill, completion) of each
  // socket: a power of two. UMEM frames per socket: twice that.
  uint32_t ring_size = 2048;
  std::vector<int32_t> worker_cpus;
};

// The entry point l4lb_af_xdp.so exports (extern "C", so dlsym finds it by
// this name). Returns a new driver (the caller deletes it) or nullptr with
// *error set. `version` must be kAfXdpAbiVersion: the library and the addon
// are built from the same sources and share C++ types, so a library from
// another build is refused rather than called.
inline constexpr const char* kAfXdpEntryPoint = "l4lb_af_xdp_create_driver";
inline constexpr uint32_t kAfXdpAbiVersion = 1;
using AfXdpCreateDriver = Driver* (*)(uint32_t version, const AfXdpDriverOptions* options, PortError* error);

}  // namespace l4lb::io

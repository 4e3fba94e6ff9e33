// What the main addon knows of the DPDK driver: its options and the one
// symbol of l4lb_dpdk.so that builds it. The driver links against libdpdk
// and lives in that shared object, loaded with dlopen when a balancer asks
// for it (docs/dpdk.md, docs/packaging.md), so that the addon loads and
// installs where DPDK is absent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/port.h"

namespace l4lb::io {
class Driver;

// How a kernel interface (DpdkDriverOptions::interfaces) becomes a DPDK port.
enum class DpdkKernelVdev : uint8_t {
  af_xdp,     // net_af_xdp with the balancer's own XDP program: the kernel keeps what is not the balancer's
  af_packet,  // net_af_packet: a tap; the host guard (nftables) keeps the host stack out
};

struct DpdkDriverOptions {
  std::string library;                  // path of l4lb_dpdk.so
  // Port i: interfaces[i] when i < interfaces.size() (a kernel interface
  // through a vdev), else devices[i - interfaces.size()] (any EAL device
  // string: a PCI address, "net_tap0,iface=x", ...).
  std::vector<std::string> interfaces;
  std::vector<std::string> devices;
  DpdkKernelVdev vdev = DpdkKernelVdev::af_xdp;
  // Extra EAL arguments (the first balancer of the process decides them).
  std::vector<std::string> eal;
  bool hugepages = false;               // false: --no-huge --no-pci unless eal says otherwise
  uint32_t ring_size = 1024;            // descriptors per receive and transmit queue
  std::vector<int32_t> worker_cpus;
};

// The entry point l4lb_dpdk.so exports (extern "C"). Returns a new driver
// (the caller deletes it) or nullptr with *error set. `version` must be
// kDpdkAbiVersion: the library and the addon share C++ types, so one from
// another build is refused rather than called.
inline constexpr const char* kDpdkEntryPoint = "l4lb_dpdk_create_driver";
inline constexpr uint32_t kDpdkAbiVersion = 1;
using DpdkCreateDriver = Driver* (*)(uint32_t version, const DpdkDriverOptions* options, PortError* error);

}  // namespace l4lb::io

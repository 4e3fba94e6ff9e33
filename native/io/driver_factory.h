// Builds a driver from its name and options: the one place that knows every
// driver (the engine and the addon know io::Driver only).
#pragma once

#include <memory>
#include <string>

#include "io/af_packet_driver.h"
#include "io/af_xdp_options.h"
#include "io/dpdk_options.h"
#include "io/driver.h"
#include "io/memory_port.h"

namespace l4lb::io {

struct DriverSpec {
  std::string name = "memory";  // "memory" | "af_packet" | "af_xdp" | "dpdk"
  uint32_t interfaces = 1;      // memory: how many ports
  MemoryPortOptions memory;
  AfPacketDriverOptions af_packet;
  AfXdpDriverOptions af_xdp;
  DpdkDriverOptions dpdk;
};

// nullptr with *error set (code EDRIVER_UNAVAILABLE for a driver this build
// lacks, or whose library or what it links (libxdp/libbpf, libdpdk) cannot
// be loaded;
// EPORT_OPTIONS for bad options).
std::shared_ptr<Driver> make_driver(const DriverSpec& spec, PortError* error);

}  // namespace l4lb::io

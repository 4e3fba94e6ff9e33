// What the XDP program (native/xdp/l4lb_xdp.c) takes from the kernel, kept
// in step with the configuration: the address, service and settings maps of
// one loaded program. The af_xdp driver has one program for all its
// interfaces; the dpdk driver one per net_af_xdp interface (the vdev loads
// it). Needs libbpf: built into l4lb_af_xdp.so and l4lb_dpdk.so only.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/port.h"
#include "xdp/l4lb_xdp_maps.h"

namespace l4lb::core {
struct SnapshotView;
}

namespace l4lb::io {

// The process's start time in clock ticks after boot (/proc/PID/stat field
// 22): with the pid it names a process, not a reused pid. 0 when unreadable.
uint64_t process_start_time(uint32_t pid);

// Before the balancer's program is attached to an interface: a program of a
// dead l4lb process (killed before close(); l4lb_settings names its owner)
// is ours to remove; one of a live process, or anybody else's, is not: the
// interface is taken (EXDP_BUSY naming whose it is). EXDP_PERMISSION and
// the like (af_xdp_errors.h) when the kernel refuses to say.
bool remove_stale_program(const std::string& interface_name, int ifindex, PortError* error);

class XdpSelection {
 public:
  XdpSelection() = default;
  XdpSelection(int addresses_map, int services_map, int settings_map)
      : addresses_map_(addresses_map), services_map_(services_map), settings_map_(settings_map) {}

  // The services map is optional: the program reads it only where it needs
  // it, and a program loaded by another (net_af_xdp) holds only the maps
  // its code uses.
  bool valid() const { return addresses_map_ >= 0 && settings_map_ >= 0; }

  // Entries are written before the ones that went are deleted, so an
  // address in both the old and the new configuration is never missing.
  // False when the kernel refused a write (the previous entries stay).
  bool apply(const core::SnapshotView& view);

  // Records this process as the program's owner (l4lb_settings), so that a
  // later balancer removes the program if this process dies before close().
  bool claim();

 private:
  int addresses_map_ = -1, services_map_ = -1, settings_map_ = -1;
  // What apply() last wrote, to delete what the next one drops.
  std::unordered_map<uint32_t, uint32_t> addresses_;  // network order -> L4LB_ADDRESS_*
  std::vector<l4lb_service_key> services_;
};

}  // namespace l4lb::io

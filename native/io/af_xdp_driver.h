// The AF_XDP driver: its XDP program (native/xdp/l4lb_xdp.c) attached to
// every served interface, native mode where the interface has it and generic
// elsewhere; one UMEM per worker; one AfXdpPort per worker and interface
// holding an XSK for each receive queue the worker serves there (queue q to
// worker q % workers). configure() keeps the program's maps in step with the
// configuration, so that the kernel hands over exactly the balancer's frames.
// Built into l4lb_af_xdp.so (af_xdp_options.h says why).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/af_xdp_options.h"
#include "io/af_xdp_port.h"
#include "io/driver.h"
#include "io/xdp_selection.h"
#include "xdp/l4lb_xdp_maps.h"

struct bpf_object;

namespace l4lb::io {

class AfXdpDriver final : public Driver {
 public:
  explicit AfXdpDriver(const AfXdpDriverOptions& options) : options_(options) {}
  ~AfXdpDriver() override;

  const char* name() const override { return "af_xdp"; }
  bool open(uint32_t workers, PortError* error) override;
  uint32_t port_count() const override { return static_cast<uint32_t>(options_.interfaces.size()); }
  Port& port(uint32_t worker, uint32_t index) override { return *ports_[worker][index]; }
  void configure(const core::SnapshotView& view) override;
  uint64_t configure_errors() const override { return map_errors_.load(std::memory_order_relaxed); }
  std::vector<PortCounters> port_counters() const override;
  std::vector<InterfaceReport> interfaces() const override;

 private:
  struct Interface {
    std::string name;
    int ifindex = 0;
    uint32_t mtu = 0;
    uint32_t queues = 1;
    bool attached = false;
    uint32_t attach_flags = 0;  // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
  };

  bool inspect_interfaces(uint32_t workers, PortError* error);
  bool remove_stale_programs(PortError* error);
  bool load_program(PortError* error);
  bool attach(Interface& interface, PortError* error);
  bool open_sockets(uint32_t workers, PortError* error);
  void close_all();
  int map_fd(const char* name) const;

  AfXdpDriverOptions options_;
  std::vector<Interface> interfaces_;
  bpf_object* object_ = nullptr;
  int program_fd_ = -1;
  int sockets_map_ = -1, ports_map_ = -1, addresses_map_ = -1, services_map_ = -1, settings_map_ = -1;
  std::vector<std::unique_ptr<Umem>> umems_;                         // [worker]; outlive the ports
  std::vector<std::vector<std::unique_ptr<AfXdpPort>>> ports_;      // [worker][interface]
  XdpSelection selection_;
  std::atomic<uint64_t> map_errors_{0};
};

}  // namespace l4lb::io

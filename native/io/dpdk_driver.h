// The DPDK driver: ports are DPDK ethdevs in this process's EAL
// (dpdk_eal.h). A kernel interface becomes a net_af_xdp vdev that loads the
// balancer's XDP program (native/xdp/l4lb_xdp.c built for queue sockets),
// whose maps configure() keeps in step with the configuration as the af_xdp
// driver does, so the kernel keeps every frame that is not the balancer's;
// or a net_af_packet vdev (a tap: the host guard keeps the host stack out).
// Any other EAL device string (a PCI address, a vdev) is probed as given.
// One mbuf pool per worker for all its queues (net_af_xdp: one UMEM over it,
// shared_umem), so a frame received on one interface leaves another as the
// same mbuf. close (the destructor) stops, closes and removes every device
// it added, then frees the pools; the EAL stays for the next balancer.
// Built into l4lb_dpdk.so (dpdk_options.h says why).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "io/dpdk_options.h"
#include "io/dpdk_port.h"
#include "io/driver.h"
#include "io/xdp_selection.h"

namespace l4lb::io {

class DpdkDriver final : public Driver {
 public:
  explicit DpdkDriver(const DpdkDriverOptions& options) : options_(options) {}
  ~DpdkDriver() override;

  const char* name() const override { return "dpdk"; }
  bool open(uint32_t workers, PortError* error) override;
  uint32_t port_count() const override { return static_cast<uint32_t>(options_.interfaces.size() + options_.devices.size()); }
  Port& port(uint32_t worker, uint32_t index) override { return *ports_[worker][index]; }
  void configure(const core::SnapshotView& view) override;
  uint64_t configure_errors() const override { return map_errors_.load(std::memory_order_relaxed); }
  std::vector<PortCounters> port_counters() const override;
  std::vector<InterfaceReport> interfaces() const override;

 private:
  struct Device {
    std::string name;          // the interface, or the device string as given
    std::string vdev_name;     // the vdev this driver created ("" for a probed device)
    std::string probed;        // the device string probed with rte_dev_probe ("" for a vdev)
    std::string mode;          // InterfaceReport::mode
    int ifindex = 0;           // kernel interfaces
    uint16_t port_id = 0;
    bool has_port = false;
    bool started = false;
    uint16_t queues = 1;
    std::vector<std::unique_ptr<DpdkTxQueue>> tx_queues;
    XdpSelection selection;    // net_af_xdp: the program the vdev loaded
    std::vector<int> map_fds;  // its maps, closed with the device
  };

  // One attempt at adding, configuring and starting every device; nothing stays on failure.
  bool open_devices(uint32_t workers, PortError* error);
  bool add_kernel_interface(const std::string& interface, uint32_t workers, PortError* error);
  bool add_device(const std::string& device, PortError* error);
  bool start_device(Device& device, uint32_t workers, PortError* error);
  bool find_program_maps(Device& device, PortError* error);
  void close_all();

  DpdkDriverOptions options_;
  std::vector<Device> devices_;
  std::vector<rte_mempool*> pools_;                           // [worker]
  std::vector<std::unique_ptr<DpdkNap>> naps_;                // [worker]
  std::vector<std::vector<std::unique_ptr<DpdkPort>>> ports_;  // [worker][port]
  std::atomic<uint64_t> map_errors_{0};
};

}  // namespace l4lb::io

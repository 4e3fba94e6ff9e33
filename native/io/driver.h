// A driver: what creates a balancer's ports and decides what traffic reaches
// them. The engine knows drivers only through this interface (and the ports
// through io::Port); make_driver (driver_factory.h) builds one from options.
//
// Threading: open(), configure() and the counters on the control thread;
// port(w, p) is handed to worker w, which alone calls its rx/tx methods.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/port.h"

namespace l4lb::core {
struct SnapshotView;
}

namespace l4lb::io {

// Per interface, beyond the port counters: how the driver runs it.
struct InterfaceReport {
  std::string name;
  std::string mode;  // e.g. "tpacket_v2", "xdp_native", "xdp_generic", "memory"
};

class Driver {
 public:
  virtual ~Driver() = default;

  virtual const char* name() const = 0;

  // Creates one port per worker and interface. Until the first configure()
  // a port queues nothing, so nothing waits before the balancer knows what
  // is its. False with *error set; nothing stays open then.
  virtual bool open(uint32_t workers, PortError* error) = 0;
  virtual uint32_t port_count() const = 0;
  virtual Port& port(uint32_t worker, uint32_t index) = 0;

  // After every published configuration: what the kernel hands the ports
  // (socket filters, XDP maps) follows it. A failure leaves the previous
  // selection in force; it is counted in configure_errors().
  virtual void configure(const core::SnapshotView& /*view*/) {}
  virtual uint64_t configure_errors() const { return 0; }

  // Per interface, summed over workers.
  virtual std::vector<PortCounters> port_counters() const = 0;
  virtual std::vector<InterfaceReport> interfaces() const = 0;
};

}  // namespace l4lb::io

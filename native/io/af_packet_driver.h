// The AF_PACKET driver: one AfPacketPort per worker and interface, the
// workers of an interface in one PACKET_FANOUT group, and socket filters that
// follow the configuration so that the kernel queues only the balancer's
// traffic (docs/af-packet.md).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "io/af_packet.h"
#include "io/driver.h"

namespace l4lb::io {

struct AfPacketDriverOptions {
  std::vector<std::string> interfaces;  // in the calling thread's network namespace
  TxMethod tx_method = kDefaultTxMethod;
  uint32_t rx_frame_count = 4096;       // receive slots per socket
  std::vector<int32_t> worker_cpus;     // stored on the ports (the engine pins)
};

class AfPacketDriver final : public Driver {
 public:
  explicit AfPacketDriver(const AfPacketDriverOptions& options) : options_(options) {}

  const char* name() const override { return "af_packet"; }
  bool open(uint32_t workers, PortError* error) override;
  uint32_t port_count() const override { return static_cast<uint32_t>(options_.interfaces.size()); }
  Port& port(uint32_t worker, uint32_t index) override { return *ports_[worker][index]; }
  void configure(const core::SnapshotView& view) override;
  uint64_t configure_errors() const override { return filter_errors_.load(std::memory_order_relaxed); }
  std::vector<PortCounters> port_counters() const override;
  std::vector<InterfaceReport> interfaces() const override;

  AfPacketPort& af_packet_port(uint32_t worker, uint32_t index) { return *ports_[worker][index]; }

 private:
  AfPacketDriverOptions options_;
  std::vector<std::vector<std::unique_ptr<AfPacketPort>>> ports_;  // [worker][interface]
  std::atomic<uint64_t> filter_errors_{0};  // filter replacements the kernel refused
};

}  // namespace l4lb::io

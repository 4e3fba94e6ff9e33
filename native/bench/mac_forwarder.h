// The I/O floor of the benchmark (DESIGN §6): a forwarder built from l4lb's
// own port code that does nothing but rewrite the two MAC addresses. It runs
// the engine worker's loop shape: a receive burst per port, the frames
// rewritten, one transmit kick per egress port (which takes the buffers
// over); adaptive polling spins for the engine's spin time after traffic and
// then sleeps on the same wait set (engine/wait_set.h); busy time is
// accounted exactly as the engine accounts it (the time of batches that
// received something). The difference between l4lb and this forwarder is
// therefore the cost of the L4 work alone. It runs over AF_PACKET ports, or
// over the AF_XDP driver (its XDP program selecting the traffic a
// configuration names, as a balancer's does): one floor per driver.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/wait_set.h"
#include "io/af_packet.h"
#include "io/driver.h"

namespace l4lb::bench {

struct MacForwarderOptions {
  // Frames received on interfaces[0] leave on interfaces[1] and back.
  std::string interfaces[2];
  std::string netns_path;
  // MAC addresses written into frames leaving on port i: dst, then src.
  uint8_t dst_mac[2][6] = {};
  uint8_t src_mac[2][6] = {};
  bool busy_polling = false;
  int32_t cpu = -1;
  io::TxMethod tx_method = io::kDefaultTxMethod;
  uint32_t rx_frame_count = io::AfPacketOptions{}.rx_frame_count;  // the engine's defaults
  uint64_t spin_ns = engine::EngineOptions{}.spin_ns;
  // "af_packet" (the ports above) or "af_xdp": the AF_XDP driver loaded from
  // af_xdp_library, its program's maps filled from `snapshot` (a published
  // configuration's bytes) so that it redirects what a balancer would.
  std::string driver = "af_packet";
  std::string af_xdp_library;
  std::vector<uint8_t> snapshot;
};

struct MacForwarderStats {
  uint64_t rx_packets = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_dropped = 0;
  uint64_t kernel_drops = 0;
  uint64_t busy_ns = 0;      // time of batches that received frames
  uint64_t batches = 0;
  uint64_t idle_polls = 0;
  uint64_t wakeups = 0;
  uint64_t thread_cpu_ns = 0;  // the forwarding thread's CPU time so far (0 once stopped)
};

class MacForwarder {
 public:
  static std::unique_ptr<MacForwarder> create(const MacForwarderOptions& options, io::PortError* error);
  ~MacForwarder();
  void stop();
  MacForwarderStats stats() const;

 private:
  MacForwarder() = default;
  void loop();

  bool open_driver(io::PortError* error);
  // Runs `work` on a thread in options_.netns_path (or this namespace); false
  // when it could not enter it (then *error, if given, says why).
  bool in_netns(const std::function<void()>& work, io::PortError* error) const;

  MacForwarderOptions options_;
  std::unique_ptr<io::AfPacketPort> packet_ports_[2];
  std::shared_ptr<io::Driver> driver_;  // af_xdp: owns the ports
  io::Port* ports_[2] = {};
  engine::WaitSet waits_;
  std::thread thread_;
  pthread_t native_thread_{};
  std::atomic<bool> running_{true};
  // One writer: the forwarding thread.
  std::atomic<uint64_t> busy_ns_{0}, batches_{0}, idle_polls_{0}, wakeups_{0};
};

}  // namespace l4lb::bench

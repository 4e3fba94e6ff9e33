// The benchmark's traffic generator: synthetic UDP or TCP frames sent through
// an AfPacketPort (the balancer's own transmit path) from one pinned thread,
// at a target rate or flat out, over a configurable number of flows, each
// frame stamped (frame_stamp.h) for the sink's latency and loss accounting.
//
// Frames are built once per burst slot; per frame only the flow's source
// address and port and the stamp change, and the checksums are finished from
// partial sums precomputed over the fixed bytes, so the generator's cost per
// frame is the kernel's transmit, not the frame building.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "io/af_packet.h"

namespace l4lb::bench {

enum class GeneratedProtocol : uint8_t { udp, tcp };

struct GeneratorOptions {
  std::string interface;
  std::string netns_path;      // empty: the calling thread's namespace
  uint8_t dst_mac[6] = {};
  uint8_t src_mac[6] = {};
  uint32_t src_addr = 0;       // host order; flow f uses src_addr + f / kPortsPerAddress
  uint32_t dst_addr = 0;       // host order
  uint16_t dst_port = 9;
  GeneratedProtocol protocol = GeneratedProtocol::udp;
  // Ethernet frame size with its 4-byte FCS, as RFC 2544 counts it: 64 sends
  // 60 bytes to the kernel. UDP: 64..1518; TCP: 74..1518 (20 more header bytes).
  uint32_t frame_size = 64;
  io::TxMethod tx_method = io::kDefaultTxMethod;
  int32_t cpu = -1;
};

struct GeneratorRun {
  uint32_t run_tag = 0;
  double rate_pps = 0;         // 0: flat out
  uint32_t burst = 32;         // frames per transmit kick at most (1..64)
  // Paced runs wait until this many frames are due before a kick (1..burst):
  // larger kicks cost the generator less per frame, smaller ones keep the
  // latency stamp of each frame close to its real departure.
  uint32_t min_burst = 1;
  uint32_t flows = 1;          // flow f = frame number mod flows...
  bool new_flow_per_frame = false;  // ...or every frame its own flow (flow = first_flow + frame number)
  uint64_t first_flow = 0;
  uint64_t duration_ns = 1'000'000'000;
  uint64_t max_frames = 0;     // 0: no limit
};

struct GeneratorStats {
  bool running = false;
  uint64_t sent = 0;           // frames the kernel accepted
  uint64_t refused = 0;        // frames the port could not hand over (counted, not retried)
  uint64_t kicks = 0;
  uint64_t elapsed_ns = 0;     // wall clock of the run
  uint64_t thread_cpu_ns = 0;  // CLOCK_THREAD_CPUTIME_ID of the sending thread
  uint64_t next_flow = 0;      // storm: first_flow for a following run that wants fresh flows
};

class TrafficGenerator {
 public:
  // Source ports 1024..65535 per source address.
  static constexpr uint32_t kPortsPerAddress = 64512;

  static std::unique_ptr<TrafficGenerator> create(const GeneratorOptions& options, io::PortError* error);
  ~TrafficGenerator();

  // Starts a run on the generator's thread; false if one is running.
  bool start(const GeneratorRun& run);
  // Ends the run early (idempotent) and joins the thread.
  void stop();
  GeneratorStats stats() const;
  // The wire length of the frames (frame_size - FCS).
  uint32_t wire_length() const { return wire_length_; }

 private:
  TrafficGenerator() = default;
  void build_templates();
  void run_loop(GeneratorRun run);
  void fill(uint8_t* frame, uint64_t flow, uint32_t sequence, uint64_t sent_ns, uint32_t run_tag) const;

  GeneratorOptions options_;
  std::unique_ptr<io::AfPacketPort> port_;
  uint32_t wire_length_ = 0;
  uint32_t l4_offset_ = 0;
  std::vector<std::vector<uint8_t>> frames_;  // one per burst slot
  uint32_t ip_partial_ = 0;                   // IPv4 header sum without the source address
  uint32_t l4_partial_ = 0;                   // TCP: pseudo-header + segment without source address, port, stamp

  std::thread thread_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> running_{false};
  // Written by the run thread, read by stats() from any thread.
  std::atomic<uint64_t> sent_{0}, refused_{0}, kicks_{0}, elapsed_ns_{0}, thread_cpu_ns_{0}, next_flow_{0};
};

}  // namespace l4lb::bench

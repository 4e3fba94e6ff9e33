// The benchmark's sink: counts the generator's frames arriving on one
// interface and records their latency. It has its own TPACKET_V3 receive
// ring, not an AfPacketPort, because it needs what the port does not hand
// out: the kernel's receive timestamp of each frame (tp_sec/tp_nsec, taken
// when the frame reached the sink's interface). A TPACKET_V3 block is handed
// to user space only when full or when its retire timer fires, so a latency
// taken when the sink *reads* a frame would add up to that timer; the kernel
// timestamp does not.
//
// The timestamp is CLOCK_REALTIME (the kernel's software receive stamp), and
// so is the generator's stamp: one clock for both, and namespaces share it.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "bench/latency_histogram.h"

namespace l4lb::bench {

struct SinkOptions {
  std::string interface;
  std::string netns_path;   // empty: the calling thread's namespace
  uint32_t block_size = 1u << 20;
  uint32_t block_count = 64;  // 64 MiB: ~40 ms of 1500-byte frames at 1 Mpps
  int32_t cpu = -1;
};

struct SinkStats {
  uint32_t run_tag = 0;       // the run whose frames are being counted (adopted by the sink thread)
  uint64_t frames = 0;        // of that run
  uint64_t bytes = 0;         // of that run, as received (encapsulation included)
  uint64_t other_frames = 0;  // anything else (ARP, earlier runs)
  uint64_t kernel_drops = 0;  // the sink's ring was full (PACKET_STATISTICS, accumulated)
  uint64_t negative_latencies = 0;  // stamp later than the receive time (clock step): counted as 0
  uint64_t thread_cpu_ns = 0; // the sink thread's CPU time since it started
  uint64_t first_ns = 0;      // receive time of the run's first and last frame (CLOCK_REALTIME)
  uint64_t last_ns = 0;
  double p50_ns = 0, p90_ns = 0, p99_ns = 0, p999_ns = 0, max_ns = 0, mean_ns = 0;
};

class TrafficSink {
 public:
  // nullptr with *code / *message set on failure.
  static std::unique_ptr<TrafficSink> create(const SinkOptions& options, std::string* code, std::string* message);
  ~TrafficSink();

  // Counts the frames of `run_tag` from now on, from zero. Returns once the
  // sink thread has adopted the tag (or after 2 s: false).
  bool expect(uint32_t run_tag);
  SinkStats stats() const;
  void close();

 private:
  TrafficSink() = default;
  bool open_socket(std::string* code, std::string* message);
  void loop();
  void walk_block(uint8_t* block);

  SinkOptions options_;
  int fd_ = -1;
  uint8_t* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  uint32_t next_block_ = 0;
  std::thread thread_;
  pthread_t native_thread_{};
  std::atomic<bool> stop_{false};

  // The control thread's request (release) and the sink thread's adoption
  // (release); each side reads the other's with acquire.
  std::atomic<uint32_t> wanted_tag_{0};
  std::atomic<uint32_t> adopted_tag_{0};
  std::atomic<uint64_t> generation_wanted_{0};
  std::atomic<uint64_t> generation_adopted_{0};

  // One writer: the sink thread.
  std::atomic<uint64_t> frames_{0}, bytes_{0}, other_frames_{0}, negative_{0}, first_ns_{0}, last_ns_{0};
  std::atomic<uint64_t> latency_sum_ns_{0}, latency_max_ns_{0};
  mutable std::atomic<uint64_t> kernel_drops_{0};
  LatencyHistogram histogram_;
};

}  // namespace l4lb::bench

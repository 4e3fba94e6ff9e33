// In-process port for tests and micro benchmarks: frames are injected from
// the control thread and taken from it, through two SPSC rings, while the
// same engine and workers run behind it as with a real driver.
#pragma once

#include <atomic>
#include <cstdint>

#include "io/port.h"
#include "shm/spsc_ring.h"

namespace l4lb::io {

class MemoryPort final : public Port {
 public:
  // Room before a received frame for tunnel headers (outer IPv4 + GRE with
  // key and sequence is 36 bytes), rounded up to a cache line.
  static constexpr uint32_t kHeadroom = 64;
  static constexpr uint32_t kMaxFrame = 9216;  // jumbo frames
  static constexpr uint32_t kSlotSize = kHeadroom + kMaxFrame;

  explicit MemoryPort(uint32_t ring_frames = 1024);

  // Control thread: copies a frame in. False when the frame is too long or
  // the ring is full (nothing is queued then).
  bool inject(const uint8_t* data, uint32_t len, uint32_t frame_flags = 0);
  // Control thread: copies the next transmitted frame out; returns its
  // length, or 0 when none is waiting. `capacity` must be >= kMaxFrame.
  uint32_t take(uint8_t* out, uint32_t capacity);
  uint32_t waiting_to_take() const { return tx_ring_.consumer_available(); }

  uint32_t rx_burst(core::Frame* frames, uint32_t max) override;
  void rx_done() override;
  uint32_t tx_burst(const core::Frame* frames, uint32_t count) override;
  int wait_fd() const override { return -1; }
  PortCounters counters() const override;

 private:
  shm::SpscSlotRing rx_ring_;  // control thread -> worker
  shm::SpscSlotRing tx_ring_;  // worker -> control thread
  uint32_t rx_in_flight_ = 0;  // frames handed out by the last rx_burst (worker only)
  std::atomic<uint64_t> rx_packets_{0}, rx_bytes_{0}, tx_packets_{0}, tx_bytes_{0}, tx_dropped_{0};
};

}  // namespace l4lb::io

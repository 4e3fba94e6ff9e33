// In-process ports for tests and micro benchmarks: frames are injected from
// the control thread and taken from it, through two SPSC rings per port,
// while the same engine and workers run behind them as with a real driver.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "io/driver.h"
#include "io/port.h"
#include "shm/spsc_ring.h"

namespace l4lb::io {

// What travels with a frame in and out of a memory port besides its bytes:
// the flags and offload metadata of core::Frame.
struct MemoryFrameMeta {
  uint32_t flags = 0;  // core::kFrame* bits
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
  uint16_t gso_size = 0;
  uint16_t header_len = 0;
  core::GsoType gso_type = core::GsoType::none;
  bool gso_ecn = false;
  uint8_t pad[2] = {};
};
static_assert(sizeof(MemoryFrameMeta) == 16);

struct MemoryPortOptions {
  uint32_t ring_frames = 1024;
  uint32_t max_frame = 9216;  // jumbo frames; more to inject aggregates
  PortCapabilities capabilities;  // what the port claims to offload (tests choose)
};

class MemoryPort final : public Port, private core::FrameOwner {
 public:
  // Room before a received frame for tunnel headers (outer IPv4 + GRE with
  // key and sequence is 36 bytes), rounded up to a cache line.
  static constexpr uint32_t kHeadroom = 64;

  explicit MemoryPort(const MemoryPortOptions& options);
  ~MemoryPort() override;
  MemoryPort(const MemoryPort&) = delete;
  MemoryPort& operator=(const MemoryPort&) = delete;

  // Control thread: copies a frame in. False when the frame is too long or
  // the ring is full (nothing is queued then).
  bool inject(const uint8_t* data, uint32_t len, const MemoryFrameMeta& meta);
  // Control thread: copies the next transmitted frame out; returns its
  // length, or 0 when none is waiting or it does not fit `capacity`.
  uint32_t take(uint8_t* out, uint32_t capacity, MemoryFrameMeta* meta);
  uint32_t max_frame() const { return max_frame_; }

  uint32_t rx_burst(core::Frame* frames, uint32_t max) override;
  TxResult tx_burst(core::Frame* frames, uint32_t count) override;
  // Readable once inject() queued a frame: a sleeping worker wakes for it.
  int wait_fd() const override { return ready_fd_; }
  PortCapabilities capabilities() const override { return capabilities_; }
  PortCounters counters() const override;

 private:
  void release(core::Frame* frames, uint32_t count) override;
  uint32_t slot_size() const { return kMetaBytes + kHeadroom + max_frame_; }
  static constexpr uint32_t kMetaBytes = sizeof(MemoryFrameMeta);

  uint32_t max_frame_;
  PortCapabilities capabilities_;
  int ready_fd_ = -1;  // eventfd: inject() writes after it commits a frame
  shm::SpscSlotRing rx_ring_;  // control thread -> worker
  shm::SpscSlotRing tx_ring_;  // worker -> control thread
  // Worker only. Received frames are handed out in ring order and may come
  // back in any order; a ring slot returns to the producer once every slot
  // before it has come back too.
  uint32_t rx_handed_out_ = 0;         // slots handed out and not yet returned to the ring
  uint32_t rx_oldest_ = 0;             // ring position of the oldest of them
  std::vector<uint8_t> rx_released_;   // per ring position: released by its owner
  PortCounterCells counters_;
};

// Memory ports for every (worker, interface), with the kernel's fanout
// imitated: inject() spreads frames over the workers' rings in turn, so a
// flow's replies are processed by another worker than its first packet.
class MemoryDriver final : public Driver {
 public:
  MemoryDriver(uint32_t interfaces, const MemoryPortOptions& options);

  const char* name() const override { return "memory"; }
  bool open(uint32_t workers, PortError* error) override;
  uint32_t port_count() const override { return interfaces_; }
  Port& port(uint32_t worker, uint32_t index) override { return *ports_[worker][index]; }
  std::vector<PortCounters> port_counters() const override;
  std::vector<InterfaceReport> interfaces() const override;

  // Control thread.
  bool inject(uint32_t interface, const uint8_t* data, uint32_t len, const MemoryFrameMeta& meta = {});
  uint32_t take(uint32_t interface, uint8_t* out, uint32_t capacity, MemoryFrameMeta* meta = nullptr);
  uint32_t max_frame() const { return options_.max_frame; }

 private:
  uint32_t interfaces_;
  MemoryPortOptions options_;
  std::vector<std::vector<std::unique_ptr<MemoryPort>>> ports_;  // [worker][interface]
  uint32_t inject_cursor_ = 0;
  std::vector<uint32_t> take_cursor_;  // per interface
};

}  // namespace l4lb::io

// The port interface: everything above it (engine, core) sees frames and
// their owners, never the driver. A driver (driver.h) creates one port per
// worker and interface.
//
// Buffer ownership, as with DPDK's mbufs: rx_burst hands the caller frames it
// now owns (Frame::owner names who takes each buffer back). The caller either
// passes a frame to tx_burst of any port of the same worker, which takes it
// over whether or not it can send it, or gives it back with
// core::release_frames. A port sends a frame of its own buffer pool as is
// (AF_XDP: the same UMEM descriptor) and copies any other (then releases the
// original at once): a copy happens only across pools.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "core/frame.h"

namespace l4lb::io {

// Why opening or configuring failed. `code` is stable (ENO_INTERFACE,
// EPORT_OPTIONS, EPORT_NETNS, EPORT_SOCKET, EPORT_FILTER, EPORT_RING,
// EPORT_BIND, EPORT_FANOUT, EDRIVER_UNAVAILABLE, ...); `message` names the
// call, the interface and errno.
struct PortError {
  std::string code;
  std::string message;
  int error_number = 0;  // errno of the failed call; 0 for option checks
};

struct PortCounters {
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_dropped = 0;      // the port could not take a frame (ring full, too long, send failed)
  uint64_t kernel_drops = 0;    // dropped before the port saw them (ring full: PACKET_STATISTICS, XDP ring stats, imissed)

  // Drivers sum their ports' counters per interface.
  PortCounters& operator+=(const PortCounters& other) {
    rx_packets += other.rx_packets;
    rx_bytes += other.rx_bytes;
    tx_packets += other.tx_packets;
    tx_bytes += other.tx_bytes;
    tx_dropped += other.tx_dropped;
    kernel_drops += other.kernel_drops;
    return *this;
  }
};

// The counters of one port, as its worker keeps them: one writer, so each
// update is a relaxed load and store (no atomic read-modify-write on the
// packet path), read at any time by the control thread.
class PortCounterCells {
 public:
  void received(uint64_t packets, uint64_t bytes) {
    add(rx_packets_, packets);
    add(rx_bytes_, bytes);
  }
  void sent(uint64_t packets, uint64_t bytes) {
    add(tx_packets_, packets);
    add(tx_bytes_, bytes);
  }
  void dropped(uint64_t frames) {
    if (frames != 0) add(tx_dropped_, frames);
  }
  // The port's counters without kernel_drops (the port adds what its kernel reports).
  PortCounters snapshot() const {
    PortCounters c;
    c.rx_packets = rx_packets_.load(std::memory_order_relaxed);
    c.rx_bytes = rx_bytes_.load(std::memory_order_relaxed);
    c.tx_packets = tx_packets_.load(std::memory_order_relaxed);
    c.tx_bytes = tx_bytes_.load(std::memory_order_relaxed);
    c.tx_dropped = tx_dropped_.load(std::memory_order_relaxed);
    return c;
  }

 private:
  static void add(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::atomic<uint64_t> rx_packets_{0}, rx_bytes_{0}, tx_packets_{0}, tx_bytes_{0}, tx_dropped_{0};
};

struct TxResult {
  uint32_t packets = 0;  // frames sent
  uint64_t bytes = 0;    // their bytes
};

// What a port's transmit path does for the core (the core does the rest in
// software before tx_burst).
struct PortCapabilities {
  // Sends frames with kFrameChecksumPartial: the checksum at csum_start is
  // completed by the kernel or the NIC.
  bool checksum_offload = false;
  // Sends aggregates (Frame::gso_type): the kernel or the NIC cuts them into
  // gso_size segments.
  bool segmentation_offload = false;
  // Receives aggregates (frames beyond the MTU): software segmentation may be
  // needed on the way out even when nothing else changes.
  bool receives_aggregates = false;
};

class Port {
 public:
  virtual ~Port() = default;

  // Receives up to `max` frames into `frames`; the caller owns them (each with
  // Frame::headroom writable bytes before data).
  virtual uint32_t rx_burst(core::Frame* frames, uint32_t max) = 0;

  // Transmits `count` frames with as few kicks as it can and takes every one
  // of them over: the frames it could not send (ring full, too long, send
  // failed) it releases itself and counts in tx_dropped. Returns what was
  // sent. A frame whose owner is null is copied before return and stays its
  // creator's.
  virtual TxResult tx_burst(core::Frame* frames, uint32_t count) = 0;

  // A descriptor that polls readable when frames wait, or -1 (memory port).
  virtual int wait_fd() const = 0;

  // Before the worker sleeps on wait_fd(): true when the port may already
  // hold frames the descriptor will not announce (the worker polls again
  // instead of sleeping). AF_XDP uses it for need_wakeup; most ports never.
  virtual bool pending() const { return false; }

  virtual PortCapabilities capabilities() const = 0;
  virtual PortCounters counters() const = 0;
};

}  // namespace l4lb::io

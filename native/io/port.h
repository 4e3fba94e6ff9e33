// The port interface: everything above it (engine, core) sees frames, never
// the driver. AF_PACKET and the memory port implement it today; AF_XDP and
// DPDK later, behind the same calls.
#pragma once

#include <cstdint>

#include "core/frame.h"

namespace l4lb::io {

struct PortCounters {
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_dropped = 0;      // the port could not take a frame (ring full)
  uint64_t kernel_drops = 0;    // the kernel dropped before we saw it (PACKET_STATISTICS)
};

class Port {
 public:
  virtual ~Port() = default;

  // Receives up to `max` frames into `frames`. They stay valid and writable
  // (with Frame::headroom bytes before data) until rx_done().
  virtual uint32_t rx_burst(core::Frame* frames, uint32_t max) = 0;

  // Returns every frame of the last rx_burst to the port.
  virtual void rx_done() = 0;

  // Transmits `count` frames with one kick; returns how many were accepted
  // (the rest count as tx_dropped). Frames are copied or sent before return.
  virtual uint32_t tx_burst(const core::Frame* frames, uint32_t count) = 0;

  // A descriptor that polls readable when frames wait (adaptive polling), or -1.
  virtual int wait_fd() const = 0;

  virtual PortCounters counters() const = 0;
};

}  // namespace l4lb::io

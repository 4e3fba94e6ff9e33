// DPDK port: the queues of one worker on one DPDK ethdev. Frames are mbufs:
// rx_burst hands them out as they are (data, headroom and tailroom of the
// mbuf), the core rewrites them in place, and tx_burst transmits the same
// mbuf (its data offset and length updated), so nothing is copied in user
// space; a frame of any other owner is copied into an mbuf of the worker's
// pool. docs/dpdk.md has the rules.
//
// Queues: a worker receives on the queues q of the device with q % workers
// == w, and transmits on queue w % queues; when an interface has fewer
// queues than there are workers, the workers sharing a transmit queue take
// its lock (DPDK's queues are not thread-safe).
//
// Poll-mode queues have no descriptor to sleep on: with polling 'adaptive' a
// worker whose ports are idle naps on a timer (DpdkNap), 50 µs at first and
// doubling up to 1 ms while nothing arrives.
//
// Threading: created on the control thread; rx_burst / tx_burst on the
// owning worker; counters() from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "io/port.h"

struct rte_mempool;
struct rte_mbuf;

namespace l4lb::io {

// Takes mbufs back (rte_pktmbuf_free): one owner for every mbuf, whichever
// pool it came from, so that any DPDK port sends any mbuf as it is.
class MbufOwner final : public core::FrameOwner {
 public:
  static MbufOwner* instance();
  void release(core::Frame* frames, uint32_t count) override;
};

// A worker's idle timer, shared by its ports (the first one exposes it).
class DpdkNap {
 public:
  DpdkNap();
  ~DpdkNap();
  DpdkNap(const DpdkNap&) = delete;
  DpdkNap& operator=(const DpdkNap&) = delete;
  int fd() const { return fd_; }
  void traffic() { step_ns_ = kFirstNs; }
  void arm() const;

  static constexpr uint64_t kFirstNs = 50'000;
  static constexpr uint64_t kLongestNs = 1'000'000;

 private:
  int fd_ = -1;
  mutable uint64_t step_ns_ = kFirstNs;
};

// A transmit queue and, when workers share it, its lock.
struct DpdkTxQueue {
  uint16_t id = 0;
  bool shared = false;
  std::atomic_flag lock = ATOMIC_FLAG_INIT;
};

struct DpdkPortSpec {
  uint16_t port_id = 0;
  std::vector<uint16_t> rx_queues;
  DpdkTxQueue* tx_queue = nullptr;  // owned by the driver
  rte_mempool* pool = nullptr;      // the worker's: copies come from it
  DpdkNap* nap = nullptr;           // the worker's
  bool exposes_nap = false;         // the worker's first port
  bool guess_partial_checksums = false;  // a kernel interface (vdev): local stacks send CHECKSUM_PARTIAL
};

class DpdkPort final : public Port {
 public:
  explicit DpdkPort(const DpdkPortSpec& spec) : spec_(spec) {}

  uint32_t rx_burst(core::Frame* frames, uint32_t max) override;
  TxResult tx_burst(core::Frame* frames, uint32_t count) override;
  int wait_fd() const override { return spec_.exposes_nap ? spec_.nap->fd() : -1; }
  bool pending() const override;
  PortCapabilities capabilities() const override { return PortCapabilities{}; }
  PortCounters counters() const override;

 private:
  rte_mbuf* to_mbuf(core::Frame& frame);

  DpdkPortSpec spec_;
  uint32_t next_rx_ = 0;  // the queue rx_burst starts with (fairness between queues)
  PortCounterCells counters_;
};

}  // namespace l4lb::io

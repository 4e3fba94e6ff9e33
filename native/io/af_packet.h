// AF_PACKET port: a TPACKET_V2 receive ring and a transmit path (sendmmsg or
// a TX ring) on one packet socket bound to one interface, with
// PACKET_VNET_HDR so that GSO aggregates and partial checksums travel with
// their metadata in both directions. One port per worker and interface; the
// workers of an interface share its traffic through a PACKET_FANOUT group.
// docs/af-packet.md says what each choice answers to in the kernel and what
// the measurements were.
//
// Threading: create() on any thread; rx_burst / tx_burst / release only on
// the owning worker; counters() and the accessors from any thread.
#pragma once

#include <linux/filter.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/port.h"

struct iovec;
struct mmsghdr;

namespace l4lb::io {

enum class TxMethod : uint8_t {
  ring,      // PACKET_TX_RING, one send() kick per burst; no offloads (frames must fit a slot)
  sendmmsg,  // one sendmmsg() per burst, iovecs pointing at the frames; GSO and checksum offload
};

// The faster of the two on veth: sendmmsg costs the sending core 10-20%
// less per packet than the TX ring, whose frames the kernel attaches as page
// fragments that veth must then copy (skb_orphan_frags); docs/af-packet.md
// has the numbers. It also passes 64 KiB aggregates on, which ring slots
// cannot hold.
inline constexpr TxMethod kDefaultTxMethod = TxMethod::sendmmsg;

// AfPacketOptions::fanout_group
inline constexpr int32_t kNoFanout = -1;
// The kernel picks an id unused in the namespace (PACKET_FANOUT_FLAG_UNIQUEID);
// fanout_group() returns it, for the other workers' ports to join.
inline constexpr int32_t kFanoutNewGroup = -2;

struct AfPacketOptions {
  std::string interface;
  // Empty: the socket lives in the calling thread's network namespace. A path
  // (/var/run/netns/NAME, /proc/PID/ns/net): create() moves the calling thread
  // into it for the setup and back before returning.
  std::string netns_path;

  // Receive ring: fixed slots, each handed to user space the moment the
  // kernel fills it (TPACKET_V2: no block timer between a frame and the
  // worker). 0 slot size: the smallest power of two that holds a frame of
  // the interface's MTU with its headers.
  uint32_t rx_frame_count = 4096;
  uint32_t rx_frame_size = 0;
  // Writable bytes guaranteed before every received frame (PACKET_RESERVE):
  // tunnel encapsulation prepends up to 36 bytes in place, VLAN re-insertion 4.
  uint32_t headroom = 64;
  // Frames longer than a slot (GSO/GRO aggregates of up to 64 KiB) are
  // queued whole on the socket as well (PACKET_COPY_THRESH) and read with
  // recvmsg into these buffers; rx_burst pauses while all are in use.
  uint32_t aggregate_buffers = 16;

  // PACKET_FANOUT_HASH group id (0..65535), kNoFanout or kFanoutNewGroup.
  // A group belongs to one interface of one namespace: two interfaces need
  // two ids, or the second join fails with EINVAL.
  int32_t fanout_group = kNoFanout;

  // Attached before the socket is bound (build_bpf_filter); empty: no filter.
  std::vector<sock_filter> filter;

  TxMethod tx_method = kDefaultTxMethod;
  uint32_t tx_frame_size = 0;      // TX ring slot; 0: from the interface MTU
  uint32_t tx_frame_count = 1024;  // TX ring slots
  // PACKET_QDISC_BYPASS: transmit straight to the driver, skipping the qdisc
  // and the packet taps (tcpdump no longer sees what the port sends).
  bool qdisc_bypass = false;

  int32_t cpu = -1;  // CPU of the owning worker (stored for pinning; -1: none)
};

// Beyond PortCounters: what the port itself skipped or had to retry.
struct AfPacketCounters {
  uint64_t rx_outgoing_skipped = 0;  // PACKET_OUTGOING frames found in the ring (kernels without IGNORE_OUTGOING)
  uint64_t rx_truncated = 0;         // longer than a slot and no whole copy queued (or longer than a buffer)
  uint64_t rx_aggregates = 0;        // GSO/GRO aggregates received (read with recvmsg when beyond a slot)
  uint64_t tx_kicks = 0;             // send()/sendmmsg() calls
  uint64_t tx_kick_errors = 0;       // of which failed (frames then wait in the ring or are dropped)
};

class AfPacketPort final : public Port, private core::FrameOwner {
 public:
  // nullptr and *error filled on failure; nothing is left open then.
  static std::unique_ptr<AfPacketPort> create(const AfPacketOptions& options, PortError* error);
  ~AfPacketPort() override;
  AfPacketPort(const AfPacketPort&) = delete;
  AfPacketPort& operator=(const AfPacketPort&) = delete;

  uint32_t rx_burst(core::Frame* frames, uint32_t max) override;
  TxResult tx_burst(core::Frame* frames, uint32_t count) override;
  int wait_fd() const override { return fd_; }
  PortCapabilities capabilities() const override;
  PortCounters counters() const override;

  AfPacketCounters driver_counters() const;
  // Replaces the socket's BPF filter (any thread; the kernel swaps it
  // atomically, so a frame meets either the old or the new program).
  bool replace_filter(const std::vector<sock_filter>& filter, PortError* error);
  const std::string& interface() const { return interface_; }
  int ifindex() const { return ifindex_; }
  uint32_t mtu() const { return mtu_; }
  uint32_t rx_frame_size() const { return rx_frame_size_; }
  TxMethod tx_method() const { return tx_method_; }
  int32_t fanout_group() const { return fanout_group_; }
  int32_t cpu() const { return cpu_; }
  // False on kernels before 4.20 (per socket) or 6.2 (fanout members): own
  // and host-sent frames then reach the ring and rx_burst skips them.
  bool kernel_ignores_outgoing() const { return kernel_ignores_outgoing_; }

 private:
  struct AggregateBuffer;

  AfPacketPort() = default;
  bool setup(const AfPacketOptions& options, PortError* error);
  bool setup_in_namespace(const AfPacketOptions& options, PortError* error);
  void release(core::Frame* frames, uint32_t count) override;
  void release_slot(uint32_t slot);
  bool read_aggregate(core::Frame* frame);
  TxResult tx_burst_ring(core::Frame* frames, uint32_t count);
  TxResult tx_burst_sendmmsg(core::Frame* frames, uint32_t count);
  void kick_tx_ring();
  uint8_t* rx_slot(uint32_t index) const { return ring_ + static_cast<size_t>(index) * rx_frame_size_; }
  uint8_t* tx_slot(uint32_t index) const { return tx_ring_ + static_cast<size_t>(index) * tx_frame_size_; }

  // Set once by create().
  int fd_ = -1;
  uint8_t* ring_ = nullptr;  // mmap: RX slots, then TX slots (ring method)
  size_t ring_bytes_ = 0;
  uint8_t* tx_ring_ = nullptr;
  std::string interface_;
  int ifindex_ = 0;
  uint32_t mtu_ = 0;
  uint32_t max_frame_len_ = 0;  // MTU + Ethernet header + one VLAN tag
  uint32_t rx_frame_size_ = 0;
  uint32_t rx_frame_count_ = 0;
  uint32_t tx_frame_size_ = 0;
  uint32_t tx_frame_count_ = 0;
  TxMethod tx_method_ = kDefaultTxMethod;
  int32_t fanout_group_ = kNoFanout;
  int32_t cpu_ = -1;
  bool kernel_ignores_outgoing_ = false;

  // Worker-owned receive position: the next slot to look at. Slots are
  // filled by the kernel in ring order; one handed out stays ours until
  // released (the kernel drops rather than overwrite it).
  uint32_t rx_next_ = 0;
  std::vector<uint8_t> rx_held_;  // per slot: handed out and not yet released
  // Aggregates read with recvmsg: a free list of buffers (worker only).
  std::vector<std::unique_ptr<AggregateBuffer>> aggregates_;
  std::vector<uint32_t> free_aggregates_;

  // Worker-owned transmit position.
  uint32_t tx_head_ = 0;             // next TX ring slot to fill (the kernel's head follows it)
  bool tx_backlog_ = false;          // the last kick left frames queued in the TX ring
  std::unique_ptr<mmsghdr[]> tx_messages_;
  std::unique_ptr<iovec[]> tx_iovecs_;        // two per message: virtio_net_hdr, frame
  std::unique_ptr<uint8_t[]> tx_vnet_headers_;  // one per message

  // One writer (the worker; kernel_drops: any thread calling counters()).
  PortCounterCells counters_;
  std::atomic<uint64_t> rx_outgoing_skipped_{0}, rx_truncated_{0}, rx_aggregates_{0}, tx_kicks_{0}, tx_kick_errors_{0};
  // PACKET_STATISTICS resets the kernel's counter on every read: each reader
  // adds the delta it took, so concurrent readers lose nothing.
  mutable std::atomic<uint64_t> kernel_drops_{0};
};

}  // namespace l4lb::io

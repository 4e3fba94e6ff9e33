// AF_XDP port: the AF_XDP sockets (XSKs) of one worker on one interface, one
// per receive queue the worker serves there, over the worker's UMEM. All the
// XSKs of a worker share that UMEM (XDP_SHARED_UMEM, each (interface, queue)
// with its own fill and completion rings), so a frame received on one
// interface is rewritten in place and transmitted on another as the same
// descriptor: no copy in user space. docs/af-xdp.md has the rules.
//
// Threading: created on the control thread; rx_burst / tx_burst / release on
// the owning worker; counters() from any thread.
#pragma once

#include <xdp/xsk.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/port.h"

namespace l4lb::io {

// A worker's UMEM: the buffer area, the free frames, and the owner every
// frame received into it names. Only the worker touches the free list.
class Umem final : public core::FrameOwner {
 public:
  // Frames of one page: the kernel's copy mode and native XDP on most
  // drivers take a frame of at most a page (no multi-buffer here).
  static constexpr uint32_t kFrameSize = 4096;
  // Where copied-in frames start in their chunk: the room native XDP keeps
  // before a frame (XDP_PACKET_HEADROOM), so that every buffer has the same
  // headroom for tunnel encapsulation.
  static constexpr uint32_t kTxOffset = 256;

  static std::unique_ptr<Umem> create(uint32_t frames, uint32_t ring_size, PortError* error);
  ~Umem();
  Umem(const Umem&) = delete;
  Umem& operator=(const Umem&) = delete;

  void release(core::Frame* frames, uint32_t count) override;
  bool take(uint64_t* chunk);
  void give(uint64_t chunk) { free_.push_back(chunk); }
  size_t free_count() const { return free_.size(); }
  uint8_t* area() const { return area_; }
  xsk_umem* handle() const { return umem_; }
  // The fill and completion rings created with the UMEM, handed to its first socket.
  xsk_ring_prod* first_fill() { return &fill_; }
  xsk_ring_cons* first_completion() { return &completion_; }

 private:
  Umem() = default;
  uint8_t* area_ = nullptr;
  size_t bytes_ = 0;
  xsk_umem* umem_ = nullptr;
  xsk_ring_prod fill_{};
  xsk_ring_cons completion_{};
  std::vector<uint64_t> free_;  // chunk addresses (offsets in the area)
};

struct XskSpec {
  std::string interface;
  uint32_t queue = 0;
  bool generic = false;  // the program runs in generic (skb) mode: bind in copy mode
  uint32_t ring_size = 2048;
};

class AfXdpPort final : public Port {
 public:
  // One socket per spec, all on `umem` (shared with the worker's other
  // ports). nullptr with *error set; nothing stays open then.
  static std::unique_ptr<AfXdpPort> create(Umem* umem, const std::vector<XskSpec>& sockets, uint32_t mtu,
                                           PortError* error);
  ~AfXdpPort() override;
  AfXdpPort(const AfXdpPort&) = delete;
  AfXdpPort& operator=(const AfXdpPort&) = delete;

  uint32_t rx_burst(core::Frame* frames, uint32_t max) override;
  TxResult tx_burst(core::Frame* frames, uint32_t count) override;
  int wait_fd() const override { return wait_fd_; }
  bool pending() const override;
  PortCapabilities capabilities() const override;
  PortCounters counters() const override;

  // The socket descriptors, in spec order, for the driver's XSK map.
  std::vector<int> socket_fds() const;
  // True when the kernel bound a socket in zero-copy mode.
  bool zero_copy() const { return zero_copy_; }

 private:
  struct Socket {
    xsk_socket* xsk = nullptr;
    int fd = -1;
    xsk_ring_cons rx{};
    xsk_ring_prod tx{};
    xsk_ring_prod fill{};
    xsk_ring_cons completion{};
  };

  AfXdpPort() = default;
  void refill(Socket& socket);
  void reclaim(Socket& socket);
  void kick_tx();
  bool tx_outstanding() const;

  Umem* umem_ = nullptr;
  std::vector<std::unique_ptr<Socket>> sockets_;  // stable addresses: libxdp keeps pointers to the rings
  int wait_fd_ = -1;
  int epoll_fd_ = -1;  // with several sockets: wait_fd_ watches them all
  uint32_t max_frame_len_ = 0;
  uint32_t ring_size_ = 0;
  uint32_t next_rx_ = 0;  // the socket rx_burst starts with (fairness between queues)
  bool zero_copy_ = false;
  bool tx_backlog_ = false;  // descriptors left in the transmit ring after the last kick
  std::vector<uint64_t> tx_addresses_;
  std::vector<uint32_t> tx_lengths_;

  PortCounterCells counters_;
};

}  // namespace l4lb::io

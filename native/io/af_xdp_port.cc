#include "io/af_xdp_port.h"

#include <linux/if_ether.h>
#include <linux/if_xdp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "io/af_xdp_errors.h"
#include "io/partial_checksum.h"

namespace l4lb::io {

namespace {

constexpr uint32_t kEthernetHeaderLen = 14;
constexpr uint32_t kVlanTagLen = 4;
// In copy mode the kernel sends at most 32 descriptors per kick
// (xsk_generic_xmit's TX_BATCH_SIZE) and asks for another with EAGAIN: a
// burst of 64 takes three, and more than this many means the device is
// busy (the rest waits for the next kick).
constexpr int kMaxKicksPerBurst = 8;
// Descriptors prepared per tx_burst before the vectors grow (a burst is at
// most two of the core's bursts).
constexpr uint32_t kTxBurstCapacity = 256;

uint64_t chunk_of(uint64_t address) { return address & ~static_cast<uint64_t>(Umem::kFrameSize - 1); }

}  // namespace

std::unique_ptr<Umem> Umem::create(uint32_t frames, uint32_t ring_size, PortError* error) {
  std::unique_ptr<Umem> umem(new Umem());
  umem->bytes_ = static_cast<size_t>(frames) * kFrameSize;
  void* area = mmap(nullptr, umem->bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) {
    xdp_fail(error, "EXDP_SOCKET", "mmap of " + std::to_string(umem->bytes_ >> 20) + " MiB for the UMEM", errno);
    return nullptr;
  }
  umem->area_ = static_cast<uint8_t*>(area);
  xsk_umem_config config{};
  config.fill_size = ring_size;
  config.comp_size = ring_size;
  config.frame_size = kFrameSize;
  config.frame_headroom = 0;
  config.flags = 0;
  const int result = xsk_umem__create(&umem->umem_, umem->area_, umem->bytes_, &umem->fill_, &umem->completion_, &config);
  if (result != 0) {
    umem->umem_ = nullptr;
    const int error_number = -result;
    if (error_number == ENOBUFS || error_number == ENOMEM) {
      // XDP_UMEM_REG pins the area and charges it to RLIMIT_MEMLOCK unless
      // the process has CAP_IPC_LOCK (xdp_umem_account_pages).
      xdp_fail(error, "EXDP_MEMLOCK",
               "registering a UMEM of " + std::to_string(umem->bytes_ >> 20) +
                   " MiB (XDP_UMEM_REG) exceeds the locked-memory limit: raise RLIMIT_MEMLOCK (ulimit -l unlimited, "
                   "systemd LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK",
               error_number);
    } else {
      xdp_socket_fail(error, "xsk_umem__create", error_number);
    }
    return nullptr;
  }
  umem->free_.reserve(frames);
  for (uint32_t i = frames; i-- > 0;) umem->free_.push_back(static_cast<uint64_t>(i) * kFrameSize);
  return umem;
}

Umem::~Umem() {
  if (umem_ != nullptr) xsk_umem__delete(umem_);
  if (area_ != nullptr) munmap(area_, bytes_);
}

void Umem::release(core::Frame* frames, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) free_.push_back(frames[i].handle);
}

bool Umem::take(uint64_t* chunk) {
  if (free_.empty()) return false;
  *chunk = free_.back();
  free_.pop_back();
  return true;
}

std::unique_ptr<AfXdpPort> AfXdpPort::create(Umem* umem, const std::vector<XskSpec>& specs, uint32_t mtu,
                                             PortError* error) {
  std::unique_ptr<AfXdpPort> port(new AfXdpPort());
  port->umem_ = umem;
  port->max_frame_len_ = mtu + kEthernetHeaderLen + kVlanTagLen;
  for (const XskSpec& spec : specs) {
    auto socket = std::make_unique<Socket>();
    port->ring_size_ = spec.ring_size;
    xsk_socket_config config{};
    config.rx_size = spec.ring_size;
    config.tx_size = spec.ring_size;
    // The driver attaches its own program and fills its socket map.
    config.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
    config.xdp_flags = 0;
    // Generic XDP hands frames over as copies whatever the device could do.
    config.bind_flags = static_cast<uint16_t>(XDP_USE_NEED_WAKEUP | (spec.generic ? XDP_COPY : 0));
    // The UMEM's own fill and completion rings go to its first socket; a
    // socket on another (interface, queue) gets rings of its own.
    const int result = xsk_socket__create_shared(&socket->xsk, spec.interface.c_str(), spec.queue, umem->handle(),
                                                 &socket->rx, &socket->tx, &socket->fill, &socket->completion, &config);
    if (result != 0) {
      socket->xsk = nullptr;
      xdp_socket_fail(error, "AF_XDP socket on " + spec.interface + " queue " + std::to_string(spec.queue), -result);
      return nullptr;
    }
    socket->fd = xsk_socket__fd(socket->xsk);
    xdp_options options{};
    socklen_t length = sizeof(options);
    if (getsockopt(socket->fd, SOL_XDP, XDP_OPTIONS, &options, &length) == 0 && (options.flags & XDP_OPTIONS_ZEROCOPY)) {
      port->zero_copy_ = true;
    }
    port->sockets_.push_back(std::move(socket));
  }
  if (port->sockets_.size() == 1) {
    port->wait_fd_ = port->sockets_[0]->fd;
  } else if (port->sockets_.size() > 1) {
    // One descriptor for the worker to sleep on: an epoll set is itself
    // pollable, readable when one of the sockets is.
    port->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (port->epoll_fd_ < 0) {
      xdp_fail(error, "EXDP_SOCKET", "epoll_create1", errno);
      return nullptr;
    }
    for (const auto& socket : port->sockets_) {
      epoll_event event{};
      event.events = EPOLLIN;
      event.data.fd = socket->fd;
      if (epoll_ctl(port->epoll_fd_, EPOLL_CTL_ADD, socket->fd, &event) != 0) {
        xdp_fail(error, "EXDP_SOCKET", "epoll_ctl", errno);
        return nullptr;
      }
    }
    port->wait_fd_ = port->epoll_fd_;
  }
  port->tx_addresses_.resize(kTxBurstCapacity);
  port->tx_lengths_.resize(kTxBurstCapacity);
  for (auto& socket : port->sockets_) port->refill(*socket);
  return port;
}

AfXdpPort::~AfXdpPort() {
  // Frames still in the kernel's rings belong to the UMEM, which the driver
  // deletes after its ports.
  for (auto& socket : sockets_) {
    if (socket->xsk != nullptr) xsk_socket__delete(socket->xsk);
  }
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

std::vector<int> AfXdpPort::socket_fds() const {
  std::vector<int> fds;
  for (const auto& socket : sockets_) fds.push_back(socket->fd);
  return fds;
}

PortCapabilities AfXdpPort::capabilities() const {
  // Frames go out as the descriptor says: the core completes checksums and
  // cuts aggregates (none arrive: a frame is one buffer of at most a page).
  return PortCapabilities{};
}

void AfXdpPort::refill(Socket& socket) {
  uint32_t wanted = xsk_prod_nb_free(&socket.fill, ring_size_);
  wanted = std::min<uint32_t>(wanted, static_cast<uint32_t>(umem_->free_count()));
  if (wanted == 0) return;
  uint32_t index = 0;
  if (xsk_ring_prod__reserve(&socket.fill, wanted, &index) != wanted) return;
  for (uint32_t i = 0; i < wanted; ++i) {
    uint64_t chunk = 0;
    umem_->take(&chunk);
    *xsk_ring_prod__fill_addr(&socket.fill, index + i) = chunk;
  }
  xsk_ring_prod__submit(&socket.fill, wanted);
}

void AfXdpPort::reclaim(Socket& socket) {
  uint32_t index = 0;
  const uint32_t done = xsk_ring_cons__peek(&socket.completion, ring_size_, &index);
  if (done == 0) return;
  for (uint32_t i = 0; i < done; ++i) umem_->give(chunk_of(*xsk_ring_cons__comp_addr(&socket.completion, index + i)));
  xsk_ring_cons__release(&socket.completion, done);
}

uint32_t AfXdpPort::rx_burst(core::Frame* frames, uint32_t max) {
  if (tx_backlog_) [[unlikely]] kick_tx();
  uint32_t count = 0;
  uint64_t bytes = 0;
  const uint32_t sockets = static_cast<uint32_t>(sockets_.size());
  for (uint32_t s = 0; s < sockets && count < max; ++s) {
    Socket& socket = *sockets_[(next_rx_ + s) % sockets];
    reclaim(socket);
    uint32_t index = 0;
    const uint32_t received = xsk_ring_cons__peek(&socket.rx, max - count, &index);
    for (uint32_t i = 0; i < received; ++i) {
      const xdp_desc* desc = xsk_ring_cons__rx_desc(&socket.rx, index + i);
      // Acquire of the producer index in peek pairs with the kernel's
      // release after it wrote the descriptor and the frame.
      const uint64_t address = desc->addr;
      const uint64_t chunk = chunk_of(address);
      const uint32_t offset = static_cast<uint32_t>(address - chunk);
      const uint32_t len = std::min<uint32_t>(desc->len, Umem::kFrameSize - offset);
      core::Frame& frame = frames[count++];
      frame = core::make_frame(umem_->area() + address, len, offset, Umem::kFrameSize - offset - len);
      frame.owner = umem_;
      frame.handle = chunk;
      mark_partial_checksum(&frame);
      bytes += len;
    }
    if (received != 0) xsk_ring_cons__release(&socket.rx, received);
    refill(socket);
    // Zero-copy drivers with need_wakeup stop filling until told the fill
    // ring has buffers again.
    if (xsk_ring_prod__needs_wakeup(&socket.fill)) recvfrom(socket.fd, nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
  }
  next_rx_ = sockets == 0 ? 0 : (next_rx_ + 1) % sockets;
  if (count != 0) {
    counters_.received(count, bytes);
  }
  return count;
}

TxResult AfXdpPort::tx_burst(core::Frame* frames, uint32_t count) {
  if (sockets_.empty()) {
    core::release_frames(frames, count);
    counters_.dropped(count);
    return {};
  }
  Socket& socket = *sockets_[0];
  reclaim(socket);
  if (tx_addresses_.size() < count) {
    tx_addresses_.resize(count);
    tx_lengths_.resize(count);
  }
  // First the descriptors (a frame of another pool is copied into a free
  // chunk), then one reservation of exactly that many ring entries.
  uint32_t ready = 0;
  uint32_t dropped = 0;
  const uint32_t room = xsk_prod_nb_free(&socket.tx, count);
  for (uint32_t i = 0; i < count; ++i) {
    core::Frame& frame = frames[i];
    const bool fits = frame.len >= kEthernetHeaderLen && frame.len <= max_frame_len_ && !frame.is_aggregate() &&
                      frame.data != nullptr;
    if (!fits || ready == room) [[unlikely]] {
      ++dropped;
      core::release_frames(&frame, 1);
      continue;
    }
    uint64_t address = 0;
    if (frame.owner == umem_) {
      address = static_cast<uint64_t>(frame.data - umem_->area());
    } else {
      uint64_t chunk = 0;
      if (frame.len > Umem::kFrameSize - Umem::kTxOffset || !umem_->take(&chunk)) {
        ++dropped;
        core::release_frames(&frame, 1);
        continue;
      }
      address = chunk + Umem::kTxOffset;
      std::memcpy(umem_->area() + address, frame.data, frame.len);
      core::release_frames(&frame, 1);  // copied
    }
    tx_addresses_[ready] = address;
    tx_lengths_[ready] = frame.len;
    ++ready;
  }
  uint64_t bytes = 0;
  if (ready != 0) {
    uint32_t index = 0;
    xsk_ring_prod__reserve(&socket.tx, ready, &index);  // `room` said there is space
    for (uint32_t i = 0; i < ready; ++i) {
      xdp_desc* desc = xsk_ring_prod__tx_desc(&socket.tx, index + i);
      desc->addr = tx_addresses_[i];
      desc->len = tx_lengths_[i];
      desc->options = 0;
      bytes += tx_lengths_[i];
    }
    // Release inside submit pairs with the kernel's acquire of the producer.
    xsk_ring_prod__submit(&socket.tx, ready);
    kick_tx();
  }
  counters_.sent(ready, bytes);
  counters_.dropped(dropped);
  return {ready, bytes};
}

bool AfXdpPort::tx_outstanding() const {
  const xsk_ring_prod& tx = sockets_[0]->tx;
  // Acquire pairs with the kernel's release of the consumer index once it
  // has read the descriptors.
  return __atomic_load_n(tx.consumer, __ATOMIC_ACQUIRE) != __atomic_load_n(tx.producer, __ATOMIC_RELAXED);
}

void AfXdpPort::kick_tx() {
  Socket& socket = *sockets_[0];
  tx_backlog_ = false;
  if (!xsk_ring_prod__needs_wakeup(&socket.tx)) return;  // zero-copy driver still running
  for (int kick = 0; kick < kMaxKicksPerBurst; ++kick) {
    if (sendto(socket.fd, nullptr, 0, MSG_DONTWAIT, nullptr, 0) >= 0) {
      if (!tx_outstanding()) return;
      continue;
    }
    // EAGAIN: a batch went and more wait; EBUSY/ENOBUFS: the device or
    // the skb allocator is busy: try again at the next poll.
    if (errno != EAGAIN) break;
  }
  tx_backlog_ = tx_outstanding();
}

bool AfXdpPort::pending() const {
  // Descriptors the kernel has not taken wait for a kick, which only a
  // poll gives: the worker must not sleep on them.
  return tx_backlog_;
}

PortCounters AfXdpPort::counters() const {
  PortCounters c = counters_.snapshot();
  for (const auto& socket : sockets_) {
    xdp_statistics stats{};
    socklen_t length = sizeof(stats);
    if (getsockopt(socket->fd, SOL_XDP, XDP_STATISTICS, &stats, &length) == 0) {
      c.kernel_drops += stats.rx_dropped + stats.rx_ring_full + stats.rx_invalid_descs;
    }
  }
  return c;
}

}  // namespace l4lb::io

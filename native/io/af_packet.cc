#include "io/af_packet.h"

#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace l4lb::io {

namespace {

// Where the kernel puts things in a TPACKET_V3 frame (tpacket_rcv): the
// header, then struct sockaddr_ll, then PACKET_RESERVE and alignment slack,
// then the MAC header at tp_mac. The bytes from the end of sockaddr_ll to
// tp_mac are ours to overwrite: that is the headroom a frame reports.
constexpr uint32_t kFrameHeaderLen = TPACKET_ALIGN(sizeof(tpacket3_hdr));
constexpr uint32_t kFrameMetadataLen = TPACKET3_HDRLEN;  // header + sockaddr_ll
// TX ring slots (no PACKET_TX_HAS_OFF): data starts at tp_hdrlen - sizeof(sockaddr_ll).
constexpr uint32_t kTxDataOffset = TPACKET3_HDRLEN - sizeof(sockaddr_ll);
constexpr uint32_t kEthernetHeaderLen = 14;
constexpr uint32_t kVlanTagLen = 4;
constexpr uint32_t kMacAddressesLen = 12;
constexpr uint32_t kMaxHeadroom = 4096;
constexpr uint32_t kMinTxFrameSize = 2048;
// sendmmsg: frames per call. The engine sends at most 2 * kMaxBurst (128) per
// port and batch; more go in further calls of this size.
constexpr uint32_t kTxMessagesPerCall = 256;
// PACKET_FANOUT_FLAG_IGNORE_OUTGOING (Linux 6.2): a fanout group's hook does
// not use its members' PACKET_IGNORE_OUTGOING, only this flag. Older uapi
// headers lack the name.
constexpr uint32_t kFanoutFlagIgnoreOutgoing = 0x4000;

std::string errno_text(int error_number) {
  const char* name = strerrorname_np(error_number);
  return std::string(strerror(error_number)) + " (" + (name != nullptr ? name : std::to_string(error_number)) + ")";
}

bool fail(PortError* error, const char* code, const std::string& message, int error_number) {
  error->code = code;
  error->error_number = error_number;
  error->message = error_number != 0 ? message + ": " + errno_text(error_number) : message;
  return false;
}

bool is_power_of_two(uint32_t value) { return value != 0 && (value & (value - 1)) == 0; }

uint32_t round_up_power_of_two(uint32_t value) {
  uint32_t rounded = 1;
  while (rounded < value) rounded <<= 1;
  return rounded;
}

template <typename T>
bool set_option(int fd, int level, int name, const T& value) {
  return setsockopt(fd, level, name, &value, sizeof(value)) == 0;
}

// A counter with one writer: a relaxed load + store is an increment nobody races.
void add(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// The longest frame the kernel transmits (packet_snd / tpacket_snd): MTU +
// Ethernet header, and 4 more only for an 802.1Q tag
// (packet_extra_vlan_len_allowed checks for ETH_P_8021Q, not 802.1ad).
bool transmittable(const core::Frame& frame, uint32_t mtu) {
  if (frame.len < kEthernetHeaderLen) return false;
  const bool tagged = frame.data[12] == 0x81 && frame.data[13] == 0x00;
  return frame.len <= mtu + kEthernetHeaderLen + (tagged ? kVlanTagLen : 0);
}

}  // namespace

std::unique_ptr<AfPacketPort> AfPacketPort::create(const AfPacketOptions& options, PortError* error) {
  PortError ignored;
  if (error == nullptr) error = &ignored;
  std::unique_ptr<AfPacketPort> port(new AfPacketPort());
  // On failure the destructor unmaps and closes whatever setup had opened.
  if (!port->setup_in_namespace(options, error)) return nullptr;
  return port;
}

AfPacketPort::~AfPacketPort() {
  if (ring_ != nullptr) munmap(ring_, ring_bytes_);
  if (fd_ >= 0) close(fd_);
}

bool AfPacketPort::setup_in_namespace(const AfPacketOptions& options, PortError* error) {
  if (options.netns_path.empty()) return setup(options, error);
  // setns() changes the namespace of the calling thread only; sockets keep
  // the namespace they were created in, so the thread can return at once.
  const int original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original < 0) return fail(error, "EPORT_NETNS", "open(/proc/thread-self/ns/net)", errno);
  const int target = open(options.netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    const int saved = errno;
    close(original);
    return fail(error, "EPORT_NETNS", "open(" + options.netns_path + ")", saved);
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    const int saved = errno;
    close(target);
    close(original);
    return fail(error, "EPORT_NETNS", "setns(" + options.netns_path + ")", saved);
  }
  close(target);
  bool ok = setup(options, error);
  if (setns(original, CLONE_NEWNET) != 0) {
    // The thread would stay in the other namespace: fail loudly rather than
    // let the caller's next socket land there.
    ok = fail(error, "EPORT_NETNS", "setns back to the original namespace after opening " + options.interface, errno);
  }
  close(original);
  return ok;
}

bool AfPacketPort::setup(const AfPacketOptions& options, PortError* error) {
  interface_ = options.interface;
  tx_method_ = options.tx_method;
  cpu_ = options.cpu;
  const std::string on = " on " + options.interface;

  // Option checks first: no syscall for a request the kernel would refuse
  // with a bare EINVAL.
  const long page_size = sysconf(_SC_PAGESIZE);
  if (options.interface.empty() || options.interface.size() >= IFNAMSIZ) {
    return fail(error, "EPORT_OPTIONS", "interface name \"" + options.interface + "\" must have 1 to 15 characters", 0);
  }
  if (options.rx_block_size == 0 || options.rx_block_size % page_size != 0 || !is_power_of_two(options.rx_block_size)) {
    return fail(error, "EPORT_OPTIONS", "rx_block_size " + std::to_string(options.rx_block_size) +
                                            " must be a power of two multiple of the page size" + on, 0);
  }
  if (options.rx_block_count == 0) return fail(error, "EPORT_OPTIONS", "rx_block_count must be at least 1" + on, 0);
  if (options.headroom > kMaxHeadroom) {
    return fail(error, "EPORT_OPTIONS", "headroom must be at most " + std::to_string(kMaxHeadroom) + on, 0);
  }
  if (options.rx_frame_size % TPACKET_ALIGNMENT != 0 || options.rx_frame_size < kFrameMetadataLen + options.headroom ||
      options.rx_frame_size > options.rx_block_size) {
    return fail(error, "EPORT_OPTIONS", "rx_frame_size " + std::to_string(options.rx_frame_size) +
                                            " must be a multiple of 16, at least 68 + headroom and at most rx_block_size" + on,
                0);
  }
  if (options.fanout_group < kFanoutNewGroup || options.fanout_group > 0xffff) {
    return fail(error, "EPORT_OPTIONS", "fanout_group must be 0..65535, kNoFanout or kFanoutNewGroup" + on, 0);
  }
  if (options.filter.size() > BPF_MAXINSNS) {
    return fail(error, "EPORT_OPTIONS", "the filter has more than 4096 instructions" + on, 0);
  }
  if (options.tx_method == TxMethod::ring && options.tx_frame_count == 0) {
    return fail(error, "EPORT_OPTIONS", "tx_frame_count must be at least 1" + on, 0);
  }

  // Protocol 0: the socket receives nothing until bind() names ETH_P_ALL, so
  // no frame is queued before the filter and the ring are in place.
  fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return fail(error, "EPORT_SOCKET", "socket(AF_PACKET, SOCK_RAW)" + on, errno);

  ifreq request{};
  std::memcpy(request.ifr_name, options.interface.data(), options.interface.size());
  if (ioctl(fd_, SIOCGIFINDEX, &request) != 0) {
    return fail(error, "ENO_INTERFACE", "ioctl(SIOCGIFINDEX): no interface " + options.interface +
                                                " in this network namespace", errno);
  }
  ifindex_ = request.ifr_ifindex;
  if (ioctl(fd_, SIOCGIFMTU, &request) != 0) return fail(error, "ENO_INTERFACE", "ioctl(SIOCGIFMTU)" + on, errno);
  mtu_ = static_cast<uint32_t>(request.ifr_mtu);
  max_frame_len_ = mtu_ + kEthernetHeaderLen + kVlanTagLen;

  if (!options.filter.empty()) {
    sock_fprog program{static_cast<unsigned short>(options.filter.size()), const_cast<sock_filter*>(options.filter.data())};
    if (!set_option(fd_, SOL_SOCKET, SO_ATTACH_FILTER, program)) {
      return fail(error, "EPORT_FILTER", "setsockopt(SO_ATTACH_FILTER)" + on, errno);
    }
  }
  if (!set_option(fd_, SOL_PACKET, PACKET_VERSION, static_cast<int>(TPACKET_V3))) {
    return fail(error, "EPORT_RING", "setsockopt(PACKET_VERSION, TPACKET_V3)" + on, errno);
  }
  // PACKET_RESERVE is added between sockaddr_ll and the MAC header of every
  // received frame; it must be set before the ring exists (EBUSY after).
  if (!set_option(fd_, SOL_PACKET, PACKET_RESERVE, static_cast<unsigned int>(options.headroom))) {
    return fail(error, "EPORT_RING", "setsockopt(PACKET_RESERVE)" + on, errno);
  }
  if (options.tx_method == TxMethod::ring) {
    // Without PACKET_LOSS a malformed TX slot stops the ring (it stays
    // TP_STATUS_WRONG_FORMAT and every later kick fails on it); with it the
    // kernel discards the slot and goes on. Also EBUSY once a ring exists.
    if (!set_option(fd_, SOL_PACKET, PACKET_LOSS, 1)) {
      return fail(error, "EPORT_RING", "setsockopt(PACKET_LOSS)" + on, errno);
    }
  }

  tpacket_req3 rx_request{};
  rx_request.tp_block_size = options.rx_block_size;
  rx_request.tp_block_nr = options.rx_block_count;
  rx_request.tp_frame_size = options.rx_frame_size;
  rx_request.tp_frame_nr = (options.rx_block_size / options.rx_frame_size) * options.rx_block_count;
  rx_request.tp_retire_blk_tov = options.rx_block_timeout_ms;
  if (!set_option(fd_, SOL_PACKET, PACKET_RX_RING, rx_request)) {
    return fail(error, "EPORT_RING", "setsockopt(PACKET_RX_RING, " + std::to_string(options.rx_block_count) + " x " +
                                         std::to_string(options.rx_block_size) + " bytes)" + on, errno);
  }
  rx_block_size_ = options.rx_block_size;
  rx_block_count_ = options.rx_block_count;
  ring_bytes_ = static_cast<size_t>(rx_block_size_) * rx_block_count_;

  size_t tx_ring_bytes = 0;
  if (options.tx_method == TxMethod::ring) {
    // Fixed-size V3 TX slots (tp_next_offset 0). A power-of-two slot and a
    // block of max(page, slot) keep the slots contiguous across blocks.
    tx_frame_size_ = options.tx_frame_size != 0 ? options.tx_frame_size
                                                : std::max(kMinTxFrameSize, round_up_power_of_two(kTxDataOffset + max_frame_len_));
    if (!is_power_of_two(tx_frame_size_) || tx_frame_size_ < kTxDataOffset + kEthernetHeaderLen) {
      return fail(error, "EPORT_OPTIONS", "tx_frame_size must be a power of two of at least 64" + on, 0);
    }
    const uint32_t tx_block_size = std::max(static_cast<uint32_t>(page_size), tx_frame_size_);
    const uint32_t frames_per_block = tx_block_size / tx_frame_size_;
    const uint32_t tx_block_count = (options.tx_frame_count + frames_per_block - 1) / frames_per_block;
    tpacket_req3 tx_request{};
    tx_request.tp_block_size = tx_block_size;
    tx_request.tp_block_nr = tx_block_count;
    tx_request.tp_frame_size = tx_frame_size_;
    tx_request.tp_frame_nr = tx_block_count * frames_per_block;
    if (!set_option(fd_, SOL_PACKET, PACKET_TX_RING, tx_request)) {
      return fail(error, "EPORT_RING", "setsockopt(PACKET_TX_RING)" + on, errno);
    }
    tx_frame_count_ = tx_request.tp_frame_nr;
    tx_ring_bytes = static_cast<size_t>(tx_block_size) * tx_block_count;
  } else {
    tx_messages_ = std::make_unique<mmsghdr[]>(kTxMessagesPerCall);
    tx_iovecs_ = std::make_unique<iovec[]>(kTxMessagesPerCall);
    std::memset(tx_messages_.get(), 0, sizeof(mmsghdr) * kTxMessagesPerCall);
    for (uint32_t i = 0; i < kTxMessagesPerCall; ++i) {
      tx_messages_[i].msg_hdr.msg_iov = &tx_iovecs_[i];
      tx_messages_[i].msg_hdr.msg_iovlen = 1;
    }
  }

  // One mapping for both rings (the kernel requires the exact total): RX blocks first, then TX slots.
  void* mapping = mmap(nullptr, ring_bytes_ + tx_ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (mapping == MAP_FAILED) return fail(error, "EPORT_RING", "mmap(packet ring)" + on, errno);
  ring_ = static_cast<uint8_t*>(mapping);
  if (tx_ring_bytes != 0) tx_ring_ = ring_ + ring_bytes_;
  ring_bytes_ += tx_ring_bytes;

  // Frames leaving this interface (ours, other workers', the host stack's)
  // are tapped as PACKET_OUTGOING unless ignored here (Linux 4.20). On older
  // kernels rx_burst drops them by sll_pkttype instead.
  kernel_ignores_outgoing_ = set_option(fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
  if (options.qdisc_bypass && !set_option(fd_, SOL_PACKET, PACKET_QDISC_BYPASS, 1)) {
    return fail(error, "EPORT_SOCKET", "setsockopt(PACKET_QDISC_BYPASS)" + on, errno);
  }
  // Queued transmit skbs are charged to the send buffer until the driver
  // frees them; the default (wmem_default, ~208 KiB) holds about a hundred
  // full-size frames. Best effort: SO_SNDBUFFORCE needs CAP_NET_ADMIN.
  const int send_buffer = static_cast<int>(std::min<size_t>(size_t{64} << 20, std::max<size_t>(tx_ring_bytes * 2, size_t{4} << 20)));
  (void)set_option(fd_, SOL_SOCKET, SO_SNDBUFFORCE, send_buffer);

  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ALL);
  address.sll_ifindex = ifindex_;
  if (bind(fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return fail(error, "EPORT_BIND", "bind(ETH_P_ALL)" + on, errno);
  }

  if (options.fanout_group != kNoFanout) {
    // PACKET_FANOUT_HASH spreads by the symmetric flow hash
    // (__skb_get_hash_symmetric): both directions of a 5-tuple reach the same
    // member. No PACKET_FANOUT_FLAG_DEFRAG: it hands the socket reassembled
    // datagrams larger than the MTU, which the balancer would then forward
    // as oversize frames; the core drops non-first fragments itself. No
    // ROLLOVER: moving flows to another member under load breaks affinity.
    // The socket must be bound (running) to join: between bind() and here
    // frames may arrive outside the group's spreading, at start-up only.
    const bool new_group = options.fanout_group == kFanoutNewGroup;
    const uint32_t id = new_group ? 0 : static_cast<uint32_t>(options.fanout_group);
    const uint32_t flags = new_group ? PACKET_FANOUT_FLAG_UNIQUEID : 0;
    uint32_t argument = id | ((PACKET_FANOUT_HASH | flags | kFanoutFlagIgnoreOutgoing) << 16);
    bool joined = set_option(fd_, SOL_PACKET, PACKET_FANOUT, argument);
    if (!joined && errno == EINVAL) {
      // Before Linux 6.2 the flag may be refused: join without it and rely on
      // the PACKET_OUTGOING check in rx_burst.
      argument = id | ((PACKET_FANOUT_HASH | flags) << 16);
      joined = set_option(fd_, SOL_PACKET, PACKET_FANOUT, argument);
      kernel_ignores_outgoing_ = false;
    }
    if (!joined) {
      return fail(error, "EPORT_FANOUT", "setsockopt(PACKET_FANOUT, group " +
                                             (new_group ? std::string("new") : std::to_string(id)) + ")" + on, errno);
    }
    if (new_group) {
      uint32_t value = 0;
      socklen_t length = sizeof(value);
      if (getsockopt(fd_, SOL_PACKET, PACKET_FANOUT, &value, &length) != 0) {
        return fail(error, "EPORT_FANOUT", "getsockopt(PACKET_FANOUT)" + on, errno);
      }
      fanout_group_ = static_cast<int32_t>(value & 0xffff);
    } else {
      fanout_group_ = options.fanout_group;
    }
  }
  return true;
}

uint32_t AfPacketPort::rx_burst(core::Frame* frames, uint32_t max) {
  // A TX ring kick that could not queue everything is retried here, where
  // the worker comes back every poll, so that queued frames do not wait for
  // the next transmit burst.
  if (tx_backlog_) [[unlikely]] kick_tx_ring();

  uint32_t count = 0;
  uint64_t bytes = 0;
  uint64_t skipped_outgoing = 0, truncated = 0, oversize = 0;
  while (count < max) {
    if (rx_packets_left_ == 0) {
      if (rx_block_open_) {
        rx_block_open_ = false;
        ++rx_blocks_consumed_;
        rx_block_index_ = rx_block_index_ + 1 == rx_block_count_ ? 0 : rx_block_index_ + 1;
      }
      if (rx_blocks_consumed_ == rx_block_count_) break;  // every block awaits rx_done
      auto* block = reinterpret_cast<tpacket_block_desc*>(rx_block(rx_block_index_));
      // Acquire pairs with the kernel's smp_wmb() before it stores
      // TP_STATUS_USER into a retired block (prb_close_block /
      // prb_flush_block): the frames and their headers are visible once the
      // status is.
      const uint32_t status = std::atomic_ref<uint32_t>(block->hdr.bh1.block_status).load(std::memory_order_acquire);
      if ((status & TP_STATUS_USER) == 0) break;
      rx_block_open_ = true;
      rx_packets_left_ = block->hdr.bh1.num_pkts;
      rx_next_packet_ = reinterpret_cast<uint8_t*>(block) + block->hdr.bh1.offset_to_first_pkt;
      continue;  // an empty block (none are retired empty today) closes on the next turn
    }

    auto* header = reinterpret_cast<tpacket3_hdr*>(rx_next_packet_);
    --rx_packets_left_;
    // tp_next_offset is 0 on the last frame of a block; it is not followed then.
    rx_next_packet_ += header->tp_next_offset;
    if (rx_packets_left_ != 0) __builtin_prefetch(rx_next_packet_);

    const auto* link = reinterpret_cast<const sockaddr_ll*>(reinterpret_cast<uint8_t*>(header) + kFrameHeaderLen);
    if (link->sll_pkttype == PACKET_OUTGOING) [[unlikely]] {
      ++skipped_outgoing;
      continue;
    }
    if (header->tp_snaplen != header->tp_len) [[unlikely]] {
      ++truncated;  // larger than a block: the kernel clamped it (pr_err_once "packet too big")
      continue;
    }

    uint8_t* data = reinterpret_cast<uint8_t*>(header) + header->tp_mac;
    uint32_t len = header->tp_snaplen;
    uint32_t headroom = header->tp_mac - kFrameMetadataLen;
    const uint32_t frame_status = header->tp_status;
    if (frame_status & TP_STATUS_VLAN_VALID) {
      // The kernel moved the tag into skb metadata before the tap
      // (skb_vlan_untag); the core reads tags in the frame, so put it back:
      // MAC addresses 4 bytes earlier, TPID + TCI in the gap. PACKET_RESERVE
      // guarantees the 4 bytes. TPID is the one received (802.1Q or .1ad).
      const uint16_t tpid =
          (frame_status & TP_STATUS_VLAN_TPID_VALID) ? header->hv1.tp_vlan_tpid : static_cast<uint16_t>(ETH_P_8021Q);
      const uint16_t tci = header->hv1.tp_vlan_tci;
      std::memmove(data - kVlanTagLen, data, kMacAddressesLen);
      data -= kVlanTagLen;
      len += kVlanTagLen;
      headroom -= kVlanTagLen;
      data[12] = static_cast<uint8_t>(tpid >> 8);
      data[13] = static_cast<uint8_t>(tpid);
      data[14] = static_cast<uint8_t>(tci >> 8);
      data[15] = static_cast<uint8_t>(tci);
    }
    if (len > max_frame_len_) [[unlikely]] ++oversize;

    core::Frame& frame = frames[count++];
    frame.data = data;
    frame.len = len;
    frame.headroom = headroom;
    // Up to the next frame's header (TPACKET_ALIGN slack), or the block end
    // for the last frame.
    const uint8_t* limit = rx_packets_left_ != 0
                               ? rx_next_packet_
                               : rx_block(rx_block_index_) + rx_block_size_;
    frame.tailroom = static_cast<uint32_t>(limit - (data + len));
    frame.flags = (frame_status & TP_STATUS_CSUMNOTREADY) ? core::kFrameChecksumPartial : 0;
    frame.ingress_port = 0;
    frame.egress_port = 0;
    bytes += len;
  }
  if (count != 0) {
    add(rx_packets_, count);
    add(rx_bytes_, bytes);
  }
  if (skipped_outgoing | truncated | oversize) [[unlikely]] {
    add(rx_outgoing_skipped_, skipped_outgoing);
    add(rx_truncated_, truncated);
    add(rx_oversize_, oversize);
  }
  return count;
}

void AfPacketPort::rx_done() {
  if (rx_block_open_ && rx_packets_left_ == 0) {
    rx_block_open_ = false;
    ++rx_blocks_consumed_;
    rx_block_index_ = rx_block_index_ + 1 == rx_block_count_ ? 0 : rx_block_index_ + 1;
  }
  // Blocks are returned whole: a block holds frames of this burst and maybe
  // of the next, so only the ones walked to the end go back.
  while (rx_blocks_consumed_ != 0) {
    auto* block = reinterpret_cast<tpacket_block_desc*>(rx_block(rx_release_index_));
    // Release: every read and write of the block's frames (the core rewrites
    // in place, tx_burst copied them out) happens before the kernel may
    // refill it; pairs with the kernel's read of TP_STATUS_KERNEL
    // (prb_dispatch_next_block / prb_queue_frozen).
    std::atomic_ref<uint32_t>(block->hdr.bh1.block_status).store(TP_STATUS_KERNEL, std::memory_order_release);
    rx_release_index_ = rx_release_index_ + 1 == rx_block_count_ ? 0 : rx_release_index_ + 1;
    --rx_blocks_consumed_;
  }
}

uint32_t AfPacketPort::tx_burst(const core::Frame* frames, uint32_t count) {
  return tx_method_ == TxMethod::ring ? tx_burst_ring(frames, count) : tx_burst_sendmmsg(frames, count);
}

uint32_t AfPacketPort::tx_burst_ring(const core::Frame* frames, uint32_t count) {
  uint32_t queued = 0;
  uint64_t bytes = 0;
  uint32_t dropped = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const core::Frame& frame = frames[i];
    // The kernel would discard these (PACKET_LOSS) without telling: count them here.
    if (!transmittable(frame, mtu_) || frame.len > tx_frame_size_ - kTxDataOffset) [[unlikely]] {
      ++dropped;
      continue;
    }
    uint8_t* slot = tx_slot(tx_head_);
    auto* header = reinterpret_cast<tpacket3_hdr*>(slot);
    std::atomic_ref<uint32_t> status(header->tp_status);
    // Acquire pairs with the kernel's store of TP_STATUS_AVAILABLE once the
    // skb built from this slot is gone (tpacket_destruct_skb ->
    // __packet_set_status, smp_wmb): our writes below cannot overtake it.
    if (status.load(std::memory_order_acquire) != TP_STATUS_AVAILABLE) {
      // The kernel has not sent the slot yet: the ring is full.
      dropped += count - i;
      break;
    }
    std::memcpy(slot + kTxDataOffset, frame.data, frame.len);
    header->tp_len = frame.len;
    header->tp_snaplen = frame.len;
    header->tp_next_offset = 0;  // V3 TX slots are fixed-size; anything else is refused
    // Release pairs with the kernel's smp_rmb() after it reads
    // TP_STATUS_SEND_REQUEST (__packet_get_status in tpacket_snd): it sees the
    // frame bytes and length written above.
    status.store(TP_STATUS_SEND_REQUEST, std::memory_order_release);
    tx_head_ = tx_head_ + 1 == tx_frame_count_ ? 0 : tx_head_ + 1;
    ++queued;
    bytes += frame.len;
  }
  if (queued != 0 || tx_backlog_) kick_tx_ring();
  add(tx_packets_, queued);
  add(tx_bytes_, bytes);
  if (dropped != 0) add(tx_dropped_, dropped);
  return queued;
}

void AfPacketPort::kick_tx_ring() {
  // MSG_DONTWAIT: tpacket_snd walks every TP_STATUS_SEND_REQUEST slot from its
  // head, hands each to the device, and returns without waiting for their
  // completion. It stops early when the send buffer is full or the device
  // drops (the slot goes back to SEND_REQUEST), and then still returns the
  // bytes sent so far: the return value does not say whether slots remain.
  add(tx_kicks_, 1);
  if (send(fd_, nullptr, 0, MSG_DONTWAIT) < 0) add(tx_kick_errors_, 1);
  // The kick is synchronous: if the last slot filled is still a request, the
  // kernel stopped before it and the queued slots wait for another kick.
  const uint32_t last = tx_head_ == 0 ? tx_frame_count_ - 1 : tx_head_ - 1;
  auto* header = reinterpret_cast<tpacket3_hdr*>(tx_slot(last));
  tx_backlog_ = std::atomic_ref<uint32_t>(header->tp_status).load(std::memory_order_acquire) == TP_STATUS_SEND_REQUEST;
}

uint32_t AfPacketPort::tx_burst_sendmmsg(const core::Frame* frames, uint32_t count) {
  uint32_t sent = 0;
  uint32_t dropped = 0;
  uint64_t bytes = 0;
  uint32_t next = 0;
  while (next < count) {
    uint32_t batch = 0;
    while (next < count && batch < kTxMessagesPerCall) {
      const core::Frame& frame = frames[next++];
      // A refused message would end the sendmmsg call and the rest of the batch with it.
      if (!transmittable(frame, mtu_)) [[unlikely]] {
        ++dropped;
        continue;
      }
      tx_iovecs_[batch].iov_base = frame.data;
      tx_iovecs_[batch].iov_len = frame.len;
      ++batch;
    }
    if (batch == 0) break;
    // The socket is bound to the interface: no destination address is needed.
    add(tx_kicks_, 1);
    const int result = sendmmsg(fd_, tx_messages_.get(), batch, MSG_DONTWAIT);
    // sendmmsg stops at the first message that fails and reports how many
    // went before it (or -1 if the first failed). Frames are pre-checked, so
    // a failure is the socket or device (send buffer full, link down): the
    // rest of the batch would fail too and is dropped, not retried one by one.
    const uint32_t accepted = result > 0 ? static_cast<uint32_t>(result) : 0;
    if (accepted < batch) add(tx_kick_errors_, 1);
    for (uint32_t i = 0; i < accepted; ++i) bytes += tx_iovecs_[i].iov_len;
    sent += accepted;
    dropped += batch - accepted;
  }
  add(tx_packets_, sent);
  add(tx_bytes_, bytes);
  if (dropped != 0) add(tx_dropped_, dropped);
  return sent;
}

PortCounters AfPacketPort::counters() const {
  PortCounters c;
  c.rx_packets = rx_packets_.load(std::memory_order_relaxed);
  c.rx_bytes = rx_bytes_.load(std::memory_order_relaxed);
  c.tx_packets = tx_packets_.load(std::memory_order_relaxed);
  c.tx_bytes = tx_bytes_.load(std::memory_order_relaxed);
  c.tx_dropped = tx_dropped_.load(std::memory_order_relaxed);
  tpacket_stats_v3 stats{};
  socklen_t length = sizeof(stats);
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &stats, &length) == 0) {
    // fetch_add, not load + store: two threads may read the statistics.
    c.kernel_drops = kernel_drops_.fetch_add(stats.tp_drops, std::memory_order_relaxed) + stats.tp_drops;
  } else {
    c.kernel_drops = kernel_drops_.load(std::memory_order_relaxed);
  }
  return c;
}

bool AfPacketPort::replace_filter(const std::vector<sock_filter>& filter, PortError* error) {
  if (filter.empty() || filter.size() > BPF_MAXINSNS) {
    error->code = "EPORT_FILTER";
    error->message = "replace_filter: a filter needs 1.." + std::to_string(BPF_MAXINSNS) + " instructions";
    error->error_number = 0;
    return false;
  }
  sock_fprog program{static_cast<unsigned short>(filter.size()), const_cast<sock_filter*>(filter.data())};
  if (setsockopt(fd_, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)) != 0) {
    const int saved = errno;
    error->code = "EPORT_FILTER";
    error->message = "setsockopt(SO_ATTACH_FILTER) on " + interface_ + ": " + std::strerror(saved);
    error->error_number = saved;
    return false;
  }
  return true;
}

AfPacketCounters AfPacketPort::driver_counters() const {
  AfPacketCounters c;
  c.rx_outgoing_skipped = rx_outgoing_skipped_.load(std::memory_order_relaxed);
  c.rx_truncated = rx_truncated_.load(std::memory_order_relaxed);
  c.rx_oversize = rx_oversize_.load(std::memory_order_relaxed);
  c.tx_kicks = tx_kicks_.load(std::memory_order_relaxed);
  c.tx_kick_errors = tx_kick_errors_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace l4lb::io

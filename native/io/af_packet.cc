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

#include "core/wire.h"

namespace l4lb::io {

namespace {

// struct virtio_net_hdr of <linux/virtio_net.h>, which C++ cannot include
// (a control structure there has a field named `class`). Its layout is
// kernel ABI: ten bytes, no padding.
struct virtio_net_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(virtio_net_hdr) == 10);
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV6 = 4;
constexpr uint8_t VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
constexpr uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

// Where the kernel puts things in a TPACKET_V2 slot (tpacket_rcv): the
// header, then struct sockaddr_ll, then PACKET_RESERVE, alignment slack and
// the virtio_net_hdr, then the MAC header at tp_mac. Everything from the end
// of sockaddr_ll to tp_mac is ours to overwrite once the virtio_net_hdr is
// read: that is the headroom a frame reports.
constexpr uint32_t kFrameHeaderLen = TPACKET_ALIGN(sizeof(tpacket2_hdr));
constexpr uint32_t kFrameMetadataLen = TPACKET2_HDRLEN;  // header + sockaddr_ll
constexpr uint32_t kVnetHeaderLen = sizeof(virtio_net_hdr);
// TX ring slots (no PACKET_TX_HAS_OFF): data starts at tp_hdrlen - sizeof(sockaddr_ll).
constexpr uint32_t kTxDataOffset = TPACKET2_HDRLEN - sizeof(sockaddr_ll);
constexpr uint32_t kEthernetHeaderLen = core::wire::kEthHeaderLen;
constexpr uint32_t kVlanTagLen = core::wire::kVlanTagLen;
constexpr uint32_t kMacAddressesLen = core::wire::kEthType;  // destination and source
constexpr uint32_t kMaxHeadroom = 4096;
constexpr uint32_t kMinFrameSize = 2048;
// The largest aggregate the kernel builds without BIG TCP (gso_max_size's
// default, 64 KiB) plus an Ethernet header and a tag; longer is truncated.
constexpr uint32_t kMaxAggregateLen = 65536 + kEthernetHeaderLen + kVlanTagLen;
// Receive ring blocks: the kernel allocates each block as one piece; 64 KiB
// (order 4) is easy to find and holds 32 slots of 2 KiB.
constexpr uint32_t kRxBlockSize = 1u << 16;
// Whole copies of aggregates wait on the socket's receive queue, charged to
// its receive buffer (truesize ~ 70 KiB each); the default (~208 KiB) would
// hold three. Best effort: SO_RCVBUFFORCE needs CAP_NET_ADMIN.
constexpr int kAggregateQueueBytes = 32 << 20;
// sendmmsg: frames per call. More go in further calls of this size.
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
// Aggregates (the kernel segments them) are bounded by the skb instead.
bool transmittable(const core::Frame& frame, uint32_t mtu) {
  if (frame.len < kEthernetHeaderLen) return false;
  if (frame.is_aggregate()) return frame.len <= kMaxAggregateLen;
  const bool tagged = frame.data[12] == 0x81 && frame.data[13] == 0x00;
  return frame.len <= mtu + kEthernetHeaderLen + (tagged ? kVlanTagLen : 0);
}

// Bytes of PACKET_RESERVE, alignment and virtio_net_hdr the kernel puts
// before the MAC header of a frame in a slot (tpacket_rcv's macoff for an
// Ethernet header), so that slots can be sized for the MTU.
uint32_t mac_offset_in_slot(uint32_t headroom) {
  return TPACKET_ALIGN(kFrameMetadataLen + 16) + headroom + kVnetHeaderLen - kEthernetHeaderLen;
}

// virtio_net_hdr fields are in the host's byte order here (vio_le(): little
// endian on every architecture l4lb builds for, as on the kernel's side).
void frame_meta_from_vnet(const virtio_net_hdr& vnet, core::Frame* frame) {
  if (vnet.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    frame->flags |= core::kFrameChecksumPartial;
    frame->csum_start = vnet.csum_start;
    frame->csum_offset = vnet.csum_offset;
  }
  switch (vnet.gso_type & static_cast<uint8_t>(~VIRTIO_NET_HDR_GSO_ECN)) {
    case VIRTIO_NET_HDR_GSO_TCPV4: frame->gso_type = core::GsoType::tcp4; break;
    case VIRTIO_NET_HDR_GSO_TCPV6: frame->gso_type = core::GsoType::tcp6; break;
    case VIRTIO_NET_HDR_GSO_UDP_L4: frame->gso_type = core::GsoType::udp; break;
    default: frame->gso_type = core::GsoType::none; break;
  }
  if (frame->gso_type != core::GsoType::none) {
    frame->gso_size = vnet.gso_size;
    frame->header_len = vnet.hdr_len;
    frame->gso_ecn = (vnet.gso_type & VIRTIO_NET_HDR_GSO_ECN) != 0;
    if (frame->gso_size == 0) frame->gso_type = core::GsoType::none;
  }
}

void vnet_from_frame_meta(const core::Frame& frame, virtio_net_hdr* vnet) {
  std::memset(vnet, 0, sizeof(*vnet));
  if (frame.flags & core::kFrameChecksumPartial) {
    vnet->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vnet->csum_start = frame.csum_start;
    vnet->csum_offset = frame.csum_offset;
  }
  if (frame.is_aggregate()) {
    switch (frame.gso_type) {
      case core::GsoType::tcp4: vnet->gso_type = VIRTIO_NET_HDR_GSO_TCPV4; break;
      case core::GsoType::tcp6: vnet->gso_type = VIRTIO_NET_HDR_GSO_TCPV6; break;
      case core::GsoType::udp: vnet->gso_type = VIRTIO_NET_HDR_GSO_UDP_L4; break;
      case core::GsoType::none: break;
    }
    if (frame.gso_ecn) vnet->gso_type |= VIRTIO_NET_HDR_GSO_ECN;
    vnet->gso_size = frame.gso_size;
    vnet->hdr_len = frame.header_len;
  }
}

// Puts back in place a VLAN tag the kernel moved into skb metadata before
// the tap (skb_vlan_untag): the core reads tags in the frame. The MAC
// addresses move 4 bytes into the headroom, TPID + TCI fill the gap.
void reinsert_vlan_tag(core::Frame* frame, uint16_t tpid, uint16_t tci) {
  std::memmove(frame->data - kVlanTagLen, frame->data, kMacAddressesLen);
  frame->data -= kVlanTagLen;
  frame->len += kVlanTagLen;
  frame->headroom -= kVlanTagLen;
  frame->data[12] = static_cast<uint8_t>(tpid >> 8);
  frame->data[13] = static_cast<uint8_t>(tpid);
  frame->data[14] = static_cast<uint8_t>(tci >> 8);
  frame->data[15] = static_cast<uint8_t>(tci);
  if (frame->flags & core::kFrameChecksumPartial) frame->csum_start = static_cast<uint16_t>(frame->csum_start + kVlanTagLen);
  if (frame->is_aggregate()) frame->header_len = static_cast<uint16_t>(frame->header_len + kVlanTagLen);
}

}  // namespace

// A buffer for a frame read with recvmsg: headroom, then up to the largest
// aggregate.
struct AfPacketPort::AggregateBuffer {
  static constexpr uint32_t kCapacity = kMaxAggregateLen + kVlanTagLen;
  uint32_t headroom = 0;
  std::unique_ptr<uint8_t[]> bytes;
};

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
  if (options.rx_frame_count == 0) return fail(error, "EPORT_OPTIONS", "rx_frame_count must be at least 1" + on, 0);
  if (options.headroom > kMaxHeadroom) {
    return fail(error, "EPORT_OPTIONS", "headroom must be at most " + std::to_string(kMaxHeadroom) + on, 0);
  }
  if (options.rx_frame_size != 0 &&
      (!is_power_of_two(options.rx_frame_size) || options.rx_frame_size < mac_offset_in_slot(options.headroom) + 64)) {
    return fail(error, "EPORT_OPTIONS", "rx_frame_size " + std::to_string(options.rx_frame_size) +
                                            " must be a power of two with room for the headers and a minimal frame" + on,
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
  if (!set_option(fd_, SOL_PACKET, PACKET_VERSION, static_cast<int>(TPACKET_V2))) {
    return fail(error, "EPORT_RING", "setsockopt(PACKET_VERSION, TPACKET_V2)" + on, errno);
  }
  // PACKET_RESERVE is added between sockaddr_ll and the MAC header of every
  // received frame; it must be set before the ring exists (EBUSY after), as
  // must PACKET_VNET_HDR.
  if (!set_option(fd_, SOL_PACKET, PACKET_RESERVE, static_cast<unsigned int>(options.headroom))) {
    return fail(error, "EPORT_RING", "setsockopt(PACKET_RESERVE)" + on, errno);
  }
  // A virtio_net_hdr before every frame, both ways: the GSO type and size of
  // an aggregate and the checksum offsets of a CHECKSUM_PARTIAL frame come
  // in, and go out so that the kernel segments and checksums on transmit.
  if (!set_option(fd_, SOL_PACKET, PACKET_VNET_HDR, 1)) {
    return fail(error, "EPORT_SOCKET", "setsockopt(PACKET_VNET_HDR)" + on, errno);
  }
  // Frames longer than a slot: a whole copy is queued on the socket as well,
  // flagged TP_STATUS_COPY in the slot (any nonzero threshold enables it).
  if (!set_option(fd_, SOL_PACKET, PACKET_COPY_THRESH, 1)) {
    return fail(error, "EPORT_SOCKET", "setsockopt(PACKET_COPY_THRESH)" + on, errno);
  }
  // The VLAN tag and checksum state of those copies come as ancillary data.
  if (!set_option(fd_, SOL_PACKET, PACKET_AUXDATA, 1)) {
    return fail(error, "EPORT_SOCKET", "setsockopt(PACKET_AUXDATA)" + on, errno);
  }
  (void)set_option(fd_, SOL_SOCKET, SO_RCVBUFFORCE, kAggregateQueueBytes);
  if (options.tx_method == TxMethod::ring) {
    // Without PACKET_LOSS a malformed TX slot stops the ring (it stays
    // TP_STATUS_WRONG_FORMAT and every later kick fails on it); with it the
    // kernel discards the slot and goes on. Also EBUSY once a ring exists.
    if (!set_option(fd_, SOL_PACKET, PACKET_LOSS, 1)) {
      return fail(error, "EPORT_RING", "setsockopt(PACKET_LOSS)" + on, errno);
    }
  }

  // Slots: a frame of the MTU (tag included) behind the kernel's headers.
  rx_frame_size_ = options.rx_frame_size != 0
                       ? options.rx_frame_size
                       : std::max(kMinFrameSize, round_up_power_of_two(mac_offset_in_slot(options.headroom) + max_frame_len_));
  // A small ring is one block of exactly its slots (tests); a large one
  // blocks of 64 KiB.
  const uint32_t ring_in_pages = static_cast<uint32_t>(
      (static_cast<uint64_t>(options.rx_frame_count) * rx_frame_size_ + page_size - 1) / page_size * page_size);
  const uint32_t block_size = std::max({static_cast<uint32_t>(page_size), std::min(kRxBlockSize, ring_in_pages), rx_frame_size_});
  const uint32_t frames_per_block = block_size / rx_frame_size_;
  const uint32_t block_count = (options.rx_frame_count + frames_per_block - 1) / frames_per_block;
  tpacket_req rx_request{};
  rx_request.tp_block_size = block_size;
  rx_request.tp_block_nr = block_count;
  rx_request.tp_frame_size = rx_frame_size_;
  rx_request.tp_frame_nr = block_count * frames_per_block;
  if (!set_option(fd_, SOL_PACKET, PACKET_RX_RING, rx_request)) {
    return fail(error, "EPORT_RING", "setsockopt(PACKET_RX_RING, " + std::to_string(rx_request.tp_frame_nr) + " x " +
                                         std::to_string(rx_frame_size_) + " bytes)" + on, errno);
  }
  rx_frame_count_ = rx_request.tp_frame_nr;
  rx_held_.assign(rx_frame_count_, 0);
  ring_bytes_ = static_cast<size_t>(block_size) * block_count;

  size_t tx_ring_bytes = 0;
  if (options.tx_method == TxMethod::ring) {
    // Fixed-size V2 TX slots: the virtio_net_hdr, then the frame. A
    // power-of-two slot and a block of max(page, slot) keep the slots
    // contiguous across blocks.
    tx_frame_size_ = options.tx_frame_size != 0
                         ? options.tx_frame_size
                         : std::max(kMinFrameSize, round_up_power_of_two(kTxDataOffset + kVnetHeaderLen + max_frame_len_));
    if (!is_power_of_two(tx_frame_size_) || tx_frame_size_ < kTxDataOffset + kVnetHeaderLen + kEthernetHeaderLen) {
      return fail(error, "EPORT_OPTIONS", "tx_frame_size must be a power of two of at least 64" + on, 0);
    }
    const uint32_t tx_block_size = std::max(static_cast<uint32_t>(page_size), tx_frame_size_);
    const uint32_t tx_frames_per_block = tx_block_size / tx_frame_size_;
    const uint32_t tx_block_count = (options.tx_frame_count + tx_frames_per_block - 1) / tx_frames_per_block;
    tpacket_req tx_request{};
    tx_request.tp_block_size = tx_block_size;
    tx_request.tp_block_nr = tx_block_count;
    tx_request.tp_frame_size = tx_frame_size_;
    tx_request.tp_frame_nr = tx_block_count * tx_frames_per_block;
    if (!set_option(fd_, SOL_PACKET, PACKET_TX_RING, tx_request)) {
      return fail(error, "EPORT_RING", "setsockopt(PACKET_TX_RING)" + on, errno);
    }
    tx_frame_count_ = tx_request.tp_frame_nr;
    tx_ring_bytes = static_cast<size_t>(tx_block_size) * tx_block_count;
  } else {
    tx_messages_ = std::make_unique<mmsghdr[]>(kTxMessagesPerCall);
    tx_iovecs_ = std::make_unique<iovec[]>(2 * kTxMessagesPerCall);
    tx_vnet_headers_ = std::make_unique<uint8_t[]>(kVnetHeaderLen * kTxMessagesPerCall);
    std::memset(tx_messages_.get(), 0, sizeof(mmsghdr) * kTxMessagesPerCall);
    for (uint32_t i = 0; i < kTxMessagesPerCall; ++i) {
      tx_iovecs_[2 * i].iov_base = tx_vnet_headers_.get() + kVnetHeaderLen * i;
      tx_iovecs_[2 * i].iov_len = kVnetHeaderLen;
      tx_messages_[i].msg_hdr.msg_iov = &tx_iovecs_[2 * i];
      tx_messages_[i].msg_hdr.msg_iovlen = 2;
    }
  }

  // One mapping for both rings (the kernel requires the exact total): RX slots first, then TX slots.
  void* mapping = mmap(nullptr, ring_bytes_ + tx_ring_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (mapping == MAP_FAILED) return fail(error, "EPORT_RING", "mmap(packet ring)" + on, errno);
  ring_ = static_cast<uint8_t*>(mapping);
  if (tx_ring_bytes != 0) tx_ring_ = ring_ + ring_bytes_;
  ring_bytes_ += tx_ring_bytes;

  for (uint32_t i = 0; i < options.aggregate_buffers; ++i) {
    auto buffer = std::make_unique<AggregateBuffer>();
    buffer->headroom = std::max<uint32_t>(options.headroom, 64);
    buffer->bytes = std::make_unique<uint8_t[]>(buffer->headroom + AggregateBuffer::kCapacity);
    aggregates_.push_back(std::move(buffer));
    free_aggregates_.push_back(i);
  }

  // Frames leaving this interface (ours, other workers', the host stack's)
  // are tapped as PACKET_OUTGOING unless ignored here (Linux 4.20). On older
  // kernels rx_burst drops them by sll_pkttype instead.
  kernel_ignores_outgoing_ = set_option(fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
  if (options.qdisc_bypass && !set_option(fd_, SOL_PACKET, PACKET_QDISC_BYPASS, 1)) {
    return fail(error, "EPORT_SOCKET", "setsockopt(PACKET_QDISC_BYPASS)" + on, errno);
  }
  // Queued transmit skbs are charged to the send buffer until the driver
  // frees them; the default (wmem_default, ~208 KiB) holds about a hundred
  // full-size frames, or three aggregates. Best effort: SO_SNDBUFFORCE needs
  // CAP_NET_ADMIN.
  const int send_buffer = static_cast<int>(std::min<size_t>(size_t{64} << 20, std::max<size_t>(tx_ring_bytes * 2, size_t{8} << 20)));
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

PortCapabilities AfPacketPort::capabilities() const {
  PortCapabilities c;
  // The TX ring's slots hold one MTU frame and its virtio_net_hdr is left
  // empty: the core completes checksums and cuts aggregates for it.
  c.checksum_offload = tx_method_ == TxMethod::sendmmsg;
  c.segmentation_offload = tx_method_ == TxMethod::sendmmsg;
  c.receives_aggregates = true;
  return c;
}

void AfPacketPort::release_slot(uint32_t slot) {
  rx_held_[slot] = 0;
  auto* header = reinterpret_cast<tpacket2_hdr*>(rx_slot(slot));
  // Release: every read and write of the slot's frame (the core rewrites in
  // place, tx_burst copied it out) happens before the kernel may refill it;
  // pairs with the kernel's read of TP_STATUS_KERNEL (packet_current_rx_frame
  // -> __packet_get_status, smp_rmb).
  std::atomic_ref<uint32_t>(header->tp_status).store(TP_STATUS_KERNEL, std::memory_order_release);
}

void AfPacketPort::release(core::Frame* frames, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t handle = frames[i].handle;
    if (handle < rx_frame_count_) {
      release_slot(static_cast<uint32_t>(handle));
    } else {
      free_aggregates_.push_back(static_cast<uint32_t>(handle - rx_frame_count_));
    }
  }
}

// The whole copy of a frame longer than a slot, from the socket's receive
// queue: the n-th TP_STATUS_COPY slot's frame is the n-th queued one (the
// kernel queues it under the ring's lock, and frees it when the slot could
// not be had).
bool AfPacketPort::read_aggregate(core::Frame* frame) {
  const uint32_t index = free_aggregates_.back();
  AggregateBuffer& buffer = *aggregates_[index];
  virtio_net_hdr vnet{};
  iovec parts[2] = {{&vnet, kVnetHeaderLen}, {buffer.bytes.get() + buffer.headroom, AggregateBuffer::kCapacity}};
  alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(tpacket_auxdata))];
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = 2;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  const ssize_t received = recvmsg(fd_, &message, MSG_DONTWAIT);
  if (received < static_cast<ssize_t>(kVnetHeaderLen + kEthernetHeaderLen) || (message.msg_flags & MSG_TRUNC)) {
    return false;
  }
  *frame = core::make_frame(buffer.bytes.get() + buffer.headroom, static_cast<uint32_t>(received) - kVnetHeaderLen,
                            buffer.headroom, 0);
  frame->tailroom = AggregateBuffer::kCapacity - frame->len;
  frame_meta_from_vnet(vnet, frame);
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
    tpacket_auxdata aux;
    std::memcpy(&aux, CMSG_DATA(c), sizeof(aux));
    if (aux.tp_status & TP_STATUS_CSUMNOTREADY) frame->flags |= core::kFrameChecksumPartial;
    if (aux.tp_status & TP_STATUS_VLAN_VALID) {
      const uint16_t tpid = (aux.tp_status & TP_STATUS_VLAN_TPID_VALID) ? aux.tp_vlan_tpid : static_cast<uint16_t>(ETH_P_8021Q);
      reinsert_vlan_tag(frame, tpid, aux.tp_vlan_tci);
    }
  }
  frame->owner = this;
  frame->handle = rx_frame_count_ + index;
  free_aggregates_.pop_back();
  return true;
}

uint32_t AfPacketPort::rx_burst(core::Frame* frames, uint32_t max) {
  // A TX ring kick that could not queue everything is retried here, where
  // the worker comes back every poll, so that queued frames do not wait for
  // the next transmit burst.
  if (tx_backlog_) [[unlikely]] kick_tx_ring();

  uint32_t count = 0;
  uint64_t bytes = 0;
  uint64_t skipped_outgoing = 0, truncated = 0, aggregates = 0;
  while (count < max) {
    const uint32_t slot = rx_next_;
    // Held by the caller since the ring last came round: its status still
    // says user, but it holds no new frame.
    if (rx_held_[slot]) break;
    auto* header = reinterpret_cast<tpacket2_hdr*>(rx_slot(slot));
    // Acquire pairs with the kernel's smp_wmb() before it stores
    // TP_STATUS_USER (__packet_set_status in tpacket_rcv): the frame and its
    // header are visible once the status is.
    const uint32_t status = std::atomic_ref<uint32_t>(header->tp_status).load(std::memory_order_acquire);
    if ((status & TP_STATUS_USER) == 0) break;
    if ((status & TP_STATUS_COPY) && free_aggregates_.empty()) [[unlikely]] break;  // resumes once buffers return
    rx_next_ = rx_next_ + 1 == rx_frame_count_ ? 0 : rx_next_ + 1;
    const uint32_t next = rx_next_;
    __builtin_prefetch(rx_slot(next));

    const auto* link = reinterpret_cast<const sockaddr_ll*>(reinterpret_cast<uint8_t*>(header) + kFrameHeaderLen);
    if (link->sll_pkttype == PACKET_OUTGOING) [[unlikely]] {
      if (status & TP_STATUS_COPY) {
        core::Frame discarded;
        if (read_aggregate(&discarded)) release(&discarded, 1);
      }
      ++skipped_outgoing;
      release_slot(slot);
      continue;
    }
    core::Frame& frame = frames[count];
    if (status & TP_STATUS_COPY) [[unlikely]] {
      // Longer than a slot: the slot holds its head only; the whole frame waits on the socket.
      const bool whole = read_aggregate(&frame);
      release_slot(slot);
      if (!whole) {
        ++truncated;
        continue;
      }
    } else if (header->tp_snaplen != header->tp_len) [[unlikely]] {
      ++truncated;  // longer than a slot and no copy could be queued (receive buffer full)
      release_slot(slot);
      continue;
    } else {
      uint8_t* data = reinterpret_cast<uint8_t*>(header) + header->tp_mac;
      frame = core::make_frame(data, header->tp_snaplen, header->tp_mac - kFrameMetadataLen,
                               rx_frame_size_ - header->tp_mac - header->tp_snaplen);
      virtio_net_hdr vnet;
      std::memcpy(&vnet, data - kVnetHeaderLen, kVnetHeaderLen);
      frame_meta_from_vnet(vnet, &frame);
      if (status & TP_STATUS_CSUMNOTREADY) frame.flags |= core::kFrameChecksumPartial;
      if (status & TP_STATUS_VLAN_VALID) {
        const uint16_t tpid =
            (status & TP_STATUS_VLAN_TPID_VALID) ? header->tp_vlan_tpid : static_cast<uint16_t>(ETH_P_8021Q);
        reinsert_vlan_tag(&frame, tpid, header->tp_vlan_tci);
      }
      frame.owner = this;
      frame.handle = slot;
      rx_held_[slot] = 1;
    }
    if (frame.is_aggregate()) ++aggregates;
    bytes += frame.len;
    ++count;
  }
  if (count != 0) {
    counters_.received(count, bytes);
  }
  if (skipped_outgoing | truncated | aggregates) [[unlikely]] {
    add(rx_outgoing_skipped_, skipped_outgoing);
    add(rx_truncated_, truncated);
    add(rx_aggregates_, aggregates);
  }
  return count;
}

TxResult AfPacketPort::tx_burst(core::Frame* frames, uint32_t count) {
  return tx_method_ == TxMethod::ring ? tx_burst_ring(frames, count) : tx_burst_sendmmsg(frames, count);
}

TxResult AfPacketPort::tx_burst_ring(core::Frame* frames, uint32_t count) {
  uint32_t queued = 0;
  uint64_t bytes = 0;
  uint32_t dropped = 0;
  for (uint32_t i = 0; i < count; ++i) {
    core::Frame& frame = frames[i];
    // The kernel would discard these (PACKET_LOSS) without telling: count them here.
    if (frame.is_aggregate() || !transmittable(frame, mtu_) ||
        frame.len > tx_frame_size_ - kTxDataOffset - kVnetHeaderLen) [[unlikely]] {
      ++dropped;
      core::release_frames(&frame, 1);
      continue;
    }
    uint8_t* slot = tx_slot(tx_head_);
    auto* header = reinterpret_cast<tpacket2_hdr*>(slot);
    std::atomic_ref<uint32_t> status(header->tp_status);
    // Acquire pairs with the kernel's store of TP_STATUS_AVAILABLE once the
    // skb built from this slot is gone (tpacket_destruct_skb ->
    // __packet_set_status, smp_wmb): our writes below cannot overtake it.
    if (status.load(std::memory_order_acquire) != TP_STATUS_AVAILABLE) {
      // The kernel has not sent the slot yet: the ring is full; this frame
      // and the rest are dropped.
      dropped += count - i;
      core::release_frames(frames + i, count - i);
      break;
    }
    virtio_net_hdr vnet;
    vnet_from_frame_meta(frame, &vnet);  // no offload: all zero (the core completed the frame)
    std::memcpy(slot + kTxDataOffset, &vnet, kVnetHeaderLen);
    std::memcpy(slot + kTxDataOffset + kVnetHeaderLen, frame.data, frame.len);
    header->tp_len = kVnetHeaderLen + frame.len;
    header->tp_snaplen = kVnetHeaderLen + frame.len;
    // Release pairs with the kernel's smp_rmb() after it reads
    // TP_STATUS_SEND_REQUEST (__packet_get_status in tpacket_snd): it sees the
    // frame bytes and length written above.
    status.store(TP_STATUS_SEND_REQUEST, std::memory_order_release);
    tx_head_ = tx_head_ + 1 == tx_frame_count_ ? 0 : tx_head_ + 1;
    ++queued;
    bytes += frame.len;
    core::release_frames(&frame, 1);  // copied into the slot
  }
  if (queued != 0 || tx_backlog_) kick_tx_ring();
  counters_.sent(queued, bytes);
  counters_.dropped(dropped);
  return {queued, bytes};
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
  auto* header = reinterpret_cast<tpacket2_hdr*>(tx_slot(last));
  tx_backlog_ = std::atomic_ref<uint32_t>(header->tp_status).load(std::memory_order_acquire) == TP_STATUS_SEND_REQUEST;
}

TxResult AfPacketPort::tx_burst_sendmmsg(core::Frame* frames, uint32_t count) {
  uint32_t sent = 0;
  uint32_t dropped = 0;
  uint64_t bytes = 0;
  uint32_t next = 0;
  while (next < count) {
    const uint32_t batch_start = next;
    uint32_t batch = 0;
    while (next < count && batch < kTxMessagesPerCall) {
      core::Frame& frame = frames[next++];
      // A refused message would end the sendmmsg call and the rest of the batch with it.
      if (!transmittable(frame, mtu_)) [[unlikely]] {
        ++dropped;
        continue;
      }
      vnet_from_frame_meta(frame, reinterpret_cast<virtio_net_hdr*>(tx_vnet_headers_.get() + kVnetHeaderLen * batch));
      tx_iovecs_[2 * batch + 1].iov_base = frame.data;
      tx_iovecs_[2 * batch + 1].iov_len = frame.len;
      ++batch;
    }
    if (batch != 0) {
      // The socket is bound to the interface: no destination address is needed.
      add(tx_kicks_, 1);
      const int result = sendmmsg(fd_, tx_messages_.get(), batch, MSG_DONTWAIT);
      // sendmmsg stops at the first message that fails and reports how many
      // went before it (or -1 if the first failed). Frames are pre-checked, so
      // a failure is the socket or device (send buffer full, link down): the
      // rest of the batch would fail too and is dropped, not retried one by one.
      const uint32_t accepted = result > 0 ? static_cast<uint32_t>(result) : 0;
      if (accepted < batch) add(tx_kick_errors_, 1);
      for (uint32_t i = 0; i < accepted; ++i) bytes += tx_iovecs_[2 * i + 1].iov_len;
      sent += accepted;
      dropped += batch - accepted;
    }
    // The kernel copied what it took; every frame of the batch goes back to
    // its owner now (sent or not: a send failure is final here).
    core::release_frames(frames + batch_start, next - batch_start);
  }
  counters_.sent(sent, bytes);
  counters_.dropped(dropped);
  return {sent, bytes};
}

PortCounters AfPacketPort::counters() const {
  PortCounters c = counters_.snapshot();
  tpacket_stats stats{};
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
  c.rx_aggregates = rx_aggregates_.load(std::memory_order_relaxed);
  c.tx_kicks = tx_kicks_.load(std::memory_order_relaxed);
  c.tx_kick_errors = tx_kick_errors_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace l4lb::io

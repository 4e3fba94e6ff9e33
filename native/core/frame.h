// The unit of work of the packet core: one Ethernet frame in a buffer owned by
// a port's buffer pool (or by whoever created it), processed in place.
#pragma once

#include <cstdint>

namespace l4lb::core {

// Frame::flags
inline constexpr uint32_t kFrameChecksumPartial = 1u << 0;  // transport checksum holds only the
                                                            // pseudo-header sum (CHECKSUM_PARTIAL
                                                            // from a local stack; AF_PACKET reports
                                                            // TP_STATUS_CSUMNOTREADY or a
                                                            // virtio_net_hdr NEEDS_CSUM)

// Frame::gso_type: what kind of aggregate a frame is, as virtio_net_hdr
// names it (a local TCP stack on veth, or GRO on a NIC, hands a packet socket
// up to 64 KiB of one TCP stream as one frame; the kernel cuts it into
// gso_size segments on the way out, or the core does).
enum class GsoType : uint8_t {
  none = 0,
  tcp4 = 1,  // VIRTIO_NET_HDR_GSO_TCPV4
  tcp6 = 2,  // VIRTIO_NET_HDR_GSO_TCPV6
  udp = 3,   // VIRTIO_NET_HDR_GSO_UDP_L4 (UDP_SEGMENT: each segment a datagram)
};

struct Frame;

// Gives buffers back. Every frame a port receives names the owner of its
// buffer; the owner's thread (the worker) is the only caller. A frame whose
// owner is null belongs to its creator (frames the core builds in its scratch
// area, a generator's templates): a port that sends it copies it before
// tx_burst returns, and nobody releases it.
class FrameOwner {
 public:
  virtual void release(Frame* frames, uint32_t count) = 0;

 protected:
  ~FrameOwner() = default;
};

// `data` points at the first byte of the Ethernet header. The owner
// guarantees that `headroom` bytes before `data` and `tailroom` bytes after
// `data + len` are writable, so that tunnel encapsulation can prepend headers
// in place.
struct Frame {
  uint8_t* data;
  uint32_t len;
  uint32_t headroom;
  uint32_t tailroom;
  uint32_t flags;          // kFrame* bits
  uint16_t ingress_port;   // index of the port the frame arrived on
  uint16_t egress_port;    // set by the core for frames it sends
  // Offload metadata (virtio_net_hdr's meaning). With kFrameChecksumPartial:
  // the checksum over data[csum_start..len) goes to data[csum_start +
  // csum_offset]. With gso_type != none: the frame is an aggregate whose L4
  // payload is cut into segments of gso_size bytes, each behind a copy of
  // the first `header_len` bytes. The core keeps these true as it rewrites;
  // a port transmits them, or the core segments first when the port cannot.
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t gso_size;
  uint16_t header_len;
  GsoType gso_type;
  bool gso_ecn;            // VIRTIO_NET_HDR_GSO_ECN: the stream uses ECN (CWR handled per segment)
  uint8_t pad[6];
  FrameOwner* owner;       // who gets the buffer back; null: the creator keeps it
  uint64_t handle;         // the owner's name for the buffer (a ring slot, a UMEM address)

  bool is_aggregate() const { return gso_type != GsoType::none; }
};
static_assert(sizeof(Frame) == 64, "a frame descriptor is one cache line");

// Frame descriptors as ports hand them out, with the offload fields clear.
inline Frame make_frame(uint8_t* data, uint32_t len, uint32_t headroom, uint32_t tailroom) {
  Frame frame{};
  frame.data = data;
  frame.len = len;
  frame.headroom = headroom;
  frame.tailroom = tailroom;
  return frame;
}

// Releases frames to their owners, one call per run of frames with the same
// owner (a burst usually has one).
inline void release_frames(Frame* frames, uint32_t count) {
  uint32_t start = 0;
  while (start < count) {
    FrameOwner* owner = frames[start].owner;
    uint32_t end = start + 1;
    while (end < count && frames[end].owner == owner) ++end;
    if (owner != nullptr) owner->release(frames + start, end - start);
    start = end;
  }
}

}  // namespace l4lb::core

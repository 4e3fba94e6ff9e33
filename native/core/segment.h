// Segmentation offload done in software, and the checksum state an aggregate
// leaves with.
//
// A local TCP stack on veth, or GRO on a NIC, hands a packet socket one frame
// holding up to 64 KiB of a TCP stream (Frame::gso_type/gso_size say so). A
// port that can pass the metadata on (AF_PACKET with PACKET_VNET_HDR) lets
// the kernel cut it on the way out; when the port cannot, or when the cut
// segments would not fit the egress link (a tunnel adds its header to each),
// the core cuts it here, as the kernel's tcp_gso_segment would: the headers
// copied in front of every payload slice, IPv4 total length, identification
// and checksum per segment, TCP sequence numbers advanced, FIN and PSH only on
// the last segment, CWR only on the first, full TCP/UDP checksums.
#pragma once

#include <cstdint>

#include "core/frame.h"
#include "core/parse.h"

namespace l4lb::core {

// Where segments are written: next() returns a buffer for one segment with
// `headroom` writable bytes before it (tunnel headers), or nullptr when none
// is left (segmentation stops there; the caller counts the loss).
class SegmentBuffers {
 public:
  virtual uint8_t* next(uint32_t* capacity, uint32_t* headroom) = 0;

 protected:
  ~SegmentBuffers() = default;
};

// Bytes of the IP and TCP/UDP headers (options included) that every segment
// of an aggregate repeats.
uint32_t ip_and_l4_header_len(const uint8_t* frame, const PacketInfo& info);

// Payload bytes per segment so that a segment of an aggregate whose headers
// (Ethernet excluded) take `ip_and_l4_header_len` bytes fits `mtu` after
// `overhead` more bytes of encapsulation: at most the aggregate's gso_size.
uint32_t segment_payload_for_mtu(const Frame& aggregate, uint32_t ip_and_l4_header_len, uint32_t mtu,
                                 uint32_t overhead);

// Cuts an IPv4 TCP (tcp4) or UDP (udp, each segment a datagram of its own)
// aggregate into segments carrying at most `payload_per_segment` bytes of L4
// payload each. Writes up to `max_segments` frames into `out` (data, len,
// headroom, tailroom, ingress_port set; no owner: the buffers are the
// caller's) and returns how many. 0 when the frame is not such an aggregate
// or parsing (info) disagrees with it; fewer than needed when buffers ran
// out. Checksums: IPv4 and TCP/UDP complete, whatever the aggregate carried.
uint32_t segment_aggregate(const Frame& aggregate, const PacketInfo& info, uint32_t payload_per_segment,
                           SegmentBuffers& buffers, Frame* out, uint32_t max_segments);

// How many segments an aggregate makes with `payload_per_segment` bytes of
// payload each (0: its own gso_size, what counters count as packets); 1 for
// a frame that is not one.
uint32_t segment_count(const Frame& frame, const PacketInfo& info, uint32_t payload_per_segment = 0);

// Prepares an aggregate to leave with its metadata: the TCP/UDP checksum field
// gets the pseudo-header sum of the final addresses and the whole L4 length
// (what the kernel's tcp_gso_segment adjusts per segment), csum_start /
// csum_offset point at it, header_len covers the headers, kFrameChecksumPartial
// is set. Whatever the rewrites did to the field before does not matter.
void prepare_aggregate_for_offload(Frame* frame, const PacketInfo& info);

}  // namespace l4lb::core

// Frames received without the kernel's checksum state (AF_XDP, and DPDK's
// net_af_xdp and net_af_packet vdevs): one whose TCP/UDP checksum field holds
// only the pseudo-header sum is marked for the core to complete.
#pragma once

#include <cstdint>

#include "core/frame.h"

namespace l4lb::io {

namespace partial_checksum_detail {
inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
}  // namespace partial_checksum_detail

// XDP (and AF_PACKET without a virtio_net_hdr) carries no checksum state.
// A frame from a local stack on veth arrives CHECKSUM_PARTIAL, its TCP/UDP
// checksum field holding only the folded pseudo-header sum (the sender's
// kernel never completed it), and would reach the backend as corrupt. Such a
// field is recognised by value, and the frame marked partial for the core
// to complete (kFrameChecksumPartial, as AF_PACKET's
// TP_STATUS_CSUMNOTREADY). A complete checksum that happens to equal the
// pseudo-header sum is harmless: completing it recomputes the same value
// (the sum over the segment with that field is ~field's complement).
inline void mark_partial_checksum(core::Frame* frame) {
  const uint8_t* p = frame->data;
  const uint32_t len = frame->len;
  uint32_t l3 = 14u;
  uint16_t type = partial_checksum_detail::be16(p + 12);
  for (int tags = 0; tags < 2 && (type == 0x8100 || type == 0x88a8); ++tags) {
    if (len < l3 + 4u) return;
    type = partial_checksum_detail::be16(p + l3 + 2);
    l3 += 4u;
  }
  if (type != 0x0800 || len < l3 + 20) return;
  const uint8_t* ip = p + l3;
  const uint32_t header_len = (ip[0] & 0x0f) * 4u;
  const uint32_t total_len = partial_checksum_detail::be16(ip + 2);
  const uint8_t protocol = ip[9];
  if ((ip[0] >> 4) != 4 || header_len < 20 || total_len < header_len || l3 + total_len > len) return;
  if ((partial_checksum_detail::be16(ip + 6) & 0x3fff) != 0) return;  // a fragment: its checksum covers the whole datagram
  uint32_t field;
  if (protocol == 6) {
    field = 16;
  } else if (protocol == 17) {
    field = 6;
  } else {
    return;
  }
  const uint32_t l4 = l3 + header_len;
  const uint32_t l4_len = total_len - header_len;
  if (l4_len < field + 2) return;
  const uint16_t stored = partial_checksum_detail::be16(p + l4 + field);
  if (stored == 0) return;  // UDP without a checksum
  uint32_t sum = partial_checksum_detail::be16(ip + 12) + partial_checksum_detail::be16(ip + 14) + partial_checksum_detail::be16(ip + 16) + partial_checksum_detail::be16(ip + 18) + protocol + l4_len;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  if (stored != sum) return;
  frame->flags |= core::kFrameChecksumPartial;
  frame->csum_start = static_cast<uint16_t>(l4);
  frame->csum_offset = static_cast<uint16_t>(field);
}

}  // namespace l4lb::io

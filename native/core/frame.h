// The unit of work of the packet core: one Ethernet frame in a buffer owned by
// a port, processed in place.
#pragma once

#include <cstdint>

namespace l4lb::core {

// Frame::flags
inline constexpr uint32_t kFrameChecksumPartial = 1u << 0;  // transport checksum holds only the
                                                            // pseudo-header sum (CHECKSUM_PARTIAL
                                                            // from a local stack; AF_PACKET reports
                                                            // TP_STATUS_CSUMNOTREADY)

// `data` points at the first byte of the Ethernet header. The port guarantees
// that `headroom` bytes before `data` and `tailroom` bytes after `data + len`
// are writable, so that tunnel encapsulation can prepend headers in place.
struct Frame {
  uint8_t* data;
  uint32_t len;
  uint32_t headroom;
  uint32_t tailroom;
  uint32_t flags;         // kFrame* bits
  uint16_t ingress_port;  // index of the port the frame arrived on
  uint16_t egress_port;   // set by the core for frames it sends
};

}  // namespace l4lb::core

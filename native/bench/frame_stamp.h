// The 16 bytes the traffic generator writes at the end of every frame and the
// sink reads back. At the end, because no forwarding method moves the end of
// a packet: nat and fullnat rewrite headers in place, dr rewrites MAC
// addresses, ipip and gre prepend headers. So the sink finds the stamp in
// whatever encapsulation the forwarder added, without parsing it.
#pragma once

#include <cstdint>
#include <cstring>

namespace l4lb::bench {

struct FrameStamp {
  uint32_t run_tag;   // host order; the sink counts only frames of the run it was told to expect
  uint32_t sequence;  // host order; low 32 bits of the generator's frame counter
  uint64_t sent_ns;   // host order; CLOCK_REALTIME when the frame's burst was handed to the kernel
};
static_assert(sizeof(FrameStamp) == 16, "no padding: the stamp is copied to and from the wire as is");

inline constexpr uint32_t kStampLen = sizeof(FrameStamp);

inline void write_stamp(uint8_t* frame_end, const FrameStamp& stamp) {
  std::memcpy(frame_end - kStampLen, &stamp, kStampLen);
}

inline FrameStamp read_stamp(const uint8_t* frame_end) {
  FrameStamp stamp;
  std::memcpy(&stamp, frame_end - kStampLen, kStampLen);
  return stamp;
}

}  // namespace l4lb::bench

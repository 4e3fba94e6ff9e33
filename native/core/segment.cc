#include "core/segment.h"

#include <cstring>

#include "core/checksum.h"
#include "core/wire.h"

namespace l4lb::core {

namespace {

using namespace wire;

uint32_t l4_header_len(const uint8_t* frame, const PacketInfo& info) {
  if (info.ip_protocol == kProtoTcp) return static_cast<uint32_t>(frame[info.l4_offset + kTcpDataOffset] >> 4) * 4;
  return kUdpHeaderLen;
}

bool is_segmentable(const Frame& frame, const PacketInfo& info) {
  if (frame.gso_size == 0 || info.ip_version != 4 || !info.has(kPacketL4) || info.has(kPacketFragment)) return false;
  if (frame.gso_type == GsoType::tcp4) return info.ip_protocol == kProtoTcp;
  if (frame.gso_type == GsoType::udp) return info.ip_protocol == kProtoUdp;
  return false;
}

// The folded one's-complement sum of the IPv4 pseudo-header (RFC 9293
// §3.1, RFC 768): what a CHECKSUM_PARTIAL field holds, uncomplemented.
uint32_t pseudo_header_sum(const uint8_t* ip, uint8_t protocol, uint32_t l4_len) {
  uint8_t pseudo[12];
  std::memcpy(pseudo, ip + kIpv4Src, 8);
  pseudo[8] = 0;
  pseudo[9] = protocol;
  store_be16(pseudo + 10, static_cast<uint16_t>(l4_len));
  return checksum_partial(pseudo, sizeof(pseudo));
}

}  // namespace

uint32_t ip_and_l4_header_len(const uint8_t* frame, const PacketInfo& info) {
  return info.l4_offset - info.l3_offset + l4_header_len(frame, info);
}

uint32_t segment_payload_for_mtu(const Frame& aggregate, uint32_t ip_and_l4_header_len, uint32_t mtu,
                                 uint32_t overhead) {
  if (mtu <= ip_and_l4_header_len + overhead) return 0;
  const uint32_t fits = mtu - ip_and_l4_header_len - overhead;
  return aggregate.gso_size != 0 && aggregate.gso_size < fits ? aggregate.gso_size : fits;
}

uint32_t segment_count(const Frame& frame, const PacketInfo& info, uint32_t payload_per_segment) {
  if (!is_segmentable(frame, info)) return 1;
  const uint32_t per_segment = payload_per_segment != 0 ? payload_per_segment : frame.gso_size;
  const uint32_t headers = info.l4_offset + l4_header_len(frame.data, info);
  if (info.l3_end() <= headers) return 1;
  const uint32_t payload = info.l3_end() - headers;
  return (payload + per_segment - 1) / per_segment;
}

uint32_t segment_aggregate(const Frame& aggregate, const PacketInfo& info, uint32_t payload_per_segment,
                           SegmentBuffers& buffers, Frame* out, uint32_t max_segments) {
  if (!is_segmentable(aggregate, info) || payload_per_segment == 0) return 0;
  const uint8_t* in = aggregate.data;
  const uint32_t l4_header = l4_header_len(in, info);
  const uint32_t header_bytes = info.l4_offset + l4_header;  // Ethernet (and tag) through the L4 header
  const uint32_t end = info.l3_end();
  if (end <= header_bytes || l4_header < (info.ip_protocol == kProtoTcp ? kTcpHeaderMin : kUdpHeaderLen)) return 0;
  const uint32_t payload = end - header_bytes;
  const uint32_t ip_header = info.l4_offset - info.l3_offset;
  const uint16_t first_id = load_be16(in + info.l3_offset + kIpv4Id);
  const uint32_t first_seq = info.ip_protocol == kProtoTcp ? load_be32(in + info.l4_offset + kTcpSeq) : 0;
  const uint8_t tcp_flags = info.ip_protocol == kProtoTcp ? in[info.l4_offset + kTcpFlags] : 0;

  uint32_t written = 0;
  for (uint32_t offset = 0; offset < payload && written < max_segments; offset += payload_per_segment) {
    const uint32_t slice = payload - offset < payload_per_segment ? payload - offset : payload_per_segment;
    uint32_t capacity = 0, headroom = 0;
    uint8_t* buffer = buffers.next(&capacity, &headroom);
    if (buffer == nullptr || capacity < header_bytes + slice) break;
    std::memcpy(buffer, in, header_bytes);
    std::memcpy(buffer + header_bytes, in + header_bytes + offset, slice);

    uint8_t* ip = buffer + info.l3_offset;
    const uint32_t l4_len = l4_header + slice;
    store_be16(ip + kIpv4TotalLength, static_cast<uint16_t>(ip_header + l4_len));
    // As the kernel numbers the segments of one TSO frame: consecutive ids.
    store_be16(ip + kIpv4Id, static_cast<uint16_t>(first_id + written));
    store_be16(ip + kIpv4Checksum, 0);
    store_be16(ip + kIpv4Checksum, checksum(ip, ip_header));

    uint8_t* l4 = buffer + info.l4_offset;
    uint32_t checksum_field = kUdpChecksum;
    if (info.ip_protocol == kProtoTcp) {
      checksum_field = kTcpChecksum;
      store_be32(l4 + kTcpSeq, first_seq + offset);
      const bool first = offset == 0;
      const bool last = offset + slice == payload;
      uint8_t flags = tcp_flags;
      if (!last) flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
      if (!first) flags &= static_cast<uint8_t>(~kTcpCwr);
      l4[kTcpFlags] = flags;
    } else {
      store_be16(l4 + kUdpLength, static_cast<uint16_t>(l4_len));
    }
    store_be16(l4 + checksum_field, 0);
    uint16_t sum = checksum_finish(checksum_partial(l4, l4_len, pseudo_header_sum(ip, info.ip_protocol, l4_len)));
    if (info.ip_protocol == kProtoUdp && sum == 0) sum = 0xffff;  // RFC 768: 0 would mean "none"
    store_be16(l4 + checksum_field, sum);

    Frame& segment = out[written++];
    segment = make_frame(buffer, header_bytes + slice, headroom, capacity - header_bytes - slice);
    segment.ingress_port = aggregate.ingress_port;
  }
  return written;
}

void prepare_aggregate_for_offload(Frame* frame, const PacketInfo& info) {
  uint8_t* ip = frame->data + info.l3_offset;
  const uint32_t field = info.ip_protocol == kProtoTcp ? kTcpChecksum : kUdpChecksum;
  const uint16_t folded = static_cast<uint16_t>(~checksum_finish(pseudo_header_sum(ip, info.ip_protocol, info.l4_len)));
  store_be16(frame->data + info.l4_offset + field, folded);
  frame->flags |= kFrameChecksumPartial;
  frame->csum_start = info.l4_offset;
  frame->csum_offset = static_cast<uint16_t>(field);
  frame->header_len = static_cast<uint16_t>(info.l4_offset + l4_header_len(frame->data, info));
}

}  // namespace l4lb::core

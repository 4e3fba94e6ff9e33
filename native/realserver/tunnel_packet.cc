#include "realserver/tunnel_packet.h"

#include <algorithm>
#include <cstring>

#include "core/checksum.h"
#include "core/frame.h"
#include "core/parse.h"
#include "core/rewrite.h"
#include "core/wire.h"

namespace l4lb::realserver {

namespace {

using core::DropReason;
using core::PacketInfo;
using core::ParseStatus;
using namespace core::wire;

static_assert(kTunnelPacketHeadroom >= kEthHeaderLen + kIpv4HeaderMin + kGreHeaderMin + kGreOptionLen,
              "room for the placeholder Ethernet header and the largest encapsulation");

// The packet core parses Ethernet frames; raw IP sockets and TUN devices
// (IFF_NO_PI) hand over bare IPv4 packets. An all-zero Ethernet header with
// EtherType IPv4 in front of the packet makes it one; nothing reads its MACs.
uint8_t* prepend_placeholder_ethernet(uint8_t* packet) {
  uint8_t* l2 = packet - kEthHeaderLen;
  std::memset(l2, 0, kEthType);  // both MAC addresses
  core::store_be16(l2 + kEthType, kEtherTypeIpv4);
  return l2;
}

bool contains(std::span<const uint32_t> sorted, uint32_t addr) {
  return std::binary_search(sorted.begin(), sorted.end(), addr);
}

DecapResult malformed(DecapMalformed reason, TunnelKind kind = TunnelKind::ipip) {
  DecapResult result;
  result.verdict = DecapVerdict::malformed;
  result.malformed_reason = reason;
  result.kind = kind;
  return result;
}

DecapResult not_for_us(DecapNotForUs reason, TunnelKind kind) {
  DecapResult result;
  result.verdict = DecapVerdict::not_for_us;
  result.not_for_us_reason = reason;
  result.kind = kind;
  return result;
}

// parse_frame failed on the outer packet: say which part of it is wrong.
DecapMalformed classify_outer_drop(const uint8_t* packet, uint32_t len, DropReason reason) {
  switch (reason) {
    case DropReason::truncated:
      return DecapMalformed::outer_truncated;
    case DropReason::bad_ip_length: {
      // Both "total length below the header length" and "above the bytes
      // received" land here; only the second is a truncation.
      const uint32_t header_len = static_cast<uint32_t>(packet[kIpv4VersionIhl] & 0x0f) * 4;
      return core::load_be16(packet + kIpv4TotalLength) >= header_len ? DecapMalformed::outer_truncated
                                                                       : DecapMalformed::outer_bad_header;
    }
    case DropReason::malformed_tunnel: {
      // Only GRE fails inside parse_frame (IPIP's payload is parsed later):
      // the IPv4 header was fine, so the GRE header starts after it.
      const uint32_t header_len = static_cast<uint32_t>(packet[kIpv4VersionIhl] & 0x0f) * 4;
      const uint32_t total_len = std::min<uint32_t>(core::load_be16(packet + kIpv4TotalLength), len);
      if (total_len < header_len + kGreHeaderMin) return DecapMalformed::gre_truncated;
      const uint16_t flags = core::load_be16(packet + header_len);
      if (flags & kGreVersionMask) return DecapMalformed::gre_version;
      if (flags & (kGreFlagRouting | kGreReservedMask)) return DecapMalformed::gre_flags;
      return DecapMalformed::gre_truncated;  // the options the flags announce do not fit
    }
    case DropReason::bad_l4_header:
      // A TCP/UDP/ICMP header that does not parse: not a tunnel packet at all.
      return DecapMalformed::not_a_tunnel;
    default:
      return DecapMalformed::outer_bad_header;
  }
}

// decapsulate() failed after the outer checks passed: the inner packet is wrong.
DecapMalformed classify_inner_drop(DropReason reason, uint8_t outer_tos, uint8_t inner_tos) {
  switch (reason) {
    case DropReason::truncated:
      return DecapMalformed::inner_truncated;
    case DropReason::bad_ip_length:
      return DecapMalformed::inner_bad_length;
    case DropReason::bad_l4_header:
      return DecapMalformed::inner_bad_l4_header;
    case DropReason::malformed_tunnel:
      // decapsulate() drops CE over not-ECT; otherwise the inner packet is
      // itself a broken GRE packet (a nested tunnel header that does not parse).
      if ((outer_tos & kEcnMask) == kEcnCe && (inner_tos & kEcnMask) == kEcnNotEct) return DecapMalformed::ecn;
      return DecapMalformed::inner_bad_l4_header;
    default:
      return DecapMalformed::inner_bad_header;
  }
}

}  // namespace

DecapResult decapsulate_tunnel_packet(uint8_t* packet, uint32_t len, const DecapFilter& filter) {
  uint8_t* l2 = prepend_placeholder_ethernet(packet);
  core::Frame frame = core::make_frame(l2, len + kEthHeaderLen, 0, 0);
  PacketInfo info;
  const ParseStatus outer_status = core::parse_frame(frame.data, frame.len, &info);
  if (!outer_status.is_ok()) return malformed(classify_outer_drop(packet, len, outer_status.reason));
  if (!info.has(core::kPacketIpChecksumOk)) return malformed(DecapMalformed::outer_checksum);
  if (info.has(core::kPacketFragment)) return malformed(DecapMalformed::outer_fragment);

  TunnelKind kind;
  if (info.ip_protocol == kProtoIpip) {
    kind = TunnelKind::ipip;
  } else if (info.ip_protocol == kProtoGre) {
    kind = TunnelKind::gre;
    if (info.inner_ether_type != kEtherTypeIpv4) return malformed(DecapMalformed::gre_protocol, kind);
  } else {
    return malformed(DecapMalformed::not_a_tunnel);
  }

  if (kind == TunnelKind::ipip ? !filter.accept_ipip : !filter.accept_gre) {
    return not_for_us(DecapNotForUs::tunnel_type, kind);
  }
  if (!filter.outer_destinations.empty() && !contains(filter.outer_destinations, info.dst_addr)) {
    return not_for_us(DecapNotForUs::outer_destination, kind);
  }
  if (kind == TunnelKind::gre) {
    // RFC 2784 §2.5: the checksum covers the GRE header and the payload; a
    // region whose stored checksum is right sums to 0xffff, which finishes to 0.
    if (info.has(core::kPacketGreChecksum) && core::checksum(frame.data + info.l4_offset, info.l4_len) != 0) {
      return malformed(DecapMalformed::gre_checksum, kind);
    }
    if (filter.require_gre_key && (!info.has(core::kPacketGreKey) || info.gre_key != filter.gre_key)) {
      return not_for_us(DecapNotForUs::gre_key, kind);
    }
  }

  const uint8_t outer_tos = info.tos;
  const uint32_t inner_l3 = info.inner_l3_offset;
  const uint8_t inner_tos = inner_l3 + kIpv4Tos < info.l3_end() ? frame.data[inner_l3 + kIpv4Tos] : 0;
  const ParseStatus inner_status = core::decapsulate(&frame, &info);
  if (!inner_status.is_ok()) return malformed(classify_inner_drop(inner_status.reason, outer_tos, inner_tos), kind);
  if (!contains(filter.inner_destinations, info.dst_addr)) return not_for_us(DecapNotForUs::inner_destination, kind);

  DecapResult result;
  result.verdict = DecapVerdict::deliver;
  result.kind = kind;
  result.inner_offset = static_cast<uint32_t>(frame.data + info.l3_offset - packet);
  result.inner_len = info.l3_end() - info.l3_offset;
  return result;
}

ReturnResult encapsulate_return_packet(uint8_t* packet, uint32_t len, const ReturnTunnel& tunnel,
                                       uint16_t identification) {
  ReturnResult result;
  if (len == 0 || (packet[0] >> 4) != 4) {
    result.reason = ReturnDrop::not_ipv4;
    return result;
  }
  uint8_t* l2 = prepend_placeholder_ethernet(packet);
  core::Frame frame = core::make_frame(l2, len + kEthHeaderLen, kTunnelPacketHeadroom - kEthHeaderLen, 0);
  PacketInfo info;
  if (!core::parse_frame(frame.data, frame.len, &info).is_ok()) {
    result.reason = ReturnDrop::malformed;
    return result;
  }
  if (!contains(tunnel.inner_sources, info.src_addr)) {
    result.reason = ReturnDrop::not_from_vip;
    return result;
  }
  core::TunnelParams params;
  params.type = tunnel.kind == TunnelKind::gre ? core::TunnelType::gre : core::TunnelType::ipip;
  params.src_addr = tunnel.outer_src;
  params.dst_addr = tunnel.outer_dst;
  params.identification = identification;
  params.ttl = tunnel.ttl;
  params.gre_with_key = tunnel.with_key;
  params.gre_key = tunnel.gre_key;
  if (core::encapsulate_ipv4(&frame, &info, params) == 0) {
    result.reason = ReturnDrop::too_big;
    return result;
  }
  result.ok = true;
  result.outer_offset = static_cast<int32_t>(frame.data + info.l3_offset - packet);
  result.outer_len = frame.len - info.l3_offset;
  return result;
}

}  // namespace l4lb::realserver

#include "core/parse.h"

#include "core/checksum.h"
#include "core/wire.h"

namespace l4lb::core {

namespace {

using namespace wire;

// Offsets are stored in 16 bits. Behind an L3 offset up to this bound, every
// offset the parsers derive (IPv6 extension headers: at most 8 x 2048 bytes;
// a GRE header; an ICMP quote) still fits.
constexpr uint32_t kMaxL3Offset = 0x7fff;

constexpr bool is_vlan_tpid(uint16_t ether_type) {
  return ether_type == kEtherTypeVlan || ether_type == kEtherTypeQinQ ||
         ether_type == kEtherTypeQinQLegacy;
}

// The TCP/UDP header at l4, bounded by the end of the IP payload.
ParseStatus parse_tcp(const uint8_t* l4, uint32_t available, PacketInfo* out) {
  if (available < kTcpHeaderMin) return ParseStatus::drop(DropReason::bad_l4_header);
  const uint32_t header_len = static_cast<uint32_t>(l4[kTcpDataOffset] >> 4) * 4;
  if (header_len < kTcpHeaderMin || header_len > available) {
    return ParseStatus::drop(DropReason::bad_l4_header);
  }
  out->src_port = load_be16(l4 + kTcpSrcPort);
  out->dst_port = load_be16(l4 + kTcpDstPort);
  out->tcp_flags = l4[kTcpFlags];
  out->flags |= kPacketL4;
  return ParseStatus::ok();
}

ParseStatus parse_udp(const uint8_t* l4, uint32_t available, PacketInfo* out) {
  if (available < kUdpHeaderLen) return ParseStatus::drop(DropReason::bad_l4_header);
  const uint32_t udp_len = load_be16(l4 + kUdpLength);
  // RFC 768: the length covers header and data; less than the IP payload is
  // legal (the rest is ignored), more is a lie.
  if (udp_len < kUdpHeaderLen || udp_len > available) {
    return ParseStatus::drop(DropReason::bad_l4_header);
  }
  out->src_port = load_be16(l4 + kUdpSrcPort);
  out->dst_port = load_be16(l4 + kUdpDstPort);
  out->flags |= kPacketL4;
  return ParseStatus::ok();
}

// The IPv4 header and first 8 payload bytes quoted by an ICMP error
// (RFC 792), bounded by the outer IP payload and by the quoted header's own
// total length. A quote that is cut or invalid is reported through the
// absence of kPacketQuoteIp / kPacketQuoteL4, never read past.
void parse_icmp_quote(const uint8_t* frame, uint32_t quote_offset, uint32_t limit, PacketInfo* out) {
  if (quote_offset > limit) return;
  const uint8_t* quote = frame + quote_offset;
  const uint32_t available = limit - quote_offset;
  if (available < kIpv4HeaderMin) return;
  if ((quote[kIpv4VersionIhl] >> 4) != 4) return;
  const uint32_t header_len = static_cast<uint32_t>(quote[kIpv4VersionIhl] & 0x0f) * 4;
  if (header_len < kIpv4HeaderMin || header_len > available) return;
  const uint32_t quoted_total = load_be16(quote + kIpv4TotalLength);
  if (quoted_total < header_len) return;

  out->flags |= kPacketQuoteIp;
  out->inner_l3_offset = static_cast<uint16_t>(quote_offset);
  out->inner_l4_offset = static_cast<uint16_t>(quote_offset + header_len);
  out->inner_protocol = quote[kIpv4Protocol];
  out->inner_src_addr = load_be32(quote + kIpv4Src);
  out->inner_dst_addr = load_be32(quote + kIpv4Dst);

  // A later fragment quotes fragment data, not an L4 header.
  if ((load_be16(quote + kIpv4FlagsFragment) & kIpv4FragOffsetMask) != 0) return;
  const uint32_t quoted_bytes = available < quoted_total ? available : quoted_total;
  if (quoted_bytes - header_len < kIcmpQuotedL4Bytes) return;
  out->flags |= kPacketQuoteL4;
  if (out->inner_protocol == kProtoTcp || out->inner_protocol == kProtoUdp) {
    // TCP and UDP both start with source and destination port.
    out->inner_src_port = load_be16(quote + header_len + kTcpSrcPort);
    out->inner_dst_port = load_be16(quote + header_len + kTcpDstPort);
  }
}

ParseStatus parse_icmp(const uint8_t* frame, bool icmpv6, PacketInfo* out) {
  if (out->l4_len < kIcmpHeaderLen) return ParseStatus::drop(DropReason::bad_l4_header);
  const uint8_t* icmp = frame + out->l4_offset;
  out->icmp_type = icmp[kIcmpType];
  out->icmp_code = icmp[kIcmpCode];
  out->flags |= kPacketL4;
  if (icmpv6) {
    if (out->icmp_type == kIcmpv6EchoRequest || out->icmp_type == kIcmpv6EchoReply) {
      out->icmp_id = load_be16(icmp + kIcmpEchoId);
    } else if (out->icmp_type < kIcmpv6InformationalMin) {
      out->flags |= kPacketIcmpError;
    }
    return ParseStatus::ok();
  }
  if (out->icmp_type == kIcmpEchoRequest || out->icmp_type == kIcmpEchoReply) {
    out->icmp_id = load_be16(icmp + kIcmpEchoId);
  } else if (is_icmp_error_type(out->icmp_type)) {
    out->flags |= kPacketIcmpError;
    parse_icmp_quote(frame, out->l4_offset + kIcmpHeaderLen, out->l3_end(), out);
  }
  return ParseStatus::ok();
}

ParseStatus parse_tunnel_gre(const uint8_t* frame, PacketInfo* out) {
  const uint8_t* gre = frame + out->l4_offset;
  GreHeader header;
  if (!parse_gre(gre, gre + out->l4_len, &header)) {
    return ParseStatus::drop(DropReason::malformed_tunnel);
  }
  out->flags |= kPacketL4 | kPacketTunnel;
  if (header.flags & kGreFlagChecksum) out->flags |= kPacketGreChecksum;
  if (header.flags & kGreFlagKey) out->flags |= kPacketGreKey;
  if (header.flags & kGreFlagSequence) out->flags |= kPacketGreSequence;
  out->gre_key = header.key;
  out->gre_sequence = header.sequence;
  out->inner_ether_type = header.protocol;
  out->inner_l3_offset = static_cast<uint16_t>(out->l4_offset + header.length);
  return ParseStatus::ok();
}

// Dispatch on the upper-layer protocol once l4_offset and l4_len are known.
ParseStatus parse_l4(const uint8_t* frame, PacketInfo* out) {
  const uint8_t* l4 = frame + out->l4_offset;
  switch (out->ip_protocol) {
    case kProtoTcp:
      return parse_tcp(l4, out->l4_len, out);
    case kProtoUdp:
      return parse_udp(l4, out->l4_len, out);
    case kProtoIcmp:
      // ICMPv4 inside IPv6 is meaningless; leave it unparsed.
      if (out->ip_version != 4) return ParseStatus::ok();
      return parse_icmp(frame, false, out);
    case kProtoIcmpv6:
      if (out->ip_version != 6) return ParseStatus::ok();
      return parse_icmp(frame, true, out);
    case kProtoGre:
      return parse_tunnel_gre(frame, out);
    case kProtoIpip:
    case kProtoIpv6:
      out->flags |= kPacketTunnel;
      out->inner_ether_type = out->ip_protocol == kProtoIpip ? kEtherTypeIpv4 : kEtherTypeIpv6;
      out->inner_l3_offset = out->l4_offset;
      return ParseStatus::ok();
    default:
      return ParseStatus::ok();
  }
}

}  // namespace

bool parse_gre(const uint8_t* p, const uint8_t* end, GreHeader* out) {
  *out = GreHeader{};
  if (p > end || static_cast<size_t>(end - p) < kGreHeaderMin) return false;
  const uint16_t flags = load_be16(p);
  // RFC 2784 §2.5.1: version 0 only; the routing bit (RFC 1701) and reserved
  // bits must be zero. Version 1 is PPTP's enhanced GRE, not a tunnel.
  if ((flags & (kGreVersionMask | kGreFlagRouting | kGreReservedMask)) != 0) return false;
  uint32_t length = kGreHeaderMin;
  if (flags & kGreFlagChecksum) length += kGreOptionLen;
  const uint32_t key_at = length;
  if (flags & kGreFlagKey) length += kGreOptionLen;
  const uint32_t sequence_at = length;
  if (flags & kGreFlagSequence) length += kGreOptionLen;
  if (static_cast<size_t>(end - p) < length) return false;
  out->flags = flags;
  out->protocol = load_be16(p + kGreProtocol);
  if (flags & kGreFlagKey) out->key = load_be32(p + key_at);
  if (flags & kGreFlagSequence) out->sequence = load_be32(p + sequence_at);
  out->length = static_cast<uint8_t>(length);
  return true;
}

ParseStatus parse_ipv4_at(const uint8_t* frame, uint32_t offset, uint32_t limit, PacketInfo* out) {
  *out = PacketInfo{};
  if (offset > limit || offset > kMaxL3Offset) return ParseStatus::drop(DropReason::truncated);
  const uint8_t* ip = frame + offset;
  const uint32_t available = limit - offset;
  if (available < kIpv4HeaderMin) return ParseStatus::drop(DropReason::truncated);
  if ((ip[kIpv4VersionIhl] >> 4) != 4) return ParseStatus::drop(DropReason::bad_ip_header);
  const uint32_t header_len = static_cast<uint32_t>(ip[kIpv4VersionIhl] & 0x0f) * 4;
  if (header_len < kIpv4HeaderMin) return ParseStatus::drop(DropReason::bad_ip_header);
  if (header_len > available) return ParseStatus::drop(DropReason::truncated);
  const uint32_t total_len = load_be16(ip + kIpv4TotalLength);
  // Bytes past total_len are Ethernet padding (frames shorter than 60 bytes
  // are padded on the wire) and are ignored.
  if (total_len < header_len || total_len > available) {
    return ParseStatus::drop(DropReason::bad_ip_length);
  }

  out->ip_version = 4;
  out->l3_offset = static_cast<uint16_t>(offset);
  out->l4_offset = static_cast<uint16_t>(offset + header_len);
  out->l4_len = static_cast<uint16_t>(total_len - header_len);
  out->tos = ip[kIpv4Tos];
  out->ip_id = load_be16(ip + kIpv4Id);
  out->ttl = ip[kIpv4Ttl];
  out->ip_protocol = ip[kIpv4Protocol];
  out->src_addr = load_be32(ip + kIpv4Src);
  out->dst_addr = load_be32(ip + kIpv4Dst);
  const uint16_t fragment = load_be16(ip + kIpv4FlagsFragment);
  out->frag_offset = fragment & kIpv4FragOffsetMask;
  uint16_t flags = 0;
  if (header_len > kIpv4HeaderMin) flags |= kPacketIpOptions;
  if (fragment & kIpv4FlagDf) flags |= kPacketDontFragment;
  if (fragment & kIpv4FlagMf) flags |= kPacketMoreFragments;
  if (out->frag_offset != 0) flags |= kPacketLaterFragment;
  if (checksum(ip, header_len) == 0) flags |= kPacketIpChecksumOk;
  out->flags = flags;

  if (flags & kPacketLaterFragment) return ParseStatus::ok();
  return parse_l4(frame, out);
}

ParseStatus parse_ipv6_at(const uint8_t* frame, uint32_t offset, uint32_t limit, PacketInfo* out) {
  *out = PacketInfo{};
  if (offset > limit || offset > kMaxL3Offset) return ParseStatus::drop(DropReason::truncated);
  const uint8_t* ip = frame + offset;
  const uint32_t available = limit - offset;
  if (available < kIpv6HeaderLen) return ParseStatus::drop(DropReason::truncated);
  if ((ip[0] >> 4) != 6) return ParseStatus::drop(DropReason::bad_ip_header);
  const uint32_t payload_len = load_be16(ip + kIpv6PayloadLength);
  // A zero payload length with a Jumbo Payload option (RFC 2675) cannot occur
  // on Ethernet; it simply leaves no room for any extension header.
  if (kIpv6HeaderLen + payload_len > available) return ParseStatus::drop(DropReason::bad_ip_length);

  out->ip_version = 6;
  out->l3_offset = static_cast<uint16_t>(offset);
  out->tos = static_cast<uint8_t>(load_be16(ip) >> 4);
  out->ttl = ip[kIpv6HopLimit];

  const uint32_t end = offset + kIpv6HeaderLen + payload_len;
  uint32_t cursor = offset + kIpv6HeaderLen;
  uint8_t next_header = ip[kIpv6NextHeader];
  for (uint32_t seen = 0;; ++seen) {
    const bool extension = next_header == kProtoHopByHop || next_header == kProtoRouting ||
                           next_header == kProtoDestinationOptions || next_header == kProtoFragment;
    if (!extension) break;
    // RFC 8200 §4.1: hop-by-hop options only directly after the fixed header.
    if (seen >= kMaxIpv6ExtensionHeaders || (next_header == kProtoHopByHop && seen != 0) ||
        end - cursor < kIpv6ExtMinLen) {
      return ParseStatus::drop(DropReason::bad_ipv6_header);
    }
    const uint8_t* header = frame + cursor;
    if (next_header == kProtoFragment) {
      const uint16_t field = load_be16(header + kIpv6FragmentOffsetField);
      next_header = header[0];
      cursor += kIpv6FragmentHeaderLen;
      out->frag_offset = static_cast<uint16_t>((field & kIpv6FragOffsetMask) >> 3);
      if (field & kIpv6FragMore) out->flags |= kPacketMoreFragments;
      if (out->frag_offset != 0) {
        // The rest is fragment data: the headers after the fragment header
        // are in the first fragment only (RFC 8200 §4.5).
        out->flags |= kPacketLaterFragment;
        out->ip_protocol = next_header;
        out->l4_offset = static_cast<uint16_t>(cursor);
        out->l4_len = static_cast<uint16_t>(end - cursor);
        return ParseStatus::ok();
      }
      continue;
    }
    const uint32_t length = (static_cast<uint32_t>(header[1]) + 1) * 8;
    if (end - cursor < length) return ParseStatus::drop(DropReason::bad_ipv6_header);
    next_header = header[0];
    cursor += length;
  }
  out->ip_protocol = next_header;
  out->l4_offset = static_cast<uint16_t>(cursor);
  out->l4_len = static_cast<uint16_t>(end - cursor);
  return parse_l4(frame, out);
}

ParseStatus parse_frame(const uint8_t* data, uint32_t len, PacketInfo* out) {
  if (len < kEthHeaderLen) {
    *out = PacketInfo{};
    return ParseStatus::drop(DropReason::truncated);
  }
  uint32_t l3_offset = kEthHeaderLen;
  uint16_t ether_type = load_be16(data + kEthType);
  uint16_t vlan_tci = 0;
  const bool tagged = is_vlan_tpid(ether_type);
  if (tagged) {
    if (len < kEthHeaderLen + kVlanTagLen) {
      *out = PacketInfo{};
      return ParseStatus::drop(DropReason::truncated);
    }
    vlan_tci = load_be16(data + kEthHeaderLen);
    ether_type = load_be16(data + kEthHeaderLen + 2);
    l3_offset += kVlanTagLen;
    if (is_vlan_tpid(ether_type)) {
      *out = PacketInfo{};
      return ParseStatus::drop(DropReason::bad_l2);
    }
  }

  ParseStatus status = ParseStatus::not_ip();
  if (ether_type == kEtherTypeIpv4) {
    status = parse_ipv4_at(data, l3_offset, len, out);
  } else if (ether_type == kEtherTypeIpv6) {
    status = parse_ipv6_at(data, l3_offset, len, out);
  } else {
    *out = PacketInfo{};
    out->l3_offset = static_cast<uint16_t>(l3_offset);
  }
  out->ether_type = ether_type;
  out->vlan_tci = vlan_tci;
  if (tagged) out->flags |= kPacketVlan;
  return status;
}

}  // namespace l4lb::core

#include "core/rewrite.h"

#include <cstring>

#include "core/checksum.h"

namespace l4lb::core {

namespace {

using namespace wire;

// Accumulates the 16-bit words a rewrite replaces, then applies them to any
// checksum that covers those words (RFC 1624 eqn. 3 summed over all words:
// HC' = ~(~HC + sum(~m + m'))). One delta can feed several checksums: the
// addresses of an IPv4 header are also in the TCP/UDP pseudo-header.
class ChecksumDelta {
 public:
  void replace16(uint16_t old_word, uint16_t new_word) {
    // An unchanged word contributes ~m + m = 0xffff (-0), which could flip a
    // 0xffff checksum to 0x0000; skipping it keeps no-op rewrites byte-exact.
    if (old_word == new_word) return;
    sum_ += static_cast<uint16_t>(~old_word);
    sum_ += new_word;
  }
  void replace32(uint32_t old_value, uint32_t new_value) {
    replace16(static_cast<uint16_t>(old_value >> 16), static_cast<uint16_t>(new_value >> 16));
    replace16(static_cast<uint16_t>(old_value), static_cast<uint16_t>(new_value));
  }
  void add(const ChecksumDelta& other) { sum_ += other.sum_; }

  uint16_t apply(uint16_t old_checksum) const {
    if (sum_ == 0) return old_checksum;
    uint64_t sum = static_cast<uint16_t>(~old_checksum) + sum_;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
  }
  // Updates a big-endian checksum field in place.
  void apply_to(uint8_t* field) const { store_be16(field, apply(load_be16(field))); }

 private:
  uint64_t sum_ = 0;
};

// TCP and UDP checksums differ in two rules: UDP 0 means "no checksum" and
// stays 0, and a UDP result of 0 is sent as 0xffff (RFC 768).
uint32_t l4_checksum_offset(uint8_t protocol) {
  return protocol == kProtoTcp ? kTcpChecksum : kUdpChecksum;
}

// Applies delta to the TCP/UDP checksum field; returns the delta the field
// change itself makes (for checksums that cover the field, e.g. ICMP over a
// quote).
ChecksumDelta apply_to_l4_checksum(uint8_t* field, uint8_t protocol, const ChecksumDelta& delta) {
  ChecksumDelta field_change;
  const uint16_t old_checksum = load_be16(field);
  if (protocol == kProtoUdp && old_checksum == 0) return field_change;
  uint16_t new_checksum = delta.apply(old_checksum);
  if (protocol == kProtoUdp && new_checksum == 0) new_checksum = 0xffff;
  store_be16(field, new_checksum);
  field_change.replace16(old_checksum, new_checksum);
  return field_change;
}

bool has_transport_ports(const PacketInfo& info) {
  return info.has(kPacketL4) && !info.has(kPacketLaterFragment) &&
         (info.ip_protocol == kProtoTcp || info.ip_protocol == kProtoUdp);
}

bool rewrite_endpoint(uint8_t* frame, PacketInfo* info, bool destination, uint32_t addr, uint16_t port) {
  if (info->ip_version != 4) return false;
  uint8_t* ip = frame + info->l3_offset;
  uint8_t* addr_field = ip + (destination ? kIpv4Dst : kIpv4Src);
  ChecksumDelta address_change;
  address_change.replace32(load_be32(addr_field), addr);
  store_be32(addr_field, addr);
  address_change.apply_to(ip + kIpv4Checksum);
  (destination ? info->dst_addr : info->src_addr) = addr;

  if (!has_transport_ports(*info)) return true;
  uint8_t* l4 = frame + info->l4_offset;
  uint8_t* port_field = l4 + (destination ? kTcpDstPort : kTcpSrcPort);
  ChecksumDelta l4_change = address_change;  // the pseudo-header holds the addresses
  l4_change.replace16(load_be16(port_field), port);
  store_be16(port_field, port);
  apply_to_l4_checksum(l4 + l4_checksum_offset(info->ip_protocol), info->ip_protocol, l4_change);
  (destination ? info->dst_port : info->src_port) = port;
  return true;
}

void shift_offsets(PacketInfo* info, int delta) {
  auto shift = [delta](uint16_t& offset) {
    if (offset != 0) offset = static_cast<uint16_t>(offset + delta);
  };
  shift(info->l3_offset);
  shift(info->l4_offset);
  shift(info->inner_l3_offset);
  shift(info->inner_l4_offset);
}

void write_ipv4_header(uint8_t* ip, uint8_t tos, uint16_t total_len, uint16_t id, uint16_t flags,
                       uint8_t ttl, uint8_t protocol, uint32_t src, uint32_t dst) {
  ip[kIpv4VersionIhl] = 0x45;
  ip[kIpv4Tos] = tos;
  store_be16(ip + kIpv4TotalLength, total_len);
  store_be16(ip + kIpv4Id, id);
  store_be16(ip + kIpv4FlagsFragment, flags);
  ip[kIpv4Ttl] = ttl;
  ip[kIpv4Protocol] = protocol;
  store_be16(ip + kIpv4Checksum, 0);
  store_be32(ip + kIpv4Src, src);
  store_be32(ip + kIpv4Dst, dst);
  store_be16(ip + kIpv4Checksum, checksum(ip, kIpv4HeaderMin));
}

uint32_t write_ethernet_header(uint8_t* out, const IcmpReplyParams& params, uint16_t ether_type) {
  std::memcpy(out + kEthDst, params.dst_mac.bytes, kMacLen);
  std::memcpy(out + kEthSrc, params.src_mac.bytes, kMacLen);
  uint32_t at = kEthType;
  if (params.vlan_tagged) {
    store_be16(out + at, kEtherTypeVlan);
    store_be16(out + at + 2, params.vlan_tci);
    at += kVlanTagLen;
  }
  store_be16(out + at, ether_type);
  return at + 2;
}

}  // namespace

// ---- Checksum offload ---------------------------------------------------------

bool complete_partial_checksum(uint8_t* frame, const PacketInfo& info) {
  if (!has_transport_ports(info)) return false;
  uint8_t* l4 = frame + info.l4_offset;
  // UDP covers its own length (checked <= l4_len by the parser); TCP the
  // whole IP payload.
  const uint32_t covered = info.ip_protocol == kProtoUdp ? load_be16(l4 + kUdpLength) : info.l4_len;
  uint8_t* field = l4 + l4_checksum_offset(info.ip_protocol);
  uint16_t result = checksum(l4, covered);
  if (info.ip_protocol == kProtoUdp && result == 0) result = 0xffff;
  store_be16(field, result);
  return true;
}

bool complete_partial_checksum(Frame* frame, const PacketInfo& info) {
  if ((frame->flags & kFrameChecksumPartial) == 0) return true;
  if (!complete_partial_checksum(frame->data, info)) return false;
  frame->flags &= ~kFrameChecksumPartial;
  return true;
}

// ---- NAT ----------------------------------------------------------------------

bool rewrite_ipv4_destination(uint8_t* frame, PacketInfo* info, uint32_t addr, uint16_t port) {
  return rewrite_endpoint(frame, info, true, addr, port);
}

bool rewrite_ipv4_source(uint8_t* frame, PacketInfo* info, uint32_t addr, uint16_t port) {
  return rewrite_endpoint(frame, info, false, addr, port);
}

bool decrement_ttl(uint8_t* frame, PacketInfo* info) {
  uint8_t* ip = frame + info->l3_offset;
  if (info->ip_version == 6) {
    if (ip[kIpv6HopLimit] <= 1) return false;
    --ip[kIpv6HopLimit];
    info->ttl = ip[kIpv6HopLimit];
    return true;
  }
  if (info->ip_version != 4 || ip[kIpv4Ttl] <= 1) return false;
  // TTL and protocol form one 16-bit word of the header checksum.
  const uint16_t old_word = load_be16(ip + kIpv4Ttl);
  --ip[kIpv4Ttl];
  ChecksumDelta change;
  change.replace16(old_word, load_be16(ip + kIpv4Ttl));
  change.apply_to(ip + kIpv4Checksum);
  info->ttl = ip[kIpv4Ttl];
  return true;
}

// ---- Ethernet -------------------------------------------------------------------

bool rewrite_ethernet(Frame* frame, PacketInfo* info, const EthernetRewrite& rewrite) {
  const bool tagged = info->has(kPacketVlan);
  if (rewrite.vlan == VlanAction::strip && tagged) {
    std::memmove(frame->data + kVlanTagLen, frame->data, 2 * kMacLen);
    frame->data += kVlanTagLen;
    frame->len -= kVlanTagLen;
    frame->headroom += kVlanTagLen;
    info->flags &= static_cast<uint16_t>(~kPacketVlan);
    info->vlan_tci = 0;
    shift_offsets(info, -static_cast<int>(kVlanTagLen));
  } else if (rewrite.vlan == VlanAction::set && tagged) {
    store_be16(frame->data + kEthHeaderLen, rewrite.vlan_tci);
    info->vlan_tci = rewrite.vlan_tci;
  } else if (rewrite.vlan == VlanAction::set) {
    if (frame->headroom < kVlanTagLen) return false;
    std::memmove(frame->data - kVlanTagLen, frame->data, 2 * kMacLen);
    frame->data -= kVlanTagLen;
    frame->len += kVlanTagLen;
    frame->headroom -= kVlanTagLen;
    store_be16(frame->data + kEthType, kEtherTypeVlan);
    store_be16(frame->data + kEthHeaderLen, rewrite.vlan_tci);
    info->flags |= kPacketVlan;
    info->vlan_tci = rewrite.vlan_tci;
    shift_offsets(info, static_cast<int>(kVlanTagLen));
  }
  std::memcpy(frame->data + kEthDst, rewrite.dst.bytes, kMacLen);
  std::memcpy(frame->data + kEthSrc, rewrite.src.bytes, kMacLen);
  return true;
}

// ---- ICMP errors ------------------------------------------------------------------

IcmpErrorTranslation icmp_error_translation_of(const PacketInfo& info) {
  return IcmpErrorTranslation{
      .outer_src_addr = info.src_addr,
      .outer_dst_addr = info.dst_addr,
      .quoted_src_addr = info.inner_src_addr,
      .quoted_dst_addr = info.inner_dst_addr,
      .quoted_src_port = info.inner_src_port,
      .quoted_dst_port = info.inner_dst_port,
  };
}

bool translate_icmp_error(uint8_t* frame, PacketInfo* info, const IcmpErrorTranslation& translation) {
  if (info->ip_version != 4 || info->ip_protocol != kProtoIcmp || !info->has(kPacketIcmpError) ||
      !info->has(kPacketQuoteIp)) {
    return false;
  }
  uint8_t* ip = frame + info->l3_offset;
  ChecksumDelta outer_change;
  outer_change.replace32(load_be32(ip + kIpv4Src), translation.outer_src_addr);
  outer_change.replace32(load_be32(ip + kIpv4Dst), translation.outer_dst_addr);
  store_be32(ip + kIpv4Src, translation.outer_src_addr);
  store_be32(ip + kIpv4Dst, translation.outer_dst_addr);
  outer_change.apply_to(ip + kIpv4Checksum);

  // The ICMP checksum covers every quoted byte (and no pseudo-header), so
  // each quoted word that changes, checksum fields included, feeds it. All
  // quoted fields sit at even distances from the ICMP header.
  ChecksumDelta icmp_change;
  uint8_t* quote = frame + info->inner_l3_offset;
  ChecksumDelta quoted_addresses;
  quoted_addresses.replace32(load_be32(quote + kIpv4Src), translation.quoted_src_addr);
  quoted_addresses.replace32(load_be32(quote + kIpv4Dst), translation.quoted_dst_addr);
  store_be32(quote + kIpv4Src, translation.quoted_src_addr);
  store_be32(quote + kIpv4Dst, translation.quoted_dst_addr);
  icmp_change.add(quoted_addresses);
  const uint16_t old_quoted_ip_checksum = load_be16(quote + kIpv4Checksum);
  const uint16_t new_quoted_ip_checksum = quoted_addresses.apply(old_quoted_ip_checksum);
  store_be16(quote + kIpv4Checksum, new_quoted_ip_checksum);
  icmp_change.replace16(old_quoted_ip_checksum, new_quoted_ip_checksum);

  const uint8_t protocol = info->inner_protocol;
  if (info->has(kPacketQuoteL4) && (protocol == kProtoTcp || protocol == kProtoUdp)) {
    uint8_t* l4 = frame + info->inner_l4_offset;
    ChecksumDelta port_change;
    port_change.replace16(load_be16(l4 + kTcpSrcPort), translation.quoted_src_port);
    port_change.replace16(load_be16(l4 + kTcpDstPort), translation.quoted_dst_port);
    store_be16(l4 + kTcpSrcPort, translation.quoted_src_port);
    store_be16(l4 + kTcpDstPort, translation.quoted_dst_port);
    icmp_change.add(port_change);

    // The quoted L4 checksum covers the whole original packet, which is not
    // here; updating it incrementally still gives the value the translated
    // original would carry. It is there only if the quote reaches it (UDP:
    // always within 8 bytes; TCP: offset 16, beyond what RFC 792 requires).
    const uint32_t quote_end_by_header = info->inner_l3_offset + load_be16(quote + kIpv4TotalLength);
    const uint32_t quote_end =
        quote_end_by_header < info->l3_end() ? quote_end_by_header : info->l3_end();
    const uint32_t field_offset = info->inner_l4_offset + l4_checksum_offset(protocol);
    if (field_offset + 2 <= quote_end) {
      ChecksumDelta pseudo_header_change = quoted_addresses;
      pseudo_header_change.add(port_change);
      icmp_change.add(apply_to_l4_checksum(frame + field_offset, protocol, pseudo_header_change));
    }
    info->inner_src_port = translation.quoted_src_port;
    info->inner_dst_port = translation.quoted_dst_port;
  }
  icmp_change.apply_to(frame + info->l4_offset + kIcmpChecksum);

  info->src_addr = translation.outer_src_addr;
  info->dst_addr = translation.outer_dst_addr;
  info->inner_src_addr = translation.quoted_src_addr;
  info->inner_dst_addr = translation.quoted_dst_addr;
  return true;
}

bool icmp_error_allowed(const uint8_t* frame, const PacketInfo& info) {
  if (info.ip_version != 4 || info.has(kPacketIcmpError) || info.has(kPacketLaterFragment)) {
    return false;
  }
  // Group bit of the destination MAC: link-layer broadcast or multicast.
  if (frame[kEthDst] & 0x01) return false;
  const uint32_t dst = info.dst_addr;
  if (dst == 0xffffffffu || (dst >> 28) == 0xe) return false;
  const uint32_t src = info.src_addr;
  const uint32_t src_first_octet = src >> 24;
  if (src_first_octet == 0 || src_first_octet == 127 || (src >> 28) >= 0xe) return false;
  return true;
}

// ---- Tunnels ----------------------------------------------------------------------

uint32_t encapsulate_ipv4(Frame* frame, PacketInfo* info, const TunnelParams& params) {
  if (info->ip_version != 4) return 0;
  const bool gre = params.type == TunnelType::gre;
  const bool with_key = gre && params.gre_with_key;
  const uint32_t overhead = tunnel_overhead(params.type, with_key);
  const uint32_t l3_offset = info->l3_offset;
  const uint32_t l3_end = info->l3_end();
  const uint32_t inner_len = l3_end - l3_offset;
  if (frame->headroom < overhead || l3_end > frame->len || inner_len + overhead > 0xffff) return 0;

  // Ethernet padding after the inner packet would otherwise sit inside the
  // outer payload.
  frame->tailroom += frame->len - l3_end;
  frame->len = l3_end;
  uint8_t* const data = frame->data - overhead;
  std::memmove(data, frame->data, l3_offset);
  frame->data = data;
  frame->len += overhead;
  frame->headroom -= overhead;

  const uint8_t* inner = data + l3_offset + overhead;
  const uint8_t tos = inner[kIpv4Tos];
  const uint16_t df = load_be16(inner + kIpv4FlagsFragment) & kIpv4FlagDf;
  const uint8_t protocol = gre ? kProtoGre : kProtoIpip;
  const uint16_t total_len = static_cast<uint16_t>(inner_len + overhead);
  uint8_t* outer = data + l3_offset;
  write_ipv4_header(outer, tos, total_len, params.identification, df, params.ttl, protocol,
                    params.src_addr, params.dst_addr);
  if (gre) {
    uint8_t* gre_header = outer + kIpv4HeaderMin;
    store_be16(gre_header, with_key ? kGreFlagKey : 0);
    store_be16(gre_header + kGreProtocol, kEtherTypeIpv4);
    if (with_key) store_be32(gre_header + kGreHeaderMin, params.gre_key);
  }

  PacketInfo outer_info{};
  outer_info.src_addr = params.src_addr;
  outer_info.dst_addr = params.dst_addr;
  outer_info.gre_key = with_key ? params.gre_key : 0;
  outer_info.l3_offset = static_cast<uint16_t>(l3_offset);
  outer_info.l4_offset = static_cast<uint16_t>(l3_offset + kIpv4HeaderMin);
  outer_info.l4_len = static_cast<uint16_t>(total_len - kIpv4HeaderMin);
  outer_info.inner_l3_offset = static_cast<uint16_t>(l3_offset + overhead);
  outer_info.flags = static_cast<uint16_t>((info->flags & kPacketVlan) | kPacketIpChecksumOk | kPacketTunnel |
                                           (df ? kPacketDontFragment : 0) | (gre ? kPacketL4 : 0) |
                                           (with_key ? kPacketGreKey : 0));
  outer_info.ether_type = info->ether_type;
  outer_info.vlan_tci = info->vlan_tci;
  outer_info.inner_ether_type = kEtherTypeIpv4;
  outer_info.ip_id = params.identification;
  outer_info.ip_version = 4;
  outer_info.ip_protocol = protocol;
  outer_info.ttl = params.ttl;
  outer_info.tos = tos;
  *info = outer_info;
  return overhead;
}

ParseStatus decapsulate(Frame* frame, PacketInfo* info) {
  const bool tunnel = info->ip_version == 4 && info->has(kPacketTunnel) &&
                      info->inner_ether_type == kEtherTypeIpv4 &&
                      (info->ip_protocol == kProtoIpip || info->ip_protocol == kProtoGre);
  if (!tunnel) return ParseStatus::drop(DropReason::malformed_tunnel);
  // A fragment of a tunnel packet needs reassembly first.
  if (info->has(kPacketFragment)) return ParseStatus::drop(DropReason::fragment);
  const uint32_t l3_end = info->l3_end();
  if (l3_end > frame->len) return ParseStatus::drop(DropReason::truncated);

  PacketInfo inner;
  const ParseStatus inner_status = parse_ipv4_at(frame->data, info->inner_l3_offset, l3_end, &inner);
  if (!inner_status.is_ok()) return inner_status;

  const uint8_t outer_ecn = info->tos & kEcnMask;
  const uint8_t inner_ecn = inner.tos & kEcnMask;
  if (outer_ecn == kEcnCe && inner_ecn != kEcnCe) {
    if (inner_ecn == kEcnNotEct) return ParseStatus::drop(DropReason::malformed_tunnel);
    uint8_t* inner_ip = frame->data + inner.l3_offset;
    const uint16_t old_word = load_be16(inner_ip + kIpv4VersionIhl);  // version/IHL + TOS
    inner_ip[kIpv4Tos] |= kEcnCe;
    ChecksumDelta change;
    change.replace16(old_word, load_be16(inner_ip + kIpv4VersionIhl));
    change.apply_to(inner_ip + kIpv4Checksum);
  }

  // Whatever follows the inner packet inside the outer one (and the outer
  // packet's Ethernet padding) goes with the outer header.
  const uint32_t l3_offset = info->l3_offset;
  const uint32_t strip = info->inner_l3_offset - l3_offset;
  const uint32_t inner_end = inner.l3_end();
  frame->tailroom += frame->len - inner_end;
  frame->len = inner_end - strip;
  std::memmove(frame->data + strip, frame->data, l3_offset);
  frame->data += strip;
  frame->headroom += strip;
  return parse_frame(frame->data, frame->len, info);
}

// ---- ICMP messages the balancer creates --------------------------------------------

uint32_t build_icmp_frag_needed(uint8_t* out, uint32_t capacity, const uint8_t* frame,
                                const PacketInfo& info, const IcmpReplyParams& params,
                                uint16_t next_hop_mtu) {
  if (info.ip_version != 4) return 0;
  const uint32_t header_len = static_cast<uint32_t>(info.l4_offset) - info.l3_offset;
  const uint32_t quoted_payload = info.l4_len < kIcmpQuotedL4Bytes ? info.l4_len : kIcmpQuotedL4Bytes;
  const uint32_t quote_len = header_len + quoted_payload;
  const uint32_t l2_len = kEthHeaderLen + (params.vlan_tagged ? kVlanTagLen : 0);
  const uint32_t ip_total = kIpv4HeaderMin + kIcmpHeaderLen + quote_len;
  if (capacity < l2_len + ip_total) return 0;

  const uint8_t* original = frame + info.l3_offset;
  write_ethernet_header(out, params, kEtherTypeIpv4);
  // As Linux icmp_send does: internetwork-control precedence, keeping the
  // original's RFC 1349 TOS bits; DF clear, the message is small.
  const uint8_t tos = static_cast<uint8_t>(0xc0 | (original[kIpv4Tos] & 0x1e));
  write_ipv4_header(out + l2_len, tos, static_cast<uint16_t>(ip_total), params.identification, 0,
                    params.ttl, kProtoIcmp, params.src_addr, load_be32(original + kIpv4Src));
  uint8_t* icmp = out + l2_len + kIpv4HeaderMin;
  icmp[kIcmpType] = kIcmpDestUnreachable;
  icmp[kIcmpCode] = kIcmpCodeFragNeeded;
  store_be16(icmp + kIcmpChecksum, 0);
  store_be16(icmp + kIcmpEchoId, 0);  // unused
  store_be16(icmp + kIcmpNextHopMtu, next_hop_mtu);
  std::memcpy(icmp + kIcmpHeaderLen, original, quote_len);
  store_be16(icmp + kIcmpChecksum, checksum(icmp, kIcmpHeaderLen + quote_len));
  return l2_len + ip_total;
}

bool make_echo_reply(uint8_t* frame, PacketInfo* info, uint8_t ttl) {
  if (info->ip_version != 4 || info->ip_protocol != kProtoIcmp || !info->has(kPacketL4) ||
      info->has(kPacketFragment) || info->icmp_type != kIcmpEchoRequest || info->icmp_code != 0) {
    return false;
  }
  uint8_t* ip = frame + info->l3_offset;
  // Swapping the addresses leaves the one's-complement sum as it was.
  const uint32_t src = load_be32(ip + kIpv4Src);
  store_be32(ip + kIpv4Src, load_be32(ip + kIpv4Dst));
  store_be32(ip + kIpv4Dst, src);
  const uint16_t old_ttl_word = load_be16(ip + kIpv4Ttl);
  ip[kIpv4Ttl] = ttl;
  ChecksumDelta ip_change;
  ip_change.replace16(old_ttl_word, load_be16(ip + kIpv4Ttl));
  ip_change.apply_to(ip + kIpv4Checksum);

  uint8_t* icmp = frame + info->l4_offset;
  const uint16_t old_type_word = load_be16(icmp + kIcmpType);
  icmp[kIcmpType] = kIcmpEchoReply;
  ChecksumDelta icmp_change;
  icmp_change.replace16(old_type_word, load_be16(icmp + kIcmpType));
  icmp_change.apply_to(icmp + kIcmpChecksum);

  uint8_t mac[kMacLen];
  std::memcpy(mac, frame + kEthDst, kMacLen);
  std::memmove(frame + kEthDst, frame + kEthSrc, kMacLen);
  std::memcpy(frame + kEthSrc, mac, kMacLen);

  info->src_addr = info->dst_addr;
  info->dst_addr = src;
  info->ttl = ttl;
  info->icmp_type = kIcmpEchoReply;
  return true;
}

}  // namespace l4lb::core

// Fuzz target: any byte string as an Ethernet frame.
//
// Parsing must never read outside the buffer (AddressSanitizer) and what it
// reports must be consistent: every offset inside the frame and inside the
// lengths the headers declare, every field equal to the bytes it came from.
// On frames that parse, every rewrite primitive runs on a copy and the result
// is parsed again: it must parse to exactly the PacketInfo the rewrite kept
// up to date, and every checksum must verify afterwards exactly when it
// verified before (RFC 1624 updates neither repair nor break a packet).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/checksum.h"
#include "core/frame.h"
#include "core/parse.h"
#include "core/rewrite.h"
#include "core/wire.h"

using namespace l4lb::core;
namespace wire = l4lb::core::wire;

#define FUZZ_CHECK(condition)                                                             \
  do {                                                                                    \
    if (!(condition)) {                                                                   \
      std::fprintf(stderr, "fuzz_parse: check failed at line %d: %s\n", __LINE__, #condition); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

namespace {

constexpr uint32_t kHeadroom = 64;
constexpr uint32_t kTailroom = 64;

// A copy of the frame with head- and tailroom, exactly sized so that
// AddressSanitizer sees any access past either end.
struct Copy {
  explicit Copy(const uint8_t* data, uint32_t len) : storage(kHeadroom + len + kTailroom, 0) {
    if (len != 0) std::memcpy(storage.data() + kHeadroom, data, len);
    frame = Frame{storage.data() + kHeadroom, len, kHeadroom, kTailroom, 0, 0, 0};
  }
  std::vector<uint8_t> storage;
  Frame frame;
};

PacketInfo parse_or_die(const uint8_t* data, uint32_t len) {
  PacketInfo info;
  FUZZ_CHECK(parse_frame(data, len, &info).is_ok());
  return info;
}

// ---- Checksum verification (one's-complement sum over the covered bytes is -0) ----

bool ipv4_header_verifies(const uint8_t* frame, const PacketInfo& info) {
  return checksum(frame + info.l3_offset, info.l4_offset - info.l3_offset) == 0;
}

uint32_t pseudo_header_sum(const uint8_t* frame, const PacketInfo& info, uint32_t length) {
  const uint8_t* ip = frame + info.l3_offset;
  uint8_t tail[8] = {};
  store_be32(tail, length);
  tail[7] = info.ip_protocol;
  if (info.ip_version == 4) return checksum_partial(tail, 8, checksum_partial(ip + wire::kIpv4Src, 8));
  return checksum_partial(tail, 8, checksum_partial(ip + wire::kIpv6Src, 32));
}

// Bytes a TCP/UDP checksum covers: TCP the whole IP payload, UDP its length field.
uint32_t l4_covered_len(const uint8_t* frame, const PacketInfo& info) {
  if (info.ip_protocol == wire::kProtoUdp) return load_be16(frame + info.l4_offset + wire::kUdpLength);
  return info.l4_len;
}

bool has_ports(const PacketInfo& info) {
  return info.has(kPacketL4) && !info.has(kPacketLaterFragment) &&
         (info.ip_protocol == wire::kProtoTcp || info.ip_protocol == wire::kProtoUdp);
}

// Whether the packet has a TCP/UDP checksum whose validity we can judge: a
// whole datagram (no fragment) and, for UDP, a checksum that is present.
bool l4_checksum_judgeable(const uint8_t* frame, const PacketInfo& info) {
  if (!has_ports(info) || info.has(kPacketFragment)) return false;
  if (info.ip_protocol == wire::kProtoUdp &&
      load_be16(frame + info.l4_offset + wire::kUdpChecksum) == 0) {
    return false;
  }
  return true;
}

bool l4_verifies(const uint8_t* frame, const PacketInfo& info) {
  const uint32_t length = l4_covered_len(frame, info);
  return checksum_finish(checksum_partial(frame + info.l4_offset, length, pseudo_header_sum(frame, info, length))) == 0;
}

bool icmp_verifies(const uint8_t* frame, const PacketInfo& info) {
  return checksum(frame + info.l4_offset, info.l4_len) == 0;
}

// ---- Invariants of a parse result ----------------------------------------------------

void check_ip_invariants(const uint8_t* data, uint32_t limit, const PacketInfo& info) {
  const uint32_t l3 = info.l3_offset;
  const uint32_t l4 = info.l4_offset;
  const uint32_t end = info.l3_end();
  FUZZ_CHECK(end <= limit);
  FUZZ_CHECK(l3 < l4 && l4 <= end);
  const uint8_t* ip = data + l3;
  if (info.ip_version == 4) {
    const uint32_t header_len = l4 - l3;
    FUZZ_CHECK(header_len >= 20 && header_len <= 60 && header_len % 4 == 0);
    FUZZ_CHECK(header_len == static_cast<uint32_t>(ip[0] & 0x0f) * 4);
    FUZZ_CHECK((header_len > 20) == info.has(kPacketIpOptions));
    FUZZ_CHECK(end - l3 == load_be16(ip + wire::kIpv4TotalLength));
    FUZZ_CHECK(info.src_addr == load_be32(ip + wire::kIpv4Src));
    FUZZ_CHECK(info.dst_addr == load_be32(ip + wire::kIpv4Dst));
    FUZZ_CHECK(info.ip_protocol == ip[wire::kIpv4Protocol]);
    FUZZ_CHECK(info.ttl == ip[wire::kIpv4Ttl]);
    FUZZ_CHECK(info.ip_id == load_be16(ip + wire::kIpv4Id));
    FUZZ_CHECK(info.has(kPacketIpChecksumOk) == ipv4_header_verifies(data, info));
  } else {
    FUZZ_CHECK(info.ip_version == 6);
    FUZZ_CHECK(l4 >= l3 + 40 && (l4 - l3 - 40) % 8 == 0);
    FUZZ_CHECK(end - l3 == 40u + load_be16(ip + wire::kIpv6PayloadLength));
    FUZZ_CHECK(info.src_addr == 0 && info.dst_addr == 0);
  }
  FUZZ_CHECK(info.has(kPacketLaterFragment) == (info.frag_offset != 0));
  if (info.has(kPacketLaterFragment)) {
    FUZZ_CHECK(!info.has(kPacketL4) && info.src_port == 0 && info.dst_port == 0);
  }
  if (info.has(kPacketL4)) {
    switch (info.ip_protocol) {
      case wire::kProtoTcp:
        FUZZ_CHECK(info.l4_len >= 20);
        FUZZ_CHECK(static_cast<uint32_t>(data[l4 + wire::kTcpDataOffset] >> 4) * 4 <= info.l4_len);
        FUZZ_CHECK(info.dst_port == load_be16(data + l4 + wire::kTcpDstPort));
        break;
      case wire::kProtoUdp: {
        const uint32_t udp_len = load_be16(data + l4 + wire::kUdpLength);
        FUZZ_CHECK(udp_len >= 8 && udp_len <= info.l4_len);
        FUZZ_CHECK(info.src_port == load_be16(data + l4 + wire::kUdpSrcPort));
        break;
      }
      case wire::kProtoIcmp:
      case wire::kProtoIcmpv6:
        FUZZ_CHECK(info.l4_len >= 8);
        FUZZ_CHECK(info.icmp_type == data[l4]);
        break;
      case wire::kProtoGre:
        FUZZ_CHECK(info.has(kPacketTunnel));
        FUZZ_CHECK(info.inner_l3_offset >= l4 + 4 && info.inner_l3_offset <= l4 + 16);
        break;
      default:
        FUZZ_CHECK(false);
    }
  } else {
    FUZZ_CHECK(info.src_port == 0 && info.dst_port == 0 && info.icmp_type == 0);
  }
  if (info.has(kPacketTunnel)) {
    FUZZ_CHECK(info.inner_l3_offset >= l4 && info.inner_l3_offset <= end);
  }
  if (info.has(kPacketQuoteIp)) {
    FUZZ_CHECK(info.has(kPacketIcmpError) && info.ip_version == 4);
    FUZZ_CHECK(info.inner_l3_offset == l4 + 8);
    FUZZ_CHECK(info.inner_l4_offset >= info.inner_l3_offset + 20u && info.inner_l4_offset <= end);
    const uint8_t* quote = data + info.inner_l3_offset;
    FUZZ_CHECK(static_cast<uint32_t>(info.inner_l4_offset - info.inner_l3_offset) == static_cast<uint32_t>(quote[0] & 0x0f) * 4);
    FUZZ_CHECK(info.inner_src_addr == load_be32(quote + wire::kIpv4Src));
    FUZZ_CHECK(info.inner_dst_addr == load_be32(quote + wire::kIpv4Dst));
    // The quoted L4 bytes lie inside both the outer packet and the quoted one.
    if (info.has(kPacketQuoteL4)) {
      FUZZ_CHECK(info.inner_l4_offset + 8u <= end);
      FUZZ_CHECK(info.inner_l4_offset + 8u <= info.inner_l3_offset + load_be16(quote + wire::kIpv4TotalLength));
    }
  } else {
    FUZZ_CHECK(!info.has(kPacketQuoteL4) && info.inner_src_addr == 0 && info.inner_src_port == 0);
  }
}

void check_invariants(const uint8_t* data, uint32_t len, ParseStatus status, const PacketInfo& info) {
  switch (status.outcome) {
    case ParseOutcome::drop:
      FUZZ_CHECK(status.reason < DropReason::count);
      return;
    case ParseOutcome::not_ip:
      FUZZ_CHECK(info.ether_type != wire::kEtherTypeIpv4 && info.ether_type != wire::kEtherTypeIpv6);
      FUZZ_CHECK(info.l3_offset <= len);
      return;
    case ParseOutcome::ok:
      break;
  }
  FUZZ_CHECK(info.l3_offset == (info.has(kPacketVlan) ? 18 : 14));
  check_ip_invariants(data, len, info);
}

// ---- Rewrite round trips ----------------------------------------------------------------

void check_nat_and_ttl(const uint8_t* data, uint32_t len, const PacketInfo& original) {
  Copy copy(data, len);
  uint8_t* frame = copy.frame.data;
  PacketInfo info = original;
  const bool ip_ok = ipv4_header_verifies(frame, info);
  const bool judge_l4 = l4_checksum_judgeable(frame, info);
  const bool l4_ok = judge_l4 && l4_verifies(frame, info);

  FUZZ_CHECK(rewrite_ipv4_destination(frame, &info, info.dst_addr ^ 0x0a0b0c0du, info.dst_port ^ 0x5555));
  FUZZ_CHECK(rewrite_ipv4_source(frame, &info, ~info.src_addr, static_cast<uint16_t>(info.src_port + 1)));
  const bool expired = info.ttl <= 1;
  FUZZ_CHECK(decrement_ttl(frame, &info) == !expired);

  const PacketInfo reparsed = parse_or_die(frame, len);
  FUZZ_CHECK(reparsed == info);
  FUZZ_CHECK(ipv4_header_verifies(frame, info) == ip_ok);
  if (judge_l4) FUZZ_CHECK(l4_verifies(frame, info) == l4_ok);
}

void check_partial_checksum(const uint8_t* data, uint32_t len, const PacketInfo& original) {
  if (!has_ports(original)) return;
  Copy copy(data, len);
  uint8_t* frame = copy.frame.data;
  copy.frame.flags = kFrameChecksumPartial;
  // Put the frame in the state a local stack leaves it in: the field holds
  // the folded pseudo-header sum.
  const uint32_t offset =
      original.l4_offset + (original.ip_protocol == wire::kProtoTcp ? wire::kTcpChecksum : wire::kUdpChecksum);
  const uint32_t pseudo = pseudo_header_sum(frame, original, l4_covered_len(frame, original));
  store_be16(frame + offset, static_cast<uint16_t>(~checksum_finish(pseudo)));
  FUZZ_CHECK(complete_partial_checksum(&copy.frame, original));
  FUZZ_CHECK((copy.frame.flags & kFrameChecksumPartial) == 0);
  FUZZ_CHECK(l4_verifies(frame, original));
  if (original.ip_protocol == wire::kProtoUdp) FUZZ_CHECK(load_be16(frame + offset) != 0);
}

void check_icmp(const uint8_t* data, uint32_t len, const PacketInfo& original) {
  if (original.ip_version != 4 || !original.has(kPacketL4) || original.ip_protocol != wire::kProtoIcmp) return;
  const bool ip_ok = ipv4_header_verifies(data, original);
  const bool icmp_ok = icmp_verifies(data, original);

  if (original.has(kPacketQuoteIp)) {
    Copy copy(data, len);
    uint8_t* frame = copy.frame.data;
    PacketInfo info = original;
    const bool quote_ok = checksum(frame + info.inner_l3_offset, info.inner_l4_offset - info.inner_l3_offset) == 0;
    IcmpErrorTranslation translation = icmp_error_translation_of(info);
    translation.outer_dst_addr ^= 0x00ff00ffu;
    translation.quoted_src_addr = translation.outer_dst_addr;
    translation.quoted_dst_addr += 77;
    translation.quoted_src_port = static_cast<uint16_t>(translation.quoted_src_port * 3);
    translation.quoted_dst_port ^= 0x8001;
    FUZZ_CHECK(translate_icmp_error(frame, &info, translation));
    FUZZ_CHECK(parse_or_die(frame, len) == info);
    FUZZ_CHECK(ipv4_header_verifies(frame, info) == ip_ok);
    FUZZ_CHECK(icmp_verifies(frame, info) == icmp_ok);
    FUZZ_CHECK((checksum(frame + info.inner_l3_offset, info.inner_l4_offset - info.inner_l3_offset) == 0) == quote_ok);
  }

  if (original.icmp_type == wire::kIcmpEchoRequest && original.icmp_code == 0 && !original.has(kPacketFragment)) {
    Copy copy(data, len);
    uint8_t* frame = copy.frame.data;
    PacketInfo info = original;
    FUZZ_CHECK(make_echo_reply(frame, &info, 64));
    FUZZ_CHECK(parse_or_die(frame, len) == info);
    FUZZ_CHECK(info.icmp_type == wire::kIcmpEchoReply && info.ttl == 64);
    FUZZ_CHECK(ipv4_header_verifies(frame, info) == ip_ok);
    FUZZ_CHECK(icmp_verifies(frame, info) == icmp_ok);
  }
}

void check_frag_needed(const uint8_t* data, const PacketInfo& original) {
  uint8_t out[14 + 4 + 20 + 8 + 60 + 8];
  IcmpReplyParams params{};
  params.dst_mac = MacAddress{{0x02, 0, 0, 0, 0, 1}};
  params.src_mac = MacAddress{{0x02, 0, 0, 0, 0, 2}};
  params.vlan_tagged = original.has(kPacketVlan);
  params.vlan_tci = original.vlan_tci;
  params.src_addr = original.dst_addr;
  params.identification = 1;
  const uint32_t len = build_icmp_frag_needed(out, sizeof out, data, original, params, 1400);
  FUZZ_CHECK(len != 0);
  // The exactly sized copy lets AddressSanitizer police the parse of the result.
  const std::vector<uint8_t> message(out, out + len);
  const PacketInfo info = parse_or_die(message.data(), len);
  FUZZ_CHECK(info.has(kPacketIpChecksumOk) && icmp_verifies(message.data(), info));
  FUZZ_CHECK(info.icmp_type == 3 && info.icmp_code == 4 && info.dst_addr == original.src_addr);
  FUZZ_CHECK(info.has(kPacketQuoteIp));
  FUZZ_CHECK(info.inner_src_addr == original.src_addr && info.inner_dst_addr == original.dst_addr);
  FUZZ_CHECK(info.has(kPacketQuoteL4) == (original.l4_len >= 8 && !original.has(kPacketLaterFragment)));
  if (has_ports(original)) {
    FUZZ_CHECK(info.inner_src_port == original.src_port && info.inner_dst_port == original.dst_port);
  }
  FUZZ_CHECK(!icmp_error_allowed(message.data(), info));
}

void check_tunnels(const uint8_t* data, uint32_t len, const PacketInfo& original) {
  const TunnelParams tunnels[] = {
      {.type = TunnelType::ipip, .src_addr = 0xc6120001, .dst_addr = original.dst_addr, .identification = 5},
      {.type = TunnelType::gre, .src_addr = 0xc6120001, .dst_addr = 1, .identification = 6},
      {.type = TunnelType::gre, .src_addr = 2, .dst_addr = 3, .ttl = 1, .gre_with_key = true, .gre_key = len},
  };
  for (const TunnelParams& params : tunnels) {
    Copy copy(data, len);
    PacketInfo info = original;
    const uint32_t added = encapsulate_ipv4(&copy.frame, &info, params);
    if (original.l3_end() - original.l3_offset + tunnel_overhead(params.type, params.gre_with_key) > 0xffff) {
      FUZZ_CHECK(added == 0);
      continue;
    }
    FUZZ_CHECK(added == tunnel_overhead(params.type, params.gre_with_key));
    FUZZ_CHECK(copy.frame.len == original.l3_end() + added);
    FUZZ_CHECK(parse_or_die(copy.frame.data, copy.frame.len) == info);
    FUZZ_CHECK(ipv4_header_verifies(copy.frame.data, info));

    // The inner packet parses as before, only further in.
    PacketInfo inner;
    FUZZ_CHECK(parse_ipv4_at(copy.frame.data, info.inner_l3_offset, info.l3_end(), &inner).is_ok());
    PacketInfo expected = original;
    expected.ether_type = 0;
    expected.vlan_tci = 0;
    expected.flags &= static_cast<uint16_t>(~kPacketVlan);
    for (uint16_t* offset : {&expected.l3_offset, &expected.l4_offset, &expected.inner_l3_offset, &expected.inner_l4_offset}) {
      if (*offset != 0) *offset = static_cast<uint16_t>(*offset + added);
    }
    FUZZ_CHECK(inner == expected);

    const ParseStatus decapsulated = decapsulate(&copy.frame, &info);
    FUZZ_CHECK(decapsulated.is_ok());
    FUZZ_CHECK(copy.frame.len == original.l3_end() && copy.frame.headroom == kHeadroom);
    FUZZ_CHECK(std::memcmp(copy.frame.data, data, copy.frame.len) == 0);
    FUZZ_CHECK(info == original);
  }
}

// Decapsulation of whatever tunnel packet the input is: either the documented
// drop with the frame untouched, or the Ethernet header followed by the inner
// packet, byte for byte but for a congestion mark carried over (RFC 6040).
void check_decapsulation(const uint8_t* data, uint32_t len, const PacketInfo& original) {
  if (!original.has(kPacketTunnel) || original.inner_ether_type != wire::kEtherTypeIpv4 ||
      (original.ip_protocol != wire::kProtoIpip && original.ip_protocol != wire::kProtoGre)) {
    return;
  }
  Copy copy(data, len);
  PacketInfo info = original;
  const ParseStatus status = decapsulate(&copy.frame, &info);
  PacketInfo inner;
  const ParseStatus inner_status = parse_ipv4_at(data, original.inner_l3_offset, original.l3_end(), &inner);
  const bool outer_ce = (original.tos & wire::kEcnMask) == wire::kEcnCe;
  const uint8_t inner_ecn = inner.tos & wire::kEcnMask;
  if (original.has(kPacketFragment) || !inner_status.is_ok() || (outer_ce && inner_ecn == wire::kEcnNotEct)) {
    FUZZ_CHECK(!status.is_ok());
    FUZZ_CHECK(copy.frame.len == len && std::memcmp(copy.frame.data, data, len) == 0);
    if (!original.has(kPacketFragment) && !inner_status.is_ok()) FUZZ_CHECK(status == inner_status);
    return;
  }
  FUZZ_CHECK(status.is_ok());
  const uint32_t l3 = original.l3_offset;
  const uint32_t inner_len = inner.l3_end() - original.inner_l3_offset;
  FUZZ_CHECK(copy.frame.len == l3 + inner_len);
  FUZZ_CHECK(copy.frame.headroom == kHeadroom + (original.inner_l3_offset - l3));
  FUZZ_CHECK(std::memcmp(copy.frame.data, data, l3) == 0);
  const uint8_t* before = data + original.inner_l3_offset;
  const uint8_t* after = copy.frame.data + l3;
  const bool marked = outer_ce && inner_ecn != wire::kEcnCe;
  for (uint32_t i = 0; i < inner_len; ++i) {
    if (marked && (i == wire::kIpv4Tos || i == wire::kIpv4Checksum || i == wire::kIpv4Checksum + 1)) continue;
    FUZZ_CHECK(before[i] == after[i]);
  }
  if (marked) FUZZ_CHECK(after[wire::kIpv4Tos] == (before[wire::kIpv4Tos] | wire::kEcnCe));
  FUZZ_CHECK(info.has(kPacketIpChecksumOk) == inner.has(kPacketIpChecksumOk));
  FUZZ_CHECK(info.src_addr == inner.src_addr && info.dst_addr == inner.dst_addr && info.dst_port == inner.dst_port);
  FUZZ_CHECK(info.l3_offset == l3 && info.l3_end() == copy.frame.len);
}

// RFC 1122 §3.2.2 as icmp_error_allowed applies it.
void check_icmp_policy(const uint8_t* data, const PacketInfo& info) {
  if (!icmp_error_allowed(data, info)) return;
  FUZZ_CHECK(!is_icmp_error(info) && !info.has(kPacketLaterFragment) && (data[0] & 1) == 0);
  FUZZ_CHECK(info.src_addr >> 24 != 0 && info.src_addr >> 24 != 127 && info.src_addr >> 28 < 0xe);
  FUZZ_CHECK(info.dst_addr >> 28 != 0xe && info.dst_addr != 0xffffffffu);
}

void check_ethernet(const uint8_t* data, uint32_t len, const PacketInfo& original) {
  Copy copy(data, len);
  PacketInfo info = original;
  const EthernetRewrite tag{.dst = {{1, 2, 3, 4, 5, 6}}, .src = {{6, 5, 4, 3, 2, 1}}, .vlan = VlanAction::set, .vlan_tci = 0x0123};
  FUZZ_CHECK(rewrite_ethernet(&copy.frame, &info, tag));
  FUZZ_CHECK(parse_or_die(copy.frame.data, copy.frame.len) == info);
  const EthernetRewrite untag{.dst = {{1, 2, 3, 4, 5, 6}}, .src = {{6, 5, 4, 3, 2, 1}}, .vlan = VlanAction::strip};
  FUZZ_CHECK(rewrite_ethernet(&copy.frame, &info, untag));
  FUZZ_CHECK(parse_or_die(copy.frame.data, copy.frame.len) == info);
  FUZZ_CHECK(copy.frame.len == len - (original.has(kPacketVlan) ? 4 : 0));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 0x20000) return 0;
  const uint32_t len = static_cast<uint32_t>(size);
  PacketInfo info;
  const ParseStatus status = parse_frame(data, len, &info);
  check_invariants(data, len, status, info);

  PacketInfo again;
  FUZZ_CHECK(parse_frame(data, len, &again) == status);
  if (!status.is_ok()) return 0;
  FUZZ_CHECK(again == info);

  if (info.has(kPacketTunnel) && info.inner_ether_type == wire::kEtherTypeIpv4) {
    PacketInfo inner;
    if (parse_ipv4_at(data, info.inner_l3_offset, info.l3_end(), &inner).is_ok()) {
      check_ip_invariants(data, info.l3_end(), inner);
    }
  } else if (info.has(kPacketTunnel) && info.inner_ether_type == wire::kEtherTypeIpv6) {
    PacketInfo inner;
    if (parse_ipv6_at(data, info.inner_l3_offset, info.l3_end(), &inner).is_ok()) {
      check_ip_invariants(data, info.l3_end(), inner);
    }
  }

  check_ethernet(data, len, info);
  check_partial_checksum(data, len, info);
  if (info.ip_version == 6) {
    Copy copy(data, len);
    PacketInfo v6 = info;
    FUZZ_CHECK(!rewrite_ipv4_destination(copy.frame.data, &v6, 1, 1));
    FUZZ_CHECK(decrement_ttl(copy.frame.data, &v6) == (info.ttl > 1));
    FUZZ_CHECK(parse_or_die(copy.frame.data, len) == v6);
    return 0;
  }
  check_nat_and_ttl(data, len, info);
  check_icmp(data, len, info);
  check_icmp_policy(data, info);
  check_frag_needed(data, info);
  check_tunnels(data, len, info);
  check_decapsulation(data, len, info);
  return 0;
}

// In-place rewrite primitives: NAT of addresses and ports, TTL, Ethernet and
// VLAN, ICMP error translation, IPIP/GRE encapsulation and decapsulation,
// ICMP "fragmentation needed" and echo replies.
//
// Every change to an existing header updates its checksums incrementally
// (RFC 1624), so a checksum that arrived wrong leaves wrong by the same
// amount: the balancer never turns a corrupt packet into a valid one. Full
// computation is used only for headers the balancer creates.
//
// Unless stated otherwise a function takes the frame and the PacketInfo that
// parse_frame filled for it, and keeps that PacketInfo describing the frame
// (so the engine can chain rewrites without parsing again). Addresses and
// ports are host order, as in PacketInfo.
#pragma once

#include <cstdint>

#include "core/frame.h"
#include "core/parse.h"
#include "core/wire.h"

namespace l4lb::core {

// ---- Checksum offload ---------------------------------------------------------

// For a TCP/UDP packet whose transport checksum field holds only the
// pseudo-header sum (CHECKSUM_PARTIAL, Frame::flags & kFrameChecksumPartial),
// computes the final checksum as the device would: the sum over the L4
// header and payload with the field as is, complemented; a UDP result of 0 is
// sent as 0xffff (RFC 768). Must run before any incremental update. False
// (nothing written) if the packet has no complete TCP/UDP header.
bool complete_partial_checksum(uint8_t* frame, const PacketInfo& info);

// The same driven by the frame flag: completes the checksum when
// kFrameChecksumPartial is set and clears the flag. True if the frame needs
// no (more) completion.
bool complete_partial_checksum(Frame* frame, const PacketInfo& info);

// ---- NAT ----------------------------------------------------------------------

// Rewrites the IPv4 destination address and, when the packet carries a TCP or
// UDP header (not in a later fragment), the destination port. Updates the IP
// header checksum and the TCP/UDP checksum (a UDP checksum of 0 means "none"
// and stays 0). False, with nothing written, if the packet is not IPv4.
bool rewrite_ipv4_destination(uint8_t* frame, PacketInfo* info, uint32_t addr, uint16_t port);

// The same for the source address and port (replies back to the VIP, full-NAT
// source translation).
bool rewrite_ipv4_source(uint8_t* frame, PacketInfo* info, uint32_t addr, uint16_t port);

// Decrements the IPv4 TTL (or IPv6 hop limit). False, with nothing changed,
// when it would expire (TTL <= 1 on arrival): the caller drops the packet
// and counts ttl_expired.
[[nodiscard]] bool decrement_ttl(uint8_t* frame, PacketInfo* info);

// ---- Ethernet -------------------------------------------------------------------

enum class VlanAction : uint8_t {
  keep,   // leave the tag (or its absence) as it is
  strip,  // remove the tag if there is one
  set,    // tag with vlan_tci: replace the TCI (keeping the TPID), or insert an 802.1Q tag
};

struct EthernetRewrite {
  MacAddress dst;
  MacAddress src;
  VlanAction vlan = VlanAction::keep;
  uint16_t vlan_tci = 0;  // host order; PCP, DEI and VLAN id, for VlanAction::set
};

// Sets the MAC addresses and applies the VLAN action. Inserting a tag moves
// the MAC addresses 4 bytes into Frame::headroom; stripping moves them 4
// bytes towards the payload. Frame::data/len/headroom and every offset in
// *info follow. False, with nothing changed, if a tag must be inserted and
// headroom is short.
bool rewrite_ethernet(Frame* frame, PacketInfo* info, const EthernetRewrite& rewrite);

// ---- ICMP errors ------------------------------------------------------------------

// New values for an ICMP error that quotes a translated flow. Start from
// icmp_error_translation_of(info) (every value unchanged) and set what moves.
struct IcmpErrorTranslation {
  uint32_t outer_src_addr;   // host order
  uint32_t outer_dst_addr;   // host order
  uint32_t quoted_src_addr;  // host order
  uint32_t quoted_dst_addr;  // host order
  uint16_t quoted_src_port;  // host order; applied only when TCP/UDP ports are quoted
  uint16_t quoted_dst_port;  // host order; idem
};

IcmpErrorTranslation icmp_error_translation_of(const PacketInfo& info);

// Rewrites an ICMPv4 error (kPacketIcmpError with kPacketQuoteIp): the outer
// addresses, the quoted IPv4 addresses, and the quoted TCP/UDP ports when
// they are quoted. Fixes, incrementally, the outer IP checksum, the quoted IP
// checksum, the quoted L4 checksum when the quote holds it (UDP: within the
// 8 bytes, unless 0; TCP: at offset 16, usually not quoted) and the ICMP
// checksum, which covers all quoted bytes. False, with nothing changed, for
// anything else.
bool translate_icmp_error(uint8_t* frame, PacketInfo* info, const IcmpErrorTranslation& translation);

// True for an ICMP (v4 or v6) error message: such a packet is never answered
// with ICMP (RFC 1122 §3.2.2).
inline bool is_icmp_error(const PacketInfo& info) { return info.has(kPacketIcmpError); }

// Whether RFC 1122 §3.2.2 allows an ICMPv4 error about this packet: not
// about an ICMP error, a later fragment, a link-layer or IP broadcast or
// multicast, nor a source that names no single host (0.0.0.0, loopback,
// multicast, class E, limited broadcast). Rate limiting is the caller's.
bool icmp_error_allowed(const uint8_t* frame, const PacketInfo& info);

// ---- Tunnels ----------------------------------------------------------------------

enum class TunnelType : uint8_t {
  ipip,  // IPv4 in IPv4, protocol 4 (RFC 2003)
  gre,   // IPv4 in GRE in IPv4, protocol 47 (RFC 2784, RFC 2890 key)
};

struct TunnelParams {
  TunnelType type = TunnelType::ipip;
  uint32_t src_addr = 0;        // host order; outer source
  uint32_t dst_addr = 0;        // host order; outer destination (the real server)
  uint16_t identification = 0;  // host order; outer IPv4 identification (a per-worker counter)
  uint8_t ttl = 64;             // outer TTL
  bool gre_with_key = false;    // GRE only: add the K bit and gre_key
  uint32_t gre_key = 0;         // host order
};

// Bytes an encapsulation adds: 20 (IPIP), 24 (GRE) or 28 (GRE with key).
constexpr uint32_t tunnel_overhead(TunnelType type, bool gre_with_key) {
  return type == TunnelType::ipip ? wire::kIpv4HeaderMin
                                  : wire::kIpv4HeaderMin + wire::kGreHeaderMin +
                                        (gre_with_key ? wire::kGreOptionLen : 0);
}

// Prepends an outer IPv4 header (and GRE header) to the inner IPv4 packet,
// moving the Ethernet header (VLAN tag included) into Frame::headroom. The
// outer header copies DSCP and ECN from the inner one (RFC 2983 uniform
// model; RFC 6040 normal mode) and its DF bit, has fragment offset 0 and a
// fully computed checksum. Ethernet padding after the inner packet is
// dropped. Returns the bytes added (tunnel_overhead), or 0 with nothing
// changed if the packet is not IPv4, headroom is short or the result would
// exceed 65535 bytes. On success *info describes the new outer packet, as
// parse_frame would.
uint32_t encapsulate_ipv4(Frame* frame, PacketInfo* info, const TunnelParams& params);

// Strips the outer IPv4 header (and GRE header) of an IPv4-in-IPIP or
// IPv4-in-GRE packet, moving the Ethernet header forward, and trims the frame
// to the end of the inner packet; then parses the inner packet into *info. Propagates congestion marks as RFC 6040 §4.2
// asks: outer CE over an ECN-capable inner packet sets CE on it (checksum
// updated); outer CE over a not-ECT inner packet is dropped
// (malformed_tunnel), as Linux does. Drops malformed_tunnel for anything
// that is not such a tunnel packet; the frame is unchanged on any drop
// decided before the strip. The GRE checksum, if any, is not verified.
ParseStatus decapsulate(Frame* frame, PacketInfo* info);

// ---- ICMP messages the balancer creates --------------------------------------------

struct IcmpReplyParams {
  MacAddress dst_mac;           // the next hop towards the original sender
  MacAddress src_mac;           // the egress port's address
  bool vlan_tagged = false;     // add an 802.1Q tag with vlan_tci
  uint16_t vlan_tci = 0;        // host order
  uint32_t src_addr = 0;        // host order; the VIP or the balancer's own address
  uint16_t identification = 0;  // host order
  uint8_t ttl = 64;
};

// Builds into out (capacity bytes) a complete Ethernet frame carrying an
// ICMP destination unreachable / fragmentation needed (type 3 code 4) to the
// sender of the IPv4 packet described by info, with next_hop_mtu in the low
// half of the unused word (RFC 1191 §4) and the original IPv4 header (with
// options) plus the first 8 bytes of its payload quoted (RFC 792). Full IP and
// ICMP checksums. Returns the frame length, or 0 if it does not fit or info is
// not IPv4. Whether to send it (icmp_error_allowed, rate limits) is the
// caller's decision.
uint32_t build_icmp_frag_needed(uint8_t* out, uint32_t capacity, const uint8_t* frame,
                                const PacketInfo& info, const IcmpReplyParams& params,
                                uint16_t next_hop_mtu);

// Turns an ICMP echo request (type 8 code 0) into its reply in place: swaps
// the IPv4 addresses and the MAC addresses (the reply goes back to the
// neighbour that sent the request), sets type 0 and the given TTL, and
// updates the IP and ICMP checksums incrementally. False, with nothing
// changed, for anything but an IPv4 echo request.
bool make_echo_reply(uint8_t* frame, PacketInfo* info, uint8_t ttl = 64);

}  // namespace l4lb::core

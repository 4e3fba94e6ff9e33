// Pure parsers for the frames the balancer sees: Ethernet with at most one
// VLAN tag, IPv4 (options, fragments), IPv6 (bounded extension-header walk),
// TCP, UDP, ICMP (including the packet quoted by an error), ICMPv6, GRE and
// IPIP.
//
// Every read is bounds-checked against both the bytes captured and the length
// the enclosing header declares; a length field is never trusted beyond
// either. Nothing allocates, nothing is virtual, nothing throws: parse_frame
// runs once for every packet.
#pragma once

#include <cstddef>  // drop_reason.h uses size_t without including it
#include <cstdint>

#include "core/drop_reason.h"

namespace l4lb::core {

// PacketInfo::flags
inline constexpr uint16_t kPacketVlan = 1u << 0;              // one 802.1Q (or 802.1ad) tag present
inline constexpr uint16_t kPacketIpOptions = 1u << 1;         // IPv4 IHL > 5
inline constexpr uint16_t kPacketDontFragment = 1u << 2;      // IPv4 DF
inline constexpr uint16_t kPacketMoreFragments = 1u << 3;     // IPv4 MF / IPv6 fragment header M
inline constexpr uint16_t kPacketLaterFragment = 1u << 4;     // fragment offset != 0: no L4 header here
inline constexpr uint16_t kPacketIpChecksumOk = 1u << 5;      // IPv4 header checksum verifies
inline constexpr uint16_t kPacketL4 = 1u << 6;                // TCP/UDP/ICMP/ICMPv6/GRE header parsed
inline constexpr uint16_t kPacketIcmpError = 1u << 7;         // ICMP error (quotes a packet)
inline constexpr uint16_t kPacketQuoteIp = 1u << 8;           // the quoted IPv4 header is complete
inline constexpr uint16_t kPacketQuoteL4 = 1u << 9;           // 8 bytes of quoted L4 present (ports valid)
inline constexpr uint16_t kPacketTunnel = 1u << 10;           // GRE/IPIP/6in4: inner_l3_offset valid
inline constexpr uint16_t kPacketGreChecksum = 1u << 11;      // GRE C bit
inline constexpr uint16_t kPacketGreKey = 1u << 12;           // GRE K bit: gre_key valid
inline constexpr uint16_t kPacketGreSequence = 1u << 13;      // GRE S bit: gre_sequence valid
inline constexpr uint16_t kPacketFragment = kPacketMoreFragments | kPacketLaterFragment;

// What parsing found, filled for every packet. 64 bytes, no padding: all
// 32-bit fields first, then 16-bit, then 8-bit.
//
// Offsets are bytes from the first byte of the Ethernet header (Frame::data),
// so that rewrites can patch fields in place. Every numeric field is in HOST
// order (198.18.0.1 is 0xc6120001); the frame itself keeps network order.
// Fields that do not apply to a packet are zero.
struct PacketInfo {
  uint32_t src_addr;          // host order; IPv4 source (0 for IPv6: read it at l3_offset + 8)
  uint32_t dst_addr;          // host order; IPv4 destination (0 for IPv6: l3_offset + 24)
  uint32_t inner_src_addr;    // host order; source of the packet quoted by an ICMP error
  uint32_t inner_dst_addr;    // host order; destination of the quoted packet
  uint32_t gre_key;           // host order; with kPacketGreKey
  uint32_t gre_sequence;      // host order; with kPacketGreSequence

  uint16_t l3_offset;         // the IP header: 14, or 18 behind a VLAN tag
  uint16_t l4_offset;         // first byte after the IPv4 options / IPv6 extension headers:
                              // the L4 header, or the fragment data of a later fragment
  uint16_t l4_len;            // bytes from l4_offset to the end of the IP packet as its header
                              // declares; frame bytes after l4_offset + l4_len are padding
  uint16_t inner_l3_offset;   // kPacketTunnel: the tunnelled packet; kPacketQuoteIp: the
                              // quoted IPv4 header (inside the ICMP payload)
  uint16_t inner_l4_offset;   // kPacketQuoteIp: the quoted L4 header (first 8 bytes valid only
                              // with kPacketQuoteL4)
  uint16_t flags;             // kPacket* bits
  uint16_t ether_type;        // host order; EtherType after the VLAN tag, if any
  uint16_t vlan_tci;          // host order; with kPacketVlan: PCP, DEI and VLAN id
  uint16_t inner_ether_type;  // host order; kPacketTunnel: GRE protocol type, 0x0800 for IPIP,
                              // 0x86dd for IPv6-in-IPv4 (protocol 41)
  uint16_t ip_id;             // host order; IPv4 identification (0 for IPv6)
  uint16_t frag_offset;       // host order; in 8-byte units, as on the wire (IPv4, IPv6)
  uint16_t src_port;          // host order; TCP/UDP
  uint16_t dst_port;          // host order; TCP/UDP
  uint16_t icmp_id;           // host order; ICMP/ICMPv6 echo request or reply identifier
  uint16_t inner_src_port;    // host order; kPacketQuoteL4 and the quote is TCP/UDP
  uint16_t inner_dst_port;    // host order; idem

  uint8_t ip_version;         // 4 or 6
  uint8_t ip_protocol;        // IPv4 protocol or IPv6 upper-layer header (after the walk)
  uint8_t ttl;                // IPv4 TTL or IPv6 hop limit
  uint8_t tos;                // IPv4 DSCP+ECN byte or IPv6 traffic class
  uint8_t tcp_flags;          // TCP flags byte (CWR..FIN)
  uint8_t icmp_type;          // ICMP/ICMPv6
  uint8_t icmp_code;          // ICMP/ICMPv6
  uint8_t inner_protocol;     // kPacketQuoteIp: protocol of the quoted packet

  bool has(uint16_t flag) const { return (flags & flag) != 0; }
  // One past the last byte of the IP packet (as declared; the frame may be
  // longer by Ethernet padding).
  uint32_t l3_end() const { return static_cast<uint32_t>(l4_offset) + l4_len; }
  bool operator==(const PacketInfo&) const = default;
};
static_assert(sizeof(PacketInfo) == 64, "PacketInfo is filled for every packet: keep it one cache line");

enum class ParseOutcome : uint8_t {
  ok,      // an IPv4 or IPv6 packet; PacketInfo is filled
  not_ip,  // another EtherType (ARP, LLDP, 802.3 LLC...): not an error, the caller passes it on
  drop,    // malformed; ParseStatus::reason says why
};

struct ParseStatus {
  ParseOutcome outcome;
  DropReason reason;  // meaningful only when outcome == drop

  static constexpr ParseStatus ok() { return {ParseOutcome::ok, DropReason::count}; }
  static constexpr ParseStatus not_ip() { return {ParseOutcome::not_ip, DropReason::count}; }
  static constexpr ParseStatus drop(DropReason why) { return {ParseOutcome::drop, why}; }
  bool is_ok() const { return outcome == ParseOutcome::ok; }
  bool operator==(const ParseStatus&) const = default;
};

// Parses one Ethernet frame of `len` bytes starting at `data`.
//
// Drop reasons: truncated (Ethernet header, VLAN tag, IP header cut),
// bad_l2 (more than one VLAN tag), bad_ip_header (version, IHL < 5),
// bad_ip_length (total/payload length < header or > bytes present),
// bad_ipv6_header (extension chain too long, cut, or hop-by-hop not first),
// bad_l4_header (TCP/UDP/ICMP header cut or lying), malformed_tunnel (GRE
// version != 0, routing or reserved bits, header cut). On not_ip only the
// Ethernet fields and l3_offset are filled; on drop *out is not meaningful
// beyond the Ethernet fields.
ParseStatus parse_frame(const uint8_t* data, uint32_t len, PacketInfo* out);

// Parses the IPv4 packet whose header starts at frame + offset and whose
// bytes end at frame + limit at most (the frame length, or the end of the
// enclosing packet for a tunnelled one), then its L4 header. Resets *out and
// fills everything but the Ethernet fields, with offsets relative to `frame`.
// This is how the engine and the decapsulator parse a GRE/IPIP inner packet:
//   parse_ipv4_at(frame, outer.inner_l3_offset, outer.l3_end(), &inner)
ParseStatus parse_ipv4_at(const uint8_t* frame, uint32_t offset, uint32_t limit, PacketInfo* out);

// The same for IPv6: fixed header, payload length, then at most
// kMaxIpv6ExtensionHeaders extension headers. AH, ESP and No Next Header end
// the walk and become ip_protocol with no L4 parsed.
ParseStatus parse_ipv6_at(const uint8_t* frame, uint32_t offset, uint32_t limit, PacketInfo* out);

inline constexpr uint32_t kMaxIpv6ExtensionHeaders = 8;

// GRE header (RFC 2784 with the RFC 2890 key and sequence extensions).
struct GreHeader {
  uint16_t flags;          // host order; flags and version word as on the wire
  uint16_t protocol;       // host order; EtherType of the payload
  uint32_t key;            // host order; with wire::kGreFlagKey
  uint32_t sequence;       // host order; with wire::kGreFlagSequence
  uint8_t length;          // bytes: 4, plus 4 for each of checksum, key, sequence
  uint8_t pad[3];          // zero
};

// Parses a GRE header at p, bounded by end (the end of the enclosing IP
// payload). False for version != 0, the routing bit, reserved bits, or a
// header that does not fit.
bool parse_gre(const uint8_t* p, const uint8_t* end, GreHeader* out);

// ICMP types that are error messages (RFC 1122 §3.2.2: destination
// unreachable, source quench, redirect, time exceeded, parameter problem).
// They quote the packet that caused them, and are never answered with ICMP.
constexpr bool is_icmp_error_type(uint8_t type) {
  return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

}  // namespace l4lb::core

// On-the-wire constants: EtherTypes, IP protocol numbers, header sizes and
// field offsets (bytes from the start of their header). Multi-byte fields are
// big-endian on the wire; read and write them with load_be*/store_be* from
// checksum.h.
#pragma once

#include <cstdint>

namespace l4lb::core {

// An Ethernet (EUI-48) address in wire order.
struct MacAddress {
  uint8_t bytes[6];
  bool operator==(const MacAddress&) const = default;
};

namespace wire {

// ---- Ethernet (IEEE 802.3) and 802.1Q -------------------------------------
inline constexpr uint32_t kMacLen = 6;
inline constexpr uint32_t kEthDst = 0;
inline constexpr uint32_t kEthSrc = 6;
inline constexpr uint32_t kEthType = 12;
inline constexpr uint32_t kEthHeaderLen = 14;
inline constexpr uint32_t kVlanTagLen = 4;  // TPID + TCI, inserted before the EtherType

// EtherType values below 0x0600 are 802.3 length fields (LLC frames).
inline constexpr uint16_t kEtherTypeMin = 0x0600;
inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;       // 802.1Q C-tag
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;       // 802.1ad S-tag
inline constexpr uint16_t kEtherTypeQinQLegacy = 0x9100;  // pre-802.1ad stacked tag
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
inline constexpr uint16_t kEtherTypeTeb = 0x6558;  // transparent Ethernet bridging (GRE)

// ---- IP protocol numbers (IANA) -------------------------------------------
inline constexpr uint8_t kProtoHopByHop = 0;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoIpip = 4;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoIpv6 = 41;
inline constexpr uint8_t kProtoRouting = 43;
inline constexpr uint8_t kProtoFragment = 44;
inline constexpr uint8_t kProtoGre = 47;
inline constexpr uint8_t kProtoEsp = 50;
inline constexpr uint8_t kProtoAh = 51;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoNoNextHeader = 59;
inline constexpr uint8_t kProtoDestinationOptions = 60;

// ---- IPv4 (RFC 791) ---------------------------------------------------------
inline constexpr uint32_t kIpv4HeaderMin = 20;
inline constexpr uint32_t kIpv4HeaderMax = 60;
inline constexpr uint32_t kIpv4VersionIhl = 0;
inline constexpr uint32_t kIpv4Tos = 1;  // DSCP (6 bits) + ECN (2 bits, RFC 3168)
inline constexpr uint32_t kIpv4TotalLength = 2;
inline constexpr uint32_t kIpv4Id = 4;
inline constexpr uint32_t kIpv4FlagsFragment = 6;
inline constexpr uint32_t kIpv4Ttl = 8;  // TTL and protocol share one checksummed word
inline constexpr uint32_t kIpv4Protocol = 9;
inline constexpr uint32_t kIpv4Checksum = 10;
inline constexpr uint32_t kIpv4Src = 12;
inline constexpr uint32_t kIpv4Dst = 16;
inline constexpr uint16_t kIpv4FlagReserved = 0x8000;
inline constexpr uint16_t kIpv4FlagDf = 0x4000;
inline constexpr uint16_t kIpv4FlagMf = 0x2000;
inline constexpr uint16_t kIpv4FragOffsetMask = 0x1fff;  // in 8-byte units
inline constexpr uint8_t kEcnMask = 0x03;
inline constexpr uint8_t kEcnNotEct = 0x00;
inline constexpr uint8_t kEcnCe = 0x03;

// ---- IPv6 (RFC 8200) --------------------------------------------------------
inline constexpr uint32_t kIpv6HeaderLen = 40;
inline constexpr uint32_t kIpv6PayloadLength = 4;
inline constexpr uint32_t kIpv6NextHeader = 6;
inline constexpr uint32_t kIpv6HopLimit = 7;
inline constexpr uint32_t kIpv6Src = 8;
inline constexpr uint32_t kIpv6Dst = 24;
inline constexpr uint32_t kIpv6AddrLen = 16;
// Generic extension header: next header, length in 8-octet units not counting
// the first 8 octets (RFC 8200 §4.3-4.6).
inline constexpr uint32_t kIpv6ExtMinLen = 8;
inline constexpr uint32_t kIpv6FragmentHeaderLen = 8;
inline constexpr uint32_t kIpv6FragmentOffsetField = 2;
inline constexpr uint16_t kIpv6FragOffsetMask = 0xfff8;  // offset << 3
inline constexpr uint16_t kIpv6FragMore = 0x0001;

// ---- TCP (RFC 9293) ---------------------------------------------------------
inline constexpr uint32_t kTcpHeaderMin = 20;
inline constexpr uint32_t kTcpSrcPort = 0;
inline constexpr uint32_t kTcpDstPort = 2;
inline constexpr uint32_t kTcpSeq = 4;
inline constexpr uint32_t kTcpAck = 8;
inline constexpr uint32_t kTcpDataOffset = 12;  // high nibble, in 32-bit words
inline constexpr uint32_t kTcpFlags = 13;
inline constexpr uint32_t kTcpWindow = 14;
inline constexpr uint32_t kTcpChecksum = 16;
inline constexpr uint32_t kTcpUrgent = 18;
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAckFlag = 0x10;
inline constexpr uint8_t kTcpUrg = 0x20;
inline constexpr uint8_t kTcpEce = 0x40;
inline constexpr uint8_t kTcpCwr = 0x80;

// ---- UDP (RFC 768) ----------------------------------------------------------
inline constexpr uint32_t kUdpHeaderLen = 8;
inline constexpr uint32_t kUdpSrcPort = 0;
inline constexpr uint32_t kUdpDstPort = 2;
inline constexpr uint32_t kUdpLength = 4;
inline constexpr uint32_t kUdpChecksum = 6;

// ---- ICMP (RFC 792, RFC 1191) and ICMPv6 (RFC 4443) -------------------------
inline constexpr uint32_t kIcmpHeaderLen = 8;
inline constexpr uint32_t kIcmpType = 0;
inline constexpr uint32_t kIcmpCode = 1;
inline constexpr uint32_t kIcmpChecksum = 2;
inline constexpr uint32_t kIcmpEchoId = 4;
inline constexpr uint32_t kIcmpEchoSequence = 6;
inline constexpr uint32_t kIcmpNextHopMtu = 6;  // RFC 1191 §4: low half of the unused word
// An ICMP error quotes the IP header and at least the first 64 bits of its
// payload (RFC 792): enough for the ports of TCP and UDP.
inline constexpr uint32_t kIcmpQuotedL4Bytes = 8;
inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpDestUnreachable = 3;
inline constexpr uint8_t kIcmpSourceQuench = 4;
inline constexpr uint8_t kIcmpRedirect = 5;
inline constexpr uint8_t kIcmpEchoRequest = 8;
inline constexpr uint8_t kIcmpTimeExceeded = 11;
inline constexpr uint8_t kIcmpParameterProblem = 12;
inline constexpr uint8_t kIcmpCodeFragNeeded = 4;
inline constexpr uint8_t kIcmpv6EchoRequest = 128;
inline constexpr uint8_t kIcmpv6EchoReply = 129;
inline constexpr uint8_t kIcmpv6InformationalMin = 128;  // types below are errors

// ---- GRE (RFC 2784, RFC 2890) -----------------------------------------------
inline constexpr uint32_t kGreHeaderMin = 4;  // flags/version word + protocol type
inline constexpr uint32_t kGreProtocol = 2;
inline constexpr uint16_t kGreFlagChecksum = 0x8000;  // C: checksum + reserved1 follow
inline constexpr uint16_t kGreFlagRouting = 0x4000;   // R: RFC 1701 source routing
inline constexpr uint16_t kGreFlagKey = 0x2000;       // K (RFC 2890)
inline constexpr uint16_t kGreFlagSequence = 0x1000;  // S (RFC 2890)
inline constexpr uint16_t kGreReservedMask = 0x0ff8;  // Reserved0 bits 4-12 (RFC 2784 §2.2)
inline constexpr uint16_t kGreVersionMask = 0x0007;
inline constexpr uint32_t kGreOptionLen = 4;  // each of checksum+reserved1, key, sequence

}  // namespace wire
}  // namespace l4lb::core

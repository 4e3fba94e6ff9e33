// The pure half of the real server's userspace decapsulator: one received
// tunnel packet in, the inner packet (or the reason it is dropped) out; and
// one reply read from the TUN device in, the GRE (or IPIP) packet that carries
// it back to the balancer out. No syscalls, no allocation: the I/O loop in
// decapsulator.cc and the C++ unit tests call the same two functions.
//
// Both reuse the packet core (parse_frame, decapsulate, encapsulate_ipv4),
// which works on Ethernet frames: a raw IP socket and a TUN device deliver
// bare IPv4 packets, so the caller leaves kTunnelPacketHeadroom writable bytes
// before each packet and these functions write a placeholder Ethernet header
// there. Nothing else before the packet is touched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>

namespace l4lb::realserver {

enum class TunnelKind : uint8_t {
  ipip,  // IPv4 in IPv4, IP protocol 4 (RFC 2003)
  gre,   // IPv4 in GRE in IPv4, IP protocol 47 (RFC 2784, key and sequence of RFC 2890)
};

// Why a received packet is malformed. X(enumerator, "name in stats().malformed")
#define L4LB_DECAP_MALFORMED(X)                                                                   \
  X(outer_truncated, "outer-truncated")         /* shorter than its IPv4 header or total length */ \
  X(outer_bad_header, "outer-bad-header")       /* not IPv4, IHL < 5 */                            \
  X(outer_checksum, "outer-checksum")           /* outer IPv4 header checksum wrong */             \
  X(outer_fragment, "outer-fragment")           /* a fragment: the kernel reassembles before us */ \
  X(not_a_tunnel, "not-a-tunnel")               /* IP protocol neither 4 nor 47 (6in4 included) */ \
  X(gre_truncated, "gre-truncated")             /* GRE header or its options cut */                \
  X(gre_version, "gre-version")                 /* version != 0 (1 is PPTP's enhanced GRE) */      \
  X(gre_flags, "gre-flags")                     /* routing (RFC 1701) or reserved bits set */      \
  X(gre_protocol, "gre-protocol")               /* payload protocol type not IPv4 (0x0800) */      \
  X(gre_checksum, "gre-checksum")               /* C bit set and the GRE checksum is wrong */      \
  X(inner_truncated, "inner-truncated")         /* inner IPv4 header cut */                        \
  X(inner_bad_header, "inner-bad-header")       /* inner not IPv4, IHL < 5 */                      \
  X(inner_bad_length, "inner-bad-length")       /* inner total length < header or > what is left */ \
  X(inner_bad_l4_header, "inner-bad-l4-header") /* inner TCP/UDP/ICMP header cut or lying */       \
  X(ecn, "ecn")                                 /* outer CE over a not-ECT inner (RFC 6040 §4.2) */

// Why a well-formed packet is not ours to deliver. X(enumerator, "name in stats().notForUs")
#define L4LB_DECAP_NOT_FOR_US(X)                                                              \
  X(tunnel_type, "tunnel-type")                 /* IPIP while only GRE is accepted, or back */ \
  X(outer_destination, "outer-destination")     /* outer destination not a configured local address */ \
  X(gre_key, "gre-key")                         /* GRE key missing or not the configured one */ \
  X(inner_destination, "inner-destination")     /* inner destination is not a configured VIP */

// Why a packet read from the TUN device is not sent back through the tunnel.
#define L4LB_RETURN_DROPS(X)                                                          \
  X(not_ipv4, "not-ipv4")             /* IPv6 (router solicitations, MLD of the device) */ \
  X(malformed, "malformed")           /* the local stack never writes these; counted anyway */ \
  X(not_from_vip, "not-from-vip")     /* source is not a configured VIP: routed here by mistake */ \
  X(too_big, "too-big")               /* over 65535 bytes once encapsulated */              \
  X(no_return_path, "no-return-path") /* replies through the tunnel are not configured */

enum class DecapMalformed : uint8_t {
#define L4LB_DECAP_ENUM(id, name) id,
  L4LB_DECAP_MALFORMED(L4LB_DECAP_ENUM)
#undef L4LB_DECAP_ENUM
      count
};

enum class DecapNotForUs : uint8_t {
#define L4LB_DECAP_ENUM(id, name) id,
  L4LB_DECAP_NOT_FOR_US(L4LB_DECAP_ENUM)
#undef L4LB_DECAP_ENUM
      count
};

enum class ReturnDrop : uint8_t {
#define L4LB_DECAP_ENUM(id, name) id,
  L4LB_RETURN_DROPS(L4LB_DECAP_ENUM)
#undef L4LB_DECAP_ENUM
      count
};

inline constexpr const char* kDecapMalformedNames[] = {
#define L4LB_DECAP_NAME(id, name) name,
    L4LB_DECAP_MALFORMED(L4LB_DECAP_NAME)
#undef L4LB_DECAP_NAME
};
inline constexpr const char* kDecapNotForUsNames[] = {
#define L4LB_DECAP_NAME(id, name) name,
    L4LB_DECAP_NOT_FOR_US(L4LB_DECAP_NAME)
#undef L4LB_DECAP_NAME
};
inline constexpr const char* kReturnDropNames[] = {
#define L4LB_DECAP_NAME(id, name) name,
    L4LB_RETURN_DROPS(L4LB_DECAP_NAME)
#undef L4LB_DECAP_NAME
};
static_assert(std::size(kDecapMalformedNames) == static_cast<size_t>(DecapMalformed::count));
static_assert(std::size(kDecapNotForUsNames) == static_cast<size_t>(DecapNotForUs::count));
static_assert(std::size(kReturnDropNames) == static_cast<size_t>(ReturnDrop::count));

// Bytes the caller keeps writable before every packet: a placeholder Ethernet
// header (14) plus the largest encapsulation (IPv4 20 + GRE 4 + key 4), with
// room to spare.
inline constexpr uint32_t kTunnelPacketHeadroom = 64;

// What a received tunnel packet must match to be delivered. Address lists are
// host order and sorted ascending (binary search).
struct DecapFilter {
  std::span<const uint32_t> inner_destinations;  // the VIPs; never empty in practice
  std::span<const uint32_t> outer_destinations;  // empty: any address the kernel delivered to us
  bool accept_ipip = false;
  bool accept_gre = false;
  // With a key configured, only GRE packets carrying that key are ours (as a
  // Linux gre device with `key` does). Without one, any key is accepted: a
  // key is an identifier, not authentication, and the balancer may add one.
  bool require_gre_key = false;
  uint32_t gre_key = 0;  // host order
};

enum class DecapVerdict : uint8_t {
  deliver,     // inner_offset/inner_len: the inner IPv4 packet, ready for the TUN device
  malformed,   // malformed_reason says why
  not_for_us,  // not_for_us_reason says why
};

struct DecapResult {
  DecapVerdict verdict = DecapVerdict::malformed;
  DecapMalformed malformed_reason = DecapMalformed::count;  // with DecapVerdict::malformed
  DecapNotForUs not_for_us_reason = DecapNotForUs::count;   // with DecapVerdict::not_for_us
  TunnelKind kind = TunnelKind::ipip;                       // once the outer protocol is known
  // Bytes from `packet` to the inner IPv4 header, and the inner packet's
  // length as its own header declares (bytes after it are not delivered).
  uint32_t inner_offset = 0;
  uint32_t inner_len = 0;
};

// `packet` is one IPv4 packet of `len` bytes as a raw IPv4 socket receives it
// (IP header first), with kTunnelPacketHeadroom writable bytes before it.
// Validates the outer IPv4 header and the GRE header (version, flags,
// options, protocol type, checksum when present), applies the filter, then
// strips the outer headers with the packet core's decapsulate() (which also
// propagates ECN as RFC 6040 asks) and checks the inner destination. The
// bytes of the packet may change (ECN marks, the placeholder Ethernet header
// moved over the stripped outer header); on `deliver` the inner packet is at
// packet + inner_offset.
DecapResult decapsulate_tunnel_packet(uint8_t* packet, uint32_t len, const DecapFilter& filter);

// Where replies from the VIP go back to: the balancer.
struct ReturnTunnel {
  TunnelKind kind = TunnelKind::gre;
  uint32_t outer_src = 0;  // host order; 0 lets the kernel fill in the route's source (IP_HDRINCL)
  uint32_t outer_dst = 0;  // host order; the balancer
  bool with_key = false;
  uint32_t gre_key = 0;  // host order
  uint8_t ttl = 64;
  // Only packets from these sources (host order, sorted) are sent back: the VIPs.
  std::span<const uint32_t> inner_sources;
};

struct ReturnResult {
  bool ok = false;
  ReturnDrop reason = ReturnDrop::count;  // when !ok
  // Bytes from `packet` (negative: the outer header starts in the headroom)
  // to the outer IPv4 header, and the length of the whole outer packet.
  int32_t outer_offset = 0;
  uint32_t outer_len = 0;
};

// `packet` is one packet of `len` bytes read from the TUN device (IFF_NO_PI:
// the IP header first), with kTunnelPacketHeadroom writable bytes before it.
// Prepends the outer IPv4 header (and GRE header) with encapsulate_ipv4: DSCP,
// ECN and DF copied from the inner header, full outer checksum, the given
// IPv4 identification. The inner packet is left unchanged.
ReturnResult encapsulate_return_packet(uint8_t* packet, uint32_t len, const ReturnTunnel& tunnel,
                                       uint16_t identification);

}  // namespace l4lb::realserver

// Rewrite tests: each rewrite of a frame built by the packet builder is
// compared byte for byte with the frame the builder makes, from scratch, for
// the intended result. Incremental checksum updates must land exactly where a
// full computation does, and a wrong checksum must stay exactly as wrong.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <vector>

#include "core/checksum.h"
#include "core/frame.h"
#include "core/parse.h"
#include "core/rewrite.h"
#include "core/wire.h"
#include "packet_builder.h"

namespace l4lb::core {
// Readable failure messages for ParseStatus comparisons.
void PrintTo(const ParseStatus& status, std::ostream* os) {
  if (status.outcome == ParseOutcome::ok) {
    *os << "ok";
  } else if (status.outcome == ParseOutcome::not_ip) {
    *os << "not_ip";
  } else {
    *os << "drop(" << kDropReasonNames[static_cast<size_t>(status.reason)] << ")";
  }
}
}  // namespace l4lb::core

namespace {

using namespace l4lb::core;
using namespace l4lb::test;

constexpr uint32_t kClient = ipv4_addr(198, 18, 0, 10);
constexpr uint32_t kVip = ipv4_addr(198, 18, 1, 1);
constexpr uint32_t kBackend = ipv4_addr(198, 18, 2, 20);
constexpr uint32_t kRouter = ipv4_addr(198, 18, 3, 1);
constexpr uint32_t kLbLocal = ipv4_addr(198, 18, 1, 254);

constexpr MacAddress kClientMac{{0x02, 0xc1, 0, 0, 0, 0x0a}};
constexpr MacAddress kLbMac{{0x02, 0x1b, 0, 0, 0, 0x01}};
constexpr MacAddress kBackendMac{{0x02, 0xbe, 0, 0, 0, 0x14}};

// A frame in a buffer with head- and tailroom, as a port hands it over.
class FrameBuffer {
 public:
  explicit FrameBuffer(const Bytes& bytes, uint32_t headroom = 64, uint32_t tailroom = 64)
      : storage_(headroom + bytes.size() + tailroom, 0xcc) {
    std::copy(bytes.begin(), bytes.end(), storage_.begin() + headroom);
    frame_ = Frame{storage_.data() + headroom, static_cast<uint32_t>(bytes.size()), headroom, tailroom, 0, 0, 0};
  }
  Frame* frame() { return &frame_; }
  uint8_t* data() { return frame_.data; }
  Bytes bytes() const { return Bytes(frame_.data, frame_.data + frame_.len); }

 private:
  std::vector<uint8_t> storage_;
  Frame frame_;
};

PacketInfo parse_ok(const uint8_t* data, size_t len) {
  PacketInfo info{};
  const ParseStatus status = parse_frame(data, static_cast<uint32_t>(len), &info);
  EXPECT_TRUE(status.is_ok());
  return info;
}
PacketInfo parse_ok(const Bytes& frame) { return parse_ok(frame.data(), frame.size()); }

// One's-complement verification: a correct checksum makes the covered sum 0xffff.
bool ipv4_header_verifies(const Bytes& frame, const PacketInfo& info) {
  return checksum(frame.data() + info.l3_offset, info.l4_offset - info.l3_offset) == 0;
}
bool l4_verifies(const Bytes& frame, const PacketInfo& info) {
  uint8_t pseudo[12] = {};
  store_be32(pseudo, info.src_addr);
  store_be32(pseudo + 4, info.dst_addr);
  pseudo[9] = info.ip_protocol;
  store_be16(pseudo + 10, info.l4_len);
  return checksum_finish(checksum_partial(frame.data() + info.l4_offset, info.l4_len, checksum_partial(pseudo, 12))) == 0;
}

Bytes tcp_frame(uint32_t src, uint16_t src_port, uint32_t dst, uint16_t dst_port, uint16_t ip_error = 0,
                uint16_t tcp_error = 0) {
  Ipv4Layer ip{.src = src, .dst = dst, .ttl = 63, .id = 0x0102, .df = true};
  ip.checksum_error = ip_error;
  return PacketBuilder()
      .ethernet()
      .ipv4(ip)
      .tcp({.src_port = src_port, .dst_port = dst_port, .flags = wire::kTcpAckFlag, .seq = 0x11223344,
            .ack = 0x55667788, .checksum_error = tcp_error})
      .payload("GET / HTTP/1.1\r\n\r\n")
      .build();
}

Bytes udp_frame(uint32_t src, uint16_t src_port, uint32_t dst, uint16_t dst_port, const Bytes& payload,
                bool no_checksum = false) {
  return PacketBuilder()
      .ethernet()
      .ipv4({.src = src, .dst = dst, .id = 9})
      .udp({.src_port = src_port, .dst_port = dst_port, .no_checksum = no_checksum})
      .payload(payload)
      .build();
}

// ---- NAT ----------------------------------------------------------------------------

TEST(RewriteNat, DestinationOfATcpSegment) {
  Bytes frame = tcp_frame(kClient, 40000, kVip, 80);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 8080));
  EXPECT_EQ(first_difference(frame, tcp_frame(kClient, 40000, kBackend, 8080)), "");
  EXPECT_TRUE(info == parse_ok(frame));
}

TEST(RewriteNat, SourceOfAUdpReply) {
  Bytes frame = udp_frame(kBackend, 5300, kClient, 5353, bytes_of("answer"));
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(rewrite_ipv4_source(frame.data(), &info, kVip, 53));
  EXPECT_EQ(first_difference(frame, udp_frame(kVip, 53, kClient, 5353, bytes_of("answer"))), "");
  EXPECT_TRUE(info == parse_ok(frame));
}

TEST(RewriteNat, FullNatBothEndpointsBehindAVlanTagWithOptions) {
  auto build = [](uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport) {
    return PacketBuilder()
        .ethernet()
        .vlan({.tci = 42})
        .ipv4({.src = src, .dst = dst, .options = {0x94, 4, 0, 0}})
        .tcp({.src_port = sport, .dst_port = dport, .flags = wire::kTcpSyn, .options = {2, 4, 5, 0xb4}})
        .build();
  };
  Bytes frame = build(kClient, 40000, kVip, 80);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 8080));
  ASSERT_TRUE(rewrite_ipv4_source(frame.data(), &info, kLbLocal, 61000));
  EXPECT_EQ(first_difference(frame, build(kLbLocal, 61000, kBackend, 8080)), "");
  EXPECT_TRUE(info == parse_ok(frame));
}

TEST(RewriteNat, UdpWithoutChecksumKeepsNone) {
  Bytes frame = udp_frame(kClient, 5353, kVip, 53, bytes_of("q"), true);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 5300));
  EXPECT_EQ(first_difference(frame, udp_frame(kClient, 5353, kBackend, 5300, bytes_of("q"), true)), "");
}

// Find a payload for which the rewritten datagram's checksum computes to 0,
// which RFC 768 sends as 0xffff; the incremental update must do the same.
TEST(RewriteNat, UdpChecksumComputingToZeroIsSentAsAllOnes) {
  Bytes payload;
  for (uint32_t word = 0; word <= 0xffff; ++word) {
    const Bytes candidate{static_cast<uint8_t>(word >> 8), static_cast<uint8_t>(word)};
    const Bytes expected = udp_frame(kClient, 5353, kBackend, 5300, candidate);
    if (load_be16(expected.data() + 34 + wire::kUdpChecksum) == 0xffff) {
      payload = candidate;
      break;
    }
  }
  ASSERT_FALSE(payload.empty());
  Bytes frame = udp_frame(kClient, 5353, kVip, 53, payload);
  ASSERT_NE(load_be16(frame.data() + 34 + wire::kUdpChecksum), 0xffff);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 5300));
  EXPECT_EQ(first_difference(frame, udp_frame(kClient, 5353, kBackend, 5300, payload)), "");
}

TEST(RewriteNat, WrongChecksumsStayExactlyAsWrong) {
  Bytes frame = tcp_frame(kClient, 40000, kVip, 80, 0x0101, 0x2020);
  PacketInfo info = parse_ok(frame);
  ASSERT_FALSE(info.has(kPacketIpChecksumOk));
  ASSERT_TRUE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 8080));
  ASSERT_TRUE(rewrite_ipv4_source(frame.data(), &info, kLbLocal, 61000));
  EXPECT_EQ(first_difference(frame, tcp_frame(kLbLocal, 61000, kBackend, 8080, 0x0101, 0x2020)), "");
  EXPECT_FALSE(ipv4_header_verifies(frame, info));
  EXPECT_FALSE(l4_verifies(frame, info));
  // And a correct one stays correct.
  Bytes good = tcp_frame(kClient, 40000, kVip, 80);
  PacketInfo good_info = parse_ok(good);
  ASSERT_TRUE(rewrite_ipv4_destination(good.data(), &good_info, kBackend, 8080));
  EXPECT_TRUE(ipv4_header_verifies(good, good_info));
  EXPECT_TRUE(l4_verifies(good, good_info));
}

TEST(RewriteNat, LaterFragmentChangesOnlyTheIpHeader) {
  auto build = [](uint32_t dst) {
    return PacketBuilder()
        .ethernet()
        .ipv4({.src = kClient, .dst = dst, .id = 7, .frag_offset = 185, .protocol = wire::kProtoUdp})
        .payload("0123456789abcdef")
        .build();
  };
  Bytes frame = build(kVip);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 5300));
  EXPECT_EQ(first_difference(frame, build(kBackend)), "");
  EXPECT_EQ(info.dst_port, 0);
}

TEST(RewriteNat, FirstFragmentRewritesPortsAndChecksum) {
  auto build = [](uint32_t dst, uint16_t port) {
    return PacketBuilder()
        .ethernet()
        .ipv4({.src = kClient, .dst = dst, .id = 7, .mf = true})
        .udp({.src_port = 5353, .dst_port = port})
        .payload(Bytes(48, 0x5a))
        .build();
  };
  Bytes frame = build(kVip, 53);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 5300));
  EXPECT_EQ(first_difference(frame, build(kBackend, 5300)), "");
}

TEST(RewriteNat, IcmpEchoChangesOnlyTheIpHeader) {
  auto build = [](uint32_t dst) {
    return PacketBuilder().ethernet().ipv4({.src = kClient, .dst = dst}).icmp({.type = 8, .rest = 0x00420001}).payload("ping").build();
  };
  Bytes frame = build(kVip);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 1234));
  EXPECT_EQ(first_difference(frame, build(kBackend)), "");
}

TEST(RewriteNat, Ipv6IsRefused) {
  Bytes frame = PacketBuilder()
                    .ethernet()
                    .ipv6({.src = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}), .dst = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 2})})
                    .udp({.src_port = 1, .dst_port = 2})
                    .build();
  const Bytes before = frame;
  PacketInfo info = parse_ok(frame);
  EXPECT_FALSE(rewrite_ipv4_destination(frame.data(), &info, kBackend, 5));
  EXPECT_FALSE(rewrite_ipv4_source(frame.data(), &info, kBackend, 5));
  EXPECT_EQ(frame, before);
}

// ---- CHECKSUM_PARTIAL ------------------------------------------------------------------

TEST(RewritePartialChecksum, TcpIsCompletedAsTheDeviceWould) {
  auto build = [](bool partial) {
    return PacketBuilder()
        .ethernet()
        .ipv4({.src = kClient, .dst = kVip})
        .tcp({.src_port = 40000, .dst_port = 80, .partial_checksum = partial})
        .payload("odd length payload")
        .build();
  };
  FrameBuffer buffer(build(true));
  buffer.frame()->flags = kFrameChecksumPartial;
  const PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_NE(buffer.bytes(), build(false));
  ASSERT_TRUE(complete_partial_checksum(buffer.frame(), info));
  EXPECT_EQ(buffer.frame()->flags & kFrameChecksumPartial, 0u);
  EXPECT_EQ(first_difference(buffer.bytes(), build(false)), "");
  // Without the flag nothing more happens.
  ASSERT_TRUE(complete_partial_checksum(buffer.frame(), info));
  EXPECT_EQ(first_difference(buffer.bytes(), build(false)), "");
}

TEST(RewritePartialChecksum, UdpZeroResultIsSentAsAllOnes) {
  auto build = [](const Bytes& payload, bool partial) {
    return PacketBuilder()
        .ethernet()
        .ipv4({.src = kClient, .dst = kVip})
        .udp({.src_port = 5353, .dst_port = 53, .partial_checksum = partial})
        .payload(payload)
        .build();
  };
  int checked = 0;
  bool saw_all_ones = false;
  for (uint32_t word = 0; word <= 0xffff && !(saw_all_ones && checked > 16); word += 1) {
    const Bytes payload{static_cast<uint8_t>(word >> 8), static_cast<uint8_t>(word), 1};
    const Bytes expected = build(payload, false);
    const bool all_ones = load_be16(expected.data() + 34 + wire::kUdpChecksum) == 0xffff;
    if (!all_ones && checked > 16) continue;
    Bytes frame = build(payload, true);
    const PacketInfo info = parse_ok(frame);
    ASSERT_TRUE(complete_partial_checksum(frame.data(), info));
    ASSERT_EQ(first_difference(frame, expected), "") << "payload word " << word;
    saw_all_ones |= all_ones;
    ++checked;
  }
  EXPECT_TRUE(saw_all_ones);
}

TEST(RewritePartialChecksum, CompletedThenTranslated) {
  Bytes frame = PacketBuilder()
                    .ethernet()
                    .ipv4({.src = kBackend, .dst = kClient})
                    .tcp({.src_port = 8080, .dst_port = 40000, .partial_checksum = true})
                    .payload("reply")
                    .build();
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(complete_partial_checksum(frame.data(), info));
  ASSERT_TRUE(rewrite_ipv4_source(frame.data(), &info, kVip, 80));
  const Bytes expected = PacketBuilder()
                             .ethernet()
                             .ipv4({.src = kVip, .dst = kClient})
                             .tcp({.src_port = 80, .dst_port = 40000})
                             .payload("reply")
                             .build();
  EXPECT_EQ(first_difference(frame, expected), "");
}

TEST(RewritePartialChecksum, Ipv6Tcp) {
  auto build = [](bool partial) {
    return PacketBuilder()
        .ethernet()
        .ipv6({.src = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}), .dst = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 2})})
        .tcp({.src_port = 1, .dst_port = 2, .partial_checksum = partial})
        .payload("v6")
        .build();
  };
  Bytes frame = build(true);
  ASSERT_TRUE(complete_partial_checksum(frame.data(), parse_ok(frame)));
  EXPECT_EQ(first_difference(frame, build(false)), "");
}

TEST(RewritePartialChecksum, OnlyTcpAndUdp) {
  Bytes frame = PacketBuilder().ethernet().ipv4({.src = kClient, .dst = kVip}).icmp({}).build();
  FrameBuffer buffer(frame);
  buffer.frame()->flags = kFrameChecksumPartial;
  EXPECT_FALSE(complete_partial_checksum(buffer.frame(), parse_ok(frame)));
  EXPECT_EQ(buffer.frame()->flags, kFrameChecksumPartial);
  EXPECT_EQ(buffer.bytes(), frame);
}

// ---- TTL ----------------------------------------------------------------------------------

Bytes ttl_frame(uint8_t ttl, uint16_t ip_error = 0) {
  Ipv4Layer ip{.src = kClient, .dst = kVip, .ttl = ttl, .id = 3};
  ip.checksum_error = ip_error;
  return PacketBuilder().ethernet().ipv4(ip).udp({.src_port = 1, .dst_port = 2}).build();
}

TEST(RewriteTtl, DecrementUpdatesTheHeaderChecksum) {
  for (const uint8_t ttl : {2, 64, 255}) {
    Bytes frame = ttl_frame(ttl);
    PacketInfo info = parse_ok(frame);
    ASSERT_TRUE(decrement_ttl(frame.data(), &info));
    EXPECT_EQ(first_difference(frame, ttl_frame(static_cast<uint8_t>(ttl - 1))), "") << int(ttl);
    EXPECT_EQ(info.ttl, ttl - 1);
  }
}

TEST(RewriteTtl, ExpiryIsReportedAndNothingChanges) {
  for (const uint8_t ttl : {0, 1}) {
    Bytes frame = ttl_frame(ttl);
    const Bytes before = frame;
    PacketInfo info = parse_ok(frame);
    EXPECT_FALSE(decrement_ttl(frame.data(), &info)) << int(ttl);
    EXPECT_EQ(frame, before);
  }
}

TEST(RewriteTtl, WrongHeaderChecksumStaysWrong) {
  Bytes frame = ttl_frame(64, 0x0300);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(decrement_ttl(frame.data(), &info));
  EXPECT_EQ(first_difference(frame, ttl_frame(63, 0x0300)), "");
}

TEST(RewriteTtl, Ipv6HopLimit) {
  auto build = [](uint8_t hop_limit) {
    return PacketBuilder()
        .ethernet()
        .ipv6({.src = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}), .dst = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 2}), .hop_limit = hop_limit})
        .udp({.src_port = 1, .dst_port = 2})
        .build();
  };
  Bytes frame = build(9);
  PacketInfo info = parse_ok(frame);
  ASSERT_TRUE(decrement_ttl(frame.data(), &info));
  EXPECT_EQ(first_difference(frame, build(8)), "");
  Bytes last = build(1);
  PacketInfo last_info = parse_ok(last);
  EXPECT_FALSE(decrement_ttl(last.data(), &last_info));
}

// ---- Ethernet -----------------------------------------------------------------------------

Bytes l2_frame(MacAddress dst, MacAddress src, std::optional<uint16_t> tci) {
  PacketBuilder builder;
  builder.ethernet({.dst = dst, .src = src});
  if (tci) builder.vlan({.tci = *tci});
  return builder.ipv4({.src = kClient, .dst = kBackend}).tcp({.src_port = 40000, .dst_port = 8080}).payload("x").build();
}

TEST(RewriteEthernet, MacsWithTheTagKept) {
  FrameBuffer buffer(l2_frame(kLbMac, kClientMac, 10));
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_TRUE(rewrite_ethernet(buffer.frame(), &info, {.dst = kBackendMac, .src = kLbMac}));
  EXPECT_EQ(first_difference(buffer.bytes(), l2_frame(kBackendMac, kLbMac, 10)), "");
  EXPECT_TRUE(info == parse_ok(buffer.data(), buffer.frame()->len));
}

TEST(RewriteEthernet, StripTheTag) {
  FrameBuffer buffer(l2_frame(kLbMac, kClientMac, 10));
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_TRUE(rewrite_ethernet(buffer.frame(), &info, {.dst = kBackendMac, .src = kLbMac, .vlan = VlanAction::strip}));
  EXPECT_EQ(first_difference(buffer.bytes(), l2_frame(kBackendMac, kLbMac, std::nullopt)), "");
  EXPECT_EQ(buffer.frame()->headroom, 68u);
  EXPECT_TRUE(info == parse_ok(buffer.data(), buffer.frame()->len));
  // Stripping an untagged frame only sets the addresses.
  ASSERT_TRUE(rewrite_ethernet(buffer.frame(), &info, {.dst = kClientMac, .src = kLbMac, .vlan = VlanAction::strip}));
  EXPECT_EQ(first_difference(buffer.bytes(), l2_frame(kClientMac, kLbMac, std::nullopt)), "");
}

TEST(RewriteEthernet, InsertATag) {
  FrameBuffer buffer(l2_frame(kLbMac, kClientMac, std::nullopt));
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_TRUE(rewrite_ethernet(buffer.frame(), &info,
                               {.dst = kBackendMac, .src = kLbMac, .vlan = VlanAction::set, .vlan_tci = 0xa00c}));
  EXPECT_EQ(first_difference(buffer.bytes(), l2_frame(kBackendMac, kLbMac, 0xa00c)), "");
  EXPECT_EQ(buffer.frame()->headroom, 60u);
  EXPECT_TRUE(info == parse_ok(buffer.data(), buffer.frame()->len));
}

TEST(RewriteEthernet, ReplaceTheTci) {
  FrameBuffer buffer(l2_frame(kLbMac, kClientMac, 10));
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_TRUE(rewrite_ethernet(buffer.frame(), &info, {.dst = kBackendMac, .src = kLbMac, .vlan = VlanAction::set, .vlan_tci = 20}));
  EXPECT_EQ(first_difference(buffer.bytes(), l2_frame(kBackendMac, kLbMac, 20)), "");
  EXPECT_TRUE(info == parse_ok(buffer.data(), buffer.frame()->len));
}

TEST(RewriteEthernet, InsertWithoutHeadroomFails) {
  const Bytes frame = l2_frame(kLbMac, kClientMac, std::nullopt);
  FrameBuffer buffer(frame, 3);
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  const PacketInfo before = info;
  EXPECT_FALSE(rewrite_ethernet(buffer.frame(), &info, {.dst = kBackendMac, .src = kLbMac, .vlan = VlanAction::set, .vlan_tci = 5}));
  EXPECT_EQ(buffer.bytes(), frame);
  EXPECT_TRUE(info == before);
}

// ---- ICMP error translation ----------------------------------------------------------------

// The IPv4 packet an ICMP error quotes, cut to `quoted` bytes.
Bytes quoted_packet(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, uint8_t protocol, size_t quoted,
                    uint16_t ip_error = 0) {
  PacketBuilder builder;
  Ipv4Layer ip{.src = src, .dst = dst, .ttl = 1, .id = 0x3333, .df = true};
  ip.checksum_error = ip_error;
  builder.ipv4(ip);
  if (protocol == wire::kProtoTcp) {
    builder.tcp({.src_port = sport, .dst_port = dport, .flags = wire::kTcpSyn, .seq = 0xabcdef01});
  } else {
    builder.udp({.src_port = sport, .dst_port = dport});
  }
  Bytes packet = builder.payload("original payload, longer than any quote needs").build();
  packet.resize(quoted);
  return packet;
}

Bytes icmp_error(uint32_t src, uint32_t dst, uint8_t type, uint8_t code, const Bytes& quote, uint16_t icmp_error = 0) {
  return PacketBuilder()
      .ethernet()
      .ipv4({.src = src, .dst = dst, .id = 0x0505})
      .icmp({.type = type, .code = code, .rest = 0, .checksum_error = icmp_error})
      .payload(quote)
      .build();
}

// NAT: a router behind the balancer cannot reach the backend and tells the
// client, quoting the translated datagram; the client must see its own
// datagram to the VIP quoted.
TEST(RewriteIcmpError, NatQuotedUdpWithChecksum) {
  Bytes frame = icmp_error(kRouter, kClient, 3, 1, quoted_packet(kClient, 5353, kBackend, 5300, wire::kProtoUdp, 40));
  PacketInfo info = parse_ok(frame);
  IcmpErrorTranslation translation = icmp_error_translation_of(info);
  translation.quoted_dst_addr = kVip;
  translation.quoted_dst_port = 53;
  ASSERT_TRUE(translate_icmp_error(frame.data(), &info, translation));
  const Bytes expected = icmp_error(kRouter, kClient, 3, 1, quoted_packet(kClient, 5353, kVip, 53, wire::kProtoUdp, 40));
  EXPECT_EQ(first_difference(frame, expected), "");
  EXPECT_TRUE(info == parse_ok(frame));
}

// Full NAT: the backend itself reports an error about a segment from the
// balancer's local address; outer and quoted addresses all change.
TEST(RewriteIcmpError, FullNatQuotedTcpFirstEightBytes) {
  Bytes frame = icmp_error(kBackend, kLbLocal, 3, 3, quoted_packet(kLbLocal, 61000, kBackend, 8080, wire::kProtoTcp, 28));
  PacketInfo info = parse_ok(frame);
  const IcmpErrorTranslation translation{
      .outer_src_addr = kVip,
      .outer_dst_addr = kClient,
      .quoted_src_addr = kClient,
      .quoted_dst_addr = kVip,
      .quoted_src_port = 40000,
      .quoted_dst_port = 80,
  };
  ASSERT_TRUE(translate_icmp_error(frame.data(), &info, translation));
  const Bytes expected = icmp_error(kVip, kClient, 3, 3, quoted_packet(kClient, 40000, kVip, 80, wire::kProtoTcp, 28));
  EXPECT_EQ(first_difference(frame, expected), "");
  EXPECT_TRUE(info == parse_ok(frame));
}

TEST(RewriteIcmpError, QuotedTcpChecksumWhenQuoted) {
  for (const size_t quoted : {37u, 38u, 60u}) {
    Bytes frame = icmp_error(kRouter, kClient, 11, 0, quoted_packet(kClient, 40000, kBackend, 8080, wire::kProtoTcp, quoted));
    PacketInfo info = parse_ok(frame);
    IcmpErrorTranslation translation = icmp_error_translation_of(info);
    translation.quoted_dst_addr = kVip;
    translation.quoted_dst_port = 80;
    ASSERT_TRUE(translate_icmp_error(frame.data(), &info, translation));
    Bytes quote = quoted_packet(kClient, 40000, kVip, 80, wire::kProtoTcp, quoted);
    if (quoted == 37) {
      // Half a checksum cannot be updated: its one quoted byte stays as it was.
      quote[20 + wire::kTcpChecksum] = quoted_packet(kClient, 40000, kBackend, 8080, wire::kProtoTcp, quoted)[20 + wire::kTcpChecksum];
    }
    EXPECT_EQ(first_difference(frame, icmp_error(kRouter, kClient, 11, 0, quote)), "") << quoted;
  }
}

TEST(RewriteIcmpError, QuotedUdpWithoutChecksumKeepsNone) {
  auto quote = [](uint32_t dst, uint16_t port) {
    return PacketBuilder()
        .ipv4({.src = kClient, .dst = dst})
        .udp({.src_port = 5353, .dst_port = port, .no_checksum = true})
        .payload("q")
        .build();
  };
  Bytes frame = icmp_error(kRouter, kClient, 3, 3, quote(kBackend, 5300));
  PacketInfo info = parse_ok(frame);
  IcmpErrorTranslation translation = icmp_error_translation_of(info);
  translation.quoted_dst_addr = kVip;
  translation.quoted_dst_port = 53;
  ASSERT_TRUE(translate_icmp_error(frame.data(), &info, translation));
  EXPECT_EQ(first_difference(frame, icmp_error(kRouter, kClient, 3, 3, quote(kVip, 53))), "");
}

TEST(RewriteIcmpError, QuoteWithoutPortsChangesAddressesOnly) {
  Bytes frame = icmp_error(kRouter, kClient, 3, 1, quoted_packet(kClient, 5353, kBackend, 5300, wire::kProtoUdp, 24));
  PacketInfo info = parse_ok(frame);
  ASSERT_FALSE(info.has(kPacketQuoteL4));
  IcmpErrorTranslation translation = icmp_error_translation_of(info);
  translation.quoted_dst_addr = kVip;
  translation.quoted_dst_port = 53;  // not quoted: ignored
  ASSERT_TRUE(translate_icmp_error(frame.data(), &info, translation));
  EXPECT_EQ(first_difference(frame, icmp_error(kRouter, kClient, 3, 1, quoted_packet(kClient, 5353, kVip, 5300, wire::kProtoUdp, 24))), "");
}

TEST(RewriteIcmpError, WrongChecksumsStayExactlyAsWrong) {
  Bytes frame = icmp_error(kRouter, kClient, 3, 1, quoted_packet(kClient, 5353, kBackend, 5300, wire::kProtoUdp, 36, 0x0707), 0x0404);
  PacketInfo info = parse_ok(frame);
  IcmpErrorTranslation translation = icmp_error_translation_of(info);
  translation.quoted_dst_addr = kVip;
  translation.quoted_dst_port = 53;
  ASSERT_TRUE(translate_icmp_error(frame.data(), &info, translation));
  const Bytes expected =
      icmp_error(kRouter, kClient, 3, 1, quoted_packet(kClient, 5353, kVip, 53, wire::kProtoUdp, 36, 0x0707), 0x0404);
  EXPECT_EQ(first_difference(frame, expected), "");
}

TEST(RewriteIcmpError, AnythingButAQuotingErrorIsRefused) {
  Bytes echo = PacketBuilder().ethernet().ipv4({.src = kClient, .dst = kVip}).icmp({}).build();
  PacketInfo echo_info = parse_ok(echo);
  EXPECT_FALSE(translate_icmp_error(echo.data(), &echo_info, icmp_error_translation_of(echo_info)));
  Bytes cut = icmp_error(kRouter, kClient, 3, 1, quoted_packet(kClient, 5353, kBackend, 5300, wire::kProtoUdp, 12));
  const Bytes before = cut;
  PacketInfo cut_info = parse_ok(cut);
  IcmpErrorTranslation translation = icmp_error_translation_of(cut_info);
  translation.outer_dst_addr = kVip;
  EXPECT_FALSE(translate_icmp_error(cut.data(), &cut_info, translation));
  EXPECT_EQ(cut, before);
}

// ---- ICMP error policy ------------------------------------------------------------------------

TEST(RewriteIcmpPolicy, IcmpErrorAllowedFollowsRfc1122) {
  const Bytes tcp = tcp_frame(kClient, 40000, kVip, 80);
  EXPECT_TRUE(icmp_error_allowed(tcp.data(), parse_ok(tcp)));
  const Bytes echo = PacketBuilder().ethernet().ipv4({.src = kClient, .dst = kVip}).icmp({}).build();
  EXPECT_TRUE(icmp_error_allowed(echo.data(), parse_ok(echo)));

  const Bytes error = icmp_error(kRouter, kClient, 3, 1, quoted_packet(kClient, 1, kBackend, 2, wire::kProtoUdp, 28));
  EXPECT_TRUE(is_icmp_error(parse_ok(error)));
  EXPECT_FALSE(icmp_error_allowed(error.data(), parse_ok(error)));

  const Bytes later = PacketBuilder().ethernet().ipv4({.src = kClient, .dst = kVip, .frag_offset = 10}).payload("x").build();
  EXPECT_FALSE(icmp_error_allowed(later.data(), parse_ok(later)));

  const Bytes link_broadcast = PacketBuilder()
                                   .ethernet({.dst = MacAddress{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}})
                                   .ipv4({.src = kClient, .dst = kVip})
                                   .udp({})
                                   .build();
  EXPECT_FALSE(icmp_error_allowed(link_broadcast.data(), parse_ok(link_broadcast)));

  for (const uint32_t dst : {0xffffffffu, ipv4_addr(224, 0, 0, 1), ipv4_addr(239, 1, 2, 3)}) {
    const Bytes frame = PacketBuilder().ethernet().ipv4({.src = kClient, .dst = dst}).udp({}).build();
    EXPECT_FALSE(icmp_error_allowed(frame.data(), parse_ok(frame))) << std::hex << dst;
  }
  for (const uint32_t src : {0u, ipv4_addr(127, 0, 0, 1), ipv4_addr(224, 0, 0, 5), ipv4_addr(240, 0, 0, 1), 0xffffffffu}) {
    const Bytes frame = PacketBuilder().ethernet().ipv4({.src = src, .dst = kVip}).udp({}).build();
    EXPECT_FALSE(icmp_error_allowed(frame.data(), parse_ok(frame))) << std::hex << src;
  }
}

// ---- Tunnels --------------------------------------------------------------------------------

Bytes inner_frame(std::optional<uint16_t> tci = std::nullopt, uint8_t tos = 0xb9, size_t pad = 0) {
  PacketBuilder builder;
  builder.ethernet({.dst = kLbMac, .src = kClientMac});
  if (tci) builder.vlan({.tci = *tci});
  return builder.ipv4({.src = kClient, .dst = kVip, .ttl = 60, .tos = tos, .id = 0x0a0b, .df = true})
      .tcp({.src_port = 40000, .dst_port = 80})
      .payload("inner payload")
      .pad_to(pad)
      .build();
}

// The expected encapsulated frame, built from scratch: outer header copies the
// inner TOS and DF.
Bytes encapsulated_frame(TunnelType type, std::optional<uint32_t> key, std::optional<uint16_t> tci = std::nullopt,
                         uint8_t tos = 0xb9) {
  PacketBuilder builder;
  builder.ethernet({.dst = kLbMac, .src = kClientMac});
  if (tci) builder.vlan({.tci = *tci});
  builder.ipv4({.src = kLbLocal, .dst = kBackend, .ttl = 64, .tos = tos, .id = 0x4321, .df = true});
  if (type == TunnelType::gre) builder.gre({.key = key});
  return builder.ipv4({.src = kClient, .dst = kVip, .ttl = 60, .tos = tos, .id = 0x0a0b, .df = true})
      .tcp({.src_port = 40000, .dst_port = 80})
      .payload("inner payload")
      .build();
}

TunnelParams tunnel(TunnelType type, bool with_key = false, uint32_t key = 0) {
  return TunnelParams{.type = type, .src_addr = kLbLocal, .dst_addr = kBackend, .identification = 0x4321,
                      .ttl = 64, .gre_with_key = with_key, .gre_key = key};
}

TEST(RewriteTunnel, IpipIsByteExact) {
  FrameBuffer buffer(inner_frame());
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_EQ(encapsulate_ipv4(buffer.frame(), &info, tunnel(TunnelType::ipip)), 20u);
  EXPECT_EQ(first_difference(buffer.bytes(), encapsulated_frame(TunnelType::ipip, std::nullopt)), "");
  EXPECT_EQ(buffer.frame()->headroom, 44u);
  EXPECT_TRUE(info == parse_ok(buffer.data(), buffer.frame()->len));
}

TEST(RewriteTunnel, GreIsByteExact) {
  FrameBuffer buffer(inner_frame());
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_EQ(encapsulate_ipv4(buffer.frame(), &info, tunnel(TunnelType::gre)), 24u);
  EXPECT_EQ(first_difference(buffer.bytes(), encapsulated_frame(TunnelType::gre, std::nullopt)), "");
  EXPECT_TRUE(info == parse_ok(buffer.data(), buffer.frame()->len));
}

TEST(RewriteTunnel, GreWithKeyBehindAVlanTagIsByteExact) {
  FrameBuffer buffer(inner_frame(77));
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_EQ(encapsulate_ipv4(buffer.frame(), &info, tunnel(TunnelType::gre, true, 0xfeedf00d)), 28u);
  EXPECT_EQ(first_difference(buffer.bytes(), encapsulated_frame(TunnelType::gre, 0xfeedf00d, 77)), "");
  EXPECT_TRUE(info == parse_ok(buffer.data(), buffer.frame()->len));
}

TEST(RewriteTunnel, InnerPaddingIsDropped) {
  FrameBuffer buffer(inner_frame(std::nullopt, 0, 100));
  PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
  ASSERT_EQ(encapsulate_ipv4(buffer.frame(), &info, tunnel(TunnelType::ipip)), 20u);
  EXPECT_EQ(first_difference(buffer.bytes(), encapsulated_frame(TunnelType::ipip, std::nullopt, std::nullopt, 0)), "");
  EXPECT_EQ(buffer.frame()->tailroom, 64u + (100 - 67));
}

TEST(RewriteTunnel, RefusedWithoutHeadroomForIpv6OrWhenTooBig) {
  const Bytes frame = inner_frame();
  FrameBuffer tight(frame, 23);
  PacketInfo info = parse_ok(frame);
  EXPECT_EQ(encapsulate_ipv4(tight.frame(), &info, tunnel(TunnelType::gre)), 0u);
  EXPECT_EQ(tight.bytes(), frame);
  EXPECT_EQ(encapsulate_ipv4(tight.frame(), &info, tunnel(TunnelType::ipip)), 20u);

  const Bytes v6 = PacketBuilder()
                       .ethernet()
                       .ipv6({.src = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}), .dst = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 2})})
                       .udp({})
                       .build();
  FrameBuffer v6_buffer(v6);
  PacketInfo v6_info = parse_ok(v6);
  EXPECT_EQ(encapsulate_ipv4(v6_buffer.frame(), &v6_info, tunnel(TunnelType::ipip)), 0u);

  const Bytes big = PacketBuilder().ethernet().ipv4({.src = kClient, .dst = kVip}).udp({}).payload(Bytes(65535 - 28, 0)).build();
  FrameBuffer big_buffer(big);
  PacketInfo big_info = parse_ok(big);
  EXPECT_EQ(encapsulate_ipv4(big_buffer.frame(), &big_info, tunnel(TunnelType::ipip)), 0u);
}

TEST(RewriteTunnel, DecapsulationRestoresTheInnerFrame) {
  for (const TunnelParams& params : {tunnel(TunnelType::ipip), tunnel(TunnelType::gre), tunnel(TunnelType::gre, true, 9)}) {
    const Bytes original = inner_frame(5);
    FrameBuffer buffer(original);
    PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
    ASSERT_NE(encapsulate_ipv4(buffer.frame(), &info, params), 0u);
    ASSERT_EQ(decapsulate(buffer.frame(), &info), ParseStatus::ok());
    EXPECT_EQ(first_difference(buffer.bytes(), original), "");
    EXPECT_EQ(buffer.frame()->headroom, 64u);
    EXPECT_TRUE(info == parse_ok(original));
  }
}

TEST(RewriteTunnel, DecapsulationOfABuiltGreFrameWithSequenceAndChecksum) {
  const Bytes frame = PacketBuilder()
                          .ethernet({.dst = kBackendMac, .src = kLbMac})
                          .ipv4({.src = kLbLocal, .dst = kBackend})
                          .gre({.with_checksum = true, .key = 1, .sequence = 2})
                          .ipv4({.src = kClient, .dst = kVip})
                          .udp({.src_port = 1, .dst_port = 2})
                          .payload("p")
                          .pad_to(90)
                          .build();
  FrameBuffer buffer(frame);
  PacketInfo info = parse_ok(frame);
  ASSERT_EQ(decapsulate(buffer.frame(), &info), ParseStatus::ok());
  const Bytes expected = PacketBuilder()
                             .ethernet({.dst = kBackendMac, .src = kLbMac})
                             .ipv4({.src = kClient, .dst = kVip})
                             .udp({.src_port = 1, .dst_port = 2})
                             .payload("p")
                             .build();
  EXPECT_EQ(first_difference(buffer.bytes(), expected), "");
}

TEST(RewriteTunnel, DecapsulationDropsBytesAfterTheInnerPacket) {
  Bytes inner = PacketBuilder().ipv4({.src = kClient, .dst = kVip}).udp({.src_port = 1, .dst_port = 2}).build();
  Bytes outer_payload = inner;
  outer_payload.insert(outer_payload.end(), {'t', 'r', 'a', 'i', 'l'});
  const Bytes frame = PacketBuilder()
                          .ethernet()
                          .ipv4({.src = kLbLocal, .dst = kBackend, .protocol = wire::kProtoIpip})
                          .payload(outer_payload)
                          .build();
  FrameBuffer buffer(frame);
  PacketInfo info = parse_ok(frame);
  ASSERT_EQ(decapsulate(buffer.frame(), &info), ParseStatus::ok());
  EXPECT_EQ(first_difference(buffer.bytes(), PacketBuilder().ethernet({.ether_type = wire::kEtherTypeIpv4}).payload(inner).build()), "");
  EXPECT_EQ(buffer.frame()->tailroom, 64u + 5);
}

// RFC 6040 §4.2: congestion experienced on the outer header reaches the inner one.
TEST(RewriteTunnel, DecapsulationPropagatesCongestionExperienced) {
  auto tunnelled = [](uint8_t outer_tos, uint8_t inner_tos) {
    return PacketBuilder()
        .ethernet()
        .ipv4({.src = kLbLocal, .dst = kBackend, .tos = outer_tos})
        .ipv4({.src = kClient, .dst = kVip, .tos = inner_tos})
        .udp({.src_port = 1, .dst_port = 2})
        .build();
  };
  auto plain = [](uint8_t inner_tos) {
    return PacketBuilder().ethernet().ipv4({.src = kClient, .dst = kVip, .tos = inner_tos}).udp({.src_port = 1, .dst_port = 2}).build();
  };
  for (const uint8_t inner_tos : {0x01, 0x02, 0x03, 0xb9}) {
    FrameBuffer buffer(tunnelled(0x03, inner_tos));
    PacketInfo info = parse_ok(buffer.data(), buffer.frame()->len);
    ASSERT_EQ(decapsulate(buffer.frame(), &info), ParseStatus::ok());
    EXPECT_EQ(first_difference(buffer.bytes(), plain(inner_tos | 0x03)), "") << int(inner_tos);
  }
  const Bytes not_ect = tunnelled(0x03, 0xb8);
  FrameBuffer buffer(not_ect);
  PacketInfo info = parse_ok(not_ect);
  EXPECT_EQ(decapsulate(buffer.frame(), &info), ParseStatus::drop(DropReason::malformed_tunnel));
  EXPECT_EQ(buffer.bytes(), not_ect);
}

TEST(RewriteTunnel, DecapsulationRefusesWhatIsNotAnIpv4Tunnel) {
  const Bytes plain = tcp_frame(kClient, 1, kVip, 2);
  FrameBuffer plain_buffer(plain);
  PacketInfo plain_info = parse_ok(plain);
  EXPECT_EQ(decapsulate(plain_buffer.frame(), &plain_info), ParseStatus::drop(DropReason::malformed_tunnel));

  const Bytes bridged = PacketBuilder()
                            .ethernet()
                            .ipv4({.src = kLbLocal, .dst = kBackend})
                            .gre({})
                            .ethernet()
                            .ipv4({.src = kClient, .dst = kVip})
                            .udp({})
                            .build();
  FrameBuffer bridged_buffer(bridged);
  PacketInfo bridged_info = parse_ok(bridged);
  EXPECT_EQ(bridged_info.inner_ether_type, wire::kEtherTypeTeb);
  EXPECT_EQ(decapsulate(bridged_buffer.frame(), &bridged_info), ParseStatus::drop(DropReason::malformed_tunnel));

  const Bytes fragment = PacketBuilder()
                             .ethernet()
                             .ipv4({.src = kLbLocal, .dst = kBackend, .mf = true})
                             .ipv4({.src = kClient, .dst = kVip})
                             .udp({})
                             .build();
  FrameBuffer fragment_buffer(fragment);
  PacketInfo fragment_info = parse_ok(fragment);
  EXPECT_EQ(decapsulate(fragment_buffer.frame(), &fragment_info), ParseStatus::drop(DropReason::fragment));

  const Bytes cut_inner = PacketBuilder()
                              .ethernet()
                              .ipv4({.src = kLbLocal, .dst = kBackend, .protocol = wire::kProtoIpip})
                              .payload(Bytes{0x45, 0, 0, 40, 0, 0})
                              .build();
  FrameBuffer cut_buffer(cut_inner);
  PacketInfo cut_info = parse_ok(cut_inner);
  EXPECT_EQ(decapsulate(cut_buffer.frame(), &cut_info), ParseStatus::drop(DropReason::truncated));
  EXPECT_EQ(cut_buffer.bytes(), cut_inner);
}

// ---- ICMP messages the balancer creates -----------------------------------------------------------

IcmpReplyParams reply_params() {
  return IcmpReplyParams{.dst_mac = kClientMac, .src_mac = kLbMac, .src_addr = kVip, .identification = 0x0777, .ttl = 64};
}

TEST(RewriteIcmpMessages, FragNeededIsByteExact) {
  const Bytes original = PacketBuilder()
                             .ethernet({.dst = kLbMac, .src = kClientMac})
                             .ipv4({.src = kClient, .dst = kVip, .tos = 0x0a, .id = 0x1111, .df = true})
                             .tcp({.src_port = 40000, .dst_port = 80, .seq = 0x01020304})
                             .payload(Bytes(1460, 0x61))
                             .build();
  const PacketInfo info = parse_ok(original);
  std::vector<uint8_t> out(256, 0xee);
  const uint32_t len = build_icmp_frag_needed(out.data(), static_cast<uint32_t>(out.size()), original.data(), info,
                                              reply_params(), 1480);
  const Bytes quote(original.begin() + 14, original.begin() + 14 + 20 + 8);
  const Bytes expected = PacketBuilder()
                             .ethernet({.dst = kClientMac, .src = kLbMac})
                             .ipv4({.src = kVip, .dst = kClient, .ttl = 64, .tos = 0xca, .id = 0x0777})
                             .icmp({.type = 3, .code = 4, .rest = 1480})
                             .payload(quote)
                             .build();
  ASSERT_EQ(len, expected.size());
  EXPECT_EQ(first_difference(Bytes(out.begin(), out.begin() + len), expected), "");
  EXPECT_EQ(out[len], 0xee);  // nothing written past the message

  const PacketInfo message = parse_ok(expected);
  EXPECT_TRUE(message.has(kPacketQuoteL4));
  EXPECT_EQ(message.inner_src_port, 40000);
  EXPECT_FALSE(icmp_error_allowed(expected.data(), message));
}

TEST(RewriteIcmpMessages, FragNeededQuotesOptionsTaggedAndShortPayloads) {
  const Bytes original = PacketBuilder()
                             .ethernet()
                             .vlan({.tci = 3})
                             .ipv4({.src = kClient, .dst = kVip, .df = true, .options = {0x94, 4, 0, 0}})
                             .udp({.src_port = 1, .dst_port = 2})
                             .build();
  const PacketInfo info = parse_ok(original);
  IcmpReplyParams params = reply_params();
  params.vlan_tagged = true;
  params.vlan_tci = 3;
  std::vector<uint8_t> out(200);
  const uint32_t len = build_icmp_frag_needed(out.data(), static_cast<uint32_t>(out.size()), original.data(), info, params, 576);
  const Bytes quote(original.begin() + 18, original.end());
  const Bytes expected = PacketBuilder()
                             .ethernet({.dst = kClientMac, .src = kLbMac})
                             .vlan({.tci = 3})
                             .ipv4({.src = kVip, .dst = kClient, .ttl = 64, .tos = 0xc0, .id = 0x0777})
                             .icmp({.type = 3, .code = 4, .rest = 576})
                             .payload(quote)
                             .build();
  EXPECT_EQ(first_difference(Bytes(out.begin(), out.begin() + len), expected), "");
  EXPECT_EQ(build_icmp_frag_needed(out.data(), len - 1, original.data(), info, params, 576), 0u);

  // Fewer than 8 payload bytes: all of them are quoted.
  const Bytes short_payload = PacketBuilder().ethernet().ipv4({.src = kClient, .dst = kVip, .protocol = 253}).payload("abc").build();
  const PacketInfo short_info = parse_ok(short_payload);
  const uint32_t short_len = build_icmp_frag_needed(out.data(), static_cast<uint32_t>(out.size()), short_payload.data(),
                                                    short_info, reply_params(), 1000);
  const Bytes short_expected = PacketBuilder()
                                   .ethernet({.dst = kClientMac, .src = kLbMac})
                                   .ipv4({.src = kVip, .dst = kClient, .ttl = 64, .tos = 0xc0, .id = 0x0777})
                                   .icmp({.type = 3, .code = 4, .rest = 1000})
                                   .payload(Bytes(short_payload.begin() + 14, short_payload.end()))
                                   .build();
  EXPECT_EQ(first_difference(Bytes(out.begin(), out.begin() + short_len), short_expected), "");
}

TEST(RewriteIcmpMessages, EchoReplyIsByteExact) {
  auto build = [](bool reply, uint32_t src, uint32_t dst, uint8_t ttl, MacAddress dst_mac, MacAddress src_mac,
                  uint16_t error) {
    return PacketBuilder()
        .ethernet({.dst = dst_mac, .src = src_mac})
        .ipv4({.src = src, .dst = dst, .ttl = ttl, .id = 0x5151, .df = true})
        .icmp({.type = static_cast<uint8_t>(reply ? 0 : 8), .rest = 0x00170003, .checksum_error = error})
        .payload("0123456789abcdefghijklmnopqrstuvwxyz")
        .build();
  };
  for (const uint16_t error : {0, 0x0a0a}) {
    Bytes frame = build(false, kClient, kVip, 57, kLbMac, kClientMac, error);
    PacketInfo info = parse_ok(frame);
    ASSERT_TRUE(make_echo_reply(frame.data(), &info));
    EXPECT_EQ(first_difference(frame, build(true, kVip, kClient, 64, kClientMac, kLbMac, error)), "") << error;
    EXPECT_TRUE(info == parse_ok(frame));
  }
  Bytes reply = build(true, kVip, kClient, 64, kClientMac, kLbMac, 0);
  PacketInfo reply_info = parse_ok(reply);
  EXPECT_FALSE(make_echo_reply(reply.data(), &reply_info));
}

}  // namespace

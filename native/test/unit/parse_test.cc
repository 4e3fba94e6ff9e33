// Parser tests: every accepted shape with its fields, every drop path, and
// the seed corpus of fuzz_parse (written from the same frames).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/checksum.h"
#include "core/parse.h"
#include "core/wire.h"
#include "packet_builder.h"

namespace l4lb::core {
// Readable failure messages for ParseStatus comparisons.
void PrintTo(const ParseStatus& status, std::ostream* os) {
  switch (status.outcome) {
    case ParseOutcome::ok:
      *os << "ok";
      return;
    case ParseOutcome::not_ip:
      *os << "not_ip";
      return;
    case ParseOutcome::drop:
      *os << "drop(" << kDropReasonNames[static_cast<size_t>(status.reason)] << ")";
      return;
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
constexpr uint32_t kLbOuter = ipv4_addr(198, 18, 1, 254);

const Ipv6Addr kClient6 = ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10});
const Ipv6Addr kVip6 = ipv6_addr({0x2001, 0xdb8, 0, 1, 0, 0, 0, 1});

struct Parsed {
  ParseStatus status;
  PacketInfo info;
};

Parsed parse(const Bytes& frame) {
  Parsed parsed{};
  parsed.status = parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), &parsed.info);
  return parsed;
}

ParseStatus drop(DropReason reason) { return ParseStatus::drop(reason); }

Ipv4Layer client_to_vip() { return Ipv4Layer{.src = kClient, .dst = kVip}; }

Bytes tcp_syn() {
  return PacketBuilder()
      .ethernet()
      .ipv4({.src = kClient, .dst = kVip, .ttl = 61, .tos = 0x2a, .id = 0x1234, .df = true})
      .tcp({.src_port = 40000, .dst_port = 80, .flags = wire::kTcpSyn})
      .build();
}

Bytes udp_datagram(std::string_view payload = "query") {
  return PacketBuilder().ethernet().ipv4(client_to_vip()).udp({.src_port = 5353, .dst_port = 53}).payload(payload).build();
}

// The IPv4 packet (no Ethernet) an ICMP error would quote: a UDP datagram
// from the backend's reply path or a client's request.
Bytes quoted_udp(uint32_t src, uint32_t dst, uint16_t src_port, uint16_t dst_port) {
  return PacketBuilder()
      .ipv4({.src = src, .dst = dst, .ttl = 1, .id = 77})
      .udp({.src_port = src_port, .dst_port = dst_port})
      .payload("quoted payload bytes")
      .build();
}

Bytes prefix(const Bytes& bytes, size_t len) { return Bytes(bytes.begin(), bytes.begin() + static_cast<long>(len)); }

Bytes icmp_error_frame(uint8_t type, uint8_t code, const Bytes& quote) {
  return PacketBuilder()
      .ethernet()
      .ipv4({.src = kRouter, .dst = kClient})
      .icmp({.type = type, .code = code})
      .payload(quote)
      .build();
}

Bytes gre_frame(GreLayer gre) {
  return PacketBuilder()
      .ethernet()
      .ipv4({.src = kLbOuter, .dst = kBackend})
      .gre(gre)
      .ipv4(client_to_vip())
      .tcp({.src_port = 40000, .dst_port = 80})
      .payload("inner")
      .build();
}

Bytes ipv6_tcp(std::vector<Ipv6ExtensionLayer> extensions = {}) {
  PacketBuilder builder;
  builder.ethernet().ipv6({.src = kClient6, .dst = kVip6, .hop_limit = 33, .traffic_class = 0xb8});
  for (const auto& extension : extensions) builder.ipv6_extension(extension);
  return builder.tcp({.src_port = 40000, .dst_port = 443, .flags = wire::kTcpSyn}).payload("v6").build();
}

// ---- Ethernet and VLAN ---------------------------------------------------------

TEST(ParseEthernet, FramesShorterThanTheHeaderAreTruncated) {
  const Bytes frame = tcp_syn();
  for (size_t len = 0; len < wire::kEthHeaderLen; ++len) {
    EXPECT_EQ(parse(prefix(frame, len)).status, drop(DropReason::truncated)) << "length " << len;
  }
}

TEST(ParseEthernet, ArpAndLlcAreNotIpAndNotErrors) {
  const Bytes arp = PacketBuilder().ethernet({.ether_type = wire::kEtherTypeArp}).payload(Bytes(28, 0)).build();
  const Parsed parsed = parse(arp);
  EXPECT_EQ(parsed.status, ParseStatus::not_ip());
  EXPECT_EQ(parsed.info.ether_type, wire::kEtherTypeArp);
  EXPECT_EQ(parsed.info.l3_offset, 14);

  const Bytes llc = PacketBuilder().ethernet({.ether_type = 46}).payload(Bytes(46, 0)).build();
  EXPECT_EQ(parse(llc).status, ParseStatus::not_ip());
}

TEST(ParseVlan, OneTagIsRecorded) {
  const Bytes frame = PacketBuilder()
                          .ethernet()
                          .vlan({.tci = 0x6007})
                          .ipv4(client_to_vip())
                          .tcp({.src_port = 1, .dst_port = 2})
                          .build();
  const Parsed parsed = parse(frame);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_TRUE(parsed.info.has(kPacketVlan));
  EXPECT_EQ(parsed.info.vlan_tci, 0x6007);
  EXPECT_EQ(parsed.info.ether_type, wire::kEtherTypeIpv4);
  EXPECT_EQ(parsed.info.l3_offset, 18);
  EXPECT_EQ(parsed.info.l4_offset, 38);
  EXPECT_EQ(parsed.info.dst_port, 2);
}

TEST(ParseVlan, A802_1adTagAloneIsOneTag) {
  const Bytes frame = PacketBuilder()
                          .ethernet()
                          .vlan({.tci = 12, .tpid = wire::kEtherTypeQinQ})
                          .ipv4(client_to_vip())
                          .udp({.src_port = 1, .dst_port = 2})
                          .build();
  const Parsed parsed = parse(frame);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.vlan_tci, 12);
}

TEST(ParseVlan, CutTagIsTruncated) {
  const Bytes frame = PacketBuilder().ethernet().vlan({.tci = 5}).ipv4(client_to_vip()).build();
  for (size_t len = 14; len < 18; ++len) {
    EXPECT_EQ(parse(prefix(frame, len)).status, drop(DropReason::truncated)) << "length " << len;
  }
}

TEST(ParseVlan, TwoTagsAreBadL2) {
  for (const uint16_t outer_tpid : {wire::kEtherTypeVlan, wire::kEtherTypeQinQ, wire::kEtherTypeQinQLegacy}) {
    const Bytes frame = PacketBuilder()
                            .ethernet()
                            .vlan({.tci = 100, .tpid = outer_tpid})
                            .vlan({.tci = 200})
                            .ipv4(client_to_vip())
                            .udp({.src_port = 1, .dst_port = 2})
                            .build();
    EXPECT_EQ(parse(frame).status, drop(DropReason::bad_l2)) << std::hex << outer_tpid;
  }
}

TEST(ParseVlan, TaggedArpIsNotIp) {
  const Bytes frame =
      PacketBuilder().ethernet().vlan({.tci = 9, .ether_type = wire::kEtherTypeArp}).payload(Bytes(28, 0)).build();
  const Parsed parsed = parse(frame);
  EXPECT_EQ(parsed.status, ParseStatus::not_ip());
  EXPECT_EQ(parsed.info.l3_offset, 18);
  EXPECT_TRUE(parsed.info.has(kPacketVlan));
}

// ---- IPv4 -------------------------------------------------------------------------

TEST(ParseIpv4, TcpSynFieldsInHostOrder) {
  const Parsed parsed = parse(tcp_syn());
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  const PacketInfo& info = parsed.info;
  EXPECT_EQ(info.ip_version, 4);
  EXPECT_EQ(info.ether_type, 0x0800);
  EXPECT_EQ(info.src_addr, 0xc612000au);
  EXPECT_EQ(info.dst_addr, 0xc6120101u);
  EXPECT_EQ(info.ip_protocol, wire::kProtoTcp);
  EXPECT_EQ(info.ttl, 61);
  EXPECT_EQ(info.tos, 0x2a);
  EXPECT_EQ(info.ip_id, 0x1234);
  EXPECT_EQ(info.frag_offset, 0);
  EXPECT_EQ(info.l3_offset, 14);
  EXPECT_EQ(info.l4_offset, 34);
  EXPECT_EQ(info.l4_len, 20);
  EXPECT_EQ(info.l3_end(), 54u);
  EXPECT_EQ(info.src_port, 40000);
  EXPECT_EQ(info.dst_port, 80);
  EXPECT_EQ(info.tcp_flags, wire::kTcpSyn);
  EXPECT_EQ(info.flags, kPacketDontFragment | kPacketIpChecksumOk | kPacketL4);
}

TEST(ParseIpv4, HeaderCutIsTruncated) {
  const Bytes frame = tcp_syn();
  for (size_t len = 14; len < 34; ++len) {
    EXPECT_EQ(parse(prefix(frame, len)).status, drop(DropReason::truncated)) << "length " << len;
  }
}

TEST(ParseIpv4, WrongVersionIsBadHeader) {
  for (const uint8_t version : {0, 5, 6, 15}) {
    Ipv4Layer ip = client_to_vip();
    ip.version = version;
    const Bytes frame = PacketBuilder().ethernet().ipv4(ip).udp({.src_port = 1, .dst_port = 2}).build();
    EXPECT_EQ(parse(frame).status, drop(DropReason::bad_ip_header)) << int(version);
  }
}

TEST(ParseIpv4, IhlBelowFiveIsBadHeader) {
  for (uint8_t ihl = 0; ihl < 5; ++ihl) {
    Ipv4Layer ip = client_to_vip();
    ip.ihl = ihl;
    const Bytes frame = PacketBuilder().ethernet().ipv4(ip).udp({.src_port = 1, .dst_port = 2}).build();
    EXPECT_EQ(parse(frame).status, drop(DropReason::bad_ip_header)) << int(ihl);
  }
}

TEST(ParseIpv4, IhlBeyondTheBytesIsTruncated) {
  Ipv4Layer ip = client_to_vip();
  ip.ihl = 15;  // 60 bytes of header, 28 present
  const Bytes frame = PacketBuilder().ethernet().ipv4(ip).udp({.src_port = 1, .dst_port = 2}).build();
  EXPECT_EQ(parse(frame).status, drop(DropReason::truncated));
}

TEST(ParseIpv4, TotalLengthBelowTheHeaderIsBadLength) {
  Ipv4Layer ip = client_to_vip();
  ip.total_length = 19;
  EXPECT_EQ(parse(PacketBuilder().ethernet().ipv4(ip).udp({}).build()).status, drop(DropReason::bad_ip_length));
  Ipv4Layer with_options = client_to_vip();
  with_options.options = Bytes(8, 1);  // NOPs: a 28-byte header
  with_options.total_length = 24;
  EXPECT_EQ(parse(PacketBuilder().ethernet().ipv4(with_options).udp({}).build()).status,
            drop(DropReason::bad_ip_length));
}

TEST(ParseIpv4, TotalLengthBeyondTheFrameIsBadLength) {
  Ipv4Layer ip = client_to_vip();
  ip.total_length = 20 + 8 + 6;  // one byte more than present
  const Bytes frame = PacketBuilder().ethernet().ipv4(ip).udp({}).payload("12345").build();
  EXPECT_EQ(parse(frame).status, drop(DropReason::bad_ip_length));
  // A frame cut inside its TCP header: the IP length promises more.
  const Bytes syn = tcp_syn();
  EXPECT_EQ(parse(prefix(syn, syn.size() - 1)).status, drop(DropReason::bad_ip_length));
  EXPECT_EQ(parse(prefix(syn, 34)).status, drop(DropReason::bad_ip_length));
}

TEST(ParseIpv4, EthernetPaddingIsIgnored) {
  Bytes frame = PacketBuilder().ethernet().ipv4(client_to_vip()).udp({.src_port = 7, .dst_port = 9}).payload("x").pad_to(60).build();
  frame[59] = 0xee;  // padding content is irrelevant
  const Parsed parsed = parse(frame);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.l4_len, 9);
  EXPECT_EQ(parsed.info.l3_end(), 43u);
  EXPECT_EQ(parsed.info.dst_port, 9);
}

TEST(ParseIpv4, OptionsAreSkippedAndFlagged) {
  for (const size_t option_bytes : {4u, 8u, 40u}) {
    Ipv4Layer ip = client_to_vip();
    ip.options = Bytes(option_bytes, 1);  // NOP
    ip.options[0] = 0x94;                 // Router Alert (RFC 2113), 4 bytes
    ip.options[1] = 4;
    ip.options[2] = 0;
    ip.options[3] = 0;
    const Bytes frame = PacketBuilder().ethernet().ipv4(ip).tcp({.src_port = 1000, .dst_port = 80}).build();
    const Parsed parsed = parse(frame);
    ASSERT_EQ(parsed.status, ParseStatus::ok()) << option_bytes;
    EXPECT_TRUE(parsed.info.has(kPacketIpOptions));
    EXPECT_TRUE(parsed.info.has(kPacketIpChecksumOk));
    EXPECT_EQ(parsed.info.l4_offset, 34 + option_bytes);
    EXPECT_EQ(parsed.info.src_port, 1000);
    EXPECT_EQ(parsed.info.dst_port, 80);
  }
}

TEST(ParseIpv4, WrongHeaderChecksumIsReportedNotDropped) {
  Ipv4Layer ip = client_to_vip();
  ip.checksum_error = 0x100;
  const Parsed parsed = parse(PacketBuilder().ethernet().ipv4(ip).udp({.src_port = 1, .dst_port = 2}).build());
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_FALSE(parsed.info.has(kPacketIpChecksumOk));
}

TEST(ParseIpv4, FirstFragmentCarriesThePorts) {
  Ipv4Layer ip = client_to_vip();
  ip.mf = true;
  ip.id = 4242;
  const Parsed parsed = parse(PacketBuilder().ethernet().ipv4(ip).udp({.src_port = 5, .dst_port = 53}).payload(Bytes(64, 7)).build());
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_TRUE(parsed.info.has(kPacketMoreFragments));
  EXPECT_FALSE(parsed.info.has(kPacketLaterFragment));
  EXPECT_EQ(parsed.info.ip_id, 4242);
  EXPECT_EQ(parsed.info.dst_port, 53);
}

TEST(ParseIpv4, LaterFragmentHasNoL4Header) {
  for (const bool more : {true, false}) {
    Ipv4Layer ip = client_to_vip();
    ip.mf = more;
    ip.frag_offset = 185;
    ip.protocol = wire::kProtoTcp;
    // Three bytes of fragment data: far too short for a TCP header, and not one.
    const Parsed parsed = parse(PacketBuilder().ethernet().ipv4(ip).payload("abc").build());
    ASSERT_EQ(parsed.status, ParseStatus::ok());
    EXPECT_TRUE(parsed.info.has(kPacketLaterFragment));
    EXPECT_EQ(parsed.info.has(kPacketMoreFragments), more);
    EXPECT_FALSE(parsed.info.has(kPacketL4));
    EXPECT_EQ(parsed.info.frag_offset, 185);
    EXPECT_EQ(parsed.info.src_port, 0);
    EXPECT_EQ(parsed.info.l4_offset, 34);
    EXPECT_EQ(parsed.info.l4_len, 3);
  }
}

// ---- TCP and UDP -------------------------------------------------------------------

TEST(ParseTcp, DataOffsetBelowFiveIsBadL4Header) {
  for (uint8_t data_offset = 0; data_offset < 5; ++data_offset) {
    const Bytes frame =
        PacketBuilder().ethernet().ipv4(client_to_vip()).tcp({.src_port = 1, .dst_port = 2, .data_offset = data_offset}).payload("data").build();
    EXPECT_EQ(parse(frame).status, drop(DropReason::bad_l4_header)) << int(data_offset);
  }
}

TEST(ParseTcp, DataOffsetBeyondThePayloadIsBadL4Header) {
  const Bytes no_room =
      PacketBuilder().ethernet().ipv4(client_to_vip()).tcp({.src_port = 1, .dst_port = 2, .data_offset = 6}).build();
  EXPECT_EQ(parse(no_room).status, drop(DropReason::bad_l4_header));
  const Bytes ten_bytes =
      PacketBuilder().ethernet().ipv4(client_to_vip()).tcp({.src_port = 1, .dst_port = 2, .data_offset = 15}).payload("0123456789").build();
  EXPECT_EQ(parse(ten_bytes).status, drop(DropReason::bad_l4_header));
}

TEST(ParseTcp, HeaderShorterThanTwentyBytesIsBadL4Header) {
  Ipv4Layer ip = client_to_vip();
  ip.protocol = wire::kProtoTcp;
  const Bytes frame = PacketBuilder().ethernet().ipv4(ip).payload(Bytes(19, 0x50)).build();
  EXPECT_EQ(parse(frame).status, drop(DropReason::bad_l4_header));
}

TEST(ParseTcp, HeaderIsBoundedByTheIpLengthNotTheFrame) {
  // The IP header declares 10 bytes of payload; the frame holds a whole TCP
  // header behind it. Reading it would trust bytes outside the packet.
  Bytes frame = tcp_syn();
  store_be16(frame.data() + 14 + wire::kIpv4TotalLength, 30);
  store_be16(frame.data() + 14 + wire::kIpv4Checksum, 0);
  store_be16(frame.data() + 14 + wire::kIpv4Checksum, checksum(frame.data() + 14, 20));
  EXPECT_EQ(parse(frame).status, drop(DropReason::bad_l4_header));
}

TEST(ParseTcp, OptionsAreAccepted) {
  const Bytes frame = PacketBuilder()
                          .ethernet()
                          .ipv4(client_to_vip())
                          .tcp({.src_port = 1, .dst_port = 2, .flags = wire::kTcpSyn, .options = {2, 4, 0x05, 0xb4, 1, 3, 3, 7}})
                          .build();
  const Parsed parsed = parse(frame);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.l4_len, 28);
}

TEST(ParseUdp, Fields) {
  const Parsed parsed = parse(udp_datagram());
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.ip_protocol, wire::kProtoUdp);
  EXPECT_EQ(parsed.info.src_port, 5353);
  EXPECT_EQ(parsed.info.dst_port, 53);
  EXPECT_EQ(parsed.info.l4_len, 13);
}

TEST(ParseUdp, LengthFieldOutOfRangeIsBadL4Header) {
  for (const uint16_t length : {0, 7, 14, 0xffff}) {
    const Bytes frame = PacketBuilder().ethernet().ipv4(client_to_vip()).udp({.src_port = 1, .dst_port = 2, .length = length}).payload("12345").build();
    EXPECT_EQ(parse(frame).status, drop(DropReason::bad_l4_header)) << length;
  }
}

TEST(ParseUdp, LengthShorterThanTheIpPayloadIsAccepted) {
  const Bytes frame = PacketBuilder().ethernet().ipv4(client_to_vip()).udp({.src_port = 1, .dst_port = 2, .length = 9}).payload("12345").build();
  EXPECT_EQ(parse(frame).status, ParseStatus::ok());
}

TEST(ParseUdp, PayloadShorterThanTheHeaderIsBadL4Header) {
  Ipv4Layer ip = client_to_vip();
  ip.protocol = wire::kProtoUdp;
  EXPECT_EQ(parse(PacketBuilder().ethernet().ipv4(ip).payload(Bytes(7, 0)).build()).status,
            drop(DropReason::bad_l4_header));
}

// ---- ICMP ---------------------------------------------------------------------------

TEST(ParseIcmp, EchoRequest) {
  const Bytes frame = PacketBuilder()
                          .ethernet()
                          .ipv4(client_to_vip())
                          .icmp({.type = wire::kIcmpEchoRequest, .rest = 0xbeef0001})
                          .payload("ping")
                          .build();
  const Parsed parsed = parse(frame);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.icmp_type, 8);
  EXPECT_EQ(parsed.info.icmp_code, 0);
  EXPECT_EQ(parsed.info.icmp_id, 0xbeef);
  EXPECT_FALSE(parsed.info.has(kPacketIcmpError));
  EXPECT_TRUE(parsed.info.has(kPacketL4));
}

TEST(ParseIcmp, HeaderCutIsBadL4Header) {
  Ipv4Layer ip = client_to_vip();
  ip.protocol = wire::kProtoIcmp;
  EXPECT_EQ(parse(PacketBuilder().ethernet().ipv4(ip).payload(Bytes{8, 0, 0, 0, 0, 0, 0}).build()).status,
            drop(DropReason::bad_l4_header));
}

TEST(ParseIcmp, ErrorQuotingUdpIsParsed) {
  const Bytes frame = icmp_error_frame(wire::kIcmpDestUnreachable, 3, quoted_udp(kClient, kBackend, 5353, 5300));
  const Parsed parsed = parse(frame);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  const PacketInfo& info = parsed.info;
  EXPECT_TRUE(info.has(kPacketIcmpError));
  EXPECT_TRUE(info.has(kPacketQuoteIp));
  EXPECT_TRUE(info.has(kPacketQuoteL4));
  EXPECT_EQ(info.icmp_type, 3);
  EXPECT_EQ(info.icmp_code, 3);
  EXPECT_EQ(info.inner_l3_offset, 34 + 8);
  EXPECT_EQ(info.inner_l4_offset, 34 + 8 + 20);
  EXPECT_EQ(info.inner_protocol, wire::kProtoUdp);
  EXPECT_EQ(info.inner_src_addr, kClient);
  EXPECT_EQ(info.inner_dst_addr, kBackend);
  EXPECT_EQ(info.inner_src_port, 5353);
  EXPECT_EQ(info.inner_dst_port, 5300);
}

TEST(ParseIcmp, EveryErrorTypeQuotes) {
  for (const uint8_t type : {wire::kIcmpDestUnreachable, wire::kIcmpTimeExceeded, wire::kIcmpParameterProblem,
                             wire::kIcmpSourceQuench, wire::kIcmpRedirect}) {
    const Parsed parsed = parse(icmp_error_frame(type, 0, prefix(quoted_udp(kClient, kVip, 1, 2), 28)));
    ASSERT_EQ(parsed.status, ParseStatus::ok());
    EXPECT_TRUE(parsed.info.has(kPacketQuoteL4)) << int(type);
    EXPECT_EQ(parsed.info.inner_dst_port, 2);
  }
}

TEST(ParseIcmp, QuoteWithInnerOptions) {
  const Bytes quote = PacketBuilder()
                          .ipv4({.src = kClient, .dst = kBackend, .options = {0x94, 4, 0, 0}})
                          .tcp({.src_port = 40000, .dst_port = 8080})
                          .build();
  const Parsed parsed = parse(icmp_error_frame(wire::kIcmpTimeExceeded, 0, prefix(quote, 24 + 8)));
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.inner_l4_offset, 42 + 24);
  EXPECT_TRUE(parsed.info.has(kPacketQuoteL4));
  EXPECT_EQ(parsed.info.inner_src_port, 40000);
  EXPECT_EQ(parsed.info.inner_dst_port, 8080);
}

TEST(ParseIcmp, QuoteCutAfterTheIpHeaderHasNoPorts) {
  for (const size_t quoted : {20u, 21u, 27u}) {
    const Parsed parsed = parse(icmp_error_frame(3, 1, prefix(quoted_udp(kClient, kBackend, 9, 10), quoted)));
    ASSERT_EQ(parsed.status, ParseStatus::ok());
    EXPECT_TRUE(parsed.info.has(kPacketQuoteIp));
    EXPECT_FALSE(parsed.info.has(kPacketQuoteL4)) << quoted;
    EXPECT_EQ(parsed.info.inner_dst_addr, kBackend);
    EXPECT_EQ(parsed.info.inner_src_port, 0);
  }
}

TEST(ParseIcmp, QuoteCutInsideTheIpHeaderIsReportedNotRead) {
  for (size_t quoted = 0; quoted < 20; ++quoted) {
    const Parsed parsed = parse(icmp_error_frame(3, 1, prefix(quoted_udp(kClient, kBackend, 9, 10), quoted)));
    ASSERT_EQ(parsed.status, ParseStatus::ok());
    EXPECT_TRUE(parsed.info.has(kPacketIcmpError));
    EXPECT_FALSE(parsed.info.has(kPacketQuoteIp)) << quoted;
    EXPECT_EQ(parsed.info.inner_src_addr, 0u);
  }
}

TEST(ParseIcmp, InvalidQuotedHeaderIsNotAQuote) {
  Bytes quote = quoted_udp(kClient, kBackend, 9, 10);
  quote[0] = 0x44;  // IHL 4
  EXPECT_FALSE(parse(icmp_error_frame(3, 3, quote)).info.has(kPacketQuoteIp));
  quote[0] = 0x65;  // version 6
  EXPECT_FALSE(parse(icmp_error_frame(3, 3, quote)).info.has(kPacketQuoteIp));
  quote[0] = 0x4f;  // 60-byte header, 48 bytes quoted
  EXPECT_FALSE(parse(icmp_error_frame(3, 3, quote)).info.has(kPacketQuoteIp));
}

TEST(ParseIcmp, QuoteIsBoundedByTheOuterLengthNotThePadding) {
  // 20 quoted bytes, then Ethernet padding that looks like ports.
  Bytes frame = icmp_error_frame(3, 3, prefix(quoted_udp(kClient, kBackend, 9, 10), 20));
  frame.insert(frame.end(), {0x12, 0x34, 0x56, 0x78, 0, 8, 0, 0});
  const Parsed parsed = parse(frame);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_TRUE(parsed.info.has(kPacketQuoteIp));
  EXPECT_FALSE(parsed.info.has(kPacketQuoteL4));
  EXPECT_EQ(parsed.info.inner_src_port, 0);
}

TEST(ParseIcmp, QuoteIsBoundedByTheQuotedTotalLength) {
  // The quoted packet declares 20 bytes: what follows in the quote is not its.
  Bytes quote = quoted_udp(kClient, kBackend, 9, 10);
  store_be16(quote.data() + wire::kIpv4TotalLength, 20);
  EXPECT_FALSE(parse(icmp_error_frame(3, 3, prefix(quote, 28))).info.has(kPacketQuoteL4));
  store_be16(quote.data() + wire::kIpv4TotalLength, 19);
  EXPECT_FALSE(parse(icmp_error_frame(3, 3, prefix(quote, 28))).info.has(kPacketQuoteIp));
}

TEST(ParseIcmp, QuoteOfALaterFragmentHasNoPorts) {
  const Bytes quote = PacketBuilder()
                          .ipv4({.src = kClient, .dst = kBackend, .frag_offset = 100, .protocol = wire::kProtoUdp})
                          .payload(Bytes(16, 0x11))
                          .build();
  const Parsed parsed = parse(icmp_error_frame(11, 1, quote));
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_TRUE(parsed.info.has(kPacketQuoteIp));
  EXPECT_FALSE(parsed.info.has(kPacketQuoteL4));
  EXPECT_EQ(parsed.info.inner_src_port, 0);
}

// ---- Tunnels --------------------------------------------------------------------------

TEST(ParseGre, PlainHeaderAndInnerPacket) {
  const Bytes frame = gre_frame({});
  const Parsed outer = parse(frame);
  ASSERT_EQ(outer.status, ParseStatus::ok());
  EXPECT_EQ(outer.info.ip_protocol, wire::kProtoGre);
  EXPECT_TRUE(outer.info.has(kPacketTunnel));
  EXPECT_TRUE(outer.info.has(kPacketL4));
  EXPECT_FALSE(outer.info.has(kPacketGreKey));
  EXPECT_EQ(outer.info.inner_ether_type, wire::kEtherTypeIpv4);
  EXPECT_EQ(outer.info.inner_l3_offset, 34 + 4);

  PacketInfo inner;
  ASSERT_EQ(parse_ipv4_at(frame.data(), outer.info.inner_l3_offset, outer.info.l3_end(), &inner), ParseStatus::ok());
  EXPECT_EQ(inner.l3_offset, 38);
  EXPECT_EQ(inner.l4_offset, 58);
  EXPECT_EQ(inner.src_addr, kClient);
  EXPECT_EQ(inner.dst_addr, kVip);
  EXPECT_EQ(inner.dst_port, 80);
  EXPECT_EQ(inner.l3_end(), outer.info.l3_end());
}

TEST(ParseGre, OptionalFieldsInOrder) {
  const Parsed key_seq = parse(gre_frame({.key = 0xdeadbeef, .sequence = 7}));
  ASSERT_EQ(key_seq.status, ParseStatus::ok());
  EXPECT_TRUE(key_seq.info.has(kPacketGreKey));
  EXPECT_TRUE(key_seq.info.has(kPacketGreSequence));
  EXPECT_FALSE(key_seq.info.has(kPacketGreChecksum));
  EXPECT_EQ(key_seq.info.gre_key, 0xdeadbeefu);
  EXPECT_EQ(key_seq.info.gre_sequence, 7u);
  EXPECT_EQ(key_seq.info.inner_l3_offset, 34 + 12);

  const Parsed all = parse(gre_frame({.with_checksum = true, .key = 1, .sequence = 2}));
  ASSERT_EQ(all.status, ParseStatus::ok());
  EXPECT_TRUE(all.info.has(kPacketGreChecksum));
  EXPECT_EQ(all.info.gre_key, 1u);
  EXPECT_EQ(all.info.gre_sequence, 2u);
  EXPECT_EQ(all.info.inner_l3_offset, 34 + 16);

  const Parsed sequence_only = parse(gre_frame({.sequence = 9}));
  ASSERT_EQ(sequence_only.status, ParseStatus::ok());
  EXPECT_EQ(sequence_only.info.gre_key, 0u);
  EXPECT_EQ(sequence_only.info.gre_sequence, 9u);
  EXPECT_EQ(sequence_only.info.inner_l3_offset, 34 + 8);
}

TEST(ParseGre, VersionOneIsMalformed) {
  EXPECT_EQ(parse(gre_frame({.extra_flags = 1})).status, drop(DropReason::malformed_tunnel));
  EXPECT_EQ(parse(gre_frame({.key = 5, .extra_flags = 1})).status, drop(DropReason::malformed_tunnel));
}

TEST(ParseGre, RoutingBitIsMalformed) {
  EXPECT_EQ(parse(gre_frame({.extra_flags = wire::kGreFlagRouting})).status, drop(DropReason::malformed_tunnel));
}

TEST(ParseGre, ReservedBitsAreMalformed) {
  for (int bit = 3; bit <= 11; ++bit) {
    const uint16_t flag = static_cast<uint16_t>(1u << bit);
    ASSERT_NE(flag & wire::kGreReservedMask, 0);
    EXPECT_EQ(parse(gre_frame({.extra_flags = flag})).status, drop(DropReason::malformed_tunnel)) << bit;
  }
}

TEST(ParseGre, HeaderCutIsMalformed) {
  Ipv4Layer ip{.src = kLbOuter, .dst = kBackend, .protocol = wire::kProtoGre};
  EXPECT_EQ(parse(PacketBuilder().ethernet().ipv4(ip).payload(Bytes{0, 0, 8}).build()).status,
            drop(DropReason::malformed_tunnel));
  // K bit set, key missing.
  EXPECT_EQ(parse(PacketBuilder().ethernet().ipv4(ip).payload(Bytes{0x20, 0, 8, 0, 0, 0}).build()).status,
            drop(DropReason::malformed_tunnel));
}

TEST(ParseGre, ParseGreDirectly) {
  const uint8_t header[] = {0xb0, 0x00, 0x08, 0x00, 0x12, 0x34, 0, 0, 0, 0, 0, 42, 0, 0, 0, 43};
  GreHeader gre;
  ASSERT_TRUE(parse_gre(header, header + sizeof header, &gre));
  EXPECT_EQ(gre.length, 16);
  EXPECT_EQ(gre.protocol, 0x0800);
  EXPECT_EQ(gre.key, 42u);
  EXPECT_EQ(gre.sequence, 43u);
  EXPECT_FALSE(parse_gre(header, header + 15, &gre));
  EXPECT_FALSE(parse_gre(header + 4, header, &gre));
}

TEST(ParseIpip, InnerOffsetAndInnerBoundedByOuterLength) {
  Bytes frame = PacketBuilder()
                    .ethernet()
                    .ipv4({.src = kLbOuter, .dst = kBackend})
                    .ipv4(client_to_vip())
                    .udp({.src_port = 3, .dst_port = 4})
                    .payload("x")
                    .pad_to(80)
                    .build();
  const Parsed outer = parse(frame);
  ASSERT_EQ(outer.status, ParseStatus::ok());
  EXPECT_EQ(outer.info.ip_protocol, wire::kProtoIpip);
  EXPECT_TRUE(outer.info.has(kPacketTunnel));
  EXPECT_FALSE(outer.info.has(kPacketL4));
  EXPECT_EQ(outer.info.inner_l3_offset, 34);
  EXPECT_EQ(outer.info.inner_ether_type, wire::kEtherTypeIpv4);

  PacketInfo inner;
  ASSERT_EQ(parse_ipv4_at(frame.data(), outer.info.inner_l3_offset, outer.info.l3_end(), &inner), ParseStatus::ok());
  EXPECT_EQ(inner.dst_port, 4);
  // The inner packet may not reach into the outer packet's padding.
  store_be16(frame.data() + 34 + wire::kIpv4TotalLength, 30);
  EXPECT_EQ(parse_ipv4_at(frame.data(), outer.info.inner_l3_offset, outer.info.l3_end(), &inner),
            drop(DropReason::bad_ip_length));
}

TEST(ParseIpip, OffsetBeyondTheLimitIsTruncated) {
  const Bytes frame = tcp_syn();
  PacketInfo info;
  EXPECT_EQ(parse_ipv4_at(frame.data(), 60, 54, &info), drop(DropReason::truncated));
  EXPECT_EQ(parse_ipv6_at(frame.data(), 60, 54, &info), drop(DropReason::truncated));
}

// ---- IPv6 -----------------------------------------------------------------------------

TEST(ParseIpv6, TcpFields) {
  const Parsed parsed = parse(ipv6_tcp());
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  const PacketInfo& info = parsed.info;
  EXPECT_EQ(info.ip_version, 6);
  EXPECT_EQ(info.ether_type, wire::kEtherTypeIpv6);
  EXPECT_EQ(info.ttl, 33);
  EXPECT_EQ(info.tos, 0xb8);
  EXPECT_EQ(info.ip_protocol, wire::kProtoTcp);
  EXPECT_EQ(info.l4_offset, 54);
  EXPECT_EQ(info.l4_len, 22);
  EXPECT_EQ(info.src_port, 40000);
  EXPECT_EQ(info.dst_port, 443);
  EXPECT_EQ(info.src_addr, 0u);
  EXPECT_EQ(info.flags, kPacketL4);
}

TEST(ParseIpv6, ExtensionChainIsWalked) {
  const Parsed parsed = parse(ipv6_tcp({
      {.type = wire::kProtoHopByHop},
      {.type = wire::kProtoDestinationOptions, .length = 1},
      {.type = wire::kProtoRouting, .length = 2},
      {.type = wire::kProtoFragment, .more_fragments = true, .identification = 99},
      {.type = wire::kProtoDestinationOptions},
  }));
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.ip_protocol, wire::kProtoTcp);
  EXPECT_EQ(parsed.info.l4_offset, 54 + 8 + 16 + 24 + 8 + 8);
  EXPECT_EQ(parsed.info.dst_port, 443);
  EXPECT_TRUE(parsed.info.has(kPacketMoreFragments));
  EXPECT_FALSE(parsed.info.has(kPacketLaterFragment));
}

TEST(ParseIpv6, LaterFragmentHasNoL4Header) {
  const Parsed parsed = parse(ipv6_tcp({{.type = wire::kProtoFragment, .frag_offset = 3}}));
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_TRUE(parsed.info.has(kPacketLaterFragment));
  EXPECT_FALSE(parsed.info.has(kPacketL4));
  EXPECT_EQ(parsed.info.frag_offset, 3);
  EXPECT_EQ(parsed.info.ip_protocol, wire::kProtoTcp);
  EXPECT_EQ(parsed.info.l4_offset, 62);
  EXPECT_EQ(parsed.info.dst_port, 0);
}

TEST(ParseIpv6, ChainLongerThanTheLimitIsBad) {
  std::vector<Ipv6ExtensionLayer> chain(kMaxIpv6ExtensionHeaders, Ipv6ExtensionLayer{.type = wire::kProtoDestinationOptions});
  EXPECT_EQ(parse(ipv6_tcp(chain)).status, ParseStatus::ok());
  chain.push_back({.type = wire::kProtoDestinationOptions});
  EXPECT_EQ(parse(ipv6_tcp(chain)).status, drop(DropReason::bad_ipv6_header));
}

TEST(ParseIpv6, ExtensionHeaderPastThePayloadIsBad) {
  // A destination options header that claims 48 bytes in a 30-byte payload.
  Bytes frame = ipv6_tcp({{.type = wire::kProtoDestinationOptions}});
  frame[54 + 1] = 5;
  EXPECT_EQ(parse(frame).status, drop(DropReason::bad_ipv6_header));
  // An extension header cut below its 8 fixed bytes.
  const Bytes cut = PacketBuilder()
                        .ethernet()
                        .ipv6({.src = kClient6, .dst = kVip6, .next_header = wire::kProtoRouting})
                        .payload(Bytes{6, 0, 0, 0, 0})
                        .build();
  EXPECT_EQ(parse(cut).status, drop(DropReason::bad_ipv6_header));
  // The payload length, not the frame, bounds the walk.
  Bytes padded = ipv6_tcp({{.type = wire::kProtoDestinationOptions}});
  store_be16(padded.data() + 14 + wire::kIpv6PayloadLength, 4);
  EXPECT_EQ(parse(padded).status, drop(DropReason::bad_ipv6_header));
}

TEST(ParseIpv6, HopByHopOnlyFirst) {
  EXPECT_EQ(parse(ipv6_tcp({{.type = wire::kProtoDestinationOptions}, {.type = wire::kProtoHopByHop}})).status,
            drop(DropReason::bad_ipv6_header));
}

TEST(ParseIpv6, PayloadLengthBeyondTheFrameIsBadLength) {
  Bytes frame = ipv6_tcp();
  store_be16(frame.data() + 14 + wire::kIpv6PayloadLength, 23);
  EXPECT_EQ(parse(frame).status, drop(DropReason::bad_ip_length));
}

TEST(ParseIpv6, PaddingAfterThePayloadIsIgnored) {
  Bytes frame = ipv6_tcp();
  frame.resize(frame.size() + 10, 0xff);
  const Parsed parsed = parse(frame);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.l4_len, 22);
}

TEST(ParseIpv6, FixedHeaderCutIsTruncated) {
  const Bytes frame = ipv6_tcp();
  for (size_t len = 14; len < 54; ++len) {
    EXPECT_EQ(parse(prefix(frame, len)).status, drop(DropReason::truncated)) << len;
  }
}

TEST(ParseIpv6, WrongVersionIsBadHeader) {
  const Bytes frame = PacketBuilder().ethernet().ipv6({.src = kClient6, .dst = kVip6, .version = 4}).udp({}).build();
  EXPECT_EQ(parse(frame).status, drop(DropReason::bad_ip_header));
}

TEST(ParseIpv6, AhEspAndNoNextHeaderEndTheWalk) {
  for (const uint8_t protocol : {wire::kProtoAh, wire::kProtoEsp, wire::kProtoNoNextHeader}) {
    const Bytes frame = PacketBuilder()
                            .ethernet()
                            .ipv6({.src = kClient6, .dst = kVip6})
                            .ipv6_extension({.type = wire::kProtoDestinationOptions, .next_header = protocol})
                            .payload(Bytes(24, 0))
                            .build();
    const Parsed parsed = parse(frame);
    ASSERT_EQ(parsed.status, ParseStatus::ok());
    EXPECT_EQ(parsed.info.ip_protocol, protocol);
    EXPECT_EQ(parsed.info.l4_offset, 62);
    EXPECT_FALSE(parsed.info.has(kPacketL4));
  }
}

TEST(ParseIpv6, Icmpv6EchoAndError) {
  const Bytes echo = PacketBuilder()
                         .ethernet()
                         .ipv6({.src = kClient6, .dst = kVip6})
                         .icmp({.type = wire::kIcmpv6EchoRequest, .rest = 0x77770001})
                         .build();
  const Parsed parsed = parse(echo);
  ASSERT_EQ(parsed.status, ParseStatus::ok());
  EXPECT_EQ(parsed.info.ip_protocol, wire::kProtoIcmpv6);
  EXPECT_EQ(parsed.info.icmp_type, wire::kIcmpv6EchoRequest);
  EXPECT_EQ(parsed.info.icmp_id, 0x7777);
  const Bytes error = PacketBuilder().ethernet().ipv6({.src = kClient6, .dst = kVip6}).icmp({.type = 1, .code = 4}).payload(Bytes(48, 0)).build();
  EXPECT_TRUE(parse(error).info.has(kPacketIcmpError));
}

TEST(ParseIpv6, UdpLengthIsChecked) {
  const Bytes frame = PacketBuilder().ethernet().ipv6({.src = kClient6, .dst = kVip6}).udp({.src_port = 1, .dst_port = 2, .length = 40}).payload("x").build();
  EXPECT_EQ(parse(frame).status, drop(DropReason::bad_l4_header));
}

// ---- Robustness -------------------------------------------------------------------------

std::vector<std::pair<std::string, Bytes>> seed_frames();

// Any frame cut before the end of its IP packet is reported, never misread
// (and under AddressSanitizer, never read past: each prefix is its own
// exactly sized buffer).
TEST(ParseRobustness, EveryTruncationOfAValidFrameIsADrop) {
  for (const auto& [name, frame] : seed_frames()) {
    const Parsed whole = parse(frame);
    if (!whole.status.is_ok()) continue;
    for (size_t len = 0; len < whole.info.l3_end(); ++len) {
      const Parsed cut = parse(prefix(frame, len));
      EXPECT_EQ(cut.status.outcome, ParseOutcome::drop) << name << " cut to " << len;
      EXPECT_TRUE(cut.status.reason == DropReason::truncated || cut.status.reason == DropReason::bad_ip_length)
          << name << " cut to " << len;
    }
  }
}

TEST(ParseRobustness, ParsingTwiceGivesTheSameResult) {
  for (const auto& [name, frame] : seed_frames()) {
    const Parsed first = parse(frame);
    const Parsed second = parse(frame);
    EXPECT_EQ(first.status, second.status) << name;
    if (first.status.is_ok()) {
      EXPECT_TRUE(first.info == second.info) << name;
    }
  }
}

// ---- Seed corpus of fuzz_parse -------------------------------------------------------------

std::vector<std::pair<std::string, Bytes>> seed_frames() {
  std::vector<std::pair<std::string, Bytes>> seeds;
  auto add = [&seeds](std::string name, Bytes frame) { seeds.emplace_back(std::move(name), std::move(frame)); };

  add("tcp-syn", tcp_syn());
  add("tcp-syn-vlan", PacketBuilder()
                          .ethernet()
                          .vlan({.tci = 100})
                          .ipv4({.src = kClient, .dst = kVip, .df = true})
                          .tcp({.src_port = 40001, .dst_port = 443, .flags = wire::kTcpSyn, .options = {2, 4, 0x05, 0xb4}})
                          .build());
  add("tcp-data-padded", PacketBuilder()
                             .ethernet()
                             .ipv4(client_to_vip())
                             .tcp({.src_port = 40002, .dst_port = 80, .flags = wire::kTcpAckFlag | wire::kTcpPsh})
                             .payload("GET")
                             .pad_to(64)
                             .build());
  add("tcp-partial-checksum", PacketBuilder()
                                  .ethernet()
                                  .ipv4(client_to_vip())
                                  .tcp({.src_port = 40003, .dst_port = 80, .partial_checksum = true})
                                  .payload("local stack")
                                  .build());
  add("tcp-bad-checksum", PacketBuilder()
                              .ethernet()
                              .ipv4(client_to_vip())
                              .tcp({.src_port = 40004, .dst_port = 80, .checksum_error = 0x1111})
                              .payload("bits flipped")
                              .build());
  add("udp-dns", udp_datagram());
  add("udp-zero-checksum", PacketBuilder().ethernet().ipv4(client_to_vip()).udp({.src_port = 9, .dst_port = 53, .no_checksum = true}).payload("q").build());
  add("udp-padded", PacketBuilder().ethernet().ipv4(client_to_vip()).udp({.src_port = 9, .dst_port = 53}).pad_to(60).build());
  add("icmp-echo-request", PacketBuilder()
                               .ethernet()
                               .ipv4(client_to_vip())
                               .icmp({.type = wire::kIcmpEchoRequest, .rest = 0x12340001})
                               .payload("abcdefgh")
                               .build());
  add("icmp-port-unreachable-quote-udp",
      icmp_error_frame(wire::kIcmpDestUnreachable, 3, prefix(quoted_udp(kClient, kBackend, 5353, 5300), 28)));
  add("icmp-frag-needed-quote-tcp",
      PacketBuilder()
          .ethernet()
          .ipv4({.src = kRouter, .dst = kClient})
          .icmp({.type = wire::kIcmpDestUnreachable, .code = wire::kIcmpCodeFragNeeded, .rest = 1400})
          .payload(PacketBuilder().ipv4({.src = kClient, .dst = kBackend, .df = true}).tcp({.src_port = 40000, .dst_port = 8080}).payload(Bytes(1472, 0)).build())
          .build());
  add("icmp-time-exceeded-quote-tcp-8", icmp_error_frame(wire::kIcmpTimeExceeded, 0,
                                                         prefix(PacketBuilder().ipv4({.src = kClient, .dst = kBackend}).tcp({.src_port = 1, .dst_port = 2}).build(), 28)));
  add("icmp-quote-truncated", icmp_error_frame(wire::kIcmpDestUnreachable, 1, prefix(quoted_udp(kClient, kBackend, 1, 2), 24)));
  add("icmp-parameter-problem-quote-options",
      icmp_error_frame(wire::kIcmpParameterProblem, 0,
                       prefix(PacketBuilder().ipv4({.src = kClient, .dst = kVip, .options = {0x94, 4, 0, 0}}).udp({.src_port = 7, .dst_port = 8}).build(), 32)));
  add("ipv4-options", PacketBuilder()
                          .ethernet()
                          .ipv4({.src = kClient, .dst = kVip, .options = {0x94, 4, 0, 0, 1, 1, 1, 0}})
                          .tcp({.src_port = 40005, .dst_port = 80})
                          .build());
  add("ipv4-first-fragment", PacketBuilder()
                                 .ethernet()
                                 .ipv4({.src = kClient, .dst = kVip, .id = 99, .mf = true})
                                 .udp({.src_port = 9, .dst_port = 53})
                                 .payload(Bytes(32, 1))
                                 .build());
  add("ipv4-later-fragment", PacketBuilder()
                                 .ethernet()
                                 .ipv4({.src = kClient, .dst = kVip, .id = 99, .frag_offset = 5, .protocol = wire::kProtoUdp})
                                 .payload(Bytes(12, 2))
                                 .build());
  {
    Ipv4Layer ip = client_to_vip();
    ip.checksum_error = 0x2222;
    add("ipv4-bad-checksum", PacketBuilder().ethernet().ipv4(ip).udp({.src_port = 1, .dst_port = 2}).build());
    Ipv4Layer ihl4 = client_to_vip();
    ihl4.ihl = 4;
    add("ipv4-ihl-4", PacketBuilder().ethernet().ipv4(ihl4).udp({.src_port = 1, .dst_port = 2}).build());
    Ipv4Layer longer = client_to_vip();
    longer.total_length = 200;
    add("ipv4-total-length-too-long", PacketBuilder().ethernet().ipv4(longer).udp({.src_port = 1, .dst_port = 2}).build());
    Ipv4Layer shorter = client_to_vip();
    shorter.total_length = 12;
    add("ipv4-total-length-too-short", PacketBuilder().ethernet().ipv4(shorter).udp({.src_port = 1, .dst_port = 2}).build());
  }
  add("truncated-tcp", prefix(tcp_syn(), 44));
  add("truncated-ethernet", prefix(tcp_syn(), 10));
  add("tcp-bad-data-offset", PacketBuilder().ethernet().ipv4(client_to_vip()).tcp({.src_port = 1, .dst_port = 2, .data_offset = 3}).build());
  add("udp-bad-length", PacketBuilder().ethernet().ipv4(client_to_vip()).udp({.src_port = 1, .dst_port = 2, .length = 99}).build());
  add("gre-plain", gre_frame({}));
  add("gre-key", gre_frame({.key = 0x00010002}));
  add("gre-key-seq", gre_frame({.key = 0xdeadbeef, .sequence = 1}));
  add("gre-checksum-key-seq", gre_frame({.with_checksum = true, .key = 5, .sequence = 6}));
  add("gre-version-1", gre_frame({.key = 1, .extra_flags = 1}));
  add("gre-routing", gre_frame({.extra_flags = wire::kGreFlagRouting}));
  add("ipip", PacketBuilder()
                  .ethernet()
                  .ipv4({.src = kLbOuter, .dst = kBackend, .df = true})
                  .ipv4(client_to_vip())
                  .udp({.src_port = 3, .dst_port = 4})
                  .payload("tunnelled")
                  .build());
  add("ipv6-tcp", ipv6_tcp());
  add("ipv6-extension-chain", ipv6_tcp({{.type = wire::kProtoHopByHop},
                                        {.type = wire::kProtoRouting, .length = 2},
                                        {.type = wire::kProtoFragment, .more_fragments = true},
                                        {.type = wire::kProtoDestinationOptions, .length = 1}}));
  add("ipv6-later-fragment", ipv6_tcp({{.type = wire::kProtoFragment, .frag_offset = 8}}));
  add("ipv6-chain-too-long", ipv6_tcp(std::vector<Ipv6ExtensionLayer>(9, Ipv6ExtensionLayer{})));
  add("ipv6-icmpv6-echo", PacketBuilder().ethernet().ipv6({.src = kClient6, .dst = kVip6}).icmp({.type = wire::kIcmpv6EchoRequest, .rest = 0x00010001}).build());
  add("ipv6-esp", PacketBuilder().ethernet().ipv6({.src = kClient6, .dst = kVip6, .next_header = wire::kProtoEsp}).payload(Bytes(16, 3)).build());
  add("arp", PacketBuilder().ethernet({.ether_type = wire::kEtherTypeArp}).payload(Bytes(28, 0)).build());
  add("vlan-double-tag", PacketBuilder().ethernet().vlan({.tci = 1, .tpid = wire::kEtherTypeQinQ}).vlan({.tci = 2}).ipv4(client_to_vip()).udp({}).build());
  return seeds;
}

// The seeds of native/test/corpus/parse are these frames. Regenerate them
// with L4LB_UPDATE_CORPUS=1 ./parse_test --gtest_filter='ParseCorpus.*'.
// Files the fuzzer added next to them are left alone.
TEST(ParseCorpus, SeedFilesMatchTheBuilder) {
  const std::filesystem::path directory = std::filesystem::path(L4LB_SOURCE_DIR) / "native/test/corpus/parse";
  const bool update = std::getenv("L4LB_UPDATE_CORPUS") != nullptr;
  if (update) std::filesystem::create_directories(directory);
  for (const auto& [name, frame] : seed_frames()) {
    const std::filesystem::path path = directory / name;
    if (update) {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
      ASSERT_TRUE(out.good()) << path;
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in.good()) << path << " is missing: run with L4LB_UPDATE_CORPUS=1";
    const Bytes stored((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(first_difference(stored, frame), "") << name;
  }
}

TEST(ParseCorpus, SeedsCoverEveryOutcome) {
  bool saw_ok = false;
  bool saw_not_ip = false;
  std::vector<bool> reasons(static_cast<size_t>(DropReason::count), false);
  for (const auto& [name, frame] : seed_frames()) {
    const Parsed parsed = parse(frame);
    saw_ok |= parsed.status.outcome == ParseOutcome::ok;
    saw_not_ip |= parsed.status.outcome == ParseOutcome::not_ip;
    if (parsed.status.outcome == ParseOutcome::drop) reasons[static_cast<size_t>(parsed.status.reason)] = true;
  }
  EXPECT_TRUE(saw_ok);
  EXPECT_TRUE(saw_not_ip);
  for (const DropReason reason : {DropReason::truncated, DropReason::bad_l2, DropReason::bad_ip_header,
                                  DropReason::bad_ip_length, DropReason::bad_l4_header, DropReason::bad_ipv6_header,
                                  DropReason::malformed_tunnel}) {
    EXPECT_TRUE(reasons[static_cast<size_t>(reason)]) << kDropReasonNames[static_cast<size_t>(reason)];
  }
}

}  // namespace

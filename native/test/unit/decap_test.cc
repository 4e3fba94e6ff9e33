// The real server's userspace decapsulator, its pure half: tunnel packets as a
// raw IPv4 socket receives them go in; the inner packet (compared byte for
// byte with one built from scratch) or the counted reason for dropping them
// comes out. Replies read from the TUN device go the other way, into GRE.
// The last tests feed mutated and cut packets by the hundred thousand under
// ASan+UBSan: nothing may read outside the packet, and whatever is delivered
// must be a well-formed IPv4 packet for a VIP.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/checksum.h"
#include "core/frame.h"
#include "core/parse.h"
#include "core/wire.h"
#include "packet_builder.h"
#include "realserver/tunnel_packet.h"

namespace {

using namespace l4lb::realserver;
using namespace l4lb::test;
namespace core = l4lb::core;

constexpr uint32_t kBalancer = ipv4_addr(198, 18, 0, 1);
constexpr uint32_t kRealServer = ipv4_addr(198, 18, 0, 2);
constexpr uint32_t kOtherLocal = ipv4_addr(198, 18, 0, 3);
constexpr uint32_t kClient = ipv4_addr(198, 18, 50, 7);
constexpr uint32_t kVip = ipv4_addr(198, 18, 100, 1);
constexpr uint32_t kOtherVip = ipv4_addr(198, 18, 100, 2);

const std::vector<uint32_t> kVips{kVip};
const std::vector<uint32_t> kLocals{kRealServer};

DecapFilter accept_all() {
  DecapFilter filter;
  filter.inner_destinations = kVips;
  filter.accept_ipip = true;
  filter.accept_gre = true;
  return filter;
}

// A packet as the raw socket hands it over: headroom, then the bytes.
class PacketBuffer {
 public:
  explicit PacketBuffer(const Bytes& bytes) : storage_(kTunnelPacketHeadroom + bytes.size(), 0xcc), len_(bytes.size()) {
    std::copy(bytes.begin(), bytes.end(), storage_.begin() + kTunnelPacketHeadroom);
  }
  uint8_t* packet() { return storage_.data() + kTunnelPacketHeadroom; }
  uint32_t len() const { return static_cast<uint32_t>(len_); }

 private:
  std::vector<uint8_t> storage_;
  size_t len_;
};

Bytes inner_tcp_syn(uint32_t dst = kVip, uint8_t tos = 0) {
  return PacketBuilder()
      .ipv4({.src = kClient, .dst = dst, .ttl = 61, .tos = tos, .id = 0x4242, .df = true})
      .tcp({.src_port = 40001, .dst_port = 80, .flags = core::wire::kTcpSyn, .seq = 0x01020304})
      .build();
}

Bytes inner_udp(uint32_t dst = kVip) {
  return PacketBuilder()
      .ipv4({.src = kClient, .dst = dst, .id = 7})
      .udp({.src_port = 5353, .dst_port = 7000})
      .payload("ping through the tunnel")
      .build();
}

Bytes ipip(const Bytes& inner, Ipv4Layer outer = {.src = kBalancer, .dst = kRealServer}) {
  outer.protocol = core::wire::kProtoIpip;
  return PacketBuilder().ipv4(outer).payload(inner).build();
}

Bytes gre(const Bytes& inner, GreLayer layer = {}, Ipv4Layer outer = {.src = kBalancer, .dst = kRealServer}) {
  if (!layer.protocol) layer.protocol = core::wire::kEtherTypeIpv4;
  return PacketBuilder().ipv4(outer).gre(layer).payload(inner).build();
}

struct Outcome {
  DecapResult result;
  Bytes inner;  // on deliver
};

Outcome run(const Bytes& packet, const DecapFilter& filter = accept_all()) {
  PacketBuffer buffer(packet);
  Outcome outcome;
  outcome.result = decapsulate_tunnel_packet(buffer.packet(), buffer.len(), filter);
  if (outcome.result.verdict == DecapVerdict::deliver) {
    const uint8_t* inner = buffer.packet() + outcome.result.inner_offset;
    outcome.inner.assign(inner, inner + outcome.result.inner_len);
  }
  return outcome;
}

std::string describe(const DecapResult& result) {
  switch (result.verdict) {
    case DecapVerdict::deliver:
      return "deliver";
    case DecapVerdict::malformed:
      return std::string("malformed:") + kDecapMalformedNames[static_cast<size_t>(result.malformed_reason)];
    case DecapVerdict::not_for_us:
      return std::string("not-for-us:") + kDecapNotForUsNames[static_cast<size_t>(result.not_for_us_reason)];
  }
  return "?";
}

// ---- Delivered -------------------------------------------------------------------

TEST(Decap, IpipDeliversTheInnerPacketByteForByte) {
  for (const Bytes& inner : {inner_tcp_syn(), inner_udp()}) {
    const Outcome out = run(ipip(inner));
    ASSERT_EQ(describe(out.result), "deliver");
    EXPECT_EQ(out.result.kind, TunnelKind::ipip);
    EXPECT_EQ(first_difference(out.inner, inner), "");
  }
}

TEST(Decap, GreDeliversTheInnerPacketWithEveryOptionalField) {
  const struct {
    const char* what;
    GreLayer layer;
  } cases[] = {
      {"no options", {}},
      {"key", {.key = 0x01020304}},
      {"checksum", {.with_checksum = true}},
      {"checksum and sequence", {.with_checksum = true, .sequence = 99}},
      {"checksum, key and sequence", {.with_checksum = true, .key = 7, .sequence = 0xfffffffe}},
  };
  for (const auto& c : cases) {
    for (const Bytes& inner : {inner_tcp_syn(), inner_udp()}) {
      const Outcome out = run(gre(inner, c.layer));
      ASSERT_EQ(describe(out.result), "deliver") << c.what;
      EXPECT_EQ(out.result.kind, TunnelKind::gre);
      EXPECT_EQ(first_difference(out.inner, inner), "") << c.what;
    }
  }
}

TEST(Decap, OuterOptionsAndTrailingBytesAreNotPartOfTheInnerPacket) {
  const Bytes inner = inner_udp();
  Bytes padded_inner = inner;
  padded_inner.insert(padded_inner.end(), {0xde, 0xad, 0xbe, 0xef});  // inside the outer payload, after the inner packet
  const Outcome out = run(gre(padded_inner, {}, {.src = kBalancer, .dst = kRealServer, .options = {1, 1, 1, 0}}));
  ASSERT_EQ(describe(out.result), "deliver");
  EXPECT_EQ(first_difference(out.inner, inner), "");
}

TEST(Decap, InnerFragmentsAreDeliveredForTheLocalStackToReassemble) {
  const Bytes first = PacketBuilder()
                          .ipv4({.src = kClient, .dst = kVip, .id = 5, .mf = true})
                          .udp({.src_port = 1, .dst_port = 2})
                          .payload(Bytes(64, 0x5a))
                          .build();
  const Bytes later = PacketBuilder()
                          .ipv4({.src = kClient, .dst = kVip, .id = 5, .frag_offset = 9, .protocol = core::wire::kProtoUdp})
                          .payload(Bytes(40, 0x5a))
                          .build();
  for (const Bytes& inner : {first, later}) {
    const Outcome out = run(ipip(inner));
    ASSERT_EQ(describe(out.result), "deliver");
    EXPECT_EQ(first_difference(out.inner, inner), "");
  }
}

// RFC 6040 §4.2, as the core's decapsulate() implements it.
TEST(Decap, CongestionExperiencedReachesTheInnerHeader) {
  const Outcome out = run(ipip(inner_tcp_syn(kVip, 0x02), {.src = kBalancer, .dst = kRealServer, .tos = 0x03}));
  ASSERT_EQ(describe(out.result), "deliver");
  EXPECT_EQ(first_difference(out.inner, inner_tcp_syn(kVip, 0x03)), "");
}

// ---- Malformed, by reason ------------------------------------------------------------

TEST(Decap, MalformedOuterPacketsAreDroppedWithTheirReason) {
  const Bytes good = gre(inner_udp(), {.key = 1});
  auto cut = [](Bytes bytes, size_t len) {
    bytes.resize(len);
    return bytes;
  };
  auto with_byte = [](Bytes bytes, size_t at, uint8_t value) {
    bytes[at] = value;
    return bytes;
  };
  Bytes inner_says_longer = inner_udp();
  core::store_be16(inner_says_longer.data() + 2, static_cast<uint16_t>(inner_says_longer.size() + 40));
  // The inner header checksum is not the decapsulator's business (the local
  // stack checks it); only the length matters here.
  Bytes inner_says_shorter_than_header = inner_udp();
  core::store_be16(inner_says_shorter_than_header.data() + 2, 12);
  Bytes inner_tcp_lies = inner_tcp_syn();
  inner_tcp_lies[20 + 12] = 0xf0;  // data offset 60 bytes in a 20-byte segment
  const Bytes inner_v6_header = with_byte(inner_udp(), 0, 0x65);

  const struct {
    const char* what;
    Bytes packet;
    const char* expected;
  } cases[] = {
      {"shorter than an IPv4 header", cut(good, 19), "malformed:outer-truncated"},
      {"empty", {}, "malformed:outer-truncated"},
      {"total length beyond the bytes received", cut(good, good.size() - 1), "malformed:outer-truncated"},
      {"IPv6 version nibble", with_byte(good, 0, 0x65), "malformed:outer-bad-header"},
      {"IHL below 5", gre(inner_udp(), {}, {.src = kBalancer, .dst = kRealServer, .ihl = 4}), "malformed:outer-bad-header"},
      {"total length below the header",
       gre(inner_udp(), {}, {.src = kBalancer, .dst = kRealServer, .total_length = 16}), "malformed:outer-bad-header"},
      {"outer header checksum", gre(inner_udp(), {}, {.src = kBalancer, .dst = kRealServer, .checksum_error = 1}),
       "malformed:outer-checksum"},
      {"outer first fragment", gre(inner_udp(), {}, {.src = kBalancer, .dst = kRealServer, .mf = true}),
       "malformed:outer-fragment"},
      {"outer later fragment", ipip(inner_udp(), {.src = kBalancer, .dst = kRealServer, .frag_offset = 3}),
       "malformed:outer-fragment"},
      {"plain UDP", inner_udp(), "malformed:not-a-tunnel"},
      {"IPv6 in IPv4 (protocol 41)",
       PacketBuilder().ipv4({.src = kBalancer, .dst = kRealServer, .protocol = 41}).payload(Bytes(40, 0)).build(),
       "malformed:not-a-tunnel"},
      {"GRE header cut to 2 bytes",
       PacketBuilder().ipv4({.src = kBalancer, .dst = kRealServer, .protocol = 47}).payload(Bytes{0, 0}).build(),
       "malformed:gre-truncated"},
      {"GRE key flag without the key",
       PacketBuilder().ipv4({.src = kBalancer, .dst = kRealServer, .protocol = 47}).payload(Bytes{0x20, 0, 8, 0}).build(),
       "malformed:gre-truncated"},
      {"GRE version 1", gre(inner_udp(), {.extra_flags = 1}), "malformed:gre-version"},
      {"GRE version 7", gre(inner_udp(), {.extra_flags = 7}), "malformed:gre-version"},
      {"GRE routing bit", gre(inner_udp(), {.extra_flags = core::wire::kGreFlagRouting}), "malformed:gre-flags"},
      {"GRE reserved bit", gre(inner_udp(), {.extra_flags = 0x0008}), "malformed:gre-flags"},
      {"GRE protocol IPv6", gre(inner_udp(), {.protocol = 0x86dd}), "malformed:gre-protocol"},
      {"GRE protocol transparent Ethernet", gre(inner_udp(), {.protocol = 0x6558}), "malformed:gre-protocol"},
      {"GRE protocol unknown", gre(inner_udp(), {.protocol = 0x1234}), "malformed:gre-protocol"},
      {"GRE checksum wrong", with_byte(gre(inner_udp(), {.with_checksum = true}), 20 + 5, 0x00),
       "malformed:gre-checksum"},
      {"inner packet of 10 bytes", ipip(cut(inner_udp(), 10)),
       "malformed:inner-truncated"},
      {"inner IPv6 version nibble", gre(inner_v6_header), "malformed:inner-bad-header"},
      {"inner total length longer than what is left", gre(inner_says_longer), "malformed:inner-bad-length"},
      {"inner total length shorter than its header", ipip(inner_says_shorter_than_header), "malformed:inner-bad-length"},
      {"inner TCP data offset past the segment", gre(inner_tcp_lies), "malformed:inner-bad-l4-header"},
      {"outer CE over a not-ECT inner packet", ipip(inner_udp(), {.src = kBalancer, .dst = kRealServer, .tos = 0x03}),
       "malformed:ecn"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(describe(run(c.packet).result), c.expected) << c.what;
  }
}

// ---- Not for us ----------------------------------------------------------------------

TEST(Decap, PacketsThatAreNotOursAreCountedApart) {
  DecapFilter gre_only = accept_all();
  gre_only.accept_ipip = false;
  EXPECT_EQ(describe(run(ipip(inner_udp()), gre_only).result), "not-for-us:tunnel-type");

  DecapFilter ipip_only = accept_all();
  ipip_only.accept_gre = false;
  EXPECT_EQ(describe(run(gre(inner_udp()), ipip_only).result), "not-for-us:tunnel-type");

  DecapFilter local = accept_all();
  local.outer_destinations = kLocals;
  EXPECT_EQ(describe(run(gre(inner_udp()), local).result), "deliver");
  EXPECT_EQ(describe(run(gre(inner_udp(), {}, {.src = kBalancer, .dst = kOtherLocal}), local).result),
            "not-for-us:outer-destination");

  DecapFilter keyed = accept_all();
  keyed.require_gre_key = true;
  keyed.gre_key = 42;
  EXPECT_EQ(describe(run(gre(inner_udp(), {.key = 42}), keyed).result), "deliver");
  EXPECT_EQ(describe(run(gre(inner_udp(), {.key = 43}), keyed).result), "not-for-us:gre-key");
  EXPECT_EQ(describe(run(gre(inner_udp()), keyed).result), "not-for-us:gre-key");
  // Without a configured key, any key is accepted.
  EXPECT_EQ(describe(run(gre(inner_udp(), {.key = 43})).result), "deliver");

  EXPECT_EQ(describe(run(gre(inner_udp(kOtherVip))).result), "not-for-us:inner-destination");
  EXPECT_EQ(describe(run(ipip(inner_tcp_syn(kRealServer))).result), "not-for-us:inner-destination");
}

// ---- Replies back through the tunnel ------------------------------------------------------

Bytes reply_from_vip(uint8_t tos = 0, bool df = true) {
  return PacketBuilder()
      .ipv4({.src = kVip, .dst = kClient, .tos = tos, .id = 0x0909, .df = df})
      .tcp({.src_port = 80, .dst_port = 40001, .flags = core::wire::kTcpSyn | core::wire::kTcpAckFlag,
            .seq = 0x0a0b0c0d, .ack = 0x01020305})
      .build();
}

struct Encapsulated {
  ReturnResult result;
  Bytes outer;
};

Encapsulated encapsulate(const Bytes& packet, const ReturnTunnel& tunnel, uint16_t id) {
  PacketBuffer buffer(packet);
  Encapsulated out;
  out.result = encapsulate_return_packet(buffer.packet(), buffer.len(), tunnel, id);
  if (out.result.ok) {
    const uint8_t* outer = buffer.packet() + out.result.outer_offset;
    out.outer.assign(outer, outer + out.result.outer_len);
  }
  return out;
}

ReturnTunnel return_tunnel(bool with_key = false, uint32_t key = 0) {
  ReturnTunnel tunnel;
  tunnel.kind = TunnelKind::gre;
  tunnel.outer_src = kRealServer;
  tunnel.outer_dst = kBalancer;
  tunnel.with_key = with_key;
  tunnel.gre_key = key;
  tunnel.inner_sources = kVips;
  return tunnel;
}

TEST(DecapReturn, RepliesFromTheVipGoBackInGreByteForByte) {
  for (const bool with_key : {false, true}) {
    for (const uint8_t tos : {0x00, 0xb8, 0x02}) {
      const Bytes reply = reply_from_vip(tos);
      const Encapsulated out = encapsulate(reply, return_tunnel(with_key, 0xabcdef01), 0x3131);
      ASSERT_TRUE(out.result.ok);
      GreLayer layer{.protocol = core::wire::kEtherTypeIpv4};
      if (with_key) layer.key = 0xabcdef01;
      const Bytes expected = PacketBuilder()
                                 .ipv4({.src = kRealServer, .dst = kBalancer, .ttl = 64, .tos = tos, .id = 0x3131, .df = true})
                                 .gre(layer)
                                 .payload(reply)
                                 .build();
      EXPECT_EQ(first_difference(out.outer, expected), "") << "key " << with_key << " tos " << int(tos);
    }
  }
  // DF clear on the inner packet: clear on the outer one too.
  const Encapsulated fragmentable = encapsulate(reply_from_vip(0, false), return_tunnel(), 1);
  ASSERT_TRUE(fragmentable.result.ok);
  EXPECT_EQ(core::load_be16(fragmentable.outer.data() + 6) & core::wire::kIpv4FlagDf, 0);
}

TEST(DecapReturn, WhatTheReturnPathSendsTheDecapsulatorTakesBack) {
  const Bytes reply = reply_from_vip();
  const Encapsulated out = encapsulate(reply, return_tunnel(true, 5), 77);
  ASSERT_TRUE(out.result.ok);
  DecapFilter at_balancer;
  const std::vector<uint32_t> client{kClient};
  at_balancer.inner_destinations = client;
  at_balancer.accept_gre = true;
  at_balancer.require_gre_key = true;
  at_balancer.gre_key = 5;
  const Outcome back = run(out.outer, at_balancer);
  ASSERT_EQ(describe(back.result), "deliver");
  EXPECT_EQ(first_difference(back.inner, reply), "");
}

TEST(DecapReturn, OnlyIpv4RepliesFromAVipAreSent) {
  const Bytes ipv6 = PacketBuilder()
                         .ipv6({.src = ipv6_addr({0xfe80, 0, 0, 0, 0, 0, 0, 1}), .dst = ipv6_addr({0xff02, 0, 0, 0, 0, 0, 0, 2})})
                         .icmp({.type = 133})
                         .build();
  EXPECT_EQ(encapsulate(ipv6, return_tunnel(), 1).result.reason, ReturnDrop::not_ipv4);
  EXPECT_EQ(encapsulate({}, return_tunnel(), 1).result.reason, ReturnDrop::not_ipv4);
  const Bytes from_elsewhere = PacketBuilder().ipv4({.src = kRealServer, .dst = kClient}).udp({.src_port = 1, .dst_port = 2}).build();
  EXPECT_EQ(encapsulate(from_elsewhere, return_tunnel(), 1).result.reason, ReturnDrop::not_from_vip);
  Bytes cut = reply_from_vip();
  cut.resize(30);
  EXPECT_EQ(encapsulate(cut, return_tunnel(), 1).result.reason, ReturnDrop::malformed);
  ReturnTunnel ipip_tunnel = return_tunnel();
  ipip_tunnel.kind = TunnelKind::ipip;
  const Encapsulated as_ipip = encapsulate(reply_from_vip(), ipip_tunnel, 1);
  ASSERT_TRUE(as_ipip.result.ok);
  EXPECT_EQ(as_ipip.outer.size(), reply_from_vip().size() + 20);
  EXPECT_EQ(as_ipip.outer[9], core::wire::kProtoIpip);
}

// ---- Mutations -------------------------------------------------------------------------

// Whatever is delivered lies inside the received bytes and parses as an IPv4
// packet for a VIP whose declared length is what is delivered.
void expect_sound(const Bytes& packet, const DecapFilter& filter) {
  PacketBuffer buffer(packet);
  const DecapResult result = decapsulate_tunnel_packet(buffer.packet(), buffer.len(), filter);
  if (result.verdict != DecapVerdict::deliver) {
    ASSERT_EQ(result.verdict == DecapVerdict::malformed, result.malformed_reason != DecapMalformed::count);
    ASSERT_EQ(result.verdict == DecapVerdict::not_for_us, result.not_for_us_reason != DecapNotForUs::count);
    return;
  }
  ASSERT_LE(static_cast<uint64_t>(result.inner_offset) + result.inner_len, buffer.len());
  core::PacketInfo inner;
  ASSERT_TRUE(core::parse_ipv4_at(buffer.packet(), result.inner_offset, result.inner_offset + result.inner_len, &inner)
                  .is_ok());
  ASSERT_EQ(inner.l3_end() - inner.l3_offset, result.inner_len);
  ASSERT_TRUE(std::binary_search(filter.inner_destinations.begin(), filter.inner_destinations.end(), inner.dst_addr));
}

std::vector<Bytes> seeds() {
  return {ipip(inner_tcp_syn()),
          ipip(inner_udp()),
          gre(inner_udp()),
          gre(inner_tcp_syn(), {.key = 9}),
          gre(inner_udp(), {.with_checksum = true, .key = 1, .sequence = 2}),
          gre(inner_udp(), {}, {.src = kBalancer, .dst = kRealServer, .options = {1, 1, 1, 0}})};
}

TEST(DecapMutations, EveryCutOfEverySeedIsHandled) {
  for (const Bytes& seed : seeds()) {
    for (size_t len = 0; len <= seed.size(); ++len) {
      expect_sound(Bytes(seed.begin(), seed.begin() + len), accept_all());
    }
  }
}

TEST(DecapMutations, RandomByteChangesNeverEscapeThePacket) {
  std::mt19937 random(20240611);  // fixed: failures reproduce
  const std::vector<Bytes> corpus = seeds();
  size_t delivered = 0;
  for (int round = 0; round < 200000; ++round) {
    Bytes packet = corpus[random() % corpus.size()];
    const int changes = 1 + static_cast<int>(random() % 4);
    for (int i = 0; i < changes; ++i) {
      // Mostly the headers (the first 64 bytes), where the lengths and flags are.
      const size_t at = (random() % 4 != 0 ? random() % 64 : random()) % packet.size();
      packet[at] = static_cast<uint8_t>(random());
    }
    if (random() % 8 == 0) packet.resize(random() % (packet.size() + 1));
    PacketBuffer probe(packet);
    if (decapsulate_tunnel_packet(probe.packet(), probe.len(), accept_all()).verdict == DecapVerdict::deliver) ++delivered;
    expect_sound(packet, accept_all());
    if (HasFatalFailure()) return;
  }
  // Changes in the payload keep packets deliverable: the mutation reaches both sides.
  EXPECT_GT(delivered, 1000u);
}

}  // namespace

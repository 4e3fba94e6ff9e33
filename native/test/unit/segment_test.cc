// GSO aggregates: software segmentation byte for byte, the checksum state an
// aggregate leaves with, and the engine's choice between passing an
// aggregate on (the egress port offloads) and cutting it (it does not, or a
// tunnel adds its header to every segment).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/checksum.h"
#include "core/parse.h"
#include "core/segment.h"
#include "core/wire.h"
#include "engine/engine.h"
#include "io/memory_port.h"
#include "packet_builder.h"
#include "snapshot_builder.h"

using namespace l4lb;
using namespace l4lb::test;

namespace {

constexpr uint32_t kClient = 0xc612000a;   // 198.18.0.10
constexpr uint32_t kVip = 0xc6120064;      // 198.18.0.100
constexpr uint32_t kBackend = 0xc6120102;  // 198.18.1.2
constexpr uint32_t kOutAddress = 0xc6120101;

std::string payload_of(size_t size) {
  std::string payload(size, '\0');
  for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('a' + i % 26);
  return payload;
}

Bytes tcp_aggregate(size_t payload, uint8_t flags, uint16_t vlan_tci = 0) {
  PacketBuilder builder;
  builder.ethernet();
  if (vlan_tci != 0) builder.vlan({.tci = vlan_tci});
  builder.ipv4({.src = kClient, .dst = kVip, .id = 7, .df = true})
      .tcp({.src_port = 40000, .dst_port = 80, .flags = flags, .seq = 1000, .ack = 5000})
      .payload(payload_of(payload));
  return builder.build();
}

class Buffers final : public core::SegmentBuffers {
 public:
  explicit Buffers(size_t count, uint32_t size = 2048) : storage_(count, std::vector<uint8_t>(64 + size)), size_(size) {}
  uint8_t* next(uint32_t* capacity, uint32_t* headroom) override {
    if (used_ == storage_.size()) return nullptr;
    *capacity = size_;
    *headroom = 64;
    return storage_[used_++].data() + 64;
  }

 private:
  std::vector<std::vector<uint8_t>> storage_;
  uint32_t size_;
  size_t used_ = 0;
};

bool l4_checksum_verifies(const uint8_t* frame, const core::PacketInfo& info) {
  uint8_t pseudo[12];
  std::memcpy(pseudo, frame + info.l3_offset + core::wire::kIpv4Src, 8);
  pseudo[8] = 0;
  pseudo[9] = info.ip_protocol;
  core::store_be16(pseudo + 10, info.l4_len);
  return core::checksum_finish(core::checksum_partial(frame + info.l4_offset, info.l4_len,
                                                      core::checksum_partial(pseudo, sizeof(pseudo)))) == 0;
}

uint16_t folded_pseudo_sum(const uint8_t* frame, const core::PacketInfo& info) {
  uint8_t pseudo[12];
  std::memcpy(pseudo, frame + info.l3_offset + core::wire::kIpv4Src, 8);
  pseudo[8] = 0;
  pseudo[9] = info.ip_protocol;
  core::store_be16(pseudo + 10, info.l4_len);
  return static_cast<uint16_t>(~core::checksum_finish(core::checksum_partial(pseudo, sizeof(pseudo))));
}

}  // namespace

TEST(Segment, CutsATcpAggregateAsTheKernelWould) {
  Bytes bytes = tcp_aggregate(3500, core::wire::kTcpAckFlag | core::wire::kTcpPsh | core::wire::kTcpFin | core::wire::kTcpCwr);
  core::Frame aggregate = core::make_frame(bytes.data(), static_cast<uint32_t>(bytes.size()), 0, 0);
  aggregate.gso_type = core::GsoType::tcp4;
  aggregate.gso_size = 1000;
  core::PacketInfo info;
  ASSERT_TRUE(core::parse_frame(aggregate.data, aggregate.len, &info).is_ok());
  EXPECT_EQ(core::segment_count(aggregate, info), 4u);
  Buffers buffers(8);
  core::Frame out[8];
  ASSERT_EQ(core::segment_aggregate(aggregate, info, 1000, buffers, out, 8), 4u);
  std::string joined;
  for (uint32_t i = 0; i < 4; ++i) {
    SCOPED_TRACE("segment " + std::to_string(i));
    core::PacketInfo s;
    ASSERT_TRUE(core::parse_frame(out[i].data, out[i].len, &s).is_ok());
    EXPECT_TRUE(s.has(core::kPacketIpChecksumOk));
    EXPECT_TRUE(l4_checksum_verifies(out[i].data, s));
    EXPECT_EQ(s.ip_id, 7 + i);
    EXPECT_EQ(core::load_be32(out[i].data + s.l4_offset + core::wire::kTcpSeq), 1000 + 1000 * i);
    EXPECT_EQ(core::load_be32(out[i].data + s.l4_offset + core::wire::kTcpAck), 5000u);
    const uint8_t flags = s.tcp_flags;
    EXPECT_EQ((flags & core::wire::kTcpCwr) != 0, i == 0) << "CWR only on the first";
    EXPECT_EQ((flags & (core::wire::kTcpFin | core::wire::kTcpPsh)) != 0, i == 3) << "FIN and PSH only on the last";
    EXPECT_TRUE(flags & core::wire::kTcpAckFlag);
    EXPECT_EQ(s.l4_len - 20u, i < 3 ? 1000u : 500u);
    EXPECT_EQ(std::memcmp(out[i].data, bytes.data(), 12), 0) << "the Ethernet header is copied";
    joined.append(reinterpret_cast<const char*>(out[i].data + s.l4_offset + 20), s.l4_len - 20);
    EXPECT_EQ(out[i].headroom, 64u);
    EXPECT_FALSE(out[i].is_aggregate());
  }
  EXPECT_EQ(joined, payload_of(3500));
}

TEST(Segment, KeepsTheVlanTagAndStopsWhenBuffersRunOut) {
  Bytes bytes = tcp_aggregate(3000, core::wire::kTcpAckFlag, 0x0007);
  core::Frame aggregate = core::make_frame(bytes.data(), static_cast<uint32_t>(bytes.size()), 0, 0);
  aggregate.gso_type = core::GsoType::tcp4;
  aggregate.gso_size = 1000;
  core::PacketInfo info;
  ASSERT_TRUE(core::parse_frame(aggregate.data, aggregate.len, &info).is_ok());
  Buffers two(2);
  core::Frame out[4];
  ASSERT_EQ(core::segment_aggregate(aggregate, info, 1000, two, out, 4), 2u) << "two buffers, two segments";
  core::PacketInfo s;
  ASSERT_TRUE(core::parse_frame(out[1].data, out[1].len, &s).is_ok());
  EXPECT_TRUE(s.has(core::kPacketVlan));
  EXPECT_EQ(s.vlan_tci, 7);
}

TEST(Segment, CutsAUdpAggregateIntoDatagrams) {
  Bytes bytes = PacketBuilder()
                    .ethernet()
                    .ipv4({.src = kClient, .dst = kVip, .id = 1})
                    .udp({.src_port = 5000, .dst_port = 53})
                    .payload(payload_of(2500))
                    .build();
  core::Frame aggregate = core::make_frame(bytes.data(), static_cast<uint32_t>(bytes.size()), 0, 0);
  aggregate.gso_type = core::GsoType::udp;
  aggregate.gso_size = 1200;
  core::PacketInfo info;
  ASSERT_TRUE(core::parse_frame(aggregate.data, aggregate.len, &info).is_ok());
  Buffers buffers(4);
  core::Frame out[4];
  ASSERT_EQ(core::segment_aggregate(aggregate, info, 1200, buffers, out, 4), 3u);
  for (uint32_t i = 0; i < 3; ++i) {
    core::PacketInfo s;
    ASSERT_TRUE(core::parse_frame(out[i].data, out[i].len, &s).is_ok());
    EXPECT_EQ(core::load_be16(out[i].data + s.l4_offset + core::wire::kUdpLength), s.l4_len);
    EXPECT_EQ(s.l4_len, 8u + (i < 2 ? 1200u : 100u));
    EXPECT_TRUE(l4_checksum_verifies(out[i].data, s));
  }
}

TEST(Segment, SizesSegmentsForTheEgressLinkAndPreparesOffload) {
  Bytes bytes = tcp_aggregate(4000, core::wire::kTcpAckFlag);
  core::Frame aggregate = core::make_frame(bytes.data(), static_cast<uint32_t>(bytes.size()), 0, 0);
  aggregate.gso_type = core::GsoType::tcp4;
  aggregate.gso_size = 1448;
  core::PacketInfo info;
  ASSERT_TRUE(core::parse_frame(aggregate.data, aggregate.len, &info).is_ok());
  EXPECT_EQ(core::ip_and_l4_header_len(aggregate.data, info), 40u);
  EXPECT_EQ(core::segment_payload_for_mtu(aggregate, 40, 1500, 0), 1448u) << "the stack's own size fits";
  EXPECT_EQ(core::segment_payload_for_mtu(aggregate, 40, 1500, 20), 1440u) << "IPIP's 20 bytes do not";
  EXPECT_EQ(core::segment_payload_for_mtu(aggregate, 40, 60, 20), 0u) << "nothing fits";
  core::prepare_aggregate_for_offload(&aggregate, info);
  EXPECT_TRUE(aggregate.flags & core::kFrameChecksumPartial);
  EXPECT_EQ(aggregate.csum_start, info.l4_offset);
  EXPECT_EQ(aggregate.csum_offset, core::wire::kTcpChecksum);
  EXPECT_EQ(aggregate.header_len, info.l4_offset + 20u);
  EXPECT_EQ(core::load_be16(aggregate.data + info.l4_offset + core::wire::kTcpChecksum), folded_pseudo_sum(aggregate.data, info));
}

// ---- through the engine -------------------------------------------------------------

namespace {

struct Rig {
  std::shared_ptr<io::MemoryDriver> memory;
  std::unique_ptr<engine::Engine> engine;
};

// Port 0 toward the client, port 1 (MTU `egress_mtu`) toward the backend; a
// TCP service on the VIP port 80 with `method`.
Rig make_rig(shm::Method method, bool egress_offloads, uint16_t egress_mtu = 1500) {
  SnapshotSpec spec;
  shm::SnapshotPort in{{0x02, 0, 0, 0, 0, 1}, 1500, 0xc6120001, 24, {}, 0};
  shm::SnapshotPort out{{0x02, 0, 0, 0, 0, 2}, egress_mtu, kOutAddress, 24, {}, 0};
  spec.ports = {in, out};
  ServiceSpec service;
  service.service.address = kVip;
  service.service.port = 80;
  service.service.protocol = static_cast<uint8_t>(shm::Protocol::tcp);
  service.service.method = static_cast<uint8_t>(method);
  service.service.scheduler = static_cast<uint8_t>(shm::SchedulerKind::rr);
  service.service.id = 1;
  shm::SnapshotBackend backend{};
  backend.address = kBackend;
  backend.port = 8080;
  backend.weight = 1;
  backend.id = 1;
  backend.flags = shm::kBackendUp | shm::kBackendNextHopResolved;
  backend.egress_port = 1;
  std::memcpy(backend.next_hop_mac, "\x02\x00\x00\x00\x01\x02", 6);
  service.backends = {backend};
  spec.services = {service};
  SnapshotBytes bytes = build_snapshot(spec);

  Rig rig;
  io::MemoryPortOptions options;
  options.ring_frames = 256;
  options.max_frame = 65535;
  options.capabilities.checksum_offload = egress_offloads;
  options.capabilities.segmentation_offload = egress_offloads;
  rig.memory = std::make_shared<io::MemoryDriver>(2, options);
  engine::EngineOptions engine_options;
  engine_options.flow_slots = 1024;
  rig.engine = std::make_unique<engine::Engine>(engine_options, rig.memory);
  io::PortError error;
  EXPECT_TRUE(rig.engine->open_ports(&error)) << error.message;
  std::string problem;
  EXPECT_TRUE(rig.engine->publish(bytes.data(), bytes.size(), &problem)) << problem;
  return rig;
}

struct Taken {
  Bytes bytes;
  io::MemoryFrameMeta meta;
};

std::vector<Taken> forward(Rig& rig, const Bytes& frame, uint16_t gso_size) {
  io::MemoryFrameMeta meta;
  meta.gso_type = core::GsoType::tcp4;
  meta.gso_size = gso_size;
  meta.flags = core::kFrameChecksumPartial;
  EXPECT_TRUE(rig.memory->inject(0, frame.data(), static_cast<uint32_t>(frame.size()), meta));
  rig.engine->poll(1'000'000'000);
  std::vector<Taken> taken;
  std::vector<uint8_t> buffer(65535);
  io::MemoryFrameMeta out;
  for (uint32_t n = rig.memory->take(1, buffer.data(), 65535, &out); n != 0; n = rig.memory->take(1, buffer.data(), 65535, &out)) {
    taken.push_back({Bytes(buffer.begin(), buffer.begin() + n), out});
  }
  return taken;
}

std::string tcp_payloads(const std::vector<Taken>& frames, bool tunnelled) {
  std::string joined;
  for (const Taken& t : frames) {
    core::PacketInfo info;
    EXPECT_TRUE(core::parse_frame(t.bytes.data(), static_cast<uint32_t>(t.bytes.size()), &info).is_ok());
    core::PacketInfo inner = info;
    if (tunnelled) {
      EXPECT_TRUE(core::parse_ipv4_at(t.bytes.data(), info.inner_l3_offset, info.l3_end(), &inner).is_ok());
    }
    const uint32_t header = (t.bytes[inner.l4_offset + core::wire::kTcpDataOffset] >> 4) * 4u;
    joined.append(reinterpret_cast<const char*>(t.bytes.data() + inner.l4_offset + header), inner.l4_len - header);
  }
  return joined;
}

}  // namespace

TEST(Aggregates, NatPassesAnAggregateOnWhereTheEgressPortCutsIt) {
  Rig rig = make_rig(shm::Method::nat, /*egress_offloads=*/true);
  const std::vector<Taken> out = forward(rig, tcp_aggregate(6000, core::wire::kTcpAckFlag), 1448);
  ASSERT_EQ(out.size(), 1u);
  const Taken& t = out[0];
  EXPECT_EQ(t.meta.gso_type, core::GsoType::tcp4);
  EXPECT_EQ(t.meta.gso_size, 1448u);
  EXPECT_TRUE(t.meta.flags & core::kFrameChecksumPartial);
  core::PacketInfo info;
  ASSERT_TRUE(core::parse_frame(t.bytes.data(), static_cast<uint32_t>(t.bytes.size()), &info).is_ok());
  EXPECT_EQ(info.dst_addr, kBackend);
  EXPECT_EQ(info.dst_port, 8080);
  EXPECT_TRUE(info.has(core::kPacketIpChecksumOk));
  EXPECT_EQ(t.meta.csum_start, info.l4_offset);
  // The field holds the pseudo-header sum over the rewritten addresses.
  EXPECT_EQ(core::load_be16(t.bytes.data() + info.l4_offset + core::wire::kTcpChecksum), folded_pseudo_sum(t.bytes.data(), info));
  EXPECT_EQ(tcp_payloads(out, false), payload_of(6000));
  EXPECT_EQ(rig.engine->worker_counters(0).aggregates.load(), 1u);
  EXPECT_EQ(rig.engine->worker_counters(0).aggregates_segmented.load(), 0u);
}

TEST(Aggregates, NatNarrowsTheSegmentSizeToANarrowerEgressLink) {
  Rig rig = make_rig(shm::Method::nat, /*egress_offloads=*/true, /*egress_mtu=*/1280);
  const std::vector<Taken> out = forward(rig, tcp_aggregate(6000, core::wire::kTcpAckFlag), 1448);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].meta.gso_size, 1280u - 40u);
}

TEST(Aggregates, NatCutsAnAggregateWhereTheEgressPortCannot) {
  Rig rig = make_rig(shm::Method::nat, /*egress_offloads=*/false);
  const std::vector<Taken> out = forward(rig, tcp_aggregate(6000, core::wire::kTcpAckFlag | core::wire::kTcpPsh), 1448);
  ASSERT_EQ(out.size(), 5u);
  for (const Taken& t : out) {
    core::PacketInfo info;
    ASSERT_TRUE(core::parse_frame(t.bytes.data(), static_cast<uint32_t>(t.bytes.size()), &info).is_ok());
    EXPECT_EQ(t.meta.gso_type, core::GsoType::none);
    EXPECT_EQ(t.meta.flags & core::kFrameChecksumPartial, 0u);
    EXPECT_EQ(info.dst_addr, kBackend);
    EXPECT_LE(t.bytes.size(), 1514u);
    EXPECT_TRUE(l4_checksum_verifies(t.bytes.data(), info));
  }
  EXPECT_EQ(tcp_payloads(out, false), payload_of(6000));
  EXPECT_EQ(rig.engine->worker_counters(0).aggregates_segmented.load(), 1u);
}

TEST(Aggregates, TunnelsCutAggregatesSoThatEveryEncapsulatedSegmentFits) {
  for (shm::Method method : {shm::Method::ipip, shm::Method::gre}) {
    SCOPED_TRACE(method == shm::Method::ipip ? "ipip" : "gre");
    Rig rig = make_rig(method, /*egress_offloads=*/true);
    const std::vector<Taken> out = forward(rig, tcp_aggregate(6000, core::wire::kTcpAckFlag), 1448);
    ASSERT_GE(out.size(), 5u);
    for (const Taken& t : out) {
      EXPECT_LE(t.bytes.size(), 1514u) << "outer packet within the egress MTU";
      EXPECT_EQ(t.meta.gso_type, core::GsoType::none);
      core::PacketInfo outer, inner;
      ASSERT_TRUE(core::parse_frame(t.bytes.data(), static_cast<uint32_t>(t.bytes.size()), &outer).is_ok());
      EXPECT_EQ(outer.dst_addr, kBackend);
      EXPECT_TRUE(outer.has(core::kPacketIpChecksumOk));
      ASSERT_TRUE(core::parse_ipv4_at(t.bytes.data(), outer.inner_l3_offset, outer.l3_end(), &inner).is_ok());
      EXPECT_EQ(inner.dst_addr, kVip) << "the inner packet is the client's, unchanged but for its size";
      EXPECT_TRUE(l4_checksum_verifies(t.bytes.data(), inner));
    }
    EXPECT_EQ(tcp_payloads(out, true), payload_of(6000));
    EXPECT_EQ(rig.engine->worker_counters(0).drops[static_cast<size_t>(core::DropReason::too_big)].load(), 0u);
  }
}

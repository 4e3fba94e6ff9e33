// Fuzz target: one engine step. Input: [ingress port][Ethernet frame]. The
// engine runs the fixtures' standard configuration (loaded once from
// native/test/fixtures/packets.txt) and keeps its flow table across inputs,
// so sequences of inputs reach replies and ICMP errors of tracked flows.
//
// Invariants checked on every input:
//  - an output frame is at most the input plus a tunnel header, or a small
//    created frame (ICMP, ARP, TCP reset);
//  - for an input whose checksums verify, every IPv4 output's header checksum
//    and TCP/UDP checksum verify too;

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "core/checksum.h"
#include "core/parse.h"
#include "engine/engine.h"
#include "io/memory_port.h"
#include "fixture_file.h"

using namespace l4lb;

namespace {

std::shared_ptr<io::MemoryDriver> g_memory;
std::unique_ptr<engine::Engine> g_engine;
std::vector<uint8_t> g_snapshot;
uint64_t g_now_ms = 1000;

bool transport_checksum_ok(const uint8_t* frame, const core::PacketInfo& info) {
  if (!info.has(core::kPacketL4) || info.has(core::kPacketFragment)) return true;
  if (info.ip_protocol != 6 && info.ip_protocol != 17) return true;
  if (info.ip_protocol == 17 && core::load_be16(frame + info.l4_offset + 6) == 0) return true;
  uint8_t pseudo[12];
  core::store_be32(pseudo, info.src_addr);
  core::store_be32(pseudo + 4, info.dst_addr);
  pseudo[8] = 0;
  pseudo[9] = info.ip_protocol;
  core::store_be16(pseudo + 10, info.l4_len);
  const uint32_t sum = core::checksum_partial(pseudo, sizeof(pseudo));
  return core::checksum_finish(core::checksum_partial(frame + info.l4_offset, info.l4_len, sum)) == 0;
}

// Valid input: parses, and every checksum verifies, including those of a
// tunnelled packet (the balancer relays GRE/IPIP payloads to clients).
bool fully_valid(const uint8_t* frame, uint32_t len, core::PacketInfo* info) {
  if (!core::parse_frame(frame, len, info).is_ok() || info->ip_version != 4 ||
      !info->has(core::kPacketIpChecksumOk) || !transport_checksum_ok(frame, *info)) {
    return false;
  }
  if (!info->has(core::kPacketTunnel)) return true;
  core::PacketInfo inner;
  return core::parse_ipv4_at(frame, info->inner_l3_offset, info->l3_end(), &inner).is_ok() &&
         inner.has(core::kPacketIpChecksumOk) && transport_checksum_ok(frame, inner);
}

bool is_backend(uint32_t address) { return (address & 0xffffff00u) == 0xc6120100u; }  // 198.18.1.0/24

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto fixtures = test::read_fixtures(std::string(L4LB_SOURCE_DIR) + "/native/test/fixtures/packets.txt");
  g_snapshot = fixtures.at(0).snapshot;
  engine::EngineOptions options;
  options.flow_slots = 1024;
  options.backend_slots = 64;
  io::MemoryPortOptions port_options;
  port_options.ring_frames = 64;
  g_memory = std::make_shared<io::MemoryDriver>(fixtures.at(0).ports, port_options);
  g_engine = std::make_unique<engine::Engine>(options, g_memory);
  io::PortError port_error;
  if (!g_engine->open_ports(&port_error)) abort();
  std::string error;
  if (!g_engine->publish(g_snapshot.data(), g_snapshot.size(), &error)) abort();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!g_engine) LLVMFuzzerInitialize(nullptr, nullptr);
  if (size < 2 || size > g_memory->max_frame() + 1) return 0;
  const uint32_t port = data[0] % g_engine->port_count();
  const uint8_t* frame = data + 1;
  const uint32_t len = static_cast<uint32_t>(size - 1);
  core::PacketInfo in;
  const bool input_valid = fully_valid(frame, len, &in);
  const core::SnapshotView& view = g_engine->current_config()->view();
  // Neither to a VIP or a balancer address, nor from a backend or a VIP
  // (replies of tracked flows): the balancer must stay silent.
  // ICMP errors about tracked flows may come from any router: not held to this.
  const bool unrelated = input_valid && !view.is_vip(in.dst_addr) && !view.is_port_address(in.dst_addr) &&
                         !is_backend(in.src_addr) && !view.is_vip(in.src_addr) && !in.has(core::kPacketIcmpError);

  if (!g_memory->inject(port, frame, len)) return 0;
  g_now_ms += 1;
  g_engine->poll(g_now_ms * 1'000'000ull);

  static std::vector<uint8_t> out(g_memory->max_frame());
  for (uint32_t p = 0; p < g_engine->port_count(); ++p) {
    for (uint32_t n = g_memory->take(p, out.data(), static_cast<uint32_t>(out.size())); n != 0;
         n = g_memory->take(p, out.data(), static_cast<uint32_t>(out.size()))) {
      if (unrelated) abort();
      if (n > len + 64 && n > 128 + 576) abort();
      core::PacketInfo info;
      if (input_valid && core::parse_frame(out.data(), n, &info).is_ok() && info.ip_version == 4) {
        if (!info.has(core::kPacketIpChecksumOk) || !transport_checksum_ok(out.data(), info)) abort();
      }
    }
  }
  return 0;
}

// AF_PACKET port and its BPF filter.
//
// BpfFilter.*: the program built for a spec runs through a small cBPF
// interpreter over hand-built frames (accept/reject tables), and is attached
// to a real socket so that the kernel's checker accepts it.
//
// AfPacketPort.*: real sockets on veth pairs in network namespaces created
// per test (netns.h). They need root; without it they fail with the reason.
#include "io/af_packet.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/checksum.h"
#include "core/forward.h"
#include "io/bpf_filter.h"
#include "netns.h"
#include "packet_builder.h"

namespace l4lb {
namespace {

using io::AfPacketOptions;
using io::AfPacketPort;
using io::BpfFilter;
using io::BpfFilterSpec;
using io::PortError;
using io::TxMethod;
using test::Bytes;
using test::ipv4_addr;
using test::NetNamespace;
using test::NetnsScope;
using test::PacketBuilder;

constexpr uint32_t kVip = ipv4_addr(198, 18, 1, 1);
constexpr uint32_t kLocalAddress = ipv4_addr(198, 18, 1, 2);
constexpr uint32_t kBackend = ipv4_addr(198, 18, 2, 1);
constexpr uint32_t kClient = ipv4_addr(198, 18, 3, 1);
constexpr uint32_t kOther = ipv4_addr(198, 18, 4, 1);

// ---------------------------------------------------------------------------
// A classic BPF interpreter for the instructions the builder emits (and a
// few more), with the kernel's semantics: loads are big-endian, a load past
// the end of the frame returns 0 (reject), ancillary loads at SKF_AD_OFF.

struct BpfRun {
  uint32_t result = 0;
  bool valid = true;  // false: a jump out of the program or an unknown opcode
};

BpfRun run_bpf(const std::vector<sock_filter>& program, const Bytes& frame, bool vlan_tag_present) {
  BpfRun run;
  uint32_t a = 0, x = 0;
  auto load = [&](uint32_t offset, uint32_t size, bool* ok) -> uint32_t {
    if (static_cast<int32_t>(offset) < 0) {  // ancillary
      const int32_t ancillary = static_cast<int32_t>(offset) - SKF_AD_OFF;
      *ok = ancillary == SKF_AD_VLAN_TAG_PRESENT;
      return vlan_tag_present ? 1 : 0;
    }
    if (static_cast<uint64_t>(offset) + size > frame.size()) {
      *ok = false;
      return 0;
    }
    uint32_t value = 0;
    for (uint32_t i = 0; i < size; ++i) value = (value << 8) | frame[offset + i];
    *ok = true;
    return value;
  };
  for (size_t pc = 0; pc < program.size();) {
    const sock_filter& insn = program[pc];
    const uint16_t code = insn.code;
    bool ok = true;
    switch (BPF_CLASS(code)) {
      case BPF_LD: {
        const uint32_t size = BPF_SIZE(code) == BPF_W ? 4 : BPF_SIZE(code) == BPF_H ? 2 : 1;
        if (BPF_MODE(code) == BPF_ABS) {
          a = load(insn.k, size, &ok);
        } else if (BPF_MODE(code) == BPF_IND) {
          a = load(x + insn.k, size, &ok);
        } else if (BPF_MODE(code) == BPF_IMM) {
          a = insn.k;
        } else {
          run.valid = false;
          return run;
        }
        if (!ok) return run;  // the kernel returns 0
        ++pc;
        break;
      }
      case BPF_LDX:
        if (BPF_MODE(code) != BPF_IMM) {
          run.valid = false;
          return run;
        }
        x = insn.k;
        ++pc;
        break;
      case BPF_JMP: {
        size_t next;
        if (BPF_OP(code) == BPF_JA) {
          next = pc + 1 + insn.k;
        } else {
          bool taken;
          switch (BPF_OP(code)) {
            case BPF_JEQ: taken = a == insn.k; break;
            case BPF_JGT: taken = a > insn.k; break;
            case BPF_JGE: taken = a >= insn.k; break;
            case BPF_JSET: taken = (a & insn.k) != 0; break;
            default: run.valid = false; return run;
          }
          next = pc + 1 + (taken ? insn.jt : insn.jf);
        }
        if (next >= program.size()) {
          run.valid = false;
          return run;
        }
        pc = next;
        break;
      }
      case BPF_RET:
        run.result = insn.k;
        return run;
      default:
        run.valid = false;
        return run;
    }
  }
  run.valid = false;  // fell off the end
  return run;
}

Bytes udp_frame(uint32_t src, uint32_t dst, uint16_t src_port = 40000, uint16_t dst_port = 80, size_t size = 0,
                std::string_view payload = "l4lb") {
  PacketBuilder builder;
  builder.ethernet().ipv4({.src = src, .dst = dst}).udp({.src_port = src_port, .dst_port = dst_port}).payload(payload);
  if (size != 0) builder.pad_to(size);
  return builder.build();
}

Bytes tcp_frame(uint32_t src, uint32_t dst, uint16_t src_port, uint16_t dst_port, std::string_view payload) {
  return PacketBuilder()
      .ethernet()
      .ipv4({.src = src, .dst = dst})
      .tcp({.src_port = src_port, .dst_port = dst_port, .flags = 0x10})
      .payload(payload)
      .build();
}

Bytes tagged_udp_frame(uint16_t tpid, uint16_t tci, uint32_t src, uint32_t dst, std::string_view payload = "l4lb") {
  return PacketBuilder()
      .ethernet()
      .vlan({.tci = tci, .tpid = tpid})
      .ipv4({.src = src, .dst = dst})
      .udp({.src_port = 40000, .dst_port = 80})
      .payload(payload)
      .build();
}

Bytes arp_frame() {
  Bytes body(28, 0);
  body[1] = 1;     // hardware type Ethernet
  body[2] = 0x08;  // protocol IPv4
  body[4] = 6;
  body[5] = 4;
  body[7] = 1;  // request
  return PacketBuilder().ethernet({.dst = {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}, .ether_type = 0x0806}).payload(body).build();
}

Bytes ipv6_frame() {
  return PacketBuilder()
      .ethernet()
      .ipv6({.src = test::ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}), .dst = test::ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 2})})
      .udp({.src_port = 1, .dst_port = 2})
      .payload("v6")
      .build();
}

Bytes icmp_frame(uint32_t src, uint32_t dst) {
  return PacketBuilder().ethernet().ipv4({.src = src, .dst = dst}).icmp({.type = 3, .code = 4}).payload("quote").build();
}

BpfFilterSpec balancer_spec() {
  BpfFilterSpec spec;
  spec.destinations = {kVip, kLocalAddress};
  spec.sources = {kBackend};
  return spec;
}

struct FilterCase {
  const char* description;
  Bytes frame;
  bool vlan_tag_present;  // the kernel stripped a tag into metadata
  bool accepted;
};

void check_table(const BpfFilter& filter, const std::vector<FilterCase>& cases) {
  for (const FilterCase& c : cases) {
    const BpfRun run = run_bpf(filter.instructions, c.frame, c.vlan_tag_present);
    EXPECT_TRUE(run.valid) << c.description;
    EXPECT_EQ(run.result != 0, c.accepted) << c.description;
    if (c.accepted) {
      EXPECT_EQ(run.result, io::kBpfAcceptWholeFrame) << c.description;
    }
  }
}

TEST(BpfFilter, AcceptsOnlyWhatTheBalancerNeeds) {
  const BpfFilter filter = io::build_bpf_filter(balancer_spec());
  EXPECT_FALSE(filter.coarse);
  EXPECT_TRUE(filter.note.empty());
  Bytes runt(10, 0);
  Bytes short_ipv4 = udp_frame(kClient, kVip);
  short_ipv4.resize(14 + 16);  // EtherType IPv4, header cut before the destination
  check_table(filter, {
      {"UDP to a VIP", udp_frame(kClient, kVip), false, true},
      {"TCP to a fullnat local address",
       PacketBuilder().ethernet().ipv4({.src = kBackend, .dst = kLocalAddress}).tcp({.src_port = 80, .dst_port = 1024}).build(),
       false, true},
      {"nat reply from a backend to a client", udp_frame(kBackend, kClient, 80, 40000), false, true},
      {"unrelated IPv4", udp_frame(kClient, kOther), false, false},
      {"a VIP as source is not a reply", udp_frame(kVip, kClient), false, false},
      {"ARP", arp_frame(), false, true},
      {"IPv6", ipv6_frame(), false, false},
      {"LLDP", PacketBuilder().ethernet({.ether_type = 0x88cc}).payload("lldp").build(), false, false},
      {"runt frame", runt, false, false},
      {"IPv4 header cut short", short_ipv4, false, false},
      {"ICMP error to an unrelated address", icmp_frame(kOther, kClient), false, false},
      {"ICMP to a VIP", icmp_frame(kClient, kVip), false, true},
      {"802.1Q tag in the frame, to a VIP", tagged_udp_frame(0x8100, 7, kClient, kVip), false, true},
      {"802.1Q tag in the frame, unrelated", tagged_udp_frame(0x8100, 7, kClient, kOther), false, false},
      {"802.1ad tag in the frame, reply from a backend", tagged_udp_frame(0x88a8, 7, kBackend, kClient), false, true},
      {"tag stripped by the kernel, to a VIP", udp_frame(kClient, kVip), true, true},
      {"tag stripped by the kernel, unrelated", udp_frame(kClient, kOther), true, false},
      {"tag stripped and another in the frame (double tagging)", tagged_udp_frame(0x8100, 7, kClient, kVip), true, false},
      {"ARP behind a tag in the frame", PacketBuilder().ethernet().vlan({.tci = 3}).payload(Bytes(28, 0)).build(), false,
       false},  // EtherType after the tag is experimental 0x88b5 here: rejected
  });
  // ARP behind a tag, properly typed.
  Bytes tagged_arp = arp_frame();
  const uint8_t tag[4] = {0x81, 0x00, 0x00, 0x03};
  tagged_arp.insert(tagged_arp.begin() + 12, tag, tag + 4);
  check_table(filter, {{"ARP behind a tag in the frame", tagged_arp, false, true}});
}

TEST(BpfFilter, OptionalAnyIcmpAndArp) {
  BpfFilterSpec spec = balancer_spec();
  spec.accept_any_icmp = true;
  spec.accept_arp = false;
  const BpfFilter filter = io::build_bpf_filter(spec);
  check_table(filter, {
      {"ICMP error from a router to a client", icmp_frame(kOther, kClient), false, true},
      {"ICMP behind a stripped tag", icmp_frame(kOther, kClient), true, true},
      {"ARP refused", arp_frame(), false, false},
      {"UDP still matched by address", udp_frame(kClient, kOther), false, false},
  });
}

TEST(BpfFilter, EmptySetsAcceptNoIpv4) {
  const BpfFilter filter = io::build_bpf_filter(BpfFilterSpec{});
  check_table(filter, {
      {"IPv4", udp_frame(kClient, kVip), false, false},
      {"ARP", arp_frame(), false, true},
  });
}

std::vector<uint32_t> spread_addresses(size_t count, uint32_t base, uint32_t stride) {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < count; ++i) out.push_back(base + static_cast<uint32_t>(i) * stride);
  return out;
}

TEST(BpfFilter, LargeSetsUseABinarySearchTheKernelAccepts) {
  BpfFilterSpec spec;
  spec.destinations = spread_addresses(1500, ipv4_addr(198, 18, 0, 0), 3);
  spec.sources = spread_addresses(500, ipv4_addr(198, 19, 0, 0), 5);
  std::mt19937 shuffle(7);
  std::shuffle(spec.destinations.begin(), spec.destinations.end(), shuffle);
  const BpfFilter filter = io::build_bpf_filter(spec);
  ASSERT_FALSE(filter.coarse) << filter.note;
  EXPECT_LE(filter.instructions.size(), size_t{BPF_MAXINSNS});
  const std::set<uint32_t> destinations(spec.destinations.begin(), spec.destinations.end());
  const std::set<uint32_t> sources(spec.sources.begin(), spec.sources.end());
  // Every member, and every non-member next to one, over the whole range.
  for (uint32_t address = ipv4_addr(198, 18, 0, 0); address < ipv4_addr(198, 18, 0, 0) + 4500 + 2; ++address) {
    const BpfRun run = run_bpf(filter.instructions, udp_frame(kClient, address), false);
    ASSERT_TRUE(run.valid);
    ASSERT_EQ(run.result != 0, destinations.count(address) == 1) << std::hex << address;
  }
  for (uint32_t address = ipv4_addr(198, 19, 0, 0); address < ipv4_addr(198, 19, 0, 0) + 2500 + 2; ++address) {
    const BpfRun run = run_bpf(filter.instructions, udp_frame(address, kClient), false);
    ASSERT_TRUE(run.valid);
    ASSERT_EQ(run.result != 0, sources.count(address) == 1) << std::hex << address;
  }
  // Same spec in another order: the same program.
  BpfFilterSpec reordered = spec;
  std::reverse(reordered.destinations.begin(), reordered.destinations.end());
  reordered.destinations.push_back(spec.destinations.front());  // a duplicate
  const BpfFilter again = io::build_bpf_filter(reordered);
  ASSERT_EQ(again.instructions.size(), filter.instructions.size());
  EXPECT_EQ(0, std::memcmp(again.instructions.data(), filter.instructions.data(),
                           filter.instructions.size() * sizeof(sock_filter)));

  // The kernel's checker (sk_chk_filter) accepts it.
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sock_fprog program{static_cast<unsigned short>(filter.instructions.size()),
                     const_cast<sock_filter*>(filter.instructions.data())};
  EXPECT_EQ(0, setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program))) << std::strerror(errno);
  close(fd);
}

TEST(BpfFilter, TooLargeFallsBackToAllIpv4) {
  BpfFilterSpec spec;
  spec.destinations = spread_addresses(3000, ipv4_addr(198, 18, 0, 0), 2);
  const BpfFilter filter = io::build_bpf_filter(spec);
  EXPECT_TRUE(filter.coarse);
  EXPECT_NE(filter.note.find("3000 destinations"), std::string::npos) << filter.note;
  EXPECT_LE(filter.instructions.size(), 32u);
  check_table(filter, {
      {"any IPv4", udp_frame(kClient, kOther), false, true},
      {"tagged IPv4", tagged_udp_frame(0x8100, 1, kClient, kOther), false, true},
      {"ARP", arp_frame(), false, true},
      {"IPv6 still refused", ipv6_frame(), false, false},
  });
  // A lower limit forces the fallback for small sets too.
  BpfFilterSpec small = balancer_spec();
  small.max_instructions = 20;
  EXPECT_TRUE(io::build_bpf_filter(small).coarse);
}

// ---------------------------------------------------------------------------
// Namespaces, sockets and collection helpers.

// A namespace holding a veth pair a <-> b, IPv6 off (no router solicitations
// or MLD reports on the wire), both ends up.
struct VethLab {
  NetNamespace ns{"veth"};

  // Empty on success, else why not.
  std::string build() {
    if (!ns.ok()) return ns.error();
    ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
    ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
    ns.ip({"link", "add", "name", "a", "type", "veth", "peer", "name", "b"});
    ns.ip({"link", "set", "dev", "a", "up"});
    ns.ip({"link", "set", "dev", "b", "up"});
    return ns.ok() ? std::string() : ns.error();
  }
};

// A plain AF_PACKET socket: the independent sender and receiver of the tests.
class RawSocket {
 public:
  RawSocket() = default;
  ~RawSocket() {
    if (fd_ >= 0) close(fd_);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  // Bound to `interface` in the calling thread's namespace; empty on success.
  std::string open(const std::string& interface) {
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return std::string("socket(AF_PACKET): ") + std::strerror(errno);
    sockaddr_ll address{};
    address.sll_family = AF_PACKET;
    address.sll_protocol = htons(ETH_P_ALL);
    address.sll_ifindex = static_cast<int>(if_nametoindex(interface.c_str()));
    if (address.sll_ifindex == 0) return "no interface " + interface;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      return std::string("bind: ") + std::strerror(errno);
    }
    return {};
  }
  bool send(const Bytes& frame) { return ::send(fd_, frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size()); }
  // Next incoming frame, or nothing after `timeout_ms`.
  std::optional<Bytes> receive(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    Bytes buffer(65536);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      sockaddr_ll from{};
      socklen_t from_len = sizeof(from);
      const ssize_t n = recvfrom(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n <= 0 || from.sll_pkttype == PACKET_OUTGOING) continue;
      buffer.resize(static_cast<size_t>(n));
      return buffer;
    }
  }

 private:
  int fd_ = -1;
};

struct Received {
  Bytes bytes;
  uint32_t flags = 0;
  uint32_t headroom = 0;
  uint32_t tailroom = 0;
  core::GsoType gso_type = core::GsoType::none;
  uint16_t gso_size = 0;
};

// Collects frames from `port` until `want` arrived or `timeout_ms` passed,
// `burst` at a time, releasing each burst's buffers after copying it. With
// `scribble`, every burst's headroom and tailroom are overwritten before the
// frames are copied: they must be writable and apart from every frame's
// bytes.
std::vector<Received> collect(AfPacketPort& port, size_t want, int timeout_ms, uint32_t burst = core::kMaxBurst,
                              bool scribble = false) {
  std::vector<Received> out;
  core::Frame frames[core::kMaxBurst];
  burst = std::min(burst, core::kMaxBurst);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (out.size() < want) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    const uint32_t n = port.rx_burst(frames, burst);
    if (n == 0) {
      pollfd p{port.wait_fd(), POLLIN, 0};
      poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 5)));
      continue;
    }
    std::vector<Bytes> before;
    for (uint32_t i = 0; i < n; ++i) before.emplace_back(frames[i].data, frames[i].data + frames[i].len);
    if (scribble) {
      for (uint32_t i = 0; i < n; ++i) {
        std::memset(frames[i].data - frames[i].headroom, 0xa5, frames[i].headroom);
        std::memset(frames[i].data + frames[i].len, 0x5a, frames[i].tailroom);
      }
    }
    for (uint32_t i = 0; i < n; ++i) {
      Received r;
      r.bytes.assign(frames[i].data, frames[i].data + frames[i].len);
      EXPECT_EQ(r.bytes, before[i]) << "headroom or tailroom overlaps a frame";
      r.flags = frames[i].flags;
      r.headroom = frames[i].headroom;
      r.tailroom = frames[i].tailroom;
      r.gso_type = frames[i].gso_type;
      r.gso_size = frames[i].gso_size;
      out.push_back(std::move(r));
    }
    core::release_frames(frames, n);
  }
  return out;
}

// Frames that arrive within `ms` (for "nothing else comes" checks).
std::vector<Received> drain(AfPacketPort& port, int ms) { return collect(port, SIZE_MAX, ms); }

std::unique_ptr<AfPacketPort> open_port(AfPacketOptions options, const NetNamespace& ns, std::string* error) {
  options.netns_path = ns.path();
  PortError port_error;
  std::unique_ptr<AfPacketPort> port = AfPacketPort::create(options, &port_error);
  if (!port) *error = port_error.code + ": " + port_error.message;
  return port;
}

AfPacketOptions options_for(const std::string& interface) {
  AfPacketOptions options;
  options.interface = interface;
  return options;
}

std::string payload_tag(size_t i) { return "frame-" + std::to_string(i); }

// ---------------------------------------------------------------------------

TEST(AfPacketPort, ReportsConstructionErrors) {
  PortError error;
  AfPacketOptions options = options_for("l4lb-absent0");
  EXPECT_EQ(AfPacketPort::create(options, &error), nullptr);
  EXPECT_EQ(error.code, "ENO_INTERFACE");
  EXPECT_EQ(error.error_number, ENODEV);
  EXPECT_NE(error.message.find("l4lb-absent0"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find("SIOCGIFINDEX"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find("ENODEV"), std::string::npos) << error.message;

  options = options_for("lo");
  options.rx_frame_size = 1000;
  EXPECT_EQ(AfPacketPort::create(options, &error), nullptr);
  EXPECT_EQ(error.code, "EPORT_OPTIONS");
  EXPECT_NE(error.message.find("rx_frame_size"), std::string::npos) << error.message;

  options = options_for("lo");
  options.netns_path = "/var/run/netns/l4lb-ctest-absent";
  EXPECT_EQ(AfPacketPort::create(options, &error), nullptr);
  EXPECT_EQ(error.code, "EPORT_NETNS");
  EXPECT_EQ(error.error_number, ENOENT);

  // The kernel's own refusal: a ring larger than it will allocate.
  options = options_for("lo");
  options.rx_frame_size = 1u << 30;
  options.rx_frame_count = 1u << 20;
  EXPECT_EQ(AfPacketPort::create(options, &error), nullptr);
  EXPECT_EQ(error.code, "EPORT_RING");
  EXPECT_NE(error.message.find("PACKET_RX_RING"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find("on lo"), std::string::npos) << error.message;
}

TEST(AfPacketPort, ReceivesFramesByteForByteAroundTheRing) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  AfPacketOptions options = options_for("b");
  // A small ring: 40 frames wrap around it twice, read 3 at a time.
  options.rx_frame_count = 16;
  std::string error;
  auto port = open_port(options, lab.ns, &error);
  ASSERT_NE(port, nullptr) << error;
  EXPECT_TRUE(port->kernel_ignores_outgoing());

  std::vector<Bytes> sent;
  std::vector<Received> received;
  for (size_t round = 0; round < 4; ++round) {
    {
      NetnsScope inside(lab.ns);
      ASSERT_TRUE(inside.ok()) << inside.error();
      RawSocket sender;
      ASSERT_EQ(sender.open("a"), "");
      for (size_t i = sent.size(); i < 10 * (round + 1); ++i) {
        const size_t size = 60 + (i * 97) % 1441;  // 60 .. 1500 bytes
        sent.push_back(udp_frame(kClient, kVip, static_cast<uint16_t>(40000 + i), 80, size, payload_tag(i)));
        ASSERT_TRUE(sender.send(sent.back())) << std::strerror(errno);
      }
    }
    for (Received& r : collect(*port, 10, 2000, 3, /*scribble=*/true)) received.push_back(std::move(r));
  }
  ASSERT_EQ(received.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(received[i].bytes, sent[i]) << "frame " << i;
    EXPECT_GE(received[i].headroom, options.headroom) << "frame " << i;
    EXPECT_EQ(received[i].flags, 0u);
  }
  EXPECT_TRUE(drain(*port, 20).empty());
  const io::PortCounters counters = port->counters();
  EXPECT_EQ(counters.rx_packets, sent.size());
  EXPECT_EQ(counters.kernel_drops, 0u);
  EXPECT_EQ(port->driver_counters().rx_outgoing_skipped, 0u);
}

TEST(AfPacketPort, FilterKeepsOtherTrafficOutOfTheRing) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  AfPacketOptions options = options_for("b");
  options.filter = io::build_bpf_filter(balancer_spec()).instructions;
  std::string error;
  auto port = open_port(options, lab.ns, &error);
  ASSERT_NE(port, nullptr) << error;

  std::vector<Bytes> wanted;
  {
    NetnsScope inside(lab.ns);
    ASSERT_TRUE(inside.ok()) << inside.error();
    RawSocket sender;
    ASSERT_EQ(sender.open("a"), "");
    for (size_t i = 0; i < 30; ++i) {
      const Bytes match = (i % 3 == 0)   ? udp_frame(kClient, kVip, 40000, 80, 0, payload_tag(i))
                          : (i % 3 == 1) ? udp_frame(kBackend, kClient, 80, 40000, 0, payload_tag(i))
                                         : tagged_udp_frame(0x8100, 9, kClient, kLocalAddress, payload_tag(i));
      wanted.push_back(match);
      ASSERT_TRUE(sender.send(match));
      ASSERT_TRUE(sender.send(udp_frame(kClient, kOther, 40000, 80, 0, payload_tag(i))));
      ASSERT_TRUE(sender.send(ipv6_frame()));
      ASSERT_TRUE(sender.send(tagged_udp_frame(0x8100, 9, kClient, kOther)));
    }
  }
  const std::vector<Received> received = collect(*port, wanted.size(), 2000);
  ASSERT_EQ(received.size(), wanted.size());
  for (size_t i = 0; i < wanted.size(); ++i) EXPECT_EQ(received[i].bytes, wanted[i]) << "frame " << i;
  EXPECT_TRUE(drain(*port, 20).empty());
  EXPECT_EQ(port->counters().kernel_drops, 0u);
}

TEST(AfPacketPort, VlanTagIsBackInTheFrame) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  std::string error;
  auto port = open_port(options_for("b"), lab.ns, &error);
  ASSERT_NE(port, nullptr) << error;
  const std::vector<Bytes> sent = {
      tagged_udp_frame(0x8100, 0x2007, kClient, kVip, "priority 1, vlan 7"),
      tagged_udp_frame(0x8100, 0x0000, kClient, kVip, "priority tag, vlan 0"),
      tagged_udp_frame(0x88a8, 0xe0ff, kClient, kVip, "802.1ad, priority 7, vlan 255"),
      udp_frame(kClient, kVip, 40000, 80, 1500, "untagged, full size"),
      tagged_udp_frame(0x8100, 0x0fff, kClient, kVip, std::string(1500 - 46, 'x')),  // 1504 bytes: MTU + tag
  };
  {
    NetnsScope inside(lab.ns);
    ASSERT_TRUE(inside.ok()) << inside.error();
    RawSocket sender;
    ASSERT_EQ(sender.open("a"), "");
    for (const Bytes& frame : sent) ASSERT_TRUE(sender.send(frame)) << std::strerror(errno);
  }
  const std::vector<Received> received = collect(*port, sent.size(), 2000, core::kMaxBurst, /*scribble=*/true);
  ASSERT_EQ(received.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(received[i].bytes, sent[i]) << "frame " << i;
    // The tag took 4 bytes of headroom; the rest is still there for encapsulation.
    EXPECT_GE(received[i].headroom, 64u - 4u) << "frame " << i;
  }
  EXPECT_EQ(port->driver_counters().rx_truncated, 0u);
}

// A local TCP stack's segment crosses veth with CHECKSUM_PARTIAL: its TCP
// checksum field holds only the folded pseudo-header sum.
TEST(AfPacketPort, ChecksumPartialFlagForALocalTcpStack) {
  NetNamespace client("client");
  NetNamespace server("server");
  ASSERT_TRUE(client.ok()) << client.error();
  ASSERT_TRUE(server.ok()) << server.error();
  client.ip({"link", "add", "name", "c", "type", "veth", "peer", "name", "s", "netns", server.name()});
  client.ip({"address", "add", "198.18.0.1/24", "dev", "c"});
  server.ip({"address", "add", "198.18.0.2/24", "dev", "s"});
  client.ip({"link", "set", "dev", "c", "up"});
  server.ip({"link", "set", "dev", "s", "up"});
  ASSERT_TRUE(client.ok()) << client.error();
  ASSERT_TRUE(server.ok()) << server.error();

  AfPacketOptions options = options_for("s");
  BpfFilterSpec spec;
  spec.destinations = {ipv4_addr(198, 18, 0, 2)};
  spec.accept_arp = false;
  options.filter = io::build_bpf_filter(spec).instructions;
  std::string error;
  auto port = open_port(options, server, &error);
  ASSERT_NE(port, nullptr) << error;

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(8080);
  address.sin_addr.s_addr = htonl(ipv4_addr(198, 18, 0, 2));
  int listener = -1, connector = -1;
  {
    NetnsScope inside(server);
    ASSERT_TRUE(inside.ok()) << inside.error();
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(0, bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address))) << std::strerror(errno);
    ASSERT_EQ(0, listen(listener, 4));
  }
  {
    NetnsScope inside(client);
    ASSERT_TRUE(inside.ok()) << inside.error();
    connector = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const int rc = connect(connector, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
  }
  const std::vector<Received> received = collect(*port, 1, 2000);
  close(connector);
  close(listener);
  ASSERT_GE(received.size(), 1u);  // the handshake's ACK may come in the same block
  const Bytes& syn = received[0].bytes;
  ASSERT_GE(syn.size(), 14u + 20u + 20u);
  ASSERT_EQ(core::load_be16(&syn[12]), 0x0800);
  const size_t ip = 14;
  const size_t ip_header_len = (syn[ip] & 0x0f) * 4u;
  ASSERT_EQ(syn[ip + 9], 6);  // TCP
  const size_t tcp = ip + ip_header_len;
  EXPECT_EQ(syn[tcp + 13] & 0x12, 0x02) << "the first segment is the SYN";
  EXPECT_TRUE(received[0].flags & core::kFrameChecksumPartial);
  // The field holds the pseudo-header sum, folded and not complemented.
  const uint16_t tcp_len = static_cast<uint16_t>(core::load_be16(&syn[ip + 2]) - ip_header_len);
  uint8_t pseudo[12];
  std::memcpy(pseudo, &syn[ip + 12], 8);
  pseudo[8] = 0;
  pseudo[9] = 6;
  core::store_be16(pseudo + 10, tcp_len);
  const uint16_t pseudo_sum = static_cast<uint16_t>(~core::checksum_finish(core::checksum_partial(pseudo, sizeof(pseudo))));
  EXPECT_EQ(core::load_be16(&syn[tcp + 16]), pseudo_sum);
}

TEST(AfPacketPort, OwnAndHostSentFramesAreNotReceived) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  lab.ns.ip({"address", "add", "198.18.0.2/24", "dev", "b"});
  ASSERT_TRUE(lab.ns.ok()) << lab.ns.error();
  std::string error;
  auto port = open_port(options_for("b"), lab.ns, &error);  // no filter: everything on b
  ASSERT_NE(port, nullptr) << error;

  NetnsScope inside(lab.ns);
  ASSERT_TRUE(inside.ok()) << inside.error();
  RawSocket peer;
  ASSERT_EQ(peer.open("a"), "");
  // The port's own transmissions.
  std::vector<core::Frame> frames;
  std::vector<Bytes> storage;
  for (size_t i = 0; i < 20; ++i) storage.push_back(udp_frame(kVip, kClient, 80, 40000, 0, payload_tag(i)));
  for (Bytes& bytes : storage) frames.push_back(core::make_frame(bytes.data(), static_cast<uint32_t>(bytes.size()), 0, 0));
  ASSERT_EQ(port->tx_burst(frames.data(), static_cast<uint32_t>(frames.size())).packets, frames.size());
  // The host stack's: a datagram to an unresolved neighbour sends an ARP request out of b.
  const int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  to.sin_addr.s_addr = htonl(ipv4_addr(198, 18, 0, 1));
  ASSERT_EQ(sendto(udp, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 1) << std::strerror(errno);
  close(udp);

  // They did leave b...
  size_t own = 0, arp_requests = 0;
  while (std::optional<Bytes> frame = peer.receive(200)) {
    if (core::load_be16(&(*frame)[12]) == 0x0806) ++arp_requests;
    if (core::load_be16(&(*frame)[12]) == 0x0800) ++own;
    if (own == storage.size() && arp_requests > 0) break;
  }
  EXPECT_EQ(own, storage.size());
  EXPECT_GE(arp_requests, 1u);
  // ...and never came back to the port's ring.
  const std::vector<Received> received = drain(*port, 30);
  EXPECT_TRUE(received.empty()) << received.size() << " outgoing frames received";
  EXPECT_EQ(port->driver_counters().rx_outgoing_skipped, 0u) << "the kernel should have kept them out";
}

class AfPacketTransmit : public ::testing::TestWithParam<TxMethod> {};

TEST_P(AfPacketTransmit, DeliversByteForByte) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  AfPacketOptions sender_options = options_for("b");
  sender_options.tx_method = GetParam();
  sender_options.tx_frame_count = 64;  // smaller than what is sent: slots are reused
  std::string error;
  auto sender = open_port(sender_options, lab.ns, &error);
  ASSERT_NE(sender, nullptr) << error;
  // The receiving end is a port too, so that tagged frames come back tagged.
  auto receiver = open_port(options_for("a"), lab.ns, &error);
  ASSERT_NE(receiver, nullptr) << error;

  std::vector<Bytes> sent;
  for (size_t i = 0; i < 200; ++i) {
    switch (i % 4) {
      case 0: sent.push_back(udp_frame(kVip, kClient, 80, 40000, 64, payload_tag(i))); break;
      case 1: sent.push_back(udp_frame(kVip, kClient, 80, 40000, 1500, payload_tag(i))); break;
      case 2: sent.push_back(udp_frame(kVip, kClient, 80, 40000, 1514, payload_tag(i))); break;  // MTU
      default: sent.push_back(tagged_udp_frame(0x8100, 42, kVip, kClient, payload_tag(i))); break;
    }
  }
  Bytes too_long = udp_frame(kVip, kClient, 80, 40000, 1514 + 4 + 1);
  for (size_t start = 0; start < sent.size(); start += 25) {
    std::vector<core::Frame> frames;
    for (size_t i = start; i < start + 25; ++i) {
      frames.push_back(core::make_frame(sent[i].data(), static_cast<uint32_t>(sent[i].size()), 0, 0));
    }
    ASSERT_EQ(sender->tx_burst(frames.data(), static_cast<uint32_t>(frames.size())).packets, frames.size());
    // Read as we go: the receiving ring and the veth backlog stay small.
    std::vector<Received> received = collect(*receiver, frames.size(), 2000);
    ASSERT_EQ(received.size(), frames.size());
    for (size_t i = 0; i < received.size(); ++i) EXPECT_EQ(received[i].bytes, sent[start + i]) << "frame " << start + i;
  }
  core::Frame oversize = core::make_frame(too_long.data(), static_cast<uint32_t>(too_long.size()), 0, 0);
  EXPECT_EQ(sender->tx_burst(&oversize, 1).packets, 0u);
  const io::PortCounters counters = sender->counters();
  EXPECT_EQ(counters.tx_packets, sent.size());
  EXPECT_EQ(counters.tx_dropped, 1u);
  uint64_t bytes = 0;
  for (const Bytes& frame : sent) bytes += frame.size();
  EXPECT_EQ(counters.tx_bytes, bytes);
  EXPECT_EQ(sender->driver_counters().tx_kicks, sent.size() / 25) << "one kick per burst";
  EXPECT_TRUE(drain(*receiver, 10).empty());
}

INSTANTIATE_TEST_SUITE_P(Methods, AfPacketTransmit, ::testing::Values(TxMethod::ring, TxMethod::sendmmsg),
                         [](const ::testing::TestParamInfo<TxMethod>& method) {
                           return method.param == TxMethod::ring ? "TxRing" : "Sendmmsg";
                         });

TEST(AfPacketPort, FanoutSplitsFlowsWithBothDirectionsTogether) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  AfPacketOptions options = options_for("b");
  options.fanout_group = io::kFanoutNewGroup;
  std::string error;
  auto first = open_port(options, lab.ns, &error);
  ASSERT_NE(first, nullptr) << error;
  ASSERT_GE(first->fanout_group(), 0);
  options.fanout_group = first->fanout_group();
  auto second = open_port(options, lab.ns, &error);
  ASSERT_NE(second, nullptr) << error;
  EXPECT_TRUE(first->kernel_ignores_outgoing());

  // A group belongs to one interface: the same id on `a` is refused.
  AfPacketOptions elsewhere = options_for("a");
  elsewhere.fanout_group = first->fanout_group();
  elsewhere.netns_path = lab.ns.path();
  PortError port_error;
  EXPECT_EQ(AfPacketPort::create(elsewhere, &port_error), nullptr);
  EXPECT_EQ(port_error.code, "EPORT_FANOUT");
  EXPECT_EQ(port_error.error_number, EINVAL);

  // 64 flows, each direction twice: client:port <-> backend:80.
  constexpr size_t kFlows = 64;
  std::map<std::string, size_t> flow_of;  // payload tag -> flow
  {
    NetnsScope inside(lab.ns);
    ASSERT_TRUE(inside.ok()) << inside.error();
    RawSocket sender;
    ASSERT_EQ(sender.open("a"), "");
    size_t n = 0;
    for (size_t flow = 0; flow < kFlows; ++flow) {
      const uint32_t client = kClient + static_cast<uint32_t>(flow % 8);
      const uint16_t port = static_cast<uint16_t>(40000 + flow);
      for (int copy = 0; copy < 2; ++copy) {
        std::string tag = payload_tag(n++);
        flow_of[tag] = flow;
        ASSERT_TRUE(sender.send(udp_frame(client, kBackend, port, 80, 0, tag)));
        tag = payload_tag(n++);
        flow_of[tag] = flow;
        ASSERT_TRUE(sender.send(udp_frame(kBackend, client, 80, port, 0, tag)));
      }
    }
  }
  // Each member reads its share, and transmits a few frames of its own that
  // no member may see.
  std::vector<core::Frame> own;
  Bytes own_frame = udp_frame(kBackend, kClient, 80, 50000);
  for (int i = 0; i < 8; ++i) own.push_back(core::make_frame(own_frame.data(), static_cast<uint32_t>(own_frame.size()), 0, 0));
  ASSERT_EQ(first->tx_burst(own.data(), 8).packets, 8u);
  ASSERT_EQ(second->tx_burst(own.data(), 8).packets, 8u);

  std::vector<Received> from_first, from_second;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (from_first.size() + from_second.size() < flow_of.size() && std::chrono::steady_clock::now() < deadline) {
    for (Received& r : collect(*first, SIZE_MAX, 5)) from_first.push_back(std::move(r));
    for (Received& r : collect(*second, SIZE_MAX, 5)) from_second.push_back(std::move(r));
  }
  for (Received& r : drain(*first, 20)) from_first.push_back(std::move(r));
  for (Received& r : drain(*second, 20)) from_second.push_back(std::move(r));

  auto tag_of = [](const Bytes& frame) { return std::string(frame.begin() + 42, frame.end()); };
  std::map<size_t, std::set<int>> members_of_flow;
  std::set<std::string> seen;
  for (int member = 0; member < 2; ++member) {
    for (const Received& r : member == 0 ? from_first : from_second) {
      const std::string tag = tag_of(r.bytes);
      ASSERT_EQ(flow_of.count(tag), 1u) << "an own frame came back or a stranger: " << tag;
      EXPECT_TRUE(seen.insert(tag).second) << "received twice: " << tag;
      members_of_flow[flow_of[tag]].insert(member);
    }
  }
  EXPECT_EQ(seen.size(), flow_of.size());
  EXPECT_FALSE(from_first.empty());
  EXPECT_FALSE(from_second.empty());
  for (const auto& [flow, members] : members_of_flow) EXPECT_EQ(members.size(), 1u) << "flow " << flow << " split";
}

TEST(AfPacketPort, KernelDropsCountedWhenTheRingOverflows) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  AfPacketOptions options = options_for("b");
  options.rx_frame_count = 8;
  std::string error;
  auto port = open_port(options, lab.ns, &error);
  ASSERT_NE(port, nullptr) << error;
  constexpr size_t kSent = 40;
  {
    NetnsScope inside(lab.ns);
    ASSERT_TRUE(inside.ok()) << inside.error();
    RawSocket sender;
    ASSERT_EQ(sender.open("a"), "");
    for (size_t i = 0; i < kSent; ++i) ASSERT_TRUE(sender.send(udp_frame(kClient, kVip, 40000, 80, 1000, payload_tag(i))));
    usleep(20 * 1000);
    const uint64_t drops = port->counters().kernel_drops;
    const std::vector<Received> received = drain(*port, 20);
    EXPECT_EQ(received.size(), 8u) << "the ring holds 8 frames";
    EXPECT_EQ(received.size() + drops, kSent);
    // Reading again does not lose the count (the kernel's counter resets on read).
    EXPECT_EQ(port->counters().kernel_drops, drops);
    // The ring takes frames again once its slots are back.
    const Bytes after = udp_frame(kClient, kVip, 40000, 80, 0, "after");
    ASSERT_TRUE(sender.send(after));
    const std::vector<Received> recovered = collect(*port, 1, 2000);
    ASSERT_EQ(recovered.size(), 1u);
    EXPECT_EQ(recovered[0].bytes, after);
  }
}

// A frame handed out stays the caller's until released, in any order: the
// kernel drops rather than write over it, and other slots come back at once.
TEST(AfPacketPort, AHeldFrameStaysOursWhileOthersComeBack) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  AfPacketOptions options = options_for("b");
  options.rx_frame_count = 4;
  std::string error;
  auto port = open_port(options, lab.ns, &error);
  ASSERT_NE(port, nullptr) << error;
  NetnsScope inside(lab.ns);
  ASSERT_TRUE(inside.ok()) << inside.error();
  RawSocket sender;
  ASSERT_EQ(sender.open("a"), "");
  std::vector<Bytes> sent;
  auto send = [&](size_t count) {
    for (size_t i = 0; i < count; ++i) {
      sent.push_back(udp_frame(kClient, kVip, 40000, 80, 1000, payload_tag(sent.size())));
      ASSERT_TRUE(sender.send(sent.back()));
    }
  };
  send(4);  // fills the ring
  core::Frame frames[4];
  uint32_t got = 0;
  for (int attempt = 0; attempt < 200 && got < 4; ++attempt) {
    got += port->rx_burst(frames + got, 4 - got);
    if (got < 4) usleep(1000);
  }
  ASSERT_EQ(got, 4u);
  const core::Frame held = frames[0];
  core::release_frames(frames + 1, 3);  // out of order: the first stays held
  // The kernel's next slot is the held one: it drops until it comes back.
  send(4);
  usleep(20 * 1000);
  EXPECT_TRUE(drain(*port, 20).empty());
  EXPECT_EQ(Bytes(held.data, held.data + held.len), sent[0]) << "the held frame was written over";
  core::Frame release = held;
  core::release_frames(&release, 1);
  send(1);
  const std::vector<Received> after = collect(*port, 1, 2000);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].bytes, sent.back());
  EXPECT_EQ(port->counters().kernel_drops, 4u);
}

TEST(NetNamespaceHelper, RemovesNamespacesOfDeadTestProcesses) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  const std::string stale = std::string(test::kTestNetnsPrefix) + std::to_string(child) + "-0-stale";
  const std::string alive = std::string(test::kTestNetnsPrefix) + std::to_string(getpid()) + "-999-alive";
  std::string output;
  ASSERT_EQ(test::run_command({"ip", "netns", "add", stale}, &output), 0) << output;
  ASSERT_EQ(test::run_command({"ip", "netns", "add", alive}, &output), 0) << output;
  test::remove_stale_test_namespaces();
  EXPECT_NE(access((std::string(test::kNetnsDirectory) + "/" + stale).c_str(), F_OK), 0) << "left behind";
  EXPECT_EQ(access((std::string(test::kNetnsDirectory) + "/" + alive).c_str(), F_OK), 0) << "a live process's namespace removed";
  test::run_command({"ip", "netns", "del", alive}, &output);
  test::run_command({"ip", "netns", "del", stale}, &output);
}

// TPACKET_V2 hands each frame over the moment the kernel has written it: no
// block timer between a lone frame and the reader (TPACKET_V3 retires a
// partly filled block only when its timer fires, 1 ms at best).
TEST(AfPacketPort, ALoneFrameIsReadableAtOnce) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  std::string error;
  auto port = open_port(options_for("b"), lab.ns, &error);
  ASSERT_NE(port, nullptr) << error;
  NetnsScope inside(lab.ns);
  ASSERT_TRUE(inside.ok()) << inside.error();
  RawSocket sender;
  ASSERT_EQ(sender.open("a"), "");
  // Best of a few: the machine is shared, one sample may be descheduled.
  auto best = std::chrono::steady_clock::duration::max();
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(sender.send(udp_frame(kClient, kVip)));
    ASSERT_EQ(collect(*port, 1, 1000).size(), 1u);
    best = std::min(best, std::chrono::steady_clock::now() - start);
  }
  EXPECT_LT(best, std::chrono::microseconds(500));
}

// A TCP connection across veth with the kernel's default offloads: the
// sender's stack hands the link 64 KiB aggregates, which arrive whole with
// their GSO metadata (frames longer than a slot through the socket's queue).
TEST(AfPacketPort, AggregatesOfALocalTcpStackArriveWhole) {
  NetNamespace client("client");
  NetNamespace server("server");
  ASSERT_TRUE(client.ok()) << client.error();
  ASSERT_TRUE(server.ok()) << server.error();
  client.ip({"link", "add", "name", "c", "type", "veth", "peer", "name", "s", "netns", server.name()});
  client.ip({"address", "add", "198.18.0.1/24", "dev", "c"});
  server.ip({"address", "add", "198.18.0.2/24", "dev", "s"});
  client.ip({"link", "set", "dev", "c", "up"});
  server.ip({"link", "set", "dev", "s", "up"});
  ASSERT_TRUE(client.ok()) << client.error();
  ASSERT_TRUE(server.ok()) << server.error();
  AfPacketOptions options = options_for("s");
  BpfFilterSpec spec;
  spec.destinations = {ipv4_addr(198, 18, 0, 2)};
  spec.accept_arp = false;
  options.filter = io::build_bpf_filter(spec).instructions;
  std::string error;
  auto port = open_port(options, server, &error);
  ASSERT_NE(port, nullptr) << error;

  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(8080);
  address.sin_addr.s_addr = htonl(ipv4_addr(198, 18, 0, 2));
  int listener = -1, connector = -1;
  {
    NetnsScope inside(server);
    ASSERT_TRUE(inside.ok()) << inside.error();
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(0, bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address))) << std::strerror(errno);
    ASSERT_EQ(0, listen(listener, 4));
  }
  constexpr size_t kBytes = 1 << 20;
  std::thread reader([&] {
    const int accepted = accept(listener, nullptr, nullptr);
    std::vector<uint8_t> sink(1 << 16);
    size_t total = 0;
    while (accepted >= 0 && total < kBytes) {
      const ssize_t n = read(accepted, sink.data(), sink.size());
      if (n <= 0) break;
      total += static_cast<size_t>(n);
    }
    if (accepted >= 0) close(accepted);
  });
  {
    NetnsScope inside(client);
    ASSERT_TRUE(inside.ok()) << inside.error();
    connector = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(0, connect(connector, reinterpret_cast<sockaddr*>(&address), sizeof(address))) << std::strerror(errno);
    std::vector<uint8_t> data(kBytes, 'x');
    size_t written = 0;
    while (written < kBytes) {
      const ssize_t n = write(connector, data.data() + written, kBytes - written);
      ASSERT_GT(n, 0) << std::strerror(errno);
      written += static_cast<size_t>(n);
    }
  }
  const std::vector<Received> received = drain(*port, 500);
  close(connector);
  reader.join();
  close(listener);
  size_t aggregates = 0, payload = 0;
  for (const Received& r : received) {
    ASSERT_GE(r.bytes.size(), 14u + 20u + 20u);
    const uint16_t ip_len = core::load_be16(&r.bytes[14 + 2]);
    EXPECT_EQ(ip_len + 14u, r.bytes.size()) << "the whole aggregate, as its IP header declares";
    payload += ip_len - (r.bytes[14] & 0x0f) * 4u - (r.bytes[14 + 20 + 12] >> 4) * 4u;
    if (r.gso_type == core::GsoType::none) continue;
    ++aggregates;
    EXPECT_EQ(r.gso_type, core::GsoType::tcp4);
    EXPECT_GT(r.gso_size, 0u);
    EXPECT_LE(r.gso_size, 1500u - 40u);
    EXPECT_TRUE(r.flags & core::kFrameChecksumPartial);
  }
  EXPECT_GT(aggregates, 0u) << "the sender's stack did not aggregate: offloads off on veth?";
  EXPECT_GE(payload, kBytes) << "every byte of the stream reached the port";
  EXPECT_EQ(port->driver_counters().rx_truncated, 0u);
  EXPECT_EQ(port->driver_counters().rx_aggregates, aggregates);
}

// An aggregate sent with its metadata crosses veth as one GSO packet: the
// peer's port receives it with the same segment size (the kernel would cut
// it on a NIC, or hand it to the peer's TCP stack whole).
TEST(AfPacketPort, AggregatesLeaveWithTheirMetadata) {
  VethLab lab;
  ASSERT_EQ(lab.build(), "");
  std::string error;
  auto sender = open_port(options_for("b"), lab.ns, &error);
  ASSERT_NE(sender, nullptr) << error;
  auto receiver = open_port(options_for("a"), lab.ns, &error);
  ASSERT_NE(receiver, nullptr) << error;
  EXPECT_TRUE(sender->capabilities().segmentation_offload);
  // 10 segments of 1000 bytes of one TCP stream, with a partial checksum.
  Bytes aggregate = tcp_frame(kVip, kClient, 80, 40000, std::string(10000, 'y'));
  const uint32_t l4 = 14 + 20;
  uint8_t pseudo[12];
  std::memcpy(pseudo, &aggregate[14 + 12], 8);
  pseudo[8] = 0;
  pseudo[9] = 6;
  core::store_be16(pseudo + 10, static_cast<uint16_t>(aggregate.size() - l4));
  core::store_be16(&aggregate[l4 + 16],
                   static_cast<uint16_t>(~core::checksum_finish(core::checksum_partial(pseudo, sizeof(pseudo)))));
  core::Frame frame = core::make_frame(aggregate.data(), static_cast<uint32_t>(aggregate.size()), 0, 0);
  frame.flags = core::kFrameChecksumPartial;
  frame.csum_start = l4;
  frame.csum_offset = 16;
  frame.gso_type = core::GsoType::tcp4;
  frame.gso_size = 1000;
  frame.header_len = l4 + 20;
  EXPECT_EQ(sender->tx_burst(&frame, 1).packets, 1u);
  const std::vector<Received> received = collect(*receiver, 1, 2000);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].bytes.size(), aggregate.size());
  EXPECT_EQ(received[0].gso_type, core::GsoType::tcp4);
  EXPECT_EQ(received[0].gso_size, 1000u);
  EXPECT_TRUE(received[0].flags & core::kFrameChecksumPartial);
}

}  // namespace
}  // namespace l4lb

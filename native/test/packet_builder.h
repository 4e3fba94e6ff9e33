// A tiny packet builder for the C++ tests, fuzz seeds and micro benchmarks.
//
// Frames are described as a stack of layers, outermost first, and serialized
// from the innermost layer outwards so that every length and checksum is
// computed from scratch over the final bytes:
//
//   const Bytes frame = PacketBuilder()
//                           .ethernet()
//                           .vlan({.tci = 7})
//                           .ipv4({.src = ipv4_addr(198, 18, 0, 1), .dst = ipv4_addr(198, 18, 1, 1)})
//                           .tcp({.src_port = 40000, .dst_port = 80, .flags = wire::kTcpSyn})
//                           .payload("hello")
//                           .build();
//
// Fields left unset are derived: EtherTypes, IP protocol / next header and
// GRE protocol type from the next layer, lengths from what follows, all
// checksums (IPv4, TCP, UDP, ICMP, ICMPv6, GRE). Every derived field has a
// knob to corrupt it (an explicit value), and every checksum a
// `checksum_error`: a value added to the one's-complement sum before the
// final complement, which makes the checksum wrong by an amount that RFC 1624
// incremental updates preserve, so "wrong in, equally wrong out" can be
// compared byte for byte.
//
// Without ethernet() the result is a bare IP packet (for ICMP quotes and
// tunnel payloads). Addresses and ports are host order; the builder writes
// network order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/checksum.h"
#include "core/wire.h"

namespace l4lb::test {

using Bytes = std::vector<uint8_t>;
using core::MacAddress;
namespace wire = core::wire;

constexpr uint32_t ipv4_addr(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return (static_cast<uint32_t>(a) << 24) | (static_cast<uint32_t>(b) << 16) |
         (static_cast<uint32_t>(c) << 8) | d;
}

// An IPv6 address from its eight 16-bit groups: ipv6_addr({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}).
struct Ipv6Addr {
  uint8_t bytes[16];
};
inline Ipv6Addr ipv6_addr(const uint16_t (&groups)[8]) {
  Ipv6Addr addr{};
  for (int i = 0; i < 8; ++i) core::store_be16(addr.bytes + 2 * i, groups[i]);
  return addr;
}

inline constexpr MacAddress kBuilderDstMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}};
inline constexpr MacAddress kBuilderSrcMac{{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};

struct EthernetLayer {
  MacAddress dst = kBuilderDstMac;
  MacAddress src = kBuilderSrcMac;
  std::optional<uint16_t> ether_type;  // default: from the next layer
};

// An 802.1Q tag. Its TPID is written by the layer before it (as that layer's
// EtherType); `tpid` chooses it (0x88a8 for an 802.1ad S-tag).
struct VlanLayer {
  uint16_t tci = 0;
  uint16_t tpid = wire::kEtherTypeVlan;
  std::optional<uint16_t> ether_type;  // default: from the next layer
};

struct Ipv4Layer {
  uint32_t src = 0;
  uint32_t dst = 0;
  uint8_t ttl = 64;
  uint8_t tos = 0;
  uint16_t id = 0;
  bool df = false;
  bool mf = false;
  uint16_t frag_offset = 0;  // 8-byte units
  std::optional<uint8_t> protocol;  // default: from the next layer (253, experimental, for raw bytes)
  Bytes options;                    // zero-padded to a multiple of 4
  // Corruption knobs.
  std::optional<uint8_t> version;
  std::optional<uint8_t> ihl;
  std::optional<uint16_t> total_length;
  std::optional<uint16_t> checksum;
  uint16_t checksum_error = 0;
};

struct Ipv6Layer {
  Ipv6Addr src{};
  Ipv6Addr dst{};
  uint8_t hop_limit = 64;
  uint8_t traffic_class = 0;
  uint32_t flow_label = 0;
  std::optional<uint8_t> next_header;  // default: from the next layer
  std::optional<uint16_t> payload_length;
  std::optional<uint8_t> version;
};

// An IPv6 extension header. For hop-by-hop, routing and destination options
// the body is zero-filled (Pad1/PadN-valid for options, routing type 0 with
// segments left 0); `length` is the Hdr Ext Len field (8-octet units after the
// first 8). A fragment header is always 8 bytes.
struct Ipv6ExtensionLayer {
  uint8_t type = wire::kProtoDestinationOptions;
  uint8_t length = 0;
  std::optional<uint8_t> next_header;  // default: from the next layer
  uint16_t frag_offset = 0;            // fragment header: 8-byte units
  bool more_fragments = false;         // fragment header: M
  uint32_t identification = 0;         // fragment header
};

struct TcpLayer {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint8_t flags = wire::kTcpAckFlag;
  uint32_t seq = 1;
  uint32_t ack = 0;
  uint16_t window = 65535;
  uint16_t urgent = 0;
  Bytes options;  // zero-padded to a multiple of 4
  std::optional<uint8_t> data_offset;  // corruption knob (32-bit words)
  std::optional<uint16_t> checksum;
  uint16_t checksum_error = 0;
  // CHECKSUM_PARTIAL as a local Linux stack leaves it: the field holds the
  // folded pseudo-header sum, not complemented.
  bool partial_checksum = false;
};

struct UdpLayer {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  std::optional<uint16_t> length;  // corruption knob
  std::optional<uint16_t> checksum;
  uint16_t checksum_error = 0;
  bool no_checksum = false;  // checksum 0: none (IPv4 only, RFC 768)
  bool partial_checksum = false;
};

// ICMP, or ICMPv6 when inside IPv6 (then the checksum covers the
// pseudo-header, RFC 4443 §2.3).
struct IcmpLayer {
  uint8_t type = wire::kIcmpEchoRequest;
  uint8_t code = 0;
  uint32_t rest = 0;  // bytes 4-7: echo id << 16 | sequence; frag needed: next-hop MTU
  std::optional<uint16_t> checksum;
  uint16_t checksum_error = 0;
};

struct GreLayer {
  bool with_checksum = false;         // C bit, checksum over GRE header and payload
  std::optional<uint32_t> key;        // K bit
  std::optional<uint32_t> sequence;   // S bit
  std::optional<uint16_t> protocol;   // default: from the next layer
  uint16_t extra_flags = 0;           // OR'ed into the flags word: routing, reserved, version
};

struct RawLayer {
  Bytes bytes;
};

inline Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }

class PacketBuilder {
 public:
  PacketBuilder& ethernet(EthernetLayer layer = {}) { return push(layer); }
  PacketBuilder& vlan(VlanLayer layer = {}) { return push(layer); }
  PacketBuilder& ipv4(Ipv4Layer layer) { return push(std::move(layer)); }
  PacketBuilder& ipv6(Ipv6Layer layer) { return push(layer); }
  PacketBuilder& ipv6_extension(Ipv6ExtensionLayer layer) { return push(layer); }
  PacketBuilder& tcp(TcpLayer layer) { return push(std::move(layer)); }
  PacketBuilder& udp(UdpLayer layer) { return push(std::move(layer)); }
  PacketBuilder& icmp(IcmpLayer layer) { return push(layer); }
  PacketBuilder& gre(GreLayer layer = {}) { return push(layer); }
  PacketBuilder& payload(Bytes bytes) { return push(RawLayer{std::move(bytes)}); }
  PacketBuilder& payload(std::string_view text) { return payload(bytes_of(text)); }
  // Ethernet padding: zeros appended until the frame has `min_len` bytes.
  PacketBuilder& pad_to(size_t min_len) {
    pad_to_ = min_len;
    return *this;
  }

  Bytes build() const {
    Bytes rest;
    for (size_t i = layers_.size(); i-- > 0;) {
      Bytes header = std::visit([&](const auto& layer) { return serialize(layer, i, rest); }, layers_[i]);
      header.insert(header.end(), rest.begin(), rest.end());
      rest = std::move(header);
    }
    if (rest.size() < pad_to_) rest.resize(pad_to_, 0);
    return rest;
  }

 private:
  using Layer = std::variant<EthernetLayer, VlanLayer, Ipv4Layer, Ipv6Layer, Ipv6ExtensionLayer, TcpLayer,
                             UdpLayer, IcmpLayer, GreLayer, RawLayer>;

  template <typename T>
  PacketBuilder& push(T layer) {
    layers_.emplace_back(std::move(layer));
    return *this;
  }

  const Layer* next(size_t i) const { return i + 1 < layers_.size() ? &layers_[i + 1] : nullptr; }

  uint16_t ether_type_of_next(size_t i) const {
    const Layer* n = next(i);
    if (n == nullptr) return 0x88b5;  // IEEE 802 local experimental
    if (const auto* tag = std::get_if<VlanLayer>(n)) return tag->tpid;
    if (std::holds_alternative<Ipv4Layer>(*n)) return wire::kEtherTypeIpv4;
    if (std::holds_alternative<Ipv6Layer>(*n)) return wire::kEtherTypeIpv6;
    if (std::holds_alternative<EthernetLayer>(*n)) return wire::kEtherTypeTeb;
    return 0x88b5;
  }

  uint8_t protocol_of_next(size_t i) const {
    const Layer* n = next(i);
    if (n == nullptr) return wire::kProtoNoNextHeader;
    if (const auto* ext = std::get_if<Ipv6ExtensionLayer>(n)) return ext->type;
    if (std::holds_alternative<TcpLayer>(*n)) return wire::kProtoTcp;
    if (std::holds_alternative<UdpLayer>(*n)) return wire::kProtoUdp;
    if (std::holds_alternative<IcmpLayer>(*n)) return inside_ipv6(i + 1) ? wire::kProtoIcmpv6 : wire::kProtoIcmp;
    if (std::holds_alternative<GreLayer>(*n)) return wire::kProtoGre;
    if (std::holds_alternative<Ipv4Layer>(*n)) return wire::kProtoIpip;
    if (std::holds_alternative<Ipv6Layer>(*n)) return wire::kProtoIpv6;
    return 253;  // RFC 3692 experimentation
  }

  // The IP layer that encloses layer i (for pseudo-headers), skipping IPv6
  // extension headers.
  const Layer* enclosing_ip(size_t i) const {
    for (size_t j = i; j-- > 0;) {
      if (std::holds_alternative<Ipv6ExtensionLayer>(layers_[j])) continue;
      if (std::holds_alternative<Ipv4Layer>(layers_[j]) || std::holds_alternative<Ipv6Layer>(layers_[j])) {
        return &layers_[j];
      }
      return nullptr;
    }
    return nullptr;
  }
  bool inside_ipv6(size_t i) const {
    const Layer* ip = enclosing_ip(i);
    return ip != nullptr && std::holds_alternative<Ipv6Layer>(*ip);
  }

  // One's-complement sum of the pseudo-header for an upper-layer packet of
  // `length` bytes (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1).
  uint32_t pseudo_header_sum(size_t i, uint8_t protocol, uint32_t length) const {
    const Layer* ip = enclosing_ip(i);
    if (ip == nullptr) return 0;
    uint8_t pseudo[40] = {};
    size_t len = 0;
    if (const auto* v4 = std::get_if<Ipv4Layer>(ip)) {
      core::store_be32(pseudo, v4->src);
      core::store_be32(pseudo + 4, v4->dst);
      pseudo[9] = protocol;
      core::store_be16(pseudo + 10, static_cast<uint16_t>(length));
      len = 12;
    } else {
      const auto& v6 = std::get<Ipv6Layer>(*ip);
      std::copy(v6.src.bytes, v6.src.bytes + 16, pseudo);
      std::copy(v6.dst.bytes, v6.dst.bytes + 16, pseudo + 16);
      core::store_be32(pseudo + 32, length);
      pseudo[39] = protocol;
      len = 40;
    }
    return core::checksum_partial(pseudo, len);
  }

  static uint16_t finish(uint32_t sum, uint16_t error) { return core::checksum_finish(sum + error); }
  static void pad4(Bytes* bytes) {
    while (bytes->size() % 4 != 0) bytes->push_back(0);
  }
  static Bytes concat(const Bytes& header, const Bytes& rest) {
    Bytes all = header;
    all.insert(all.end(), rest.begin(), rest.end());
    return all;
  }

  Bytes serialize(const EthernetLayer& layer, size_t i, const Bytes&) const {
    Bytes out(wire::kEthHeaderLen);
    std::copy(layer.dst.bytes, layer.dst.bytes + 6, out.begin());
    std::copy(layer.src.bytes, layer.src.bytes + 6, out.begin() + 6);
    core::store_be16(out.data() + 12, layer.ether_type.value_or(ether_type_of_next(i)));
    return out;
  }

  Bytes serialize(const VlanLayer& layer, size_t i, const Bytes&) const {
    Bytes out(4);
    core::store_be16(out.data(), layer.tci);
    core::store_be16(out.data() + 2, layer.ether_type.value_or(ether_type_of_next(i)));
    return out;
  }

  Bytes serialize(const Ipv4Layer& layer, size_t i, const Bytes& rest) const {
    Bytes options = layer.options;
    pad4(&options);
    Bytes out(wire::kIpv4HeaderMin);
    out.insert(out.end(), options.begin(), options.end());
    const uint8_t ihl = layer.ihl.value_or(static_cast<uint8_t>(out.size() / 4));
    out[0] = static_cast<uint8_t>((layer.version.value_or(4) << 4) | (ihl & 0x0f));
    out[1] = layer.tos;
    core::store_be16(out.data() + 2, layer.total_length.value_or(static_cast<uint16_t>(out.size() + rest.size())));
    core::store_be16(out.data() + 4, layer.id);
    core::store_be16(out.data() + 6, static_cast<uint16_t>((layer.df ? wire::kIpv4FlagDf : 0) |
                                                           (layer.mf ? wire::kIpv4FlagMf : 0) |
                                                           (layer.frag_offset & wire::kIpv4FragOffsetMask)));
    out[8] = layer.ttl;
    out[9] = layer.protocol.value_or(protocol_of_next(i));
    core::store_be32(out.data() + 12, layer.src);
    core::store_be32(out.data() + 16, layer.dst);
    core::store_be16(out.data() + 10,
                     layer.checksum.value_or(finish(core::checksum_partial(out.data(), out.size()), layer.checksum_error)));
    return out;
  }

  Bytes serialize(const Ipv6Layer& layer, size_t i, const Bytes& rest) const {
    Bytes out(wire::kIpv6HeaderLen);
    const uint32_t first_word = (static_cast<uint32_t>(layer.version.value_or(6)) << 28) |
                                (static_cast<uint32_t>(layer.traffic_class) << 20) | (layer.flow_label & 0xfffff);
    core::store_be32(out.data(), first_word);
    core::store_be16(out.data() + 4, layer.payload_length.value_or(static_cast<uint16_t>(rest.size())));
    out[6] = layer.next_header.value_or(protocol_of_next(i));
    out[7] = layer.hop_limit;
    std::copy(layer.src.bytes, layer.src.bytes + 16, out.begin() + 8);
    std::copy(layer.dst.bytes, layer.dst.bytes + 16, out.begin() + 24);
    return out;
  }

  Bytes serialize(const Ipv6ExtensionLayer& layer, size_t i, const Bytes&) const {
    const uint8_t next_header = layer.next_header.value_or(protocol_of_next(i));
    if (layer.type == wire::kProtoFragment) {
      Bytes out(wire::kIpv6FragmentHeaderLen);
      out[0] = next_header;
      core::store_be16(out.data() + 2, static_cast<uint16_t>((layer.frag_offset << 3) |
                                                             (layer.more_fragments ? wire::kIpv6FragMore : 0)));
      core::store_be32(out.data() + 4, layer.identification);
      return out;
    }
    Bytes out((static_cast<size_t>(layer.length) + 1) * 8);
    out[0] = next_header;
    out[1] = layer.length;
    if (layer.type == wire::kProtoHopByHop || layer.type == wire::kProtoDestinationOptions) {
      // One PadN option filling the body (RFC 8200 §4.2).
      out[2] = 1;
      out[3] = static_cast<uint8_t>(out.size() - 4);
    }
    return out;
  }

  Bytes serialize(const TcpLayer& layer, size_t i, const Bytes& rest) const {
    Bytes options = layer.options;
    pad4(&options);
    Bytes out(wire::kTcpHeaderMin);
    out.insert(out.end(), options.begin(), options.end());
    core::store_be16(out.data() + 0, layer.src_port);
    core::store_be16(out.data() + 2, layer.dst_port);
    core::store_be32(out.data() + 4, layer.seq);
    core::store_be32(out.data() + 8, layer.ack);
    out[12] = static_cast<uint8_t>(layer.data_offset.value_or(static_cast<uint8_t>(out.size() / 4)) << 4);
    out[13] = layer.flags;
    core::store_be16(out.data() + 14, layer.window);
    core::store_be16(out.data() + 18, layer.urgent);
    const uint32_t length = static_cast<uint32_t>(out.size() + rest.size());
    const uint32_t pseudo = pseudo_header_sum(i, wire::kProtoTcp, length);
    uint16_t checksum_value;
    if (layer.partial_checksum) {
      checksum_value = static_cast<uint16_t>(~core::checksum_finish(pseudo));
    } else {
      const Bytes whole = concat(out, rest);
      checksum_value = finish(core::checksum_partial(whole.data(), whole.size(), pseudo), layer.checksum_error);
    }
    core::store_be16(out.data() + 16, layer.checksum.value_or(checksum_value));
    return out;
  }

  Bytes serialize(const UdpLayer& layer, size_t i, const Bytes& rest) const {
    Bytes out(wire::kUdpHeaderLen);
    const uint32_t length = static_cast<uint32_t>(out.size() + rest.size());
    core::store_be16(out.data() + 0, layer.src_port);
    core::store_be16(out.data() + 2, layer.dst_port);
    core::store_be16(out.data() + 4, layer.length.value_or(static_cast<uint16_t>(length)));
    const uint32_t pseudo = pseudo_header_sum(i, wire::kProtoUdp, length);
    uint16_t checksum_value = 0;
    if (layer.no_checksum) {
      checksum_value = 0;
    } else if (layer.partial_checksum) {
      checksum_value = static_cast<uint16_t>(~core::checksum_finish(pseudo));
    } else {
      const Bytes whole = concat(out, rest);
      checksum_value = finish(core::checksum_partial(whole.data(), whole.size(), pseudo), layer.checksum_error);
      if (checksum_value == 0) checksum_value = 0xffff;  // RFC 768: a computed 0 is sent as all ones
    }
    core::store_be16(out.data() + 6, layer.checksum.value_or(checksum_value));
    return out;
  }

  Bytes serialize(const IcmpLayer& layer, size_t i, const Bytes& rest) const {
    Bytes out(wire::kIcmpHeaderLen);
    out[0] = layer.type;
    out[1] = layer.code;
    core::store_be32(out.data() + 4, layer.rest);
    const uint32_t pseudo =
        inside_ipv6(i) ? pseudo_header_sum(i, wire::kProtoIcmpv6, static_cast<uint32_t>(out.size() + rest.size())) : 0;
    const Bytes whole = concat(out, rest);
    core::store_be16(out.data() + 2,
                     layer.checksum.value_or(finish(core::checksum_partial(whole.data(), whole.size(), pseudo),
                                                    layer.checksum_error)));
    return out;
  }

  Bytes serialize(const GreLayer& layer, size_t i, const Bytes& rest) const {
    Bytes out(wire::kGreHeaderMin);
    uint16_t flags = layer.extra_flags;
    if (layer.with_checksum) flags |= wire::kGreFlagChecksum;
    if (layer.key) flags |= wire::kGreFlagKey;
    if (layer.sequence) flags |= wire::kGreFlagSequence;
    core::store_be16(out.data(), flags);
    core::store_be16(out.data() + 2, layer.protocol.value_or(ether_type_of_next(i)));
    if (layer.with_checksum) out.resize(out.size() + 4, 0);
    auto append32 = [&out](uint32_t value) {
      out.resize(out.size() + 4);
      core::store_be32(out.data() + out.size() - 4, value);
    };
    if (layer.key) append32(*layer.key);
    if (layer.sequence) append32(*layer.sequence);
    if (layer.with_checksum) {
      const Bytes whole = concat(out, rest);
      core::store_be16(out.data() + 4, core::checksum(whole.data(), whole.size()));
    }
    return out;
  }

  Bytes serialize(const RawLayer& layer, size_t, const Bytes&) const { return layer.bytes; }

  std::vector<Layer> layers_;
  size_t pad_to_ = 0;
};

// "" when equal; otherwise where the two first differ, with both in hex, for
// test failure messages: EXPECT_EQ(first_difference(actual, expected), "").
inline std::string first_difference(const Bytes& actual, const Bytes& expected) {
  if (actual == expected) return "";
  size_t at = 0;
  while (at < actual.size() && at < expected.size() && actual[at] == expected[at]) ++at;
  auto hex = [](const Bytes& bytes) {
    std::string text;
    char cell[4];
    for (size_t i = 0; i < bytes.size(); ++i) {
      std::snprintf(cell, sizeof cell, "%02x", bytes[i]);
      text += cell;
      text += (i % 16 == 15) ? '\n' : ' ';
    }
    return text;
  };
  return "first difference at byte " + std::to_string(at) + " (sizes " + std::to_string(actual.size()) + " and " +
         std::to_string(expected.size()) + ")\nactual:\n" + hex(actual) + "\nexpected:\n" + hex(expected);
}

}  // namespace l4lb::test

// Layouts shared between TypeScript and the native workers.
//
// TypeScript never hard-codes these: the addon exports every size and offset
// (addon/layout_export.cc) and TypeScript writes fields where it is told. Each
// struct states byte order and padding per field (DESIGN.md §3.4). All integers
// are little-endian (the host order of every supported target; checked below),
// IPv4 addresses are stored as numbers (198.18.0.1 = 0xc6120001), MAC
// addresses as 6 bytes in wire order.
//
// A configuration snapshot is one contiguous byte range:
//
//   SnapshotHeader
//   SnapshotPort[port_count]           one per interface the data plane serves
//   SnapshotService[service_count]     sorted by (address, port, protocol)
//   SnapshotBackend[backend_count]     each service's backends contiguous
//   SnapshotRoute[route_count]         longest prefix first
//   uint32_t local_addresses[local_address_count]   fullnat source pool
//   uint32_t tables[table_word_count]  scheduler lookup tables (maglev, sh, table)
//
// Native code validates every count, offset and index before use
// (snapshot.h); a snapshot that fails validation is refused whole.
#pragma once

#include <cstddef>
#include <cstdint>

namespace l4lb::shm {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shared layouts are little-endian");

inline constexpr uint32_t kSnapshotMagic = 0x4e53344c;  // "L4SN" read as little-endian bytes
inline constexpr uint16_t kSnapshotLayoutVersion = 1;

// Sentinel for "no index".
inline constexpr uint32_t kNone = 0xffffffffu;

enum class Protocol : uint8_t { tcp = 6, udp = 17 };

enum class Method : uint8_t { nat = 0, fullnat = 1, dr = 2, ipip = 3, gre = 4 };

enum class SchedulerKind : uint8_t { rr = 0, wrr = 1, lc = 2, wlc = 3, sh = 4, maglev = 5, table = 6 };

// SnapshotHeader::flags
inline constexpr uint32_t kSnapshotDropBadChecksum = 1u << 0;   // else forward, still counted
inline constexpr uint32_t kSnapshotDropWhenFlowTableFull = 1u << 1;  // else schedule untracked (consistent hash)
inline constexpr uint32_t kSnapshotAnswerEcho = 1u << 2;        // answer ICMP echo to a VIP

struct SnapshotHeader {
  uint32_t magic;                 // kSnapshotMagic
  uint16_t layout_version;        // kSnapshotLayoutVersion
  uint16_t header_size;           // sizeof(SnapshotHeader)
  uint32_t total_size;            // bytes of the whole snapshot
  uint32_t flags;                 // kSnapshot* bits
  uint64_t generation;            // strictly increasing per engine
  uint32_t port_count;
  uint32_t port_offset;           // from the start of the snapshot
  uint32_t service_count;
  uint32_t service_offset;
  uint32_t backend_count;
  uint32_t backend_offset;
  uint32_t route_count;
  uint32_t route_offset;
  uint32_t local_address_count;
  uint32_t local_address_offset;
  uint32_t table_word_count;
  uint32_t table_offset;
  uint16_t fullnat_port_min;      // fullnat source ports [min, max], host order
  uint16_t fullnat_port_max;
  uint16_t tunnel_ttl;            // TTL of created outer headers
  uint16_t icmp_rate_per_sec;     // created ICMP errors per second per worker (0 = none)
};
static_assert(sizeof(SnapshotHeader) == 80);

// SnapshotPort::flags
inline constexpr uint32_t kPortAnswerArpForVips = 1u << 0;

struct SnapshotPort {
  uint8_t mac[6];                 // wire order
  uint16_t mtu;                   // bytes of IP packet the link carries
  uint32_t address;               // the interface's primary IPv4 address (0 = none)
  uint8_t prefix_length;          // of `address`
  uint8_t pad0[3];                // zero
  uint32_t flags;                 // kPort* bits
};
static_assert(sizeof(SnapshotPort) == 20);

// SnapshotService::flags
inline constexpr uint32_t kServiceDropIpOptions = 1u << 0;
inline constexpr uint32_t kServicePersistent = 1u << 1;
inline constexpr uint32_t kServiceGreKey = 1u << 2;        // gre_key is sent
inline constexpr uint32_t kServiceRemoveResetsFlows = 1u << 3;  // else drop packets of removed backends

struct SnapshotService {
  uint32_t address;               // VIP
  uint16_t port;                  // service port, host order
  uint8_t protocol;               // Protocol
  uint8_t method;                 // Method
  uint32_t id;                    // stable across snapshots: flows and stats refer to it
  uint8_t scheduler;              // SchedulerKind
  uint8_t pad0[3];                // zero
  uint32_t flags;                 // kService* bits
  uint32_t backend_first;         // index into the backend array
  uint32_t backend_count;
  uint32_t table_first;           // index into tables[] (maglev, sh, table), else kNone
  uint32_t table_size;            // entries; each entry a backend index relative to backend_first
  uint32_t persistence_timeout_ms;
  uint32_t gre_key;               // host order
};
static_assert(sizeof(SnapshotService) == 44);

// SnapshotBackend::flags
inline constexpr uint32_t kBackendUp = 1u << 0;          // health: may receive flows
inline constexpr uint32_t kBackendNextHopResolved = 1u << 1;  // next_hop_mac is valid

struct SnapshotBackend {
  uint32_t address;               // real server
  uint16_t port;                  // host order (nat, fullnat); ignored by dr and tunnels
  uint16_t weight;                // 0 = draining: no new flows
  uint32_t id;                    // stable across snapshots; never reused within an engine
  uint32_t flags;                 // kBackend* bits
  uint16_t egress_port;           // port index toward the backend (or its next hop)
  uint8_t next_hop_mac[6];        // wire order; valid with kBackendNextHopResolved
};
static_assert(sizeof(SnapshotBackend) == 24);

struct SnapshotRoute {
  uint32_t prefix;                // network, host order
  uint8_t prefix_length;
  uint8_t resolved;               // 1 when next_hop_mac is valid
  uint16_t egress_port;
  uint32_t gateway;               // 0 = on-link
  uint8_t next_hop_mac[6];        // wire order
  uint8_t pad0[2];                // zero
};
static_assert(sizeof(SnapshotRoute) == 20);

}  // namespace l4lb::shm

// Field lists for export to TypeScript: X(struct, field). The addon turns
// these into { size, fields: { name: { offset, size } } } (addon/layout.cc).
#define L4LB_SNAPSHOT_HEADER_FIELDS(X)                                                     \
  X(SnapshotHeader, magic) X(SnapshotHeader, layout_version) X(SnapshotHeader, header_size) \
  X(SnapshotHeader, total_size) X(SnapshotHeader, flags) X(SnapshotHeader, generation)      \
  X(SnapshotHeader, port_count) X(SnapshotHeader, port_offset)                              \
  X(SnapshotHeader, service_count) X(SnapshotHeader, service_offset)                        \
  X(SnapshotHeader, backend_count) X(SnapshotHeader, backend_offset)                        \
  X(SnapshotHeader, route_count) X(SnapshotHeader, route_offset)                            \
  X(SnapshotHeader, local_address_count) X(SnapshotHeader, local_address_offset)            \
  X(SnapshotHeader, table_word_count) X(SnapshotHeader, table_offset)                       \
  X(SnapshotHeader, fullnat_port_min) X(SnapshotHeader, fullnat_port_max)                   \
  X(SnapshotHeader, tunnel_ttl) X(SnapshotHeader, icmp_rate_per_sec)

#define L4LB_SNAPSHOT_PORT_FIELDS(X)                                                   \
  X(SnapshotPort, mac) X(SnapshotPort, mtu) X(SnapshotPort, address)                   \
  X(SnapshotPort, prefix_length) X(SnapshotPort, flags)

#define L4LB_SNAPSHOT_SERVICE_FIELDS(X)                                                \
  X(SnapshotService, address) X(SnapshotService, port) X(SnapshotService, protocol)    \
  X(SnapshotService, method) X(SnapshotService, id) X(SnapshotService, scheduler)      \
  X(SnapshotService, flags) X(SnapshotService, backend_first)                          \
  X(SnapshotService, backend_count) X(SnapshotService, table_first)                    \
  X(SnapshotService, table_size) X(SnapshotService, persistence_timeout_ms)            \
  X(SnapshotService, gre_key)

#define L4LB_SNAPSHOT_BACKEND_FIELDS(X)                                                \
  X(SnapshotBackend, address) X(SnapshotBackend, port) X(SnapshotBackend, weight)      \
  X(SnapshotBackend, id) X(SnapshotBackend, flags) X(SnapshotBackend, egress_port)     \
  X(SnapshotBackend, next_hop_mac)

#define L4LB_SNAPSHOT_ROUTE_FIELDS(X)                                                  \
  X(SnapshotRoute, prefix) X(SnapshotRoute, prefix_length) X(SnapshotRoute, resolved)  \
  X(SnapshotRoute, egress_port) X(SnapshotRoute, gateway) X(SnapshotRoute, next_hop_mac)

// Named constants exported to TypeScript: X(name, value).
#define L4LB_LAYOUT_CONSTANTS(X)                                                       \
  X(snapshotMagic, kSnapshotMagic) X(snapshotLayoutVersion, kSnapshotLayoutVersion)    \
  X(none, kNone)                                                                       \
  X(snapshotDropBadChecksum, kSnapshotDropBadChecksum)                                 \
  X(snapshotDropWhenFlowTableFull, kSnapshotDropWhenFlowTableFull)                     \
  X(snapshotAnswerEcho, kSnapshotAnswerEcho)                                           \
  X(portAnswerArpForVips, kPortAnswerArpForVips)                                       \
  X(serviceDropIpOptions, kServiceDropIpOptions) X(servicePersistent, kServicePersistent) \
  X(serviceGreKey, kServiceGreKey) X(serviceRemoveResetsFlows, kServiceRemoveResetsFlows) \
  X(backendUp, kBackendUp) X(backendNextHopResolved, kBackendNextHopResolved)          \
  X(protocolTcp, static_cast<uint32_t>(Protocol::tcp))                                 \
  X(protocolUdp, static_cast<uint32_t>(Protocol::udp))                                 \
  X(methodNat, static_cast<uint32_t>(Method::nat))                                     \
  X(methodFullnat, static_cast<uint32_t>(Method::fullnat))                             \
  X(methodDr, static_cast<uint32_t>(Method::dr))                                       \
  X(methodIpip, static_cast<uint32_t>(Method::ipip))                                   \
  X(methodGre, static_cast<uint32_t>(Method::gre))                                     \
  X(schedulerRr, static_cast<uint32_t>(SchedulerKind::rr))                             \
  X(schedulerWrr, static_cast<uint32_t>(SchedulerKind::wrr))                           \
  X(schedulerLc, static_cast<uint32_t>(SchedulerKind::lc))                             \
  X(schedulerWlc, static_cast<uint32_t>(SchedulerKind::wlc))                           \
  X(schedulerSh, static_cast<uint32_t>(SchedulerKind::sh))                             \
  X(schedulerMaglev, static_cast<uint32_t>(SchedulerKind::maglev))                     \
  X(schedulerTable, static_cast<uint32_t>(SchedulerKind::table))

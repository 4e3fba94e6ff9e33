// Why the packet core dropped a frame. Each reason has a counter; the names
// are exported to TypeScript (stats().drops) through the addon, never
// duplicated there.
#pragma once

#include <cstddef>
#include <cstdint>

namespace l4lb::core {

// X(enumerator, "name in stats().drops")
#define L4LB_DROP_REASONS(X)                                                   \
  X(truncated, "truncated")                 /* a header runs past the bytes captured */ \
  X(bad_l2, "bad-l2")                       /* more than one VLAN tag, runt frame */    \
  X(bad_ip_header, "bad-ip-header")         /* IHL < 5, version mismatch */             \
  X(bad_ip_length, "bad-ip-length")         /* total length < header or > frame */      \
  X(bad_l4_header, "bad-l4-header")         /* TCP data offset < 5 or past the packet */ \
  X(bad_checksum, "bad-checksum")           /* policy 'drop' for a wrong checksum */    \
  X(ip_options, "ip-options")               /* service policy drops IPv4 options */     \
  X(ipv6_unsupported, "ipv6-unsupported")   /* IPv6 to a VIP: no IPv6 services yet */   \
  X(bad_ipv6_header, "bad-ipv6-header")     /* extension-header chain too long or cut */ \
  X(fragment, "fragment")                   /* non-first fragment of an untracked flow */ \
  X(ttl_expired, "ttl-expired")             /* routed hop would expire it */            \
  X(no_backend, "no-backend")               /* service has no usable backend */         \
  X(flow_table_full, "flow-table-full")     /* policy 'drop' when nothing evictable */  \
  X(no_local_port, "no-local-port")         /* fullnat source ports exhausted */        \
  X(too_big, "too-big")                     /* encapsulated size > MTU, DF clear or ICMP */ \
  X(no_route, "no-route")                   /* no next hop known for the destination */ \
  X(no_neighbour, "no-neighbour")           /* next hop's MAC not resolved yet */       \
  X(tx_full, "tx-full")                     /* the egress port refused the frame */     \
  X(unknown_flow, "unknown-flow")           /* a reply that matches no tracked flow */  \
  X(malformed_tunnel, "malformed-tunnel")   /* GRE/IPIP outer header invalid */         \
  X(reply_tuple_in_use, "reply-tuple-in-use") /* nat: another flow owns backend:port <- client:port */ \
  X(insert_contended, "insert-contended")   /* another worker kept the flow's buckets locked; nothing created */

enum class DropReason : uint8_t {
#define L4LB_DROP_ENUM(id, name) id,
  L4LB_DROP_REASONS(L4LB_DROP_ENUM)
#undef L4LB_DROP_ENUM
  count
};

inline constexpr const char* kDropReasonNames[] = {
#define L4LB_DROP_NAME(id, name) name,
    L4LB_DROP_REASONS(L4LB_DROP_NAME)
#undef L4LB_DROP_NAME
};

static_assert(sizeof(kDropReasonNames) / sizeof(kDropReasonNames[0]) ==
              static_cast<size_t>(DropReason::count));

}  // namespace l4lb::core

// Per-worker counters of the packet core. One writer (the worker that owns
// them); readers (stats) load each field relaxed and sum across workers, so
// a reader may see one counter a batch older than another, never a torn one.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/drop_reason.h"

namespace l4lb::core {

// X(field, "name exported to TypeScript")
#define L4LB_WORKER_COUNTERS(X)                                                   \
  X(rx_packets, "rxPackets")                                                      \
  X(rx_bytes, "rxBytes")                                                          \
  X(tx_packets, "txPackets")                                                      \
  X(tx_bytes, "txBytes")                                                          \
  X(passed, "passed")                           /* not for the balancer: left alone */ \
  X(forwarded, "forwarded")                     /* client -> backend */          \
  X(replies, "replies")                         /* backend -> client (nat, fullnat) */ \
  X(replies_ingress_path, "repliesIngressPath") /* reply left on the flow's ingress port + MAC */ \
  X(replies_routed, "repliesRouted")            /* no ingress path known: routing table used */ \
  X(replies_route_differs, "repliesRouteDiffers") /* ingress path used where routing would differ */ \
  X(replies_via_tunnel, "repliesViaTunnel")     /* dr/tunnel reply returned inside GRE/IPIP by the real server */ \
  X(replies_direct, "repliesDirect")            /* dr/tunnel reply from a VIP that reached the balancer unencapsulated */ \
  X(flows_created, "flowsCreated")                                                \
  X(flows_untracked, "flowsUntracked")          /* table full: scheduled without state */ \
  X(flows_reset, "flowsReset")                  /* backend removed: TCP reset sent */ \
  X(flows_ended_backend_removed, "flowsEndedBackendRemoved")                      \
  X(icmp_errors_translated, "icmpErrorsTranslated")                               \
  X(icmp_frag_needed_sent, "icmpFragNeededSent")                                  \
  X(icmp_rate_limited, "icmpRateLimited")                                         \
  X(echo_replies, "echoReplies")                                                  \
  X(arp_replies, "arpReplies")                                                    \
  X(bad_checksum_forwarded, "badChecksumForwarded") /* policy 'forward': left wrong */ \
  X(partial_checksums_completed, "partialChecksumsCompleted")                     \
  X(aggregates, "aggregates")                   /* GSO/GRO aggregates received (up to 64 KiB of one stream) */ \
  X(aggregates_segmented, "aggregatesSegmented") /* cut into segments here (egress cannot, or a tunnel) */ \
  X(batches, "batches")                                                           \
  X(idle_polls, "idlePolls")                                                      \
  X(wakeups, "wakeups")                         /* returns from sleep (adaptive polling) */ \
  X(expiry_ticks, "expiryTicks")                /* flow-expiry steps run (timer-driven) */ \
  X(busy_ns, "busyNs")                          /* time spent on non-empty batches */ \
  X(config_generation, "configGeneration")      /* generation this worker runs */

struct alignas(64) WorkerCounters {
#define L4LB_COUNTER_FIELD(field, name) std::atomic<uint64_t> field{0};
  L4LB_WORKER_COUNTERS(L4LB_COUNTER_FIELD)
#undef L4LB_COUNTER_FIELD
  std::atomic<uint64_t> drops[static_cast<size_t>(DropReason::count)]{};

  // Single writer: a relaxed load + store is an increment nobody else races.
  static void add(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void drop(DropReason reason) { add(drops[static_cast<size_t>(reason)]); }
};

// Per backend, per worker (indexed by the backend id's slot): what stats()
// reports per backend, split by direction as ipvsadm --stats shows it: In is
// client -> backend (as received), Out is backend -> client (replies that
// pass the balancer: nat and fullnat, and dr/tunnel replies returned through
// it). Active flows are kept apart, shared by all workers (they end on
// whichever worker expires them).
struct BackendCounters {
  std::atomic<uint64_t> packets_in{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> packets_out{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> flows_created{0};
};

// Per flow, for flow events (opt-in): indexed by the flow's forward slot in
// the flow table, and moved with it. Several workers add to one flow (its
// replies arrive on any worker), so the adds are atomic read-modify-writes
// (relaxed: counts order nothing). An add that races a move of the entry
// to another slot may be lost: the counts are exact for flows that are not
// moved while packets of theirs are in flight, which is nearly all.
struct FlowAccount {
  std::atomic<uint64_t> created_ms{0};  // low 32 bits: the flow's first packet
  std::atomic<uint64_t> packets_in{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> packets_out{0};
  std::atomic<uint64_t> bytes_out{0};
};

}  // namespace l4lb::core

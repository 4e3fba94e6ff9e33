// The statistics region: native-allocated memory that the workers write and
// TypeScript reads (an external ArrayBuffer, docs/shared-memory.md).
//
//   StatsRegionHeader                      what follows, where, how big
//   std::atomic<int32_t> active_flows[backend_slots]
//                                          every worker adds/subtracts (flow-table events)
//   per worker w, at block_offset + w * block_stride (one writer: worker w)
//     StatsBlockHeader
//     core::WorkerCounters                 at worker_counters_offset
//     core::FlowCounters                   at flow_counters_offset
//     core::BackendCounters[backend_slots] at backend_counters_offset
//   per worker w, at ring_offset + w * ring_stride
//     EventRingHeader                      single producer (worker w), single consumer (TypeScript)
//     EventRecord[capacity]                at records_offset
//   per worker w, at flow_ring_offset + w * flow_ring_stride (only with flow events)
//     EventRingHeader                      magic kFlowRingMagic, as above
//     FlowEventRecord[capacity]            at records_offset
//
// Every header carries a magic number, the layout version and its sizes;
// TypeScript checks them before it reads anything and refuses a mismatch.
// Offsets of the counter fields are exported by the addon (addon/layout.cc)
// from the lists below; TypeScript never writes an offset down.
//
// The only locations TypeScript writes are the event rings' `head` words.
// Native code reads a head once into a local and accepts it only when it
// lies between what was consumed before and what was produced (EventRing).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/counters.h"
#include "core/flow_table.h"

namespace l4lb::shm {

inline constexpr uint32_t kStatsRegionMagic = 0x5253344c;  // "L4SR" as little-endian bytes
inline constexpr uint32_t kStatsBlockMagic = 0x4253344c;   // "L4SB"
inline constexpr uint32_t kEventRingMagic = 0x5645344c;    // "L4EV"
inline constexpr uint32_t kFlowRingMagic = 0x4c46344c;     // "L4FL"
inline constexpr uint16_t kStatsLayoutVersion = 2;         // 2: In/Out backend counters, flow rings

struct StatsRegionHeader {
  uint32_t magic;                 // kStatsRegionMagic
  uint16_t layout_version;        // kStatsLayoutVersion
  uint16_t header_size;           // sizeof(StatsRegionHeader)
  uint32_t total_size;            // bytes of the whole region
  uint32_t worker_count;
  uint32_t backend_slots;         // entries of active_flows and of each block's backend counters
  uint32_t active_flows_offset;   // std::atomic<int32_t>[backend_slots], from the region start
  uint32_t block_offset;          // worker 0's StatsBlockHeader
  uint32_t block_stride;          // bytes from one worker's block to the next
  uint32_t ring_offset;           // worker 0's EventRingHeader
  uint32_t ring_stride;           // bytes from one worker's ring to the next
  uint32_t flow_ring_offset;      // worker 0's flow-event ring, 0 without flow events
  uint32_t flow_ring_stride;
  uint32_t pad0[4];               // zero
};
static_assert(sizeof(StatsRegionHeader) == 64);

// One writer each: the worker named in `worker`. Readers sum the blocks.
struct StatsBlockHeader {
  uint32_t magic;                    // kStatsBlockMagic
  uint16_t layout_version;           // kStatsLayoutVersion
  uint16_t header_size;              // sizeof(StatsBlockHeader)
  uint32_t block_size;               // bytes of the block, header included
  uint32_t worker;                   // index of the writing worker
  uint32_t worker_counters_offset;   // core::WorkerCounters, from the block start
  uint32_t worker_counters_size;
  uint32_t flow_counters_offset;     // core::FlowCounters
  uint32_t flow_counters_size;
  uint32_t backend_counters_offset;  // core::BackendCounters[backend_slots]
  uint32_t backend_counters_stride;  // sizeof(core::BackendCounters)
  uint32_t backend_slots;
  uint32_t drop_reason_count;        // entries of WorkerCounters::drops
  uint32_t pad0[4];                  // zero
};
static_assert(sizeof(StatsBlockHeader) == 64);

// What a worker reports through its event ring: rate-limited data-plane
// signals. X(enumerator, "name exported to TypeScript").
#define L4LB_EVENT_KINDS(X)                                                           \
  X(flow_table_full, "flow-table-full")   /* new flows dropped: nothing evictable */ \
  X(no_neighbour, "no-neighbour")         /* frames dropped: next hop unresolved */  \
  X(no_route, "no-route")                 /* frames dropped: no route */             \
  X(no_local_port, "no-local-port")       /* fullnat source ports exhausted */       \
  X(tx_full, "tx-full")                   /* an egress port refused frames */        \
  X(port_error, "port-error")             /* a port reported an error (detail: errno) */

enum class EventKind : uint16_t {
#define L4LB_EVENT_ENUM(id, name) id,
  L4LB_EVENT_KINDS(L4LB_EVENT_ENUM)
#undef L4LB_EVENT_ENUM
  count
};

inline constexpr const char* kEventKindNames[] = {
#define L4LB_EVENT_NAME(id, name) name,
    L4LB_EVENT_KINDS(L4LB_EVENT_NAME)
#undef L4LB_EVENT_NAME
};
static_assert(sizeof(kEventKindNames) / sizeof(kEventKindNames[0]) == static_cast<size_t>(EventKind::count));

struct EventRecord {
  uint16_t kind;                  // EventKind
  uint16_t pad0;                  // zero
  uint32_t worker;                // the producing worker
  uint64_t time_ns;               // CLOCK_MONOTONIC (manual mode: the caller's clock)
  uint64_t count;                 // occurrences since the previous record of this kind
  uint64_t detail;                // kind-specific: the counter's running total, or an errno
};
static_assert(sizeof(EventRecord) == 32);

// A flow created or ended (flow events, opt-in): bounded and lossy by
// design, a full ring counts the record in `lost` and drops it.
enum class FlowEventKind : uint8_t { created = 0, ended = 1 };

struct FlowEventRecord {
  uint8_t kind;                   // FlowEventKind
  uint8_t reason;                 // ended: core::FlowEndReason
  uint8_t protocol;               // IP protocol number
  uint8_t family;                 // 4 or 6
  uint32_t worker;                // the producing worker
  uint64_t time_ns;               // when written: CLOCK_MONOTONIC (manual mode: the caller's clock)
  uint32_t backend_id;            // slot | generation << 16
  uint32_t duration_ms;           // ended: from the first packet to the last (created: 0)
  uint8_t src_addr[16];           // the client, network order (IPv4: bytes 0..3)
  uint8_t dst_addr[16];           // the VIP, network order
  uint16_t src_port;              // host order
  uint16_t dst_port;              // host order
  uint32_t pad0;                  // zero
  uint64_t packets_in;            // ended: client -> backend, as received
  uint64_t bytes_in;
  uint64_t packets_out;           // ended: replies through the balancer
  uint64_t bytes_out;
};
static_assert(sizeof(FlowEventRecord) == 96);

// Single producer (the worker), single consumer (TypeScript). Producer and
// consumer indexes live on separate cache lines. Both indexes count records
// from 0 and wrap at 2^32; slot = index & (capacity - 1).
struct EventRingHeader {
  // Immutable after creation.
  uint32_t magic;                 // kEventRingMagic
  uint16_t layout_version;        // kStatsLayoutVersion
  uint16_t header_size;           // sizeof(EventRingHeader)
  uint32_t ring_size;             // bytes of header + records
  uint32_t capacity;              // records, a power of two
  uint32_t record_size;           // sizeof(EventRecord)
  uint32_t records_offset;        // from the ring start
  uint32_t worker;                // the producing worker
  uint32_t pad0[9];               // zero
  // Written by the producer only. Release store after the record's bytes;
  // the consumer's Atomics.load of tail pairs with it.
  alignas(64) std::atomic<uint32_t> tail;
  // Records the producer could not publish because the ring was full.
  // Relaxed: a statistic, it orders nothing.
  std::atomic<uint32_t> lost;
  uint32_t pad1[14];              // zero
  // Written by the consumer only (Atomics.store, sequentially consistent,
  // after it has read the records). The producer's acquire load pairs with
  // it: a slot is overwritten only after the consumer has finished with it.
  alignas(64) std::atomic<uint32_t> head;
  uint32_t pad2[15];              // zero
};
static_assert(sizeof(EventRingHeader) == 192);
static_assert(std::is_standard_layout_v<EventRingHeader>);

// The counter structs are shared as they are: each field a lock-free 64-bit
// atomic with the representation of a plain uint64_t (TypeScript reads them
// with Atomics.load on a BigUint64Array).
static_assert(std::atomic<uint64_t>::is_always_lock_free && sizeof(std::atomic<uint64_t>) == 8);
static_assert(std::atomic<uint32_t>::is_always_lock_free && sizeof(std::atomic<uint32_t>) == 4);
static_assert(std::atomic<int32_t>::is_always_lock_free && sizeof(std::atomic<int32_t>) == 4);
static_assert(std::is_standard_layout_v<core::WorkerCounters>);
static_assert(std::is_standard_layout_v<core::FlowCounters>);
static_assert(std::is_standard_layout_v<core::BackendCounters>);

// Flow-table counters exported to TypeScript: X(field, "name"). The struct is
// declared in core/flow_table.h; the assertion below fails when a field is
// added after `removed` without being listed here.
#define L4LB_FLOW_COUNTERS(X)                                                   \
  X(lookup_hits, "lookupHits") X(lookup_misses, "lookupMisses")                 \
  X(inserts, "inserts") X(insert_exists, "insertExists")                        \
  X(insert_reverse_exists, "insertReverseExists")                               \
  X(evictions_half_open, "evictionsHalfOpen")                                   \
  X(evictions_expired, "evictionsExpired")                                      \
  X(insert_failed_full, "insertFailedFull")                                     \
  X(insert_contended, "insertContended")                                        \
  X(expired, "expired") X(removed, "removed")

#define L4LB_COUNT_FLOW_COUNTER_BYTES(field, name) +sizeof(core::FlowCounters::field)
inline constexpr size_t kListedFlowCounterBytes = 0 L4LB_FLOW_COUNTERS(L4LB_COUNT_FLOW_COUNTER_BYTES);
#undef L4LB_COUNT_FLOW_COUNTER_BYTES
static_assert(kListedFlowCounterBytes == offsetof(core::FlowCounters, removed) + sizeof(core::FlowCounters::removed),
              "every FlowCounters field must be listed in L4LB_FLOW_COUNTERS");

#define L4LB_BACKEND_COUNTERS(X)                                                     \
  X(packets_in, "inPackets") X(bytes_in, "inBytes") X(packets_out, "outPackets")     \
  X(bytes_out, "outBytes") X(flows_created, "flowsCreated")

}  // namespace l4lb::shm

// Field lists for export to TypeScript: X(struct, field).
#define L4LB_STATS_REGION_FIELDS(X)                                                               \
  X(StatsRegionHeader, magic) X(StatsRegionHeader, layout_version) X(StatsRegionHeader, header_size) \
  X(StatsRegionHeader, total_size) X(StatsRegionHeader, worker_count)                             \
  X(StatsRegionHeader, backend_slots) X(StatsRegionHeader, active_flows_offset)                   \
  X(StatsRegionHeader, block_offset) X(StatsRegionHeader, block_stride)                           \
  X(StatsRegionHeader, ring_offset) X(StatsRegionHeader, ring_stride)                             \
  X(StatsRegionHeader, flow_ring_offset) X(StatsRegionHeader, flow_ring_stride)

#define L4LB_STATS_BLOCK_FIELDS(X)                                                                \
  X(StatsBlockHeader, magic) X(StatsBlockHeader, layout_version) X(StatsBlockHeader, header_size)  \
  X(StatsBlockHeader, block_size) X(StatsBlockHeader, worker)                                     \
  X(StatsBlockHeader, worker_counters_offset) X(StatsBlockHeader, worker_counters_size)           \
  X(StatsBlockHeader, flow_counters_offset) X(StatsBlockHeader, flow_counters_size)               \
  X(StatsBlockHeader, backend_counters_offset) X(StatsBlockHeader, backend_counters_stride)       \
  X(StatsBlockHeader, backend_slots) X(StatsBlockHeader, drop_reason_count)

#define L4LB_EVENT_RING_FIELDS(X)                                                                 \
  X(EventRingHeader, magic) X(EventRingHeader, layout_version) X(EventRingHeader, header_size)     \
  X(EventRingHeader, ring_size) X(EventRingHeader, capacity) X(EventRingHeader, record_size)       \
  X(EventRingHeader, records_offset) X(EventRingHeader, worker) X(EventRingHeader, tail)           \
  X(EventRingHeader, lost) X(EventRingHeader, head)

#define L4LB_EVENT_RECORD_FIELDS(X)                                                               \
  X(EventRecord, kind) X(EventRecord, worker) X(EventRecord, time_ns) X(EventRecord, count)        \
  X(EventRecord, detail)

#define L4LB_FLOW_EVENT_RECORD_FIELDS(X)                                                          \
  X(FlowEventRecord, kind) X(FlowEventRecord, reason) X(FlowEventRecord, protocol)                 \
  X(FlowEventRecord, family) X(FlowEventRecord, worker) X(FlowEventRecord, time_ns)                \
  X(FlowEventRecord, backend_id) X(FlowEventRecord, duration_ms) X(FlowEventRecord, src_addr)      \
  X(FlowEventRecord, dst_addr) X(FlowEventRecord, src_port) X(FlowEventRecord, dst_port)           \
  X(FlowEventRecord, packets_in) X(FlowEventRecord, bytes_in) X(FlowEventRecord, packets_out)      \
  X(FlowEventRecord, bytes_out)

#define L4LB_STATS_CONSTANTS(X)                                                                   \
  X(statsRegionMagic, kStatsRegionMagic) X(statsBlockMagic, kStatsBlockMagic)                     \
  X(eventRingMagic, kEventRingMagic) X(flowRingMagic, kFlowRingMagic)                             \
  X(statsLayoutVersion, kStatsLayoutVersion)

// One engine step: a received frame, the configuration in force and the flow
// table in; frames to transmit out (the received frame rewritten in place, or
// a frame the balancer creates: ARP and echo replies, ICMP fragmentation
// needed, TCP resets). No syscalls, no allocation, no locks: a Forwarder is
// owned by one worker and touches only its own counters, the shared flow
// table (lock-free) and the read-only configuration.
//
// The rules, in the order they apply to an IPv4 frame:
//  1. Malformed (parse error): dropped, counted by reason.
//  2. To a VIP:
//     - TCP/UDP to a service: tracked flow -> its backend; new flow ->
//       persistence template or scheduler; forwarded by the service's method.
//     - TCP/UDP to a VIP port without a service, non-first fragments, IPv6:
//       left alone (passed), except later fragments of TCP/UDP to a service
//       address, which are dropped ('fragment': the balancer cannot see their
//       ports and does not reassemble).
//     - ICMP echo request: answered when the snapshot says so (default), from
//       the VIP, back to the neighbour that sent it.
//     - ICMP error quoting a tracked flow (a router's "fragmentation needed"
//       about a reply): sent to that flow's backend, translated for nat and
//       fullnat (outer and quoted headers, all checksums).
//  3. Not to a VIP: a reply of a tracked nat/fullnat flow (or an ICMP error
//     about one) is translated back and sent on the flow's ingress path: the
//     port and the next-hop MAC its first packet came from (path symmetry).
//     Anything else is left alone.
//     Replies of dr and tunnel flows normally bypass the balancer. When a
//     real server returns them inside GRE/IPIP to a port's own address
//     (path symmetry for tunnels), or routes them through the balancer
//     unencapsulated, they too are sent on the flow's ingress path, TTL - 1
//     (repliesViaTunnel, repliesDirect).
//  4. ARP requests for a VIP or a fullnat local address on a port that
//     answers ARP: answered with the port's MAC.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/counters.h"
#include "core/flow_table.h"
#include "core/frame.h"
#include "core/parse.h"

namespace l4lb::core {

class RuntimeConfig;

inline constexpr uint32_t kMaxBurst = 64;

// Frames to transmit, one queue per egress port, filled as frames are
// forwarded (no rescan of the burst per port). A full queue is handed to the
// transmit callback at once; the rest at the end of the burst (flush_all).
// The callback takes every frame it is given over (io::Port::tx_burst).
class TxQueues {
 public:
  using Transmit = void (*)(void* context, uint16_t port, Frame* frames, uint32_t count);
  static constexpr uint32_t kDepth = kMaxBurst * 2;

  TxQueues(uint32_t ports, Transmit transmit, void* context);

  // False (nothing queued) when frame.egress_port names no port.
  bool push(const Frame& frame) {
    if (frame.egress_port >= queues_.size()) [[unlikely]] return false;
    Queue& queue = queues_[frame.egress_port];
    queue.frames[queue.count++] = frame;
    if (queue.count == kDepth) [[unlikely]] flush(frame.egress_port);
    return true;
  }
  void flush_all() {
    for (uint16_t port = 0; port < queues_.size(); ++port) {
      if (queues_[port].count != 0) flush(port);
    }
  }
  uint32_t port_count() const { return static_cast<uint32_t>(queues_.size()); }

 private:
  struct Queue {
    Frame frames[kDepth];
    uint32_t count = 0;
  };
  void flush(uint16_t port) {
    Queue& queue = queues_[port];
    const uint32_t count = queue.count;
    queue.count = 0;
    transmit_(context_, port, queue.frames, count);
  }

  std::vector<Queue> queues_;
  Transmit transmit_;
  void* context_;
};

// What a port's transmit path offloads, as the core needs to know it
// (io::PortCapabilities, without the io layer).
struct EgressOffloads {
  bool checksum = false;      // sends kFrameChecksumPartial frames
  bool segmentation = false;  // sends aggregates (gso_type), cut by the kernel or NIC
};

struct ForwarderResources {
  FlowTable* flows = nullptr;
  WorkerCounters* counters = nullptr;
  FlowCounters* flow_counters = nullptr;
  BackendCounters* backend_counters = nullptr;  // this worker's array, indexed by backend slot
  uint32_t backend_slots = 0;                   // its length
  // Active flows per backend slot, shared by all workers and kept by the
  // flow table's events (lc and wlc read them).
  const std::atomic<int32_t>* active_flows = nullptr;
  uint32_t worker_index = 0;
  uint32_t worker_count = 1;
  // Flow events: per-flow counts by forward slot (null: not kept).
  FlowAccount* flow_accounts = nullptr;
  size_t flow_account_count = 0;
  // Per engine port (the snapshot's port index): what its transmit path
  // offloads. Missing entries offload nothing.
  std::vector<EgressOffloads> egress_offloads;
};

class Forwarder {
 public:
  explicit Forwarder(const ForwarderResources& resources);
  ~Forwarder();

  // Switches configuration (at a batch boundary). `config` outlives its use;
  // the previous one is still alive during the call (the engine frees it only
  // after this worker reported the new generation).
  void set_config(const RuntimeConfig* config);
  const RuntimeConfig* config() const { return config_; }

  // Call once per burst before process(): recycles scratch buffers for
  // frames the balancer creates (the previous burst's queues are flushed).
  void begin_batch(uint64_t now_ns);

  // Processes a burst of received frames in place: parses them all, hashes
  // and prefetches their flows, then forwards each. Every frame is taken
  // over: queued on `tx` (rewritten, or cut into segments) or released.
  // Frames the balancer creates (ARP and echo replies, ICMP errors, resets)
  // are queued too. The caller flushes `tx` afterwards.
  void process_burst(Frame* frames, uint32_t count, TxQueues& tx);

  // One frame (tests, fuzzing): process_burst of one.
  void process(Frame& frame, TxQueues& tx) { process_burst(&frame, 1, tx); }

 private:
  struct Scratch;
  class ScratchSegments;

  void process_parsed(Frame& frame, PacketInfo& info, const ParseStatus& status, TxQueues& tx);
  void drop(DropReason reason);
  void pass();
  // Queues the frame being processed (rewritten in place) on `egress_port`.
  // An aggregate leaves with its metadata where the port can cut it, or is
  // cut here first.
  void send(Frame& frame, PacketInfo& info, uint16_t egress_port, TxQueues& tx);
  // Queues a frame the balancer built (no aggregate, checksums complete).
  void send_created(Frame& frame, uint16_t egress_port, TxQueues& tx);
  void send_segments(Frame& aggregate, PacketInfo& info, uint16_t egress_port, TxQueues& tx);
  void handle_arp(Frame& frame, PacketInfo& info, TxQueues& tx);
  void handle_to_vip(Frame& frame, PacketInfo& info, TxQueues& tx);
  void handle_icmp_to_vip(Frame& frame, PacketInfo& info, TxQueues& tx);
  bool handle_reply(Frame& frame, PacketInfo& info, TxQueues& tx);
  void handle_tunnel_return(Frame& frame, PacketInfo& info, TxQueues& tx);
  bool forward_reply_from_vip(Frame& frame, PacketInfo& info, TxQueues& tx);
  // Looks `key` up; true when it names a tracked flow through the key
  // `matched` (original: client -> VIP; reply: the backend's tuple). Records
  // the packet as a reply (TCP state, last seen).
  bool track_reply(const PacketInfo& info, const FlowKey& key, uint64_t hash, FlowDirection matched, Flow* flow);
  bool handle_icmp_from_backend(Frame& frame, PacketInfo& info, TxQueues& tx);
  void forward_to_backend(Frame& frame, PacketInfo& info, uint32_t service_index, uint32_t backend_index,
                          const Flow* flow, TxQueues& tx);
  void forward_segments_to_backend(Frame& aggregate, PacketInfo& info, uint32_t service_index, uint32_t backend_index,
                                   const Flow* flow, uint32_t payload_per_segment, TxQueues& tx);
  void send_reply_on_ingress_path(Frame& frame, PacketInfo& info, const Flow& flow, TxQueues& tx);
  // Per-backend In (client -> backend) or Out (reply) packets and bytes.
  void count_for_backend(uint32_t backend_id, FlowDirection direction, uint32_t bytes);
  // The flow's own In/Out counts (flow events only).
  void count_for_flow(const Flow* flow, FlowDirection direction, uint32_t bytes) {
    if (res_.flow_accounts == nullptr || flow == nullptr) [[likely]] return;
    if (flow->handle.slot >= res_.flow_account_count) return;
    FlowAccount& account = res_.flow_accounts[flow->handle.slot];
    std::atomic<uint64_t>& packets = direction == FlowDirection::original ? account.packets_in : account.packets_out;
    std::atomic<uint64_t>& bytes_counter = direction == FlowDirection::original ? account.bytes_in : account.bytes_out;
    packets.fetch_add(1, std::memory_order_relaxed);
    bytes_counter.fetch_add(bytes, std::memory_order_relaxed);
  }
  void end_flow_of_removed_backend(Frame& frame, PacketInfo& info, const Flow& flow, bool reset, TxQueues& tx);
  bool icmp_token();
  uint8_t* scratch_frame(uint32_t* capacity, uint32_t* headroom);
  uint32_t scratch_left() const;
  EgressOffloads offloads_of(uint16_t port) const {
    return port < res_.egress_offloads.size() ? res_.egress_offloads[port] : EgressOffloads{};
  }

  ForwarderResources res_;
  std::unique_ptr<Scratch> scratch_;
  const RuntimeConfig* config_ = nullptr;
  uint64_t now_ns_ = 0;
  uint64_t now_ms_ = 0;
  // IPv4 identification of headers the balancer creates. Workers use
  // disjoint residues (index, index + workers, ...), so two workers never
  // give the same id to packets between the same addresses (RFC 6864 §4).
  uint16_t next_ip_id_ = 0;
  uint16_t take_ip_id() {
    const uint16_t id = next_ip_id_;
    next_ip_id_ = static_cast<uint16_t>(next_ip_id_ + res_.worker_count);
    return id;
  }
  uint32_t scratch_used_ = 0;
  // Whether the frame being processed was queued or released already (by a
  // send, or by being cut into segments); otherwise process_burst releases it.
  bool frame_consumed_ = false;
  // The keyed hash of the frame's own 5-tuple (source -> destination as on
  // the wire), computed for the whole burst before the first lookup; valid
  // when has_wire_hash_.
  uint64_t wire_hash_ = 0;
  bool has_wire_hash_ = false;
  // ICMP errors the balancer creates are rate limited per worker (token
  // bucket refilled each second), as routers do (RFC 1812 §4.3.2.8).
  uint64_t icmp_window_start_ms_ = 0;
  uint32_t icmp_sent_in_window_ = 0;
};

}  // namespace l4lb::core

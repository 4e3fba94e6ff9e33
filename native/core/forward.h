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

#include "core/counters.h"
#include "core/flow_table.h"
#include "core/frame.h"
#include "core/parse.h"

namespace l4lb::core {

class RuntimeConfig;

inline constexpr uint32_t kMaxBurst = 64;

// Frames to transmit at the end of a batch, each with Frame::egress_port set.
struct TxBatch {
  Frame frames[kMaxBurst * 2];
  uint32_t count = 0;

  bool push(const Frame& frame) {
    if (count == sizeof(frames) / sizeof(frames[0])) return false;
    frames[count++] = frame;
    return true;
  }
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

  // Call once per batch before process(): recycles scratch buffers for frames
  // the balancer creates.
  void begin_batch(uint64_t now_ns);

  // Processes one received frame in place; appends what must leave to `tx`.
  void process(Frame& frame, TxBatch& tx);

 private:
  struct Scratch;

  void drop(DropReason reason);
  void send(Frame& frame, uint16_t egress_port, TxBatch& tx);
  void handle_arp(Frame& frame, const PacketInfo& info, TxBatch& tx);
  void handle_to_vip(Frame& frame, PacketInfo& info, TxBatch& tx);
  void handle_icmp_to_vip(Frame& frame, PacketInfo& info, TxBatch& tx);
  bool handle_reply(Frame& frame, PacketInfo& info, TxBatch& tx);
  void handle_tunnel_return(Frame& frame, PacketInfo& info, TxBatch& tx);
  bool forward_reply_from_vip(Frame& frame, PacketInfo& info, TxBatch& tx);
  // Looks `key` up; true when it names a tracked flow through the key
  // `matched` (original: client -> VIP; reply: the backend's tuple). Records
  // the packet as a reply (TCP state, last seen).
  bool track_reply(const PacketInfo& info, const FlowKey& key, FlowDirection matched, Flow* flow);
  bool handle_icmp_from_backend(Frame& frame, PacketInfo& info, TxBatch& tx);
  void forward_to_backend(Frame& frame, PacketInfo& info, uint32_t service_index, uint32_t backend_index,
                          const Flow* flow, TxBatch& tx);
  void send_reply_on_ingress_path(Frame& frame, PacketInfo& info, const Flow& flow, TxBatch& tx);
  void end_flow_of_removed_backend(Frame& frame, PacketInfo& info, const Flow& flow, bool reset, TxBatch& tx);
  bool icmp_token();
  uint8_t* scratch_frame(uint32_t* capacity, uint32_t* headroom);

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
  // ICMP errors the balancer creates are rate limited per worker (token
  // bucket refilled each second), as routers do (RFC 1812 §4.3.2.8).
  uint64_t icmp_window_start_ms_ = 0;
  uint32_t icmp_sent_in_window_ = 0;
};

}  // namespace l4lb::core

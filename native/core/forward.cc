#include "core/forward.h"

#include <cstring>

#include "core/checksum.h"
#include "core/rewrite.h"
#include "core/segment.h"
#include "core/runtime_config.h"
#include "core/wire.h"

namespace l4lb::core {

using shm::Method;
using shm::SnapshotBackend;
using shm::SnapshotPort;
using shm::SnapshotService;

namespace {

#define L4LB_LIKELY(x) __builtin_expect(!!(x), 1)
#define L4LB_UNLIKELY(x) __builtin_expect(!!(x), 0)

// Frames the balancer creates itself (ICMP errors, and the segments of
// aggregates a port cannot send whole) are built here, one burst at a time.
// Enough for the segments of one 64 KiB aggregate at a 1280-byte MTU, each
// up to a jumbo frame.
constexpr uint32_t kScratchFrames = 64;
constexpr uint32_t kScratchHeadroom = 64;
constexpr uint32_t kScratchFrameSize = kScratchHeadroom + 9216;

MacAddress mac_of(const uint8_t bytes[6]) {
  MacAddress mac;
  std::memcpy(mac.bytes, bytes, 6);
  return mac;
}

MacAddress frame_src_mac(const Frame& frame) {
  MacAddress mac;
  std::memcpy(mac.bytes, frame.data + wire::kEthSrc, 6);
  return mac;
}

bool is_tcp_or_udp(uint8_t protocol) { return protocol == wire::kProtoTcp || protocol == wire::kProtoUdp; }

FlowState state_for_new_flow(const PacketInfo& info) { return initial_flow_state(info.ip_protocol, info.tcp_flags); }

// Full checksum of the L4 segment with its pseudo-header: for the headers
// the balancer creates (TCP resets) and for the 'drop' checksum policy.
uint16_t l4_checksum(const uint8_t* frame, const PacketInfo& info) {
  uint8_t pseudo[12];
  store_be32(pseudo, info.src_addr);
  store_be32(pseudo + 4, info.dst_addr);
  pseudo[8] = 0;
  pseudo[9] = info.ip_protocol;
  store_be16(pseudo + 10, info.l4_len);
  uint32_t sum = checksum_partial(pseudo, sizeof(pseudo));
  return checksum_finish(checksum_partial(frame + info.l4_offset, info.l4_len, sum));
}

// Whether the checksums of an arriving packet verify (IPv4 header, and the
// TCP/UDP checksum when the whole segment is present). Partial checksums
// were completed before this runs.
bool checksums_verify(const uint8_t* frame, const PacketInfo& info) {
  if (!info.has(kPacketIpChecksumOk)) return false;
  if (!info.has(kPacketL4) || info.has(kPacketFragment)) return true;
  if (info.ip_protocol == wire::kProtoUdp && load_be16(frame + info.l4_offset + 6) == 0) return true;
  if (is_tcp_or_udp(info.ip_protocol)) return l4_checksum(frame, info) == 0;
  return true;
}

}  // namespace

struct Forwarder::Scratch {
  alignas(64) uint8_t frames[kScratchFrames][kScratchFrameSize];
};

Forwarder::Forwarder(const ForwarderResources& resources)
    : res_(resources), scratch_(std::make_unique<Scratch>()), next_ip_id_(static_cast<uint16_t>(resources.worker_index)) {
  if (res_.worker_count == 0) res_.worker_count = 1;
}

Forwarder::~Forwarder() = default;

void Forwarder::set_config(const RuntimeConfig* config) {
  if (config != nullptr && config_ != nullptr) config->inherit_pick_states(*config_, res_.worker_index);
  config_ = config;
}

void Forwarder::begin_batch(uint64_t now_ns) {
  now_ns_ = now_ns;
  now_ms_ = now_ns / 1'000'000;
  scratch_used_ = 0;
}

TxQueues::TxQueues(uint32_t ports, Transmit transmit, void* context)
    : queues_(ports), transmit_(transmit), context_(context) {}

void Forwarder::drop(DropReason reason) { res_.counters->drop(reason); }

void Forwarder::pass() { WorkerCounters::add(res_.counters->passed); }

void Forwarder::send_created(Frame& frame, uint16_t egress_port, TxQueues& tx) {
  frame.egress_port = egress_port;
  if (L4LB_UNLIKELY(!tx.push(frame))) drop(DropReason::tx_full);
}

void Forwarder::send(Frame& frame, PacketInfo& info, uint16_t egress_port, TxQueues& tx) {
  frame_consumed_ = true;
  frame.egress_port = egress_port;
  if (L4LB_UNLIKELY(frame.is_aggregate())) {
    if (!offloads_of(egress_port).segmentation) {
      send_segments(frame, info, egress_port, tx);
      return;
    }
    // The kernel (or NIC) cuts it; its segments must still fit the egress
    // link, which may be narrower than the one the aggregate came from.
    const uint32_t fits = segment_payload_for_mtu(frame, ip_and_l4_header_len(frame.data, info),
                                                  config_->view().ports[egress_port].mtu, 0);
    if (fits == 0) {
      drop(DropReason::too_big);
      release_frames(&frame, 1);
      return;
    }
    frame.gso_size = static_cast<uint16_t>(fits);
    prepare_aggregate_for_offload(&frame, info);
  }
  if (L4LB_UNLIKELY(!tx.push(frame))) {
    drop(DropReason::tx_full);
    release_frames(&frame, 1);
  }
}

// Segments come from the scratch area; should it run short, the queues are
// flushed first (ports copy scratch frames as they send them), so one
// aggregate's segments always fit.
class Forwarder::ScratchSegments final : public SegmentBuffers {
 public:
  explicit ScratchSegments(Forwarder& forwarder) : forwarder_(forwarder) {}
  uint8_t* next(uint32_t* capacity, uint32_t* headroom) override { return forwarder_.scratch_frame(capacity, headroom); }

 private:
  Forwarder& forwarder_;
};

void Forwarder::send_segments(Frame& aggregate, PacketInfo& info, uint16_t egress_port, TxQueues& tx) {
  const uint32_t payload = segment_payload_for_mtu(aggregate, ip_and_l4_header_len(aggregate.data, info),
                                                   config_->view().ports[egress_port].mtu, 0);
  Frame segments[kScratchFrames];
  uint32_t written = 0;
  const uint32_t needed = payload != 0 ? segment_count(aggregate, info, payload) : 0;
  if (payload != 0 && needed <= kScratchFrames) {
    if (scratch_left() < needed) {
      tx.flush_all();
      scratch_used_ = 0;
    }
    ScratchSegments buffers(*this);
    written = segment_aggregate(aggregate, info, payload, buffers, segments, kScratchFrames);
  }
  if (written == 0) drop(DropReason::too_big);
  WorkerCounters::add(res_.counters->aggregates_segmented);
  for (uint32_t i = 0; i < written; ++i) send_created(segments[i], egress_port, tx);
  release_frames(&aggregate, 1);
}

uint8_t* Forwarder::scratch_frame(uint32_t* capacity, uint32_t* headroom) {
  if (scratch_used_ == kScratchFrames) return nullptr;
  *capacity = kScratchFrameSize - kScratchHeadroom;
  *headroom = kScratchHeadroom;
  return scratch_->frames[scratch_used_++] + kScratchHeadroom;
}

uint32_t Forwarder::scratch_left() const { return kScratchFrames - scratch_used_; }

bool Forwarder::icmp_token() {
  const uint32_t rate = config_->view().header->icmp_rate_per_sec;
  if (now_ms_ - icmp_window_start_ms_ >= 1000) {
    icmp_window_start_ms_ = now_ms_;
    icmp_sent_in_window_ = 0;
  }
  if (icmp_sent_in_window_ >= rate) {
    WorkerCounters::add(res_.counters->icmp_rate_limited);
    return false;
  }
  ++icmp_sent_in_window_;
  return true;
}

void Forwarder::process_burst(Frame* frames, uint32_t count, TxQueues& tx) {
  if (L4LB_UNLIKELY(config_ == nullptr)) {
    // No configuration yet: nothing is the balancer's.
    WorkerCounters::add(res_.counters->rx_packets, count);
    WorkerCounters::add(res_.counters->passed, count);
    release_frames(frames, count);
    return;
  }
  FlowTable& flows = *res_.flows;
  PacketInfo infos[kMaxBurst];
  ParseStatus statuses[kMaxBurst];
  uint64_t hashes[kMaxBurst];
  bool hashed[kMaxBurst];
  for (uint32_t start = 0; start < count; start += kMaxBurst) {
    const uint32_t n = count - start < kMaxBurst ? count - start : kMaxBurst;
    Frame* burst = frames + start;
    // As DPDK's l2fwd: touch every frame's headers, then hash every flow
    // and pull its buckets in, so that the lookups below find them cached.
    for (uint32_t i = 0; i < n; ++i) __builtin_prefetch(burst[i].data);
    for (uint32_t i = 0; i < n; ++i) {
      PacketInfo& info = infos[i];
      statuses[i] = parse_frame(burst[i].data, burst[i].len, &info);
      hashed[i] = statuses[i].is_ok() && info.ip_version == 4 && is_tcp_or_udp(info.ip_protocol) &&
                  !info.has(kPacketLaterFragment);
      if (hashed[i]) {
        // The tuple as on the wire: the key of a client's packet to a VIP,
        // and of a backend's reply (its flow's reply entry).
        hashes[i] = flows.hash(FlowKey::ipv4(info.ip_protocol, info.src_addr, info.src_port, info.dst_addr, info.dst_port));
        flows.prefetch(hashes[i]);
      }
    }
    for (uint32_t i = 0; i < n; ++i) {
      wire_hash_ = hashes[i];
      has_wire_hash_ = hashed[i];
      process_parsed(burst[i], infos[i], statuses[i], tx);
    }
  }
  has_wire_hash_ = false;
}

void Forwarder::process_parsed(Frame& frame, PacketInfo& info, const ParseStatus& status, TxQueues& tx) {
  WorkerCounters& counters = *res_.counters;
  WorkerCounters::add(counters.rx_packets);
  WorkerCounters::add(counters.rx_bytes, frame.len);
  frame_consumed_ = false;

  if (L4LB_UNLIKELY(status.outcome == ParseOutcome::drop)) {
    drop(status.reason);
  } else if (status.outcome == ParseOutcome::not_ip) {
    if (info.ether_type == wire::kEtherTypeArp) {
      handle_arp(frame, info, tx);
    } else {
      pass();
    }
  } else if (info.ip_version != 4) {
    // IPv6 services come later; until then IPv6 is never ours.
    pass();
  } else {
    if (L4LB_UNLIKELY(frame.is_aggregate())) {
      // Its checksum field is the stack's partial sum (or GRO's first
      // segment's): it is written afresh when the aggregate leaves.
      WorkerCounters::add(counters.aggregates);
    } else if (frame.flags & kFrameChecksumPartial) {
      if (complete_partial_checksum(&frame, info)) WorkerCounters::add(counters.partial_checksums_completed);
    }
    if (config_->view().is_vip(info.dst_addr)) {
      handle_to_vip(frame, info, tx);
    } else if ((info.ip_protocol == wire::kProtoGre || info.ip_protocol == wire::kProtoIpip) &&
               config_->view().is_port_address(info.dst_addr)) {
      handle_tunnel_return(frame, info, tx);
    } else if (config_->view().is_vip(info.src_addr) && forward_reply_from_vip(frame, info, tx)) {
      WorkerCounters::add(counters.replies_direct);
    } else if (!handle_reply(frame, info, tx)) {
      pass();
    }
  }
  // Dropped or passed (an AF_PACKET socket only taps: the kernel has its own copy).
  if (!frame_consumed_) release_frames(&frame, 1);
}

// ---- dr / tunnel replies that come back through the balancer ------------------------

void Forwarder::handle_tunnel_return(Frame& frame, PacketInfo& info, TxQueues& tx) {
  const ParseStatus status = decapsulate(&frame, &info);
  if (!status.is_ok()) {
    drop(status.outcome == ParseOutcome::drop ? status.reason : DropReason::malformed_tunnel);
    return;
  }
  if (info.ip_version != 4 || !config_->view().is_vip(info.src_addr) || !forward_reply_from_vip(frame, info, tx)) {
    // Only replies from a VIP of a tracked flow are relayed: anything else
    // inside a tunnel to the balancer is not ours to forward.
    drop(DropReason::unknown_flow);
    return;
  }
  WorkerCounters::add(res_.counters->replies_via_tunnel);
}

bool Forwarder::track_reply(const PacketInfo& info, const FlowKey& key, uint64_t hash, FlowDirection matched,
                            Flow* flow) {
  FlowTable& flows = *res_.flows;
  if (!flows.lookup(key, hash, now_ms_, *res_.flow_counters, flow) || flow->matched != matched) return false;
  if (info.ip_protocol == wire::kProtoTcp) {
    flows.observe_tcp(flow->handle, flow->state, info.tcp_flags, FlowDirection::reply, now_ms_);
  } else {
    flows.touch(flow->handle, now_ms_);
  }
  return true;
}

bool Forwarder::forward_reply_from_vip(Frame& frame, PacketInfo& info, TxQueues& tx) {
  if (!is_tcp_or_udp(info.ip_protocol) || info.has(kPacketLaterFragment)) return false;
  // The flow was keyed client -> VIP when its first packet arrived.
  const FlowKey key = FlowKey::ipv4(info.ip_protocol, info.dst_addr, info.dst_port, info.src_addr, info.src_port);
  Flow flow;
  if (!track_reply(info, key, res_.flows->hash(key), FlowDirection::original, &flow)) return false;
  if (!decrement_ttl(frame.data, &info)) {
    drop(DropReason::ttl_expired);
    return true;
  }
  if (config_->backend_index_by_id(flow.backend_id) != shm::kNone) {
    count_for_backend(flow.backend_id, FlowDirection::reply, frame.len);
  }
  count_for_flow(&flow, FlowDirection::reply, frame.len);
  send_reply_on_ingress_path(frame, info, flow, tx);
  return true;
}

void Forwarder::count_for_backend(uint32_t backend_id, FlowDirection direction, uint32_t bytes) {
  const uint32_t slot = backend_id & 0xffff;
  if (slot >= res_.backend_slots) return;
  BackendCounters& c = res_.backend_counters[slot];
  if (direction == FlowDirection::original) {
    WorkerCounters::add(c.packets_in);
    WorkerCounters::add(c.bytes_in, bytes);
  } else {
    WorkerCounters::add(c.packets_out);
    WorkerCounters::add(c.bytes_out, bytes);
  }
}

// ---- ARP --------------------------------------------------------------------

void Forwarder::handle_arp(Frame& frame, PacketInfo& info, TxQueues& tx) {
  // RFC 826 request for IPv4 over Ethernet: htype 1, ptype 0x0800, 6/4, op 1.
  constexpr uint32_t kArpLen = 28;
  const uint32_t at = info.l3_offset;
  const SnapshotView& view = config_->view();
  if (frame.ingress_port >= view.ports.size() ||
      (view.ports[frame.ingress_port].flags & shm::kPortAnswerArpForVips) == 0 || frame.len < at + kArpLen) {
    WorkerCounters::add(res_.counters->passed);
    return;
  }
  uint8_t* arp = frame.data + at;
  if (load_be16(arp) != 1 || load_be16(arp + 2) != wire::kEtherTypeIpv4 || arp[4] != 6 || arp[5] != 4 ||
      load_be16(arp + 6) != 1) {
    WorkerCounters::add(res_.counters->passed);
    return;
  }
  const uint32_t target = load_be32(arp + 24);
  if (!view.is_vip(target) && !view.is_local_address(target)) {
    WorkerCounters::add(res_.counters->passed);
    return;
  }
  const SnapshotPort& port = view.ports[frame.ingress_port];
  uint8_t requester_mac[6];
  uint8_t requester_ip[4];
  std::memcpy(requester_mac, arp + 8, 6);
  std::memcpy(requester_ip, arp + 14, 4);
  store_be16(arp + 6, 2);  // reply
  std::memcpy(arp + 8, port.mac, 6);
  store_be32(arp + 14, target);
  std::memcpy(arp + 18, requester_mac, 6);
  std::memcpy(arp + 24, requester_ip, 4);
  std::memcpy(frame.data + wire::kEthDst, requester_mac, 6);
  std::memcpy(frame.data + wire::kEthSrc, port.mac, 6);
  WorkerCounters::add(res_.counters->arp_replies);
  send(frame, info, frame.ingress_port, tx);
}

// ---- Client -> VIP ------------------------------------------------------------

void Forwarder::handle_to_vip(Frame& frame, PacketInfo& info, TxQueues& tx) {
  WorkerCounters& counters = *res_.counters;
  const RuntimeConfig& config = *config_;
  const SnapshotView& view = config.view();

  if (info.ip_protocol == wire::kProtoIcmp) {
    handle_icmp_to_vip(frame, info, tx);
    return;
  }
  if (!is_tcp_or_udp(info.ip_protocol)) {
    WorkerCounters::add(counters.passed);
    return;
  }
  if (info.has(kPacketLaterFragment)) {
    // No ports: it cannot be matched to a flow without reassembly.
    drop(DropReason::fragment);
    return;
  }
  const SnapshotService* service = view.find_service(info.dst_addr, info.dst_port, info.ip_protocol);
  if (service == nullptr) {
    WorkerCounters::add(counters.passed);
    return;
  }
  const uint32_t service_index = static_cast<uint32_t>(service - view.services.data());
  if (info.has(kPacketIpOptions) && (service->flags & shm::kServiceDropIpOptions)) {
    drop(DropReason::ip_options);
    return;
  }
  // An aggregate's checksum is not final (the stack's partial sum, or GRO's
  // first segment's); the kernel verified what it merged.
  if (!frame.is_aggregate() && !checksums_verify(frame.data, info)) {
    if (view.header->flags & shm::kSnapshotDropBadChecksum) {
      drop(DropReason::bad_checksum);
      return;
    }
    WorkerCounters::add(counters.bad_checksum_forwarded);
  }

  FlowTable& flows = *res_.flows;
  const FlowKey key = FlowKey::ipv4(info.ip_protocol, info.src_addr, info.src_port, info.dst_addr, info.dst_port);
  const uint64_t hash = has_wire_hash_ ? wire_hash_ : flows.hash(key);
  const bool nat_like = service->method == static_cast<uint8_t>(Method::nat) ||
                        service->method == static_cast<uint8_t>(Method::fullnat);
  Flow flow;
  if (flows.lookup(key, hash, now_ms_, *res_.flow_counters, &flow, service->method == static_cast<uint8_t>(Method::fullnat))) {
    const uint32_t backend_index = config.backend_index_by_id(flow.backend_id);
    if (backend_index == shm::kNone || config.service_of_backend(backend_index) != service_index) {
      end_flow_of_removed_backend(frame, info, flow, (service->flags & shm::kServiceRemoveResetsFlows) != 0, tx);
      return;
    }
    const bool syn_on_closed = info.ip_protocol == wire::kProtoTcp && flow.state == FlowState::tcp_closed &&
                               (info.tcp_flags & (TcpFlagBits::syn | TcpFlagBits::ack)) == TcpFlagBits::syn;
    if (!syn_on_closed) {
      if (info.ip_protocol == wire::kProtoTcp) {
        flows.observe_tcp(flow.handle, flow.state, info.tcp_flags, FlowDirection::original, now_ms_);
      } else {
        flows.touch(flow.handle, now_ms_);
      }
      forward_to_backend(frame, info, service_index, backend_index, &flow, tx);
      return;
    }
    // A new connection reusing the tuple of a closed one (TIME-WAIT reuse):
    // schedule it afresh.
    flows.remove(flow.handle, *res_.flow_counters);
  }

  // A new flow: persistence first, then the scheduler.
  uint32_t backend_index = shm::kNone;
  FlowKey template_key{};
  uint64_t template_hash = 0;
  const bool persistent = (service->flags & shm::kServicePersistent) != 0;
  if (persistent) {
    uint8_t client[4];
    store_be32(client, info.src_addr);
    template_key = FlowKey::persistence_template(service->id, FlowKey::kIpv4, client);
    template_hash = flows.hash(template_key);
    Flow persisted;
    if (flows.lookup(template_key, template_hash, now_ms_, *res_.flow_counters, &persisted)) {
      const uint32_t candidate = config.backend_index_by_id(persisted.backend_id);
      if (candidate != shm::kNone && config.service_of_backend(candidate) == service_index &&
          (view.backends[candidate].flags & shm::kBackendUp) && view.backends[candidate].weight > 0) {
        backend_index = candidate;
        flows.touch(persisted.handle, now_ms_);
      } else {
        flows.remove(persisted.handle, *res_.flow_counters);
      }
    }
  }
  if (backend_index == shm::kNone) {
    backend_index = config.pick(service_index, hash, info.src_addr, res_.worker_index);
  }
  if (backend_index == shm::kNone) {
    drop(DropReason::no_backend);
    return;
  }
  const SnapshotBackend& backend = view.backends[backend_index];

  NewFlow fresh;
  fresh.key = key;
  fresh.backend_id = backend.id;
  fresh.state = state_for_new_flow(info);
  fresh.ingress_port = frame.ingress_port;
  std::memcpy(fresh.client_mac, frame.data + wire::kEthSrc, 6);
  fresh.track_reverse = nat_like;
  {
    // Replies (nat and fullnat, and tunnel returns) keep the client's
    // ingress path; whether routing would have chosen another port is
    // decided here, once per flow, and kept in the entry, not looked up
    // again for every reply.
    const shm::SnapshotRoute* route = view.route_to(info.src_addr);
    if (route != nullptr && route->egress_port != frame.ingress_port) fresh.flags |= kFlowFlagReplyRouteDiffers;
  }
  FlowInsertResult result = FlowInsertResult::full;
  if (service->method == static_cast<uint8_t>(Method::nat)) {
    fresh.reverse_key = FlowKey::ipv4(info.ip_protocol, backend.address, backend.port, info.src_addr, info.src_port);
    result = flows.insert(fresh, hash, now_ms_, *res_.flow_counters, &flow);
  } else if (service->method == static_cast<uint8_t>(Method::fullnat)) {
    // Local source: an address of the pool and a port in the configured
    // range, chosen from the flow hash and probed linearly; the flow table
    // refuses a reply tuple that is in use (reverse_exists), so a port is
    // never handed out twice.
    const auto& locals = view.local_addresses;
    const uint32_t port_min = view.header->fullnat_port_min;
    const uint32_t range = static_cast<uint32_t>(view.header->fullnat_port_max) - port_min + 1;
    constexpr uint32_t kPortProbes = 16;
    result = FlowInsertResult::reverse_exists;
    for (uint32_t probe = 0; probe < kPortProbes && result == FlowInsertResult::reverse_exists; ++probe) {
      const uint64_t mixed = (hash >> 16) + probe * 0x9e3779b97f4a7c15ull;
      const uint32_t local = locals[static_cast<uint32_t>(mixed % locals.size())];
      const uint16_t local_port = static_cast<uint16_t>(port_min + static_cast<uint32_t>((mixed >> 20) % range));
      fresh.reverse_key = FlowKey::ipv4(info.ip_protocol, backend.address, backend.port, local, local_port);
      result = flows.insert(fresh, hash, now_ms_, *res_.flow_counters, &flow);
    }
    if (result == FlowInsertResult::reverse_exists) {
      drop(DropReason::no_local_port);
      return;
    }
    if (result == FlowInsertResult::inserted) flow.reverse_key = fresh.reverse_key;
  } else {
    result = flows.insert(fresh, hash, now_ms_, *res_.flow_counters, &flow);
  }

  switch (result) {
    case FlowInsertResult::inserted:
      WorkerCounters::add(counters.flows_created);
      if (backend_index < view.backends.size()) {
        const uint32_t slot = backend.id & 0xffff;
        if (slot < res_.backend_slots) WorkerCounters::add(res_.backend_counters[slot].flows_created);
      }
      if (persistent) {
        Flow ignored;
        flows.insert_template(template_key, template_hash, backend.id, service->persistence_timeout_ms, now_ms_,
                              *res_.flow_counters, &ignored);
      }
      forward_to_backend(frame, info, service_index, backend_index, &flow, tx);
      return;
    case FlowInsertResult::contended:
      // Another worker held the buckets for the whole bounded wait: most
      // often it was creating this very flow (a SYN and the next segment
      // taken by different workers). Follow its choice if it did.
      if (!flows.lookup(fresh.key, hash, now_ms_, *res_.flow_counters, &flow,
                        service->method == static_cast<uint8_t>(Method::fullnat))) {
        break;
      }
      [[fallthrough]];
    case FlowInsertResult::exists: {
      // Another worker created this flow a moment ago: follow its choice.
      const uint32_t existing = config.backend_index_by_id(flow.backend_id);
      if (existing == shm::kNone) {
        drop(DropReason::no_backend);
        return;
      }
      forward_to_backend(frame, info, service_index, existing, &flow, tx);
      return;
    }
    case FlowInsertResult::reverse_exists:
      // nat: another flow already owns backend:port <- client:port (two VIPs
      // sharing a backend and a client port). Its replies would be ambiguous.
      drop(DropReason::reply_tuple_in_use);
      return;
    case FlowInsertResult::full:
      break;
  }
  // Not tracked (table full, or contended). nat and fullnat cannot
  // translate replies without state; dr and tunnels can still go
  // consistently where scheduling is a pure function of the packet, unless
  // the policy says drop.
  if (nat_like || (view.header->flags & shm::kSnapshotDropWhenFlowTableFull) ||
      !config.consistent_scheduler(service_index)) {
    drop(result == FlowInsertResult::contended ? DropReason::insert_contended : DropReason::flow_table_full);
    return;
  }
  WorkerCounters::add(counters.flows_untracked);
  forward_to_backend(frame, info, service_index, backend_index, nullptr, tx);
}

void Forwarder::handle_icmp_to_vip(Frame& frame, PacketInfo& info, TxQueues& tx) {
  const SnapshotView& view = config_->view();
  if (info.icmp_type == 8 && info.icmp_code == 0) {
    if ((view.header->flags & shm::kSnapshotAnswerEcho) == 0 || frame.ingress_port >= view.ports.size()) {
      WorkerCounters::add(res_.counters->passed);
      return;
    }
    if (make_echo_reply(frame.data, &info, 64)) {
      // The reply leaves from the port's own MAC, not the VIP owner's.
      std::memcpy(frame.data + wire::kEthSrc, view.ports[frame.ingress_port].mac, 6);
      WorkerCounters::add(res_.counters->echo_replies);
      send(frame, info, frame.ingress_port, tx);
    } else {
      WorkerCounters::add(res_.counters->passed);
    }
    return;
  }
  if (!info.has(kPacketIcmpError) || !info.has(kPacketQuoteL4) || !is_tcp_or_udp(info.inner_protocol) ||
      info.dst_addr != info.inner_src_addr) {
    WorkerCounters::add(res_.counters->passed);
    return;
  }
  // The quote is a packet the balancer sent toward the client side:
  // VIP:port -> client:port. Its flow is keyed client -> VIP.
  const FlowKey key = FlowKey::ipv4(info.inner_protocol, info.inner_dst_addr, info.inner_dst_port,
                                    info.inner_src_addr, info.inner_src_port);
  Flow flow;
  FlowTable& flows = *res_.flows;
  const SnapshotService* service = view.find_service(info.inner_src_addr, info.inner_src_port, info.inner_protocol);
  if (service == nullptr ||
      !flows.lookup(key, flows.hash(key), now_ms_, *res_.flow_counters, &flow,
                    service->method == static_cast<uint8_t>(Method::fullnat))) {
    WorkerCounters::add(res_.counters->passed);
    return;
  }
  const uint32_t backend_index = config_->backend_index_by_id(flow.backend_id);
  if (backend_index == shm::kNone) {
    WorkerCounters::add(res_.counters->passed);
    return;
  }
  const SnapshotBackend& backend = view.backends[backend_index];
  if (service->method == static_cast<uint8_t>(Method::nat) || service->method == static_cast<uint8_t>(Method::fullnat)) {
    IcmpErrorTranslation t = icmp_error_translation_of(info);
    t.outer_dst_addr = backend.address;
    t.quoted_src_addr = backend.address;
    t.quoted_src_port = backend.port;
    if (service->method == static_cast<uint8_t>(Method::fullnat)) {
      const uint32_t local = flow.reverse_key.dst_ipv4();
      t.outer_src_addr = local;
      t.quoted_dst_addr = local;
      t.quoted_dst_port = flow.reverse_key.dst_port;
    }
    if (!translate_icmp_error(frame.data, &info, t)) {
      drop(DropReason::bad_l4_header);
      return;
    }
  }
  WorkerCounters::add(res_.counters->icmp_errors_translated);
  const uint32_t service_index = static_cast<uint32_t>(service - view.services.data());
  forward_to_backend(frame, info, service_index, backend_index, nullptr, tx);
}

void Forwarder::forward_to_backend(Frame& frame, PacketInfo& info, uint32_t service_index, uint32_t backend_index,
                                   const Flow* flow, TxQueues& tx) {
  const SnapshotView& view = config_->view();
  const SnapshotService& service = view.services[service_index];
  const SnapshotBackend& backend = view.backends[backend_index];
  if (L4LB_UNLIKELY((backend.flags & shm::kBackendNextHopResolved) == 0)) {
    drop(DropReason::no_neighbour);
    return;
  }
  const SnapshotPort& egress = view.ports[backend.egress_port];
  const bool is_icmp = info.ip_protocol == wire::kProtoIcmp;
  const uint32_t packet_bytes = frame.len;

  switch (static_cast<Method>(service.method)) {
    case Method::nat:
    case Method::fullnat:
      if (!decrement_ttl(frame.data, &info)) {
        drop(DropReason::ttl_expired);
        return;
      }
      if (!is_icmp) {
        rewrite_ipv4_destination(frame.data, &info, backend.address, backend.port);
        if (service.method == static_cast<uint8_t>(Method::fullnat) && flow != nullptr) {
          rewrite_ipv4_source(frame.data, &info, flow->reverse_key.dst_ipv4(), flow->reverse_key.dst_port);
        }
      }
      break;
    case Method::dr:
      break;
    case Method::ipip:
    case Method::gre: {
      const TunnelType type = service.method == static_cast<uint8_t>(Method::ipip) ? TunnelType::ipip : TunnelType::gre;
      const bool with_key = type == TunnelType::gre && (service.flags & shm::kServiceGreKey) != 0;
      const uint32_t overhead = tunnel_overhead(type, with_key);
      if (L4LB_UNLIKELY(frame.is_aggregate())) {
        // No offload cuts a tunnelled aggregate: its segments are cut here,
        // small enough to fit the egress link with the outer header, and
        // each is encapsulated as a packet of its own.
        const uint32_t payload =
            segment_payload_for_mtu(frame, ip_and_l4_header_len(frame.data, info), egress.mtu, overhead);
        forward_segments_to_backend(frame, info, service_index, backend_index, flow, payload, tx);
        return;
      }
      const uint32_t ip_bytes = info.l3_end() - info.l3_offset;
      if (ip_bytes + overhead > egress.mtu) {
        const bool df = info.has(kPacketDontFragment);
        if (df && !is_icmp_error(info) && icmp_error_allowed(frame.data, info) &&
            frame.ingress_port < view.ports.size() && icmp_token()) {
          uint32_t capacity = 0, headroom = 0;
          uint8_t* out = scratch_frame(&capacity, &headroom);
          if (out != nullptr) {
            const SnapshotPort& ingress = view.ports[frame.ingress_port];
            IcmpReplyParams params;
            params.dst_mac = frame_src_mac(frame);
            params.src_mac = mac_of(ingress.mac);
            params.src_addr = ingress.address != 0 ? ingress.address : info.dst_addr;
            params.identification = take_ip_id();
            const uint32_t len = build_icmp_frag_needed(out, capacity, frame.data, info, params,
                                                        static_cast<uint16_t>(egress.mtu - overhead));
            if (len != 0) {
              Frame reply{};
              reply.data = out;
              reply.len = len;
              reply.headroom = headroom;
              reply.ingress_port = frame.ingress_port;
              WorkerCounters::add(res_.counters->icmp_frag_needed_sent);
              send_created(reply, frame.ingress_port, tx);
            }
          }
        }
        drop(DropReason::too_big);
        return;
      }
      TunnelParams params;
      params.type = type;
      params.src_addr = egress.address;
      params.dst_addr = backend.address;
      params.identification = take_ip_id();
      params.ttl = static_cast<uint8_t>(view.header->tunnel_ttl);
      params.gre_with_key = with_key;
      params.gre_key = service.gre_key;
      if (encapsulate_ipv4(&frame, &info, params) == 0) {
        drop(DropReason::too_big);
        return;
      }
      break;
    }
  }
  EthernetRewrite eth;
  eth.dst = mac_of(backend.next_hop_mac);
  eth.src = mac_of(egress.mac);
  eth.vlan = VlanAction::strip;
  rewrite_ethernet(&frame, &info, eth);
  WorkerCounters::add(res_.counters->forwarded);
  count_for_backend(backend.id, FlowDirection::original, packet_bytes);
  count_for_flow(flow, FlowDirection::original, packet_bytes);
  send(frame, info, backend.egress_port, tx);
}

void Forwarder::forward_segments_to_backend(Frame& aggregate, PacketInfo& info, uint32_t service_index,
                                            uint32_t backend_index, const Flow* flow, uint32_t payload_per_segment,
                                            TxQueues& tx) {
  frame_consumed_ = true;
  Frame segments[kScratchFrames];
  uint32_t written = 0;
  const uint32_t needed = payload_per_segment != 0 ? segment_count(aggregate, info, payload_per_segment) : 0;
  if (needed != 0 && needed <= kScratchFrames) {
    if (scratch_left() < needed) {
      tx.flush_all();
      scratch_used_ = 0;
    }
    ScratchSegments buffers(*this);
    written = segment_aggregate(aggregate, info, payload_per_segment, buffers, segments, kScratchFrames);
  }
  if (written == 0) drop(DropReason::too_big);
  WorkerCounters::add(res_.counters->aggregates_segmented);
  release_frames(&aggregate, 1);
  for (uint32_t i = 0; i < written; ++i) {
    PacketInfo segment_info;
    if (!parse_frame(segments[i].data, segments[i].len, &segment_info).is_ok()) continue;  // cannot happen: built from a parsed frame
    // The flow goes along for its counts only: segments are cut for tunnels,
    // whose rewrite needs no flow.
    forward_to_backend(segments[i], segment_info, service_index, backend_index, flow, tx);
  }
}

void Forwarder::end_flow_of_removed_backend(Frame& frame, PacketInfo& info, const Flow& flow, bool reset, TxQueues& tx) {
  res_.flows->remove(flow.handle, *res_.flow_counters);
  WorkerCounters::add(res_.counters->flows_ended_backend_removed);
  const bool can_reset = reset && info.ip_protocol == wire::kProtoTcp && (info.tcp_flags & TcpFlagBits::rst) == 0 &&
                         frame.ingress_port < config_->view().ports.size();
  if (!can_reset) {
    drop(DropReason::no_backend);
    return;
  }
  // RFC 9293 §3.10.7.1: a reset for a segment that carries ACK takes its
  // sequence number from that ACK; otherwise sequence 0 and ACK of the
  // segment's end. The reset comes from the VIP, back on the ingress path.
  uint8_t* p = frame.data;
  uint8_t* ip = p + info.l3_offset;
  uint8_t* tcp = p + info.l4_offset;
  const uint32_t header_len = static_cast<uint32_t>((ip[0] & 0x0f) * 4);
  const uint32_t data_offset = static_cast<uint32_t>((tcp[12] >> 4) * 4);
  const uint32_t payload = info.l4_len - data_offset;
  const bool had_ack = (info.tcp_flags & TcpFlagBits::ack) != 0;
  const uint32_t seq = load_be32(tcp + 4);
  const uint32_t ack = load_be32(tcp + 8);
  const uint32_t segment_len = payload + ((info.tcp_flags & TcpFlagBits::syn) ? 1 : 0) +
                               ((info.tcp_flags & TcpFlagBits::fin) ? 1 : 0);
  // Ethernet: back to the sender.
  uint8_t mac[6];
  std::memcpy(mac, p + wire::kEthSrc, 6);
  std::memcpy(p + wire::kEthDst, mac, 6);
  std::memcpy(p + wire::kEthSrc, config_->view().ports[frame.ingress_port].mac, 6);
  // IPv4: no options, swapped addresses, fresh header.
  if (header_len != wire::kIpv4HeaderMin) {
    std::memmove(ip + wire::kIpv4HeaderMin, tcp, 20);
    tcp = ip + wire::kIpv4HeaderMin;
  }
  ip[0] = 0x45;
  ip[1] = 0;
  store_be16(ip + wire::kIpv4TotalLength, 40);
  store_be16(ip + wire::kIpv4Id, take_ip_id());
  store_be16(ip + wire::kIpv4FlagsFragment, wire::kIpv4FlagDf);
  ip[wire::kIpv4Ttl] = 64;
  ip[wire::kIpv4Protocol] = wire::kProtoTcp;
  store_be32(ip + wire::kIpv4Src, info.dst_addr);
  store_be32(ip + wire::kIpv4Dst, info.src_addr);
  store_be16(ip + wire::kIpv4Checksum, 0);
  store_be16(ip + wire::kIpv4Checksum, checksum(ip, wire::kIpv4HeaderMin));
  // TCP: swapped ports, RST (+ACK), no options, no payload.
  store_be16(tcp, info.dst_port);
  store_be16(tcp + 2, info.src_port);
  store_be32(tcp + 4, had_ack ? ack : 0);
  store_be32(tcp + 8, had_ack ? 0 : seq + segment_len);
  tcp[12] = 5 << 4;
  tcp[13] = had_ack ? TcpFlagBits::rst : (TcpFlagBits::rst | TcpFlagBits::ack);
  store_be16(tcp + 14, 0);
  store_be16(tcp + 16, 0);
  store_be16(tcp + 18, 0);
  frame.len = info.l3_offset + 40;
  PacketInfo reset_info;
  parse_frame(frame.data, frame.len, &reset_info);
  store_be16(tcp + 16, l4_checksum(frame.data, reset_info));
  frame.flags &= ~kFrameChecksumPartial;
  frame.gso_type = GsoType::none;  // a reset built over an aggregate is one small segment
  frame.gso_size = 0;
  WorkerCounters::add(res_.counters->flows_reset);
  send(frame, reset_info, frame.ingress_port, tx);
}

// ---- Backend -> client (nat, fullnat) ---------------------------------------------

bool Forwarder::handle_reply(Frame& frame, PacketInfo& info, TxQueues& tx) {
  if (info.ip_protocol == wire::kProtoIcmp) return handle_icmp_from_backend(frame, info, tx);
  if (!is_tcp_or_udp(info.ip_protocol) || info.has(kPacketLaterFragment)) return false;
  const FlowKey key = FlowKey::ipv4(info.ip_protocol, info.src_addr, info.src_port, info.dst_addr, info.dst_port);
  Flow flow;
  if (!track_reply(info, key, has_wire_hash_ ? wire_hash_ : res_.flows->hash(key), FlowDirection::reply, &flow)) {
    return false;
  }
  if (!decrement_ttl(frame.data, &info)) {
    drop(DropReason::ttl_expired);
    return true;
  }
  // Back to the VIP's address and port; in fullnat also back to the client.
  rewrite_ipv4_source(frame.data, &info, flow.key.dst_ipv4(), flow.key.dst_port);
  if (info.dst_addr != flow.key.src_ipv4() || info.dst_port != flow.key.src_port) {
    rewrite_ipv4_destination(frame.data, &info, flow.key.src_ipv4(), flow.key.src_port);
  }
  if (config_->backend_index_by_id(flow.backend_id) != shm::kNone) {
    count_for_backend(flow.backend_id, FlowDirection::reply, frame.len);
  }
  count_for_flow(&flow, FlowDirection::reply, frame.len);
  send_reply_on_ingress_path(frame, info, flow, tx);
  return true;
}

bool Forwarder::handle_icmp_from_backend(Frame& frame, PacketInfo& info, TxQueues& tx) {
  if (!info.has(kPacketIcmpError) || !info.has(kPacketQuoteL4) || !is_tcp_or_udp(info.inner_protocol)) return false;
  // An error goes to the sender of the packet it quotes; one addressed
  // elsewhere is not about a packet the balancer sent, whatever it quotes.
  if (info.dst_addr != info.inner_src_addr) return false;
  // The quote is what the balancer sent to the backend: client (or local
  // address) -> backend. Seen from the backend, that is the flow's reply key
  // reversed.
  FlowTable& flows = *res_.flows;
  const FlowKey key = FlowKey::ipv4(info.inner_protocol, info.inner_dst_addr, info.inner_dst_port,
                                    info.inner_src_addr, info.inner_src_port);
  Flow flow;
  if (!flows.lookup(key, flows.hash(key), now_ms_, *res_.flow_counters, &flow)) return false;
  if (flow.matched != FlowDirection::reply) return false;
  IcmpErrorTranslation t = icmp_error_translation_of(info);
  const uint32_t vip = flow.key.dst_ipv4();
  const uint32_t client = flow.key.src_ipv4();
  if (t.outer_src_addr == info.inner_dst_addr) t.outer_src_addr = vip;  // from the backend itself
  t.outer_dst_addr = client;
  t.quoted_src_addr = client;
  t.quoted_src_port = flow.key.src_port;
  t.quoted_dst_addr = vip;
  t.quoted_dst_port = flow.key.dst_port;
  if (!decrement_ttl(frame.data, &info)) {
    drop(DropReason::ttl_expired);
    return true;
  }
  if (!translate_icmp_error(frame.data, &info, t)) {
    drop(DropReason::bad_l4_header);
    return true;
  }
  WorkerCounters::add(res_.counters->icmp_errors_translated);
  send_reply_on_ingress_path(frame, info, flow, tx);
  return true;
}

void Forwarder::send_reply_on_ingress_path(Frame& frame, PacketInfo& info, const Flow& flow, TxQueues& tx) {
  const SnapshotView& view = config_->view();
  WorkerCounters& counters = *res_.counters;
  WorkerCounters::add(counters.replies);
  uint16_t egress = flow.ingress_port;
  MacAddress next_hop = mac_of(flow.client_mac);
  if (egress < view.ports.size()) {
    WorkerCounters::add(counters.replies_ingress_path);
    if (flow.flags & kFlowFlagReplyRouteDiffers) WorkerCounters::add(counters.replies_route_differs);
  } else {
    const shm::SnapshotRoute* route = view.route_to(info.dst_addr);
    if (route == nullptr || !route->resolved) {
      drop(route == nullptr ? DropReason::no_route : DropReason::no_neighbour);
      return;
    }
    egress = route->egress_port;
    next_hop = mac_of(route->next_hop_mac);
    WorkerCounters::add(counters.replies_routed);
  }
  EthernetRewrite eth;
  eth.dst = next_hop;
  eth.src = mac_of(view.ports[egress].mac);
  eth.vlan = VlanAction::strip;
  rewrite_ethernet(&frame, &info, eth);
  send(frame, info, egress, tx);
}

}  // namespace l4lb::core

#include "core/flow_table.h"

#include <algorithm>
#include <cstring>

#include "core/checksum.h"

namespace l4lb::core {

namespace {

// Control word (64 bits, host order, private to the process):
//   [1:0]   slot state: kEmpty, kClaimed (an inserter is writing it), kLive
//   [3:2]   FlowEntryKind
//   [6:4]   FlowState (forward entries)
//   [7]     zero
//   [31:8]  tag: 24 bits of the key's hash, so that a scan skips other keys
//           without touching their entry lines
//   [63:32] version: +1 on every claim and on every delete, never on publish
//           (a reader never reads a claimed entry) nor on a state change
//           (the state is not part of what a seqlock reader copies)
constexpr uint64_t kSlotStateMask = 0x3;
constexpr uint64_t kEmpty = 0;
constexpr uint64_t kClaimed = 1;
constexpr uint64_t kLive = 2;
constexpr int kKindShift = 2;
constexpr int kFlowStateShift = 4;
constexpr uint64_t kFlowStateMask = uint64_t{0x7} << kFlowStateShift;
constexpr int kTagShift = 8;
constexpr uint32_t kTagMask = 0xffffff;
constexpr int kVersionShift = 32;

constexpr uint32_t kNoPeer = UINT32_MAX;

// An insert that keeps meeting concurrent claims of the same tag gives up
// after this many attempts (reported as `contended`) rather than spin.
constexpr int kMaxInsertAttempts = 8;
// How long to wait for another thread's claim to be published or abandoned.
// A claim lasts the time to write one entry (tens of nanoseconds), so this is
// only exhausted when the claimant was preempted.
constexpr int kPendingSpinLimit = 1024;
// A found entry that changes while it is being copied is retried this often.
constexpr int kReadRetries = 3;

inline uint64_t slot_state(uint64_t control) { return control & kSlotStateMask; }
inline FlowEntryKind kind_of(uint64_t control) {
  return static_cast<FlowEntryKind>((control >> kKindShift) & 0x3);
}
inline FlowState flow_state_of(uint64_t control) {
  return static_cast<FlowState>((control & kFlowStateMask) >> kFlowStateShift);
}
inline uint32_t tag_of(uint64_t control) { return static_cast<uint32_t>(control >> kTagShift) & kTagMask; }
inline uint32_t version_of(uint64_t control) { return static_cast<uint32_t>(control >> kVersionShift); }

inline uint64_t make_control(uint32_t version, uint64_t slot_state_value, FlowEntryKind kind, FlowState state,
                             uint32_t tag) {
  return (static_cast<uint64_t>(version) << kVersionShift) | (static_cast<uint64_t>(tag & kTagMask) << kTagShift) |
         (static_cast<uint64_t>(state) << kFlowStateShift) | (static_cast<uint64_t>(kind) << kKindShift) |
         slot_state_value;
}
inline uint64_t empty_control(uint32_t version) {
  return make_control(version, kEmpty, FlowEntryKind::forward, FlowState::tcp_syn_seen, 0);
}
inline uint64_t with_flow_state(uint64_t control, FlowState state) {
  return (control & ~kFlowStateMask) | (static_cast<uint64_t>(state) << kFlowStateShift);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Age in ms of a last-seen stamp. Workers read their clocks at different
// moments, so a stamp may be slightly ahead of `now`: that is age 0, not 49 days.
inline uint32_t age_ms(uint32_t now, uint32_t last_seen) {
  const int32_t age = static_cast<int32_t>(now - last_seen);
  return age < 0 ? 0 : static_cast<uint32_t>(age);
}

inline uint64_t pack_client_path(const uint8_t mac[6], uint16_t ingress_port) {
  uint64_t packed = static_cast<uint64_t>(ingress_port) << 48;
  for (int i = 0; i < 6; ++i) packed |= static_cast<uint64_t>(mac[i]) << (8 * i);
  return packed;
}
inline void unpack_client_path(uint64_t packed, uint8_t mac[6], uint16_t* ingress_port) {
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(packed >> (8 * i));
  *ingress_port = static_cast<uint16_t>(packed >> 48);
}

constexpr uint32_t kMaxTimeoutMs = 0x7fffffff;

// The seqlock, without standalone fences (ThreadSanitizer does not model
// them): an inserter stores the entry's fields with release after its claim
// CAS, and readers load them with acquire before re-checking the control word.
// A reader that sees any field of a recycling inserter therefore also sees its
// claim (the bumped version) in the re-check. Both are plain moves on x86.
constexpr std::memory_order kEntryStore = std::memory_order_release;
constexpr std::memory_order kEntryLoad = std::memory_order_acquire;

}  // namespace

// ---------------------------------------------------------------------------
// Keys, states, timeouts

FlowKey FlowKey::ipv4(uint8_t protocol, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport) {
  FlowKey key{};
  store_be32(key.src_addr, src);
  store_be32(key.dst_addr, dst);
  key.src_port = sport;
  key.dst_port = dport;
  key.protocol = protocol;
  key.family = kIpv4;
  key.space = kPacketTuple;
  return key;
}

FlowKey FlowKey::ipv6(uint8_t protocol, const uint8_t src[16], uint16_t sport, const uint8_t dst[16],
                      uint16_t dport) {
  FlowKey key{};
  std::memcpy(key.src_addr, src, 16);
  std::memcpy(key.dst_addr, dst, 16);
  key.src_port = sport;
  key.dst_port = dport;
  key.protocol = protocol;
  key.family = kIpv6;
  key.space = kPacketTuple;
  return key;
}

FlowKey FlowKey::persistence_template(uint32_t service_id, uint8_t family, const uint8_t* client_addr) {
  FlowKey key{};
  std::memcpy(key.src_addr, client_addr, family == kIpv6 ? 16 : 4);
  store_be32(key.dst_addr, service_id);
  key.family = family;
  key.space = kPersistenceTemplate;
  return key;
}

FlowKey FlowKey::reversed() const {
  FlowKey key = *this;
  std::memcpy(key.src_addr, dst_addr, 16);
  std::memcpy(key.dst_addr, src_addr, 16);
  key.src_port = dst_port;
  key.dst_port = src_port;
  return key;
}

uint32_t FlowKey::src_ipv4() const { return load_be32(src_addr); }
uint32_t FlowKey::dst_ipv4() const { return load_be32(dst_addr); }

FlowState next_tcp_state(FlowState state, uint8_t tcp_flags, FlowDirection direction) {
  if (state == FlowState::udp || state == FlowState::other) return state;
  const bool from_client = direction == FlowDirection::original;
  if (tcp_flags & TcpFlagBits::rst) return FlowState::tcp_closed;
  const bool syn = tcp_flags & TcpFlagBits::syn;
  const bool ack = tcp_flags & TcpFlagBits::ack;
  if (syn && !ack) {
    // A client reusing the tuple of a finished connection starts over (IPVS
    // lets a SYN reopen a TIME-WAIT entry); a retransmitted SYN changes nothing.
    const bool finished = state == FlowState::tcp_closed || state == FlowState::tcp_fin_original ||
                          state == FlowState::tcp_fin_reply;
    return finished && from_client ? FlowState::tcp_syn_seen : state;
  }
  if (tcp_flags & TcpFlagBits::fin) {
    switch (state) {
      case FlowState::tcp_syn_seen:
      case FlowState::tcp_established:
        return from_client ? FlowState::tcp_fin_original : FlowState::tcp_fin_reply;
      case FlowState::tcp_fin_original:
        return from_client ? state : FlowState::tcp_closed;
      case FlowState::tcp_fin_reply:
        return from_client ? FlowState::tcp_closed : state;
      default:
        return state;
    }
  }
  // The client's ACK (not the backend's SYN-ACK) completes the handshake: in dr
  // and tunnel modes it is the only direction the balancer sees.
  if (ack && !syn && from_client && state == FlowState::tcp_syn_seen) return FlowState::tcp_established;
  return state;
}

FlowState initial_flow_state(uint8_t protocol, uint8_t tcp_flags) {
  constexpr uint8_t kTcp = 6;
  constexpr uint8_t kUdp = 17;
  if (protocol == kTcp) {
    const bool opening = (tcp_flags & TcpFlagBits::syn) && !(tcp_flags & TcpFlagBits::ack);
    return opening ? FlowState::tcp_syn_seen : FlowState::tcp_established;
  }
  return protocol == kUdp ? FlowState::udp : FlowState::other;
}

uint32_t FlowTimeouts::for_state(FlowState state) const {
  switch (state) {
    case FlowState::tcp_syn_seen:
      return tcp_syn_ms;
    case FlowState::tcp_established:
      return tcp_established_ms;
    case FlowState::tcp_fin_original:
    case FlowState::tcp_fin_reply:
      return tcp_closing_ms;
    case FlowState::tcp_closed:
      return tcp_closed_ms;
    case FlowState::udp:
      return udp_ms;
    case FlowState::other:
      return other_ms;
  }
  return other_ms;
}

// ---------------------------------------------------------------------------
// Storage

struct FlowTable::Claim {
  uint32_t slot;
  uint32_t version;  // version of the claimed slot (kept when it is published)
  uint64_t claimed;  // the control word written by the claim
};

FlowTable::FlowTable(const FlowTableOptions& options)
    : bucket_count_(std::max<uint32_t>(2, (std::min<uint32_t>(options.slots, 1u << 31) + kSlotsPerBucket - 1) /
                                              kSlotsPerBucket)),
      hash_key_(options.hash_key),
      timeouts_(options.timeouts),
      events_(options.events),
      controls_(std::make_unique<ControlLine[]>(bucket_count_)),
      entries_(std::make_unique<Entry[]>(static_cast<size_t>(bucket_count_) * kSlotsPerBucket)) {
  for (uint32_t* timeout : {&timeouts_.tcp_syn_ms, &timeouts_.tcp_established_ms, &timeouts_.tcp_closing_ms,
                            &timeouts_.tcp_closed_ms, &timeouts_.udp_ms, &timeouts_.other_ms}) {
    *timeout = std::min(*timeout, kMaxTimeoutMs);
  }
}

FlowTable::~FlowTable() = default;

uint64_t FlowTable::hash(const FlowKey& key) const { return siphash13(hash_key_, &key, sizeof(key)); }

FlowTable::Probe FlowTable::probe_for(uint64_t hash) const {
  // Lemire's multiply-shift range reduction: any bucket count, no division.
  Probe probe;
  probe.bucket[0] = static_cast<uint32_t>((static_cast<uint64_t>(static_cast<uint32_t>(hash)) * bucket_count_) >> 32);
  probe.bucket[1] = static_cast<uint32_t>(((hash >> 32) * bucket_count_) >> 32);
  if (probe.bucket[1] == probe.bucket[0]) probe.bucket[1] = (probe.bucket[0] + 1) % bucket_count_;
  // The tag comes from a multiplicative mix of all 64 bits, so keys sharing a
  // bucket (and hence the bits that chose it) still differ in their tags.
  probe.tag = static_cast<uint32_t>((hash * 0x9e3779b97f4a7c15ull) >> 40) & kTagMask;
  return probe;
}

void FlowTable::candidate_buckets(uint64_t hash, uint32_t* first, uint32_t* second) const {
  const Probe probe = probe_for(hash);
  *first = probe.bucket[0];
  *second = probe.bucket[1];
}

void FlowTable::prefetch(uint64_t hash) const {
  const Probe probe = probe_for(hash);
  __builtin_prefetch(&controls_[probe.bucket[0]]);
  __builtin_prefetch(&controls_[probe.bucket[1]]);
}

std::atomic<uint64_t>& FlowTable::control(uint32_t slot) const {
  return controls_[slot / kSlotsPerBucket].word[slot % kSlotsPerBucket];
}

// ---------------------------------------------------------------------------
// Seqlock reads

bool FlowTable::key_matches(uint32_t slot, uint64_t control_word, const KeyWords& key) const {
  const Entry& entry = entries_[slot];
  for (int i = 0; i < 5; ++i) {
    // kEntryLoad pairs with a recycling inserter's kEntryStore: if this word is
    // from a new incarnation, the re-check below sees its claim.
    if (entry.key[i].load(kEntryLoad) != key.w[i]) return false;
  }
  // Relaxed: ordered after the acquire loads above.
  const uint64_t now_control = control(slot).load(std::memory_order_relaxed);
  return slot_state(now_control) == kLive && version_of(now_control) == version_of(control_word);
}

template <std::memory_order kOrder>
FlowTable::ScanResult FlowTable::scan(const Probe& probe, const KeyWords& key, const Claim* own,
                                      size_t own_count) const {
  ScanResult result;
  for (uint32_t bucket : probe.bucket) {
    const ControlLine& line = controls_[bucket];
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      // acquire (lookups): pairs with the release store that published the
      // entry. seq_cst (after a claim): orders this load after our own claim
      // CAS in the single total order, see insert_entries.
      const uint64_t word = line.word[i].load(kOrder);
      if (tag_of(word) != probe.tag) continue;
      const uint32_t slot = bucket * kSlotsPerBucket + i;
      bool mine = false;
      for (size_t k = 0; k < own_count; ++k) mine |= own[k].slot == slot;
      if (mine) continue;
      const uint64_t state = slot_state(word);
      if (state == kLive && key_matches(slot, word, key)) {
        result.found = Found::match;
        result.slot = slot;
        result.control = word;
        return result;
      }
      if (state == kClaimed && result.found == Found::none) {
        result.found = Found::pending;
        result.slot = slot;
        result.control = word;
      }
    }
  }
  return result;
}

bool FlowTable::read_flow(uint32_t slot, uint32_t version, Flow* out, uint64_t* control_out) const {
  if (slot >= slot_count()) return false;
  const std::atomic<uint64_t>& word = control(slot);
  // Pairs with the release store that published the entry.
  const uint64_t before = word.load(std::memory_order_acquire);
  if (slot_state(before) != kLive || version_of(before) != version) return false;
  const FlowEntryKind kind = kind_of(before);
  if (kind == FlowEntryKind::reverse) return false;
  const Entry& entry = entries_[slot];
  uint64_t key_words[5];
  // kEntryLoad pairs with a recycling inserter's kEntryStore (see key_matches).
  for (int i = 0; i < 5; ++i) key_words[i] = entry.key[i].load(kEntryLoad);
  const uint32_t last_seen = entry.last_seen_ms.load(kEntryLoad);
  const uint32_t backend = entry.backend_id.load(kEntryLoad);
  const uint32_t peer = entry.peer_slot.load(kEntryLoad);
  const uint64_t path = entry.client_path.load(kEntryLoad);
  // Relaxed: ordered after the acquire loads above.
  const uint64_t after = word.load(std::memory_order_relaxed);
  if (slot_state(after) != kLive || version_of(after) != version) return false;

  out->handle = FlowHandle{slot, version};
  out->kind = kind;
  out->matched = FlowDirection::original;
  out->state = flow_state_of(after);
  out->backend_id = backend;
  out->last_seen_ms = last_seen;
  std::memcpy(&out->key, key_words, sizeof(out->key));
  if (kind == FlowEntryKind::persistence_template) {
    out->has_reverse = false;
    out->template_timeout_ms = peer;
    out->ingress_port = 0;
    std::memset(out->client_mac, 0, sizeof(out->client_mac));
  } else {
    out->has_reverse = peer != kNoPeer;
    out->template_timeout_ms = 0;
    unpack_client_path(path, out->client_mac, &out->ingress_port);
  }
  if (control_out) *control_out = after;
  return true;
}

bool FlowTable::read_link(uint32_t slot, uint64_t control_word, uint32_t* peer_slot, uint32_t* peer_version) const {
  const Entry& entry = entries_[slot];
  // kEntryLoad pairs with a recycling inserter's kEntryStore (see key_matches).
  *peer_slot = entry.peer_slot.load(kEntryLoad);
  *peer_version = entry.peer_version.load(kEntryLoad);
  // Relaxed: ordered after the acquire loads above.
  const uint64_t now_control = control(slot).load(std::memory_order_relaxed);
  return slot_state(now_control) == kLive && version_of(now_control) == version_of(control_word) &&
         *peer_slot < slot_count();
}

bool FlowTable::read_reverse_key(uint32_t slot, uint32_t version, FlowKey* out) const {
  if (slot >= slot_count()) return false;
  const std::atomic<uint64_t>& word = control(slot);
  // Pairs with the release store that published the reverse entry.
  const uint64_t before = word.load(std::memory_order_acquire);
  if (slot_state(before) != kLive || version_of(before) != version || kind_of(before) != FlowEntryKind::reverse) {
    return false;
  }
  uint64_t key_words[5];
  // kEntryLoad pairs with a recycling inserter's kEntryStore (see key_matches).
  for (int i = 0; i < 5; ++i) key_words[i] = entries_[slot].key[i].load(kEntryLoad);
  // Relaxed: ordered after the acquire loads above.
  const uint64_t after = word.load(std::memory_order_relaxed);
  if (slot_state(after) != kLive || version_of(after) != version) return false;
  std::memcpy(out, key_words, sizeof(*out));
  return true;
}

bool FlowTable::is_expired(uint64_t control_word, uint32_t slot, uint32_t now) const {
  const Entry& entry = entries_[slot];
  // Relaxed: an expiry decision is acted on only through a CAS on the control
  // word the caller loaded with acquire, which fails if the slot was recycled.
  const uint32_t last_seen = entry.last_seen_ms.load(std::memory_order_relaxed);
  const uint32_t timeout = kind_of(control_word) == FlowEntryKind::persistence_template
                               ? std::min(entry.peer_slot.load(std::memory_order_relaxed), kMaxTimeoutMs)
                               : timeouts_.for_state(flow_state_of(control_word));
  return age_ms(now, last_seen) > timeout;
}

bool FlowTable::flow_expired(const Flow& flow, uint32_t now) const {
  const uint32_t timeout = flow.kind == FlowEntryKind::persistence_template
                               ? std::min(flow.template_timeout_ms, kMaxTimeoutMs)
                               : timeouts_.for_state(flow.state);
  return age_ms(now, flow.last_seen_ms) > timeout;
}

// ---------------------------------------------------------------------------
// Deletion

bool FlowTable::delete_entry(uint32_t slot, uint64_t expected_control) {
  const Entry& entry = entries_[slot];
  // Read what the deletion needs before the CAS: once the slot is EMPTY, a new
  // claimant may overwrite it. A successful CAS proves these reads belong to
  // the incarnation named by `expected_control` (versions never repeat).
  const uint32_t peer = entry.peer_slot.load(std::memory_order_relaxed);
  const uint32_t peer_version = entry.peer_version.load(std::memory_order_relaxed);
  const uint32_t backend = entry.backend_id.load(std::memory_order_relaxed);
  uint64_t expected = expected_control;
  // acq_rel: the release half orders the reads above before the slot is handed
  // to the next claimant (whose claim CAS acquires it); the acquire half pairs
  // with whoever changed the word last.
  if (!control(slot).compare_exchange_strong(expected, empty_control(version_of(expected_control) + 1),
                                             std::memory_order_acq_rel, std::memory_order_relaxed)) {
    return false;
  }
  if (kind_of(expected_control) != FlowEntryKind::forward) return true;
  if (peer < slot_count()) {
    std::atomic<uint64_t>& peer_word = control(peer);
    // Pairs with the release store that published the reverse entry.
    uint64_t peer_control = peer_word.load(std::memory_order_acquire);
    if (slot_state(peer_control) == kLive && version_of(peer_control) == peer_version &&
        kind_of(peer_control) == FlowEntryKind::reverse) {
      // Fails only if a sweep already removed it as an orphan: nothing to do then.
      peer_word.compare_exchange_strong(peer_control, empty_control(peer_version + 1), std::memory_order_acq_rel,
                                        std::memory_order_relaxed);
    }
  }
  if (events_.flow_removed) events_.flow_removed(events_.context, backend);
  return true;
}

bool FlowTable::delete_orphan_reverse(uint32_t slot, uint64_t expected_control) {
  uint64_t expected = expected_control;
  // acq_rel: as in delete_entry.
  return control(slot).compare_exchange_strong(expected, empty_control(version_of(expected_control) + 1),
                                               std::memory_order_acq_rel, std::memory_order_relaxed);
}

// For a live entry, the entry that owns it: itself, or for a reverse entry its
// forward entry. Returns false with *owner_slot = kNoPeer for an orphan (its
// forward entry is gone) and false with the forward's slot when the forward is
// not live yet (still being inserted) or the entry changed under us.
bool FlowTable::resolve_owner(uint32_t slot, uint64_t control_word, uint32_t* owner_slot,
                              uint64_t* owner_control) const {
  if (kind_of(control_word) != FlowEntryKind::reverse) {
    *owner_slot = slot;
    *owner_control = control_word;
    return true;
  }
  uint32_t peer;
  uint32_t peer_version;
  if (!read_link(slot, control_word, &peer, &peer_version)) {
    *owner_slot = slot;  // changed under us: not an orphan, just skip it
    return false;
  }
  // Pairs with the release store that published the forward entry.
  const uint64_t peer_control = control(peer).load(std::memory_order_acquire);
  *owner_control = peer_control;
  if (version_of(peer_control) != peer_version) {
    *owner_slot = kNoPeer;
    return false;
  }
  *owner_slot = peer;
  return slot_state(peer_control) == kLive && kind_of(peer_control) == FlowEntryKind::forward;
}

bool FlowTable::evict_one(const Probe& probe, uint32_t now, FlowCounters& counters) {
  // Victims, in order: the oldest half-open flow (under a SYN flood these are
  // the attacker's, and a real client retransmits its SYN), then the oldest
  // entry whose timeout has passed but which no sweep has reached yet.
  uint32_t half_open_slot = kNoPeer;
  uint64_t half_open_control = 0;
  uint32_t half_open_age = 0;
  uint32_t expired_slot = kNoPeer;
  uint64_t expired_control = 0;
  uint32_t expired_age = 0;
  for (uint32_t bucket : probe.bucket) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      const uint32_t slot = bucket * kSlotsPerBucket + i;
      // Pairs with the release store that published the entry.
      const uint64_t word = control(slot).load(std::memory_order_acquire);
      if (slot_state(word) != kLive) continue;
      uint32_t owner;
      uint64_t owner_control;
      if (!resolve_owner(slot, word, &owner, &owner_control)) {
        if (owner == kNoPeer && delete_orphan_reverse(slot, word)) return true;
        continue;
      }
      // Relaxed: only ranks victims; delete_entry's CAS decides.
      const uint32_t age = age_ms(now, entries_[owner].last_seen_ms.load(std::memory_order_relaxed));
      if (kind_of(owner_control) == FlowEntryKind::forward &&
          flow_state_of(owner_control) == FlowState::tcp_syn_seen) {
        if (half_open_slot == kNoPeer || age > half_open_age) {
          half_open_slot = owner;
          half_open_control = owner_control;
          half_open_age = age;
        }
      } else if (is_expired(owner_control, owner, now)) {
        if (expired_slot == kNoPeer || age > expired_age) {
          expired_slot = owner;
          expired_control = owner_control;
          expired_age = age;
        }
      }
    }
  }
  if (half_open_slot != kNoPeer) {
    if (delete_entry(half_open_slot, half_open_control)) FlowCounters::bump(counters.evictions_half_open);
    return true;  // freed a slot, or the victim changed: either way, look again
  }
  if (expired_slot != kNoPeer) {
    if (delete_entry(expired_slot, expired_control)) FlowCounters::bump(counters.evictions_expired);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Insertion

bool FlowTable::try_claim(const Probe& probe, FlowEntryKind kind, FlowState state, Claim* claim) {
  // Prefer the emptier bucket: the "power of two choices" that keeps buckets
  // from overflowing long before the table is full.
  uint32_t empties[2] = {0, 0};
  for (int b = 0; b < 2; ++b) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      // Relaxed: only a hint for choosing; the CAS below decides.
      empties[b] += slot_state(controls_[probe.bucket[b]].word[i].load(std::memory_order_relaxed)) == kEmpty;
    }
  }
  const int first = empties[1] > empties[0] ? 1 : 0;
  for (int pass = 0; pass < 2; ++pass) {
    const uint32_t bucket = probe.bucket[pass == 0 ? first : 1 - first];
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      std::atomic<uint64_t>& word = controls_[bucket].word[i];
      // Relaxed: the CAS below re-reads the word.
      uint64_t seen = word.load(std::memory_order_relaxed);
      if (slot_state(seen) != kEmpty) continue;
      const uint32_t version = version_of(seen) + 1;
      const uint64_t claimed = make_control(version, kClaimed, kind, state, probe.tag);
      // seq_cst: this claim and the scan that follows it (insert_entries) must
      // be in one total order with every other inserter's claim and scan, so
      // that of two claimants of one key the later one sees the earlier.
      if (word.compare_exchange_strong(seen, claimed, std::memory_order_seq_cst, std::memory_order_relaxed)) {
        claim->slot = bucket * kSlotsPerBucket + i;
        claim->version = version;
        claim->claimed = claimed;
        return true;
      }
    }
  }
  return false;
}

void FlowTable::abandon(const Claim& claim) {
  // Nobody else writes a claimed word. Release pairs with the acquire loads of
  // scanners that were waiting for this claim to resolve.
  control(claim.slot).store(empty_control(claim.version + 1), std::memory_order_release);
}

bool FlowTable::wait_for_change(uint32_t slot, uint64_t seen) const {
  for (int spin = 0; spin < kPendingSpinLimit; ++spin) {
    // Pairs with the claimant's release store (publish or abandon).
    if (control(slot).load(std::memory_order_acquire) != seen) return true;
    cpu_relax();
  }
  return false;
}

FlowInsertResult FlowTable::insert_entries(const FlowKey* keys, const uint64_t* hashes, size_t count,
                                           const NewFlow& flow, FlowEntryKind primary_kind, uint32_t backend_id,
                                           uint32_t template_timeout_ms, uint64_t now_ms, FlowCounters& counters,
                                           Flow* out) {
  const uint32_t now = static_cast<uint32_t>(now_ms);
  Flow scratch;
  if (out == nullptr) out = &scratch;
  if (count == 2 && keys[0] == keys[1]) {
    FlowCounters::bump(counters.insert_reverse_exists);
    out->handle = FlowHandle{};
    return FlowInsertResult::reverse_exists;
  }
  KeyWords words[2];
  Probe probes[2];
  for (size_t k = 0; k < count; ++k) {
    std::memcpy(words[k].w, &keys[k], sizeof(FlowKey));
    probes[k] = probe_for(hashes[k]);
  }

  for (int attempt = 0; attempt < kMaxInsertAttempts; ++attempt) {
    // 1. Is either key tracked already, or being inserted by another thread?
    bool look_again = false;
    for (size_t k = 0; k < count && !look_again; ++k) {
      const ScanResult found = scan<std::memory_order_acquire>(probes[k], words[k], nullptr, 0);
      if (found.found == Found::pending) {
        if (!wait_for_change(found.slot, found.control)) {
          FlowCounters::bump(counters.insert_contended);
          return FlowInsertResult::contended;
        }
        look_again = true;
      } else if (found.found == Found::match) {
        uint32_t owner;
        uint64_t owner_control;
        if (!resolve_owner(found.slot, found.control, &owner, &owner_control)) {
          if (owner == kNoPeer) {
            delete_orphan_reverse(found.slot, found.control);
          } else if (owner != found.slot && !wait_for_change(owner, owner_control)) {
            // A reverse entry whose forward entry is about to be published.
            FlowCounters::bump(counters.insert_contended);
            return FlowInsertResult::contended;
          }
          look_again = true;
          continue;
        }
        if (!read_flow(owner, version_of(owner_control), out, &owner_control)) {
          look_again = true;
          continue;
        }
        if (flow_expired(*out, now)) {
          if (delete_entry(owner, owner_control)) FlowCounters::bump(counters.expired);
          look_again = true;
          continue;
        }
        if (out->key == keys[0]) {
          // Our own flow, published by another thread between our scans of the
          // two keys: found through its reverse entry.
          out->matched = FlowDirection::original;
          FlowCounters::bump(counters.insert_exists);
          return FlowInsertResult::exists;
        }
        if (kind_of(found.control) == FlowEntryKind::reverse) {
          out->matched = FlowDirection::reply;
          out->reverse_key = keys[k];
        }
        if (k == 0) {
          FlowCounters::bump(counters.insert_exists);
          return FlowInsertResult::exists;
        }
        FlowCounters::bump(counters.insert_reverse_exists);
        return FlowInsertResult::reverse_exists;
      }
    }
    if (look_again) continue;

    // 2. Claim a slot for each key, evicting when both buckets are full.
    Claim claims[2] = {};
    size_t claimed = 0;
    for (size_t k = 0; k < count; ++k) {
      const FlowEntryKind kind = k == 0 ? primary_kind : FlowEntryKind::reverse;
      const FlowState state = k == 0 ? flow.state : FlowState::other;
      bool ok = try_claim(probes[k], kind, state, &claims[k]);
      for (int eviction = 0; !ok && eviction < 3; ++eviction) {
        if (!evict_one(probes[k], now, counters)) break;
        ok = try_claim(probes[k], kind, state, &claims[k]);
      }
      if (!ok) {
        for (size_t j = 0; j < claimed; ++j) abandon(claims[j]);
        FlowCounters::bump(counters.insert_failed_full);
        return FlowInsertResult::full;
      }
      ++claimed;
    }

    // 3. Did another thread claim or publish the same key meanwhile? Of two
    // concurrent claimants the later one's seq_cst scan sees the earlier claim
    // (or its publication), so at most one of them gets past this point.
    bool conflict = false;
    for (size_t k = 0; k < count && !conflict; ++k) {
      conflict = scan<std::memory_order_seq_cst>(probes[k], words[k], claims, claimed).found != Found::none;
    }
    if (conflict) {
      for (size_t j = 0; j < claimed; ++j) abandon(claims[j]);
      // Claimants that saw each other both back off; different slots give
      // different delays, so they do not meet again in lockstep.
      const int spins = 16 * (attempt + 1) + static_cast<int>(claims[0].slot % 61);
      for (int spin = 0; spin < spins; ++spin) cpu_relax();
      continue;
    }

    // 4. Write the entries. kEntryStore (release) pairs with the kEntryLoad of
    // seqlock readers still reading the slot's previous incarnation: whoever
    // sees one of these values also sees the claim that bumped the version.
    Entry& primary = entries_[claims[0].slot];
    for (int i = 0; i < 5; ++i) primary.key[i].store(words[0].w[i], kEntryStore);
    primary.last_seen_ms.store(now, kEntryStore);
    primary.backend_id.store(backend_id, kEntryStore);
    if (primary_kind == FlowEntryKind::persistence_template) {
      primary.peer_slot.store(std::min(template_timeout_ms, kMaxTimeoutMs), kEntryStore);
      primary.peer_version.store(0, kEntryStore);
      primary.client_path.store(0, kEntryStore);
    } else {
      primary.peer_slot.store(count == 2 ? claims[1].slot : kNoPeer, kEntryStore);
      primary.peer_version.store(count == 2 ? claims[1].version : 0, kEntryStore);
      primary.client_path.store(pack_client_path(flow.client_mac, flow.ingress_port), kEntryStore);
    }
    if (count == 2) {
      Entry& reverse = entries_[claims[1].slot];
      for (int i = 0; i < 5; ++i) reverse.key[i].store(words[1].w[i], kEntryStore);
      reverse.last_seen_ms.store(now, kEntryStore);
      reverse.backend_id.store(backend_id, kEntryStore);
      reverse.peer_slot.store(claims[0].slot, kEntryStore);
      reverse.peer_version.store(claims[0].version, kEntryStore);
      reverse.client_path.store(0, kEntryStore);
    }

    // 5. Publish: the reverse entry first, so that a live forward entry always
    // has a live reverse entry (fullnat reads its local port from there). The
    // active-flow hook runs before the flow is visible, so that a remover on
    // another thread can never decrement before the increment.
    if (primary_kind == FlowEntryKind::forward && events_.flow_added) {
      events_.flow_added(events_.context, backend_id);
    }
    for (size_t k = count; k-- > 0;) {
      // Release pairs with the acquire load of every reader of this word.
      control(claims[k].slot)
          .store((claims[k].claimed & ~kSlotStateMask) | kLive, std::memory_order_release);
    }
    FlowCounters::bump(counters.inserts);

    out->handle = FlowHandle{claims[0].slot, claims[0].version};
    out->kind = primary_kind;
    out->matched = FlowDirection::original;
    out->state = primary_kind == FlowEntryKind::forward ? flow.state : FlowState::other;
    out->has_reverse = count == 2;
    out->backend_id = backend_id;
    out->last_seen_ms = now;
    out->key = keys[0];
    if (primary_kind == FlowEntryKind::persistence_template) {
      out->template_timeout_ms = std::min(template_timeout_ms, kMaxTimeoutMs);
      out->ingress_port = 0;
      std::memset(out->client_mac, 0, sizeof(out->client_mac));
    } else {
      out->template_timeout_ms = 0;
      out->ingress_port = flow.ingress_port;
      std::memcpy(out->client_mac, flow.client_mac, sizeof(out->client_mac));
    }
    if (count == 2) out->reverse_key = keys[1];
    return FlowInsertResult::inserted;
  }
  FlowCounters::bump(counters.insert_contended);
  return FlowInsertResult::contended;
}

FlowInsertResult FlowTable::insert(const NewFlow& flow, uint64_t hash, uint64_t now_ms, FlowCounters& counters,
                                   Flow* out) {
  const FlowKey keys[2] = {flow.key, flow.reverse_key};
  const uint64_t hashes[2] = {hash, flow.track_reverse ? this->hash(flow.reverse_key) : 0};
  return insert_entries(keys, hashes, flow.track_reverse ? 2 : 1, flow, FlowEntryKind::forward, flow.backend_id, 0,
                        now_ms, counters, out);
}

FlowInsertResult FlowTable::insert_template(const FlowKey& template_key, uint64_t hash, uint32_t backend_id,
                                            uint32_t timeout_ms, uint64_t now_ms, FlowCounters& counters,
                                            Flow* out) {
  NewFlow shape;
  shape.key = template_key;
  return insert_entries(&template_key, &hash, 1, shape, FlowEntryKind::persistence_template, backend_id, timeout_ms,
                        now_ms, counters, out);
}

// ---------------------------------------------------------------------------
// Lookup and updates

bool FlowTable::lookup(const FlowKey& key, uint64_t hash, uint64_t now_ms, FlowCounters& counters, Flow* out,
                       bool want_reverse_key) {
  const uint32_t now = static_cast<uint32_t>(now_ms);
  KeyWords words;
  std::memcpy(words.w, &key, sizeof(key));
  const Probe probe = probe_for(hash);
  for (int attempt = 0; attempt < kReadRetries; ++attempt) {
    const ScanResult found = scan<std::memory_order_acquire>(probe, words, nullptr, 0);
    if (found.found != Found::match) break;
    uint32_t owner;
    uint64_t owner_control;
    if (!resolve_owner(found.slot, found.control, &owner, &owner_control)) {
      // The flow is gone (or still being published): a miss. Clear an orphan
      // reverse entry right away so that the next reply does not find it.
      if (owner == kNoPeer) delete_orphan_reverse(found.slot, found.control);
      if (owner == kNoPeer || owner == found.slot) continue;
      break;
    }
    if (!read_flow(owner, version_of(owner_control), out, &owner_control)) continue;
    if (flow_expired(*out, now)) {
      if (delete_entry(owner, owner_control)) FlowCounters::bump(counters.expired);
      break;
    }
    if (kind_of(found.control) == FlowEntryKind::reverse) {
      out->matched = FlowDirection::reply;
      out->reverse_key = key;
    } else if (want_reverse_key && out->has_reverse) {
      uint32_t peer;
      uint32_t peer_version;
      if (!read_link(owner, owner_control, &peer, &peer_version) ||
          !read_reverse_key(peer, peer_version, &out->reverse_key)) {
        continue;  // deleted while we read it
      }
    }
    FlowCounters::bump(counters.lookup_hits);
    return true;
  }
  FlowCounters::bump(counters.lookup_misses);
  return false;
}

void FlowTable::touch(const FlowHandle& handle, uint64_t now_ms) {
  if (handle.slot >= slot_count()) return;
  // Relaxed: a stale handle may store into a recycled slot, which only makes a
  // new entry look younger by the time since its insert; nothing is published.
  const uint64_t word = control(handle.slot).load(std::memory_order_relaxed);
  if (version_of(word) != handle.version || slot_state(word) != kLive) return;
  std::atomic<uint32_t>& last_seen = entries_[handle.slot].last_seen_ms;
  const uint32_t now = static_cast<uint32_t>(now_ms);
  // Skip the store when the stamp would not move, so that a busy flow does not
  // dirty its line on every packet, nor move it backwards when another worker's
  // clock read is slightly older.
  if (static_cast<int32_t>(now - last_seen.load(std::memory_order_relaxed)) > 0) {
    last_seen.store(now, std::memory_order_relaxed);
  }
}

FlowState FlowTable::observe_tcp(const FlowHandle& handle, FlowState previous, uint8_t tcp_flags,
                                 FlowDirection direction, uint64_t now_ms) {
  if (handle.slot >= slot_count()) return previous;
  touch(handle, now_ms);
  std::atomic<uint64_t>& word = control(handle.slot);
  // Relaxed: the CAS below re-reads the word; the state bits publish no data.
  uint64_t current = word.load(std::memory_order_relaxed);
  for (;;) {
    if (version_of(current) != handle.version || slot_state(current) != kLive ||
        kind_of(current) != FlowEntryKind::forward) {
      return previous;
    }
    const FlowState state = flow_state_of(current);
    const FlowState next = next_tcp_state(state, tcp_flags, direction);
    if (next == state) return state;
    // Relaxed: the state bits publish no data. The version in the expected value
    // is what keeps a stale handle from changing a recycled slot.
    if (word.compare_exchange_weak(current, with_flow_state(current, next), std::memory_order_relaxed,
                                   std::memory_order_relaxed)) {
      return next;
    }
  }
}

bool FlowTable::remove(const FlowHandle& handle, FlowCounters& counters) {
  if (handle.slot >= slot_count()) return false;
  // Pairs with the release store that published the entry (delete_entry reads it).
  uint64_t current = control(handle.slot).load(std::memory_order_acquire);
  for (;;) {
    if (version_of(current) != handle.version || slot_state(current) != kLive ||
        kind_of(current) == FlowEntryKind::reverse) {
      return false;
    }
    if (delete_entry(handle.slot, current)) {
      FlowCounters::bump(counters.removed);
      return true;
    }
    // Only the TCP state bits can have changed with the version intact: retry.
    current = control(handle.slot).load(std::memory_order_acquire);
  }
}

size_t FlowTable::expire_step(uint64_t now_ms, size_t max_slots, FlowCounters& counters) {
  const uint32_t now = static_cast<uint32_t>(now_ms);
  const size_t total = slot_count();
  max_slots = std::min(max_slots, total);
  // Relaxed: the cursor only spreads the work between workers; a range swept
  // twice or late costs time, not correctness.
  size_t slot = static_cast<size_t>(sweep_cursor_.fetch_add(max_slots, std::memory_order_relaxed) % total);
  size_t expired = 0;
  for (size_t n = 0; n < max_slots; ++n, slot = slot + 1 == total ? 0 : slot + 1) {
    const uint32_t index = static_cast<uint32_t>(slot);
    // Pairs with the release store that published the entry.
    const uint64_t word = control(index).load(std::memory_order_acquire);
    if (slot_state(word) != kLive) continue;
    if (kind_of(word) == FlowEntryKind::reverse) {
      uint32_t owner;
      uint64_t owner_control;
      if (!resolve_owner(index, word, &owner, &owner_control) && owner == kNoPeer) {
        delete_orphan_reverse(index, word);
      }
      continue;
    }
    if (is_expired(word, index, now) && delete_entry(index, word)) {
      FlowCounters::bump(counters.expired);
      ++expired;
    }
  }
  return expired;
}

// ---------------------------------------------------------------------------
// Introspection

FlowOccupancy FlowTable::occupancy() const {
  FlowOccupancy result;
  for (uint32_t slot = 0; slot < slot_count(); ++slot) {
    // Acquire pairs with the publishing release store (a snapshot for stats).
    const uint64_t word = control(slot).load(std::memory_order_acquire);
    if (slot_state(word) == kClaimed) ++result.claimed;
    if (slot_state(word) != kLive) continue;
    switch (kind_of(word)) {
      case FlowEntryKind::forward:
        ++result.forward;
        break;
      case FlowEntryKind::reverse:
        ++result.reverse;
        break;
      case FlowEntryKind::persistence_template:
        ++result.templates;
        break;
    }
  }
  return result;
}

bool FlowTable::inspect(uint32_t slot, FlowSlotInfo* out) const {
  if (slot >= slot_count()) return false;
  // Pairs with the release store that published the entry.
  const uint64_t word = control(slot).load(std::memory_order_acquire);
  const Entry& entry = entries_[slot];
  out->live = slot_state(word) == kLive;
  out->kind = kind_of(word);
  out->state = flow_state_of(word);
  out->version = version_of(word);
  // Relaxed: introspection for tests, not validated like read_flow.
  uint64_t key_words[5];
  for (int i = 0; i < 5; ++i) key_words[i] = entry.key[i].load(std::memory_order_relaxed);
  std::memcpy(&out->key, key_words, sizeof(out->key));
  out->backend_id = entry.backend_id.load(std::memory_order_relaxed);
  out->last_seen_ms = entry.last_seen_ms.load(std::memory_order_relaxed);
  out->peer_slot = entry.peer_slot.load(std::memory_order_relaxed);
  out->peer_version = entry.peer_version.load(std::memory_order_relaxed);
  return out->live;
}

}  // namespace l4lb::core

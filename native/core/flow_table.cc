#include "core/flow_table.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/checksum.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels refuse it and the pages are touched instead
#endif

namespace l4lb::core {

namespace {

// ---------------------------------------------------------------------------
// Slot layout
//
// A slot is four 64-bit words: the control word, then payload words P0..P2.
// Control word (host order, private to the process):
//   [1:0]   slot state: kEmpty, kClaimed (a writer owns it), kLive, kTail (the
//           second slot of a wide entry)
//   [4:2]   entry kind (Kind below)
//   [7:5]   FlowState (forward entries)          | compact IPv6 reverse:
//   [15:8]  IP protocol (not compact reverses)   |   [15:5]  11-bit tag of the reply key's hash
//   [19:16] flags (forward entries)              |   [31:16] the reply's source (backend) port
//   [31:20] ingress path index (forward entries) |
//   [63:32] version: +1 when the slot is claimed and when it is freed, never
//           on publication or a TCP state change
// A tail's control word keeps the tail slot's own version and carries the
// entry's destination port in [31:16].
//
// P2 of the first (head) slot is the entry's mutable word, the one touch()
// writes with a CAS:
//   forward:  last seen (ms) | reply slot << 32 (kNoReverse: none)
//   template: last seen (ms) | timeout (ms) << 32
//   reverse:  link = forward slot | (forward version | kMarker) << 32
// Bit 63 of a forward or template word is always zero (its upper half is
// below 2^31); every other word that can sit at a head P2 (a link, a tail's
// P2) has it set. So a stale handle's late CAS, which expects the value it
// read from a forward or template, can only ever succeed on a forward or
// template: it makes that entry look younger and changes nothing else. (The
// price: a link compares the forward version's low 31 bits.)
//
// Narrow entry (IPv4 forward, reverse, template), one slot:
//   P0 = source address | destination address << 32 (network-order bytes)
//   P1 = source port | destination port << 16 | backend id << 32
//   P2 = the mutable word
// Wide entry (IPv6 forward, fullnat reverse, template): an aligned pair of
// slots, head H and tail T:
//   H.P0, H.P1 = source address; H.P2 = the mutable word;
//   T.P0, T.P1 = destination address; T.P2 = source port | backend id << 16 | kMarker;
//   destination port in T's control word.
// Compact IPv6 reverse entry (nat: the reply goes to the client), one slot:
//   P0, P1 = the reply's source (backend) address; P2 = link; its source port
//   and a tag in the control word; its destination is its forward key's source.
constexpr int kControl = 0;
constexpr int kP0 = 1;
constexpr int kP1 = 2;
constexpr int kP2 = 3;
constexpr uint32_t kWordsPerSlot = 4;
static_assert(kWordsPerSlot * sizeof(uint64_t) == FlowTable::kSlotBytes);

constexpr uint64_t kStateMask = 0x3;
constexpr uint64_t kEmpty = 0;
constexpr uint64_t kClaimed = 1;
constexpr uint64_t kLive = 2;
constexpr uint64_t kTail = 3;

enum Kind : uint8_t {
  kForward4 = 0,
  kReverse4 = 1,
  kTemplate4 = 2,
  kForward6 = 3,
  kReverse6 = 4,         // wide: the whole reply tuple (fullnat)
  kReverse6Compact = 5,  // narrow: the reply goes back to the forward key's source (nat)
  kTemplate6 = 6,
};

constexpr int kKindShift = 2;
constexpr int kTcpShift = 5;
constexpr int kProtocolShift = 8;
constexpr int kFlagsShift = 16;
constexpr int kPathShift = 20;
constexpr int kTagShift = 5;
constexpr uint32_t kTagMask = 0x7ff;
constexpr int kCompactPortShift = 16;
constexpr int kVersionShift = 32;
constexpr uint32_t kNoPath = 0xfff;  // 12 bits all ones
static_assert(FlowTable::kIngressPaths < kNoPath);

constexpr uint32_t kNoSlot = UINT32_MAX;
constexpr uint32_t kNoReverse = 0x7fffffff;  // a forward's reply slot when it has none (never a slot index)
static_assert(FlowTable::kMaxSlots <= kNoReverse);
constexpr uint32_t kMaxTimeoutMs = 0x7fffffff;
constexpr uint64_t kMarker = uint64_t{1} << 63;  // set in every head-P2 candidate that is not a forward/template word
constexpr int kTailPortShift = 16;
constexpr uint32_t kStripes = 4096;

// How long to spin for a stripe lock held by another inserter. A lock is held
// for the time to place one flow (or, near full, a few moves): this is only
// exhausted when the holder was preempted.
constexpr int kLockSpins = 2048;
// How long to wait for a slot a writer owns (CLAIMED) to be published.
constexpr int kPendingSpins = 1024;
// Retries of a read that raced a writer.
constexpr int kReadRetries = 4;
// Insert attempts when found entries keep changing under the insert.
constexpr int kInsertAttempts = 4;
// Cuckoo search: buckets examined breadth first, and rounds of moves/evictions.
constexpr int kMaxBfsNodes = 64;
constexpr int kMaxBfsDepth = 5;
// Evictions per insert: enough to empty both candidate buckets, so that a wide
// entry gets an aligned pair whenever evictable entries make one.
constexpr int kRoomRounds = 2 * FlowTable::kSlotsPerBucket;
// Probes of the ingress-path table (double hashing over a prime size: at 90%
// occupancy one new path in a thousand is not placed).
constexpr uint32_t kPathProbes = 64;

inline uint64_t state_of(uint64_t control) { return control & kStateMask; }
inline Kind kind_of(uint64_t control) { return static_cast<Kind>((control >> kKindShift) & 0x7); }
inline FlowState tcp_state_of(uint64_t control) { return static_cast<FlowState>((control >> kTcpShift) & 0x7); }
inline uint8_t protocol_of(uint64_t control) { return static_cast<uint8_t>(control >> kProtocolShift); }
inline uint8_t flags_of(uint64_t control) { return static_cast<uint8_t>((control >> kFlagsShift) & kFlowFlagsMask); }
inline uint32_t path_of_control(uint64_t control) { return static_cast<uint32_t>(control >> kPathShift) & 0xfff; }
inline uint32_t tag_of(uint64_t control) { return static_cast<uint32_t>(control >> kTagShift) & kTagMask; }
inline uint16_t compact_port_of(uint64_t control) { return static_cast<uint16_t>(control >> kCompactPortShift); }
inline uint32_t version_of(uint64_t control) { return static_cast<uint32_t>(control >> kVersionShift); }
inline uint64_t with_version(uint64_t control, uint32_t version) {
  return (control & 0xffffffffull) | (static_cast<uint64_t>(version) << kVersionShift);
}
inline uint64_t with_state(uint64_t control, uint64_t state) { return (control & ~kStateMask) | state; }
inline uint64_t empty_control(uint32_t version) { return static_cast<uint64_t>(version) << kVersionShift; }
inline uint64_t tail_control(uint32_t version) { return empty_control(version) | kTail; }
inline uint64_t with_tcp_state(uint64_t control, FlowState state) {
  return (control & ~(uint64_t{0x7} << kTcpShift)) | (static_cast<uint64_t>(state) << kTcpShift);
}
// Live with this version: what a seqlock reader re-checks (the TCP state may change).
inline bool same_live(uint64_t now, uint64_t seen) {
  return state_of(now) == kLive && version_of(now) == version_of(seen);
}

inline bool is_forward(Kind kind) { return kind == kForward4 || kind == kForward6; }
inline bool is_reverse(Kind kind) { return kind == kReverse4 || kind == kReverse6 || kind == kReverse6Compact; }
inline bool is_template(Kind kind) { return kind == kTemplate4 || kind == kTemplate6; }
inline bool is_wide(Kind kind) { return kind == kForward6 || kind == kReverse6 || kind == kTemplate6; }
inline uint32_t width_of(Kind kind) { return is_wide(kind) ? 2 : 1; }
inline FlowEntryKind public_kind(Kind kind) {
  if (is_reverse(kind)) return FlowEntryKind::reverse;
  if (is_template(kind)) return FlowEntryKind::persistence_template;
  return FlowEntryKind::forward;
}

inline uint32_t low32(uint64_t word) { return static_cast<uint32_t>(word); }
inline uint32_t high32(uint64_t word) { return static_cast<uint32_t>(word >> 32); }

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

inline uint64_t load_word(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t load_word32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The seqlock, without standalone fences (ThreadSanitizer does not model
// them): a writer stores the payload with release after its claim CAS, and
// readers load it with acquire before re-checking the control word. A reader
// that sees any word of a recycling writer therefore also sees its claim (the
// bumped version) in the re-check. Both are plain moves on x86.
constexpr std::memory_order kPayloadStore = std::memory_order_release;
constexpr std::memory_order kPayloadLoad = std::memory_order_acquire;

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
// Internal records

// A key as the slots store it.
struct FlowTable::KeyCode {
  bool v6 = false;
  bool is_template = false;
  uint8_t protocol = 0;
  uint32_t ports = 0;  // source | destination << 16
  uint64_t a[4] = {};  // IPv4: a[0] = source | destination << 32; IPv6: source a[0..1], destination a[2..3]

  explicit KeyCode(const FlowKey& key) {
    v6 = key.family == FlowKey::kIpv6;
    is_template = key.space == FlowKey::kPersistenceTemplate;
    protocol = key.protocol;
    ports = static_cast<uint32_t>(key.src_port) | (static_cast<uint32_t>(key.dst_port) << 16);
    if (v6) {
      a[0] = load_word(key.src_addr);
      a[1] = load_word(key.src_addr + 8);
      a[2] = load_word(key.dst_addr);
      a[3] = load_word(key.dst_addr + 8);
    } else {
      a[0] = static_cast<uint64_t>(load_word32(key.src_addr)) |
             (static_cast<uint64_t>(load_word32(key.dst_addr)) << 32);
    }
  }
  uint16_t src_port() const { return static_cast<uint16_t>(ports); }
  uint16_t dst_port() const { return static_cast<uint16_t>(ports >> 16); }
};

// A reverse entry's forward entry (an entry that is not a reverse owns itself).
struct FlowTable::Owner {
  uint32_t slot = kNoSlot;
  uint64_t control = 0;
};

// A live slot whose key matched. For compact IPv6 reverse entries the match
// needs the forward entry, which find() resolved on the way.
struct FlowTable::Found {
  uint32_t slot = kNoSlot;
  uint64_t control = 0;
  uint64_t p1 = 0;  // a narrow entry's P1 (ports | backend id), as the match read it
  bool owner_known = false;
  Owner owner;
};

// The stripes held: an insert's (taken in ascending order) and, appended
// after them, those a move takes for itself with a single try.
struct FlowTable::Locks {
  static constexpr size_t kMax = 8;
  uint32_t stripe[kMax];
  size_t count = 0;
  bool holds(uint32_t s) const {
    for (size_t i = 0; i < count; ++i) {
      if (stripe[i] == s) return true;
    }
    return false;
  }
};

struct FlowTable::Claim {
  uint32_t slot = kNoSlot;
  uint32_t version = 0;       // of the head slot, kept when it is published
  uint32_t tail_version = 0;  // wide entries
  uint32_t width = 1;
};

struct FlowTable::BfsNode {
  uint32_t bucket;
  uint32_t need;    // slots wanted in `bucket`: 1, or 2 (an aligned pair)
  int parent;       // the node whose bucket `victim` leaves, or -1
  uint32_t victim;  // head slot, in the parent's bucket, that moves into `bucket`
  uint64_t victim_control;
  int depth;
};

enum class FlowTable::Resolve : uint8_t {
  ok,      // *owner is the live forward entry
  orphan,  // the forward entry is gone: the reverse entry may be deleted
  unsure,  // something changed or is being written: look again (or treat as a miss)
};

namespace {

inline uint64_t make_link(uint32_t slot, uint32_t version) {
  return static_cast<uint64_t>(slot) | (static_cast<uint64_t>(version | 0x80000000u) << 32);
}
inline uint32_t link_slot(uint64_t link) { return static_cast<uint32_t>(link); }
inline bool link_names(uint64_t link, uint32_t slot, uint32_t version) {
  return link_slot(link) == slot && ((static_cast<uint32_t>(link >> 32) ^ version) & 0x7fffffffu) == 0;
}
inline uint64_t mutable_word(uint32_t last_seen, uint32_t field) {
  return static_cast<uint64_t>(last_seen) | (static_cast<uint64_t>(field & 0x7fffffffu) << 32);
}

}  // namespace

namespace {
// Tables get a process-unique id so that a thread's cache of its last path
// never answers for a table built later at the same address.
std::atomic<uint64_t> next_table_id{1};
struct PathCache {
  uint64_t table_id = 0;
  uint64_t value = 0;
  uint32_t index = 0;
};
thread_local PathCache last_path;
}  // namespace

// ---------------------------------------------------------------------------
// Sizing and storage

namespace {
constexpr size_t kSideBytes =
    kStripes * (2 * sizeof(uint32_t)) + (FlowTable::kIngressPaths + 1) * sizeof(uint64_t);
}

uint64_t FlowTable::slots_for_flows(uint64_t nat_flows) {
  nat_flows = std::min<uint64_t>(nat_flows, kMaxSlots);
  const uint64_t wanted = (nat_flows * 2 * 100 + kDesignLoadPercent - 1) / kDesignLoadPercent;
  const uint64_t buckets = std::max<uint64_t>(2, (wanted + kSlotsPerBucket - 1) / kSlotsPerBucket);
  return std::min<uint64_t>(buckets * kSlotsPerBucket, kMaxSlots);
}

uint64_t FlowTable::slots_for_bytes(uint64_t bytes) {
  const uint64_t buckets = bytes > kSideBytes ? (bytes - kSideBytes) / kBucketBytes : 0;
  return std::min<uint64_t>(std::max<uint64_t>(2, buckets) * kSlotsPerBucket, kMaxSlots);
}

uint64_t FlowTable::flows_for_slots(uint64_t slots) { return slots * kDesignLoadPercent / 100 / 2; }

size_t FlowTable::memory_bytes_for(uint64_t slots) {
  const uint64_t buckets = std::max<uint64_t>(2, (std::min<uint64_t>(slots, kMaxSlots) + kSlotsPerBucket - 1) / kSlotsPerBucket);
  return static_cast<size_t>(buckets * kBucketBytes + kSideBytes);
}

FlowTable::FlowTable(const FlowTableOptions& options)
    : bucket_count_(static_cast<uint32_t>(std::max<uint64_t>(
          2, (std::min<uint64_t>(options.slots, kMaxSlots) + kSlotsPerBucket - 1) / kSlotsPerBucket))),
      stripe_mask_(kStripes - 1),
      hash_key_(options.hash_key),
      timeouts_(options.timeouts),
      events_(options.events),
      table_id_(next_table_id.fetch_add(1, std::memory_order_relaxed)),
      stripe_locks_(std::make_unique<uint32_t[]>(kStripes)),
      stripe_moves_(std::make_unique<uint32_t[]>(kStripes)),
      paths_(std::make_unique<uint64_t[]>(kIngressPaths + 1)) {
  for (uint32_t* timeout : {&timeouts_.tcp_syn_ms, &timeouts_.tcp_established_ms, &timeouts_.tcp_closing_ms,
                            &timeouts_.tcp_closed_ms, &timeouts_.udp_ms, &timeouts_.other_ms}) {
    *timeout = std::min(*timeout, kMaxTimeoutMs);
  }
  const size_t bytes = static_cast<size_t>(bucket_count_) * kBucketBytes;
  // Large tables: anonymous memory on 2 MiB boundaries with transparent huge
  // pages requested (a random lookup then misses the TLB far less), faulted
  // in now so that no worker takes a page fault (or waits for compaction) on
  // the packet path. Small ones (tests) come from the heap. Zero bytes are an
  // empty table: every slot EMPTY at version 0.
  constexpr size_t kHugePage = size_t{2} << 20;
  if (bytes >= 2 * kHugePage) {
    mapping_bytes_ = bytes + kHugePage;
    void* mapping = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapping == MAP_FAILED) throw std::bad_alloc();
    mapping_ = mapping;
    mapped_ = true;
    const uintptr_t aligned = (reinterpret_cast<uintptr_t>(mapping) + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
    words_ = reinterpret_cast<uint64_t*>(aligned);
    madvise(words_, bytes, MADV_HUGEPAGE);  // advice: refusing it only costs TLB misses
    if (madvise(words_, bytes, MADV_POPULATE_WRITE) != 0) {
      // ENOMEM: the machine cannot back the table; touching it page by page
      // would end in the OOM killer, so refuse it here. Other errors are
      // kernels without MADV_POPULATE_WRITE (before 5.14): fault it in by hand.
      if (errno == ENOMEM) {
        munmap(mapping, mapping_bytes_);
        throw std::bad_alloc();
      }
      for (size_t offset = 0; offset < bytes; offset += 4096) {
        reinterpret_cast<volatile uint8_t*>(words_)[offset] = 0;
      }
    }
  } else {
    mapping_ = std::aligned_alloc(kBucketBytes, bytes);
    if (mapping_ == nullptr) throw std::bad_alloc();
    std::memset(mapping_, 0, bytes);
    words_ = static_cast<uint64_t*>(mapping_);
  }
}

FlowTable::~FlowTable() {
  if (mapped_) {
    munmap(mapping_, mapping_bytes_);
  } else {
    std::free(mapping_);
  }
}

std::atomic_ref<uint64_t> FlowTable::word(uint32_t slot, int index) const {
  return std::atomic_ref<uint64_t>(words_[static_cast<size_t>(slot) * kWordsPerSlot + static_cast<size_t>(index)]);
}

uint64_t FlowTable::hash(const FlowKey& key) const { return siphash13(hash_key_, &key, sizeof(key)); }

FlowTable::Probe FlowTable::probe_for(uint64_t hash) const {
  // Lemire's multiply-shift range reduction: any bucket count, no division.
  Probe probe;
  probe.bucket[0] = static_cast<uint32_t>((static_cast<uint64_t>(static_cast<uint32_t>(hash)) * bucket_count_) >> 32);
  probe.bucket[1] = static_cast<uint32_t>(((hash >> 32) * bucket_count_) >> 32);
  if (probe.bucket[1] == probe.bucket[0]) probe.bucket[1] = (probe.bucket[0] + 1) % bucket_count_;
  // The tag comes from a multiplicative mix of all 64 bits, so keys sharing a
  // bucket (and hence the bits that chose it) still differ in their tags.
  probe.tag = static_cast<uint32_t>((hash * 0x9e3779b97f4a7c15ull) >> 53) & kTagMask;
  return probe;
}

void FlowTable::candidate_buckets(uint64_t hash, uint32_t* first, uint32_t* second) const {
  const Probe probe = probe_for(hash);
  *first = probe.bucket[0];
  *second = probe.bucket[1];
}

void FlowTable::prefetch(uint64_t hash) const {
  const Probe probe = probe_for(hash);
  for (uint32_t bucket : probe.bucket) {
    const uint64_t* bucket_words = words_ + static_cast<size_t>(bucket) * kSlotsPerBucket * kWordsPerSlot;
    __builtin_prefetch(bucket_words);
    __builtin_prefetch(bucket_words + 8);  // the bucket's second cache line
  }
}

void FlowTable::move_counters(const Probe& probe, uint32_t* first, uint32_t* second) const {
  // Acquire pairs with a mover's release increment after it published the
  // moved entry: a scan that starts after a move sees the entry's new slot.
  *first = std::atomic_ref<uint32_t>(stripe_moves_[stripe_of(probe.bucket[0])]).load(std::memory_order_acquire);
  *second = std::atomic_ref<uint32_t>(stripe_moves_[stripe_of(probe.bucket[1])]).load(std::memory_order_acquire);
}

bool FlowTable::moves_stable(const Probe& probe, uint32_t first, uint32_t second) const {
  if ((first | second) & 1) return false;  // a move was under way when the scan started
  // Relaxed: ordered after the scan's acquire loads. A scan that saw a slot
  // retired by a move also sees that move's odd increment, which came first.
  return std::atomic_ref<uint32_t>(stripe_moves_[stripe_of(probe.bucket[0])]).load(std::memory_order_relaxed) ==
             first &&
         std::atomic_ref<uint32_t>(stripe_moves_[stripe_of(probe.bucket[1])]).load(std::memory_order_relaxed) ==
             second;
}

// ---------------------------------------------------------------------------
// Seqlock reads. Every payload load below is kPayloadLoad (acquire), paired
// with a writer's kPayloadStore; the caller re-checks the control word.

uint32_t FlowTable::ports_of(uint32_t slot, uint64_t control) const {
  const Kind kind = kind_of(control);
  if (!is_wide(kind)) return low32(word(slot, kP1).load(kPayloadLoad));
  const uint64_t tail_p2 = word(slot + 1, kP2).load(kPayloadLoad);
  const uint64_t tail_control = word(slot + 1, kControl).load(kPayloadLoad);
  return static_cast<uint32_t>(tail_p2 & 0xffff) | (static_cast<uint32_t>(tail_control >> kTailPortShift) & 0xffff) << 16;
}

uint32_t FlowTable::backend_of(uint32_t slot, uint64_t control) const {
  const Kind kind = kind_of(control);
  if (!is_wide(kind)) return high32(word(slot, kP1).load(kPayloadLoad));
  return static_cast<uint32_t>(word(slot + 1, kP2).load(kPayloadLoad) >> 16);
}

bool FlowTable::decode_key(uint32_t slot, uint64_t control, FlowKey* out) const {
  const Kind kind = kind_of(control);
  if (kind == kReverse6Compact) return false;
  FlowKey key{};
  if (is_wide(kind)) {
    const uint64_t w[4] = {word(slot, kP0).load(kPayloadLoad), word(slot, kP1).load(kPayloadLoad),
                           word(slot + 1, kP0).load(kPayloadLoad), word(slot + 1, kP1).load(kPayloadLoad)};
    std::memcpy(key.src_addr, &w[0], 8);
    std::memcpy(key.src_addr + 8, &w[1], 8);
    std::memcpy(key.dst_addr, &w[2], 8);
    std::memcpy(key.dst_addr + 8, &w[3], 8);
    key.family = FlowKey::kIpv6;
  } else {
    const uint64_t addrs = word(slot, kP0).load(kPayloadLoad);
    const uint32_t src = low32(addrs);
    const uint32_t dst = high32(addrs);
    std::memcpy(key.src_addr, &src, 4);
    std::memcpy(key.dst_addr, &dst, 4);
    key.family = FlowKey::kIpv4;
  }
  const uint32_t ports = ports_of(slot, control);
  key.src_port = static_cast<uint16_t>(ports);
  key.dst_port = static_cast<uint16_t>(ports >> 16);
  key.protocol = protocol_of(control);
  key.space = is_template(kind) ? FlowKey::kPersistenceTemplate : FlowKey::kPacketTuple;
  *out = key;
  return true;
}

// Whether the live entry at `slot` (control word `control`, loaded with
// acquire) holds `code`. A compact IPv6 reverse entry matches only together
// with its forward entry's source, which this resolves (found->owner).
bool FlowTable::match_slot(uint32_t slot, uint64_t control, const KeyCode& code, const Probe& probe,
                           Found* found) const {
  const Kind kind = kind_of(control);
  bool match = false;
  if (code.v6) {
    if (code.is_template ? kind != kTemplate6 : (kind != kForward6 && kind != kReverse6 && kind != kReverse6Compact)) {
      return false;
    }
    if (kind == kReverse6Compact) {
      if (tag_of(control) != probe.tag || compact_port_of(control) != code.src_port() ||
          word(slot, kP0).load(kPayloadLoad) != code.a[0] || word(slot, kP1).load(kPayloadLoad) != code.a[1]) {
        return false;
      }
      // Relaxed: ordered after the acquire loads above.
      if (!same_live(word(slot, kControl).load(std::memory_order_relaxed), control)) return false;
      Owner owner;
      if (resolve_owner(slot, control, &owner) != Resolve::ok) return false;
      // The rest of the reply tuple is the forward key's source, and its protocol.
      const uint64_t src0 = word(owner.slot, kP0).load(kPayloadLoad);
      const uint64_t src1 = word(owner.slot, kP1).load(kPayloadLoad);
      const uint32_t ports = ports_of(owner.slot, owner.control);
      if (!same_live(word(owner.slot, kControl).load(std::memory_order_relaxed), owner.control)) return false;
      if (src0 != code.a[2] || src1 != code.a[3] || static_cast<uint16_t>(ports) != code.dst_port() ||
          protocol_of(owner.control) != code.protocol || kind_of(owner.control) != kForward6) {
        return false;
      }
      found->slot = slot;
      found->control = control;
      found->owner_known = true;
      found->owner = owner;
      return true;
    }
    if (protocol_of(control) != code.protocol) return false;
    match = word(slot, kP0).load(kPayloadLoad) == code.a[0] && word(slot, kP1).load(kPayloadLoad) == code.a[1] &&
            word(slot + 1, kP0).load(kPayloadLoad) == code.a[2] &&
            word(slot + 1, kP1).load(kPayloadLoad) == code.a[3] && ports_of(slot, control) == code.ports;
  } else {
    if (code.is_template ? kind != kTemplate4 : (kind != kForward4 && kind != kReverse4)) return false;
    if (protocol_of(control) != code.protocol) return false;
    const uint64_t addrs = word(slot, kP0).load(kPayloadLoad);
    match = addrs == code.a[0] && low32(word(slot, kP1).load(kPayloadLoad)) == code.ports;
  }
  // Relaxed: ordered after the acquire loads above.
  if (!match || !same_live(word(slot, kControl).load(std::memory_order_relaxed), control)) return false;
  found->slot = slot;
  found->control = control;
  found->owner_known = false;
  return true;
}

bool FlowTable::find(const KeyCode& code, const Probe& probe, Found* found) const {
  if (!code.v6) {
    // IPv4, the packet path: one bucket line pair at a time, the key compared
    // in place (no dependent read: the key is in the slot).
    for (uint32_t bucket : probe.bucket) {
      const uint32_t base = bucket * kSlotsPerBucket;
      for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
        // Acquire pairs with the release store that published the entry.
        const uint64_t control = word(base + i, kControl).load(std::memory_order_acquire);
        if (state_of(control) != kLive || protocol_of(control) != code.protocol) continue;
        const Kind kind = kind_of(control);
        if (code.is_template ? kind != kTemplate4 : (kind != kForward4 && kind != kReverse4)) continue;
        if (word(base + i, kP0).load(kPayloadLoad) != code.a[0]) continue;
        const uint64_t p1 = word(base + i, kP1).load(kPayloadLoad);
        if (low32(p1) != code.ports) continue;
        // Relaxed: ordered after the acquire loads above.
        if (!same_live(word(base + i, kControl).load(std::memory_order_relaxed), control)) continue;
        found->slot = base + i;
        found->control = control;
        found->p1 = p1;
        found->owner_known = false;
        return true;
      }
    }
    return false;
  }
  for (uint32_t bucket : probe.bucket) {
    const uint32_t base = bucket * kSlotsPerBucket;
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      // Acquire pairs with the release store that published the entry.
      const uint64_t control = word(base + i, kControl).load(std::memory_order_acquire);
      if (state_of(control) != kLive) continue;
      if (match_slot(base + i, control, code, probe, found)) return true;
    }
  }
  return false;
}

bool FlowTable::read_found(const Found& found, const FlowKey& key, Flow* out, uint64_t* control_out) const {
  const Kind kind = kind_of(found.control);
  if (is_wide(kind)) return read_flow(found.slot, version_of(found.control), out, control_out);
  // A narrow forward entry or template whose key is `key` and whose P1 the
  // match read: only its mutable word is left to read.
  const uint64_t mutable_bits = word(found.slot, kP2).load(kPayloadLoad);
  // Relaxed: ordered after the acquire load above.
  const uint64_t after = word(found.slot, kControl).load(std::memory_order_relaxed);
  if (!same_live(after, found.control)) return false;
  out->handle = FlowHandle{found.slot, version_of(after)};
  out->kind = public_kind(kind);
  out->matched = FlowDirection::original;
  out->backend_id = high32(found.p1);
  out->last_seen_ms = low32(mutable_bits);
  out->key = key;
  if (is_template(kind)) {
    out->state = FlowState::other;
    out->has_reverse = false;
    out->template_timeout_ms = std::min(high32(mutable_bits), kMaxTimeoutMs);
    out->flags = 0;
    out->ingress_port = 0;
    std::memset(out->client_mac, 0, sizeof(out->client_mac));
  } else {
    out->state = tcp_state_of(after);
    out->has_reverse = high32(mutable_bits) != kNoReverse;
    out->template_timeout_ms = 0;
    out->flags = flags_of(after);
    path_of(path_of_control(after), &out->ingress_port, out->client_mac);
  }
  if (control_out) *control_out = after;
  return true;
}

uint64_t FlowTable::wait_while_claimed(uint32_t slot, uint64_t control) const {
  for (int spin = 0; spin < kPendingSpins && state_of(control) == kClaimed; ++spin) {
    cpu_relax();
    // Pairs with the writer's release store (publish or abandon).
    control = word(slot, kControl).load(std::memory_order_acquire);
  }
  return control;
}

FlowTable::Resolve FlowTable::resolve_owner(uint32_t slot, uint64_t control, Owner* owner) const {
  const Kind kind = kind_of(control);
  if (!is_reverse(kind)) {
    owner->slot = slot;
    owner->control = control;
    return Resolve::ok;
  }
  const std::atomic_ref<uint64_t> link_word = word(slot, kP2);
  // Acquire pairs with the writer's store of the link and with a mover's CAS
  // that pointed it at the forward entry's new slot.
  uint64_t link = link_word.load(kPayloadLoad);
  for (int attempt = 0; attempt < kReadRetries; ++attempt) {
    // The link must be this incarnation's. Relaxed: after the acquire load.
    if (!same_live(word(slot, kControl).load(std::memory_order_relaxed), control)) return Resolve::unsure;
    const uint32_t forward = link_slot(link);
    if (forward >= slot_count()) return Resolve::unsure;
    // Acquire pairs with the store that published the forward entry, and with
    // the CAS that retired its slot (deletion, or the commit of a move).
    uint64_t forward_control = word(forward, kControl).load(std::memory_order_acquire);
    if (link_names(link, forward, version_of(forward_control))) {
      // Claimed: its insert publishes the reverse entry first, or a move is
      // placing it there. Either way it is about to be published.
      forward_control = wait_while_claimed(forward, forward_control);
      if (state_of(forward_control) == kLive && is_forward(kind_of(forward_control)) &&
          link_names(link, forward, version_of(forward_control))) {
        owner->slot = forward;
        owner->control = forward_control;
        return Resolve::ok;
      }
      if (state_of(forward_control) == kClaimed) return Resolve::unsure;
    }
    // The forward slot is no longer the one linked. A move points the link at
    // the new slot before it retires the old one, so having seen the old slot
    // change (acquire), a re-read of the link shows the move if there was one.
    const uint64_t again = link_word.load(kPayloadLoad);
    if (again == link) {
      if (!same_live(word(slot, kControl).load(std::memory_order_relaxed), control)) return Resolve::unsure;
      return Resolve::orphan;
    }
    link = again;
  }
  return Resolve::unsure;
}

bool FlowTable::read_flow(uint32_t slot, uint32_t version, Flow* out, uint64_t* control_out) const {
  if (slot >= slot_count()) return false;
  // Pairs with the release store that published the entry.
  const uint64_t before = word(slot, kControl).load(std::memory_order_acquire);
  if (state_of(before) != kLive || version_of(before) != version) return false;
  const Kind kind = kind_of(before);
  if (is_reverse(kind)) return false;
  FlowKey key;
  decode_key(slot, before, &key);
  const uint32_t backend = backend_of(slot, before);
  const uint64_t mutable_bits = word(slot, kP2).load(kPayloadLoad);
  // Relaxed: ordered after the acquire loads above.
  const uint64_t after = word(slot, kControl).load(std::memory_order_relaxed);
  if (!same_live(after, before)) return false;

  out->handle = FlowHandle{slot, version};
  out->kind = public_kind(kind);
  out->matched = FlowDirection::original;
  out->backend_id = backend;
  out->last_seen_ms = low32(mutable_bits);
  out->key = key;
  if (is_template(kind)) {
    out->state = FlowState::other;
    out->has_reverse = false;
    out->template_timeout_ms = std::min(high32(mutable_bits), kMaxTimeoutMs);
    out->flags = 0;
    out->ingress_port = 0;
    std::memset(out->client_mac, 0, sizeof(out->client_mac));
  } else {
    out->state = tcp_state_of(after);
    out->has_reverse = high32(mutable_bits) != kNoReverse;
    out->template_timeout_ms = 0;
    out->flags = flags_of(after);
    path_of(path_of_control(after), &out->ingress_port, out->client_mac);
  }
  if (control_out) *control_out = after;
  return true;
}

// Whether the live reverse entry at `slot` links to (forward_slot,
// forward_version); *control_out is its control word.
bool FlowTable::reverse_links_to(uint32_t slot, uint64_t* control_out, uint32_t forward_slot,
                                 uint32_t forward_version) const {
  if (slot >= slot_count()) return false;
  // Pairs with the release store that published the reverse entry.
  const uint64_t control = word(slot, kControl).load(std::memory_order_acquire);
  if (state_of(control) != kLive || !is_reverse(kind_of(control))) return false;
  const uint64_t link = word(slot, kP2).load(kPayloadLoad);
  // Relaxed: ordered after the acquire load above.
  if (!same_live(word(slot, kControl).load(std::memory_order_relaxed), control)) return false;
  *control_out = control;
  return link_names(link, forward_slot, forward_version);
}

bool FlowTable::read_reverse_key(uint32_t forward_slot, uint64_t forward_control, const FlowKey& forward_key,
                                 FlowKey* out) const {
  const std::atomic_ref<uint64_t> mutable_word_ref = word(forward_slot, kP2);
  uint32_t reverse = high32(mutable_word_ref.load(kPayloadLoad));
  for (int attempt = 0; attempt < kReadRetries; ++attempt) {
    if (reverse == kNoReverse || reverse >= slot_count()) return false;
    // A move of the reverse entry points the forward entry at a claimed slot first.
    // Pairs with the store that published (or abandoned) it.
    wait_while_claimed(reverse, word(reverse, kControl).load(std::memory_order_acquire));
    uint64_t control;
    if (reverse_links_to(reverse, &control, forward_slot, version_of(forward_control))) {
      FlowKey key{};
      if (kind_of(control) == kReverse6Compact) {
        const uint64_t src[2] = {word(reverse, kP0).load(kPayloadLoad), word(reverse, kP1).load(kPayloadLoad)};
        uint8_t src_addr[16];
        std::memcpy(src_addr, src, 16);
        key = FlowKey::ipv6(forward_key.protocol, src_addr, compact_port_of(control), forward_key.src_addr,
                            forward_key.src_port);
      } else if (!decode_key(reverse, control, &key)) {
        return false;
      }
      // Relaxed: ordered after the acquire loads above.
      if (!same_live(word(reverse, kControl).load(std::memory_order_relaxed), control)) continue;
      *out = key;
      return true;
    }
    // Moved between the two reads? The forward entry names its new slot then.
    const uint32_t again = high32(mutable_word_ref.load(kPayloadLoad));
    if (again == reverse) return false;
    reverse = again;
  }
  return false;
}

uint32_t FlowTable::last_seen_of(uint32_t slot) const {
  // Relaxed: an expiry decision is acted on only through a CAS on the control
  // word the caller loaded, which fails if the slot was recycled.
  return low32(word(slot, kP2).load(std::memory_order_relaxed));
}

uint32_t FlowTable::timeout_of(uint32_t slot, uint64_t control) const {
  if (is_template(kind_of(control))) {
    // Relaxed: as in last_seen_of.
    return std::min(high32(word(slot, kP2).load(std::memory_order_relaxed)), kMaxTimeoutMs);
  }
  return timeouts_.for_state(tcp_state_of(control));
}

bool FlowTable::is_expired(uint32_t slot, uint64_t control, uint32_t now) const {
  return age_ms(now, last_seen_of(slot)) > timeout_of(slot, control);
}

namespace {
bool flow_expired(const Flow& flow, const FlowTimeouts& timeouts, uint32_t now) {
  const uint32_t timeout = flow.kind == FlowEntryKind::persistence_template
                               ? std::min(flow.template_timeout_ms, kMaxTimeoutMs)
                               : timeouts.for_state(flow.state);
  return age_ms(now, flow.last_seen_ms) > timeout;
}
}  // namespace

// ---------------------------------------------------------------------------
// Deletion

void FlowTable::free_tail(uint32_t head_slot, uint64_t head_control) {
  if (!is_wide(kind_of(head_control))) return;
  // Only whoever retired the head (a deleter or a move's commit) frees the
  // tail; nobody else writes a tail's control word. Relaxed load of our own
  // word; release pairs with the next claimant's acquire.
  std::atomic_ref<uint64_t> tail = word(head_slot + 1, kControl);
  tail.store(empty_control(version_of(tail.load(std::memory_order_relaxed)) + 1), std::memory_order_release);
}

bool FlowTable::delete_entry(uint32_t slot, uint64_t expected_control, FlowEndReason reason) {
  const Kind kind = kind_of(expected_control);
  // Read what the deletion needs before the CAS: once the slot is EMPTY a new
  // claimant may overwrite it. A successful CAS proves these reads belong to
  // the incarnation named by `expected_control` (versions never repeat); the
  // reply slot may have been moved meanwhile, which at worst leaves the
  // reverse entry an orphan for the sweep.
  const uint64_t mutable_bits = word(slot, kP2).load(std::memory_order_relaxed);
  const uint32_t backend = is_forward(kind) ? backend_of(slot, expected_control) : 0;
  FlowNotice notice;
  const bool noticed = events_.flow_ended != nullptr && is_forward(kind);
  if (noticed) {
    notice.slot = slot;
    notice.backend_id = backend;
    notice.last_seen_ms = low32(mutable_bits);
    notice.reason = reason;
    decode_key(slot, expected_control, &notice.key);
  }
  uint64_t expected = expected_control;
  // acq_rel: the release half orders the reads above before the slot is handed
  // to the next claimant (whose claim CAS acquires it); the acquire half pairs
  // with whoever changed the word last.
  if (!word(slot, kControl).compare_exchange_strong(expected, empty_control(version_of(expected_control) + 1),
                                                    std::memory_order_acq_rel, std::memory_order_relaxed)) {
    return false;
  }
  free_tail(slot, expected_control);
  if (!is_forward(kind)) return true;
  const uint32_t reverse = high32(mutable_bits);
  if (reverse != kNoReverse && reverse < slot_count()) {
    // Pairs with the store that published it (a move may be placing it right now).
    wait_while_claimed(reverse, word(reverse, kControl).load(std::memory_order_acquire));
    uint64_t reverse_control;
    if (reverse_links_to(reverse, &reverse_control, slot, version_of(expected_control))) {
      // Fails only if a sweep or a move got there first: an orphan then, or gone.
      delete_reverse(reverse, reverse_control);
    }
  }
  if (events_.flow_removed) events_.flow_removed(events_.context, backend);
  if (noticed) events_.flow_ended(events_.context, notice);
  return true;
}

bool FlowTable::delete_reverse(uint32_t slot, uint64_t expected_control) {
  uint64_t expected = expected_control;
  // acq_rel: as in delete_entry.
  if (!word(slot, kControl).compare_exchange_strong(expected, empty_control(version_of(expected_control) + 1),
                                                    std::memory_order_acq_rel, std::memory_order_relaxed)) {
    return false;
  }
  free_tail(slot, expected_control);
  return true;
}

bool FlowTable::evict_one(const Probe& probe, uint32_t now, FlowCounters& counters) {
  // Victims, in order: the oldest half-open flow (under a SYN flood these are
  // the attacker's, and a real client retransmits its SYN), then the oldest
  // entry whose timeout has passed but which no sweep has reached yet.
  Owner half_open;
  uint32_t half_open_age = 0;
  Owner expired;
  uint32_t expired_age = 0;
  for (uint32_t bucket : probe.bucket) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      const uint32_t slot = bucket * kSlotsPerBucket + i;
      // Pairs with the release store that published the entry.
      const uint64_t control = word(slot, kControl).load(std::memory_order_acquire);
      if (state_of(control) != kLive) continue;
      Owner owner;
      const Resolve resolved = resolve_owner(slot, control, &owner);
      if (resolved == Resolve::orphan) {
        if (delete_reverse(slot, control)) return true;
        continue;
      }
      if (resolved != Resolve::ok) continue;
      const uint32_t age = age_ms(now, last_seen_of(owner.slot));
      if (is_forward(kind_of(owner.control)) && tcp_state_of(owner.control) == FlowState::tcp_syn_seen) {
        if (half_open.slot == kNoSlot || age > half_open_age) {
          half_open = owner;
          half_open_age = age;
        }
      } else if (is_expired(owner.slot, owner.control, now)) {
        if (expired.slot == kNoSlot || age > expired_age) {
          expired = owner;
          expired_age = age;
        }
      }
    }
  }
  if (half_open.slot != kNoSlot) {
    if (delete_entry(half_open.slot, half_open.control, FlowEndReason::evicted)) FlowCounters::bump(counters.evictions_half_open);
    return true;  // freed room, or the victim changed: either way, look again
  }
  if (expired.slot != kNoSlot) {
    if (delete_entry(expired.slot, expired.control, FlowEndReason::evicted)) FlowCounters::bump(counters.evictions_expired);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Stripe locks

bool FlowTable::lock_stripes(Locks* locks, const Probe* probes, size_t count) {
  uint32_t wanted[4];
  size_t n = 0;
  for (size_t k = 0; k < count; ++k) {
    for (uint32_t bucket : probes[k].bucket) {
      const uint32_t s = stripe_of(bucket);
      if (std::find(wanted, wanted + n, s) == wanted + n) wanted[n++] = s;
    }
  }
  // One order for everyone: no deadlock, only waiting. (Insertion sort of at
  // most four: std::sort trips GCC 12's -Warray-bounds on a fixed array.)
  for (size_t i = 1; i < n; ++i) {
    for (size_t j = i; j > 0 && wanted[j - 1] > wanted[j]; --j) std::swap(wanted[j - 1], wanted[j]);
  }
  locks->count = 0;
  for (size_t i = 0; i < n; ++i) {
    std::atomic_ref<uint32_t> lock(stripe_locks_[wanted[i]]);
    bool taken = false;
    for (int spin = 0; spin < kLockSpins && !taken; ++spin) {
      uint32_t expected = 0;
      // Acquire pairs with the previous holder's release in unlock.
      taken = lock.load(std::memory_order_relaxed) == 0 &&
              lock.compare_exchange_weak(expected, 1, std::memory_order_acquire, std::memory_order_relaxed);
      if (!taken) cpu_relax();
    }
    if (!taken) {
      unlock_stripes(locks, 0);
      return false;
    }
    locks->stripe[locks->count++] = wanted[i];
  }
  return true;
}

bool FlowTable::try_add_stripe(Locks* locks, uint32_t stripe) {
  if (locks->holds(stripe)) return true;
  if (locks->count == Locks::kMax) return false;
  std::atomic_ref<uint32_t> lock(stripe_locks_[stripe]);
  uint32_t expected = 0;
  // A single try, so that a move (which takes stripes out of order) never waits.
  if (!lock.compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed)) return false;
  locks->stripe[locks->count++] = stripe;
  return true;
}

void FlowTable::unlock_stripes(Locks* locks, size_t keep) {
  while (locks->count > keep) {
    // Release: everything written under the lock before the next holder's acquire.
    std::atomic_ref<uint32_t>(stripe_locks_[locks->stripe[--locks->count]]).store(0, std::memory_order_release);
  }
}

// ---------------------------------------------------------------------------
// Claims and moves (callers hold the stripe of every bucket they write)

bool FlowTable::bucket_has_room(uint32_t bucket, uint32_t width) const {
  const uint32_t base = bucket * kSlotsPerBucket;
  // Relaxed: a hint; claim_in's CAS decides.
  auto empty = [&](uint32_t slot) { return state_of(word(slot, kControl).load(std::memory_order_relaxed)) == kEmpty; };
  if (width == 1) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      if (empty(base + i)) return true;
    }
    return false;
  }
  for (uint32_t i = 0; i < kSlotsPerBucket; i += 2) {
    if (empty(base + i) && empty(base + i + 1)) return true;
  }
  return false;
}

bool FlowTable::claim_in(uint32_t bucket, uint32_t width, Claim* claim) {
  const uint32_t base = bucket * kSlotsPerBucket;
  // Relaxed: the CAS below re-reads the head. Only a holder of this bucket's
  // stripe turns an EMPTY slot into anything, so the CAS cannot race another
  // claim; acq_rel orders it after the previous incarnation's retirement and
  // before our payload stores.
  uint64_t seen[kSlotsPerBucket];
  for (uint32_t i = 0; i < kSlotsPerBucket; ++i) seen[i] = word(base + i, kControl).load(std::memory_order_relaxed);
  // A narrow entry goes next to another narrow entry when it can, so that
  // aligned pairs stay whole for wide (IPv6) entries.
  uint32_t order[kSlotsPerBucket];
  uint32_t candidates = 0;
  if (width == 1) {
    for (int pass = 0; pass < 2; ++pass) {
      for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
        if (state_of(seen[i]) != kEmpty) continue;
        const bool mate_taken = state_of(seen[i ^ 1]) != kEmpty;
        if (mate_taken == (pass == 0)) order[candidates++] = i;
      }
    }
  } else {
    for (uint32_t i = 0; i < kSlotsPerBucket; i += 2) {
      if (state_of(seen[i]) == kEmpty && state_of(seen[i + 1]) == kEmpty) order[candidates++] = i;
    }
  }
  for (uint32_t c = 0; c < candidates; ++c) {
    const uint32_t i = order[c];
    uint64_t head_seen = seen[i];
    const uint32_t version = version_of(head_seen) + 1;
    if (!word(base + i, kControl)
             .compare_exchange_strong(head_seen, empty_control(version) | kClaimed, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
      continue;
    }
    claim->slot = base + i;
    claim->version = version;
    claim->width = width;
    if (width == 2) {
      uint64_t tail_seen = seen[i + 1];
      const uint32_t tail_version = version_of(tail_seen) + 1;
      if (!word(base + i + 1, kControl)
               .compare_exchange_strong(tail_seen, tail_control(tail_version), std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
        word(base + i, kControl).store(empty_control(version + 1), std::memory_order_release);
        continue;
      }
      claim->tail_version = tail_version;
    }
    return true;
  }
  return false;
}

void FlowTable::abandon(const Claim& claim) {
  // Nobody else writes a claimed word. Release pairs with the acquire loads
  // of readers that were waiting for the claim to resolve.
  if (claim.width == 2) word(claim.slot + 1, kControl).store(empty_control(claim.tail_version + 1), std::memory_order_release);
  word(claim.slot, kControl).store(empty_control(claim.version + 1), std::memory_order_release);
}

bool FlowTable::buckets_of_entry(uint32_t slot, uint64_t control, uint32_t* first, uint32_t* second) const {
  FlowKey key;
  if (kind_of(control) == kReverse6Compact) {
    // Its key is completed by its forward entry's source.
    Owner owner;
    FlowKey forward_key;
    if (resolve_owner(slot, control, &owner) != Resolve::ok || !decode_key(owner.slot, owner.control, &forward_key)) {
      return false;
    }
    const uint64_t src[2] = {word(slot, kP0).load(kPayloadLoad), word(slot, kP1).load(kPayloadLoad)};
    // Relaxed: ordered after the acquire loads above.
    if (!same_live(word(owner.slot, kControl).load(std::memory_order_relaxed), owner.control)) return false;
    uint8_t src_addr[16];
    std::memcpy(src_addr, src, 16);
    key = FlowKey::ipv6(forward_key.protocol, src_addr, compact_port_of(control), forward_key.src_addr,
                        forward_key.src_port);
  } else if (!decode_key(slot, control, &key)) {
    return false;
  }
  // Relaxed: ordered after the acquire loads above.
  if (!same_live(word(slot, kControl).load(std::memory_order_relaxed), control)) return false;
  const Probe probe = probe_for(hash(key));
  *first = probe.bucket[0];
  *second = probe.bucket[1];
  return true;
}

bool FlowTable::move_entry(uint32_t slot, uint64_t control_seen, uint32_t to_bucket, Locks* locks,
                           FlowCounters& counters) {
  const uint32_t from_bucket = slot / kSlotsPerBucket;
  const size_t held = locks->count;
  auto give_up = [&] {
    unlock_stripes(locks, held);
    return false;
  };
  if (!try_add_stripe(locks, stripe_of(from_bucket)) || !try_add_stripe(locks, stripe_of(to_bucket))) return give_up();
  // Under the source stripe the entry cannot be moved or recycled by anyone
  // else, only deleted (and its TCP state and last-seen stamp change).
  // Pairs with the store that published it.
  uint64_t control = word(slot, kControl).load(std::memory_order_acquire);
  if (!same_live(control, control_seen)) return give_up();
  const Kind kind = kind_of(control);
  uint32_t first, second;
  if (!buckets_of_entry(slot, control, &first, &second) ||
      !((first == from_bucket && second == to_bucket) || (second == from_bucket && first == to_bucket))) {
    return give_up();
  }
  // The peer whose link names this slot, under its bucket's stripe too.
  const uint64_t own_word = word(slot, kP2).load(kPayloadLoad);
  uint32_t peer = kNoSlot;
  if (is_forward(kind) && high32(own_word) != kNoReverse) peer = high32(own_word);
  if (is_reverse(kind)) peer = link_slot(own_word);
  if (peer != kNoSlot) {
    if (peer >= slot_count() || !try_add_stripe(locks, stripe_of(peer / kSlotsPerBucket))) return give_up();
    // With the peer's stripe held nobody moves it; check the pair is intact.
    uint64_t peer_control;
    if (is_forward(kind)) {
      if (high32(word(slot, kP2).load(kPayloadLoad)) != peer ||
          !reverse_links_to(peer, &peer_control, slot, version_of(control))) {
        return give_up();
      }
    } else {
      // Pairs with the store that published the forward entry.
      peer_control = word(peer, kControl).load(std::memory_order_acquire);
      if (state_of(peer_control) != kLive || !is_forward(kind_of(peer_control)) ||
          !link_names(word(slot, kP2).load(kPayloadLoad), peer, version_of(peer_control)) ||
          high32(word(peer, kP2).load(kPayloadLoad)) != slot) {
        return give_up();  // an orphan (or one being made): not worth moving
      }
    }
  }
  const uint32_t width = width_of(kind);
  Claim dest;
  if (!claim_in(to_bucket, width, &dest)) return give_up();
  // Copy the payload (and a wide entry's destination port, in its tail's
  // control word). kPayloadStore: as for any writer of a claimed slot.
  for (uint32_t k = 0; k < width; ++k) {
    for (int w = kP0; w <= kP2; ++w) word(dest.slot + k, w).store(word(slot + k, w).load(kPayloadLoad), kPayloadStore);
  }
  if (width == 2) {
    const uint64_t port_bits = word(slot + 1, kControl).load(std::memory_order_relaxed) & (uint64_t{0xffff} << kTailPortShift);
    word(dest.slot + 1, kControl).store(tail_control(dest.tail_version) | port_bits, kPayloadStore);
  }
  // Point the peer at the new slot before the old one is retired, so that a
  // reader who sees the old slot retired finds the new link (resolve_owner,
  // read_reverse_key).
  if (peer != kNoSlot) {
    std::atomic_ref<uint64_t> peer_word = word(peer, kP2);
    if (is_forward(kind)) {
      uint64_t expected = peer_word.load(std::memory_order_relaxed);
      if (!link_names(expected, slot, version_of(control)) ||
          !peer_word.compare_exchange_strong(expected, make_link(dest.slot, dest.version), std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
        abandon(dest);
        return give_up();
      }
    } else {
      // The forward entry's reply slot; its last-seen half keeps changing.
      uint64_t current = peer_word.load(std::memory_order_relaxed);
      for (;;) {
        if (high32(current) != slot) {
          abandon(dest);
          return give_up();
        }
        if (peer_word.compare_exchange_weak(current, mutable_word(low32(current), dest.slot), std::memory_order_acq_rel,
                                            std::memory_order_relaxed)) {
          break;
        }
      }
    }
  }
  // The commit: retire the old slot. Until the copy is published the entry is
  // in neither slot; the odd move counter tells lookups to look again. The
  // increment is ordered before the commit by the commit's release.
  std::atomic_ref<uint32_t> moves(stripe_moves_[stripe_of(from_bucket)]);
  moves.fetch_add(1, std::memory_order_relaxed);
  for (;;) {
    uint64_t expected = control;
    if (word(slot, kControl).compare_exchange_strong(expected, empty_control(version_of(control) + 1),
                                                     std::memory_order_acq_rel, std::memory_order_acquire)) {
      break;
    }
    if (same_live(expected, control)) {
      control = expected;  // a TCP state change: the copy takes the new state
      continue;
    }
    // Deleted meanwhile (its deleter reported it): the copy goes. A peer left
    // linked to the copy is an orphan now, like the deleted entry's.
    abandon(dest);
    moves.fetch_add(1, std::memory_order_release);
    return give_up();
  }
  free_tail(slot, control);
  if (!is_reverse(kind)) {
    // Touches of the old slot since the copy. Nobody claims it while we hold
    // its stripe, so its words are still this entry's.
    const uint64_t old_word = word(slot, kP2).load(std::memory_order_relaxed);
    std::atomic_ref<uint64_t> new_word = word(dest.slot, kP2);
    const uint64_t copied = new_word.load(std::memory_order_relaxed);
    if (static_cast<int32_t>(low32(old_word) - low32(copied)) > 0) {
      new_word.store(mutable_word(low32(old_word), high32(copied)), kPayloadStore);
    }
  }
  // Publish (release pairs with readers' acquire), then close the window.
  word(dest.slot, kControl).store(with_state(with_version(control, dest.version), kLive), std::memory_order_release);
  moves.fetch_add(1, std::memory_order_release);
  if (is_forward(kind) && events_.flow_moved) events_.flow_moved(events_.context, slot, dest.slot);
  FlowCounters::bump(counters.moves);
  unlock_stripes(locks, held);
  return true;
}

size_t FlowTable::victims_in(uint32_t bucket, uint32_t need, uint32_t* slots, uint64_t* controls) const {
  const uint32_t base = bucket * kSlotsPerBucket;
  uint64_t c[kSlotsPerBucket];
  // Acquire pairs with the stores that published the entries.
  for (uint32_t i = 0; i < kSlotsPerBucket; ++i) c[i] = word(base + i, kControl).load(std::memory_order_acquire);
  auto movable = [&](uint32_t i) { return state_of(c[i]) == kLive; };
  size_t n = 0;
  auto add = [&](uint32_t i) {
    slots[n] = base + i;
    controls[n] = c[i];
    ++n;
  };
  if (need == 1) {
    for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
      if (movable(i)) add(i);
    }
    return n;
  }
  // An aligned pair: one narrow entry next to a free slot, or a wide entry.
  for (uint32_t i = 0; i < kSlotsPerBucket; i += 2) {
    const bool wide = movable(i) && is_wide(kind_of(c[i]));
    if (wide) {
      add(i);
    } else if (state_of(c[i]) == kEmpty && movable(i + 1)) {
      add(i + 1);
    } else if (state_of(c[i + 1]) == kEmpty && movable(i)) {
      add(i);
    }
  }
  return n;
}

bool FlowTable::search_room(const uint32_t* roots, int root_count, uint32_t need, uint32_t excluded, Locks* locks,
                            FlowCounters& counters) {
  // Breadth first over buckets: each node is a bucket that needs `need` free
  // slots; its entries could move to their other bucket. The first node with
  // an entry whose other bucket has room ends the search, and the moves run
  // from there back to a root, each making room for the next.
  BfsNode nodes[kMaxBfsNodes];
  int count = 0;
  for (int r = 0; r < root_count; ++r) nodes[count++] = BfsNode{roots[r], need, -1, kNoSlot, 0, 0};
  for (int i = 0; i < count; ++i) {
    const BfsNode node = nodes[i];
    if (node.depth >= kMaxBfsDepth) continue;
    uint32_t victims[kSlotsPerBucket];
    uint64_t controls[kSlotsPerBucket];
    const size_t n = victims_in(node.bucket, node.need, victims, controls);
    for (size_t v = 0; v < n; ++v) {
      uint32_t first, second;
      if (!buckets_of_entry(victims[v], controls[v], &first, &second)) continue;
      const uint32_t other = first == node.bucket ? second : (second == node.bucket ? first : kNoSlot);
      if (other == kNoSlot || other == excluded) continue;
      bool seen = false;
      for (int j = 0; j < count && !seen; ++j) seen = nodes[j].bucket == other;
      if (seen) continue;
      const uint32_t victim_width = width_of(kind_of(controls[v]));
      if (bucket_has_room(other, victim_width)) {
        if (!move_entry(victims[v], controls[v], other, locks, counters)) return false;
        for (int j = i; nodes[j].parent >= 0; j = nodes[j].parent) {
          if (!move_entry(nodes[j].victim, nodes[j].victim_control, nodes[j].bucket, locks, counters)) return false;
        }
        return true;
      }
      if (count < kMaxBfsNodes) nodes[count++] = BfsNode{other, victim_width, i, victims[v], controls[v], node.depth + 1};
    }
    if (node.need == 2 && pair_of_narrows_moves(node.bucket, excluded, locks, counters)) {
      for (int j = i; nodes[j].parent >= 0; j = nodes[j].parent) {
        if (!move_entry(nodes[j].victim, nodes[j].victim_control, nodes[j].bucket, locks, counters)) return false;
      }
      return true;
    }
  }
  return false;
}

bool FlowTable::pair_of_narrows_moves(uint32_t bucket, uint32_t excluded, Locks* locks, FlowCounters& counters) {
  // A half holding two narrow entries frees an aligned pair when both can go
  // straight to their other buckets (one level: no further search from there).
  const uint32_t base = bucket * kSlotsPerBucket;
  for (uint32_t half = 0; half < kSlotsPerBucket; half += 2) {
    uint64_t controls[2];
    uint32_t others[2];
    bool movable = true;
    for (uint32_t k = 0; k < 2 && movable; ++k) {
      // Acquire pairs with the store that published the entry.
      controls[k] = word(base + half + k, kControl).load(std::memory_order_acquire);
      uint32_t first, second;
      movable = state_of(controls[k]) == kLive && !is_wide(kind_of(controls[k])) &&
                buckets_of_entry(base + half + k, controls[k], &first, &second);
      others[k] = !movable ? kNoSlot : first == bucket ? second : (second == bucket ? first : kNoSlot);
      movable = movable && others[k] != kNoSlot && others[k] != excluded;
    }
    if (!movable) continue;
    if (others[0] == others[1]) {
      uint32_t free_slots = 0;
      for (uint32_t i = 0; i < kSlotsPerBucket; ++i) {
        // Relaxed: a hint; the moves' claims decide.
        free_slots += state_of(word(others[0] * kSlotsPerBucket + i, kControl).load(std::memory_order_relaxed)) == kEmpty;
      }
      if (free_slots < 2) continue;
    } else if (!bucket_has_room(others[0], 1) || !bucket_has_room(others[1], 1)) {
      continue;
    }
    return move_entry(base + half, controls[0], others[0], locks, counters) &&
           move_entry(base + half + 1, controls[1], others[1], locks, counters);
  }
  return false;
}

bool FlowTable::relocate(uint32_t slot, uint64_t control, Locks* locks, FlowCounters& counters) {
  const uint32_t from = slot / kSlotsPerBucket;
  uint32_t first, second;
  if (!buckets_of_entry(slot, control, &first, &second)) return false;
  const uint32_t other = first == from ? second : (second == from ? first : kNoSlot);
  if (other == kNoSlot) return false;
  const uint32_t width = width_of(kind_of(control));
  if (!bucket_has_room(other, width) && !search_room(&other, 1, width, from, locks, counters)) return false;
  return move_entry(slot, control, other, locks, counters);
}

bool FlowTable::make_room(const Probe& probe, uint32_t width, Locks* locks, FlowCounters& counters) {
  if (search_room(probe.bucket, 2, width, kNoSlot, locks, counters)) return true;
  if (width == 1) return false;
  // A wide entry needs an aligned pair. The search above moves one entry per
  // bucket on its path; a half holding two narrow entries needs both moved:
  // relocate each (a search of its own from its other bucket).
  for (uint32_t bucket : probe.bucket) {
    const uint32_t base = bucket * kSlotsPerBucket;
    for (uint32_t half = 0; half < kSlotsPerBucket; half += 2) {
      bool cleared = true;
      for (uint32_t i = half; i < half + 2 && cleared; ++i) {
        // Acquire pairs with the store that published the entry.
        const uint64_t control = word(base + i, kControl).load(std::memory_order_acquire);
        if (state_of(control) == kEmpty) continue;
        cleared = state_of(control) == kLive && !is_wide(kind_of(control)) && relocate(base + i, control, locks, counters);
      }
      if (cleared && bucket_has_room(bucket, 2)) return true;
    }
  }
  return false;
}

bool FlowTable::claim_free(const Probe& probe, uint32_t width, Claim* claim) {
  return claim_in(probe.bucket[0], width, claim) || claim_in(probe.bucket[1], width, claim);
}

bool FlowTable::claim_room(const Probe& probe, uint32_t width, Locks* locks, uint32_t now, FlowCounters& counters,
                           Claim* claim) {
  auto claim_direct = [&] { return claim_free(probe, width, claim); };
  // Room in the first bucket, else the second; else room made by moves (one
  // search: when it finds nothing the table is full around this key); else
  // evictions (half-open, then expired), each followed by another look.
  if (claim_direct()) return true;
  if (make_room(probe, width, locks, counters) && claim_direct()) return true;
  for (int round = 0; round < kRoomRounds; ++round) {
    if (!evict_one(probe, now, counters)) return false;
    if (claim_direct()) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------
// Ingress paths

uint32_t FlowTable::intern_path(uint16_t ingress_port, const uint8_t mac[6]) {
  if (ingress_port >= 0x8000) return kNoPath;
  uint64_t value = kMarker | (static_cast<uint64_t>(ingress_port) << 48);
  for (int i = 0; i < 6; ++i) value |= static_cast<uint64_t>(mac[i]) << (8 * i);
  // Most flows come through the same router: paths are never freed, so a
  // thread's last answer stays right.
  if (last_path.table_id == table_id_ && last_path.value == value) return last_path.index;
  const uint32_t index = intern_path_slow(value);
  if (index != kNoPath) last_path = PathCache{table_id_, value, index};
  return index;
}

uint32_t FlowTable::intern_path_slow(uint64_t value) {
  // Keyed: MAC addresses are chosen by whoever is on the link.
  const uint64_t mixed = siphash13_u64(hash_key_, value);
  const uint32_t start = static_cast<uint32_t>(mixed % kIngressPaths);
  const uint32_t step = 1 + static_cast<uint32_t>((mixed >> 32) % (kIngressPaths - 1));
  for (uint32_t probe = 0; probe < kPathProbes; ++probe) {
    const uint32_t index = static_cast<uint32_t>((start + static_cast<uint64_t>(probe) * step) % kIngressPaths);
    std::atomic_ref<uint64_t> entry(paths_[index]);
    // Acquire pairs with the CAS that interned it.
    uint64_t current = entry.load(std::memory_order_acquire);
    if (current == 0 && entry.compare_exchange_strong(current, value, std::memory_order_acq_rel, std::memory_order_acquire)) {
      return index;
    }
    if (current == value) return index;
  }
  return kNoPath;
}

void FlowTable::path_of(uint32_t index, uint16_t* ingress_port, uint8_t mac[6]) const {
  if (index >= kIngressPaths) {
    *ingress_port = kNoIngressPort;
    std::memset(mac, 0, 6);
    return;
  }
  // Acquire pairs with the CAS that interned it (also ordered before the
  // flow's publication, which the caller acquired).
  const uint64_t value = std::atomic_ref<uint64_t>(paths_[index]).load(std::memory_order_acquire);
  *ingress_port = static_cast<uint16_t>((value >> 48) & 0x7fff);
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(value >> (8 * i));
}

// ---------------------------------------------------------------------------
// Insertion

void FlowTable::write_key(uint32_t slot, bool wide, const KeyCode& code, uint32_t backend_id) {
  // kPayloadStore (release) pairs with the kPayloadLoad of seqlock readers
  // still reading the slot's previous incarnation: whoever sees one of these
  // values also sees the claim that bumped the version.
  if (wide) {
    word(slot, kP0).store(code.a[0], kPayloadStore);
    word(slot, kP1).store(code.a[1], kPayloadStore);
    word(slot + 1, kP0).store(code.a[2], kPayloadStore);
    word(slot + 1, kP1).store(code.a[3], kPayloadStore);
    word(slot + 1, kP2).store(kMarker | code.src_port() | (static_cast<uint64_t>(backend_id) << 16), kPayloadStore);
    std::atomic_ref<uint64_t> tail = word(slot + 1, kControl);
    tail.store(tail.load(std::memory_order_relaxed) | (static_cast<uint64_t>(code.dst_port()) << kTailPortShift),
               kPayloadStore);
  } else {
    word(slot, kP0).store(code.a[0], kPayloadStore);
    word(slot, kP1).store(code.ports | (static_cast<uint64_t>(backend_id) << 32), kPayloadStore);
  }
}

FlowInsertResult FlowTable::insert_entries(const FlowKey* keys, const uint64_t* hashes, size_t count,
                                           const NewFlow& flow, bool template_entry, uint32_t backend_id,
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
  const KeyCode codes[2] = {KeyCode(keys[0]), KeyCode(keys[count - 1])};
  Probe probes[2];
  uint8_t kinds[2] = {};
  for (size_t k = 0; k < count; ++k) probes[k] = probe_for(hashes[k]);
  kinds[0] = template_entry ? (codes[0].v6 ? kTemplate6 : kTemplate4) : (codes[0].v6 ? kForward6 : kForward4);
  if (count == 2) {
    // nat (the reply goes back to the client): IPv6 needs only the backend's
    // address in the reverse entry; the rest is the forward key's source.
    const bool to_client = codes[1].v6 && codes[0].v6 && codes[1].a[2] == codes[0].a[0] &&
                           codes[1].a[3] == codes[0].a[1] && codes[1].dst_port() == codes[0].src_port() &&
                           codes[1].protocol == codes[0].protocol;
    kinds[1] = !codes[1].v6 ? kReverse4 : (to_client ? kReverse6Compact : kReverse6);
  }

  Locks locks;
  if (!lock_stripes(&locks, probes, count)) {
    FlowCounters::bump(counters.insert_contended);
    return FlowInsertResult::contended;
  }
  const FlowInsertResult result = place(keys, codes, probes, kinds, count, flow, template_entry, backend_id,
                                        template_timeout_ms, now, &locks, counters, out);
  unlock_stripes(&locks, 0);
  return result;
}

FlowInsertResult FlowTable::place(const FlowKey* keys, const KeyCode* codes, const Probe* probes,
                                  const uint8_t* kind_codes, size_t count, const NewFlow& flow, bool template_entry, uint32_t backend_id,
                                  uint32_t template_timeout_ms, uint32_t now, Locks* locks, FlowCounters& counters,
                                  Flow* out) {
  const Kind kinds[2] = {static_cast<Kind>(kind_codes[0]), static_cast<Kind>(kind_codes[count - 1])};
  for (int attempt = 0; attempt < kInsertAttempts; ++attempt) {
    // 1. Is either key tracked already? With the stripes of both keys'
    // buckets held, no entry for them can be placed or moved in meanwhile;
    // entries can only disappear.
    bool look_again = false;
    for (size_t k = 0; k < count && !look_again; ++k) {
      Found found;
      if (!find(codes[k], probes[k], &found)) continue;
      look_again = true;
      Owner owner = found.owner;
      if (!found.owner_known) {
        const Resolve resolved = resolve_owner(found.slot, found.control, &owner);
        if (resolved == Resolve::orphan) delete_reverse(found.slot, found.control);
        if (resolved != Resolve::ok) continue;
      }
      uint64_t owner_control;
      if (!read_flow(owner.slot, version_of(owner.control), out, &owner_control)) continue;
      if (flow_expired(*out, timeouts_, now)) {
        if (delete_entry(owner.slot, owner_control, FlowEndReason::expired)) FlowCounters::bump(counters.expired);
        continue;
      }
      if (out->key == keys[0]) {
        // Our flow (found through its reverse entry when k == 1).
        out->matched = FlowDirection::original;
        if (out->has_reverse && !read_reverse_key(owner.slot, owner_control, out->key, &out->reverse_key)) continue;
        FlowCounters::bump(counters.insert_exists);
        return FlowInsertResult::exists;
      }
      if (is_reverse(kind_of(found.control))) {
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
    if (look_again) continue;

    // 2. Room for each entry: a free slot, moves, or an eviction. When the
    // forward entry took the room the reverse entry needed (both keys share a
    // bucket), the reverse entry goes first and the forward entry takes its
    // other choice; when that fails too, the moves made on the way may have
    // left free slots for both: a last look in either order, moving nothing.
    Claim claims[2];
    // Claims the entries in `order`; on failure releases what it claimed and
    // returns the position that failed, else `count`.
    auto claim_in_order = [&](const size_t* order, bool may_move) {
      for (size_t i = 0; i < count; ++i) {
        const size_t k = order[i];
        const uint32_t width = width_of(kinds[k]);
        if (!(may_move ? claim_room(probes[k], width, locks, now, counters, &claims[k])
                       : claim_free(probes[k], width, &claims[k]))) {
          for (size_t j = 0; j < i; ++j) abandon(claims[order[j]]);
          return i;
        }
      }
      return count;
    };
    constexpr size_t kForwardFirst[2] = {0, 1};
    constexpr size_t kReverseFirst[2] = {1, 0};
    const size_t placed = claim_in_order(kForwardFirst, true);
    if (placed != count &&
        (placed == 0 || (claim_in_order(kReverseFirst, true) != count && claim_in_order(kForwardFirst, false) != count &&
                         claim_in_order(kReverseFirst, false) != count))) {
      FlowCounters::bump(counters.insert_failed_full);
      return FlowInsertResult::full;
    }

    // 3. Write the entries.
    const uint32_t forward = claims[0].slot;
    uint32_t path = kNoPath;
    if (!template_entry) {
      path = intern_path(flow.ingress_port, flow.client_mac);
      if (path == kNoPath) FlowCounters::bump(counters.ingress_paths_full);
    }
    write_key(forward, is_wide(kinds[0]), codes[0], backend_id);
    const uint32_t field = template_entry ? std::min(template_timeout_ms, kMaxTimeoutMs)
                                          : (count == 2 ? claims[1].slot : kNoReverse);
    word(forward, kP2).store(mutable_word(now, field), kPayloadStore);
    const FlowState state = template_entry ? FlowState::other : flow.state;
    uint64_t forward_control = empty_control(claims[0].version) | kLive |
                               (static_cast<uint64_t>(kinds[0]) << kKindShift) |
                               (static_cast<uint64_t>(state) << kTcpShift) |
                               (static_cast<uint64_t>(codes[0].protocol) << kProtocolShift);
    if (!template_entry) {
      forward_control |= (static_cast<uint64_t>(flow.flags & kFlowFlagsMask) << kFlagsShift) |
                         (static_cast<uint64_t>(path) << kPathShift);
    }
    uint64_t reverse_control = 0;
    if (count == 2) {
      const uint32_t reverse = claims[1].slot;
      reverse_control = empty_control(claims[1].version) | kLive | (static_cast<uint64_t>(kinds[1]) << kKindShift);
      if (kinds[1] == kReverse6Compact) {
        word(reverse, kP0).store(codes[1].a[0], kPayloadStore);
        word(reverse, kP1).store(codes[1].a[1], kPayloadStore);
        reverse_control |= (static_cast<uint64_t>(probes[1].tag) << kTagShift) |
                           (static_cast<uint64_t>(codes[1].src_port()) << kCompactPortShift);
      } else {
        write_key(reverse, is_wide(kinds[1]), codes[1], backend_id);
        reverse_control |= static_cast<uint64_t>(codes[1].protocol) << kProtocolShift;
      }
      word(reverse, kP2).store(make_link(forward, claims[0].version), kPayloadStore);
    }

    // 4. Publish: the reverse entry first, so that a live forward entry always
    // has a live reverse entry (fullnat reads its local port from there). The
    // active-flow hook runs before the flow is visible, so that a remover on
    // another thread can never decrement before the increment. Release pairs
    // with the acquire load of every reader of these words.
    if (!template_entry && events_.flow_added) events_.flow_added(events_.context, backend_id);
    if (!template_entry && events_.flow_created) {
      FlowNotice notice;
      notice.slot = forward;
      notice.backend_id = backend_id;
      notice.last_seen_ms = now;
      notice.reason = FlowEndReason::removed;
      notice.key = keys[0];
      events_.flow_created(events_.context, notice);
    }
    if (count == 2) word(claims[1].slot, kControl).store(reverse_control, std::memory_order_release);
    word(forward, kControl).store(forward_control, std::memory_order_release);
    FlowCounters::bump(counters.inserts);

    out->handle = FlowHandle{forward, claims[0].version};
    out->kind = template_entry ? FlowEntryKind::persistence_template : FlowEntryKind::forward;
    out->matched = FlowDirection::original;
    out->state = state;
    out->has_reverse = count == 2;
    out->backend_id = backend_id;
    out->last_seen_ms = now;
    out->key = keys[0];
    if (template_entry) {
      out->template_timeout_ms = field;
      out->flags = 0;
      out->ingress_port = 0;
      std::memset(out->client_mac, 0, sizeof(out->client_mac));
    } else {
      out->template_timeout_ms = 0;
      out->flags = flow.flags & kFlowFlagsMask;
      path_of(path, &out->ingress_port, out->client_mac);
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
  return insert_entries(keys, hashes, flow.track_reverse ? 2 : 1, flow, false, flow.backend_id, 0, now_ms, counters,
                        out);
}

FlowInsertResult FlowTable::insert_template(const FlowKey& template_key, uint64_t hash, uint32_t backend_id,
                                            uint32_t timeout_ms, uint64_t now_ms, FlowCounters& counters,
                                            Flow* out) {
  NewFlow shape;
  shape.key = template_key;
  return insert_entries(&template_key, &hash, 1, shape, true, backend_id, timeout_ms, now_ms, counters, out);
}

// ---------------------------------------------------------------------------
// Lookup and updates

bool FlowTable::lookup(const FlowKey& key, uint64_t hash, uint64_t now_ms, FlowCounters& counters, Flow* out,
                       bool want_reverse_key) {
  const uint32_t now = static_cast<uint32_t>(now_ms);
  const KeyCode code(key);
  const Probe probe = probe_for(hash);
  for (int attempt = 0; attempt < kReadRetries; ++attempt) {
    uint32_t moves_first, moves_second;
    move_counters(probe, &moves_first, &moves_second);
    Found found;
    if (!find(code, probe, &found)) {
      if (moves_stable(probe, moves_first, moves_second)) break;
      // A move of one of these buckets' entries overlapped the scan: let it finish.
      for (int spin = 0; spin < kPendingSpins; ++spin) {
        uint32_t first, second;
        move_counters(probe, &first, &second);
        if (((first | second) & 1) == 0) break;
        cpu_relax();
      }
      continue;
    }
    Owner owner = found.owner;
    uint64_t owner_control;
    if (!is_reverse(kind_of(found.control))) {
      owner.slot = found.slot;
      if (!read_found(found, key, out, &owner_control)) continue;
    } else {
      if (!found.owner_known) {
        const Resolve resolved = resolve_owner(found.slot, found.control, &owner);
        if (resolved == Resolve::orphan) {
          // The flow is gone: clear its reverse entry so that the next reply does not find it.
          delete_reverse(found.slot, found.control);
          continue;
        }
        if (resolved != Resolve::ok) continue;
      }
      if (!read_flow(owner.slot, version_of(owner.control), out, &owner_control)) continue;
    }
    if (flow_expired(*out, timeouts_, now)) {
      if (delete_entry(owner.slot, owner_control, FlowEndReason::expired)) FlowCounters::bump(counters.expired);
      break;
    }
    if (is_reverse(kind_of(found.control))) {
      out->matched = FlowDirection::reply;
      out->reverse_key = key;
    } else if (want_reverse_key && out->has_reverse &&
               !read_reverse_key(owner.slot, owner_control, out->key, &out->reverse_key)) {
      continue;  // deleted while we read it
    }
    FlowCounters::bump(counters.lookup_hits);
    return true;
  }
  FlowCounters::bump(counters.lookup_misses);
  return false;
}

bool FlowTable::peek(const FlowKey& key, uint64_t hash, uint64_t now_ms, Flow* out, bool* expired) const {
  const uint32_t now = static_cast<uint32_t>(now_ms);
  const KeyCode code(key);
  const Probe probe = probe_for(hash);
  for (int attempt = 0; attempt < kReadRetries; ++attempt) {
    uint32_t moves_first, moves_second;
    move_counters(probe, &moves_first, &moves_second);
    Found found;
    if (!find(code, probe, &found)) {
      if (moves_stable(probe, moves_first, moves_second)) return false;
      continue;  // a move overlapped the scan: look again
    }
    if (!is_reverse(kind_of(found.control))) {
      if (!read_found(found, key, out, nullptr)) continue;
    } else {
      Owner owner = found.owner;
      if (!found.owner_known && resolve_owner(found.slot, found.control, &owner) != Resolve::ok) continue;
      if (!read_flow(owner.slot, version_of(owner.control), out, nullptr)) continue;
      out->matched = FlowDirection::reply;
      out->reverse_key = key;
    }
    *expired = flow_expired(*out, timeouts_, now);
    return true;
  }
  return false;
}

void FlowTable::touch(const FlowHandle& handle, uint64_t now_ms) {
  if (handle.slot >= slot_count()) return;
  // Pairs with the store that published the entry; the mutable word read
  // below then belongs to it if the re-check passes.
  const uint64_t control = word(handle.slot, kControl).load(std::memory_order_acquire);
  if (version_of(control) != handle.version || state_of(control) != kLive || is_reverse(kind_of(control))) return;
  std::atomic_ref<uint64_t> stamp = word(handle.slot, kP2);
  uint64_t current = stamp.load(kPayloadLoad);
  // Relaxed: ordered after the acquire load above.
  if (!same_live(word(handle.slot, kControl).load(std::memory_order_relaxed), control)) return;
  const uint32_t now = static_cast<uint32_t>(now_ms);
  // Skip the store when the stamp would not move, so that a busy flow does not
  // dirty its line on every packet, nor move it backwards when another worker's
  // clock read is slightly older. Relaxed: the stamp publishes nothing. If the
  // slot was recycled since the check, the CAS (expecting a forward or template
  // word, bit 63 clear) can only succeed on a forward or template word: see
  // the layout notes.
  while (static_cast<int32_t>(now - low32(current)) > 0 && (current & kMarker) == 0) {
    if (stamp.compare_exchange_weak(current, mutable_word(now, high32(current)), std::memory_order_relaxed,
                                    std::memory_order_relaxed)) {
      return;
    }
  }
}

FlowState FlowTable::observe_tcp(const FlowHandle& handle, FlowState previous, uint8_t tcp_flags,
                                 FlowDirection direction, uint64_t now_ms) {
  if (handle.slot >= slot_count()) return previous;
  touch(handle, now_ms);
  std::atomic_ref<uint64_t> control_word = word(handle.slot, kControl);
  // Relaxed: the CAS below re-reads the word; the state bits publish no data.
  uint64_t current = control_word.load(std::memory_order_relaxed);
  for (;;) {
    if (version_of(current) != handle.version || state_of(current) != kLive || !is_forward(kind_of(current))) {
      return previous;
    }
    const FlowState state = tcp_state_of(current);
    const FlowState next = next_tcp_state(state, tcp_flags, direction);
    if (next == state) return state;
    // Relaxed: the state bits publish no data. The version in the expected value
    // is what keeps a stale handle from changing a recycled slot.
    if (control_word.compare_exchange_weak(current, with_tcp_state(current, next), std::memory_order_relaxed,
                                           std::memory_order_relaxed)) {
      return next;
    }
  }
}

bool FlowTable::remove(const FlowHandle& handle, FlowCounters& counters) {
  if (handle.slot >= slot_count()) return false;
  // Pairs with the release store that published the entry (delete_entry reads it).
  uint64_t current = word(handle.slot, kControl).load(std::memory_order_acquire);
  for (;;) {
    if (version_of(current) != handle.version || state_of(current) != kLive || is_reverse(kind_of(current))) {
      return false;
    }
    if (delete_entry(handle.slot, current, FlowEndReason::removed)) {
      FlowCounters::bump(counters.removed);
      return true;
    }
    // Only the TCP state bits can have changed with the version intact: retry.
    current = word(handle.slot, kControl).load(std::memory_order_acquire);
  }
}

size_t FlowTable::expire_step(uint64_t now_ms, size_t max_slots, FlowCounters& counters) {
  const uint32_t now = static_cast<uint32_t>(now_ms);
  const size_t total = slot_count();
  max_slots = std::min(max_slots, total);
  // Relaxed: the cursor only spreads the work between callers; a range swept
  // twice or late costs time, not correctness. (An entry moved from an unswept
  // to a swept range waits for the next pass; lookups never return it expired.)
  size_t slot = static_cast<size_t>(sweep_cursor_.fetch_add(max_slots, std::memory_order_relaxed) % total);
  size_t expired = 0;
  for (size_t n = 0; n < max_slots; ++n, slot = slot + 1 == total ? 0 : slot + 1) {
    const uint32_t index = static_cast<uint32_t>(slot);
    // Pairs with the release store that published the entry.
    const uint64_t control = word(index, kControl).load(std::memory_order_acquire);
    if (state_of(control) != kLive) continue;
    if (is_reverse(kind_of(control))) {
      Owner owner;
      if (resolve_owner(index, control, &owner) == Resolve::orphan) delete_reverse(index, control);
      continue;
    }
    if (is_expired(index, control, now) && delete_entry(index, control, FlowEndReason::expired)) {
      FlowCounters::bump(counters.expired);
      ++expired;
    }
  }
  return expired;
}

size_t FlowTable::pass_slots_per_tick(uint32_t tick_ms, uint32_t pass_ms) const {
  if (pass_ms == 0) return slot_count();
  const uint64_t slots = (static_cast<uint64_t>(slot_count()) * std::max<uint32_t>(tick_ms, 1) + pass_ms - 1) / pass_ms;
  return static_cast<size_t>(std::clamp<uint64_t>(slots, kSlotsPerBucket, slot_count()));
}

// ---------------------------------------------------------------------------
// Introspection

FlowOccupancy FlowTable::occupancy() const {
  FlowOccupancy result;
  for (uint32_t slot = 0; slot < slot_count(); ++slot) {
    // Acquire pairs with the publishing release store (a snapshot for stats).
    const uint64_t control = word(slot, kControl).load(std::memory_order_acquire);
    if (state_of(control) == kClaimed) ++result.claimed;
    if (state_of(control) != kLive) continue;
    const Kind kind = kind_of(control);
    result.slots_used += width_of(kind);
    switch (public_kind(kind)) {
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
  // Pairs with the release store that published the entry. Introspection for
  // tests: not validated like read_flow.
  const uint64_t control = word(slot, kControl).load(std::memory_order_acquire);
  const Kind kind = kind_of(control);
  *out = FlowSlotInfo{};
  out->live = state_of(control) == kLive;
  out->kind = public_kind(kind);
  out->state = is_forward(kind) ? tcp_state_of(control) : FlowState::other;
  out->width = static_cast<uint8_t>(width_of(kind));
  out->version = version_of(control);
  if (!out->live) return false;
  const uint64_t mutable_bits = word(slot, kP2).load(std::memory_order_acquire);
  if (is_reverse(kind)) {
    out->peer_slot = link_slot(mutable_bits);
    out->peer_version = static_cast<uint32_t>(mutable_bits >> 32) & 0x7fffffff;
    if (kind == kReverse6Compact) {
      FlowKey forward_key{};
      const uint64_t forward_control = out->peer_slot < slot_count()
                                           ? word(out->peer_slot, kControl).load(std::memory_order_acquire)
                                           : 0;
      if (is_forward(kind_of(forward_control))) decode_key(out->peer_slot, forward_control, &forward_key);
      const uint64_t src[2] = {word(slot, kP0).load(std::memory_order_acquire),
                               word(slot, kP1).load(std::memory_order_acquire)};
      uint8_t src_addr[16];
      std::memcpy(src_addr, src, 16);
      out->key = FlowKey::ipv6(forward_key.protocol, src_addr, compact_port_of(control), forward_key.src_addr,
                               forward_key.src_port);
    } else {
      decode_key(slot, control, &out->key);
      out->backend_id = backend_of(slot, control);
    }
    return true;
  }
  decode_key(slot, control, &out->key);
  out->backend_id = backend_of(slot, control);
  out->last_seen_ms = low32(mutable_bits);
  if (is_template(kind)) {
    out->peer_slot = high32(mutable_bits);
  } else {
    out->peer_slot = high32(mutable_bits) == kNoReverse ? UINT32_MAX : high32(mutable_bits);
  }
  return true;
}

}  // namespace l4lb::core

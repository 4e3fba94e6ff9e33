// Connection tracking shared by every worker thread.
//
// A flow is created by the worker that sees its first packet; in nat and
// fullnat the replies come back through the kernel's fanout on any worker, so
// every operation here is safe from several threads at once without locks.
//
// Layout. Slots are grouped in buckets of 8. Each bucket has one cache line of
// control words (8 x 64 bits: slot state, entry kind, TCP state, a 24-bit tag
// of the key's hash, a 32-bit version) and each slot has one 64-byte entry line
// (key, backend, path, peer link, last-seen time). A key may live in either of
// two buckets chosen by independent halves of its keyed hash ("power of two
// choices": an insert takes the emptier one), so that buckets of 8 do not
// overflow below ~73% load; a lookup reads at most two control lines, plus one
// entry line per tag match.
// Control lines change only when a slot is claimed, published, deleted or when
// a TCP flow changes state, so workers touching different flows of one bucket
// do not bounce it; the per-packet write (last seen) lands in the flow's own
// entry line.
//
// Memory, honestly: 72 bytes per slot (64-byte entry + 8-byte control word).
// A nat or fullnat flow takes two slots (forward key, reverse key): 144 bytes;
// a dr/tunnel flow one: 72 bytes; a persistence template one: 72 bytes. Size
// the table for at most 75% load, i.e. 192 bytes per nat flow: 1,000,000 nat
// flows need 2.67 M slots, 192 MB. Measured with random keys: no insert finds
// both buckets full below 73% load; at 85%, 0.15% do (they get `full` once
// eviction of half-open and expired entries finds nothing).
//
// Concurrency (what makes it lock-free and exact):
//  - Claim: an inserter CASes an EMPTY control word to CLAIMED (seq_cst),
//    bumping the version, writes the entry's fields with release stores, then
//    publishes LIVE with a release store. Readers load the control word with
//    acquire, copy the fields with acquire loads and re-check the version (a
//    seqlock whose writer is the claim): a torn or recycled entry is never
//    returned.
//  - Exactly one live entry per key: after claiming, an inserter re-scans both
//    candidate buckets with seq_cst loads; if it sees another CLAIMED slot with
//    the same tag, or a LIVE slot with the same key, it gives its slot back.
//    Of two concurrent claimants the later one in the seq_cst order always sees
//    the earlier, so at most one of them publishes.
//  - Deletion is a CAS from LIVE to EMPTY that bumps the version; every update
//    through a FlowHandle (state change, delete) is a CAS that checks the
//    version, so a handle to a recycled slot changes nothing (no ABA: the
//    version is 32 bits and a slot is recycled at most once per insert).
//  - The last-seen time is a relaxed store in the entry line: a late store to a
//    recycled slot only makes a brand-new entry look a few microseconds younger.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/hash.h"

namespace l4lb::core {

// The key of an entry: a packet's 5-tuple as seen on the wire in one
// direction, or a persistence template (service, client address). 40 bytes,
// all of which are hashed and compared, so the factories zero every pad byte.
struct FlowKey {
  static constexpr uint8_t kIpv4 = 4;
  static constexpr uint8_t kIpv6 = 6;
  static constexpr uint8_t kPacketTuple = 0;
  static constexpr uint8_t kPersistenceTemplate = 1;

  uint8_t src_addr[16];  // network order; IPv4 uses bytes 0..3, bytes 4..15 stay zero
  uint8_t dst_addr[16];  // network order; same rule
  uint16_t src_port;     // host order; 0 for protocols without ports
  uint16_t dst_port;     // host order
  uint8_t protocol;      // IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...)
  uint8_t family;        // kIpv4 or kIpv6
  uint8_t space;         // kPacketTuple or kPersistenceTemplate: a template never equals a tuple
  uint8_t pad;           // zero

  // Addresses in host order (0xc6120064 is 198.18.0.100).
  static FlowKey ipv4(uint8_t protocol, uint32_t src_addr, uint16_t src_port, uint32_t dst_addr,
                      uint16_t dst_port);
  static FlowKey ipv6(uint8_t protocol, const uint8_t src_addr[16], uint16_t src_port,
                      const uint8_t dst_addr[16], uint16_t dst_port);
  // Persistence (IPVS "template"): the client address within one service. The
  // service id occupies dst_addr bytes 0..3 (network order).
  static FlowKey persistence_template(uint32_t service_id, uint8_t family, const uint8_t* client_addr);

  // The same tuple seen in the other direction (source and destination swapped).
  FlowKey reversed() const;
  uint32_t src_ipv4() const;  // host order
  uint32_t dst_ipv4() const;  // host order

  bool operator==(const FlowKey& other) const = default;
};
static_assert(sizeof(FlowKey) == 40, "FlowKey is five 64-bit words, no implicit padding");

// IPVS's simplified TCP table (ip_vs_proto_tcp.c), driven by flags seen in
// either direction. Values are stored in 3 bits of the control word.
enum class FlowState : uint8_t {
  tcp_syn_seen = 0,      // SYN seen, handshake not complete: "half-open", first to be evicted
  tcp_established = 1,   // the client's ACK completed the handshake (or mid-stream pickup)
  tcp_fin_original = 2,  // closing: FIN from the client side
  tcp_fin_reply = 3,     // closing: FIN from the backend side
  tcp_closed = 4,        // RST, or FIN from both sides (TIME-WAIT)
  udp = 5,
  other = 6,             // any other protocol, and persistence templates
};
inline constexpr size_t kFlowStateCount = 7;

enum class FlowDirection : uint8_t {
  original = 0,  // client -> service (the key the flow was created with)
  reply = 1,     // backend -> client, or backend -> local address in fullnat
};

// TCP header flag bits as on the wire (RFC 9293 §3.1).
struct TcpFlagBits {
  static constexpr uint8_t fin = 0x01;
  static constexpr uint8_t syn = 0x02;
  static constexpr uint8_t rst = 0x04;
  static constexpr uint8_t ack = 0x10;
};

// The state after a segment with `tcp_flags` travelling in `direction`.
// Pure; exposed for tests and for the engine's decision to reschedule a reused
// tuple (a SYN on a closed flow returns tcp_syn_seen).
FlowState next_tcp_state(FlowState state, uint8_t tcp_flags, FlowDirection direction);

// The state of a new flow. TCP without SYN (a flow picked up mid-stream after a
// restart or failover) starts established, as IPVS does with sloppy_tcp.
FlowState initial_flow_state(uint8_t protocol, uint8_t tcp_flags);

// Inactivity timeouts per state, in milliseconds (defaults from IPVS where it
// has one). Values above 2^31 - 1 ms are clamped: ages are compared in 32 bits.
struct FlowTimeouts {
  uint32_t tcp_syn_ms = 60'000;
  uint32_t tcp_established_ms = 900'000;
  uint32_t tcp_closing_ms = 120'000;
  uint32_t tcp_closed_ms = 10'000;
  uint32_t udp_ms = 300'000;
  uint32_t other_ms = 60'000;

  uint32_t for_state(FlowState state) const;
};

// Per-worker counters: one writer (the worker that passes them in), read by
// the stats thread. Relaxed: they order nothing.
struct alignas(64) FlowCounters {
  std::atomic<uint64_t> lookup_hits{0};
  std::atomic<uint64_t> lookup_misses{0};
  std::atomic<uint64_t> inserts{0};                // flows and templates created
  std::atomic<uint64_t> insert_exists{0};          // the key was already tracked (returned it)
  std::atomic<uint64_t> insert_reverse_exists{0};  // the reply tuple belongs to another flow
  std::atomic<uint64_t> evictions_half_open{0};    // a SYN-seen flow made room
  std::atomic<uint64_t> evictions_expired{0};      // an expired, not yet swept entry made room
  std::atomic<uint64_t> insert_failed_full{0};     // nothing evictable in either bucket
  std::atomic<uint64_t> insert_contended{0};       // concurrent inserters kept colliding
  std::atomic<uint64_t> expired{0};                // timed out (sweep or lazily on lookup)
  std::atomic<uint64_t> removed{0};                // deleted through remove()

  // Single writer: a load and a store, no locked read-modify-write.
  static void bump(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// Called for forward entries only (one per tracked flow), exactly once each,
// on the thread whose insert published the flow (before it becomes visible)
// or whose CAS removed it (expiry, eviction, remove). This is how the engine
// keeps the per-backend active-flow counts that lc/wlc read: an array of
// std::atomic<int32_t> indexed by backend id, fetch_add(+1/-1, relaxed).
struct FlowEvents {
  void* context = nullptr;
  void (*flow_added)(void* context, uint32_t backend_id) = nullptr;
  void (*flow_removed)(void* context, uint32_t backend_id) = nullptr;
};

struct FlowTableOptions {
  uint32_t slots = 1u << 16;  // entries of any kind; rounded up to a multiple of 8 (at least 16)
  SipHashKey hash_key;        // secret, per table, from a CSPRNG
  FlowTimeouts timeouts;
  FlowEvents events;
};

// Names a forward entry or template: valid while the slot keeps its version.
struct FlowHandle {
  uint32_t slot = UINT32_MAX;
  uint32_t version = 0;
};

enum class FlowEntryKind : uint8_t { forward = 0, reverse = 1, persistence_template = 2 };

// A consistent copy of a tracked flow (or template).
struct Flow {
  FlowHandle handle;               // of the forward entry / template
  FlowEntryKind kind;              // forward or persistence_template
  FlowDirection matched;           // which of the flow's keys the lookup matched
  FlowState state;
  bool has_reverse;                // a reverse entry was created with the flow
  uint16_t ingress_port;           // port the client's packets arrive on: replies leave there
  uint8_t client_mac[6];           // client-side next hop: replies are sent to it
  uint32_t backend_id;             // opaque, chosen by the caller
  uint32_t last_seen_ms;           // low 32 bits of the caller's clock
  uint32_t template_timeout_ms;    // templates only
  FlowKey key;                     // original direction (client -> service)
  FlowKey reverse_key;             // reply tuple; valid if matched == reply, or if asked for.
                                   // In fullnat its destination is the local address and port.
};

// What the engine supplies to create a flow.
struct NewFlow {
  FlowKey key;                  // original direction
  FlowKey reverse_key;          // the reply tuple as it will arrive: nat backend -> client,
                                // fullnat backend -> local address:port
  bool track_reverse = false;   // false in dr and tunnel modes (replies bypass the balancer)
  uint32_t backend_id = 0;
  FlowState state = FlowState::other;
  uint16_t ingress_port = 0;
  uint8_t client_mac[6] = {};
};

enum class FlowInsertResult : uint8_t {
  inserted,        // created; `out` describes it
  exists,          // the key is tracked already; `out` is that flow (use it, do not reschedule)
  reverse_exists,  // the reply tuple is another live flow's (fullnat: pick another local port;
                   // nat: two VIPs share a backend and a client port). `out` is the other flow.
  full,            // both buckets hold only live, non-half-open entries: caller's policy
                   // (schedule without tracking via maglev/sh, or drop)
  contended,       // other threads kept inserting into the same buckets with the same tag;
                   // nothing changed, treat this packet like `full`
};

struct FlowOccupancy {
  size_t forward = 0;
  size_t reverse = 0;
  size_t templates = 0;
  size_t claimed = 0;  // being written right now
};

// Introspection for tests and the fuzz target (not for the packet path).
struct FlowSlotInfo {
  bool live;
  FlowEntryKind kind;
  FlowState state;
  uint32_t version;
  uint32_t backend_id;
  uint32_t last_seen_ms;
  uint32_t peer_slot;
  uint32_t peer_version;
  FlowKey key;
};

class FlowTable {
 public:
  static constexpr uint32_t kSlotsPerBucket = 8;

  // Allocates everything the table will ever use; nothing allocates afterwards.
  explicit FlowTable(const FlowTableOptions& options);
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // The keyed hash of a key; compute once per packet and pass it to lookup,
  // insert and the scheduler.
  uint64_t hash(const FlowKey& key) const;

  // Pulls both candidate control lines towards the cache; call for a whole
  // batch before its lookups.
  void prefetch(uint64_t hash) const;

  // Finds the flow with `key` in either direction. An expired flow is removed
  // on the spot (counted in `expired`) and reported missing. When
  // `want_reverse_key` is set and the forward key matched, the reverse key is
  // copied too (fullnat needs its local address and port): one more line.
  bool lookup(const FlowKey& key, uint64_t hash, uint64_t now_ms, FlowCounters& counters, Flow* out,
              bool want_reverse_key = false);

  // Creates a flow (and its reverse entry) unless the key is tracked already.
  // When both candidate buckets are full, makes room by evicting, in order:
  // the oldest half-open (SYN seen) flow, then the oldest expired entry; with
  // neither, returns `full`. Never blocks: a concurrent claim of the same tag
  // is waited for a bounded number of spins.
  FlowInsertResult insert(const NewFlow& flow, uint64_t hash, uint64_t now_ms, FlowCounters& counters,
                          Flow* out);

  // Persistence template: (service, client address) -> backend, kept for
  // `timeout_ms` after its last use (touch() it whenever a flow is created
  // through it). Same result codes as insert(); `exists` returns the live one.
  FlowInsertResult insert_template(const FlowKey& template_key, uint64_t hash, uint32_t backend_id,
                                   uint32_t timeout_ms, uint64_t now_ms, FlowCounters& counters, Flow* out);

  // Updates the last-seen time and, for TCP, the state from a segment's flags.
  // Returns the new state; returns `previous` unchanged if the handle is stale.
  FlowState observe_tcp(const FlowHandle& handle, FlowState previous, uint8_t tcp_flags,
                        FlowDirection direction, uint64_t now_ms);
  // Updates only the last-seen time (UDP, other protocols, templates).
  void touch(const FlowHandle& handle, uint64_t now_ms);

  // Deletes a flow (both its entries) or template. False if already gone.
  bool remove(const FlowHandle& handle, FlowCounters& counters);

  // Incremental expiry: examines the next `max_slots` slots of a cursor shared
  // by all workers and deletes what has timed out (and reverse entries whose
  // flow is gone). Run it once per batch; returns the number of flows and
  // templates expired.
  size_t expire_step(uint64_t now_ms, size_t max_slots, FlowCounters& counters);

  size_t slot_count() const { return static_cast<size_t>(bucket_count_) * kSlotsPerBucket; }
  const FlowTimeouts& timeouts() const { return timeouts_; }

  // O(slots), off the packet path.
  FlowOccupancy occupancy() const;
  bool inspect(uint32_t slot, FlowSlotInfo* out) const;
  // The two buckets a hash may live in (tests use it to aim keys at a bucket).
  void candidate_buckets(uint64_t hash, uint32_t* first, uint32_t* second) const;

  // Storage layout, public so that its size is stated where it is documented.
  // Private to the process (never in shared memory): words are host order.

  // One cache line of control words per bucket (layout in flow_table.cc).
  struct alignas(64) ControlLine {
    std::atomic<uint64_t> word[kSlotsPerBucket];
  };

  // One cache line per slot. Every field is an atomic so that seqlock readers
  // racing with a writer are well defined (release stores by the inserter,
  // acquire loads by readers: plain moves on x86; see flow_table.cc).
  struct alignas(64) Entry {
    std::atomic<uint64_t> key[5];        // the FlowKey's 40 bytes as five words
    std::atomic<uint32_t> last_seen_ms;  // low 32 bits of the caller's clock; any worker stores it
    std::atomic<uint32_t> backend_id;    // forward and template (copied into reverse for inspection)
    std::atomic<uint32_t> peer_slot;     // forward: its reverse entry or UINT32_MAX; reverse: its
                                         // forward entry; template: timeout in ms
    std::atomic<uint32_t> peer_version;  // version of peer_slot when the pair was linked
    std::atomic<uint64_t> client_path;   // bits 0..47 client-side next-hop MAC (byte 0 lowest),
                                         // bits 48..63 ingress port index
  };

 private:
  struct KeyWords {
    uint64_t w[5];
  };
  struct Probe {
    uint32_t bucket[2];
    uint32_t tag;
  };
  enum class Found : uint8_t { none, match, pending };
  struct ScanResult {
    Found found = Found::none;
    uint32_t slot = 0;
    uint64_t control = 0;
  };
  struct Claim;

  Probe probe_for(uint64_t hash) const;
  std::atomic<uint64_t>& control(uint32_t slot) const;
  bool key_matches(uint32_t slot, uint64_t control_word, const KeyWords& key) const;
  template <std::memory_order kOrder>
  ScanResult scan(const Probe& probe, const KeyWords& key, const Claim* own, size_t own_count) const;
  bool read_flow(uint32_t slot, uint32_t version, Flow* out, uint64_t* control_out) const;
  bool read_link(uint32_t slot, uint64_t control_word, uint32_t* peer_slot, uint32_t* peer_version) const;
  bool read_reverse_key(uint32_t slot, uint32_t version, FlowKey* out) const;
  bool is_expired(uint64_t control_word, uint32_t slot, uint32_t now) const;
  bool flow_expired(const Flow& flow, uint32_t now) const;
  bool delete_entry(uint32_t slot, uint64_t expected_control);
  bool delete_orphan_reverse(uint32_t slot, uint64_t expected_control);
  bool resolve_owner(uint32_t slot, uint64_t control_word, uint32_t* owner_slot,
                     uint64_t* owner_control) const;
  bool evict_one(const Probe& probe, uint32_t now, FlowCounters& counters);
  bool try_claim(const Probe& probe, FlowEntryKind kind, FlowState state, Claim* claim);
  void abandon(const Claim& claim);
  bool wait_for_change(uint32_t slot, uint64_t seen) const;
  FlowInsertResult insert_entries(const FlowKey* keys, const uint64_t* hashes, size_t count,
                                  const NewFlow& flow, FlowEntryKind primary_kind, uint32_t backend_id,
                                  uint32_t template_timeout_ms, uint64_t now_ms, FlowCounters& counters,
                                  Flow* out);

  uint32_t bucket_count_;
  SipHashKey hash_key_;
  FlowTimeouts timeouts_;
  FlowEvents events_;
  std::unique_ptr<ControlLine[]> controls_;
  std::unique_ptr<Entry[]> entries_;
  // Shared by the workers' expire_step calls: each takes the next range.
  alignas(64) std::atomic<uint64_t> sweep_cursor_{0};
};

static_assert(sizeof(FlowTable::Entry) == 64, "one entry per cache line");
static_assert(sizeof(FlowTable::ControlLine) == 64, "eight control words per cache line");
// Bytes per slot: the entry plus its control word.
inline constexpr size_t kFlowTableBytesPerSlot = sizeof(FlowTable::Entry) + sizeof(uint64_t);
static_assert(kFlowTableBytesPerSlot == 72);

}  // namespace l4lb::core

// Connection tracking shared by every worker thread.
//
// A flow is created by the worker that sees its first packet; in nat and
// fullnat the replies come back through the kernel's fanout on any worker, so
// every operation here is safe from several threads at once. Readers
// (lookup) never lock and never write shared state on a hit; writers that
// place entries (insert, and the cuckoo moves an insert makes) hold striped
// try-locks with a bounded spin, so no operation ever blocks indefinitely.
//
// Layout. The table is an array of 32-byte slots grouped in buckets of 4
// (128 bytes, two cache lines, 128-byte aligned). A slot is one control word
// (slot state, entry kind, TCP state, protocol, flags, ingress path, version)
// and three payload words; every word is accessed through std::atomic_ref,
// so the zero-filled memory of a fresh mapping is a valid empty table.
// Entries are "narrow" (one slot) or "wide" (two slots: an aligned half of
// a bucket, i.e. one cache line; the second slot's control word says TAIL):
//
//   entry                 slots  payload
//   IPv4 forward            1    addresses, ports, backend id, last seen, reply slot
//   IPv4 reverse            1    the reply tuple, link to its forward entry (slot, version)
//   IPv4 template           1    client, service id, backend id, last seen, timeout
//   IPv6 forward            2    as IPv4 with 128-bit addresses
//   IPv6 reverse (fullnat)  2    the reply tuple, link
//   IPv6 reverse (nat)      1    compact: the backend address, and the backend port and an
//                                11-bit tag in the control word; the rest of the reply
//                                tuple (client address and port) is the forward key's source
//   IPv6 template           2
//
// So an IPv4 nat or fullnat flow costs 64 bytes (two slots), an IPv4 dr or
// tunnel flow 32, a template 32 (IPv6: nat 96, fullnat 128, dr 64, template
// 64). The flow label is not part of an IPv6 key. IPv4 and IPv6 entries
// share the slots, so the memory is not split between the families.
// The client-side path (ingress port + next-hop MAC, 8 bytes) is interned in
// a table of 4,093 paths shared by all flows (12 bits per flow): in practice
// a few routers' MACs. Past 4,093 distinct paths (an L2 segment with that many
// client hosts), new flows are tracked without one: their replies follow the
// routing table, and `ingress_paths_full` counts them. Paths are never freed.
//
// Placement: a key may live in either of two buckets chosen by independent
// halves of its keyed hash. An insert takes a free slot (or aligned pair) of
// the first bucket, else of the second; when both are full it makes room by
// moving entries to their other bucket along a short path found breadth first
// (cuckoo displacement), which keeps inserts succeeding to well above 90%
// load; only when no path exists does it evict (half-open first, then
// expired, then `full`). A lookup reads the first bucket and, unless it hit
// there, the second: at most four cache lines, two of them adjacent pairs,
// and no dependent read on a hit. prefetch() pulls exactly those lines.
//
// Sizing: size the table by flows (slots_for_flows: IPv4 nat flows at 90%
// load, 71 bytes per flow: 10,000,000 flows in 711 MB) or by bytes
// (slots_for_bytes). The memory is allocated, faulted in (transparent huge
// pages where the kernel offers them) and zeroed when the table is built;
// nothing allocates afterwards.
//
// Concurrency (what makes it lock-free for readers and exact):
//  - Slot versions. A control word's version (32 bits) is bumped when the slot
//    is claimed and when it is freed, never when it is published or changes
//    TCP state. A handle is (slot, version); every update through a handle
//    (TCP state, delete) is a CAS that checks the version, so a stale handle
//    changes nothing; touch() changes only a last-seen stamp (below).
//  - Seqlock reads. Writers claim a slot (control word EMPTY -> CLAIMED), store
//    its payload with release, then publish it LIVE with a release store.
//    Readers load the control word with acquire, copy the payload with acquire
//    loads and re-check the control word: a reader that saw any word of a
//    recycling writer also sees its claim, so a torn entry is never returned.
//  - Exactly one live entry per key. Every write that places an entry into a
//    bucket (insert, or the destination of a move) and every move out of a
//    bucket holds that bucket's stripe lock (4096 stripes, a lock word each,
//    taken in ascending order with a bounded spin; `contended` when it runs
//    out). An insert holds the stripes of all its keys' buckets while it
//    checks that neither key is tracked and places them, so no other entry for
//    those keys can appear meanwhile. Deletions (remove, expiry, eviction)
//    need no lock: a CAS of the control word LIVE -> EMPTY decides between
//    racing deleters (and movers), and its winner alone reports flow_removed.
//  - Cuckoo moves. An entry moves from slot S (its bucket's stripe locked) to
//    slot D in its other bucket (locked), with the stripe of its peer's bucket
//    locked too: D is claimed and filled; the peer's link is pointed at D (a
//    reverse entry's link word, or a forward entry's reply-slot field); then
//    the move counter of S's stripe goes odd, a CAS retires S (LIVE -> EMPTY:
//    the commit; if it fails because S changed TCP state the copy is updated
//    and the CAS retried, if S was deleted the copy is abandoned), D is
//    published, and the counter goes even. Between the commit and the
//    publication the entry is in neither slot: a lookup that misses re-reads
//    the move counters of its two buckets' stripes (acquire loads before the
//    scan, a re-load after it) and retries if either moved or is odd. A
//    reader that resolves a reverse entry to a forward slot that is CLAIMED
//    waits for it (bounded); one that finds the forward slot's version changed
//    re-reads the link before calling the reverse entry an orphan: the link
//    was updated before the old slot was retired, so a move is never mistaken
//    for a deletion. A handle to a moved entry is stale like one to a deleted
//    entry (moves happen only inside inserts that found both buckets full).
//  - Pairs. A nat/fullnat insert publishes the reverse entry before the forward
//    one, so a live forward entry always has its reverse entry; deleting a
//    flow retires the forward entry (the commit) and then its reverse entry.
//    A reverse entry whose forward entry is gone (possible for a moment, or
//    when a deletion raced a move) is an orphan: never returned, and deleted
//    by whichever lookup, sweep or eviction meets it.
//  - Last seen: stored in a payload word with a relaxed CAS that keeps the
//    word's other half, so a stale handle's late touch can only make a
//    brand-new entry look a few microseconds younger.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/hash.h"

namespace l4lb::core {

// The key of an entry: a packet's 5-tuple as seen on the wire in one
// direction, or a persistence template (service, client address). 40 bytes,
// all of which are hashed and compared, so the factories zero every pad byte
// (an IPv4 key's address bytes 4..15 must stay zero: the table stores bytes 0..3).
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
  // 128-bit addresses in network order; the flow label is not part of a key.
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
  std::atomic<uint64_t> insert_failed_full{0};     // no room reachable and nothing evictable
  std::atomic<uint64_t> insert_contended{0};       // the buckets' locks stayed taken (a preempted inserter)
  std::atomic<uint64_t> expired{0};                // timed out (sweep or lazily on lookup)
  std::atomic<uint64_t> removed{0};                // deleted through remove()
  std::atomic<uint64_t> moves{0};                  // entries moved to their other bucket to make room
  std::atomic<uint64_t> ingress_paths_full{0};     // flows tracked without their ingress path (table of paths full)

  // Single writer: a load and a store, no locked read-modify-write.
  static void bump(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// Called for forward entries only (one per tracked flow), exactly once each,
// on the thread whose insert published the flow (before it becomes visible)
// or whose CAS removed it (expiry, eviction, remove). Moves call only
// flow_moved (when set).
// This is how the engine keeps the per-backend active-flow counts that lc/wlc
// read: an array of std::atomic<int32_t> indexed by backend id,
// fetch_add(+1/-1, relaxed).
enum class FlowEndReason : uint8_t {
  expired = 0,  // timed out (sweep, or met by a lookup or insert)
  removed = 1,  // remove(): its backend was removed, a SYN reused a closed tuple, a template was replaced
  evicted = 2,  // made room for a new flow (half-open, or expired and not yet swept)
};

// Optional, for flow logs, at the same moments as flow_added and
// flow_removed: the forward entry's slot and key. flow_moved tells that a
// forward entry moved to another slot (so a side table indexed by slot can
// follow its flow). With these null nothing extra is read or called.
struct FlowNotice {
  uint32_t slot;          // the forward entry's (head) slot
  uint32_t backend_id;
  uint32_t last_seen_ms;  // created: now; ended: the flow's last packet
  FlowEndReason reason;   // ended only
  FlowKey key;            // original direction
};

struct FlowEvents {
  void* context = nullptr;
  void (*flow_added)(void* context, uint32_t backend_id) = nullptr;
  void (*flow_removed)(void* context, uint32_t backend_id) = nullptr;
  void (*flow_created)(void* context, const FlowNotice& notice) = nullptr;
  void (*flow_ended)(void* context, const FlowNotice& notice) = nullptr;
  void (*flow_moved)(void* context, uint32_t from_slot, uint32_t to_slot) = nullptr;
};

struct FlowTableOptions {
  uint32_t slots = 1u << 16;  // 32-byte slots; rounded up to whole buckets of 4 (at least 2 buckets)
  SipHashKey hash_key;        // secret, per table, from a CSPRNG
  FlowTimeouts timeouts;
  FlowEvents events;
};

// Names a forward entry or template: valid while the slot keeps its version
// (until the entry is deleted or moved).
struct FlowHandle {
  uint32_t slot = UINT32_MAX;
  uint32_t version = 0;
};

enum class FlowEntryKind : uint8_t { forward = 0, reverse = 1, persistence_template = 2 };

// Per-flow flags (Flow::flags, NewFlow::flags): set by the caller when it
// creates the flow, returned by every lookup, never changed afterwards.
inline constexpr uint8_t kFlowFlagBits = 4;
inline constexpr uint8_t kFlowFlagsMask = (1u << kFlowFlagBits) - 1;
// Bit 0: replies of this flow would be routed out of another port than its
// ingress port (the engine decides once, when it creates the flow).
inline constexpr uint8_t kFlowFlagReplyRouteDiffers = 1u << 0;

// Flow::ingress_port of a flow tracked without its ingress path (the table of
// paths was full): its replies follow the routing table.
inline constexpr uint16_t kNoIngressPort = 0xffff;

// A consistent copy of a tracked flow (or template).
struct Flow {
  FlowHandle handle;               // of the forward entry / template
  FlowEntryKind kind;              // forward or persistence_template
  FlowDirection matched;           // which of the flow's keys the lookup matched
  FlowState state;
  bool has_reverse;                // a reverse entry was created with the flow
  uint16_t ingress_port;           // port the client's packets arrive on: replies leave there
                                   // (kNoIngressPort: unknown, route the replies)
  uint8_t client_mac[6];           // client-side next hop: replies are sent to it
  uint8_t flags;                   // NewFlow::flags as inserted (kFlowFlagsMask bits)
  uint32_t backend_id;             // opaque, chosen by the caller
  uint32_t last_seen_ms;           // low 32 bits of the caller's clock
  uint32_t template_timeout_ms;    // templates only
  FlowKey key;                     // original direction (client -> service)
  FlowKey reverse_key;             // reply tuple; valid if matched == reply, or if asked for
                                   // (and after an insert that returned inserted or exists).
                                   // In fullnat its destination is the local address and port.
};

// What the engine supplies to create a flow.
struct NewFlow {
  FlowKey key;                  // original direction
  FlowKey reverse_key;          // the reply tuple as it will arrive: nat backend -> client,
                                // fullnat backend -> local address:port (same family and protocol)
  bool track_reverse = false;   // false in dr and tunnel modes (replies bypass the balancer)
  uint32_t backend_id = 0;
  FlowState state = FlowState::other;
  uint16_t ingress_port = 0;    // below kNoIngressPort
  uint8_t client_mac[6] = {};
  uint8_t flags = 0;            // kFlowFlagsMask bits, stored with the flow
};

enum class FlowInsertResult : uint8_t {
  inserted,        // created; `out` describes it
  exists,          // the key is tracked already; `out` is that flow (use it, do not reschedule)
  reverse_exists,  // the reply tuple is another live flow's (fullnat: pick another local port;
                   // nat: two VIPs share a backend and a client port). `out` is the other flow.
  full,            // no room reachable by moves, and nothing half-open or expired to evict in
                   // the key's buckets: caller's policy (schedule without tracking via
                   // maglev/sh, or drop)
  contended,       // another thread held the buckets' locks for the whole bounded spin (it
                   // was preempted); nothing changed, treat this packet like `full`
};

struct FlowOccupancy {
  size_t forward = 0;
  size_t reverse = 0;
  size_t templates = 0;
  size_t claimed = 0;     // being written or moved right now
  size_t slots_used = 0;  // slots held by live entries (a wide entry holds two)
};

// Introspection for tests and the fuzz target (not for the packet path).
struct FlowSlotInfo {
  bool live;              // a live entry starts at this slot
  FlowEntryKind kind;
  FlowState state;
  uint8_t width;          // slots the entry takes: 1, or 2 (IPv6 forward, fullnat reverse, template)
  uint32_t version;
  uint32_t backend_id;    // forward and template
  uint32_t last_seen_ms;  // forward and template
  uint32_t peer_slot;     // forward: its reverse entry or UINT32_MAX; reverse: its forward entry;
                          // template: timeout in ms
  uint32_t peer_version;  // reverse: the low 31 bits of the forward entry's version it links to; forward: 0
  FlowKey key;            // a compact IPv6 reverse entry's key is completed from its forward entry
};

class FlowTable {
 public:
  static constexpr uint32_t kSlotsPerBucket = 4;
  static constexpr size_t kSlotBytes = 32;
  static constexpr size_t kBucketBytes = kSlotBytes * kSlotsPerBucket;
  // The load slots_for_flows() sizes for; inserts keep succeeding above it
  // (measured in flow_table_test: no refusal below 95% with IPv4 nat flows).
  static constexpr uint32_t kDesignLoadPercent = 90;
  // Bytes per flow by construction (slots x 32).
  static constexpr size_t kBytesPerIpv4NatFlow = 2 * kSlotBytes;  // nat and fullnat
  static constexpr size_t kBytesPerIpv4DrFlow = kSlotBytes;       // dr, ipip, gre
  static constexpr size_t kBytesPerIpv6NatFlow = 3 * kSlotBytes;
  static constexpr size_t kBytesPerIpv6FullnatFlow = 4 * kSlotBytes;
  static constexpr size_t kBytesPerIpv6DrFlow = 2 * kSlotBytes;
  static constexpr size_t kBytesPerTemplate = kSlotBytes;  // IPv6: 2 slots
  static constexpr uint32_t kMaxSlots = (1u << 31) - kSlotsPerBucket;  // slot indices stay below 2^31 - 1
  // Ingress paths the table can intern (a prime, for double hashing; the
  // 12-bit index 4095 means none).
  static constexpr uint32_t kIngressPaths = 4093;

  // Sizing, in one place for the engine and the addon. Slots for `nat_flows`
  // IPv4 nat flows at the design load (whole buckets, at most kMaxSlots).
  static uint64_t slots_for_flows(uint64_t nat_flows);
  // Slots whose table (memory_bytes_for) fits in `bytes` (at least 2 buckets).
  static uint64_t slots_for_bytes(uint64_t bytes);
  // IPv4 nat flows a table of `slots` holds at the design load.
  static uint64_t flows_for_slots(uint64_t slots);
  // What a table of `slots` allocates: the slots, the stripe locks and move
  // counters, and the ingress paths.
  static size_t memory_bytes_for(uint64_t slots);

  // Allocates everything the table will ever use; nothing allocates afterwards.
  explicit FlowTable(const FlowTableOptions& options);
  ~FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // The keyed hash of a key; compute once per packet and pass it to lookup,
  // insert and the scheduler.
  uint64_t hash(const FlowKey& key) const;

  // Pulls both candidate buckets (two adjacent cache lines each: what lookup
  // reads, first bucket first) towards the cache; call for a whole batch
  // before its lookups.
  void prefetch(uint64_t hash) const;

  // Finds the flow with `key` in either direction. An expired flow is removed
  // on the spot (counted in `expired`) and reported missing. When
  // `want_reverse_key` is set and the forward key matched, the reverse key is
  // copied too (fullnat needs its local address and port): one more bucket.
  bool lookup(const FlowKey& key, uint64_t hash, uint64_t now_ms, FlowCounters& counters, Flow* out,
              bool want_reverse_key = false);

  // Read-only lookup for introspection (explain, off the packet path, any
  // thread): finds the flow or template with `key` in either direction as
  // lookup() would, but removes nothing, counts nothing and writes no shared
  // word. An entry that has timed out but is not yet removed is returned with
  // *expired set (a packet would not find it).
  bool peek(const FlowKey& key, uint64_t hash, uint64_t now_ms, Flow* out, bool* expired) const;

  // Creates a flow (and its reverse entry) unless the key is tracked already.
  // When both candidate buckets are full, moves entries to make room (cuckoo
  // displacement); when no move helps, makes room by evicting, in order: the
  // oldest half-open (SYN seen) flow in the key's buckets, then the oldest
  // expired entry there; with neither, returns `full`. Never blocks: the
  // buckets' stripe locks are waited for a bounded number of spins.
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

  // Deletes a flow (both its entries) or template. False if already gone (or moved).
  bool remove(const FlowHandle& handle, FlowCounters& counters);

  // Incremental expiry: examines the next `max_slots` slots of a cursor shared
  // by all callers and deletes what has timed out (and reverse entries whose
  // flow is gone). Returns the number of flows and templates expired. Call it
  // from a periodic tick: a full pass takes slot_count() / max_slots calls,
  // e.g. 65,536 slots every 10 ms sweep a 10,000,000-flow table (22.2 M slots)
  // in 3.4 s; passes_slots_per_tick() computes the slice for a wanted pass.
  // Expiry is also lazy: lookups and inserts never return an expired flow.
  size_t expire_step(uint64_t now_ms, size_t max_slots, FlowCounters& counters);
  // Slots per call for one full pass in `pass_ms` when called every `tick_ms`
  // (at least one bucket).
  size_t pass_slots_per_tick(uint32_t tick_ms, uint32_t pass_ms) const;

  size_t slot_count() const { return static_cast<size_t>(bucket_count_) * kSlotsPerBucket; }
  size_t memory_bytes() const { return memory_bytes_for(slot_count()); }
  // IPv4 nat flows at the design load (what `flows.capacity` reports).
  size_t flow_capacity() const { return static_cast<size_t>(flows_for_slots(slot_count())); }
  const FlowTimeouts& timeouts() const { return timeouts_; }

  // O(slots), off the packet path.
  FlowOccupancy occupancy() const;
  bool inspect(uint32_t slot, FlowSlotInfo* out) const;
  // The two buckets a hash may live in (tests use it to aim keys at a bucket).
  void candidate_buckets(uint64_t hash, uint32_t* first, uint32_t* second) const;

 private:
  struct Probe {
    uint32_t bucket[2];
    uint32_t tag;  // 11 bits: tells compact IPv6 reverse entries of one backend apart
  };
  struct KeyCode;
  struct Found;
  struct Owner;
  struct Locks;
  struct Claim;
  struct BfsNode;
  enum class Resolve : uint8_t;

  std::atomic_ref<uint64_t> word(uint32_t slot, int index) const;
  Probe probe_for(uint64_t hash) const;
  uint32_t stripe_of(uint32_t bucket) const { return bucket & stripe_mask_; }
  void move_counters(const Probe& probe, uint32_t* first, uint32_t* second) const;
  bool moves_stable(const Probe& probe, uint32_t first, uint32_t second) const;

  // Reads (seqlock: the caller re-checks the control word).
  uint32_t ports_of(uint32_t slot, uint64_t control) const;
  uint32_t backend_of(uint32_t slot, uint64_t control) const;
  bool decode_key(uint32_t slot, uint64_t control, FlowKey* out) const;
  bool match_slot(uint32_t slot, uint64_t control, const KeyCode& code, const Probe& probe, Found* found) const;
  bool find(const KeyCode& code, const Probe& probe, Found* found) const;
  bool read_found(const Found& found, const FlowKey& key, Flow* out, uint64_t* control_out) const;
  uint64_t wait_while_claimed(uint32_t slot, uint64_t control) const;
  Resolve resolve_owner(uint32_t slot, uint64_t control, Owner* owner) const;
  bool read_flow(uint32_t slot, uint32_t version, Flow* out, uint64_t* control_out) const;
  bool reverse_links_to(uint32_t slot, uint64_t* control_out, uint32_t forward_slot, uint32_t forward_version) const;
  bool read_reverse_key(uint32_t forward_slot, uint64_t forward_control, const FlowKey& forward_key,
                        FlowKey* out) const;
  uint32_t last_seen_of(uint32_t slot) const;
  uint32_t timeout_of(uint32_t slot, uint64_t control) const;
  bool is_expired(uint32_t slot, uint64_t control, uint32_t now) const;

  // Deletion (lock-free: a CAS of the control word decides).
  void free_tail(uint32_t head_slot, uint64_t head_control);
  bool delete_entry(uint32_t slot, uint64_t expected_control, FlowEndReason reason);
  bool delete_reverse(uint32_t slot, uint64_t expected_control);
  bool evict_one(const Probe& probe, uint32_t now, FlowCounters& counters);

  // Placement (under stripe locks).
  bool lock_stripes(Locks* locks, const Probe* probes, size_t count);
  bool try_add_stripe(Locks* locks, uint32_t stripe);
  void unlock_stripes(Locks* locks, size_t keep);
  bool bucket_has_room(uint32_t bucket, uint32_t width) const;
  bool claim_in(uint32_t bucket, uint32_t width, Claim* claim);
  bool claim_free(const Probe& probe, uint32_t width, Claim* claim);
  void abandon(const Claim& claim);
  bool buckets_of_entry(uint32_t slot, uint64_t control, uint32_t* first, uint32_t* second) const;
  bool move_entry(uint32_t slot, uint64_t control_seen, uint32_t to_bucket, Locks* locks, FlowCounters& counters);
  size_t victims_in(uint32_t bucket, uint32_t need, uint32_t* slots, uint64_t* controls) const;
  bool search_room(const uint32_t* roots, int root_count, uint32_t need, uint32_t excluded, Locks* locks,
                   FlowCounters& counters);
  bool pair_of_narrows_moves(uint32_t bucket, uint32_t excluded, Locks* locks, FlowCounters& counters);
  bool relocate(uint32_t slot, uint64_t control, Locks* locks, FlowCounters& counters);
  bool make_room(const Probe& probe, uint32_t width, Locks* locks, FlowCounters& counters);
  bool claim_room(const Probe& probe, uint32_t width, Locks* locks, uint32_t now, FlowCounters& counters,
                  Claim* claim);
  uint32_t intern_path(uint16_t ingress_port, const uint8_t mac[6]);
  uint32_t intern_path_slow(uint64_t value);
  void path_of(uint32_t index, uint16_t* ingress_port, uint8_t mac[6]) const;
  void write_key(uint32_t slot, bool wide, const KeyCode& code, uint32_t backend_id);
  FlowInsertResult insert_entries(const FlowKey* keys, const uint64_t* hashes, size_t count, const NewFlow& flow,
                                  bool template_entry, uint32_t backend_id, uint32_t template_timeout_ms,
                                  uint64_t now_ms, FlowCounters& counters, Flow* out);
  FlowInsertResult place(const FlowKey* keys, const KeyCode* codes, const Probe* probes, const uint8_t* kind_codes,
                         size_t count, const NewFlow& flow, bool template_entry, uint32_t backend_id,
                         uint32_t template_timeout_ms, uint32_t now, Locks* locks, FlowCounters& counters,
                         Flow* out);

  uint32_t bucket_count_;
  uint32_t stripe_mask_;
  SipHashKey hash_key_;
  FlowTimeouts timeouts_;
  FlowEvents events_;
  uint64_t table_id_;  // process-unique (a thread's cache of interned paths names its table)
  // The slots: kSlotsPerBucket x 4 words per bucket, 128-byte aligned.
  uint64_t* words_ = nullptr;
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  bool mapped_ = false;
  // Per stripe: a lock word (inserters and movers) and a move counter
  // (movers write, lookups read), in separate arrays so that inserts do not
  // disturb the lines lookups read.
  std::unique_ptr<uint32_t[]> stripe_locks_;
  std::unique_ptr<uint32_t[]> stripe_moves_;
  // Interned ingress paths: 0 = free, else 1 << 63 | port << 48 | MAC.
  std::unique_ptr<uint64_t[]> paths_;
  // Shared by the expire_step calls: each takes the next range.
  alignas(64) std::atomic<uint64_t> sweep_cursor_{0};
};

// Bytes per 32-byte slot (the entries are laid out in flow_table.cc).
inline constexpr size_t kFlowTableBytesPerSlot = FlowTable::kSlotBytes;

}  // namespace l4lb::core

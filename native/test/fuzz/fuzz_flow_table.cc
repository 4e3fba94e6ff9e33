// Fuzz target: the input is a program of flow-table operations (insert,
// lookup from either direction, TCP segments, touch, remove, sweep, clock
// steps, persistence templates) run against a 32-slot table, so that buckets
// overflow and eviction, expiry and reply-tuple conflicts happen constantly.
// Half the flows and templates are IPv6: wide entries (an aligned pair of
// slots) beside narrow ones, compact reverse entries (nat: the reply goes back
// to the client) and full ones (fullnat: shared reply tuples).
// A std::map model predicts every result (`full` only when no place is left
// for the entries, counting the slots of evictable entries as free), and
// after every operation the table's contents are reconciled with the model:
//  - every flow the table holds is in the model, with the same backend and state;
//  - a flow may only have disappeared if it was half-open or expired;
//  - each forward entry with a reply tuple has exactly its reverse entry;
//  - inserts == live + expired + removed + evicted (nothing lost or counted twice).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>

#include "core/flow_table.h"

using namespace l4lb::core;

namespace {

constexpr uint32_t kFlows = 24;      // distinct forward tuples: 0..11 IPv4, 12..23 IPv6
constexpr uint32_t kIpv6Flows = kFlows / 2;
constexpr uint32_t kReplyPorts = 8;  // distinct reply tuples of each family: shared between flows on purpose
// Reply ids: 0..7 IPv4 (shared), 8..15 IPv6 fullnat (shared), 16 + n the
// IPv6 nat reply of flow n (back to its client: a compact entry, its own).
constexpr uint32_t kCompactReplies = 2 * kReplyPorts;
constexpr uint32_t kReplies = kCompactReplies + kFlows;
constexpr uint32_t kClients = 6;     // persistence templates: 0..5 IPv4, 6..11 IPv6
constexpr uint32_t kTemplates = 2 * kClients;
constexpr uint32_t kService = 7;

#define CHECK(condition)                                                          \
  do {                                                                            \
    if (!(condition)) {                                                           \
      std::fprintf(stderr, "fuzz_flow_table: %s:%d: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

bool is_ipv6_flow(uint32_t n) { return n >= kFlows - kIpv6Flows; }

// 2001:db8:<group>::<low>
struct Ipv6Address {
  uint8_t bytes[16];
};
Ipv6Address ipv6_address(uint8_t group, uint8_t low) {
  Ipv6Address a{{0x20, 0x01, 0x0d, 0xb8, 0, group}};
  a.bytes[15] = low;
  return a;
}
const Ipv6Address kClient6 = ipv6_address(1, 1);
const Ipv6Address kVip6 = ipv6_address(0, 0x64);
const Ipv6Address kBackend6 = ipv6_address(2, 2);
const Ipv6Address kLocal6 = ipv6_address(2, 1);

// A flow's number is its client port - 1000 in either family.
FlowKey forward_key(uint32_t n) {
  const uint16_t port = static_cast<uint16_t>(1000 + n);
  if (is_ipv6_flow(n)) return FlowKey::ipv6(6, kClient6.bytes, port, kVip6.bytes, 80);
  return FlowKey::ipv4(6, 0xc6130001, port, 0xc6120064, 80);
}
FlowKey reply_key(uint32_t r) {
  if (r < kReplyPorts) return FlowKey::ipv4(6, 0xc6120102, 8080, 0xc6120101, static_cast<uint16_t>(20000 + r));
  if (r < kCompactReplies) return FlowKey::ipv6(6, kBackend6.bytes, 8080, kLocal6.bytes, static_cast<uint16_t>(20000 + r));
  return FlowKey::ipv6(6, kBackend6.bytes, 8080, kClient6.bytes, static_cast<uint16_t>(1000 + r - kCompactReplies));
}
// The reply tuple a shape byte picks for flow n: a shared one of its family,
// or for IPv6 also its own compact one.
uint32_t reply_for(uint32_t n, uint8_t shape) {
  const uint32_t shared = (shape >> 3) % kReplyPorts;
  if (!is_ipv6_flow(n)) return shared;
  return shape & 0x40 ? kCompactReplies + n : kReplyPorts + shared;
}
FlowKey template_key(uint32_t c) {
  if (c >= kClients) {
    const Ipv6Address client = ipv6_address(9, static_cast<uint8_t>(c));
    return FlowKey::persistence_template(kService, FlowKey::kIpv6, client.bytes);
  }
  const uint8_t addr[4] = {198, 19, 9, static_cast<uint8_t>(c)};
  return FlowKey::persistence_template(kService, FlowKey::kIpv4, addr);
}
uint32_t template_of(const FlowKey& key) { return key.family == FlowKey::kIpv6 ? key.src_addr[15] : key.src_addr[3]; }

struct ModelFlow {
  uint32_t backend;
  FlowState state;
  uint32_t last_seen;
  bool has_reply;
  uint32_t reply;
  uint16_t ingress_port;
};
struct ModelTemplate {
  uint32_t backend;
  uint32_t timeout;
  uint32_t last_seen;
};

struct Input {
  const uint8_t* p;
  const uint8_t* end;
  bool more() const { return p < end; }
  uint8_t byte() { return p < end ? *p++ : 0; }
};

class Harness {
 public:
  Harness() : table_(make_options()) {}

  void run(Input in) {
    CHECK(table_.slot_count() <= 64);  // places are 64-bit masks of slots
    while (in.more()) {
      const uint8_t op = in.byte();
      switch (op % 10) {
        case 0: insert(in.byte() % kFlows, in.byte(), in.byte()); break;
        case 1: lookup_forward(in.byte() % kFlows); break;
        case 2: lookup_reply(in.byte() % kReplies); break;
        case 3: segment(in.byte() % kFlows, in.byte()); break;
        case 4: remove(in.byte() % kFlows); break;
        case 5: sweep(in.byte()); break;
        case 6: now_ += in.byte(); break;
        case 7: touch(in.byte() % kFlows); break;
        case 8: insert_template(in.byte() % kTemplates, in.byte(), in.byte()); break;
        case 9: lookup_template(in.byte() % kTemplates); break;
      }
      reconcile();
    }
  }

 private:
  static FlowTableOptions make_options() {
    FlowTableOptions options;
    options.slots = 32;
    options.hash_key = SipHashKey{0x0123456789abcdefull, 0xfedcba9876543210ull};
    options.timeouts = FlowTimeouts{50, 200, 30, 10, 100, 60};
    return options;
  }

  bool expired(const ModelFlow& flow) const {
    return static_cast<uint32_t>(now_ - flow.last_seen) > table_.timeouts().for_state(flow.state);
  }
  bool expired(const ModelTemplate& t) const { return static_cast<uint32_t>(now_ - t.last_seen) > t.timeout; }

  // The live flow holding reply tuple r, if any (at most one, by construction).
  const uint32_t* reply_owner(uint32_t r) const {
    for (const auto& [n, flow] : flows_) {
      if (flow.has_reply && flow.reply == r) return &n;
    }
    return nullptr;
  }

  void insert(uint32_t n, uint8_t shape, uint8_t backend) {
    NewFlow wanted;
    wanted.key = forward_key(n);
    wanted.track_reverse = shape & 0x80;
    const uint32_t r = reply_for(n, shape);
    wanted.reverse_key = reply_key(r);
    wanted.state = static_cast<FlowState>((shape & 0x7) % kFlowStateCount);
    wanted.backend_id = backend;
    wanted.ingress_port = static_cast<uint16_t>(n * 3);
    Flow out;
    const FlowInsertResult result = table_.insert(wanted, table_.hash(wanted.key), now_, counters_, &out);
    CHECK(result != FlowInsertResult::contended);  // one thread: nothing to contend with

    auto existing = flows_.find(n);
    if (existing != flows_.end() && !expired(existing->second)) {
      CHECK(result == FlowInsertResult::exists);
      CHECK(out.backend_id == existing->second.backend);
      CHECK(out.key == wanted.key);
      return;
    }
    if (wanted.track_reverse) {
      const uint32_t* holder = reply_owner(r);
      if (holder && *holder != n && !expired(flows_.at(*holder))) {
        CHECK(result == FlowInsertResult::reverse_exists);
        CHECK(out.key == forward_key(*holder));
        return;
      }
    }
    if (result == FlowInsertResult::full) {
      const Room forward_room = room_for(wanted.key, is_ipv6_flow(n) ? 2 : 1);
      if (!wanted.track_reverse) {
        CHECK(forward_room.count == 0);
      } else {
        const bool room = disjoint_rooms(forward_room, room_for(wanted.reverse_key, r >= kReplyPorts && r < kCompactReplies ? 2 : 1));
        if (room) dump(wanted);
        CHECK(!room);
      }
      return;
    }
    CHECK(result == FlowInsertResult::inserted);
    CHECK(out.backend_id == backend && out.state == wanted.state && out.has_reverse == wanted.track_reverse);
    // An expired previous incarnation (of n, or of the reply tuple's holder) was dropped on the way.
    flows_.erase(n);
    if (wanted.track_reverse) {
      if (const uint32_t* holder = reply_owner(r)) flows_.erase(*holder);
    }
    flows_[n] = ModelFlow{backend, wanted.state, now_, wanted.track_reverse, r, wanted.ingress_port};
  }

  // Where an entry of `width` slots could go without moving anything: a slot
  // (a wide entry: an aligned pair) of a candidate bucket whose slots are all
  // empty or held by entries that may be evicted (their flow half-open or
  // expired, a template expired). Each place is a mask of slots of the table.
  struct Room {
    uint64_t places[2 * FlowTable::kSlotsPerBucket];
    size_t count = 0;
  };
  Room room_for(const FlowKey& key, uint32_t width) const {
    Room room;
    uint32_t buckets[2];
    table_.candidate_buckets(table_.hash(key), &buckets[0], &buckets[1]);
    for (uint32_t bucket : buckets) {
      const uint32_t base = bucket * FlowTable::kSlotsPerBucket;
      bool freeable[FlowTable::kSlotsPerBucket];
      for (uint32_t i = 0; i < FlowTable::kSlotsPerBucket; ++i) {
        FlowSlotInfo info;
        if (!table_.inspect(base + i, &info)) {
          freeable[i] = true;  // empty (a wide entry's tail is skipped with its head below)
          continue;
        }
        freeable[i] = evictable(info);
        if (info.width == 2) {
          CHECK(i % 2 == 0);  // wide entries take aligned pairs
          freeable[i + 1] = freeable[i];
          ++i;
        }
      }
      for (uint32_t i = 0; i < FlowTable::kSlotsPerBucket; i += width) {
        if (freeable[i] && (width == 1 || freeable[i + 1])) room.places[room.count++] = ((width == 2 ? 3ull : 1ull) << (base + i));
      }
    }
    return room;
  }
  // `full` for one entry is allowed when it has no room; for a flow with a
  // reverse entry, when no two places of its entries are disjoint.
  static bool disjoint_rooms(const Room& a, const Room& b) {
    for (size_t i = 0; i < a.count; ++i) {
      for (size_t j = 0; j < b.count; ++j) {
        if ((a.places[i] & b.places[j]) == 0) return true;
      }
    }
    return false;
  }

  // The table as the model sees it, for a failed check.
  void dump(const NewFlow& flow) const {
    for (const FlowKey* key : {&flow.key, &flow.reverse_key}) {
      uint32_t buckets[2];
      table_.candidate_buckets(table_.hash(*key), &buckets[0], &buckets[1]);
      std::fprintf(stderr, "key of port %u: buckets %u %u\n", key->src_port, buckets[0], buckets[1]);
    }
    for (uint32_t slot = 0; slot < table_.slot_count(); ++slot) {
      FlowSlotInfo info;
      if (!table_.inspect(slot, &info)) {
        std::fprintf(stderr, "slot %2u: -\n", slot);
        continue;
      }
      std::fprintf(stderr, "slot %2u: kind %d width %u state %d peer %u port %u evictable %d\n", slot,
                   static_cast<int>(info.kind), info.width, static_cast<int>(info.state), info.peer_slot,
                   info.key.src_port, static_cast<int>(evictable(info)));
    }
  }

  bool evictable(const FlowSlotInfo& info) const {
    if (info.kind == FlowEntryKind::persistence_template) return expired(templates_.at(template_of(info.key)));
    FlowSlotInfo owner = info;
    if (info.kind == FlowEntryKind::reverse) CHECK(table_.inspect(info.peer_slot, &owner));
    const ModelFlow& flow = flows_.at(owner.key.src_port - 1000u);
    return flow.state == FlowState::tcp_syn_seen || expired(flow);
  }

  bool lookup_forward(uint32_t n, Flow* found = nullptr) {
    Flow out;
    const FlowKey key = forward_key(n);
    const bool hit = table_.lookup(key, table_.hash(key), now_, counters_, &out, /*want_reverse_key=*/true);
    auto it = flows_.find(n);
    const bool alive = it != flows_.end() && !expired(it->second);
    CHECK(hit == alive);
    if (!hit) {
      flows_.erase(n);
      return false;
    }
    const ModelFlow& flow = it->second;
    CHECK(out.matched == FlowDirection::original && out.key == key);
    CHECK(out.backend_id == flow.backend && out.state == flow.state && out.ingress_port == flow.ingress_port);
    CHECK(out.has_reverse == flow.has_reply);
    if (flow.has_reply) CHECK(out.reverse_key == reply_key(flow.reply));
    if (found) *found = out;
    return true;
  }

  void lookup_reply(uint32_t r) {
    Flow out;
    const FlowKey key = reply_key(r);
    const bool hit = table_.lookup(key, table_.hash(key), now_, counters_, &out);
    const uint32_t* holder = reply_owner(r);
    const bool alive = holder && !expired(flows_.at(*holder));
    CHECK(hit == alive);
    if (!hit) {
      if (holder) flows_.erase(*holder);
      return;
    }
    CHECK(out.matched == FlowDirection::reply && out.key == forward_key(*holder) && out.reverse_key == key);
    CHECK(out.backend_id == flows_.at(*holder).backend);
  }

  void segment(uint32_t n, uint8_t bits) {
    Flow flow;
    if (!lookup_forward(n, &flow)) return;
    const uint8_t flags = bits & 0x17;
    const FlowDirection direction = bits & 0x80 ? FlowDirection::reply : FlowDirection::original;
    ModelFlow& model = flows_.at(n);
    const FlowState expected = next_tcp_state(model.state, flags, direction);
    CHECK(table_.observe_tcp(flow.handle, flow.state, flags, direction, now_) == expected);
    model.state = expected;
    model.last_seen = now_;
  }

  void touch(uint32_t n) {
    Flow flow;
    if (!lookup_forward(n, &flow)) return;
    table_.touch(flow.handle, now_);
    flows_.at(n).last_seen = now_;
  }

  void remove(uint32_t n) {
    Flow flow;
    if (!lookup_forward(n, &flow)) return;
    CHECK(table_.remove(flow.handle, counters_));
    CHECK(!table_.remove(flow.handle, counters_));
    flows_.erase(n);
  }

  void sweep(uint8_t slots) { table_.expire_step(now_, slots % 40, counters_); }

  void insert_template(uint32_t c, uint8_t backend, uint8_t timeout) {
    Flow out;
    const FlowKey key = template_key(c);
    const FlowInsertResult result =
        table_.insert_template(key, table_.hash(key), backend, timeout, now_, counters_, &out);
    auto it = templates_.find(c);
    if (it != templates_.end() && !expired(it->second)) {
      CHECK(result == FlowInsertResult::exists && out.backend_id == it->second.backend);
      return;
    }
    if (result == FlowInsertResult::full) {
      CHECK(room_for(key, c >= kClients ? 2 : 1).count == 0);
      return;
    }
    CHECK(result == FlowInsertResult::inserted);
    templates_[c] = ModelTemplate{backend, timeout, now_};
  }

  void lookup_template(uint32_t c) {
    Flow out;
    const FlowKey key = template_key(c);
    const bool hit = table_.lookup(key, table_.hash(key), now_, counters_, &out);
    auto it = templates_.find(c);
    CHECK(hit == (it != templates_.end() && !expired(it->second)));
    if (!hit) {
      templates_.erase(c);
      return;
    }
    CHECK(out.kind == FlowEntryKind::persistence_template && out.backend_id == it->second.backend);
    table_.touch(out.handle, now_);
    it->second.last_seen = now_;
  }

  void reconcile() {
    std::set<uint32_t> live_flows;
    std::set<uint32_t> live_templates;
    size_t reverse_entries = 0;
    for (uint32_t slot = 0; slot < table_.slot_count(); ++slot) {
      FlowSlotInfo info;
      if (!table_.inspect(slot, &info)) continue;
      if (info.kind == FlowEntryKind::reverse) {
        ++reverse_entries;
        FlowSlotInfo owner;
        CHECK(table_.inspect(info.peer_slot, &owner) && owner.kind == FlowEntryKind::forward);
        CHECK(owner.peer_slot == slot && info.peer_version == (owner.version & 0x7fffffff));
        continue;
      }
      if (info.kind == FlowEntryKind::persistence_template) {
        const uint32_t c = template_of(info.key);
        CHECK(templates_.count(c) && templates_.at(c).backend == info.backend_id);
        CHECK(live_templates.insert(c).second);
        continue;
      }
      const uint32_t n = info.key.src_port - 1000u;
      CHECK(n < kFlows && info.key == forward_key(n));
      CHECK(flows_.count(n));
      const ModelFlow& flow = flows_.at(n);
      CHECK(info.backend_id == flow.backend && info.state == flow.state);
      CHECK(live_flows.insert(n).second);  // no key twice
      if (flow.has_reply) {
        FlowSlotInfo reverse;
        CHECK(table_.inspect(info.peer_slot, &reverse) && reverse.key == reply_key(flow.reply));
      }
    }
    // Whatever left the table must have been allowed to leave.
    for (auto it = flows_.begin(); it != flows_.end();) {
      if (live_flows.count(it->first)) {
        ++it;
        continue;
      }
      CHECK(it->second.state == FlowState::tcp_syn_seen || expired(it->second));
      it = flows_.erase(it);
    }
    for (auto it = templates_.begin(); it != templates_.end();) {
      if (live_templates.count(it->first)) {
        ++it;
        continue;
      }
      CHECK(expired(it->second));
      it = templates_.erase(it);
    }
    size_t with_reply = 0;
    for (const auto& entry : flows_) with_reply += entry.second.has_reply;
    CHECK(reverse_entries == with_reply);
    const FlowOccupancy occupancy = table_.occupancy();
    CHECK(occupancy.claimed == 0);
    const uint64_t gone = counters_.expired.load() + counters_.removed.load() +
                          counters_.evictions_half_open.load() + counters_.evictions_expired.load();
    CHECK(counters_.inserts.load() == occupancy.forward + occupancy.templates + gone);
  }

  FlowTable table_;
  FlowCounters counters_;
  uint32_t now_ = 1000;
  std::map<uint32_t, ModelFlow> flows_;
  std::map<uint32_t, ModelTemplate> templates_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness harness;
  harness.run(Input{data, data + size});
  return 0;
}

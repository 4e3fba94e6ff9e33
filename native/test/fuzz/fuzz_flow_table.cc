// Fuzz target: the input is a program of flow-table operations (insert,
// lookup from either direction, TCP segments, touch, remove, sweep, clock
// steps, persistence templates) run against a 32-slot table, so that buckets
// overflow and eviction, expiry and reply-tuple conflicts happen constantly.
// A std::map model predicts every result, and after every operation the
// table's contents are reconciled with the model:
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

constexpr uint32_t kFlows = 24;      // distinct forward tuples
constexpr uint32_t kReplyPorts = 8;  // distinct reply tuples: shared between flows on purpose
constexpr uint32_t kClients = 6;     // persistence templates
constexpr uint32_t kService = 7;

#define CHECK(condition)                                                          \
  do {                                                                            \
    if (!(condition)) {                                                           \
      std::fprintf(stderr, "fuzz_flow_table: %s:%d: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

FlowKey forward_key(uint32_t n) { return FlowKey::ipv4(6, 0xc6130001, static_cast<uint16_t>(1000 + n), 0xc6120064, 80); }
FlowKey reply_key(uint32_t r) { return FlowKey::ipv4(6, 0xc6120102, 8080, 0xc6120101, static_cast<uint16_t>(20000 + r)); }
FlowKey template_key(uint32_t c) {
  const uint8_t addr[4] = {198, 19, 9, static_cast<uint8_t>(c)};
  return FlowKey::persistence_template(kService, FlowKey::kIpv4, addr);
}

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
    while (in.more()) {
      const uint8_t op = in.byte();
      switch (op % 10) {
        case 0: insert(in.byte() % kFlows, in.byte(), in.byte()); break;
        case 1: lookup_forward(in.byte() % kFlows); break;
        case 2: lookup_reply(in.byte() % kReplyPorts); break;
        case 3: segment(in.byte() % kFlows, in.byte()); break;
        case 4: remove(in.byte() % kFlows); break;
        case 5: sweep(in.byte()); break;
        case 6: now_ += in.byte(); break;
        case 7: touch(in.byte() % kFlows); break;
        case 8: insert_template(in.byte() % kClients, in.byte(), in.byte()); break;
        case 9: lookup_template(in.byte() % kClients); break;
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
    const uint32_t r = (shape >> 3) % kReplyPorts;
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
      CHECK(no_room_for(wanted.key) || (wanted.track_reverse && no_room_for(wanted.reverse_key)));
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

  // `full` is only allowed when both candidate buckets hold live entries whose
  // flows are neither half-open nor expired.
  bool no_room_for(const FlowKey& key) const {
    uint32_t buckets[2];
    table_.candidate_buckets(table_.hash(key), &buckets[0], &buckets[1]);
    for (uint32_t bucket : buckets) {
      for (uint32_t i = 0; i < FlowTable::kSlotsPerBucket; ++i) {
        FlowSlotInfo info;
        if (!table_.inspect(bucket * FlowTable::kSlotsPerBucket + i, &info)) return false;
        if (info.kind == FlowEntryKind::persistence_template) {
          if (expired(templates_.at(info.key.src_addr[3]))) return false;
          continue;
        }
        FlowSlotInfo owner = info;
        if (info.kind == FlowEntryKind::reverse) CHECK(table_.inspect(info.peer_slot, &owner));
        const ModelFlow& flow = flows_.at(owner.key.src_port - 1000u);
        if (flow.state == FlowState::tcp_syn_seen || expired(flow)) return false;
      }
    }
    return true;
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
      CHECK(no_room_for(key));
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
        const uint32_t c = info.key.src_addr[3];
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

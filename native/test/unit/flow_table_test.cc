#include "core/flow_table.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <set>
#include <vector>

#include "core/checksum.h"
#include "core/sched/rr.h"

using namespace l4lb::core;

namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint32_t kVip = 0xc6120064;        // 198.18.0.100
constexpr uint32_t kBackend = 0xc6120102;    // 198.18.1.2
constexpr uint32_t kLocalAddr = 0xc6120101;  // 198.18.1.1 (fullnat source)
constexpr SipHashKey kTestKey{0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};

uint32_t client(uint32_t n) { return 0xc6130000 + n; }  // 198.19.x.y

// Per-backend active-flow counts kept through FlowEvents, as the engine does.
struct ActiveFlows {
  std::array<std::atomic<int32_t>, 64> count{};
  int32_t total() const {
    int32_t sum = 0;
    for (const auto& c : count) sum += c.load();
    return sum;
  }
  FlowEvents events() {
    FlowEvents e;
    e.context = this;
    e.flow_added = [](void* context, uint32_t backend) {
      static_cast<ActiveFlows*>(context)->count[backend % 64].fetch_add(1, std::memory_order_relaxed);
    };
    e.flow_removed = [](void* context, uint32_t backend) {
      static_cast<ActiveFlows*>(context)->count[backend % 64].fetch_sub(1, std::memory_order_relaxed);
    };
    return e;
  }
};

FlowTableOptions options(uint32_t slots, ActiveFlows* active = nullptr) {
  FlowTableOptions o;
  o.slots = slots;
  o.hash_key = kTestKey;
  if (active) o.events = active->events();
  return o;
}

// A nat flow: client:port -> VIP:80, replies backend:8080 -> client:port.
NewFlow nat_flow(uint32_t client_n, uint16_t port, uint32_t backend_id, FlowState state) {
  NewFlow flow;
  flow.key = FlowKey::ipv4(kTcp, client(client_n), port, kVip, 80);
  flow.reverse_key = FlowKey::ipv4(kTcp, kBackend + backend_id, 8080, client(client_n), port);
  flow.track_reverse = true;
  flow.backend_id = backend_id;
  flow.state = state;
  flow.ingress_port = 3;
  const uint8_t mac[6] = {0x02, 0, 0, 0, 0x01, static_cast<uint8_t>(client_n)};
  std::copy(mac, mac + 6, flow.client_mac);
  return flow;
}

// A dr flow: only the client's direction passes the balancer.
NewFlow dr_flow(uint32_t client_n, uint16_t port, uint32_t backend_id, FlowState state) {
  NewFlow flow = nat_flow(client_n, port, backend_id, state);
  flow.track_reverse = false;
  return flow;
}

uint64_t value(const std::atomic<uint64_t>& counter) { return counter.load(); }

}  // namespace

TEST(FlowKey, ReversedSwapsEndpointsAndTemplatesNeverEqualTuples) {
  const FlowKey key = FlowKey::ipv4(kTcp, client(1), 40000, kVip, 80);
  const FlowKey back = key.reversed();
  EXPECT_EQ(back.src_ipv4(), kVip);
  EXPECT_EQ(back.dst_ipv4(), client(1));
  EXPECT_EQ(back.src_port, 80);
  EXPECT_EQ(back.dst_port, 40000);
  EXPECT_EQ(back.reversed(), key);
  uint8_t addr[4] = {198, 19, 0, 1};
  const FlowKey persistence = FlowKey::persistence_template(0, FlowKey::kIpv4, addr);
  FlowKey tuple{};
  std::copy(addr, addr + 4, tuple.src_addr);
  tuple.family = FlowKey::kIpv4;
  EXPECT_NE(persistence, tuple);  // differs in `space` alone
}

TEST(FlowTable, SlotIs32BytesAndSlotCountsRoundUpToBuckets) {
  EXPECT_EQ(kFlowTableBytesPerSlot, 32u);
  FlowTable table(options(1000));
  EXPECT_EQ(table.slot_count(), 1000u);  // already a multiple of 4
  FlowTable rounded(options(1001));
  EXPECT_EQ(rounded.slot_count(), 1004u);
}

TEST(FlowTable, InsertThenLookupBothDirections) {
  ActiveFlows active;
  FlowTable table(options(1024, &active));
  FlowCounters counters;
  const NewFlow flow = nat_flow(1, 40000, 7, FlowState::tcp_syn_seen);
  Flow out;
  ASSERT_EQ(table.insert(flow, table.hash(flow.key), 1000, counters, &out), FlowInsertResult::inserted);
  EXPECT_EQ(out.backend_id, 7u);
  EXPECT_EQ(active.count[7].load(), 1);

  Flow forward;
  ASSERT_TRUE(table.lookup(flow.key, table.hash(flow.key), 1001, counters, &forward));
  EXPECT_EQ(forward.matched, FlowDirection::original);
  EXPECT_EQ(forward.kind, FlowEntryKind::forward);
  EXPECT_EQ(forward.backend_id, 7u);
  EXPECT_EQ(forward.state, FlowState::tcp_syn_seen);
  EXPECT_EQ(forward.ingress_port, 3);
  EXPECT_EQ(forward.client_mac[5], 1);
  EXPECT_EQ(forward.client_mac[0], 0x02);
  EXPECT_TRUE(forward.has_reverse);
  EXPECT_EQ(forward.key, flow.key);
  EXPECT_EQ(forward.handle.slot, out.handle.slot);

  Flow reply;
  ASSERT_TRUE(table.lookup(flow.reverse_key, table.hash(flow.reverse_key), 1002, counters, &reply));
  EXPECT_EQ(reply.matched, FlowDirection::reply);
  EXPECT_EQ(reply.key, flow.key);  // the reply path learns the client and the VIP
  EXPECT_EQ(reply.reverse_key, flow.reverse_key);
  EXPECT_EQ(reply.handle.slot, forward.handle.slot);
  EXPECT_EQ(reply.ingress_port, 3);

  const FlowKey stranger = FlowKey::ipv4(kTcp, client(2), 40000, kVip, 80);
  EXPECT_FALSE(table.lookup(stranger, table.hash(stranger), 1003, counters, &out));
  EXPECT_EQ(value(counters.lookup_hits), 2u);
  EXPECT_EQ(value(counters.lookup_misses), 1u);
  EXPECT_EQ(value(counters.inserts), 1u);
  const FlowOccupancy occupancy = table.occupancy();
  EXPECT_EQ(occupancy.forward, 1u);
  EXPECT_EQ(occupancy.reverse, 1u);
}

TEST(FlowTable, FullnatForwardLookupCanReadTheLocalAddressAndPort) {
  FlowTable table(options(1024));
  FlowCounters counters;
  NewFlow flow = nat_flow(1, 40000, 2, FlowState::tcp_established);
  flow.reverse_key = FlowKey::ipv4(kTcp, kBackend, 8080, kLocalAddr, 61000);
  Flow out;
  ASSERT_EQ(table.insert(flow, table.hash(flow.key), 0, counters, &out), FlowInsertResult::inserted);
  Flow forward;
  ASSERT_TRUE(table.lookup(flow.key, table.hash(flow.key), 1, counters, &forward, /*want_reverse_key=*/true));
  EXPECT_EQ(forward.reverse_key.dst_ipv4(), kLocalAddr);
  EXPECT_EQ(forward.reverse_key.dst_port, 61000);
}

TEST(FlowTable, Ipv6KeysAreTrackedLikeIpv4) {
  FlowTable table(options(256));
  FlowCounters counters;
  uint8_t client6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
  uint8_t vip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64};
  NewFlow flow;
  flow.key = FlowKey::ipv6(kUdp, client6, 5353, vip6, 53);
  flow.backend_id = 4;
  flow.state = FlowState::udp;
  Flow out;
  ASSERT_EQ(table.insert(flow, table.hash(flow.key), 0, counters, &out), FlowInsertResult::inserted);
  ASSERT_TRUE(table.lookup(flow.key, table.hash(flow.key), 1, counters, &out));
  EXPECT_EQ(out.backend_id, 4u);
  EXPECT_EQ(out.key.family, FlowKey::kIpv6);
}

TEST(FlowTable, SecondInsertOfAKeyReturnsTheFirstFlow) {
  FlowTable table(options(256));
  FlowCounters counters;
  Flow out;
  const NewFlow first = nat_flow(1, 40000, 1, FlowState::tcp_syn_seen);
  ASSERT_EQ(table.insert(first, table.hash(first.key), 0, counters, &out), FlowInsertResult::inserted);
  NewFlow again = first;
  again.backend_id = 2;
  again.reverse_key = FlowKey::ipv4(kTcp, kBackend + 2, 8080, client(1), 40000);
  ASSERT_EQ(table.insert(again, table.hash(again.key), 1, counters, &out), FlowInsertResult::exists);
  EXPECT_EQ(out.backend_id, 1u);
  EXPECT_EQ(value(counters.insert_exists), 1u);
  EXPECT_EQ(table.occupancy().forward, 1u);
  EXPECT_EQ(table.occupancy().reverse, 1u);
}

TEST(FlowTable, ReplyTupleOwnedByAnotherFlowIsReported) {
  FlowTable table(options(256));
  FlowCounters counters;
  Flow out;
  NewFlow first = nat_flow(1, 40000, 1, FlowState::tcp_syn_seen);
  first.reverse_key = FlowKey::ipv4(kTcp, kBackend, 8080, kLocalAddr, 61000);
  ASSERT_EQ(table.insert(first, table.hash(first.key), 0, counters, &out), FlowInsertResult::inserted);
  NewFlow second = nat_flow(2, 40000, 1, FlowState::tcp_syn_seen);
  second.reverse_key = first.reverse_key;  // fullnat picked a local port in use
  ASSERT_EQ(table.insert(second, table.hash(second.key), 0, counters, &out), FlowInsertResult::reverse_exists);
  EXPECT_EQ(out.key, first.key);
  EXPECT_EQ(value(counters.insert_reverse_exists), 1u);
  // Nothing of the refused flow stays behind.
  EXPECT_FALSE(table.lookup(second.key, table.hash(second.key), 0, counters, &out));
  EXPECT_EQ(table.occupancy().forward, 1u);
  EXPECT_EQ(table.occupancy().reverse, 1u);
  second.reverse_key.dst_port = 61001;
  EXPECT_EQ(table.insert(second, table.hash(second.key), 0, counters, &out), FlowInsertResult::inserted);
}

TEST(FlowTcpState, TransitionsFollowFlagsFromEitherDirection) {
  using S = FlowState;
  using D = FlowDirection;
  constexpr uint8_t SYN = TcpFlagBits::syn, ACK = TcpFlagBits::ack, FIN = TcpFlagBits::fin, RST = TcpFlagBits::rst;
  struct Case {
    const char* what;
    S from;
    uint8_t flags;
    D direction;
    S to;
  };
  const Case cases[] = {
      {"retransmitted SYN", S::tcp_syn_seen, SYN, D::original, S::tcp_syn_seen},
      {"backend's SYN-ACK does not establish", S::tcp_syn_seen, SYN | ACK, D::reply, S::tcp_syn_seen},
      {"client's ACK establishes", S::tcp_syn_seen, ACK, D::original, S::tcp_established},
      {"backend's bare ACK does not establish", S::tcp_syn_seen, ACK, D::reply, S::tcp_syn_seen},
      {"data keeps established", S::tcp_established, ACK, D::reply, S::tcp_established},
      {"client FIN closes one side", S::tcp_established, FIN | ACK, D::original, S::tcp_fin_original},
      {"backend FIN closes one side", S::tcp_established, FIN | ACK, D::reply, S::tcp_fin_reply},
      {"retransmitted FIN", S::tcp_fin_original, FIN | ACK, D::original, S::tcp_fin_original},
      {"second FIN closes", S::tcp_fin_original, FIN | ACK, D::reply, S::tcp_closed},
      {"second FIN closes (other order)", S::tcp_fin_reply, FIN | ACK, D::original, S::tcp_closed},
      {"RST closes from anywhere", S::tcp_established, RST, D::reply, S::tcp_closed},
      {"RST during handshake", S::tcp_syn_seen, RST | ACK, D::original, S::tcp_closed},
      {"new SYN reopens a closed tuple", S::tcp_closed, SYN, D::original, S::tcp_syn_seen},
      {"new SYN reopens a closing tuple", S::tcp_fin_reply, SYN, D::original, S::tcp_syn_seen},
      {"SYN on established is ignored", S::tcp_established, SYN, D::original, S::tcp_established},
      {"udp has no states", S::udp, RST, D::original, S::udp},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(next_tcp_state(c.from, c.flags, c.direction), c.to) << c.what;
  }
  EXPECT_EQ(initial_flow_state(kTcp, SYN), S::tcp_syn_seen);
  EXPECT_EQ(initial_flow_state(kTcp, ACK), S::tcp_established);  // picked up mid-stream
  EXPECT_EQ(initial_flow_state(kUdp, 0), S::udp);
  EXPECT_EQ(initial_flow_state(1, 0), S::other);
}

TEST(FlowTable, ObserveTcpMovesTheStoredStateAndItsTimeout) {
  FlowTable table(options(256));
  FlowCounters counters;
  const NewFlow flow = nat_flow(1, 40000, 1, FlowState::tcp_syn_seen);
  Flow out;
  ASSERT_EQ(table.insert(flow, table.hash(flow.key), 0, counters, &out), FlowInsertResult::inserted);
  const FlowHandle handle = out.handle;
  EXPECT_EQ(table.observe_tcp(handle, out.state, TcpFlagBits::ack, FlowDirection::original, 10),
            FlowState::tcp_established);
  EXPECT_EQ(table.observe_tcp(handle, FlowState::tcp_established, TcpFlagBits::fin, FlowDirection::reply, 20),
            FlowState::tcp_fin_reply);
  EXPECT_EQ(table.observe_tcp(handle, FlowState::tcp_fin_reply, TcpFlagBits::fin, FlowDirection::original, 30),
            FlowState::tcp_closed);
  ASSERT_TRUE(table.lookup(flow.key, table.hash(flow.key), 30, counters, &out));
  EXPECT_EQ(out.state, FlowState::tcp_closed);
  EXPECT_EQ(out.last_seen_ms, 30u);
  // Closed flows live tcp_closed_ms (10 s) after the last segment.
  const uint64_t closed_timeout = table.timeouts().tcp_closed_ms;
  EXPECT_TRUE(table.lookup(flow.key, table.hash(flow.key), 30 + closed_timeout, counters, &out));
  EXPECT_FALSE(table.lookup(flow.key, table.hash(flow.key), 31 + closed_timeout, counters, &out));
  EXPECT_EQ(value(counters.expired), 1u);
}

TEST(FlowTable, EachStateExpiresAfterItsOwnTimeout) {
  FlowTableOptions o = options(1024);
  o.timeouts = FlowTimeouts{100, 200, 300, 400, 500, 600};
  ActiveFlows active;
  o.events = active.events();
  FlowTable table(o);
  FlowCounters counters;
  const FlowState states[] = {FlowState::tcp_syn_seen,     FlowState::tcp_established, FlowState::tcp_fin_original,
                              FlowState::tcp_fin_reply,    FlowState::tcp_closed,      FlowState::udp,
                              FlowState::other};
  for (FlowState state : states) {
    const uint32_t timeout = table.timeouts().for_state(state);
    const NewFlow flow = nat_flow(static_cast<uint32_t>(state), 1000, 1, state);
    Flow out;
    ASSERT_EQ(table.insert(flow, table.hash(flow.key), 5000, counters, &out), FlowInsertResult::inserted);
    EXPECT_TRUE(table.lookup(flow.key, table.hash(flow.key), 5000 + timeout, counters, &out))
        << "state " << static_cast<int>(state) << " alive at its timeout";
    EXPECT_FALSE(table.lookup(flow.reverse_key, table.hash(flow.reverse_key), 5001 + timeout, counters, &out))
        << "state " << static_cast<int>(state) << " expired one ms later (found through its reply key)";
  }
  EXPECT_EQ(value(counters.expired), 7u);
  EXPECT_EQ(table.occupancy().forward, 0u);
  EXPECT_EQ(table.occupancy().reverse, 0u);
  EXPECT_EQ(active.total(), 0);
}

TEST(FlowTable, TouchKeepsAFlowAliveAndAnOlderClockDoesNotAgeIt) {
  FlowTable table(options(256));
  FlowCounters counters;
  NewFlow flow = dr_flow(1, 1000, 1, FlowState::udp);
  flow.key.protocol = kUdp;
  Flow out;
  ASSERT_EQ(table.insert(flow, table.hash(flow.key), 0, counters, &out), FlowInsertResult::inserted);
  const uint32_t timeout = table.timeouts().udp_ms;
  table.touch(out.handle, timeout);
  table.touch(out.handle, timeout - 5);  // another worker's clock read a moment earlier
  EXPECT_TRUE(table.lookup(flow.key, table.hash(flow.key), 2 * timeout, counters, &out));
  EXPECT_EQ(out.last_seen_ms, timeout);
  // A stamp slightly ahead of a worker's `now` counts as age zero, not as 49 days.
  EXPECT_TRUE(table.lookup(flow.key, table.hash(flow.key), timeout - 100, counters, &out));
}

TEST(FlowTable, RemoveDeletesBothEntriesAndAStaleHandleChangesNothing) {
  ActiveFlows active;
  FlowTable table(options(16, &active));  // two buckets: every key competes for the same slots
  FlowCounters counters;
  const NewFlow flow = nat_flow(1, 40000, 5, FlowState::tcp_established);
  Flow out;
  ASSERT_EQ(table.insert(flow, table.hash(flow.key), 0, counters, &out), FlowInsertResult::inserted);
  const FlowHandle old_handle = out.handle;
  EXPECT_TRUE(table.remove(old_handle, counters));
  EXPECT_FALSE(table.remove(old_handle, counters));
  EXPECT_FALSE(table.lookup(flow.reverse_key, table.hash(flow.reverse_key), 0, counters, &out));
  EXPECT_EQ(active.count[5].load(), 0);
  EXPECT_EQ(value(counters.removed), 1u);

  // Fill every slot (so the old one is recycled), then use the old handle:
  // the new occupant is untouched.
  for (uint16_t port = 1; port <= 16; ++port) {
    const NewFlow other = dr_flow(2, port, 6, FlowState::tcp_established);
    ASSERT_EQ(table.insert(other, table.hash(other.key), 0, counters, &out), FlowInsertResult::inserted);
  }
  EXPECT_FALSE(table.remove(old_handle, counters));
  EXPECT_EQ(table.observe_tcp(old_handle, FlowState::tcp_established, TcpFlagBits::rst, FlowDirection::original, 1),
            FlowState::tcp_established);
  size_t closed = 0;
  for (uint32_t slot = 0; slot < table.slot_count(); ++slot) {
    FlowSlotInfo info;
    if (table.inspect(slot, &info) && info.state == FlowState::tcp_closed) ++closed;
  }
  EXPECT_EQ(closed, 0u);
  EXPECT_EQ(table.occupancy().forward, 16u);
}

TEST(FlowTable, ExpireStepSweepsABoundedNumberOfSlotsPerCall) {
  ActiveFlows active;
  FlowTable table(options(4096, &active));
  FlowCounters counters;
  Flow out;
  for (uint16_t port = 0; port < 1000; ++port) {
    const NewFlow flow = nat_flow(port % 50, port, port % 8, FlowState::tcp_established);
    ASSERT_EQ(table.insert(flow, table.hash(flow.key), 0, counters, &out), FlowInsertResult::inserted);
  }
  EXPECT_EQ(active.total(), 1000);
  // Nothing has timed out yet: a full sweep removes nothing.
  EXPECT_EQ(table.expire_step(1000, table.slot_count(), counters), 0u);
  const uint64_t later = 1 + table.timeouts().tcp_established_ms;
  size_t expired = 0;
  size_t calls = 0;
  while (expired < 1000) {
    const size_t step = table.expire_step(later, 64, counters);
    EXPECT_LE(step, 64u);
    expired += step;
    ASSERT_LE(++calls, table.slot_count() / 64) << "one lap of the cursor removes everything";
  }
  EXPECT_EQ(value(counters.expired), 1000u);
  EXPECT_EQ(table.occupancy().forward, 0u);
  EXPECT_EQ(table.occupancy().reverse, 0u);
  EXPECT_EQ(active.total(), 0);
}

// Two buckets of 8 slots hold the whole table, so every key competes for the
// same 16 slots and the eviction order can be observed exactly.
TEST(FlowTable, FullTableEvictsHalfOpenFirstThenExpiredThenFails) {
  FlowTableOptions o = options(16);
  o.timeouts.tcp_established_ms = 1000;
  o.timeouts.tcp_syn_ms = 60'000;
  ActiveFlows active;
  o.events = active.events();
  FlowTable table(o);
  ASSERT_EQ(table.slot_count(), 16u);
  FlowCounters counters;
  Flow out;
  auto insert = [&](uint16_t port, FlowState state, uint64_t now) {
    const NewFlow flow = dr_flow(1, port, port, state);
    return table.insert(flow, table.hash(flow.key), now, counters, &out);
  };
  auto tracked = [&](uint16_t port, uint64_t now) {
    const FlowKey key = dr_flow(1, port, 0, FlowState::other).key;
    Flow found;
    FlowCounters scratch;
    return table.lookup(key, table.hash(key), now, scratch, &found);
  };
  // 14 established flows at t=0 (they expire after t=1000), one at t=900, one half-open at t=950.
  for (uint16_t port = 1; port <= 14; ++port) ASSERT_EQ(insert(port, FlowState::tcp_established, 0), FlowInsertResult::inserted);
  ASSERT_EQ(insert(15, FlowState::tcp_established, 900), FlowInsertResult::inserted);
  ASSERT_EQ(insert(16, FlowState::tcp_syn_seen, 950), FlowInsertResult::inserted);
  ASSERT_EQ(table.occupancy().forward, 16u);

  // t=999: nothing expired; the half-open flow makes room.
  ASSERT_EQ(insert(17, FlowState::tcp_established, 999), FlowInsertResult::inserted);
  EXPECT_EQ(value(counters.evictions_half_open), 1u);
  EXPECT_FALSE(tracked(16, 999));
  // Now only established flows within their timeout: the insert fails, nothing changes.
  EXPECT_EQ(insert(18, FlowState::tcp_syn_seen, 999), FlowInsertResult::full);
  EXPECT_EQ(value(counters.insert_failed_full), 1u);
  EXPECT_EQ(table.occupancy().forward, 16u);

  // t=1500: the 14 flows of t=0 have expired; with no half-open flow, the
  // oldest expired ones make room.
  ASSERT_EQ(insert(19, FlowState::tcp_established, 1500), FlowInsertResult::inserted);
  EXPECT_EQ(value(counters.evictions_expired), 1u);
  ASSERT_EQ(insert(20, FlowState::tcp_syn_seen, 1500), FlowInsertResult::inserted);
  EXPECT_EQ(value(counters.evictions_expired), 2u);
  // With a half-open flow (20, the youngest of all) and 12 expired ones, the
  // half-open flow goes first...
  ASSERT_EQ(insert(21, FlowState::tcp_established, 1500), FlowInsertResult::inserted);
  EXPECT_EQ(value(counters.evictions_half_open), 2u) << "half-open before expired";
  EXPECT_EQ(value(counters.evictions_expired), 2u);
  EXPECT_FALSE(tracked(20, 1500));
  // ...then the remaining expired flows, then nothing.
  for (uint16_t port = 22; port < 22 + 12; ++port) {
    ASSERT_EQ(insert(port, FlowState::tcp_established, 1500), FlowInsertResult::inserted) << port;
  }
  EXPECT_EQ(value(counters.evictions_expired), 14u);
  EXPECT_EQ(insert(40, FlowState::tcp_established, 1500), FlowInsertResult::full);
  EXPECT_EQ(value(counters.insert_failed_full), 2u);
  EXPECT_TRUE(tracked(15, 1500));  // t=900 + 1000 > 1500: never a victim
  EXPECT_TRUE(tracked(17, 1500));
  EXPECT_EQ(active.total(), 16);
}

// The sizing rule in flow_table.h: buckets of 8 with two choices take random
// keys up to 70% load without a single `full`, and at 85% fewer than 0.5% of
// inserts find both their buckets full.
TEST(FlowTable, TwoChoiceBucketsFillTo70PercentWithoutFailuresAnd85WithUnderHalfAPercent) {
  FlowTable table(options(1u << 14));
  FlowCounters counters;
  Flow out;
  size_t inserted = 0;
  size_t failed_below_70 = 0;
  size_t failed_below_85 = 0;
  for (size_t i = 0; i < table.slot_count() * 85 / 100; ++i) {
    const NewFlow flow = dr_flow(static_cast<uint32_t>(i >> 16), static_cast<uint16_t>(i), 1, FlowState::udp);
    if (table.insert(flow, table.hash(flow.key), 0, counters, &out) == FlowInsertResult::inserted) {
      ++inserted;
    } else {
      ++failed_below_85;
      if (inserted < table.slot_count() * 70 / 100) ++failed_below_70;
    }
  }
  EXPECT_EQ(failed_below_70, 0u);
  EXPECT_LT(failed_below_85, table.slot_count() * 85 / 100 / 200);
  EXPECT_EQ(value(counters.insert_failed_full), failed_below_85);
  EXPECT_EQ(table.occupancy().forward, inserted);
}

TEST(FlowTable, PersistenceTemplateHoldsItsBackendUntilItsTimeout) {
  FlowTable table(options(1024));
  FlowCounters counters;
  const uint8_t client_addr[4] = {198, 19, 0, 7};
  const FlowKey key = FlowKey::persistence_template(42, FlowKey::kIpv4, client_addr);
  Flow out;
  ASSERT_EQ(table.insert_template(key, table.hash(key), 3, 5000, 0, counters, &out), FlowInsertResult::inserted);
  EXPECT_EQ(out.kind, FlowEntryKind::persistence_template);
  EXPECT_EQ(table.insert_template(key, table.hash(key), 4, 5000, 10, counters, &out), FlowInsertResult::exists);
  EXPECT_EQ(out.backend_id, 3u);
  ASSERT_TRUE(table.lookup(key, table.hash(key), 5000, counters, &out));
  EXPECT_EQ(out.template_timeout_ms, 5000u);
  table.touch(out.handle, 4000);
  EXPECT_TRUE(table.lookup(key, table.hash(key), 9000, counters, &out));
  EXPECT_FALSE(table.lookup(key, table.hash(key), 9001, counters, &out));
  EXPECT_EQ(table.occupancy().templates, 0u);
  // The same client in another service is another template.
  const FlowKey other_service = FlowKey::persistence_template(43, FlowKey::kIpv4, client_addr);
  EXPECT_NE(key, other_service);
}

// The engine's use of templates, with rr (which would rotate): within the
// persistence timeout every new flow of a client reaches the backend its
// first flow got; after the timeout the scheduler decides again.
TEST(Persistence, SameClientSameBackendWithinTimeoutEvenWhenRoundRobinWouldMove) {
  using namespace l4lb::core::sched;
  const BackendSpec backends[3] = {};
  BuildError error;
  const auto scheduler = RoundRobinScheduler::build(backends, &error);
  ASSERT_TRUE(scheduler);
  PickState state;
  FlowTable table(options(1024));
  FlowCounters counters;
  constexpr uint32_t kService = 9;
  constexpr uint32_t kPersistenceMs = 300'000;

  auto new_flow_backend = [&](uint32_t client_n, uint64_t now) -> int32_t {
    uint8_t addr[4];
    store_be32(addr, client(client_n));
    const FlowKey template_key = FlowKey::persistence_template(kService, FlowKey::kIpv4, addr);
    const uint64_t hash = table.hash(template_key);
    Flow found;
    if (table.lookup(template_key, hash, now, counters, &found)) {
      table.touch(found.handle, now);
      return static_cast<int32_t>(found.backend_id);
    }
    const int32_t picked = scheduler->pick(PickInput{}, state);
    EXPECT_EQ(table.insert_template(template_key, hash, static_cast<uint32_t>(picked), kPersistenceMs, now, counters,
                                    &found),
              FlowInsertResult::inserted);
    return picked;
  };

  const int32_t first = new_flow_backend(1, 0);
  EXPECT_NE(new_flow_backend(2, 0), first);  // rr moves on for another client
  for (uint64_t now = 1000; now <= 10'000; now += 1000) {
    EXPECT_EQ(new_flow_backend(1, now), first) << "at " << now << " ms";
  }
  // Idle for longer than the timeout: scheduled afresh (rr's next pick is not `first`).
  const int32_t after = new_flow_backend(1, 10'000 + kPersistenceMs + 1);
  EXPECT_NE(after, first);
}

TEST(FlowTable, HashIsKeyedAndDeterministicPerKey) {
  FlowTable a(options(64));
  FlowTableOptions other = options(64);
  other.hash_key.k0 ^= 1;
  FlowTable b(other);
  const FlowKey key = FlowKey::ipv4(kTcp, client(1), 1, kVip, 80);
  EXPECT_EQ(a.hash(key), a.hash(key));
  EXPECT_NE(a.hash(key), b.hash(key));
}

namespace {

// Flows of one shape, numbered: IPv4 or IPv6, with or without a reply entry
// (nat) and with a full reply key (fullnat: the reply goes to a local
// address, not the client).
enum class Shape { ipv4_dr, ipv4_nat, ipv6_dr, ipv6_nat, ipv6_fullnat };

NewFlow shaped_flow(Shape shape, uint32_t n) {
  if (shape == Shape::ipv4_dr || shape == Shape::ipv4_nat) {
    NewFlow flow = nat_flow(n >> 16, static_cast<uint16_t>(n), 1 + n % 7, FlowState::udp);
    flow.track_reverse = shape == Shape::ipv4_nat;
    return flow;
  }
  uint8_t client6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0};
  client6[12] = static_cast<uint8_t>(n >> 24);
  client6[13] = static_cast<uint8_t>(n >> 16);
  client6[14] = static_cast<uint8_t>(n >> 8);
  client6[15] = static_cast<uint8_t>(n);
  const uint8_t vip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x64};
  const uint8_t backend6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};
  const uint8_t local6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  const uint16_t port = static_cast<uint16_t>(1024 + n % 60000);
  NewFlow flow;
  flow.key = FlowKey::ipv6(kTcp, client6, port, vip6, 80);
  flow.backend_id = 1 + n % 7;
  flow.state = FlowState::udp;
  flow.track_reverse = shape != Shape::ipv6_dr;
  if (shape == Shape::ipv6_nat) flow.reverse_key = FlowKey::ipv6(kTcp, backend6, 8080, client6, port);
  if (shape == Shape::ipv6_fullnat) {
    // One local address, ports spread over the flows (as fullnat allocates them).
    uint8_t local[16];
    std::copy(local6, local6 + 16, local);
    local[13] = static_cast<uint8_t>(n >> 16);
    flow.reverse_key = FlowKey::ipv6(kTcp, backend6, 8080, local, static_cast<uint16_t>(n));
  }
  return flow;
}

size_t slots_of(Shape shape) {
  switch (shape) {
    case Shape::ipv4_dr: return FlowTable::kBytesPerIpv4DrFlow / FlowTable::kSlotBytes;
    case Shape::ipv4_nat: return FlowTable::kBytesPerIpv4NatFlow / FlowTable::kSlotBytes;
    case Shape::ipv6_dr: return FlowTable::kBytesPerIpv6DrFlow / FlowTable::kSlotBytes;
    case Shape::ipv6_nat: return FlowTable::kBytesPerIpv6NatFlow / FlowTable::kSlotBytes;
    case Shape::ipv6_fullnat: return FlowTable::kBytesPerIpv6FullnatFlow / FlowTable::kSlotBytes;
  }
  return 1;
}

class FlowTableLoad : public ::testing::TestWithParam<Shape> {};

}  // namespace

// The promise behind the sizing rule (kDesignLoadPercent, IPv4 nat flows):
// with cuckoo moves a table takes random IPv4 flows to at least 95% of its
// slots before the first insert is refused, IPv6 flows to at least 78%, and
// the slots used are exactly the shape's bytes per flow.
TEST_P(FlowTableLoad, FillsToItsLoadBeforeTheFirstRefusal) {
  const Shape shape = GetParam();
  FlowTable table(options(1u << 16));
  FlowCounters counters;
  Flow out;
  uint32_t inserted = 0;
  for (uint32_t n = 0; n < table.slot_count(); ++n) {
    const NewFlow flow = shaped_flow(shape, n);
    const FlowInsertResult result = table.insert(flow, table.hash(flow.key), 0, counters, &out);
    if (result == FlowInsertResult::full) break;
    ASSERT_EQ(result, FlowInsertResult::inserted) << "flow " << n;
    ++inserted;
  }
  const FlowOccupancy occupancy = table.occupancy();
  const size_t used = static_cast<size_t>(inserted) * slots_of(shape);
  const double load = static_cast<double>(used) / static_cast<double>(table.slot_count());
  RecordProperty("load_at_first_refusal_percent", static_cast<int>(load * 100));
  // IPv6 entries are wide (an aligned pair of slots): two bucket choices of
  // two pairs each have a ceiling near 89.7% for pairs alone; the bounded
  // search (64 buckets, depth 5) reaches about 79-84%.
  const bool ipv4 = shape == Shape::ipv4_dr || shape == Shape::ipv4_nat;
  EXPECT_GE(load, ipv4 ? 0.95 : 0.78) << "first refusal at " << load * 100 << "% load";
  EXPECT_EQ(occupancy.forward, inserted);
  EXPECT_EQ(occupancy.slots_used, used);
  // Every flow is still found after all the moves.
  for (uint32_t n = 0; n < inserted; ++n) {
    const NewFlow flow = shaped_flow(shape, n);
    ASSERT_TRUE(table.lookup(flow.key, table.hash(flow.key), 1, counters, &out)) << "flow " << n;
    ASSERT_EQ(out.backend_id, flow.backend_id);
    if (flow.track_reverse) {
      ASSERT_TRUE(table.lookup(flow.reverse_key, table.hash(flow.reverse_key), 1, counters, &out)) << "reply " << n;
      ASSERT_EQ(out.matched, FlowDirection::reply);
      ASSERT_TRUE(out.key == flow.key);
    }
  }
}

std::string shape_name(const ::testing::TestParamInfo<Shape>& param) {
  static const char* const kNames[] = {"Ipv4Dr", "Ipv4Nat", "Ipv6Dr", "Ipv6Nat", "Ipv6Fullnat"};
  return kNames[static_cast<int>(param.param)];
}

INSTANTIATE_TEST_SUITE_P(Shapes, FlowTableLoad,
                         ::testing::Values(Shape::ipv4_dr, Shape::ipv4_nat, Shape::ipv6_dr, Shape::ipv6_nat,
                                           Shape::ipv6_fullnat),
                         shape_name);

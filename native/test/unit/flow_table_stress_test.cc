// Several threads on one FlowTable at once, as the workers use it: inserting
// the same keys concurrently, looking flows up from both directions, changing
// TCP states, removing, sweeping and evicting in a table small enough to stay
// full. Built on its own so that it can run under ThreadSanitizer:
//
//   cmake -S . -B build-tsan -DCMAKE_CXX_FLAGS=-fsanitize=thread
//         -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread   (one command line)
//   cmake --build build-tsan --target flow_table_stress_test && ./build-tsan/flow_table_stress_test
//
// L4LB_STRESS_MS sets the churn phase's duration (default 400 ms).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <map>
#include <thread>
#include <vector>

#include "core/flow_table.h"

using namespace l4lb::core;

namespace {

constexpr uint8_t kTcp = 6;
constexpr uint32_t kVip = 0xc6120064;
constexpr int kThreads = 3;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Every field of flow n is a function of n, so a torn or mixed-up read shows
// as a mismatch between the key and the data.
FlowKey forward_key(uint32_t n) {
  return FlowKey::ipv4(kTcp, 0xc6130000 + (n >> 8), static_cast<uint16_t>(1024 + (n & 0xff)), kVip, 80);
}
FlowKey reverse_key(uint32_t n) {
  return FlowKey::ipv4(kTcp, 0xc6120100 + (n % 7), 8080, 0xc6120001, static_cast<uint16_t>(10000 + n));
}
NewFlow flow_for(uint32_t n, uint32_t backend_id) {
  NewFlow flow;
  flow.key = forward_key(n);
  flow.reverse_key = reverse_key(n);
  flow.track_reverse = true;
  flow.backend_id = backend_id;
  flow.state = FlowState::tcp_syn_seen;
  // 509 distinct client-side paths (ports and next-hop MACs): within what
  // the table interns, and enough that a read mixing two flows shows.
  const uint32_t path = n % 509;
  flow.ingress_port = static_cast<uint16_t>(path % 7);
  for (int i = 0; i < 6; ++i) flow.client_mac[i] = static_cast<uint8_t>(path >> (i * 2));
  return flow;
}
// The data must belong to the key that was found.
bool consistent(const Flow& flow, uint32_t n) {
  const NewFlow expected = flow_for(n, 0);
  return flow.key == expected.key && flow.ingress_port == expected.ingress_port &&
         std::equal(flow.client_mac, flow.client_mac + 6, expected.client_mac) &&
         (flow.matched == FlowDirection::original || flow.reverse_key == expected.reverse_key);
}

struct ActiveFlows {
  std::atomic<int64_t> total{0};
  FlowEvents events() {
    FlowEvents e;
    e.context = this;
    e.flow_added = [](void* c, uint32_t) { static_cast<ActiveFlows*>(c)->total.fetch_add(1); };
    e.flow_removed = [](void* c, uint32_t) { static_cast<ActiveFlows*>(c)->total.fetch_sub(1); };
    return e;
  }
};

uint64_t sum(const std::vector<FlowCounters>& counters, std::atomic<uint64_t> FlowCounters::*field) {
  uint64_t total = 0;
  for (const FlowCounters& c : counters) total += (c.*field).load();
  return total;
}

// After the threads stop: no key twice, every forward entry has its reverse
// entry pointing back at it, and the hook's count equals the live flows.
void expect_table_consistent(const FlowTable& table, const ActiveFlows& active) {
  std::map<std::vector<uint8_t>, int> keys;
  size_t forward = 0;
  for (uint32_t slot = 0; slot < table.slot_count(); ++slot) {
    FlowSlotInfo info;
    if (!table.inspect(slot, &info)) continue;
    const auto* bytes = reinterpret_cast<const uint8_t*>(&info.key);
    EXPECT_EQ(++keys[std::vector<uint8_t>(bytes, bytes + sizeof(FlowKey))], 1) << "key stored twice, slot " << slot;
    if (info.kind != FlowEntryKind::forward) continue;
    ++forward;
    FlowSlotInfo peer;
    ASSERT_TRUE(table.inspect(info.peer_slot, &peer)) << "forward entry without its reverse entry";
    EXPECT_EQ(peer.kind, FlowEntryKind::reverse);
    EXPECT_EQ(peer.peer_slot, slot);
    EXPECT_EQ(peer.peer_version, info.version & 0x7fffffff);
  }
  EXPECT_EQ(table.occupancy().claimed, 0u);
  EXPECT_EQ(static_cast<size_t>(active.total.load()), forward);
}

}  // namespace

// Every thread inserts the same keys at the same moment with its own backend:
// exactly one insert per key wins, and every other thread gets that flow back.
TEST(FlowTableStress, ConcurrentInsertsOfTheSameKeysCreateEachFlowOnce) {
  constexpr uint32_t kKeys = 400;
  constexpr int kRounds = 6;
  ActiveFlows active;
  FlowTableOptions options;
  options.slots = 4096;
  options.hash_key = SipHashKey{1, 2};
  options.events = active.events();
  FlowTable table(options);
  std::vector<FlowCounters> counters(kThreads);
  struct Outcome {
    FlowInsertResult result;
    uint32_t backend;
  };
  std::vector<std::vector<Outcome>> outcomes(kThreads, std::vector<Outcome>(kKeys));
  std::barrier sync(kThreads + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint64_t seed = static_cast<uint64_t>(t);
      std::vector<uint32_t> order(kKeys);
      for (int round = 0; round < kRounds; ++round) {
        for (uint32_t i = 0; i < kKeys; ++i) order[i] = i;
        // Half the rounds in the same order (maximal collisions), half shuffled.
        if (round % 2) {
          for (uint32_t i = kKeys - 1; i > 0; --i) std::swap(order[i], order[splitmix64(seed) % (i + 1)]);
        }
        sync.arrive_and_wait();
        for (uint32_t n : order) {
          const NewFlow flow = flow_for(n + round * kKeys, static_cast<uint32_t>(t));
          Flow out;
          const FlowInsertResult result = table.insert(flow, table.hash(flow.key), 0, counters[t], &out);
          outcomes[t][n] = Outcome{result, out.backend_id};
          if (result == FlowInsertResult::exists) {
            EXPECT_TRUE(consistent(out, n + round * kKeys));
          }
        }
        sync.arrive_and_wait();
        sync.arrive_and_wait();  // the main thread checks, then releases the next round
      }
    });
  }
  for (int round = 0; round < kRounds; ++round) {
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    for (uint32_t n = 0; n < kKeys; ++n) {
      int winners = 0;
      uint32_t winner = 0;
      for (int t = 0; t < kThreads; ++t) {
        if (outcomes[t][n].result == FlowInsertResult::inserted) {
          ++winners;
          winner = static_cast<uint32_t>(t);
        }
      }
      EXPECT_EQ(winners, 1) << "key " << n << " round " << round;
      for (int t = 0; t < kThreads; ++t) {
        const Outcome& o = outcomes[t][n];
        EXPECT_TRUE(o.result == FlowInsertResult::inserted || o.result == FlowInsertResult::exists ||
                    o.result == FlowInsertResult::contended)
            << "result " << static_cast<int>(o.result) << " for key " << n << " round " << round;
        if (o.result == FlowInsertResult::exists) {
          EXPECT_EQ(o.backend, winner);
        }
      }
      Flow found;
      FlowCounters scratch;
      const FlowKey key = forward_key(n + round * kKeys);
      if (winners == 1) {
        EXPECT_TRUE(table.lookup(key, table.hash(key), 0, scratch, &found));
        EXPECT_EQ(found.backend_id, winner);
        EXPECT_TRUE(table.remove(found.handle, scratch));
      }
    }
    EXPECT_EQ(table.occupancy().forward, 0u);
    EXPECT_EQ(table.occupancy().reverse, 0u);
    sync.arrive_and_wait();
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(active.total.load(), 0);
  std::printf("contended inserts: %llu of %u\n",
              static_cast<unsigned long long>(sum(counters, &FlowCounters::insert_contended)),
              kKeys * kRounds * kThreads);
}

// Churn in a table kept full: inserts (with eviction), lookups from both
// directions, TCP state changes, removes and sweeps racing each other, with a
// clock that moves so that flows expire. No read may ever return data of
// another flow, and at the end no flow may be lost or counted twice:
//   inserts == live flows + expired + removed + evicted.
TEST(FlowTableStress, ChurnKeepsEveryEntryConsistentAndAccounted) {
  const char* env = std::getenv("L4LB_STRESS_MS");
  const auto duration = std::chrono::milliseconds(env ? std::atoi(env) : 400);
  constexpr uint32_t kKeySpace = 3000;  // ~6000 entries wanted, 2048 slots: always full
  ActiveFlows active;
  FlowTableOptions options;
  options.slots = 2048;
  options.hash_key = SipHashKey{3, 4};
  options.timeouts.tcp_syn_ms = 40;
  options.timeouts.tcp_established_ms = 80;
  options.timeouts.tcp_closing_ms = 20;
  options.timeouts.tcp_closed_ms = 5;
  options.events = active.events();
  FlowTable table(options);
  std::vector<FlowCounters> counters(kThreads);
  std::atomic<uint64_t> clock_ms{1000};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> torn{0};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint64_t seed = 0x1234 + static_cast<uint64_t>(t);
      FlowCounters& mine = counters[t];
      uint64_t local_reads = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const uint64_t now = clock_ms.load(std::memory_order_relaxed);
        const uint64_t r = splitmix64(seed);
        const uint32_t n = static_cast<uint32_t>(r % kKeySpace);
        const uint32_t op = static_cast<uint32_t>(r >> 40) % 100;
        Flow flow;
        if (op < 30) {
          NewFlow wanted = flow_for(n, n % 13);
          if (n % 4 == 0) wanted.state = FlowState::tcp_established;  // picked up mid-stream
          const FlowInsertResult result = table.insert(wanted, table.hash(wanted.key), now, mine, &flow);
          if ((result == FlowInsertResult::inserted || result == FlowInsertResult::exists) && !consistent(flow, n)) {
            torn.fetch_add(1);
          }
        } else if (op < 75) {
          const bool reply = op & 1;
          const FlowKey key = reply ? reverse_key(n) : forward_key(n);
          if (table.lookup(key, table.hash(key), now, mine, &flow, /*want_reverse_key=*/!reply)) {
            ++local_reads;
            if (!consistent(flow, n) || flow.backend_id != n % 13 ||
                (!reply && flow.reverse_key != reverse_key(n))) {
              torn.fetch_add(1);
            }
            const uint8_t flags = op < 50 ? TcpFlagBits::ack : op < 60 ? TcpFlagBits::fin : TcpFlagBits::syn;
            table.observe_tcp(flow.handle, flow.state, flags,
                              reply ? FlowDirection::reply : FlowDirection::original, now);
          }
        } else if (op < 85) {
          const FlowKey key = forward_key(n);
          if (table.lookup(key, table.hash(key), now, mine, &flow)) table.remove(flow.handle, mine);
        } else if (op < 88) {
          table.expire_step(now, 8, mine);
        } else if (op < 99) {
          // UDP-like traffic: refresh without a state change.
          const FlowKey key = forward_key(n);
          if (table.lookup(key, table.hash(key), now, mine, &flow)) table.touch(flow.handle, now);
        } else if ((r & 0xf) == 0) {
          clock_ms.fetch_add(1, std::memory_order_relaxed);  // 1 ms every ~1600 operations
        }
      }
      reads.fetch_add(local_reads);
    });
  }
  std::this_thread::sleep_for(duration);
  stop.store(true);
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(torn.load(), 0u);
  EXPECT_GT(reads.load(), 1000u) << "the threads did run";
  expect_table_consistent(table, active);
  const FlowOccupancy occupancy = table.occupancy();
  const uint64_t inserted = sum(counters, &FlowCounters::inserts);
  const uint64_t gone = sum(counters, &FlowCounters::expired) + sum(counters, &FlowCounters::removed) +
                        sum(counters, &FlowCounters::evictions_half_open) +
                        sum(counters, &FlowCounters::evictions_expired);
  EXPECT_EQ(inserted, occupancy.forward + gone);
  std::printf("%llu inserts, %llu lookups hit, %llu evicted (half-open %llu), %llu full, %llu contended\n",
              static_cast<unsigned long long>(inserted), static_cast<unsigned long long>(reads.load()),
              static_cast<unsigned long long>(sum(counters, &FlowCounters::evictions_half_open) +
                                              sum(counters, &FlowCounters::evictions_expired)),
              static_cast<unsigned long long>(sum(counters, &FlowCounters::evictions_half_open)),
              static_cast<unsigned long long>(sum(counters, &FlowCounters::insert_failed_full)),
              static_cast<unsigned long long>(sum(counters, &FlowCounters::insert_contended)));
}

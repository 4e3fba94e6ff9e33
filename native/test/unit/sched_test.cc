#include "core/sched/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "core/hash.h"
#include "core/sched/lc.h"
#include "core/sched/maglev.h"
#include "core/sched/rr.h"
#include "core/sched/sh.h"
#include "core/sched/table.h"
#include "core/sched/wlc.h"
#include "core/sched/wrr.h"

using namespace l4lb::core;
using namespace l4lb::core::sched;

namespace {

constexpr size_t kFlows = 100'000;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// 100k random TCP flows hashed as the engine does: SipHash-1-3 of the 5-tuple
// under a random key (flow_hash), and of the client address alone (client_hash).
std::vector<PickInput> random_flows(size_t count, uint64_t seed) {
  uint64_t state = seed;
  const SipHashKey key{splitmix64(state), splitmix64(state)};
  const SipHashKey client_key = derive_sip_hash_key(key, 1);
  std::vector<PickInput> flows(count);
  for (PickInput& flow : flows) {
    const uint64_t r = splitmix64(state);
    // protocol, client address and port, VIP and port: the bytes of a 5-tuple
    const uint8_t tuple[13] = {6,
                               static_cast<uint8_t>(r >> 24), static_cast<uint8_t>(r >> 16),
                               static_cast<uint8_t>(r >> 8), static_cast<uint8_t>(r),
                               static_cast<uint8_t>(r >> 40), static_cast<uint8_t>(r >> 32),
                               198, 18, 0, 100, 0, 80};
    flow.flow_hash = siphash13(key, tuple, sizeof(tuple));
    flow.client_hash = siphash13(client_key, tuple + 1, 4);
  }
  return flows;
}

std::vector<BackendSpec> backends_with_weights(const std::vector<uint32_t>& weights) {
  std::vector<BackendSpec> backends(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    backends[i].weight = weights[i];
    backends[i].identity = backend_identity("198.18.1." + std::to_string(i + 2) + ":8080");
  }
  return backends;
}

std::vector<BackendSpec> equal_backends(size_t count) { return backends_with_weights(std::vector<uint32_t>(count, 1)); }

std::unique_ptr<Scheduler> build(SchedulerKind kind, const std::vector<BackendSpec>& backends,
                                 const SchedulerOptions& options = {}) {
  BuildError error;
  std::unique_ptr<Scheduler> scheduler = build_scheduler(kind, backends, options, &error);
  EXPECT_TRUE(scheduler) << error.code << ": " << error.message;
  return scheduler;
}

std::vector<size_t> pick_counts(const Scheduler& scheduler, const std::vector<PickInput>& flows) {
  std::vector<size_t> counts(scheduler.backend_count(), 0);
  PickState state;
  for (const PickInput& flow : flows) {
    const int32_t picked = scheduler.pick(flow, state);
    EXPECT_GE(picked, 0);
    if (picked >= 0) ++counts[static_cast<size_t>(picked)];
  }
  return counts;
}

// Every backend's share of the flows is within `tolerance` (relative) of
// weight / total weight.
void expect_shares_within(const std::vector<size_t>& counts, const std::vector<BackendSpec>& backends,
                          double tolerance, const char* what) {
  double total_weight = 0;
  for (const BackendSpec& b : backends) total_weight += schedulable(b) ? b.weight : 0;
  const double total = static_cast<double>(std::accumulate(counts.begin(), counts.end(), size_t{0}));
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = schedulable(backends[i]) ? backends[i].weight / total_weight : 0;
    const double share = counts[i] / total;
    if (expected == 0) {
      EXPECT_EQ(counts[i], 0u) << what << ": backend " << i << " must get nothing";
    } else {
      EXPECT_NEAR(share / expected, 1.0, tolerance)
          << what << ": backend " << i << " got " << share << ", expected " << expected;
    }
  }
}

}  // namespace

TEST(Scheduler, KindNamesRoundTrip) {
  for (SchedulerKind kind : {SchedulerKind::rr, SchedulerKind::wrr, SchedulerKind::lc, SchedulerKind::wlc,
                             SchedulerKind::sh, SchedulerKind::maglev, SchedulerKind::table}) {
    SchedulerKind parsed;
    ASSERT_TRUE(scheduler_kind_from_name(scheduler_kind_name(kind), &parsed));
    EXPECT_EQ(parsed, kind);
  }
  SchedulerKind parsed;
  EXPECT_FALSE(scheduler_kind_from_name("random", &parsed));
}

// rr and wrr are deterministic rotations: over 100k flows each backend is
// within ±2% of its share (in fact within one pick per cycle).
TEST(Distribution, RoundRobinWithin2PercentFor3And10Backends) {
  const auto flows = random_flows(kFlows, 1);
  for (size_t n : {3u, 10u}) {
    const auto backends = equal_backends(n);
    expect_shares_within(pick_counts(*build(SchedulerKind::rr, backends), flows), backends, 0.02, "rr");
  }
}

TEST(Distribution, WeightedRoundRobinWithin2PercentFor3And10Backends) {
  const auto flows = random_flows(kFlows, 2);
  const std::vector<std::vector<uint32_t>> weight_sets = {{1, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}};
  for (const auto& weights : weight_sets) {
    const auto backends = backends_with_weights(weights);
    expect_shares_within(pick_counts(*build(SchedulerKind::wrr, backends), flows), backends, 0.02, "wrr");
  }
}

// Maglev's table gives each backend its share of M = 65537 slots to within a
// slot or two; over 100k random flows the binomial noise is ~1% (10 backends),
// so ±5% is five standard deviations.
TEST(Distribution, MaglevWithin5PercentFor3And10BackendsAndWeighted) {
  const auto flows = random_flows(kFlows, 3);
  const std::vector<std::vector<uint32_t>> weight_sets = {
      {1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}};
  for (const auto& weights : weight_sets) {
    const auto backends = backends_with_weights(weights);
    expect_shares_within(pick_counts(*build(SchedulerKind::maglev, backends), flows), backends, 0.05, "maglev");
  }
}

TEST(Distribution, SourceHashWithin5PercentFor3And10BackendsAndWeighted) {
  const auto flows = random_flows(kFlows, 4);
  const std::vector<std::vector<uint32_t>> weight_sets = {
      {1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {1, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}};
  for (const auto& weights : weight_sets) {
    const auto backends = backends_with_weights(weights);
    expect_shares_within(pick_counts(*build(SchedulerKind::sh, backends), flows), backends, 0.05, "sh");
  }
}

TEST(WeightedRoundRobin, WeightsAreExactOverEveryFullCycleAndInterleaved) {
  const auto backends = backends_with_weights({5, 1, 1});
  BuildError error;
  const auto wrr = WeightedRoundRobinScheduler::build(backends, &error);
  ASSERT_TRUE(wrr->precomputed());
  ASSERT_EQ(wrr->cycle_length(), 7u);
  PickState state;
  std::string order;
  for (int i = 0; i < 14; ++i) order += static_cast<char>('a' + wrr->pick({}, state));
  EXPECT_EQ(order, "aabacaaaabacaa");  // nginx's smooth order, repeated

  // Gcd normalisation: weights 20, 30, 50 cycle in 10 picks of 2, 3, 5.
  const auto scaled = backends_with_weights({20, 30, 50});
  const auto wrr2 = WeightedRoundRobinScheduler::build(scaled, &error);
  EXPECT_EQ(wrr2->cycle_length(), 10u);
  for (uint64_t start : {0ull, 3ull, 9ull}) {
    PickState from{start, 0, 0};
    std::vector<int> counts(3, 0);
    for (int i = 0; i < 10; ++i) ++counts[wrr2->pick({}, from)];
    EXPECT_EQ(counts, (std::vector<int>{2, 3, 5})) << "any full cycle, starting at " << start;
  }
}

TEST(WeightedRoundRobin, LongCyclesFallBackToIpvsAndStayExact) {
  // gcd 1, sum 100000 + 3: too long to precompute.
  const auto backends = backends_with_weights({100000, 1, 2});
  BuildError error;
  const auto wrr = WeightedRoundRobinScheduler::build(backends, &error);
  ASSERT_FALSE(wrr->precomputed());
  PickState state;
  std::vector<uint64_t> counts(3, 0);
  for (uint64_t i = 0; i < wrr->cycle_length(); ++i) ++counts[wrr->pick({}, state)];
  EXPECT_EQ(counts, (std::vector<uint64_t>{100000, 1, 2}));
  // A state left by another scheduler (or a smaller config) is still valid input.
  PickState foreign{0, 77, 1u << 30};
  EXPECT_GE(wrr->pick({}, foreign), 0);
}

TEST(LeastConnection, PicksTheLeastLoadedAndRotatesTies) {
  std::atomic<int32_t> load[4] = {5, 2, 9, 2};
  auto backends = equal_backends(4);
  for (int i = 0; i < 4; ++i) backends[i].active_flows = &load[i];
  const auto lc = build(SchedulerKind::lc, backends);
  PickState state;
  std::vector<int> picked;
  for (int i = 0; i < 4; ++i) picked.push_back(lc->pick({}, state));
  for (int p : picked) EXPECT_TRUE(p == 1 || p == 3) << p;
  EXPECT_NE(std::count(picked.begin(), picked.end(), 1), 4) << "ties rotate between 1 and 3";
  load[3] = 1;
  EXPECT_EQ(lc->pick({}, state), 3);
  backends[3].weight = 0;  // draining: never picked, even when idle
  load[3] = 0;
  const auto drained = build(SchedulerKind::lc, backends);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(drained->pick({}, state), 1);
}

TEST(WeightedLeastConnection, PicksTheSmallestLoadPerWeightAndFillsInProportion) {
  std::atomic<int32_t> load[3] = {10, 10, 10};
  auto backends = backends_with_weights({1, 2, 3});
  for (int i = 0; i < 3; ++i) backends[i].active_flows = &load[i];
  const auto wlc = build(SchedulerKind::wlc, backends);
  PickState state;
  EXPECT_EQ(wlc->pick({}, state), 2);  // 11/3 < 11/2 < 11/1
  load[2] = 40;
  EXPECT_EQ(wlc->pick({}, state), 1);  // 11/2 < 11/1 < 41/3

  // Starting idle, each pick opening a flow: counts follow the weights within ±2%.
  for (auto& l : load) l = 0;
  for (int i = 0; i < 6000; ++i) load[wlc->pick({}, state)].fetch_add(1);
  std::vector<size_t> counts = {static_cast<size_t>(load[0].load()), static_cast<size_t>(load[1].load()),
                                static_cast<size_t>(load[2].load())};
  expect_shares_within(counts, backends, 0.02, "wlc");
}

TEST(AllSchedulers, DrainingAndDownBackendsAreNeverPickedAndNoneGivesNoBackend) {
  const auto flows = random_flows(20'000, 5);
  auto backends = equal_backends(6);
  backends[1].weight = 0;      // draining
  backends[4].usable = false;  // down
  std::atomic<int32_t> load[6] = {};
  for (int i = 0; i < 6; ++i) backends[i].active_flows = &load[i];
  const std::vector<uint32_t> lookup = {0, 1, 2, 3, 4, 5, 4, 1};
  SchedulerOptions options;
  options.lookup_table = lookup;
  for (SchedulerKind kind : {SchedulerKind::rr, SchedulerKind::wrr, SchedulerKind::lc, SchedulerKind::wlc,
                             SchedulerKind::sh, SchedulerKind::maglev, SchedulerKind::table}) {
    const auto scheduler = build(kind, backends, options);
    PickState state;
    for (const PickInput& flow : flows) {
      const int32_t picked = scheduler->pick(flow, state);
      ASSERT_TRUE(picked == 0 || picked == 2 || picked == 3 || picked == 5)
          << scheduler_kind_name(kind) << " picked " << picked;
    }
    auto none = backends;
    for (auto& b : none) b.weight = 0;
    EXPECT_EQ(build(kind, none, options)->pick(flows[0], state), kNoBackend) << scheduler_kind_name(kind);
    for (auto& b : none) {
      b.weight = 1;
      b.usable = false;
    }
    EXPECT_EQ(build(kind, none, options)->pick(flows[0], state), kNoBackend) << scheduler_kind_name(kind);
    if (kind != SchedulerKind::table) {
      EXPECT_EQ(build(kind, {}, options)->pick(flows[0], state), kNoBackend) << scheduler_kind_name(kind);
    }
  }
}

TEST(SourceHash, SameClientSameBackendAndStableAcrossBuilds) {
  const auto backends = equal_backends(10);
  const auto first = build(SchedulerKind::sh, backends);
  const auto second = build(SchedulerKind::sh, backends);
  PickState state;
  const auto flows = random_flows(1000, 6);
  for (const PickInput& flow : flows) {
    PickInput other_port = flow;
    other_port.flow_hash ^= 0x5555;  // another connection of the same client
    const int32_t picked = first->pick(flow, state);
    EXPECT_EQ(first->pick(other_port, state), picked);
    EXPECT_EQ(second->pick(flow, state), picked);
  }
}

// Maglev §3.4: removing one of N backends moves that backend's slots and a
// small fraction of the others'. How small depends on M / N (the paper sizes
// M well above 100 x N):
//   N = 10,  M = 65537  (6554 slots each): changed <= 1.2 x M/N, others' moves <= 0.2 x M/N
//   N = 100, M = 655373 (6554 slots each): the same bounds
//   N = 100, M = 65537  (655 slots each):  changed <= 1.7 x M/N, others' <= 0.7 x M/N (measured
//                                          1.6 and 0.6: the cascade of the last-filled slots is
//                                          relatively larger when each backend has fewer slots)
TEST(Maglev, RemovingOneOfNBackendsMovesAboutOneNth) {
  struct Case {
    size_t backends;
    uint32_t table_size;
    double changed_bound;    // x M/N
    double elsewhere_bound;  // x M/N
  };
  for (const Case& c : {Case{10, 65537, 1.2, 0.2}, Case{100, 655373, 1.2, 0.2}, Case{100, 65537, 1.7, 0.7}}) {
    auto backends = equal_backends(c.backends);
    BuildError error;
    const auto before = MaglevScheduler::build(backends, {c.table_size}, &error);
    ASSERT_TRUE(before) << error.message;
    const uint64_t removed_identity = backends[c.backends / 2].identity;
    backends.erase(backends.begin() + static_cast<long>(c.backends / 2));  // positions shift: compared by identity
    std::vector<uint32_t> changed;
    const auto after = MaglevScheduler::build(backends, {c.table_size}, &error, before.get(), &changed);
    ASSERT_TRUE(after);
    size_t owned_by_removed = 0;
    for (int32_t index : before->table()) owned_by_removed += before->backend(index).identity == removed_identity;
    size_t changed_elsewhere = 0;
    for (uint32_t slot : changed) {
      changed_elsewhere += before->backend(before->table()[slot]).identity != removed_identity;
    }
    const double share = static_cast<double>(c.table_size) / c.backends;
    std::printf("maglev N=%zu M=%u: %zu slots changed (M/N = %.0f), %zu of them not the removed backend's\n",
                c.backends, c.table_size, changed.size(), share, changed_elsewhere);
    EXPECT_EQ(changed.size() - changed_elsewhere, owned_by_removed) << "every slot of the removed backend moves";
    EXPECT_LE(static_cast<double>(changed.size()), c.changed_bound * share);
    EXPECT_LE(static_cast<double>(changed_elsewhere), c.elsewhere_bound * share);
  }
}

TEST(Maglev, IdenticalRebuildChangesNothingAndBuildsAreDeterministic) {
  const auto backends = backends_with_weights({1, 2, 3, 1, 1, 2, 5, 1});
  BuildError error;
  const auto first = MaglevScheduler::build(backends, {}, &error);
  std::vector<uint32_t> changed = {1, 2, 3};
  const auto second = MaglevScheduler::build(backends, {}, &error, first.get(), &changed);
  EXPECT_TRUE(changed.empty());
  EXPECT_TRUE(std::equal(first->table().begin(), first->table().end(), second->table().begin()));

  // Another list order (as after a config reload) gives the same backend for every slot.
  auto reversed = backends;
  std::reverse(reversed.begin(), reversed.end());
  const auto third = MaglevScheduler::build(reversed, {}, &error, first.get(), &changed);
  EXPECT_TRUE(changed.empty());
  EXPECT_EQ(MaglevScheduler::changed_slots(*first, *third, nullptr), 0u);

  // A weight change does move slots, and reports them.
  auto reweighted = backends;
  reweighted[0].weight = 4;
  const auto fourth = MaglevScheduler::build(reweighted, {}, &error, first.get(), &changed);
  EXPECT_GT(changed.size(), 0u);
}

TEST(Maglev, FillsACallerBufferWithTheSchedulersTable) {
  const auto backends = equal_backends(7);
  std::vector<int32_t> buffer(65537, 99);
  BuildError error;
  ASSERT_TRUE(maglev_fill(backends, buffer, &error));
  const auto scheduler = MaglevScheduler::build(backends, {}, &error);
  EXPECT_TRUE(std::equal(buffer.begin(), buffer.end(), scheduler->table().begin()));
  // Any prime size works; others are refused with a reason.
  std::vector<int32_t> small(251);
  EXPECT_TRUE(maglev_fill(backends, small, &error));
  std::vector<int32_t> composite(65536);
  EXPECT_FALSE(maglev_fill(backends, composite, &error));
  EXPECT_EQ(error.code, "ERR_MAGLEV_TABLE_SIZE");
  auto twins = backends;
  twins[3].identity = twins[5].identity;
  EXPECT_FALSE(maglev_fill(twins, buffer, &error));
  EXPECT_EQ(error.code, "ERR_DUPLICATE_BACKEND_IDENTITY");
}

TEST(Maglev, Builds65537SlotsFor1000BackendsQuickly) {
  const auto backends = equal_backends(1000);
  BuildError error;
  const auto start = std::chrono::steady_clock::now();
  const auto scheduler = MaglevScheduler::build(backends, {}, &error);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(scheduler);
  std::printf("maglev M=65537, 1000 backends: built in %.2f ms\n", ms);
  // The target is ~2 ms optimised; this bound leaves room for sanitizers and
  // a loaded machine while still catching an accidental O(M x N).
  EXPECT_LT(ms, 100.0);
  std::vector<size_t> slots(1000, 0);
  for (int32_t index : scheduler->table()) ++slots[index];
  const auto [low, high] = std::minmax_element(slots.begin(), slots.end());
  EXPECT_GE(*low, 65u);  // 65537 / 1000 = 65.5: round robin turns give 65 or 66
  EXPECT_LE(*high, 66u);
}

TEST(TableScheduler, InvalidTablesAreRefusedWithAReason) {
  const auto backends = equal_backends(3);
  BuildError error;
  const std::vector<uint32_t> not_power_of_two = {0, 1, 2};
  EXPECT_FALSE(TableScheduler::build(backends, not_power_of_two, &error));
  EXPECT_EQ(error.code, "ERR_TABLE_LENGTH");
  EXPECT_FALSE(TableScheduler::build(backends, {}, &error));
  EXPECT_EQ(error.code, "ERR_TABLE_LENGTH");
  const std::vector<uint32_t> out_of_range = {0, 1, 2, 3};
  EXPECT_FALSE(TableScheduler::build(backends, out_of_range, &error));
  EXPECT_EQ(error.code, "ERR_TABLE_INDEX");
  EXPECT_NE(error.message.find("entry 3"), std::string::npos) << error.message;

  // The previous scheduler is a separate object: a failed build leaves it in force.
  const std::vector<uint32_t> good = {2, 2, 2, 2};
  auto current = TableScheduler::build(backends, good, &error);
  auto replacement = TableScheduler::build(backends, out_of_range, &error);
  if (replacement) current = std::move(replacement);
  PickState state;
  EXPECT_EQ(current->pick(PickInput{12345, 0}, state), 2);
}

TEST(TableScheduler, FollowsTheTableAndProbesPastUnschedulableEntries) {
  auto backends = equal_backends(4);
  const std::vector<uint32_t> lookup = {0, 1, 2, 3, 3, 2, 1, 0};
  BuildError error;
  const auto all_up = TableScheduler::build(backends, lookup, &error);
  PickState state;
  for (uint64_t entry = 0; entry < lookup.size(); ++entry) {
    const PickInput flow{entry << 32, 0};  // the high half of the hash selects the entry
    EXPECT_EQ(all_up->pick(flow, state), static_cast<int32_t>(lookup[entry]));
  }
  backends[3].usable = false;
  const auto one_down = TableScheduler::build(backends, lookup, &error);
  EXPECT_EQ(one_down->pick(PickInput{uint64_t{3} << 32, 0}, state), 2) << "entry 3 -> 4 (down) -> 5";
  EXPECT_EQ(one_down->pick(PickInput{uint64_t{4} << 32, 0}, state), 2);
  EXPECT_EQ(one_down->pick(PickInput{uint64_t{7} << 32, 0}, state), 0);

  // Every entry down within the probe limit: the fallback still finds a schedulable backend.
  const std::vector<uint32_t> mostly_down(16, 3);
  const auto fallback = TableScheduler::build(backends, mostly_down, &error);
  for (uint64_t h = 0; h < 64; ++h) {
    const int32_t picked = fallback->pick(PickInput{h * 0x9e3779b97f4a7c15ull, 0}, state);
    EXPECT_TRUE(picked >= 0 && picked <= 2) << picked;
  }
}

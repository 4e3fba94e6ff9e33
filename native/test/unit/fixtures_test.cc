// The packet fixtures (exported from the TypeScript table) replayed through
// the C++ engine with the memory port, without Node: every transmitted frame
// byte for byte, every drop counter exactly, the named counters at least.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "core/drop_reason.h"
#include "engine/engine.h"
#include "io/memory_port.h"
#include "fixture_file.h"

using namespace l4lb;

namespace {

std::string hex(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

std::map<std::string, uint64_t> drop_counts(const engine::Engine& e) {
  std::map<std::string, uint64_t> out;
  for (uint32_t w = 0; w < e.options().workers; ++w) {
    for (size_t r = 0; r < static_cast<size_t>(core::DropReason::count); ++r) {
      out[core::kDropReasonNames[r]] += e.worker_counters(w).drops[r].load();
    }
  }
  return out;
}

std::map<std::string, uint64_t> counter_values(const engine::Engine& e) {
  std::map<std::string, uint64_t> out;
  for (uint32_t w = 0; w < e.options().workers; ++w) {
    const core::WorkerCounters& c = e.worker_counters(w);
#define L4LB_READ_COUNTER(field, name) out[name] += c.field.load();
    L4LB_WORKER_COUNTERS(L4LB_READ_COUNTER)
#undef L4LB_READ_COUNTER
  }
  return out;
}

class PacketFixtures : public ::testing::TestWithParam<uint32_t> {};

}  // namespace

TEST_P(PacketFixtures, AllFixturesProduceExactFrames) {
  const auto fixtures = test::read_fixtures(std::string(L4LB_SOURCE_DIR) + "/native/test/fixtures/packets.txt");
  ASSERT_GE(fixtures.size(), 20u);
  for (const test::Fixture& fixture : fixtures) {
    SCOPED_TRACE(fixture.name + ": " + fixture.description);
    engine::EngineOptions options;
    options.workers = GetParam();
    options.flow_slots = 4096;
    for (uint8_t i = 0; i < 16; ++i) options.hash_key[i] = static_cast<uint8_t>(i + 1);  // as the vitest runner
    io::MemoryPortOptions port_options;
    port_options.ring_frames = 64;
    auto memory = std::make_shared<io::MemoryDriver>(fixture.ports, port_options);
    engine::Engine e(options, memory);
    io::PortError port_error;
    ASSERT_TRUE(e.open_ports(&port_error)) << port_error.message;
    std::string error;
    ASSERT_TRUE(e.publish(fixture.snapshot.data(), fixture.snapshot.size(), &error)) << error;
    int step_number = 0;
    for (const test::FixtureStep& step : fixture.steps) {
      SCOPED_TRACE("step " + std::to_string(++step_number));
      if (!step.publish.empty()) {
        ASSERT_TRUE(e.publish(step.publish.data(), step.publish.size(), &error)) << error;
      }
      const auto drops_before = drop_counts(e);
      const auto counters_before = counter_values(e);
      if (step.has_inject) {
        io::MemoryFrameMeta meta;
        meta.flags = step.inject_flags;
        ASSERT_TRUE(memory->inject(step.inject.port, step.inject.bytes.data(), static_cast<uint32_t>(step.inject.bytes.size()),
                                   meta));
      }
      for (int round = 0; round < 2; ++round) e.poll(step.now_ms * 1'000'000ull);
      std::vector<std::pair<uint32_t, std::string>> sent, expected;
      std::vector<uint8_t> storage(memory->max_frame());
      uint8_t* buffer = storage.data();
      for (uint32_t port = 0; port < fixture.ports; ++port) {
        for (uint32_t len = memory->take(port, buffer, static_cast<uint32_t>(storage.size())); len != 0; len = memory->take(port, buffer, static_cast<uint32_t>(storage.size()))) {
          sent.emplace_back(port, hex(buffer, len));
        }
      }
      for (const test::FixtureFrame& f : step.expect) expected.emplace_back(f.port, hex(f.bytes.data(), f.bytes.size()));
      EXPECT_EQ(sent, expected);
      const auto drops_after = drop_counts(e);
      std::map<std::string, uint64_t> drops_expected(step.drops.begin(), step.drops.end());
      for (const auto& [name, after] : drops_after) {
        const uint64_t want = drops_expected.count(name) ? drops_expected[name] : 0;
        EXPECT_EQ(after - drops_before.at(name), want) << "drop " << name;
      }
      const auto counters_after = counter_values(e);
      for (const auto& [name, minimum] : step.counters) {
        ASSERT_TRUE(counters_after.count(name)) << "unknown counter " << name;
        EXPECT_GE(counters_after.at(name) - counters_before.at(name), minimum) << "counter " << name;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, PacketFixtures, ::testing::Values(1u, 2u));

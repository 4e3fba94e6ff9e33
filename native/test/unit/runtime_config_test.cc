#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/runtime_config.h"
#include "snapshot_builder.h"

using namespace l4lb;
using namespace l4lb::test;

namespace {

SnapshotSpec rr_spec(uint64_t generation) {
  SnapshotSpec spec;
  spec.generation = generation;
  shm::SnapshotPort port{};
  port.mtu = 1500;
  spec.ports = {port};
  ServiceSpec service;
  service.service.address = 0xc6120064;
  service.service.port = 80;
  service.service.protocol = static_cast<uint8_t>(shm::Protocol::tcp);
  service.service.method = static_cast<uint8_t>(shm::Method::nat);
  service.service.scheduler = static_cast<uint8_t>(shm::SchedulerKind::rr);
  service.service.id = 7;
  for (uint32_t i = 0; i < 3; ++i) {
    shm::SnapshotBackend backend{};
    backend.address = 0xc6120102 + i;
    backend.port = 8080;
    backend.weight = 1;
    backend.id = i + 1;
    backend.flags = shm::kBackendUp;
    service.backends.push_back(backend);
  }
  spec.services = {service};
  return spec;
}

std::unique_ptr<core::RuntimeConfig> build(uint64_t generation, const core::RuntimeConfig* previous) {
  SnapshotBytes bytes = build_snapshot(rr_spec(generation));
  core::RuntimeConfigOptions options;
  options.workers = 1;
  options.backend_slots = 16;
  std::string error;
  auto config = core::RuntimeConfig::build(bytes.data(), bytes.size(), options, previous, &error);
  EXPECT_NE(config, nullptr) << error;
  return config;
}

}  // namespace

// Republishing (health, slow start, next hops) must not restart every rr
// rotation at the first backend: a worker carries its position over to the
// new configuration for services that keep their id.
TEST(RuntimeConfig, RoundRobinPositionSurvivesRepublishing) {
  auto first = build(1, nullptr);
  std::vector<uint32_t> picks;
  picks.push_back(first->pick(0, 11, 1, 0));
  auto second = build(2, first.get());
  second->inherit_pick_states(*first, 0);
  picks.push_back(second->pick(0, 12, 1, 0));
  auto third = build(3, second.get());
  third->inherit_pick_states(*second, 0);
  picks.push_back(third->pick(0, 13, 1, 0));
  std::sort(picks.begin(), picks.end());
  EXPECT_EQ(picks, (std::vector<uint32_t>{0, 1, 2}));
}

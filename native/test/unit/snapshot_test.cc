#include <gtest/gtest.h>

#include <cstring>

#include "core/snapshot.h"
#include "snapshot_builder.h"

using namespace l4lb;
using namespace l4lb::test;

namespace {

shm::SnapshotPort port(uint8_t last) {
  shm::SnapshotPort p{};
  const uint8_t mac[6] = {0x02, 0, 0, 0, 0, last};
  std::memcpy(p.mac, mac, 6);
  p.mtu = 1500;
  p.address = 0xc6120000u | last;
  p.prefix_length = 24;
  return p;
}

ServiceSpec service(uint32_t vip, uint16_t port_number, shm::Method method = shm::Method::nat) {
  ServiceSpec s;
  s.service.address = vip;
  s.service.port = port_number;
  s.service.protocol = static_cast<uint8_t>(shm::Protocol::tcp);
  s.service.method = static_cast<uint8_t>(method);
  s.service.scheduler = static_cast<uint8_t>(shm::SchedulerKind::rr);
  shm::SnapshotBackend b{};
  b.address = 0xc6120102;
  b.port = 8080;
  b.weight = 1;
  b.id = 7;
  b.flags = shm::kBackendUp;
  s.backends.push_back(b);
  return s;
}

SnapshotSpec basic() {
  SnapshotSpec spec;
  spec.ports = {port(1), port(2)};
  spec.services = {service(0xc6120064, 80), service(0xc6120064, 53), service(0xc6120065, 80)};
  shm::SnapshotRoute r{};
  r.prefix = 0;
  r.prefix_length = 0;
  r.egress_port = 0;
  shm::SnapshotRoute r24{};
  r24.prefix = 0xc6120100;
  r24.prefix_length = 24;
  r24.egress_port = 1;
  spec.routes = {r, r24};
  return spec;
}

const char* open_error(const SnapshotBytes& bytes) {
  core::SnapshotView view;
  const char* error = nullptr;
  return core::open_snapshot(bytes.data(), bytes.size(), &view, &error) ? nullptr : error;
}

}  // namespace

TEST(Snapshot, OpensAValidSnapshotAndFindsServices) {
  SnapshotBytes bytes = build_snapshot(basic());
  core::SnapshotView view;
  const char* error = nullptr;
  ASSERT_TRUE(core::open_snapshot(bytes.data(), bytes.size(), &view, &error)) << error;
  EXPECT_EQ(view.services.size(), 3u);
  ASSERT_NE(view.find_service(0xc6120064, 53, 6), nullptr);
  EXPECT_EQ(view.find_service(0xc6120064, 53, 6)->port, 53);
  EXPECT_EQ(view.find_service(0xc6120064, 53, 17), nullptr);
  EXPECT_EQ(view.find_service(0xc6120066, 80, 6), nullptr);
  EXPECT_TRUE(view.is_vip(0xc6120065));
  EXPECT_FALSE(view.is_vip(0xc6120066));
  EXPECT_EQ(view.route_to(0xc6120105)->egress_port, 1);
  EXPECT_EQ(view.route_to(0x08080808)->egress_port, 0);
}

// Every rule open_snapshot enforces, broken one at a time: the snapshot is
// refused with a message naming the rule.
TEST(Snapshot, RefusesBrokenSnapshots) {
  struct Case {
    const char* description;
    void (*corrupt)(uint8_t* bytes, size_t size);
    const char* error;
  };
  const Case cases[] = {
      {"magic", [](uint8_t* b, size_t) { b[0] ^= 1; }, "snapshot magic number is wrong"},
      {"version", [](uint8_t* b, size_t) { reinterpret_cast<shm::SnapshotHeader*>(b)->layout_version = 99; },
       "snapshot layout version is not supported"},
      {"total size", [](uint8_t* b, size_t s) { reinterpret_cast<shm::SnapshotHeader*>(b)->total_size = static_cast<uint32_t>(s + 8); },
       "snapshot total size exceeds the buffer"},
      {"huge service count", [](uint8_t* b, size_t) { reinterpret_cast<shm::SnapshotHeader*>(b)->service_count = 0xffffffffu; },
       "snapshot service array out of bounds"},
      {"misaligned backends", [](uint8_t* b, size_t) { reinterpret_cast<shm::SnapshotHeader*>(b)->backend_offset += 2; },
       "snapshot backend array out of bounds"},
      {"unsorted services",
       [](uint8_t* b, size_t) {
         auto* h = reinterpret_cast<shm::SnapshotHeader*>(b);
         auto* services = reinterpret_cast<shm::SnapshotService*>(b + h->service_offset);
         std::swap(services[0], services[1]);
       },
       "snapshot services are not sorted and unique"},
      {"backend range",
       [](uint8_t* b, size_t) {
         auto* h = reinterpret_cast<shm::SnapshotHeader*>(b);
         reinterpret_cast<shm::SnapshotService*>(b + h->service_offset)[0].backend_count = 100;
       },
       "snapshot service backend range out of bounds"},
      {"unknown method",
       [](uint8_t* b, size_t) {
         auto* h = reinterpret_cast<shm::SnapshotHeader*>(b);
         reinterpret_cast<shm::SnapshotService*>(b + h->service_offset)[0].method = 9;
       },
       "snapshot service method is unknown"},
      {"egress port",
       [](uint8_t* b, size_t) {
         auto* h = reinterpret_cast<shm::SnapshotHeader*>(b);
         reinterpret_cast<shm::SnapshotBackend*>(b + h->backend_offset)[0].egress_port = 2;
       },
       "snapshot backend egress port out of range"},
      {"route order",
       [](uint8_t* b, size_t) {
         auto* h = reinterpret_cast<shm::SnapshotHeader*>(b);
         auto* routes = reinterpret_cast<shm::SnapshotRoute*>(b + h->route_offset);
         std::swap(routes[0], routes[1]);
       },
       "snapshot routes are not sorted longest prefix first"},
      {"table scheduler without table",
       [](uint8_t* b, size_t) {
         auto* h = reinterpret_cast<shm::SnapshotHeader*>(b);
         reinterpret_cast<shm::SnapshotService*>(b + h->service_offset)[0].scheduler =
             static_cast<uint8_t>(shm::SchedulerKind::table);
       },
       "snapshot service with scheduler 'table' has no table"},
  };
  for (const Case& c : cases) {
    SnapshotBytes bytes = build_snapshot(basic());
    c.corrupt(bytes.data(), bytes.size());
    const char* error = open_error(bytes);
    ASSERT_NE(error, nullptr) << c.description;
    EXPECT_STREQ(error, c.error) << c.description;
  }
}

TEST(Snapshot, ValidatesSchedulerTables) {
  SnapshotSpec spec = basic();
  spec.services[0].service.scheduler = static_cast<uint8_t>(shm::SchedulerKind::table);
  spec.services[0].table = {0, 0, 0};
  EXPECT_STREQ(open_error(build_snapshot(spec)), "snapshot service table size is not a power of two");
  spec.services[0].table = {0, 1, 0, 0};
  EXPECT_STREQ(open_error(build_snapshot(spec)), "snapshot service table entry out of range");
  spec.services[0].table = {0, 0, 0, 0};
  EXPECT_EQ(open_error(build_snapshot(spec)), nullptr);
}

TEST(Snapshot, FullnatNeedsLocalAddresses) {
  SnapshotSpec spec = basic();
  spec.services[0].service.method = static_cast<uint8_t>(shm::Method::fullnat);
  EXPECT_STREQ(open_error(build_snapshot(spec)), "snapshot fullnat service without local addresses");
  spec.local_addresses = {0xc6120201};
  EXPECT_EQ(open_error(build_snapshot(spec)), nullptr);
}

TEST(Snapshot, TruncatedBuffersNeverReadPastTheEnd) {
  SnapshotBytes full = build_snapshot(basic());
  for (size_t size = 0; size < full.size(); size += 4) {
    SnapshotBytes cut(size);
    copy_bytes(cut.data(), full.data(), size);
    EXPECT_NE(open_error(cut), nullptr) << size;
  }
}

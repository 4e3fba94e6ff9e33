// Builds configuration snapshots for C++ tests, straight from the structs in
// shm/layout.h (TypeScript compiles the same layout in lib/config/snapshot.ts
// from the offsets the addon exports).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/snapshot.h"
#include "shm/layout.h"

namespace l4lb::test {

struct ServiceSpec {
  shm::SnapshotService service{};
  std::vector<shm::SnapshotBackend> backends;
  std::vector<uint32_t> table;  // scheduler 'table' only
};

struct SnapshotSpec {
  uint32_t flags = shm::kSnapshotAnswerEcho;
  uint64_t generation = 1;
  uint16_t fullnat_port_min = 1024;
  uint16_t fullnat_port_max = 65535;
  uint16_t tunnel_ttl = 64;
  uint16_t icmp_rate_per_sec = 100;
  std::vector<shm::SnapshotPort> ports;
  std::vector<ServiceSpec> services;
  std::vector<shm::SnapshotRoute> routes;
  std::vector<uint32_t> local_addresses;
};

// 8-byte aligned snapshot bytes.
class SnapshotBytes {
 public:
  explicit SnapshotBytes(size_t size) : words_((size + 7) / 8, 0), size_(size) {}
  uint8_t* data() { return reinterpret_cast<uint8_t*>(words_.data()); }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(words_.data()); }
  size_t size() const { return size_; }

 private:
  std::vector<uint64_t> words_;
  size_t size_;
};

inline size_t align8(size_t v) { return (v + 7) & ~size_t{7}; }

// memcpy that accepts an empty source (whose data() may be null).
inline void copy_bytes(uint8_t* to, const void* from, size_t size) {
  if (size != 0) std::memcpy(to, from, size);
}

inline SnapshotBytes build_snapshot(SnapshotSpec spec) {
  std::sort(spec.services.begin(), spec.services.end(), [](const ServiceSpec& a, const ServiceSpec& b) {
    return core::service_key(a.service.address, a.service.port, a.service.protocol) <
           core::service_key(b.service.address, b.service.port, b.service.protocol);
  });
  std::sort(spec.routes.begin(), spec.routes.end(),
            [](const shm::SnapshotRoute& a, const shm::SnapshotRoute& b) { return a.prefix_length > b.prefix_length; });
  size_t backend_count = 0, table_words = 0;
  for (const auto& s : spec.services) {
    backend_count += s.backends.size();
    table_words += s.table.size();
  }
  shm::SnapshotHeader h{};
  size_t offset = align8(sizeof(h));
  h.port_offset = static_cast<uint32_t>(offset);
  offset = align8(offset + spec.ports.size() * sizeof(shm::SnapshotPort));
  h.service_offset = static_cast<uint32_t>(offset);
  offset = align8(offset + spec.services.size() * sizeof(shm::SnapshotService));
  h.backend_offset = static_cast<uint32_t>(offset);
  offset = align8(offset + backend_count * sizeof(shm::SnapshotBackend));
  h.route_offset = static_cast<uint32_t>(offset);
  offset = align8(offset + spec.routes.size() * sizeof(shm::SnapshotRoute));
  h.local_address_offset = static_cast<uint32_t>(offset);
  offset = align8(offset + spec.local_addresses.size() * 4);
  h.table_offset = static_cast<uint32_t>(offset);
  offset = align8(offset + table_words * 4);

  h.magic = shm::kSnapshotMagic;
  h.layout_version = shm::kSnapshotLayoutVersion;
  h.header_size = sizeof(h);
  h.total_size = static_cast<uint32_t>(offset);
  h.flags = spec.flags;
  h.generation = spec.generation;
  h.port_count = static_cast<uint32_t>(spec.ports.size());
  h.service_count = static_cast<uint32_t>(spec.services.size());
  h.backend_count = static_cast<uint32_t>(backend_count);
  h.route_count = static_cast<uint32_t>(spec.routes.size());
  h.local_address_count = static_cast<uint32_t>(spec.local_addresses.size());
  h.table_word_count = static_cast<uint32_t>(table_words);
  h.fullnat_port_min = spec.fullnat_port_min;
  h.fullnat_port_max = spec.fullnat_port_max;
  h.tunnel_ttl = spec.tunnel_ttl;
  h.icmp_rate_per_sec = spec.icmp_rate_per_sec;

  SnapshotBytes bytes(offset);
  uint8_t* p = bytes.data();
  copy_bytes(p, &h, sizeof(h));
  copy_bytes(p + h.port_offset, spec.ports.data(), spec.ports.size() * sizeof(shm::SnapshotPort));
  uint32_t backend_index = 0, table_index = 0;
  for (size_t i = 0; i < spec.services.size(); ++i) {
    ServiceSpec& s = spec.services[i];
    s.service.backend_first = backend_index;
    s.service.backend_count = static_cast<uint32_t>(s.backends.size());
    s.service.table_first = s.table.empty() ? shm::kNone : table_index;
    s.service.table_size = static_cast<uint32_t>(s.table.size());
    copy_bytes(p + h.service_offset + i * sizeof(shm::SnapshotService), &s.service, sizeof(s.service));
    copy_bytes(p + h.backend_offset + backend_index * sizeof(shm::SnapshotBackend), s.backends.data(),
                s.backends.size() * sizeof(shm::SnapshotBackend));
    backend_index += static_cast<uint32_t>(s.backends.size());
    copy_bytes(p + h.table_offset + table_index * 4, s.table.data(), s.table.size() * 4);
    table_index += static_cast<uint32_t>(s.table.size());
  }
  copy_bytes(p + h.route_offset, spec.routes.data(), spec.routes.size() * sizeof(shm::SnapshotRoute));
  copy_bytes(p + h.local_address_offset, spec.local_addresses.data(), spec.local_addresses.size() * 4);
  return bytes;
}

}  // namespace l4lb::test

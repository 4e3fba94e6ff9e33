// A validated, read-only view of a configuration snapshot (shm/layout.h).
//
// Snapshot bytes come from TypeScript through shared memory: untrusted input.
// open_snapshot() checks every count, offset, size and cross-reference once,
// when the snapshot is adopted (off the packet path), so the packet path can
// index the arrays without further checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "shm/layout.h"

namespace l4lb::core {

struct SnapshotView {
  const shm::SnapshotHeader* header = nullptr;
  std::span<const shm::SnapshotPort> ports;
  std::span<const shm::SnapshotService> services;
  std::span<const shm::SnapshotBackend> backends;
  std::span<const shm::SnapshotRoute> routes;
  std::span<const uint32_t> local_addresses;
  std::span<const uint32_t> tables;

  // The service for (address, port, protocol), or nullptr. Services are
  // sorted by that key (checked by open_snapshot), so this is a binary search.
  const shm::SnapshotService* find_service(uint32_t address, uint16_t port, uint8_t protocol) const;

  // True when `address` is the VIP of at least one service (for ARP and ICMP).
  bool is_vip(uint32_t address) const;

  std::span<const shm::SnapshotBackend> backends_of(const shm::SnapshotService& service) const {
    return backends.subspan(service.backend_first, service.backend_count);
  }

  // Longest-prefix match over the routes (sorted longest first), or nullptr.
  const shm::SnapshotRoute* route_to(uint32_t address) const;

  // True when `address` is a port's own address (the tunnel endpoint real
  // servers return replies to).
  bool is_port_address(uint32_t address) const {
    for (const shm::SnapshotPort& port : ports) {
      if (port.address != 0 && port.address == address) return true;
    }
    return false;
  }

  // True when `address` is one of the fullnat local addresses.
  bool is_local_address(uint32_t address) const;
};

// Validates `size` bytes at `bytes` (8-byte aligned) and fills *out. On
// failure returns false and sets *error to a static string naming the rule
// broken; *out is left untouched.
bool open_snapshot(const uint8_t* bytes, size_t size, SnapshotView* out, const char** error);

// The sort key of services: (address, port, protocol).
inline uint64_t service_key(uint32_t address, uint16_t port, uint8_t protocol) {
  return (static_cast<uint64_t>(address) << 32) | (static_cast<uint64_t>(port) << 8) | protocol;
}

}  // namespace l4lb::core

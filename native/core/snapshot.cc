#include "core/snapshot.h"

#include <algorithm>

namespace l4lb::core {

using namespace l4lb::shm;

namespace {

// Checks that `count` elements of `element_size` bytes at `offset` lie inside
// the snapshot and are aligned for their type. 64-bit arithmetic: a hostile
// count cannot wrap.
bool array_fits(uint32_t offset, uint32_t count, size_t element_size, size_t alignment, size_t total) {
  const uint64_t end = static_cast<uint64_t>(offset) + static_cast<uint64_t>(count) * element_size;
  return end <= total && offset % alignment == 0;
}

template <typename T>
std::span<const T> array_at(const uint8_t* bytes, uint32_t offset, uint32_t count) {
  return {reinterpret_cast<const T*>(bytes + offset), count};
}

bool valid_method(uint8_t method) { return method <= static_cast<uint8_t>(Method::gre); }
bool valid_scheduler(uint8_t scheduler) { return scheduler <= static_cast<uint8_t>(SchedulerKind::table); }
bool valid_protocol(uint8_t protocol) {
  return protocol == static_cast<uint8_t>(Protocol::tcp) || protocol == static_cast<uint8_t>(Protocol::udp);
}

}  // namespace

bool open_snapshot(const uint8_t* bytes, size_t size, SnapshotView* out, const char** error) {
  auto fail = [error](const char* why) {
    *error = why;
    return false;
  };
  if (bytes == nullptr || reinterpret_cast<uintptr_t>(bytes) % alignof(SnapshotHeader) != 0) {
    return fail("snapshot buffer is not 8-byte aligned");
  }
  if (size < sizeof(SnapshotHeader)) return fail("snapshot shorter than its header");
  const auto* header = reinterpret_cast<const SnapshotHeader*>(bytes);
  if (header->magic != kSnapshotMagic) return fail("snapshot magic number is wrong");
  if (header->layout_version != kSnapshotLayoutVersion) return fail("snapshot layout version is not supported");
  if (header->header_size != sizeof(SnapshotHeader)) return fail("snapshot header size does not match");
  if (header->total_size > size) return fail("snapshot total size exceeds the buffer");
  const size_t total = header->total_size;

  if (!array_fits(header->port_offset, header->port_count, sizeof(SnapshotPort), alignof(SnapshotPort), total))
    return fail("snapshot port array out of bounds");
  if (!array_fits(header->service_offset, header->service_count, sizeof(SnapshotService), alignof(SnapshotService), total))
    return fail("snapshot service array out of bounds");
  if (!array_fits(header->backend_offset, header->backend_count, sizeof(SnapshotBackend), alignof(SnapshotBackend), total))
    return fail("snapshot backend array out of bounds");
  if (!array_fits(header->route_offset, header->route_count, sizeof(SnapshotRoute), alignof(SnapshotRoute), total))
    return fail("snapshot route array out of bounds");
  if (!array_fits(header->local_address_offset, header->local_address_count, sizeof(uint32_t), alignof(uint32_t), total))
    return fail("snapshot local address array out of bounds");
  if (!array_fits(header->table_offset, header->table_word_count, sizeof(uint32_t), alignof(uint32_t), total))
    return fail("snapshot table array out of bounds");
  if (header->port_count == 0 || header->port_count > 0xffff) return fail("snapshot needs 1..65535 ports");
  if (header->fullnat_port_min > header->fullnat_port_max) return fail("snapshot fullnat port range is empty");

  SnapshotView view;
  view.header = header;
  view.ports = array_at<SnapshotPort>(bytes, header->port_offset, header->port_count);
  view.services = array_at<SnapshotService>(bytes, header->service_offset, header->service_count);
  view.backends = array_at<SnapshotBackend>(bytes, header->backend_offset, header->backend_count);
  view.routes = array_at<SnapshotRoute>(bytes, header->route_offset, header->route_count);
  view.local_addresses = array_at<uint32_t>(bytes, header->local_address_offset, header->local_address_count);
  view.tables = array_at<uint32_t>(bytes, header->table_offset, header->table_word_count);

  uint64_t previous_key = 0;
  bool first = true;
  for (const SnapshotService& service : view.services) {
    if (!valid_protocol(service.protocol)) return fail("snapshot service protocol is not tcp or udp");
    if (!valid_method(service.method)) return fail("snapshot service method is unknown");
    if (!valid_scheduler(service.scheduler)) return fail("snapshot service scheduler is unknown");
    const uint64_t key = service_key(service.address, service.port, service.protocol);
    if (!first && key <= previous_key) return fail("snapshot services are not sorted and unique");
    previous_key = key;
    first = false;
    if (static_cast<uint64_t>(service.backend_first) + service.backend_count > view.backends.size())
      return fail("snapshot service backend range out of bounds");
    if (service.table_first != kNone) {
      if (static_cast<uint64_t>(service.table_first) + service.table_size > view.tables.size())
        return fail("snapshot service table out of bounds");
      if (service.table_size == 0 || (service.table_size & (service.table_size - 1)) != 0)
        return fail("snapshot service table size is not a power of two");
      for (uint32_t entry : view.tables.subspan(service.table_first, service.table_size)) {
        if (entry >= service.backend_count) return fail("snapshot service table entry out of range");
      }
    } else if (service.scheduler == static_cast<uint8_t>(SchedulerKind::table)) {
      return fail("snapshot service with scheduler 'table' has no table");
    }
    if (service.method == static_cast<uint8_t>(Method::fullnat) && view.local_addresses.empty())
      return fail("snapshot fullnat service without local addresses");
  }
  for (const SnapshotBackend& backend : view.backends) {
    if (backend.egress_port >= view.ports.size()) return fail("snapshot backend egress port out of range");
  }
  uint8_t previous_length = 32;
  for (const SnapshotRoute& route : view.routes) {
    if (route.prefix_length > 32) return fail("snapshot route prefix length above 32");
    if (route.prefix_length > previous_length) return fail("snapshot routes are not sorted longest prefix first");
    previous_length = route.prefix_length;
    if (route.egress_port >= view.ports.size()) return fail("snapshot route egress port out of range");
  }
  for (const SnapshotPort& port : view.ports) {
    if (port.prefix_length > 32) return fail("snapshot port prefix length above 32");
    if (port.mtu < 576) return fail("snapshot port MTU below 576");
  }
  *out = view;
  return true;
}

const SnapshotService* SnapshotView::find_service(uint32_t address, uint16_t port, uint8_t protocol) const {
  const uint64_t key = service_key(address, port, protocol);
  auto it = std::lower_bound(services.begin(), services.end(), key, [](const SnapshotService& s, uint64_t k) {
    return service_key(s.address, s.port, s.protocol) < k;
  });
  if (it == services.end() || service_key(it->address, it->port, it->protocol) != key) return nullptr;
  return &*it;
}

bool SnapshotView::is_vip(uint32_t address) const {
  // Services sort by address first: the first service at or after (address, 0, 0).
  auto it = std::lower_bound(services.begin(), services.end(), address,
                             [](const SnapshotService& s, uint32_t a) { return s.address < a; });
  return it != services.end() && it->address == address;
}

const SnapshotRoute* SnapshotView::route_to(uint32_t address) const {
  for (const SnapshotRoute& route : routes) {
    const uint32_t mask = route.prefix_length == 0 ? 0 : ~0u << (32 - route.prefix_length);
    if ((address & mask) == (route.prefix & mask)) return &route;
  }
  return nullptr;
}

bool SnapshotView::is_local_address(uint32_t address) const {
  return std::find(local_addresses.begin(), local_addresses.end(), address) != local_addresses.end();
}

}  // namespace l4lb::core

#include "io/xdp_selection.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>

#include <algorithm>

#include "core/snapshot.h"
#include "shm/layout.h"

namespace l4lb::io {

bool XdpSelection::apply(const core::SnapshotView& view) {
  std::unordered_map<uint32_t, uint32_t> addresses;
  std::vector<l4lb_service_key> services;
  auto mark = [&](uint32_t host_order, uint32_t bits) {
    if (host_order != 0) addresses[htonl(host_order)] |= bits;
  };
  bool tunnels = false;
  for (const shm::SnapshotService& service : view.services) {
    mark(service.address, L4LB_ADDRESS_VIP);
    services.push_back({htonl(service.address), htons(service.port), service.protocol, 0});
    const auto method = static_cast<shm::Method>(service.method);
    if (method == shm::Method::nat || method == shm::Method::fullnat) {
      for (const shm::SnapshotBackend& backend : view.backends_of(service)) mark(backend.address, L4LB_ADDRESS_BACKEND);
    }
    if (method == shm::Method::ipip || method == shm::Method::gre) tunnels = true;
  }
  for (uint32_t local : view.local_addresses) mark(local, L4LB_ADDRESS_LOCAL);
  for (const shm::SnapshotPort& port : view.ports) mark(port.address, L4LB_ADDRESS_HOST | (tunnels ? L4LB_ADDRESS_TUNNEL_END : 0));

  bool failed = false;
  for (const auto& [address, bits] : addresses) {
    auto known = addresses_.find(address);
    if (known != addresses_.end() && known->second == bits) continue;
    if (bpf_map_update_elem(addresses_map_, &address, &bits, BPF_ANY) != 0) failed = true;
  }
  for (const auto& [address, bits] : addresses_) {
    if (addresses.count(address) == 0) bpf_map_delete_elem(addresses_map_, &address);
  }
  const uint32_t one = 1;
  for (const l4lb_service_key& key : services) {
    if (services_map_ < 0) break;
    if (bpf_map_update_elem(services_map_, &key, &one, BPF_ANY) != 0) failed = true;
  }
  for (const l4lb_service_key& key : services_) {
    if (services_map_ < 0) break;
    const bool kept = std::any_of(services.begin(), services.end(), [&](const l4lb_service_key& k) {
      return k.address == key.address && k.port == key.port && k.protocol == key.protocol;
    });
    if (!kept) bpf_map_delete_elem(services_map_, &key);
  }
  const uint32_t zero = 0;
  l4lb_settings settings{};
  if (bpf_map_lookup_elem(settings_map_, &zero, &settings) == 0) {
    settings.fullnat_port_min = view.header->fullnat_port_min;
    settings.fullnat_port_max = view.header->fullnat_port_max;
    if (bpf_map_update_elem(settings_map_, &zero, &settings, BPF_ANY) != 0) failed = true;
  }
  addresses_ = std::move(addresses);
  services_ = std::move(services);
  return !failed;
}

}  // namespace l4lb::io

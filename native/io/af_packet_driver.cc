#include "io/af_packet_driver.h"

#include <algorithm>

#include "core/snapshot.h"
#include "io/bpf_filter.h"

namespace l4lb::io {

bool AfPacketDriver::open(uint32_t workers, PortError* error) {
  if (!ports_.empty()) return true;
  if (options_.interfaces.empty()) {
    error->code = "EPORT_OPTIONS";
    error->message = "the af_packet driver needs at least one interface";
    return false;
  }
  // Nothing is the balancer's before the first configuration: a program that
  // accepts nothing keeps the rings empty until configure().
  BpfFilterSpec nothing_yet;
  nothing_yet.accept_arp = false;
  const BpfFilter initial = build_bpf_filter(nothing_yet);
  const uint32_t interfaces = port_count();
  std::vector<std::vector<std::unique_ptr<AfPacketPort>>> ports(workers);
  std::vector<int32_t> groups(interfaces, kFanoutNewGroup);
  for (uint32_t w = 0; w < workers; ++w) {
    for (uint32_t p = 0; p < interfaces; ++p) {
      AfPacketOptions port_options;
      port_options.interface = options_.interfaces[p];
      port_options.rx_frame_count = options_.rx_frame_count;
      port_options.tx_method = options_.tx_method;
      port_options.filter = initial.instructions;
      // One fanout group per interface when several workers share it: the
      // first worker's socket creates it, the others join its id.
      port_options.fanout_group = workers > 1 ? groups[p] : kNoFanout;
      if (w < options_.worker_cpus.size()) port_options.cpu = options_.worker_cpus[w];
      auto port = AfPacketPort::create(port_options, error);
      if (!port) return false;  // the ports created so far close with `ports`
      if (w == 0 && workers > 1) groups[p] = port->fanout_group();
      ports[w].push_back(std::move(port));
    }
  }
  ports_ = std::move(ports);
  return true;
}

// The kernel queues only what this configuration makes the balancer's: ARP,
// traffic to VIPs, fullnat local addresses and the ports' own addresses
// (tunnel returns), replies from nat/fullnat backends and from VIPs (dr
// replies routed through the balancer), and ICMP (errors about flows).
void AfPacketDriver::configure(const core::SnapshotView& view) {
  BpfFilterSpec spec;
  spec.accept_arp = true;
  spec.accept_any_icmp = true;
  for (const shm::SnapshotService& service : view.services) {
    spec.destinations.push_back(service.address);
    spec.sources.push_back(service.address);
    if (service.method == static_cast<uint8_t>(shm::Method::nat) || service.method == static_cast<uint8_t>(shm::Method::fullnat)) {
      for (const shm::SnapshotBackend& backend : view.backends_of(service)) spec.sources.push_back(backend.address);
    }
  }
  for (uint32_t local : view.local_addresses) spec.destinations.push_back(local);
  for (const shm::SnapshotPort& port : view.ports) {
    if (port.address != 0) spec.destinations.push_back(port.address);
  }
  for (auto* list : {&spec.destinations, &spec.sources}) {
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
  }
  const BpfFilter filter = build_bpf_filter(spec);
  for (auto& worker_ports : ports_) {
    for (auto& port : worker_ports) {
      PortError error;
      // A socket that keeps its previous filter still works, with a stale
      // address set: counted for the control plane to report.
      if (!port->replace_filter(filter.instructions, &error)) filter_errors_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

std::vector<PortCounters> AfPacketDriver::port_counters() const {
  std::vector<PortCounters> sums(ports_.empty() ? 0 : port_count());
  for (const auto& worker_ports : ports_) {
    for (size_t p = 0; p < worker_ports.size(); ++p) {
      sums[p] += worker_ports[p]->counters();
    }
  }
  return sums;
}

std::vector<InterfaceReport> AfPacketDriver::interfaces() const {
  std::vector<InterfaceReport> reports;
  for (const std::string& name : options_.interfaces) reports.push_back({name, "tpacket_v2"});
  return reports;
}

}  // namespace l4lb::io

#include "io/xdp_selection.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/snapshot.h"
#include "io/af_xdp_errors.h"
#include "shm/layout.h"

namespace l4lb::io {

// The process's start time in clock ticks after boot (/proc/PID/stat field
// 22): with the pid it names a process, not a reused pid. 0 when unreadable.
uint64_t process_start_time(uint32_t pid) {
  std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  const size_t end_of_name = text.rfind(')');
  if (end_of_name == std::string::npos) return 0;
  std::istringstream fields(text.substr(end_of_name + 2));
  std::string field;
  // Field 3 (state) is the first after the name; 22 is the 20th from there.
  for (int i = 3; i <= 22; ++i) {
    if (!(fields >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}


bool remove_stale_program(const std::string& interface_name, int ifindex, PortError* error) {
  {
    bpf_xdp_query_opts query{};
    query.sz = sizeof(query);
    if (bpf_xdp_query(ifindex, 0, &query) != 0) return true;  // old kernel: attach will tell
    const struct {
      uint32_t id;
      uint32_t flags;
    } attached[] = {{query.drv_prog_id, XDP_FLAGS_DRV_MODE}, {query.skb_prog_id, XDP_FLAGS_SKB_MODE}, {query.hw_prog_id, XDP_FLAGS_HW_MODE}};
    for (const auto& [id, flags] : attached) {
      if (id == 0) continue;
      const int fd = bpf_prog_get_fd_by_id(id);
      if (fd < 0) {
        if (errno == EPERM || errno == EACCES) {
          return xdp_socket_fail(error, "inspecting the XDP program on " + interface_name, errno);
        }
        continue;  // gone meanwhile
      }
      uint32_t map_ids[16] = {};
      bpf_prog_info info{};
      info.nr_map_ids = 16;
      info.map_ids = reinterpret_cast<uint64_t>(map_ids);
      uint32_t length = sizeof(info);
      const bool ours = bpf_obj_get_info_by_fd(fd, &info, &length) == 0 && std::strcmp(info.name, L4LB_XDP_PROGRAM_NAME) == 0;
      uint32_t owner = 0;
      uint64_t owner_start = 0;
      for (uint32_t m = 0; ours && m < std::min<uint32_t>(info.nr_map_ids, 16); ++m) {
        const int map = bpf_map_get_fd_by_id(map_ids[m]);
        if (map < 0) continue;
        bpf_map_info map_info{};
        uint32_t map_length = sizeof(map_info);
        if (bpf_obj_get_info_by_fd(map, &map_info, &map_length) == 0 && std::strcmp(map_info.name, L4LB_XDP_MAP_SETTINGS) == 0) {
          l4lb_settings settings{};
          const uint32_t zero = 0;
          if (bpf_map_lookup_elem(map, &zero, &settings) == 0) {
            owner = settings.owner_pid;
            owner_start = settings.owner_start_time;
          }
        }
        close(map);
      }
      const bool owner_alive = owner != 0 && process_start_time(owner) == owner_start;
      if (!ours || owner_alive) {
        close(fd);
        const std::string whose = ours ? "l4lb process " + std::to_string(owner) + " serves it"
                                       : std::string("program id ") + std::to_string(id) + " \"" + info.name + "\" is attached";
        return xdp_fail(error, "EXDP_BUSY",
                        interface_name + " already has an XDP program (" + whose + "): stop that process, or remove the program (ip link set dev " +
                            interface_name + (flags == XDP_FLAGS_SKB_MODE ? " xdpgeneric off)" : " xdp off)"),
                        0);
      }
      bpf_xdp_attach_opts opts{};
      opts.sz = sizeof(opts);
      opts.old_prog_fd = fd;
      const int removed = bpf_xdp_detach(ifindex, flags | XDP_FLAGS_REPLACE, &opts);
      const int saved = errno;
      close(fd);
      if (removed != 0 && saved != EEXIST) {
        return xdp_socket_fail(error, "removing the XDP program of dead l4lb process " + std::to_string(owner) + " from " + interface_name, -removed);
      }
    }
  }
  return true;
}


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

bool XdpSelection::claim() {
  l4lb_settings settings{};
  const uint32_t zero = 0;
  bpf_map_lookup_elem(settings_map_, &zero, &settings);
  settings.owner_pid = static_cast<uint32_t>(getpid());
  settings.owner_start_time = process_start_time(settings.owner_pid);
  return bpf_map_update_elem(settings_map_, &zero, &settings, BPF_ANY) == 0;
}

}  // namespace l4lb::io

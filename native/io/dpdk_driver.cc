#include "io/dpdk_driver.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "core/snapshot.h"
#include "io/dpdk_eal.h"

// The XDP program for net_af_xdp, embedded by the build (tools/build-xdp-object.mjs).
extern "C" const unsigned char l4lb_dpdk_xdp_object[];
extern "C" const unsigned long l4lb_dpdk_xdp_object_size;

namespace l4lb::io {

namespace {

constexpr uint32_t kMaxQueues = L4LB_XDP_MAX_QUEUES;
// A queue a dead process held: up to a second for the kernel to release it.
constexpr int kBusyQueueAttempts = 20;
constexpr useconds_t kBusyQueueRetryUs = 50'000;

bool fail(PortError* error, const char* code, const std::string& message, int error_number = 0) {
  error->code = code;
  error->error_number = error_number;
  error->message = message;
  if (error_number != 0) error->message += std::string(": ") + std::strerror(error_number);
  return false;
}

// What EAL and the poll-mode drivers logged about a failure.
std::string eal_said() { return " (EAL log: " + eal_log_tail(4) + ")"; }

// Names unique in the process: vdevs and pools outlive nothing, but a
// balancer may open while another closes.
uint32_t next_serial() {
  static std::atomic<uint32_t> serial{0};
  return serial.fetch_add(1, std::memory_order_relaxed);
}

// net_af_xdp loads its program from a file: the embedded object, written
// once per process to a memory file the vdev opens by its /proc path.
std::string xdp_program_path(PortError* error) {
  static std::mutex mutex;
  static std::string path;
  std::lock_guard<std::mutex> lock(mutex);
  if (!path.empty()) return path;
  const int fd = memfd_create("l4lb_dpdk_xdp", MFD_CLOEXEC);
  if (fd < 0) {
    fail(error, "EDPDK_DEVICE", "memfd_create for the XDP program", errno);
    return "";
  }
  size_t written = 0;
  while (written < l4lb_dpdk_xdp_object_size) {
    const ssize_t n = write(fd, l4lb_dpdk_xdp_object + written, l4lb_dpdk_xdp_object_size - written);
    if (n <= 0) {
      fail(error, "EDPDK_DEVICE", "writing the XDP program", errno);
      close(fd);
      return "";
    }
    written += static_cast<size_t>(n);
  }
  path = "/proc/self/fd/" + std::to_string(fd);  // never closed: later balancers use it too
  return path;
}

struct KernelInterface {
  int ifindex = 0;
  uint32_t af_xdp_queues = 1;  // what net_af_xdp serves: combined channels, or 1 (veth)
};

bool inspect(const std::string& name, KernelInterface* out, PortError* error) {
  if (name.empty() || name.size() >= IFNAMSIZ) return fail(error, "EPORT_OPTIONS", "interface name \"" + name + "\" must have 1 to 15 characters");
  out->ifindex = static_cast<int>(if_nametoindex(name.c_str()));
  if (out->ifindex == 0) return fail(error, "ENO_INTERFACE", "no interface " + name + " in this network namespace", errno);
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(error, "EDPDK_DEVICE", "socket(AF_INET)", errno);
  ifreq request{};
  std::memcpy(request.ifr_name, name.data(), name.size());
  ethtool_channels channels{};
  channels.cmd = ETHTOOL_GCHANNELS;
  request.ifr_data = reinterpret_cast<char*>(&channels);
  // net_af_xdp counts combined channels only (a veth has none: one queue).
  if (ioctl(fd, SIOCETHTOOL, &request) == 0 && channels.max_combined > 0) out->af_xdp_queues = std::max<uint32_t>(1, channels.combined_count);
  close(fd);
  out->af_xdp_queues = std::min(out->af_xdp_queues, kMaxQueues);
  return true;
}

// A symmetric Toeplitz key (the 16-bit pattern repeated): both directions of
// a flow hash to the same queue, so replies meet their flows' worker.
uint8_t symmetric_rss_key[40] = {
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
    0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a, 0x6d, 0x5a,
};

}  // namespace

DpdkDriver::~DpdkDriver() { close_all(); }

void DpdkDriver::close_all() {
  ports_.clear();
  for (Device& device : devices_) {
    for (int fd : device.map_fds) close(fd);
    device.map_fds.clear();
    if (device.has_port) {
      if (device.started) rte_eth_dev_stop(device.port_id);
      rte_eth_dev_info info{};
      const bool known = rte_eth_dev_info_get(device.port_id, &info) == 0;
      rte_eth_dev_close(device.port_id);
      // Removing the device releases what the driver holds (the vdev's
      // sockets and XDP program, a NIC back to the bus).
      if (!device.vdev_name.empty()) {
        rte_vdev_uninit(device.vdev_name.c_str());
      } else if (known && info.device != nullptr) {
        rte_dev_remove(info.device);
      }
    } else if (!device.vdev_name.empty()) {
      rte_vdev_uninit(device.vdev_name.c_str());
    }
  }
  devices_.clear();
  // The pools last: net_af_xdp's UMEM is their memory.
  for (rte_mempool* pool : pools_) rte_mempool_free(pool);
  pools_.clear();
  naps_.clear();
}

bool DpdkDriver::open(uint32_t workers, PortError* error) {
  if (!ports_.empty()) return true;
  if (port_count() == 0) return fail(error, "EPORT_OPTIONS", "the dpdk driver needs at least one interface or device");
  if (port_count() > 64) return fail(error, "EPORT_OPTIONS", "the dpdk driver serves at most 64 ports");
  const uint32_t ring = options_.ring_size;
  if (ring < 64 || ring > 16384 || (ring & (ring - 1)) != 0) return fail(error, "EPORT_OPTIONS", "ring_size must be a power of two from 64 to 16384");
  if (!ensure_eal({options_.eal, options_.hugepages}, error)) return false;
  // A queue a balancer held until it was killed stays taken until the
  // kernel's deferred release of its AF_XDP socket runs; net_af_xdp then
  // fails to create its socket. Try again, from nothing, for up to a second.
  for (int attempt = 1;; ++attempt) {
    if (open_devices(workers, error)) return true;
    const bool queue_taken = options_.vdev == DpdkKernelVdev::af_xdp && error != nullptr && error->code == "EDPDK_PORT" &&
                             error->message.rfind("receive queue", 0) == 0;
    if (!queue_taken || attempt == kBusyQueueAttempts) return false;
    usleep(kBusyQueueRetryUs);
  }
}

bool DpdkDriver::open_devices(uint32_t workers, PortError* error) {
  const uint32_t ring = options_.ring_size;
  bool ok = true;
  for (const std::string& interface : options_.interfaces) {
    if (!(ok = add_kernel_interface(interface, workers, error))) break;
  }
  for (size_t i = 0; ok && i < options_.devices.size(); ++i) ok = add_device(options_.devices[i], error);
  if (ok) {
    // Each worker's pool holds its queues' receive rings, as many in flight
    // in the core's hands and transmit rings, and the copies it makes.
    uint32_t queues = 0;
    for (const Device& device : devices_) queues += device.queues;
    const uint32_t per_worker = (queues + workers - 1) / workers + static_cast<uint32_t>(devices_.size());
    const uint32_t mbufs = std::max<uint32_t>(4096, per_worker * ring * 3 + 2048);
    for (uint32_t w = 0; ok && w < workers; ++w) {
      const std::string name = "l4lb" + std::to_string(next_serial()) + "_w" + std::to_string(w);
      rte_mempool* pool = rte_pktmbuf_pool_create(name.c_str(), mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
      if (pool == nullptr) {
        ok = fail(error, "EDPDK_MEMORY",
                  "no memory for " + std::to_string(mbufs) + " mbufs of worker " + std::to_string(w) + " (" + rte_strerror(rte_errno) +
                      "): give the EAL more (dpdk.eal: ['-m', '1024']) or fewer workers or ports" + eal_said());
        break;
      }
      pools_.push_back(pool);
      naps_.push_back(std::make_unique<DpdkNap>());
    }
  }
  for (size_t d = 0; ok && d < devices_.size(); ++d) ok = start_device(devices_[d], workers, error);
  if (ok) {
    ports_.resize(workers);
    for (uint32_t w = 0; w < workers; ++w) {
      for (size_t d = 0; d < devices_.size(); ++d) {
        Device& device = devices_[d];
        DpdkPortSpec spec;
        spec.port_id = device.port_id;
        for (uint32_t q = w; q < device.queues; q += workers) spec.rx_queues.push_back(static_cast<uint16_t>(q));
        spec.tx_queue = device.tx_queues[w % device.queues].get();
        spec.pool = pools_[w];
        spec.nap = naps_[w].get();
        spec.exposes_nap = d == 0;
        spec.guess_partial_checksums = !device.vdev_name.empty();
        ports_[w].push_back(std::make_unique<DpdkPort>(spec));
      }
    }
  }
  if (!ok) close_all();  // nothing stays added or started
  return ok;
}

bool DpdkDriver::add_kernel_interface(const std::string& interface, uint32_t workers, PortError* error) {
  KernelInterface kernel;
  if (!inspect(interface, &kernel, error)) return false;
  Device device;
  device.name = interface;
  device.ifindex = kernel.ifindex;
  std::string args = "iface=" + interface;
  if (options_.vdev == DpdkKernelVdev::af_xdp) {
    // The vdev attaches only where no program is: one a killed balancer left goes first.
    if (!remove_stale_program(interface, kernel.ifindex, error)) return false;
    const std::string program = xdp_program_path(error);
    if (program.empty()) return false;
    device.vdev_name = "net_af_xdp_l4lb" + std::to_string(next_serial());
    device.queues = static_cast<uint16_t>(kernel.af_xdp_queues);
    device.mode = "dpdk_af_xdp";
    // Each queue's UMEM is the memory of its worker's pool (net_af_xdp's
    // zero-copy mode), the same pool on every interface: an mbuf received on
    // one interface is sent from another without a copy (the vdev sends an
    // mbuf of its queue's pool as is). Debian's build has no shared_umem.
    // busy_budget=0: no preferred busy polling (the worker naps instead).
    args += ",start_queue=0,queue_count=" + std::to_string(device.queues) + ",busy_budget=0,xdp_prog=" + program;
  } else {
    device.vdev_name = "net_af_packet_l4lb" + std::to_string(next_serial());
    device.queues = static_cast<uint16_t>(std::min<uint32_t>(workers, kMaxQueues));
    device.mode = "dpdk_af_packet";
    args += ",qpairs=" + std::to_string(device.queues);
  }
  const int result = rte_vdev_init(device.vdev_name.c_str(), args.c_str());
  if (result != 0) {
    devices_.push_back(std::move(device));  // close_all() removes what is half made
    return fail(error, "EDPDK_DEVICE", "adding " + devices_.back().vdev_name + " (" + args + ") for " + interface + " failed" + eal_said() +
                                           " (the vdev needs root, or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_SYS_ADMIN)",
                -result > 0 && -result < 4096 ? -result : 0);
  }
  uint16_t port_id = 0;
  if (rte_eth_dev_get_port_by_name(device.vdev_name.c_str(), &port_id) != 0) {
    devices_.push_back(std::move(device));
    return fail(error, "EDPDK_DEVICE", "the vdev for " + interface + " has no ethdev" + eal_said());
  }
  device.port_id = port_id;
  device.has_port = true;
  devices_.push_back(std::move(device));
  return true;
}

bool DpdkDriver::add_device(const std::string& given, PortError* error) {
  Device device;
  device.name = given;
  if (given.empty() || given.find_first_of(" \t\n") != std::string::npos) {
    return fail(error, "EDPDK_DEVICE", "device \"" + given + "\" is not an EAL device string (a PCI address such as 0000:3b:00.0, or a vdev such as net_tap0,iface=tap0)");
  }
  const int result = rte_dev_probe(given.c_str());
  if (result != 0) {
    return fail(error, "EDPDK_DEVICE",
                "EAL cannot probe device \"" + given + "\" (" + rte_strerror(-result) +
                    "): give a PCI address bound to vfio-pci (dpdk-devbind.py), with dpdk.hugepages true, or a vdev such as net_tap0,iface=tap0" +
                    eal_said());
  }
  device.probed = given;
  rte_dev_iterator iterator{};
  uint16_t port_id = RTE_MAX_ETHPORTS;
  RTE_ETH_FOREACH_MATCHING_DEV(port_id, given.c_str(), &iterator) {
    rte_eth_iterator_cleanup(&iterator);
    break;
  }
  if (port_id >= RTE_MAX_ETHPORTS) {
    return fail(error, "EDPDK_DEVICE", "device \"" + given + "\" was probed but is no Ethernet port" + eal_said());
  }
  rte_eth_dev_info info{};
  if (rte_eth_dev_info_get(port_id, &info) == 0 && info.driver_name != nullptr) device.mode = std::string("dpdk_") + info.driver_name;
  device.port_id = port_id;
  device.has_port = true;
  devices_.push_back(std::move(device));
  return true;
}

bool DpdkDriver::start_device(Device& device, uint32_t workers, PortError* error) {
  rte_eth_dev_info info{};
  int result = rte_eth_dev_info_get(device.port_id, &info);
  if (result != 0) return fail(error, "EDPDK_PORT", "rte_eth_dev_info_get on " + device.name + eal_said(), -result);
  if (!device.probed.empty()) {
    // A device: one queue per worker where it has them.
    device.queues = static_cast<uint16_t>(std::max<uint32_t>(1, std::min<uint32_t>({workers, info.max_rx_queues, info.max_tx_queues, kMaxQueues})));
  }
  rte_eth_conf conf{};
  if (device.queues > 1 && info.flow_type_rss_offloads != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_key = symmetric_rss_key;
    conf.rx_adv_conf.rss_conf.rss_key_len = std::min<uint8_t>(sizeof(symmetric_rss_key), info.hash_key_size > 0 ? info.hash_key_size : 40);
    conf.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
  }
  result = rte_eth_dev_configure(device.port_id, device.queues, device.queues, &conf);
  if (result != 0) return fail(error, "EDPDK_PORT", "configuring " + device.name + " with " + std::to_string(device.queues) + " queues" + eal_said(), -result);
  uint16_t rx_descriptors = static_cast<uint16_t>(std::min<uint32_t>(options_.ring_size, UINT16_MAX));
  uint16_t tx_descriptors = rx_descriptors;
  rte_eth_dev_adjust_nb_rx_tx_desc(device.port_id, &rx_descriptors, &tx_descriptors);
  const int socket = rte_eth_dev_socket_id(device.port_id);
  for (uint16_t q = 0; q < device.queues; ++q) {
    // Queue q belongs to worker q % workers, and its buffers to that worker's pool.
    result = rte_eth_rx_queue_setup(device.port_id, q, rx_descriptors, socket, nullptr, pools_[q % workers]);
    if (result != 0) return fail(error, "EDPDK_PORT", "receive queue " + std::to_string(q) + " of " + device.name + eal_said(), -result);
    result = rte_eth_tx_queue_setup(device.port_id, q, tx_descriptors, socket, nullptr);
    if (result != 0) return fail(error, "EDPDK_PORT", "transmit queue " + std::to_string(q) + " of " + device.name + eal_said(), -result);
    auto queue = std::make_unique<DpdkTxQueue>();
    queue->id = q;
    queue->shared = device.queues < workers;
    device.tx_queues.push_back(std::move(queue));
  }
  if (device.mode == "dpdk_af_xdp" && !find_program_maps(device, error)) return false;
  result = rte_eth_dev_start(device.port_id);
  if (result != 0) return fail(error, "EDPDK_PORT", "starting " + device.name + eal_said(), -result);
  device.started = true;
  return true;
}

// net_af_xdp attached the program when its first queue was set up: its maps
// are found from the interface (program -> map ids -> maps by name).
bool DpdkDriver::find_program_maps(Device& device, PortError* error) {
  uint32_t program_id = 0;
  if (bpf_xdp_query_id(device.ifindex, 0, &program_id) != 0 || program_id == 0) {
    return fail(error, "EDPDK_PORT", "no XDP program on " + device.name + " after net_af_xdp set it up" + eal_said());
  }
  const int program = bpf_prog_get_fd_by_id(program_id);
  if (program < 0) return fail(error, "EDPDK_PORT", "opening the XDP program of " + device.name, errno);
  uint32_t map_ids[16] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 16;
  info.map_ids = reinterpret_cast<uint64_t>(map_ids);
  uint32_t length = sizeof(info);
  const bool read = bpf_obj_get_info_by_fd(program, &info, &length) == 0;
  close(program);
  if (!read || std::strcmp(info.name, L4LB_XDP_PROGRAM_NAME) != 0) {
    return fail(error, "EDPDK_PORT", device.name + " runs another XDP program than the balancer's: remove it (ip link set dev " + device.name + " xdp off)");
  }
  int addresses = -1, services = -1, settings = -1;
  std::string names;
  for (uint32_t m = 0; m < std::min<uint32_t>(info.nr_map_ids, 16); ++m) {
    const int map = bpf_map_get_fd_by_id(map_ids[m]);
    if (map < 0) continue;
    bpf_map_info map_info{};
    uint32_t map_length = sizeof(map_info);
    int* slot = nullptr;
    if (bpf_obj_get_info_by_fd(map, &map_info, &map_length) == 0) {
      names += std::string(names.empty() ? "" : ", ") + map_info.name;
      if (std::strcmp(map_info.name, L4LB_XDP_MAP_ADDRESSES) == 0) slot = &addresses;
      if (std::strcmp(map_info.name, L4LB_XDP_MAP_SERVICES) == 0) slot = &services;
      if (std::strcmp(map_info.name, L4LB_XDP_MAP_SETTINGS) == 0) slot = &settings;
    }
    if (slot == nullptr) {
      close(map);
      continue;
    }
    *slot = map;
    device.map_fds.push_back(map);
  }
  device.selection = XdpSelection(addresses, services, settings);
  if (!device.selection.valid()) return fail(error, "EDPDK_PORT", "the XDP program on " + device.name + " lacks its maps (it has: " + names + ")");
  if (!device.selection.claim()) return fail(error, "EDPDK_PORT", "writing the XDP program's settings on " + device.name, errno);
  return true;
}

void DpdkDriver::configure(const core::SnapshotView& view) {
  for (Device& device : devices_) {
    if (device.selection.valid() && !device.selection.apply(view)) map_errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

std::vector<PortCounters> DpdkDriver::port_counters() const {
  std::vector<PortCounters> sums(ports_.empty() ? 0 : port_count());
  for (const auto& worker_ports : ports_) {
    for (size_t p = 0; p < worker_ports.size(); ++p) sums[p] += worker_ports[p]->counters();
  }
  for (size_t p = 0; p < sums.size() && p < devices_.size(); ++p) {
    rte_eth_stats stats{};
    // Dropped before a worker saw them: no room in the queue (imissed) or no
    // mbuf to receive into (rx_nombuf).
    if (rte_eth_stats_get(devices_[p].port_id, &stats) == 0) sums[p].kernel_drops = stats.imissed + stats.rx_nombuf;
  }
  return sums;
}

std::vector<InterfaceReport> DpdkDriver::interfaces() const {
  std::vector<InterfaceReport> reports;
  for (const Device& device : devices_) reports.push_back({device.name, device.mode});
  return reports;
}

}  // namespace l4lb::io

extern "C" __attribute__((visibility("default"))) l4lb::io::Driver* l4lb_dpdk_create_driver(uint32_t version, const l4lb::io::DpdkDriverOptions* options,
                                                                                          l4lb::io::PortError* error) {
  if (version != l4lb::io::kDpdkAbiVersion) {
    error->code = "EDRIVER_UNAVAILABLE";
    error->error_number = 0;
    error->message = "l4lb_dpdk.so is from another build of l4lb: rebuild the package (npm rebuild l4lb)";
    return nullptr;
  }
  return new l4lb::io::DpdkDriver(*options);
}

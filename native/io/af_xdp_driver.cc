#include "io/af_xdp_driver.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "core/snapshot.h"
#include "io/af_xdp_errors.h"
#include "shm/layout.h"

// The compiled XDP program, embedded by the build (tools/build-xdp-object.mjs).
extern "C" const unsigned char l4lb_xdp_object[];
extern "C" const unsigned long l4lb_xdp_object_size;

namespace l4lb::io {

namespace {

constexpr uint32_t kEthernetHeaderLen = 14;
constexpr uint32_t kVlanTagLen = 4;
// A queue a dead process held: up to a second for the kernel to release it.
constexpr int kBusyQueueAttempts = 20;
constexpr useconds_t kBusyQueueRetryUs = 50'000;

// libbpf prints verifier logs and warnings; the driver reports its own
// errors, so these go to a buffer that a load failure quotes.
thread_local std::string* libbpf_log = nullptr;
int collect_libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
  if (libbpf_log == nullptr || level == LIBBPF_DEBUG) return 0;
  char line[1024];
  const int n = vsnprintf(line, sizeof(line), format, args);
  if (libbpf_log->size() < 16384) libbpf_log->append(line);
  return n;
}

std::string last_lines(const std::string& text, size_t lines) {
  size_t position = text.size();
  for (size_t i = 0; i <= lines && position != std::string::npos && position > 0; ++i) position = text.rfind('\n', position - 1);
  return position == std::string::npos ? text : text.substr(position + 1);
}

const char* mode_name(uint32_t flags) { return flags == XDP_FLAGS_DRV_MODE ? "xdp_native" : "xdp_generic"; }

}  // namespace

AfXdpDriver::~AfXdpDriver() { close_all(); }

void AfXdpDriver::close_all() {
  ports_.clear();  // sockets first: they hold the UMEMs
  umems_.clear();
  // Detach only our own program (old_prog_fd): whatever replaced it stays.
  for (Interface& interface : interfaces_) {
    if (!interface.attached) continue;
    bpf_xdp_attach_opts opts{};
    opts.sz = sizeof(opts);
    opts.old_prog_fd = program_fd_;
    bpf_xdp_detach(interface.ifindex, interface.attach_flags | XDP_FLAGS_REPLACE, &opts);
    interface.attached = false;
  }
  if (object_ != nullptr) bpf_object__close(object_);
  object_ = nullptr;
  program_fd_ = -1;
}

bool AfXdpDriver::open(uint32_t workers, PortError* error) {
  if (!ports_.empty()) return true;
  if (options_.interfaces.empty()) return xdp_fail(error, "EPORT_OPTIONS", "the af_xdp driver needs at least one interface", 0);
  if (options_.interfaces.size() > L4LB_XDP_MAX_PORTS) {
    return xdp_fail(error, "EPORT_OPTIONS", "the af_xdp driver serves at most " + std::to_string(L4LB_XDP_MAX_PORTS) + " interfaces", 0);
  }
  const uint32_t ring = options_.ring_size;
  if (ring < 64 || ring > 16384 || (ring & (ring - 1)) != 0) {
    return xdp_fail(error, "EPORT_OPTIONS", "ring_size must be a power of two from 64 to 16384", 0);
  }
  bool ok = inspect_interfaces(workers, error) && remove_stale_programs(error) && load_program(error) &&
             std::all_of(interfaces_.begin(), interfaces_.end(), [&](Interface& i) { return attach(i, error); });
  // A queue that is busy here belongs to no live balancer (that was refused
  // above): a process that just died holds it until the kernel's deferred
  // release of its socket runs. Try again, with new sockets and UMEMs (a
  // failed socket leaves its UMEM unfit for another), for up to a second.
  for (int attempt = 0; ok; ++attempt) {
    if (open_sockets(workers, error)) break;
    ok = error != nullptr && error->code == "EXDP_BUSY" && attempt + 1 < kBusyQueueAttempts;
    ports_.clear();
    umems_.clear();
    if (ok) usleep(kBusyQueueRetryUs);
  }
  if (!ok) close_all();  // nothing stays attached or open
  return ok;
}

bool AfXdpDriver::inspect_interfaces(uint32_t workers, PortError* error) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return xdp_fail(error, "EXDP_SOCKET", "socket(AF_INET)", errno);
  interfaces_.clear();
  bool ok = true;
  for (const std::string& name : options_.interfaces) {
    Interface interface;
    interface.name = name;
    ifreq request{};
    if (name.empty() || name.size() >= IFNAMSIZ) {
      ok = xdp_fail(error, "EPORT_OPTIONS", "interface name \"" + name + "\" must have 1 to 15 characters", 0);
      break;
    }
    std::memcpy(request.ifr_name, name.data(), name.size());
    if (ioctl(fd, SIOCGIFINDEX, &request) != 0) {
      ok = xdp_fail(error, "ENO_INTERFACE", "no interface " + name + " in this network namespace", errno);
      break;
    }
    interface.ifindex = request.ifr_ifindex;
    if (ioctl(fd, SIOCGIFMTU, &request) != 0) {
      ok = xdp_fail(error, "ENO_INTERFACE", "ioctl(SIOCGIFMTU) on " + name, errno);
      break;
    }
    interface.mtu = static_cast<uint32_t>(request.ifr_mtu);
    // One UMEM frame per packet (no XDP multi-buffer): a frame of the MTU
    // with its Ethernet header and a tag must fit behind the headroom.
    const uint32_t largest = Umem::kFrameSize - Umem::kTxOffset - kEthernetHeaderLen - kVlanTagLen;
    if (interface.mtu > largest) {
      ok = xdp_fail(error, "EXDP_MTU",
                    "MTU " + std::to_string(interface.mtu) + " of " + name + " exceeds the " + std::to_string(largest) +
                        " bytes a frame of one page holds with the af_xdp driver: lower it (ip link set dev " + name +
                        " mtu 1500) or use driver 'af_packet'",
                    0);
      break;
    }
    // Receive queues: a NIC reports combined channels, veth rx channels.
    ethtool_channels channels{};
    channels.cmd = ETHTOOL_GCHANNELS;
    request.ifr_data = reinterpret_cast<char*>(&channels);
    if (ioctl(fd, SIOCETHTOOL, &request) == 0) interface.queues = std::max<uint32_t>(1, channels.rx_count + channels.combined_count);
    if (interface.queues > L4LB_XDP_MAX_QUEUES) {
      ok = xdp_fail(error, "EXDP_QUEUES", name + " has " + std::to_string(interface.queues) + " receive queues; the af_xdp driver serves at most " +
                                              std::to_string(L4LB_XDP_MAX_QUEUES) + " (ethtool -L " + name + " combined 64)", 0);
      break;
    }
    if (interface.queues < workers) {
      // A queue's frames land in one UMEM, so a worker without a queue of
      // its own on an interface could neither receive nor own buffers there.
      ok = xdp_fail(error, "EXDP_QUEUES",
                    name + " has " + std::to_string(interface.queues) + " receive queue(s) for " + std::to_string(workers) +
                        " workers: give it at least one queue per worker (ethtool -L " + name + " combined " +
                        std::to_string(workers) + "; veth: ip link add ... numrxqueues " + std::to_string(workers) +
                        " numtxqueues " + std::to_string(workers) + ") or use fewer workers",
                    0);
      break;
    }
    interfaces_.push_back(interface);
  }
  close(fd);
  return ok;
}

bool AfXdpDriver::remove_stale_programs(PortError* error) {
  for (Interface& interface : interfaces_) {
    if (!remove_stale_program(interface.name, interface.ifindex, error)) return false;
  }
  return true;
}

bool AfXdpDriver::load_program(PortError* error) {
  std::string log;
  libbpf_log = &log;
  libbpf_set_print(collect_libbpf_log);
  LIBBPF_OPTS(bpf_object_open_opts, open_options, .object_name = "l4lb_xdp");
  object_ = bpf_object__open_mem(l4lb_xdp_object, l4lb_xdp_object_size, &open_options);
  if (object_ == nullptr) {
    libbpf_log = nullptr;
    return xdp_fail(error, "EXDP_LOAD", "the embedded XDP object does not open: " + last_lines(log, 4), errno);
  }
  const int loaded = bpf_object__load(object_);
  libbpf_log = nullptr;
  if (loaded != 0) {
    const int error_number = -loaded;
    if (error_number == EPERM || error_number == EACCES) {
      return xdp_fail(error, "EXDP_PERMISSION", std::string("loading the XDP program is not permitted: ") + kXdpCapabilities, error_number);
    }
    return xdp_fail(error, "EXDP_LOAD", "the kernel refused the XDP program: " + last_lines(log, 6), error_number);
  }
  bpf_program* program = bpf_object__find_program_by_name(object_, L4LB_XDP_PROGRAM_NAME);
  program_fd_ = program != nullptr ? bpf_program__fd(program) : -1;
  sockets_map_ = map_fd(L4LB_XDP_MAP_SOCKETS);
  ports_map_ = map_fd(L4LB_XDP_MAP_PORTS);
  addresses_map_ = map_fd(L4LB_XDP_MAP_ADDRESSES);
  services_map_ = map_fd(L4LB_XDP_MAP_SERVICES);
  settings_map_ = map_fd(L4LB_XDP_MAP_SETTINGS);
  selection_ = XdpSelection(addresses_map_, services_map_, settings_map_);
  if (program_fd_ < 0 || sockets_map_ < 0 || ports_map_ < 0 || addresses_map_ < 0 || services_map_ < 0 || settings_map_ < 0) {
    return xdp_fail(error, "EXDP_LOAD", "the embedded XDP object lacks its program or maps", 0);
  }
  // Who attached it: a later open() removes it if this process dies first.
  l4lb_settings settings{};
  settings.owner_pid = static_cast<uint32_t>(getpid());
  settings.owner_start_time = process_start_time(settings.owner_pid);
  const uint32_t zero = 0;
  if (bpf_map_update_elem(settings_map_, &zero, &settings, BPF_ANY) != 0) {
    return xdp_fail(error, "EXDP_LOAD", "writing the XDP program's settings", errno);
  }
  for (uint32_t p = 0; p < interfaces_.size(); ++p) {
    const uint32_t ifindex = static_cast<uint32_t>(interfaces_[p].ifindex);
    if (bpf_map_update_elem(ports_map_, &ifindex, &p, BPF_ANY) != 0) return xdp_fail(error, "EXDP_LOAD", "filling the port map", errno);
  }
  return true;
}

int AfXdpDriver::map_fd(const char* name) const {
  bpf_map* map = bpf_object__find_map_by_name(object_, name);
  return map != nullptr ? bpf_map__fd(map) : -1;
}

bool AfXdpDriver::attach(Interface& interface, PortError* error) {
  // UPDATE_IF_NOEXIST: never replace a program attached since the check.
  const uint32_t keep = XDP_FLAGS_UPDATE_IF_NOEXIST;
  int result = -EOPNOTSUPP;
  if (options_.mode != XdpMode::generic) {
    result = bpf_xdp_attach(interface.ifindex, program_fd_, keep | XDP_FLAGS_DRV_MODE, nullptr);
    if (result == 0) interface.attach_flags = XDP_FLAGS_DRV_MODE;
  }
  const bool no_native = result == -EOPNOTSUPP;
  if (result != 0 && no_native && options_.mode == XdpMode::native) {
    return xdp_fail(error, "EXDP_UNSUPPORTED",
                    interface.name + " has no native XDP support (its driver lacks it): use afXdp.mode 'auto' or 'generic', or driver 'af_packet'",
                    EOPNOTSUPP);
  }
  if (result != 0 && no_native) {
    result = bpf_xdp_attach(interface.ifindex, program_fd_, keep | XDP_FLAGS_SKB_MODE, nullptr);
    if (result == 0) interface.attach_flags = XDP_FLAGS_SKB_MODE;
  }
  if (result != 0) {
    const int error_number = -result;
    if (error_number == EPERM || error_number == EACCES) {
      return xdp_fail(error, "EXDP_PERMISSION", "attaching XDP to " + interface.name + " is not permitted: " + kXdpCapabilities, error_number);
    }
    if (error_number == EBUSY || error_number == EEXIST) {
      return xdp_fail(error, "EXDP_BUSY", interface.name + " already has an XDP program: remove it (ip link set dev " + interface.name + " xdp off)", error_number);
    }
    if (error_number == ERANGE) {
      return xdp_fail(error, "EXDP_MTU", "the MTU of " + interface.name + " (or of its veth peer) is too large for XDP: lower it", error_number);
    }
    return xdp_fail(error, "EXDP_ATTACH", "attaching the XDP program to " + interface.name + " (" + std::string(mode_name(XDP_FLAGS_SKB_MODE)) + " too)", error_number);
  }
  interface.attached = true;
  return true;
}

bool AfXdpDriver::open_sockets(uint32_t workers, PortError* error) {
  std::vector<std::vector<std::unique_ptr<AfXdpPort>>> ports(workers);
  for (uint32_t w = 0; w < workers; ++w) {
    std::vector<std::vector<XskSpec>> specs(interfaces_.size());
    uint32_t sockets = 0;
    for (uint32_t p = 0; p < interfaces_.size(); ++p) {
      for (uint32_t q = w; q < interfaces_[p].queues; q += workers) {
        specs[p].push_back({interfaces_[p].name, q, interfaces_[p].attach_flags == XDP_FLAGS_SKB_MODE, options_.ring_size});
        ++sockets;
      }
    }
    // Each socket's fill ring full, as many in its receive ring, and a
    // ring's worth in flight on transmit or in the core's hands.
    const uint32_t frames = sockets * options_.ring_size * 2 + options_.ring_size;
    auto umem = Umem::create(frames, options_.ring_size, error);
    if (!umem) return false;
    for (uint32_t p = 0; p < interfaces_.size(); ++p) {
      auto port = AfXdpPort::create(umem.get(), specs[p], interfaces_[p].mtu, error);
      if (!port) {
        ports_ = std::move(ports);  // close_all() closes them before the UMEMs
        umems_.push_back(std::move(umem));
        return false;
      }
      const std::vector<int> fds = port->socket_fds();
      for (size_t s = 0; s < fds.size(); ++s) {
        const uint32_t key = p * L4LB_XDP_MAX_QUEUES + specs[p][s].queue;
        const uint32_t fd = static_cast<uint32_t>(fds[s]);
        if (bpf_map_update_elem(sockets_map_, &key, &fd, BPF_ANY) != 0) {
          ports[w].push_back(std::move(port));
          ports_ = std::move(ports);
          umems_.push_back(std::move(umem));
          return xdp_fail(error, "EXDP_SOCKET", "adding a socket to the XSK map", errno);
        }
      }
      ports[w].push_back(std::move(port));
    }
    umems_.push_back(std::move(umem));
  }
  ports_ = std::move(ports);
  return true;
}

void AfXdpDriver::configure(const core::SnapshotView& view) {
  if (program_fd_ < 0) return;
  if (!selection_.apply(view)) map_errors_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<PortCounters> AfXdpDriver::port_counters() const {
  std::vector<PortCounters> sums(ports_.empty() ? 0 : port_count());
  for (const auto& worker_ports : ports_) {
    for (size_t p = 0; p < worker_ports.size(); ++p) sums[p] += worker_ports[p]->counters();
  }
  return sums;
}

std::vector<InterfaceReport> AfXdpDriver::interfaces() const {
  std::vector<InterfaceReport> reports;
  for (const Interface& interface : interfaces_) reports.push_back({interface.name, mode_name(interface.attach_flags)});
  return reports;
}

}  // namespace l4lb::io

extern "C" __attribute__((visibility("default"))) l4lb::io::Driver* l4lb_af_xdp_create_driver(
    uint32_t version, const l4lb::io::AfXdpDriverOptions* options, l4lb::io::PortError* error) {
  if (version != l4lb::io::kAfXdpAbiVersion) {
    l4lb::io::xdp_fail(error, "EDRIVER_UNAVAILABLE", "l4lb_af_xdp.so is from another build of l4lb: rebuild the package (npm rebuild l4lb)", 0);
    return nullptr;
  }
  return new l4lb::io::AfXdpDriver(*options);
}

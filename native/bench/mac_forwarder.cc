#include "bench/mac_forwarder.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "bench/bench_clock.h"
#include "core/forward.h"
#include "core/snapshot.h"
#include "io/driver_factory.h"

namespace l4lb::bench {

namespace {

template <typename T>
void add(std::atomic<T>& counter, T n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace

std::unique_ptr<MacForwarder> MacForwarder::create(const MacForwarderOptions& options, io::PortError* error) {
  std::unique_ptr<MacForwarder> forwarder(new MacForwarder());
  forwarder->options_ = options;
  if (options.driver == "af_xdp") {
    if (!forwarder->open_driver(error)) return nullptr;
  } else {
    for (int p = 0; p < 2; ++p) {
      io::AfPacketOptions port_options;
      port_options.interface = options.interfaces[p];
      port_options.netns_path = options.netns_path;
      port_options.tx_method = options.tx_method;
      port_options.rx_frame_count = options.rx_frame_count;
      port_options.cpu = options.cpu;
      forwarder->packet_ports_[p] = io::AfPacketPort::create(port_options, error);
      if (!forwarder->packet_ports_[p]) return nullptr;
      forwarder->ports_[p] = forwarder->packet_ports_[p].get();
    }
  }
  if (!forwarder->waits_.open({forwarder->ports_[0], forwarder->ports_[1]})) {
    error->code = "EPORT_SOCKET";
    error->message = "epoll/eventfd/timerfd for the MAC-only forwarder: " + std::string(strerror(errno));
    return nullptr;
  }
  forwarder->thread_ = std::thread([f = forwarder.get()] { f->loop(); });
  forwarder->native_thread_ = forwarder->thread_.native_handle();
  return forwarder;
}

bool MacForwarder::open_driver(io::PortError* error) {
  core::SnapshotView view;
  const char* invalid = nullptr;
  if (!core::open_snapshot(options_.snapshot.data(), options_.snapshot.size(), &view, &invalid)) {
    *error = io::PortError{"EPORT_OPTIONS", std::string("MAC-only forwarder over af_xdp: snapshot: ") + invalid, 0};
    return false;
  }
  // The driver opens (and closes) its interfaces in the calling thread's
  // network namespace: open it from a thread that enters the forwarder's.
  // Its sockets then serve any thread.
  in_netns([&] {
    io::DriverSpec spec;
    spec.name = "af_xdp";
    spec.af_xdp.library = options_.af_xdp_library;
    spec.af_xdp.interfaces = {options_.interfaces[0], options_.interfaces[1]};
    if (options_.cpu >= 0) spec.af_xdp.worker_cpus = {options_.cpu};
    std::shared_ptr<io::Driver> driver = io::make_driver(spec, error);
    if (!driver || !driver->open(1, error)) return;
    driver->configure(view);
    if (driver->configure_errors() != 0) {
      *error = io::PortError{"EPORT_FILTER", "MAC-only forwarder over af_xdp: filling the XDP program's maps failed", 0};
      return;
    }
    driver_ = std::move(driver);
  }, error);
  if (!driver_) return false;
  ports_[0] = &driver_->port(0, 0);
  ports_[1] = &driver_->port(0, 1);
  return true;
}

bool MacForwarder::in_netns(const std::function<void()>& work, io::PortError* error) const {
  bool entered = true;
  std::thread runner([&] {
    if (!options_.netns_path.empty()) {
      const int fd = ::open(options_.netns_path.c_str(), O_RDONLY | O_CLOEXEC);
      entered = fd >= 0 && setns(fd, CLONE_NEWNET) == 0;
      const int error_number = errno;
      if (fd >= 0) ::close(fd);
      if (!entered) {
        if (error) *error = io::PortError{"EPORT_NETNS", "entering " + options_.netns_path + ": " + strerror(error_number), error_number};
        return;
      }
    }
    work();
  });
  runner.join();
  return entered;
}

MacForwarder::~MacForwarder() { stop(); }

void MacForwarder::stop() {
  running_.store(false, std::memory_order_relaxed);
  waits_.wake();
  if (thread_.joinable()) thread_.join();
  // The driver detaches its XDP program from the interfaces of the namespace
  // it runs in: close it there.
  if (driver_) {
    ports_[0] = ports_[1] = nullptr;
    in_netns([&] { driver_.reset(); }, nullptr);
  }
}

void MacForwarder::loop() {
  pin_current_thread(options_.cpu);
  uint8_t macs[2][12];
  for (int p = 0; p < 2; ++p) {
    std::memcpy(macs[p], options_.dst_mac[p], 6);
    std::memcpy(macs[p] + 6, options_.src_mac[p], 6);
  }
  core::Frame batch[core::kMaxBurst];
  uint64_t last_frame_ns = engine::monotonic_ns();
  while (running_.load(std::memory_order_relaxed)) {
    const uint64_t start = engine::monotonic_ns();
    uint32_t received = 0;
    for (int p = 0; p < 2; ++p) {
      const uint32_t n = ports_[p]->rx_burst(batch, core::kMaxBurst);
      if (n == 0) continue;
      received += n;
      const int egress = 1 - p;
      for (uint32_t i = 0; i < n; ++i) std::memcpy(batch[i].data, macs[egress], sizeof(macs[egress]));
      ports_[egress]->tx_burst(batch, n);  // takes the buffers over
    }
    if (received != 0) {
      const uint64_t end = engine::monotonic_ns();
      add(busy_ns_, end - start);
      add(batches_, uint64_t{1});
      last_frame_ns = end;
      continue;
    }
    add(idle_polls_, uint64_t{1});
    if (options_.busy_polling || start - last_frame_ns < options_.spin_ns) {
      engine::cpu_relax();
      continue;
    }
    waits_.sleep(0);
    add(wakeups_, uint64_t{1});
    last_frame_ns = engine::monotonic_ns();
  }
}

MacForwarderStats MacForwarder::stats() const {
  MacForwarderStats s;
  for (const io::Port* port : ports_) {
    if (port == nullptr) continue;  // stopped
    const io::PortCounters c = port->counters();
    s.rx_packets += c.rx_packets;
    s.tx_packets += c.tx_packets;
    s.tx_dropped += c.tx_dropped;
    s.kernel_drops += c.kernel_drops;
  }
  s.busy_ns = busy_ns_.load(std::memory_order_relaxed);
  s.batches = batches_.load(std::memory_order_relaxed);
  s.idle_polls = idle_polls_.load(std::memory_order_relaxed);
  s.wakeups = wakeups_.load(std::memory_order_relaxed);
  // The forwarding thread's CPU clock, readable from any thread while it runs.
  clockid_t clock;
  if (running_.load(std::memory_order_relaxed) && pthread_getcpuclockid(native_thread_, &clock) == 0) {
    s.thread_cpu_ns = clock_ns(clock);
  }
  return s;
}

}  // namespace l4lb::bench

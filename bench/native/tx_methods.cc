// AF_PACKET transmit methods on veth: TX ring vs sendmmsg, with and without
// PACKET_QDISC_BYPASS, at 64 and 1500 bytes, flat out on one pinned core.
//
//   tx    one AfPacketPort sends bursts of 64 frames on veth b as fast as it
//         can; the peer a drops them at L2 (unknown unicast MAC, no socket),
//         the cheapest possible receiver.
//   fwd   the MAC-only forwarder (the I/O floor of DESIGN §6): a generator
//         port on g0 (its own core) -> g1 -> forwarder port (pinned core):
//         rx_burst, rewrite MACs, tx_burst on s0 -> s1 (dropped at L2).
//
// On veth the sender pays for the peer's receive: veth_xmit hands the skb
// to the peer's backlog and the softirq that drains it runs on the sending
// core when the syscall re-enables bottom halves. So the cost per packet is
// measured three ways: the thread's CPU time (CLOCK_THREAD_CPUTIME_ID; with
// CONFIG_IRQ_TIME_ACCOUNTING off, softirq work done in the thread's context
// is charged to it), the whole pinned core's busy time (/proc/stat, which
// also catches ksoftirqd), and wall-clock packets per second.
//
// Each configuration runs `--rounds` times, interleaved with the others (the
// machine is shared: ratios within one run, medians across rounds).
//
// Build (no sanitizers, -O2) and run as root: see docs/af-packet.md.
//   tx_methods [--mode tx|fwd] [--seconds 2] [--rounds 3] [--cpu 1]
#include <ifaddrs.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/forward.h"
#include "io/af_packet.h"
#include "netns.h"
#include "packet_builder.h"

namespace {

using l4lb::core::Frame;
using l4lb::io::AfPacketOptions;
using l4lb::io::AfPacketPort;
using l4lb::io::TxMethod;
using l4lb::test::Bytes;
using l4lb::test::ipv4_addr;
using l4lb::test::NetNamespace;
using l4lb::test::NetnsScope;

constexpr uint32_t kBurst = 64;

struct Config {
  TxMethod method;
  bool bypass;
  uint32_t frame_size;
  std::string name() const {
    return std::string(method == TxMethod::ring ? "ring" : "sendmmsg") + (bypass ? "+bypass" : "") + " " +
           std::to_string(frame_size) + "B";
  }
};

struct Sample {
  double thread_ns_per_packet = 0;
  double core_ns_per_packet = 0;
  double busy_ns_per_packet = 0;  // fwd: time in non-empty batches
  double pps = 0;
  double delivered_ratio = 0;
  uint64_t packets = 0;
  uint64_t dropped = 0;
};

uint64_t now_ns(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Busy time of one CPU (all but idle and iowait) in nanoseconds, from /proc/stat.
uint64_t cpu_busy_ns(int cpu) {
  std::ifstream stat("/proc/stat");
  std::string line;
  const std::string label = "cpu" + std::to_string(cpu) + " ";
  while (std::getline(stat, line)) {
    if (line.compare(0, label.size(), label) != 0) continue;
    std::istringstream fields(line.substr(label.size()));
    uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    fields >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    const uint64_t ticks = user + nice + system + irq + softirq + steal;
    return ticks * (1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));
  }
  return 0;
}

bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

// rx_packets of an interface in the calling thread's namespace (netlink via getifaddrs).
uint64_t interface_rx_packets(const char* name) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return 0;
  uint64_t packets = 0;
  for (ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_PACKET || entry->ifa_data == nullptr) continue;
    if (std::strcmp(entry->ifa_name, name) == 0) packets = static_cast<const rtnl_link_stats*>(entry->ifa_data)->rx_packets;
  }
  freeifaddrs(list);
  return packets;
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "tx_methods: %s\n", message.c_str());
  std::exit(1);
}

std::unique_ptr<AfPacketPort> open_port(const NetNamespace& ns, const std::string& interface, TxMethod method,
                                        bool bypass) {
  AfPacketOptions options;
  options.interface = interface;
  options.netns_path = ns.path();
  options.tx_method = method;
  options.qdisc_bypass = bypass;
  l4lb::io::PortError error;
  auto port = AfPacketPort::create(options, &error);
  if (!port) die(error.code + ": " + error.message);
  return port;
}

// kBurst frames of `size` bytes, distinct flows, to a MAC nobody owns.
std::vector<Bytes> make_frames(uint32_t size) {
  std::vector<Bytes> frames;
  for (uint32_t i = 0; i < kBurst; ++i) {
    frames.push_back(l4lb::test::PacketBuilder()
                         .ethernet({.dst = {{0x02, 0xbe, 0x0c, 0x00, 0x00, 0x01}}, .src = {{0x02, 0xbe, 0x0c, 0x00, 0x00, 0x02}}})
                         .ipv4({.src = ipv4_addr(198, 18, 0, 1), .dst = ipv4_addr(198, 18, 1, static_cast<uint8_t>(i))})
                         .udp({.src_port = static_cast<uint16_t>(10000 + i), .dst_port = 9})
                         .pad_to(size)
                         .build());
    frames.back().resize(size);
  }
  return frames;
}

std::vector<Frame> frame_descriptors(std::vector<Bytes>& storage) {
  std::vector<Frame> frames;
  for (Bytes& bytes : storage) frames.push_back(Frame{bytes.data(), static_cast<uint32_t>(bytes.size()), 0, 0, 0, 0, 0});
  return frames;
}

Sample run_tx(const NetNamespace& ns, const Config& config, double seconds, int cpu) {
  auto port = open_port(ns, "b", config.method, config.bypass);
  std::vector<Bytes> storage = make_frames(config.frame_size);
  std::vector<Frame> frames = frame_descriptors(storage);
  Sample sample;
  std::thread sender([&] {
    if (!pin_to(cpu)) die("cannot pin to CPU " + std::to_string(cpu));
    NetnsScope inside(ns);
    const uint64_t rx_before = interface_rx_packets("a");
    const uint64_t wall_start = now_ns(CLOCK_MONOTONIC);
    const uint64_t thread_start = now_ns(CLOCK_THREAD_CPUTIME_ID);
    const uint64_t core_start = cpu_busy_ns(cpu);
    const uint64_t wall_end = wall_start + static_cast<uint64_t>(seconds * 1e9);
    uint64_t sent = 0;
    do {
      for (int i = 0; i < 16; ++i) sent += port->tx_burst(frames.data(), kBurst);
    } while (now_ns(CLOCK_MONOTONIC) < wall_end);
    const uint64_t thread_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - thread_start;
    const uint64_t core_ns = cpu_busy_ns(cpu) - core_start;
    const uint64_t wall_ns = now_ns(CLOCK_MONOTONIC) - wall_start;
    usleep(50 * 1000);  // the peer's backlog drains
    const uint64_t delivered = interface_rx_packets("a") - rx_before;
    sample.packets = sent;
    sample.dropped = port->counters().tx_dropped;
    sample.thread_ns_per_packet = static_cast<double>(thread_ns) / static_cast<double>(sent);
    sample.core_ns_per_packet = static_cast<double>(core_ns) / static_cast<double>(sent);
    sample.pps = static_cast<double>(sent) * 1e9 / static_cast<double>(wall_ns);
    sample.delivered_ratio = static_cast<double>(delivered) / static_cast<double>(sent);
  });
  sender.join();
  return sample;
}

// Generator on `generator_cpu`: g0 -> g1. Forwarder on `cpu`: g1 -> s0 -> s1.
Sample run_fwd(const NetNamespace& ns, const Config& config, double seconds, int cpu, int generator_cpu) {
  auto generator = open_port(ns, "g0", TxMethod::ring, false);
  auto ingress = open_port(ns, "g1", config.method, config.bypass);
  auto egress = open_port(ns, "s0", config.method, config.bypass);
  std::vector<Bytes> storage = make_frames(config.frame_size);
  std::vector<Frame> frames = frame_descriptors(storage);
  std::atomic<bool> running{true};
  uint64_t generated = 0;
  std::thread generator_thread([&] {
    pin_to(generator_cpu);
    // Relaxed: a stop flag; nothing else is published through it.
    while (running.load(std::memory_order_relaxed)) generated += generator->tx_burst(frames.data(), kBurst);
  });
  Sample sample;
  std::thread forwarder([&] {
    if (!pin_to(cpu)) die("cannot pin to CPU " + std::to_string(cpu));
    NetnsScope inside(ns);
    const uint8_t macs[12] = {0x02, 0xbe, 0x0c, 0x00, 0x01, 0x01, 0x02, 0xbe, 0x0c, 0x00, 0x01, 0x02};
    Frame batch[kBurst];
    // Warm-up: the generator fills the pipe.
    usleep(100 * 1000);
    const uint64_t rx_before = interface_rx_packets("s1");
    const uint64_t wall_start = now_ns(CLOCK_MONOTONIC);
    const uint64_t thread_start = now_ns(CLOCK_THREAD_CPUTIME_ID);
    const uint64_t core_start = cpu_busy_ns(cpu);
    const uint64_t wall_end = wall_start + static_cast<uint64_t>(seconds * 1e9);
    uint64_t forwarded = 0, busy_ns = 0;
    uint32_t turns = 0;
    for (;;) {
      const uint64_t start = now_ns(CLOCK_MONOTONIC);
      const uint32_t n = ingress->rx_burst(batch, kBurst);
      if (n != 0) {
        for (uint32_t i = 0; i < n; ++i) std::memcpy(batch[i].data, macs, sizeof(macs));
        forwarded += egress->tx_burst(batch, n);
        ingress->rx_done();
        busy_ns += now_ns(CLOCK_MONOTONIC) - start;
      }
      if ((++turns & 63) == 0 && start >= wall_end) break;
    }
    const uint64_t thread_ns = now_ns(CLOCK_THREAD_CPUTIME_ID) - thread_start;
    const uint64_t core_ns = cpu_busy_ns(cpu) - core_start;
    const uint64_t wall_ns = now_ns(CLOCK_MONOTONIC) - wall_start;
    running.store(false, std::memory_order_relaxed);
    usleep(50 * 1000);
    const uint64_t delivered = interface_rx_packets("s1") - rx_before;
    sample.packets = forwarded;
    sample.dropped = ingress->counters().kernel_drops + egress->counters().tx_dropped;
    sample.thread_ns_per_packet = static_cast<double>(thread_ns) / static_cast<double>(forwarded);
    sample.core_ns_per_packet = static_cast<double>(core_ns) / static_cast<double>(forwarded);
    sample.busy_ns_per_packet = static_cast<double>(busy_ns) / static_cast<double>(forwarded);
    sample.pps = static_cast<double>(forwarded) * 1e9 / static_cast<double>(wall_ns);
    sample.delivered_ratio = static_cast<double>(delivered) / static_cast<double>(forwarded);
  });
  forwarder.join();
  generator_thread.join();
  return sample;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "tx";
  double seconds = 2;
  int rounds = 3;
  int cpu = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--mode") mode = argv[i + 1];
    else if (flag == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (flag == "--rounds") rounds = std::atoi(argv[i + 1]);
    else if (flag == "--cpu") cpu = std::atoi(argv[i + 1]);
    else die("unknown flag " + flag);
  }
  if (mode != "tx" && mode != "fwd") die("--mode is tx or fwd");
  const int cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  const int generator_cpu = cpus > 1 ? (cpu + 1) % cpus : cpu;

  NetNamespace ns("bench");
  if (!ns.ok()) die(ns.error());
  ns.sysctl("net/ipv6/conf/all/disable_ipv6", "1");
  ns.sysctl("net/ipv6/conf/default/disable_ipv6", "1");
  const std::vector<std::pair<const char*, const char*>> pairs =
      mode == "tx" ? std::vector<std::pair<const char*, const char*>>{{"a", "b"}}
                   : std::vector<std::pair<const char*, const char*>>{{"g0", "g1"}, {"s0", "s1"}};
  for (const auto& [one, other] : pairs) {
    ns.ip({"link", "add", "name", one, "type", "veth", "peer", "name", other});
    ns.ip({"link", "set", "dev", one, "up"});
    ns.ip({"link", "set", "dev", other, "up"});
  }
  if (!ns.ok()) die(ns.error());

  std::vector<Config> configs;
  for (uint32_t size : {64u, 1500u}) {
    for (bool bypass : {false, true}) {
      for (TxMethod method : {TxMethod::ring, TxMethod::sendmmsg}) configs.push_back(Config{method, bypass, size});
    }
  }
  std::vector<std::vector<Sample>> samples(configs.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t c = 0; c < configs.size(); ++c) {
      samples[c].push_back(mode == "tx" ? run_tx(ns, configs[c], seconds, cpu)
                                        : run_fwd(ns, configs[c], seconds, cpu, generator_cpu));
    }
  }

  std::printf("mode %s, %d rounds x %.1f s, pinned CPU %d of %d, burst %u; medians\n", mode.c_str(), rounds, seconds,
              cpu, cpus, kBurst);
  std::printf("%-22s %12s %12s %12s %12s %10s\n", "method", "thread ns/p", "core ns/p",
              mode == "fwd" ? "busy ns/p" : "-", "Mpps", "delivered");
  for (size_t c = 0; c < configs.size(); ++c) {
    std::vector<double> thread, core, busy, pps, delivered;
    for (const Sample& s : samples[c]) {
      thread.push_back(s.thread_ns_per_packet);
      core.push_back(s.core_ns_per_packet);
      busy.push_back(s.busy_ns_per_packet);
      pps.push_back(s.pps);
      delivered.push_back(s.delivered_ratio);
    }
    std::printf("%-22s %12.0f %12.0f %12.0f %12.3f %9.1f%%\n", configs[c].name().c_str(), median(thread), median(core),
                median(busy), median(pps) / 1e6, 100 * median(delivered));
  }
  return 0;
}

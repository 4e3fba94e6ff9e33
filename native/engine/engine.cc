#include "engine/engine.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstring>

#include "io/bpf_filter.h"

namespace l4lb::engine {

namespace {

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Flow-table slots examined for expiry per batch: bounded so that a batch
// never stalls on a sweep, large enough that a full pass over a
// million-slot table takes seconds, not minutes, under load.
constexpr size_t kExpirySlotsPerBatch = 256;
// Adaptive polling: empty polls before the worker starts to sleep.
constexpr uint32_t kSpinsBeforeSleep = 256;
constexpr int kSleepMs = 1;

}  // namespace

// Drop reasons that are reported as signals through the event ring as well
// as counted: each means the operator (or the control plane) has something
// to do: grow the flow table, resolve a next hop, add local addresses.
struct SignalSource {
  core::DropReason reason;
  shm::EventKind kind;
};
constexpr SignalSource kSignalSources[] = {
    {core::DropReason::flow_table_full, shm::EventKind::flow_table_full},
    {core::DropReason::no_neighbour, shm::EventKind::no_neighbour},
    {core::DropReason::no_route, shm::EventKind::no_route},
    {core::DropReason::no_local_port, shm::EventKind::no_local_port},
    {core::DropReason::tx_full, shm::EventKind::tx_full},
};
constexpr size_t kSignalCount = sizeof(kSignalSources) / sizeof(kSignalSources[0]);

struct Engine::Worker {
  uint32_t index = 0;
  // In the statistics region; this worker is their only writer.
  core::WorkerCounters* counters = nullptr;
  core::FlowCounters* flow_counters = nullptr;
  core::BackendCounters* backend_counters = nullptr;
  shm::EventRingProducer events;
  uint64_t signal_reported[kSignalCount] = {};  // counter value at the last record
  uint64_t signal_time_ns[kSignalCount] = {};   // time of the last record (0 = none yet)
  std::unique_ptr<core::Forwarder> forwarder;
  std::vector<io::Port*> ports;
  const core::RuntimeConfig* config = nullptr;
  // Generation this worker runs: written by the worker (release), read by the
  // control thread (acquire) to know when an old configuration is free.
  alignas(64) std::atomic<uint64_t> running_generation{0};
  std::thread thread;
  core::Frame rx[core::kMaxBurst];
  core::TxBatch tx;
};

Engine::Engine(const EngineOptions& options) : options_(options) {
  options_.workers = std::max<uint32_t>(1, options_.workers);
  stats_ = StatsRegion::create(options_.workers, options_.backend_slots, options_.event_ring_records);
  active_flows_ = stats_->active_flows();

  core::FlowTableOptions flow_options;
  flow_options.slots = options_.flow_slots;
  flow_options.hash_key = core::sip_hash_key_from_bytes(options_.hash_key);
  flow_options.timeouts = options_.timeouts;
  flow_options.events.context = this;
  flow_options.events.flow_added = &Engine::on_flow_added;
  flow_options.events.flow_removed = &Engine::on_flow_removed;
  flows_ = std::make_unique<core::FlowTable>(flow_options);

  memory_ports_.resize(options_.workers);
  take_cursor_.assign(options_.port_count, 0);
  for (uint32_t w = 0; w < options_.workers; ++w) {
    auto worker = std::make_unique<Worker>();
    worker->index = w;
    worker->counters = &stats_->worker_counters(w);
    worker->flow_counters = &stats_->flow_counters(w);
    worker->backend_counters = stats_->backend_counters(w);
    worker->events.attach(stats_->event_ring(w), stats_->event_records(w), stats_->event_capacity());
    if (options_.af_packet_interfaces.empty()) {
      for (uint32_t p = 0; p < options_.port_count; ++p) {
        memory_ports_[w].push_back(std::make_unique<io::MemoryPort>(options_.memory_ring_frames));
        worker->ports.push_back(memory_ports_[w].back().get());
      }
    }
    core::ForwarderResources resources;
    resources.flows = flows_.get();
    resources.counters = worker->counters;
    resources.flow_counters = worker->flow_counters;
    resources.backend_counters = worker->backend_counters;
    resources.backend_slots = options_.backend_slots;
    resources.active_flows = active_flows_;
    resources.worker_index = w;
    resources.worker_count = options_.workers;
    worker->forwarder = std::make_unique<core::Forwarder>(resources);
    workers_.push_back(std::move(worker));
  }
}

Engine::~Engine() { stop(); }

bool Engine::open_ports(io::PortError* error) {
  if (options_.af_packet_interfaces.empty() || !af_packet_ports_.empty()) return true;
  if (options_.af_packet_interfaces.size() != options_.port_count) {
    error->code = "EPORT_OPTIONS";
    error->message = "the engine's port count differs from its interface list";
    return false;
  }
  // Nothing is the balancer's before the first configuration: an ARP-only
  // program with no addresses keeps the rings empty until publish().
  io::BpfFilterSpec nothing_yet;
  nothing_yet.accept_arp = false;
  const io::BpfFilter initial = io::build_bpf_filter(nothing_yet);
  std::vector<std::vector<std::unique_ptr<io::AfPacketPort>>> ports(options_.workers);
  std::vector<int32_t> groups(options_.port_count, io::kFanoutNewGroup);
  for (uint32_t w = 0; w < options_.workers; ++w) {
    for (uint32_t p = 0; p < options_.port_count; ++p) {
      io::AfPacketOptions port_options;
      port_options.interface = options_.af_packet_interfaces[p];
      port_options.rx_block_size = options_.rx_block_size;
      port_options.rx_block_count = options_.rx_block_count;
      port_options.rx_block_timeout_ms = options_.rx_block_timeout_ms;
      port_options.tx_method = options_.tx_method;
      port_options.filter = initial.instructions;
      // One fanout group per interface when several workers share it: the
      // first worker's socket creates it, the others join its id.
      port_options.fanout_group = options_.workers > 1 ? groups[p] : io::kNoFanout;
      if (w < options_.worker_cpus.size()) port_options.cpu = options_.worker_cpus[w];
      auto port = io::AfPacketPort::create(port_options, error);
      if (!port) return false;  // the ports created so far close with `ports`
      if (w == 0 && options_.workers > 1) groups[p] = port->fanout_group();
      ports[w].push_back(std::move(port));
    }
  }
  af_packet_ports_ = std::move(ports);
  for (uint32_t w = 0; w < options_.workers; ++w) {
    for (auto& port : af_packet_ports_[w]) workers_[w]->ports.push_back(port.get());
  }
  if (const core::RuntimeConfig* config = current_.load(std::memory_order_relaxed)) refresh_filters(*config);
  return true;
}

std::vector<io::PortCounters> Engine::port_counters() const {
  std::vector<io::PortCounters> sums(af_packet_ports_.empty() ? 0 : options_.port_count);
  for (const auto& worker_ports : af_packet_ports_) {
    for (size_t p = 0; p < worker_ports.size(); ++p) {
      const io::PortCounters c = worker_ports[p]->counters();
      sums[p].rx_packets += c.rx_packets;
      sums[p].rx_bytes += c.rx_bytes;
      sums[p].tx_packets += c.tx_packets;
      sums[p].tx_bytes += c.tx_bytes;
      sums[p].tx_dropped += c.tx_dropped;
      sums[p].kernel_drops += c.kernel_drops;
    }
  }
  return sums;
}

// The kernel queues only what this configuration makes the balancer's: ARP,
// traffic to VIPs, fullnat local addresses and the ports' own addresses
// (tunnel returns), replies from nat/fullnat backends and from VIPs (dr
// replies routed through the balancer), and ICMP (errors about flows).
void Engine::refresh_filters(const core::RuntimeConfig& config) {
  if (af_packet_ports_.empty()) return;
  const core::SnapshotView& view = config.view();
  io::BpfFilterSpec spec;
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
  const io::BpfFilter filter = io::build_bpf_filter(spec);
  for (uint32_t w = 0; w < af_packet_ports_.size(); ++w) {
    for (auto& port : af_packet_ports_[w]) {
      io::PortError error;
      // A socket that keeps its previous filter still works, with a stale
      // address set: count it for the control plane to report.
      if (!port->replace_filter(filter.instructions, &error)) filter_errors_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

const core::WorkerCounters& Engine::worker_counters(uint32_t worker) const { return *workers_[worker]->counters; }
const core::FlowCounters& Engine::flow_counters(uint32_t worker) const { return *workers_[worker]->flow_counters; }
const core::BackendCounters& Engine::backend_counters(uint32_t worker, uint32_t slot) const {
  return workers_[worker]->backend_counters[slot];
}

void Engine::on_flow_added(void* context, uint32_t backend_id) {
  auto* engine = static_cast<Engine*>(context);
  const uint32_t slot = backend_id & 0xffff;
  if (slot < engine->options_.backend_slots) engine->active_flows_[slot].fetch_add(1, std::memory_order_relaxed);
}

void Engine::on_flow_removed(void* context, uint32_t backend_id) {
  auto* engine = static_cast<Engine*>(context);
  const uint32_t slot = backend_id & 0xffff;
  if (slot < engine->options_.backend_slots) engine->active_flows_[slot].fetch_sub(1, std::memory_order_relaxed);
}

bool Engine::publish(const uint8_t* bytes, size_t size, std::string* error) {
  std::lock_guard<std::mutex> lock(publish_mutex_);
  const core::RuntimeConfig* previous = current_.load(std::memory_order_relaxed);
  core::RuntimeConfigOptions config_options;
  config_options.workers = options_.workers;
  config_options.backend_slots = options_.backend_slots;
  config_options.maglev_table_size = options_.maglev_table_size;
  std::memcpy(config_options.hash_seed, options_.hash_key, sizeof(config_options.hash_seed));
  config_options.active_flows = active_flows_;
  std::unique_ptr<core::RuntimeConfig> config =
      core::RuntimeConfig::build(bytes, size, config_options, previous, error);
  if (!config) return false;
  if (previous != nullptr && config->generation() <= previous->generation()) {
    *error = "snapshot generation must increase";
    return false;
  }
  if (config->view().ports.size() != options_.port_count) {
    *error = "snapshot port count differs from the engine's";
    return false;
  }
  const core::RuntimeConfig* published = config.get();
  configs_.push_back(std::move(config));
  current_.store(published, std::memory_order_release);  // pairs with run_batch's acquire load
  // After the store: a frame the new filter admits finds the configuration
  // that makes it the balancer's.
  refresh_filters(*published);
  reclaim_configs();
  return true;
}

void Engine::reclaim_configs() {
  uint64_t oldest_running = UINT64_MAX;
  for (const auto& worker : workers_) {
    // Pairs with the worker's release store after it switched configuration.
    oldest_running = std::min(oldest_running, worker->running_generation.load(std::memory_order_acquire));
  }
  const core::RuntimeConfig* current = current_.load(std::memory_order_relaxed);
  std::erase_if(configs_, [&](const std::unique_ptr<core::RuntimeConfig>& config) {
    return config.get() != current && config->generation() < oldest_running;
  });
}

void Engine::run_batch(Worker& worker, uint64_t now_ns) {
  const core::RuntimeConfig* config = current_.load(std::memory_order_acquire);  // pairs with publish's release
  if (config != worker.config) {
    worker.config = config;
    worker.forwarder->set_config(config);
    if (config != nullptr) {
      worker.running_generation.store(config->generation(), std::memory_order_release);  // pairs with reclaim's acquire
      core::WorkerCounters::add(worker.counters->config_generation,
                                config->generation() - worker.counters->config_generation.load(std::memory_order_relaxed));
    }
  }
  uint32_t received = 0;
  worker.tx.count = 0;
  worker.forwarder->begin_batch(now_ns);
  for (uint32_t p = 0; p < worker.ports.size(); ++p) {
    io::Port* port = worker.ports[p];
    const uint32_t n = port->rx_burst(worker.rx, core::kMaxBurst);
    if (n == 0) continue;
    received += n;
    for (uint32_t i = 0; i < n; ++i) {
      core::Frame& frame = worker.rx[i];
      frame.ingress_port = static_cast<uint16_t>(p);
      if (config == nullptr) {
        core::WorkerCounters::add(worker.counters->passed);
        continue;
      }
      worker.forwarder->process(frame, worker.tx);
    }
    // Transmit before returning the receive buffers: frames point into them.
    // One kick per egress port per batch.
    for (uint32_t egress = 0; egress < worker.ports.size(); ++egress) {
      core::Frame batch[core::kMaxBurst * 2];
      uint32_t count = 0;
      uint64_t bytes = 0;
      for (uint32_t i = 0; i < worker.tx.count; ++i) {
        if (worker.tx.frames[i].egress_port == egress) {
          batch[count++] = worker.tx.frames[i];
          bytes += worker.tx.frames[i].len;
        }
      }
      if (count == 0) continue;
      const uint32_t sent = worker.ports[egress]->tx_burst(batch, count);
      core::WorkerCounters::add(worker.counters->tx_packets, sent);
      core::WorkerCounters::add(worker.counters->tx_bytes, bytes);
      for (uint32_t i = sent; i < count; ++i) worker.counters->drop(core::DropReason::tx_full);
    }
    worker.tx.count = 0;
    worker.forwarder->begin_batch(now_ns);
    port->rx_done();
  }
  if (received != 0) {
    core::WorkerCounters::add(worker.counters->batches);
  } else {
    core::WorkerCounters::add(worker.counters->idle_polls);
  }
  flows_->expire_step(now_ns / 1'000'000, kExpirySlotsPerBatch, *worker.flow_counters);
  report_signals(worker, now_ns);
}

void Engine::report_signals(Worker& worker, uint64_t now_ns) {
  for (size_t i = 0; i < kSignalCount; ++i) {
    // Own counter (this worker is its writer): relaxed is exact here.
    const uint64_t total =
        worker.counters->drops[static_cast<size_t>(kSignalSources[i].reason)].load(std::memory_order_relaxed);
    if (total == worker.signal_reported[i]) continue;
    if (worker.signal_time_ns[i] != 0 && now_ns - worker.signal_time_ns[i] < options_.signal_interval_ns) continue;
    // A full ring keeps the count for the next attempt; the ring counts the loss.
    if (!worker.events.push(kSignalSources[i].kind, worker.index, now_ns, total - worker.signal_reported[i], total)) {
      continue;
    }
    worker.signal_reported[i] = total;
    worker.signal_time_ns[i] = now_ns == 0 ? 1 : now_ns;
  }
}

bool Engine::post_event(uint32_t worker, shm::EventKind kind, uint64_t time_ns, uint64_t count, uint64_t detail) {
  if (worker >= workers_.size()) return false;
  return workers_[worker]->events.push(kind, worker, time_ns, count, detail);
}

uint32_t Engine::poll(uint64_t now_ns) {
  uint32_t before = 0, after = 0;
  for (auto& worker : workers_) before += static_cast<uint32_t>(worker->counters->rx_packets.load(std::memory_order_relaxed));
  for (auto& worker : workers_) run_batch(*worker, now_ns);
  for (auto& worker : workers_) after += static_cast<uint32_t>(worker->counters->rx_packets.load(std::memory_order_relaxed));
  return after - before;
}

void Engine::worker_loop(Worker& worker) {
  if (worker.index < options_.worker_cpus.size() && options_.worker_cpus[worker.index] >= 0) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(options_.worker_cpus[worker.index], &cpus);
    // Best effort: a CPU outside the process's set leaves the thread unpinned.
    pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
  }
  uint32_t idle = 0;
  while (running_.load(std::memory_order_acquire)) {
    const uint64_t start = monotonic_ns();
    const uint64_t before = worker.counters->rx_packets.load(std::memory_order_relaxed);
    run_batch(worker, start);
    if (worker.counters->rx_packets.load(std::memory_order_relaxed) != before) {
      core::WorkerCounters::add(worker.counters->busy_ns, monotonic_ns() - start);
      idle = 0;
      continue;
    }
    if (options_.polling == Polling::adaptive && ++idle > kSpinsBeforeSleep) {
      // Sleep until a port has frames (ports with a descriptor) or briefly.
      pollfd fds[16];
      nfds_t count = 0;
      for (io::Port* port : worker.ports) {
        if (port->wait_fd() >= 0 && count < 16) fds[count++] = pollfd{port->wait_fd(), POLLIN, 0};
      }
      ::poll(count ? fds : nullptr, count, kSleepMs);
    }
  }
}

void Engine::start() {
  if (!options_.threaded || running_.exchange(true)) return;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    worker->thread = std::thread([this, w] { worker_loop(*w); });
  }
}

void Engine::stop() {
  if (!running_.exchange(false)) return;
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

bool Engine::inject(uint32_t port, const uint8_t* data, uint32_t len, uint32_t frame_flags) {
  if (port >= options_.port_count || !options_.af_packet_interfaces.empty()) return false;
  // Round robin over the workers' rings: replies of a flow land on other
  // workers than its first packet, as with the kernel's fanout.
  for (uint32_t attempt = 0; attempt < options_.workers; ++attempt) {
    const uint32_t w = inject_cursor_++ % options_.workers;
    if (memory_ports_[w][port]->inject(data, len, frame_flags)) return true;
  }
  return false;
}

uint32_t Engine::take(uint32_t port, uint8_t* out, uint32_t capacity) {
  if (port >= options_.port_count || !options_.af_packet_interfaces.empty()) return 0;
  for (uint32_t attempt = 0; attempt < options_.workers; ++attempt) {
    const uint32_t w = take_cursor_[port] % options_.workers;
    const uint32_t len = memory_ports_[w][port]->take(out, capacity);
    if (len != 0) return len;
    ++take_cursor_[port];
  }
  return 0;
}

}  // namespace l4lb::engine

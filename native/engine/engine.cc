#include "engine/engine.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstring>

namespace l4lb::engine {

namespace {

// A slice is at least this many slots, so that small tables (tests) are
// swept within a few ticks whatever the pass time.
constexpr uint64_t kMinExpirySlice = 256;

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
  Worker(Engine& owner, uint32_t port_count) : engine(&owner), tx(port_count, &Engine::transmit, this) {}

  Engine* engine;
  uint32_t index = 0;
  // In the statistics region; this worker is their only writer.
  core::WorkerCounters* counters = nullptr;
  core::FlowCounters* flow_counters = nullptr;
  core::BackendCounters* backend_counters = nullptr;
  shm::EventRingProducer events;
  shm::FlowRingProducer flow_events;  // attached only with flow events
  uint64_t now_ns = 0;                // the clock of the batch or tick being run
  bool flow_events_unsignalled = false;  // records pushed since the reader was last signalled
  uint64_t signal_reported[kSignalCount] = {};  // counter value at the last record
  uint64_t signal_time_ns[kSignalCount] = {};   // time of the last record (0 = none yet)
  std::unique_ptr<core::Forwarder> forwarder;
  std::vector<io::Port*> ports;
  const core::RuntimeConfig* config = nullptr;
  uint64_t next_expiry_ns = 0;
  // Generation this worker runs: written by the worker (release), read by the
  // control thread (acquire) to know when an old configuration is free.
  alignas(64) std::atomic<uint64_t> running_generation{0};
  WaitSet waits;  // threaded mode: what the worker sleeps on
  std::thread thread;
  core::Frame rx[core::kMaxBurst];
  core::TxQueues tx;
};

Engine::Engine(const EngineOptions& options, std::shared_ptr<io::Driver> driver)
    : options_(options), driver_(std::move(driver)) {
  options_.workers = std::max<uint32_t>(1, options_.workers);
  options_.expiry_interval_ms = std::max<uint32_t>(1, options_.expiry_interval_ms);
  options_.expiry_pass_ms = std::max(options_.expiry_interval_ms, options_.expiry_pass_ms);
  stats_ = StatsRegion::create(options_.workers, options_.backend_slots, options_.event_ring_records,
                               options_.flow_event_records);
  active_flows_ = stats_->active_flows();

  core::FlowTableOptions flow_options;
  flow_options.slots = options_.flow_slots;
  flow_options.hash_key = core::sip_hash_key_from_bytes(options_.hash_key);
  flow_options.timeouts = options_.timeouts;
  flow_options.events.context = this;
  flow_options.events.flow_added = &Engine::on_flow_added;
  flow_options.events.flow_removed = &Engine::on_flow_removed;
  if (options_.flow_event_records != 0) {
    flow_options.events.flow_created = &Engine::on_flow_created;
    flow_options.events.flow_ended = &Engine::on_flow_ended;
    flow_options.events.flow_moved = &Engine::on_flow_moved;
  }
  flows_ = std::make_unique<core::FlowTable>(flow_options);
  if (options_.flow_event_records != 0) flow_accounts_ = std::make_unique<core::FlowAccount[]>(flows_->slot_count());
  const uint64_t ticks_per_pass = options_.expiry_pass_ms / options_.expiry_interval_ms;
  expiry_slice_ = std::max<uint64_t>(kMinExpirySlice, flows_->slot_count() / ticks_per_pass / options_.workers + 1);

  for (uint32_t w = 0; w < options_.workers; ++w) {
    auto worker = std::make_unique<Worker>(*this, driver_->port_count());
    worker->index = w;
    worker->counters = &stats_->worker_counters(w);
    worker->flow_counters = &stats_->flow_counters(w);
    worker->backend_counters = stats_->backend_counters(w);
    worker->events.attach(stats_->event_ring(w), stats_->event_records(w), stats_->event_capacity());
    if (stats_->flow_event_capacity() != 0) {
      worker->flow_events.attach(stats_->flow_ring(w), stats_->flow_records(w), stats_->flow_event_capacity());
    }
    workers_.push_back(std::move(worker));
  }
}

Engine::~Engine() { stop(); }

bool Engine::open_ports(io::PortError* error) {
  if (ports_open_) return true;
  if (!driver_->open(options_.workers, error)) return false;
  const uint32_t ports = driver_->port_count();
  for (auto& worker : workers_) {
    core::ForwarderResources resources;
    resources.flows = flows_.get();
    resources.counters = worker->counters;
    resources.flow_counters = worker->flow_counters;
    resources.backend_counters = worker->backend_counters;
    resources.backend_slots = options_.backend_slots;
    resources.active_flows = active_flows_;
    resources.worker_index = worker->index;
    resources.flow_accounts = flow_accounts_.get();
    resources.flow_account_count = flow_accounts_ ? flows_->slot_count() : 0;
    resources.worker_count = options_.workers;
    for (uint32_t p = 0; p < ports; ++p) {
      io::Port& port = driver_->port(worker->index, p);
      worker->ports.push_back(&port);
      const io::PortCapabilities capabilities = port.capabilities();
      resources.egress_offloads.push_back({capabilities.checksum_offload, capabilities.segmentation_offload});
    }
    worker->forwarder = std::make_unique<core::Forwarder>(resources);
    if (worker->config != nullptr) worker->forwarder->set_config(worker->config);
  }
  ports_open_ = true;
  if (const core::RuntimeConfig* config = current_.load(std::memory_order_relaxed)) driver_->configure(config->view());
  return true;
}

const core::WorkerCounters& Engine::worker_counters(uint32_t worker) const { return *workers_[worker]->counters; }
const core::FlowCounters& Engine::flow_counters(uint32_t worker) const { return *workers_[worker]->flow_counters; }
const core::BackendCounters& Engine::backend_counters(uint32_t worker, uint32_t slot) const {
  return workers_[worker]->backend_counters[slot];
}

void Engine::on_flow_added(void* context, uint32_t backend_id) {
  auto* engine = static_cast<Engine*>(context);
  engine->tracked_flows_.fetch_add(1, std::memory_order_relaxed);
  const uint32_t slot = backend_id & 0xffff;
  if (slot < engine->options_.backend_slots) engine->active_flows_[slot].fetch_add(1, std::memory_order_relaxed);
}

void Engine::on_flow_removed(void* context, uint32_t backend_id) {
  auto* engine = static_cast<Engine*>(context);
  engine->tracked_flows_.fetch_sub(1, std::memory_order_relaxed);
  const uint32_t slot = backend_id & 0xffff;
  if (slot < engine->options_.backend_slots) engine->active_flows_[slot].fetch_sub(1, std::memory_order_relaxed);
}

thread_local Engine::Worker* Engine::current_worker_ = nullptr;

void Engine::on_flow_created(void* context, const core::FlowNotice& notice) {
  auto* engine = static_cast<Engine*>(context);
  if (notice.slot < engine->flows_->slot_count()) {
    // Not yet visible to any other worker: plain relaxed stores suffice.
    core::FlowAccount& account = engine->flow_accounts_[notice.slot];
    account.created_ms.store(notice.last_seen_ms, std::memory_order_relaxed);
    account.packets_in.store(0, std::memory_order_relaxed);
    account.bytes_in.store(0, std::memory_order_relaxed);
    account.packets_out.store(0, std::memory_order_relaxed);
    account.bytes_out.store(0, std::memory_order_relaxed);
  }
  engine->push_flow_event(shm::FlowEventKind::created, notice, nullptr);
}

void Engine::on_flow_ended(void* context, const core::FlowNotice& notice) {
  auto* engine = static_cast<Engine*>(context);
  const core::FlowAccount* account = notice.slot < engine->flows_->slot_count() ? &engine->flow_accounts_[notice.slot] : nullptr;
  engine->push_flow_event(shm::FlowEventKind::ended, notice, account);
}

void Engine::on_flow_moved(void* context, uint32_t from_slot, uint32_t to_slot) {
  auto* engine = static_cast<Engine*>(context);
  const size_t slots = engine->flows_->slot_count();
  if (from_slot >= slots || to_slot >= slots) return;
  core::FlowAccount& from = engine->flow_accounts_[from_slot];
  core::FlowAccount& to = engine->flow_accounts_[to_slot];
  to.created_ms.store(from.created_ms.load(std::memory_order_relaxed), std::memory_order_relaxed);
  to.packets_in.store(from.packets_in.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  to.bytes_in.store(from.bytes_in.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  to.packets_out.store(from.packets_out.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
  to.bytes_out.store(from.bytes_out.exchange(0, std::memory_order_relaxed), std::memory_order_relaxed);
}

void Engine::push_flow_event(shm::FlowEventKind kind, const core::FlowNotice& notice, const core::FlowAccount* account) {
  Worker* worker = current_worker_;
  if (worker == nullptr || !worker->flow_events.attached()) return;
  shm::FlowEventRecord record{};
  record.kind = static_cast<uint8_t>(kind);
  record.reason = kind == shm::FlowEventKind::ended ? static_cast<uint8_t>(notice.reason) : 0;
  record.protocol = notice.key.protocol;
  record.family = notice.key.family;
  record.worker = worker->index;
  record.time_ns = worker->now_ns;
  record.backend_id = notice.backend_id;
  std::memcpy(record.src_addr, notice.key.src_addr, sizeof(record.src_addr));
  std::memcpy(record.dst_addr, notice.key.dst_addr, sizeof(record.dst_addr));
  record.src_port = notice.key.src_port;
  record.dst_port = notice.key.dst_port;
  if (account != nullptr) {
    // Both stamps are low 32 bits of a worker's millisecond clock.
    record.duration_ms = notice.last_seen_ms - static_cast<uint32_t>(account->created_ms.load(std::memory_order_relaxed));
    record.packets_in = account->packets_in.load(std::memory_order_relaxed);
    record.bytes_in = account->bytes_in.load(std::memory_order_relaxed);
    record.packets_out = account->packets_out.load(std::memory_order_relaxed);
    record.bytes_out = account->bytes_out.load(std::memory_order_relaxed);
  }
  // A full ring drops the record and counts it (`lost`): flow events are
  // lossy by design, the packet path never waits for the reader. The reader
  // is signalled after the batch (signal_flow_events): this runs inside the
  // flow table's insert or delete, some of it under its stripe locks.
  if (worker->flow_events.push(record)) worker->flow_events_unsignalled = true;
}

void Engine::signal_flow_events(Worker& worker) {
  if (!worker.flow_events_unsignalled) return;
  worker.flow_events_unsignalled = false;
  if (events_listener_ && !events_pending_.exchange(true, std::memory_order_seq_cst)) events_listener_();
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
  if (config->view().ports.size() != driver_->port_count()) {
    *error = "snapshot port count differs from the engine's";
    return false;
  }
  const core::RuntimeConfig* published = config.get();
  configs_.push_back(std::move(config));
  current_.store(published, std::memory_order_release);  // pairs with run_batch's acquire load
  // After the store: a frame the new selection admits finds the configuration
  // that makes it the balancer's.
  if (ports_open_) driver_->configure(published->view());
  wake_workers();
  reclaim_configs();
  return true;
}

void Engine::wake_workers() {
  for (auto& worker : workers_) worker->waits.wake();
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

void Engine::transmit(void* context, uint16_t port, core::Frame* frames, uint32_t count) {
  auto* worker = static_cast<Worker*>(context);
  const io::TxResult sent = worker->ports[port]->tx_burst(frames, count);
  core::WorkerCounters::add(worker->counters->tx_packets, sent.packets);
  core::WorkerCounters::add(worker->counters->tx_bytes, sent.bytes);
  for (uint32_t i = sent.packets; i < count; ++i) worker->counters->drop(core::DropReason::tx_full);
}

void Engine::adopt_config(Worker& worker) {
  const core::RuntimeConfig* config = current_.load(std::memory_order_acquire);  // pairs with publish's release
  if (config == worker.config) return;
  worker.config = config;
  worker.forwarder->set_config(config);
  if (config != nullptr) {
    worker.running_generation.store(config->generation(), std::memory_order_release);  // pairs with reclaim's acquire
    core::WorkerCounters::add(worker.counters->config_generation,
                              config->generation() - worker.counters->config_generation.load(std::memory_order_relaxed));
  }
}

uint32_t Engine::run_batch(Worker& worker, uint64_t now_ns) {
  current_worker_ = &worker;
  worker.now_ns = now_ns;
  adopt_config(worker);  // idle workers adopt too (stats show the generation)
  uint32_t received = 0;
  for (uint32_t p = 0; p < worker.ports.size(); ++p) {
    const uint32_t n = worker.ports[p]->rx_burst(worker.rx, core::kMaxBurst);
    if (n == 0) continue;
    // Again after the receive: a frame that arrived after a publication
    // returned (its ring's release/acquire orders it after the publication)
    // is handled by that configuration or a newer one, never an older one.
    adopt_config(worker);
    for (uint32_t i = 0; i < n; ++i) worker.rx[i].ingress_port = static_cast<uint16_t>(p);
    received += n;
    worker.forwarder->begin_batch(now_ns);
    worker.forwarder->process_burst(worker.rx, n, worker.tx);
    // One kick per egress port per burst (more only when a queue filled).
    worker.tx.flush_all();
  }
  if (received != 0) {
    core::WorkerCounters::add(worker.counters->batches);
    report_signals(worker, now_ns);
    signal_flow_events(worker);
  } else {
    core::WorkerCounters::add(worker.counters->idle_polls);
  }
  return received;
}

void Engine::run_timers(Worker& worker, uint64_t now_ns) {
  if (now_ns < worker.next_expiry_ns) return;
  worker.next_expiry_ns = now_ns + static_cast<uint64_t>(options_.expiry_interval_ms) * 1'000'000ull;
  current_worker_ = &worker;
  worker.now_ns = now_ns;
  core::WorkerCounters::add(worker.counters->expiry_ticks);
  flows_->expire_step(now_ns / 1'000'000, expiry_slice_, *worker.flow_counters);
  report_signals(worker, now_ns);
  signal_flow_events(worker);
}

void Engine::report_signals(Worker& worker, uint64_t now_ns) {
  for (size_t i = 0; i < kSignalCount; ++i) {
    // Own counter (this worker is its writer): relaxed is exact here.
    const uint64_t total =
        worker.counters->drops[static_cast<size_t>(kSignalSources[i].reason)].load(std::memory_order_relaxed);
    if (total == worker.signal_reported[i]) continue;
    if (worker.signal_time_ns[i] != 0 && now_ns - worker.signal_time_ns[i] < options_.signal_interval_ns) continue;
    // A full ring keeps the count for the next attempt; the ring counts the loss.
    if (!push_event(worker, kSignalSources[i].kind, now_ns, total - worker.signal_reported[i], total)) continue;
    worker.signal_reported[i] = total;
    worker.signal_time_ns[i] = now_ns == 0 ? 1 : now_ns;
  }
}

bool Engine::post_event(uint32_t worker, shm::EventKind kind, uint64_t time_ns, uint64_t count, uint64_t detail) {
  if (worker >= workers_.size()) return false;
  return push_event(*workers_[worker], kind, time_ns, count, detail);
}

bool Engine::push_event(Worker& worker, shm::EventKind kind, uint64_t time_ns, uint64_t count, uint64_t detail) {
  if (!worker.events.push(kind, worker.index, time_ns, count, detail)) return false;
  // After the record is published (the ring's release store of its tail):
  // a reader that clears the mark and then reads the rings sees it.
  if (events_listener_ && !events_pending_.exchange(true, std::memory_order_seq_cst)) events_listener_();
  return true;
}

bool Engine::explain(const core::FlowKey& key, uint64_t now_ns, FlowExplanation* out) const {
  *out = FlowExplanation{};
  const core::RuntimeConfig* config = current_.load(std::memory_order_relaxed);  // control thread: its own store
  out->hash = flows_->hash(key);
  out->now_ms = now_ns / 1'000'000;
  if (config == nullptr) return false;
  out->configured = true;
  const core::SnapshotView& view = config->view();
  const uint32_t dst = key.dst_ipv4();
  const uint32_t src = key.src_ipv4();
  bool expired = false;
  if (flows_->peek(key, out->hash, out->now_ms, &out->flow, &expired) && out->flow.kind == core::FlowEntryKind::forward) {
    out->tracked = true;
    out->tracked_expired = expired;
    out->flow_backend_index = config->backend_index_by_id(out->flow.backend_id);
  }
  const shm::SnapshotService* service = view.find_service(dst, key.dst_port, key.protocol);
  if (service == nullptr) return true;
  out->service_index = static_cast<uint32_t>(service - view.services.data());
  if (service->flags & shm::kServicePersistent) {
    uint8_t client[4] = {static_cast<uint8_t>(src >> 24), static_cast<uint8_t>(src >> 16), static_cast<uint8_t>(src >> 8),
                         static_cast<uint8_t>(src)};
    const core::FlowKey template_key = core::FlowKey::persistence_template(service->id, core::FlowKey::kIpv4, client);
    if (flows_->peek(template_key, flows_->hash(template_key), out->now_ms, &out->persistence, &expired)) {
      out->persisted = true;
      out->persisted_expired = expired;
      out->persistence_backend_index = config->backend_index_by_id(out->persistence.backend_id);
    }
  }
  out->pick = config->explain_pick(out->service_index, out->hash, src);
  return true;
}

uint32_t Engine::poll(uint64_t now_ns) {
  uint32_t received = 0;
  for (auto& worker : workers_) {
    if (worker->forwarder == nullptr) continue;  // ports not open
    received += run_batch(*worker, now_ns);
    run_timers(*worker, now_ns);
  }
  return received;
}

// Sleeps until a port announces frames, the control thread wakes the worker,
// or (only while flows are tracked) the next expiry tick is due. False if
// epoll failed.
bool Engine::sleep_until_work(Worker& worker, uint64_t now_ns) {
  const bool expiry_due = tracked_flows_.load(std::memory_order_relaxed) > 0;
  const bool slept = worker.waits.sleep(expiry_due ? std::max(worker.next_expiry_ns, now_ns + 1) : 0);
  if (slept) core::WorkerCounters::add(worker.counters->wakeups);
  return slept;
}

void Engine::worker_loop(Worker& worker) {
  if (worker.index < options_.worker_cpus.size() && options_.worker_cpus[worker.index] >= 0) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(options_.worker_cpus[worker.index], &cpus);
    // Best effort: a CPU outside the process's set leaves the thread unpinned.
    pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
  }
  uint64_t last_frame_ns = monotonic_ns();
  while (running_.load(std::memory_order_acquire)) {
    const uint64_t start = monotonic_ns();
    if (run_batch(worker, start) != 0) {
      const uint64_t end = monotonic_ns();
      core::WorkerCounters::add(worker.counters->busy_ns, end - start);
      last_frame_ns = end;
      run_timers(worker, end);
      continue;
    }
    run_timers(worker, start);
    if (options_.polling == Polling::busy || start - last_frame_ns < options_.spin_ns) {
      cpu_relax();
      continue;
    }
    if (!sleep_until_work(worker, start)) {
      // epoll itself failed (never seen): do not spin on the error.
      timespec nap{0, 1'000'000};
      nanosleep(&nap, nullptr);
    }
    last_frame_ns = monotonic_ns();
  }
}

void Engine::start() {
  if (running_.exchange(true)) return;
  if (!options_.threaded || !ports_open_) {
    running_.store(false);
    return;
  }
  for (auto& worker : workers_) {
    // Without a wait set the worker still runs, napping between empty polls.
    if (!worker->waits.is_open()) worker->waits.open(worker->ports);
  }
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    worker->thread = std::thread([this, w] { worker_loop(*w); });
  }
}

void Engine::stop() {
  if (!running_.exchange(false)) return;
  wake_workers();
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

}  // namespace l4lb::engine

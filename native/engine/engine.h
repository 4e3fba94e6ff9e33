// The engine: owns the ports, the shared flow table, the per-worker
// forwarders and counters, and the configuration slots. Workers are threads
// (threaded mode) or are stepped by the caller (manual mode, for
// deterministic tests and micro benchmarks); the packet path is the same.
//
// Configuration publication (see docs/shared-memory.md): the control thread
// builds a RuntimeConfig off the packet path, then publishes its pointer with
// a release store. Each worker, at a batch boundary, loads it with acquire
// (pairs with that release: everything the builder wrote is visible) and then
// stores the generation it runs with release. The control thread frees an old
// configuration only when every worker's running generation (acquire loads,
// pairing with those releases) is past it: no worker can still be reading it.
//
// Counters live in the statistics region (stats_region.h), which TypeScript
// reads as an external ArrayBuffer; each worker also reports rate-limited
// data-plane signals through its own event ring there.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/counters.h"
#include "core/flow_table.h"
#include "core/forward.h"
#include "core/runtime_config.h"
#include "io/af_packet.h"
#include "io/memory_port.h"
#include "io/port.h"
#include "engine/stats_region.h"
#include "shm/event_ring.h"

namespace l4lb::engine {

enum class Polling : uint8_t {
  busy,      // spin: a dedicated core at 100%
  adaptive,  // spin briefly when idle, then sleep in poll() (or a short nap)
};

struct EngineOptions {
  uint32_t workers = 1;
  uint32_t port_count = 1;
  bool threaded = false;
  Polling polling = Polling::adaptive;
  uint32_t flow_slots = 1u << 16;
  core::FlowTimeouts timeouts;
  uint32_t backend_slots = 4096;
  uint32_t maglev_table_size = 65537;
  uint32_t memory_ring_frames = 1024;
  uint32_t event_ring_records = StatsRegion::kDefaultEventCapacity;  // per worker
  // Minimum time between two event records of one kind from one worker:
  // a flood of drops becomes one record per interval carrying the count.
  uint64_t signal_interval_ns = 100'000'000;
  uint8_t hash_key[16] = {};  // secret; the addon fills it from a CSPRNG

  // AF_PACKET driver: port i is interface af_packet_interfaces[i] (in the
  // calling thread's network namespace); empty means memory ports. Each
  // worker opens one socket per interface; the workers of an interface
  // share it through a PACKET_FANOUT group (symmetric flow hash).
  std::vector<std::string> af_packet_interfaces;
  io::TxMethod tx_method = io::kDefaultTxMethod;
  uint32_t rx_block_size = 1u << 18;
  uint32_t rx_block_count = 32;
  uint32_t rx_block_timeout_ms = 1;
  // Worker i runs on CPU worker_cpus[i] when given (sched_setaffinity).
  std::vector<int32_t> worker_cpus;
};

class Engine {
 public:
  explicit Engine(const EngineOptions& options);
  ~Engine();

  // Opens the AF_PACKET sockets (no-op for memory ports). Until the first
  // publish their filter accepts nothing, so nothing queues before the
  // balancer knows what is its. False with *error set; nothing stays open.
  bool open_ports(io::PortError* error);
  // Per-port AF_PACKET counters summed over workers (empty for memory ports).
  std::vector<io::PortCounters> port_counters() const;
  uint64_t filter_errors() const { return filter_errors_.load(std::memory_order_relaxed); }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Control thread. Validates and adopts a snapshot; false with *error set
  // (nothing changes) when it is invalid or its generation does not increase.
  bool publish(const uint8_t* bytes, size_t size, std::string* error);

  // Manual mode: runs one batch of every worker on the calling thread, with
  // the given clock. Returns the frames received.
  uint32_t poll(uint64_t now_ns);

  // Threaded mode: starts / stops the worker threads (stop is idempotent).
  void start();
  void stop();

  // Memory driver: inject a frame arriving on `port` (spread over the
  // workers' receive rings in turn) and take frames transmitted on `port`.
  bool inject(uint32_t port, const uint8_t* data, uint32_t len, uint32_t frame_flags);
  uint32_t take(uint32_t port, uint8_t* out, uint32_t capacity);

  const EngineOptions& options() const { return options_; }
  const core::WorkerCounters& worker_counters(uint32_t worker) const;
  const core::FlowCounters& flow_counters(uint32_t worker) const;
  const core::BackendCounters& backend_counters(uint32_t worker, uint32_t slot) const;
  int32_t active_flows(uint32_t slot) const { return active_flows_[slot].load(std::memory_order_relaxed); }
  // The statistics region (counters, active flows, event rings), shared with
  // whoever holds a reference; it outlives the engine while referenced.
  std::shared_ptr<StatsRegion> stats_region() const { return stats_; }
  // Worker thread `worker` only (its ring has one producer): reports a
  // data-plane signal that is not a drop counter (a port error, for one).
  bool post_event(uint32_t worker, shm::EventKind kind, uint64_t time_ns, uint64_t count, uint64_t detail);
  core::FlowOccupancy flow_occupancy() const { return flows_->occupancy(); }
  // The configuration most recently published (control thread only).
  const core::RuntimeConfig* current_config() const { return current_.load(std::memory_order_relaxed); }

 private:
  struct Worker;

  void run_batch(Worker& worker, uint64_t now_ns);
  void worker_loop(Worker& worker);
  void reclaim_configs();
  void report_signals(Worker& worker, uint64_t now_ns);
  static void on_flow_added(void* context, uint32_t backend_id);
  static void on_flow_removed(void* context, uint32_t backend_id);

  EngineOptions options_;
  std::shared_ptr<StatsRegion> stats_;      // declared first: outlives everything that points into it
  std::atomic<int32_t>* active_flows_ = nullptr;  // in stats_
  std::unique_ptr<core::FlowTable> flows_;
  std::vector<std::unique_ptr<Worker>> workers_;
  void refresh_filters(const core::RuntimeConfig& config);

  // Memory ports: [worker][port], or AF_PACKET ports: [worker][port].
  std::vector<std::vector<std::unique_ptr<io::MemoryPort>>> memory_ports_;
  std::vector<std::vector<std::unique_ptr<io::AfPacketPort>>> af_packet_ports_;
  uint32_t inject_cursor_ = 0;           // next worker ring for inject (control thread)
  std::vector<uint32_t> take_cursor_;    // per port

  std::mutex publish_mutex_;  // serialises control-thread publishers; never taken by workers
  std::vector<std::unique_ptr<core::RuntimeConfig>> configs_;  // current + not yet reclaimed
  std::atomic<const core::RuntimeConfig*> current_{nullptr};
  std::atomic<bool> running_{false};
  std::atomic<uint64_t> filter_errors_{0};  // BPF filter replacements the kernel refused
};

}  // namespace l4lb::engine

// The engine: owns the shared flow table, the per-worker forwarders and
// counters, and the configuration slots; its ports come from a driver
// (io::Driver) and are known only through io::Port. Workers are threads
// (threaded mode) or are stepped by the caller (manual mode, for
// deterministic tests and micro benchmarks); the packet path is the same.
//
// Configuration publication (see docs/shared-memory.md): the control thread
// builds a RuntimeConfig off the packet path, then publishes its pointer with
// a release store and wakes every worker. Each worker, at a batch boundary,
// loads it with acquire (pairs with that release: everything the builder
// wrote is visible) and then stores the generation it runs with release. The
// control thread frees an old configuration only when every worker's running
// generation (acquire loads, pairing with those releases) is past it: no
// worker can still be reading it.
//
// Waking (threaded mode, adaptive polling): a worker keeps polling for
// `spin_ns` after the last frame it received, then sleeps in epoll_wait on
// its ports' descriptors, an eventfd (new configuration, stop) and, only
// while flows are tracked, a timerfd for the next expiry tick. An idle
// worker with an empty table sleeps until something arrives.
//
// Counters live in the statistics region (stats_region.h), which TypeScript
// reads as an external ArrayBuffer; each worker also reports rate-limited
// data-plane signals through its own event ring there.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/counters.h"
#include "core/flow_table.h"
#include "core/forward.h"
#include "core/runtime_config.h"
#include "engine/stats_region.h"
#include "engine/wait_set.h"
#include "io/driver.h"
#include "io/port.h"
#include "shm/event_ring.h"

namespace l4lb::engine {

enum class Polling : uint8_t {
  busy,      // spin: a dedicated core at 100%
  adaptive,  // spin for spin_ns after traffic, then sleep until a port has frames
};

// Why a flow goes where it goes (Engine::explain): the facts the control
// plane turns into an explanation. Backend indexes are global indexes into
// the current configuration's backends (shm::kNone: none).
struct FlowExplanation {
  bool configured = false;              // a configuration is in force
  uint64_t hash = 0;                    // the flow table's keyed hash of the tuple
  uint64_t now_ms = 0;
  uint32_t service_index = UINT32_MAX;  // the service the tuple is for, or UINT32_MAX
  bool tracked = false;                 // a flow entry holds the tuple
  bool tracked_expired = false;         // ...timed out, not yet removed: a packet starts a new flow
  core::Flow flow{};
  uint32_t flow_backend_index = UINT32_MAX;
  bool persisted = false;               // the client has a persistence template for the service
  bool persisted_expired = false;
  core::Flow persistence{};
  uint32_t persistence_backend_index = UINT32_MAX;
  core::PickReport pick{};              // what the scheduler would do for a new flow
};

struct EngineOptions {
  uint32_t workers = 1;
  bool threaded = false;
  Polling polling = Polling::adaptive;
  // Adaptive polling: how long a worker keeps polling after its last frame
  // before it sleeps. Long enough to catch the next packet of a burst
  // without a wake-up, short enough that a lone packet does not cost a
  // spinning core for long.
  uint64_t spin_ns = 50'000;
  // Flow expiry runs from a timer, never in empty polls: every
  // expiry_interval_ms each worker examines its share of a slice sized so
  // that a full pass over the table takes about expiry_pass_ms. Timeouts are
  // tens of seconds or more (10 s for closed TCP flows), and a lookup or an
  // insert that meets an expired entry removes it at once, so the sweep only
  // has to return idle flows' memory and counts within a pass of 30 s.
  uint32_t expiry_interval_ms = 100;
  uint32_t expiry_pass_ms = 30'000;
  uint32_t flow_slots = 1u << 16;
  core::FlowTimeouts timeouts;
  uint32_t backend_slots = 4096;
  uint32_t maglev_table_size = 65537;
  uint32_t event_ring_records = StatsRegion::kDefaultEventCapacity;  // per worker
  // Flow events (opt-in): records per worker ring of flows created and
  // ended, with per-flow counts kept by slot (40 bytes per flow-table slot).
  // 0: no flow events, nothing counted per flow.
  uint32_t flow_event_records = 0;
  // Minimum time between two event records of one kind from one worker:
  // a flood of drops becomes one record per interval carrying the count.
  uint64_t signal_interval_ns = 100'000'000;
  uint8_t hash_key[16] = {};  // secret; the addon fills it from a CSPRNG
  // Worker i runs on CPU worker_cpus[i] when given (sched_setaffinity).
  std::vector<int32_t> worker_cpus;
};

class Engine {
 public:
  // The driver's ports become the engine's ports (open_ports()).
  Engine(const EngineOptions& options, std::shared_ptr<io::Driver> driver);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Has the driver create its ports. Until the first publish they queue
  // nothing. False with *error set; nothing stays open.
  bool open_ports(io::PortError* error);
  io::Driver& driver() const { return *driver_; }
  uint32_t port_count() const { return driver_->port_count(); }

  // Control thread. Validates and adopts a snapshot, wakes the workers;
  // false with *error set (nothing changes) when it is invalid or its
  // generation does not increase.
  bool publish(const uint8_t* bytes, size_t size, std::string* error);

  // Manual mode: runs one batch of every worker on the calling thread, with
  // the given clock (and an expiry step when one is due). Returns the frames
  // received.
  uint32_t poll(uint64_t now_ns);

  // Threaded mode: starts / stops the worker threads (stop is idempotent).
  void start();
  void stop();

  const EngineOptions& options() const { return options_; }
  const core::WorkerCounters& worker_counters(uint32_t worker) const;
  const core::FlowCounters& flow_counters(uint32_t worker) const;
  const core::BackendCounters& backend_counters(uint32_t worker, uint32_t slot) const;
  int32_t active_flows(uint32_t slot) const { return active_flows_[slot].load(std::memory_order_relaxed); }
  // Flows tracked now (forward entries; persistence templates are not flows).
  int64_t tracked_flows() const { return tracked_flows_.load(std::memory_order_relaxed); }
  // The statistics region (counters, active flows, event rings), shared with
  // whoever holds a reference; it outlives the engine while referenced.
  std::shared_ptr<StatsRegion> stats_region() const { return stats_; }
  // Worker thread `worker` only (its ring has one producer): reports a
  // data-plane signal that is not a drop counter (a port error, for one).
  bool post_event(uint32_t worker, shm::EventKind kind, uint64_t time_ns, uint64_t count, uint64_t detail);
  core::FlowOccupancy flow_occupancy() const { return flows_->occupancy(); }
  const core::FlowTable& flow_table() const { return *flows_; }

  // The reader of the event rings sleeps until there is news: `listener` is
  // called (from a worker thread, or the caller of poll()/post_event) when a
  // record lands while the rings are marked drained, then not again until
  // the reader calls events_drained(), which it does before it reads the
  // rings, so a record pushed during a read calls it once more. Set before
  // start(); the listener must be cheap and thread-safe (it only signals).
  void set_events_listener(std::function<void()> listener) { events_listener_ = std::move(listener); }
  void events_drained() { events_pending_.store(false, std::memory_order_seq_cst); }
  // Control thread (it alone frees configurations): the flow entry,
  // persistence template and scheduler choice for an IPv4 tuple seen as a
  // client's packet (client -> VIP), read without changing anything. False
  // when no configuration is published yet.
  bool explain(const core::FlowKey& key, uint64_t now_ns, FlowExplanation* out) const;
  // The configuration most recently published (control thread only).
  const core::RuntimeConfig* current_config() const { return current_.load(std::memory_order_relaxed); }

 private:
  struct Worker;
  // The worker whose batch or tick runs on this thread: flow-table events are
  // reported from inside its calls, and its rings are theirs (one producer).
  // Null on other threads (the control thread only reads the table).
  static thread_local Worker* current_worker_;

  void adopt_config(Worker& worker);
  uint32_t run_batch(Worker& worker, uint64_t now_ns);
  void run_timers(Worker& worker, uint64_t now_ns);
  void worker_loop(Worker& worker);
  bool sleep_until_work(Worker& worker, uint64_t now_ns);
  void wake_workers();
  void reclaim_configs();
  void report_signals(Worker& worker, uint64_t now_ns);
  bool push_event(Worker& worker, shm::EventKind kind, uint64_t time_ns, uint64_t count, uint64_t detail);
  static void transmit(void* context, uint16_t port, core::Frame* frames, uint32_t count);
  static void on_flow_added(void* context, uint32_t backend_id);
  static void on_flow_removed(void* context, uint32_t backend_id);
  static void on_flow_created(void* context, const core::FlowNotice& notice);
  static void on_flow_ended(void* context, const core::FlowNotice& notice);
  static void on_flow_moved(void* context, uint32_t from_slot, uint32_t to_slot);
  void push_flow_event(shm::FlowEventKind kind, const core::FlowNotice& notice, const core::FlowAccount* account);
  void signal_flow_events(Worker& worker);

  EngineOptions options_;
  std::shared_ptr<io::Driver> driver_;
  std::shared_ptr<StatsRegion> stats_;      // declared early: outlives everything that points into it
  std::atomic<int32_t>* active_flows_ = nullptr;  // in stats_
  std::atomic<int64_t> tracked_flows_{0};
  std::unique_ptr<core::FlowTable> flows_;
  // Flow events: per-flow counts by forward slot (null without flow events).
  std::unique_ptr<core::FlowAccount[]> flow_accounts_;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool ports_open_ = false;
  uint64_t expiry_slice_ = 0;  // slots per worker per tick

  std::mutex publish_mutex_;  // serialises control-thread publishers; never taken by workers
  std::vector<std::unique_ptr<core::RuntimeConfig>> configs_;  // current + not yet reclaimed
  std::atomic<const core::RuntimeConfig*> current_{nullptr};
  std::atomic<bool> running_{false};
  std::function<void()> events_listener_;
  // True from the first record after events_drained() until the next call:
  // one listener call per read, however many records arrive.
  std::atomic<bool> events_pending_{false};
};

}  // namespace l4lb::engine

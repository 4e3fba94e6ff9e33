// Micro benchmark kernels: the packet core's pieces run in native loops of
// `iterations`, so that a JavaScript benchmark harness timing one call
// measures the work and not the N-API crossing (divide by the iterations).
// Nothing here touches the network.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/flow_table.h"
#include "core/sched/scheduler.h"
#include "engine/engine.h"
#include "io/memory_port.h"

namespace l4lb::bench {

// Picks for new flows from one built scheduler (flow hashes vary per pick).
class SchedulerPickKernel {
 public:
  // nullptr with *error set for an unknown kind or a failed build.
  static std::unique_ptr<SchedulerPickKernel> create(const std::string& kind, uint32_t backends, std::string* error);
  uint64_t run(uint32_t iterations);

 private:
  std::unique_ptr<std::atomic<int32_t>[]> active_flows_;
  std::unique_ptr<core::sched::Scheduler> scheduler_;
  core::sched::PickState state_;
  uint64_t seed_ = 0x9e3779b97f4a7c15ull;
};

// A flow table holding `flows` nat flows (forward + reverse entries) in
// `slots` slots; lookups of tracked and of unknown tuples, and inserts of new
// flows, each removed again so that the load stays where it was.
class FlowTableKernel {
 public:
  FlowTableKernel(uint32_t slots, uint32_t flows);
  uint64_t lookup_hits(uint32_t iterations);
  uint64_t lookup_burst_hits(uint32_t iterations);
  uint64_t lookup_misses(uint32_t iterations);
  uint64_t insert_remove(uint32_t iterations);
  // The table's memory (slots and side arrays), and the flows the constructor
  // placed (all of `flows` unless the table refused some).
  size_t bytes() const;
  uint32_t held() const { return held_; }
  // Nanoseconds the constructor spent inserting.
  uint64_t fill_ns() const { return fill_ns_; }

 private:
  core::FlowKey key_of(uint64_t index) const;
  std::unique_ptr<core::FlowTable> table_;
  core::FlowCounters counters_;
  uint32_t flows_;
  uint32_t held_ = 0;
  uint64_t fill_ns_ = 0;
  uint64_t cursor_ = 0;
  uint64_t fresh_ = 0;
};

// Builds a Maglev table of `table_size` slots for `backends` equal backends;
// returns the nanoseconds the build took.
uint64_t maglev_build_ns(uint32_t backends, uint32_t table_size);

// One forwarding method's rewrite on a copy of a given frame: parse, then
// what the engine does for that method (nat: destination NAT, TTL, MACs;
// fullnat: + source NAT; dr: MACs; ipip/gre: encapsulation + MACs). "parse"
// parses only; "copy" only restores the frame (the loop's own cost).
class RewriteKernel {
 public:
  static std::unique_ptr<RewriteKernel> create(const std::string& kind, const uint8_t* frame, uint32_t len,
                                               std::string* error);
  // Returns the sum of the resulting frame lengths (0 if a rewrite failed).
  uint64_t run(uint32_t iterations);

 private:
  enum class Kind : uint8_t { copy, parse, nat, fullnat, dr, ipip, gre };
  Kind kind_ = Kind::copy;
  std::vector<uint8_t> original_;
  std::vector<uint8_t> buffer_;  // headroom + frame + tailroom
};

// The whole engine step (parse, flow lookup, schedule, rewrite, transmit
// batch) through a manual-mode engine with memory ports: `frame` injected on
// `port` again and again (a tracked flow after the first), polled in
// batches, the output taken. No I/O beyond the memory rings' copies.
class EngineStepKernel {
 public:
  static std::unique_ptr<EngineStepKernel> create(const uint8_t* snapshot, size_t snapshot_len, uint32_t ports,
                                                  uint32_t port, const uint8_t* frame, uint32_t len,
                                                  std::string* error);
  // Returns the frames transmitted.
  uint64_t run(uint32_t iterations);

 private:
  std::shared_ptr<io::MemoryDriver> memory_;  // declared first: outlives the engine that uses it
  std::unique_ptr<engine::Engine> engine_;
  std::vector<uint8_t> frame_;
  uint32_t port_ = 0;
  uint32_t ports_ = 1;
  uint64_t now_ns_ = 1'000'000'000;
};

}  // namespace l4lb::bench

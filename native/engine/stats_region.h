// The statistics region of one engine (layout: shm/stats.h): per-worker
// counter blocks, the shared active-flow counts and the per-worker event
// rings, in one page-aligned, zero-filled mapping that TypeScript reads as an
// external ArrayBuffer.
//
// Native code never reads an offset back from the region (JavaScript can
// write to it): every pointer comes from the geometry kept here, privately.
//
// Lifetime: shared ownership. The engine holds one reference, and every
// ArrayBuffer handed to JavaScript holds another (released by its
// finalizer), so the memory outlives whichever lets go last: a worker never
// writes into freed memory, and a JavaScript view never reads freed memory.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/counters.h"
#include "core/flow_table.h"
#include "shm/stats.h"

namespace l4lb::engine {

class StatsRegion {
 public:
  // Event records per worker ring (rounded up to a power of two).
  static constexpr uint32_t kDefaultEventCapacity = 256;

  // flow_event_capacity: records per worker flow-event ring (rounded up to a
  // power of two); 0 = no flow-event rings.
  static std::shared_ptr<StatsRegion> create(uint32_t workers, uint32_t backend_slots,
                                             uint32_t event_capacity = kDefaultEventCapacity,
                                             uint32_t flow_event_capacity = 0);
  ~StatsRegion();
  StatsRegion(const StatsRegion&) = delete;
  StatsRegion& operator=(const StatsRegion&) = delete;

  uint8_t* data() const { return base_; }
  size_t size() const { return geometry_.total; }
  uint32_t event_capacity() const { return geometry_.event_capacity; }
  uint32_t flow_event_capacity() const { return geometry_.flow_event_capacity; }

  core::WorkerCounters& worker_counters(uint32_t worker) const;
  core::FlowCounters& flow_counters(uint32_t worker) const;
  core::BackendCounters* backend_counters(uint32_t worker) const;
  std::atomic<int32_t>* active_flows() const;
  shm::EventRingHeader* event_ring(uint32_t worker) const;
  shm::EventRecord* event_records(uint32_t worker) const;
  // Only when flow_event_capacity() != 0.
  shm::EventRingHeader* flow_ring(uint32_t worker) const;
  shm::FlowEventRecord* flow_records(uint32_t worker) const;

 private:
  struct Geometry {
    size_t total = 0;
    size_t active_flows_offset = 0;
    size_t block_offset = 0;
    size_t block_stride = 0;
    size_t worker_counters_offset = 0;  // within a block
    size_t flow_counters_offset = 0;
    size_t backend_counters_offset = 0;
    size_t ring_offset = 0;
    size_t ring_stride = 0;
    size_t records_offset = 0;          // within a ring
    uint32_t event_capacity = 0;
    size_t flow_ring_offset = 0;        // 0: no flow rings
    size_t flow_ring_stride = 0;
    uint32_t flow_event_capacity = 0;
  };

  StatsRegion(uint8_t* base, const Geometry& geometry) : base_(base), geometry_(geometry) {}
  uint8_t* block(uint32_t worker) const { return base_ + geometry_.block_offset + geometry_.block_stride * worker; }
  uint8_t* ring(uint32_t worker) const { return base_ + geometry_.ring_offset + geometry_.ring_stride * worker; }

  uint8_t* base_;
  Geometry geometry_;
};

}  // namespace l4lb::engine

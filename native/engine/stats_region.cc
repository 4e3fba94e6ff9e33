#include "engine/stats_region.h"

#include <sys/mman.h>

#include <new>
#include <stdexcept>

namespace l4lb::engine {

namespace {

constexpr size_t kLine = 64;  // every section starts on its own cache line

constexpr size_t round_up(size_t value, size_t to) { return (value + to - 1) / to * to; }

uint32_t power_of_two_at_least(uint32_t value) {
  uint32_t rounded = 1;
  while (rounded < value) rounded <<= 1;
  return rounded;
}

template <typename T>
T* at(uint8_t* base, size_t offset) {
  return reinterpret_cast<T*>(base + offset);
}

}  // namespace

std::shared_ptr<StatsRegion> StatsRegion::create(uint32_t workers, uint32_t backend_slots, uint32_t event_capacity,
                                                 uint32_t flow_event_capacity) {
  Geometry g;
  g.event_capacity = power_of_two_at_least(event_capacity < 2 ? 2 : event_capacity);
  g.active_flows_offset = round_up(sizeof(shm::StatsRegionHeader), kLine);
  g.block_offset = round_up(g.active_flows_offset + sizeof(std::atomic<int32_t>) * backend_slots, kLine);
  g.worker_counters_offset = round_up(sizeof(shm::StatsBlockHeader), alignof(core::WorkerCounters));
  g.flow_counters_offset = round_up(g.worker_counters_offset + sizeof(core::WorkerCounters), alignof(core::FlowCounters));
  g.backend_counters_offset = round_up(g.flow_counters_offset + sizeof(core::FlowCounters), kLine);
  g.block_stride = round_up(g.backend_counters_offset + sizeof(core::BackendCounters) * backend_slots, kLine);
  g.ring_offset = g.block_offset + g.block_stride * workers;
  g.records_offset = round_up(sizeof(shm::EventRingHeader), kLine);
  g.ring_stride = round_up(g.records_offset + sizeof(shm::EventRecord) * g.event_capacity, kLine);
  g.total = g.ring_offset + g.ring_stride * workers;
  if (flow_event_capacity != 0) {
    g.flow_event_capacity = power_of_two_at_least(flow_event_capacity < 2 ? 2 : flow_event_capacity);
    g.flow_ring_offset = g.total;
    g.flow_ring_stride = round_up(g.records_offset + sizeof(shm::FlowEventRecord) * g.flow_event_capacity, kLine);
    g.total += g.flow_ring_stride * workers;
  }
  g.total = round_up(g.total, 4096);
  if (g.total > UINT32_MAX) throw std::length_error("statistics region above 4 GiB");

  // Anonymous mapping: page aligned (every alignas holds) and zero filled
  // (every counter starts at 0, every pad is zero).
  void* mapping = mmap(nullptr, g.total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) throw std::bad_alloc();
  std::shared_ptr<StatsRegion> region(new StatsRegion(static_cast<uint8_t*>(mapping), g));
  uint8_t* base = region->base_;

  auto* header = at<shm::StatsRegionHeader>(base, 0);
  header->magic = shm::kStatsRegionMagic;
  header->layout_version = shm::kStatsLayoutVersion;
  header->header_size = sizeof(shm::StatsRegionHeader);
  header->total_size = static_cast<uint32_t>(g.total);
  header->worker_count = workers;
  header->backend_slots = backend_slots;
  header->active_flows_offset = static_cast<uint32_t>(g.active_flows_offset);
  header->block_offset = static_cast<uint32_t>(g.block_offset);
  header->block_stride = static_cast<uint32_t>(g.block_stride);
  header->ring_offset = static_cast<uint32_t>(g.ring_offset);
  header->ring_stride = static_cast<uint32_t>(g.ring_stride);
  header->flow_ring_offset = static_cast<uint32_t>(g.flow_ring_offset);
  header->flow_ring_stride = static_cast<uint32_t>(g.flow_ring_stride);

  auto* active_flows = at<std::atomic<int32_t>>(base, g.active_flows_offset);
  for (uint32_t slot = 0; slot < backend_slots; ++slot) new (&active_flows[slot]) std::atomic<int32_t>(0);

  for (uint32_t w = 0; w < workers; ++w) {
    uint8_t* block = region->block(w);
    auto* block_header = at<shm::StatsBlockHeader>(block, 0);
    block_header->magic = shm::kStatsBlockMagic;
    block_header->layout_version = shm::kStatsLayoutVersion;
    block_header->header_size = sizeof(shm::StatsBlockHeader);
    block_header->block_size = static_cast<uint32_t>(g.block_stride);
    block_header->worker = w;
    block_header->worker_counters_offset = static_cast<uint32_t>(g.worker_counters_offset);
    block_header->worker_counters_size = sizeof(core::WorkerCounters);
    block_header->flow_counters_offset = static_cast<uint32_t>(g.flow_counters_offset);
    block_header->flow_counters_size = sizeof(core::FlowCounters);
    block_header->backend_counters_offset = static_cast<uint32_t>(g.backend_counters_offset);
    block_header->backend_counters_stride = sizeof(core::BackendCounters);
    block_header->backend_slots = backend_slots;
    block_header->drop_reason_count = static_cast<uint32_t>(core::DropReason::count);
    new (block + g.worker_counters_offset) core::WorkerCounters();
    new (block + g.flow_counters_offset) core::FlowCounters();
    auto* backends = at<core::BackendCounters>(block, g.backend_counters_offset);
    for (uint32_t slot = 0; slot < backend_slots; ++slot) new (&backends[slot]) core::BackendCounters();

    auto* ring_header = new (region->ring(w)) shm::EventRingHeader();
    ring_header->magic = shm::kEventRingMagic;
    ring_header->layout_version = shm::kStatsLayoutVersion;
    ring_header->header_size = sizeof(shm::EventRingHeader);
    ring_header->ring_size = static_cast<uint32_t>(g.ring_stride);
    ring_header->capacity = g.event_capacity;
    ring_header->record_size = sizeof(shm::EventRecord);
    ring_header->records_offset = static_cast<uint32_t>(g.records_offset);
    ring_header->worker = w;
    ring_header->tail.store(0, std::memory_order_relaxed);
    ring_header->lost.store(0, std::memory_order_relaxed);
    ring_header->head.store(0, std::memory_order_relaxed);

    if (g.flow_event_capacity == 0) continue;
    auto* flow_header = new (base + g.flow_ring_offset + g.flow_ring_stride * w) shm::EventRingHeader();
    flow_header->magic = shm::kFlowRingMagic;
    flow_header->layout_version = shm::kStatsLayoutVersion;
    flow_header->header_size = sizeof(shm::EventRingHeader);
    flow_header->ring_size = static_cast<uint32_t>(g.flow_ring_stride);
    flow_header->capacity = g.flow_event_capacity;
    flow_header->record_size = sizeof(shm::FlowEventRecord);
    flow_header->records_offset = static_cast<uint32_t>(g.records_offset);
    flow_header->worker = w;
  }
  return region;
}

// The structs placed here hold only atomics of integers: trivially
// destructible, so unmapping is the whole teardown.
StatsRegion::~StatsRegion() { munmap(base_, geometry_.total); }

core::WorkerCounters& StatsRegion::worker_counters(uint32_t worker) const {
  return *at<core::WorkerCounters>(block(worker), geometry_.worker_counters_offset);
}

core::FlowCounters& StatsRegion::flow_counters(uint32_t worker) const {
  return *at<core::FlowCounters>(block(worker), geometry_.flow_counters_offset);
}

core::BackendCounters* StatsRegion::backend_counters(uint32_t worker) const {
  return at<core::BackendCounters>(block(worker), geometry_.backend_counters_offset);
}

std::atomic<int32_t>* StatsRegion::active_flows() const {
  return at<std::atomic<int32_t>>(base_, geometry_.active_flows_offset);
}

shm::EventRingHeader* StatsRegion::event_ring(uint32_t worker) const {
  return at<shm::EventRingHeader>(ring(worker), 0);
}

shm::EventRecord* StatsRegion::event_records(uint32_t worker) const {
  return at<shm::EventRecord>(ring(worker), geometry_.records_offset);
}

shm::EventRingHeader* StatsRegion::flow_ring(uint32_t worker) const {
  return at<shm::EventRingHeader>(base_, geometry_.flow_ring_offset + geometry_.flow_ring_stride * worker);
}

shm::FlowEventRecord* StatsRegion::flow_records(uint32_t worker) const {
  return at<shm::FlowEventRecord>(base_,
                                  geometry_.flow_ring_offset + geometry_.flow_ring_stride * worker + geometry_.records_offset);
}

}  // namespace l4lb::engine

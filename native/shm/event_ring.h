// Producer side of an event ring in the statistics region (shm/stats.h).
// One producer (a worker thread); the consumer is TypeScript.
//
// The producer keeps its own copy of the tail: the shared word is only ever
// published, never read back, so nothing TypeScript writes there can steer
// where a record lands. The head comes from TypeScript and is untrusted: it is
// read once into a local and used only when it lies in [consumed, tail], the
// window of indexes the consumer can legitimately have reached. Any other
// value counts as "nothing consumed since the last valid head", which at
// worst makes the ring look full (records are counted as lost); it can never
// make the producer overwrite a record the consumer has not released.
#pragma once

#include <atomic>
#include <cstdint>

#include "shm/stats.h"

namespace l4lb::shm {

// Producer of one ring of `Record`s (EventRecord, FlowEventRecord).
template <typename Record>
class RingProducer {
 public:
  RingProducer() = default;

  // `ring` and `records` come from the region's creator, with `capacity` (a
  // power of two): never from the shared header, which JavaScript can write.
  void attach(EventRingHeader* ring, Record* records, uint32_t capacity) {
    ring_ = ring;
    records_ = records;
    mask_ = capacity - 1;
    tail_ = 0;
    consumed_ = 0;
  }

  bool attached() const { return ring_ != nullptr; }

  // Publishes one record; false (and `lost` incremented) when the ring is full.
  bool push(const Record& record) {
    // Pairs with the consumer's Atomics.store of head, made after it read the
    // records below that index: once we see it, those slots are free.
    const uint32_t head = ring_->head.load(std::memory_order_acquire);
    if (tail_ - head <= tail_ - consumed_) consumed_ = head;  // head within [consumed_, tail_]
    if (tail_ - consumed_ > mask_) {
      ring_->lost.store(ring_->lost.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return false;
    }
    records_[tail_ & mask_] = record;
    ++tail_;
    // Pairs with the consumer's Atomics.load of tail: the record's bytes are
    // visible before the index that covers them.
    ring_->tail.store(tail_, std::memory_order_release);
    return true;
  }

 private:
  EventRingHeader* ring_ = nullptr;
  Record* records_ = nullptr;
  uint32_t mask_ = 0;
  uint32_t tail_ = 0;      // records published (private copy of the shared tail)
  uint32_t consumed_ = 0;  // the last head seen that was valid
};

class EventRingProducer : public RingProducer<EventRecord> {
 public:
  using RingProducer<EventRecord>::push;
  bool push(EventKind kind, uint32_t worker, uint64_t time_ns, uint64_t count, uint64_t detail) {
    EventRecord record{};
    record.kind = static_cast<uint16_t>(kind);
    record.worker = worker;
    record.time_ns = time_ns;
    record.count = count;
    record.detail = detail;
    return push(record);
  }
};

using FlowRingProducer = RingProducer<FlowEventRecord>;

}  // namespace l4lb::shm

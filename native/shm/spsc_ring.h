// Single-producer / single-consumer ring of fixed-size slots.
//
// The producer owns `tail`, the consumer owns `head`; each reads the other's
// index with acquire and publishes its own with release, so a slot's bytes
// are visible before its index moves past it (DPDK rte_ring's argument, with
// one producer and one consumer, so no CAS).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace l4lb::shm {

class SpscSlotRing {
 public:
  // `capacity` is rounded up to a power of two so that indexes wrap by mask.
  SpscSlotRing(uint32_t capacity, uint32_t slot_size) : slot_size_(slot_size) {
    uint32_t rounded = 1;
    while (rounded < capacity) rounded <<= 1;
    mask_ = rounded - 1;
    storage_ = std::make_unique<uint8_t[]>(static_cast<size_t>(rounded) * slot_size);
    lengths_ = std::make_unique<uint32_t[]>(rounded);
  }

  uint32_t capacity() const { return mask_ + 1; }
  uint32_t slot_size() const { return slot_size_; }

  // Producer side. Returns the slot to fill, or nullptr when the ring is full.
  uint8_t* producer_slot() {
    const uint32_t tail = tail_.load(std::memory_order_relaxed);     // own index
    const uint32_t head = head_.load(std::memory_order_acquire);     // pairs with consumer_release's release
    if (tail - head > mask_) return nullptr;
    return slot(tail);
  }
  // Publishes the slot returned by producer_slot() with `length` bytes used.
  void producer_commit(uint32_t length) {
    const uint32_t tail = tail_.load(std::memory_order_relaxed);
    lengths_[tail & mask_] = length;
    tail_.store(tail + 1, std::memory_order_release);                 // pairs with consumer_peek's acquire
  }

  // Consumer side. Number of slots ready to read.
  uint32_t consumer_available() const {
    return tail_.load(std::memory_order_acquire) - head_.load(std::memory_order_relaxed);  // acquire pairs with producer_commit
  }
  // The i-th ready slot (i < consumer_available()) and its length.
  uint8_t* consumer_peek(uint32_t i, uint32_t* length) {
    const uint32_t index = head_.load(std::memory_order_relaxed) + i;
    *length = lengths_[index & mask_];
    return slot(index);
  }
  // Hands `count` consumed slots back to the producer.
  void consumer_release(uint32_t count) {
    head_.store(head_.load(std::memory_order_relaxed) + count, std::memory_order_release);  // pairs with producer_slot's acquire
  }

 private:
  uint8_t* slot(uint32_t index) { return storage_.get() + static_cast<size_t>(index & mask_) * slot_size_; }

  uint32_t slot_size_;
  uint32_t mask_ = 0;
  std::unique_ptr<uint8_t[]> storage_;
  std::unique_ptr<uint32_t[]> lengths_;
  alignas(64) std::atomic<uint32_t> head_{0};  // written by the consumer only
  alignas(64) std::atomic<uint32_t> tail_{0};  // written by the producer only
};

}  // namespace l4lb::shm

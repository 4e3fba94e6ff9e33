#include "io/memory_port.h"

#include <cstring>

namespace l4lb::io {

namespace {
// Each slot stores the frame flags in its first 4 bytes (inside the headroom,
// which rx_burst reports as 60 bytes so the flags word is never overwritten).
constexpr uint32_t kFlagsBytes = 4;
}  // namespace

MemoryPort::MemoryPort(uint32_t ring_frames) : rx_ring_(ring_frames, kSlotSize), tx_ring_(ring_frames, kSlotSize) {}

bool MemoryPort::inject(const uint8_t* data, uint32_t len, uint32_t frame_flags) {
  if (len == 0 || len > kMaxFrame) return false;
  uint8_t* slot = rx_ring_.producer_slot();
  if (slot == nullptr) return false;
  std::memcpy(slot, &frame_flags, kFlagsBytes);
  std::memcpy(slot + kHeadroom, data, len);
  rx_ring_.producer_commit(len);
  return true;
}

uint32_t MemoryPort::take(uint8_t* out, uint32_t capacity) {
  if (tx_ring_.consumer_available() == 0 || capacity < kMaxFrame) return 0;
  uint32_t len = 0;
  const uint8_t* slot = tx_ring_.consumer_peek(0, &len);
  std::memcpy(out, slot, len);
  tx_ring_.consumer_release(1);
  return len;
}

uint32_t MemoryPort::rx_burst(core::Frame* frames, uint32_t max) {
  const uint32_t available = rx_ring_.consumer_available();
  const uint32_t n = available < max ? available : max;
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t len = 0;
    uint8_t* slot = rx_ring_.consumer_peek(i, &len);
    core::Frame& f = frames[i];
    std::memcpy(&f.flags, slot, kFlagsBytes);
    f.data = slot + kHeadroom;
    f.len = len;
    f.headroom = kHeadroom - kFlagsBytes;
    f.tailroom = kMaxFrame - len;
    bytes += len;
  }
  rx_in_flight_ = n;
  rx_packets_.fetch_add(n, std::memory_order_relaxed);
  rx_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  return n;
}

void MemoryPort::rx_done() {
  rx_ring_.consumer_release(rx_in_flight_);
  rx_in_flight_ = 0;
}

uint32_t MemoryPort::tx_burst(const core::Frame* frames, uint32_t count) {
  uint32_t sent = 0;
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const core::Frame& f = frames[i];
    uint8_t* slot = f.len <= kMaxFrame ? tx_ring_.producer_slot() : nullptr;
    if (slot == nullptr) {
      tx_dropped_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    std::memcpy(slot, f.data, f.len);
    tx_ring_.producer_commit(f.len);
    ++sent;
    bytes += f.len;
  }
  tx_packets_.fetch_add(sent, std::memory_order_relaxed);
  tx_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  return sent;
}

PortCounters MemoryPort::counters() const {
  PortCounters c;
  c.rx_packets = rx_packets_.load(std::memory_order_relaxed);
  c.rx_bytes = rx_bytes_.load(std::memory_order_relaxed);
  c.tx_packets = tx_packets_.load(std::memory_order_relaxed);
  c.tx_bytes = tx_bytes_.load(std::memory_order_relaxed);
  c.tx_dropped = tx_dropped_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace l4lb::io

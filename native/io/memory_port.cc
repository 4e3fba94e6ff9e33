#include "io/memory_port.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

namespace l4lb::io {

namespace {

void write_meta(core::Frame& frame, const MemoryFrameMeta& meta) {
  frame.flags = meta.flags;
  frame.csum_start = meta.csum_start;
  frame.csum_offset = meta.csum_offset;
  frame.gso_size = meta.gso_size;
  frame.header_len = meta.header_len;
  frame.gso_type = meta.gso_type;
  frame.gso_ecn = meta.gso_ecn;
}

MemoryFrameMeta meta_of(const core::Frame& frame) {
  MemoryFrameMeta meta;
  meta.flags = frame.flags;
  meta.csum_start = frame.csum_start;
  meta.csum_offset = frame.csum_offset;
  meta.gso_size = frame.gso_size;
  meta.header_len = frame.header_len;
  meta.gso_type = frame.gso_type;
  meta.gso_ecn = frame.gso_ecn;
  return meta;
}

}  // namespace

MemoryPort::MemoryPort(const MemoryPortOptions& options)
    : max_frame_(options.max_frame),
      capabilities_(options.capabilities),
      ready_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      rx_ring_(options.ring_frames, slot_size()),
      tx_ring_(options.ring_frames, slot_size()),
      rx_released_(rx_ring_.capacity(), 0) {}

MemoryPort::~MemoryPort() {
  if (ready_fd_ >= 0) close(ready_fd_);
}

bool MemoryPort::inject(const uint8_t* data, uint32_t len, const MemoryFrameMeta& meta) {
  if (len == 0 || len > max_frame_) return false;
  uint8_t* slot = rx_ring_.producer_slot();
  if (slot == nullptr) return false;
  std::memcpy(slot, &meta, kMetaBytes);
  std::memcpy(slot + kMetaBytes + kHeadroom, data, len);
  rx_ring_.producer_commit(len);
  // After the commit: a worker that drained the eventfd before this write
  // finds the frame when it looks again (rx_burst drains, then looks).
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t written = write(ready_fd_, &one, sizeof(one));
  return true;
}

uint32_t MemoryPort::take(uint8_t* out, uint32_t capacity, MemoryFrameMeta* meta) {
  if (tx_ring_.consumer_available() == 0) return 0;
  uint32_t len = 0;
  const uint8_t* slot = tx_ring_.consumer_peek(0, &len);
  if (len > capacity) return 0;
  if (meta != nullptr) std::memcpy(meta, slot, kMetaBytes);
  std::memcpy(out, slot + kMetaBytes, len);
  tx_ring_.consumer_release(1);
  return len;
}

uint32_t MemoryPort::rx_burst(core::Frame* frames, uint32_t max) {
  uint32_t available = rx_ring_.consumer_available() - rx_handed_out_;
  if (available == 0 && ready_fd_ >= 0) {
    // About to report nothing: reset the descriptor, then look once more, so
    // that a frame committed meanwhile is either seen now or announced by a
    // write after the reset.
    uint64_t drained = 0;
    [[maybe_unused]] const ssize_t got = read(ready_fd_, &drained, sizeof(drained));
    available = rx_ring_.consumer_available() - rx_handed_out_;
  }
  const uint32_t n = available < max ? available : max;
  uint64_t bytes = 0;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t len = 0;
    uint8_t* slot = rx_ring_.consumer_peek(rx_handed_out_ + i, &len);
    MemoryFrameMeta meta;
    std::memcpy(&meta, slot, kMetaBytes);
    core::Frame& f = frames[i];
    f = core::make_frame(slot + kMetaBytes + kHeadroom, len, kHeadroom, max_frame_ - len);
    write_meta(f, meta);
    f.owner = this;
    f.handle = (rx_oldest_ + rx_handed_out_ + i) & (rx_ring_.capacity() - 1);
    bytes += len;
  }
  rx_handed_out_ += n;
  counters_.received(n, bytes);
  return n;
}

void MemoryPort::release(core::Frame* frames, uint32_t count) {
  for (uint32_t i = 0; i < count; ++i) rx_released_[frames[i].handle] = 1;
  const uint32_t mask = rx_ring_.capacity() - 1;
  uint32_t returned = 0;
  while (rx_handed_out_ != 0 && rx_released_[rx_oldest_]) {
    rx_released_[rx_oldest_] = 0;
    rx_oldest_ = (rx_oldest_ + 1) & mask;
    --rx_handed_out_;
    ++returned;
  }
  if (returned != 0) rx_ring_.consumer_release(returned);
}

TxResult MemoryPort::tx_burst(core::Frame* frames, uint32_t count) {
  uint32_t sent = 0;
  uint64_t bytes = 0;
  // In order: the first frame that does not fit ends the burst; it and the
  // rest are dropped.
  for (; sent < count; ++sent) {
    const core::Frame& f = frames[sent];
    uint8_t* slot = f.len <= max_frame_ ? tx_ring_.producer_slot() : nullptr;
    if (slot == nullptr) break;
    const MemoryFrameMeta meta = meta_of(f);
    std::memcpy(slot, &meta, kMetaBytes);
    std::memcpy(slot + kMetaBytes, f.data, f.len);
    tx_ring_.producer_commit(f.len);
    bytes += f.len;
  }
  // Copied (or dropped): every buffer goes back to its owner now.
  core::release_frames(frames, count);
  counters_.sent(sent, bytes);
  counters_.dropped(count - sent);
  return {sent, bytes};
}

PortCounters MemoryPort::counters() const { return counters_.snapshot(); }

MemoryDriver::MemoryDriver(uint32_t interfaces, const MemoryPortOptions& options)
    : interfaces_(interfaces), options_(options), take_cursor_(interfaces, 0) {}

bool MemoryDriver::open(uint32_t workers, PortError* error) {
  if (!ports_.empty()) return true;
  if (workers == 0 || interfaces_ == 0 || options_.max_frame == 0 || options_.ring_frames == 0) {
    error->code = "EPORT_OPTIONS";
    error->message = "memory driver: workers, interfaces, max_frame and ring_frames must be at least 1";
    return false;
  }
  ports_.resize(workers);
  for (auto& worker_ports : ports_) {
    for (uint32_t p = 0; p < interfaces_; ++p) worker_ports.push_back(std::make_unique<MemoryPort>(options_));
  }
  return true;
}

std::vector<PortCounters> MemoryDriver::port_counters() const {
  std::vector<PortCounters> sums(interfaces_);
  for (const auto& worker_ports : ports_) {
    for (uint32_t p = 0; p < interfaces_; ++p) {
      sums[p] += worker_ports[p]->counters();
    }
  }
  return sums;
}

std::vector<InterfaceReport> MemoryDriver::interfaces() const {
  std::vector<InterfaceReport> reports;
  for (uint32_t p = 0; p < interfaces_; ++p) reports.push_back({"memory" + std::to_string(p), "memory"});
  return reports;
}

bool MemoryDriver::inject(uint32_t interface, const uint8_t* data, uint32_t len, const MemoryFrameMeta& meta) {
  if (interface >= interfaces_ || ports_.empty()) return false;
  const uint32_t workers = static_cast<uint32_t>(ports_.size());
  // Round robin over the workers' rings: replies of a flow land on other
  // workers than its first packet, as with the kernel's fanout.
  for (uint32_t attempt = 0; attempt < workers; ++attempt) {
    const uint32_t w = inject_cursor_++ % workers;
    if (ports_[w][interface]->inject(data, len, meta)) return true;
  }
  return false;
}

uint32_t MemoryDriver::take(uint32_t interface, uint8_t* out, uint32_t capacity, MemoryFrameMeta* meta) {
  if (interface >= interfaces_ || ports_.empty()) return 0;
  const uint32_t workers = static_cast<uint32_t>(ports_.size());
  for (uint32_t attempt = 0; attempt < workers; ++attempt) {
    const uint32_t w = take_cursor_[interface] % workers;
    const uint32_t len = ports_[w][interface]->take(out, capacity, meta);
    if (len != 0) return len;
    ++take_cursor_[interface];
  }
  return 0;
}

}  // namespace l4lb::io

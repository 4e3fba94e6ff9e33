#include "io/dpdk_port.h"

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "io/partial_checksum.h"

namespace l4lb::io {

namespace {

// Bursts handed to rte_eth_rx_burst / rte_eth_tx_burst at most.
constexpr uint32_t kBurst = 64;
// A transmit queue that takes nothing this many times in a row is full.
constexpr int kTxAttempts = 4;

// Workers are threads of the engine, not EAL lcores: registered, a thread
// gets an lcore id, and with it the mempools' per-lcore caches. Unregistered
// when the thread ends.
struct LcoreRegistration {
  bool registered = false;
  LcoreRegistration() {
    if (rte_lcore_id() == LCORE_ID_ANY) registered = rte_thread_register() == 0;
  }
  ~LcoreRegistration() {
    if (registered) rte_thread_unregister();
  }
};

void register_thread() { thread_local LcoreRegistration registration; }

}  // namespace

MbufOwner* MbufOwner::instance() {
  static MbufOwner owner;
  return &owner;
}

void MbufOwner::release(core::Frame* frames, uint32_t count) {
  rte_mbuf* mbufs[kBurst];
  uint32_t n = 0;
  for (uint32_t i = 0; i < count; ++i) {
    mbufs[n++] = reinterpret_cast<rte_mbuf*>(frames[i].handle);
    if (n == kBurst) {
      rte_pktmbuf_free_bulk(mbufs, n);
      n = 0;
    }
  }
  if (n > 0) rte_pktmbuf_free_bulk(mbufs, n);
}

DpdkNap::DpdkNap() { fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC); }

DpdkNap::~DpdkNap() {
  if (fd_ >= 0) close(fd_);
}

void DpdkNap::arm() const {
  if (fd_ < 0) return;
  // Reading resets the count of a timer that already fired (the worker's
  // epoll is level-triggered).
  uint64_t expirations = 0;
  [[maybe_unused]] const ssize_t got = read(fd_, &expirations, sizeof(expirations));
  itimerspec at{};
  at.it_value.tv_nsec = static_cast<long>(step_ns_);
  timerfd_settime(fd_, 0, &at, nullptr);
  step_ns_ = std::min(step_ns_ * 2, kLongestNs);
}

bool DpdkPort::pending() const {
  // Before the worker sleeps: the nap is what wakes it to poll again.
  if (spec_.exposes_nap) spec_.nap->arm();
  return false;
}

uint32_t DpdkPort::rx_burst(core::Frame* frames, uint32_t max) {
  register_thread();
  const uint32_t queues = static_cast<uint32_t>(spec_.rx_queues.size());
  uint32_t got = 0;
  uint64_t bytes = 0;
  rte_mbuf* mbufs[kBurst];
  for (uint32_t i = 0; i < queues && got < max; ++i) {
    const uint16_t queue = spec_.rx_queues[(next_rx_ + i) % queues];
    const uint16_t n = rte_eth_rx_burst(spec_.port_id, queue, mbufs, static_cast<uint16_t>(std::min(max - got, kBurst)));
    for (uint16_t k = 0; k < n; ++k) {
      rte_mbuf* m = mbufs[k];
      if (unlikely(m->nb_segs != 1)) {
        // Chained mbufs (scatter, never enabled here): the core works on
        // one contiguous frame.
        rte_pktmbuf_free(m);
        continue;
      }
      core::Frame frame = core::make_frame(rte_pktmbuf_mtod(m, uint8_t*), m->data_len, rte_pktmbuf_headroom(m), rte_pktmbuf_tailroom(m));
      frame.owner = MbufOwner::instance();
      frame.handle = reinterpret_cast<uint64_t>(m);
      if (spec_.guess_partial_checksums) mark_partial_checksum(&frame);
      bytes += frame.len;
      frames[got++] = frame;
    }
  }
  if (queues > 0) next_rx_ = (next_rx_ + 1) % queues;
  if (got > 0) {
    spec_.nap->traffic();
    counters_.received(got, bytes);
  }
  return got;
}

// The frame as an mbuf to send: its own mbuf with data and length as the
// core left them, or a copy into the worker's pool (then the original goes
// back to its owner). nullptr when no mbuf can hold it.
rte_mbuf* DpdkPort::to_mbuf(core::Frame& frame) {
  if (frame.owner == MbufOwner::instance()) {
    rte_mbuf* m = reinterpret_cast<rte_mbuf*>(frame.handle);
    m->data_off = static_cast<uint16_t>(frame.data - static_cast<uint8_t*>(m->buf_addr));
    m->data_len = static_cast<uint16_t>(frame.len);
    m->pkt_len = frame.len;
    m->ol_flags = 0;
    return m;
  }
  rte_mbuf* m = rte_pktmbuf_alloc(spec_.pool);
  if (m != nullptr) {
    if (char* room = rte_pktmbuf_append(m, static_cast<uint16_t>(std::min<uint32_t>(frame.len, UINT16_MAX))); room != nullptr && frame.len <= UINT16_MAX) {
      std::memcpy(room, frame.data, frame.len);
    } else {
      rte_pktmbuf_free(m);
      m = nullptr;
    }
  }
  if (frame.owner != nullptr) frame.owner->release(&frame, 1);
  return m;
}

TxResult DpdkPort::tx_burst(core::Frame* frames, uint32_t count) {
  register_thread();
  TxResult result;
  uint32_t dropped = 0;
  DpdkTxQueue& queue = *spec_.tx_queue;
  for (uint32_t start = 0; start < count; start += kBurst) {
    const uint32_t n = std::min(count - start, kBurst);
    rte_mbuf* mbufs[kBurst];
    uint32_t ready = 0;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; ++i) {
      core::Frame& frame = frames[start + i];
      if (unlikely(frame.is_aggregate() || frame.len > UINT16_MAX)) {
        if (frame.owner != nullptr) frame.owner->release(&frame, 1);
        ++dropped;
        continue;
      }
      rte_mbuf* m = to_mbuf(frame);
      if (m == nullptr) {
        ++dropped;
        continue;
      }
      bytes += m->pkt_len;
      mbufs[ready++] = m;
    }
    if (queue.shared) {
      while (queue.lock.test_and_set(std::memory_order_acquire)) rte_pause();  // pairs with the release below
    }
    uint32_t sent = 0;
    for (int attempt = 0; attempt < kTxAttempts && sent < ready; ++attempt) {
      const uint16_t now = rte_eth_tx_burst(spec_.port_id, queue.id, mbufs + sent, static_cast<uint16_t>(ready - sent));
      sent += now;
      if (now == 0 && attempt > 0) break;
    }
    if (queue.shared) queue.lock.clear(std::memory_order_release);
    for (uint32_t i = sent; i < ready; ++i) bytes -= mbufs[i]->pkt_len;
    if (sent < ready) rte_pktmbuf_free_bulk(mbufs + sent, ready - sent);
    dropped += ready - sent;
    result.packets += sent;
    result.bytes += bytes;
  }
  counters_.sent(result.packets, result.bytes);
  counters_.dropped(dropped);
  return result;
}

PortCounters DpdkPort::counters() const { return counters_.snapshot(); }

}  // namespace l4lb::io

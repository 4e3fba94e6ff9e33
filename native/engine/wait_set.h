// What a polling thread sleeps on when it has nothing to do: its ports'
// descriptors, an eventfd other threads write to wake it (new configuration,
// stop) and a timerfd for its next timed step. The engine's workers and the
// benchmark's MAC-only forwarder share it, so both wake the same way.
#pragma once

#include <cstdint>
#include <vector>

#include "io/port.h"

namespace l4lb::engine {

class WaitSet {
 public:
  WaitSet() = default;
  ~WaitSet();
  WaitSet(const WaitSet&) = delete;
  WaitSet& operator=(const WaitSet&) = delete;

  // Watches the ports' descriptors (ports without one are skipped). False
  // with errno set when a descriptor could not be made.
  bool open(const std::vector<io::Port*>& ports);
  bool is_open() const { return epoll_fd_ >= 0; }

  // Any thread: the sleeper returns (now, or from its next sleep).
  void wake();

  // Sleeps until a port has frames, wake() was called, or the monotonic
  // clock reaches `deadline_ns` (0: no deadline, no timer left armed).
  // Returns immediately if a port says it holds frames its descriptor will
  // not announce (Port::pending). False when epoll failed.
  bool sleep(uint64_t deadline_ns);

 private:
  std::vector<io::Port*> ports_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int timer_fd_ = -1;
  bool timer_armed_ = false;
};

// CLOCK_MONOTONIC in nanoseconds: the clock of every deadline here.
uint64_t monotonic_ns();

// One iteration of a spin loop: tells the CPU (and a hyperthread sibling)
// that this thread only waits.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace l4lb::engine

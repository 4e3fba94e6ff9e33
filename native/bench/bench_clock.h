// Clocks and CPU pinning shared by the benchmark's native threads.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <cstdint>

namespace l4lb::bench {

inline uint64_t clock_ns(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Best effort, like the engine's workers: a CPU outside the process's set
// leaves the thread where the scheduler puts it.
inline void pin_current_thread(int32_t cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

}  // namespace l4lb::bench

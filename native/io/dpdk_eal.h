// DPDK's Environment Abstraction Layer in a Node process. rte_eal_init runs
// once per process (a second call fails), and the thread that calls it
// becomes the main lcore, pinned to a CPU: so it runs on a thread of its
// own, never on libuv's, with every signal blocked so that the threads EAL
// creates leave SIGINT, SIGTERM and the rest to Node. That thread then
// sleeps until the process ends. Every balancer of the process shares the
// EAL the first one started; its ports are added and removed as devices
// (rte_vdev_init / rte_dev_probe) while the EAL stays.
#pragma once

#include <string>
#include <vector>

#include "io/port.h"

namespace l4lb::io {

struct EalRequest {
  std::vector<std::string> extra;  // the user's EAL arguments
  bool hugepages = false;
};

// Starts the EAL on first use and waits for it; later calls return at once.
// False with *error set: EDPDK_EAL (init failed: its log lines in the
// message; the process cannot start it again), EDPDK_EAL_CONFLICT (running
// with other arguments than these).
bool ensure_eal(const EalRequest& request, PortError* error);

// The last lines EAL and the drivers logged (their log goes to a buffer, not
// to the process's stderr), for error messages.
std::string eal_log_tail(size_t lines);

// The EAL arguments in force ("" before the first ensure_eal).
std::string eal_arguments();

}  // namespace l4lb::io

// PortError codes of the AF_XDP driver, each message naming the remedy
// (lib/driver/af-xdp.ts turns them into DriverError).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "io/port.h"

namespace l4lb::io {

inline bool xdp_fail(PortError* error, const char* code, const std::string& message, int error_number) {
  error->code = code;
  error->error_number = error_number;
  if (error_number != 0) {
    const char* name = strerrorname_np(error_number);
    error->message = message + ": " + std::strerror(error_number) + " (" + (name != nullptr ? name : std::to_string(error_number)) + ")";
  } else {
    error->message = message;
  }
  return false;
}

inline const char* kXdpCapabilities =
    "run as root or grant CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8)";

// A failed socket, bind or ring set-up, by errno.
inline bool xdp_socket_fail(PortError* error, const std::string& what, int error_number) {
  switch (error_number) {
    case EPERM:
    case EACCES:
      return xdp_fail(error, "EXDP_PERMISSION", what + " is not permitted: " + kXdpCapabilities, error_number);
    case EAFNOSUPPORT:
      return xdp_fail(error, "EXDP_UNSUPPORTED", what + ": the kernel has no AF_XDP (CONFIG_XDP_SOCKETS)", error_number);
    case ENODEV:
    case ENXIO:
      return xdp_fail(error, "ENO_INTERFACE", what + ": no such interface in this network namespace", error_number);
    case EBUSY:
      return xdp_fail(error, "EXDP_BUSY", what + ": the queue is taken by another AF_XDP socket (another process serving it?)",
                      error_number);
    case ENOBUFS:
    case ENOMEM:
      return xdp_fail(error, "EXDP_MEMLOCK",
                      what + ": out of locked memory: raise RLIMIT_MEMLOCK (ulimit -l unlimited) or grant CAP_IPC_LOCK",
                      error_number);
    default:
      return xdp_fail(error, "EXDP_SOCKET", what, error_number);
  }
}

}  // namespace l4lb::io

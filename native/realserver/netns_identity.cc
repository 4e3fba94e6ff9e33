#include "realserver/netns_identity.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71  // include/uapi/asm-generic/socket.h, Linux 5.14
#endif

namespace l4lb::realserver {

namespace {

NetnsCookieResult failure(const char* code, const std::string& operation, int err) {
  return {code, operation + ": " + std::strerror(err), 0};
}

// Any socket reports the cookie of the namespace it was created in.
NetnsCookieResult own_cookie() {
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return failure("ESOCKET", "socket(AF_UNIX)", errno);
  uint64_t cookie = 0;
  socklen_t length = sizeof(cookie);
  const int rc = ::getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &length);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return failure(err == ENOPROTOOPT ? "EUNSUPPORTED" : "ESOCKET", "getsockopt(SO_NETNS_COOKIE)", err);
  return {"", "", cookie};
}

}  // namespace

NetnsCookieResult netns_cookie(const std::string& netns_path) {
  if (netns_path.empty()) return own_cookie();
  NetnsCookieResult result;
  std::thread inside([&] {
    const int ns = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      result = failure("ENETNS", "open " + netns_path, errno);
      return;
    }
    const int rc = ::setns(ns, CLONE_NEWNET);
    const int err = errno;
    ::close(ns);
    if (rc != 0) {
      result = failure("ENETNS", "setns " + netns_path, err);
      return;
    }
    result = own_cookie();
  });
  inside.join();
  return result;
}

}  // namespace l4lb::realserver

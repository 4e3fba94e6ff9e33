// Which network namespace a record belongs to. The nsfs inode names a live
// namespace but is handed out again once that namespace is gone; the kernel's
// namespace cookie (SO_NETNS_COOKIE, Linux 5.14) is never reused while the
// system runs, so inode + cookie tell a namespace from a later one that got
// the same inode.
#pragma once

#include <cstdint>
#include <string>

namespace l4lb::realserver {

struct NetnsCookieResult {
  /** Empty on success; 'ENETNS' (open/setns), 'ESOCKET', 'EUNSUPPORTED' (kernel without SO_NETNS_COOKIE). */
  std::string code;
  std::string message;
  uint64_t cookie = 0;
};

// The cookie of the namespace at `netns_path` (an nsfs file: /run/netns/NAME,
// /proc/PID/ns/net), or of the calling thread's namespace when it is empty.
// A path is entered from a short-lived thread (setns acts on the calling
// thread only), so the caller's namespace never changes.
NetnsCookieResult netns_cookie(const std::string& netns_path);

}  // namespace l4lb::realserver

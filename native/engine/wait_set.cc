#include "engine/wait_set.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace l4lb::engine {

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

WaitSet::~WaitSet() {
  for (int fd : {epoll_fd_, wake_fd_, timer_fd_}) {
    if (fd >= 0) close(fd);
  }
}

bool WaitSet::open(const std::vector<io::Port*>& ports) {
  ports_ = ports;
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0 || timer_fd_ < 0) return false;
  auto watch = [this](int fd) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    return epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) == 0;
  };
  if (!watch(wake_fd_) || !watch(timer_fd_)) return false;
  for (io::Port* port : ports_) {
    // Level-triggered: a ring that still holds frames keeps the descriptor
    // readable, so nothing that arrived before the sleep is missed.
    if (port->wait_fd() >= 0 && !watch(port->wait_fd())) return false;
  }
  return true;
}

void WaitSet::wake() {
  if (wake_fd_ < 0) return;
  const uint64_t one = 1;
  // A full counter (2^64 - 2 wake-ups unread) would only mean one is pending already.
  [[maybe_unused]] const ssize_t written = write(wake_fd_, &one, sizeof(one));
}

bool WaitSet::sleep(uint64_t deadline_ns) {
  for (io::Port* port : ports_) {
    if (port->pending()) return true;
  }
  if (deadline_ns != 0) {
    itimerspec at{};
    at.it_value.tv_sec = static_cast<time_t>(deadline_ns / 1'000'000'000ull);
    at.it_value.tv_nsec = static_cast<long>(deadline_ns % 1'000'000'000ull);
    if (at.it_value.tv_sec == 0 && at.it_value.tv_nsec == 0) at.it_value.tv_nsec = 1;  // 0 would disarm
    timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &at, nullptr);
    timer_armed_ = true;
  } else if (timer_armed_) {
    // One-shot timers only: nothing periodic is left behind when there is
    // nothing timed to do.
    itimerspec off{};
    timerfd_settime(timer_fd_, 0, &off, nullptr);
    timer_armed_ = false;
  }
  epoll_event events[8];
  const int ready = epoll_wait(epoll_fd_, events, 8, -1);
  if (ready < 0) return errno == EINTR;
  for (int i = 0; i < ready; ++i) {
    const int fd = events[i].data.fd;
    if (fd == wake_fd_ || fd == timer_fd_) {
      // Non-blocking counters: reading resets them.
      uint64_t drained = 0;
      [[maybe_unused]] const ssize_t got = read(fd, &drained, sizeof(drained));
      if (fd == timer_fd_) timer_armed_ = false;
    }
  }
  return true;
}

}  // namespace l4lb::engine

#include "realserver/decapsulator.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <utility>

namespace l4lb::realserver {

namespace {

// The largest IPv4 packet, behind the headroom the packet functions need.
constexpr uint32_t kMaxPacket = 65535;
// Packets handled per descriptor before polling again, so that a flood on
// one socket cannot starve the other direction.
constexpr int kBatch = 64;

std::string errno_text(const char* operation, int err) {
  return std::string(operation) + ": " + std::strerror(err);
}

void close_fd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

int open_raw_socket(int protocol, uint32_t receive_buffer_bytes) {
  const int fd = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return -1;
  // Bursts arrive faster than one thread writes them to the TUN device; the
  // forced variant (CAP_NET_ADMIN) ignores net.core.rmem_max.
  const int size = static_cast<int>(receive_buffer_bytes);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0) {
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
  return fd;
}

}  // namespace

Decapsulator::Decapsulator(DecapsulatorOptions options) : options_(std::move(options)) {
  std::sort(options_.vips.begin(), options_.vips.end());
  std::sort(options_.local_addresses.begin(), options_.local_addresses.end());
  filter_.inner_destinations = options_.vips;
  filter_.outer_destinations = options_.local_addresses;
  filter_.accept_ipip = options_.accept_ipip;
  filter_.accept_gre = options_.accept_gre;
  filter_.require_gre_key = options_.require_gre_key;
  filter_.gre_key = options_.gre_key;
  return_tunnel_ = options_.return_tunnel;
  return_tunnel_.inner_sources = options_.vips;
  buffer_.resize(kTunnelPacketHeadroom + kMaxPacket + 1);
  uint16_t seed = 0;
  if (::getrandom(&seed, sizeof(seed), 0) == static_cast<ssize_t>(sizeof(seed))) next_identification_ = seed;
}

std::unique_ptr<Decapsulator> Decapsulator::start(DecapsulatorOptions options, DecapsulatorError* error) {
  std::unique_ptr<Decapsulator> self(new Decapsulator(std::move(options)));
  std::promise<DecapsulatorError> opened;
  std::future<DecapsulatorError> result = opened.get_future();
  Decapsulator* raw = self.get();
  try {
    // The promise moves into the thread: start() may return (and its frame
    // go away) while set_value is still finishing.
    self->worker_ = std::thread([raw, opened = std::move(opened)]() mutable {
      DecapsulatorError open_error;
      const bool ok = raw->open_all(&open_error);
      if (ok) raw->running_.store(true, std::memory_order_release);
      opened.set_value(open_error);
      if (ok) raw->run();
    });
  } catch (const std::system_error& e) {
    *error = {"ETHREAD", std::string("cannot start the decapsulator thread: ") + e.what()};
    return nullptr;
  }
  *error = result.get();
  if (!error->code.empty()) {
    self->worker_.join();
    self->close_all();
    return nullptr;
  }
  return self;
}

Decapsulator::~Decapsulator() { stop(); }

bool Decapsulator::open_all(DecapsulatorError* error) {
  if (!options_.netns_path.empty()) {
    const int ns = ::open(options_.netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      *error = {"ENETNS", errno_text(("open " + options_.netns_path).c_str(), errno)};
      return false;
    }
    const int rc = ::setns(ns, CLONE_NEWNET);
    const int err = errno;
    ::close(ns);
    if (rc != 0) {
      *error = {"ENETNS", errno_text(("setns " + options_.netns_path).c_str(), err)};
      return false;
    }
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) {
    *error = {"ESOCKET", errno_text("eventfd", errno)};
    return false;
  }
  if (options_.accept_gre && (gre_fd_ = open_raw_socket(IPPROTO_GRE, options_.receive_buffer_bytes)) < 0) {
    *error = {"ESOCKET", errno_text("raw IPPROTO_GRE socket", errno)};
    return false;
  }
  if (options_.accept_ipip && (ipip_fd_ = open_raw_socket(IPPROTO_IPIP, options_.receive_buffer_bytes)) < 0) {
    *error = {"ESOCKET", errno_text("raw IPPROTO_IPIP socket", errno)};
    return false;
  }
  if (options_.return_enabled) {
    send_fd_ = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (send_fd_ < 0) {
      *error = {"ESOCKET", errno_text("raw IPPROTO_RAW socket", errno)};
      return false;
    }
  }
  tun_fd_ = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (tun_fd_ < 0) {
    *error = {"ETUN", errno_text("open /dev/net/tun", errno)};
    return false;
  }
  struct ifreq request {};
  if (options_.tun_name.empty() || options_.tun_name.size() >= IFNAMSIZ) {
    *error = {"ETUN", "TUN device name must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters"};
    return false;
  }
  std::memcpy(request.ifr_name, options_.tun_name.c_str(), options_.tun_name.size());
  request.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (::ioctl(tun_fd_, TUNSETIFF, &request) != 0) {
    *error = {"ETUN", errno_text(("TUNSETIFF " + options_.tun_name).c_str(), errno)};
    return false;
  }
  struct ifreq current {};
  if (::ioctl(tun_fd_, TUNGETIFF, &current) == 0) tun_persistent_ = (current.ifr_flags & IFF_PERSIST) != 0;
  return true;
}

void Decapsulator::run() {
  struct pollfd fds[4];
  nfds_t count = 0;
  fds[count++] = {stop_fd_, POLLIN, 0};
  const nfds_t tun_index = count;
  fds[count++] = {tun_fd_, POLLIN, 0};
  if (gre_fd_ >= 0) fds[count++] = {gre_fd_, POLLIN, 0};
  if (ipip_fd_ >= 0) fds[count++] = {ipip_fd_, POLLIN, 0};
  for (;;) {
    if (::poll(fds, count, -1) < 0) {
      if (errno == EINTR) continue;
      fail(errno_text("poll", errno));
      return;
    }
    if (fds[0].revents != 0) return;  // stop() wrote the eventfd
    // A deleted TUN device reports an error on its descriptor forever: give
    // up instead of spinning, and say why in stats().
    if (fds[tun_index].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      fail("the TUN device " + options_.tun_name + " went away");
      return;
    }
    if (fds[tun_index].revents & POLLIN) receive_replies();
    for (nfds_t i = tun_index + 1; i < count; ++i) {
      if (fds[i].revents & POLLIN) receive_tunnel(fds[i].fd);
    }
  }
}

void Decapsulator::receive_tunnel(int fd) {
  uint8_t* const packet = buffer_.data() + kTunnelPacketHeadroom;
  for (int i = 0; i < kBatch; ++i) {
    // MSG_TRUNC returns the real length of a packet longer than the buffer.
    const ssize_t n = ::recv(fd, packet, kMaxPacket, MSG_DONTWAIT | MSG_TRUNC);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        counters_.receive_errors.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
    counters_.received.fetch_add(1, std::memory_order_relaxed);
    if (static_cast<size_t>(n) > kMaxPacket) {
      counters_.malformed[static_cast<size_t>(DecapMalformed::outer_truncated)].fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    const DecapResult result = decapsulate_tunnel_packet(packet, static_cast<uint32_t>(n), filter_);
    switch (result.verdict) {
      case DecapVerdict::deliver:
        if (::write(tun_fd_, packet + result.inner_offset, result.inner_len) ==
            static_cast<ssize_t>(result.inner_len)) {
          counters_.decapsulated.fetch_add(1, std::memory_order_relaxed);
          counters_.decapsulated_bytes.fetch_add(result.inner_len, std::memory_order_relaxed);
        } else {
          counters_.tun_write_errors.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      case DecapVerdict::malformed:
        counters_.malformed[static_cast<size_t>(result.malformed_reason)].fetch_add(1, std::memory_order_relaxed);
        break;
      case DecapVerdict::not_for_us:
        counters_.not_for_us[static_cast<size_t>(result.not_for_us_reason)].fetch_add(1, std::memory_order_relaxed);
        break;
    }
  }
}

void Decapsulator::receive_replies() {
  uint8_t* const packet = buffer_.data() + kTunnelPacketHeadroom;
  for (int i = 0; i < kBatch; ++i) {
    const ssize_t n = ::read(tun_fd_, packet, kMaxPacket);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        counters_.receive_errors.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
    if (!options_.return_enabled) {
      // The device's own IPv6 chatter (MLD, router solicitations) is not a
      // reply that lacks a return path.
      const ReturnDrop reason = n > 0 && (packet[0] >> 4) == 4 ? ReturnDrop::no_return_path : ReturnDrop::not_ipv4;
      counters_.return_drops[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    const ReturnResult result =
        encapsulate_return_packet(packet, static_cast<uint32_t>(n), return_tunnel_, next_identification_);
    if (!result.ok) {
      counters_.return_drops[static_cast<size_t>(result.reason)].fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    // A zero identification would be replaced by the kernel's; keep ours.
    if (++next_identification_ == 0) next_identification_ = 1;
    struct sockaddr_in to {};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(return_tunnel_.outer_dst);
    const uint8_t* outer = packet + result.outer_offset;
    if (::sendto(send_fd_, outer, result.outer_len, 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) ==
        static_cast<ssize_t>(result.outer_len)) {
      counters_.returned.fetch_add(1, std::memory_order_relaxed);
      counters_.returned_bytes.fetch_add(result.outer_len, std::memory_order_relaxed);
    } else {
      counters_.send_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void Decapsulator::fail(std::string why) {
  {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    failure_ = std::move(why);
  }
  running_.store(false, std::memory_order_release);
}

std::string Decapsulator::failure() const {
  std::lock_guard<std::mutex> lock(failure_mutex_);
  return failure_;
}

void Decapsulator::stop() {
  if (worker_.joinable()) {
    const uint64_t one = 1;
    // The eventfd counter cannot overflow from one write; the worker polls it.
    (void)!::write(stop_fd_, &one, sizeof(one));
    worker_.join();
  }
  running_.store(false, std::memory_order_release);
  close_all();
}

void Decapsulator::close_all() {
  close_fd(&tun_fd_);
  close_fd(&gre_fd_);
  close_fd(&ipip_fd_);
  close_fd(&send_fd_);
  close_fd(&stop_fd_);
}

}  // namespace l4lb::realserver

#include "bench/traffic_sink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench/bench_clock.h"
#include "bench/frame_stamp.h"

namespace l4lb::bench {

namespace {

bool fail(std::string* code, std::string* message, const char* which, const std::string& what, int error_number) {
  *code = which;
  *message = what + ": " + std::strerror(error_number);
  return false;
}

template <typename T>
void add(std::atomic<T>& counter, T n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace

std::unique_ptr<TrafficSink> TrafficSink::create(const SinkOptions& options, std::string* code, std::string* message) {
  std::unique_ptr<TrafficSink> sink(new TrafficSink());
  sink->options_ = options;
  if (options.netns_path.empty()) {
    if (!sink->open_socket(code, message)) return nullptr;
  } else {
    // setns() moves only this thread; the socket keeps the namespace it was
    // created in, so the thread returns at once (as AfPacketPort does).
    const int original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    const int target = open(options.netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (original < 0 || target < 0 || setns(target, CLONE_NEWNET) != 0) {
      const int saved = errno;
      if (original >= 0) ::close(original);
      if (target >= 0) ::close(target);
      fail(code, message, "ESINK_NETNS", "entering " + options.netns_path, saved);
      return nullptr;
    }
    ::close(target);
    const bool opened = sink->open_socket(code, message);
    const bool back = setns(original, CLONE_NEWNET) == 0;
    ::close(original);
    if (!back) {
      fail(code, message, "ESINK_NETNS", "returning from " + options.netns_path, errno);
      return nullptr;
    }
    if (!opened) return nullptr;
  }
  sink->thread_ = std::thread([s = sink.get()] { s->loop(); });
  sink->native_thread_ = sink->thread_.native_handle();
  return sink;
}

bool TrafficSink::open_socket(std::string* code, std::string* message) {
  const unsigned ifindex = if_nametoindex(options_.interface.c_str());
  if (ifindex == 0) return fail(code, message, "ENO_INTERFACE", "interface " + options_.interface, errno);
  // Protocol 0 until bind: nothing is queued before the ring exists.
  fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return fail(code, message, "ESINK_SOCKET", "socket(AF_PACKET)", errno);
  int version = TPACKET_V3;
  if (setsockopt(fd_, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0) {
    return fail(code, message, "ESINK_RING", "PACKET_VERSION", errno);
  }
  tpacket_req3 request{};
  request.tp_block_size = options_.block_size;
  request.tp_block_nr = options_.block_count;
  request.tp_frame_size = 2048;
  request.tp_frame_nr = (options_.block_size / 2048) * options_.block_count;
  request.tp_retire_blk_tov = 1;
  if (setsockopt(fd_, SOL_PACKET, PACKET_RX_RING, &request, sizeof(request)) != 0) {
    return fail(code, message, "ESINK_RING", "PACKET_RX_RING", errno);
  }
  ring_bytes_ = static_cast<size_t>(options_.block_size) * options_.block_count;
  void* ring = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, fd_, 0);
  if (ring == MAP_FAILED) ring = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (ring == MAP_FAILED) return fail(code, message, "ESINK_RING", "mmap", errno);
  ring_ = static_cast<uint8_t*>(ring);
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ALL);
  address.sll_ifindex = static_cast<int>(ifindex);
  if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    return fail(code, message, "ESINK_BIND", "bind " + options_.interface, errno);
  }
  return true;
}

TrafficSink::~TrafficSink() { close(); }

void TrafficSink::close() {
  stop_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
  if (ring_ != nullptr) munmap(ring_, ring_bytes_);
  ring_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool TrafficSink::expect(uint32_t run_tag) {
  wanted_tag_.store(run_tag, std::memory_order_relaxed);
  const uint64_t generation = generation_wanted_.load(std::memory_order_relaxed) + 1;
  generation_wanted_.store(generation, std::memory_order_release);  // pairs with loop()'s acquire
  const uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + 2'000'000'000ull;
  while (generation_adopted_.load(std::memory_order_acquire) < generation) {  // pairs with loop()'s release
    if (clock_ns(CLOCK_MONOTONIC) > deadline) return false;
    usleep(200);
  }
  return true;
}

void TrafficSink::loop() {
  pin_current_thread(options_.cpu);
  uint64_t adopted = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    const uint64_t wanted = generation_wanted_.load(std::memory_order_acquire);
    if (wanted != adopted) {
      frames_.store(0, std::memory_order_relaxed);
      bytes_.store(0, std::memory_order_relaxed);
      other_frames_.store(0, std::memory_order_relaxed);
      negative_.store(0, std::memory_order_relaxed);
      first_ns_.store(0, std::memory_order_relaxed);
      last_ns_.store(0, std::memory_order_relaxed);
      latency_sum_ns_.store(0, std::memory_order_relaxed);
      latency_max_ns_.store(0, std::memory_order_relaxed);
      histogram_.reset();
      adopted_tag_.store(wanted_tag_.load(std::memory_order_relaxed), std::memory_order_relaxed);
      adopted = wanted;
      generation_adopted_.store(adopted, std::memory_order_release);
    }
    auto* block = ring_ + static_cast<size_t>(next_block_) * options_.block_size;
    auto* desc = reinterpret_cast<tpacket_block_desc*>(block);
    // Acquire pairs with the kernel's smp_wmb() before it marks a retired block TP_STATUS_USER.
    const uint32_t status = std::atomic_ref<uint32_t>(desc->hdr.bh1.block_status).load(std::memory_order_acquire);
    if ((status & TP_STATUS_USER) == 0) {
      pollfd fds{fd_, POLLIN, 0};
      poll(&fds, 1, 50);
      continue;
    }
    walk_block(block);
    // Release: our reads of the block happen before the kernel may refill it.
    std::atomic_ref<uint32_t>(desc->hdr.bh1.block_status).store(TP_STATUS_KERNEL, std::memory_order_release);
    next_block_ = next_block_ + 1 == options_.block_count ? 0 : next_block_ + 1;
  }
}

void TrafficSink::walk_block(uint8_t* block) {
  auto* desc = reinterpret_cast<tpacket_block_desc*>(block);
  const uint32_t count = desc->hdr.bh1.num_pkts;
  uint8_t* cursor = block + desc->hdr.bh1.offset_to_first_pkt;
  const uint32_t tag = adopted_tag_.load(std::memory_order_relaxed);
  uint64_t frames = 0, bytes = 0, other = 0, negative = 0, sum = 0;
  uint64_t first = first_ns_.load(std::memory_order_relaxed), last = 0;
  uint64_t max = latency_max_ns_.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < count; ++i) {
    auto* header = reinterpret_cast<tpacket3_hdr*>(cursor);
    cursor += header->tp_next_offset;
    const uint8_t* data = reinterpret_cast<uint8_t*>(header) + header->tp_mac;
    const uint32_t len = header->tp_snaplen;
    if (len < 14 + 20 + kStampLen) {
      ++other;
      continue;
    }
    const FrameStamp stamp = read_stamp(data + len);
    if (stamp.run_tag != tag || tag == 0) {
      ++other;
      continue;
    }
    const uint64_t received = static_cast<uint64_t>(header->tp_sec) * 1'000'000'000ull + header->tp_nsec;
    uint64_t latency = 0;
    if (received >= stamp.sent_ns) {
      latency = received - stamp.sent_ns;
    } else {
      ++negative;
    }
    histogram_.record(latency);
    sum += latency;
    if (latency > max) max = latency;
    if (first == 0) first = received;
    last = received;
    ++frames;
    bytes += len;
  }
  if (frames != 0) {
    add(frames_, frames);
    add(bytes_, bytes);
    add(latency_sum_ns_, sum);
    latency_max_ns_.store(max, std::memory_order_relaxed);
    first_ns_.store(first, std::memory_order_relaxed);
    last_ns_.store(last, std::memory_order_relaxed);
  }
  if (other != 0) add(other_frames_, other);
  if (negative != 0) add(negative_, negative);
}

SinkStats TrafficSink::stats() const {
  SinkStats s;
  s.run_tag = adopted_tag_.load(std::memory_order_relaxed);
  s.frames = frames_.load(std::memory_order_relaxed);
  s.bytes = bytes_.load(std::memory_order_relaxed);
  s.other_frames = other_frames_.load(std::memory_order_relaxed);
  s.negative_latencies = negative_.load(std::memory_order_relaxed);
  s.first_ns = first_ns_.load(std::memory_order_relaxed);
  s.last_ns = last_ns_.load(std::memory_order_relaxed);
  if (fd_ >= 0) {
    tpacket_stats_v3 kernel{};
    socklen_t len = sizeof(kernel);
    // Reading resets the kernel's counter: accumulate.
    if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &kernel, &len) == 0) kernel_drops_.fetch_add(kernel.tp_drops);
  }
  s.kernel_drops = kernel_drops_.load(std::memory_order_relaxed);
  clockid_t clock;
  if (thread_.joinable() && pthread_getcpuclockid(native_thread_, &clock) == 0) s.thread_cpu_ns = clock_ns(clock);
  s.p50_ns = histogram_.percentile(0.50);
  s.p90_ns = histogram_.percentile(0.90);
  s.p99_ns = histogram_.percentile(0.99);
  s.p999_ns = histogram_.percentile(0.999);
  s.max_ns = static_cast<double>(latency_max_ns_.load(std::memory_order_relaxed));
  s.mean_ns = s.frames == 0 ? 0 : static_cast<double>(latency_sum_ns_.load(std::memory_order_relaxed)) / static_cast<double>(s.frames);
  return s;
}

}  // namespace l4lb::bench

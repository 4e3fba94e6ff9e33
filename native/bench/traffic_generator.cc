#include "bench/traffic_generator.h"

#include <time.h>

#include <algorithm>
#include <cstring>

#include "bench/bench_clock.h"
#include "bench/frame_stamp.h"
#include "core/checksum.h"
#include "core/frame.h"
#include "core/forward.h"
#include "io/bpf_filter.h"

namespace l4lb::bench {

namespace {

constexpr uint32_t kEthernetLen = 14;
constexpr uint32_t kIpv4Len = 20;
constexpr uint32_t kUdpLen = 8;
constexpr uint32_t kTcpLen = 20;
constexpr uint32_t kFcsLen = 4;
constexpr uint32_t kMaxWireLength = 1514;  // MTU 1500 + Ethernet header
constexpr uint32_t kIpSourceOffset = kEthernetLen + 12;
constexpr uint32_t kIpChecksumOffset = kEthernetLen + 10;

uint32_t fold(uint32_t sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  return (sum & 0xffff) + (sum >> 16);
}

uint32_t swap_bytes16(uint32_t word) { return ((word & 0xff) << 8) | (word >> 8); }

}  // namespace

std::unique_ptr<TrafficGenerator> TrafficGenerator::create(const GeneratorOptions& options, io::PortError* error) {
  const uint32_t l4_len = options.protocol == GeneratedProtocol::tcp ? kTcpLen : kUdpLen;
  const uint32_t minimum = kEthernetLen + kIpv4Len + l4_len + kStampLen + kFcsLen;
  if (options.frame_size < std::max(minimum, 64u) || options.frame_size > kMaxWireLength + kFcsLen) {
    error->code = "EINVAL";
    error->message = "frameSize must be " + std::to_string(std::max(minimum, 64u)) + ".." +
                     std::to_string(kMaxWireLength + kFcsLen) + " for this protocol, got " +
                     std::to_string(options.frame_size);
    return nullptr;
  }
  std::unique_ptr<TrafficGenerator> generator(new TrafficGenerator());
  generator->options_ = options;
  generator->wire_length_ = options.frame_size - kFcsLen;
  generator->l4_offset_ = kEthernetLen + kIpv4Len;

  io::AfPacketOptions port_options;
  port_options.interface = options.interface;
  port_options.netns_path = options.netns_path;
  port_options.tx_method = options.tx_method;
  port_options.cpu = options.cpu;
  // The generator only sends: a small receive ring that its filter keeps
  // empty, so frames coming back cost the kernel no copy into it.
  port_options.rx_frame_count = 64;
  port_options.aggregate_buffers = 0;
  io::BpfFilterSpec nothing;
  nothing.accept_arp = false;
  port_options.filter = io::build_bpf_filter(nothing).instructions;
  generator->port_ = io::AfPacketPort::create(port_options, error);
  if (!generator->port_) return nullptr;
  generator->build_templates();
  return generator;
}

TrafficGenerator::~TrafficGenerator() { stop(); }

void TrafficGenerator::build_templates() {
  const bool tcp = options_.protocol == GeneratedProtocol::tcp;
  uint8_t frame[kMaxWireLength] = {};
  uint8_t* p = frame;
  std::memcpy(p, options_.dst_mac, 6);
  std::memcpy(p + 6, options_.src_mac, 6);
  core::store_be16(p + 12, 0x0800);
  uint8_t* ip = p + kEthernetLen;
  ip[0] = 0x45;
  core::store_be16(ip + 2, static_cast<uint16_t>(wire_length_ - kEthernetLen));
  core::store_be16(ip + 6, 0x4000);  // DF, as a TCP stack sends: tunnels must not fragment it
  ip[8] = 64;
  ip[9] = tcp ? 6 : 17;
  core::store_be32(ip + 16, options_.dst_addr);
  // Source address and checksum stay zero here: added per frame.
  ip_partial_ = core::checksum_partial(ip, kIpv4Len);

  uint8_t* l4 = p + l4_offset_;
  const uint32_t segment_len = wire_length_ - l4_offset_;
  core::store_be16(l4 + 2, options_.dst_port);
  if (tcp) {
    core::store_be32(l4 + 4, 1);       // sequence
    core::store_be32(l4 + 8, 1);       // acknowledgment
    l4[12] = 5 << 4;                   // data offset: no options
    l4[13] = 0x10;                     // ACK: a flow picked up mid-stream is established at once
    core::store_be16(l4 + 14, 0xffff); // window
    uint8_t pseudo[12] = {};
    core::store_be32(pseudo + 4, options_.dst_addr);
    pseudo[9] = 6;
    core::store_be16(pseudo + 10, static_cast<uint16_t>(segment_len));
    l4_partial_ = core::checksum_partial(l4, segment_len, core::checksum_partial(pseudo, sizeof(pseudo)));
  } else {
    core::store_be16(l4 + 4, static_cast<uint16_t>(segment_len));
    // Checksum 0: "none" (RFC 768). Every forwarder under test keeps it so,
    // and the generator pays nothing per frame for it.
  }
  frames_.assign(core::kMaxBurst, std::vector<uint8_t>(frame, frame + wire_length_));
}

void TrafficGenerator::fill(uint8_t* frame, uint64_t flow, uint32_t sequence, uint64_t sent_ns,
                            uint32_t run_tag) const {
  const uint32_t src_addr = options_.src_addr + static_cast<uint32_t>(flow / kPortsPerAddress);
  const uint16_t src_port = static_cast<uint16_t>(1024 + flow % kPortsPerAddress);
  core::store_be32(frame + kIpSourceOffset, src_addr);
  const uint32_t address_sum = (src_addr >> 16) + (src_addr & 0xffff);
  core::store_be16(frame + kIpChecksumOffset, core::checksum_finish(ip_partial_ + address_sum));
  uint8_t* l4 = frame + l4_offset_;
  core::store_be16(l4, src_port);
  uint8_t* end = frame + wire_length_;
  write_stamp(end, FrameStamp{run_tag, sequence, sent_ns});
  if (options_.protocol == GeneratedProtocol::tcp) {
    uint32_t stamp_sum = fold(core::checksum_partial(end - kStampLen, kStampLen));
    // The stamp's words are summed as if they started the segment: at an odd
    // offset into it their bytes sit in the other half of each 16-bit word.
    if ((wire_length_ - kStampLen - l4_offset_) % 2 != 0) stamp_sum = swap_bytes16(stamp_sum);
    const uint32_t sum = l4_partial_ + address_sum + src_port + stamp_sum;
    core::store_be16(l4 + 16, core::checksum_finish(fold(sum)));
  }
}

bool TrafficGenerator::start(const GeneratorRun& run) {
  if (running_.load(std::memory_order_acquire)) return false;
  if (thread_.joinable()) thread_.join();
  stop_requested_.store(false, std::memory_order_relaxed);
  sent_.store(0, std::memory_order_relaxed);
  refused_.store(0, std::memory_order_relaxed);
  kicks_.store(0, std::memory_order_relaxed);
  elapsed_ns_.store(0, std::memory_order_relaxed);
  thread_cpu_ns_.store(0, std::memory_order_relaxed);
  next_flow_.store(run.first_flow, std::memory_order_relaxed);
  running_.store(true, std::memory_order_release);
  thread_ = std::thread([this, run] { run_loop(run); });
  return true;
}

void TrafficGenerator::stop() {
  stop_requested_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

GeneratorStats TrafficGenerator::stats() const {
  GeneratorStats s;
  // Acquire pairs with the run thread's release store of running_ = false:
  // once it reads false, the final counters below are visible.
  s.running = running_.load(std::memory_order_acquire);
  s.sent = sent_.load(std::memory_order_relaxed);
  s.refused = refused_.load(std::memory_order_relaxed);
  s.kicks = kicks_.load(std::memory_order_relaxed);
  s.elapsed_ns = elapsed_ns_.load(std::memory_order_relaxed);
  s.thread_cpu_ns = thread_cpu_ns_.load(std::memory_order_relaxed);
  s.next_flow = next_flow_.load(std::memory_order_relaxed);
  return s;
}

void TrafficGenerator::run_loop(GeneratorRun run) {
  pin_current_thread(options_.cpu);
  const uint32_t burst = std::clamp<uint32_t>(run.burst, 1, core::kMaxBurst);
  const uint32_t flows = std::max<uint32_t>(run.flows, 1);
  const uint32_t min_burst = std::clamp<uint32_t>(run.min_burst, 1, burst);
  core::Frame descriptors[core::kMaxBurst];
  for (uint32_t i = 0; i < core::kMaxBurst; ++i) {
    descriptors[i] = core::make_frame(frames_[i].data(), wire_length_, 0, 0);  // no owner: the port copies
  }
  const uint64_t cpu_start = clock_ns(CLOCK_THREAD_CPUTIME_ID);
  const uint64_t start = clock_ns(CLOCK_MONOTONIC);
  const uint64_t end = start + run.duration_ns;
  uint64_t attempted = 0, sent = 0, refused = 0, kicks = 0;
  uint64_t now = start;
  while (!stop_requested_.load(std::memory_order_relaxed)) {
    now = clock_ns(CLOCK_MONOTONIC);
    if (now >= end || (run.max_frames != 0 && attempted >= run.max_frames)) break;
    uint64_t allowed = burst;
    if (run.rate_pps > 0) {
      const double due = static_cast<double>(now - start) * run.rate_pps / 1e9;
      if (due < static_cast<double>(attempted + min_burst)) {
        // Sleep through long gaps (low rates), spin through short ones: a
        // timer wake-up is late by tens of microseconds.
        const double wait_ns = (static_cast<double>(attempted + min_burst) - due) * 1e9 / run.rate_pps;
        if (wait_ns > 200'000) {
          const uint64_t nap = static_cast<uint64_t>(wait_ns) - 100'000;
          timespec ts{static_cast<time_t>(nap / 1'000'000'000ull), static_cast<long>(nap % 1'000'000'000ull)};
          nanosleep(&ts, nullptr);
        }
        continue;
      }
      allowed = std::min<uint64_t>(burst, static_cast<uint64_t>(due) - attempted);
    }
    if (run.max_frames != 0) allowed = std::min(allowed, run.max_frames - attempted);
    const uint64_t sent_ns = clock_ns(CLOCK_REALTIME);
    for (uint32_t i = 0; i < allowed; ++i) {
      const uint64_t frame_number = attempted + i;
      const uint64_t flow = run.new_flow_per_frame ? run.first_flow + frame_number : frame_number % flows;
      fill(frames_[i].data(), flow, static_cast<uint32_t>(frame_number), sent_ns, run.run_tag);
    }
    const uint32_t accepted = port_->tx_burst(descriptors, static_cast<uint32_t>(allowed)).packets;
    attempted += allowed;
    sent += accepted;
    refused += allowed - accepted;
    ++kicks;
    if ((kicks & 63) == 0) {
      sent_.store(sent, std::memory_order_relaxed);
      refused_.store(refused, std::memory_order_relaxed);
      kicks_.store(kicks, std::memory_order_relaxed);
    }
  }
  sent_.store(sent, std::memory_order_relaxed);
  refused_.store(refused, std::memory_order_relaxed);
  kicks_.store(kicks, std::memory_order_relaxed);
  elapsed_ns_.store(clock_ns(CLOCK_MONOTONIC) - start, std::memory_order_relaxed);
  thread_cpu_ns_.store(clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu_start, std::memory_order_relaxed);
  next_flow_.store(run.new_flow_per_frame ? run.first_flow + attempted : run.first_flow, std::memory_order_relaxed);
  running_.store(false, std::memory_order_release);  // pairs with stats()' acquire load
}

}  // namespace l4lb::bench

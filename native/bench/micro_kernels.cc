#include "bench/micro_kernels.h"

#include <time.h>

#include <algorithm>
#include <cstring>

#include "bench/bench_clock.h"
#include "core/forward.h"
#include "core/hash.h"
#include "core/parse.h"
#include "core/rewrite.h"
#include "core/sched/maglev.h"

namespace l4lb::bench {

namespace {

uint64_t xorshift(uint64_t& state) {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

std::vector<core::sched::BackendSpec> equal_backends(uint32_t count, const std::atomic<int32_t>* active_flows) {
  std::vector<core::sched::BackendSpec> backends(count);
  for (uint32_t i = 0; i < count; ++i) {
    backends[i].weight = 1 + i % 3;  // unequal weights: wrr and wlc do real work
    backends[i].identity = core::backend_identity("198.18." + std::to_string(1 + i / 250) + "." +
                                                  std::to_string(1 + i % 250) + ":8080");
    backends[i].active_flows = active_flows != nullptr ? &active_flows[i] : nullptr;
  }
  return backends;
}

constexpr uint8_t kBenchHashKey[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
constexpr uint32_t kHeadroom = 128;
constexpr uint32_t kTailroom = 128;

}  // namespace

std::unique_ptr<SchedulerPickKernel> SchedulerPickKernel::create(const std::string& kind, uint32_t backends,
                                                                 std::string* error) {
  core::sched::SchedulerKind scheduler_kind;
  if (!core::sched::scheduler_kind_from_name(kind, &scheduler_kind) || scheduler_kind == core::sched::SchedulerKind::table) {
    *error = "unknown scheduler " + kind + " (rr, wrr, lc, wlc, sh, maglev)";
    return nullptr;
  }
  std::unique_ptr<SchedulerPickKernel> kernel(new SchedulerPickKernel());
  kernel->active_flows_ = std::make_unique<std::atomic<int32_t>[]>(backends);
  for (uint32_t i = 0; i < backends; ++i) kernel->active_flows_[i].store(static_cast<int32_t>(i * 7 % 13));
  const auto specs = equal_backends(backends, kernel->active_flows_.get());
  core::sched::BuildError build_error;
  kernel->scheduler_ = core::sched::build_scheduler(scheduler_kind, specs, core::sched::SchedulerOptions{}, &build_error);
  if (!kernel->scheduler_) {
    *error = build_error.code + ": " + build_error.message;
    return nullptr;
  }
  return kernel;
}

uint64_t SchedulerPickKernel::run(uint32_t iterations) {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < iterations; ++i) {
    core::sched::PickInput input;
    input.flow_hash = xorshift(seed_);
    input.client_hash = input.flow_hash >> 17;
    sum += static_cast<uint64_t>(scheduler_->pick(input, state_));
  }
  return sum;
}

FlowTableKernel::FlowTableKernel(uint32_t slots, uint32_t flows) : flows_(flows) {
  core::FlowTableOptions options;
  options.slots = slots;
  options.hash_key = core::sip_hash_key_from_bytes(kBenchHashKey);
  table_ = std::make_unique<core::FlowTable>(options);
  const uint64_t started = clock_ns(CLOCK_MONOTONIC);
  for (uint32_t i = 0; i < flows; ++i) {
    core::NewFlow flow;
    flow.key = key_of(i);
    flow.reverse_key = core::FlowKey::ipv4(17, 0xc6120102, 9, flow.key.src_ipv4(), flow.key.src_port);
    flow.track_reverse = true;
    flow.backend_id = 1;
    flow.state = core::FlowState::udp;
    core::Flow out;
    held_ += table_->insert(flow, table_->hash(flow.key), 1000, counters_, &out) == core::FlowInsertResult::inserted;
  }
  fill_ns_ = clock_ns(CLOCK_MONOTONIC) - started;
  fresh_ = flows;
}

core::FlowKey FlowTableKernel::key_of(uint64_t index) const {
  return core::FlowKey::ipv4(17, 0xc6120000u + static_cast<uint32_t>(index / 64512), static_cast<uint16_t>(1024 + index % 64512),
                             0xc6126464, 9);
}

size_t FlowTableKernel::bytes() const { return table_->memory_bytes(); }

uint64_t FlowTableKernel::lookup_hits(uint32_t iterations) {
  uint64_t found = 0;
  core::Flow flow;
  for (uint32_t i = 0; i < iterations; ++i) {
    // A stride through the tracked flows, so consecutive lookups touch unrelated buckets.
    cursor_ = (cursor_ + 40503) % flows_;
    const core::FlowKey key = key_of(cursor_);
    found += table_->lookup(key, table_->hash(key), 1000, counters_, &flow) ? 1 : 0;
  }
  return found;
}

uint64_t FlowTableKernel::lookup_burst_hits(uint32_t iterations) {
  // As the engine looks up a received burst: every key hashed and its
  // buckets prefetched first, then the lookups, so the misses overlap.
  uint64_t found = 0;
  core::Flow flow;
  core::FlowKey keys[core::kMaxBurst];
  uint64_t hashes[core::kMaxBurst];
  for (uint32_t done = 0; done < iterations;) {
    const uint32_t n = std::min<uint32_t>(core::kMaxBurst, iterations - done);
    for (uint32_t i = 0; i < n; ++i) {
      cursor_ = (cursor_ + 40503) % flows_;
      keys[i] = key_of(cursor_);
      hashes[i] = table_->hash(keys[i]);
      table_->prefetch(hashes[i]);
    }
    for (uint32_t i = 0; i < n; ++i) found += table_->lookup(keys[i], hashes[i], 1000, counters_, &flow) ? 1 : 0;
    done += n;
  }
  return found;
}

uint64_t FlowTableKernel::lookup_misses(uint32_t iterations) {
  uint64_t found = 0;
  core::Flow flow;
  for (uint32_t i = 0; i < iterations; ++i) {
    const core::FlowKey key = key_of(1'000'000'000ull + (cursor_++));
    found += table_->lookup(key, table_->hash(key), 1000, counters_, &flow) ? 1 : 0;
  }
  return found;
}

uint64_t FlowTableKernel::insert_remove(uint32_t iterations) {
  uint64_t inserted = 0;
  for (uint32_t i = 0; i < iterations; ++i) {
    core::NewFlow flow;
    flow.key = key_of(fresh_++);
    flow.reverse_key = core::FlowKey::ipv4(17, 0xc6120102, 9, flow.key.src_ipv4(), flow.key.src_port);
    flow.track_reverse = true;
    flow.backend_id = 1;
    flow.state = core::FlowState::udp;
    core::Flow out;
    if (table_->insert(flow, table_->hash(flow.key), 1000, counters_, &out) == core::FlowInsertResult::inserted) {
      ++inserted;
      table_->remove(out.handle, counters_);
    }
  }
  return inserted;
}

uint64_t maglev_build_ns(uint32_t backends, uint32_t table_size) {
  const auto specs = equal_backends(backends, nullptr);
  core::sched::MaglevOptions options;
  options.table_size = table_size;
  core::sched::BuildError error;
  const uint64_t start = clock_ns(CLOCK_MONOTONIC);
  auto scheduler = core::sched::MaglevScheduler::build(specs, options, &error);
  const uint64_t elapsed = clock_ns(CLOCK_MONOTONIC) - start;
  return scheduler ? elapsed : 0;
}

std::unique_ptr<RewriteKernel> RewriteKernel::create(const std::string& kind, const uint8_t* frame, uint32_t len,
                                                     std::string* error) {
  std::unique_ptr<RewriteKernel> kernel(new RewriteKernel());
  static const std::pair<const char*, Kind> kinds[] = {{"copy", Kind::copy}, {"parse", Kind::parse},
                                                       {"nat", Kind::nat},   {"fullnat", Kind::fullnat},
                                                       {"dr", Kind::dr},     {"ipip", Kind::ipip},
                                                       {"gre", Kind::gre}};
  bool known = false;
  for (const auto& [name, value] : kinds) {
    if (kind == name) {
      kernel->kind_ = value;
      known = true;
    }
  }
  if (!known) {
    *error = "unknown rewrite " + kind + " (copy, parse, nat, fullnat, dr, ipip, gre)";
    return nullptr;
  }
  core::PacketInfo info;
  if (!core::parse_frame(frame, len, &info).is_ok() || info.ip_version != 4) {
    *error = "the frame is not an IPv4 packet the parser accepts";
    return nullptr;
  }
  kernel->original_.assign(frame, frame + len);
  kernel->buffer_.assign(kHeadroom + len + kTailroom, 0);
  return kernel;
}

uint64_t RewriteKernel::run(uint32_t iterations) {
  const core::EthernetRewrite macs{{{0x02, 0xbe, 0, 0, 0, 2}}, {{0x02, 0xbe, 0, 0, 0, 1}}};
  core::TunnelParams tunnel;
  tunnel.type = kind_ == Kind::gre ? core::TunnelType::gre : core::TunnelType::ipip;
  tunnel.src_addr = 0xc6120101;
  tunnel.dst_addr = 0xc6120102;
  tunnel.gre_with_key = kind_ == Kind::gre;
  tunnel.gre_key = 7;
  uint64_t total = 0;
  const uint32_t len = static_cast<uint32_t>(original_.size());
  for (uint32_t i = 0; i < iterations; ++i) {
    uint8_t* data = buffer_.data() + kHeadroom;
    std::memcpy(data, original_.data(), len);
    core::Frame frame = core::make_frame(data, len, kHeadroom, kTailroom);
    if (kind_ == Kind::copy) {
      total += frame.len;
      continue;
    }
    core::PacketInfo info;
    if (!core::parse_frame(frame.data, frame.len, &info).is_ok()) return 0;
    bool ok = true;
    switch (kind_) {
      case Kind::copy:
      case Kind::parse:
        break;
      case Kind::nat:
        ok = core::rewrite_ipv4_destination(frame.data, &info, 0xc6120102, 8080) && core::decrement_ttl(frame.data, &info) &&
             core::rewrite_ethernet(&frame, &info, macs);
        break;
      case Kind::fullnat:
        ok = core::rewrite_ipv4_destination(frame.data, &info, 0xc6120102, 8080) &&
             core::rewrite_ipv4_source(frame.data, &info, 0xc6120132, static_cast<uint16_t>(1024 + i % 60000)) &&
             core::decrement_ttl(frame.data, &info) && core::rewrite_ethernet(&frame, &info, macs);
        break;
      case Kind::dr:
        ok = core::rewrite_ethernet(&frame, &info, macs);
        break;
      case Kind::ipip:
      case Kind::gre:
        tunnel.identification = static_cast<uint16_t>(i);
        ok = core::encapsulate_ipv4(&frame, &info, tunnel) != 0 && core::rewrite_ethernet(&frame, &info, macs);
        break;
    }
    if (!ok) return 0;
    total += frame.len;
  }
  return total;
}

std::unique_ptr<EngineStepKernel> EngineStepKernel::create(const uint8_t* snapshot, size_t snapshot_len,
                                                           uint32_t ports, uint32_t port, const uint8_t* frame,
                                                           uint32_t len, std::string* error) {
  const io::MemoryPortOptions port_options;
  if (ports == 0 || port >= ports || len == 0 || len > port_options.max_frame) {
    *error = "port must be below ports, and the frame 1.." + std::to_string(port_options.max_frame) + " bytes";
    return nullptr;
  }
  std::unique_ptr<EngineStepKernel> kernel(new EngineStepKernel());
  engine::EngineOptions options;
  options.workers = 1;
  options.threaded = false;
  std::memcpy(options.hash_key, kBenchHashKey, sizeof(options.hash_key));
  kernel->memory_ = std::make_shared<io::MemoryDriver>(ports, port_options);
  kernel->engine_ = std::make_unique<engine::Engine>(options, kernel->memory_);
  io::PortError port_error;
  if (!kernel->engine_->open_ports(&port_error)) {
    *error = port_error.message;
    return nullptr;
  }
  if (!kernel->engine_->publish(snapshot, snapshot_len, error)) return nullptr;
  kernel->frame_.assign(frame, frame + len);
  kernel->port_ = port;
  kernel->ports_ = ports;
  return kernel;
}

uint64_t EngineStepKernel::run(uint32_t iterations) {
  std::vector<uint8_t> out(memory_->max_frame());
  uint64_t transmitted = 0;
  uint32_t done = 0;
  while (done < iterations) {
    const uint32_t batch = std::min<uint32_t>(core::kMaxBurst, iterations - done);
    for (uint32_t i = 0; i < batch; ++i) {
      memory_->inject(port_, frame_.data(), static_cast<uint32_t>(frame_.size()));
    }
    now_ns_ += 1000;
    engine_->poll(now_ns_);
    for (uint32_t p = 0; p < ports_; ++p) {
      while (memory_->take(p, out.data(), static_cast<uint32_t>(out.size())) != 0) ++transmitted;
    }
    done += batch;
  }
  return transmitted;
}

}  // namespace l4lb::bench

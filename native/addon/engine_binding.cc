// JavaScript handle over engine::Engine: plain verbs, values converted, no
// policy. Errors carry a `code` string; lib/native turns them into typed
// errors with the JavaScript stack.
#include "addon/engine_binding.h"

#include <sys/random.h>

#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "core/drop_reason.h"
#include "core/flow_table.h"
#include "core/sched/scheduler.h"
#include "engine/engine.h"
#include "engine/stats_region.h"
#include "io/driver_factory.h"

namespace l4lb::addon {

namespace {

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

uint32_t OptionalUint32(const Napi::Object& object, const char* key, uint32_t fallback) {
  Napi::Value value = object.Get(key);
  return value.IsNumber() ? value.As<Napi::Number>().Uint32Value() : fallback;
}

// FlowState names, as TypeScript shows them.
const char* flow_state_name(core::FlowState state) {
  switch (state) {
    case core::FlowState::tcp_syn_seen: return "syn-seen";
    case core::FlowState::tcp_established: return "established";
    case core::FlowState::tcp_fin_original: return "fin-from-client";
    case core::FlowState::tcp_fin_reply: return "fin-from-backend";
    case core::FlowState::tcp_closed: return "closed";
    case core::FlowState::udp: return "udp";
    case core::FlowState::other: return "other";
  }
  return "other";
}

// shm::SchedulerKind as the snapshot names it.
const char* ShmSchedulerName(uint8_t kind) {
  static constexpr const char* kNames[] = {"rr", "wrr", "lc", "wlc", "sh", "maglev", "table"};
  return kind < sizeof(kNames) / sizeof(kNames[0]) ? kNames[kind] : "unknown";
}

Napi::Value BackendIdOrNull(Napi::Env env, const core::RuntimeConfig* config, uint32_t index) {
  if (config == nullptr || index >= config->view().backends.size()) return env.Null();
  return Napi::Number::New(env, config->view().backends[index].id);
}

class EngineHandle : public Napi::ObjectWrap<EngineHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {
                           InstanceMethod<&EngineHandle::Publish>("publish"),
                           InstanceMethod<&EngineHandle::Poll>("poll"),
                           InstanceMethod<&EngineHandle::Inject>("inject"),
                           InstanceMethod<&EngineHandle::Take>("take"),
                           InstanceMethod<&EngineHandle::Counters>("counters"),
                           InstanceMethod<&EngineHandle::BackendCounters>("backendCounters"),
                           InstanceMethod<&EngineHandle::FlowOccupancy>("flowOccupancy"),
                           InstanceMethod<&EngineHandle::FlowTableSize>("flowTable"),
                           InstanceMethod<&EngineHandle::MaglevChangedSlots>("maglevChangedSlots"),
                           InstanceMethod<&EngineHandle::ExplainFlow>("explainFlow"),
                           InstanceMethod<&EngineHandle::SharedMemory>("sharedMemory"),
                           InstanceMethod<&EngineHandle::PostEvent>("postEvent"),
                           InstanceMethod<&EngineHandle::EventsDrained>("eventsDrained"),
                           InstanceMethod<&EngineHandle::Start>("start"),
                           InstanceMethod<&EngineHandle::PortCounters>("portCounters"),
                           InstanceMethod<&EngineHandle::Close>("close"),
                       });
  }

  explicit EngineHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineHandle>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      CodedError(env, "EINVAL", "Engine(options): options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    engine::EngineOptions options;
    io::DriverSpec driver;
    options.workers = OptionalUint32(o, "workers", 1);
    driver.interfaces = OptionalUint32(o, "ports", 1);
    options.threaded = o.Get("threaded").ToBoolean();
    options.polling = o.Get("polling").IsString() && o.Get("polling").As<Napi::String>().Utf8Value() == "busy"
                          ? engine::Polling::busy
                          : engine::Polling::adaptive;
    options.spin_ns = static_cast<uint64_t>(OptionalUint32(o, "spinUs", static_cast<uint32_t>(options.spin_ns / 1000))) * 1000;
    options.expiry_interval_ms = OptionalUint32(o, "expiryIntervalMs", options.expiry_interval_ms);
    // The table is sized by IPv4 nat flows at the design load (flowCapacity),
    // by its memory (flowMemoryBytes), or in slots (tests).
    if (o.Get("flowMemoryBytes").IsNumber()) {
      const double bytes = o.Get("flowMemoryBytes").As<Napi::Number>().DoubleValue();
      options.flow_slots = static_cast<uint32_t>(core::FlowTable::slots_for_bytes(bytes > 0 ? static_cast<uint64_t>(bytes) : 0));
    } else if (o.Get("flowCapacity").IsNumber()) {
      const double flows = o.Get("flowCapacity").As<Napi::Number>().DoubleValue();
      options.flow_slots = static_cast<uint32_t>(core::FlowTable::slots_for_flows(flows > 0 ? static_cast<uint64_t>(flows) : 0));
    } else {
      options.flow_slots = OptionalUint32(o, "flowSlots", options.flow_slots);
    }
    options.backend_slots = OptionalUint32(o, "backendSlots", options.backend_slots);
    options.maglev_table_size = OptionalUint32(o, "maglevTableSize", options.maglev_table_size);
    driver.memory.ring_frames = OptionalUint32(o, "ringFrames", driver.memory.ring_frames);
    driver.memory.max_frame = OptionalUint32(o, "maxFrame", driver.memory.max_frame);
    if (o.Get("memoryOffloads").IsObject()) {
      Napi::Object offloads = o.Get("memoryOffloads").As<Napi::Object>();
      driver.memory.capabilities.checksum_offload = offloads.Get("checksum").ToBoolean();
      driver.memory.capabilities.segmentation_offload = offloads.Get("segmentation").ToBoolean();
    }
    options.event_ring_records = OptionalUint32(o, "eventRecords", options.event_ring_records);
    options.flow_event_records = OptionalUint32(o, "flowEventRecords", 0);
    if (o.Get("signalIntervalMs").IsNumber()) {
      options.signal_interval_ns =
          static_cast<uint64_t>(o.Get("signalIntervalMs").As<Napi::Number>().Uint32Value()) * 1'000'000ull;
    }
    if (o.Get("timeouts").IsObject()) {
      Napi::Object t = o.Get("timeouts").As<Napi::Object>();
      options.timeouts.tcp_syn_ms = OptionalUint32(t, "tcpSynMs", options.timeouts.tcp_syn_ms);
      options.timeouts.tcp_established_ms = OptionalUint32(t, "tcpEstablishedMs", options.timeouts.tcp_established_ms);
      options.timeouts.tcp_closing_ms = OptionalUint32(t, "tcpClosingMs", options.timeouts.tcp_closing_ms);
      options.timeouts.tcp_closed_ms = OptionalUint32(t, "tcpClosedMs", options.timeouts.tcp_closed_ms);
      options.timeouts.udp_ms = OptionalUint32(t, "udpMs", options.timeouts.udp_ms);
      options.timeouts.other_ms = OptionalUint32(t, "otherMs", options.timeouts.other_ms);
    }
    // The flow-table key must be secret: from the kernel's CSPRNG, unless the
    // caller shares one (balancers that must hash flows alike, or tests).
    if (o.Get("hashKey").IsTypedArray()) {
      Napi::Uint8Array key = o.Get("hashKey").As<Napi::Uint8Array>();
      if (key.ByteLength() != sizeof(options.hash_key)) {
        CodedError(env, "EINVAL", "Engine(options): hashKey must be 16 bytes").ThrowAsJavaScriptException();
        return;
      }
      std::memcpy(options.hash_key, key.Data(), sizeof(options.hash_key));
    } else if (getrandom(options.hash_key, sizeof(options.hash_key), 0) != static_cast<ssize_t>(sizeof(options.hash_key))) {
      CodedError(env, "ERANDOM", "getrandom failed").ThrowAsJavaScriptException();
      return;
    }
    if (options.workers == 0 || options.workers > 64 || driver.interfaces == 0 || driver.interfaces > 64 ||
        options.backend_slots == 0 || options.backend_slots > 65536 || options.event_ring_records == 0 ||
        options.event_ring_records > (1u << 16) || options.flow_event_records > (1u << 16) || driver.memory.max_frame < 64 || driver.memory.max_frame > 65535 + 18) {
      CodedError(env, "EINVAL",
                 "Engine(options): workers and ports must be 1..64, backendSlots 1..65536, eventRecords 1..65536, flowEventRecords 0..65536, "
                 "maxFrame 64..65553")
          .ThrowAsJavaScriptException();
      return;
    }
    if (o.Get("afPacket").IsObject()) {
      Napi::Object a = o.Get("afPacket").As<Napi::Object>();
      if (!a.Get("interfaces").IsArray()) {
        CodedError(env, "EINVAL", "Engine(options): afPacket.interfaces must be an array of names").ThrowAsJavaScriptException();
        return;
      }
      driver.name = "af_packet";
      Napi::Array names = a.Get("interfaces").As<Napi::Array>();
      for (uint32_t i = 0; i < names.Length(); ++i) {
        if (!names.Get(i).IsString()) {
          CodedError(env, "EINVAL", "Engine(options): afPacket.interfaces must be an array of names").ThrowAsJavaScriptException();
          return;
        }
        driver.af_packet.interfaces.push_back(names.Get(i).As<Napi::String>().Utf8Value());
      }
      if (a.Get("txMethod").IsString() && a.Get("txMethod").As<Napi::String>().Utf8Value() == "ring") {
        driver.af_packet.tx_method = io::TxMethod::ring;
      }
      driver.af_packet.rx_frame_count = OptionalUint32(a, "rxFrames", driver.af_packet.rx_frame_count);
      if (a.Get("cpus").IsArray()) {
        Napi::Array cpus = a.Get("cpus").As<Napi::Array>();
        for (uint32_t i = 0; i < cpus.Length(); ++i) options.worker_cpus.push_back(cpus.Get(i).As<Napi::Number>().Int32Value());
      }
      driver.af_packet.worker_cpus = options.worker_cpus;
    }
    if (o.Get("afXdp").IsObject()) {
      Napi::Object a = o.Get("afXdp").As<Napi::Object>();
      if (!a.Get("interfaces").IsArray() || !a.Get("library").IsString()) {
        CodedError(env, "EINVAL", "Engine(options): afXdp needs interfaces (an array of names) and library (a path)")
            .ThrowAsJavaScriptException();
        return;
      }
      driver.name = "af_xdp";
      driver.af_xdp.library = a.Get("library").As<Napi::String>().Utf8Value();
      Napi::Array names = a.Get("interfaces").As<Napi::Array>();
      for (uint32_t i = 0; i < names.Length(); ++i) {
        if (!names.Get(i).IsString()) {
          CodedError(env, "EINVAL", "Engine(options): afXdp.interfaces must be an array of names").ThrowAsJavaScriptException();
          return;
        }
        driver.af_xdp.interfaces.push_back(names.Get(i).As<Napi::String>().Utf8Value());
      }
      const std::string mode = a.Get("mode").IsString() ? a.Get("mode").As<Napi::String>().Utf8Value() : "auto";
      driver.af_xdp.mode = mode == "native" ? io::XdpMode::native : mode == "generic" ? io::XdpMode::generic : io::XdpMode::automatic;
      driver.af_xdp.ring_size = OptionalUint32(a, "ringSize", driver.af_xdp.ring_size);
      if (a.Get("cpus").IsArray()) {
        Napi::Array cpus = a.Get("cpus").As<Napi::Array>();
        for (uint32_t i = 0; i < cpus.Length(); ++i) options.worker_cpus.push_back(cpus.Get(i).As<Napi::Number>().Int32Value());
      }
      driver.af_xdp.worker_cpus = options.worker_cpus;
    }
    if (o.Get("dpdk").IsObject()) {
      Napi::Object d = o.Get("dpdk").As<Napi::Object>();
      auto strings = [&](const char* key, std::vector<std::string>* out) {
        if (d.Get(key).IsUndefined()) return true;
        if (!d.Get(key).IsArray()) return false;
        Napi::Array list = d.Get(key).As<Napi::Array>();
        for (uint32_t i = 0; i < list.Length(); ++i) {
          if (!list.Get(i).IsString()) return false;
          out->push_back(list.Get(i).As<Napi::String>().Utf8Value());
        }
        return true;
      };
      if (!d.Get("library").IsString() || !strings("interfaces", &driver.dpdk.interfaces) || !strings("devices", &driver.dpdk.devices) ||
          !strings("eal", &driver.dpdk.eal)) {
        CodedError(env, "EINVAL", "Engine(options): dpdk needs library (a path); interfaces, devices and eal are arrays of strings")
            .ThrowAsJavaScriptException();
        return;
      }
      driver.name = "dpdk";
      driver.dpdk.library = d.Get("library").As<Napi::String>().Utf8Value();
      if (d.Get("vdev").IsString() && d.Get("vdev").As<Napi::String>().Utf8Value() == "af_packet") driver.dpdk.vdev = io::DpdkKernelVdev::af_packet;
      driver.dpdk.hugepages = d.Get("hugepages").ToBoolean();
      driver.dpdk.ring_size = OptionalUint32(d, "ringSize", driver.dpdk.ring_size);
      if (d.Get("cpus").IsArray()) {
        Napi::Array cpus = d.Get("cpus").As<Napi::Array>();
        for (uint32_t i = 0; i < cpus.Length(); ++i) options.worker_cpus.push_back(cpus.Get(i).As<Napi::Number>().Int32Value());
      }
      driver.dpdk.worker_cpus = options.worker_cpus;
    }
    io::PortError port_error;
    std::shared_ptr<io::Driver> made = io::make_driver(driver, &port_error);
    if (!made) {
      CodedError(env, port_error.code.c_str(), port_error.message).ThrowAsJavaScriptException();
      return;
    }
    if (driver.name == "memory") memory_ = std::static_pointer_cast<io::MemoryDriver>(made);
    std::unique_ptr<engine::Engine> created;
    try {
      created = std::make_unique<engine::Engine>(options, made);
    } catch (const std::bad_alloc&) {
      CodedError(env, "ENOMEM",
                 "the flow table (" + std::to_string(core::FlowTable::memory_bytes_for(options.flow_slots)) +
                     " bytes) could not be allocated: give flows.capacity or flows.memoryBytes a smaller value")
          .ThrowAsJavaScriptException();
      return;
    }
    if (!created->open_ports(&port_error)) {
      CodedError(env, port_error.code.c_str(), port_error.message).ThrowAsJavaScriptException();
      return;
    }
    if (o.Get("onEvents").IsFunction()) {
      // Unref'd: news of events must not keep the process alive; the
      // balancer's own timers decide that.
      events_signal_ = Napi::ThreadSafeFunction::New(env, o.Get("onEvents").As<Napi::Function>(), "l4lb-events", 0, 1);
      events_signal_.Unref(env);
      created->set_events_listener([signal = events_signal_]() mutable { signal.NonBlockingCall(); });
    }
    engine_ = std::move(created);
  }

  ~EngineHandle() override { ReleaseEngine(); }

 private:
  bool CheckOpen(Napi::Env env) {
    if (engine_) return true;
    CodedError(env, "ECLOSED", "the engine is closed").ThrowAsJavaScriptException();
    return false;
  }

  Napi::Value Publish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsTypedArray()) {
      CodedError(env, "EINVAL", "publish(snapshot): snapshot must be a Uint8Array").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    std::string error;
    if (!engine_->publish(bytes.Data(), bytes.ByteLength(), &error)) {
      CodedError(env, "ESNAPSHOT", error).ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }

  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    uint64_t now_ns = 0;
    if (info.Length() > 0 && info[0].IsBigInt()) {
      bool lossless = true;
      now_ns = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    } else if (info.Length() > 0 && info[0].IsNumber()) {
      now_ns = static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue());
    }
    return Napi::Number::New(env, engine_->poll(now_ns));
  }

  bool CheckMemory(Napi::Env env) {
    if (!CheckOpen(env)) return false;
    if (memory_) return true;
    CodedError(env, "EDRIVER", "inject/take: only with the memory driver").ThrowAsJavaScriptException();
    return false;
  }

  // inject(port, frame[, flags[, offload]]): offload = { gsoType, gsoSize,
  // headerLen, csumStart, csumOffset } as core::Frame carries them.
  Napi::Value Inject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckMemory(env)) return env.Undefined();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
      CodedError(env, "EINVAL", "inject(port, frame[, flags[, offload]])").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array frame = info[1].As<Napi::Uint8Array>();
    io::MemoryFrameMeta meta;
    meta.flags = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
    if (info.Length() > 3 && info[3].IsObject()) {
      Napi::Object offload = info[3].As<Napi::Object>();
      const uint32_t gso_type = OptionalUint32(offload, "gsoType", 0);
      if (gso_type > static_cast<uint32_t>(core::GsoType::udp)) {
        CodedError(env, "EINVAL", "inject: unknown gsoType").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      meta.gso_type = static_cast<core::GsoType>(gso_type);
      meta.gso_size = static_cast<uint16_t>(OptionalUint32(offload, "gsoSize", 0));
      meta.header_len = static_cast<uint16_t>(OptionalUint32(offload, "headerLen", 0));
      meta.csum_start = static_cast<uint16_t>(OptionalUint32(offload, "csumStart", 0));
      meta.csum_offset = static_cast<uint16_t>(OptionalUint32(offload, "csumOffset", 0));
    }
    return Napi::Boolean::New(env, memory_->inject(info[0].As<Napi::Number>().Uint32Value(), frame.Data(),
                                                   static_cast<uint32_t>(frame.ByteLength()), meta));
  }

  // take(port[, withOffload]) -> Buffer | null: the next frame transmitted
  // on `port`; with withOffload, { frame, flags, gsoType, gsoSize, headerLen,
  // csumStart, csumOffset } | null.
  Napi::Value Take(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckMemory(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsNumber()) {
      CodedError(env, "EINVAL", "take(port[, withOffload])").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    take_buffer_.resize(memory_->max_frame());
    io::MemoryFrameMeta meta;
    const uint32_t len = memory_->take(info[0].As<Napi::Number>().Uint32Value(), take_buffer_.data(),
                                       static_cast<uint32_t>(take_buffer_.size()), &meta);
    if (len == 0) return env.Null();
    Napi::Buffer<uint8_t> bytes = Napi::Buffer<uint8_t>::Copy(env, take_buffer_.data(), len);
    if (info.Length() < 2 || !info[1].ToBoolean()) return bytes;
    Napi::Object o = Napi::Object::New(env);
    o.Set("frame", bytes);
    o.Set("flags", Napi::Number::New(env, meta.flags));
    o.Set("gsoType", Napi::Number::New(env, static_cast<uint32_t>(meta.gso_type)));
    o.Set("gsoSize", Napi::Number::New(env, meta.gso_size));
    o.Set("headerLen", Napi::Number::New(env, meta.header_len));
    o.Set("csumStart", Napi::Number::New(env, meta.csum_start));
    o.Set("csumOffset", Napi::Number::New(env, meta.csum_offset));
    return o;
  }

  Napi::Value Counters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    Napi::Array workers = Napi::Array::New(env, engine_->options().workers);
    for (uint32_t w = 0; w < engine_->options().workers; ++w) {
      const core::WorkerCounters& c = engine_->worker_counters(w);
      Napi::Object o = Napi::Object::New(env);
#define L4LB_EXPORT_COUNTER(field, name) \
  o.Set(name, Napi::Number::New(env, static_cast<double>(c.field.load(std::memory_order_relaxed))));
      L4LB_WORKER_COUNTERS(L4LB_EXPORT_COUNTER)
#undef L4LB_EXPORT_COUNTER
      Napi::Object drops = Napi::Object::New(env);
      for (size_t r = 0; r < static_cast<size_t>(core::DropReason::count); ++r) {
        drops.Set(core::kDropReasonNames[r],
                  Napi::Number::New(env, static_cast<double>(c.drops[r].load(std::memory_order_relaxed))));
      }
      o.Set("drops", drops);
      const core::FlowCounters& f = engine_->flow_counters(w);
      Napi::Object flows = Napi::Object::New(env);
      flows.Set("lookupHits", Napi::Number::New(env, static_cast<double>(f.lookup_hits.load())));
      flows.Set("lookupMisses", Napi::Number::New(env, static_cast<double>(f.lookup_misses.load())));
      flows.Set("inserts", Napi::Number::New(env, static_cast<double>(f.inserts.load())));
      flows.Set("evictionsHalfOpen", Napi::Number::New(env, static_cast<double>(f.evictions_half_open.load())));
      flows.Set("evictionsExpired", Napi::Number::New(env, static_cast<double>(f.evictions_expired.load())));
      flows.Set("insertFailedFull", Napi::Number::New(env, static_cast<double>(f.insert_failed_full.load())));
      flows.Set("expired", Napi::Number::New(env, static_cast<double>(f.expired.load())));
      flows.Set("removed", Napi::Number::New(env, static_cast<double>(f.removed.load())));
      o.Set("flows", flows);
      workers.Set(w, o);
    }
    return workers;
  }

  // backendCounters(slots: number[]) -> [{ packets, bytes, inPackets, inBytes, outPackets, outBytes,
  // flowsCreated, activeFlows }], summed over workers (packets, bytes: both directions).
  Napi::Value BackendCounters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsArray()) {
      CodedError(env, "EINVAL", "backendCounters(slots)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Array slots = info[0].As<Napi::Array>();
    Napi::Array result = Napi::Array::New(env, slots.Length());
    for (uint32_t i = 0; i < slots.Length(); ++i) {
      const uint32_t slot = slots.Get(i).As<Napi::Number>().Uint32Value();
      if (slot >= engine_->options().backend_slots) {
        CodedError(env, "EINVAL", "backendCounters: slot out of range").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      uint64_t packets_in = 0, bytes_in = 0, packets_out = 0, bytes_out = 0, created = 0;
      for (uint32_t w = 0; w < engine_->options().workers; ++w) {
        const core::BackendCounters& c = engine_->backend_counters(w, slot);
        packets_in += c.packets_in.load(std::memory_order_relaxed);
        bytes_in += c.bytes_in.load(std::memory_order_relaxed);
        packets_out += c.packets_out.load(std::memory_order_relaxed);
        bytes_out += c.bytes_out.load(std::memory_order_relaxed);
        created += c.flows_created.load(std::memory_order_relaxed);
      }
      Napi::Object o = Napi::Object::New(env);
      o.Set("packets", Napi::Number::New(env, static_cast<double>(packets_in + packets_out)));
      o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes_in + bytes_out)));
      o.Set("inPackets", Napi::Number::New(env, static_cast<double>(packets_in)));
      o.Set("inBytes", Napi::Number::New(env, static_cast<double>(bytes_in)));
      o.Set("outPackets", Napi::Number::New(env, static_cast<double>(packets_out)));
      o.Set("outBytes", Napi::Number::New(env, static_cast<double>(bytes_out)));
      o.Set("flowsCreated", Napi::Number::New(env, static_cast<double>(created)));
      o.Set("activeFlows", Napi::Number::New(env, engine_->active_flows(slot)));
      result.Set(i, o);
    }
    return result;
  }

  Napi::Value FlowOccupancy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    const core::FlowOccupancy occupancy = engine_->flow_occupancy();
    Napi::Object o = Napi::Object::New(env);
    o.Set("forward", Napi::Number::New(env, static_cast<double>(occupancy.forward)));
    o.Set("reverse", Napi::Number::New(env, static_cast<double>(occupancy.reverse)));
    o.Set("templates", Napi::Number::New(env, static_cast<double>(occupancy.templates)));
    return o;
  }

  // What the table was built with: slots, the IPv4 nat flows they hold at the
  // design load, and the bytes they take.
  Napi::Value FlowTableSize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    const core::FlowTable& table = engine_->flow_table();
    Napi::Object o = Napi::Object::New(env);
    o.Set("slots", Napi::Number::New(env, static_cast<double>(table.slot_count())));
    o.Set("slotBytes", Napi::Number::New(env, static_cast<double>(core::FlowTable::kSlotBytes)));
    o.Set("capacity", Napi::Number::New(env, static_cast<double>(table.flow_capacity())));
    o.Set("memoryBytes", Napi::Number::New(env, static_cast<double>(table.memory_bytes())));
    return o;
  }

  Napi::Value MaglevChangedSlots(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    const core::RuntimeConfig* config = engine_->current_config();
    const uint32_t service = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
    if (config == nullptr || service >= config->view().services.size()) return env.Null();
    return Napi::Number::New(env, config->maglev_changed_slots(service));
  }

  // explainFlow({ protocol, src, sport, dst, dport }[, nowNs]) -> the facts of
  // Engine::explain for a client's packet (addresses host-order numbers);
  // nowNs defaults to CLOCK_MONOTONIC, the threaded workers' clock.
  Napi::Value ExplainFlow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsObject()) {
      CodedError(env, "EINVAL", "explainFlow(tuple[, nowNs])").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object t = info[0].As<Napi::Object>();
    const core::FlowKey key = core::FlowKey::ipv4(
        static_cast<uint8_t>(OptionalUint32(t, "protocol", 6)), OptionalUint32(t, "src", 0),
        static_cast<uint16_t>(OptionalUint32(t, "sport", 0)), OptionalUint32(t, "dst", 0),
        static_cast<uint16_t>(OptionalUint32(t, "dport", 0)));
    uint64_t now_ns = engine::monotonic_ns();
    if (info.Length() > 1 && info[1].IsBigInt()) {
      bool lossless = true;
      now_ns = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
    }
    engine::FlowExplanation why;
    engine_->explain(key, now_ns, &why);
    const core::RuntimeConfig* config = engine_->current_config();
    const uint32_t now = static_cast<uint32_t>(why.now_ms);
    Napi::Object o = Napi::Object::New(env);
    o.Set("configured", Napi::Boolean::New(env, why.configured));
    o.Set("hash", Napi::BigInt::New(env, why.hash));
    o.Set("serviceIndex", Napi::Number::New(env, why.service_index == UINT32_MAX ? -1.0 : why.service_index));
    if (why.tracked) {
      Napi::Object f = Napi::Object::New(env);
      f.Set("backendId", Napi::Number::New(env, why.flow.backend_id));
      f.Set("backendPresent", Napi::Boolean::New(env, why.flow_backend_index != UINT32_MAX));
      f.Set("state", Napi::String::New(env, flow_state_name(why.flow.state)));
      f.Set("matched", Napi::String::New(env, why.flow.matched == core::FlowDirection::reply ? "reply" : "original"));
      f.Set("idleMs", Napi::Number::New(env, static_cast<uint32_t>(now - why.flow.last_seen_ms)));
      f.Set("expired", Napi::Boolean::New(env, why.tracked_expired));
      f.Set("slot", Napi::Number::New(env, why.flow.handle.slot));
      f.Set("ingressPort", Napi::Number::New(env, why.flow.ingress_port));
      f.Set("replyRouteDiffers", Napi::Boolean::New(env, (why.flow.flags & core::kFlowFlagReplyRouteDiffers) != 0));
      o.Set("flow", f);
    } else {
      o.Set("flow", env.Null());
    }
    if (why.persisted) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("backendId", Napi::Number::New(env, why.persistence.backend_id));
      p.Set("backendPresent", Napi::Boolean::New(env, why.persistence_backend_index != UINT32_MAX));
      p.Set("idleMs", Napi::Number::New(env, static_cast<uint32_t>(now - why.persistence.last_seen_ms)));
      p.Set("timeoutMs", Napi::Number::New(env, why.persistence.template_timeout_ms));
      p.Set("expired", Napi::Boolean::New(env, why.persisted_expired));
      o.Set("persistence", p);
    } else {
      o.Set("persistence", env.Null());
    }
    if (why.service_index != UINT32_MAX) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("scheduler", Napi::String::New(env, ShmSchedulerName(why.pick.scheduler)));
      p.Set("byHash", Napi::Boolean::New(env, why.pick.by_hash));
      p.Set("slot", Napi::Number::New(env, why.pick.slot));
      p.Set("tableSize", Napi::Number::New(env, why.pick.table_size));
      p.Set("backendId", BackendIdOrNull(env, config, why.pick.backend_index));
      o.Set("pick", p);
    } else {
      o.Set("pick", env.Null());
    }
    return o;
  }

  // sharedMemory() -> ArrayBuffer over the statistics region (shm/stats.h),
  // the same object on every call. The buffer holds a reference to the region
  // (released by its finalizer), and close() detaches it, so JavaScript can
  // neither read freed memory nor keep reading after close.
  Napi::Value SharedMemory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    if (!shared_memory_.IsEmpty()) return shared_memory_.Value();
    auto* keep = new std::shared_ptr<engine::StatsRegion>(engine_->stats_region());
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(
        env, (*keep)->data(), (*keep)->size(),
        [](Napi::Env, void*, std::shared_ptr<engine::StatsRegion>* region) { delete region; }, keep);
    shared_memory_ = Napi::Persistent(buffer);
    return buffer;
  }

  // postEvent(worker, kindIndex, count, detail): pushes a record into a
  // worker's event ring, as that worker would. Manual mode only: in threaded
  // mode the worker thread is the ring's single producer.
  Napi::Value PostEvent(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    if (engine_->options().threaded) {
      CodedError(env, "ETHREADED", "postEvent: only in manual mode (the worker thread is the ring's producer)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
      CodedError(env, "EINVAL", "postEvent(worker, kind, count, detail)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const uint32_t kind = info[1].As<Napi::Number>().Uint32Value();
    if (kind >= static_cast<uint32_t>(shm::EventKind::count)) {
      CodedError(env, "EINVAL", "postEvent: unknown event kind").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Boolean::New(
        env, engine_->post_event(info[0].As<Napi::Number>().Uint32Value(), static_cast<shm::EventKind>(kind), 0,
                                 static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue()),
                                 static_cast<uint64_t>(info[3].As<Napi::Number>().DoubleValue())));
  }

  // eventsDrained(): the reader is about to read the event rings; the next
  // record calls onEvents again.
  Napi::Value EventsDrained(const Napi::CallbackInfo& info) {
    if (CheckOpen(info.Env())) engine_->events_drained();
    return info.Env().Undefined();
  }

  // portCounters() -> per port { rxPackets, rxBytes, txPackets, txBytes, txDropped, kernelDrops } (AF_PACKET), plus filterErrors.
  Napi::Value PortCounters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!CheckOpen(env)) return env.Undefined();
    const std::vector<io::PortCounters> ports = engine_->driver().port_counters();
    const std::vector<io::InterfaceReport> interfaces = engine_->driver().interfaces();
    Napi::Array result = Napi::Array::New(env, ports.size());
    for (size_t p = 0; p < ports.size(); ++p) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("rxPackets", Napi::Number::New(env, static_cast<double>(ports[p].rx_packets)));
      o.Set("rxBytes", Napi::Number::New(env, static_cast<double>(ports[p].rx_bytes)));
      o.Set("txPackets", Napi::Number::New(env, static_cast<double>(ports[p].tx_packets)));
      o.Set("txBytes", Napi::Number::New(env, static_cast<double>(ports[p].tx_bytes)));
      o.Set("txDropped", Napi::Number::New(env, static_cast<double>(ports[p].tx_dropped)));
      o.Set("kernelDrops", Napi::Number::New(env, static_cast<double>(ports[p].kernel_drops)));
      o.Set("filterErrors", Napi::Number::New(env, static_cast<double>(engine_->driver().configure_errors())));
      if (p < interfaces.size()) o.Set("mode", Napi::String::New(env, interfaces[p].mode));
      result.Set(static_cast<uint32_t>(p), o);
    }
    return result;
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (CheckOpen(info.Env())) engine_->start();
    return info.Env().Undefined();
  }

  // Idempotent: stops the workers and frees everything the engine holds.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    ReleaseEngine();
    if (!shared_memory_.IsEmpty()) {
      shared_memory_.Value().Detach();
      shared_memory_.Reset();
    }
    return info.Env().Undefined();
  }

  // The workers are stopped before the signal they call is released.
  void ReleaseEngine() {
    engine_.reset();
    memory_.reset();
    if (events_signal_) {
      events_signal_.Release();
      events_signal_ = Napi::ThreadSafeFunction();
    }
  }

  Napi::ThreadSafeFunction events_signal_;
  std::unique_ptr<engine::Engine> engine_;
  std::shared_ptr<io::MemoryDriver> memory_;  // the engine's driver, when it is the memory one
  std::vector<uint8_t> take_buffer_;
  Napi::Reference<Napi::ArrayBuffer> shared_memory_;
};

}  // namespace

Napi::Function DefineEngine(Napi::Env env) { return EngineHandle::Define(env); }

namespace {

bool ReadSpecs(Napi::Value value, std::vector<core::sched::BackendSpec>* specs) {
  if (!value.IsArray()) return false;
  Napi::Array list = value.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    if (!list.Get(i).IsObject()) return false;
    Napi::Object b = list.Get(i).As<Napi::Object>();
    core::sched::BackendSpec spec;
    spec.weight = OptionalUint32(b, "weight", 1);
    spec.usable = b.Get("up").ToBoolean();
    spec.identity = core::backend_identity_of(OptionalUint32(b, "address", 0), static_cast<uint16_t>(OptionalUint32(b, "port", 0)));
    specs->push_back(spec);
  }
  return true;
}

bool ReadTable(Napi::Object options, const char* key, std::vector<uint32_t>* table) {
  Napi::Value value = options.Get(key);
  if (value.IsUndefined()) return true;
  if (!value.IsArray()) return false;
  Napi::Array list = value.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) table->push_back(list.Get(i).As<Napi::Number>().Uint32Value());
  return true;
}

}  // namespace

// compareSchedulers(kind, before, after, { maglevTableSize, samples, tableBefore, tableAfter })
//   -> { exact, moved, total } | null (kind not hash based)
// Backends are { address (host order), port, weight, up }; both lists are
// built as the engine builds a service's scheduler, and compared by identity.
Napi::Value CompareSchedulers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  namespace sched = core::sched;
  std::vector<sched::BackendSpec> before, after;
  std::vector<uint32_t> table_before, table_after;
  Napi::Object options = info.Length() > 3 && info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
  sched::SchedulerKind kind;
  if (info.Length() < 3 || !info[0].IsString() ||
      !sched::scheduler_kind_from_name(info[0].As<Napi::String>().Utf8Value(), &kind) || !ReadSpecs(info[1], &before) ||
      !ReadSpecs(info[2], &after) || !ReadTable(options, "tableBefore", &table_before) ||
      !ReadTable(options, "tableAfter", &table_after)) {
    CodedError(env, "EINVAL", "compareSchedulers(kind, before, after[, options])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!sched::hash_based(kind)) return env.Null();
  sched::SchedulerOptions build;
  build.maglev_table_size = OptionalUint32(options, "maglevTableSize", build.maglev_table_size);
  sched::BuildError error;
  build.lookup_table = table_before;
  std::unique_ptr<sched::Scheduler> a = sched::build_scheduler(kind, before, build, &error);
  build.lookup_table = table_after;
  std::unique_ptr<sched::Scheduler> b = a ? sched::build_scheduler(kind, after, build, &error) : nullptr;
  if (!a || !b) {
    CodedError(env, error.code.c_str(), error.message).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  sched::SchedulerComparison comparison;
  sched::compare_schedulers(*a, *b, OptionalUint32(options, "samples", 65536), &comparison);
  Napi::Object o = Napi::Object::New(env);
  o.Set("exact", Napi::Boolean::New(env, comparison.exact));
  o.Set("moved", Napi::Number::New(env, static_cast<double>(comparison.moved)));
  o.Set("total", Napi::Number::New(env, static_cast<double>(comparison.total)));
  return o;
}

}  // namespace l4lb::addon

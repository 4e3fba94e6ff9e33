// JavaScript handles over the benchmark's native pieces: plain verbs, values
// converted, no policy (defaults and validation live in bench/).
#include "addon/bench_binding.h"

#include <cstdio>
#include <memory>
#include <string>

#include "bench/mac_forwarder.h"
#include "bench/micro_kernels.h"
#include "bench/traffic_generator.h"
#include "bench/traffic_sink.h"
#include "core/flow_table.h"

namespace l4lb::addon {

namespace {

Napi::Error CodedError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

std::string StringField(const Napi::Object& o, const char* key) {
  Napi::Value value = o.Get(key);
  return value.IsString() ? value.As<Napi::String>().Utf8Value() : std::string();
}

double NumberField(const Napi::Object& o, const char* key, double fallback) {
  Napi::Value value = o.Get(key);
  return value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : fallback;
}

// "02:00:5e:10:00:01" -> bytes; false if malformed.
bool ParseMac(const std::string& text, uint8_t out[6]) {
  unsigned values[6];
  char tail = 0;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &values[0], &values[1], &values[2], &values[3], &values[4],
                  &values[5], &tail) != 6) {
    return false;
  }
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(values[i]);
  return true;
}

io::TxMethod TxMethodField(const Napi::Object& o) {
  return StringField(o, "txMethod") == "ring" ? io::TxMethod::ring : io::kDefaultTxMethod;
}

Napi::Number Num(Napi::Env env, double value) { return Napi::Number::New(env, value); }

// ---- generator -----------------------------------------------------------------

class GeneratorHandle : public Napi::ObjectWrap<GeneratorHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TrafficGenerator",
                       {InstanceMethod<&GeneratorHandle::Start>("start"), InstanceMethod<&GeneratorHandle::Stop>("stop"),
                        InstanceMethod<&GeneratorHandle::Stats>("stats"), InstanceMethod<&GeneratorHandle::Close>("close")});
  }

  explicit GeneratorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorHandle>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      CodedError(env, "EINVAL", "TrafficGenerator(options)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    bench::GeneratorOptions options;
    options.interface = StringField(o, "interface");
    options.netns_path = StringField(o, "netnsPath");
    if (!ParseMac(StringField(o, "dstMac"), options.dst_mac) || !ParseMac(StringField(o, "srcMac"), options.src_mac)) {
      CodedError(env, "EINVAL", "TrafficGenerator: dstMac and srcMac must be MAC addresses").ThrowAsJavaScriptException();
      return;
    }
    options.src_addr = static_cast<uint32_t>(NumberField(o, "srcAddress", 0));
    options.dst_addr = static_cast<uint32_t>(NumberField(o, "dstAddress", 0));
    options.dst_port = static_cast<uint16_t>(NumberField(o, "dstPort", 9));
    options.protocol = StringField(o, "protocol") == "tcp" ? bench::GeneratedProtocol::tcp : bench::GeneratedProtocol::udp;
    options.frame_size = static_cast<uint32_t>(NumberField(o, "frameSize", 64));
    options.tx_method = TxMethodField(o);
    options.cpu = static_cast<int32_t>(NumberField(o, "cpu", -1));
    io::PortError error;
    generator_ = bench::TrafficGenerator::create(options, &error);
    if (!generator_) CodedError(env, error.code, error.message).ThrowAsJavaScriptException();
  }

 private:
  bool Open(Napi::Env env) {
    if (generator_) return true;
    CodedError(env, "ECLOSED", "the generator is closed").ThrowAsJavaScriptException();
    return false;
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    if (info.Length() < 1 || !info[0].IsObject()) {
      CodedError(env, "EINVAL", "start(run)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    bench::GeneratorRun run;
    run.run_tag = static_cast<uint32_t>(NumberField(o, "runTag", 0));
    run.rate_pps = NumberField(o, "ratePps", 0);
    run.burst = static_cast<uint32_t>(NumberField(o, "burst", 32));
    run.min_burst = static_cast<uint32_t>(NumberField(o, "minBurst", 1));
    run.flows = static_cast<uint32_t>(NumberField(o, "flows", 1));
    run.new_flow_per_frame = o.Get("newFlowPerFrame").ToBoolean();
    run.first_flow = static_cast<uint64_t>(NumberField(o, "firstFlow", 0));
    run.duration_ns = static_cast<uint64_t>(NumberField(o, "durationMs", 1000) * 1e6);
    run.max_frames = static_cast<uint64_t>(NumberField(o, "maxFrames", 0));
    return Napi::Boolean::New(env, generator_->start(run));
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (generator_) generator_->stop();
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Open(env)) return env.Undefined();
    const bench::GeneratorStats s = generator_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("running", Napi::Boolean::New(env, s.running));
    o.Set("sent", Num(env, static_cast<double>(s.sent)));
    o.Set("refused", Num(env, static_cast<double>(s.refused)));
    o.Set("kicks", Num(env, static_cast<double>(s.kicks)));
    o.Set("elapsedNs", Num(env, static_cast<double>(s.elapsed_ns)));
    o.Set("threadCpuNs", Num(env, static_cast<double>(s.thread_cpu_ns)));
    o.Set("nextFlow", Num(env, static_cast<double>(s.next_flow)));
    o.Set("wireLength", Num(env, generator_->wire_length()));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    generator_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<bench::TrafficGenerator> generator_;
};

// ---- sink ------------------------------------------------------------------------

class SinkHandle : public Napi::ObjectWrap<SinkHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TrafficSink",
                       {InstanceMethod<&SinkHandle::Expect>("expect"), InstanceMethod<&SinkHandle::Stats>("stats"),
                        InstanceMethod<&SinkHandle::Close>("close")});
  }

  explicit SinkHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SinkHandle>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      CodedError(env, "EINVAL", "TrafficSink(options)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    bench::SinkOptions options;
    options.interface = StringField(o, "interface");
    options.netns_path = StringField(o, "netnsPath");
    options.block_size = static_cast<uint32_t>(NumberField(o, "blockSize", options.block_size));
    options.block_count = static_cast<uint32_t>(NumberField(o, "blockCount", options.block_count));
    options.cpu = static_cast<int32_t>(NumberField(o, "cpu", -1));
    std::string code, message;
    sink_ = bench::TrafficSink::create(options, &code, &message);
    if (!sink_) CodedError(env, code, message).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Expect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!sink_ || info.Length() < 1 || !info[0].IsNumber()) {
      CodedError(env, "EINVAL", "expect(runTag) on an open sink").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    return Napi::Boolean::New(env, sink_->expect(info[0].As<Napi::Number>().Uint32Value()));
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!sink_) {
      CodedError(env, "ECLOSED", "the sink is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const bench::SinkStats s = sink_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("runTag", Num(env, s.run_tag));
    o.Set("frames", Num(env, static_cast<double>(s.frames)));
    o.Set("bytes", Num(env, static_cast<double>(s.bytes)));
    o.Set("otherFrames", Num(env, static_cast<double>(s.other_frames)));
    o.Set("kernelDrops", Num(env, static_cast<double>(s.kernel_drops)));
    o.Set("negativeLatencies", Num(env, static_cast<double>(s.negative_latencies)));
    o.Set("threadCpuNs", Num(env, static_cast<double>(s.thread_cpu_ns)));
    o.Set("firstNs", Num(env, static_cast<double>(s.first_ns)));
    o.Set("lastNs", Num(env, static_cast<double>(s.last_ns)));
    Napi::Object latency = Napi::Object::New(env);
    latency.Set("p50", Num(env, s.p50_ns));
    latency.Set("p90", Num(env, s.p90_ns));
    latency.Set("p99", Num(env, s.p99_ns));
    latency.Set("p999", Num(env, s.p999_ns));
    latency.Set("max", Num(env, s.max_ns));
    latency.Set("mean", Num(env, s.mean_ns));
    o.Set("latencyNs", latency);
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    sink_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<bench::TrafficSink> sink_;
};

// ---- MAC-only forwarder --------------------------------------------------------------

class MacForwarderHandle : public Napi::ObjectWrap<MacForwarderHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "MacForwarder",
                       {InstanceMethod<&MacForwarderHandle::Stats>("stats"),
                        InstanceMethod<&MacForwarderHandle::Close>("close")});
  }

  explicit MacForwarderHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MacForwarderHandle>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().Get("ports").IsArray()) {
      CodedError(env, "EINVAL", "MacForwarder({ ports: [{ interface, dstMac, srcMac }, x2], ... })").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    Napi::Array ports = o.Get("ports").As<Napi::Array>();
    bench::MacForwarderOptions options;
    for (uint32_t p = 0; p < 2; ++p) {
      if (ports.Length() != 2 || !ports.Get(p).IsObject()) {
        CodedError(env, "EINVAL", "MacForwarder: ports must hold two { interface, dstMac, srcMac }").ThrowAsJavaScriptException();
        return;
      }
      Napi::Object port = ports.Get(p).As<Napi::Object>();
      options.interfaces[p] = StringField(port, "interface");
      if (!ParseMac(StringField(port, "dstMac"), options.dst_mac[p]) || !ParseMac(StringField(port, "srcMac"), options.src_mac[p])) {
        CodedError(env, "EINVAL", "MacForwarder: dstMac and srcMac must be MAC addresses").ThrowAsJavaScriptException();
        return;
      }
    }
    options.netns_path = StringField(o, "netnsPath");
    options.busy_polling = StringField(o, "polling") == "busy";
    options.cpu = static_cast<int32_t>(NumberField(o, "cpu", -1));
    options.tx_method = TxMethodField(o);
    if (o.Get("spinUs").IsNumber()) options.spin_ns = static_cast<uint64_t>(NumberField(o, "spinUs", 50)) * 1000;
    if (o.Get("afXdp").IsObject()) {
      Napi::Object a = o.Get("afXdp").As<Napi::Object>();
      if (!a.Get("library").IsString() || !a.Get("snapshot").IsTypedArray()) {
        CodedError(env, "EINVAL", "MacForwarder: afXdp needs library (a path) and snapshot (a configuration's bytes)").ThrowAsJavaScriptException();
        return;
      }
      Napi::Uint8Array snapshot = a.Get("snapshot").As<Napi::Uint8Array>();
      options.driver = "af_xdp";
      options.af_xdp_library = a.Get("library").As<Napi::String>().Utf8Value();
      options.snapshot.assign(snapshot.Data(), snapshot.Data() + snapshot.ByteLength());
    }
    io::PortError error;
    forwarder_ = bench::MacForwarder::create(options, &error);
    if (!forwarder_) CodedError(env, error.code, error.message).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!forwarder_) {
      CodedError(env, "ECLOSED", "the forwarder is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const bench::MacForwarderStats s = forwarder_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rxPackets", Num(env, static_cast<double>(s.rx_packets)));
    o.Set("txPackets", Num(env, static_cast<double>(s.tx_packets)));
    o.Set("txDropped", Num(env, static_cast<double>(s.tx_dropped)));
    o.Set("kernelDrops", Num(env, static_cast<double>(s.kernel_drops)));
    o.Set("busyNs", Num(env, static_cast<double>(s.busy_ns)));
    o.Set("batches", Num(env, static_cast<double>(s.batches)));
    o.Set("idlePolls", Num(env, static_cast<double>(s.idle_polls)));
    o.Set("wakeups", Num(env, static_cast<double>(s.wakeups)));
    o.Set("threadCpuNs", Num(env, static_cast<double>(s.thread_cpu_ns)));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    forwarder_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<bench::MacForwarder> forwarder_;
};

// ---- micro benchmark kernels ------------------------------------------------------------

uint32_t Iterations(const Napi::CallbackInfo& info) {
  return info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 1;
}

class SchedulerPickHandle : public Napi::ObjectWrap<SchedulerPickHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "SchedulerPick", {InstanceMethod<&SchedulerPickHandle::Run>("run")});
  }
  explicit SchedulerPickHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SchedulerPickHandle>(info) {
    std::string error;
    if (info.Length() >= 2 && info[0].IsString() && info[1].IsNumber()) {
      kernel_ = bench::SchedulerPickKernel::create(info[0].As<Napi::String>().Utf8Value(),
                                                   info[1].As<Napi::Number>().Uint32Value(), &error);
    } else {
      error = "SchedulerPick(kind, backends)";
    }
    if (!kernel_) CodedError(info.Env(), "EINVAL", error).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Run(const Napi::CallbackInfo& info) {
    return Num(info.Env(), static_cast<double>(kernel_->run(Iterations(info))));
  }
  std::unique_ptr<bench::SchedulerPickKernel> kernel_;
};

class FlowTableHandle : public Napi::ObjectWrap<FlowTableHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FlowTableMicro",
                       {InstanceMethod<&FlowTableHandle::LookupHits>("lookupHits"),
                        InstanceMethod<&FlowTableHandle::LookupBurstHits>("lookupBurstHits"),
                        InstanceMethod<&FlowTableHandle::LookupMisses>("lookupMisses"),
                        InstanceMethod<&FlowTableHandle::InsertRemove>("insertRemove"),
                        InstanceMethod<&FlowTableHandle::Bytes>("bytes"),
                        InstanceMethod<&FlowTableHandle::Held>("held"),
                        InstanceMethod<&FlowTableHandle::FillNs>("fillNs"),
                        InstanceMethod<&FlowTableHandle::Release>("release")});
  }
  explicit FlowTableHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FlowTableHandle>(info) {
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
      CodedError(info.Env(), "EINVAL", "FlowTableMicro(slots, flows)").ThrowAsJavaScriptException();
      return;
    }
    kernel_ = std::make_unique<bench::FlowTableKernel>(info[0].As<Napi::Number>().Uint32Value(),
                                                       info[1].As<Napi::Number>().Uint32Value());
  }

 private:
  Napi::Value LookupHits(const Napi::CallbackInfo& info) {
    return Num(info.Env(), static_cast<double>(kernel(info).lookup_hits(Iterations(info))));
  }
  Napi::Value LookupBurstHits(const Napi::CallbackInfo& info) {
    return Num(info.Env(), static_cast<double>(kernel(info).lookup_burst_hits(Iterations(info))));
  }
  Napi::Value LookupMisses(const Napi::CallbackInfo& info) {
    return Num(info.Env(), static_cast<double>(kernel(info).lookup_misses(Iterations(info))));
  }
  Napi::Value InsertRemove(const Napi::CallbackInfo& info) {
    return Num(info.Env(), static_cast<double>(kernel(info).insert_remove(Iterations(info))));
  }
  Napi::Value Bytes(const Napi::CallbackInfo& info) { return Num(info.Env(), static_cast<double>(kernel(info).bytes())); }
  Napi::Value Held(const Napi::CallbackInfo& info) { return Num(info.Env(), static_cast<double>(kernel(info).held())); }
  Napi::Value FillNs(const Napi::CallbackInfo& info) { return Num(info.Env(), static_cast<double>(kernel(info).fill_ns())); }
  bench::FlowTableKernel& kernel(const Napi::CallbackInfo& info) {
    if (!kernel_) throw Napi::Error::New(info.Env(), "FlowTableMicro: released");
    return *kernel_;
  }
  // Frees the table now (a large one should not wait for the garbage collector).
  Napi::Value Release(const Napi::CallbackInfo& info) {
    kernel_.reset();
    return info.Env().Undefined();
  }
  std::unique_ptr<bench::FlowTableKernel> kernel_;
};

class RewriteHandle : public Napi::ObjectWrap<RewriteHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Rewrite", {InstanceMethod<&RewriteHandle::Run>("run")});
  }
  explicit RewriteHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RewriteHandle>(info) {
    std::string error = "Rewrite(kind, frame)";
    if (info.Length() >= 2 && info[0].IsString() && info[1].IsTypedArray()) {
      Napi::Uint8Array frame = info[1].As<Napi::Uint8Array>();
      kernel_ = bench::RewriteKernel::create(info[0].As<Napi::String>().Utf8Value(), frame.Data(),
                                             static_cast<uint32_t>(frame.ByteLength()), &error);
    }
    if (!kernel_) CodedError(info.Env(), "EINVAL", error).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Run(const Napi::CallbackInfo& info) {
    return Num(info.Env(), static_cast<double>(kernel_->run(Iterations(info))));
  }
  std::unique_ptr<bench::RewriteKernel> kernel_;
};

class EngineStepHandle : public Napi::ObjectWrap<EngineStepHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "EngineStep", {InstanceMethod<&EngineStepHandle::Run>("run")});
  }
  // EngineStep(snapshot, ports, port, frame)
  explicit EngineStepHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineStepHandle>(info) {
    std::string error = "EngineStep(snapshot, ports, port, frame)";
    if (info.Length() >= 4 && info[0].IsTypedArray() && info[1].IsNumber() && info[2].IsNumber() && info[3].IsTypedArray()) {
      Napi::Uint8Array snapshot = info[0].As<Napi::Uint8Array>();
      Napi::Uint8Array frame = info[3].As<Napi::Uint8Array>();
      kernel_ = bench::EngineStepKernel::create(snapshot.Data(), snapshot.ByteLength(), info[1].As<Napi::Number>().Uint32Value(),
                                                info[2].As<Napi::Number>().Uint32Value(), frame.Data(),
                                                static_cast<uint32_t>(frame.ByteLength()), &error);
    }
    if (!kernel_) CodedError(info.Env(), "EINVAL", error).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Run(const Napi::CallbackInfo& info) {
    return Num(info.Env(), static_cast<double>(kernel_->run(Iterations(info))));
  }
  std::unique_ptr<bench::EngineStepKernel> kernel_;
};

Napi::Value MaglevBuildNs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    CodedError(env, "EINVAL", "maglevBuildNs(backends, tableSize)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Num(env, static_cast<double>(bench::maglev_build_ns(info[0].As<Napi::Number>().Uint32Value(),
                                                             info[1].As<Napi::Number>().Uint32Value())));
}

}  // namespace

Napi::Object DefineBench(Napi::Env env) {
  Napi::Object bench = Napi::Object::New(env);
  bench.Set("TrafficGenerator", GeneratorHandle::Define(env));
  bench.Set("TrafficSink", SinkHandle::Define(env));
  bench.Set("MacForwarder", MacForwarderHandle::Define(env));
  bench.Set("SchedulerPick", SchedulerPickHandle::Define(env));
  bench.Set("FlowTableMicro", FlowTableHandle::Define(env));
  bench.Set("Rewrite", RewriteHandle::Define(env));
  bench.Set("EngineStep", EngineStepHandle::Define(env));
  bench.Set("maglevBuildNs", Napi::Function::New(env, MaglevBuildNs, "maglevBuildNs"));
  bench.Set("flowTableBytesPerSlot", Num(env, static_cast<double>(core::kFlowTableBytesPerSlot)));
  bench.Set("flowTableSlotsFor", Napi::Function::New(
                                     env,
                                     [](const Napi::CallbackInfo& info) {
                                       const double flows = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
                                       return Num(info.Env(), static_cast<double>(core::FlowTable::slots_for_flows(
                                                                  flows > 0 ? static_cast<uint64_t>(flows) : 0)));
                                     },
                                     "flowTableSlotsFor"));
  return bench;
}

}  // namespace l4lb::addon

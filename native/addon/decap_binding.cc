// JavaScript handle over realserver::Decapsulator, plus the two pure packet
// functions (for tests and for tools that craft tunnel packets). Options
// arrive validated from lib/realserver; addresses are host-order numbers.
// Errors carry a `code` string.
#include "addon/decap_binding.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "realserver/decapsulator.h"
#include "realserver/tunnel_packet.h"

namespace l4lb::addon {

namespace {

using realserver::DecapFilter;
using realserver::DecapResult;
using realserver::DecapVerdict;
using realserver::Decapsulator;
using realserver::DecapsulatorOptions;
using realserver::kTunnelPacketHeadroom;
using realserver::ReturnTunnel;
using realserver::TunnelKind;

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

std::vector<uint32_t> AddressList(const Napi::Object& object, const char* key) {
  std::vector<uint32_t> addresses;
  Napi::Value value = object.Get(key);
  if (!value.IsArray()) return addresses;
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) addresses.push_back(array.Get(i).As<Napi::Number>().Uint32Value());
  std::sort(addresses.begin(), addresses.end());
  return addresses;
}

TunnelKind KindOf(const Napi::Value& value) {
  return value.IsString() && value.As<Napi::String>().Utf8Value() == "ipip" ? TunnelKind::ipip : TunnelKind::gre;
}

const char* KindName(TunnelKind kind) { return kind == TunnelKind::ipip ? "ipip" : "gre"; }

// { vips, localAddresses?, acceptIpip, acceptGre, greKey? } -> filter over the given storage.
DecapFilter FilterOf(const Napi::Object& o, std::vector<uint32_t>* vips, std::vector<uint32_t>* locals) {
  *vips = AddressList(o, "vips");
  *locals = AddressList(o, "localAddresses");
  DecapFilter filter;
  filter.inner_destinations = *vips;
  filter.outer_destinations = *locals;
  filter.accept_ipip = o.Get("acceptIpip").ToBoolean();
  filter.accept_gre = o.Get("acceptGre").ToBoolean();
  if (o.Get("greKey").IsNumber()) {
    filter.require_gre_key = true;
    filter.gre_key = o.Get("greKey").As<Napi::Number>().Uint32Value();
  }
  return filter;
}

template <size_t N>
Napi::Object CounterMap(Napi::Env env, const std::atomic<uint64_t> (&counters)[N], const char* const (&names)[N]) {
  Napi::Object map = Napi::Object::New(env);
  for (size_t i = 0; i < N; ++i) {
    map.Set(names[i], Napi::Number::New(env, static_cast<double>(counters[i].load(std::memory_order_relaxed))));
  }
  return map;
}

Napi::Number Count(Napi::Env env, const std::atomic<uint64_t>& counter) {
  return Napi::Number::New(env, static_cast<double>(counter.load(std::memory_order_relaxed)));
}

class DecapsulatorHandle : public Napi::ObjectWrap<DecapsulatorHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Decapsulator",
                       {
                           InstanceMethod<&DecapsulatorHandle::Stats>("stats"),
                           InstanceMethod<&DecapsulatorHandle::Stop>("stop"),
                           StaticMethod<&DecapsulatorHandle::DecapsulatePacket>("decapsulatePacket"),
                           StaticMethod<&DecapsulatorHandle::EncapsulateReturnPacket>("encapsulateReturnPacket"),
                       });
  }

  // new Decapsulator({ netnsPath?, tunName, vips, localAddresses?, acceptIpip, acceptGre, greKey?,
  //                    returnTo?: { kind, destination, source?, greKey? } })
  explicit DecapsulatorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DecapsulatorHandle>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      CodedError(env, "EINVAL", "Decapsulator(options): options must be an object").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    DecapsulatorOptions options;
    if (o.Get("netnsPath").IsString()) options.netns_path = o.Get("netnsPath").As<Napi::String>().Utf8Value();
    if (o.Get("tunName").IsString()) options.tun_name = o.Get("tunName").As<Napi::String>().Utf8Value();
    options.vips = AddressList(o, "vips");
    options.local_addresses = AddressList(o, "localAddresses");
    options.accept_ipip = o.Get("acceptIpip").ToBoolean();
    options.accept_gre = o.Get("acceptGre").ToBoolean();
    if (o.Get("greKey").IsNumber()) {
      options.require_gre_key = true;
      options.gre_key = o.Get("greKey").As<Napi::Number>().Uint32Value();
    }
    if (o.Get("returnTo").IsObject()) {
      Napi::Object r = o.Get("returnTo").As<Napi::Object>();
      options.return_enabled = true;
      options.return_tunnel.kind = KindOf(r.Get("kind"));
      options.return_tunnel.outer_dst = r.Get("destination").As<Napi::Number>().Uint32Value();
      if (r.Get("source").IsNumber()) options.return_tunnel.outer_src = r.Get("source").As<Napi::Number>().Uint32Value();
      if (r.Get("greKey").IsNumber()) {
        options.return_tunnel.with_key = true;
        options.return_tunnel.gre_key = r.Get("greKey").As<Napi::Number>().Uint32Value();
      }
    }
    realserver::DecapsulatorError error;
    decapsulator_ = Decapsulator::start(std::move(options), &error);
    if (!decapsulator_) CodedError(env, error.code.c_str(), error.message).ThrowAsJavaScriptException();
  }

 private:
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    if (!decapsulator_) {
      o.Set("running", Napi::Boolean::New(env, false));
      o.Set("stopped", Napi::Boolean::New(env, true));
      return o;
    }
    const realserver::DecapsulatorCounters& c = decapsulator_->counters();
    o.Set("running", Napi::Boolean::New(env, decapsulator_->running()));
    o.Set("stopped", Napi::Boolean::New(env, false));
    const std::string failure = decapsulator_->failure();
    if (!failure.empty()) o.Set("failure", Napi::String::New(env, failure));
    o.Set("tunPersistent", Napi::Boolean::New(env, decapsulator_->tun_persistent()));
    o.Set("received", Count(env, c.received));
    o.Set("decapsulated", Count(env, c.decapsulated));
    o.Set("decapsulatedBytes", Count(env, c.decapsulated_bytes));
    o.Set("tunWriteErrors", Count(env, c.tun_write_errors));
    o.Set("malformed", CounterMap(env, c.malformed, realserver::kDecapMalformedNames));
    o.Set("notForUs", CounterMap(env, c.not_for_us, realserver::kDecapNotForUsNames));
    o.Set("returned", Count(env, c.returned));
    o.Set("returnedBytes", Count(env, c.returned_bytes));
    o.Set("returnDrops", CounterMap(env, c.return_drops, realserver::kReturnDropNames));
    o.Set("sendErrors", Count(env, c.send_errors));
    o.Set("receiveErrors", Count(env, c.receive_errors));
    return o;
  }

  // Idempotent: joins the worker and closes every descriptor.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    decapsulator_.reset();
    return info.Env().Undefined();
  }

  // decapsulatePacket(packet, filter) -> { verdict, reason?, tunnel, inner? }
  static Napi::Value DecapsulatePacket(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsObject()) {
      CodedError(env, "EINVAL", "decapsulatePacket(packet, filter)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array input = info[0].As<Napi::Uint8Array>();
    std::vector<uint32_t> vips, locals;
    const DecapFilter filter = FilterOf(info[1].As<Napi::Object>(), &vips, &locals);
    std::vector<uint8_t> buffer(kTunnelPacketHeadroom + input.ByteLength());
    std::memcpy(buffer.data() + kTunnelPacketHeadroom, input.Data(), input.ByteLength());
    uint8_t* packet = buffer.data() + kTunnelPacketHeadroom;
    const DecapResult result = realserver::decapsulate_tunnel_packet(
        packet, static_cast<uint32_t>(input.ByteLength()), filter);
    Napi::Object o = Napi::Object::New(env);
    o.Set("tunnel", Napi::String::New(env, KindName(result.kind)));
    switch (result.verdict) {
      case DecapVerdict::deliver:
        o.Set("verdict", Napi::String::New(env, "deliver"));
        o.Set("inner", Napi::Buffer<uint8_t>::Copy(env, packet + result.inner_offset, result.inner_len));
        break;
      case DecapVerdict::malformed:
        o.Set("verdict", Napi::String::New(env, "malformed"));
        o.Set("reason", Napi::String::New(
                            env, realserver::kDecapMalformedNames[static_cast<size_t>(result.malformed_reason)]));
        break;
      case DecapVerdict::not_for_us:
        o.Set("verdict", Napi::String::New(env, "not-for-us"));
        o.Set("reason", Napi::String::New(
                            env, realserver::kDecapNotForUsNames[static_cast<size_t>(result.not_for_us_reason)]));
        break;
    }
    return o;
  }

  // encapsulateReturnPacket(packet, { kind, destination, source?, greKey?, vips, identification })
  //   -> { ok: true, packet } | { ok: false, reason }
  static Napi::Value EncapsulateReturnPacket(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsObject()) {
      CodedError(env, "EINVAL", "encapsulateReturnPacket(packet, tunnel)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Uint8Array input = info[0].As<Napi::Uint8Array>();
    Napi::Object t = info[1].As<Napi::Object>();
    const std::vector<uint32_t> vips = AddressList(t, "vips");
    ReturnTunnel tunnel;
    tunnel.kind = KindOf(t.Get("kind"));
    tunnel.outer_dst = t.Get("destination").ToNumber().Uint32Value();
    if (t.Get("source").IsNumber()) tunnel.outer_src = t.Get("source").As<Napi::Number>().Uint32Value();
    if (t.Get("greKey").IsNumber()) {
      tunnel.with_key = true;
      tunnel.gre_key = t.Get("greKey").As<Napi::Number>().Uint32Value();
    }
    tunnel.inner_sources = vips;
    const uint16_t identification =
        t.Get("identification").IsNumber() ? static_cast<uint16_t>(t.Get("identification").As<Napi::Number>().Uint32Value()) : 1;
    std::vector<uint8_t> buffer(kTunnelPacketHeadroom + input.ByteLength());
    std::memcpy(buffer.data() + kTunnelPacketHeadroom, input.Data(), input.ByteLength());
    uint8_t* packet = buffer.data() + kTunnelPacketHeadroom;
    const realserver::ReturnResult result = realserver::encapsulate_return_packet(
        packet, static_cast<uint32_t>(input.ByteLength()), tunnel, identification);
    Napi::Object o = Napi::Object::New(env);
    o.Set("ok", Napi::Boolean::New(env, result.ok));
    if (result.ok) {
      o.Set("packet", Napi::Buffer<uint8_t>::Copy(env, packet + result.outer_offset, result.outer_len));
    } else {
      o.Set("reason", Napi::String::New(env, realserver::kReturnDropNames[static_cast<size_t>(result.reason)]));
    }
    return o;
  }

  std::unique_ptr<Decapsulator> decapsulator_;
};

}  // namespace

Napi::Function DefineDecapsulator(Napi::Env env) { return DecapsulatorHandle::Define(env); }

}  // namespace l4lb::addon

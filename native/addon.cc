// Module entry of ringfence_sensor.node. See src/sensor/native.ts for the
// typed interface the TypeScript side sees.
#include <napi.h>
#include <time.h>

#include "btf_layout.h"
#include "events.h"
#include "peer_credentials.h"
#include "sensor_handle.h"

namespace {

// Names of the per-probe counter slots, in enum rf_probe order.
const char* const kProbeNames[] = {
    "exec", "fork", "exit", "connect", "ptrace", "vm_access", "proc_mem_open", "stdio_dup", "egress",
    "detection", "agent",
};
static_assert(sizeof(kProbeNames) / sizeof(kProbeNames[0]) == RF_PROBE_COUNT,
              "one name per enum rf_probe entry");

// CLOCK_REALTIME and CLOCK_BOOTTIME read back to back, for turning the
// probes' bpf_ktime_get_boot_ns() stamps into wall-clock time.
Napi::Value Clocks(const Napi::CallbackInfo& info) {
  struct timespec real, boot;
  clock_gettime(CLOCK_REALTIME, &real);
  clock_gettime(CLOCK_BOOTTIME, &boot);
  auto ns = [](const struct timespec& t) {
    return static_cast<uint64_t>(t.tv_sec) * uint64_t{1000000000} + static_cast<uint64_t>(t.tv_nsec);
  };
  Napi::Object result = Napi::Object::New(info.Env());
  result.Set("realtimeNs", Napi::BigInt::New(info.Env(), ns(real)));
  result.Set("boottimeNs", Napi::BigInt::New(info.Env(), ns(boot)));
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("SensorHandle", ringfence::SensorHandle::Define(env));
  exports.Set("clocks", Napi::Function::New(env, Clocks));
  exports.Set("eventLayout", Napi::Function::New(env, ringfence::EventLayoutFromBtf));
  exports.Set("eventEnums", Napi::Function::New(env, ringfence::EventEnumsFromBtf));
  exports.Set("peerCredentials", Napi::Function::New(env, ringfence::PeerCredentials));
  Napi::Array probes = Napi::Array::New(env, RF_PROBE_COUNT);
  for (uint32_t i = 0; i < RF_PROBE_COUNT; i++) probes.Set(i, kProbeNames[i]);
  exports.Set("probeNames", probes);
  exports.Set("layoutVersion", Napi::Number::New(env, RF_LAYOUT_VERSION));
  return exports;
}

}  // namespace

NODE_API_MODULE(ringfence_sensor, Init)

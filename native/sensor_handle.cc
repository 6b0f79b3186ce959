#include "sensor_handle.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>

#include <cstring>
#include <string>
#include <vector>

#include "events.h"
#include "libbpf_log.h"
#include "sensor.skel.h"

namespace ringfence {
namespace {

constexpr size_t kVerifierTailLines = 15;
constexpr uint32_t kDefaultRingBytes = 16u << 20;

// An Error with a stable `code` for the TypeScript side to explain, and the
// tail of libbpf's log (the verifier's last lines on a rejected program).
Napi::Error LoaderError(Napi::Env env, const char* code, const std::string& what, int err) {
  std::string message = what;
  if (err) message += std::string(": ") + strerror(err < 0 ? -err : err);
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, err < 0 ? -err : err));
  error.Set("log", Napi::String::New(env, LibbpfLogTail(kVerifierTailLines)));
  return error;
}

uint64_t BigIntArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (info.Length() <= index || !info[index].IsBigInt())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a bigint");
  bool lossless = true;
  uint64_t value = info[index].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw Napi::RangeError::New(info.Env(), std::string(what) + " is out of range");
  return value;
}

uint32_t OptionalUint(const Napi::Object& options, const char* key, uint32_t fallback) {
  if (!options.Has(key) || options.Get(key).IsUndefined()) return fallback;
  return options.Get(key).As<Napi::Number>().Uint32Value();
}

}  // namespace

Napi::Function SensorHandle::Define(Napi::Env env) {
  return DefineClass(env, "SensorHandle",
                     {
                         InstanceMethod("track", &SensorHandle::Track),
                         InstanceMethod("untrack", &SensorHandle::Untrack),
                         InstanceMethod("counters", &SensorHandle::Counters),
                         InstanceMethod("start", &SensorHandle::Start),
                         InstanceMethod("stop", &SensorHandle::Stop),
                         InstanceMethod("readerStats", &SensorHandle::ReaderStatistics),
                         InstanceMethod("programIds", &SensorHandle::ProgramIds),
                         InstanceMethod("destroy", &SensorHandle::Destroy),
                     });
}

// new SensorHandle({ ringBufferBytes?, initMntnsInum?, memOpenAddr? }): opens,
// configures, loads (verifier) and attaches every program, or throws.
SensorHandle::SensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SensorHandle>(info) {
  Napi::Env env = info.Env();
  Napi::Object options = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>()
                                                                 : Napi::Object::New(env);
  InstallLibbpfLogger();
  ClearLibbpfLog();

  skel_ = sensor__open();
  if (!skel_) throw LoaderError(env, "RF_OPEN", "cannot open the BPF object", errno);

  skel_->rodata->cfg_init_mntns_inum = OptionalUint(options, "initMntnsInum", 0);
  if (options.Has("memOpenAddr") && options.Get("memOpenAddr").IsBigInt()) {
    bool lossless = true;
    skel_->rodata->cfg_mem_open_addr =
        options.Get("memOpenAddr").As<Napi::BigInt>().Uint64Value(&lossless);
  }
  uint32_t ring_bytes = OptionalUint(options, "ringBufferBytes", kDefaultRingBytes);
  skel_->rodata->cfg_wakeup_bytes = OptionalUint(options, "wakeupBytes", ring_bytes / 16);
  int err = bpf_map__set_max_entries(skel_->maps.events, ring_bytes);
  if (err) {
    Teardown();
    throw LoaderError(env, "RF_CONFIG", "ring buffer size " + std::to_string(ring_bytes) +
                                             " is not a power-of-two number of pages", err);
  }

  err = sensor__load(skel_);
  if (err) {
    Teardown();
    throw LoaderError(env, "RF_LOAD", "the kernel refused the BPF programs", err);
  }
  err = sensor__attach(skel_);
  if (err) {
    Teardown();
    throw LoaderError(env, "RF_ATTACH", "attaching the BPF programs failed", err);
  }
}

SensorHandle::~SensorHandle() { Teardown(); }

void SensorHandle::Teardown() {
  if (reader_) {
    reader_->Disown();
    reader_->Abort();
    final_stats_ = reader_->Stats();
    reader_ = nullptr;
  }
  if (skel_) {
    sensor__destroy(skel_);  // detaches every link and closes every fd
    skel_ = nullptr;
  }
}

sensor* SensorHandle::Loaded(Napi::Env env) {
  if (!skel_) throw Napi::Error::New(env, "the sensor has been destroyed");
  return skel_;
}

void SensorHandle::BumpGeneration() {
  __atomic_fetch_add(&skel_->bss->tracked_generation, 1, __ATOMIC_SEQ_CST);
}

Napi::Value SensorHandle::Track(const Napi::CallbackInfo& info) {
  sensor* skel = Loaded(info.Env());
  uint64_t cgroup_id = BigIntArg(info, 0, "cgroup id");
  uint64_t one = 1;
  if (bpf_map__update_elem(skel->maps.tracked_cgroups, &cgroup_id, sizeof(cgroup_id), &one,
                           sizeof(one), BPF_ANY))
    throw LoaderError(info.Env(), "RF_MAP", "cannot track cgroup " + std::to_string(cgroup_id),
                      errno);
  BumpGeneration();
  return info.Env().Undefined();
}

Napi::Value SensorHandle::Untrack(const Napi::CallbackInfo& info) {
  sensor* skel = Loaded(info.Env());
  uint64_t cgroup_id = BigIntArg(info, 0, "cgroup id");
  int err = bpf_map__delete_elem(skel->maps.tracked_cgroups, &cgroup_id, sizeof(cgroup_id), 0);
  BumpGeneration();
  return Napi::Boolean::New(info.Env(), err == 0);
}

// [{ hits, seen, emitted, dropped }] indexed by enum rf_probe, summed over CPUs.
Napi::Value SensorHandle::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sensor* skel = Loaded(env);
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw LoaderError(env, "RF_MAP", "cannot count CPUs", cpus);
  std::vector<rf_counter> per_cpu(cpus);
  Napi::Array result = Napi::Array::New(env, RF_PROBE_COUNT);
  for (uint32_t probe = 0; probe < RF_PROBE_COUNT; probe++) {
    if (bpf_map__lookup_elem(skel->maps.counters, &probe, sizeof(probe), per_cpu.data(),
                             per_cpu.size() * sizeof(rf_counter), 0))
      throw LoaderError(env, "RF_MAP", "cannot read the probe counters", errno);
    rf_counter total = {};
    for (const rf_counter& c : per_cpu) {
      total.hits += c.hits;
      total.seen += c.seen;
      total.emitted += c.emitted;
      total.dropped += c.dropped;
    }
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("hits", static_cast<double>(total.hits));
    entry.Set("seen", static_cast<double>(total.seen));
    entry.Set("emitted", static_cast<double>(total.emitted));
    entry.Set("dropped", static_cast<double>(total.dropped));
    result.Set(probe, entry);
  }
  return result;
}

// start(onBatch, onEnd, { batchBytes?, maxBatchesInFlight?, pollTimeoutMs? })
Napi::Value SensorHandle::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sensor* skel = Loaded(env);
  if (reader_) throw Napi::Error::New(env, "the sensor is already started");
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction())
    throw Napi::TypeError::New(env, "start(onBatch, onEnd, options?) needs two functions");
  ReaderOptions options;
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    options.batch_bytes = OptionalUint(o, "batchBytes", options.batch_bytes);
    options.max_batches_in_flight =
        OptionalUint(o, "maxBatchesInFlight", options.max_batches_in_flight);
    options.poll_timeout_ms = OptionalUint(o, "pollTimeoutMs", options.poll_timeout_ms);
  }
  if (options.batch_bytes < sizeof(rf_exec_event) || options.max_batches_in_flight < 1)
    throw Napi::RangeError::New(env, "batchBytes must hold an exec record and "
                                     "maxBatchesInFlight must be at least 1");
  reader_ = RingReader::Start(env, bpf_map__fd(skel->maps.events), info[0].As<Napi::Function>(),
                              info[1].As<Napi::Function>(), options, this);
  return env.Undefined();
}

Napi::Value SensorHandle::Stop(const Napi::CallbackInfo& info) {
  if (reader_) reader_->RequestStop();
  return info.Env().Undefined();
}

void SensorHandle::ReaderFinished(const ReaderStats& final_stats) {
  final_stats_ = final_stats;
  reader_ = nullptr;
}

Napi::Value SensorHandle::ReaderStatistics(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ReaderStats s = reader_ ? reader_->Stats() : final_stats_;
  Napi::Object result = Napi::Object::New(env);
  result.Set("batches", static_cast<double>(s.batches));
  result.Set("records", static_cast<double>(s.records));
  result.Set("bytes", static_cast<double>(s.bytes));
  result.Set("backpressureWaits", static_cast<double>(s.backpressure_waits));
  return result;
}

// Kernel ids of our programs and links, so that tests can check that
// nothing of ours is left in the kernel after destroy().
Napi::Value SensorHandle::ProgramIds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sensor* skel = Loaded(env);
  Napi::Array programs = Napi::Array::New(env);
  Napi::Array links = Napi::Array::New(env);
  struct bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) {
    struct bpf_prog_info prog_info = {};
    __u32 len = sizeof(prog_info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &prog_info, &len) == 0)
      programs.Set(programs.Length(), prog_info.id);
  }
  struct bpf_link** all_links = reinterpret_cast<struct bpf_link**>(&skel->links);
  size_t link_count = sizeof(skel->links) / sizeof(struct bpf_link*);
  for (size_t i = 0; i < link_count; i++) {
    if (!all_links[i]) continue;
    struct bpf_link_info link_info = {};
    __u32 len = sizeof(link_info);
    if (bpf_obj_get_info_by_fd(bpf_link__fd(all_links[i]), &link_info, &len) == 0)
      links.Set(links.Length(), link_info.id);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("programs", programs);
  result.Set("links", links);
  return result;
}

Napi::Value SensorHandle::Destroy(const Napi::CallbackInfo& info) {
  Teardown();
  return info.Env().Undefined();
}

}  // namespace ringfence

#include "sensor_handle.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "events.h"
#include "libbpf_log.h"
#include "sensor.skel.h"

namespace ringfence {
namespace {

constexpr size_t kVerifierTailLines = 15;
constexpr uint32_t kDefaultRingBytes = 16u << 20;
// The agent counts as stalled once its heartbeat is this late (bpf/agent.bpf.c); it beats every kHeartbeatEveryMs.
constexpr uint32_t kDefaultWatchdogMs = 3000;
constexpr uint32_t kHeartbeatEveryMs = 100;

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

// Detaching a tracepoint or cgroup link waits for an RCU grace period
// (tens of ms each); one after the other, 23 links took most of a second.
// The waits overlap when the links are destroyed from threads of their own.
void DestroyLinksInParallel(const std::vector<struct bpf_link*>& links) {
  std::vector<std::thread> threads;
  threads.reserve(links.size());
  for (struct bpf_link* link : links)
    if (link) threads.emplace_back([link] { bpf_link__destroy(link); });
  for (std::thread& thread : threads) thread.join();
}

// The skeleton's links (one per auto-attached program) as one array: the
// generated struct is nothing but bpf_link pointers.
struct SkeletonLinks {
  struct bpf_link** begin;
  size_t count;
};

SkeletonLinks LinksOf(sensor* skel) {
  static_assert(sizeof(skel->links) % sizeof(struct bpf_link*) == 0, "links holds only link pointers");
  return {reinterpret_cast<struct bpf_link**>(&skel->links), sizeof(skel->links) / sizeof(struct bpf_link*)};
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
                         InstanceMethod("drain", &SensorHandle::Drain),
                         InstanceMethod("readerStats", &SensorHandle::ReaderStatistics),
                         InstanceMethod("programIds", &SensorHandle::ProgramIds),
                         InstanceMethod("destroy", &SensorHandle::Destroy),
                         InstanceMethod("attachCgroup", &SensorHandle::AttachCgroup),
                         InstanceMethod("detachCgroup", &SensorHandle::DetachCgroup),
                         InstanceMethod("mapUpdate", &SensorHandle::MapUpdate),
                         InstanceMethod("mapDelete", &SensorHandle::MapDelete),
                         InstanceMethod("mapLookup", &SensorHandle::MapLookup),
                         InstanceMethod("mapEntries", &SensorHandle::MapEntries),
                         InstanceMethod("agentGone", &SensorHandle::AgentGone),
                         InstanceMethod("pinDir", &SensorHandle::PinDir),
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
  skel_->rodata->cfg_agent_tgid = OptionalUint(options, "agentTgid", 0);
  if (options.Has("pinDir") && options.Get("pinDir").IsString())
    pin_dir_ = options.Get("pinDir").As<Napi::String>().Utf8Value();
  uint32_t ring_bytes = OptionalUint(options, "ringBufferBytes", kDefaultRingBytes);
  skel_->rodata->cfg_wakeup_bytes = OptionalUint(options, "wakeupBytes", ring_bytes / 16);
  int err = bpf_map__set_max_entries(skel_->maps.events, ring_bytes);
  if (err) {
    Teardown();
    throw LoaderError(env, "RF_CONFIG", "ring buffer size " + std::to_string(ring_bytes) +
                                             " is not a power-of-two number of pages", err);
  }

  // without the gate only to measure what it costs (bench/failclosed.ts)
  if (options.Has("syscallGate") && options.Get("syscallGate").IsBoolean() &&
      !options.Get("syscallGate").As<Napi::Boolean>().Value())
    bpf_program__set_autoattach(skel_->progs.handle_sys_enter_gate, false);
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
  err = PinAll();
  if (err) {
    Teardown();
    throw LoaderError(env, "RF_PIN", "pinning the BPF programs under " + pin_dir_ + " failed", err);
  }
  uint32_t watchdog_ms = OptionalUint(options, "watchdogMs", kDefaultWatchdogMs);
  if (watchdog_ms) StartHeartbeat(uint64_t{watchdog_ms} * 1000000);
}

namespace {
uint64_t MonotonicNs() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);  // bpf_ktime_get_ns()'s clock
  return static_cast<uint64_t>(now.tv_sec) * 1000000000 + static_cast<uint64_t>(now.tv_nsec);
}
}  // namespace

// A thread of its own, not the ring reader (which may wait on a busy JS thread)
// nor the JS thread (a long GC is no stall): it beats while the process runs,
// and stops beating only when the whole process is stopped, frozen or gone.
void SensorHandle::StartHeartbeat(uint64_t timeout_ns) {
  volatile __u64* deadline = &skel_->bss->watchdog_deadline;
  __atomic_store_n(deadline, MonotonicNs() + timeout_ns, __ATOMIC_SEQ_CST);
  heartbeat_ = std::thread([this, deadline, timeout_ns] {
    std::unique_lock<std::mutex> lock(heartbeat_mutex_);
    while (!heartbeat_stop_) {
      __atomic_store_n(deadline, MonotonicNs() + timeout_ns, __ATOMIC_SEQ_CST);
      heartbeat_wake_.wait_for(lock, std::chrono::milliseconds(kHeartbeatEveryMs));
    }
  });
}

void SensorHandle::StopHeartbeat() {
  if (!heartbeat_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(heartbeat_mutex_);
    heartbeat_stop_ = true;
  }
  heartbeat_wake_.notify_all();
  heartbeat_.join();
  // an agent that unloads on purpose is not a stalled one
  if (skel_) __atomic_store_n(&skel_->bss->watchdog_deadline, 0, __ATOMIC_SEQ_CST);
}

namespace {

// mkdir -p with mode 0700 (bpffs directories): 0 or errno.
int MakeDirs(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    std::string prefix = path.substr(0, slash);
    if (mkdir(prefix.c_str(), 0700) && errno != EEXIST) return errno;
    if (slash == std::string::npos) return 0;
  }
}

}  // namespace

std::string SensorHandle::CgroupPinDir(uint64_t cgroup_id) const {
  return pin_dir_ + "/cgroup-" + std::to_string(cgroup_id);
}

// Maps under PIN/maps/NAME, probe links under PIN/links/PROGRAM: with the
// links pinned, the programs stay attached when this process dies, and keep
// enforcing (and ending the job, agent_gone) until the next agent unpins them.
int SensorHandle::PinAll() {
  if (pin_dir_.empty()) return 0;
  int err = MakeDirs(pin_dir_ + "/links");
  if (err) return err;
  err = bpf_object__pin_maps(skel_->obj, (pin_dir_ + "/maps").c_str());
  if (err) return -err;
  // the skeleton knows each auto-attached program's link (cgroup programs have none here)
  const struct bpf_object_skeleton* skeleton = skel_->skeleton;
  for (int i = 0; i < skeleton->prog_cnt; i++) {
    struct bpf_link* link = *skeleton->progs[i].link;
    if (!link) continue;
    err = bpf_link__pin(link, (pin_dir_ + "/links/" + skeleton->progs[i].name).c_str());
    if (err) return -err;
  }
  return 0;
}

// Everything PinAll and AttachCgroup pinned; the directories too. Best effort:
// what cannot be removed is swept by the next agent (src/jobs/registry.ts).
void SensorHandle::UnpinAll() {
  if (pin_dir_.empty() || !skel_) return;
  SkeletonLinks all = LinksOf(skel_);
  for (size_t i = 0; i < all.count; i++)
    if (all.begin[i]) bpf_link__unpin(all.begin[i]);
  // map by map: bpf_object__unpin_maps stops at the first pin that is already gone
  struct bpf_map* map;
  bpf_object__for_each_map(map, skel_->obj) if (bpf_map__pin_path(map)) bpf_map__unpin(map, nullptr);
  rmdir((pin_dir_ + "/links").c_str());
  rmdir((pin_dir_ + "/maps").c_str());
  rmdir(pin_dir_.c_str());
}

SensorHandle::~SensorHandle() { Teardown(); }

void SensorHandle::Teardown() {
  StopHeartbeat();
  if (reader_) {
    reader_->Disown();
    reader_->Abort();
    final_stats_ = reader_->Stats();
    reader_ = nullptr;
  }
  // Every link of ours, cgroup hooks and probes, in one round of parallel detaches.
  std::vector<struct bpf_link*> links;
  for (auto& entry : cgroup_links_) {
    for (struct bpf_link* link : entry.second) bpf_link__unpin(link);
    if (!pin_dir_.empty()) rmdir(CgroupPinDir(entry.first).c_str());
    links.insert(links.end(), entry.second.begin(), entry.second.end());
  }
  UnpinAll();
  cgroup_links_.clear();
  SkeletonLinks probes = skel_ ? LinksOf(skel_) : SkeletonLinks{nullptr, 0};
  links.insert(links.end(), probes.begin, probes.begin + probes.count);
  DestroyLinksInParallel(links);
  if (skel_) {
    std::fill(probes.begin, probes.begin + probes.count, nullptr);
    sensor__destroy(skel_);  // closes every program and map
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
  // a doomed job (bpf/lib/agent.h) is over once untracked: the gate stops looking it up
  if (bpf_map__delete_elem(skel->maps.doomed_jobs, &cgroup_id, sizeof(cgroup_id), 0) == 0)
    __atomic_fetch_sub(&skel->bss->jobs_doomed, 1, __ATOMIC_SEQ_CST);
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
  reader_ = RingReader::Start(env, {bpf_map__fd(skel->maps.events), bpf_map__fd(skel->maps.detections)},
                              info[0].As<Napi::Function>(),
                              info[1].As<Napi::Function>(), options, this);
  return env.Undefined();
}

Napi::Value SensorHandle::Stop(const Napi::CallbackInfo& info) {
  if (reader_) reader_->RequestStop();
  return info.Env().Undefined();
}

Napi::Value SensorHandle::Drain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!reader_) throw Napi::Error::New(env, "the sensor is not delivering events (not started, or ended)");
  if (info.Length() < 1 || !info[0].IsNumber() || info[0].As<Napi::Number>().Int64Value() < 1)
    throw Napi::TypeError::New(env, "drain(token): token must be a positive integer");
  reader_->RequestDrain(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
  return env.Undefined();
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
  SkeletonLinks all = LinksOf(skel);
  for (size_t i = 0; i < all.count; i++) {
    struct bpf_link* link = all.begin[i];
    if (!link) continue;
    struct bpf_link_info link_info = {};
    __u32 len = sizeof(link_info);
    if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &link_info, &len) == 0)
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

namespace ringfence {

// Programs attached per job cgroup rather than once: the egress hooks.
static bool IsCgroupProgram(const struct bpf_program* prog) {
  const char* section = bpf_program__section_name(prog);
  return section && strncmp(section, "cgroup", 6) == 0;
}

// attachCgroup(path): attaches the egress programs to the cgroup at path
// (which covers every cgroup below it). Returns the cgroup id as a bigint.
Napi::Value SensorHandle::AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sensor* skel = Loaded(env);
  if (info.Length() < 1 || !info[0].IsString())
    throw Napi::TypeError::New(env, "attachCgroup(path) needs a cgroup directory");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw LoaderError(env, "RF_CGROUP", "cannot open cgroup " + path, errno);
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int err = errno;
    close(fd);
    throw LoaderError(env, "RF_CGROUP", "cannot stat cgroup " + path, err);
  }
  uint64_t cgroup_id = st.st_ino;
  if (cgroup_links_.count(cgroup_id)) {
    close(fd);
    throw Napi::Error::New(env, "egress programs are already attached to " + path);
  }
  ClearLibbpfLog();
  std::vector<struct bpf_link*> links;
  struct bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) {
    if (!IsCgroupProgram(prog)) continue;
    struct bpf_link* link = bpf_program__attach_cgroup(prog, fd);
    if (!link) {
      int err = errno;
      for (struct bpf_link* l : links) bpf_link__destroy(l);
      close(fd);
      throw LoaderError(env, "RF_ATTACH",
                        std::string("attaching ") + bpf_program__name(prog) + " to " + path + " failed",
                        err);
    }
    links.push_back(link);
    if (!pin_dir_.empty()) {
      int pin_err = MakeDirs(CgroupPinDir(cgroup_id));
      if (!pin_err) pin_err = -bpf_link__pin(link, (CgroupPinDir(cgroup_id) + "/" + bpf_program__name(prog)).c_str());
      if (pin_err) {
        for (struct bpf_link* l : links) {
          bpf_link__unpin(l);
          bpf_link__destroy(l);
        }
        rmdir(CgroupPinDir(cgroup_id).c_str());
        close(fd);
        throw LoaderError(env, "RF_PIN", "pinning the egress programs of " + path + " failed", pin_err);
      }
    }
  }
  close(fd);  // the links hold the cgroup
  cgroup_links_[cgroup_id] = std::move(links);
  return Napi::BigInt::New(env, cgroup_id);
}

// detachCgroup(id): false when nothing of ours was attached there.
Napi::Value SensorHandle::DetachCgroup(const Napi::CallbackInfo& info) {
  uint64_t cgroup_id = BigIntArg(info, 0, "cgroup id");
  auto found = cgroup_links_.find(cgroup_id);
  if (found == cgroup_links_.end()) return Napi::Boolean::New(info.Env(), false);
  for (struct bpf_link* link : found->second) bpf_link__unpin(link);
  if (!pin_dir_.empty()) rmdir(CgroupPinDir(cgroup_id).c_str());
  DestroyLinksInParallel(found->second);
  cgroup_links_.erase(found);
  return Napi::Boolean::New(info.Env(), true);
}

struct bpf_map* SensorHandle::MapNamed(Napi::Env env, const Napi::Value& name) {
  sensor* skel = Loaded(env);
  if (!name.IsString()) throw Napi::TypeError::New(env, "a map name must be a string");
  std::string wanted = name.As<Napi::String>().Utf8Value();
  struct bpf_map* map = bpf_object__find_map_by_name(skel->obj, wanted.c_str());
  if (!map) throw Napi::Error::New(env, "the sensor has no map named " + wanted);
  return map;
}

static void CheckSize(Napi::Env env, struct bpf_map* map, const char* what, size_t expected,
                      size_t got) {
  if (expected != got)
    throw Napi::RangeError::New(env, std::string("the ") + what + " of map " + bpf_map__name(map) +
                                         " is " + std::to_string(expected) + " bytes, got " +
                                         std::to_string(got));
}

// The key argument of map calls (info[1]): a Buffer of the map's key size.
static Napi::Buffer<uint8_t> KeyArg(const Napi::CallbackInfo& info, struct bpf_map* map, const char* usage) {
  if (info.Length() < 2 || !info[1].IsBuffer()) throw Napi::TypeError::New(info.Env(), usage);
  auto key = info[1].As<Napi::Buffer<uint8_t>>();
  CheckSize(info.Env(), map, "key", bpf_map__key_size(map), key.Length());
  return key;
}

// mapUpdate(name, key, value): raw bytes laid out as in bpf/events.h.
Napi::Value SensorHandle::MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapNamed(env, info[0]);
  if (info.Length() < 3 || !info[1].IsBuffer() || !info[2].IsBuffer())
    throw Napi::TypeError::New(env, "mapUpdate(name, key, value) needs two Buffers");
  auto key = info[1].As<Napi::Buffer<uint8_t>>();
  auto value = info[2].As<Napi::Buffer<uint8_t>>();
  CheckSize(env, map, "key", bpf_map__key_size(map), key.Length());
  CheckSize(env, map, "value", bpf_map__value_size(map), value.Length());
  if (bpf_map__update_elem(map, key.Data(), key.Length(), value.Data(), value.Length(), BPF_ANY))
    throw LoaderError(env, "RF_MAP", std::string("cannot update map ") + bpf_map__name(map), errno);
  return env.Undefined();
}

// mapEntries(name): every [key, value] of a hash map, as Buffers. Entries
// the probes add or remove meanwhile may or may not be in it.
Napi::Value SensorHandle::MapEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapNamed(env, info[0]);
  size_t key_size = bpf_map__key_size(map), value_size = bpf_map__value_size(map);
  std::vector<uint8_t> key(key_size), next(key_size), value(value_size);
  Napi::Array entries = Napi::Array::New(env);
  const void* previous = nullptr;  // NULL: the first key
  while (bpf_map__get_next_key(map, previous, next.data(), key_size) == 0) {
    key.swap(next);
    previous = key.data();
    if (bpf_map__lookup_elem(map, key.data(), key_size, value.data(), value_size, 0)) continue;  // deleted meanwhile
    Napi::Array entry = Napi::Array::New(env, 2);
    entry.Set(0u, Napi::Buffer<uint8_t>::Copy(env, key.data(), key_size));
    entry.Set(1u, Napi::Buffer<uint8_t>::Copy(env, value.data(), value_size));
    entries.Set(entries.Length(), entry);
  }
  return entries;
}

// agentGone(): the probes' enum rf_agent_gone bits (0: the agent is fine).
Napi::Value SensorHandle::AgentGone(const Napi::CallbackInfo& info) {
  sensor* skel = Loaded(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(__atomic_load_n(&skel->bss->agent_gone, __ATOMIC_SEQ_CST)));
}

// pinDir(): where the objects are pinned, or undefined.
Napi::Value SensorHandle::PinDir(const Napi::CallbackInfo& info) {
  if (pin_dir_.empty()) return info.Env().Undefined();
  return Napi::String::New(info.Env(), pin_dir_);
}

Napi::Value SensorHandle::MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapNamed(env, info[0]);
  auto key = KeyArg(info, map, "mapDelete(name, key)");
  return Napi::Boolean::New(env, bpf_map__delete_elem(map, key.Data(), key.Length(), 0) == 0);
}

Napi::Value SensorHandle::MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map* map = MapNamed(env, info[0]);
  auto key = KeyArg(info, map, "mapLookup(name, key)");
  std::vector<uint8_t> value(bpf_map__value_size(map));
  if (bpf_map__lookup_elem(map, key.Data(), key.Length(), value.data(), value.size(), 0))
    return env.Null();
  return Napi::Buffer<uint8_t>::Copy(env, value.data(), value.size());
}

}  // namespace ringfence

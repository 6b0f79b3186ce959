// The JS-facing handle on one loaded sensor: the BPF object, its attached
// programs, the job-cgroup map and the ring-buffer reader.
// Typed for TypeScript in src/sensor/native.ts.
#pragma once

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "ring_reader.h"

struct sensor;
struct bpf_link;
struct bpf_map;

namespace ringfence {

class SensorHandle : public Napi::ObjectWrap<SensorHandle>, public ReaderOwner {
 public:
  static Napi::Function Define(Napi::Env env);

  explicit SensorHandle(const Napi::CallbackInfo& info);
  ~SensorHandle() override;

  void ReaderFinished(const ReaderStats& final_stats) override;

 private:
  Napi::Value Track(const Napi::CallbackInfo& info);
  Napi::Value Untrack(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Drain(const Napi::CallbackInfo& info);
  Napi::Value ReaderStatistics(const Napi::CallbackInfo& info);
  Napi::Value ProgramIds(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
  Napi::Value DetachCgroup(const Napi::CallbackInfo& info);
  Napi::Value MapUpdate(const Napi::CallbackInfo& info);
  Napi::Value MapDelete(const Napi::CallbackInfo& info);
  Napi::Value MapLookup(const Napi::CallbackInfo& info);
  Napi::Value MapEntries(const Napi::CallbackInfo& info);
  Napi::Value AgentGone(const Napi::CallbackInfo& info);
  Napi::Value PinDir(const Napi::CallbackInfo& info);

  sensor* Loaded(Napi::Env env);
  struct bpf_map* MapNamed(Napi::Env env, const Napi::Value& name);
  void BumpGeneration();
  void Teardown();
  // Pins maps and probe links under pin_dir_ (nothing when it is empty); errno on failure.
  int PinAll();
  void UnpinAll();
  std::string CgroupPinDir(uint64_t cgroup_id) const;
  // The watchdog's heartbeat (bpf/lib/maps.h watchdog_deadline): started at load, stopped (and the deadline cleared) at teardown.
  void StartHeartbeat(uint64_t timeout_ns);
  void StopHeartbeat();

  sensor* skel_ = nullptr;
  RingReader* reader_ = nullptr;  // freed by itself (see RingReader::Start)
  ReaderStats final_stats_;
  // The egress programs' links on each job cgroup, by cgroup id.
  std::map<uint64_t, std::vector<struct bpf_link*>> cgroup_links_;
  // Where everything is pinned, so that it outlives this process (bpffs); empty: not pinned.
  std::string pin_dir_;
  std::thread heartbeat_;
  std::mutex heartbeat_mutex_;
  std::condition_variable heartbeat_wake_;
  bool heartbeat_stop_ = false;
};

}  // namespace ringfence

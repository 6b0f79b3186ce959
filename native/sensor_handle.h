// The JS-facing handle on one loaded sensor: the BPF object, its attached
// programs, the job-cgroup map and the ring-buffer reader.
// Typed for TypeScript in src/sensor/native.ts.
#pragma once

#include <napi.h>

#include "ring_reader.h"

struct sensor;

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
  Napi::Value ReaderStatistics(const Napi::CallbackInfo& info);
  Napi::Value ProgramIds(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);

  sensor* Loaded(Napi::Env env);
  void BumpGeneration();
  void Teardown();

  sensor* skel_ = nullptr;
  RingReader* reader_ = nullptr;  // freed by itself (see RingReader::Start)
  ReaderStats final_stats_;
};

}  // namespace ringfence

// Drains the sensor's ring buffer on a thread of its own and hands records to
// JavaScript in batches: one Buffer holding many records, each 8-byte aligned.
//
// Backpressure: at most `max_batches_in_flight` batches wait for the JS thread.
// When they are all taken the reader blocks, stops draining, and the kernel's
// ring buffer absorbs the burst; if that fills too, the probes count drops.
// Nothing is queued without limit.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

struct ring_buffer;

namespace ringfence {

struct RecordBatch {
  std::vector<uint8_t> bytes;
  uint32_t records = 0;
  // Not records but a marker: every record committed before drain request
  // `drained` was asked for has been delivered ahead of this one.
  uint64_t drained = 0;
};

struct ReaderOptions {
  size_t batch_bytes = 256 * 1024;
  size_t max_batches_in_flight = 16;
  int poll_timeout_ms = 10;  // the latency of delivery when the probes do not wake us
};

struct ReaderStats {
  uint64_t batches = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;
  uint64_t backpressure_waits = 0;  // batches that had to wait for a free slot
};

class RingReader;
// Runs on the JS thread for each batch the reader queued.
void DeliverBatch(Napi::Env env, Napi::Function on_batch, RingReader* reader, RecordBatch* batch);

// Told on the JS thread when a reader has finished and is about to be freed.
class ReaderOwner {
 public:
  virtual ~ReaderOwner() = default;
  virtual void ReaderFinished(const ReaderStats& final_stats) = 0;
};

class RingReader {
 public:
  // on_batch(buffer, records) is called on the JS thread for every batch;
  // on_end(error?) once, after the last batch, when the reader has finished.
  // The reader frees itself after on_end; `owner` hears of it first.
  // Several ring buffers may be drained into the same batches (records say
  // their own type): the events ring and the detections ring.
  static RingReader* Start(Napi::Env env, const std::vector<int>& ring_map_fds, Napi::Function on_batch,
                           Napi::Function on_end, const ReaderOptions& options,
                           ReaderOwner* owner);

  // The owner is going away: do not call it back.
  void Disown() { owner_ = nullptr; }

  // Graceful: drain what the kernel holds now, deliver it, then end.
  void RequestStop();
  // Asks for a marker batch (drained = token) behind every record the
  // kernel committed before this call; tokens must grow.
  void RequestDrain(uint64_t token) { drain_requested_.store(token); }
  // Immediate: drop batches not yet delivered, wait for the thread, free the
  // ring. Safe to call more than once and after a graceful end.
  void Abort();

  ReaderStats Stats() const;

 private:
  using Tsfn = Napi::TypedThreadSafeFunction<RingReader, RecordBatch, DeliverBatch>;

  explicit RingReader(const ReaderOptions& options) : options_(options) {}
  static void Finalize(Napi::Env env, void*, RingReader* reader);
  static int OnRecord(void* ctx, void* data, size_t size);

  void Run();
  bool Flush();  // false once aborted
  bool Deliver(RecordBatch* batch);  // false once aborted (the batch is freed)
  bool SendDrained(uint64_t token);
  void FreeRing();

  ReaderOptions options_;
  ReaderOwner* owner_ = nullptr;
  ring_buffer* ring_ = nullptr;
  Tsfn tsfn_;
  Napi::FunctionReference on_end_;
  std::thread thread_;
  RecordBatch current_;
  std::string error_;

  std::mutex release_mutex_;  // decides who closes the tsfn: Run's end or Abort
  bool released_ = false;
  bool aborted_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> drain_requested_{0};
  uint64_t drain_sent_ = 0;  // reader thread only

  std::atomic<uint64_t> batches_{0}, records_{0}, bytes_{0}, waits_{0};
};

}  // namespace ringfence

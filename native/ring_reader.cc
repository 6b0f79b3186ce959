#include "ring_reader.h"

#include <bpf/libbpf.h>
#include <errno.h>

#include <algorithm>
#include <cstring>

#include "events.h"

namespace ringfence {
namespace {

constexpr size_t kRecordAlign = 8;

size_t AlignUp(size_t n) { return (n + kRecordAlign - 1) & ~(kRecordAlign - 1); }

}  // namespace

RingReader* RingReader::Start(Napi::Env env, const std::vector<int>& ring_map_fds, Napi::Function on_batch,
                              Napi::Function on_end, const ReaderOptions& options,
                              ReaderOwner* owner) {
  auto* reader = new RingReader(options);
  reader->owner_ = owner;
  reader->ring_ = ring_buffer__new(ring_map_fds.at(0), &RingReader::OnRecord, reader, nullptr);
  int err = reader->ring_ ? 0 : errno;
  for (size_t i = 1; !err && i < ring_map_fds.size(); i++)
    if (ring_buffer__add(reader->ring_, ring_map_fds[i], &RingReader::OnRecord, reader)) err = errno;
  if (err) {
    reader->FreeRing();
    delete reader;
    throw Napi::Error::New(env, std::string("cannot open the ring buffers: ") + strerror(err));
  }
  reader->on_end_ = Napi::Persistent(on_end);
  reader->current_.bytes.reserve(options.batch_bytes);
  // The tsfn owns the reader from here on: Finalize deletes it.
  reader->tsfn_ = Tsfn::New(env, on_batch, "ringfence-ring-reader", options.max_batches_in_flight,
                            1, reader, &RingReader::Finalize, static_cast<void*>(nullptr));
  reader->thread_ = std::thread([reader] { reader->Run(); });
  return reader;
}

int RingReader::OnRecord(void* ctx, void* data, size_t size) {
  auto* reader = static_cast<RingReader*>(ctx);
  size_t length = size;
  if (size >= sizeof(rf_event_header)) {
    // Records are reserved at their type's full size; `hdr.size` says how
    // much of it is used (an exec's argv area is variable).
    length = std::min<size_t>(size, static_cast<const rf_event_header*>(data)->size);
    length = std::max(length, sizeof(rf_event_header));
  }
  size_t padded = AlignUp(length);
  RecordBatch& batch = reader->current_;
  if (batch.bytes.size() + padded > reader->options_.batch_bytes && batch.records > 0) {
    if (!reader->Flush()) return -ECANCELED;
  }
  size_t offset = batch.bytes.size();
  batch.bytes.resize(offset + padded);
  memcpy(batch.bytes.data() + offset, data, length);
  if (padded > length) memset(batch.bytes.data() + offset + length, 0, padded - length);
  batch.records++;
  return 0;
}

bool RingReader::Flush() {
  if (current_.records == 0) return true;
  auto* batch = new RecordBatch(std::move(current_));
  current_ = RecordBatch();
  current_.bytes.reserve(options_.batch_bytes);
  uint32_t records = batch->records;
  size_t bytes = batch->bytes.size();
  if (!Deliver(batch)) return false;
  batches_++;
  records_ += records;
  bytes_ += bytes;
  return true;
}

bool RingReader::Deliver(RecordBatch* batch) {
  napi_status status = tsfn_.NonBlockingCall(batch);
  if (status == napi_queue_full) {
    waits_++;
    status = tsfn_.BlockingCall(batch);
  }
  if (status != napi_ok) {  // napi_closing: aborted
    delete batch;
    return false;
  }
  return true;
}

bool RingReader::SendDrained(uint64_t token) {
  auto* marker = new RecordBatch();
  marker->drained = token;
  drain_sent_ = token;
  return Deliver(marker);
}

void RingReader::Run() {
  bool open = true;
  while (open && !stop_.load()) {
    // read before consuming: whatever was committed before the request is consumed below
    uint64_t drain = drain_requested_.load();
    // The probes wake us only past a backlog (cfg_wakeup_bytes), so a poll
    // that times out is normal: consume whatever has arrived meanwhile.
    int n = ring_buffer__poll(ring_, drain > drain_sent_ ? 0 : options_.poll_timeout_ms);
    if (n >= 0 || n == -EINTR) n = ring_buffer__consume(ring_);
    if (n < 0 && n != -EINTR) {
      if (n != -ECANCELED) error_ = std::string("ring buffer poll failed: ") + strerror(-n);
      break;
    }
    open = Flush();
    if (open && drain > drain_sent_) open = SendDrained(drain);
  }
  if (open && error_.empty()) {
    // Deliver what the kernel committed before the stop was asked for, and answer every drain asked until now.
    uint64_t drain = drain_requested_.load();
    ring_buffer__consume(ring_);
    if (Flush() && drain > drain_sent_) SendDrained(drain);
  }
  std::lock_guard<std::mutex> lock(release_mutex_);
  if (!aborted_) {
    released_ = true;
    tsfn_.Release();
  }
}

void RingReader::RequestStop() { stop_.store(true); }

void RingReader::Abort() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(release_mutex_);
    if (!released_ && !aborted_) {
      aborted_ = true;
      tsfn_.Abort();
    }
  }
  if (thread_.joinable()) thread_.join();
  FreeRing();
}

void RingReader::FreeRing() {
  if (ring_) {
    ring_buffer__free(ring_);
    ring_ = nullptr;
  }
}

void DeliverBatch(Napi::Env env, Napi::Function on_batch, RingReader*, RecordBatch* batch) {
  if (env == nullptr || on_batch.IsEmpty()) {  // aborted: nobody to deliver to
    delete batch;
    return;
  }
  auto* bytes = new std::vector<uint8_t>(std::move(batch->bytes));
  uint32_t records = batch->records;
  uint64_t drained = batch->drained;
  delete batch;
  auto buffer = Napi::Buffer<uint8_t>::New(
      env, bytes->data(), bytes->size(),
      [](Napi::Env, uint8_t*, std::vector<uint8_t>* owned) { delete owned; }, bytes);
  // a drain token is a count of requests, far below 2^53
  on_batch.Call({buffer, Napi::Number::New(env, records), Napi::Number::New(env, static_cast<double>(drained))});
}

void RingReader::Finalize(Napi::Env env, void*, RingReader* reader) {
  if (reader->thread_.joinable()) reader->thread_.join();
  Napi::FunctionReference on_end = std::move(reader->on_end_);
  std::string error = reader->error_;
  bool aborted = reader->aborted_;
  reader->FreeRing();
  if (reader->owner_) reader->owner_->ReaderFinished(reader->Stats());
  delete reader;
  if (on_end.IsEmpty()) return;
  Napi::HandleScope scope(env);
  Napi::Value arg = env.Undefined();
  if (!error.empty()) arg = Napi::Error::New(env, error).Value();
  on_end.Call({arg, Napi::Boolean::New(env, aborted)});
}

ReaderStats RingReader::Stats() const {
  ReaderStats s;
  s.batches = batches_.load();
  s.records = records_.load();
  s.bytes = bytes_.load();
  s.backpressure_waits = waits_.load();
  return s;
}

}  // namespace ringfence

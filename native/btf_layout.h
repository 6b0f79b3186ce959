// The layout of the event records as clang compiled them for BPF, read from
// the BTF embedded in the sensor object. The TypeScript decoder is tested
// against this, so a change to bpf/events.h that the decoder misses fails.
#pragma once

#include <napi.h>

namespace ringfence {

// { [struct name]: { size, fields: { [member]: { offset, size } } } } for every
// struct whose name starts with "rf_".
Napi::Value EventLayoutFromBtf(const Napi::CallbackInfo& info);

// { [enum name]: { [ENUMERATOR]: value } } for every enum whose name starts
// with "rf_" (bpf/lib/maps.bpf.c keeps each in the BTF).
Napi::Value EventEnumsFromBtf(const Napi::CallbackInfo& info);

}  // namespace ringfence

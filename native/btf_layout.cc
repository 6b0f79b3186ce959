#include "btf_layout.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstring>
#include <memory>

#include "events.h"
#include "sensor.skel.h"

namespace ringfence {

namespace {

using OpenedSkeleton = std::unique_ptr<sensor, void (*)(sensor*)>;

// Opening (not loading) the embedded object parses its BTF; no privileges.
// The BTF lives as long as the returned skeleton.
OpenedSkeleton OpenForBtf(Napi::Env env, const struct btf** btf) {
  OpenedSkeleton skel(sensor__open(), sensor__destroy);
  if (!skel) throw Napi::Error::New(env, "cannot open the embedded BPF object");
  *btf = bpf_object__btf(skel->obj);
  if (!*btf) throw Napi::Error::New(env, "the embedded BPF object has no BTF");
  return skel;
}

}  // namespace

Napi::Value EventLayoutFromBtf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const struct btf* btf = nullptr;
  OpenedSkeleton skel = OpenForBtf(env, &btf);

  Napi::Object layout = Napi::Object::New(env);
  for (__u32 id = 1; id < btf__type_cnt(btf); id++) {
    const struct btf_type* type = btf__type_by_id(btf, id);
    if (!btf_is_struct(type)) continue;
    const char* name = btf__name_by_offset(btf, type->name_off);
    if (!name || strncmp(name, "rf_", 3) != 0 || layout.Has(name)) continue;

    Napi::Object fields = Napi::Object::New(env);
    const struct btf_member* member = btf_members(type);
    for (__u16 i = 0; i < btf_vlen(type); i++, member++) {
      Napi::Object field = Napi::Object::New(env);
      field.Set("offset", btf_member_bit_offset(type, i) / 8);
      field.Set("size", static_cast<double>(btf__resolve_size(btf, member->type)));
      fields.Set(btf__name_by_offset(btf, member->name_off), field);
    }
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("size", type->size);
    entry.Set("fields", fields);
    layout.Set(name, entry);
  }
  return layout;
}

Napi::Value EventEnumsFromBtf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const struct btf* btf = nullptr;
  OpenedSkeleton skel = OpenForBtf(env, &btf);

  Napi::Object enums = Napi::Object::New(env);
  for (__u32 id = 1; id < btf__type_cnt(btf); id++) {
    const struct btf_type* type = btf__type_by_id(btf, id);
    if (!btf_is_enum(type)) continue;
    const char* name = btf__name_by_offset(btf, type->name_off);
    if (!name || strncmp(name, "rf_", 3) != 0 || enums.Has(name)) continue;
    Napi::Object values = Napi::Object::New(env);
    const struct btf_enum* value = btf_enum(type);
    for (__u16 i = 0; i < btf_vlen(type); i++, value++)
      values.Set(btf__name_by_offset(btf, value->name_off), static_cast<double>(value->val));
    enums.Set(name, values);
  }
  return enums;
}

}  // namespace ringfence

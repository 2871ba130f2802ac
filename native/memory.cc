// Memory with a guaranteed alignment, for O_DIRECT: JS can neither ask for an
// aligned Buffer nor see where a Buffer's bytes live. And plain (non-shared)
// views of shared memory: V8 copies to or from a SharedArrayBuffer with
// relaxed atomics, three times slower than memcpy for a 4 KiB RAM-disk read.
#include <cstdlib>
#include <cstring>

#include "common.h"

namespace tsio {
namespace {

bool IsPowerOfTwo(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// allocAligned(size, alignment) -> Buffer over posix_memalign'd memory, zeroed
// (like Buffer.alloc, so no stale heap bytes ever reach a disk), freed by the
// buffer's finalizer. V8 is told about the memory so GC pressure is right.
Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t size = ArgInt64(info, 0, "size");
  int64_t alignment = ArgInt64(info, 1, "alignment");
  if (!IsPowerOfTwo(alignment) || alignment < static_cast<int64_t>(sizeof(void*))) {
    throw Napi::RangeError::New(env, "alignment must be a power of two >= pointer size");
  }
  if (size == 0) size = alignment;  // posix_memalign(0) may return NULL; a Buffer needs memory
  void* p = nullptr;
  int r = posix_memalign(&p, static_cast<size_t>(alignment), static_cast<size_t>(size));
  if (r != 0) throw ErrnoError(env, r, "posix_memalign");
  memset(p, 0, static_cast<size_t>(size));
  Napi::MemoryManagement::AdjustExternalMemory(env, size);
  // The size rides along as the finalizer hint (no allocation needed for it).
  auto* hint = reinterpret_cast<void*>(static_cast<intptr_t>(size));
  return Napi::Buffer<uint8_t>::New(
      env, static_cast<uint8_t*>(p), static_cast<size_t>(size),
      [](Napi::Env env, uint8_t* data, void* hint) {
        free(data);
        Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(reinterpret_cast<intptr_t>(hint)));
      },
      hint);
}

// isAligned(buf, alignment): the buffer's first byte sits on an alignment
// boundary. (Its length is JS-visible; the caller checks that.)
Napi::Value IsAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> buf = ArgBuffer(info, 0, "buf");
  int64_t alignment = ArgInt64(info, 1, "alignment");
  if (!IsPowerOfTwo(alignment)) throw Napi::RangeError::New(env, "alignment must be a power of two");
  auto addr = reinterpret_cast<uintptr_t>(buf.Data());
  return Napi::Boolean::New(env, (addr & static_cast<uintptr_t>(alignment - 1)) == 0);
}

// aliasShared(view) -> Buffer over the same bytes as view (a Uint8Array over a
// SharedArrayBuffer), which V8 sees as ordinary memory, so copies through it
// are plain memcpy. The alias holds a reference to view, so the shared memory
// lives at least as long as the alias (each thread makes its own).
Napi::Value AliasShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::TypeError::New(env, "view: a Uint8Array over a SharedArrayBuffer");
  Napi::Uint8Array view = info[0].As<Napi::Uint8Array>();
  auto* keep = new Napi::Reference<Napi::Uint8Array>(Napi::Persistent(view));
  return Napi::Buffer<uint8_t>::New(
      env, view.Data(), view.ByteLength(),
      [](Napi::Env, uint8_t*, Napi::Reference<Napi::Uint8Array>* keep) { delete keep; }, keep);
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("aliasShared", Napi::Function::New(env, AliasShared, "aliasShared"));
  exports.Set("allocAligned", Napi::Function::New(env, AllocAligned, "allocAligned"));
  exports.Set("isAligned", Napi::Function::New(env, IsAligned, "isAligned"));
}

}  // namespace tsio

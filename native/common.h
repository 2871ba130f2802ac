// Shared by every concern of the addon: argument checks, errno -> JS Error in
// Node's fs style, and one AsyncWorker that runs a syscall on the libuv pool.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

namespace tsio {

// An Error shaped like Node's fs errors: .code 'EIO', .errno -5, .syscall.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);
// Calls cb with no arguments from a libuv callback (a handle scope of its own; a throw is the process's uncaught exception).
void CallFromLoop(Napi::Env env, Napi::FunctionReference& cb);

// A uv_poll_t on the env's loop watching fd for reads, data set, cb started; throws ErrnoError (nothing left
// allocated) when libuv refuses the fd. StopPoll stops and frees one and sets it to nullptr (no-op on nullptr).
uv_poll_t* PollReadable(Napi::Env env, int fd, void* data, uv_poll_cb cb);
void StopPoll(uv_poll_t*& handle);

// Argument readers: they throw TypeError/RangeError naming the argument.
int ArgFd(const Napi::CallbackInfo& info, size_t i);
int64_t ArgInt64(const Napi::CallbackInfo& info, size_t i, const char* name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name);

// A blocking call to run off the event loop. It returns its value, or sets
// *err to an errno on failure; it runs on a pool thread, so it must not touch
// JS values.
using Syscall = std::function<int64_t(int* err)>;

enum class Result { Undefined, Number };

// Queues fn on the libuv thread pool and returns a Promise that resolves with
// undefined or fn's value (per `result`), or rejects with ErrnoError.
Napi::Promise RunAsync(Napi::Env env, const char* syscall, Syscall fn, Result result = Result::Undefined);

// One initialiser per concern; addon.cc calls them all.
void InitFileOps(Napi::Env env, Napi::Object exports);
void InitBlockDev(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);
void InitSgIo(Napi::Env env, Napi::Object exports);
void InitCrc32c(Napi::Env env, Napi::Object exports);
void InitVhostUser(Napi::Env env, Napi::Object exports);
void InitSocket(Napi::Env env, Napi::Object exports);
void InitRbd(Napi::Env env, Napi::Object exports);
void InitUring(Napi::Env env, Napi::Object exports);
void InitInotify(Napi::Env env, Napi::Object exports);
void InitLoop(Napi::Env env, Napi::Object exports);

}  // namespace tsio

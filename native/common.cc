#include "common.h"

#include <uv.h>

#include <cerrno>
#include <cmath>
#include <cstdio>

namespace tsio {

void CallFromLoop(Napi::Env env, Napi::FunctionReference& cb) {
  Napi::HandleScope scope(env);
  try {
    cb.MakeCallback(env.Global(), {});
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
  }
}

uv_poll_t* PollReadable(Napi::Env env, int fd, void* data, uv_poll_cb cb) {
  uv_loop_t* loop;
  napi_get_uv_event_loop(env, &loop);
  auto* handle = new uv_poll_t;
  handle->data = data;
  int r = uv_poll_init(loop, handle, fd);
  if (r < 0) {
    delete handle;
    throw ErrnoError(env, -r, "uv_poll_init");
  }
  uv_poll_start(handle, UV_READABLE, cb);
  return handle;
}

void StopPoll(uv_poll_t*& handle) {
  if (handle == nullptr) return;
  uv_poll_stop(handle);
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  handle = nullptr;
}

// singlePollWaits(): Node turns on libuv's idle-time metrics (UV_METRICS_IDLE_TIME, for
// performance.eventLoopUtilization()), and with them every sleep of the loop costs two epoll_pwait:
// one with timeout 0 (to tell idle time from work) and, when it finds nothing, the real wait. At
// queue depth 1 the loop sleeps once or twice per command (the command's socket, the ring), so
// that is one syscall per sleep for a figure tsio never reads. Clears the flag on the calling
// thread's loop; returns whether it was set. libuv has no call to unset it: the flags are the first
// field of the loop's internal fields (libuv 1.39 on, uv-common.h), where uv_loop_configure sets it.
static Napi::Value SinglePollWaits(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned v = uv_version();
  if (v < ((1u << 16) | (39u << 8)) || v >= (2u << 16)) return Napi::Boolean::New(env, false);
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr || loop->internal_fields == nullptr) {
    return Napi::Boolean::New(env, false);
  }
  auto* flags = static_cast<unsigned int*>(loop->internal_fields);
  bool was = (*flags & UV_METRICS_IDLE_TIME) != 0;
  *flags &= ~static_cast<unsigned int>(UV_METRICS_IDLE_TIME);
  return Napi::Boolean::New(env, was);
}

void InitLoop(Napi::Env env, Napi::Object exports) {
  exports.Set("singlePollWaits", Napi::Function::New(env, SinglePollWaits, "singlePollWaits"));
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  // libuv's names match Node's fs errors, except that Linux's single errno 95
  // is ENOTSUP to libuv; the man pages of fallocate and BLKDISCARD call it
  // EOPNOTSUPP, which is what callers test for.
  char name[64];
  char text[128];
  if (err == EOPNOTSUPP) {
    snprintf(name, sizeof name, "EOPNOTSUPP");
    snprintf(text, sizeof text, "operation not supported");
  } else {
    uv_err_name_r(-err, name, sizeof name);
    uv_strerror_r(-err, text, sizeof text);
  }
  Napi::Error e = Napi::Error::New(env, std::string(name) + ": " + text + ", " + syscall);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("code", Napi::String::New(env, name));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

int64_t ArgInt64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  }
  double v = info[i].As<Napi::Number>().DoubleValue();
  // Offsets beyond 2^53 cannot be exact in a JS number; refuse them.
  if (!std::isfinite(v) || v != std::trunc(v) || v < 0 || v > 9007199254740991.0) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a non-negative safe integer");
  }
  return static_cast<int64_t>(v);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  int64_t fd = ArgInt64(info, i, "fd");
  if (fd > INT32_MAX) throw Napi::RangeError::New(info.Env(), "fd out of range");
  return static_cast<int>(fd);
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsBuffer()) {
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a Buffer");
  }
  return info[i].As<Napi::Buffer<uint8_t>>();
}

namespace {

class SyscallWorker : public Napi::AsyncWorker {
 public:
  SyscallWorker(Napi::Env env, const char* syscall, Syscall fn, Result result)
      : Napi::AsyncWorker(env, syscall),
        deferred_(Napi::Promise::Deferred::New(env)),
        syscall_(syscall),
        fn_(std::move(fn)),
        result_(result) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { value_ = fn_(&err_); }

  // Failures travel in err_ rather than through SetError, so that the
  // rejection carries .code/.errno like Node's own fs errors.
  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      deferred_.Reject(ErrnoError(env, err_, syscall_).Value());
    } else if (result_ == Result::Number) {
      deferred_.Resolve(Napi::Number::New(env, static_cast<double>(value_)));
    } else {
      deferred_.Resolve(env.Undefined());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  const char* syscall_;
  Syscall fn_;
  Result result_;
  int64_t value_ = 0;
  int err_ = 0;
};

}  // namespace

Napi::Promise RunAsync(Napi::Env env, const char* syscall, Syscall fn, Result result) {
  auto* worker = new SyscallWorker(env, syscall, std::move(fn), result);  // deletes itself
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

}  // namespace tsio

// A watch on one file's metadata (inotify IN_ATTRIB, IN_DELETE_SELF,
// IN_MOVE_SELF) for fileio's health: unlinking the backing file changes its
// link count (IN_ATTRIB). Unlike fs.watch, which always asks for IN_MODIFY
// too, writes to the file raise nothing here, so a written command costs no
// wake-up, inotify read and fstat. The descriptor is watched on the loop
// (uv_poll) without keeping it alive.
#include <sys/inotify.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>

#include "common.h"

namespace tsio {
namespace {

// new AttrWatch(path, onEvent): onEvent() runs after any of the events, once per wake-up.
class AttrWatch : public Napi::ObjectWrap<AttrWatch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "AttrWatch", {InstanceMethod("close", &AttrWatch::CloseJs)});
  }

  explicit AttrWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AttrWatch>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsFunction()) {
      throw Napi::TypeError::New(env, "AttrWatch(path, onEvent)");
    }
    std::string path = info[0].As<Napi::String>().Utf8Value();
    fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) throw ErrnoError(env, errno, "inotify_init1");
    if (inotify_add_watch(fd_, path.c_str(), IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
      int e = errno;
      close(fd_);
      fd_ = -1;
      throw ErrnoError(env, e, "inotify_add_watch");
    }
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    try {
      poll_ = PollReadable(env, fd_, this, OnReadable);
    } catch (...) {
      close(fd_);
      fd_ = -1;
      throw;
    }
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    Ref();
  }

  ~AttrWatch() override { Release(); }

 private:
  void Release() {
    StopPoll(poll_);
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) {
      Release();
      callback_.Reset();
      Unref();
    }
    return info.Env().Undefined();
  }

  static void OnReadable(uv_poll_t* h, int, int) {
    auto* self = static_cast<AttrWatch*>(h->data);
    alignas(inotify_event) char buf[4096];
    while (read(self->fd_, buf, sizeof buf) > 0) {
    }
    CallFromLoop(self->Env(), self->callback_);
  }

  int fd_ = -1;
  Napi::FunctionReference callback_;
  uv_poll_t* poll_ = nullptr;
};

}  // namespace

void InitInotify(Napi::Env env, Napi::Object exports) { exports.Set("AttrWatch", AttrWatch::Define(env)); }

}  // namespace tsio

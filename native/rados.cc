// Small RADOS objects for state several gateways share (persistent
// reservations, ALUA ownership of an rbd image): versioned reads,
// compare-and-swap writes (assert_version, or create-exclusive for the first
// write), xattrs, and watch/notify.
//
// Design: every call is librados aio; nothing waits on the loop or on the
// libuv pool. A completion, and every notify or watch error the watches
// receive, runs on a librados thread, which only queues it and bumps one
// eventfd per object set. JS watches that fd (FdWatcher) and drains a whole
// batch per wake-up: poll() reports finished operations in typed arrays (id,
// result, object version), take(id) hands over the data of a read, getxattr
// or notify, and events() the notifications received.
#include "rbd.h"

#include <rados/rados_types.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace tsio {
namespace rbd {

namespace {

constexpr int kBatch = 64;
// What a read takes at most: shared records are small.
constexpr size_t kMaxRead = 1 << 20;

enum class Kind { Read, Swap, SetXattr, GetXattr, Watch, Unwatch, Notify };

struct Core;

struct ROp {
  uint32_t id = 0;
  Kind kind = Kind::Read;
  Core* core = nullptr;
  rados_completion_t c = nullptr;
  rados_read_op_t rop = nullptr;
  rados_write_op_t wop = nullptr;
  std::string oid, name, in;
  std::vector<char> buf;
  size_t bytesRead = 0;
  int prval = 0;
  uint64_t cookie = 0;
  char* reply = nullptr;
  size_t replyLen = 0;
};

struct Event {
  bool error = false;
  uint64_t notifyId = 0, cookie = 0, notifier = 0;
  int err = 0;
  std::string data;
};

// Shared with librados threads; outlives the JS object until close() has flushed the watches.
struct Core {
  rados_t cluster = nullptr;
  rados_ioctx_t io = nullptr;
  int fd = -1;
  std::mutex mu;
  std::deque<ROp*> done;
  std::deque<Event> events;
  void Wake() {
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof one);
    (void)r;  // EAGAIN: a wake-up is pending already
  }
};

void OnComplete(rados_completion_t, void* arg) {
  ROp* op = static_cast<ROp*>(arg);
  Core* core = op->core;
  {
    std::lock_guard<std::mutex> lock(core->mu);
    core->done.push_back(op);
  }
  core->Wake();
}

void OnNotify(void* arg, uint64_t notifyId, uint64_t cookie, uint64_t notifier, void* data, size_t len) {
  Core* core = static_cast<Core*>(arg);
  Event e;
  e.notifyId = notifyId;
  e.cookie = cookie;
  e.notifier = notifier;
  e.data.assign(static_cast<const char*>(data), len);
  {
    std::lock_guard<std::mutex> lock(core->mu);
    core->events.push_back(std::move(e));
  }
  core->Wake();
}

void OnWatchError(void* arg, uint64_t cookie, int err) {
  Core* core = static_cast<Core*>(arg);
  Event e;
  e.error = true;
  e.cookie = cookie;
  e.err = err;
  {
    std::lock_guard<std::mutex> lock(core->mu);
    core->events.push_back(std::move(e));
  }
  core->Wake();
}

// Per thread: the main thread and each I/O thread load the addon in their own environment.
thread_local Napi::FunctionReference* objectsCtor = nullptr;

std::string Str(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

class Objects : public Napi::ObjectWrap<Objects> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RadosObjects", {
      InstanceMethod("read", &Objects::Read),
      InstanceMethod("swap", &Objects::Swap),
      InstanceMethod("setXattr", &Objects::SetXattr),
      InstanceMethod("getXattr", &Objects::GetXattr),
      InstanceMethod("watch", &Objects::Watch),
      InstanceMethod("unwatch", &Objects::Unwatch),
      InstanceMethod("notify", &Objects::Notify),
      InstanceMethod("ack", &Objects::Ack),
      InstanceMethod("poll", &Objects::Poll),
      InstanceMethod("take", &Objects::Take),
      InstanceMethod("events", &Objects::Events),
      InstanceMethod("close", &Objects::Close),
    });
  }

  explicit Objects(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Objects>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[1].IsExternal()) throw Napi::TypeError::New(env, "use radosObjects()");
    cluster_ = Napi::Persistent(info[0].As<Napi::Object>());
    core_ = info[1].As<Napi::External<Core>>().Data();
    Napi::Object self = info.This().As<Napi::Object>();
    ids_ = Napi::Persistent(Napi::Uint32Array::New(env, kBatch));
    results_ = Napi::Persistent(Napi::Float64Array::New(env, kBatch));
    versions_ = Napi::Persistent(Napi::Float64Array::New(env, kBatch));
    self.Set("ids", ids_.Value());
    self.Set("results", results_.Value());
    self.Set("versions", versions_.Value());
    self.Set("fd", Napi::Number::New(env, core_->fd));
  }

 private:
  Core* Live(Napi::Env env) {
    if (core_ == nullptr || closing_) throw ErrnoError(env, EBADF, "rados objects (closed)");
    return core_;
  }

  ROp* NewOp(const Napi::CallbackInfo& info, Kind kind) {
    Core* core = Live(info.Env());
    auto* op = new ROp();
    op->id = static_cast<uint32_t>(ArgInt64(info, 0, "id"));
    op->kind = kind;
    op->core = core;
    op->oid = Str(info, 1, "oid");
    int r = rados_aio_create_completion2(op, OnComplete, &op->c);
    if (r < 0) {
      delete op;
      throw ErrnoError(info.Env(), -r, "rados_aio_create_completion2");
    }
    return op;
  }

  static void Free(ROp* op) {
    if (op->rop) rados_release_read_op(op->rop);
    if (op->wop) rados_release_write_op(op->wop);
    if (op->c) rados_aio_release(op->c);
    if (op->reply) rados_buffer_free(op->reply);
    delete op;
  }

  void Submitted(Napi::Env env, ROp* op, int r, const char* call) {
    if (r < 0) {
      Free(op);
      throw ErrnoError(env, -r, call);
    }
    inflight_++;
  }

  // read(id, oid): the whole object (up to 1 MiB); result: bytes, version: the object's.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    ROp* op = NewOp(info, Kind::Read);
    op->buf.resize(kMaxRead);
    op->rop = rados_create_read_op();
    rados_read_op_read(op->rop, 0, kMaxRead, op->buf.data(), &op->bytesRead, &op->prval);
    Submitted(info.Env(), op, rados_aio_read_op_operate(op->rop, core_->io, op->c, op->oid.c_str(), 0), "rados_aio_read_op_operate");
    return info.Env().Undefined();
  }

  // swap(id, oid, version, data): replaces the object only if it is still at version (0: only if
  // it does not exist). A stale version fails with ERANGE or EOVERFLOW, an existing object with EEXIST.
  Napi::Value Swap(const Napi::CallbackInfo& info) {
    ROp* op = NewOp(info, Kind::Swap);
    uint64_t version = static_cast<uint64_t>(ArgInt64(info, 2, "version"));
    Napi::Buffer<uint8_t> data = ArgBuffer(info, 3, "data");
    op->in.assign(reinterpret_cast<const char*>(data.Data()), data.Length());
    op->wop = rados_create_write_op();
    if (version == 0) rados_write_op_create(op->wop, LIBRADOS_CREATE_EXCLUSIVE, nullptr);
    else rados_write_op_assert_version(op->wop, version);
    rados_write_op_write_full(op->wop, op->in.data(), op->in.size());
    Submitted(info.Env(), op, rados_aio_write_op_operate(op->wop, core_->io, op->c, op->oid.c_str(), nullptr, 0), "rados_aio_write_op_operate");
    return info.Env().Undefined();
  }

  // setXattr(id, oid, name, value)
  Napi::Value SetXattr(const Napi::CallbackInfo& info) {
    ROp* op = NewOp(info, Kind::SetXattr);
    op->name = Str(info, 2, "name");
    op->in = Str(info, 3, "value");
    Submitted(info.Env(), op, rados_aio_setxattr(core_->io, op->oid.c_str(), op->c, op->name.c_str(), op->in.data(), op->in.size()), "rados_aio_setxattr");
    return info.Env().Undefined();
  }

  // getXattr(id, oid, name): take(id) gives the value.
  Napi::Value GetXattr(const Napi::CallbackInfo& info) {
    ROp* op = NewOp(info, Kind::GetXattr);
    op->name = Str(info, 2, "name");
    op->buf.resize(4096);
    Submitted(info.Env(), op, rados_aio_getxattr(core_->io, op->oid.c_str(), op->c, op->name.c_str(), op->buf.data(), op->buf.size()), "rados_aio_getxattr");
    return info.Env().Undefined();
  }

  // watch(id, oid, timeoutSeconds): the watch's cookie comes back as the op's version (a pointer value, < 2^53).
  Napi::Value Watch(const Napi::CallbackInfo& info) {
    ROp* op = NewOp(info, Kind::Watch);
    uint32_t timeout = static_cast<uint32_t>(ArgInt64(info, 2, "timeoutSeconds"));
    Submitted(info.Env(), op, rados_aio_watch2(core_->io, op->oid.c_str(), op->c, &op->cookie, OnNotify, OnWatchError, timeout, core_),
              "rados_aio_watch2");
    return info.Env().Undefined();
  }

  // unwatch(id, oid, cookie)
  Napi::Value Unwatch(const Napi::CallbackInfo& info) {
    ROp* op = NewOp(info, Kind::Unwatch);
    op->cookie = static_cast<uint64_t>(ArgInt64(info, 2, "cookie"));
    Submitted(info.Env(), op, rados_aio_unwatch(core_->io, op->cookie, op->c), "rados_aio_unwatch");
    return info.Env().Undefined();
  }

  // notify(id, oid, data, timeoutMs): completes once every watcher acked or timed out (-ETIMEDOUT);
  // take(id) gives { acks: gid[], timeouts: gid[] } as decimal strings.
  Napi::Value Notify(const Napi::CallbackInfo& info) {
    ROp* op = NewOp(info, Kind::Notify);
    Napi::Buffer<uint8_t> data = ArgBuffer(info, 2, "data");
    uint64_t timeoutMs = static_cast<uint64_t>(ArgInt64(info, 3, "timeoutMs"));
    op->in.assign(reinterpret_cast<const char*>(data.Data()), data.Length());
    Submitted(info.Env(), op, rados_aio_notify(core_->io, op->oid.c_str(), op->c, op->in.data(), static_cast<int>(op->in.size()), timeoutMs,
                                               &op->reply, &op->replyLen),
              "rados_aio_notify");
    return info.Env().Undefined();
  }

  // ack(oid, notifyId, cookie): answers a notification (librados sends it; nothing waits).
  Napi::Value Ack(const Napi::CallbackInfo& info) {
    Core* core = Live(info.Env());
    std::string oid = Str(info, 0, "oid");
    bool lossless;
    uint64_t notifyId = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
    uint64_t cookie = static_cast<uint64_t>(ArgInt64(info, 2, "cookie"));
    int r = rados_notify_ack(core->io, oid.c_str(), notifyId, cookie, nullptr, 0);
    if (r < 0) throw ErrnoError(info.Env(), -r, "rados_notify_ack");
    return info.Env().Undefined();
  }

  // poll() -> n: takes the eventfd's count, then reports up to kBatch finished operations in
  // ids/results/versions; their data waits in take(id).
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (core_ == nullptr) return Napi::Number::New(env, 0);
    uint64_t count;
    ssize_t rr = read(core_->fd, &count, sizeof count);
    (void)rr;
    std::vector<ROp*> ops;
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      while (!core_->done.empty() && ops.size() < static_cast<size_t>(kBatch)) {
        ops.push_back(core_->done.front());
        core_->done.pop_front();
      }
    }
    uint32_t* ids = ids_.Value().Data();
    double* results = results_.Value().Data();
    double* versions = versions_.Value().Data();
    for (size_t i = 0; i < ops.size(); i++) {
      ROp* op = ops[i];
      int r = rados_aio_get_return_value(op->c);
      ids[i] = op->id;
      versions[i] = static_cast<double>(rados_aio_get_version(op->c));
      switch (op->kind) {
        case Kind::Read:
          if (r >= 0 && op->prval < 0) r = op->prval;
          if (r >= 0) {
            r = static_cast<int>(op->bytesRead);
            taken_[op->id] = Napi::Persistent(Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(op->buf.data()), op->bytesRead).As<Napi::Value>());
          }
          break;
        case Kind::GetXattr:
          // A Buffer, not a string: a reference to a primitive is refused (napi_invalid_arg).
          if (r >= 0) taken_[op->id] = Napi::Persistent(Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t*>(op->buf.data()), static_cast<size_t>(r)).As<Napi::Value>());
          break;
        case Kind::Watch:
          versions[i] = static_cast<double>(op->cookie);
          break;
        case Kind::Notify:
          if (op->reply != nullptr) {
            notify_ack_t* acks = nullptr;
            notify_timeout_t* timeouts = nullptr;
            size_t na = 0, nt = 0;
            if (rados_decode_notify_response(op->reply, op->replyLen, &acks, &na, &timeouts, &nt) >= 0) {
              Napi::Object o = Napi::Object::New(env);
              Napi::Array a = Napi::Array::New(env, na), t = Napi::Array::New(env, nt);
              for (size_t k = 0; k < na; k++) a.Set(static_cast<uint32_t>(k), std::to_string(acks[k].notifier_id));
              for (size_t k = 0; k < nt; k++) t.Set(static_cast<uint32_t>(k), std::to_string(timeouts[k].notifier_id));
              o.Set("acks", a);
              o.Set("timeouts", t);
              taken_[op->id] = Napi::Persistent(o.As<Napi::Value>());
              rados_free_notify_response(acks, na, timeouts);
            }
          }
          break;
        default:
          break;
      }
      results[i] = static_cast<double>(r);
      Free(op);
    }
    inflight_ -= static_cast<int64_t>(ops.size());
    return Napi::Number::New(env, static_cast<double>(ops.size()));
  }

  // take(id): the data of a finished read or getXattr (Buffer) or notify (object); once.
  Napi::Value Take(const Napi::CallbackInfo& info) {
    uint32_t id = static_cast<uint32_t>(ArgInt64(info, 0, "id"));
    auto it = taken_.find(id);
    if (it == taken_.end()) return info.Env().Undefined();
    Napi::Value v = it->second.Value();
    taken_.erase(it);
    return v;
  }

  // events() -> [{ notifyId: bigint, cookie, notifier: string, data: Buffer } | { cookie, error: -errno }]
  Napi::Value Events(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::deque<Event> evs;
    if (core_ != nullptr) {
      std::lock_guard<std::mutex> lock(core_->mu);
      evs.swap(core_->events);
    }
    Napi::Array a = Napi::Array::New(env, evs.size());
    uint32_t k = 0;
    for (auto& e : evs) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("cookie", static_cast<double>(e.cookie));
      if (e.error) {
        o.Set("error", e.err);
      } else {
        o.Set("notifyId", Napi::BigInt::New(env, e.notifyId));
        o.Set("notifier", std::to_string(e.notifier));
        o.Set("data", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(e.data.data()), e.data.size()));
      }
      a.Set(k++, o);
    }
    return a;
  }

  // close() -> Promise: the watches must be gone (unwatch) and every operation polled; flushes
  // the callbacks still running, then drops the ioctx, off the loop.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (core_ == nullptr || closing_) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    if (inflight_ != 0) throw ErrnoError(env, EBUSY, "rados objects close (operations in flight)");
    closing_ = true;
    Core* core = core_;
    auto keep = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Value()));
    return Run(env, "rados_watch_flush", [core](std::string*) {
      rados_watch_flush(core->cluster);
      rados_ioctx_destroy(core->io);
      close(core->fd);
      delete core;
      return 0;
    }, [this, keep](Napi::Env env) {
      core_ = nullptr;
      return env.Undefined();
    });
  }

  Napi::ObjectReference cluster_;
  Core* core_ = nullptr;
  bool closing_ = false;
  int64_t inflight_ = 0;
  Napi::Reference<Napi::Uint32Array> ids_;
  Napi::Reference<Napi::Float64Array> results_;
  Napi::Reference<Napi::Float64Array> versions_;
  std::map<uint32_t, Napi::Reference<Napi::Value>> taken_;
};

// radosObjects(cluster, pool, namespace) -> Promise<RadosObjects>: an ioctx of its own (made off the loop).
Napi::Value OpenObjects(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "cluster must be a RadosCluster");
  rados_t c = ClusterHandle(info[0]);
  std::string pool = Str(info, 1, "pool");
  std::string ns = Str(info, 2, "namespace");
  auto core = std::make_shared<Core*>(new Core());
  (*core)->cluster = c;
  auto keep = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info[0].As<Napi::Object>()));
  return Run(env, "rados_ioctx_create", [c, pool, ns, core](std::string* what) {
    Core* k = *core;
    int r = rados_ioctx_create(c, pool.c_str(), &k->io);
    if (r < 0) {
      delete k;
      *core = nullptr;
      return r;
    }
    rados_ioctx_set_namespace(k->io, ns.c_str());
    *what = "eventfd";
    k->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (k->fd < 0) {
      r = -errno;
      rados_ioctx_destroy(k->io);
      delete k;
      *core = nullptr;
    }
    return r;
  }, [core, keep](Napi::Env env) {
    Napi::Value o = objectsCtor->New({keep->Value(), Napi::External<Core>::New(env, *core)});
    *core = nullptr;
    return o;
  });
}

}  // namespace

void InitRados(Napi::Env env, Napi::Object exports) {
  objectsCtor = new Napi::FunctionReference(Napi::Persistent(Objects::Define(env)));
  exports.Set("radosObjects", Napi::Function::New(env, OpenObjects, "radosObjects"));
}

}  // namespace rbd
}  // namespace tsio

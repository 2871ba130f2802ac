// Ceph RBD images through librbd's C API, for backstores/rbd.ts.
//
// Design: everything that waits on the cluster (connect, open, create,
// resize, stat, allocation walks, lock calls, close) runs on the libuv pool
// and returns a promise. Data I/O uses librbd's async calls straight on the
// command's own buffers (readv/writev over the Buffers' memory, no copy on
// our side). Completions never call into JS from a librbd thread: each image
// has an eventfd registered with rbd_set_image_notification, the JS side
// watches it (FdWatcher) and calls poll(), which drains finished operations
// with rbd_poll_io_events into three typed arrays (id, result, miscompare
// offset), so one JS call settles a whole batch. Header changes (a resize by
// another client) bump a second eventfd from librbd's watch callback.
//
// JS keeps every buffer of an operation referenced until poll() reports it; the
// native side keeps the iovec array (librbd reads into it at completion).
// Reads of an image fit for it bypass librbd (native/rados-read.cc: RADOS reads
// of the data objects); poll() drains their completions in the same batches.
#include "rbd.h"

#include "rados-read.h"

#include <limits.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

namespace tsio {
namespace rbd {

namespace {

// Completions drained per poll() call; JS calls again while it gets a full batch.
constexpr int kBatch = 256;

class RbdWorker : public Napi::AsyncWorker {
 public:
  RbdWorker(Napi::Env env, const char* what, Work work, Done done)
      : Napi::AsyncWorker(env, what), deferred_(Napi::Promise::Deferred::New(env)), what_(what), work_(std::move(work)), done_(std::move(done)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override { r_ = work_(&what_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (r_ < 0) {
      deferred_.Reject(ErrnoError(env, -r_, what_.c_str()).Value());
      return;
    }
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string what_;
  Work work_;
  Done done_;
  int r_ = 0;
};

std::string ArgStr(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// The constructors of the wrapped classes, per environment.
struct Ctors {
  Napi::FunctionReference cluster;
  Napi::FunctionReference image;
};

Ctors& CtorsOf(Napi::Env env) { return *env.GetInstanceData<Ctors>(); }

// ---- the cluster connection -------------------------------------------------------------------

class Cluster : public Napi::ObjectWrap<Cluster> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RadosCluster", {
      InstanceMethod("openImage", &Cluster::OpenImage),
      InstanceMethod("fsid", &Cluster::Fsid),
      InstanceMethod("instanceId", &Cluster::InstanceId),
      InstanceMethod("addresses", &Cluster::Addresses),
      InstanceMethod("blocklistAdd", &Cluster::BlocklistAdd),
      InstanceMethod("shutdown", &Cluster::Shutdown),
    });
  }

  // Made only by rbdConnect: new RadosCluster(External<rados_t>).
  explicit Cluster(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Cluster>(info) {
    if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "use rbdConnect()");
    handle_ = info[0].As<Napi::External<std::remove_pointer_t<rados_t>>>().Data();
  }

  // A cluster dropped without shutdown() still lets go of the cluster (off the loop is not possible here).
  ~Cluster() override {
    if (handle_ != nullptr) rados_shutdown(handle_);
  }

  rados_t Live(Napi::Env env) const {
    if (handle_ == nullptr) throw ErrnoError(env, ESHUTDOWN, "rados (connection shut down)");
    return handle_;
  }

 private:
  // openImage(pool, namespace, name, createSize, readonly) -> Promise<RbdImage>. createSize > 0 creates a
  // missing image of that many bytes (never shrinks or grows an existing one).
  Napi::Value OpenImage(const Napi::CallbackInfo& info);

  Napi::Value Fsid(const Napi::CallbackInfo& info) {
    char buf[64] = {0};
    int r = rados_cluster_fsid(Live(info.Env()), buf, sizeof buf - 1);
    if (r < 0) throw ErrnoError(info.Env(), -r, "rados_cluster_fsid");
    return Napi::String::New(info.Env(), buf);
  }

  Napi::Value InstanceId(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(rados_get_instance_id(Live(info.Env()))));
  }

  // addresses() -> the client's own address as the OSDs see it (what a lock break blocklists).
  Napi::Value Addresses(const Napi::CallbackInfo& info) {
    char* addrs = nullptr;
    int r = rados_getaddrs(Live(info.Env()), &addrs);
    if (r < 0) throw ErrnoError(info.Env(), -r, "rados_getaddrs");
    std::string s(addrs ? addrs : "");
    free(addrs);
    return Napi::String::New(info.Env(), s);
  }

  // blocklistAdd(address, expireSeconds) -> Promise: fences a client (the mon commits a new osdmap).
  Napi::Value BlocklistAdd(const Napi::CallbackInfo& info) {
    rados_t c = Live(info.Env());
    auto addr = std::make_shared<std::string>(ArgStr(info, 0, "address"));
    uint32_t expire = static_cast<uint32_t>(ArgInt64(info, 1, "expireSeconds"));
    Napi::Reference<Napi::Object> self = Napi::Persistent(Value());
    auto keep = std::make_shared<Napi::Reference<Napi::Object>>(std::move(self));
    return Run(info.Env(), "rados_blocklist_add", [c, addr, expire](std::string*) {
      return rados_blocklist_add(c, &(*addr)[0], expire);
    }, [keep](Napi::Env env) { return env.Undefined(); });
  }

  // shutdown() -> Promise: closes the connection off the loop. Images must be closed first.
  Napi::Value Shutdown(const Napi::CallbackInfo& info) {
    rados_t c = handle_;
    handle_ = nullptr;
    if (c == nullptr) {
      auto d = Napi::Promise::Deferred::New(info.Env());
      d.Resolve(info.Env().Undefined());
      return d.Promise();
    }
    return Run(info.Env(), "rados_shutdown", [c](std::string*) {
      rados_shutdown(c);
      return 0;
    }, nullptr);
  }

  rados_t handle_ = nullptr;
};

// ---- one open image --------------------------------------------------------------------------

// Completions librbd does not post to the image's event socket: its C API submits
// compare-and-write as not "native async" (librbd 16), so that one reaches us through
// a completion callback, which queues it here and bumps the same eventfd.
struct SideQueue {
  std::mutex mu;
  std::vector<rbd_completion_t> done;
  int eventFd = -1;
};

struct Op {
  uint32_t id;
  rbd_completion_t c = nullptr;
  uint64_t mismatch = 0;
  SideQueue* side = nullptr;
  // librbd keeps a pointer to a read's iovec array (not a copy) until it completes.
  std::vector<iovec> iov;
};

// On a librbd thread: no JS, only the queue and a wake-up.
void OnSideCompletion(rbd_completion_t c, void* arg) {
  SideQueue* q = static_cast<Op*>(arg)->side;
  {
    std::lock_guard<std::mutex> lock(q->mu);
    q->done.push_back(c);
  }
  uint64_t one = 1;
  ssize_t r = write(q->eventFd, &one, sizeof one);
  (void)r;
}

struct OpenState {
  rados_ioctx_t io = nullptr;
  // Reads straight from the data objects (null when they could not be set up: directWhy says why).
  std::shared_ptr<DirectReads> direct;
  std::string directWhy;
  rbd_image_t image = nullptr;
  int eventFd = -1;
  int updateFd = -1;
  uint64_t watch = 0;
  bool watching = false;
  // Cleans up whatever an open that failed half way had made.
  void Release() {
    if (watching) rbd_update_unwatch(image, watch);
    if (image != nullptr) rbd_close(image);
    if (direct) direct->Close();
    if (io != nullptr) rados_ioctx_destroy(io);
    if (eventFd >= 0) close(eventFd);
    if (updateFd >= 0) close(updateFd);
    *this = OpenState();
  }
};

// librbd's header watch callback, on a librbd thread: only bumps the update eventfd.
void OnHeaderUpdate(void* arg) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  uint64_t one = 1;
  ssize_t r = write(fd, &one, sizeof one);
  (void)r;  // EAGAIN: a wake-up is pending already
}

class Image : public Napi::ObjectWrap<Image> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "RbdImage", {
      InstanceMethod("readv", &Image::Readv),
      InstanceMethod("readDirect", &Image::ReadDirect),
      InstanceMethod("writev", &Image::Writev),
      InstanceMethod("discard", &Image::Discard),
      InstanceMethod("writeZeroes", &Image::WriteZeroes),
      InstanceMethod("writeSame", &Image::WriteSame),
      InstanceMethod("compareAndWrite", &Image::CompareAndWrite),
      InstanceMethod("flush", &Image::Flush),
      InstanceMethod("poll", &Image::Poll),
      InstanceMethod("stat", &Image::Stat),
      InstanceMethod("resize", &Image::Resize),
      InstanceMethod("allocated", &Image::Allocated),
      InstanceMethod("lockAcquire", &Image::LockAcquire),
      InstanceMethod("lockRelease", &Image::LockRelease),
      InstanceMethod("lockOwners", &Image::LockOwners),
      InstanceMethod("lockBreak", &Image::LockBreak),
      InstanceMethod("isLockOwner", &Image::IsLockOwner),
      InstanceMethod("close", &Image::Close),
    });
  }

  // Made only by Cluster::openImage: new RbdImage(cluster, External<OpenState>).
  explicit Image(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Image>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[1].IsExternal()) throw Napi::TypeError::New(env, "use cluster.openImage()");
    cluster_ = Napi::Persistent(info[0].As<Napi::Object>());
    s_ = *info[1].As<Napi::External<OpenState>>().Data();
    Napi::Object self = info.This().As<Napi::Object>();
    ids_ = Napi::Uint32Array::New(env, kBatch);
    results_ = Napi::Float64Array::New(env, kBatch);
    aux_ = Napi::Float64Array::New(env, kBatch);
    self.Set("ids", ids_);
    self.Set("results", results_);
    self.Set("aux", aux_);
    self.Set("fd", Napi::Number::New(env, s_.eventFd));
    side_->eventFd = s_.eventFd;
    self.Set("updateFd", Napi::Number::New(env, s_.updateFd));
    idsRef_ = Napi::Persistent(ids_);
    resultsRef_ = Napi::Persistent(results_);
    auxRef_ = Napi::Persistent(aux_);
  }

  // Not closed by JS (a bug there): the handles go with the object; any operation still in
  // flight keeps librbd's own references, and its completion is simply never reported.
  ~Image() override {
    if (inflight_ != 0) {
      // librbd and librados still point at these records: they stay (a leak, after a bug in JS).
      for (auto& op : ops_) op.release();
      if (s_.direct) new std::shared_ptr<DirectReads>(s_.direct);
    }
    if (s_.image != nullptr) s_.Release();
  }

 private:
  rbd_image_t Live(Napi::Env env) {
    if (s_.image == nullptr || closing_) throw ErrnoError(env, EBADF, "rbd (image closed)");
    return s_.image;
  }

  // A completion for operation `id`; freed by poll() or here when submission fails. side: it
  // completes through the side queue (compare-and-write).
  // Op records are reused (no allocation per operation once warm); the loop alone takes and returns them.
  Op* NewOp(Napi::Env env, const Napi::CallbackInfo& info, bool side = false) {
    uint32_t id = static_cast<uint32_t>(ArgInt64(info, 0, "id"));
    Op* op;
    if (freeOps_.empty()) {
      ops_.push_back(std::make_unique<Op>());
      op = ops_.back().get();
    } else {
      op = freeOps_.back();
      freeOps_.pop_back();
    }
    op->id = id;
    op->mismatch = 0;
    op->side = side ? side_.get() : nullptr;
    op->iov.clear();
    int r = rbd_aio_create_completion(op, side ? OnSideCompletion : nullptr, &op->c);
    if (r < 0) {
      freeOps_.push_back(op);
      throw ErrnoError(env, -r, "rbd_aio_create_completion");
    }
    return op;
  }

  void Submitted(Napi::Env env, Op* op, int r, const char* call) {
    if (r < 0) {
      rbd_aio_release(op->c);
      freeOps_.push_back(op);
      throw ErrnoError(env, -r, call);
    }
    inflight_++;
  }

  // The Buffers of an array as iovecs (at most IOV_MAX; the JS side splits longer lists).
  static void Iovecs(const Napi::CallbackInfo& info, size_t i, std::vector<iovec>& iov) {
    iov.clear();
    Napi::Env env = info.Env();
    if (i >= info.Length() || !info[i].IsArray()) throw Napi::TypeError::New(env, "bufs must be an array of Buffers");
    Napi::Array a = info[i].As<Napi::Array>();
    uint32_t len = a.Length();
    if (len == 0 || len > IOV_MAX) throw Napi::RangeError::New(env, "bufs must hold 1 to IOV_MAX Buffers");
    iov.reserve(len);
    for (uint32_t k = 0; k < len; k++) {
      Napi::Value v = a[k];
      if (!v.IsBuffer()) throw Napi::TypeError::New(env, "bufs must be an array of Buffers");
      auto b = v.As<Napi::Buffer<uint8_t>>();
      if (b.Length() == 0) continue;
      iov.push_back(iovec{b.Data(), b.Length()});
    }
    if (iov.empty()) throw Napi::RangeError::New(env, "bufs hold no bytes");
  }

  // An operation on the Buffers of argument 1; librbd keeps a pointer to a read's iovec array (not a
  // copy) until it completes, so the op holds it (its vector keeps its capacity between uses).
  Op* NewVecOp(Napi::Env env, const Napi::CallbackInfo& info) {
    Iovecs(info, 1, scratch_);
    Op* op = NewOp(env, info);
    op->iov.assign(scratch_.begin(), scratch_.end());
    return op;
  }

  // readv(id, bufs, offset): reads sum(bufs) bytes at offset into the buffers.
  Napi::Value Readv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rbd_image_t img = Live(env);
    uint64_t off = ArgInt64(info, 2, "offset");
    Op* op = NewVecOp(env, info);
    Submitted(env, op, rbd_aio_readv(img, op->iov.data(), static_cast<int>(op->iov.size()), off, op->c), "rbd_aio_readv");
    return env.Undefined();
  }

  // writev(id, bufs, offset): with rbd_cache off, done means on the OSDs (FUA for free). librbd
  // takes the buffers into its bufferlist at submission; the iovecs are kept all the same.
  Napi::Value Writev(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rbd_image_t img = Live(env);
    uint64_t off = ArgInt64(info, 2, "offset");
    Op* op = NewVecOp(env, info);
    Submitted(env, op, rbd_aio_writev(img, op->iov.data(), static_cast<int>(op->iov.size()), off, op->c), "rbd_aio_writev");
    return env.Undefined();
  }

  // readDirect(id, bufs, offset): readv's result, read from the data objects with RADOS, not through
  // librbd; only for an image whose stat() said direct === "" (the JS side checks).
  Napi::Value ReadDirect(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Live(env);
    if (!s_.direct) throw ErrnoError(env, EOPNOTSUPP, "rados_aio_read (no direct reader)");
    uint32_t id = static_cast<uint32_t>(ArgInt64(info, 0, "id"));
    Iovecs(info, 1, scratch_);
    uint64_t off = ArgInt64(info, 2, "offset");
    s_.direct->Read(id, scratch_.data(), static_cast<int>(scratch_.size()), off);
    inflight_++;
    return env.Undefined();
  }

  // discard(id, offset, length): deallocates; librbd may skip the parts of objects it does not cover whole.
  Napi::Value Discard(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rbd_image_t img = Live(env);
    uint64_t off = ArgInt64(info, 1, "offset");
    uint64_t len = ArgInt64(info, 2, "length");
    Op* op = NewOp(env, info);
    Submitted(env, op, rbd_aio_discard(img, off, len, op->c), "rbd_aio_discard");
    return env.Undefined();
  }

  // writeZeroes(id, offset, length): the range reads zeros afterwards; whole objects are removed
  // (deallocated), partial ones zeroed.
  Napi::Value WriteZeroes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rbd_image_t img = Live(env);
    uint64_t off = ArgInt64(info, 1, "offset");
    uint64_t len = ArgInt64(info, 2, "length");
    Op* op = NewOp(env, info);
    Submitted(env, op, rbd_aio_write_zeroes(img, off, len, op->c, 0, 0), "rbd_aio_write_zeroes");
    return env.Undefined();
  }

  // writeSame(id, offset, length, pattern): pattern repeated over the range (length a multiple of it).
  Napi::Value WriteSame(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rbd_image_t img = Live(env);
    uint64_t off = ArgInt64(info, 1, "offset");
    uint64_t len = ArgInt64(info, 2, "length");
    Napi::Buffer<uint8_t> pattern = ArgBuffer(info, 3, "pattern");
    Op* op = NewOp(env, info);
    Submitted(env, op, rbd_aio_writesame(img, off, len, reinterpret_cast<const char*>(pattern.Data()), pattern.Length(), op->c, 0),
              "rbd_aio_writesame");
    return env.Undefined();
  }

  // compareAndWrite(id, offset, compare, data): atomic on the OSD. A miscompare completes with
  // -EILSEQ and the image offset of the first differing byte in aux[].
  Napi::Value CompareAndWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rbd_image_t img = Live(env);
    uint64_t off = ArgInt64(info, 1, "offset");
    Napi::Buffer<uint8_t> cmp = ArgBuffer(info, 2, "compare");
    Napi::Buffer<uint8_t> data = ArgBuffer(info, 3, "data");
    if (cmp.Length() != data.Length() || cmp.Length() == 0) throw Napi::RangeError::New(env, "compare and data must be equally long");
    Op* op = NewOp(env, info, true);
    ssize_t r = rbd_aio_compare_and_write(img, off, data.Length(), reinterpret_cast<const char*>(cmp.Data()),
                                          reinterpret_cast<const char*>(data.Data()), op->c, &op->mismatch, 0);
    Submitted(env, op, static_cast<int>(r), "rbd_aio_compare_and_write");
    return env.Undefined();
  }

  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rbd_image_t img = Live(env);
    Op* op = NewOp(env, info);
    Submitted(env, op, rbd_aio_flush(img, op->c), "rbd_aio_flush");
    return env.Undefined();
  }

  // poll() -> n: takes the eventfd's count, then drains up to kBatch finished operations into
  // ids[0..n), results[0..n) (bytes or -errno) and aux[0..n) (miscompare offsets).
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (s_.image == nullptr) return Napi::Number::New(env, 0);
    uint64_t count;
    ssize_t rr = read(s_.eventFd, &count, sizeof count);
    (void)rr;  // EAGAIN: nothing counted, there may still be completions from an earlier wake-up
    rbd_completion_t comps[kBatch];
    int n = 0;
    {
      std::lock_guard<std::mutex> lock(side_->mu);
      auto& d = side_->done;
      while (!d.empty() && n < kBatch) {
        comps[n++] = d.back();
        d.pop_back();
      }
    }
    int m = rbd_poll_io_events(s_.image, comps + n, kBatch - n);
    if (m < 0) throw ErrnoError(env, -m, "rbd_poll_io_events");
    // An operation with a side callback is reported by it alone, should a librbd also post it.
    for (int i = n; i < n + m; i++) {
      if (static_cast<Op*>(rbd_aio_get_arg(comps[i]))->side != nullptr) comps[i--] = comps[--m + n];
    }
    n += m;
    uint32_t* ids = ids_.Data();
    double* results = results_.Data();
    double* aux = aux_.Data();
    for (int i = 0; i < n; i++) {
      Op* op = static_cast<Op*>(rbd_aio_get_arg(comps[i]));
      ids[i] = op->id;
      results[i] = static_cast<double>(rbd_aio_get_return_value(comps[i]));
      aux[i] = static_cast<double>(op->mismatch);
      rbd_aio_release(comps[i]);
      freeOps_.push_back(op);
    }
    if (s_.direct) n += s_.direct->Drain(ids + n, results + n, aux + n, kBatch - n);
    inflight_ -= n;
    return Napi::Number::New(env, n);
  }

  // Keeps this object (and so its handles) alive while pool work uses them.
  std::shared_ptr<Napi::ObjectReference> Keep() { return std::make_shared<Napi::ObjectReference>(Napi::Persistent(Value())); }

  // stat() -> Promise<{ size, objectSize, features, flags }>: refreshes the header if it changed.
  Napi::Value Stat(const Napi::CallbackInfo& info) {
    rbd_image_t img = Live(info.Env());
    struct Out {
      rbd_image_info_t st;
      uint64_t features = 0, flags = 0;
      std::string direct;
    };
    auto out = std::make_shared<Out>();
    auto keep = Keep();
    bool reader = static_cast<bool>(s_.direct);
    out->direct = reader ? "" : "no direct reader (" + s_.directWhy + ")";
    return Run(info.Env(), "rbd_stat", [img, out, reader](std::string* what) {
      int r = rbd_stat(img, &out->st, sizeof out->st);
      if (r >= 0 && (r = rbd_get_features(img, &out->features)) < 0) *what = "rbd_get_features";
      if (r >= 0 && (r = rbd_get_flags(img, &out->flags)) < 0) *what = "rbd_get_flags";
      if (r >= 0 && reader) out->direct = DirectReads::Unsafe(img, out->features, out->st.obj_size);
      return r;
    }, [out, keep](Napi::Env env) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("size", static_cast<double>(out->st.size));
      o.Set("objectSize", static_cast<double>(out->st.obj_size));
      o.Set("features", static_cast<double>(out->features));
      o.Set("flags", static_cast<double>(out->flags));
      o.Set("direct", out->direct);
      return o;
    });
  }

  // resize(size) -> Promise: grows the image; a smaller size is refused (EINVAL), never applied.
  Napi::Value Resize(const Napi::CallbackInfo& info) {
    rbd_image_t img = Live(info.Env());
    uint64_t size = ArgInt64(info, 0, "size");
    auto keep = Keep();
    return Run(info.Env(), "rbd_resize2", [img, size](std::string*) {
      return rbd_resize2(img, size, false, nullptr, nullptr);
    }, [keep](Napi::Env env) { return env.Undefined(); });
  }

  // allocated(offset, length, wholeObject) -> Promise<Float64Array> of (offset, length) pairs holding
  // data, in order (rbd_diff_iterate2 from the beginning of time; with fast-diff and wholeObject the
  // object map answers without reading objects).
  Napi::Value Allocated(const Napi::CallbackInfo& info) {
    rbd_image_t img = Live(info.Env());
    uint64_t off = ArgInt64(info, 0, "offset");
    uint64_t len = ArgInt64(info, 1, "length");
    bool whole = info.Length() > 2 && info[2].ToBoolean();
    auto extents = std::make_shared<std::vector<double>>();
    auto keep = Keep();
    return Run(info.Env(), "rbd_diff_iterate2", [img, off, len, whole, extents](std::string*) {
      auto cb = [](uint64_t o, size_t l, int exists, void* arg) -> int {
        if (exists) {
          auto* v = static_cast<std::vector<double>*>(arg);
          v->push_back(static_cast<double>(o));
          v->push_back(static_cast<double>(l));
        }
        return 0;
      };
      return rbd_diff_iterate2(img, nullptr, off, len, 1, whole ? 1 : 0, cb, extents.get());
    }, [extents, keep](Napi::Env env) {
      Napi::Float64Array a = Napi::Float64Array::New(env, extents->size());
      if (!extents->empty()) memcpy(a.Data(), extents->data(), extents->size() * sizeof(double));
      return a;
    });
  }

  // The managed exclusive lock (exclusive-lock feature), for gateways that fence each other.
  // lockAcquire() -> Promise; lockRelease() -> Promise; isLockOwner() -> Promise<boolean>;
  // lockOwners() -> Promise<string[]>; lockBreak(owner) -> Promise (blocklists the owner).
  Napi::Value LockAcquire(const Napi::CallbackInfo& info) {
    rbd_image_t img = Live(info.Env());
    auto keep = Keep();
    return Run(info.Env(), "rbd_lock_acquire", [img](std::string*) { return rbd_lock_acquire(img, RBD_LOCK_MODE_EXCLUSIVE); },
               [keep](Napi::Env env) { return env.Undefined(); });
  }

  Napi::Value LockRelease(const Napi::CallbackInfo& info) {
    rbd_image_t img = Live(info.Env());
    auto keep = Keep();
    return Run(info.Env(), "rbd_lock_release", [img](std::string*) { return rbd_lock_release(img); },
               [keep](Napi::Env env) { return env.Undefined(); });
  }

  Napi::Value IsLockOwner(const Napi::CallbackInfo& info) {
    rbd_image_t img = Live(info.Env());
    auto owner = std::make_shared<int>(0);
    auto keep = Keep();
    return Run(info.Env(), "rbd_is_exclusive_lock_owner", [img, owner](std::string*) { return rbd_is_exclusive_lock_owner(img, owner.get()); },
               [owner, keep](Napi::Env env) { return Napi::Boolean::New(env, *owner != 0); });
  }

  Napi::Value LockOwners(const Napi::CallbackInfo& info) {
    rbd_image_t img = Live(info.Env());
    auto owners = std::make_shared<std::vector<std::string>>();
    auto keep = Keep();
    return Run(info.Env(), "rbd_lock_get_owners", [img, owners](std::string*) {
      rbd_lock_mode_t mode;
      char* list[16];
      size_t n = 16;
      int r = rbd_lock_get_owners(img, &mode, list, &n);
      if (r == -ENOENT) return 0;  // nobody holds it
      if (r < 0) return r;
      for (size_t i = 0; i < n; i++) owners->emplace_back(list[i]);
      rbd_lock_get_owners_cleanup(list, n);
      return 0;
    }, [owners, keep](Napi::Env env) {
      Napi::Array a = Napi::Array::New(env, owners->size());
      for (size_t i = 0; i < owners->size(); i++) a.Set(static_cast<uint32_t>(i), (*owners)[i]);
      return a;
    });
  }

  Napi::Value LockBreak(const Napi::CallbackInfo& info) {
    rbd_image_t img = Live(info.Env());
    auto owner = std::make_shared<std::string>(ArgStr(info, 0, "owner"));
    auto keep = Keep();
    return Run(info.Env(), "rbd_lock_break", [img, owner](std::string*) { return rbd_lock_break(img, RBD_LOCK_MODE_EXCLUSIVE, owner->c_str()); },
               [keep](Napi::Env env) { return env.Undefined(); });
  }

  // close() -> Promise: stops the header watch and closes the image off the loop. JS waits for its
  // operations first (and stops watching the fds); later calls fail with EBADF.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (s_.image == nullptr || closing_) {
      auto d = Napi::Promise::Deferred::New(env);
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    if (inflight_ != 0) throw ErrnoError(env, EBUSY, "rbd_close (operations in flight)");
    closing_ = true;
    auto st = std::make_shared<OpenState>(s_);
    auto keep = Keep();
    return Run(env, "rbd_close", [st](std::string*) {
      st->Release();
      return 0;
    }, [this, keep](Napi::Env env) {
      s_ = OpenState();
      return env.Undefined();
    });
  }

  Napi::ObjectReference cluster_;
  OpenState s_;
  std::unique_ptr<SideQueue> side_ = std::make_unique<SideQueue>();
  std::vector<std::unique_ptr<Op>> ops_;
  std::vector<Op*> freeOps_;
  std::vector<iovec> scratch_;
  bool closing_ = false;
  int64_t inflight_ = 0;
  Napi::Uint32Array ids_;
  Napi::Float64Array results_;
  Napi::Float64Array aux_;
  Napi::Reference<Napi::Uint32Array> idsRef_;
  Napi::Reference<Napi::Float64Array> resultsRef_;
  Napi::Reference<Napi::Float64Array> auxRef_;
};

Napi::Value Cluster::OpenImage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rados_t c = Live(env);
  std::string pool = ArgStr(info, 0, "pool");
  std::string ns = ArgStr(info, 1, "namespace");
  std::string name = ArgStr(info, 2, "name");
  uint64_t createSize = ArgInt64(info, 3, "createSize");
  bool readonly = info.Length() > 4 && info[4].ToBoolean();
  auto st = std::make_shared<OpenState>();
  auto keep = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Value()));
  return Run(env, "rados_ioctx_create", [c, pool, ns, name, createSize, readonly, st](std::string* what) {
    int r = rados_ioctx_create(c, pool.c_str(), &st->io);
    if (r < 0) return r;
    rados_ioctx_set_namespace(st->io, ns.c_str());
    *what = "rbd_open";
    r = readonly ? rbd_open_read_only(st->io, name.c_str(), &st->image, nullptr) : rbd_open(st->io, name.c_str(), &st->image, nullptr);
    if (r == -ENOENT && createSize > 0 && !readonly) {
      *what = "rbd_create4";
      rbd_image_options_t opts;
      rbd_image_options_create(&opts);
      r = rbd_create4(st->io, name.c_str(), createSize, opts);
      rbd_image_options_destroy(opts);
      if (r == -EEXIST) r = 0;  // another gateway made it first
      if (r >= 0) {
        *what = "rbd_open";
        r = rbd_open(st->io, name.c_str(), &st->image, nullptr);
      }
    }
    if (r >= 0) {
      *what = "eventfd";
      st->eventFd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      st->updateFd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      r = st->eventFd < 0 || st->updateFd < 0 ? -errno : 0;
    }
    if (r >= 0) {
      *what = "rbd_set_image_notification";
      r = rbd_set_image_notification(st->image, st->eventFd, EVENT_TYPE_EVENTFD);
    }
    if (r >= 0) {
      *what = "rbd_update_watch";
      r = rbd_update_watch(st->image, &st->watch, OnHeaderUpdate, reinterpret_cast<void*>(static_cast<intptr_t>(st->updateFd)));
      st->watching = r >= 0;
    }
    if (r >= 0) {
      // Not fatal: without it every read goes through librbd.
      auto d = std::make_shared<DirectReads>();
      std::string why;
      int dr = d->Open(c, ns, st->image, st->eventFd, &why);
      if (dr >= 0) st->direct = d;
      else st->directWhy = why + ": " + strerror(-dr);
    }
    if (r < 0) st->Release();
    return r;
  }, [st, keep](Napi::Env env) {
    Napi::Value img = CtorsOf(env).image.New({keep->Value(), Napi::External<OpenState>::New(env, st.get())});
    *st = OpenState();  // the image owns the handles now
    return img;
  });
}

// rbdConnect({ clientId, conf?, options: [[key, value], ...] }) -> Promise<RadosCluster>.
// conf absent: librados' default search (CEPH_CONF, /etc/ceph/ceph.conf ...). Options are
// rados_conf_set pairs applied after the file (keyring, rbd_cache, timeouts...).
Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  std::string client = "client." + (o.Get("clientId").IsString() ? o.Get("clientId").As<Napi::String>().Utf8Value() : std::string("admin"));
  bool hasConf = o.Get("conf").IsString();
  std::string conf = hasConf ? o.Get("conf").As<Napi::String>().Utf8Value() : std::string();
  std::vector<std::pair<std::string, std::string>> options;
  if (o.Get("options").IsArray()) {
    Napi::Array a = o.Get("options").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Array kv = a.Get(i).As<Napi::Array>();
      options.emplace_back(kv.Get(0u).ToString().Utf8Value(), kv.Get(1u).ToString().Utf8Value());
    }
  }
  auto handle = std::make_shared<rados_t>(nullptr);
  return Run(env, "rados_create2", [client, hasConf, conf, options, handle](std::string* what) {
    rados_t c;
    int r = rados_create2(&c, "ceph", client.c_str(), 0);
    if (r < 0) return r;
    *what = "rados_conf_read_file(" + (hasConf ? conf : std::string("default")) + ")";
    r = rados_conf_read_file(c, hasConf ? conf.c_str() : nullptr);
    for (size_t i = 0; r >= 0 && i < options.size(); i++) {
      *what = "rados_conf_set(" + options[i].first + ")";
      r = rados_conf_set(c, options[i].first.c_str(), options[i].second.c_str());
    }
    if (r >= 0) {
      *what = "rados_connect";
      r = rados_connect(c);
    }
    if (r < 0) {
      rados_shutdown(c);
      return r;
    }
    *handle = c;
    return 0;
  }, [handle](Napi::Env env) {
    return CtorsOf(env).cluster.New({Napi::External<std::remove_pointer_t<rados_t>>::New(env, static_cast<std::remove_pointer_t<rados_t>*>(*handle))});
  });
}

}  // namespace

Napi::Promise Run(Napi::Env env, const char* what, Work work, Done done) {
  auto* w = new RbdWorker(env, what, std::move(work), std::move(done));  // deletes itself
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

rados_t ClusterHandle(Napi::Value cluster) {
  return Cluster::Unwrap(cluster.As<Napi::Object>())->Live(cluster.Env());
}

}  // namespace rbd

void InitRbd(Napi::Env env, Napi::Object exports) {
  auto* ctors = new rbd::Ctors();
  ctors->cluster = Napi::Persistent(rbd::Cluster::Define(env));
  ctors->image = Napi::Persistent(rbd::Image::Define(env));
  env.SetInstanceData<rbd::Ctors>(ctors);
  exports.Set("rbdConnect", Napi::Function::New(env, rbd::Connect, "rbdConnect"));
  rbd::InitRados(env, exports);
  Napi::Object c = Napi::Object::New(env);
  c.Set("RBD_FEATURE_OBJECT_MAP", static_cast<double>(RBD_FEATURE_OBJECT_MAP));
  c.Set("RBD_FEATURE_FAST_DIFF", static_cast<double>(RBD_FEATURE_FAST_DIFF));
  c.Set("RBD_FEATURE_EXCLUSIVE_LOCK", static_cast<double>(RBD_FEATURE_EXCLUSIVE_LOCK));
  c.Set("RBD_FLAG_FAST_DIFF_INVALID", static_cast<double>(RBD_FLAG_FAST_DIFF_INVALID));
  c.Set("RBD_FLAG_OBJECT_MAP_INVALID", static_cast<double>(RBD_FLAG_OBJECT_MAP_INVALID));
  exports.Set("rbdConstants", c);
}

}  // namespace tsio

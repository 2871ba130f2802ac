// io_uring for the fd-backed stores (fileio, block), with raw syscalls: one
// Ring per thread that does I/O. JS prepares entries (readv/writev straight
// into the command's buffers, fsync, fallocate) during a loop pass and sends
// them with one submit() (one io_uring_enter); the loop watches the ring's
// own descriptor (uv_poll: readable while completions wait in the CQ, as
// libuv does with its ring; no eventfd to write and read back), and reap()
// drains them in batches into two typed arrays (ids, results), so one JS
// callback serves a whole batch.
// Nothing here is global: a second thread makes its own Ring.
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <limits.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common.h"

namespace tsio {
namespace {

// Most completions one reap() hands to JS; the JS side loops while it gets a full batch.
constexpr uint32_t kReapBatch = 256;

int SysSetup(unsigned entries, io_uring_params* p) {
  return static_cast<int>(syscall(__NR_io_uring_setup, entries, p));
}
int SysEnter(int fd, unsigned toSubmit, unsigned minComplete, unsigned flags) {
  return static_cast<int>(syscall(__NR_io_uring_enter, fd, toSubmit, minComplete, flags, nullptr, 0));
}

template <typename T>
T LoadAcquire(const T* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
template <typename T>
void StoreRelease(T* p, T v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

// new Ring(entries, onCompletions): io_uring_setup + the three mmaps and a
// uv_poll on the ring's descriptor. Throws an fs-style
// error (ENOSYS, EPERM when kernel.io_uring_disabled or a seccomp filter says
// no) so the caller can fall back.
class Ring : public Napi::ObjectWrap<Ring> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Ring", {
      InstanceMethod("readv", &Ring::Readv),
      InstanceMethod("writev", &Ring::Writev),
      InstanceMethod("fsync", &Ring::Fsync),
      InstanceMethod("fallocate", &Ring::Fallocate),
      InstanceMethod("submit", &Ring::Submit),
      InstanceMethod("reap", &Ring::Reap),
      InstanceMethod("hold", &Ring::Hold),
      InstanceMethod("close", &Ring::CloseJs),
      InstanceAccessor("sqEntries", &Ring::SqEntries, nullptr),
      InstanceAccessor("cqEntries", &Ring::CqEntries, nullptr),
      InstanceAccessor("pending", &Ring::PendingJs, nullptr),
      InstanceAccessor("ready", &Ring::ReadyJs, nullptr),
      InstanceAccessor("ids", &Ring::Ids, nullptr),
      InstanceAccessor("results", &Ring::Results, nullptr),
    });
  }

  explicit Ring(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Ring>(info) {
    Napi::Env env = info.Env();
    unsigned entries = static_cast<unsigned>(ArgInt64(info, 0, "entries"));
    if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "onCompletions must be a function");
    io_uring_params p;
    memset(&p, 0, sizeof p);
    // SUBMIT_ALL (5.18): one bad entry does not stop the rest of a batch. Older kernels refuse the flag.
    p.flags = IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL;
    ringFd_ = SysSetup(entries, &p);
    if (ringFd_ < 0 && errno == EINVAL) {
      memset(&p, 0, sizeof p);
      p.flags = IORING_SETUP_CLAMP;
      ringFd_ = SysSetup(entries, &p);
    }
    if (ringFd_ < 0) throw ErrnoError(env, errno, "io_uring_setup");
    try {
      Map(env, p);
      iovs_.resize(sqEntries_);
      ids_ = Napi::Persistent(Napi::Uint32Array::New(env, kReapBatch));
      results_ = Napi::Persistent(Napi::Float64Array::New(env, kReapBatch));
      idsPtr_ = ids_.Value().Data();
      resultsPtr_ = results_.Value().Data();
      callback_ = Napi::Persistent(info[1].As<Napi::Function>());
      poll_ = PollReadable(env, ringFd_, this, OnReadable);
      // The loop stays alive only while I/O is in flight (hold(true)).
      uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
      Ref();
    } catch (...) {
      Release();
      throw;
    }
  }

  ~Ring() override { Release(); }

 private:
  void Map(Napi::Env env, const io_uring_params& p) {
    sqEntries_ = p.sq_entries;
    cqEntries_ = p.cq_entries;
    sqLen_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cqLen_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    bool single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single) sqLen_ = cqLen_ = std::max(sqLen_, cqLen_);
    sqMap_ = mmap(nullptr, sqLen_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_, IORING_OFF_SQ_RING);
    if (sqMap_ == MAP_FAILED) {
      sqMap_ = nullptr;
      throw ErrnoError(env, errno, "mmap(io_uring sq)");
    }
    if (single) {
      cqMap_ = sqMap_;
    } else {
      cqMap_ = mmap(nullptr, cqLen_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_, IORING_OFF_CQ_RING);
      if (cqMap_ == MAP_FAILED) {
        cqMap_ = nullptr;
        throw ErrnoError(env, errno, "mmap(io_uring cq)");
      }
    }
    sqesLen_ = p.sq_entries * sizeof(io_uring_sqe);
    void* s = mmap(nullptr, sqesLen_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFd_, IORING_OFF_SQES);
    if (s == MAP_FAILED) throw ErrnoError(env, errno, "mmap(io_uring sqes)");
    sqes_ = static_cast<io_uring_sqe*>(s);
    auto* sq = static_cast<char*>(sqMap_);
    sqHead_ = reinterpret_cast<unsigned*>(sq + p.sq_off.head);
    sqTail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
    sqMask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
    sqArray_ = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
    auto* cq = static_cast<char*>(cqMap_);
    cqHead_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
    cqTail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
    cqMask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
    localTail_ = *sqTail_;
  }

  void Release() {
    StopPoll(poll_);
    if (sqes_ != nullptr) munmap(sqes_, sqesLen_);
    if (cqMap_ != nullptr && cqMap_ != sqMap_) munmap(cqMap_, cqLen_);
    if (sqMap_ != nullptr) munmap(sqMap_, sqLen_);
    sqes_ = nullptr;
    sqMap_ = cqMap_ = nullptr;
    if (ringFd_ >= 0) close(ringFd_);
    ringFd_ = -1;
  }

  void CheckOpen(Napi::Env env) {
    if (ringFd_ < 0) throw ErrnoError(env, EBADF, "io_uring");
  }

  // The next free entry, zeroed; throws EBUSY when every entry waits for submit() (the JS side submits first).
  void CheckRoom(Napi::Env env) {
    CheckOpen(env);
    if (localTail_ - LoadAcquire(sqHead_) >= sqEntries_) throw ErrnoError(env, EBUSY, "io_uring sq");
  }

  io_uring_sqe* NextSqe(Napi::Env env, uint32_t id, uint8_t op, int fd) {
    CheckRoom(env);
    unsigned idx = localTail_ & sqMask_;
    io_uring_sqe* e = &sqes_[idx];
    memset(e, 0, sizeof *e);
    e->opcode = op;
    e->fd = fd;
    e->user_data = id;
    sqArray_[idx] = idx;
    localTail_++;
    return e;
  }

  // readv(id, fd, bufs, offset) / writev(id, fd, bufs, offset): at most IOV_MAX buffers go in one
  // entry; the result counts bytes, so the JS side treats the rest as a short transfer.
  Napi::Value Rw(const Napi::CallbackInfo& info, uint8_t op) {
    Napi::Env env = info.Env();
    uint32_t id = static_cast<uint32_t>(ArgInt64(info, 0, "id"));
    int fd = ArgFd(info, 1);
    if (info.Length() < 3 || !info[2].IsArray()) throw Napi::TypeError::New(env, "bufs must be an array of Buffers");
    Napi::Array bufs = info[2].As<Napi::Array>();
    uint64_t offset = static_cast<uint64_t>(ArgInt64(info, 3, "offset"));
    CheckRoom(env);
    unsigned idx = localTail_ & sqMask_;
    std::vector<iovec>& iov = iovs_[idx];
    iov.clear();
    for (uint32_t i = 0, len = bufs.Length(); i < len && iov.size() < IOV_MAX; i++) {
      Napi::Value v = bufs[i];
      if (!v.IsBuffer()) throw Napi::TypeError::New(env, "bufs must be an array of Buffers");
      auto b = v.As<Napi::Buffer<uint8_t>>();
      if (b.Length() > 0) iov.push_back(iovec{b.Data(), b.Length()});
    }
    io_uring_sqe* e = NextSqe(env, id, op, fd);
    // The kernel copies the iovec array at submit (IORING_FEAT_SUBMIT_STABLE), so the slot is reused after.
    e->addr = reinterpret_cast<uint64_t>(iov.data());
    e->len = static_cast<uint32_t>(iov.size());
    e->off = offset;
    return env.Undefined();
  }
  Napi::Value Readv(const Napi::CallbackInfo& info) { return Rw(info, IORING_OP_READV); }
  Napi::Value Writev(const Napi::CallbackInfo& info) { return Rw(info, IORING_OP_WRITEV); }

  // fsync(id, fd, datasync)
  Napi::Value Fsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = static_cast<uint32_t>(ArgInt64(info, 0, "id"));
    int fd = ArgFd(info, 1);
    bool datasync = info.Length() > 2 && info[2].ToBoolean();
    io_uring_sqe* e = NextSqe(env, id, IORING_OP_FSYNC, fd);
    if (datasync) e->fsync_flags = IORING_FSYNC_DATASYNC;
    return env.Undefined();
  }

  // fallocate(id, fd, mode, offset, length)
  Napi::Value Fallocate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = static_cast<uint32_t>(ArgInt64(info, 0, "id"));
    int fd = ArgFd(info, 1);
    int mode = static_cast<int>(ArgInt64(info, 2, "mode"));
    uint64_t offset = static_cast<uint64_t>(ArgInt64(info, 3, "offset"));
    uint64_t length = static_cast<uint64_t>(ArgInt64(info, 4, "length"));
    io_uring_sqe* e = NextSqe(env, id, IORING_OP_FALLOCATE, fd);
    // io_uring's fallocate: the length travels in addr, the mode in len.
    e->addr = length;
    e->len = static_cast<uint32_t>(mode);
    e->off = offset;
    return env.Undefined();
  }

  // submit(): publishes what was prepared and sends it with one io_uring_enter. Returns how many the
  // kernel took, or -errno for EAGAIN/EBUSY (no memory for requests, completions overflowing: reap first).
  Napi::Value Submit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    StoreRelease(sqTail_, localTail_);
    unsigned n = localTail_ - LoadAcquire(sqHead_);
    if (n == 0) return Napi::Number::New(env, 0);
    int r;
    do r = SysEnter(ringFd_, n, 0, 0); while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN || errno == EBUSY) return Napi::Number::New(env, -errno);
      throw ErrnoError(env, errno, "io_uring_enter");
    }
    return Napi::Number::New(env, r);
  }

  // Entries prepared or published that the kernel has not consumed yet.
  Napi::Value PendingJs(const Napi::CallbackInfo& info) {
    if (ringFd_ < 0) return Napi::Number::New(info.Env(), 0);
    return Napi::Number::New(info.Env(), localTail_ - LoadAcquire(sqHead_));
  }

  // Completions waiting in the CQ (what a busy-poll looks at).
  Napi::Value ReadyJs(const Napi::CallbackInfo& info) {
    if (ringFd_ < 0) return Napi::Number::New(info.Env(), 0);
    return Napi::Number::New(info.Env(), LoadAcquire(cqTail_) - *cqHead_);
  }

  // reap(): moves up to kReapBatch completions into ids/results (res: bytes, or -errno); returns how many.
  Napi::Value Reap(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (ringFd_ < 0) return Napi::Number::New(env, 0);
    unsigned head = *cqHead_;
    unsigned tail = LoadAcquire(cqTail_);
    uint32_t n = 0;
    while (head != tail && n < kReapBatch) {
      const io_uring_cqe& c = cqes_[head & cqMask_];
      idsPtr_[n] = static_cast<uint32_t>(c.user_data);
      resultsPtr_[n] = c.res;
      n++;
      head++;
    }
    StoreRelease(cqHead_, head);
    return Napi::Number::New(env, n);
  }


  // hold(true): keeps the loop alive (I/O in flight); hold(false): lets the process exit.
  Napi::Value Hold(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) {
      auto* h = reinterpret_cast<uv_handle_t*>(poll_);
      if (info.Length() > 0 && info[0].ToBoolean()) uv_ref(h);
      else uv_unref(h);
    }
    return info.Env().Undefined();
  }

  Napi::Value CloseJs(const Napi::CallbackInfo& info) {
    if (ringFd_ >= 0) {
      Release();
      callback_.Reset();
      Unref();
    }
    return info.Env().Undefined();
  }

  Napi::Value SqEntries(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), sqEntries_); }
  Napi::Value CqEntries(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), cqEntries_); }
  Napi::Value Ids(const Napi::CallbackInfo&) { return ids_.Value(); }
  Napi::Value Results(const Napi::CallbackInfo&) { return results_.Value(); }

  // The ring's descriptor is readable: completions wait in the CQ; JS reaps them all (the poll is
  // level-triggered, so what it left would wake the loop again).
  static void OnReadable(uv_poll_t* h, int, int) {
    auto* self = static_cast<Ring*>(h->data);
    CallFromLoop(self->Env(), self->callback_);
  }

  int ringFd_ = -1;
  void* sqMap_ = nullptr;
  void* cqMap_ = nullptr;
  size_t sqLen_ = 0, cqLen_ = 0, sqesLen_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  unsigned *sqHead_ = nullptr, *sqTail_ = nullptr, *sqArray_ = nullptr;
  unsigned *cqHead_ = nullptr, *cqTail_ = nullptr;
  unsigned sqMask_ = 0, cqMask_ = 0, sqEntries_ = 0, cqEntries_ = 0;
  io_uring_cqe* cqes_ = nullptr;
  unsigned localTail_ = 0;
  std::vector<std::vector<iovec>> iovs_;
  Napi::Reference<Napi::Uint32Array> ids_;
  Napi::Reference<Napi::Float64Array> results_;
  uint32_t* idsPtr_ = nullptr;
  double* resultsPtr_ = nullptr;
  Napi::FunctionReference callback_;
  uv_poll_t* poll_ = nullptr;
};

}  // namespace

void InitUring(Napi::Env env, Napi::Object exports) {
  exports.Set("Ring", Ring::Define(env));
  exports.Set("uringReapBatch", Napi::Number::New(env, kReapBatch));
}

}  // namespace tsio

// Regular-file syscalls Node lacks: fallocate (punch hole / zero range),
// lseek SEEK_DATA/SEEK_HOLE (allocation map), posix_fadvise (prefetch), and
// preadv2/pwritev2 with RWF_NOWAIT (page-cache I/O done on the loop).
#include <fcntl.h>
#include <linux/falloc.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>

#include "common.h"

namespace tsio {
namespace {

// fallocate(fd, mode, offset, length): may allocate or free extents and wait
// on the journal, so it runs off the loop.
Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int mode = static_cast<int>(ArgInt64(info, 1, "mode"));
  off_t offset = ArgInt64(info, 2, "offset");
  off_t length = ArgInt64(info, 3, "length");
  return RunAsync(info.Env(), "fallocate", [=](int* err) -> int64_t {
    int r;
    do r = fallocate(fd, mode, offset, length); while (r < 0 && errno == EINTR);
    if (r < 0) *err = errno;
    return 0;
  });
}

// lseek SEEK_DATA/SEEK_HOLE: walking the extent tree can read metadata from
// disk, so these run off the loop too. ENXIO (no data/hole at or after the
// offset, or offset at/after EOF) resolves -1 instead of rejecting.
Napi::Value Seek(const Napi::CallbackInfo& info, int whence, const char* syscall) {
  int fd = ArgFd(info, 0);
  off_t offset = ArgInt64(info, 1, "offset");
  return RunAsync(info.Env(), syscall, [=](int* err) -> int64_t {
    off_t r = lseek(fd, offset, whence);
    if (r >= 0) return r;
    if (errno != ENXIO) *err = errno;
    return -1;
  }, Result::Number);
}

Napi::Value SeekData(const Napi::CallbackInfo& info) { return Seek(info, SEEK_DATA, "lseek(SEEK_DATA)"); }
Napi::Value SeekHole(const Napi::CallbackInfo& info) { return Seek(info, SEEK_HOLE, "lseek(SEEK_HOLE)"); }

// posix_fadvise(fd, offset, length, advice): WILLNEED starts readahead, which
// may block on metadata reads.
Napi::Value Fadvise(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  off_t offset = ArgInt64(info, 1, "offset");
  off_t length = ArgInt64(info, 2, "length");
  int advice = static_cast<int>(ArgInt64(info, 3, "advice"));
  return RunAsync(info.Env(), "posix_fadvise", [=](int* err) -> int64_t {
    int r = posix_fadvise(fd, offset, length, advice);  // returns the errno itself
    if (r != 0) *err = r;
    return 0;
  });
}

// What the *Nowait calls return instead of a byte count when the kernel would
// have had to wait (EAGAIN: pages not cached, dirty throttling, a lock) or the
// file cannot do RWF_NOWAIT for this direction at all (EOPNOTSUPP).
constexpr int64_t kWouldBlock = -1;
constexpr int64_t kUnsupported = -2;

// preadv2/pwritev2(fd, iov, offset, RWF_NOWAIT), synchronously on the loop:
// RWF_NOWAIT makes the kernel return what it can do from the page cache (a
// short count when only part is cached) and EAGAIN rather than sleep, so this
// costs the copy and the syscall, never a wait. At most IOV_MAX buffers go in
// one call; the caller handles the short count like any other.
Napi::Value Nowait(const Napi::CallbackInfo& info, bool write) {
  Napi::Env env = info.Env();
  const char* syscall = write ? "pwritev2" : "preadv2";
  int fd = ArgFd(info, 0);
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "bufs must be an array of Buffers");
  Napi::Array bufs = info[1].As<Napi::Array>();
  off_t offset = ArgInt64(info, 2, "offset");
  struct iovec iov[IOV_MAX];
  int n = 0;
  for (uint32_t i = 0, len = bufs.Length(); i < len && n < IOV_MAX; i++) {
    Napi::Value v = bufs[i];
    if (!v.IsBuffer()) throw Napi::TypeError::New(env, "bufs must be an array of Buffers");
    auto b = v.As<Napi::Buffer<uint8_t>>();
    if (b.Length() == 0) continue;
    iov[n++] = iovec{b.Data(), b.Length()};
  }
  if (n == 0) return Napi::Number::New(env, 0);
  ssize_t r;
  do {
    r = write ? pwritev2(fd, iov, n, offset, RWF_NOWAIT) : preadv2(fd, iov, n, offset, RWF_NOWAIT);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) return Napi::Number::New(env, static_cast<double>(r));
  if (errno == EAGAIN) return Napi::Number::New(env, kWouldBlock);
  if (errno == EOPNOTSUPP) return Napi::Number::New(env, kUnsupported);
  throw ErrnoError(env, errno, syscall);
}

Napi::Value PreadNowait(const Napi::CallbackInfo& info) { return Nowait(info, false); }
Napi::Value PwriteNowait(const Napi::CallbackInfo& info) { return Nowait(info, true); }

}  // namespace

void InitFileOps(Napi::Env env, Napi::Object exports) {
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("seekData", Napi::Function::New(env, SeekData, "seekData"));
  exports.Set("seekHole", Napi::Function::New(env, SeekHole, "seekHole"));
  exports.Set("fadvise", Napi::Function::New(env, Fadvise, "fadvise"));
  exports.Set("preadNowait", Napi::Function::New(env, PreadNowait, "preadNowait"));
  exports.Set("pwriteNowait", Napi::Function::New(env, PwriteNowait, "pwriteNowait"));

  Napi::Object c = Napi::Object::New(env);
  c.Set("FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE);
  c.Set("FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE);
  c.Set("FALLOC_FL_ZERO_RANGE", FALLOC_FL_ZERO_RANGE);
  c.Set("POSIX_FADV_NORMAL", POSIX_FADV_NORMAL);
  c.Set("POSIX_FADV_RANDOM", POSIX_FADV_RANDOM);
  c.Set("POSIX_FADV_SEQUENTIAL", POSIX_FADV_SEQUENTIAL);
  c.Set("POSIX_FADV_WILLNEED", POSIX_FADV_WILLNEED);
  c.Set("POSIX_FADV_DONTNEED", POSIX_FADV_DONTNEED);
  c.Set("NOWAIT_WOULD_BLOCK", static_cast<double>(kWouldBlock));
  c.Set("NOWAIT_UNSUPPORTED", static_cast<double>(kUnsupported));
  exports.Set("fileConstants", c);
}

}  // namespace tsio

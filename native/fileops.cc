// Regular-file syscalls Node lacks: fallocate (punch hole / zero range),
// lseek SEEK_DATA/SEEK_HOLE (allocation map), posix_fadvise (prefetch).
#include <fcntl.h>
#include <linux/falloc.h>
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

}  // namespace

void InitFileOps(Napi::Env env, Napi::Object exports) {
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("seekData", Napi::Function::New(env, SeekData, "seekData"));
  exports.Set("seekHole", Napi::Function::New(env, SeekHole, "seekHole"));
  exports.Set("fadvise", Napi::Function::New(env, Fadvise, "fadvise"));

  Napi::Object c = Napi::Object::New(env);
  c.Set("FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE);
  c.Set("FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE);
  c.Set("FALLOC_FL_ZERO_RANGE", FALLOC_FL_ZERO_RANGE);
  c.Set("POSIX_FADV_NORMAL", POSIX_FADV_NORMAL);
  c.Set("POSIX_FADV_SEQUENTIAL", POSIX_FADV_SEQUENTIAL);
  c.Set("POSIX_FADV_WILLNEED", POSIX_FADV_WILLNEED);
  c.Set("POSIX_FADV_DONTNEED", POSIX_FADV_DONTNEED);
  exports.Set("fileConstants", c);
}

}  // namespace tsio

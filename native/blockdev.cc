// Block-device ioctls: geometry (BLKGETSIZE64, BLKSSZGET, BLKPBSZGET, BLKIOMIN,
// BLKIOOPT) and the range operations BLKDISCARD, BLKSECDISCARD, BLKZEROOUT.
#include <linux/fs.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>

#include "common.h"

namespace tsio {
namespace {

// Geometry ioctls only read fields of the in-memory gendisk: cheap, so sync.
Napi::Value BlockDeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t size = 0;
  int logical = 0;
  unsigned int physical = 0, ioMin = 0, ioOpt = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) < 0) throw ErrnoError(env, errno, "ioctl(BLKGETSIZE64)");
  if (ioctl(fd, BLKSSZGET, &logical) < 0) throw ErrnoError(env, errno, "ioctl(BLKSSZGET)");
  if (ioctl(fd, BLKPBSZGET, &physical) < 0) throw ErrnoError(env, errno, "ioctl(BLKPBSZGET)");
  // Hints only: a zero (or a failure on an odd driver) means "no preference".
  if (ioctl(fd, BLKIOMIN, &ioMin) < 0) ioMin = 0;
  if (ioctl(fd, BLKIOOPT, &ioOpt) < 0) ioOpt = 0;
  Napi::Object o = Napi::Object::New(env);
  o.Set("size", Napi::Number::New(env, static_cast<double>(size)));
  o.Set("logicalBlockSize", Napi::Number::New(env, logical));
  o.Set("physicalBlockSize", Napi::Number::New(env, physical));
  o.Set("minimumIoSize", Napi::Number::New(env, ioMin));
  o.Set("optimalIoSize", Napi::Number::New(env, ioOpt));
  return o;
}

// Range ioctls take {start, length} in bytes and can run for a long time
// (the device may zero or trim gigabytes), so they run off the loop.
Napi::Value RangeIoctl(const Napi::CallbackInfo& info, unsigned long request, const char* syscall) {
  int fd = ArgFd(info, 0);
  uint64_t offset = ArgInt64(info, 1, "offset");
  uint64_t length = ArgInt64(info, 2, "length");
  return RunAsync(info.Env(), syscall, [=](int* err) -> int64_t {
    uint64_t range[2] = {offset, length};
    int r;
    do r = ioctl(fd, request, range); while (r < 0 && errno == EINTR);
    if (r < 0) *err = errno;
    return 0;
  });
}

Napi::Value BlkDiscard(const Napi::CallbackInfo& info) { return RangeIoctl(info, BLKDISCARD, "ioctl(BLKDISCARD)"); }
Napi::Value BlkSecDiscard(const Napi::CallbackInfo& info) { return RangeIoctl(info, BLKSECDISCARD, "ioctl(BLKSECDISCARD)"); }
Napi::Value BlkZeroOut(const Napi::CallbackInfo& info) { return RangeIoctl(info, BLKZEROOUT, "ioctl(BLKZEROOUT)"); }

}  // namespace

void InitBlockDev(Napi::Env env, Napi::Object exports) {
  exports.Set("blockDeviceInfo", Napi::Function::New(env, BlockDeviceInfo, "blockDeviceInfo"));
  exports.Set("blkDiscard", Napi::Function::New(env, BlkDiscard, "blkDiscard"));
  exports.Set("blkSecDiscard", Napi::Function::New(env, BlkSecDiscard, "blkSecDiscard"));
  exports.Set("blkZeroOut", Napi::Function::New(env, BlkZeroOut, "blkZeroOut"));
}

}  // namespace tsio

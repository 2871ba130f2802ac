// Socket options Node does not expose. SO_RCVLOWAT lets the iSCSI fabric
// sleep until a burst of solicited data has arrived instead of waking for
// every segment (see fabrics/iscsi/connection.ts).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "common.h"

namespace tsio {
namespace {

// setRcvLowat(fd, bytes): epoll reports the socket readable once this many
// bytes are queued (the kernel caps it at half the receive buffer's limit, and
// still wakes early under memory pressure or a nearly closed window).
Napi::Value SetRcvLowat(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int64_t bytes = ArgInt64(info, 1, "bytes");
  if (bytes < 1 || bytes > INT32_MAX) throw Napi::RangeError::New(info.Env(), "bytes must be 1..2^31-1");
  int v = static_cast<int>(bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v) < 0) throw ErrnoError(info.Env(), errno, "setsockopt(SO_RCVLOWAT)");
  return info.Env().Undefined();
}

// threadId(): the calling thread's kernel id (/proc/PID/task/TID), so the
// daemon can say which thread serves what and tests can read its CPU time.
Napi::Value ThreadId(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(syscall(SYS_gettid)));
}

// dupFd(fd): a close-on-exec duplicate of fd. An iSCSI connection handed to
// another thread's loop travels as this: the loop that accepted it closes its
// own handle (and fd) while the socket lives on under the duplicate.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) throw ErrnoError(info.Env(), errno, "fcntl(F_DUPFD_CLOEXEC)");
  return Napi::Number::New(info.Env(), dup);
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("setRcvLowat", Napi::Function::New(env, SetRcvLowat, "setRcvLowat"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("threadId", Napi::Function::New(env, ThreadId, "threadId"));
}

}  // namespace tsio

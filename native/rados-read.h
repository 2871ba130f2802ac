// Reads of an RBD image straight from its data objects in RADOS, bypassing
// librbd (native/rados-read.cc), for images where that returns what librbd
// would: no parent data to fall back to, default striping, no journal. The
// image (native/rbd.cc) owns one and reports its completions in the same
// poll() batches as librbd's.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace tsio {
namespace rbd {

struct DirectOp;

class DirectReads {
 public:
  DirectReads();
  // On a pool thread, at open: the data pool's ioctx (same namespace) and the object layout. A
  // failure leaves it unusable (reads stay on librbd) and returns why.
  // eventFd: the image's notification eventfd, bumped when finished reads wait to be drained.
  int Open(rados_t cluster, const std::string& ns, rbd_image_t image, int eventFd, std::string* why);
  bool Ready() const { return io_ != nullptr; }
  // Destroys the ioctx; nothing may be in flight (the image checks). Not thread-safe with Read.
  void Close();
  ~DirectReads();

  // Splits [off, off + sum(iov)) at object boundaries into RADOS reads into the buffers.
  // Always accepted: a failure completes the operation with -errno through Drain.
  void Read(uint32_t id, const iovec* iov, int n, uint64_t off);
  // Moves up to max finished operations into ids/results (bytes read or -errno).
  int Drain(uint32_t* ids, double* results, double* aux, int max);

  // Called from a librados thread when the last object read of op is done.
  void Finished(DirectOp* op);

  // Whether the image may be read directly now (on a pool thread: features, parent, striping):
  // "" when it may, else the reason.
  static std::string Unsafe(rbd_image_t image, uint64_t features, uint64_t objectSize);

 private:
  DirectOp* Take();

  rados_ioctx_t io_ = nullptr;
  std::string prefix_;
  uint64_t objectSize_ = 0;
  int eventFd_ = -1;
  // Op records, reused (loop thread only).
  std::vector<std::unique_ptr<DirectOp>> all_;
  std::vector<DirectOp*> free_;
  // Finished, not yet drained (librados threads push, the loop drains).
  std::mutex mu_;
  std::vector<DirectOp*> done_;
  std::vector<DirectOp*> draining_;
};

}  // namespace rbd
}  // namespace tsio

// SCSI pass-through: one SG_IO ioctl (sg v3 interface, 'S') per command, on
// the libuv pool. The data buffers are the command's own (a Buffer array used
// in place as an sg_iovec list); the worker holds references to them until
// the ioctl has returned.
#include <scsi/sg.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"

namespace tsio {
namespace {

// Data direction as src/core/opcodes.ts DataDir numbers it.
constexpr int kDirNone = 0, kDirIn = 1, kDirOut = 2;
// The kernel writes at most SCSI_SENSE_BUFFERSIZE (96) bytes; 252 is SPC's maximum.
constexpr unsigned kSenseMax = 252;
constexpr size_t kCdbMax = 260;

class SgIoWorker : public Napi::AsyncWorker {
 public:
  SgIoWorker(Napi::Env env, int fd, const uint8_t* cdb, size_t cdbLen, int dir, uint32_t length,
             std::vector<sg_iovec_t> iov, Napi::Value sgl, uint32_t timeoutMs)
      : Napi::AsyncWorker(env, "ioctl(SG_IO)"),
        deferred_(Napi::Promise::Deferred::New(env)),
        fd_(fd),
        cdbLen_(cdbLen),
        dir_(dir),
        length_(length),
        iov_(std::move(iov)),
        timeoutMs_(timeoutMs) {
    std::memcpy(cdb_, cdb, cdbLen);
    // Keeps the buffers (and so their memory) alive while the ioctl runs.
    if (sgl.IsObject()) sglRef_ = Napi::Persistent(sgl.As<Napi::Object>());
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    std::memset(&hdr_, 0, sizeof hdr_);
    hdr_.interface_id = 'S';
    hdr_.cmdp = cdb_;
    hdr_.cmd_len = static_cast<unsigned char>(cdbLen_);
    hdr_.sbp = sense_;
    hdr_.mx_sb_len = kSenseMax;
    hdr_.timeout = timeoutMs_;
    if (dir_ == kDirNone || length_ == 0) {
      hdr_.dxfer_direction = SG_DXFER_NONE;
    } else {
      hdr_.dxfer_direction = dir_ == kDirIn ? SG_DXFER_FROM_DEV : SG_DXFER_TO_DEV;
      hdr_.dxfer_len = length_;
      if (iov_.size() == 1) {
        hdr_.dxferp = iov_[0].iov_base;
      } else {
        hdr_.iovec_count = static_cast<unsigned short>(iov_.size());
        hdr_.dxferp = iov_.data();
      }
    }
    int r;
    do r = ioctl(fd_, SG_IO, &hdr_); while (r < 0 && errno == EINTR);
    if (r < 0) err_ = errno;
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      deferred_.Reject(ErrnoError(env, err_, "ioctl(SG_IO)").Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("status", Napi::Number::New(env, hdr_.status));
    o.Set("hostStatus", Napi::Number::New(env, hdr_.host_status));
    o.Set("driverStatus", Napi::Number::New(env, hdr_.driver_status));
    o.Set("resid", Napi::Number::New(env, hdr_.resid));
    o.Set("duration", Napi::Number::New(env, hdr_.duration));
    if (hdr_.sb_len_wr > 0) {
      o.Set("sense", Napi::Buffer<uint8_t>::Copy(env, sense_, hdr_.sb_len_wr));
    }
    deferred_.Resolve(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference sglRef_;
  int fd_;
  uint8_t cdb_[kCdbMax];
  size_t cdbLen_;
  int dir_;
  uint32_t length_;
  std::vector<sg_iovec_t> iov_;
  uint32_t timeoutMs_;
  uint8_t sense_[kSenseMax];
  sg_io_hdr_t hdr_;
  int err_ = 0;
};

// sgIo(fd, cdb, dir, sgl, length, timeoutMs): dir 0 none, 1 in, 2 out; sgl an
// array of Buffers holding at least length bytes (only length move).
Napi::Value SgIo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Buffer<uint8_t> cdb = ArgBuffer(info, 1, "cdb");
  if (cdb.Length() < 6 || cdb.Length() > kCdbMax) throw Napi::RangeError::New(env, "cdb must be 6..260 bytes");
  int64_t dir = ArgInt64(info, 2, "dir");
  if (dir != kDirNone && dir != kDirIn && dir != kDirOut) throw Napi::RangeError::New(env, "dir must be 0, 1 or 2");
  int64_t length = ArgInt64(info, 4, "length");
  if (length > UINT32_MAX) throw Napi::RangeError::New(env, "length out of range");
  int64_t timeoutMs = ArgInt64(info, 5, "timeoutMs");
  if (timeoutMs > UINT32_MAX) throw Napi::RangeError::New(env, "timeoutMs out of range");

  std::vector<sg_iovec_t> iov;
  Napi::Value sglValue = info[3];
  if (dir != kDirNone && length > 0) {
    if (!sglValue.IsArray()) throw Napi::TypeError::New(env, "sgl must be an array of Buffers");
    Napi::Array sgl = sglValue.As<Napi::Array>();
    int64_t left = length;
    for (uint32_t i = 0; i < sgl.Length() && left > 0; i++) {
      Napi::Value v = sgl[i];
      if (!v.IsBuffer()) throw Napi::TypeError::New(env, "sgl must be an array of Buffers");
      auto b = v.As<Napi::Buffer<uint8_t>>();
      size_t n = b.Length() < static_cast<size_t>(left) ? b.Length() : static_cast<size_t>(left);
      if (n == 0) continue;
      iov.push_back(sg_iovec_t{b.Data(), n});
      left -= static_cast<int64_t>(n);
    }
    if (left > 0) throw Napi::RangeError::New(env, "sgl holds fewer bytes than length");
    if (iov.size() > UINT16_MAX) throw Napi::RangeError::New(env, "sgl has too many segments");
  }
  auto* w = new SgIoWorker(env, fd, cdb.Data(), cdb.Length(), static_cast<int>(dir), static_cast<uint32_t>(length),
                           std::move(iov), sglValue, static_cast<uint32_t>(timeoutMs));  // deletes itself
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace

void InitSgIo(Napi::Env env, Napi::Object exports) {
  exports.Set("sgIo", Napi::Function::New(env, SgIo, "sgIo"));
}

}  // namespace tsio

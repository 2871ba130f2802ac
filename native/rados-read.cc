// Reads of an RBD image straight from its data objects (see rados-read.h).
//
// An image with default striping keeps byte b of the image in object
// <block name prefix>.<b / object size, 16 hex digits> at b % object size, in
// the data pool, in the image's namespace. A read is split at object
// boundaries; each object's part is one RADOS read (one buffer) or one read
// op with a read per buffer, straight into the command's buffers. A missing
// object (never written, or removed by a discard) reads as zeros, and so does
// whatever lies past a short object's end: what librbd returns for them.
//
// Completions: librados calls back on its finisher thread once per object;
// the last part of a read queues the record and bumps the image's eventfd
// only when the queue was empty, so the loop's poll() (native/rbd.cc) drains
// a whole batch per wake-up alongside librbd's. Records and their piece
// arrays are reused: no allocation of ours per read once warm.
#include "rados-read.h"

#include <inttypes.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tsio {
namespace rbd {

namespace {

struct Piece {
  char* buf;
  size_t len;
  uint64_t objOff;
  size_t got;
  int rval;
};

struct Part {
  DirectOp* op;
  rados_completion_t c;
  rados_read_op_t rop;
  uint64_t objNo;
  uint32_t first;
  uint32_t count;
};

void Zero(Piece* p, size_t from) {
  if (from < p->len) memset(p->buf + from, 0, p->len - from);
}

}  // namespace

struct DirectOp {
  DirectReads* owner = nullptr;
  uint32_t id = 0;
  uint64_t bytes = 0;
  std::atomic<int> left{0};
  std::atomic<int> err{0};
  std::vector<Piece> pieces;
  std::vector<Part> parts;

  void Fail(int r) {
    int none = 0;
    err.compare_exchange_strong(none, r);
  }
  // Drops one part (or several); the last one hands the record back.
  void Done(int n) {
    if (left.fetch_sub(n, std::memory_order_acq_rel) == n) owner->Finished(this);
  }
};

namespace {

// On a librados thread: fills the holes of one object's part, then counts it done.
void OnPart(rados_completion_t c, void* arg) {
  Part* p = static_cast<Part*>(arg);
  DirectOp* op = p->op;
  int r = rados_aio_get_return_value(c);
  Piece* pc = &op->pieces[p->first];
  if (r == -ENOENT) {
    for (uint32_t i = 0; i < p->count; i++) Zero(&pc[i], 0);
  } else if (r < 0) {
    op->Fail(r);
  } else if (p->rop == nullptr) {
    Zero(pc, static_cast<size_t>(r));  // a plain read returns the bytes it read
  } else {
    for (uint32_t i = 0; i < p->count; i++) {
      if (pc[i].rval < 0) op->Fail(pc[i].rval);
      else Zero(&pc[i], pc[i].got);
    }
  }
  op->Done(1);
}

}  // namespace

int DirectReads::Open(rados_t cluster, const std::string& ns, rbd_image_t image, int eventFd, std::string* why) {
  char prefix[128];
  int r = rbd_get_block_name_prefix(image, prefix, sizeof prefix);
  if (r < 0) {
    *why = "rbd_get_block_name_prefix";
    return r;
  }
  rbd_image_info_t st;
  r = rbd_stat(image, &st, sizeof st);
  if (r < 0) {
    *why = "rbd_stat";
    return r;
  }
  int64_t pool = rbd_get_data_pool_id(image);
  if (pool < 0) {
    *why = "rbd_get_data_pool_id";
    return static_cast<int>(pool);
  }
  rados_ioctx_t io;
  r = rados_ioctx_create2(cluster, pool, &io);
  if (r < 0) {
    *why = "rados_ioctx_create2 (data pool)";
    return r;
  }
  rados_ioctx_set_namespace(io, ns.c_str());
  io_ = io;
  prefix_ = prefix;
  objectSize_ = st.obj_size;
  eventFd_ = eventFd;
  return 0;
}

void DirectReads::Close() {
  if (io_ != nullptr) rados_ioctx_destroy(io_);
  io_ = nullptr;
}

DirectReads::DirectReads() = default;
DirectReads::~DirectReads() { Close(); }

std::string DirectReads::Unsafe(rbd_image_t image, uint64_t features, uint64_t objectSize) {
  if (features & RBD_FEATURE_JOURNALING) return "journaling";
  if (features & RBD_FEATURE_MIGRATING) return "being migrated";
  if (features & RBD_FEATURE_DIRTY_CACHE) return "a persistent write-back cache";
  uint8_t old = 0;
  if (rbd_get_old_format(image, &old) < 0 || old) return "image format 1";
  uint64_t unit = 0, count = 0;
  if (rbd_get_stripe_unit(image, &unit) < 0 || rbd_get_stripe_count(image, &count) < 0) return "striping unknown";
  if (unit != objectSize || count != 1) return "striped (stripe unit " + std::to_string(unit) + ", count " + std::to_string(count) + ")";
  uint64_t overlap = 0;
  int r = rbd_get_overlap(image, &overlap);
  if (r >= 0 && overlap > 0) return "a clone (parent overlap " + std::to_string(overlap) + " bytes)";
  if (r < 0 && r != -ENOENT) return "parent unknown";
  return "";
}

DirectOp* DirectReads::Take() {
  if (free_.empty()) {
    all_.push_back(std::make_unique<DirectOp>());
    all_.back()->owner = this;
    return all_.back().get();
  }
  DirectOp* op = free_.back();
  free_.pop_back();
  return op;
}

void DirectReads::Read(uint32_t id, const iovec* iov, int n, uint64_t off) {
  DirectOp* op = Take();
  op->id = id;
  op->err.store(0, std::memory_order_relaxed);
  op->pieces.clear();
  op->parts.clear();
  uint64_t pos = off;
  for (int i = 0; i < n; i++) {
    char* b = static_cast<char*>(iov[i].iov_base);
    size_t len = iov[i].iov_len;
    while (len > 0) {
      uint64_t objNo = pos / objectSize_;
      uint64_t objOff = pos % objectSize_;
      size_t take = len < objectSize_ - objOff ? len : static_cast<size_t>(objectSize_ - objOff);
      if (op->parts.empty() || op->parts.back().objNo != objNo) {
        op->parts.push_back(Part{op, nullptr, nullptr, objNo, static_cast<uint32_t>(op->pieces.size()), 0});
      }
      op->pieces.push_back(Piece{b, take, objOff, 0, 0});
      op->parts.back().count++;
      b += take;
      len -= take;
      pos += take;
    }
  }
  op->bytes = pos - off;
  int nparts = static_cast<int>(op->parts.size());
  // One count per part plus one for this submission, so no part finishing early can complete it.
  op->left.store(nparts + 1, std::memory_order_relaxed);
  char oid[160];
  int sent = 0;
  for (Part& p : op->parts) {
    snprintf(oid, sizeof oid, "%s.%016" PRIx64, prefix_.c_str(), p.objNo);
    int r = rados_aio_create_completion2(&p, OnPart, &p.c);
    if (r >= 0) {
      Piece* pc = &op->pieces[p.first];
      if (p.count == 1) {
        r = rados_aio_read(io_, oid, p.c, pc->buf, pc->len, pc->objOff);
      } else {
        p.rop = rados_create_read_op();
        for (uint32_t i = 0; i < p.count; i++) rados_read_op_read(p.rop, pc[i].objOff, pc[i].len, pc[i].buf, &pc[i].got, &pc[i].rval);
        r = rados_aio_read_op_operate(p.rop, io_, p.c, oid, 0);
      }
    }
    if (r < 0) {
      op->Fail(r);
      break;
    }
    sent++;
  }
  op->Done(1 + nparts - sent);
}

void DirectReads::Finished(DirectOp* op) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake = done_.empty();
    done_.push_back(op);
  }
  if (wake) {
    uint64_t one = 1;
    ssize_t r = write(eventFd_, &one, sizeof one);
    (void)r;  // EAGAIN: a wake-up is pending already
  }
}

int DirectReads::Drain(uint32_t* ids, double* results, double* aux, int max) {
  if (max <= 0) return 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_.empty()) return 0;
    if (static_cast<int>(done_.size()) <= max) {
      draining_.swap(done_);
    } else {
      draining_.assign(done_.end() - max, done_.end());
      done_.resize(done_.size() - max);
    }
  }
  int n = static_cast<int>(draining_.size());
  for (int i = 0; i < n; i++) {
    DirectOp* op = draining_[i];
    int err = op->err.load(std::memory_order_acquire);
    ids[i] = op->id;
    results[i] = err < 0 ? static_cast<double>(err) : static_cast<double>(op->bytes);
    aux[i] = 0;
    for (Part& p : op->parts) {
      if (p.c != nullptr) rados_aio_release(p.c);
      if (p.rop != nullptr) rados_release_read_op(p.rop);
    }
    free_.push_back(op);
  }
  draining_.clear();
  return n;
}

}  // namespace rbd
}  // namespace tsio

// What the vhost-user fabric needs and Node cannot do: a unix socket that
// passes file descriptors (SCM_RIGHTS), guest memory mapped from those fds,
// eventfds for kicks and calls, and a poll watcher on raw fds.
//
// Design: the protocol and the virtqueues are TypeScript. Guest memory is
// exposed as one external Buffer per mapped region (never a copy, never a
// Buffer per request); the fabric reads rings through it and hands subarray
// views to the core. Every guest access is then bounds-checked by the Buffer
// itself, so a hostile guest cannot make tsiod touch memory outside its
// regions; and an unmap detaches the ArrayBuffer first, so stale views read
// as empty instead of faulting.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "vhost_user.h"

namespace tsio {
namespace {

using namespace vhost;

sockaddr_un UnixAddress(Napi::Env env, const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) throw Napi::RangeError::New(env, "socket path too long: " + path);
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// Optional non-negative integer argument i; -1 (as for chown) when absent, undefined or -1.
int64_t OptInt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || info[i].IsUndefined()) return -1;
  if (info[i].IsNumber() && info[i].As<Napi::Number>().DoubleValue() == -1) return -1;
  return ArgInt64(info, i, name);
}

// unixListen(path, mode?, gid?) -> fd: a non-blocking listening socket. A
// stale socket file left by a previous daemon is replaced; any other file is
// not. With mode/gid the file gets exactly those permission bits and group,
// and is never wider on the way: fchmod before bind makes bind create it with
// at most the owner's bits (Linux takes a socket file's mode from the socket
// inode, less the umask), then chown and chmod set the asked group and mode,
// and only then does listen() let anyone connect.
Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int64_t mode = OptInt(info, 1, "mode");
  int64_t gid = OptInt(info, 2, "gid");
  if (mode > 07777) throw Napi::RangeError::New(env, "mode out of range");
  if (gid >= static_cast<int64_t>(UINT32_MAX)) throw Napi::RangeError::New(env, "gid out of range");
  sockaddr_un a = UnixAddress(env, path);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
    // A socket someone still accepts on belongs to a live daemon: never steal it.
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (probe >= 0) close(probe);
    if (live) throw ErrnoError(env, EADDRINUSE, ("bind " + path).c_str());
    unlink(path.c_str());
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  if ((mode >= 0 && fchmod(fd, static_cast<mode_t>(mode & 0700)) < 0) || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "bind");
  }
  const char* step = nullptr;
  if (gid >= 0 && chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(gid)) < 0) step = "chown";
  else if (mode >= 0 && chmod(path.c_str(), static_cast<mode_t>(mode)) < 0) step = "chmod";
  else if (listen(fd, 8) < 0) step = "listen";
  if (step) {
    int e = errno;
    close(fd);
    unlink(path.c_str());
    throw ErrnoError(env, e, (std::string(step) + " " + path).c_str());
  }
  return Napi::Number::New(env, fd);
}

// groupId(name) -> gid, or -1 when the system knows no such group (NSS, so
// LDAP or sssd groups count too).
Napi::Value GroupId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "name");
  std::vector<char> buf(1024);
  group g;
  group* found = nullptr;
  int r;
  while ((r = getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (1u << 20)) buf.resize(buf.size() * 2);
  if (r != 0) throw ErrnoError(env, r, "getgrnam_r");
  return Napi::Number::New(env, found ? static_cast<double>(found->gr_gid) : -1);
}

// unixConnect(path) -> fd: a blocking client socket (the frontend tool's side).
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sockaddr_un a = UnixAddress(env, ArgString(info, 0, "path"));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "connect");
  }
  return Napi::Number::New(env, fd);
}

// unixDatagramSend(path, data): one datagram to a unix socket, from this
// process (sd_notify's protocol: the service manager attributes the message
// to the main PID only when that PID sends it). A path starting with '@' is
// in the abstract namespace.
Napi::Value UnixDatagramSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  if (info.Length() < 2 || !info[1].IsBuffer()) throw Napi::TypeError::New(env, "data must be a Buffer");
  auto data = info[1].As<Napi::Buffer<uint8_t>>();
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path) throw Napi::RangeError::New(env, "bad socket path: " + path);
  memcpy(a.sun_path, path.data(), path.size());
  if (path[0] == '@') a.sun_path[0] = 0;
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, errno, "socket");
  ssize_t n = sendto(fd, data.Data(), data.Length(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&a), len);
  int e = errno;
  close(fd);
  if (n < 0) throw ErrnoError(env, e, "sendto");
  return env.Undefined();
}

// peerCredentials(fd) -> { pid, uid, gid }: who is at the other end of a
// connected unix socket (SO_PEERCRED), for the control socket's audit log.
Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ucred c{};
  socklen_t len = sizeof c;
  if (getsockopt(ArgFd(info, 0), SOL_SOCKET, SO_PEERCRED, &c, &len) < 0) throw ErrnoError(env, errno, "getsockopt(SO_PEERCRED)");
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, c.pid));
  o.Set("uid", Napi::Number::New(env, c.uid));
  o.Set("gid", Napi::Number::New(env, c.gid));
  return o;
}

// unixAccept(fd) -> fd, or -1 when no connection is pending. The accepted
// socket is non-blocking.
Napi::Value UnixAccept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = accept4(ArgFd(info, 0), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Napi::Number::New(env, -1);
    throw ErrnoError(env, errno, "accept4");
  }
  return Napi::Number::New(env, fd);
}

// Reads exactly n bytes, waiting up to kPayloadTimeoutMs for a slow peer.
// Returns false on EOF before the first byte.
bool ReadFull(Napi::Env env, int fd, uint8_t* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, p + got, n - got, 0);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) throw Napi::Error::New(env, "vhost-user peer closed the socket in the middle of a message");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw ErrnoError(env, errno, "recv");
    pollfd pfd{fd, POLLIN, 0};
    if (poll(&pfd, 1, kPayloadTimeoutMs) == 0) throw Napi::Error::New(env, "vhost-user message payload never arrived");
  }
  return true;
}

// recvMessage(fd) -> { data: Buffer (header + payload), fds: number[] },
// null when nothing is ready, or { data: empty } at EOF. The header comes
// with recvmsg (the fds ride on its first byte); the payload follows with
// plain reads, so two messages are never merged.
Napi::Value RecvMessage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint8_t header[kHeaderSize];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  iovec iov{header, kHeaderSize};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t r;
  do r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC); while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    if (errno == ECONNRESET) r = 0;
    else throw ErrnoError(env, errno, "recvmsg");
  }
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    int* p = reinterpret_cast<int*>(CMSG_DATA(c));
    for (size_t i = 0; i < n; i++) fds.push_back(p[i]);
  }
  auto closeFds = [&fds]() {
    for (int f : fds) close(f);
  };
  Napi::Object out = Napi::Object::New(env);
  if (r == 0) {
    closeFds();
    out.Set("data", Napi::Buffer<uint8_t>::New(env, 0));
    out.Set("fds", Napi::Array::New(env, 0));
    return out;
  }
  try {
    if (static_cast<size_t>(r) < kHeaderSize) ReadFull(env, fd, header + r, kHeaderSize - r);
    uint32_t size;
    memcpy(&size, header + kHeaderSizeOffset, sizeof size);
    if (size > kMaxPayload) throw Napi::RangeError::New(env, "vhost-user message payload of " + std::to_string(size) + " bytes is over the limit");
    Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::New(env, kHeaderSize + size);
    memcpy(data.Data(), header, kHeaderSize);
    if (size > 0) ReadFull(env, fd, data.Data() + kHeaderSize, size);
    Napi::Array arr = Napi::Array::New(env, fds.size());
    for (size_t i = 0; i < fds.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds[i]));
    out.Set("data", data);
    out.Set("fds", arr);
    return out;
  } catch (...) {
    closeFds();
    throw;
  }
}

// sendMessage(fd, buf, fds?): one sendmsg carrying the fds, then the rest if
// the socket took only part of it.
Napi::Value SendMessage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  Napi::Buffer<uint8_t> buf = ArgBuffer(info, 1, "buf");
  std::vector<int> fds;
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array a = info[2].As<Napi::Array>();
    if (a.Length() > static_cast<uint32_t>(kMaxFds)) throw Napi::RangeError::New(env, "at most 8 fds per message");
    for (uint32_t i = 0; i < a.Length(); i++) fds.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  }
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  size_t sent = 0;
  bool first = true;
  while (sent < buf.Length()) {
    iovec iov{buf.Data() + sent, buf.Length() - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (first && !fds.empty()) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t r = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd pfd{fd, POLLOUT, 0};
        if (poll(&pfd, 1, kPayloadTimeoutMs) == 0) throw Napi::Error::New(env, "vhost-user peer does not read its socket");
        continue;
      }
      throw ErrnoError(env, errno, "sendmsg");
    }
    sent += static_cast<size_t>(r);
    first = false;
  }
  return env.Undefined();
}

// A mapping handed to JS as an external Buffer. unmap() detaches the Buffer
// and unmaps at once (a guest's memory must not outlive its connection until
// some GC); the finalizer unmaps only what was never unmapped explicitly.
struct Mapping {
  void* addr;
  size_t length;
  bool unmapped;
};

// mmapFd(fd, length, offset?) -> Buffer over a MAP_SHARED read-write mapping.
Napi::Value MmapFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int64_t length = ArgInt64(info, 1, "length");
  int64_t offset = info.Length() > 2 ? ArgInt64(info, 2, "offset") : 0;
  // Node 20 Buffers stop at 4 GiB; bigger regions would need splitting.
  if (length <= 0 || length > (int64_t{1} << 32)) throw Napi::RangeError::New(env, "mapping length must be 1 byte to 4 GiB");
  void* p = mmap(nullptr, static_cast<size_t>(length), PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (p == MAP_FAILED) throw ErrnoError(env, errno, "mmap");
  auto* m = new Mapping{p, static_cast<size_t>(length), false};
  Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(
      env, static_cast<uint8_t*>(p), m->length,
      [](Napi::Env, uint8_t*, Mapping* m) {
        if (!m->unmapped) munmap(m->addr, m->length);
        delete m;
      },
      m);
  // Remember the Mapping on the ArrayBuffer so unmap() can find it.
  buf.ArrayBuffer().Set("__mapping", Napi::External<Mapping>::New(env, m));
  return buf;
}

// unmap(buf): detaches the whole ArrayBuffer (every view becomes empty), then munmaps.
Napi::Value Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> buf = ArgBuffer(info, 0, "buf");
  Napi::ArrayBuffer ab = buf.ArrayBuffer();
  Napi::Value ext = ab.Get("__mapping");
  if (!ext.IsExternal()) throw Napi::TypeError::New(env, "not a mapping made by mmapFd");
  Mapping* m = ext.As<Napi::External<Mapping>>().Data();
  if (m->unmapped) return env.Undefined();
  ab.Detach();
  munmap(m->addr, m->length);
  m->unmapped = true;
  return env.Undefined();
}

// memfdCreate(name, size) -> fd of a sealed-size-free anonymous shared file.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "name");
  int64_t size = ArgInt64(info, 1, "size");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, errno, "memfd_create");
  if (ftruncate(fd, size) < 0) {
    int e = errno;
    close(fd);
    throw ErrnoError(env, e, "ftruncate");
  }
  return Napi::Number::New(env, fd);
}

// eventfd() -> a non-blocking eventfd.
Napi::Value EventFd(const Napi::CallbackInfo& info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw ErrnoError(info.Env(), errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

// eventfdWrite(fd): adds 1 (a kick or a call). A full counter means the
// peer has plenty of pending wake-ups already, so EAGAIN is fine.
Napi::Value EventFdWrite(const Napi::CallbackInfo& info) {
  uint64_t one = 1;
  ssize_t r;
  do r = write(ArgFd(info, 0), &one, sizeof one); while (r < 0 && errno == EINTR);
  if (r < 0 && errno != EAGAIN) throw ErrnoError(info.Env(), errno, "write(eventfd)");
  return info.Env().Undefined();
}

// eventfdRead(fd) -> the counter (0 when none was pending).
Napi::Value EventFdRead(const Napi::CallbackInfo& info) {
  uint64_t v = 0;
  ssize_t r;
  do r = read(ArgFd(info, 0), &v, sizeof v); while (r < 0 && errno == EINTR);
  if (r < 0 && errno != EAGAIN) throw ErrnoError(info.Env(), errno, "read(eventfd)");
  return Napi::Number::New(info.Env(), r < 0 ? 0 : static_cast<double>(v));
}

// fence(): a full barrier. The split ring's EVENT_IDX protocol needs one
// between publishing avail_event and re-reading avail->idx (store-load).
Napi::Value Fence(const Napi::CallbackInfo& info) {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return info.Env().Undefined();
}

// FdWatcher: calls back JS when a raw fd becomes readable (uv_poll). Used for
// the listening socket, each connection and each kick/call eventfd.
class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher", {InstanceMethod("stop", &FdWatcher::Stop)});
  }

  // new FdWatcher(fd, callback)
  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    int fd = ArgFd(info, 0);
    if (info.Length() < 2 || !info[1].IsFunction()) throw Napi::TypeError::New(env, "callback must be a function");
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    handle_ = PollReadable(env, fd, this, OnReadable);
    Ref();  // alive while polling, whatever JS holds
  }

  ~FdWatcher() override { Close(); }

 private:
  static void OnReadable(uv_poll_t* h, int status, int) {
    auto* self = static_cast<FdWatcher*>(h->data);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    try {
      self->callback_.MakeCallback(env.Global(), {Napi::Number::New(env, status)});
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }

  void Close() {
    StopPoll(handle_);
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) {
      Close();
      callback_.Reset();
      Unref();
    }
    return info.Env().Undefined();
  }

  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
};

}  // namespace

void InitVhostUser(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("groupId", Napi::Function::New(env, GroupId, "groupId"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("unixDatagramSend", Napi::Function::New(env, UnixDatagramSend, "unixDatagramSend"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials, "peerCredentials"));
  exports.Set("unixAccept", Napi::Function::New(env, UnixAccept, "unixAccept"));
  exports.Set("recvMessage", Napi::Function::New(env, RecvMessage, "recvMessage"));
  exports.Set("sendMessage", Napi::Function::New(env, SendMessage, "sendMessage"));
  exports.Set("mmapFd", Napi::Function::New(env, MmapFd, "mmapFd"));
  exports.Set("unmap", Napi::Function::New(env, Unmap, "unmap"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("eventfd", Napi::Function::New(env, EventFd, "eventfd"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventFdWrite, "eventfdWrite"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventFdRead, "eventfdRead"));
  exports.Set("fence", Napi::Function::New(env, Fence, "fence"));
  exports.Set("FdWatcher", FdWatcher::Define(env));
}

}  // namespace tsio

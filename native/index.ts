// The native addon (build/Release/tsio.node, from native/*.cc): only the
// syscalls Node cannot make. Everything that may block runs on the libuv pool
// and returns a promise; failures are Errors shaped like Node's fs errors
// (.code 'EIO', .errno -5, .syscall), so sense.ts fromIoError maps them.

import os from 'node:os';
import path from 'node:path';

export interface BlockDeviceInfo {
  /** Capacity in bytes (BLKGETSIZE64). */
  size: number;
  /** Logical block size (BLKSSZGET). */
  logicalBlockSize: number;
  /** Physical block size (BLKPBSZGET). */
  physicalBlockSize: number;
  /** Minimum/optimal I/O size hints (BLKIOMIN/BLKIOOPT); 0 when the device gives none. */
  minimumIoSize: number;
  optimalIoSize: number;
}

/** What one SG_IO ioctl returned (sg_io_hdr_t's outputs). */
export interface SgIoResult {
  /** SCSI status byte from the device. */
  status: number;
  /** Host adapter status (DID_*): non-zero when the command did not reach the device or was cut short. */
  hostStatus: number;
  /** Driver status (DRIVER_SENSE when sense is valid, DRIVER_TIMEOUT...). */
  driverStatus: number;
  /** Bytes of the data length that did not move. */
  resid: number;
  /** Milliseconds the command took. */
  duration: number;
  /** Sense data the device returned, as it returned it. */
  sense?: Buffer;
}

interface FileConstants {
  FALLOC_FL_KEEP_SIZE: number;
  FALLOC_FL_PUNCH_HOLE: number;
  FALLOC_FL_ZERO_RANGE: number;
  POSIX_FADV_NORMAL: number;
  POSIX_FADV_RANDOM: number;
  POSIX_FADV_SEQUENTIAL: number;
  POSIX_FADV_WILLNEED: number;
  POSIX_FADV_DONTNEED: number;
  NOWAIT_WOULD_BLOCK: number;
  NOWAIT_UNSUPPORTED: number;
}

interface Addon {
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;
  seekData(fd: number, offset: number): Promise<number>;
  seekHole(fd: number, offset: number): Promise<number>;
  fadvise(fd: number, offset: number, length: number, advice: number): Promise<void>;
  preadNowait(fd: number, bufs: readonly Buffer[], offset: number): number;
  pwriteNowait(fd: number, bufs: readonly Buffer[], offset: number): number;
  fileConstants: FileConstants;
  blockDeviceInfo(fd: number): BlockDeviceInfo;
  blkDiscard(fd: number, offset: number, length: number): Promise<void>;
  blkSecDiscard(fd: number, offset: number, length: number): Promise<void>;
  blkZeroOut(fd: number, offset: number, length: number): Promise<void>;
  allocAligned(size: number, alignment: number): Buffer;
  isAligned(buf: Buffer, alignment: number): boolean;
  sgIo(fd: number, cdb: Buffer, dir: number, sgl: readonly Buffer[] | undefined, length: number, timeoutMs: number): Promise<SgIoResult>;
  crc32c(buf: Uint8Array, prev?: number): number;
  crc32cHardware: boolean;
  setRcvLowat(fd: number, bytes: number): void;
  threadId(): number;
  dupFd(fd: number): number;
  unixListen(path: string, mode?: number, gid?: number): number;
  groupId(name: string): number;
  unixConnect(path: string): number;
  /** One datagram to a unix socket (sd_notify); '@' starts an abstract name. */
  unixDatagramSend(path: string, data: Buffer): void;
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
  unixAccept(fd: number): number;
  recvMessage(fd: number): { data: Buffer; fds: number[] } | null;
  sendMessage(fd: number, buf: Buffer, fds?: number[]): void;
  mmapFd(fd: number, length: number, offset?: number): Buffer;
  unmap(buf: Buffer): void;
  memfdCreate(name: string, size: number): number;
  eventfd(): number;
  eventfdWrite(fd: number): void;
  eventfdRead(fd: number): number;
  fence(): void;
  FdWatcher: new (fd: number, onReadable: (status: number) => void) => FdWatcher;
  rbdConnect(opts: RadosConnectOptions): Promise<RadosCluster>;
  rbdConstants: RbdConstants;
  radosObjects(cluster: RadosCluster, pool: string, namespace: string): Promise<RadosObjects>;
  Ring: new (entries: number, onCompletions: () => void) => Ring;
  uringReapBatch: number;
  singlePollWaits(): boolean;
  AttrWatch: new (path: string, onEvent: () => void) => { close(): void };
}

/**
 * One io_uring (native/uring.cc), for the thread that made it. readv/writev/fsync/fallocate prepare
 * an entry tagged with id (buffers are used in place: keep them referenced until the id is reaped);
 * submit() sends everything prepared with one io_uring_enter and returns how many the kernel took
 * (-EAGAIN/-EBUSY: reap first). onCompletions runs when completions arrive; reap() moves up to
 * uringReapBatch of them into ids/results (bytes, or -errno) and returns how many. The ring keeps
 * the loop alive only while hold(true).
 */
export interface Ring {
  readonly sqEntries: number;
  readonly cqEntries: number;
  /** Prepared entries the kernel has not taken yet. */
  readonly pending: number;
  /** Completions waiting in the completion queue. */
  readonly ready: number;
  readonly ids: Uint32Array;
  readonly results: Float64Array;
  readv(id: number, fd: number, bufs: readonly Buffer[], offset: number): void;
  writev(id: number, fd: number, bufs: readonly Buffer[], offset: number): void;
  fsync(id: number, fd: number, datasync: boolean): void;
  fallocate(id: number, fd: number, mode: number, offset: number, length: number): void;
  submit(): number;
  reap(): number;
  hold(on: boolean): void;
  close(): void;
}

/** Calls back when a raw fd is readable (uv_poll) until stopped. */
export interface FdWatcher {
  stop(): void;
}

/** How to reach a Ceph cluster (native/rbd.cc rbdConnect). */
export interface RadosConnectOptions {
  /** The client's id: 'admin' for client.admin. */
  clientId: string;
  /** A ceph.conf; absent: librados' default search ($CEPH_CONF, /etc/ceph/ceph.conf). */
  conf?: string;
  /** rados_conf_set pairs applied after the file (keyring, rbd_cache, timeouts...). */
  options: [string, string][];
}

/** One librados connection (rados_t). Calls that wait on the cluster run off the loop. */
export interface RadosCluster {
  /**
   * Opens pool/namespace/name; createSize > 0 creates a missing image of that many bytes (an existing
   * image is opened as it is). Rejects with an fs-style error naming the librbd call (ENOENT, EACCES...).
   */
  openImage(pool: string, namespace: string, name: string, createSize: number, readonly: boolean): Promise<RbdImage>;
  fsid(): string;
  /** The client's global id (client.<id> in lock owners and `ceph -s`). */
  instanceId(): number;
  /** This client's address as the OSDs see it (what blocklisting fences). */
  addresses(): string;
  /** Fences a client address for expireSeconds. */
  blocklistAdd(address: string, expireSeconds: number): Promise<void>;
  /** Closes the connection; close its images first. */
  shutdown(): Promise<void>;
}

/**
 * One open RBD image. Data calls submit librbd aio on the caller's buffers and return at once;
 * the JS side keeps the buffers referenced until poll() reports the operation id. poll() drains
 * finished operations into ids/results/aux (result: bytes or -errno; aux: the image offset of a
 * COMPARE AND WRITE miscompare) and returns how many; watch `fd` to know when to call it.
 * `updateFd` counts header changes (a resize by another client). Submission failures throw.
 */
export interface RbdImage {
  readonly fd: number;
  readonly updateFd: number;
  readonly ids: Uint32Array;
  readonly results: Float64Array;
  readonly aux: Float64Array;
  readv(id: number, bufs: readonly Buffer[], offset: number): void;
  /** readv from the data objects with RADOS (librbd bypassed); only while stat().direct is "". */
  readDirect(id: number, bufs: readonly Buffer[], offset: number): void;
  writev(id: number, bufs: readonly Buffer[], offset: number): void;
  discard(id: number, offset: number, length: number): void;
  writeZeroes(id: number, offset: number, length: number): void;
  writeSame(id: number, offset: number, length: number, pattern: Buffer): void;
  compareAndWrite(id: number, offset: number, compare: Buffer, data: Buffer): void;
  flush(id: number): void;
  poll(): number;
  /** direct: "" when reads may bypass librbd (no parent data, default striping, no journal), else why not. */
  stat(): Promise<{ size: number; objectSize: number; features: number; flags: number; direct: string }>;
  /** Grows the image (a smaller size is refused with EINVAL). */
  resize(size: number): Promise<void>;
  /** (offset, length) pairs holding data within the range; wholeObject: object granularity from the object map. */
  allocated(offset: number, length: number, wholeObject: boolean): Promise<Float64Array>;
  /** The managed exclusive lock: acquire, release, who holds it, break (blocklists the holder). */
  lockAcquire(): Promise<void>;
  lockRelease(): Promise<void>;
  isLockOwner(): Promise<boolean>;
  lockOwners(): Promise<string[]>;
  lockBreak(owner: string): Promise<void>;
  /** Closes the image; every operation must have been polled first (else EBUSY). */
  close(): Promise<void>;
}

/**
 * Small RADOS objects in one pool/namespace (native/rados.cc), all aio: calls submit and return at
 * once. Watch `fd`, then poll() reports up to ids.length finished operations in ids/results
 * (-errno, or bytes for a read)/versions (the object's version after it; a watch's cookie);
 * take(id) hands over a read's or getXattr's Buffer, a notify's acks and timeouts (client
 * gids). events() gives the notifications the watches received, and watch errors.
 */
export interface RadosObjects {
  readonly fd: number;
  readonly ids: Uint32Array;
  readonly results: Float64Array;
  readonly versions: Float64Array;
  read(id: number, oid: string): void;
  /** Replaces the object if still at version (0: if it does not exist); stale: ERANGE, EOVERFLOW or EEXIST. */
  swap(id: number, oid: string, version: number, data: Buffer): void;
  setXattr(id: number, oid: string, name: string, value: string): void;
  getXattr(id: number, oid: string, name: string): void;
  watch(id: number, oid: string, timeoutSeconds: number): void;
  unwatch(id: number, oid: string, cookie: number): void;
  notify(id: number, oid: string, data: Buffer, timeoutMs: number): void;
  ack(oid: string, notifyId: bigint, cookie: number): void;
  poll(): number;
  take(id: number): Buffer | { acks: string[]; timeouts: string[] } | undefined;
  events(): ({ cookie: number; notifyId: bigint; notifier: string; data: Buffer } | { cookie: number; error: number })[];
  /** Unwatch and poll everything first (else EBUSY). */
  close(): Promise<void>;
}

export interface RbdConstants {
  RBD_FEATURE_OBJECT_MAP: number;
  RBD_FEATURE_FAST_DIFF: number;
  RBD_FEATURE_EXCLUSIVE_LOCK: number;
  RBD_FLAG_FAST_DIFF_INVALID: number;
  RBD_FLAG_OBJECT_MAP_INVALID: number;
}

// dist/native/index.js -> <project>/build/Release/tsio.node
const ADDON_PATH = path.join(__dirname, '..', '..', 'build', 'Release', 'tsio.node');

function load(): Addon {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(ADDON_PATH) as Addon;
  } catch (e) {
    const err = new Error(`tsio native addon not loadable at ${ADDON_PATH} (build it with npm run install / node-gyp rebuild): ${(e as Error).message}`);
    (err as NodeJS.ErrnoException).code = 'ERR_TSIO_NATIVE';
    throw err;
  }
}

const addon = load();

export const constants: Readonly<FileConstants> = Object.freeze({ ...addon.fileConstants });

/** fallocate modes the backstores use; both keep the file size. */
export const FALLOC_PUNCH_HOLE = constants.FALLOC_FL_PUNCH_HOLE | constants.FALLOC_FL_KEEP_SIZE;
export const FALLOC_ZERO_RANGE = constants.FALLOC_FL_ZERO_RANGE | constants.FALLOC_FL_KEEP_SIZE;

/** fallocate(2): with FALLOC_PUNCH_HOLE or FALLOC_ZERO_RANGE (or raw FALLOC_FL_* flags). */
export const fallocate: Addon['fallocate'] = addon.fallocate;
/** lseek(SEEK_DATA): the first data byte at or after offset, or -1 when there is none (ENXIO). */
export const seekData: Addon['seekData'] = addon.seekData;
/** lseek(SEEK_HOLE): the first hole byte at or after offset (EOF counts as a hole), or -1 past EOF. */
export const seekHole: Addon['seekHole'] = addon.seekHole;
/** posix_fadvise(2), e.g. constants.POSIX_FADV_WILLNEED for PRE-FETCH. */
export const fadvise: Addon['fadvise'] = addon.fadvise;

/**
 * preadv2/pwritev2 with RWF_NOWAIT, synchronously: only what the page cache
 * can serve without sleeping. Returns bytes done (may be short, 0 at EOF for a
 * read), NOWAIT_WOULD_BLOCK when the kernel said EAGAIN (nothing done), or
 * NOWAIT_UNSUPPORTED when the file cannot do RWF_NOWAIT (EOPNOTSUPP); throws
 * fs-style errors otherwise. Never on O_DIRECT descriptors (the device may be
 * waited for).
 */
export const preadNowait: Addon['preadNowait'] = addon.preadNowait;
export const pwriteNowait: Addon['pwriteNowait'] = addon.pwriteNowait;
export const NOWAIT_WOULD_BLOCK: number = constants.NOWAIT_WOULD_BLOCK;
export const NOWAIT_UNSUPPORTED: number = constants.NOWAIT_UNSUPPORTED;

/** Geometry of an open block device, from its ioctls. Sync: it only reads kernel memory. */
export const blockDeviceInfo: Addon['blockDeviceInfo'] = addon.blockDeviceInfo;
/** BLKDISCARD / BLKSECDISCARD / BLKZEROOUT over [offset, offset+length), bytes, logical-block aligned. */
export const blkDiscard: Addon['blkDiscard'] = addon.blkDiscard;
export const blkSecDiscard: Addon['blkSecDiscard'] = addon.blkSecDiscard;
export const blkZeroOut: Addon['blkZeroOut'] = addon.blkZeroOut;

/** A zeroed Buffer whose memory starts on an alignment boundary (posix_memalign), for O_DIRECT. */
export const allocAligned: Addon['allocAligned'] = addon.allocAligned;
/** Whether buf's first byte sits on an alignment boundary (its length is the caller's to check). */
export const isAligned: Addon['isAligned'] = addon.isAligned;

/**
 * SG_IO on an sg or SCSI block device node: sends cdb with dir 0 (none), 1
 * (data in) or 2 (data out) moving length bytes through sgl's buffers in place
 * (an sg_iovec list). Rejects only when the ioctl itself fails (ENOTTY: not a
 * SCSI device); the device's own errors come back as status and sense.
 */
export const sgIo: Addon['sgIo'] = addon.sgIo;
/** CRC32C of buf (iSCSI digests); pass an earlier result as prev to continue over several buffers. */
export const crc32c: Addon['crc32c'] = addon.crc32c;
/** Whether crc32c runs on the CPU's SSE4.2 instruction rather than a table. */
export const crc32cHardware: boolean = addon.crc32cHardware;
/** setsockopt(SO_RCVLOWAT): the socket polls readable once this many bytes are queued (1: any). */
export const setRcvLowat: Addon['setRcvLowat'] = addon.setRcvLowat;
/** gettid(2): the calling thread's kernel id. */
export const threadId: Addon['threadId'] = addon.threadId;
/** A close-on-exec duplicate of fd (a socket handed to another thread outlives the handle that accepted it). */
export const dupFd: Addon['dupFd'] = addon.dupFd;
// vhost-user (native/vhost_user.cc): unix sockets with fd passing, guest memory, eventfds.
/**
 * A non-blocking listening unix socket at path (a stale socket file there is replaced); with mode
 * and gid the file has exactly those permission bits and group before anyone can connect, and is
 * never wider on the way.
 */
export const unixListen: Addon['unixListen'] = addon.unixListen;
/** getgrnam(3): the group's gid, or -1 when there is no such group. */
export const groupId: Addon['groupId'] = addon.groupId;
/** A blocking client connection to a unix socket. */
export const unixConnect: Addon['unixConnect'] = addon.unixConnect;
/** One datagram to a unix socket, sent by this process (sd_notify). */
export const unixDatagramSend: Addon['unixDatagramSend'] = addon.unixDatagramSend;
/** SO_PEERCRED of a connected unix socket: the peer's pid, uid and gid. */
export const peerCredentials: Addon['peerCredentials'] = addon.peerCredentials;
/** accept4 on a listening socket: the new non-blocking fd, or -1 when none is pending. */
export const unixAccept: Addon['unixAccept'] = addon.unixAccept;
/** One vhost-user message (header + payload) with the fds it carried; null when none is ready; empty data at EOF. */
export const recvMessage: Addon['recvMessage'] = addon.recvMessage;
/** Sends a whole message, the fds riding with its first byte. */
export const sendMessage: Addon['sendMessage'] = addon.sendMessage;
/** A MAP_SHARED read-write mapping of an fd as a Buffer (up to 4 GiB). */
export const mmapFd: Addon['mmapFd'] = addon.mmapFd;
/** Detaches a mapping's Buffer (every view becomes empty) and unmaps it. */
export const unmap: Addon['unmap'] = addon.unmap;
/** memfd_create + ftruncate: shared memory a peer can map. */
export const memfdCreate: Addon['memfdCreate'] = addon.memfdCreate;
/** A non-blocking eventfd; eventfdWrite adds 1, eventfdRead takes the counter (0 when none). */
export const eventfd: Addon['eventfd'] = addon.eventfd;
export const eventfdWrite: Addon['eventfdWrite'] = addon.eventfdWrite;
export const eventfdRead: Addon['eventfdRead'] = addon.eventfdRead;
/** A full memory barrier (shared-memory rings). */
export const fence: Addon['fence'] = addon.fence;
export const FdWatcher: Addon['FdWatcher'] = addon.FdWatcher;
/** An io_uring whose descriptor this thread's loop watches for completions; throws (ENOSYS, EPERM...) where there is none. */
export const Ring: Addon['Ring'] = addon.Ring;
/** Most completions one Ring.reap() returns. */
export const uringReapBatch: number = addon.uringReapBatch;
/**
 * One epoll_pwait per sleep of this thread's loop instead of two: clears libuv's idle-time metrics,
 * which Node turns on (performance.eventLoopUtilization() then reads no idle time). Returns whether they were on.
 */
export const singlePollWaits: Addon['singlePollWaits'] = addon.singlePollWaits;
/**
 * inotify on one file's metadata (IN_ATTRIB: link count; IN_DELETE_SELF, IN_MOVE_SELF), not its writes:
 * onEvent runs on the loop, which it does not keep alive. Throws where inotify is missing or out of watches.
 */
export const AttrWatch: Addon['AttrWatch'] = addon.AttrWatch;
// Ceph (native/rbd.cc): librados connections and librbd images.
/** Connects to a Ceph cluster off the loop. */
export const rbdConnect: Addon['rbdConnect'] = addon.rbdConnect;
export const rbdConstants: Readonly<RbdConstants> = Object.freeze({ ...addon.rbdConstants });
/** An ioctx of its own on pool/namespace for shared gateway state (made off the loop). */
export const radosObjects: Addon['radosObjects'] = addon.radosObjects;

/** An fs-style error for a condition found in JS (e.g. EROFS on a read-only store). */
export function errnoError(code: keyof typeof os.constants.errno, syscall: string, detail?: string): NodeJS.ErrnoException {
  const e: NodeJS.ErrnoException = new Error(`${code}: ${detail ? detail + ', ' : ''}${syscall}`);
  e.code = code;
  e.errno = -os.constants.errno[code];
  e.syscall = syscall;
  return e;
}

/** The file system or device does not support the operation (Linux names errno 95 both ways). */
export function isUnsupported(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EOPNOTSUPP' || code === 'ENOTSUP';
}

// What the fd-backed stores (fileio, block) share: vectored I/O straight into
// and out of the command's Sgl, O_DIRECT bounce buffering, FUA through an
// O_DSYNC twin descriptor, and chunked pattern/zero writes. Buffered reads and
// writes first take what the page cache can do at once (RWF_NOWAIT, on the
// loop: a pool round trip costs several times a cached pread); the rest, and
// everything else, goes through libuv's pool (fs.readv/fs.writev callbacks):
// nothing here waits for a device on the event loop. Given a RingQueue
// (io_uring, ring-io.ts), what would go to the pool (reads the page cache
// misses, writes, syncs, fallocate) goes through the ring instead. Files on tmpfs, which
// has no RWF_NOWAIT, are memory like rd_mcp's and are read and written on the
// loop outright.

import fs from 'node:fs';

import type { Sgl } from '../src/core/sgl';
import { sglCopyIn, sglCopyOut, sglSlice } from '../src/core/sgl';
import { NOWAIT_UNSUPPORTED, allocAligned, errnoError, fallocate, isAligned, preadNowait, pwriteNowait } from '../native';
import { type RingQueue, transferError } from './ring-io';

/** Chunk size for bounce buffers and whole-store overwrites: big enough to stream, small enough to interleave. */
export const IO_CHUNK = 1 << 20;
/** Memory alignment for O_DIRECT: a page satisfies every device's DMA alignment. */
export const DIRECT_IO_ALIGN = 4096;
/** Free bounce buffers kept per store; more are allocated under load and dropped after. */
const BOUNCE_POOL_KEEP = 4;
/**
 * Small commands (up to this size) bounce through buffers of this size, kept by the SMALL_KEEP: a
 * queue of 4 KiB commands must not cost a 1 MiB mmap and munmap each (iSCSI's Data-Out is
 * page-aligned only where it leads a read, rx-slab.ts: small PDUs that arrive together mostly bounce).
 */
const SMALL_BOUNCE = 64 << 10;
const SMALL_KEEP = 64;

/**
 * O_DIRECT commands of this thread's fd-backed stores, by whether they moved
 * the command's own memory or bounced through an aligned copy (metrics.ts
 * shows them): Data-Out the fabric laid out aligned needs no bounce.
 */
export const directIoCounts = { readsDirect: 0, readsBounced: 0, writesDirect: 0, writesBounced: 0, bouncedBytes: 0 };

export function preadv(fd: number, bufs: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.readv(fd, bufs, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

export function pwritev(fd: number, bufs: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.writev(fd, bufs, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

export function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export function ftruncate(fd: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, length, (err) => (err ? reject(err) : resolve())));
}

export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

/** The list with its first n bytes dropped (views, no copies). */
function advance(bufs: Buffer[], n: number): Buffer[] {
  let i = 0;
  while (i < bufs.length && n >= bufs[i].length) n -= bufs[i++].length;
  const rest = bufs.slice(i);
  if (n > 0) rest[0] = rest[0].subarray(n);
  return rest;
}

/**
 * What is left of bufs after a read of n bytes. Reads may come back short
 * (IOV_MAX segments per call, the 2 GiB syscall cap), so callers loop; at end
 * of file (n = 0) the rest reads as zeros, as an unwritten block would.
 */
function afterRead(bufs: Buffer[], n: number, what?: string): Buffer[] {
  if (n > 0) return advance(bufs, n);
  // A device has no unwritten tail: its end moved under us (a deleted disk reads as size 0), never zeros.
  if (what !== undefined) throw errnoError('ENXIO', 'preadv', `${what}: nothing to read there (the device shrank or was removed)`);
  for (const b of bufs) b.fill(0);
  return [];
}

/** What is left of bufs after a write of n bytes (libuv loops over short writes; this guards the rest). */
function afterWrite(bufs: Buffer[], n: number): Buffer[] {
  if (n === 0) throw errnoError('EIO', 'pwritev', 'device accepted no bytes');
  return advance(bufs, n);
}

type VectorIo = (fd: number, bufs: Buffer[], position: number) => Promise<number>;

/** Fills bufs from position, through the pool (or the given preadv). device: end of file is an error (its name), not zeros. */
export async function readFull(fd: number, bufs: Buffer[], position: number, device?: string, pv: VectorIo = preadv): Promise<void> {
  for (let n = 0; bufs.length > 0; position += n) bufs = afterRead(bufs, (n = await pv(fd, bufs, position)), device);
}

/** Writes all of bufs at position, through the pool (or the given pwritev). */
export async function writeFull(fd: number, bufs: Buffer[], position: number, pv: VectorIo = pwritev): Promise<void> {
  for (let n = 0; bufs.length > 0; position += n) bufs = afterWrite(bufs, (n = await pv(fd, bufs, position)));
}

/** readFull on the calling thread, for files whose pages are memory (tmpfs). */
function readFullSync(fd: number, bufs: Buffer[], position: number): void {
  for (let n = 0; bufs.length > 0; position += n) bufs = afterRead(bufs, (n = fs.readvSync(fd, bufs, position)));
}

/** writeFull on the calling thread, for files whose pages are memory (tmpfs). */
function writeFullSync(fd: number, bufs: Buffer[], position: number): void {
  for (let n = 0; bufs.length > 0; position += n) bufs = afterWrite(bufs, (n = fs.writevSync(fd, bufs, position)));
}

/** statfs f_type of tmpfs (shmem: /dev/shm, /run, memfd). */
const TMPFS_MAGIC = 0x01021994;

/**
 * Whether fd is a regular file on tmpfs: its pages are memory like a RAM
 * store's, never waiting for a device. (A device node on devtmpfs is not.)
 */
function onTmpfs(fd: number): boolean {
  try {
    return fs.fstatSync(fd).isFile() && fs.statfsSync(`/proc/self/fd/${fd}`).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}

/** Aligned buffers for O_DIRECT, reused across commands: chunk-sized ones, and small ones for small commands. */
export class BouncePool {
  private readonly free: Buffer[] = [];
  private readonly small: Buffer[] = [];
  constructor(readonly chunk: number, readonly align: number) {}

  /** A buffer for a transfer of length bytes (a whole chunk when not given or large). */
  acquire(length = this.chunk): Buffer {
    if (length <= SMALL_BOUNCE && this.chunk > SMALL_BOUNCE) return this.small.pop() ?? allocAligned(SMALL_BOUNCE, this.align);
    return this.free.pop() ?? allocAligned(this.chunk, this.align);
  }

  release(b: Buffer): void {
    if (b.length === this.chunk) {
      if (this.free.length < BOUNCE_POOL_KEEP) this.free.push(b);
    } else if (this.small.length < SMALL_KEEP) this.small.push(b);
  }
}

export interface FdIoOptions {
  /** The main descriptor: reads, plain writes, syncs. */
  fd: number;
  /** A twin opened with O_DSYNC, for FUA writes; when absent, FUA writes are followed by fdatasync. */
  dsyncFd?: number;
  /** Descriptors are O_DIRECT: memory and lengths must be aligned to `align`. */
  direct: boolean;
  /** Alignment O_DIRECT needs (memory address and segment length). */
  align: number;
  /**
   * The smallest length O_DIRECT reads (a device's logical block); default align. A bounced read rounds up
   * only to it, so it never reaches blocks (perhaps failing ones) that nobody asked for.
   */
  unit?: number;
  /** For error messages. */
  what: string;
  readonly: boolean;
  /** This thread's io_uring (threadRing()); absent: libuv's pool. Not used for files on tmpfs (memory, served on the loop). */
  ring?: RingQueue;
  /** A block device: a read past its end means it shrank or went away (an error), not an unwritten tail. */
  device?: boolean;
}

/** Read/write/overwrite over one block-addressed descriptor. */
export class FdIo {
  readonly fd: number;
  readonly dsyncFd: number | undefined;
  readonly direct: boolean;
  readonly align: number;
  readonly readonly: boolean;
  private readonly what: string;
  /** Set for a device: readFull's end-of-file is then an error naming it. */
  private readonly eofError: string | undefined;
  private readonly unit: number;
  private readonly pool: BouncePool;
  private closed = false;
  /**
   * Whether RWF_NOWAIT is worth a try per direction: only buffered (an
   * O_DIRECT NOWAIT read may still wait for the device), and dropped after the
   * first EOPNOTSUPP (tmpfs both ways, ext4 and block devices for writes, on
   * Linux 6.18) so such a file costs no failed syscall per command.
   */
  private nowaitRead: boolean;
  private nowaitWrite: boolean;
  /**
   * A buffered file on tmpfs (which has no RWF_NOWAIT): its reads and writes
   * are a memcpy to or from memory that, as rd_mcp's, only swap could make
   * wait, so they run on the loop like rd_mcp's. A tmpfs write takes the
   * inode lock, so writes go to the pool while a pool operation of ours that
   * may hold it (write, fallocate, ftruncate, SEEK_DATA/SEEK_HOLE) is in flight.
   */
  private readonly inMemory: boolean;
  private poolHolders = 0;
  /** The io_uring the I/O goes through, or undefined for the pool. */
  readonly ring: RingQueue | undefined;
  private readonly readv: VectorIo;
  private readonly writev: VectorIo;

  constructor(o: FdIoOptions) {
    this.fd = o.fd;
    this.dsyncFd = o.dsyncFd;
    this.direct = o.direct;
    this.align = o.align;
    this.readonly = o.readonly;
    this.what = o.what;
    this.eofError = o.device ? o.what : undefined;
    this.unit = o.unit ?? o.align;
    this.pool = new BouncePool(IO_CHUNK, Math.max(o.align, DIRECT_IO_ALIGN));
    this.inMemory = !o.direct && onTmpfs(o.fd);
    this.ring = this.inMemory ? undefined : o.ring;
    const ring = this.ring;
    this.readv = ring ? (fd, bufs, pos) => ring.readv(fd, bufs, pos) : preadv;
    this.writev = ring ? (fd, bufs, pos) => ring.writev(fd, bufs, pos) : pwritev;
    this.nowaitRead = this.nowaitWrite = !o.direct && !this.inMemory;
  }

  /** fdatasync through the ring when there is one, else the pool. */
  fdatasync(fd = this.fd): Promise<void> {
    return this.ring ? this.ring.fdatasync(fd) : fdatasync(fd);
  }

  /** fallocate(2) on the store's descriptor (PUNCH_HOLE for UNMAP, ZERO_RANGE), through the ring or the pool. */
  fallocate(mode: number, offset: number, length: number): Promise<void> {
    return this.ring ? this.ring.fallocate(this.fd, mode, offset, length) : fallocate(this.fd, mode, offset, length);
  }

  /** Runs a pool operation that may hold the file's inode lock; loop writes on tmpfs wait it out in the pool. */
  async holdingInode<T>(op: () => Promise<T>): Promise<T> {
    this.poolHolders++;
    try {
      return await op();
    } finally {
      this.poolHolders--;
    }
  }

  /**
   * Reads or writes on the loop what the page cache can take without waiting;
   * returns how many bytes of bufs are done (0 when the kernel would have
   * waited, or at end of file, where the pool path's zero fill applies).
   */
  private nowait(write: boolean, bufs: Buffer[], offset: number): number {
    const n = write ? pwriteNowait(this.fd, bufs, offset) : preadNowait(this.fd, bufs, offset);
    if (n >= 0) return n;
    if (n === NOWAIT_UNSUPPORTED) {
      if (write) this.nowaitWrite = false;
      else this.nowaitRead = false;
    }
    return 0;
  }

  /**
   * Refuses use after close: the descriptor number may already belong to
   * another file, which a late write must never reach.
   */
  checkOpen(syscall: string): void {
    if (this.closed) throw errnoError('EBADF', syscall, `${this.what} is closed`);
  }

  /** Rejects writes on a read-only store the way the kernel would. */
  checkWritable(syscall: string): void {
    this.checkOpen(syscall);
    if (this.readonly) throw errnoError('EROFS', syscall, `${this.what} is read-only`);
  }

  private segments(sgl: Sgl, length: number): Buffer[] {
    const bufs = sglSlice(sgl, 0, length);
    let n = 0;
    for (const b of bufs) n += b.length;
    if (n < length) throw new RangeError(`${this.what}: Sgl holds ${n} bytes, ${length} requested`);
    return bufs;
  }

  /** O_DIRECT can take the caller's buffers only if every segment is aligned in address and length. */
  private directOk(bufs: Buffer[]): boolean {
    for (const b of bufs) if (b.length % this.align !== 0 || !isAligned(b, this.pool.align)) return false;
    return true;
  }

  /**
   * Reads length bytes at offset into sgl. Finishes synchronously (undefined) when the page cache had
   * them; else a promise, which on the ring is settled from the completion itself (one per command).
   */
  read(offset: number, length: number, sgl: Sgl): void | Promise<void> {
    try {
      return this.readNow(offset, length, sgl);
    } catch (e) {
      return Promise.reject(e); // a store fails by rejecting, as it did when this was async
    }
  }

  private readNow(offset: number, length: number, sgl: Sgl): void | Promise<void> {
    this.checkOpen('preadv');
    if (length === 0) return;
    const bufs = this.segments(sgl, length);
    if (this.inMemory) return readFullSync(this.fd, bufs, offset);
    // Cached pages first, on the loop, with or without a ring: a NOWAIT read costs less CPU than
    // the same read inside a batched io_uring_enter once the ring's per-operation JS is counted
    // (docs/BENCHMARKS.md, file); the ring takes what it misses.
    if (this.nowaitRead) {
      const n = this.nowait(false, bufs, offset);
      if (n === length) return;
      if (n > 0) return readFull(this.fd, advance(bufs, n), offset + n, this.eofError);
    }
    if (this.ring !== undefined && (!this.direct || length <= this.pool.chunk || this.directOk(bufs))) {
      return this.ringTransfer(false, this.fd, bufs, offset, length, false);
    }
    return this.readPool(bufs, offset, length);
  }

  private async readPool(bufs: Buffer[], offset: number, length: number): Promise<void> {
    if (!this.direct || this.directOk(bufs)) {
      if (this.direct) directIoCounts.readsDirect++;
      return readFull(this.fd, bufs, offset, this.eofError, this.readv);
    }
    this.counted(false, length);
    const b = this.pool.acquire(length);
    try {
      for (let done = 0; done < length; ) {
        const n = Math.min(b.length, length - done);
        // O_DIRECT reads whole aligned units: a read the initiator cut short
        // (a smaller expected length) still reads them, and hands on only n bytes.
        const whole = Math.min(b.length, Math.ceil(n / this.unit) * this.unit);
        await readFull(this.fd, [b.subarray(0, whole)], offset + done, this.eofError, this.readv);
        sglCopyIn(bufs, done, b.subarray(0, n));
        done += n;
      }
    } finally {
      this.pool.release(b);
    }
  }

  /**
   * One command's read or write of at most a bounce chunk through the ring, driven by its completions:
   * short transfers resubmit the rest, O_DIRECT bounces when the command's buffers are not aligned,
   * sync adds an fdatasync after the write (FUA without the O_DSYNC twin).
   */
  private ringTransfer(write: boolean, fd: number, bufs: Buffer[], offset: number, length: number, sync: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const t = new RingTransfer(this, write, fd, bufs, offset, length, sync, resolve, reject);
      if (this.direct && !this.directOk(bufs)) {
        this.counted(write, length);
        const b = this.pool.acquire(length);
        t.bounce = b;
        if (write) {
          sglCopyOut(bufs, 0, b, 0, length);
          t.bufs = [b.subarray(0, length)];
        } else {
          // O_DIRECT reads whole aligned units: a read the initiator cut short still reads them.
          t.left = Math.min(b.length, Math.ceil(length / this.unit) * this.unit);
          t.bufs = [b.subarray(0, t.left)];
        }
      } else if (this.direct) {
        if (write) directIoCounts.writesDirect++;
        else directIoCounts.readsDirect++;
      }
      t.submit();
    });
  }

  /** Counts an O_DIRECT command that bounces. */
  private counted(write: boolean, length: number): void {
    if (write) directIoCounts.writesBounced++;
    else directIoCounts.readsBounced++;
    directIoCounts.bouncedBytes += length;
  }

  /** @internal For RingTransfer: the ring (set whenever a transfer runs) and what it needs of the store. */
  get transferRing(): RingQueue {
    return this.ring!;
  }

  /** @internal */
  get transferEof(): string | undefined {
    return this.eofError;
  }

  /** @internal */
  releaseBounce(b: Buffer): void {
    this.pool.release(b);
  }

  /**
   * Writes length bytes of sgl at offset (fua: on the medium before it settles). Synchronous (undefined)
   * when the page cache took it all on the loop; else a promise, settled from the ring's completions.
   */
  write(offset: number, length: number, sgl: Sgl, fua: boolean): void | Promise<void> {
    try {
      return this.writeNow(offset, length, sgl, fua);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private writeNow(offset: number, length: number, sgl: Sgl, fua: boolean): void | Promise<void> {
    this.checkWritable('pwritev');
    if (length === 0) return fua ? this.fdatasync() : undefined;
    const bufs = this.segments(sgl, length);
    // FUA goes through the O_DSYNC twin: only this write waits for the medium,
    // not every dirty page of the store as an fdatasync would.
    const fd = fua && this.dsyncFd !== undefined ? this.dsyncFd : this.fd;
    // The twin's writes must reach the medium, so they never take a shortcut on the loop.
    const loopOk = fd === this.fd;
    let loopDone = 0;
    if (this.inMemory && loopOk && this.poolHolders === 0) {
      writeFullSync(fd, bufs, offset);
      loopDone = length;
    } else if (this.nowaitWrite && loopOk) {
      loopDone = this.nowait(true, bufs, offset);
    }
    const sync = fua && fd === this.fd;
    if (loopDone === length) return sync ? this.fdatasync() : undefined;
    if (loopDone === 0 && this.ring !== undefined && (!this.direct || length <= this.pool.chunk || this.directOk(bufs))) {
      return this.ringTransfer(true, fd, bufs, offset, length, sync);
    }
    return this.writePool(fd, bufs, offset, length, loopDone, sync);
  }

  private async writePool(fd: number, bufs: Buffer[], offset: number, length: number, loopDone: number, sync: boolean): Promise<void> {
    if (this.inMemory) {
      await this.holdingInode(() => writeFull(fd, bufs, offset));
    } else if (loopDone > 0) {
      await writeFull(fd, advance(bufs, loopDone), offset + loopDone);
    } else if (!this.direct || this.directOk(bufs)) {
      if (this.direct) directIoCounts.writesDirect++;
      await writeFull(fd, bufs, offset, this.writev);
    } else {
      this.counted(true, length);
      const b = this.pool.acquire(length);
      try {
        for (let done = 0; done < length; ) {
          const n = Math.min(b.length, length - done);
          sglCopyOut(bufs, done, b, 0, n);
          await writeFull(fd, [b.subarray(0, n)], offset + done, this.writev);
          done += n;
        }
      } finally {
        this.pool.release(b);
      }
    }
    if (sync) await this.fdatasync();
  }

  async flush(): Promise<void> {
    this.checkOpen('fdatasync');
    if (!this.readonly) await this.fdatasync();
  }

  /**
   * Writes [offset, offset+length) with pattern repeated from the start of
   * every logical block (SANITIZE OVERWRITE's rule; zeros without a pattern),
   * one IO_CHUNK at a time so other commands interleave.
   */
  async writePattern(offset: number, length: number, blockSize: number, pattern?: Buffer): Promise<void> {
    this.checkWritable('pwritev');
    const chunk = this.pool.acquire();
    try {
      fillPattern(chunk, blockSize, pattern);
      for (let done = 0; done < length; ) {
        const n = Math.min(chunk.length, length - done);
        await this.holdingInode(() => writeFull(this.fd, [chunk.subarray(0, n)], offset + done, this.writev));
        done += n;
      }
    } finally {
      // Bounce users overwrite a pooled buffer before use, so the pattern can stay.
      this.pool.release(chunk);
    }
  }

  /** SANITIZE OVERWRITE over the whole store: the pattern everywhere, then on stable storage. */
  async overwrite(size: number, blockSize: number, pattern?: Buffer): Promise<void> {
    await this.writePattern(0, size, blockSize, pattern);
    await this.fdatasync();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.readonly) await fdatasync(this.fd);
    } finally {
      if (this.dsyncFd !== undefined) await closeFd(this.dsyncFd).catch(() => undefined);
      await closeFd(this.fd);
    }
  }
}

/**
 * A command's transfer on the ring: one record per command, its completions
 * handled by plain functions (no promise or closure per step).
 */
class RingTransfer {
  /** What is left to move, and where (the bounce buffer's view when bouncing). */
  bufs: Buffer[];
  left: number;
  /** O_DIRECT bounce buffer (pooled), when the command's buffers are not aligned. */
  bounce: Buffer | undefined = undefined;

  constructor(
    readonly io: FdIo,
    readonly write: boolean,
    readonly fd: number,
    /** The command's own buffers (a bounced read copies into them at the end). */
    readonly dest: Buffer[],
    public offset: number,
    readonly length: number,
    readonly sync: boolean,
    readonly resolve: () => void,
    readonly reject: (e: Error) => void,
  ) {
    this.bufs = dest;
    this.left = length;
  }

  submit(): void {
    const ring = this.io.transferRing;
    if (this.write) ring.writevCb(this.fd, this.bufs, this.offset, transferDone, this);
    else ring.readvCb(this.fd, this.bufs, this.offset, transferDone, this);
  }

  fail(e: Error): void {
    if (this.bounce !== undefined) this.io.releaseBounce(this.bounce);
    this.bounce = undefined;
    this.reject(e);
  }

  finish(): void {
    const b = this.bounce;
    if (b !== undefined) {
      if (!this.write) sglCopyIn(this.dest, 0, b.subarray(0, this.length));
      this.io.releaseBounce(b);
      this.bounce = undefined;
    }
    if (this.sync) this.io.transferRing.fdatasyncCb(this.fd, syncDone, this);
    else this.resolve();
  }
}

function transferDone(t: RingTransfer, res: number): void {
  if (res < 0) return t.fail(transferError(res, t.write ? 'write' : 'read'));
  if (res === 0) {
    if (t.write) return t.fail(errnoError('EIO', 'pwritev', 'device accepted no bytes'));
    const what = t.io.transferEof;
    // A device has no unwritten tail: its end moved under us (a deleted disk reads as size 0), never zeros.
    if (what !== undefined) return t.fail(errnoError('ENXIO', 'preadv', `${what}: nothing to read there (the device shrank or was removed)`));
    for (const b of t.bufs) b.fill(0);
    return t.finish();
  }
  if (res >= t.left) return t.finish();
  // Short (IOV_MAX segments, the 2 GiB cap, a signal): the rest from where it stopped.
  t.bufs = advance(t.bufs, res);
  t.offset += res;
  t.left -= res;
  t.submit();
}

function syncDone(t: RingTransfer, res: number): void {
  if (res < 0) t.reject(transferError(res, 'sync'));
  else t.resolve();
}

/** Fills buf (a whole number of blocks) with pattern repeated from each block's start. */
export function fillPattern(buf: Buffer, blockSize: number, pattern?: Buffer): void {
  if (!pattern || pattern.length === 0) {
    buf.fill(0);
    return;
  }
  const block = buf.subarray(0, blockSize);
  block.fill(pattern);
  for (let p = blockSize; p < buf.length; p += blockSize) block.copy(buf, p);
}

/**
 * Opens a second descriptor to the very file or device fd refers to (through
 * /proc/self/fd, so a rename or a replaced device node cannot redirect it).
 */
export function reopen(fd: number, flags: number): number {
  return fs.openSync(`/proc/self/fd/${fd}`, flags);
}

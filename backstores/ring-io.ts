// The io_uring path of the fd-backed stores (fileio, block): a queue over one
// native Ring per thread. Operations asked for during a loop pass are
// prepared at once and sent together by one io_uring_enter from a
// setImmediate (the check phase, after every socket of the pass was read);
// what the kernel finished inside that call (cached pages) is reaped right
// away, the rest when the ring's descriptor wakes the loop, a batch per wake-up.
// Module state is per thread in Node (each worker has its own), so a later
// I/O thread gets its own ring by calling threadRing() there.
// Where io_uring is missing or disabled (ENOSYS, EPERM from
// kernel.io_uring_disabled or seccomp) or TSIO_IO_URING=off, threadRing()
// answers undefined and says why once; FdIo then uses libuv's pool.

import os from 'node:os';

import { log } from '../src/core/log';
import { Ring, errnoError, uringReapBatch } from '../native';

/** Submission entries; completions get twice as many, which also caps what is in flight. */
const RING_ENTRIES = 256;

type ErrnoName = keyof typeof os.constants.errno;
const ERRNO_NAMES = new Map<number, ErrnoName>(Object.entries(os.constants.errno).map(([k, v]) => [v, k as ErrnoName]));
// Linux has one errno 95; the stores test for EOPNOTSUPP (isUnsupported accepts both names).
ERRNO_NAMES.set(os.constants.errno.EOPNOTSUPP, 'EOPNOTSUPP');

const enum Kind {
  Read,
  Write,
  Fsync,
  Fallocate,
}

/**
 * What an operation calls when it ends: res is its result (bytes moved; 0 for
 * fsync and fallocate) or -errno. A plain function and its context instead of
 * a closure, so that callers can keep one record per command.
 */
export type RingDone<T> = (ctx: T, res: number) => void;

/** One operation while the ring has it; kept per slot and reused. */
class Op {
  kind: Kind = Kind.Read;
  fd = -1;
  bufs: Buffer[] | undefined = undefined;
  /** Offset (read, write, fallocate) or datasync as 1/0 (fsync). */
  a = 0;
  /** fallocate: mode and length. */
  b = 0;
  c = 0;
  done: RingDone<any> | undefined = undefined;
  ctx: unknown = undefined;
}

/** The promise-shaped callers' context: how to settle, and which syscall failed. */
interface Settle {
  resolve(n: number): void;
  reject(e: Error): void;
  kind: Kind;
}

function settlePromise(s: Settle, res: number): void {
  if (res < 0) s.reject(ringError(-res, s.kind));
  else s.resolve(res);
}

const SYSCALLS = ['preadv', 'pwritev', 'fsync', 'fallocate'];

/** The failure of one ring operation, shaped as the pool's would be (.code, .errno, .syscall). */
function ringError(errno: number, kind: Kind): Error {
  return errnoError(ERRNO_NAMES.get(errno) ?? 'EIO', SYSCALLS[kind], 'io_uring');
}

/** The error of a failed readv, writev or fdatasync whose result was res (-errno), as the promise callers get it. */
export function transferError(res: number, op: 'read' | 'write' | 'sync'): Error {
  return ringError(-res, op === 'read' ? Kind.Read : op === 'write' ? Kind.Write : Kind.Fsync);
}

export class RingQueue {
  /** Operations by id (the slot index); a slot's record is reused, done set while the kernel has it. */
  private readonly slots: Op[];
  private readonly free: number[] = [];
  /** Asked for while every slot was taken; prepared as completions free slots. */
  private readonly backlog: Op[] = [];
  private inflight = 0;
  private scheduled = false;
  /** submit() failed outright: entries may still sit in the ring, so its ids are never handed out again. */
  private broken = false;
  private readonly flushNow = (): void => this.flush();
  /** Operations sent and io_uring_enter calls made (tests and benches read them). */
  ops = 0;
  enters = 0;
  /** Busy-polls: how many found completions, and how many gave up (tests and benches read them). */
  pollHits = 0;
  pollMisses = 0;
  /** Longest busy-poll after a submit, in ns (0: never poll); the current window adapts below it. */
  private pollMaxNs = 0;
  private pollNs = 0;

  constructor(private readonly ring: Ring) {
    this.slots = [];
    for (let i = 0; i < ring.cqEntries; i++) this.slots.push(new Op());
    for (let i = ring.cqEntries - 1; i >= 0; i--) this.free.push(i);
  }

  /**
   * Adaptive polling of completions (as QEMU's iothread poll-max-ns): after a submit that left I/O in
   * flight, spin on the completion queue for up to a window before going back to the loop (which would
   * sleep in epoll until the ring's descriptor wakes it). The window doubles (to maxNs) when a poll finds
   * completions and halves when it gives up, so I/O slower than maxNs costs little spinning. 0: off.
   */
  setPollNs(maxNs: number): void {
    this.pollMaxNs = Math.max(0, Math.floor(maxNs));
    this.pollNs = this.pollMaxNs;
  }

  readv(fd: number, bufs: Buffer[], offset: number): Promise<number> {
    return this.promised(Kind.Read, fd, bufs, offset, 0, 0);
  }

  writev(fd: number, bufs: Buffer[], offset: number): Promise<number> {
    return this.promised(Kind.Write, fd, bufs, offset, 0, 0);
  }

  async fdatasync(fd: number): Promise<void> {
    await this.promised(Kind.Fsync, fd, undefined, 1, 0, 0);
  }

  async fallocate(fd: number, mode: number, offset: number, length: number): Promise<void> {
    await this.promised(Kind.Fallocate, fd, undefined, offset, mode, length);
  }

  /** readv into bufs at offset; done(ctx, bytes or -errno) runs from the loop pass that reaps it, never inside this call. */
  readvCb<T>(fd: number, bufs: Buffer[], offset: number, done: RingDone<T>, ctx: T): void {
    this.start(Kind.Read, fd, bufs, offset, 0, 0, done, ctx);
  }

  /** writev of bufs at offset; done as readvCb's. */
  writevCb<T>(fd: number, bufs: Buffer[], offset: number, done: RingDone<T>, ctx: T): void {
    this.start(Kind.Write, fd, bufs, offset, 0, 0, done, ctx);
  }

  /** fdatasync; done(ctx, 0 or -errno). */
  fdatasyncCb<T>(fd: number, done: RingDone<T>, ctx: T): void {
    this.start(Kind.Fsync, fd, undefined, 1, 0, 0, done, ctx);
  }

  private promised(kind: Kind, fd: number, bufs: Buffer[] | undefined, a: number, b: number, c: number): Promise<number> {
    return new Promise<number>((resolve, reject) => this.start(kind, fd, bufs, a, b, c, settlePromise, { resolve, reject, kind }));
  }

  private start(kind: Kind, fd: number, bufs: Buffer[] | undefined, a: number, b: number, c: number, done: RingDone<any>, ctx: unknown): void {
    if (this.broken) {
      // Never inside the caller's call: it may still be setting up what done reads.
      queueMicrotask(() => done(ctx, -os.constants.errno.EIO));
      return;
    }
    if (this.free.length === 0) {
      this.defer(kind, fd, bufs, a, b, c, done, ctx);
      return;
    }
    this.prepare(kind, fd, bufs, a, b, c, done, ctx);
  }

  /** Queues an operation while every slot is taken (its own record: the slots' are busy). */
  private defer(kind: Kind, fd: number, bufs: Buffer[] | undefined, a: number, b: number, c: number, done: RingDone<any>, ctx: unknown): void {
    const op = new Op();
    op.kind = kind;
    op.fd = fd;
    op.bufs = bufs;
    op.a = a;
    op.b = b;
    op.c = c;
    op.done = done;
    op.ctx = ctx;
    this.backlog.push(op);
  }

  private prepare(kind: Kind, fd: number, bufs: Buffer[] | undefined, a: number, b: number, c: number, done: RingDone<any>, ctx: unknown): void {
    const ring = this.ring;
    if (ring.pending >= ring.sqEntries) this.flush();
    // That flush's completions may have let waiting operations take every free slot.
    if (this.free.length === 0) {
      this.defer(kind, fd, bufs, a, b, c, done, ctx);
      return;
    }
    const id = this.free.pop()!;
    try {
      switch (kind) {
        case Kind.Read:
          ring.readv(id, fd, bufs!, a);
          break;
        case Kind.Write:
          ring.writev(id, fd, bufs!, a);
          break;
        case Kind.Fsync:
          ring.fsync(id, fd, a === 1);
          break;
        case Kind.Fallocate:
          ring.fallocate(id, fd, b, a, c);
          break;
      }
    } catch (e) {
      this.free.push(id);
      const errno = (e as NodeJS.ErrnoException).errno;
      queueMicrotask(() => done(ctx, typeof errno === 'number' ? (errno < 0 ? errno : -errno) : -os.constants.errno.EINVAL));
      return;
    }
    const op = this.slots[id];
    op.kind = kind;
    op.done = done;
    op.ctx = ctx;
    if (this.inflight++ === 0) ring.hold(true);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
  }

  /** Sends what was prepared, then hands on what finished meanwhile. */
  private flush(): void {
    this.scheduled = false;
    let r: number;
    try {
      r = this.ring.pending > 0 ? this.ring.submit() : 0;
    } catch (e) {
      // The ring itself failed (never seen): fail what it holds rather than leave commands hanging.
      log.error('io_uring submit failed; fileio and block I/O on this thread now fail with EIO', e);
      this.broken = true;
      for (const op of this.backlog.splice(0)) op.done!(op.ctx, -os.constants.errno.EIO);
      for (let id = 0; id < this.slots.length; id++) this.settle(id, -os.constants.errno.EIO);
      return;
    }
    if (r > 0) {
      this.ops += r;
      this.enters++;
    }
    this.drain();
    if (this.inflight > 0 && this.pollMaxNs > 0) this.poll();
    if (r < 0 && !this.scheduled) {
      // EAGAIN/EBUSY: the kernel is short of memory or completions; try again next pass.
      this.scheduled = true;
      setImmediate(this.flushNow);
    }
  }

  /** Spins on the completion queue for the current window; settles what arrives, adapts the window. */
  private poll(): void {
    const window = this.pollNs;
    if (window === 0) {
      // Given up entirely after misses: try again now and then, in case the I/O got faster.
      if ((++this.pollMisses & 63) === 0) this.pollNs = Math.min(this.pollMaxNs, 1000);
      return;
    }
    const until = performance.now() + window / 1e6;
    do {
      if (this.ring.ready > 0) {
        this.pollHits++;
        this.pollNs = Math.min(this.pollMaxNs, window * 2);
        this.drain();
        return;
      }
    } while (performance.now() < until);
    this.pollMisses++;
    this.pollNs = window < 1000 ? 0 : window >> 1;
  }

  /** Settles every completion the ring holds (called from the ring descriptor's watcher too). */
  readonly drain = (): void => {
    const ring = this.ring;
    const ids = ring.ids;
    const results = ring.results;
    let n: number;
    do {
      n = ring.reap();
      for (let i = 0; i < n; i++) this.settle(ids[i], results[i]);
    } while (n === uringReapBatch);
    while (this.backlog.length > 0 && this.free.length > 0) {
      const op = this.backlog.shift()!;
      this.prepare(op.kind, op.fd, op.bufs, op.a, op.b, op.c, op.done!, op.ctx);
    }
  };

  private settle(id: number, res: number): void {
    const op = this.slots[id];
    const done = op.done;
    if (done === undefined) return;
    const ctx = op.ctx;
    op.done = undefined;
    op.ctx = undefined;
    this.free.push(id);
    if (--this.inflight === 0) this.ring.hold(false);
    done(ctx, res);
  }
}

let shared: RingQueue | null | undefined;

/** This thread's ring, made on first use; undefined where io_uring cannot be used (said once, in the log). */
export function threadRing(): RingQueue | undefined {
  if (shared === undefined) shared = openRing();
  return shared ?? undefined;
}

/** Whether TSIO_IO_URING forbids the ring ('off', '0', 'no', 'false'). */
export function uringForcedOff(): boolean {
  return /^(off|0|no|false)$/i.test(process.env.TSIO_IO_URING ?? '');
}

/** The busy-poll's longest window for this thread's ring (daemon.poll_max_ns); 0: off. */
let ringPollNs = 0;

/** Sets this thread's completion polling window, for its ring now or when it opens. */
export function setRingPollNs(ns: number): void {
  ringPollNs = ns;
  shared?.setPollNs(ns);
}

function openRing(): RingQueue | null {
  if (uringForcedOff()) {
    log.info(`io_uring off (TSIO_IO_URING=${process.env.TSIO_IO_URING}): fileio and block I/O go through the thread pool`);
    return null;
  }
  let queue: RingQueue | undefined;
  try {
    const ring: Ring = new Ring(RING_ENTRIES, () => queue!.drain());
    queue = new RingQueue(ring);
    if (ringPollNs > 0) queue.setPollNs(ringPollNs);
    return queue;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    log.warn(`io_uring unavailable (${err.code ?? err.message}${err.code === 'EPERM' ? ': kernel.io_uring_disabled or a seccomp filter' : ''}): ` +
      'fileio and block I/O go through the thread pool');
    return null;
  }
}

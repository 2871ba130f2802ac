// Data-In buffers for READ commands, recycled. A fresh Buffer of 4 KiB or
// more is a new ArrayBuffer, and at GB/s those external bytes keep V8's
// garbage collector (and its helper threads) as busy as the target itself.
// A buffer comes back only when nothing can still read it: the socket has
// written its last byte (the write callback), or nothing was sent from it.
// Buffers that stayed idle through a whole trimming window (TRIM_MS) were not
// needed: they go back to the garbage collector, down to KEEP_BYTES.
// Buffers start on a page: an O_DIRECT store (fileio, block with direct)
// then reads straight into them instead of through a bounce buffer and a copy.

import { allocAligned } from '../../native';

/** What O_DIRECT asks of memory: a page satisfies every device's DMA alignment. */
const PAGE = 4096;
/** Smallest and largest pooled sizes: below, Node's own 8 KiB pool serves; above, reads are rare. */
const MIN_SHIFT = 12;
const MAX_SHIFT = 22;
export const POOL_MIN = 1 << MIN_SHIFT;
export const POOL_MAX = 1 << MAX_SHIFT;
/** Idle buffers kept, in bytes, across all sizes: enough for a queue of 1 MiB reads. */
const IDLE_BUDGET = 32 << 20;
/** Idle bytes kept however long they go unused. */
const KEEP_BYTES = 1 << 20;
const TRIM_MS = 2000;

export class BufferPool {
  /** Idle buffers by size class (1 << (class + MIN_SHIFT) bytes each). */
  private readonly idle: Buffer[][] = [];
  private idleBytes = 0;
  /** Fewest idle bytes since the trimming window began: that much went unused all along. */
  private lowBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Bytes given back to the garbage collector by trimming. */
  trimmedBytes = 0;

  constructor(
    private readonly budget = IDLE_BUDGET,
    private readonly trimMs = TRIM_MS,
  ) {
    for (let c = 0; c <= MAX_SHIFT - MIN_SHIFT; c++) this.idle.push([]);
  }

  /** A buffer of at least n bytes (a power of two), or undefined when n is outside the pooled sizes. */
  take(n: number): Buffer | undefined {
    if (n < POOL_MIN || n > POOL_MAX) return undefined;
    const c = 32 - Math.clz32(n - 1) - MIN_SHIFT;
    const b = this.idle[c].pop();
    if (b === undefined) return allocAligned(1 << (c + MIN_SHIFT), PAGE);
    this.idleBytes -= b.length;
    if (this.idleBytes < this.lowBytes) this.lowBytes = this.idleBytes;
    return b;
  }

  /** Returns a buffer from take(); one over the idle budget is left to the garbage collector. */
  give(b: Buffer): void {
    if (this.idleBytes + b.length > this.budget) return;
    this.idle[31 - Math.clz32(b.length) - MIN_SHIFT].push(b);
    this.idleBytes += b.length;
    if (this.timer === undefined && this.idleBytes > KEEP_BYTES) {
      this.lowBytes = this.idleBytes;
      this.timer = setInterval(() => this.trim(), this.trimMs);
      this.timer.unref();
    }
  }

  /** Gives back what stayed idle through the window, largest buffers first, coldest (bottom of each stack) first. */
  private trim(): void {
    let drop = Math.min(this.lowBytes, this.idleBytes - KEEP_BYTES);
    for (let c = this.idle.length - 1; c >= 0 && drop > 0; c--) {
      const list = this.idle[c];
      const size = 1 << (c + MIN_SHIFT);
      let n = 0;
      while (n < list.length && size <= drop) {
        drop -= size;
        n++;
      }
      if (n === 0) continue;
      list.splice(0, n);
      this.idleBytes -= n * size;
      this.trimmedBytes += n * size;
    }
    this.lowBytes = this.idleBytes;
    if (this.idleBytes <= KEEP_BYTES) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Bytes held idle (tests). */
  get idleSize(): number {
    return this.idleBytes;
  }
}

/** The process's pool: every connection's reads share it. */
export const dataInPool = new BufferPool();

// Receive slabs: iSCSI sockets read into large recycled buffers instead of a
// fresh 64 KiB ArrayBuffer per read. V8 counts every such buffer as external
// memory, and at a few hundred MB/s that alone starts a Mark-Compact every
// few tens of milliseconds.
//
// The framer hands PDU headers and data segments on as views of the slabs
// (Data-Out goes to the backstore in place), so a slab is only reused once
// nobody holds a view of it. Each slab counts its holders: the reader holds the
// slab it is filling (until a read leaves nothing else holding it), the framer
// one per read it has not consumed yet, and a command one per slab its header
// (the CDB) and data-out lie in, until the core completes it. At zero the slab
// goes back to the pool.
//
// A command that holds a few KiB of a slab pins all of its 1 MiB, so what one
// connection can keep out of the pool is bounded: a sweep every SWEEP_MS asks
// the commands of a connection holding more than PIN_LIMIT slabs that have
// waited for their data since the sweep before (a WRITE whose R2T is never
// answered, a command parked ahead of its CmdSN) to copy the little they hold
// into their own memory and let the slabs go (unpin() in scsi-task.ts and
// command-window.ts). Data that arrives promptly is never copied. What the
// core already has (a command whose data all came with it) stays in place: it
// waits on the backstore, or behind an ORDERED task. The same sweep gives idle
// slabs that were not needed for a while back to the garbage collector.
//
// Where a read lands is the socket owner's to steer (ReadPlan): a read that
// begins a PDU starts a little before a page boundary, so that a data segment
// after a plain header lands on the page and O_DIRECT writes it from the slab
// as it is (fd-io.ts bounces unaligned memory); a large segment is read to its
// end and no further, so the next PDU starts a read of its own, aligned again.
// Small PDUs that arrive together stay in one read (no syscall per PDU): only
// the first of them is aligned.

import { Socket } from 'node:net';
import { allocAligned } from '../../native';
import type { Sgl } from '../../src/core/sgl';

export const SLAB_BYTES = 1 << 20;
/** Where data segments are steered to start: a page, which every O_DIRECT memory alignment divides. */
export const RX_ALIGN = 4096;
/** A slab whose free tail is smaller than this is left for a fresh one, so that reads stay large. */
const MIN_TAIL = 64 << 10;
/** Idle slabs the pool keeps; slabs released beyond that are left to the garbage collector. */
const MAX_IDLE = 32;
/** Idle slabs kept however long they go unused. */
const KEEP_IDLE = 2;
/** Slabs one connection may keep out of the pool before its slow commands are asked to let theirs go. */
export const PIN_LIMIT = 2;
/** Period of the sweep (the pool's coarse clock), and how many sweeps a trimming window lasts. */
export const SWEEP_MS = 250;
const TRIM_SWEEPS = 8;
/** Byte written over released slabs in poison mode (TSIO_RXSLAB_POISON=1): a view used after release reads it. */
export const POISON = 0xdb;

export class RxSlab {
  /** On a page (V8's own 1 MiB buffers start 16 bytes past one, malloc's header): see ReadPlan. */
  readonly buf = allocAligned(SLAB_BYTES, RX_ALIGN);
  /** Holders (reader, unconsumed reads, commands). */
  refs = 0;
  /** Bytes of buf read into so far. */
  used = 0;
  /** The reader it was taken for, while it is out of the pool. */
  reader: RxReader | undefined;
}

/** One socket's reader: the slabs it took that are still out of the pool (being read into, or held by what it delivered). */
export class RxReader {
  busy = 0;
}

export interface RxPoolStats {
  /** Slabs waiting in the pool. */
  idle: number;
  /** Slabs out of the pool: being filled or held by views. */
  busy: number;
  /** Slabs ever allocated. */
  created: number;
  /** Idle slabs given back to the garbage collector by trimming. */
  trimmed: number;
  /** Bytes commands copied out of slabs to let them go (unpin). */
  unpinnedBytes: number;
}

class RxPool {
  private readonly idle: RxSlab[] = [];
  /** Slab of each slab's memory, to find the slab of any view of it. */
  private readonly slabs = new WeakMap<ArrayBuffer, RxSlab>();
  private busy = 0;
  private created = 0;
  private trimmed = 0;
  private unpinned = 0;
  /** Fewest idle slabs since the trimming window began: that many went unused all along. */
  private lowIdle = 0;
  private timer: NodeJS.Timeout | undefined;
  private sweeps = 0;
  private readonly sweepers: (() => void)[] = [];
  /** Sweeps so far: a clock for how long a command has waited (compare with `tick`, never with time). */
  tick = 0;
  poison = process.env.TSIO_RXSLAB_POISON === '1';

  /** A slab with one reference (the taker's). */
  take(reader?: RxReader): RxSlab {
    let s = this.idle.pop();
    if (s === undefined) {
      s = new RxSlab();
      this.slabs.set(s.buf.buffer as ArrayBuffer, s);
      this.created++;
    } else if (this.idle.length < this.lowIdle) this.lowIdle = this.idle.length;
    s.used = 0;
    s.refs = 1;
    s.reader = reader;
    if (reader !== undefined) reader.busy++;
    this.busy++;
    if (this.timer === undefined) this.startSweeps();
    return s;
  }

  ref(s: RxSlab): void {
    s.refs++;
  }

  unref(s: RxSlab): void {
    if (--s.refs > 0) return;
    if (s.refs < 0) throw new Error('iscsi: receive slab released more often than held');
    this.busy--;
    if (s.reader !== undefined) s.reader.busy--;
    s.reader = undefined;
    // Views only ever lie below `used` (the rest is poison already, or was never handed out).
    if (this.poison) s.buf.fill(POISON, 0, s.used);
    if (this.idle.length < MAX_IDLE) this.idle.push(s);
  }

  /** Whether a socket's reader keeps more slabs out of the pool than PIN_LIMIT. */
  crowded(socket: Socket): boolean {
    const r = readers.get(socket);
    return r !== undefined && r.busy > PIN_LIMIT;
  }

  /**
   * The list with every run of views of slabs copied into memory of its own
   * (other buffers stay as they are): its holder may then release the slabs.
   */
  copyOut(list: Sgl): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < list.length; ) {
      if (this.slabs.get(list[i].buffer as ArrayBuffer) === undefined) {
        out.push(list[i++]);
        continue;
      }
      let j = i;
      let n = 0;
      while (j < list.length && this.slabs.get(list[j].buffer as ArrayBuffer) !== undefined) n += list[j++].length;
      out.push(Buffer.concat(list.slice(i, j), n));
      this.unpinned += n;
      i = j;
    }
    return out;
  }

  /** Runs fn at every sweep (while any slab is busy): session-registry.ts unpins slow commands there. */
  onSweep(fn: () => void): void {
    this.sweepers.push(fn);
  }

  private startSweeps(): void {
    this.lowIdle = this.idle.length;
    this.sweeps = 0;
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  private sweep(): void {
    this.tick++;
    if (this.busy > 0) for (const fn of this.sweepers) fn();
    if (++this.sweeps % TRIM_SWEEPS !== 0) return;
    // Slabs that stayed idle through the whole window were not needed: they go (down to KEEP_IDLE).
    let drop = Math.min(this.lowIdle, this.idle.length - KEEP_IDLE);
    if (drop > 0) {
      // The bottom of the stack is the coldest memory.
      this.idle.splice(0, drop);
      this.trimmed += drop;
    }
    this.lowIdle = this.idle.length;
    if (this.busy === 0 && this.idle.length <= KEEP_IDLE) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Takes a reference on each slab the views lie in, recording it in `into` (release with releaseAll). */
  retain(views: Sgl, into: RxSlab[]): void {
    for (let i = 0; i < views.length; i++) {
      const s = this.slabs.get(views[i].buffer as ArrayBuffer);
      // Consecutive views mostly share a slab: one reference for the run.
      if (s === undefined || into[into.length - 1] === s) continue;
      s.refs++;
      into.push(s);
    }
  }

  releaseAll(held: RxSlab[]): void {
    for (let i = 0; i < held.length; i++) this.unref(held[i]);
    held.length = 0;
  }

  stats(): RxPoolStats {
    return { idle: this.idle.length, busy: this.busy, created: this.created, trimmed: this.trimmed, unpinnedBytes: this.unpinned };
  }
}

/** The process's receive slabs, shared by every iSCSI connection. */
export const rxPool = new RxPool();
/** The reader of each slab socket. */
const readers = new WeakMap<Socket, RxReader>();

/** Where a slab socket delivers each read: `chunk` is a view of `slab` (undefined: a plain read buffer). */
export type ChunkSink = (chunk: Buffer, slab: RxSlab | undefined) => void;

/**
 * How the next read should land, set by planRead() just before each read
 * (fields, not a returned object: nothing is allocated per read).
 */
export interface ReadPlan {
  planRead(): void;
  /** Bytes of the stream before the point that should start on an RX_ALIGN boundary; -1: anywhere (continue where the last read ended). */
  lead: number;
  /** Most bytes the read may take (0: as many as the slab holds). */
  limit: number;
  /** Bytes the read should find room for in one slab, so that a segment it begins is not split across slabs (0: MIN_TAIL; a read that starts aligned gets at least MIN_TAIL). */
  fit: number;
}

/**
 * Makes an accepted socket read into slabs. net.Server cannot pass `onread`
 * to the sockets it accepts, so the server is made with pauseOnConnect (no
 * read has happened yet) and its socket's handle moves to a new Socket that
 * has `onread`; the first one is destroyed without its handle (which also
 * settles the server's connection count). Without a handle to take over, the
 * socket stays as it is and delivers plain 'data' buffers.
 */
export function slabSocket(accepted: Socket, sink: ChunkSink, plan?: ReadPlan): Socket {
  const handle = (accepted as unknown as { _handle?: object | null })._handle;
  if (handle == null) {
    accepted.on('data', (b: Buffer) => sink(b, undefined));
    accepted.resume();
    return accepted;
  }
  let cur: RxSlab | undefined;
  let closed = false;
  const reader = new RxReader();
  const buffer = (): Buffer => {
    if (closed) return SPENT;
    let lead = -1;
    let limit = 0;
    let fit = MIN_TAIL;
    if (plan !== undefined) {
      plan.planRead();
      lead = plan.lead;
      limit = plan.limit;
      if (plan.fit > 0) fit = Math.min(plan.fit, SLAB_BYTES - RX_ALIGN);
    }
    if (cur !== undefined) {
      const tail = SLAB_BYTES - cur.used;
      // A read that continues (lead -1) stays while the rest of its segment fits, however small the tail: a
      // fresh slab would split the segment. One that starts aligned needs room for what it is to carry.
      if (lead < 0 ? tail < Math.min(fit, MIN_TAIL) : tail - padTo(cur.used, lead) < Math.max(fit, MIN_TAIL)) {
        rxPool.unref(cur);
        cur = undefined;
      }
    }
    cur ??= rxPool.take(reader);
    // Skipped bytes lie below `used` like read ones: poisoned on release, never handed out.
    if (lead >= 0) cur.used += padTo(cur.used, lead);
    const end = limit > 0 ? Math.min(SLAB_BYTES, cur.used + limit) : SLAB_BYTES;
    return cur.buf.subarray(cur.used, end);
  };
  const callback = (n: number, into: Buffer): void => {
    if (closed || cur === undefined) return;
    const chunk = into.subarray(0, n);
    cur.used += n;
    sink(chunk, cur);
    // Nothing but the reader holds it (all framed, no command keeps data): back to the pool, so that a
    // quiet connection holds no slab (the next read mostly gets the same one back, in warm memory).
    if (cur !== undefined && cur.refs === 1) {
      rxPool.unref(cur);
      cur = undefined;
    }
  };
  (accepted as unknown as { _handle: object | null })._handle = null;
  accepted.destroy();
  const socket = new Socket({ handle, readable: true, writable: true, onread: { buffer, callback } } as never);
  readers.set(socket, reader);
  // The handle reads into the tail of `cur` until it is closed: only then may the slab go back.
  socket.once('close', () => {
    closed = true;
    if (cur !== undefined) rxPool.unref(cur);
    cur = undefined;
  });
  return socket;
}

/** Bytes to skip from `used` so that `used + skip + lead` is a multiple of RX_ALIGN. */
function padTo(used: number, lead: number): number {
  return (RX_ALIGN - ((used + lead) % RX_ALIGN)) % RX_ALIGN;
}

/** What a closed socket's last read-buffer request gets: it never reads again. */
const SPENT = Buffer.alloc(MIN_TAIL);

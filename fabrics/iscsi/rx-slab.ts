// Receive slabs: iSCSI sockets read into large recycled buffers instead of a
// fresh 64 KiB ArrayBuffer per read. V8 counts every such buffer as external
// memory, and at a few hundred MB/s that alone starts a Mark-Compact every
// few tens of milliseconds.
//
// The framer hands PDU headers and data segments on as views of the slabs
// (Data-Out goes to the backstore in place), so a slab is only reused once
// nobody holds a view of it. Each slab counts its holders: the reader holds the
// slab it is filling, the framer one per read it has not consumed yet, and a
// command one per slab its header (the CDB) and data-out lie in, until the core
// completes it. At zero the slab goes back to the pool.

import { Socket } from 'node:net';
import type { Sgl } from '../../src/core/sgl';

export const SLAB_BYTES = 1 << 20;
/** A slab whose free tail is smaller than this is left for a fresh one, so that reads stay large. */
const MIN_TAIL = 64 << 10;
/** Idle slabs the pool keeps; slabs released beyond that are left to the garbage collector. */
const MAX_IDLE = 32;
/** Byte written over released slabs in poison mode (TSIO_RXSLAB_POISON=1): a view used after release reads it. */
export const POISON = 0xdb;

export class RxSlab {
  readonly buf = Buffer.allocUnsafeSlow(SLAB_BYTES);
  /** Holders (reader, unconsumed reads, commands). */
  refs = 0;
  /** Bytes of buf read into so far. */
  used = 0;
}

export interface RxPoolStats {
  /** Slabs waiting in the pool. */
  idle: number;
  /** Slabs out of the pool: being filled or held by views. */
  busy: number;
  /** Slabs ever allocated. */
  created: number;
}

class RxPool {
  private readonly idle: RxSlab[] = [];
  /** Slab of each slab's memory, to find the slab of any view of it. */
  private readonly slabs = new WeakMap<ArrayBuffer, RxSlab>();
  private busy = 0;
  private created = 0;
  poison = process.env.TSIO_RXSLAB_POISON === '1';

  /** A slab with one reference (the taker's). */
  take(): RxSlab {
    let s = this.idle.pop();
    if (s === undefined) {
      s = new RxSlab();
      this.slabs.set(s.buf.buffer as ArrayBuffer, s);
      this.created++;
    }
    s.used = 0;
    s.refs = 1;
    this.busy++;
    return s;
  }

  ref(s: RxSlab): void {
    s.refs++;
  }

  unref(s: RxSlab): void {
    if (--s.refs > 0) return;
    if (s.refs < 0) throw new Error('iscsi: receive slab released more often than held');
    this.busy--;
    if (this.poison) s.buf.fill(POISON);
    if (this.idle.length < MAX_IDLE) this.idle.push(s);
  }

  /** The slab a view lies in, if it is one of ours. */
  slabOf(b: Uint8Array): RxSlab | undefined {
    return this.slabs.get(b.buffer as ArrayBuffer);
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
    return { idle: this.idle.length, busy: this.busy, created: this.created };
  }
}

/** The process's receive slabs, shared by every iSCSI connection. */
export const rxPool = new RxPool();

/** Where a slab socket delivers each read: `chunk` is a view of `slab` (undefined: a plain read buffer). */
export type ChunkSink = (chunk: Buffer, slab: RxSlab | undefined) => void;

/**
 * Makes an accepted socket read into slabs. net.Server cannot pass `onread`
 * to the sockets it accepts, so the server is made with pauseOnConnect (no
 * read has happened yet) and its socket's handle moves to a new Socket that
 * has `onread`; the first one is destroyed without its handle (which also
 * settles the server's connection count). Without a handle to take over, the
 * socket stays as it is and delivers plain 'data' buffers.
 */
export function slabSocket(accepted: Socket, sink: ChunkSink): Socket {
  const handle = (accepted as unknown as { _handle?: object | null })._handle;
  if (handle == null) {
    accepted.on('data', (b: Buffer) => sink(b, undefined));
    accepted.resume();
    return accepted;
  }
  let cur: RxSlab | undefined;
  let closed = false;
  const buffer = (): Buffer => {
    if (closed) return SPENT;
    if (cur !== undefined && cur.refs === 1 && cur.used > 0) {
      // Nothing but the reader holds it (all framed, no command keeps data): start over, in warm memory.
      if (rxPool.poison) cur.buf.fill(POISON, 0, cur.used);
      cur.used = 0;
    } else if (cur !== undefined && SLAB_BYTES - cur.used < MIN_TAIL) {
      rxPool.unref(cur);
      cur = undefined;
    }
    cur ??= rxPool.take();
    return cur.buf.subarray(cur.used);
  };
  const callback = (n: number, into: Buffer): void => {
    if (closed || cur === undefined) return;
    const chunk = into.subarray(0, n);
    cur.used += n;
    sink(chunk, cur);
  };
  (accepted as unknown as { _handle: object | null })._handle = null;
  accepted.destroy();
  const socket = new Socket({ handle, readable: true, writable: true, onread: { buffer, callback } } as never);
  // The handle reads into the tail of `cur` until it is closed: only then may the slab go back.
  socket.once('close', () => {
    closed = true;
    if (cur !== undefined) rxPool.unref(cur);
    cur = undefined;
  });
  return socket;
}

/** What a closed socket's last read-buffer request gets: it never reads again. */
const SPENT = Buffer.alloc(MIN_TAIL);

// The device side of a split virtqueue over guest memory: pops descriptor
// chains (direct and indirect) as views of guest memory, pushes used entries,
// and decides when the driver needs a notification (EVENT_IDX or flags).
// Nothing a guest writes is trusted: every index, address and length is
// checked, chains are bounded, and a malformed chain raises ChainError.

import { closeSync } from 'node:fs';
import { eventfdWrite, fence, type FdWatcher } from '../../native';
import type { GuestMemory } from './guest-memory';
import {
  AVAIL_F_NO_INTERRUPT, Avail, Desc, DescFlag, MAX_QUEUE_SIZE, USED_F_NO_NOTIFY, Used, availSize, needEvent, usedSize,
} from './virtio-ring';

/** A malformed chain. `fatal`: the ring itself cannot be trusted any more (loop, bad index). */
export class ChainError extends Error {
  constructor(
    message: string,
    readonly fatal: boolean,
    readonly head = -1,
  ) {
    super(message);
  }
}

/** One popped request: its head and views of the guest's buffers. */
export interface Chain {
  head: number;
  /** Device-readable buffers, in order. */
  readable: Buffer[];
  readLen: number;
  /** Device-writable buffers, in order. */
  writable: Buffer[];
  writeLen: number;
}

/**
 * The in-flight record of one split queue, in memory the front-end keeps across
 * our restarts (INFLIGHT_SHMFD; libvhost-user's layout): {u64 features, u16
 * version, u16 desc_num, u16 last_batch_head, u16 used_idx}, then per
 * descriptor head {u8 inflight, u8 pad[5], u16 next, u64 counter}.
 */
export const InflightRegion = { VERSION: 8, DESC_NUM: 10, LAST_BATCH_HEAD: 12, USED_IDX: 14, DESC: 16, ENTRY: 16, INFLIGHT: 0, COUNTER: 8 } as const;
/** Bytes of one queue's in-flight record, rounded up as libvhost-user does. */
export const inflightRegionSize = (num: number): number => Math.ceil((InflightRegion.DESC + InflightRegion.ENTRY * num) / 64) * 64;

/** Largest CDB a request carries (virtio-scsi's cdb_size). */
export const CDB_SLOT = 32;

/** Most bytes one chain may describe; larger is a hostile or broken driver (max_sectors is 32 MiB). */
const MAX_CHAIN_BYTES = 64 * 1024 * 1024;

export class DeviceQueue {
  num = 0;
  descAddr = 0;
  availAddr = 0;
  usedAddr = 0;
  private desc: Buffer | undefined;
  private avail: Buffer | undefined;
  private used: Buffer | undefined;
  /** Next avail index to process (what GET_VRING_BASE returns). */
  lastAvail = 0;
  /** Our copy of used->idx. */
  usedIdx = 0;
  /** used->idx when the driver was last notified. */
  private signalledUsed = 0;
  private signalledValid = false;
  kickFd = -1;
  callFd = -1;
  errFd = -1;
  kickWatcher: FdWatcher | undefined;
  /** Kick fd received: the ring runs (until GET_VRING_BASE). */
  started = false;
  enabled = false;
  /** Set on a fatal ring error: no more processing until the ring is set up again. */
  broken = false;
  eventIdx = false;
  /** Requests popped and not yet pushed back. */
  inflight = 0;
  /** suppressKicks() is in force (until armKick()). */
  kicksOff = false;
  /** The device fills this queue on its own schedule (VirtioDevice.ownKick): the back end never polls it. */
  deviceOwned = false;
  /** Used entries pushed since the last notification decision. */
  pending = 0;
  /** What this ring carried on this connection: requests returned, kicks taken (eventfd counts), calls sent. */
  readonly counts = { requests: 0, kicks: 0, calls: 0 };
  /** This queue's in-flight record (INFLIGHT_SHMFD), when the front-end keeps one. */
  inflightRegion: Buffer | undefined;
  private counter = 0;
  /** Per descriptor head, a CDB's bytes and views of them by length (cdbSlot()). */
  private cdbSlots: Buffer[][] = [];

  constructor(readonly index: number) {}

  /**
   * Room for the CDB of the request at head, len bytes (at most CDB_SLOT):
   * made once per head and length, reused by the next request on that head. A
   * head is not posted again before it is pushed back, and the engine is done
   * with a command's CDB by then, so a request's CDB costs no allocation.
   */
  cdbSlot(head: number, len: number): Buffer {
    if (this.cdbSlots.length !== this.num) this.cdbSlots = new Array<Buffer[]>(this.num);
    const views = (this.cdbSlots[head] ??= [Buffer.alloc(CDB_SLOT)]);
    return (views[len] ??= views[0].subarray(0, len));
  }

  get ready(): boolean {
    return this.started && this.enabled && !this.broken && this.desc !== undefined;
  }

  /** Translates the ring addresses; false when any ring is not in mapped memory. */
  map(mem: GuestMemory): boolean {
    this.desc = this.avail = this.used = undefined;
    if (this.num === 0 || this.descAddr === 0) return false;
    const desc = mem.qvaView(this.descAddr, Desc.SIZE * this.num);
    const avail = mem.qvaView(this.availAddr, availSize(this.num));
    const used = mem.qvaView(this.usedAddr, usedSize(this.num));
    if (!desc || !avail || !used) return false;
    this.desc = desc;
    this.avail = avail;
    this.used = used;
    return true;
  }

  unmapRings(): void {
    this.desc = this.avail = this.used = undefined;
  }

  setNum(num: number): void {
    if (num === 0 || num > MAX_QUEUE_SIZE || (num & (num - 1)) !== 0) {
      throw new RangeError(`queue ${this.index}: size ${num} is not a power of two up to ${MAX_QUEUE_SIZE}`);
    }
    this.num = num;
  }

  setBase(base: number): void {
    this.lastAvail = base & 0xffff;
    this.usedIdx = base & 0xffff;
    this.signalledValid = false;
    this.broken = false;
  }

  /** Picks up the used index the driver left (after SET_VRING_BASE on a live ring). */
  syncUsed(): void {
    if (this.used) this.usedIdx = this.used.readUInt16LE(Used.IDX);
  }

  /** Whether the driver has published requests we have not popped. */
  hasAvail(): boolean {
    return this.avail !== undefined && this.avail.readUInt16LE(Avail.IDX) !== this.lastAvail;
  }

  /**
   * Pops the next chain, or undefined when the ring is empty. Throws
   * ChainError; a non-fatal one has consumed its head (push it back).
   */
  pop(mem: GuestMemory): Chain | undefined {
    const avail = this.avail!;
    const availIdx = avail.readUInt16LE(Avail.IDX);
    if (availIdx === this.lastAvail) return undefined;
    if (((availIdx - this.lastAvail) & 0xffff) > this.num) {
      throw new ChainError(`queue ${this.index}: avail index ${availIdx} is ${(availIdx - this.lastAvail) & 0xffff} ahead of ${this.lastAvail} on a ring of ${this.num}`, true);
    }
    const head = avail.readUInt16LE(Avail.RING + Avail.ENTRY * (this.lastAvail % this.num));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    if (head >= this.num) throw new ChainError(`queue ${this.index}: head ${head} out of a ring of ${this.num}`, true);
    this.inflight++;
    const r = this.inflightRegion;
    if (r !== undefined && r.length > 0) {
      const o = InflightRegion.DESC + InflightRegion.ENTRY * head;
      r.writeBigUInt64LE(BigInt(++this.counter), o + InflightRegion.COUNTER);
      r[o + InflightRegion.INFLIGHT] = 1;
    }
    return this.readChain(mem, head);
  }

  /**
   * After a restart, the heads the last back end popped and never returned,
   * oldest first; the ring continues after them (libvhost-user's
   * vu_check_queue_inflights). They count as in flight: the caller reads and
   * serves them again.
   */
  takeInflight(): number[] {
    const r = this.inflightRegion;
    if (r === undefined || r.length === 0 || this.used === undefined) return [];
    if (r.readUInt16LE(InflightRegion.DESC_NUM) !== this.num) {
      r.fill(0);
      r.writeUInt16LE(1, InflightRegion.VERSION);
      r.writeUInt16LE(this.num, InflightRegion.DESC_NUM);
    }
    const usedIdx = this.used.readUInt16LE(Used.IDX);
    // A push interrupted between its used entry and its record: that head is done.
    if (r.readUInt16LE(InflightRegion.USED_IDX) !== usedIdx) {
      const last = r.readUInt16LE(InflightRegion.LAST_BATCH_HEAD);
      if (last < this.num) r[InflightRegion.DESC + InflightRegion.ENTRY * last + InflightRegion.INFLIGHT] = 0;
      r.writeUInt16LE(usedIdx, InflightRegion.USED_IDX);
    }
    const heads: { head: number; counter: bigint }[] = [];
    for (let h = 0; h < this.num; h++) {
      const o = InflightRegion.DESC + InflightRegion.ENTRY * h;
      if (r[o + InflightRegion.INFLIGHT] === 1) heads.push({ head: h, counter: r.readBigUInt64LE(o + InflightRegion.COUNTER) });
    }
    heads.sort((a, b) => (a.counter < b.counter ? -1 : a.counter > b.counter ? 1 : 0));
    if (heads.length > 0) this.counter = Number(heads[heads.length - 1].counter);
    this.usedIdx = usedIdx;
    this.lastAvail = (usedIdx + heads.length) & 0xffff;
    this.inflight += heads.length;
    return heads.map((x) => x.head);
  }

  /** The chain starting at head (popped, or taken back with takeInflight()). Throws ChainError as pop() does. */
  readChain(mem: GuestMemory, head: number): Chain {
    const chain: Chain = { head, readable: [], readLen: 0, writable: [], writeLen: 0 };
    let table = this.desc!;
    let size = this.num;
    let i = head;
    let budget = this.num;
    let indirect = false;
    let bad: string | undefined;
    for (;;) {
      if (budget-- === 0) {
        this.inflight--;
        throw new ChainError(`queue ${this.index}: descriptor chain from head ${head} loops or is longer than its table`, true, head);
      }
      const o = i * Desc.SIZE;
      const lo = table.readUInt32LE(o + Desc.ADDR);
      const hi = table.readUInt32LE(o + Desc.ADDR + 4);
      const len = table.readUInt32LE(o + Desc.LEN);
      const flags = table.readUInt16LE(o + Desc.FLAGS);
      const addr = hi >= 0x200000 ? -1 : hi * 0x1_0000_0000 + lo;
      if ((flags & DescFlag.INDIRECT) !== 0) {
        // Un-negotiated indirect tables are accepted (Windows vioscsi sends them); nesting is not.
        if (indirect || (flags & DescFlag.NEXT) !== 0 || len === 0 || len % Desc.SIZE !== 0) {
          this.inflight--;
          throw new ChainError(`queue ${this.index}: bad indirect descriptor (len ${len}, flags ${flags}) in chain ${head}`, true, head);
        }
        const t = addr < 0 ? undefined : mem.gpaView(addr, len);
        if (t === undefined) {
          bad = `indirect table at 0x${addr.toString(16)} (+${len}) is outside guest memory`;
          break;
        }
        table = t;
        size = len / Desc.SIZE;
        budget = size;
        indirect = true;
        i = 0;
        continue;
      }
      if (len !== 0) {
        if ((flags & DescFlag.WRITE) !== 0) {
          chain.writeLen += len;
          if (addr < 0 || !mem.gpaViews(addr, len, chain.writable)) bad = `buffer 0x${addr.toString(16)} (+${len}) is outside guest memory`;
        } else {
          if (chain.writeLen !== 0) bad = 'a device-readable buffer follows a writable one';
          chain.readLen += len;
          if (addr < 0 || !mem.gpaViews(addr, len, chain.readable)) bad = `buffer 0x${addr.toString(16)} (+${len}) is outside guest memory`;
        }
        if (bad !== undefined) break;
        if (chain.readLen + chain.writeLen > MAX_CHAIN_BYTES) {
          bad = `chain describes more than ${MAX_CHAIN_BYTES} bytes`;
          break;
        }
      }
      if ((flags & DescFlag.NEXT) === 0) break;
      i = table.readUInt16LE(o + Desc.NEXT);
      if (i >= size) {
        this.inflight--;
        throw new ChainError(`queue ${this.index}: next index ${i} out of a table of ${size} in chain ${head}`, true, head);
      }
    }
    if (bad !== undefined) throw new ChainError(`queue ${this.index}: chain ${head}: ${bad}`, false, head);
    return chain;
  }

  /** Returns a chain to the driver with len bytes written. */
  push(head: number, len: number): void {
    const used = this.used;
    this.inflight--;
    if (used === undefined || used.length === 0) return; // rings gone (memory unmapped): nothing to tell
    const r = this.inflightRegion !== undefined && this.inflightRegion.length > 0 ? this.inflightRegion : undefined;
    if (r !== undefined) r.writeUInt16LE(head, InflightRegion.LAST_BATCH_HEAD);
    const o = Used.RING + Used.ENTRY * (this.usedIdx % this.num);
    used.writeUInt32LE(head, o + Used.ID);
    used.writeUInt32LE(len, o + Used.LEN);
    // x86 keeps stores in order: the entry is visible before the index.
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    used.writeUInt16LE(this.usedIdx, Used.IDX);
    if (r !== undefined && head < this.num) {
      r[InflightRegion.DESC + InflightRegion.ENTRY * head + InflightRegion.INFLIGHT] = 0;
      r.writeUInt16LE(this.usedIdx, InflightRegion.USED_IDX);
    }
    this.pending++;
    this.counts.requests++;
  }

  /** Notifies the driver of what was pushed since last time, if it asked to be told. */
  notify(): void {
    if (this.pending === 0) return;
    this.pending = 0;
    if (this.callFd < 0 || this.avail === undefined || this.avail.length === 0) return;
    fence(); // our used->idx store must be visible before we read what the driver wants
    let send: boolean;
    if (this.eventIdx) {
      const event = this.avail.readUInt16LE(availSize(this.num) - 2);
      const old = this.signalledUsed;
      send = !this.signalledValid || needEvent(event, this.usedIdx, old);
      this.signalledValid = true;
      this.signalledUsed = this.usedIdx;
    } else {
      send = (this.avail.readUInt16LE(Avail.FLAGS) & AVAIL_F_NO_INTERRUPT) === 0;
    }
    if (send) {
      this.counts.calls++;
      eventfdWrite(this.callFd);
    }
  }

  /** A new call fd: tell the driver at once and decide afresh on the next notification. */
  callChanged(): void {
    this.signalledValid = false;
    if (this.callFd >= 0) eventfdWrite(this.callFd);
  }

  /**
   * With EVENT_IDX, asks for the next kick only after lastAvail and reports
   * whether more arrived meanwhile (the re-check that avoids a lost wake-up).
   */
  armKick(): boolean {
    const used = this.used;
    if (used === undefined || used.length === 0) return false;
    if (this.eventIdx) used.writeUInt16LE(this.lastAvail, usedSize(this.num) - 2);
    else {
      const flags = used.readUInt16LE(Used.FLAGS);
      if ((flags & USED_F_NO_NOTIFY) === 0) return false;
      used.writeUInt16LE(flags & ~USED_F_NO_NOTIFY, Used.FLAGS);
    }
    this.kicksOff = false;
    fence();
    return this.hasAvail();
  }

  /**
   * Asks the driver not to kick (the device polls the ring meanwhile): with
   * EVENT_IDX avail_event one behind lastAvail, which the driver's avail index
   * cannot cross again before it wraps; without, VRING_USED_F_NO_NOTIFY.
   * armKick() asks for kicks again and re-checks the ring.
   */
  suppressKicks(): void {
    const used = this.used;
    if (used === undefined || used.length === 0) return;
    if (this.eventIdx) used.writeUInt16LE((this.lastAvail - 1) & 0xffff, usedSize(this.num) - 2);
    else used.writeUInt16LE(used.readUInt16LE(Used.FLAGS) | USED_F_NO_NOTIFY, Used.FLAGS);
    this.kicksOff = true;
  }

  /** Tells the front-end the ring is broken (SET_VRING_ERR's eventfd). */
  signalError(): void {
    this.broken = true;
    if (this.errFd >= 0) eventfdWrite(this.errFd);
  }

  stopWatching(): void {
    this.kickWatcher?.stop();
    this.kickWatcher = undefined;
  }

  /** Closes every fd (connection end). */
  closeFds(): void {
    this.stopWatching();
    for (const fd of [this.kickFd, this.callFd, this.errFd]) if (fd >= 0) closeSync(fd);
    this.kickFd = this.callFd = this.errFd = -1;
  }
}

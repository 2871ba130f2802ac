// rd_mcp: RAM. Pages are allocated on first write, so unwritten and unmapped
// ranges cost no memory and read as zeros. Everything is synchronous: a RAM
// copy is cheaper than any hand-off to another thread. Reads may also lend
// views of the pages themselves (lend()): a lent page is pinned, and a write
// or unmap of it goes to a fresh page instead (copy on write) until the
// borrower releases it.
//
// Page memory is SharedArrayBuffer slabs, so every thread of the process can
// reach it: with io_threads > 1 a unit re-homed live on another thread
// (app/daemon/placement.ts) takes its pages along without a copy (handOver(),
// then the factory's `adopt`). One thread serves the unit at a time.

import type { Backstore, BackstoreCaps, BackstoreOptions, LbaExtent } from '../src/core/backstore';
import { Sgl, sglIsZero } from '../src/core/sgl';
import { aliasShared } from '../native';

/** Allocation unit; a multiple of both logical block sizes. */
export const RD_PAGE_SIZE = 4096;
/**
 * Pages come from 64 KiB slabs: one ArrayBuffer per 16 pages instead of one
 * per page (allocation was most of the cost of a first write), and a slab is
 * dropped as soon as its last page is unmapped, so freed ranges give memory back.
 */
const PAGES_PER_SLAB = 16;
const SLAB_BYTES = PAGES_PER_SLAB * RD_PAGE_SIZE;

/** A unit's pages as another thread adopts them: its slabs' shared memory and its page table (pages: [page, slot] pairs). */
export interface RamPages {
  slabs: (SharedArrayBuffer | null)[];
  pages: Int32Array;
}

interface Slab {
  readonly id: number;
  /** The page memory, a plain Buffer over the shared memory `shared` (copies through it are memcpy). */
  buf: Buffer;
  readonly shared: SharedArrayBuffer;
  free: number[];
  /** Lent views per page; a pinned page is never written, zeroed or given out again. */
  readonly pins: Uint32Array;
  /** Pages (bits) that left the page table while pinned: released when their last pin goes. */
  orphans: number;
}

/**
 * A slab over shared memory. Its pages are read and written through a plain alias of it: V8 copies to and from a
 * SharedArrayBuffer view with relaxed atomics, three times the cost of the memcpy a RAM read otherwise is.
 */
function slab(id: number, shared: SharedArrayBuffer, free: number[]): Slab {
  return { id, buf: aliasShared(new Uint8Array(shared)), shared, free, pins: new Uint32Array(PAGES_PER_SLAB), orphans: 0 };
}

/** Zeros lent for pages that have no memory (never written to). */
const ZEROS = Buffer.alloc(SLAB_BYTES);

/** Page memory: slot numbers (slab * PAGES_PER_SLAB + index) for the page map's values. */
class PagePool {
  private readonly slabs: (Slab | undefined)[] = [];
  private readonly withFree: number[] = [];
  private readonly emptySlabIds: number[] = [];
  pages = 0;

  alloc(): number {
    let id: number | undefined;
    while (this.withFree.length) {
      const c = this.withFree[this.withFree.length - 1];
      if (this.slabs[c]?.free.length) {
        id = c;
        break;
      }
      this.withFree.pop();
    }
    if (id === undefined) {
      id = this.emptySlabIds.pop() ?? this.slabs.length;
      const free: number[] = [];
      for (let i = PAGES_PER_SLAB - 1; i >= 0; i--) free.push(i);
      // Zeroed like Buffer.alloc; shared so another thread may adopt the unit (handOver).
      this.slabs[id] = slab(id, new SharedArrayBuffer(SLAB_BYTES), free);
      this.withFree.push(id);
    }
    this.pages++;
    return id * PAGES_PER_SLAB + this.slabs[id]!.free.pop()!;
  }

  release(slot: number): void {
    const id = Math.floor(slot / PAGES_PER_SLAB);
    const slab = this.slabs[id]!;
    const i = slot - id * PAGES_PER_SLAB;
    slab.buf.fill(0, i * RD_PAGE_SIZE, (i + 1) * RD_PAGE_SIZE);
    slab.free.push(i);
    this.pages--;
    if (slab.free.length === PAGES_PER_SLAB) {
      this.slabs[id] = undefined;
      this.emptySlabIds.push(id);
    } else if (slab.free.length === 1) {
      this.withFree.push(id);
    }
  }

  /** Pins count pages of one slab from slot on; returns the slab (unpin finds it even after clear()). */
  pin(slot: number, count: number): Slab {
    const slab = this.slabs[Math.floor(slot / PAGES_PER_SLAB)]!;
    for (let i = slot % PAGES_PER_SLAB, end = i + count; i < end; i++) slab.pins[i]++;
    return slab;
  }

  unpin(slab: Slab, first: number, count: number): void {
    for (let i = first, end = first + count; i < end; i++) {
      if (--slab.pins[i] !== 0 || (slab.orphans & (1 << i)) === 0) continue;
      slab.orphans &= ~(1 << i);
      // A slab dropped by clear() is garbage already: nothing to give back.
      if (this.slabs[slab.id] === slab) this.release(slab.id * PAGES_PER_SLAB + i);
    }
  }

  pinned(slot: number): boolean {
    return this.slabs[Math.floor(slot / PAGES_PER_SLAB)]!.pins[slot % PAGES_PER_SLAB] !== 0;
  }

  /** Releases a slot that left the page table: now, or when its last pin goes. */
  drop(slot: number): void {
    const slab = this.slabs[Math.floor(slot / PAGES_PER_SLAB)]!;
    const i = slot % PAGES_PER_SLAB;
    if (slab.pins[i] === 0) this.release(slot);
    else slab.orphans |= 1 << i;
  }

  /** The slab buffer holding a slot, and the slot's byte offset in it. */
  buffer(slot: number): Buffer {
    return this.slabs[Math.floor(slot / PAGES_PER_SLAB)]!.buf;
  }
  offset(slot: number): number {
    return (slot % PAGES_PER_SLAB) * RD_PAGE_SIZE;
  }

  /** Each slab's shared memory (null: none); lent pages still pinned are left to their borrowers. */
  shared(): (SharedArrayBuffer | null)[] {
    return this.slabs.map((s) => (s ? s.shared : null));
  }

  /** Takes slabs handed over from another thread, used: the slots the page table names. */
  adopt(slabs: (SharedArrayBuffer | null)[], used: Iterable<number>): void {
    this.clear();
    const taken = new Map<number, Set<number>>();
    for (const slot of used) {
      const id = Math.floor(slot / PAGES_PER_SLAB);
      if (!slabs[id]) throw new Error(`rd_mcp: adopted page slot ${slot} has no slab`);
      (taken.get(id) ?? taken.set(id, new Set()).get(id)!).add(slot % PAGES_PER_SLAB);
    }
    for (let id = 0; id < slabs.length; id++) {
      const sab = slabs[id];
      const t = taken.get(id);
      if (!sab || !t) {
        this.slabs[id] = undefined;
        this.emptySlabIds.push(id);
        continue;
      }
      const free: number[] = [];
      for (let i = PAGES_PER_SLAB - 1; i >= 0; i--) if (!t.has(i)) free.push(i);
      this.slabs[id] = slab(id, sab, free);
      if (free.length) this.withFree.push(id);
      this.pages += t.size;
    }
  }

  clear(): void {
    this.slabs.length = 0;
    this.withFree.length = 0;
    this.emptySlabIds.length = 0;
    this.pages = 0;
  }
}

/** Pages per leaf of the page table (16 MiB of the unit). */
const LEAF_PAGES = 4096;

/**
 * Page number -> pool slot, in leaves of LEAF_PAGES entries (slot + 1; 0: no
 * page) found through a small map: neighbouring pages are neighbouring
 * entries, where one Map entry per page (a few MB on a 1 GiB unit) cost a
 * cache miss per 4 KiB copied.
 */
class PageTable {
  private readonly leaves = new Map<number, Int32Array>();
  /** The leaf looked up last (sequential I/O stays in it). */
  private lastNo = -1;
  private last: Int32Array | undefined;
  size = 0;

  private leaf(no: number): Int32Array | undefined {
    if (no !== this.lastNo) {
      this.last = this.leaves.get(no);
      this.lastNo = no;
    }
    return this.last;
  }

  get(p: number): number | undefined {
    const no = Math.floor(p / LEAF_PAGES);
    const l = this.leaf(no);
    const v = l === undefined ? 0 : l[p - no * LEAF_PAGES];
    return v === 0 ? undefined : v - 1;
  }

  has(p: number): boolean {
    return this.get(p) !== undefined;
  }

  set(p: number, slot: number): void {
    const no = Math.floor(p / LEAF_PAGES);
    let l = this.leaf(no);
    if (l === undefined) {
      // The last entry counts the leaf's pages.
      l = new Int32Array(LEAF_PAGES + 1);
      this.leaves.set(no, l);
      this.last = l;
    }
    const i = p - no * LEAF_PAGES;
    if (l[i] === 0) {
      l[LEAF_PAGES]++;
      this.size++;
    }
    l[i] = slot + 1;
  }

  delete(p: number): void {
    const no = Math.floor(p / LEAF_PAGES);
    const l = this.leaf(no);
    const i = p - no * LEAF_PAGES;
    if (l === undefined || l[i] === 0) return;
    l[i] = 0;
    this.size--;
    if (--l[LEAF_PAGES] === 0) {
      this.leaves.delete(no);
      this.last = undefined;
    }
  }

  /** [page, slot] pairs of every page that has memory. */
  entries(): Int32Array {
    const out = new Int32Array(this.size * 2);
    let i = 0;
    for (const [no, l] of this.leaves) {
      for (let j = 0; j < LEAF_PAGES; j++) if (l[j] !== 0) (out[i++] = no * LEAF_PAGES + j), (out[i++] = l[j] - 1);
    }
    return out;
  }

  /** Every page that has memory. */
  *keys(): IterableIterator<number> {
    for (const [no, l] of this.leaves) {
      for (let i = 0; i < LEAF_PAGES; i++) if (l[i] !== 0) yield no * LEAF_PAGES + i;
    }
  }

  clear(): void {
    this.leaves.clear();
    this.lastNo = -1;
    this.last = undefined;
    this.size = 0;
  }
}

const RAM_CAPS: BackstoreCaps = {
  unmap: true,
  writeZeroes: true,
  lbaStatus: true,
  sanitizeOverwrite: true,
  sanitizeBlockErase: true,
  persistent: false,
  nonRotational: true,
};

export class RamBackstore implements Backstore {
  readonly plugin = 'rd_mcp';
  readonly caps = RAM_CAPS;
  readonly physicalBlockSize: number;
  /** Page number -> pool slot; absent pages read as zeros. */
  private readonly pages = new PageTable();
  private readonly pool = new PagePool();

  constructor(
    public size: number,
    readonly blockSize: number,
    readonly nullio: boolean,
    physicalBlockSize = blockSize,
  ) {
    this.physicalBlockSize = physicalBlockSize;
  }

  /** Bytes of page memory held, for tests and statistics. */
  get allocatedBytes(): number {
    return this.pool.pages * RD_PAGE_SIZE;
  }

  read(offset: number, length: number, sgl: Sgl): void {
    if (this.nullio) return;
    this.walk(offset, length, sgl, false);
  }

  write(offset: number, length: number, sgl: Sgl): void {
    if (this.nullio) return;
    this.walk(offset, length, sgl, true);
  }

  /**
   * Walks segments and pages together: each step moves one run of bytes,
   * up to a segment's end, between the segment and the pages.
   */
  private walk(offset: number, length: number, sgl: Sgl, write: boolean): void {
    let seg = 0;
    let segOff = 0;
    while (length > 0) {
      const b = sgl[seg];
      const room = Math.min(b.length - segOff, length);
      const pageNo = Math.floor(offset / RD_PAGE_SIZE);
      const inPage = offset - pageNo * RD_PAGE_SIZE;
      const n = write ? this.writeRun(pageNo, inPage, b, segOff, room) : this.readRun(pageNo, inPage, b, segOff, room);
      offset += n;
      length -= n;
      segOff += n;
      if (segOff === b.length) {
        seg++;
        segOff = 0;
      }
    }
  }

  /**
   * Reads at most room bytes from inPage of page pageNo on into b at segOff,
   * in one copy from pages that lie one after the other in a slab (what
   * sequential writes leave) or one fill for a run of absent pages; returns
   * how many.
   */
  private readRun(pageNo: number, inPage: number, b: Buffer, segOff: number, room: number): number {
    const first = Math.min(RD_PAGE_SIZE - inPage, room);
    const slot = this.pages.get(pageNo);
    if (slot === undefined) {
      const n = this.holeRun(pageNo, first, room);
      b.fill(0, segOff, segOff + n);
      return n;
    }
    const n = this.slabRun(pageNo, slot, first, room, false);
    const at = this.pool.offset(slot) + inPage;
    this.pool.buffer(slot).copy(b, segOff, at, at + n);
    return n;
  }

  /** Writes at most room bytes from b at segOff from inPage of page pageNo on, in one copy as readRun reads; returns how many. */
  private writeRun(pageNo: number, inPage: number, b: Buffer, segOff: number, room: number): number {
    let n = Math.min(RD_PAGE_SIZE - inPage, room);
    let slot = this.pages.get(pageNo);
    if (slot === undefined) {
      slot = this.pool.alloc();
      this.pages.set(pageNo, slot);
    } else if (this.pool.pinned(slot)) {
      slot = this.unshare(pageNo, slot, n < RD_PAGE_SIZE);
    } else {
      n = this.slabRun(pageNo, slot, n, room, true);
    }
    b.copy(this.pool.buffer(slot), this.pool.offset(slot) + inPage, segOff, segOff + n);
    return n;
  }

  /** n bytes from page pageNo, grown over the absent pages after it up to max: a run that reads as zeros. */
  private holeRun(pageNo: number, n: number, max: number): number {
    for (let p = pageNo + 1; n < max && !this.pages.has(p); p++) n = Math.min(n + RD_PAGE_SIZE, max);
    return n;
  }

  /**
   * n bytes from page pageNo (in slot), grown up to max over the pages after
   * it that lie next in the same slab (and, to be written, are not lent):
   * a run one copy moves.
   */
  private slabRun(pageNo: number, slot: number, n: number, max: number, toWrite: boolean): number {
    for (let p = pageNo + 1, next = slot + 1; n < max && next % PAGES_PER_SLAB !== 0 && this.pages.get(p) === next &&
      !(toWrite && this.pool.pinned(next)); p++, next++) {
      n = Math.min(n + RD_PAGE_SIZE, max);
    }
    return n;
  }

  /** A lent page about to change: the page number gets a fresh page (a copy when keep), the lent one stays as it is. */
  private unshare(pageNo: number, slot: number, keep: boolean): number {
    const fresh = this.pool.alloc();
    if (keep) {
      const at = this.pool.offset(slot);
      this.pool.buffer(slot).copy(this.pool.buffer(fresh), this.pool.offset(fresh), at, at + RD_PAGE_SIZE);
    }
    this.pages.set(pageNo, fresh);
    this.pool.drop(slot);
    return fresh;
  }

  /**
   * Views of the pages themselves (zeros for pages never written), pinned
   * until release(): what a read would copy, without the copy.
   */
  lend(offset: number, length: number): { sgl: Sgl; release: () => void } {
    const sgl: Buffer[] = [];
    // Triples: slab, first page in it, page count.
    const pins: (Slab | number)[] = [];
    while (length > 0) {
      const pageNo = Math.floor(offset / RD_PAGE_SIZE);
      const inPage = offset - pageNo * RD_PAGE_SIZE;
      const first = Math.min(RD_PAGE_SIZE - inPage, length);
      // nullio: no page is ever written, so every run is a hole.
      const slot = this.nullio ? undefined : this.pages.get(pageNo);
      let n: number;
      if (slot === undefined) {
        n = this.holeRun(pageNo, first, Math.min(length, ZEROS.length));
        sgl.push(ZEROS.subarray(0, n));
      } else {
        n = this.slabRun(pageNo, slot, first, length, false);
        const count = Math.ceil((inPage + n) / RD_PAGE_SIZE);
        const at = this.pool.offset(slot) + inPage;
        sgl.push(this.pool.buffer(slot).subarray(at, at + n));
        pins.push(this.pool.pin(slot, count), slot % PAGES_PER_SLAB, count);
      }
      offset += n;
      length -= n;
    }
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      for (let i = 0; i < pins.length; i += 3) this.pool.unpin(pins[i] as Slab, pins[i + 1] as number, pins[i + 2] as number);
    };
    return { sgl, release };
  }

  flush(): void {}

  /** Whole pages are freed; partial pages are zeroed, and freed once all zero. */
  unmap(offset: number, length: number): void {
    const end = offset + length;
    const first = Math.floor(offset / RD_PAGE_SIZE);
    const endPage = Math.ceil(end / RD_PAGE_SIZE);
    if (endPage - first > this.pages.size) {
      // A range larger than what is allocated (a whole TiB unit): visit the allocated pages, not the range.
      for (const p of [...this.pages.keys()]) if (p >= first && p < endPage) this.unmapPage(p, offset, end);
    } else {
      for (let p = first; p < endPage; p++) this.unmapPage(p, offset, end);
    }
  }

  private unmapPage(p: number, offset: number, end: number): void {
    let slot = this.pages.get(p);
    if (slot === undefined) return;
    const from = Math.max(offset, p * RD_PAGE_SIZE) - p * RD_PAGE_SIZE;
    const to = Math.min(end, (p + 1) * RD_PAGE_SIZE) - p * RD_PAGE_SIZE;
    const whole = from === 0 && to === RD_PAGE_SIZE;
    if (!whole && this.pool.pinned(slot)) slot = this.unshare(p, slot, true);
    const buf = this.pool.buffer(slot);
    const base = this.pool.offset(slot);
    if (!whole) buf.fill(0, base + from, base + to);
    if (whole || sglIsZero([buf], base, RD_PAGE_SIZE)) {
      this.pages.delete(p);
      this.pool.drop(slot);
    }
  }

  writeZeroes(offset: number, length: number): void {
    this.unmap(offset, length);
  }

  lbaStatus(offset: number, maxLength: number): LbaExtent {
    const end = Math.min(offset + maxLength, this.size);
    const first = Math.floor(offset / RD_PAGE_SIZE);
    const endPage = Math.ceil(end / RD_PAGE_SIZE);
    const deallocated = !this.pages.has(first);
    // `next`: the first page past the run that starts at `first`.
    let next = endPage;
    if (deallocated && endPage - first > this.pages.size) {
      // A long hole (a thin TiB unit is mostly one): look among the few allocated pages, not page by page.
      for (const k of this.pages.keys()) if (k > first && k < next) next = k;
    } else {
      // An allocated run is at most pages.size long, and this hole is shorter than that.
      next = first + 1;
      while (next < endPage && this.pages.has(next) !== deallocated) next++;
    }
    return { deallocated, length: Math.min(end, next * RD_PAGE_SIZE) - offset };
  }

  async sanitize(kind: 'overwrite' | 'block-erase', pattern?: Buffer): Promise<void> {
    this.pages.clear();
    this.pool.clear();
    if (kind === 'block-erase' || !pattern || sglIsZero([pattern], 0, pattern.length)) return;
    const page = Buffer.alloc(RD_PAGE_SIZE);
    for (let i = 0; i < RD_PAGE_SIZE; i += pattern.length) pattern.copy(page, i);
    // A non-zero pattern fills the medium: that is what SANITIZE OVERWRITE asks for.
    for (let p = 0; p * RD_PAGE_SIZE < this.size; p++) {
      this.write(p * RD_PAGE_SIZE, RD_PAGE_SIZE, [page]);
      if ((p & 0xfff) === 0xfff) await new Promise((r) => setImmediate(r));
    }
  }

  async resize(size: number): Promise<void> {
    if (size < this.size) this.unmap(size, this.size - size);
    this.size = size;
  }

  /**
   * The pages for another thread's instance of this unit (`adopt` of the factory), no byte copied. This
   * instance is done with them: the caller closes it next, with no command in flight.
   */
  handOver(): RamPages {
    return { slabs: this.pool.shared(), pages: this.pages.entries() };
  }

  /** Serves the pages another thread's instance handed over (handOver). */
  adopt(from: RamPages): void {
    const used: number[] = [];
    this.pages.clear();
    for (let i = 0; i < from.pages.length; i += 2) {
      if (from.pages[i] * RD_PAGE_SIZE >= this.size) throw new Error(`rd_mcp: adopted page ${from.pages[i]} lies beyond the unit's ${this.size} bytes`);
      this.pages.set(from.pages[i], from.pages[i + 1]);
      used.push(from.pages[i + 1]);
    }
    this.pool.adopt(from.slabs, used);
  }

  async close(): Promise<void> {
    this.pages.clear();
    this.pool.clear();
  }
}

export async function createRdMcp(opts: BackstoreOptions): Promise<Backstore> {
  const blockSize = opts.blockSize ?? 512;
  if (!opts.size || opts.size % blockSize !== 0) {
    throw new Error(`rd_mcp ${opts.name}: size must be a positive multiple of ${blockSize}`);
  }
  const physical = opts.physicalBlockSize ?? blockSize;
  if (physical < blockSize || physical % blockSize !== 0) {
    throw new Error(`rd_mcp ${opts.name}: physical block size ${physical} is not a multiple of block size ${blockSize}`);
  }
  const store = new RamBackstore(opts.size, blockSize, opts.nullio ?? false, physical);
  if (opts.adopt !== undefined) store.adopt(opts.adopt as RamPages);
  return store;
}

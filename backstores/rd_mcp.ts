// rd_mcp: RAM. Pages are allocated on first write, so unwritten and unmapped
// ranges cost no memory and read as zeros. Everything is synchronous: a RAM
// copy is cheaper than any hand-off to another thread.

import type { Backstore, BackstoreCaps, BackstoreOptions, LbaExtent } from './backstore';
import { Sgl, sglIsZero } from '../src/core/sgl';

/** Allocation unit; a multiple of both logical block sizes. */
export const RD_PAGE_SIZE = 4096;

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
  private readonly pages = new Map<number, Buffer>();

  constructor(
    public size: number,
    readonly blockSize: number,
    readonly nullio: boolean,
  ) {
    this.physicalBlockSize = blockSize;
  }

  /** Bytes of page memory held, for tests and statistics. */
  get allocatedBytes(): number {
    return this.pages.size * RD_PAGE_SIZE;
  }

  read(offset: number, length: number, sgl: Sgl): void {
    if (this.nullio) return;
    // Walk segments and pages together; each step copies up to a page or segment boundary.
    let seg = 0;
    let segOff = 0;
    while (length > 0) {
      const b = sgl[seg];
      const pageNo = Math.floor(offset / RD_PAGE_SIZE);
      const inPage = offset - pageNo * RD_PAGE_SIZE;
      const n = Math.min(RD_PAGE_SIZE - inPage, b.length - segOff, length);
      const page = this.pages.get(pageNo);
      if (page === undefined) b.fill(0, segOff, segOff + n);
      else page.copy(b, segOff, inPage, inPage + n);
      offset += n;
      length -= n;
      segOff += n;
      if (segOff === b.length) {
        seg++;
        segOff = 0;
      }
    }
  }

  write(offset: number, length: number, sgl: Sgl): void {
    if (this.nullio) return;
    let seg = 0;
    let segOff = 0;
    while (length > 0) {
      const b = sgl[seg];
      const pageNo = Math.floor(offset / RD_PAGE_SIZE);
      const inPage = offset - pageNo * RD_PAGE_SIZE;
      const n = Math.min(RD_PAGE_SIZE - inPage, b.length - segOff, length);
      let page = this.pages.get(pageNo);
      if (page === undefined) {
        page = Buffer.alloc(RD_PAGE_SIZE);
        this.pages.set(pageNo, page);
      }
      b.copy(page, inPage, segOff, segOff + n);
      offset += n;
      length -= n;
      segOff += n;
      if (segOff === b.length) {
        seg++;
        segOff = 0;
      }
    }
  }

  flush(): void {}

  /** Whole pages are freed; partial pages are zeroed, and freed once all zero. */
  unmap(offset: number, length: number): void {
    const end = offset + length;
    for (let p = Math.floor(offset / RD_PAGE_SIZE); p * RD_PAGE_SIZE < end; p++) {
      const page = this.pages.get(p);
      if (page === undefined) continue;
      const from = Math.max(offset, p * RD_PAGE_SIZE) - p * RD_PAGE_SIZE;
      const to = Math.min(end, (p + 1) * RD_PAGE_SIZE) - p * RD_PAGE_SIZE;
      if (from === 0 && to === RD_PAGE_SIZE) {
        this.pages.delete(p);
      } else {
        page.fill(0, from, to);
        if (sglIsZero([page], 0, RD_PAGE_SIZE)) this.pages.delete(p);
      }
    }
  }

  writeZeroes(offset: number, length: number): void {
    this.unmap(offset, length);
  }

  lbaStatus(offset: number, maxLength: number): LbaExtent {
    const end = Math.min(offset + maxLength, this.size);
    let p = Math.floor(offset / RD_PAGE_SIZE);
    const deallocated = !this.pages.has(p);
    while ((p + 1) * RD_PAGE_SIZE < end && this.pages.has(p + 1) !== deallocated) p++;
    return { deallocated, length: Math.min(end, (p + 1) * RD_PAGE_SIZE) - offset };
  }

  async sanitize(kind: 'overwrite' | 'block-erase', pattern?: Buffer): Promise<void> {
    this.pages.clear();
    if (kind === 'block-erase' || !pattern || sglIsZero([pattern], 0, pattern.length)) return;
    const page = Buffer.alloc(RD_PAGE_SIZE);
    for (let i = 0; i < RD_PAGE_SIZE; i += pattern.length) pattern.copy(page, i);
    // A non-zero pattern fills the medium: that is what SANITIZE OVERWRITE asks for.
    for (let p = 0; p * RD_PAGE_SIZE < this.size; p++) {
      this.pages.set(p, Buffer.from(page));
      if ((p & 0xfff) === 0xfff) await new Promise((r) => setImmediate(r));
    }
  }

  async resize(size: number): Promise<void> {
    if (size < this.size) this.unmap(size, this.size - size);
    this.size = size;
  }

  async close(): Promise<void> {
    this.pages.clear();
  }
}

export async function createRdMcp(opts: BackstoreOptions): Promise<Backstore> {
  const blockSize = opts.blockSize ?? 512;
  if (!opts.size || opts.size % blockSize !== 0) {
    throw new Error(`rd_mcp ${opts.name}: size must be a positive multiple of ${blockSize}`);
  }
  return new RamBackstore(opts.size, blockSize, opts.nullio ?? false);
}

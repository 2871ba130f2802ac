// A guest's memory as the vhost-user front-end shares it: regions of fds,
// each mapped once (one Buffer per region) and looked up by guest physical
// address (descriptors) or front-end virtual address (ring addresses).
// Translation never copies: it returns views of the region Buffers, and a
// range that leaves the mapped regions is refused, never clamped.

import { closeSync } from 'node:fs';
import { mmapFd, unmap } from '../../native';

export interface RegionSpec {
  gpa: number;
  size: number;
  uaddr: number;
  mmapOffset: number;
}

export interface MappedRegion extends RegionSpec {
  /** The whole mapping (mmapOffset + size bytes from file offset 0). */
  readonly map: Buffer;
  /** The region's bytes: map[mmapOffset, mmapOffset + size). */
  readonly view: Buffer;
}

export class GuestMemory {
  regions: MappedRegion[] = [];
  private last: MappedRegion | undefined;

  /** Maps a region from fd (closed afterwards, whatever happens). */
  add(spec: RegionSpec, fd: number): MappedRegion {
    try {
      if (spec.size <= 0 || spec.gpa + spec.size > Number.MAX_SAFE_INTEGER || spec.uaddr + spec.size > Number.MAX_SAFE_INTEGER) {
        throw new RangeError(`memory region gpa 0x${spec.gpa.toString(16)} size 0x${spec.size.toString(16)} is not addressable`);
      }
      for (const r of this.regions) {
        if (spec.gpa < r.gpa + r.size && r.gpa < spec.gpa + spec.size) {
          throw new RangeError(`memory region at gpa 0x${spec.gpa.toString(16)} overlaps one at 0x${r.gpa.toString(16)}`);
        }
      }
      const map = mmapFd(fd, spec.mmapOffset + spec.size);
      const r: MappedRegion = { ...spec, map, view: map.subarray(spec.mmapOffset, spec.mmapOffset + spec.size) };
      this.regions.push(r);
      return r;
    } finally {
      closeSync(fd);
    }
  }

  has(spec: RegionSpec): boolean {
    return this.regions.some((r) => r.gpa === spec.gpa && r.size === spec.size && r.uaddr === spec.uaddr && r.mmapOffset === spec.mmapOffset);
  }

  /** Takes the region matching spec out of the table (the caller unmaps it when nothing uses it). */
  remove(spec: RegionSpec): MappedRegion | undefined {
    const i = this.regions.findIndex((r) => r.gpa === spec.gpa && r.size === spec.size && r.uaddr === spec.uaddr);
    if (i < 0) return undefined;
    const [r] = this.regions.splice(i, 1);
    if (this.last === r) this.last = undefined;
    return r;
  }

  /** Empties the table; returns the regions for the caller to unmap. */
  clear(): MappedRegion[] {
    const all = this.regions;
    this.regions = [];
    this.last = undefined;
    return all;
  }

  private findGpa(addr: number): MappedRegion | undefined {
    const l = this.last;
    if (l !== undefined && addr >= l.gpa && addr < l.gpa + l.size) return l;
    for (const r of this.regions) {
      if (addr >= r.gpa && addr < r.gpa + r.size) return (this.last = r);
    }
    return undefined;
  }

  /** A view of [addr, addr+len) when it lies in one region (descriptor tables). */
  gpaView(addr: number, len: number): Buffer | undefined {
    const r = this.findGpa(addr);
    if (r === undefined) return undefined;
    const off = addr - r.gpa;
    if (off + len > r.size) return undefined;
    return r.view.subarray(off, off + len);
  }

  /**
   * Appends views of [addr, addr+len) to out, split where regions meet.
   * Returns false (out possibly partly filled) when any byte is unmapped.
   */
  gpaViews(addr: number, len: number, out: Buffer[]): boolean {
    while (len > 0) {
      const r = this.findGpa(addr);
      if (r === undefined) return false;
      const off = addr - r.gpa;
      const n = Math.min(len, r.size - off);
      out.push(r.view.subarray(off, off + n));
      addr += n;
      len -= n;
    }
    return true;
  }

  /** A view of front-end virtual addresses [uaddr, uaddr+len) in one region (rings). */
  qvaView(uaddr: number, len: number): Buffer | undefined {
    for (const r of this.regions) {
      if (uaddr >= r.uaddr && uaddr + len <= r.uaddr + r.size) {
        const off = uaddr - r.uaddr;
        return r.view.subarray(off, off + len);
      }
    }
    return undefined;
  }
}

/** Unmaps regions (their Buffers and every view become empty). */
export function unmapRegions(regions: MappedRegion[]): void {
  for (const r of regions) unmap(r.map);
}

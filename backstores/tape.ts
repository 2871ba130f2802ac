// tape: virtual cartridges as files, for the tape device type (src/scsi/ssc.ts)
// and the media changer (src/scsi/smc.ts). A directory is the shelf: every
// BARCODE.tape file in it is one cartridge. The format (docs/TAPE-FORMAT.md):
//
//   0    512 bytes  cartridge header: "TSIOTAPE", version, flags (bit 0: write
//                   protected), capacity in bytes, barcode
//   512  entries, each a 16-byte header, then its data:
//          "TSRB" count, length, check   count blocks of length bytes, data follows
//          "TSRF" count, 0,      check   count filemarks, no data
//          "TSRE" 0,     0,      check   end of data: nothing after it counts
//        check = count ^ length ^ 0x7473696f, so that stale bytes after an
//        overwrite are not taken for an entry.
//
// One write command becomes one entry, so its blocks stay contiguous and a
// read of many fixed blocks is one pread. The index kept in memory (entry
// offsets, first object, count and length) is built by walking the headers at
// open; it never holds data. Writing at a position discards what follows it,
// as on a real tape: the entry holding the position is cut (its header
// rewritten), and the file truncated after the new end of data.

import fs from 'node:fs';
import { join } from 'node:path';

import type { Backstore, BackstoreCaps, BackstoreOptions } from '../src/core/backstore';
import { sglSlice, type Sgl } from '../src/core/sgl';
import { BARCODE_RE, FILEMARK, type Cartridge, type CartridgeShelf } from '../src/scsi/tape-medium';
import { DIRECT_IO_ALIGN, FdIo, fdatasync, ftruncate, readFull } from './fd-io';

export const CARTRIDGE_HEADER = 512;
const ENTRY = 16;
const MAGIC = 'TSIOTAPE';
const VERSION = 1;
const CHECK = 0x7473696f;
const FLAG_WRITE_PROTECT = 0x1;
const Kind = { BLOCKS: 0x54535242, FILEMARKS: 0x54535246, EOD: 0x54535245 } as const; // "TSRB", "TSRF", "TSRE"
/** writev's IOV_MAX: a fixed-block write of many blocks is one iovec per block run, far below it. */
export const CARTRIDGE_SUFFIX = '.tape';

function entryHeader(kind: number, count: number, length: number): Buffer {
  const h = Buffer.alloc(ENTRY);
  h.writeUInt32BE(kind, 0);
  h.writeUInt32BE(count, 4);
  h.writeUInt32BE(length, 8);
  h.writeUInt32BE((count ^ length ^ CHECK) >>> 0, 12);
  return h;
}

const EOD_ENTRY = entryHeader(Kind.EOD, 0, 0);

/** A new, blank cartridge file. */
export function cartridgeImage(barcode: string, capacity: number, writeProtected = false): Buffer {
  const b = Buffer.alloc(CARTRIDGE_HEADER + ENTRY);
  b.write(MAGIC, 0, 'ascii');
  b.writeUInt32BE(VERSION, 8);
  b.writeUInt32BE(writeProtected ? FLAG_WRITE_PROTECT : 0, 12);
  b.writeBigUInt64BE(BigInt(capacity), 16);
  b.write(barcode, 24, 32, 'ascii');
  EOD_ENTRY.copy(b, CARTRIDGE_HEADER);
  return b;
}

/** One cartridge file, open. */
export class FileCartridge implements Cartridge {
  // The index, one slot per entry: file offset of its header, first object, object count, block length (or FILEMARK).
  private offs: number[] = [];
  private firsts: number[] = [];
  private counts: number[] = [];
  private lens: number[] = [];
  /** File offset of the end-of-data entry. */
  private end = CARTRIDGE_HEADER;
  /** The file's length is past the end-of-data entry (stale data after an overwrite). */
  private stale = false;
  private last = 0;

  /** Reads and writes as fileio's: on the loop what the page cache (or tmpfs) takes at once, the rest in the pool. */
  private readonly io: FdIo;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly barcode: string,
    readonly capacity: number,
    readonly writeProtected: boolean,
  ) {
    this.io = new FdIo({ fd, direct: false, align: DIRECT_IO_ALIGN, what: path, readonly: writeProtected });
  }

  static async open(path: string): Promise<FileCartridge> {
    let fd: number;
    let readOnly = false;
    try {
      fd = fs.openSync(path, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EACCES' && (e as NodeJS.ErrnoException).code !== 'EROFS') throw e;
      fd = fs.openSync(path, 'r'); // a read-only file is a write-protected cartridge
      readOnly = true;
    }
    try {
      const h = Buffer.alloc(CARTRIDGE_HEADER);
      await readFull(fd, [h], 0);
      if (h.toString('ascii', 0, 8) !== MAGIC) throw new Error(`${path}: not a tsio cartridge (no ${MAGIC} header)`);
      if (h.readUInt32BE(8) !== VERSION) throw new Error(`${path}: cartridge format version ${h.readUInt32BE(8)} is not ${VERSION}`);
      const barcode = h.toString('ascii', 24, 56).replace(/\0+$/, '');
      const wp = readOnly || (h.readUInt32BE(12) & FLAG_WRITE_PROTECT) !== 0;
      const c = new FileCartridge(path, fd, barcode, Number(h.readBigUInt64BE(16)), wp);
      await c.scan();
      return c;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** Builds the index from the entry headers; anything unreadable ends the data there. */
  private async scan(): Promise<void> {
    const size = fs.fstatSync(this.fd).size;
    const h = Buffer.alloc(ENTRY);
    let off = CARTRIDGE_HEADER;
    let objects = 0;
    for (;;) {
      if (off + ENTRY > size) break;
      await readFull(this.fd, [h], off);
      const kind = h.readUInt32BE(0);
      const count = h.readUInt32BE(4);
      const length = h.readUInt32BE(8);
      if (h.readUInt32BE(12) !== ((count ^ length ^ CHECK) >>> 0) || kind === Kind.EOD) break;
      if (kind === Kind.BLOCKS) {
        if (off + ENTRY + count * length > size) break; // cut short: the data ends before it
        this.push(off, objects, count, length);
        off += ENTRY + count * length;
      } else if (kind === Kind.FILEMARKS) {
        this.push(off, objects, count, FILEMARK);
        off += ENTRY;
      } else {
        break;
      }
      objects += count;
    }
    this.end = off;
    this.stale = size > off + ENTRY;
  }

  private push(off: number, first: number, count: number, length: number): void {
    this.offs.push(off);
    this.firsts.push(first);
    this.counts.push(count);
    this.lens.push(length);
  }

  get count(): number {
    const n = this.offs.length;
    return n === 0 ? 0 : this.firsts[n - 1] + this.counts[n - 1];
  }

  get used(): number {
    return this.end - CARTRIDGE_HEADER;
  }

  /** The entry holding object i (sequential access stays on the cached one). */
  private entry(i: number): number {
    const l = this.last;
    if (l < this.offs.length && this.firsts[l] <= i && i < this.firsts[l] + this.counts[l]) return l;
    if (l + 1 < this.offs.length && this.firsts[l + 1] <= i && i < this.firsts[l + 1] + this.counts[l + 1]) return (this.last = l + 1);
    let lo = 0;
    let hi = this.offs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.firsts[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    return (this.last = lo);
  }

  lengthOf(i: number): number {
    return this.lens[this.entry(i)];
  }

  runFrom(i: number, max: number): number {
    const e = this.entry(i);
    return Math.min(max, this.firsts[e] + this.counts[e] - i);
  }

  filemarksBefore(i: number): number {
    let n = 0;
    for (let e = 0; e < this.offs.length && this.firsts[e] < i; e++) {
      if (this.lens[e] === FILEMARK) n += Math.min(this.counts[e], i - this.firsts[e]);
    }
    return n;
  }

  nextFilemark(i: number): number {
    if (i >= this.count) return this.count;
    for (let e = this.entry(i); e < this.offs.length; e++) {
      if (this.lens[e] === FILEMARK) return Math.max(i, this.firsts[e]);
    }
    return this.count;
  }

  prevFilemark(i: number): number {
    if (i <= 0) return -1;
    for (let e = this.entry(Math.min(i, this.count) - 1); e >= 0; e--) {
      if (this.lens[e] === FILEMARK) return Math.min(i - 1, this.firsts[e] + this.counts[e] - 1);
    }
    return -1;
  }

  async read(i: number, length: number, sgl: Sgl, sglOffset: number): Promise<void> {
    const e = this.entry(i);
    const at = this.offs[e] + ENTRY + (i - this.firsts[e]) * this.lens[e];
    await this.io.read(at, length, sglSlice(sgl, sglOffset, length));
  }

  /** Drops every object from `at` on from the index; returns the file offset where the next entry goes. */
  private cut(at: number): { off: number; patch?: [number, Buffer] } {
    if (at >= this.count) return { off: this.end };
    const e = this.entry(at);
    const keep = at - this.firsts[e];
    const n = keep === 0 ? e : e + 1;
    let patch: [number, Buffer] | undefined;
    let off = this.offs[e];
    if (keep > 0) {
      this.counts[e] = keep;
      const len = this.lens[e];
      patch = [this.offs[e], entryHeader(len === FILEMARK ? Kind.FILEMARKS : Kind.BLOCKS, keep, len === FILEMARK ? 0 : len)];
      off += ENTRY + (len === FILEMARK ? 0 : keep * len);
    }
    this.offs.length = this.firsts.length = this.counts.length = this.lens.length = n;
    this.last = 0;
    this.stale = true;
    return { off, patch };
  }

  async write(at: number, count: number, length: number, sgl: Sgl | undefined): Promise<void> {
    if (count === 0) return;
    const { off, patch } = this.cut(at);
    // The entry that keeps part of its objects is cut first: a crash after it leaves a shorter tape, never a longer one.
    if (patch) await this.io.write(patch[0], ENTRY, [patch[1]], false);
    const marks = length === FILEMARK;
    const bytes = marks ? 0 : count * length;
    const bufs = [entryHeader(marks ? Kind.FILEMARKS : Kind.BLOCKS, count, marks ? 0 : length)];
    if (!marks) bufs.push(...sglSlice(sgl!, 0, bytes));
    bufs.push(EOD_ENTRY);
    const first = this.count;
    await this.io.write(off, 2 * ENTRY + bytes, bufs, false);
    this.push(off, first, count, length);
    this.end = off + ENTRY + bytes;
    await this.trim();
  }

  async erase(at: number): Promise<void> {
    const { off, patch } = this.cut(at);
    if (patch) await this.io.write(patch[0], ENTRY, [patch[1]], false);
    await this.io.write(off, ENTRY, [EOD_ENTRY], false);
    this.end = off;
    await this.trim();
  }

  /** After an overwrite, the file ends with its end-of-data entry again. */
  private async trim(): Promise<void> {
    if (!this.stale) return;
    this.stale = false;
    await this.io.holdingInode(() => ftruncate(this.fd, this.end + ENTRY));
  }

  flush(): Promise<void> {
    return fdatasync(this.fd);
  }

  close(): Promise<void> {
    return this.io.close();
  }
}

/** Cartridge files open anywhere in this process: one drive at a time may hold a cartridge. */
const openPaths = new Set<string>();

/** A directory of cartridge files. */
export class DirShelf implements CartridgeShelf {
  constructor(readonly dir: string) {}

  pathOf(barcode: string): string {
    if (!BARCODE_RE.test(barcode)) throw new Error(`'${barcode}' is not a barcode (1 to 32 of A-Z, 0-9, _ and -)`);
    return join(this.dir, barcode + CARTRIDGE_SUFFIX);
  }

  list(): string[] {
    return fs.readdirSync(this.dir).filter((f) => f.endsWith(CARTRIDGE_SUFFIX)).map((f) => f.slice(0, -CARTRIDGE_SUFFIX.length))
      .filter((b) => BARCODE_RE.test(b)).sort();
  }

  has(barcode: string): boolean {
    return fs.existsSync(this.pathOf(barcode));
  }

  async open(barcode: string): Promise<Cartridge> {
    const path = this.pathOf(barcode);
    if (openPaths.has(path)) throw new Error(`cartridge ${barcode} is in another drive`);
    openPaths.add(path);
    try {
      return await FileCartridge.open(path);
    } catch (e) {
      openPaths.delete(path);
      throw e;
    }
  }

  async close(c: Cartridge): Promise<void> {
    const f = c as FileCartridge;
    openPaths.delete(f.path);
    await f.close();
  }

  async create(barcode: string, capacity: number): Promise<void> {
    const path = this.pathOf(barcode);
    // 'wx': an existing cartridge is never overwritten.
    await fs.promises.writeFile(path, cartridgeImage(barcode, capacity), { flag: 'wx' });
  }

  /** Sets or clears a cartridge's write-protect tab (not while a drive holds it). */
  async setWriteProtect(barcode: string, on: boolean): Promise<void> {
    const path = this.pathOf(barcode);
    if (openPaths.has(path)) throw new Error(`cartridge ${barcode} is in a drive`);
    const fd = fs.openSync(path, 'r+');
    try {
      const f = Buffer.alloc(4);
      f.writeUInt32BE(on ? FLAG_WRITE_PROTECT : 0);
      fs.writeSync(fd, f, 0, 4, 12);
    } finally {
      fs.closeSync(fd);
    }
  }
}

const NO_BLOCKS: BackstoreCaps = {
  unmap: false, writeZeroes: false, lbaStatus: false, sanitizeOverwrite: false, sanitizeBlockErase: false,
  persistent: true, nonRotational: false,
};

const notBlocks = (): never => {
  throw new Error('a tape or changer unit has no logical blocks');
};

/**
 * The storage object of a tape drive or a media changer: its shelf of
 * cartridges. It has no logical blocks; the device type's own commands
 * (ssc.ts, smc.ts) reach the cartridges through the shelf.
 */
export class ShelfBackstore implements Backstore {
  readonly size = 0;
  readonly blockSize = 512;
  readonly physicalBlockSize = 512;
  readonly caps = NO_BLOCKS;
  readonly shelf: DirShelf;

  constructor(
    readonly plugin: string,
    dir: string,
    /** tape: the cartridge in the drive at start; changer: cartridges for an empty library. */
    readonly cartridges: string[],
    /** Capacity of cartridges made for the above when their files are missing. */
    readonly capacity: number,
    /** The storage object's fields, for the device type (a changer's slots and drives). */
    readonly options: ShelfOptions,
  ) {
    this.shelf = new DirShelf(dir);
  }

  read = notBlocks;
  write = notBlocks;
  flush(): void {}
  unmap = notBlocks;
  writeZeroes = notBlocks;
  lbaStatus = notBlocks;

  /** Makes the named cartridges that do not exist yet. */
  async createMissing(): Promise<void> {
    for (const b of this.cartridges) if (!this.shelf.has(b)) await this.shelf.create(b, this.capacity);
  }

  /** Set by the device type: unloads cartridges, writes library state. */
  onClose: (() => Promise<void>) | undefined = undefined;

  async close(): Promise<void> {
    await this.onClose?.();
  }
}

export const DEFAULT_CARTRIDGE_CAPACITY = 1 << 30;

/** The fields of tape and changer storage objects (specs/backstores/tape.yaml, changer.yaml). */
export interface ShelfOptions extends BackstoreOptions {
  /** tape: the cartridge in the drive at start. */
  cartridge?: string;
  /** changer: barcodes a new library starts with, comma-separated. */
  cartridges?: string;
  capacity?: number;
  /** changer: tape storage object names, comma-separated. */
  drives?: string;
  slots?: number;
  import_export?: number;
}

/** The items of a comma-separated field. */
export const list = (s: string | undefined): string[] => (s ? s.split(',').map((x) => x.trim()).filter((x) => x !== '') : []);

function shelfOptions(opts: ShelfOptions, plugin: string): ShelfBackstore {
  if (!opts.dev) throw new Error(`${plugin} ${opts.name}: dev (the directory holding cartridges) is required`);
  if (!fs.existsSync(opts.dev) || !fs.statSync(opts.dev).isDirectory()) throw new Error(`${plugin} ${opts.name}: ${opts.dev} is not a directory`);
  const cartridges = plugin === 'tape' ? list(opts.cartridge) : list(opts.cartridges);
  for (const b of cartridges) if (!BARCODE_RE.test(b)) throw new Error(`${plugin} ${opts.name}: '${b}' is not a barcode (1 to 32 of A-Z, 0-9, _ and -)`);
  return new ShelfBackstore(plugin, opts.dev, cartridges, opts.capacity ?? DEFAULT_CARTRIDGE_CAPACITY, opts);
}

export async function createTape(opts: BackstoreOptions): Promise<Backstore> {
  const b = shelfOptions(opts, 'tape');
  if (b.cartridges.length > 1) throw new Error(`tape ${opts.name}: a drive holds one cartridge`);
  await b.createMissing();
  return b;
}

export async function createChanger(opts: BackstoreOptions): Promise<Backstore> {
  const b = shelfOptions(opts, 'changer');
  await b.createMissing();
  return b;
}

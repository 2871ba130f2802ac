// fileio: a regular file as a logical unit. Sparse by nature: it is created
// with ftruncate, UNMAP punches holes, GET LBA STATUS reads the hole map.
// Buffered (page cache) by default, O_DIRECT with opts.direct.

import fs from 'node:fs';

import type { Backstore, BackstoreCaps, BackstoreOptions, LbaExtent } from '../src/core/backstore';
import type { Sgl } from '../src/core/sgl';
import {
  AttrWatch,
  FALLOC_PUNCH_HOLE,
  FALLOC_ZERO_RANGE,
  constants,
  fadvise,
  fallocate,
  isUnsupported,
  seekData,
  seekHole,
} from '../native';
import { DIRECT_IO_ALIGN, FdIo, ftruncate, reopen } from './fd-io';
import { threadRing } from './ring-io';

export const DEFAULT_BLOCK_SIZE = 512;
/** Largest logical block we accept; SCSI allows more, but nothing real uses it. */
const MAX_BLOCK_SIZE = 65536;

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

class FileioBackstore implements Backstore {
  readonly plugin = 'fileio';
  readonly physicalBlockSize: number;
  readonly caps: BackstoreCaps;
  /** The file system frees ranges (FALLOC_FL_PUNCH_HOLE); learnt at open, corrected on first EOPNOTSUPP. */
  private canPunch: boolean;
  private canZeroRange = true;
  private watcher: { close(): void } | undefined;
  /** Times the health watch woke the loop (tests read it: writes must not). */
  healthWakeups = 0;

  constructor(
    private readonly io: FdIo,
    private readonly path: string,
    private _size: number,
    readonly blockSize: number,
    canPunch: boolean,
  ) {
    this.physicalBlockSize = blockSize;
    this.canPunch = canPunch;
    this.caps = {
      unmap: canPunch,
      writeZeroes: true,
      lbaStatus: canPunch,
      sanitizeOverwrite: true,
      sanitizeBlockErase: true,
      persistent: true,
      nonRotational: false,
    };
  }

  get size(): number {
    return this._size;
  }

  read(offset: number, length: number, sgl: Sgl): void | Promise<void> {
    return this.io.read(offset, length, sgl);
  }

  write(offset: number, length: number, sgl: Sgl, fua: boolean): void | Promise<void> {
    return this.io.write(offset, length, sgl, fua);
  }

  flush(): Promise<void> {
    return this.io.flush();
  }

  /** Punches a hole; where the file system cannot, writes zeros (the range still reads zeros). */
  async unmap(offset: number, length: number): Promise<void> {
    this.io.checkWritable('fallocate');
    if (length === 0) return;
    if (await this.punch(offset, length)) return;
    await this.zero(offset, length);
  }

  /** A punched hole reads zeros and costs nothing, so it is the cheapest zeroing there is. */
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.unmap(offset, length);
  }

  async lbaStatus(offset: number, maxLength: number): Promise<LbaExtent> {
    this.io.checkOpen('lseek');
    if (!this.canPunch) return { deallocated: false, length: maxLength };
    const data = await this.io.holdingInode(() => seekData(this.io.fd, offset));
    let deallocated: boolean;
    let end: number;
    if (data === -1) {
      // No data at or after offset: a hole to the end of the file.
      deallocated = true;
      end = offset + maxLength;
    } else if (data > offset) {
      deallocated = true;
      end = data;
    } else {
      deallocated = false;
      const hole = await this.io.holdingInode(() => seekHole(this.io.fd, offset));
      end = hole === -1 ? offset + maxLength : hole;
    }
    // Extents come in file-system blocks; report whole logical blocks. A
    // logical block that is only partly a hole still holds data: mapped.
    const bs = this.blockSize;
    if (deallocated) {
      end = Math.floor(end / bs) * bs;
      if (end <= offset) return { deallocated: false, length: Math.min(bs, maxLength) };
    } else {
      end = Math.ceil(end / bs) * bs;
    }
    return { deallocated, length: Math.min(end - offset, maxLength) };
  }

  /** Starts readahead; a hint only, so a failure is not the command's. */
  async prefetch(offset: number, length: number): Promise<void> {
    this.io.checkOpen('posix_fadvise');
    await fadvise(this.io.fd, offset, length, constants.POSIX_FADV_WILLNEED).catch(() => undefined);
  }

  async sanitize(kind: 'overwrite' | 'block-erase', pattern?: Buffer): Promise<void> {
    if (kind === 'overwrite') return this.io.overwrite(this._size, this.blockSize, pattern);
    await this.unmap(0, this._size);
    await this.io.flush();
  }

  async resize(size: number): Promise<void> {
    this.io.checkWritable('ftruncate');
    checkSize(size, this.blockSize, this.path);
    await this.io.holdingInode(() => ftruncate(this.io.fd, size));
    this._size = size;
  }

  /**
   * A deleted backing file still reads and writes through our descriptor, but whatever is written then is
   * gone once the store closes: the unit stops serving it (inotify sees the link count change, IN_ATTRIB;
   * writes raise no event, so no cost per command).
   */
  watchHealth(onLost: (why: string) => void): void {
    try {
      // Not fs.watch: it always asks for IN_MODIFY, a wake-up, an inotify read and an fstat for every write.
      this.watcher = new AttrWatch(this.path, () => {
        this.healthWakeups++;
        let links: number;
        try {
          links = fs.fstatSync(this.io.fd).nlink;
        } catch {
          return; // closed meanwhile
        }
        if (links !== 0) return;
        this.watcher?.close();
        onLost(`the backing file ${this.path} was deleted`);
      });
    } catch {
      // No inotify here (or no watches left): a deleted file then goes unnoticed, as before.
    }
  }

  /** The file's allocated bytes, and what its file system still gives an unprivileged writer. */
  async space(): Promise<{ used: number; free: number }> {
    this.io.checkOpen('fstatfs');
    const at = `/proc/self/fd/${this.io.fd}`;
    const [st, sfs] = await Promise.all([fs.promises.stat(at), fs.promises.statfs(at)]);
    return { used: st.blocks * 512, free: sfs.bavail * sfs.bsize };
  }

  /** After an EIO: a deleted file is gone even where inotify did not tell. */
  lost(): string | undefined {
    try {
      return fs.fstatSync(this.io.fd).nlink === 0 ? `the backing file ${this.path} was deleted` : undefined;
    } catch {
      return undefined;
    }
  }

  close(): Promise<void> {
    this.watcher?.close();
    return this.io.close();
  }

  /** true when the hole is punched; false when the file system cannot punch. */
  private async punch(offset: number, length: number): Promise<boolean> {
    if (!this.canPunch) return false;
    try {
      await this.io.holdingInode(() => this.io.fallocate(FALLOC_PUNCH_HOLE, offset, length));
      return true;
    } catch (e) {
      if (!isUnsupported(e)) throw e;
      this.canPunch = false;
      return false;
    }
  }

  /** Zeroes without deallocating: ZERO_RANGE where the file system has it, else written zeros. */
  private async zero(offset: number, length: number): Promise<void> {
    if (this.canZeroRange) {
      try {
        await this.io.holdingInode(() => this.io.fallocate(FALLOC_ZERO_RANGE, offset, length));
        return;
      } catch (e) {
        if (!isUnsupported(e)) throw e;
        this.canZeroRange = false;
      }
    }
    await this.io.writePattern(offset, length, this.blockSize);
  }
}

function checkSize(size: number, blockSize: number, path: string): void {
  if (!Number.isSafeInteger(size) || size <= 0 || size % blockSize !== 0) {
    throw new RangeError(`fileio ${path}: size ${size} must be a positive multiple of the block size ${blockSize}`);
  }
}

/** Opens (creating if missing) the file at opts.dev. */
export async function createFileio(opts: BackstoreOptions): Promise<Backstore> {
  const path = opts.dev;
  if (!path) throw new Error(`fileio ${opts.name}: dev (the file path) is required`);
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!isPowerOfTwo(blockSize) || blockSize < DEFAULT_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE) {
    throw new RangeError(`fileio ${opts.name}: block size ${blockSize} must be a power of two from 512 to 65536`);
  }
  if (opts.size !== undefined) checkSize(opts.size, blockSize, path);
  const readonly = opts.readonly === true;
  const direct = opts.direct === true;
  const { O_RDONLY, O_RDWR, O_CREAT, O_DIRECT, O_DSYNC } = fs.constants;
  const mode = (readonly ? O_RDONLY : O_RDWR) | (direct ? O_DIRECT : 0);

  // Setup is synchronous on purpose: it happens once, before the store serves I/O.
  let fd: number;
  try {
    fd = fs.openSync(path, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || readonly) throw e;
    if (opts.size === undefined) throw new Error(`fileio ${opts.name}: ${path} does not exist and no size was given to create it`);
    fd = fs.openSync(path, mode | O_CREAT, 0o600);
  }

  let dsyncFd: number | undefined;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`fileio ${opts.name}: ${path} is not a regular file (use the block plugin for devices)`);
    let size: number;
    if (opts.size !== undefined) {
      size = opts.size;
      // ftruncate grows the file sparsely: no block is allocated until written.
      // A larger file is left alone; the store just uses its first size bytes.
      if (st.size < size && !readonly) fs.ftruncateSync(fd, size);
    } else {
      size = Math.floor(st.size / blockSize) * blockSize;
      if (size === 0) throw new Error(`fileio ${opts.name}: ${path} is smaller than one block and no size was given`);
    }
    if (!readonly) dsyncFd = reopen(fd, O_RDWR | O_DSYNC | (direct ? O_DIRECT : 0));

    const io = new FdIo({ fd, dsyncFd, direct, align: DIRECT_IO_ALIGN, what: `fileio ${path}`, readonly, ring: threadRing() });
    const canPunch = readonly ? true : await probePunch(fd, Math.max(st.size, size), blockSize);
    return new FileioBackstore(io, path, size, blockSize, canPunch);
  } catch (e) {
    if (dsyncFd !== undefined) fs.closeSync(dsyncFd);
    fs.closeSync(fd);
    throw e;
  }
}

/**
 * Whether the file system punches holes, asked where it harms nothing: one
 * block just past the end of the file, with KEEP_SIZE so the file does not grow.
 * Only "not supported" answers no; any other failure will show on real use.
 */
async function probePunch(fd: number, fileSize: number, blockSize: number): Promise<boolean> {
  try {
    await fallocate(fd, FALLOC_PUNCH_HOLE, fileSize, blockSize);
    return true;
  } catch (e) {
    return !isUnsupported(e);
  }
}

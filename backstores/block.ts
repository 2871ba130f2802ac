// block: a kernel block device as a logical unit, held exclusively (O_EXCL)
// so no mount or second target writes under us. Geometry comes from the
// kernel; UNMAP is a zeroing deallocation (fallocate PUNCH_HOLE: the device's
// WRITE ZEROES with unmap allowed), WRITE SAME zeroing is BLKZEROOUT.

import fs from 'node:fs';

import type { Backstore, BackstoreCaps, BackstoreOptions, LbaExtent } from '../src/core/backstore';
import type { Sgl } from '../src/core/sgl';
import { FALLOC_PUNCH_HOLE, blkZeroOut, blockDeviceInfo, isUnsupported } from '../native';
import { DIRECT_IO_ALIGN, FdIo, reopen } from './fd-io';
import { threadRing } from './ring-io';

/** What sysfs tells about the device's queue; undefined where it cannot be read. */
interface QueueInfo {
  /** The device zeroes ranges on request (WRITE ZEROES, or WRITE SAME with UNMAP), and may deallocate them. */
  writeZeroes?: boolean;
  rotational?: boolean;
}

/** The device's /sys/dev/block/MAJ:MIN: present as long as the kernel has the device. */
function sysfsNode(fd: number): string {
  const rdev = fs.fstatSync(fd, { bigint: true }).rdev;
  // glibc's dev_t layout (gnu_dev_major/gnu_dev_minor).
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return `/sys/dev/block/${major}:${minor}`;
}

/**
 * Reads /sys/dev/block/MAJ:MIN/queue (a partition's queue is its disk's,
 * one level up). Sync: it runs once, at open.
 */
function queueInfo(fd: number): QueueInfo {
  const base = sysfsNode(fd);
  const read = (name: string): string | undefined => {
    for (const dir of [`${base}/queue`, `${base}/../queue`]) {
      try {
        return fs.readFileSync(`${dir}/${name}`, 'utf8').trim();
      } catch {
        // try the parent disk
      }
    }
    return undefined;
  };
  const writeZeroesMax = read('write_zeroes_max_bytes');
  const rotational = read('rotational');
  return {
    writeZeroes: writeZeroesMax === undefined ? undefined : writeZeroesMax !== '0',
    rotational: rotational === undefined ? undefined : rotational !== '0',
  };
}

class BlockBackstore implements Backstore {
  readonly plugin = 'block';
  readonly caps: BackstoreCaps;

  constructor(
    private readonly io: FdIo,
    readonly size: number,
    readonly blockSize: number,
    readonly physicalBlockSize: number,
    queue: QueueInfo,
    private readonly path: string,
    private readonly sysfs: string,
  ) {
    // UNMAP must leave zeros (the core reports LBPRZ): a plain discard (BLKDISCARD) is only advice a device
    // may ignore or answer with stale data, so a device that cannot zero-and-deallocate is not thin here.
    // Without sysfs we assume it can; an EOPNOTSUPP then surfaces per command.
    const discard = queue.writeZeroes ?? true;
    this.caps = {
      unmap: discard,
      writeZeroes: true,
      lbaStatus: false,
      sanitizeOverwrite: true,
      sanitizeBlockErase: discard,
      persistent: true,
      nonRotational: queue.rotational === false,
    };
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

  /**
   * fallocate(PUNCH_HOLE) on the device: WRITE ZEROES that may deallocate, never falling back to writing
   * zeros, so the range reads zeros afterwards (a loop device punches its file). The kernel drops the range
   * from the page cache first.
   */
  async unmap(offset: number, length: number): Promise<void> {
    this.io.checkWritable('fallocate(PUNCH_HOLE)');
    if (length === 0) return;
    await this.io.fallocate(FALLOC_PUNCH_HOLE, offset, length);
  }

  /** BLKZEROOUT: the device's WRITE ZEROES where it has one, the kernel writing zeros where not. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.io.checkWritable('ioctl(BLKZEROOUT)');
    if (length === 0) return;
    try {
      await blkZeroOut(this.io.fd, offset, length);
    } catch (e) {
      if (!isUnsupported(e)) throw e;
      await this.io.writePattern(offset, length, this.blockSize);
    }
  }

  /** A block device does not report allocation: everything is mapped. */
  lbaStatus(offset: number, maxLength: number): LbaExtent {
    this.io.checkOpen('lbaStatus');
    return { deallocated: false, length: maxLength };
  }

  async sanitize(kind: 'overwrite' | 'block-erase', pattern?: Buffer): Promise<void> {
    if (kind === 'overwrite') return this.io.overwrite(this.size, this.blockSize, pattern);
    await this.unmap(0, this.size);
    await this.io.flush();
  }

  /** A device removed from under us (hot unplug, a deleted SCSI disk) answers EIO; its sysfs node is gone. */
  lost(): string | undefined {
    return fs.existsSync(this.sysfs) ? undefined : `the device ${this.path} was removed`;
  }

  close(): Promise<void> {
    return this.io.close();
  }
}

/** Opens the block device at opts.dev exclusively. */
export async function createBlock(opts: BackstoreOptions): Promise<Backstore> {
  const path = opts.dev;
  if (!path) throw new Error(`block ${opts.name}: dev (the block device path) is required`);
  const readonly = opts.readonly === true;
  const direct = opts.direct === true;
  const { O_RDONLY, O_RDWR, O_EXCL, O_DIRECT, O_DSYNC } = fs.constants;
  const access = readonly ? O_RDONLY : O_RDWR;

  // O_EXCL on a block device (without O_CREAT) claims it: it fails with EBUSY
  // while it is mounted, in a RAID/LVM set or held by another exclusive opener.
  let fd: number;
  try {
    fd = fs.openSync(path, access | O_EXCL | (direct ? O_DIRECT : 0));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EBUSY') {
      err.message = `block ${opts.name}: ${path} is busy (mounted, part of another device, or opened exclusively by someone else): ${err.message}`;
    }
    throw err;
  }

  let dsyncFd: number | undefined;
  try {
    if (!fs.fstatSync(fd).isBlockDevice()) {
      throw Object.assign(new Error(`block ${opts.name}: ${path} is not a block device (use the fileio plugin for files)`), {
        code: 'ENOTBLK',
      });
    }
    const info = blockDeviceInfo(fd);
    const lbs = info.logicalBlockSize;
    // A larger logical block than the device's can be emulated (every I/O is
    // then a whole number of device blocks); a smaller one cannot.
    const blockSize = opts.blockSize ?? lbs;
    if (blockSize < lbs || blockSize % lbs !== 0 || (blockSize & (blockSize - 1)) !== 0) {
      throw new RangeError(`block ${opts.name}: block size ${blockSize} is not a power-of-two multiple of ${path}'s logical block size ${lbs}`);
    }
    const size = Math.floor(info.size / blockSize) * blockSize;
    if (size === 0) throw new Error(`block ${opts.name}: ${path} is smaller than one block`);
    const physical = Math.max(info.physicalBlockSize, blockSize);
    // The O_DSYNC twin is not O_EXCL: our own claim would refuse it.
    if (!readonly) dsyncFd = reopen(fd, O_RDWR | O_DSYNC | (direct ? O_DIRECT : 0));
    const io = new FdIo({ fd, dsyncFd, direct, align: Math.max(lbs, DIRECT_IO_ALIGN), unit: lbs, what: `block ${path}`, readonly, device: true, ring: threadRing() });
    return new BlockBackstore(io, size, blockSize, physical, queueInfo(fd), path, sysfsNode(fd));
  } catch (e) {
    if (dsyncFd !== undefined) fs.closeSync(dsyncFd);
    fs.closeSync(fd);
    throw e;
  }
}

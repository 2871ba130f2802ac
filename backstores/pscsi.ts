// pscsi: a real SCSI device (an sg node, or a SCSI block device such as
// /dev/sdX, /dev/sr0, /dev/st0's sg twin) whose commands pass through with
// SG_IO, as LIO's target_core_pscsi. The device answers; this module opens
// it, learns its type (and a disk's geometry) once, and moves CDBs and data.
// read/write exist for core features that move blocks themselves (EXTENDED
// COPY) and only on disks.

import fs from 'node:fs';

import type { Backstore, BackstoreCaps, BackstoreOptions, LbaExtent, PassthroughResult, ScsiDevice } from '../src/core/backstore';
import type { Sgl } from '../src/core/sgl';
import { DataDir } from '../src/core/opcodes';
import { SenseKey, Status, decodeSense } from '../src/core/sense';
import { errnoError, sgIo } from '../native';
import { DEVICE_TYPE, passthroughError } from '../src/scsi/passthrough';

/** Command timeouts, as LIO's pscsi: disks answer quickly; tapes rewind and CDs spin up. */
const TIMEOUT_DISK_MS = 15_000;
const TIMEOUT_OTHER_MS = 500_000;

const SCSI_GENERIC_MAJOR = 21;

const CAPS: BackstoreCaps = {
  unmap: false,
  writeZeroes: false,
  lbaStatus: false,
  sanitizeOverwrite: false,
  sanitizeBlockErase: false,
  persistent: true,
  nonRotational: false,
};

class PscsiDevice implements ScsiDevice {
  tapeBlockLength = 0;
  deviceType = 0x1f;
  closed = false;

  constructor(
    readonly fd: number,
    readonly path: string,
  ) {}

  get timeoutMs(): number {
    return this.deviceType === DEVICE_TYPE.DISK ? TIMEOUT_DISK_MS : TIMEOUT_OTHER_MS;
  }

  execute(cdb: Buffer, dir: DataDir, sgl: Sgl | undefined, length: number): Promise<PassthroughResult> {
    if (this.closed) return Promise.reject(errnoError('EBADF', 'ioctl(SG_IO)', this.path));
    return sgIo(this.fd, cdb, length === 0 ? DataDir.NONE : dir, sgl, length, this.timeoutMs);
  }

  /** A command the backstore itself sends; a device error becomes the device's sense. */
  async run(cdb: number[], dir: DataDir, sgl: Sgl | undefined, length: number): Promise<number> {
    const r = await this.execute(Buffer.from(cdb), dir, sgl, length);
    const moved = length - r.resid;
    const err = passthroughError(r, moved);
    if (err !== undefined) throw err;
    return moved;
  }

  /** Same, retried while the device reports a unit attention (power on, medium change) from before we came. */
  async runSettled(cdb: number[], dir: DataDir, length: number): Promise<Buffer> {
    const buf = Buffer.alloc(length);
    for (let i = 0; ; i++) {
      const r = await this.execute(Buffer.from(cdb), dir, [buf], length);
      const ua = r.status === Status.CHECK_CONDITION && r.sense !== undefined && decodeSense(r.sense).key === SenseKey.UNIT_ATTENTION;
      if (ua && i < 4) continue;
      const moved = length - r.resid;
      const err = passthroughError(r, moved);
      if (err !== undefined) throw err;
      return buf.subarray(0, moved);
    }
  }
}

function cdb16(op: number, lba: number, blocks: number): number[] {
  const b = Buffer.alloc(16);
  b[0] = op;
  b.writeBigUInt64BE(BigInt(lba), 2);
  b.writeUInt32BE(blocks, 10);
  return [...b];
}

class PscsiBackstore implements Backstore {
  readonly plugin = 'pscsi';
  readonly caps = CAPS;

  constructor(
    readonly passthrough: PscsiDevice,
    readonly size: number,
    readonly blockSize: number,
    readonly physicalBlockSize: number,
  ) {}

  private disk(what: string): PscsiDevice {
    if (this.passthrough.deviceType !== DEVICE_TYPE.DISK) {
      throw errnoError('EOPNOTSUPP', what, `${this.passthrough.path} is not a disk`);
    }
    return this.passthrough;
  }

  async read(offset: number, length: number, sgl: Sgl): Promise<void> {
    const dev = this.disk('read');
    if (length === 0) return;
    await dev.run(cdb16(0x88, offset / this.blockSize, length / this.blockSize), DataDir.IN, sgl, length);
  }

  async write(offset: number, length: number, sgl: Sgl, fua: boolean): Promise<void> {
    const dev = this.disk('write');
    if (length === 0) return;
    const cdb = cdb16(0x8a, offset / this.blockSize, length / this.blockSize);
    if (fua) cdb[1] |= 0x08;
    await dev.run(cdb, DataDir.OUT, sgl, length);
  }

  async flush(): Promise<void> {
    if (this.passthrough.deviceType !== DEVICE_TYPE.DISK) return;
    await this.passthrough.run([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], DataDir.NONE, undefined, 0);
  }

  unmap(): Promise<void> {
    return Promise.reject(errnoError('EOPNOTSUPP', 'unmap', 'pscsi passes UNMAP through to the device'));
  }

  writeZeroes(): Promise<void> {
    return Promise.reject(errnoError('EOPNOTSUPP', 'writeZeroes', 'pscsi passes WRITE SAME through to the device'));
  }

  lbaStatus(_offset: number, maxLength: number): LbaExtent {
    return { deallocated: false, length: maxLength };
  }

  async close(): Promise<void> {
    if (this.passthrough.closed) return;
    this.passthrough.closed = true;
    const fd = this.passthrough.fd;
    await new Promise<void>((resolve) => fs.close(fd, () => resolve()));
  }
}

/** Disk geometry from READ CAPACITY(10), or (16) past 2 TiB of blocks. */
async function readCapacity(dev: PscsiDevice): Promise<{ blocks: number; blockSize: number; physical: number }> {
  const c10 = await dev.runSettled([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], DataDir.IN, 8);
  let lastLba = c10.readUInt32BE(0);
  let blockSize = c10.readUInt32BE(4);
  let physical = blockSize;
  if (lastLba === 0xffffffff) {
    const c16 = await dev.runSettled([0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], DataDir.IN, 32);
    lastLba = Number(c16.readBigUInt64BE(0));
    blockSize = c16.readUInt32BE(8);
    physical = blockSize << (c16[13] & 0x0f);
  }
  return { blocks: lastLba + 1, blockSize, physical };
}

/** A tape's current block length from MODE SENSE(6)'s block descriptor (0: variable). */
async function tapeBlockLength(dev: PscsiDevice): Promise<number> {
  const ms = await dev.runSettled([0x1a, 0, 0x00, 0, 12, 0], DataDir.IN, 12);
  if (ms.length < 12 || ms[3] < 8) return 0;
  return (ms[9] << 16) | (ms[10] << 8) | ms[11];
}

function notScsi(name: string, path: string, why: string): Error {
  return Object.assign(new Error(`pscsi ${name}: ${path} is not a SCSI device (${why}); give a /dev/sgN node or a SCSI disk, tape or CD block device`), {
    code: 'ENOTTY',
  });
}

/** Opens the SCSI device at opts.dev and learns what it is. */
export async function createPscsi(opts: BackstoreOptions): Promise<Backstore> {
  const path = opts.dev;
  if (!path) throw new Error(`pscsi ${opts.name}: dev (an sg or SCSI block device path) is required`);
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (e) {
    (e as Error).message = `pscsi ${opts.name}: ${(e as Error).message}`;
    throw e;
  }
  const isSg = st.isCharacterDevice() && st.rdev >> 8 === SCSI_GENERIC_MAJOR;
  if (!isSg && !st.isBlockDevice()) {
    throw notScsi(opts.name, path, st.isCharacterDevice() ? 'a character device other than sg' : 'not a device node');
  }
  const { O_RDWR, O_RDONLY, O_NONBLOCK, O_EXCL } = fs.constants;
  // O_NONBLOCK: a CD drive without a disc still opens. O_EXCL claims a block
  // device (nothing mounts it under us); on an sg node it would refuse while
  // udev or sg_inq has it open, so there it is not used.
  const flags = O_NONBLOCK | (st.isBlockDevice() ? O_EXCL : 0);
  let fd: number;
  try {
    fd = fs.openSync(path, O_RDWR | flags);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EROFS' && code !== 'EACCES') throw e;
    fd = fs.openSync(path, O_RDONLY | flags);
  }
  const dev = new PscsiDevice(fd, path);
  try {
    let inq: Buffer;
    try {
      inq = await dev.runSettled([0x12, 0, 0, 0, 36, 0], DataDir.IN, 36);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTTY' || code === 'EINVAL' || code === 'ENOIOCTLCMD') throw notScsi(opts.name, path, `SG_IO: ${code}`);
      throw e;
    }
    if (inq.length < 1 || inq[0] >> 5 !== 0) {
      throw Object.assign(new Error(`pscsi ${opts.name}: ${path} has no logical unit connected (INQUIRY peripheral qualifier ${inq[0] >> 5})`), { code: 'ENXIO' });
    }
    dev.deviceType = inq[0] & 0x1f;
    let size = 0;
    let blockSize = 512;
    let physical = 512;
    if (dev.deviceType === DEVICE_TYPE.DISK) {
      const cap = await readCapacity(dev);
      blockSize = cap.blockSize;
      physical = Math.max(cap.physical, blockSize);
      size = cap.blocks * blockSize;
    } else if (dev.deviceType === DEVICE_TYPE.CDROM) {
      // Without a disc there is no capacity yet; data blocks are 2048 bytes on every CD/DVD.
      blockSize = 2048;
      const cap = await readCapacity(dev).catch(() => undefined);
      if (cap !== undefined && cap.blockSize > 0) {
        blockSize = cap.blockSize;
        size = cap.blocks * blockSize;
      }
      physical = blockSize;
    } else if (dev.deviceType === DEVICE_TYPE.TAPE) {
      dev.tapeBlockLength = await tapeBlockLength(dev).catch(() => 0);
    }
    return new PscsiBackstore(dev, size, blockSize, physical);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

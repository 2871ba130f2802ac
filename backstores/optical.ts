// optical: ISO images as read-only discs of 2048-byte blocks, for the CD/DVD
// device type (src/scsi/mmc.ts). The store holds the disc in the drive, if
// any; its size is the disc's, so the block commands (READ, READ CAPACITY)
// see the disc that is in. Discs change through insert() and eject().

import fs from 'node:fs';

import type { Backstore, BackstoreCaps, BackstoreOptions } from '../src/core/backstore';
import { sglSlice, type Sgl } from '../src/core/sgl';
import { errnoError } from '../native';
import { closeFd, readFull } from './fd-io';

export const OPTICAL_BLOCK = 2048;

const CAPS: BackstoreCaps = {
  unmap: false, writeZeroes: false, lbaStatus: false, sanitizeOverwrite: false, sanitizeBlockErase: false,
  persistent: true, nonRotational: false,
};

const readOnly = (): never => {
  throw errnoError('EROFS', 'write', 'a disc image is read-only');
};

export class DiscBackstore implements Backstore {
  readonly plugin = 'optical';
  readonly blockSize = OPTICAL_BLOCK;
  readonly physicalBlockSize = OPTICAL_BLOCK;
  readonly caps = CAPS;
  private fd: number | undefined = undefined;
  /** The image in the drive, or undefined. */
  image: string | undefined = undefined;
  size = 0;

  /** Opens an image; a tail shorter than a block is not part of the disc. */
  async insert(path: string): Promise<void> {
    const fd = fs.openSync(path, 'r');
    const st = fs.fstatSync(fd);
    if (!st.isFile() && !st.isBlockDevice()) {
      fs.closeSync(fd);
      throw new Error(`${path} is not an image file`);
    }
    await this.eject();
    this.fd = fd;
    this.image = path;
    this.size = Math.floor(st.size / OPTICAL_BLOCK) * OPTICAL_BLOCK;
  }

  async eject(): Promise<void> {
    const fd = this.fd;
    this.fd = undefined;
    this.image = undefined;
    this.size = 0;
    if (fd !== undefined) await closeFd(fd);
  }

  read(offset: number, length: number, sgl: Sgl): Promise<void> {
    if (this.fd === undefined) return Promise.reject(errnoError('EIO', 'read', 'no disc'));
    return readFull(this.fd, sglSlice(sgl, 0, length), offset);
  }

  write = readOnly;
  unmap = readOnly;
  writeZeroes = readOnly;
  flush(): void {}
  lbaStatus(_offset: number, maxLength: number) {
    return { deallocated: false, length: maxLength };
  }

  close(): Promise<void> {
    return this.eject();
  }
}

export async function createOptical(opts: BackstoreOptions): Promise<Backstore> {
  const b = new DiscBackstore();
  if (opts.dev) await b.insert(opts.dev);
  return b;
}

// Loop devices and backing files for tests that need real block devices.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** Runs losetup; fails with a message naming what is missing (util-linux, root). */
export function losetup(args: string[]): string {
  try {
    return execFileSync('losetup', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') {
      throw new Error('losetup not found: block device tests need util-linux (losetup) and root to create loop devices');
    }
    throw new Error(`losetup ${args.join(' ')} failed (root and /dev/loop-control are needed): ${err.stderr ?? err.message}`);
  }
}

/** Bytes of a file read through a descriptor of its own, as another process (or the loop driver's file) holds them. */
export function readFileRange(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(length);
    fs.readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

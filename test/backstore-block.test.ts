// block against real loop devices (losetup) over sparse files: geometry from
// the kernel, exclusive open, vectored and O_DIRECT I/O, discard/zero-out,
// sanitize. Needs root and util-linux's losetup; without them it fails loudly.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { createBlock } from '../backstores/block';
import { createFileio } from '../backstores/fileio';
import type { Backstore } from '../src/core/backstore';
import * as native from '../native';
import { losetup, readFileRange } from './util/losetup';

const KiB = 1024;
const MiB = 1024 * KiB;
const LOOP_SIZE = 64 * MiB;

let dir: string;
const loops: string[] = [];

/** A loop device over a fresh sparse file; detached in after(). */
function makeLoop(opts: { sectorSize?: number; size?: number } = {}): { dev: string; file: string } {
  const file = path.join(dir, `backing${loops.length}.img`);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, opts.size ?? LOOP_SIZE);
  const args = ['--find', '--show'];
  if (opts.sectorSize) args.push('--sector-size', String(opts.sectorSize));
  args.push(file);
  const dev = losetup(args);
  loops.push(dev);
  return { dev, file };
}

function sysfsQueue(dev: string, name: string): number {
  return Number(fs.readFileSync(`/sys/block/${path.basename(dev)}/queue/${name}`, 'utf8').trim());
}

/** Bytes of the loop's backing file, as the loop driver left them. */
const backing = readFileRange;

function split(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  for (const n of sizes) {
    out.push(buf.subarray(p, p + n));
    p += n;
  }
  if (p < buf.length) out.push(buf.subarray(p));
  return out;
}

async function readBack(store: Backstore, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length, 0xee);
  await store.read(offset, length, [b]);
  return b;
}

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-block-'));
});

after(() => {
  const errors: string[] = [];
  for (const dev of loops) {
    try {
      losetup(['--detach', dev]);
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  if (errors.length) throw new Error(`detaching loop devices: ${errors.join('; ')}`);
});

test('size and block sizes come from the kernel (512-byte loop)', async () => {
  const { dev } = makeLoop();
  const store = await createBlock({ name: 'geo', dev });
  try {
    assert.equal(store.plugin, 'block');
    assert.equal(store.size, LOOP_SIZE);
    assert.equal(store.blockSize, 512);
    assert.equal(store.blockSize, sysfsQueue(dev, 'logical_block_size'));
    assert.equal(store.physicalBlockSize, Math.max(512, sysfsQueue(dev, 'physical_block_size')));
    // Thin only where a deallocation reads zeros (the device zeroes on request), not wherever it discards.
    assert.equal(store.caps.unmap, sysfsQueue(dev, 'write_zeroes_max_bytes') > 0);
    assert.equal(store.caps.unmap, true, 'a loop device over a file zeroes by punching holes');
    assert.equal(store.caps.lbaStatus, false);
    assert.equal(store.caps.persistent, true);
    assert.equal(store.caps.nonRotational, sysfsQueue(dev, 'rotational') === 0);
    assert.deepEqual(await store.lbaStatus(0, 8 * MiB), { deallocated: false, length: 8 * MiB });

    const fd = fs.openSync(dev, 'r');
    try {
      const info = native.blockDeviceInfo(fd);
      assert.equal(info.size, LOOP_SIZE);
      assert.equal(info.logicalBlockSize, 512);
      assert.equal(info.physicalBlockSize, sysfsQueue(dev, 'physical_block_size'));
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    await store.close();
  }
});

test('a 4096-byte-sector loop gives blockSize 4096 and refuses a 512 emulation', async () => {
  const { dev, file } = makeLoop({ sectorSize: 4096, size: 32 * MiB });
  assert.equal(sysfsQueue(dev, 'logical_block_size'), 4096);
  await assert.rejects(createBlock({ name: 'b512', dev, blockSize: 512 }), RangeError);
  const store = await createBlock({ name: 'b4k', dev });
  try {
    assert.equal(store.blockSize, 4096);
    assert.equal(store.physicalBlockSize, 4096);
    assert.equal(store.size, 32 * MiB);
    const data = crypto.randomBytes(3 * 4096);
    await store.write(4096, data.length, split(data, [4096, 100]), true);
    assert.deepEqual(await readBack(store, 4096, data.length), data);
    assert.deepEqual(backing(file, 4096, data.length), data);
  } finally {
    await store.close();
  }
});

test('O_EXCL: a second open of the same device fails, naming it; after close it opens again', async () => {
  const { dev } = makeLoop();
  const first = await createBlock({ name: 'one', dev });
  try {
    await assert.rejects(createBlock({ name: 'two', dev }), (e: NodeJS.ErrnoException) => {
      assert.equal(e.code, 'EBUSY');
      assert.ok(e.message.includes(dev), e.message);
      return true;
    });
    await assert.rejects(createBlock({ name: 'ro', dev, readonly: true }), (e: NodeJS.ErrnoException) => e.code === 'EBUSY');
  } finally {
    await first.close();
  }
  const again = await createBlock({ name: 'again', dev });
  await again.close();
});

test('multi-segment round trip; FUA and flush reach the loop backing file', async () => {
  const { dev, file } = makeLoop();
  const store = await createBlock({ name: 'rt', dev });
  try {
    const data = crypto.randomBytes(256 * KiB);
    const offset = 5 * MiB + 1536;
    await store.write(offset, data.length, split(data, [512, 7, 1017, 65536]), true);
    assert.deepEqual(backing(file, offset, data.length), data, 'the FUA write went through the loop device');
    const into = Buffer.alloc(data.length);
    await store.read(offset, data.length, split(into, [4096, 1, 511]));
    assert.deepEqual(into, data);

    const more = crypto.randomBytes(8192);
    await store.write(9 * MiB, more.length, [more], false);
    await store.flush();
    assert.deepEqual(backing(file, 9 * MiB, more.length), more);
  } finally {
    await store.close();
  }
});

test('buffered reads take cached pages on the loop (RWF_NOWAIT) and the rest from the pool; data exact', async () => {
  const { dev, file } = makeLoop();
  const store = await createBlock({ name: 'nowait', dev });
  // A second descriptor on the device shares its page cache: it drops pages and probes what is cached.
  const probe = fs.openSync(dev, 'r');
  try {
    const data = crypto.randomBytes(MiB);
    const offset = 2 * MiB;
    await store.write(offset, data.length, split(data, [4096, 512, 3584, 65536]), false);
    await store.flush();
    const whole = Buffer.alloc(data.length);
    assert.equal(native.preadNowait(probe, [whole], offset), data.length, 'written pages are cached: all on the loop');
    assert.deepEqual(whole, data);

    // Drop it all (large folios go only whole), then cache the first and last 256 KiB again through
    // the probe without readahead: the middle half is left for the pool.
    await native.fadvise(probe, 0, 0, native.constants.POSIX_FADV_RANDOM);
    const drop = async () => {
      await native.fadvise(probe, offset, data.length, native.constants.POSIX_FADV_DONTNEED);
      for (const at of [0, 768 * KiB]) fs.readSync(probe, Buffer.alloc(256 * KiB), 0, 256 * KiB, offset + at);
    };
    // A NOWAIT read that misses starts readahead, and pages still under that I/O survive a drop: each probe
    // below gets a settled drop first (the readahead of the last one done), and a few tries.
    const probed = async (at: number): Promise<number[]> => {
      const seen: number[] = [];
      for (let tries = 0; tries < 5; tries++) {
        await drop();
        await new Promise((r) => setTimeout(r, 50));
        await drop();
        seen.push(native.preadNowait(probe, [whole], at));
        if (seen[seen.length - 1] !== data.length - (at - offset)) break;
      }
      return seen;
    };
    const short = await probed(offset);
    const n = short[short.length - 1];
    assert.ok(n >= 256 * KiB && n < 768 * KiB, `a NOWAIT read is short at the first dropped page (tries: ${short})`);
    const inside = await probed(offset + 700 * KiB);
    assert.equal(inside[inside.length - 1], native.NOWAIT_WOULD_BLOCK, `and would block inside it (tries: ${inside})`);

    // One read spans cached, dropped and cached again; another starts in the dropped part. (The probes'
    // NOWAIT reads started readahead of what they missed: drop again.)
    await drop();
    const into = Buffer.alloc(data.length, 0xee);
    await store.read(offset, data.length, split(into, [1000, 200 * KiB, 7]));
    assert.deepEqual(into, data);
    await drop();
    const mid = Buffer.alloc(512 * KiB, 0xee);
    await store.read(offset + 512 * KiB, mid.length, split(mid, [4096, 1]));
    assert.deepEqual(mid, data.subarray(512 * KiB, 512 * KiB + mid.length));

    // Writes over cached and dropped pages land whole (block devices refuse NOWAIT writes: EOPNOTSUPP, then the pool).
    await drop();
    const more = crypto.randomBytes(640 * KiB);
    await store.write(offset + 128 * KiB, more.length, split(more, [512, 100 * KiB]), false);
    await store.write(offset + 128 * KiB, 4096, [more.subarray(0, 4096)], false);
    await store.flush();
    const expect = Buffer.concat([data.subarray(0, 128 * KiB), more, data.subarray(128 * KiB + more.length)]);
    assert.deepEqual(await readBack(store, offset, data.length), expect);
    assert.deepEqual(backing(file, offset, data.length), expect, 'the loop backing file holds what was written');
  } finally {
    fs.closeSync(probe);
    await store.close();
  }
});

test('unmap (fallocate PUNCH_HOLE: zeroing deallocation) on a loop reads back zeros and punches the backing file', async () => {
  const { dev, file } = makeLoop();
  const store = await createBlock({ name: 'discard', dev });
  try {
    await store.write(0, 4 * MiB, [Buffer.alloc(4 * MiB, 0x3c)], true);
    const before = fs.statSync(file).blocks;
    assert.ok(before * 512 >= 4 * MiB);
    await store.unmap(MiB, 2 * MiB);
    const back = await readBack(store, 0, 4 * MiB);
    assert.ok(back.subarray(0, MiB).every((x) => x === 0x3c));
    assert.ok(back.subarray(MiB, 3 * MiB).every((x) => x === 0), 'discarded range reads zeros');
    assert.ok(back.subarray(3 * MiB).every((x) => x === 0x3c));
    assert.ok(fs.statSync(file).blocks < before, 'the backing file lost blocks');
    assert.ok(backing(file, MiB, 2 * MiB).every((x) => x === 0));
  } finally {
    await store.close();
  }
});

test('writeZeroes (BLKZEROOUT) zeroes the range', async () => {
  const { dev, file } = makeLoop();
  const store = await createBlock({ name: 'zero', dev });
  try {
    await store.write(0, MiB, [Buffer.alloc(MiB, 0x99)], false);
    await store.writeZeroes(4096, 64 * KiB);
    const back = await readBack(store, 0, MiB);
    assert.ok(back.subarray(0, 4096).every((x) => x === 0x99));
    assert.ok(back.subarray(4096, 4096 + 64 * KiB).every((x) => x === 0));
    assert.ok(back.subarray(4096 + 64 * KiB).every((x) => x === 0x99));
    await store.flush();
    assert.ok(backing(file, 4096, 64 * KiB).every((x) => x === 0));
  } finally {
    await store.close();
  }
});

test('O_DIRECT round trip on a block device, bounced and direct', async () => {
  const { dev, file } = makeLoop();
  const store = await createBlock({ name: 'direct', dev, direct: true });
  try {
    const data = crypto.randomBytes(MiB + 2048);
    await store.write(512, data.length, split(data, [512, 1000, 24]), false);
    const into = Buffer.alloc(data.length);
    await store.read(512, data.length, split(into, [2048, 99]));
    assert.deepEqual(into, data);

    const a = native.allocAligned(128 * KiB, 4096);
    crypto.randomFillSync(a);
    await store.write(8 * MiB, a.length, [a.subarray(0, 64 * KiB), a.subarray(64 * KiB)], true);
    const b = native.allocAligned(128 * KiB, 4096);
    await store.read(8 * MiB, b.length, [b]);
    assert.deepEqual(b, a);
    assert.deepEqual(backing(file, 8 * MiB, a.length), a);
  } finally {
    await store.close();
  }
});

test('sanitize: overwrite with a pattern, then block erase (discard) to zeros', async () => {
  const size = 8 * MiB;
  const { dev, file } = makeLoop({ size });
  const store = await createBlock({ name: 'sanitize', dev });
  try {
    const pattern = Buffer.from('tsio!');
    await store.sanitize!('overwrite', pattern);
    const block = Buffer.alloc(512);
    block.fill(pattern);
    const img = fs.readFileSync(file);
    for (let off = 0; off < size; off += 512) {
      if (!img.subarray(off, off + 512).equals(block)) assert.fail(`block at ${off} does not hold the pattern`);
    }
    assert.ok(store.caps.sanitizeBlockErase);
    await store.sanitize!('block-erase');
    assert.ok((await readBack(store, 0, size)).every((x) => x === 0));
    assert.ok(fs.readFileSync(file).every((x) => x === 0));
  } finally {
    await store.close();
  }
});

test('read-only: opened exclusively, reads work, writes fail with EROFS', async () => {
  const { dev, file } = makeLoop();
  fs.writeFileSync(file, Buffer.alloc(4096, 0x42), { flag: 'r+' });
  const store = await createBlock({ name: 'ro', dev, readonly: true });
  try {
    assert.ok((await readBack(store, 0, 4096)).every((x) => x === 0x42));
    await assert.rejects(async () => store.write(0, 512, [Buffer.alloc(512)], false), (e: NodeJS.ErrnoException) => e.code === 'EROFS');
    await assert.rejects(async () => store.unmap(0, 512), (e: NodeJS.ErrnoException) => e.code === 'EROFS');
    await assert.rejects(async () => store.writeZeroes(0, 512), (e: NodeJS.ErrnoException) => e.code === 'EROFS');
    await assert.rejects(createBlock({ name: 'rw', dev }), (e: NodeJS.ErrnoException) => e.code === 'EBUSY');
  } finally {
    await store.close();
  }
});

test('the wrong kind of path is refused by each plugin, with a code', async () => {
  const { dev } = makeLoop();
  const file = path.join(dir, 'plain.img');
  fs.writeFileSync(file, Buffer.alloc(MiB));
  await assert.rejects(createBlock({ name: 'file', dev: file }), (e: NodeJS.ErrnoException) => {
    assert.equal(e.code, 'ENOTBLK');
    assert.ok(e.message.includes(file));
    return true;
  });
  await assert.rejects(createFileio({ name: 'dev', dev }), /not a regular file/);
  await assert.rejects(createBlock({ name: 'missing', dev: path.join(dir, 'nope') }), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  await assert.rejects(createBlock({ name: 'nodev' }), /dev \(the block device path\) is required/);
  // Native discard on the device's own descriptor is fine; misaligned ranges are EINVAL.
  const fd = fs.openSync(dev, 'r+');
  try {
    await native.blkDiscard(fd, 0, 4096);
    await assert.rejects(native.blkZeroOut(fd, 1, 512), (e: NodeJS.ErrnoException) => e.code === 'EINVAL' && e.errno === -os.constants.errno.EINVAL);
  } finally {
    fs.closeSync(fd);
  }
});

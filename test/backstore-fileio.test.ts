// fileio against real files in a temporary directory: sparseness, vectored
// I/O, holes and the allocation map, O_DIRECT, sanitize, errors.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { createFileio } from '../backstores/fileio';
import type { Backstore } from '../src/core/backstore';
import { fromIoError, SenseKey, Asc } from '../src/core/sense';
import * as native from '../native';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

let dir: string;
let seq = 0;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-fileio-'));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function newPath(): string {
  return path.join(dir, `lun${seq++}.img`);
}

/** Views of buf cut at the given sizes (the last segment takes the rest). */
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

/** Reads a range through the store into a fresh buffer. */
async function readBack(store: Backstore, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length, 0xee);
  await store.read(offset, length, [b]);
  return b;
}

/** Bytes of the file as an independent descriptor sees them. */
function fileBytes(p: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(p, 'r');
  try {
    const b = Buffer.alloc(length);
    const n = fs.readSync(fd, b, 0, length, offset);
    return b.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

test('a new file is created sparse at the requested size', async () => {
  const p = newPath();
  const store = await createFileio({ name: 'sparse', dev: p, size: GiB });
  try {
    const st = fs.statSync(p);
    assert.equal(st.size, GiB);
    assert.equal(st.blocks, 0);
    assert.equal(store.plugin, 'fileio');
    assert.equal(store.size, GiB);
    assert.equal(store.blockSize, 512);
    assert.equal(store.physicalBlockSize, 512);
    assert.deepEqual(store.caps, {
      unmap: true, writeZeroes: true, lbaStatus: true, sanitizeOverwrite: true,
      sanitizeBlockErase: true, persistent: true, nonRotational: false,
    });
    assert.deepEqual(await store.lbaStatus(0, GiB), { deallocated: true, length: GiB });
  } finally {
    await store.close();
  }
});

test('an existing file: its size when none is given, extended sparsely when a larger one is', async () => {
  const p = newPath();
  const head = crypto.randomBytes(8 * KiB);
  fs.writeFileSync(p, head);
  let store = await createFileio({ name: 'existing', dev: p });
  assert.equal(store.size, 8 * KiB);
  assert.deepEqual(await readBack(store, 0, 8 * KiB), head);
  await store.close();

  store = await createFileio({ name: 'existing', dev: p, size: 4 * MiB, blockSize: 4096 });
  try {
    assert.equal(store.size, 4 * MiB);
    assert.equal(store.blockSize, 4096);
    assert.equal(fs.statSync(p).size, 4 * MiB);
    assert.deepEqual(await readBack(store, 0, 8 * KiB), head, 'existing data survives the extension');
    assert.ok(fs.statSync(p).blocks * 512 < 1 * MiB, 'the extension allocates nothing');
  } finally {
    await store.close();
  }
});

test('a missing file without a size, a bad size and a directory are refused', async () => {
  await assert.rejects(createFileio({ name: 'nosize', dev: newPath() }), /does not exist and no size/);
  await assert.rejects(createFileio({ name: 'odd', dev: newPath(), size: 1000 }), RangeError);
  await assert.rejects(createFileio({ name: 'bs', dev: newPath(), size: MiB, blockSize: 520 }), RangeError);
  await assert.rejects(createFileio({ name: 'dir', dev: dir }), (e: NodeJS.ErrnoException) => e.code === 'EISDIR');
  await assert.rejects(createFileio({ name: 'nodev', size: MiB }), /dev \(the file path\) is required/);
});

test('multi-segment write and read round trip, in place, and an independent reader agrees', async () => {
  const p = newPath();
  const store = await createFileio({ name: 'rt', dev: p, size: 16 * MiB });
  try {
    const data = crypto.randomBytes(64 * KiB);
    const offset = 3 * MiB + 512;
    await store.write(offset, data.length, split(data, [512, 1536, 3000, 7, 60000 - 5043]), false);
    // Read into differently cut segments; the Sgl is longer than the transfer.
    const into = Buffer.alloc(data.length + 4096, 0x5a);
    const segs = split(into, [100, 4096, 9000]);
    await store.read(offset, data.length, segs);
    assert.deepEqual(into.subarray(0, data.length), data);
    assert.ok(into.subarray(data.length).every((b) => b === 0x5a), 'bytes past the transfer are untouched');
    await store.flush();
    assert.deepEqual(fileBytes(p, offset, data.length), data);
    // Never-written blocks read as zeros.
    assert.ok((await readBack(store, 0, 4096)).every((b) => b === 0));
  } finally {
    await store.close();
  }
});

test('more segments than IOV_MAX still transfer completely', async () => {
  const store = await createFileio({ name: 'iov', dev: newPath(), size: 4 * MiB });
  try {
    const data = crypto.randomBytes(3000 * 512);
    await store.write(0, data.length, split(data, new Array(2999).fill(512)), false);
    const into = Buffer.alloc(data.length);
    await store.read(0, data.length, split(into, new Array(2999).fill(512)));
    assert.deepEqual(into, data);
  } finally {
    await store.close();
  }
});

test('reads past the end of a shorter file are zero-filled', async () => {
  const p = newPath();
  fs.writeFileSync(p, Buffer.alloc(4096, 0xaa));
  // Read-only, so the store does not extend the file to its size.
  const store = await createFileio({ name: 'eof', dev: p, size: 16 * KiB, readonly: true });
  try {
    assert.equal(fs.statSync(p).size, 4096);
    const b = Buffer.alloc(8192, 0xff);
    await store.read(2048, 8192, split(b, [1000, 3000]));
    assert.ok(b.subarray(0, 2048).every((x) => x === 0xaa));
    assert.ok(b.subarray(2048).every((x) => x === 0), 'bytes past EOF read as zeros');
  } finally {
    await store.close();
  }
});

test('page-cache reads and writes on the loop and through the pool agree, here and on tmpfs', async () => {
  // os.tmpdir() (ext4 here: NOWAIT reads work, writes are EOPNOTSUPP) and /dev/shm (tmpfs: neither).
  const shm = fs.mkdtempSync('/dev/shm/tsio-fileio-');
  try {
    for (const p of [newPath(), path.join(shm, 'lun.img')]) {
      const store = await createFileio({ name: 'nowait', dev: p, size: 8 * MiB });
      const probe = fs.openSync(p, 'r');
      try {
        const data = crypto.randomBytes(MiB);
        await store.write(MiB, data.length, split(data, [4096, 100, 8092]), false);
        await store.flush();
        // Drop it all (large folios go only whole), then cache its first and last 256 KiB again without
        // readahead: one read spans cached, dropped and cached pages.
        await native.fadvise(probe, 0, 0, native.constants.POSIX_FADV_RANDOM);
        await native.fadvise(probe, 0, 0, native.constants.POSIX_FADV_DONTNEED);
        for (const at of [0, 768 * KiB]) fs.readSync(probe, Buffer.alloc(256 * KiB), 0, 256 * KiB, MiB + at);
        const into = Buffer.alloc(data.length, 0xee);
        await store.read(MiB, data.length, split(into, [5000, 64 * KiB]));
        assert.deepEqual(into, data, p);
        const over = crypto.randomBytes(300 * KiB);
        await native.fadvise(probe, 0, 0, native.constants.POSIX_FADV_DONTNEED);
        await store.write(MiB + 200 * KiB, over.length, [over], false);
        await store.write(MiB + 200 * KiB, 512, [over.subarray(0, 512)], true);
        data.set(over, 200 * KiB);
        assert.deepEqual(await readBack(store, MiB, data.length), data, p);
        assert.deepEqual(fileBytes(p, MiB, data.length), data, `${p}: an independent reader agrees`);
        // The unwritten remainder still reads as zeros, cached or not.
        assert.ok((await readBack(store, 4 * MiB, 64 * KiB)).every((b) => b === 0));
      } finally {
        fs.closeSync(probe);
        await store.close();
      }
    }
  } finally {
    fs.rmSync(shm, { recursive: true, force: true });
  }
});

/** How many threads of this process sleep in a FIFO open waiting for a writer. */
function threadsInFifoOpen(): number {
  let n = 0;
  for (const t of fs.readdirSync('/proc/self/task')) {
    if (fs.readFileSync(`/proc/self/task/${t}/wchan`, 'utf8') === 'wait_for_partner') n++;
  }
  return n;
}

/**
 * Occupies every libuv pool thread (opens of FIFOs without writers) while fn
 * runs, so what fn awaits can only finish on the loop; then frees them.
 */
async function withPoolBlocked<T>(fn: () => Promise<T>): Promise<T> {
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const fifos: string[] = [];
  const opens: Promise<number>[] = [];
  for (let i = 0; i < threads; i++) {
    const f = path.join(dir, `fifo${seq++}`);
    execFileSync('mkfifo', [f]);
    fifos.push(f);
    opens.push(new Promise((resolve, reject) => fs.open(f, 'r', (e, fd) => (e ? reject(e) : resolve(fd)))));
  }
  try {
    // Every pool thread must be asleep in its open before fn starts (one may still finish earlier work).
    for (let waited = 0; threadsInFifoOpen() < threads; waited += 10) {
      assert.ok(waited < 2000, `the pool's ${threads} threads did not all block`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('did not complete without the thread pool')), 2000);
    });
    try {
      return await Promise.race([fn(), stuck]);
    } finally {
      clearTimeout(timer);
    }
  } finally {
    // An O_RDWR open of a FIFO never blocks (Linux) and, held open, releases its reader's open whenever it comes.
    const releasers = fifos.map((f) => fs.openSync(f, fs.constants.O_RDWR));
    for (const fd of [...releasers, ...(await Promise.all(opens))]) fs.closeSync(fd);
  }
}

test('cached reads (and tmpfs writes) complete on the loop, without the thread pool', async () => {
  const shm = fs.mkdtempSync('/dev/shm/tsio-fileio-');
  try {
    for (const p of [newPath(), path.join(shm, 'lun.img')]) {
      const store = await createFileio({ name: 'loop', dev: p, size: 4 * MiB });
      try {
        const data = crypto.randomBytes(256 * KiB);
        await store.write(0, data.length, split(data, [4096, 512]), false);
        await store.read(0, data.length, [Buffer.alloc(data.length)]); // cached now, wherever it is
        const into = Buffer.alloc(data.length);
        await withPoolBlocked(async () => store.read(0, data.length, split(into, [1000, 60000])));
        assert.deepEqual(into, data, p);
        if (p.startsWith(shm)) {
          const more = crypto.randomBytes(64 * KiB);
          await withPoolBlocked(async () => store.write(MiB, more.length, [more], false));
          assert.deepEqual(fileBytes(p, MiB, more.length), more);
        }
      } finally {
        await store.close();
      }
    }
  } finally {
    fs.rmSync(shm, { recursive: true, force: true });
  }
});

test('tmpfs: writes while an unmap is in the pool, and unmaps while writes are, all land', async () => {
  const shm = fs.mkdtempSync('/dev/shm/tsio-fileio-');
  const p = path.join(shm, 'lun.img');
  const store = await createFileio({ name: 'mix', dev: p, size: 8 * MiB });
  try {
    const data = crypto.randomBytes(8 * MiB);
    await store.write(0, data.length, [data], false);
    const writes: Promise<void>[] = [];
    const unmaps: Promise<void>[] = [];
    for (let i = 0; i < 8; i++) {
      // Even MiBs are unmapped, odd ones rewritten, interleaved.
      unmaps.push(Promise.resolve(store.unmap(2 * i * 512 * KiB, 512 * KiB)));
      const w = crypto.randomBytes(512 * KiB);
      w.copy(data, (2 * i + 1) * 512 * KiB);
      writes.push(Promise.resolve(store.write((2 * i + 1) * 512 * KiB, w.length, [w], false)));
    }
    await Promise.all([...writes, ...unmaps]);
    for (let i = 0; i < 8; i++) data.fill(0, 2 * i * 512 * KiB, (2 * i + 1) * 512 * KiB);
    assert.deepEqual(await readBack(store, 0, data.length), data);
  } finally {
    await store.close();
    fs.rmSync(shm, { recursive: true, force: true });
  }
});

test('FUA writes and flush are visible to a fresh reader of the file', async () => {
  const p = newPath();
  const store = await createFileio({ name: 'fua', dev: p, size: 8 * MiB });
  try {
    const a = crypto.randomBytes(8192);
    await store.write(MiB, a.length, split(a, [4096]), true);
    assert.deepEqual(fs.readFileSync(p).subarray(MiB, MiB + a.length), a);
    const b = crypto.randomBytes(4096);
    await store.write(2 * MiB, b.length, [b], false);
    await store.flush();
    assert.deepEqual(fs.readFileSync(p).subarray(2 * MiB, 2 * MiB + b.length), b);
  } finally {
    await store.close();
  }
});

test('unmap punches holes: blocks are freed, reads are zeros, lbaStatus maps the holes', async () => {
  const p = newPath();
  const store = await createFileio({ name: 'unmap', dev: p, size: 8 * MiB });
  try {
    const data = crypto.randomBytes(MiB);
    await store.write(0, MiB, [data], false);
    await store.flush();
    const before = fs.statSync(p).blocks;
    assert.ok(before * 512 >= MiB, `1 MiB written allocates 1 MiB (${before} sectors)`);

    await store.unmap(256 * KiB, 512 * KiB);
    const afterBlocks = fs.statSync(p).blocks;
    assert.ok(before - afterBlocks >= (512 * KiB) / 512, `punching frees the range (${before} -> ${afterBlocks})`);

    const back = await readBack(store, 0, MiB);
    assert.deepEqual(back.subarray(0, 256 * KiB), data.subarray(0, 256 * KiB));
    assert.ok(back.subarray(256 * KiB, 768 * KiB).every((x) => x === 0));
    assert.deepEqual(back.subarray(768 * KiB), data.subarray(768 * KiB));

    assert.deepEqual(await store.lbaStatus(0, 8 * MiB), { deallocated: false, length: 256 * KiB });
    assert.deepEqual(await store.lbaStatus(256 * KiB, 8 * MiB), { deallocated: true, length: 512 * KiB });
    assert.deepEqual(await store.lbaStatus(512 * KiB, 8 * MiB), { deallocated: true, length: 256 * KiB });
    assert.deepEqual(await store.lbaStatus(768 * KiB, 8 * MiB), { deallocated: false, length: 256 * KiB });
    assert.deepEqual(await store.lbaStatus(MiB, 8 * MiB), { deallocated: true, length: 8 * MiB });
    assert.deepEqual(await store.lbaStatus(0, 4096), { deallocated: false, length: 4096 }, 'clamped to maxLength');
    assert.deepEqual(await store.lbaStatus(MiB, 7 * MiB), { deallocated: true, length: 7 * MiB });
  } finally {
    await store.close();
  }
});

test('writeZeroes zeroes the range and frees it', async () => {
  const p = newPath();
  const store = await createFileio({ name: 'wz', dev: p, size: 4 * MiB });
  try {
    await store.write(0, 2 * MiB, [Buffer.alloc(2 * MiB, 0x77)], false);
    await store.writeZeroes(64 * KiB, MiB);
    const back = await readBack(store, 0, 2 * MiB);
    assert.ok(back.subarray(0, 64 * KiB).every((x) => x === 0x77));
    assert.ok(back.subarray(64 * KiB, 64 * KiB + MiB).every((x) => x === 0));
    assert.ok(back.subarray(64 * KiB + MiB).every((x) => x === 0x77));
    assert.deepEqual(await store.lbaStatus(64 * KiB, 4 * MiB), { deallocated: true, length: MiB });
    await store.flush();
    assert.ok(fs.readFileSync(p).subarray(64 * KiB, 64 * KiB + MiB).every((x) => x === 0));
  } finally {
    await store.close();
  }
});

test('O_DIRECT round trip through unaligned (bounced) and aligned (direct) buffers', async () => {
  const p = newPath();
  const store = await createFileio({ name: 'direct', dev: p, size: 8 * MiB, direct: true });
  try {
    assert.equal(fs.statSync(p).size, 8 * MiB);
    // Unaligned: small Buffers come from Node's pool at arbitrary addresses,
    // and the segment lengths are not multiples of 4096.
    const data = crypto.randomBytes(3 * MiB + 4096);
    await store.write(4096, data.length, split(data, [512, 1536, 5000, 77]), false);
    const into = Buffer.alloc(data.length);
    await store.read(4096, data.length, split(into, [333, 4096, 100000]));
    assert.deepEqual(into, data);

    // Aligned: memory from allocAligned, whole pages per segment; FUA too.
    const a = native.allocAligned(64 * KiB, 4096);
    crypto.randomFillSync(a);
    assert.ok(native.isAligned(a, 4096));
    await store.write(6 * MiB, a.length, [a.subarray(0, 16 * KiB), a.subarray(16 * KiB)], true);
    const b = native.allocAligned(64 * KiB, 4096);
    await store.read(6 * MiB, b.length, [b]);
    assert.deepEqual(b, a);
    // What O_DIRECT wrote is what a buffered reader sees.
    assert.deepEqual(fileBytes(p, 4096, data.length), data);
    assert.deepEqual(fileBytes(p, 6 * MiB, a.length), a);
  } finally {
    await store.close();
  }
});

test('sanitize overwrite writes the pattern, restarted at every block, without blocking the loop', async () => {
  const p = newPath();
  const size = 2 * MiB + 4096; // not a whole number of chunks
  const store = await createFileio({ name: 'san', dev: p, size });
  try {
    await store.write(0, 4096, [crypto.randomBytes(4096)], false);
    const pattern = Buffer.from([0xde, 0xad, 0xbe]); // 512 % 3 != 0: each block restarts it
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    try {
      await store.sanitize!('overwrite', pattern);
    } finally {
      clearInterval(timer);
    }
    assert.ok(ticks > 0, 'timers ran while the overwrite was in progress');
    const block = Buffer.alloc(512);
    block.fill(pattern);
    const file = fs.readFileSync(p);
    assert.equal(file.length, size);
    for (let off = 0; off < size; off += 512) {
      if (!file.subarray(off, off + 512).equals(block)) assert.fail(`block at ${off} does not hold the pattern`);
    }
    assert.deepEqual(await store.lbaStatus(0, size), { deallocated: false, length: size });

    await store.sanitize!('block-erase');
    assert.equal(fs.statSync(p).blocks, 0);
    assert.ok(fs.readFileSync(p).every((x) => x === 0));
    assert.deepEqual(await store.lbaStatus(0, size), { deallocated: true, length: size });
  } finally {
    await store.close();
  }
});

test('resize grows and shrinks the file', async () => {
  const p = newPath();
  const store = await createFileio({ name: 'resize', dev: p, size: MiB });
  try {
    await store.resize!(3 * MiB);
    assert.equal(store.size, 3 * MiB);
    assert.equal(fs.statSync(p).size, 3 * MiB);
    await store.resize!(512 * KiB);
    assert.equal(store.size, 512 * KiB);
    assert.equal(fs.statSync(p).size, 512 * KiB);
    await assert.rejects(store.resize!(1000), RangeError);
  } finally {
    await store.close();
  }
});

test('a read-only store refuses writes with EROFS, which maps to WRITE PROTECTED', async () => {
  const p = newPath();
  fs.writeFileSync(p, Buffer.alloc(MiB, 1));
  const store = await createFileio({ name: 'ro', dev: p, readonly: true });
  try {
    assert.ok((await readBack(store, 0, 4096)).every((x) => x === 1));
    for (const op of [
      () => store.write(0, 512, [Buffer.alloc(512)], false),
      () => store.unmap(0, 512),
      () => store.writeZeroes(0, 512),
      () => store.sanitize!('overwrite'),
      () => store.resize!(2 * MiB),
    ]) {
      await assert.rejects(async () => op(), (e: NodeJS.ErrnoException) => {
        assert.equal(e.code, 'EROFS');
        assert.equal(e.errno, -os.constants.errno.EROFS);
        const s = fromIoError(e, true);
        assert.equal(s.key, SenseKey.DATA_PROTECT);
        assert.equal(s.asc, Asc.WRITE_PROTECTED);
        return true;
      });
    }
    assert.ok(fs.readFileSync(p).every((x) => x === 1));
  } finally {
    await store.close();
  }
});

test('a closed store refuses I/O instead of reaching a recycled descriptor', async () => {
  const store = await createFileio({ name: 'closed', dev: newPath(), size: MiB });
  await store.close();
  await store.close(); // idempotent
  await assert.rejects(async () => store.read(0, 512, [Buffer.alloc(512)]), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
  await assert.rejects(async () => store.write(0, 512, [Buffer.alloc(512)], false), (e: NodeJS.ErrnoException) => e.code === 'EBADF');
});

test('the health watch wakes the loop when the file is deleted, never for writes to it', async () => {
  const p = newPath();
  const store = (await createFileio({ name: 'watched', dev: p, size: MiB })) as Backstore & { healthWakeups: number };
  try {
    let lost: string | undefined;
    store.watchHealth!((why) => (lost = why));
    const b = Buffer.alloc(4096, 9);
    for (let i = 0; i < 32; i++) await store.write(i * 4096, 4096, [b], i % 8 === 0);
    // Let any inotify event reach the loop (a few turns of it, with I/O polled in each).
    for (let i = 0; i < 5; i++) await new Promise((res) => setTimeout(res, 5));
    assert.equal(store.healthWakeups, 0, 'writes raise no event (fs.watch asked for IN_MODIFY: one per write)');
    assert.equal(lost, undefined);
    fs.unlinkSync(p);
    for (let i = 0; i < 200 && lost === undefined; i++) await new Promise((res) => setTimeout(res, 5));
    assert.match(lost ?? '', /was deleted/);
    assert.ok(store.healthWakeups >= 1);
  } finally {
    await store.close();
  }
});

test('native errors carry .code, .errno and .syscall like fs errors', async () => {
  const p = newPath();
  fs.writeFileSync(p, Buffer.alloc(8192, 9));
  const fd = fs.openSync(p, 'r+');
  try {
    // seekData/seekHole: ENXIO (past EOF) is -1, not an error.
    assert.equal(await native.seekData(fd, 0), 0);
    assert.equal(await native.seekHole(fd, 0), 8192);
    assert.equal(await native.seekData(fd, 8192), -1);
    assert.equal(await native.seekHole(fd, 1 << 20), -1);
    await native.fallocate(fd, native.FALLOC_PUNCH_HOLE, 0, 4096);
    assert.ok(fileBytes(p, 0, 4096).every((x) => x === 0));
    assert.equal(await native.seekData(fd, 0), 4096);
    await native.fallocate(fd, native.FALLOC_ZERO_RANGE, 4096, 4096);
    assert.ok(fileBytes(p, 4096, 4096).every((x) => x === 0));
    await native.fadvise(fd, 0, 8192, native.constants.POSIX_FADV_WILLNEED);
    // The NOWAIT calls: a count, or a code when the kernel would wait or the file cannot.
    const r = native.preadNowait(fd, [Buffer.alloc(4096)], 4096);
    assert.ok(r === 4096 || r === native.NOWAIT_WOULD_BLOCK || r === native.NOWAIT_UNSUPPORTED, `preadNowait gave ${r}`);
    assert.throws(() => native.preadNowait(fd, [Buffer.alloc(1), 'x' as unknown as Buffer], 0), TypeError);

    await assert.rejects(native.blkDiscard(fd, 0, 512), (e: NodeJS.ErrnoException) => {
      assert.equal(e.code, 'ENOTTY');
      assert.equal(e.errno, -os.constants.errno.ENOTTY);
      assert.equal(e.syscall, 'ioctl(BLKDISCARD)');
      return true;
    });
    assert.throws(() => native.blockDeviceInfo(fd), (e: NodeJS.ErrnoException) => e.code === 'ENOTTY');
    await assert.rejects(native.fallocate(fd, native.FALLOC_PUNCH_HOLE, 0, 0), (e: NodeJS.ErrnoException) => e.code === 'EINVAL');
  } finally {
    fs.closeSync(fd);
  }
  const rofd = fs.openSync(p, 'r');
  try {
    assert.throws(() => native.pwriteNowait(rofd, [Buffer.alloc(512)], 0), (e: NodeJS.ErrnoException) => {
      assert.equal(e.code, 'EBADF');
      assert.equal(e.syscall, 'pwritev2');
      return true;
    });
    await assert.rejects(native.fallocate(rofd, native.FALLOC_PUNCH_HOLE, 0, 4096), (e: NodeJS.ErrnoException) => {
      assert.equal(e.code, 'EBADF');
      assert.equal(fromIoError(e, true).key, SenseKey.HARDWARE_ERROR);
      return true;
    });
  } finally {
    fs.closeSync(rofd);
  }
  assert.throws(() => native.allocAligned(4096, 3000), RangeError);
  assert.throws(() => native.seekData(-1 as number, 0), RangeError);
});

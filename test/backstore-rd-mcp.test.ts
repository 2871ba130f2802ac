// rd_mcp reads copy runs of pages that lie one after the other in a slab in
// one step: reads of every alignment and segmentation must still match a
// plain model of the medium, across slab edges, out-of-order pages, holes
// and unmapped pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RamBackstore, RD_PAGE_SIZE } from '../backstores/rd-mcp';

const SIZE = 4 << 20;

/** A small deterministic generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

/** length bytes as a list of segments of random sizes (some a few bytes, some several pages). */
function segments(length: number, rand: () => number): Buffer[] {
  const out: Buffer[] = [];
  while (length > 0) {
    const n = Math.min(length, rand() < 0.3 ? 1 + Math.floor(rand() * 700) : 1 + Math.floor(rand() * 5 * RD_PAGE_SIZE));
    out.push(Buffer.alloc(n, 0xee));
    length -= n;
  }
  return out;
}

test('rd_mcp: reads of any offset, length and segmentation match the written data (runs, slab edges, holes, unmaps)', () => {
  const rand = rng(20261122);
  const ram = new RamBackstore(SIZE, 512, false);
  const model = Buffer.alloc(SIZE);
  const write = (off: number, data: Buffer) => {
    ram.write(off, data.length, [data]);
    data.copy(model, off);
  };
  const fill = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  // Sequential writes: pages in consecutive slots, runs crossing slab edges.
  write(0, fill(40 * RD_PAGE_SIZE));
  // Pages written backwards: neighbours on the medium in descending slots.
  for (let p = 120; p >= 90; p--) write(p * RD_PAGE_SIZE, fill(RD_PAGE_SIZE));
  // Scattered partial pages with holes between.
  for (let i = 0; i < 60; i++) write(200 * RD_PAGE_SIZE + Math.floor(rand() * 300 * RD_PAGE_SIZE), fill(1 + Math.floor(rand() * 3 * RD_PAGE_SIZE)));
  // Unmapped whole and partial pages inside the sequential run (slots freed, then reused by later writes).
  const unmap = (off: number, n: number) => {
    ram.unmap(off, n);
    model.fill(0, off, off + n);
  };
  unmap(5 * RD_PAGE_SIZE, 3 * RD_PAGE_SIZE);
  unmap(20 * RD_PAGE_SIZE + 100, 2 * RD_PAGE_SIZE);
  write(600 * RD_PAGE_SIZE, fill(8 * RD_PAGE_SIZE));
  for (let i = 0; i < 400; i++) {
    const big = rand() < 0.5;
    const off = big ? Math.floor(rand() * 140) * RD_PAGE_SIZE + (rand() < 0.5 ? 0 : Math.floor(rand() * RD_PAGE_SIZE))
      : Math.floor(rand() * (SIZE - 1));
    const len = Math.min(SIZE - off, 1 + Math.floor(rand() * (big ? 64 : 4) * RD_PAGE_SIZE));
    const sgl = rand() < 0.5 ? [Buffer.alloc(len, 0xee)] : segments(len, rand);
    ram.read(off, len, sgl);
    const got = Buffer.concat(sgl);
    assert.ok(got.equals(model.subarray(off, off + len)), `read at ${off} of ${len} bytes in ${sgl.length} segments`);
  }
});

test('rd_mcp lend: lent views keep what they read while writes, unmaps and sanitize go on; release frees the old pages', async () => {
  const rand = rng(7);
  const ram = new RamBackstore(SIZE, 512, false);
  const twin = new RamBackstore(SIZE, 512, false); // the same operations, never lent: the memory to end with
  const model = Buffer.alloc(SIZE);
  const fill = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  const write = (off: number, data: Buffer) => {
    ram.write(off, data.length, [data]);
    twin.write(off, data.length, [data]);
    data.copy(model, off);
  };
  const unmap = (off: number, n: number) => {
    ram.unmap(off, n);
    twin.unmap(off, n);
    model.fill(0, off, off + n);
  };
  write(0, fill(64 * RD_PAGE_SIZE));
  for (let p = 200; p >= 150; p -= 2) write(p * RD_PAGE_SIZE, fill(RD_PAGE_SIZE));
  const loans: { off: number; len: number; want: Buffer; sgl: readonly Buffer[]; release: () => void }[] = [];
  const AREA = 256 * RD_PAGE_SIZE;
  for (let step = 0; step < 600; step++) {
    const r = rand();
    const off = Math.floor(rand() * AREA);
    if (r < 0.35) {
      const len = Math.min(AREA - off, 1 + Math.floor(rand() * 40 * RD_PAGE_SIZE));
      const { sgl, release } = ram.lend(off, len);
      loans.push({ off, len, want: Buffer.from(model.subarray(off, off + len)), sgl, release });
    } else if (r < 0.7) {
      write(off, fill(Math.min(AREA - off, 1 + Math.floor(rand() * 6 * RD_PAGE_SIZE))));
    } else if (r < 0.85) {
      unmap(off, Math.min(AREA - off, 1 + Math.floor(rand() * 6 * RD_PAGE_SIZE)));
    } else if (loans.length > 0) {
      const [l] = loans.splice(Math.floor(rand() * loans.length), 1);
      assert.ok(Buffer.concat(l.sgl).equals(l.want), `loan at ${l.off} of ${l.len} bytes reads what it lent`);
      l.release();
      l.release(); // a second call does nothing
    }
    if (step % 50 === 0) {
      const got = Buffer.alloc(AREA);
      ram.read(0, AREA, [got]);
      assert.ok(got.equals(model.subarray(0, AREA)), 'reads see every write and unmap');
    }
  }
  for (const l of loans) {
    assert.ok(Buffer.concat(l.sgl).equals(l.want), `loan at ${l.off} of ${l.len} bytes reads what it lent`);
    l.release();
  }
  assert.equal(ram.allocatedBytes, twin.allocatedBytes, 'every page kept for a loan went back');
  // A sanitize drops all pages: a loan taken before still reads the old data.
  const l = ram.lend(0, 8 * RD_PAGE_SIZE);
  const before = Buffer.from(model.subarray(0, 8 * RD_PAGE_SIZE));
  await ram.sanitize('block-erase');
  write(0, fill(8 * RD_PAGE_SIZE));
  assert.ok(Buffer.concat(l.sgl).equals(before));
  l.release();
  const got = Buffer.alloc(8 * RD_PAGE_SIZE);
  ram.read(0, got.length, [got]);
  assert.ok(got.equals(model.subarray(0, got.length)));
});

test('rd_mcp: rewrites of any offset, length and segmentation over laid-out runs, holes and slab edges land exactly', () => {
  const rand = rng(116);
  const ram = new RamBackstore(SIZE, 512, false);
  const model = Buffer.alloc(SIZE);
  const fill = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
  const write = (off: number, data: Buffer, sgl: Buffer[] = [data]) => {
    ram.write(off, data.length, sgl);
    data.copy(model, off);
  };
  // Runs in consecutive slots (crossing slab edges), a backwards run, holes between.
  write(0, fill(70 * RD_PAGE_SIZE));
  for (let p = 130; p >= 100; p--) write(p * RD_PAGE_SIZE, fill(RD_PAGE_SIZE));
  ram.unmap(10 * RD_PAGE_SIZE, 2 * RD_PAGE_SIZE);
  model.fill(0, 10 * RD_PAGE_SIZE, 12 * RD_PAGE_SIZE);
  for (let i = 0; i < 400; i++) {
    const off = Math.floor(rand() * 160 * RD_PAGE_SIZE) + (rand() < 0.3 ? 0 : Math.floor(rand() * 512));
    const len = Math.min(SIZE - off, 1 + Math.floor(rand() * 40 * RD_PAGE_SIZE));
    const data = fill(len);
    // The same bytes as segments of random sizes (views of data).
    const sgl: Buffer[] = [];
    for (const s of segments(len, rand)) sgl.push(data.subarray(sglEnd(sgl), sglEnd(sgl) + s.length));
    write(off, data, rand() < 0.3 ? [data] : sgl);
  }
  const back = Buffer.alloc(SIZE);
  ram.read(0, SIZE, [back]);
  assert.ok(back.equals(model), 'the medium holds exactly what was written');
});

const sglEnd = (sgl: Buffer[]): number => sgl.reduce((n, b) => n + b.length, 0);

test('rd_mcp handOver: another thread adopts the pages without a copy (data, holes, allocation, LBA status); its writes land in the same memory', async () => {
  const { Worker } = await import('node:worker_threads');
  const ram = new RamBackstore(SIZE, 512, false);
  const a = Buffer.alloc(3 * RD_PAGE_SIZE + 100, 0xa5);
  ram.write(RD_PAGE_SIZE * 20 + 7, a.length, [a]);
  ram.write(SIZE - RD_PAGE_SIZE, RD_PAGE_SIZE, [Buffer.alloc(RD_PAGE_SIZE, 0x3c)]);
  ram.unmap(RD_PAGE_SIZE * 21, RD_PAGE_SIZE);
  const allocated = ram.allocatedBytes;
  const pages = ram.handOver();
  assert.ok(pages.slabs.some((s) => s instanceof SharedArrayBuffer), 'pages live in shared memory');
  // The other thread adopts them, reads them back, writes one page, and says what it saw.
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { createRdMcp } = require(${JSON.stringify(require.resolve('../backstores/rd-mcp'))});
    createRdMcp({ name: 'r', size: ${SIZE}, blockSize: 512, adopt: workerData }).then((ram) => {
      const out = Buffer.alloc(${SIZE});
      ram.read(0, ${SIZE}, [out]);
      const hole = ram.lbaStatus(${RD_PAGE_SIZE * 21}, ${RD_PAGE_SIZE * 4});
      ram.write(${RD_PAGE_SIZE * 20}, 512, [Buffer.alloc(512, 0x77)]);
      parentPort.postMessage({ out, allocated: ram.allocatedBytes, hole });
    });`;
  const w = new Worker(src, { eval: true, workerData: pages });
  const r = await new Promise<{ out: Uint8Array; allocated: number; hole: { deallocated: boolean; length: number } }>((res, rej) => w.once('message', res).once('error', rej));
  await w.terminate();
  const want = Buffer.alloc(SIZE);
  a.copy(want, RD_PAGE_SIZE * 20 + 7);
  want.fill(0, RD_PAGE_SIZE * 21, RD_PAGE_SIZE * 22);
  want.fill(0x3c, SIZE - RD_PAGE_SIZE);
  assert.ok(Buffer.from(r.out).equals(want), 'the adopting thread reads what this one wrote');
  assert.equal(r.allocated, allocated);
  assert.deepEqual(r.hole, { deallocated: true, length: RD_PAGE_SIZE });
  // Same memory, not a copy: the other thread's write shows here.
  const back = Buffer.alloc(512);
  ram.read(RD_PAGE_SIZE * 20, 512, [back]);
  assert.ok(back.equals(Buffer.alloc(512, 0x77)));
  assert.throws(() => new RamBackstore(RD_PAGE_SIZE, 512, false).adopt(pages), /beyond the unit's 4096 bytes/);
});

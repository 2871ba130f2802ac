// rd_mcp reads copy runs of pages that lie one after the other in a slab in
// one step: reads of every alignment and segmentation must still match a
// plain model of the medium, across slab edges, out-of-order pages, holes
// and unmapped pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RamBackstore, RD_PAGE_SIZE } from '../backstores/rd_mcp';

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

// SBC-4 commands that compare or combine with the medium: VERIFY (BYTCHK 0,
// 1, 3), WRITE AND VERIFY, COMPARE AND WRITE (with its atomicity against
// concurrent writes), ORWRITE, WRITE ATOMIC: miscompare offsets in INFORMATION.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { rig, type Rig } from './util/loopback-setup';
import type { LoopbackNexus, LoopbackResult } from '../fabrics/loopback/loopback';
import { gated } from './util/gated';
import { Status } from '../src/core/sense';
import {
  INVALID_OPCODE, LBA_OUT_OF_RANGE, cdb10, cdb12, cdb16, checkSense, good, invalidCdb, miscompareAt, pattern, readBlocks, writeBlocks,
} from './util/cdb';
import { MAX_ATOMIC_BLOCKS } from '../src/scsi/sbc';

const BS = 512;
const BLOCKS = (64 << 20) / BS;

let r: Rig;
let n: LoopbackNexus;

before(async () => {
  r = await rig([{}, { attributes: { emulate_caw: false } }, { plugin: 'gated', size: 1 << 20, attributes: { emulate_tpu: true } }]);
  n = await r.nexus();
  gated[gated.length - 1].open();
});
after(() => r.close());

const put = (lun: number, lba: number, data: Buffer): Promise<void> => writeBlocks(n, lun, lba, data);
const get = (lun: number, lba: number, blocks: number): Promise<Buffer> => readBlocks(n, lun, lba, blocks);

const VERIFIES: [string, (lba: number, blocks: number, b1?: number) => Buffer][] = [
  ['VERIFY(10)', (l, b, f) => cdb10(0x2f, l, b, f)],
  ['VERIFY(12)', (l, b, f) => cdb12(0xaf, l, b, f)],
  ['VERIFY(16)', (l, b, f) => cdb16(0x8f, l, b, f)],
];

test('VERIFY BYTCHK 0 checks the medium only; out of range and 0 blocks as SBC-4 says', async () => {
  for (const [name, v] of VERIFIES) {
    good(await n.command(0, v(0, 64)), name);
    good(await n.command(0, v(BLOCKS - 1, 1)), `${name} last block`);
    good(await n.command(0, v(5, 0)), `${name} 0 blocks`);
    checkSense(await n.command(0, v(BLOCKS, 1)), LBA_OUT_OF_RANGE, `${name} past end`);
    // BYTCHK 0 moves no data: no transfer limit applies.
    good(await n.command(0, v(0, 0xffff)), `${name} long`);
    checkSense(await n.command(0, v(0, 1, 0x04)), invalidCdb(1, 2), `${name} BYTCHK 10b`);
    checkSense(await n.command(0, v(0, 1, 0x20)), invalidCdb(1, 5), `${name} VRPROTECT`);
  }
});

test('a long VERIFY on RAM lets other commands run between its chunks', async () => {
  const order: string[] = [];
  const v = n.command(0, cdb16(0x8f, 0, BLOCKS)).then((res) => (good(res), order.push('verify')));
  // Submitted from the next turn of the event loop: only runs early if the VERIFY yields it.
  const rd = new Promise((res) => setImmediate(res))
    .then(() => n.command(0, cdb10(0x28, 0, 1)))
    .then((res) => (good(res), order.push('read')));
  await Promise.all([v, rd]);
  assert.deepEqual(order, ['read', 'verify']);
});

test('VERIFY BYTCHK 1 compares the data-out; a miscompare names the first differing byte', async () => {
  const data = pattern(8 * BS, 3);
  await put(0, 200, data);
  for (const [name, v] of VERIFIES) {
    good(await n.command(0, v(200, 8, 0x02), { dataOut: data }), name);
    const bad = Buffer.from(data);
    bad[3 * BS + 17] ^= 0x40;
    checkSense(await n.command(0, v(200, 8, 0x02), { dataOut: bad }), miscompareAt(3 * BS + 17), name);
  }
});

test('VERIFY BYTCHK 3 compares one block with every block of the range', async () => {
  const block = pattern(BS, 11);
  await put(0, 300, Buffer.concat([block, block, block, block]));
  for (const [name, v] of VERIFIES) {
    good(await n.command(0, v(300, 4, 0x06), { dataOut: block }), name);
    checkSense(await n.command(0, v(300, 5, 0x06), { dataOut: block }), miscompareAt(4 * BS), `${name} 5th block differs`);
  }
  const other = Buffer.from(block);
  other[BS - 1] ^= 1;
  checkSense(await n.command(0, cdb10(0x2f, 300, 4, 0x06), { dataOut: other }), miscompareAt(BS - 1), 'last byte');
});

test('WRITE AND VERIFY (10/12/16) writes, then checks; BYTCHK 1 compares; reserved BYTCHK refused', async () => {
  const cdbs: [string, (lba: number, blocks: number, b1?: number) => Buffer][] = [
    ['WRITE AND VERIFY(10)', (l, b, f) => cdb10(0x2e, l, b, f)],
    ['WRITE AND VERIFY(12)', (l, b, f) => cdb12(0xae, l, b, f)],
    ['WRITE AND VERIFY(16)', (l, b, f) => cdb16(0x8e, l, b, f)],
  ];
  let seed = 40;
  for (const [name, c] of cdbs) {
    const data = pattern(4 * BS, seed++);
    good(await n.command(0, c(400, 4), { dataOut: data }), name);
    assert.deepEqual(await get(0, 400, 4), data, name);
    const data2 = pattern(4 * BS, seed++);
    good(await n.command(0, c(400, 4, 0x02), { dataOut: data2 }), `${name} BYTCHK 1`);
    assert.deepEqual(await get(0, 400, 4), data2, name);
    checkSense(await n.command(0, c(400, 4, 0x04), { dataOut: data2 }), invalidCdb(1, 2), `${name} BYTCHK 2`);
    checkSense(await n.command(0, c(BLOCKS - 3, 4), { dataOut: data2 }), LBA_OUT_OF_RANGE, `${name} past end`);
    good(await n.command(0, c(0, 0)), `${name} 0 blocks`);
  }
});

function caw(lba: number | bigint, blocks: number, b1 = 0): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x89;
  c[1] = b1;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c[13] = blocks;
  return c;
}

test('COMPARE AND WRITE: writes when the verify half matches, MISCOMPARE with the offset when not', async () => {
  const old = pattern(BS, 50);
  const next = pattern(BS, 51);
  await put(0, 500, old);
  good(await n.command(0, caw(500, 1), { dataOut: Buffer.concat([old, next]) }));
  assert.deepEqual(await get(0, 500, 1), next);
  // The medium holds `next` now: comparing with `old` fails where they first differ; nothing is written.
  let first = 0;
  while (old[first] === next[first]) first++;
  const third = pattern(BS, 52);
  checkSense(await n.command(0, caw(500, 1), { dataOut: Buffer.concat([old, third]) }), miscompareAt(first));
  assert.deepEqual(await get(0, 500, 1), next);
  good(await n.command(0, caw(500, 0)), '0 blocks');
  // 256 blocks do not fit the byte: NUMBER OF LOGICAL BLOCKS 0 with 512 blocks of data-out.
  checkSense(await n.command(0, caw(500, 0), { dataOut: Buffer.alloc(512 * BS) }), invalidCdb(13), '0 blocks with data');
  good(await n.command(0, caw(BLOCKS - 1, 1), { dataOut: Buffer.concat([await get(0, BLOCKS - 1, 1), next]) }));
  checkSense(await n.command(0, caw(BLOCKS, 1), { dataOut: Buffer.alloc(2 * BS) }), LBA_OUT_OF_RANGE, 'past end');
  checkSense(await n.command(0, caw(0, 2), { dataOut: Buffer.alloc(4 * BS) }), invalidCdb(13), 'NUMBER 2 > maximum 1');
  checkSense(await n.command(0, caw(0, 1, 0x20), { dataOut: Buffer.alloc(2 * BS) }), invalidCdb(1, 5), 'WRPROTECT');
  checkSense(await n.command(1, caw(0, 1), { dataOut: Buffer.alloc(2 * BS) }), INVALID_OPCODE, 'emulate_caw off');
  for (const len of [BS, 4 * BS]) {
    checkSense(await n.command(0, caw(0, 1), { dataOut: Buffer.alloc(len) }), invalidCdb(13), `data-out ${len}`);
  }
});

test('COMPARE AND WRITE is atomic: concurrent writes to its block wait for it, and compare-and-swap loses no update', async () => {
  const g = gated[gated.length - 1];
  const zero = Buffer.alloc(BS);
  good(await n.command(2, cdb16(0x8a, 7, 1), { dataOut: zero }));
  // Hold the backstore: the COMPARE AND WRITE reads (and blocks) first, a plain write arrives meanwhile.
  g.closed = true;
  const a = pattern(BS, 60);
  const w = pattern(BS, 61);
  const cawDone = n.command(2, caw(7, 1), { dataOut: Buffer.concat([zero, a]) });
  const writeDone = n.command(2, cdb16(0x8a, 7, 1), { dataOut: w });
  await new Promise((res) => setImmediate(res));
  assert.equal(g.started, 1, 'only the COMPARE AND WRITE reached the backstore; the write waits for the range');
  g.open();
  good(await cawDone);
  good(await writeDone);
  assert.deepEqual(await get(2, 7, 1), w, 'the write landed after the COMPARE AND WRITE');

  // An UNMAP of a span holding the block waits for the COMPARE AND WRITE too.
  g.closed = true;
  const started = g.started;
  const b = pattern(BS, 62);
  const caw2 = n.command(2, caw(7, 1), { dataOut: Buffer.concat([w, b]) });
  const list = Buffer.alloc(40);
  list.writeUInt16BE(38, 0);
  list.writeUInt16BE(32, 2);
  list.writeBigUInt64BE(0n, 8);
  list.writeUInt32BE(2, 16);
  list.writeBigUInt64BE(7n, 24);
  list.writeUInt32BE(1, 32);
  const unmapped = n.command(2, [0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0], { dataOut: list });
  await new Promise((res) => setImmediate(res));
  assert.equal(g.started, started + 1);
  g.open();
  good(await caw2);
  good(await unmapped);
  assert.deepEqual(await get(2, 7, 1), Buffer.alloc(BS), 'the UNMAP came after the COMPARE AND WRITE');

  // Many initiators increment a counter with compare-and-swap retries: every increment survives.
  good(await n.command(2, cdb16(0x8a, 8, 1), { dataOut: zero }));
  const workers = 8;
  const perWorker = 10;
  const counter = (v: number): Buffer => {
    const b = Buffer.alloc(BS);
    b.writeUInt32BE(v, 0);
    return b;
  };
  await Promise.all(Array.from({ length: workers }, async () => {
    for (let done = 0; done < perWorker;) {
      const cur = (await get(2, 8, 1)).readUInt32BE(0);
      const res: LoopbackResult = await n.command(2, caw(8, 1), { dataOut: Buffer.concat([counter(cur), counter(cur + 1)]) });
      if (res.status === Status.GOOD) done++;
      else assert.equal(res.senseKey, 0xe, 'only miscompares are expected');
    }
  }));
  assert.equal((await get(2, 8, 1)).readUInt32BE(0), workers * perWorker);
});

test('ORWRITE(16): each byte becomes old OR new; range and protection checked', async () => {
  const old = pattern(2 * BS, 70);
  const mask = pattern(2 * BS, 71);
  await put(0, 600, old);
  good(await n.command(0, cdb16(0x8b, 600, 2), { dataOut: mask }));
  const want = Buffer.from(old.map((v, i) => v | mask[i]));
  assert.deepEqual(await get(0, 600, 2), want);
  good(await n.command(0, cdb16(0x8b, 600, 0)), '0 blocks');
  checkSense(await n.command(0, cdb16(0x8b, BLOCKS - 1, 2), { dataOut: mask }), LBA_OUT_OF_RANGE, 'past end');
  checkSense(await n.command(0, cdb16(0x8b, 0, 1, 0x20), { dataOut: mask.subarray(0, BS) }), invalidCdb(1, 5), 'ORPROTECT');
});

function writeAtomic(lba: number, blocks: number, boundary = 0): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x9c;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt16BE(boundary, 10);
  c.writeUInt16BE(blocks, 12);
  return c;
}

test('WRITE ATOMIC(16): up to the maximum atomic transfer length, no boundary', async () => {
  const data = pattern(MAX_ATOMIC_BLOCKS * BS, 80);
  good(await n.command(0, writeAtomic(1000, MAX_ATOMIC_BLOCKS), { dataOut: data }));
  assert.deepEqual(await get(0, 1000, MAX_ATOMIC_BLOCKS), data);
  good(await n.command(0, writeAtomic(BLOCKS - 1, 1), { dataOut: data.subarray(0, BS) }), 'last block');
  good(await n.command(0, writeAtomic(0, 0)), '0 blocks');
  checkSense(await n.command(0, writeAtomic(0, MAX_ATOMIC_BLOCKS + 1), { dataOut: Buffer.alloc((MAX_ATOMIC_BLOCKS + 1) * BS) }),
    invalidCdb(12), 'over the maximum');
  checkSense(await n.command(0, writeAtomic(BLOCKS - 1, 2), { dataOut: Buffer.alloc(2 * BS) }), LBA_OUT_OF_RANGE, 'past end');
  // Past the end is reported before too long.
  const long = 2 * MAX_ATOMIC_BLOCKS;
  checkSense(await n.command(0, writeAtomic(BLOCKS - long / 2, long), { dataOut: Buffer.alloc(long * BS) }), LBA_OUT_OF_RANGE, 'long, past end');
  checkSense(await n.command(0, writeAtomic(0, 1, 1), { dataOut: Buffer.alloc(BS) }), invalidCdb(11, 0), 'ATOMIC BOUNDARY');
});

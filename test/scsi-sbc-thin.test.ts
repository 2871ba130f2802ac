// Logical block provisioning through the loopback fabric: WRITE SAME (10)/(16)
// with UNMAP and NDOB, UNMAP parameter lists and limits, GET LBA STATUS, on
// RAM and on a sparse file.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { rig, type Rig } from './util/loopback-setup';
import type { LoopbackNexus } from '../fabrics/loopback/loopback';
import {
  INVALID_OPCODE, LBA_OUT_OF_RANGE, PARAM_LIST_LENGTH, cdb10, cdb16, checkSense, good, invalidCdb, invalidParam, pattern, readBlocks, writeBlocks,
} from './util/cdb';

const BS = 512;
const BLOCKS = (64 << 20) / BS;
const THIN = { emulate_tpu: true, emulate_tpws: true };

let r: Rig;
let n: LoopbackNexus;
let dir: string;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-thin-'));
  r = await rig([
    { attributes: THIN },
    {},
    { attributes: { ...THIN, max_unmap_block_desc_count: 2, max_unmap_lba_count: 64, max_write_same_len: 128 } },
    { plugin: 'fileio', dev: path.join(dir, 'thin.img'), size: 64 << 20, attributes: THIN },
    { size: 3 * 2 ** 40, attributes: THIN },
  ]);
  n = await r.nexus();
});
after(async () => {
  await r.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const put = (lun: number, lba: number, data: Buffer): Promise<void> => writeBlocks(n, lun, lba, data);
const get = (lun: number, lba: number, blocks: number): Promise<Buffer> => readBlocks(n, lun, lba, blocks);

function lbaStatusCdb(lba: number | bigint, alloc: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x9e;
  c[1] = 0x12;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt32BE(alloc, 10);
  return c;
}

/** GET LBA STATUS descriptors as [lba, blocks, status]. */
async function lbaStatus(lun: number, lba: number, alloc = 1024): Promise<[number, number, number][]> {
  const res = await n.command(lun, lbaStatusCdb(lba, alloc));
  good(res);
  const len = res.data.readUInt32BE(0);
  assert.equal((len - 4) % 16, 0);
  const out: [number, number, number][] = [];
  for (let p = 8; p + 16 <= res.data.length && p < len + 4; p += 16) {
    out.push([Number(res.data.readBigUInt64BE(p)), res.data.readUInt32BE(p + 8), res.data[p + 12] & 0xf]);
  }
  return out;
}

function unmapList(ranges: [number | bigint, number][], opts: { dl?: number; bdl?: number } = {}): Buffer {
  const b = Buffer.alloc(8 + 16 * ranges.length);
  b.writeUInt16BE(opts.dl ?? b.length - 2, 0);
  b.writeUInt16BE(opts.bdl ?? 16 * ranges.length, 2);
  ranges.forEach(([lba, cnt], i) => {
    b.writeBigUInt64BE(BigInt(lba), 8 + 16 * i);
    b.writeUInt32BE(cnt, 16 + 16 * i);
  });
  return b;
}

function unmapCdb(len: number, b1 = 0): Buffer {
  const c = Buffer.alloc(10);
  c[0] = 0x42;
  c[1] = b1;
  c.writeUInt16BE(len, 7);
  return c;
}

async function unmap(lun: number, list: Buffer): Promise<ReturnType<LoopbackNexus['command']>> {
  return n.command(lun, unmapCdb(list.length), { dataOut: list });
}

test('WRITE SAME (10)/(16) repeat the block over the range', async () => {
  const block = pattern(BS, 1);
  good(await n.command(0, cdb10(0x41, 100, 20), { dataOut: block }));
  good(await n.command(0, cdb16(0x93, 300, 3000), { dataOut: block }));
  for (const [lba, cnt] of [[100, 20], [300, 3000]]) {
    const back = await get(0, lba, cnt);
    for (let i = 0; i < cnt; i++) assert.deepEqual(back.subarray(i * BS, (i + 1) * BS), block, `LBA ${lba + i}`);
  }
  // Its neighbours are untouched.
  assert.deepEqual(await get(0, 99, 1), Buffer.alloc(BS));
  assert.deepEqual(await get(0, 120, 1), Buffer.alloc(BS));
});

test('WRITE SAME with UNMAP deallocates (GET LBA STATUS says so) and the blocks read zeros', async () => {
  for (const lun of [0, 3]) {
    await put(lun, 2048, pattern(64 * BS, 2));
    let st = await lbaStatus(lun, 2048);
    assert.equal(st[0][0], 2048);
    assert.equal(st[0][2], 0, 'written blocks are mapped');
    assert.ok(st[0][1] >= 64);
    good(await n.command(lun, cdb16(0x93, 2048, 64, 0x08), { dataOut: Buffer.alloc(BS) }));
    assert.deepEqual(await get(lun, 2048, 64), Buffer.alloc(64 * BS));
    st = await lbaStatus(lun, 2048);
    assert.deepEqual(st[0].slice(0, 1), [2048]);
    assert.equal(st[0][2], 1, `LUN ${lun}: deallocated`);
    assert.ok(st[0][1] >= 64);
    // NDOB (16 only): no data-out, same effect.
    await put(lun, 4096, pattern(8 * BS, 3));
    good(await n.command(lun, cdb16(0x93, 4096, 8, 0x09)));
    assert.deepEqual(await get(lun, 4096, 8), Buffer.alloc(8 * BS));
    assert.equal((await lbaStatus(lun, 4096))[0][2], 1);
    good(await n.command(lun, cdb10(0x41, 4096, 8, 0x08), { dataOut: Buffer.alloc(BS) }), 'WRITE SAME(10) UNMAP');
  }
});

test('WRITE SAME with UNMAP and non-zero data writes the data (nothing may read back wrong)', async () => {
  const block = pattern(BS, 4);
  good(await n.command(0, cdb16(0x93, 5000, 4, 0x08), { dataOut: block }));
  assert.deepEqual(await get(0, 5000, 4), Buffer.concat([block, block, block, block]));
  assert.equal((await lbaStatus(0, 5000))[0][2], 0);
});

test('WRITE SAME UNMAP on a unit that is not thin (LBPWS 0) is refused and changes nothing; without UNMAP it zeroes', async () => {
  const data = pattern(4 * BS, 5);
  await put(1, 10, data);
  checkSense(await n.command(1, cdb16(0x93, 10, 4, 0x08), { dataOut: Buffer.alloc(BS) }), invalidCdb(1, 3), 'WRITE SAME(16) UNMAP');
  checkSense(await n.command(1, cdb10(0x41, 10, 4, 0x08), { dataOut: Buffer.alloc(BS) }), invalidCdb(1, 3), 'WRITE SAME(10) UNMAP');
  assert.deepEqual(await get(1, 10, 4), data);
  good(await n.command(1, cdb16(0x93, 10, 4), { dataOut: Buffer.alloc(BS) }));
  assert.deepEqual(await get(1, 10, 4), Buffer.alloc(4 * BS));
  assert.deepEqual(await lbaStatus(1, 10), [[10, BLOCKS - 10, 0]], 'a fully provisioned unit is mapped throughout');
});

test('WRITE SAME refusals: 0 blocks (WSNZ), over max_write_same_len, ANCHOR, past the end', async () => {
  checkSense(await n.command(0, cdb10(0x41, 0, 0), { dataOut: Buffer.alloc(BS) }), invalidCdb(7), 'WS10 0 blocks');
  checkSense(await n.command(0, cdb16(0x93, 0, 0), { dataOut: Buffer.alloc(BS) }), invalidCdb(10), 'WS16 0 blocks');
  good(await n.command(2, cdb16(0x93, 0, 128), { dataOut: Buffer.alloc(BS) }), 'at the maximum');
  checkSense(await n.command(2, cdb16(0x93, 0, 129), { dataOut: Buffer.alloc(BS) }), invalidCdb(10), 'over the maximum');
  checkSense(await n.command(0, cdb16(0x93, 0, 1, 0x10), { dataOut: Buffer.alloc(BS) }), invalidCdb(1, 4), 'ANCHOR');
  checkSense(await n.command(0, cdb10(0x41, 0, 1, 0x20), { dataOut: Buffer.alloc(BS) }), invalidCdb(1, 5), 'WRPROTECT');
  checkSense(await n.command(0, cdb10(0x41, 0, 1, 0x01), { dataOut: Buffer.alloc(BS) }), invalidCdb(1, 0), 'NDOB on (10)');
  good(await n.command(0, cdb16(0x93, BLOCKS - 1, 1), { dataOut: Buffer.alloc(BS) }), 'last block');
  checkSense(await n.command(0, cdb16(0x93, BLOCKS - 1, 2), { dataOut: Buffer.alloc(BS) }), LBA_OUT_OF_RANGE, 'past end');
  checkSense(await n.command(0, cdb16(0x93, 0xffffffffffffffffn, 1), { dataOut: Buffer.alloc(BS) }), LBA_OUT_OF_RANGE, 'LBA -1');
  // Only one block of data-out makes sense: more or less is refused (not clipped).
  for (const len of [BS / 2, 2 * BS]) {
    checkSense(await n.command(0, cdb10(0x41, 0, 1), { dataOut: Buffer.alloc(len) }), { key: 5, asc: 0x0e, ascq: 0x03 }, `${len} bytes`);
  }
  checkSense(await n.command(0, cdb16(0x93, 0, 1, 0x01), { dataOut: Buffer.alloc(BS) }), { key: 5, asc: 0x0e, ascq: 0x03 }, 'NDOB with data');
});

test('UNMAP deallocates every range of the list; reads return zeros', async () => {
  for (const lun of [0, 3]) {
    await put(lun, 8192, pattern(256 * BS, 6));
    good(await unmap(lun, unmapList([[8192, 64], [8192 + 128, 64]])), `LUN ${lun}`);
    const back = await get(lun, 8192, 256);
    assert.deepEqual(back.subarray(0, 64 * BS), Buffer.alloc(64 * BS));
    assert.deepEqual(back.subarray(64 * BS, 128 * BS), pattern(256 * BS, 6).subarray(64 * BS, 128 * BS));
    assert.deepEqual(back.subarray(128 * BS, 192 * BS), Buffer.alloc(64 * BS));
    const st = await lbaStatus(lun, 8192);
    assert.deepEqual(st.slice(0, 4), [[8192, 64, 1], [8256, 64, 0], [8320, 64, 1], [8384, 64, 0]], `LUN ${lun}`);
  }
});

test('UNMAP parameter list checks: lengths, descriptor count, LBA count, ranges, ANCHOR', async () => {
  good(await n.command(0, unmapCdb(0)), 'no parameter list');
  checkSense(await n.command(0, unmapCdb(7), { dataOut: Buffer.alloc(7) }), PARAM_LIST_LENGTH, 'shorter than the header');
  checkSense(await unmap(0, unmapList([[0, 1]], { bdl: 32 })), PARAM_LIST_LENGTH, 'BDL past the list');
  checkSense(await unmap(0, unmapList([[0, 1]], { dl: 40 })), PARAM_LIST_LENGTH, 'DL past the list');
  good(await unmap(0, Buffer.concat([unmapList([[0, 1]], { dl: 26, bdl: 20 }), Buffer.alloc(4)])), 'a partial trailing descriptor is ignored');
  good(await unmap(0, unmapList([[0, 0]])), 'a 0-block descriptor');
  checkSense(await unmap(2, unmapList([[0, 1], [10, 1], [20, 1]])), invalidParam(2), 'over max_unmap_block_desc_count');
  good(await unmap(2, unmapList([[0, 32], [100, 32]])), 'at max_unmap_lba_count');
  checkSense(await unmap(2, unmapList([[0, 32], [100, 33]])), invalidParam(32), 'over max_unmap_lba_count');
  checkSense(await unmap(0, unmapList([[BLOCKS - 1, 2]])), LBA_OUT_OF_RANGE, 'range past the end');
  checkSense(await unmap(0, unmapList([[0xffffffffffffffffn, 1]])), LBA_OUT_OF_RANGE, 'LBA -1');
  const list = unmapList([[0, 1]]);
  checkSense(await n.command(0, unmapCdb(list.length, 0x01), { dataOut: list }), invalidCdb(1, 0), 'ANCHOR');
});

test('a refused UNMAP list deallocates nothing, not even its valid ranges', async () => {
  await put(0, 9000, pattern(8 * BS, 7));
  checkSense(await unmap(0, unmapList([[9000, 8], [BLOCKS, 1]])), LBA_OUT_OF_RANGE);
  assert.deepEqual(await get(0, 9000, 8), pattern(8 * BS, 7));
});

test('UNMAP is an unknown opcode when emulate_tpu is off, so initiators skip it', async () => {
  checkSense(await unmap(1, unmapList([[0, 1]])), INVALID_OPCODE);
});

test('GET LBA STATUS: start past the end, short allocation lengths, one descriptor per extent', async () => {
  checkSense(await n.command(0, lbaStatusCdb(BLOCKS, 1024)), LBA_OUT_OF_RANGE, 'at capacity');
  checkSense(await n.command(0, lbaStatusCdb(0xffffffffffffffffn, 1024)), LBA_OUT_OF_RANGE, 'LBA -1');
  const last = await lbaStatus(0, BLOCKS - 1);
  assert.deepEqual(last, [[BLOCKS - 1, 1, 1]]);
  // An allocation length holding only the header and one descriptor gets one.
  await put(0, 20000, pattern(8 * BS, 8));
  const one = await n.command(0, lbaStatusCdb(19992, 24));
  good(one);
  assert.equal(one.data.length, 24);
  assert.equal(one.data.readUInt32BE(0), 20);
  assert.deepEqual([Number(one.data.readBigUInt64BE(8)), one.data.readUInt32BE(16), one.data[20]], [19992, 8, 1]);
  const two = await lbaStatus(0, 19992, 40);
  assert.deepEqual(two, [[19992, 8, 1], [20000, 8, 0]]);
  const headerOnly = await n.command(0, lbaStatusCdb(0, 8));
  good(headerOnly);
  assert.equal(headerOnly.data.length, 8);
  const reportType = lbaStatusCdb(0, 64);
  reportType[14] = 1;
  checkSense(await n.command(0, reportType), invalidCdb(14, 0), 'REPORT TYPE');
});

test('GET LBA STATUS on a 3 TiB thin RAM unit: extents capped at 2^32-1 blocks, found without walking the hole', async () => {
  const at = 2 ** 32 + 4096;
  await put(4, at, pattern(8 * BS, 9));
  const blocks = 3 * 2 ** 40 / BS;
  const st = await lbaStatus(4, 0, 8 + 4 * 16);
  assert.deepEqual(st, [[0, 0xffffffff, 1], [0xffffffff, at - 0xffffffff, 1], [at, 8, 0], [at + 8, blocks - at - 8, 1]]);
});

test('WRITE SAME UNMAP and UNMAP over a 3 TiB thin RAM unit visit only what is allocated', async () => {
  const at = 2 ** 32 + 2 ** 20;
  const count = 0x7f000000; // about 1 TiB of blocks, from just before the written ones
  await put(4, at, pattern(8 * BS, 10));
  const list = Buffer.alloc(24);
  list.writeUInt16BE(22, 0);
  list.writeUInt16BE(16, 2);
  list.writeBigUInt64BE(BigInt(at - 4), 8);
  list.writeUInt32BE(count, 16);
  const big = r.sos[4];
  big.attributes.max_unmap_lba_count = 0xffffffff;
  good(await unmap(4, list));
  assert.deepEqual(await get(4, at, 8), Buffer.alloc(8 * BS));
  await put(4, at, pattern(8 * BS, 11));
  big.attributes.max_write_same_len = 0xffffffff;
  good(await n.command(4, cdb16(0x93, at - 4, count, 0x09)), 'WRITE SAME(16) NDOB UNMAP over 1 TiB');
  assert.deepEqual(await get(4, at, 8), Buffer.alloc(8 * BS));
});

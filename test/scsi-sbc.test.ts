// SBC-4 READ/WRITE (6/10/12/16), READ CAPACITY (10)/(16), SYNCHRONIZE CACHE,
// through the loopback fabric on RAM and file backstores: exact status,
// sense, INFORMATION and field pointers.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { INITIATOR_B, rig, type Rig } from './util/loopback-setup';
import { Status } from '../src/core/sense';
import type { LoopbackNexus } from '../fabrics/loopback/loopback';
import { registerBackstore } from '../app/registry';
import { createFileio } from '../backstores/fileio';
import type { Backstore } from '../src/core/backstore';
import type { Sgl } from '../src/core/sgl';
import {
  LBA_OUT_OF_RANGE, cdb10, cdb12, cdb16, cdb6, checkSense, good, invalidCdb, pattern,
} from './util/cdb';

const BS = 512;
const SIZE = 64 << 20;
const BLOCKS = SIZE / BS;

let r: Rig;
let n: LoopbackNexus;

before(async () => {
  r = await rig([
    {}, { attributes: { emulate_fua_write: false } }, { size: 3 * 2 ** 40 }, { attributes: { emulate_tpu: true } },
    { size: 8 << 20, physicalBlockSize: 4096 }, { attributes: { readonly: true, emulate_tpu: true, emulate_tpws: true } },
  ]);
  n = await r.nexus();
});
after(() => r.close());

const READS: [string, (lba: number, blocks: number, b1?: number) => Buffer][] = [
  ['READ(10)', (l, b, f) => cdb10(0x28, l, b, f)],
  ['READ(12)', (l, b, f) => cdb12(0xa8, l, b, f)],
  ['READ(16)', (l, b, f) => cdb16(0x88, l, b, f)],
];
const WRITES: [string, (lba: number, blocks: number, b1?: number) => Buffer][] = [
  ['WRITE(10)', (l, b, f) => cdb10(0x2a, l, b, f)],
  ['WRITE(12)', (l, b, f) => cdb12(0xaa, l, b, f)],
  ['WRITE(16)', (l, b, f) => cdb16(0x8a, l, b, f)],
];

test('each WRITE size writes what each READ size reads back, DPO and FUA accepted', async () => {
  let seed = 1;
  for (const [wname, w] of WRITES) {
    for (const [rname, rd] of READS) {
      const lba = 100 * seed;
      const data = pattern(8 * BS, seed++);
      good(await n.command(0, w(lba, 8, 0x18), { dataOut: data }), wname);
      const back = await n.command(0, rd(lba, 8, 0x18));
      good(back, rname);
      assert.deepEqual(back.data, data, `${wname} then ${rname}`);
      assert.equal(back.residual, 0);
    }
  }
});

test('READ(6)/WRITE(6): 21-bit LBA, transfer length 0 means 256 blocks', async () => {
  const data = pattern(256 * BS, 7);
  const lba = 0x10100; // uses the LBA bits of byte 1
  good(await n.command(0, cdb6(0x0a, lba, 0), { dataOut: data }));
  const back = await n.command(0, cdb6(0x08, lba, 0));
  good(back);
  assert.equal(back.data.length, 256 * BS);
  assert.deepEqual(back.data, data);
  const one = await n.command(0, cdb6(0x08, lba + 255, 1));
  assert.deepEqual(one.data, data.subarray(255 * BS));
  // Bits 7..5 of byte 1 are reserved in READ(6).
  checkSense(await n.command(0, [0x08, 0x20, 0, 0, 1, 0]), invalidCdb(1, 5), 'READ(6) reserved');
});

test('the last block is readable and writable; one past it is LBA OUT OF RANGE', async () => {
  for (const [name, rd] of READS) {
    good(await n.command(0, rd(BLOCKS - 1, 1)), `${name} last block`);
    checkSense(await n.command(0, rd(BLOCKS, 1)), LBA_OUT_OF_RANGE, `${name} one past`);
    checkSense(await n.command(0, rd(BLOCKS - 1, 2)), LBA_OUT_OF_RANGE, `${name} straddling the end`);
  }
  for (const [name, w] of WRITES) {
    good(await n.command(0, w(BLOCKS - 1, 1), { dataOut: Buffer.alloc(BS, 1) }), `${name} last block`);
    checkSense(await n.command(0, w(BLOCKS, 1), { dataOut: Buffer.alloc(BS, 1) }), LBA_OUT_OF_RANGE, name);
  }
  checkSense(await n.command(0, cdb6(0x08, BLOCKS, 1)), LBA_OUT_OF_RANGE, 'READ(6)');
  // 0 blocks at the capacity is no error; past it is.
  good(await n.command(0, cdb10(0x28, BLOCKS, 0)));
  checkSense(await n.command(0, cdb10(0x28, BLOCKS + 1, 0)), LBA_OUT_OF_RANGE, 'READ(10) 0 blocks past end');
  checkSense(await n.command(0, cdb10(0x28, 0xffffffff, 1)), LBA_OUT_OF_RANGE, 'READ(10) LBA 2^32-1');
});

test('LBA + transfer length that wraps past 2^64 is LBA OUT OF RANGE', async () => {
  checkSense(await n.command(0, cdb16(0x88, 0xffffffffffffffffn, 2)), LBA_OUT_OF_RANGE, 'READ(16)');
  checkSense(await n.command(0, cdb16(0x8a, 0xfffffffffffffff0n, 0x20), { dataOut: Buffer.alloc(0x20 * BS) }),
    LBA_OUT_OF_RANGE, 'WRITE(16)');
  checkSense(await n.command(0, cdb16(0x88, 0x8000000000000000n, 1)), LBA_OUT_OF_RANGE, 'READ(16) 2^63');
});

test('zero-length READ and WRITE are GOOD and move no data', async () => {
  for (const [name, rd] of READS) {
    const res = await n.command(0, rd(0, 0));
    good(res, name);
    assert.equal(res.data.length, 0);
  }
  for (const [name, w] of WRITES) good(await n.command(0, w(5, 0)), name);
});

test('RDPROTECT/WRPROTECT and reserved bits are INVALID FIELD IN CDB with the bit pointed at', async () => {
  for (const [name, rd] of READS) checkSense(await n.command(0, rd(0, 1, 0x20)), invalidCdb(1, 5), `${name} RDPROTECT`);
  for (const [name, w] of WRITES) {
    checkSense(await n.command(0, w(0, 1, 0xe0), { dataOut: Buffer.alloc(BS) }), invalidCdb(1, 7), `${name} WRPROTECT`);
  }
  checkSense(await n.command(0, cdb10(0x28, 0, 1, 0x04)), invalidCdb(1, 2), 'READ(10) reserved bit 2');
  const c = cdb10(0x28, 0, 1);
  c[6] = 0x40; // bit 6 of the group number byte is reserved
  checkSense(await n.command(0, c), invalidCdb(6, 6), 'READ(10) byte 6');
  const c16 = cdb16(0x88, 0, 1);
  c16[15] = 0x04; // NACA: no ACA here
  checkSense(await n.command(0, c16), invalidCdb(15, 2), 'READ(16) NACA');
});

test('transfer lengths above hw_max_sectors are INVALID FIELD IN CDB at the length field', async () => {
  const max = r.sos[0].attributes.hw_max_sectors;
  good(await n.command(0, cdb16(0x88, 0, max)));
  checkSense(await n.command(0, cdb16(0x88, 0, max + 1)), invalidCdb(10), 'READ(16)');
  checkSense(await n.command(0, cdb12(0xa8, 0, max + 1)), invalidCdb(6), 'READ(12)');
  checkSense(await n.command(0, cdb10(0x28, 0, max + 1)), invalidCdb(7), 'READ(10)');
});

test('DPO and FUA are refused when emulate_fua_write is off (MODE SENSE DPOFUA 0)', async () => {
  checkSense(await n.command(1, cdb10(0x28, 0, 1, 0x08)), invalidCdb(1, 3), 'READ FUA');
  checkSense(await n.command(1, cdb10(0x2a, 0, 1, 0x10), { dataOut: Buffer.alloc(BS) }), invalidCdb(1, 4), 'WRITE DPO');
  good(await n.command(1, cdb10(0x2a, 0, 1), { dataOut: Buffer.alloc(BS) }));
});

test('an initiator expecting fewer bytes than a READ returns gets them with an underflow residual', async () => {
  const data = pattern(4 * BS, 99);
  good(await n.command(0, cdb10(0x2a, 9000, 4), { dataOut: data }));
  const res = await n.command(0, cdb10(0x28, 9000, 4), { expectedLength: 2 * BS });
  good(res);
  assert.deepEqual(res.data, data.subarray(0, 2 * BS));
  assert.equal(res.residual, -2 * BS); // the command wanted more than expected: overflow
});

test('READ CAPACITY(10): last LBA and block length; FFFFFFFFh past 32 bits; PMI rules', async () => {
  const rc = await n.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  good(rc);
  assert.deepEqual([rc.data.readUInt32BE(0), rc.data.readUInt32BE(4)], [BLOCKS - 1, BS]);
  const big = await n.command(2, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  good(big);
  assert.equal(big.data.readUInt32BE(0), 0xffffffff);
  // LBA set without PMI is an error (SBC-3); with PMI it is fine.
  checkSense(await n.command(0, [0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0]), invalidCdb(2), 'PMI 0 LBA 1');
  good(await n.command(0, [0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0]));
  checkSense(await n.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 2, 0]), invalidCdb(8, 1), 'reserved bit in byte 8');
});

function rc16(alloc: number): Buffer {
  const c = Buffer.alloc(16);
  c[0] = 0x9e;
  c[1] = 0x10;
  c.writeUInt32BE(alloc, 10);
  return c;
}

test('READ CAPACITY(16): 64-bit last LBA, exponent, LBPME/LBPRZ from provisioning, allocation length', async () => {
  const full = await n.command(0, rc16(32));
  good(full);
  assert.equal(full.data.length, 32);
  assert.equal(full.data.readBigUInt64BE(0), BigInt(BLOCKS - 1));
  assert.equal(full.data.readUInt32BE(8), BS);
  assert.equal(full.data[12], 0x10); // RC BASIS 01b, no protection
  assert.equal(full.data[13], 0); // one logical block per physical block
  assert.equal(full.data[14] & 0xc0, 0, 'not thin: LBPME 0, LBPRZ 0');
  const e512 = await n.command(4, rc16(32));
  assert.equal(e512.data[13], 3, '2^3 logical blocks per physical block');
  const big = await n.command(2, rc16(32));
  assert.equal(big.data.readBigUInt64BE(0), BigInt(3 * 2 ** 40 / BS - 1));
  const thin = await n.command(3, rc16(32));
  assert.equal(thin.data[14] & 0xc0, 0xc0, 'thin: LBPME 1, LBPRZ 1');
  const short = await n.command(0, rc16(12));
  good(short);
  assert.deepEqual(short.data, full.data.subarray(0, 12));
  const none = await n.command(0, rc16(0));
  good(none);
  assert.equal(none.data.length, 0);
  const unknownSa = rc16(32);
  unknownSa[1] = 0x1d;
  checkSense(await n.command(0, unknownSa), invalidCdb(1, 4), 'unknown service action');
});

test('SYNCHRONIZE CACHE (10)/(16): GOOD, IMMED accepted, range checked', async () => {
  good(await n.command(0, cdb10(0x35, 0, 0)));
  good(await n.command(0, cdb10(0x35, 0, 0, 0x02)));
  good(await n.command(0, cdb16(0x91, BLOCKS - 8, 8)));
  checkSense(await n.command(0, cdb10(0x35, BLOCKS - 8, 9)), LBA_OUT_OF_RANGE, 'SYNC(10) past end');
  checkSense(await n.command(0, cdb16(0x91, BLOCKS + 1, 0)), LBA_OUT_OF_RANGE, 'SYNC(16) LBA past end');
  good(await n.command(0, cdb10(0x35, 0, 0, 0x04)), 'SYNC_NV (SBC-3) accepted');
  checkSense(await n.command(0, cdb16(0x91, 0, 0, 0x01)), invalidCdb(1, 0), 'obsolete RELADR');
});

// fileio: FUA writes (FUA bit, or the write cache off) reach the backstore as FUA and the file.
let dir: string;
const fuaSeen: boolean[] = [];
registerBackstore('fileio-fua-probe', async (o) => {
  const inner = await createFileio({ ...o, dev: o.dev });
  const write = inner.write.bind(inner);
  return Object.assign(Object.create(inner) as Backstore, {
    write(offset: number, length: number, sgl: Sgl, fua: boolean) {
      fuaSeen.push(fua);
      return write(offset, length, sgl, fua);
    },
  });
});

test('fileio: WCE=1 writes are not FUA unless asked; WCE=0 makes every write FUA; the file holds the data', async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-sbc-'));
  const file = path.join(dir, 'lun.img');
  const fr = await rig([{ plugin: 'fileio-fua-probe', dev: file, size: 8 << 20, attributes: { emulate_write_cache: true } }]);
  try {
    const fn = await fr.nexus();
    const lu = fr.sos[0].lu;
    const data = pattern(4 * BS, 5);
    fuaSeen.length = 0;
    good(await fn.command(0, cdb10(0x2a, 16, 4), { dataOut: data }));
    good(await fn.command(0, cdb10(0x2a, 16, 4, 0x08), { dataOut: data }));
    // MODE SELECT(6) of the caching page as MODE SENSE returned it, with WCE cleared.
    const ms = await fn.command(0, [0x1a, 0x08, 0x08, 0, 255, 0]);
    good(ms, 'MODE SENSE caching page');
    const page = Buffer.from(ms.data.subarray(4));
    assert.equal(page[0] & 0x3f, 0x08);
    assert.equal(page[2] & 0x04, 0x04, 'WCE on at start');
    page[0] &= 0x3f;
    page[2] &= ~0x04;
    const list = Buffer.concat([Buffer.alloc(4), page]);
    good(await fn.command(0, [0x15, 0x10, 0, 0, list.length, 0], { dataOut: list }), 'MODE SELECT WCE=0');
    assert.equal(lu.mode.wce, false);
    good(await fn.command(0, cdb16(0x8a, 32, 4), { dataOut: data }));
    good(await fn.command(0, cdb6(0x0a, 48, 4), { dataOut: data }));
    assert.deepEqual(fuaSeen, [false, true, true, true]);
    good(await fn.command(0, cdb10(0x34, 0, 128)), 'PRE-FETCH on a file (readahead hint)');
    good(await fn.command(0, cdb16(0x90, 0, 0, 0x02)), 'PRE-FETCH(16) IMMED to the end');
    const fresh = fs.readFileSync(file);
    for (const lba of [16, 32, 48]) assert.deepEqual(fresh.subarray(lba * BS, (lba + 4) * BS), data, `LBA ${lba}`);
  } finally {
    await fr.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('every command that changes the medium is refused on a read-only unit with DATA PROTECT / WRITE PROTECTED', async () => {
  const wp = { key: 7, asc: 0x27 };
  const one = Buffer.alloc(BS);
  checkSense(await n.command(5, cdb6(0x0a, 0, 1), { dataOut: one }), wp, 'WRITE(6)');
  checkSense(await n.command(5, cdb10(0x2a, 0, 1), { dataOut: one }), wp, 'WRITE(10)');
  checkSense(await n.command(5, cdb16(0x8a, 0, 1), { dataOut: one }), wp, 'WRITE(16)');
  checkSense(await n.command(5, cdb10(0x2e, 0, 1), { dataOut: one }), wp, 'WRITE AND VERIFY(10)');
  checkSense(await n.command(5, cdb16(0x93, 0, 1), { dataOut: one }), wp, 'WRITE SAME(16)');
  checkSense(await n.command(5, cdb16(0x8b, 0, 1), { dataOut: one }), wp, 'ORWRITE(16)');
  const unmap = Buffer.alloc(24);
  unmap.writeUInt16BE(22, 0);
  unmap.writeUInt16BE(16, 2);
  unmap.writeUInt32BE(1, 16);
  checkSense(await n.command(5, [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], { dataOut: unmap }), wp, 'UNMAP');
  checkSense(await n.command(5, [0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]), wp, 'SANITIZE BLOCK ERASE');
  // Reading, verifying and flushing are fine.
  good(await n.command(5, cdb10(0x28, 0, 1)));
  good(await n.command(5, cdb10(0x2f, 0, 8)));
  good(await n.command(5, cdb10(0x35, 0, 0)));
});

test('O_DIRECT fileio: a READ the initiator expects only part of (not whole blocks) returns that part', async () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'tsio-sbc-direct-'));
  const fr = await rig([{ plugin: 'fileio', dev: path.join(d, 'direct.img'), size: 8 << 20, direct: true }]);
  try {
    const fn = await fr.nexus();
    const data = pattern(4 * BS, 77);
    good(await fn.command(0, cdb10(0x2a, 8, 4), { dataOut: data }));
    for (const expectedLength of [1000, 3 * BS + 1]) {
      const res = await fn.command(0, cdb10(0x28, 8, 4), { expectedLength });
      good(res, `expected ${expectedLength}`);
      assert.deepEqual(res.data, data.subarray(0, expectedLength));
      assert.equal(res.residual, expectedLength - 4 * BS);
    }
  } finally {
    await fr.close();
    fs.rmSync(d, { recursive: true, force: true });
  }
});

test('4096-byte logical blocks: capacity, READ/WRITE, WRITE SAME, UNMAP, COMPARE AND WRITE, VERIFY in 4 KiB units', async () => {
  const K = 4096;
  const kr = await rig([{ size: 16 << 20, blockSize: K, attributes: { emulate_tpu: true, emulate_tpws: true } }]);
  try {
    const kn = await kr.nexus();
    const rc = await kn.command(0, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual([rc.data.readUInt32BE(0), rc.data.readUInt32BE(4)], [(16 << 20) / K - 1, K]);
    const data = pattern(3 * K, 90);
    good(await kn.command(0, cdb16(0x8a, 10, 3), { dataOut: data }));
    assert.deepEqual((await kn.command(0, cdb6(0x08, 10, 3))).data, data);
    // Offered two of the three blocks: those two are written, the third is the overflow residual.
    const short = await kn.command(0, cdb16(0x8a, 20, 3), { dataOut: data.subarray(0, 2 * K) });
    good(short, 'short data-out');
    assert.equal(short.residual, -K);
    assert.deepEqual((await kn.command(0, cdb16(0x88, 20, 3))).data, Buffer.concat([data.subarray(0, 2 * K), Buffer.alloc(K)]));
    const block = pattern(K, 91);
    good(await kn.command(0, cdb16(0x93, 100, 5), { dataOut: block }));
    assert.deepEqual((await kn.command(0, cdb16(0x88, 104, 1))).data, block);
    good(await kn.command(0, cdb10(0x2f, 100, 5, 0x06), { dataOut: block }), 'VERIFY BYTCHK 3');
    const c = Buffer.alloc(16);
    c[0] = 0x89;
    c.writeBigUInt64BE(104n, 2);
    c[13] = 1;
    good(await kn.command(0, c, { dataOut: Buffer.concat([block, data.subarray(0, K)]) }));
    assert.deepEqual((await kn.command(0, cdb16(0x88, 104, 1))).data, data.subarray(0, K));
    const list = Buffer.alloc(24);
    list.writeUInt16BE(22, 0);
    list.writeUInt16BE(16, 2);
    list.writeBigUInt64BE(100n, 8);
    list.writeUInt32BE(5, 16);
    good(await kn.command(0, [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], { dataOut: list }));
    assert.deepEqual((await kn.command(0, cdb16(0x88, 100, 5))).data, Buffer.alloc(5 * K));
  } finally {
    await kr.close();
  }
});

/** PERSISTENT RESERVE OUT: REGISTER (sa 0) or RESERVE (sa 1) with key, of type (1 WE, 3 EA). */
function prOut(sa: number, key: number, type = 0): { cdb: number[]; dataOut: Buffer } {
  const list = Buffer.alloc(24);
  if (sa === 0) list.writeBigUInt64BE(BigInt(key), 8);
  else list.writeBigUInt64BE(BigInt(key), 0);
  return { cdb: [0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0], dataOut: list };
}

test('persistent reservation classes: reads pass Write Exclusive, writes and SYNCHRONIZE CACHE do not; READ CAPACITY passes both', async () => {
  for (const [type, readsPass] of [[1, true], [3, false]] as const) {
    const pr = await rig([{}]);
    try {
      const a = await pr.nexus();
      const b = await pr.nexus(INITIATOR_B);
      const reg = prOut(0, 0xabc);
      good(await a.command(0, reg.cdb, { dataOut: reg.dataOut }), 'REGISTER');
      const res = prOut(1, 0xabc, type);
      good(await a.command(0, res.cdb, { dataOut: res.dataOut }), 'RESERVE');
      const expect = async (cdb: Buffer | number[], pass: boolean, what: string, dataOut?: Buffer) => {
        const r2 = await b.command(0, cdb, dataOut ? { dataOut } : {});
        assert.equal(r2.status, pass ? Status.GOOD : Status.RESERVATION_CONFLICT, `type ${type}: ${what}`);
      };
      await expect(cdb10(0x28, 0, 1), readsPass, 'READ(10)');
      await expect(cdb10(0x2f, 0, 1), readsPass, 'VERIFY(10)');
      await expect(cdb10(0x34, 0, 1), readsPass, 'PRE-FETCH(10)');
      await expect([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], true, 'READ CAPACITY(10)');
      await expect(rc16(32), true, 'READ CAPACITY(16)');
      await expect(cdb10(0x2a, 0, 1), false, 'WRITE(10)', Buffer.alloc(BS));
      await expect(cdb10(0x35, 0, 0), false, 'SYNCHRONIZE CACHE(10)');
      await expect([0x37, 0, 0, 0, 0, 0, 0, 0, 4, 0], false, 'READ DEFECT DATA(10)');
      // The holder does everything.
      good(await a.command(0, cdb10(0x2a, 0, 1), { dataOut: Buffer.alloc(BS) }));
      good(await a.command(0, cdb10(0x35, 0, 0)));
    } finally {
      await pr.close();
    }
  }
});

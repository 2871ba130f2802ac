// The tape device type (SSC) through the loopback fabric: every command with
// its exact data, status and sense, against cartridges kept as files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rig, INITIATOR_B, type Rig } from './util/loopback-setup';
import { Status, SenseKey } from '../src/core/sense';
import type { LoopbackNexus, LoopbackResult } from '../fabrics/loopback/loopback';
import { FileCartridge } from '../backstores/tape';
import { tapeDriveOf } from '../src/scsi/ssc-drive';
import { assertGood, assertSense, bytes } from './util/scsi-assert';

const FILEMARK = 0x80;
const EOM = 0x40;
const ILI = 0x20;

const u24 = (n: number) => [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const read6 = (n: number, fixed = false, sili = false) => [0x08, (sili ? 2 : 0) | (fixed ? 1 : 0), ...u24(n), 0];
const write6 = (n: number, fixed = false) => [0x0a, fixed ? 1 : 0, ...u24(n), 0];
const wfm = (n: number, immed = false) => [0x10, immed ? 1 : 0, ...u24(n), 0];
const space6 = (code: number, n: number) => [0x11, code, ...u24(n & 0xffffff), 0];
const REWIND = [0x01, 0, 0, 0, 0, 0];
const TUR = [0, 0, 0, 0, 0, 0];
const readPos = (sa = 0) => [0x34, sa, 0, 0, 0, 0, 0, 0, 0, 0];
const locate10 = (id: number) => [0x2b, 0, 0, (id >>> 24) & 0xff, (id >> 16) & 0xff, (id >> 8) & 0xff, id & 0xff, 0, 0, 0];
const locate16 = (destType: number, id: number) => {
  const c = Buffer.alloc(16);
  c[0] = 0x92;
  c[1] = destType << 3;
  c.writeBigUInt64BE(BigInt(id), 4);
  return [...c];
};
const loadUnload = (load: boolean) => [0x1b, 0, 0, 0, load ? 1 : 0, 0];
const prevent = (on: boolean) => [0x1e, 0, 0, 0, on ? 1 : 0, 0];

/** Data of a block: its number repeated, so a wrong block shows. */
const block = (n: number, len: number) => Buffer.alloc(len, n & 0xff);

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'tsio-ssc-'));
}

async function tape(dir: string, opts: Record<string, unknown> = {}): Promise<{ r: Rig; n: LoopbackNexus }> {
  const r = await rig([{ plugin: 'tape', dev: dir, cartridge: 'TAPE01', capacity: 64 << 20, ...opts } as never]);
  return { r, n: await r.nexus() };
}

/** Sense key, ASC, ASCQ, stream bits and INFORMATION of a CHECK CONDITION. */
function sense(r: LoopbackResult): [number | undefined, number | undefined, number | undefined, number, number | undefined] {
  assert.equal(r.status, Status.CHECK_CONDITION, `status ${r.status}`);
  const info = r.info === undefined ? undefined : Number(r.info);
  return [r.senseKey, r.asc, r.ascq, r.sense![2] & 0xe0, info];
}

async function position(n: LoopbackNexus): Promise<number> {
  const r = await n.command(0, readPos());
  assertGood(r, 'READ POSITION');
  return r.data.readUInt32BE(4);
}

async function writeVar(n: LoopbackNexus, data: Buffer): Promise<LoopbackResult> {
  return n.command(0, write6(data.length), { dataOut: data });
}

test('INQUIRY, READ BLOCK LIMITS, REPORT DENSITY SUPPORT and RSOC of a tape drive', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir);
  try {
    const inq = await n.command(0, [0x12, 0, 0, 0, 96, 0]);
    assertGood(inq);
    assert.equal(inq.data[0], 0x01, 'peripheral device type 01h: sequential access');
    assert.equal(inq.data[1], 0x80, 'RMB');
    const vpd = await n.command(0, [0x12, 1, 0, 0, 255, 0]);
    assert.deepEqual(vpd.data, bytes('01 00 0004 00 80 83 86'), 'no block device pages');
    assertSense(await n.command(0, [0x12, 1, 0xb0, 0, 255, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0);
    const rbl = await n.command(0, [0x05, 0, 0, 0, 0, 0]);
    assertGood(rbl);
    assert.deepEqual(rbl.data, bytes('00 100000 0001'));
    const rds = await n.command(0, [0x44, 0, 0, 0, 0, 0, 0, 0, 56, 0]);
    assertGood(rds);
    assert.deepEqual(rds.data.subarray(0, 20), bytes('0036 0000 80 80 a0 0000 000000 007f 0001 00000000'));
    assert.equal(rds.data.toString('ascii', 20, 36), 'TSIO    VIRTUAL ');
    const media = await n.command(0, [0x44, 1, 0, 0, 0, 0, 0, 0, 56, 0]);
    assert.equal(media.data.readUInt32BE(16), 67, 'capacity of the mounted cartridge in MB');
    const rsoc = await n.command(0, [0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0]);
    assertGood(rsoc);
    const ops = new Set<number>();
    for (let o = 4; o < rsoc.data.length; o += 8) ops.add(rsoc.data[o]);
    for (const op of [0x01, 0x05, 0x08, 0x0a, 0x10, 0x11, 0x19, 0x1b, 0x1e, 0x2b, 0x34, 0x44, 0x91, 0x92]) assert.ok(ops.has(op), `RSOC lists ${op.toString(16)}`);
    for (const op of [0x28, 0x2a, 0x25]) assert.ok(!ops.has(op), `no disk command ${op.toString(16)}`);
    // A disk's READ(10) is no tape command.
    assertSense(await n.command(0, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]), SenseKey.ILLEGAL_REQUEST, 0x20, 0x00);
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('variable blocks: exact reads, ILI both ways with the residue, reads across a filemark, BLANK CHECK at end of data', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir);
  try {
    assertGood(await n.command(0, TUR));
    assert.equal(await position(n), 0);
    for (const [i, len] of [[0, 100], [1, 200], [2, 300]]) assertGood(await writeVar(n, block(i, len)), `write block ${i}`);
    assertGood(await n.command(0, wfm(1)));
    assertGood(await writeVar(n, block(4, 50)));
    assertGood(await n.command(0, wfm(1)));
    assert.equal(await position(n), 6);
    assertGood(await n.command(0, REWIND));
    const pos = await n.command(0, readPos());
    assert.deepEqual(pos.data, bytes('80 00 0000 00000000 00000000 00000000 00000000'), 'BOP, position 0');

    const exact = await n.command(0, read6(100));
    assertGood(exact);
    assert.deepEqual(exact.data, block(0, 100));
    // A 200-byte block read with 150: ILI, INFORMATION -50, the first 150 bytes.
    const over = await n.command(0, read6(150));
    assert.deepEqual(sense(over), [SenseKey.NO_SENSE, 0, 0, ILI, 0xffffffce]);
    assert.deepEqual(over.data, block(1, 150));
    // A 300-byte block read with 400: ILI, INFORMATION 100, 300 bytes and a residual of 100.
    const under = await n.command(0, read6(400));
    assert.deepEqual(sense(under), [SenseKey.NO_SENSE, 0, 0, ILI, 100]);
    assert.deepEqual(under.data, block(2, 300));
    assert.equal(under.residual, 100);
    // The filemark: FILEMARK DETECTED, INFORMATION the whole length, no data; the position is past it.
    const fm = await n.command(0, read6(512));
    assert.deepEqual(sense(fm), [SenseKey.NO_SENSE, 0x00, 0x01, FILEMARK, 512]);
    assert.equal(fm.data.length, 0);
    assert.equal(await position(n), 4);
    // SILI: a shorter block is no error.
    const sili = await n.command(0, read6(512, false, true));
    assertGood(sili);
    assert.deepEqual(sili.data, block(4, 50));
    assert.equal(sili.residual, 462);
    assert.deepEqual(sense(await n.command(0, read6(512))).slice(0, 4), [SenseKey.NO_SENSE, 0, 1, FILEMARK]);
    const eod = await n.command(0, read6(512));
    assert.deepEqual(sense(eod), [SenseKey.BLANK_CHECK, 0x00, 0x05, 0, 512]);
    assert.equal(await position(n), 6, 'a read at end of data stays there');
    // SILI with FIXED is refused; FIXED without a fixed block length too.
    assertSense(await n.command(0, read6(1, true, true)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 1 });
    assertSense(await n.command(0, read6(1, true)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 0 });
    // A zero-length read moves nothing.
    assertGood(await n.command(0, read6(0)));
    assert.equal(await position(n), 6);
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('WRITE(6) offered fewer bytes than its transfer length: INVALID FIELD IN COMMAND IU, nothing written', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir);
  try {
    for (const offered of [0, 32, 299]) {
      const w = await n.command(0, write6(300), { dataOut: block(1, offered) });
      assertSense(w, SenseKey.ILLEGAL_REQUEST, 0x0e, 0x03);
    }
    assertGood(await n.command(0, REWIND));
    assert.deepEqual(sense(await n.command(0, read6(300))).slice(0, 3), [SenseKey.BLANK_CHECK, 0x00, 0x05], 'nothing was written');
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('SPACE over blocks and filemarks both ways, to end of data, past end of data and past the beginning', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir);
  try {
    // b0 b1 b2 FM b4 FM | EOD at 6
    for (let i = 0; i < 3; i++) assertGood(await writeVar(n, block(i, 64)));
    assertGood(await n.command(0, wfm(1)));
    assertGood(await writeVar(n, block(4, 64)));
    assertGood(await n.command(0, wfm(1)));
    assertGood(await n.command(0, REWIND));
    assertGood(await n.command(0, space6(0, 2)));
    assert.equal(await position(n), 2);
    // Five blocks forward from 2: one block, then the filemark stops it past the filemark.
    assert.deepEqual(sense(await n.command(0, space6(0, 5))), [SenseKey.NO_SENSE, 0, 1, FILEMARK, 4]);
    assert.equal(await position(n), 4);
    assertGood(await n.command(0, space6(1, 1)));
    assert.equal(await position(n), 6);
    // SPACE past end of data: BLANK CHECK, END-OF-DATA DETECTED, the count not spaced.
    assert.deepEqual(sense(await n.command(0, space6(1, 1))), [SenseKey.BLANK_CHECK, 0, 5, 0, 1]);
    assert.deepEqual(sense(await n.command(0, space6(0, 3))), [SenseKey.BLANK_CHECK, 0, 5, 0, 3]);
    assert.equal(await position(n), 6);
    // One block back from 6 meets the filemark at 5 at once: before it, residue 1.
    assert.deepEqual(sense(await n.command(0, space6(0, -1))), [SenseKey.NO_SENSE, 0, 1, FILEMARK, 1]);
    assert.equal(await position(n), 5);
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('SPACE: exact positions and residues', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir);
  try {
    for (let i = 0; i < 3; i++) assertGood(await writeVar(n, block(i, 64)));
    assertGood(await n.command(0, wfm(1)));
    assertGood(await writeVar(n, block(4, 64)));
    assertGood(await n.command(0, wfm(1)));
    // From end of data (6): two filemarks back ends before the filemark at 3.
    assertGood(await n.command(0, space6(1, -2)));
    assert.equal(await position(n), 3);
    // Ten blocks back from 3: three spaced, then the beginning: EOM, BEGINNING-OF-PARTITION, residue 7.
    assert.deepEqual(sense(await n.command(0, space6(0, -10))), [SenseKey.NO_SENSE, 0, 4, EOM, 7]);
    assert.equal(await position(n), 0);
    assert.deepEqual(sense(await n.command(0, space6(1, -1))), [SenseKey.NO_SENSE, 0, 4, EOM, 1]);
    assertGood(await n.command(0, space6(3, 0)), 'to end of data');
    assert.equal(await position(n), 6);
    assertGood(await n.command(0, space6(1, -1)));
    assert.equal(await position(n), 5);
    // One block forward at 5 is the filemark: past it, residue 1.
    assert.deepEqual(sense(await n.command(0, space6(0, 1))), [SenseKey.NO_SENSE, 0, 1, FILEMARK, 1]);
    assertGood(await n.command(0, space6(0, 0)), 'count 0 moves nothing');
    assert.equal(await position(n), 6);
    // Sequential filemarks and setmarks are not served.
    assertSense(await n.command(0, space6(2, 1)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 3 });
    // SPACE(16) too.
    const s16 = Buffer.alloc(16);
    s16[0] = 0x91;
    s16[1] = 1;
    s16.writeBigInt64BE(-1n, 4);
    assertGood(await n.command(0, s16));
    assert.equal(await position(n), 5);
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('fixed blocks: MODE SELECT sets the length, reads stop at a filemark and at a block of another length (ILI)', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir);
  try {
    // MODE SELECT(6): header, block descriptor with BLOCK LENGTH 512.
    const ms = bytes('00 00 10 08', '00 000000 00 000200');
    assertGood(await n.command(0, [0x15, 0x10, 0, 0, ms.length, 0], { dataOut: ms }));
    const sense6 = await n.command(0, [0x1a, 0, 0x0f, 0, 255, 0]);
    assertGood(sense6);
    assert.deepEqual(sense6.data.subarray(0, 12), bytes('1b 00 10 08', '80 000000 00 000200'), 'density 80h, block length 512');
    assert.deepEqual(sense6.data.subarray(12), bytes('0f 0e 40 80 00000000 00000001 00000000'), 'compression page');
    const four = Buffer.concat([0, 1, 2, 3].map((i) => block(i, 512)));
    assertGood(await n.command(0, write6(4, true), { dataOut: four }));
    assertGood(await n.command(0, wfm(1)));
    assertGood(await n.command(0, write6(1, true), { dataOut: block(5, 512) }));
    assertGood(await n.command(0, REWIND));
    const two = await n.command(0, read6(2, true));
    assertGood(two);
    assert.deepEqual(two.data, four.subarray(0, 1024));
    // Six blocks from 2: two, then the filemark: INFORMATION 4 blocks, 1024 bytes sent.
    const across = await n.command(0, read6(6, true));
    assert.deepEqual(sense(across), [SenseKey.NO_SENSE, 0, 1, FILEMARK, 4]);
    assert.deepEqual(across.data, four.subarray(1024));
    assert.equal(await position(n), 5);
    const tail = await n.command(0, read6(3, true));
    assert.deepEqual(sense(tail), [SenseKey.BLANK_CHECK, 0, 5, 0, 2]);
    assert.deepEqual(tail.data, block(5, 512));
    // Back to variable mode, a 100-byte block; read in fixed mode it is an incorrect length.
    const v = bytes('00 00 10 08', '00 000000 00 000000');
    assertGood(await n.command(0, [0x15, 0x10, 0, 0, v.length, 0], { dataOut: v }));
    assertGood(await writeVar(n, block(6, 100)));
    assertGood(await n.command(0, [0x15, 0x10, 0, 0, ms.length, 0], { dataOut: ms }));
    assertGood(await n.command(0, space6(0, -2)));
    const ili = await n.command(0, read6(3, true));
    assert.deepEqual(sense(ili), [SenseKey.NO_SENSE, 0, 0, ILI, 2]);
    assert.deepEqual(ili.data, block(5, 512), 'the block of the right length before it');
    assert.equal(await position(n), 7, 'past the block of the wrong length');
    // A block length over the limit is refused with the parameter's byte.
    const big = bytes('00 00 10 08', '00 000000 00 200000');
    assertSense(await n.command(0, [0x15, 0x10, 0, 0, big.length, 0], { dataOut: big }), SenseKey.ILLEGAL_REQUEST, 0x26, 0, { inCdb: false, byte: 9 });
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('overwriting in the middle ends the data there; LOCATE, READ POSITION long form, ERASE', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir);
  try {
    for (let i = 0; i < 4; i++) assertGood(await writeVar(n, block(i, 1000)));
    assertGood(await n.command(0, wfm(2)));
    for (let i = 6; i < 8; i++) assertGood(await writeVar(n, block(i, 1000)));
    assertGood(await n.command(0, locate10(2)));
    assert.equal(await position(n), 2);
    const long = await n.command(0, readPos(6));
    assertGood(long);
    assert.deepEqual(long.data, bytes('00 000000 00000000', '0000000000000002', '0000000000000000', { z: 8 }));
    // LOCATE(16) to logical file 1 (past the first filemark) and to end of data.
    assertGood(await n.command(0, locate16(1, 1)));
    assert.equal(await position(n), 5);
    assert.equal((await n.command(0, readPos(6))).data.readBigUInt64BE(16), 1n, 'logical file 1');
    assertGood(await n.command(0, locate16(3, 0)));
    assert.equal(await position(n), 8);
    // Beyond end of data: BLANK CHECK, at end of data.
    assert.deepEqual(sense(await n.command(0, locate10(100))).slice(0, 3), [SenseKey.BLANK_CHECK, 0, 5]);
    assert.equal(await position(n), 8);
    // Write at 1: blocks 1.. are gone.
    assertGood(await n.command(0, locate10(1)));
    assertGood(await writeVar(n, block(0x41, 10)));
    assertGood(await n.command(0, REWIND));
    assert.deepEqual((await n.command(0, read6(1000))).data, block(0, 1000));
    assert.deepEqual((await n.command(0, read6(10))).data, block(0x41, 10));
    assert.deepEqual(sense(await n.command(0, read6(10))).slice(0, 3), [SenseKey.BLANK_CHECK, 0, 5]);
    // ERASE at 1: end of data at 1.
    assertGood(await n.command(0, locate10(1)));
    assertGood(await n.command(0, [0x19, 1, 0, 0, 0, 0]));
    assertGood(await n.command(0, space6(3, 0)));
    assert.equal(await position(n), 1);
    // The file keeps only what counts: header, one entry of 1000 bytes, end of data.
    assert.equal(statSync(join(dir, 'TAPE01.tape')).size, 512 + 16 + 1000 + 16);
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('LOAD UNLOAD, reads with no medium, PREVENT ALLOW, unit attention to other nexuses when a cartridge goes in', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir);
  const b = await r.nexus(INITIATOR_B);
  try {
    assertGood(await writeVar(n, block(1, 10)));
    assertGood(await n.command(0, loadUnload(false)));
    assertSense(await n.command(0, TUR), SenseKey.NOT_READY, 0x3a, 0);
    assertSense(await n.command(0, read6(10)), SenseKey.NOT_READY, 0x3a, 0);
    assertSense(await n.command(0, readPos()), SenseKey.NOT_READY, 0x3a, 0);
    assertGood(await n.command(0, loadUnload(true)));
    assert.equal(await position(n), 0, 'loaded at the beginning');
    assertGood(await n.command(0, prevent(true)));
    assertSense(await n.command(0, loadUnload(false)), SenseKey.ILLEGAL_REQUEST, 0x53, 0x02);
    const drive = tapeDriveOf(r.sos[0].lu)!;
    await assert.rejects(drive.remove(), /prevented/);
    assertGood(await n.command(0, prevent(false)));
    assert.equal(await drive.remove(), 'TAPE01');
    assertSense(await n.command(0, loadUnload(true)), SenseKey.NOT_READY, 0x3a, 0);
    await drive.shelf.create('TAPE02', 1 << 20);
    await drive.insert('TAPE02');
    assertSense(await n.command(0, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    assertSense(await b.command(0, TUR), SenseKey.UNIT_ATTENTION, 0x28, 0);
    assertGood(await n.command(0, TUR));
    assert.deepEqual(sense(await n.command(0, read6(10))).slice(0, 3), [SenseKey.BLANK_CHECK, 0, 5], 'a blank cartridge');
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('write protected cartridge: DATA PROTECT, WP in MODE SENSE; reads still work', async () => {
  const dir = tmp();
  const first = await tape(dir);
  assertGood(await writeVar(first.n, block(7, 20)));
  await first.r.close();
  const { DirShelf } = await import('../backstores/tape');
  await new DirShelf(dir).setWriteProtect('TAPE01', true);
  const { r, n } = await tape(dir);
  try {
    assertSense(await writeVar(n, block(1, 10)), SenseKey.DATA_PROTECT, 0x27, 0);
    assertSense(await n.command(0, wfm(1)), SenseKey.DATA_PROTECT, 0x27, 0);
    assertSense(await n.command(0, [0x19, 1, 0, 0, 0, 0]), SenseKey.DATA_PROTECT, 0x27, 0);
    const ms = await n.command(0, [0x1a, 0x08, 0x3f, 0, 255, 0]);
    assert.equal(ms.data[2], 0x90, 'WP, BUFFERED MODE 1');
    assert.deepEqual((await n.command(0, read6(20))).data, block(7, 20), 'written before, read after a restart');
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('early warning before the end of the cartridge, VOLUME OVERFLOW at it', async () => {
  const dir = tmp();
  const { r, n } = await tape(dir, { capacity: 3 << 20 });
  try {
    const chunk = Buffer.alloc(256 << 10, 0x5a);
    let written = 0;
    let warned: LoopbackResult | undefined;
    for (let i = 0; i < 20 && !warned; i++) {
      const w = await writeVar(n, chunk);
      written++;
      if (w.status !== Status.GOOD) warned = w;
    }
    // EW zone is 1 MiB: past 2 MiB used, the write is done and reported with EOM.
    assert.deepEqual(sense(warned!), [SenseKey.NO_SENSE, 0, 2, EOM, 0]);
    assert.equal(written, 8);
    assert.equal(await position(n), 8, 'the warned write was written');
    const rp = await n.command(0, readPos());
    assert.equal(rp.data[0] & 0x01, 0x01, 'BPEW');
    let overflow: LoopbackResult | undefined;
    for (let i = 0; i < 20 && !overflow; i++) {
      const w = await writeVar(n, chunk);
      if (w.status === Status.CHECK_CONDITION && w.senseKey === SenseKey.VOLUME_OVERFLOW) overflow = w;
      else assert.deepEqual(sense(w), [SenseKey.NO_SENSE, 0, 2, EOM, 0]);
    }
    assert.deepEqual(sense(overflow!), [SenseKey.VOLUME_OVERFLOW, 0, 2, EOM, 256 << 10]);
    // Filemarks still fit past early warning, reported with EOM.
    const at = await position(n);
    assert.deepEqual(sense(await n.command(0, wfm(1))), [SenseKey.NO_SENSE, 0, 2, EOM, 0]);
    assert.equal(await position(n), at + 1);
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

test('the cartridge file keeps blocks, filemarks and end of data across a restart; its index holds no data', async () => {
  const dir = tmp();
  const first = await tape(dir);
  for (const [i, len] of [[0, 3], [1, 70000], [2, 5]]) assertGood(await writeVar(first.n, block(i, len)));
  assertGood(await first.n.command(0, wfm(3)));
  assertGood(await writeVar(first.n, block(3, 9)));
  await first.r.close();
  const file = readFileSync(join(dir, 'TAPE01.tape'));
  assert.equal(file.toString('ascii', 0, 8), 'TSIOTAPE');
  assert.equal(file.toString('ascii', 512, 516), 'TSRB');
  assert.equal(file.toString('ascii', file.length - 16, file.length - 12), 'TSRE');
  const c = await FileCartridge.open(join(dir, 'TAPE01.tape'));
  assert.deepEqual([c.count, c.lengthOf(0), c.lengthOf(1), c.lengthOf(3), c.lengthOf(5), c.lengthOf(6)], [7, 3, 70000, -1, -1, 9]);
  assert.deepEqual([c.filemarksBefore(7), c.nextFilemark(0), c.prevFilemark(7)], [3, 3, 5]);
  await c.close();
  const { r, n } = await tape(dir);
  try {
    assertGood(await n.command(0, space6(1, 3)));
    assert.deepEqual((await n.command(0, read6(9))).data, block(3, 9));
    assertGood(await n.command(0, REWIND));
    assertGood(await n.command(0, space6(0, 1)));
    assert.deepEqual((await n.command(0, read6(70000))).data, block(1, 70000));
  } finally {
    await r.close();
    rmSync(dir, { recursive: true });
  }
});

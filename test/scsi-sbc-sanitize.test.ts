// SANITIZE (OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE) with its NOT READY
// window and progress, PRE-FETCH and READ DEFECT DATA, through loopback.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { INITIATOR_B, rig, type Rig } from './util/loopback-setup';
import type { LoopbackNexus } from '../fabrics/loopback/loopback';
import { gated } from './util/gated';
import { registerBackstore } from '../app/registry';
import { RamBackstore } from '../backstores/rd-mcp';
import { Status } from '../src/core/sense';
import { ConfigError, parseConfig } from '../app/config/config';
import {
  LBA_OUT_OF_RANGE, cdb10, cdb16, checkSense, good, invalidCdb, invalidParam, pattern, readBlocks, writeBlocks,
} from './util/cdb';

const BS = 512;
const SIZE = 4 << 20;
const BLOCKS = SIZE / BS;

/** RAM whose writes fail with EIO once armed: a sanitize that cannot finish. */
class FailingRam extends RamBackstore {
  failWrites = false;
  override write(offset: number, length: number, sgl: readonly Buffer[]): void {
    if (this.failWrites) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
    super.write(offset, length, sgl);
  }
}
let failing: FailingRam;
registerBackstore('failing-ram', async (o) => (failing = new FailingRam(o.size ?? SIZE, o.blockSize ?? 512, false)));

let r: Rig;
let n: LoopbackNexus;

before(async () => {
  r = await rig([
    { size: SIZE },
    { plugin: 'gated', size: SIZE },
    { plugin: 'failing-ram', size: SIZE },
    // Thin, and bounded to 2 MiB/s: its 4 MiB take about 2 s to overwrite.
    { size: SIZE, attributes: { emulate_tpu: true, emulate_tpws: true, max_sanitize_rate: 2 } },
  ]);
  n = await r.nexus();
  gated[gated.length - 1].open();
});
after(() => r.close());

function sanitizeCdb(sa: number, len: number, immed = false): Buffer {
  const c = Buffer.alloc(10);
  c[0] = 0x48;
  c[1] = sa | (immed ? 0x80 : 0);
  c.writeUInt16BE(len, 7);
  return c;
}

function overwriteList(pat: Buffer, count = 1, flags = 0): Buffer {
  const b = Buffer.alloc(4 + pat.length);
  b[0] = flags | count;
  b.writeUInt16BE(pat.length, 2);
  pat.copy(b, 4);
  return b;
}

const OVERWRITE = 0x01;
const BLOCK_ERASE = 0x02;
const EXIT_FAILURE = 0x1f;

test('SANITIZE OVERWRITE puts the pattern at the start of every block; INVERT on an even count inverts it', async () => {
  await writeBlocks(n, 0, 0, pattern(16 * BS, 1));
  const pat = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
  const list = overwriteList(pat);
  good(await n.command(0, sanitizeCdb(OVERWRITE, list.length), { dataOut: list }));
  const want = Buffer.alloc(BS);
  for (let i = 0; i < BS; i += 4) pat.copy(want, i);
  for (const lba of [0, 15, BLOCKS - 1]) assert.deepEqual(await readBlocks(n, 0, lba, 1), want, `LBA ${lba}`);
  const inv = overwriteList(Buffer.from([0x0f]), 2, 0x80);
  good(await n.command(0, sanitizeCdb(OVERWRITE, inv.length), { dataOut: inv }));
  assert.deepEqual(await readBlocks(n, 0, 7, 1), Buffer.alloc(BS, 0xf0));
  const zeros = overwriteList(Buffer.alloc(BS));
  good(await n.command(0, sanitizeCdb(OVERWRITE, zeros.length), { dataOut: zeros }));
  assert.deepEqual(await readBlocks(n, 0, 3, 1), Buffer.alloc(BS));
});

test('SANITIZE OVERWRITE parameter checks', async () => {
  for (const len of [0, 1, 4]) {
    checkSense(await n.command(0, sanitizeCdb(OVERWRITE, len), { dataOut: Buffer.alloc(len) }), invalidCdb(7), `length ${len}`);
  }
  checkSense(await n.command(0, sanitizeCdb(OVERWRITE, BS + 5), { dataOut: Buffer.alloc(BS + 5) }), invalidCdb(7), 'length bs+5');
  const noCount = overwriteList(Buffer.alloc(4, 1), 0);
  checkSense(await n.command(0, sanitizeCdb(OVERWRITE, noCount.length), { dataOut: noCount }), invalidParam(0, 4), 'count 0');
  const noPattern = overwriteList(Buffer.alloc(4, 1));
  noPattern.writeUInt16BE(0, 2);
  checkSense(await n.command(0, sanitizeCdb(OVERWRITE, noPattern.length), { dataOut: noPattern }), invalidParam(2), 'pattern length 0');
  const tooLong = overwriteList(Buffer.alloc(BS, 1));
  tooLong.writeUInt16BE(BS + 1, 2);
  checkSense(await n.command(0, sanitizeCdb(OVERWRITE, tooLong.length), { dataOut: tooLong }), invalidParam(2), 'pattern > block');
  const test = overwriteList(Buffer.alloc(4, 1), 1, 0x20);
  checkSense(await n.command(0, sanitizeCdb(OVERWRITE, test.length), { dataOut: test }), invalidParam(0, 5), 'TEST');
  // Fewer bytes sent than the PARAMETER LIST LENGTH (found by the SCSI fuzzer: HARDWARE ERROR before).
  for (const sent of [0, 4, 7]) {
    const r = await n.command(0, sanitizeCdb(OVERWRITE, 8), { dataOut: overwriteList(Buffer.alloc(4, 1)).subarray(0, sent) });
    assert.deepEqual([r.senseKey, r.asc, r.ascq], [0x05, 0x1a, 0x00], `PARAMETER LIST LENGTH ERROR with ${sent} bytes sent`);
  }
});

test('SANITIZE BLOCK ERASE deallocates everything; parameter data refused; unknown service actions refused', async () => {
  // Only a thin unit erases by deallocating (GET LBA STATUS then shows nothing mapped); elsewhere it is unknown.
  checkSense(await n.command(0, sanitizeCdb(BLOCK_ERASE, 0)), invalidCdb(1, 4), 'BLOCK ERASE on a unit that is not thin');
  await writeBlocks(n, 3, 100, pattern(8 * BS, 2));
  good(await n.command(3, sanitizeCdb(BLOCK_ERASE, 0)));
  assert.deepEqual(await readBlocks(n, 3, 100, 8), Buffer.alloc(8 * BS));
  const lbaStatus = await n.command(3, [0x9e, 0x12, ...Buffer.alloc(8), 0, 0, 0, 32, 0, 0]);
  good(lbaStatus);
  assert.deepEqual([lbaStatus.data.readUInt32BE(0), Number(lbaStatus.data.readBigUInt64BE(8)), lbaStatus.data.readUInt32BE(16), lbaStatus.data[20]], [20, 0, BLOCKS, 1], 'all deallocated');
  checkSense(await n.command(3, sanitizeCdb(BLOCK_ERASE, 8), { dataOut: Buffer.alloc(8) }), invalidCdb(7), 'BLOCK ERASE with data');
  checkSense(await n.command(0, sanitizeCdb(EXIT_FAILURE, 8), { dataOut: Buffer.alloc(8) }), invalidCdb(7), 'EXIT with data');
  good(await n.command(0, sanitizeCdb(EXIT_FAILURE, 0)), 'EXIT FAILURE MODE outside failure mode');
  checkSense(await n.command(0, sanitizeCdb(0x03, 0)), invalidCdb(1, 4), 'CRYPTOGRAPHIC ERASE');
  const reserved = sanitizeCdb(BLOCK_ERASE, 0);
  reserved[1] |= 0x40;
  checkSense(await n.command(3, reserved), invalidCdb(1, 6), 'reserved bit');
});

test('while SANITIZE runs, medium commands get NOT READY / SANITIZE IN PROGRESS with progress; INQUIRY still works', async () => {
  const g = gated[gated.length - 1];
  g.closed = true;
  const list = overwriteList(Buffer.from([0x5a]));
  const started = g.started;
  const done = n.command(1, sanitizeCdb(OVERWRITE, list.length, true), { dataOut: list });
  good(await done, 'IMMED: GOOD before the sanitize ends');
  assert.equal(g.started, started + 1, 'the first chunk is being written');
  const rd = await n.command(1, cdb10(0x28, 0, 1));
  checkSense(rd, { key: 2, asc: 0x04, ascq: 0x1b }, 'READ during sanitize');
  // SKSV with PROGRESS INDICATION 0: the first chunk is still being written.
  assert.deepEqual([...rd.sense!.subarray(15, 18)], [0x80, 0, 0], 'progress indication');
  checkSense(await n.command(1, [0, 0, 0, 0, 0, 0]), { key: 2, asc: 0x04, ascq: 0x1b }, 'TEST UNIT READY');
  checkSense(await n.command(1, sanitizeCdb(EXIT_FAILURE, 0)), { key: 2, asc: 0x04, ascq: 0x1b }, 'a second SANITIZE');
  const inq = await n.command(1, [0x12, 0, 0, 0, 36, 0]);
  assert.equal(inq.status, Status.GOOD, 'INQUIRY is served');
  // REQUEST SENSE is how an initiator polls the progress (SBC-4 4.11.3).
  const rs = await n.command(1, [0x03, 0, 0, 0, 18, 0]);
  assert.equal(rs.status, Status.GOOD, 'REQUEST SENSE is served');
  assert.deepEqual([rs.data[2] & 0x0f, rs.data[12], rs.data[13]], [2, 0x04, 0x1b], 'REQUEST SENSE reports SANITIZE IN PROGRESS');
  assert.deepEqual([...rs.data.subarray(15, 18)], [0x80, 0, 0], 'with its progress indication');
  // Three of the four 1 MiB chunks to go once the first is written: progress 1/4 of 65536.
  g.open();
  g.closed = true;
  await new Promise((res) => setTimeout(res, 10));
  const mid = await n.command(1, cdb10(0x28, 0, 1));
  assert.deepEqual([...mid.sense!.subarray(15, 18)], [0x80, 0x40, 0x00], 'progress after one chunk of four');
  g.open();
  // Let the sanitize finish, then the unit is ready and holds the pattern.
  for (let i = 0; i < 100; i++) {
    const t = await n.command(1, [0, 0, 0, 0, 0, 0]);
    if (t.status === Status.GOOD) break;
    await new Promise((res) => setTimeout(res, 5));
  }
  assert.deepEqual(await readBlocks(n, 1, BLOCKS - 1, 1), Buffer.alloc(BS, 0x5a));
});

test('a failed SANITIZE leaves the unit in failure mode until EXIT FAILURE MODE', async () => {
  failing.failWrites = true;
  const list = overwriteList(Buffer.from([0x11]));
  checkSense(await n.command(2, sanitizeCdb(OVERWRITE, list.length), { dataOut: list }), { key: 3, asc: 0x0c }, 'write error');
  checkSense(await n.command(2, cdb10(0x28, 0, 1)), { key: 3, asc: 0x31, ascq: 0x03 }, 'READ in failure mode');
  failing.failWrites = false;
  good(await n.command(2, sanitizeCdb(EXIT_FAILURE, 0)));
  good(await n.command(2, cdb10(0x28, 0, 1)));
});

const SLOW = 3;
const IN_PROGRESS = { key: 2, asc: 0x04, ascq: 0x1b };
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** GET LBA STATUS from an LBA: its descriptors as [lba, blocks, provisioning status]. */
async function lbaStatus(lun: number, lba: number): Promise<[number, number, number][]> {
  const c = Buffer.alloc(16);
  c[0] = 0x9e;
  c[1] = 0x12;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt32BE(1024, 10);
  const res = await n.command(lun, c);
  good(res);
  const out: [number, number, number][] = [];
  for (let p = 8; p + 16 <= Math.min(res.data.length, res.data.readUInt32BE(0) + 4); p += 16) {
    out.push([Number(res.data.readBigUInt64BE(p)), res.data.readUInt32BE(p + 8), res.data[p + 12] & 0xf]);
  }
  return out;
}

/** TEST UNIT READY until GOOD; the progress indications seen on the way. */
async function waitReady(lun: number, via = n): Promise<number[]> {
  const seen: number[] = [];
  for (let i = 0; i < 400; i++) {
    const t = await via.command(lun, [0, 0, 0, 0, 0, 0]);
    if (t.status === Status.GOOD) return seen;
    checkSense(t, IN_PROGRESS, 'TEST UNIT READY while sanitizing');
    assert.equal(t.sense![15] & 0x80, 0x80, 'SKSV: a progress indication');
    seen.push(t.sense!.readUInt16BE(16));
    await sleep(50);
  }
  assert.fail('the sanitize did not end within 20 s');
}

test('max_sanitize_rate bounds OVERWRITE: SANITIZE IN PROGRESS with a moving progress, then the pattern, every LBA mapped', async () => {
  const list = overwriteList(Buffer.from([0xa5, 0x5a]));
  const t0 = performance.now();
  const done = n.command(SLOW, sanitizeCdb(OVERWRITE, list.length), { dataOut: list });
  await sleep(100);
  // Only INQUIRY, LOG SENSE, REPORT LUNS and REQUEST SENSE are served during a sanitize (SBC-4 4.11.2).
  checkSense(await n.command(SLOW, [0x1a, 0, 0x3f, 0, 255, 0]), IN_PROGRESS, 'MODE SENSE');
  checkSense(await n.command(SLOW, [0x1b, 0, 0, 0, 1, 0]), IN_PROGRESS, 'START STOP UNIT');
  good(await n.command(SLOW, [0x4d, 0, 0x40, 0, 0, 0, 0, 0, 64, 0]), 'LOG SENSE');
  const rs = await n.command(SLOW, [0x03, 0, 0, 0, 18, 0]);
  assert.deepEqual([rs.status, rs.data[12], rs.data[13]], [Status.GOOD, 0x04, 0x1b], 'REQUEST SENSE reports the sanitize');
  const seen = await waitReady(SLOW);
  const took = performance.now() - t0;
  good(await done, 'SANITIZE without IMMED: GOOD when it ends');
  // 4 MiB at 2 MiB/s: about 2 s (the first chunk goes at once).
  assert.ok(took > 1500, `the rate bound held the overwrite to 2 MiB/s (${took.toFixed(0)} ms)`);
  assert.ok(new Set(seen).size >= 4, `the progress moved: ${seen.join(' ')}`);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'the progress never goes back');
  assert.ok(seen[0] < 0x4000 && seen[seen.length - 1] > 0xa000, `from near 0 to near 65536: ${seen.join(' ')}`);
  const want = Buffer.alloc(BS);
  for (let i = 0; i < BS; i += 2) want.writeUInt16BE(0xa55a, i);
  for (const lba of [0, BLOCKS / 2, BLOCKS - 1]) assert.deepEqual(await readBlocks(n, SLOW, lba, 1), want, `LBA ${lba}`);
  // Each LBA must read back the pattern, so each is mapped.
  assert.deepEqual(await lbaStatus(SLOW, 0), [[0, BLOCKS, 0]]);
});

test('an all-zero OVERWRITE leaves a thin unit deallocated (SBC-4 4.11.3); max_sanitize_rate changes live', async () => {
  const so = r.sos[SLOW];
  so.attributes.max_sanitize_rate = 0;
  try {
    const zeros = overwriteList(Buffer.alloc(8));
    good(await n.command(SLOW, sanitizeCdb(OVERWRITE, zeros.length), { dataOut: zeros }));
    assert.deepEqual(await lbaStatus(SLOW, 0), [[0, BLOCKS, 1]]);
    assert.deepEqual(await readBlocks(n, SLOW, BLOCKS - 1, 1), Buffer.alloc(BS));
  } finally {
    so.attributes.max_sanitize_rate = 2;
  }
});

test('a sanitize outlives its command: ABORT TASK, LUN RESET and a closed nexus end the command, not the sanitize', async () => {
  const list = overwriteList(Buffer.from([0x3c]));
  // 1. ABORT TASK of the SANITIZE itself, then a LUN RESET.
  const m = await r.nexus(INITIATOR_B);
  const cmd = m.command(SLOW, sanitizeCdb(OVERWRITE, list.length), { dataOut: list, tag: 77 });
  await sleep(100);
  assert.equal(await m.taskManagement('abort-task', SLOW, 77), 'complete');
  const aborted = await cmd;
  assert.deepEqual([aborted.status, aborted.quiet], [Status.TASK_ABORTED, true], 'the command ends, aborted, without a response');
  checkSense(await n.command(SLOW, [0, 0, 0, 0, 0, 0]), IN_PROGRESS, 'the sanitize goes on after ABORT TASK');
  assert.equal(await n.taskManagement('lun-reset', SLOW), 'complete');
  checkSense(await n.command(SLOW, [0, 0, 0, 0, 0, 0]), { key: 6, asc: 0x29, ascq: 0x03 }, 'BUS DEVICE RESET FUNCTION OCCURRED first');
  checkSense(await n.command(SLOW, [0, 0, 0, 0, 0, 0]), IN_PROGRESS, 'the sanitize goes on after LUN RESET');
  await waitReady(SLOW);
  assert.deepEqual(await readBlocks(n, SLOW, BLOCKS - 1, 1), Buffer.alloc(BS, 0x3c), 'and completes');
  // 2. The nexus that started it goes away (logout) while its SANITIZE is outstanding.
  const gone = await r.nexus(INITIATOR_B);
  const list2 = overwriteList(Buffer.from([0xc3]));
  const cmd2 = gone.command(SLOW, sanitizeCdb(OVERWRITE, list2.length), { dataOut: list2 });
  await sleep(100);
  await gone.close();
  assert.equal((await cmd2).quiet, true, 'its command ends quietly with the nexus');
  checkSense(await n.command(SLOW, [0, 0, 0, 0, 0, 0]), IN_PROGRESS, 'the sanitize goes on after the nexus is gone');
  const again = await r.nexus(INITIATOR_B);
  checkSense(await again.command(SLOW, [0, 0, 0, 0, 0, 0]), IN_PROGRESS, 'a new nexus of that initiator sees it running');
  await waitReady(SLOW, again);
  assert.deepEqual(await readBlocks(n, SLOW, 0, 1), Buffer.alloc(BS, 0xc3), 'and it completes');
  await again.close();
});

test('a sanitize stops when its storage object is closed: nothing is written after', async () => {
  const own = await rig([{ size: SIZE, attributes: { max_sanitize_rate: 2 } }]);
  const m = await own.nexus();
  const list = overwriteList(Buffer.from([0x77]));
  good(await m.command(0, sanitizeCdb(OVERWRITE, list.length, true), { dataOut: list }), 'IMMED');
  await sleep(100);
  const store = own.sos[0].backstore as RamBackstore;
  assert.ok(store.allocatedBytes > 0, 'the overwrite started');
  await own.close();
  await sleep(600);
  assert.equal(store.allocatedBytes, 0, 'no page written after close');
});

test('max_sanitize_rate: out of range, fractional and non-numeric values are refused with the attribute and why', () => {
  const errorOf = (v: string): string => {
    try {
      parseConfig(`storage_objects:\n  - { name: a, plugin: rd_mcp, size: 1MiB, attributes: { max_sanitize_rate: ${v} } }\n`, 't.yaml');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.errors.length, 1);
      const { line, path, message } = e.errors[0];
      return `${line} ${path}: ${message}`;
    }
    return 'accepted';
  };
  const at = '2 storage_objects[0].attributes.max_sanitize_rate: ';
  assert.equal(errorOf('-1'), `${at}must be between 0 and 1048576, not -1`);
  assert.equal(errorOf('1048577'), `${at}must be between 0 and 1048576, not 1048577`);
  assert.equal(errorOf('1.5'), `${at}must be a whole number, not number 1.5`);
  assert.equal(errorOf('fast'), `${at}must be a whole number, not string 'fast'`);
  assert.equal(errorOf('0'), 'accepted');
  assert.equal(errorOf('100'), 'accepted');
});

test('PRE-FETCH (10)/(16): GOOD over the range (never CONDITION MET), range checked, IMMED accepted', async () => {
  good(await n.command(0, cdb10(0x34, 0, 256)));
  good(await n.command(0, cdb10(0x34, 0, 0)), 'to the end');
  good(await n.command(0, cdb16(0x90, BLOCKS - 256, 256, 0x02)));
  checkSense(await n.command(0, cdb10(0x34, BLOCKS - 1, 2)), LBA_OUT_OF_RANGE, 'past end');
  checkSense(await n.command(0, cdb16(0x90, 0xffffffffffffffffn, 1)), LBA_OUT_OF_RANGE, 'LBA -1');
  checkSense(await n.command(0, cdb10(0x34, 0, 1, 0x01)), invalidCdb(1, 0), 'reserved bit');
});

test('READ DEFECT DATA (10)/(12): empty lists in the format asked; unsupported formats are RECOVERED ERROR', async () => {
  const rd10 = await n.command(0, [0x37, 0, 0x18 | 3, 0, 0, 0, 0, 0, 32, 0]);
  good(rd10);
  assert.deepEqual(rd10.data, Buffer.from([0, 0x18 | 3, 0, 0]));
  const plain = await n.command(0, [0x37, 0, 0, 0, 0, 0, 0, 0, 32, 0]);
  assert.deepEqual(plain.data, Buffer.from([0, 0, 0, 0]));
  const rd12 = await n.command(0, [0xb7, 0x08 | 5, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0]);
  good(rd12);
  assert.deepEqual(rd12.data, Buffer.from([0, 0x08 | 5, 0, 0, 0, 0, 0, 0]));
  checkSense(await n.command(0, [0x37, 0, 0x06, 0, 0, 0, 0, 0, 32, 0]), { key: 1, asc: 0x1c }, 'vendor-specific format');
  checkSense(await n.command(0, [0x37, 0, 0x20, 0, 0, 0, 0, 0, 32, 0]), invalidCdb(2, 5), 'reserved bit');
  const short = await n.command(0, [0x37, 0, 0, 0, 0, 0, 0, 0, 2, 0]);
  assert.equal(short.data.length, 2);
});

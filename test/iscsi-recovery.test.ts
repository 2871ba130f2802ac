// iSCSI error recovery and extended headers, from a raw initiator on real
// sockets: AHS (extended CDBs reach the core, bidirectional and malformed
// ones are rejected) and ErrorRecoveryLevel 1 (recovery R2T after a
// Data-Out digest error, command retry after an immediate data digest error,
// Data/R2T, Status and R-Data SNACK, DataACK).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VENDOR_ID } from '../src/core/logical-unit';
import { RawInitiator, type Pdu } from './util/iscsi-initiator';
import { startTsiod, type Daemon } from './util/tsiod';

const IQN = 'iqn.2026-11.org.tsio:recovery';
let d: Daemon;

before(async () => {
  d = await startTsiod((port: number) => `storage_objects:
  - { name: ram0, plugin: rd_mcp, size: 16MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        parameters: { ErrorRecoveryLevel: 1, InitialR2T: 'No', MaxRecvDataSegmentLength: 8192, FirstBurstLength: 16384, MaxBurstLength: 32768 }
        portals: [ { ip_address: 127.0.0.1, port: ${port} } ]
        luns: [ { index: 0, storage_object: /backstores/rd_mcp/ram0 } ]
`);
});
after(async () => {
  assert.equal(await d.stop(), 0);
});

/** Key, ASC and ASCQ of fixed or descriptor sense. */
function senseOf(s: Buffer): [number, number, number] {
  return (s[0] & 0x7f) >= 0x72 ? [s[1] & 0x0f, s[2], s[3]] : [s[2] & 0x0f, s[12], s[13]];
}

/** One AHS: AHSLength, type, the specific bytes, padding. */
function ahsSegment(type: number, specific: Buffer): Buffer {
  const len = specific.length;
  const b = Buffer.alloc(3 + len + ((4 - ((3 + len) & 3)) & 3));
  b.writeUInt16BE(len, 0);
  b[2] = type;
  specific.copy(b, 3);
  return b;
}

/** The Extended CDB AHS for the bytes of a CDB past 16. */
const extendedCdb = (cdb: Buffer): Buffer => ahsSegment(1, Buffer.concat([Buffer.alloc(1), cdb.subarray(16)]));

/** The SCSI Response (or the last Data-In) of itt, with any data before it. */
async function outcome(i: RawInitiator, itt: number): Promise<{ status: number; sense: Buffer; data: Buffer; last: Pdu }> {
  const chunks: Buffer[] = [];
  for (;;) {
    const p = await i.next((x) => x.itt === itt);
    if (p.opcode === 0x25) {
      chunks.push(p.data);
      if (p.flags & 0x01) {
        i.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
        return { status: p.bhs[3], sense: Buffer.alloc(0), data: Buffer.concat(chunks), last: p };
      }
      continue;
    }
    assert.equal(p.opcode, 0x21, `opcode 0x${p.opcode.toString(16)}`);
    i.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
    const sense = p.data.length >= 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : Buffer.alloc(0);
    return { status: p.bhs[3], sense, data: Buffer.concat(chunks), last: p };
  }
}

async function session(extra: Record<string, string> = {}): Promise<RawInitiator> {
  const i = await RawInitiator.connect(d.port);
  await i.login(IQN, extra);
  await i.command([0, 0, 0, 0, 0, 0]); // the power-on unit attention
  return i;
}

test('AHS: a 32-byte CDB reaches the core (unknown there: INVALID COMMAND OPERATION CODE); an 18-byte INQUIRY runs', async () => {
  const i = await session();
  const read32 = Buffer.alloc(32);
  read32[0] = 0x7f;
  read32[7] = 0x18; // additional CDB length
  read32.writeUInt16BE(0x0009, 8); // READ (32)
  read32.writeUInt32BE(1, 28);
  let c = i.commandHeader(read32, { read: 512, ahs: extendedCdb(read32) });
  i.send(c.h);
  let r = await outcome(i, c.itt);
  assert.equal(r.status, 0x02);
  assert.deepEqual(senseOf(r.sense), [0x05, 0x20, 0x00]);
  // INQUIRY is 6 bytes long in the table: the two extra bytes are past its usage mask.
  const inquiry = Buffer.from([0x12, 0, 0, 0, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb]);
  c = i.commandHeader(inquiry, { read: 96, ahs: extendedCdb(inquiry) });
  i.send(c.h);
  r = await outcome(i, c.itt);
  assert.equal(r.status, 0);
  assert.equal(r.data.length, 96);
  assert.equal(r.data[0] & 0x1f, 0, 'a disk');
  assert.equal(r.data.toString('ascii', 8, 16).trim(), VENDOR_ID);
  assert.equal(await i.logout(), 0);
  i.close();
});

test('AHS: malformed lengths are rejected as a protocol error, bidirectional commands as not supported; the session goes on', async () => {
  const i = await session();
  const tur = Buffer.alloc(6);
  // AHSLength says 20 bytes, TotalAHSLength holds 8.
  const bad = Buffer.alloc(8);
  bad.writeUInt16BE(20, 0);
  bad[2] = 1;
  let c = i.commandHeader(tur, { ahs: bad });
  i.send(c.h);
  let rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x04);
  assert.equal(rej.data.readUInt32BE(16), c.itt, 'the Reject carries the bad header');
  // An Extended CDB AHS with no CDB byte in it.
  c = i.commandHeader(tur, { ahs: ahsSegment(1, Buffer.alloc(1)) });
  i.send(c.h);
  rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x04);
  // A reserved AHS type.
  c = i.commandHeader(tur, { ahs: ahsSegment(7, Buffer.alloc(5)) });
  i.send(c.h);
  rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x04);
  // Bidirectional: the Bidirectional Read Expected Data Transfer Length AHS (and R and W both set).
  const len = Buffer.alloc(5);
  len.writeUInt32BE(512, 1);
  c = i.commandHeader(Buffer.from([0x53, 0, 0, 0, 0, 0, 0, 0, 1, 0]), { read: 512, write: 512, ahs: ahsSegment(2, len) });
  i.send(c.h);
  rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x05);
  // Every rejected command took its CmdSN; the next one runs.
  const block = Buffer.alloc(512, 0x5d);
  const w = await i.command([0x2a, 0, 0, 0, 0, 3, 0, 0, 1, 0], { write: block, immediate: 512 });
  assert.equal(w.status, 0);
  const rd = await i.command([0x28, 0, 0, 0, 0, 3, 0, 0, 1, 0], { read: 512 });
  assert.ok(rd.data.equals(block));
  assert.equal(await i.logout(), 0);
  i.close();
});

// ---- ErrorRecoveryLevel 1 ----------------------------------------------------

const SEG = 8192; // the target's MaxRecvDataSegmentLength above

const write10 = (lba: number, blocks: number): Buffer => Buffer.from([0x2a, 0, (lba >>> 24) & 0xff, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0]);
const read10 = (lba: number, blocks: number): Buffer => Buffer.from([0x28, 0, (lba >>> 24) & 0xff, (lba >> 16) & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0]);

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let k = 0; k < n; k++) b[k] = (k * 31 + seed * 7 + (k >> 9)) & 0xff;
  return b;
}

/** Sends a PDU whose data digest is wrong (the header and its digest, if any, are right). */
function sendCorrupt(i: RawInitiator, bhs: Buffer, data: Buffer): void {
  i.dataDigest = false;
  i.send(bhs, data);
  i.raw(Buffer.from([0xde, 0xad, 0xbe, 0xef]));
  i.dataDigest = true;
}

function dataOut(i: RawInitiator, itt: number, ttt: number, sn: number, offset: number, chunk: Buffer, final: boolean, corrupt: boolean): void {
  const d = i.dataOutHeader(itt, ttt, sn, offset, final);
  if (corrupt) sendCorrupt(i, d, chunk);
  else i.send(d, chunk);
}

/** Data-Out PDUs for [offset, offset+length) of data, numbered from DataSN 0; `corrupt` picks PDUs by a running count. */
function sequence(i: RawInitiator, itt: number, ttt: number, data: Buffer, offset: number, length: number, corrupt: (n: number) => boolean, count: { n: number }): void {
  let sn = 0;
  for (let o = offset; o < offset + length; o += SEG) {
    const n = Math.min(SEG, offset + length - o);
    dataOut(i, itt, ttt, sn++, o, data.subarray(o, o + n), o + n === offset + length, corrupt(count.n++));
  }
}

interface R2t { sn: number; ttt: number; offset: number; length: number }

/**
 * A WRITE (10) answered the way an ERL 1 initiator does: immediate data,
 * unsolicited Data-Out up to `firstBurst`, then every R2T (recovery ones
 * included) in order; the Data-Out PDUs `corrupt` picks get a bad digest.
 */
async function write(i: RawInitiator, lba: number, data: Buffer, opts: { immediate?: number; firstBurst?: number; corrupt?: (n: number) => boolean } = {}): Promise<{ status: number; sense: Buffer; r2ts: R2t[]; rejects: Pdu[] }> {
  const imm = opts.immediate ?? 0;
  const unsolEnd = opts.firstBurst !== undefined ? Math.min(opts.firstBurst, data.length) : imm;
  const corrupt = opts.corrupt ?? (() => false);
  const c = i.commandHeader(write10(lba, data.length / 512), { write: data.length });
  if (unsolEnd > imm) c.h[1] &= 0x7f; // unsolicited Data-Out follows
  i.send(c.h, data.subarray(0, imm));
  const count = { n: 0 };
  if (unsolEnd > imm) sequence(i, c.itt, 0xffffffff, data, imm, unsolEnd - imm, corrupt, count);
  const r2ts: R2t[] = [];
  for (;;) {
    const p = await i.next((x) => x.itt === c.itt);
    if (p.opcode === 0x31) {
      const r = { sn: p.bhs.readUInt32BE(36), ttt: p.bhs.readUInt32BE(20), offset: p.bhs.readUInt32BE(40), length: p.bhs.readUInt32BE(44) };
      r2ts.push(r);
      sequence(i, c.itt, r.ttt, data, r.offset, r.length, corrupt, count);
      continue;
    }
    assert.equal(p.opcode, 0x21);
    i.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
    const rejects = i.pdus.filter((x) => x.opcode === 0x3f);
    for (const r of rejects) i.pdus.splice(i.pdus.indexOf(r), 1);
    const sense = p.data.length >= 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : Buffer.alloc(0);
    return { status: p.bhs[3], sense, r2ts, rejects };
  }
}

async function readBack(i: RawInitiator, lba: number, length: number): Promise<Buffer> {
  const r = await i.command(read10(lba, length / 512), { read: length });
  assert.equal(r.status, 0);
  return r.data;
}

/** A SNACK: type, ITT, SNACK Tag / TTT, BegRun, RunLength. */
function snack(i: RawInitiator, type: number, f: { itt?: number; tag?: number; beg?: number; run?: number }): void {
  const h = Buffer.alloc(48);
  h[0] = 0x10;
  h[1] = 0x80 | type;
  h.writeUInt32BE(f.itt ?? 0xffffffff, 16);
  h.writeUInt32BE(f.tag ?? 0xffffffff, 20);
  h.writeUInt32BE(i.expStatSN, 28);
  h.writeUInt32BE(f.beg ?? 0, 40);
  h.writeUInt32BE(f.run ?? 0, 44);
  i.send(h);
}

/** Every Data-In of a read up to the one with status, without acknowledging the status. */
async function readPdus(i: RawInitiator, lba: number, length: number): Promise<{ itt: number; pdus: Pdu[] }> {
  const c = i.commandHeader(read10(lba, length / 512), { read: length });
  i.send(c.h);
  const pdus: Pdu[] = [];
  for (;;) {
    const p = await i.next((x) => x.itt === c.itt);
    assert.equal(p.opcode, 0x25);
    pdus.push(p);
    if (p.flags & 0x01) return { itt: c.itt, pdus };
  }
}

/** Same PDU but for ExpCmdSN and MaxCmdSN (the fields a retransmission brings up to date). */
function assertReplica(again: Pdu, first: Pdu): void {
  const a = Buffer.from(again.bhs);
  const b = Buffer.from(first.bhs);
  a.fill(0, 28, 36);
  b.fill(0, 28, 36);
  assert.deepEqual(a, b);
  assert.ok(again.data.equals(first.data), 'same data');
}

test('ERL 1 is negotiated (2 is answered 1) and then allows one outstanding R2T', async () => {
  let i = await RawInitiator.connect(d.port);
  let keys = await i.login(IQN, { ErrorRecoveryLevel: '2', MaxOutstandingR2T: '4' });
  assert.equal(keys.get('ErrorRecoveryLevel'), '1');
  assert.equal(keys.get('MaxOutstandingR2T'), '1');
  assert.equal(await i.logout(), 0);
  i.close();
  i = await RawInitiator.connect(d.port);
  keys = await i.login(IQN, { ErrorRecoveryLevel: '0', MaxOutstandingR2T: '4' });
  assert.equal(keys.get('ErrorRecoveryLevel'), '0');
  assert.equal(keys.get('MaxOutstandingR2T'), '1'); // the TPG's own default
  assert.equal(await i.logout(), 0);
  i.close();
  // A header digest error still ends the connection at ERL 1: without markers the next PDU cannot be found.
  i = await RawInitiator.connect(d.port);
  keys = await i.login(IQN, { ErrorRecoveryLevel: '1', HeaderDigest: 'CRC32C' });
  assert.equal(keys.get('HeaderDigest'), 'CRC32C');
  await i.nop(Buffer.from('ok'));
  const h = Buffer.alloc(48);
  h[0] = 0x40;
  h[1] = 0x80;
  h.writeUInt32BE(0x77, 16);
  h.writeUInt32BE(0xffffffff, 20);
  h.writeUInt32BE(i.cmdSN, 24);
  i.headerDigest = false;
  i.send(h);
  i.raw(Buffer.from([1, 2, 3, 4]));
  assert.ok(await i.waitClosed(), 'dropped');
});

test('ERL 1: a Data-Out with a bad data digest is rejected and asked for again by a recovery R2T; the data arrives exact', async () => {
  const i = await session({ ErrorRecoveryLevel: '1', DataDigest: 'CRC32C' });
  assert.ok(i.dataDigest);
  // One R2T of 32 KiB in four PDUs; the second is corrupted: the rest of that burst is asked for again.
  let data = pattern(32768, 1);
  let w = await write(i, 200, data, { corrupt: (n) => n === 1 });
  assert.equal(w.status, 0);
  assert.deepEqual(w.r2ts.map((r) => [r.sn, r.offset, r.length]), [[0, 0, 32768], [1, 8192, 24576]]);
  assert.notEqual(w.r2ts[1].ttt, w.r2ts[0].ttt);
  assert.deepEqual(w.rejects.map((r) => r.bhs[2]), [0x02]);
  assert.ok((await readBack(i, 200, data.length)).equals(data));
  // The last PDU (F bit) corrupted: its header says the burst ended, so the recovery R2T comes at once.
  data = pattern(32768, 2);
  w = await write(i, 300, data, { corrupt: (n) => n === 3 });
  assert.equal(w.status, 0);
  assert.deepEqual(w.r2ts.map((r) => [r.sn, r.offset, r.length]), [[0, 0, 32768], [1, 24576, 8192]]);
  assert.ok((await readBack(i, 300, data.length)).equals(data));
  // Two bursts, the first hit twice (the recovery R2T's data too), then the second one as usual.
  data = pattern(65536, 3);
  w = await write(i, 400, data, { corrupt: (n) => n === 0 || n === 4 });
  assert.equal(w.status, 0);
  assert.deepEqual(w.r2ts.map((r) => [r.sn, r.offset, r.length]), [[0, 0, 32768], [1, 0, 32768], [2, 0, 32768], [3, 32768, 32768]]);
  assert.equal(w.rejects.length, 2);
  assert.ok((await readBack(i, 400, data.length)).equals(data));
  // Data that keeps arriving bad: after 8 recovery R2Ts the command fails (PROTOCOL SERVICE CRC ERROR).
  w = await write(i, 400, pattern(8192, 4), { corrupt: () => true });
  assert.equal(w.status, 0x02);
  assert.deepEqual(senseOf(w.sense), [0x0b, 0x47, 0x05]);
  assert.equal(w.r2ts.length, 9);
  assert.ok((await readBack(i, 400, data.length)).equals(data), 'nothing written');
  assert.equal(await i.logout(), 0);
  i.close();
});

test('ERL 0: a Data-Out with a bad data digest fails its command with PROTOCOL SERVICE CRC ERROR once the burst is in', async () => {
  const i = await session({ DataDigest: 'CRC32C' });
  for (const bad of [1, 3]) {
    const w = await write(i, 1000, pattern(32768, bad), { corrupt: (n) => n === bad });
    assert.equal(w.status, 0x02);
    assert.deepEqual(senseOf(w.sense), [0x0b, 0x47, 0x05]);
    assert.deepEqual(w.rejects.map((r) => r.bhs[2]), [0x02], 'the PDUs after the bad one are dropped quietly');
    assert.equal(w.r2ts.length, 1, 'nothing asked for again');
  }
  const data = pattern(32768, 9);
  assert.equal((await write(i, 1000, data)).status, 0);
  assert.ok((await readBack(i, 1000, data.length)).equals(data));
  assert.equal(await i.logout(), 0);
  i.close();
});

test('ERL 1: a hole in unsolicited data (InitialR2T=No) is asked for again before the solicited rest', async () => {
  const i = await session({ ErrorRecoveryLevel: '1', DataDigest: 'CRC32C', InitialR2T: 'No', ImmediateData: 'Yes' });
  const data = pattern(65536, 4);
  // Immediate 4 KiB, unsolicited to 16 KiB in two PDUs (the first corrupted), then R2Ts.
  const w = await write(i, 500, data, { immediate: 4096, firstBurst: 16384, corrupt: (n) => n === 0 });
  assert.equal(w.status, 0);
  assert.deepEqual(w.rejects.map((r) => r.bhs[2]), [0x02]);
  // From the recovery R2T at the hole on, every byte was asked for in order, each R2T at most MaxBurstLength.
  // (An R2T for the solicited part may have gone out before the hole showed: its data was dropped too.)
  const from = w.r2ts.map((r) => r.offset).lastIndexOf(4096);
  assert.ok(from >= 0, JSON.stringify(w.r2ts));
  let next = 4096;
  for (const r of w.r2ts.slice(from)) {
    assert.ok(r.offset === next && r.length <= 32768, JSON.stringify(w.r2ts));
    next += r.length;
  }
  assert.equal(next, data.length);
  assert.deepEqual(w.r2ts.map((r) => r.sn), w.r2ts.map((_, k) => k), 'R2TSN goes on');
  assert.ok((await readBack(i, 500, data.length)).equals(data));
  assert.equal(await i.logout(), 0);
  i.close();
});

test('ERL 1: a command whose immediate data fails its digest is rejected, later commands wait, its retry (same ITT and CmdSN) runs', async () => {
  const i = await session({ ErrorRecoveryLevel: '1', DataDigest: 'CRC32C', InitialR2T: 'No', ImmediateData: 'Yes' });
  const data = pattern(4096, 5);
  const first = i.commandHeader(write10(600, 8), { write: data.length });
  sendCorrupt(i, first.h, data);
  const rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x02);
  assert.equal(rej.data.readUInt32BE(16), first.itt);
  assert.equal(rej.bhs.readUInt32BE(28), first.h.readUInt32BE(24), 'ExpCmdSN stays at the discarded command');
  // The next commands are held, their CmdSN past the gap: a write whose unsolicited Data-Out waits with it, a read.
  const more = pattern(16384, 6);
  const second = i.commandHeader(write10(608, 32), { write: more.length });
  second.h[1] &= 0x7f;
  i.send(second.h, more.subarray(0, 4096));
  sequence(i, second.itt, 0xffffffff, more, 4096, 12288, () => false, { n: 0 });
  const third = i.commandHeader(read10(600, 40), { read: 20480 });
  // ORDERED: SIMPLE commands may run in any order (SAM-5), and this read must see both writes.
  third.h[1] = (third.h[1] & ~0x07) | 0x02;
  i.send(third.h);
  await assert.rejects(i.next((p) => p.itt === second.itt || p.itt === third.itt, 300), /timed out/);
  // The retry: the same PDU, digest right this time.
  first.h.writeUInt32BE(i.expStatSN, 28);
  i.send(first.h, data);
  assert.equal((await outcome(i, first.itt)).status, 0);
  assert.equal((await outcome(i, second.itt)).status, 0);
  const r = await outcome(i, third.itt);
  assert.equal(r.status, 0);
  assert.ok(r.data.equals(Buffer.concat([data, more])), 'the held commands ran after the retried write, in order');
  // A retry of a command that did arrive is outside the window: ignored.
  first.h.writeUInt32BE(i.expStatSN, 28);
  i.send(first.h, data);
  const nop = await i.nop(Buffer.from('still here'));
  assert.equal(nop.data.toString(), 'still here');
  assert.equal(i.pdus.filter((p) => p.itt === first.itt).length, 0);
  assert.equal(await i.logout(), 0);
  i.close();
});

test('ERL 1: Data SNACK resends lost Data-In exactly; Status SNACK the status; acknowledged or unsent numbers are rejected', async () => {
  // The initiator takes 4 KiB segments: a 16 KiB read comes in four Data-In PDUs.
  const i = await session({ ErrorRecoveryLevel: '1', MaxRecvDataSegmentLength: '4096' });
  const data = pattern(16384, 6);
  assert.equal((await write(i, 700, data, { immediate: 0 })).status, 0);
  const r = await readPdus(i, 700, data.length);
  assert.equal(r.pdus.length, 4);
  const last = r.pdus[3];
  // ERL 1: the last PDU asks for a DataACK, naming the read by a TTT and its LUN.
  assert.equal(last.flags & 0x40, 0x40, 'A bit');
  assert.notEqual(last.bhs.readUInt32BE(20), 0xffffffff);
  for (const p of r.pdus.slice(0, 3)) assert.equal(p.flags & 0x40, 0);
  // DataSN 1 "lost": asked for again, and the same bytes come at the same offset.
  snack(i, 0, { itt: r.itt, beg: 1, run: 1 });
  const again = await i.next((p) => p.itt === r.itt);
  assert.equal(again.bhs.readUInt32BE(36), 1);
  assertReplica(again, r.pdus[1]);
  assert.ok(again.data.equals(data.subarray(4096, 8192)));
  // BegRun 2, RunLength 0: everything from DataSN 2, the status PDU included.
  snack(i, 0, { itt: r.itt, beg: 2, run: 0 });
  assertReplica(await i.next((p) => p.itt === r.itt), r.pdus[2]);
  assertReplica(await i.next((p) => p.itt === r.itt), last);
  // A DataSN never sent.
  snack(i, 0, { itt: r.itt, beg: 7, run: 1 });
  assert.equal((await i.next((p) => p.opcode === 0x3f)).bhs[2], 0x09);
  // Status SNACK for the read's StatSN: the status PDU again (it carried data and status).
  const statSN = last.bhs.readUInt32BE(24);
  snack(i, 1, { beg: statSN, run: 1 });
  assertReplica(await i.next((p) => p.itt === r.itt), last);
  // A SCSI Response (TEST UNIT READY), lost and asked for again.
  const tur = i.commandHeader(Buffer.alloc(6));
  i.send(tur.h);
  const rsp = await i.next((p) => p.itt === tur.itt);
  assert.equal(rsp.opcode, 0x21);
  snack(i, 1, { beg: rsp.bhs.readUInt32BE(24), run: 1 });
  assertReplica(await i.next((p) => p.itt === tur.itt), rsp);
  // BegRun 0 and RunLength 0: every unacknowledged response, in order.
  snack(i, 1, {});
  assertReplica(await i.next((p) => p.itt === r.itt), last);
  assertReplica(await i.next((p) => p.itt === tur.itt), rsp);
  // Acknowledged now: asking again is a protocol error, for the status and for the read's data.
  i.expStatSN = (rsp.bhs.readUInt32BE(24) + 1) >>> 0;
  await i.nop(Buffer.alloc(0));
  snack(i, 1, { beg: statSN, run: 1 });
  assert.equal((await i.next((p) => p.opcode === 0x3f)).bhs[2], 0x04);
  snack(i, 0, { itt: r.itt, beg: 0, run: 1 });
  assert.equal((await i.next((p) => p.opcode === 0x3f)).bhs[2], 0x04);
  // A StatSN not sent yet.
  snack(i, 1, { beg: i.expStatSN + 5, run: 1 });
  assert.equal((await i.next((p) => p.opcode === 0x3f)).bhs[2], 0x09);
  // A SNACK type that does not exist.
  snack(i, 9, {});
  assert.equal((await i.next((p) => p.opcode === 0x3f)).bhs[2], 0x04);
  assert.equal(await i.logout(), 0);
  i.close();
});

test('ERL 1: DataACK releases a read\'s data (a Status SNACK then gets a SCSI Response); R-Data SNACK; R2T SNACK', async () => {
  // Digests on: what is sent again gets its own.
  const i = await session({ ErrorRecoveryLevel: '1', MaxRecvDataSegmentLength: '4096', HeaderDigest: 'CRC32C', DataDigest: 'CRC32C' });
  assert.ok(i.headerDigest && i.dataDigest);
  const data = pattern(16384, 7);
  assert.equal((await write(i, 800, data)).status, 0);
  // R-Data SNACK: the data again without status, then a SCSI Response with the SNACK Tag and the same StatSN.
  let r = await readPdus(i, 800, data.length);
  let last = r.pdus[r.pdus.length - 1];
  snack(i, 3, { itt: r.itt, tag: 0x5eed });
  const got: Buffer[] = [];
  for (let k = 0; k < r.pdus.length; k++) {
    const p = await i.next((x) => x.itt === r.itt);
    assert.equal(p.opcode, 0x25);
    assert.equal(p.flags & 0x01, 0, 'no status in the data');
    got.push(p.data);
  }
  assert.ok(Buffer.concat(got).equals(data));
  let rsp = await i.next((x) => x.itt === r.itt);
  assert.equal(rsp.opcode, 0x21);
  assert.equal(rsp.bhs.readUInt32BE(20), 0x5eed);
  assert.equal(rsp.bhs.readUInt32BE(24), last.bhs.readUInt32BE(24));
  assert.equal(rsp.bhs[3], 0);
  assert.equal(rsp.bhs.readUInt32BE(36), r.pdus.length, 'ExpDataSN');
  i.expStatSN = (last.bhs.readUInt32BE(24) + 1) >>> 0;
  // DataACK of everything: the data goes; asking for it is then a protocol error, the status comes as a SCSI Response.
  r = await readPdus(i, 800, data.length);
  last = r.pdus[r.pdus.length - 1];
  snack(i, 2, { tag: last.bhs.readUInt32BE(20), beg: r.pdus.length });
  snack(i, 0, { itt: r.itt, beg: 0, run: 1 });
  assert.equal((await i.next((p) => p.opcode === 0x3f)).bhs[2], 0x04);
  snack(i, 1, { beg: last.bhs.readUInt32BE(24), run: 1 });
  rsp = await i.next((x) => x.itt === r.itt);
  assert.equal(rsp.opcode, 0x21);
  assert.equal(rsp.bhs.readUInt32BE(24), last.bhs.readUInt32BE(24));
  assert.equal(rsp.bhs.readUInt32BE(36), r.pdus.length);
  // A DataACK naming no read.
  snack(i, 2, { tag: 0x7ffffff0, beg: 1 });
  assert.equal((await i.next((p) => p.opcode === 0x3f)).bhs[2], 0x08);
  i.expStatSN = (last.bhs.readUInt32BE(24) + 1) >>> 0;
  // R2T SNACK: an outstanding R2T again, exactly; then its data completes the write.
  const c = i.commandHeader(write10(900, 16), { write: 8192 });
  i.send(c.h);
  const r2t = await i.next((p) => p.itt === c.itt);
  assert.equal(r2t.opcode, 0x31);
  snack(i, 0, { itt: c.itt, beg: 0, run: 1 });
  const r2tAgain = await i.next((p) => p.itt === c.itt);
  const a = Buffer.from(r2tAgain.bhs).fill(0, 24, 36);
  assert.deepEqual(a, Buffer.from(r2t.bhs).fill(0, 24, 36));
  const w = pattern(8192, 8);
  dataOut(i, c.itt, r2t.bhs.readUInt32BE(20), 0, 0, w, true, false);
  assert.equal((await outcome(i, c.itt)).status, 0);
  assert.ok((await readBack(i, 900, 8192)).equals(w));
  assert.equal(await i.logout(), 0);
  i.close();
});

test('ERL 1: what an initiator leaves unacknowledged stays bounded; the newest stays retransmittable', async () => {
  const i = await session({ ErrorRecoveryLevel: '1', MaxRecvDataSegmentLength: '262144' });
  const ack = i.expStatSN;
  const size = 1 << 20;
  let last: Pdu | undefined;
  let lastItt = 0;
  // 40 MiB of reads, never acknowledged: more than the 32 MiB a connection keeps.
  for (let k = 0; k < 40; k++) {
    const r = await readPdus(i, 0, size);
    last = r.pdus[r.pdus.length - 1];
    lastItt = r.itt;
    i.expStatSN = ack;
  }
  snack(i, 1, { beg: ack, run: 1 });
  assert.equal((await i.next((p) => p.opcode === 0x3f)).bhs[2], 0x04, 'the oldest went');
  snack(i, 1, { beg: last!.bhs.readUInt32BE(24), run: 1 });
  assertReplica(await i.next((x) => x.itt === lastItt), last!);
  assert.equal(await i.logout(), 0);
  i.close();
});

test('ERL 1: hundreds of random SNACKs (any type, run, tag) get answers or Rejects; the session and its data stay right', async () => {
  const i = await session({ ErrorRecoveryLevel: '1', MaxRecvDataSegmentLength: '4096' });
  let x = 0x2545f491;
  const rnd = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const data = pattern(16384, 10);
  assert.equal((await write(i, 1100, data)).status, 0);
  const ack = i.expStatSN;
  const itts: number[] = [];
  const ttts: number[] = [];
  for (let k = 0; k < 4; k++) {
    const r = await readPdus(i, 1100, data.length);
    itts.push(r.itt);
    ttts.push(r.pdus[r.pdus.length - 1].bhs.readUInt32BE(20));
  }
  const pick = <T>(a: T[]): T => a[rnd(a.length)];
  for (let k = 0; k < 400; k++) {
    i.expStatSN = k % 50 === 49 ? (ack + rnd(6)) >>> 0 : ack; // now and then some get acknowledged
    snack(i, rnd(16), {
      itt: rnd(4) === 0 ? rnd(0x100000) : pick(itts),
      tag: rnd(3) === 0 ? rnd(0x100000) : pick(ttts),
      beg: pick([0, 1, 2, 3, ack, ack + 2, rnd(0xffffffff)]) >>> 0,
      run: pick([0, 0, 1, 2, 3, 0xffffffff, rnd(1000)]),
    });
  }
  i.expStatSN = (ack + 4) >>> 0;
  const nop = await i.nop(Buffer.from('after the storm'), 0x7777);
  assert.equal(nop.data.toString(), 'after the storm');
  assert.ok(i.pdus.some((p) => p.opcode === 0x3f), 'some were rejected');
  assert.ok(i.pdus.some((p) => p.opcode === 0x25), 'some were answered');
  i.pdus.length = 0;
  assert.ok((await readBack(i, 1100, data.length)).equals(data));
  assert.equal(await i.logout(), 0);
  i.close();
});

// The target's iSCSI PDUs byte by byte (fabrics/iscsi/pdu-builders.ts): each
// builder's header is compared whole with one written out from RFC 7143's
// layouts (section 11), by offset and by number rather than through the
// fabric's own names, so a field at the wrong place, a flag bit too many, a
// StatSN taken or not taken, or a stray byte shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  dataInPdu, loginResponsePdu, logoutRequestPdu, logoutResponsePdu, newTtt, nopInPingPdu, nopInReplyPdu, r2tPdu, rejectPdu,
  residualFlags, scsiResponsePdu, senseSegment, textResponsePdu, tmfResponsePdu, NO_WINDOW, type TxConnection,
} from '../fabrics/iscsi/pdu-builders';

const STATSN = 0x01020304;
const WINDOW = { expCmdSN: 0x11121314, maxCmdSN: 0x21222324 };

/** A connection at StatSN 0x01020304, without header digest unless asked. */
const conn = (digest = false): TxConnection => ({ statSN: STATSN, sendsHeaderDigest: digest });

type Field = [offset: number, bytes: number[]];
const u32 = (v: number): number[] => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const u24 = (v: number): number[] => [(v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const u16 = (v: number): number[] => [(v >>> 8) & 0xff, v & 0xff];

/** A 48-byte BHS of zeros but for the fields given. */
function bhs(...fields: Field[]): string {
  const b = Buffer.alloc(48);
  for (const [off, bytes] of fields) b.set(bytes, off);
  return b.toString('hex');
}

/** The BHS part of a built header, in hex (the digest room, if any, is checked apart). */
const hex = (h: Buffer): string => h.subarray(0, 48).toString('hex');

/** StatSN at 24, ExpCmdSN at 28, MaxCmdSN at 32: every target PDU's numbers. */
const numbers = (statSN = STATSN): Field[] => [[24, u32(statSN)], [28, u32(WINDOW.expCmdSN)], [32, u32(WINDOW.maxCmdSN)]];

test('Data-In: a PDU within the burst carries DataSN, offset and window, no status, no StatSN taken', () => {
  const c = conn();
  const h = dataInPdu(c, WINDOW, 0, 0xa1b2c3d4, 0x777, 5, 7, 0x10000, 8192, 0x02, 100);
  assert.equal(h.length, 48);
  assert.equal(hex(h), bhs(
    [0, [0x25]], [1, [0x00]], [5, u24(8192)], [16, u32(0xa1b2c3d4)], [20, u32(0xffffffff)],
    [28, u32(WINDOW.expCmdSN)], [32, u32(WINDOW.maxCmdSN)], [36, u32(7)], [40, u32(0x10000)],
  ));
  assert.equal(c.statSN, STATSN, 'StatSN is reserved without the S bit: none is taken');
});

test('Data-In: the last PDU with status (F, S, U): status, StatSN taken, residual count', () => {
  const c = conn();
  const h = dataInPdu(c, WINDOW, 0x80 | 0x01, 0x42, 0, 0, 3, 24576, 512, 0x00, 1536);
  assert.equal(hex(h), bhs(
    [0, [0x25]], [1, [0x80 | 0x01 | 0x02]], [3, [0x00]], [5, u24(512)], [16, u32(0x42)], [20, u32(0xffffffff)],
    ...numbers(), [36, u32(3)], [40, u32(24576)], [44, u32(1536)],
  ));
  assert.equal(c.statSN, STATSN + 1);
});

test('Data-In: an overflow sets O and carries the residual as a count; CHECK CONDITION status byte at 3', () => {
  const c = conn();
  const h = dataInPdu(c, WINDOW, 0x81, 9, 0, 0, 0, 0, 4096, 0x02, -4096);
  assert.equal(h[1], 0x80 | 0x01 | 0x04);
  assert.equal(h[3], 0x02);
  assert.equal(h.readUInt32BE(44), 4096);
});

test('Data-In asking for a DataACK (A): the read\'s TTT at 20 and its LUN at 8', () => {
  const c = conn();
  const h = dataInPdu(c, WINDOW, 0x80 | 0x40, 0x1234, 0x5678, 300, 1, 65536, 65536, 0, 0);
  assert.equal(hex(h), bhs(
    [0, [0x25]], [1, [0xc0]], [5, u24(65536)], [8, [0x41, 0x2c]], [16, u32(0x1234)], [20, u32(0x5678)],
    [28, u32(WINDOW.expCmdSN)], [32, u32(WINDOW.maxCmdSN)], [36, u32(1)], [40, u32(65536)],
  ));
  const low = dataInPdu(conn(), WINDOW, 0xc0, 1, 2, 7, 0, 0, 1, 0, 0);
  assert.deepEqual([...low.subarray(8, 16)], [0, 7, 0, 0, 0, 0, 0, 0], 'LUN below 256: peripheral addressing');
});

test('every builder leaves room for the header digest when the connection sends one', () => {
  for (const h of [
    dataInPdu(conn(true), WINDOW, 0, 1, 0, 0, 0, 0, 0, 0, 0),
    scsiResponsePdu(conn(true), WINDOW, 1, 0, 0, 0, 0),
    r2tPdu(conn(true), WINDOW, 0, 1, 2, 0, 0, 1),
    nopInPingPdu(conn(true), WINDOW, 1),
    tmfResponsePdu(conn(true), WINDOW, 1, 0),
    logoutRequestPdu(conn(true), WINDOW, 2),
    rejectPdu(conn(true), WINDOW, 4),
  ]) {
    assert.equal(h.length, 52, `opcode 0x${h[0].toString(16)}`);
  }
});

test('SCSI Response: Command Completed at Target, status, residual, ExpDataSN, StatSN taken; sense segment', () => {
  const c = conn();
  const sense = Buffer.from([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0]);
  const seg = senseSegment(sense);
  assert.deepEqual(Buffer.concat(seg).subarray(0, 2), Buffer.from([0x00, 18]), 'SenseLength first (RFC 7143 11.4.7.2)');
  assert.equal(seg[1], sense, 'the sense itself, not a copy');
  const h = scsiResponsePdu(c, WINDOW, 0xcafe, 0x02, 0, 20, 0);
  assert.equal(hex(h), bhs([0, [0x21]], [1, [0x80]], [2, [0x00]], [3, [0x02]], [5, u24(20)], [16, u32(0xcafe)], ...numbers()));
  assert.equal(c.statSN, STATSN + 1);
  const under = scsiResponsePdu(conn(), WINDOW, 1, 0, 512, 0, 6);
  assert.equal(hex(under), bhs([0, [0x21]], [1, [0x80 | 0x02]], [16, u32(1)], ...numbers(), [36, u32(6)], [44, u32(512)]));
  const over = scsiResponsePdu(conn(), WINDOW, 1, 0, -512, 0, 0);
  assert.equal(over[1], 0x80 | 0x04);
  assert.equal(over.readUInt32BE(44), 512);
});

test('residual flags: U for underflow, O for overflow, none for an exact transfer', () => {
  assert.equal(residualFlags(1), 0x02);
  assert.equal(residualFlags(-1), 0x04);
  assert.equal(residualFlags(0), 0);
});

test('R2T: LUN, ITT, TTT, R2TSN, buffer offset and desired length; StatSN shown, not taken', () => {
  const c = conn();
  const h = r2tPdu(c, WINDOW, 5, 0x99, 0x1001, 2, 262144, 131072);
  assert.equal(hex(h), bhs(
    [0, [0x31]], [1, [0x80]], [8, [0, 5]], [16, u32(0x99)], [20, u32(0x1001)], ...numbers(),
    [36, u32(2)], [40, u32(262144)], [44, u32(131072)],
  ));
  assert.equal(c.statSN, STATSN);
});

test('NOP-In answering a NOP-Out: its LUN and ITT, reserved TTT, StatSN taken, echo length', () => {
  const out = Buffer.alloc(48);
  out[0] = 0x40;
  out.set([1, 2, 3, 4, 5, 6, 7, 8], 8);
  out.writeUInt32BE(0x0badf00d, 16);
  const c = conn();
  const h = nopInReplyPdu(c, WINDOW, out, 100);
  assert.equal(hex(h), bhs(
    [0, [0x20]], [1, [0x80]], [5, u24(100)], [8, [1, 2, 3, 4, 5, 6, 7, 8]], [16, u32(0x0badf00d)], [20, u32(0xffffffff)], ...numbers(),
  ));
  assert.equal(c.statSN, STATSN + 1);
});

test('NOP-In ping: reserved ITT, the TTT to echo; StatSN shown, not taken', () => {
  const c = conn();
  const h = nopInPingPdu(c, WINDOW, 0x31337);
  assert.equal(hex(h), bhs([0, [0x20]], [1, [0x80]], [16, u32(0xffffffff)], [20, u32(0x31337)], ...numbers()));
  assert.equal(c.statSN, STATSN);
});

test('Task Management Function Response: response at 2, ITT, StatSN taken', () => {
  const c = conn();
  const h = tmfResponsePdu(c, WINDOW, 0x77, 5);
  assert.equal(hex(h), bhs([0, [0x22]], [1, [0x80]], [2, [5]], [16, u32(0x77)], ...numbers()));
  assert.equal(c.statSN, STATSN + 1);
});

test('Text Response: F on the last piece; C and a TTT when more follows; the request\'s LUN', () => {
  const req = Buffer.alloc(48);
  req.set([0, 3], 8);
  const c = conn();
  const last = textResponsePdu(c, WINDOW, req, 0x10, 0xffffffff, 61);
  assert.equal(hex(last), bhs([0, [0x24]], [1, [0x80]], [5, u24(61)], [8, [0, 3]], [16, u32(0x10)], [20, u32(0xffffffff)], ...numbers()));
  const more = textResponsePdu(c, WINDOW, req, 0x10, 0x20, 8192);
  assert.equal(hex(more), bhs(
    [0, [0x24]], [1, [0x40]], [5, u24(8192)], [8, [0, 3]], [16, u32(0x10)], [20, u32(0x20)], ...numbers(STATSN + 1),
  ));
  assert.equal(c.statSN, STATSN + 2);
});

test('Logout Response: response at 2, ITT, StatSN taken, Time2Wait at 40, Time2Retain at 42', () => {
  const c = conn();
  const h = logoutResponsePdu(c, WINDOW, 0xabc, 1, 2, 20);
  assert.equal(hex(h), bhs([0, [0x26]], [1, [0x80]], [2, [1]], [16, u32(0xabc)], ...numbers(), [40, u16(2)], [42, u16(20)]));
  assert.equal(c.statSN, STATSN + 1);
});

test('Asynchronous Message: logout request (event 1 at 36), reserved ITT, Parameter3 seconds at 42, StatSN taken', () => {
  const c = conn();
  const h = logoutRequestPdu(c, WINDOW, 2);
  assert.equal(hex(h), bhs([0, [0x32]], [1, [0x80]], [16, u32(0xffffffff)], ...numbers(), [36, [1]], [42, u16(2)]));
  assert.equal(c.statSN, STATSN + 1);
});

test('Reject: reason at 2, the rejected header as its 48-byte data segment, StatSN shown, not taken', () => {
  const c = conn();
  const h = rejectPdu(c, WINDOW, 0x09);
  assert.equal(hex(h), bhs([0, [0x3f]], [1, [0x80]], [2, [0x09]], [5, u24(48)], [16, u32(0xffffffff)], ...numbers()));
  assert.equal(c.statSN, STATSN);
  const early = rejectPdu(conn(), NO_WINDOW, 0x04);
  assert.equal(hex(early), bhs([0, [0x3f]], [1, [0x80]], [2, [0x04]], [5, u24(48)], [16, u32(0xffffffff)], [24, u32(STATSN)]));
});

test('Login Response: T/CSG/NSG, versions, ISID, TSIH on success only, status class and detail', () => {
  const c = conn();
  const ok = loginResponsePdu(c, WINDOW, 0x80 | (1 << 2) | 3, '800000000001', 7, 0x55, 0x0000, 120);
  assert.equal(hex(ok), bhs(
    [0, [0x23]], [1, [0x87]], [5, u24(120)], [8, [0x80, 0, 0, 0, 0, 0x01]], [14, u16(7)], [16, u32(0x55)], ...numbers(),
  ));
  assert.equal(c.statSN, STATSN + 1);
  const refused = loginResponsePdu(c, WINDOW, 0, '23d000001234', 7, 0x56, 0x0201, 0);
  assert.equal(hex(refused), bhs(
    [0, [0x23]], [8, [0x23, 0xd0, 0, 0, 0x12, 0x34]], [16, u32(0x56)], ...numbers(STATSN + 1), [36, [0x02]], [37, [0x01]],
  ));
});

test('target transfer tags are never the reserved value and do not repeat soon', () => {
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const t = newTtt();
    assert.notEqual(t, 0xffffffff);
    assert.ok(!seen.has(t));
    seen.add(t);
  }
});

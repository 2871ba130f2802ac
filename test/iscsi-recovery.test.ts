// iSCSI error recovery and extended headers, from a raw initiator on real
// sockets: AHS (extended CDBs reach the core, bidirectional and malformed
// ones are rejected) and ErrorRecoveryLevel 1 (recovery R2T after a
// Data-Out digest error, command retry after an immediate data digest error,
// Data/R2T, Status and R-Data SNACK, DataACK).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { VENDOR_ID } from '../src/core/logical-unit';
import { RawInitiator, startTsiod, type Daemon, type Pdu } from './util/iscsi-initiator';

const IQN = 'iqn.2026-11.org.tsio:recovery';
let d: Daemon;

before(async () => {
  d = await startTsiod((port) => `storage_objects:
  - { name: ram0, plugin: rd_mcp, size: 16MiB }
targets:
  - fabric: iscsi
    wwn: ${IQN}
    tpgs:
      - tag: 1
        attributes: { generate_node_acls: true, authentication: false, demo_mode_write_protect: false }
        parameters: { ErrorRecoveryLevel: 1, MaxRecvDataSegmentLength: 8192, FirstBurstLength: 16384, MaxBurstLength: 32768 }
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

/** A SCSI Command BHS (F set) with room for `ahs` after it. */
function commandHeader(i: RawInitiator, cdb: Buffer, opts: { read?: number; write?: number; ahs?: Buffer; immediate?: boolean } = {}): { h: Buffer; itt: number } {
  const ahs = opts.ahs ?? Buffer.alloc(0);
  const h = Buffer.alloc(48 + ahs.length);
  const itt = i.nextItt();
  h[0] = 0x01 | (opts.immediate ? 0x40 : 0);
  h[1] = 0x80 | (opts.read !== undefined ? 0x40 : 0) | (opts.write !== undefined ? 0x20 : 0) | 1;
  h[4] = ahs.length / 4;
  h.writeUInt32BE(itt, 16);
  h.writeUInt32BE(opts.read ?? opts.write ?? 0, 20);
  h.writeUInt32BE(opts.immediate ? i.cmdSN : i.cmdSN++, 24);
  h.writeUInt32BE(i.expStatSN, 28);
  cdb.copy(h, 32, 0, Math.min(16, cdb.length));
  ahs.copy(h, 48);
  return { h, itt };
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
  let c = commandHeader(i, read32, { read: 512, ahs: extendedCdb(read32) });
  i.send(c.h);
  let r = await outcome(i, c.itt);
  assert.equal(r.status, 0x02);
  assert.deepEqual(senseOf(r.sense), [0x05, 0x20, 0x00]);
  // INQUIRY is 6 bytes long in the table: the two extra bytes are past its usage mask.
  const inquiry = Buffer.from([0x12, 0, 0, 0, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb]);
  c = commandHeader(i, inquiry, { read: 96, ahs: extendedCdb(inquiry) });
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
  let c = commandHeader(i, tur, { ahs: bad });
  i.send(c.h);
  let rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x04);
  assert.equal(rej.data.readUInt32BE(16), c.itt, 'the Reject carries the bad header');
  // An Extended CDB AHS with no CDB byte in it.
  c = commandHeader(i, tur, { ahs: ahsSegment(1, Buffer.alloc(1)) });
  i.send(c.h);
  rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x04);
  // A reserved AHS type.
  c = commandHeader(i, tur, { ahs: ahsSegment(7, Buffer.alloc(5)) });
  i.send(c.h);
  rej = await i.next((p) => p.opcode === 0x3f);
  assert.equal(rej.bhs[2], 0x04);
  // Bidirectional: the Bidirectional Read Expected Data Transfer Length AHS (and R and W both set).
  const len = Buffer.alloc(5);
  len.writeUInt32BE(512, 1);
  c = commandHeader(i, Buffer.from([0x53, 0, 0, 0, 0, 0, 0, 0, 1, 0]), { read: 512, write: 512, ahs: ahsSegment(2, len) });
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

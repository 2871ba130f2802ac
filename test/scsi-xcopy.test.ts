// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS through the loopback fabric:
// copies within and across LUs, the reported limits and their checks, and a
// long copy that lets other commands through. Follows libiscsi's
// ExtendedCopy and ReceiveCopyResults suites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rig } from './util/loopback-setup';
import { Status, SenseKey } from '../src/core/sense';
import { LoopbackNexus } from '../fabrics/loopback/loopback';
import type { LoopbackResult } from '../fabrics/loopback/loopback';
import { XCOPY_LIMITS } from '../src/scsi/xcopy';

const BS = 512;

const write10 = (n: LoopbackNexus, lun: number, lba: number, data: Buffer) =>
  n.command(lun, [0x2a, 0, 0, 0, (lba >> 8) & 0xff, lba & 0xff, 0, (data.length / BS) >> 8, (data.length / BS) & 0xff, 0], { dataOut: data });
async function read10(n: LoopbackNexus, lun: number, lba: number, blocks: number): Promise<Buffer> {
  const lbaHi = Math.floor(lba / 0x10000);
  const r = await n.command(lun, [0x28, 0, lbaHi >> 8, lbaHi & 0xff, (lba >> 8) & 0xff, lba & 0xff, 0, blocks >> 8, blocks & 0xff, 0]);
  assert.equal(r.status, Status.GOOD);
  return r.data;
}

/** The LU's NAA designator, as an initiator finds it in VPD page 83h. */
async function naaOf(n: LoopbackNexus, lun: number): Promise<Buffer> {
  const r = await n.command(lun, [0x12, 1, 0x83, 1, 0, 0]);
  assert.equal(r.status, Status.GOOD);
  const d = r.data;
  for (let o = 4; o < 4 + d.readUInt16BE(2); o += 4 + d[o + 3]) {
    if ((d[o + 1] & 0x0f) === 3 && ((d[o + 1] >> 4) & 3) === 0) return Buffer.from(d.subarray(o + 4, o + 4 + d[o + 3]));
  }
  throw new Error('no NAA designator in VPD 83h');
}

/** Identification target descriptor 0xE4 for an NAA designator (libiscsi populate_tgt_desc). */
function targetDesc(naa: Buffer, type = 0xe4, blockLen = BS): Buffer {
  const t = Buffer.alloc(32);
  t[0] = type;
  t[4] = 1; // binary
  t[5] = 3; // LU association, NAA
  t[7] = naa.length;
  naa.copy(t, 8);
  t.writeUIntBE(blockLen, 29, 3);
  return t;
}

/** Block -> block segment descriptor 0x02. */
function segDesc(src: number, dst: number, blocks: number, srcLba: number, dstLba: number, type = 0x02): Buffer {
  const s = Buffer.alloc(28);
  s[0] = type;
  s.writeUInt16BE(0x18, 2);
  s.writeUInt16BE(src, 4);
  s.writeUInt16BE(dst, 6);
  s.writeUInt16BE(blocks, 10);
  s.writeBigUInt64BE(BigInt(srcLba), 12);
  s.writeBigUInt64BE(BigInt(dstLba), 20);
  return s;
}

function paramList(listId: number, targets: Buffer[], segs: Buffer[], usage = 0): Buffer {
  const t = Buffer.concat(targets);
  const s = Buffer.concat(segs);
  const h = Buffer.alloc(16);
  h[0] = listId;
  h[1] = usage << 3;
  h.writeUInt16BE(t.length, 2);
  h.writeUInt32BE(s.length, 8);
  return Buffer.concat([h, t, s]);
}

function xcopy(n: LoopbackNexus, lun: number, data: Buffer, length = data.length): Promise<LoopbackResult> {
  const cdb = Buffer.alloc(16);
  cdb[0] = 0x83;
  cdb.writeUInt32BE(length, 10);
  return n.command(lun, cdb, { dataOut: data.subarray(0, Math.min(length, data.length)) });
}

function rcr(n: LoopbackNexus, lun: number, sa: number, listId = 0): Promise<LoopbackResult> {
  const cdb = Buffer.alloc(16);
  cdb[0] = 0x84;
  cdb[1] = sa;
  cdb[2] = listId;
  cdb.writeUInt32BE(1024, 10);
  return n.command(lun, cdb);
}

const senseOf = (r: LoopbackResult) => [r.status, r.senseKey, r.asc, r.ascq];
const ILLEGAL = (asc: number, ascq: number) => [Status.CHECK_CONDITION, SenseKey.ILLEGAL_REQUEST, asc, ascq];
const COPY_ABORTED_UNREACHABLE = [Status.CHECK_CONDITION, SenseKey.COPY_ABORTED, 0x0d, 0x02];

test('copies exactly within a LU and across LUs of the target, and reports COPY STATUS', async () => {
  const r = await rig([{}, {}]);
  const a = await r.nexus();
  const naa0 = await naaOf(a, 0);
  const naa1 = await naaOf(a, 1);
  assert.deepEqual(naa0, r.sos[0].naa);
  const data = randomBytes(2048 * BS);
  assert.equal((await write10(a, 0, 0, data.subarray(0, 1024 * BS))).status, Status.GOOD);
  assert.equal((await write10(a, 0, 1024, data.subarray(1024 * BS))).status, Status.GOOD);
  const before = await read10(a, 0, 5000, 8);
  // Within LU 0 (libiscsi test_extendedcopy_simple): LBA 0..2047 to the end of the LU.
  const end = r.sos[0].lu.blocks - 2048;
  const one = paramList(1, [targetDesc(naa0)], [segDesc(0, 0, 2048, 0, end)]);
  assert.deepEqual(senseOf(await xcopy(a, 0, one)), [Status.GOOD, undefined, undefined, undefined]);
  const tail = Buffer.concat([await read10(a, 0, end, 1024), await read10(a, 0, end + 1024, 1024)]);
  assert.ok(tail.equals(data), 'copied bytes equal the source');
  assert.ok((await read10(a, 0, 5000, 8)).equals(before), 'nothing else changed');
  const st = await rcr(a, 0, 0, 1);
  assert.equal(st.status, Status.GOOD);
  assert.deepEqual([...st.data], [0, 0, 0, 8, 0x01, 0, 1, 0, ...[0, 0x10, 0, 0]], 'completed, 1 segment, 1 MiB');
  assert.deepEqual(senseOf(await rcr(a, 0, 0, 1)), ILLEGAL(0x24, 0), 'reported once, then discarded');
  // Across LUs, addressed to LU 1, two segments, list id usage 11b (nothing held).
  const two = paramList(2, [targetDesc(naa0), targetDesc(naa1)], [segDesc(0, 1, 100, 0, 7), segDesc(0, 1, 28, 100, 107)], 3);
  assert.equal((await xcopy(a, 1, two)).status, Status.GOOD);
  assert.ok((await read10(a, 1, 7, 128)).equals(data.subarray(0, 128 * BS)));
  assert.deepEqual(senseOf(await rcr(a, 1, 0, 2)), ILLEGAL(0x24, 0), 'list id usage 11b holds nothing');
  // A LU of another TPG of the same target, mapped to no session, is reachable too.
  const so2 = await r.root.createStorageObject({ name: 'hidden', plugin: 'rd_mcp', size: 1 << 20 });
  r.tpg.target.addTpg(2).addLun(0, so2);
  const three = paramList(3, [targetDesc(naa1), targetDesc(so2.naa)], [segDesc(0, 1, 16, 7, 0)]);
  assert.equal((await xcopy(a, 0, three)).status, Status.GOOD);
  const got = Buffer.alloc(16 * BS);
  await so2.backstore.read(0, got.length, [got]);
  assert.ok(got.equals(data.subarray(0, 16 * BS)));
  // A designator no LU of this target has.
  const nowhere = paramList(4, [targetDesc(Buffer.alloc(16, 0x61))], [segDesc(0, 0, 1, 0, 1)]);
  assert.deepEqual(senseOf(await xcopy(a, 0, nowhere)), COPY_ABORTED_UNREACHABLE);
  await r.close();
});

test('OPERATING PARAMETERS and the limits they announce are enforced', async () => {
  const r = await rig();
  const a = await r.nexus();
  const naa = await naaOf(a, 0);
  const op = await rcr(a, 0, 3);
  assert.equal(op.status, Status.GOOD);
  const d = op.data;
  assert.equal(d.readUInt32BE(0), d.length - 4);
  assert.equal(d.readUInt16BE(8), XCOPY_LIMITS.maxTargetDescriptors);
  assert.equal(d.readUInt16BE(10), XCOPY_LIMITS.maxSegmentDescriptors);
  assert.equal(d.readUInt32BE(12), XCOPY_LIMITS.maxDescriptorListLength);
  assert.equal(d.readUInt32BE(16), XCOPY_LIMITS.maxSegmentLength);
  assert.deepEqual([...d.subarray(43)], [2, 0x02, 0xe4]);
  const maxT = d.readUInt16BE(8);
  const maxS = d.readUInt16BE(10);
  const seg = segDesc(0, 0, 8, 0, 64);
  const tgt = targetDesc(naa);
  // test_extendedcopy_descr_limits
  assert.deepEqual(senseOf(await xcopy(a, 0, paramList(1, Array(maxT + 1).fill(tgt), [seg]))), ILLEGAL(0x26, 0x06));
  assert.deepEqual(senseOf(await xcopy(a, 0, paramList(2, [tgt], Array(maxS + 1).fill(seg)))), ILLEGAL(0x26, 0x08));
  const over = Math.ceil((d.readUInt32BE(12) - (maxT + 1) * 32) / 28) + 1;
  assert.deepEqual(senseOf(await xcopy(a, 0, paramList(3, Array(maxT + 1).fill(tgt), Array(over).fill(seg)))), ILLEGAL(0x1a, 0));
  // test_extendedcopy_param: truncated lists, and an empty one.
  const good = paramList(4, [tgt], [seg]);
  assert.deepEqual(senseOf(await xcopy(a, 0, good, 16 + 32 - 1)), ILLEGAL(0x1a, 0));
  assert.deepEqual(senseOf(await xcopy(a, 0, good, 16 + 32 + 28 - 1)), ILLEGAL(0x1a, 0));
  assert.equal((await xcopy(a, 0, Buffer.alloc(0))).status, Status.GOOD);
  // test_extendedcopy_descr_type: FC N_Port_Name target descriptor, stream-to-stream segment.
  assert.deepEqual(senseOf(await xcopy(a, 0, paramList(5, [targetDesc(naa, 0xe0)], [seg]))), ILLEGAL(0x26, 0x07));
  assert.deepEqual(senseOf(await xcopy(a, 0, paramList(6, [tgt], [segDesc(0, 0, 8, 0, 64, 0x03)]))), ILLEGAL(0x26, 0x09));
  // test_extendedcopy_validate_seg_descr: a destination index past the list, and past the end of the LU.
  const blocks = r.sos[0].lu.blocks;
  assert.deepEqual(senseOf(await xcopy(a, 0, paramList(7, [tgt], [segDesc(0, 1, 8, 0, 64)]))), COPY_ABORTED_UNREACHABLE);
  const eol = await xcopy(a, 0, paramList(8, [tgt], [segDesc(0, 0, 2048, 0, blocks - 1)]));
  assert.deepEqual([eol.status, eol.senseKey], [Status.CHECK_CONDITION, SenseKey.COPY_ABORTED]);
  // test_extendedcopy_validate_tgt_descr: the LU ID TYPE field is ignored (SPC-4).
  const luIdRsvd = Buffer.from(tgt);
  luIdRsvd[1] = 3 << 6;
  assert.equal((await xcopy(a, 0, paramList(9, [luIdRsvd], [seg]))).status, Status.GOOD);
  // A block length other than the LU's.
  assert.deepEqual(senseOf(await xcopy(a, 0, paramList(10, [targetDesc(naa, 0xe4, 4096)], [seg]))), COPY_ABORTED_UNREACHABLE);
  // LIST ID USAGE 01b is reserved.
  assert.deepEqual(senseOf(await xcopy(a, 0, paramList(11, [tgt], [seg], 1))), ILLEGAL(0x26, 0));
  // VPD 8Fh names both commands with their service actions, and the descriptor types (libiscsi looks there first).
  const vpd = await a.command(0, [0x12, 1, 0x8f, 0, 255, 0]);
  assert.equal(vpd.status, Status.GOOD);
  assert.deepEqual([...vpd.data], [0, 0x8f, 0, 20, 0, 1, 0, 8, 7, 0x83, 1, 0, 0x84, 2, 0, 3, 0, 8, 0, 4, 2, 0x02, 0xe4, 0]);
  // Unknown RECEIVE COPY RESULTS service actions.
  assert.deepEqual(senseOf(await rcr(a, 0, 1)), ILLEGAL(0x24, 0));
  await r.close();
});

test('a long copy runs in steps: other commands complete meanwhile, COPY STATUS shows it in progress', async () => {
  const r = await rig([{ size: 64 << 20 }]);
  const a = await r.nexus();
  const naa = await naaOf(a, 0);
  const pattern = randomBytes(BS * 64);
  for (let lba = 0; lba < 32768; lba += 64) assert.equal((await write10(a, 0, lba, pattern)).status, Status.GOOD);
  // 16 MiB in 4 segments of 8192 blocks, 1 MiB per step.
  const segs = [0, 1, 2, 3].map((i) => segDesc(0, 0, 8192, i * 8192, 65536 + i * 8192));
  const order: string[] = [];
  const big = xcopy(a, 0, paramList(9, [targetDesc(naa)], segs)).then((x) => (order.push('xcopy'), x));
  await new Promise((res) => setImmediate(res));
  const tur = await a.command(0, [0, 0, 0, 0, 0, 0]);
  order.push('tur');
  assert.equal(tur.status, Status.GOOD);
  const mid = await rcr(a, 0, 0, 9);
  order.push('status');
  assert.equal(mid.status, Status.GOOD);
  assert.equal(mid.data[4], 0x00, 'operation in progress');
  const again = await xcopy(a, 0, paramList(9, [targetDesc(naa)], [segDesc(0, 0, 1, 0, 1)]));
  assert.deepEqual(senseOf(again), ILLEGAL(0x00, 0x16), 'OPERATION IN PROGRESS for the same list id');
  assert.equal((await big).status, Status.GOOD);
  assert.deepEqual(order, ['tur', 'status', 'xcopy']);
  for (const lba of [65536, 65536 + 8192 * 2 + 64, 65536 + 32768 - 64]) {
    assert.ok((await read10(a, 0, lba, 64)).equals(pattern), `LBA ${lba}`);
  }
  const fin = await rcr(a, 0, 0, 9);
  assert.deepEqual([fin.data[4], fin.data.readUInt16BE(5), fin.data.readUInt32BE(8)], [0x01, 4, 16 << 20]);
  await r.close();
});

test('a read-only destination refuses the copy with DATA PROTECT', async () => {
  const r = await rig([{}, { attributes: { readonly: true } }]);
  const a = await r.nexus();
  const list = paramList(1, [targetDesc(await naaOf(a, 0)), targetDesc(await naaOf(a, 1))], [segDesc(0, 1, 8, 0, 0)]);
  assert.deepEqual(senseOf(await xcopy(a, 0, list)), [Status.CHECK_CONDITION, SenseKey.DATA_PROTECT, 0x27, 0]);
  const back = paramList(2, [targetDesc(await naaOf(a, 0)), targetDesc(await naaOf(a, 1))], [segDesc(1, 0, 8, 0, 0)]);
  assert.equal((await xcopy(a, 1, back)).status, Status.GOOD, 'reading from it is fine');
  await r.close();
});

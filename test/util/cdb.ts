// CDB builders and sense expectations (with INFORMATION) for the SBC tests.

import assert from 'node:assert/strict';
import type { LoopbackNexus, LoopbackResult } from '../../fabrics/loopback/loopback';
import { assertGood } from './scsi-assert';
import { Status } from '../../src/core/sense';

/** 10-byte CDB: opcode, flags byte 1, 32-bit LBA at 2, 16-bit count at 7. */
export function cdb10(op: number, lba: number, blocks: number, b1 = 0): Buffer {
  const c = Buffer.alloc(10);
  c[0] = op;
  c[1] = b1;
  c.writeUInt32BE(lba >>> 0, 2);
  c.writeUInt16BE(blocks, 7);
  return c;
}

/** 12-byte CDB: 32-bit LBA at 2, 32-bit count at 6. */
export function cdb12(op: number, lba: number, blocks: number, b1 = 0): Buffer {
  const c = Buffer.alloc(12);
  c[0] = op;
  c[1] = b1;
  c.writeUInt32BE(lba >>> 0, 2);
  c.writeUInt32BE(blocks >>> 0, 6);
  return c;
}

/** 16-byte CDB: 64-bit LBA at 2, 32-bit count at 10. */
export function cdb16(op: number, lba: number | bigint, blocks: number, b1 = 0): Buffer {
  const c = Buffer.alloc(16);
  c[0] = op;
  c[1] = b1;
  c.writeBigUInt64BE(BigInt(lba), 2);
  c.writeUInt32BE(blocks >>> 0, 10);
  return c;
}

/** READ(6)/WRITE(6): 21-bit LBA, 8-bit count. */
export function cdb6(op: number, lba: number, blocks: number): Buffer {
  return Buffer.from([op, (lba >> 16) & 0x1f, (lba >> 8) & 0xff, lba & 0xff, blocks & 0xff, 0]);
}

export { assertGood as good } from './scsi-assert';

export interface SenseExpect {
  key: number;
  asc: number;
  ascq?: number;
  info?: number | bigint;
  field?: { inCdb: boolean; byte: number; bit?: number };
}

export function checkSense(r: LoopbackResult, e: SenseExpect, what = ''): void {
  assert.equal(r.status, Status.CHECK_CONDITION, `${what}: expected CHECK CONDITION, got ${r.status}`);
  assert.deepEqual([r.senseKey, r.asc, r.ascq], [e.key, e.asc, e.ascq ?? 0], what);
  if (e.info !== undefined) assert.equal(r.info, BigInt(e.info), `${what}: INFORMATION`);
  if (e.field !== undefined) assert.deepEqual(r.field, e.field, `${what}: field pointer`);
}

/** Expected sense for the common conditions. */
export const LBA_OUT_OF_RANGE: SenseExpect = { key: 5, asc: 0x21 };
export const invalidCdb = (byte: number, bit?: number): SenseExpect =>
  ({ key: 5, asc: 0x24, field: bit === undefined ? { inCdb: true, byte } : { inCdb: true, byte, bit } });
export const invalidParam = (byte: number, bit?: number): SenseExpect =>
  ({ key: 5, asc: 0x26, field: bit === undefined ? { inCdb: false, byte } : { inCdb: false, byte, bit } });
export const INVALID_OPCODE: SenseExpect = { key: 5, asc: 0x20 };
export const PARAM_LIST_LENGTH: SenseExpect = { key: 5, asc: 0x1a };
export const miscompareAt = (offset: number): SenseExpect => ({ key: 0xe, asc: 0x1d, info: offset });

/** A buffer of n bytes from a seed: every block different, every byte depending on the seed. */
export function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** WRITE(16) of whole blocks, asserting GOOD. */
export async function writeBlocks(n: LoopbackNexus, lun: number, lba: number, data: Buffer, bs = 512): Promise<void> {
  assertGood(await n.command(lun, cdb16(0x8a, lba, data.length / bs), { dataOut: data }), `WRITE(16) LBA ${lba}`);
}

/** READ(16), asserting GOOD; the data read. */
export async function readBlocks(n: LoopbackNexus, lun: number, lba: number, blocks: number): Promise<Buffer> {
  const res = await n.command(lun, cdb16(0x88, lba, blocks));
  assertGood(res, `READ(16) LBA ${lba}`);
  return res.data;
}

// Assertions on command outcomes shared by the SCSI command tests.
import assert from 'node:assert/strict';
import type { LoopbackResult } from '../../fabrics/loopback/loopback';
import { Status } from '../../src/core/sense';

/** Bytes from a readable mix of hex strings ("00 1f"), ASCII ({a: 'TSIO'}) and zero runs ({z: 4}). */
export function bytes(...parts: (string | { a: string } | { z: number } | number[])[]): Buffer {
  return Buffer.concat(parts.map((p) => {
    if (typeof p === 'string') return Buffer.from(p.replace(/\s+/g, ''), 'hex');
    if (Array.isArray(p)) return Buffer.from(p);
    if ('a' in p) return Buffer.from(p.a, 'ascii');
    return Buffer.alloc(p.z);
  }));
}

export function assertGood(r: LoopbackResult, what = 'command'): void {
  assert.equal(r.status, Status.GOOD, `${what}: status ${r.status} sense ${r.senseKey}/${r.asc?.toString(16)}/${r.ascq}`);
}

/** CHECK CONDITION with key/ASC/ASCQ and, when given, the exact sense-key-specific field pointer. */
export function assertSense(
  r: LoopbackResult, key: number, asc: number, ascq: number,
  field?: { inCdb: boolean; byte: number; bit?: number },
): void {
  assert.equal(r.status, Status.CHECK_CONDITION, `status ${r.status}`);
  assert.deepEqual([r.senseKey, r.asc, r.ascq], [key, asc, ascq]);
  if (field) assert.deepEqual(r.field, field.bit === undefined ? { inCdb: field.inCdb, byte: field.byte } : field);
}

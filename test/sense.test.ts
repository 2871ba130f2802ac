// The one sense encoder: exact bytes in both formats.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeSense, decodeSense, invalidCdbField, invalidParamField, miscompare, lbaOutOfRange, ScsiError, SenseKey, Asc, fromIoError,
} from '../src/core/sense';

test('fixed format: INVALID FIELD IN CDB with a bit pointer', () => {
  const b = encodeSense(invalidCdbField(2, 5), false);
  assert.equal(b.length, 18);
  assert.deepEqual([...b], [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0x80 | 0x40 | 0x08 | 5, 0, 2]);
});

test('fixed format: parameter list pointer without a bit, and the INFORMATION field', () => {
  const p = encodeSense(invalidParamField(300), false);
  assert.deepEqual([...p.subarray(15, 18)], [0x80, 0x01, 0x2c]);
  const m = encodeSense(miscompare(513), false);
  assert.equal(m[0], 0xf0, 'VALID set');
  assert.equal(m.readUInt32BE(3), 513);
  assert.deepEqual([m[2], m[12], m[13]], [SenseKey.MISCOMPARE, 0x1d, 0x00]);
});

test('fixed format cannot carry a 64-bit INFORMATION value: VALID stays clear', () => {
  const b = encodeSense(lbaOutOfRange(2n ** 40n), false);
  assert.equal(b[0], 0x70);
  assert.equal(b.readUInt32BE(3), 0);
});

test('descriptor format: information and sense-key-specific descriptors', () => {
  const e = new ScsiError(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, { info: 2n ** 40n, field: { inCdb: true, byte: 9 } });
  const b = encodeSense(e, true);
  assert.deepEqual([...b.subarray(0, 8)], [0x72, 0x05, 0x24, 0x00, 0, 0, 0, 20]);
  assert.deepEqual([...b.subarray(8, 20)], [0x00, 0x0a, 0x80, 0, 0, 0, 0x01, 0, 0, 0, 0, 0]);
  assert.deepEqual([...b.subarray(20, 28)], [0x02, 0x06, 0, 0, 0xc0, 0, 9, 0]);
  const d = decodeSense(b);
  assert.equal(d.info, 2n ** 40n);
  assert.deepEqual(d.field, { inCdb: true, byte: 9 });
});

test('decode reads back what encode wrote, in both formats', () => {
  for (const desc of [false, true]) {
    const d = decodeSense(encodeSense(invalidCdbField(1, 4), desc));
    assert.deepEqual([d.key, d.asc, d.ascq, d.descriptor], [5, 0x24, 0, desc]);
    assert.deepEqual(d.field, { inCdb: true, byte: 1, bit: 4 });
  }
});

test('an errno from a store maps to one sense condition, whichever I/O path it came from', () => {
  const err = (code: string, syscall: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code, syscall });
  const cases: [NodeJS.ErrnoException, boolean, number, number][] = [
    [err('EIO', 'read'), false, SenseKey.MEDIUM_ERROR, Asc.READ_ERROR],
    [err('EIO', 'write'), true, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR],
    // A failed flush is a write that did not reach the medium, whichever command asked (SYNCHRONIZE CACHE).
    [err('EIO', 'fdatasync'), false, SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR],
    [err('EILSEQ', 'preadv'), false, SenseKey.MEDIUM_ERROR, Asc.READ_ERROR],
    [err('ENOSPC', 'pwritev'), true, SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT],
    [err('EDQUOT', 'pwritev'), true, SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT],
    [err('ENXIO', 'preadv'), false, SenseKey.NOT_READY, Asc.LUN_NOT_READY_MANUAL_INTERVENTION],
    [err('ENODEV', 'pwritev'), true, SenseKey.NOT_READY, Asc.LUN_NOT_READY_MANUAL_INTERVENTION],
    [err('EROFS', 'pwritev'), true, SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED],
    [err('EBADF', 'fallocate'), true, SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE],
  ];
  for (const [e, write, key, asc] of cases) {
    const s = fromIoError(e, write, 77);
    assert.deepEqual([s.key, s.asc], [key, asc], `${e.code} from ${e.syscall}`);
    // Only a medium error names its block.
    assert.equal(s.opts.info, key === SenseKey.MEDIUM_ERROR ? 77 : undefined, `${e.code}: INFORMATION`);
  }
  const d = decodeSense(encodeSense(fromIoError(err('EIO', 'read'), false, 4096), false));
  assert.deepEqual([d.key, d.asc, d.ascq, d.info], [3, 0x11, 0, 4096n]);
});

// REPORT SUPPORTED OPERATION CODES, REPORT SUPPORTED TASK MANAGEMENT
// FUNCTIONS, REPORT TARGET PORT GROUPS, and SPC-2 RESERVE/RELEASE, through
// the loopback fabric.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, INITIATOR_B } from './util/loopback-setup';
import { assertGood, assertSense, bytes } from './util/scsi-assert';
import { SenseKey, Status } from '../src/core/sense';
import type { LogicalUnit } from '../src/core/logical-unit';
import type { CommandDef } from '../src/core/opcodes';

const rsoc = (options: number, op = 0, sa = 0, alloc = 0xffff) =>
  [0xa3, 0x0c, options, op, sa >> 8, sa & 0xff, 0, 0, alloc >> 8, alloc & 0xff, 0, 0];
const TUR = [0, 0, 0, 0, 0, 0];
const THIN = { attributes: { emulate_tpu: true, emulate_tpws: true } };
/**
 * The table entries a unit serves: UNMAP and SANITIZE BLOCK ERASE only when thin, COMPARE AND WRITE with emulate_caw,
 * SET TARGET PORT GROUPS only in a gateway group (test/rbd-gateways.test.ts).
 */
const servedBy = (lu: LogicalUnit): CommandDef[] => lu.table.all.filter((d) => d.served === undefined || d.served(lu));

test('RSOC: all commands, with and without timeouts descriptors, exactly what the unit serves of its table', async () => {
  const r = await rig([{ attributes: { emulate_caw: false } }, THIN]);
  try {
    const n = await r.nexus();
    const names = (lun: number) => servedBy(r.sos[lun].lu).map((d) => d.name);
    const left = r.sos[0].lu.table.all.map((d) => d.name).filter((d) => !names(0).includes(d));
    assert.deepEqual(new Set(left), new Set(['UNMAP', 'COMPARE AND WRITE', 'SANITIZE BLOCK ERASE', 'SET TARGET PORT GROUPS']), 'left out where not thin, without emulate_caw');
    assert.equal(names(1).length, r.sos[1].lu.table.all.length - 1, 'a thin unit serves its whole table but SET TARGET PORT GROUPS');
    for (const [lun, rctd] of [[0, false], [0, true], [1, false], [1, true]] as const) {
      const all = servedBy(r.sos[lun].lu);
      const res = await n.command(lun, rsoc(rctd ? 0x80 : 0));
      assertGood(res);
      const size = rctd ? 20 : 8;
      assert.equal(res.data.readUInt32BE(0), all.length * size);
      assert.equal(res.data.length, 4 + all.length * size);
      all.forEach((def, i) => {
        const d = res.data.subarray(4 + i * size, 4 + (i + 1) * size);
        assert.equal(d[0], def.opcode, def.name);
        assert.equal(d.readUInt16BE(2), def.serviceAction ?? 0, def.name);
        assert.equal(d[5], (def.serviceAction !== undefined ? 1 : 0) | (rctd ? 2 : 0), def.name);
        assert.equal(d.readUInt16BE(6), def.usage.length, def.name);
        if (rctd) {
          const timeout = Buffer.alloc(4);
          timeout.writeUInt32BE(def.timeout ?? 0);
          assert.deepEqual(d.subarray(8), bytes('000a 00 00 00000000', [...timeout]), def.name);
        }
      });
      // Our own entry, byte for byte.
      const i = all.findIndex((d) => d.opcode === 0xa3 && d.serviceAction === 0x0c);
      assert.deepEqual(res.data.subarray(4 + i * size, 4 + i * size + 8), bytes(rctd ? 'a3 00 000c 00 03 000c' : 'a3 00 000c 00 01 000c'));
    }
    // The allocation length truncates; the length field still tells the whole size.
    const cut = await n.command(0, rsoc(0, 0, 0, 6));
    assertGood(cut);
    assert.equal(cut.data.length, 6);
  } finally {
    await r.close();
  }
});

test('RSOC: one command per reporting option, every table entry\'s usage mask, and not-supported answers', async () => {
  const r = await rig([{}, THIN]);
  try {
    const n = await r.nexus();
    // What a unit does not serve of its table is answered as not supported, and refused as unknown.
    const lu = r.sos[0].lu;
    const left = lu.table.all.filter((d) => !servedBy(lu).includes(d));
    assert.deepEqual(left.map((d) => d.name), ['UNMAP', 'SANITIZE BLOCK ERASE', 'SET TARGET PORT GROUPS']);
    for (const def of left) {
      const sa = def.serviceAction;
      assert.deepEqual((await n.command(0, sa === undefined ? rsoc(1, def.opcode) : rsoc(2, def.opcode, sa))).data, bytes('00 01 0000'), def.name);
      assert.deepEqual((await n.command(0, rsoc(3, def.opcode, sa ?? 0))).data, bytes('00 01 0000'), def.name);
    }
    assertSense(await n.command(0, [0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x20, 0);
    assertSense(await n.command(0, [0x48, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 4 });
    const inquiry = await n.command(0, rsoc(1, 0x12));
    assertGood(inquiry);
    assert.deepEqual(inquiry.data, bytes('00 03 0006 12 01 ff ff ff 00'));
    const withTimeout = await n.command(0, rsoc(0x81, 0x12));
    assert.deepEqual(withTimeout.data, bytes('00 83 0006 12 01 ff ff ff 00 000a 00 00 00000000 0000001e'));
    // Every entry, asked for the way its opcode requires, of the thin unit, which serves them all.
    for (const def of servedBy(r.sos[1].lu)) {
      const res = await n.command(1, def.serviceAction === undefined ? rsoc(1, def.opcode) : rsoc(2, def.opcode, def.serviceAction));
      assertGood(res, def.name);
      assert.deepEqual(res.data, Buffer.concat([bytes('00 03', [0, def.usage.length]), Buffer.from(def.usage)]), def.name);
      // Option 3 answers the same for both kinds of opcode.
      assert.deepEqual((await n.command(1, rsoc(3, def.opcode, def.serviceAction ?? 0x1234))).data, res.data, def.name);
    }
    assert.deepEqual((await n.command(0, rsoc(1, 0xc7))).data, bytes('00 01 0000'));
    assert.deepEqual((await n.command(0, rsoc(2, 0xa3, 0x1f))).data, bytes('00 01 0000'));
    assert.deepEqual((await n.command(0, rsoc(2, 0xc7, 1))).data, bytes('00 01 0000'));
    assert.deepEqual((await n.command(0, rsoc(3, 0xa3, 0x1f))).data, bytes('00 01 0000'));
    // Option 1 on an opcode with service actions, option 2 on one without, reserved options.
    assertSense(await n.command(0, rsoc(1, 0xa3)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2, bit: 2 });
    assertSense(await n.command(0, rsoc(2, 0x12)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2, bit: 2 });
    assertSense(await n.command(0, rsoc(4)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2, bit: 2 });
    assertSense(await n.command(0, rsoc(0x08)), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2, bit: 3 });
  } finally {
    await r.close();
  }
});

test('REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS and REPORT TARGET PORT GROUPS', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    const tmf = await n.command(0, [0xa3, 0x0d, 0, 0, 0, 0, 0, 0, 0, 255, 0, 0]);
    assertGood(tmf);
    assert.deepEqual(tmf.data, bytes('dc 01 00 00'));
    const ext = await n.command(0, [0xa3, 0x0d, 0x80, 0, 0, 0, 0, 0, 0, 255, 0, 0]);
    assert.deepEqual(ext.data, bytes('dc 01 00 0c', { z: 12 }));
    const rtpg = await n.command(0, [0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    assertGood(rtpg);
    // One group, active/optimized (AO_SUP only), id 0, holding relative port 1.
    assert.deepEqual(rtpg.data, bytes('0000000c 00 01 0000 00 00 00 01 0000 0001'));
    const extended = await n.command(0, [0xa3, 0x2a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    assert.deepEqual(extended.data, bytes('00000010 10 00 0000 00 01 0000 00 00 00 01 0000 0001'));
    assertSense(await n.command(0, [0xa3, 0x4a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 7 });
  } finally {
    await r.close();
  }
});

test('RESERVE(6)/(10) and RELEASE: conflicts between two nexuses, release semantics, drop on reset and logout', async () => {
  const r = await rig();
  try {
    const a = await r.nexus();
    const b = await r.nexus(INITIATOR_B);
    assertGood(await a.command(0, [0x16, 0, 0, 0, 0, 0]));
    assert.equal((await b.command(0, TUR)).status, Status.RESERVATION_CONFLICT);
    assert.equal((await b.command(0, [0x1a, 0, 0x3f, 0, 255, 0])).status, Status.RESERVATION_CONFLICT);
    assert.equal((await b.command(0, [0x16, 0, 0, 0, 0, 0])).status, Status.RESERVATION_CONFLICT);
    assert.equal((await b.command(0, [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0])).status, Status.RESERVATION_CONFLICT);
    // What SPC-2 lets through.
    assertGood(await b.command(0, [0x12, 0, 0, 0, 36, 0]));
    assertGood(await b.command(0, [0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]));
    assertGood(await b.command(0, [0x03, 0, 0, 0, 18, 0]));
    // A release by a non-holder is GOOD and changes nothing.
    assertGood(await b.command(0, [0x17, 0, 0, 0, 0, 0]));
    assert.equal((await b.command(0, TUR)).status, Status.RESERVATION_CONFLICT);
    // The holder may reserve again and keeps working.
    assertGood(await a.command(0, [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assertGood(await a.command(0, TUR));
    assertGood(await a.command(0, [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assertGood(await b.command(0, TUR));

    // LUN reset drops it (and leaves a unit attention behind).
    assertGood(await b.command(0, [0x16, 0, 0, 0, 0, 0]));
    assert.equal((await a.command(0, TUR)).status, Status.RESERVATION_CONFLICT);
    assert.equal(await a.taskManagement('lun-reset', 0), 'complete');
    assertSense(await a.command(0, TUR), SenseKey.UNIT_ATTENTION, 0x29, 0x03);
    assertGood(await a.command(0, TUR));

    // So does the holder's logout.
    assertGood(await a.command(0, [0x16, 0, 0, 0, 0, 0]));
    await a.close();
    assertSense(await b.command(0, TUR), SenseKey.UNIT_ATTENTION, 0x29, 0x03);
    assertGood(await b.command(0, TUR));
  } finally {
    await r.close();
  }
});

test('RESERVE/RELEASE refuse third-party, long id and extent reservations', async () => {
  const r = await rig();
  try {
    const n = await r.nexus();
    assertSense(await n.command(0, [0x16, 0x10, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 4 });
    assertSense(await n.command(0, [0x16, 0x01, 0, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 0 });
    assertSense(await n.command(0, [0x56, 0x02, 0, 0, 0, 0, 0, 0, 8, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 1, bit: 1 });
    assertSense(await n.command(0, [0x57, 0, 0, 0, 0, 0, 0, 0, 8, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 8, bit: 3 });
    assertSense(await n.command(0, [0x17, 0, 5, 0, 0, 0]), SenseKey.ILLEGAL_REQUEST, 0x24, 0, { inCdb: true, byte: 2, bit: 2 });
    assert.equal(r.sos[0].lu.reservation, undefined);
  } finally {
    await r.close();
  }
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, INITIATOR_B } from './util/loopback-setup';
import { Status, SenseKey } from '../src/core/sense';
import { LoopbackNexus } from '../fabrics/loopback/loopback';

test('a new nexus reports POWER ON, RESET first, then runs commands', async () => {
  const r = await rig();
  const n = LoopbackNexus.open(r.tpg, INITIATOR_B);
  const first = await n.command(0, [0, 0, 0, 0, 0, 0]);
  assert.equal(first.status, Status.CHECK_CONDITION);
  assert.equal(first.senseKey, SenseKey.UNIT_ATTENTION);
  assert.deepEqual([first.asc, first.ascq], [0x29, 0x00]);
  const second = await n.command(0, [0, 0, 0, 0, 0, 0]);
  assert.equal(second.status, Status.GOOD);
  await r.close();
});

test('write then read back through loopback', async () => {
  const r = await rig();
  const n = await r.nexus();
  const data = Buffer.alloc(4096, 0xab);
  const w = await n.command(0, [0x2a, 0, 0, 0, 0, 8, 0, 0, 8, 0], { dataOut: data });
  assert.equal(w.status, Status.GOOD);
  const rd = await n.command(0, [0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0]);
  assert.equal(rd.status, Status.GOOD);
  assert.deepEqual(rd.data, data);
  await r.close();
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, INITIATOR_B } from './util/loopback-setup';
import { Status, SenseKey } from '../src/core/sense';
import { LoopbackNexus } from '../fabrics/loopback/loopback';
import { gated } from './util/gated';

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

test('queue_depth bounds the task set: a command beyond it gets TASK SET FULL, and room is made as commands end', async () => {
  const r = await rig([{ plugin: 'gated', attributes: { queue_depth: 2 } }]);
  try {
    const n = await r.nexus();
    const g = gated[gated.length - 1];
    const read = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const held = [n.command(0, read), n.command(0, read)];
    await new Promise((res) => setImmediate(res));
    assert.equal(g.started, 2, 'two reads wait at the backstore');
    const full = await n.command(0, read);
    assert.deepEqual([full.status, full.sense?.length ?? 0], [Status.TASK_SET_FULL, 0], 'the third is not entered');
    g.open();
    for (const p of held) assert.equal((await p).status, Status.GOOD);
    assert.equal((await n.command(0, read)).status, Status.GOOD, 'room again once they ended');
  } finally {
    await r.close();
  }
});
